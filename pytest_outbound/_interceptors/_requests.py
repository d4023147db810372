"""requests: judged in ``Session.send``, above responses and requests-mock, once per hop."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from pytest_outbound._guard import Guard
from pytest_outbound._interceptors import (
    JUDGED_ABOVE,
    WRITTEN_URL,
    Patches,
    ambiguous,
    judge,
)
from pytest_outbound._interceptors._body import finished


def install(guard: Guard, patches: Patches) -> None:
    import requests
    from requests.structures import CaseInsensitiveDict

    original = requests.Session.send
    original_request = requests.Session.request

    def request(self: requests.Session, method: str, url: Any, *args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True
        # The URL as written matters only when its host is ambiguous (see ``ambiguous``).
        written = url if ambiguous(url) else None
        if written is None and WRITTEN_URL.get() is None:  # nothing to remember or to hide
            return original_request(self, method, url, *args, **kwargs)
        token = WRITTEN_URL.set(written)
        try:
            return original_request(self, method, url, *args, **kwargs)
        finally:
            WRITTEN_URL.reset(token)

    def send(self: requests.Session, request: requests.PreparedRequest, **kwargs: Any) -> Any:
        __tracebackhide__ = True
        if (
            not guard.active
            or not isinstance(request, requests.PreparedRequest)  # requests refuses it itself
            or _refused(self, request.url)
        ):
            return original(self, request, **kwargs)
        written = WRITTEN_URL.get()
        if written is not None:  # the first hop's only: redirect hops are judged as sent
            WRITTEN_URL.set(None)
        headers: Any = request.headers
        if type(headers) is CaseInsensitiveDict:  # its (name, value) pairs, in order, in C
            headers = headers._store.values()  # type: ignore[attr-defined]
        request.body, stub = judge(  # type: ignore[assignment]
            guard,
            request.method or "GET",
            request.url or "",
            headers=headers,
            body=request.body,
            client="requests",
            written_url=written,
        )
        token = JUDGED_ABOVE.set(request)  # urllib3 beneath: already judged (the hot path)
        try:
            if stub is not None:
                return original(stub.session_for(self, request), request, **kwargs)
            return original(self, request, **kwargs)
        finally:
            JUDGED_ABOVE.reset(token)
            if request.body is not None and request.body.__class__ is not bytes:
                finished(request.body)

    patches.patch(requests.Session, "send", send)
    patches.patch(requests.Session, "request", request)


def _refused(session: Any, url: object) -> bool:
    """Whether requests refuses ``url`` itself: as it picks the adapter (``InvalidSchema``: no
    adapter is mounted for its scheme), or, for http(s), as its adapter picks the connection
    (``InvalidURL``: the URL names no host, or no valid port, read as the adapter reads it).
    ``prepare`` refuses such a URL, but a redirect hop is not prepared again (a ``Location``
    of ``http://:1``). Nothing of such a request can leave, so it is not judged and the caller
    gets requests' own exception (a proxy it would go through instead is judged at its
    socket)."""
    if isinstance(url, str) and url.startswith(("http://", "https://")):
        try:
            parts = urlsplit(url)  # cached by urllib.parse: requests' adapter asks it too
            parts.port  # noqa: B018 (it raises for a port out of range)
        except ValueError:
            return True
        return not parts.hostname
    try:
        session.get_adapter(url=url)
    except Exception:
        return True
    return False


def install_requests_mock(guard: Guard, patches: Patches) -> None:
    """requests-mock's Mocker replaces Session.send with a function that calls the send it saved
    when it was imported (maybe before this plugin patched it): send that through ours too."""
    import requests
    import requests_mock.mocker

    saved = vars(requests_mock.mocker).get("_original_send")
    # Imported after requests was patched, it saved our send already: patching it with itself
    # would make the function its own ``__wrapped__`` (``inspect.signature`` then fails).
    if saved is not None and saved is not requests.Session.send:
        patches.patch(requests_mock.mocker, "_original_send", requests.Session.send)
