"""Host canonicalisation and matching (``pytest_outbound._hosts``): corpus, units, properties."""

from __future__ import annotations

import ipaddress
import pickle

import pytest
from host_corpus import CASES, HostCase
from hypothesis import assume, given
from hypothesis import strategies as st

from pytest_outbound._hosts import (
    HostError,
    HostPattern,
    PatternIndex,
    Peer,
    canonical_host,
    default_port,
    is_local,
    peer_from_address,
    peer_from_url,
)

V4 = ipaddress.IPv4Address
V6 = ipaddress.IPv6Address


def peer_of(case: HostCase) -> Peer:
    if isinstance(case.target, str):
        return peer_from_url(case.target)
    return peer_from_address(*case.target)


def verdict_of(case: HostCase) -> tuple[str, str]:
    """(verdict, rule cited by a rejection or "")."""
    pattern = HostPattern.parse(case.pattern)
    try:
        peer = peer_of(case)
    except HostError as exc:
        return "violation", exc.rule
    return ("allowed" if pattern.matches(peer) else "violation"), ""


# --- the corpus --------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_corpus_verdict(case: HostCase) -> None:
    verdict, rule = verdict_of(case)
    assert verdict == case.verdict
    if rule:
        assert rule == case.rule, "the rejection cites a different rule"


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_corpus_through_index(case: HostCase) -> None:
    index: PatternIndex[str] = PatternIndex()
    index.add(HostPattern.parse("unrelated.example"), "other")
    index.add(HostPattern.parse(case.pattern), "it")
    try:
        found = index.lookup(peer_of(case))
    except HostError:
        found = []
    assert ("it" in found) == (case.verdict == "allowed")


def test_corpus_is_large_and_varied() -> None:
    assert len(CASES) >= 100
    assert {case.verdict for case in CASES} == {"allowed", "violation"}
    assert {case.rule for case in CASES} == {f"R{n}" for n in range(1, 11)}
    assert any(not case.is_url for case in CASES)


REQUIRED = [
    ("https://OCTOPUS.COM./", "octopus.com", "allowed"),
    ("https://www.octopus.com/", "octopus.com", "violation"),
    ("https://evil-octopus.com/", "octopus.com", "violation"),
    ("https://octopus.com@evil.com/", "octopus.com", "violation"),
    ("https://evil.com\\@octopus.com/", "octopus.com", "violation"),
    ("https://%6fctopus.com/", "octopus.com", "allowed"),
    ("https://\uff4f\uff43\uff54\uff4f\uff50\uff55\uff53.com/", "octopus.com", "allowed"),
    ("https://nuget.org/", "*.nuget.org", "violation"),
    ("https://a.b.c.nuget.org/", "*.nuget.org", "allowed"),
    ("http://library.octopus.com/", "https://library.octopus.com", "violation"),
    ("http://0x0a.1.2.3/", "10.0.0.0/8", "allowed"),
    ("http://10.evil.com/", "10.0.0.0/8", "violation"),
    ("http://2130706433/", "127.0.0.1", "allowed"),
    ("http://0x7f.1/", "127.0.0.1", "allowed"),
    ("http://0177.0.0.1/", "127.0.0.1", "allowed"),
]


@pytest.mark.parametrize(("url", "pattern", "verdict"), REQUIRED)
def test_corpus_has_the_issue_cases(url: str, pattern: str, verdict: str) -> None:
    assert (url, pattern, verdict) in {(c.target, c.pattern, c.verdict) for c in CASES}


# --- HostError, Peer, default_port ---------------------------------------------------------


def test_host_error_is_a_value_error_with_rule_and_pickles() -> None:
    error = HostError("the host is empty", "R2")
    assert isinstance(error, ValueError)
    assert str(error) == "the host is empty"
    assert error.rule == "R2"
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), str(copy), copy.rule) == (HostError, "the host is empty", "R2")
    assert HostError("no rule").rule == ""


@pytest.mark.parametrize(
    ("scheme", "port"),
    [
        ("http", 80),
        ("https", 443),
        ("ws", 80),
        ("wss", 443),
        ("HTTPS", 443),
        ("ftp", None),
        ("", None),
    ],
)
def test_default_port(scheme: str, port: int | None) -> None:
    assert default_port(scheme) == port


@pytest.mark.parametrize(
    ("peer", "text"),
    [
        (Peer("https", "octopus.com", 443, None), "https://octopus.com:443"),
        (Peer("", "octopus.com", None, None), "octopus.com"),
        (Peer("", "::1", 22, V6("::1")), "[::1]:22"),
        (Peer("http", "127.0.0.1", 80, V4("127.0.0.1")), "http://127.0.0.1:80"),
    ],
)
def test_peer_str(peer: Peer, text: str) -> None:
    assert str(peer) == text


def test_peer_is_frozen_and_hashable() -> None:
    peer = Peer("https", "octopus.com", 443, None)
    with pytest.raises(AttributeError):
        peer.host = "evil.com"
    assert {peer, Peer("https", "octopus.com", 443, None)} == {peer}
    with pytest.raises(AttributeError):
        del peer.port
    assert peer != Peer("http", "octopus.com", 443, None)
    assert repr(peer) == "Peer(scheme='https', host='octopus.com', port=443, ip=None)"


def test_peer_copies_and_pickles_despite_being_immutable() -> None:
    import copy
    import pickle

    peer = peer_from_url("https://[2001:db8::1]:8443/x")
    for clone in (copy.copy(peer), copy.deepcopy(peer), pickle.loads(pickle.dumps(peer))):
        assert clone == peer
        assert hash(clone) == hash(peer)
        assert (clone.scheme, clone.host, clone.port, clone.ip) == (
            "https",
            "2001:db8::1",
            8443,
            peer.ip,
        )


def test_host_patterns_are_equal_by_their_text() -> None:
    pattern = HostPattern.parse("*.Example.COM:443")
    assert pattern == HostPattern.parse("*.Example.COM:443")
    assert pattern != HostPattern.parse("*.example.com:443")  # the text as written
    assert len({pattern, HostPattern.parse("*.Example.COM:443")}) == 1
    assert (pattern.kind, pattern.host, pattern.port) == ("wildcard", "example.com", 443)


# --- canonical_host ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("OCTOPUS.COM.", "octopus.com"),
        ("%6Fctopus.com", "octopus.com"),
        ("\uff4f\uff43\uff54\uff4f\uff50\uff55\uff53\u3002com", "octopus.com"),
        ("m\u00fcnchen.DE", "xn--mnchen-3ya.de"),
        ("XN--MNCHEN-3YA.de", "xn--mnchen-3ya.de"),
        ("foo_bar.internal", "foo_bar.internal"),
        ("127.1", "127.0.0.1"),
        ("0x7F.0.0.1", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("0", "0.0.0.0"),
        ("[::1]", "::1"),
        ("::1", "::1"),
        ("[2001:DB8:0:0::1]", "2001:db8::1"),
        ("fe80::1%eth0", "fe80::1"),
        ("[fe80::1%25eth0]", "fe80::1"),
        ("::ffff:10.1.2.3", "10.1.2.3"),
        ("[::ffff:a01:203]", "10.1.2.3"),
        ("64:ff9b::10.1.2.3", "64:ff9b::a01:203"),
        ("::10.1.2.3", "::a01:203"),
        ("xn--n3h.net", "xn--n3h.net"),
    ],
)
def test_canonical_host(raw: str, canonical: str) -> None:
    assert canonical_host(raw) == canonical
    assert canonical_host(canonical) == canonical


@pytest.mark.parametrize(
    ("raw", "rule", "words"),
    [
        ("", "R2", "empty"),
        ("octopus.com\\", "R3", "backslash"),
        ("octo pus.com", "R3", "space"),
        ("octopus.com\t", "R3", "TAB"),
        ("octopus.com\x00", "R3", "NUL"),
        ("octopus.com\x7f", "R3", "DEL"),
        ("octopus%0a.com", "R3", "LF"),
        ("a..b", "R4", "empty label"),
        ("a.b..", "R4", "empty label"),
        ("*.b", "R4", "'*'"),
        ("%zz.com", "R4", "not a valid escape"),
        ("%2541.com", "R4", "percent-encoded twice"),
        ("%ff.com", "R4", "UTF-8"),
        ("stra\u00dfe.de", "R4", "IDNA2003"),
        ("\u2603.net", "R4", "IDNA2008"),
        ("a" * 64 + ".com", "R4", "63"),
        (("a" * 60 + ".") * 5 + "com", "R4", "253"),
        ("evil.10", "R5", "'evil'"),
        ("09.1", "R5", "'09'"),
        ("0xg.1", "R5", "'0xg'"),
        # C's inet_aton reads these as names to resolve: never guessed to be an address
        ("127.0x", "R5", "'0x'"),
        ("10.0X", "R5", "'0x'"),
        ("0x", "R5", "'0x'"),
        ("1.2.3.4.5", "R5", "four parts"),
        ("1.256.1.1", "R5", "overflows"),
        ("0x100000000", "R5", "overflows"),
        ("9" * 40, "R5", "overflows"),
        ("[127.0.0.1]", "R6", "brackets"),
        ("[::1", "R6", "']'"),
        ("[fe80::1%]", "R6", "zone"),
        ("1::2::3", "R6", "IPv6"),
        ("octopus.com:443", "R6", "IPv6"),
    ],
)
def test_canonical_host_rejects(raw: str, rule: str, words: str) -> None:
    with pytest.raises(HostError) as info:
        canonical_host(raw)
    assert info.value.rule == rule
    assert words in str(info.value)
    assert "\n" not in str(info.value)


# --- peer_from_url / peer_from_address -----------------------------------------------------


@pytest.mark.parametrize(
    ("url", "peer"),
    [
        ("https://octopus.com/", Peer("https", "octopus.com", 443, None)),
        ("HTTP://Octopus.com:8080/x", Peer("http", "octopus.com", 8080, None)),
        ("ftp://files.octopus.com/", Peer("ftp", "files.octopus.com", None, None)),
        ("wss://u:p@octopus.com", Peer("wss", "octopus.com", 443, None)),
        ("http://127.1:81", Peer("http", "127.0.0.1", 81, V4("127.0.0.1"))),
        ("https://[::1]:8443/", Peer("https", "::1", 8443, V6("::1"))),
        ("https://[::ffff:10.0.0.1]/", Peer("https", "10.0.0.1", 443, V4("10.0.0.1"))),
        ("https://octopus.com:/", Peer("https", "octopus.com", 443, None)),
        ("https://octopus.com?q", Peer("https", "octopus.com", 443, None)),
        ("https://octopus.com#f", Peer("https", "octopus.com", 443, None)),
    ],
)
def test_peer_from_url(url: str, peer: Peer) -> None:
    assert peer_from_url(url) == peer


def test_peer_from_url_caches_by_authority() -> None:
    first = peer_from_url("https://cache.octopus.com/a?b")
    assert peer_from_url("https://cache.octopus.com/other#x") is first
    assert peer_from_url("HTTPS://cache.octopus.com") == first


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        ("octopus.com", "R2"),
        ("mailto:a@octopus.com", "R2"),
        ("https:octopus.com", "R2"),
        (" https://octopus.com", "R2"),
        ("https://", "R2"),
        ("https://user@", "R2"),
        ("https://:443", "R2"),
        ("https://octopus.com:443:443", "R9"),
        ("https://octopus.com:99999999999999999999", "R9"),
        ("https://octopus.com:-1", "R9"),
        ("https://[::1]:x", "R9"),
        ("https://[::1]x", "R6"),
    ],
)
def test_peer_from_url_rejects(url: str, rule: str) -> None:
    with pytest.raises(HostError) as info:
        peer_from_url(url)
    assert info.value.rule == rule


@pytest.mark.parametrize(
    ("args", "peer"),
    [
        (("octopus.com",), Peer("", "octopus.com", None, None)),
        (("octopus.com", None, "HTTPS"), Peer("https", "octopus.com", 443, None)),
        (("OCTOPUS.com.", 25), Peer("", "octopus.com", 25, None)),
        (("fe80::1%eth0", 22), Peer("", "fe80::1", 22, V6("fe80::1"))),
        (("[::1]", 22), Peer("", "::1", 22, V6("::1"))),
        (("::ffff:127.0.0.1", 6379), Peer("", "127.0.0.1", 6379, V4("127.0.0.1"))),
    ],
)
def test_peer_from_address(args: tuple[str, int | None, str], peer: Peer) -> None:
    assert peer_from_address(*args) == peer


@pytest.mark.parametrize("port", [0, -1, 65536])
def test_peer_from_address_rejects_ports(port: int) -> None:
    with pytest.raises(HostError) as info:
        peer_from_address("octopus.com", port)
    assert info.value.rule == "R9"


# --- is_local ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("http://localhost/", True),
        ("http://LOCALHOST./", True),
        ("http://api.localhost:8000/", True),
        ("http://127.0.0.1/", True),
        ("http://127.1/", True),
        ("http://2130706433/", True),
        ("http://0x7f.0.0.2/", True),
        ("http://[::1]/", True),
        ("http://[::ffff:127.0.0.1]/", True),
        ("http://0.0.0.0/", True),
        ("http://[::]/", True),
        ("http://localhost.evil.com/", False),
        ("http://evillocalhost/", False),
        ("http://[::127.0.0.1]/", False),
        ("http://[64:ff9b::127.0.0.1]/", False),
        ("http://10.0.0.1/", False),
        ("https://octopus.com/", False),
    ],
)
def test_is_local(url: str, local: bool) -> None:
    assert is_local(peer_from_url(url)) is local


# --- HostPattern ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind", "host", "scheme", "port"),
    [
        ("octopus.com", "name", "octopus.com", "", None),
        ("Octopus.COM.", "name", "octopus.com", "", None),
        ("m\u00fcnchen.de", "name", "xn--mnchen-3ya.de", "", None),
        ("*.nuget.org", "wildcard", "nuget.org", "", None),
        ("*.NuGet.org:443", "wildcard", "nuget.org", "", 443),
        ("203.0.113.7", "ip", "203.0.113.7", "", None),
        ("0xcb.0.113.7", "ip", "203.0.113.7", "", None),
        ("2001:DB8::1", "ip", "2001:db8::1", "", None),
        ("[2001:db8::1]:443", "ip", "2001:db8::1", "", 443),
        ("[::ffff:203.0.113.7]", "ip", "203.0.113.7", "", None),
        ("10.0.0.0/8", "cidr", "10.0.0.0/8", "", None),
        ("012.0.0.0/8", "cidr", "10.0.0.0/8", "", None),
        ("10.0.0.0/8:22", "cidr", "10.0.0.0/8", "", 22),
        ("2001:db8::/32", "cidr", "2001:db8::/32", "", None),
        ("[2001:db8::/32]:443", "cidr", "2001:db8::/32", "", 443),
        ("::ffff:10.0.0.0/104", "cidr", "10.0.0.0/8", "", None),
        ("octopus.com:8080", "name", "octopus.com", "", 8080),
        ("https://library.octopus.com", "name", "library.octopus.com", "https", 443),
        ("HTTP://library.octopus.com/", "name", "library.octopus.com", "http", 80),
        ("https://library.octopus.com:8443", "name", "library.octopus.com", "https", 8443),
        ("wss://*.octopus.com", "wildcard", "octopus.com", "wss", 443),
        ("https://[::1]", "ip", "::1", "https", 443),
        ("ftp://files.octopus.com", "name", "files.octopus.com", "ftp", None),
    ],
)
def test_pattern_parse(text: str, kind: str, host: str, scheme: str, port: int | None) -> None:
    pattern = HostPattern.parse(text)
    assert (pattern.text, pattern.kind, pattern.host, pattern.scheme, pattern.port) == (
        text,
        kind,
        host,
        scheme,
        port,
    )
    assert str(pattern) == text
    assert (pattern.ip is not None) == (kind == "ip")
    assert (pattern.network is not None) == (kind == "cidr")


@pytest.mark.parametrize(
    ("text", "rule", "words"),
    [
        ("", "R7", "empty"),
        ("*", "R7", "first label"),
        ("*.", "R7", "first label"),
        ("*.*.octopus.com", "R7", "first label"),
        ("a*.octopus.com", "R7", "first label"),
        ("*octopus.com", "R7", "first label"),
        ("octopus.*", "R7", "first label"),
        ("*.10.0.0.1", "R8", "CIDR"),
        ("*.[::1]", "R8", "CIDR"),
        ("10.0.0.1/8", "R8", "did you mean 10.0.0.0/8"),
        ("10.0.0.0/33", "R8", "32 bits"),
        ("::/129", "R8", "128 bits"),
        ("10.0.0.0/x", "R8", "prefix length"),
        ("octopus.com/8", "R8", "not an IP address"),
        ("gg::/16", "R8", "IPv6"),
        (" octopus.com", "R3", "space"),
        ("octopus.com\\", "R3", "backslash"),
        ("octopus.com:", "R9", "empty"),
        ("octopus.com:0", "R9", "1-65535"),
        ("octopus.com:http", "R9", "decimal"),
        ("https://octopus.com/path", "R1", "path"),
        ("https://octopus.com?x", "R1", "path"),
        ("https://user@octopus.com", "R2", "userinfo"),
        ("https://10.0.0.0/8", "R1", "'/8'"),
        ("https://::1", "R6", "brackets"),
        ("1http://octopus.com", "R9", "scheme"),
        ("[127.0.0.1]", "R6", "IPv6"),
        ("[::1", "R6", "']'"),
        ("[::1]x", "R6", "after ']'"),
        ("stra\u00dfe.de", "R4", "IDNA2003"),
        ("evil.10", "R5", "'evil'"),
    ],
)
def test_pattern_parse_rejects(text: str, rule: str, words: str) -> None:
    with pytest.raises(HostError) as info:
        HostPattern.parse(text)
    message = str(info.value)
    assert info.value.rule == rule
    assert words in message
    assert message.startswith(f"invalid host pattern {text!r}")
    assert "a valid pattern is" in message
    assert "\n" not in message


def test_pattern_constructor_validates_and_compares_by_text() -> None:
    assert HostPattern("octopus.com") == HostPattern.parse("octopus.com")
    assert len({HostPattern("octopus.com"), HostPattern("octopus.com")}) == 1
    with pytest.raises(HostError):
        HostPattern("*")


@pytest.mark.parametrize(
    ("pattern", "peer", "host", "full"),
    [
        ("https://octopus.com", Peer("", "octopus.com", 443, None), True, True),
        ("https://octopus.com", Peer("", "octopus.com", 80, None), True, False),
        ("https://octopus.com", Peer("", "octopus.com", None, None), True, False),
        ("https://octopus.com", Peer("wss", "octopus.com", 443, None), True, False),
        ("octopus.com:443", Peer("", "octopus.com", None, None), True, False),
        ("octopus.com", Peer("", "octopus.com", None, None), True, True),
        ("*.octopus.com", Peer("", "octopus.com", None, None), False, False),
        ("10.0.0.0/8", Peer("", "10.9.9.9", 1, V4("10.9.9.9")), True, True),
        ("10.0.0.0/8", Peer("", "10.9.9.9", 1, None), False, False),
        ("10.9.9.9", Peer("", "10.9.9.9", 1, None), False, False),
        ("octopus.com", Peer("", "octopus.com", 1, V4("10.9.9.9")), False, False),
        ("::/0", Peer("", "10.9.9.9", 1, V4("10.9.9.9")), False, False),
        ("0.0.0.0/0", Peer("", "::1", 1, V6("::1")), False, False),
    ],
)
def test_pattern_matches_host_and_matches(pattern: str, peer: Peer, host: bool, full: bool) -> None:
    parsed = HostPattern.parse(pattern)
    assert parsed.matches_host(peer) is host
    assert parsed.matches(peer) is full


# --- PatternIndex --------------------------------------------------------------------------


def test_index_returns_every_match_in_insertion_order() -> None:
    index: PatternIndex[int] = PatternIndex()
    texts = [
        "*.octopus.com",
        "api.octopus.com",
        "*.api.octopus.com:443",
        "octopus.com",
        "https://api.octopus.com",
        "api.octopus.com:80",
        "*.com",
        "10.0.0.0/8",
    ]
    for number, text in enumerate(texts):
        index.add(HostPattern.parse(text), number)
    index.add(HostPattern.parse("api.octopus.com"), 99)
    assert len(index) == len(texts) + 1
    assert index.lookup(peer_from_url("https://api.octopus.com/")) == [0, 1, 4, 6, 99]
    assert index.lookup(peer_from_url("http://api.octopus.com/")) == [0, 1, 5, 6, 99]
    assert index.lookup(peer_from_url("https://v1.api.octopus.com/")) == [0, 2, 6]
    assert index.lookup(peer_from_url("https://octopus.com/")) == [3, 6]
    assert index.lookup(peer_from_url("https://octopus.org/")) == []
    dns = peer_from_address("api.octopus.com")
    assert index.lookup(dns) == [0, 1, 6, 99]
    assert index.lookup(dns, host_only=True) == [0, 1, 4, 5, 6, 99]


def test_index_ip_and_cidr_lookups() -> None:
    index: PatternIndex[str] = PatternIndex()
    for text in [
        "10.0.0.0/8",
        "10.1.0.0/16",
        "10.1.2.3",
        "10.1.2.0/24:443",
        "0.0.0.0/0",
        "2001:db8::/32",
        "[2001:db8::1]:443",
        "::/0",
        "10.1.2.3/32",
    ]:
        index.add(HostPattern.parse(text), text)
    assert index.lookup(peer_from_url("https://10.1.2.3/")) == [
        "10.0.0.0/8",
        "10.1.0.0/16",
        "10.1.2.3",
        "10.1.2.0/24:443",
        "0.0.0.0/0",
        "10.1.2.3/32",
    ]
    assert index.lookup(peer_from_url("http://0x0a.1.2.4/")) == [
        "10.0.0.0/8",
        "10.1.0.0/16",
        "0.0.0.0/0",
    ]
    assert index.lookup(peer_from_url("https://[2001:db8::1]/")) == [
        "2001:db8::/32",
        "[2001:db8::1]:443",
        "::/0",
    ]
    assert index.lookup(peer_from_url("https://[::ffff:10.1.2.3]:80/")) == [
        "10.0.0.0/8",
        "10.1.0.0/16",
        "10.1.2.3",
        "0.0.0.0/0",
        "10.1.2.3/32",
    ]
    assert index.lookup(peer_from_url("https://10.evil.com/")) == []


def test_empty_index() -> None:
    index: PatternIndex[object] = PatternIndex()
    assert len(index) == 0
    assert index.lookup(peer_from_url("https://octopus.com/")) == []
    assert index.lookup(peer_from_url("https://[::1]/")) == []


# --- properties ----------------------------------------------------------------------------

LABEL = st.from_regex(r"[a-z0-9_][a-z0-9_-]{0,9}", fullmatch=True)
WORD_LABEL = st.from_regex(r"[a-z][a-z-]{0,9}", fullmatch=True)  # never a number
NAME = st.builds(
    lambda labels, last: ".".join([*labels, last]), st.lists(LABEL, max_size=3), WORD_LABEL
)


def ipv4_notation(draw: st.DrawFn, number: int) -> str:
    """One of the many inet_aton spellings of ``number``."""
    count = draw(st.integers(1, 4))
    values = [(number >> shift) & 0xFF for shift in (24, 16, 8)[: count - 1]]
    values.append(number & ((1 << (8 * (5 - count))) - 1))
    parts = []
    for value in values:
        style = draw(st.sampled_from(["dec", "oct", "hex", "HEX"]))
        zeros = "0" * draw(st.integers(0, 2))
        if style == "dec":
            parts.append(str(value))
        elif style == "oct":
            parts.append("0" + zeros + format(value, "o"))
        else:
            digits = format(value, "x" if style == "hex" else "X")
            parts.append(draw(st.sampled_from(["0x", "0X"])) + zeros + digits)
    return ".".join(parts)


@st.composite
def ipv4_spellings(draw: st.DrawFn) -> tuple[int, str]:
    number = draw(st.integers(0, 2**32 - 1))
    return number, ipv4_notation(draw, number)


@st.composite
def raw_hosts(draw: st.DrawFn) -> str:
    return draw(
        st.one_of(
            NAME.map(lambda name: name.upper() if name[-1] in "aeiou" else name),
            NAME.map(lambda name: name + "."),
            ipv4_spellings().map(lambda pair: pair[1]),
            st.ip_addresses(v=6).map(str),
            st.ip_addresses(v=6).map(lambda ip: f"[{ip}]"),
            st.ip_addresses(v=4).map(lambda ip: f"::ffff:{ip}"),
            st.text(max_size=20),
            st.text(alphabet="aZ0x.%25fF\u00df\u3002\uff41-:[]", max_size=12),
        )
    )


@given(raw_hosts())
def test_canonical_host_is_idempotent(raw: str) -> None:
    try:
        canonical = canonical_host(raw)
    except HostError:
        return
    assert canonical_host(canonical) == canonical
    assert canonical.isascii()
    assert canonical == canonical.lower()
    assert not canonical.endswith(".")


@given(st.lists(LABEL, max_size=3), NAME, st.sampled_from(["", ".", "evil-", "x"]))
def test_wildcard_matches_only_names_below(prefix: list[str], suffix: str, glue: str) -> None:
    pattern = HostPattern.parse(f"*.{suffix}")
    host = ".".join(prefix) + glue + suffix if prefix else glue.strip(".") + suffix
    try:
        peer = peer_from_address(host)
    except HostError:
        return
    canonical_suffix = canonical_host(suffix)
    below = peer.host.endswith("." + canonical_suffix)
    assert pattern.matches(peer) is below
    if pattern.matches(peer):
        assert peer.host != canonical_suffix


@given(ipv4_spellings(), st.integers(0, 32))
def test_every_ipv4_notation_matches_address_and_network(
    spelled: tuple[int, str], prefix: int
) -> None:
    number, text = spelled
    address = V4(number)
    network = ipaddress.ip_network((address, prefix), strict=False)
    peer = peer_from_url(f"http://{text}/")
    assert peer.ip == address
    assert peer.host == str(address)
    assert HostPattern.parse(str(address)).matches(peer)
    assert HostPattern.parse(text).matches(peer)
    assert HostPattern.parse(str(network)).matches(peer)
    assert HostPattern.parse(f"[::ffff:{address}]").matches(peer)


AMBIGUOUS = st.sampled_from(
    ["\\", " ", "\x7f", *map(chr, range(0x20)), *map(chr, range(0x80, 0xA0))]
)
AUTHORITY_TEXT = st.text(
    alphabet=st.characters(blacklist_characters="/?#", blacklist_categories=("Cs",)), max_size=20
)


@given(AUTHORITY_TEXT, AMBIGUOUS, AUTHORITY_TEXT, st.sampled_from(["http", "https", "ws"]))
def test_ambiguous_authority_is_never_allowed(
    before: str, bad: str, after: str, scheme: str
) -> None:
    with pytest.raises(HostError):
        peer_from_url(f"{scheme}://{before}{bad}{after}/path")
    with pytest.raises(HostError):
        peer_from_address(before + bad + after, 443)
    with pytest.raises(HostError):
        HostPattern.parse(before + bad + after)


NAMES = ["a.com", "b.a.com", "c.b.a.com", "a.org", "com"]
IPS = ["10.0.0.1", "10.0.0.2", "10.1.0.1", "192.168.1.1", "::1", "2001:db8::1", "2001:db8:1::5"]


@st.composite
def patterns(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["name", "wildcard", "ip", "cidr"]))
    if kind == "name":
        host = draw(st.sampled_from(NAMES))
    elif kind == "wildcard":
        host = "*." + draw(st.sampled_from(NAMES))
    elif kind == "ip":
        host = draw(st.sampled_from(IPS))
    else:
        address = ipaddress.ip_address(draw(st.sampled_from(IPS)))
        prefix = draw(st.integers(0, address.max_prefixlen))
        host = str(ipaddress.ip_network((address, prefix), strict=False))
    port = draw(st.sampled_from([None, 80, 443]))
    scheme = draw(st.sampled_from(["", "", "http", "https"]))
    if "/" in host:
        scheme = ""  # after "://" a '/' starts the path
    if ":" in host and (scheme or port is not None):
        host = f"[{host}]"
    text = host if port is None else f"{host}:{port}"
    return f"{scheme}://{text}" if scheme else text


@st.composite
def peers(draw: st.DrawFn) -> Peer:
    host = draw(st.sampled_from(NAMES + IPS + ["x.b.a.com", "10.0.0.3", "::ffff:10.0.0.1"]))
    port = draw(st.sampled_from([None, 80, 443, 8080]))
    scheme = draw(st.sampled_from(["", "http", "https"]))
    return peer_from_address(host, port, scheme)


@given(st.lists(patterns(), max_size=30), st.lists(peers(), min_size=1, max_size=10))
def test_index_agrees_with_brute_force(texts: list[str], targets: list[Peer]) -> None:
    parsed = [HostPattern.parse(text) for text in texts]
    index: PatternIndex[int] = PatternIndex()
    for number, pattern in enumerate(parsed):
        index.add(pattern, number)
    assert len(index) == len(parsed)
    for peer in targets:
        expected = [n for n, pattern in enumerate(parsed) if pattern.matches(peer)]
        assert index.lookup(peer) == expected
        hosts = [n for n, pattern in enumerate(parsed) if pattern.matches_host(peer)]
        assert index.lookup(peer, host_only=True) == hosts


@given(st.text(max_size=30))
def test_peer_from_url_only_raises_host_error(url: str) -> None:
    try:
        peer = peer_from_url("https://" + url)
    except HostError:
        return
    assume(peer.host)
    assert peer.port is not None
    assert 0 < peer.port < 65536
    assert canonical_host(peer.host) == peer.host
