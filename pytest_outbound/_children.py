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
import functools
import json
import os
import re
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
    for word in argv:  # one line, as _children.command_text writes it
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


# -- reading what is about to run ---------------------------------------------------------------


class Launch(NamedTuple):
    """A child about to start: the program as given, its arguments (``argv[0]`` first), the
    environment it gets, its working directory."""

    program: str
    argv: tuple[str, ...]
    env: Mapping[str, str]
    cwd: str | None


class Bootstrap(NamedTuple):
    """Where the guard of Python children comes from: the directory on ``PYTHONPATH`` with
    the ``sitecustomize.py``, and the context file ``PYTEST_OUTBOUND_CHILD`` names."""

    directory: str
    context_file: str


_SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "yash", "posh"})
#: Words a shell reads before the program (keywords, and programs that run the next word).
_PREFIXES = frozenset(
    {"!", "{", "}", "if", "then", "else", "elif", "do", "while", "until", "fi", "done", "esac"}
    | {"exec", "command", "nohup", "builtin", "time", "setsid"}
)
#: Shell builtins that start no process.
_BUILTINS = frozenset(
    {"cd", "echo", "printf", "true", "false", ":", "test", "[", "[[", "set", "shift", "exit"}
    | {"return", "wait", "read", "trap", "local", "pwd", "umask", "ulimit", "alias", "type"}
    | {"hash", "readonly", "declare", "typeset", "let", "break", "continue", "jobs", "kill"}
)
#: Commands whose words are not a program to run (loops and cases: their bodies are read on).
_SKIPPED = frozenset({"for", "case", "select", "function", "in"})
_FLAGS = {
    "I": "isolated mode ignores PYTHONPATH and every PYTHON* variable",
    "E": "PYTHONPATH and every PYTHON* variable are ignored",
    "S": "the site module, which runs sitecustomize, is not imported",
}


@functools.cache
def _pattern(name: str) -> re.Pattern[str]:
    """The regular expressions, compiled when first needed (start-up)."""
    return re.compile(
        {
            # an interpreter's file name: python, python3.12, python3.13t, pypy3, python.exe
            "python": r"(?:python|pythonw|pypy)(?:\d+(?:\.\d+)*)?[a-z]?(?:-dbg|-debug)?(?:\.exe)?",
            "assignment": r"([A-Za-z_][A-Za-z0-9_]*)=(.*)",
            "variable": r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))",
        }[name],
        re.IGNORECASE if name == "python" else re.DOTALL,
    )


def _text(value: object) -> str:
    return value if isinstance(value, str) else os.fsdecode(value)  # type: ignore[arg-type]


def _environment(env: object) -> Mapping[str, str]:
    if env is None:
        return os.environ  # inherited
    if isinstance(env, Mapping):
        return {_text(k): _text(v) for k, v in env.items()}
    # _posixsubprocess: a list of b"NAME=VALUE"
    pairs = (_text(item).partition("=") for item in env)  # type: ignore[attr-defined]
    return {name: value for name, _, value in pairs}


def _argv(args: object) -> tuple[str, ...]:
    if isinstance(args, str | bytes):
        return (_text(args),)
    if isinstance(args, os.PathLike):
        return (_text(os.fspath(args)),)
    return tuple(_text(os.fspath(a)) for a in args)  # type: ignore[attr-defined]


def python_flags(args: Sequence[str]) -> frozenset[str]:
    """The single-letter interpreter options in ``args`` (what follows the interpreter's
    name), grouped or not (``-IS``, ``-Es``), up to ``-c``, ``-m``, ``-`` or the script."""
    flags: set[str] = set()
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("-", "--") or not arg.startswith("-"):
            break
        if arg.startswith("--"):
            i += 2 if arg == "--check-hash-based-pycs" else 1
            continue
        for j, letter in enumerate(arg[1:], start=1):
            if letter in "cm":
                return frozenset(flags)
            if letter in "WX":  # takes a value: the rest of this word, or the next
                if j == len(arg) - 1:
                    i += 1
                break
            flags.add(letter)
        i += 1
    return frozenset(flags)


def _resolve(program: str, env: Mapping[str, str], cwd: str | None) -> str | None:
    """The file ``program`` names, as exec would find it, or None."""
    if not program:
        return None
    if os.sep in program or (os.altsep and os.altsep in program):
        path = os.path.join(_text(cwd), program) if cwd else program
        return os.path.abspath(path) if os.path.exists(path) else None
    import shutil

    found = shutil.which(program, path=env.get("PATH", os.defpath))
    return os.path.abspath(found) if found else None


@functools.cache
def _same_interpreters() -> frozenset[str]:
    paths = {sys.executable, getattr(sys, "_base_executable", "")}
    return frozenset(os.path.realpath(p) for p in paths if p)


def _is_python(name: str, path: str | None) -> bool:
    if _pattern("python").fullmatch(name):
        return True
    return path is not None and os.path.realpath(path) in _same_interpreters()


def _shebang(path: str | None) -> list[str]:
    """The words of a script's ``#!`` line (none for a binary or no file)."""
    if path is None or not os.path.isfile(path):
        return []
    try:
        with open(path, "rb") as handle:
            head = handle.read(512)
    except OSError:
        return []
    if not head.startswith(b"#!"):
        return []
    return os.fsdecode(head[2:].split(b"\n", 1)[0]).split()


def _env_command(words: Sequence[str], env: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
    """``env [OPTION]... [NAME=VALUE]... COMMAND...``: the command and its environment."""
    changed = dict(env)
    rest = list(words)
    while rest:
        word = rest[0]
        if word in ("-i", "--ignore-environment", "-"):
            changed = {}
        elif word in ("-u", "--unset", "-C", "--chdir") and len(rest) > 1:
            if word in ("-u", "--unset"):
                changed.pop(rest[1], None)
            rest = rest[1:]
        elif word.startswith("--unset="):
            changed.pop(word.partition("=")[2], None)
        elif word.startswith("-u") and len(word) > 2:
            changed.pop(word[2:], None)
        elif word == "--":
            rest = rest[1:]
            break
        elif word.startswith("-"):
            pass  # -S (its words are split already), -v, -0 ...
        elif _pattern("assignment").fullmatch(word):
            name, _, value = word.partition("=")
            changed[name] = value
        else:
            break
        rest = rest[1:]
    return rest, changed


def shell_command(name: str, argv: Sequence[str]) -> str | None:
    """The command string of ``sh -c COMMAND`` (any common shell), or None."""
    if name not in _SHELLS:
        return None
    args = list(argv[1:])
    seen_c = False
    while args:
        arg = args.pop(0)
        if arg in ("-o", "+o"):
            if args:
                args.pop(0)
            continue
        if arg.startswith(("-", "+")) and arg[1:].isalpha():
            seen_c = seen_c or (arg.startswith("-") and "c" in arg[1:])
            continue
        return arg if seen_c else None  # the command, or a script file
    return None


def shell_launches(command: str, env: Mapping[str, str], cwd: str | None) -> list[Launch | None]:
    """The programs a shell command runs, each with the environment it gets; None for a part
    that cannot be read (an expansion as the program, ``eval``, a ``/dev/tcp`` redirect)."""
    import shlex

    lexer = shlex.shlex(command.replace("\n", ";"), posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        tokens = list(lexer)
    except ValueError:
        return [None]
    commands: list[list[str]] = [[]]
    unreadable = False
    redirect = False
    for token in tokens:
        if redirect:
            redirect = False
            unreadable = unreadable or token.startswith(("/dev/tcp/", "/dev/udp/"))
            continue
        if token and set(token) <= set("();<>|&"):
            if "<" in token or ">" in token:
                redirect = True
            else:
                commands.append([])
            continue
        commands[-1].append(token)
    shell_env = dict(env)
    launches: list[Launch | None] = [None] if unreadable else []
    for words in commands:
        own = dict(shell_env)
        while words and _pattern("assignment").fullmatch(words[0]):
            name, _, value = words[0].partition("=")
            own[name] = _expand(value, own)
            words = words[1:]
        while words and words[0] in _PREFIXES:
            words = words[1:]
        if not words or words[0] in _SKIPPED or words[0].endswith("()"):
            continue
        if words[0] == "env":
            words, own = _env_command(words[1:], own)
            if not words:
                continue
        program = words[0]
        if program in ("export", "unset"):
            for word in words[1:]:
                name, equals, value = word.partition("=")
                if program == "unset":
                    shell_env.pop(word, None)
                elif equals:
                    shell_env[name] = _expand(value, shell_env)
            continue
        if program in _BUILTINS:
            continue
        if any(c in program for c in "$`*?") or program in ("eval", "source", ".", "sudo"):
            launches.append(None)
            continue
        launches.append(Launch(program, tuple(words), own, cwd))
    return launches


def _expand(value: str, env: Mapping[str, str]) -> str:
    return _pattern("variable").sub(lambda m: env.get(m.group(1) or m.group(2), ""), value)


def _sitecustomize_in(entry: str, cwd: str | None) -> str | None:
    """The ``sitecustomize`` module a ``PYTHONPATH`` entry holds, if any."""
    directory = os.path.join(_text(cwd) if cwd else os.getcwd(), entry or ".")
    if os.path.isfile(directory):  # a zip file
        import zipfile

        try:
            with zipfile.ZipFile(directory) as archive:
                names = set(archive.namelist())
        except (OSError, zipfile.BadZipFile):
            return None
        for name in ("sitecustomize.py", "sitecustomize.pyc", "sitecustomize/__init__.py"):
            if name in names:
                return f"{directory}/{name}"
        return None
    try:
        names = set(os.listdir(directory))
    except OSError:
        return None
    for name in sorted(names):
        if name == "sitecustomize.py" or (
            name.startswith("sitecustomize.") and name.endswith((".pyc", ".so", ".pyd"))
        ):
            return os.path.join(directory, name)
    if "sitecustomize" in names and os.path.isfile(
        os.path.join(directory, "sitecustomize", "__init__.py")
    ):
        return os.path.join(directory, "sitecustomize")
    return None


def command_text(argv: Sequence[str], program: str) -> str:
    """The command line as a person reads it, on one line: the program's file name, then its
    arguments (long ones cut, quoted as a shell would), at most 200 characters."""
    import shlex

    words = list(argv) or [program]
    words[0] = os.path.basename(words[0] or program) or program
    words = [w.replace("\n", "\\n") for w in words]
    words = [w if len(w) <= 60 else w[:57] + "..." for w in words]
    text = shlex.join(words)
    return text if len(text) <= 200 else text[:197] + "..."


# -- judging --------------------------------------------------------------------------------------


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
        ident = threading.get_ident()
        try:
            launch = self._launch(event, args, ident)
        except Exception as exc:  # what cannot be read cannot be judged: fail closed
            why = f"the plugin could not read how it is started ({type(exc).__name__}: {exc})"
            self._unguarded(Launch("?", ("?",), os.environ, None), why)
            return
        if launch is None:
            return
        self._judge(launch)
        if event == "subprocess.Popen":
            self._announced[ident] = launch.argv

    def _launch(self, event: str, args: tuple[Any, ...], ident: int) -> Launch | None:
        if event == "subprocess.Popen":
            argv = _argv(args[1])
            program = _text(os.fspath(args[0])) if args[0] is not None else argv[0]
            cwd = None if args[2] is None else _text(os.fspath(args[2]))
            return Launch(program, argv, _environment(args[3]), cwd)
        if event == "os.system":
            return Launch("/bin/sh", ("sh", "-c", _text(args[0])), os.environ, None)
        if event in ("os.posix_spawn", "os.exec"):
            argv = _argv(args[1])
            if event == "os.posix_spawn" and self._announced.pop(ident, None) == argv:
                return None  # subprocess's own: judged as ``subprocess.Popen``
            return Launch(_text(os.fspath(args[0])), argv, _environment(args[2]), None)
        if event == "os.spawn":
            return Launch(_text(os.fspath(args[1])), _argv(args[2]), _environment(args[3]), None)
        return None

    def on_fork_exec(self, args: tuple[Any, ...]) -> None:
        """``_posixsubprocess.fork_exec``: a launch no audit event announced
        (``multiprocessing``'s spawn and forkserver, ``resource_tracker``)."""
        __tracebackhide__ = True
        if self._before_launch is not None:
            self._before_launch()
        try:  # (args, executable_list, close_fds, pass_fds, cwd, env, ...)
            argv = _argv(args[0])
            executables = _argv(args[1])
            cwd = None if args[4] is None else _text(os.fspath(args[4]))
            launch = Launch(
                executables[0] if executables else argv[0], argv, _environment(args[5]), cwd
            )
        except Exception:  # another Python's signature: the audit events remain the judge
            return
        if self._announced.pop(threading.get_ident(), None) == argv:
            return  # subprocess.Popen's: judged already
        self._judge(launch)

    # -- the verdict -----------------------------------------------------------------------

    def _judge(self, launch: Launch, depth: int = 0) -> None:
        __tracebackhide__ = True
        path = _resolve(launch.program, launch.env, launch.cwd)
        name = os.path.basename(launch.program)
        flags: frozenset[str] | None = None  # a script's: from its #! line
        env = launch.env
        python = _is_python(name, path)
        if not python:
            words = _shebang(path)
            if words:
                interpreter, rest = words[0], words[1:]
                if os.path.basename(interpreter) == "env":
                    command, env = _env_command(rest, env)
                    interpreter, rest = (command[0], command[1:]) if command else ("", [])
                found = _resolve(interpreter, env, launch.cwd) if interpreter else None
                python = bool(interpreter) and _is_python(os.path.basename(interpreter), found)
                flags = python_flags(rest)
        if not python:
            self._other(launch, name, path, depth)
            return
        if flags is None:
            flags = python_flags(launch.argv[1:])
        why = self._why_unguarded(launch._replace(env=env), flags)
        if why is None:
            return
        if self._allowed(name, path):
            self._unwatched(f"{name} (outbound_child_allow)")
        elif self.bootstrap is None and self.guard.mode != ENFORCE:
            self._unwatched(f"{name} (outbound_subprocess is off)")
        else:
            self._unguarded(launch, why)

    def _other(self, launch: Launch, name: str, path: str | None, depth: int) -> None:
        """A program that is not Python: a shell's command is read; anything else is
        unwatched."""
        __tracebackhide__ = True
        command = shell_command(name, launch.argv)
        if command is not None and depth < 4:
            for inner in shell_launches(command, launch.env, launch.cwd):
                if inner is None:
                    self._unwatched(name)
                else:
                    self._judge(inner, depth + 1)
            return
        if path is not None:
            self._unwatched(name)

    def _why_unguarded(self, launch: Launch, flags: frozenset[str]) -> str | None:
        """Why the bootstrap will not guard this Python child, or None when it will."""
        argv = launch.argv
        if EXECNET_BOOTSTRAP in argv and self._spawns_workers is not None:
            at = argv.index(EXECNET_BOOTSTRAP)
            if at and argv[at - 1] == "-c" and self._spawns_workers():
                return None  # a pytest-xdist worker: it runs the plugin itself
        bootstrap = self.bootstrap
        if bootstrap is None:
            return "outbound_subprocess = false: Python child processes are not guarded"
        for flag, text in _FLAGS.items():
            if flag in flags:
                return f"it is started with -{flag} ({text}): the bootstrap never runs"
        env = launch.env
        value = env.get(ENV)
        if not value:
            return (
                f"its environment has no {ENV} (it names the test's context to the child's"
                " guard): pass the environment on, e.g. env=dict(os.environ, ...)"
            )
        if os.path.abspath(value) != bootstrap.context_file:
            return f"its {ENV} names another context ({value}), not this session's"
        entries = env.get("PYTHONPATH", "").split(os.pathsep)
        cwd = launch.cwd
        base = _text(cwd) if cwd else os.getcwd()
        found = [i for i, e in enumerate(entries) if e and _same_dir(base, e, bootstrap.directory)]
        if not found:
            return (
                "its PYTHONPATH does not hold the bootstrap directory (whose sitecustomize"
                " starts the guard): add to PYTHONPATH, do not replace it"
            )
        for entry in entries[: found[0]]:
            theirs = _sitecustomize_in(entry, cwd)
            if theirs is not None:
                return (
                    f"{theirs} comes first on its PYTHONPATH and runs instead of the"
                    " bootstrap's sitecustomize: put the bootstrap directory first"
                )
        return None

    def _allowed(self, name: str, path: str | None) -> bool:
        return allowed(self.allow, name, path)

    def _unwatched(self, name: str) -> None:
        if _by_test_infrastructure():
            return
        if self._note is not None:
            self._note(name)
            return
        with self._lock:
            self.unwatched[name] += 1

    def _unguarded(self, launch: Launch, why: str) -> None:
        """A violation: in enforce ``OutboundBlocked`` stops the child before it starts."""
        __tracebackhide__ = True
        record = OutboundRequest(
            method="EXEC",
            url="child:" + command_text(launch.argv, launch.program),
            scheme="",
            host="",
            port=None,
            path="",
            query_text="",
            headers={},
            client=CHILD,
        )
        record.host_error = why
        self.guard.observe(record)


#: Who starts children that are not the tests': pytest-xdist's worker asks ``platform`` for
#: its description (``uname -p``), in every worker of every run (execnet runs xdist's
#: ``remote.py`` as ``__channelexec__``).
_INFRASTRUCTURE = frozenset({"xdist", "execnet", "__channelexec__"})


def _by_test_infrastructure() -> bool:
    """Whether the code starting this child is pytest-xdist's own (past the standard library
    and this package), not the code under test."""
    frame = sys._getframe(2)
    while frame is not None:
        top = str(frame.f_globals.get("__name__", "")).partition(".")[0]
        if top not in sys.stdlib_module_names and top != "pytest_outbound":
            return top in _INFRASTRUCTURE
        frame = frame.f_back  # type: ignore[assignment]
    return False


def allowed(patterns: Sequence[str], name: str, path: str | None) -> bool:
    """Whether ``outbound_child_allow`` names the program: a pattern with a path separator is
    its full path; any other is matched (``fnmatch``) against its file name."""
    import fnmatch

    for pattern in patterns:
        if os.sep in pattern or (os.altsep and os.altsep in pattern):
            wanted = os.path.abspath(os.path.expanduser(pattern))
            if path is not None and wanted in (path, os.path.realpath(path)):
                return True
        elif fnmatch.fnmatchcase(name, pattern):
            return True
    return False


def _same_dir(base: str, entry: str, directory: str) -> bool:
    return os.path.abspath(os.path.join(base, entry)) == directory


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
