"""httpx: judged in ``Client._send_single_request`` (sync and async), once per hop, above
respx and pytest-httpx (which mock the transport below it).

The URL as written matters when its host is ambiguous (see ``ambiguous``): httpx normalises
it before it is sent. It is caught in ``BaseClient._merge_url`` (``build_request``'s first
step, one argument to pass on where ``build_request`` has a dozen) and travels with the
request: its parsed URL (httpx's private ``_uri_reference``, a named tuple) is replaced by an
equal one that carries the written text (``_marked_class``). A request sent again carries it
again; a redirect hop, or a request built anew from its URL, does not. Where httpx's URL is
not built that way, ``build_request`` is wrapped instead and the written URL kept in the
request's extensions.
"""

from __future__ import annotations

import contextvars
import weakref
from collections.abc import Sequence
from sys import intern
from typing import TYPE_CHECKING, Any, TypeAlias

from pytest_outbound._guard import Guard
from pytest_outbound._interceptors import Patches, ambiguous, judge
from pytest_outbound._interceptors._body import BodyWatch, watch_of
from pytest_outbound._record import HeadersKey, headers_key

if TYPE_CHECKING:
    from pytest_outbound._stubs import Stub

#: The request extension holding (URL as written, a weak reference to the request built with
#: it), where ``build_request`` is wrapped (httpx's URL parts are not as ``_marked_class``
#: expects).
_WRITTEN_EXTENSION = "outbound_written_url"
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
_URL_TEXT_LENGTH = 2048  # a longer URL is seldom sent twice
#: httpx's class of parsed URLs, and the subclass that carries a URL as written (``install``;
#: empty where httpx's URLs are not built as expected). One of each per httpx module patched:
#: a nested session may import httpx anew.
_URL_PARTS_CLASS: list[type] = []
_MARKED_CLASS: list[type] = []
#: httpx's class of parsed URLs -> its marked subclass.
_MARKED_FOR: dict[type, type] = {}
#: Not empty once an httpx was patched by wrapping ``build_request``: its requests carry the
#: written URL in their extensions.
_BUILD_WRAPPED: list[bool] = []


def _marked_class(parts_class: type) -> type | None:
    """A subclass of httpx's parsed URL that carries the URL as written (``written``), or None
    where the class is not the named tuple with ``copy_with`` this expects. Equal parts are
    equal URLs: httpx reads it as any other.

    ``_merge_url`` marks its URL ``pending``; ``Request`` copies it (``copy_with``, with the
    request's params as a new query, if any) and that copy, the request's own URL, is marked
    for good. Any URL made from either afterwards is httpx's plain kind: a request built anew
    from a sent request's URL is judged as sent, like any other."""
    if not (issubclass(parts_class, tuple) and callable(getattr(parts_class, "copy_with", None))):
        return None

    class Written(parts_class):  # type: ignore[misc]
        written = ""
        pending = False

        def copy_with(self, **kwargs: Any) -> Any:
            copied = super().copy_with(**kwargs)
            if self.pending and not set(kwargs) - {"query"}:
                return _mark(copied, self.written, type(self))  # the request's own URL
            return tuple.__new__(parts_class, copied)

        def __reduce__(self) -> Any:  # pickled as httpx's own kind (the mark stays behind)
            return parts_class, tuple(self)

    Written.__qualname__ = f"{parts_class.__qualname__}Written"
    return Written


def _mark(parts: Any, written: str, marked_class: type, *, pending: bool = False) -> Any:
    """``parts`` as the marked class, carrying ``written``."""
    marked: Any = tuple.__new__(marked_class, parts)
    marked.written = written
    if pending:
        marked.pending = True
    return marked


def _url_text(url: Any) -> tuple[str, str | None]:
    """``str(url)`` of an ``httpx.URL`` and the URL as written it carries (None: judge it as
    sent). The text is remembered by the URL's parts (if their class is not httpx's, ``str``
    it is, every time)."""
    parts: Any = getattr(url, "_uri_reference", None)
    if parts.__class__ not in _URL_PARTS_CLASS:
        written: str | None = (
            getattr(parts, "written", None) if parts.__class__ in _MARKED_CLASS else None
        )
        return str(url), written or None
    text = _URL_TEXT.get(parts)
    if text is None:
        text = str(url)
        if len(text) <= _URL_TEXT_LENGTH:
            if len(_URL_TEXT) >= _URL_TEXT_LIMIT:
                _URL_TEXT.clear()
            _URL_TEXT[parts] = text
    return text, None


def _judge(guard: Guard, request: Any, body: object) -> Stub | None:
    url, written_url = _url_text(request.url)
    if _BUILD_WRAPPED and written_url is None:  # the written URL may be an extension
        written = request.extensions.get(_WRITTEN_EXTENSION)
        # only for the request built with it: a redirect hop inherits the extensions
        written_url = written[0] if written and written[1]() is request else None
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


#: The schemes httpx's own transport sends (httpcore's: ws and wss too, for WebSocket
#: clients built on httpx); it refuses any other, and a URL without a host.
_SENT_SCHEMES = frozenset({"http", "https", "ws", "wss"})


def _refused(url: Any) -> bool:
    """Whether httpx's transport refuses ``url`` itself (``UnsupportedProtocol``): no scheme,
    another scheme, no host. Nothing of such a request can leave through httpx, so it is not
    judged and the caller gets httpx's own exception. (A transport of the code's own that
    answers it anyway connects, if it does, through a socket: judged there.)"""
    return url.scheme not in _SENT_SCHEMES or not url.raw_host


def _over_unix_socket(transport: object) -> bool:
    """Whether ``transport`` connects over a Unix socket (``HTTPTransport(uds=...)``, the
    ``uds`` of httpcore's pool): the request goes to a socket of this machine whatever host
    its URL names (``http://docker/...``), local traffic, not judged here (the backstop
    judges the socket under ``outbound_local = enforce``)."""
    return getattr(getattr(transport, "_pool", None), "_uds", None) is not None


def _body_of(request: Any) -> object:
    """The request's body: its bytes when httpx holds them (``content=``, ``data=``,
    ``json=``, which httpx reads as the request is built), else its stream, which is not read
    here: httpx sends it as the caller made it, and the watch sees it pass (``_tee_classes``)."""
    content = request.__dict__.get("_content")
    return content if content.__class__ is bytes else request.stream


def _tee_classes(httpx: Any) -> Any:
    """``tee_for(stream, watch)``: a stream of the same kinds (sync, async or both) as
    ``stream`` that yields its chunks as they are read, each fed to ``watch``. Only the kinds
    matter to httpx (a sync client refuses an async-only stream); the chunks, their timing,
    the errors (``StreamConsumed`` when a stream cannot be sent twice) are the stream's own.
    The request has its own stream back once it has been sent."""
    sync_base, async_base = httpx.SyncByteStream, httpx.AsyncByteStream

    class _Tee:
        def __init__(self, stream: Any, watch: BodyWatch) -> None:
            self._stream = stream
            self._watch = watch

    class SyncTee(_Tee, sync_base):  # type: ignore[misc, valid-type]
        def __iter__(self) -> Any:
            watch = self._watch
            for chunk in self._stream:
                watch.feed(chunk)
                yield chunk
            watch.ended()

        def close(self) -> None:
            self._stream.close()

    class AsyncTee(_Tee, async_base):  # type: ignore[misc, valid-type]
        async def __aiter__(self) -> Any:
            watch = self._watch
            async for chunk in self._stream:
                watch.feed(chunk)
                yield chunk
            watch.ended()

        async def aclose(self) -> None:
            await self._stream.aclose()

    class BothTee(SyncTee, AsyncTee):
        pass

    def tee_for(stream: Any, watch: BodyWatch) -> Any:
        sync, asynchronous = isinstance(stream, sync_base), isinstance(stream, async_base)
        if sync and asynchronous:
            return BothTee(stream, watch)
        if asynchronous:
            return AsyncTee(stream, watch)
        if sync:
            return SyncTee(stream, watch)
        return stream  # not httpx's kind of stream: httpx refuses it itself

    return tee_for


def _remember_classes(parts_class: type) -> type | None:
    """Remember httpx's class of parsed URLs, make its marked subclass once, and return that
    (None where the class is not as ``_marked_class`` expects).

    Each httpx imported anew (a nested session's) has its own classes. They are all kept:
    requests of the old httpx may still be under way, and an httpx put back in sys.modules
    (pytester does that) goes on using its first marked class, because its patches are in
    place already. That is one pair per httpx ever imported. The lists are made anew, with
    the class in use now first: each request looks through them, maybe in another thread
    at this very moment."""
    global _URL_PARTS_CLASS, _MARKED_CLASS
    if not issubclass(parts_class, tuple):  # a named tuple: hashed and compared by its parts
        return None
    marked = _MARKED_FOR.get(parts_class)
    if marked is None and parts_class not in _URL_PARTS_CLASS:
        marked = _marked_class(parts_class)
        if marked is not None:
            _MARKED_FOR[parts_class] = marked
    _URL_PARTS_CLASS = [parts_class, *(c for c in _URL_PARTS_CLASS if c is not parts_class)]
    if marked is not None:
        _MARKED_CLASS = [marked, *(c for c in _MARKED_CLASS if c is not marked)]
    return marked


def install(guard: Guard, patches: Patches) -> None:
    import httpx

    parts_class = type(getattr(httpx.URL("https://example.com/"), "_uri_reference", None))
    marked_class = _remember_classes(parts_class)
    marking: type = tuple if marked_class is None else marked_class  # (merge_url: not None)

    stub_transport: contextvars.ContextVar[httpx.MockTransport | None] = contextvars.ContextVar(
        "outbound_stub_transport", default=None
    )
    sync_send = httpx.Client._send_single_request
    async_send = httpx.AsyncClient._send_single_request
    base_client: Any = httpx.Client.__mro__[1]  # httpx's BaseClient: build_request's own
    original_merge = base_client._merge_url
    original_build = base_client.build_request
    sync_transport = httpx.Client._transport_for_url
    async_transport = httpx.AsyncClient._transport_for_url

    tee_for = _tee_classes(httpx)

    def send_single(self: httpx.Client, request: httpx.Request) -> httpx.Response:
        __tracebackhide__ = True
        url = request.url
        if not guard.active or _refused(url) or _over_unix_socket(sync_transport(self, url)):
            return sync_send(self, request)
        body = _body_of(request)
        stub = _judge(guard, request, body)
        watch = None if body.__class__ is bytes else watch_of(body)
        token = None if stub is None else stub_transport.set(stub.transport)
        try:
            if watch is None:
                return sync_send(self, request)
            stream = request.stream
            tee = request.stream = tee_for(stream, watch)
            try:
                return sync_send(self, request)
            finally:
                if request.stream is tee:  # (a mock that read it put httpx's ByteStream there)
                    request.stream = stream
                watch.finish()
        finally:
            if token is not None:
                stub_transport.reset(token)

    async def send_single_async(self: httpx.AsyncClient, request: httpx.Request) -> httpx.Response:
        __tracebackhide__ = True
        url = request.url
        if not guard.active or _refused(url) or _over_unix_socket(async_transport(self, url)):
            return await async_send(self, request)
        body = _body_of(request)
        stub = _judge(guard, request, body)
        watch = None if body.__class__ is bytes else watch_of(body)
        token = None if stub is None else stub_transport.set(stub.transport)
        try:
            if watch is None:
                return await async_send(self, request)
            stream = request.stream
            tee = request.stream = tee_for(stream, watch)
            try:
                return await async_send(self, request)
            finally:
                if request.stream is tee:
                    request.stream = stream
                watch.finish()
        finally:
            if token is not None:
                stub_transport.reset(token)

    def merge_url(self: Any, url: Any) -> httpx.URL:
        """``build_request``'s first step: the merged URL carries the URL as written when it
        matters (see the module's docstring)."""
        merged: httpx.URL = original_merge(self, url)
        matters = _MATTERS.get(url) if url.__class__ is str else None
        if matters is None:
            matters = isinstance(url, str) and _written_matters(url)
        if matters:
            parts = getattr(merged, "_uri_reference", None)
            if parts.__class__ is parts_class and url != str(merged):
                merged._uri_reference = _mark(parts, url, marking, pending=True)
        return merged

    def build_request(self: Any, method: str, url: Any, **kwargs: Any) -> httpx.Request:
        """Where the parsed URL cannot carry it: the URL as written, in the extensions."""
        request: httpx.Request = original_build(self, method, url, **kwargs)
        if isinstance(url, str) and _written_matters(url) and url != str(request.url):
            written = (url, weakref.ref(request))
            request.extensions = {**request.extensions, _WRITTEN_EXTENSION: written}
        return request

    def transport_for_url(self: httpx.Client, url: httpx.URL) -> httpx.BaseTransport:
        stub = stub_transport.get()
        return stub if stub is not None else sync_transport(self, url)

    def async_transport_for_url(
        self: httpx.AsyncClient, url: httpx.URL
    ) -> httpx.AsyncBaseTransport:
        stub = stub_transport.get()
        return stub if stub is not None else async_transport(self, url)

    patches.patch(httpx.Client, "_send_single_request", send_single)
    patches.patch(httpx.AsyncClient, "_send_single_request", send_single_async)
    patches.patch(httpx.Client, "_transport_for_url", transport_for_url)
    patches.patch(httpx.AsyncClient, "_transport_for_url", async_transport_for_url)
    if marked_class is not None:
        patches.patch(base_client, "_merge_url", merge_url)
    else:
        _BUILD_WRAPPED.append(True)
        patches.patch(base_client, "build_request", build_request)
