"""The socket and DNS backstop: every connection a Python socket makes, every name lookup.

HTTP interceptors see requests; this sees what reaches the operating system from any Python
code: ``socket.connect``/``connect_ex`` (so asyncio's ``sock_connect`` and
``create_connection`` too), ``sendto``/``sendmsg`` to an address, ``getaddrinfo`` and
``gethostbyname``. It patches the methods of ``socket.socket`` (the Python class every
socket of the standard library, ``ssl`` and asyncio is made from, so sockets created before the
session are covered too) and the resolver functions, once per process however many sessions
nest (pytester): the patches call whichever session's backstop is current (``_SWITCH``).

An audit hook (``sys.addaudithook``) would also see sockets made from the C ``_socket.socket``
class directly, but it cannot be removed and runs for every audited event of the process
(about 80 per trivial test: ``id()``, attribute reads, ``open``, ``compile``): at least 110 ns
each, 1 to 2 % of a suite that makes no request, more than pytest-socket costs in all. Code
that bypasses ``socket.socket`` is not seen (as with pytest-socket); neither is C code with its
own sockets (libcurl, libpq) under either design.

It judges the real peer. A connection to an IP address is allowed when an IP or CIDR pattern
admits it, or when this process resolved a name that is allowed to that address; looking up a
name that is not documented is itself a violation (DNS can carry data out). What an HTTP
interceptor already judged (its host, and the addresses that host resolved to) is not recorded
again, but a proxy in between is: the HTTP layer judged the target, the backstop judges the
proxy. In offline mode nothing but local traffic may reach a socket at all.
"""

from __future__ import annotations

import _socket
import ipaddress
import socket
import threading
from typing import Any

from pytest_outbound._decide import DNS, SOCKET
from pytest_outbound._guard import Guard
from pytest_outbound._hosts import HostError, Peer, is_local, peer_from_address
from pytest_outbound._interceptors import Patches
from pytest_outbound._record import OutboundRequest


class _Switch:
    backstop: Backstop | None = None


_SWITCH = _Switch()
_BUSY = threading.local()


def _dispatch(event: str, *args: Any) -> None:
    """Hand one socket or resolver event to the current session's backstop, once."""
    __tracebackhide__ = True
    backstop = _SWITCH.backstop
    if backstop is None or getattr(_BUSY, "on", False):
        return
    _BUSY.on = True
    try:
        backstop.on_event(event, args)
    finally:
        _BUSY.on = False


def _patch_sockets(patches: Patches) -> None:
    """Patch ``socket.socket``'s connecting methods and the resolvers to call ``_dispatch``."""
    cls = socket.socket
    connect, connect_ex = cls.connect, cls.connect_ex
    sendto, sendmsg = cls.sendto, cls.sendmsg

    def patched_connect(self: socket.socket, address: Any) -> None:
        __tracebackhide__ = True
        _dispatch("socket.connect", self, address)
        return connect(self, address)

    def patched_connect_ex(self: socket.socket, address: Any) -> int:
        __tracebackhide__ = True
        _dispatch("socket.connect", self, address)
        return connect_ex(self, address)

    def patched_sendto(self: socket.socket, *args: Any) -> int:
        __tracebackhide__ = True  # sendto(data, address) or sendto(data, flags, address)
        if len(args) >= 2:
            _dispatch("socket.sendto", self, args[-1])
        return sendto(self, *args)

    def patched_sendmsg(self: socket.socket, *args: Any) -> int:
        __tracebackhide__ = True  # sendmsg(buffers[, ancdata[, flags[, address]]])
        if len(args) >= 4 and args[3] is not None:
            _dispatch("socket.sendmsg", self, args[3])
        return sendmsg(self, *args)

    for name, function in (
        ("connect", patched_connect),
        ("connect_ex", patched_connect_ex),
        ("sendto", patched_sendto),
        ("sendmsg", patched_sendmsg),
    ):
        function.__dict__["_outbound_backstop"] = True
        patches.patch(cls, name, function)

    # ``socket.getaddrinfo`` calls ``_socket.getaddrinfo``; wrapping the lower one survives
    # tools that swap and restore the upper one (pytest-socket restores its own copy).
    original_getaddrinfo = _socket.getaddrinfo
    original_gethostbyname = socket.gethostbyname
    original_gethostbyname_ex = socket.gethostbyname_ex

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True
        _dispatch("socket.getaddrinfo", host)
        result = original_getaddrinfo(host, *args, **kwargs)
        _remember(host, [str(entry[4][0]) for entry in result])
        return result

    def gethostbyname(host: Any) -> str:
        __tracebackhide__ = True
        _dispatch("socket.gethostbyname", host)
        address = original_gethostbyname(host)
        _remember(host, [address])
        return address

    def gethostbyname_ex(host: Any) -> Any:
        __tracebackhide__ = True
        _dispatch("socket.gethostbyname", host)
        result = original_gethostbyname_ex(host)
        _remember(host, list(result[2]))
        return result

    patches.patch(_socket, "getaddrinfo", getaddrinfo)
    patches.patch(socket, "gethostbyname", gethostbyname)
    patches.patch(socket, "gethostbyname_ex", gethostbyname_ex)


def _remember(host: object, addresses: list[str]) -> None:
    backstop = _SWITCH.backstop
    if backstop is not None:
        backstop.remember(host, addresses)


class Backstop:
    """Judges socket and DNS events for one session's guard."""

    def __init__(self, guard: Guard) -> None:
        self.guard = guard
        #: address -> the names this process resolved to it (for the real-peer rule).
        self.resolved: dict[str, set[str]] = {}
        self._lock = threading.Lock()
        self._previous: Backstop | None = None

    def install(self, patches: Patches) -> None:
        if not getattr(socket.socket.connect, "_outbound_backstop", False):
            _patch_sockets(patches)  # else a session this one runs inside patched them
        self._previous = _SWITCH.backstop  # a session nested in another (pytester) stacks
        _SWITCH.backstop = self

    def uninstall(self) -> None:
        if _SWITCH.backstop is self:
            _SWITCH.backstop = self._previous

    # -- events ------------------------------------------------------------------------------

    def on_event(self, event: str, args: tuple[Any, ...]) -> None:
        __tracebackhide__ = True
        if event == "socket.getaddrinfo" or event == "socket.gethostbyname":
            self._lookup(args[0])
        elif event == "socket.connect":
            self._connect(args[0], args[1], "CONNECT")
        elif event in ("socket.sendto", "socket.sendmsg") and args[1] is not None:
            self._connect(args[0], args[1], "SENDTO")

    def _lookup(self, host: object) -> None:
        __tracebackhide__ = True
        name = host.decode("ascii", "replace") if isinstance(host, bytes) else host
        if not isinstance(name, str) or not name or _is_ip(name):
            return  # no lookup: an address, or "any" (None)
        try:
            peer = peer_from_address(name)
        except HostError:
            return  # the resolver refuses it; nothing leaves
        if not self.guard.offline and peer.host in self.guard.judged_hosts():
            return  # its HTTP request was judged already
        self._judge(_record(DNS, "DNS", f"dns://{peer.host}", peer))

    def _connect(self, sock: object, address: object, method: str) -> None:
        __tracebackhide__ = True
        family = getattr(sock, "family", None)
        if family not in (socket.AF_INET, socket.AF_INET6) or not isinstance(address, tuple):
            return  # unix sockets and the like are local
        host, port = address[0], address[1]
        if isinstance(host, bytes):
            host = host.decode("ascii", "replace")
        if not isinstance(host, str) or not isinstance(port, int):
            return
        try:
            peer = peer_from_address(host, port)
        except HostError:
            return
        if is_local(peer) and not self.guard.local_enforce:
            return
        names = self._names_of(peer)
        judged = self.guard.judged_hosts()
        if not self.guard.offline and any(
            port in judged.get(host, ()) for host in (peer.host, *names)
        ):
            return  # the connection of a request judged at the HTTP layer (same host and port)
        kind = "udp" if getattr(sock, "type", None) == socket.SOCK_DGRAM else "tcp"
        shown = f"[{peer.host}]" if ":" in peer.host else peer.host
        record = _record(SOCKET, method, f"{kind}://{shown}:{port}", peer)
        record.resolved_names = tuple(sorted(names))
        self._judge(record)

    def _judge(self, record: OutboundRequest) -> None:
        __tracebackhide__ = True
        if self.guard.offline:
            record.offline = True
        self.guard.observe(record)

    def _names_of(self, peer: Peer) -> set[str]:
        if peer.ip is None:
            return {peer.host}
        with self._lock:
            return set(self.resolved.get(peer.host, ()))

    # -- remembering what names resolve to ----------------------------------------------------

    def remember(self, name: object, addresses: list[str]) -> None:
        if isinstance(name, bytes):
            name = name.decode("ascii", "replace")
        if not isinstance(name, str) or _is_ip(name):
            return
        try:
            canonical = peer_from_address(name).host
        except HostError:
            return
        with self._lock:
            for address in addresses:
                try:
                    text = str(ipaddress.ip_address(address.split("%", 1)[0]))
                except ValueError:
                    continue
                self.resolved.setdefault(text, set()).add(canonical)


def _record(client: str, method: str, url: str, peer: Peer) -> OutboundRequest:
    return OutboundRequest(
        method=method,
        url=url,
        scheme="",
        host=peer.host,
        port=peer.port,
        path="",
        query_text="",
        headers={},
        client=client,
        peer=peer,
    )


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    return True
