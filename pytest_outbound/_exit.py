"""Egress after the session, to the interpreter's last ``atexit`` handler (phase ``exit``).

A session that owns its process does not switch its guard off at unconfigure: the audit hook
(``_backstop``) goes on judging every socket and lookup, in ``config.add_cleanup`` callbacks,
late threads, ``atexit`` flushes. Each such request is reported on stderr as it happens and
added to the JSON report; in ``enforce`` it is blocked, and the process exits non-zero.

The exit status is fixed before ``atexit`` handlers run, so a block there cannot change it the
ordinary way. The watch's own handler is registered when the plugin module is imported, before
any conftest or test registers one: handlers run last-registered first, so it runs after all of
those. If anything was blocked by then, it ends the process with a failing status
(``os._exit``, after flushing). From then on (handlers registered before the plugin was
imported), a block ends the process at once.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys
from collections.abc import Callable

from pytest_outbound._guard import ENFORCE, Guard, process_wide
from pytest_outbound._record import OutboundRequest


class _Watch:
    """The session whose exit is watched (the last owning session of the process)."""

    def __init__(self) -> None:
        self.registered = False
        self.guard: Guard | None = None
        self.status: Callable[[], int] = lambda: 0
        self.on_end: Callable[[list[OutboundRequest]], None] | None = None
        self.records: list[OutboundRequest] = []
        #: A pytest-xdist worker's: the file its controller reads once the workers are gone
        #: (a worker's own exit status is nobody's).
        self.tell: str | None = None
        self.blocked: list[OutboundRequest] = []
        #: Set once the watch's own handler ran: a block after it ends the process.
        self.final = False
        #: How many requests the run blocked (``expect``): at exit, a run that blocked one and
        #: ends as if it passed (``sys.exit(0)`` in a conftest) ends with a failing status.
        self.count_blocked: Callable[[], int] = lambda: 0


_WATCH: _Watch = process_wide("exit_watch", _Watch)


def register() -> None:
    """Register the last word at exit, once; called when the plugin module is imported."""
    if not _WATCH.registered:
        _WATCH.registered = True
        atexit.register(_last)


def expect(guard: Guard, status: Callable[[], int], count_blocked: Callable[[], int]) -> None:
    """From the start of an owning session's guard: the last word at exit knows it."""
    _WATCH.guard, _WATCH.status, _WATCH.count_blocked = guard, status, count_blocked


def forget(guard: Guard) -> None:
    """The run ends on an error of its own (its exit status says it failed)."""
    if _WATCH.guard is guard:
        _WATCH.guard, _WATCH.count_blocked = None, lambda: 0


def watch(
    guard: Guard,
    status: Callable[[], int],
    on_end: Callable[[list[OutboundRequest]], None] | None,
    tell: str | None = None,
) -> None:
    """From now on, ``guard``'s requests are the exit's: said on stderr, and ``on_end`` gets
    them at the end (to rewrite the report); ``status`` is the session's exit status.
    ``tell``: a file to append what was blocked to (a pytest-xdist worker's controller reads
    it)."""
    # what a block says, imported now: a finalizer run as the interpreter shuts down can
    # import nothing (sys.meta_path is None), and its block must still be told and counted
    from pytest_outbound._guard import _messages

    _messages()

    _WATCH.guard, _WATCH.status, _WATCH.on_end, _WATCH.tell = guard, status, on_end, tell
    _WATCH.records, _WATCH.blocked, _WATCH.final = [], [], False
    guard.listen(on_request=_seen, on_violation=None)
    guard.on_outside_block = _blocked


def _what(request: OutboundRequest) -> str:
    """``GET url (client: x) from path:line``: the request, as every line here names it."""
    return (
        f"{request.method} {request.url} (client: {request.client})"
        f" from {request.location or 'unknown'}"
    )


def say_blocked(request: OutboundRequest, when: str) -> None:
    """One line on stderr for a request blocked where the run's outcome was fixed already."""
    sys.stderr.write(
        f"pytest-outbound: {_what(request)} was blocked {when} [{request.phase}]:"
        f" {', '.join(request.reasons)}; the run fails (outbound_mode = enforce)\n"
    )


def tell(path: str | None, blocked: list[OutboundRequest]) -> None:
    """Append what a pytest-xdist worker blocked after it reported to its controller's file
    (``path``; None: not a worker)."""
    if not path or not blocked:
        return
    with contextlib.suppress(OSError), open(path, "a", encoding="utf-8") as out:
        for request in blocked:
            out.write(f"{_what(request)} [{request.phase}]: {', '.join(request.reasons)}\n")


def _seen(request: OutboundRequest) -> None:
    _WATCH.records.append(request)
    guard = _WATCH.guard
    blocked = guard is not None and guard.mode == ENFORCE and not request.allowed
    reasons = f" ({', '.join(request.reasons)})" if request.reasons else ""
    sys.stderr.write(
        f"pytest-outbound: after the session, {_what(request)}:"
        f" {request.verdict}{reasons}{', blocked' if blocked else ''}\n"
    )


def _blocked(request: OutboundRequest) -> None:
    _WATCH.blocked.append(request)
    if _WATCH.final:
        _fail()


def _last() -> None:
    if _WATCH.guard is None:
        return
    if _WATCH.records and _WATCH.on_end is not None:
        try:
            _WATCH.on_end(list(_WATCH.records))
        except Exception as exc:  # the report could not be written again: say so, go on
            sys.stderr.write(f"pytest-outbound: the report was not updated at exit: {exc}\n")
    if _WATCH.blocked:
        _fail()
    if _WATCH.status() == 0:
        count = _WATCH.count_blocked()
        if count:
            _fail(
                f"pytest-outbound: {count} request(s) were blocked (enforce), and the run was"
                " ending with exit status 0"
            )
    _WATCH.final = True


def _fail(message: str = "") -> None:
    status = _WATCH.status() or 1
    message = message or (
        f"pytest-outbound: {len(_WATCH.blocked)} request(s) after the session were blocked"
        f" (enforce)"
    )
    message = f"{message}; exit status {status}"
    sys.stderr.write(message + "\n")
    tell(_WATCH.tell, _WATCH.blocked)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(status)
