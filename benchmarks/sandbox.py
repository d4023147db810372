"""What the sandbox costs: start-up, and each connection and lookup through its gateway.

    python benchmarks/sandbox.py [--quick] [--only start,wrapper,pytest] [--json PATH]

Start-up: a command run bare against the same command under ``python -m pytest_outbound
sandbox``, and a one-test pytest suite with and without ``--outbound-sandbox`` (medians).
Per connection: a Python client inside the sandbox makes one HTTP request per new connection
to a loopback server that stands for the outside (the test mapping, so nothing leaves the
machine), through the gateway's plain HTTP proxy, through a CONNECT tunnel and through
SOCKS5, looks a name up through the DNS responder, and connects straight to an address
(refused: ``ENETUNREACH``, once the attempt is judged; through libc, as a C library would):
run by the wrapper (which judges itself), and by a test under ``--outbound-sandbox`` (the
test's session judges, over the sandbox's control socket). The same client outside the
sandbox, straight to the server, is the baseline. Every request is judged (enforce, two
documented destinations) and recorded. Linux with user namespaces only.
"""

from __future__ import annotations

import argparse
import http.server
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pytest_outbound._sandbox._gateway import OUTSIDE_ENV  # noqa: E402
from pytest_outbound._sandbox._run import run_command  # noqa: E402

PARTS = ("start", "wrapper", "pytest")
POLICY = (
    '[[destination]]\nname = "docs"\nhosts = ["docs.example.test"]\n'
    '[[destination]]\nname = "address"\nhosts = ["203.0.113.7"]\n'
)

CLIENT = r"""
import ctypes, errno, json, os, socket, sys, time

count, target, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
proxy = os.environ.get("PYTEST_OUTBOUND_SANDBOX_PROXY")


def read_all(sock):
    while sock.recv(65536):
        pass


def direct():
    host, port = target.split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(b"GET /x HTTP/1.1\r\nHost: docs\r\nConnection: close\r\n\r\n")
        read_all(sock)


def _proxy():
    host, port = proxy.split(":")
    return socket.create_connection((host, int(port)))


def http_proxy():
    with _proxy() as sock:
        sock.sendall(b"GET http://docs.example.test/x HTTP/1.1\r\nHost: docs.example.test\r\n\r\n")
        read_all(sock)


def connect():
    with _proxy() as sock:
        sock.sendall(b"CONNECT docs.example.test:80 HTTP/1.1\r\nHost: docs.example.test:80\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(1)
        sock.sendall(b"GET /x HTTP/1.1\r\nHost: docs.example.test\r\nConnection: close\r\n\r\n")
        read_all(sock)


def socks5():
    with _proxy() as sock:
        sock.sendall(b"\x05\x01\x00")
        sock.recv(2)
        name = b"docs.example.test"
        sock.sendall(b"\x05\x01\x00\x03" + bytes([len(name)]) + name + (80).to_bytes(2, "big"))
        reply = b""
        while len(reply) < 10:
            reply += sock.recv(10 - len(reply))
        sock.sendall(b"GET /x HTTP/1.1\r\nHost: docs.example.test\r\nConnection: close\r\n\r\n")
        read_all(sock)


def lookup():
    socket.getaddrinfo("docs.example.test", 80, socket.AF_INET, socket.SOCK_STREAM)


libc = ctypes.CDLL(None, use_errno=True)
SOCKADDR = (
    int(socket.AF_INET).to_bytes(2, sys.byteorder) + (443).to_bytes(2, "big")
    + socket.inet_aton("203.0.113.7") + bytes(8)
)


def address():
    fd = libc.socket(socket.AF_INET, socket.SOCK_STREAM, 0)
    failed = libc.connect(fd, SOCKADDR, len(SOCKADDR)) == -1
    libc.close(fd)
    assert failed and ctypes.get_errno() == errno.ENETUNREACH


cases = {"direct": direct} if proxy is None else {
    "http_proxy": http_proxy, "connect": connect, "socks5": socks5, "dns": lookup,
    "address": address,
}
results = {}
for name, case in cases.items():
    case()  # warm up
    times = []
    for _ in range(count):
        start = time.perf_counter()
        case()
        times.append(time.perf_counter() - start)
    times.sort()
    results[name] = times[len(times) // 2]
with open(out, "w") as handle:
    json.dump(results, handle)
"""


PYTEST_CLIENT = """
import os
import subprocess
import sys


def test_client():
    names = ("BENCH_CLIENT", "BENCH_COUNT", "BENCH_TARGET", "BENCH_OUT")
    subprocess.run([sys.executable, *(os.environ[n] for n in names)], check=True)
"""


class _Quiet(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


def _median_run(
    command: list[str], runs: int, env: dict[str, str] | None = None
) -> tuple[float, float]:
    """Medians of the wall time and of the CPU time (user and system, the command's and all
    its processes') of ``runs`` runs: on a busy machine the CPU time says more."""
    times, cpu = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, env=env)
        times.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(times), statistics.median(cpu)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few runs: a smoke test")
    parser.add_argument("--json", metavar="PATH", help="also write the figures here")
    parser.add_argument(
        "--only",
        default=",".join(PARTS),
        help=f"a comma-separated subset of {', '.join(PARTS)} (default: all)",
    )
    args = parser.parse_args(argv)
    parts = {part.strip() for part in args.only.split(",") if part.strip()}
    if not parts or parts - set(PARTS):
        parser.error(f"--only: choose among {', '.join(PARTS)}")
    runs, count = (2, 20) if args.quick else (10, 500)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    target = f"127.0.0.1:{server.server_address[1]}"
    os.environ[OUTSIDE_ENV] = json.dumps({"docs.example.test": target})
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as directory:
        work = Path(directory)
        policy, client = work / "outbound.toml", work / "client.py"
        policy.write_text(POLICY)
        client.write_text(CLIENT)
        start, suite = work / "start", work / "suite"
        for folder in (start, suite):
            folder.mkdir()
            (folder / "pytest.ini").write_text(f"[pytest]\noutbound_policy = {policy}\n")
        (start / "test_one.py").write_text("def test_one():\n    pass\n")
        (suite / "test_client.py").write_text(PYTEST_CLIENT)
        python = sys.executable
        wrapper = [python, "-m", "pytest_outbound", "sandbox", "--no-machine-values", "--"]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        pytest = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        pytest += ["-o", "outbound_sensitive_machine=false"]
        starts = {
            "start: true": (["true"], None),
            "start: sandbox -- true": ([*wrapper, "true"], env),
            "start: pytest (1 test)": ([*pytest, str(start)], env),
            "start: pytest --outbound-sandbox (1 test)": (
                [*pytest, str(start), "--outbound-sandbox"],
                env,
            ),
        }
        for label, (command, command_env) in starts.items() if "start" in parts else ():
            wall, cpu = _median_run(command, runs, command_env)
            figures[label] = wall
            figures[f"{label} [CPU]"] = cpu
        out = work / "out.json"
        if parts & {"wrapper", "pytest"}:
            subprocess.run([python, str(client), str(count), target, str(out)], check=True)
            figures["connection: direct (outside, baseline)"] = json.loads(out.read_text())[
                "direct"
            ]
        status = (
            0
            if "wrapper" not in parts
            else run_command(
                [python, str(client), str(count), target, str(out)],
                policies=[str(policy)],
                mode="enforce",
                machine_values=False,
                out=io.StringIO(),
            )
        )
        if status != 0:
            print(f"the client in the sandbox failed ({status})", file=sys.stderr)
            return 1
        for name, value in json.loads(out.read_text()).items() if "wrapper" in parts else ():
            figures[f"{_label(name)} (wrapper)"] = value
        if "pytest" not in parts:
            return _show(figures, args.json, server)
        client_env = {
            **env,
            "BENCH_CLIENT": str(client),
            "BENCH_COUNT": str(count),
            "BENCH_TARGET": target,
            "BENCH_OUT": str(out),
        }
        subprocess.run(
            [*pytest, str(suite), "--outbound-sandbox", "--outbound-mode", "enforce"],
            check=True,
            env=client_env,
            capture_output=True,
        )
        for name, value in json.loads(out.read_text()).items():
            figures[f"{_label(name)} (pytest)"] = value
    return _show(figures, args.json, server)


def _label(name: str) -> str:
    if name == "dns":
        return "lookup: dns"
    if name == "address":
        return "refused: straight to an address"
    return f"connection: {name}"


def _show(
    figures: dict[str, float], path: str | None, server: http.server.ThreadingHTTPServer
) -> int:
    server.shutdown()
    print(f"{'case':<50}{'median':>12}")
    for name, value in figures.items():
        shown = f"{value * 1000:.1f} ms" if value >= 0.01 else f"{value * 1e6:.0f} µs"
        print(f"{name:<50}{shown:>12}")
    if path:
        Path(path).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
