"""The guard inside a Python child process (started by the bootstrap ``sitecustomize``).

It reads the context the parent wrote for the test under way, judges the child's requests
exactly as the parent would (same policy, markers, sensitive values, mode), blocks in enforce
mode, and writes every record for the parent to collect (or, once the parent has finished,
says it on stderr). It watches the child's own children as the parent does (``ChildWatch``):
a grandchild that cannot be guarded is a violation too. No pytest here.

A pytest-xdist worker of the parent runs the plugin itself: when its session starts, the
plugin stops this guard (``stop_for_worker``), so the worker is not guarded twice.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from pytest_outbound._backstop import Backstop
from pytest_outbound._children import ENV, Bootstrap, ChildWatch, append_line, record_writer
from pytest_outbound._decide import Context, Rules, resolve_entry
from pytest_outbound._guard import ENFORCE, Guard, Scope
from pytest_outbound._interceptors import install_all
from pytest_outbound._policy import Policy
from pytest_outbound._report import destination_from_json
from pytest_outbound._sensitive import SensitiveScanner, SensitiveValue


class _Started:
    """The guard of this process, and what switches it off."""

    def __init__(self, guard: Guard, backstop: Backstop, watch: ChildWatch, parent: int) -> None:
        self.guard = guard
        self.backstop = backstop
        self.watch = watch
        self.parent = parent


_started: _Started | None = None


def _say(error: Exception) -> None:
    sys.stderr.write(f"{error}\n")  # "pytest-outbound could not patch ..."


def start() -> None:
    """Install the guard in this process, once."""
    global _started
    if _started is not None:
        return
    context_file = Path(os.environ[ENV]).absolute()
    data = json.loads(context_file.read_text(encoding="utf-8"))
    values = [SensitiveValue(kind, value) for kind, value in data["sensitive"]]
    rules = Rules(
        Policy(
            tuple(destination_from_json(d) for d in data["destinations"]),
            tuple(data["allowed"]),
        ),
        SensitiveScanner(values, min_length=1, ignore=()) if values else None,
    )
    where = "the test's markers"
    context = Context(
        rules,
        data["restriction"],
        tuple(resolve_entry(text, rules, where) for text in data["only"]),
        tuple(resolve_entry(text, rules, where) for text in data["allow"]),
    )
    spool = context_file.parent
    guard = Guard(
        mode=data["mode"],
        context=context,
        rootpath=Path(data["rootpath"]),
        local_enforce=data["local_enforce"],
        body_limit=data["body_limit"],
        on_request=record_writer(spool, enforcing=data["mode"] == ENFORCE),
    )
    guard.offline = data["offline"]
    if data["nodeid"]:
        guard.scope = Scope(data["nodeid"], context, phase=data["phase"])
    else:
        guard.outside_phase = data["phase"]
    # A library imported later that cannot be patched must not break the child's import, and
    # there is no pytest here to raise it in: say so where the child's errors go.
    install_all(guard, on_error=_say)
    backstop = Backstop(guard)
    watch = ChildWatch(
        guard,
        backstop,
        bootstrap=Bootstrap(str(spool), str(context_file)),
        allow=data.get("child_allow", ()),
        note=lambda name: _note(spool, name),
    )
    backstop.on_process = watch.on_event
    backstop.activate()
    _started = _Started(guard, backstop, watch, int(data.get("pid", 0)))


def _note(spool: Path, name: str) -> None:
    append_line(spool, {"unwatched": name})


def stop_for_worker() -> bool:
    """A pytest-xdist worker's session has started in this process: if this guard came from
    that session's controller (the worker's parent), the worker's own plugin takes over and
    this guard is switched off (its patches stay, passing through: undoing them would undo
    the session's, made on top). Returns whether it was."""
    global _started
    started = _started
    if started is None or started.parent != os.getppid():
        return False
    started.guard.active = False
    started.backstop.deactivate()
    started.watch.close()
    _started = None
    return True
