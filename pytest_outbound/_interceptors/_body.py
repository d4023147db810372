"""Streamed bodies: judged as they pass, never read ahead of the client.

A body held in memory (bytes, text, a list of them) is judged with the rest of its request,
before anything is sent. A stream (a file, a generator, an iterator, an async iterable, a
client's own stream object) reaches the client exactly as the caller made it: reading it
first would change what the client does with it (a generator it cannot send twice, a file
it rewinds on a retry, a write timeout in mid-upload) and hold a whole upload in memory.

So a request with a streamed body is judged before its first byte on everything else (where
it goes, method, path, query, headers: ``OutboundRequest.streamed``), and its body is watched
at the layer that sends it (``BodyWatch.tee``: urllib3's chunks, http.client's, httpx's
stream, aiohttp's writer), which copies up to ``outbound_body_limit`` bytes as they go. When
the stream has passed, or the request has ended, what went out is judged
(``Guard.observe_streamed``): its fields against the destination's payload contract, its
bytes for this machine's sensitive values. What breaks the policy then could not be stopped:
in enforce it fails the test that sent it. A stream nobody read (a mock that never looked at
the body) sent nothing, and nothing of it is judged.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from pytest_outbound._guard import HOOK_RAISED

if TYPE_CHECKING:
    from pytest_outbound._guard import Guard, Scope
    from pytest_outbound._record import OutboundRequest

_BYTES_LIKE = (bytes, str, bytearray, memoryview)

#: The watch of the last request judged in this context with a streamed body: the layer that
#: sends it finds it there (``watch_of``), recognising the body by identity.
_WATCHING: contextvars.ContextVar[BodyWatch | None] = contextvars.ContextVar(
    "outbound_body_watch", default=None
)


def in_memory(body: object) -> bytes | None:
    """The bytes of a body held in memory, or None for a stream. A list or tuple of chunks is
    in memory (reading it changes nothing); any other iterable, or a file, is a stream."""
    if body is None:
        return b""
    if isinstance(body, _BYTES_LIKE):
        return as_bytes(body)
    chunks = body if isinstance(body, list | tuple) and body.__class__ in (list, tuple) else None
    if chunks is not None and all(isinstance(chunk, _BYTES_LIKE) for chunk in chunks):
        return b"".join(map(as_bytes, chunks))
    return None


def peek(body: object, limit: int) -> bytes | None:
    """The bytes a seekable file will send, read from where it stands and put back there
    (nothing the client can see changes), or None: not a seekable file, larger than
    ``limit``, or it does not tell where it stands. Such a file is judged whole before
    anything is sent; any other is a stream."""
    read = getattr(body, "read", None)
    seekable = getattr(body, "seekable", None)
    if not (callable(read) and callable(seekable)):
        return None
    try:
        if seekable() is not True:
            return None
        start = body.tell()  # type: ignore[attr-defined]
    except Exception:
        return None  # (urllib3 sends it all the same; it cannot rewind it on a retry)
    try:
        data = read(limit + 1)
    finally:
        body.seek(start)  # type: ignore[attr-defined]
    if isinstance(data, str):
        data = data.encode("utf-8")
    if not isinstance(data, bytes | bytearray) or len(data) > limit:
        return None
    return bytes(data)


def as_bytes(chunk: object) -> bytes:
    if isinstance(chunk, bytes) and chunk.__class__ is bytes:
        return chunk
    if isinstance(chunk, str):
        return chunk.encode("utf-8")
    if isinstance(chunk, bytes | bytearray | memoryview):
        return bytes(chunk)
    return b""


class BodyWatch:
    """The streamed body of one judged request: what of it passed, judged once it has."""

    __slots__ = ("_done", "_ended", "_kept", "_limit", "_seen", "body", "guard", "record", "scope")

    def __init__(
        self, guard: Guard, record: OutboundRequest, scope: Scope | None, body: object
    ) -> None:
        self.guard = guard
        self.record = record
        self.scope = scope
        #: The stream object as the code gave it (the sending layer recognises it by identity).
        self.body: object = body
        self._kept: list[bytes] = []
        self._limit = guard.body_limit
        self._seen = False
        self._ended = False
        self._done = False

    @classmethod
    def start(cls, guard: Guard, record: OutboundRequest, body: object) -> BodyWatch:
        """Watch ``body`` for ``record`` (judged already on everything else)."""
        scope, _ = guard._attribution()
        watch = cls(guard, record, scope, body)
        (scope.streams if scope is not None else guard.streams).append(watch)
        _WATCHING.set(watch)
        return watch

    def feed(self, chunk: object) -> None:
        """One chunk on its way out."""
        if self._done:
            return
        self._seen = True
        record = self.record
        if isinstance(chunk, str):
            chunk = chunk.encode("utf-8")
        if not isinstance(chunk, bytes | bytearray | memoryview):
            return  # the sender's to refuse (it cannot send it either)
        size = chunk.nbytes if isinstance(chunk, memoryview) else len(chunk)
        kept = record.body_size
        record.body_size = kept + size
        room = self._limit - kept
        if room > 0 and size:
            self._kept.append(bytes(chunk[:room]))

    def tee(self, chunks: Iterable[Any]) -> Iterator[Any]:
        """``chunks``, one by one as the sender asks for them, each fed to the watch."""
        for chunk in chunks:
            self.feed(chunk)
            yield chunk
        self._ended = True

    def ended(self) -> None:
        """The sender has read the stream to its end."""
        self._ended = True

    def finish(self) -> None:
        """Judge what passed (once), when the request has ended: called by the interceptor
        that judged it, after the client's call returned or raised (``finished``), and for
        any still open when a test phase or the session ends. A stream nobody read sent
        nothing: nothing is judged."""
        if self._done:
            return
        self._done = True
        self.body = None  # the stream is the caller's: not kept alive by the plugin
        holder = self.scope.streams if self.scope is not None else self.guard.streams
        if self in holder:
            holder.remove(self)
        if not (self._seen or self._ended):
            return
        data = b"".join(self._kept)
        self._kept = []
        guard = self.guard
        hooks_before = HOOK_RAISED.get()
        try:
            guard.observe_streamed(self.record, self.scope, data)
        except Exception as exc:
            if HOOK_RAISED.get() is not hooks_before and HOOK_RAISED.get() is exc:
                raise  # a ``pytest_outbound_violation`` hook's own
            guard.internal_error(f"the streamed body of {self.record.url}", exc)


def watch_of(body: object) -> BodyWatch | None:
    """The watch of ``body``, if it is the streamed body of a request judged in this context
    and not judged yet."""
    watch = _WATCHING.get()
    if watch is None or watch.body is not body or watch._done:
        return None
    return watch


def finished(body: object) -> None:
    """The request whose streamed body is ``body`` has ended: judge what of it passed."""
    watch = watch_of(body)
    if watch is not None:
        watch.finish()


def finish_all(watches: list[BodyWatch]) -> None:
    """Judge every stream still watched (a test phase or the session has ended)."""
    for watch in list(watches):
        watch.finish()
