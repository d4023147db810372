"""Interceptors: thin adapters that turn a client library's request into an ``OutboundRequest``.

Each adapter patches its library at the layer *above* where that library's mocks patch, so a
request is judged the same whether a mock or the network would answer it, and each redirect hop
is judged on its own. Every ``install`` returns the undo function, which puts back exactly the
original captured at install time. All of them hand their record to ``Guard.observe`` through
``judge``; none of them decides anything itself.

Adapters that call into a lower library that is intercepted too (requests -> urllib3,
urllib.request -> http.client) mark the call with ``JUDGED_ABOVE``, so one request is recorded
once.
"""

from __future__ import annotations

import contextvars
import functools
import importlib
import importlib.machinery
import importlib.util
import operator
import sys
import threading
import types
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from pytest_outbound._errors import OutboundBlocked
from pytest_outbound._guard import HOOK_RAISED as _HOOK_RAISED
from pytest_outbound._guard import Guard
from pytest_outbound._hosts import HostError, default_port, peer_from_url
from pytest_outbound._interceptors._body import BodyWatch, in_memory, peek
from pytest_outbound._record import HeadersKey, build_request

if TYPE_CHECKING:
    from pytest_outbound._stubs import Stub

Undo = Callable[[], None]

#: Set while a higher-level interceptor's original call runs; lower ones then stand aside.
JUDGED_ABOVE: contextvars.ContextVar[object | None] = contextvars.ContextVar(
    "outbound_judged_above", default=None
)


#: The URL as the code wrote it, before the client normalised it (first hop only).
WRITTEN_URL: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "outbound_written_url", default=None
)


def take_written_url() -> str | None:
    """The written URL of the request under way, once: redirect hops are judged as sent."""
    written = WRITTEN_URL.get()
    if written is not None:
        WRITTEN_URL.set(None)
    return written


#: URL as written -> whether it names no single host (see ``ambiguous``).
_AMBIGUOUS: dict[str, bool] = {}
_AMBIGUOUS_LIMIT = 4096
_AMBIGUOUS_LENGTH = 2048


def ambiguous(url: object) -> bool:
    """Whether the URL as written must be remembered: a text URL whose host is ambiguous or
    invalid (``peer_from_url`` refuses it). ``build_request`` uses a written URL only then (the
    client's normalised URL is judged otherwise), so the interceptors remember no other: most
    requests pay one dict lookup here instead of capturing and re-judging what was written."""
    if not isinstance(url, str):
        return False
    # a subclass may compare and hash its own way, and a long URL is seldom sent twice
    cached = type(url) is str and len(url) <= _AMBIGUOUS_LENGTH
    if cached:
        known = _AMBIGUOUS.get(url)
        if known is not None:
            return known
    try:
        peer_from_url(url)
        known = False
    except HostError:
        known = True
    if cached:
        if len(_AMBIGUOUS) >= _AMBIGUOUS_LIMIT:
            _AMBIGUOUS.clear()
        _AMBIGUOUS[url] = known
    return known


#: What patches each client library: the modules it needs imported first, and its installer
#: (``module:function``, the module imported only then). They run in this order: a library
#: before the peers that build on it.
ADAPTERS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("http.client",), f"{__name__}._stdlib:install_http_client"),
    (("urllib.request",), f"{__name__}._stdlib:install_urllib_request"),
    (("urllib3",), f"{__name__}._urllib3:install"),
    (("requests",), f"{__name__}._requests:install"),
    (("httpx",), f"{__name__}._httpx:install"),
    (("aiohttp",), f"{__name__}._aiohttp:install"),
    (("requests", "requests_mock"), f"{__name__}._requests:install_requests_mock"),
    (("vcr",), f"{__name__}._stdlib:install_vcr"),
    (("vcr", "aiohttp"), f"{__name__}._aiohttp:install_vcr"),
)


class InstallError(Exception):
    """A client library was imported and could not be patched: its requests go unjudged."""


class Installation:
    """Every patch of one session, undone exactly and in reverse by ``undo``.

    A client library is patched once it has been imported, and never imported for it: a suite
    that does not use requests or httpx does not pay for importing them (tens of milliseconds
    at every start). What is imported already is patched at once. What is imported later is
    patched the moment its import ends, in whichever thread, before the code importing it can
    call it (``_ImportWatch``), so a library first imported inside a test is judged by its own
    interceptor in that very test. A module object is patched once, and one imported again
    (dropped from ``sys.modules``, as pytester does, or reloaded) is patched again.

    ``catch_up``, called after collection and before every test, patches what an import the
    watch did not see brought in. An installer that fails inside an import does not fail the
    import (the code under test would see the plugin's error as its own). ``on_error`` is told
    at once; the failure is kept for ``take_errors``, and ``catch_up`` raises it for as long
    as its modules stay imported.
    """

    def __init__(
        self,
        guard: Guard,
        *,
        adapters: Sequence[tuple[tuple[str, ...], str]] = ADAPTERS,
        on_error: Callable[[InstallError], None] | None = None,
    ) -> None:
        self.guard = guard
        self.patches = Patches()
        self.adapters = tuple(adapters)
        #: Not None while an installer's failure is to be reported (``take_errors``): one not
        #: taken yet, or one whose modules are still the ones imported.
        self.error: InstallError | None = None
        #: (error, the modules it needed, those module objects, taken yet?)
        self._failures: list[tuple[InstallError, tuple[str, ...], tuple[object, ...], bool]] = []
        self._on_error = on_error
        self._modules_seen: tuple[int, str | None] = (-1, None)
        #: Each adapter's modules when its installer last ran, by its index in ``adapters``.
        self._done: dict[int, tuple[types.ModuleType, ...]] = {}
        #: Modules whose execution has ended, by name, though the import system still marks
        #: them as initializing (the installers run at that moment).
        self._executed: dict[str, types.ModuleType] = {}
        #: Imports end in any thread, and an installer's own imports may end inside it
        #: (reentrant). ``undo`` takes it too: no import that ends afterwards patches anything.
        self._lock = threading.RLock()
        self._closed = False
        try:
            _remember_thread_origins(guard, self.patches)
            _WATCH.add(self)
            self.catch_up()
        except BaseException:
            self.undo()
            raise

    @property
    def watched(self) -> frozenset[str]:
        return frozenset(name for needs, _ in self.adapters for name in needs)

    def catch_up(self) -> None:
        """Patch the libraries imported and not patched yet; raise ``error`` if there is one."""
        current = None if self.error is None else self._current()
        if current is not None:
            raise current
        modules = sys.modules
        # Before every test: nothing imported since the last look when sys.modules has the same
        # size and the same newest entry (an import and a removal that cancel out change that).
        seen = (len(modules), next(reversed(modules), None))
        if seen == self._modules_seen:
            return
        self._modules_seen = seen
        with self._lock:
            self._install_ready()
        current = None if self.error is None else self._current()
        if current is not None:
            raise current

    def take_errors(self) -> tuple[list[InstallError], InstallError | None]:
        """The failures not taken before (each is reported once, even if its module has gone
        since: the code that imported it ran unjudged), and the first failure whose modules
        are still the ones imported (it goes on breaking every test). A failure whose module
        has left sys.modules is forgotten: a nested session (pytester's) that imported a
        stand-in library, and has put sys.modules back, has not broken the later tests."""
        with self._lock:
            new = [failure[0] for failure in self._failures if not failure[3]]
            self._failures = [(*failure[:3], True) for failure in self._failures]
            return new, self._current()

    def _current(self) -> InstallError | None:
        """Forget the failures taken already whose modules have left sys.modules; update
        ``error``; return the first failure still current."""
        with self._lock:
            modules = sys.modules
            current = [
                failure
                for failure in self._failures
                if all(map(operator.is_, map(modules.get, failure[1]), failure[2]))
            ]
            self._failures = [f for f in self._failures if not f[3] or f in current]
            self.error = self._failures[0][0] if self._failures else None
            return current[0][0] if current else None

    def executed(self, name: str, module: types.ModuleType) -> None:
        """``module``, imported as ``name``, has just been executed (a first import, another
        import after it was dropped from sys.modules, or a reload, which makes new classes):
        patch what needs it. Never raises an installer's error (see the class)."""
        with self._lock:
            if self._closed:
                return
            self._executed[name] = module
            for index, (needs, _) in enumerate(self.adapters):
                if name in needs:
                    self._done.pop(index, None)
            # Only what needs this module, and what that builds on (requests before
            # requests-mock's saved send): another watched module in sys.modules may be
            # part-way (a package executed from ``spec_from_file_location`` by hand, which
            # nothing marks, while this submodule of it ended); ``catch_up`` patches it later.
            self._install_ready(name)

    def _install_ready(self, needed: str | None = None) -> None:
        """Run each installer whose modules are all imported, unless it ran for these very
        module objects; if ``needed`` is given, only those that need it and those whose
        modules all are among theirs. Called with the lock held."""
        if self._closed:
            return
        modules = sys.modules
        executed = self._executed
        wanted = [] if needed is None else [set(n) for n, _ in self.adapters if needed in n]
        for index, (needs, installer) in enumerate(self.adapters):
            if needed is not None and not any(
                wanted_set.issuperset(needs) for wanted_set in wanted
            ):
                continue
            found = []
            for name in needs:
                module = modules.get(name)
                if module is None or not (
                    (executed.get(name) is module and id(module) not in _EXECUTING)
                    or _imported(module)
                ):
                    break  # not imported, or not yet executed: its import will say
                found.append(module)
            else:
                ready = tuple(found)
                done = self._done.get(index)
                if done is not None and all(map(operator.is_, done, ready)):
                    continue
                self._done[index] = ready  # before it runs: its own imports may come back here
                try:
                    owner, _, function = installer.partition(":")
                    getattr(importlib.import_module(owner), function)(self.guard, self.patches)
                except Exception as exc:
                    self._failed(needs, ready, exc)

    def _failed(
        self, needs: tuple[str, ...], modules: tuple[types.ModuleType, ...], exc: Exception
    ) -> None:
        versions = [
            f"{name} {version}" if isinstance(version, str) else name
            for name, version in zip(
                needs, (getattr(m, "__version__", None) for m in modules), strict=True
            )
        ]
        detail = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, AttributeError) and isinstance(exc.obj, types.ModuleType):
            # not "partially initialized module ...": the installers run as its import ends
            detail = f"AttributeError: module {exc.obj.__name__!r} has no attribute {exc.name!r}"
        error = InstallError(
            f"pytest-outbound could not patch {' and '.join(versions)}"
            f" ({detail}), so requests made with it would not be judged."
            " Is it a version pytest-outbound supports (see its README)? If it is, please"
            " report this. To run without the plugin: -p no:outbound"
        )
        error.__cause__ = exc
        self._failures.append((error, needs, modules, False))
        if self.error is None:
            self.error = error
        if self._on_error is not None:
            self._on_error(error)

    def undo(self) -> None:
        with self._lock:
            self._closed = True
        _WATCH.discard(self)
        self.patches.undo()


#: The modules a ``_ReportingLoader`` is executing now, by id.
_EXECUTING: set[int] = set()
#: importlib's lazy module class (private): reading such a module executes it.
_LAZY_MODULE: type | tuple[()] = getattr(importlib.util, "_LazyModule", ())


def _imported(module: object) -> bool:
    """Whether ``module`` is a module whose execution has ended.

    Not a stand-in that a test put in sys.modules (a ``MagicMock``, or a module made by
    hand, which has no spec). Not a lazy module (importlib's ``LazyLoader``): reading it
    would execute it, and its import reports when it runs. Not one still executing: in
    another thread, or part-way, because a module it imports ends first. The import system
    marks that (``_initializing``) only in its own imports, so ``_EXECUTING`` covers
    ``module_from_spec`` and ``exec_module`` done by hand."""
    if not isinstance(module, types.ModuleType) or isinstance(module, _LAZY_MODULE):
        return False
    # read without the module's own attribute lookup (a ModuleType subclass may have one)
    spec = object.__getattribute__(module, "__dict__").get("__spec__")
    return (
        spec is not None
        and not getattr(spec, "_initializing", False)
        and id(module) not in _EXECUTING
    )


class _ImportWatch:
    """The meta path finder that tells every live ``Installation`` when a module one of them
    watches has been executed. One for the process: nested sessions (pytester's) share it.

    It finds nothing itself. For a watched name it asks the finders after it, and returns
    their spec with its loader wrapped in a ``_ReportingLoader`` for this one import (a
    loader object may serve many modules: zipimport's, pytest's assertion rewriter). Every
    other import costs one set lookup."""

    def __init__(self) -> None:
        self.names: frozenset[str] = frozenset()
        self.installations: tuple[Installation, ...] = ()
        self._lock = threading.Lock()

    def add(self, installation: Installation) -> None:
        """Watch for ``installation`` too, and stand first in ``sys.meta_path``: a nested
        session's assertion rewriter, inserted since, would otherwise load before it."""
        with self._lock:
            self.installations += (installation,)
            self.names = self.names | installation.watched
            if self in sys.meta_path:
                sys.meta_path.remove(self)
            sys.meta_path.insert(0, self)

    def discard(self, installation: Installation) -> None:
        with self._lock:
            self.installations = tuple(i for i in self.installations if i is not installation)
            self.names = frozenset(name for i in self.installations for name in i.watched)
            if not self.installations and self in sys.meta_path:
                sys.meta_path.remove(self)

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.names:
            return None
        finders = sys.meta_path
        for finder in finders[finders.index(self) + 1 :] if self in finders else ():
            find = getattr(finder, "find_spec", None)
            spec = None if find is None else find(fullname, path, target)
            if spec is not None:
                loader = spec.loader
                # A namespace package executes nothing; a loader without exec_module is left
                # to the import system's old protocol, and to catch_up.
                if loader is not None and hasattr(loader, "exec_module"):
                    spec.loader = _ReportingLoader(loader)
                return spec  # type: ignore[no-any-return]
        return None  # the import system goes on to the finders after this one itself

    def executed(self, name: str, module: types.ModuleType) -> None:
        for installation in self.installations:
            installation.executed(name, module)


class _ReportingLoader:
    """A module's own loader, for one import, that reports when the module has executed.

    Before the module runs, its ``__loader__`` and ``__spec__.loader`` are the real loader
    again (``importlib.resources``, ``inspect``, ``reload`` see nothing of this). After it
    ran, and only if it is the module ``sys.modules`` holds (not a copy loaded by hand), the
    submodule is bound on its package first, as the import system does right after (so
    ``http.client`` works in an installer), and the watch is told."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        create = getattr(self.loader, "create_module", None)
        return None if create is None else create(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        loader = self.loader
        spec = getattr(module, "__spec__", None)
        if spec is not None and spec.loader is self:
            spec.loader = loader
        if getattr(module, "__loader__", None) is self:
            module.__loader__ = loader
        _EXECUTING.add(id(module))
        try:
            loader.exec_module(module)
        finally:
            _EXECUTING.discard(id(module))
        name = module.__name__
        if sys.modules.get(name) is not module:
            return
        package, _, child = name.rpartition(".")
        parent = sys.modules.get(package) if package else None
        if parent is not None:
            setattr(parent, child, module)
        _WATCH.executed(name, module)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)


_WATCH = _ImportWatch()


def install_all(guard: Guard, on_error: Callable[[InstallError], None] | None = None) -> Undo:
    """Patch every client library in use, now and when imported (all or nothing at once);
    return the undo."""
    return Installation(guard, on_error=on_error).undo


def _remember_thread_origins(guard: Guard, patches: Patches) -> None:
    """Each thread remembers the test that started it, so its late egress is that test's."""
    original_start = threading.Thread.start

    def start(self: threading.Thread) -> None:
        key = guard.origin_key
        setattr(self, key, guard.current() or getattr(threading.current_thread(), key, None))
        original_start(self)

    patches.patch(threading.Thread, "start", start)


class Patches:
    """The patches made so far, each undone exactly, last first."""

    def __init__(self) -> None:
        self._undos: list[Undo] = []
        #: What these patches put in place, by id: an installer run again on a class that is
        #: patched already (a package executed again, whose classes live in its submodules)
        #: must not wrap its own wrapper, or each request would be judged twice.
        self._placed: dict[int, object] = {}

    def patch(self, owner: Any, name: str, replacement: Any) -> None:
        """Replace ``owner.name``; an inherited attribute is shadowed, and the shadow removed.
        Where ``owner.name`` is what these patches put there, nothing changes."""
        own = name in owner.__dict__
        original = owner.__dict__[name] if own else getattr(owner, name)
        if self._in_place(original):
            return
        functools.update_wrapper(replacement, original)
        setattr(owner, name, replacement)
        self._placed[id(replacement)] = replacement
        if own:
            self._undos.append(lambda: setattr(owner, name, original))
        else:
            self._undos.append(lambda: delattr(owner, name))

    def _in_place(self, function: object) -> bool:
        """Whether ``function`` is one of these patches, or wraps one (a nested session's
        patch, made on top of this one, names it as its ``__wrapped__``)."""
        placed = self._placed
        for _ in range(64):  # a chain that loops, or is absurdly long: not ours
            if placed.get(id(function)) is function:
                return True
            function = getattr(function, "__wrapped__", None)
            if function is None:
                return False
        return False

    def undo(self) -> None:
        while self._undos:
            self._undos.pop()()
        self._placed.clear()


def judge(
    guard: Guard,
    method: str,
    url: str,
    *,
    headers: Any,
    body: object,
    client: str,
    texts: bool = False,
    headers_key: HeadersKey | None = None,
    written_url: str | None = None,
    callers: int = 1,
) -> tuple[object, Stub | None]:
    """Build the record of a request about to be sent and judge it (``OutboundBlocked`` in
    enforce). Returns ``body`` itself, never read ahead of the client (a stream is watched as
    it is sent: ``_body``), and the stub that answers the request, if any.

    ``texts``, ``headers_key``: what the interceptor knows of the headers (``build_request``).
    ``callers``: how many frames above this one are the interceptor's own (this package's);
    the search for the call site starts above them (``Guard.observe``'s ``skip``).

    A failure of the plugin's own code here is not the caller's: in audit the request goes
    on, unjudged, and the summary reports the failure; in enforce it is blocked (what cannot
    be judged is not let through)."""
    __tracebackhide__ = True
    try:
        data = body if body.__class__ is bytes else in_memory(body)
        if data is None:
            data = peek(body, guard.body_limit)
        record = build_request(
            method,
            url,
            headers=headers,
            body=data,
            client=client,
            texts=texts,
            headers_key=headers_key,
            body_limit=guard.body_limit,
            written_url=written_url,
        )
        if data is None:
            record.streamed = True
    except Exception as exc:
        _internal(guard, method, url, client, exc)
        return body, None
    hooks_before = _HOOK_RAISED.get()
    try:
        judged = guard.observe(record, skip=callers + 1)  # this frame and its callers: ours
    except OutboundBlocked:
        raise
    except Exception as exc:
        if _raised_by_hook(exc, hooks_before):
            raise  # user code (a ``pytest_outbound_*`` hook): its exception is its own
        _internal(guard, method, url, client, exc)
        return body, None
    if not judged:
        return body, None
    if data is None:
        BodyWatch.start(guard, record, body)
    scope = guard.scope
    if scope is None or not scope.stubs:  # ``stub_for``'s own first test, without the call
        return body, None
    stub = guard.stub_for(record)
    if stub is not None:
        stub.calls.append(record)
    return body, stub


def _raised_by_hook(error: BaseException, before: object) -> bool:
    raised = _HOOK_RAISED.get()
    return raised is not before and raised is error


def unreadable(guard: Guard, client: str, request: object, error: Exception) -> None:
    """An interceptor could not read the request it was given (an object the client did not
    build: a test's mock): it goes on unjudged in audit, reported with the plugin's own
    failures; in enforce it is blocked (what cannot be judged is not let through)."""
    __tracebackhide__ = True
    shown = f"{type(request).__module__}.{type(request).__qualname__} object"
    _internal(guard, "?", f"<{shown}>", client, error)


def _internal(guard: Guard, method: str, url: str, client: str, error: Exception) -> None:
    """The plugin failed judging a request: in enforce it is blocked, in audit it goes on."""
    __tracebackhide__ = True
    guard.internal_error(f"{method} {url} (client: {client})", error)
    if guard.enforcing:
        blocked = OutboundBlocked(
            f"outbound request blocked: {method} {url} (client: {client})\n"
            f"  why:  pytest-outbound failed judging it ({type(error).__name__}: {error});"
            " what it cannot judge it does not let through. Please report this.",
            url=url,
            client=client,
            reasons=("internal-error",),
        )
        guard.blocked_unjudged(method, url, client, blocked)
        raise blocked from error


@contextmanager
def judged_above(marker: object) -> Iterator[None]:
    token = JUDGED_ABOVE.set(marker)
    try:
        yield
    finally:
        JUDGED_ABOVE.reset(token)


def url_of(scheme: str, host: str, port: int | None, target: str) -> str:
    """An absolute URL from a connection's parts and a request target (path or absolute URL)."""
    if target.startswith(("http://", "https://")):
        return target
    netloc = f"[{host}]" if ":" in host and not host.startswith("[") else host
    if port is not None and port != default_port(scheme):
        netloc = f"{netloc}:{port}"
    return f"{scheme}://{netloc}{target if target.startswith('/') else '/' + target}"
