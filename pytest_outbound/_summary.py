"""The terminal summary section ``outbound`` (SPEC §6), rendered from the records alone.

It reads the same for ten requests or ten thousand: violations are grouped by host and reason,
each group with its count and its first few requests (``-v`` lists all; the JSON report keeps
every one), and every line fits the terminal's width. Sensitive values and URL passwords are
masked (``mask``) before a line is fitted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Final

from pytest_outbound._hosts import HostError, HostPattern, Peer, peer_from_url
from pytest_outbound._policy import Destination
from pytest_outbound._record import VIOLATION, OutboundRequest
from pytest_outbound._value import Value

#: The ``client`` of a child process's record (``_decide.CHILD``): it has no host.
CHILD = "child"
#: And of a DNS lookup's (``_decide.DNS``): judged on its host alone.
DNS = "dns"
ENFORCE = "enforce"
#: ``OutboundRequest.allowed_by`` of a request a test's marker or fixture allowed.
IN_TEST = "test"
#: Reasons of a request whose host is no host at all (the client refused the URL, or the
#: plugin could not read the address): listed as violations, never as a host.
NO_HOST_REASONS = frozenset({"ambiguous-host", "unjudgeable", "unguarded-child"})
#: Reasons of a request to a documented host that broke one of its destination's other
#: constraints: the host is documented, the request is a violation.
NEAR_MISS_REASONS = frozenset({"scheme", "port", "method", "path"})
#: Requests shown for each group of violations (``-v``: all of them).
EXAMPLES = 3
#: Tests named inline for each destination contacted (``-v``: all of them).
TESTS_SHOWN = 3
ELLIPSIS = "..."


class DestinationUse(Value):
    """How often a documented destination was contacted, and by which tests."""

    __slots__ = _fields = ("destination", "count", "tests")

    def __init__(self, destination: Destination, count: int, tests: tuple[str, ...]) -> None:
        self.destination: Final = destination
        self.count: Final = count
        self.tests: Final = tests


def blocked(record: OutboundRequest, mode: str) -> bool:
    """Whether ``record`` was blocked: in enforce, every violation is."""
    return mode == ENFORCE and record.verdict == VIOLATION


def destination_uses(
    destinations: Sequence[Destination], records: Sequence[OutboundRequest], *, mode: str
) -> list[DestinationUse]:
    """Each destination with the requests that reached it: a blocked request (enforce) did
    not, so it neither counts as contacted nor exercises the destination."""
    counts: Counter[str] = Counter()
    tests: dict[str, dict[str, None]] = {}
    for r in records:
        if r.destination is not None and not blocked(r, mode):
            counts[r.destination] += 1
            if r.nodeid:
                tests.setdefault(r.destination, {})[r.nodeid] = None
    return [DestinationUse(d, counts[d.name], tuple(tests.get(d.name, {}))) for d in destinations]


def mark_allowed_in_tests(
    records: Iterable[OutboundRequest], session_allowed: Sequence[str]
) -> None:
    """Set ``allowed_by = "test"`` on each allowed request that no documented destination and
    no session-wide pattern (ini ``outbound_allow``, a policy's ``allow``) admitted: a test's
    marker or fixture did. Such hosts are "allowed in tests", not undocumented."""
    patterns = []
    for text in session_allowed:
        try:
            patterns.append(HostPattern.parse(text))
        except HostError:
            continue
    for r in records:
        if r.destination is not None or r.verdict == VIOLATION or r.client == CHILD:
            continue
        if r.allowed_by:
            continue
        peer = _peer(r)
        if peer is None:
            continue
        host_only = r.client == DNS
        if not any(p.matches_host(peer) if host_only else p.matches(peer) for p in patterns):
            r.allowed_by = IN_TEST


def _peer(record: OutboundRequest) -> Peer | None:
    if record.peer is not None:
        return record.peer
    try:
        return peer_from_url(record.url)
    except (HostError, ValueError):
        return None


def has_host(record: OutboundRequest) -> bool:
    """Whether the record names a real host (not a child process, not a URL whose host is
    ambiguous or invalid: ``http:///x``, ``127.0.0.1:123456``)."""
    return (
        bool(record.host) and record.client != CHILD and NO_HOST_REASONS.isdisjoint(record.reasons)
    )


def undocumented_hosts(records: Iterable[OutboundRequest]) -> Counter[str]:
    """Hosts contacted (or tried) outside any documented destination, with their counts; not
    those a test's marker or fixture allowed (``allowed_hosts``), nor a documented host that a
    request reached with another scheme, port, method or path (a violation all the same)."""
    return Counter(
        r.host
        for r in records
        if r.destination is None
        and r.allowed_by != IN_TEST
        and has_host(r)
        and NEAR_MISS_REASONS.isdisjoint(r.reasons)
    )


def allowed_hosts(records: Iterable[OutboundRequest]) -> Counter[str]:
    """Hosts a test's marker or fixture allowed (``mark_allowed_in_tests``), with counts."""
    return Counter(r.host for r in records if r.allowed_by == IN_TEST and has_host(r))


def summary_lines(
    mode: str,
    destinations: Sequence[Destination],
    records: Sequence[OutboundRequest],
    *,
    verbose: bool = False,
    width: int | None = None,
    mask: Callable[[str], str] | None = None,
    session_allowed: Sequence[str] | None = None,
) -> list[str]:
    """The lines of the ``outbound`` section, stable for the same input: masked by ``mask``,
    then fitted to ``width`` (None: as long as they are). ``session_allowed``: the session-wide
    allowed host patterns (``mark_allowed_in_tests``)."""
    if session_allowed is not None:
        mark_allowed_in_tests(records, session_allowed)
    violations = [r for r in records if r.verdict == VIOLATION]
    uses = destination_uses(destinations, records, mode=mode)
    exercised = [u for u in uses if u.count]
    lines = [f"mode: {mode}; {len(records)} outbound request(s), {len(violations)} violation(s)"]
    if uses:
        lines.append(coverage_sentence(len(exercised), len(uses)))
    if exercised:
        lines.append("destinations contacted:")
        for u in exercised:
            tests = _shorten_list(u.tests, len(u.tests) if verbose else TESTS_SHOWN)
            lines.append(
                f"  {u.destination.name} ({', '.join(u.destination.hosts)}):"
                f" {u.count} request(s) in {len(u.tests)} test(s){tests}"
            )
    if violations:
        lines.append("violations:")
        lines.extend(violation_lines(violations, verbose=verbose))
    undocumented = undocumented_hosts(records)
    if undocumented:
        lines.append("undocumented hosts:")
        lines.extend(f"  {host} ({n} request(s))" for host, n in sorted(undocumented.items()))
    allowed = allowed_hosts(records)
    if allowed:
        lines.append("allowed in tests (by an outbound_allow marker or outbound.allow):")
        lines.extend(f"  {host} ({n} request(s))" for host, n in sorted(allowed.items()))
    unexercised = [u for u in uses if not u.count]
    if unexercised:
        lines.append("documented destinations no test exercised:")
        lines.extend(
            f"  {u.destination.name} ({', '.join(u.destination.hosts)})" for u in unexercised
        )
    if mask is not None:
        lines = [mask(line) for line in lines]
    return fit_lines(lines, width)


def violation_lines(violations: Sequence[OutboundRequest], *, verbose: bool = False) -> list[str]:
    """Violations grouped by host and reasons, the largest group first: a line for the group
    (requests, tests), then its first ``EXAMPLES`` distinct requests (method, URL, client, call
    site), each on one line with the first test that made it, how many more did, and how many
    times it was made (``verbose``: every request and test)."""
    groups: dict[tuple[str, tuple[str, ...]], list[OutboundRequest]] = {}
    for r in violations:
        groups.setdefault((host_label(r), tuple(r.reasons)), []).append(r)
    ordered = sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))
    lines = []
    for (label, reasons), members in ordered:
        lines.append(
            f"  {label}: {', '.join(reasons) or 'violation'}: {_counted(members, 'request(s)')}"
        )
        examples: dict[tuple[str, str, str, str, str], list[OutboundRequest]] = {}
        for r in members:
            examples.setdefault((r.method, r.url, r.client, r.location, r.via), []).append(r)
        shown = list(examples.items()) if verbose else list(examples.items())[:EXAMPLES]
        for (method, url, client, location, via), made in shown:
            where = _where(made, verbose=verbose)
            at = f" at {location}" if location else ""
            through = f" (via {via})" if via else ""
            times = f" ({len(made)} times)" if len(made) > 1 else ""
            lines.append(f"    {where}{at}{through}: {method} {url} [{client}]{times}")
        rest = len(members) - sum(len(made) for _, made in shown)
        if rest:
            lines.append(f"    ... and {rest} more request(s) (-v lists them)")
    return lines


def _counted(records: Sequence[OutboundRequest], noun: str) -> str:
    """``5 request(s) in 2 test(s)``, ``1 request(s) outside any test``, or
    ``6 request(s): 5 in 2 test(s), 1 outside any test``."""
    tests = dict.fromkeys(r.nodeid for r in records if r.nodeid)
    outside = sum(1 for r in records if not r.nodeid)
    if not outside:
        return f"{len(records)} {noun} in {len(tests)} test(s)"
    if not tests:
        return f"{len(records)} {noun} outside any test"
    inside = len(records) - outside
    return f"{len(records)} {noun}: {inside} in {len(tests)} test(s), {outside} outside any test"


def _where(made: Sequence[OutboundRequest], *, verbose: bool) -> str:
    """The tests (or ``<phase>`` outside any) that made a request: the first, and how many
    more (``verbose``: all of them)."""
    names = list(dict.fromkeys(r.nodeid or f"<{r.phase}>" for r in made))
    if verbose or len(names) == 1:
        return ", ".join(names)
    return f"{names[0]} and {len(names) - 1} more"


def host_label(record: OutboundRequest) -> str:
    if record.client == CHILD:
        return "child processes"
    return record.host if has_host(record) else "(no valid host)"


def fit_lines(lines: Iterable[str], width: int | None) -> list[str]:
    """Each line as it is when it fits ``width``; else wrapped at spaces, continued four
    spaces deeper than it starts, and a word longer than a whole line (a URL) cut in the
    middle with ``...``."""
    out: list[str] = []
    for line in lines:
        if width is None or len(line) <= width:
            out.append(line)
            continue
        indent = len(line) - len(line.lstrip(" "))
        out.extend(_wrap(line[indent:], width, " " * indent, " " * min(indent + 4, width // 2)))
    return out


#: A word that fits no line is cut to end the line it would have followed, if this much room
#: is left there: ``at`` and ``in`` stay with what they name.
_MIN_CUT_ROOM = 16


def _wrap(text: str, width: int, first: str, rest: str) -> list[str]:
    out: list[str] = []
    current = ""
    prefix = first
    for word in text.split(" "):
        candidate = f"{current} {word}" if current else word
        if len(prefix) + len(candidate) <= width or not current:
            current = candidate
            if len(prefix) + len(current) > width:  # one word longer than the line
                current = _cut(current, width - len(prefix))
            continue
        room = width - len(prefix) - len(current) - 1
        if len(rest) + len(word) > width and room >= _MIN_CUT_ROOM:
            out.append(f"{prefix}{current} {_cut(word, room)}")  # cut either way: cut here
            prefix, current = rest, ""
            continue
        out.append(prefix + current)
        prefix = rest
        current = word if len(rest) + len(word) <= width else _cut(word, width - len(rest))
    if current:
        out.append(prefix + current)
    return out


def _cut(word: str, room: int) -> str:
    """``word`` in ``room`` characters: its start and end, ``...`` between."""
    if len(word) <= room:
        return word
    if room <= len(ELLIPSIS) + 2:
        return word[: max(room, 1)]
    keep = room - len(ELLIPSIS)
    head = (keep + 1) // 2
    return f"{word[:head]}{ELLIPSIS}{word[len(word) - (keep - head) :]}"


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
