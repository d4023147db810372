"""Learn: a draft policy from what a run observed (SPEC §8).

``pytest --outbound-learn PATH`` and ``python -m pytest_outbound init --from-report R -o PATH``
both come here with a report (the plugin builds the one it would write, so the two give the
same file, byte for byte, and the same under pytest-xdist, from the controller's merged
records).

What is learned: every request the run did not allow because of *where it went* (an
undocumented host, or a documented host with another scheme, port, method or path), and that
the file at PATH does not already admit, judged by ``decide`` with that file's ``Rules`` (so
"already documented" means what ``enforce`` would allow). One destination per service: each
host on its own, except that several subdomains of one registrable domain become one
``*.domain`` destination (``registrable_domain``: a small built-in rule, which does not group
when it is unsure). Each draft destination has the schemes and methods observed, the ports
when one of them is not its scheme's default, the observed fields as a commented payload
contract, and a comment naming the tests that made its requests.

What is not learned, and said instead (``Learned.notes``): child processes that could not be
guarded (``outbound_child_allow`` is their remedy), URLs whose host cannot be judged, requests
that broke a documented destination's contract or interval, carried a sensitive value, or were
refused by a test's own marker. A policy entry cannot admit any of those.

Socket and DNS records are learned like HTTP ones, from what they have: a name lookup gives a
host (no scheme, port or method: a lookup is judged on its host alone), a raw connection a host
and a port. Loopback traffic is recorded only under ``outbound_local = enforce``, and then it is
learned like anything else (it would be judged in enforce).

The file is only ever appended to: its text stays a byte-for-byte prefix, the whole new text is
parsed as a policy before anything is written, and it is written atomically.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_outbound._decide import CHILD, DNS, SOCKET, Context, Rules, decide, suggest_name
from pytest_outbound._errors import OutboundError, PolicyError
from pytest_outbound._hosts import HostError, Peer, default_port, peer_from_address
from pytest_outbound._policy import Policy
from pytest_outbound._record import EXPECTED_BLOCK, VIOLATION
from pytest_outbound._report import request_from_json, write_text_atomic

#: Reasons about where a request went: a new destination can admit it.
WHERE = frozenset({"undocumented", "dns", "scheme", "port", "method", "path"})
#: Reasons that say the host itself cannot be judged: nothing can admit it.
_UNJUDGEABLE = frozenset({"ambiguous-host", "unjudgeable", "unguarded-child"})
#: How many test ids a destination's comment names before "and N more".
TESTS_SHOWN = 3
#: How many grouped hosts the comment of a ``*.`` destination names.
HOSTS_SHOWN = 5

NEW_FILE_HEADER = (
    '# Outbound destinations for pytest-outbound (see its README, "Your first policy").\n'
    "# Drafted from a test run: review every entry before relying on it. Say what each one is\n"
    "# for (description, when), narrow its hosts, and uncomment a payload contract to pin what\n"
    "# its requests may carry.\n"
)
APPENDED_HEADER = "# Drafted by pytest-outbound from a test run: review before relying on it.\n"


class LearnError(OutboundError):
    """The draft cannot be written: the target or the report is not usable. One line."""


@dataclass
class Learned:
    """The outcome: the file's whole new text, what was added, and what was not learned."""

    text: str
    added: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: The file did not exist (or was empty) before.
    created: bool = False


# -- where a draft may go ------------------------------------------------------------------


def check_target(path: str | Path) -> None:
    """Fail early (before any test runs) if PATH cannot take a draft: a directory, a parent
    that is a file, or an existing file that is not a valid policy."""
    target = Path(path)
    if target.is_dir():
        raise LearnError(f"{path}: is a directory; give the policy file to write")
    for parent in target.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise LearnError(f"{path}: cannot write: {parent} is not a directory")
            break
    if target.exists():
        _read_policy(target, str(path))


def _read_policy(target: Path, source: str) -> tuple[str, Policy]:
    try:
        data = target.read_bytes()
    except OSError as exc:
        raise LearnError(f"{source}: cannot read: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LearnError(f"{source}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        policy = Policy.from_toml_text(text, source)
    except PolicyError as exc:
        raise LearnError(
            f"{exc}; fix it, or learn into another file (the draft is appended to it)"
        ) from None
    return text, policy


# -- the draft -----------------------------------------------------------------------------


def learn_into(path: str | Path, report: Mapping[str, Any]) -> Learned:
    """Append the draft of ``report``'s undocumented requests to the policy at ``path``
    (created if missing), atomically; nothing is written when nothing is missing."""
    source = str(path)
    target = Path(path)
    if target.is_symlink():  # write where it points, keeping the link
        target = target.resolve()
    check_target(target)
    existing: str | None = None
    policy = Policy()
    mode: int | None = None
    if target.exists():
        existing, policy = _read_policy(target, source)
        mode = stat.S_IMODE(target.stat().st_mode)
    learned = draft(report, existing, source, policy)
    if learned.added:
        try:
            write_text_atomic(target, learned.text)
            if mode is not None and stat.S_IMODE(target.stat().st_mode) != mode:
                os.chmod(target, mode)
        except OSError as exc:
            raise LearnError(f"{source}: cannot write: {exc.strerror or exc}") from None
    return learned


def draft(
    report: Mapping[str, Any],
    existing: str | None = None,
    source: str = "<policy>",
    policy: Policy | None = None,
) -> Learned:
    """The policy file's new text: ``existing`` (kept as it is) and the draft appended.

    ``policy`` is ``existing`` parsed (parsed here when not given). The new text is parsed
    again before it is returned: a ``LearnError`` if it is not a valid policy.
    """
    if policy is None:
        try:
            policy = Policy() if existing is None else Policy.from_toml_text(existing, source)
        except PolicyError as exc:
            raise LearnError(f"{exc}; fix it, or learn into another file") from None
    try:
        requests = list(report["requests"])
        known_names = [str(d["name"]) for d in report.get("destinations", ())]
    except (KeyError, TypeError) as exc:
        raise LearnError(f"not a pytest-outbound report: {exc}") from None
    found = _Findings()
    context = Context(Rules(policy))
    for data in requests:
        _classify(data, context, found)
    taken = {d.name for d in policy.destinations} | set(known_names)
    services = sorted(_services(found.hosts), key=lambda s: s.key)  # names: the same each run
    blocks: list[tuple[str, list[str]]] = []
    for service in services:
        name = suggest_name(service.key, sorted(taken))
        taken.add(name)
        blocks.append((name, _render(name, service, found)))
    blocks.sort()
    notes = found.notes()
    if blocks and report.get("mode") == "enforce" and found.hosts:
        notes.append(
            "learned from an enforce run: code stops at a blocked request, so what it would"
            " have sent next was not seen; a run in audit mode sees it all"
        )
    learned = Learned(
        text=existing or "",
        added=[name for name, _ in blocks],
        notes=notes,
        created=not (existing or "").strip(),
    )
    if not blocks:
        return learned
    newline = "\r\n" if existing and "\r\n" in existing else "\n"
    parts = [existing or ""]
    if existing and not existing.endswith(("\n", "\r")):
        parts.append(newline)
    if learned.created:
        parts.append(NEW_FILE_HEADER)
    else:
        parts.append("\n" + APPENDED_HEADER)
    for _, lines in blocks:
        parts.append("\n" + "".join(line + "\n" for line in lines))
    text = "".join(parts)
    if newline != "\n":
        prefix = existing or ""
        text = prefix + text[len(prefix) :].replace("\n", newline)
    try:
        Policy.from_toml_text(text, source)
    except PolicyError as exc:
        raise LearnError(f"{source}: cannot append the draft to this file: {exc.message}") from None
    learned.text = text
    return learned


@dataclass
class _Host:
    """What was seen of one host that needs documenting."""

    host: str
    is_name: bool
    records: list[Mapping[str, Any]] = field(default_factory=list)
    #: The destination of the existing file that almost admitted it (another port, ...).
    near: set[str] = field(default_factory=set)


@dataclass
class _Service:
    """One draft destination: a host, or several subdomains of one domain."""

    key: str
    patterns: list[str]
    hosts: list[_Host]


@dataclass
class _Findings:
    hosts: dict[str, _Host] = field(default_factory=dict)
    children: set[str] = field(default_factory=set)
    unjudgeable: int = 0
    contract: dict[str, int] = field(default_factory=dict)
    sensitive: int = 0
    marker: int = 0
    expected: int = 0
    offline: int = 0

    def notes(self) -> list[str]:
        out = []
        if self.children:
            out.append(
                f"not learned: {len(self.children)} child program(s) the plugin could not"
                f" guard ({', '.join(sorted(self.children)[:TESTS_SHOWN])}"
                f"{', ...' if len(self.children) > TESTS_SHOWN else ''}): a policy cannot admit"
                " them; name them in the ini option outbound_child_allow"
            )
        if self.unjudgeable:
            out.append(
                f"not learned: {self.unjudgeable} request(s) whose host cannot be judged"
                " (ambiguous URL or unreadable address): no entry can allow them"
            )
        for name in sorted(self.contract):
            out.append(
                f"not learned: {self.contract[name]} request(s) to documented destination"
                f" {name!r} broke its payload contract or min_interval: extend that"
                " destination by hand, or stop the code from sending it"
            )
        if self.sensitive:
            out.append(
                f"not learned: {self.sensitive} request(s) carried one of this machine's"
                " sensitive values: no policy admits that; stop the code from sending it"
            )
        if self.marker:
            out.append(
                f"not learned: {self.marker} request(s) refused by their test's own"
                " outbound_only/outbound_none marker"
            )
        if self.expected:
            out.append(
                f"not learned: {self.expected} request(s) a test expects to be blocked"
                " (outbound.expect_blocked)"
            )
        if self.offline:
            out.append(
                f"{self.offline} request(s) reached for the network under outbound_offline:"
                " a policy does not change that; stub them"
            )
        return out


def _classify(data: Mapping[str, Any], context: Context, found: _Findings) -> None:
    """File one report record: skipped (allowed, or nothing a policy entry can admit), noted,
    or a host to document."""
    if data.get("verdict") != VIOLATION:
        return  # allowed in the run: by a policy, an outbound_allow pattern or a marker
    client = str(data.get("client", ""))
    reasons = [str(r) for r in data.get("reasons", ())]
    codes = set(reasons)
    if EXPECTED_BLOCK in codes:
        found.expected += 1
        return
    if client == CHILD:
        command = str(data.get("url", "")).removeprefix("child:").strip().split(" ")[0]
        found.children.add(os.path.basename(command) or "?")
        return
    if codes & _UNJUDGEABLE:
        found.unjudgeable += 1
        return
    if any(r.startswith("sensitive:") for r in reasons):
        found.sensitive += 1
    if "offline" in codes:
        found.offline += 1
    if not codes & WHERE:
        if codes & {"outbound_only", "outbound_none"}:
            found.marker += 1
        elif data.get("destination") and any(
            r.startswith("payload") or r == "interval" for r in reasons
        ):
            name = str(data["destination"])
            found.contract[name] = found.contract.get(name, 0) + 1
        return
    peer = _peer(data)
    if peer is None:
        found.unjudgeable += 1
        return
    try:
        record = request_from_json(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise LearnError(f"a request of the report is not valid: {exc}") from None
    record.peer = peer
    verdict = decide(record, context)
    if verdict.allowed or verdict.destination is not None:
        return  # the file documents it already
    entry = found.hosts.get(peer.host)
    if entry is None:
        entry = found.hosts[peer.host] = _Host(peer.host, peer.ip is None)
    entry.records.append(data)
    if verdict.closest:
        entry.near.add(verdict.closest)


def _peer(data: Mapping[str, Any]) -> Peer | None:
    """The peer a record reached, as the plugin judged it (from the report's host, port and
    scheme: a socket or lookup record has no scheme, a lookup no port)."""
    host = data.get("host")
    port = data.get("port")
    scheme = str(data.get("scheme") or "")
    if not isinstance(host, str) or not host:
        return None
    if not (port is None or (isinstance(port, int) and not isinstance(port, bool))):
        return None
    try:
        return peer_from_address(host, port, scheme)
    except HostError:
        return None


# -- grouping ------------------------------------------------------------------------------


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


#: Second-level labels under which registries sell names (co.uk, com.au, gv.at, nom.es, ...):
#: a name below one is registered one label further down.
_SECOND_LEVEL = _words(
    "ac arts asso biz co com edu firm gen gob gouv gov govt gv ind info int ltd me mil ne"
    " net nhs nic nom nome or org plc police priv prd publ rec res store tm web"
)
#: Top-level domains whose names are registered directly below them (and, at most, below a
#: second-level label of ``_SECOND_LEVEL``). Another TLD is not known well enough to group
#: under: many have suffixes by region or trade (``tokyo.jp``, ``avocat.fr``, ``waw.pl``).
_FLAT_TLDS = _words(
    "com net org info biz io dev app ai xyz tech cloud online site page blog club pro"
    " shop store live link email news run tools systems software network services"
    " solutions studio space website zone media digital agency global group company"
    " security de nl ch dk fi be es cz ie at eu lu li ee lt lv sk si"
)
#: Zones whose subdomains belong to different owners (hosting and tunnel providers): never
#: grouped, since ``*.github.io`` would admit every GitHub Pages site.
SHARED_ZONES = _words(
    "github.io githubusercontent.com gitlab.io herokuapp.com herokudns.com appspot.com"
    " firebaseapp.com firebaseio.com web.app pages.dev workers.dev r2.dev netlify.app"
    " vercel.app now.sh fly.dev onrender.com railway.app azurewebsites.net"
    " azurestaticapps.net cloudapp.net cloudapp.azure.com azure-api.net azureedge.net"
    " windows.net trafficmanager.net cloudfront.net amazonaws.com elasticbeanstalk.com"
    " awsapprunner.com on.aws cloudfunctions.net run.app googleusercontent.com"
    " blogspot.com wordpress.com tumblr.com readthedocs.io ngrok.io ngrok.app"
    " ngrok-free.app trycloudflare.com glitch.me repl.co replit.dev surge.sh deno.dev"
    " digitaloceanspaces.com linodeobjects.com myshopify.com supabase.co hf.space"
    " streamlit.app modal.run"
)


def registrable_domain(host: str) -> str | None:
    """The domain a name was registered as (``api.example.co.uk`` -> ``example.co.uk``), or
    None when this small built-in rule is not sure (an unknown TLD, a hosting provider's
    shared zone). Where it errs it errs long (``a.hp.com`` -> ``a.hp.com``): a longer domain
    only groups fewer hosts, never hosts of two owners."""
    labels = host.split(".")
    if len(labels) < 2 or any(host == z or host.endswith("." + z) for z in SHARED_ZONES):
        return None
    tld, second = labels[-1], labels[-2]
    if tld not in _FLAT_TLDS:
        if len(tld) == 2 and second in _SECOND_LEVEL and len(labels) >= 3:
            return ".".join(labels[-3:])  # example.co.uk, example.com.au
        return None
    if second in _SECOND_LEVEL or len(second) <= 2:  # com.es, uk.com, a.se-like labels
        return ".".join(labels[-3:]) if len(labels) >= 3 else None
    return ".".join(labels[-2:])


def _services(hosts: Mapping[str, _Host]) -> list[_Service]:
    """One service per host, except several subdomains of one registrable domain: one."""
    by_domain: dict[str, list[_Host]] = {}
    for entry in hosts.values():
        domain = registrable_domain(entry.host) if entry.is_name else None
        if domain is not None:
            by_domain.setdefault(domain, []).append(entry)
    grouped: set[str] = set()
    services = []
    for domain, entries in by_domain.items():
        below = [e for e in entries if e.host != domain]
        if len(below) < 2:
            continue
        patterns = [domain] if len(below) < len(entries) else []
        patterns.append(f"*.{domain}")
        services.append(_Service(domain, patterns, sorted(entries, key=lambda e: e.host)))
        grouped.update(e.host for e in entries)
    for entry in hosts.values():
        if entry.host not in grouped:
            services.append(_Service(entry.host, [entry.host], [entry]))
    return services


# -- rendering -----------------------------------------------------------------------------


def _render(name: str, service: _Service, found: _Findings) -> list[str]:
    records = [r for e in service.hosts for r in e.records]
    http = [r for r in records if r.get("client") not in (SOCKET, DNS)]
    schemes = sorted({str(r["scheme"]).lower() for r in http if r.get("scheme")})
    methods = sorted({str(r["method"]).upper() for r in http if r.get("method")})
    ports = _ports(records, schemes)
    lines = [
        "[[destination]]",
        f"name = {toml_string(name)}",
        f"hosts = [{', '.join(toml_string(p) for p in service.patterns)}]",
        'description = "TODO: what these requests are for."',
        'when = "TODO: when the code makes them."',
    ]
    if schemes:
        lines.append(f"schemes = [{', '.join(toml_string(s) for s in schemes)}]")
    if ports:
        lines.append(f"ports = [{', '.join(str(p) for p in ports)}]")
    if methods:
        lines.append(f"methods = [{', '.join(toml_string(m) for m in methods)}]")
    if len(service.hosts) > 1:
        seen = [e.host for e in service.hosts]
        shown = ", ".join(seen[:HOSTS_SHOWN]) + (
            f" and {len(seen) - HOSTS_SHOWN} more" if len(seen) > HOSTS_SHOWN else ""
        )
        lines.append(f"# grouped: {shown} (subdomains of {service.key})")
    lines.append(f"# observed: {_observed(records)}")
    near = sorted({n for e in service.hosts for n in e.near})
    if near:
        lines.append(
            f"# near {', '.join(repr(n) for n in near)}, which admits this host but not all of"
            " these requests: extend that destination instead if they are the same thing"
        )
    only_lookups = all(r.get("client") == DNS for r in records)
    if only_lookups:
        lines.append("# only name lookups were seen (no connection through the plugin's clients)")
    fields = sorted({str(f) for r in http for f in r.get("fields", ())})
    if fields:
        common = set(http[0].get("fields", ()))
        for r in http[1:]:
            common &= set(r.get("fields", ()))
        lines.append("# [destination.payload]  # draft contract: the fields observed")
        lines.append(f"# fields = [{', '.join(toml_string(f) for f in fields)}]")
        if common:
            lines.append(
                f"# required = [{', '.join(toml_string(f) for f in sorted(map(str, common)))}]"
            )
    return [_one_line(line) for line in lines]


def _ports(records: Sequence[Mapping[str, Any]], schemes: Sequence[str]) -> list[int]:
    """The ports observed, when one is not the default of its request's scheme (a raw
    connection, which has no scheme: of any scheme observed); none when all are."""
    defaults = {default_port(s) for s in schemes}
    ports: set[int] = set()
    default_only = True
    for r in records:
        port = r.get("port")
        if r.get("client") == DNS or not isinstance(port, int) or isinstance(port, bool):
            continue
        ports.add(port)
        scheme = str(r.get("scheme") or "")
        if (default_port(scheme) == port) if scheme else (port in defaults):
            continue
        default_only = False
    return [] if default_only else sorted(ports)


def _observed(records: Sequence[Mapping[str, Any]]) -> str:
    """``3 requests in 2 tests: a.py::test_x, b.py::test_y`` (a few, then "and N more")."""
    tests = sorted({str(r["nodeid"]) for r in records if r.get("nodeid")})
    outside = sorted({str(r.get("phase") or "session") for r in records if not r.get("nodeid")})
    n = len(records)
    what = f"{n} request{'' if n == 1 else 's'}"
    names = [*tests, *(f"outside any test ({phase})" for phase in outside)]
    shown = ", ".join(names[:TESTS_SHOWN])
    if len(names) > TESTS_SHOWN:
        shown += f" and {len(names) - TESTS_SHOWN} more"
    if tests:
        return f"{what} in {len(tests)} test{'' if len(tests) == 1 else 's'}: {shown}"
    return f"{what} {shown}"


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _one_line(text: str) -> str:
    """A line of the draft never breaks into two (a test id may hold anything)."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def toml_string(text: str) -> str:
    """``text`` as a TOML basic string."""
    out = []
    for ch in text:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch < " " or ch == "\x7f":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


# -- what the plugin and the CLI say ---------------------------------------------------------


def summary_lines(path: str, learned: Learned) -> list[str]:
    """What to tell the user: what was written where, and what was not learned."""
    n = len(learned.added)
    if n:
        verb = "wrote" if learned.created else "added"
        names = ", ".join(learned.added)
        lines = [f"learned: {verb} {n} draft destination{'' if n == 1 else 's'} to {path}: {names}"]
    else:
        lines = [f"learned: nothing to add to {path}: every request is already allowed"]
    lines.extend(f"learned: {note}" for note in learned.notes)
    return lines
