"""Egress of fixtures wider than a function is the session's; the test's own egress around them
stays the test's (``pytest_fixture_setup`` and ``_settle_fixtures`` in ``_plugin.py``)."""

from __future__ import annotations

import json

import pytest

CONFTEST = """
import re, threading, pytest, requests, responses

def get(name):
    requests.get(f"https://{name}.example/")

@pytest.fixture(scope="session", autouse=True)
def mock():   # first in, last out: answers every other fixture's requests
    with responses.RequestsMock(assert_all_requests_are_fired=False) as m:
        m.get(re.compile(".*"))
        yield

@pytest.fixture(scope="session")
def base():
    get("base-setup")
    yield
    get("base-teardown")

@pytest.fixture(scope="session")
def nested():
    get("nested-setup")
    yield
    get("nested-teardown")

@pytest.fixture(scope="module")
def outer(base, request):
    get("outer-setup-1")
    request.getfixturevalue("nested")   # a wide setup inside a wide setup
    get("outer-setup-2")
    yield
    get("outer-teardown")

@pytest.fixture
def per_test(outer):
    get("fixture-setup")
    yield
    get("fixture-teardown")

@pytest.fixture(scope="session")
def on_demand():
    get("on-demand-setup")
    yield
    get("on-demand-teardown")

@pytest.fixture(scope="session")
def quiet():          # no request of its own: its setup ends unseen
    yield

@pytest.fixture(scope="class")
def per_class():
    get("class-setup")
    yield
    get("class-teardown")

@pytest.fixture(scope="module", params=[1, 2])
def param(request):
    get(f"param-setup-{request.param}")
    yield request.param
    get(f"param-teardown-{request.param}")

@pytest.fixture(scope="session")
def broken():
    get("broken-setup")
    raise RuntimeError("cannot set up")
"""

TESTS = """
import threading
from conftest import get

def test_a(per_test, request):
    get("call-1")
    request.getfixturevalue("on_demand")
    # the first thing after the wide setup: a thread, which belongs to the test
    worker = threading.Thread(target=get, args=("thread-call",))
    worker.start()
    worker.join()
    get("call-2")
    request.getfixturevalue("quiet")
    get("call-3")   # the first thing after it: a request

class TestK:
    def test_k(self, per_class):
        get("class-call")

def test_p(param):
    get(f"p-call-{param}")

def test_broken(broken):
    get("never")

def test_after():
    get("after-call")
"""


def test_wide_fixtures_are_the_sessions_and_the_test_keeps_the_rest(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini("[pytest]\noutbound_mode = audit\noutbound_allow = *.example\n")
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_scopes=TESTS)
    result = pytester.runpytest("--outbound-report", "r.json", "-p", "no:randomly")
    result.assert_outcomes(passed=5, errors=1)
    report = json.loads((pytester.path / "r.json").read_text())
    seen = [
        (r["host"].removesuffix(".example"), r["nodeid"].partition("::")[2], r["phase"])
        for r in report["requests"]
    ]
    expected = [
        ("base-setup", "", "session"),
        ("outer-setup-1", "", "session"),
        ("nested-setup", "", "session"),
        ("outer-setup-2", "", "session"),
        ("fixture-setup", "test_a", "setup"),
        ("call-1", "test_a", "call"),
        ("on-demand-setup", "", "session"),
        ("thread-call", "test_a", "call"),
        ("call-2", "test_a", "call"),
        ("call-3", "test_a", "call"),
        ("fixture-teardown", "test_a", "teardown"),
        ("class-setup", "", "session"),
        ("class-call", "TestK::test_k", "call"),
        ("class-teardown", "", "session"),
        ("param-setup-1", "", "session"),
        ("p-call-1", "test_p[1]", "call"),
        ("param-teardown-1", "", "session"),  # in test_p[2]'s setup
        ("param-setup-2", "", "session"),
        ("p-call-2", "test_p[2]", "call"),
        ("broken-setup", "", "session"),
        ("after-call", "test_after", "call"),
    ]
    # module-scoped teardowns run in the last test's teardown, session ones at the end
    assert seen[: len(expected)] == expected, seen
    assert sorted(seen[len(expected) :]) == sorted(
        [
            ("param-teardown-2", "", "session"),
            ("outer-teardown", "", "session"),
            ("on-demand-teardown", "", "session"),
            ("nested-teardown", "", "session"),
            ("base-teardown", "", "session"),
        ]
    )


def test_a_wide_fixture_set_up_in_the_call_phase_is_blocked_outside_the_test(
    pytester: pytest.Pytester,
) -> None:
    """Enforce mode: the session fixture's undocumented request fails the session, not the
    test; the test's own undocumented request right after it fails the test."""
    pytester.makeini("[pytest]\noutbound_mode = enforce\noutbound_allow = fine.example\n")
    pytester.makeconftest(
        """
        import re, pytest, requests, responses

        @pytest.fixture(scope="session", autouse=True)
        def mock():
            with responses.RequestsMock(assert_all_requests_are_fired=False) as m:
                m.get(re.compile(".*"))
                yield

        @pytest.fixture(scope="session")
        def licence():
            try:
                requests.get("https://licence.example/")
            except Exception:
                pass
            yield
        """
    )
    pytester.makepyfile(
        """
        import pytest, requests
        from pytest_outbound import OutboundBlocked

        def test_it(request):
            requests.get("https://fine.example/")
            request.getfixturevalue("licence")
            with pytest.raises(OutboundBlocked):
                requests.get("https://mine.example/")
        """
    )
    result = pytester.runpytest("-p", "no:randomly")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*caught the OutboundBlocked exception; the test fails anyway*",
            "*1 request(s) outside any test were blocked (enforce): the session fails",
        ]
    )
    assert "mine.example" in result.stdout.str().split("outside any test")[0]


OTHER_THREADS = """
import queue, threading
from concurrent.futures import ThreadPoolExecutor
import pytest
from conftest import get

@pytest.fixture(scope="session")
def pool():
    with ThreadPoolExecutor(1) as ex:
        yield ex

@pytest.fixture(scope="module")
def quiet_module():   # no request of its own
    return 1

@pytest.fixture
def via_pool(pool, quiet_module):   # after a wide setup, its work goes through the pool
    pool.submit(get, "setup-pool").result()

def test_pool(request):
    with ThreadPoolExecutor(1) as ex:
        ex.submit(get, "pool-1").result()
        request.getfixturevalue("quiet")
        ex.submit(get, "pool-2").result()   # the first request after it: another thread's

def test_own_thread(request):
    jobs, done = queue.Queue(), queue.Queue()
    def worker():
        while (name := jobs.get()) is not None:
            get(name)
            done.put(name)
    thread = threading.Thread(target=worker)
    thread.start()
    jobs.put("own-1"); done.get()
    request.getfixturevalue("quiet_module")
    jobs.put("own-2"); done.get()       # not late: the test is still running
    jobs.put(None); thread.join()

def test_setup_through_pool(via_pool):
    get("setup-call")
"""


def test_after_a_wide_setup_other_threads_requests_are_still_the_tests(
    pytester: pytest.Pytester,
) -> None:
    """The end of a wide setup is settled by whichever thread asks first: a pool's worker or
    the test's own thread that makes the first request after ``getfixturevalue`` (or after a
    wide fixture in setup) finds the test's scope, not the session's."""
    pytester.makeini("[pytest]\noutbound_mode = audit\noutbound_allow = *.example\n")
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_threads=OTHER_THREADS)
    result = pytester.runpytest("--outbound-report", "r.json", "-p", "no:randomly")
    result.assert_outcomes(passed=3)
    report = json.loads((pytester.path / "r.json").read_text())
    seen = [
        (r["host"].removesuffix(".example"), r["nodeid"].partition("::")[2], r["phase"])
        for r in report["requests"]
    ]
    assert seen == [
        ("pool-1", "test_pool", "call"),
        ("pool-2", "test_pool", "call"),
        ("own-1", "test_own_thread", "call"),
        ("own-2", "test_own_thread", "call"),
        ("setup-pool", "test_setup_through_pool", "setup"),
        ("setup-call", "test_setup_through_pool", "call"),
    ], seen
