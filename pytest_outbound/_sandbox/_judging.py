"""What the sandbox saw, as an ``OutboundRequest`` judged by a ``Guard``: the one decision path.

The gateway turns each proxied request, tunnel and name lookup into an ``Ask`` (plain data, sent
as JSON to the test session that judges it); ``judge`` builds the record and hands it to
``Guard.observe``, as every interceptor does:

- a plain HTTP request through the proxy: ``client`` ``gateway``, judged as a request of
  any HTTP client is (method, URL, headers, body: paths, payload contract, sensitive values);
- a tunnel (HTTP ``CONNECT``, SOCKS5): ``client`` ``gateway``, method ``CONNECT``, URL
  ``tcp://host:port``: judged on host and port alone, as a socket connection is (what goes
  through a tunnel is TLS, or anything: the gateway cannot read it);
- a name lookup: ``client`` ``dns``, judged as the socket backstop judges a lookup;
- a connection or a datagram straight to an address, around the gateway (``_tun``):
  ``client`` ``gateway``, method ``CONNECT`` (``tcp://IP:PORT``) or ``SENDTO``
  (``udp://IP:PORT``), judged as the socket backstop judges a connection (by the names the
  responder answered with the address, too). It never goes anywhere: a documented
  destination reached this way is allowed, and still unreachable.

Each record's ``location`` is the program that made it (``curl -sS http://... (pid 4242)``).

A guarded Python process's requests are its guard's to record, with their URL and line: what
the gateway sees of them is not recorded again (``judge``).
"""

from __future__ import annotations

import base64
import json
import os
import threading
from dataclasses import dataclass, field
from typing import Any

from pytest_outbound._decide import DNS, GATEWAY, SOCKET, decide
from pytest_outbound._errors import OutboundBlocked
from pytest_outbound._guard import Guard
from pytest_outbound._hosts import HostError, Peer, peer_from_address
from pytest_outbound._record import OutboundRequest, build_request

HTTP = "http"
TUNNEL = "tunnel"
LOOKUP = "lookup"
DIRECT = "direct"

#: Set on an ``OutboundBlocked`` the sandbox raised (the test's failure says so).
SANDBOX_ATTRIBUTE = "sandbox"


@dataclass
class Ask:
    """One thing the gateway or the DNS responder asks leave for.

    ``kind``: ``http`` (``method``, ``url``, ``headers``, ``body``), ``tunnel`` (``host``,
    ``port``; ``names``: the names the responder answered with that address), ``direct``
    (the same; ``method`` ``CONNECT`` for TCP, ``SENDTO`` for UDP) or ``lookup`` (``host``
    the name or, for ``PTR``, the address). ``pid`` and ``program`` say who asked.
    """

    kind: str
    method: str
    host: str = ""
    port: int | None = None
    url: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    pid: int | None = None
    program: str = ""
    names: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "method": self.method,
            "host": self.host,
            "port": self.port,
            "url": self.url,
            "headers": [list(h) for h in self.headers],
            "body": base64.b64encode(self.body).decode("ascii"),
            "pid": self.pid,
            "program": self.program,
            "names": list(self.names),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Ask:
        return cls(
            kind=str(data["kind"]),
            method=str(data["method"]),
            host=str(data.get("host", "")),
            port=data.get("port"),
            url=str(data.get("url", "")),
            headers=[(str(k), str(v)) for k, v in data.get("headers", ())],
            body=base64.b64decode(data.get("body", "")),
            pid=data.get("pid"),
            program=str(data.get("program", "")),
            names=tuple(str(n) for n in data.get("names", ())),
        )

    def shown(self) -> str:
        """``GET http://x/``, ``CONNECT x:443``, ``DNS x``: for messages."""
        if self.kind == HTTP:
            return f"{self.method} {self.url}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.kind == TUNNEL:
            return f"CONNECT {host}:{self.port}"
        if self.kind == DIRECT:
            return f"{self.method} {_protocol(self.method)}://{host}:{self.port}"
        return f"{self.method} {self.host}"


def _protocol(method: str) -> str:
    return "udp" if method == "SENDTO" else "tcp"


@dataclass
class Answer:
    """The judgement: allowed, and if not, why (one line) and in which test."""

    allowed: bool
    why: str = ""
    test: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"allowed": self.allowed, "why": self.why, "test": self.test}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Answer:
        return cls(bool(data.get("allowed")), str(data.get("why", "")), str(data.get("test", "")))


def record_for(ask: Ask, body_limit: int) -> OutboundRequest:
    """The unjudged record of ``ask``."""
    if ask.kind == HTTP:
        record = build_request(
            ask.method,
            ask.url,
            headers=ask.headers,
            body=ask.body,
            client=GATEWAY,
            body_limit=body_limit,
        )
    else:
        peer: Peer | None
        try:
            peer = peer_from_address(ask.host, ask.port if ask.kind != LOOKUP else None)
            error = ""
        except HostError as exc:
            peer, error = None, str(exc)
        shown = f"[{ask.host}]" if ":" in ask.host else ask.host
        if ask.kind == TUNNEL:
            url, client = f"tcp://{shown}:{ask.port}", GATEWAY
        elif ask.kind == DIRECT:
            url, client = f"{_protocol(ask.method)}://{shown}:{ask.port}", GATEWAY
        else:
            url, client = f"dns://{shown}", DNS
        record = OutboundRequest(
            method=ask.method,
            url=url,
            scheme="",
            host=peer.host if peer is not None else ask.host,
            port=peer.port if peer is not None else ask.port,
            path="",
            query_text="",
            headers={},
            client=client,
            peer=peer,
            host_error=error,
        )
        record.resolved_names = tuple(sorted(set(ask.names)))
    record.location = ask.program
    return record


def judge(guard: Guard, ask: Ask, *, own_pid: int | None = None) -> Answer:
    """Judge ``ask`` with ``guard`` (the records, the summary, the report, the hooks are the
    guard's). Under ``outbound_marker``, a connection the gateway carries out counts as the
    test's real one (a direct one is carried nowhere).

    What a guarded Python process's own guard recorded is not recorded again: a request of
    the guard's own process (``own_pid``) that its HTTP interceptor (or, for a direct
    connection, its socket backstop) judged already in this test (``Guard.observe_low``), and
    one of a guarded child process whose guard wrote a record for the same host and port (for
    a lookup, the same host) to this process's spool. In enforce such a repeat is judged
    again, and recorded only when it is not allowed on its own. What the guard did not see
    (a C library's connection, a child of its own that is not Python) is recorded."""
    record = record_for(ask, guard.body_limit)
    if guard.offline:
        record.offline = True
    try:
        # ``outbound_marker``: what the gateway carries out is a real connection (a test
        # without the marker that makes one is a violation: judged there)
        if (
            guard.network_marker
            and ask.kind != DIRECT
            and record.client == GATEWAY
            and guard._reaches(record)
        ):
            pass
        elif own_pid is not None and ask.pid == own_pid:
            if not (ask.kind == DIRECT and _repeat(guard, record, _backstop_saw(guard, record))):
                guard.observe_low(record, record.resolved_names)
        elif not _repeat(guard, record, _child_saw(ask.pid, record)):
            guard.observe(record)
    except OutboundBlocked as exc:
        setattr(exc, SANDBOX_ATTRIBUTE, True)
        return Answer(False, ", ".join(record.reasons) or "blocked", record.nodeid)
    if record.verdict == "violation" and guard.enforcing:  # judged, not raised (a repeat)
        return Answer(False, ", ".join(record.reasons), record.nodeid)
    return Answer(True, test=record.nodeid)


def _repeat(guard: Guard, record: OutboundRequest, seen: bool) -> bool:
    """Whether ``record``, which a guard ``seen`` already, is not recorded again: in audit
    never, in enforce when it is allowed on its own (as ``Guard.observe_low`` decides)."""
    if not seen or record.peer is None or record.offline:
        return False
    if not guard.enforcing:
        return True
    scope = guard.current()
    context = scope.context if scope is not None else guard.session_context
    return decide(record, context).allowed


def _hosts(record: OutboundRequest) -> tuple[str, ...]:
    peer = record.peer
    return (peer.host, *record.resolved_names) if peer is not None else ()


def _backstop_saw(guard: Guard, record: OutboundRequest, depth: int = 64) -> bool:
    """Whether this process's socket backstop recorded a connection to ``record``'s address
    and port, of the same kind, among the last ``depth`` records of the test under way."""
    scope = guard.current()
    records = scope.records if scope is not None else guard.records
    recent = records[: -depth - 1 : -1]
    return any(seen.client == SOCKET and seen.url == record.url for seen in recent)


def _child_saw(pid: int | None, record: OutboundRequest) -> bool:
    """Whether ``pid`` is a guarded Python child of this process's session whose guard
    recorded ``record``'s host and port (for a lookup, its host): its records are in the
    session's spool, one file per process (``_children``)."""
    if pid is None or record.peer is None:
        return False
    from pytest_outbound._children import _OPEN  # the spools of this process's sessions

    for guards in list(_OPEN):
        seen = _SPOOL.read(os.path.join(guards.reports, f"{pid}.jsonl"))
        if seen is None:
            continue
        for host in _hosts(record):
            ports = seen.get(host)
            if ports is not None and (record.client == DNS or record.port in ports):
                return True
    return False


class _Spool:
    """What the records in a child's spool file name: host -> ports, read as they grow."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._files: dict[str, tuple[int, dict[str, set[int | None]]]] = {}

    def read(self, path: str) -> dict[str, set[int | None]] | None:
        """The hosts and ports of the records in ``path`` (None: no such file)."""
        with self._lock:
            offset, seen = self._files.get(path, (0, {}))
            try:
                with open(path, "rb") as handle:
                    handle.seek(offset)
                    data = handle.read()
            except OSError:
                return None
            end = data.rfind(b"\n") + 1  # a line still being written: the next time
            for line in data[:end].splitlines():
                try:
                    raw = json.loads(line)
                    host, port = raw["host"], raw["port"]
                except (ValueError, KeyError, TypeError):
                    continue  # (a program the child ran unwatched)
                if isinstance(host, str) and host:
                    seen.setdefault(host, set()).add(port if isinstance(port, int) else None)
            if len(self._files) > 256:
                self._files.clear()
            self._files[path] = (offset + end, seen)
            return seen


_SPOOL = _Spool()
