"""aiohttp: judged when ``ClientSession`` builds each hop's ``ClientRequest``, before it
connects, so a blocked request never opens a connection."""

from __future__ import annotations

import json
from typing import Any

from pytest_outbound._guard import Guard
from pytest_outbound._interceptors import JUDGED_ABOVE, Patches, judge, judged_above
from pytest_outbound._interceptors._body import as_bytes


def _payload_bytes(body: Any) -> bytes:
    """The bytes of an aiohttp payload that holds them (bytes, str, JSON, form); else b""."""
    if isinstance(body, bytes | bytearray | str):
        return as_bytes(body)
    value = getattr(body, "_value", None)  # BytesPayload and its JSON/str subclasses
    return as_bytes(value) if isinstance(value, bytes | bytearray) else b""


def _vcr_body(kwargs: dict[str, Any]) -> bytes:
    if kwargs.get("json") is not None:
        return json.dumps(kwargs["json"]).encode("utf-8")
    return _payload_bytes(kwargs.get("data") or b"")


def install(guard: Guard, patches: Patches) -> None:
    from aiohttp import ClientRequest

    original_init = ClientRequest.__init__

    def init(self: ClientRequest, method: str, url: Any, *args: Any, **kwargs: Any) -> None:
        __tracebackhide__ = True
        original_init(self, method, url, *args, **kwargs)
        if not guard.active or JUDGED_ABOVE.get() is not None:
            return
        judge(
            guard,
            self.method,
            str(self.url),
            headers=list(self.headers.items()),
            body=_payload_bytes(self.body),
            client="aiohttp",
        )

    patches.patch(ClientRequest, "__init__", init)


def install_vcr(guard: Guard, patches: Patches) -> None:
    """A vcrpy cassette replaces ``ClientSession._request`` and, replaying, never builds a
    ``ClientRequest``: judge the request as the session is asked for it."""
    from vcr.stubs import aiohttp_stubs
    from yarl import URL

    original_factory = aiohttp_stubs.vcr_request

    def vcr_request(cassette: Any, real_request: Any) -> Any:
        inner = original_factory(cassette, real_request)

        async def new_request(self: Any, method: str, url: Any, **kwargs: Any) -> Any:
            __tracebackhide__ = True
            if guard.active:
                target = URL(url).update_query(kwargs["params"]) if kwargs.get("params") else url
                judge(
                    guard,
                    method,
                    str(target),
                    headers=dict(kwargs.get("headers") or {}),
                    body=_vcr_body(kwargs),
                    client="aiohttp",
                )
            with judged_above((method, url)):  # recording: the real request is this one
                return await inner(self, method, url, **kwargs)

        return new_request

    patches.patch(aiohttp_stubs, "vcr_request", vcr_request)
