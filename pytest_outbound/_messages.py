"""The words a person reads when a request is blocked: what, from where, why, and the fix.

Every message ends with the exact TOML lines or marker that would make the request allowed on
purpose.
"""

from __future__ import annotations

from collections.abc import Sequence

from pytest_outbound._decide import Context, Verdict, documented_summary, suggest_name
from pytest_outbound._record import OutboundRequest

_INDENT = "    "


def blocked_message(request: OutboundRequest, verdict: Verdict, context: Context) -> str:
    where = request.location or "unknown location"
    test = f" in {request.nodeid} [{request.phase}]" if request.nodeid else f" [{request.phase}]"
    lines = [
        f"outbound request blocked: {request.method} {request.url} (client: {request.client})",
        f"  from: {where}{test}",
    ]
    lines.extend(f"  why:  {text}" for text in verdict.detail)
    rules = context.rules
    lines.append(f"  documented: {documented_summary(rules)}")
    host = request.host
    allow_marker = f'@pytest.mark.outbound_allow("{host}")'
    codes = set(verdict.reasons)
    if "ambiguous-host" in codes:
        lines.append(
            "  fix: correct the URL; an ambiguous host cannot be documented"
            " because clients disagree on where it goes"
        )
    elif codes & {"outbound_none", "outbound_only"}:
        lines.append("  to allow it in this test on purpose, add:")
        lines.append(f"{_INDENT}{allow_marker}")
    elif verdict.closest is not None:
        dest = rules.by_name.get(verdict.closest)
        if dest is not None:
            lines.append(
                f"  to document it, extend destination {dest.name!r} ({_file_of(dest.source)}):"
            )
            for code, value in (
                ("scheme", ("schemes", [*dest.schemes, request.scheme])),
                ("port", ("ports", [*dest.ports, request.port])),
                ("method", ("methods", [*dest.methods, request.method])),
                ("path", ("paths", [*dest.paths, request.path])),
            ):
                if code in codes:
                    key, items = value
                    lines.append(f"{_INDENT}{key} = {_toml_list(items)}")
    else:
        taken = list(rules.by_name)
        policy_file = next((_file_of(d.source) for d in rules.policy if d.source), "")
        target = policy_file or "your policy file (ini option outbound_policy)"
        lines.append(f"  to document it, add to {target}:")
        lines.extend(
            _INDENT + line
            for line in (
                "[[destination]]",
                f'name = "{suggest_name(host, taken)}"',
                f'hosts = ["{host}"]',
                'description = "What this request is for."',
                'when = "When the code makes it."',
            )
        )
        lines.append("  or allow it in this test only:")
        lines.append(f"{_INDENT}{allow_marker}")
    return "\n".join(lines)


def _file_of(source: str) -> str:
    path, sep, line = source.rpartition(":")
    return path if sep and line.isdigit() else source


def _toml_list(items: Sequence[object]) -> str:
    out = []
    for item in items:
        out.append(str(item) if isinstance(item, int) else f'"{item}"')
    return "[" + ", ".join(out) + "]"
