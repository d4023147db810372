"""``outbound.stub``: one canned answer served to requests (through responses) and httpx (respx).

A stub never patches anything itself: the interceptors, which sit above every mock, route a
request that a stub answers to it, so stubs work beside ``@responses.activate``, ``respx.mock``
and pytest-httpx without fighting over the same patch.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import httpx
import requests
import requests.adapters
import responses
import respx

from pytest_outbound._decide import Entry
from pytest_outbound._record import OutboundRequest

_ANY_URL = re.compile(r".*")


class Stub:
    """A canned response for requests to one entry (destination name or host pattern)."""

    def __init__(
        self,
        entry: Entry,
        *,
        method: str = "GET",
        status: int = 200,
        json: Any = None,
        body: str | bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if json is not None and body is not None:
            raise ValueError("outbound.stub: give json= or body=, not both")
        self.entry = entry
        self.method = method.upper()
        self.calls: list[OutboundRequest] = []
        header_map = dict(headers or {})
        self._responses = responses.RequestsMock(assert_all_requests_are_fired=False)
        self._responses.add(
            responses.Response(
                method=self.method,
                url=_ANY_URL,
                status=status,
                json=json,
                body=body if body is not None else "",
                headers=header_map,
            )
        )
        self._send_requests = self._responses.unbound_on_send()
        router = respx.Router(assert_all_called=False)
        router.route(method=self.method).respond(
            status,
            json=json,
            content=body if body is not None else None,
            headers=header_map,
        )
        self.transport = httpx.MockTransport(router.handler)

    def answers(self, request: OutboundRequest) -> bool:
        return request.method == self.method and self.entry.covers(request)

    def __repr__(self) -> str:
        return f"<outbound stub {self.method} {self.entry.text} ({len(self.calls)} calls)>"

    def session_for(
        self, session: requests.Session, request: requests.PreparedRequest
    ) -> requests.Session:
        """A shallow copy of ``session`` whose adapter answers ``request`` from the stub.

        Only this one prepared request is answered here; anything else the copy sends (a
        redirect hop) goes to the adapter the original session would have used.
        """
        clone = requests.Session.__new__(requests.Session)
        clone.__dict__.update(session.__dict__)
        clone.adapters = type(session.adapters)()
        clone.mount("", _StubAdapter(self, session, request))
        return clone


class _StubAdapter(requests.adapters.HTTPAdapter):
    def __init__(
        self, stub: Stub, session: requests.Session, request: requests.PreparedRequest
    ) -> None:
        super().__init__()
        self._stub = stub
        self._session = session
        self._request = request

    def send(  # type: ignore[override]
        self, request: requests.PreparedRequest, **kwargs: Any
    ) -> requests.Response:
        if request is self._request:
            return self._stub._send_requests(self, request, **kwargs)
        return self._session.get_adapter(request.url or "").send(request, **kwargs)
