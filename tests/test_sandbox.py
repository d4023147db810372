"""``--outbound-sandbox`` / ``outbound_sandbox = on`` (SPEC §8): the session in the sandbox.

Programs the Python guard cannot see, judged at the network's edge as the test that ran them:
a ``curl`` child, ``bash``'s ``/dev/tcp``, a ``ctypes`` call into libc, pycurl, grpcio and
uvloop are each recorded with the program's name and the test, and blocked (enforce) or
unreachable when undocumented; a documented destination is reached through the gateway.
Nothing leaves the machine: the outside is a loopback server (``sandbox_outside``); inside,
only ``lo`` exists. Skipped where the sandbox cannot be made, and the curl cases where curl is
not installed (CI installs Debian's ``curl`` package).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from typing import TYPE_CHECKING

import pytest

from pytest_outbound._report import report_schema, validate
from pytest_outbound._sandbox._gateway import OUTSIDE_ENV

if TYPE_CHECKING:
    from sandbox_outside import OutsideServer

pytest_plugins = ["sandbox_outside"]

CURL = shutil.which("curl")
needs_curl = pytest.mark.skipif(
    CURL is None,
    reason="curl is not installed: CI installs Debian's curl package (apt-get install curl)",
)

POLICY = """\
[[destination]]
name = "docs"
hosts = ["docs.example.test"]
description = "The documentation site."

[[destination]]
name = "grpc"
hosts = ["grpc.example.test"]
description = "The gRPC service."
"""


def _suite(pytester: pytest.Pytester, mode: str = "enforce") -> None:
    pytester.makefile(".toml", outbound=POLICY)
    pytester.makeini(
        f"""
        [pytest]
        outbound_policy = outbound.toml
        outbound_mode = {mode}
        """
    )


def _requests(pytester: pytest.Pytester) -> list[dict[str, object]]:
    report = json.loads((pytester.path / "r.json").read_text())
    assert validate(report, report_schema()) == ""
    requests: list[dict[str, object]] = report["requests"]
    return requests


@needs_curl
def test_programs_a_test_runs_are_judged_as_that_test(
    outside: OutsideServer, pytester: pytest.Pytester
) -> None:
    _suite(pytester)
    pytester.makepyfile(
        r"""
        import ctypes
        import errno
        import socket
        import subprocess

        import requests


        def test_curl_documented():
            out = subprocess.run(
                ["curl", "-sS", "-m", "20", "http://docs.example.test/curl"],
                capture_output=True, text=True,
            )
            assert out.stdout == "hello from outside /curl\n"


        def test_curl_undocumented():
            out = subprocess.run(
                ["curl", "-sS", "-m", "20", "http://evil.example/curl"],
                capture_output=True, text=True,
            )
            assert "blocked" in out.stdout  # the gateway's 403; the test fails all the same


        def test_bash_dev_tcp_undocumented():
            out = subprocess.run(
                ["bash", "-c", "exec 3<>/dev/tcp/evil.example/80"], capture_output=True, text=True
            )
            assert out.returncode != 0


        def test_bash_dev_tcp_cannot_leave_directly():
            # the name is documented and answered; a direct connection has no road out
            out = subprocess.run(
                ["bash", "-c", "exec 3<>/dev/tcp/docs.example.test/80"],
                capture_output=True, text=True,
            )
            assert "Network is unreachable" in out.stderr


        class SockaddrIn(ctypes.Structure):
            _fields_ = [
                ("family", ctypes.c_ushort), ("port", ctypes.c_uint16),
                ("addr", ctypes.c_uint32), ("zero", ctypes.c_char * 8),
            ]


        def test_ctypes_libc():
            libc = ctypes.CDLL(None, use_errno=True)
            result = ctypes.c_void_p()
            assert libc.getaddrinfo(b"evil.example", b"80", None, ctypes.byref(result)) != 0
            fd = libc.socket(socket.AF_INET, socket.SOCK_STREAM, 0)
            address = SockaddrIn(
                socket.AF_INET, socket.htons(80),
                int.from_bytes(socket.inet_aton("203.0.113.7"), "little"),
            )
            assert libc.connect(fd, ctypes.byref(address), ctypes.sizeof(address)) == -1
            assert ctypes.get_errno() == errno.ENETUNREACH
            libc.close(fd)


        def test_requests_through_the_gateway_is_recorded_once():
            assert requests.get("http://docs.example.test/requests", timeout=20).text == (
                "hello from outside /requests\n"
            )
        """
    )
    result = pytester.runpytest_subprocess(
        "--outbound-sandbox", "-p", "no:cacheprovider", "--outbound-report", "r.json", timeout=180
    )
    result.assert_outcomes(passed=3, failed=3)
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # the run inside's, through the first
    out = result.stdout.str()
    assert "refused by the sandbox" in out
    assert "from: curl -sS -m 20 http://evil.example/curl (pid " in out
    records = _requests(pytester)
    by_test: dict[str, list[dict[str, object]]] = {}
    for record in records:
        by_test.setdefault(str(record["nodeid"]).rpartition("::")[2], []).append(record)
    (curl,) = [r for r in by_test["test_curl_undocumented"] if r["client"] == "gateway"]
    assert (curl["url"], curl["verdict"], curl["reasons"]) == (
        "http://evil.example/curl",
        "violation",
        ["undocumented"],
    )
    assert str(curl["location"]).startswith("curl -sS -m 20 http://evil.example/curl (pid ")
    (bash,) = [r for r in by_test["test_bash_dev_tcp_undocumented"] if r["client"] == "dns"]
    assert (bash["url"], bash["reasons"]) == ("dns://evil.example", ["dns"])
    assert str(bash["location"]).startswith("bash -c 'exec 3<>/dev/tcp/evil.example/80' (pid ")
    (lookup,) = [r for r in by_test["test_ctypes_libc"] if r["client"] == "dns"]
    assert lookup["url"] == "dns://evil.example"
    assert "python" in str(lookup["location"])
    allowed = by_test["test_bash_dev_tcp_cannot_leave_directly"]
    assert [(r["client"], r["destination"], r["verdict"]) for r in allowed] == [
        ("dns", "docs", "allowed"),
        ("gateway", "docs", "allowed"),  # the address the name was answered with: nowhere
    ]
    assert str(allowed[1]["url"]).startswith("tcp://198.18.")
    # the HTTP interceptor's record, not the gateway's again
    once = by_test["test_requests_through_the_gateway_is_recorded_once"]
    assert [(r["client"], r["url"]) for r in once] == [
        ("requests", "http://docs.example.test/requests")
    ]
    assert sorted(p for _, p, _ in outside.seen) == ["/curl", "/requests"]


GRPC_SERVER = """
import grpc
from concurrent import futures

def serve():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    handler = grpc.method_handlers_generic_handler(
        "test.Echo",
        {"Echo": grpc.unary_unary_rpc_method_handler(lambda request, context: b"echo:" + request)},
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port
"""


def test_native_clients_are_judged_by_the_gateway(
    outside: OutsideServer, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pycurl (libcurl), grpcio (gRPC's C core) and uvloop (libuv) open their sockets in C:
    only the sandbox sees them."""
    pytest.importorskip("pycurl")
    grpc = pytest.importorskip("grpc")
    pytest.importorskip("uvloop")
    namespace: dict[str, object] = {}
    exec(GRPC_SERVER, namespace)
    server, grpc_port = namespace["serve"]()  # type: ignore[operator]
    mapping = json.loads(os.environ[OUTSIDE_ENV])
    mapping["grpc.example.test"] = f"127.0.0.1:{grpc_port}"
    monkeypatch.setenv(OUTSIDE_ENV, json.dumps(mapping))
    _suite(pytester)
    pytester.makepyfile(
        r"""
        import asyncio
        import io
        import os
        import socket

        import grpc
        import pycurl
        import pytest
        import uvloop


        def _get(url):
            buffer, curl = io.BytesIO(), pycurl.Curl()
            curl.setopt(curl.URL, url)
            curl.setopt(curl.WRITEDATA, buffer)
            curl.setopt(curl.TIMEOUT, 20)
            curl.perform()
            return curl.getinfo(curl.RESPONSE_CODE), buffer.getvalue()


        def test_pycurl_documented():
            assert _get("http://docs.example.test/pycurl") == (200, b"hello from outside /pycurl\n")


        def test_pycurl_undocumented():
            assert _get("http://evil.example/pycurl")[0] == 403


        def _echo(target):
            with grpc.insecure_channel(target) as channel:
                return channel.unary_unary("/test.Echo/Echo")(b"hi", timeout=20)


        def test_grpc_documented():
            assert _echo("grpc.example.test:50051") == b"echo:hi"


        def test_grpc_undocumented():
            with pytest.raises(grpc.RpcError):
                _echo("evil.example:50051")


        def test_uvloop_lookup_undocumented():
            async def connect():
                await asyncio.open_connection("evil.example", 80)

            with pytest.raises(socket.gaierror):
                uvloop.run(connect())


        def test_uvloop_through_the_gateway():
            async def fetch():
                host, port = os.environ["PYTEST_OUTBOUND_SANDBOX_PROXY"].split(":")
                reader, writer = await asyncio.open_connection(host, int(port))
                writer.write(
                    b"GET http://docs.example.test/uvloop HTTP/1.1\r\n"
                    b"Host: docs.example.test\r\n\r\n"
                )
                await writer.drain()
                return await reader.read()

            assert uvloop.run(fetch()).endswith(b"hello from outside /uvloop\n")
        """
    )
    try:
        result = pytester.runpytest_subprocess(
            "--outbound-sandbox", "-p", "no:cacheprovider", "--outbound-report", "r.json",
            timeout=180,
        )  # fmt: skip
    finally:
        server.stop(None)
    result.assert_outcomes(passed=3, failed=3)
    violations = {
        str(r["nodeid"]).rpartition("::")[2]: (r["client"], r["method"], r["url"])
        for r in _requests(pytester)
        if r["verdict"] == "violation"
    }
    assert violations == {
        "test_pycurl_undocumented": ("gateway", "GET", "http://evil.example/pycurl"),
        "test_grpc_undocumented": ("gateway", "CONNECT", "tcp://evil.example:50051"),
        "test_uvloop_lookup_undocumented": ("dns", "DNS", "dns://evil.example"),
    }
    assert sorted(p for _, p, _ in outside.seen) == ["/pycurl", "/uvloop"]
    assert grpc is not None


@needs_curl
def test_under_xdist_each_worker_judges_its_own_tests(
    outside: OutsideServer, pytester: pytest.Pytester
) -> None:
    _suite(pytester)
    pytester.makepyfile(
        """
        import subprocess

        import pytest


        @pytest.mark.parametrize("n", range(4))
        def test_curl(n):
            subprocess.run(["curl", "-sS", "-m", "20", f"http://evil-{n}.example/"])
            subprocess.run(["curl", "-sS", "-m", "20", f"http://docs.example.test/{n}"])
        """
    )
    result = pytester.runpytest_subprocess(
        "--outbound-sandbox", "-p", "no:cacheprovider", "-n", "2", "--outbound-report", "r.json",
        timeout=180,
    )  # fmt: skip
    result.assert_outcomes(failed=4)
    violations = sorted(
        (str(r["nodeid"]).rpartition("::")[2], r["url"])
        for r in _requests(pytester)
        if r["verdict"] == "violation"
    )
    assert violations == [(f"test_curl[{n}]", f"http://evil-{n}.example/") for n in range(4)]
    assert sorted(p for _, p, _ in outside.seen) == ["/0", "/1", "/2", "/3"]


@needs_curl
def test_outbound_marker_counts_what_the_gateway_carries_out(
    outside: OutsideServer, pytester: pytest.Pytester
) -> None:
    """``outbound_marker = network``: a test without the marker whose program reaches a
    documented destination through the gateway makes a real connection: a violation."""
    pytester.makefile(".toml", outbound=POLICY)
    pytester.makeini(
        """
        [pytest]
        outbound_policy = outbound.toml
        outbound_mode = enforce
        outbound_marker = network
        """
    )
    pytester.makepyfile(
        r"""
        import subprocess

        import pytest


        def _curl():
            return subprocess.run(
                ["curl", "-sS", "-m", "20", "http://docs.example.test/m"],
                capture_output=True, text=True,
            ).stdout


        @pytest.mark.network
        def test_marked():
            assert _curl() == "hello from outside /m\n"


        def test_unmarked():
            _curl()
        """
    )
    result = pytester.runpytest_subprocess("--outbound-sandbox", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*FAILED*test_unmarked*"])
    assert "unmarked:network" in result.stdout.str()


@needs_curl
def test_a_session_run_in_process_inside_leaves_the_judging_to_the_run(
    outside: OutsideServer, pytester: pytest.Pytester
) -> None:
    """pytester's in-process runs inside a sandboxed run (a plugin's own tests): the programs
    the outer test runs after one are still that test's."""
    _suite(pytester)
    pytester.makepyfile(
        r"""
        import subprocess

        pytest_plugins = ["pytester"]


        def test_outer(pytester):
            pytester.makepyfile("def test_inner(): pass")
            pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
            subprocess.run(["curl", "-sS", "-m", "20", "http://evil.example/after"])
        """
    )
    result = pytester.runpytest_subprocess("--outbound-sandbox", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*from: curl -sS -m 20 http://evil.example/after (pid *"])


FORBID = 'echo 0 > /proc/sys/user/max_user_namespaces && exec "$@"'


@pytest.mark.skipif(shutil.which("unshare") is None, reason="util-linux's unshare is needed")
def test_where_user_namespaces_are_forbidden_it_stops_before_the_first_test(
    sandbox: None, pytester: pytest.Pytester
) -> None:
    """In a user namespace in which no further one may be made (``max_user_namespaces =
    0``), standing for a system that forbids them."""
    pytester.makepyfile("def test_never_runs(): pass")
    result = pytester.run(
        "unshare", "--user", "--map-root-user", "sh", "-c", FORBID, "sh",
        sys.executable, "-m", "pytest", "--outbound-sandbox", "-p", "no:cacheprovider",
        timeout=120,
    )  # fmt: skip
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    (line,) = [line for line in result.errlines if line.startswith("ERROR:")]
    assert line == (
        "ERROR: outbound_sandbox: the sandbox cannot be made here: user namespaces are not"
        " allowed (unshare(CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWNS): No space left on device"
        " (user.max_user_namespaces = 0)); run without the sandbox (drop --outbound-sandbox, or"
        " set outbound_sandbox = off)"
    )
    assert "test_never_runs" not in result.stdout.str()


def test_in_process_or_off_it_does_not_start(sandbox: None, pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_runs(): pass")
    result = pytester.runpytest("--outbound-sandbox")  # pytest.main(plugins=...) in-process
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: outbound_sandbox: it runs pytest again inside the sandbox, which"
            " pytest.main(plugins=...) cannot (run pytest as a command); run without the"
            " sandbox (drop --outbound-sandbox, or set outbound_sandbox = off)"
        ]
    )
    pytester.makeini("[pytest]\noutbound_sandbox = on\noutbound_mode = off\n")
    pytester.runpytest().assert_outcomes(passed=1)  # off: nothing is patched, no sandbox


def test_not_on_linux_it_stops_before_the_first_test(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile("def test_runs(): pass")
    pytester.makeini("[pytest]\noutbound_sandbox = on\n")
    monkeypatch.setattr(sys, "platform", "darwin")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: outbound_sandbox: the sandbox needs Linux (user and network namespaces);"
            " this is darwin; run without the sandbox (drop --outbound-sandbox, or set"
            " outbound_sandbox = off)"
        ]
    )


def test_nothing_of_the_sandbox_is_loaded_when_it_is_off(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        import sys

        def pytest_unconfigure(config):
            loaded = sorted(m for m in sys.modules if m.startswith("pytest_outbound._sandbox"))
            (config.rootpath / "loaded.txt").write_text(repr(loaded))
        """
    )
    pytester.makepyfile("def test_runs(): pass")
    pytester.runpytest_subprocess("--outbound-mode", "enforce").assert_outcomes(passed=1)
    assert (pytester.path / "loaded.txt").read_text() == "[]"


def test_help_is_pinned(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(
        [
            "  --outbound-sandbox    Linux: run the session and every process it starts in a",
            "                        private network namespace whose only road out is the",
            "                        plugin's gateway and DNS responder, which judge what any",
            "                        program sends (curl, pycurl, grpcio, ctypes). Overrides",
            "                        outbound_sandbox.",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "  outbound_sandbox (bool):",
            "                        on: run the session in the sandbox (Linux user and",
            "                        network namespaces): its only road out is the plugin's",
            "                        gateway (HTTP CONNECT, HTTP proxy, SOCKS5) and DNS",
            "                        responder.",
        ]
    )
