"""The words a person reads when a request is blocked: what, from where, why, and the fix.

Every message ends with the exact TOML lines (or, for a policy a conftest's hook returns, the
``Destination(...)`` arguments) or marker that would make the request allowed on purpose, or says
what to change in the code when nothing should allow it. A sensitive value (SPEC §5.3) and a URL
password are shown masked, wherever in the message they stand.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from pytest_outbound._decide import Context, Rules, Verdict, documented_summary, suggest_name
from pytest_outbound._hosts import default_port, entry_for_host
from pytest_outbound._policy import Destination
from pytest_outbound._record import OutboundRequest
from pytest_outbound._sensitive import masker_of

_INDENT = "    "


def blocked_message(request: OutboundRequest, verdict: Verdict, context: Context) -> str:
    return masker_of(context.rules.scanner)(_blocked_text(request, verdict, context))


def _blocked_text(request: OutboundRequest, verdict: Verdict, context: Context) -> str:
    where = request.location or "unknown location"
    if request.via:
        where = f"{where} (via {request.via})"
    test = f" in {request.nodeid} [{request.phase}]" if request.nodeid else f" [{request.phase}]"
    lines = [
        f"outbound request blocked: {request.method} {request.url} (client: {request.client})",
        f"  from: {where}{test}",
    ]
    for text in verdict.detail:
        first, *rest = text.splitlines()
        lines.append(f"  why:  {first}")
        lines.extend(f"        {line}" for line in rest)
    rules = context.rules
    lines.append(f"  documented: {documented_summary(rules)}")
    lines.extend(_fixes(request, verdict, rules))
    return "\n".join(lines)


def sent_message(request: OutboundRequest, verdict: Verdict, context: Context) -> str:
    """``blocked_message`` for a streamed body judged once it had been sent: too late to stop
    it, so it fails the test instead."""
    rest = _blocked_text(request, verdict, context).partition("\n")[2]
    size = request.body_size
    return masker_of(context.rules.scanner)(
        f"outbound request sent a streamed body the policy does not admit:"
        f" {request.method} {request.url} (client: {request.client})\n"
        f"  sent: {size} byte{'' if size == 1 else 's'}, judged as they were sent (a stream"
        " cannot be judged before it is read, nor recalled after)\n"
        f"{rest}"
    )


def _fixes(request: OutboundRequest, verdict: Verdict, rules: Rules) -> list[str]:
    codes = set(verdict.reasons)
    unmarked = next((c.partition(":")[2] for c in codes if c.startswith("unmarked:")), "")
    if unmarked:
        return [
            f"  fix: mark the test @pytest.mark.{unmarked} if it is meant to reach the network,"
            " or answer the request with a mock"
        ]
    dest = rules.by_name.get(verdict.destination or verdict.closest or "")
    allow_marker = f'{_INDENT}@pytest.mark.outbound_allow("{entry_for_host(request.host)}")'
    if "ambiguous-host" in codes:
        return [
            "  fix: correct the URL; an ambiguous host cannot be documented"
            " because clients disagree on where it goes"
        ]
    if "unjudgeable" in codes:
        return [
            "  fix: connect with a socket of family AF_INET or AF_INET6 (stream or datagram) to"
            " an address given as (host, port) with a str host and an int port; what the"
            " plugin cannot read cannot be documented, so it is never allowed"
        ]
    if "unguarded-child" in codes:
        return [
            "  fix: let the child inherit what guards it (no -I, -E or -S; the environment the"
            " test run set, with PYTEST_OUTBOUND_CHILD and the bootstrap first on PYTHONPATH;"
            " outbound_subprocess on), or name the program in the ini option"
            " outbound_child_allow to let it run unguarded"
        ]
    out: list[str] = []
    if "offline" in codes:
        entry = verdict.destination or request.host
        return [
            "  offline mode (outbound_offline = true): answer it with a mock or a stub, e.g.:",
            f'{_INDENT}outbound.stub("{entry}", json={{...}})',
        ]
    if codes & {"outbound_none", "outbound_only"}:
        out += ["  to allow it in this test on purpose, add:", allow_marker]
    elif dest is not None and codes & {"scheme", "port", "method", "path"}:
        python = _from_hook(dest)
        out.append(f"  to document it, extend {_described(dest)}:")
        authority = request.host
        if request.port not in (None, default_port(request.scheme)):
            authority = f"{authority}:{request.port}"
        suggestions: dict[str, None] = {}  # ordered, each once
        for code, key, items in (
            ("scheme", "schemes", [*dest.schemes, request.scheme]),
            ("port", "ports", [*dest.ports, request.port]),
            ("method", "methods", [*dest.methods, request.method]),
            ("path", "paths", [*dest.paths, request.path]),
        ):
            if code not in codes:
                continue
            if code in ("scheme", "port") and not getattr(dest, key):
                # The host pattern itself carries the scheme or port: document another pattern.
                more = f"{request.scheme}://{authority}" if code == "scheme" else authority
                items = [*dest.hosts, more]
                key = "hosts"
            suggestions[_setting(key, items, python)] = None
        out.extend(suggestions)
    elif "undocumented" in codes:
        out += _new_destination(request.host, rules)
        out += ["  or allow it in this test only:", allow_marker]
    extra = sorted(c.split(":", 2)[2] for c in codes if c.startswith("payload:extra:"))
    if dest is not None and dest.payload is not None and dest.payload.fields is not None and extra:
        python = _from_hook(dest)
        what = f"the Payload of {_described(dest)}" if python else _described(dest)
        out.append(f"  if the documentation should admit it, extend {what}:")
        out.append(_setting("fields", [*dest.payload.fields, *extra], python))
        out.append("  otherwise stop the code from sending it")
    elif any(c.startswith("payload:") for c in codes):
        out.append("  fix: make the request carry what the contract says (or change the contract)")
    if any(c.startswith("sensitive:") for c in codes):
        out.append(
            "  fix: this machine's own data must not leave it; remove it from the request."
            " If the value is not secret, see outbound_sensitive_ignore in the README"
        )
    if "interval" in codes and dest is not None:
        out.append(
            f"  fix: wait at least {dest.min_interval} between requests to {dest.name!r},"
            " or change its min_interval"
        )
    return out


def _new_destination(host: str, rules: Rules) -> list[str]:
    """A new destination for ``host``: TOML lines for the policy file the rules came from, or,
    when a conftest's hook documents them and no file does, the ``Destination(...)`` for the
    hook to return."""
    files = [_file_of(d.source) for d in rules.policy if d.source]
    toml_file = next((f for f in files if not _is_python(f)), "")
    conftest = next((f for f in reversed(files) if _is_python(f)), "")
    name = suggest_name(host, list(rules.by_name))
    body: tuple[str, ...]
    if conftest and not toml_file:
        body = (
            "Destination(",
            f"    name={_quoted(name)},",
            f"    hosts=[{_quoted(host)}],",
            '    description="What this request is for.",',
            '    when="When the code makes it.",',
            "),",
        )
        return [
            f"  to document it, add to what pytest_outbound_destinations returns in {conftest}:",
            *(_INDENT + line for line in body),
        ]
    target = toml_file or "your policy file (ini option outbound_policy)"
    body = (
        "[[destination]]",
        f"name = {_quoted(name)}",
        f"hosts = [{_quoted(host)}]",
        'description = "What this request is for."',
        'when = "When the code makes it."',
    )
    return [f"  to document it, add to {target}:", *(_INDENT + line for line in body)]


def _from_hook(dest: Destination) -> bool:
    """Whether ``dest`` came from a conftest's ``pytest_outbound_destinations`` (Python)."""
    return _is_python(_file_of(dest.source))


def _is_python(path: str) -> bool:
    return path.endswith(".py")


def _described(dest: Destination) -> str:
    where = _file_of(dest.source)
    if _from_hook(dest):
        return f"Destination(name={_quoted(dest.name)}, ...) in {where}"
    return f"destination {dest.name!r} ({where})" if where else f"destination {dest.name!r}"


def _setting(key: str, items: Sequence[object], python: bool) -> str:
    """``key = [...]`` for a TOML table, ``key=[...],`` for a ``Destination``'s arguments."""
    if python:
        return f"{_INDENT}{key}={_toml_list(items)},"
    return f"{_INDENT}{key} = {_toml_list(items)}"


def _quoted(text: str) -> str:
    """A string literal both TOML and Python read back as ``text``."""
    return json.dumps(text, ensure_ascii=False)


def _file_of(source: str) -> str:
    path, sep, line = source.rpartition(":")
    return path if sep and line.isdigit() else source


def _toml_list(items: Sequence[object]) -> str:
    return "[" + ", ".join(str(i) if isinstance(i, int) else _quoted(str(i)) for i in items) + "]"
