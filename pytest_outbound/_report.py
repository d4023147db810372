"""The JSON report (SPEC §6, ``schema_version`` 1): build, write atomically, load, summarise.

Pure and stdlib only: the plugin builds the report from its records at the end of the session,
``python -m pytest_outbound report`` reads a saved one back. The shape is described by
``report.schema.json`` next to this module; ``load_report`` checks a file against it.

Credentials never reach the report: the values of the ``Authorization``,
``Proxy-Authorization`` and ``Cookie`` headers and a password in a URL's userinfo are replaced
by ``<redacted>`` (the header names stay, so the report still shows that they were sent). Given
a ``mask`` (the plugin's: ``SensitiveScanner.mask``), every text of the report, keys included,
has the sensitive values masked (SPEC §5.3).
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pytest_outbound._errors import OutboundError, PolicyError
from pytest_outbound._policy import Destination, Payload
from pytest_outbound._record import VIOLATION, Fields, OutboundRequest
from pytest_outbound._sensitive import REDACTED
from pytest_outbound._summary import (
    allowed_hosts,
    destination_uses,
    internal_error_lines,
    mark_allowed_in_tests,
    summary_lines,
    undocumented_hosts,
    unwatched_lines,
)

SCHEMA_VERSION = 1
_CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})


class ReportError(OutboundError):
    """A saved report cannot be used: unreadable, not JSON, or not schema_version 1."""

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(message, path)
        self.message = message
        self.path = path

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.message, self.path))


# -- building ------------------------------------------------------------------------------


def build_report(
    *,
    mode: str,
    destinations: Sequence[Destination],
    records: Sequence[OutboundRequest],
    workers: Mapping[str, str] | None = None,
    outside_blocked: int = 0,
    unwatched: Mapping[str, int] | None = None,
    internal_errors: Sequence[tuple[str, str]] = (),
    policy: Mapping[str, Any] | None = None,
    session_allowed: Sequence[str] | None = None,
    mask: Callable[[str], str] | None = None,
) -> dict[str, Any]:
    """The report as plain JSON data; the same input always gives the same JSON text.

    Destinations keep policy order and requests keep recorded order; everything else whose
    order carries no meaning (tests, undocumented hosts, workers) is sorted. ``unwatched``:
    child processes that ran unwatched, per program (the key is left out when there were
    none). ``internal_errors``: the plugin's own failures, (what it judged, the traceback).
    ``policy``: which policy judged the run and who ran it (``policy_digest``,
    ``environment``, ``conftest_destinations``: ``_merge``). ``session_allowed``: the
    session-wide allowed host patterns, to tell the hosts a test's marker or fixture allowed
    (``summary.allowed_hosts``) from undocumented ones (``_summary.mark_allowed_in_tests``;
    records read back from a report say so themselves). ``mask``: applied to every text.
    """
    if session_allowed is not None:
        mark_allowed_in_tests(records, session_allowed)
    uses = destination_uses(destinations, records, mode=mode)
    report: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "mode": mode,
        "destinations": [
            {**destination_json(u.destination), "contacted": u.count, "tests": sorted(u.tests)}
            for u in uses
        ],
        "requests": [request_json(r) for r in records],
        "summary": {
            "requests": len(records),
            "violations": sum(1 for r in records if r.verdict == VIOLATION),
            "undocumented_hosts": sorted(undocumented_hosts(records)),
            "allowed_hosts": sorted(allowed_hosts(records)),
            "unexercised_destinations": [u.destination.name for u in uses if not u.count],
            "exercised": sum(1 for u in uses if u.count),
            "documented": len(uses),
            "outside_blocked": outside_blocked,
        },
        "workers": {wid: (workers or {})[wid] for wid in sorted(workers or {})},
    }
    if policy:
        report.update(policy)
    if internal_errors:
        report["internal_errors"] = [{"what": w, "traceback": t} for w, t in internal_errors]
    if unwatched:
        report["unwatched_children"] = {name: unwatched[name] for name in sorted(unwatched)}
    return masked_json(report, mask) if mask is not None else report


def masked_json(value: Any, mask: Callable[[str], str]) -> Any:
    """``value`` (JSON data) with ``mask`` applied to every string in it, keys included."""
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, Mapping):
        return {masked_json(k, mask): masked_json(v, mask) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [masked_json(item, mask) for item in value]
    return value


def destination_json(dest: Destination) -> dict[str, Any]:
    """A destination's policy as JSON data (without the report's ``contacted``/``tests``)."""
    payload = dest.payload
    return {
        "name": dest.name,
        "hosts": list(dest.hosts),
        "description": dest.description,
        "when": dest.when,
        "group": dest.group,
        "schemes": list(dest.schemes),
        "ports": list(dest.ports),
        "methods": list(dest.methods),
        "paths": list(dest.paths),
        "min_interval": dest.min_interval,
        "payload": None
        if payload is None
        else {
            "fields": None if payload.fields is None else list(payload.fields),
            "required": list(payload.required),
            "match": {k: payload.match[k] for k in sorted(payload.match)},
            "opaque_body": payload.opaque_body,
        },
    }


def request_json(record: OutboundRequest) -> dict[str, Any]:
    """``record.to_json()`` with credentials redacted (see the module docstring)."""
    data = record.to_json()
    data["url"] = _redact_url(data["url"])
    # plain str: a client's own str subclass (aiohttp's ``istr``) is no JSON, and execnet
    # cannot send it from a pytest-xdist worker
    data["headers"] = {
        _plain(k): (REDACTED if k.lower() in _CREDENTIAL_HEADERS else _plain(v))
        for k, v in data["headers"].items()
    }
    if record.via:
        data["via"] = record.via
    if record.allowed_by:
        data["allowed_by"] = record.allowed_by
    return data


def portable_records(
    records: Sequence[OutboundRequest], mask: Callable[[str], str] | None = None
) -> list[dict[str, Any]]:
    """Records as data a pytest-xdist worker can send: built-in types only (a client's ``str``
    subclass, a ``dict`` subclass, anything else made plain), each on its own, so that one
    record that cannot be made plain is reported as such and costs nothing of the others.
    ``mask``: the worker's (it knows the sensitive values of every conftest it collected,
    which the controller, collecting nothing, may not)."""
    portable = []
    for record in records:
        try:
            portable.append(plain_json(request_json(record)))
        except Exception as exc:  # (a record is the plugin's own data: this should not happen)
            portable.append(
                plain_json(
                    {
                        **request_json(_unsendable(record)),
                        "reasons": [*record.reasons, f"unsendable: {type(exc).__name__}"],
                    }
                )
            )
    return portable if mask is None else masked_json(portable, mask)


def _unsendable(record: OutboundRequest) -> OutboundRequest:
    """What of a record can surely be sent: its method, URL, verdict and test."""
    return OutboundRequest(
        method=_plain(record.method),
        url=_plain(record.url),
        scheme="",
        host="",
        port=None,
        path="",
        query_text="",
        headers={},
        client=_plain(record.client),
        verdict=_plain(record.verdict),
        nodeid=_plain(record.nodeid),
        phase=_plain(record.phase),
    )


def plain_json(value: object) -> Any:
    """``value`` with every ``str``, ``int``, ``float``, ``list``, ``tuple`` and ``dict``
    subclass made its built-in type (what JSON and execnet send), anything else its text."""
    if value is None or value.__class__ in (str, int, float, bool):
        return value
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("latin-1")
    if isinstance(value, Mapping):
        return {plain_json(k): plain_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain_json(item) for item in value]
    return str(value)


def _plain(text: object) -> str:
    return str.__str__(text) if isinstance(text, str) else str(text)


def _redact_url(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:{REDACTED}@{hostport}"))


# -- writing and loading -------------------------------------------------------------------


def dumps_report(report: Mapping[str, Any]) -> str:
    """The report's JSON text: indented, UTF-8, ending with a newline. Strict JSON (no NaN)."""
    return json.dumps(report, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def write_report(path: str | Path, report: Mapping[str, Any]) -> None:
    """Write ``report`` to ``path`` atomically (see ``write_text_atomic``).

    The JSON text is built before the file system is touched, so data that cannot be serialised
    raises ``TypeError``/``ValueError`` and leaves any existing file as it was.
    """
    write_text_atomic(path, dumps_report(report))


def write_text_atomic(path: str | Path, text: str) -> None:
    """Replace ``path`` with ``text`` so readers see the old file or the whole new one.

    Writes a temporary file in the same directory, fsyncs it and ``os.replace``s it over
    ``path``; missing parent directories are created. The temporary file never outlives a
    failure. New files get the usual permissions (0o666 less the umask).
    """
    target = Path(path)
    data = text.encode("utf-8")
    target.parent.mkdir(parents=True, exist_ok=True)
    import secrets  # here: most runs write no report

    tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)


def _fsync_dir(directory: Path) -> None:
    """Make the rename durable where the platform allows it (best effort)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_report(path: str | Path) -> dict[str, Any]:
    """Read a saved report; ``ReportError`` names the file and what is wrong with it."""
    where = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ReportError("no such report file", where) from None
    except IsADirectoryError:
        raise ReportError("is a directory, not a report file", where) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ReportError(f"cannot read report: {reason}", where) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReportError(
            f"not valid JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}", where
        ) from None
    if not isinstance(data, dict):
        raise ReportError(
            f"not a pytest-outbound report: expected a JSON object, got {_json_type(data)}",
            where,
        )
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        found = "no schema_version" if "schema_version" not in data else f"{version!r}"
        raise ReportError(
            f"unsupported report schema_version ({found}); this pytest-outbound reads"
            f" schema_version {SCHEMA_VERSION}",
            where,
        )
    problem = validate(data, report_schema())
    if problem:
        raise ReportError(f"not a valid schema_version 1 report: {problem}", where)
    return data


# -- a small validator for the shipped schema ----------------------------------------------


@functools.cache
def _schema_text() -> str:
    return resources.files("pytest_outbound").joinpath("report.schema.json").read_text("utf-8")


def report_schema() -> dict[str, Any]:
    """The shipped JSON Schema (draft 2020-12) of the report."""
    schema: dict[str, Any] = json.loads(_schema_text())
    return schema


_TYPES: dict[str, Any] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
}


def validate(value: Any, schema: Mapping[str, Any]) -> str:
    """The first way ``value`` breaks ``schema``, or "".

    Supports the keywords ``report.schema.json`` uses (``$ref`` to ``#/$defs/...``, ``type``,
    ``const``, ``enum``, ``anyOf``, ``required``, ``properties``, ``additionalProperties``,
    ``items``, ``minItems``, ``minLength``, ``minimum``, ``maximum``, ``pattern``), so reading a
    report needs no third-party package. The test suite cross-checks with ``jsonschema``.
    """
    return _check(value, schema, schema, "")


def _check(value: Any, schema: Mapping[str, Any], root: Mapping[str, Any], at: str) -> str:
    where = at or "the report"
    if "$ref" in schema:
        ref = schema["$ref"]
        problem = _check(value, root["$defs"][ref.rsplit("/", 1)[-1]], root, at)
        if problem:
            return problem
    if "anyOf" in schema:
        problems = [_check(value, sub, root, at) for sub in schema["anyOf"]]
        if all(problems):
            return problems[-1]
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_TYPES[t](value) for t in types):
            return f"{where}: expected {' or '.join(types)}, got {_json_type(value)}"
    if "const" in schema and (value != schema["const"] or type(value) is not type(schema["const"])):
        return f"{where}: must be {schema['const']!r}, got {value!r}"
    if "enum" in schema and value not in schema["enum"]:
        allowed = ", ".join(repr(e) for e in schema["enum"])
        return f"{where}: {value!r} is not one of {allowed}"
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            return f"{where}: must not be empty"
        if "pattern" in schema and not re.search(schema["pattern"], value):
            return f"{where}: {value!r} does not match {schema['pattern']!r}"
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            return f"{where}: {value!r} is less than {schema['minimum']}"
        if "maximum" in schema and value > schema["maximum"]:
            return f"{where}: {value!r} is greater than {schema['maximum']}"
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            return f"{where}: needs at least {schema['minItems']} item(s)"
        if "items" in schema:
            for i, item in enumerate(value):
                problem = _check(item, schema["items"], root, f"{at}[{i}]")
                if problem:
                    return problem
    if isinstance(value, dict):
        for key in schema.get("required", ()):
            if key not in value:
                return f"{where}: missing key {key!r}"
        props: Mapping[str, Any] = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            sub = f"{at}.{key}" if at else key
            if key in props:
                problem = _check(item, props[key], root, sub)
            elif extra is False:
                problem = f"{where}: unknown key {key!r}"
            elif isinstance(extra, Mapping):
                problem = _check(item, extra, root, sub)
            else:
                problem = ""
            if problem:
                return problem
    return ""


def _json_type(value: Any) -> str:
    for name in ("null", "boolean", "integer", "number", "string", "array", "object"):
        if _TYPES[name](value):
            return name
    return type(value).__name__


# -- reading a report back -----------------------------------------------------------------


def request_from_json(data: Mapping[str, Any]) -> OutboundRequest:
    """An ``OutboundRequest`` from its report form (no body, no peer; field names only)."""
    return OutboundRequest(
        method=data["method"],
        url=data["url"],
        scheme=data["scheme"],
        host=data["host"],
        port=data["port"],
        path=data["path"],
        query_text=urlsplit(data["url"]).query,
        headers=dict(data["headers"]),
        _fields=Fields(dict.fromkeys(data["fields"], ())),
        client=data["client"],
        destination=data["destination"],
        verdict=data["verdict"],
        reasons=list(data["reasons"]),
        nodeid=data["nodeid"],
        phase=data["phase"],
        location=data["location"],
        thread=data["thread"],
        time=float(data["time"]),
        via=data.get("via", ""),
        allowed_by=data.get("allowed_by", ""),
    )


def destination_from_json(data: Mapping[str, Any]) -> Destination:
    """A ``Destination`` from its report form; ``ReportError`` if it is not a valid one."""
    raw = data.get("payload")
    try:
        payload = (
            None
            if raw is None
            else Payload(
                fields=None if raw.get("fields") is None else tuple(raw["fields"]),
                required=tuple(raw.get("required", ())),
                match=dict(raw.get("match", {})),
                opaque_body=bool(raw.get("opaque_body", False)),
            )
        )
        return Destination(
            name=data["name"],
            hosts=tuple(data["hosts"]),
            description=data.get("description", ""),
            when=data.get("when", ""),
            group=data.get("group", ""),
            schemes=tuple(data.get("schemes", ())),
            ports=tuple(data.get("ports", ())),
            methods=tuple(data.get("methods", ())),
            paths=tuple(data.get("paths", ())),
            min_interval=data.get("min_interval"),
            payload=payload,
        )
    except PolicyError as exc:
        raise ReportError(f"report destination is not valid: {exc}") from None


def summary_text(
    report: Mapping[str, Any], *, verbose: bool = False, width: int | None = None
) -> list[str]:
    """The lines the terminal summary printed for this run (``_summary.summary_lines``)."""
    destinations = [destination_from_json(d) for d in report["destinations"]]
    records = [request_from_json(r) for r in report["requests"]]
    lines = summary_lines(report["mode"], destinations, records, verbose=verbose, width=width)
    blocked = report["summary"].get("outside_blocked", 0)
    if blocked:
        lines.append(
            f"{blocked} request(s) outside any test were blocked (enforce): the session fails"
        )
    internal = report.get("internal_errors", [])
    lines.extend(internal_error_lines(report["mode"], [e["what"] for e in internal]))
    lines.extend(unwatched_lines(report.get("unwatched_children", {})))
    crashed = {w: s for w, s in report.get("workers", {}).items() if s != "ok"}
    if crashed:
        lines.append("workers:")
        lines.extend(f"  {w}: {s}" for w, s in crashed.items())
    return lines


# -- Markdown (GitHub job summary) ---------------------------------------------------------

#: Tables longer than this are cut, with a line saying how many rows were left out.
MARKDOWN_ROWS = 50


def summary_markdown(report: Mapping[str, Any]) -> str:
    """A GitHub job summary of the report: counts, then one table or list per finding."""
    summary = report["summary"]
    requests = report["requests"]
    n_viol = summary["violations"]
    coverage = (
        f" {summary['exercised']} of {_plural(summary['documented'], 'documented destination')}"
        " exercised"
        if summary["documented"]
        else " no documented destinations"
    )
    out = [
        "## pytest-outbound",
        "",
        f"**{'FAILED' if n_viol and report['mode'] == 'enforce' else 'Result'}:**"
        f" {_plural(summary['requests'], 'outbound request')},"
        f" {_plural(n_viol, 'violation')};{coverage} (mode: `{report['mode']}`).",
    ]
    contacted = [d for d in report["destinations"] if d["contacted"]]
    if contacted:
        out += ["", "### Destinations contacted", ""]
        out += ["| Destination | Hosts | Requests | Tests |", "| --- | --- | ---: | ---: |"]
        rows = [
            f"| {_tc(d['name'])} | {', '.join(_tc(h) for h in d['hosts'])}"
            f" | {d['contacted']} | {len(d['tests'])} |"
            for d in contacted
        ]
        out += _capped(rows)
    violations = [r for r in requests if r["verdict"] == VIOLATION]
    if violations:
        out += ["", "### Violations", ""]
        out += ["| Test | Location | Request | Reason |", "| --- | --- | --- | --- |"]
        rows = [
            f"| {_tc(r['nodeid'] or '<' + r['phase'] + '>')} | {_tc(r['location'])}"
            f" | {_cell(r['method'])} {_tc(r['url'])} ({_cell(r['client'])})"
            f" | {_cell(', '.join(r['reasons']))} |"
            for r in violations
        ]
        out += _capped(rows)
    records = [request_from_json(r) for r in requests]
    for title, hosts in (
        ("Undocumented hosts", undocumented_hosts(records)),
        (
            "Hosts allowed in tests (an outbound_allow marker or outbound.allow)",
            allowed_hosts(records),
        ),
    ):
        if hosts:
            out += ["", f"### {title}", ""]
            out += [f"- {code_span(h)} ({_plural(hosts[h], 'request')})" for h in sorted(hosts)]
    unexercised = [d for d in report["destinations"] if not d["contacted"]]
    if unexercised:
        out += ["", "### Documented destinations no test exercised", ""]
        out += [
            f"- {code_span(d['name'])} ({', '.join(code_span(h) for h in d['hosts'])})"
            for d in unexercised
        ]
    if summary.get("outside_blocked"):
        out += [
            "",
            f"**{_plural(summary['outside_blocked'], 'request')} outside any test"
            f" {'was' if summary['outside_blocked'] == 1 else 'were'} blocked (enforce):"
            " the session fails.**",
        ]
    crashed = {w: s for w, s in report.get("workers", {}).items() if s != "ok"}
    if crashed:
        out += ["", "### Workers", ""]
        out += [f"- {code_span(w)}: {_cell(s)}" for w, s in crashed.items()]
    return "\n".join(out) + "\n"


def _tc(text: str) -> str:
    return code_span(text, table=True) if text else ""


def _capped(rows: list[str]) -> list[str]:
    if len(rows) <= MARKDOWN_ROWS:
        return rows
    left = len(rows) - MARKDOWN_ROWS
    return [*rows[:MARKDOWN_ROWS], "", f"_… and {left} more; see the JSON report._"]


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell (no pipes, line breaks or HTML)."""
    text = " ".join(text.split()).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace("|", "\\|")


def code_span(text: str, *, table: bool = False) -> str:
    """An inline Markdown code span for any text, on one line (``table``: inside a table cell)."""
    text = " ".join(text.split())
    if table:
        text = text.replace("|", "\\|")
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if longest else ""
    return f"{fence}{pad}{text}{pad}{fence}"
