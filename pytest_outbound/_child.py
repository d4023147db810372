"""The guard inside a Python child process (started by the bootstrap ``sitecustomize``).

It reads the context the parent wrote for the test under way, judges the child's requests
exactly as the parent would (same policy, markers, sensitive values, mode), blocks in enforce
mode, and writes every record for the parent to collect. No pytest here.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from pytest_outbound._backstop import Backstop
from pytest_outbound._children import ENV, record_writer
from pytest_outbound._decide import Context, Rules, resolve_entry
from pytest_outbound._guard import Guard, Scope
from pytest_outbound._interceptors import install_all
from pytest_outbound._policy import Policy
from pytest_outbound._report import destination_from_json
from pytest_outbound._sensitive import SensitiveScanner, SensitiveValue

_started = False


def _say(error: Exception) -> None:
    sys.stderr.write(f"{error}\n")  # "pytest-outbound could not patch ..."


def start() -> None:
    """Install the guard in this process, once."""
    global _started
    if _started:
        return
    context_file = Path(os.environ[ENV])
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
    guard = Guard(
        mode=data["mode"],
        context=context,
        rootpath=Path(data["rootpath"]),
        local_enforce=data["local_enforce"],
        body_limit=data["body_limit"],
        on_request=record_writer(context_file.parent / "reports"),
    )
    guard.offline = data["offline"]
    if data["nodeid"]:
        guard.scope = Scope(data["nodeid"], context, phase=data["phase"])
    else:
        guard.outside_phase = data["phase"]
    # A library imported later that cannot be patched must not break the child's import, and
    # there is no pytest here to raise it in: say so where the child's errors go.
    install_all(guard, on_error=_say)
    Backstop(guard).activate()
    _started = True
