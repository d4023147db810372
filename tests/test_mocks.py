"""The same test body under responses, respx and pytest-httpx is observed identically, and
observing does not change what the mocks see or return for an allowed request."""

from __future__ import annotations

import json
import textwrap

import pytest

POLICY = """
[[destination]]
name = "update-check"
hosts = ["octopus.com"]
"""

BODIES = {
    "responses": """
        import requests, responses

        @responses.activate
        def test_body(outbound):
            mocked = responses.post("https://octopus.com/api/check", json={"latest": "2"})
            r = requests.post("https://octopus.com/api/check?v=1", json={"id": "abc"},
                              headers={"X-Trace": "t1"})
            assert r.json() == {"latest": "2"}
            assert mocked.call_count == 1
            assert responses.calls[0].request.body == b'{"id": "abc"}'
            record(outbound)
    """,
    "respx": """
        import httpx, respx

        @respx.mock
        def test_body(outbound):
            route = respx.post("https://octopus.com/api/check").respond(json={"latest": "2"})
            r = httpx.post("https://octopus.com/api/check?v=1", json={"id": "abc"},
                           headers={"X-Trace": "t1"})
            assert r.json() == {"latest": "2"}
            assert route.call_count == 1
            assert route.calls.last.request.content == b'{"id":"abc"}'
            record(outbound)
    """,
    "pytest-httpx": """
        import httpx

        def test_body(outbound, httpx_mock):
            httpx_mock.add_response(method="POST", url="https://octopus.com/api/check?v=1",
                                    json={"latest": "2"})
            r = httpx.post("https://octopus.com/api/check?v=1", json={"id": "abc"},
                           headers={"X-Trace": "t1"})
            assert r.json() == {"latest": "2"}
            assert len(httpx_mock.get_requests()) == 1
            record(outbound)
    """,
}

RECORDER = """
import json, pathlib

def record(outbound):
    seen = [
        {k: v for k, v in r.to_json().items() if k not in ("client", "headers", "time", "thread", "location", "nodeid")}
        for r in outbound.requests
    ]
    seen[0]["x-trace"] = outbound.requests[0].headers.get("X-Trace") or outbound.requests[0].headers.get("x-trace")
    pathlib.Path("seen.json").write_text(json.dumps(seen, sort_keys=True))
"""


@pytest.mark.parametrize("mock", sorted(BODIES))
def test_each_mock_library_is_observed_identically(pytester: pytest.Pytester, mock: str) -> None:
    pytester.makefile(".toml", outbound=POLICY)
    pytester.makeini("[pytest]\noutbound_policy = outbound.toml\noutbound_mode = enforce\n")
    pytester.makepyfile(recorder=RECORDER)
    pytester.makepyfile(test_it="from recorder import record\n" + textwrap.dedent(BODIES[mock]))
    result = pytester.runpytest("-p", "no:randomly")
    result.assert_outcomes(passed=1)
    seen = json.loads((pytester.path / "seen.json").read_text())
    assert seen == [
        {
            "destination": "update-check",
            "fields": ["v", "header:x-trace", "id"],
            "host": "octopus.com",
            "method": "POST",
            "path": "/api/check",
            "phase": "call",
            "port": 443,
            "query": {"v": ["1"]},
            "reasons": [],
            "scheme": "https",
            "url": "https://octopus.com/api/check?v=1",
            "verdict": "allowed",
            "x-trace": "t1",
        }
    ]
