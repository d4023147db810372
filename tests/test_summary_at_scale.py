"""Issue 24, "a summary that reads at any size" and "right words": violations grouped by host
and reason, lines that fit the terminal, the user's line as the call site (a wrapper library's
kept as ``via``), hosts a test allowed apart from undocumented ones, blocked requests neither
contacted nor evidence, and a ``Destination(...)`` to add for a conftest's policy."""

from __future__ import annotations

import json
import subprocess
import sys

import jsonschema
import pytest

from pytest_outbound._report import report_schema
from pytest_outbound._summary import fit_lines

POLICY = """
[[destination]]
name = "update-check"
hosts = ["octopus.com"]
methods = ["GET"]

[destination.payload]
fields = ["version"]

[[destination]]
name = "crl"
hosts = ["crl.example"]
"""

# An installed wrapper library (an analytics client): its frames are not the call site.
WRAPLIB = """
import requests


def capture(event):
    return _send({"event": event})


def _send(payload):
    return requests.post("https://ingest.wraplib.example/api", json=payload)
"""

CONFTEST = """
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "vendor", "site-packages"))
"""

SUITE = """
import httpx
import pytest
import requests
import wraplib
from pytest_outbound import OutboundBlocked


def retry(url, times):
    for _ in range(times):
        try:
            requests.get(url)
        except OutboundBlocked:
            pass


@pytest.mark.parametrize("n", range(6))
def test_background_retry(n):
    retry("https://stats.example.net/collect", 4)


def test_wrapper():
    wraplib.capture("start")


def test_update(outbound):
    outbound.stub("update-check")
    requests.get("https://octopus.com/check", params={"version": "1"})
    try:
        requests.get("https://octopus.com/check", params={"version": "1", "os": "linux"})
    except OutboundBlocked:
        pass


@pytest.mark.outbound_allow("partner.example")
def test_marker(outbound):
    outbound.stub("partner.example")
    requests.get("https://partner.example/a")


def test_fixture(outbound):
    outbound.allow("cdn.example")
    outbound.stub("cdn.example")
    requests.get("https://cdn.example/logo.png")


def test_ini_allowed(outbound):
    outbound.stub("mirror.example")
    requests.get("https://mirror.example/pkg")


def test_invalid_port():
    try:
        httpx.get("http://octopus.com:123456/")
    except Exception:
        pass
"""


@pytest.fixture
def suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.setenv("COLUMNS", "80")
    pytester.makefile(".toml", outbound=POLICY)
    pytester.makeini(
        "[pytest]\noutbound_policy = outbound.toml\noutbound_mode = enforce\n"
        "outbound_allow = mirror.example\n"
    )
    pytester.makeconftest(CONFTEST)
    package = pytester.mkdir("vendor").joinpath("site-packages", "wraplib")
    package.mkdir(parents=True)
    package.joinpath("__init__.py").write_text(WRAPLIB.lstrip())
    pytester.makepyfile(test_scale=SUITE)
    return pytester


def outbound_section(result: pytest.RunResult) -> list[str]:
    lines = result.stdout.lines
    start = next(i for i, line in enumerate(lines) if " outbound " in line and "===" in line)
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("====="))
    return lines[start + 1 : end]


EXPECTED = [
    "mode: enforce; 31 outbound request(s), 27 violation(s)",
    "1 of 2 documented destinations were exercised",
    "destinations contacted:",
    "  update-check (octopus.com): 1 request(s) in 1 test(s):",
    "      test_scale.py::test_update",
    "violations:",
    "  stats.example.net: undocumented: 24 request(s) in 6 test(s)",
    "    test_scale.py::test_background_retry[0] and 5 more at test_scale.py:11: GET",
    "        https://stats.example.net/collect [requests] (24 times)",
    "  (no valid host): ambiguous-host: 1 request(s) in 1 test(s)",
    "    test_scale.py::test_invalid_port at test_scale.py:53: GET",
    "        http://octopus.com:123456/ [httpx]",
    "  ingest.wraplib.example: undocumented: 1 request(s) in 1 test(s)",
    "    test_scale.py::test_wrapper at test_scale.py:22 (via wraplib/__init__.py:9):",
    "        POST https://ingest.wraplib.example/api [requests]",
    "  octopus.com: payload:extra:os: 1 request(s) in 1 test(s)",
    "    test_scale.py::test_update at test_scale.py:29: GET",
    "        https://octopus.com/check?version=1&os=linux [requests]",
    "undocumented hosts:",
    "  ingest.wraplib.example (1 request(s))",
    "  mirror.example (1 request(s))",
    "  stats.example.net (24 request(s))",
    "allowed in tests (by an outbound_allow marker or outbound.allow):",
    "  cdn.example (1 request(s))",
    "  partner.example (1 request(s))",
    "documented destinations no test exercised:",
    "  crl (crl.example)",
]


def test_the_summary_groups_violations_and_fits_the_terminal(suite: pytest.Pytester) -> None:
    result = suite.runpytest("-p", "no:randomly", "--outbound-report", "report.json")
    result.assert_outcomes(passed=3, failed=9)
    section = outbound_section(result)
    assert section == EXPECTED
    assert max(len(line) for line in section) <= 80
    # the JSON report keeps every request, and says the rest
    report = json.loads((suite.path / "report.json").read_text())
    jsonschema.validate(report, report_schema())
    assert len(report["requests"]) == 31
    assert report["summary"]["undocumented_hosts"] == [
        "ingest.wraplib.example",
        "mirror.example",
        "stats.example.net",
    ]
    assert report["summary"]["allowed_hosts"] == ["cdn.example", "partner.example"]
    [update, crl] = report["destinations"]
    assert (update["contacted"], update["tests"]) == (1, ["test_scale.py::test_update"])
    assert (crl["contacted"], crl["tests"]) == (0, [])
    assert report["summary"]["exercised"] == 1
    [wrapped] = [r for r in report["requests"] if r["host"] == "ingest.wraplib.example"]
    assert (wrapped["location"], wrapped["via"]) == ("test_scale.py:22", "wraplib/__init__.py:9")
    allowed = {
        r["host"]: r.get("allowed_by") for r in report["requests"] if r["verdict"] == "allowed"
    }
    assert allowed == {
        "octopus.com": None,
        "partner.example": "test",
        "cdn.example": "test",
        "mirror.example": None,
    }
    # read back, the report prints the same summary (as long as it is: a file has no width)
    again = subprocess.run(
        [sys.executable, "-m", "pytest_outbound", "report", "report.json"],
        cwd=suite.path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert fit_lines(again.stdout.splitlines(), 80) == EXPECTED


def test_verbose_lists_every_request_and_test(suite: pytest.Pytester) -> None:
    result = suite.runpytest("-p", "no:randomly", "-v")
    section = outbound_section(result)
    start = section.index("violations:") + 1
    assert section[start : start + 8] == [
        "  stats.example.net: undocumented: 24 request(s) in 6 test(s)",
        "    test_scale.py::test_background_retry[0],",
        "        test_scale.py::test_background_retry[1],",
        "        test_scale.py::test_background_retry[2],",
        "        test_scale.py::test_background_retry[3],",
        "        test_scale.py::test_background_retry[4],",
        "        test_scale.py::test_background_retry[5] at test_scale.py:11: GET",
        "        https://stats.example.net/collect [requests] (24 times)",
    ]


def test_many_distinct_requests_are_cut_to_the_first_few(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    pytester.makeini("[pytest]\noutbound_mode = audit\n")
    pytester.makepyfile(
        test_many="""
        import requests

        def test_many(outbound):
            outbound.stub("api.example")
            for n in range(40):
                requests.get(f"https://api.example/item/{n}")
        """
    )
    result = pytester.runpytest("-p", "no:randomly")
    assert outbound_section(result) == [
        "mode: audit; 40 outbound request(s), 40 violation(s)",
        "violations:",
        "  api.example: undocumented: 40 request(s) in 1 test(s)",
        "    test_many.py::test_many at test_many.py:6: GET https://api.example/item/0",
        "        [requests]",
        "    test_many.py::test_many at test_many.py:6: GET https://api.example/item/1",
        "        [requests]",
        "    test_many.py::test_many at test_many.py:6: GET https://api.example/item/2",
        "        [requests]",
        "    ... and 37 more request(s) (-v lists them)",
        "undocumented hosts:",
        "  api.example (40 request(s))",
    ]


def test_no_policy_no_line_about_documented_destinations(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\noutbound_mode = audit\n")
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = pytester.runpytest("-p", "no:randomly")
    assert outbound_section(result) == ["mode: audit; 0 outbound request(s), 0 violation(s)"]


def test_fit_lines_wraps_at_spaces_and_cuts_a_word_too_long_for_a_line() -> None:
    long_url = "https://example.org/" + "a" * 100
    assert fit_lines(["short", f"  GET {long_url} [requests] (2 times)"], 40) == [
        "short",
        "  GET https://example....aaaaaaaaaaaaaaa",
        "      [requests] (2 times)",
    ]
    # a word that fits no line is cut where it stands: "at" and "in" keep what they name
    origin = "      at " + "a" * 60 + ".py:8 in " + "a" * 60 + ".py::test_x"
    assert fit_lines([origin], 60) == [
        "      at aaaaaaaaaaaaaaaaaaaaaaaa...aaaaaaaaaaaaaaaaaaa.py:8",
        "          in aaaaaaaaaaaaaaaaaaaaaa...aaaaaaaaaaa.py::test_x",
    ]
    assert fit_lines([f"x {long_url}"], None) == [f"x {long_url}"]


# -- right words for a conftest's policy ------------------------------------------------------

HOOK = """
from pytest_outbound import Destination, Payload


def pytest_outbound_destinations(config):
    return [
        Destination(
            name="nuget",
            hosts=["*.nuget.org"],
            schemes=["https"],
            payload=Payload(fields=["q"]),
        )
    ]
"""


def test_a_conftest_policy_gets_a_destination_to_add(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\noutbound_mode = enforce\n")
    pytester.makeconftest(HOOK)
    pytester.makepyfile(
        test_feed="""
        import requests


        def test_undocumented():
            requests.get("https://stats.example.net/collect")


        def test_scheme():
            requests.get("http://api.nuget.org/v3/index.json")


        def test_field():
            requests.get("https://api.nuget.org/v3/index.json", params={"q": "x", "take": 1})
        """
    )
    result = pytester.runpytest("-p", "no:randomly")
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines(
        [
            "E         to document it, add to what pytest_outbound_destinations returns in"
            " conftest.py:",
            "E           Destination(",
            'E               name="stats-example-net",',
            'E               hosts=[[]"stats.example.net"],',
            'E               description="What this request is for.",',
            'E               when="When the code makes it.",',
            "E           ),",
            "E         or allow it in this test only:",
            'E           @pytest.mark.outbound_allow("stats.example.net")',
        ]
    )
    result.stdout.fnmatch_lines(
        [
            'E         to document it, extend Destination(name="nuget", ...) in conftest.py:',
            'E           schemes=[[]"https", "http"],',
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "E         if the documentation should admit it, extend the Payload of"
            ' Destination(name="nuget", ...) in conftest.py:',
            'E           fields=[[]"q", "take"],',
            "E         otherwise stop the code from sending it",
        ]
    )
    assert "[[destination]]" not in result.stdout.str()


# -- the documentation page: blocked requests are violations, not evidence ---------------------


def test_the_docs_page_lists_blocked_fields_apart(suite: pytest.Pytester) -> None:
    suite.runpytest("-p", "no:randomly", "--outbound-docs", "OUTBOUND.md")
    page = (suite.path / "OUTBOUND.md").read_text()
    assert (
        "### update-check\n\n"
        "- **Where:** `octopus.com` (method GET).\n"
        "- **What it sends:** This request includes: the version (`version`). It carries"
        " nothing else.\n"
        "- **Evidence:** Exercised by 1 test, 1 request; fields observed: `version`.\n"
        "- **Violations:** 1 request the policy does not admit, from 1 test (not counted"
        " above); fields it carried: `os`, `version`.\n"
        "- **Tests:** `test_scale.py::test_update`\n"
    ) in page
    assert "### crl\n\n- **Where:** `crl.example`.\n" in page
    assert "- **Evidence:** No test exercised it.\n" in page
