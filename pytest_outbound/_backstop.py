"""The socket and DNS backstop: every connection a Python socket makes, every name lookup.

HTTP interceptors see requests; this sees what reaches the operating system from any Python
code: ``socket.connect``/``connect_ex`` (so asyncio's ``sock_connect`` and
``create_connection`` too), ``sendto``/``sendmsg`` to an address, ``getaddrinfo`` and
``gethostbyname``. It patches the methods of ``socket.socket`` (the Python class every
socket of the standard library, ``ssl`` and asyncio is made from, so sockets created before the
session are covered too) and the resolver functions. What is patched already (by a session
this one runs inside, under pytester) is not patched again, and the patches call whichever
session's backstop is current (``_SWITCH``). Tools that put back an original they saved
(pytest-socket restores its ``connect`` after every test) are caught up with before each test,
and pytest-socket's saved originals are made ours.

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
import contextvars
import ipaddress
import socket
import sys
import threading
from collections.abc import Callable
from typing import Any

from pytest_outbound._decide import DNS, SOCKET
from pytest_outbound._guard import Guard
from pytest_outbound._hosts import HostError, Peer, is_local, peer_from_address
from pytest_outbound._interceptors import Patches
from pytest_outbound._record import OutboundRequest


class _Switch:
    backstop: Backstop | None = None


_SWITCH = _Switch()
#: The patched call in progress in this context (thread, greenlet, asyncio task): a patched
#: function reached again beneath it for the same event (a nested session's patch over an outer
#: one, pytest-socket's ``guarded_connect`` calling the saved ``connect``, which is ours) judges
#: nothing a second time. A different event beneath it (a signal handler's) is judged.
_CALL: contextvars.ContextVar[tuple[Any, ...] | None] = contextvars.ContextVar(
    "outbound_backstop_call", default=None
)
#: Set while a backstop judges, so that nothing the judging does is judged in turn.
_JUDGING: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "outbound_backstop_judging", default=False
)


def _judge(event: str, *args: Any) -> None:
    __tracebackhide__ = True
    backstop = _SWITCH.backstop
    if backstop is None or _JUDGING.get():
        return
    token = _JUDGING.set(True)
    try:
        backstop.on_event(event, args)
    finally:
        _JUDGING.reset(token)


def _ours(value: object) -> bool:
    return bool(getattr(value, "_outbound_backstop", False))


def _patch_sockets(patches: Patches) -> None:
    """Patch what is not patched yet: ``socket.socket``'s connecting methods and the resolvers
    call the current backstop first. Run again before every test, because tools restore the
    originals they saved (pytest-socket puts its copy of ``connect`` back after every test)."""
    cls = socket.socket
    for name, wrap in _SOCKET_METHODS.items():
        current = getattr(cls, name, None)
        if current is not None and not _ours(current):
            patches.patch(cls, name, _mark(wrap(current)))
    for owner, name, wrap in _RESOLVERS:
        current = getattr(owner, name, None)
        if current is not None and not _ours(current):
            patches.patch(owner, name, _mark(wrap(current)))
    # pytest-socket saved the originals when it was imported and calls or restores them:
    # let it hold ours instead (as requests-mock's saved ``Session.send`` is made ours).
    # Wrapped as they are: they are the standard library's, whatever this process has patched
    # into ``socket`` since (gevent's ``connect`` must not end up on the standard class).
    pytest_socket = sys.modules.get("pytest_socket")
    if pytest_socket is not None:
        for saved, wrap in (
            ("_true_connect", _wrap_connect),
            ("_true_gethostbyname", _wrap_gethostbyname),
        ):
            original = getattr(pytest_socket, saved, None)
            if original is not None and not _ours(original):
                patches.patch(pytest_socket, saved, _mark(wrap(original)))


def _mark(function: Callable[..., Any]) -> Callable[..., Any]:
    function.__dict__["_outbound_backstop"] = True
    return function


def _wrap_method(
    event: str, address_of: Callable[[tuple[Any, ...]], Any]
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A socket method that hands ``event`` to the backstop before the original runs, when
    ``address_of(args)`` finds an address in its arguments (None: nothing to judge)."""

    def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
        def method(self: socket.socket, *args: Any) -> Any:
            __tracebackhide__ = True
            address = address_of(args)
            key = (event, id(self), address)
            if address is None or _CALL.get() == key:
                return original(self, *args)
            token = _CALL.set(key)
            try:
                _judge(event, self, address)
                return original(self, *args)
            finally:
                _CALL.reset(token)

        return method

    return wrap


_wrap_connect = _wrap_method("socket.connect", lambda args: args[0] if args else None)


def _wrap_resolver(
    event: str, addresses: Callable[[Any], list[str]]
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
        def resolve(host: Any, *args: Any, **kwargs: Any) -> Any:
            __tracebackhide__ = True
            key = (event, host)
            if _CALL.get() == key:
                return original(host, *args, **kwargs)
            token = _CALL.set(key)
            try:
                _judge(event, host)
                result = original(host, *args, **kwargs)
                _remember(host, addresses(result))
                return result
            finally:
                _CALL.reset(token)

        return resolve

    return wrap


#: ``connect_ex`` is judged as a connect; ``sendmsg`` does not exist on every platform.
_SOCKET_METHODS: dict[str, Callable[[Callable[..., Any]], Callable[..., Any]]] = {
    "connect": _wrap_connect,
    "connect_ex": _wrap_connect,
    # sendto(data, address) or sendto(data, flags, address)
    "sendto": _wrap_method("socket.sendto", lambda args: args[-1] if len(args) >= 2 else None),
    # sendmsg(buffers[, ancdata[, flags[, address]]])
    "sendmsg": _wrap_method("socket.sendmsg", lambda args: args[3] if len(args) >= 4 else None),
}
_wrap_gethostbyname = _wrap_resolver("socket.gethostbyname", lambda r: [r])
# ``socket.getaddrinfo`` calls ``_socket.getaddrinfo``; wrapping the lower one survives tools
# that swap and restore the upper one.
_RESOLVERS: tuple[tuple[Any, str, Callable[[Callable[..., Any]], Callable[..., Any]]], ...] = (
    (
        _socket,
        "getaddrinfo",
        _wrap_resolver("socket.getaddrinfo", lambda r: [str(e[4][0]) for e in r]),
    ),
    (socket, "gethostbyname", _wrap_gethostbyname),
    (socket, "gethostbyname_ex", _wrap_resolver("socket.gethostbyname", lambda r: list(r[2]))),
)


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
        self._patches: Patches | None = None
        #: What ``socket.socket.connect`` and ``socket.gethostbyname`` were when last patched:
        #: either changed means a tool put its own (or the original) back.
        self._seen: tuple[object, object] = (None, None)

    def ensure(self) -> None:
        """Before each test: patch again what a tool restored (pytest-socket does, per test)."""
        if self._patches is not None and (
            socket.socket.connect is not self._seen[0] or socket.gethostbyname is not self._seen[1]
        ):
            _patch_sockets(self._patches)
            self._seen = (socket.socket.connect, socket.gethostbyname)

    def install(self, patches: Patches) -> None:
        _patch_sockets(patches)  # what a session this one runs inside patched stays as it is
        self._seen = (socket.socket.connect, socket.gethostbyname)
        self._patches = patches
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
