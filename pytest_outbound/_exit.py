"""Egress after the session: ``atexit`` flushes and background threads at interpreter exit.

pytest has printed its summary by then and the HTTP patches are undone. When the interpreter
shuts down, the last session of the process puts the socket/DNS backstop back in place, with
phase ``session``: before any
``atexit`` handler runs (``threading``'s shutdown callbacks run first), so an ``atexit`` flush
or a late thread is seen. Each such request is reported on stderr as it happens, added to the
JSON report, and, in ``enforce`` mode, blocked; the process then exits non-zero.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
from collections.abc import Callable

from pytest_outbound._backstop import Backstop
from pytest_outbound._guard import ENFORCE, Guard
from pytest_outbound._interceptors import Patches
from pytest_outbound._record import OutboundRequest


class _Watch:
    """The session whose exit is watched (the last one configured in this process)."""

    def __init__(self) -> None:
        self.guard: Guard | None = None
        self.on_end: Callable[[list[OutboundRequest]], None] | None = None
        self.registered = False
        self.records: list[OutboundRequest] = []
        self.backstop: Backstop | None = None
        self.patches: Patches | None = None


_WATCH = _Watch()


def watch(guard: Guard, on_end: Callable[[list[OutboundRequest]], None]) -> None:
    """Watch ``guard``'s process exit; ``on_end`` gets the records made after the session."""
    _WATCH.guard, _WATCH.on_end = guard, on_end
    if _WATCH.registered:
        return
    register = getattr(threading, "_register_atexit", None)
    if register is None:  # not CPython 3.9+: only the documented limit applies
        return
    register(_begin)
    atexit.register(_end)
    _WATCH.registered = True


def _begin() -> None:
    guard = _WATCH.guard
    if guard is None:
        return
    guard.scope = None
    guard.outside_phase = "session"
    guard.active = True
    guard.listen(on_request=_report_one, on_violation=None)
    _WATCH.patches = Patches()
    _WATCH.backstop = Backstop(guard)
    _WATCH.backstop.install(_WATCH.patches)


def _report_one(request: OutboundRequest) -> None:
    _WATCH.records.append(request)
    blocked = _WATCH.guard is not None and _WATCH.guard.mode == ENFORCE and not request.allowed
    sys.stderr.write(
        f"pytest-outbound: after the session, {request.method} {request.url}"
        f" (client: {request.client}) from {request.location or 'unknown'}:"
        f" {request.verdict}{' (' + ', '.join(request.reasons) + ')' if request.reasons else ''}"
        f"{', blocked' if blocked else ''}\n"
    )


def _end() -> None:
    guard = _WATCH.guard
    if _WATCH.backstop is not None:
        _WATCH.backstop.uninstall()
    if _WATCH.patches is not None:
        _WATCH.patches.undo()
    if guard is None or not _WATCH.records:
        return
    if _WATCH.on_end is not None:
        _WATCH.on_end(list(_WATCH.records))
    if guard.mode == ENFORCE and any(not r.allowed for r in _WATCH.records):
        sys.stderr.write(
            "pytest-outbound: requests after the session were blocked (enforce); exit status 1\n"
        )
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)
