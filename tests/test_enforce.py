"""Modes audit and enforce, as a user's suite meets them: blocked, swallowed, redirected, retried."""

from __future__ import annotations

import pytest
from inner_output import failed_only_for_swallowed_blocks

POLICY = """
[[destination]]
name = "update-check"
description = "Checking for updates."
hosts = ["octopus.com"]
schemes = ["https"]

[[destination]]
name = "nuget"
hosts = ["*.nuget.org"]
"""


@pytest.fixture
def policy(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makefile(".toml", outbound=POLICY)
    return pytester


def ini(mode: str, extra: str = "") -> str:
    return f"[pytest]\noutbound_policy = outbound.toml\noutbound_mode = {mode}\n{extra}"


def test_audit_records_but_never_fails(
    policy: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")  # the summary fits the terminal's width
    policy.makeini(ini("audit"))
    policy.makepyfile(
        """
        import requests, responses

        @responses.activate
        def test_leak(outbound):
            responses.get("https://evil.example/collect", body="ok")
            assert requests.get("https://evil.example/collect").text == "ok"
            [req] = outbound.requests
            assert (req.verdict, req.reasons, req.client) == ("violation", ["undocumented"], "requests")
            assert req.host == "evil.example" and req.phase == "call"
            assert req.location.startswith("test_audit_records_but_never_fails.py:")
        """
    )
    result = policy.runpytest()
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "*= outbound =*",
            "mode: audit; 1 outbound request(s), 1 violation(s)",
            "0 of 2 documented destinations were exercised",
            "violations:",
            "  evil.example: undocumented: 1 request(s) in 1 test(s)",
            "    test_audit_records_but_never_fails.py::test_leak at",
            "        test_audit_records_but_never_fails.py:6: GET",
            "        https://evil.example/collect [[]requests[]]",
            "undocumented hosts:",
            "  evil.example (1 request(s))",
            "documented destinations no test exercised:",
            "  update-check (octopus.com)",
            "  nuget (*.nuget.org)",
        ]
    )
    assert result.ret == 0


def test_enforce_blocks_before_the_mock_sees_it(policy: pytest.Pytester) -> None:
    policy.makeini(ini("enforce"))
    policy.makepyfile(
        """
        import httpx, pytest, requests, responses, respx
        from pytest_outbound import OutboundBlocked

        @responses.activate
        def test_requests():
            mocked = responses.get("https://evil.example/a", body="leaked")
            with pytest.raises(OutboundBlocked):
                requests.get("https://evil.example/a")
            assert mocked.call_count == 0

        @respx.mock
        def test_httpx():
            route = respx.get("https://evil.example/a").respond(200)
            with pytest.raises(OutboundBlocked):
                httpx.get("https://evil.example/a")
            assert not route.called
        """
    )
    result = policy.runpytest()
    # Both tests caught the exception, yet fail: the violation is the failure.
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "*1 outbound request(s) were blocked, and the code under test caught*",
            "outbound request blocked: GET https://evil.example/a (client: requests)",
            "  from: test_enforce_blocks_before_the_mock_sees_it.py:8 in *::test_requests [[]call]",
            "  why:  host 'evil.example' is not a documented destination",
            "  documented: update-check (octopus.com), nuget (*.nuget.org)",
            "  to document it, add to outbound.toml:",
            "    [[][[]destination]]",
            '    name = "evil-example"',
            '    hosts = ["evil.example"]',
            "*or allow it in this test only:",
            '    @pytest.mark.outbound_allow("evil.example")',
        ]
    )
    result.stdout.fnmatch_lines(["*GET https://evil.example/a (client: httpx)*"])
    failed_only_for_swallowed_blocks(result)


def test_uncaught_block_fails_at_the_call_site(policy: pytest.Pytester) -> None:
    policy.makeini(ini("enforce"))
    policy.makepyfile(
        """
        import requests

        def check_for_updates():
            return requests.get("http://octopus.com/api/check")

        def test_update():
            check_for_updates()
        """
    )
    result = policy.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "E *pytest_outbound.OutboundBlocked: outbound request blocked:"
            " GET http://octopus.com/api/check (client: requests)",
            "E *  from: test_uncaught_block_fails_at_the_call_site.py:4 in *",
            "E *  why:  destination 'update-check': scheme 'http' is not documented (https)",
            "E *  to document it, extend destination 'update-check' (outbound.toml):",
            'E *      schemes = [[]"https", "http"]',
        ]
    )
    # Raised once at the call site; no second "swallowed" failure on top of it.
    assert "caught the OutboundBlocked" not in result.stdout.str()


def test_a_block_raised_on_wrapped_or_grouped_was_not_swallowed(policy: pytest.Pytester) -> None:
    """The block reaches pytest inside another exception (raised while handling it) or an
    exception group (a task group's): the test fails on it, and is not told it caught it."""
    policy.makeini(ini("enforce"))
    policy.makepyfile(
        """
        import asyncio, requests
        from pytest_outbound import OutboundBlocked

        def test_wrapped():
            try:
                requests.get("https://telemetry.example/v1")
            except OutboundBlocked:
                raise RuntimeError("the update check failed")

        async def send():
            requests.get("https://telemetry.example/v1")

        async def send_in_a_task_group():
            async with asyncio.TaskGroup() as group:
                group.create_task(send())

        def test_grouped():
            asyncio.run(send_in_a_task_group())
        """
    )
    result = policy.runpytest()
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*RuntimeError: the update check failed*"])
    result.stdout.fnmatch_lines(["*ExceptionGroup: unhandled errors in a TaskGroup*"])
    assert "caught the OutboundBlocked" not in result.stdout.str()


def test_swallowed_block_still_fails(policy: pytest.Pytester) -> None:
    policy.makeini(ini("enforce"))
    policy.makepyfile(
        """
        import httpx

        def check_for_updates():
            try:
                return httpx.get("https://telemetry.example/v1").status_code
            except Exception:
                return None   # the app swallows every error

        def test_update():
            assert check_for_updates() is None
        """
    )
    result = policy.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*caught the OutboundBlocked exception; the test fails anyway*", "*telemetry.example*"]
    )
    failed_only_for_swallowed_blocks(result)


def test_redirect_to_undocumented_host_is_caught_at_second_hop(policy: pytest.Pytester) -> None:
    policy.makeini(ini("enforce"))
    policy.makepyfile(
        """
        import httpx, pytest, requests, responses, respx
        from pytest_outbound import OutboundBlocked

        @responses.activate
        def test_requests(outbound):
            responses.get("https://octopus.com/dl", status=302,
                          headers={"Location": "https://evil.example/dl"})
            with pytest.raises(OutboundBlocked, match="evil.example"):
                requests.get("https://octopus.com/dl")
            assert [(r.host, r.verdict) for r in outbound.requests] == [
                ("octopus.com", "allowed"), ("evil.example", "violation")]

        @respx.mock
        def test_httpx(outbound):
            respx.get("https://octopus.com/dl").respond(302, headers={"Location": "https://evil.example/dl"})
            with pytest.raises(OutboundBlocked, match="evil.example"):
                httpx.get("https://octopus.com/dl", follow_redirects=True)
            assert [(r.host, r.verdict) for r in outbound.requests] == [
                ("octopus.com", "allowed"), ("evil.example", "violation")]
        """
    )
    result = policy.runpytest()
    # The blocked hop fails each test even though pytest.raises caught it.
    result.assert_outcomes(failed=2)
    assert result.stdout.str().count("GET https://evil.example/dl") >= 2
    assert "AssertionError" not in result.stdout.str()
    for client in ("requests", "httpx"):
        result.stdout.fnmatch_lines(
            [f"outbound request blocked: GET https://evil.example/dl (client: {client})"]
        )
    failed_only_for_swallowed_blocks(result)


def test_retries_do_not_multiply_a_blocked_attempt(policy: pytest.Pytester) -> None:
    policy.makeini(ini("enforce"))
    policy.makepyfile(
        """
        import pytest, requests
        from requests.adapters import HTTPAdapter
        from urllib3.util.retry import Retry
        from pytest_outbound import OutboundBlocked

        def test_blocked_once(outbound):
            session = requests.Session()
            session.mount("https://", HTTPAdapter(max_retries=Retry(total=5, backoff_factor=0)))
            with pytest.raises(OutboundBlocked):
                session.get("https://evil.example/")
            assert len(outbound.requests) == 1
        """
    )
    result = policy.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["mode: enforce; 1 outbound request(s), 1 violation(s)"])
    result.stdout.no_fnmatch_line("*AssertionError*")


def test_documented_request_passes_in_enforce(
    policy: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")  # the summary fits the terminal's width
    policy.makeini(ini("enforce"))
    policy.makepyfile(
        """
        import httpx, requests, responses, respx

        @responses.activate
        def test_requests(outbound):
            responses.get("https://octopus.com/check", json={"latest": "2024.1"})
            assert requests.get("https://octopus.com/check").json() == {"latest": "2024.1"}
            assert [r.destination for r in outbound.requests] == ["update-check"]

        @respx.mock
        async def _get():
            async with httpx.AsyncClient() as client:
                return await client.get("https://api.nuget.org/v3/index.json")

        def test_httpx_async(outbound):
            import asyncio
            respx.get("https://api.nuget.org/v3/index.json").respond(json={"version": "3"})
            assert asyncio.run(_get()).json() == {"version": "3"}
            [req] = outbound.requests
            assert (req.client, req.destination, req.verdict) == ("httpx", "nuget", "allowed")
        """
    )
    result = policy.runpytest()
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "mode: enforce; 2 outbound request(s), 0 violation(s)",
            "2 of 2 documented destinations were exercised",
            "destinations contacted:",
            "  update-check (octopus.com): 1 request(s) in 1 test(s):",
            "      test_documented_request_passes_in_enforce.py::test_requests",
            "  nuget (*.nuget.org): 1 request(s) in 1 test(s):",
            "      test_documented_request_passes_in_enforce.py::test_httpx_async",
        ]
    )


def test_loopback_is_not_outbound_unless_enforced(policy: pytest.Pytester, loopback: None) -> None:
    policy.makeini(ini("enforce"))
    policy.makepyfile(
        """
        import requests
        from loopback import serve

        def test_local(outbound):
            with serve() as base:
                assert requests.get(base + "/hello").text == "/hello"
            assert outbound.requests == []
        """
    )
    policy.runpytest().assert_outcomes(passed=1)
    result = policy.runpytest("-o", "outbound_local=enforce")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*host '127.0.0.1' is not a documented destination*"])


def test_redirect_from_loopback_server_blocked_before_leaving(
    policy: pytest.Pytester, loopback: None
) -> None:
    policy.makeini(ini("enforce"))
    policy.makepyfile(
        """
        import httpx, pytest, requests
        from loopback import serve
        from pytest_outbound import OutboundBlocked

        def test_real_redirect(outbound):
            with serve() as base:
                with pytest.raises(OutboundBlocked):
                    requests.get(base + "/redirect?to=http://evil.example/x")
                with pytest.raises(OutboundBlocked):
                    httpx.get(base + "/redirect?to=http://evil.example/y", follow_redirects=True)
            assert [r.url for r in outbound.requests] == [
                "http://evil.example/x", "http://evil.example/y"]
        """
    )
    result = policy.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*2 outbound request(s) were blocked*"])
    failed_only_for_swallowed_blocks(result)
