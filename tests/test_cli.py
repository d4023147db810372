"""``python -m pytest_outbound``: docs, check, report; as a subprocess and in-process."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_outbound import Destination, Policy, __version__
from pytest_outbound.__main__ import main
from pytest_outbound._docs import render_docs
from pytest_outbound._record import build_request
from pytest_outbound._report import build_report, summary_markdown, summary_text, write_report

GOOD = """\
[[destination]]
name = "update-check"
description = "Checking for updates (if enabled)."
when = "The Check for updates setting is on."
hosts = ["octopus.com"]
schemes = ["https"]
min_interval = "8h"

[destination.payload]
fields = ["version", "installationId"]
required = ["version", "installationId"]
[destination.payload.match]
installationId = "uuid"

[[destination]]
name = "nuget"
hosts = ["*.nuget.org"]
"""
MORE = """\
[[destination]]
name = "library"
description = "Step templates."
hosts = ["library.octopus.com"]
group = "Community"
"""
# line 8: an unknown key in the second destination (the line of the key)
BAD_KEY = """\
[[destination]]
name = "a"
hosts = ["a.example"]

[[destination]]
name = "b"
hosts = ["b.example"]
colour = "red"
"""
# line 4: a bad duration (the line of the key)
BAD_DURATION = """\
[[destination]]
name = "c"
hosts = ["c.example"]
min_interval = "8 hours"
"""
# line 3: not TOML
BAD_TOML = """\
[[destination]]
name = "d"
hosts = = ["d.example"]
"""
DUPLICATE = """\
# the same name as in GOOD

[[destination]]
name = "nuget"
hosts = ["nuget.example"]
"""

ERROR_LINE = re.compile(r"^[^:\s]+\.toml(:\d+)?: \S.*$")


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest_outbound", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def files(tmp_path: Path) -> Path:
    for name, text in {
        "good.toml": GOOD,
        "more.toml": MORE,
        "bad_key.toml": BAD_KEY,
        "bad_duration.toml": BAD_DURATION,
        "bad_toml.toml": BAD_TOML,
        "duplicate.toml": DUPLICATE,
    }.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    return tmp_path


def _destinations(*texts: str) -> list[Destination]:
    policy = Policy()
    for i, text in enumerate(texts):
        policy = policy.merge(Policy.from_toml_text(text, f"{i}.toml"))
    return list(policy.destinations)


def _no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr
    assert "Traceback" not in result.stdout


# -- top level ----------------------------------------------------------------------------------


def test_version(tmp_path: Path) -> None:
    result = run("--version", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout == f"pytest-outbound {__version__}\n"


def test_help_lists_the_commands(tmp_path: Path) -> None:
    result = run("--help", cwd=tmp_path)
    assert result.returncode == 0
    for command in ("docs", "check", "report"):
        assert command in result.stdout


def test_no_command_is_a_usage_error(tmp_path: Path) -> None:
    result = run(cwd=tmp_path)
    assert result.returncode == 2
    assert "choose a command: docs, check, merge, report, init, export or sandbox" in result.stderr
    _no_traceback(result)


def test_unknown_command_is_a_usage_error(tmp_path: Path) -> None:
    result = run("publish", cwd=tmp_path)
    assert result.returncode == 2
    assert "invalid choice: 'publish'" in result.stderr
    _no_traceback(result)


# -- check --------------------------------------------------------------------------------------


def test_check_ok(files: Path) -> None:
    result = run("check", "good.toml", "more.toml", cwd=files)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ok: 2 destinations in good.toml\nok: 1 destination in more.toml\n"
    assert result.stderr == ""


def test_check_reports_every_bad_file_one_line_each(files: Path) -> None:
    result = run(
        "check", "bad_key.toml", "good.toml", "bad_duration.toml", "bad_toml.toml", cwd=files
    )
    assert result.returncode == 2
    _no_traceback(result)
    assert result.stdout == "ok: 2 destinations in good.toml\n"
    errors = result.stderr.splitlines()
    assert len(errors) == 3
    assert all(ERROR_LINE.match(e) for e in errors), errors
    assert errors[0].startswith("bad_key.toml:8: destination 'b': unknown key 'colour'")
    assert errors[1].startswith("bad_duration.toml:4: destination 'c': bad duration '8 hours'")
    assert errors[2].startswith("bad_toml.toml:3: invalid TOML")


def test_check_reports_duplicates_across_files(files: Path) -> None:
    result = run("check", "good.toml", "duplicate.toml", cwd=files)
    assert result.returncode == 2
    assert result.stderr == (
        "duplicate.toml:3: duplicate destination name 'nuget' (first defined at good.toml:15);"
        " names must be unique\n"
    )


def test_check_the_same_file_twice_is_not_a_duplicate(files: Path) -> None:
    result = run("check", "good.toml", str(files / "good.toml"), cwd=files)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ok: 2 destinations in good.toml\n"


def test_check_missing_file(files: Path) -> None:
    result = run("check", "nope.toml", cwd=files)
    assert result.returncode == 2
    assert result.stderr == "nope.toml: cannot read policy file: No such file or directory\n"


def test_check_needs_a_file(files: Path) -> None:
    result = run("check", cwd=files)
    assert result.returncode == 2
    assert "check: error: name POLICY files, or --report R" in result.stderr


# -- docs ---------------------------------------------------------------------------------------


def test_docs_to_stdout(files: Path) -> None:
    result = run("docs", "good.toml", "more.toml", cwd=files)
    assert result.returncode == 0, result.stderr
    assert result.stdout == render_docs(_destinations(GOOD, MORE))
    assert "## Community" in result.stdout
    assert "the installation ID (`installationId`, required, a UUID)" in result.stdout


def test_docs_title(files: Path) -> None:
    result = run("docs", "good.toml", "--title", "Network egress", cwd=files)
    assert result.stdout.startswith("# Network egress\n")


def test_docs_to_a_file(files: Path) -> None:
    out = files / "docs" / "outbound.md"
    result = run("docs", "good.toml", "-o", "docs/outbound.md", cwd=files)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "wrote docs/outbound.md: 2 destinations\n"
    assert out.read_text(encoding="utf-8") == render_docs(_destinations(GOOD))
    assert [p.name for p in out.parent.iterdir()] == ["outbound.md"]


def test_docs_with_a_bad_policy_writes_nothing(files: Path) -> None:
    result = run("docs", "good.toml", "bad_key.toml", "-o", "outbound.md", cwd=files)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("bad_key.toml:8: destination 'b': unknown key 'colour'")
    assert not (files / "outbound.md").exists()
    _no_traceback(result)


def test_docs_duplicate_across_files(files: Path) -> None:
    result = run("docs", "good.toml", "duplicate.toml", cwd=files)
    assert result.returncode == 2
    assert result.stderr.startswith("duplicate.toml:3: duplicate destination name 'nuget'")


def test_docs_check(files: Path) -> None:
    assert run("docs", "good.toml", "-o", "outbound.md", cwd=files).returncode == 0
    fresh = run("docs", "good.toml", "-o", "outbound.md", "--check", cwd=files)
    assert fresh.returncode == 0, fresh.stderr
    assert fresh.stdout == "ok: outbound.md is up to date\n"

    stale = run("docs", "good.toml", "more.toml", "-o", "outbound.md", "--check", cwd=files)
    assert stale.returncode == 1
    assert stale.stdout.startswith("--- outbound.md (current)\n+++ outbound.md (generated")
    assert "+### library\n" in stale.stdout
    assert stale.stderr == (
        "outbound.md is out of date; regenerate it with: python -m pytest_outbound docs"
        " good.toml more.toml -o outbound.md\n"
    )
    # --check never writes
    assert (files / "outbound.md").read_text(encoding="utf-8") == render_docs(_destinations(GOOD))


def test_docs_check_missing_page(files: Path) -> None:
    result = run("docs", "good.toml", "-o", "missing.md", "--check", cwd=files)
    assert result.returncode == 1
    assert "+# Outbound requests\n" in result.stdout
    assert not (files / "missing.md").exists()


def test_docs_check_needs_an_output(files: Path) -> None:
    result = run("docs", "good.toml", "--check", cwd=files)
    assert result.returncode == 2
    assert "--check needs the page to check (--check PAGE or -o OUT)" in result.stderr


# -- report -------------------------------------------------------------------------------------


def _report(path: Path) -> dict[str, object]:
    dests = _destinations(GOOD)
    ok = build_request(
        "GET",
        "https://octopus.com/check?version=1&installationId=3f2b8c1e-9a4d-4e7b-8f1a-2c3d4e5f6a7b",
        client="requests",
    )
    ok.destination, ok.nodeid, ok.phase = "update-check", "tests/test_a.py::test_update", "call"
    bad = build_request("POST", "https://evil.example/x", client="httpx")
    bad.nodeid, bad.phase, bad.verdict = "tests/test_a.py::test_leak", "call", "violation"
    bad.reasons = ["undocumented-host"]
    data = build_report(mode="enforce", destinations=dests, records=[ok, bad])
    write_report(path, data)
    return data


def test_report_text(tmp_path: Path) -> None:
    data = _report(tmp_path / "outbound.json")
    result = run("report", "outbound.json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == summary_text(data)
    assert result.stdout.startswith("mode: enforce; 2 outbound request(s), 1 violation(s)\n")
    assert "undocumented hosts:\n  evil.example (1 request(s))\n" in result.stdout
    explicit = run("report", "outbound.json", "--format", "text", cwd=tmp_path)
    assert explicit.stdout == result.stdout


def test_report_markdown(tmp_path: Path) -> None:
    data = _report(tmp_path / "outbound.json")
    result = run("report", "outbound.json", "--format", "markdown", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == summary_markdown(data)
    assert "### Violations" in result.stdout


def test_report_unknown_format(tmp_path: Path) -> None:
    _report(tmp_path / "outbound.json")
    result = run("report", "outbound.json", "--format", "html", cwd=tmp_path)
    assert result.returncode == 2
    assert "invalid choice: 'html'" in result.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "error: outbound.json: no such report file\n"),
        ("{not json", "error: outbound.json: not valid JSON (line 1, column 2):"),
        ('{"schema_version": 7}', "error: outbound.json: unsupported report schema_version (7)"),
        ('{"schema_version": 1}', "error: outbound.json: not a valid schema_version 1 report:"),
        ("[]", "error: outbound.json: not a pytest-outbound report: expected a JSON object"),
    ],
)
def test_report_missing_or_invalid(tmp_path: Path, content: str | None, message: str) -> None:
    if content is not None:
        (tmp_path / "outbound.json").write_text(content, encoding="utf-8")
    result = run("report", "outbound.json", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith(message)
    assert result.stderr.count("\n") == 1
    _no_traceback(result)


def test_report_with_an_invalid_destination_is_one_line(tmp_path: Path) -> None:
    data = _report(tmp_path / "outbound.json")
    data["destinations"][0]["hosts"] = ["exa mple.com"]  # type: ignore[index]
    (tmp_path / "outbound.json").write_text(json.dumps(data), encoding="utf-8")
    result = run("report", "outbound.json", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("error: outbound.json: report destination is not valid:")
    assert result.stderr.count("\n") == 1


# -- in-process ---------------------------------------------------------------------------------


def test_main_in_process(
    files: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(files)
    assert main(["check", "good.toml"]) == 0
    assert capsys.readouterr().out == "ok: 2 destinations in good.toml\n"

    assert main(["check", "bad_key.toml", "bad_duration.toml"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert [e.split(":", 2)[:2] for e in err] == [["bad_key.toml", "8"], ["bad_duration.toml", "4"]]

    assert main(["docs", "good.toml"]) == 0
    assert capsys.readouterr().out == render_docs(_destinations(GOOD))

    assert main(["docs", "good.toml", "-o", "page.md"]) == 0
    assert (files / "page.md").read_text(encoding="utf-8") == render_docs(_destinations(GOOD))
    assert main(["docs", "good.toml", "-o", "page.md", "--check"]) == 0
    capsys.readouterr()

    data = _report(files / "r.json")
    assert main(["report", "r.json"]) == 0
    assert capsys.readouterr().out.splitlines() == summary_text(data)
    assert main(["report", "r.json", "--format", "markdown"]) == 0
    assert capsys.readouterr().out == summary_markdown(data)
    assert main(["report", "missing.json"]) == 2
    assert capsys.readouterr().err == "error: missing.json: no such report file\n"


def test_main_usage_errors_return_instead_of_exiting(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert main(["nope"]) == 2
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"pytest-outbound {__version__}\n"
    assert main(["--help"]) == 0
