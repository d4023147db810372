"""httpx: judged in ``Client._send_single_request`` (sync and async), once per hop, above
respx and pytest-httpx (which mock the transport below it)."""

from __future__ import annotations

import contextvars
from collections.abc import Sequence
from sys import intern
from typing import TYPE_CHECKING, Any, TypeAlias

from pytest_outbound._guard import Guard
from pytest_outbound._interceptors import Patches, ambiguous, judge
from pytest_outbound._record import HeadersKey, headers_key

if TYPE_CHECKING:
    from pytest_outbound._stubs import Stub

#: An ambiguous URL as written (see ``ambiguous``), from ``_merge_url`` to the sending of the
#: request built from it: (written, scheme and authority as httpx made them, the test's scope).
_WRITTEN: contextvars.ContextVar[tuple[str, str, bytes, object] | None] = contextvars.ContextVar(
    "outbound_httpx_written_url", default=None
)
#: URL as written -> whether it must be remembered (``_written_matters``).
_MATTERS: dict[str, bool] = {}
_MATTERS_LIMIT = 4096
_MATTERS_LENGTH = 2048


#: A ``Headers``' encoding when nobody set one (None: not worked out yet), or what httpx works
#: out itself: ASCII text reads the same in each. Any other (set through ``Headers.encoding``)
#: may not, and is left to ``multi_items()``.
_DETECTED = frozenset({None, "ascii", "utf-8", "iso-8859-1"})

_Entries: TypeAlias = tuple[tuple[bytes, bytes, bytes], ...]
#: What a set of headers reads as: its (name, value) pairs, the same as a dict (a later pair
#: of a name wins, as in the record), and the dict's names and values (``HeadersKey``).
_Text: TypeAlias = tuple[tuple[tuple[str, str], ...], dict[str, str], HeadersKey]
#: httpx's header entries (raw name, lower-case name, value) -> their text, for headers sent
#: again and again: each request's ``Headers`` is new, its bytes mostly the client's own.
_HEADERS: dict[_Entries, _Text] = {}
_HEADERS_LIMIT = 1024
#: Headers with a longer value (a token, a cookie) are read but not remembered.
_HEADER_VALUE_KEPT = 512


def _read(headers: Any) -> _Text | None:
    """What ``headers`` read as, or None where httpx must read them itself.

    httpx works out a new ``Headers``' encoding by decoding every name and value to try, and
    then decodes them again; every request's ``Headers`` is new. Text that is all ASCII reads
    the same in every encoding httpx may choose (ASCII, UTF-8, ISO-8859-1), so it is decoded
    here once and remembered by its bytes; anything else is left to httpx, and so is a
    ``Headers`` whose encoding was set. (This reads httpx's private ``_encoding`` and
    ``_list``: if either changes shape, every request takes httpx's way.) The strings are the
    same every time: the records share them."""
    if getattr(headers, "_encoding", "unknown") not in _DETECTED:
        return None  # an encoding was set
    entries = getattr(headers, "_list", None)
    if entries.__class__ is not list:
        return None
    key: _Entries = tuple(entries)
    known = _HEADERS.get(key)
    if known is not None:
        return known
    items: list[tuple[str, str]] = []
    keep = True
    for entry in key:
        if entry.__class__ is not tuple or len(entry) != 3:
            return None
        _, name, value = entry
        if not (
            name.__class__ is bytes
            and value.__class__ is bytes
            and name.isascii()
            and value.isascii()
        ):
            return None
        keep = keep and len(value) <= _HEADER_VALUE_KEPT
        items.append((intern(name.decode("ascii")), intern(value.decode("ascii"))))
    mapping = dict(items)
    found = (tuple(items), mapping, headers_key(mapping))
    if keep:
        if len(_HEADERS) >= _HEADERS_LIMIT:
            _HEADERS.clear()
        _HEADERS[key] = found
    return found


def header_items(headers: Any) -> Sequence[tuple[str, str]]:
    """``headers.multi_items()``, for less (see ``_read``)."""
    known = _read(headers)
    return headers.multi_items() if known is None else known[0]


def _written_matters(url: str) -> bool:
    """Whether the URL as written must be judged instead of httpx's: its host is ambiguous
    (``ambiguous``) and httpx reads it as an absolute URL. A relative one (a client with a
    ``base_url``) is merged with the base, and what is sent is judged."""
    import httpx

    try:
        matters = ambiguous(url) and httpx.URL(url).is_absolute_url
    except httpx.InvalidURL:  # httpx refused it already; nothing is sent
        matters = False
    if type(url) is str and len(url) <= _MATTERS_LENGTH:
        if len(_MATTERS) >= _MATTERS_LIMIT:
            _MATTERS.clear()
        _MATTERS[url] = matters
    return matters


#: httpx's parsed URL (a named tuple of its parts) -> its text, for URLs sent again and again:
#: every request's URL is parsed anew, and made text again by ``str``.
_URL_TEXT: dict[Any, str] = {}
_URL_TEXT_LIMIT = 4096
_URL_PARTS_CLASS: list[type] = []  # httpx's class of them, once known (``install``)


def _url_text(url: Any) -> str:
    """``str(url)`` of an ``httpx.URL``, remembered by its parts (httpx's private
    ``_uri_reference``: if it changes, ``str`` it is)."""
    parts = getattr(url, "_uri_reference", None)
    if parts.__class__ not in _URL_PARTS_CLASS:
        return str(url)
    text = _URL_TEXT.get(parts)
    if text is None:
        text = str(url)
        if len(text) <= _MATTERS_LENGTH:
            if len(_URL_TEXT) >= _URL_TEXT_LIMIT:
                _URL_TEXT.clear()
            _URL_TEXT[parts] = text
    return text


def _judge(guard: Guard, request: Any, body: bytes) -> Stub | None:
    url = _url_text(request.url)
    written_url = None
    written = _WRITTEN.get()
    if written is not None:
        # Only for the request built from it, in the same test: its scheme and authority are
        # what httpx made of the written URL (a redirect hop comes after it was taken).
        sent = request.url
        if written[3] is guard.scope and written[1] == sent.scheme and written[2] == sent.netloc:
            _WRITTEN.set(None)
            written_url = written[0]
    known = _read(request.headers)
    _, stub = judge(
        guard,
        request.method,
        url,
        headers=request.headers.multi_items() if known is None else known[1],
        body=body,
        texts=True,
        headers_key=None if known is None else known[2],
        client="httpx",
        written_url=written_url,
        callers=2,  # this function and send_single(_async)
    )
    return stub


def install(guard: Guard, patches: Patches) -> None:
    import httpx

    if not _URL_PARTS_CLASS:
        parts = getattr(httpx.URL("https://example.com/"), "_uri_reference", None)
        if isinstance(parts, tuple):  # a named tuple: hashed and compared by its parts
            _URL_PARTS_CLASS.append(type(parts))

    stub_transport: contextvars.ContextVar[httpx.MockTransport | None] = contextvars.ContextVar(
        "outbound_stub_transport", default=None
    )
    sync_send = httpx.Client._send_single_request
    async_send = httpx.AsyncClient._send_single_request
    base_client: Any = httpx.Client.__mro__[1]  # httpx's BaseClient: build_request's own
    original_merge = base_client._merge_url
    transports: list[Any] = []  # the clients' own _transport_for_url, once a stub needs them

    def stubbed() -> None:
        """A stub answers a request, the session's first: from now on the clients take the
        transport of the stub under way (``stub_transport``), if any. Patched only now, so
        that suites without stubs do not pay for it on every request."""
        if transports:
            return
        transports.extend([httpx.Client._transport_for_url, httpx.AsyncClient._transport_for_url])
        patches.patch(httpx.Client, "_transport_for_url", transport_for_url)
        patches.patch(httpx.AsyncClient, "_transport_for_url", async_transport_for_url)

    def send_single(self: httpx.Client, request: httpx.Request) -> httpx.Response:
        __tracebackhide__ = True
        if guard.active:
            # A streaming body is read once into a replayable ByteStream (httpx's own read()).
            stub = _judge(guard, request, request.read())
            if stub is not None:
                stubbed()
                token = stub_transport.set(stub.transport)
                try:
                    return sync_send(self, request)
                finally:
                    stub_transport.reset(token)
        return sync_send(self, request)

    async def send_single_async(self: httpx.AsyncClient, request: httpx.Request) -> httpx.Response:
        __tracebackhide__ = True
        if guard.active:
            stub = _judge(guard, request, await request.aread())
            if stub is not None:
                stubbed()
                token = stub_transport.set(stub.transport)
                try:
                    return await async_send(self, request)
                finally:
                    stub_transport.reset(token)
        return await async_send(self, request)

    def merge_url(self: Any, url: Any) -> httpx.URL:
        """``build_request``'s first step (wrapped here rather than it: it takes a dozen keyword
        arguments, and passing them on cost more than all the rest of this wrapper)."""
        merged: httpx.URL = original_merge(self, url)
        matters = _MATTERS.get(url) if url.__class__ is str else None
        if matters is None:
            matters = isinstance(url, str) and _written_matters(url)
        if matters and url != str(merged):
            _WRITTEN.set((url, merged.scheme, merged.netloc, guard.scope))
        return merged

    def transport_for_url(self: httpx.Client, url: httpx.URL) -> httpx.BaseTransport:
        stub = stub_transport.get()
        return stub if stub is not None else transports[0](self, url)

    def async_transport_for_url(
        self: httpx.AsyncClient, url: httpx.URL
    ) -> httpx.AsyncBaseTransport:
        stub = stub_transport.get()
        return stub if stub is not None else transports[1](self, url)

    patches.patch(httpx.Client, "_send_single_request", send_single)
    patches.patch(httpx.AsyncClient, "_send_single_request", send_single_async)
    patches.patch(base_client, "_merge_url", merge_url)
