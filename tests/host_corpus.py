"""Destinations and patterns with the verdict rules R1-R10 (``pytest_outbound._hosts``) demand.

Plain data, importable by any test module (``from host_corpus import CASES``). A case's
``target`` is a URL, or a ``(host, port)`` socket address as a socket-level interceptor sees
it. ``verdict`` is ``"violation"`` when the target is rejected outright (``HostError``) or the
pattern does not admit it, ``"allowed"`` when the pattern admits it. ``rule`` is the rule the
case exercises; for a rejected target it is the rule the rejection cites.

Sources (``source``), all public:

- ``tsai``: Orange Tsai, "A New Era of SSRF - Exploiting URL Parser in Trending Programming
  Languages!", Black Hat USA 2017 (userinfo/fragment/backslash confusion, CR-LF and TAB
  injection, NUL truncation, Unicode look-alikes, multiple ports).
- ``whatwg``: the WHATWG URL Standard and its web-platform-tests ``urltestdata.json``
  (percent-decoded hosts, IPv4 "ends in a number" parsing, forbidden host code points,
  full-width characters, IPv6 forms).
- ``inet_aton``: the C resolver's ``inet_aton(3)`` notations (octal, hex, short forms, one
  32-bit number) as used to bypass naive IP block lists.
- ``idna``: IDNA2003 (RFC 3490) vs IDNA2008 (RFC 5891) / UTS #46 deviations and mappings.
- ``rfc``: RFC 3986 (authority, port), RFC 4291 (IPv4-mapped / -compatible), RFC 6052
  (NAT64), RFC 6874 (zone ids).
- ``issue``: the cases the project's issue spells out.
- ``rules``: plain consequences of R1-R10.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

Verdict = Literal["allowed", "violation"]


class HostCase(NamedTuple):
    target: str | tuple[str, int]
    pattern: str
    verdict: Verdict
    rule: str
    source: str = "rules"

    @property
    def is_url(self) -> bool:
        return isinstance(self.target, str)

    @property
    def id(self) -> str:
        """A readable, ASCII test id."""
        target = (
            self.target
            if isinstance(self.target, str)
            else f"{self.target[0]} port {self.target[1]}"
        )
        text = f"{self.rule}-{target}~{self.pattern}-{self.verdict}"
        return text.encode("ascii", "backslashreplace").decode("ascii")


# "octopus" in full-width letters (U+FF4F...) and in circled letters (U+24DE...).
FULLWIDTH_OCTOPUS = "\uff4f\uff43\uff54\uff4f\uff50\uff55\uff53"
CIRCLED_OCTOPUS = "\u24de\u24d2\u24e3\u24de\u24df\u24e4\u24e2"

A: Verdict = "allowed"
V: Verdict = "violation"

CASES: list[HostCase] = [
    # --- R1: only scheme and authority decide; path, query, fragment never do -------------
    HostCase("https://octopus.com/p?next=https://evil.com#evil.com", "octopus.com", A, "R1"),
    HostCase("https://evil.com/?u=https://octopus.com/", "octopus.com", V, "R1"),
    HostCase("https://evil.com/octopus.com", "octopus.com", V, "R1"),
    HostCase("https://evil.com#@octopus.com", "octopus.com", V, "R1", "tsai"),
    HostCase("https://octopus.com#@evil.com", "octopus.com", A, "R1", "tsai"),
    HostCase("https://octopus.com?@evil.com/", "octopus.com", A, "R1", "tsai"),
    HostCase("https://evil.com?@octopus.com/", "octopus.com", V, "R1", "tsai"),
    HostCase("https://octopus.com/\\@evil.com", "octopus.com", A, "R1", "tsai"),
    HostCase("mailto:admin@octopus.com", "octopus.com", V, "R2"),
    HostCase("https:octopus.com", "octopus.com", V, "R2", "whatwg"),
    HostCase("https:/octopus.com", "octopus.com", V, "R2", "whatwg"),
    HostCase("https:\\\\octopus.com", "octopus.com", V, "R2", "whatwg"),
    HostCase("https:///octopus.com", "octopus.com", V, "R2", "whatwg"),
    HostCase("//octopus.com/", "octopus.com", V, "R2"),
    HostCase("octopus.com:443", "octopus.com", V, "R2"),
    # --- R2: userinfo is ignored, the host follows the last '@' ------------------------------
    HostCase("https://octopus.com@evil.com/", "octopus.com", V, "R2", "issue"),
    HostCase("https://user:pass@octopus.com/", "octopus.com", A, "R2"),
    HostCase("https://evil.com@octopus.com/", "octopus.com", A, "R2"),
    HostCase("https://octopus.com:443@evil.com/", "octopus.com", V, "R2", "tsai"),
    HostCase("http://foo@evil.com:80@octopus.com/", "octopus.com", A, "R2", "tsai"),
    HostCase("http://foo@octopus.com:80@evil.com/", "octopus.com", V, "R2", "tsai"),
    HostCase("https://octopus.com&@evil.com#@octopus.com/", "octopus.com", V, "R2", "tsai"),
    HostCase("https://@octopus.com/", "octopus.com", A, "R2", "whatwg"),
    HostCase("https://octopus.com@/", "octopus.com", V, "R2", "whatwg"),
    HostCase("https://%40evil.com@octopus.com/", "octopus.com", A, "R2"),
    HostCase("https://evil.com%2f@octopus.com/", "octopus.com", A, "R2"),
    HostCase("https://octopus.com%40evil.com/", "octopus.com", V, "R4", "whatwg"),
    # --- R3: backslash, control characters, space, DEL -----------------------------------
    HostCase("https://evil.com\\@octopus.com/", "octopus.com", V, "R3", "issue"),
    HostCase("https://octopus.com\\@evil.com/", "octopus.com", V, "R3", "tsai"),
    HostCase("https://evil.com\\.octopus.com/", "*.octopus.com", V, "R3", "tsai"),
    HostCase("http://1.1.1.1 &@2.2.2.2# @3.3.3.3/", "3.3.3.3", V, "R3", "tsai"),
    HostCase("http://127.0.0.1\tfoo.octopus.com/", "*.octopus.com", V, "R3", "tsai"),
    HostCase("https://octo\npus.com/", "octopus.com", V, "R3", "whatwg"),
    HostCase("https://octopus.com\r\nX-Injected: 1/", "octopus.com", V, "R3", "tsai"),
    HostCase("https://octopus.com\x00.evil.com/", "octopus.com", V, "R3", "tsai"),
    HostCase("https://octopus.com .evil.com/", "octopus.com", V, "R3"),
    HostCase("https://octopus.com\x7f/", "octopus.com", V, "R3"),
    HostCase("https://octopus.com\x85/", "octopus.com", V, "R3"),
    HostCase("http://octopus.com:80\t/", "octopus.com", V, "R3"),
    HostCase("https://octopus.com%00.evil.com/", "octopus.com", V, "R3", "tsai"),
    HostCase("https://evil.com%5c.octopus.com/", "*.octopus.com", V, "R3"),
    HostCase("https://octopus.com%0d%0a/", "octopus.com", V, "R3", "tsai"),
    HostCase("https://octopus.com%20/", "octopus.com", V, "R3", "whatwg"),
    HostCase("https://evil.com\uff3c.octopus.com/", "*.octopus.com", V, "R3", "whatwg"),
    HostCase("https://octopus.com\u3000/", "octopus.com", V, "R3", "whatwg"),
    # --- R4: canonical names -------------------------------------------------------------
    HostCase("https://OCTOPUS.COM./", "octopus.com", A, "R4", "issue"),
    HostCase("https://Octopus.Com/", "octopus.com", A, "R4"),
    HostCase("https://octopus.com/", "OCTOPUS.COM.", A, "R4"),
    HostCase("https://octopus.com../", "octopus.com", V, "R4", "whatwg"),
    HostCase("https://.octopus.com/", "octopus.com", V, "R4"),
    HostCase("https://octopus..com/", "octopus.com", V, "R4"),
    HostCase("https://%6fctopus.com/", "octopus.com", A, "R4", "issue"),
    HostCase("https://%4F%43%54%4F%50%55%53.com/", "octopus.com", A, "R4", "whatwg"),
    HostCase("https://octopus%2ecom/", "octopus.com", A, "R4", "whatwg"),
    HostCase("https://%256fctopus.com/", "octopus.com", V, "R4"),
    HostCase("https://%zzoctopus.com/", "octopus.com", V, "R4", "whatwg"),
    HostCase("https://octopus.com%/", "octopus.com", V, "R4", "whatwg"),
    HostCase("https://%c3octopus.com/", "octopus.com", V, "R4", "whatwg"),
    HostCase("https://octopus.com%2f.evil.com/", "octopus.com", V, "R4", "whatwg"),
    HostCase(f"https://{FULLWIDTH_OCTOPUS}.com/", "octopus.com", A, "R4", "issue"),
    HostCase("https://OCTOPUS.\uff23\uff2f\uff2d/", "octopus.com", A, "R4", "whatwg"),
    HostCase(f"https://{CIRCLED_OCTOPUS}.com/", "octopus.com", A, "R4", "tsai"),
    HostCase("https://octopus\u3002com/", "octopus.com", A, "R4", "whatwg"),
    HostCase("https://octopus\uff0ecom/", "octopus.com", A, "R4", "whatwg"),
    HostCase("https://octopus\uff61com/", "octopus.com", A, "R4", "whatwg"),
    HostCase("https://octo\u00adpus.com/", "octopus.com", A, "R4", "whatwg"),
    HostCase("https://octo\u200bpus.com/", "octopus.com", A, "R4", "idna"),
    HostCase("https://octopus.com\ufeff/", "octopus.com", A, "R4", "idna"),
    HostCase("https://\uff05\uff16\uff46ctopus.com/", "octopus.com", V, "R4", "whatwg"),
    HostCase("https://evil.com\uff0f.octopus.com/", "*.octopus.com", V, "R4", "whatwg"),
    HostCase("https://evil.com\uff20octopus.com/", "octopus.com", V, "R4", "whatwg"),
    HostCase("https://octopus.com\uff1a443/", "octopus.com", V, "R4", "whatwg"),
    HostCase("https://stra\u00dfe.de/", "xn--strae-oqa.de", V, "R4", "idna"),
    HostCase("https://stra\u00dfe.de/", "strasse.de", V, "R4", "idna"),
    HostCase("https://xn--strae-oqa.de/", "xn--strae-oqa.de", A, "R4", "idna"),
    HostCase("https://\u03c2.octopus.com/", "*.octopus.com", V, "R4", "idna"),
    HostCase("https://a\u200cb.octopus.com/", "*.octopus.com", V, "R4", "idna"),
    HostCase("https://m\u00fcnchen.de/", "xn--mnchen-3ya.de", A, "R4", "idna"),
    HostCase("https://M\u00dcNCHEN.de/", "xn--mnchen-3ya.de", A, "R4", "idna"),
    HostCase("https://xn--mnchen-3ya.de/", "m\u00fcnchen.de", A, "R4", "idna"),
    HostCase("https://m%C3%BCnchen.de/", "m\u00fcnchen.de", A, "R4", "whatwg"),
    HostCase("https://\u2603.net/", "xn--n3h.net", V, "R4", "idna"),
    HostCase("https://xn--n3h.net/", "xn--n3h.net", A, "R4", "idna"),
    HostCase("https://*.octopus.com/", "*.octopus.com", V, "R4"),
    HostCase("https://oc!topus.com/", "octopus.com", V, "R4"),
    HostCase("https://foo_bar.octopus.com/", "*.octopus.com", A, "R4"),
    HostCase("https://r3---sn-abc.googlevideo.com/", "*.googlevideo.com", A, "R4"),
    HostCase("https://" + "a" * 63 + ".octopus.com/", "*.octopus.com", A, "R4"),
    HostCase("https://" + "a" * 64 + ".octopus.com/", "*.octopus.com", V, "R4"),
    # --- R5: IPv4 in every inet_aton notation --------------------------------------------
    HostCase("http://0x0a.1.2.3/", "10.0.0.0/8", A, "R5", "issue"),
    HostCase("http://2130706433/", "127.0.0.1", A, "R5", "issue"),
    HostCase("http://0x7f.1/", "127.0.0.1", A, "R5", "issue"),
    HostCase("http://0177.0.0.1/", "127.0.0.1", A, "R5", "issue"),
    HostCase("http://127.1/", "127.0.0.1", A, "R5", "inet_aton"),
    HostCase("http://127.0.1/", "127.0.0.1", A, "R5", "inet_aton"),
    HostCase("http://0x7f000001/", "127.0.0.1", A, "R5", "inet_aton"),
    HostCase("http://017700000001/", "127.0.0.1", A, "R5", "inet_aton"),
    HostCase("http://0X7F.0.0.1/", "127.0.0.1", A, "R5", "inet_aton"),
    HostCase("http://0177.0x0.00.0001/", "127.0.0.1", A, "R5", "inet_aton"),
    HostCase("http://127.000.000.001/", "127.0.0.1", A, "R5", "inet_aton"),
    HostCase("http://127.0.0.1./", "127.0.0.1", A, "R5", "whatwg"),
    HostCase("http://0/", "0.0.0.0", A, "R5", "inet_aton"),
    # WHATWG reads "0x" as 0, but every Python client passes it to C, whose inet_aton
    # refuses it and resolves it as a name: not an address the plugin can vouch for
    HostCase("http://0x/", "0.0.0.0", V, "R5", "inet_aton"),
    HostCase("http://4294967295/", "255.255.255.255", A, "R5", "whatwg"),
    HostCase("http://1.0xffffff/", "1.255.255.255", A, "R5", "inet_aton"),
    HostCase("http://%30%78%63%30%2e%30%32%35%30.01/", "192.168.0.1", A, "R5", "whatwg"),
    HostCase("http://\uff11\uff12\uff17.\uff10.\uff10.\uff11/", "127.0.0.1", A, "R5", "whatwg"),
    HostCase("http://0x7f.1/", "0177.0.0.1", A, "R5", "inet_aton"),
    HostCase("http://4294967296/", "0.0.0.0/0", V, "R5", "whatwg"),
    HostCase("http://0xffffffff1/", "0.0.0.0/0", V, "R5", "whatwg"),
    HostCase("http://256.0.0.1/", "0.0.0.0/0", V, "R5", "whatwg"),
    HostCase("http://1.0x1000000/", "0.0.0.0/0", V, "R5", "inet_aton"),
    HostCase("http://1.2.3.4.5/", "0.0.0.0/0", V, "R5", "whatwg"),
    HostCase("http://08.0.0.1/", "0.0.0.0/0", V, "R5", "inet_aton"),
    HostCase("http://foo.09/", "0.0.0.0/0", V, "R5", "whatwg"),
    HostCase("http://evil.10/", "0.0.0.0/0", V, "R5", "whatwg"),
    HostCase("http://0..0x300/", "0.0.0.0/0", V, "R5", "whatwg"),
    HostCase("http://0.0.0.0/", "127.0.0.1", V, "R5"),
    # --- R6: IPv6 -----------------------------------------------------------------------
    HostCase("http://[::ffff:127.0.0.1]/", "127.0.0.1", A, "R6", "rfc"),
    HostCase("http://[::ffff:7f00:1]/", "127.0.0.0/8", A, "R6", "rfc"),
    HostCase("http://[::ffff:10.1.2.3]/", "10.0.0.0/8", A, "R6", "rfc"),
    HostCase("http://[0:0:0:0:0:ffff:0a01:0203]/", "10.1.2.3", A, "R6", "rfc"),
    HostCase("http://[64:ff9b::10.1.2.3]/", "10.0.0.0/8", V, "R6", "rfc"),
    HostCase("http://[64:ff9b::10.1.2.3]/", "64:ff9b::/96", A, "R6", "rfc"),
    HostCase("http://[::10.1.2.3]/", "10.0.0.0/8", V, "R6", "rfc"),
    HostCase("http://[::10.1.2.3]/", "::a01:203", A, "R6", "rfc"),
    HostCase("http://[::1]/", "::1", A, "R6"),
    HostCase("http://[0:0:0:0:0:0:0:1]/", "::1", A, "R6", "whatwg"),
    HostCase("http://[2001:DB8::1]/", "2001:db8::1", A, "R6"),
    HostCase("http://[fe80::1%25eth0]/", "fe80::1", A, "R6", "rfc"),
    HostCase("http://[fe80::1%eth0]:8080/", "fe80::/10", A, "R6", "rfc"),
    HostCase("http://[127.0.0.1]/", "127.0.0.1", V, "R6", "whatwg"),
    HostCase("http://[::ffff:0127.0.0.1]/", "127.0.0.1", V, "R6", "whatwg"),
    HostCase("http://[1::2::3]/", "::/0", V, "R6", "whatwg"),
    HostCase("http://[::1/", "::1", V, "R6"),
    HostCase("http://[::1]x/", "::1", V, "R6"),
    HostCase("http://::1/", "::1", V, "R9"),
    # --- R7: exact names, wildcards, never a substring -----------------------------------
    HostCase("https://octopus.com/", "octopus.com", A, "R7"),
    HostCase("https://www.octopus.com/", "octopus.com", V, "R7", "issue"),
    HostCase("https://evil-octopus.com/", "octopus.com", V, "R7", "issue"),
    HostCase("https://xoctopus.com/", "octopus.com", V, "R7"),
    HostCase("https://octopus.com.evil.com/", "octopus.com", V, "R7"),
    HostCase("https://nuget.org/", "*.nuget.org", V, "R7", "issue"),
    HostCase("https://a.b.c.nuget.org/", "*.nuget.org", A, "R7", "issue"),
    HostCase("https://api.nuget.org/", "*.nuget.org", A, "R7"),
    HostCase("https://API.NuGet.org./", "*.nuget.org", A, "R7"),
    HostCase("https://evilnuget.org/", "*.nuget.org", V, "R7"),
    HostCase("https://nuget.org.evil.com/", "*.nuget.org", V, "R7"),
    HostCase("https://a.nuget.org.evil.com/", "*.nuget.org", V, "R7"),
    # --- R8: IP and CIDR patterns, no reverse DNS -----------------------------------------
    HostCase("http://10.evil.com/", "10.0.0.0/8", V, "R8", "issue"),
    HostCase("http://127.0.0.1/", "localhost", V, "R8"),
    HostCase("http://localhost/", "127.0.0.1", V, "R8"),
    HostCase("http://10.1.2.3/", "10.1.2.3", A, "R8"),
    HostCase("http://10.1.2.3/", "10.1.2.4", V, "R8"),
    HostCase("http://192.168.0.1/", "10.0.0.0/8", V, "R8"),
    HostCase("http://[::ffff:10.1.2.3]/", "::ffff:10.1.2.3", A, "R8", "rfc"),
    HostCase("http://10.1.2.3/", "::ffff:10.0.0.0/104", A, "R8", "rfc"),
    HostCase("http://[::1]/", "127.0.0.0/8", V, "R8"),
    HostCase("http://127.0.0.1/", "::/0", V, "R8"),
    HostCase("https://1.2.3.4.nip.io/", "1.2.3.4", V, "R8"),
    HostCase("http://0x7f.1.evil.com/", "127.0.0.0/8", V, "R8", "inet_aton"),
    HostCase("http://127.0.0.1x/", "127.0.0.1", V, "R8", "whatwg"),
    # --- R9: ports and schemes -----------------------------------------------------------
    HostCase("http://library.octopus.com/", "https://library.octopus.com", V, "R9", "issue"),
    HostCase("https://library.octopus.com/", "https://library.octopus.com", A, "R9"),
    HostCase("HTTPS://library.octopus.com/", "https://library.octopus.com", A, "R9", "rfc"),
    HostCase("https://library.octopus.com:443/", "https://library.octopus.com", A, "R9"),
    HostCase("https://library.octopus.com:8443/", "https://library.octopus.com", V, "R9"),
    HostCase("https://library.octopus.com:8443/", "https://library.octopus.com:8443", A, "R9"),
    HostCase("http://library.octopus.com:443/", "https://library.octopus.com", V, "R9"),
    HostCase("wss://library.octopus.com/", "https://library.octopus.com", V, "R9"),
    HostCase("https://octopus.com:8443/", "octopus.com", A, "R9"),
    HostCase("https://octopus.com/", "octopus.com:443", A, "R9"),
    HostCase("http://octopus.com/", "octopus.com:443", V, "R9"),
    HostCase("ws://octopus.com/", "octopus.com:80", A, "R9"),
    HostCase("https://octopus.com:0443/", "octopus.com:443", A, "R9", "whatwg"),
    HostCase("https://octopus.com:/", "octopus.com:443", A, "R9", "rfc"),
    HostCase("https://octopus.com:0/", "octopus.com", V, "R9"),
    HostCase("https://octopus.com:65536/", "octopus.com", V, "R9", "whatwg"),
    HostCase("https://octopus.com:0x1bb/", "octopus.com", V, "R9"),
    HostCase("https://octopus.com:+443/", "octopus.com", V, "R9"),
    HostCase("https://octopus.com:443:443/", "octopus.com", V, "R9", "tsai"),
    HostCase("http://127.0.0.1:11211:80/", "127.0.0.1", V, "R9", "tsai"),
    HostCase("https://octopus.com:\uff14\uff14\uff13/", "octopus.com", V, "R9", "whatwg"),
    HostCase("https://[2001:db8::1]:8443/", "[2001:db8::1]:8443", A, "R9"),
    HostCase("https://[2001:db8::1]/", "[2001:db8::1]:8443", V, "R9"),
    HostCase("https://octopus.com/", "https://*.octopus.com", V, "R9"),
    HostCase("https://cdn.octopus.com/", "https://*.octopus.com", A, "R9"),
    # --- socket-level addresses (scheme unknown: judged by port) ------------------------
    HostCase(("octopus.com", 443), "https://octopus.com", A, "R9"),
    HostCase(("octopus.com", 80), "https://octopus.com", V, "R9"),
    HostCase(("octopus.com.", 443), "octopus.com", A, "R4"),
    HostCase(("127.1", 6379), "127.0.0.1:6379", A, "R5", "inet_aton"),
    HostCase(("::ffff:10.1.2.3", 443), "10.0.0.0/8:443", A, "R6", "rfc"),
    HostCase(("fe80::1%eth0", 22), "[fe80::1]:22", A, "R6", "rfc"),
    HostCase(("2001:db8::1", 443), "[2001:db8::1]:443", A, "R9"),
    HostCase(("2001:db8::1", 443), "2001:db8::1:443", V, "R9"),
    HostCase(("octopus.com\\", 443), "octopus.com", V, "R3"),
    # --- R10: each hop on its own --------------------------------------------------------
    HostCase("https://octopus.com/go?to=https://evil.com/", "octopus.com", A, "R10"),
    HostCase("https://evil.com/", "octopus.com", V, "R10"),
]
