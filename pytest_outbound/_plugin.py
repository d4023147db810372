"""The pytest glue: options, markers, the ``outbound`` fixture, per-test context and the summary.

Registered through the ``pytest11`` entry point ``outbound`` (so ``-p no:outbound`` disables it).
All session state lives in one ``OutboundPlugin`` object kept in ``config.stash``; it installs
the interceptors in ``pytest_configure`` and undoes them exactly in ``pytest_unconfigure``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import os
import sys
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from _pytest.nodes import Node

from pytest_outbound import _exit, _hookspecs
from pytest_outbound._backstop import Backstop, Waiting, install_hook, own_work
from pytest_outbound._callsite import trim_blocked_traceback
from pytest_outbound._decide import ANY, Context, Entry, Rules, resolve_entry
from pytest_outbound._errors import OutboundBlocked, PolicyError
from pytest_outbound._guard import ENFORCE, MODES, OFF, Guard, Scope
from pytest_outbound._hosts import HostError, HostPattern
from pytest_outbound._interceptors import Installation, InstallError
from pytest_outbound._interceptors._body import finish_all
from pytest_outbound._policy import Destination, Policy, entry_pattern
from pytest_outbound._record import DEFAULT_BODY_LIMIT, EXPECTED_BLOCK, OutboundRequest
from pytest_outbound._sensitive import (
    COMMON_WORDS,
    SensitiveScanner,
    SensitiveValue,
    machine_values,
)
from pytest_outbound._summary import (
    destination_uses,
    internal_error_lines,
    summary_lines,
    unwatched_lines,
)

if TYPE_CHECKING:
    from pytest_outbound._children import ChildGuards, ChildWatch
    from pytest_outbound._fixture import Outbound

# Imported where they are used, not here: most runs never need them, and each module a plugin
# imports is loaded through pytest's assertion-rewriting import hook, whose cached-bytecode read
# costs several times a plain import's (_report: a report file, xdist; _children: enforce, or
# a child process in audit; _fixture: the ``outbound`` fixture; _messages: a blocked request).

MARKERS = {
    "outbound_allow": (
        "outbound_allow(*entries): also permit these destinations (by name) or host patterns"
        " in this test. See pytest-outbound."
    ),
    "outbound_only": (
        "outbound_only(*entries): only these destinations (by name) or host patterns may be"
        " contacted in this test. See pytest-outbound."
    ),
    "outbound_none": "outbound_none: nothing may be contacted in this test. See pytest-outbound.",
    "outbound_expect": (
        "outbound_expect(entry, count=None): fail unless entry (destination name or host"
        " pattern) was contacted, at least once or exactly count times. See pytest-outbound."
    ),
}

PLUGIN_KEY = pytest.StashKey["OutboundPlugin"]()
#: The guard started before the initial conftests are imported, for ``pytest_configure``.
EARLY_KEY = pytest.StashKey[tuple[Guard, Backstop]]()

# The floor beneath every road, from the moment pytest loads this plugin (before any conftest):
# the audit hook, switched on by each session's guard, and the exit watch's last word.
install_hook()
_exit.register()


def _mode_type(value: str) -> str:
    if value not in MODES:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a mode; choose one of: {', '.join(MODES)}"
        )
    return value


def _pattern_type(value: str) -> str:
    if value == ANY:
        return value  # (said once the policy is read: ``_load_policy``)
    try:
        HostPattern.parse(value)
    except HostError as exc:
        raise argparse.ArgumentTypeError(f"{value!r} is not a host pattern: {exc}") from None
    return value


def pytest_addoption(parser: pytest.Parser) -> None:
    # pytest registers the plugin now and goes on importing others: keep what they send
    Waiting.start()
    group = parser.getgroup("outbound", "outbound requests (pytest-outbound)")
    group.addoption(
        "--outbound-mode",
        type=_mode_type,
        default=None,
        metavar="MODE",
        help="audit (record and report, default), enforce (block and fail on undocumented"
        " egress) or off (patch nothing). Overrides the ini option outbound_mode.",
    )
    group.addoption(
        "--outbound-policy",
        action="append",
        default=[],
        metavar="PATH",
        help="a TOML policy file of documented destinations; repeatable. Added to the ini"
        " option outbound_policy.",
    )
    group.addoption(
        "--outbound-allow",
        action="append",
        default=[],
        type=_pattern_type,
        metavar="PATTERN",
        help="also allow this host pattern (example.com, *.example.com, 10.0.0.0/8,"
        " host:443, https://host); repeatable.",
    )
    group.addoption(
        "--outbound-offline",
        action="store_true",
        default=None,
        help="no real connection may leave the process, even to documented destinations:"
        " every request must be answered by a mock or outbound.stub.",
    )
    group.addoption(
        "--outbound-report",
        default=None,
        metavar="PATH",
        help="write the JSON report of every outbound request here (atomically).",
    )
    group.addoption(
        "--outbound-docs",
        default=None,
        metavar="PATH",
        help="write the documentation page (Markdown) generated from the policy and this run.",
    )
    group.addoption(
        "--outbound-docs-check",
        default=None,
        metavar="PATH",
        help="fail the run, with a diff, if the documentation page at PATH is out of date.",
    )
    group.addoption(
        "--outbound-shard",
        default=None,
        metavar="NAME",
        help="this run's shard label in the report (default: the CI's, where it names one),"
        " for python -m pytest_outbound merge.",
    )
    group.addoption(
        "--outbound-learn",
        default=None,
        metavar="PATH",
        help="write a draft policy of this run's undocumented requests to PATH, or append to"
        " the policy there what it does not allow yet (best from an audit run).",
    )
    group.addoption(
        "--outbound-force-verdicts",
        action="store_true",
        default=False,
        help="judge outbound_require_coverage and --outbound-docs-check even in a partial run"
        " (tests deselected by -k, -m, --lf, --deselect, narrower paths); by default those"
        " verdicts are left to a full run or a merged report.",
    )
    group.addoption(
        "--outbound-sandbox",
        action="store_true",
        default=None,
        help="Linux: run the session and every process it starts in a private network"
        " namespace whose only road out is the plugin's gateway and DNS responder, which judge"
        " what any program sends (curl, pycurl, grpcio, ctypes). Overrides outbound_sandbox.",
    )
    parser.addini("outbound_mode", "pytest-outbound mode: audit, enforce or off.", default="audit")
    parser.addini(
        "outbound_sandbox",
        "on: run the session in the sandbox (Linux user and network namespaces): its only road"
        " out is the plugin's gateway (HTTP CONNECT, HTTP proxy, SOCKS5) and DNS responder.",
        type="bool",
        default=False,
    )
    parser.addini(
        "outbound_report", "write the JSON report here (relative to the ini file).", type="paths"
    )
    parser.addini(
        "outbound_offline",
        "no real connection may leave the process, even to documented destinations.",
        type="bool",
        default=False,
    )
    parser.addini(
        "outbound_subprocess",
        "guard Python child processes too (subprocess, multiprocessing, os.exec/spawn/system),"
        " reporting their requests against the test. Default: on in enforce, off in audit;"
        " off in enforce, a Python child is a violation unless outbound_child_allow names it.",
        type="bool",
        default=None,
    )
    parser.addini(
        "outbound_child_allow",
        "programs allowed to run as child processes the plugin cannot guard (python -I, an"
        " environment without the bootstrap), one per line: a file name or fnmatch pattern"
        " (python2*) matched against the program's name, or a full path.",
        type="linelist",
    )
    parser.addini(
        "outbound_marker",
        "a marker name (network): a test without it that makes a real connection to a"
        " non-local address is a violation, and a test with it that never does is listed"
        " in the summary, so that -m 'not network' runs are truly offline.",
        default="",
    )
    parser.addini(
        "outbound_require_coverage",
        "fail the run when a documented destination was exercised by no test.",
        type="bool",
        default=False,
    )
    parser.addini(
        "outbound_policy",
        "TOML policy files of documented destinations, relative to the ini file.",
        type="paths",
        default=[],
    )
    parser.addini(
        "outbound_allow", "host patterns allowed in every test (one per line).", type="linelist"
    )
    parser.addini(
        "outbound_local",
        "allow (default): loopback and localhost traffic is not outbound; enforce: judge it too.",
        default="allow",
    )
    parser.addini(
        "outbound_sensitive",
        "values that must never leave the machine, one per line: 'kind: value' or 'value'.",
        type="linelist",
    )
    parser.addini(
        "outbound_sensitive_ignore",
        "values never scanned for (false positives), one per line; added to the common words.",
        type="linelist",
    )
    parser.addini(
        "outbound_sensitive_min_length",
        "values shorter than this are not scanned for (default 4).",
        default="4",
    )
    parser.addini(
        "outbound_sensitive_machine",
        "scan for this machine's hostname, FQDN, user, home, IP and MAC addresses (default true).",
        type="bool",
        default=True,
    )
    parser.addini(
        "outbound_body_limit",
        "bytes of each request body kept in the record (default 65536).",
        default=str(DEFAULT_BODY_LIMIT),
    )


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(_hookspecs)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_load_initial_conftests(
    early_config: pytest.Config, parser: pytest.Parser, args: list[str]
) -> Generator[None, object, object]:
    """Judge from before the rootdir's conftest is imported (phase ``collect``), with the
    policy of the files and options (a conftest's own destinations come with it)."""
    config = early_config
    if _sandbox_wanted(config):  # the run goes on inside the sandbox; this one only waits
        from pytest_outbound._sandbox._run import run_pytest

        raise SystemExit(run_pytest(config))
    mode = _mode(config, _early_option)
    if mode != OFF:
        guard = _new_guard(config, mode, _load_policy(config, _early_option), _early_option)
        backstop = Backstop(guard)
        early_children = _EarlyChildren(config, guard, backstop)
        backstop.on_process = early_children
        backstop.activate()
        Waiting.hand_over(backstop)
        config.stash[EARLY_KEY] = (guard, backstop)
        if os.environ.get(_SANDBOX_ENV):  # inside the sandbox: judge what its gateway sees
            _attach_sandbox(config, guard)
        if not config.invocation_params.plugins:  # this session owns its process
            _exit.expect(guard, lambda: 0, functools.partial(_blocked_by, guard))
    try:
        return (yield)
    except BaseException as exc:
        early = config.stash.get(EARLY_KEY, None)
        if early is not None:  # the run stops here (a conftest failed to import)
            early[1].deactivate()
            early_children.stop()
            if not isinstance(exc, SystemExit) or exc.code not in (None, 0):
                _exit.forget(early[0])  # it fails on its own
        raise


#: Set inside the sandbox (``_sandbox._control``): where its gateway takes sessions in.
#: Unset (the sandbox is off), nothing of the sandbox is imported.
_SANDBOX_ENV = "PYTEST_OUTBOUND_SANDBOX"


def _sandbox_wanted(config: pytest.Config) -> bool:
    """``outbound_sandbox`` is on, the mode is not off, and this run is not inside yet."""
    if os.environ.get(_SANDBOX_ENV):
        return False
    wanted = _early_option(config, "outbound_sandbox")
    if wanted is None:
        wanted = config.getini("outbound_sandbox")
    return bool(wanted) and _mode(config, _early_option) != OFF


def _attach_sandbox(config: pytest.Config, guard: Guard) -> None:
    """What the sandbox's gateway and DNS responder see is judged by ``guard`` (a
    pytest-xdist worker joins with the token its controller got for it)."""
    from pytest_outbound._sandbox._session import attach

    workerinput = getattr(config, "workerinput", None) or {}
    attach(guard, workerinput.get("outbound_sandbox_token"), owner=config)


def _blocked_by(guard: Guard) -> int:
    return _blocked_in(guard.mode, guard.records)


def _blocked_in(mode: str, records: Iterable[OutboundRequest]) -> int:
    """Requests blocked among ``records`` (enforce: every violation is blocked)."""
    if mode != ENFORCE:
        return 0
    return sum(not r.allowed and EXPECTED_BLOCK not in r.reasons for r in records)


def _guards_children(config: pytest.Config, mode: str) -> bool:
    """``outbound_subprocess``; unset: on in enforce."""
    value = config.getini("outbound_subprocess")
    return value if isinstance(value, bool) else mode == ENFORCE


class _EarlyChildren:
    """Children started while the initial conftests are imported: no bootstrap exists yet,
    so a Python child cannot be guarded (a violation in enforce, unless allowed), and any
    other is counted unwatched. The watch is made with the first child."""

    def __init__(self, config: pytest.Config, guard: Guard, backstop: Backstop) -> None:
        self.config, self.guard, self.backstop = config, guard, backstop
        self.watch: ChildWatch | None = None
        #: The bootstrap, made with the first child: the session takes it over.
        self.children: ChildGuards | None = None

    def __call__(self, event: str, args: tuple[Any, ...]) -> None:
        __tracebackhide__ = True
        if self.watch is None:
            from pytest_outbound._children import ChildGuards, ChildWatch

            config = self.config
            allow = [str(line) for line in config.getini("outbound_child_allow")]
            if _guards_children(config, self.guard.mode):
                self.children = ChildGuards(self.guard, config.rootpath, allow=allow)
            children = self.children
            self.watch = ChildWatch(
                self.guard,
                self.backstop,
                bootstrap=children.bootstrap if children is not None else None,
                allow=allow,
                before_launch=children.before_launch if children is not None else None,
            )
        self.watch.on_event(event, args)

    def close(self) -> Counter[str]:
        """The watch is over (the session's own takes over): what ran unwatched."""
        if self.watch is None:
            return Counter()
        self.watch.close()
        return self.watch.unwatched

    def stop(self) -> None:
        """The run ends before its session: the bootstrap goes too."""
        self.close()
        if self.children is not None:
            self.children.finish()


def _early_option(config: pytest.Config, name: str) -> Any:
    """An option before pytest parsed the command line whole (``known_args_namespace``)."""
    return getattr(config.known_args_namespace, name, None)


def _option(config: pytest.Config, name: str) -> Any:
    return config.getoption(name)


def _mode(config: pytest.Config, option: Any) -> str:
    mode = option(config, "outbound_mode") or str(config.getini("outbound_mode")).strip()
    if mode not in MODES:
        raise pytest.UsageError(
            f"outbound_mode = {mode!r} is not a mode; choose one of: {', '.join(MODES)}"
        )
    return str(mode)


def pytest_configure(config: pytest.Config) -> None:
    for text in MARKERS.values():
        config.addinivalue_line("markers", text)
    early = config.stash.get(EARLY_KEY, None)
    try:
        mode = _mode(config, _option)
        if mode == OFF:
            if early is not None:
                early[1].deactivate()
            Waiting.hand_over(None)
            return
        _check_ini_bools(config)
        _check_outputs(config)
        plugin = OutboundPlugin(config, mode, _load_policy(config, _option), early)
    except BaseException:
        if early is not None:
            early[1].deactivate()
            _exit.forget(early[0])  # a usage error: the run fails on its own
        raise
    config.stash[PLUGIN_KEY] = plugin
    config.pluginmanager.register(plugin, "outbound-session")
    if plugin.is_worker:
        config.pluginmanager.register(_WorkerRecords(plugin), "outbound-worker-records")
    elif getattr(config.option, "dist", "no") != "no":
        config.pluginmanager.register(_ControllerRecords(plugin), "outbound-controller-records")


def pytest_unconfigure(config: pytest.Config) -> None:
    plugin = config.stash.get(PLUGIN_KEY, None)
    if plugin is not None:
        plugin.close()
        config.pluginmanager.unregister(plugin)
        del config.stash[PLUGIN_KEY]
    for name in ("outbound-worker-records", "outbound-controller-records"):
        helper = config.pluginmanager.get_plugin(name)
        if helper is not None:
            config.pluginmanager.unregister(helper)


class _WorkerRecords:
    """pytest-xdist worker: each test's records travel with its reports, so a worker that dies
    (``os._exit``, a signal, the OOM killer) loses at most the test it was running. What is
    recorded between tests goes with the next report; what is left, at the session's end."""

    def __init__(self, plugin: OutboundPlugin) -> None:
        self.plugin = plugin

    @pytest.hookimpl(tryfirst=True)  # before xdist's own sends the report
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        records = self.plugin.guard.records
        sent = self.plugin.sent_records
        if len(records) > sent:
            from pytest_outbound._report import portable_records

            report.outbound_records = portable_records(  # type: ignore[attr-defined]
                records[sent:], self.plugin.scanner.mask
            )
            self.plugin.sent_records = len(records)


class _ControllerRecords:
    """pytest-xdist controller: take in the records each test's report carries, and name the
    test a worker was running when it died."""

    def __init__(self, plugin: OutboundPlugin) -> None:
        self.plugin = plugin

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        records = getattr(report, "outbound_records", None)
        if records:
            from pytest_outbound._report import request_from_json

            self.plugin.worker_records.extend(request_from_json(r) for r in records)
            del report.outbound_records  # (taken once)

    @pytest.hookimpl(optionalhook=True)
    def pytest_handlecrashitem(self, crashitem: str, report: Any, sched: Any) -> None:
        node = getattr(report, "node", None)
        worker = str(getattr(getattr(node, "gateway", None), "id", "") or node)
        state = self.plugin.workers.get(worker) or "crashed: it sent no data"
        self.plugin.workers[worker] = f"{state}; it was running {crashitem}"


def _load_policy(config: pytest.Config, option: Any) -> Policy:
    paths: list[Path] = list(config.getini("outbound_policy"))
    paths += [Path(p) for p in option(config, "outbound_policy") or ()]
    allowed = [
        ("outbound_allow", text)
        for text in (str(p).strip() for p in config.getini("outbound_allow"))
        if text
    ]
    allowed += [("--outbound-allow", text) for text in option(config, "outbound_allow") or ()]
    policy = Policy()
    try:
        files: dict[Path, Path] = {}
        for path in paths:  # a file named twice (ini and command line) is read once
            files.setdefault(path.resolve(), path)
        named: dict[str, set[Path]] = {}
        for resolved in files:
            named.setdefault(resolved.name, set()).add(resolved)
        for resolved, path in files.items():
            # two files of one name (outbound.toml) in messages: each by its whole path
            shown = str(resolved) if len(named[resolved.name]) > 1 else None
            policy = policy.merge(Policy.from_toml(path, shown or _display_path(config, path)))
        names = {d.name for d in policy}
        patterns = []
        for where, text in allowed:
            if text in names:  # a documented destination: allowed already
                continue
            if text == ANY:
                raise PolicyError(
                    f"{where} '*': '*' allows any destination in one test"
                    ' (@pytest.mark.outbound_allow("*"), outbound.allow("*")); to record'
                    " without blocking anywhere, use outbound_mode = audit"
                )
            try:
                entry_pattern(text, names)
            except ValueError as exc:
                raise PolicyError(f"{where}: {exc}") from None
            patterns.append(text)
        return policy.merge(Policy((), tuple(dict.fromkeys(patterns))))
    except PolicyError as exc:
        raise pytest.UsageError(str(exc)) from None


#: The ini options of type bool: a value pytest cannot read is a usage error naming the
#: option, before the first test (pytest's own error names neither, and comes when it is read).
_BOOL_INI = (
    "outbound_offline",
    "outbound_subprocess",
    "outbound_require_coverage",
    "outbound_sensitive_machine",
)


def _check_ini_bools(config: pytest.Config) -> None:
    for name in _BOOL_INI:
        try:
            config.getini(name)
        except (ValueError, pytest.UsageError) as exc:  # (pytest 9 raises the latter)
            value = str(exc).removeprefix("invalid truth value ")
            raise pytest.UsageError(
                f"{name} = {value}: write true or false (or yes/no, on/off, 1/0)"
            ) from None


def _check_outputs(config: pytest.Config) -> None:
    """The files the run writes at its end can be written: said before the first test, not
    as a traceback after the whole suite ran. Missing directories are created then; a path
    that is a directory, or below a file, or in a directory that cannot be written, is a
    usage error naming the option. A page to check must exist (unless the same run writes it)."""
    report = config.getoption("outbound_report")
    if report:
        _check_output(report, f"--outbound-report {report}")
    else:
        for path in config.getini("outbound_report")[:1]:
            _check_output(path, f"outbound_report = {path}")
    docs = config.getoption("outbound_docs")
    if docs:
        _check_output(docs, f"--outbound-docs {docs}")
    check = config.getoption("outbound_docs_check")
    if check:
        what = f"--outbound-docs-check {check}"
        target = Path(check)
        if target.is_dir():
            raise pytest.UsageError(f"{what}: is a directory; give the page to check")
        if not target.exists() and not (docs and Path(docs).resolve() == target.resolve()):
            raise pytest.UsageError(
                f"{what}: the page is missing; write it with --outbound-docs {check} (give"
                " both options the same path to check and write it in one run)"
            )


def _check_output(path: str | Path, what: str) -> None:
    target = Path(path)
    if target.is_dir():
        raise pytest.UsageError(f"{what}: is a directory; give the path of the file to write")
    for parent in target.absolute().parents:  # the nearest that exists must take the file
        if not parent.exists():
            continue
        if not parent.is_dir():
            raise pytest.UsageError(f"{what}: cannot write there: {parent} is not a directory")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise pytest.UsageError(
                f"{what}: cannot write there: the directory {parent} is not writable"
            )
        break


def _new_guard(config: pytest.Config, mode: str, policy: Policy, option: Any) -> Guard:
    _check_ini_bools(config)  # (the early guard reads outbound_offline before configure)
    local = str(config.getini("outbound_local")).strip()
    if local not in ("allow", "enforce"):
        raise pytest.UsageError(f"outbound_local = {local!r}: write allow or enforce")
    guard = Guard(
        mode=mode,
        context=Context(Rules(policy)),
        rootpath=config.rootpath,
        local_enforce=local == "enforce",
        body_limit=_int_ini(config, "outbound_body_limit", "65536"),
    )
    guard.offline = bool(option(config, "outbound_offline") or config.getini("outbound_offline"))
    guard.network_marker = _marker_ini(config)
    return guard


def _marker_ini(config: pytest.Config) -> str:
    marker = str(config.getini("outbound_marker")).strip()
    if marker and not marker.isidentifier():
        raise pytest.UsageError(
            f"outbound_marker = {marker!r}: write a marker name, such as network"
        )
    if marker:
        config.addinivalue_line(
            "markers",
            f"{marker}: this test may make real connections to non-local addresses"
            " (outbound_marker)",
        )
    return marker


def _display_path(config: pytest.Config, path: str | Path) -> str:
    """``path`` relative to the rootdir, for messages: below it as it lies there, else as
    ``../`` steps up from it (two files never read alike, whatever the directory pytest ran
    in), or absolute where no relative path leads (another drive)."""
    resolved = Path(path).resolve()
    try:
        return str(resolved.relative_to(config.rootpath))
    except ValueError:
        pass
    try:
        return os.path.relpath(resolved, config.rootpath)
    except ValueError:
        return str(resolved)


def _int_ini(config: pytest.Config, name: str, example: str) -> int:
    text = str(config.getini(name)).strip()
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise pytest.UsageError(f"{name} = {text!r}: write a whole number, e.g. {example}")
    return value


@functools.cache
def _machine_values() -> tuple[SensitiveValue, ...]:
    """This machine's hostname, user, addresses...: the same for every session in a process
    (probed once, as the plugin's own work: the guard does not judge its name lookups)."""
    with own_work():
        return tuple(machine_values())


def _sensitive_scanner(config: pytest.Config) -> SensitiveScanner:
    """This machine's values, the ini option's, and every plugin's/conftest's hook results.

    Sensitive values are not directory-scoped: a value a conftest anywhere declares secret must
    leave from no test. Called again once every conftest is loaded (after collection).
    """
    values = list(_machine_values()) if config.getini("outbound_sensitive_machine") else []
    for line in config.getini("outbound_sensitive"):
        kind, sep, value = str(line).partition(":")
        kind, value = (kind.strip(), value.strip()) if sep else ("configured", kind.strip())
        if value:
            values.append(SensitiveValue(kind or "configured", value))
    hook = config.hook.pytest_outbound_sensitive_values
    for impl in hook.get_hookimpls():
        source = _display_path(config, getattr(impl.plugin, "__file__", None) or impl.plugin_name)
        kwargs = {name: config for name in impl.argnames if name == "config"}
        try:
            values.extend(_sensitive_from_hook(impl.function(**kwargs), source))
        except pytest.UsageError:
            raise
        except Exception as exc:  # a bug of the hook's own: one line, before the first test
            filename = getattr(impl.plugin, "__file__", None) or impl.plugin_name
            hook_name = "pytest_outbound_sensitive_values"
            raise pytest.UsageError(
                f"{source}: {_hook_failure(exc, filename, hook_name)}"
            ) from None
    ignore = COMMON_WORDS | {str(v).strip() for v in config.getini("outbound_sensitive_ignore")}
    min_length = _int_ini(config, "outbound_sensitive_min_length", "4")
    return SensitiveScanner(values, min_length=min_length, ignore=ignore)


def _sensitive_from_hook(result: object, source: str) -> list[SensitiveValue]:
    if result is None:
        return []
    if not isinstance(result, Mapping):
        raise pytest.UsageError(
            f"{source}: pytest_outbound_sensitive_values returned {result!r};"
            ' return a mapping of kind to values, e.g. {"customer-id": ["ACME-7731"]}'
        )
    values = []
    for kind, items in result.items():
        for value in [items] if isinstance(items, str) else items:
            if str(value):
                values.append(SensitiveValue(str(kind), str(value)))
    return values


@pytest.fixture
def outbound(request: pytest.FixtureRequest) -> Outbound:
    """This test's outbound requests and tools: ``requests``, ``to``, ``assert_contacted``,
    ``assert_not_contacted``, ``allow``, ``stub``."""
    plugin = request.config.stash.get(PLUGIN_KEY, None)
    scope = plugin.scope_of(request.node) if plugin is not None else None
    if scope is None:
        pytest.fail(
            "the outbound fixture needs pytest-outbound active: outbound_mode is off here"
            " (set outbound_mode = audit or enforce)",
            pytrace=False,
        )
    from pytest_outbound._fixture import Outbound

    return Outbound(scope)


class OutboundPlugin:
    """One pytest session's interception: the guard, per-directory rules, phases, summary."""

    def __init__(
        self,
        config: pytest.Config,
        mode: str,
        policy: Policy,
        early: tuple[Guard, Backstop] | None = None,
    ) -> None:
        self.config = config
        self.mode = mode
        if early is None or early[0].mode != mode:
            if early is not None:
                early[1].deactivate()
            guard = _new_guard(config, mode, policy, _option)
            early = (guard, Backstop(guard))
            early[1].activate()
            Waiting.hand_over(early[1])
        self.guard, self.backstop = early
        if os.environ.get(_SANDBOX_ENV):
            _attach_sandbox(config, self.guard)
        #: Whether this session owns its process: it then judges until the interpreter's
        #: last ``atexit`` handler (not under ``pytest.main(plugins=...)``, as pytester runs
        #: sessions inside a process that goes on).
        self.owns_process = not config.invocation_params.plugins
        try:
            self.scanner = _sensitive_scanner(config)
            self.root_rules = Rules(policy, self.scanner)
            self.guard.session_context = Context(self.root_rules)
            self.installation = Installation(self.guard)
        except InstallError as exc:
            self.backstop.deactivate()
            raise pytest.UsageError(str(exc)) from None
        except BaseException:
            self.backstop.deactivate()
            raise
        self.rules_by_dir: dict[Path, Rules] = {}
        self._rules_by_parent: dict[Node | None, Rules] = {}
        self.children: ChildGuards | None = None
        child_allow = [str(line) for line in config.getini("outbound_child_allow")]
        early_children = self.backstop.on_process
        if isinstance(early_children, _EarlyChildren):  # children of the conftests' import
            self.children = early_children.children
        if self.children is None and _guards_children(config, mode):
            from pytest_outbound._children import ChildGuards

            self.children = ChildGuards(self.guard, config.rootpath, allow=child_allow)
        #: Filled on the controller from pytest-xdist workers (``pytest_testnodedown``).
        self.is_worker = hasattr(config, "workerinput")
        self.worker_unwatched: Counter[str] = Counter()
        self._child_allow = child_allow
        self.child_watch: ChildWatch | None = None
        if isinstance(early_children, _EarlyChildren):
            self.worker_unwatched.update(early_children.close())
            self.backstop.on_process = None
        if self.children is not None or mode == ENFORCE:
            self._watch_children()
        else:  # audit, children unguarded: the watch comes with the first child (start-up)
            self.backstop.on_process = self._first_child
        if self.is_worker:  # the controller's child guard gives way to this session's own
            child = sys.modules.get("pytest_outbound._child")
            if child is not None:
                child.stop_for_worker()
        #: The process this session runs in (a forked child inherits the plugin).
        self._pid = os.getpid()
        self.worker_records: list[OutboundRequest] = []
        #: pytest-xdist worker: how many of the guard's records went with a test's report.
        self.sent_records = 0
        self.worker_destinations: dict[str, Destination] = {}
        self.worker_outside_blocked = 0
        self.worker_internal_errors: list[tuple[str, str]] = []
        self.worker_install_errors: list[str] = []
        #: The installers' failures the tests have reported, each once, for the summary.
        self._install_errors_shown: dict[str, None] = {}
        self.workers: dict[str, str] = {}
        #: ``outbound_marker``: the scopes of the tests that carry the marker (those that
        #: never reached the network are listed), and the workers' list of those.
        self._marked: list[Scope] = []
        self.worker_marked_offline: list[str] = []
        #: Tests were deselected, in this process or (xdist) a worker's: the whole-suite
        #: verdicts are left to a full run (``_partial_reason``).
        self.deselected = False
        #: Notes for the summary that are not failures (a verdict left to a full run).
        self.notes: list[str] = []
        self.problems: list[str] = []
        self.finished = False
        self._suspended: list[Scope | None] = []
        #: Wide fixtures whose setup has begun and may not have ended (``pytest_fixture_setup``).
        self._setting_up: list[pytest.FixtureDef[Any]] = []
        #: ``_settle_fixtures`` runs in whichever thread asks first (a pool's worker may make
        #: the first request after a wide setup): the fixture stack changes under this lock.
        self._fixture_lock = threading.RLock()
        #: Each fixture definition set up so far: is it wider than a function?
        self._wide: dict[pytest.FixtureDef[Any], bool] = {}
        self._default_contexts: dict[Rules, Context] = {}
        #: Each collected item's context, until its setup takes it. (Keyed by the item, not
        #: ``id(item)``: every ``id()`` call raises an audit event, which the hook pays for.)
        self._contexts: dict[pytest.Item, Context] = {}
        #: outbound_expect markers of the items that carry any.
        self._expects: dict[pytest.Item, tuple[tuple[Entry, int | None], ...]] = {}
        #: The test running now and its scope (set by its setup hook, cleared after teardown).
        self._item: pytest.Item | None = None
        self._scope: Scope | None = None
        #: The session, once its exit status is fixed (``pytest_sessionfinish``): a request
        #: blocked after that still fails it.
        self._session: pytest.Session | None = None
        #: How many of the guard's records the report written last holds.
        self._reported = 0
        #: pytest-xdist controller: where workers tell what they blocked at exit.
        self._late_file: str | None = None
        if self.owns_process:  # the exit's last word checks this session's blocks
            count = (lambda: 0) if self.is_worker else self._blocked_count
            _exit.expect(self.guard, self._exit_status, count)

    def close(self) -> None:
        """At unconfigure: the patches are undone. A session that owns its process goes on
        judging (phase ``exit``) through the audit hook until the interpreter's last
        ``atexit`` handler; any other stops."""
        self.guard.active = False
        self.installation.undo()
        children = self.children
        if children is not None:  # what children recorded since the session's end
            if self.owns_process:  # the spool stays until the interpreter exits
                self._take_children(children.collect())
                children.update(None, "exit")
                children.on_exit = self._children_at_exit
            else:  # the bootstrap stays for a child still starting; the spool is read last
                self._take_children(children.finish(keep_bootstrap=True))
        guard = self.guard
        guard.scope = None
        guard.settle = None
        if not self.is_worker:
            self._after_session()
        if self.owns_process:
            guard.outside_phase = "exit"
            if self.is_worker:
                tell = self.config.workerinput.get("outbound_late")  # type: ignore[attr-defined]
                _exit.watch(guard, self._exit_status, None, tell)
            else:
                _exit.watch(guard, self._exit_status, self._after_session)
        else:
            self.backstop.deactivate()
            if self.child_watch is not None:
                self.child_watch.close()
        self._workers_blocked_late()
        session = self._session
        if session is not None and not self.is_worker and not self.finished:
            self._fail_for_hidden_blocks(session)  # the session ended before sessionfinish
            for problem in self.problems:
                sys.stderr.write(f"pytest-outbound: {problem}\n")

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        """pytest-xdist controller: a worker blocks what its tests' ``atexit`` handlers send
        after it reported; it tells this file, read once the workers are gone."""
        if self._late_file is None:
            handle, self._late_file = tempfile.mkstemp(prefix="pytest-outbound-late-")
            os.close(handle)
        node.workerinput["outbound_late"] = self._late_file
        if os.environ.get(_SANDBOX_ENV):  # the worker judges its tests' gateway requests
            from pytest_outbound._sandbox._session import worker_token

            node.workerinput["outbound_sandbox_token"] = worker_token()

    def _workers_blocked_late(self) -> None:
        """Requests workers blocked after they reported (their exit): the run fails too."""
        path, self._late_file = self._late_file, None
        if path is None:
            return
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)
        for line in lines:
            sys.stderr.write(
                f"pytest-outbound: {line}; blocked in a pytest-xdist worker after it reported;"
                " the run fails (outbound_mode = enforce)\n"
            )
        session = self._session
        if lines and session is not None and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self._session = session
        learn = self.config.getoption("outbound_learn")
        if learn and not self.is_worker:  # a target that cannot take the draft: say so now
            from pytest_outbound._learn import LearnError, check_target

            try:
                check_target(learn)
            except LearnError as exc:
                raise pytest.UsageError(f"--outbound-learn {exc}") from None

    def _exit_status(self) -> int:
        session = self._session
        return int(session.exitstatus) if session is not None else 0

    def _blocked_after_the_outcome(self, request: OutboundRequest) -> None:
        """Blocked after ``pytest_sessionfinish`` fixed the exit status (in the terminal
        summary, at unconfigure, in a cleanup): the run fails all the same."""
        session = self._session
        if session is not None and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        _exit.say_blocked(request, "after the test session")
        if self.is_worker:  # it reported already: its controller reads this at the end
            _exit.tell(self.config.workerinput.get("outbound_late"), [request])  # type: ignore[attr-defined]

    def _on_request(self, request: OutboundRequest) -> None:
        self.config.hook.pytest_outbound_request(request=request)

    def _on_violation(self, request: OutboundRequest) -> None:
        self.config.hook.pytest_outbound_violation(request=request)

    def pytest_plugin_registered(self) -> None:
        """A conftest or plugin registered (now or later): does anyone implement our hooks?
        The guard calls them only then: most suites implement neither, and every request
        would pay for the call."""
        if os.getpid() != self._pid:
            return  # a forked child: the guard writes its records to the parent (_children)
        hook = self.config.hook
        self.guard.listen(
            on_request=self._on_request if hook.pytest_outbound_request.get_hookimpls() else None,
            on_violation=(
                self._on_violation if hook.pytest_outbound_violation.get_hookimpls() else None
            ),
        )

    # -- per-directory and per-test policy -------------------------------------------------

    def rules_for(self, item: pytest.Item) -> Rules:
        rules = self._rules_by_parent.get(item.parent)
        if rules is not None:
            return rules
        key = item.path.parent
        rules = self.rules_by_dir.get(key)
        if rules is None:
            extra = tuple(self._conftest_destinations(item))
            if extra:
                rules = Rules(self.root_rules.policy.merge(Policy(extra)), self.scanner)
            else:
                rules = self.root_rules
            self.rules_by_dir[key] = rules
        self._rules_by_parent[item.parent] = rules
        return rules

    def _conftest_destinations(self, item: pytest.Item) -> Iterable[Destination]:
        caller = item.ihook.pytest_outbound_destinations
        for impl in caller.get_hookimpls():
            filename = getattr(impl.plugin, "__file__", None) or impl.plugin_name
            source = _display_path(self.config, filename)
            kwargs = {name: self.config for name in impl.argnames if name == "config"}
            try:
                result = impl.function(**kwargs)
                if (
                    result is None
                    or not isinstance(result, Iterable)
                    or isinstance(result, str | Destination)
                ):
                    raise PolicyError(
                        f"pytest_outbound_destinations returned {result!r};"
                        " return a list of Destination(...) objects (an empty one for none)",
                        source,
                    )
                found = list(result)  # (a generator runs here)
            except PolicyError as exc:
                raise PolicyError(exc.message, exc.source or source) from None
            except Exception as exc:  # e.g. Destination(host=...) for hosts=, or any bug
                raise PolicyError(_hook_failure(exc, filename), source) from None
            for dest in found:
                if not isinstance(dest, Destination):
                    raise PolicyError(
                        f"pytest_outbound_destinations returned {dest!r};"
                        " return Destination(...) objects",
                        source,
                    )
                yield dest if dest.source else dataclasses.replace(dest, source=source)

    def context_for(self, item: pytest.Item) -> Context:
        rules = self.rules_for(item)
        if not _has_outbound_marker(item):  # most tests: one shared context per directory
            return self._default_context(rules)
        restriction: str | None = None
        only: tuple[Entry, ...] = ()
        source = ""
        allow: list[Entry] = []
        expect: list[tuple[Entry, int | None]] = []
        for node, mark in item.iter_markers_with_node():
            if not mark.name.startswith("outbound_"):
                continue
            where = f"@pytest.mark.{mark.name} on {_describe_node(node)}"
            try:
                if mark.name in ("outbound_only", "outbound_none"):
                    # a farther one gives way to the closest, but is checked all the same
                    entries = _restriction_entries(mark, rules, where)
                    if restriction is None:
                        restriction = mark.name.removeprefix("outbound_")
                        only, source = entries, where
                elif mark.name == "outbound_allow":
                    _no_keywords(mark, where, "outbound_allow(*entries)")
                    if not mark.args:
                        raise PolicyError(
                            f"{where}: name at least one destination or host pattern"
                            " ('*' allows any destination)"
                        )
                    allow.extend(resolve_entry(a, rules, where) for a in mark.args)
                elif mark.name == "outbound_expect":
                    expect.append(_expect_entry(mark, rules, where))
            except PolicyError as exc:
                raise _at_marker(exc, where, node) from None
        if expect:
            self._expects[item] = tuple(expect)
        if restriction is None and not allow:
            return self._default_context(rules)
        return Context(rules, restriction, only, tuple(allow), source)

    def _default_context(self, rules: Rules) -> Context:
        # (keyed by the rules, not ``id(rules)``: each ``id()`` call raises an audit event)
        default = self._default_contexts.get(rules)
        if default is None:
            default = self._default_contexts[rules] = Context(rules)
        return default

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        # Every conftest is loaded now: take in their sensitive values too.
        self.scanner = _sensitive_scanner(self.config)
        self.root_rules = Rules(self.root_rules.policy, self.scanner)
        self.rules_by_dir.clear()
        self._rules_by_parent.clear()
        self.guard.session_context = Context(self.root_rules)
        try:
            for item in items:  # a marker or conftest hook at fault is a usage error now
                self._contexts[item] = self.context_for(item)
        except PolicyError as exc:
            raise pytest.UsageError(str(exc)) from None

    def pytest_collection_finish(self) -> None:
        self.guard.outside_phase = "session"
        try:
            self.installation.catch_up()  # what the test modules imported, if not seen yet
        except InstallError as exc:
            if not self.is_worker:  # xdist loses a worker's usage error: its setups fail
                raise pytest.UsageError(str(exc)) from None

    # -- phases ----------------------------------------------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_fixture_setup(self, fixturedef: pytest.FixtureDef[Any]) -> None:
        """A fixture wider than a function belongs to no one test: its egress (setup and
        teardown) is the session's.

        A plain hook, not a wrapper: pluggy calls it for every fixture set up, three or more
        per test in many suites, and a wrapper costs several times a plain call. So the end
        of a wide fixture's setup is not seen as it happens: the fixture waits in
        ``_setting_up`` until pytest has cached its value (or its error), which is looked at
        whenever the test's scope is asked for while it is left (``Guard.current``: before a
        request is judged, a thread started), and at the phase's end (``_settle_fixtures``)."""
        wide = self._wide.get(fixturedef)
        if wide is None:  # ``scope`` is an enum's value: a property, read once per fixture
            wide = self._wide[fixturedef] = fixturedef.scope != "function"
        if not wide:
            return
        with self._fixture_lock:
            fixturedef.addfinalizer(self._enter_test_again)  # runs last: after its teardown
            self._leave_test()
            self._setting_up.append(fixturedef)
            self.guard.settle = self._settle_fixtures

    def _settle_fixtures(self, ended: bool = False) -> None:
        """The wide fixtures whose setup has ended (all of them when ``ended``, at a phase's
        end): the test's scope again, and a finalizer that leaves it before their teardown.
        Nested setups end last first. Any thread may ask: a setup whose value pytest has
        cached has ended, whoever looks (a request from a pool's worker after the test's
        ``getfixturevalue`` is the test's)."""
        with self._fixture_lock:
            pending = self._setting_up
            while pending and (ended or pending[-1].cached_result is not None):
                pending.pop().addfinalizer(self._leave_test)  # runs first: before its teardown
                self._enter_test_again()
            if not pending:
                self.guard.settle = None

    def _leave_test(self) -> None:
        with self._fixture_lock:
            self._suspended.append(self.guard.scope)
            self.guard.scope = None

    def _enter_test_again(self) -> None:
        with self._fixture_lock:
            if self._suspended:
                self.guard.scope = self._suspended.pop()

    # Each phase runs inside a tryfirst hook wrapper: the test's scope is set before the code of
    # that phase of every plugin registered before this one (and of the conftests loaded at
    # start-up) runs, and the phase is settled when it has really ended. (Settling in
    # pytest_runtest_makereport instead would be cheaper, but pytest calls that hook for every
    # subtest too, in the middle of the call phase.)

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> Generator[None, object, object]:
        context = self._contexts.pop(item, None)
        if context is None:
            try:
                context = self.context_for(item)  # made outside collection, or run again
            except PolicyError as exc:
                raise pytest.UsageError(str(exc)) from None
        scope = Scope(item.nodeid, context)
        marker = self.guard.network_marker
        if marker:
            if item.get_closest_marker(marker) is None:
                scope.unmarked = marker
            else:
                self._marked.append(scope)
        self._item, self._scope = item, scope
        # not contextlib.suppress: a context manager per test costs more than this
        try:  # noqa: SIM105
            self.installation.catch_up()
        except InstallError:
            pass  # fails the setup where it ends (``_settle``): pytest's own must run first
        return (yield from self._phase(item, scope, "setup"))

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, object, object]:
        return (yield from self._phase(item, self._scope_for(item), "call"))

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_teardown(self, item: pytest.Item) -> Generator[None, object, object]:
        try:
            return (yield from self._phase(item, self._scope_for(item), "teardown"))
        finally:
            self.guard.scope = None
            self._item = self._scope = None
            if self.children is not None:
                self.children.update(None, self.guard.outside_phase)

    def _scope_for(self, item: pytest.Item) -> Scope:
        scope = self._scope
        if item is not self._item or scope is None:  # its setup hook did not run (rare)
            scope = Scope(item.nodeid, Context(self.rules_for(item)))
            self._item, self._scope = item, scope
        return scope

    def scope_of(self, item: Node) -> Scope | None:
        """The running test's scope (the ``outbound`` fixture's), if ``item`` is that test."""
        return self._scope if item is self._item and self._scope is not None else None

    def _phase(
        self, item: pytest.Item, scope: Scope, phase: str
    ) -> Generator[None, object, object]:
        scope.phase = phase
        self.guard.scope = scope
        if self.children is not None:
            self.children.update(scope, phase)
        try:
            result = yield
        except BaseException as exc:
            if not self.config.getoption("fulltrace", False):
                trim_blocked_traceback(exc)  # no library frame's arguments shown (the URL...)
            self._settle(item, scope, phase, exc)
            raise
        self._settle(item, scope, phase, None)
        return result

    def _settle(
        self, item: pytest.Item, scope: Scope, phase: str, raised: BaseException | None
    ) -> None:
        """After a phase: fail for blocked requests the code swallowed, and unmet expectations.
        Wide fixtures set up in the phase have ended by now, whatever was left unsettled."""
        if self._setting_up:
            self._settle_fixtures(ended=True)
        if scope.streams:  # streamed bodies still unjudged: what passed of them is judged now
            finish_all(scope.streams)
        children = self._collect_children(scope) if self.children is not None else []
        if not (
            scope.pending
            or children
            or scope.deferred
            or (phase == "call" and item in self._expects)
            or self.installation.error is not None
        ):
            return  # the common case: nothing to add
        # A library could not be patched: the phase that imported it fails, and every test's
        # setup from then on while it is imported (what that library sends is not judged).
        errors = self._take_install_errors(current_too=phase == "setup")
        # the summary says them again: a skip or an xfail report does not show them
        self._install_errors_shown.update(dict.fromkeys(errors))
        pending, scope.pending = scope.pending, []
        hidden = bool(pending or children) and _hides_failure(item, raised)
        if hidden:
            # A skip or an xfail would hide the block (``except Exception: pytest.skip()``):
            # the test's teardown fails instead, whatever the outcome.
            scope.deferred.append(_hidden_text([*pending], children))
            pending, children = [], []
        if phase == "teardown" and scope.deferred:
            if item.get_closest_marker("xfail") is not None:
                # pytest's xfail would take this teardown error for the expected failure too
                self.config.pluginmanager.register(_ErrorNotXfail(item))
            if raised is None or hidden:  # a skip or xfail in the teardown hides nothing
                texts = [*errors, *scope.deferred]
                if pending:
                    texts.append(_swallowed_text(pending))
                if children:
                    texts.append(_children_text(children))
                pytest.fail("\n\n".join(texts), pytrace=False)
        if raised is not None:
            for error in errors:
                item.add_report_section(phase, "outbound", error)
            surfaced = {id(e) for e in _exception_chain(raised)}
            swallowed = [e for e in pending if id(e) not in surfaced]
            if swallowed:
                item.add_report_section(phase, "outbound", _swallowed_text(swallowed))
            if children:
                item.add_report_section(phase, "outbound", _children_text(children))
            for text in scope.deferred if phase == "teardown" else ():
                item.add_report_section(phase, "outbound", text)
            return
        problems = errors
        if pending:
            problems.append(_swallowed_text(pending))
        if children:
            problems.append(_children_text(children))
        if phase == "call":
            problems.extend(_unmet_expectations(self._expects.get(item, ()), scope))
        if problems:
            pytest.fail("\n\n".join(problems), pytrace=False)

    def _collect_children(self, scope: Scope | None) -> list[OutboundRequest]:
        """Take in what child processes recorded; return this test's violations to fail it."""
        records = self.children.collect() if self.children is not None else None
        return self._take_children(records, scope) if records else []

    def _take_children(
        self, records: list[OutboundRequest], scope: Scope | None = None
    ) -> list[OutboundRequest]:
        blocked: list[OutboundRequest] = []
        enforcing = self.guard.mode == ENFORCE
        for record in records:
            mine = scope is not None and record.nodeid == scope.nodeid
            self.guard.records.append(record)
            if mine and scope is not None:
                scope.records.append(record)
            if record.verdict == "violation" and enforcing:
                (blocked if mine else self.guard.outside_blocked).append(record)
                on_block = self.guard.on_outside_block
                if not mine and self._session is not None and on_block is not None:
                    # after the exit status was fixed: it fails all the same
                    if on_block != self._blocked_after_the_outcome:
                        _exit.say_blocked(record, "in a child process after the test session")
                    on_block(record)
        return blocked

    def _children_at_exit(self, records: list[OutboundRequest]) -> None:
        """The children's last records, read as the interpreter exits (before the exit
        watch's last word, which fails the exit for any that was blocked)."""
        self._take_children(records)
        if records and not self.is_worker:
            self._after_session()

    def _watch_children(self) -> ChildWatch:
        """Every child process is judged as it starts (``_children``)."""
        from pytest_outbound._children import ChildWatch

        children = self.children
        watch = self.child_watch = ChildWatch(
            self.guard,
            self.backstop,
            bootstrap=children.bootstrap if children is not None else None,
            allow=self._child_allow,
            before_launch=children.before_launch if children is not None else None,
            spawns_workers=lambda: self.config.pluginmanager.has_plugin("dsession"),
        )
        self.backstop.on_process = watch.on_event
        return watch

    def _first_child(self, event: str, args: tuple[Any, ...]) -> None:
        __tracebackhide__ = True
        watch = self.child_watch
        if watch is None:
            watch = self._watch_children()
        watch.on_event(event, args)

    def unwatched(self) -> Counter[str]:
        """Child processes that ran unwatched, per program (this process's, its children's,
        the workers')."""
        counts: Counter[str] = Counter()
        if self.child_watch is not None:
            counts.update(self.child_watch.unwatched)
        if self.children is not None:
            counts.update(self.children.unwatched)
        counts.update(self.worker_unwatched)
        return counts

    # -- reporting -------------------------------------------------------------------------

    def destinations(self) -> list[Destination]:
        """Every documented destination this session knew, policy files first."""
        seen: dict[str, Destination] = {d.name: d for d in self.root_rules.policy}
        more: dict[str, Destination] = {}
        for rules in self.rules_by_dir.values():
            for d in rules.policy:
                if d.name not in seen:
                    more.setdefault(d.name, d)
        for name, d in self.worker_destinations.items():
            if name not in seen:
                more.setdefault(name, d)
        # A directory's own (its conftest's hook) after the session's, by name: the same
        # order whichever directories a run (or a CI shard) collected first.
        return [*seen.values(), *(more[name] for name in sorted(more))]

    def records(self) -> list[OutboundRequest]:
        return [*self.guard.records, *self.worker_records]

    def internal_errors(self) -> list[tuple[str, str]]:
        """The plugin's own failures while judging, the workers' too."""
        return [*self.guard.internal_errors, *self.worker_internal_errors]

    def outside_blocked(self) -> int:
        return len(self.guard.outside_blocked) + self.worker_outside_blocked

    def pytest_deselected(self, items: Sequence[pytest.Item]) -> None:
        if items:
            self.deselected = True

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: object) -> None:
        """pytest-xdist controller: take in a worker's records; name a worker that died."""
        worker = str(getattr(getattr(node, "gateway", None), "id", "") or node)
        data = getattr(node, "workeroutput", {}).get("outbound")
        if data is None:
            self.workers[worker] = f"crashed: {error or 'it sent no data'}"
            return
        self.workers[worker] = "ok" if error is None else f"crashed: {error}"
        from pytest_outbound._report import destination_from_json, request_from_json

        self.worker_records.extend(request_from_json(r) for r in data["records"])
        for raw in data["destinations"]:
            self.worker_destinations.setdefault(raw["name"], destination_from_json(raw))
        self.worker_outside_blocked += int(data["outside_blocked"])
        self.worker_install_errors.extend(str(e) for e in data.get("install_errors", ()))
        self.worker_unwatched.update(data.get("unwatched", {}))
        self.worker_internal_errors.extend(
            (str(what), str(text)) for what, text in data.get("internal_errors", ())
        )
        self.deselected = self.deselected or bool(data.get("deselected"))
        self.worker_marked_offline.extend(str(n) for n in data.get("marked_offline", ()))

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        finish_all(self.guard.streams)
        self._collect_children(None)
        if self.children is not None:
            self.children.update(None, "session")
        self._session = session
        self.guard.on_outside_block = self._blocked_after_the_outcome
        if self.is_worker:  # the controller reports; a worker hands its data over
            from pytest_outbound._report import destination_json, portable_records

            session.config.workeroutput["outbound"] = {  # type: ignore[attr-defined]
                "records": portable_records(
                    self.guard.records[self.sent_records :], self.scanner.mask
                ),
                "destinations": [destination_json(d) for d in self.destinations()],
                "outside_blocked": len(self.guard.outside_blocked),
                "install_errors": self._install_errors(),
                "unwatched": dict(self.unwatched()),
                "internal_errors": [list(error) for error in self.guard.internal_errors],
                "deselected": self.deselected,
                "marked_offline": self._marked_offline(),
            }
            return
        if session.exitstatus == pytest.ExitCode.USAGE_ERROR:
            return  # no test ran: the one-line usage error is all there is to say
        destinations, records = self.destinations(), self.records()
        self.finished = True
        self.problems = self._problems(destinations, records)
        report_path = self._report_path()
        if report_path:
            from pytest_outbound._report import write_report

            try:  # (checked before the first test; the file system can change since)
                write_report(report_path, self._build_report())
            except OSError as exc:
                self.problems.append(
                    f"--outbound-report {report_path}: cannot write it: {exc.strerror or exc}"
                )
            self._reported = len(self.guard.records)
        learn = self.config.getoption("outbound_learn")
        if learn:  # from the report this run writes: `init --from-report` gives the same file
            from pytest_outbound._learn import LearnError, learn_into
            from pytest_outbound._learn import summary_lines as learned_lines

            try:
                self.notes.extend(learned_lines(learn, learn_into(learn, self._build_report())))
            except LearnError as exc:
                self.problems.append(f"--outbound-learn {exc}")
        if self.problems and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        self._fail_for_hidden_blocks(session, records)

    def _fail_for_hidden_blocks(
        self, session: pytest.Session, records: list[OutboundRequest] | None = None
    ) -> None:
        """The last check, whatever hid a block (a test's outcome rewritten by a hook,
        ``pytest.exit(returncode=0)``, a skip pytest has no hook for): in enforce, a run
        with a blocked request does not pass."""
        if session.exitstatus != pytest.ExitCode.OK or self.mode != ENFORCE:
            return
        count = self._blocked_count(records)
        if count:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
            self.problems.append(
                f"{count} request(s) were blocked (enforce), and no test's outcome showed it:"
                " the run fails"
            )

    def _blocked_count(self, records: list[OutboundRequest] | None = None) -> int:
        """Requests blocked in this run, the workers' too."""
        return _blocked_in(self.mode, self.records() if records is None else records)

    def _after_session(self, records: object = None) -> None:
        """Requests made after the report was written (the terminal summary, unconfigure,
        interpreter exit): write it again with them."""
        report_path = self._report_path()
        if report_path and self.finished and len(self.guard.records) > self._reported:
            from pytest_outbound._report import write_report

            write_report(report_path, self._build_report())
            self._reported = len(self.guard.records)

    def _build_report(self) -> dict[str, Any]:
        """The JSON report; built only when asked for (it costs about 1 KB per request)."""
        from pytest_outbound._report import build_report

        return build_report(
            mode=self.mode,
            destinations=self.destinations(),
            records=self.records(),
            workers=self.workers or None,
            outside_blocked=self.outside_blocked(),
            unwatched=self.unwatched(),
            internal_errors=self.internal_errors(),
            policy=self._policy_keys(),
            session_allowed=self.root_rules.policy.allowed,
            mask=self.scanner.mask,
        )

    def _policy_keys(self) -> dict[str, Any]:
        """The report's ``policy_digest``, ``environment`` and ``conftest_destinations``."""
        from pytest_outbound._merge import environment, policy_digest, shard_from_environment

        session = {d.name for d in self.root_rules.policy}
        keys: dict[str, Any] = {
            "policy_digest": policy_digest(list(self.root_rules.policy)),
            "environment": environment(
                shard=self.config.getoption("outbound_shard") or shard_from_environment(os.environ),
                partial=self._partial_reason() is not None,
                pytest_version=pytest.__version__,
            ),
        }
        by_directory = [d.name for d in self.destinations() if d.name not in session]
        if by_directory:
            keys["conftest_destinations"] = by_directory
        return keys

    def _marked_offline(self) -> list[str]:
        """``outbound_marker``: the tests that carry it and never reached the network."""
        return [scope.nodeid for scope in self._marked if not scope.reached]

    def _partial_reason(self) -> str | None:
        """Why this run is not the whole suite, or None: tests deselected (``-k``, ``-m``,
        ``--lf``, ``--deselect``, a plugin splitting the suite), or paths or node ids
        narrower than the configured ``testpaths`` (the root directory without them)."""
        if self.deselected:  # (``-k`` or ``-m`` that deselect nothing leave the run whole)
            return "tests were deselected"
        config = self.config
        if config.args_source != pytest.Config.ArgsSource.ARGS:
            return None
        if any("::" in arg for arg in config.args):
            return "node ids were named"
        here = config.invocation_params.dir  # (the args are relative to it, not to the cwd)
        wanted = [(here / str(arg)).resolve() for arg in config.args]
        testpaths = config.getini("testpaths")
        whole = [
            found
            for pattern in testpaths
            for found in sorted(config.rootpath.glob(pattern)) or [config.rootpath / pattern]
        ] or [config.rootpath]
        for root in whole:
            root = root.resolve()
            if not any(root == path or path in root.parents for path in wanted):
                return "the paths named are narrower than the whole suite"
        return None

    def _report_path(self) -> str | None:
        path = self.config.getoption("outbound_report") or next(
            iter(self.config.getini("outbound_report")), None
        )
        return str(path) if path else None

    def _install_errors(self) -> list[str]:
        """For the session's end: every installer's failure, each once, whether a test
        reported it already or not (after the last test, say)."""
        errors = [*self._install_errors_shown, *self._take_install_errors(current_too=True)]
        return list(dict.fromkeys(errors))

    def _take_install_errors(self, *, current_too: bool) -> list[str]:
        """The installers' failures not reported yet, and (``current_too``) the one that goes
        on breaking the session, each once."""
        if self.installation.error is None:
            return []
        new, current = self.installation.take_errors()
        if current_too and current is not None and current not in new:
            new.append(current)
        return [str(error) for error in new]

    def _problems(
        self, destinations: list[Destination], records: list[OutboundRequest]
    ) -> list[str]:
        """What makes the run fail besides its tests: docs out of date, coverage, late egress."""
        problems: list[str] = []
        # each once: every worker may report the same
        problems.extend(dict.fromkeys(self._install_errors() + self.worker_install_errors))
        if self.outside_blocked():
            problems.append(
                f"{self.outside_blocked()} request(s) outside any test were blocked (enforce):"
                " the session fails"
            )
        coverage = bool(self.config.getini("outbound_require_coverage"))
        check_path = self.config.getoption("outbound_docs_check")
        docs_path = self.config.getoption("outbound_docs")
        partial = self._partial_reason()
        if partial is not None and not self.config.getoption("outbound_force_verdicts"):
            left = [
                what
                for what, asked in (
                    ("outbound_require_coverage", coverage),
                    ("--outbound-docs-check", check_path),
                    ("--outbound-docs", docs_path),
                )
                if asked
            ]
            if left:
                self.notes.append(
                    f"a partial run ({partial}): {', '.join(left)} left to a full run or a"
                    " merged report (python -m pytest_outbound merge, then check or docs"
                    " --report); --outbound-force-verdicts judges them on this run"
                )
            return problems
        if coverage:
            unexercised = [
                u.destination.name
                for u in destination_uses(destinations, records, mode=self.mode)
                if not u.count
            ]
            if unexercised:
                problems.append(
                    f"outbound_require_coverage: {len(unexercised)} documented destination(s)"
                    f" were exercised by no test: {', '.join(unexercised)}"
                )
        if check_path or docs_path:
            from pytest_outbound._docs import (
                docs_diff,
                evidence_from_records,
                page_to_check,
                render_docs,
            )
            from pytest_outbound._report import write_text_atomic

            evidence = evidence_from_records(records, mask=self.scanner.mask)
            page = render_docs(destinations, evidence)
            if check_path:
                same = bool(docs_path) and Path(docs_path).resolve() == Path(check_path).resolve()
                try:
                    on_disk: str | None = Path(check_path).read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError):
                    on_disk = None
                if on_disk is None:  # (gone since the start, or written by this run first)
                    fix = (
                        "it was written now; commit it"
                        if same
                        else f"write it with --outbound-docs {check_path}"
                    )
                    problems.append(f"the documentation page {check_path} is missing ({fix})")
                else:
                    expected = page_to_check(on_disk, destinations, evidence)
                    diff = docs_diff(expected=expected, actual=on_disk, path=str(check_path))
                    if diff:
                        fix = (
                            "it was rewritten now; commit it"
                            if same
                            else f"regenerate it with --outbound-docs {check_path}"
                        )
                        problems.append(
                            f"the documentation page {check_path} is out of date ({fix}):\n{diff}"
                        )
            if docs_path:
                try:
                    write_text_atomic(docs_path, page)
                except OSError as exc:
                    problems.append(
                        f"--outbound-docs {docs_path}: cannot write it: {exc.strerror or exc}"
                    )
        return problems

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.is_worker or not self.finished:
            return
        verbose = self.config.get_verbosity() > 0
        mask = self.scanner.mask  # every line: sensitive values and URL passwords masked
        width = getattr(getattr(terminalreporter, "_tw", None), "fullwidth", None)

        def write(line: str) -> None:
            terminalreporter.write_line(mask(line))

        terminalreporter.write_sep("=", "outbound")
        for line in summary_lines(
            self.mode,
            self.destinations(),
            self.records(),
            verbose=verbose,
            width=width if isinstance(width, int) else None,
            mask=mask,
            session_allowed=self.root_rules.policy.allowed,
        ):
            write(line)
        for line in internal_error_lines(self.mode, [w for w, _ in self.internal_errors()]):
            write(line)
        unwatched = unwatched_lines(self.unwatched())
        if unwatched and os.environ.get(_SANDBOX_ENV):  # the sandbox judged what they sent
            unwatched[0] = (
                "child processes without a Python guard (the sandbox's gateway and DNS"
                " responder judged what they sent):"
            )
        for line in unwatched:
            write(line)
        for worker, state in sorted(self.workers.items()):
            if state != "ok":
                write(
                    f"worker {worker} {state}; the requests of the test it was running are"
                    " missing from this summary"
                )
        marker = self.guard.network_marker
        offline = sorted([*self._marked_offline(), *self.worker_marked_offline])
        if marker and offline:
            shown = ", ".join(offline[:5]) + (
                f" and {len(offline) - 5} more" if offline[5:] else ""
            )
            write(
                f"{len(offline)} test(s) marked {marker} never reached the network (the marker"
                f" can go): {shown}"
            )
        for note in self.notes:
            write(note)
        for problem in self.problems:
            write(problem)
        if os.environ.get("GITHUB_ACTIONS") == "true":
            for line in github_annotations(self.records(), mask):
                write(line)
        step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
        if step_summary:
            from pytest_outbound._report import summary_markdown

            with open(step_summary, "a", encoding="utf-8") as out:
                out.write(summary_markdown(self._build_report()) + "\n")


def github_annotations(
    records: Iterable[OutboundRequest], mask: Callable[[str], str] | None = None
) -> list[str]:
    """One ``::error`` workflow command per violation at the user's call site (the same
    request from the same place and test once, with how many times), masked by ``mask``."""
    counts: Counter[str] = Counter()
    for r in records:
        if r.verdict != "violation":
            continue
        path, _, line = r.location.rpartition(":")
        where = f"file={path},line={line}," if path and line.isdigit() else ""
        message = (
            f"{r.method} {r.url} ({r.client}): {', '.join(r.reasons)} in {r.nodeid or r.phase}"
        )
        if mask is not None:
            where, message = mask(where), mask(message)
        counts[f"::error {where}title=outbound request::{_escape_workflow(message)}"] += 1
    return [line if n == 1 else f"{line} ({n} times)" for line, n in counts.items()]


def _escape_workflow(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _has_outbound_marker(item: pytest.Item) -> bool:
    """Whether the item or a node above it carries an ``outbound_*`` marker (cheap: no Mark
    objects are made, unlike ``iter_markers``)."""
    node: Node | None = item
    while node is not None:
        for mark in node.own_markers:
            if mark.name.startswith("outbound_"):
                return True
        node = node.parent
    return False


def _hook_failure(exc: Exception, filename: str, hook: str = "pytest_outbound_destinations") -> str:
    """``pytest_outbound_destinations: ValueError at line 7: ...``: the exception a hook
    raised, at the last line of its file that it passed through."""
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if os.path.abspath(tb.tb_frame.f_code.co_filename) == os.path.abspath(filename):
            line = tb.tb_lineno
        tb = tb.tb_next
    at = f" at line {line}" if line is not None else ""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return (
        f"{hook}: {type(exc).__name__}{at}: {text}" if text else f"{hook}: {type(exc).__name__}{at}"
    )


def _describe_node(node: Node) -> str:
    if isinstance(node, pytest.Class):
        return f"class {node.name}"
    if isinstance(node, pytest.Module):
        return f"module {node.name}"
    if isinstance(node, pytest.Item):
        return f"test {node.name}"
    return node.nodeid or "the session"


def _restriction_entries(mark: pytest.Mark, rules: Rules, where: str) -> tuple[Entry, ...]:
    """An ``outbound_only`` or ``outbound_none`` marker's entries, checked."""
    if mark.name == "outbound_none":
        if mark.args or mark.kwargs:
            raise PolicyError(f"{where}: outbound_none takes no arguments")
        return ()
    _no_keywords(mark, where, "outbound_only(*entries)")
    if not mark.args:
        raise PolicyError(
            f"{where}: name at least one destination or host pattern, or use outbound_none"
        )
    return tuple(resolve_entry(a, rules, where) for a in mark.args)


def _no_keywords(mark: pytest.Mark, where: str, usage: str, known: Sequence[str] = ()) -> None:
    unknown = [k for k in mark.kwargs if k not in known]
    if unknown:
        raise PolicyError(f"{where}: unknown keyword argument {unknown[0]!r}; write {usage}")


def _at_marker(exc: PolicyError, where: str, node: Node) -> PolicyError:
    """A marker's error, with the file and line it was written at (of the test, class or
    module that carries it: a ``Mark`` keeps no line of its own)."""
    location = _node_location(node)
    if not location or not exc.message.startswith(where):
        return exc
    marker, _, described = where.partition(" on ")
    return PolicyError(f"{marker} at {location} on {described}{exc.message[len(where) :]}")


def _node_location(node: Node) -> str:
    """``path:line`` of a test or class (its first decorator's line), or of a module's
    ``pytestmark``; ``""`` when unknown."""
    try:
        path, line, _ = node.reportinfo()  # type: ignore[attr-defined]
    except Exception:
        return ""
    shown = _display_path(node.config, os.fspath(path))
    if isinstance(node, pytest.Module):
        import linecache

        for number, text in enumerate(linecache.getlines(os.fspath(path)), 1):
            if text.startswith("pytestmark"):
                return f"{shown}:{number}"
        return shown
    return f"{shown}:{line + 1}" if isinstance(line, int) else shown


def _expect_entry(mark: pytest.Mark, rules: Rules, where: str) -> tuple[Entry, int | None]:
    _no_keywords(mark, where, "outbound_expect(entry, count=None)", ("count",))
    args = list(mark.args)
    kwargs = dict(mark.kwargs)
    count = kwargs.pop("count", args.pop(1) if len(args) > 1 else None)
    if len(args) != 1 or kwargs:
        raise PolicyError(f"{where}: write outbound_expect(entry, count=None)")
    if count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 0):
        raise PolicyError(f"{where}: count must be a whole number, got {count!r}")
    return resolve_entry(args[0], rules, where), count


def _unmet_expectations(
    expectations: tuple[tuple[Entry, int | None], ...], scope: Scope
) -> list[str]:
    problems = []
    for entry, count in expectations:
        n = sum(1 for r in scope.records if entry.covers(r))
        if (count is None and n == 0) or (count is not None and n != count):
            wanted = "at least once" if count is None else f"exactly {count} time(s)"
            made = "\n".join(f"  {r.method} {r.url}" for r in scope.records) or "  (none)"
            from pytest_outbound._sensitive import masker_of

            made = masker_of(scope.context.rules.scanner)(made)
            problems.append(
                f"outbound_expect({entry.text!r}): expected to be contacted {wanted},"
                f" was contacted {n} time(s). Requests in this test:\n{made}"
            )
    return problems


def _exception_chain(exc: BaseException) -> Iterable[BaseException]:
    seen: set[int] = set()
    stack = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                stack.append(linked)
        if isinstance(current, BaseExceptionGroup):
            stack.extend(current.exceptions)


def _children_text(records: list[OutboundRequest]) -> str:
    from pytest_outbound._sensitive import mask_url_passwords

    lines = [f"{len(records)} outbound request(s) from child processes were blocked:"]
    for r in records:
        why = f" ({r.host_error})" if r.host_error else ""
        lines.append(
            f"  {r.method} {mask_url_passwords(r.url)} (client: {r.client}) from"
            f" {r.location or 'a child process'}:"
            f" {', '.join(r.reasons)}{why}"
        )
    return "\n".join(lines)


class _ErrorNotXfail:
    """For one test under an ``xfail`` marker whose teardown fails for a hidden block: its
    teardown report stays an error (pytest's xfail handling runs inside this wrapper and
    would report any failure of the test, teardown's too, as the expected one). Registered
    only then, and gone after that report."""

    def __init__(self, item: pytest.Item) -> None:
        self.item = item

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        if item is self.item and call.when == "teardown":
            item.config.pluginmanager.unregister(self)
            if report.skipped and hasattr(report, "wasxfail"):
                report.outcome = "failed"
                del report.wasxfail
        return report


def _hides_failure(item: pytest.Item, raised: BaseException | None) -> bool:
    """Whether the phase's outcome would hide a failure: a skip (pytest's or unittest's), an
    imperative xfail, any outcome under an ``xfail`` marker (strict or not), or a
    ``unittest.TestCase`` whose own result (``skipTest``, ``expectedFailure``) pytest reports
    in place of the phase's exception."""
    if isinstance(raised, pytest.skip.Exception | pytest.xfail.Exception):
        return True
    unittest = sys.modules.get("unittest")
    if unittest is not None and isinstance(raised, unittest.SkipTest):
        return True
    if getattr(item, "_excinfo", None):  # pytest's TestCaseFunction: unittest's outcome
        return True
    return item.get_closest_marker("xfail") is not None


def _hidden_text(errors: list[OutboundBlocked], children: list[OutboundRequest]) -> str:
    count = len(errors) + len(children)
    head = (
        f"{count} outbound request(s) were blocked in this test, which then ended as skipped"
        " or under xfail; that outcome does not hide them: the test errors at teardown"
        " (outbound_mode = enforce):"
    )
    parts = [head, *(e.message for e in errors)]
    if children:
        parts.append(_children_text(children))
    return "\n\n".join(parts)


def _swallowed_text(errors: list[OutboundBlocked]) -> str:
    head = (
        f"{len(errors)} outbound request(s) were blocked, and the code under test caught the"
        " OutboundBlocked exception; the test fails anyway (outbound_mode = enforce):"
    )
    if all(getattr(e, "sandbox", False) for e in errors):  # refused by the sandbox's gateway
        head = (
            f"{len(errors)} outbound request(s) of programs this test ran were refused by the"
            " sandbox; the test fails (outbound_mode = enforce):"
        )
    return "\n\n".join([head, *(e.message for e in errors)])
