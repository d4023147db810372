"""The per-request fast paths judge what the slow paths judged.

Interceptors remember the URL as written only when its host is ambiguous (``ambiguous``); URLs
are parsed once per distinct URL; ``_judge_destination``'s verdicts are kept per context; the
sensitive scan skips texts it found clean before. Each test here fails if its shortcut starts to
skip something that must be judged.
"""

from __future__ import annotations

import functools
import gzip
import importlib
import subprocess
import sys
import typing
from pathlib import Path

import pytest
from host_corpus import CASES
from hypothesis import given, settings
from hypothesis import strategies as st

import pytest_outbound
from pytest_outbound._decide import Context, Rules, decide
from pytest_outbound._fields import extract_fields
from pytest_outbound._hosts import HostError, Peer, peer_from_url
from pytest_outbound._interceptors import ambiguous
from pytest_outbound._policy import Destination, Policy
from pytest_outbound._record import Fields, build_request
from pytest_outbound._sensitive import SensitiveScanner, SensitiveValue

URLS = [case.target for case in CASES if isinstance(case.target, str)]


def _refused(url: str) -> bool:
    try:
        peer_from_url(url)
    except HostError:
        return True
    return False


class _Text(str):
    """A str subclass: never cached, still judged."""


def test_ambiguous_is_exactly_what_peer_from_url_refuses() -> None:
    assert any(_refused(url) for url in URLS)
    assert not all(_refused(url) for url in URLS)
    for url in URLS:
        expected = _refused(url)
        assert ambiguous(url) is expected, url
        assert ambiguous(url) is expected, url  # the cached answer
        assert ambiguous(_Text(url)) is expected, url
    long = "https://octopus.com\\@evil.com/?" + "q" * 5000  # too long to be remembered
    assert ambiguous(long) is True
    assert build_request("GET", long, client="requests").peer is None
    assert ambiguous(b"https://evil.com\\@octopus.com/") is False  # not text: never remembered
    assert ambiguous(None) is False


def test_written_url_is_judged_and_shown_when_ambiguous() -> None:
    written = "https://octopus.com\\@evil.com/"
    sent = "https://octopus.com/%5C@evil.com/"  # what requests makes of it
    record = build_request("GET", sent, client="requests", written_url=written)
    assert record.url == written
    assert record.peer is None
    assert record.host_error
    plain = build_request("GET", sent, client="requests", written_url="https://octopus.com/x")
    assert plain.url == sent
    assert plain.peer is not None
    assert plain.host == "octopus.com"


def test_records_of_one_url_each_have_their_own_parts() -> None:
    first = build_request("get", "https://octopus.com/a?b=1", client="requests")
    second = build_request("GET", "https://octopus.com/a?b=1", client="requests")
    assert (first.method, first.host, first.port, first.path, first.query_text) == (
        "GET",
        "octopus.com",
        443,
        "/a",
        "b=1",
    )
    assert (second.url, second.peer, second.path) == (first.url, first.peer, first.path)
    second.headers["x"] = "y"
    assert first.headers == {}
    bad = build_request("GET", "https://octopus.com:99999/", client="requests")
    again = build_request("GET", "https://octopus.com:99999/", client="requests")
    assert bad.peer is None
    assert bad.host_error == again.host_error != ""


def test_header_copy_turns_bytes_into_text() -> None:
    record = build_request(
        "GET",
        "https://octopus.com/",
        headers=[(b"X-A", b"\xe9"), ("X-B", "b"), ("X-A", "later")],
        client="requests",
    )
    assert record.headers == {"X-A": "later", "X-B": "b"}
    record = build_request("GET", "https://octopus.com/", headers={"X-N": 1}, client="urllib3")
    assert record.headers == {"X-N": "1"}


def _context() -> Context:
    policy = Policy(
        (Destination(name="api", hosts=("octopus.com",), methods=("GET",), paths=("/v1/**",)),)
    )
    return Context(Rules(policy))


def test_remembered_verdicts_depend_on_every_part_they_read() -> None:
    context = _context()

    def verdict(method: str, url: str, client: str = "requests") -> tuple[bool, tuple[str, ...]]:
        result = decide(build_request(method, url, client=client), context)
        return result.allowed, result.reasons

    for _ in range(2):  # the second time from the cache
        assert verdict("GET", "https://octopus.com/v1/x") == (True, ())
        assert verdict("POST", "https://octopus.com/v1/x") == (False, ("method",))
        assert verdict("GET", "https://octopus.com/v2/x") == (False, ("path",))
        assert verdict("GET", "http://octopus.com/v1/x") == (True, ())
        assert verdict("GET", "https://octopus.com:8443/v1/x") == (True, ())
        assert verdict("GET", "https://evil.com/v1/x") == (False, ("undocumented",))
        assert verdict("GET", "https://octopus.com\\@evil.com/") == (False, ("ambiguous-host",))
    narrowed = Context(context.rules, restriction="none")
    result = decide(build_request("GET", "https://octopus.com/v1/x", client="requests"), narrowed)
    assert (result.allowed, result.reasons) == (False, ("outbound_none",))


@pytest.mark.parametrize("place", ["url", "header", "body"])
def test_clean_texts_are_remembered_but_findings_never(place: str) -> None:
    # Two kinds, one of them never sent: the scan does not stop at the first finding.
    scanner = SensitiveScanner(
        [SensitiveValue("hostname", "build-host-7"), SensitiveValue("user", "jane-q-doe")]
    )
    clean_url, clean_headers = "https://octopus.com/a", [("Accept", "*/*"), ("X-Id", "1")]
    for _ in range(2):
        assert scanner.scan(url=clean_url, headers=clean_headers, body=b"{}") == []
    url, headers, body = clean_url, list(clean_headers), b"{}"
    if place == "url":
        url = clean_url + "?h=BUILD-HOST-7"
    elif place == "header":
        headers.append(("X-Host", "build%2Dhost%2D7"))
    else:
        body = b'{"h": "build-host-7"}'
    for _ in range(2):  # a finding is found again: only clean texts are skipped
        [hit] = scanner.scan(url=url, headers=headers, body=body)
        assert hit.kind == "hostname"
        assert hit.where.startswith(place)
    assert scanner.scan(url=clean_url, headers=clean_headers, body=b"{}") == []
    assert scanner.scan(url=_Text(url), headers=headers, body=body) != []


def test_body_fields_remembered_merge_as_parsed() -> None:
    def fields(body: bytes, content_type: str = "application/json") -> tuple[object, bool]:
        found = extract_fields(
            path="/",
            query="a=0&z=9",
            headers=[("Content-Type", content_type), ("X-A", "h")],
            body=body,
        )
        return dict(found.values), found.opaque

    body = b'{"b": {}, "a": "1", "c": [2, "3"], "header:x-a": "j", "a": "4"}'
    expected = (
        {
            "a": ("0", "1", "4"),
            "z": ("9",),
            "header:x-a": ("h", "j"),
            "b": (),
            "c[]": ("2", "3"),
        },
        False,
    )
    for _ in range(2):  # the second time from the cache
        assert fields(body) == expected
        assert list(fields(body)[0]) == list(expected[0])  # the order too
    assert fields(b"a=5&d=6", "application/x-www-form-urlencoded") == (
        {"a": ("0", "5"), "z": ("9",), "header:x-a": ("h",), "d": ("6",)},
        False,
    )
    assert fields(b"a=5&d=6", "application/json") == (
        {"a": ("0",), "z": ("9",), "header:x-a": ("h",)},
        True,
    )
    first = extract_fields(path="/", query="", headers=[], body=body)
    second = extract_fields(path="/", query="", headers=[], body=body)
    assert first.values is not second.values
    assert first.values == second.values


def test_bodies_with_findings_are_scanned_again() -> None:
    scanner = SensitiveScanner(
        [SensitiveValue("hostname", "build-host-7"), SensitiveValue("user", "jane-q-doe")]
    )
    clean, dirty = b'{"a": 1}', b'{"h": "build-host-7"}'
    gzipped = gzip.compress(dirty)
    for _ in range(2):
        assert scanner.scan(url="https://octopus.com/", headers=[], body=clean) == []
        [hit] = scanner.scan(url="https://octopus.com/", headers=[], body=dirty)
        assert (hit.kind, hit.where) == ("hostname", "body")
        [hit] = scanner.scan(
            url="https://octopus.com/", headers=[("Content-Encoding", "gzip")], body=gzipped
        )
        assert (hit.kind, hit.where, hit.encoding) == ("hostname", "body", "gzip")
        # found in the URL first: the body is still searched for the other kind
        hits = scanner.scan(url="https://octopus.com/?u=build-host-7", headers=[], body=clean)
        assert [h.kind for h in hits] == ["hostname"]
        hits = scanner.scan(
            url="https://octopus.com/?u=build-host-7", headers=[], body=b'"jane-q-doe"'
        )
        assert [(h.kind, h.where) for h in hits] == [("hostname", "url"), ("user", "body")]


REQUESTS_NESTED = """
import pytest, requests, responses

PLAIN = "https://octopus.com/token"
WRITTEN = "https://octopus.com\\\\@evil.com/"


class FetchesAToken(requests.auth.AuthBase):
    def __call__(self, request):
        # A request made while another one, written ambiguously, is being prepared: judged as
        # its own URL, never as the outer one's.
        requests.get(PLAIN)
        return request


@responses.activate
@pytest.mark.outbound_only("octopus.com")
def test_nested(outbound):
    responses.get(PLAIN, body="t")
    responses.get("https://octopus.com/%5C@evil.com/", body="x")
    assert requests.get(WRITTEN, auth=FetchesAToken()).text == "x"  # audit: recorded, sent
    inner, outer = outbound.requests
    assert (inner.url, inner.verdict) == (PLAIN, "allowed")
    assert (outer.url, outer.verdict, outer.reasons) == (WRITTEN, "violation", ["ambiguous-host"])
    assert requests.get(PLAIN).text == "t"  # and the next request: nothing left behind
    assert outbound.requests[-1].url == PLAIN
"""

REQUESTS_REDIRECT = """
import pytest, requests, responses

WRITTEN = "https://octopus.com\\\\@evil.com/"


@responses.activate
@pytest.mark.outbound_only("octopus.com")
def test_redirect_hop(outbound):
    responses.get(
        "https://octopus.com/%5C@evil.com/", status=302, headers={"Location": "/next"}
    )
    responses.get("https://octopus.com/next", body="n")
    assert requests.get(WRITTEN).text == "n"  # audit: recorded, sent, redirected
    assert [(r.url, r.verdict) for r in outbound.requests] == [
        (WRITTEN, "violation"),
        ("https://octopus.com/next", "allowed"),  # the hop: judged as sent
    ]
"""


def test_a_requests_redirect_hop_is_judged_as_sent(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\noutbound_mode = audit\noutbound_sensitive_machine = false\n")
    pytester.makepyfile(test_written_redirect=REQUESTS_REDIRECT)
    pytester.runpytest("-q").assert_outcomes(passed=1)


CLIENTS = """
import httpx, pytest, requests, urllib3

WRITTEN = "https://octopus.com\\\\@evil.com/"


@pytest.mark.parametrize("client", ["requests", "httpx", "urllib3"])
@pytest.mark.outbound_only("octopus.com")
def test_written(outbound, client, monkeypatch):
    def not_sent(*args, **kwargs):
        raise AssertionError("sent")

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", not_sent)
    monkeypatch.setattr(httpx.HTTPTransport, "handle_request", not_sent)
    monkeypatch.setattr(urllib3.connectionpool.HTTPConnectionPool, "_get_conn", not_sent)
    send = {
        "requests": lambda url: requests.get(url),
        "httpx": lambda url: httpx.get(url),
        "urllib3": lambda url: urllib3.PoolManager(retries=False).request("GET", url),
    }[client]
    for _ in range(2):  # the second time from the cache
        with pytest.raises(AssertionError, match="sent"):  # audit: recorded, then sent
            send(WRITTEN)
        written = outbound.requests[-1]
        assert (written.url, written.reasons) == (WRITTEN, ["ambiguous-host"])
        with pytest.raises(AssertionError, match="sent"):
            send("https://octopus.com/ok")
        assert outbound.requests[-1].url == "https://octopus.com/ok"
        assert outbound.requests[-1].verdict == "allowed"
"""


HTTPX_WRITTEN = """
import asyncio, concurrent.futures
import httpx, pytest, respx

# httpx sends it to octopus.com (user "evil.com%5C"): judged as written, ambiguous-host
WRITTEN = "https://evil.com\\\\@octopus.com/"
OK = "https://octopus.com/ok"


def judged(outbound):
    return [(r.url, r.verdict) for r in outbound.requests]


@pytest.fixture(scope="module")
def built_early():
    return httpx.Client().build_request("GET", WRITTEN)  # built outside the test


@respx.mock
@pytest.mark.outbound_only("octopus.com")
def test_base_url_and_params(outbound):
    respx.route().respond(200)
    with httpx.Client(base_url="https://octopus.com/api", params={"k": "v"}) as client:
        client.get("/items")  # relative: merged with the base, and judged as sent
        client.get("v2/items", params={"p": "1"})
        client.get(WRITTEN, params={"p": "1"})  # absolute: as written, params or not
        client.get(OK)
    assert judged(outbound) == [
        ("https://octopus.com/api/items?k=v", "allowed"),
        ("https://octopus.com/api/v2/items?k=v&p=1", "allowed"),
        (WRITTEN, "violation"),
        ("https://octopus.com/ok?k=v", "allowed"),
    ]
    assert outbound.requests[2].reasons == ["ambiguous-host"]


@respx.mock
@pytest.mark.outbound_only("octopus.com")
def test_the_written_url_goes_with_its_request(outbound, built_early):
    respx.route().respond(200)
    with httpx.Client() as client:
        never_sent = client.build_request("GET", WRITTEN)
        client.get(OK)  # the same host, after a request built and never sent
        first = client.build_request("GET", "https://a\\\\@octopus.com/1")
        second = client.build_request("GET", "https://b\\\\@octopus.com/2")
        client.send(second)
        client.send(first)
        client.send(first)  # sent again: judged again as written
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(client.send, never_sent).result()  # from another thread
        client.send(built_early)  # built in a fixture, outside the test
    assert judged(outbound) == [
        (OK, "allowed"),
        ("https://b\\\\@octopus.com/2", "violation"),
        ("https://a\\\\@octopus.com/1", "violation"),
        ("https://a\\\\@octopus.com/1", "violation"),
        (WRITTEN, "violation"),
        (WRITTEN, "violation"),
    ]


@respx.mock
@pytest.mark.outbound_only("octopus.com")
def test_hooks_tasks_and_auth(outbound):
    respx.route().respond(200)

    def refuse(request):
        raise RuntimeError("hook")

    with httpx.Client(event_hooks={"request": [refuse]}) as client:
        with pytest.raises(RuntimeError):
            client.get(WRITTEN)  # refused by the hook before it is judged
    with httpx.Client() as client:
        client.get(OK)

    async def main():
        async with httpx.AsyncClient(base_url="https://octopus.com") as client:
            await client.get("/async")
            request = client.build_request("GET", WRITTEN)
            await asyncio.create_task(client.send(request))  # sent in a task
            await client.get(OK)

    asyncio.run(main())
    assert judged(outbound) == [
        (OK, "allowed"),
        ("https://octopus.com/async", "allowed"),
        (WRITTEN, "violation"),
        (OK, "allowed"),
    ]


@pytest.mark.outbound_only("octopus.com")
def test_each_hop(outbound):
    answers = []

    def digest(request):
        answers.append(request)
        if len(answers) == 1:
            challenge = 'Digest realm="r", nonce="n", qop="auth"'
            return httpx.Response(401, headers={"WWW-Authenticate": challenge})
        return httpx.Response(200)

    with respx.mock:
        respx.route().mock(side_effect=digest)
        with httpx.Client(auth=httpx.DigestAuth("u", "p")) as client:
            client.get(WRITTEN)  # the request again, with its credentials: as written
    with respx.mock:
        respx.get("https://octopus.com/").respond(302, headers={"Location": "/next"})
        respx.get("https://octopus.com/next").respond(200)
        with httpx.Client(follow_redirects=True) as client:
            client.get(WRITTEN)  # the redirect hop is judged as sent
    with respx.mock:
        again = [httpx.Response(302, headers={"Location": "/"}), httpx.Response(200)]
        respx.get("https://octopus.com/").mock(side_effect=again)
        with httpx.Client(follow_redirects=True) as client:
            client.get(WRITTEN)  # to the same URL: the hop is a new request, judged as sent
    assert judged(outbound) == [
        (WRITTEN, "violation"),
        (WRITTEN, "violation"),
        (WRITTEN, "violation"),
        ("https://evil.com%5C@octopus.com/next", "allowed"),
        (WRITTEN, "violation"),
        ("https://evil.com%5C@octopus.com/", "allowed"),
    ]


@respx.mock
@pytest.mark.outbound_only("octopus.com")
def test_urls_made_from_a_sent_one(outbound):
    import pickle

    respx.route().respond(200)
    with httpx.Client() as client:
        sent = client.get(WRITTEN).request
        made = [
            sent.url,
            sent.url.copy_set_param("page", "2"),
            sent.url.copy_with(path="/other"),
            httpx.URL(sent.url),
        ]
        for url in made:  # new requests: judged as sent, never as the written URL
            client.get(url)
        client.send(httpx.Request("GET", sent.url))
        again = pickle.loads(pickle.dumps(sent))  # httpx's requests pickle; the mark does not
        assert again.url == sent.url
        client.send(sent)
    assert judged(outbound) == [
        (WRITTEN, "violation"),
        *[(str(url), "allowed") for url in made],
        (str(sent.url), "allowed"),
        (WRITTEN, "violation"),
    ]
"""


def test_httpx_judges_relative_urls_as_sent_and_ambiguous_ones_as_written(
    pytester: pytest.Pytester,
) -> None:
    """httpx: a client's ``base_url`` makes a relative URL whole (judged as sent); an absolute
    URL whose host is ambiguous is judged as written, with the client's params or not. The
    written URL goes with its request: sent again, from another thread or task, or after
    other requests were built; never to another request, nor to a redirect hop."""
    pytester.makeini("[pytest]\noutbound_mode = audit\noutbound_sensitive_machine = false\n")
    pytester.makepyfile(test_httpx_written=HTTPX_WRITTEN)
    pytester.runpytest("-q").assert_outcomes(passed=5)


def test_httpx_without_its_url_internals_wraps_build_request(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where httpx's parsed URL cannot carry the written URL, ``build_request`` is wrapped
    instead, and every case above is judged the same."""
    _httpx = importlib.import_module("pytest_outbound._interceptors._httpx")
    monkeypatch.setattr(_httpx, "_URL_PARTS_CLASS", [])
    monkeypatch.setattr(_httpx, "_MARKED_CLASS", [])
    monkeypatch.setattr(_httpx, "_MARKED_FOR", {})
    monkeypatch.setattr(_httpx, "_BUILD_WRAPPED", [])
    monkeypatch.setattr(_httpx, "_marked_class", lambda parts_class: None)
    pytester.makeini("[pytest]\noutbound_mode = audit\noutbound_sensitive_machine = false\n")
    pytester.makepyfile(
        test_httpx_written=HTTPX_WRITTEN
        + "\n\ndef test_wrapped():\n"
        + "    assert 'pytest_outbound' in httpx.Client.build_request.__code__.co_filename\n"
    )
    pytester.runpytest_inprocess("-q").assert_outcomes(passed=6)
    assert _httpx._MARKED_CLASS == []
    assert _httpx._BUILD_WRAPPED == [True]


HTTPX_HEADERS = """
import httpx, pytest, respx


def pytest_outbound_sensitive_values(config):
    return {"token": ["s3cr3t-build-token"]}


@respx.mock
@pytest.mark.outbound_only("octopus.com")
def test_headers(outbound):
    respx.route().respond(200)
    with httpx.Client() as client:
        for _ in range(2):  # the second time from what was remembered
            for headers in ({}, {"X-Build": "s3cr3t-build-token"}, {"X-Build": "other"}, {}):
                client.get("https://octopus.com/", headers=headers)
    verdicts = [(r.headers.get("x-build"), r.reasons) for r in outbound.requests]
    assert verdicts == [
        (None, []),
        ("s3cr3t-build-token", ["sensitive:token"]),
        ("other", []),
        (None, []),
    ] * 2
"""


def test_httpx_requests_are_judged_by_their_own_headers(pytester: pytest.Pytester) -> None:
    """httpx hands ``decide`` the header key it remembered: one URL sent with other headers is
    judged by them, the first time and again."""
    pytester.makeini("[pytest]\noutbound_mode = audit\noutbound_sensitive_machine = false\n")
    pytester.makeconftest(HTTPX_HEADERS.split("@respx.mock")[0])
    pytester.makepyfile(test_headers=HTTPX_HEADERS)
    pytester.runpytest("-q").assert_outcomes(passed=1)


def test_nested_request_is_judged_as_its_own_url(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\noutbound_mode = audit\noutbound_sensitive_machine = false\n")
    pytester.makepyfile(test_written_nested=REQUESTS_NESTED)
    pytester.runpytest("-q").assert_outcomes(passed=1)


def test_each_client_judges_what_was_written(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\noutbound_mode = audit\noutbound_sensitive_machine = false\n")
    pytester.makepyfile(test_written_per_client=CLIENTS)
    pytester.runpytest("-q").assert_outcomes(passed=3)


LOCATIONS = """
import asyncio, http.client, urllib.request
import httpx, pytest, requests, urllib3


class NotSent(Exception):
    pass


def not_sent(*args, **kwargs):
    raise NotSent


@pytest.fixture(autouse=True)
def below_the_interceptors(monkeypatch):
    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", not_sent)
    monkeypatch.setattr(httpx.HTTPTransport, "handle_request", not_sent)
    monkeypatch.setattr(httpx.AsyncHTTPTransport, "handle_async_request", not_sent)
    monkeypatch.setattr(urllib3.connectionpool.HTTPConnectionPool, "_get_conn", not_sent)
    monkeypatch.setattr(http.client.HTTPConnection, "connect", not_sent)


async def httpx_async(url):
    async with httpx.AsyncClient() as client:
        await client.get(url)  # line: httpx-async


def send(client, url):
    if client == "requests":
        requests.get(url)  # line: requests
    elif client == "requests-session":
        requests.Session().request("GET", url)  # line: requests-session
    elif client == "httpx":
        httpx.get(url)  # line: httpx
    elif client == "httpx-client":
        httpx.Client().send(httpx.Request("GET", url))  # line: httpx-client
    elif client == "httpx-async":
        asyncio.run(httpx_async(url))
    elif client == "urllib3":
        urllib3.PoolManager(retries=False).request("GET", url)  # line: urllib3
    elif client == "http.client":
        http.client.HTTPSConnection("octopus.com").request("GET", "/")  # line: http.client
    elif client == "urllib.request":
        urllib.request.urlopen(url)  # line: urllib.request


CLIENTS = ["requests", "requests-session", "httpx", "httpx-client", "httpx-async", "urllib3",
           "http.client", "urllib.request"]


@pytest.mark.parametrize("client", CLIENTS)
def test_location(outbound, client):
    with pytest.raises(NotSent):
        send(client, "https://octopus.com/")
    [record] = outbound.requests
    source = open(__file__).read().splitlines()
    [line] = [n for n, text in enumerate(source, 1) if text.endswith(f"# line: {client}")]
    assert record.location == f"test_where.py:{line}"
"""


def test_each_client_records_the_line_that_sent_it(pytester: pytest.Pytester) -> None:
    """The call-site search jumps over the interceptors' own frames: never past the user's."""
    pytester.makeini("[pytest]\noutbound_mode = audit\noutbound_sensitive_machine = false\n")
    pytester.makepyfile(test_where=LOCATIONS)
    pytester.runpytest("-q").assert_outcomes(passed=8)


SITES = """
import pytest
import requests


class NotSent(Exception):
    pass


def get(url):
    try:
        requests.get(url)  # site: helper
    except NotSent:
        pass


def test_sites(outbound, monkeypatch):
    def not_sent(*args, **kwargs):
        raise NotSent

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", not_sent)
    for _ in range(2):
        for url in ("https://octopus.com/a", "https://octopus.com/b"):
            with pytest.raises(NotSent):
                requests.get(url)  # site: a
        with pytest.raises(NotSent):
            requests.get(
                "https://octopus.com/c"
            )  # site: b
        get("https://octopus.com/d")
    source = open(__file__).read().splitlines()
    line = {t.rsplit(" ", 1)[1]: n for n, t in enumerate(source, 1) if "# site: " in t}
    expected = [line["a"], line["a"], line["b"] - 2, line["helper"]] * 2
    assert [r.location for r in outbound.requests] == [f"test_sites.py:{n}" for n in expected]
"""


def test_each_call_site_in_a_function_is_its_own(pytester: pytest.Pytester) -> None:
    """Call sites are remembered by instruction, each with its own line, from the first
    request on and from what was remembered."""
    pytester.makeini("[pytest]\noutbound_mode = audit\noutbound_sensitive_machine = false\n")
    pytester.makepyfile(test_sites=SITES)
    pytester.runpytest("-q").assert_outcomes(passed=1)


def test_records_share_repeated_strings() -> None:
    """Memory: 50,000 records of one URL hold one URL string and one of each header value."""
    records = [
        build_request(
            "post",
            "".join(["https://octopus.com/", "events"]),  # a new string each time
            headers={"Content-Length": str(1000 + 24), "Content-Type": "application/json"},
            body=b"x" * 1024,
            client="requests",
        )
        for _ in range(2)
    ]
    first, second = records
    assert first.url is second.url
    assert first.method is second.method
    assert first.headers["Content-Length"] is second.headers["Content-Length"]
    assert (
        first.headers
        == second.headers
        == {
            "Content-Length": "1024",
            "Content-Type": "application/json",
        }
    )
    assert first.headers is not second.headers


def _contract_context() -> Context:
    from pytest_outbound._policy import Payload

    policy = Policy(
        (
            Destination(
                name="update-check",
                hosts=("octopus.com",),
                methods=("POST",),
                paths=("/api/{version}/check",),
                min_interval="8h",
                payload=Payload(
                    fields=("version", "installationId"),
                    required=("installationId",),
                    match={"installationId": "uuid"},
                ),
            ),
        )
    )
    scanner = SensitiveScanner([SensitiveValue("hostname", "build-host-7")])
    return Context(Rules(policy, scanner))


UUID = "6f1c2b9e-3a4d-4e5f-8a7b-1c2d3e4f5a6b"


def test_remembered_judgements_depend_on_every_part_of_the_request() -> None:
    """``decide`` remembers what an HTTP request's content earned it, by method, URL, headers,
    body and client: a change in any of them is judged afresh."""
    context = _contract_context()
    url = "https://octopus.com/api/2024.1/check"
    good = f'{{"installationId": "{UUID}"}}'.encode()

    def judged(
        body: bytes = good,
        *,
        method: str = "POST",
        target: str = url,
        headers: tuple[tuple[str, str], ...] = (("Content-Type", "application/json"),),
        client: str = "requests",
    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        record = build_request(method, target, headers=headers, body=body, client=client)
        verdict = decide(record, context)
        return verdict.reasons, record.fields

    for _ in range(2):  # the second time from the memo
        assert judged() == ((), ("version", "installationId"))
        assert judged(b'{"installationId": "x"}')[0] == ("payload:malformed:installationId",)
        assert judged(good[:-1] + b', "hostname": "h"}')[0] == ("payload:extra:hostname",)
        assert judged(b"{}")[0] == ("payload:missing:installationId",)
        assert judged(method="GET")[0] == ("method",)
        assert judged(target="https://octopus.com/api/2024.1/other")[0] == ("path",)
        assert judged(target=url + "?h=build-host-7")[0] == (
            "payload:extra:h",
            "sensitive:hostname",
        )
        assert judged(headers=(("X-Host", "build-host-7"),))[0] == (
            "payload:extra:header:x-host",
            "sensitive:hostname",
        )
        assert judged(headers=(("Content-Type", "text/plain"),))[0] == ()  # JSON by its look
        # the same header names, another value
        assert judged(headers=(("Content-Type", "application/json; x=build-host-7"),))[0] == (
            "sensitive:hostname",
        )
        assert judged(client="httpx") == ((), ("version", "installationId"))


def test_min_interval_is_checked_on_every_remembered_judgement() -> None:
    """The memo keeps everything but ``min_interval``, which depends on the time and on when
    the destination was last contacted; its reason keeps its place among the others."""
    context = _contract_context()
    url = "https://octopus.com/api/2024.1/check?h=build-host-7"

    def reasons(now: float, last: float | None) -> tuple[str, ...]:
        record = build_request(
            "POST", url, body=f'{{"installationId": "{UUID}"}}'.encode(), client="requests"
        )
        record.time = now
        history = {} if last is None else {"update-check": last}
        return decide(record, context, history=history).reasons

    for _ in range(2):
        assert reasons(10_000.0, None) == ("payload:extra:h", "sensitive:hostname")
        assert reasons(10_000.0, 9_000.0) == (
            "payload:extra:h",
            "interval",
            "sensitive:hostname",
        )
        assert reasons(40_000.0, 9_000.0) == ("payload:extra:h", "sensitive:hostname")


def test_remembered_judgements_are_kept_per_context_and_not_for_sockets() -> None:
    context = _contract_context()
    record = build_request("POST", "https://octopus.com/api/1/check", client="requests")
    assert decide(record, context).reasons == ("payload:missing:installationId",)
    narrowed = Context(context.rules, restriction="none")
    again = build_request("POST", "https://octopus.com/api/1/check", client="requests")
    assert decide(again, narrowed).reasons == ("outbound_none", "payload:missing:installationId")
    assert len(context._judgements) == len(narrowed._judgements) == 1
    socket_record = build_request("POST", "https://octopus.com/api/1/check", client="socket")
    decide(socket_record, context)
    assert len(context._judgements) == 1


@pytest.mark.parametrize(
    "headers",
    [
        [("Host", "octopus.com"), ("Accept", "*/*"), ("X-Trace", "a"), ("x-trace", "b")],
        [("X-Name", "Jöhn".encode())],  # UTF-8: httpx decodes every header as UTF-8
        [("X-Name", "Jöhn".encode("latin-1")), ("X-Plain", "a")],  # not UTF-8: ISO-8859-1
        [("X-Empty", "")],
        [("Authorization", "Bearer " + "t" * 600)],  # read, not remembered: too long
        [],
    ],
)
def test_httpx_headers_read_as_httpx_reads_them(headers: list[tuple[str, object]]) -> None:
    """The httpx interceptor's shortcut for ``multi_items()`` gives exactly what it gives,
    the first time and from what it remembered."""
    import httpx

    # (by its name: an in-process pytester run may have imported the module anew)
    _httpx = importlib.import_module("pytest_outbound._interceptors._httpx")
    header_items = _httpx.header_items
    for _ in range(2):
        assert list(header_items(httpx.Headers(headers))) == httpx.Headers(headers).multi_items()
    entries = tuple(httpx.Headers(headers)._list)
    ascii_only = all(v.isascii() for _, _, v in entries)
    short = all(len(v) <= _httpx._HEADER_VALUE_KEPT for _, _, v in entries)
    assert (entries in _httpx._HEADERS) == (ascii_only and short)

    def outcome(read: object) -> object:
        try:
            return read()  # type: ignore[operator]
        except UnicodeDecodeError:
            return UnicodeDecodeError

    for encoding in ("utf-7", "cp1252"):  # set on the Headers: httpx decodes with it
        chosen = httpx.Headers(headers)
        chosen.encoding = encoding
        assert outcome(functools.partial(header_items, chosen)) == outcome(chosen.multi_items)
    chosen = httpx.Headers({"X-A": "a+AGE-"})
    chosen.encoding = "utf-7"
    assert header_items(chosen) == [("x-a", "aa")]


_URL_PIECE = st.text("aZ09-._~%/:@!$&'()*+,;= \\", max_size=12)


@settings(max_examples=300, deadline=None)
@given(
    scheme=st.sampled_from(["http", "https", "HTTPS"]),
    userinfo=st.sampled_from(["", "user@", "u:p@", "a%40b@"]),
    host=st.sampled_from(["octopus.com", "OCTOPUS.com", "127.0.0.1", "[::1]", "xn--bcher-kva.ch"]),
    port=st.sampled_from(["", ":443", ":80", ":8080"]),
    path=_URL_PIECE,
    query=st.none() | _URL_PIECE,
    fragment=st.none() | _URL_PIECE,
)
def test_httpx_url_text_is_str_of_the_url(
    scheme: str,
    userinfo: str,
    host: str,
    port: str,
    path: str,
    query: str | None,
    fragment: str | None,
) -> None:
    """The text remembered for an httpx URL's parts is ``str`` of it, every time."""
    import httpx

    _httpx = importlib.import_module("pytest_outbound._interceptors._httpx")  # (see above)
    _httpx._URL_PARTS_CLASS[:] = [type(httpx.URL("https://example.com/")._uri_reference)]
    text = f"{scheme}://{userinfo}{host}{port}/{path}"
    text += "" if query is None else f"?{query}"
    text += "" if fragment is None else f"#{fragment}"
    try:
        url = httpx.URL(text)
    except httpx.InvalidURL:
        return
    for again in (url, httpx.URL(text), url.copy_with()):  # the second time remembered
        assert _httpx._url_text(again) == (str(again), None)
    other = url.copy_with(path="/other")
    assert _httpx._url_text(other) == (str(other), None)


def test_httpx_url_internals_are_found_at_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Installing the httpx interceptor finds httpx's class of parsed URLs, and makes the one
    that carries a URL as written: the URL text's shortcut and ``_merge_url`` rely on them."""
    import httpx

    from pytest_outbound._guard import Guard
    from pytest_outbound._interceptors import Patches

    _httpx = importlib.import_module("pytest_outbound._interceptors._httpx")
    monkeypatch.setattr(_httpx, "_URL_PARTS_CLASS", [])
    monkeypatch.setattr(_httpx, "_MARKED_CLASS", [])
    monkeypatch.setattr(_httpx, "_MARKED_FOR", {})
    guard = Guard(mode="audit", context=Context(Rules(Policy())), rootpath=Path(), body_limit=64)
    patches = Patches()
    _httpx.install(guard, patches)
    try:
        parsed = type(httpx.URL("https://octopus.com/")._uri_reference)
        assert [parsed] == _httpx._URL_PARTS_CLASS
        [marked] = _httpx._MARKED_CLASS
        assert issubclass(marked, parsed)
        client = httpx.Client(params={"k": "v"})
        request = client.build_request("GET", "https://a\\@octopus.com/", params={"p": "1"})
        assert _httpx._url_text(request.url) == (str(request.url), "https://a\\@octopus.com/")
        plain = client.build_request("GET", "https://octopus.com/")
        assert _httpx._url_text(plain.url) == (str(plain.url), None)
    finally:
        patches.undo()


def test_httpx_url_text_of_another_shape_is_str() -> None:
    _httpx = importlib.import_module("pytest_outbound._interceptors._httpx")

    class URL:
        _uri_reference = ("https", "", "octopus.com", None, "/", None, None)

        def __str__(self) -> str:
            return "from str"

    assert _httpx._url_text(URL()) == ("from str", None)


def test_httpx_headers_of_another_shape_are_read_by_httpx() -> None:
    """The shortcut reads httpx's private ``_list``; anything else there and httpx reads."""
    from pytest_outbound._interceptors._httpx import header_items

    class Headers:
        def __init__(self, entries: object) -> None:
            self._encoding = None
            self._list = entries

        def multi_items(self) -> list[tuple[str, str]]:
            return [("from", "httpx")]

    for entries in ((), [(b"A", b"a")], [("A", "a", "a")], [(b"A", b"a", 1)], "x"):
        assert header_items(Headers(entries)) == [("from", "httpx")]


def test_remembered_judgements_read_header_names_and_order_and_set_templates() -> None:
    """Header names and their order are part of what is remembered (the names are fields, in
    order), and a remembered judgement still gives the record its destination's templates."""
    from pytest_outbound._policy import Payload

    policy = Policy(
        (
            Destination(
                name="update-check",
                hosts=("octopus.com",),
                paths=("/api/{version}/check",),
                payload=Payload(fields=("version", "header:x-a")),
            ),
            Destination(name="templated", hosts=("templated.example",), paths=("/v/{id}",)),
        )
    )
    context = Context(Rules(policy))
    url = "https://octopus.com/api/1.2/check"

    def judged(headers: tuple[tuple[str, str], ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
        record = build_request("GET", url, headers=headers, client="requests")
        return decide(record, context).reasons, record.fields

    for _ in range(2):
        assert judged((("X-A", "v"),)) == ((), ("version", "header:x-a"))
        assert judged((("X-B", "v"),)) == (("payload:extra:header:x-b",), ("version", "header:x-b"))
        assert judged((("X-A", "1"), ("X-C", "2")))[1] == ("version", "header:x-a", "header:x-c")
        assert judged((("X-C", "2"), ("X-A", "1")))[1] == ("version", "header:x-c", "header:x-a")
        assert judged((("X-A", "1"), ("X-C", "1")))[1] == ("version", "header:x-a", "header:x-c")
        assert judged((("X-C", "1"), ("X-A", "1")))[1] == ("version", "header:x-c", "header:x-a")
    for _ in range(2):  # no contract: the fields come from the templates the verdict set
        record = build_request("GET", "https://templated.example/v/42", client="requests")
        assert decide(record, context).allowed
        assert record.field_values().values == {"id": ("42",)}


def test_a_headers_key_given_is_not_carried_to_a_changed_copy() -> None:
    """The memo key an interceptor hands over belongs to the record it was built with: a copy
    made with other headers (``dataclasses.replace``) is judged by its own."""
    import dataclasses

    from pytest_outbound._sensitive import SensitiveScanner, SensitiveValue

    scanner = SensitiveScanner([SensitiveValue("token", "s3cr3t-build-token")])
    context = Context(Rules(Policy(allowed=("octopus.com",)), scanner))
    headers = {"accept": "*/*"}
    key = (tuple(headers), tuple(headers.values()))
    record = build_request(
        "GET", "https://octopus.com/", headers=headers, texts=True, headers_key=key, client="httpx"
    )
    assert decide(record, context).allowed
    leaking = dataclasses.replace(record, headers={"x-build": "s3cr3t-build-token"})
    assert decide(leaking, context).reasons == ("sensitive:token",)


def test_min_interval_detail_keeps_its_place_among_several_payload_details() -> None:
    from pytest_outbound._policy import Payload

    policy = Policy(
        (
            Destination(
                name="update-check",
                hosts=("octopus.com",),
                min_interval="8h",
                payload=Payload(fields=("version",), required=("version",)),
            ),
        )
    )
    scanner = SensitiveScanner([SensitiveValue("hostname", "build-host-7")])
    context = Context(Rules(policy, scanner))

    def verdict() -> tuple[tuple[str, ...], tuple[str, ...]]:
        record = build_request(
            "POST", "https://octopus.com/?a=1&b=build-host-7", body=b"{}", client="requests"
        )
        record.time = 10_000.0
        result = decide(record, context, history={"update-check": 9_000.0})
        return result.reasons, result.detail

    for _ in range(2):
        reasons, detail = verdict()
        assert reasons == (
            "payload:extra:a",
            "payload:extra:b",
            "payload:missing:version",
            "interval",
            "sensitive:hostname",
        )
        # one contract diff for all three breaches, then the interval, then the finding
        assert len(detail) == 3
        assert detail[0].startswith("payload contract of 'update-check'")
        assert "min_interval is 8h" in detail[1]
        assert detail[2].startswith("carries this machine's hostname")


def test_records_of_one_request_have_fields_of_their_own() -> None:
    """A remembered judgement does not hand one record's fields to the next."""
    context = _contract_context()
    body = f'{{"installationId": "{UUID}"}}'.encode()
    first, second = (
        build_request("POST", "https://octopus.com/api/1/check", body=body, client="requests")
        for _ in range(2)
    )
    decide(first, context)
    decide(second, context)
    assert first.field_values() is not second.field_values()
    first.field_values().values["injected"] = ("x",)  # type: ignore[index]
    assert second.fields == ("version", "installationId")


def test_records_copy_and_pickle_with_their_fields() -> None:
    import copy
    import json
    import pickle

    record = build_request("POST", "https://a.example/x", body=b'{"a": 1}', client="requests")
    fields = record.field_values()
    for clone in (copy.deepcopy(record), pickle.loads(pickle.dumps(record))):
        assert clone.field_values() == fields
    assert fields == Fields({"a": ("1",)}, opaque=False)
    assert fields != Fields({"a": ("1",)}, opaque=True)
    assert repr(fields) == "Fields(values={'a': ('1',)}, opaque=False)"
    assert json.loads(json.dumps(fields.values)) == {"a": ["1"]}


HELPER = """
import requests


def fetch():
    requests.get("https://octopus.com/")
"""

TWO_HELPERS = """
import pytest
import requests

from one import helper as first
from two import helper as second


class NotSent(Exception):
    pass


def test_each_helper_is_its_own_call_site(outbound, monkeypatch):
    def not_sent(*args, **kwargs):
        raise NotSent

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", not_sent)
    for fetch in (first.fetch, second.fetch, first.fetch):
        with pytest.raises(NotSent):
            fetch()
    assert [r.location for r in outbound.requests] == [
        "one/helper.py:6",
        "two/helper.py:6",
        "one/helper.py:6",
    ]
"""


def test_identical_code_in_two_files_is_two_call_sites(pytester: pytest.Pytester) -> None:
    """Code objects of identical source compare equal whatever their file: the call-site cache
    must tell them apart (it keys them by identity)."""
    pytester.makeini("[pytest]\noutbound_mode = audit\noutbound_sensitive_machine = false\n")
    for package in ("one", "two"):
        pytester.mkpydir(package)
        (pytester.path / package / "helper.py").write_text(HELPER)
    pytester.makepyfile(test_helpers=TWO_HELPERS)
    pytester.runpytest("-q", "-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_the_records_annotations_resolve_without_field_extraction() -> None:
    """``Fields`` is defined beside the record, not in ``_fields`` (imported on first use):
    ``typing.get_type_hints``, which cattrs, pydantic and typeguard use, resolves every
    annotation of the public ``OutboundRequest``."""
    hints = typing.get_type_hints(pytest_outbound.OutboundRequest)
    assert hints["_fields"] == Fields | None
    assert hints["peer"] == Peer | None


LOADED_MODULES = """
import sys

def pytest_unconfigure(config):
    loaded = sorted(m for m in sys.modules if m.startswith("pytest_outbound"))
    loaded += [f"peer:{m}" for m in ("aiohttp",) if m in sys.modules]
    with open("loaded.txt", "w") as out:
        out.write("\\n".join(loaded))
"""


@pytest.mark.parametrize(
    ("args", "needed"),
    [
        # enforce watches child processes, and guards Python ones (outbound_subprocess)
        ((), {"pytest_outbound._children"}),
        (
            ("--outbound-report", "r.json"),
            {"pytest_outbound._report", "pytest_outbound._children"},
        ),
        (("-o", "outbound_subprocess=true"), {"pytest_outbound._children"}),
        # audit, children unguarded: no child, no child-process module
        (("-o", "outbound_mode=audit"), set()),
    ],
)
def test_start_up_loads_only_the_modules_the_run_needs(
    pytester: pytest.Pytester, args: tuple[str, ...], needed: set[str]
) -> None:
    """Every module costs start-up (pytest loads a plugin's modules through its assertion
    rewriting hook): the report, child-process, fixture, blocked-message and field-extraction
    modules are imported only by the runs that use them, and then they work; the aiohttp
    adapter only when aiohttp is imported (another plugin may have imported it)."""
    pytester.makeconftest(LOADED_MODULES)
    pytester.makeini("[pytest]\noutbound_mode = enforce\n")
    pytester.makepyfile("def test_quiet():\n    pass\n")
    result = pytester.runpytest_subprocess(*args)  # a fresh interpreter: its own sys.modules
    result.assert_outcomes(passed=1)
    loaded = set((pytester.path / "loaded.txt").read_text().split())
    assert "pytest_outbound._plugin" in loaded
    lazy = {
        "pytest_outbound._report",
        "pytest_outbound._children",
        "pytest_outbound._fixture",
        "pytest_outbound._messages",
        "pytest_outbound._docs",
        "pytest_outbound._fields",
    }
    assert loaded & lazy == needed
    aiohttp_adapter = "pytest_outbound._interceptors._aiohttp" in loaded
    assert aiohttp_adapter == ("peer:aiohttp" in loaded)
    if args:
        assert (pytester.path / "r.json").exists() == ("r.json" in args)


def test_idna_is_imported_only_for_a_host_that_is_not_ascii() -> None:
    """Start-up: host parsing needs ``idna`` only for a name that is not ASCII (1 ms)."""
    script = (
        "import sys\n"
        "from pytest_outbound._hosts import peer_from_url\n"
        "peer_from_url('https://api.example.com/')\n"
        "print('idna' in sys.modules)\n"
        "print(peer_from_url('https://b\\u00fccher.example/').host)\n"
        "print('idna' in sys.modules)\n"
    )
    ran = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert ran.stdout.split() == ["False", "xn--bcher-kva.example", "True"]
