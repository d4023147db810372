"""What pytest-outbound costs a test suite (issue 8): every case in one run, as ratios.

Run from the repository root with the project's virtualenv::

    .venv/bin/python benchmarks/run.py                  # full run (about 5 minutes)
    .venv/bin/python benchmarks/run.py --profile        # + profile every miss (about 6 minutes)
    .venv/bin/python benchmarks/run.py --quick          # smoke run (about 1 minute)
    .venv/bin/python benchmarks/run.py --ref HEAD       # the committed package, not the work tree
    .venv/bin/python benchmarks/run.py --json out.json  # results elsewhere (default results.json)
    .venv/bin/python benchmarks/run.py --only per-request,payload --profile --markdown out.md

Each case is measured against a baseline in interleaved A/B(/C) subprocess runs (the order of
the variants rotates from one repetition to the next, AB BA or ABC BCA CAB, so that drifting
machine load hits all alike; one untimed warm-up run of each variant first), the medians are
compared, and a table is printed with each number's target and PASS/FAIL, and written as JSON.
Everything is generated in a temporary directory; no request the benchmark makes leaves the
machine (mocks, and loopback sockets on 127.0.0.1 only), though the plugin's start-up probe
asks the resolver for the machine's own name, as in any run (README, "Sensitive values").
Children keep their bytecode in that directory
(PYTHONPYCACHEPREFIX), as a user's machine keeps it in __pycache__, even where
PYTHONDONTWRITEBYTECODE=1 is set.

Cases (``--only`` takes these names). In every case pytest-socket is loaded only where it is
measured (the suite cases' third variant): every other run passes ``-p no:socket``.

per-request   2,000 GETs in one test through requests + responses and through httpx + respx,
              to a destination of a 50-destination policy (allowed), ``--outbound-mode
              enforce`` vs ``-p no:outbound``. The test times its own loop with
              ``time.perf_counter()`` (after 50 untimed warm-up requests) and writes it to a
              file, so interpreter start-up and collection do not dilute the ratio; the whole
              process's wall time is reported too. 7 repetitions. Target: ratio <= 1.10.
              The mock's call log is emptied every 100 requests (``BENCH_CLEAR_EVERY``), in
              both variants: in a suite a mock lives for one test, while the plugin's records
              live for the session. Kept whole, respx's log adds about 13 objects per request
              for the collector to walk, and where its full passes fall in the loop then
              decides the ratio more than the plugin does; rows marked "the mock keeping
              every call" measure that way too (no target). The test runs ``gc.collect()``
              after the warm-up, in both variants, so the loop pays for the collections its
              own requests cause and not for one that start-up had nearly due. Without it,
              a commit that imports less at start-up (fewer long-lived objects, so the next
              full pass comes sooner) measured 9 us/request slower on requests GET than the
              commit before it; with the collector off, or with this collection, the two
              measure the same (session 6, interleaved A/B: 318.7 vs 320.2 us).
payload       the same with POSTs of a small JSON body to a destination with a payload
              contract (``fields``, ``required``, ``match``). Target: ratio <= 1.20. The
              plugin remembers what a request's content earned it, so the same body again is
              not parsed and checked again; two more rows (no target) post a different body
              every time, so that nothing is remembered: the cost of bodies that vary.
suite         a generated suite of 3,000 trivial tests (no network), whole-process wall time:
              enforce vs neither plugin vs pytest-socket's ``--disable-socket``, interleaved
              A/B/C in rotating order, median of 9. Each plugin runs alone: ``-p no:socket``
              with pytest-outbound and in the baseline, ``-p no:outbound`` with pytest-socket
              and in the baseline (until session 8, pytest-socket was loaded, inactive, in the
              baseline and beside pytest-outbound: see RESULTS.md). Targets:
              <= 1.03 vs no plugin, and no slower than pytest-socket. The notes also give the
              ratios of CPU time (user + system, which waiting for a core does not inflate).
              A 1-test suite, on vs off, splits the overhead into start-up and per-test cost.
              Then the same rows again with only the plugin measured loaded (rows
              "suite-alone": ``-p no:NAME`` for every other installed pytest plugin). This
              venv's development plugins (respx, pytest-httpx, requests-mock) import requests
              and httpx at start-up in every variant, which hid what importing them cost a
              suite with pytest-outbound alone (until session 10 it imported them to patch
              them: about +50 ms; it now patches each when the suite imports it); and
              hypothesis's plugin imports hypothesis in the terminal summary, where a
              full garbage collection of the whole heap (~40 ms) falls in one variant and not
              in another depending on what was allocated before (RESULTS.md, session 9).
suite-instructions
              the suite case counted in CPU instructions instead of seconds, which a shared,
              noisy machine cannot disturb: ``valgrind --tool=callgrind`` (instructions
              executed, the same from run to run for the same inputs) of the suite case's
              3,000-test suite and of a 1-test suite, on / off / pytest-socket, in both of its
              settings: every installed plugin loaded, and only the plugin measured (rows
              "suite-instructions-alone"). The ratios are the 3,000-test counts'; start-up =
              the 1-test runs' difference, per test = the rest over 2,999. (Earlier runs
              projected from a 300-test suite instead: a garbage collection more or less in 300
              tests moved the per-test figure by ~30K instructions.) Two counts run at once
              (each is single-threaded, and contention does not change an instruction count).
              Same targets as the suite case. About 15 minutes; skipped when valgrind is
              missing.
socket        2,000 ``socket.create_connection`` to a listener on 127.0.0.1 in the same test,
              ``outbound_local = enforce`` + ``outbound_allow = 127.0.0.1`` vs
              ``-p no:outbound``. Without the socket/DNS backstop (``_backstop.py``) the plugin
              does not see raw sockets and the ratio is ~1.0; the note gives how many requests
              the plugin recorded (2,050 = every connect was judged). The issue sets no target.
matching      decisions per second for policies of 10, 1,000 and 10,000 host patterns, from
              ``benchmarks/matching.py`` (run as a subprocess, its JSON line parsed). Target:
              10,000 patterns within 1.2x of 10.
memory        peak RSS (``ru_maxrss`` of the child, from ``os.wait4``) of a pytest run that
              POSTs 50,000 requests with 1 KiB JSON bodies through requests + responses
              (responses' call logs are cleared every 1,000 requests, in both variants, so that
              the mock's memory does not count), enforce vs ``-p no:outbound``, median of 3;
              also the RSS when the loop ended and that of a run with no request (the fixed
              cost). Target: <= 150 MB with the plugin on.
import        ``python -X importtime -c "import requests, httpx, urllib3; import
              pytest_outbound._plugin"``: the cumulative import time of the outermost
              pytest_outbound modules (what importing the plugin adds, including what it pulls
              in that was not imported yet: as specified, that includes pytest itself), median
              of 9; and the same with pytest imported first, as inside a pytest run. Target:
              <= 50 ms.

``--profile`` then profiles each case that missed a target and writes what it found to the
JSON (and with ``--markdown PATH`` as Markdown tables):

- per-request, payload, socket: the plugin-on test once more with cProfile around the timed
  loop; pytest_outbound functions by cumulative and self time per request, and the library
  functions they call. cProfile inflates many small calls: the time spent inside the plugin
  under cProfile is divided by the overhead the benchmark measured without it, and every
  function's "est. us" is its cumulative time over that factor. Then, when py-spy is
  installed (``make bench`` installs it), the same test sampled by py-spy (``--nonblocking``,
  1,000 samples a second, 10 times the requests for enough samples): a sampling profiler does
  not inflate small calls, so each sample inside the plugin (its innermost pytest_outbound
  frame, unless a wrapped original runs below it) is a share of the loop's time, reported per
  source line as that share of the time per request the benchmark measured without a
  profiler.
- suite: the whole pytest process under cProfile (per test; start-up functions show their
  total), and ``-X importtime`` of a 1-test run: the packages imported only with the plugin on.
- memory: tracemalloc over 1,000 requests, plugin on and off: extra live bytes per request
  when the loop ends and in the terminal summary, and the pytest_outbound lines that
  allocated them.
- import: each pytest_outbound module's own import time and the packages it imports first.

Other options: ``--reps N`` (repetitions of every case), ``--keep`` (keep the temporary
directory and print its path), ``--ref REF`` (measure pytest_outbound as committed at REF,
extracted with ``git archive`` and put first on the children's PYTHONPATH: a consistent
snapshot while others edit the working tree). ``--quick``: 300 requests, a 500-test suite,
5,000 requests for memory (no PASS/FAIL there), 3 repetitions.

Options are checked before anything is measured (an output path that cannot be written, a
``--ref`` that is not a commit). The results files are written atomically, and only when every
chosen case ran: a case whose child fails (or whose output cannot be read) ends the run with
that child's output and exit code 1, and so does a ``--ref`` that cannot be extracted. A
profile that fails leaves the measurements written, with the error under "profiles", and
exit code 1. ``tests/test_benchmarks.py`` checks, without timing anything, that the HTTP,
socket and memory cases go through the plugin, that the suite variants run, and that a quick
run of the import and matching cases writes its results (not the valgrind case).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import pstats
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_outbound._report import write_text_atomic

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PY = sys.executable
CASES = (
    "per-request",
    "payload",
    "suite",
    "suite-instructions",
    "socket",
    "matching",
    "memory",
    "import",
)

# ---------------------------------------------------------------------------------------------
# generated files
# ---------------------------------------------------------------------------------------------

GET_HOST = "api.bench.example.com"
PAYLOAD_HOST = "updates.bench.example.com"
EVENTS_HOST = "events.bench.example.com"


def policy_toml(count: int = 50) -> str:
    """``count`` documented destinations of every kind; two of them are the benchmark targets."""
    blocks: list[str] = []
    for number in range(count):
        kind = number % 5
        if number == 23:
            blocks.append(
                textwrap.dedent(f"""\
                [[destination]]
                name = "bench-api"
                description = "The benchmark's API."
                hosts = ["{GET_HOST}"]
                schemes = ["https"]
                methods = ["GET"]
                paths = ["/v1/**"]
                """)
            )
        elif number == 37:
            blocks.append(
                textwrap.dedent(f"""\
                [[destination]]
                name = "bench-update-check"
                description = "The benchmark's update check."
                hosts = ["{PAYLOAD_HOST}"]
                schemes = ["https"]
                methods = ["POST"]
                paths = ["/api/check"]

                [destination.payload]
                fields = ["version", "installationId", "event"]
                required = ["version", "installationId"]
                [destination.payload.match]
                installationId = "uuid"
                version = "semver"
                """)
            )
        elif number == 11:
            blocks.append(
                textwrap.dedent(f"""\
                [[destination]]
                name = "bench-events"
                description = "The benchmark's event upload (the memory case)."
                hosts = ["{EVENTS_HOST}"]
                schemes = ["https"]
                methods = ["POST"]
                paths = ["/v1/events"]
                """)
            )
        elif kind == 0:
            blocks.append(
                f'[[destination]]\nname = "svc-{number:02d}"\nhosts = ["svc{number}.example.com"]\n'
                'schemes = ["https"]\n'
            )
        elif kind == 1:
            blocks.append(
                f'[[destination]]\nname = "cdn-{number:02d}"\n'
                f'hosts = ["*.cdn{number}.example.net", "static{number}.example.net"]\n'
            )
        elif kind == 2:
            blocks.append(
                f'[[destination]]\nname = "net-{number:02d}"\nhosts = ["10.{number}.0.0/16"]\n'
                "ports = [8080, 8443]\n"
            )
        elif kind == 3:
            blocks.append(
                f'[[destination]]\nname = "internal-{number:02d}"\n'
                f'hosts = ["svc{number}.internal.example.org:8443"]\nmethods = ["GET", "PUT"]\n'
                f'paths = ["/v{number % 3 + 1}/*/status"]\n'
            )
        else:
            blocks.append(
                f'[[destination]]\nname = "telemetry-{number:02d}"\n'
                f'hosts = ["t{number}.telemetry.example.com"]\nmethods = ["POST"]\n'
                '[destination.payload]\nfields = ["event", "count"]\nrequired = ["event"]\n'
            )
    return "\n".join(blocks)


PYTEST_INI = """\
[pytest]
asyncio_default_fixture_loop_scope = function
"""

CONFTEST_HTTP = '''
"""Generated by benchmarks/run.py: a tracemalloc snapshot once the plugin's summary is out."""
import os

import pytest


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter):
    path = os.environ.get("BENCH_TRACEMALLOC")
    if path:
        import tracemalloc

        if tracemalloc.is_tracing():
            tracemalloc.take_snapshot().dump(path + ".end")
'''

TEST_HTTP = r'''
"""Generated by benchmarks/run.py: one test per case; each times its own loop."""
import gc
import json
import os
import resource
import socket
import struct
import sys
import time

import httpx
import requests
import responses
import respx

N = int(os.environ.get("BENCH_N", "2000"))
WARMUP = int(os.environ.get("BENCH_WARMUP", "50"))
CLEAR_EVERY = int(os.environ.get("BENCH_CLEAR_EVERY", "100"))
GET_URL = "https://__GET_HOST__/v1/items"
PAYLOAD_URL = "https://__PAYLOAD_HOST__/api/check"
BODY = {
    "version": "2024.1.3",
    "installationId": "6f1c2b9e-3a4d-4e5f-8a7b-1c2d3e4f5a6b",
    "event": "start",
}


def _ours(function):
    code = getattr(function, "__code__", None)
    return code is not None and "pytest_outbound" in code.co_filename


def _backstop_on():
    backstop = sys.modules.get("pytest_outbound._backstop")
    switch = getattr(backstop, "_SWITCH", None)
    return getattr(switch, "current", None) is not None


def _loop(one, count, clear):
    """``count`` calls; the mock's call log emptied every CLEAR_EVERY of them (see run.py)."""
    every = CLEAR_EVERY if clear is not None else 0
    for i in range(count):
        one(i)
        if every and i % every == every - 1:
            clear()


def _responses_log(mock, registered):
    return lambda: (mock.calls.reset(), registered.calls.reset())


def _respx_log(router, route):
    return lambda: (router.calls.clear(), route.calls.clear())


def _timed(name, one, clear=None, **extra):
    _loop(one, WARMUP, clear)
    gc.collect()  # the loop pays for its own collections, not one start-up left nearly due
    profile_path = os.environ.get("BENCH_PROFILE")
    trace_path = os.environ.get("BENCH_TRACEMALLOC")
    profiler = None
    if trace_path:
        import tracemalloc

        tracemalloc.start(int(os.environ.get("BENCH_TRACEMALLOC_FRAMES", "10")))
    if profile_path:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    start = time.perf_counter()
    _loop(one, N, clear)
    elapsed = time.perf_counter() - start
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile_path)
    if trace_path:
        tracemalloc.take_snapshot().dump(trace_path)  # still tracing: the conftest dumps again
    result = {
        "case": name,
        "n": N,
        "elapsed": elapsed,
        "maxrss_after_loop_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "package_file": getattr(sys.modules.get("pytest_outbound"), "__file__", None),
        "patched": {
            "requests": _ours(requests.Session.send),
            "httpx": _ours(httpx.Client._send_single_request),
            # the audit hook beneath every socket, switched on for the session (or, in a
            # plugin from before it, a patched socket function)
            "socket": _backstop_on()
            or any(
                _ours(getattr(owner, attr, None))
                for owner, attr in [
                    (socket.socket, "connect"),
                    (socket, "create_connection"),
                    (socket, "getaddrinfo"),
                ]
            ),
        },
        **extra,
    }
    with open(os.environ["BENCH_OUT"], "w") as out:
        json.dump(result, out)


def test_requests_get():
    session = requests.Session()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        registered = mock.add(responses.GET, GET_URL, json={"ok": True})

        def one(i):
            response = session.get(GET_URL, params={"page": i % 10})
            assert response.status_code == 200

        _timed("requests_get", one, _responses_log(mock, registered))


def test_httpx_get():
    client = httpx.Client()
    with respx.mock(assert_all_called=False) as router:
        route = router.route(method="GET", host="__GET_HOST__", path="/v1/items").mock(
            return_value=httpx.Response(200, json={"ok": True})
        )

        def one(i):
            response = client.get(GET_URL, params={"page": i % 10})
            assert response.status_code == 200

        _timed("httpx_get", one, _respx_log(router, route))


def _post_with_requests(name, body_of):
    session = requests.Session()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        registered = mock.add(responses.POST, PAYLOAD_URL, json={"latest": "2024.2.0"})

        def one(i):
            response = session.post(PAYLOAD_URL, json=body_of(i))
            assert response.status_code == 200

        _timed(name, one, _responses_log(mock, registered))


def _post_with_httpx(name, body_of):
    client = httpx.Client()
    with respx.mock(assert_all_called=False) as router:
        route = router.route(method="POST", host="__PAYLOAD_HOST__", path="/api/check").mock(
            return_value=httpx.Response(200, json={"latest": "2024.2.0"})
        )

        def one(i):
            response = client.post(PAYLOAD_URL, json=body_of(i))
            assert response.status_code == 200

        _timed(name, one, _respx_log(router, route))


def _varied(i):
    """A different body every time: nothing can be remembered."""
    return {**BODY, "event": f"start-{i}"}


def test_requests_payload():
    _post_with_requests("requests_payload", lambda i: BODY)


def test_httpx_payload():
    _post_with_httpx("httpx_payload", lambda i: BODY)


def test_requests_payload_varied():
    _post_with_requests("requests_payload_varied", _varied)


def test_httpx_payload_varied():
    _post_with_httpx("httpx_payload_varied", _varied)


def test_socket_connect():
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(128)
    address = server.getsockname()
    linger = struct.pack("ii", 1, 0)  # reset on close: no TIME_WAIT piles up across runs

    def one(i):
        client = socket.create_connection(address)
        accepted, _ = server.accept()
        accepted.close()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        client.close()

    try:
        _timed("socket_connect", one)
    finally:
        server.close()


def test_memory():
    """N POSTs with 1 KiB JSON bodies; responses' call logs are cleared every 1,000."""
    session = requests.Session()
    url = "https://__EVENTS_HOST__/v1/events"
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        registered = mock.add(responses.POST, url, json={"ok": True})
        template = {"event": "tick", "seq": 0, "blob": ""}
        filler = 1024 - len(json.dumps(template).encode()) - 6

        def one(i):
            body = json.dumps({"event": "tick", "seq": i % 1000000, "blob": "x" * filler})
            body = body.encode()[:1024].ljust(1024)
            response = session.post(url, data=body, headers={"Content-Type": "application/json"})
            assert response.status_code == 200
            if i % 1000 == 999:
                mock.calls.reset()
                registered.calls.reset()

        _timed("memory", one)
'''


def suite_files(root: Path, tests: int, per_file: int = 100, name: str = "suite") -> None:
    """``tests`` trivial tests (no network), ``per_file`` to a module."""
    suite = root / name
    suite.mkdir()
    (suite / "pytest.ini").write_text(PYTEST_INI)
    for start in range(0, tests, per_file):
        lines = ["import pytest\n\n"]
        for number in range(start, min(start + per_file, tests)):
            if number % 10 == 0:
                lines.append(
                    f"@pytest.mark.parametrize('x', [1])\ndef test_{number:05d}(x):\n"
                    f"    assert x == 1\n\n"
                )
            else:
                lines.append(
                    f"def test_{number:05d}():\n    assert {number} + 1 == {number + 1}\n\n"
                )
        (suite / f"test_mod_{start // per_file:03d}.py").write_text("".join(lines))


def workspace(keep: bool, suite_tests: int) -> Path:
    root = Path(tempfile.mkdtemp(prefix="outbound-bench-"))
    (root / "policy.toml").write_text(policy_toml())
    http = root / "http"
    http.mkdir()
    (http / "pytest.ini").write_text(PYTEST_INI)
    (http / "conftest.py").write_text(CONFTEST_HTTP)
    (http / "test_http.py").write_text(
        TEST_HTTP.replace("__GET_HOST__", GET_HOST)
        .replace("__PAYLOAD_HOST__", PAYLOAD_HOST)
        .replace("__EVENTS_HOST__", EVENTS_HOST)
    )
    suite_files(root, suite_tests)
    suite_files(root, 1, name="suite-1")  # the same start-up, one test: the fixed cost
    if keep:
        print(f"workspace: {root}")
    return root


# ---------------------------------------------------------------------------------------------
# running children
# ---------------------------------------------------------------------------------------------


@dataclass
class Child:
    wall: float
    maxrss_mb: float
    returncode: int
    output: str
    inner: dict[str, Any] | None = None
    #: CPU seconds the process used (user + system, ``os.wait4``): unlike ``wall``, not the
    #: time it waited for a core the shared machine gave to someone else.
    cpu: float = 0.0

    @property
    def recorded(self) -> int | None:
        """Requests the plugin's summary says it observed (None when it printed none)."""
        found = re.search(r"mode: \w+; (\d+) outbound request", self.output)
        return int(found.group(1)) if found else None


#: Children keep their bytecode here (set by ``main``), as a user's machine keeps it in
#: ``__pycache__``: with PYTHONDONTWRITEBYTECODE=1 every child would compile the plugin (and the
#: generated tests) from source every time, and start-up would be measured wrong.
PYCACHE: dict[str, str] = {}


def package_root() -> Path:
    """Where the measured pytest_outbound lives: the repository, or a ``--ref`` snapshot."""
    return Path(PYCACHE.get("package_root", str(ROOT)))


def snapshot(ref: str, root: Path) -> None:
    """``git archive REF`` of the package (and matching.py) into ``root/package``."""
    target = root / "package"
    target.mkdir()
    archive = subprocess.run(
        ["git", "archive", ref, "pytest_outbound", "benchmarks/matching.py"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    PYCACHE["package_root"] = str(target)


def child_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTEST_", "BENCH_", "GITHUB_"))
        and k not in ("PYTHONBREAKPOINT", "PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")
    }
    env["PYTHONHASHSEED"] = "0"
    if "prefix" in PYCACHE:
        env["PYTHONPYCACHEPREFIX"] = PYCACHE["prefix"]
    if "package_root" in PYCACHE:  # a --ref snapshot comes before the editable install
        env["PYTHONPATH"] = os.pathsep.join(
            [PYCACHE["package_root"], *filter(None, [env.get("PYTHONPATH")])]
        )
    env.update(extra)
    return env


def run_child(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 600) -> Child:
    """Run one process; its wall time and its own peak RSS (``os.wait4``)."""
    with tempfile.TemporaryFile() as out:
        start = time.perf_counter()
        proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode("utf-8", "replace")
    return Child(
        wall, usage.ru_maxrss / 1024, proc.returncode, text, cpu=usage.ru_utime + usage.ru_stime
    )


def other_plugins_disabled() -> list[str]:
    """``-p no:NAME`` for every installed pytest plugin but the two measured: this venv's
    development plugins (hypothesis, respx, pytest-recording, ...) are no part of a suite that
    uses neither pytest-outbound nor pytest-socket."""
    from importlib.metadata import entry_points

    names = sorted({ep.name for ep in entry_points(group="pytest11")} - {"outbound", "socket"})
    return [arg for name in names for arg in ("-p", f"no:{name}")]


def pytest_args(
    variant: str, root: Path, target: list[str], extra: Sequence[str] = ()
) -> list[str]:
    base = [PY, "-m", "pytest", "-p", "no:cacheprovider", "-q", *target]
    # Each plugin is measured alone: pytest-socket (the suite case's comparison, installed by
    # the bench extra) is not loaded but where it is measured. Loaded and left inactive, it still
    # runs its own per-test hooks (three marker lookups in setup, restoring socket in teardown):
    # about 48K instructions a test that are neither pytest-outbound's nor the baseline's.
    without_socket = ["-p", "no:socket"]
    # One token, "--outbound-policy=PATH": given as two, pytest takes the path for a test
    # argument when it looks for the directories to start collecting from, and the suite gets
    # an extra directory node above it (every fixture and marker lookup walks one more level).
    policy = "--outbound-policy=" + str(root / "policy.toml")
    if variant.endswith("-alone"):  # no other installed plugin either (see the suite case)
        variant = variant.removesuffix("-alone")
        base = [*base, *other_plugins_disabled()]
    if variant == "on":
        return [*base, *without_socket, "--outbound-mode", "enforce", policy, *extra]
    if variant == "on-local":
        return [
            *base,
            *without_socket,
            "--outbound-mode",
            "enforce",
            policy,
            "-o",
            "outbound_local=enforce",
            "-o",
            "outbound_allow=127.0.0.1",
            *extra,
        ]
    if variant == "off":
        return [*base, *without_socket, "-p", "no:outbound", *extra]
    if variant == "socket":
        return [*base, "-p", "no:outbound", "--disable-socket", *extra]
    raise ValueError(variant)


def run_test(
    root: Path,
    test: str,
    variant: str,
    n: int,
    warmup: int = 50,
    profile: Path | None = None,
    **extra_env: str,
) -> Child:
    """One generated test in a fresh pytest process; reads back what the test measured."""
    out = root / f"inner-{test}-{variant}.json"
    out.unlink(missing_ok=True)
    env = child_env(BENCH_N=str(n), BENCH_WARMUP=str(warmup), BENCH_OUT=str(out), **extra_env)
    if profile is not None:
        env["BENCH_PROFILE"] = str(profile)
    http = root / "http"
    child = run_child(pytest_args(variant, root, [f"test_http.py::{test}"]), http, env)
    if child.returncode != 0 or not out.exists():
        raise RuntimeError(
            f"{test} ({variant}) failed with exit code {child.returncode}:\n{child.output[-3000:]}"
        )
    child.inner = json.loads(out.read_text())
    package = child.inner.get("package_file")
    if variant != "off" and not str(package).startswith(str(package_root())):
        raise RuntimeError(f"{test} ({variant}) imported pytest_outbound from {package}")
    return child


def interleaved(
    reps: int, variants: list[str], one: Any, label: str, warm_up: bool = True
) -> dict[str, list[Child]]:
    """``reps`` repetitions of every variant, rotating their order; one warm-up run each.

    Rotated (ABC, BCA, CAB), so that over a multiple of ``len(variants)`` repetitions every
    variant runs in every position equally often (with two: AB, BA). Reversing instead
    (ABC, CBA) left the middle variant, the baseline of the suite case, always in the middle.
    """
    runs: dict[str, list[Child]] = {v: [] for v in variants}
    for variant in variants if warm_up else ():
        one(variant)  # warm-up: bytecode caches, page cache; not counted
    for rep in range(reps):
        shift = rep % len(variants)
        order = variants[shift:] + variants[:shift]
        for variant in order:
            runs[variant].append(one(variant))
        print(f"  {label}: repetition {rep + 1}/{reps} done", flush=True)
    return runs


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


# ---------------------------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------------------------


@dataclass
class Row:
    case: str
    measure: str
    value: float
    unit: str
    baseline: float | None = None
    target: str = ""
    passed: bool | None = None
    note: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def json(self) -> dict[str, Any]:
        return {
            "case": self.case,
            "measure": self.measure,
            "value": round(self.value, 6),
            "unit": self.unit,
            "baseline": None if self.baseline is None else round(self.baseline, 6),
            "target": self.target,
            "result": None if self.passed is None else ("PASS" if self.passed else "FAIL"),
            "note": self.note,
            "details": self.details,
        }


def fmt(value: float, unit: str) -> str:
    if unit == "x":
        return f"{value:.3f}x"
    if unit == "s":
        return f"{value:.3f} s"
    if unit == "ms":
        return f"{value:.1f} ms"
    if unit == "MB":
        return f"{value:.1f} MB"
    if unit == "us":
        return f"{value:.1f} us"
    if unit == "/s":
        return f"{value:,.0f}/s"
    return f"{value:g} {unit}"


def table(rows: list[Row]) -> str:
    header = ("case", "measure", "value", "target", "result", "note")
    lines = [header]
    for r in rows:
        result = "" if r.passed is None else ("PASS" if r.passed else "FAIL")
        lines.append((r.case, r.measure, fmt(r.value, r.unit), r.target, result, r.note))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for index, line in enumerate(lines):
        out.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip())
        if index == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def markdown_table(rows: list[Row]) -> str:
    out = ["| case | measure | value | target | result | note |", "|---|---|---|---|---|---|"]
    for r in rows:
        result = "" if r.passed is None else ("**PASS**" if r.passed else "**FAIL**")
        out.append(
            f"| {r.case} | {r.measure} | {fmt(r.value, r.unit)} | {r.target} | {result} |"
            f" {r.note} |"
        )
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# cases
# ---------------------------------------------------------------------------------------------


@dataclass
class Settings:
    quick: bool
    reps: int
    suite_reps: int
    n: int
    suite_tests: int
    memory_n: int
    memory_reps: int
    import_reps: int


def http_case(
    root: Path,
    s: Settings,
    case: str,
    tests: list[tuple[str, str]],
    limit: float,
    on: str = "on",
) -> tuple[list[Row], dict[str, Any]]:
    """Interleaved on/off runs of each test: in-test ratio (target) and whole-process ratio."""
    rows: list[Row] = []
    raw: dict[str, Any] = {}
    for entry, label in tests:
        # "test_x+kept": the same test with the mock keeping its whole call log
        test, _, mode = entry.partition("+")
        env = {"BENCH_CLEAR_EVERY": "0"} if mode == "kept" else {}
        # no target: the "varied" tests (the case repeats one body), the "kept" ones
        # (see CLEAR_EVERY) and sockets (the issue sets none)
        informational = test.endswith("_varied") or mode or case == "socket"
        target = None if informational else limit
        runs = interleaved(
            s.reps,
            [on, "off"],
            lambda v, t=test, e=env: run_test(root, t, v, s.n, **e),
            f"{case} {label}",
        )
        inner = {v: [c.inner["elapsed"] for c in cs] for v, cs in runs.items()}  # type: ignore[index]
        wall = {v: [c.wall for c in cs] for v, cs in runs.items()}
        t_on, t_off = median(inner[on]), median(inner["off"])
        ratio = t_on / t_off
        per_request_us = (t_on - t_off) / s.n * 1e6
        patched = runs[on][0].inner["patched"]  # type: ignore[index]
        recorded = runs[on][0].recorded
        note = (
            f"{t_on / s.n * 1e6:.0f} vs {t_off / s.n * 1e6:.0f} us/request"
            f" (+{per_request_us:.1f} us); {recorded} recorded"
        )
        if case == "socket":
            seen = patched["socket"] or (recorded or 0) >= s.n
            note += "" if seen else "; plugin does not see raw sockets (no backstop yet)"
        rows.append(
            Row(
                case,
                f"{label}: in-test time, on/off",
                ratio,
                "x",
                None,
                f"<= {target:.2f}" if target is not None else "",
                ratio <= target if target is not None else None,
                note,
                {
                    "test": entry,
                    "median_on_s": t_on,
                    "median_off_s": t_off,
                    "n": s.n,
                    "overhead_us_per_request": per_request_us,
                    "recorded_on": recorded,
                    "patched_on": patched,
                },
            )
        )
        w_on, w_off = median(wall[on]), median(wall["off"])
        rows.append(
            Row(
                case,
                f"{label}: whole process, on/off",
                w_on / w_off,
                "x",
                None,
                "",
                None,
                f"{w_on:.2f} s vs {w_off:.2f} s",
                {"median_on_s": w_on, "median_off_s": w_off},
            )
        )
        raw[label] = {"inner_s": inner, "wall_s": wall, "reps": s.reps}
    return rows, raw


def suite_case(root: Path, s: Settings) -> tuple[list[Row], dict[str, Any]]:
    rows, raw = suite_rows(root, s, "")
    alone_rows, raw["alone"] = suite_rows(root, s, "-alone")
    return rows + alone_rows, raw


def suite_rows(root: Path, s: Settings, setting: str) -> tuple[list[Row], dict[str, Any]]:
    """The suite case in one setting: "" (every installed plugin loaded, as in this venv) or
    "-alone" (only the plugin measured, ``other_plugins_disabled``)."""
    where = " (only the plugin measured)" if setting else ""

    def runner(suite: str) -> Callable[[str], Child]:
        def one(variant: str) -> Child:
            args = pytest_args(variant + setting, root, [])
            child = run_child(args, root / suite, child_env())
            if child.returncode != 0:
                raise RuntimeError(f"{suite} ({variant}{setting}) failed:\n{child.output[-3000:]}")
            return child

        return one

    one, one_test = runner("suite"), runner("suite-1")
    runs = interleaved(s.suite_reps, ["on", "off", "socket"], one, f"suite{setting}")
    wall = {v: [c.wall for c in cs] for v, cs in runs.items()}
    on, off, sock = median(wall["on"]), median(wall["off"]), median(wall["socket"])
    per_test_us = (on - off) / s.suite_tests * 1e6
    cpu = {v: median([c.cpu for c in cs]) for v, cs in runs.items()}
    small = interleaved(s.suite_reps, ["on", "off", "socket"], one_test, f"suite{setting}, 1 test")
    small_wall = {v: [c.wall for c in cs] for v, cs in small.items()}
    fixed = median(small_wall["on"]) - median(small_wall["off"])
    socket_fixed = median(small_wall["socket"]) - median(small_wall["off"])
    per_test_only_us = (on - off - fixed) / s.suite_tests * 1e6
    socket_per_test_us = (sock - off - socket_fixed) / s.suite_tests * 1e6
    case = "suite" + setting
    rows = [
        Row(
            case,
            f"{s.suite_tests} tests: outbound enforce / no plugin{where}",
            on / off,
            "x",
            None,
            "<= 1.03",
            on / off <= 1.03,
            f"{on:.2f} s vs {off:.2f} s (+{per_test_us:.0f} us/test incl. start-up);"
            f" CPU time {cpu['on'] / cpu['off']:.3f}x",
            {
                "median_on_s": on,
                "median_off_s": off,
                "overhead_us_per_test": per_test_us,
                "cpu_ratio": cpu["on"] / cpu["off"],
            },
        ),
        Row(
            case,
            f"{s.suite_tests} tests: pytest-socket --disable-socket / no plugin{where}",
            sock / off,
            "x",
            None,
            "",
            None,
            f"{sock:.2f} s; CPU time {cpu['socket'] / cpu['off']:.3f}x",
            {"median_socket_s": sock, "cpu_ratio": cpu["socket"] / cpu["off"]},
        ),
        Row(
            case,
            f"outbound / pytest-socket{where}",
            on / sock,
            "x",
            None,
            "<= 1.00",
            on <= sock,
            "outbound must be no slower than pytest-socket; CPU time"
            f" {cpu['on'] / cpu['socket']:.3f}x",
            {"cpu_ratio": cpu["on"] / cpu["socket"]},
        ),
        Row(
            case,
            f"start-up: a 1-test suite, on - off{where}",
            fixed * 1000,
            "ms",
            None,
            "",
            None,
            f"{median(small_wall['on']):.3f} s vs {median(small_wall['off']):.3f} s; the rest"
            f" of the {s.suite_tests}-test overhead is {per_test_only_us:.1f} us/test."
            f" pytest-socket: start-up {socket_fixed * 1000:+.1f} ms,"
            f" {socket_per_test_us:.1f} us/test",
            {
                "fixed_s": fixed,
                "per_test_us_after_start_up": per_test_only_us,
                "socket_fixed_s": socket_fixed,
                "socket_per_test_us_after_start_up": socket_per_test_us,
            },
        ),
    ]
    cpu_s = {v: [c.cpu for c in cs] for v, cs in runs.items()}
    return rows, {
        "wall_s": wall,
        "cpu_s": cpu_s,
        "one_test_wall_s": small_wall,
        "reps": s.suite_reps,
    }


def callgrind_instructions(args: list[str], cwd: Path) -> int:
    """Instructions one process executes (callgrind's "Collected" total)."""
    run_child(args, cwd, child_env())  # bytecode compiled before the counted run
    counted = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *args]
    # Three hours: on a shared machine under load (session 14: a load average of 10 on two
    # cores), one count of the 3,000-test suite with every plugin ran past half an hour.
    child = run_child(counted, cwd, child_env(), timeout=3 * 3600)
    if child.returncode != 0:
        raise RuntimeError(f"{' '.join(counted)} failed:\n{child.output[-3000:]}")
    for line in child.output.splitlines():
        if "Collected :" in line:
            return int(line.rsplit(":", 1)[1].strip())
    raise RuntimeError(f"no instruction count in valgrind's output:\n{child.output[-2000:]}")


def suite_instructions_case(root: Path, s: Settings) -> tuple[list[Row], dict[str, Any]]:
    """The suite case's two settings counted in instructions: every installed plugin loaded
    (raw results at the top level) and only the plugin measured ("-alone", under "alone")."""
    if shutil.which("valgrind") is None:
        row = Row("suite-instructions", "skipped", 0, "", note="valgrind is not installed")
        return [row], {"skipped": "valgrind not found"}
    settings = ("", "-alone")
    jobs = [
        (variant + setting, suite)
        for setting in settings
        for variant in ("off", "on", "socket")
        for suite in ("suite", "suite-1")
    ]
    found: dict[tuple[str, str], int] = {}

    def count(job: tuple[str, str]) -> None:
        variant, suite = job
        found[job] = callgrind_instructions(pytest_args(variant, root, []), root / suite)
        print(f"  {variant}, {suite}: {found[job]:,} instructions", flush=True)

    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(count, jobs))  # list(): a count's error is raised here
    rows: list[Row] = []
    raw: dict[str, Any] = {}
    for setting in settings:
        counts = {
            v: {suite: found[v + setting, suite] for suite in ("suite", "suite-1")}
            for v in ("off", "on", "socket")
        }
        new, measured = instruction_rows(counts, s.suite_tests, setting)
        rows.extend(new)
        if setting:
            raw["alone"] = measured
        else:
            raw.update(measured)
    return rows, raw


def instruction_rows(
    counts: dict[str, dict[str, int]], n: int, setting: str
) -> tuple[list[Row], dict[str, Any]]:
    """The rows of one setting from its counts (variant -> suite -> instructions)."""
    where = " (only the plugin measured)" if setting else ""
    case = "suite-instructions" + setting
    per_test = {v: (c["suite"] - c["suite-1"]) / (n - 1) for v, c in counts.items()}
    fixed = {v: c["suite-1"] for v, c in counts.items()}

    def total(variant: str) -> float:
        return float(counts[variant]["suite"])

    ratio = total("on") / total("off")
    socket_ratio = total("socket") / total("off")
    extra = {v: per_test[v] - per_test["off"] for v in per_test}
    start_up = {v: fixed[v] - fixed["off"] for v in fixed}
    rows = [
        Row(
            case,
            f"{n} tests: outbound enforce / no plugin{where}",
            ratio,
            "x",
            None,
            "<= 1.03",
            ratio <= 1.03,
            f"start-up {start_up['on'] / 1e6:+.0f}M instructions,"
            f" per test {extra['on'] / 1e3:+.0f}K (no plugin: {per_test['off'] / 1e6:.2f}M)",
            {
                "counts": counts,
                "per_test": per_test,
                "start_up_extra": start_up["on"],
                "per_test_extra": extra["on"],
            },
        ),
        Row(
            case,
            f"{n} tests: pytest-socket / no plugin{where}",
            socket_ratio,
            "x",
            None,
            "",
            None,
            f"start-up {start_up['socket'] / 1e6:+.0f}M, per test {extra['socket'] / 1e3:+.0f}K",
        ),
        Row(
            case,
            f"outbound / pytest-socket{where}",
            total("on") / total("socket"),
            "x",
            None,
            "<= 1.00",
            total("on") <= total("socket"),
            "outbound must be no slower than pytest-socket",
        ),
    ]
    return rows, {"counts": counts, "per_test": per_test, "tests": n}


def matching_case(s: Settings) -> tuple[list[Row], dict[str, Any]]:
    matching = package_root() / "benchmarks" / "matching.py"
    args = [PY, str(matching)] + (["--quick"] if s.quick else [])
    child = run_child(args, package_root(), child_env())
    if child.returncode != 0:
        raise RuntimeError(f"matching.py failed:\n{child.output[-3000:]}")
    line = next(
        (
            ln
            for ln in reversed(child.output.splitlines())
            if ln.startswith("{") and "matching" in ln
        ),
        None,
    )
    if line is None:
        raise RuntimeError(f"matching.py printed no result line:\n{child.output[-3000:]}")
    data = json.loads(line)
    rates = data["decisions_per_second"]
    ratio = float(data["ratio_10000_vs_10"])
    rows = [
        Row("matching", f"{int(size):,} patterns", float(rate), "/s", note="decisions per second")
        for size, rate in rates.items()
    ]
    rows.append(
        Row(
            "matching",
            "time per decision, 10,000 vs 10",
            ratio,
            "x",
            None,
            "<= 1.20",
            ratio <= 1.2,
            f"median of {data['repetitions']} (benchmarks/matching.py)",
        )
    )
    return rows, data


def memory_case(root: Path, s: Settings) -> tuple[list[Row], dict[str, Any]]:
    runs = interleaved(
        s.memory_reps,
        ["on", "off"],
        lambda v: run_test(root, "test_memory", v, s.memory_n, warmup=0),
        "memory",
        warm_up=False,
    )
    # the same process with no request at all: what the plugin costs before the first one
    empty = {v: run_test(root, "test_memory", v, 0, warmup=0) for v in ("on", "off")}
    rss = {v: [c.maxrss_mb for c in cs] for v, cs in runs.items()}
    loop_end = {v: [c.inner["maxrss_after_loop_kb"] / 1024 for c in cs] for v, cs in runs.items()}  # type: ignore[index]
    wall = {v: [c.wall for c in cs] for v, cs in runs.items()}
    on, off = median(rss["on"]), median(rss["off"])
    on_loop = median(loop_end["on"])
    fixed = empty["on"].maxrss_mb - empty["off"].maxrss_mb
    per_request = (on - off - fixed) * 1024 * 1024 / s.memory_n
    recorded = runs["on"][0].recorded
    limit = 150.0
    rows = [
        Row(
            "memory",
            f"peak RSS, {s.memory_n:,} x 1 KiB POSTs, plugin on",
            on,
            "MB",
            None,
            f"<= {limit:.0f} MB" if s.memory_n == 50_000 else "(for 50,000)",
            on <= limit if s.memory_n == 50_000 else None,
            f"off: {off:.1f} MB; on, when the loop ended: {on_loop:.1f} MB (the rest is the"
            f" session's end); plugin with no request: +{fixed:.1f} MB; per request:"
            f" {per_request:,.0f} B; {recorded} recorded",
            {
                "median_on_mb": on,
                "median_off_mb": off,
                "median_on_at_loop_end_mb": on_loop,
                "median_off_at_loop_end_mb": median(loop_end["off"]),
                "fixed_overhead_mb": fixed,
                "bytes_per_request": per_request,
                "n": s.memory_n,
            },
        ),
        Row(
            "memory",
            "wall time of that run, on/off",
            median(wall["on"]) / median(wall["off"]),
            "x",
            None,
            "",
            None,
            f"{median(wall['on']):.1f} s vs {median(wall['off']):.1f} s",
        ),
    ]
    raw = {
        "rss_mb": rss,
        "rss_at_loop_end_mb": loop_end,
        "wall_s": wall,
        "reps": s.memory_reps,
        "no_request_rss_mb": {v: c.maxrss_mb for v, c in empty.items()},
    }
    return rows, raw


IMPORT_LINE = re.compile(r"^import time:\s+(\d+)\s+\|\s+(\d+)\s+\|( +)(\S+)\s*$")


def parse_importtime(text: str) -> dict[str, Any]:
    """Cumulative time of the outermost pytest_outbound imports, and what they pulled in."""
    entries = []
    for line in text.splitlines():
        found = IMPORT_LINE.match(line)
        if found:
            self_us, cumulative_us, indent, name = found.groups()
            entries.append((len(indent) // 2, name, int(self_us), int(cumulative_us)))
    # importtime prints children before parents; walk backwards to see parents first
    total = 0
    own_self = 0
    pulled: dict[str, int] = {}
    own_modules: dict[str, int] = {}
    by_importer: dict[str, dict[str, int]] = {}
    stack: list[tuple[int, str | None]] = []  # (depth, nearest pytest_outbound ancestor)
    for depth, name, self_us, cumulative_us in reversed(entries):
        while stack and stack[-1][0] >= depth:
            stack.pop()
        importer = stack[-1][1] if stack else None
        ours = name == "pytest_outbound" or name.startswith("pytest_outbound.")
        if ours and importer is None:
            total += cumulative_us
        if ours:
            own_self += self_us
            own_modules[name] = self_us
        elif importer is not None:
            package = name.partition(".")[0]
            pulled[package] = pulled.get(package, 0) + self_us
            mine = by_importer.setdefault(importer, {})
            mine[package] = mine.get(package, 0) + self_us
        stack.append((depth, name if ours else importer))
    top = sorted(pulled.items(), key=lambda kv: -kv[1])
    return {
        "total_us": total,
        "own_self_us": own_self,
        "pulled_in_self_us": top,
        "own_modules_self_us": sorted(own_modules.items(), key=lambda kv: -kv[1]),
        "pulled_in_by_module": {
            k: sorted(v.items(), key=lambda kv: -kv[1]) for k, v in by_importer.items()
        },
    }


def import_case(s: Settings) -> tuple[list[Row], dict[str, Any]]:
    commands = {
        "as specified": "import requests, httpx, urllib3; import pytest_outbound._plugin",
        "pytest pre-imported": (
            "import requests, httpx, urllib3, pytest; import pytest_outbound._plugin"
        ),
    }
    samples: dict[str, list[dict[str, Any]]] = {k: [] for k in commands}
    for code in commands.values():  # warm-up: writes the bytecode caches
        subprocess.run([PY, "-c", code], cwd=package_root(), env=child_env(), check=True)
    for _ in range(s.import_reps):
        for label, code in commands.items():
            child = subprocess.run(
                [PY, "-X", "importtime", "-c", code],
                cwd=package_root(),
                env=child_env(),
                capture_output=True,
                text=True,
                check=True,
            )
            samples[label].append(parse_importtime(child.stderr))
    rows = []
    for label, parsed in samples.items():
        total_ms = median([p["total_us"] for p in parsed]) / 1000
        own_ms = median([p["own_self_us"] for p in parsed]) / 1000
        pulled = parsed[len(parsed) // 2]["pulled_in_self_us"][:4]
        pulled_text = ", ".join(f"{name} {us / 1000:.1f}" for name, us in pulled)
        pulled_total = median([sum(us for _, us in p["pulled_in_self_us"]) for p in parsed])
        rows.append(
            Row(
                "import",
                f"import pytest_outbound._plugin ({label})",
                total_ms,
                "ms",
                None,
                "<= 50 ms",
                total_ms <= 50,
                f"pytest_outbound's own modules {own_ms:.1f} ms; packages it imports"
                f" {pulled_total / 1000:.1f} ms, most: {pulled_text}",
                {
                    "median_total_ms": total_ms,
                    "median_own_self_ms": own_ms,
                    "command": f'python -X importtime -c "{commands[label]}"',
                },
            )
        )
    return rows, {"samples": samples, "reps": s.import_reps}


# ---------------------------------------------------------------------------------------------
# profiling the misses
# ---------------------------------------------------------------------------------------------


def print_import_profile(raw: dict[str, Any]) -> str:
    """Which pytest_outbound module costs what, and which packages each one pulls in."""
    lines = ["### import: what importing the plugin costs"]
    for label, samples in raw["samples"].items():
        middle = sorted(samples, key=lambda p: p["total_us"])[len(samples) // 2]
        lines += [
            "",
            f"{label} (the median run, {middle['total_us'] / 1000:.1f} ms): pytest_outbound's own"
            f" modules (self time) {middle['own_self_us'] / 1000:.1f} ms; packages they import",
            "",
            "| pytest_outbound module | self ms | packages it imports first (self ms) |",
            "|---|---|---|",
        ]
        pulled = middle["pulled_in_by_module"]
        for name, self_us in middle["own_modules_self_us"]:
            packages = sorted(pulled.get(name, []), key=lambda kv: -kv[1])
            total = sum(us for _, us in packages)
            shown = ", ".join(f"{p} {us / 1000:.1f}" for p, us in packages[:6])
            more = f" (+{len(packages) - 6} more)" if len(packages) > 6 else ""
            if self_us >= 300 or total >= 300:
                lines.append(
                    f"| `{name}` | {self_us / 1000:.1f} | {total / 1000:.1f} ms: {shown}{more} |"
                )
    text = "\n".join(lines)
    print(text + "\n")
    return text


def _fname(key: tuple[str, int, str]) -> str:
    filename, line, func = key
    if "pytest_outbound" in filename:
        filename = "pytest_outbound/" + filename.split("pytest_outbound/", 1)[1]
    elif "site-packages/" in filename:
        filename = filename.split("site-packages/", 1)[1]
    elif "/lib/python" in filename:
        filename = "stdlib:" + filename.rsplit("/", 1)[1]
    return f"{filename}:{line}({func})"


#: Library functions an interceptor wraps: the wrapper calling them is passing the request on,
#: and their time is the client's own, not the plugin's.
PASS_THROUGH = frozenset(
    {
        "request",
        "send",
        "_send_single_request",
        "build_request",
        "_transport_for_url",
        "urlopen",
        "_make_request",
        "getresponse",
        "putrequest",
        "endheaders",
        "_request",
        "_send_request",
        "open",
        "do_open",
        "connect",
        "create_connection",
        "getaddrinfo",
    }
)


def _ours(key: tuple[str, int, str]) -> bool:
    return "/pytest_outbound/" in key[0]


def _pass_through(caller: tuple[str, int, str], callee: tuple[str, int, str]) -> bool:
    wrapper = "/_interceptors/" in caller[0] or caller[0].endswith("/_backstop.py")
    # builtins are named like "<built-in method _socket.getaddrinfo>"
    name = callee[2].rstrip(">").rpartition(" ")[2].rpartition(".")[2]
    return wrapper and not _ours(callee) and name in PASS_THROUGH


def summarise_profile(
    path: Path, per: int, unit: str = "request", top: int = 15, measured_us: float | None = None
) -> dict[str, Any]:
    """pytest_outbound functions by self and cumulative time, and the library calls they make.

    ``plugin_inclusive_us``: time from entering plugin code (an edge from library or test code
    into it) to leaving it, minus the wrapped originals it passes the request on to. Divided by
    ``measured_us`` (the benchmark's overhead per request without a profiler) it gives
    cProfile's inflation, and each function's estimate ``est_us`` = cumulative / inflation.
    A wrapper's cumulative time is shown without the original it calls.
    """
    stats = pstats.Stats(str(path))
    table_: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in table_.values())
    own_self = sum(v[2] for k, v in table_.items() if _ours(k))
    entered = 0.0
    passed_by: dict[Any, float] = {}  # wrapper -> time spent in the originals it calls
    called: list[tuple[Any, float, float, int]] = []
    for key, (_cc, _nc, _tt, _ct, callers) in table_.items():
        if _ours(key):
            entered += sum(v[3] for c, v in callers.items() if not _ours(c))
            continue
        for c, v in callers.items():
            if _pass_through(c, key):
                passed_by[c] = passed_by.get(c, 0.0) + v[3]
        edge = [v for c, v in callers.items() if _ours(c) and not _pass_through(c, key)]
        if edge:
            called.append(
                (key, sum(e[3] for e in edge), sum(e[2] for e in edge), sum(e[1] for e in edge))
            )
    called.sort(key=lambda item: -item[1])
    inclusive = (entered - sum(passed_by.values())) / per * 1e6
    inflation = inclusive / measured_us if measured_us and measured_us > 0 else None

    def est(value_us: float) -> float | None:
        return None if not inflation else value_us / inflation

    rows = []
    for key, v in table_.items():
        if not _ours(key):
            continue
        passed = passed_by.get(key, 0.0) / per * 1e6
        cumulative = v[3] / per * 1e6 - passed
        rows.append(
            {
                "function": _fname(key),
                "calls_per": v[1] / per,
                "self_us": v[2] / per * 1e6,
                "cumulative_us": cumulative,
                "est_us": est(cumulative),
                "wrapped_original_excluded_us": passed,
            }
        )
    return {
        "unit": unit,
        "per": per,
        "profiled_total_us": total / per * 1e6,
        "pytest_outbound_self_us": own_self / per * 1e6,
        "plugin_inclusive_us": inclusive,
        "measured_overhead_us": measured_us,
        "cprofile_inflation": inflation,
        "by_self": sorted(rows, key=lambda r: -r["self_us"])[:top],
        "repeated_by_cumulative": sorted(
            (r for r in rows if r["calls_per"] >= 0.5), key=lambda r: -r["cumulative_us"]
        )[:top],
        "by_cumulative": sorted(rows, key=lambda r: -r["cumulative_us"])[:top],
        "library_calls_from_plugin": [
            {
                "function": _fname(k),
                "calls_per": n / per,
                "cumulative_us": ct / per * 1e6,
                "self_us": tt / per * 1e6,
                "est_us": est(ct / per * 1e6),
            }
            for k, ct, tt, n in called[:top]
        ],
    }


def print_profile(title: str, summary: dict[str, Any]) -> str:
    unit = summary["unit"]
    inflation = summary["cprofile_inflation"]
    measured = summary["measured_overhead_us"]
    calibration = (
        f" The benchmark measured +{measured:.1f} us/{unit} without a profiler, so cProfile"
        f" inflates the plugin's time {inflation:.1f}x here; 'est. us' = cumulative / that."
        if inflation
        else ""
    )
    lines = [
        f"### {title}",
        "",
        f"cProfile, per {unit} (n = {summary['per']:,}): everything profiled"
        f" {summary['profiled_total_us']:.1f} us/{unit}; inside pytest_outbound (entered from"
        f" the client or test, minus the wrapped originals it calls)"
        f" {summary['plugin_inclusive_us']:.1f} us/{unit}, of which its own code's self time"
        f" {summary['pytest_outbound_self_us']:.1f} us.{calibration}",
        "",
        f"| pytest_outbound function (by cumulative) | calls/{unit} | cumulative us | self us"
        f" | est. us | total ms (all {summary['per']:,}) |",
        "|---|---|---|---|---|---|",
    ]

    def e(value: float | None) -> str:
        return "" if value is None else f"{value:.1f}"

    for r in summary["by_cumulative"]:
        lines.append(
            f"| `{r['function']}` | {r['calls_per']:.2f} | {r['cumulative_us']:.1f} |"
            f" {r['self_us']:.1f} | {e(r['est_us'])} |"
            f" {r['cumulative_us'] * summary['per'] / 1000:.1f} |"
        )
    if unit == "test":
        lines += [
            "",
            "Of those, the ones called for every test (at least once per two tests):",
            "",
            f"| pytest_outbound function (by cumulative) | calls/{unit} | cumulative us"
            " | self us | est. us |",
            "|---|---|---|---|---|",
        ]
        for r in summary["repeated_by_cumulative"]:
            lines.append(
                f"| `{r['function']}` | {r['calls_per']:.2f} | {r['cumulative_us']:.1f} |"
                f" {r['self_us']:.1f} | {e(r['est_us'])} |"
            )
    lines += [
        "",
        f"| pytest_outbound function (by self time) | calls/{unit} | self us | cumulative us |",
        "|---|---|---|---|",
    ]
    for r in summary["by_self"]:
        lines.append(
            f"| `{r['function']}` | {r['calls_per']:.2f} | {r['self_us']:.1f} |"
            f" {r['cumulative_us']:.1f} |"
        )
    lines += [
        "",
        f"| library function called by pytest_outbound | calls/{unit} | cumulative us"
        " | self us | est. us |",
        "|---|---|---|---|---|",
    ]
    for r in summary["library_calls_from_plugin"]:
        lines.append(
            f"| `{r['function']}` | {r['calls_per']:.2f} | {r['cumulative_us']:.1f} |"
            f" {r['self_us']:.1f} | {e(r['est_us'])} |"
        )
    text = "\n".join(lines)
    print(text)
    print()
    return text


def profile_test(
    root: Path, test: str, variant: str, n: int, measured_us: float | None = None
) -> dict[str, Any]:
    path = root / f"profile-{test}.prof"
    run_test(root, test, variant, n, profile=path)
    return summarise_profile(path, n, measured_us=measured_us)


#: The originals the interceptors wrap, as py-spy names their frames: time below them is the
#: client's (or the mock's), not the plugin's, even though a plugin frame is above.
WRAPPED_ORIGINALS = (
    "Session.send (requests/sessions.py",
    "Session.request (requests/sessions.py",
    "Client._send_single_request (httpx/_client.py",
    "BaseClient.build_request (httpx/_client.py",
    "Client._transport_for_url (httpx/_client.py",
)
SAMPLE_RATE = 1000


def py_spy() -> str | None:
    found = shutil.which("py-spy")
    beside = Path(PY).parent / "py-spy"
    return found or (str(beside) if beside.exists() else None)


def sample_test(
    root: Path, test: str, variant: str, n: int, measured_us: float | None = None
) -> dict[str, Any]:
    """The plugin-on test under py-spy: the plugin's share of the loop, by source line.

    Shares become us/request against ``measured_us`` (the plugin-on time per request measured
    without a profiler) when given: sampling slows the process a little, and evenly."""
    spy = py_spy()
    if spy is None:
        return {"skipped": "py-spy is not installed (make bench installs it)"}
    samples = root / f"samples-{test}.txt"
    inner = root / f"inner-samples-{test}.json"
    env = child_env(BENCH_N=str(n), BENCH_WARMUP="50", BENCH_OUT=str(inner))
    args = [
        spy,
        "record",
        "--rate",
        str(SAMPLE_RATE),
        "--nonblocking",
        "--format",
        "raw",
        "--output",
        str(samples),
        "--",
        *pytest_args(variant, root, [f"test_http.py::{test}"]),
    ]
    child = run_child(args, root / "http", env)
    if child.returncode != 0 or not samples.exists() or not inner.exists():
        return {"skipped": f"py-spy failed (exit {child.returncode}): {child.output[-500:]}"}
    sampled_us = json.loads(inner.read_text())["elapsed"] / n * 1e6
    per_request_us = measured_us if measured_us is not None else sampled_us
    total = ours = 0
    by_line: dict[str, int] = {}
    for line in samples.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        frames = stack.split(";")
        if not any(f.startswith("_timed ") for f in frames):
            continue  # outside the test's loop
        count = int(count_text)
        total += count
        plugin = [i for i, f in enumerate(frames) if "pytest_outbound/" in f]
        if not plugin:
            continue
        below = frames[plugin[-1] + 1 :]
        if any(original in f for f in below for original in WRAPPED_ORIGINALS):
            continue
        ours += count
        name, _, where = frames[plugin[-1]].rpartition(" (")
        site = "pytest_outbound/" + where.rstrip(")").split("pytest_outbound/", 1)[1]
        key = f"{site} {name}"
        by_line[key] = by_line.get(key, 0) + count
    if not total:
        return {"skipped": "py-spy took no sample in the test's loop"}
    lines = [
        {
            "site": key.split(" ", 1)[0],
            "function": key.split(" ", 1)[1],
            "share": count / total,
            "us": count / total * per_request_us,
            "source": _source_line(key.split(" ", 1)[0]),
        }
        for key, count in sorted(by_line.items(), key=lambda item: -item[1])
    ]
    return {
        "n": n,
        "rate": SAMPLE_RATE,
        "samples_in_loop": total,
        "plugin_share": ours / total,
        "per_request_us": per_request_us,
        "sampled_per_request_us": sampled_us,
        "plugin_us": ours / total * per_request_us,
        "lines": lines,
    }


def print_samples(title: str, summary: dict[str, Any], top: int = 15) -> str:
    if "skipped" in summary:
        text = f"### {title} (py-spy)\n\nskipped: {summary['skipped']}\n"
        print(text)
        return text
    lines = [
        f"### {title} (py-spy)",
        "",
        f"py-spy, {summary['rate']:,} samples a second, n = {summary['n']:,}:"
        f" {summary['samples_in_loop']:,} samples in the loop; {summary['per_request_us']:.1f}"
        f" us/request measured without a profiler ({summary['sampled_per_request_us']:.1f}"
        " while sampled); the plugin's own code (its innermost frame, no wrapped original below it)"
        f" is {100 * summary['plugin_share']:.1f}% of them, {summary['plugin_us']:.1f}"
        " us/request. Below, each line's time includes the library calls it makes.",
        "",
        "| line | function | share | us/request | source |",
        "|---|---|---|---|---|",
    ]
    for row in summary["lines"][:top]:
        lines.append(
            f"| `{row['site']}` | `{row['function']}` | {100 * row['share']:.2f}% |"
            f" {row['us']:.2f} | `{row['source']}` |"
        )
    text = "\n".join(lines)
    print(text)
    print()
    return text


CLIENTS = ("requests", "responses", "httpx", "respx", "urllib3", "httpcore", "aiohttp")
CLIENT_SITE = "(allocated by the client or mock inside a wrapped call)"


def _by_plugin_site(path: Path) -> tuple[int, dict[str, int]]:
    """Live bytes of a tracemalloc snapshot, and those by the innermost pytest_outbound line."""
    import tracemalloc

    snapshot = tracemalloc.Snapshot.load(str(path))
    by_line: dict[str, int] = {}
    total = 0
    for trace in snapshot.traces:
        total += trace.size
        inside_client = False
        for frame in reversed(trace.traceback):  # most recent first
            if "/pytest_outbound/" in frame.filename:
                name = frame.filename.split("/pytest_outbound/", 1)[1]
                site = f"pytest_outbound/{name}:{frame.lineno}"
                if inside_client:  # the client's or the mock's own objects, plugin or not
                    site = CLIENT_SITE
                by_line[site] = by_line.get(site, 0) + trace.size
                break
            if any(f"/site-packages/{package}/" in frame.filename for package in CLIENTS):
                inside_client = True
    return total, by_line


def _source_line(site: str) -> str:
    name, _, line = site.rpartition(":")
    try:
        text = (package_root() / name).read_text().splitlines()[int(line) - 1].strip()
    except (OSError, IndexError, ValueError):
        return ""
    return text if len(text) <= 70 else text[:67] + "..."


def profile_memory(root: Path, s: Settings) -> tuple[dict[str, Any], str]:
    """What is live at the end of the loop and at the end of the session, by plugin line.

    tracemalloc runs in the plugin-on and plugin-off processes alike: the difference of their
    live bytes is what the plugin keeps (including the bodies its records keep alive, which were
    allocated by the test), the by-line table what pytest_outbound code itself allocated.
    """
    n = min(s.memory_n, 1_000)  # tracemalloc makes each request some 10 ms
    result: dict[str, Any] = {"n": n}
    live: dict[str, dict[str, int]] = {}
    tables: dict[str, dict[str, int]] = {}
    for variant in ("on", "off"):
        path = root / f"memory-{variant}.tracemalloc"
        run_test(root, "test_memory", variant, n, warmup=0, BENCH_TRACEMALLOC=str(path))
        for moment, file in (("loop", path), ("end", Path(f"{path}.end"))):
            total, by_line = _by_plugin_site(file)
            live.setdefault(moment, {})[variant] = total
            if variant == "on":
                tables[moment] = by_line
    lines = [
        "### memory: what the plugin keeps",
        "",
        f"tracemalloc (10 frames) over {n:,} requests with 1 KiB JSON bodies, live bytes per"
        " request, plugin on minus plugin off:",
        "",
    ]
    for moment, label in (("loop", "when the loop ends"), ("end", "in the terminal summary")):
        extra = (live[moment]["on"] - live[moment]["off"]) / n
        ours = sum(v for k, v in tables[moment].items() if k != CLIENT_SITE) / n
        result[moment] = {
            "extra_live_bytes_per_request": extra,
            "allocated_by_plugin_code_bytes_per_request": ours,
            "by_line": [
                {"site": k, "bytes_per_request": v / n}
                for k, v in sorted(tables[moment].items(), key=lambda kv: -kv[1])[:12]
            ],
        }
        lines.append(
            f"- {label}: {extra:,.0f} B/request more than without the plugin;"
            f" {ours:,.0f} B/request allocated by pytest_outbound lines (the rest are the request"
            " bodies and headers its records keep alive)"
        )
    for moment, label in (("loop", "when the loop ends"), ("end", "in the terminal summary")):
        lines += [
            "",
            f"| live {label}, allocated at | B/request | line |",
            "|---|---|---|",
        ]
        for row in result[moment]["by_line"]:
            if row["site"] == CLIENT_SITE:
                continue
            lines.append(
                f"| `{row['site']}` | {row['bytes_per_request']:,.0f} |"
                f" `{_source_line(row['site'])}` |"
            )
    text = "\n".join(lines)
    print(text + "\n")
    return result, text


def start_up_imports(root: Path, reps: int = 3) -> tuple[list[tuple[str, float]], str]:
    """Packages a 1-test pytest run imports (self time) with the plugin on and not off."""
    totals: dict[str, dict[str, list[int]]] = {"on": {}, "off": {}}
    for _ in range(reps):
        for variant in ("on", "off"):
            args = pytest_args(variant, root, [])
            args = [args[0], "-X", "importtime", *args[1:]]
            child = run_child(args, root / "suite-1", child_env())
            per_package: dict[str, int] = {}
            for line in child.output.splitlines():
                found = IMPORT_LINE.match(line)
                if found:
                    package = found.group(4).partition(".")[0]
                    per_package[package] = per_package.get(package, 0) + int(found.group(1))
            for package, us in per_package.items():
                totals[variant].setdefault(package, []).append(us)
    extra = []
    for package, values in totals["on"].items():
        before = median(totals["off"].get(package, [0]))
        difference = median(values) - before
        if difference > 500 and (before == 0 or package == "pytest_outbound"):
            extra.append((package, difference / 1000))
    extra.sort(key=lambda kv: -kv[1])
    total = sum(ms for _, ms in extra)
    lines = [
        "",
        f"Packages a 1-test run imports only with the plugin on (python -X importtime, self"
        f" time, median of {reps}): {total:.0f} ms in all",
        "",
        "| package | ms |",
        "|---|---|",
        *(f"| `{package}` | {ms:.1f} |" for package, ms in extra[:15]),
    ]
    return extra, "\n".join(lines)


def profile_suite(root: Path, s: Settings, measured_us: float | None) -> dict[str, Any]:
    path = root / "profile-suite.prof"
    args = pytest_args("on", root, [], [])
    args = [args[0], "-m", "cProfile", "-o", str(path), *args[1:]]
    env = child_env()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    child = run_child(args, root / "suite", env)
    if child.returncode != 0:
        raise RuntimeError(f"profiling the suite failed:\n{child.output[-3000:]}")
    return summarise_profile(path, s.suite_tests, unit="test", measured_us=measured_us)


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": model or platform.processor(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_start": os.getloadavg(),
    }


def git_state() -> dict[str, Any]:
    """The commit measured, and the package files changed on top of it (others edit it live)."""

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False
            ).stdout.rstrip()
        except OSError:
            return ""

    return {
        "head": git("rev-parse", "--short", "HEAD"),
        "package_changes": git("status", "--short", "--", "pytest_outbound").splitlines(),
    }


#: The cases measured inside one test: (test, label) pairs, the target ratio, the variant on.
HTTP_CASES: dict[str, tuple[list[tuple[str, str]], float, str]] = {
    "per-request": (
        [
            ("test_requests_get", "requests+responses GET"),
            ("test_httpx_get", "httpx+respx GET"),
            ("test_requests_get+kept", "requests+responses GET, the mock keeping every call"),
            ("test_httpx_get+kept", "httpx+respx GET, the mock keeping every call"),
        ],
        1.10,
        "on",
    ),
    "payload": (
        [
            ("test_requests_payload", "requests+responses POST JSON"),
            ("test_httpx_payload", "httpx+respx POST JSON"),
            (
                "test_requests_payload+kept",
                "requests+responses POST JSON, the mock keeping every call",
            ),
            ("test_httpx_payload+kept", "httpx+respx POST JSON, the mock keeping every call"),
            ("test_requests_payload_varied", "requests+responses POST JSON, a new body each time"),
            ("test_httpx_payload_varied", "httpx+respx POST JSON, a new body each time"),
        ],
        1.20,
        "on",
    ),
    "socket": ([("test_socket_connect", "2,000 loopback connects")], 1.10, "on-local"),
}


def run_case(case: str, root: Path, s: Settings) -> tuple[list[Row], dict[str, Any]]:
    if case in HTTP_CASES:
        tests, target, variant = HTTP_CASES[case]
        labelled = [(t, label.replace("2,000", f"{s.n:,}")) for t, label in tests]
        return http_case(root, s, case, labelled, target, on=variant)
    if case == "suite":
        return suite_case(root, s)
    if case == "suite-instructions":
        return suite_instructions_case(root, s)
    if case == "matching":
        return matching_case(s)
    if case == "memory":
        return memory_case(root, s)
    return import_case(s)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number of 1 or more, e.g. 3")
    return value


def unwritable(path: Path) -> str:
    """Why the results cannot be written to ``path`` ("" when they can). Checked before the
    first case runs, so that a run of several minutes is not lost at its very end; nothing is
    made here (``write_text_atomic`` makes the missing directories at the end)."""
    try:
        if path.is_dir():  # "" is "."
            return "is a directory; give a file name in it, e.g. results.json"
        existing = next(p for p in path.absolute().parents if p.exists())  # "/" at the latest
        if not existing.is_dir():
            return f"{existing} is a file, not a directory; choose another path"
        if not os.access(existing, os.W_OK | os.X_OK):
            return f"{existing} is not writable; choose another path"
    except OSError as exc:
        return f"cannot be checked ({exc.strerror or exc}); choose another path"
    return ""


#: What a failed child, or its unreadable output, raises in this process: the run reports it
#: and stops (a bug of this script is a RuntimeError, too, only when it says so).
FAILURES = (
    RuntimeError,
    OSError,
    ValueError,
    KeyError,
    subprocess.CalledProcessError,
    subprocess.TimeoutExpired,
)


def failure_text(exc: BaseException) -> str:
    """A failed case, for the terminal: the child's own words, not a traceback of this one."""
    if isinstance(exc, subprocess.CalledProcessError):
        output = exc.stderr or exc.stdout or ""
        if isinstance(output, bytes):
            output = output.decode("utf-8", "replace")
        command = " ".join(str(a) for a in exc.cmd)
        return f"{command} exited with {exc.returncode}:\n{output[-3000:]}"
    if isinstance(exc, RuntimeError):
        return str(exc)  # this script's own message, with the child's output
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests and repetitions")
    parser.add_argument("--json", default=str(HERE / "results.json"), metavar="PATH")
    parser.add_argument("--only", default="", help=f"comma-separated subset of {','.join(CASES)}")
    parser.add_argument(
        "--reps", type=positive_int, default=0, help="repetitions of every variant (1 or more)"
    )
    parser.add_argument("--profile", action="store_true", help="profile the cases that miss")
    parser.add_argument(
        "--markdown",
        default=None,
        metavar="PATH",
        help="also write the table and the profiles as Markdown here",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument(
        "--ref",
        default="",
        metavar="REF",
        help="measure pytest_outbound as committed at REF (git archive into the temporary"
        " directory, put first on PYTHONPATH) instead of the working tree",
    )
    options = parser.parse_args(argv)
    chosen = [c.strip() for c in options.only.split(",") if c.strip()] or list(CASES)
    unknown = set(chosen) - set(CASES)
    if unknown:
        parser.error(f"unknown case(s): {', '.join(sorted(unknown))}; choose from {CASES}")
    if options.ref:
        found = subprocess.run(
            ["git", "rev-parse", "--verify", "--quiet", f"{options.ref}^{{commit}}"],
            cwd=ROOT,
            capture_output=True,
            check=False,
        )
        if found.returncode != 0:
            parser.error(f"--ref {options.ref}: not a commit of {ROOT}; give one, e.g. HEAD")
    outputs: dict[str, Path] = {}
    for flag, value in (("--json", options.json), ("--markdown", options.markdown)):
        if value is None:
            continue
        problem = unwritable(Path(value))
        if problem:
            parser.error(f"{flag} {value}: {problem}")
        outputs[flag] = Path(value).resolve()  # a symbolic link: written through, not replaced

    if options.quick:
        s = Settings(True, 3, 3, 300, 500, 5_000, 1, 3)
    else:
        s = Settings(False, 7, 9, 2_000, 3_000, 50_000, 3, 9)
    if options.reps:
        s.reps = s.suite_reps = s.memory_reps = s.import_reps = options.reps

    started = time.perf_counter()
    root = workspace(options.keep, s.suite_tests)
    try:
        return measure(options, chosen, s, root, outputs, started)
    finally:
        PYCACHE.clear()  # the next run in this process (a test's) starts afresh
        if not options.keep:
            shutil.rmtree(root, ignore_errors=True)


def measure(
    options: argparse.Namespace,
    chosen: list[str],
    s: Settings,
    root: Path,
    outputs: dict[str, Path],
    started: float,
) -> int:
    """Every chosen case, then the profiles and the results files; 1 when a case failed (no
    results written) or a profile failed (results written, with the error in "profiles")."""
    PYCACHE["prefix"] = str(root / "pycache")
    info = machine()
    info["date"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    info["command"] = " ".join([Path(PY).name, *sys.argv])
    info["git"] = git_state()
    if options.ref:
        try:
            snapshot(options.ref, root)
        except FAILURES as exc:
            print(
                f"error: --ref {options.ref} could not be extracted:\n{failure_text(exc)}",
                file=sys.stderr,
            )
            return 1
        commit = subprocess.run(
            ["git", "rev-parse", "--short", options.ref], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        info["git"]["measured"] = f"{options.ref} = {commit} (git archive), not the working tree"
    else:
        info["git"]["measured"] = "the working tree"
    info["backstop_present"] = (package_root() / "pytest_outbound" / "_backstop.py").exists()
    print(f"{info['cpu']} x{info['nproc']}, Python {info['python']}, load {info['loadavg_start']}")
    print(f"backstop module present: {info['backstop_present']}")

    rows: list[Row] = []
    raw: dict[str, Any] = {}
    timings: dict[str, float] = {}
    for case in chosen:
        case_start = time.perf_counter()
        print(f"[{case}]", flush=True)
        try:
            new, raw[case] = run_case(case, root, s)
        except FAILURES as exc:
            if rows:
                print(table(rows))
            print(
                f"error: the {case} case failed, so no results were written"
                f" (a results file holds every chosen case):\n{failure_text(exc)}",
                file=sys.stderr,
            )
            return 1
        rows.extend(new)
        timings[case] = time.perf_counter() - case_start
        print(table(new), flush=True)

    measured_seconds = time.perf_counter() - started
    profiles: dict[str, Any] = {}
    profile_text: list[str] = []
    profile_error = ""
    try:
        if options.profile:
            missed = {r.case.removesuffix("-alone") for r in rows if r.passed is False}
            http_tests = {
                name: [(test, variant) for test, _ in pairs if "+" not in test]
                for name, (pairs, _, variant) in HTTP_CASES.items()
            }
            for case in [c for c in chosen if c in missed]:
                if case in http_tests:
                    for test, variant in http_tests[case]:
                        print(f"[profile {case}: {test}]", flush=True)
                        measured = next(
                            (
                                r.details["overhead_us_per_request"]
                                for r in rows
                                if r.details.get("test") == test
                            ),
                            None,
                        )
                        summary = profile_test(root, test, variant, s.n, measured)
                        profiles[f"{case}:{test}"] = summary
                        profile_text.append(print_profile(f"{case}: {test}", summary))
                        if case != "socket":
                            print(f"[py-spy {case}: {test}]", flush=True)
                            on_us = next(
                                (
                                    r.details["median_on_s"] / r.details["n"] * 1e6
                                    for r in rows
                                    if r.details.get("test") == test
                                ),
                                None,
                            )
                            sampled = sample_test(root, test, variant, s.n * 10, on_us)
                            profiles[f"{case}:{test}:py-spy"] = sampled
                            profile_text.append(print_samples(f"{case}: {test}", sampled))
                elif case == "memory":
                    print("[profile memory]", flush=True)
                    profiles["memory"], text = profile_memory(root, s)
                    profile_text.append(text)
                elif case == "suite":
                    print("[profile suite]", flush=True)
                    measured = next(
                        (
                            r.details["overhead_us_per_test"]
                            for r in rows
                            if "overhead_us_per_test" in r.details
                        ),
                        None,
                    )
                    summary = profile_suite(root, s, measured)
                    profiles["suite"] = summary
                    text = print_profile("suite: whole pytest process", summary)
                    summary["start_up_imports_ms"], imports = start_up_imports(root)
                    print(imports + "\n")
                    profile_text.append(text + "\n" + imports)
                elif case == "import":
                    print("[profile import]", flush=True)
                    profile_text.append(print_import_profile(raw["import"]))
    except FAILURES as exc:  # the measurements stand: written, with the error
        profile_error = profiles["error"] = failure_text(exc)
        print(
            f"error: profiling failed; the results are written without the rest of"
            f" the profiles:\n{profile_error}",
            file=sys.stderr,
        )
    total = time.perf_counter() - started
    print()
    print(table(rows))
    per_case = ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())
    print(
        f"\nmeasurement: {measured_seconds:.0f} s ({per_case});"
        f" profiling: {total - measured_seconds:.0f} s; total: {total:.0f} s"
    )
    info["loadavg_end"] = os.getloadavg()
    result = {
        "machine": info,
        "settings": s.__dict__,
        "total_seconds": total,
        "measurement_seconds": measured_seconds,
        "case_seconds": timings,
        "rows": [r.json() for r in rows],
        "raw": raw,
        "profiles": profiles,
    }
    write_text_atomic(outputs["--json"], json.dumps(result, indent=2) + "\n")
    print(f"results written to {options.json}")
    if "--markdown" in outputs:
        parts = [markdown_table(rows), *profile_text]
        write_text_atomic(outputs["--markdown"], "\n\n".join(parts) + "\n")
    return 1 if profile_error else 0


if __name__ == "__main__":
    sys.exit(main())
