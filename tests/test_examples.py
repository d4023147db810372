"""examples/: the seed page's application passes under enforce, its page is current and covers
the seed page, and the leaky variant fails with exactly its three leaks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PAGE = EXAMPLES / "deployserver" / "OUTBOUND.md"


@pytest.fixture
def examples(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Path:
    target = pytester.path / "examples"
    shutil.copytree(EXAMPLES, target, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    monkeypatch.chdir(target)
    return target


def test_example_suite_passes_enforced_with_full_coverage_and_a_current_page(
    pytester: pytest.Pytester, examples: Path
) -> None:
    result = pytester.runpytest(
        "--outbound-docs-check", "deployserver/OUTBOUND.md", "--outbound-report", "report.json"
    )
    result.assert_outcomes(passed=18)
    assert result.ret == 0
    report = json.loads((examples / "report.json").read_text())
    assert report["mode"] == "enforce"
    assert report["summary"]["violations"] == 0
    assert report["summary"]["unexercised_destinations"] == []
    assert len(report["destinations"]) == 9
    result.stdout.fnmatch_lines(["9 of 9 documented destinations were exercised"])
    result.stdout.no_fnmatch_line("*out of date*")


def test_the_committed_page_states_what_the_seed_page_states() -> None:
    page = PAGE.read_text(encoding="utf-8")
    server, _, agent = page.partition("## Outbound requests by Tentacle")
    assert "## Outbound requests by Octopus Server" in server
    update = server[server.index("### update-check") :].split("\n### ", 1)[0]
    assert "This request includes:" in update
    assert "`version`, required" in update
    assert "the installation ID (`installationId`, required, a UUID)" in update
    assert "It carries nothing else." in update
    assert "At most once every 8 hours." in update
    assert "octopus.com" in update
    # Every outbound request the seed page lists, under the right program.
    for line in (
        "Pushing packages and deployment instructions, and checking the health, of Tentacles.",
        "Downloading packages from the NuGet feeds that you configure.",
        "Windows Azure traffic.",
        "Only when deploying to an Azure deployment target.",
        "Checking for updates",
        "library.octopus.com",
    ):
        assert line in server, line
    for line in (
        "Certificate revocation list checking",
        "Automatic root certificate updates",
        "NuGet package downloads",
        "Tentacle downloads directly from NuGet",
        "Connections back to the Octopus Server",
        "polling mode",
    ):
        assert line in agent, line


def test_leaky_variant_fails_with_exactly_its_three_leaks(
    pytester: pytest.Pytester, examples: Path
) -> None:
    result = pytester.runpytest(
        "leaky", "-o", "outbound_require_coverage=false", "--outbound-report", "leaky.json"
    )
    result.assert_outcomes(failed=2)
    # each fails for the plugin's reason: the first on its block, the second on the one it
    # swallowed (its own assertions pass), and on nothing of their own
    result.stdout.fnmatch_lines(
        ["E   *OutboundBlocked: outbound request blocked: GET https://octopus.com/*"]
    )
    result.stdout.fnmatch_lines(
        [
            "*_ test_opting_out_sends_nothing_anywhere _*",
            "1 outbound request(s) were blocked, and the code under test caught*",
        ],
        consecutive=True,
    )
    report = json.loads((examples / "leaky.json").read_text())
    violations = sorted(
        reason
        for request in report["requests"]
        if request["verdict"] == "violation"
        for reason in request["reasons"]
    )
    assert violations == ["payload:extra:os", "sensitive:hostname", "undocumented"]
    # Each message names its fix.
    result.stdout.fnmatch_lines(['*fields = [[]"version", "installationId", "os"]'])
    result.stdout.fnmatch_lines(["*fix: this machine's own data must not leave it*"])
    result.stdout.fnmatch_lines(
        ["*to document it, add to deployserver/outbound.toml:", "*[[][[]destination]]"]
    )
    result.stdout.fnmatch_lines(['*@pytest.mark.outbound_allow("analytics.example-telemetry.com")'])
    assert "build-agent-07.acme.internal" not in "\n".join(
        line for line in result.stdout.lines if "why:" in line
    )
