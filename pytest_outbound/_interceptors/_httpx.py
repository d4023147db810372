"""httpx: judged in ``Client._send_single_request`` (sync and async), once per hop, above
respx and pytest-httpx (which mock the transport below it)."""

from __future__ import annotations

import contextvars
from typing import TYPE_CHECKING, Any

from pytest_outbound._guard import Guard
from pytest_outbound._interceptors import Patches, ambiguous, judge

if TYPE_CHECKING:
    from pytest_outbound._stubs import Stub

_WRITTEN = "outbound_written_url"


#: A ``Headers``' encoding when nobody set one (None: not worked out yet), or what httpx works
#: out itself: ASCII text reads the same in each. Any other (set through ``Headers.encoding``)
#: may not, and is left to ``multi_items()``.
_DETECTED = frozenset({None, "ascii", "utf-8", "iso-8859-1"})


def header_items(headers: Any) -> list[tuple[str, str]]:
    """``headers.multi_items()``, for less: httpx works out a ``Headers``' encoding on first
    use by decoding every name and value to try, and each request's headers are new. Text
    that is all ASCII reads the same in every encoding httpx may choose (ASCII, UTF-8,
    ISO-8859-1); anything else is left to httpx, and so is a ``Headers`` whose encoding was set
    (httpx's private ``_encoding``: if it is ever renamed, every request takes that way)."""
    if getattr(headers, "_encoding", "unknown") not in _DETECTED:
        return headers.multi_items()  # type: ignore[no-any-return]  # an encoding was set
    raw = headers.raw
    for name, value in raw:
        if not (name.isascii() and value.isascii()):
            return headers.multi_items()  # type: ignore[no-any-return]
    return [(name.decode("latin-1").lower(), value.decode("latin-1")) for name, value in raw]


def _judge(guard: Guard, request: Any, body: bytes) -> Stub | None:
    url = str(request.url)
    written = request.extensions.get(_WRITTEN)
    _, stub = judge(
        guard,
        request.method,
        url,
        headers=header_items(request.headers),
        body=body,
        client="httpx",
        # Only for the request built from it: a redirect hop inherits extensions, not the URL.
        written_url=written[0] if written and written[1] == url else None,
        callers=2,  # this function and send_single(_async)
    )
    return stub


def install(guard: Guard, patches: Patches) -> None:
    import httpx

    stub_transport: contextvars.ContextVar[httpx.MockTransport | None] = contextvars.ContextVar(
        "outbound_stub_transport", default=None
    )
    sync_send = httpx.Client._send_single_request
    async_send = httpx.AsyncClient._send_single_request
    base_client: Any = httpx.Client.__mro__[1]  # httpx's BaseClient: it defines build_request
    original_build = base_client.build_request
    sync_transport = httpx.Client._transport_for_url
    async_transport = httpx.AsyncClient._transport_for_url

    def send_single(self: httpx.Client, request: httpx.Request) -> httpx.Response:
        __tracebackhide__ = True
        if guard.active:
            # A streaming body is read once into a replayable ByteStream (httpx's own read()).
            stub = _judge(guard, request, request.read())
            if stub is not None:
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
                token = stub_transport.set(stub.transport)
                try:
                    return await async_send(self, request)
                finally:
                    stub_transport.reset(token)
        return await async_send(self, request)

    def build_request(self: Any, method: str, url: Any, **kwargs: Any) -> httpx.Request:
        request: httpx.Request = original_build(self, method, url, **kwargs)
        if ambiguous(url):  # the URL as written matters only then (see ``ambiguous``)
            sent = str(request.url)
            if url != sent:
                request.extensions = {**request.extensions, _WRITTEN: (url, sent)}
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
    patches.patch(base_client, "build_request", build_request)
