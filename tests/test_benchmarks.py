"""benchmarks/run.py measures what it says it measures.

The benchmark is run by hand and no timing is asserted here (issue 8). These tests keep it
honest between runs: its policy documents its targets, each generated test of the HTTP, socket
and memory cases really goes through the plugin (and through nothing of it with
``-p no:outbound``), every suite variant runs, a quick run of the import and matching cases
writes its results, and the script rejects bad options before measuring and writes its results
whole or not at all. The instruction-count case (valgrind, minutes) is not run here.
Every request the children make goes to a mock or a loopback listener (the plugin's start-up
probe asks the resolver for this machine's own name: README, "Sensitive values").
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from pytest_outbound._decide import Context, Rules, decide
from pytest_outbound._policy import Policy
from pytest_outbound._record import build_request

RUN = Path(__file__).resolve().parents[1] / "benchmarks" / "run.py"


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


BENCH = _load(RUN, "outbound_benchmarks_run")


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return BENCH


@pytest.fixture(scope="module")
def root(bench: ModuleType) -> Iterator[Path]:
    """The benchmark's own workspace, with a 12-test suite."""
    made: Path = bench.workspace(False, 12)
    try:
        yield made
    finally:
        import shutil

        shutil.rmtree(made, ignore_errors=True)


# -- the policy and the generated tests ---------------------------------------------------------


def _verdict(rules: Rules, method: str, url: str, body: bytes = b"") -> Any:
    record = build_request(
        method, url, headers={"Content-Type": "application/json"}, body=body, client="bench"
    )
    return decide(record, Context(rules))


def test_the_policy_documents_each_target_and_the_contract_is_checked(
    bench: ModuleType, root: Path
) -> None:
    policy = Policy.from_toml(root / "policy.toml")
    assert len(policy.destinations) == 50  # the 50-destination policy
    rules = Rules(policy)
    generated = _load(root / "http" / "test_http.py", "outbound_benchmarks_generated")

    get = _verdict(rules, "GET", generated.GET_URL + "?page=3")
    assert (get.allowed, get.destination) == (True, "bench-api")
    for body in (generated.BODY, generated._varied(7)):
        post = _verdict(rules, "POST", generated.PAYLOAD_URL, json.dumps(body).encode())
        assert (post.allowed, post.destination) == (True, "bench-update-check")
    events = _verdict(rules, "POST", f"https://{bench.EVENTS_HOST}/v1/events", b"{}")
    assert (events.allowed, events.destination) == (True, "bench-events")

    # the payload case pays for a real contract: a field it does not list, a value that does
    # not match, or a required field left out is a violation
    body = generated.BODY
    for wrong in (
        {**body, "hostname": "build-01"},
        {**body, "version": "not-a-version"},
        {k: v for k, v in body.items() if k != "installationId"},
    ):
        refused = _verdict(rules, "POST", generated.PAYLOAD_URL, json.dumps(wrong).encode())
        assert not refused.allowed, wrong
        assert refused.destination == "bench-update-check"


#: Every test the HTTP cases and the memory case run: (test, the variant with the plugin on).
HTTP_TESTS = sorted(
    {
        (entry.partition("+")[0], variant)
        for tests, _, variant in BENCH.HTTP_CASES.values()
        for entry, _ in tests
    }
    | {("test_memory", "on")}
)
# Which interceptor each generated test goes through (``_timed``'s "patched" keys).
_CLIENT = {"requests": "requests", "httpx": "httpx", "socket": "socket", "memory": "requests"}


@pytest.mark.parametrize(("test", "on"), HTTP_TESTS, ids=[test for test, _ in HTTP_TESTS])
def test_each_generated_test_goes_through_the_plugin_only_when_it_is_on(
    bench: ModuleType, root: Path, test: str, on: str
) -> None:
    client = next(value for word, value in _CLIENT.items() if word in test)
    n, warmup = 4, 0 if test == "test_memory" else 2

    child = bench.run_test(root, test, on, n, warmup=warmup)
    assert child.inner["n"] == n
    assert child.inner["patched"][client] is True
    assert child.recorded == n + warmup  # every request judged, and allowed:
    assert "mode: enforce;" in child.output  # a violation would have failed the run

    child = bench.run_test(root, test, "off", n, warmup=warmup)
    assert child.inner["patched"] == {"requests": False, "httpx": False, "socket": False}
    assert child.recorded is None  # no summary: the plugin was not loaded


def test_run_test_names_the_failing_child(bench: ModuleType, root: Path) -> None:
    with pytest.raises(RuntimeError, match=r"test_nonexistent \(on\) failed with exit code 4"):
        bench.run_test(root, "test_nonexistent", "on", 1, warmup=0)


# -- the suite case -------------------------------------------------------------------------------


def test_the_generated_suite_has_the_tests_asked_for(root: Path) -> None:
    sources = sorted((root / "suite").glob("test_mod_*.py"))
    assert [p.name for p in sources] == ["test_mod_000.py"]  # 100 to a module
    text = sources[0].read_text()
    assert text.count("\ndef test_") == 12
    assert text.count("@pytest.mark.parametrize") == 2  # tests 0 and 10
    assert (root / "suite-1" / "test_mod_000.py").read_text().count("def test_") == 1


@pytest.mark.parametrize("setting", ["", "-alone"])
@pytest.mark.parametrize("variant", ["on", "off", "socket"])
def test_each_suite_variant_runs_the_whole_suite(
    bench: ModuleType, root: Path, variant: str, setting: str
) -> None:
    args = bench.pytest_args(variant + setting, root, [])
    child = bench.run_child(args, root / "suite", bench.child_env())
    assert child.returncode == 0, child.output
    assert "12 passed" in child.output
    summary = "mode: enforce; 0 outbound request(s)"
    assert (summary in child.output) == (variant == "on")
    assert ("--disable-socket" in args) == (variant == "socket")
    disabled = {arg for arg in args if arg.startswith("no:")}
    loaded = {"on": {"outbound"}, "off": set(), "socket": {"socket"}}[variant]
    assert disabled & {"no:outbound", "no:socket"} == {"no:outbound", "no:socket"} - {
        f"no:{name}" for name in loaded
    }
    assert ("no:recording" in disabled) == bool(setting)  # a development plugin of this venv


def test_alone_disables_every_other_plugin_but_the_two_measured(bench: ModuleType) -> None:
    from importlib.metadata import entry_points

    installed = {ep.name for ep in entry_points(group="pytest11")}
    disabled = {a.removeprefix("no:") for a in bench.other_plugins_disabled() if a != "-p"}
    assert disabled == installed - {"outbound", "socket"}
    assert {"recording", "respx", "asyncio"} <= disabled


def test_interleaved_rotates_the_order_after_one_warm_up_each(bench: ModuleType) -> None:
    seen: list[str] = []
    runs = bench.interleaved(4, ["a", "b", "c"], lambda v: seen.append(v) or v.upper(), "t")
    assert seen == list("abc" + "abc" + "bca" + "cab" + "abc")
    assert runs == {"a": ["A"] * 4, "b": ["B"] * 4, "c": ["C"] * 4}


# -- the import case ------------------------------------------------------------------------------

IMPORTTIME = """\
import time: self [us] | cumulative | imported package
import time:        30 |         30 | unrelated
import time:       100 |        100 |     json.decoder
import time:        50 |         50 |     pytest_outbound._value
import time:       200 |        300 |   json
import time:        70 |        120 |   pytest_outbound._errors
import time:       400 |        820 | pytest_outbound
import time:        10 |         10 | pytest_outbound._late
"""


def test_parse_importtime_counts_the_outermost_imports_and_what_they_pull_in(
    bench: ModuleType,
) -> None:
    parsed = bench.parse_importtime(IMPORTTIME)
    assert parsed["total_us"] == 830  # the two outermost pytest_outbound imports
    assert parsed["own_self_us"] == 400 + 70 + 50 + 10
    assert parsed["pulled_in_self_us"] == [("json", 300)]
    assert parsed["pulled_in_by_module"] == {"pytest_outbound": [("json", 300)]}


# -- the script -----------------------------------------------------------------------------------


def test_a_quick_run_writes_its_results_whole(tmp_path: Path) -> None:
    out, scratch = tmp_path / "out", tmp_path / "scratch"
    scratch.mkdir()
    command = [sys.executable, str(RUN), "--quick", "--only", "import,matching", "--reps", "1"]
    command += ["--json", str(out / "r.json"), "--markdown", str(out / "r.md")]
    env = BENCH.child_env(TMPDIR=str(scratch))  # the children's environment, as run.py makes it
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["r.json", "r.md"]  # no temporary left
    assert list(scratch.iterdir()) == []  # the workspace is removed

    result = json.loads((out / "r.json").read_text())
    assert result["settings"]["quick"] is True
    assert result["machine"]["nproc"]
    assert result["machine"]["python"]
    cases = [row["case"] for row in result["rows"]]
    assert cases == ["import"] * 2 + ["matching"] * 4
    judged = [row for row in result["rows"] if row["target"]]
    assert [row["result"] for row in judged] == [
        "PASS" if row["value"] <= (50 if row["case"] == "import" else 1.2) else "FAIL"
        for row in judged
    ]
    assert (out / "r.md").read_text().startswith("| case | measure | value |")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--reps", "0"], "argument --reps: '0': give a whole number of 1 or more"),
        (["--reps", "many"], "argument --reps: 'many': give a whole number of 1 or more"),
        (["--only", "speed"], "unknown case(s): speed; choose from"),
        (["--json", "{file}/r.json"], "--json {file}/r.json: {file} is a file, not a directory"),
        (["--markdown", "{dir}"], "--markdown {dir}: is a directory; give a file name in it"),
        (["--json", ""], "--json : is a directory; give a file name in it"),
        (["--ref", "no-such-ref"], "--ref no-such-ref: not a commit of"),
    ],
)
def test_bad_options_stop_before_anything_is_measured(
    bench: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    (tmp_path / "file").write_text("")
    fill = {"file": str(tmp_path / "file"), "dir": str(tmp_path)}
    monkeypatch.setattr(bench, "workspace", lambda *a: pytest.fail("measuring began"))
    writable = ["--json", str(tmp_path / "ok.json")]  # not benchmarks/: it may be read-only
    with pytest.raises(SystemExit) as stopped:
        bench.main([*writable, *(a.format(**fill) for a in args)])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert message.format(**fill) in err
    assert "Traceback" not in err


def test_an_output_path_that_cannot_be_checked_or_written_is_named(
    bench: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "out" / "r.json"
    assert bench.unwritable(target) == ""
    assert not (tmp_path / "out").exists()  # checking makes nothing
    assert bench.unwritable(tmp_path / "r.json") == ""
    (tmp_path / "r.json").write_text("{}")  # the last run's results: replaced at the end
    assert bench.unwritable(tmp_path / "r.json") == ""
    assert bench.unwritable(Path("")).startswith("is a directory")

    monkeypatch.setattr(bench.os, "access", lambda *a: False)  # root may write anywhere
    assert bench.unwritable(target) == f"{tmp_path} is not writable; choose another path"

    def denied(self: Path) -> bool:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "is_dir", denied)
    assert bench.unwritable(target) == "cannot be checked (Permission denied); choose another path"


@pytest.fixture
def in_process(
    bench: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """``main`` run in this process: its workspace in a scratch directory, which must be empty
    again afterwards, and ``PYCACHE`` (where children keep bytecode) cleared."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(bench.tempfile, "tempdir", str(scratch))
    yield tmp_path
    assert list(scratch.iterdir()) == []
    assert bench.PYCACHE == {}


@pytest.mark.parametrize("failure", ["runtime", "process", "output"])
def test_a_failed_case_is_reported_and_no_partial_results_are_written(
    bench: ModuleType,
    in_process: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    failure: str,
) -> None:
    def run_case(case: str, root: Path, s: Any) -> Any:
        if case == "import":
            return [bench.Row("import", "first", 1.0, "ms", note="measured")], {}
        if failure == "runtime":
            raise RuntimeError("matching.py failed:\nthe child's own words")
        if failure == "process":
            raise subprocess.CalledProcessError(
                3, ["python", "-c", "x"], stderr="the child's words"
            )
        return json.loads("the child's unreadable line")

    monkeypatch.setattr(bench, "run_case", run_case)
    results = in_process / "r.json"
    code = bench.main(["--quick", "--only", "import,matching", "--json", str(results)])
    assert code == 1
    captured = capsys.readouterr()
    assert "error: the matching case failed, so no results were written" in captured.err
    assert "Traceback" not in captured.err
    assert {
        "runtime": "the child's own words",
        "process": "python -c x exited with 3:\nthe child's words",
        "output": "JSONDecodeError: Expecting value: line 1 column 1 (char 0) (at ",
    }[failure] in captured.err
    # what was measured before is shown again, after the failed case began
    assert "first" in captured.out.split("[matching]")[1]
    assert not results.exists()


def test_a_ref_that_cannot_be_extracted_stops_the_run_cleanly(
    bench: ModuleType,
    in_process: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def snapshot(ref: str, root: Path) -> None:
        raise subprocess.CalledProcessError(128, ["git", "archive", ref], stderr=b"fatal: no path")

    monkeypatch.setattr(bench, "snapshot", snapshot)
    monkeypatch.setattr(bench, "run_case", lambda *a: pytest.fail("measuring began"))
    results = in_process / "r.json"
    assert bench.main(["--quick", "--only", "import", "--ref", "HEAD", "--json", str(results)]) == 1
    err = capsys.readouterr().err
    assert "error: --ref HEAD could not be extracted:\ngit archive HEAD exited with 128" in err
    assert "fatal: no path" in err
    assert not results.exists()


def test_a_failed_profile_keeps_the_measurements(
    bench: ModuleType,
    in_process: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    missed = bench.Row("import", "the miss", 60.0, "ms", None, "<= 50 ms", False)
    monkeypatch.setattr(bench, "run_case", lambda *a: ([missed], {}))  # no samples to profile
    results, markdown = in_process / "r.json", in_process / "r.md"
    argv = ["--quick", "--only", "import", "--profile", "--json", str(results)]
    assert bench.main([*argv, "--markdown", str(markdown)]) == 1
    err = capsys.readouterr().err
    assert "error: profiling failed; the results are written without the rest of" in err
    assert "KeyError: 'samples' (at run.py:" in err
    written = json.loads(results.read_text())
    assert [row["measure"] for row in written["rows"]] == ["the miss"]
    assert written["profiles"]["error"].startswith("KeyError: 'samples'")
    assert "| import | the miss | 60.0 ms | <= 50 ms | **FAIL** |" in markdown.read_text()
