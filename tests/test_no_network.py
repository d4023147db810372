"""The suite's guard against the real network (``no_network``): what it refuses, and that an
inner run which lets a request through is caught by it, beneath the plugin's backstop."""

from __future__ import annotations

import errno
import socket

import no_network
import pytest


@pytest.mark.parametrize(
    ("host", "reverse", "asks"),
    [
        ("evil.example", False, True),
        (b"evil.example", False, True),
        ("EVIL.example.", False, True),
        ("localhost", False, False),
        ("192.0.2.10", False, False),  # an address is its own answer
        ("192.0.2.10", True, True),  # but its reverse lookup is a query
        ("127.0.0.1", True, False),
        ("::1", True, False),
        (None, False, False),  # getaddrinfo(None, port): the passive addresses
        (socket.gethostname(), False, False),  # the machine probe's own name
    ],
)
def test_which_lookups_ask_a_nameserver(host: object, reverse: bool, asks: bool) -> None:
    assert no_network.asks_a_nameserver(host, reverse=reverse) is asks


@pytest.mark.parametrize(
    ("address", "remote"),
    [
        (("192.0.2.10", 443), True),
        (("10.0.0.1", 80), True),
        (("2001:db8::1", 443, 0, 0), True),
        (("evil.example", 80), True),  # resolved by the call itself
        (("127.0.0.1", 80), False),
        (("::1", 80, 0, 0), False),
        (("localhost", 80), False),
        (("0.0.0.0", 80), False),
        ("/tmp/some.sock", False),  # a Unix socket
        (b"\0abstract", False),
    ],
)
def test_which_addresses_are_another_machines(address: object, remote: bool) -> None:
    assert no_network.remote(address) is remote


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
        assert sock.connect_ex(("192.0.2.10", 443)) == errno.ENETUNREACH
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        with pytest.raises(OSError, match="sends nothing out"):
            sock.sendto(b"x", ("192.0.2.10", 53))
        sock.sendto(b"x", ("127.0.0.1", 9))  # loopback: sent
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(("192.0.2.10", 53))  # sets the peer (the machine probe does it)
        with pytest.raises(OSError, match="sends nothing out"):
            sock.send(b"x")
    assert no_network.take_since(start) == [
        "socket.getaddrinfo('evil.example')",
        "socket.gethostbyaddr('192.0.2.10')",
        "socket.connect(('192.0.2.10', 443))",
        "socket.connect_ex(('192.0.2.10', 443))",
        "socket.sendto(..., ('192.0.2.10', 53))",
        "socket.send(...) to ('192.0.2.10', 53)",
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
    with socket.socket() as sock, pytest.raises(OSError, match="connects nowhere"):
        sock.connect(("192.0.2.10", 443))
    assert no_network.take_since(start) == ["socket.connect(('192.0.2.10', 443))"]
    assert socket.gethostbyname is guarded_lookup
