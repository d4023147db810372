"""The request record: one ``OutboundRequest`` per observed request, built by every interceptor.

Pure: interceptors turn a library's request into this record; ``decide`` judges it.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from sys import intern
from types import ModuleType
from typing import Any, Final, TypeAlias
from urllib.parse import SplitResult, parse_qs, urlsplit

from pytest_outbound._hosts import HostError, Peer, local_peer_despite_fault, peer_from_url
from pytest_outbound._value import Value

ALLOWED = "allowed"
VIOLATION = "violation"

#: The reason added to a violation a test expected (``outbound.expect_blocked``): it fails
#: neither the test nor the run.
EXPECTED_BLOCK = "expected-block"
#: Bodies are kept up to this many bytes by default (``outbound_body_limit``).
DEFAULT_BODY_LIMIT = 64 * 1024


class Fields(Value):
    """The fields of one request.

    ``values`` maps each field name to every value seen for it, as text, in the order seen (a
    field can have no value: an empty JSON object or list). ``opaque`` is true when a non-empty
    body could not be parsed into fields.
    """

    __slots__ = _fields = ("values", "opaque")
    values: Final[Mapping[str, tuple[str, ...]]]
    opaque: Final[bool]

    def __init__(self, values: Mapping[str, tuple[str, ...]], opaque: bool = False) -> None:
        self.values = values
        self.opaque = opaque

    def names(self) -> frozenset[str]:
        return frozenset(self.values)


@functools.cache
def fields_module() -> ModuleType:
    """``_fields``, which extracts fields and undoes Content-Encoding, imported on first use: a
    run that sends no body never loads it (start-up). Cached, as ``_decide._contract_module``
    is: an ``import`` statement in a function called for every body would run importlib's
    from-list handling each time. (``Fields`` itself is here, not there, so that the record's
    annotations resolve without it.)"""
    from pytest_outbound import _fields

    return _fields


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
    #: The body is a stream, not read yet: judged on everything else now, and on the bytes
    #: as they were sent when the stream has passed (``_interceptors._body``).
    streamed: bool = field(default=False, repr=False)
    #: ``path:line`` of the wrapper library's frame (installed, not a known client) that the
    #: user's code called to make the request, when there was one; ``location`` is the user's.
    via: str = field(default="", repr=False)
    #: ``"test"`` when no documented destination and no session-wide pattern admitted it, but
    #: a test's marker or fixture did (``outbound_allow``, ``outbound.allow``): set when the
    #: summary or report is made (``_summary.mark_allowed_in_tests``).
    allowed_by: str = field(default="", repr=False)
    #: ``outbound_marker``: the marker a test lacks that made this real connection (a
    #: violation, ``unmarked:<marker>``), or "".
    unmarked: str = field(default="", repr=False)
    #: ``headers_key(headers)``, when the interceptor knew it already (``decide``'s memo).
    _headers_key: HeadersKey | None = field(default=None, init=False, repr=False, compare=False)

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
        fields: Fields = fields_module().extract_fields(
            path=self.path,
            query=self.query_text,
            headers=list(self.headers.items()),
            body=self.full_body or self.body,
            templates=self.templates,
        )
        return fields

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
    headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
    body: bytes | None = None,
    client: str,
    texts: bool = False,
    headers_key: HeadersKey | None = None,
    body_limit: int = DEFAULT_BODY_LIMIT,
    written_url: str | None = None,
) -> OutboundRequest:
    """Turn what a client is about to send into an unjudged ``OutboundRequest``.

    ``url`` is the URL the client will use. ``written_url`` is the one the code passed in, when
    the client normalised it first: ``https://evil.com\\@octopus.com/`` becomes a harmless-looking
    URL before it is sent, yet what the code wrote is ambiguous (R3), so it is judged too, and
    the record then shows what was written. ``headers`` is a mapping or (name, value) pairs
    (a later pair of the same name wins). ``texts``: every name and value is a ``str`` already,
    one the records may share (an interceptor that remembers them), taken as it is; and
    ``headers_key``, when given, is ``headers_key`` of those headers.
    """
    if url.__class__ is not str:  # a URL object or a str subclass: the record's is plain
        url = _text(url)
    if method.__class__ is not str:
        method = _text(method)
    if written_url is not None and written_url.__class__ is not str:
        written_url = _text(written_url)
    if written_url is not None and written_url != url:
        try:
            peer_from_url(written_url)
        except HostError:
            url = written_url
    url, scheme, host, port, path, query_text, peer, host_error = _url_parts(url)
    if texts:
        header_map = dict(headers)
    else:
        items = headers.items() if isinstance(headers, Mapping) else headers
        header_map = dict(items)
        # text already, nearly always: copied as it is
        for key, value in header_map.items():
            if key.__class__ is not str or value.__class__ is not str:
                header_map = {_text(k): _text(v) for k, v in items}
                break
            # Many values are made anew for each request (Content-Length, Host, ...) yet
            # repeat: the records share one string for each (replacing a value keeps the
            # iteration valid).
            header_map[key] = intern(value)
    known_method = _METHODS.get(method)
    if known_method is None:
        method = method.upper()
        known_method = _METHODS.get(method, method)
    raw = body or b""
    record = OutboundRequest(  # positionally, in field order: a keyword call costs twice as much
        known_method,  # method
        url,
        scheme,
        host,
        port,
        path,
        query_text,
        header_map,  # headers
        raw[:body_limit],  # body
        client,
        None,  # destination
        ALLOWED,  # verdict
        [],  # reasons
        "",  # nodeid
        "",  # phase
        "",  # location
        "",  # thread
        0.0,  # time
        peer,
        host_error,
        len(raw),  # body_size
        raw,  # full_body
    )
    if headers_key is not None:
        record._headers_key = headers_key
    return record


#: A record's header names and values, in order (what ``decide``'s memo keys headers by).
HeadersKey: TypeAlias = tuple[tuple[str, ...], tuple[str, ...]]


def headers_key(headers: Mapping[str, str]) -> HeadersKey:
    return tuple(headers), tuple(headers.values())


#: The methods' names, so that records share one string for each.
_METHODS = {m: m for m in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")}

_UrlParts: TypeAlias = tuple[str, str, str, "int | None", str, str, "Peer | None", str]

#: Suites send the same URLs again and again: each URL is split and its peer found once, and
#: its records share the URL's string and its parts (``_url_parts``).
_URLS: dict[str, _UrlParts] = {}
_URLS_LIMIT = 4096
_URL_CACHE_LENGTH = 2048


def _url_parts(url: str) -> _UrlParts:
    """(url, scheme, host, port, path, query text, peer, host error) of a URL."""
    # a subclass may compare and hash its own way, and a long URL is seldom sent twice
    cached = type(url) is str and len(url) <= _URL_CACHE_LENGTH
    if cached:
        known = _URLS.get(url)
        if known is not None:
            return known
    try:
        parts: SplitResult | None = urlsplit(url)
    except ValueError:
        parts = None
    try:
        peer: Peer | None = peer_from_url(url)
        host_error = ""
    except HostError as exc:
        host_error = str(exc)
        # a local host with a port out of range (R9) or trailing dots (R4): local traffic,
        # still ambiguous when loopback is judged too (``outbound_local = enforce``:
        # ``decide`` reads host_error)
        peer = local_peer_despite_fault(url) if exc.rule in ("R4", "R9") else None
    if parts is not None:
        scheme, path, query_text = parts.scheme.lower(), parts.path or "/", parts.query
    else:
        scheme, path, query_text = url.partition(":")[0].lower(), "", ""
    if peer is not None:
        found: _UrlParts = (
            url,
            peer.scheme,
            peer.host,
            peer.port,
            path,
            query_text,
            peer,
            host_error,
        )
    else:
        found = (url, scheme, _raw_host(url), None, path, query_text, None, host_error)
    if cached:
        if len(_URLS) >= _URLS_LIMIT:
            _URLS.clear()
        _URLS[url] = found
    return found


def _text(value: object) -> str:
    """Header names and values as plain text (requests accepts bytes, sent as Latin-1; a
    client's ``str`` subclass, aiohttp's ``istr``, is made a ``str``: a record holds built-in
    types only, which any process can be sent)."""
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return str(value)


def _raw_host(url: str) -> str:
    """The authority as written, for display only (the URL was not parseable)."""
    rest = url.split("://", 1)[-1]
    for stop in "/?#":
        rest = rest.split(stop, 1)[0]
    return rest
