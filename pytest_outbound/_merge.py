"""Reports of many runs as one (CI shards, machines, xdist-less splits), like ``coverage combine``.

A report says which policy judged it (``policy_digest``: the session-wide destinations, from
policy files, ini options and the root conftest) and which run wrote it (``environment``: the
Python, platform, versions, the shard label, whether tests were deselected). ``merge_reports``
refuses reports that cannot be combined (another schema version, another policy, another
mode, one destination name defined two ways) and otherwise rebuilds one report from all their
requests with ``build_report``, exactly as a single run with all those requests would have
written it. The result does not depend on the order or the grouping of its inputs: requests
are put in one canonical order, and a merged report keeps each run's environment in
``shards``.
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from pytest_outbound._policy import Destination
from pytest_outbound._report import (
    ReportError,
    build_report,
    destination_from_json,
    destination_json,
    request_from_json,
)
from pytest_outbound._version import __version__

#: CI variables that name a shard or job, first found wins (``--outbound-shard`` overrides).
SHARD_VARIABLES = (
    "OUTBOUND_SHARD",
    "PYTEST_SHARD",  # conventional in split jobs
    "CI_NODE_INDEX",  # GitLab parallel, Buildkite, Semaphore
    "CIRCLE_NODE_INDEX",
    "BUILDKITE_PARALLEL_JOB",
    "GITHUB_JOB",  # (a matrix's jobs share it: give --outbound-shard there)
)


def policy_digest(destinations: Sequence[Destination]) -> str:
    """A digest of the session-wide policy: its destinations, in order, as the report has them."""
    text = json.dumps(
        [destination_json(d) for d in destinations], sort_keys=True, separators=(",", ":")
    )
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def shard_from_environment(environ: Mapping[str, str]) -> str:
    for name in SHARD_VARIABLES:
        value = environ.get(name, "").strip()
        if value:
            return value
    return ""


def environment(*, shard: str, partial: bool, pytest_version: str) -> dict[str, Any]:
    """Who ran a report: the interpreter, platform, versions, the shard, a partial run or not."""
    return {
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "platform": sys.platform,
        "pytest": pytest_version,
        "pytest_outbound": __version__,
        "shard": shard,
        "partial": partial,
    }


def merge_reports(reports: Sequence[tuple[str, Mapping[str, Any]]]) -> dict[str, Any]:
    """One report from ``(path, report)`` pairs (each loaded and validated already);
    ``ReportError`` naming the file when they cannot be combined."""
    if not reports:
        raise ReportError("nothing to merge: name at least one report")
    first_path, first = reports[0]
    digest, mode = first.get("policy_digest"), first["mode"]
    for path, report in reports:
        if "policy_digest" not in report:
            raise ReportError(
                "has no policy_digest (written by an older pytest-outbound): reports can only"
                " be merged when each says which policy judged it; run it again",
                path,
            )
        if report["policy_digest"] != digest:
            raise ReportError(
                f"was judged by another policy than {first_path} (policy_digest"
                f" {report['policy_digest']} against {digest}): merge only the reports of one"
                " policy",
                path,
            )
        if report["mode"] != mode:
            raise ReportError(
                f"was run in mode {report['mode']!r}, {first_path} in {mode!r}: merge only"
                " reports of one mode",
                path,
            )
    session, by_directory = _destinations(reports)
    records = [request_from_json(r) for _, report in reports for r in report["requests"]]
    records.sort(key=_record_key)
    unwatched: Counter[str] = Counter()
    for _, report in reports:
        unwatched.update(report.get("unwatched_children", {}))
    internal = sorted(
        {
            (e["what"], e["traceback"])
            for _, report in reports
            for e in report.get("internal_errors", ())
        }
    )
    merged = build_report(
        mode=mode,
        destinations=[*session, *by_directory],
        records=records,
        workers=_workers(reports),
        outside_blocked=sum(r["summary"].get("outside_blocked", 0) for _, r in reports),
        unwatched=dict(unwatched),
        internal_errors=internal,
    )
    merged["policy_digest"] = digest
    if by_directory:
        merged["conftest_destinations"] = [d.name for d in by_directory]
    merged["shards"] = sorted(
        (shard for _, report in reports for shard in _shards(report)), key=_canonical
    )
    return merged


def _shards(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    if "shards" in report:
        return [dict(s) for s in report["shards"]]
    return [dict(report["environment"])] if "environment" in report else []


def _destinations(
    reports: Sequence[tuple[str, Mapping[str, Any]]],
) -> tuple[list[Destination], list[Destination]]:
    """The session-wide destinations (the same in every report: their digest is) and the
    union of the directory-scoped ones, by name, in name order."""
    _, first = reports[0]
    directory_names = set(first.get("conftest_destinations", ()))
    session = [
        destination_from_json(d) for d in first["destinations"] if d["name"] not in directory_names
    ]
    session_names = {d.name for d in session}
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    for path, report in reports:
        names = set(report.get("conftest_destinations", ()))
        for raw in report["destinations"]:
            if raw["name"] not in names or raw["name"] in session_names:
                continue
            policy = destination_json(destination_from_json(raw))
            known = found.get(raw["name"])
            if known is None:
                found[raw["name"]] = (path, policy)
            elif known[1] != policy:
                raise ReportError(
                    f"documents destination {raw['name']!r} otherwise than {known[0]} does"
                    " (a conftest's pytest_outbound_destinations): merge only reports of one"
                    " policy",
                    path,
                )
    by_directory = [destination_from_json(found[name][1]) for name in sorted(found)]
    return session, by_directory


def _workers(reports: Sequence[tuple[str, Mapping[str, Any]]]) -> dict[str, str]:
    """Each run's workers, named by its shard (a merged report's are named already); a worker
    named twice keeps the worse state."""
    workers: dict[str, str] = {}
    for _, report in reports:
        shard = "" if "shards" in report else report.get("environment", {}).get("shard", "")
        for worker, state in report.get("workers", {}).items():
            name = f"{shard}/{worker}" if shard else worker
            known = workers.get(name)
            workers[name] = state if known is None or known == "ok" else known
    return workers


def _record_key(record: Any) -> tuple[object, ...]:
    return (record.nodeid, record.time, _canonical(record.to_json()))


def _canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
