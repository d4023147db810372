"""``python -m pytest_outbound sandbox -- COMMAND`` (SPEC §8): any command in the sandbox.

A ``curl`` child reaches a documented destination through the gateway (HTTP proxy, CONNECT,
SOCKS5), is refused an undocumented one, and the summary names it; the JSON report holds the
records (client ``gateway``, ``dns``). Nothing leaves the machine: the outside is a loopback
server (``sandbox_outside``). Skipped where the sandbox cannot be made, and the curl cases
where curl is not installed (CI installs Debian's ``curl`` package).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pytest_outbound._report import report_schema, validate

if TYPE_CHECKING:
    from sandbox_outside import OutsideServer

pytest_plugins = ["sandbox_outside"]

CURL = shutil.which("curl")
needs_curl = pytest.mark.skipif(
    CURL is None,
    reason="curl is not installed: CI installs Debian's curl package (apt-get install curl)",
)

POLICY = """\
[[destination]]
name = "docs"
hosts = ["docs.example.test"]
description = "The documentation site."

[[destination]]
name = "grpc"
hosts = ["grpc.example.test"]
description = "The gRPC service."
"""


def _wrapper(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest_outbound", "sandbox", "--no-machine-values", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


@needs_curl
def test_the_wrapper_runs_curl_through_the_gateway_and_prints_the_summary(
    outside: OutsideServer, tmp_path: Path
) -> None:
    (tmp_path / "outbound.toml").write_text(POLICY)
    result = _wrapper(
        "--policy",
        "outbound.toml",
        "--mode",
        "enforce",
        "--",
        "sh",
        "-c",
        "curl -sS -m 20 http://docs.example.test/ok; curl -sS -m 20 http://evil.example/x",
        cwd=tmp_path,
    )
    assert "hello from outside /ok" in result.stdout
    assert "pytest-outbound sandbox: blocked GET http://evil.example/x (undocumented)" in (
        result.stdout
    )
    assert result.returncode == 1, result.stderr  # curl succeeded; a request was blocked
    err = result.stderr
    assert "outbound (sandbox)" in err
    assert "mode: enforce; 2 outbound request(s), 1 violation(s)" in err
    assert "GET http://evil.example/x [gateway]" in err
    assert "at curl -sS -m 20 http://evil.example/x (pid " in err
    assert "requests were blocked (enforce): the run fails" in err
    assert [(m, p) for m, p, _ in outside.seen] == [("GET", "/ok")]


@needs_curl
def test_connect_and_socks5_tunnels_reach_a_documented_destination(
    outside: OutsideServer, tmp_path: Path
) -> None:
    (tmp_path / "outbound.toml").write_text(POLICY)
    script = "; ".join(
        [
            "curl -sS -m 20 --proxytunnel http://docs.example.test/connect",
            'curl -sS -m 20 --socks5-hostname "$PYTEST_OUTBOUND_SANDBOX_PROXY"'
            " http://docs.example.test/socks5h",
            # SOCKS5 with the name resolved first: the tunnel goes to the address the DNS
            # responder answered, judged by that name
            'curl -sS -m 20 --socks5 "$PYTEST_OUTBOUND_SANDBOX_PROXY" http://docs.example.test/socks5',
            "curl -sS -m 20 --proxytunnel http://evil.example/connect",
            'curl -sS -m 20 --socks5-hostname "$PYTEST_OUTBOUND_SANDBOX_PROXY" http://evil.example/s',
            "true",
        ]
    )
    result = _wrapper(
        "--policy", "outbound.toml", "--mode", "enforce", "--report", "r.json", "--", "sh", "-c",
        script, cwd=tmp_path,
    )  # fmt: skip
    for path in ("/connect", "/socks5h", "/socks5"):
        assert f"hello from outside {path}" in result.stdout
    assert [p for _, p, _ in outside.seen] == ["/connect", "/socks5h", "/socks5"]
    assert result.returncode == 1, result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert validate(report, report_schema()) == ""
    shown = [(r["client"], r["method"], r["url"], r["verdict"]) for r in report["requests"]]
    assert ("gateway", "CONNECT", "tcp://docs.example.test:80", "allowed") in shown
    assert ("dns", "DNS", "dns://docs.example.test", "allowed") in shown
    tunnels_by_address = [r for r in report["requests"] if r["url"].startswith("tcp://198.18.")]
    assert [r["destination"] for r in tunnels_by_address] == ["docs"]
    refused = [r for r in report["requests"] if r["verdict"] == "violation"]
    assert [r["url"] for r in refused] == ["tcp://evil.example:80"] * 2
    assert all(r["location"].startswith("curl ") for r in refused)


@needs_curl
def test_audit_records_and_lets_through(outside: OutsideServer, tmp_path: Path) -> None:
    result = _wrapper(
        "--", "sh", "-c", "curl -sS -m 20 http://docs.example.test/a; curl -sS -m 20 http://evil.example/b",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "hello from outside /a" in result.stdout
    # let through, to an outside that has no such name (the test mapping is all there is)
    assert "502" not in result.stdout or "could not connect" in result.stdout
    assert "mode: audit; 2 outbound request(s), 2 violation(s)" in result.stderr


def test_the_wrapper_says_what_is_wrong_in_one_line(sandbox: None, tmp_path: Path) -> None:
    result = _wrapper(cwd=tmp_path)
    assert (result.returncode, result.stderr.strip()) == (
        2,
        "python -m pytest_outbound sandbox: error: name the command to run after --",
    )
    (tmp_path / "bad.toml").write_text('[[destination]]\nname = "x"\nhsts = ["a.example"]\n')
    result = _wrapper("--policy", "bad.toml", "--", "true", cwd=tmp_path)
    assert result.returncode == 2
    assert "bad.toml" in result.stderr
    assert "hsts" in result.stderr
    result = _wrapper("--", "no-such-program-here", cwd=tmp_path)
    assert result.returncode == 127
    assert "no-such-program-here: No such file or directory" in result.stderr


FORBID = 'echo 0 > /proc/sys/user/max_user_namespaces && exec "$@"'
"""Run the rest of the command in a user namespace in which no further one may be made
(``user.max_user_namespaces = 0``): it stands for a system that forbids them."""


@pytest.mark.skipif(shutil.which("unshare") is None, reason="util-linux's unshare is needed")
def test_where_user_namespaces_are_forbidden_it_says_so(
    sandbox: None, pytester: pytest.Pytester
) -> None:
    result = pytester.run(
        "unshare", "--user", "--map-root-user", "sh", "-c", FORBID, "sh",
        sys.executable, "-m", "pytest_outbound", "sandbox", "--", "true",
    )  # fmt: skip
    assert result.ret == 2
    assert result.errlines == [
        "python -m pytest_outbound sandbox: error: the sandbox cannot be made here: user"
        " namespaces are not allowed (unshare(CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWNS): No"
        " space left on device (user.max_user_namespaces = 0)); run the command without the"
        " sandbox"
    ]


def test_the_benchmark_measures_the_gateway(sandbox: None, tmp_path: Path) -> None:
    """``benchmarks/sandbox.py`` (README, "The sandbox"): a quick run of its wrapper part."""
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "sandbox.py"
    out = tmp_path / "figures.json"
    result = subprocess.run(
        [sys.executable, str(script), "--quick", "--only", "wrapper", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(out.read_text())
    assert sorted(figures) == [
        "connection: connect (wrapper)",
        "connection: direct (outside, baseline)",
        "connection: http_proxy (wrapper)",
        "connection: socks5 (wrapper)",
        "lookup: dns (wrapper)",
        "refused: straight to an address (wrapper)",
    ]
    assert all(value > 0 for value in figures.values())
