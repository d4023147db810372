"""Sensitive values (SPEC §5.3): what must never leave the machine, and finding it in a request.

Pure: stdlib only, no pytest, no patching. ``machine_values`` reads this machine's identity once;
``SensitiveScanner`` precomputes every form a value may take on the wire (raw, case-folded,
JSON-escaped, base64 at each alignment) into two compiled regexes, and ``scan`` looks for them
in a request's URL, header values and body, raw, percent-decoded and Content-Encoding-decoded.
"""

from __future__ import annotations

import base64
import functools
import getpass
import ipaddress
import json
import os
import re
import socket
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator
from typing import Final
from urllib.parse import quote, quote_plus, unquote_to_bytes

from pytest_outbound._record import fields_module
from pytest_outbound._value import Value


class SensitiveValue(Value):
    """A value that must not leave the machine; ``kind`` names it in the reason
    (``sensitive:<kind>``): ``hostname``, ``fqdn``, ``user``, ``home``, ``ip``, ``mac``, or one
    a user gave."""

    __slots__ = _fields = ("kind", "value")
    kind: Final[str]
    value: Final[str]

    def __init__(self, kind: str, value: str) -> None:
        self.kind = kind
        self.value = value


class SensitiveHit(Value):
    """Where a sensitive value was found: ``where`` is ``url``, ``header:<name>`` or ``body``;
    ``encoding`` how it was written (``raw``, ``lowercase``, ``percent``, ``base64``,
    ``gzip+base64``, ...); ``redacted`` the value shown safely, never whole."""

    __slots__ = _fields = ("kind", "where", "encoding", "redacted")
    kind: Final[str]
    where: Final[str]
    encoding: Final[str]
    redacted: Final[str]

    def __init__(self, kind: str, where: str, encoding: str, redacted: str) -> None:
        self.kind = kind
        self.where = where
        self.encoding = encoding
        self.redacted = redacted


#: Values never scanned by default: names a CI container or a developer machine commonly has
#: that also appear in ordinary traffic, so finding them would prove nothing.
COMMON_WORDS: frozenset[str] = frozenset(
    {
        "root",
        "admin",
        "administrator",
        "user",
        "users",
        "guest",
        "nobody",
        "test",
        "tests",
        "tester",
        "testing",
        "default",
        "localhost",
        "localhost.localdomain",
        "localdomain",
        "local",
        "ip6-localhost",
        "ubuntu",
        "debian",
        "fedora",
        "centos",
        "alpine",
        "linux",
        "runner",
        "runneradmin",
        "home",
        "/root",
        "/home",
        "/nonexistent",
        "/tmp",
        "docker",
        "buildkitsandbox",
        "jenkins",
        "gitlab-runner",
        "build",
        "builder",
        "circleci",
        "travis",
        "vagrant",
        "ec2-user",
        "codespace",
        "vscode",
        "gitpod",
        "jovyan",
        "node",
        "python",
        "www-data",
        "nginx",
        "worker",
        "server",
        "host",
        "machine",
        "example",
        "demo",
        "none",
        "null",
        "unknown",
        "true",
        "false",
    }
)

#: Kinds matched whatever their letter case (DNS names, user names, hex addresses).
CASE_INSENSITIVE_KINDS: frozenset[str] = frozenset({"hostname", "fqdn", "user", "ip", "mac"})


# --- this machine ------------------------------------------------------------------------------

# Documentation addresses (RFC 5737, RFC 3849): a UDP connect() to them picks the source address
# of the default route without sending anything.
_PROBES: tuple[tuple[socket.AddressFamily, tuple[str, int]], ...] = (
    (socket.AF_INET, ("192.0.2.1", 9)),
    (socket.AF_INET6, ("2001:db8::1", 9)),
)
#: What the probe "connects" a UDP socket to (it sends nothing): the guard lets it be.
PROBE_TARGETS = frozenset(target for _, target in _PROBES)


def _attempt(step: Callable[[], str]) -> str:
    try:
        return step()
    except Exception:
        return ""


def _route_address(family: socket.AddressFamily, target: tuple[str, int]) -> str:
    """The source address the default route would use for ``target`` ("" without a route)."""
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect(target)  # UDP: sets the peer, sends nothing
            return str(sock.getsockname()[0])
    except Exception:
        return ""


def _resolved_addresses(hostname: str) -> list[str]:
    if not hostname:
        return []
    try:
        infos = socket.getaddrinfo(hostname, None)
    except Exception:
        return []
    return [str(info[4][0]) for info in infos]


def _ip_forms(text: str) -> list[str]:
    """The written forms of a non-loopback unicast address; [] for anything else."""
    try:
        addr = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return []
    if addr.is_loopback or addr.is_unspecified or addr.is_multicast:
        return []
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return _ip_forms(str(addr.ipv4_mapped))
        return list(dict.fromkeys((addr.compressed, addr.exploded)))
    return [str(addr)]


def _mac_forms() -> list[str]:
    node = uuid.getnode()
    # uuid.getnode() falls back to a random number with the multicast bit set: not a real MAC.
    if node >> 40 & 1 or node == 0 or node >= 1 << 48:
        return []
    octets = [f"{node >> shift & 0xFF:02x}" for shift in range(40, -8, -8)]
    return [":".join(octets), "-".join(octets), "".join(octets)]


def machine_values() -> list[SensitiveValue]:
    """This machine's identity: hostname, FQDN, user name, home directory, non-loopback IP
    addresses and MAC address. Sends no packet; a step that fails is skipped; never raises.

    Call it before any socket patching is in place: it uses ``socket`` as it finds it.
    """
    found: dict[tuple[str, str], None] = {}

    def add(kind: str, value: str) -> None:
        if value:
            found.setdefault((kind, value), None)

    try:
        hostname = _attempt(socket.gethostname)
        add("hostname", hostname)
        if "." in hostname:
            add("hostname", hostname.split(".", 1)[0])
        fqdn = _attempt(socket.getfqdn)
        if fqdn.lower() != hostname.lower() and not fqdn.lower().startswith("localhost"):
            add("fqdn", fqdn)
        add("user", _attempt(getpass.getuser))
        home = _attempt(lambda: os.path.expanduser("~"))
        if home not in ("~", "/", "\\"):
            add("home", home.rstrip("/\\") or home)
        addresses = [_route_address(family, target) for family, target in _PROBES]
        addresses.extend(_resolved_addresses(hostname))
        for address in addresses:
            for form in _ip_forms(address):
                add("ip", form)
        for form in _attempt_list(_mac_forms):
            add("mac", form)
    except Exception:  # a last guard: machine_values never raises
        pass
    return [SensitiveValue(kind, value) for kind, value in found]


def _attempt_list(step: Callable[[], list[str]]) -> list[str]:
    try:
        return step()
    except Exception:
        return []


# --- redaction ---------------------------------------------------------------------------------


def redact(value: str) -> str:
    """``"build-01"`` -> ``"bu…(8 chars)"``: a hint of the value, never the whole of it."""
    n = len(value)
    if not n:
        return ""
    keep = min(2, (n - 1) // 2)
    unit = "char" if n == 1 else "chars"
    for candidate in (f"{value[:keep]}…({n} {unit})", f"…({n} {unit})", f"…{n}", "…"):
        if value not in candidate:
            return candidate
    return ""


#: Values at least this long keep their first and last two characters when masked; shorter
#: ones are masked whole.
MASK_KEEP_FROM = 10
MASK_CHAR = "*"
#: What stands for a password in a URL's userinfo, wherever the plugin shows the URL.
REDACTED = "<redacted>"

_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://[^\s/?#@:\[\]]*):([^\s/?#]*)@")


def mask(value: str) -> str:
    """``"ci-runner-0042"`` -> ``"ci**********42"``: the first and last two characters of a
    value of at least ``MASK_KEEP_FROM`` characters, every other one ``*``; a shorter value is
    all ``*``. Never the whole value (a value made of ``*`` is shown as ``<redacted>``)."""
    n = len(value)
    keep = 2 if n >= MASK_KEEP_FROM else 0
    shown = value[:keep] + MASK_CHAR * (n - 2 * keep) + value[n - keep :]
    return shown if value and value not in shown else (REDACTED if value else "")


def mask_url_passwords(text: str) -> str:
    """Every URL's userinfo password in ``text`` replaced by ``<redacted>`` (the user name
    stays): ``https://me:hunter2@example.org/`` -> ``https://me:<redacted>@example.org/``."""
    if "@" not in text or "://" not in text:
        return text
    return _URL_PASSWORD.sub(lambda m: f"{m.group(1)}:{REDACTED}@", text)


class Masker:
    """Masks every sensitive value in a text the plugin is about to show or write (SPEC §5.3):
    each place one of the values stands, written as the scanner would find it (raw, in any
    letter case for names and addresses, JSON-escaped, percent-encoded, base64 at any
    alignment), becomes its ``mask``; and URL passwords become ``<redacted>``.

    Overlapping finds are masked as one stretch. Built once per scanner; texts seen before
    are answered from a cache (a report repeats its URLs and headers)."""

    __slots__ = ("_cache", "_tables")

    def __init__(self, values: Iterable[SensitiveValue]) -> None:
        exact: dict[bytes, None] = {}
        folded: dict[bytes, None] = {}
        for item in values:
            is_folded = item.kind in CASE_INSENSITIVE_KINDS
            for lowered, needle, _ in _forms(item, is_folded):
                (folded if lowered else exact)[needle] = None
            for text in _percent_forms(item.value):
                needle = text.encode("utf-8")
                if is_folded:
                    folded[needle.lower()] = None
                else:
                    exact[needle] = None
                    exact[_lower_hex(needle)] = None
        self._tables = tuple(
            (regex, lowered)
            for regex, lowered in ((_trie_regex(exact), False), (_trie_regex(folded), True))
            if regex is not None
        )
        self._cache: dict[str, str] = {}

    def __bool__(self) -> bool:
        return bool(self._tables)

    def __call__(self, text: str) -> str:
        text = mask_url_passwords(text)
        if not self._tables or not text:
            return text
        known = self._cache.get(text)
        if known is not None:
            return known
        data = text.encode("utf-8", "surrogatepass")
        spans: list[tuple[int, int]] = []
        for regex, lowered in self._tables:
            haystack = data.lower() if lowered else data
            m = regex.search(haystack)
            while m is not None:
                spans.append(m.span())
                m = regex.search(haystack, m.start() + 1)
        shown = _masked(data, spans) if spans else text
        if len(self._cache) >= _CLEAN_LIMIT:
            self._cache.clear()
        self._cache[text] = shown
        return shown


def _masked(data: bytes, spans: list[tuple[int, int]]) -> str:
    spans.sort()
    out: list[str] = []
    done = 0
    start, end = spans[0]
    for s, e in [*spans[1:], (len(data) + 1, len(data) + 1)]:
        if s <= end:  # overlapping or touching: one stretch
            end = max(end, e)
            continue
        out.append(data[done:start].decode("utf-8", "surrogatepass"))
        out.append(mask(data[start:end].decode("utf-8", "surrogatepass")))
        done, start, end = end, s, e
    out.append(data[done:].decode("utf-8", "surrogatepass"))
    return "".join(out)


def _percent_forms(value: str) -> list[str]:
    forms = (quote(value, safe=""), quote(value, safe="/:@"), quote_plus(value))
    return [f for f in dict.fromkeys(forms) if f != value]


def _lower_hex(needle: bytes) -> bytes:
    return re.sub(rb"%[0-9A-F]{2}", lambda m: m.group().lower(), needle)


def masker_of(scanner: SensitiveScanner | None) -> Callable[[str], str]:
    """The ``Masker`` of ``scanner``'s values (URL passwords only, without a scanner)."""
    return scanner.mask if scanner is not None else mask_url_passwords


# --- scanning ----------------------------------------------------------------------------------

_NO_BOUND, _IPV4_BOUND, _IPV6_BOUND = 0, 1, 2
_DIGITS = frozenset(b"0123456789")
_HEX_COLON = frozenset(b"0123456789abcdefABCDEF:")


class _Form(Value):
    """One written form of a value: its bytes as searched, and what finding it means (a value's
    forms are kept once each: equal by their parts)."""

    __slots__ = _fields = ("kind", "encoding", "original", "redacted", "bound")

    def __init__(
        self, kind: str, encoding: str, original: bytes, redacted: str, bound: int
    ) -> None:
        self.kind: Final = kind
        self.encoding: Final = encoding  # raw, json, base64, base64url
        #: the value's own bytes, to tell "raw" from "lowercase" on a hit
        self.original: Final = original
        self.redacted: Final = redacted
        self.bound: Final = bound  # an IP address must not be part of a longer number


class _Table:
    """Needles searched together: ``regex`` finds the longest needle at a position;
    ``within[needle]`` lists every needle inside it as (offset, length, form)."""

    __slots__ = ("kinds", "lowered", "regex", "within")

    def __init__(
        self,
        regex: re.Pattern[bytes] | None,
        within: dict[bytes, tuple[tuple[int, int, _Form], ...]],
        kinds: frozenset[str],
        lowered: bool,
    ) -> None:
        self.regex = regex
        self.within = within
        self.kinds = kinds
        self.lowered = lowered


def _base64_cores(data: bytes) -> Iterator[tuple[str, bytes]]:
    """The base64 text that encodes ``data`` wherever it sits in a longer string: for each of
    the three byte alignments, the characters that depend on ``data``'s bits alone."""
    for shift in range(3):
        encoded = base64.b64encode(b"\x00" * shift + data)
        first = -(-8 * shift // 6)
        last = 8 * (shift + len(data)) // 6
        core = encoded[first:last]
        if len(core) < 4:
            continue
        yield "base64", core
        urlsafe = core.translate(_URLSAFE)
        if urlsafe != core:
            yield "base64url", urlsafe


_URLSAFE = bytes.maketrans(b"+/", b"-_")


def _bound_of(kind: str, value: str) -> int:
    if kind != "ip":
        return _NO_BOUND
    return _IPV6_BOUND if ":" in value else _IPV4_BOUND


def _forms(item: SensitiveValue, folded: bool) -> Iterator[tuple[bool, bytes, _Form]]:
    """(case-folded?, needle, form) for every way ``item`` may be written."""
    original = item.value.encode("utf-8")
    bound = _bound_of(item.kind, item.value)
    shown = redact(item.value)
    texts = {item.value: "raw"}
    escaped = json.dumps(item.value)[1:-1]
    texts.setdefault(escaped, "json")
    texts.setdefault(escaped.replace("/", "\\/"), "json")
    for text, encoding in texts.items():
        needle = text.encode("utf-8")
        form = _Form(item.kind, encoding, original, shown, bound)
        yield folded, needle.lower() if folded else needle, form
    sources = [original]
    if folded:
        sources.extend(
            dict.fromkeys(c for c in (original.lower(), original.upper()) if c != original)
        )
    for source in sources:
        for encoding, core in _base64_cores(source):
            yield False, core, _Form(item.kind, encoding, original, shown, _NO_BOUND)


class _Node:
    __slots__ = ("children", "end")

    def __init__(self) -> None:
        self.children: dict[int, _Node] = {}
        self.end = False


def _trie_regex(needles: Iterable[bytes]) -> re.Pattern[bytes] | None:
    """One regex matching any of ``needles``, longest first, as a trie (shared prefixes are
    tried once, so the cost grows with the text, hardly with the number of needles)."""
    root = _Node()
    for needle in needles:
        node = root
        for byte in needle:
            node = node.children.setdefault(byte, _Node())
        node.end = True
    if not root.children:
        return None

    def emit(node: _Node) -> bytes:
        out = b""
        while len(node.children) == 1 and not node.end:  # a chain: no group, no recursion
            (byte, node) = next(iter(node.children.items()))
            out += re.escape(bytes([byte]))
        if not node.children:
            return out
        branches = [re.escape(bytes([b])) + emit(c) for b, c in sorted(node.children.items())]
        return out + b"(?:" + b"|".join(branches) + b")" + (b"?" if node.end else b"")

    # the top level is a bare alternation, so the regex engine can skip ahead by first byte
    top = [re.escape(bytes([b])) + emit(c) for b, c in sorted(root.children.items())]
    return re.compile(b"|".join(top))


def _table(entries: dict[bytes, list[_Form]], lowered: bool) -> _Table:
    within: dict[bytes, tuple[tuple[int, int, _Form], ...]] = {}
    for needle in entries:
        inside: list[tuple[int, int, _Form]] = []
        for other, forms in entries.items():
            start = needle.find(other)
            while start != -1:
                inside.extend((start, len(other), form) for form in forms)
                start = needle.find(other, start + 1)
        within[needle] = tuple(inside)
    kinds = frozenset(form.kind for forms in entries.values() for form in forms)
    return _Table(_trie_regex(entries), within, kinds, lowered)


def _bounded(data: bytes, start: int, end: int, bound: int) -> bool:
    """Whether data[start:end] stands alone (an IP address not inside a longer one)."""
    if bound == _NO_BOUND:
        return True
    before = data[start - 1] if start else None
    after = data[end] if end < len(data) else None
    if bound == _IPV4_BOUND:
        if before is not None and (before in _DIGITS or before == 0x2E):
            return False
        if after is None:
            return True
        if after in _DIGITS:
            return False
        return not (after == 0x2E and end + 1 < len(data) and data[end + 1] in _DIGITS)
    return (before is None or before not in _HEX_COLON) and (
        after is None or after not in _HEX_COLON
    )


#: How many clean texts a scanner remembers (then it starts afresh), and up to what length.
_CLEAN_LIMIT = 4096
_CLEAN_LENGTH = 2048
#: And how many bodies, up to what size.
_CLEAN_BODY_LIMIT = 256
_CLEAN_BODY_LENGTH = 4096


class SensitiveScanner:
    """Finds sensitive values in a request. Built once (all forms precomputed), used per request.

    Values shorter than ``min_length``, or equal (ignoring case) to a word in ``ignore``, are
    dropped. Names (hostname, fqdn, user) and addresses (ip, mac) match in any letter case; other
    kinds, e.g. a home directory or a user-given secret, exactly.
    """

    def __init__(
        self,
        values: Iterable[SensitiveValue],
        *,
        min_length: int = 4,
        ignore: Iterable[str] = COMMON_WORDS,
    ) -> None:
        ignored = {word.lower() for word in ignore}
        kept: dict[tuple[str, str], SensitiveValue] = {}
        for item in values:
            if len(item.value) < min_length or item.value.lower() in ignored:
                continue
            kept.setdefault((item.kind, item.value), item)
        self.values: tuple[SensitiveValue, ...] = tuple(kept.values())
        kinds = dict.fromkeys(item.kind for item in self.values)
        self._kind_order = {kind: i for i, kind in enumerate(kinds)}
        self._kinds = frozenset(self._kind_order)
        self._plus = any(" " in item.value for item in self.values)
        #: URLs and header values known to hold no needle in any of their decodings.
        self._clean: set[str] = set()
        #: Bodies (as scanned: Content-Encoding undone) known to hold no needle.
        self._clean_bodies: set[bytes] = set()

    @functools.cached_property
    def _tables(self) -> tuple[_Table, ...]:
        """The search tables, built on the first scan: a session that sends nothing (or a test
        run that never gets that far) does not pay for the forms and regexes."""
        exact: dict[bytes, list[_Form]] = {}
        folded: dict[bytes, list[_Form]] = {}
        for item in self.values:
            is_folded = item.kind in CASE_INSENSITIVE_KINDS
            for lowered, needle, form in _forms(item, is_folded):
                bucket = (folded if lowered else exact).setdefault(needle, [])
                if form not in bucket:
                    bucket.append(form)
        return tuple(
            table
            for table in (_table(exact, lowered=False), _table(folded, lowered=True))
            if table.regex is not None
        )

    def __bool__(self) -> bool:
        return bool(self.values)  # every kept value has at least its raw form to search

    @functools.cached_property
    def mask(self) -> Masker:
        """Masks these values (and URL passwords) in a text about to be shown or written."""
        return Masker(self.values)

    def __repr__(self) -> str:
        kinds = ", ".join(self._kind_order)
        return f"SensitiveScanner({len(self.values)} values: {kinds})"

    def scan(
        self, *, url: str, headers: Collection[tuple[str, str]], body: bytes
    ) -> list[SensitiveHit]:
        """Every kind of sensitive value in the request, at most one hit each, in the order the
        kinds were given. Looks at the URL, each header value and the body, as written,
        percent-decoded, and (the body) with its Content-Encoding undone."""
        found: dict[str, SensitiveHit] = {}
        if not self._tables:
            return []
        # Most requests carry nothing: one search over every place at once says so. Each place
        # is a part of the joined text, so a place with a match makes the joined text match.
        # Whether a text holds a needle depends on the text alone: the texts found clean before
        # (the same URLs and header values, request after request) are not searched again.
        clean = self._clean
        unknown = [text for _, text in headers if text.__class__ is not str or text not in clean]
        if url.__class__ is not str or url not in clean:
            unknown.append(url)  # any order: each text is a part of the joined one
        if unknown and self._may_match("\n".join(unknown).encode("utf-8", "replace")):
            places = [("url", "", url.encode("utf-8", "replace"))]
            places.extend(
                (f"header:{name.strip().lower()}", "", value.encode("utf-8", "replace"))
                for name, value in headers
            )
            for where, layer, data in places:
                if self._scan_text(data, where, layer, found):
                    return self._ordered(found)
        elif unknown:
            if len(clean) + len(unknown) > _CLEAN_LIMIT:
                clean.clear()
            clean.update(t for t in unknown if t.__class__ is str and len(t) <= _CLEAN_LENGTH)
        if body:
            fields = fields_module()  # not imported at start-up: most runs send no body
            layer, data = "", body
            encoding = ",".join(fields.header_values(headers, "content-encoding")).strip()
            if encoding and encoding.lower() != "identity":
                decoded = fields.decode_content(body, encoding, partial=True)
                if decoded is not None:
                    layer = "+".join(c.strip().lower() for c in encoding.split(",") if c.strip())
                    data = decoded
            if data.__class__ is not bytes or len(data) > _CLEAN_BODY_LENGTH:
                self._scan_text(data, "body", layer, found)
            elif data not in self._clean_bodies:  # as for texts: what was clean stays clean
                self._scan_text(data, "body", layer, found)
                if not found:  # nothing found anywhere: every table searched it, in vain
                    if len(self._clean_bodies) >= _CLEAN_BODY_LIMIT:
                        self._clean_bodies.clear()
                    self._clean_bodies.add(data)
        return self._ordered(found)

    def _ordered(self, found: dict[str, SensitiveHit]) -> list[SensitiveHit]:
        if not found:
            return []
        return sorted(found.values(), key=lambda hit: self._kind_order[hit.kind])

    def _scan_text(
        self, data: bytes, where: str, layer: str, found: dict[str, SensitiveHit]
    ) -> bool:
        """Scan ``data`` and its percent-decoded forms; True once every kind has been found."""
        for extra, text in self._decodings(data):
            for table in self._tables:
                if table.kinds <= found.keys():
                    continue
                self._search(table, text, where, "+".join(filter(None, (layer, extra))), found)
                if self._kinds <= found.keys():
                    return True
        return False

    def _may_match(self, data: bytes) -> bool:
        for _, text in self._decodings(data):
            for table in self._tables:
                assert table.regex is not None
                if table.regex.search(text.lower() if table.lowered else text):
                    return True
        return False

    def _decodings(self, data: bytes) -> Iterator[tuple[str, bytes]]:
        yield "", data
        if b"%" in data:
            decoded = unquote_to_bytes(data)
            yield "percent", decoded
        if self._plus and b"+" in data:
            yield "percent", unquote_to_bytes(data.replace(b"+", b" "))

    def _search(
        self, table: _Table, data: bytes, where: str, layer: str, found: dict[str, SensitiveHit]
    ) -> None:
        assert table.regex is not None
        haystack = data.lower() if table.lowered else data
        search = table.regex.search
        m = search(haystack)
        while m is not None:
            start = m.start()
            for offset, length, form in table.within[m.group()]:
                if form.kind in found:
                    continue
                begin = start + offset
                if not _bounded(haystack, begin, begin + length, form.bound):
                    continue
                encoding = form.encoding
                if table.lowered and encoding == "raw":
                    encoding = _case_of(data[begin : begin + length], form.original)
                found[form.kind] = SensitiveHit(
                    form.kind, where, _join(layer, encoding), form.redacted
                )
            if table.kinds <= found.keys():
                return
            m = search(haystack, start + 1)


def _join(layer: str, encoding: str) -> str:
    if not layer:
        return encoding or "raw"
    if not encoding or encoding == "raw":
        return layer
    return f"{layer}+{encoding}"


def _case_of(seen: bytes, original: bytes) -> str:
    if seen == original:
        return "raw"
    if seen == original.lower():
        return "lowercase"
    if seen == original.upper():
        return "uppercase"
    return "mixed-case"
