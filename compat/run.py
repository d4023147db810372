"""Is the plugin invisible to real test suites? (issue 22)

Runs real projects' own test suites without the plugin (``-p no:outbound``) and with it, in
audit mode (``-o outbound_mode=audit``) or, with ``--mode enforce``, in enforce with no policy,
and prints per project: the number of tests, every test whose outcome differs between the two
(none are allowed in audit; in enforce each is listed with what the plugin's report holds for
it), and the time ratios (with / without): wall time, and the CPU time of the whole process
tree. Run by hand, like benchmarks/run.py; not part of CI. compat/README.md says how to get the
projects' sources; compat/RESULTS.md holds the last measurement.

    .venv/bin/python compat/run.py --projects-dir ../compat-projects              # every project
    .venv/bin/python compat/run.py --projects-dir ../compat-projects --only httpx  # one project
    .venv/bin/python compat/run.py --projects-dir ../compat-projects --mode enforce
    .venv/bin/python compat/run.py --projects-dir ../compat-projects --reps 5 --baseline-runs 2

The plugin measured is pytest_outbound as committed at ``--plugin`` (default HEAD), extracted
with ``git archive`` and installed (not editable) into each project's virtualenv, so that
uncommitted edits in the work tree are not measured by accident; ``--plugin worktree``
installs the work tree, editable. Each project gets its own virtualenv under
``--work-dir/<project>/venv`` (made once, made again when its recipe changes or with
``--reinstall``; when only the plugin changed, only the plugin is installed again), holding
the project (editable, from its checkout; aiohttp: its release wheel, see its recipe), its
test requirements and pytest-outbound. Installing needs the package index; the test runs need
no network at all: each runs inside a fresh network namespace that has only loopback
(``unshare -rn``), the same for both runs, so no test can reach a non-loopback address.

Per-test outcomes come from ``--junitxml`` (one file a run): a test id is the file's
``classname::name``; its outcome is ``passed``, ``failed``, ``error``, ``skipped`` or
``xfailed``, and a test that also errored in teardown reads ``passed+error`` and so on.
Each project's recipe (PROJECTS below) names its checkout, the test paths, the extra pip
requirements, the pytest arguments and the tests deselected in BOTH runs because they fail or
flake here without the plugin too (they need the internet, a newer dependency broke them, a
race), each with its reason.

Order and time: ``--baseline-runs K`` first runs the suite K - 1 times without the plugin,
untimed (a warm-up; a test whose outcome differs between runs without the plugin is reported
as flaky rather than as a change); then ``--reps N`` pairs, in alternating order (without,
with; with, without; ...), so that neither side always runs first. The times reported are the
medians of the pairs' runs: wall seconds, and CPU seconds (user + system) of every process the
run started, xdist workers and forked servers included (this script makes itself their
subreaper and reads ``RUSAGE_CHILDREN``), with the 1-minute load average before and after each
run. A test is a change when any run with the plugin differs from the first run without.

Everything a run writes (junit files, the full output, the plugin's JSON report) stays under
``--work-dir/<project>/``; ``--json`` writes the results of this invocation.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import hashlib
import json
import os
import platform
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
NETNS = ("unshare", "-rn", "sh", "-c", 'ip link set lo up && exec "$0" "$@"')
#: Installed in every project's virtualenv: a hanging test fails by name (both runs alike).
ALWAYS = ("pytest-timeout",)
WITHOUT = "without"
AUDIT = "audit"
ENFORCE = "enforce"


@dataclasses.dataclass(frozen=True)
class Project:
    """How to install and run one project's tests. In ``install``, ``{checkout}`` stands for
    the checkout's absolute path and ``{projects}`` for --projects-dir's."""

    name: str
    checkout: str  # directory under --projects-dir
    clone: str  # git clone URL
    tag: str  # the tag measured (RESULTS.md names the commit)
    install: tuple[str, ...]  # pip install arguments
    test_paths: tuple[str, ...]
    #: Other checkouts the install needs: (directory, clone URL, commit).
    more: tuple[tuple[str, str, str], ...] = ()
    pytest_args: tuple[str, ...] = ()
    #: (node id, reason): deselected in both runs; these fail here without the plugin too.
    deselect: tuple[tuple[str, str], ...] = ()
    xdist: bool = False
    install_env: tuple[tuple[str, str], ...] = ()
    run_env: tuple[tuple[str, str], ...] = ()
    timeout: int = 1200  # seconds, for each run
    #: pytest-timeout's --timeout (installed everywhere): a test that hangs fails, by name.
    per_test_timeout: int = 120


#: vcrpy's requests tests that fail over https without the plugin too.
VCRPY_REQUESTS_HTTPS = (
    "test_status_code",
    "test_headers",
    "test_body",
    "test_get_empty_content_type_json",
    "test_effective_url",
    "test_auth",
    "test_auth_failed",
    "test_post",
    "test_redirects",
    "test_gzip__decode_compressed_response_false",
    "test_gzip__decode_compressed_response_true",
    "test_session_created_before_use_cassette_is_patched",
    "test_nested_cassettes_with_session_created_before_nesting",
    "test_post_file",
    "test_filter_post_params",
    "test_post_unicode_match_on_body",
)

PROJECTS: tuple[Project, ...] = (
    Project(
        name="requests",
        checkout="requests",
        clone="https://github.com/psf/requests.git",
        tag="v2.34.2",
        install=(
            "-e",
            "{checkout}[socks]",
            "pytest-httpbin==2.1.0",
            "httpbin~=0.10.0",
            "trustme",
            "pytest-xdist",
        ),
        test_paths=("tests",),
        xdist=True,
        deselect=(
            (
                "tests/test_requests.py::TestTimeout::test_connect_timeout",
                "expects a connect timeout from the non-routable 10.255.255.1; without a"
                " route the connect fails at once (ConnectionError, not ConnectTimeout)",
            ),
            (
                "tests/test_requests.py::TestTimeout::test_total_timeout_connect",
                "same as test_connect_timeout",
            ),
        ),
    ),
    Project(
        name="httpx",
        checkout="httpx",
        clone="https://github.com/encode/httpx.git",
        tag="0.28.1",
        install=(
            "-e",
            "{checkout}[brotli,cli,http2,socks,zstd]",
            # The pins of the project's requirements.txt: newer uvicorn logs differently
            # (test_utils' logging tests), newer click deprecates what test_main uses.
            "chardet==5.2.0",
            "cryptography==44.0.0",
            "trio==0.27.0",
            "trustme==1.2.0",
            "uvicorn==0.32.1",
            "click<8.2",
        ),
        test_paths=("tests",),
        # The project's own marker for tests that need the internet.
        pytest_args=("-m", "not network"),
        # No xdist: the suite's server listens on the fixed port 8000 (tests/conftest.py),
        # so a second worker's server cannot start and that worker waits forever.
        deselect=(
            (
                "tests/test_utils.py::test_logging_request",
                "fails here without the plugin: caplog also holds uvicorn.access's records",
            ),
            (
                "tests/test_utils.py::test_logging_redirect_chain",
                "same as test_logging_request",
            ),
            (
                "tests/test_timeouts.py::test_write_timeout[trio]",
                "fails here without the plugin: an unclosed async generator's ResourceWarning"
                " (filterwarnings = error) under trio",
            ),
        ),
    ),
    Project(
        name="urllib3",
        checkout="urllib3",
        clone="https://github.com/urllib3/urllib3.git",
        tag="2.7.0",
        # The "dev" group at the versions of the tag's uv.lock: newer quart, hypercorn and
        # pyOpenSSL fail dozens of tests without the plugin. The suite's hypercorn is the
        # project's fork (pyproject's [tool.uv.sources]), a second checkout.
        install=(
            "-e",
            "{checkout}[socks,brotli,zstd,h2]",
            "{projects}/urllib3-hypercorn[trio]",
            "anyio[trio]==4.13.0",
            "cryptography==47.0.0",
            "flask==3.1.3",
            "h11==0.16.0",
            "h2==4.3.0",
            "httpx==0.28.1",
            "idna==3.13",
            "pyopenssl==26.1.0",
            "pysocks==1.7.1",
            "pytest==9.0.3",
            "pytest-socket==0.7.0",
            "pytest-timeout==2.4.0",
            "quart==0.20.0",
            "quart-trio==0.12.0",
            "trio==0.33.0",
            "trustme==1.2.1",
            "werkzeug==3.1.8",
            "pytest-xdist",
        ),
        more=(
            (
                "urllib3-hypercorn",
                "https://github.com/urllib3/hypercorn.git",
                "d1719f8c1570cbd8e6a3719ffdb14a4d72880abb",
            ),
        ),
        test_paths=("test/with_dummyserver",),
        # The flags of the project's own noxfile (pytest-socket lets loopback through).
        pytest_args=(
            "--tb=native",
            "--strict-config",
            "--strict-markers",
            "--disable-socket",
            "--allow-unix-socket",
            "--allow-hosts=localhost,127.0.0.1,::1,127.0.0.0,240.0.0.0",
        ),
        xdist=True,
        deselect=(
            (
                "test/with_dummyserver/test_https.py::TestHTTPS_TLSv1_2"
                "::test_http2_probe_blocked_per_thread",
                "flaky without the plugin: asserts that two threads' idents differ, and the"
                " OS reuses them (failed in one of its two classes in each run)",
            ),
            (
                "test/with_dummyserver/test_https.py::TestHTTPS_TLSv1_3"
                "::test_http2_probe_blocked_per_thread",
                "as for TestHTTPS_TLSv1_2",
            ),
            (
                "test/with_dummyserver/test_poolmanager.py::TestPoolManager"
                "::test_headers_http_multi_header_multipart",
                "flaky without the plugin: its second request on the kept-alive connection"
                " sometimes gets no answer from the trio server (2 of 20 runs alone)",
            ),
        ),
    ),
    Project(
        name="aiohttp",
        checkout="aiohttp",
        clone="https://github.com/aio-libs/aiohttp.git",
        tag="v3.14.3",
        # The release's wheel (with its C parser, as users have it): building the checkout
        # needs the llhttp submodule and npm. The tests come from the checkout.
        install=(
            "aiohttp==3.14.3",
            "-r",
            "{checkout}/requirements/runtime-deps.in",
            "-r",
            "{checkout}/requirements/test-common.in",
            "-r",
            "{checkout}/requirements/test-common-base.in",
            "gunicorn",
            "uvloop",
        ),
        test_paths=(
            "tests/test_client_connection.py",
            "tests/test_client_exceptions.py",
            "tests/test_client_fingerprint.py",
            "tests/test_client_functional.py",
            "tests/test_client_middleware.py",
            "tests/test_client_middleware_digest_auth.py",
            "tests/test_client_proto.py",
            "tests/test_client_request.py",
            "tests/test_client_response.py",
            "tests/test_client_session.py",
            "tests/test_client_ws.py",
            "tests/test_client_ws_functional.py",
            "tests/test_connector.py",
            "tests/test_proxy.py",
            "tests/test_proxy_functional.py",
            "tests/test_tracing.py",
        ),
        # The project's addopts, without --durations/--showlocals (noise in the logs).
        pytest_args=("-o", "addopts=", "-ra", "-m", "not dev_mode and not autobahn"),
        xdist=True,
    ),
    Project(
        name="sentry-python",
        checkout="sentry-python",
        clone="https://github.com/getsentry/sentry-python.git",
        tag="2.68.0",
        install=(
            "-e",
            "{checkout}",
            "brotli",
            "executing",
            "httpcore[asyncio,http2]",
            "jsonschema",
            "pysocks",
            "pytest-asyncio",
            "pytest-forked",
            "pytest-timeout",
            "pytest_localserver",
            "socksio",
            "werkzeug",
        ),
        test_paths=(
            "tests/test_transport.py",
            "tests/test_client.py",
            "tests/integrations/stdlib/test_httplib.py",
        ),
        # The project's addopts without its coverage options (pytest-cov is not installed).
        pytest_args=("-o", "addopts=", "-rfEs", "--tb=short"),
    ),
    Project(
        name="posthog-python",
        checkout="posthog-python",
        clone="https://github.com/PostHog/posthog-python.git",
        tag="posthog-v7.42.0",
        install=(
            "-e",
            "{checkout}",
            "freezegun==1.5.1",
            "python-dateutil>=2.9.0.post0",
            "tzdata",
            "pytest-timeout",
            "pytest-asyncio",
            "parameterized>=0.8.1",
            "pydantic>=2.12.0",
            "zstandard>=0.23.0",
            "django>=5.2.15,<6.0",
            "opentelemetry-sdk>=1.20.0",
            "opentelemetry-exporter-otlp-proto-http>=1.20.0",
            "pytest-xdist",
        ),
        test_paths=(
            "posthog/test/test_client.py",
            "posthog/test/test_consumer.py",
            "posthog/test/test_request.py",
            "posthog/test/test_module.py",
            "posthog/test/test_feature_flags.py",
            "posthog/test/test_capture_compression.py",
            "posthog/test/test_capture_mode.py",
            "posthog/test/test_capture_v1.py",
            "posthog/test/test_exception_capture.py",
            "posthog/test/test_before_send.py",
            "posthog/test/test_utils.py",
        ),
        pytest_args=("--timeout=30",),
        xdist=True,
        deselect=(
            (
                "posthog/test/test_request.py::TestRequests::test_valid_request",
                "posts to the real us.i.posthog.com (no network here)",
            ),
            (
                "posthog/test/test_request.py::TestRequests::test_should_timeout",
                "expects a read timeout from the real us.i.posthog.com",
            ),
            (
                "posthog/test/test_request.py::TestRequests::test_should_not_timeout",
                "posts to the real us.i.posthog.com",
            ),
            (
                "posthog/test/test_consumer.py::TestConsumer::test_upload",
                "uploads to the real us.i.posthog.com (retries until the 30 s timeout)",
            ),
            (
                "posthog/test/test_consumer.py::TestConsumer::test_request",
                "posts to the real us.i.posthog.com (retries until the 30 s timeout)",
            ),
            (
                "posthog/test/test_exception_capture.py::test_excepthook",
                "expects 'data uploaded successfully' from the real us.i.posthog.com",
            ),
        ),
    ),
    Project(
        name="vcrpy",
        checkout="vcrpy",
        clone="https://github.com/kevin1024/vcrpy.git",
        tag="v8.2.1",
        install=(
            "-e",
            "{checkout}",
            "aiohttp",
            "httpbin",
            "httplib2",
            "httpx",
            "pytest-aiohttp",
            "pytest-asyncio",
            "pytest-httpbin",
            "requests>=2.22.0",
            "tornado",
            "urllib3",
            "werkzeug==2.0.3",
        ),
        test_paths=("tests",),
        pytest_args=("-m", "not online"),
        deselect=(
            *(
                (
                    f"tests/integration/test_requests.py::{name}[https]",
                    "fails here without the plugin: requests does not trust pytest-httpbin's"
                    " certificate (CERTIFICATE_VERIFY_FAILED)",
                )
                for name in VCRPY_REQUESTS_HTTPS
            ),
            ("tests/integration/test_requests.py::test_cross_scheme", "same (https)"),
            (
                "tests/integration/test_requests.py::test_post_chunked_binary",
                "fails here without the plugin: BrokenPipeError against pytest-httpbin",
            ),
            ("tests/integration/test_proxy.py::test_use_https_proxy", "same (https)"),
            (
                "tests/integration/test_urllib3.py::test_post",
                "flaky without the plugin: BrokenPipeError against pytest-httpbin (failed in"
                " 5 of 5 runs alone without the plugin, 3 of 5 with)",
            ),
            (
                "tests/unit/test_stubs.py::TestVCRConnection::test_body_consumed_once_stream",
                "flaky without the plugin: BrokenPipeError against pytest-httpbin",
            ),
            (
                "tests/unit/test_stubs.py::TestVCRConnection::test_body_consumed_once_iterator",
                "flaky without the plugin: BrokenPipeError against pytest-httpbin",
            ),
        ),
    ),
)


@dataclasses.dataclass
class Run:
    variant: str
    label: str
    seconds: float
    #: user + system CPU seconds of the whole process tree (every process the run started,
    #: orphans included: this script is their subreaper and reaps them)
    cpu: float
    returncode: int | None  # None: timed out
    outcomes: dict[str, str]
    messages: dict[str, str]
    log: Path
    load: tuple[float, float]  # the 1-minute load average before and after the run
    timed: bool = True  # part of the alternating pairs (the extra --baseline-runs are not)
    reported: bool = False  # the plugin wrote its report (it was active)
    recorded: Counter[str] = dataclasses.field(default_factory=Counter)
    #: test id -> what the report holds of its requests: "verdict client host reasons"
    requests_by_test: dict[str, list[str]] = dataclasses.field(default_factory=dict)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--projects-dir", type=Path, required=True, help="where the checkouts are (README)"
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "pytest-outbound-compat",
        help="virtualenvs, junit files and logs (default: %(default)s)",
    )
    parser.add_argument("--only", default="", help="comma-separated project names")
    parser.add_argument(
        "--plugin", default="HEAD", help="git ref of pytest-outbound to install, or 'worktree'"
    )
    parser.add_argument("--reinstall", action="store_true", help="make the virtualenvs again")
    parser.add_argument("--serial", action="store_true", help="no xdist, even where supported")
    parser.add_argument(
        "--mode",
        choices=(AUDIT, ENFORCE),
        default=AUDIT,
        help="the plugin's mode in the runs with it (enforce: no policy, loopback allowed)",
    )
    parser.add_argument(
        "--reps",
        type=int,
        default=1,
        help="pairs of runs (without, with), in alternating order; times are their medians",
    )
    parser.add_argument(
        "--write-bytecode",
        action="store_true",
        help="drop PYTHONDONTWRITEBYTECODE from the runs' environment, so that pytest caches"
        " the modules it rewrites (test modules, conftests, every plugin's, this one's)",
    )
    parser.add_argument(
        "--baseline-runs",
        type=int,
        default=1,
        help="runs without the plugin; those beyond the first come first and are not timed",
    )
    parser.add_argument("--timeout", type=int, default=None, help="seconds a run (per project)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--install-only", action="store_true", help="make the virtualenvs only")
    parser.add_argument("--list", action="store_true", help="list the projects and exit")
    args = parser.parse_args(argv)

    if args.list:
        for p in PROJECTS:
            print(f"{p.name:16} git clone --branch {p.tag} {p.clone} {p.checkout}")
            for directory, clone, commit in p.more:
                print(
                    f"{'':16} git clone {clone} {directory} && git -C {directory} checkout {commit}"
                )
        return 0
    chosen = [p for p in PROJECTS if not args.only or p.name in args.only.split(",")]
    unknown = set(filter(None, args.only.split(","))) - {p.name for p in PROJECTS}
    if unknown:
        parser.error(f"unknown project(s): {', '.join(sorted(unknown))}")
    if shutil.which("unshare") is None:
        parser.error("unshare (util-linux) is needed: each run gets a loopback-only network")

    # Stopped (a time limit, kill): the finally of _run_once still ends the suite's processes.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    work: Path = args.work_dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    plugin_spec, plugin_id = _plugin(args.plugin, work)
    print(f"pytest-outbound: {plugin_id}; work dir {work}", flush=True)

    results: list[dict[str, Any]] = []
    status = 0
    for project in chosen:
        checkout = (args.projects_dir / project.checkout).resolve()
        if not checkout.is_dir():
            print(f"\n== {project.name}: no checkout at {checkout} (see compat/README.md)")
            status = 1
            continue
        print(f"\n== {project.name} ({_describe(checkout, project.tag)})", flush=True)
        venv = _venv(project, checkout, work / project.name, plugin_spec, plugin_id, args)
        if args.install_only:
            continue
        result = _measure(project, checkout, venv, work / project.name, args)
        result["plugin"] = plugin_id
        results.append(result)
        # In enforce, tests that aim at a non-local host fail by design: only a change with no
        # violation in the report for its test is one to look at (a false block, or a block
        # recorded under another test).
        unexplained = [
            c
            for c in result["changes"]
            if args.mode == AUDIT or not any(r.startswith("violation ") for r in c["requests"])
        ]
        if unexplained or result["problems"]:
            status = 1

    _print_table(results)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return status


def _plugin(ref: str, work: Path) -> tuple[list[str], str]:
    """pip arguments installing pytest-outbound, and what they install (a commit)."""
    if ref == "worktree":
        return ["-e", str(REPO)], "work tree (editable)"
    commit = _git("rev-parse", "--verify", f"{ref}^{{commit}}").strip()
    target = work / "plugin" / commit[:12]
    if not target.is_dir():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=target.name, dir=target.parent))
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", commit], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive, check=True)
        try:
            tmp.rename(target)
        except OSError:  # another invocation extracted it first
            shutil.rmtree(tmp)
    return [str(target)], f"{commit[:12]} ({_git('log', '-1', '--format=%s', commit).strip()})"


def _git(*args: str, cwd: Path = REPO) -> str:
    return subprocess.run(
        ["git", "-C", str(cwd), *args], check=True, capture_output=True, text=True
    ).stdout


def _describe(checkout: Path, tag: str) -> str:
    """The checkout's commit, and whether it is the recipe's tag."""
    try:
        head = _git("rev-parse", "HEAD", cwd=checkout).strip()
    except (subprocess.CalledProcessError, FileNotFoundError):
        return "not a git checkout"
    try:
        tagged = _git("rev-parse", f"{tag}^{{commit}}", cwd=checkout).strip()
    except subprocess.CalledProcessError:
        tagged = ""
    return f"{tag} ({head[:12]})" if head == tagged else f"{head[:12]}, NOT the tag {tag}"


def _venv(
    project: Project,
    checkout: Path,
    home: Path,
    plugin_spec: list[str],
    plugin_id: str,
    args: argparse.Namespace,
) -> Path:
    """The project's virtualenv: made (again) when its recipe changed; when only the plugin
    changed, the plugin alone is installed again."""
    venv = home / "venv"
    projects = str(args.projects_dir.resolve())
    install = [
        a.replace("{checkout}", str(checkout)).replace("{projects}", projects)
        for a in project.install
    ]
    recipe = json.dumps([install, ALWAYS, project.install_env])
    digest = hashlib.sha256(recipe.encode()).hexdigest()
    stamp, plugin_stamp = venv / ".compat-installed", venv / ".compat-plugin"
    python = str(venv / "bin" / "python")
    commands: list[list[str]] = []
    if args.reinstall or not stamp.is_file() or stamp.read_text() != digest:
        home.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(venv, ignore_errors=True)
        print(f"   making {venv}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        commands.append([python, "-m", "pip", "install", "--upgrade", "pip"])
        commands.append([python, "-m", "pip", "install", *install, *plugin_spec, *ALWAYS])
    elif not plugin_stamp.is_file() or plugin_stamp.read_text() != plugin_id:
        print(f"   installing pytest-outbound {plugin_id.split()[0]}", flush=True)
        pip = [python, "-m", "pip", "install"]
        commands.append([*pip, "--force-reinstall", "--no-deps", *plugin_spec])
        commands.append([*pip, *plugin_spec])  # any dependency it gained
    if not commands:
        return venv
    env = {**os.environ, **dict(project.install_env)}
    log = home / "install.log"
    with log.open("a") as out:
        for cmd in commands:
            out.write(f"$ {shlex.join(cmd)}\n")
            out.flush()
            done = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=checkout)
            if done.returncode:
                sys.exit(f"   install failed (exit {done.returncode}); see {log}")
    stamp.write_text(digest)
    plugin_stamp.write_text(plugin_id)
    return venv


def _measure(
    project: Project, checkout: Path, venv: Path, home: Path, args: argparse.Namespace
) -> dict[str, Any]:
    mode = args.mode
    # The extra baseline runs first (flaky tests, and a warm-up: bytecode, caches), untimed;
    # then the timed pairs, in alternating order so that neither side always runs first.
    plan = [(WITHOUT, False)] * (args.baseline_runs - 1)
    for rep in range(args.reps):
        pair = (WITHOUT, mode) if rep % 2 == 0 else (mode, WITHOUT)
        plan += [(pair[0], True), (pair[1], True)]
    runs: list[Run] = []
    seen: Counter[str] = Counter()
    for variant, timed in plan:
        seen[variant] += 1
        label = variant if seen[variant] == 1 else f"{variant}{seen[variant]}"
        run = _run_once(project, checkout, venv, home, label, variant, args)
        run.timed = timed
        runs.append(run)
        count = Counter(o.split("+")[0] for o in run.outcomes.values())
        code = "timed out" if run.returncode is None else f"exit {run.returncode}"
        print(
            f"   {label:9} {run.seconds:7.1f} s  cpu {run.cpu:7.1f} s  load"
            f" {run.load[0]:4.1f}-{run.load[1]:4.1f}  {code:9} {len(run.outcomes):5} tests  "
            + ", ".join(f"{n} {k}" for k, n in sorted(count.items()))
            + ("" if timed else "  (untimed)"),
            flush=True,
        )
    baselines = [r for r in runs if r.variant == WITHOUT]
    withs = [r for r in runs if r.variant == mode]
    base = baselines[0]
    flaky = sorted(
        t
        for t in set().union(*(r.outcomes for r in baselines))
        if len({r.outcomes.get(t, "missing") for r in baselines}) > 1
    )
    changes = []
    for test in sorted(set(base.outcomes).union(*(r.outcomes for r in withs))):
        before = base.outcomes.get(test, "missing")
        after = sorted({r.outcomes.get(test, "missing") for r in withs})
        if after != [before] and test not in flaky:
            changes.append(
                {
                    "test": test,
                    "without": before,
                    mode: "/".join(after),
                    "message": next(
                        (r.messages[test] for r in withs if test in r.messages),
                        base.messages.get(test, ""),
                    ),
                    # what the plugin's report holds of the test's requests (its first run)
                    "requests": withs[0].requests_by_test.get(test, []),
                }
            )
    problems = [
        f"{r.label} run {'timed out' if r.returncode is None else 'collected no test'}"
        f" (see {r.log})"
        for r in runs
        if r.returncode is None or not r.outcomes
    ]
    problems += [
        f"the {r.label} run wrote no report: was the plugin active? (see {r.log})"
        for r in withs
        if not r.reported and r.returncode is not None
    ]
    timing = _timing(runs, mode)
    for change in changes:
        print(f"   CHANGED {change['test']}: {change['without']} -> {change[mode]}")
        if change["message"]:
            print(f"           {change['message'][:300]}")
        for line in change["requests"][:3]:
            print(f"           report: {line}")
        if mode == ENFORCE and not any(
            line.startswith("violation ") for line in change["requests"]
        ):
            print("           (no violation in the report for this test)")
    for test in flaky:
        print(f"   flaky without the plugin: {test}")
    for problem in problems:
        print(f"   PROBLEM: {problem}")
    return {
        "project": project.name,
        "mode": mode,
        "checkout": _describe(checkout, project.tag),
        "tests": len(base.outcomes),
        "outcomes_without": dict(Counter(o for o in base.outcomes.values())),
        f"outcomes_{mode}": dict(Counter(o for o in withs[0].outcomes.values())),
        "runs": [
            {
                "label": r.label,
                "seconds": round(r.seconds, 2),
                "cpu": round(r.cpu, 2),
                "load": list(r.load),
                "timed": r.timed,
            }
            for r in runs
        ],
        **timing,
        "xdist": project.xdist and not args.serial,
        "recorded_by_client": dict(withs[0].recorded),
        "changes": changes,
        "flaky": flaky,
        "deselected": [{"test": t, "reason": r} for t, r in project.deselect],
        "problems": problems,
    }


def _timing(runs: Sequence[Run], mode: str) -> dict[str, Any]:
    """Medians of the timed runs' wall and CPU seconds, each side, and their ratios."""
    out: dict[str, Any] = {}
    for key in ("seconds", "cpu"):
        medians = []
        for variant in (WITHOUT, mode):
            values = [getattr(r, key) for r in runs if r.timed and r.variant == variant]
            medians.append(statistics.median(values) if values else float("nan"))
        out[f"median_{key}"] = {WITHOUT: round(medians[0], 2), mode: round(medians[1], 2)}
        out["ratio" if key == "seconds" else "cpu_ratio"] = (
            round(medians[1] / medians[0], 3) if medians[0] else float("nan")
        )
    return out


def _subreaper() -> None:
    """Make this process the subreaper of everything it starts (Linux): a suite's process
    whose parent died (a server a test forked, ...) is reparented here, not to init, so that
    its CPU time reaches RUSAGE_CHILDREN when it is reaped (``_reap``)."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER


def _reap() -> None:
    """Reap every child that has exited (a run's orphans): their CPU time is counted then."""
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run_once(
    project: Project,
    checkout: Path,
    venv: Path,
    home: Path,
    label: str,
    variant: str,
    args: argparse.Namespace,
) -> Run:
    junit, log, report = home / f"{label}.xml", home / f"{label}.log", home / f"{label}.json"
    for stale in (junit, report):
        stale.unlink(missing_ok=True)
    # bin/pytest, not python -m pytest: the checkout's directory is not put on sys.path, so
    # the installed package is the one tested (rootdir conftests still insert their own).
    cmd = [str(venv / "bin" / "pytest"), *project.test_paths]
    cmd += project.pytest_args
    if not any(a.startswith("--timeout") for a in project.pytest_args):
        cmd.append(f"--timeout={project.per_test_timeout}")
    for test, _reason in project.deselect:
        cmd += ["--deselect", test]
    if project.xdist and not args.serial:
        cmd += ["-p", "xdist", "-n", "2"]
    cmd += ["--junitxml", str(junit), "-o", "junit_family=xunit2", "-p", "no:cacheprovider"]
    if variant == WITHOUT:
        cmd += ["-p", "no:outbound"]
    else:  # no policy in either mode: none of these projects has one
        cmd += ["-o", f"outbound_mode={variant}", "--outbound-report", str(report)]
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.lower().endswith("_proxy") and k not in ("PYTEST_ADDOPTS", "VIRTUAL_ENV")
    }
    env.update(project.run_env)
    if args.write_bytecode:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    timeout = args.timeout or project.timeout
    _subreaper()
    _reap()
    with log.open("w") as out:
        out.write(f"$ cd {shlex.quote(str(checkout))} && {shlex.join([*NETNS, *cmd])}\n")
        out.flush()
        load_before = os.getloadavg()[0]
        cpu_before = _children_cpu()
        start = time.perf_counter()
        proc = subprocess.Popen(
            [*NETNS, *cmd],
            cwd=checkout,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        returncode: int | None = None
        try:
            returncode = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        finally:  # timed out, or this script interrupted: the suite's processes go too
            if returncode is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        seconds = time.perf_counter() - start
        # what the run left behind (a server a test forked): it must not load the next run
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        time.sleep(0.05)
        _reap()
        cpu = _children_cpu() - cpu_before
        load = (load_before, os.getloadavg()[0])
    outcomes, messages = _junit(junit) if junit.is_file() else ({}, {})
    recorded: Counter[str] = Counter()
    by_test: dict[str, list[str]] = {}
    if report.is_file():
        data = json.loads(report.read_text())
        for r in data.get("requests", []):
            recorded[str(r.get("client", "?"))] += 1
            line = (
                f"{r.get('verdict')} {r.get('client')} {r.get('method')} {r.get('url')}"
                f" [{','.join(r.get('reasons') or [])}] at {r.get('location')}"
            )
            tests = by_test.setdefault(_junit_id(str(r.get("nodeid"))), [])
            if line not in tests:
                tests.append(line)
    return Run(
        variant=variant,
        label=label,
        seconds=seconds,
        cpu=cpu,
        returncode=returncode,
        outcomes=outcomes,
        messages=messages,
        log=log,
        load=load,
        reported=report.is_file(),
        recorded=recorded,
        requests_by_test=by_test,
    )


def _junit_id(nodeid: str) -> str:
    """A pytest node id as ``_junit`` names the test: ``a/b.py::C::t[x]`` -> ``a.b.C::t[x]``."""
    head, bracket, params = nodeid.partition("[")
    parts = head.split("::")
    module = parts[0].removesuffix(".py").replace("/", ".")
    return f"{'.'.join([module, *parts[1:-1]])}::{parts[-1]}{bracket}{params}"


def _junit(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """test id -> outcome, and test id -> the first line of its failure, from a junit file."""
    outcomes: dict[str, str] = {}
    messages: dict[str, str] = {}
    for case in ET.parse(path).iter("testcase"):
        test = f"{case.get('classname', '')}::{case.get('name', '')}"
        kinds = []
        for child in case:
            if child.tag == "skipped":
                kinds.append("xfailed" if child.get("type") == "pytest.xfail" else "skipped")
            elif child.tag in ("failure", "error"):
                kinds.append("failed" if child.tag == "failure" else "error")
                lines = (child.text or "").strip().splitlines()
                text = child.get("message") or (lines[-1] if lines else "")
                messages.setdefault(test, text[:500])
        if not any(k in ("failed", "skipped", "xfailed") for k in kinds):
            kinds.insert(0, "passed")
        outcome = "+".join(kinds)
        if test in outcomes:  # the same id twice (a duplicate name): keep both
            outcome = f"{outcomes[test]},{outcome}"
        outcomes[test] = outcome
    return outcomes, messages


def _print_table(results: list[dict[str, Any]]) -> None:
    if not results:
        return
    print(
        f"\n{'project':16} {'tests':>6} {'changed':>8} {'flaky':>6} {'wall s':>15}"
        f" {'ratio':>6} {'cpu s':>15} {'ratio':>6}  requests seen"
    )
    for r in results:
        seen = r["recorded_by_client"]
        wall, cpu = r["median_seconds"].values(), r["median_cpu"].values()
        print(
            f"{r['project']:16} {r['tests']:6} {len(r['changes']):8} {len(r['flaky']):6}"
            f" {' / '.join(f'{v:6.1f}' for v in wall):>15} {r['ratio']:6.3f}"
            f" {' / '.join(f'{v:6.1f}' for v in cpu):>15} {r['cpu_ratio']:6.3f}"
            f"  {', '.join(f'{k} {v}' for k, v in sorted(seen.items()))}"
        )
    print("(times: medians without / with the plugin; ratios: with / without)")
    print(
        f"\n{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, Python "
        f"{platform.python_version()}, {os.cpu_count()} cores, load average "
        + " ".join(f"{v:.2f}" for v in os.getloadavg())
    )


if __name__ == "__main__":
    sys.exit(main())
