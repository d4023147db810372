"""The standard library: ``urllib.request`` (judged in ``AbstractHTTPHandler.do_open``, once per
hop, whatever connection class is in place) and ``http.client`` used directly. Both are reported
as client ``http.client`` (a urllib3 connection, which is an ``http.client`` connection, as
``urllib3``).

``http.client`` used directly is judged once per request, before any byte of it is sent:

- ``HTTPConnection.request(method, url, body, headers)``: judged there, with the headers and
  the body given; the ``putrequest``/``putheader``/``endheaders`` it makes beneath stand aside.
- the low-level way, ``putrequest(method, url)``, ``putheader(name, *values)``...,
  ``endheaders(message_body=None)``: judged in ``endheaders``, before it sends the buffered
  request line and headers (and connects, when the connection is not open yet), with the
  method and URL of ``putrequest``, the headers ``putheader`` buffered, as they will be sent
  (not the ``Host`` and ``Accept-Encoding`` that ``putrequest`` adds itself, as ``request``
  records only the code's own headers), and the body given to ``endheaders``. A body
  streamed afterwards with ``send()`` cannot be judged before it leaves: it is not part of
  the record (its bytes go to the peer that was judged, after the method, URL and headers
  were judged). A blocked request's buffered request line and headers are dropped.

Through a tunnelling proxy (``set_tunnel``) the record names the target; the connection to the
proxy itself is judged by the socket backstop.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from pytest_outbound._guard import Guard
from pytest_outbound._interceptors import (
    JUDGED_ABOVE,
    Patches,
    judge,
    judged_above,
    url_of,
)
from pytest_outbound._interceptors._body import finished, watch_of

if TYPE_CHECKING:
    import http.client
    import urllib.request

CLIENT = "http.client"

#: The connection attribute holding the low-level request under way, from ``putrequest`` to
#: ``endheaders``: (method, request target, where the code's headers start in the buffer).
_PENDING = "_outbound_pending"


def _buffered_headers(conn: http.client.HTTPConnection, start: int) -> list[tuple[str, str]]:
    """The headers ``putheader`` buffered from ``start`` on, as they will be sent.

    http.client keeps the request line and the header lines in ``_buffer`` until
    ``endheaders`` sends them, each header as ``name: value`` (a name never holds a colon;
    several values are folded with CRLF-TAB). Reading them there costs nothing per header,
    where wrapping ``putheader`` would cost a call each."""
    buffer = getattr(conn, "_buffer", None)
    if not isinstance(buffer, list):
        return []
    headers = []
    for line in buffer[start:]:
        if isinstance(line, bytes | bytearray):
            name, _, value = bytes(line).partition(b":")
            headers.append(
                (
                    name.decode("latin-1"),
                    value.removeprefix(b" ").replace(b"\r\n\t", b", ").decode("latin-1"),
                )
            )
    return headers


def _text(value: object) -> str:
    """A header name or value as ``putheader`` sends it (bytes as Latin-1, an int in digits)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("latin-1")
    return str(value)


def connection_url(conn: http.client.HTTPConnection, target: str, *, https: bool) -> str:
    """The URL a request for ``target`` on ``conn`` goes to: the tunnel's target, if any."""
    tunnel = getattr(conn, "_tunnel_host", None)
    host, port = (tunnel, getattr(conn, "_tunnel_port", None)) if tunnel else (conn.host, conn.port)
    return url_of("https" if https else "http", host, port, target)


def _kind(conn: http.client.HTTPConnection) -> tuple[str, bool]:
    """The client to report for ``conn`` (``urllib3`` for urllib3's connections, which are
    ``http.client`` connections), and whether it speaks TLS."""
    import http.client

    urllib3_connection = sys.modules.get("urllib3.connection")  # never imported for this
    base = getattr(urllib3_connection, "HTTPConnection", None)
    if isinstance(base, type) and isinstance(conn, base):
        tls = getattr(urllib3_connection, "HTTPSConnection", None)
        return "urllib3", isinstance(tls, type) and isinstance(conn, tls)
    return CLIENT, isinstance(conn, http.client.HTTPSConnection)


def install_http_client(guard: Guard, patches: Patches) -> None:
    import http.client

    connection = http.client.HTTPConnection
    original_request = connection.request
    original_putrequest = connection.putrequest
    original_endheaders = connection.endheaders
    original_send_output = connection._send_output  # type: ignore[attr-defined]

    def request(
        self: http.client.HTTPConnection,
        method: str,
        url: str,
        body: Any = None,
        headers: Any = None,
        **kwargs: Any,
    ) -> Any:
        __tracebackhide__ = True
        headers = {} if headers is None else headers
        if not guard.active or JUDGED_ABOVE.get() is not None:
            return original_request(self, method, url, body, headers, **kwargs)
        body, _ = judge(
            guard,
            method,
            connection_url(self, url, https=isinstance(self, http.client.HTTPSConnection)),
            headers=dict(headers),
            body=body,
            client=CLIENT,
        )
        token = JUDGED_ABOVE.set(self)  # its putrequest/endheaders beneath: judged here
        try:
            return original_request(self, method, url, body, headers, **kwargs)
        finally:
            JUDGED_ABOVE.reset(token)
            finished(body)

    def putrequest(
        self: http.client.HTTPConnection, method: str, url: str, *args: Any, **kwargs: Any
    ) -> Any:
        state = self.__dict__
        state[_PENDING] = None
        result = original_putrequest(self, method, url, *args, **kwargs)
        if JUDGED_ABOVE.get() is None:  # else judged above: its endheaders stands aside
            # The headers putrequest buffered itself (Host, Accept-Encoding) are not the
            # code's: not recorded, as ``request`` records only the headers it was given.
            buffer = getattr(self, "_buffer", None)
            start = len(buffer) if isinstance(buffer, list) else 0
            state[_PENDING] = (method, url if isinstance(url, str) else str(url), start)
        return result

    def endheaders(
        self: http.client.HTTPConnection, message_body: Any = None, **kwargs: Any
    ) -> Any:
        """Judge a request made with ``putrequest``, before anything of it is sent (see the
        module): http.client sends the request line and headers only here."""
        __tracebackhide__ = True
        pending = self.__dict__.pop(_PENDING, None)
        if pending is None or not guard.active or JUDGED_ABOVE.get() is not None:
            return original_endheaders(self, message_body, **kwargs)
        method, target, start = pending
        client, https = _kind(self)
        try:
            message_body, _ = judge(
                guard,
                method,
                connection_url(self, target, https=https),
                headers=_buffered_headers(self, start),
                body=message_body,
                client=client,
            )
        except BaseException:
            # Blocked: nothing of it may go out later either (a connection closed and used
            # again would send what is buffered first). The connection stays mid-request,
            # as after any failed endheaders, until it is closed.
            buffer = getattr(self, "_buffer", None)
            if isinstance(buffer, list):
                buffer.clear()
            raise
        try:
            return original_endheaders(self, message_body, **kwargs)
        finally:
            finished(message_body)

    def send_output(
        self: http.client.HTTPConnection, message_body: Any = None, *args: Any, **kwargs: Any
    ) -> Any:
        """Where http.client sends a body: a streamed one is watched as each chunk goes out
        (``_body``), read exactly as http.client reads it."""
        watch = None if message_body is None else watch_of(message_body)
        read_readable = getattr(self, "_read_readable", None)
        if watch is None or read_readable is None:
            return original_send_output(self, message_body, *args, **kwargs)
        if hasattr(message_body, "read"):
            chunks = read_readable(message_body)
        else:
            try:
                view = memoryview(message_body)
            except TypeError:
                if not hasattr(type(message_body), "__iter__"):
                    return original_send_output(self, message_body, *args, **kwargs)
                chunks = _lazily(message_body)
            else:  # a buffer, sent whole
                watch.feed(view)
                watch.ended()
                return original_send_output(self, message_body, *args, **kwargs)
        return original_send_output(self, watch.tee(chunks), *args, **kwargs)

    patches.patch(connection, "request", request)
    patches.patch(connection, "putrequest", putrequest)
    patches.patch(connection, "endheaders", endheaders)
    patches.patch(connection, "_send_output", send_output)


def install_urllib_request(guard: Guard, patches: Patches) -> None:
    import urllib.request

    original_do_open = urllib.request.AbstractHTTPHandler.do_open

    def do_open(
        self: urllib.request.AbstractHTTPHandler,
        http_class: Any,
        req: urllib.request.Request,
        **kwargs: Any,
    ) -> Any:
        __tracebackhide__ = True
        if not guard.active:
            return original_do_open(self, http_class, req, **kwargs)
        req.data, _ = judge(  # type: ignore[assignment]
            guard,
            req.get_method(),
            req.full_url,
            headers={**req.headers, **req.unredirected_hdrs},
            body=req.data,
            client=CLIENT,
        )
        try:
            with judged_above(req):
                return original_do_open(self, http_class, req, **kwargs)
        finally:
            finished(req.data)

    patches.patch(urllib.request.AbstractHTTPHandler, "do_open", do_open)


def _lazily(body: Any) -> Any:
    """``body``'s chunks, its iterator made only when the first is asked for (as
    http.client makes it, after the headers went out)."""
    yield from body


def install_vcr(guard: Guard, patches: Patches) -> None:
    """Under a vcrpy cassette, http.client's connection classes are vcr's own: judge there,
    in ``request`` and, for the low-level way, in ``endheaders`` (vcr keeps the request in
    ``_vcr_request`` until ``getresponse``). ``getresponse`` sends a request missing from the
    cassette through a real connection: judged already, so that stands aside."""
    from vcr.stubs import VCRConnection

    original = VCRConnection.request
    original_endheaders = VCRConnection.endheaders
    original_getresponse = VCRConnection.getresponse

    def request(
        self: Any,
        method: str,
        url: str,
        body: Any = None,
        headers: Any = None,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        __tracebackhide__ = True
        if guard.active and JUDGED_ABOVE.get() is None:
            body, _ = judge(
                guard,
                method,
                self._uri(url),
                headers=dict(headers or {}),
                body=body,
                client=CLIENT,
            )
        return original(self, method, url, body, headers, *args, **kwargs)

    def endheaders(self: Any, message_body: Any = None, *args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True
        pending = self.__dict__.get("_vcr_request")  # set by vcr's putrequest
        if pending is not None and guard.active and JUDGED_ABOVE.get() is None:
            message_body, _ = judge(
                guard,
                pending.method,
                pending.uri,
                headers=[(_text(k), _text(v)) for k, v in pending.headers.items()],
                body=message_body,
                client=CLIENT,
            )
        return original_endheaders(self, message_body, *args, **kwargs)

    def getresponse(self: Any, *args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True
        if not guard.active or JUDGED_ABOVE.get() is not None:
            return original_getresponse(self, *args, **kwargs)
        with judged_above(self):  # the real request, if any: judged in request/endheaders
            return original_getresponse(self, *args, **kwargs)

    patches.patch(VCRConnection, "request", request)
    patches.patch(VCRConnection, "endheaders", endheaders)
    patches.patch(VCRConnection, "getresponse", getresponse)
