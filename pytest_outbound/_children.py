"""Child processes: every one is watched as it starts; Python children get the test's guard.

**Watching** (``ChildWatch``, whenever a session is active). The audit hook (``_backstop``)
hands over the process events ``subprocess.Popen``, ``os.posix_spawn``, ``os.exec``,
``os.spawn`` and ``os.system`` before the child exists, and ``_posixsubprocess.fork_exec`` is
wrapped for the launches that raise no event (``multiprocessing``'s spawn and forkserver). What
is about to run is read: the program (a Python interpreter by its path, its name or its
script's ``#!`` line), its options and the environment it gets; a shell command (``os.system``,
``shell=True``, ``sh -c``) is read as the programs it runs. Then:

- a Python child the bootstrap will guard runs;
- a Python child it cannot guard is a violation (``unguarded-child``): started with ``-I``,
  ``-E`` or ``-S``; an environment without ``PYTEST_OUTBOUND_CHILD`` or without the bootstrap
  on ``PYTHONPATH``; a ``sitecustomize`` earlier on ``PYTHONPATH`` (that one runs instead);
  ``outbound_subprocess = false`` in enforce. In enforce ``OutboundBlocked`` is raised from the
  hook and the child never starts. ``outbound_child_allow`` names the programs allowed to run
  unguarded: they are listed as unwatched;
- pytest-xdist's workers (execnet's ``python -c`` bootstrap, from a session that runs xdist)
  run the plugin themselves: a worker that got the bootstrap's guard switches it off when its
  own session starts (``_child.stop_for_worker``), so it is never guarded twice;
- any other program (curl, git, a shell script) cannot be judged from Python: it is counted,
  per program, as unwatched (the summary and the report), not a violation. What pytest-xdist
  itself starts in a worker (``platform``'s ``uname -p``) is not counted.

The reading and the verdict are ``_launch``'s, imported with the first child: this module is
what start-up needs (the watch, the bootstrap, the spool).

**Guarding** (``ChildGuards``, ``outbound_subprocess``: on by default in enforce). The way
coverage.py measures subprocesses: a bootstrap directory is put on ``PYTHONPATH``; its
``sitecustomize.py`` starts a guard (``_child``) in any Python child whose environment names a
context file (``PYTEST_OUTBOUND_CHILD``), and then runs the ``sitecustomize`` it shadows, if
there is one. An interpreter that cannot import the plugin loads the parent's package from
where it lies; if the guard still cannot start (an old Python, a broken environment), the
bootstrap fails closed: in enforce it records the child (``unguarded-child``) and ends it
before its own code runs, with one line on stderr; in audit it records it and lets it run. It
is written in Python 2 and 3 syntax, with the standard library alone, for that reason.

The context file says which test and phase the children belong to and what they may contact;
it is written when a child is about to start (not at every phase: most tests start none).
Children append each record as a JSON line to a file of their own in the spool, which the
parent reads at the end of every phase and attributes to the test named in it. A forked child
(``multiprocessing`` fork) inherits the parent's guard; it is switched to write its records the
same way (``os.register_at_fork``).

The spool outlives the session: a session that owns its process keeps it, the bootstrap and
the environment until the interpreter exits, and reads it a last time then, from an ``atexit``
handler that runs after those the tests registered and before the exit watch's last word
(``_exit``): a late record reaches the report, and a blocked one fails the exit status.
pytester's in-process sessions read it a last time at unconfigure, and keep the bootstrap
until the process exits, for a child still starting. A child that writes after the last
read says its record on its stderr (inherited from the parent's) instead: never a traceback.
Writers and the last read take a lock (``flock``), so no record falls between. A child still
starting as its parent's interpreter exits may find the bootstrap gone, and run unguarded.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from pytest_outbound._decide import CHILD
from pytest_outbound._guard import ENFORCE, OWN_WORK, Guard, Scope, process_wide
from pytest_outbound._record import OutboundRequest

if TYPE_CHECKING:
    from pytest_outbound._backstop import Backstop

ENV = "PYTEST_OUTBOUND_CHILD"
#: The reason code of a Python child that cannot be guarded.
UNGUARDED = "unguarded-child"
#: How a child the bootstrap cannot guard ends in enforce, before its own code runs.
FAIL_STATUS = 1
#: The line execnet (pytest-xdist's workers) runs with ``python -c``.
EXECNET_BOOTSTRAP = "import sys;exec(eval(sys.stdin.readline()))"

_PACKAGE = os.path.dirname(os.path.abspath(__file__))

_SITECUSTOMIZE = r'''"""pytest-outbound: the guard of Python child processes (removed after a run).

Python 2 and 3 syntax, standard library only: whatever interpreter runs it, a child whose
guard cannot start is stopped (enforce) or recorded (audit), never let through silently."""
import os
import sys

_PACKAGE = __PACKAGE__
_MODE = __MODE__
_STATUS = __STATUS__


def _pytest_outbound_child():
    """This interpreter's own pytest_outbound if it is the parent's, else the parent's package
    loaded from where it lies (nothing is added to sys.path)."""
    import importlib.util

    spec = importlib.util.find_spec("pytest_outbound")
    here = os.path.realpath(_PACKAGE)
    if spec is None or not spec.origin or os.path.realpath(os.path.dirname(spec.origin)) != here:
        spec = importlib.util.spec_from_file_location(
            "pytest_outbound",
            os.path.join(_PACKAGE, "__init__.py"),
            submodule_search_locations=[_PACKAGE],
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules["pytest_outbound"] = module
        spec.loader.exec_module(module)
    import pytest_outbound._child

    return pytest_outbound._child


def _append(context, data):
    """One JSON line to this process's file in the spool, under the spool's lock."""
    import json

    directory = os.path.dirname(context)
    try:
        lock = os.open(os.path.join(directory, "lock"), os.O_RDWR)
    except OSError:
        return False
    try:
        try:
            import fcntl

            fcntl.flock(lock, fcntl.LOCK_SH)
        except ImportError:
            pass
        name = os.path.join(directory, "reports", "%d.jsonl" % os.getpid())
        out = os.open(name, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 384)
        try:
            os.write(out, (json.dumps(data) + "\n").encode("utf-8"))
        finally:
            os.close(out)
        return True
    except Exception:
        return False
    finally:
        os.close(lock)


def _allowed(patterns):
    import fnmatch

    path = os.path.abspath(sys.executable or "")
    name = os.path.basename(path)
    for pattern in patterns:
        if os.sep in pattern:
            if os.path.abspath(os.path.expanduser(pattern)) in (path, os.path.realpath(path)):
                return True
        elif fnmatch.fnmatchcase(name, pattern):
            return True
    return False


def _fail_closed(context, error):
    import json
    import time

    try:
        with open(context) as handle:
            data = json.load(handle)
    except Exception:
        data = {}
    argv = list(getattr(sys, "orig_argv", None) or [sys.executable or "python"])
    argv[0] = os.path.basename(argv[0])
    words = []
    for word in argv:  # one line, as _launch.command_text writes it
        word = word.replace("\n", "\\n")
        if len(word) > 60:
            word = word[:57] + "..."
        if not word or [c for c in word if c in " '\"\\$`;&|<>()*?"]:
            word = "'" + word.replace("'", "'\"'\"'") + "'"
        words.append(word)
    command = " ".join(words)
    if len(command) > 200:
        command = command[:197] + "..."
    if _allowed(data.get("child_allow") or ()):
        name = os.path.basename(sys.executable or "python")
        _append(context, {"unwatched": name + " (outbound_child_allow)"})
        return
    why = "its guard could not start in this interpreter (%s: %s)" % (
        type(error).__name__,
        str(error).splitlines()[0] if str(error) else "",
    )
    _append(
        context,
        {
            "method": "EXEC", "url": "child:" + command, "scheme": "", "host": "",
            "port": None, "path": "", "query": {}, "headers": {}, "fields": [],
            "client": "child", "destination": None, "verdict": "violation",
            "reasons": ["unguarded-child"], "nodeid": data.get("nodeid", ""),
            "phase": data.get("phase", ""), "location": "", "thread": "MainThread",
            "time": time.time(), "why": why,
        },
    )
    for name in list(sys.modules):
        if name == "pytest_outbound" or name.startswith("pytest_outbound."):
            del sys.modules[name]
    if (data.get("mode") or _MODE) == "enforce":
        sys.stderr.write(
            "pytest-outbound: stopped this Python child process before it ran: %s [%s];"
            " it cannot be guarded, and outbound_mode = enforce (outbound_child_allow lets a"
            " program run unguarded)\n" % (why, command)
        )
        sys.stderr.flush()
        os._exit(_STATUS)
    sys.stderr.write(
        "pytest-outbound: this Python child process runs unguarded: %s [%s]\n" % (why, command)
    )


def _guard():
    context = os.environ.get("PYTEST_OUTBOUND_CHILD")
    if not context:
        return
    try:
        _pytest_outbound_child().start()
    except BaseException as error:  # the guard cannot start: fail closed
        try:
            _fail_closed(context, error)
        except Exception:
            if _MODE == "enforce":
                os._exit(_STATUS)


def _run_the_sitecustomize_this_one_shadows():
    try:
        import importlib.machinery
        import importlib.util
    except ImportError:
        return
    here = os.path.dirname(os.path.abspath(__file__))
    entries = [os.path.abspath(p or ".") for p in sys.path]
    # the entries after this one (before it, none has one: this one was found first)
    after = len(entries) - entries[::-1].index(here) if here in entries else 0
    path = [p for p in sys.path[after:] if os.path.abspath(p or ".") != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", path)
    if spec is not None and spec.loader is not None:
        spec.loader.exec_module(importlib.util.module_from_spec(spec))


_guard()
_run_the_sitecustomize_this_one_shadows()
'''


def sitecustomize_text(mode: str) -> str:
    """The bootstrap's ``sitecustomize.py`` for a session in ``mode``."""
    return (
        _SITECUSTOMIZE.replace("__PACKAGE__", repr(_PACKAGE))
        .replace("__MODE__", repr(mode))
        .replace("__STATUS__", str(FAIL_STATUS))
    )


def context_json(
    guard: Guard,
    scope: Scope | None,
    phase: str,
    rootpath: Path,
    allow: Sequence[str] = (),
) -> dict[str, Any]:
    """What a child needs to judge as the parent would, for this test and phase."""
    from pytest_outbound._report import destination_json

    context = scope.context if scope is not None else guard.session_context
    scanner = context.rules.scanner
    return {
        "mode": guard.mode,
        "nodeid": scope.nodeid if scope is not None else "",
        "phase": phase,
        "rootpath": str(rootpath),
        "body_limit": guard.body_limit,
        "local_enforce": guard.local_enforce,
        "offline": guard.offline,
        "destinations": [destination_json(d) for d in context.rules.policy.destinations],
        "allowed": list(context.rules.policy.allowed),
        "restriction": context.restriction,
        "only": [e.text for e in context.only_entries],
        "allow": [e.text for e in context.allow_entries],
        "sensitive": [[v.kind, v.value] for v in scanner.values] if scanner else [],
        "child_allow": list(allow),
        # pytest-xdist: a worker of this process runs the plugin itself (``_child``)
        "pid": os.getpid(),
    }


# -- the watch (what a child about to start is, and the verdict: ``_launch``) ----------------


class Bootstrap(NamedTuple):
    """Where the guard of Python children comes from: the directory on ``PYTHONPATH`` with
    the ``sitecustomize.py``, and the context file ``PYTEST_OUTBOUND_CHILD`` names."""

    directory: str
    context_file: str


class ChildWatch:
    """Judges each child process as it starts (see the module docstring).

    ``bootstrap``: where the guard of Python children comes from (None: they are not guarded,
    ``outbound_subprocess = false``). ``note`` is told of each program that runs unwatched.
    ``before_launch`` runs before any child starts (the context file is made current).
    ``spawns_workers``: whether this session runs pytest-xdist workers.
    """

    def __init__(
        self,
        guard: Guard,
        backstop: Backstop,
        *,
        bootstrap: Bootstrap | None,
        allow: Sequence[str] = (),
        note: Callable[[str], None] | None = None,
        before_launch: Callable[[], None] | None = None,
        spawns_workers: Callable[[], bool] | None = None,
    ) -> None:
        self.guard = guard
        self.backstop = backstop
        self.bootstrap = bootstrap
        self.allow = tuple(a.strip() for a in allow if a.strip())
        self.unwatched: Counter[str] = Counter()
        self._note = note
        self._before_launch = before_launch
        self._spawns_workers = spawns_workers
        self._lock = threading.Lock()
        #: Per thread, the argument list of the last ``subprocess.Popen`` judged: the
        #: ``os.posix_spawn`` or ``fork_exec`` that starts it is not judged again.
        self._announced: dict[int, tuple[str, ...]] = {}
        _WATCHES.append(self)
        _wrap_fork_exec()

    def close(self) -> None:
        with contextlib.suppress(ValueError):
            _WATCHES.remove(self)

    # -- events ----------------------------------------------------------------------------

    def on_event(self, event: str, args: tuple[Any, ...]) -> None:
        """A process audit event (``Backstop.on_process``)."""
        __tracebackhide__ = True
        if self._before_launch is not None:
            self._before_launch()
        if event == "os.fork":
            return  # a copy of this process, and of its guard (``ChildGuards``)
        from pytest_outbound import _launch  # with the first child (start-up: see there)

        _launch.on_event(self, event, args)

    def on_fork_exec(self, args: tuple[Any, ...]) -> None:
        """``_posixsubprocess.fork_exec``: a launch no audit event announced
        (``multiprocessing``'s spawn and forkserver, ``resource_tracker``)."""
        __tracebackhide__ = True
        if self._before_launch is not None:
            self._before_launch()
        from pytest_outbound import _launch

        _launch.on_fork_exec(self, args)


#: The watches of this process's active sessions (process-wide: a module imported again, as
#: pytester does, must reach the same list from the one ``fork_exec`` wrapper).
_WATCHES: list[ChildWatch] = process_wide("child_watches", list)


def _wrap_fork_exec() -> None:
    """Wrap ``_posixsubprocess.fork_exec`` once per process (never undone, as the audit hook
    is not): with no session's watch active it only calls through."""
    try:
        import _posixsubprocess
    except ImportError:  # not POSIX
        return
    original = getattr(_posixsubprocess, "fork_exec", None)
    if original is None or getattr(original, "_outbound_wrapper", False):
        return

    def fork_exec(*args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True
        if _WATCHES and not OWN_WORK.get():
            for watch in list(_WATCHES):
                if watch.backstop.active:
                    watch.on_fork_exec(args)
                    break
        return original(*args, **kwargs)

    fork_exec._outbound_wrapper = True  # type: ignore[attr-defined]
    fork_exec.__wrapped__ = original  # type: ignore[attr-defined]
    _posixsubprocess.fork_exec = fork_exec


# -- the spool ------------------------------------------------------------------------------------


def _lock(directory: Path | str, shared: bool) -> int | None:
    """A lock on the spool (shared: a writer; exclusive: the last read), or None when the
    spool is gone."""
    try:
        fd = os.open(os.path.join(directory, "lock"), os.O_RDWR)
    except OSError:
        return None
    try:
        import fcntl
    except ImportError:  # Windows: no lock
        return fd
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
    return fd


def append_line(directory: Path | str, data: Mapping[str, Any]) -> bool:
    """Append ``data`` as one JSON line to this process's file in the spool; False when the
    spool is gone (the parent has finished)."""
    line = (json.dumps(data) + "\n").encode("utf-8")
    fd = _lock(directory, shared=True)
    if fd is None:
        return False
    try:
        name = os.path.join(directory, "reports", f"{os.getpid()}.jsonl")
        out = os.open(name, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(out, line)  # one write: lines of processes never interleave
        finally:
            os.close(out)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def record_writer(directory: Path | str, *, enforcing: bool) -> Callable[[OutboundRequest], None]:
    """An ``on_request`` callback: each record to the spool, or, once the parent has
    finished and the spool is gone, one line on stderr."""

    def write(request: OutboundRequest) -> None:
        from pytest_outbound._report import request_json

        data = request_json(request)
        if request.host_error and request.client == CHILD:
            data["why"] = request.host_error
        if not append_line(directory, data):
            say_late(request, blocked=enforcing and not request.allowed)

    return write


def say_late(request: OutboundRequest, *, blocked: bool) -> None:
    """A record of a child whose parent's session is over: on this process's stderr."""
    reasons = f" ({', '.join(request.reasons)})" if request.reasons else ""
    test = f" in {request.nodeid}" if request.nodeid else ""
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(
            f"pytest-outbound: after its test session ended, child process {os.getpid()}:"
            f" {request.method} {request.url} (client: {request.client})"
            f" from {request.location or 'unknown'}{test} [{request.phase}]:"
            f" {request.verdict}{reasons}{', blocked' if blocked else ''}\n"
        )
        sys.stderr.flush()


class ChildGuards:
    """The parent's side: the bootstrap directory, the context file, the children's records."""

    def __init__(self, guard: Guard, rootpath: Path, *, allow: Sequence[str] = ()) -> None:
        import tempfile

        self.guard = guard
        self.rootpath = rootpath
        self.allow = tuple(allow)
        self.directory = Path(tempfile.mkdtemp(prefix="pytest-outbound-"))
        self.reports = self.directory / "reports"
        self.reports.mkdir()
        (self.directory / "lock").touch()
        self.context_file = self.directory / "context.json"
        (self.directory / "sitecustomize.py").write_text(
            sitecustomize_text(guard.mode), encoding="utf-8"
        )
        self.bootstrap = Bootstrap(str(self.directory), str(self.context_file))
        #: Set once a child may have started: until then there is no spool to read.
        self.launched = False
        #: Programs children ran unwatched (their grandchildren), from the spool.
        self.unwatched: Counter[str] = Counter()
        #: Called, at the interpreter's exit, with the records read last (``finish``).
        self.on_exit: Callable[[list[OutboundRequest]], None] | None = None
        self.closed = False
        self._pid = os.getpid()
        self._offsets: dict[Path, int] = {}
        self._lock = threading.Lock()
        self._pending: tuple[Scope | None, str] = (None, guard.outside_phase)
        self._written: tuple[object, ...] | None = None
        self._saved = {name: os.environ.get(name) for name in (ENV, "PYTHONPATH")}
        pythonpath = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = os.pathsep.join(
            [str(self.directory), *([pythonpath] if pythonpath else [])]
        )
        os.environ[ENV] = str(self.context_file)
        os.register_at_fork(after_in_child=self._in_forked_child)
        _OPEN.append(self)
        _register_exit()

    def update(self, scope: Scope | None, phase: str) -> None:
        """Children started from now on belong to this test and phase (written when one is
        about to start: ``flush``)."""
        self._pending = (scope, phase)

    def before_launch(self) -> None:
        """A child is about to start: the context file is made current."""
        self.launched = True
        self.flush()

    def flush(self) -> None:
        scope, phase = self._pending
        guard = self.guard
        context = scope.context if scope is not None else guard.session_context
        key = (scope, phase, context, guard.offline, guard.mode)
        written = self._written
        if written is not None and all(a is b or a == b for a, b in zip(written, key, strict=True)):
            return
        with self._lock:
            data = context_json(guard, scope, phase, self.rootpath, self.allow)
            tmp = self.context_file.with_name(f".context.{os.getpid()}.{threading.get_ident()}")
            try:
                tmp.write_text(json.dumps(data), encoding="utf-8")
                os.replace(tmp, self.context_file)
            except OSError:
                return  # the spool is gone (a forked child after the parent finished)
            self._written = key

    def note(self, name: str) -> None:
        self.unwatched[name] += 1

    def collect(self) -> list[OutboundRequest]:
        """The records children wrote since the last call, in file order."""
        if not self.launched or self.closed:
            return []
        return list(self._read())

    def _read(self) -> Iterator[OutboundRequest]:
        try:  # (not Path.glob: the last read runs at every exit, most often on no file)
            names = sorted(n for n in os.listdir(self.reports) if n.endswith(".jsonl"))
        except OSError:
            return
        if not names:
            return
        from pytest_outbound._report import request_from_json  # a child has written

        for path in [self.reports / name for name in names]:
            start = self._offsets.get(path, 0)
            try:
                with path.open("rb") as handle:
                    handle.seek(start)
                    data = handle.read()
            except OSError:
                continue
            end = data.rfind(b"\n") + 1  # a line still being written waits for the next call
            self._offsets[path] = start + end
            for line in data[:end].splitlines():
                try:
                    raw = json.loads(line)
                    if "unwatched" in raw:
                        self.unwatched[str(raw["unwatched"])] += 1
                        continue
                    record = request_from_json(raw)
                except (ValueError, KeyError, TypeError):
                    continue  # not a whole record (a child killed as it wrote)
                record.host_error = str(raw.get("why", ""))
                yield record

    def finish(self, *, keep_bootstrap: bool = False) -> list[OutboundRequest]:
        """The last read: after it the spool is gone (a child that writes later says its
        record on stderr) and the environment is as it was. ``keep_bootstrap``: the
        ``sitecustomize`` and the context file stay until the interpreter exits, for a child
        still starting (pytester's sessions: the process goes on)."""
        if os.getpid() != self._pid:
            return []
        import shutil

        records: list[OutboundRequest] = []
        if not self.closed:
            self.closed = True
            for name, value in self._saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            fd = _lock(self.directory, shared=False)
            try:
                records = list(self._read())
                shutil.rmtree(self.reports, ignore_errors=True)
            finally:
                if fd is not None:
                    os.close(fd)
        if not keep_bootstrap:
            shutil.rmtree(self.directory, ignore_errors=True)
            with contextlib.suppress(ValueError):
                _OPEN.remove(self)
        return records

    def _in_forked_child(self) -> None:
        if self.guard.active and not self.closed:
            writer = record_writer(self.directory, enforcing=self.guard.mode == ENFORCE)
            self.guard.listen(on_request=writer, on_violation=None)


#: The bootstrap directories of this process's sessions not finished yet.
_OPEN: list[ChildGuards] = process_wide("child_guards", list)


def _register_exit() -> None:
    """The last read of every spool still open, at the interpreter's exit: registered when
    the first session opens one, after the plugin's exit watch (``_exit``), so it runs before
    that watch's last word, and after every ``atexit`` handler a test registered."""
    state: dict[str, bool] = process_wide("child_guards_exit", dict)
    if state.get("registered"):
        return
    state["registered"] = True
    import atexit

    atexit.register(_finish_all)


def _finish_all() -> None:
    for guards in list(_OPEN):
        records = guards.finish()
        if guards.on_exit is not None:
            try:
                guards.on_exit(records)
            except Exception as exc:
                sys.stderr.write(f"pytest-outbound: child records at exit were lost: {exc!r}\n")
