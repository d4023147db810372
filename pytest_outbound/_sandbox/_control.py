"""The test sessions inside the sandbox, which judge what the gateway sees (pytest mode).

Under ``--outbound-sandbox`` pytest runs again inside the sandbox, and that run knows the
policy, the markers and the test under way: it judges. Each pytest session inside (the run
itself, and each pytest-xdist worker) joins through a unix socket in the sandbox's directory
(``control.sock``), presenting a token once: the run's comes in its environment (and is taken
out of it at once), a worker's from its controller, which asks the gateway for it. A token
serves once, so a program the tests run cannot join in their place.

A request is judged by the session nearest above the program that made it (its parent, its
parent's parent, ...: a worker's tests by that worker), else by the first to join. Until one
has joined, requests wait for it. A session that never answers, or is gone, refuses: the
sandbox fails closed.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import secrets
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

from pytest_outbound._guard import OWN_WORK
from pytest_outbound._sandbox._judging import Answer, Ask
from pytest_outbound._sandbox._programs import parent_of

CONTROL_ENV = "PYTEST_OUTBOUND_SANDBOX"
TOKEN_ENV = "PYTEST_OUTBOUND_SANDBOX_TOKEN"
#: How long a request waits for the first session to join, and for an answer.
JOIN_TIMEOUT = 60.0
ANSWER_TIMEOUT = 120.0


def send_line(sock: socket.socket, lock: threading.Lock, data: dict[str, Any]) -> None:
    line = (json.dumps(data) + "\n").encode()
    with lock:
        sock.sendall(line)


class LineReader:
    """JSON lines from a socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def read(self) -> dict[str, Any] | None:
        """The next message, or None at the end."""
        while b"\n" not in self.buffer:
            try:
                data = self.sock.recv(1 << 16)
            except OSError:
                return None
            if not data:
                return None
            self.buffer += data
        line, _, self.buffer = self.buffer.partition(b"\n")
        try:
            loaded = json.loads(line)
        except ValueError:
            return None
        return loaded if isinstance(loaded, dict) else None


class _Channel:
    """One session's connection: asks go out, answers come back by id."""

    def __init__(self, sessions: Sessions, sock: socket.socket, pid: int) -> None:
        self.sessions = sessions
        self.sock = sock
        self.pid = pid
        self.alive = True
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._waiting: dict[int, tuple[threading.Event, list[Answer]]] = {}

    def ask(self, ask: Ask) -> Answer | None:
        number = next(self._ids)
        event: threading.Event = threading.Event()
        slot: list[Answer] = []
        self._waiting[number] = (event, slot)
        try:
            send_line(self.sock, self._lock, {"op": "judge", "id": number, "ask": ask.to_json()})
        except OSError:
            self._waiting.pop(number, None)
            return None
        event.wait(ANSWER_TIMEOUT)
        self._waiting.pop(number, None)
        return slot[0] if slot else None

    def serve(self, reader: LineReader) -> None:
        OWN_WORK.set(True)
        try:
            while True:
                message = reader.read()
                if message is None:
                    return
                op = message.get("op")
                if op == "answer":
                    waiting = self._waiting.get(int(message.get("id", 0)))
                    if waiting is not None:
                        waiting[1].append(Answer.from_json(message.get("answer") or {}))
                        waiting[0].set()
                elif op == "token":
                    token = self.sessions.issue_token()
                    with contextlib.suppress(OSError):
                        send_line(
                            self.sock,
                            self._lock,
                            {"op": "token", "id": message.get("id"), "token": token},
                        )
        finally:
            self.alive = False
            self.sessions.gone(self)
            for event, _ in list(self._waiting.values()):
                event.set()
            with contextlib.suppress(OSError):
                self.sock.close()


class Sessions:
    """The registry of the sessions inside, and the judge that routes to them."""

    def __init__(self, directory: str) -> None:
        self.path = os.path.join(directory, "control.sock")
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        os.chmod(self.path, 0o600)
        self.listener.listen(64)
        self._tokens: set[str] = set()
        self._by_pid: dict[int, _Channel] = {}
        self._first: _Channel | None = None
        self._ever_joined = False
        self._condition = threading.Condition()
        self._closed = False
        #: Told whether the sandboxed command still runs (no session will join once it ends).
        self.alive: Callable[[], bool] = lambda: True

    def issue_token(self) -> str:
        token = secrets.token_hex(16)
        with self._condition:
            self._tokens.add(token)
        return token

    def serve(self) -> None:
        threading.Thread(target=self._accept, name="outbound-sandbox-control", daemon=True).start()

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self.listener.close()
        with self._condition:
            channels = list(self._by_pid.values())
            self._condition.notify_all()
        for channel in channels:
            with contextlib.suppress(OSError):
                channel.sock.shutdown(socket.SHUT_RDWR)

    def _accept(self) -> None:
        OWN_WORK.set(True)
        while not self._closed:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(
                target=self._join, args=(sock,), name="outbound-sandbox-control", daemon=True
            ).start()

    def _join(self, sock: socket.socket) -> None:
        OWN_WORK.set(True)
        sock.settimeout(10)
        reader = LineReader(sock)
        message = reader.read()
        token = str((message or {}).get("token", ""))
        with self._condition:
            valid = (message or {}).get("op") == "join" and token in self._tokens
            if valid:
                self._tokens.discard(token)
        if not valid:
            sock.close()
            return
        credentials = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid = struct.unpack("3i", credentials)[0]
        sock.settimeout(None)
        channel = _Channel(self, sock, pid)
        try:
            send_line(sock, channel._lock, {"op": "joined"})
        except OSError:
            sock.close()
            return
        with self._condition:
            self._by_pid[pid] = channel
            if self._first is None or not self._first.alive:
                self._first = channel
            self._ever_joined = True
            self._condition.notify_all()
        channel.serve(reader)

    def gone(self, channel: _Channel) -> None:
        with self._condition:
            if self._by_pid.get(channel.pid) is channel:
                del self._by_pid[channel.pid]
            if self._first is channel:
                self._first = next(iter(self._by_pid.values()), None)

    def _route(self, pid: int | None) -> _Channel | None:
        with self._condition:
            if not self._ever_joined:
                deadline = time.monotonic() + JOIN_TIMEOUT
                while not self._ever_joined and not self._closed and self.alive():
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._condition.wait(min(left, 0.5))
            by_pid = dict(self._by_pid)
            first = self._first
        seen = 0
        while pid is not None and pid > 1 and seen < 64:
            channel = by_pid.get(pid)
            if channel is not None and channel.alive:
                return channel
            pid = parent_of(pid)
            seen += 1
        return first if first is not None and first.alive else None

    def judge(self, ask: Ask) -> Answer:
        channel = self._route(ask.pid)
        if channel is None:
            return Answer(False, "no test session is there to judge it (the sandbox fails closed)")
        answer = channel.ask(ask)
        if answer is None:
            return Answer(
                False, "the test session that judges it did not answer (the sandbox fails closed)"
            )
        return answer
