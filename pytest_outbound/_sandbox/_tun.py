"""The road nowhere: connections and datagrams to an address, seen and refused.

Inside the sandbox every address but loopback is routed to a TUN device (``_namespace``)
whose other end is read here, outside. What arrives there is what a program sent straight
to an address, around the gateway: a connection to a literal IP (``curl
http://203.0.113.7/``, ``bash``'s ``/dev/tcp/203.0.113.7/80``, a ``ctypes`` call into libc,
a client that ignores the proxy variables), a datagram other than the DNS responder's (QUIC,
NTP). Nothing of it goes anywhere: no packet is ever written out of this process.

For each new flow (a TCP ``SYN``; a UDP datagram from a new source port or to a new
destination) the program is found (``_programs``: its socket is still open, the program
waits in ``connect``), the attempt is judged by the gateway's decision (``tcp://IP:PORT``,
method ``CONNECT``; ``udp://IP:PORT``, method ``SENDTO``; client ``gateway``), and then it is
answered with an ICMP error, so the program fails at once:

- TCP: "network unreachable" (IPv4: "network administratively prohibited", which the kernel
  reports as ``ENETUNREACH`` too; IPv6: "no route to destination"): ``connect`` fails with
  ``ENETUNREACH``, as it did when there was no route at all;
- UDP: "administratively prohibited", which the kernel reports to a *connected* socket at its
  next call (IPv4: ``ENETUNREACH``, IPv6: ``EACCES``); an unconnected socket's ``sendto``
  succeeds and its answer never comes.

A retransmitted ``SYN`` (the same connection: addresses, ports, sequence number) and the
further datagrams of a flow are answered again, never judged again. The reading thread does
no more than parse a header and look a flow up; finding the program and judging run in a
small pool of threads of their own (the gateway's threads are never waited on).
"""

from __future__ import annotations

import array
import contextlib
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

from pytest_outbound._sandbox._judging import DIRECT, Answer, Ask
from pytest_outbound._sandbox._programs import Program, Programs

TCP = 6
UDP = 17
#: Seconds a flow is remembered after its last packet (a retransmit is not judged again).
FLOW_IDLE = 60.0
#: How many flows are remembered at most (the idle ones are forgotten first).
FLOW_LIMIT = 4096
#: A flow's packets are answered at most this often (a datagram flood is not mirrored).
ANSWER_SPACING = 0.01
#: ICMP errors quote as much of the packet as fits in the minimum MTU (RFC 792, RFC 4443).
_QUOTE_V4 = 576 - 20 - 8
_QUOTE_V6 = 1280 - 40 - 8
#: ICMP "destination unreachable" codes: IPv4 type 3, IPv6 type 1.
_V4_NET_PROHIBITED = 9  # ENETUNREACH, a hard error (TCP and connected UDP sockets)
_V6_NO_ROUTE = 0  # ENETUNREACH (TCP)
_V6_PROHIBITED = 1  # EACCES, a hard error (connected UDP sockets)
#: IPv6 extension headers skipped to reach TCP or UDP: hop-by-hop, routing, destination.
_V6_EXTENSIONS = frozenset({0, 43, 60})

Judge = Callable[[Ask], Answer]


class Flow(NamedTuple):
    """What a packet says about the attempt it belongs to."""

    version: int
    protocol: int
    source: str
    source_port: int
    destination: str
    destination_port: int
    #: TCP: the ``SYN``'s sequence number (a new connection on the same ports is another).
    sequence: int

    @property
    def key(self) -> tuple[int, str, int, str, int, int]:
        return (
            self.protocol,
            self.source,
            self.source_port,
            self.destination,
            self.destination_port,
            self.sequence,
        )


def parse(packet: bytes) -> Flow | None:
    """The flow of a TCP ``SYN`` or a UDP datagram to a unicast address; None for anything
    else (the kernel's own multicast, a later TCP segment, a fragment's tail)."""
    if len(packet) < 20:
        return None
    version = packet[0] >> 4
    if version == 4:
        header = (packet[0] & 0x0F) * 4
        if header < 20 or struct.unpack_from("!H", packet, 6)[0] & 0x1FFF:  # a fragment's tail
            return None
        protocol = packet[9]
        destination_bytes = packet[16:20]
        if destination_bytes[0] >= 224:  # multicast, reserved, broadcast
            return None
        family = socket.AF_INET
        source_bytes = packet[12:16]
        offset = header
    elif version == 6:
        if len(packet) < 40 or packet[24] == 0xFF:  # multicast
            return None
        protocol, offset = packet[6], 40
        while protocol in _V6_EXTENSIONS and len(packet) >= offset + 8:
            protocol, offset = packet[offset], offset + (packet[offset + 1] + 1) * 8
        if protocol == 44:  # a fragment header: only the first fragment has the ports
            if len(packet) < offset + 8 or struct.unpack_from("!H", packet, offset + 2)[0] & 0xFFF8:
                return None
            protocol, offset = packet[offset], offset + 8
        family = socket.AF_INET6
        source_bytes, destination_bytes = packet[8:24], packet[24:40]
    else:
        return None
    if protocol == TCP:
        if len(packet) < offset + 14:
            return None
        flags = packet[offset + 13]
        if flags & 0x12 != 0x02:  # SYN without ACK: a connection's first segment
            return None
        sequence = struct.unpack_from("!I", packet, offset + 4)[0]
    elif protocol == UDP:
        if len(packet) < offset + 8:
            return None
        sequence = 0
    else:
        return None
    source_port, destination_port = struct.unpack_from("!HH", packet, offset)
    return Flow(
        version,
        protocol,
        socket.inet_ntop(family, source_bytes),
        source_port,
        socket.inet_ntop(family, destination_bytes),
        destination_port,
        sequence,
    )


def _checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071), in this machine's byte order: pack it with ``=H``."""
    if len(data) % 2:
        data += b"\0"
    total = sum(array.array("H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def unreachable(packet: bytes, flow: Flow) -> bytes:
    """The ICMP error that answers ``packet`` (see the module docstring), from the address
    it was sent to."""
    if flow.version == 4:
        code = _V4_NET_PROHIBITED
        quoted = packet[:_QUOTE_V4]
        message = struct.pack("!BBHI", 3, code, 0, 0) + quoted
        message = message[:2] + struct.pack("=H", _checksum(message)) + message[4:]
        header = struct.pack(
            "!BBHHHBBH4s4s",
            0x45,
            0,
            20 + len(message),
            0,
            0,
            64,
            1,  # ICMP
            0,
            packet[16:20],
            packet[12:16],
        )
        header = header[:10] + struct.pack("=H", _checksum(header)) + header[12:]
        return header + message
    code = _V6_NO_ROUTE if flow.protocol == TCP else _V6_PROHIBITED
    quoted = packet[:_QUOTE_V6]
    message = struct.pack("!BBHI", 1, code, 0, 0) + quoted
    source, destination = packet[24:40], packet[8:24]
    pseudo = source + destination + struct.pack("!I3xB", len(message), 58)
    message = message[:2] + struct.pack("=H", _checksum(pseudo + message)) + message[4:]
    header = struct.pack("!IHBB", 6 << 28, len(message), 58, 64) + source + destination
    return header + message


class Direct:
    """Reads the sandbox's TUN device (``fd``): judges each new flow with ``judge`` (the
    gateway's), the program found by ``programs``; ``names`` gives the names the DNS
    responder answered with an address."""

    def __init__(
        self,
        fd: int,
        judge: Judge,
        programs: Programs,
        names: Callable[[str], tuple[str, ...]],
        *,
        workers: int = 4,
        wrap: Callable[[Callable[..., None]], Callable[..., None]] = lambda f: f,
    ) -> None:
        self.fd = fd
        self.judge = judge
        self.programs = programs
        self.names = names
        #: key -> [last packet, last answer (None: being judged)]
        self._flows: dict[tuple[int, str, int, str, int, int], list[float | None]] = {}
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._wrap = wrap
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="outbound-direct")
        self._wake_read, self._wake_write = os.pipe()
        self._closed = False
        self._thread: threading.Thread | None = None

    def serve(self) -> None:
        os.set_blocking(self.fd, False)
        self._thread = threading.Thread(
            target=self._wrap(self._read), name="outbound-direct", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        """Stop reading and close the device (the routes to it go with it)."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError):
            os.write(self._wake_write, b"x")
        if self._thread is not None:
            self._thread.join(5)
        self._pool.shutdown(wait=True)  # what was read is judged (a datagram's program
        # does not wait for its answer: it may have ended)
        with self._write_lock:  # (no answer is written to a descriptor number reused since)
            for fd in (self.fd, self._wake_read, self._wake_write):
                with contextlib.suppress(OSError):
                    os.close(fd)

    def _read(self) -> None:
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        poller.register(self._wake_read, select.POLLIN)
        while not self._closed:
            try:
                events = poller.poll()
            except InterruptedError:
                continue
            for fd, _ in events:
                if fd == self._wake_read:
                    return
            while True:
                try:
                    packet = os.read(self.fd, 65536)
                except BlockingIOError:
                    break
                except OSError:
                    return
                if not packet:
                    return
                self.packet(packet)

    def packet(self, packet: bytes) -> None:
        """One packet read from the device."""
        flow = parse(packet)
        if flow is None:
            return
        now = time.monotonic()
        with self._lock:
            known = self._flows.get(flow.key)
            if known is None:
                if len(self._flows) >= FLOW_LIMIT:
                    self._forget(now)
                self._flows[flow.key] = [now, None]
            else:
                known[0] = now
                answered = known[1]
                if answered is None or now - answered < ANSWER_SPACING:
                    return  # being judged (answered then), or answered just now
                known[1] = now
        if known is not None:
            self._answer(packet, flow)
            return
        try:
            self._pool.submit(self._wrap(self._judge), packet, flow)
        except RuntimeError:  # closed
            return

    def _forget(self, now: float) -> None:
        idle = [key for key, (last, _) in self._flows.items() if now - (last or 0) > FLOW_IDLE]
        for key in idle or list(self._flows)[: FLOW_LIMIT // 2]:
            del self._flows[key]

    def _judge(self, packet: bytes, flow: Flow) -> None:
        try:
            program = self.program(flow)
            ask = Ask(
                DIRECT,
                "CONNECT" if flow.protocol == TCP else "SENDTO",
                host=flow.destination,
                port=flow.destination_port,
                pid=program.pid,
                program=program.text(),
                names=self.names(flow.destination),
            )
            self.judge(ask)  # (refused or not, nothing goes anywhere)
        except Exception:  # the judge fails closed by itself; the program must not wait
            pass
        finally:
            with self._lock:
                known = self._flows.get(flow.key)
                if known is not None:
                    known[1] = time.monotonic()
            self._answer(packet, flow)

    def program(self, flow: Flow) -> Program:
        client = (flow.source, flow.source_port)
        target = (flow.destination, flow.destination_port)
        if flow.protocol == TCP:
            return self.programs.of_tcp(client, target)
        return self.programs.of_udp(client, target)

    def _answer(self, packet: bytes, flow: Flow) -> None:
        answer = unreachable(packet, flow)
        with self._write_lock:
            if not self._closed:
                with contextlib.suppress(OSError):
                    os.write(self.fd, answer)
