"""DNS messages as the sandbox's responder reads and answers them (RFC 1035, the part it needs).

Pure: bytes in, bytes out. A query is one question; the answer echoes it, with A or AAAA
records for the addresses given, or no records and a response code. No compression is read
in questions (no resolver sends one); answers point back at the question's name.
"""

from __future__ import annotations

import ipaddress
import struct
from typing import NamedTuple

A = 1
PTR = 12
AAAA = 28
ANY_CLASS = 255
IN = 1

NOERROR = 0
FORMERR = 1
SERVFAIL = 2
NXDOMAIN = 3
NOTIMP = 4
REFUSED = 5

#: The names of the types a message shows (the others by number).
TYPE_NAMES = {A: "A", PTR: "PTR", AAAA: "AAAA", 5: "CNAME", 15: "MX", 16: "TXT", 33: "SRV"}

_HEADER = struct.Struct("!HHHHHH")
#: At most this many addresses in an answer: it stays within a UDP message's 512 bytes.
ANSWER_LIMIT = 12


class DnsError(ValueError):
    """Not a query the responder can read: answered FORMERR (or not at all, if it has no
    header)."""


class Query(NamedTuple):
    """One question: its id and flags, the name (lowercase text, no trailing dot), type and
    class, and the question's bytes as sent (echoed in the answer)."""

    id: int
    flags: int
    name: str
    qtype: int
    qclass: int
    question: bytes


def parse_query(data: bytes) -> Query:
    """The question of a query; ``DnsError`` when it is not a standard query of one."""
    if len(data) < _HEADER.size:
        raise DnsError("shorter than a DNS header")
    ident, flags, qdcount, _an, _ns, _ar = _HEADER.unpack_from(data)
    if flags & 0x8000:
        raise DnsError("a response, not a query")
    if (flags >> 11) & 0xF != 0:
        raise DnsError("not a standard query (opcode)")
    if qdcount != 1:
        raise DnsError(f"{qdcount} questions; one is answered")
    labels: list[str] = []
    at = _HEADER.size
    while True:
        if at >= len(data):
            raise DnsError("the name runs past the message")
        length = data[at]
        at += 1
        if length == 0:
            break
        if length & 0xC0:
            raise DnsError("a compressed name in the question")
        label = data[at : at + length]
        if len(label) != length:
            raise DnsError("the name runs past the message")
        labels.append(label.decode("latin-1"))
        at += length
    if at + 4 > len(data):
        raise DnsError("no type and class after the name")
    qtype, qclass = struct.unpack_from("!HH", data, at)
    at += 4
    name = ".".join(labels).lower()
    return Query(ident, flags, name, qtype, qclass, data[_HEADER.size : at])


def type_name(qtype: int) -> str:
    return TYPE_NAMES.get(qtype, f"TYPE{qtype}")


def answer(query: Query, addresses: list[str], ttl: int = 5) -> bytes:
    """A NOERROR response with one A or AAAA record per address of the query's type (others
    are left out: a name with no address of that type gets an empty answer, "no data")."""
    records = []
    for text in addresses[:ANSWER_LIMIT]:
        ip = ipaddress.ip_address(text)
        if (query.qtype == A and ip.version == 4) or (query.qtype == AAAA and ip.version == 6):
            data = ip.packed
            records.append(struct.pack("!HHHIH", 0xC00C, query.qtype, IN, ttl, len(data)) + data)
    return _response(query, NOERROR, records)


def reply(query: Query, rcode: int) -> bytes:
    """A response with no records and ``rcode`` (``NXDOMAIN``, ``REFUSED``, ...)."""
    return _response(query, rcode, [])


def error_reply(data: bytes, rcode: int = FORMERR) -> bytes | None:
    """A response to a message that could not be read as a query (its id and rcode alone),
    or None when it has no header to answer."""
    if len(data) < 2:
        return None
    flags = 0x8000 | 0x0080 | rcode
    return _HEADER.pack(struct.unpack_from("!H", data)[0], flags, 0, 0, 0, 0)


def _response(query: Query, rcode: int, records: list[bytes]) -> bytes:
    # QR, the query's opcode (0) and RD, RA: "recursion available"
    flags = 0x8000 | (query.flags & 0x0100) | 0x0080 | rcode
    header = _HEADER.pack(query.id, flags, 1, len(records), 0, 0)
    return header + query.question + b"".join(records)


def encode_query(name: str, qtype: int, ident: int = 0x1234) -> bytes:
    """A recursive query for ``name`` (tests and the benchmark ask with it)."""
    labels = b"".join(
        bytes([len(part)]) + part.encode("ascii") for part in name.rstrip(".").split(".") if part
    )
    return _HEADER.pack(ident, 0x0100, 1, 0, 0, 0) + labels + b"\0" + struct.pack("!HH", qtype, IN)


def decode_answer(data: bytes) -> tuple[int, list[str]]:
    """(rcode, the A/AAAA addresses) of a response this module built."""
    _ident, flags, qdcount, ancount, _ns, _ar = _HEADER.unpack_from(data)
    at = _HEADER.size
    for _ in range(qdcount):
        while data[at]:
            at += data[at] + 1
        at += 5
    found = []
    for _ in range(ancount):
        at += 2  # the pointer to the question's name
        rtype, _rclass, _ttl, length = struct.unpack_from("!HHIH", data, at)
        at += 10
        raw = data[at : at + length]
        at += length
        if rtype in (A, AAAA):
            found.append(str(ipaddress.ip_address(raw)))
    return flags & 0xF, found


def reverse_address(name: str) -> str | None:
    """The address a reverse lookup (``7.113.0.203.in-addr.arpa``, ``...ip6.arpa``) asks
    about, or None when the name is not one."""
    if name.endswith(".in-addr.arpa"):
        parts = name.removesuffix(".in-addr.arpa").split(".")
        if len(parts) == 4 and all(p.isdigit() for p in parts):
            try:
                return str(ipaddress.IPv4Address(".".join(reversed(parts))))
            except ValueError:
                return None
        return None
    if name.endswith(".ip6.arpa"):
        nibbles = name.removesuffix(".ip6.arpa").split(".")
        if len(nibbles) == 32 and all(len(n) == 1 for n in nibbles):
            try:
                return str(ipaddress.IPv6Address(int("".join(reversed(nibbles)), 16)))
            except ValueError:
                return None
    return None
