"""The way in from pytest-socket (issue 24): a test that asserts a block, and network markers
kept honest.

``with outbound.expect_blocked(entry):`` passes when exactly that was blocked (in audit: when
exactly that was a violation), and fails when nothing was. ``outbound_marker = network``: a real
connection to a non-local address from a test without the marker is a violation, and a marked
test that never makes one is listed, so that ``-m "not network"`` runs are truly offline.

The real connections are made inside a network namespace of their own (``unshare -rn``) whose
loopback also carries 10.123.0.1: an address the plugin judges as non-local, that nothing
outside the namespace can see.
"""

from __future__ import annotations

import shlex
import sys
import textwrap

import pytest

EXPECT = """
import pytest, requests, responses
from pytest_outbound import OutboundBlocked

@responses.activate
def test_the_block_is_what_the_test_wants(outbound):
    responses.get("https://tracker.example/pixel")
    with outbound.expect_blocked("tracker.example"):
        requests.get("https://tracker.example/pixel")

@responses.activate
def test_the_code_swallowed_it(outbound):
    responses.get("https://tracker.example/pixel")
    with outbound.expect_blocked("tracker.example"):
        try:
            requests.get("https://tracker.example/pixel")
        except OutboundBlocked:
            pass

def test_nothing_was_blocked(outbound):
    with outbound.expect_blocked("tracker.example"):
        pass

@responses.activate
def test_something_else_was_blocked(outbound):
    responses.get("https://ads.example/x")
    with outbound.expect_blocked("tracker.example"):
        requests.get("https://ads.example/x")
"""


@pytest.mark.parametrize("mode", ["enforce", "audit"])
def test_expect_blocked(pytester: pytest.Pytester, mode: str) -> None:
    pytester.makepyfile(EXPECT)
    result = pytester.runpytest("-p", "no:randomly", "-o", f"outbound_mode={mode}")
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*test_nothing_was_blocked*",
            "*AssertionError: expected a request to 'tracker.example' to be blocked; none was*",
        ]
    )
    if mode == "enforce":  # the block of ads.example is the code's own: it fails the test
        result.stdout.fnmatch_lines(
            ["*test_something_else_was_blocked*", "*outbound request blocked: GET https://ads*"]
        )
    else:
        result.stdout.fnmatch_lines(
            [
                "*expected only requests to 'tracker.example' to be blocked; also blocked:*",
                "*GET https://ads.example/x*",
            ]
        )


def test_an_expected_block_does_not_fail_the_run(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(EXPECT)
    result = pytester.runpytest(
        "-p", "no:randomly", "-o", "outbound_mode=enforce", "-k", "wants or swallowed"
    )
    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.OK


NAMESPACE_TESTS = """
import contextlib, socket, threading, pytest

ADDRESS = "10.123.0.1"


@pytest.fixture
def server():
    listener = socket.create_server((ADDRESS, 0))
    port = listener.getsockname()[1]
    accepted = []

    def accept():
        with contextlib.suppress(OSError):
            accepted.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield port, accepted
    listener.close()
    for conn in accepted:
        conn.close()


def test_unmarked_reaches_out(server):
    port, accepted = server
    socket.create_connection((ADDRESS, port), timeout=5).close()


@pytest.mark.network
def test_marked_reaches_out(server):
    port, accepted = server
    socket.create_connection((ADDRESS, port), timeout=5).close()


@pytest.mark.network
def test_marked_but_offline():
    pass


def test_unmarked_offline():
    pass
"""


def run_in_a_namespace(pytester: pytest.Pytester, ini: str, *args: str) -> pytest.RunResult:
    pytester.makeini(ini)
    pytester.makepyfile(test_it=NAMESPACE_TESTS)
    inner = shlex.join(
        [sys.executable, "-m", "pytest", "-p", "no:randomly", "-p", "no:cacheprovider", *args]
    )
    script = f"ip link set lo up && ip addr add 10.123.0.1/32 dev lo && {inner}"
    return pytester.run("unshare", "-rn", "sh", "-c", script, timeout=120)


INI = textwrap.dedent(
    """
    [pytest]
    outbound_mode = {mode}
    outbound_marker = network
    outbound_allow = 10.123.0.1
    outbound_sensitive_machine = false
    asyncio_default_fixture_loop_scope = function
    """
)


def test_an_unmarked_test_reaching_the_network_is_a_violation(pytester: pytest.Pytester) -> None:
    """Allowed by the policy (``outbound_allow``), the connection is still blocked in a test
    without the marker; the marked test makes it; the marked test that makes none is listed."""
    result = run_in_a_namespace(pytester, INI.format(mode="enforce"))
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_unmarked_reaches_out*",
            "*outbound request blocked: CONNECT tcp://10.123.0.1:* (client: socket)*",
            "*a real connection to a non-local address from a test without @pytest.mark.network*",
            "*fix: mark the test @pytest.mark.network*",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "1 test(s) marked network never reached the network (the marker can go):"
            " test_it.py::test_marked_but_offline"
        ]
    )


def test_the_marker_in_audit_records_and_lists(pytester: pytest.Pytester) -> None:
    result = run_in_a_namespace(pytester, INI.format(mode="audit"), "-rA")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(
        [
            "  10.123.0.1: *unmarked:network*: 1 request(s) in 1 test(s)",
            "    test_it.py::test_unmarked_reaches_out at test_it.py:*: CONNECT*",
        ]
    )


def test_not_network_runs_offline(pytester: pytest.Pytester) -> None:
    """``-m "not network"``: what packagers run offline; the unmarked test is the one that
    reached out, and fails."""
    result = run_in_a_namespace(pytester, INI.format(mode="enforce"), "-m", "not network")
    result.assert_outcomes(passed=1, failed=1)
