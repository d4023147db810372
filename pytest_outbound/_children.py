"""Python child processes get the same guard (``outbound_subprocess = true``).

The way coverage.py measures subprocesses: a bootstrap directory is put first on
``PYTHONPATH``; its ``sitecustomize.py`` starts a guard in any Python child whose environment
names a context file (``PYTEST_OUTBOUND_CHILD``), and then runs the ``sitecustomize`` it
shadows, if there is one. The parent rewrites the context file at every phase (which test, which
phase, what it may contact); children append each record as a JSON line to a file of their own,
which the parent reads at the end of every phase and attributes to the test named in it.

A forked child (``multiprocessing`` fork) inherits the parent's patched guard; it is switched to
write its records the same way (``os.register_at_fork``). A child started with ``-I``/``-S`` or a
scrubbed environment, and any non-Python program, is not guarded.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pytest_outbound._guard import Guard, Scope
from pytest_outbound._record import OutboundRequest
from pytest_outbound._report import (
    destination_json,
    request_from_json,
    request_json,
    write_text_atomic,
)

ENV = "PYTEST_OUTBOUND_CHILD"

_SITECUSTOMIZE = '''\
"""pytest-outbound: guard Python child processes of a test run (removed after the run)."""
import importlib.machinery
import importlib.util
import os
import sys

if os.environ.get("PYTEST_OUTBOUND_CHILD"):
    try:
        import pytest_outbound._child

        pytest_outbound._child.start()
    except Exception as error:  # a guard that cannot start must not break the child
        sys.stderr.write(f"pytest-outbound: the child guard did not start: {error!r}\\n")


def _run_the_sitecustomize_this_one_shadows():
    here = os.path.dirname(os.path.abspath(__file__))
    path = [p for p in sys.path if os.path.abspath(p or ".") != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", path)
    if spec is not None and spec.loader is not None:
        spec.loader.exec_module(importlib.util.module_from_spec(spec))


_run_the_sitecustomize_this_one_shadows()
'''


def context_json(guard: Guard, scope: Scope | None, phase: str, rootpath: Path) -> dict[str, Any]:
    """What a child needs to judge as the parent would, for this test and phase."""
    context = scope.context if scope is not None else guard.session_context
    scanner = context.rules.scanner
    return {
        "mode": guard.mode,
        "nodeid": scope.nodeid if scope is not None else "",
        "phase": phase,
        "rootpath": str(rootpath),
        "body_limit": guard.body_limit,
        "local_enforce": guard.local_enforce,
        "offline": guard.offline,
        "destinations": [destination_json(d) for d in context.rules.policy.destinations],
        "allowed": list(context.rules.policy.allowed),
        "restriction": context.restriction,
        "only": [e.text for e in context.only_entries],
        "allow": [e.text for e in context.allow_entries],
        "sensitive": [[v.kind, v.value] for v in scanner.values] if scanner else [],
    }


class ChildGuards:
    """The parent's side: the bootstrap directory, the context file, the children's records."""

    def __init__(self, guard: Guard, rootpath: Path) -> None:
        self.guard = guard
        self.rootpath = rootpath
        self.directory = Path(tempfile.mkdtemp(prefix="pytest-outbound-"))
        self.reports = self.directory / "reports"
        self.reports.mkdir()
        self.context_file = self.directory / "context.json"
        (self.directory / "sitecustomize.py").write_text(_SITECUSTOMIZE, encoding="utf-8")
        self._offsets: dict[Path, int] = {}
        self._saved = {name: os.environ.get(name) for name in (ENV, "PYTHONPATH")}
        self.update(None, guard.outside_phase)
        pythonpath = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = os.pathsep.join(
            [str(self.directory), *([pythonpath] if pythonpath else [])]
        )
        os.environ[ENV] = str(self.context_file)
        os.register_at_fork(after_in_child=self._in_forked_child)

    def update(self, scope: Scope | None, phase: str) -> None:
        """Tell children started from now on which test and phase they belong to."""
        data = context_json(self.guard, scope, phase, self.rootpath)
        write_text_atomic(self.context_file, json.dumps(data))

    def collect(self) -> Iterator[OutboundRequest]:
        """The records children wrote since the last call, in file order."""
        for path in sorted(self.reports.glob("*.jsonl")):
            start = self._offsets.get(path, 0)
            with path.open("rb") as handle:
                handle.seek(start)
                data = handle.read()
            end = data.rfind(b"\n") + 1  # a line still being written waits for the next call
            self._offsets[path] = start + end
            for line in data[:end].splitlines():
                if line.strip():
                    yield request_from_json(json.loads(line))

    def close(self) -> None:
        for name, value in self._saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        shutil.rmtree(self.directory, ignore_errors=True)

    def _in_forked_child(self) -> None:
        if self.guard.active:
            self.guard.listen(on_request=record_writer(self.reports), on_violation=None)


def record_writer(reports: Path) -> Any:
    """An ``on_request`` callback appending each record to this process's own JSON-lines file."""
    path = reports / f"{os.getpid()}.jsonl"

    def write(request: OutboundRequest) -> None:
        line = json.dumps(request_json(request)) + "\n"
        with path.open("a", encoding="utf-8") as handle:
            handle.write(line)

    return write
