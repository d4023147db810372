"""The suite's guard against the real network (``no_network``): what it refuses, and that an
inner run which lets a request through is caught by it, beneath the plugin's backstop."""

from __future__ import annotations

import _socket
import errno
import ipaddress
import socket

import no_network
import pytest

# A hosts file as machines differ in theirs (this one's may lack ::1), and a machine name.
HOSTS = {
    "localhost": ["127.0.0.1"],
    "ip6-localhost": ["::1"],
    "printer.lan": ["192.168.1.9"],
}
OWN_NAME = "build-07"
V4, V6 = socket.AF_INET, socket.AF_INET6


@pytest.fixture
def hosts(monkeypatch: pytest.MonkeyPatch) -> None:
    table = {
        name: [ipaddress.ip_address(a) for a in addresses] for name, addresses in HOSTS.items()
    }
    monkeypatch.setattr(no_network, "_HOSTS_FILE", table)
    addresses = frozenset(a for each in table.values() for a in each)
    monkeypatch.setattr(no_network, "_HOSTS_FILE_ADDRESSES", addresses)
    monkeypatch.setattr(no_network, "_OWN_NAME", OWN_NAME)


@pytest.mark.usefixtures("hosts")
@pytest.mark.parametrize(
    ("host", "family", "reverse", "asks"),
    [
        ("evil.example", 0, False, True),
        (b"evil.example", 0, False, True),
        ("EVIL.example.", 0, False, True),
        ("localhost", 0, False, False),
        ("localhost", V4, False, False),
        ("localhost", V6, False, True),  # the hosts file has no IPv6 address for it
        ("ip6-localhost", V6, False, False),
        ("ip6-localhost", V4, False, True),
        ("192.0.2.10", 0, False, False),  # an address is its own answer
        ("127.1", 0, False, False),  # in any form inet_aton reads
        ("0", 0, False, False),
        ("192.0.2.10", 0, True, True),  # but its reverse lookup is a query
        ("192.168.1.9", 0, True, False),  # unless the hosts file has it
        ("127.0.0.1", 0, True, False),
        ("::1", 0, True, False),
        ("::ffff:127.0.0.1", 0, True, False),
        (None, 0, False, False),  # getaddrinfo(None, port): the passive addresses
        (OWN_NAME, 0, False, False),  # the machine probe's own name
        (f"{OWN_NAME}.evil.example", 0, False, True),  # and only that name
    ],
)
def test_which_lookups_ask_a_nameserver(
    host: object, family: int, reverse: bool, asks: bool
) -> None:
    assert no_network.asks_a_nameserver(host, family=family, reverse=reverse) is asks


@pytest.mark.usefixtures("hosts")
@pytest.mark.parametrize(
    ("address", "family", "remote"),
    [
        (("192.0.2.10", 443), V4, True),
        (("10.0.0.1", 80), V4, True),
        (("2001:db8::1", 443, 0, 0), V6, True),
        (("evil.example", 80), V4, True),  # resolved by the call itself
        (("printer.lan", 80), V4, True),  # the hosts file says another machine
        (("localhost", 80, 0, 0), V6, True),  # no IPv6 address for it: a query
        ((OWN_NAME, 80), V4, True),  # looking it up is excused; where it goes is unknown
        (("<broadcast>", 9), V4, True),
        (("127.0.0.1", 80), V4, False),
        (("127.1", 80), V4, False),
        (("::1", 80, 0, 0), V6, False),
        (("::ffff:127.0.0.1", 80, 0, 0), V6, False),
        (("localhost", 80), V4, False),
        (("0.0.0.0", 80), V4, False),
        ("/tmp/some.sock", socket.AF_UNIX, False),
        (b"\0abstract", socket.AF_UNIX, False),
    ],
)
def test_which_addresses_are_another_machines(address: object, family: int, remote: bool) -> None:
    assert no_network.remote(address, family) is remote


def test_a_lookup_and_a_connection_are_refused_and_noted() -> None:
    start = no_network.attempts_so_far()
    with pytest.raises(socket.gaierror):
        socket.getaddrinfo("evil.example", 443)
    with pytest.raises(socket.gaierror):
        socket.gethostbyaddr("192.0.2.10")
    with socket.socket() as sock:
        with pytest.raises(OSError, match="connects nowhere") as refused:
            sock.connect(("192.0.2.10", 443))
        assert refused.value.errno == errno.ENETUNREACH
        with pytest.raises(OSError, match="connects nowhere"):  # the audit hook raises
            sock.connect_ex(("192.0.2.10", 443))
        with pytest.raises(OSError, match="connects nowhere"):  # beneath socket.socket too
            _socket.socket.connect(sock, ("192.0.2.10", 443))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        with pytest.raises(OSError, match="sends nothing out"):
            sock.sendto(b"x", ("192.0.2.10", 9))
        sock.sendto(b"x", ("127.0.0.1", 9))  # loopback: sent
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(("192.0.2.10", 9))  # sets the peer (the machine probe does it)
        for send in (sock.send, sock.sendall, lambda data: sock.sendmsg([data])):
            with pytest.raises(OSError, match="sends nothing out"):
                send(b"x")
        with pytest.raises(socket.gaierror):
            sock.connect(("evil.example", 53))  # connect() resolves a name itself
        with pytest.raises(socket.gaierror):
            sock.bind(("evil.example", 0))  # and so does bind()
    assert no_network.take_since(start) == [
        "socket.getaddrinfo('evil.example')",
        "socket.gethostbyaddr('192.0.2.10')",
        "socket.connect(('192.0.2.10', 443))",
        "socket.connect(('192.0.2.10', 443))",
        "socket.connect(('192.0.2.10', 443))",
        "socket.sendto(..., ('192.0.2.10', 9))",
        "socket.send(...) to ('192.0.2.10', 9)",
        "socket.sendall(...) to ('192.0.2.10', 9)",
        "socket.sendmsg(...) to ('192.0.2.10', 9)",
        "socket.connect(('evil.example', 53))",
        "socket.bind(('evil.example', 0))",
    ]


def test_an_inner_run_that_lets_a_request_out_is_caught(pytester: pytest.Pytester) -> None:
    """Audit mode lets an undocumented request through the plugin to the socket beneath it."""
    pytester.makeini("[pytest]\noutbound_mode = audit\n")
    pytester.makepyfile(
        """
        import pytest, requests

        def test_it():
            with pytest.raises(requests.ConnectionError, match="looks up nothing"):
                requests.get("https://evil.example/")
        """
    )
    start = no_network.attempts_so_far()
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    assert no_network.take_since(start) == ["socket.getaddrinfo('evil.example')"]


def test_in_enforce_mode_the_plugin_blocks_it_first(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\noutbound_mode = enforce\n")
    pytester.makepyfile(
        """
        import socket, pytest
        from pytest_outbound import OutboundBlocked

        def test_it():
            with pytest.raises(OutboundBlocked):
                socket.getaddrinfo("evil.example", 443)
        """
    )
    start = no_network.attempts_so_far()
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)  # blocked, caught: still a failure
    assert no_network.attempts_since(start) == []


def test_install_guards_again_what_a_tool_put_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tools restore the originals they saved (pytest-socket does before every test), and the
    conftest calls ``install`` before every test: what is not guarded is guarded again, and
    what is guarded is not guarded twice."""
    import pytest_socket

    def unguarded_connect(self: socket.socket, address: object) -> None:
        raise AssertionError("the unguarded connect was called")

    assert getattr(pytest_socket._true_connect, "_no_network", False)  # its saved original
    guarded_lookup = socket.gethostbyname
    monkeypatch.setattr(socket.socket, "connect", unguarded_connect)
    no_network.install()
    start = no_network.attempts_so_far()
    with socket.socket() as sock, pytest.raises(socket.gaierror):
        sock.connect(("evil.example", 443))  # a name: refused before C resolves it
    assert no_network.take_since(start) == ["socket.connect(('evil.example', 443))"]
    assert socket.gethostbyname is guarded_lookup


def test_the_fixture_fails_the_test_that_reached_out(pytester: pytest.Pytester) -> None:
    """``-p no_network`` is what the conftest uses: a refused lookup that the test caught still
    fails it, and the test after it is clean."""
    pytester.makepyfile(
        """
        import socket, pytest

        def test_reaches_out():
            with pytest.raises(socket.gaierror):
                socket.getaddrinfo("evil.example", 443)

        def test_clean():
            pass
        """
    )
    result = pytester.runpytest("-p", "no_network", "-p", "no:outbound")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_reaches_out*",
            "*During this test, the code reached for the real network*"
            "socket.getaddrinfo('evil.example')*",
        ]
    )


def test_an_attempt_before_a_test_fails_that_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import socket, pytest

        @pytest.fixture(scope="module")
        def wide():
            try:
                socket.gethostbyname("evil.example")
            except socket.gaierror:
                pass

        def test_uses_it(wide):
            pass
        """
    )
    result = pytester.runpytest("-p", "no_network", "-p", "no:outbound")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*Before this test's setup ended, the code reached*socket.gethostbyname('evil.example')*"]
    )


def test_an_attempt_after_the_last_test_fails_the_run(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        import socket, pytest

        @pytest.fixture(scope="session", autouse=True)
        def reaches_out_at_the_end():
            yield
            try:
                socket.getaddrinfo("evil.example", 443)
            except socket.gaierror:
                pass
        """
    )
    pytester.makepyfile("def test_it():\n    pass\n")
    result = pytester.runpytest("-p", "no_network", "-p", "no:outbound")
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stderr.fnmatch_lines(["*after its last test's own teardown*evil.example*"])
