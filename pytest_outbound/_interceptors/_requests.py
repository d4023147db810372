"""requests: judged in ``Session.send``, above responses and requests-mock, once per hop."""

from __future__ import annotations

from typing import Any

from pytest_outbound._guard import Guard
from pytest_outbound._interceptors import (
    JUDGED_ABOVE,
    WRITTEN_URL,
    Patches,
    judge,
    take_written_url,
)


def install(guard: Guard, patches: Patches) -> None:
    import requests

    original = requests.Session.send
    original_request = requests.Session.request

    def request(self: requests.Session, method: str, url: Any, *args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True
        token = WRITTEN_URL.set(url if isinstance(url, str) else None)
        try:
            return original_request(self, method, url, *args, **kwargs)
        finally:
            WRITTEN_URL.reset(token)

    def send(self: requests.Session, request: requests.PreparedRequest, **kwargs: Any) -> Any:
        __tracebackhide__ = True
        if not guard.active:
            return original(self, request, **kwargs)
        request.body, stub = judge(  # type: ignore[assignment]
            guard,
            request.method or "GET",
            request.url or "",
            headers=request.headers,
            body=request.body,
            client="requests",
            written_url=take_written_url(),
        )
        token = JUDGED_ABOVE.set(request)  # urllib3 beneath: already judged (the hot path)
        try:
            if stub is not None:
                return original(stub.session_for(self, request), request, **kwargs)
            return original(self, request, **kwargs)
        finally:
            JUDGED_ABOVE.reset(token)

    patches.patch(requests.Session, "send", send)
    patches.patch(requests.Session, "request", request)


def install_requests_mock(guard: Guard, patches: Patches) -> None:
    """requests-mock's Mocker replaces Session.send with a function that calls the send it saved
    when it was imported (maybe before this plugin patched it): send that through ours too."""
    import requests
    import requests_mock.mocker

    if "_original_send" in vars(requests_mock.mocker):
        patches.patch(requests_mock.mocker, "_original_send", requests.Session.send)
