"""Where a request came from, as a person reads it: the user's own line, not a library's.

A frame is a library's when its module's top-level package is one the guard knows
(``_guard._LIBRARY_PACKAGES``: the clients, pytest, the standard library...) or when its file
lies in an installed-packages directory (``site-packages``, ``dist-packages``, or sysconfig's
``purelib``/``platlib``): a wrapper library such as an error reporter or an analytics client
calling requests for the user's code. The call site is the first frame outside both; the
wrapper's own frame is kept as ``via``.

Pure string work: a file name is classified without asking the file system (the guard does it
once per code object, inside the client's call, perhaps in a running event loop).
"""

from __future__ import annotations

import functools
import os
import sysconfig
from types import FrameType, TracebackType

_SEPARATORS = tuple(dict.fromkeys((os.sep, "/")))
_MARKERS = tuple(
    f"{sep}{name}{sep}" for name in ("site-packages", "dist-packages") for sep in _SEPARATORS
)


@functools.cache
def _install_prefixes() -> tuple[str, ...]:
    """sysconfig's purelib and platlib, normalised, each ending with a separator."""
    found: dict[str, None] = {}
    for key in ("purelib", "platlib"):
        try:
            path = sysconfig.get_paths()[key]
        except Exception:  # an odd installation scheme: the markers still apply
            continue
        folded = os.path.normcase(os.path.normpath(path))
        found[folded if folded.endswith(os.sep) else folded + os.sep] = None
    return tuple(found)


def installed_part(filename: str) -> str:
    """``filename`` from its package on (``posthog/request.py``) when it lies in an
    installed-packages directory; else ""."""
    best = -1
    for marker in _MARKERS:
        at = filename.rfind(marker)
        if at >= 0:
            best = max(best, at + len(marker))
    if best >= 0:
        return filename[best:]
    folded = os.path.normcase(filename)
    for prefix in _install_prefixes():
        if folded.startswith(prefix):
            return filename[len(prefix) :]
    return ""


def is_installed(filename: str) -> bool:
    """Whether ``filename`` lies in an installed-packages directory (no file system call)."""
    return bool(installed_part(filename))


def is_library_frame(frame: FrameType) -> bool:
    """Whether ``frame`` runs a library's code (a known package, or an installed one)."""
    from pytest_outbound._guard import _LIBRARY_PACKAGES

    module = frame.f_globals.get("__name__", "")
    if not isinstance(module, str):
        module = ""
    if module.partition(".")[0] in _LIBRARY_PACKAGES:
        return True
    return is_installed(frame.f_code.co_filename)


def trim_blocked_traceback(error: BaseException) -> None:
    """Cut the traceback of every ``OutboundBlocked`` in ``error``'s chain at the user's call
    site: the frames from the first library frame after the user's code on are dropped, so a
    report of the failure shows the user's line last and no library frame's arguments (the
    request's URL, headers and body) nor source.

    The traceback is changed in place (``tb_next``): whatever shows it later, pytest in any
    ``--tb`` style or a logger, sees the cut one. Nothing happens when there is no user frame
    to cut at."""
    from pytest_outbound._errors import OutboundBlocked

    seen: set[int] = set()
    stack: list[BaseException] = [error]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OutboundBlocked):
            _cut(current.__traceback__)
        stack.extend(e for e in (current.__cause__, current.__context__) if e is not None)
        if isinstance(current, BaseExceptionGroup):
            stack.extend(current.exceptions)


def _cut(tb: TracebackType | None) -> None:
    user: TracebackType | None = None
    while tb is not None:
        if is_library_frame(tb.tb_frame):
            if user is not None:  # the user's code called into a library here
                user.tb_next = None
                return
        else:
            user = tb
        tb = tb.tb_next


def shown_filename(filename: str, relpath: str) -> str:
    """How a library frame's file is named in a record: from its package on when installed
    (the same on every machine, and no home directory in it), else ``relpath``."""
    part = installed_part(filename)
    return part.replace(os.sep, "/") if part else relpath
