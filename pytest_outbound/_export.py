"""Export: a policy as the allow-list of a CI runner's firewall (SPEC §8).

``python -m pytest_outbound export --format FORMAT POLICY...`` prints one entry per line on
stdout, ready to paste into the action's input, and says on stderr, as ``# ...`` comment
lines, what it left out and why (the inputs take no comments: bullfrog refuses a line that
is not a domain, harden-runner would read one as a name).

- ``harden-runner`` (step-security/harden-runner, ``allowed-endpoints``): ``host:port`` lines,
  names and ``*.`` wildcards only: the agent resolves every entry as a name, so an IP address
  or a network cannot be given. The port is the host pattern's, else the destination's
  ``ports``, else 443 for https (wss) and 80 for http (ws), both when the destination names no
  scheme. The agent splits the input on spaces: paste the lines under ``allowed-endpoints: >``
  (a folded block). It keeps only the first port of a wildcard, which is said.
- ``bullfrog`` (bullfrogsec/bullfrog, ``allowed-domains``): domain lines, ``*.example.com``
  as in the policy (it matches every name below ``example.com``, not ``example.com`` itself).
  Bullfrog has no ports or schemes: a domain is allowed on any port. IPv4 addresses and
  networks belong in its ``allowed-ips`` input and are listed on stderr for it; it takes no
  IPv6, and its domains are letters, digits, ``.``, ``-`` and ``*`` only.
- ``hosts``: every host pattern's host, one per line (``*.example.com``, ``203.0.113.7``,
  ``10.0.0.0/8``, ``2001:db8::1``), for anything else that takes a list of hosts.

Loopback names and addresses (``localhost``, ``127.0.0.1``) are not egress: the firewall
formats leave them out, saying so.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from pytest_outbound._hosts import HostPattern, Peer, default_port, is_local
from pytest_outbound._policy import Destination, Policy

FORMATS = ("harden-runner", "bullfrog", "hosts")

#: What bullfrog's action accepts in ``allowed-domains`` and ``allowed-ips`` (its inputs.ts).
_BULLFROG_DOMAIN = re.compile(r"^[A-Za-z0-9.\-*]+$")


@dataclass
class Exported:
    """The lines to print (stdout), and the comments on what was left out (stderr)."""

    lines: list[str] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)

    def add(self, line: str) -> None:
        if line not in self.lines:
            self.lines.append(line)

    def say(self, comment: str) -> None:
        text = f"# {comment}"
        if text not in self.comments:
            self.comments.append(text)


def export(policy: Policy, fmt: str) -> Exported:
    """``policy`` in ``fmt`` (one of ``FORMATS``)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    out = Exported()
    entries: list[tuple[str, Destination | None]] = [
        (text, dest) for dest in policy.destinations for text in dest.hosts
    ]
    entries += [(text, None) for text in policy.allowed]
    unported: list[str] = []
    for text, dest in entries:
        pattern = HostPattern.parse(text)
        where = f"destination {dest.name!r}" if dest is not None else "allow"
        host = f"*.{pattern.host}" if pattern.kind == "wildcard" else pattern.host
        if fmt == "hosts":
            out.add(host)
        elif _local(pattern):
            out.say(f"skipped {text} ({where}): loopback, not egress; the runner allows it")
        elif fmt == "harden-runner":
            _harden_runner(out, pattern, host, text, where, dest)
        elif _bullfrog(out, pattern, host, text, where) and (
            (pattern.port is not None and not pattern.scheme) or (dest and dest.ports)
        ):
            unported.append(text)
    if unported:
        out.say(
            "bullfrog allows a domain on every port: the ports documented for"
            f" {', '.join(unported)} are not carried over"
        )
    if fmt == "harden-runner":
        _first_port_only(out)
    return out


def _local(pattern: HostPattern) -> bool:
    if pattern.kind == "cidr":
        network = pattern.network
        return network is not None and (network.is_loopback or network.is_unspecified)
    if pattern.kind == "wildcard":
        return pattern.host == "localhost" or pattern.host.endswith(".localhost")
    return is_local(Peer("", pattern.host, None, pattern.ip))


def _harden_runner(
    out: Exported,
    pattern: HostPattern,
    host: str,
    text: str,
    where: str,
    dest: Destination | None,
) -> None:
    if pattern.kind in ("ip", "cidr"):
        out.say(
            f"skipped {text} ({where}): harden-runner's allowed-endpoints takes domain names"
            " (it resolves each one), not IP addresses or networks"
        )
        return
    for port in _ports(out, pattern, text, where, dest):
        out.add(f"{host}:{port}")


def _ports(
    out: Exported, pattern: HostPattern, text: str, where: str, dest: Destination | None
) -> list[int]:
    """The pattern's port; else the destination's ports; else its schemes' default ports;
    else 443 and 80."""
    if pattern.port is not None:
        return [pattern.port]
    if dest is not None and dest.ports:
        return list(dest.ports)
    schemes = [pattern.scheme] if pattern.scheme else list(dest.schemes if dest else ())
    if not schemes:
        return [443, 80]
    ports = []
    for scheme in schemes:
        port = default_port(scheme)
        if port is None:
            out.say(
                f"skipped {text} ({where}) for scheme {scheme!r}: it has no default port;"
                " give the destination ports = [...]"
            )
        elif port not in ports:
            ports.append(port)
    return sorted(ports, reverse=True)  # 443 before 80


def _first_port_only(out: Exported) -> None:
    """harden-runner keeps one port per wildcard (the first listed): say so where it matters."""
    ports: dict[str, list[str]] = {}
    for line in out.lines:
        host, _, port = line.rpartition(":")
        if host.startswith("*."):
            ports.setdefault(host, []).append(port)
    for host, listed in ports.items():
        if len(listed) > 1:
            out.say(
                f"harden-runner allows a wildcard on the first of its ports only: {host} on"
                f" {listed[0]} (not {', '.join(listed[1:])})"
            )


def _bullfrog(out: Exported, pattern: HostPattern, host: str, text: str, where: str) -> bool:
    """Add ``host`` to allowed-domains if bullfrog takes it there (True), else say why not."""
    if pattern.kind in ("ip", "cidr"):
        version = pattern.ip.version if pattern.ip is not None else None
        if pattern.network is not None:
            version = pattern.network.version
        if version == 4:
            out.say(f"for bullfrog's allowed-ips (not allowed-domains): {host} ({where})")
        else:
            out.say(f"skipped {text} ({where}): bullfrog's allowed-ips takes IPv4 only")
        return False
    if not _BULLFROG_DOMAIN.match(host):
        out.say(
            f"skipped {text} ({where}): bullfrog's allowed-domains takes letters, digits,"
            " '.', '-' and '*' only"
        )
        return False
    out.add(host)
    return True


def render(exported: Exported) -> tuple[str, str]:
    """(stdout, stderr) text."""
    return _text(exported.lines), _text(exported.comments)


def _text(lines: Iterable[str]) -> str:
    return "".join(f"{line}\n" for line in lines)
