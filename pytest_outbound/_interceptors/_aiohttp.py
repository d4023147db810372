"""aiohttp: each hop is judged as it is about to go out, never as a ``ClientRequest`` is
built. Code builds requests it never sends (aiohttp's own suite builds hundreds): building one
is not egress, and records nothing.

A request a ``ClientSession`` sends (every hop of its redirects, every retry) is judged when
the session hands it to its connector (``BaseConnector.connect``), before the name is looked
up or a connection opened, so a blocked request contacts nothing, and the lookup and the
connection that follow are the judged request's (the backstop does not record them again).
The send that follows is that request's own. A ``ClientRequest`` sent any other way (a
connector that does not call ``BaseConnector.connect``, a request sent by hand) is judged in
``ClientRequest.send``, before a byte of it is written on the connection; a blocked one
raises there, and the caller closes the connection as it does for any failed send. The
tunnel a connector opens through a proxy (a ``CONNECT`` sent inside ``connect``) belongs to
the request being connected: the record names the target, and the connection to the proxy
is the backstop's to judge. A request a ``UnixConnector`` (or ``NamedPipeConnector``)
connects goes to a socket of this machine whatever host its URL names (``http://docker/``
over Docker's socket): it is local traffic, not judged here; the backstop judges that socket
under ``outbound_local = enforce``.

A body aiohttp holds in memory (bytes, text, JSON, a URL-encoded form) is judged with the
rest of the request. Any other payload (a file, an async iterable, a ``StreamReader``, a
multipart form) reaches aiohttp untouched and is watched as aiohttp writes it
(``StreamWriter.write`` while ``ClientRequest.write_bytes`` writes that request's body, in
the task ``send`` starts for it, which inherits the context of the send), and judged once
``write_bytes`` ends (``_body``). Either is judged as the caller gave it: where aiohttp
compresses it (``compress=``), the record leaves out the ``Content-Encoding`` that names what
aiohttp makes of it on the wire. Nothing here reads a file or calls the operating system:
aiohttp's callers run in an event loop, where that would block it.
"""

from __future__ import annotations

import contextvars
import json
from typing import Any

from pytest_outbound._guard import Guard
from pytest_outbound._interceptors import (
    JUDGED_ABOVE,
    Patches,
    judge,
    judged_above,
    unreadable,
)
from pytest_outbound._interceptors._body import BodyWatch, as_bytes, watch_of

#: Set while a ``ClientSession`` sends a request: its connector's ``connect`` judges it.
_IN_SESSION: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "outbound_aiohttp_session", default=False
)
#: The request ``connect`` judged last in this task, and its body's watch: its send is not
#: judged again. (Were ``connect`` run in a task of its own, the send would not see this,
#: and would judge the request a second time: recorded twice, never let through unjudged.)
_CONNECTED: contextvars.ContextVar[tuple[Any, BodyWatch | None] | None] = contextvars.ContextVar(
    "outbound_aiohttp_connected", default=None
)
#: The request being sent, and its body's watch (seen by ``write_bytes`` in its own task).
_SENDING: contextvars.ContextVar[tuple[Any, BodyWatch] | None] = contextvars.ContextVar(
    "outbound_aiohttp_sending", default=None
)
#: The ``StreamWriter`` writing a watched body, and the watch (seen by ``StreamWriter.write``).
_WRITING: contextvars.ContextVar[tuple[Any, BodyWatch] | None] = contextvars.ContextVar(
    "outbound_aiohttp_writing", default=None
)


def _payload_bytes(body: Any, bytes_payload: type) -> bytes | None:
    """The bytes of a body aiohttp holds in memory (no body, bytes, text, JSON, URL-encoded
    form: a ``BytesPayload``), or None for a stream."""
    if isinstance(body, bytes | bytearray | memoryview | str):
        return as_bytes(body)
    value = getattr(body, "_value", None) if isinstance(body, bytes_payload) else None
    return as_bytes(value) if isinstance(value, bytes | bytearray | memoryview) else None


def _vcr_body(kwargs: dict[str, Any]) -> bytes:
    if kwargs.get("json") is not None:
        return json.dumps(kwargs["json"]).encode("utf-8")
    data = kwargs.get("data") or b""
    if isinstance(data, bytes | bytearray | memoryview | str):
        return as_bytes(data)
    value = getattr(data, "_value", None)  # BytesPayload and its JSON/str subclasses
    return as_bytes(value) if isinstance(value, bytes | bytearray | memoryview) else b""


def install(guard: Guard, patches: Patches) -> None:
    import aiohttp
    from aiohttp import BaseConnector, ClientRequest, ClientSession, payload
    from aiohttp.http_writer import StreamWriter

    #: Connectors whose connections are local sockets, whatever the URL's host.
    local_connectors = tuple(
        kind
        for kind in (
            getattr(aiohttp, "UnixConnector", None),
            getattr(aiohttp, "NamedPipeConnector", None),
        )
        if isinstance(kind, type)
    )

    bytes_payload = payload.BytesPayload
    original_request = ClientSession._request
    original_connect = BaseConnector.connect
    original_send = ClientRequest.send
    original_write_bytes = ClientRequest.write_bytes
    original_write = StreamWriter.write

    def judge_request(request: ClientRequest) -> BodyWatch | None:
        """Judge ``request`` (``OutboundBlocked`` in enforce); the watch of its body if it is
        a stream. Called by the two wrappers below: their frames and this one are skipped."""
        __tracebackhide__ = True
        try:
            body = request.body
            data = _payload_bytes(body, bytes_payload)
            headers = list(request.headers.items())
            if request.compress:  # aiohttp compresses as it writes: the body seen here is plain
                headers = [item for item in headers if item[0].lower() != "content-encoding"]
            method, url = str(request.method), str(request.url)
        except Exception as exc:  # not a request aiohttp built (a test's mock): unreadable
            unreadable(guard, "aiohttp", request, exc)  # (blocked in enforce)
            return None
        judge(
            guard,
            method,
            url,
            headers=headers,
            body=body if data is None else data,
            client="aiohttp",
            callers=2,
        )
        return None if data is not None else watch_of(body)

    async def session_request(self: ClientSession, *args: Any, **kwargs: Any) -> Any:
        token = _IN_SESSION.set(True)
        try:
            return await original_request(self, *args, **kwargs)
        finally:
            _IN_SESSION.reset(token)

    async def connect(self: BaseConnector, req: ClientRequest, *args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True
        if not (guard.active and _IN_SESSION.get()) or JUDGED_ABOVE.get() is not None:
            return await original_connect(self, req, *args, **kwargs)
        if isinstance(self, local_connectors):  # local traffic: its send is not judged either
            _CONNECTED.set((req, None))
            return await original_connect(self, req, *args, **kwargs)
        _CONNECTED.set(None)
        watch = judge_request(req)
        _CONNECTED.set((req, watch))
        with judged_above(req):  # a proxy's CONNECT, sent inside, is this request's tunnel
            return await original_connect(self, req, *args, **kwargs)

    async def send(self: ClientRequest, conn: Any) -> Any:
        __tracebackhide__ = True
        if not guard.active or JUDGED_ABOVE.get() is not None:
            return await original_send(self, conn)
        connected = _CONNECTED.get()
        if connected is not None and connected[0] is self:
            _CONNECTED.set(None)
            watch = connected[1]
        else:
            watch = judge_request(self)  # blocked: nothing was written on ``conn``
        if watch is None:
            return await original_send(self, conn)
        token = _SENDING.set((self, watch))
        try:
            return await original_send(self, conn)
        except BaseException:
            watch.finish()  # what the body's writer sent before it failed, if anything
            raise
        finally:
            _SENDING.reset(token)

    async def write_bytes(self: ClientRequest, writer: Any, *args: Any, **kwargs: Any) -> Any:
        sending = _SENDING.get()
        if sending is None or sending[0] is not self:
            return await original_write_bytes(self, writer, *args, **kwargs)
        watch = sending[1]
        token = _WRITING.set((writer, watch))
        try:
            return await original_write_bytes(self, writer, *args, **kwargs)
        finally:
            _WRITING.reset(token)
            watch.finish()  # the body has been written, or writing it failed

    async def write(self: StreamWriter, chunk: Any, *args: Any, **kwargs: Any) -> Any:
        writing = _WRITING.get()
        if writing is not None and writing[0] is self:
            writing[1].feed(chunk)
        return await original_write(self, chunk, *args, **kwargs)

    patches.patch(ClientSession, "_request", session_request)
    patches.patch(BaseConnector, "connect", connect)
    patches.patch(ClientRequest, "send", send)
    patches.patch(ClientRequest, "write_bytes", write_bytes)
    patches.patch(StreamWriter, "write", write)


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
