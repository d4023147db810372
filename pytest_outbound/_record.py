"""The request record: one ``OutboundRequest`` per observed request, built by every interceptor.

Pure: interceptors turn a library's request into this record; ``decide`` judges it.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import SplitResult, parse_qs, urlsplit

from pytest_outbound._fields import Fields, extract_fields
from pytest_outbound._hosts import HostError, Peer, peer_from_url

ALLOWED = "allowed"
VIOLATION = "violation"

#: Bodies are kept up to this many bytes by default (``outbound_body_limit``).
DEFAULT_BODY_LIMIT = 64 * 1024


@dataclass(slots=True)
class OutboundRequest:
    """One observed outbound request (SPEC §4).

    Built by an interceptor, judged by ``decide``; ``verdict``, ``destination`` and
    ``reasons`` are filled in by the judgement. Field order is the JSON report's order.
    """

    method: str
    url: str
    scheme: str
    host: str
    port: int | None
    path: str
    #: The query string as sent; ``query`` parses it when asked.
    query_text: str
    headers: dict[str, str]
    body: bytes = b""
    client: str = ""
    destination: str | None = None
    verdict: str = ALLOWED
    reasons: list[str] = field(default_factory=list)
    nodeid: str = ""
    phase: str = ""
    location: str = ""
    thread: str = ""
    time: float = 0.0
    #: The canonical peer, or None when the URL's authority is ambiguous (``host_error``).
    peer: Peer | None = field(default=None, repr=False)
    host_error: str = field(default="", repr=False)
    #: The body's size before the cap was applied.
    body_size: int = field(default=0, repr=False)
    #: The whole body, kept only until the verdict (the record keeps ``body``, capped).
    full_body: bytes = field(default=b"", repr=False)
    #: Path templates of the destination, for path-template fields.
    templates: tuple[str, ...] = field(default=(), repr=False)
    _fields: Fields | None = field(default=None, repr=False)
    #: Socket records: the names this process resolved to the peer's address.
    resolved_names: tuple[str, ...] = field(default=(), repr=False)
    #: Set when offline mode forbids any real connection (the socket/DNS backstop).
    offline: bool = field(default=False, repr=False)

    @property
    def allowed(self) -> bool:
        return self.verdict == ALLOWED

    @property
    def query(self) -> dict[str, list[str]]:
        """The query parameters (SPEC §4), each name with its values."""
        return parse_qs(self.query_text, keep_blank_values=True) if self.query_text else {}

    @property
    def fields(self) -> tuple[str, ...]:
        """The names of the fields this request carries (SPEC §5.1), in order.

        Not kept on the record unless a contract needed them: a report of many requests would
        otherwise hold every body's fields twice."""
        return tuple((self._fields or self._extract()).values)

    def field_values(self) -> Fields:
        """Every field with its values; extracted once, on first use, and kept."""
        if self._fields is None:
            self._fields = self._extract()
        return self._fields

    def _extract(self) -> Fields:
        return extract_fields(
            path=self.path,
            query=self.query_text,
            headers=list(self.headers.items()),
            body=self.full_body or self.body,
            templates=self.templates,
        )

    def to_json(self) -> dict[str, Any]:
        """The report's view: every SPEC §4 key except ``body``."""
        return {
            "method": self.method,
            "url": self.url,
            "scheme": self.scheme,
            "host": self.host,
            "port": self.port,
            "path": self.path,
            "query": self.query,
            "headers": self.headers,
            "fields": list(self.fields),
            "client": self.client,
            "destination": self.destination,
            "verdict": self.verdict,
            "reasons": list(self.reasons),
            "nodeid": self.nodeid,
            "phase": self.phase,
            "location": self.location,
            "thread": self.thread,
            "time": self.time,
        }


def build_request(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | Sequence[tuple[str, str]] = (),
    body: bytes | None = None,
    client: str,
    body_limit: int = DEFAULT_BODY_LIMIT,
    written_url: str | None = None,
) -> OutboundRequest:
    """Turn what a client is about to send into an unjudged ``OutboundRequest``.

    ``url`` is the URL the client will use. ``written_url`` is the one the code passed in, when
    the client normalised it first: ``https://evil.com\\@octopus.com/`` becomes a harmless-looking
    URL before it is sent, yet what the code wrote is ambiguous (R3), so it is judged too, and
    the record then shows what was written.
    """
    if written_url is not None and written_url != url:
        try:
            peer_from_url(written_url)
        except HostError:
            url = written_url
    items = headers.items() if isinstance(headers, Mapping) else headers
    header_map = {_text(k): _text(v) for k, v in items}
    try:
        parts: SplitResult | None = _split(url)
    except ValueError:
        parts = None
    try:
        peer: Peer | None = peer_from_url(url)
        host_error = ""
    except HostError as exc:
        peer = None
        host_error = str(exc)
    if parts is not None:
        scheme, path, query_text = parts.scheme.lower(), parts.path or "/", parts.query
    else:
        scheme, path, query_text = url.partition(":")[0].lower(), "", ""
    raw = body or b""
    return OutboundRequest(
        method=method.upper(),
        url=url,
        scheme=peer.scheme if peer else scheme,
        host=peer.host if peer else _raw_host(url),
        port=peer.port if peer else None,
        path=path,
        query_text=query_text,
        headers=header_map,
        body=raw[:body_limit],
        full_body=raw,
        client=client,
        peer=peer,
        host_error=host_error,
        body_size=len(raw),
    )


#: Suites send the same URLs again and again: split each once, and share its parts.
_split = functools.lru_cache(maxsize=4096)(urlsplit)


def _text(value: object) -> str:
    """Header names and values as text (requests accepts bytes, sent as Latin-1)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return str(value)


def _raw_host(url: str) -> str:
    """The authority as written, for display only (the URL was not parseable)."""
    rest = url.split("://", 1)[-1]
    for stop in "/?#":
        rest = rest.split(stop, 1)[0]
    return rest
