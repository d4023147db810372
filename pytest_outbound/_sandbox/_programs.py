"""Which program is on the other end of a connection or a DNS query inside the sandbox.

The gateway and the DNS responder serve sockets that live in the sandbox's network namespace
(``_namespace``). A client's socket is found in that namespace by its address, which gives
its inode: asked of the namespace's ``sock_diag`` (a netlink socket the sandbox made inside
and handed out; it answers for the namespace it was made in, in microseconds), else read
from its socket tables (the ``/proc/net/tcp``, ``tcp6``, ``udp``, ``udp6`` files opened
inside: the kernel walks its whole connection table for each read, about a millisecond).
The process that holds the inode among its file descriptors is the program, and
``/proc/PID/cmdline`` its command line. Only processes in the sandbox's namespace are looked
at, the ones seen last first. Pids are the machine's: the sandbox has no pid namespace.

A socket several processes share (a shell's, inherited by its child) is credited to the
first found. A program that has exited by the time it is looked for is "unknown".
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import threading
from collections.abc import Iterable, Mapping
from typing import NamedTuple

#: How long a command line may be in a record: enough to tell one run from another.
COMMAND_LIMIT = 200


class Program(NamedTuple):
    """A process: its pid (None when it could not be found) and its arguments."""

    pid: int | None
    argv: tuple[str, ...]

    @property
    def name(self) -> str:
        """The program's file name (``curl``), or ``unknown``."""
        return os.path.basename(self.argv[0]) if self.argv else "unknown"

    def text(self) -> str:
        """``curl -sS http://x/ (pid 4242)``: the record's ``location``."""
        if self.pid is None:
            return "an unknown program (it had exited)"
        return f"{command_text(self.argv) or self.name} (pid {self.pid})"


def command_text(argv: Iterable[str], limit: int = COMMAND_LIMIT) -> str:
    """A command line on one line, its program by file name, shortened to ``limit``."""
    words = []
    for index, word in enumerate(argv):
        if index == 0:
            word = os.path.basename(word)
        word = word.replace("\n", "\\n")
        if len(word) > 80:
            word = word[:77] + "..."
        if not word or any(c in word for c in " '\"\\$`;&|<>()*?"):
            word = "'" + word.replace("'", "'\"'\"'") + "'"
        words.append(word)
    text = " ".join(words)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe(pid: int) -> Program:
    """The program with ``pid``, by its command line (its name alone for a kernel thread or a
    process whose arguments are gone)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            raw = handle.read()
    except OSError:
        return Program(None, ())
    argv = tuple(part.decode("utf-8", "replace") for part in raw.split(b"\0") if part)
    if not argv:
        try:
            with open(f"/proc/{pid}/comm", "rb") as handle:
                argv = (handle.read().strip().decode("utf-8", "replace"),)
        except OSError:
            return Program(None, ())
    return Program(pid, argv)


def parent_of(pid: int) -> int | None:
    """The parent's pid, from ``/proc/PID/stat`` (None when the process is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 2 :].split()
    try:
        return int(fields[1])
    except (IndexError, ValueError):
        return None


#: ``SOCK_DIAG_BY_FAMILY``: a request to, and an answer from, ``sock_diag``.
_SOCK_DIAG = 20


def _diag_request(
    family: int, protocol: int, source: tuple[str, int], destination: tuple[str, int]
) -> bytes:
    """A netlink ``inet_diag_req_v2`` for the one socket with these addresses (no dump)."""

    def packed(host: str) -> bytes:
        if family == socket.AF_INET6 and ":" not in host:
            host = f"::ffff:{host}"
        return socket.inet_pton(family, host).ljust(16, b"\0")

    sockid = (
        struct.pack("!HH", source[1], destination[1])
        + packed(source[0])
        + packed(destination[0])
        + struct.pack("=III", 0, 0xFFFFFFFF, 0xFFFFFFFF)  # any interface, no cookie
    )
    body = struct.pack("=BBBBI", family, protocol, 0, 0, 0xFFFFFFFF) + sockid
    return struct.pack("=IHHII", 16 + len(body), _SOCK_DIAG, 1, 0, 0) + body  # NLM_F_REQUEST


def _hex_address(host: str, port: int, version: int) -> str:
    """An address as the ``/proc/net`` tables write it: each 32-bit word in host (little
    endian) order, then the port, all in upper-case hex."""
    if version == 4:
        packed = socket.inet_pton(socket.AF_INET, host)
    else:
        if ":" not in host:
            host = f"::ffff:{host}"
        packed = socket.inet_pton(socket.AF_INET6, host)
    words = "".join(packed[i : i + 4][::-1].hex() for i in range(0, len(packed), 4))
    return f"{words.upper()}:{port:04X}"


class Programs:
    """Finds the program behind a client address in the sandbox.

    ``tables``: open file descriptors of the namespace's socket tables, by name (``tcp``,
    ``tcp6``, ``udp``, ``udp6``); ``netns``: the namespace's identity, as
    ``/proc/PID/ns/net`` reads (``net:[4026532242]``).
    """

    def __init__(self, tables: Mapping[str, int], netns: str) -> None:
        self.tables = dict(tables)
        diag = self.tables.pop("diag", None)
        #: The namespace's ``sock_diag`` netlink socket (None: the tables are read).
        self._diag = socket.socket(fileno=diag) if diag is not None else None
        self._diag_lock = threading.Lock()
        self.netns = netns
        self._locks = {name: threading.Lock() for name in self.tables}
        #: pids found recently, last found first: looked at before the others.
        self._recent: list[int] = []
        self._lock = threading.Lock()

    def close(self) -> None:
        if self._diag is not None:
            self._diag.close()
        for fd in self.tables.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self.tables.clear()

    def of_tcp(self, client: tuple[str, int], server: tuple[str, int]) -> Program:
        """The program whose TCP socket at ``client`` is connected to ``server``."""
        inode = self._ask(socket.IPPROTO_TCP, client, server)
        if inode is None:
            inode = self._inode(("tcp", "tcp6"), client, server)
        return self._holder(inode)

    def of_udp(self, client: tuple[str, int], server: tuple[str, int]) -> Program:
        """The program whose UDP socket at ``client`` sent to ``server``."""
        # (a UDP socket is looked up as the one that would receive from ``server``)
        inode = self._ask(socket.IPPROTO_UDP, server, client)
        if inode is None:
            inode = self._inode(("udp", "udp6"), client, None)
        return self._holder(inode)

    def _ask(
        self, protocol: int, source: tuple[str, int], destination: tuple[str, int]
    ) -> str | None:
        """The inode of the socket ``sock_diag`` finds for these addresses (an IPv4 client,
        or one on an IPv6 socket, IPv4-mapped), or None."""
        if self._diag is None:
            return None
        for family in (socket.AF_INET, socket.AF_INET6):
            try:
                request = _diag_request(family, protocol, source, destination)
            except OSError:
                continue
            with self._diag_lock:
                try:
                    self._diag.send(request)
                    data = self._diag.recv(1 << 16)
                except OSError:
                    return None
            if len(data) >= 16 + 72 and struct.unpack_from("=H", data, 4)[0] == _SOCK_DIAG:
                inode = struct.unpack_from("=I", data, 16 + 68)[0]
                return str(inode) if inode else None
        return None

    def _inode(
        self, names: tuple[str, str], client: tuple[str, int], server: tuple[str, int] | None
    ) -> str | None:
        for name in names:
            version = 6 if name.endswith("6") else 4
            try:
                local = _hex_address(client[0], client[1], version)
                remote = _hex_address(server[0], server[1], version) if server else None
            except OSError:
                continue
            for line in self._rows(name):
                fields = line.split()
                if len(fields) < 10 or fields[1] != local:
                    continue
                if remote is not None and fields[2] != remote:
                    continue
                return fields[9]
        return None

    def _rows(self, name: str) -> list[str]:
        fd = self.tables.get(name)
        if fd is None:
            return []
        chunks = []
        with self._locks[name]:
            offset = 0
            while True:
                try:
                    chunk = os.pread(fd, 1 << 16, offset)
                except OSError:
                    return []
                if not chunk:
                    break
                chunks.append(chunk)
                offset += len(chunk)
        return b"".join(chunks).decode("ascii", "replace").splitlines()[1:]

    def _holder(self, inode: str | None) -> Program:
        if inode is None or inode == "0":
            return Program(None, ())
        wanted = f"socket:[{inode}]"
        with self._lock:
            recent = list(self._recent)
        seen = set(recent)
        for pid in [*recent, *(p for p in _pids() if p not in seen)]:
            if self._holds(pid, wanted):
                with self._lock:
                    if pid in self._recent:
                        self._recent.remove(pid)
                    self._recent.insert(0, pid)
                    del self._recent[32:]
                return describe(pid)
        return Program(None, ())

    def _holds(self, pid: int, wanted: str) -> bool:
        try:
            if os.readlink(f"/proc/{pid}/ns/net") != self.netns:
                return False
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            return False
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == wanted:
                    return True
            except OSError:
                continue
        return False


def _pids() -> list[int]:
    """The machine's processes, newest (highest pid) first: a connecting program is most
    often one just started."""
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    return sorted((int(n) for n in names if n.isdigit()), reverse=True)
