"""The runtime guard: interceptors hand it a record; it attributes, judges, records and blocks.

One data flow: interceptor -> ``OutboundRequest`` -> ``Guard.observe`` -> ``decide`` ->
record (+ hooks) -> ``OutboundBlocked`` in enforce mode. No pytest imports: the plugin wires
hooks in as callables and moves the ``scope`` from test to test.
"""

from __future__ import annotations

import contextvars
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import CodeType, FrameType, ModuleType
from typing import TYPE_CHECKING, Any, TypeVar, cast

from pytest_outbound._callsite import is_installed, shown_filename
from pytest_outbound._decide import DNS, SOCKET, Context, Verdict, decide
from pytest_outbound._errors import OutboundBlocked
from pytest_outbound._hosts import is_local
from pytest_outbound._record import VIOLATION, OutboundRequest

if TYPE_CHECKING:
    from pytest_outbound._stubs import Stub

_T = TypeVar("_T")


def process_wide(name: str, make: Callable[[], _T]) -> _T:
    """The one object ``name`` of this process, made by ``make`` the first time.

    Kept on the ``sys`` module, so that it outlives a re-import of this package: pytester
    drops the modules an inner run imported, but the audit hook their first import added
    cannot be removed, and must go on seeing the same switch."""
    store: dict[str, Any] = sys.__dict__.setdefault("_pytest_outbound_process", {})
    if name not in store:
        store[name] = make()
    return cast(_T, store[name])


#: Set while the plugin does its own work (its probe of this machine's name): the backstop
#: judges none of it. Never set while user code runs, even user code the plugin calls.
OWN_WORK: contextvars.ContextVar[bool] = process_wide(
    "own_work", lambda: contextvars.ContextVar("outbound_own_work", default=False)
)
#: Set while a ``pytest_outbound_request``/``_violation`` hook runs: its own egress is judged
#: (and blocked) like any other, but does not call the hooks again.
_IN_HOOK: contextvars.ContextVar[bool] = contextvars.ContextVar("outbound_in_hook", default=False)

#: The last exception a ``pytest_outbound_*`` hook raised in this context: user code's, never
#: taken for a failure of the plugin's own (``_interceptors.judge``).
HOOK_RAISED: contextvars.ContextVar[BaseException | None] = contextvars.ContextVar(
    "outbound_hook_raised", default=None
)

#: The attribute on a ``threading.Thread`` naming the test scope that started it.
ORIGIN = "_outbound_origin"
_SOCKET_OR_DNS = (SOCKET, DNS)
#: Worker threads of pools outlive the test that happened to start them: use the current test.
_POOL_THREADS = ("ThreadPoolExecutor", "asyncio_")

AUDIT = "audit"
ENFORCE = "enforce"
OFF = "off"
MODES = (AUDIT, ENFORCE, OFF)

# Frames from these top-level packages are library code, never "the user's call site".
_LIBRARY_PACKAGES = frozenset(
    {
        "pytest_outbound",
        "requests",
        "httpx",
        "httpcore",
        "urllib3",
        "responses",
        "respx",
        "pytest_httpx",
        "requests_mock",
        "anyio",
        "sniffio",
        "h11",
        "h2",
        "aiohttp",
        "vcr",
        "_pytest",
        "pytest",
        "pytest_socket",
        "gevent",
        "pluggy",
        "time_machine",
        "freezegun",
        "idna",
        "certifi",
        "charset_normalizer",
    }
) | (frozenset(sys.stdlib_module_names) - {"test"})  # user suites are often named "test"


class Scope:
    """One test item while it runs: what it may contact, what it did, what it stubbed."""

    __slots__ = (
        "context",
        "deferred",
        "judged",
        "last_sent",
        "nodeid",
        "pending",
        "phase",
        "reached",
        "records",
        "streams",
        "stubs",
        "unmarked",
    )

    def __init__(self, nodeid: str, context: Context, phase: str = "setup") -> None:
        self.nodeid = nodeid
        self.context = context
        self.phase = phase
        self.records: list[OutboundRequest] = []
        self.stubs: list[Stub] = []
        #: Blocked exceptions raised in the current phase, not yet seen to reach pytest.
        self.pending: list[OutboundBlocked] = []
        #: Blocks of a phase that ended in a skip or under an xfail marker, which would hide
        #: them: they fail the test's teardown instead.
        self.deferred: list[str] = []
        #: ``outbound_marker``: the marker this test lacks (its real connections are
        #: violations), or "".
        self.unmarked = ""
        #: Whether this test made a real connection to a non-local address.
        self.reached = False
        #: Streamed bodies of this test's requests still to be judged (``_interceptors._body``).
        self.streams: list[Any] = []
        #: When each destination was last contacted in this test (for ``min_interval``).
        self.last_sent: dict[str, float] = {}
        #: Host -> ports an HTTP interceptor judged in this test (their connections are not
        #: judged again by the socket backstop; other ports of the same host are).
        self.judged: dict[str, set[int | None]] = {}

    def __repr__(self) -> str:
        return f"Scope(nodeid={self.nodeid!r}, phase={self.phase!r})"


class Guard:
    """Process-wide state of one pytest session's interception."""

    def __init__(
        self,
        *,
        mode: str,
        context: Context,
        rootpath: Path,
        local_enforce: bool = False,
        body_limit: int,
        on_request: Callable[[OutboundRequest], object] | None = None,
        on_violation: Callable[[OutboundRequest], object] | None = None,
    ) -> None:
        self.mode = mode
        self.active = True
        #: Judges egress outside any test (collection, session fixtures, late threads).
        self.session_context = context
        self.scope: Scope | None = None
        #: Called when ``scope`` is None while a fixture wider than a function may have
        #: finished its setup since: it puts the test's scope back (the plugin's
        #: ``_settle_fixtures``). None the rest of the time.
        self.settle: Callable[[], object] | None = None
        self.outside_phase = "collect"
        self.records: list[OutboundRequest] = []
        self.outside_blocked: list[OutboundRequest] = []
        #: Called with each request blocked outside any test (the plugin fails the session,
        #: and after the exit status is fixed, the exit watch makes the process fail).
        self.on_outside_block: Callable[[OutboundRequest], object] | None = None
        self.last_sent: dict[str, float] = {}
        self.local_enforce = local_enforce
        #: The attribute, on each thread, naming the test that started it (one per guard, so a
        #: session nested in another, as pytester runs them, keeps its own).
        self.origin_key = f"{ORIGIN}_{id(self):x}"
        #: Streamed bodies of requests made outside any test, still to be judged.
        self.streams: list[Any] = []
        #: Failures of the plugin's own judging code: (what it was judging, the traceback).
        #: In audit the request goes on unjudged; the summary and the report say so.
        self.internal_errors: list[tuple[str, str]] = []
        #: ``outbound_marker``: the marker a test needs to make real non-local connections.
        self.network_marker = ""
        #: Offline mode: no real connection may leave, documented or not.
        self.offline = False
        self._judged: dict[str, set[int | None]] = {}
        self.body_limit = body_limit
        self._rootpath = rootpath
        self._on_request = on_request
        self._on_violation = on_violation
        # Reentrant: a signal handler may send while this thread judges.
        self._lock = threading.RLock()
        self._relpaths: dict[str, str] = {}
        #: Every code object ``_location`` has classified, by id: kept alive, so that an id in
        #: the two below is never reused by another code object.
        self._codes: dict[int, CodeType] = {}
        #: ids of the code objects that belong to a library (never "the user's call site").
        self._library_ids: set[int] = set()
        #: (id(code object), instruction offset) -> "path:line" of the user's call sites.
        self._locations: dict[tuple[int, int], str] = {}

    def listen(
        self,
        *,
        on_request: Callable[[OutboundRequest], object] | None,
        on_violation: Callable[[OutboundRequest], object] | None,
    ) -> None:
        """Call ``on_request`` with every record and ``on_violation`` with each violation
        (``None``: call nothing). The plugin passes pytest's hooks only while some plugin or
        conftest implements them; in a child process there are no hooks, and
        ``on_request`` writes the records to the parent."""
        self._on_request = on_request
        self._on_violation = on_violation

    @property
    def enforcing(self) -> bool:
        return self.mode == ENFORCE

    def observe(self, request: OutboundRequest, *, skip: int = 0) -> bool:
        """Judge and record ``request``; in enforce mode raise ``OutboundBlocked`` on violation.

        Returns False when the request is local traffic that is not judged (SPEC §3). ``skip``:
        how many frames above the caller are this package's own for certain; the search for
        the call site (``_location``) starts above them, without looking at each.
        """
        __tracebackhide__ = True
        peer = request.peer
        # Loopback connections are local (SPEC §3), and so is looking up "localhost" itself; a
        # lookup of a name below it ("x.localhost"), or a socket given that name (C looks it
        # up), may reach the configured nameserver and go wherever it answers.
        if (
            peer is not None
            and not self.local_enforce
            and is_local(peer)
            and (
                request.client not in _SOCKET_OR_DNS
                or peer.ip is not None
                or peer.host == "localhost"
            )
        ):
            return False
        # ``_attribution``, inline: this runs for every request
        scope = self.scope
        if scope is None and self.settle is not None:
            self.settle()
            scope = self.scope
        thread = _current_thread()
        origin: Scope | None = getattr(thread, self.origin_key, None)
        thread_name = thread.name if thread is not None else f"Dummy-{threading.get_ident()}"
        late = (
            origin is not None and origin is not scope and not thread_name.startswith(_POOL_THREADS)
        )
        if late:
            scope = origin
        if scope is not None:
            context, history, judged = scope.context, scope.last_sent, scope.judged
        else:
            context, history, judged = self.session_context, self.last_sent, self._judged
        now = request.time = time.time()  # the application's clock: time-machine/freezegun
        with self._lock:  # min_interval: checking and noting the time is one step
            verdict = decide(request, context, history=history)
            if request.unmarked:
                verdict = _unmarked(verdict, request.unmarked)
            destination = verdict.destination
            if destination is not None and (verdict.allowed or self.mode != ENFORCE):
                history[destination] = now
            self.records.append(request)
            if scope is not None:
                scope.records.append(request)
            # What an HTTP interceptor judged: its connection and lookup are not recorded
            # twice (``observe_low``). In enforce only what was allowed: a blocked request
            # exempts nothing that follows it.
            if request.client not in _SOCKET_OR_DNS and (verdict.allowed or self.mode != ENFORCE):
                ports = judged.get(request.host)
                if ports is None:
                    judged[request.host] = {request.port}
                else:
                    ports.add(request.port)
        request.destination = destination
        if not verdict.allowed:  # the record was made allowed, with no reasons
            request.verdict = VIOLATION
        if verdict.reasons:
            request.reasons = list(verdict.reasons)
        if scope is not None:
            request.nodeid = scope.nodeid
            if late:  # a test's thread, after the test: the session's, or the exit's
                request.phase = "exit" if self.outside_phase == "exit" else "session"
            else:
                request.phase = scope.phase
        else:
            request.phase = self.outside_phase
        request.location = request.location or self._location(skip, request)
        request.thread = thread_name
        if request.body_size > len(request.body):
            request.field_values()  # from the whole body, before it is let go
        request.full_body = b""
        if verdict.allowed or self.mode != ENFORCE:
            if self._on_request is not None:
                _call_hook(self._on_request, request)
            if not verdict.allowed and self._on_violation is not None:
                _call_hook(self._on_violation, request)
            return True
        error = OutboundBlocked(
            _messages().blocked_message(request, verdict, context),
            url=request.url,
            client=request.client,
            reasons=verdict.reasons,
        )
        # Counted before any hook runs: a hook that raises (pytest.skip() in a
        # pytest_outbound_violation) must not lose the block.
        if scope is not None and not late:
            scope.pending.append(error)
        else:
            self.outside_blocked.append(request)
            if self.on_outside_block is not None:
                self.on_outside_block(request)
        try:
            if self._on_request is not None:
                _call_hook(self._on_request, request)
            if self._on_violation is not None:
                _call_hook(self._on_violation, request)
        finally:
            raise error  # the block stands, whatever a hook raised (chained to it)

    def observe_streamed(self, request: OutboundRequest, scope: Scope | None, data: bytes) -> None:
        """Judge the streamed body of ``request`` (judged on all else by ``observe``), now that
        it has been sent: ``data`` is what passed, up to the body limit, and
        ``request.body_size`` how much did. What breaks the policy now could not be stopped: in
        enforce it fails the test that sent it (at its teardown), or the session."""
        request.streamed = False
        request.body = data[: self.body_limit]
        request.full_body = data
        request._fields = None
        context = scope.context if scope is not None else self.session_context
        try:
            verdict = decide(request, context)
            if request.body_size > len(request.body) or not verdict.allowed:
                request.field_values()
        finally:
            request.full_body = b""
        if verdict.allowed:
            return
        with self._lock:
            new = [reason for reason in verdict.reasons if reason not in request.reasons]
            if not new:
                return
            first = request.verdict != VIOLATION
            request.verdict = VIOLATION
            request.reasons = [*request.reasons, *new]
            request.destination = request.destination or verdict.destination
        if first and self._on_violation is not None:
            _call_hook(self._on_violation, request)
        if self.mode != ENFORCE:
            return
        text = _messages().sent_message(request, verdict, context)
        if scope is not None and scope is self.scope:
            scope.deferred.append(text)
        else:
            self.outside_blocked.append(request)
            if self.on_outside_block is not None:
                self.on_outside_block(request)

    def internal_error(self, what: str, error: BaseException) -> None:
        """The plugin's own judging code failed while judging ``what``: kept for the summary
        and the report. (In enforce the caller blocks the request: what cannot be judged is
        not let through.)"""
        import traceback

        text = "".join(traceback.format_exception(error))
        with self._lock:
            self.internal_errors.append((what, text))

    def blocked_unjudged(self, method: str, url: str, client: str, error: OutboundBlocked) -> None:
        """A request the plugin failed to judge is blocked (enforce): counted like any block,
        so that code which swallows the exception does not hide it."""
        scope, late = self._attribution()
        if scope is not None and not late:
            scope.pending.append(error)
            return
        record = OutboundRequest(method, url, "", "", None, "", "", {}, client=client)
        record.verdict, record.reasons = VIOLATION, ["internal-error"]
        record.phase = self.outside_phase
        with self._lock:
            self.records.append(record)
            self.outside_blocked.append(record)
        if self.on_outside_block is not None:
            self.on_outside_block(record)

    def observe_low(self, request: OutboundRequest, names: Iterable[str] = ()) -> None:
        """Judge a socket or DNS record (the backstop's) with ``observe``.

        One that repeats what an HTTP interceptor judged in this test (same host and port;
        for a lookup, the same host) is not recorded again: in audit not at all, in enforce
        only when it is allowed on its own (judged without ``min_interval``, which the HTTP
        request counted already). Nothing is exempt from being judged in enforce.
        """
        __tracebackhide__ = True
        peer = request.peer
        if self.network_marker and request.client == SOCKET and self._reaches(request):
            return
        if peer is not None and not request.offline:
            scope, _ = self._attribution()
            judged = scope.judged if scope is not None else self._judged
            if judged and _judged_before(judged, request, (peer.host, *names)):
                if self.mode != ENFORCE:
                    return
                context = scope.context if scope is not None else self.session_context
                if decide(request, context).allowed:
                    return
        self.observe(request, skip=1)

    def _reaches(self, request: OutboundRequest) -> bool:
        """``outbound_marker``: a real connection to a non-local address is noted on its test;
        in a test without the marker it is judged as a violation whatever judged its host
        before (returns True: judged here)."""
        __tracebackhide__ = True
        peer = request.peer
        if peer is None or (peer.ip is not None and is_local(peer)) or peer.host == "localhost":
            return False
        scope, late = self._attribution()
        if scope is None or late:
            return False
        scope.reached = True
        if not scope.unmarked:
            return False
        request.unmarked = scope.unmarked
        self.observe(request, skip=2)
        return True

    def current(self) -> Scope | None:
        """The test whose egress this is now (``scope``, settled first)."""
        if self.scope is None and self.settle is not None:
            self.settle()
        return self.scope

    def _attribution(self) -> tuple[Scope | None, bool]:
        """The test a request belongs to, and whether it came after that test was over.

        A thread started by a test is that test's, even when it fires after the test ended
        (late egress, reported against it with phase ``session``).
        """
        scope = self.current()
        thread = _current_thread()
        origin: Scope | None = getattr(thread, self.origin_key, None)
        if (
            origin is None
            or origin is scope
            or thread is None
            or thread.name.startswith(_POOL_THREADS)
        ):
            return scope, False
        return origin, True

    def stub_for(self, request: OutboundRequest) -> Stub | None:
        """The first stub registered in this test that answers ``request``."""
        scope = self.current()
        if scope is None or not scope.stubs:
            return None
        for stub in scope.stubs:
            if stub.answers(request):
                return stub
        return None

    #: ids of the code objects of installed wrapper libraries (``_location``): passed over like
    #: a library's, the first one's frame kept as the request's ``via``. Made on first use.
    _wrapper_ids: set[int] | None = None

    def _location(self, skip: int = 0, request: OutboundRequest | None = None) -> str:
        """``path:line`` of the first frame, from ``observe``'s caller up (past ``skip`` more),
        that is not library code: neither a known package's (``_LIBRARY_PACKAGES``) nor an
        installed one's (``site-packages``, ``dist-packages``: a wrapper such as an error
        reporter or an analytics client). The first installed wrapper's frame passed on the
        way, if any, is set as ``request.via``; with no user frame at all, it is the location.

        Frames are looked at one by one (each ``f_back`` makes a frame object);
        ``sys._getframe`` jumps over the skipped ones without making theirs. Code objects are
        known by ``id`` (hashing one hashes its bytecode and constants), and a call site by its
        instruction offset (working out a line number reads the code's line table); each is
        classified once, by its module's name and its file name as text (no file system call),
        and its code object kept alive (``_codes``)."""
        frame = sys._getframe(2 + skip)
        library = self._library_ids
        wrappers = self._wrapper_ids
        if wrappers is None:
            wrappers = self._wrapper_ids = set()
        via = ""
        while frame is not None:
            code = frame.f_code
            if id(code) in library:
                frame = frame.f_back  # type: ignore[assignment]
                continue
            key = (id(code), frame.f_lasti)
            location = self._locations.get(key)
            if location is None:
                if id(code) not in self._codes:  # not seen yet: a library's, or the user's?
                    self._codes[id(code)] = code
                    if frame.f_globals.get("__name__", "").partition(".")[0] in _LIBRARY_PACKAGES:
                        library.add(id(code))
                        frame = frame.f_back  # type: ignore[assignment]
                        continue
                    if is_installed(code.co_filename):
                        wrappers.add(id(code))
                # a new call site: one string for it, shared by its requests
                if id(code) in wrappers:  # named from its package on: posthog/request.py
                    shown = shown_filename(code.co_filename, code.co_filename)
                else:
                    shown = self._relpath(code.co_filename)
                location = self._locations[key] = f"{shown}:{frame.f_lineno}"
            if id(code) in wrappers:
                via = via or location
                frame = frame.f_back  # type: ignore[assignment]
                continue
            if via and request is not None:
                request.via = via
            return location
        return via

    def relative(self, location: str) -> str:
        """An absolute ``path:line`` as ``_location`` gives it (relative to the root)."""
        path, sep, line = location.rpartition(":")
        return f"{self._relpath(path)}:{line}" if sep and path else location

    #: The root as text, normalised (``_relpath``); worked out on first use.
    _root: str | None = None

    def _relpath(self, filename: str) -> str:
        """``filename`` relative to the root when it lies below it; else as it is: a path
        outside the root stays absolute, a relative one (``<string>``, a name compiled by
        hand) stays as written.

        Purely lexical: this runs inside the client's call, often in a running event loop,
        so it makes no filesystem or working-directory call (``os.path.relpath`` makes both
        paths absolute with ``os.getcwd``, which blockbuster rightly counts as blocking). The
        root pytest gives is absolute, and so is almost every code object's filename."""
        cached = self._relpaths.get(filename)
        if cached is None:
            root = self._root
            if root is None:
                root = self._root = _normalised_root(self._rootpath)
            cached = self._relpaths[filename] = _below(filename, root)
        return cached


def _normalised_root(rootpath: Path) -> str:
    """The root as ``_below`` compares it. Only a root given relative (a ``Guard`` made by
    hand, never the plugin's) is made absolute, the one time, against the working directory."""
    root = os.fspath(rootpath)
    if not os.path.isabs(root):
        root = os.path.abspath(root)
    return os.path.normpath(root)


def _below(filename: str, root: str) -> str:
    """``filename`` relative to ``root`` if it is an absolute path below it (or the root
    itself, "."), else ``filename`` unchanged. String operations only."""
    if not os.path.isabs(filename):
        return filename
    path = os.path.normpath(filename)
    folded, folded_root = os.path.normcase(path), os.path.normcase(root)
    if folded == folded_root:
        return "."
    prefix = folded_root if folded_root.endswith(os.sep) else folded_root + os.sep
    return path[len(prefix) :] if folded.startswith(prefix) else filename


def _unmarked(verdict: Verdict, marker: str) -> Verdict:
    """``verdict``, made a violation: a real connection from a test without ``marker``."""
    return Verdict(
        False,
        verdict.destination,
        (*verdict.reasons, f"unmarked:{marker}"),
        (
            *verdict.detail,
            f"a real connection to a non-local address from a test without"
            f" @pytest.mark.{marker} (outbound_marker = {marker})",
        ),
        verdict.closest,
    )


def _judged_before(
    judged: dict[str, set[int | None]], request: OutboundRequest, hosts: Iterable[str]
) -> bool:
    if request.client == DNS:
        return any(host in judged for host in hosts)
    port = request.port
    return any(port in judged.get(host, ()) for host in hosts)


def _call_hook(hook: Callable[[OutboundRequest], object], request: OutboundRequest) -> None:
    """Call a ``pytest_outbound_*`` hook: user code, judged like any other (never the
    plugin's own work); what it sends does not call the hooks again."""
    if _IN_HOOK.get():
        return
    hooked = _IN_HOOK.set(True)
    own = OWN_WORK.set(False)
    try:
        hook(request)
    except BaseException as exc:
        HOOK_RAISED.set(exc)
        raise
    finally:
        OWN_WORK.reset(own)
        _IN_HOOK.reset(hooked)


def first_user_frame(frame: FrameType | None) -> str:
    """``path:line`` of the first frame, from ``frame`` outwards, that is not library code
    (absolute: before a session there is no root directory to shorten it by)."""
    while frame is not None:
        if frame.f_globals.get("__name__", "").partition(".")[0] not in _LIBRARY_PACKAGES:
            return f"{frame.f_code.co_filename}:{frame.f_lineno}"
        frame = frame.f_back
    return ""


_MESSAGES: ModuleType | None = None


def _messages() -> ModuleType:
    """The messages module, imported at the first block only (start-up cost), and kept here:
    ``_exit.watch`` calls this before the interpreter's exit, because a finalizer run as it
    shuts down can import nothing (``sys.meta_path`` is None, ``sys.modules`` emptied)."""
    global _MESSAGES
    if _MESSAGES is None:
        import pytest_outbound._messages as module

        _MESSAGES = module
    return _MESSAGES


def _current_thread() -> threading.Thread | None:
    """The ``Thread`` object of this thread, or None for one not started by ``threading``:
    ``threading.current_thread()`` would make a dummy one for it, which ``active_count()``
    and ``enumerate()`` then show to the code under test."""
    active: dict[int, threading.Thread] = getattr(threading, "_active", {})
    return active.get(threading.get_ident())
