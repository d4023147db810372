"""Addresses C resolves or routes before the audit event sees them, and audit mode's silence.

Found by a second, adversarial look at the enforcement (issue 21). Names are resolved inside
a private network namespace with a hosts file of its own (``unshare -rnm``, then a bind mount
over ``/etc/hosts``): a name resolves there without any packet, and nothing can leave it.
"""

from __future__ import annotations

import shlex
import sys
import textwrap

import pytest

INI = """
[pytest]
outbound_mode = {mode}
outbound_local = {local}
outbound_sensitive_machine = false
asyncio_default_fixture_loop_scope = function
"""

HOSTS = "127.0.0.1 localhost secret.example secret.localhost\n::1 localhost\n"


def run_in_a_namespace(
    pytester: pytest.Pytester, test: str, *, mode: str = "enforce", local: str = "allow"
) -> pytest.RunResult:
    """The inner run inside a network namespace of its own, ``/etc/hosts`` being ``HOSTS``."""
    pytester.makeini(INI.format(mode=mode, local=local))
    pytester.makepyfile(test_it=LISTENER + textwrap.dedent(test))
    hosts = pytester.path / "hosts"
    hosts.write_text(HOSTS)
    inner = shlex.join(
        [sys.executable, "-m", "pytest", "-p", "no:randomly", "-p", "no:cacheprovider"]
    )
    script = f"mount --bind {shlex.quote(str(hosts))} /etc/hosts && ip link set lo up && {inner}"
    return pytester.run("unshare", "-rnm", "sh", "-c", script, timeout=120)


LISTENER = """
import socket, pytest
from pytest_outbound import OutboundBlocked


@pytest.fixture
def listener():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.setblocking(False)
    yield server
    try:
        server.accept()
    except BlockingIOError:
        pass
    else:
        raise AssertionError("the listener was reached")
    finally:
        server.close()
"""


def test_a_name_bind_resolves_is_a_lookup(pytester: pytest.Pytester) -> None:
    """C resolves a name given to ``bind`` before its audit event: that lookup is judged."""
    result = run_in_a_namespace(
        pytester,
        """
        def test_bind_a_name():
            with socket.socket() as s, pytest.raises(OutboundBlocked, match="secret.example"):
                s.bind(("secret.example", 0))

        def test_create_server_with_a_name():
            with pytest.raises(OutboundBlocked, match="secret.example"):
                socket.create_server(("secret.example", 0))

        def test_bind_an_address_or_localhost_asks_nobody():
            for host in ("127.0.0.1", "", "localhost"):
                with socket.socket() as s:
                    s.bind((host, 0))
        """,
    )
    result.assert_outcomes(failed=2, passed=1)  # the two swallowed their blocks
    result.stdout.fnmatch_lines(["*DNS dns://secret.example*dns*"])


def test_a_name_below_localhost_given_to_connect_is_judged(pytester: pytest.Pytester) -> None:
    """Only ``localhost`` itself is this machine: a nameserver may answer for
    ``x.localhost``, and the connection goes wherever it says."""
    result = run_in_a_namespace(
        pytester,
        """
        def test_connect(listener):
            with socket.socket() as s, pytest.raises(OutboundBlocked, match="secret.localhost"):
                s.connect(("secret.localhost", listener.getsockname()[1]))

        def test_localhost_itself_is_local(listener):
            with socket.socket() as s:
                s.connect(("localhost", listener.getsockname()[1]))
            listener.accept()[0].close()
        """,
    )
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["*CONNECT tcp://secret.localhost:*"])


def test_an_address_with_a_trailing_dot_is_a_name_to_the_resolver(
    pytester: pytest.Pytester,
) -> None:
    """``127.0.0.2.`` is not an address to the resolver: it asks a nameserver for it. It is
    never judged as the address it looks like (here a documented one)."""
    result = run_in_a_namespace(
        pytester,
        """
        @pytest.mark.outbound_allow("127.0.0.2")
        def test_lookup():
            for host in ("127.0.0.2.", "127.0.0.2\\u3002"):
                with pytest.raises(OutboundBlocked, match="trailing dot"):
                    socket.getaddrinfo(host, 80)

        @pytest.mark.outbound_allow("127.0.0.2")
        def test_the_address_itself_is_allowed():
            socket.getaddrinfo("127.0.0.2", 80)
        """,
        local="enforce",
    )
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["*'127.0.0.2.', an address with a trailing dot*"])


def test_a_source_routed_socket_cannot_be_judged(pytester: pytest.Pytester) -> None:
    """IP options (a loose source route) send the packets through a host the address does
    not name: such a connection is ``unjudgeable``, even to a documented address."""
    result = run_in_a_namespace(
        pytester,
        """
        # loose source and record route through 127.0.0.2, padded with a no-op to 8 bytes
        LSRR = bytes([0x83, 7, 4, 127, 0, 0, 2, 1])

        @pytest.mark.outbound_allow("127.0.0.1")
        def test_source_route(listener):
            with socket.socket() as s:
                s.setsockopt(socket.IPPROTO_IP, socket.IP_OPTIONS, LSRR)
                with pytest.raises(OutboundBlocked, match="source route"):
                    s.connect(listener.getsockname())

        @pytest.mark.outbound_allow("127.0.0.1")
        def test_without_it(listener):
            with socket.socket() as s:
                s.connect(listener.getsockname())
            listener.accept()[0].close()
        """,
        local="enforce",
    )
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["*a socket with IP options or a routing header*"])


# -- audit mode changes nothing the code under test can see ----------------------------------------

UNCHANGED_IN_AUDIT = {
    "the resolvers pickle as themselves": """
        import pickle, socket

        def test_it():
            assert pickle.loads(pickle.dumps(socket.gethostbyname)) is socket.gethostbyname
            assert pickle.loads(pickle.dumps(socket.getaddrinfo)) is socket.getaddrinfo
        """,
    "the resolvers' own errors for wrong arguments": """
        import socket, pytest

        def test_it():
            with pytest.raises(TypeError, match="gethostbyname"):
                socket.gethostbyname()
        """,
    "a mock of socket.gethostname is not called by the plugin": """
        import socket
        from unittest import mock

        def test_it():
            with mock.patch("socket.gethostname", return_value="box") as gethostname:
                socket.getaddrinfo("localhost", 80)
                gethostname.assert_not_called()
        """,
    "no thread object made for a thread threading did not start": """
        import _thread, socket, threading

        def test_it():
            before = threading.active_count()
            done = threading.Event()

            def work():
                socket.getaddrinfo("localhost", 80)
                done.set()

            _thread.start_new_thread(work, ())
            assert done.wait(10)
            assert threading.active_count() == before
        """,
    "a signal handler that sends while the main thread sends": """
        import signal, socket, time

        def test_it():
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            signal.signal(signal.SIGALRM, lambda *_: u.sendto(b"a", ("127.0.0.1", 9)))
            signal.setitimer(signal.ITIMER_REAL, 0.0005, 0.0005)
            try:
                end = time.monotonic() + 1
                while time.monotonic() < end:
                    u.sendto(b"b", ("127.0.0.1", 9))
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0, 0)
                u.close()
        """,
}


@pytest.mark.parametrize("case", list(UNCHANGED_IN_AUDIT))
def test_audit_mode_changes_nothing_the_code_sees(pytester: pytest.Pytester, case: str) -> None:
    """``outbound_local = enforce`` has the plugin judge these loopback calls, in audit."""
    pytester.makeini(INI.format(mode="audit", local="enforce"))
    pytester.makepyfile(test_it=textwrap.dedent(UNCHANGED_IN_AUDIT[case]))
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-p", "no:asyncio", timeout=60)
    result.assert_outcomes(passed=1)


def test_a_numeric_only_lookup_asks_nobody_and_is_not_judged(pytester: pytest.Pytester) -> None:
    """``getaddrinfo(..., flags=AI_NUMERICHOST)`` reads the host as an address or refuses it
    (tornado's ``is_valid_ip`` tells addresses from names this way): no query, nothing to
    judge, the resolver's own error. The audit event does not carry the flags; the resolver
    wrapper says them."""
    pytester.makeini(INI.format(mode="enforce", local="allow"))
    pytester.makepyfile(
        test_it="""
        import socket, pytest

        def is_valid_ip(text):
            try:
                return bool(socket.getaddrinfo(text, 0, socket.AF_UNSPEC, socket.SOCK_STREAM,
                                               0, socket.AI_NUMERICHOST))
            except socket.gaierror:
                return False

        def test_it(outbound):
            assert not is_valid_ip("4.4.4.4<script>")
            assert not is_valid_ip(" ")
            assert not is_valid_ip("not-an-address.example")
            with pytest.raises(socket.gaierror):
                socket.getaddrinfo("evil.example", 80, flags=socket.AI_NUMERICHOST)
            assert outbound.requests == []
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:randomly", timeout=60)
    result.assert_outcomes(passed=1)
