"""Host canonicalisation and host-pattern matching: the one place rules R1-R10 live.

Pure functions and frozen values, no pytest and no patching. Everything that decides *which
host a request reaches* and *whether a documented pattern admits it* is here, so that every
interceptor judges a destination the same way.

The rules, in plain words:

R1  The destination is the peer the client connects to. The path, query, fragment and the
    ``Host:`` header never decide it; only the scheme and the authority of the URL do.
R2  Userinfo is ignored: the host is what follows the *last* ``@`` of the authority, and the
    authority ends at the first ``/``, ``?`` or ``#`` after ``scheme://``. A URL without a
    ``//`` authority (``mailto:x``, ``http:\\\\host``) or with an empty host is a violation.
R3  An authority (or host, or pattern) containing a backslash, a control character (TAB, CR,
    LF, NUL, any C0 or C1 control), a space or DEL is a violation: clients disagree on where
    such a host begins and ends. The same holds if percent-decoding or IDNA mapping produces
    one of these characters (``%5c``, the full-width backslash U+FF3C, the ideographic space
    U+3000).
R4  A host name is made canonical by: percent-decoding it (as UTF-8; a ``%`` left over, an
    invalid escape or invalid UTF-8 is a violation); mapping it with IDNA / UTS #46
    (full-width letters become ASCII, the ideographic dots ``。``, ``｡`` and U+FF0E become
    ``.``, ignorable characters such as the soft hyphen vanish) and converting every label to
    its A-label; lowercasing it; stripping one trailing dot. A name whose IDNA2003 and
    IDNA2008/UTS #46 forms differ (``straße``, ``ς``, joiners) is a violation, as is a
    non-ASCII name IDNA2008 rejects. An ASCII label (``xn--...`` included) is taken as written,
    lowercased: every client sends it unchanged. Empty labels, ``*``, ``%`` and any character
    other than ``a-z 0-9 - _`` in a label are violations; so is a label longer than 63 or a
    name longer than 253 characters. A local name with more than one trailing dot
    (``localhost...``, which resolvers refuse and only a stub resolver answers) is local
    traffic all the same (``local_peer_despite_fault``).
R5  A host whose last label is a number (``[0-9]+`` or ``0x[0-9a-f]*``) is an IPv4 literal,
    parsed as the C resolver's ``inet_aton`` does: one to four parts, each decimal, octal
    (leading ``0``) or hex (``0x``); the last part fills the remaining bytes, so ``127.1`` and
    ``2130706433`` are ``127.0.0.1``. A part that is not a valid number (``08``, ``evil``), a
    fifth part or an overflowing value is a violation.
R6  An IPv6 literal is written in brackets in a URL (bare only as a socket address). Its zone
    id (``%25eth0``) is dropped. ``::ffff:a.b.c.d`` (IPv4-mapped) *is* the IPv4 address
    ``a.b.c.d``; NAT64 (``64:ff9b::/96``) and IPv4-compatible (``::a.b.c.d``) forms stay IPv6.
    A bracketed IPv4 address (``[127.0.0.1]``) is a violation.
R7  A name pattern ``x`` matches exactly the canonical name ``x``. ``*.x`` matches a name with
    one or more labels below ``x`` and never ``x`` itself. There is no substring or suffix
    string matching: ``evil-x`` is not below ``x``. ``*`` may only be the whole first label.
R8  IP and CIDR patterns match IP destinations of the same family only (IPv4-mapped IPv6 counts
    as IPv4); name patterns never match an IP destination (no reverse DNS), and IP patterns
    never match a name.
R9  A pattern without a port admits any port; ``host:p`` only port ``p``; ``scheme://host``
    only that scheme on its default port (http/ws 80, https/wss 443), unless a port is given
    (``https://host:8443``). A peer whose scheme is unknown (``""``, a raw socket) is judged by
    the port alone. A URL port must be ASCII decimal, 1 to 65535 (an empty port means the
    scheme's default, as RFC 3986 and every client agree). Clients disagree only on the port
    of such a URL (one refuses it, the C resolver takes it modulo 65536), never on its host:
    when that host is local, the request is local traffic (``local_peer_despite_fault``).
R10 Every redirect hop and every connection is judged on its own: everything here is stateless
    and knows nothing of earlier requests.

Breaking a rule raises :class:`HostError`; its message is the reason shown to the user and its
``rule`` attribute names the rule. Host patterns are validated with the same code.
"""

from __future__ import annotations

import bisect
import functools
import ipaddress
import operator
import re
from typing import Final, Generic, Literal, TypeAlias, TypeVar

from pytest_outbound._value import Value

__all__ = [
    "SCHEMES",
    "HostError",
    "HostPattern",
    "PatternIndex",
    "PatternKind",
    "Peer",
    "canonical_host",
    "default_port",
    "entry_for_host",
    "is_local",
    "peer_from_address",
    "peer_from_url",
]

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network
PatternKind: TypeAlias = Literal["name", "wildcard", "ip", "cidr"]
T = TypeVar("T")

_CACHE_SIZE: Final = 4096
_DEFAULT_PORTS: Final = {"http": 80, "https": 443, "ws": 80, "wss": 443}
#: The schemes clients send (the interceptors' records carry no other; raw sockets none).
SCHEMES: Final = tuple(_DEFAULT_PORTS)
#: A trailing dot, as written: ASCII, or one IDNA maps to it (R4).
_FULL_STOPS: Final = (".", "\u3002", "\uff0e", "\uff61")
# R3: backslash, C0 controls and space, DEL, C1 controls.
_AMBIGUOUS: Final = re.compile(r"[\x00-\x20\x7f-\x9f\\]")
_URL_HEAD: Final = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):(//)?([^/?#]*)")
_SCHEME_PREFIX: Final = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*)://")
_NAME: Final = re.compile(r"(?:[a-z0-9_\-]{1,63}\.)*[a-z0-9_\-]{1,63}")
_LABEL_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")
_NUMBER_LABEL: Final = re.compile(r"[0-9]+|0x[0-9a-f]*")
_PERCENT_ESCAPE: Final = re.compile(r"%([0-9A-Fa-f]{2})")
# UTS #46 deviation characters: IDNA2003 maps or drops them, IDNA2008 keeps them (R4).
_DEVIATIONS: Final = {"\u00df": "ß", "\u03c2": "final sigma ς", "\u200c": "ZWNJ", "\u200d": "ZWJ"}
_PATTERN_HELP: Final = (
    "a valid pattern is a host name (example.com), a wildcard (*.example.com), an IP address "
    "(203.0.113.7, 2001:db8::1), a CIDR network (10.0.0.0/8), any of these with a port "
    "(example.com:443, [2001:db8::1]:443) or a scheme and host (https://example.com)"
)


class HostError(ValueError):
    """Ambiguous or invalid host/authority/pattern.

    ``str(e)`` is a one-line human reason; ``e.rule`` is the rule broken (``"R3"`` etc.).
    """

    def __init__(self, message: str, rule: str = "") -> None:
        super().__init__(message, rule)
        self.message = message
        self.rule = rule

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[type[HostError], tuple[str, str]]:
        return (type(self), (self.message, self.rule))


class Peer(Value):
    """The destination a client connects to, in canonical form (R1).

    ``host`` is a lowercase A-label name without trailing dot, or an IP address in compressed
    text form (IPv6 without brackets; IPv4-mapped IPv6 given as the IPv4 address). ``ip`` is set
    exactly when ``host`` is an IP literal. ``port`` is the explicit port, else the scheme's
    default, else ``None``. ``scheme`` is lowercase, ``""`` when unknown (raw sockets).

    Immutable at run time too: records share one ``Peer`` per URL, so a change would reach
    every record to that URL.
    """

    __slots__ = _fields = ("scheme", "host", "port", "ip")
    scheme: str
    host: str
    port: int | None
    ip: IPAddress | None

    def __init__(self, scheme: str, host: str, port: int | None, ip: IPAddress | None) -> None:
        put = object.__setattr__
        put(self, "scheme", scheme)
        put(self, "host", host)
        put(self, "port", port)
        put(self, "ip", ip)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Peer is immutable: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"Peer is immutable: cannot delete {name!r}")

    def __reduce__(self) -> tuple[type[Peer], tuple[object, ...]]:
        return (Peer, (self.scheme, self.host, self.port, self.ip))  # through __init__

    def __str__(self) -> str:
        host = f"[{self.host}]" if self.ip is not None and self.ip.version == 6 else self.host
        if self.port is not None:
            host = f"{host}:{self.port}"
        return f"{self.scheme}://{host}" if self.scheme else host


def default_port(scheme: str) -> int | None:
    """The port a client uses for ``scheme`` when none is given (http/ws 80, https/wss 443)."""
    return _DEFAULT_PORTS.get(scheme.lower())


def canonical_host(raw: str) -> str:
    """The canonical form of a host (R3-R6); idempotent. Raises :class:`HostError`.

    Accepts a name (percent-encoded and Unicode allowed), an IPv4 address in any ``inet_aton``
    notation, or an IPv6 address with or without brackets.
    """
    return _canonical(raw)[0]


def peer_from_url(url: str) -> Peer:
    """The peer a client reaches for ``url`` (R1-R6, R9). Raises :class:`HostError`."""
    head = _URL_HEAD.match(url)
    if head is None:
        raise HostError(f"{_clip(url)} is not an absolute URL of the form scheme://host", "R2")
    scheme, slashes, authority = head.groups()
    if slashes is None:
        raise HostError(
            f"{_clip(url)} has no '//' authority after the scheme, so the host it reaches is "
            "not defined",
            "R2",
        )
    return _peer_from_authority(scheme, authority)


def local_peer_despite_fault(url: str) -> Peer | None:
    """For a URL whose port breaks R9 (``http://127.0.0.1:123456/``) or whose host ends in
    more than one dot (R4, ``https://localhost.../``): its peer if its host is local
    (``is_local``), else None; the port is None where it is out of range. Whatever a client
    makes of such a URL, or if it refuses it, nothing of it reaches another machine."""
    head = _URL_HEAD.match(url)
    if head is None or head.group(2) is None:
        return None
    scheme, _, authority = head.groups()
    scheme = scheme.lower()
    try:
        _reject_ambiguous(authority, "the authority")
        host, port_text = _split_host_port(authority.rpartition("@")[2], authority)
        if host.endswith(".."):
            host = host.rstrip(".") + "."
        text, ip = _canonical(host)
    except HostError:
        return None
    try:
        port = default_port(scheme) if port_text is None else _parse_port(port_text, authority)
    except HostError:
        port = None
    peer = Peer(scheme, text, port, ip)
    return peer if is_local(peer) else None


def peer_from_address(host: str, port: int | None = None, scheme: str = "") -> Peer:
    """The peer for a socket-level address or a DNS name (R3-R6). Raises :class:`HostError`.

    ``host`` may be a name, an IPv4 address in any notation or an IPv6 address (bare or in
    brackets, with or without zone id). Without ``port`` the scheme's default port is used.
    """
    scheme = scheme.lower()
    if port is None:
        port = default_port(scheme)
    elif not 0 < port < 65536:
        raise HostError(f"port {port} is outside 1-65535", "R9")
    text, ip = _canonical(host)
    return Peer(scheme, text, port, ip)


def entry_for_host(host: str) -> str:
    """A canonical host as an *entry* is written (a marker's, ``outbound_allow``'s): a
    single-label name with its trailing dot (``intranet.``), anything else as it is."""
    if "." in host or ":" in host or host == "localhost" or _NUMBER_LABEL.fullmatch(host):
        return host
    return f"{host}."


def is_local(peer: Peer) -> bool:
    """Whether ``peer`` is this machine: loopback in any notation, ``localhost``, ``*.localhost``.

    The unspecified addresses ``0.0.0.0`` and ``::`` count too: connecting to them reaches the
    local host.
    """
    ip = peer.ip
    if ip is None:
        return peer.host == "localhost" or peer.host.endswith(".localhost")
    return ip.is_loopback or ip.is_unspecified


# --- parsing ---------------------------------------------------------------------------------


def _clip(text: str, limit: int = 80) -> str:
    """``repr`` of ``text``, shortened for a one-line message."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + "..."


def _reject_ambiguous(text: str, what: str, original: str = "") -> None:
    """R3: raise if ``text`` contains a backslash, a control character, a space or DEL.

    ``what`` names the text in the message; ``original`` is what ``text`` was decoded from.
    """
    found = _AMBIGUOUS.search(text)
    if found is None:
        return
    char = found.group()
    name = {
        "\\": "a backslash",
        " ": "a space",
        "\t": "a TAB",
        "\r": "a CR",
        "\n": "an LF",
        "\x00": "a NUL",
        "\x7f": "DEL",
    }.get(char, f"the control character U+{ord(char):04X}")
    shown = f"{_clip(original)}, read as {_clip(text)}," if original else _clip(text)
    raise HostError(f"{what} {shown} contains {name}; clients disagree on which host that is", "R3")


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _peer_from_authority(scheme: str, authority: str) -> Peer:
    scheme = scheme.lower()
    _reject_ambiguous(authority, "the authority")
    host, port_text = _split_host_port(authority.rpartition("@")[2], authority)
    port = default_port(scheme) if port_text is None else _parse_port(port_text, authority)
    text, ip = _canonical(host)
    return Peer(scheme, text, port, ip)


def _split_host_port(hostport: str, context: str) -> tuple[str, str | None]:
    """Split ``host[:port]`` or ``[v6][:port]``; an empty port counts as no port."""
    if hostport.startswith("["):
        close = hostport.find("]")
        if close < 0:
            raise HostError(f"the IPv6 literal in {_clip(context)} has no closing ']'", "R6")
        host, rest = hostport[: close + 1], hostport[close + 1 :]
        if rest and not rest.startswith(":"):
            raise HostError(f"unexpected {_clip(rest)} after ']' in {_clip(context)}", "R6")
        port_text = rest[1:] if rest else None
    else:
        if hostport.count(":") > 1:
            raise HostError(
                f"the authority {_clip(context)} has more than one ':'; a port is given once, "
                "and an IPv6 address in a URL must be in brackets",
                "R9",
            )
        host, colon, port_text_or_empty = hostport.partition(":")
        port_text = port_text_or_empty if colon else None
    if not host:
        raise HostError(f"the authority {_clip(context)} has an empty host", "R2")
    return host, port_text or None


def _parse_port(text: str, context: str) -> int:
    """R9: ASCII decimal 1-65535 (leading zeros allowed, as every client does)."""
    if not (text.isascii() and text.isdigit()):
        raise HostError(f"the port {_clip(text)} in {_clip(context)} is not a decimal number", "R9")
    digits = text.lstrip("0")
    if len(digits) > 5 or not 0 < int(digits or "0") < 65536:
        raise HostError(f"the port {text} in {_clip(context)} is outside 1-65535", "R9")
    return int(digits)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _canonical(raw: str) -> tuple[str, IPAddress | None]:
    """Canonical host text and, for IP literals, the address (R3-R6)."""
    if not raw:
        raise HostError("the host is empty", "R2")
    _reject_ambiguous(raw, "the host")
    if raw.startswith("["):
        if not raw.endswith("]"):
            raise HostError(f"the IPv6 literal {_clip(raw)} has no closing ']'", "R6")
        return _parse_ipv6(raw[1:-1], raw, bracketed=True)
    if ":" in raw:
        return _parse_ipv6(raw, raw, bracketed=False)
    host = _percent_decode(raw) if "%" in raw else raw
    if not host.isascii():
        host = _idna_to_ascii(host, raw)
    host = host.lower()
    if host.endswith("."):
        host = host[:-1]
    labels = host.split(".")
    if _NUMBER_LABEL.fullmatch(labels[-1]):
        ipv4 = _parse_ipv4(labels, raw)
        return str(ipv4), ipv4
    if not _NAME.fullmatch(host):
        _explain_bad_name(labels, raw)
    if len(host) > 253:
        raise HostError(f"the host {_clip(raw)} is longer than 253 characters", "R4")
    return host, None


def _percent_decode(text: str) -> str:
    """R4: decode ``%XX`` escapes as UTF-8; a ``%`` that is not an escape is a violation."""
    if "%" in _PERCENT_ESCAPE.sub("", text):
        raise HostError(f"the host {_clip(text)} has a '%' that is not a valid escape", "R4")
    # Bytes >= 0x80 become lone surrogates that "surrogateescape" turns back into bytes, so
    # that multi-byte sequences can be decoded as UTF-8 together with the literal characters.
    escaped = _PERCENT_ESCAPE.sub(_unescape_byte, text)
    try:
        result = escaped.encode("utf-8", "surrogateescape").decode("utf-8")
    except UnicodeError:
        raise HostError(f"the percent-escapes in {_clip(text)} are not valid UTF-8", "R4") from None
    _reject_ambiguous(result, "the host", text)
    if "%" in result:
        raise HostError(f"the host {_clip(text)} is percent-encoded twice", "R4")
    return result


def _unescape_byte(escape: re.Match[str]) -> str:
    byte = int(escape.group(1), 16)
    return chr(byte) if byte < 0x80 else chr(0xDC00 + byte)


def _idna_to_ascii(host: str, raw: str) -> str:
    """R4: UTS #46 mapping, then A-labels; IDNA2003 and IDNA2008 must agree."""
    import idna  # only for a host that is not ASCII: most runs never import it (1 ms)

    try:
        mapped = idna.uts46_remap(host, std3_rules=False)
    except idna.IDNAError as exc:
        raise HostError(f"the host {_clip(raw)} is not a valid IDNA name: {exc}", "R4") from None
    _reject_ambiguous(mapped, "the host", raw)
    for char, name in _DEVIATIONS.items():
        if char in mapped:
            raise HostError(
                f"the host {_clip(raw)} contains {name}, which IDNA2003 and IDNA2008 resolve to "
                "different names; write the intended A-label (xn--...) instead",
                "R4",
            )
    labels = []
    for label in mapped.split("."):
        if label.isascii():
            labels.append(label)
            continue
        try:
            labels.append(idna.alabel(label).decode("ascii"))
        except idna.IDNAError as exc:
            raise HostError(
                f"the host {_clip(raw)} is not a valid IDNA2008 name: {exc}", "R4"
            ) from None
    result = ".".join(labels)
    try:
        idna2003 = host.encode("idna").decode("ascii")
    except UnicodeError:
        return result  # IDNA2003 clients cannot reach this name at all: no second destination.
    if idna2003.lower().removesuffix(".") != result.lower().removesuffix("."):
        raise HostError(
            f"the host {_clip(raw)} is {idna2003} under IDNA2003 but {result} under IDNA2008; "
            "clients disagree on which host that is",
            "R4",
        )
    return result


def _explain_bad_name(labels: list[str], raw: str) -> None:
    """Raise the reason a lowercase, dot-stripped name failed the ``_NAME`` check."""
    for label in labels:
        if not label:
            raise HostError(f"the host {_clip(raw)} has an empty label", "R4")
        if len(label) > 63:
            raise HostError(f"the host {_clip(raw)} has a label longer than 63 characters", "R4")
        bad = next((c for c in label if c not in _LABEL_CHARS), None)
        if bad == "*":
            raise HostError(
                f"the host {_clip(raw)} contains '*'; wildcards belong in patterns "
                "(*.example.com), not in hosts",
                "R4",
            )
        if bad is not None:
            raise HostError(
                f"the host {_clip(raw)} contains {bad!r}, which is not allowed in a host name",
                "R4",
            )
    raise HostError(f"the host {_clip(raw)} is not a valid host name", "R4")  # pragma: no cover


def _parse_ipv4(parts: list[str], raw: str) -> ipaddress.IPv4Address:
    """R5: ``inet_aton`` semantics; ``parts`` are lowercase labels without a trailing empty one."""
    if len(parts) > 4:
        raise HostError(f"the IPv4 address {_clip(raw)} has more than four parts", "R5")
    values = [_ipv4_part(part, raw) for part in parts]
    *head, last = values
    if any(value > 0xFF for value in head) or last >= 1 << (8 * (5 - len(values))):
        raise HostError(f"the IPv4 address {_clip(raw)} overflows", "R5")
    number = last
    for index, value in enumerate(head):
        number |= value << (24 - 8 * index)
    return ipaddress.IPv4Address(number)


def _ipv4_part(part: str, raw: str) -> int:
    if part.startswith("0x"):
        # at least one digit: C's inet_aton (what socket.connect and getaddrinfo use) reads
        # "127.0x" as a name to resolve, not as 127.0.0.0 (WHATWG URLs would say 0)
        digits, base = part[2:], 16
        valid = bool(digits) and all(c in "0123456789abcdef" for c in digits)
    elif len(part) > 1 and part.startswith("0"):
        digits, base = part[1:], 8
        valid = all(c in "01234567" for c in digits)
    else:
        digits, base = part, 10
        valid = bool(part) and part.isascii() and part.isdigit()
    if not valid:
        raise HostError(
            f"the host {_clip(raw)} ends in a number, so it is an IPv4 address, but {part!r} "
            "is not a decimal, octal or hex number",
            "R5",
        )
    digits = digits.lstrip("0")
    if len(digits) > 12:
        raise HostError(f"the IPv4 address {_clip(raw)} overflows", "R5")
    return int(digits, base) if digits else 0


def _parse_ipv6(text: str, raw: str, *, bracketed: bool) -> tuple[str, IPAddress]:
    """R6: IPv6 literal without brackets; zone id dropped, IPv4-mapped returned as IPv4."""
    address, percent, zone = text.partition("%")
    if percent and not zone.removeprefix("25"):
        raise HostError(f"the IPv6 literal {_clip(raw)} has an empty zone id", "R6")
    try:
        ip = ipaddress.IPv6Address(address)
    except ValueError:
        if bracketed and ":" not in address:
            raise HostError(
                f"{_clip(raw)} is an IPv4 address in brackets; clients disagree on it "
                "(write it without brackets)",
                "R6",
            ) from None
        raise HostError(f"{_clip(raw)} is not a valid IPv6 address", "R6") from None
    mapped = ip.ipv4_mapped
    if mapped is not None:
        return str(mapped), mapped
    return ip.compressed, ip


# --- patterns --------------------------------------------------------------------------------


class HostPattern(Value):
    """One documented destination pattern (R7-R9), parsed and validated on construction.

    ``kind`` is ``"name"`` (``host`` is the canonical name), ``"wildcard"`` (``host`` is the
    canonical suffix ``x`` of ``*.x``), ``"ip"`` (``ip`` is set) or ``"cidr"`` (``network`` is
    set); ``host`` is the canonical text for every kind. ``scheme`` is ``""`` when the pattern
    has none; ``port`` is ``None`` when any port is admitted. Equal and hashed by ``text``.
    """

    _fields = ("text", "kind", "host", "scheme", "port")
    _compared = ("text",)
    __slots__ = (*_fields, "ip", "network")
    text: Final[str]
    kind: Final[PatternKind]
    host: Final[str]
    scheme: Final[str]
    port: Final[int | None]
    ip: Final[IPAddress | None]
    network: Final[IPNetwork | None]

    def __init__(self, text: str) -> None:
        self.text = text
        self.kind, self.host, self.scheme, self.port, self.ip, self.network = _parse_pattern(text)

    @classmethod
    def parse(cls, text: str) -> HostPattern:
        """Parse and validate ``text``; raises :class:`HostError` saying what is wrong."""
        return cls(text)

    def __str__(self) -> str:
        return self.text

    def matches(self, peer: Peer) -> bool:
        """Whether this pattern admits ``peer`` (host, scheme and port)."""
        return self.admits_scheme_and_port(peer) and self.matches_host(peer)

    def matches_host(self, peer: Peer) -> bool:
        """Whether the host part admits ``peer``, ignoring scheme and port (e.g. DNS lookups)."""
        if self.kind == "name":
            return peer.ip is None and peer.host == self.host
        if self.kind == "wildcard":
            return peer.ip is None and peer.host.endswith("." + self.host)
        if self.kind == "ip":
            return peer.ip == self.ip
        network = self.network
        return (
            network is not None
            and peer.ip is not None
            and peer.ip.version == network.version
            and peer.ip in network
        )

    def admits_scheme_and_port(self, peer: Peer) -> bool:
        """R9: the port must be the pattern's (if any); a known scheme must be the pattern's."""
        if self.port is not None and peer.port != self.port:
            return False
        return not self.scheme or not peer.scheme or peer.scheme == self.scheme

    def bare_single_label(self) -> bool:
        """Whether this names one host by a single label (``intranet``), written without the
        trailing dot that says a single-label host is meant (``intranet.``). As an *entry*
        (a marker's, the fixture's, ``outbound_allow``) such a word is far more often a
        mistyped destination name than a host, so it must be spelled out (SPEC §4).
        ``localhost`` is a name everyone means."""
        if self.kind != "name" or "." in self.host or self.host == "localhost":
            return False
        written = self.text
        prefix = _SCHEME_PREFIX.match(written)
        if prefix is not None:
            written = written[prefix.end() :].partition("/")[0]
        return not written.partition(":")[0].endswith(_FULL_STOPS)


_ParsedPattern: TypeAlias = tuple[
    PatternKind, str, str, int | None, IPAddress | None, IPNetwork | None
]


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _parse_pattern(text: str) -> _ParsedPattern:
    try:
        return _parse_pattern_unwrapped(text)
    except HostError as exc:
        raise HostError(
            f"invalid host pattern {_clip(text)}: {exc.message} ({_PATTERN_HELP})", exc.rule
        ) from None


def _parse_pattern_unwrapped(text: str) -> _ParsedPattern:
    if not text:
        raise HostError("it is empty", "R7")
    _reject_ambiguous(text, "the pattern")
    scheme = ""
    body = text
    prefix = _SCHEME_PREFIX.match(text)
    if prefix is not None:
        scheme = prefix.group(1).lower()
        body = text[prefix.end() :]
        end = min((i for i in (body.find(c) for c in "/?#") if i >= 0), default=len(body))
        body, rest = body[:end], body[end:]
        if rest not in ("", "/"):
            raise HostError(f"a pattern names a host, not a path or query; drop {rest!r}", "R1")
        if "@" in body:
            raise HostError("a pattern names a host; userinfo (user@) never matters", "R2")
    elif "://" in text:
        raise HostError("the scheme before '://' is not valid", "R9")

    if body.startswith("["):
        close = body.find("]")
        if close < 0:
            raise HostError("the '[' has no closing ']'", "R6")
        host_text, rest = body[1:close], body[close + 1 :]
        if rest and not rest.startswith(":"):
            raise HostError(f"unexpected {rest!r} after ']'", "R6")
        port_text = rest[1:] if rest else None
        if "/" not in host_text and ":" not in host_text:
            raise HostError("brackets are only for IPv6 addresses", "R6")
        host_text = host_text if "/" in host_text else f"[{host_text}]"
    elif body.count(":") > 1:
        if scheme:
            raise HostError("an IPv6 address after '://' must be in brackets", "R6")
        host_text, port_text = body, None
    else:
        host_text, colon, port_value = body.partition(":")
        port_text = port_value if colon else None

    if port_text is not None:
        if not port_text:
            raise HostError("the port after ':' is empty", "R9")
        port: int | None = _parse_port(port_text, text)
    else:
        port = default_port(scheme) if scheme else None

    if not host_text:
        raise HostError("the host is empty", "R7")
    if "/" in host_text:
        network = _parse_network(host_text)
        return "cidr", str(network), scheme, port, None, network
    if "*" in host_text:
        suffix = host_text[2:]
        if not host_text.startswith("*.") or not suffix or "*" in suffix:
            raise HostError(
                "'*' is only allowed as the whole first label followed by a name (*.example.com)",
                "R7",
            )
        name, ip = _canonical(suffix)
        if ip is not None:
            raise HostError("wildcards apply to names, not IP addresses; use a CIDR", "R8")
        return "wildcard", name, scheme, port, None, None
    host, ip = _canonical(host_text)
    if ip is not None:
        return "ip", host, scheme, port, ip, None
    return "name", host, scheme, port, None, None


def _parse_network(text: str) -> IPNetwork:
    """A CIDR network; IPv4 base in any notation; an IPv4-mapped IPv6 network becomes IPv4."""
    address, _, length_text = text.partition("/")
    if not (length_text.isascii() and length_text.isdigit()) or len(length_text) > 3:
        raise HostError(f"the prefix length {length_text!r} is not a number", "R8")
    length = int(length_text)
    base: IPAddress
    if ":" in address:
        try:
            base = ipaddress.IPv6Address(address)
        except ValueError:
            raise HostError(f"{address!r} is not an IPv6 address", "R8") from None
    else:
        text_ip, ip = _canonical(address)
        if ip is None:
            raise HostError(f"{text_ip!r} before '/' is not an IP address", "R8")
        base = ip
    if length > base.max_prefixlen:
        raise HostError(
            f"the prefix length {length} is longer than the {base.max_prefixlen} bits of an "
            f"IPv{base.version} address",
            "R8",
        )
    network = ipaddress.ip_network((base, length), strict=False)
    if network.network_address != base:
        raise HostError(f"the address has host bits set; did you mean {network}?", "R8")
    if isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= 96:
        mapped = network.network_address.ipv4_mapped
        if mapped is not None:
            return ipaddress.IPv4Network((mapped, network.prefixlen - 96))
    return network


# --- index ---------------------------------------------------------------------------------


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _label_suffixes(host: str) -> tuple[str, ...]:
    """``a.b.c`` -> ``("b.c", "c")``: the names a wildcard ``*.x`` of ``host`` could name."""
    labels = host.split(".")
    return tuple(".".join(labels[i:]) for i in range(1, len(labels)))


_Entry: TypeAlias = tuple[int, HostPattern, T]  # (insertion number, pattern, value)
_Ranges: TypeAlias = tuple[list[int], list[tuple[_Entry[T], ...]]]


class PatternIndex(Generic[T]):
    """Many patterns, each with a value; lookup cost independent of the number of patterns.

    Exact names and IP addresses are dict keys; wildcards are keyed by their suffix and found
    by walking the peer's label suffixes (one probe per label; the suffixes are cached per
    host). CIDR networks of one family are flattened, on the first lookup after an ``add``,
    into sorted disjoint address ranges, each listing the networks that cover it; an IP lookup
    is then one C-level binary search (``bisect``: 15 comparisons for 10,000 networks)
    whatever the prefix lengths in use. ``add`` is meant for setting the index up, not for
    racing concurrent lookups.
    """

    def __init__(self) -> None:
        self._count = 0
        self._names: dict[str, list[_Entry[T]]] = {}
        self._suffixes: dict[str, list[_Entry[T]]] = {}
        self._ips: dict[IPAddress, list[_Entry[T]]] = {}
        # IP version -> (first address, last address, entry) of every network
        self._networks: dict[int, list[tuple[int, int, _Entry[T]]]] = {4: [], 6: []}
        self._ranges: dict[int, _Ranges[T]] = {}  # built from _networks when needed

    def __len__(self) -> int:
        return self._count

    def add(self, pattern: HostPattern, value: T) -> None:
        """Add ``pattern`` with ``value``; lookups report values in the order they were added."""
        entry: _Entry[T] = (self._count, pattern, value)
        self._count += 1
        if pattern.kind == "name":
            self._names.setdefault(pattern.host, []).append(entry)
        elif pattern.kind == "wildcard":
            self._suffixes.setdefault(pattern.host, []).append(entry)
        elif pattern.ip is not None:
            self._ips.setdefault(pattern.ip, []).append(entry)
        elif pattern.network is not None:
            network = pattern.network
            first, last = int(network.network_address), int(network.broadcast_address)
            self._networks[network.version].append((first, last, entry))
            self._ranges.pop(network.version, None)

    def lookup(self, peer: Peer, *, host_only: bool = False) -> list[T]:
        """Every value whose pattern matches ``peer``, in insertion order.

        With ``host_only`` scheme and port are ignored (as for a DNS lookup, which has neither).
        """
        found: list[_Entry[T]] = []
        merged = False
        ip = peer.ip
        if ip is None:
            host = peer.host
            found = self._names.get(host, found)
            if self._suffixes:
                for suffix in _label_suffixes(host):
                    below = self._suffixes.get(suffix)
                    if below:
                        merged = bool(found)
                        found = found + below if found else below
        else:
            found = self._ips.get(ip, found)
            if self._networks[ip.version]:
                starts, covers = self._ranges.get(ip.version) or self._build_ranges(ip.version)
                position = bisect.bisect_right(starts, int(ip)) - 1
                if position >= 0 and covers[position]:
                    merged = bool(found)
                    found = [*found, *covers[position]]
        if not found:
            return []
        if merged:
            found = sorted(found, key=operator.itemgetter(0))
        if host_only:
            return [value for _, _, value in found]
        return [value for _, pattern, value in found if pattern.admits_scheme_and_port(peer)]

    def _build_ranges(self, version: int) -> _Ranges[T]:
        """Cut the networks of ``version`` into disjoint ranges, each with its covering entries."""
        opening: dict[int, list[_Entry[T]]] = {}
        closing: dict[int, list[_Entry[T]]] = {}
        for first, last, entry in self._networks[version]:
            opening.setdefault(first, []).append(entry)
            closing.setdefault(last + 1, []).append(entry)
        starts = sorted(opening.keys() | closing.keys())
        covers: list[tuple[_Entry[T], ...]] = []
        active: dict[int, _Entry[T]] = {}
        for start in starts:
            for entry in closing.get(start, ()):
                del active[entry[0]]
            for entry in opening.get(start, ()):
                active[entry[0]] = entry
            covers.append(tuple(sorted(active.values(), key=operator.itemgetter(0))))
        self._ranges[version] = (starts, covers)
        return starts, covers
