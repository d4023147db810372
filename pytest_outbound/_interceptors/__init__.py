"""Interceptors: thin adapters that turn a client library's request into an ``OutboundRequest``.

Each adapter patches its library at the layer *above* where that library's mocks patch, so a
request is judged the same whether a mock or the network would answer it, and each redirect hop
is judged on its own. Every ``install`` returns the undo function, which puts back exactly the
original captured at install time. All of them hand their record to ``Guard.observe`` through
``judge``; none of them decides anything itself.

Adapters that call into a lower library that is intercepted too (requests -> urllib3,
urllib.request -> http.client) mark the call with ``JUDGED_ABOVE``, so one request is recorded
once.
"""

from __future__ import annotations

import contextvars
import functools
import importlib
import io
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from pytest_outbound._guard import Guard
from pytest_outbound._hosts import HostError, default_port, peer_from_url
from pytest_outbound._record import HeadersKey, build_request

if TYPE_CHECKING:
    from pytest_outbound._stubs import Stub

Undo = Callable[[], None]

#: Set while a higher-level interceptor's original call runs; lower ones then stand aside.
JUDGED_ABOVE: contextvars.ContextVar[object | None] = contextvars.ContextVar(
    "outbound_judged_above", default=None
)


#: The URL as the code wrote it, before the client normalised it (first hop only).
WRITTEN_URL: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "outbound_written_url", default=None
)


def take_written_url() -> str | None:
    """The written URL of the request under way, once: redirect hops are judged as sent."""
    written = WRITTEN_URL.get()
    if written is not None:
        WRITTEN_URL.set(None)
    return written


#: URL as written -> whether it names no single host (see ``ambiguous``).
_AMBIGUOUS: dict[str, bool] = {}
_AMBIGUOUS_LIMIT = 4096
_AMBIGUOUS_LENGTH = 2048


def ambiguous(url: object) -> bool:
    """Whether the URL as written must be remembered: a text URL whose host is ambiguous or
    invalid (``peer_from_url`` refuses it). ``build_request`` uses a written URL only then (the
    client's normalised URL is judged otherwise), so the interceptors remember no other: most
    requests pay one dict lookup here instead of capturing and re-judging what was written."""
    if not isinstance(url, str):
        return False
    # a subclass may compare and hash its own way, and a long URL is seldom sent twice
    cached = type(url) is str and len(url) <= _AMBIGUOUS_LENGTH
    if cached:
        known = _AMBIGUOUS.get(url)
        if known is not None:
            return known
    try:
        peer_from_url(url)
        known = False
    except HostError:
        known = True
    if cached:
        if len(_AMBIGUOUS) >= _AMBIGUOUS_LIMIT:
            _AMBIGUOUS.clear()
        _AMBIGUOUS[url] = known
    return known


class Installation:
    """Every patch of one session, undone exactly and in reverse by ``undo``.

    requests, httpx, urllib3 and the standard library are patched at once. Peers that only
    matter once a test suite uses them (aiohttp, vcrpy, requests-mock) are patched when they
    have been imported, so a suite that never imports them does not pay for importing them:
    ``catch_up`` is called again after collection and before every test.
    """

    def __init__(self, guard: Guard) -> None:
        from pytest_outbound._backstop import Backstop
        from pytest_outbound._interceptors import _httpx, _requests, _stdlib, _urllib3

        self.guard = guard
        self.patches = Patches()
        self.backstop = Backstop(guard)
        self._modules_seen: tuple[int, str | None] = (-1, None)
        #: (modules that must be imported, our module and its installer), each run once; the
        #: aiohttp adapter itself is imported only then.
        self._pending: list[tuple[tuple[str, ...], str, str]] = [
            (("aiohttp",), "_aiohttp", "install"),
            (("requests_mock",), "_requests", "install_requests_mock"),
            (("vcr",), "_stdlib", "install_vcr"),
            (("vcr", "aiohttp"), "_aiohttp", "install_vcr"),
        ]
        try:
            for install in (_requests.install, _httpx.install, _urllib3.install, _stdlib.install):
                install(guard, self.patches)
            _remember_thread_origins(guard, self.patches)
            self.backstop.install(self.patches)
            self.catch_up()
        except BaseException:
            self.undo()
            raise

    def catch_up(self) -> None:
        """Patch the peers that have been imported since the last call."""
        modules = sys.modules
        if not self._pending:
            return
        # Before every test: nothing imported since the last look when sys.modules has the same
        # size and the same newest entry (an import and a removal that cancel out change that).
        seen = (len(modules), next(reversed(modules), None))
        if seen == self._modules_seen:
            return
        self._modules_seen = seen
        for entry in list(self._pending):
            required, adapter, installer = entry
            if all(name in modules for name in required):
                self._pending.remove(entry)
                module = importlib.import_module(f"{__name__}.{adapter}")
                getattr(module, installer)(self.guard, self.patches)

    def undo(self) -> None:
        self.backstop.uninstall()
        self.patches.undo()


def install_all(guard: Guard) -> Undo:
    """Patch every client library in use (all or nothing); return the undo."""
    return Installation(guard).undo


def _remember_thread_origins(guard: Guard, patches: Patches) -> None:
    """Each thread remembers the test that started it, so its late egress is that test's."""
    original_start = threading.Thread.start

    def start(self: threading.Thread) -> None:
        key = guard.origin_key
        setattr(self, key, guard.current() or getattr(threading.current_thread(), key, None))
        original_start(self)

    patches.patch(threading.Thread, "start", start)


class Patches:
    """The patches made so far, each undone exactly, last first."""

    def __init__(self) -> None:
        self._undos: list[Undo] = []

    def patch(self, owner: Any, name: str, replacement: Any) -> None:
        """Replace ``owner.name``; an inherited attribute is shadowed, and the shadow removed."""
        own = name in owner.__dict__
        original = owner.__dict__[name] if own else getattr(owner, name)
        functools.update_wrapper(replacement, original)
        setattr(owner, name, replacement)
        if own:
            self._undos.append(lambda: setattr(owner, name, original))
        else:
            self._undos.append(lambda: delattr(owner, name))

    def undo(self) -> None:
        while self._undos:
            self._undos.pop()()


def judge(
    guard: Guard,
    method: str,
    url: str,
    *,
    headers: Any,
    body: object,
    client: str,
    texts: bool = False,
    headers_key: HeadersKey | None = None,
    written_url: str | None = None,
    callers: int = 1,
) -> tuple[object, Stub | None]:
    """Build the record of a request about to be sent and judge it (``OutboundBlocked`` in
    enforce). Returns the body to send in place of ``body`` (see ``capture_body``) and the stub
    that answers the request, if any.

    ``texts``, ``headers_key``: what the interceptor knows of the headers (``build_request``).
    ``callers``: how many frames above this one are the interceptor's own (this package's);
    the search for the call site starts above them (``Guard.observe``'s ``skip``)."""
    __tracebackhide__ = True
    if body.__class__ is bytes:
        data: bytes = body
    else:
        data, body = capture_body(body)
    record = build_request(
        method,
        url,
        headers=headers,
        body=data,
        client=client,
        texts=texts,
        headers_key=headers_key,
        body_limit=guard.body_limit,
        written_url=written_url,
    )
    if not guard.observe(record, skip=callers + 1):  # this frame and its callers: ours
        return body, None
    scope = guard.scope
    if scope is None or not scope.stubs:  # ``stub_for``'s own first test, without the call
        return body, None
    stub = guard.stub_for(record)
    if stub is not None:
        stub.calls.append(record)
    return body, stub


@contextmanager
def judged_above(marker: object) -> Iterator[None]:
    token = JUDGED_ABOVE.set(marker)
    try:
        yield
    finally:
        JUDGED_ABOVE.reset(token)


def as_bytes(chunk: object) -> bytes:
    if isinstance(chunk, bytes):
        return chunk
    if isinstance(chunk, str):
        return chunk.encode("utf-8")
    if isinstance(chunk, bytearray | memoryview):
        return bytes(chunk)
    return b""


def capture_body(body: object) -> tuple[bytes, object]:
    """The bytes a body will send, and an equivalent body to send in its place.

    bytes/str are kept as they are. A file is read and rewound (or, when it cannot seek,
    replaced by an in-memory copy); a generator or other iterable is drained and replaced by an
    iterator over the same chunks, so the transport or mock still receives every byte.
    """
    if body is None or isinstance(body, bytes | str | bytearray | memoryview):
        return as_bytes(body), body
    read = getattr(body, "read", None)
    if callable(read):
        try:
            start: int | None = body.tell()  # type: ignore[attr-defined]
        except (OSError, AttributeError, ValueError):
            start = None
        data = as_bytes(read())
        if start is not None:
            try:
                body.seek(start)  # type: ignore[attr-defined]
                return data, body
            except (OSError, ValueError):
                pass
        return data, io.BytesIO(data)
    try:
        chunks = list(body)  # type: ignore[call-overload]
    except TypeError:
        return b"", body
    return b"".join(as_bytes(c) for c in chunks), iter(chunks)


def url_of(scheme: str, host: str, port: int | None, target: str) -> str:
    """An absolute URL from a connection's parts and a request target (path or absolute URL)."""
    if target.startswith(("http://", "https://")):
        return target
    netloc = f"[{host}]" if ":" in host and not host.startswith("[") else host
    if port is not None and port != default_port(scheme):
        netloc = f"{netloc}:{port}"
    return f"{scheme}://{netloc}{target if target.startswith('/') else '/' + target}"
