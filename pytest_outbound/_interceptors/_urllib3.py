"""urllib3 used directly: judged in ``HTTPConnectionPool.urlopen``, once per hop, and in
``urllib3.connection.HTTPConnection.request`` when a connection is used without a pool.

``PoolManager`` follows cross-host redirects by calling a pool's ``urlopen`` again, so each hop
is judged here. Inside one ``urlopen`` urllib3 recurses for its own retries (same URL: not
another request) and same-host redirects (another URL: another hop, judged). Calls made by
requests, which judged the request already, stand aside, and so does the connection's
``request`` beneath a pool. A connection's ``request`` is judged with the method, URL, headers
and body it was given, before it sends anything (urllib3 sends the body after the headers,
where http.client's ``endheaders`` could not see it); the ``putrequest``/``putheader``/
``endheaders`` it makes beneath stand aside. A urllib3 connection used the low-level way
(``putrequest``... ``endheaders``) is judged by the http.client adapter, as ``urllib3``.
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
from pytest_outbound._interceptors._body import finished, watch_of


def install(guard: Guard, patches: Patches) -> None:
    import urllib3.connection
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool
    from urllib3.poolmanager import PoolManager

    from pytest_outbound._interceptors._stdlib import connection_url

    original = HTTPConnectionPool.urlopen
    original_connection_request = HTTPConnection.request
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
        try:
            with judged_above(("urllib3", self, url)):
                return original(self, method, url, body, headers, *args, **kwargs)
        finally:
            finished(body)

    def connection_request(
        self: HTTPConnection,
        method: str,
        url: str,
        body: Any = None,
        headers: Any = None,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        """A connection used without a pool (beneath one, the pool judged the request)."""
        __tracebackhide__ = True
        if not guard.active or JUDGED_ABOVE.get() is not None:
            return original_connection_request(self, method, url, body, headers, *args, **kwargs)
        body, _ = judge(
            guard,
            method,
            connection_url(self, url, https=isinstance(self, HTTPSConnection)),
            headers=dict(headers or {}),
            body=body,
            client="urllib3",
        )
        token = JUDGED_ABOVE.set(self)  # its putrequest/putheader/endheaders: judged here
        try:
            return original_connection_request(self, method, url, body, headers, *args, **kwargs)
        finally:
            JUDGED_ABOVE.reset(token)
            finished(body)

    original_chunks = getattr(urllib3.connection, "body_to_chunks", None)

    def body_to_chunks(body: Any, *args: Any, **kwargs: Any) -> Any:
        """Where a connection's ``request`` turns its body into the chunks it sends: a
        streamed body is watched as each chunk is sent (``_body``)."""
        result = original_chunks(body, *args, **kwargs)  # type: ignore[misc]
        watch = None if body is None else watch_of(body)
        chunks = getattr(result, "chunks", None)
        if watch is None or chunks is None:
            return result
        if isinstance(chunks, tuple):  # the body held in memory after all (a buffer)
            for chunk in chunks:
                watch.feed(chunk)
            watch.ended()
            return result
        return result._replace(chunks=watch.tee(chunks))

    if original_chunks is not None:  # urllib3 2; 1.x sends through http.client's, judged there
        patches.patch(urllib3.connection, "body_to_chunks", body_to_chunks)
    patches.patch(HTTPConnectionPool, "urlopen", urlopen)
    patches.patch(PoolManager, "urlopen", manager_urlopen)
    patches.patch(HTTPConnection, "request", connection_request)


def _another_hop(above: object, pool: object, url: str) -> bool:
    """A nested urlopen of the same pool for another URL: a same-host redirect hop."""
    return (
        isinstance(above, tuple)
        and len(above) == 3
        and above[0] == "urllib3"
        and above[1] is pool
        and above[2] != url
    )
