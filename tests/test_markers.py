"""Markers: outbound_allow, outbound_only, outbound_none, outbound_expect, and their precedence."""

from __future__ import annotations

import pytest

POLICY = """
[[destination]]
name = "update-check"
hosts = ["octopus.com"]

[[destination]]
name = "library"
hosts = ["library.octopus.com"]
"""

# Each test in the generated module tries three hosts and records which were allowed.
PROBE = """
import pytest, requests, responses
from pytest_outbound import OutboundBlocked

HOSTS = ["octopus.com", "library.octopus.com", "extra.example"]

def probe():
    allowed = []
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        for host in HOSTS:
            mock.get(f"https://{host}/")
            try:
                requests.get(f"https://{host}/")
                allowed.append(host)
            except OutboundBlocked:
                pass
    return allowed
"""


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makefile(".toml", outbound=POLICY)
    # audit: nothing is blocked, so probe() reports the verdicts via the records instead.
    pytester.makeini("[pytest]\noutbound_policy = outbound.toml\noutbound_mode = audit\n")
    pytester.makepyfile(probe=PROBE)
    return pytester


def test_precedence_function_over_class_over_module(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        """
        import pytest
        from probe import probe

        pytestmark = pytest.mark.outbound_none

        def allowed(outbound):
            return [r.host for r in outbound.requests if r.verdict == "allowed"]

        def test_module_level(outbound):
            probe()
            assert allowed(outbound) == []

        @pytest.mark.outbound_only("library")
        class TestClass:
            def test_class_level(self, outbound):
                probe()
                assert allowed(outbound) == ["library.octopus.com"]

            @pytest.mark.outbound_only("octopus.com")
            def test_function_level(self, outbound):
                probe()
                assert allowed(outbound) == ["octopus.com"]

            @pytest.mark.outbound_allow("extra.example")
            def test_allow_accumulates(self, outbound):
                probe()
                assert allowed(outbound) == ["library.octopus.com", "extra.example"]

        @pytest.mark.outbound_allow("*.example")
        def test_allow_on_top_of_none(outbound):
            probe()
            assert allowed(outbound) == ["extra.example"]
        """
    )
    suite.runpytest().assert_outcomes(passed=5)


def test_without_markers_the_policy_applies(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        """
        import pytest
        from probe import probe

        def test_policy(outbound):
            probe()
            assert [(r.host, r.verdict, r.destination) for r in outbound.requests] == [
                ("octopus.com", "allowed", "update-check"),
                ("library.octopus.com", "allowed", "library"),
                ("extra.example", "violation", None),
            ]
        """
    )
    suite.runpytest().assert_outcomes(passed=1)


def test_outbound_none_message_names_the_marker(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        """
        import pytest, requests

        @pytest.mark.outbound_none
        class TestQuiet:
            def test_it(self):
                requests.get("https://octopus.com/")
        """
    )
    result = suite.runpytest("-o", "outbound_mode=enforce")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*why:  this test is marked outbound_none (@pytest.mark.outbound_none on class"
            " TestQuiet): nothing may be contacted",
            "*to allow it in this test on purpose, add:",
            '*@pytest.mark.outbound_allow("octopus.com")',
        ]
    )


def test_outbound_expect(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        """
        import pytest
        from probe import probe

        @pytest.mark.outbound_expect("update-check")
        def test_contacted(outbound):
            probe()

        @pytest.mark.outbound_expect("library", count=2)
        def test_count_wrong(outbound):
            probe()

        @pytest.mark.outbound_expect("*.nuget.org")
        def test_never(outbound):
            probe()
        """
    )
    result = suite.runpytest()
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*outbound_expect('library'): expected to be contacted exactly 2 time(s),"
            " was contacted 1 time(s)*",
            "*outbound_expect('[*].nuget.org'): expected to be contacted at least once,"
            " was contacted 0 time(s)*",
        ]
    )


def test_outbound_expect_count_is_exact(suite: pytest.Pytester) -> None:
    """``count=1`` is a ceiling too: contacted twice fails the test."""
    suite.makepyfile(
        """
        import pytest
        from probe import probe

        @pytest.mark.outbound_expect("update-check", count=1)
        def test_twice(outbound):
            probe()
            probe()

        @pytest.mark.outbound_expect("update-check", count=1)
        def test_once(outbound):
            probe()
        """
    )
    result = suite.runpytest()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*outbound_expect('update-check'): expected to be contacted exactly 1 time(s),"
            " was contacted 2 time(s)*"
        ]
    )


# pytest calls pytest_runtest_makereport for every subtest, in the middle of the call phase:
# expectations and swallowed blocks are settled when the whole call phase has ended, not there.
SUBTESTS = {
    "fixture": """
        import pytest, requests, responses
        from pytest_outbound import OutboundBlocked

        @pytest.mark.outbound_expect("update-check")
        @responses.activate
        def test_expect_after_a_subtest(subtests, outbound):
            responses.get("https://octopus.com/")
            with subtests.test("prepare"):
                pass
            requests.get("https://octopus.com/")

        def test_swallowed_before_a_subtest(subtests, outbound):
            try:
                requests.get("https://evil.example/")
            except OutboundBlocked:
                pass
            with subtests.test("later"):
                pass
        """,
    "unittest": """
        import unittest, pytest, requests, responses
        from pytest_outbound import OutboundBlocked

        class T(unittest.TestCase):
            @pytest.mark.outbound_expect("update-check")
            @responses.activate
            def test_expect_after_a_subtest(self):
                responses.get("https://octopus.com/")
                with self.subTest("prepare"):
                    pass
                requests.get("https://octopus.com/")

            def test_swallowed_before_a_subtest(self):
                try:
                    requests.get("https://evil.example/")
                except OutboundBlocked:
                    pass
                with self.subTest("later"):
                    pass
        """,
}


@pytest.mark.parametrize("kind", sorted(SUBTESTS))
def test_subtests_do_not_settle_the_call_phase_early(suite: pytest.Pytester, kind: str) -> None:
    if kind == "fixture" and not hasattr(pytest, "Subtests"):
        pytest.skip("the subtests fixture is built into pytest from 9.0")
    suite.makepyfile(SUBTESTS[kind])
    # enforce: the request to evil.example is blocked (in audit mode it would go out)
    result = suite.runpytest("-rA", "-o", "outbound_mode=enforce")
    outcomes = result.parseoutcomes()
    # The expectation is met by the end of the test; the swallowed block fails its test, once,
    # and not the subtest that happened to come after it.
    assert outcomes.get("failed") == 1, result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "*1 outbound request(s) were blocked, and the code under test caught*",
            "outbound request blocked: GET https://evil.example/ (client: requests)",
            "FAILED *test_swallowed_before_a_subtest*",
        ]
    )
    assert "outbound_expect" not in result.stdout.str()
    assert "SUBFAILED" not in result.stdout.str()


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        ("outbound_only()", "name at least one destination or host pattern"),
        ("outbound_none('x.com')", "outbound_none takes no arguments"),
        ("outbound_allow('bad host')", "'bad host' is neither a documented destination"),
        ("outbound_expect()", "write outbound_expect(entry, count=None)"),
        ("outbound_expect('library', count='two')", "count must be a whole number"),
    ],
)
def test_bad_marker_is_a_usage_error_before_any_test(
    suite: pytest.Pytester, marker: str, message: str
) -> None:
    suite.makepyfile(
        f"""
        import pytest

        @pytest.mark.{marker}
        def test_it():
            pass
        """
    )
    result = suite.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: @pytest.mark.outbound_*on test test_it: *{message}*"])
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


def test_strict_markers_users_see_no_warning(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        """
        import pytest

        @pytest.mark.outbound_allow("x.example")
        @pytest.mark.outbound_only("library")
        @pytest.mark.outbound_expect("library", count=0)
        @pytest.mark.outbound_none
        def test_it():
            pass
        """
    )
    result = suite.runpytest("--strict-markers", "-W", "error")
    result.assert_outcomes(passed=1)
