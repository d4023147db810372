"""The ``outbound`` fixture: requests, to, assert_contacted, assert_not_contacted, allow, stub."""

from __future__ import annotations

import pytest
from inner_output import failed_only_for_swallowed_blocks

POLICY = """
[[destination]]
name = "update-check"
hosts = ["octopus.com"]

[[destination]]
name = "nuget"
hosts = ["*.nuget.org"]
"""


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makefile(".toml", outbound=POLICY)
    pytester.makeini("[pytest]\noutbound_policy = outbound.toml\noutbound_mode = enforce\n")
    return pytester


def test_stub_answers_requests_and_httpx_sync_and_async(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        """
        import asyncio, httpx, requests

        def test_stub(outbound):
            stub = outbound.stub("update-check", json={"latest": "2024.2"}, headers={"X-V": "1"})
            assert requests.get("https://octopus.com/api/check").json() == {"latest": "2024.2"}
            r = httpx.get("https://octopus.com/api/check")
            assert (r.json(), r.headers["x-v"]) == ({"latest": "2024.2"}, "1")

            async def fetch():
                async with httpx.AsyncClient() as client:
                    return await client.get("https://octopus.com/api/check")
            assert asyncio.run(fetch()).json() == {"latest": "2024.2"}
            assert len(stub.calls) == 3
            assert [r.client for r in outbound.requests] == ["requests", "httpx", "httpx"]

        def test_stub_by_pattern_method_status_body(outbound):
            outbound.stub("*.nuget.org", method="POST", status=201, body=b"created")
            r = requests.post("https://api.nuget.org/v3/package", data=b"pkg")
            assert (r.status_code, r.content) == (201, b"created")
            r = httpx.post("https://www.nuget.org/upload", content=b"pkg")
            assert (r.status_code, r.content) == (201, b"created")
        """
    )
    suite.runpytest().assert_outcomes(passed=2)


def test_httpx_takes_a_stub_transport_only_while_a_stub_answers(suite: pytest.Pytester) -> None:
    """The clients' transport lookup hands out a stub's transport only while the stub
    answers, whatever a test patched over it meanwhile, and is put back after the session."""
    import httpx

    before = (httpx.Client._transport_for_url, httpx.AsyncClient._transport_for_url)
    suite.makepyfile(
        """
        import asyncio, httpx, respx

        def test_stub_under_a_monkeypatch(outbound, monkeypatch):
            original = httpx.Client._transport_for_url
            monkeypatch.setattr(httpx.Client, "_transport_for_url", lambda s, u: original(s, u))
            outbound.stub("update-check", json={"from": "stub"})
            assert httpx.get("https://octopus.com/api/check").json() == {"from": "stub"}

        @respx.mock
        def test_stub_after_it(outbound):
            respx.get("https://octopus.com/api/check").respond(json={"from": "respx"})
            outbound.stub("update-check", json={"from": "stub"})
            assert httpx.get("https://octopus.com/api/check").json() == {"from": "stub"}

        @respx.mock
        def test_no_stub(outbound):
            respx.get("https://octopus.com/api/check").respond(json={"from": "respx"})
            assert httpx.get("https://octopus.com/api/check").json() == {"from": "respx"}

            async def fetch():
                async with httpx.AsyncClient() as client:
                    return await client.get("https://octopus.com/api/check")

            assert asyncio.run(fetch()).json() == {"from": "respx"}
        """
    )
    suite.runpytest().assert_outcomes(passed=3)
    assert (httpx.Client._transport_for_url, httpx.AsyncClient._transport_for_url) == before


def test_stub_does_not_document_a_host(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        """
        import requests

        def test_stub_undocumented(outbound):
            outbound.stub("evil.example", json={})
            requests.get("https://evil.example/")
        """
    )
    result = suite.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*OutboundBlocked*evil.example*"])


def test_stub_follows_redirects_hop_by_hop(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        """
        import httpx, requests, responses

        def test_redirect(outbound):
            outbound.stub("update-check", status=302, headers={"Location": "https://api.nuget.org/pkg"})
            outbound.stub("nuget", body="package-bytes")
            assert requests.get("https://octopus.com/dl").text == "package-bytes"
            assert httpx.get("https://octopus.com/dl", follow_redirects=True).text == "package-bytes"
            assert [r.destination for r in outbound.requests] == ["update-check", "nuget"] * 2

        @responses.activate
        def test_beside_responses(outbound):
            responses.get("https://api.nuget.org/from-responses", body="mocked by responses")
            outbound.stub("update-check", status=302,
                          headers={"Location": "https://api.nuget.org/from-responses"})
            assert requests.get("https://octopus.com/dl").text == "mocked by responses"
        """
    )
    suite.runpytest().assert_outcomes(passed=2)


def test_requests_to_and_assertions(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        """
        import pytest, requests

        def test_assertions(outbound):
            outbound.stub("update-check")
            outbound.stub("*.nuget.org")
            requests.get("https://octopus.com/a")
            requests.get("https://api.nuget.org/b")
            requests.get("https://api.nuget.org/c")
            assert [r.path for r in outbound.requests] == ["/a", "/b", "/c"]
            assert [r.path for r in outbound.to("nuget")] == ["/b", "/c"]
            assert [r.path for r in outbound.to("api.nuget.org")] == ["/b", "/c"]
            outbound.assert_contacted("update-check")
            outbound.assert_contacted("nuget", count=2)
            outbound.assert_not_contacted("library.example")
            with pytest.raises(AssertionError, match="'nuget' was contacted 2 time.s., expected 3"):
                outbound.assert_contacted("nuget", count=3)
            with pytest.raises(AssertionError, match="'update-check' was contacted 1 time"):
                outbound.assert_not_contacted("update-check")
            with pytest.raises(AssertionError, match="'x.example' was not contacted"):
                outbound.assert_contacted("x.example")
            with pytest.raises(ValueError, match="neither a documented destination"):
                outbound.to("not a pattern")
        """
    )
    suite.runpytest().assert_outcomes(passed=1)


def test_allow_permits_from_now_on(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        """
        import pytest, requests
        from pytest_outbound import OutboundBlocked

        def test_allow(outbound):
            outbound.stub("partner.example")
            outbound.allow("partner.example")
            assert requests.get("https://partner.example/").status_code == 200

        def test_before_allow_is_still_a_violation(outbound):
            outbound.stub("partner.example")
            with pytest.raises(OutboundBlocked):
                requests.get("https://partner.example/")
            outbound.allow("partner.example")
            requests.get("https://partner.example/")
        """
    )
    result = suite.runpytest()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*1 outbound request(s) were blocked*"])
    failed_only_for_swallowed_blocks(result)


def test_fixture_when_mode_off_says_so(suite: pytest.Pytester) -> None:
    suite.makepyfile("def test_it(outbound):\n    pass\n")
    result = suite.runpytest("--outbound-mode", "off")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*the outbound fixture needs pytest-outbound active*"])
