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
    WRITTEN_URL,
    Patches,
    ambiguous,
    judge,
    judged_above,
    take_written_url,
    url_of,
)


def install(guard: Guard, patches: Patches) -> None:
    from urllib3.connectionpool import HTTPConnectionPool
    from urllib3.poolmanager import PoolManager

    original = HTTPConnectionPool.urlopen
    original_manager = PoolManager.urlopen

    def manager_urlopen(self: PoolManager, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        """Remember the URL as written: PoolManager normalises it before a pool sees it."""
        __tracebackhide__ = True
        written = url if ambiguous(url) else None  # only then it matters (see ``ambiguous``)
        if written is None and WRITTEN_URL.get() is None:  # nothing to remember or to hide
            return original_manager(self, method, url, *args, **kwargs)
        token = WRITTEN_URL.set(written)
        try:
            return original_manager(self, method, url, *args, **kwargs)
        finally:
            WRITTEN_URL.reset(token)

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
        body, _ = judge(
            guard,
            method,
            url_of(self.scheme, self.host, self.port, url),
            headers=dict(headers if headers is not None else self.headers),
            body=body,
            client="urllib3",
            written_url=take_written_url(),
        )
        with judged_above(("urllib3", self, url)):
            return original(self, method, url, body, headers, *args, **kwargs)

    patches.patch(HTTPConnectionPool, "urlopen", urlopen)
    patches.patch(PoolManager, "urlopen", manager_urlopen)


def _another_hop(above: object, pool: object, url: str) -> bool:
    """A nested urlopen of the same pool for another URL: a same-host redirect hop."""
    return (
        isinstance(above, tuple)
        and len(above) == 3
        and above[0] == "urllib3"
        and above[1] is pool
        and above[2] != url
    )
