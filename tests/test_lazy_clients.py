"""Client libraries are patched when the suite imports them, never imported for the plugin.

A suite that does not use requests or httpx must not pay for importing them at every start
(tens of milliseconds), and a library first imported inside a test (a lazy ``import requests``
in the code under test) must still be judged by its own interceptor in that very test, not
only by the socket backstop.

The subprocess runs here load no other plugin (``PYTEST_DISABLE_PLUGIN_AUTOLOAD`` and
``-p outbound``): respx, pytest-httpx and requests-mock would import the clients first. The
in-process tests drive ``Installation`` with probe packages written to ``tmp_path`` and probe
installers, so that each import is the first.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import inspect
import sys
import threading
import types
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pytest_outbound._decide import Context, Rules
from pytest_outbound._guard import Guard
from pytest_outbound._interceptors import (
    _WATCH,
    Installation,
    InstallError,
    Patches,
    _ReportingLoader,
)
from pytest_outbound._policy import Policy

CLIENT_MODULES = ("requests", "httpx", "urllib3", "http.client", "urllib.request")

# Written by the inner session's conftest: which of NAMES the run had imported at its end.
LOADED = """
import sys

NAMES = {names!r}


def pytest_unconfigure(config):
    with open("loaded.txt", "w") as out:
        out.write(" ".join(name for name in NAMES if name in sys.modules))
"""

# A library that imports like httpx and is no version the plugin can patch.
FAKE_HTTPX = '__version__ = "0.0.1"\n\n\ndef get(url):\n    return "fake " + url\n'


def run_alone(pytester: pytest.Pytester, *args: str, ini: str = "") -> pytest.RunResult:
    """A pytest run in a fresh interpreter with this plugin and no other."""
    pytester.makeini(
        "[pytest]\noutbound_mode = enforce\noutbound_sensitive_machine = false\n" + ini
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
        return pytester.runpytest_subprocess("-p", "outbound", "-p", "no:cacheprovider", *args)


def loaded(pytester: pytest.Pytester) -> list[str]:
    return (pytester.path / "loaded.txt").read_text().split()


# -- in a real run ----------------------------------------------------------------------------


def test_a_suite_that_uses_no_client_imports_none(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(LOADED.format(names=(*CLIENT_MODULES, "pytest_outbound._plugin")))
    pytester.makepyfile("def test_quiet():\n    pass\n")
    result = run_alone(pytester)
    result.assert_outcomes(passed=1)
    assert loaded(pytester) == ["pytest_outbound._plugin"]


LAZY_CLIENTS = {
    "requests": ("requests", "import requests\n    requests.get(URL, timeout=1)"),
    "httpx": ("httpx", "import httpx\n    httpx.get(URL)"),
    "urllib.request": (
        "http.client",
        "import urllib.request\n    urllib.request.urlopen(URL, timeout=1)",
    ),
    "http.client": (
        "http.client",
        "import http.client\n"
        "    http.client.HTTPConnection('api.example.com', timeout=1).request('GET', '/x')",
    ),
}


@pytest.mark.parametrize("library", list(LAZY_CLIENTS))
def test_a_client_first_imported_inside_a_test_is_judged_by_its_interceptor(
    pytester: pytest.Pytester, library: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The import happens in the test's call: no hook of the plugin runs between it and the
    request. Without the import watch only the socket backstop would see it, as ``[socket]``."""
    monkeypatch.setenv("COLUMNS", "500")  # each line of the summary whole
    client, code = LAZY_CLIENTS[library]
    pytester.makeconftest(LOADED.format(names=CLIENT_MODULES))
    test_code = "def test_lazy():\n    CODE\n\n\ndef test_again():\n    CODE\n"
    pytester.makepyfile('URL = "http://api.example.com/x"\n\n\n' + test_code.replace("CODE", code))
    result = run_alone(pytester, "-rN")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["  api.example.com: undocumented: 2 request(s) in 2 test(s)"])
    for test in ("test_lazy", "test_again"):
        result.stdout.fnmatch_lines(
            [f"    *::{test} at *: GET http://api.example.com/x [[]{client}]"]
        )
    result.stdout.no_fnmatch_line("*[[]socket]*")
    assert library in loaded(pytester)


def test_mocks_imported_inside_a_test_see_the_patched_clients(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """responses and requests-mock imported lazily import requests as they go: the requests
    they answer are still recorded and judged, and requests-mock, which saved our send as its
    own at its import, does not make that send its own ``__wrapped__``."""
    monkeypatch.setenv("COLUMNS", "500")  # each line of the summary whole
    pytester.makepyfile(
        """
        import inspect

        def test_responses(outbound):
            import requests
            import responses

            with responses.RequestsMock() as mock:
                mock.get("http://api.example.com/x", json={"ok": True})
                assert requests.get("http://api.example.com/x").json() == {"ok": True}
            assert [(r.url, r.client) for r in outbound.requests] == [
                ("http://api.example.com/x", "requests")
            ]

        def test_requests_mock(outbound):
            import requests
            import requests_mock

            inspect.signature(requests.Session.send)  # "wrapper loop" if patched with itself
            with requests_mock.Mocker() as mock:
                mock.get("http://api.example.com/y", text="mocked")
                assert requests.get("http://api.example.com/y").text == "mocked"
            assert [r.url for r in outbound.requests] == ["http://api.example.com/y"]

        def test_requests_mock_undocumented():
            import requests
            import requests_mock

            with requests_mock.Mocker() as mock:
                mock.get("http://elsewhere.example.org/z", text="mocked")
                requests.get("http://elsewhere.example.org/z")
        """
    )
    result = run_alone(pytester, "-rN", ini="outbound_allow = api.example.com\n")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "  elsewhere.example.org: undocumented: 1 request(s) in 1 test(s)",
            "    *::test_requests_mock_undocumented at *: GET http://elsewhere.example.org/z*",
        ]
    )


def test_a_library_that_cannot_be_patched_fails_the_test_that_imported_it_and_the_next(
    pytester: pytest.Pytester,
) -> None:
    """The import itself succeeds (the code under test must not see the plugin's error as its
    own); the test whose call imported it fails, every later test errors in its setup, and the
    session's summary says it again."""
    pytester.makepyfile(httpx=FAKE_HTTPX)
    pytester.makepyfile(
        test_lazy="""
        def test_before():
            pass

        def test_imports():
            import httpx
            assert httpx.get("u") == "fake u"

        def test_after():
            pass
        """
    )
    result = run_alone(pytester, "-p", "no:randomly")
    result.assert_outcomes(passed=1, failed=1, errors=1)
    message = "*pytest-outbound could not patch httpx 0.0.1 (AttributeError: *"
    result.stdout.fnmatch_lines(
        ["*_ ERROR at setup of test_after _*", message, "*_ test_imports _*", message]
    )
    result.stdout.no_fnmatch_line("*INTERNALERROR*")
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_a_library_imported_by_a_test_module_that_cannot_be_patched_is_a_usage_error(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(httpx=FAKE_HTTPX)
    pytester.makepyfile(test_module="import httpx\n\n\ndef test_it():\n    pass\n")
    result = run_alone(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: pytest-outbound could not patch httpx 0.0.1 (*"])
    result.stdout.no_fnmatch_line("*INTERNALERROR*")
    result.stderr.no_fnmatch_line("*Traceback*")


def test_a_child_process_says_when_a_library_it_imports_cannot_be_patched(
    pytester: pytest.Pytester,
) -> None:
    """A child has no pytest to fail: its import goes on, and its stderr says why its requests
    through that library are not judged."""
    pytester.makepyfile(httpx=FAKE_HTTPX)
    pytester.makepyfile(
        test_child="""
        import subprocess, sys

        def test_child():
            out = subprocess.run(
                [sys.executable, "-c", "import httpx; print(httpx.__version__)"],
                capture_output=True, text=True,
            )
            assert (out.returncode, out.stdout) == (0, "0.0.1\\n")
            assert "pytest-outbound could not patch httpx 0.0.1" in out.stderr, out.stderr
        """
    )
    run_alone(pytester, ini="outbound_subprocess = true\n").assert_outcomes(passed=1)


# -- the installation and its import watch, directly -------------------------------------------

Installer = Callable[[Guard, Patches], None]


class Probe:
    """A package, ``outbound_probe_lib`` with a submodule ``client``, importable from a fresh
    directory, and installers registered as ``outbound_probe_adapter:NAME``."""

    package = "outbound_probe_lib"
    name = "outbound_probe_lib.client"

    def __init__(self, root: Path, adapter: types.ModuleType) -> None:
        self.root = root
        self.adapter = adapter
        self.seen: list[tuple[str, object]] = []
        self.made: list[Installation] = []

    def write(self, client: str = "class Client:\n    pass\n", root: Path | None = None) -> None:
        package = (root or self.root) / self.package
        package.mkdir(exist_ok=True)
        (package / "__init__.py").write_text("")
        (package / "client.py").write_text(client)
        importlib.invalidate_caches()

    def installer(self, function: Installer | None = None) -> str:
        """``module:function`` for ``function``; by default one that notes the class it saw
        and the thread it ran in."""

        def note(guard: Guard, patches: Patches) -> None:
            import outbound_probe_lib.client  # bound on its package already

            self.seen.append((threading.current_thread().name, outbound_probe_lib.client.Client))

        name = f"install_{len(vars(self.adapter))}"
        setattr(self.adapter, name, function or note)
        return f"{self.adapter.__name__}:{name}"

    def install(self, function: Installer | None = None, **kwargs: object) -> Installation:
        guard = Guard(mode="audit", context=Context(Rules(Policy())), rootpath=Path(), body_limit=9)
        installation = Installation(
            guard,
            adapters=[((self.name,), self.installer(function))],
            **kwargs,  # type: ignore[arg-type]
        )
        self.made.append(installation)
        return installation

    def forget(self) -> None:
        for name in (self.name, self.package):
            sys.modules.pop(name, None)


@pytest.fixture
def probe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Probe]:
    adapter = types.ModuleType("outbound_probe_adapter")
    monkeypatch.setitem(sys.modules, adapter.__name__, adapter)
    monkeypatch.syspath_prepend(str(tmp_path))
    made = Probe(tmp_path, adapter)
    made.forget()
    yield made
    for installation in made.made:
        installation.undo()
    made.forget()


def test_an_installer_runs_when_the_import_ends_and_the_module_keeps_its_own_loader(
    probe: Probe,
) -> None:
    probe.write()
    installation = probe.install()
    assert probe.name in _WATCH.names
    assert sys.meta_path[0] is _WATCH
    module = importlib.import_module(probe.name)
    assert probe.seen == [(threading.current_thread().name, module.Client)]
    assert type(module.__loader__) is importlib.machinery.SourceFileLoader
    assert module.__spec__.loader is module.__loader__
    assert "exec_module" not in vars(module.__loader__)
    assert inspect.getsource(module.Client).startswith("class Client")
    installation.catch_up()
    assert len(probe.seen) == 1  # once per module object


def test_a_module_imported_again_or_reloaded_is_patched_again(probe: Probe) -> None:
    """pytester restores sys.modules after an in-process run: a library its inner session
    imported is imported anew by the next test, with new classes to patch."""
    probe.write()
    probe.install()
    first = importlib.import_module(probe.name)
    probe.forget()
    second = importlib.import_module(probe.name)
    assert second is not first
    before_reload = second.Client
    reloaded = importlib.reload(second).Client
    assert [client for _, client in probe.seen] == [first.Client, before_reload, reloaded]
    assert len({id(client) for _, client in probe.seen}) == 3


def test_a_module_dropped_and_put_back_by_hand_is_patched_by_catch_up(probe: Probe) -> None:
    """An import the watch never saw (sys.modules written by hand): ``catch_up`` patches each
    module object it has not patched, and none twice."""
    probe.write()
    installation = probe.install()
    module = importlib.import_module(probe.name)
    copy = types.ModuleType(probe.name)
    copy.__spec__ = importlib.machinery.ModuleSpec(probe.name, None)
    copy.Client = type("Client", (), {})  # type: ignore[attr-defined]
    sys.modules[probe.name] = copy
    sys.modules[probe.package].client = copy  # type: ignore[attr-defined]
    installation.catch_up()
    sys.modules[probe.name] = module  # put back: a module object patched already
    installation.catch_up()
    assert [client for _, client in probe.seen] == [module.Client, copy.Client]


def test_a_loader_shared_by_many_modules_is_not_touched(probe: Probe, tmp_path: Path) -> None:
    """zipimport (like pytest's assertion rewriter) loads many modules with one loader object:
    only the watched module's import reports, and the other modules still import."""
    archive = tmp_path / "probe.zip"
    unzipped = tmp_path / "unzipped"
    unzipped.mkdir()
    probe.write(root=unzipped)
    (unzipped / probe.package / "other.py").write_text("VALUE = 7\n")
    with zipfile.ZipFile(archive, "w") as out:
        for path in sorted((unzipped / probe.package).iterdir()):
            out.write(path, f"{probe.package}/{path.name}")
    sys.path.insert(0, str(archive))
    try:
        probe.install()
        module = importlib.import_module(probe.name)
        other = importlib.import_module(f"{probe.package}.other")
        assert other.VALUE == 7
        sys.modules.pop(f"{probe.package}.other")
        assert importlib.import_module(f"{probe.package}.other").VALUE == 7
        assert [client for _, client in probe.seen] == [module.Client]
        loader = module.__loader__
        assert type(loader).__name__ == "zipimporter"
        assert other.__loader__ is not None
        assert "exec_module" not in vars(loader)
    finally:
        sys.path.remove(str(archive))
        sys.modules.pop(f"{probe.package}.other", None)


class SharedLoaderFinder:
    """A finder whose one loader object loads every module it finds, as pytest's assertion
    rewriter does for test modules and plugins."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.loaded: list[str] = []

    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        if not fullname.startswith(Probe.package):
            return None
        parts = fullname.split(".")
        package = self.root.joinpath(*parts)
        origin = package / "__init__.py" if package.is_dir() else package.with_suffix(".py")
        return importlib.util.spec_from_file_location(
            fullname,
            origin,
            loader=self,  # type: ignore[arg-type]
            submodule_search_locations=[str(package)] if package.is_dir() else None,
        )

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        self.loaded.append(module.__name__)
        exec(Path(module.__file__ or "").read_text(), vars(module))


def test_a_finder_after_the_watch_keeps_its_loader_for_every_other_module(
    probe: Probe, tmp_path: Path
) -> None:
    probe.write()
    (tmp_path / probe.package / "other.py").write_text("VALUE = 7\n")
    finder = SharedLoaderFinder(tmp_path)
    sys.meta_path.insert(0, finder)
    try:
        probe.install()  # the watch goes first
        assert sys.meta_path[:2] == [_WATCH, finder]
        module = importlib.import_module(probe.name)
        other = importlib.import_module(f"{probe.package}.other")
        assert finder.loaded == [probe.package, probe.name, f"{probe.package}.other"]
        assert module.__loader__ is finder
        assert other.__loader__ is finder
        assert other.VALUE == 7
        assert [c for _, c in probe.seen] == [module.Client]
    finally:
        sys.meta_path.remove(finder)
        sys.modules.pop(f"{probe.package}.other", None)


def test_nested_installations_each_patch_a_module_imported_once(probe: Probe) -> None:
    """A nested session (pytester's in-process run) has its own installation: an import ends
    once and both patch it; the inner one undone, the outer one goes on."""
    probe.write()
    outer = probe.install()
    sys.meta_path.insert(0, SharedLoaderFinder(Path("nowhere")))  # a nested session's rewriter
    inner = probe.install()
    assert sys.meta_path[0] is _WATCH  # ahead of it again
    del sys.meta_path[1]
    first = importlib.import_module(probe.name)
    assert [client for _, client in probe.seen] == [first.Client, first.Client]
    inner.undo()
    assert _WATCH in sys.meta_path
    assert probe.name in _WATCH.names
    probe.forget()
    second = importlib.import_module(probe.name)
    assert [client for _, client in probe.seen][2:] == [second.Client]
    outer.undo()
    probe.forget()
    importlib.import_module(probe.name)
    assert len(probe.seen) == 3
    assert probe.name not in _WATCH.names


def test_finding_a_spec_without_importing_leaves_the_watch_in_place(probe: Probe) -> None:
    """``importlib.util.find_spec`` asks the finders and imports nothing: the import after it
    still reports, and a copy executed by hand (not what sys.modules holds) does not."""
    probe.write()
    probe.install()
    importlib.import_module(probe.package)
    spec = importlib.util.find_spec(probe.name)
    assert spec is not None
    assert isinstance(spec.loader, _ReportingLoader)
    assert spec.loader.get_filename(probe.name).endswith("client.py")  # the loader's own
    copy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(copy)
    assert probe.seen == []
    assert type(copy.__loader__) is importlib.machinery.SourceFileLoader
    module = importlib.import_module(probe.name)
    assert [client for _, client in probe.seen] == [module.Client]


def test_an_import_that_fails_is_watched_again(probe: Probe) -> None:
    probe.write("raise ImportError('not yet')\n")
    probe.install()
    with pytest.raises(ImportError, match="not yet"):
        importlib.import_module(probe.name)
    assert probe.seen == []
    probe.write("class Client:\n    fixed = True\n")
    assert importlib.import_module(probe.name).Client.fixed
    assert len(probe.seen) == 1


def test_an_installer_that_fails_in_an_import_fails_every_catch_up_not_the_import(
    probe: Probe,
) -> None:
    def broken(guard: Guard, patches: Patches) -> None:
        raise AttributeError("no attribute 'Client._send'")

    told: list[InstallError] = []
    probe.write('__version__ = "9.9"\n\nclass Client:\n    pass\n')
    installation = probe.install(broken, on_error=told.append)
    importlib.import_module(probe.name)  # the import goes on
    message = (
        "pytest-outbound could not patch outbound_probe_lib.client 9.9"
        " (AttributeError: no attribute 'Client._send')"
    )
    assert [str(error).startswith(message) for error in told] == [True]
    for _ in range(2):  # every time: nothing that library sends is judged from now on
        with pytest.raises(InstallError, match=r"could not patch outbound_probe_lib\.client"):
            installation.catch_up()
    assert installation.error is told[0]
    assert isinstance(told[0].__cause__, AttributeError)
    assert installation.take_errors() == ([told[0]], told[0])  # reported once, and current
    assert installation.take_errors() == ([], told[0])
    probe.forget()  # that module is gone (a nested session restored sys.modules)
    installation.catch_up()
    assert installation.take_errors() == ([], None)
    assert installation.error is None


def test_a_failure_whose_module_has_gone_is_still_reported_once(probe: Probe) -> None:
    """The code that imported the library ran unjudged, even if the module left
    sys.modules before anyone looked: the failure is reported, then forgotten."""

    def broken(guard: Guard, patches: Patches) -> None:
        raise RuntimeError("unsupported")

    probe.write()
    installation = probe.install(broken)
    importlib.import_module(probe.name)
    probe.forget()
    installation.catch_up()  # not current: nothing to raise for the next test
    [error] = installation.take_errors()[0]
    assert "unsupported" in str(error)
    assert installation.take_errors() == ([], None)


def test_an_installer_that_fails_at_start_fails_the_installation_and_undoes_it(
    probe: Probe,
) -> None:
    probe.write()
    importlib.import_module(probe.name)
    before = sys.meta_path.copy()
    run = threading.Thread.run

    def broken(guard: Guard, patches: Patches) -> None:
        patches.patch(threading.Thread, "run", lambda self: None)
        raise TypeError("unsupported")

    with pytest.raises(InstallError, match=r"outbound_probe_lib\.client \(TypeError"):
        probe.install(broken)
    assert threading.Thread.run is run
    assert sys.meta_path == before


class Gate(types.ModuleType):
    """``outbound_probe_gate``: a module a probe imports to say it is executing, and to wait
    until the test lets its import go on."""

    def __init__(self) -> None:
        super().__init__("outbound_probe_gate")
        self.entered = threading.Event()
        self.release = threading.Event()


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[Gate]:
    made = Gate()
    monkeypatch.setitem(sys.modules, made.__name__, made)
    yield made
    made.release.set()  # never leave an importing thread waiting


def test_after_undo_an_import_under_way_patches_nothing(probe: Probe, gate: Gate) -> None:
    """The import started while the installation was live and ends after its undo."""
    probe.write(
        "import outbound_probe_gate as gate\n"
        "gate.entered.set()\n"
        "gate.release.wait(30)\n"
        "class Client:\n    pass\n"
    )
    installation = probe.install()
    importer = threading.Thread(target=importlib.import_module, args=(probe.name,))
    importer.start()
    assert gate.entered.wait(30)
    installation.undo()
    gate.release.set()
    importer.join(30)
    assert not importer.is_alive()
    assert probe.name in sys.modules
    assert probe.seen == []
    # had the watch told it (it took the installations before the undo), still nothing
    installation.executed(probe.name, sys.modules[probe.name])
    assert probe.seen == []


def test_a_catch_up_during_an_import_in_another_thread_waits_for_that_import(
    probe: Probe, gate: Gate
) -> None:
    """While a thread executes the library, catch_up must neither patch the half-made module
    nor wait for it (the importer holds the module's import lock, and needs the installation's
    lock to report): the importing thread patches it when its import ends."""
    probe.write(
        "import outbound_probe_gate as gate\n"
        "class Client:\n    pass\n"
        "gate.entered.set()\n"
        "gate.release.wait(30)\n"
    )
    installation = probe.install()
    importer = threading.Thread(target=importlib.import_module, args=(probe.name,), name="importer")
    importer.start()
    assert gate.entered.wait(30)
    assert probe.name in sys.modules  # executing
    installation.catch_up()
    assert probe.seen == []
    gate.release.set()
    importer.join(30)
    assert not importer.is_alive()
    installation.catch_up()
    assert probe.seen == [("importer", sys.modules[probe.name].Client)]


def test_requests_mock_saved_send_is_not_patched_with_itself() -> None:
    """requests-mock imported after requests was patched saved the patched send: patching it
    with the same function would make that function its own ``__wrapped__``."""
    import requests
    import requests_mock.mocker

    from pytest_outbound._interceptors._requests import install_requests_mock

    guard = Guard(mode="audit", context=Context(Rules(Policy())), rootpath=Path(), body_limit=9)
    patches = Patches()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(requests_mock.mocker, "_original_send", requests.Session.send)
        install_requests_mock(guard, patches)
        try:
            assert requests_mock.mocker._original_send is requests.Session.send
            inspect.signature(requests.Session.send)
        finally:
            patches.undo()


def test_a_stand_in_put_in_sys_modules_is_not_patched(probe: Probe) -> None:
    """A test that stubs a library in sys.modules (a ``MagicMock``, a module made by hand)
    has not imported it: nothing to patch, and no error."""
    from unittest import mock

    installation = probe.install()
    for stand_in in (mock.MagicMock(), types.ModuleType(probe.name)):
        sys.modules[probe.name] = stand_in  # type: ignore[assignment]
        installation.catch_up()
    assert probe.seen == []
    assert installation.error is None


def test_a_package_executed_by_hand_is_patched_when_it_has_run_not_when_its_submodule_has(
    probe: Probe,
) -> None:
    """``module_from_spec`` and ``exec_module`` by hand (importlib's recipe) or a
    ``LazyLoader`` do not mark the package as initializing: its submodule's import ends while
    the package is part-way, and the package's installer must wait for the package."""
    probe.write()
    (probe.root / probe.package / "__init__.py").write_text(
        "from outbound_probe_lib import client\n\nCOMPLETE = True\n"
    )
    importlib.invalidate_caches()
    complete: list[bool] = []

    def package_installer(guard: Guard, patches: Patches) -> None:
        complete.append(sys.modules[probe.package].COMPLETE)  # AttributeError if part-way

    installation = probe.install()  # watches the submodule
    guard = installation.guard
    package_watch = Installation(
        guard, adapters=[((probe.package,), probe.installer(package_installer))]
    )
    probe.made.append(package_watch)
    for lazily in (False, True):
        probe.forget()
        spec = importlib.util.find_spec(probe.package)
        assert spec is not None
        assert spec.loader is not None
        if lazily:
            spec.loader = importlib.util.LazyLoader(spec.loader)
        module = importlib.util.module_from_spec(spec)
        sys.modules[probe.package] = module
        spec.loader.exec_module(module)
        if lazily:  # not executed yet, and looking does not execute it
            package_watch.catch_up()
            assert type(module).__name__ == "_LazyModule"
            assert module.COMPLETE  # runs it
        assert package_watch.error is None
        assert complete == [True] * (1 + lazily)
    assert len(probe.seen) == 2  # the submodule, each time


def test_a_patch_that_is_in_place_already_is_not_made_again() -> None:
    """An installer run again on classes it patched (a package executed again, whose classes
    live in its submodules) must not wrap its own wrapper: each request would count twice."""

    class Owner:
        def send(self) -> str:
            return "sent"

    patches = Patches()
    calls: list[str] = []

    def install() -> None:
        original = Owner.send

        def send(self: Owner) -> str:
            calls.append("judged")
            return original(self)

        patches.patch(Owner, "send", send)

    install()
    install()
    assert Owner().send() == "sent"
    assert calls == ["judged"]
    patches.undo()
    assert Owner.send.__name__ == "send"
    assert not hasattr(Owner.send, "__wrapped__")


def test_a_package_executed_again_is_judged_once_per_request(pytester: pytest.Pytester) -> None:
    """Reloading requests, or importing httpx again, runs the package's ``__init__`` again,
    while ``Session`` and ``Client`` are the same classes (their submodules stay)."""
    pytester.makepyfile(
        """
        import importlib, sys

        def test_reload_requests(outbound):
            import requests, requests_mock
            importlib.reload(requests)
            with requests_mock.Mocker() as mock:
                mock.get("http://api.example.com/x", text="ok")
                requests.get("http://api.example.com/x")
            assert [r.client for r in outbound.requests] == ["requests"]

        def test_httpx_again(outbound):
            import httpx
            sys.modules.pop("httpx")
            import httpx
            answer = httpx.MockTransport(lambda request: httpx.Response(200))
            httpx.Client(transport=answer).get("http://api.example.com/y")
            assert [r.client for r in outbound.requests] == ["httpx"]
        """
    )
    run_alone(pytester, ini="outbound_allow = api.example.com\n").assert_outcomes(passed=2)


def test_an_httpx_imported_anew_carries_the_url_as_written(pytester: pytest.Pytester) -> None:
    """Every httpx module dropped and imported again: new classes, a new class of parsed URLs,
    and the URL as written (an ambiguous host) is still caught."""
    pytester.makepyfile(
        """
        import sys

        def test_new_httpx():
            import httpx
            first = httpx.Client
            for name in [n for n in sys.modules if n == "httpx" or n.startswith("httpx.")]:
                del sys.modules[name]
            import httpx
            from pytest_outbound._interceptors import _httpx

            assert httpx.Client is not first
            assert _httpx._URL_PARTS_CLASS[0] is type(httpx.URL("https://a/")._uri_reference)
            request = httpx.Client().build_request("GET", "https://a\\\\@octopus.com/")
            assert _httpx._url_text(request.url)[1] == "https://a\\\\@octopus.com/"
        """
    )
    run_alone(pytester).assert_outcomes(passed=1)


def test_a_stand_in_a_nested_session_imported_fails_only_the_test_that_ran_it(
    pytester: pytest.Pytester,
) -> None:
    """pytester's in-process run imports a stand-in httpx and then restores sys.modules. The
    outer session could not patch it and cannot tell that a nested session imported it, so
    the test that ran it fails; once the module has gone, later tests are not broken."""
    pytester.makepyfile(
        test_outer=f"""
        FAKE = {FAKE_HTTPX!r}

        def test_inner_run_with_a_stand_in_httpx(pytester):
            pytester.makepyfile(httpx=FAKE)
            pytester.makepyfile(test_inner="def test_it():\\n    import httpx\\n")
            pytester.runpytest_inprocess("-p", "no:outbound").assert_outcomes(passed=1)

        def test_unrelated():
            pass
        """
    )
    result = run_alone(pytester, "-p", "pytester", "-p", "no:randomly", "-rA")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*pytest-outbound could not patch httpx 0.0.1 (*",
            "PASSED test_outer.py::test_unrelated",
            "FAILED test_outer.py::test_inner_run_with_a_stand_in_httpx*",
        ]
    )


def test_a_stand_in_a_test_imports_and_removes_still_fails_that_test(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(httpx=FAKE_HTTPX)
    pytester.makepyfile(
        test_cleaned="""
        import sys

        def test_imports_and_cleans_up():
            try:
                import httpx
            finally:
                sys.modules.pop("httpx", None)

        def test_after():
            pass
        """
    )
    result = run_alone(pytester, "-p", "no:randomly", "-rA")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*pytest-outbound could not patch httpx 0.0.1 (*",
            "FAILED test_cleaned.py::test_imports_and_cleans_up - *pytest-outbound*",
        ]
    )


def test_under_xdist_a_library_that_cannot_be_patched_fails_tests_and_the_session(
    pytester: pytest.Pytester,
) -> None:
    """A worker's usage error is lost by xdist ("no active workers"): a worker fails each
    test's setup instead, and hands the error to the controller's summary, also when no test
    failed for it (the importing test skipped itself)."""
    pytester.makepyfile(httpx=FAKE_HTTPX)
    pytester.makepyfile(
        test_collected="import httpx\n\n\ndef test_a():\n    pass\n\n\ndef test_b():\n    pass\n"
    )
    result = run_alone(pytester, "-p", "xdist", "-n", "2")
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(["*pytest-outbound could not patch httpx 0.0.1*"])
    result.stdout.no_fnmatch_line("*INTERNALERROR*")

    (pytester.path / "test_collected.py").unlink()
    pytester.makepyfile(
        # skipped after the import: a skip report shows no sections, only the summary can tell
        test_skipped="import pytest\n\n\ndef test_it():\n"
        "    import httpx\n    pytest.skip('the import is what this test is for')\n"
    )
    result = run_alone(pytester, "-p", "xdist", "-n", "2")
    result.assert_outcomes(skipped=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*pytest-outbound could not patch httpx 0.0.1*"])


def test_a_nested_sessions_patch_over_this_one_is_not_wrapped_again() -> None:
    """An outer and an inner installation both re-run an installer (a reload inside the
    nested session): the outer one finds the inner one's wrapper, which wraps its own."""

    class Owner:
        def send(self) -> str:
            return "sent"

    calls: list[str] = []

    def install(patches: Patches, who: str) -> None:
        original = Owner.send

        def send(self: Owner) -> str:
            calls.append(who)
            return original(self)

        patches.patch(Owner, "send", send)

    outer, inner = Patches(), Patches()
    install(outer, "outer")
    install(inner, "inner")
    install(outer, "outer")
    install(inner, "inner")
    assert Owner().send() == "sent"
    assert calls == ["inner", "outer"]
    inner.undo()
    outer.undo()
    assert not hasattr(Owner.send, "__wrapped__")


def test_a_package_executed_from_its_file_by_hand_is_patched_by_catch_up(probe: Probe) -> None:
    """importlib's recipe for importing a source file directly never asks sys.meta_path: the
    watch reports the submodule, which ends while the package is part-way, and the package's
    installer must not run then (it would fail, and the failure would stick)."""
    probe.write()
    init = probe.root / probe.package / "__init__.py"
    init.write_text("from outbound_probe_lib import client\n\nCOMPLETE = True\n")
    complete: list[bool] = []

    def package_installer(guard: Guard, patches: Patches) -> None:
        complete.append(sys.modules[probe.package].COMPLETE)

    probe.install()  # watches the submodule
    package_watch = Installation(
        probe.made[0].guard, adapters=[((probe.package,), probe.installer(package_installer))]
    )
    probe.made.append(package_watch)
    spec = importlib.util.spec_from_file_location(
        probe.package, init, submodule_search_locations=[str(init.parent)]
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[probe.package] = module
    spec.loader.exec_module(module)
    assert len(probe.seen) == 1  # the submodule's import was watched
    assert complete == []
    package_watch.catch_up()
    assert complete == [True]
    assert package_watch.error is None


def test_a_module_whose_class_reads_attributes_its_own_way_is_still_patched(
    probe: Probe,
) -> None:
    """Some libraries give their module a ModuleType subclass (for deprecated names): that is
    an imported module like any other."""

    class Deprecating(types.ModuleType):
        def __getattribute__(self, name: str) -> object:
            return super().__getattribute__(name)

    installation = probe.install()
    module = types.ModuleType(probe.name)
    module.__spec__ = importlib.machinery.ModuleSpec(probe.name, None)
    module.Client = type("Client", (), {})  # type: ignore[attr-defined]
    module.__class__ = Deprecating
    package = types.ModuleType(probe.package)
    package.client = module  # type: ignore[attr-defined]
    sys.modules[probe.package] = package
    sys.modules[probe.name] = module
    installation.catch_up()
    assert [client for _, client in probe.seen] == [module.Client]


def test_an_httpx_put_back_in_sys_modules_still_carries_the_url_as_written(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pytester's snapshot, or ``mock.patch.dict(sys.modules)``, puts the first httpx back
    after a fresh one was imported: its requests are judged by the URL as written again."""
    monkeypatch.setenv("COLUMNS", "500")  # each line of the summary whole
    pytester.makepyfile(
        """
        import sys
        import httpx

        URL = "https://evil.com\\\\@octopus.com/"
        CLIENT = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200)))

        def test_before():
            CLIENT.get(URL)

        def test_a_fresh_httpx_then_put_back():
            saved = {n: m for n, m in sys.modules.items() if n.split(".")[0] == "httpx"}
            for name in saved:
                del sys.modules[name]
            import httpx as fresh
            assert fresh.Client is not CLIENT.__class__
            sys.modules.update(saved)

        def test_after():
            CLIENT.get(URL)
        """
    )
    result = run_alone(pytester, "-p", "no:randomly", "-rN", ini="outbound_allow = octopus.com\n")
    result.assert_outcomes(passed=1, failed=2)
    for test in ("test_before", "test_after"):
        result.stdout.fnmatch_lines([f"    *::{test} at *: GET *evil.com*@octopus.com/ [[]httpx]"])


def test_an_error_reported_only_where_no_one_reads_it_is_in_the_summary(
    pytester: pytest.Pytester,
) -> None:
    """An xfail or skip report does not show the sections added to it: the session's summary
    lists the failure, and the session fails."""
    pytester.makepyfile(httpx=FAKE_HTTPX)
    pytester.makepyfile(
        test_hidden="""
        import sys, pytest

        @pytest.mark.xfail(reason="an xfail report shows no sections: the case under test")
        def test_expected_to_fail():
            try:
                import httpx
            finally:
                sys.modules.pop("httpx", None)
            assert False
        """
    )
    result = run_alone(pytester)
    result.assert_outcomes(xfailed=1)
    result.stdout.fnmatch_lines(["*pytest-outbound could not patch httpx 0.0.1*"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_requests_mock_imported_after_a_requests_the_watch_never_saw_sends_through_it(
    pytester: pytest.Pytester,
) -> None:
    """requests executed by hand (the watch never reports it) and requests-mock imported
    next: requests is patched before requests-mock's saved send is made ours, or that saved
    send would stay the unpatched one for good."""
    pytester.makepyfile(
        """
        import importlib.machinery, importlib.util, sys

        def test_mocked(outbound):
            spec = importlib.machinery.PathFinder.find_spec("requests")  # not sys.meta_path
            module = importlib.util.module_from_spec(spec)
            sys.modules["requests"] = module
            spec.loader.exec_module(module)
            import requests, requests_mock

            with requests_mock.Mocker() as mock:
                mock.get("http://api.example.com/x", text="mocked")
                assert requests.get("http://api.example.com/x").text == "mocked"
            assert [(r.url, r.client) for r in outbound.requests] == [
                ("http://api.example.com/x", "requests")
            ]
        """
    )
    run_alone(pytester, ini="outbound_allow = api.example.com\n").assert_outcomes(passed=1)


# -- the plugin's own modules ------------------------------------------------------------------

REWRITTEN = """
import sys
from _pytest.assertion.rewrite import AssertionRewritingHook


def test_plugin_modules_are_not_rewritten():
    rewritten = sorted(
        name
        for name, module in list(sys.modules.items())
        if name.startswith("pytest_outbound.")
        and isinstance(getattr(module.__spec__, "loader", None), AssertionRewritingHook)
    )
    assert rewritten == []
"""


def test_the_plugins_modules_load_compiled_not_rewritten(pytester: pytest.Pytester) -> None:
    """pytest rewrites every module of an installed plugin, from source, and where it cannot
    cache that (``PYTHONDONTWRITEBYTECODE``, a read-only site-packages) at every start of
    every process: the plugin's submodules are found as without pytest instead (compat's
    vcrpy: 0.15 s of CPU a process)."""
    pytester.makepyfile(test_rewritten=REWRITTEN)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTHONDONTWRITEBYTECODE", "1")
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:randomly")
    result.assert_outcomes(passed=1)
