"""Sensitive values (SPEC §5.3): this machine's identity, and finding values in a request."""

from __future__ import annotations

import base64
import gzip
import json
import socket
import uuid
import zlib
from collections.abc import Sequence
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_outbound import _sensitive
from pytest_outbound._sensitive import (
    COMMON_WORDS,
    SensitiveHit,
    SensitiveScanner,
    SensitiveValue,
    machine_values,
    redact,
)

HOST = SensitiveValue("hostname", "build-07")
HOME = SensitiveValue("home", "/home/alice")
USER = SensitiveValue("user", "alice")
IP = SensitiveValue("ip", "10.1.2.3")
IP6 = SensitiveValue("ip", "2001:db8::7")
MAC = SensitiveValue("mac", "02:fc:00:aa:bb:01")

SCANNER = SensitiveScanner([HOST, HOME, USER, IP, IP6, MAC])


def scan(
    scanner: SensitiveScanner = SCANNER,
    *,
    url: str = "https://api.example.com/v1/check",
    headers: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
) -> list[SensitiveHit]:
    return scanner.scan(url=url, headers=headers, body=body)


def where(hits: list[SensitiveHit]) -> list[tuple[str, str, str]]:
    return [(h.kind, h.where, h.encoding) for h in hits]


# --- found -------------------------------------------------------------------------------------


def test_nothing_found_in_an_ordinary_request() -> None:
    hits = scan(
        headers=[("User-Agent", "agent/1.0"), ("Accept", "*/*")],
        body=b'{"version": "2024.1.3", "id": "c0ffee00-1234-4abc-8def-0123456789ab"}',
    )
    assert hits == []


def test_hostname_raw_in_the_url() -> None:
    hits = scan(url="https://api.example.com/v1/check?host=build-07")
    assert hits == [SensitiveHit("hostname", "url", "raw", "bu…(8 chars)")]


def test_hostname_inside_a_user_agent() -> None:
    hits = scan(headers=[("Accept", "*/*"), ("User-Agent", "agent/1.0 (Linux; BUILD-07)")])
    assert where(hits) == [("hostname", "header:user-agent", "uppercase")]


def test_hostname_in_any_letter_case() -> None:
    scanner = SensitiveScanner([SensitiveValue("hostname", "Build-07")])
    assert where(scan(scanner, body=b"build-07")) == [("hostname", "body", "lowercase")]
    assert where(scan(scanner, body=b"bUILD-07")) == [("hostname", "body", "mixed-case")]
    assert where(scan(scanner, body=b"Build-07")) == [("hostname", "body", "raw")]


def test_hostname_in_another_letter_case_inside_base64() -> None:
    """A name matched in any letter case is found base64-encoded in any case it is sent in."""
    scanner = SensitiveScanner([SensitiveValue("hostname", "Build-Agent-07")])
    for sent in (b"build-agent-07", b"BUILD-AGENT-07", b"Build-Agent-07"):
        body = b"id=" + base64.b64encode(b"host:" + sent)
        assert where(scan(scanner, body=body)) == [("hostname", "body", "base64")]


def test_hostname_inside_a_base64_encoded_json_value_in_the_body() -> None:
    inner = json.dumps({"machine": {"name": "build-07", "cores": 8}}).encode()
    body = json.dumps({"telemetry": base64.b64encode(inner).decode()}).encode()
    assert where(scan(body=body)) == [("hostname", "body", "base64")]


def test_a_value_in_urlsafe_base64_in_a_header() -> None:
    scanner = SensitiveScanner([SensitiveValue("token", "??>>??>>??>>")])
    token = base64.urlsafe_b64encode(b"\x01t=??>>??>>??>>;").decode()
    assert "-" in token
    assert "_" in token
    hits = scan(scanner, headers=[("X-Client", token)])
    assert where(hits) == [("token", "header:x-client", "base64url")]


@given(prefix=st.binary(max_size=7), suffix=st.binary(max_size=7), urlsafe=st.booleans())
def test_base64_found_at_every_alignment(prefix: bytes, suffix: bytes, urlsafe: bool) -> None:
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    body = encode(prefix + b"build-07" + suffix)
    assert [h.kind for h in scan(body=body)] == ["hostname"]


def test_home_percent_encoded_in_the_url_path() -> None:
    hits = scan(url="https://api.example.com/v1/report/" + quote("/home/alice/x", safe=""))
    assert where(hits) == [("home", "url", "percent"), ("user", "url", "raw")]


def test_percent_encoding_with_plus_for_space() -> None:
    scanner = SensitiveScanner([SensitiveValue("home", "/Users/Jane Doe")])
    url = "https://api.example.com/?p=" + quote_plus("/Users/Jane Doe/proj")
    assert where(scan(scanner, url=url)) == [("home", "url", "percent")]
    body = ("p=" + quote("/Users/Jane Doe/proj", safe="")).encode()
    assert where(scan(scanner, body=body)) == [("home", "body", "percent")]


def test_json_escaped_paths() -> None:
    scanner = SensitiveScanner([SensitiveValue("home", "C:\\Users\\alice")])
    body = json.dumps({"cwd": "C:\\Users\\alice\\proj"}).encode()
    assert where(scan(scanner, body=body)) == [("home", "body", "json")]
    assert where(scan(body=b'{"cwd": "\\/home\\/alice\\/proj"}')) == [
        ("home", "body", "json"),
        ("user", "body", "raw"),
    ]


@pytest.mark.parametrize(
    ("encoding", "compress", "label"),
    [
        ("gzip", gzip.compress, "gzip"),
        ("deflate", zlib.compress, "deflate"),
        ("gzip, deflate", lambda b: zlib.compress(gzip.compress(b)), "gzip+deflate"),
    ],
)
def test_hostname_inside_a_compressed_body(encoding: str, compress: object, label: str) -> None:
    assert callable(compress)
    body = compress(b'{"host": "build-07"}')
    hits = scan(headers=[("Content-Encoding", encoding)], body=body)
    assert where(hits) == [("hostname", "body", label)]


def test_base64_inside_a_gzip_body() -> None:
    body = gzip.compress(base64.b64encode(b"xx build-07 yy"))
    hits = scan(headers=[("content-encoding", "gzip")], body=body)
    assert where(hits) == [("hostname", "body", "gzip+base64")]


def test_a_truncated_gzip_body_is_still_scanned() -> None:
    payload = b"build-07 " + bytes(range(256)) * 200
    body = gzip.compress(payload)[:-100]
    hits = scan(headers=[("Content-Encoding", "gzip")], body=body)
    assert where(hits) == [("hostname", "body", "gzip")]


def test_a_body_that_lies_about_its_encoding_is_scanned_raw() -> None:
    hits = scan(headers=[("Content-Encoding", "gzip")], body=b"plain build-07")
    assert where(hits) == [("hostname", "body", "raw")]


def test_ip_and_mac_addresses() -> None:
    body = b'{"addr": "10.1.2.3", "v6": "[2001:DB8::7]:443", "mac": "02:FC:00:AA:BB:01"}'
    assert where(scan(body=body)) == [
        ("ip", "body", "raw"),
        ("mac", "body", "uppercase"),
    ]


@pytest.mark.parametrize(
    "text",
    ["10.1.2.30", "110.1.2.3", "10.1.2.3.4", "1.10.1.2.3", "2001:db8::77", "2001:db8::7:1"],
)
def test_an_ip_address_inside_a_longer_one_is_not_a_hit(text: str) -> None:
    assert scan(body=text.encode()) == []


@pytest.mark.parametrize("text", ["10.1.2.3", "ip=10.1.2.3.", "[2001:db8::7]", "x 2001:db8::7"])
def test_an_ip_address_standing_alone_is_a_hit(text: str) -> None:
    assert [h.kind for h in scan(body=text.encode())] == ["ip"]


def test_home_is_matched_exactly() -> None:
    scanner = SensitiveScanner([HOME])
    assert scan(scanner, body=b"/HOME/ALICE") == []
    assert scan(scanner, body=b"/home/Alice") == []


def test_at_most_one_hit_per_kind_in_the_order_given() -> None:
    hits = scan(
        url="https://api.example.com/?mac=02fc00aabb01&h=build-07",
        headers=[("X-Host", "build-07"), ("X-Ip", "10.1.2.3")],
        body=b"build-07 /home/alice 10.1.2.3",
    )
    assert where(hits) == [
        ("hostname", "url", "raw"),
        ("home", "body", "raw"),
        ("user", "body", "raw"),
        ("ip", "header:x-ip", "raw"),
    ]


def test_overlapping_values_are_both_found() -> None:
    scanner = SensitiveScanner(
        [
            SensitiveValue("fqdn", "build-07.corp.example"),
            SensitiveValue("hostname", "build-07"),
            SensitiveValue("token", "corp.example.secret"),
        ]
    )
    hits = scan(scanner, body=b"x=build-07.corp.example.secret")
    assert [h.kind for h in hits] == ["fqdn", "hostname", "token"]


def test_user_given_values_are_matched_exactly() -> None:
    scanner = SensitiveScanner([SensitiveValue("license-key", "AbCd-1234-XyZ")])
    assert where(scan(scanner, url="https://x.example/?k=AbCd-1234-XyZ")) == [
        ("license-key", "url", "raw")
    ]
    assert scan(scanner, url="https://x.example/?k=abcd-1234-xyz") == []


# --- dropped values ------------------------------------------------------------------------------


def test_short_values_are_dropped() -> None:
    scanner = SensitiveScanner([SensitiveValue("hostname", "vm"), SensitiveValue("user", "bob")])
    assert not scanner
    assert scan(scanner, url="https://vm.example/bob") == []
    assert SensitiveScanner([SensitiveValue("user", "bob")], min_length=3)


def test_common_words_are_dropped() -> None:
    values = [
        SensitiveValue("user", "root"),
        SensitiveValue("user", "Runner"),
        SensitiveValue("hostname", "localhost"),
        SensitiveValue("home", "/root"),
    ]
    scanner = SensitiveScanner(values)
    assert not scanner
    assert scan(scanner, url="https://x.example/root/runner/localhost") == []
    assert SensitiveScanner(values, ignore=())


def test_common_words_cover_ci_defaults() -> None:
    for word in ("root", "runner", "localhost", "ubuntu", "admin", "user", "test", "/root"):
        assert word in COMMON_WORDS


def test_a_custom_ignore_list() -> None:
    scanner = SensitiveScanner([HOST, USER], ignore={"ALICE"})
    assert [v.kind for v in scanner.values] == ["hostname"]


def test_duplicates_are_dropped() -> None:
    scanner = SensitiveScanner([HOST, HOST, USER])
    assert scanner.values == (HOST, USER)


# --- redaction ---------------------------------------------------------------------------------


def test_redact() -> None:
    assert redact("build-01") == "bu…(8 chars)"
    assert redact("abcd") == "a…(4 chars)"
    assert redact("z") == "…(1 char)"
    assert redact("a") == "…1"  # "…(1 char)" would show the whole of "a"
    assert redact("") == ""


@given(st.text(min_size=1))
def test_redaction_never_contains_the_whole_value(value: str) -> None:
    assert value not in redact(value)


@given(st.text(alphabet=st.characters(codec="ascii"), min_size=4, max_size=30))
def test_hits_never_show_the_whole_value(value: str) -> None:
    scanner = SensitiveScanner([SensitiveValue("secret", value)], ignore=())
    for hit in scanner.scan(url="https://x.example/", headers=[], body=value.encode()):
        assert value not in hit.redacted
        assert hit.kind == "secret"  # the other fields name where, never what
        assert hit.where in ("url", "body")  # "exam" is in the URL's x.example, for one


# --- this machine ------------------------------------------------------------------------------


def test_machine_values_include_the_hostname() -> None:
    values = machine_values()
    assert all(isinstance(v, SensitiveValue) for v in values)
    assert len(set(values)) == len(values)
    hostname = socket.gethostname()
    if hostname and hostname.lower() not in COMMON_WORDS:
        assert SensitiveValue("hostname", hostname) in values
    for value in values:
        if value.kind == "ip":
            assert not value.value.startswith(("127.", "::1"))
            assert value.value not in ("0.0.0.0", "::")


def test_machine_values_never_raise(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> object:
        raise OSError("no")

    for name in ("gethostname", "getfqdn", "getaddrinfo", "socket"):
        monkeypatch.setattr(socket, name, broken)
    monkeypatch.setattr("getpass.getuser", broken)
    monkeypatch.setattr("os.path.expanduser", broken)
    monkeypatch.setattr(uuid, "getnode", broken)
    assert machine_values() == []


def test_machine_values_send_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[str] = []
    real = socket.socket

    class Recording(real):  # type: ignore[misc,valid-type]
        def send(self, *args: object, **kwargs: object) -> int:
            sent.append("send")
            return 0

        def sendto(self, *args: object, **kwargs: object) -> int:
            sent.append("sendto")
            return 0

        def sendall(self, *args: object, **kwargs: object) -> None:
            sent.append("sendall")

    monkeypatch.setattr(socket, "socket", Recording)
    machine_values()
    assert sent == []


def test_machine_values_with_a_fake_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: "build-07.corp.example")
    monkeypatch.setattr(socket, "getfqdn", lambda: "build-07.corp.example")
    monkeypatch.setattr(
        socket,
        "getaddrinfo",
        lambda *a, **k: [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.1.1", 0)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.9.8.7", 0)),
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("fe80::1%eth0", 0, 0, 2)),
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::ffff:10.9.8.6", 0, 0, 0)),
        ],
    )
    monkeypatch.setattr("getpass.getuser", lambda: "alice")
    monkeypatch.setattr("os.path.expanduser", lambda path: "/home/alice/")
    monkeypatch.setattr(uuid, "getnode", lambda: 0x02FC00AABB01)
    monkeypatch.setattr(_sensitive, "_route_address", lambda family, target: "")
    assert machine_values() == [
        SensitiveValue("hostname", "build-07.corp.example"),
        SensitiveValue("hostname", "build-07"),
        SensitiveValue("user", "alice"),
        SensitiveValue("home", "/home/alice"),
        SensitiveValue("ip", "10.9.8.7"),
        SensitiveValue("ip", "fe80::1"),
        SensitiveValue("ip", "fe80:0000:0000:0000:0000:0000:0000:0001"),
        SensitiveValue("ip", "10.9.8.6"),
        SensitiveValue("mac", "02:fc:00:aa:bb:01"),
        SensitiveValue("mac", "02-fc-00-aa-bb-01"),
        SensitiveValue("mac", "02fc00aabb01"),
    ]


def test_a_random_node_id_is_not_a_mac(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(uuid, "getnode", lambda: 0x03FC00AABB01)  # multicast bit set
    assert not [v for v in machine_values() if v.kind == "mac"]


def test_the_fqdn_is_kept_when_it_differs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: "build-07")
    monkeypatch.setattr(socket, "getfqdn", lambda: "build-07.corp.example")
    monkeypatch.setattr(_sensitive, "_resolved_addresses", lambda hostname: [])  # no DNS query
    assert SensitiveValue("fqdn", "build-07.corp.example") in machine_values()
    monkeypatch.setattr(socket, "getfqdn", lambda: "localhost")
    assert not [v for v in machine_values() if v.kind == "fqdn"]


def test_scanner_on_machine_values() -> None:
    scanner = SensitiveScanner(machine_values())
    hostname = socket.gethostname()
    if len(hostname) >= 4 and hostname.lower() not in COMMON_WORDS:
        hits = scanner.scan(url=f"https://api.example.com/?h={hostname}", headers=[], body=b"")
        assert [h.kind for h in hits] == ["hostname"]
    assert "bool" not in repr(scanner)


# Stands in for the resolver functions the machine probe uses, before the plugin configures: each
# answers for a made-up name (nothing is asked of the real resolver) and notes the calls the
# plugin made, for the test to see (start-up and collection).
RESOLVER_SPY = """
import socket
import sys

CALLS = []
ANSWERS = {
    "getfqdn": lambda *a: "probe-host.corp.example",
    "gethostbyaddr": lambda *a: ("probe-host.corp.example", [], ["10.9.9.9"]),
    "getaddrinfo": lambda *a: [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.9.9.9", 0))],
}


def _spy(name, answer):
    def spy(*args, **kwargs):
        if sys._getframe(1).f_globals.get("__name__", "").startswith("pytest_outbound"):
            CALLS.append(name)
        return answer(*args)

    setattr(socket, name, spy)


for _name, _answer in ANSWERS.items():
    _spy(_name, _answer)
"""


@pytest.mark.machine_probe
@pytest.mark.parametrize("probe", [True, False])
def test_the_machine_probe_asks_the_resolver_once_at_start_up_and_can_be_turned_off(
    pytester: pytest.Pytester, probe: bool
) -> None:
    """README, "Sensitive values": the plugin looks up this machine's own name at start-up (a
    DNS query where the name is not in the hosts file), records none of it as egress, and
    ``outbound_sensitive_machine = false`` skips it."""
    pytester.makeconftest(RESOLVER_SPY)
    pytester.makeini(
        f"[pytest]\noutbound_mode = enforce\noutbound_sensitive_machine = {str(probe).lower()}\n"
    )
    pytester.makepyfile(
        """
        from conftest import CALLS

        def test_start_up():
            print("calls:", sorted(CALLS))
        """
    )
    result = pytester.runpytest_subprocess("-s")  # a fresh process: the probe runs once in each
    result.assert_outcomes(passed=1)
    expected = "['getaddrinfo', 'getfqdn']" if probe else "[]"
    assert f"calls: {expected}" in result.stdout.str()
    result.stdout.fnmatch_lines(["mode: enforce; 0 outbound request(s)*"])


def test_this_suites_inner_runs_skip_the_machine_probe(pytester: pytest.Pytester) -> None:
    """tests/conftest.py: an inner run of a test not marked ``machine_probe`` asks no resolver,
    even where its ini leaves the probe on (the default)."""
    pytester.makeconftest(RESOLVER_SPY)
    pytester.makeini("[pytest]\noutbound_mode = enforce\n")
    pytester.makepyfile(
        """
        from conftest import CALLS

        def test_start_up():
            print("calls:", sorted(CALLS))
        """
    )
    result = pytester.runpytest_subprocess("-s")
    result.assert_outcomes(passed=1)
    assert "calls: []" in result.stdout.str()
