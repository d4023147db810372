"""httpx: judged in ``Client._send_single_request`` (sync and async), once per hop, above
respx and pytest-httpx (which mock the transport below it)."""

from __future__ import annotations

import contextvars
from typing import Any

from pytest_outbound._guard import Guard
from pytest_outbound._interceptors import Undo, admit, combine, patch
from pytest_outbound._record import OutboundRequest, build_request


def _httpx_record(request: Any, body: bytes, guard: Guard) -> OutboundRequest:
    return build_request(
        request.method,
        str(request.url),
        headers=request.headers.multi_items(),
        body=body,
        client="httpx",
        body_limit=guard.body_limit,
    )


def install(guard: Guard) -> Undo:
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
            stub = admit(guard, _httpx_record(request, request.read(), guard))
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
            stub = admit(guard, _httpx_record(request, await request.aread(), guard))
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

    return combine(
        [
            patch(httpx.Client, "_send_single_request", send_single),
            patch(httpx.AsyncClient, "_send_single_request", send_single_async),
            patch(httpx.Client, "_transport_for_url", transport_for_url),
            patch(httpx.AsyncClient, "_transport_for_url", async_transport_for_url),
        ]
    )
