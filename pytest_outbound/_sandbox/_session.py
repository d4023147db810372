"""A pytest session inside the sandbox: it joins the gateway and judges what it is asked.

``attach`` is called by the plugin with the session's guard (the early one, before the
initial conftests are imported; the session's own at configure; a pytest-xdist worker's with
the token its controller got for it). What the gateway and the DNS responder see is judged
by ``_judging.judge`` with that guard, so it is attributed to the test under way, recorded,
summarised and reported like any request, and blocked (in enforce) like any violation: the
test fails at the end of its phase.

The judging runs in threads started when the session joins, before any test: no test is
their origin (``Guard.observe`` attributes each request to the test running then).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import queue
import socket
import threading
from typing import Any

from pytest_outbound._backstop import own_work
from pytest_outbound._guard import Guard
from pytest_outbound._sandbox._control import CONTROL_ENV, TOKEN_ENV, LineReader, send_line
from pytest_outbound._sandbox._judging import Ask, judge

#: Threads that judge: a ``pytest_outbound_request`` hook that itself sends through the
#: gateway is judged by another.
_JUDGES = 4


class SandboxSession:
    """This process's channel to the gateway."""

    def __init__(self, sock: socket.socket, reader: LineReader, guard: Guard) -> None:
        self.guard = guard
        #: The pytest run that joined (``attach``).
        self.owner: object = None
        self.sock = sock
        self.pid = os.getpid()
        self._reader = reader
        self._lock = threading.Lock()
        self._asks: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
        self._ids = itertools.count(1)
        self._tokens: dict[int, queue.SimpleQueue[str]] = {}
        for _ in range(_JUDGES):
            threading.Thread(target=self._judge, name="outbound-sandbox", daemon=True).start()
        threading.Thread(target=self._read, name="outbound-sandbox", daemon=True).start()

    def _read(self) -> None:
        while True:
            message = self._reader.read()
            if message is None:
                for _ in range(_JUDGES):
                    self._asks.put(None)
                return
            op = message.get("op")
            if op == "judge":
                self._asks.put(message)
            elif op == "token":
                waiting = self._tokens.get(int(message.get("id", 0)))
                if waiting is not None:
                    waiting.put(str(message.get("token", "")))

    def _judge(self) -> None:
        while True:
            message = self._asks.get()
            if message is None or os.getpid() != self.pid:
                return
            ask = Ask.from_json(message["ask"])
            try:
                answer = judge(self.guard, ask, own_pid=self.pid)
                data = answer.to_json()
            except Exception as exc:  # the plugin's own failure: refused, and said
                self.guard.internal_error(f"the sandbox's {ask.shown()}", exc)
                data = {"allowed": False, "why": f"internal error: {type(exc).__name__}"}
            reply = {"op": "answer", "id": message["id"], "answer": data}
            with contextlib.suppress(OSError):
                send_line(self.sock, self._lock, reply)

    def new_token(self, timeout: float = 30.0) -> str:
        """A token for a pytest-xdist worker to join with."""
        number = next(self._ids)
        waiting: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._tokens[number] = waiting
        try:
            send_line(self.sock, self._lock, {"op": "token", "id": number})
            return waiting.get(timeout=timeout)
        finally:
            self._tokens.pop(number, None)


_SESSION: list[SandboxSession] = []


def current() -> SandboxSession | None:
    session = _SESSION[0] if _SESSION else None
    return session if session is not None and session.pid == os.getpid() else None


def attach(
    guard: Guard, token: str | None = None, *, owner: object = None
) -> SandboxSession | None:
    """Judge the sandbox's requests with ``guard`` from now on, joining first if this process
    has not (with ``token``, else the one in the environment, which is taken out of it).

    ``owner`` is the pytest run that joined (its config): only its own guards take over.
    A session run inside it in the same process (pytester's in-process runs) judges its
    Python requests itself, and the gateway's stay with the run that joined."""
    session = current()
    if session is not None:
        if session.owner is owner:
            session.guard = guard
        return session
    token = token or os.environ.pop(TOKEN_ENV, None)
    path = os.environ.get(CONTROL_ENV)
    if not token or not path:
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with own_work():  # the plugin's own socket, not judged (``outbound_local = enforce``)
            sock.connect(path)
        send_line(sock, threading.Lock(), {"op": "join", "token": token})
        reader = LineReader(sock)
        reply = reader.read()
    except OSError:
        sock.close()
        return None
    if reply is None or reply.get("op") != "joined":
        sock.close()
        return None
    session = SandboxSession(sock, reader, guard)
    session.owner = owner
    _SESSION[:] = [session]
    return session


def worker_token() -> str | None:
    """A token for a pytest-xdist worker about to start (None outside the sandbox)."""
    session = current()
    if session is None:
        return None
    try:
        return session.new_token()
    except Exception:
        return None
