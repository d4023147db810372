"""``decide(request, context) -> Verdict``: the one judgement every interceptor calls.

Pure: a compiled policy (``Rules``) and a per-test ``Context`` (what markers and the fixture
permitted) in, a ``Verdict`` out. Reasons are short codes (``undocumented``, ``scheme``,
``outbound_none``, ``payload:extra:hostname``, ``sensitive:hostname``); ``detail`` holds the
sentence a person reads for each.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from types import ModuleType
from typing import Final

from pytest_outbound._errors import PolicyError
from pytest_outbound._hosts import (
    HostError,
    HostPattern,
    PatternIndex,
    Peer,
    default_port,
    peer_from_address,
)
from pytest_outbound._policy import Destination, Policy, compile_path_template, entry_pattern
from pytest_outbound._record import OutboundRequest
from pytest_outbound._sensitive import SensitiveScanner
from pytest_outbound._value import Value

#: The ``client`` of records made by the socket and DNS backstop.
SOCKET = "socket"
DNS = "dns"
#: The ``client`` of a record of a Python child process that cannot be guarded (``_children``).
CHILD = "child"
#: The ``client`` of records of the sandbox's gateway (``_sandbox``): its tunnels are judged
#: as socket connections are, its plain HTTP requests as any client's.
GATEWAY = "gateway"
#: The entry that means any destination: a test's "allow anything" (SPEC §4).
ANY = "*"
#: The reason recorded on a request that only ``"*"`` let through (verdict ``allowed``):
#: no destination and no host pattern admits it.
ALLOW_ANY = "allow-any"


class Verdict(Value):
    """What ``decide`` found: allowed or not, the destination, and why not."""

    __slots__ = _fields = ("allowed", "destination", "reasons", "detail", "closest")
    allowed: Final[bool]
    destination: Final[str | None]
    reasons: Final[tuple[str, ...]]
    detail: Final[tuple[str, ...]]
    #: The documented destination that almost matched (host did, scheme/port/... did not).
    closest: Final[str | None]

    def __init__(
        self,
        allowed: bool,
        destination: str | None,
        reasons: tuple[str, ...] = (),
        detail: tuple[str, ...] = (),
        closest: str | None = None,
    ) -> None:
        self.allowed = allowed
        self.destination = destination
        self.reasons = reasons
        self.detail = detail
        self.closest = closest


class Rules:
    """A ``Policy`` compiled for fast lookups: host pattern index -> destinations.

    ``scanner`` holds the values that must never leave the machine (SPEC §5.3).
    """

    def __init__(self, policy: Policy, scanner: SensitiveScanner | None = None) -> None:
        self.policy = policy
        self.scanner = scanner if scanner else None
        self.by_name = {d.name: d for d in policy.destinations}
        self.index: PatternIndex[Destination] = PatternIndex()
        for dest in policy.destinations:
            for text in dest.hosts:
                self.index.add(HostPattern.parse(text), dest)

    def candidates(self, peer: Peer, *, host_only: bool = False) -> list[Destination]:
        """Destinations whose hosts match ``peer``, in policy order, each once.

        ``host_only``: ignore the patterns' schemes and ports (a DNS lookup has neither).
        """
        found = self.index.lookup(peer, host_only=host_only)
        if len(found) <= 1:
            return found
        # The index returns matches in policy order; a destination with two matching host
        # patterns appears twice.
        first: dict[str, Destination] = {}
        for dest in found:
            first.setdefault(dest.name, dest)
        return list(first.values())


class Entry(Value):
    """A marker/fixture entry: a destination name, a host pattern, or ``"*"``, any destination
    (neither a destination nor a pattern) (SPEC §4)."""

    __slots__ = _fields = ("text", "destination", "pattern")
    text: Final[str]
    destination: Final[str | None]
    pattern: Final[HostPattern | None]

    def __init__(
        self, text: str, destination: str | None = None, pattern: HostPattern | None = None
    ) -> None:
        self.text = text
        self.destination = destination
        self.pattern = pattern

    def covers(self, request: OutboundRequest) -> bool:
        """Whether ``request`` went to this entry (for ``to``, ``assert_contacted``, expect)."""
        if self.destination is not None:
            return request.destination == self.destination
        if self.pattern is None:
            return self.text == ANY
        return request.peer is not None and self.pattern.matches(request.peer)

    @property
    def is_any(self) -> bool:
        """Whether this is ``"*"``: any destination."""
        return self.text == ANY and self.pattern is None and self.destination is None


def resolve_entry(text: object, rules: Rules, where: str) -> Entry:
    """A string equal to a destination's name means that destination; ``"*"`` any
    destination; else a host pattern that could be a real destination (``entry_pattern``:
    an IP, a CIDR, ``localhost``, a name with a dot, ``intranet.``). Anything else is a
    ``PolicyError`` that starts with ``where`` and names the closest destination."""
    if not isinstance(text, str):
        raise PolicyError(
            f"{where}: entry {text!r} must be a destination name or a host pattern (or '*')"
        )
    if text in rules.by_name:
        return Entry(text, destination=text)
    if text == ANY:
        return Entry(text)
    try:
        return Entry(text, pattern=entry_pattern(text, rules.by_name))
    except ValueError as exc:
        raise PolicyError(f"{where}: {exc}") from None


class Context(Value):
    """What one test may contact: the documented rules narrowed by markers and widened by allows.

    ``restriction`` is ``None`` (the policy), ``"only"`` (just ``only_entries``) or ``"none"``.
    ``allow_entries`` are added on top in every case. Equal by these five parts, not by what
    it has worked out and keeps.
    """

    _fields = ("rules", "restriction", "only_entries", "allow_entries", "restriction_source")
    __slots__ = (*_fields, "_any", "_judgements", "_names", "_patterns", "_verdicts")
    rules: Final[Rules]
    restriction: Final[str | None]
    only_entries: Final[tuple[Entry, ...]]
    allow_entries: Final[tuple[Entry, ...]]
    restriction_source: Final[str]

    def __init__(
        self,
        rules: Rules,
        restriction: str | None = None,
        only_entries: tuple[Entry, ...] = (),
        allow_entries: tuple[Entry, ...] = (),
        restriction_source: str = "",
    ) -> None:
        self.rules = rules
        self.restriction = restriction
        self.only_entries = only_entries
        self.allow_entries = allow_entries
        self.restriction_source = restriction_source
        #: ``_judge_destination``'s verdicts, by what it reads of a request (``_destination``).
        self._verdicts: dict[tuple[object, ...], tuple[Peer, Verdict]] = {}
        #: ``decide``'s judgements of HTTP requests, by their content (``_content_key``).
        self._judgements: dict[tuple[object, ...], _Judgement] = {}
        self._patterns: PatternIndex[str] = PatternIndex()
        permitted: list[Entry] = list(allow_entries)
        if restriction == "only":
            permitted.extend(only_entries)
        #: ``"*"`` is among them: any destination (after what the policy and patterns admit).
        self._any: Final[bool] = any(e.is_any for e in permitted)
        self._names: Final[frozenset[str] | None] = (
            None  # every documented destination
            if restriction is None or self._any
            else frozenset(e.destination for e in permitted if e.destination is not None)
        )
        if restriction is None:
            for text in rules.policy.allowed:
                self._patterns.add(HostPattern.parse(text), text)
        for e in permitted:
            if e.pattern is not None:
                self._patterns.add(e.pattern, e.text)

    def with_allowed(self, entries: Iterable[Entry]) -> Context:
        return Context(
            self.rules,
            self.restriction,
            self.only_entries,
            self.allow_entries + tuple(entries),
            self.restriction_source,
        )

    def permits(self, name: str) -> bool:
        return self._names is None or name in self._names

    def pattern_allows(self, peer: Peer, *, host_only: bool = False) -> bool:
        if not len(self._patterns):
            return False
        return bool(self._patterns.lookup(peer, host_only=host_only))


def decide(
    request: OutboundRequest,
    context: Context,
    *,
    history: Mapping[str, float] | None = None,
) -> Verdict:
    """Judge one request against the test's context.

    Where it goes (host, scheme, port, method, path, markers), then what it carries (the
    destination's payload contract, this machine's sensitive values), then when (``min_interval``
    against ``history``: when each destination was last contacted, by the application's clock).
    Pure: the same inputs give the same verdict.
    """
    key = _content_key(request)
    if key is None:
        known = _judge_content(request, context)
    else:
        judgements = context._judgements
        known = judgements.get(key)  # type: ignore[assignment]
        if known is None:
            known = _judge_content(request, context)
            if len(judgements) >= _JUDGEMENTS_LIMIT:
                judgements.clear()
            judgements[key] = known
        elif known.dest is not None:  # what judging it afresh would have left on the record
            request.templates = known.dest.paths
        # (Its fields are not: a record's fields are its own, extracted again if asked for.)
    if known.interval and history:
        return _with_interval(known, request, history)
    return known.verdict


class _Judgement:
    """What a request's content earns it in one context: everything but ``min_interval``,
    which depends on when the destination was last contacted. (A plain class: defining a
    dataclass costs every pytest start-up a third of a millisecond.)"""

    __slots__ = ("dest", "interval", "split", "split_detail", "verdict")

    def __init__(
        self, verdict: Verdict, dest: Destination | None, split: int, split_detail: int
    ) -> None:
        self.verdict = verdict
        self.dest = dest
        #: The destination's ``min_interval`` in seconds (0: none to check).
        self.interval = (dest.min_interval_seconds if dest is not None else None) or 0.0
        #: Where ``min_interval``'s reason goes among the reasons and details: after the
        #: destination's and the payload's, before the sensitive values'.
        self.split = split
        self.split_detail = split_detail


#: Judgements kept per context (``decide``); more distinct requests start the memo afresh.
_JUDGEMENTS_LIMIT = 4096
#: Requests with bodies up to this size are remembered (a larger one is seldom sent twice).
_JUDGEMENT_BODY_SIZE = 4096
_JUDGEMENT_URL_SIZE = 2048


def _content_key(request: OutboundRequest) -> tuple[object, ...] | None:
    """Everything ``_judge_content`` reads of an HTTP request, or None when it is not kept.

    The record's scheme, host, port, path, query and peer are all made from its URL alone
    (``build_request``), so the URL stands for them; the headers and the whole body are what
    the payload contract and the sensitive scan read. Socket and DNS records are not kept:
    their peer comes from an address, not from the URL (and only they are ever offline or
    carry resolved names)."""
    client = request.client
    if (
        client in (SOCKET, DNS, CHILD)
        or request.offline
        or request.resolved_names
        or request.streamed
    ):
        return None
    url = request.url
    body = request.full_body
    if (
        url.__class__ is not str
        or len(url) > _JUDGEMENT_URL_SIZE
        or body.__class__ is not bytes
        or len(body) > _JUDGEMENT_BODY_SIZE
        or request.templates
    ):
        return None
    key = request._headers_key  # names and values apart: two tuples, not one per header
    if key is None:
        headers = request.headers
        key = (tuple(headers), tuple(headers.values()))  # ``headers_key``, inline
    return (client, request.method, url, key, body)


def _judge_content(request: OutboundRequest, context: Context) -> _Judgement:
    """Where the request goes and what it carries (``decide`` without ``min_interval``)."""
    verdict = _destination(request, context)
    if not verdict.allowed and request.resolved_names:
        verdict = _judge_by_resolved_name(request, context, verdict)
    if request.offline:
        return _Judgement(_offline(request, verdict), None, 0, 0)
    dest = context.rules.by_name.get(verdict.destination) if verdict.destination else None
    reasons: list[str] = []
    detail: list[str] = []
    if dest is not None:
        request.templates = dest.paths
        # A lookup, a connection or a child's command line carries no fields: the contract is
        # the HTTP request's (judged where it is made); a streamed body, once it has passed.
        if (
            dest.payload is not None
            and not request.streamed
            and request.client not in (SOCKET, DNS, CHILD)
        ):
            contract = _contract_module()
            fields = request.field_values()
            breaches = contract.check_payload(dest.payload, fields)
            if breaches:
                reasons.extend(contract.breach_reason(b) for b in breaches)
                detail.append(
                    contract.format_contract_diff(dest.payload, fields, breaches, name=dest.name)
                )
    # An allowed verdict's reasons say why it was allowed (``allow-any``): not a violation's.
    base, base_detail = ((), ()) if verdict.allowed else (verdict.reasons, verdict.detail)
    split, split_detail = len(base) + len(reasons), len(base_detail) + len(detail)
    scanner = context.rules.scanner
    if scanner is not None and request.client != CHILD:  # a command line is not sent anywhere
        for hit in scanner.scan(
            url=request.url, headers=request.headers.items(), body=request.full_body
        ):
            reasons.append(f"sensitive:{hit.kind}")
            detail.append(
                f"carries {_sensitive_words(hit.kind)} ({hit.redacted}) in {hit.where}"
                f"{'' if hit.encoding == 'raw' else f' ({hit.encoding})'}; it must never leave"
            )
    if reasons:
        verdict = Verdict(
            False,
            verdict.destination,
            base + tuple(reasons),
            base_detail + tuple(detail),
            verdict.closest,
        )
    return _Judgement(verdict, dest, split, split_detail)


def _sensitive_words(kind: str) -> str:
    """What a sensitive value is, in words: this machine's own, or a value named sensitive."""
    if kind == "configured":
        return "a value outbound_sensitive names"
    if kind in ("hostname", "fqdn", "user", "home", "ip", "mac"):
        return f"this machine's {kind}"
    return f"a sensitive value ({kind})"


@functools.cache
def _contract_module() -> ModuleType:
    """The contract module, imported at the first contract check: a suite with no contract
    never loads it (start-up). Cached: an ``import`` statement in the function that checks
    every request would run importlib's from-list handling each time."""
    from pytest_outbound import _contract

    return _contract


def _with_interval(
    known: _Judgement, request: OutboundRequest, history: Mapping[str, float] | None
) -> Verdict:
    """``known``'s verdict, and ``min_interval``'s reason if the destination was contacted too
    recently (by ``history``, at ``request.time``)."""
    dest = known.dest
    interval = known.interval
    if dest is None or not interval or not history:
        return known.verdict
    last = history.get(dest.name)
    if last is None or request.time - last >= interval:
        return known.verdict
    verdict = known.verdict
    reasons, detail = verdict.reasons, verdict.detail
    text = (
        f"destination {dest.name!r} was contacted {_ago(request.time - last)} ago;"
        f" its min_interval is {dest.min_interval}"
    )
    return Verdict(
        False,
        verdict.destination,
        (*reasons[: known.split], "interval", *reasons[known.split :]),
        (*detail[: known.split_detail], text, *detail[known.split_detail :]),
        verdict.closest,
    )


def _judge_by_resolved_name(
    request: OutboundRequest, context: Context, by_address: Verdict
) -> Verdict:
    """A connection to an address is allowed if an allowed name was resolved to it here."""
    for name in request.resolved_names:
        try:
            peer = peer_from_address(name, request.port)
        except HostError:
            continue
        verdict = _judge_destination(dataclasses.replace(request, peer=peer), context)
        if verdict.allowed:
            return verdict
    names = ", ".join(request.resolved_names)
    return Verdict(
        False,
        None,
        by_address.reasons,
        (
            f"{by_address.detail[0] if by_address.detail else 'not documented'}; it was"
            f" resolved here from {names}, which is not allowed either",
        ),
    )


def _offline(request: OutboundRequest, verdict: Verdict) -> Verdict:
    """Offline mode: no real connection leaves, even to a documented destination."""
    if verdict.allowed or verdict.destination is not None:
        what = f"documented ({verdict.destination})" if verdict.destination else "allowed"
        detail = f"{request.host} is {what}, but offline: stub it, no real connection may leave"
    else:
        detail = f"offline: no real connection may leave, and {request.host} is not documented"
    reasons = () if verdict.allowed else verdict.reasons  # (``allow-any`` is no violation's)
    return Verdict(False, verdict.destination, ("offline", *reasons), (detail,))


def _ago(seconds: float) -> str:
    """``45s``, ``59m``, ``7h59m``: rounded down, so it never reads as the limit itself."""
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


#: Verdicts kept per context (``_destination``); more distinct requests start the cache afresh.
_VERDICTS_LIMIT = 4096


def _destination(request: OutboundRequest, context: Context) -> Verdict:
    """``_judge_destination``, remembered per context: a suite sends the same requests again
    and again. The verdict depends on the context (immutable) and on the request's peer, client,
    scheme, port, method and path alone, which make the key; the peer by identity (peers are
    shared per URL authority), kept alive beside the verdict so that its id is not reused."""
    peer = request.peer
    if peer is None:
        return _judge_destination(request, context)
    key = (id(peer), request.client, request.scheme, request.port, request.method, request.path)
    verdicts = context._verdicts
    known = verdicts.get(key)
    if known is not None and known[0] is peer:
        return known[1]
    verdict = _judge_destination(request, context)
    if len(verdicts) >= _VERDICTS_LIMIT:
        verdicts.clear()
    verdicts[key] = (peer, verdict)
    return verdict


def _judge_destination(request: OutboundRequest, context: Context) -> Verdict:
    """Where the request goes: documented, permitted by markers, or neither (and why)."""
    peer = request.peer
    if peer is None and request.client in (SOCKET, DNS):
        why = request.host_error or "the plugin cannot judge this address"
        return Verdict(False, None, ("unjudgeable",), (f"{why}: enforcement fails closed",))
    if peer is None and request.client == CHILD:
        why = request.host_error or "it cannot be guarded"
        command = request.url.removeprefix("child:")
        text = (
            f"a Python child process the plugin cannot guard ({command}): {why}; what it"
            " sends would not be judged, so enforcement fails closed"
        )
        return Verdict(False, None, ("unguarded-child",), (text,))
    if peer is None or request.host_error:  # (a local peer despite its port: R9)
        why = request.host_error or "the URL's host cannot be determined"
        return Verdict(
            False,
            None,
            ("ambiguous-host",),
            (
                f"ambiguous or invalid host: {why}; clients disagree on such URLs, so it is never"
                " allowed",
            ),
        )
    rules = context.rules
    full: Destination | None = None
    near: list[tuple[Destination, list[tuple[str, str]]]] = []
    host_only = request.client == DNS
    for dest in rules.candidates(peer, host_only=host_only):
        faults = _constraint_faults(dest, request)
        if faults:
            near.append((dest, faults))
            continue
        if full is None or (not context.permits(full.name) and context.permits(dest.name)):
            full = dest
            if context.permits(dest.name):
                break
    if full is None and not near and not host_only:
        # The host is documented, but only with another scheme or port in its pattern.
        for dest in rules.candidates(peer, host_only=True):
            faults = _pattern_faults(dest, peer)
            if faults:
                near.append((dest, faults))
    name = full.name if full is not None else None
    if full is not None and context.permits(full.name):
        return Verdict(True, name)
    if context.pattern_allows(peer, host_only=host_only):
        return Verdict(True, name)
    if context._any:
        return Verdict(True, name, (ALLOW_ANY,), ("any destination is allowed in this test ('*')",))
    # Not permitted: say why, most specific first.
    if context.restriction is not None and (full is not None or not near):
        marker = f"outbound_{context.restriction}"
        where = f" ({context.restriction_source})" if context.restriction_source else ""
        if context.restriction == "none":
            text = f"this test is marked {marker}{where}: nothing may be contacted"
        else:
            listed = ", ".join(e.text for e in context.only_entries) or "nothing"
            text = f"this test is marked {marker}{where}: only {listed} may be contacted"
        return Verdict(False, name, (marker,), (text,))
    if near:
        dest, faults = min(near, key=lambda pair: len(pair[1]))  # the closest documented one
        reasons = tuple(code for code, _ in faults)
        detail = tuple(f"destination {dest.name!r}: {text}" for _, text in faults)
        return Verdict(False, None, reasons, detail, dest.name)
    if request.client == DNS:
        return Verdict(
            False,
            None,
            ("dns",),
            (
                f"a name lookup of {peer.host!r}, which is not a documented host: looking a name"
                " up can itself carry data out (DNS exfiltration)",
            ),
        )
    return Verdict(
        False,
        None,
        ("undocumented",),
        (f"host {peer.host!r} is not a documented destination",),
    )


def _pattern_faults(dest: Destination, peer: Peer) -> list[tuple[str, str]]:
    """Why ``dest``'s host patterns that name this host still do not admit it."""
    for text in dest.hosts:
        pattern = HostPattern.parse(text)
        if not pattern.matches_host(peer):
            continue
        faults = []
        if pattern.scheme and pattern.scheme != peer.scheme:
            faults.append(("scheme", f"its host pattern {text!r} admits only {pattern.scheme}"))
        implied = bool(faults) and pattern.port == default_port(pattern.scheme)
        if pattern.port is not None and pattern.port != peer.port and not implied:
            faults.append(("port", f"its host pattern {text!r} admits only port {pattern.port}"))
        if faults:
            return faults
    return []


def _constraint_faults(dest: Destination, request: OutboundRequest) -> list[tuple[str, str]]:
    """What of ``dest`` the request does not keep. A name lookup is judged on its host alone;
    a raw socket connection, and the sandbox gateway's tunnel (``CONNECT``: what passes
    through it is not read), on host and port (it has no scheme, method or path)."""
    faults: list[tuple[str, str]] = []
    if request.client == DNS:
        return faults
    if request.client == SOCKET or (request.client == GATEWAY and request.method == "CONNECT"):
        if dest.ports and request.port not in dest.ports:
            ports = ", ".join(str(p) for p in dest.ports)
            faults.append(("port", f"port {request.port} is not documented ({ports})"))
        return faults
    if dest.schemes and request.scheme not in dest.schemes:
        faults.append(
            ("scheme", f"scheme {request.scheme!r} is not documented ({', '.join(dest.schemes)})")
        )
    if dest.ports and request.port not in dest.ports:
        ports = ", ".join(str(p) for p in dest.ports)
        faults.append(("port", f"port {request.port} is not documented ({ports})"))
    if dest.methods and request.method not in dest.methods:
        faults.append(
            ("method", f"method {request.method} is not documented ({', '.join(dest.methods)})")
        )
    if dest.paths and not any(path_matches(p, request.path) for p in dest.paths):
        faults.append(
            ("path", f"path {request.path!r} is not documented ({', '.join(dest.paths)})")
        )
    return faults


def path_matches(pattern: str, path: str) -> bool:
    """Path globs (``*`` one segment, ``**`` any) and templates (``/api/{version}/check``)."""
    return compile_path_template(pattern)[0].fullmatch(path) is not None


def documented_summary(rules: Rules, limit: int = 8) -> str:
    """``update-check (octopus.com), nuget (*.nuget.org), ...`` for messages."""
    items = [f"{d.name} ({', '.join(d.hosts)})" for d in rules.policy.destinations[:limit]]
    more = len(rules.policy.destinations) - limit
    if more > 0:
        items.append(f"and {more} more")
    return ", ".join(items) if items else "nothing is documented yet"


def suggest_name(host: str, taken: Sequence[str]) -> str:
    """A destination name for an undocumented host, e.g. ``analytics-example-com``."""
    base = re.sub(r"[^a-z0-9]+", "-", host.lower()).strip("-") or "destination"
    name, n = base, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    return name
