"""outbound_subprocess: Python child processes get the same guard and report back to the test."""

from __future__ import annotations

import os

import pytest

CHILD_CODE = """
import sys, urllib.request
try:
    urllib.request.urlopen(sys.argv[1]).read()
    print("child: sent")
except Exception as error:
    print("child:", type(error).__name__)
"""

TESTS = """
import multiprocessing, subprocess, sys, urllib.request

def fetch(url, name):
    try:
        urllib.request.urlopen(url).read()
        outcome = "sent"
    except Exception as error:
        outcome = type(error).__name__
    open(name, "w").write(outcome)

def test_subprocess(outbound):
    out = subprocess.run([sys.executable, "child.py", URL], capture_output=True, text=True)
    open("subprocess.out", "w").write(out.stdout.split()[-1])

def test_multiprocessing_spawn(outbound):
    process = multiprocessing.get_context("spawn").Process(target=fetch, args=(URL, "spawn.out"))
    process.start()
    process.join()

def test_multiprocessing_fork(outbound):
    process = multiprocessing.get_context("fork").Process(target=fetch, args=(URL, "fork.out"))
    process.start()
    process.join()

def test_no_children(outbound):
    pass
"""


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(child=CHILD_CODE)
    return pytester


def test_children_are_blocked_and_attributed_to_their_test(suite: pytest.Pytester) -> None:
    suite.makeini(
        "[pytest]\noutbound_mode = enforce\noutbound_subprocess = true\n"
        "outbound_sensitive_machine = false\n"
    )
    suite.makepyfile(test_kids="URL = 'http://undocumented.invalid/collect'\n" + TESTS)
    result = suite.runpytest("-p", "no:randomly", "--outbound-report", "r.json")
    result.assert_outcomes(passed=1, failed=3)
    for name in ("subprocess", "spawn", "fork"):  # blocked inside each child
        assert (suite.path / f"{name}.out").read_text() == "OutboundBlocked", name
    result.stdout.fnmatch_lines(
        [
            "*1 outbound request(s) from child processes were blocked:",
            "  GET http://undocumented.invalid/collect (client: http.client) from *: undocumented",
        ]
    )
    import json

    report = json.loads((suite.path / "r.json").read_text())
    assert sorted(r["nodeid"].split("::")[1] for r in report["requests"]) == [
        "test_multiprocessing_fork",
        "test_multiprocessing_spawn",
        "test_subprocess",
    ]
    assert {r["phase"] for r in report["requests"]} == {"call"}
    # The bootstrap is gone after the run, and the environment is as it was.
    assert "PYTEST_OUTBOUND_CHILD" not in os.environ


def test_children_in_audit_are_recorded_not_blocked(
    suite: pytest.Pytester, loopback: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "500")  # each line of the summary whole
    suite.makeini(
        "[pytest]\noutbound_mode = audit\noutbound_local = enforce\noutbound_subprocess = true\n"
        "outbound_sensitive_machine = false\n"
    )
    suite.makepyfile(
        """
        import subprocess, sys
        from loopback import serve

        def test_audit(outbound):
            with serve() as base:
                out = subprocess.run([sys.executable, "child.py", base + "/hello"],
                                     capture_output=True, text=True)
            assert out.stdout.strip() == "child: sent"
        """
    )
    result = suite.runpytest("-p", "no:randomly")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "  127.0.0.1: undocumented: 1 request(s) in 1 test(s)",
            "    *::test_audit at child.py:3: GET http://127.0.0.1:*/hello [[]http.client]",
        ]
    )


def test_an_existing_sitecustomize_still_runs(suite: pytest.Pytester) -> None:
    site = suite.mkdir("site")
    (site / "sitecustomize.py").write_text("import os\nos.environ['THEIRS'] = 'ran'\n")
    suite.makeini(
        "[pytest]\noutbound_mode = enforce\noutbound_subprocess = true\n"
        "outbound_sensitive_machine = false\n"
    )
    suite.makepyfile(
        f"""
        import os, subprocess, sys

        def test_theirs(outbound):
            env = dict(os.environ, PYTHONPATH=os.environ["PYTHONPATH"] + os.pathsep + {str(site)!r})
            code = "import os, sys; print(os.environ.get('THEIRS'), 'pytest_outbound._child' in sys.modules)"
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
            assert out.stdout.split() == ["ran", "True"], out.stderr
        """
    )
    suite.runpytest().assert_outcomes(passed=1)


FORK_REGISTERS = """
import multiprocessing, urllib.request

URL = "http://undocumented.invalid/collect"


class Late:
    def pytest_outbound_request(self, request):
        pass


def test_fork_registers_a_plugin(outbound, pytestconfig):
    def child():
        pytestconfig.pluginmanager.register(Late())  # in the child only
        try:
            urllib.request.urlopen(URL).read()
            outcome = "sent"
        except Exception as error:
            outcome = type(error).__name__
        open("fork.out", "w").write(outcome)

    process = multiprocessing.get_context("fork").Process(target=child)
    process.start()
    process.join()
"""


def test_a_forked_child_registering_a_plugin_still_reports(suite: pytest.Pytester) -> None:
    """A plugin registered in a forked child must not take the child's records away from the
    parent (the child writes them to the parent; pytest's hooks there reach nobody)."""
    suite.makeini(
        "[pytest]\noutbound_mode = enforce\noutbound_subprocess = true\n"
        "outbound_sensitive_machine = false\n"
    )
    suite.makepyfile(test_fork=FORK_REGISTERS)
    result = suite.runpytest("-p", "no:randomly", "--outbound-report", "r.json")
    result.assert_outcomes(failed=1)
    assert (suite.path / "fork.out").read_text() == "OutboundBlocked"
    import json

    report = json.loads((suite.path / "r.json").read_text())
    assert [r["url"] for r in report["requests"]] == ["http://undocumented.invalid/collect"]
