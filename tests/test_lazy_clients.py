"""Client libraries are patched when the suite imports them, never imported for the plugin.

A suite that does not use requests or httpx must not pay for importing them at every start
(about 40 ms here), and a library first imported inside a test (a lazy ``import requests`` in
the code under test) must still be judged by its own interceptor in that very test, not only
by the socket backstop. The subprocess runs here load no other plugin
(``PYTEST_DISABLE_PLUGIN_AUTOLOAD`` and ``-p outbound``): respx, pytest-httpx and requests-mock
would import the clients first.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from pytest_outbound._decide import Context, Rules
from pytest_outbound._guard import Guard
from pytest_outbound._interceptors import Installation, _imported
from pytest_outbound._policy import Policy

CLIENT_MODULES = ("requests", "httpx", "urllib3", "http.client", "urllib.request")

LOADED = """
import sys

def pytest_unconfigure(config):
    names = {names!r}
    with open("loaded.txt", "w") as out:
        out.write(" ".join(name for name in names if name in sys.modules))
"""


def run_alone(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    pytester.makeini("[pytest]\noutbound_mode = enforce\noutbound_sensitive_machine = false\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
        return pytester.runpytest_subprocess("-p", "outbound", "-p", "no:cacheprovider", *args)


def test_a_suite_that_uses_no_client_imports_none(pytester: pytest.Pytester) -> None:
    """Nor idna, which only a host that is not ASCII needs."""
    pytester.makeconftest(LOADED.format(names=(*CLIENT_MODULES, "idna", "pytest_outbound._plugin")))
    pytester.makepyfile("def test_quiet():\n    pass\n")
    result = run_alone(pytester)
    result.assert_outcomes(passed=1)
    assert (pytester.path / "loaded.txt").read_text().split() == ["pytest_outbound._plugin"]


@pytest.mark.parametrize(
    ("client", "code"),
    [
        ("requests", "import requests\n    requests.get(URL, timeout=1)"),
        ("httpx", "import httpx\n    httpx.get(URL)"),
        ("http.client", "import urllib.request\n    urllib.request.urlopen(URL, timeout=1)"),
        (
            "http.client",
            "import http.client\n"
            "    http.client.HTTPConnection('api.example.com', timeout=1).request('GET', '/x')",
        ),
    ],
    ids=["requests", "httpx", "urllib.request", "http.client"],
)
def test_a_client_first_imported_inside_a_test_is_judged_by_its_interceptor(
    pytester: pytest.Pytester, client: str, code: str
) -> None:
    """The import happens in the test's call: no hook of the plugin runs between it and the
    request. Without the import finder, only the socket backstop would see the lookup."""
    pytester.makeconftest(LOADED.format(names=CLIENT_MODULES))
    pytester.makepyfile(
        f'URL = "http://api.example.com/x"\n\n'
        f"def test_lazy():\n    {code}\n\n"
        f"def test_again():\n    {code}\n"
    )
    result = run_alone(pytester, "-rN")
    result.assert_outcomes(failed=2)
    for test in ("test_lazy", "test_again"):
        result.stdout.fnmatch_lines(
            [f"*::{test} at *: GET http://api.example.com/x [[]{client}] undocumented"]
        )
    result.stdout.no_fnmatch_line("*[[]socket]*")
    assert client in (pytester.path / "loaded.txt").read_text().split()


def test_a_mock_imported_inside_a_test_sees_the_patched_client(pytester: pytest.Pytester) -> None:
    """responses imported lazily imports requests: the request it answers is still recorded,
    and allowed by the policy, in the first test."""
    pytester.makeini(
        "[pytest]\noutbound_mode = enforce\noutbound_sensitive_machine = false\n"
        "outbound_allow = api.example.com\n"
    )
    pytester.makepyfile(
        """
        def test_mocked(outbound):
            import requests
            import responses

            with responses.RequestsMock() as mock:
                mock.get("http://api.example.com/x", json={"ok": True})
                assert requests.get("http://api.example.com/x").json() == {"ok": True}
            assert [r.url for r in outbound.requests] == ["http://api.example.com/x"]
            assert outbound.requests[0].client == "requests"
        """
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
        result = pytester.runpytest_subprocess("-p", "outbound", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


# -- the finder itself --------------------------------------------------------------------


@pytest.fixture
def probe_lib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A package with a submodule, importable once, that no installation has patched."""
    package = tmp_path / "outbound_probe_lib"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "client.py").write_text(
        "class Client:\n    def send(self):\n        return 'sent'\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "outbound_probe_lib.client"
    for name in ("outbound_probe_lib.client", "outbound_probe_lib"):
        sys.modules.pop(name, None)


@pytest.fixture
def installation(monkeypatch: pytest.MonkeyPatch) -> Installation:
    guard = Guard(mode="audit", context=Context(Rules(Policy())), rootpath=Path(), body_limit=64)
    made = Installation(guard)
    yield made
    made.undo()


def _watch(installation: Installation, name: str, installer: object) -> None:
    """Have ``installation`` wait for ``name``, with ``installer`` as its adapter."""
    adapter = type(sys)("pytest_outbound._interceptors._probe")
    adapter.install = installer  # type: ignore[attr-defined]
    sys.modules[adapter.__name__] = adapter
    installation._pending.append(((name,), "_probe", "install"))
    installation._finder.names.add(name)


def test_an_installer_runs_when_its_import_ends_and_the_loader_is_left_as_it_was(
    installation: Installation, probe_lib: str
) -> None:
    seen: list[object] = []

    def install(guard: Guard, patches: object) -> None:
        import outbound_probe_lib.client  # the submodule is its package's attribute already

        seen.append(outbound_probe_lib.client.Client)

    try:
        _watch(installation, probe_lib, install)
        module = importlib.import_module(probe_lib)
        assert seen == [module.Client]
        assert "exec_module" not in vars(module.__loader__)
        assert probe_lib not in installation._finder.names  # once
        importlib.reload(module)  # the loader's own exec_module again
        assert len(seen) == 1
    finally:
        sys.modules.pop("pytest_outbound._interceptors._probe", None)


def test_an_installer_that_fails_in_an_import_fails_the_next_catch_up_not_the_import(
    installation: Installation, probe_lib: str
) -> None:
    def install(guard: Guard, patches: object) -> None:
        raise RuntimeError("this version of the library is not supported")

    try:
        _watch(installation, probe_lib, install)
        assert importlib.import_module(probe_lib).Client().send() == "sent"
        with pytest.raises(RuntimeError, match="not supported"):
            installation.catch_up()
        installation.catch_up()  # raised once
    finally:
        sys.modules.pop("pytest_outbound._interceptors._probe", None)


def test_after_undo_nothing_waits_for_an_import(installation: Installation, probe_lib: str) -> None:
    seen: list[str] = []
    try:
        _watch(installation, probe_lib, lambda guard, patches: seen.append("installed"))
        installation.undo()
        assert installation._finder not in sys.meta_path
        importlib.import_module(probe_lib)
        assert seen == []
    finally:
        sys.modules.pop("pytest_outbound._interceptors._probe", None)


def test_a_module_still_executing_is_not_imported_yet() -> None:
    module = type(sys)("outbound_half_done")
    module.__spec__ = importlib.machinery.ModuleSpec("outbound_half_done", None)
    modules = {"outbound_half_done": module}
    module.__spec__._initializing = True  # type: ignore[attr-defined]
    assert not _imported(modules, "outbound_half_done")
    module.__spec__._initializing = False  # type: ignore[attr-defined]
    assert _imported(modules, "outbound_half_done")
    assert not _imported(modules, "outbound_missing")


def test_an_import_that_fails_is_watched_again(
    installation: Installation, probe_lib: str, tmp_path: Path
) -> None:
    seen: list[str] = []
    module_file = tmp_path / "outbound_probe_lib" / "client.py"
    good = module_file.read_text()
    module_file.write_text("raise ImportError('not yet')\n")
    try:
        _watch(installation, probe_lib, lambda guard, patches: seen.append("installed"))
        with pytest.raises(ImportError, match="not yet"):
            importlib.import_module(probe_lib)
        assert seen == []
        module_file.write_text(good + "\n# fixed\n")
        importlib.invalidate_caches()
        assert importlib.import_module(probe_lib).Client().send() == "sent"
        assert seen == ["installed"]
    finally:
        sys.modules.pop("pytest_outbound._interceptors._probe", None)
