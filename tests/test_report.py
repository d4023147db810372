"""The JSON report (pure core): shape, schema, stability, atomic writes, loading, summaries."""

from __future__ import annotations

import copy
import json
import os
import pickle
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from pytest_outbound import Destination, OutboundError, Payload
from pytest_outbound._record import OutboundRequest, build_request
from pytest_outbound._report import (
    MARKDOWN_ROWS,
    REDACTED,
    SCHEMA_VERSION,
    ReportError,
    build_report,
    dumps_report,
    load_report,
    report_schema,
    request_from_json,
    request_json,
    summary_markdown,
    summary_text,
    validate,
    write_report,
)
from pytest_outbound._summary import summary_lines

UUID = "3f2b8c1e-9a4d-4e7b-8f1a-2c3d4e5f6a7b"

DESTINATIONS = [
    Destination(
        name="update-check",
        hosts=("octopus.com",),
        description="Checking for updates (if enabled).",
        when="The Check for updates setting is on; every 8 hours.",
        schemes=("https",),
        min_interval="8h",
        group="Outbound requests by Octopus",
        payload=Payload(
            fields=("version", "installationId"),
            required=("version", "installationId"),
            match={"installationId": "uuid"},
        ),
    ),
    Destination(name="nuget", hosts=("*.nuget.org", "api.nuget.org"), ports=(443,)),
    Destination(name="library", hosts=("library.octopus.com",), description="Step templates."),
]


def record(
    url: str,
    *,
    destination: str | None,
    nodeid: str,
    verdict: str = "allowed",
    method: str = "GET",
    phase: str = "call",
    reasons: tuple[str, ...] = (),
    client: str = "requests",
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
) -> OutboundRequest:
    r = build_request(method, url, headers=headers or {}, body=body, client=client)
    r.destination = destination
    r.verdict = verdict
    r.reasons = list(reasons)
    r.nodeid = nodeid
    r.phase = phase
    r.location = "app/update.py:42" if nodeid else ""
    r.thread = "MainThread"
    r.time = 1_700_000_000.5
    return r


def records() -> list[OutboundRequest]:
    check = f"https://octopus.com/api/check?version=2024.1.0&installationId={UUID}"
    return [
        record(check, destination="update-check", nodeid="tests/test_update.py::test_b"),
        record(
            "https://api.nuget.org/v3/index.json",
            destination="nuget",
            nodeid="tests/test_feed.py::test_index",
            headers={"Authorization": "Bearer s3cret", "Accept": "application/json"},
        ),
        record(check, destination="update-check", nodeid="tests/test_update.py::test_a"),
        record(
            "https://evil.example/collect",
            method="POST",
            destination=None,
            nodeid="tests/test_update.py::test_a",
            verdict="violation",
            reasons=("undocumented-host",),
            client="httpx",
            body=b'{"hostname": "box"}',
            headers={"Content-Type": "application/json", "Cookie": "sid=abc"},
        ),
        record(
            "https://user:hunter2@analytics.example/ping",
            destination=None,
            nodeid="",
            phase="session",
            verdict="violation",
            reasons=("undocumented-host",),
            client="urllib3",
        ),
        record(check, destination="update-check", nodeid="tests/test_update.py::test_a"),
    ]


def report(**kwargs: Any) -> dict[str, Any]:
    args: dict[str, Any] = {"mode": "enforce", "destinations": DESTINATIONS, "records": records()}
    args.update(kwargs)
    return build_report(**args)


# -- shape and schema ---------------------------------------------------------------------


def test_the_shipped_schema_is_a_valid_draft_2020_12_schema() -> None:
    schema = report_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("mode", ["audit", "enforce", "off"])
def test_built_reports_validate_against_the_schema(mode: str) -> None:
    data = report(mode=mode, workers={"gw1": "crashed: node down", "gw0": "ok"})
    jsonschema.Draft202012Validator(report_schema()).validate(data)
    assert validate(data, report_schema()) == ""


def test_an_empty_run_validates() -> None:
    data = build_report(mode="audit", destinations=[], records=[])
    jsonschema.Draft202012Validator(report_schema()).validate(data)
    assert data["summary"] == {
        "requests": 0,
        "violations": 0,
        "undocumented_hosts": [],
        "allowed_hosts": [],
        "unexercised_destinations": [],
        "exercised": 0,
        "documented": 0,
        "outside_blocked": 0,
    }
    assert data["workers"] == {}


def test_top_level_keys_and_summary() -> None:
    data = report(outside_blocked=1)
    assert data["schema_version"] == SCHEMA_VERSION == 1
    assert data["mode"] == "enforce"
    assert data["summary"] == {
        "requests": 6,
        "violations": 2,
        "undocumented_hosts": ["analytics.example", "evil.example"],
        "allowed_hosts": [],
        "unexercised_destinations": ["library"],
        "exercised": 2,
        "documented": 3,
        "outside_blocked": 1,
    }


def test_destinations_keep_policy_order_with_counts_and_sorted_tests() -> None:
    dests = report()["destinations"]
    assert [d["name"] for d in dests] == ["update-check", "nuget", "library"]
    update = dests[0]
    assert update["contacted"] == 3
    assert update["tests"] == ["tests/test_update.py::test_a", "tests/test_update.py::test_b"]
    assert update["hosts"] == ["octopus.com"]
    assert update["description"] == "Checking for updates (if enabled)."
    assert update["when"] == "The Check for updates setting is on; every 8 hours."
    assert update["group"] == "Outbound requests by Octopus"
    assert update["min_interval"] == "8h"
    assert update["payload"] == {
        "fields": ["version", "installationId"],
        "required": ["version", "installationId"],
        "match": {"installationId": "uuid"},
        "opaque_body": False,
    }
    assert dests[1]["payload"] is None
    assert dests[1]["ports"] == [443]
    assert dests[2]["contacted"] == 0
    assert dests[2]["tests"] == []


def test_requests_keep_recorded_order_and_have_every_key_but_body() -> None:
    recs = records()
    data = build_report(mode="audit", destinations=DESTINATIONS, records=recs)
    assert len(data["requests"]) == len(recs)
    for built, rec in zip(data["requests"], recs, strict=True):
        assert "body" not in built
        assert set(built) == set(rec.to_json())
        assert built["method"] == rec.method
        assert built["nodeid"] == rec.nodeid
    first = data["requests"][0]
    assert first["fields"] == ["version", "installationId"]
    assert first["query"] == {"version": ["2024.1.0"], "installationId": [UUID]}
    assert first["client"] == "requests"
    assert first["phase"] == "call"
    assert first["port"] == 443
    assert data["requests"][4]["phase"] == "session"


def test_credentials_are_redacted() -> None:
    data = report()
    text = dumps_report(data)
    for secret in ("s3cret", "hunter2", "sid=abc"):
        assert secret not in text
    assert data["requests"][1]["headers"]["Authorization"] == REDACTED
    assert data["requests"][1]["headers"]["Accept"] == "application/json"
    assert data["requests"][3]["headers"]["Cookie"] == REDACTED
    assert data["requests"][4]["url"] == f"https://user:{REDACTED}@analytics.example/ping"


def test_workers_are_sorted() -> None:
    data = report(workers={"gw2": "ok", "gw0": "ok", "gw1": "crashed: killed by signal 9"})
    assert list(data["workers"]) == ["gw0", "gw1", "gw2"]


# -- stability -------------------------------------------------------------------------------


def test_same_input_same_json_text() -> None:
    a = dumps_report(report(workers={"gw1": "ok", "gw0": "ok"}))
    b = dumps_report(report(workers={"gw0": "ok", "gw1": "ok"}))
    assert a == b
    assert a.endswith("\n")
    assert json.loads(a) == report(workers={"gw0": "ok", "gw1": "ok"})


def test_test_order_within_a_destination_does_not_change_the_destinations() -> None:
    recs = records()
    forward = build_report(mode="audit", destinations=DESTINATIONS, records=recs)
    backward = build_report(mode="audit", destinations=DESTINATIONS, records=recs[::-1])
    assert forward["destinations"] == backward["destinations"]
    assert forward["summary"] == backward["summary"]


# -- the schema rejects what it should, and the built-in validator agrees --------------------


def _mutations() -> list[tuple[str, Any]]:
    def set_(path: tuple[Any, ...], value: Any) -> Any:
        def apply(d: dict[str, Any]) -> None:
            target: Any = d
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = value

        return apply

    def drop(path: tuple[Any, ...]) -> Any:
        def apply(d: dict[str, Any]) -> None:
            target: Any = d
            for key in path[:-1]:
                target = target[key]
            del target[path[-1]]

        return apply

    return [
        ("schema_version 2", set_(("schema_version",), 2)),
        ("schema_version as text", set_(("schema_version",), "1")),
        ("unknown mode", set_(("mode",), "strict")),
        ("bad verdict", set_(("requests", 0, "verdict"), "maybe")),
        ("bad phase", set_(("requests", 0, "phase"), "lunch")),
        ("bad client", set_(("requests", 0, "client"), "curl")),
        ("port as text", set_(("requests", 0, "port"), "443")),
        ("port too large", set_(("requests", 0, "port"), 70000)),
        ("body included", set_(("requests", 0, "body"), "")),
        ("missing url", drop(("requests", 0, "url"))),
        ("query values not lists", set_(("requests", 0, "query"), {"a": "b"})),
        ("time as text", set_(("requests", 0, "time"), "now")),
        ("bool as a count", set_(("summary", "requests"), True)),
        ("negative count", set_(("destinations", 0, "contacted"), -1)),
        ("no hosts", set_(("destinations", 0, "hosts"), [])),
        ("empty name", set_(("destinations", 0, "name"), "")),
        ("missing tests", drop(("destinations", 0, "tests"))),
        ("payload as text", set_(("destinations", 0, "payload"), "any")),
        ("payload missing a key", drop(("destinations", 0, "payload", "opaque_body"))),
        ("worker status", set_(("workers", "gw0"), "fine")),
        ("missing summary", drop(("summary",))),
        ("unknown top-level key", set_(("extra",), 1)),
        ("undocumented hosts not a list", set_(("summary", "undocumented_hosts"), "a")),
    ]


@pytest.mark.parametrize(("label", "mutate"), _mutations(), ids=[m[0] for m in _mutations()])
def test_invalid_reports_are_rejected_by_both_validators(label: str, mutate: Any) -> None:
    data = copy.deepcopy(report(workers={"gw0": "ok"}))
    mutate(data)
    assert not jsonschema.Draft202012Validator(report_schema()).is_valid(data), label
    assert validate(data, report_schema()) != "", label


# -- writing ---------------------------------------------------------------------------------


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_write_and_load_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "outbound.json"
    data = report(workers={"gw0": "ok"})
    write_report(path, data)
    assert path.read_text(encoding="utf-8") == dumps_report(data)
    assert load_report(path) == data
    assert load_report(str(path)) == data
    assert _leftovers(path.parent) == []


def test_write_replaces_an_existing_report(tmp_path: Path) -> None:
    path = tmp_path / "outbound.json"
    write_report(path, build_report(mode="audit", destinations=[], records=[]))
    write_report(path, report())
    assert load_report(path)["summary"]["requests"] == 6
    assert _leftovers(tmp_path) == []


def test_new_reports_get_ordinary_permissions(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        path = tmp_path / "outbound.json"
        write_report(path, report())
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o644


def test_a_failed_serialisation_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "outbound.json"
    write_report(path, report())
    before = path.read_bytes()
    broken = report()
    broken["requests"].append({"method": "GET", "unserialisable": object()})
    with pytest.raises(TypeError):
        write_report(path, broken)
    assert path.read_bytes() == before
    assert _leftovers(tmp_path) == []


def test_a_failure_midway_through_the_write_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "outbound.json"
    write_report(path, report())
    before = path.read_bytes()

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        write_report(path, build_report(mode="audit", destinations=[], records=[]))
    assert path.read_bytes() == before
    assert _leftovers(tmp_path) == []


def test_nan_is_not_written_as_invalid_json(tmp_path: Path) -> None:
    path = tmp_path / "outbound.json"
    data = report()
    data["requests"][0]["time"] = float("nan")
    with pytest.raises(ValueError, match="Out of range float values"):
        write_report(path, data)
    assert not path.exists()
    assert _leftovers(tmp_path) == []


# -- loading ---------------------------------------------------------------------------------


def _load_error(path: Path) -> str:
    with pytest.raises(ReportError) as info:
        load_report(path)
    text = str(info.value)
    assert text.startswith(f"{path}: "), text
    assert "\n" not in text
    return text


def test_load_missing_file(tmp_path: Path) -> None:
    assert "no such report file" in _load_error(tmp_path / "nope.json")


def test_load_directory(tmp_path: Path) -> None:
    assert "directory" in _load_error(tmp_path)


def test_load_invalid_json(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text('{"schema_version": 1,\n  "mode": }\n', encoding="utf-8")
    assert "not valid JSON (line 2" in _load_error(path)


def test_load_truncated_file(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text(dumps_report(report())[:200], encoding="utf-8")
    assert "not valid JSON" in _load_error(path)


def test_load_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_bytes(b"\xff\xfe{}")
    assert "cannot read report" in _load_error(path)


def test_load_not_an_object(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text("[1, 2]", encoding="utf-8")
    assert "expected a JSON object, got array" in _load_error(path)


@pytest.mark.parametrize(("version", "found"), [(2, "(2)"), ("1", "('1')"), (None, "(None)")])
def test_load_wrong_schema_version(tmp_path: Path, version: Any, found: str) -> None:
    path = tmp_path / "r.json"
    data = report()
    data["schema_version"] = version
    path.write_text(json.dumps(data), encoding="utf-8")
    text = _load_error(path)
    assert f"unsupported report schema_version {found}" in text
    assert "reads schema_version 1" in text


def test_load_missing_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    data = report()
    del data["schema_version"]
    path.write_text(json.dumps(data), encoding="utf-8")
    assert "(no schema_version)" in _load_error(path)


def test_load_wrong_structure_names_the_place(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    data = report()
    data["requests"][3]["verdict"] = "maybe"
    path.write_text(json.dumps(data), encoding="utf-8")
    text = _load_error(path)
    assert "requests[3].verdict: 'maybe' is not one of 'allowed', 'violation'" in text


def test_report_error_is_an_outbound_error_and_pickles() -> None:
    err = ReportError("no such report file", "r.json")
    assert isinstance(err, OutboundError)
    again = pickle.loads(pickle.dumps(err))
    assert str(again) == "r.json: no such report file"


# -- summaries -------------------------------------------------------------------------------


def test_request_from_json_round_trips_the_report_view() -> None:
    for rec in records():
        data = rec.to_json()
        assert request_from_json(data).to_json() == data


@pytest.mark.parametrize("verbose", [False, True])
def test_summary_text_is_the_terminal_summary(verbose: bool) -> None:
    recs = [r for r in records() if "user:" not in r.url]  # no redaction in play
    data = build_report(mode="audit", destinations=DESTINATIONS, records=recs)
    expected = summary_lines("audit", DESTINATIONS, recs, verbose=verbose)
    assert summary_text(data, verbose=verbose) == expected
    assert expected[:2] == [
        "mode: audit; 5 outbound request(s), 1 violation(s)",
        "2 of 3 documented destinations were exercised",
    ]


def test_summary_text_survives_a_saved_report(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    write_report(path, report())
    lines = summary_text(load_report(path))
    assert lines == summary_text(report())
    assert any("evil.example" in line for line in lines)


def test_summary_text_mentions_blocked_requests_and_crashed_workers() -> None:
    lines = summary_text(report(outside_blocked=2, workers={"gw0": "ok", "gw1": "crashed: oom"}))
    assert "2 request(s) outside any test were blocked (enforce): the session fails" in lines
    assert lines[-2:] == ["workers:", "  gw1: crashed: oom"]


def test_summary_markdown() -> None:
    md = summary_markdown(report(outside_blocked=1, workers={"gw1": "crashed: oom"}))
    assert md.startswith("## pytest-outbound\n\n**FAILED:** 6 outbound requests, 2 violations;")
    assert "2 of 3 documented destinations exercised (mode: `enforce`)." in md
    assert "| `update-check` | `octopus.com` | 3 | 2 |" in md
    assert "| `nuget` | `*.nuget.org`, `api.nuget.org` | 1 | 1 |" in md
    assert (
        "| `tests/test_update.py::test_a` | `app/update.py:42`"
        " | POST `https://evil.example/collect` (httpx) | undocumented-host |"
    ) in md
    assert "| `<session>` |  | GET" in md
    assert "- `evil.example` (1 request)" in md
    assert (
        "### Documented destinations no test exercised\n\n- `library` (`library.octopus.com`)" in md
    )
    assert "**1 request outside any test was blocked (enforce): the session fails.**" in md
    assert "- `gw1`: crashed: oom" in md
    assert md.endswith("\n")
    assert "hunter2" not in md


def test_summary_markdown_audit_without_findings() -> None:
    data = build_report(mode="audit", destinations=DESTINATIONS[:1], records=records()[:1])
    md = summary_markdown(data)
    assert "**Result:** 1 outbound request, 0 violations; 1 of 1 documented destination" in md
    assert "### Violations" not in md
    assert "### Undocumented hosts" not in md


def test_summary_markdown_escapes_table_cells_and_caps_rows() -> None:
    recs = [
        record(
            f"https://evil.example/{i}?a=|b",
            destination=None,
            nodeid=f"tests/t.py::test[{i}|<x>]",
            verdict="violation",
            reasons=("undocumented-host <evil|example>",),
        )
        for i in range(MARKDOWN_ROWS + 5)
    ]
    md = summary_markdown(build_report(mode="audit", destinations=[], records=recs))
    rows = [line for line in md.splitlines() if line.startswith("| `tests/t.py")]
    assert len(rows) == MARKDOWN_ROWS
    assert "`tests/t.py::test[0\\|<x>]`" in rows[0]
    assert "undocumented-host &lt;evil\\|example&gt;" in rows[0]
    assert "… and 5 more; see the JSON report." in md


def test_a_header_name_of_a_str_subclass_is_written_as_plain_text() -> None:
    """aiohttp's header names are ``multidict.istr``: execnet cannot send one from a
    pytest-xdist worker (every record of the worker was lost), and JSON writes it only by
    luck. The report's are plain ``str``."""
    from execnet.gateway_base import dumps
    from multidict import istr

    record = build_request(
        "GET",
        "https://a.example/",
        headers={istr("X-Thing"): istr("v")},
        body=b"",
        client="aiohttp",
    )
    data = request_json(record)
    assert [(type(k), type(v)) for k, v in data["headers"].items()] == [(str, str)]
    dumps(data)  # what pytest-xdist sends
