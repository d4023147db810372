"""``python -m pytest_outbound export``: a policy as a CI runner firewall's allow-list
(harden-runner's ``allowed-endpoints``, bullfrog's ``allowed-domains``, plain hosts). The
entries go to stdout, nothing else; what a format cannot take is said on stderr."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_outbound.__main__ import main

POLICY = """\
allow = ["cdn.example.com"]

[[destination]]
name = "update-check"
hosts = ["octopus.com"]
schemes = ["https"]

[[destination]]
name = "nuget"
hosts = ["*.nuget.org", "api.nuget.org:8443"]

[[destination]]
name = "mirror"
hosts = ["mirror.example.net"]
ports = [8080, 8443]

[[destination]]
name = "legacy"
hosts = ["http://legacy.example.org"]

[[destination]]
name = "backup"
hosts = ["203.0.113.7", "10.0.0.0/8", "2001:db8::/32", "[2001:db8::1]:443"]

[[destination]]
name = "local"
hosts = ["localhost", "127.0.0.1"]

[[destination]]
name = "intranet"
hosts = ["build_box.corp.example"]
"""

MORE = """\
[[destination]]
name = "updates"
hosts = ["updates.example.org", "octopus.com"]
schemes = ["https", "http"]
"""


@pytest.fixture
def policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "more.toml").write_text(MORE)
    path = tmp_path / "outbound.toml"
    path.write_text(POLICY)
    return path


def export(fmt: str, capsys: pytest.CaptureFixture[str], *files: str) -> tuple[str, str]:
    assert main(["export", "--format", fmt, *(files or ("outbound.toml",))]) == 0
    captured = capsys.readouterr()
    return captured.out, captured.err


def test_harden_runner(policy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, err = export("harden-runner", capsys)
    assert out == (
        "octopus.com:443\n"
        "*.nuget.org:443\n"
        "*.nuget.org:80\n"
        "api.nuget.org:8443\n"
        "mirror.example.net:8080\n"
        "mirror.example.net:8443\n"
        "legacy.example.org:80\n"
        "build_box.corp.example:443\n"
        "build_box.corp.example:80\n"
        "cdn.example.com:443\n"
        "cdn.example.com:80\n"
    )
    takes = "harden-runner's allowed-endpoints takes domain names (it resolves each one), not IP"
    assert err == (
        f"# skipped 203.0.113.7 (destination 'backup'): {takes} addresses or networks\n"
        f"# skipped 10.0.0.0/8 (destination 'backup'): {takes} addresses or networks\n"
        f"# skipped 2001:db8::/32 (destination 'backup'): {takes} addresses or networks\n"
        f"# skipped [2001:db8::1]:443 (destination 'backup'): {takes} addresses or networks\n"
        "# skipped localhost (destination 'local'): loopback, not egress; the runner allows it\n"
        "# skipped 127.0.0.1 (destination 'local'): loopback, not egress; the runner allows it\n"
        "# harden-runner allows a wildcard on the first of its ports only: *.nuget.org on 443"
        " (not 80)\n"
    )
    # every line is what the agent parses: a name (or *.name), a colon, a port
    assert all(re.fullmatch(r"[*a-z0-9_.-]+:\d+", line) for line in out.splitlines())


def test_bullfrog(policy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, err = export("bullfrog", capsys)
    assert out == (
        "octopus.com\n"
        "*.nuget.org\n"
        "api.nuget.org\n"
        "mirror.example.net\n"
        "legacy.example.org\n"
        "cdn.example.com\n"
    )
    assert err == (
        "# for bullfrog's allowed-ips (not allowed-domains): 203.0.113.7 (destination 'backup')\n"
        "# for bullfrog's allowed-ips (not allowed-domains): 10.0.0.0/8 (destination 'backup')\n"
        "# skipped 2001:db8::/32 (destination 'backup'): bullfrog's allowed-ips takes IPv4 only\n"
        "# skipped [2001:db8::1]:443 (destination 'backup'): bullfrog's allowed-ips takes IPv4"
        " only\n"
        "# skipped localhost (destination 'local'): loopback, not egress; the runner allows it\n"
        "# skipped 127.0.0.1 (destination 'local'): loopback, not egress; the runner allows it\n"
        "# skipped build_box.corp.example (destination 'intranet'): bullfrog's allowed-domains"
        " takes letters, digits, '.', '-' and '*' only\n"
        "# bullfrog allows a domain on every port: the ports documented for api.nuget.org:8443,"
        " mirror.example.net are not carried over\n"
    )
    # what bullfrog's action validates each line of allowed-domains against
    assert all(re.fullmatch(r"[A-Za-z0-9.\-*]+", line) for line in out.splitlines())


def test_hosts(policy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, err = export("hosts", capsys)
    assert out == (
        "octopus.com\n"
        "*.nuget.org\n"
        "api.nuget.org\n"
        "mirror.example.net\n"
        "legacy.example.org\n"
        "203.0.113.7\n"
        "10.0.0.0/8\n"
        "2001:db8::/32\n"
        "2001:db8::1\n"
        "localhost\n"
        "127.0.0.1\n"
        "build_box.corp.example\n"
        "cdn.example.com\n"
    )
    assert err == ""


def test_several_policy_files_one_list_each_entry_once(
    policy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, _ = export("harden-runner", capsys, "outbound.toml", "more.toml")
    lines = out.splitlines()
    assert lines[-5:] == [  # the destinations of both files, then their allow lists
        "updates.example.org:443",
        "updates.example.org:80",
        "octopus.com:80",
        "cdn.example.com:443",
        "cdn.example.com:80",
    ]
    assert lines.count("octopus.com:443") == 1


def test_errors_are_one_line_and_exit_2(policy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    Path("bad.toml").write_text('[[destination]]\nname = "x"\nhsts = ["a.example"]\n')
    assert main(["export", "--format", "hosts", "bad.toml"]) == 2
    err = capsys.readouterr().err
    assert re.fullmatch(r"bad\.toml:\d+: destination 'x': unknown key 'hsts'.*\n", err)
    assert main(["export", "--format", "iptables", "outbound.toml"]) == 2
    assert "invalid choice: 'iptables'" in capsys.readouterr().err
    assert main(["export", "outbound.toml"]) == 2
    assert "the following arguments are required: --format" in capsys.readouterr().err


def test_as_a_command(policy: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest_outbound", "export", "--format", "bullfrog", "more.toml"],
        cwd=policy.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "updates.example.org\noctopus.com\n"
    assert done.stderr == ""
