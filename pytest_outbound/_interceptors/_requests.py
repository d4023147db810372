"""requests: judged in ``Session.send``, above responses and requests-mock, once per hop."""

from __future__ import annotations

from typing import Any

from pytest_outbound._guard import Guard
from pytest_outbound._interceptors import Undo, admit, capture_body, judged_above, patch
from pytest_outbound._record import build_request


def _capture(request: Any) -> bytes:
    data, request.body = capture_body(request.body)
    return data


def install(guard: Guard) -> Undo:
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
            body=_capture(request),
            client="requests",
            body_limit=guard.body_limit,
        )
        stub = admit(guard, record)
        with judged_above(record):
            if stub is not None:
                return original(stub.session_for(self, request), request, **kwargs)
            return original(self, request, **kwargs)

    return patch(requests.Session, "send", send)
