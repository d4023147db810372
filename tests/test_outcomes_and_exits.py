"""A blocked request fails the run, whatever hid it: a test's outcome, a hook, an early exit.

Found by a second, adversarial look at the enforcement (issue 21): each inner run blocks a
connection to a loopback listener this (outer) process owns (``outbound_local = enforce``
makes loopback judged), and something then tries to make the run pass anyway. The listener is
read without waiting after the run: nothing reached it, and the run failed. Each runs in a
process of its own: exit statuses are what is tested.
"""

from __future__ import annotations

import socket
import textwrap
from collections.abc import Iterator

import pytest

INI = """
[pytest]
outbound_mode = {mode}
outbound_local = enforce
outbound_sensitive_machine = {machine}
asyncio_default_fixture_loop_scope = function
"""

CONNECT = """
import socket

def connect(port):
    socket.create_connection(("127.0.0.1", port), timeout=2).close()
"""


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.setblocking(False)
    yield server
    server.close()


def reached(server: socket.socket) -> bool:
    try:
        server.accept()[0].close()
    except BlockingIOError:
        return False
    return True


def run(
    pytester: pytest.Pytester,
    files: dict[str, str],
    *args: str,
    mode: str = "enforce",
    machine: str = "false",
) -> pytest.RunResult:
    pytester.makeini(INI.format(mode=mode, machine=machine))
    pytester.makepyfile(netlib=CONNECT)
    for name, source in files.items():
        pytester.makepyfile(**{name: textwrap.dedent(source)})
    return pytester.runpytest_subprocess("-p", "no:randomly", *args, timeout=120)


def port_fixture(server: socket.socket) -> str:
    return f"import pytest\n\n@pytest.fixture\ndef port():\n    return {server.getsockname()[1]}\n"


# -- a test's outcome that would hide the block ---------------------------------------------------

HIDDEN_BY_THE_OUTCOME = {
    "unittest.SkipTest in a plain test": """
        import unittest
        from netlib import connect

        def test_it(port):
            try:
                connect(port)
            except Exception:
                raise unittest.SkipTest("no network")
        """,
    "TestCase.skipTest after a swallowed block": """
        import os, unittest
        from netlib import connect

        class T(unittest.TestCase):
            def test_it(self):
                try:
                    connect(int(os.environ["PORT"]))
                except Exception:
                    self.skipTest("no network")
        """,
    "unittest.expectedFailure": """
        import os, unittest
        from netlib import connect

        class T(unittest.TestCase):
            @unittest.expectedFailure
            def test_it(self):
                connect(int(os.environ["PORT"]))
        """,
    "an xfail marker and a block in a fixture's teardown": """
        import pytest
        from netlib import connect

        @pytest.fixture
        def service(port):
            yield
            connect(port)

        @pytest.mark.xfail(reason="flaky")
        def test_it(service):
            pass
        """,
    "a skip in a fixture's teardown after a swallowed block": """
        import pytest
        from netlib import connect

        @pytest.fixture
        def service(port):
            yield
            try:
                connect(port)
            except Exception:
                pytest.skip("no network at teardown")

        def test_it(service):
            pass
        """,
    "pytest.exit(returncode=0) after a block": """
        import pytest
        from netlib import connect

        def test_it(port):
            try:
                connect(port)
            except Exception:
                pytest.exit("offline", returncode=0)
        """,
    "a conftest hook that rewrites the reports as passed": """
        from netlib import connect

        def test_it(port):
            connect(port)
        """,
}

REWRITE_REPORTS = """
import pytest

@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    report.outcome = "passed"
    return report
"""


@pytest.mark.parametrize("case", list(HIDDEN_BY_THE_OUTCOME))
def test_a_block_the_outcome_would_hide_fails_the_run(
    pytester: pytest.Pytester,
    listener: socket.socket,
    monkeypatch: pytest.MonkeyPatch,
    case: str,
) -> None:
    monkeypatch.setenv("PORT", str(listener.getsockname()[1]))
    conftest = port_fixture(listener)
    if "rewrites" in case:
        conftest += REWRITE_REPORTS
    result = run(pytester, {"conftest": conftest, "test_it": HIDDEN_BY_THE_OUTCOME[case]})
    assert not reached(listener)
    assert result.ret != 0, result.stdout.str()
    result.stdout.fnmatch_lines(["*CONNECT tcp://127.0.0.1:*"])  # in its failure, or the summary


# -- hooks that raise -----------------------------------------------------------------------------

RAISING_HOOKS = {
    "a violation hook that skips": (
        "import pytest\n\ndef pytest_outbound_violation(request):\n"
        "    pytest.skip('needs the network')\n"
    ),
    "a violation hook whose warning is an error": (
        "import warnings\n\ndef pytest_outbound_violation(request):\n"
        "    warnings.warn('undocumented egress')\n"
    ),
    "a request hook that raises": (
        "def pytest_outbound_request(request):\n    raise LookupError(request.url)\n"
    ),
}


@pytest.mark.parametrize("case", list(RAISING_HOOKS))
def test_a_hook_that_raises_does_not_lose_the_block(
    pytester: pytest.Pytester, listener: socket.socket, case: str
) -> None:
    """The block is counted before the hooks run, and ``OutboundBlocked`` is raised whatever
    they raise (chained to it)."""
    port = listener.getsockname()[1]
    test = f"""
        import warnings
        from netlib import connect

        def test_it():
            warnings.simplefilter("error", UserWarning)
            try:
                connect({port})
            except Exception:
                pass  # the code under test swallows whatever it gets
        """
    result = run(pytester, {"conftest": RAISING_HOOKS[case], "test_it": test})
    assert not reached(listener)
    assert result.ret != 0, result.stdout.str()
    result.stdout.fnmatch_lines(["*1 outbound request(s) were blocked*"])


# -- ways out of the process that skip the session's end ----------------------------------------


def test_pytest_exit_with_status_0_in_a_conftest_configure_fails_all_the_same(
    pytester: pytest.Pytester, listener: socket.socket
) -> None:
    port = listener.getsockname()[1]
    conftest = f"""
        import pytest
        from netlib import connect

        def pytest_configure(config):
            try:
                connect({port})
            except Exception:
                pytest.exit("offline", returncode=0)
        """
    result = run(pytester, {"conftest": conftest, "test_it": "def test_ok():\n    pass\n"})
    assert not reached(listener)
    assert result.ret != 0
    result.stderr.fnmatch_lines(["*request(s) were blocked (enforce)*"])


def test_sys_exit_0_while_the_conftest_is_imported_fails_all_the_same(
    pytester: pytest.Pytester, listener: socket.socket
) -> None:
    port = listener.getsockname()[1]
    conftest = f"""
        import sys
        from netlib import connect

        try:
            connect({port})
        except Exception:
            sys.exit(0)
        """
    result = run(pytester, {"conftest": conftest, "test_it": "def test_ok():\n    pass\n"})
    assert not reached(listener)
    assert result.ret == 1
    result.stderr.fnmatch_lines(
        ["pytest-outbound: 1 request(s) were blocked (enforce), and the run was ending*"]
    )


def test_a_worker_that_sends_at_its_unconfigure_fails_the_xdist_run(
    pytester: pytest.Pytester, listener: socket.socket
) -> None:
    """After a worker reported to the controller, what it blocks reaches the controller
    through the file it was given."""
    port = listener.getsockname()[1]
    conftest = f"""
        from netlib import connect

        def pytest_unconfigure(config):
            if hasattr(config, "workerinput"):
                try:
                    connect({port})
                except Exception:
                    pass
        """
    result = run(
        pytester, {"conftest": conftest, "test_it": "def test_ok():\n    pass\n"}, "-n", "2"
    )
    assert not reached(listener)
    assert result.ret != 0, result.stdout.str() + result.stderr.str()
    result.stderr.fnmatch_lines(["*blocked in a pytest-xdist worker after it reported*"])


# -- what the plugin calls itself is not a way around it ----------------------------------------


@pytest.mark.machine_probe
def test_code_the_machine_probe_calls_is_judged(
    pytester: pytest.Pytester, listener: socket.socket
) -> None:
    """The probe of this machine calls ``getpass.getuser``, which a conftest may have
    wrapped: what the wrapper sends is judged like anything else."""
    port = listener.getsockname()[1]
    conftest = f"""
        import getpass
        from netlib import connect

        _getuser = getpass.getuser

        def getuser():
            try:
                connect({port})
            except Exception:
                pass
            return _getuser()

        getpass.getuser = getuser
        """
    result = run(
        pytester, {"conftest": conftest, "test_it": "def test_ok():\n    pass\n"}, machine="true"
    )
    assert not reached(listener)
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*request(s) outside any test were blocked (enforce)*"])


def test_a_thread_a_plugin_starts_as_it_is_imported_is_judged(
    pytester: pytest.Pytester, listener: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before any policy is known (another plugin's import), every thread's egress is kept
    and judged when the guard starts: it has left, but the run fails."""
    port = listener.getsockname()[1]
    plugin = f"""
        import threading
        from netlib import connect

        def send():
            try:
                connect({port})
            except Exception:
                pass

        thread = threading.Thread(target=send)
        thread.start()
        thread.join()
        """
    monkeypatch.setenv("PYTEST_PLUGINS", "sends_from_a_thread")
    monkeypatch.setenv("PYTHONPATH", str(pytester.path))
    result = run(pytester, {"sends_from_a_thread": plugin, "test_it": "def test_ok():\n    pass\n"})
    assert result.ret != 0
    result.stdout.fnmatch_lines(["    <collect> at netlib.py:*: CONNECT tcp://*"])
