"""Interceptors: thin adapters that turn a client library's request into an ``OutboundRequest``.

Each one patches the library at the layer *above* where the mocks patch (responses and
requests-mock below ``requests.Session.send``; respx and pytest-httpx below httpx's per-hop
``Client._send_single_request``), so a request is judged the same whether a mock or the network
would answer it, and each redirect hop is judged on its own. ``install`` returns the undo
function, which puts back exactly the original captured at install time.
"""

from __future__ import annotations

import contextvars
import functools
import io
from collections.abc import Callable
from typing import Any

from pytest_outbound._guard import Guard
from pytest_outbound._record import OutboundRequest, build_request
from pytest_outbound._stubs import Stub

Undo = Callable[[], None]


def install_all(guard: Guard) -> Undo:
    undos = [install_requests(guard), install_httpx(guard)]

    def undo() -> None:
        for fn in reversed(undos):
            fn()

    return undo


def _patch(owner: Any, name: str, replacement: Any) -> Undo:
    original = owner.__dict__[name]
    functools.update_wrapper(replacement, original)
    setattr(owner, name, replacement)

    def undo() -> None:
        setattr(owner, name, original)

    return undo


def _admit(guard: Guard, record: OutboundRequest) -> Stub | None:
    """Judge ``record`` (may raise ``OutboundBlocked``); the stub that answers it, if any."""
    __tracebackhide__ = True
    if not guard.observe(record):
        return None
    stub = guard.stub_for(record)
    if stub is not None:
        stub.calls.append(record)
    return stub


def _as_bytes(chunk: object) -> bytes:
    if isinstance(chunk, bytes):
        return chunk
    if isinstance(chunk, str):
        return chunk.encode("utf-8")
    if isinstance(chunk, bytearray | memoryview):
        return bytes(chunk)
    return b""


def _capture_requests_body(request: Any) -> bytes:
    """The body a ``PreparedRequest`` will send, leaving an equivalent body in its place.

    bytes/str are read as they are. A file is read and rewound (or, when it cannot seek,
    replaced by an in-memory copy); a generator or other iterable is drained and replaced by an
    iterator over the same chunks, so the transport or mock still receives every byte.
    """
    body = request.body
    if body is None or isinstance(body, bytes | str | bytearray | memoryview):
        return _as_bytes(body)
    read = getattr(body, "read", None)
    if callable(read):
        try:
            start: int | None = body.tell()
        except (OSError, AttributeError, ValueError):
            start = None
        data = _as_bytes(read())
        if start is not None:
            try:
                body.seek(start)
                return data
            except (OSError, ValueError):
                pass
        request.body = io.BytesIO(data)
        return data
    try:
        chunks = list(body)
    except TypeError:
        return b""
    request.body = iter(chunks)
    return b"".join(_as_bytes(c) for c in chunks)


def install_requests(guard: Guard) -> Undo:
    import requests

    original = requests.Session.send

    def send(self: requests.Session, request: requests.PreparedRequest, **kwargs: Any) -> Any:
        __tracebackhide__ = True
        if not guard.active:
            return original(self, request, **kwargs)
        record = build_request(
            request.method or "GET",
            request.url or "",
            headers=request.headers,
            body=_capture_requests_body(request),
            client="requests",
            body_limit=guard.body_limit,
        )
        stub = _admit(guard, record)
        if stub is not None:
            return original(stub.session_for(self, request), request, **kwargs)
        return original(self, request, **kwargs)

    return _patch(requests.Session, "send", send)


def _httpx_record(request: Any, body: bytes, guard: Guard) -> OutboundRequest:
    return build_request(
        request.method,
        str(request.url),
        headers=request.headers.multi_items(),
        body=body,
        client="httpx",
        body_limit=guard.body_limit,
    )


def install_httpx(guard: Guard) -> Undo:
    import httpx

    stub_transport: contextvars.ContextVar[httpx.MockTransport | None] = contextvars.ContextVar(
        "outbound_stub_transport", default=None
    )
    sync_send = httpx.Client._send_single_request
    async_send = httpx.AsyncClient._send_single_request
    sync_transport = httpx.Client._transport_for_url
    async_transport = httpx.AsyncClient._transport_for_url

    def send_single(self: httpx.Client, request: httpx.Request) -> httpx.Response:
        __tracebackhide__ = True
        if guard.active:
            # A streaming body is read once into a replayable ByteStream (httpx's own read()).
            stub = _admit(guard, _httpx_record(request, request.read(), guard))
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
            stub = _admit(guard, _httpx_record(request, await request.aread(), guard))
            if stub is not None:
                token = stub_transport.set(stub.transport)
                try:
                    return await async_send(self, request)
                finally:
                    stub_transport.reset(token)
        return await async_send(self, request)

    def transport_for_url(self: httpx.Client, url: httpx.URL) -> httpx.BaseTransport:
        stub = stub_transport.get()
        return stub if stub is not None else sync_transport(self, url)

    def async_transport_for_url(
        self: httpx.AsyncClient, url: httpx.URL
    ) -> httpx.AsyncBaseTransport:
        stub = stub_transport.get()
        return stub if stub is not None else async_transport(self, url)

    undos = [
        _patch(httpx.Client, "_send_single_request", send_single),
        _patch(httpx.AsyncClient, "_send_single_request", send_single_async),
        _patch(httpx.Client, "_transport_for_url", transport_for_url),
        _patch(httpx.AsyncClient, "_transport_for_url", async_transport_for_url),
    ]

    def undo() -> None:
        for fn in reversed(undos):
            fn()

    return undo
