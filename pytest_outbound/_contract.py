"""Payload contracts (SPEC §5.2): does what a request carries fit what its destination admits.

Pure: stdlib only, no pytest, no patching. ``check_payload`` gives the breaches, ``breach_reason``
their short codes (``payload:extra:hostname``), ``format_contract_diff`` the text a person reads.
"""

from __future__ import annotations

import datetime
import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pytest_outbound._policy import Payload
from pytest_outbound._record import Fields

EXTRA = "extra"
MISSING = "missing"
MALFORMED = "malformed"
OPAQUE = "opaque"


@dataclass(frozen=True, slots=True)
class Breach:
    """One way a request does not fit its payload contract.

    ``kind`` is ``extra``, ``missing``, ``malformed`` or ``opaque``; ``field`` is "" for opaque;
    ``value`` is the (shortened) offending value, "" for missing; ``expected`` is the format
    name or regex a malformed value failed.
    """

    kind: str
    field: str
    value: str = ""
    expected: str = ""


# --- formats ----------------------------------------------------------------------------------

# Pattern texts, compiled on first use (``re`` keeps them): a session without a contract that
# names a format does not pay for compiling them at start-up.
_UUID_RE = r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}"
_INT_RE = r"[+-]?[0-9]+"

_NUM = r"(?:0|[1-9][0-9]*)"
_PRE_ID = r"(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)"
_BUILD_ID = r"[0-9A-Za-z-]+"
_SEMVER_RE = (
    rf"{_NUM}\.{_NUM}\.{_NUM}"
    rf"(?:-{_PRE_ID}(?:\.{_PRE_ID})*)?"
    rf"(?:\+{_BUILD_ID}(?:\.{_BUILD_ID})*)?"
)

_ISO8601_RE = (
    r"(?P<y>[0-9]{4})-(?P<mo>[0-9]{2})-(?P<d>[0-9]{2})"
    r"(?:[Tt](?P<h>[0-9]{2}):(?P<mi>[0-9]{2})(?::(?P<s>[0-9]{2})(?:[.,][0-9]+)?)?"
    r"(?:[Zz]|[+-](?P<oh>[0-9]{2})(?::?(?P<om>[0-9]{2}))?)?)?"
)


def _is_iso8601(value: str) -> bool:
    m = _compiled(_ISO8601_RE).fullmatch(value)
    if m is None:
        return False
    try:
        datetime.date(int(m["y"]), int(m["mo"]), int(m["d"]))
    except ValueError:
        return False
    if m["h"] is not None and (int(m["h"]) > 23 or int(m["mi"]) > 59):
        return False
    if m["s"] is not None and int(m["s"]) > 60:  # 60: a leap second
        return False
    return not (m["oh"] is not None and (int(m["oh"]) > 23 or int(m["om"] or 0) > 59))


#: Named formats: a pattern's text, or a check of its own.
_NAMED: dict[str, str | Callable[[str], bool]] = {
    "uuid": _UUID_RE,
    "semver": _SEMVER_RE,
    "int": _INT_RE,
    "iso8601": _is_iso8601,
}


@functools.lru_cache(maxsize=64)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


@functools.lru_cache(maxsize=1024)
def _matcher(spec: str) -> Callable[[str], bool]:
    """The check of one ``match`` spec, made once: ``re.fullmatch`` with a pattern's text
    would look the compiled pattern up in ``re``'s cache for every value checked."""
    named = _NAMED.get(spec, spec)
    if callable(named):
        return named
    fullmatch = _compiled(named).fullmatch
    return lambda v: fullmatch(v) is not None


def matches_format(spec: str, value: str) -> bool:
    """Whether ``value`` is of the named format (``uuid``, ``semver``, ``int``, ``iso8601``)
    or, for any other ``spec``, fully matches it as a regex. Raises ``re.error`` for a bad regex
    (``Payload`` rejects those when it is built)."""
    return _matcher(spec)(value)


# --- checking ---------------------------------------------------------------------------------


def shorten(value: str, limit: int = 40) -> str:
    """``value`` cut to at most ``limit`` characters, ending in ``…`` when cut."""
    if len(value) <= limit:
        return value
    return value[: max(limit - 1, 0)] + "…"


def check_payload(payload: Payload, fields: Fields) -> list[Breach]:
    """Every breach of ``payload`` by ``fields``: extra (sorted by field), missing (in the
    contract's ``required`` order), malformed (in ``match`` order, the first bad value of each
    field), then opaque."""
    values = fields.values
    breaches: list[Breach] = []
    if payload.fields is not None:
        allowed = payload.fields
        for name in sorted(n for n in values if n not in allowed):
            seen = values[name]
            breaches.append(Breach(EXTRA, name, shorten(seen[0]) if seen else ""))
    breaches.extend(Breach(MISSING, name) for name in payload.required if name not in values)
    for name, spec in payload.match.items():
        for value in values.get(name, ()):
            if not matches_format(spec, value):
                breaches.append(Breach(MALFORMED, name, shorten(value), spec))
                break
    if fields.opaque and not payload.opaque_body:
        breaches.append(Breach(OPAQUE, ""))
    return breaches


def breach_reason(b: Breach) -> str:
    """The short reason code: ``payload:extra:hostname``, ``payload:opaque``."""
    if b.kind == OPAQUE:
        return "payload:opaque"
    return f"payload:{b.kind}:{b.field}"


# --- the diff a person reads ------------------------------------------------------------------

_MIN_NAME_WIDTH = 14


def format_contract_diff(
    payload: Payload, fields: Fields, breaches: Sequence[Breach], *, name: str = ""
) -> str:
    """The request's fields against the contract, one line each, for a test failure::

        payload contract of 'update-check':
            version          = '2024.1.3'
          ! installationId   = 'abc'        does not match uuid
          + hostname         = 'build-01'   not in fields
        allowed fields: version, installationId

    Markers: two spaces for an allowed field present (shown in the contract's order, or for a
    contract without ``fields`` only those it requires or matches), ``!`` malformed, ``-``
    missing, ``+`` extra (after the contract's fields), and a last ``!`` line for an opaque body.
    """
    by_kind: dict[tuple[str, str], Breach] = {(b.kind, b.field): b for b in breaches}
    values = fields.values
    if payload.fields is not None:
        order = list(payload.fields)
    else:
        order = list(dict.fromkeys((*payload.required, *payload.match)))
    rows: list[tuple[str, str, str, str]] = []  # marker, field, "= 'value'", note
    for field_name in order:
        bad = by_kind.get((MALFORMED, field_name))
        if bad is not None:
            rows.append(("!", field_name, _shown(bad.value), f"does not match {bad.expected}"))
        elif (MISSING, field_name) in by_kind:
            rows.append(("-", field_name, "", "required, missing"))
        elif field_name in values:
            seen = values[field_name]
            spec = payload.match.get(field_name)
            rows.append((" ", field_name, _shown_all(seen), f"({spec})" if spec else ""))
    for b in breaches:
        if b.kind == EXTRA:
            seen = values.get(b.field, (b.value,) if b.value else ())
            rows.append(("+", b.field, _shown_all(seen), "not in fields"))
        elif b.kind in (MALFORMED, MISSING) and b.field not in order:
            note = "required, missing" if b.kind == MISSING else f"does not match {b.expected}"
            marker = "-" if b.kind == MISSING else "!"
            rows.append((marker, b.field, _shown(b.value) if b.value else "", note))
    if (OPAQUE, "") in by_kind:
        rows.append(
            ("!", "(body)", "", "cannot be parsed into fields; opaque_body = true admits it")
        )
    title = f"payload contract of {name!r}:" if name else "payload contract:"
    lines = [title]
    if rows:
        name_w = max(_MIN_NAME_WIDTH, *(len(r[1]) for r in rows))
        value_w = max(len(r[2]) for r in rows)
        for marker, field_name, shown, note in rows:
            line = f"  {marker} {field_name:<{name_w}}  {shown:<{value_w}}  {note}"
            lines.append(line.rstrip())
    else:
        lines.append("    (no fields)")
    if payload.fields is None:
        lines.append("allowed fields: any")
    else:
        lines.append(f"allowed fields: {', '.join(payload.fields) or '(none)'}")
    return "\n".join(lines)


def _shown(value: str) -> str:
    return f"= {shorten(value)!r}"


def _shown_all(seen: Sequence[str]) -> str:
    if not seen:
        return ""
    more = f" (+{len(seen) - 1} more)" if len(seen) > 1 else ""
    return _shown(seen[0]) + more
