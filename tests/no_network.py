"""The test suite's guard against the real network.

The suite may use loopback and blocked attempts, nothing else. An inner run in audit mode lets
a request through to the real socket, and a test could then pass for the wrong reason (a failed
name lookup where the plugin's block was meant). ``install`` patches the socket functions of
this process, beneath every session a test starts, to refuse (and note) what would leave the
machine:

- a lookup that would query a nameserver: a name the hosts file does not hold, or the reverse
  lookup of an address it does not hold;
- a connection or a datagram to an address that is not this machine's (a datagram socket's
  ``connect`` sends nothing, and is let through; what it then ``send``s is not).

The refusal is the error the real call gives offline (``gaierror``, ``ENETUNREACH``). The
conftest's autouse fixture fails the test during which it happened. The plugin's backstop, in
an inner session, patches on top of these functions, so what it blocks never reaches them.
This machine's own name is let through: the plugin's machine probe looks it up, on purpose, in
the tests marked ``machine_probe``. Subprocess runs are not covered.
"""

from __future__ import annotations

import _socket
import errno
import ipaddress
import socket
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

_ATTEMPTS: list[str] = []
_LOCK = threading.Lock()


def _hosts_file() -> dict[str, set[str]]:
    """Name -> addresses, as the hosts file answers them, with no packet sent."""
    try:
        lines = Path("/etc/hosts").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        lines = []
    names: dict[str, set[str]] = {"localhost": {"127.0.0.1", "::1"}}
    for line in lines:
        fields = line.split("#", 1)[0].split()
        for name in fields[1:]:
            names.setdefault(name.lower(), set()).add(fields[0])
    return names


_HOSTS_FILE = _hosts_file()
_HOSTS_FILE_ADDRESSES = frozenset(a for addresses in _HOSTS_FILE.values() for a in addresses)
_OWN_NAME = socket.gethostname().lower()


def _name(host: object) -> str | None:
    """A host argument as lower-case text (None: not a host; the real function refuses it)."""
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    return host.lower().rstrip(".") if isinstance(host, str) else None


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None


def _local_address(text: str) -> bool:
    address = _address(text)
    return address is not None and (address.is_loopback or address.is_unspecified)


def asks_a_nameserver(host: object, *, reverse: bool = False) -> bool:
    """Whether looking ``host`` up sends a query: a name the hosts file does not hold (or,
    ``reverse``, an address it does not hold). An address is its own answer."""
    name = _name(host)
    if name is None or name in ("", "<broadcast>"):
        return False  # getaddrinfo(None, port): the local (passive) addresses
    if name == _OWN_NAME or name.startswith(_OWN_NAME + "."):
        return False  # the machine probe's lookups (see the module's docstring)
    if _address(name) is not None:
        return reverse and not _local_address(name) and name not in _HOSTS_FILE_ADDRESSES
    return name not in _HOSTS_FILE


def remote(address: object) -> bool:
    """Whether a socket address is another machine's (a Unix socket's path is not)."""
    if not isinstance(address, tuple) or not address:
        return False
    name = _name(address[0])
    if name is None or name == "":
        return False
    # a name is resolved by the call itself: local only if the hosts file says loopback
    candidates = {name} if _address(name) is not None else _HOSTS_FILE.get(name, {name})
    return not all(_local_address(each) for each in candidates)


def _note(what: str) -> None:
    with _LOCK:
        _ATTEMPTS.append(what)


def attempts_so_far() -> int:
    return len(_ATTEMPTS)


def attempts_since(start: int) -> list[str]:
    with _LOCK:
        return _ATTEMPTS[start:]


def take_since(start: int) -> list[str]:
    """The attempts noted since ``start``, forgotten: a test of this guard expects them."""
    with _LOCK:
        taken = _ATTEMPTS[start:]
        del _ATTEMPTS[start:]
        return taken


def _guard_lookup(
    original: Callable[..., Any], name: str, *, reverse: bool = False
) -> Callable[..., Any]:
    def lookup(host: Any, *args: Any, **kwargs: Any) -> Any:
        if asks_a_nameserver(host, reverse=reverse):
            _note(f"{name}({host!r})")
            raise socket.gaierror(socket.EAI_NONAME, f"the test suite looks up nothing: {host!r}")
        return original(host, *args, **kwargs)

    return lookup


def _guard_getnameinfo(original: Callable[..., Any]) -> Callable[..., Any]:
    def getnameinfo(address: Any, flags: int, *args: Any) -> Any:
        host = address[0] if isinstance(address, tuple) and address else None
        if not flags & socket.NI_NUMERICHOST and asks_a_nameserver(host, reverse=True):
            _note(f"socket.getnameinfo({address!r})")
            raise socket.gaierror(
                socket.EAI_NONAME, f"the test suite looks up nothing: {address!r}"
            )
        return original(address, flags, *args)

    return getnameinfo


def _guard_connect(original: Callable[..., Any], name: str) -> Callable[..., Any]:
    def connect(self: socket.socket, address: Any) -> Any:
        # a datagram socket's connect() sends nothing: it sets the peer (and so picks the
        # source address, as the plugin's machine probe does); its send() is guarded
        if self.type != socket.SOCK_DGRAM and remote(address):
            _note(f"socket.{name}({address!r})")
            if name == "connect_ex":
                return errno.ENETUNREACH
            raise OSError(errno.ENETUNREACH, f"the test suite connects nowhere: {address!r}")
        return original(self, address)

    return connect


def _guard_send(original: Callable[..., Any], name: str) -> Callable[..., Any]:
    def send(self: socket.socket, *args: Any) -> Any:
        # sendto(data[, flags], address); sendmsg(buffers[, ancdata[, flags[, address]]])
        address = args[-1] if name == "sendto" else (args[3] if len(args) > 3 else None)
        if remote(address):
            _note(f"socket.{name}(..., {address!r})")
            raise OSError(errno.ENETUNREACH, f"the test suite sends nothing out: {address!r}")
        return original(self, *args)

    return send


def _guard_datagram_send(original: Callable[..., Any]) -> Callable[..., Any]:
    def send(self: socket.socket, *args: Any) -> Any:
        if self.type == socket.SOCK_DGRAM and remote(self.getpeername()):
            _note(f"socket.send(...) to {self.getpeername()!r}")
            raise OSError(errno.ENETUNREACH, "the test suite sends nothing out")
        return original(self, *args)

    return send


def _ours(function: Callable[..., Any]) -> Callable[..., Any]:
    function.__dict__["_no_network"] = True
    return function


def _targets() -> list[tuple[Any, str, Callable[[Callable[..., Any]], Callable[..., Any]]]]:
    """(owner, attribute, how to guard it) for each function ``install`` patches."""
    lookup = _guard_lookup  # of a name: an address is its own answer
    targets: list[tuple[Any, str, Callable[[Callable[..., Any]], Callable[..., Any]]]] = [
        # socket.getaddrinfo calls _socket's, where the plugin's backstop patches it too
        (_socket, "getaddrinfo", lambda f: lookup(f, "socket.getaddrinfo")),
        (socket, "gethostbyname", lambda f: lookup(f, "socket.gethostbyname")),
        (socket, "gethostbyname_ex", lambda f: lookup(f, "socket.gethostbyname_ex")),
        (socket, "gethostbyaddr", lambda f: lookup(f, "socket.gethostbyaddr", reverse=True)),
        (socket, "getnameinfo", _guard_getnameinfo),
    ]
    for name in ("connect", "connect_ex"):
        targets.append((socket.socket, name, lambda f, name=name: _guard_connect(f, name)))
    for name in ("sendto", "sendmsg"):
        targets.append((socket.socket, name, lambda f, name=name: _guard_send(f, name)))
    targets.append((socket.socket, "send", _guard_datagram_send))
    # pytest-socket saved the originals when it was imported, and puts them back before every
    # test: let it hold guarded ones.
    pytest_socket = sys.modules.get("pytest_socket")
    if pytest_socket is not None:
        targets.append((pytest_socket, "_true_connect", lambda f: _guard_connect(f, "connect")))
        targets.append(
            (pytest_socket, "_true_gethostbyname", lambda f: lookup(f, "socket.gethostbyname"))
        )
    return targets


def install() -> None:
    """Patch this process's socket functions (see the module's docstring), where they are not
    patched already. The conftest calls it before every test: tools put back the originals
    they saved (pytest-socket does, before every test)."""
    for owner, name, guard in _targets():
        current = getattr(owner, name, None)
        if current is not None and not getattr(current, "_no_network", False):
            setattr(owner, name, _ours(guard(current)))
