"""Issue 24, "redaction everywhere": a sensitive value (SPEC §5.3) and a URL password are never
printed or written whole by the plugin, and pytest's traceback of a blocked request ends at the
user's line, so no library frame shows the request's arguments."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import hypothesis.strategies as st
import pytest
from hypothesis import given

from pytest_outbound._sensitive import (
    Masker,
    SensitiveScanner,
    SensitiveValue,
    mask,
    mask_url_passwords,
)

SECRET = "Zq7-ACME-4411-sekret"
HOSTNAME = "ci-runner-7f3a9b"
FQDN = f"{HOSTNAME}.build.internal"

# -- the masking rule ---------------------------------------------------------------------------


def test_mask_keeps_two_characters_at_each_end_of_a_long_value_and_hides_a_short_one() -> None:
    assert mask(SECRET) == "Zq****************et"
    assert mask(HOSTNAME) == "ci************9b"
    assert mask("abcdefghij") == "ab******ij"  # 10 characters: the shortest shown in part
    assert mask("abcdefghi") == "*********"
    assert mask("ab") == "**"
    assert mask("") == ""
    assert mask("ab******ij") == "<redacted>"  # its mask would be itself


@given(st.text(min_size=1, max_size=40))
def test_a_mask_never_holds_the_whole_value(value: str) -> None:
    assert value not in mask(value)


def test_url_passwords_are_redacted_wherever_a_url_stands() -> None:
    text = "GET https://deploy:password123@example.org/a?b=1 (client: requests)"
    assert mask_url_passwords(text) == (
        "GET https://deploy:<redacted>@example.org/a?b=1 (client: requests)"
    )
    assert mask_url_passwords("http://:pa@ss@host/") == "http://:<redacted>@host/"
    assert mask_url_passwords("https://example.org:8443/x@y") == "https://example.org:8443/x@y"
    assert mask_url_passwords("mailto:someone@example.org") == "mailto:someone@example.org"


def test_the_masker_finds_every_written_form() -> None:
    masker = Masker([SensitiveValue("configured", SECRET), SensitiveValue("hostname", HOSTNAME)])
    assert masker(f"https://x.example/?k={SECRET}") == "https://x.example/?k=Zq****************et"
    # names match in any letter case; a user-given value exactly
    assert masker(f"/{HOSTNAME.upper()}/") == "/CI************9B/"
    assert masker(SECRET.lower()) == SECRET.lower()
    # percent-encoded (either hex case, "+" for a space), JSON-escaped, base64
    assert masker("q=Zq7-ACME-4411-sekret%20") == "q=Zq****************et%20"
    spaced = Masker([SensitiveValue("configured", "a b/c:d@e f")])
    for written in ("a%20b%2Fc%3Ad%40e%20f", "a%20b%2fc%3ad%40e%20f", "a+b%2Fc%3Ad%40e+f"):
        assert spaced(f"x={written}&y=1") == f"x={mask(written)}&y=1"
    slashed = Masker([SensitiveValue("home", "/home/alice-smith")])
    assert slashed('{"p": "\\/home\\/alice-smith"}') == '{"p": "\\/***************th"}'
    encoded = base64.b64encode(f"user={SECRET};".encode()).decode()
    assert SECRET not in base64.b64decode(masker(encoded).replace("*", "A")).decode("latin-1")
    # overlapping finds are one stretch
    assert (
        Masker([SensitiveValue("a", "abcdefghij"), SensitiveValue("b", "ghijklmnop")])(
            "-abcdefghijklmnop-"
        )
        == "-ab************op-"
    )
    # and a URL password, always
    assert masker("https://u:pw12345@h.example/") == "https://u:<redacted>@h.example/"


def test_a_scanner_masks_only_the_values_it_scans_for() -> None:
    scanner = SensitiveScanner(
        [SensitiveValue("user", "root"), SensitiveValue("configured", SECRET)], min_length=4
    )
    assert scanner.mask(f"root {SECRET}") == "root Zq****************et"


# -- a whole run: nothing of the secret or the hostname in any output -------------------------

MACHINE = f"""
import socket

# This machine, for the plugin's probe: a made-up build agent (read before any test runs).
socket.gethostname = lambda: "{HOSTNAME}"
socket.getfqdn = lambda name="": "{FQDN}"
_getaddrinfo = socket.getaddrinfo


def getaddrinfo(host, *args, **kwargs):
    if str(host).lower() in ("{HOSTNAME}", "{FQDN}"):
        raise socket.gaierror(socket.EAI_NONAME, "not looked up in this test")
    return _getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = getaddrinfo
"""

POLICY = """
[[destination]]
name = "update-check"
description = "Checking for updates."
hosts = ["octopus.com"]

[destination.payload]
fields = ["version"]
"""

LEAKS = """
import socket

import httpx
import requests
from pytest_outbound import OutboundBlocked


def the_secret(config):
    return config.getini("outbound_sensitive")[0]


def test_query(request):
    requests.get("https://partner.example/lookup", params={"key": the_secret(request.config)})


def test_header():
    httpx.post("https://telemetry.example/ingest", headers={"X-Machine": socket.gethostname()})


def test_path(outbound):
    outbound.allow("cdn.example")
    outbound.stub("cdn.example")
    requests.get("https://cdn.example/" + socket.getfqdn().upper() + "/logo.png")


def test_swallowed(request, outbound):
    outbound.stub("update-check", method="POST")
    try:
        requests.post(
            "https://octopus.com/check",
            json={"version": "1", "note": the_secret(request.config)},
        )
    except OutboundBlocked:
        pass


def test_field_named_by_the_secret(request):
    try:
        requests.post("https://octopus.com/check", json={the_secret(request.config): 1})
    except OutboundBlocked:
        pass


def test_password():
    # (written in two parts: pytest shows this source line, which is the user's, not ours)
    requests.get("https://deploy:password" + "123@pw.example/")
"""


@pytest.mark.machine_probe  # the probe reads the conftest's made-up hostname
@pytest.mark.parametrize("workers", ["0", "2"])
def test_a_run_that_blocked_a_secret_and_the_hostname_prints_and_writes_neither(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, workers: str
) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(pytester.path / "step-summary.md"))
    pytester.makeconftest(MACHINE)
    pytester.makefile(".toml", outbound=POLICY)
    pytester.makeini(
        "[pytest]\noutbound_policy = outbound.toml\noutbound_mode = enforce\n"
        f"outbound_sensitive = {SECRET}\n"
    )
    pytester.makepyfile(test_leaks=LEAKS)
    result = pytester.runpytest_subprocess(  # the conftest rebinds socket.gethostname
        "-p",
        "no:randomly",
        "-n",
        workers,
        "--outbound-report",
        "report.json",
        "--outbound-docs",
        "OUTBOUND.md",
        "--junitxml",
        "junit.xml",
    )
    result.assert_outcomes(failed=6)
    outputs = {
        "stdout": result.stdout.str(),
        "stderr": result.stderr.str(),
        **{
            name: (pytester.path / name).read_text(encoding="utf-8")
            for name in ("report.json", "OUTBOUND.md", "junit.xml", "step-summary.md")
        },
    }
    for name, text in outputs.items():
        assert SECRET not in text, name
        assert HOSTNAME not in text.lower(), name
        assert "password123" not in text, name
    out = outputs["stdout"]
    # ... while every block is there, named, masked
    assert (
        "outbound request blocked: GET https://partner.example/lookup?key=Zq****************et"
        " (client: requests)"
    ) in out
    assert "GET https://cdn.example/CI***************************AL/logo.png" in out
    assert "GET https://deploy:<redacted>@pw.example/ (client: requests)" in out
    assert "::error file=test_leaks.py,line=13,title=outbound request::GET" in out
    for reason in ("sensitive:configured", "sensitive:hostname", "sensitive:fqdn"):
        assert reason in out
    # pytest's traceback ends at the user's line: no library source, no library arguments
    for library in ("requests/api.py", "requests/sessions.py", "httpx/_client.py", "httpx/_api"):
        assert library not in out
    report = json.loads(outputs["report.json"])
    header = next(r for r in report["requests"] if r["host"] == "telemetry.example")
    assert header["headers"]["x-machine"] == "ci************9b"
    assert header["reasons"] == ["undocumented", "sensitive:hostname"]
    named = next(r for r in report["requests"] if r["nodeid"].endswith("secret"))
    assert named["reasons"] == ["payload:extra:Zq****************et", "sensitive:configured"]
    assert "`Zq****************et`" in outputs["OUTBOUND.md"]


# -- the traceback of a blocked request ends at the user's line ------------------------------


@pytest.mark.parametrize(
    ("call", "library"),
    [
        ('requests.get("https://evil.example/a")', "requests/sessions.py"),
        ('httpx.get("https://evil.example/a")', "httpx/_client.py"),
        ('urllib.request.urlopen("https://evil.example/a")', "urllib/request.py"),
    ],
)
def test_the_traceback_stops_at_the_users_call(
    pytester: pytest.Pytester, call: str, library: str
) -> None:
    pytester.makeini("[pytest]\noutbound_mode = enforce\n")
    pytester.makepyfile(
        app=f"""
        import urllib.request

        import httpx
        import requests


        def fetch():
            {call}
        """
    )
    pytester.makepyfile(
        test_app="""
        import app


        def test_fetch():
            app.fetch()
        """
    )
    result = pytester.runpytest("-p", "no:randomly")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "    def test_fetch():",
            ">       app.fetch()",
            "",
            "test_app.py:5: ",
            "_ _ _ *",
            "",
            "    def fetch():",
            f">       {call}",
            "E       pytest_outbound.OutboundBlocked: outbound request blocked: GET"
            " https://evil.example/a (client: *)",
            "E         from: app.py:8 in test_app.py::test_fetch [[]call]",
            "*",
            "app.py:8: OutboundBlocked",
        ]
    )
    assert library not in result.stdout.str()
    # --full-trace asks for every frame: the library's too
    full = pytester.runpytest("-p", "no:randomly", "--full-trace")
    assert library in full.stdout.str()


def test_a_block_in_a_fixture_is_cut_there_too(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\noutbound_mode = enforce\n")
    pytester.makepyfile(
        """
        import pytest, requests


        @pytest.fixture
        def remote():
            requests.get("https://evil.example/setup")


        def test_it(remote):
            pass
        """
    )
    result = pytester.runpytest("-p", "no:randomly", "--tb=short")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            '    requests.get("https://evil.example/setup")',
            "E   pytest_outbound.OutboundBlocked: outbound request blocked: GET*",
        ]
    )
    assert "sessions.py" not in result.stdout.str()


def test_the_kind_of_a_configured_value_is_configured(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    pytester.makeini(
        "[pytest]\noutbound_mode = audit\noutbound_allow = partner.example\n"
        f"outbound_sensitive =\n    {SECRET}\n    licence: LIC-0042-7781-AB\n"
    )
    pytester.makepyfile(
        """
        import requests, responses


        @responses.activate
        def test_send(request, outbound):
            responses.get("https://partner.example/a")
            secret, licence = request.config.getini("outbound_sensitive")
            requests.get("https://partner.example/a", params={"k": secret})
            requests.get("https://partner.example/a", params={"k": licence.split(": ")[1]})
            assert [r.reasons for r in outbound.requests] == [
                ["sensitive:configured"],
                ["sensitive:licence"],
            ]
        """
    )
    result = pytester.runpytest("-p", "no:randomly")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "  partner.example: sensitive:configured: 1 request(s) in 1 test(s)",
            "*GET*",
            "        https://partner.example/a?k=Zq?*et [[]requests[]]",
        ]
    )
    assert "k=LI************AB" in result.stdout.str()
    assert "LIC-0042-7781-AB" not in result.stdout.str()


def test_report_json_is_masked_key_and_value(tmp_path: Path) -> None:
    from pytest_outbound._record import build_request
    from pytest_outbound._report import build_report

    request = build_request(
        "POST",
        f"https://user:hunter22@x.example/{HOSTNAME}?{SECRET}=1",
        headers={"X-Note": f"from {HOSTNAME}"},
        body=json.dumps({SECRET: 1}).encode(),
        client="requests",
    )
    request.verdict, request.reasons = "violation", [f"payload:extra:{SECRET}"]
    masker = Masker([SensitiveValue("configured", SECRET), SensitiveValue("hostname", HOSTNAME)])
    data = build_report(mode="audit", destinations=[], records=[request], mask=masker)
    text = json.dumps(data)
    for whole in (SECRET, HOSTNAME, "hunter22"):
        assert whole not in text
    [shown] = data["requests"]
    assert shown["url"] == (
        "https://user:<redacted>@x.example/ci************9b?Zq****************et=1"
    )
    assert shown["query"] == {"Zq****************et": ["1"]}
    assert shown["fields"] == ["Zq****************et", "header:x-note"]
    assert shown["headers"]["X-Note"] == "from ci************9b"


def test_the_fixtures_assertions_mask_what_they_show(pytester: pytest.Pytester) -> None:
    """``outbound.assert_not_contacted`` and friends name the requests they found: a URL's
    password and a configured sensitive value are masked there too."""
    pytester.makeini("[pytest]\noutbound_sensitive =\n    token: tk-1234567890abcdef\n")
    pytester.makepyfile(
        """
        import re, requests, responses

        SECRET = "tk-" + "1234567890abcdef"
        PASSWORD = "hunter2" * 2

        @responses.activate
        def test_it(outbound):
            responses.get(re.compile(r"https://.*api[.]example[.]org/x.*"))
            outbound.allow("api.example.org")
            requests.get(f"https://deploy:{PASSWORD}@api.example.org/x?t={SECRET}")
            outbound.assert_not_contacted("api.example.org")
        """
    )
    result = pytester.runpytest("-p", "no:randomly", "-o", "outbound_mode=audit")
    result.assert_outcomes(failed=1)
    output = result.stdout.str()
    assert "'api.example.org' was contacted 1 time(s)" in output
    assert "hunter2hunter2" not in output
    assert "tk-1234567890abcdef" not in output
    assert "https://deploy:<redacted>@api.example.org/x?t=tk" in output
