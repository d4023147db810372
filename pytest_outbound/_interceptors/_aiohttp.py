"""aiohttp: judged when ``ClientSession`` builds each hop's ``ClientRequest``, before it
connects, so a blocked request never opens a connection."""

from __future__ import annotations

from typing import Any

from pytest_outbound._guard import Guard
from pytest_outbound._interceptors import Patches, admit, as_bytes
from pytest_outbound._record import build_request


def _payload_bytes(body: Any) -> bytes:
    """The bytes of an aiohttp payload that holds them (bytes, str, JSON, form); else b""."""
    if isinstance(body, bytes | bytearray | str):
        return as_bytes(body)
    value = getattr(body, "_value", None)  # BytesPayload and its JSON/str subclasses
    return as_bytes(value) if isinstance(value, bytes | bytearray) else b""


def install(guard: Guard, patches: Patches) -> None:
    from aiohttp import ClientRequest

    original_init = ClientRequest.__init__

    def init(self: ClientRequest, method: str, url: Any, *args: Any, **kwargs: Any) -> None:
        __tracebackhide__ = True
        original_init(self, method, url, *args, **kwargs)
        if not guard.active:
            return
        record = build_request(
            self.method,
            str(self.url),
            headers=list(self.headers.items()),
            body=_payload_bytes(self.body),
            client="aiohttp",
            body_limit=guard.body_limit,
        )
        admit(guard, record)

    patches.patch(ClientRequest, "__init__", init)
