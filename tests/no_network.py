"""The test suite's guard against the real network, and the pytest plugin that enforces it.

The suite may use loopback and blocked attempts, nothing else. An inner run in audit mode lets
a request through to the real socket, and a test could then pass for the wrong reason (a failed
name lookup where the plugin's block was meant). ``install`` patches the socket functions of
this process, beneath every session a test starts, to refuse (and note) what would leave the
machine:

- a lookup that would query a nameserver: a name the hosts file does not hold for the address
  family asked for, or the reverse lookup of an address it does not hold. This includes what
  ``connect``, ``bind``, ``sendto`` and ``sendmsg`` resolve themselves, given a name;
- a connection to an address that is not this machine's;
- a datagram to such an address: ``sendto``/``sendmsg`` with one, or ``send``/``sendall``/
  ``sendmsg`` on a datagram socket connected to one. A datagram socket's ``connect`` to an
  address sends nothing (it sets the peer, and so picks the source address, as the plugin's
  machine probe does), and is let through.

Most of it is an audit hook (``sys.addaudithook``), so a C-level road (``_socket.socket``
used directly, a saved method) is refused too. It is added after the plugin's own hook (whose
module it imports first): the plugin judges, and blocks, before this guard refuses. What the C
code does before it raises its audit event (resolving a name given in an address) and what
raises none (a datagram ``send`` on a connected socket) is refused by patches of
``socket.socket``'s methods.

The refusal is the error the real call gives offline (``gaierror``, ``ENETUNREACH``). The
fixture ``_no_real_network`` (autouse, used by the conftest, or by an inner run with
``-p no_network``) fails the test during which an attempt was noted, or before whose setup
ended it was (collection, a wider fixture's setup, another test's thread).
``pytest_sessionfinish`` fails the run for an attempt no test took (a session fixture's
teardown); under pytest-xdist the controller stops the run with it.

This machine's own name, exactly, is let through: the plugin's machine probe looks it up, on
purpose, in the tests marked ``machine_probe``. Subprocess runs are not covered.
"""

from __future__ import annotations

import _socket
import errno
import ipaddress
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeAlias

import pytest

_Address: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address

_ATTEMPTS: list[str] = []
_LOCK = threading.Lock()


def _numeric(text: str) -> _Address | None:
    """The address ``text`` is to the resolver with no query: an IP address in any form
    ``inet_aton`` reads (``127.1``, ``0``), an IPv6 address with or without a scope."""
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(text))
    except (OSError, ValueError):
        return None


def _hosts_file() -> dict[str, list[_Address]]:
    """Name -> addresses, as the hosts file answers them, with no packet sent."""
    try:
        lines = Path("/etc/hosts").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        lines = []
    names: dict[str, list[_Address]] = {}
    for line in lines:
        fields = line.split("#", 1)[0].split()
        address = _numeric(fields[0]) if fields else None
        if address is not None:
            for name in fields[1:]:
                names.setdefault(name.lower(), []).append(address)
    return names


_HOSTS_FILE = _hosts_file()
_HOSTS_FILE_ADDRESSES = frozenset(a for addresses in _HOSTS_FILE.values() for a in addresses)
_OWN_NAME = socket.gethostname().lower()
_VERSION_OF_FAMILY = {socket.AF_INET: 4, socket.AF_INET6: 6}


def _name(host: object) -> str | None:
    """A host argument as lower-case text (None: not a host; the real function refuses it)."""
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    return host.lower().rstrip(".") if isinstance(host, str) else None


def _is_local(address: _Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback or address.is_unspecified


def _hosts_file_answer(name: str, family: int) -> list[_Address] | None:
    """The hosts file's addresses for ``name`` in ``family`` (0: any), or None when it has
    none and the resolver asks a nameserver."""
    version = _VERSION_OF_FAMILY.get(family)
    answer = [a for a in _HOSTS_FILE.get(name, ()) if version is None or a.version == version]
    return answer or None


def asks_a_nameserver(host: object, *, family: int = 0, reverse: bool = False) -> bool:
    """Whether looking ``host`` up sends a query: a name the hosts file does not hold in
    ``family`` (or, ``reverse``, an address it does not hold). An address is its own answer."""
    name = _name(host)
    if name is None or name in ("", "<broadcast>"):
        return False  # getaddrinfo(None, port): the local (passive) addresses
    if name == _OWN_NAME:
        return False  # the machine probe's lookups (see the module's docstring)
    address = _numeric(name)
    if address is not None:
        return reverse and not _is_local(address) and address not in _HOSTS_FILE_ADDRESSES
    return _hosts_file_answer(name, family) is None


def remote(address: object, family: int = 0) -> bool:
    """Whether a socket address is another machine's (a Unix socket's path is not), or a name
    that resolving would send a query for."""
    if not isinstance(address, tuple) or not address:
        return False
    name = _name(address[0])
    if name is None or name == "":
        return False
    if name == "<broadcast>":
        return True
    numeric = _numeric(name)
    answer = [numeric] if numeric is not None else _hosts_file_answer(name, family)
    return answer is None or not all(_is_local(each) for each in answer)


def _note(what: str) -> None:
    with _LOCK:
        _ATTEMPTS.append(what)


def attempts_so_far() -> int:
    return len(_ATTEMPTS)


def attempts_since(start: int) -> list[str]:
    with _LOCK:
        return _ATTEMPTS[start:]


def take_since(start: int) -> list[str]:
    """The attempts noted since ``start``, forgotten: they are reported (or, by a test of this
    guard, expected)."""
    with _LOCK:
        taken = _ATTEMPTS[start:]
        del _ATTEMPTS[start:]
        return taken


def _refuse_lookup(what: str, host: object) -> None:
    _note(what)
    raise socket.gaierror(socket.EAI_NONAME, f"the test suite looks up nothing: {host!r}")


def _refuse(what: str, address: object) -> None:
    _note(what)
    raise OSError(errno.ENETUNREACH, f"the test suite sends nothing out: {address!r}")


def _datagram(sock: socket.socket) -> bool:
    return sock.type == socket.SOCK_DGRAM


def _datagram_peer(sock: socket.socket) -> object:
    """A datagram socket's peer (what ``send`` sends to), or None."""
    if not _datagram(sock):
        return None
    try:
        return sock.getpeername()
    except OSError:  # not connected: the real call says so
        return None


def _resolves_first(address: object, family: int) -> bool:
    """Whether C would look the host of ``address`` up before raising its audit event (a name
    the hosts file lacks): that lookup is refused here, before it is sent."""
    host = address[0] if isinstance(address, tuple) and address else None
    return _numeric(_name(host) or "") is None and asks_a_nameserver(host, family=family)


def _guard_connect(original: Callable[..., Any], name: str) -> Callable[..., Any]:
    def connect(self: socket.socket, address: Any) -> Any:
        if _resolves_first(address, self.family):
            _refuse_lookup(f"socket.{name}({address!r})", address)
        return original(self, address)

    return connect


def _guard_bind(original: Callable[..., Any]) -> Callable[..., Any]:
    def bind(self: socket.socket, address: Any) -> Any:
        if _resolves_first(address, self.family):  # a name: bind resolves it
            _refuse_lookup(f"socket.bind({address!r})", address)
        return original(self, address)

    return bind


def _guard_sendto(original: Callable[..., Any]) -> Callable[..., Any]:
    def sendto(self: socket.socket, *args: Any) -> Any:
        address = args[-1]  # sendto(data[, flags], address)
        if _resolves_first(address, self.family):
            _refuse_lookup(f"socket.sendto(..., {address!r})", address)
        return original(self, *args)

    return sendto


def _guard_sendmsg(original: Callable[..., Any]) -> Callable[..., Any]:
    def sendmsg(self: socket.socket, *args: Any) -> Any:
        # sendmsg(buffers[, ancdata[, flags[, address]]]); without one, a connected datagram
        # socket's peer, which raises no audit event
        if len(args) > 3:
            if _resolves_first(args[3], self.family):
                _refuse_lookup(f"socket.sendmsg(..., {args[3]!r})", args[3])
        elif remote(_datagram_peer(self), self.family):
            _refuse(f"socket.sendmsg(...) to {_datagram_peer(self)!r}", _datagram_peer(self))
        return original(self, *args)

    return sendmsg


def _guard_datagram_send(original: Callable[..., Any], name: str) -> Callable[..., Any]:
    def send(self: socket.socket, *args: Any) -> Any:
        peer = _datagram_peer(self)
        if remote(peer, self.family):
            _refuse(f"socket.{name}(...) to {peer!r}", peer)
        return original(self, *args)

    return send


def _ours(function: Callable[..., Any]) -> Callable[..., Any]:
    function.__dict__["_no_network"] = True
    return function


_Wrap: TypeAlias = Callable[[Callable[..., Any]], Callable[..., Any]]


def _targets() -> list[tuple[Any, str, _Wrap]]:
    """(owner, attribute, how to guard it) for each function ``install`` patches: what C
    does before it raises its audit event (a name in an address is resolved first), and
    datagram sends on a connected socket, which raise none. The rest is ``_audit``'s."""
    targets: list[tuple[Any, str, _Wrap]] = [
        (socket.socket, "connect", lambda f: _guard_connect(f, "connect")),
        (socket.socket, "connect_ex", lambda f: _guard_connect(f, "connect_ex")),
        (socket.socket, "bind", _guard_bind),
        (socket.socket, "sendto", _guard_sendto),
        (socket.socket, "sendmsg", _guard_sendmsg),
        (socket.socket, "send", lambda f: _guard_datagram_send(f, "send")),
        (socket.socket, "sendall", lambda f: _guard_datagram_send(f, "sendall")),
    ]
    # pytest-socket saved the original connect when it was imported, and puts it back before
    # every test: let it hold a guarded one.
    pytest_socket = sys.modules.get("pytest_socket")
    if pytest_socket is not None:
        targets.append((pytest_socket, "_true_connect", lambda f: _guard_connect(f, "connect")))
    return targets


def _audit(event: str, args: tuple[Any, ...]) -> None:
    """The C-level floor (an audit hook, added after the plugin's, so that the plugin judges
    first): lookups that would ask a nameserver, connections and datagrams to other machines,
    however the code reached the C socket."""
    if event not in _AUDITED:
        return
    if event == "socket.getaddrinfo":
        if asks_a_nameserver(args[0], family=args[2]):
            _refuse_lookup(f"socket.getaddrinfo({args[0]!r})", args[0])
    elif event == "socket.gethostbyname":
        if asks_a_nameserver(args[0], family=socket.AF_INET):
            _refuse_lookup(f"socket.gethostbyname({args[0]!r})", args[0])
    elif event == "socket.gethostbyaddr":
        if asks_a_nameserver(args[0], reverse=True):
            _refuse_lookup(f"socket.gethostbyaddr({args[0]!r})", args[0])
    elif event == "socket.getnameinfo":
        address = args[0]
        host = address[0] if isinstance(address, tuple) and address else None
        if asks_a_nameserver(host, reverse=True):
            _refuse_lookup(f"socket.getnameinfo({address!r})", address)
    elif event == "socket.connect":
        sock, address = args
        family = _socket.socket.family.__get__(sock)
        if _socket.socket.type.__get__(sock) & socket.SOCK_DGRAM == socket.SOCK_DGRAM:
            host = address[0] if isinstance(address, tuple) and address else None
            refused = asks_a_nameserver(host, family=family)  # it sends nothing else
        else:
            refused = remote(address, family)
        if refused:
            _note(f"socket.connect({address!r})")
            raise OSError(errno.ENETUNREACH, f"the test suite connects nowhere: {address!r}")
    elif args[1] is not None and remote(args[1], _socket.socket.family.__get__(args[0])):
        _refuse(f"{event}(..., {args[1]!r})", args[1])


_AUDITED = frozenset(
    {
        "socket.getaddrinfo",
        "socket.gethostbyname",
        "socket.gethostbyaddr",
        "socket.getnameinfo",
        "socket.connect",
        "socket.sendto",
        "socket.sendmsg",
    }
)
_HOOKED: list[bool] = []


def install() -> None:
    """Patch this process's socket functions (see the module's docstring), where they are not
    patched already. Called again before every test: tools put back the originals they saved
    (pytest-socket does, before every test). The first time, add the audit hook, after the
    plugin's own (which its module adds when first imported)."""
    for owner, name, guard in _targets():
        current = getattr(owner, name, None)
        if current is not None and not getattr(current, "_no_network", False):
            setattr(owner, name, _ours(guard(current)))
    if not _HOOKED:
        from pytest_outbound import _backstop

        _backstop.install_hook()
        sys.addaudithook(_audit)
        _HOOKED.append(True)


def _fail_for(attempts: list[str], when: str) -> None:
    if attempts:
        pytest.fail(
            f"{when}, the code reached for the real network (the suite may use loopback"
            " only): " + "; ".join(attempts),
            pytrace=False,
        )


@pytest.fixture(autouse=True)
def _no_real_network() -> Iterator[None]:
    """Fail the test if its code reached for the real network (see the module's docstring)."""
    install()  # again: pytest-socket put its saved originals back
    _fail_for(take_since(0), "Before this test's setup ended")
    yield
    _fail_for(take_since(0), "During this test")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_sessionfinish(session: pytest.Session) -> Iterator[None]:
    """An attempt no test took (a session fixture's teardown) fails the run. In a
    pytest-xdist worker, through ``shouldfail``: the controller reads that (before the
    worker's own hook runs, hence a wrapper, first) and not the worker's exit status."""
    attempts = take_since(0)
    if attempts:
        message = (
            "the test session reached for the real network after its last test's own"
            " teardown (the suite may use loopback only): " + "; ".join(attempts)
        )
        sys.stderr.write(message + "\n")
        if hasattr(session.config, "workerinput"):
            session.shouldfail = message
        elif session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
    return (yield)


install()  # on import: beneath any session started after it
