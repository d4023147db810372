"""The gateway and the DNS responder: the sandbox's only road out, in the machine's namespace.

They serve the sockets the sandbox bound inside (``_namespace``): programs reach the gateway
as ``127.0.0.1:PORT`` and the responder as ``127.0.0.1:53``; the threads that answer run in
this process, which is outside, and make the connections and lookups that leave.

The gateway speaks, on one port, told apart by the first byte:

- HTTP ``CONNECT host:port`` (a tunnel, for HTTPS and anything else);
- plain HTTP proxying (``GET http://host/path``): the whole request (body too) is read and
  judged before anything is sent; it is sent with ``Connection: close``, and the response
  relayed as it comes;
- SOCKS5 ``CONNECT`` (no authentication; names or addresses).

Every request is judged (``_judging``) before the gateway connects anywhere; a refused one
gets ``403`` (HTTP) or "not allowed by ruleset" (SOCKS5), with the reason. Targets on
loopback are refused unjudged: local traffic stays inside the sandbox (its own ``lo``).

The DNS responder judges every lookup, A, AAAA or any other type, by the program's name.
It answers an allowed name with the addresses this machine's resolver gives (asked here,
outside: ``getaddrinfo``), a refused one with ``NXDOMAIN``. It remembers which names it
answered with each address, so that a tunnel to an address (SOCKS5 after a local lookup) is
judged by those names too, as the socket backstop judges a connection. ``localhost`` and
loopback reverse lookups are answered without asking; other reverse lookups are judged (as
``PTR``) and answered ``NXDOMAIN``.

``Outside`` is where connections and lookups go. Tests give it a mapping (the environment
variable ``PYTEST_OUTBOUND_SANDBOX_OUTSIDE``: ``{"name": "127.0.0.1:PORT"}``, for this
project's own tests only): then only those names exist, each answered with a placeholder
address (``198.18.0.0/15``) and connected to its loopback server, and nothing else leaves.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import json
import os
import selectors
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from pytest_outbound._guard import OWN_WORK
from pytest_outbound._sandbox import _dns
from pytest_outbound._sandbox._judging import HTTP, LOOKUP, TUNNEL, Answer, Ask
from pytest_outbound._sandbox._programs import Program, Programs

OUTSIDE_ENV = "PYTEST_OUTBOUND_SANDBOX_OUTSIDE"

#: A request's head (request line and headers) may be this long.
HEAD_LIMIT = 64 * 1024
#: A plain HTTP request's body is read whole, up to this, before it is judged.
BODY_LIMIT = 64 * 1024 * 1024
CONNECT_TIMEOUT = 30.0
#: Seconds a name's addresses are kept (A and AAAA queries come in pairs).
RESOLVE_CACHE = 5.0
#: A lookup of the same name by the same program within this many seconds is the same
#: lookup (the C library asks for A and AAAA at once): judged and recorded once.
LOOKUP_PAIR = 2.0

Judge = Callable[[Ask], Answer]

_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "proxy-authorization", "expect", "te"}
)


class OutsideError(Exception):
    """A connection or lookup outside failed (said to the program as 502, or SERVFAIL)."""


class Outside:
    """Where the gateway's connections and the responder's lookups go: the machine's
    network, or (tests) only the names of a mapping."""

    def __init__(self, mapping: dict[str, tuple[str, int]] | None = None) -> None:
        self.mapping = mapping
        self._placeholders: dict[str, str] = {}  # placeholder address -> name
        self._names: dict[str, str] = {}  # name -> placeholder address
        self._cache: dict[str, tuple[float, list[str] | None]] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_environment(cls) -> Outside:
        text = os.environ.get(OUTSIDE_ENV)
        if not text:
            return cls()
        mapping: dict[str, tuple[str, int]] = {}
        for name, target in json.loads(text).items():
            host, _, port = str(target).rpartition(":")
            mapping[str(name).lower().rstrip(".")] = (host, int(port))
        return cls(mapping)

    def resolve(self, name: str) -> list[str] | None:
        """The addresses of ``name`` (None: no such name)."""
        if self.mapping is not None:
            if name not in self.mapping:
                return None
            with self._lock:
                address = self._names.get(name)
                if address is None:
                    number = len(self._names) + 1
                    address = str(ipaddress.IPv4Address("198.18.0.0") + number)
                    self._names[name] = address
                    self._placeholders[address] = name
            return [address]
        now = time.monotonic()
        with self._lock:
            known = self._cache.get(name)
        if known is not None and now - known[0] < RESOLVE_CACHE:
            return known[1]
        try:
            infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
            found: list[str] | None = list(dict.fromkeys(str(i[4][0]) for i in infos))
        except socket.gaierror as exc:
            if exc.errno not in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", -5)):
                raise OutsideError(str(exc)) from None
            found = None
        with self._lock:
            self._cache[name] = (now, found)
        return found

    def connect(self, host: str, port: int) -> socket.socket:
        """A connection to ``host:port`` outside; ``OutsideError`` when there is none."""
        target = (host, port)
        if self.mapping is not None:
            name = self._placeholders.get(host, host)
            if name not in self.mapping:
                raise OutsideError(f"{host} is not in the test mapping ({OUTSIDE_ENV})")
            target = self.mapping[name]
        try:
            sock = socket.create_connection(target, timeout=CONNECT_TIMEOUT)
        except OSError as exc:
            raise OutsideError(f"{host}:{port}: {exc.strerror or exc}") from None
        sock.settimeout(None)
        return sock


def _is_local(host: str) -> bool:
    name = host.lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        ip = ipaddress.ip_address(name.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback or ip.is_unspecified


class _Reader:
    """Buffered reads from a client's socket (what was read past a head stays for the body)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def _more(self) -> bool:
        data = self.sock.recv(1 << 16)
        self.buffer += data
        return bool(data)

    def exactly(self, count: int) -> bytes:
        while len(self.buffer) < count:
            if not self._more():
                raise ConnectionError("the client closed the connection")
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    def until(self, marker: bytes, limit: int) -> bytes:
        while marker not in self.buffer:
            if len(self.buffer) > limit:
                raise ValueError("too long")
            if not self._more():
                raise ConnectionError("the client closed the connection")
        data, _, self.buffer = self.buffer.partition(marker)
        return data + marker


class Gateway:
    """Serves the sandbox's gateway and DNS sockets, judging with ``judge``."""

    def __init__(
        self,
        judge: Judge,
        programs: Programs,
        outside: Outside | None = None,
        *,
        port: int = 0,
    ) -> None:
        self.judge = judge
        self.programs = programs
        self.outside = outside or Outside.from_environment()
        self.port = port
        #: address -> the names the responder answered with it.
        self.answered: dict[str, set[str]] = {}
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._closed = False
        self._lookups = ThreadPoolExecutor(max_workers=8, thread_name_prefix="outbound-dns")
        self._lookups_judged: dict[tuple[int | None, str, str], tuple[float, Future[Answer]]] = {}
        self._udp_programs: dict[tuple[str, int], tuple[float, Program]] = {}

    # -- serving -----------------------------------------------------------------------------

    def serve(self, gateway: socket.socket, dns_udp: socket.socket, dns_tcp: socket.socket) -> None:
        """Serve the three sockets, each from a thread of its own (daemons)."""
        self._sockets = [gateway, dns_udp, dns_tcp]
        for target, sock in (
            (self._accept_proxy, gateway),
            (self._serve_udp, dns_udp),
            (self._accept_dns_tcp, dns_tcp),
        ):
            threading.Thread(
                target=_own_work(target), args=(sock,), name="outbound-gateway", daemon=True
            ).start()

    def names_of(self, address: str) -> tuple[str, ...]:
        """The names the DNS responder answered with ``address``."""
        with self._lock:
            return tuple(sorted(self.answered.get(address, ())))

    def close(self) -> None:
        self._closed = True
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()
        self._lookups.shutdown(wait=False, cancel_futures=True)

    def _accept_proxy(self, listener: socket.socket) -> None:
        server = listener.getsockname()
        while not self._closed:
            try:
                conn, client = listener.accept()
            except OSError:
                return
            threading.Thread(
                target=_own_work(self._proxy),
                args=(conn, client, server),
                name="outbound-gateway",
                daemon=True,
            ).start()

    def _proxy(self, conn: socket.socket, client: tuple[str, int], server: tuple[str, int]) -> None:
        with conn:
            try:
                program = self.programs.of_tcp(client, server)
                reader = _Reader(conn)
                if not reader._more():
                    return
                first = reader.buffer[0]
                if first == 5:
                    self._socks5(conn, reader, program)
                elif first == 4:
                    return  # SOCKS4: not spoken (SOCKS5 and HTTP are)
                else:
                    self._http(conn, reader, program)
            except (ConnectionError, OSError, ValueError):
                return

    # -- HTTP ----------------------------------------------------------------------------------

    def _http(self, conn: socket.socket, reader: _Reader, program: Program) -> None:
        try:
            head = reader.until(b"\r\n\r\n", HEAD_LIMIT)
        except ValueError:
            _respond(conn, 431, "the request's head is too long")
            return
        lines = head[:-4].decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            _respond(conn, 400, "not an HTTP request line")
            return
        method, target, _version = parts
        headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                _respond(conn, 400, f"a malformed header line: {line!r}")
                return
            headers.append((name, value.strip()))
        if method.upper() == "CONNECT":
            host, port = _authority(target)
            if host is None or port is None:
                _respond(conn, 400, f"CONNECT needs host:port, not {target!r}")
                return
            self._tunnel(conn, host, port, program, http=True)
            return
        self._forward(conn, reader, method, target, headers, program)

    def _forward(
        self,
        conn: socket.socket,
        reader: _Reader,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        program: Program,
    ) -> None:
        lowered = {name.lower(): value for name, value in headers}
        if target.startswith("/"):  # origin form: a client that took the gateway for a server
            host_header = lowered.get("host", "")
            url = f"http://{host_header}{target}"
        else:
            url = target
        scheme, sep, rest = url.partition("://")
        if not sep or scheme.lower() != "http":
            _respond(
                conn,
                501,
                f"the gateway proxies http:// URLs; for {scheme or 'this'} use CONNECT"
                " (HTTPS_PROXY does)",
            )
            return
        authority, _, path_part = rest.partition("/")
        path = "/" + path_part
        host, port = _authority(authority, default=80)
        if host is None or port is None:
            _respond(conn, 400, f"no host in {url!r}")
            return
        if "100-continue" in lowered.get("expect", "").lower():
            conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        try:
            raw_body, body = _read_body(reader, lowered)
        except ValueError as exc:
            _respond(conn, 413 if "large" in str(exc) else 400, str(exc))
            return
        if _is_local(host):
            _respond(conn, 403, _local_text(host))
            return
        ask = Ask(
            HTTP,
            method.upper(),
            url=url,
            headers=headers,
            body=body,
            pid=program.pid,
            program=program.text(),
        )
        answer = self.judge(ask)
        if not answer.allowed:
            _respond(conn, 403, _refused_text(ask, answer))
            return
        try:
            upstream = self.outside.connect(host, port)
        except OutsideError as exc:
            _respond(conn, 502, f"the gateway could not connect: {exc}")
            return
        with upstream:
            kept = [(n, v) for n, v in headers if n.lower() not in _HOP_BY_HOP]
            request = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{n}: {v}\r\n" for n, v in kept)
            upstream.sendall(request.encode("latin-1") + b"Connection: close\r\n\r\n" + raw_body)
            while True:
                data = upstream.recv(1 << 16)
                if not data:
                    break
                conn.sendall(data)

    # -- tunnels -----------------------------------------------------------------------------

    def _tunnel(
        self, conn: socket.socket, host: str, port: int, program: Program, *, http: bool
    ) -> bool:
        """Judge and open a tunnel to ``host:port``; ``http``: say so as CONNECT does (else
        the caller speaks SOCKS5). Returns whether it was opened (and has been pumped)."""
        if _is_local(host):
            if http:
                _respond(conn, 403, _local_text(host))
            else:
                conn.sendall(_socks_reply(2))
            return False
        names = self.names_of(host)
        ask = Ask(
            TUNNEL,
            "CONNECT",
            host=host,
            port=port,
            pid=program.pid,
            program=program.text(),
            names=names,
        )
        answer = self.judge(ask)
        if not answer.allowed:
            if http:
                _respond(conn, 403, _refused_text(ask, answer))
            else:
                conn.sendall(_socks_reply(2))
            return False
        try:
            upstream = self.outside.connect(host, port)
        except OutsideError as exc:
            if http:
                _respond(conn, 502, f"the gateway could not connect: {exc}")
            else:
                conn.sendall(_socks_reply(5))
            return False
        with upstream:
            if http:
                conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:
                conn.sendall(_socks_reply(0))
            _pump(conn, upstream)
        return True

    def _socks5(self, conn: socket.socket, reader: _Reader, program: Program) -> None:
        _version, count = reader.exactly(2)
        methods = reader.exactly(count)
        if 0 not in methods:
            conn.sendall(b"\x05\xff")  # only "no authentication" is spoken
            return
        conn.sendall(b"\x05\x00")
        _version, command, _reserved, kind = reader.exactly(4)
        if kind == 1:
            host = socket.inet_ntop(socket.AF_INET, reader.exactly(4))
        elif kind == 4:
            host = socket.inet_ntop(socket.AF_INET6, reader.exactly(16))
        elif kind == 3:
            host = reader.exactly(reader.exactly(1)[0]).decode("latin-1")
        else:
            conn.sendall(_socks_reply(8))
            return
        port = int.from_bytes(reader.exactly(2), "big")
        if command != 1:
            conn.sendall(_socks_reply(7))  # BIND and UDP ASSOCIATE are not spoken
            return
        self._tunnel(conn, host, port, program, http=False)

    # -- DNS ---------------------------------------------------------------------------------

    def _serve_udp(self, sock: socket.socket) -> None:
        while not self._closed:
            try:
                data, client = sock.recvfrom(4096)
            except OSError:
                return
            try:
                self._lookups.submit(_own_work(self._udp_query), sock, data, client)
            except RuntimeError:
                return

    def _udp_query(self, sock: socket.socket, data: bytes, client: tuple[str, int]) -> None:
        server = sock.getsockname()
        response = self.answer_query(data, lambda: self._udp_program(client, server))
        if response is not None:
            with contextlib.suppress(OSError):
                sock.sendto(response, client)

    def _udp_program(self, client: tuple[str, int], server: tuple[str, int]) -> Program:
        """The program behind a UDP client address (the C library sends its A and AAAA
        queries from one socket: looked up once for both)."""
        now = time.monotonic()
        with self._lock:
            known = self._udp_programs.get(client)
        if known is not None and now - known[0] < LOOKUP_PAIR and known[1].pid is not None:
            return known[1]
        program = self.programs.of_udp(client, server)
        with self._lock:
            if len(self._udp_programs) > 1024:
                self._udp_programs.clear()
            self._udp_programs[client] = (now, program)
        return program

    def _accept_dns_tcp(self, listener: socket.socket) -> None:
        server = listener.getsockname()
        while not self._closed:
            try:
                conn, client = listener.accept()
            except OSError:
                return
            threading.Thread(
                target=_own_work(self._dns_tcp),
                args=(conn, client, server),
                name="outbound-dns",
                daemon=True,
            ).start()

    def _dns_tcp(
        self, conn: socket.socket, client: tuple[str, int], server: tuple[str, int]
    ) -> None:
        program: list[Program] = []

        def who() -> Program:
            if not program:
                program.append(self.programs.of_tcp(client, server))
            return program[0]

        reader = _Reader(conn)
        with conn:
            try:
                while True:
                    length = int.from_bytes(reader.exactly(2), "big")
                    response = self.answer_query(reader.exactly(length), who)
                    if response is None:
                        return
                    conn.sendall(len(response).to_bytes(2, "big") + response)
            except (ConnectionError, OSError):
                return

    def _judge_lookup(self, ask: Ask) -> Answer:
        """Judge a lookup, once for the A and AAAA queries a program's one lookup sends
        (the same name, from the same program, within ``LOOKUP_PAIR`` seconds)."""
        key = _lookup_key(ask)
        now = time.monotonic()
        with self._lock:
            known = self._lookups_judged.get(key)
            if known is None or now - known[0] >= LOOKUP_PAIR:
                if len(self._lookups_judged) > 1024:
                    self._lookups_judged.clear()
                mine: Future[Answer] = Future()
                self._lookups_judged[key] = (now, mine)
                known = None
        if known is not None:  # the pair's other query: the same answer, once it is there
            return known[1].result()
        try:
            answer = self.judge(ask)
        except BaseException as exc:
            mine.set_exception(exc)
            raise
        mine.set_result(answer)
        return answer

    def answer_query(self, data: bytes, who: Callable[[], Program]) -> bytes | None:
        """The response to one DNS message (None: nothing to answer)."""
        try:
            query = _dns.parse_query(data)
        except _dns.DnsError:
            return _dns.error_reply(data)
        name = query.name
        if query.qtype == _dns.PTR:
            address = _dns.reverse_address(name)
            if address is None or _is_local(address):
                return _dns.reply(query, _dns.NXDOMAIN)  # about this machine: not judged
            program = who()
            self.judge(Ask(LOOKUP, "PTR", host=address, pid=program.pid, program=program.text()))
            return _dns.reply(query, _dns.NXDOMAIN)  # reverse names are not forwarded
        if _is_local(name):
            return _dns.answer(query, ["127.0.0.1", "::1"])
        if not name:
            return _dns.reply(query, _dns.REFUSED)
        if name in _own_names():  # about this machine (the plugin's probe asks): not judged
            return self._addresses(query, name)
        program = who()
        method = "DNS" if query.qtype in (_dns.A, _dns.AAAA) else _dns.type_name(query.qtype)
        answer = self._judge_lookup(
            Ask(LOOKUP, method, host=name, pid=program.pid, program=program.text())
        )
        if not answer.allowed:
            return _dns.reply(query, _dns.NXDOMAIN)
        if query.qtype not in (_dns.A, _dns.AAAA):
            return _dns.answer(query, [])  # only addresses are forwarded: "no data"
        return self._addresses(query, name)

    def _addresses(self, query: _dns.Query, name: str) -> bytes:
        """The answer with ``name``'s addresses, asked outside."""
        try:
            addresses = self.outside.resolve(name)
        except OutsideError:
            return _dns.reply(query, _dns.SERVFAIL)
        if addresses is None:
            return _dns.reply(query, _dns.NXDOMAIN)
        with self._lock:
            for address in addresses:
                self.answered.setdefault(address, set()).add(name)
        return _dns.answer(query, addresses)


@functools.cache
def _own_names() -> frozenset[str]:
    """This machine's own name (and its first label): looking it up is about this machine."""
    name = socket.gethostname().lower().rstrip(".")
    return frozenset({name, name.partition(".")[0]} - {""})


def _lookup_key(ask: Ask) -> tuple[int | None, str, str]:
    return (ask.pid, ask.method, ask.host)


def _own_work(target: Callable[..., None]) -> Callable[..., None]:
    """``target``, run as the plugin's own work: this process's socket backstop (the
    ``pytest`` that started the sandbox) does not judge the gateway's own connections."""

    def run(*args: object) -> None:
        OWN_WORK.set(True)  # (a thread's own context: nothing to reset)
        target(*args)

    return run


def _pump(one: socket.socket, other: socket.socket) -> None:
    """Copy bytes both ways until both sides are done (a side that ends its writing is told
    so on the other: half-closes pass through)."""
    peers = {one: other, other: one}
    with selectors.DefaultSelector() as selector:
        for sock in peers:
            selector.register(sock, selectors.EVENT_READ)
        open_ = set(peers)
        while open_:
            for key, _ in selector.select():
                source: socket.socket = key.fileobj  # type: ignore[assignment]
                try:
                    data = source.recv(1 << 16)
                except OSError:
                    return
                if not data:
                    selector.unregister(source)
                    open_.discard(source)
                    with contextlib.suppress(OSError):
                        peers[source].shutdown(socket.SHUT_WR)
                    continue
                try:
                    peers[source].sendall(data)
                except OSError:
                    return


def _read_body(reader: _Reader, headers: dict[str, str]) -> tuple[bytes, bytes]:
    """(the body as sent, the body decoded from chunks) of a request."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        raw = bytearray()
        body = bytearray()
        while True:
            line = reader.until(b"\r\n", 1024)
            raw += line
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while True:  # trailers, then the empty line
                    trailer = reader.until(b"\r\n", HEAD_LIMIT)
                    raw += trailer
                    if trailer == b"\r\n":
                        return bytes(raw), bytes(body)
            if len(body) + size > BODY_LIMIT:
                raise ValueError("the request's body is too large for the gateway to judge")
            chunk = reader.exactly(size + 2)
            raw += chunk
            body += chunk[:-2]
    length_text = headers.get("content-length")
    if length_text is None:
        return b"", b""
    try:
        length = int(length_text)
    except ValueError:
        raise ValueError(f"Content-Length {length_text!r} is not a number") from None
    if length > BODY_LIMIT:
        raise ValueError("the request's body is too large for the gateway to judge")
    whole = reader.exactly(length) if length > 0 else b""
    return whole, whole


def _authority(text: str, default: int | None = None) -> tuple[str | None, int | None]:
    """(host, port) of ``host:port`` or ``[v6]:port`` (``default`` when no port is given)."""
    text = text.rsplit("@", 1)[-1]
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None, None
        host, rest = text[1:end], text[end + 1 :]
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            host, port_text = text, ""
    if not host:
        return None, None
    if not port_text:
        return host, default
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        return None, None
    return host, int(port_text)


def _socks_reply(code: int) -> bytes:
    return bytes([5, code, 0, 1, 0, 0, 0, 0, 0, 0])


_REASONS = {
    400: "Bad Request",
    403: "Forbidden",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


def _respond(conn: socket.socket, status: int, text: str) -> None:
    body = f"pytest-outbound sandbox: {text}\n".encode()
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n"
        "X-Pytest-Outbound: refused\r\n\r\n"
    )
    with contextlib.suppress(OSError):
        conn.sendall(head.encode("latin-1") + body)


def _refused_text(ask: Ask, answer: Answer) -> str:
    test = f" in {answer.test}" if answer.test else ""
    return f"blocked {ask.shown()} ({answer.why}){test}"


def _local_text(host: str) -> str:
    return (
        f"{host} is local: in the sandbox that means its own loopback, and the gateway does"
        " not carry local traffic out"
    )
