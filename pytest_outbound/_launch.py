"""What a child process about to start is, and the verdict on it (``ChildWatch``).

Imported with the first child a session sees, not at start-up: most runs start none, and
pytest loads every module of the plugin through its assertion-rewriting import hook, whose
read of the cached bytecode (``marshal.load`` on the open file) costs about 185 instructions
a byte, ten times a plain import's (``benchmarks/RESULTS.md``, session 14). ``_children``
keeps what start-up needs: the watch, the bootstrap and the spool. See ``_children`` for
what is read and judged.
"""

from __future__ import annotations

import functools
import os
import re
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from pytest_outbound._children import ENV, EXECNET_BOOTSTRAP
from pytest_outbound._decide import CHILD
from pytest_outbound._guard import ENFORCE
from pytest_outbound._record import OutboundRequest

if TYPE_CHECKING:
    from pytest_outbound._children import ChildWatch


class Launch(NamedTuple):
    """A child about to start: the program as given, its arguments (``argv[0]`` first), the
    environment it gets, its working directory."""

    program: str
    argv: tuple[str, ...]
    env: Mapping[str, str]
    cwd: str | None


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


def on_event(watch: ChildWatch, event: str, args: tuple[Any, ...]) -> None:
    """A process audit event (``ChildWatch.on_event``: the context file is current, and
    it is not ``os.fork``)."""
    __tracebackhide__ = True
    ident = threading.get_ident()
    try:
        launch = read_launch(watch, event, args, ident)
    except Exception as exc:  # what cannot be read cannot be judged: fail closed
        why = f"the plugin could not read how it is started ({type(exc).__name__}: {exc})"
        _unguarded(watch, Launch("?", ("?",), os.environ, None), why)
        return
    if launch is None:
        return
    judge(watch, launch)
    if event == "subprocess.Popen":
        watch._announced[ident] = launch.argv


def read_launch(watch: ChildWatch, event: str, args: tuple[Any, ...], ident: int) -> Launch | None:
    if event == "subprocess.Popen":
        argv = _argv(args[1])
        program = _text(os.fspath(args[0])) if args[0] is not None else argv[0]
        cwd = None if args[2] is None else _text(os.fspath(args[2]))
        return Launch(program, argv, _environment(args[3]), cwd)
    if event == "os.system":
        return Launch("/bin/sh", ("sh", "-c", _text(args[0])), os.environ, None)
    if event in ("os.posix_spawn", "os.exec"):
        argv = _argv(args[1])
        if event == "os.posix_spawn" and watch._announced.pop(ident, None) == argv:
            return None  # subprocess's own: judged as ``subprocess.Popen``
        return Launch(_text(os.fspath(args[0])), argv, _environment(args[2]), None)
    if event == "os.spawn":
        return Launch(_text(os.fspath(args[1])), _argv(args[2]), _environment(args[3]), None)
    return None


def on_fork_exec(watch: ChildWatch, args: tuple[Any, ...]) -> None:
    """``_posixsubprocess.fork_exec``: a launch no audit event announced
    (``multiprocessing``'s spawn and forkserver, ``resource_tracker``)."""
    __tracebackhide__ = True
    try:  # (args, executable_list, close_fds, pass_fds, cwd, env, ...)
        argv = _argv(args[0])
        executables = _argv(args[1])
        cwd = None if args[4] is None else _text(os.fspath(args[4]))
        launch = Launch(
            executables[0] if executables else argv[0], argv, _environment(args[5]), cwd
        )
    except Exception:  # another Python's signature: the audit events remain the judge
        return
    if watch._announced.pop(threading.get_ident(), None) == argv:
        return  # subprocess.Popen's: judged already
    judge(watch, launch)


def judge(watch: ChildWatch, launch: Launch, depth: int = 0) -> None:
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
        _other(watch, launch, name, path, depth)
        return
    if flags is None:
        flags = python_flags(launch.argv[1:])
    why = _why_unguarded(watch, launch._replace(env=env), flags)
    if why is None:
        return
    if allowed(watch.allow, name, path):
        _unwatched(watch, f"{name} (outbound_child_allow)")
    elif watch.bootstrap is None and watch.guard.mode != ENFORCE:
        _unwatched(watch, f"{name} (outbound_subprocess is off)")
    else:
        _unguarded(watch, launch, why)


def _other(watch: ChildWatch, launch: Launch, name: str, path: str | None, depth: int) -> None:
    """A program that is not Python: a shell's command is read; anything else is
    unwatched."""
    __tracebackhide__ = True
    command = shell_command(name, launch.argv)
    if command is not None and depth < 4:
        for inner in shell_launches(command, launch.env, launch.cwd):
            if inner is None:
                _unwatched(watch, name)
            else:
                judge(watch, inner, depth + 1)
        return
    if path is not None:
        _unwatched(watch, name)


def _why_unguarded(watch: ChildWatch, launch: Launch, flags: frozenset[str]) -> str | None:
    """Why the bootstrap will not guard this Python child, or None when it will."""
    argv = launch.argv
    if EXECNET_BOOTSTRAP in argv and watch._spawns_workers is not None:
        at = argv.index(EXECNET_BOOTSTRAP)
        if at and argv[at - 1] == "-c" and watch._spawns_workers():
            return None  # a pytest-xdist worker: it runs the plugin itself
    bootstrap = watch.bootstrap
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


def _unwatched(watch: ChildWatch, name: str) -> None:
    if _by_test_infrastructure():
        return
    if watch._note is not None:
        watch._note(name)
        return
    with watch._lock:
        watch.unwatched[name] += 1


def _unguarded(watch: ChildWatch, launch: Launch, why: str) -> None:
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
    watch.guard.observe(record)


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
