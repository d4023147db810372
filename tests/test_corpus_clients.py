"""The host corpus through the real clients: requests, httpx and urllib3 inside pytest.

Each case runs in a test whose only permitted destination is the case's pattern. Below the
interceptor, where a mock or the network would take over (for httpx, where httpcore would open
a connection: a URL httpx's transport refuses itself never gets that far), the client is made
to raise ``NotSent``. So ``NotSent`` means "the plugin let it go", ``OutboundBlocked`` means "blocked",
and any other error is the client refusing the URL itself. The property: a violation never gets
as far as ``NotSent``, and an allowed URL is never blocked.
"""

from __future__ import annotations

import json

import pytest
from host_corpus import CASES

URL_CASES = [case for case in CASES if case.is_url]

INNER = """
import json, pathlib
import httpcore, httpx, pytest, requests, urllib3
from pytest_outbound import OutboundBlocked

CASES = json.loads(pathlib.Path("cases.json").read_text())

class NotSent(Exception):
    pass

def not_sent(*args, **kwargs):
    raise NotSent

@pytest.fixture(autouse=True)
def below_the_interceptor(monkeypatch):
    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", not_sent)
    # beneath httpx's transport and httpcore's own checks (it refuses a URL without a scheme
    # or host itself): where a connection would be opened
    monkeypatch.setattr(httpcore._backends.sync.SyncBackend, "connect_tcp", not_sent)
    monkeypatch.setattr(urllib3.connectionpool.HTTPConnectionPool, "_get_conn", not_sent)

SEND = {
    "requests": lambda url: requests.get(url, timeout=1),
    "httpx": lambda url: httpx.get(url),
    "urllib3": lambda url: urllib3.PoolManager(retries=False).request("GET", url),
}

@pytest.mark.outbound_none
@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_case(outbound, case):
    outbound.allow(case["pattern"])
    try:
        SEND[CLIENT](case["url"])
    except NotSent:
        outcome = "sent"
    except OutboundBlocked:
        outcome = "blocked"
    except Exception as exc:   # the client refused the URL itself
        outcome = "refused: " + type(exc).__name__
    if case["verdict"] == "violation":
        assert outcome != "sent", f"{CLIENT} let a violation through"
    else:
        assert outcome != "blocked", f"{CLIENT} blocked an allowed URL"
    pathlib.Path("outcomes").mkdir(exist_ok=True)
    pathlib.Path("outcomes", case["id"].replace("/", "_")[:100] + ".txt").write_text(outcome)
"""


@pytest.mark.parametrize("client", ["requests", "httpx", "urllib3"])
def test_corpus_through_the_real_client(pytester: pytest.Pytester, client: str) -> None:
    cases = [
        {"id": f"c{i}", "url": c.target, "pattern": c.pattern, "verdict": c.verdict}
        for i, c in enumerate(URL_CASES)
    ]
    (pytester.path / "cases.json").write_text(json.dumps(cases))
    # Loopback counts too: the corpus has 127.0.0.1, 0.0.0.0 and [::1] in its notations.
    pytester.makeini(
        "[pytest]\noutbound_mode = enforce\noutbound_local = enforce\n"
        "outbound_sensitive_machine = false\n"
    )
    pytester.makepyfile(test_corpus=f"CLIENT = {client!r}\n" + INNER)
    result = pytester.runpytest("-q")
    outcomes = {p.stem: p.read_text() for p in (pytester.path / "outcomes").iterdir()}
    # Swallowed blocks fail their test in enforce mode; what must never happen is an assertion
    # error from the case itself (a violation sent, or an allowed URL blocked).
    result.stdout.no_fnmatch_line(f"*{client} let a violation through*")
    result.stdout.no_fnmatch_line(f"*{client} blocked an allowed URL*")
    assert len(outcomes) == len(cases)
    sent = sum(1 for o in outcomes.values() if o == "sent")
    allowed = sum(1 for c in cases if c["verdict"] == "allowed")
    # Most allowed URLs really reach the client's transport (a few are refused by the client).
    assert sent >= allowed * 0.8, (sent, allowed)
