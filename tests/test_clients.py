"""Every HTTP client: blocked in enforce, recorded in audit, once per request and once per hop.

Real clients against a loopback server (``outbound_local = enforce`` makes loopback count as
outbound here) or against undocumented hosts that are blocked before anything leaves.
"""

from __future__ import annotations

import pytest
from inner_output import failed_only_for_swallowed_blocks

CALLS = {
    "requests": "requests.get(url)",
    "httpx": "httpx.get(url)",
    "httpx-async": "asyncio.run(httpx_async(url))",
    "urllib3-poolmanager": "urllib3.PoolManager().request('GET', url)",
    "urllib3-pool": "pool_get(url)",
    "urllib.request": "urllib.request.urlopen(url)",
    "http.client": "http_client_get(url)",
    "aiohttp": "asyncio.run(aiohttp_get(url))",
}
CLIENT_NAMES = {
    "requests": "requests",
    "httpx": "httpx",
    "httpx-async": "httpx",
    "urllib3-poolmanager": "urllib3",
    "urllib3-pool": "urllib3",
    "urllib.request": "http.client",
    "http.client": "http.client",
    "aiohttp": "aiohttp",
}

CLIENTS_MODULE = """
import asyncio, http.client, urllib.parse, urllib.request
import aiohttp, httpx, requests, urllib3

async def httpx_async(url):
    async with httpx.AsyncClient() as client:
        return await client.get(url)

async def aiohttp_get(url):
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as response:
            return await response.read()

def pool_get(url):
    parts = urllib.parse.urlsplit(url)
    return urllib3.HTTPConnectionPool(parts.hostname, parts.port or 80).urlopen("GET", parts.path or "/")

def http_client_get(url):
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port or 80)
    conn.request("GET", parts.path or "/")
    return conn.getresponse().read()
"""


@pytest.fixture
def suite(pytester: pytest.Pytester, loopback: None) -> pytest.Pytester:
    pytester.makepyfile(clients=CLIENTS_MODULE)
    return pytester


@pytest.mark.parametrize("client", sorted(CALLS))
def test_undocumented_host_is_blocked_before_it_leaves(suite: pytest.Pytester, client: str) -> None:
    suite.makeini("[pytest]\noutbound_mode = enforce\n")
    suite.makepyfile(
        f"""
        import pytest
        from clients import *
        from pytest_outbound import OutboundBlocked

        def test_blocked(outbound):
            url = "http://undocumented.invalid/collect"
            with pytest.raises(OutboundBlocked):
                {CALLS[client]}
            assert [(r.client, r.host, r.verdict) for r in outbound.requests] == [
                ("{CLIENT_NAMES[client]}", "undocumented.invalid", "violation")]
        """
    )
    result = suite.runpytest()
    result.assert_outcomes(failed=1)  # caught by pytest.raises, failed all the same
    result.stdout.fnmatch_lines(
        [f"*GET http://undocumented.invalid/collect (client: {CLIENT_NAMES[client]})*"]
    )
    result.stdout.fnmatch_lines(["mode: enforce; 1 outbound request(s), 1 violation(s)"])
    failed_only_for_swallowed_blocks(result)


@pytest.mark.parametrize("client", sorted(CALLS))
def test_recorded_in_audit_once_per_request(suite: pytest.Pytester, client: str) -> None:
    suite.makeini("[pytest]\noutbound_mode = audit\noutbound_local = enforce\n")
    suite.makepyfile(
        f"""
        from clients import *
        from loopback import serve

        def test_audit(outbound):
            with serve() as base:
                url = base + "/hello"
                {CALLS[client]}
            [record] = outbound.requests
            assert (record.client, record.path, record.verdict) == (
                "{CLIENT_NAMES[client]}", "/hello", "violation")
        """
    )
    suite.runpytest().assert_outcomes(passed=1)


@pytest.mark.parametrize(
    "client", ["requests", "httpx", "urllib3-poolmanager", "urllib.request", "aiohttp"]
)
def test_each_redirect_hop_is_judged(suite: pytest.Pytester, client: str) -> None:
    suite.makeini(
        "[pytest]\noutbound_mode = enforce\noutbound_local = enforce\noutbound_allow = 127.0.0.1\n"
    )
    call = CALLS[client].replace("httpx.get(url)", "httpx.get(url, follow_redirects=True)")
    suite.makepyfile(
        f"""
        import pytest
        from clients import *
        from loopback import serve
        from pytest_outbound import OutboundBlocked

        def test_redirect(outbound):
            with serve() as base:
                url = base + "/redirect?to=http://undocumented.invalid/next"
                with pytest.raises(OutboundBlocked):
                    {call}
            assert [(r.host, r.verdict) for r in outbound.requests] == [
                ("127.0.0.1", "allowed"), ("undocumented.invalid", "violation")]
        """
    )
    result = suite.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*1 outbound request(s) were blocked*"])
    # the hop is judged by the client's own interceptor, not only by the DNS backstop beneath
    result.stdout.fnmatch_lines(
        [
            "outbound request blocked: GET http://undocumented.invalid/next"
            f" (client: {CLIENT_NAMES[client]})"
        ]
    )
    failed_only_for_swallowed_blocks(result)


def test_a_same_host_redirect_of_a_urllib3_pool_is_another_hop(suite: pytest.Pytester) -> None:
    """A connection pool follows a redirect to its own host inside its ``urlopen``: that hop is
    another request, judged on its own (a retry of the same URL is not)."""
    suite.makeini(
        "[pytest]\noutbound_mode = enforce\noutbound_local = enforce\noutbound_allow = 127.0.0.1\n"
    )
    suite.makepyfile(
        """
        import urllib.parse, urllib3
        from loopback import serve

        def test_redirect(outbound):
            with serve() as base:
                parts = urllib.parse.urlsplit(base)
                pool = urllib3.HTTPConnectionPool(parts.hostname, parts.port)
                assert pool.urlopen("GET", "/redirect?to=/landing").data == b"/landing"
            assert [(r.client, r.path) for r in outbound.requests] == [
                ("urllib3", "/redirect"), ("urllib3", "/landing")]
        """
    )
    suite.runpytest().assert_outcomes(passed=1)


def test_through_a_tunnelling_proxy_the_target_is_judged(suite: pytest.Pytester) -> None:
    """http.client with ``set_tunnel``: the record names the target, not the proxy."""
    suite.makeini("[pytest]\noutbound_mode = enforce\n")
    suite.makepyfile(
        """
        import http.client, pytest
        from pytest_outbound import OutboundBlocked

        def test_tunnel(outbound):
            conn = http.client.HTTPSConnection("proxy.invalid", 3128)
            conn.set_tunnel("undocumented.invalid", 8443)
            with pytest.raises(OutboundBlocked):
                conn.request("GET", "/collect")
            assert [(r.host, r.port, r.url) for r in outbound.requests] == [
                ("undocumented.invalid", 8443, "https://undocumented.invalid:8443/collect")]
        """
    )
    result = suite.runpytest()
    result.assert_outcomes(failed=1)
    failed_only_for_swallowed_blocks(result)


def test_urllib3_retries_are_one_request(suite: pytest.Pytester) -> None:
    suite.makeini("[pytest]\noutbound_mode = audit\noutbound_local = enforce\n")
    suite.makepyfile(
        """
        import socket, pytest, urllib3

        def test_retries(outbound):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]   # nothing listens here: connection refused
            http = urllib3.PoolManager(retries=urllib3.Retry(total=3, backoff_factor=0))
            with pytest.raises(urllib3.exceptions.MaxRetryError):
                http.request("GET", f"http://127.0.0.1:{port}/")
            assert len(outbound.requests) == 1
        """
    )
    suite.runpytest().assert_outcomes(passed=1)
