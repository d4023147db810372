"""Payload contracts, sensitive values and min_interval, as a user's suite meets them."""

from __future__ import annotations

import socket

import pytest
from inner_output import before_summary, failed_only_for_swallowed_blocks

POLICY = """
[[destination]]
name = "update-check"
description = "Checking for updates (if enabled)."
hosts = ["octopus.com"]
schemes = ["https"]
min_interval = "8h"

[destination.payload]
fields = ["version", "installationId"]
required = ["version", "installationId"]
[destination.payload.match]
installationId = "uuid"
"""

UUID = "6f1c2b9e-3a4d-4e5f-8a7b-1c2d3e4f5a6b"


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makefile(".toml", outbound=POLICY)
    pytester.makeini(
        "[pytest]\noutbound_policy = outbound.toml\noutbound_mode = enforce\n"
        # This machine's IP/MAC must not trip the tests' URLs; the hostname tests set their own.
        "outbound_sensitive_machine = false\n"
    )
    return pytester


@pytest.mark.parametrize(
    "send",
    [
        f'requests.get("https://octopus.com/api/check", params={{"version": "2024.1.3", "installationId": "{UUID}"}})',
        f'requests.post("https://octopus.com/api/check", json={{"version": "2024.1.3", "installationId": "{UUID}"}})',
        f'requests.post("https://octopus.com/api/check", data={{"version": "2024.1.3", "installationId": "{UUID}"}})',
        f'httpx.post("https://octopus.com/api/check", json={{"version": "2024.1.3", "installationId": "{UUID}"}})',
        f'httpx.post("https://octopus.com/api/check", data={{"version": "2024.1.3", "installationId": "{UUID}"}})',
    ],
    ids=["requests-query", "requests-json", "requests-form", "httpx-json", "httpx-form"],
)
def test_exactly_version_and_installation_id_passes(suite: pytest.Pytester, send: str) -> None:
    suite.makepyfile(
        f"""
        import httpx, requests

        def test_update_check(outbound):
            outbound.stub("update-check", method="{"GET" if "get(" in send else "POST"}")
            {send}
            [request] = outbound.requests
            assert set(request.fields) == {{"version", "installationId"}}
            assert request.verdict == "allowed"
        """
    )
    suite.runpytest().assert_outcomes(passed=1)


@pytest.mark.parametrize("body", ["json", "data", "bytes"])
def test_aiohttp_bodies_are_read_for_the_contract(suite: pytest.Pytester, body: str) -> None:
    suite.makepyfile(
        f"""
        import asyncio, json, aiohttp, pytest
        from pytest_outbound import OutboundBlocked

        FIELDS = {{"version": "2024.1.3", "installationId": "{UUID}", "hostname": "build-01"}}
        SEND = {{
            "json": {{"json": FIELDS}},
            "data": {{"data": FIELDS}},
            "bytes": {{"data": json.dumps(FIELDS).encode(),
                       "headers": {{"Content-Type": "application/json"}}}},
        }}

        async def post(**kwargs):
            async with aiohttp.ClientSession() as session:
                await session.post("https://octopus.com/api/check", **kwargs)

        def test_post(outbound):
            with pytest.raises(OutboundBlocked) as blocked:
                asyncio.run(post(**SEND["{body}"]))
            assert blocked.value.reasons == ("payload:extra:hostname",)
        """
    )
    result = suite.runpytest()
    result.assert_outcomes(failed=1)  # caught by pytest.raises, failed all the same
    failed_only_for_swallowed_blocks(result)


@pytest.mark.parametrize(
    ("send", "extra"),
    [
        ('params={**FIELDS, "hostname": "build-01"}', "hostname"),
        ('params=FIELDS, headers={"X-Machine-Name": "build-01"}', "header:x-machine-name"),
        ('params=FIELDS, cookies={"session": "abc123"}', "cookie:session"),
        ('json={**FIELDS, "env": {"user": "alice"}}', "env.user"),
    ],
    ids=["query-hostname", "header", "cookie", "nested-json"],
)
def test_an_extra_field_fails_naming_it(suite: pytest.Pytester, send: str, extra: str) -> None:
    method = "post" if send.startswith("json") else "get"
    suite.makepyfile(
        f"""
        import requests

        FIELDS = {{"version": "2024.1.3", "installationId": "{UUID}"}}

        def test_update_check(outbound):
            outbound.stub("update-check", method="{method.upper()}")
            requests.{method}("https://octopus.com/api/check", {send})
        """
    )
    result = suite.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*why:  payload contract of 'update-check':",
            f"*+ {extra} *not in fields*",
            "*if the documentation should admit it, extend destination 'update-check'*",
            f'*fields = [[]"version", "installationId", "{extra}"]',
        ]
    )
    result.stdout.fnmatch_lines(["*violations:*", f"*payload:extra:{extra}*"])


def test_missing_and_malformed_fields_fail(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        """
        import pytest, requests
        from pytest_outbound import OutboundBlocked

        def test_missing(outbound):
            outbound.stub("update-check")
            requests.get("https://octopus.com/api/check", params={"version": "2024.1.3"})

        def test_not_a_uuid(outbound):
            outbound.stub("update-check")
            requests.get("https://octopus.com/api/check",
                         params={"version": "2024.1.3", "installationId": "machine-42"})
        """
    )
    result = suite.runpytest()
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*- installationId*required*", "*payload:missing:installationId*"])
    result.stdout.fnmatch_lines(
        ["*! installationId*'machine-42'*uuid*", "*payload:malformed:installationId*"]
    )


def test_opaque_body_breaks_a_contract_unless_admitted(suite: pytest.Pytester) -> None:
    suite.makeconftest(
        """
        from pytest_outbound import Destination, Payload

        def pytest_outbound_destinations(config):
            return [Destination(name="upload", hosts=["upload.example"],
                                payload=Payload(opaque_body=True))]
        """
    )
    suite.makepyfile(
        """
        import requests

        def test_opaque(outbound):
            outbound.stub("update-check", method="POST")
            outbound.stub("upload", method="POST")
            requests.post("https://upload.example/", data=b"\\x00\\x01binary")
            requests.post("https://octopus.com/api/check", data=b"\\x00\\x01binary")
        """
    )
    result = suite.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*POST https://octopus.com/api/check*", "*payload:opaque*"])
    result.stdout.no_fnmatch_line("*upload.example*payload*")


@pytest.mark.machine_probe
def test_real_hostname_in_header_and_path_is_sensitive(suite: pytest.Pytester) -> None:
    hostname = socket.gethostname()
    suite.makeini(
        "[pytest]\noutbound_policy = outbound.toml\noutbound_mode = enforce\n"
        # The hostname may be short (it is "vm" on our CI machines); scan for it anyway.
        f"outbound_sensitive_min_length = {min(4, len(hostname))}\n"
    )
    suite.makepyfile(
        f"""
        import socket, requests

        def test_user_agent(outbound):
            outbound.stub("update-check")
            requests.get("https://octopus.com/api/check",
                         params={{"version": "1.0.0", "installationId": "{UUID}"}},
                         headers={{"User-Agent": f"deploy/1.0 ({{socket.gethostname()}})"}})

        def test_path(outbound):
            outbound.stub("*.example")
            outbound.allow("*.example")
            requests.get(f"https://cdn.example/assets/{{socket.gethostname()}}/logo.png")
        """
    )
    result = suite.runpytest()
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "*why:  carries this machine's hostname (*) in header:user-agent; it must never leave",
            "*fix: this machine's own data must not leave it*",
        ]
    )
    result.stdout.fnmatch_lines(["*carries this machine's hostname (*) in url*"])
    ours = [
        line for line in before_summary(result).splitlines() if "carries this machine's" in line
    ]
    assert len(ours) == 2
    everywhere = [line for line in result.stdout.lines if "carries this machine's" in line]
    assert all(f"({hostname})" not in line for line in everywhere)


@pytest.mark.machine_probe
def test_hostname_base64_in_json_is_sensitive(suite: pytest.Pytester) -> None:
    # A realistic build-agent name: a two-letter hostname has no stable base64 form to find.
    suite.makeconftest(
        """
        import socket

        socket.gethostname = lambda: "build-agent-07"
        # the probe's lookups of that made-up name: answered here, never by a nameserver
        socket.getfqdn = lambda name="": "build-agent-07"
        _getaddrinfo = socket.getaddrinfo

        def getaddrinfo(host, *args, **kwargs):
            if host == "build-agent-07":
                raise socket.gaierror(socket.EAI_NONAME, "not looked up in this test")
            return _getaddrinfo(host, *args, **kwargs)

        socket.getaddrinfo = getaddrinfo
        """
    )
    suite.makeini("[pytest]\noutbound_policy = outbound.toml\noutbound_mode = enforce\n")
    suite.makepyfile(
        f"""
        import base64, json, requests

        def test_base64(outbound):
            outbound.stub("update-check", method="POST")
            blob = base64.b64encode(json.dumps({{"machine": "build-agent-07"}}).encode()).decode()
            requests.post("https://octopus.com/api/check",
                          json={{"version": "1.0.0", "installationId": "{UUID}", "meta": blob}})
        """
    )
    result = suite.runpytest_subprocess()  # the conftest rebinds socket.gethostname
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*carries this machine's hostname (bu*) in body (base64)*", "*sensitive:hostname*"]
    )
    ours = [line for line in result.stdout.lines if "carries this machine's" in line]
    assert ours
    assert all("build-agent-07" not in line for line in ours)


def test_user_defined_sensitive_values(suite: pytest.Pytester) -> None:
    suite.makeini(
        "[pytest]\noutbound_policy = outbound.toml\noutbound_mode = enforce\n"
        "outbound_sensitive_machine = false\noutbound_sensitive =\n    customer-id: ACME-7731\n"
    )
    suite.makeconftest(
        """
        def pytest_outbound_sensitive_values(config):
            return {"license": ["LIC-0042-XYZ"]}
        """
    )
    suite.makepyfile(
        """
        import requests

        def test_ids(outbound):
            outbound.stub("partner.example", method="POST")
            outbound.allow("partner.example")
            requests.post("https://partner.example/", data={"c": "ACME-7731", "l": "LIC-0042-XYZ"})
        """
    )
    result = suite.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*sensitive:customer-id, sensitive:license*"])


INTERVAL_TEST = """
import datetime, time_machine, requests

def check(outbound):
    requests.get("https://octopus.com/api/check",
                 params={{"version": "1.0.0", "installationId": "{uuid}"}})

def test_twice(outbound):
    outbound.stub("update-check")
    with time_machine.travel(datetime.datetime(2026, 1, 1, 0, 0), tick=False) as traveller:
        check(outbound)
        traveller.shift(datetime.timedelta(hours={hours}))
        check(outbound)
"""


@pytest.mark.parametrize(("hours", "passes"), [(8, True), (9, True), (1, False), (7.9, False)])
def test_min_interval_on_the_applications_clock(
    suite: pytest.Pytester, hours: float, passes: bool
) -> None:
    suite.makepyfile(INTERVAL_TEST.format(uuid=UUID, hours=hours))
    result = suite.runpytest()
    if passes:
        result.assert_outcomes(passed=1)
    else:
        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines(
            [
                "*why:  destination 'update-check' was contacted * ago; its min_interval is 8h",
                "*fix: wait at least 8h between requests to 'update-check'*",
            ]
        )


def test_assert_payload_helper(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        """
        import pytest, requests

        def test_adhoc(outbound):
            outbound.stub("partner.example", method="POST")
            outbound.allow("partner.example")
            requests.post("https://partner.example/v1", json={"order": 1, "note": "x"})
            outbound.assert_payload("partner.example", fields=["order", "note"], required=["order"])
            with pytest.raises(AssertionError) as info:
                outbound.assert_payload("partner.example", fields=["order"], match={"order": "uuid"})
            assert "+ note" in str(info.value) and "! order" in str(info.value)
        """
    )
    suite.runpytest().assert_outcomes(passed=1)


def test_streaming_bodies_are_left_to_the_client_and_seen_as_they_pass(
    suite: pytest.Pytester,
) -> None:
    suite.makeconftest(
        """
        from pytest_outbound import Destination, Payload

        def pytest_outbound_destinations(config):
            return [Destination(name="upload", hosts=["upload.example"],
                                payload=Payload(fields=["version", "installationId"]))]
        """
    )
    suite.makepyfile(
        """
        import asyncio, io, json, httpx, requests, responses, respx

        DOC = json.dumps({"version": "1.0.0", "installationId": "__UUID__"}).encode()

        def chunks():
            yield DOC[:10]
            yield DOC[10:]

        @responses.activate
        def test_requests_generator_and_file(outbound):
            mocked = responses.post("https://upload.example/v1")
            headers = {"Content-Type": "application/json"}
            requests.post("https://upload.example/v1", data=chunks(), headers=headers)
            requests.post("https://upload.example/v1", data=io.BytesIO(DOC), headers=headers)
            sent = [c.request.body for c in mocked.calls]
            assert b"".join(sent[0]) == DOC          # the generator's chunks, none read before
            assert sent[1] == DOC                    # responses read the file: it was put back
            # the mock never read the generator: nothing of it was sent, nor judged; the file
            # was read where it stood and judged before anything was sent
            assert [set(r.fields) for r in outbound.requests] == [
                set(), {"version", "installationId"}]

        @respx.mock
        def test_httpx_sync_and_async_streams(outbound):
            route = respx.post("https://upload.example/v1")
            headers = {"Content-Type": "application/json"}
            httpx.post("https://upload.example/v1", content=chunks(), headers=headers)

            async def achunks():
                for c in chunks():
                    yield c

            async def send():
                async with httpx.AsyncClient() as client:
                    await client.post("https://upload.example/v1", content=achunks(), headers=headers)
            asyncio.run(send())
            assert [c.request.content for c in route.calls] == [DOC, DOC]
            assert [set(r.fields) for r in outbound.requests] == [{"version", "installationId"}] * 2
        """.replace("__UUID__", UUID)
    )
    suite.runpytest().assert_outcomes(passed=2)
