"""The terminal summary section ``outbound`` (SPEC §6), rendered from the records alone."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Final

from pytest_outbound._policy import Destination
from pytest_outbound._record import OutboundRequest
from pytest_outbound._value import Value

#: The ``client`` of a child process's record (``_decide.CHILD``): it has no host.
CHILD = "child"


class DestinationUse(Value):
    """How often a documented destination was contacted, and by which tests."""

    __slots__ = _fields = ("destination", "count", "tests")

    def __init__(self, destination: Destination, count: int, tests: tuple[str, ...]) -> None:
        self.destination: Final = destination
        self.count: Final = count
        self.tests: Final = tests


def destination_uses(
    destinations: Sequence[Destination], records: Sequence[OutboundRequest]
) -> list[DestinationUse]:
    counts: Counter[str] = Counter()
    tests: dict[str, dict[str, None]] = {}
    for r in records:
        if r.destination is not None:
            counts[r.destination] += 1
            if r.nodeid:
                tests.setdefault(r.destination, {})[r.nodeid] = None
    return [DestinationUse(d, counts[d.name], tuple(tests.get(d.name, {}))) for d in destinations]


def summary_lines(
    mode: str,
    destinations: Sequence[Destination],
    records: Sequence[OutboundRequest],
    *,
    verbose: bool = False,
) -> list[str]:
    """The lines of the ``outbound`` section, stable for the same input."""
    violations = [r for r in records if r.verdict == "violation"]
    uses = destination_uses(destinations, records)
    exercised = [u for u in uses if u.count]
    lines = [
        f"mode: {mode}; {len(records)} outbound request(s), {len(violations)} violation(s)",
        coverage_sentence(len(exercised), len(uses)),
    ]
    if exercised:
        lines.append("destinations contacted:")
        for u in exercised:
            tests = _shorten_list(u.tests, 3 if not verbose else len(u.tests))
            lines.append(
                f"  {u.destination.name} ({', '.join(u.destination.hosts)}):"
                f" {u.count} request(s) in {len(u.tests)} test(s){tests}"
            )
    if violations:
        lines.append("violations:")
        for r in violations:
            where = r.nodeid or f"<{r.phase}>"
            reason = ", ".join(r.reasons)
            loc = f" at {r.location}" if r.location else ""
            lines.append(f"  {where}{loc}: {r.method} {r.url} [{r.client}] {reason}")
    undocumented = Counter(r.host for r in records if r.destination is None and r.client != CHILD)
    if undocumented:
        lines.append("undocumented hosts:")
        lines.extend(f"  {host} ({n} request(s))" for host, n in sorted(undocumented.items()))
    unexercised = [u for u in uses if not u.count]
    if unexercised:
        lines.append("documented destinations no test exercised:")
        lines.extend(
            f"  {u.destination.name} ({', '.join(u.destination.hosts)})" for u in unexercised
        )
    return lines


def unwatched_lines(counts: Mapping[str, int]) -> list[str]:
    """Child processes that ran without a guard: one line per program, with how many times.
    What they send cannot be judged from Python; they are not violations (a Python child
    that could not be guarded is one, unless ``outbound_child_allow`` names it)."""
    if not counts:
        return []
    lines = ["child processes the plugin cannot watch (what they send is not judged):"]
    lines.extend(f"  {name}: {n} run(s)" for name, n in sorted(counts.items()))
    return lines


def internal_error_lines(mode: str, what: Sequence[str]) -> list[str]:
    """The plugin's own failures, if any: each request it could not judge, named once."""
    if not what:
        return []
    outcome = "blocked" if mode == "enforce" else "let through unjudged"
    named = list(dict.fromkeys(what))
    lines = [
        f"pytest-outbound failed judging {len(what)} request(s) ({outcome}); this is a bug"
        " in the plugin: please report it with the tracebacks from the JSON report"
        " (--outbound-report)"
    ]
    lines.extend(f"  {text}" for text in named[:5])
    if len(named) > 5:
        lines.append(f"  ... and {len(named) - 5} more")
    return lines


def coverage_sentence(exercised: int, documented: int) -> str:
    """``5 of 7 documented destinations were exercised``."""
    noun = "destination was" if documented == 1 else "destinations were"
    return f"{exercised} of {documented} documented {noun} exercised"


def _shorten_list(items: Sequence[str], limit: int) -> str:
    if not items:
        return ""
    shown = ", ".join(items[:limit])
    more = len(items) - limit
    return f": {shown}" + (f" and {more} more" if more > 0 else "")
