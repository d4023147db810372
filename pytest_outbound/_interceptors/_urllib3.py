"""urllib3 used directly: judged in ``HTTPConnectionPool.urlopen``, once per hop.

``PoolManager`` follows cross-host redirects by calling a pool's ``urlopen`` again, so each hop
is judged here. Inside one ``urlopen`` urllib3 recurses for its own retries (same URL: not
another request) and same-host redirects (another URL: another hop, judged). Calls made by
requests, which judged the request already, stand aside.
"""

from __future__ import annotations

from typing import Any

from pytest_outbound._guard import Guard
from pytest_outbound._interceptors import (
    JUDGED_ABOVE,
    Undo,
    admit,
    capture_body,
    judged_above,
    patch,
    url_of,
)
from pytest_outbound._record import build_request


def install(guard: Guard) -> Undo:
    from urllib3.connectionpool import HTTPConnectionPool

    original = HTTPConnectionPool.urlopen

    def urlopen(
        self: HTTPConnectionPool,
        method: str,
        url: str,
        body: Any = None,
        headers: Any = None,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        __tracebackhide__ = True
        above = JUDGED_ABOVE.get()
        if not guard.active or (above is not None and not _another_hop(above, self, url)):
            return original(self, method, url, body, headers, *args, **kwargs)
        data, body = capture_body(body)
        record = build_request(
            method,
            url_of(self.scheme, self.host, self.port, url),
            headers=dict(headers if headers is not None else self.headers),
            body=data,
            client="urllib3",
            body_limit=guard.body_limit,
        )
        admit(guard, record)
        with judged_above(("urllib3", self, url)):
            return original(self, method, url, body, headers, *args, **kwargs)

    return patch(HTTPConnectionPool, "urlopen", urlopen)


def _another_hop(above: object, pool: object, url: str) -> bool:
    """A nested urlopen of the same pool for another URL: a same-host redirect hop."""
    return (
        isinstance(above, tuple)
        and len(above) == 3
        and above[0] == "urllib3"
        and above[1] is pool
        and above[2] != url
    )
