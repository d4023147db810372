"""The floor beneath every road: an audit hook that judges what reaches the operating system.

HTTP interceptors see requests; this sees every socket operation any Python code makes, however
it got there. CPython raises an audit event (``sys.addaudithook``, PEP 578) inside the C code of
``_socket`` before the system call: ``socket.connect`` (``connect_ex`` too), ``socket.sendto``,
``socket.sendmsg``, ``socket.getaddrinfo``, ``socket.gethostbyname`` (and ``_ex``),
``socket.gethostbyaddr``, ``socket.getnameinfo`` and ``socket.__new__``. So a saved
``socket.socket.connect``, ``_socket.socket.connect(sock, addr)``, ``super(socket.socket,
self).connect``, a reloaded ``socket`` module or gevent's sockets all meet the same judge, and
nothing a tool restores can unhook it. Raising from the hook aborts the call: that is the block.

The hook is added once per process, when the plugin module is first imported (the ``pytest11``
entry point loads before any conftest), and never removed (Python cannot remove one). Sessions
switch it on and off: ``activate`` stacks a session's guard (pytester runs sessions inside
sessions), ``deactivate`` takes it off. With no guard active, or while the plugin does its own
work (``own_work``), an event costs one set lookup.

It fails closed. An address is read as C reads it (exact types, the bytes C passes); one it
cannot read, a family or socket type it cannot judge, is a violation (reason ``unjudgeable``),
never let through. It judges the real peer: a connection to an IP address is allowed when an IP
or CIDR pattern admits it, or when this process resolved an allowed name to that address (the
resolvers are wrapped to remember their answers; a missed answer only makes the judge stricter).
Looking up a name that is not documented is itself a violation (DNS can carry data out).

What CPython raises the event for only after the name in an address was resolved (a name given
straight to ``connect`` or ``sendto`` rather than an address) has been looked up by then: the
connection is still blocked. Native code with its own sockets (pycurl, grpc, uvloop, ctypes)
raises no event at all: see the README's "What cannot be seen".
"""

from __future__ import annotations

import _socket
import contextlib
import contextvars
import functools
import ipaddress
import os
import socket
import sys
import threading
import types
from collections.abc import Callable, Iterator
from typing import Any

from pytest_outbound._decide import DNS, SOCKET
from pytest_outbound._errors import OutboundBlocked
from pytest_outbound._guard import OWN_WORK, Guard, first_user_frame, process_wide
from pytest_outbound._hosts import HostError, Peer, is_local, peer_from_address
from pytest_outbound._record import OutboundRequest
from pytest_outbound._sensitive import PROBE_TARGETS

#: The events judged here; every other audited event returns at the first check.
_SOCKET_EVENTS = frozenset(
    {
        "socket.__new__",
        "socket.connect",
        "socket.bind",
        "socket.sendto",
        "socket.sendmsg",
        "socket.getaddrinfo",
        "socket.gethostbyname",
        "socket.gethostbyaddr",
        "socket.getnameinfo",
    }
)
#: Process events: handed to the active session's ``on_process`` (child processes).
PROCESS_EVENTS = frozenset(
    {"subprocess.Popen", "os.posix_spawn", "os.exec", "os.spawn", "os.system", "os.fork"}
)
_EVENTS = _SOCKET_EVENTS | PROCESS_EVENTS

_INET = (socket.AF_INET, socket.AF_INET6)
_UNIX = getattr(socket, "AF_UNIX", None)
#: Socket types whose peers the connect/sendto events name; SOCK_RAW's do not (its packets
#: carry their own headers), so a raw socket cannot be judged.
_JUDGEABLE_TYPES = frozenset(
    t
    for t in (
        getattr(socket, "SOCK_STREAM", None),
        getattr(socket, "SOCK_DGRAM", None),
        getattr(socket, "SOCK_SEQPACKET", None),
    )
    if t is not None
)
#: Flags Linux lets ``type`` carry besides the type itself.
_TYPE_FLAGS = getattr(socket, "SOCK_NONBLOCK", 0) | getattr(socket, "SOCK_CLOEXEC", 0)
_family_of: Callable[[object], int] = _socket.socket.family.__get__
_type_of: Callable[[object], int] = _socket.socket.type.__get__


class _Switch:
    """The process's hook and the sessions switched on beneath it."""

    def __init__(self) -> None:
        self.hooked = False
        #: Active backstops, innermost (current) last.
        self.stack: list[Backstop] = []
        self.current: Backstop | None = None
        #: Keeps egress from pytest's registering the plugin until a session's guard exists.
        self.waiting: Waiting | None = None
        self.lock = threading.RLock()  # a signal handler may send while this thread judges
        self.resolver_patches: list[tuple[Any, str, Any]] = []


_SWITCH: _Switch = process_wide("switch", _Switch)


def install_hook() -> None:
    """Add the audit hook to this process, once (it can never be removed)."""
    if _SWITCH.hooked:
        return
    _SWITCH.hooked = True
    sys.addaudithook(_hook)


def _hook(event: str, args: tuple[Any, ...]) -> None:
    # Every audited event of the process comes here, nearly all of them not ours. Per test,
    # pytest raises ``object.__getattr__`` most (``inspect.signature`` reading ``__code__``:
    # 8 a trivial test, 63 with pytest-recording's autouse fixtures), then ``builtins.id``.
    # Each comes as a new string, which a set lookup must hash first; a comparison with a
    # constant does not (callgrind: 264 and 145 fewer instructions for those two events, 186
    # more for any other; benchmarks/RESULTS.md, session 14).
    if event == "object.__getattr__" or event == "builtins.id" or event not in _EVENTS:
        return
    backstop = _SWITCH.current or _SWITCH.waiting
    if backstop is None:
        return
    __tracebackhide__ = True
    backstop.on_event(event, args)
    if len(_SWITCH.stack) > 1 and event not in PROCESS_EVENTS:
        # a session inside a session (pytester, ``pytest.main`` in a test) narrows, never
        # widens: what the inner one let through is judged by every session around it too
        for outer in _SWITCH.stack[-2::-1]:
            outer.on_event(event, args)


@contextlib.contextmanager
def own_work() -> Iterator[None]:
    """The plugin's probe of this machine is running: its UDP "connections" to the probe
    targets (which send nothing) are not judged. Nothing else is exempt: the probe calls
    functions a test may have patched (``getpass.getuser``), and what they send is judged."""
    token = OWN_WORK.set(True)
    try:
        yield
    finally:
        OWN_WORK.reset(token)


# -- remembering what names resolve to ---------------------------------------------------------


def _remembering(original: Callable[..., Any], answers: Callable[[Any], list[str]]) -> Any:
    """``original``, remembering its answers. It takes the arguments as the original does
    (its own errors for wrong ones), and pickles as the original's name (``_socket``'s
    module attribute, which is this very wrapper while it is in place)."""

    def resolve(*args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True
        flags = args[5] if len(args) > 5 else kwargs.get("flags", 0)
        if isinstance(flags, int) and int.__index__(flags) & _AI_NUMERICHOST:  # as C reads it
            # the audit event does not carry the flags: say it here (no query is sent)
            token = _NUMERIC_ONLY.set(True)
            try:
                return original(*args, **kwargs)
            finally:
                _NUMERIC_ONLY.reset(token)
        result = original(*args, **kwargs)
        if args and (_SWITCH.current is not None or _SWITCH.waiting is not None):
            with contextlib.suppress(Exception):
                _remember(args[0], answers(result))
        return result

    resolve.__wrapped__ = original  # type: ignore[attr-defined]
    for name in ("__module__", "__name__", "__qualname__", "__doc__"):
        with contextlib.suppress(AttributeError, TypeError):
            setattr(resolve, name, getattr(original, name))
    resolve._outbound_remembers = True  # type: ignore[attr-defined]
    return resolve


#: Set while ``getaddrinfo`` runs with ``AI_NUMERICHOST`` through the wrapper: the resolver
#: reads the host as an address or refuses it, and asks nobody (tornado's ``is_valid_ip``).
_NUMERIC_ONLY: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "outbound_numeric_only", default=False
)
_AI_NUMERICHOST: int = getattr(socket, "AI_NUMERICHOST", 0)


def _patch_resolvers() -> None:
    """Wrap the resolvers so that their answers are remembered (judging is the hook's).
    ``socket.getaddrinfo`` calls ``_socket.getaddrinfo``; ``socket.gethostbyname`` is
    ``_socket``'s own function: one wrapper stands in both modules for one original."""
    wanted = (
        ("getaddrinfo", lambda r: [str(e[4][0]) for e in r]),
        ("gethostbyname", lambda r: [r]),
        ("gethostbyname_ex", lambda r: list(r[2])),
    )
    for name, answers in wanted:
        original = getattr(_socket, name, None)
        if original is None or getattr(original, "_outbound_remembers", False):
            continue
        wrapper = _remembering(original, answers)
        for owner in (_socket, socket):
            if getattr(owner, name, None) is original:
                setattr(owner, name, wrapper)
                _SWITCH.resolver_patches.append((owner, name, original))


def _unpatch_resolvers() -> None:
    while _SWITCH.resolver_patches:
        owner, name, original = _SWITCH.resolver_patches.pop()
        if getattr(getattr(owner, name, None), "__wrapped__", None) is original:
            setattr(owner, name, original)


def _remember(host: object, addresses: list[str]) -> None:
    name = _readable_host(host)
    if not name or _is_ip(name):
        return
    try:
        canonical = peer_from_address(name).host
    except HostError:
        return
    with _SWITCH.lock:
        judging = list(_SWITCH.stack)  # every session judges the connection that follows
        for address in addresses:
            try:
                text = str(ipaddress.ip_address(str(address).split("%", 1)[0]))
            except ValueError:
                continue
            for backstop in judging:
                backstop.resolved.setdefault(text, set()).add(canonical)


# -- reading addresses as C reads them ----------------------------------------------------------


class Unjudgeable(Exception):
    """An address, family or socket type the backstop cannot judge: a violation."""


def _exact_text(value: object) -> str:
    """The host text C will use, from a str, bytes or bytearray (exact, subclasses read as the
    C code reads them); raise ``Unjudgeable`` when that cannot be known."""
    if type(value) is str:
        text = value
    elif isinstance(value, str):
        # C hands a str subclass to the "idna" codec, which calls its ``encode``.
        if type(value).encode is not str.encode:
            raise Unjudgeable(f"a {type(value).__name__} host that encodes itself")
        text = str.__str__(value)
    elif isinstance(value, bytes):
        raw = value if type(value) is bytes else bytes.__getitem__(value, slice(None))
        return _ascii(raw)
    elif isinstance(value, bytearray):
        # another thread may change it between C reading it and this (C copies it first)
        raise Unjudgeable("a bytearray host, which can change while it is read")
    else:
        raise Unjudgeable(f"a host of type {type(value).__name__}")
    if text.isascii():
        return text
    try:
        return text.encode("idna").decode("ascii")  # exactly what C passes on
    except UnicodeError as exc:
        raise Unjudgeable(f"a host the idna codec refuses ({exc})") from None


def _ascii(raw: bytes) -> str:
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        raise Unjudgeable(f"a host of bytes that are not ASCII ({raw[:40]!r})") from None


def _exact_port(value: object) -> int:
    if type(value) is int:
        return value
    if isinstance(value, int):
        return int.__index__(value)  # C reads an int subclass's own value
    index = getattr(type(value), "__index__", None)
    if not isinstance(index, types.WrapperDescriptorType | types.BuiltinFunctionType):
        # C called it once already; a second call may answer differently
        raise Unjudgeable(f"a port of type {type(value).__name__}")
    port = value.__index__()  # type: ignore[attr-defined]
    if type(port) is not int:
        raise Unjudgeable(f"a port of type {type(value).__name__}")
    return port


def _item(address: tuple[Any, ...], index: int) -> Any:
    return tuple.__getitem__(address, index)


def _no_trailing_dot(text: str, peer: Peer) -> None:
    """A dotted address with a trailing dot (``10.0.0.7.``) is a name to the resolver, which
    asks a nameserver for it: it cannot be judged as the address it looks like."""
    if peer.ip is not None and text.endswith((".", "\u3002", "\uff0e", "\uff61")):
        raise Unjudgeable(f"{text!r}, an address with a trailing dot (the resolver asks for it)")


def _routed_elsewhere(sock: object, family: int) -> bool:
    """Whether the socket carries IP options or an IPv6 routing header: a source route
    sends its packets through hosts the address does not name."""
    try:
        if family == socket.AF_INET and _IP_OPTIONS is not None:
            return bool(_getsockopt(sock, socket.IPPROTO_IP, _IP_OPTIONS, 40))
        if family == socket.AF_INET6 and _IPV6_RTHDR is not None:
            return bool(_getsockopt(sock, socket.IPPROTO_IPV6, _IPV6_RTHDR, 256))
    except OSError:
        return False
    return False


_getsockopt: Callable[..., Any] = _socket.socket.getsockopt
_IP_OPTIONS: int | None = getattr(socket, "IP_OPTIONS", None)
_IPV6_RTHDR: int | None = getattr(socket, "IPV6_RTHDR", None)


def _readable_host(host: object) -> str:
    try:
        return _exact_text(host)
    except Unjudgeable:
        return ""


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    return True


# -- the session's side ---------------------------------------------------------------------------


class Backstop:
    """Judges socket and DNS events for one session's guard while it is active."""

    def __init__(self, guard: Guard) -> None:
        self.guard = guard
        #: address -> the canonical names resolved to it while this session was current
        #: (the real-peer rule).
        self.resolved: dict[str, set[str]] = {}
        #: Told of process events (``subprocess.Popen`` ...): the children's guard.
        self.on_process: Callable[[str, tuple[Any, ...]], None] | None = None

    def activate(self) -> None:
        """Judge this process's socket events with this guard, until ``deactivate``."""
        install_hook()
        with _SWITCH.lock:
            if self in _SWITCH.stack:
                return
            _SWITCH.stack.append(self)
            _SWITCH.current = self
        _patch_resolvers()

    def deactivate(self) -> None:
        with _SWITCH.lock:
            if self in _SWITCH.stack:
                _SWITCH.stack.remove(self)
            _SWITCH.current = _SWITCH.stack[-1] if _SWITCH.stack else None
            empty = not _SWITCH.stack
        if empty:
            _unpatch_resolvers()

    @property
    def active(self) -> bool:
        return _SWITCH.current is self

    # -- events ------------------------------------------------------------------------------

    def on_event(self, event: str, args: tuple[Any, ...]) -> None:
        __tracebackhide__ = True
        if event in PROCESS_EVENTS:
            if self.on_process is not None:
                self.on_process(event, args)
            return
        try:
            if event == "socket.connect":
                self._connect(args[0], args[1], "CONNECT")
            elif event in ("socket.sendto", "socket.sendmsg"):
                if args[1] is not None:
                    self._connect(args[0], args[1], "SENDTO")
            elif event == "socket.bind":
                self._bind(args[0], args[1])
            elif event == "socket.getaddrinfo":
                self._lookup(args[0])
            elif event == "socket.gethostbyname":
                self._lookup(_item(args, 0) if args else None)
            elif event == "socket.gethostbyaddr":
                self._reverse(_item(args, 0) if args else None)
            elif event == "socket.getnameinfo":
                self._nameinfo(args[0] if args else None)
            elif event == "socket.__new__":
                self._new(args[1], args[2])
        except Unjudgeable as exc:
            self._unjudgeable(event, str(exc), args)
        except OutboundBlocked:
            raise
        except Exception as exc:  # a failure of the judge: fail closed, never a stray error
            self._unjudgeable(event, f"this {event} event ({type(exc).__name__}: {exc})", args)

    def _new(self, family: int, kind: int) -> None:
        __tracebackhide__ = True
        if family == -1:
            return  # made from a file descriptor: judged where it connects
        if family == _UNIX:
            return
        if family not in _INET:
            raise Unjudgeable(f"a socket of family {_family_name(family)}")
        if kind != -1 and (kind & ~_TYPE_FLAGS) not in _JUDGEABLE_TYPES:
            raise Unjudgeable(f"a {_type_name(kind & ~_TYPE_FLAGS)} socket")

    def _lookup(self, host: object) -> None:
        __tracebackhide__ = True
        if host is None or _NUMERIC_ONLY.get():
            return  # "any", or AI_NUMERICHOST: no lookup
        name = _exact_text(host)
        if not name:
            return  # the resolver answers an empty name itself
        try:
            peer = peer_from_address(name)
        except HostError as exc:
            raise Unjudgeable(f"a lookup of {name!r}: {exc}") from None
        _no_trailing_dot(name, peer)
        if peer.ip is not None or peer.host in _own_names():
            return  # an address: nothing is asked; this machine's own name: about itself
        self._judge(_record(DNS, "DNS", f"dns://{peer.host}", peer))

    def _bind(self, sock: object, address: object) -> None:
        """A name in the address to bind was looked up by C before this event: judge that
        lookup (it has left; in enforce the run fails). Addresses, ``""``, ``localhost`` and
        this machine's own name ask nobody."""
        __tracebackhide__ = True
        if _family_of(sock) not in _INET or not isinstance(address, tuple):
            return
        if tuple.__len__(address) < 1:
            return
        name = _exact_text(_item(address, 0))
        if name in ("", "<broadcast>"):
            return
        try:
            peer = peer_from_address(name)
        except HostError as exc:
            raise Unjudgeable(f"a lookup of {name!r} to bind: {exc}") from None
        _no_trailing_dot(name, peer)
        if peer.ip is None and peer.host != "localhost" and peer.host not in _own_names():
            self._judge(_record(DNS, "DNS", f"dns://{peer.host}", peer))

    def _reverse(self, host: object) -> None:
        """``gethostbyaddr``: a name is looked up first; an address is looked up in reverse."""
        __tracebackhide__ = True
        name = _exact_text(host)
        try:
            peer = peer_from_address(name) if name else peer_from_address("0.0.0.0")
        except HostError as exc:
            raise Unjudgeable(f"a lookup of {name!r}: {exc}") from None
        _no_trailing_dot(name, peer)
        if peer.ip is None:
            if peer.host not in _own_names():
                self._judge(_record(DNS, "DNS", f"dns://{peer.host}", peer))
        elif not is_local(peer):
            self._judge(_record(DNS, "PTR", f"dns://{_shown(peer.host)}", peer))

    def _nameinfo(self, sockaddr: object) -> None:
        __tracebackhide__ = True
        if not isinstance(sockaddr, tuple) or tuple.__len__(sockaddr) < 1:
            return  # refused by C before anything is asked
        self._reverse(_item(sockaddr, 0))

    def _connect(self, sock: object, address: object, method: str) -> None:
        __tracebackhide__ = True
        family = _family_of(sock)
        kind = _type_of(sock) & ~_TYPE_FLAGS
        guard = self.guard
        if family == _UNIX:
            if guard.local_enforce:
                self._judge_unix(address, method)
            return
        if family not in _INET:
            raise Unjudgeable(f"a socket of family {_family_name(family)}")
        if kind not in _JUDGEABLE_TYPES:
            raise Unjudgeable(f"a {_type_name(kind)} socket")
        if not isinstance(address, tuple) or tuple.__len__(address) < 2:
            raise Unjudgeable(f"the address {address!r}")
        if _routed_elsewhere(sock, family):
            raise Unjudgeable("a socket with IP options or a routing header (a source route)")
        host = _exact_text(_item(address, 0))
        port = _exact_port(_item(address, 1))
        if host == "":
            host = "0.0.0.0" if family == socket.AF_INET else "::"  # C: the "any" address
        elif host == "<broadcast>" and family == socket.AF_INET:
            host = "255.255.255.255"
        try:
            peer = peer_from_address(host, port)
        except HostError as exc:
            raise Unjudgeable(f"the address ({host!r}, {port}): {exc}") from None
        _no_trailing_dot(host, peer)
        # A name C resolved (a nameserver may answer for "x.localhost"): only "localhost"
        # itself is this machine.
        local = is_local(peer) if peer.ip is not None else peer.host == "localhost"
        if local and not guard.local_enforce:
            return
        if OWN_WORK.get() and kind == socket.SOCK_DGRAM and (peer.host, port) in PROBE_TARGETS:
            return  # the machine probe reads its source address (a UDP connect sends nothing)
        names: set[str] = set()
        if peer.ip is not None:
            with _SWITCH.lock:
                names = set(self.resolved.get(peer.host, ()))
        kind_name = "udp" if kind == socket.SOCK_DGRAM else "tcp"
        record = _record(SOCKET, method, f"{kind_name}://{_shown(peer.host)}:{port}", peer)
        record.resolved_names = tuple(sorted(names))
        self._judge(record, names)

    def _judge_unix(self, address: object, method: str) -> None:
        __tracebackhide__ = True
        if isinstance(address, str | bytes | bytearray):
            path = str.__str__(address) if isinstance(address, str) else _readable_host(address)
        else:
            path = os.fsdecode(os.fspath(address))  # type: ignore[call-overload]
        shown = path.replace("\x00", "@") if path else "(unnamed)"
        peer = Peer("", "localhost", None, None)
        self._judge(_record(SOCKET, method, f"unix://{shown}", peer))

    def _unjudgeable(self, event: str, what: str, args: tuple[Any, ...] = ()) -> None:
        __tracebackhide__ = True
        # what the call was given, as far as it can be shown (socket events: the address)
        given = args[1] if event.startswith(_WITH_ADDRESS) and len(args) > 1 else args[:1]
        shown = _safe_repr(given[0] if isinstance(given, tuple) and len(given) == 1 else given)
        method = event.partition(".")[2].upper() or "SOCKET"
        record = _record(SOCKET, method, f"socket://{shown}", None)
        record.host_error = f"the plugin cannot judge {what}"
        self._judge(record)

    def _judge(
        self, record: OutboundRequest, names: set[str] | frozenset[str] = frozenset()
    ) -> None:
        __tracebackhide__ = True
        guard = self.guard
        if guard.offline:
            record.offline = True
        guard.observe_low(record, names)


@functools.cache
def _own_names() -> frozenset[str]:
    """This machine's own name: looking it up (``socket.getfqdn()``, ``HTTPServer``) asks about
    this machine, as reverse lookups of its loopback addresses do; neither is judged."""
    try:
        return frozenset({peer_from_address(_GETHOSTNAME()).host})
    except (HostError, OSError):
        return frozenset()


#: Captured at import: a test's mock of ``socket.gethostname`` changes nothing here.
_GETHOSTNAME: Callable[[], str] = _socket.gethostname


class _NothingKnownYet:
    """The guard a ``Waiting`` backstop reads: keep everything (local traffic too), the
    session's guard decides."""

    local_enforce = True
    offline = False


class Waiting(Backstop):
    """From the moment pytest registers the plugin (while it goes on importing the other
    plugins, ``PYTEST_PLUGINS``, ``-p`` options) until the session's guard exists, no policy
    is known: what the process sends is kept (up to ``LIMIT``), with its call
    site, and judged by that guard when it takes over (``hand_over``), phase ``collect``.
    It left already: in ``enforce`` it fails the run, it cannot be blocked."""

    LIMIT = 100

    def __init__(self) -> None:
        super().__init__(_NothingKnownYet())  # type: ignore[arg-type]
        self.kept: list[tuple[OutboundRequest, set[str]]] = []

    @classmethod
    def start(cls) -> None:
        install_hook()
        _SWITCH.waiting = cls()

    @staticmethod
    def hand_over(backstop: Backstop | None) -> None:
        """The session's ``backstop`` judges what was kept (None: nobody, the plugin is
        off); the waiting ends."""
        waiting, _SWITCH.waiting = _SWITCH.waiting, None
        if waiting is None or backstop is None:
            return
        for record, names in waiting.kept:
            record.location = backstop.guard.relative(record.location)
            with contextlib.suppress(OutboundBlocked):  # gone already: fails the session
                backstop.guard.observe_low(record, names)

    def on_event(self, event: str, args: tuple[Any, ...]) -> None:
        if event not in PROCESS_EVENTS:  # any thread: a plugin's import may start one
            super().on_event(event, args)

    def _judge(
        self, record: OutboundRequest, names: set[str] | frozenset[str] = frozenset()
    ) -> None:
        if len(self.kept) < self.LIMIT:
            record.location = first_user_frame(sys._getframe(1))
            self.kept.append((record, set(names)))


_WITH_ADDRESS = ("socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg")


def _safe_repr(value: object, limit: int = 80) -> str:
    """``repr`` for a message; what a subclass's own ``__repr__`` does is not trusted."""
    try:
        text = repr(value)
    except Exception:
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _record(client: str, method: str, url: str, peer: Peer | None) -> OutboundRequest:
    return OutboundRequest(
        method=method,
        url=url,
        scheme="",
        host=peer.host if peer is not None else "",
        port=peer.port if peer is not None else None,
        path="",
        query_text="",
        headers={},
        client=client,
        peer=peer,
    )


def _shown(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _family_name(family: int) -> str:
    try:
        return socket.AddressFamily(family).name
    except ValueError:
        return str(family)


def _type_name(kind: int) -> str:
    try:
        return socket.SocketKind(kind).name
    except ValueError:
        return f"type {kind}"
