"""The sandbox's pure parts: DNS messages, command lines, proxy authorities, the test mapping,
the records the gateway's asks become, and the judgement of a tunnel (no namespace needed)."""

from __future__ import annotations

import socket
import struct
from pathlib import Path

import pytest

from pytest_outbound._decide import Context, Rules, decide
from pytest_outbound._guard import ENFORCE, Guard
from pytest_outbound._policy import Destination, Policy
from pytest_outbound._sandbox import _dns
from pytest_outbound._sandbox._gateway import Outside, _authority, _is_local
from pytest_outbound._sandbox._judging import HTTP, LOOKUP, TUNNEL, Ask, judge, record_for
from pytest_outbound._sandbox._programs import Program, _hex_address, command_text
from pytest_outbound._sandbox._run import pytest_command, sandbox_files

# -- DNS -----------------------------------------------------------------------------------------


def test_a_query_is_read_and_answered_with_its_addresses() -> None:
    query = _dns.parse_query(_dns.encode_query("Docs.Example.TEST.", _dns.A, ident=7))
    assert (query.id, query.name, query.qtype) == (7, "docs.example.test", _dns.A)
    rcode, addresses = _dns.decode_answer(_dns.answer(query, ["198.18.0.1", "2001:db8::1"]))
    assert (rcode, addresses) == (_dns.NOERROR, ["198.18.0.1"])  # only the type asked for


def test_an_aaaa_query_for_a_name_with_no_v6_address_gets_no_data() -> None:
    query = _dns.parse_query(_dns.encode_query("docs.example.test", _dns.AAAA))
    assert _dns.decode_answer(_dns.answer(query, ["198.18.0.1"])) == (_dns.NOERROR, [])


def test_a_refused_name_is_answered_nxdomain_with_the_question_echoed() -> None:
    data = _dns.encode_query("evil.example", _dns.A, ident=0x4242)
    response = _dns.reply(_dns.parse_query(data), _dns.NXDOMAIN)
    ident, flags, qdcount, ancount = struct.unpack_from("!HHHH", response)
    assert (ident, flags & 0x8000, flags & 0xF, qdcount, ancount) == (0x4242, 0x8000, 3, 1, 0)
    assert response[12:] == data[12:]


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"\x00", "shorter"),
        (struct.pack("!HHHHHH", 1, 0x8100, 1, 0, 0, 0) + b"\0\0\1\0\1", "response"),
        (struct.pack("!HHHHHH", 1, 0x0100, 2, 0, 0, 0) + b"\0\0\1\0\1", "questions"),
        (struct.pack("!HHHHHH", 1, 0x0100, 1, 0, 0, 0) + b"\xc0\x0c\0\1\0\1", "compressed"),
        (struct.pack("!HHHHHH", 1, 0x0100, 1, 0, 0, 0) + b"\x05ab", "runs past"),
    ],
)
def test_what_is_not_one_plain_query_is_refused_as_malformed(data: bytes, why: str) -> None:
    with pytest.raises(_dns.DnsError, match=why):
        _dns.parse_query(data)


def test_a_malformed_query_gets_formerr_when_it_has_an_id() -> None:
    reply = _dns.error_reply(b"\x12\x34garbage")
    assert reply is not None
    assert reply[:2] == b"\x12\x34"
    assert reply[3] & 0xF == _dns.FORMERR
    assert _dns.error_reply(b"\x12") is None


def test_answers_stay_within_one_udp_message() -> None:
    query = _dns.parse_query(_dns.encode_query("many.example", _dns.AAAA))
    many = [f"2001:db8::{n:x}" for n in range(1, 40)]
    response = _dns.answer(query, many)
    assert len(response) <= 512
    assert len(_dns.decode_answer(response)[1]) == _dns.ANSWER_LIMIT


@pytest.mark.parametrize(
    ("name", "address"),
    [
        ("7.113.0.203.in-addr.arpa", "203.0.113.7"),
        ("1.0.0.127.in-addr.arpa", "127.0.0.1"),
        (".".join("1" + "0" * 31) + ".ip6.arpa", "::1"),
        ("example.com", None),
        ("1.2.in-addr.arpa", None),
        ("x.1.2.3.in-addr.arpa", None),
    ],
)
def test_reverse_names_are_read_as_the_address_they_ask_about(
    name: str, address: str | None
) -> None:
    assert _dns.reverse_address(name) == address


# -- programs ------------------------------------------------------------------------------------


def test_a_command_line_is_one_line_with_the_program_by_name() -> None:
    assert command_text(["/usr/bin/curl", "-sS", "http://x/"]) == "curl -sS http://x/"
    assert command_text(["bash", "-c", "echo > /dev/tcp/x/80"]) == (
        "bash -c 'echo > /dev/tcp/x/80'"
    )
    assert len(command_text(["python", "-c", "x" * 500])) <= 200
    assert Program(4242, ("/usr/bin/curl", "http://x/")).text() == "curl http://x/ (pid 4242)"
    assert Program(None, ()).text() == "an unknown program (it had exited)"


@pytest.mark.parametrize(
    ("host", "port", "version", "written"),
    [
        ("127.0.0.1", 53, 4, "0100007F:0035"),
        ("127.0.0.1", 8080, 6, "0000000000000000FFFF00000100007F:1F90"),
        ("::1", 1, 6, "00000000000000000000000001000000:0001"),
    ],
)
def test_addresses_are_written_as_the_proc_socket_tables_write_them(
    host: str, port: int, version: int, written: str
) -> None:
    assert _hex_address(host, port, version) == written


@pytest.mark.parametrize("diag", [True, False], ids=["sock_diag", "socket tables"])
def test_this_process_is_found_behind_its_own_sockets(diag: bool) -> None:
    """The lookups ``Programs`` makes, in this machine's own namespace: by ``sock_diag``, and
    by reading the socket tables where there is no ``sock_diag``."""
    import os

    from pytest_outbound._sandbox._programs import Programs

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    client = socket.create_connection(server.getsockname())
    conn, address = server.accept()
    responder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    responder.bind(("127.0.0.1", 0))
    asker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    asker.connect(responder.getsockname())
    names = ("tcp", "tcp6", "udp", "udp6")
    tables = {name: os.open(f"/proc/self/net/{name}", os.O_RDONLY) for name in names}
    if diag:
        tables["diag"] = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 4).detach()
    programs = Programs(tables, os.readlink("/proc/self/ns/net"))
    try:
        found = programs.of_tcp(address, server.getsockname())
        assert found.pid == os.getpid()
        assert f"(pid {os.getpid()})" in found.text()
        assert programs.of_udp(asker.getsockname(), responder.getsockname()).pid == os.getpid()
        assert programs.of_tcp(("127.0.0.1", 1), server.getsockname()) == Program(None, ())
    finally:
        programs.close()
        for sock in (conn, client, server, responder, asker):
            sock.close()


# -- the gateway's parsing and the outside ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "default", "expected"),
    [
        ("docs.example.test:443", None, ("docs.example.test", 443)),
        ("[2001:db8::1]:8443", None, ("2001:db8::1", 8443)),
        ("docs.example.test", 80, ("docs.example.test", 80)),
        ("user:pw@docs.example.test:81", None, ("docs.example.test", 81)),
        ("docs.example.test:0", None, (None, None)),
        ("docs.example.test:http", None, (None, None)),
        (":80", None, (None, None)),
        ("[::1", None, (None, None)),
    ],
)
def test_proxy_authorities(
    text: str, default: int | None, expected: tuple[str | None, int | None]
) -> None:
    assert _authority(text, default) == expected


@pytest.mark.parametrize(
    ("host", "local"),
    [
        ("localhost", True),
        ("a.localhost", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("[::1]", True),
        ("::ffff:127.0.0.1", True),
        ("0.0.0.0", True),
        ("docs.example.test", False),
        ("198.18.0.1", False),
    ],
)
def test_local_targets_are_told_apart(host: str, local: bool) -> None:
    assert _is_local(host) is local


def test_the_test_mapping_is_all_there_is_outside() -> None:
    outside = Outside({"docs.example.test": ("127.0.0.1", 9)})
    address = outside.resolve("docs.example.test")
    assert address is not None
    assert address[0].startswith("198.18.")
    assert outside.resolve("docs.example.test") == address  # the same placeholder each time
    assert outside.resolve("evil.example") is None
    with pytest.raises(Exception, match="not in the test mapping"):
        outside.connect("evil.example", 80)


def test_the_sandbox_asks_its_own_responder_through_the_c_library(tmp_path: Path) -> None:
    binds = {target: source for source, target in sandbox_files(str(tmp_path))}
    assert "nameserver 127.0.0.1" in Path(binds["/etc/resolv.conf"]).read_text()
    if "/etc/nsswitch.conf" in binds:
        lines = Path(binds["/etc/nsswitch.conf"]).read_text().splitlines()
        assert [line for line in lines if line.startswith("hosts:")] == ["hosts: files dns"]


def test_pytest_runs_again_with_the_interpreter_and_its_arguments() -> None:
    import sys

    command = pytest_command(["-q", "tests"])
    assert command[0] == sys.executable
    assert command[-2:] == ["-q", "tests"]


# -- records and judgement -------------------------------------------------------------------------

POLICY = Policy(
    (
        Destination(
            name="update-check",
            hosts=["octopus.com"],
            schemes=["https"],
            methods=["GET"],
            paths=["/api/check"],
        ),
    )
)


def _guard(mode: str = ENFORCE) -> Guard:
    return Guard(mode=mode, context=Context(Rules(POLICY)), rootpath=Path("/"), body_limit=65536)


def test_a_tunnel_is_judged_on_host_and_port_as_a_socket_connection_is() -> None:
    """A CONNECT tunnel carries no scheme, method or path the gateway can read: a destination
    that documents them still admits the tunnel to its host."""
    ask = Ask(TUNNEL, "CONNECT", host="octopus.com", port=443, pid=7, program="curl (pid 7)")
    record = record_for(ask, 65536)
    assert (record.client, record.method, record.url) == (
        "gateway",
        "CONNECT",
        "tcp://octopus.com:443",
    )
    assert decide(record, Context(Rules(POLICY))).allowed
    evil = record_for(Ask(TUNNEL, "CONNECT", host="evil.example", port=443), 65536)
    assert decide(evil, Context(Rules(POLICY))).reasons == ("undocumented",)


def test_a_plain_http_request_is_judged_whole() -> None:
    ask = Ask(HTTP, "POST", url="http://octopus.com/api/check", headers=[("Host", "octopus.com")])
    verdict = decide(record_for(ask, 65536), Context(Rules(POLICY)))
    assert set(verdict.reasons) >= {"scheme", "method"}


def test_a_tunnel_to_an_address_is_judged_by_the_names_answered_with_it() -> None:
    ask = Ask(TUNNEL, "CONNECT", host="198.18.0.1", port=443, names=("octopus.com",))
    assert decide(record_for(ask, 65536), Context(Rules(POLICY))).allowed
    bare = Ask(TUNNEL, "CONNECT", host="198.18.0.1", port=443)
    assert not decide(record_for(bare, 65536), Context(Rules(POLICY))).allowed


def test_judging_records_the_program_and_refuses_in_enforce() -> None:
    guard = _guard()
    answer = judge(guard, Ask(LOOKUP, "DNS", host="evil.example", program="curl x (pid 9)"))
    assert not answer.allowed
    assert answer.why == "dns"
    (record,) = guard.records
    assert (record.client, record.location, record.verdict) == (
        "dns",
        "curl x (pid 9)",
        "violation",
    )
    assert judge(guard, Ask(LOOKUP, "DNS", host="octopus.com")).allowed


def test_audit_records_and_lets_through() -> None:
    guard = _guard("audit")
    assert judge(guard, Ask(TUNNEL, "CONNECT", host="evil.example", port=443)).allowed
    assert [r.verdict for r in guard.records] == ["violation"]


def test_an_ask_travels_as_json_and_back() -> None:
    ask = Ask(
        HTTP, "POST", url="http://x/", headers=[("A", "b")], body=b"\x00\xff", pid=3, names=("n",)
    )
    assert Ask.from_json(ask.to_json()) == ask
