"""Children fail closed (issue 21, class 6): no Python child runs unguarded silently.

Each case runs an inner session with ``outbound_mode = enforce`` and ``outbound_local =
enforce`` (a loopback target is then judged as outbound) whose test starts a child process
that connects to a TCP listener this (outer) process owns on 127.0.0.1. After the run the
listener is read without waiting (a connection on loopback is queued before ``connect``
returns), so what reached it is known exactly. Where a block is expected: the listener got
nothing and the inner run failed.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

INI = """
[pytest]
outbound_mode = enforce
outbound_local = enforce
outbound_sensitive_machine = false
"""

# The inner test files' helpers: start a child the way the case says, and log what happened.
HELPER = '''
import json
import os
import subprocess
import sys

from pytest_outbound import OutboundBlocked

PORT = int(open(os.path.join(os.path.dirname(__file__), "port.txt")).read())
# The child: connect to the listener, and say what happened (its guard blocks it, or not).
CODE = (
    "import socket, sys\\n"
    "try:\\n"
    f"    socket.create_connection(('127.0.0.1', {PORT}), timeout=10).close()\\n"
    "    print('connected')\\n"
    "except Exception as error:\\n"
    "    print(type(error).__name__)\\n"
)


def run(argv, **options):
    """Run the child; log "blocked" (OutboundBlocked: it was never started) or what it did."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, **options)
    except OutboundBlocked as error:
        outcome = {"outcome": "blocked", "message": str(error)}
    else:
        outcome = {"outcome": "ran", "status": done.returncode, "stdout": done.stdout,
                   "stderr": done.stderr}
    with open("outcomes.jsonl", "a") as log:
        log.write(json.dumps(outcome) + "\\n")
'''


class Listener:
    """A TCP server on 127.0.0.1 that counts the connections that reached it."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.setblocking(False)
        self.port: int = self.sock.getsockname()[1]

    def received(self) -> int:
        count = 0
        while True:
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                return count
            conn.close()
            count += 1


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.sock.close()


@pytest.fixture
def inner(pytester: pytest.Pytester, listener: Listener) -> pytest.Pytester:
    pytester.makeini(INI)
    pytester.makepyfile(childhelper=HELPER)
    (pytester.path / "port.txt").write_text(str(listener.port))
    return pytester


def outcomes(pytester: pytest.Pytester) -> list[dict[str, object]]:
    path = pytester.path / "outcomes.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


# -- the parent stops what the bootstrap could not guard ------------------------------------------

CASES = {
    "python -I": "run([sys.executable, '-I', '-c', CODE])",
    "python -E": "run([sys.executable, '-E', '-c', CODE])",
    "python -S": "run([sys.executable, '-S', '-c', CODE])",
    "python -Es (combined)": "run([sys.executable, '-Es', '-c', CODE])",
    "python -uIS (combined)": "run([sys.executable, '-uIS', '-c', CODE])",
    "env without PYTHONPATH": (
        "run([sys.executable, '-c', CODE],"
        " env={k: v for k, v in os.environ.items() if k != 'PYTHONPATH'})"
    ),
    "env without PYTEST_OUTBOUND_CHILD": (
        "run([sys.executable, '-c', CODE],"
        " env={k: v for k, v in os.environ.items() if k != 'PYTEST_OUTBOUND_CHILD'})"
    ),
    "a project's sitecustomize earlier on PYTHONPATH": (
        "run([sys.executable, '-c', CODE], env=dict(os.environ,"
        " PYTHONPATH=os.path.abspath('theirs') + os.pathsep + os.environ['PYTHONPATH']))"
    ),
    "os.system with python -I": (
        "os.system(shlex.join([sys.executable, '-I', '-c', CODE]))\n"
        "open('outcomes.jsonl', 'a').write(json.dumps({'outcome': 'ran'}) + '\\n')"
    ),
    "a shell command that drops PYTHONPATH": (
        "run('PYTHONPATH=src ' + shlex.join([sys.executable, '-c', CODE]), shell=True)"
    ),
    "a script whose #! line says -I": (
        "open('tool', 'w').write('#!' + sys.executable + ' -I\\n' + CODE)\n"
        "os.chmod('tool', 0o755)\n"
        "run([os.path.abspath('tool')])"
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_an_unguardable_python_child_is_stopped_before_it_starts(
    inner: pytest.Pytester, listener: Listener, case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "500")  # each line of the summary whole
    (inner.path / "theirs").mkdir()
    (inner.path / "theirs" / "sitecustomize.py").write_text("THEIRS = True\n")
    body = textwrap.indent(CASES[case], "    ")
    (inner.path / "test_child.py").write_text(
        "import json, os, shlex, sys\nfrom childhelper import CODE, run\n\n\n"
        f"def test_child():\n{body}\n"
    )
    result = inner.runpytest("-p", "no:randomly", "--outbound-report", "r.json")
    assert listener.received() == 0, (case, outcomes(inner))
    assert result.ret != 0
    result.assert_outcomes(failed=1)
    logged = outcomes(inner)
    if "os.system" not in case:  # os.system raised: nothing was logged after it
        assert [o["outcome"] for o in logged] == ["blocked"], logged
        message = str(logged[0]["message"])
        assert "(client: child)" in message, message
        assert "a Python child process the plugin cannot guard" in message, message
        assert "outbound_child_allow" in message.partition("fix: ")[2], message
    else:
        assert logged == [], logged
    result.stdout.fnmatch_lines(
        [
            "  child processes: unguarded-child: 1 request(s) in 1 test(s)",
            "    test_child.py::test_child at *: EXEC child:* [[]child]",
        ]
    )
    report = json.loads((inner.path / "r.json").read_text())
    [record] = report["requests"]
    assert (record["client"], record["reasons"], record["verdict"]) == (
        "child",
        ["unguarded-child"],
        "violation",
    )
    assert record["nodeid"] == "test_child.py::test_child"
    assert report["summary"]["undocumented_hosts"] == []


WHY_I = (
    "it is started with -I (isolated mode ignores PYTHONPATH and every PYTHON* variable):"
    " the bootstrap never runs"
)


def test_the_message_says_what_was_stopped_and_why(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        test_child="""
        import subprocess, sys

        def test_child():
            subprocess.run([sys.executable, "-I", "-c", "pass"])
        """
    )
    result = inner.runpytest("-p", "no:randomly")
    assert result.ret != 0
    result.stdout.fnmatch_lines(
        [
            "E * pytest_outbound.OutboundBlocked: outbound request blocked:"
            " EXEC child:python -I -c pass (client: child)",
            "E *  from: test_child.py:4 in test_child.py::test_child [[]call]",
            "E *  why:  a Python child process the plugin cannot guard (python -I -c pass):"
            f" {WHY_I}; what it sends would not be judged, so enforcement fails closed",
        ]
    )


def test_subprocess_off_in_enforce_makes_every_python_child_a_violation(
    inner: pytest.Pytester, listener: Listener
) -> None:
    inner.makeini(INI + "outbound_subprocess = false\n")
    inner.makepyfile(
        test_child="""
        import sys
        from childhelper import CODE, run

        def test_child():
            run([sys.executable, "-c", CODE])
        """
    )
    result = inner.runpytest("-p", "no:randomly")
    assert listener.received() == 0
    assert result.ret != 0
    assert [o["outcome"] for o in outcomes(inner)] == ["blocked"]
    result.stdout.fnmatch_lines(["*outbound_subprocess = false: Python child processes are not*"])


def test_a_multiprocessing_spawn_child_is_judged_too(
    inner: pytest.Pytester, listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    """multiprocessing's spawn start method raises no audit event (``fork_exec``): its Python
    child is judged all the same."""
    inner.makeini(INI + "outbound_subprocess = false\n")
    inner.makepyfile(
        test_child="""
        import multiprocessing, socket
        from childhelper import PORT
        from pytest_outbound import OutboundBlocked

        def connect():
            socket.create_connection(("127.0.0.1", PORT), timeout=10).close()

        def test_child():
            process = multiprocessing.get_context("spawn").Process(target=connect)
            try:
                process.start()
            except OutboundBlocked:
                open("outcome.txt", "w").write("blocked")
            else:
                process.join()
                open("outcome.txt", "w").write(f"ran: {process.exitcode}")
        """
    )
    monkeypatch.setenv("COLUMNS", "500")  # each line of the summary whole
    result = inner.runpytest("-p", "no:randomly")
    assert listener.received() == 0
    assert result.ret != 0
    assert (inner.path / "outcome.txt").read_text() == "blocked"
    result.stdout.fnmatch_lines(
        [
            "  child processes: unguarded-child: 1 request(s) in 1 test(s)",
            "    *::test_child at *: EXEC child:python*-c 'from multiprocessing.*' [[]child]",
        ]
    )


def test_a_guardable_child_runs_guarded_by_default_in_enforce(
    inner: pytest.Pytester, listener: Listener
) -> None:
    """No ``outbound_subprocess`` in the ini: on in enforce. The child starts, and its own
    guard blocks its connection."""
    inner.makepyfile(
        test_child="""
        import sys
        from childhelper import CODE, run

        def test_child():
            run([sys.executable, "-c", CODE])
        """
    )
    result = inner.runpytest("-p", "no:randomly")
    assert listener.received() == 0
    assert result.ret != 0
    [logged] = outcomes(inner)
    assert (logged["outcome"], logged["stdout"]) == ("ran", "OutboundBlocked\n"), logged
    result.stdout.fnmatch_lines(["*1 outbound request(s) from child processes were blocked:"])


def test_children_started_while_the_conftest_is_imported_are_guarded_and_judged(
    inner: pytest.Pytester, listener: Listener
) -> None:
    """Before any test, while the rootdir's conftest is imported: a Python child gets the
    guard (its connection is blocked, and fails the session), one that cannot be guarded is
    stopped before it starts."""
    inner.makeconftest(
        """
        import os, sys
        from childhelper import CODE, run

        run([sys.executable, "-c", CODE])
        run([sys.executable, "-I", "-c", CODE])
        """
    )
    inner.makepyfile(test_fine="def test_fine():\n    pass\n")
    result = inner.runpytest_subprocess("-p", "no:randomly")
    assert listener.received() == 0
    assert result.ret != 0
    guarded, isolated = outcomes(inner)
    assert (guarded["outcome"], guarded["stdout"]) == ("ran", "OutboundBlocked\n"), guarded
    assert isolated["outcome"] == "blocked", isolated
    assert "EXEC child:python -I" in str(isolated["message"])
    assert "outbound_child_allow" in str(isolated["message"])
    result.stdout.fnmatch_lines(["*request(s) outside any test were blocked (enforce)*"])


# -- another interpreter ----------------------------------------------------------------------------


def _other_interpreter(where: Path) -> Path:
    """The interpreter beneath this virtual environment, by a path of its own: it cannot
    import pytest-outbound by itself (it is installed in the environment only)."""
    where.mkdir()
    link = where / "python3"
    link.symlink_to(os.path.realpath(sys.executable))
    return link


def test_another_interpreter_is_guarded_with_the_parents_package(
    inner: pytest.Pytester, listener: Listener
) -> None:
    other = _other_interpreter(inner.path / "other")
    inner.makepyfile(
        test_child=f"""
        from childhelper import CODE, run

        def test_child():
            where = "import pytest_outbound, sys; print(pytest_outbound.__file__, file=sys.stderr)"
            run([{str(other)!r}, "-c", where + "\\n" + CODE])
        """
    )
    result = inner.runpytest("-p", "no:randomly")
    assert listener.received() == 0
    assert result.ret != 0
    [logged] = outcomes(inner)
    assert (logged["outcome"], logged["stdout"]) == ("ran", "OutboundBlocked\n"), logged
    import pytest_outbound

    assert logged["stderr"] == pytest_outbound.__file__ + "\n"  # the parent's package
    result.stdout.fnmatch_lines(["*1 outbound request(s) from child processes were blocked:"])


SHADOW = "raise ImportError('simulated: an interpreter this plugin cannot run in')\n"


@pytest.mark.parametrize("mode", ["enforce", "audit"])
def test_a_child_whose_guard_cannot_start_fails_closed(
    inner: pytest.Pytester, listener: Listener, mode: str
) -> None:
    """The bootstrap runs, but the guard cannot start (here the child's ``ipaddress``, which
    the plugin needs, is broken: as in an interpreter the plugin cannot run in). In enforce
    the child is recorded and ended before its own code runs, with one line on stderr; in
    audit it is recorded and runs."""
    (inner.path / "shadow").mkdir()
    (inner.path / "shadow" / "ipaddress.py").write_text(SHADOW)
    inner.makeini(INI.replace("enforce", mode, 1) + "outbound_subprocess = true\n")
    inner.makepyfile(
        test_child="""
        import os, sys
        from childhelper import CODE, run

        def test_child():
            pythonpath = os.environ["PYTHONPATH"] + os.pathsep + os.path.abspath("shadow")
            run([sys.executable, "-c", CODE], env=dict(os.environ, PYTHONPATH=pythonpath))
        """
    )
    result = inner.runpytest("-p", "no:randomly", "--outbound-report", "r.json")
    [logged] = outcomes(inner)
    assert logged["outcome"] == "ran"
    stderr = str(logged["stderr"]).splitlines()
    assert "Traceback" not in str(logged["stderr"])
    report = json.loads((inner.path / "r.json").read_text())
    [record] = report["requests"]
    assert (record["client"], record["reasons"], record["nodeid"]) == (
        "child",
        ["unguarded-child"],
        "test_child.py::test_child",
    )
    if mode == "enforce":
        assert listener.received() == 0
        assert result.ret != 0
        assert (logged["status"], logged["stdout"]) == (1, ""), logged
        assert len(stderr) == 1, stderr
        assert stderr[0].startswith(
            "pytest-outbound: stopped this Python child process before it ran: its guard"
            " could not start in this interpreter (ImportError: simulated: an interpreter"
            " this plugin cannot run in)"
        ), stderr
        result.stdout.fnmatch_lines(
            ["*EXEC child:* unguarded-child (its guard could not start in this interpreter*"]
        )
    else:
        assert listener.received() == 1
        assert result.ret == 0
        assert (logged["status"], logged["stdout"]) == (0, "connected\n"), logged
        assert stderr[0].startswith("pytest-outbound: this Python child process runs unguarded")


# -- allowed, and not Python -------------------------------------------------------------------------


def test_outbound_child_allow_lets_a_named_program_run_unguarded(
    inner: pytest.Pytester, listener: Listener
) -> None:
    name = os.path.basename(sys.executable)
    inner.makeini(INI + f"outbound_child_allow =\n    not-this-one\n    {name}\n")
    inner.makepyfile(
        test_child="""
        import sys
        from childhelper import CODE, run

        def test_child():
            run([sys.executable, "-I", "-c", CODE])
        """
    )
    result = inner.runpytest("-p", "no:randomly", "--outbound-report", "r.json")
    assert listener.received() == 1
    assert result.ret == 0
    [logged] = outcomes(inner)
    assert (logged["outcome"], logged["stdout"]) == ("ran", "connected\n"), logged
    result.stdout.fnmatch_lines(
        [
            "child processes the plugin cannot watch (what they send is not judged):",
            f"  {name} (outbound_child_allow): 1 run(s)",
        ]
    )
    report = json.loads((inner.path / "r.json").read_text())
    assert report["unwatched_children"] == {f"{name} (outbound_child_allow)": 1}


def test_programs_that_are_not_python_are_listed_as_unwatched(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        test_child="""
        import os, subprocess

        def test_child():
            subprocess.run(["true"])
            subprocess.run(["true"])
            assert os.system("cat /dev/null && echo hi > /dev/null") == 0
            subprocess.run("true | cat", shell=True)
        """
    )
    result = inner.runpytest("-p", "no:randomly", "--outbound-report", "r.json")
    assert result.ret == 0
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "child processes the plugin cannot watch (what they send is not judged):",
            "  cat: 2 run(s)",
            "  true: 2 run(s)",  # and the shell builtin true, no process
        ]
    )
    report = json.loads((inner.path / "r.json").read_text())
    assert report["unwatched_children"] == {"cat": 2, "true": 2}
    assert report["requests"] == []
    from pytest_outbound._report import load_report

    load_report(inner.path / "r.json")  # valid against the schema


def test_in_audit_python_children_are_listed_as_unwatched_when_not_guarded(
    inner: pytest.Pytester, listener: Listener
) -> None:
    """audit leaves outbound_subprocess off by default: its Python children run unguarded,
    and the summary says so (no violation: audit records requests, and none was seen)."""
    inner.makeini(INI.replace("enforce", "audit", 1))
    inner.makepyfile(
        test_child="""
        import sys
        from childhelper import CODE, run

        def test_child():
            run([sys.executable, "-c", CODE])
        """
    )
    result = inner.runpytest("-p", "no:randomly")
    assert result.ret == 0
    assert listener.received() == 1
    result.stdout.fnmatch_lines(
        [
            "mode: audit; 0 outbound request(s), 0 violation(s)",
            "child processes the plugin cannot watch (what they send is not judged):",
            f"  {os.path.basename(sys.executable)} (outbound_subprocess is off): 1 run(s)",
        ]
    )


# -- late children ---------------------------------------------------------------------------------

LATE_CHILD = """
import os, socket, sys, time
while not os.path.exists("go"):
    time.sleep(0.01)
try:
    socket.create_connection(("127.0.0.1", PORT), timeout=10).close()
    print("connected")
except Exception as error:
    print(type(error).__name__)
"""


def test_a_child_that_connects_after_the_session_ended_says_so_on_stderr(
    inner: pytest.Pytester, listener: Listener
) -> None:
    """The session (in this process) is over and its spool gone when the child connects:
    its guard blocks it and says so on its stderr; no traceback."""
    (inner.path / "late.py").write_text(LATE_CHILD.replace("PORT", str(listener.port)))
    inner.makepyfile(
        test_child="""
        import subprocess, sys

        def test_child():
            proc = subprocess.Popen(
                [sys.executable, "late.py"], stdout=open("late.out", "w"),
                stderr=open("late.err", "w"),
            )
            sys._outbound_late_child = proc
        """
    )
    result = inner.runpytest("-p", "no:randomly")
    result.assert_outcomes(passed=1)
    proc = sys.__dict__.pop("_outbound_late_child")
    (inner.path / "go").touch()
    assert proc.wait(timeout=120) == 0
    assert listener.received() == 0
    assert (inner.path / "late.out").read_text() == "OutboundBlocked\n"
    err = (inner.path / "late.err").read_text()
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("pytest-outbound: after its test session ended, child process")
    assert "tcp://127.0.0.1:" in lines[0]
    assert "test_child.py::test_child [call]" in lines[0]
    assert lines[0].endswith(": violation (undocumented), blocked"), lines[0]


def test_a_child_that_connects_after_unconfigure_fails_the_run_and_reaches_the_report(
    inner: pytest.Pytester, listener: Listener
) -> None:
    """A session that owns its process keeps the spool until the interpreter exits: a child
    blocked after pytest's unconfigure (and before the exit) still fails the run and is in
    the report."""
    (inner.path / "late.py").write_text(LATE_CHILD.replace("PORT", str(listener.port)))
    inner.makeconftest(
        """
        import pytest

        @pytest.hookimpl(trylast=True)
        def pytest_unconfigure(config):
            open("go", "w").close()  # after the plugin's own unconfigure
        """
    )
    inner.makepyfile(
        test_child="""
        import atexit, subprocess, sys

        def test_child():
            proc = subprocess.Popen([sys.executable, "late.py"], stdout=open("late.out", "w"))
            atexit.register(proc.wait)  # runs before the plugin's last look at exit
        """
    )
    result = inner.runpytest_subprocess("-p", "no:randomly", "--outbound-report", "r.json")
    assert listener.received() == 0
    assert (inner.path / "late.out").read_text() == "OutboundBlocked\n"
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*1 passed*"])
    result.stderr.fnmatch_lines(
        [
            "pytest-outbound: CONNECT tcp://127.0.0.1:* (client: socket) from late.py:* was blocked"
            " in a child process after the test session [[]call]: undocumented; the run fails*",
        ]
    )
    assert "Traceback" not in result.stderr.str()
    report = json.loads((inner.path / "r.json").read_text())
    [record] = report["requests"]
    assert (record["client"], record["nodeid"], record["verdict"]) == (
        "socket",
        "test_child.py::test_child",
        "violation",
    )


# -- pytest-xdist ----------------------------------------------------------------------------------

XDIST_TESTS = """
import socket, sys
import pytest
from childhelper import CODE, PORT, run

def test_worker_has_one_guard():
    child = sys.modules.get("pytest_outbound._child")
    assert child is None or child._started is None

def test_isolated_child():
    run([sys.executable, "-I", "-c", CODE])

def test_guarded_child():
    run([sys.executable, "-c", CODE])

def test_direct():
    socket.create_connection(("127.0.0.1", PORT), timeout=10).close()

def test_nothing():
    pass
"""


@pytest.mark.parametrize("subprocess", ["default", "false"])
def test_xdist_workers_run_in_enforce(
    inner: pytest.Pytester, listener: Listener, subprocess: str
) -> None:
    """Workers are Python children the controller starts (``python -c`` through execnet):
    they run the plugin themselves, so they start whatever ``outbound_subprocess`` says, and
    a worker that got the bootstrap's guard gives it up for its own session's."""
    if subprocess == "false":
        inner.makeini(INI + "outbound_subprocess = false\n")
    inner.makepyfile(test_xdist=XDIST_TESTS)
    result = inner.runpytest_subprocess(
        "-p", "xdist", "-n", "2", "-p", "no:randomly", "--outbound-report", "r.json"
    )
    assert listener.received() == 0
    assert result.ret != 0
    result.assert_outcomes(passed=2, failed=3)
    report = json.loads((inner.path / "r.json").read_text())
    by_test: dict[str, list[str]] = {}
    for record in report["requests"]:
        by_test.setdefault(record["nodeid"].split("::")[1], []).append(record["client"])
    expected = {"test_isolated_child": ["child"], "test_direct": ["socket"]}
    expected["test_guarded_child"] = ["child"] if subprocess == "false" else ["socket"]
    assert by_test == expected
    assert sorted(report["workers"]) == ["gw0", "gw1"]
    assert set(report["workers"].values()) == {"ok"}


def test_xdist_workers_start_where_warnings_are_errors(inner: pytest.Pytester) -> None:
    """A worker's bootstrap guard imports the plugin before the worker's pytest marks it for
    assertion rewriting: pytest's "Module already imported so cannot be rewritten" warning,
    which ``filterwarnings = error`` (urllib3's suite) turns into a crashed worker, is not
    raised (the package's docstring opts out of rewriting)."""
    inner.makeini(INI + "filterwarnings =\n    error::pytest.PytestAssertRewriteWarning\n")
    inner.makepyfile(test_nothing="def test_nothing():\n    pass\n")
    result = inner.runpytest_subprocess("-p", "xdist", "-n", "1", "-p", "no:randomly")
    assert "already imported" not in result.stdout.str() + result.stderr.str()
    result.assert_outcomes(passed=1)


def test_runpytest_subprocess_children_keep_working(pytester: pytest.Pytester) -> None:
    """pytester's ``runpytest_subprocess`` starts a Python child: in an enforce session it
    is guarded, and runs."""
    pytester.makeini(INI)
    pytester.makepyfile(
        test_outer="""
        pytest_plugins = ["pytester"]

        def test_nested(pytester):
            pytester.makepyfile("def test_ok(): pass")
            result = pytester.runpytest_subprocess("-p", "no:outbound")
            result.assert_outcomes(passed=1)
        """
    )
    result = pytester.runpytest("-p", "no:randomly")
    result.assert_outcomes(passed=1)


def test_interpreter_options_are_read() -> None:
    from pytest_outbound._launch import python_flags

    assert python_flags(["-u", "-X", "dev", "-W", "ignore", "-Es", "x.py", "-I"]) == {"u", "E", "s"}
    assert python_flags(["-Wignore", "-c", "-I"]) == set()
    assert python_flags(["-bIc", "pass"]) == {"b", "I"}
    assert python_flags(["-m", "pytest", "-S"]) == set()
    assert python_flags(["--check-hash-based-pycs", "always", "-S"]) == {"S"}


def test_shell_command_text_is_read(pytester: pytest.Pytester) -> None:
    """Not a test of a run: the shell reader names the programs and their environments."""
    from pytest_outbound._launch import shell_launches

    env = {"PYTHONPATH": "/b", "PATH": "/bin"}
    found = shell_launches(
        "cd x && A=1 env -u PYTHONPATH python3 -I y.py | grep z; export PYTHONPATH=/c:$PYTHONPATH"
        "; python3 w.py $(true) >/dev/null; $PY; echo > /dev/tcp/h/1",
        env,
        None,
    )
    readable = [(launch.argv, launch.env.get("PYTHONPATH")) if launch else None for launch in found]
    assert readable == [
        None,  # the /dev/tcp redirect
        (("python3", "-I", "y.py"), None),
        (("grep", "z"), "/b"),
        (("python3", "w.py", "$"), "/c:/b"),
        None,  # $PY
    ]
