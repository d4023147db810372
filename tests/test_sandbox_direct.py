"""The sandbox's road nowhere (SPEC §8): what a program sends straight to an address, around
the gateway, is recorded with the program's name and refused; and a guarded Python child's
request is recorded once, by its guard.

Inside the sandbox every address but loopback is routed to a TUN device that the plugin reads
outside (``_sandbox._tun``): no packet is ever written out of it, so these tests reach no
address but loopback. A connection fails with ``ENETUNREACH`` as it did with no route; a
connected UDP socket fails at its next call; an unconnected one's datagram goes nowhere.
Skipped where the sandbox cannot be made.
"""

from __future__ import annotations

import array
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pytest_outbound._report import report_schema, validate
from pytest_outbound._sandbox import _tun
from pytest_outbound._sandbox._judging import DIRECT, Answer, Ask
from pytest_outbound._sandbox._programs import Program, Programs

if TYPE_CHECKING:
    from sandbox_outside import OutsideServer

pytest_plugins = ["sandbox_outside"]

POLICY = """\
[[destination]]
name = "docs"
hosts = ["docs.example.test"]
description = "The documentation site."

[[destination]]
name = "printer"
hosts = ["203.0.113.9"]
description = "A documented literal address: allowed, and still no road out."
"""

#: A Python program the guard does not watch (the wrapper runs it with ``-I``): each attempt
#: and how it failed, one line each.
PROGRAM = r"""
import errno, socket, sys


def attempt(name, step):
    try:
        step()
    except socket.timeout:
        print(name, "timeout")
    except OSError as exc:
        print(name, errno.errorcode.get(exc.errno, exc.errno))
    else:
        print(name, "ok")
    sys.stdout.flush()


def tcp(family, address):
    with socket.socket(family) as sock:
        sock.settimeout(20)
        sock.connect(address)


def udp_connected(family, address):
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(20)
        sock.connect(address)
        sock.send(b"ntp")
        sock.recv(64)


unconnected = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
unconnected.settimeout(0.5)
attempt("udp4-sendto", lambda: unconnected.sendto(b"ntp", ("203.0.113.7", 123)))
attempt("udp4-answer", lambda: unconnected.recvfrom(64))
unconnected6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
unconnected6.settimeout(0.5)
attempt("udp6-sendto", lambda: unconnected6.sendto(b"ntp", ("2001:db8::7", 123)))
attempt("udp6-answer", lambda: unconnected6.recvfrom(64))
attempt("udp4-connected", lambda: udp_connected(socket.AF_INET, ("203.0.113.8", 443)))
attempt("udp6-connected", lambda: udp_connected(socket.AF_INET6, ("2001:db8::8", 443)))
attempt("tcp4", lambda: tcp(socket.AF_INET, ("203.0.113.7", 443)))
attempt("tcp6", lambda: tcp(socket.AF_INET6, ("2001:db8::7", 443)))
attempt("tcp4-documented", lambda: tcp(socket.AF_INET, ("203.0.113.9", 631)))
server = socket.create_server(("127.0.0.1", 0))
attempt("loopback", lambda: socket.create_connection(server.getsockname(), timeout=20).close())
attempt("dns", lambda: socket.getaddrinfo("docs.example.test", 80))
"""

EXPECTED_OUTPUT = [
    "udp4-sendto ok",
    "udp4-answer timeout",
    "udp6-sendto ok",
    "udp6-answer timeout",
    "udp4-connected ENETUNREACH",
    "udp6-connected EACCES",
    "tcp4 ENETUNREACH",
    "tcp6 ENETUNREACH",
    "tcp4-documented ENETUNREACH",
    "loopback ok",
    "dns ok",
]


def _wrapper(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest_outbound", "sandbox", "--no-machine-values", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


def _records(path: Path) -> list[dict[str, object]]:
    report = json.loads(path.read_text())
    assert validate(report, report_schema()) == ""
    records: list[dict[str, object]] = report["requests"]
    return records


@pytest.mark.parametrize("mode", ["enforce", "audit"])
def test_a_program_that_goes_around_the_gateway_is_recorded_and_gets_nowhere(
    outside: OutsideServer, tmp_path: Path, mode: str
) -> None:
    (tmp_path / "outbound.toml").write_text(POLICY)
    (tmp_path / "program.py").write_text(PROGRAM)
    result = _wrapper(
        "--policy", "outbound.toml", "--mode", mode, "--report", "r.json", "--",
        sys.executable, "-I", "program.py", cwd=tmp_path,
    )  # fmt: skip
    assert result.stdout.splitlines() == EXPECTED_OUTPUT, result.stderr
    assert result.returncode == (1 if mode == "enforce" else 0), result.stderr
    direct = [r for r in _records(tmp_path / "r.json") if r["client"] == "gateway"]
    assert sorted((r["method"], r["url"], r["verdict"]) for r in direct) == [
        ("CONNECT", "tcp://203.0.113.7:443", "violation"),
        ("CONNECT", "tcp://203.0.113.9:631", "allowed"),  # documented: still nowhere
        ("CONNECT", "tcp://[2001:db8::7]:443", "violation"),
        ("SENDTO", "udp://203.0.113.7:123", "violation"),
        ("SENDTO", "udp://203.0.113.8:443", "violation"),
        ("SENDTO", "udp://[2001:db8::7]:123", "violation"),
        ("SENDTO", "udp://[2001:db8::8]:443", "violation"),
    ]
    assert all(str(r["location"]).startswith("python") for r in direct)
    assert all(" (pid " in str(r["location"]) for r in direct)
    assert ("dns", "dns://docs.example.test") in [
        (r["client"], r["url"]) for r in _records(tmp_path / "r.json")
    ]
    assert "CONNECT tcp://203.0.113.7:443 [gateway]" in result.stderr
    assert outside.seen == []


def test_bash_dev_tcp_to_an_address_is_recorded_with_bash_s_name(
    sandbox: None, tmp_path: Path
) -> None:
    result = _wrapper(
        "--mode", "enforce", "--report", "r.json", "--",
        "bash", "-c", "exec 3<>/dev/tcp/203.0.113.7/80", cwd=tmp_path,
    )  # fmt: skip
    assert "Network is unreachable" in result.stderr
    assert result.returncode == 1
    (record,) = _records(tmp_path / "r.json")
    assert (record["client"], record["url"], record["verdict"], record["reasons"]) == (
        "gateway",
        "tcp://203.0.113.7:80",
        "violation",
        ["undocumented"],
    )
    assert str(record["location"]).startswith("bash -c 'exec 3<>/dev/tcp/203.0.113.7/80' (pid ")


NO_TUN = 'mount --bind /dev/null /dev/net/tun && exec "$@"'
"""Run the rest of the command where ``/dev/net/tun`` is ``/dev/null`` (a private mount
namespace): it stands for a machine or container without a TUN device."""


@pytest.mark.skipif(shutil.which("unshare") is None, reason="util-linux's unshare is needed")
@pytest.mark.skipif(not os.path.exists("/dev/net/tun"), reason="no /dev/net/tun to hide")
def test_without_a_tun_device_it_works_as_before_and_says_so(sandbox: None, tmp_path: Path) -> None:
    result = subprocess.run(
        [
            "unshare", "--user", "--map-root-user", "--mount", "sh", "-c", NO_TUN, "sh",
            sys.executable, "-m", "pytest_outbound", "sandbox", "--no-machine-values",
            "--mode", "enforce", "--report", "r.json", "--",
            "bash", "-c", "exec 3<>/dev/tcp/203.0.113.7/80",
        ],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert "Network is unreachable" in result.stderr
    assert (
        "pytest-outbound sandbox: no TUN device in the sandbox (Inappropriate ioctl for device):"
        " a connection or datagram straight to an address fails, unrecorded"
    ) in result.stderr.splitlines()
    assert result.returncode == 1  # bash's own status: nothing was recorded, nothing blocked
    assert _records(tmp_path / "r.json") == []


SUITE = r"""
import ctypes
import errno
import socket
import subprocess
import sys


class SockaddrIn(ctypes.Structure):
    _fields_ = [
        ("family", ctypes.c_ushort), ("port", ctypes.c_uint16),
        ("addr", ctypes.c_uint32), ("zero", ctypes.c_char * 8),
    ]


class SockaddrIn6(ctypes.Structure):
    _fields_ = [
        ("family", ctypes.c_ushort), ("port", ctypes.c_uint16), ("flowinfo", ctypes.c_uint32),
        ("addr", ctypes.c_ubyte * 16), ("scope", ctypes.c_uint32),
    ]


def _libc_connect(family, address):
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.socket(family, socket.SOCK_STREAM, 0)
    try:
        result = libc.connect(fd, ctypes.byref(address), ctypes.sizeof(address))
        return result, ctypes.get_errno()
    finally:
        libc.close(fd)


def test_ctypes_libc_connect_to_an_address():
    address = SockaddrIn(
        socket.AF_INET, socket.htons(443),
        int.from_bytes(socket.inet_aton("203.0.113.7"), "little"),
    )
    assert _libc_connect(socket.AF_INET, address) == (-1, errno.ENETUNREACH)


def test_ctypes_libc_connect_to_an_ipv6_address():
    packed = socket.inet_pton(socket.AF_INET6, "2001:db8::7")
    address = SockaddrIn6(
        socket.AF_INET6, socket.htons(443), 0, (ctypes.c_ubyte * 16).from_buffer_copy(packed), 0
    )
    assert _libc_connect(socket.AF_INET6, address) == (-1, errno.ENETUNREACH)


def test_python_socket_to_an_address():
    # audit: the socket backstop records it; the gateway's record would repeat it
    with socket.socket() as sock:
        sock.settimeout(20)
        try:
            sock.connect(("203.0.113.8", 80))
        except OSError as exc:
            assert exc.errno == errno.ENETUNREACH


def test_bash_dev_tcp_to_an_address():
    out = subprocess.run(
        ["bash", "-c", "exec 3<>/dev/tcp/203.0.113.7/80"], capture_output=True, text=True
    )
    assert "Network is unreachable" in out.stderr


def test_loopback_is_untouched():
    server = socket.create_server(("127.0.0.1", 0))
    socket.create_connection(server.getsockname(), timeout=20).close()
    server.close()
"""


@pytest.mark.parametrize("mode", ["enforce", "audit"])
def test_a_test_s_direct_connections_are_its_own(
    outside: OutsideServer, pytester: pytest.Pytester, mode: str
) -> None:
    pytester.makefile(".toml", outbound=POLICY)
    pytester.makeini(
        f"""
        [pytest]
        outbound_policy = outbound.toml
        outbound_mode = {mode}
        """
    )
    pytester.makepyfile(SUITE)
    result = pytester.runpytest_subprocess(
        "--outbound-sandbox", "-p", "no:cacheprovider", "--outbound-report", "r.json", timeout=180
    )
    if mode == "enforce":
        result.assert_outcomes(passed=1, failed=4)  # (the backstop blocks Python's socket)
        out = result.stdout.str()
        assert "refused by the sandbox" in out
        assert "outbound request blocked: CONNECT tcp://203.0.113.7:443 (client: gateway)" in out
    else:
        result.assert_outcomes(passed=5)
    shown = sorted(
        (
            str(r["nodeid"]).rpartition("::")[2],
            r["client"],
            r["url"],
            r["verdict"],
            str(r["location"]).partition(" ")[0].partition(":")[0],
        )
        for r in _records(pytester.path / "r.json")
    )
    assert shown == [
        ("test_bash_dev_tcp_to_an_address", "gateway", "tcp://203.0.113.7:80", "violation", "bash"),
        ("test_ctypes_libc_connect_to_an_address", "gateway", "tcp://203.0.113.7:443",
         "violation", "python"),
        ("test_ctypes_libc_connect_to_an_ipv6_address", "gateway", "tcp://[2001:db8::7]:443",
         "violation", "python"),
        ("test_python_socket_to_an_address", "socket", "tcp://203.0.113.8:80", "violation",
         "test_a_test_s_direct_connections_are_its_own.py"),
    ]  # fmt: skip


CHILDREN = r"""
import subprocess
import sys

REQUESTS = '''
import requests
print(requests.get("http://docs.example.test/child", timeout=20).text, end="")
'''

PYCURL = '''
import io, pycurl
buffer, curl = io.BytesIO(), pycurl.Curl()
curl.setopt(curl.URL, "http://docs.example.test/pycurl-child")
curl.setopt(curl.WRITEDATA, buffer)
curl.setopt(curl.TIMEOUT, 20)
curl.perform()
print(curl.getinfo(curl.RESPONSE_CODE), buffer.getvalue().decode(), end="")
'''

UNDOCUMENTED = '''
import requests
try:
    requests.get("http://evil.example/child", timeout=20)
except Exception as exc:
    print(type(exc).__name__)
'''


def _child(code):
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return out.stdout


def test_a_guarded_child_s_request():
    assert _child(REQUESTS) == "hello from outside /child\n"


def test_a_guarded_child_s_pycurl():
    assert _child(PYCURL) == "200 hello from outside /pycurl-child\n"


def test_a_guarded_child_s_undocumented_request():
    _child(UNDOCUMENTED)
"""


@pytest.mark.parametrize("mode", ["enforce", "audit"])
def test_a_guarded_child_s_request_is_recorded_once_by_its_guard(
    outside: OutsideServer, pytester: pytest.Pytester, mode: str
) -> None:
    """The child's guard records it with its URL and line; the gateway, which sees it too,
    does not record it again. A C library's request the guard did not see is the
    gateway's to record."""
    pytest.importorskip("pycurl")
    pytester.makefile(".toml", outbound=POLICY)
    pytester.makeini(
        f"""
        [pytest]
        outbound_policy = outbound.toml
        outbound_mode = {mode}
        outbound_subprocess = true
        """
    )
    pytester.makepyfile(CHILDREN)
    result = pytester.runpytest_subprocess(
        "--outbound-sandbox", "-p", "no:cacheprovider", "--outbound-report", "r.json", timeout=180
    )
    result.assert_outcomes(
        passed=2 if mode == "enforce" else 3, failed=1 if mode == "enforce" else 0
    )
    shown = sorted(
        (str(r["nodeid"]).rpartition("::")[2], r["client"], r["url"], r["verdict"])
        for r in _records(pytester.path / "r.json")
    )
    assert shown == [
        ("test_a_guarded_child_s_pycurl", "gateway", "http://docs.example.test/pycurl-child",
         "allowed"),
        ("test_a_guarded_child_s_request", "requests", "http://docs.example.test/child",
         "allowed"),
        ("test_a_guarded_child_s_undocumented_request", "requests", "http://evil.example/child",
         "violation"),
    ]  # fmt: skip
    by_url = {r["url"]: r for r in _records(pytester.path / "r.json")}
    assert str(by_url["http://docs.example.test/child"]["location"]).startswith("<string>:3")
    assert str(by_url["http://docs.example.test/pycurl-child"]["location"]).startswith("python -c ")
    assert sorted(p for _, p, _ in outside.seen) == ["/child", "/pycurl-child"]


# -- the parts ------------------------------------------------------------------------------------


def _syn(version: int, sequence: int = 1000, source_port: int = 40000) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", source_port, 443, sequence, 0, 0x50, 0x02, 64240, 0, 0)
    if version == 4:
        return (
            struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(tcp), 1, 0x4000, 64, 6, 0)
            + socket.inet_aton("192.0.0.8")
            + socket.inet_aton("203.0.113.7")
            + tcp
        )
    return (
        struct.pack("!IHBB", 6 << 28, len(tcp), 6, 64)
        + socket.inet_pton(socket.AF_INET6, "100::8")
        + socket.inet_pton(socket.AF_INET6, "2001:db8::7")
        + tcp
    )


def _udp(destination: str = "203.0.113.7") -> bytes:
    udp = struct.pack("!HHHH", 50000, 123, 11, 0) + b"ntp"
    return (
        struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0)
        + socket.inet_aton("192.0.0.8")
        + socket.inet_aton(destination)
        + udp
    )


def _sums_to_zero(data: bytes) -> bool:
    if len(data) % 2:
        data += b"\0"
    total = sum(array.array("H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total == 0xFFFF


def test_a_syn_and_a_datagram_are_flows_and_nothing_else_is() -> None:
    flow = _tun.parse(_syn(4))
    assert flow == _tun.Flow(4, 6, "192.0.0.8", 40000, "203.0.113.7", 443, 1000)
    assert _tun.parse(_syn(6)) == _tun.Flow(6, 6, "100::8", 40000, "2001:db8::7", 443, 1000)
    assert _tun.parse(_udp()) == _tun.Flow(4, 17, "192.0.0.8", 50000, "203.0.113.7", 123, 0)
    ack = bytearray(_syn(4))
    ack[20 + 13] = 0x10
    assert _tun.parse(bytes(ack)) is None  # not a connection's first segment
    assert _tun.parse(_udp("224.0.0.251")) is None  # multicast (mDNS)
    assert _tun.parse(b"\x45" + b"\0" * 10) is None


@pytest.mark.parametrize("version", [4, 6])
def test_the_answer_is_a_valid_icmp_error_quoting_the_packet(version: int) -> None:
    packet = _syn(version)
    flow = _tun.parse(packet)
    assert flow is not None
    answer = _tun.unreachable(packet, flow)
    if version == 4:
        assert _sums_to_zero(answer[:20])
        assert (answer[9], answer[12:16], answer[16:20]) == (1, packet[16:20], packet[12:16])
        icmp = answer[20:]
        assert (icmp[0], icmp[1]) == (3, 9)  # network administratively prohibited
        assert _sums_to_zero(icmp)
    else:
        assert (answer[6], answer[8:24], answer[24:40]) == (58, packet[24:40], packet[8:24])
        icmp = answer[40:]
        assert (icmp[0], icmp[1]) == (1, 0)  # no route to destination
        pseudo = answer[8:40] + struct.pack("!I3xB", len(icmp), 58)
        assert _sums_to_zero(pseudo + icmp)
    assert icmp[8:] == packet


class _Programs(Programs):
    def __init__(self) -> None:
        pass

    def of_tcp(self, client: tuple[str, int], server: tuple[str, int]) -> Program:
        return Program(42, ("curl", "http://203.0.113.7/"))

    of_udp = of_tcp


def test_a_flow_is_judged_once_and_answered_each_time() -> None:
    """A retransmitted SYN and a flow's later datagrams are answered again, not judged again;
    a new connection on the same ports (another sequence number) is judged."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    asks: list[Ask] = []

    def judge(ask: Ask) -> Answer:
        asks.append(ask)
        return Answer(False, "undocumented")

    direct = _tun.Direct(os.dup(theirs.fileno()), judge, _Programs(), lambda address: ())
    theirs.close()
    ours.settimeout(10)
    try:
        for packet in (_syn(4), _syn(4), _syn(4, sequence=2000), _udp(), _udp()):
            direct.packet(packet)
            ours.recv(65536)  # each is answered (the first of a flow once judged)
            time.sleep(_tun.ANSWER_SPACING * 2)
    finally:
        direct.close()
    assert [(a.kind, a.method, a.host, a.port, a.pid) for a in asks] == [
        (DIRECT, "CONNECT", "203.0.113.7", 443, 42),
        (DIRECT, "CONNECT", "203.0.113.7", 443, 42),
        (DIRECT, "SENDTO", "203.0.113.7", 123, 42),
    ]
    assert asks[0].program == "curl http://203.0.113.7/ (pid 42)"
