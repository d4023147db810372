"""The standard library: ``urllib.request`` (judged in ``AbstractHTTPHandler.do_open``, once per
hop, whatever connection class is in place) and ``http.client`` used directly (judged in
``HTTPConnection.request``). Both are reported as client ``http.client``.

Through a tunnelling proxy (``set_tunnel``) the record names the target; the connection to the
proxy itself is judged by the socket backstop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pytest_outbound._guard import Guard
from pytest_outbound._interceptors import (
    JUDGED_ABOVE,
    Patches,
    judge,
    judged_above,
    url_of,
)

if TYPE_CHECKING:
    import http.client
    import urllib.request

CLIENT = "http.client"


def install_http_client(guard: Guard, patches: Patches) -> None:
    import http.client

    original_request = http.client.HTTPConnection.request

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
        scheme = "https" if isinstance(self, http.client.HTTPSConnection) else "http"
        tunnel = getattr(self, "_tunnel_host", None)
        host, port = (
            (tunnel, getattr(self, "_tunnel_port", None)) if tunnel else (self.host, self.port)
        )
        body, _ = judge(
            guard,
            method,
            url_of(scheme, host, port, url),
            headers=dict(headers),
            body=body,
            client=CLIENT,
        )
        return original_request(self, method, url, body, headers, **kwargs)

    patches.patch(http.client.HTTPConnection, "request", request)


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
        with judged_above(req):
            return original_do_open(self, http_class, req, **kwargs)

    patches.patch(urllib.request.AbstractHTTPHandler, "do_open", do_open)


def install_vcr(guard: Guard, patches: Patches) -> None:
    """Under a vcrpy cassette, http.client's connection classes are vcr's own: judge there."""
    from vcr.stubs import VCRConnection

    original = VCRConnection.request

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

    patches.patch(VCRConnection, "request", request)
