"""``pip install .`` into a fresh venv: the plugin is found through its entry point alone."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, check=False, timeout=300
    )


def test_wheel_installs_and_registers_the_entry_point(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    built = run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "--quiet",
        "-w",
        dist,
        REPO,
    )
    assert built.returncode == 0, built.stderr
    [wheel] = dist.glob("pytest_outbound-*.whl")

    venv = tmp_path / "venv"
    assert run(sys.executable, "-m", "venv", "--without-pip", venv).returncode == 0
    python = venv / "bin" / "python"
    installed = run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        python,
        "install",
        "--no-deps",
        "--no-index",
        "--quiet",
        wheel,
    )
    assert installed.returncode == 0, installed.stderr
    # The fresh venv borrows pytest, requests & co. from ours, but not our source tree: a
    # plain path line in a .pth does not run our editable-install hook.
    site = Path(
        run(
            python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"
        ).stdout.strip()
    )
    (site / "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "pytest.ini").write_text("[pytest]\noutbound_mode = enforce\n")
    (suite / "test_it.py").write_text(
        textwrap.dedent(
            """
            import pathlib, sys
            import pytest, requests
            import pytest_outbound
            from pytest_outbound import OutboundBlocked

            def test_from_installed_copy():
                print("LOADED FROM", pathlib.Path(pytest_outbound.__file__).parent)

            def test_blocked():
                with pytest.raises(OutboundBlocked):
                    requests.get("https://undocumented.example/")
            """
        )
    )
    result = run(
        python, "-m", "pytest", "-p", "outbound", "-s", "-p", "no:cacheprovider", cwd=suite
    )
    out = result.stdout
    assert f"LOADED FROM {site / 'pytest_outbound'}" in out, out + result.stderr
    assert "1 failed, 1 passed" in out, out
    assert "outbound request blocked: GET https://undocumented.example/" in out
    assert "= outbound =" in out
