"""Suites that outgrow one run (issue 23): CI shards merged into one report, verdicts judged on
the merged evidence, partial runs, and nothing lost when a pytest-xdist worker dies.

The suite is the example's kind: a policy of three destinations, tests in two directories, a
directory whose conftest documents one more destination. Shards split it by directory; merged,
they must equal one full run (apart from shard labels and order), and the page rendered from
the merged report must be the page the full run writes, byte for byte.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_outbound._merge import merge_reports
from pytest_outbound._report import ReportError, report_schema

POLICY = """
[[destination]]
name = "update-check"
description = "Checking for updates."
hosts = ["octopus.com"]

[destination.payload]
fields = ["version"]

[[destination]]
name = "nuget"
description = "Downloading packages."
hosts = ["*.nuget.org"]

[[destination]]
name = "crl"
description = "Certificate revocation list checks."
hosts = ["crl.example"]
"""

SERVER_TESTS = """
import pytest, requests

@pytest.mark.parametrize("n", range(3))
def test_update(outbound, n):
    outbound.stub("update-check")
    requests.get(f"https://octopus.com/check?version=1.{n}")

def test_nuget(outbound):
    outbound.stub("nuget")
    requests.get("https://api.nuget.org/v3/index.json")
"""

AGENT_CONFTEST = """
from pytest_outbound import Destination

def pytest_outbound_destinations(config):
    return [Destination(name="telemetry", hosts=["telemetry.example"],
                        description="Agent telemetry.")]
"""

AGENT_TESTS = """
import httpx, respx

@respx.mock
def test_crl():
    respx.get("https://crl.example/list").respond(200)
    httpx.get("https://crl.example/list")

@respx.mock
def test_telemetry():
    respx.post("https://telemetry.example/v1").respond(204)
    httpx.post("https://telemetry.example/v1", json={"version": "1"})
"""


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makefile(".toml", outbound=POLICY)
    pytester.makeini(
        "[pytest]\noutbound_policy = outbound.toml\noutbound_mode = enforce\ntestpaths = tests\n"
    )
    tests = pytester.mkdir("tests")
    (tests / "server").mkdir()
    (tests / "agent").mkdir()
    (tests / "server" / "test_server.py").write_text(SERVER_TESTS)
    (tests / "agent" / "conftest.py").write_text(AGENT_CONFTEST)
    (tests / "agent" / "test_agent.py").write_text(AGENT_TESTS)
    return pytester


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest_outbound", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )


def comparable(report: dict[str, Any]) -> dict[str, Any]:
    """A report without what differs between runs of the same tests (who ran it, when, in
    which thread or worker, and the order)."""
    report = dict(report)
    for key in ("workers", "environment", "shards"):
        report.pop(key, None)
    report["requests"] = sorted(
        ({k: v for k, v in r.items() if k not in ("time", "thread")} for r in report["requests"]),
        key=lambda r: json.dumps(r, sort_keys=True),
    )
    return report


@pytest.mark.parametrize("workers", ["0", "2"])
def test_shards_merged_are_one_full_run(suite: pytest.Pytester, workers: str) -> None:
    full = suite.runpytest(
        "-n", workers, "--outbound-report", "full.json", "--outbound-docs", "FULL.md"
    )
    full.assert_outcomes(passed=6)
    shards = {  # three CI jobs: two split one directory, one runs the other
        "update": (["tests/server", "-k", "update"], 3),
        "nuget": (["tests/server", "-k", "nuget"], 1),
        "agent": (["tests/agent"], 2),
    }
    for shard, (args, passed) in shards.items():
        run = suite.runpytest(
            "-n", workers, *args, "--outbound-shard", shard, "--outbound-report", f"{shard}.json"
        )
        run.assert_outcomes(passed=passed)
    merged = cli(
        "merge", "nuget.json", "agent.json", "update.json", "-o", "merged.json", cwd=suite.path
    )
    assert merged.returncode == 0, merged.stderr
    assert "wrote merged.json: 3 reports, 6 request(s), 3 shard(s)" in merged.stdout

    report = json.loads((suite.path / "merged.json").read_text())
    jsonschema.validate(report, report_schema())
    whole = json.loads((suite.path / "full.json").read_text())
    assert comparable(report) == comparable(whole)
    assert sorted((s["shard"], s["partial"]) for s in report["shards"]) == [
        ("agent", True),
        ("nuget", True),
        ("update", True),
    ]
    assert whole["environment"]["partial"] is False
    assert whole["conftest_destinations"] == ["telemetry"]

    # the verdicts, judged on the merged evidence
    check = cli("check", "--report", "merged.json", "--require-coverage", cwd=suite.path)
    assert check.returncode == 0, check.stderr
    assert "merged.json: 4 of 4 documented destinations exercised" in check.stdout
    docs = cli("docs", "--report", "merged.json", "--check", "FULL.md", cwd=suite.path)
    assert docs.returncode == 0, docs.stdout + docs.stderr
    page = cli("docs", "--report", "merged.json", cwd=suite.path)
    assert page.stdout == (suite.path / "FULL.md").read_text()


def test_one_shard_alone_misses_coverage_on_the_command_line(suite: pytest.Pytester) -> None:
    suite.runpytest("tests/server", "--outbound-report", "server.json").assert_outcomes(passed=4)
    check = cli("check", "--report", "server.json", "--require-coverage", cwd=suite.path)
    assert check.returncode == 1
    assert "1 documented destination(s) were exercised by no test: crl" in check.stderr


def test_a_partial_run_leaves_the_whole_suite_verdicts_to_a_full_run(
    suite: pytest.Pytester,
) -> None:
    suite.runpytest("--outbound-docs", "OUTBOUND.md").assert_outcomes(passed=6)
    page = (suite.path / "OUTBOUND.md").read_text()
    narrowings = (
        ["tests/agent/test_agent.py"],
        ["tests/server/test_server.py::test_nuget"],
        ["-k", "update"],
        ["--deselect", "tests/agent/test_agent.py::test_crl"],
    )
    for narrowing in narrowings:
        run = suite.runpytest(
            *narrowing,
            "-o",
            "outbound_require_coverage=true",
            "--outbound-docs-check",
            "OUTBOUND.md",
        )
        assert run.ret == pytest.ExitCode.OK, run.stdout.str()
        run.stdout.fnmatch_lines(
            [
                "a partial run (*): outbound_require_coverage, --outbound-docs-check left to a"
                " full run or a merged report*"
            ]
        )
        forced = suite.runpytest(
            *narrowing,
            "--outbound-force-verdicts",
            "-o",
            "outbound_require_coverage=true",
            "--outbound-docs-check",
            "OUTBOUND.md",
        )
        assert forced.ret == pytest.ExitCode.TESTS_FAILED
        forced.stdout.fnmatch_lines(["outbound_require_coverage: * exercised by no test*"])
    assert (suite.path / "OUTBOUND.md").read_text() == page  # never rewritten by a part


def test_the_whole_suite_is_not_partial(suite: pytest.Pytester) -> None:
    for args in ([], ["tests"], ["."], ["-m", "not slow"], ["-k", "test_"]):
        run = suite.runpytest(*args, "-o", "outbound_require_coverage=true")
        run.assert_outcomes(passed=6)
        assert run.ret == pytest.ExitCode.OK
        run.stdout.no_fnmatch_line("*a partial run*")


def test_a_page_without_evidence_is_checked_on_what_it_holds(suite: pytest.Pytester) -> None:
    made = cli("docs", "outbound.toml", "-o", "POLICY.md", cwd=suite.path)
    assert made.returncode == 0, made.stderr
    assert "rendered from the policy alone" in (suite.path / "POLICY.md").read_text()
    # the run's own destinations: the policy's only, as the page (no conftest destination)
    (suite.path / "tests" / "agent" / "conftest.py").unlink()
    (suite.path / "tests" / "agent" / "test_agent.py").unlink()
    run = suite.runpytest("--outbound-docs-check", "POLICY.md")
    run.assert_outcomes(passed=4)
    assert run.ret == pytest.ExitCode.OK, run.stdout.str()


def test_a_worker_killed_after_its_third_test_keeps_their_records(
    suite: pytest.Pytester,
) -> None:
    (suite.path / "tests" / "server" / "test_zz_dies.py").write_text(
        "import os\n\ndef test_dies():\n    os._exit(3)\n"
    )
    result = suite.runpytest(
        "tests/server",
        "-n",
        "1",
        "-p",
        "no:randomly",
        "--max-worker-restart",
        "0",
        "--outbound-report",
        "r.json",
    )
    report = json.loads((suite.path / "r.json").read_text())
    jsonschema.validate(report, report_schema())
    assert sorted(r["nodeid"] for r in report["requests"]) == [
        "tests/server/test_server.py::test_nuget",
        "tests/server/test_server.py::test_update[0]",
        "tests/server/test_server.py::test_update[1]",
        "tests/server/test_server.py::test_update[2]",
    ]
    assert report["workers"] == {
        "gw0": "crashed: Not properly terminated; it was running"
        " tests/server/test_zz_dies.py::test_dies"
    }
    assert result.ret != 0


def test_records_with_a_clients_own_types_cross_from_workers(pytester: pytest.Pytester) -> None:
    """aiohttp's header names are ``multidict.istr`` and its URLs ``yarl.URL``: the records are
    plain data from the start, and reach the controller whole."""
    pytester.makeini("[pytest]\noutbound_local = enforce\n")
    pytester.makepyfile(
        """
        import asyncio, aiohttp, pytest
        from aiohttp import web
        from multidict import CIMultiDict, istr
        from yarl import URL

        async def serve_and_send(n):
            app = web.Application()
            app.router.add_get("/{n}", lambda request: web.Response(text="ok"))
            runner = web.AppRunner(app)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]
            try:
                async with aiohttp.ClientSession() as session:
                    headers = CIMultiDict({istr("X-Trace"): "abc"})
                    url = URL(f"http://127.0.0.1:{port}/{n}")
                    async with session.get(url, headers=headers) as response:
                        assert await response.text() == "ok"
            finally:
                await runner.cleanup()

        @pytest.mark.parametrize("n", range(4))
        def test_send(n):
            asyncio.run(serve_and_send(n))
        """
    )
    result = pytester.runpytest("-n", "2", "--outbound-report", "r.json")
    result.assert_outcomes(passed=4)
    report = json.loads((pytester.path / "r.json").read_text())
    assert report["workers"] == {"gw0": "ok", "gw1": "ok"}
    sent = sorted((r["nodeid"], r["headers"].get("X-Trace")) for r in report["requests"])
    assert sent == [
        (f"test_records_with_a_clients_own_types_cross_from_workers.py::test_send[{n}]", "abc")
        for n in range(4)
    ]


# -- merge: refusals and the algebra ------------------------------------------------------


def _report(suite: pytest.Pytester, name: str, *args: str) -> Path:
    suite.runpytest(*args, "--outbound-report", name)
    return suite.path / name


def test_merge_refuses_what_cannot_be_combined(suite: pytest.Pytester) -> None:
    good = _report(suite, "good.json", "tests/server")
    data = json.loads(good.read_text())
    bad = {
        "other-schema.json": {**data, "schema_version": 2},
        "other-policy.json": {**data, "policy_digest": "sha256:" + "0" * 64},
        "other-mode.json": {**data, "mode": "audit"},
    }
    for name, content in bad.items():
        (suite.path / name).write_text(json.dumps(content))
    (suite.path / "truncated.json").write_text(good.read_text()[:200])
    (suite.path / "not-json.json").write_text("hello")
    expected = {
        "other-schema.json": "other-schema.json: unsupported report schema_version (2)",
        "other-policy.json": "other-policy.json: was judged by another policy than good.json",
        "other-mode.json": "other-mode.json: was run in mode 'audit', good.json in 'enforce'",
        "truncated.json": "truncated.json: not valid JSON (line",
        "not-json.json": "not-json.json: not valid JSON (line 1, column 1)",
    }
    for name, message in expected.items():
        result = cli("merge", "good.json", name, "-o", "out.json", cwd=suite.path)
        assert result.returncode == 2, name
        assert message in result.stderr, (name, result.stderr)
        assert "Traceback" not in result.stderr
        assert not (suite.path / "out.json").exists()


def _request(nodeid: str, host: str, n: int) -> dict[str, Any]:
    return {
        "method": "GET",
        "url": f"https://{host}/{n}",
        "scheme": "https",
        "host": host,
        "port": 443,
        "path": f"/{n}",
        "query": {},
        "headers": {},
        "fields": [],
        "client": "requests",
        "destination": "api" if host == "api.example" else None,
        "verdict": "allowed" if host == "api.example" else "violation",
        "reasons": [] if host == "api.example" else ["undocumented"],
        "nodeid": nodeid,
        "phase": "call",
        "location": "test_a.py:1",
        "thread": "MainThread",
        "time": float(n),
    }


_DESTINATION = {
    "name": "api",
    "hosts": ["api.example"],
    "description": "",
    "when": "",
    "group": "",
    "schemes": [],
    "ports": [],
    "methods": [],
    "paths": [],
    "min_interval": None,
    "payload": None,
}
_DIGEST = "sha256:" + "a" * 64


@st.composite
def shard_reports(draw: st.DrawFn) -> dict[str, Any]:
    from pytest_outbound._policy import Destination
    from pytest_outbound._report import build_report, request_from_json

    label = draw(st.sampled_from(["a", "b", "c", ""]))
    requests = [
        _request(
            draw(st.sampled_from(["t.py::x", "t.py::y", ""])),
            draw(st.sampled_from(["api.example", "evil.example"])),
            draw(st.integers(0, 5)),
        )
        for _ in range(draw(st.integers(0, 4)))
    ]
    report = build_report(
        mode="enforce",
        destinations=[Destination(name="api", hosts=("api.example",))],
        records=[request_from_json(r) for r in requests],
        workers=draw(st.sampled_from([None, {"gw0": "ok"}, {"gw0": "crashed: x"}])),
        outside_blocked=draw(st.integers(0, 2)),
        unwatched=draw(st.sampled_from([{}, {"curl": 1}])),
    )
    report["policy_digest"] = _DIGEST
    report["environment"] = {
        "python": "3.11.7",
        "implementation": "cpython",
        "platform": "linux",
        "pytest": "9.0",
        "pytest_outbound": "0.1",
        "shard": label,
        "partial": True,
    }
    return report


def _merged(*reports: dict[str, Any]) -> dict[str, Any]:
    return merge_reports([(f"r{i}.json", r) for i, r in enumerate(reports)])


@settings(max_examples=60, deadline=None)
@given(shard_reports(), shard_reports(), shard_reports())
def test_merging_is_associative_and_order_independent(
    a: dict[str, Any], b: dict[str, Any], c: dict[str, Any]
) -> None:
    left = _merged(_merged(a, b), c)
    right = _merged(a, _merged(b, c))
    flat = _merged(a, b, c)
    assert left == right == flat
    assert _merged(c, a, b) == flat
    jsonschema.validate(flat, report_schema())
    assert len(flat["requests"]) == sum(len(r["requests"]) for r in (a, b, c))
    assert flat["summary"]["outside_blocked"] == sum(
        r["summary"]["outside_blocked"] for r in (a, b, c)
    )


def test_merge_refuses_a_destination_documented_two_ways() -> None:
    first = {
        "schema_version": 1,
        "mode": "audit",
        "destinations": [{**_DESTINATION, "name": "x", "hosts": ["x.example"]}],
        "conftest_destinations": ["x"],
        "requests": [],
        "summary": {
            "requests": 0,
            "violations": 0,
            "undocumented_hosts": [],
            "unexercised_destinations": [],
        },
        "workers": {},
        "policy_digest": _DIGEST,
    }
    second = {**first, "destinations": [{**_DESTINATION, "name": "x", "hosts": ["y.example"]}]}
    with pytest.raises(ReportError, match=r"documents destination 'x' otherwise than a\.json"):
        merge_reports([("a.json", first), ("b.json", second)])
