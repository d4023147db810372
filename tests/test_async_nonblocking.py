"""Nothing the plugin does for a request on an async path blocks the event loop (issue 22).

aiohttp's own suite runs blockbuster, which turns a blocking call made inside a running event
loop (``os.getcwd``, ``os.stat``, ``os.path.abspath``, a file read, a blocking socket) into an
error. The plugin judges async requests inside the loop, so its own work there must make no
such call: working out the call site made ``os.path.relpath`` call ``os.getcwd``, which made
every aiohttp and httpx ``AsyncClient`` request fail to be judged (an internal error in audit,
a block in enforce). Each test here runs real requests inside a running loop with blockbuster
active: without the plugin, in audit, and in enforce with the destination documented, they
must come out the same; in the plugin's runs each is recorded with its call site.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from asyncio_server import SOURCE as SERVER

from pytest_outbound import Policy
from pytest_outbound._decide import Context, Rules
from pytest_outbound._guard import Guard

POLICY = """
[[destination]]
name = "api"
hosts = ["127.0.0.1", "api.example.com"]

[destination.payload]
fields = ["version"]
"""

LOCAL = ("-o", "outbound_local=enforce", "-o", "outbound_policy=outbound.toml")
RUNS = {
    "without the plugin": ("-p", "no:outbound"),
    "audit": ("-o", "outbound_mode=audit", *LOCAL),
    "enforce": ("-o", "outbound_mode=enforce", *LOCAL),
}

HEAD = """
import asyncio, json
import aiohttp, httpx, pytest, respx
from blockbuster import blockbuster_ctx
from aserver import serve

DOC = json.dumps({"version": "1.0.0"}).encode()


async def achunks():
    yield DOC[:5]
    yield DOC[5:]


def in_loop(main):
    \"\"\"Run ``main()`` in an event loop, with every blocking call in it an error.\"\"\"
    async def watched():
        with blockbuster_ctx():
            return await main()
    return asyncio.run(watched())


@pytest.fixture
def check(request):
    \"\"\"Without the plugin, nothing; with it, that the test's requests were recorded as
    ``expected`` (client, path, verdict), each with its call site in this file.\"\"\"
    if not request.config.pluginmanager.has_plugin("outbound"):
        return lambda expected: None
    outbound = request.getfixturevalue("outbound")

    def check(expected):
        records = outbound.requests
        assert [(r.client, r.path, r.verdict) for r in records] == expected
        assert all(r.location.startswith("test_it.py:") for r in records), records
    return check
"""

BEHAVIOURS = {
    "aiohttp": """
def test_it(check):
    async def main():
        async with serve() as server:
            async with aiohttp.ClientSession() as session:
                async with session.post(server.base + "/api/up", data=DOC) as r:
                    assert await r.read() == b"ok"
                async with session.post(server.base + "/api/up", data=achunks()) as r:
                    assert await r.read() == b"ok"
                async with session.get(server.base + "/api/redirect") as r:
                    assert r.status == 200
            return server.received
    assert in_loop(main) == [("POST", "/api/up", DOC), ("POST", "/api/up", DOC),
                             ("GET", "/api/redirect", b""), ("GET", "/api/landed", b"")]
    check([("aiohttp", "/api/up", "allowed"), ("aiohttp", "/api/up", "allowed"),
           ("aiohttp", "/api/redirect", "allowed"), ("aiohttp", "/api/landed", "allowed")])
""",
    "httpx-respx": """
def test_it(check):
    async def main():
        with respx.mock:
            route = respx.post("https://api.example.com/up").respond(200, text="ok")
            async with httpx.AsyncClient() as client:
                assert (await client.post("https://api.example.com/up", content=DOC)).text == "ok"
                assert (await client.post("https://api.example.com/up", content=achunks())).text == "ok"
            return [call.request.content for call in route.calls]
    assert in_loop(main) == [DOC, DOC]
    check([("httpx", "/up", "allowed"), ("httpx", "/up", "allowed")])
""",
    "httpx-loopback": """
def test_it(check):
    async def main():
        async with serve() as server:
            async with httpx.AsyncClient() as client:
                assert (await client.post(server.base + "/api/up", content=DOC)).text == "ok"
                assert (await client.post(server.base + "/api/up", content=achunks())).text == "ok"
            return server.received
    assert in_loop(main) == [("POST", "/api/up", DOC), ("POST", "/api/up", DOC)]
    check([("httpx", "/api/up", "allowed"), ("httpx", "/api/up", "allowed")])
""",
}


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(aserver=SERVER)
    pytester.makefile(".toml", outbound=POLICY)
    return pytester


@pytest.mark.parametrize("run", sorted(RUNS))
@pytest.mark.parametrize("behaviour", sorted(BEHAVIOURS))
def test_an_async_request_makes_no_blocking_call(
    suite: pytest.Pytester, behaviour: str, run: str
) -> None:
    suite.makepyfile(test_it=HEAD + BEHAVIOURS[behaviour])
    result = suite.runpytest("-p", "no:randomly", *RUNS[run])
    result.assert_outcomes(passed=1)
    assert "failed judging" not in result.stdout.str()


def test_an_undocumented_request_is_judged_without_a_blocking_call(
    suite: pytest.Pytester,
) -> None:
    """The violation's record, and in enforce the block's message (what is documented, how
    to document it), are made inside the loop too: blocked with ``OutboundBlocked``, never
    ``BlockingError``; in audit recorded with its call site and let through."""
    suite.makepyfile(
        test_it=HEAD
        + """
from pytest_outbound import OutboundBlocked

def attempt(send):
    async def main():
        try:
            await send()
        except OutboundBlocked as exc:
            assert "from: test_it.py:" in str(exc)
            return "blocked"
        return "sent"
    return in_loop(main)

def test_aiohttp(check, pytestconfig):
    async def send():
        async with serve() as server:
            async with aiohttp.ClientSession() as session:
                leak = json.dumps({"version": "1.0.0", "user": "alice"})  # not in the contract
                async with session.post(server.base + "/collect", data=leak) as r:
                    await r.read()
    expected = "blocked" if pytestconfig.getini("outbound_mode") == "enforce" else "sent"
    assert attempt(send) == expected
    check([("aiohttp", "/collect", "violation")])

def test_httpx(check, pytestconfig):
    async def send():
        with respx.mock:
            respx.post("https://undocumented.example/collect").respond(200)
            async with httpx.AsyncClient() as client:
                await client.post("https://undocumented.example/collect", content=DOC)
    expected = "blocked" if pytestconfig.getini("outbound_mode") == "enforce" else "sent"
    assert attempt(send) == expected
    check([("httpx", "/collect", "violation")])
"""
    )
    enforce = suite.runpytest("-p", "no:randomly", *RUNS["enforce"])
    enforce.assert_outcomes(failed=2)  # each caught its block: failed all the same
    enforce.stdout.fnmatch_lines(
        ["*outbound request blocked: POST http://127.0.0.1:*/collect (client: aiohttp)"]
    )
    enforce.stdout.fnmatch_lines(
        ["*outbound request blocked: POST https://undocumented.example/collect (client: httpx)"]
    )
    audit = suite.runpytest("-p", "no:randomly", *RUNS["audit"])
    audit.assert_outcomes(passed=2)
    for result in (enforce, audit):
        assert "BlockingError" not in result.stdout.str()
        assert "failed judging" not in result.stdout.str()


ROOT = os.path.abspath(os.sep.join(("", "work", "project")))


@contextlib.contextmanager
def calls_to_the_system() -> Iterator[list[str]]:
    """Inside: every filesystem or working-directory call the plugin could make is noted
    (and made). Put back before anything is asserted: pytest needs them to report."""
    made: list[str] = []
    with pytest.MonkeyPatch.context() as patch:
        for owner, names in (
            (os, ("getcwd", "stat", "lstat", "readlink", "listdir")),
            (os.path, ("abspath", "realpath", "exists", "islink")),
        ):
            for name in names:
                original = getattr(owner, name)

                def noted(*args: Any, _name: str = name, _original: Any = original) -> Any:
                    made.append(_name)
                    return _original(*args)

                patch.setattr(owner, name, noted)
        yield made


@pytest.mark.parametrize(
    ("filename", "shown"),
    [
        (os.path.join(ROOT, "tests", "test_app.py"), os.path.join("tests", "test_app.py")),
        (os.path.join(ROOT, "a", "..", "b.py"), "b.py"),
        (ROOT, "."),
        (os.path.join(ROOT + "-other", "x.py"), os.path.join(ROOT + "-other", "x.py")),
        (os.path.join(os.path.dirname(ROOT), "x.py"), os.path.join(os.path.dirname(ROOT), "x.py")),
        ("<string>", "<string>"),
        (os.path.join("relative", "x.py"), os.path.join("relative", "x.py")),
    ],
)
def test_a_call_site_is_made_relative_by_its_text_alone(filename: str, shown: str) -> None:
    """Below the root: relative to it; outside it: as it is (absolute); a relative filename
    or a pseudo-file: as written. No call to the filesystem or the working directory."""
    guard = Guard(mode="audit", context=Context(Rules(Policy())), rootpath=Path(ROOT), body_limit=9)
    with calls_to_the_system() as made:
        relpath, location = guard._relpath(filename), guard.relative(f"{filename}:12")
    assert (relpath, location, made) == (shown, f"{shown}:12", [])
