"""Running a command in the sandbox: the wrapper (``python -m pytest_outbound sandbox``) and
pytest's own run under ``--outbound-sandbox``.

Both start the command in the namespace (``_namespace``) and serve its gateway and DNS
responder (``_gateway``) from this process, outside, until the command ends; its exit status
is theirs. They differ in who judges:

- the wrapper judges itself, with the policy files and patterns it is given, one guard for
  the whole command (phase ``session``), and prints the same summary as pytest (on stderr,
  after the command's own output); ``--report`` writes the same JSON report;
- ``--outbound-sandbox`` runs pytest again, inside, with the same arguments; that run's
  sessions judge (``_control``), so each request is the test's under way, in pytest's own
  summary, report and docs. The first run only waits: it prints nothing of its own.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from pytest_outbound._sandbox._gateway import Gateway, Judge
from pytest_outbound._sandbox._gateway import _own_work as own_work
from pytest_outbound._sandbox._namespace import (
    CommandNotStarted,
    SandboxUnavailable,
    launch,
    unavailable_reason,
)
from pytest_outbound._sandbox._programs import Programs
from pytest_outbound._sandbox._tun import Direct

if TYPE_CHECKING:
    import pytest

#: The way out named in every "cannot be made here" message.
WAY_OUT = "run without the sandbox (drop --outbound-sandbox, or set outbound_sandbox = off)"

_RESOLV_CONF = "# pytest-outbound sandbox: its DNS responder\nnameserver 127.0.0.1\n"


def sandbox_files(directory: str) -> list[tuple[str, str]]:
    """The sandbox's ``resolv.conf`` and ``nsswitch.conf`` in ``directory``, as (source,
    target) bind mounts: names are asked of the DNS responder, through the C library's own
    resolver (``hosts: files dns``), never of a service outside over a unix socket."""
    resolv = os.path.join(directory, "resolv.conf")
    Path(resolv).write_text(_RESOLV_CONF, encoding="utf-8")
    binds = [(resolv, "/etc/resolv.conf")]
    try:
        lines = Path("/etc/nsswitch.conf").read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return binds
    kept = [line for line in lines if not line.strip().startswith("hosts:")]
    nsswitch = os.path.join(directory, "nsswitch.conf")
    Path(nsswitch).write_text("\n".join([*kept, "hosts: files dns", ""]), encoding="utf-8")
    binds.append((nsswitch, "/etc/nsswitch.conf"))
    return binds


def run_sandboxed(
    command: Sequence[str],
    prepare: Callable[[str], tuple[Judge, Mapping[str, str]]],
    *,
    cwd: str | None = None,
    on_start: Callable[[subprocess.Popen[bytes]], None] | None = None,
) -> int:
    """Run ``command`` in the sandbox until it ends; its exit status (128 + the signal
    number when a signal ended it). ``prepare`` is given the sandbox's directory and returns
    the judge and the variables to add to the command's environment. Raises
    ``SandboxUnavailable`` and ``CommandNotStarted``."""
    directory = tempfile.mkdtemp(prefix="pytest-outbound-sandbox-")
    try:
        judge, extra = prepare(directory)
        env = {**os.environ, **extra}
        binds = sandbox_files(directory)
        started = launch(command, env, binds, cwd=cwd)
        programs = Programs(started.tables, started.netns)
        gateway = Gateway(judge, programs, port=started.port)
        gateway.serve(started.gateway, started.dns_udp, started.dns_tcp)
        direct = None
        if started.tun is not None:
            direct = Direct(started.tun, judge, programs, gateway.names_of, wrap=own_work)
            started.tun = None
            direct.serve()
        else:
            _say(
                f"no TUN device in the sandbox ({started.tun_error}): a connection or datagram"
                " straight to an address fails, unrecorded"
            )
        if on_start is not None:
            on_start(started.process)
        try:
            status = _wait(started.process)
        finally:
            if direct is not None:
                direct.close()
            gateway.close()
            programs.close()
        return status
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _say(text: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        print(f"pytest-outbound sandbox: {text}", file=sys.stderr, flush=True)


def _wait(process: subprocess.Popen[bytes]) -> int:
    """The command's exit status. Ctrl-C reaches it too (the terminal's process group): this
    process goes on serving until it has ended."""
    while True:
        try:
            code = process.wait()
            break
        except KeyboardInterrupt:
            continue
    return 128 - code if code < 0 else code


# -- pytest --outbound-sandbox -----------------------------------------------------------------


def usage_error(text: str) -> pytest.UsageError:
    import pytest

    return pytest.UsageError(f"outbound_sandbox: {text}; {WAY_OUT}")


def pytest_command(args: Sequence[str]) -> list[str]:
    """The command that runs this pytest again: the interpreter's own arguments kept
    (``python -X dev -m pytest``, a ``pytest`` script), else ``python -m pytest ARGS``."""
    orig = list(getattr(sys, "orig_argv", ()) or ())
    if orig and list(sys.argv[1:]) == list(args) and len(orig) > len(args):
        return [sys.executable, *orig[1:]]
    return [sys.executable, "-m", "pytest", *args]


def run_pytest(config: pytest.Config) -> int:
    """Run this pytest again inside the sandbox; its exit status. A sandbox that cannot be
    made is a ``pytest.UsageError`` (one line: the reason and the way out)."""
    from pytest_outbound._sandbox._control import CONTROL_ENV, TOKEN_ENV, Sessions

    reason = unavailable_reason()
    if reason is not None:
        raise usage_error(reason)
    params = config.invocation_params
    if params.plugins:
        raise usage_error(
            "it runs pytest again inside the sandbox, which pytest.main(plugins=...) cannot"
            " (run pytest as a command)"
        )
    sessions: list[Sessions] = []

    def prepare(directory: str) -> tuple[Judge, Mapping[str, str]]:
        registry = Sessions(directory)
        registry.serve()
        sessions.append(registry)
        return registry.judge, {CONTROL_ENV: registry.path, TOKEN_ENV: registry.issue_token()}

    def on_start(process: subprocess.Popen[bytes]) -> None:
        sessions[0].alive = lambda: process.poll() is None

    try:
        return run_sandboxed(
            pytest_command(params.args), prepare, cwd=str(params.dir), on_start=on_start
        )
    except (SandboxUnavailable, CommandNotStarted) as exc:
        raise usage_error(str(exc)) from None
    finally:
        for registry in sessions:
            registry.close()


# -- python -m pytest_outbound sandbox ---------------------------------------------------------


def run_command(
    command: Sequence[str],
    *,
    policies: Sequence[str] = (),
    allow: Sequence[str] = (),
    mode: str = "audit",
    report: str | None = None,
    offline: bool = False,
    machine_values: bool = True,
    out: TextIO | None = None,
) -> int:
    """The wrapper: ``command`` in the sandbox, judged by the policy, then the summary.

    Exit status: the command's; when it succeeded but something was blocked (enforce), 1;
    2 for a usage error (a bad policy, no command, no sandbox here), 127 when the command
    cannot start."""
    from pytest_outbound._decide import Context, Rules
    from pytest_outbound._errors import PolicyError
    from pytest_outbound._guard import ENFORCE, Guard
    from pytest_outbound._hosts import HostError, HostPattern
    from pytest_outbound._policy import Policy
    from pytest_outbound._record import DEFAULT_BODY_LIMIT
    from pytest_outbound._sandbox._judging import judge
    from pytest_outbound._sensitive import COMMON_WORDS, SensitiveScanner
    from pytest_outbound._sensitive import machine_values as probe_machine
    from pytest_outbound._summary import summary_lines

    stream = out if out is not None else sys.stderr
    prog = "python -m pytest_outbound sandbox"
    if not command:
        print(f"{prog}: error: name the command to run after --", file=stream)
        return 2
    policy = Policy()
    try:
        for path in policies:
            policy = policy.merge(Policy.from_toml(path))
        for text in allow:
            try:
                HostPattern.parse(text)
            except HostError as exc:
                raise PolicyError(f"--allow: {text!r} is not a host pattern: {exc}") from None
        policy = policy.merge(Policy((), tuple(allow)))
    except PolicyError as exc:
        print(f"{prog}: error: {exc}", file=stream)
        return 2
    values = probe_machine() if machine_values else []
    scanner = SensitiveScanner(values, min_length=4, ignore=COMMON_WORDS)
    guard = Guard(
        mode=mode,
        context=Context(Rules(policy, scanner)),
        rootpath=Path.cwd(),
        body_limit=DEFAULT_BODY_LIMIT,
    )
    guard.outside_phase = "session"
    guard.offline = offline

    def prepare(directory: str) -> tuple[Judge, Mapping[str, str]]:
        return (lambda ask: judge(guard, ask)), {}

    try:
        status = run_sandboxed(command, prepare)
    except SandboxUnavailable as exc:
        print(f"{prog}: error: {exc}; run the command without the sandbox", file=stream)
        return 2
    except CommandNotStarted as exc:
        print(f"{prog}: error: {exc}", file=stream)
        return 127
    records = list(guard.records)
    lines = [
        _rule(" outbound (sandbox) "),
        *summary_lines(mode, list(policy.destinations), records),
    ]
    blocked = mode == ENFORCE and any(not r.allowed for r in records)
    if blocked:
        lines.append(
            "requests were blocked (enforce): the run fails"
            + (f" (the command itself exited {status})" if status else "")
        )
    with contextlib.suppress(OSError, ValueError):
        stream.flush()
        print("\n".join(lines), file=stream)
    if report:
        from pytest_outbound._report import build_report, write_report

        write_report(
            report,
            build_report(
                mode=mode,
                destinations=list(policy.destinations),
                records=records,
                outside_blocked=len(guard.outside_blocked),
            ),
        )
    if status == 0 and blocked:
        return 1
    return status


def _rule(title: str) -> str:
    width = shutil.get_terminal_size((80, 24)).columns
    side = max(3, (width - len(title)) // 2)
    return "=" * side + title + "=" * (width - side - len(title))
