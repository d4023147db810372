"""``decide`` and its context, tested directly (pure core, no pytest plugin involved)."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_outbound import Destination, Policy, PolicyError
from pytest_outbound._decide import SOCKET, Context, Rules, decide, path_matches, resolve_entry
from pytest_outbound._hosts import peer_from_address
from pytest_outbound._record import OutboundRequest, build_request

RULES = Rules(
    Policy(
        (
            Destination("update-check", ("octopus.com",), schemes=("https",), methods=("GET",)),
            Destination("library", ("library.octopus.com",), paths=("/api/{version}/templates",)),
            Destination("octopus-upload", ("octopus.com",), methods=("POST",), ports=(443,)),
            Destination("nuget", ("*.nuget.org",)),
        ),
        ("partner.example",),
    )
)


def judge(
    url: str, context: Context | None = None, method: str = "GET"
) -> tuple[bool, str | None, tuple[str, ...]]:
    verdict = decide(build_request(method, url, client="requests"), context or Context(RULES))
    return verdict.allowed, verdict.destination, verdict.reasons


def only(*entries: str) -> Context:
    return Context(RULES, "only", tuple(resolve_entry(e, RULES, "test") for e in entries))


def allow(context: Context, *entries: str) -> Context:
    return context.with_allowed(resolve_entry(e, RULES, "test") for e in entries)


@pytest.mark.parametrize(
    ("method", "url", "expected"),
    [
        ("GET", "https://octopus.com/check", (True, "update-check", ())),
        ("POST", "https://octopus.com/upload", (True, "octopus-upload", ())),
        ("POST", "http://octopus.com:8080/upload", (False, None, ("port",))),
        ("GET", "http://octopus.com/check", (False, None, ("scheme",))),
        ("PUT", "https://octopus.com/", (False, None, ("method",))),
        ("GET", "https://library.octopus.com/api/v2/templates", (True, "library", ())),
        ("GET", "https://library.octopus.com/api/v2/other", (False, None, ("path",))),
        ("GET", "https://api.nuget.org/v3/index.json", (True, "nuget", ())),
        ("GET", "https://partner.example/", (True, None, ())),
        ("GET", "https://evil.example/", (False, None, ("undocumented",))),
        ("GET", "https://evil.example\\@octopus.com/", (False, None, ("ambiguous-host",))),
    ],
)
def test_policy_decisions(
    method: str, url: str, expected: tuple[bool, str | None, tuple[str, ...]]
) -> None:
    assert judge(url, method=method) == expected


def test_only_narrows_to_its_entries_and_prefers_a_permitted_destination() -> None:
    ctx = only("octopus-upload")
    # GET octopus.com fully matches update-check, which is documented but not permitted here.
    assert judge("https://octopus.com/", ctx) == (False, "update-check", ("outbound_only",))
    assert judge("https://octopus.com/", ctx, method="POST") == (True, "octopus-upload", ())
    assert judge("https://api.nuget.org/", ctx) == (False, "nuget", ("outbound_only",))
    # A host pattern entry permits that host even if undocumented.
    assert judge("https://x.example/", only("*.example")) == (True, None, ())


def test_none_permits_nothing_but_allows() -> None:
    ctx = Context(RULES, "none")
    assert judge("https://octopus.com/", ctx) == (False, "update-check", ("outbound_none",))
    assert judge("https://partner.example/", ctx) == (False, None, ("outbound_none",))
    widened = allow(ctx, "nuget", "*.partner.example")
    assert judge("https://api.nuget.org/", widened) == (True, "nuget", ())
    assert judge("https://a.partner.example/", widened) == (True, None, ())
    assert judge("https://octopus.com/", widened)[0] is False


def test_restriction_message_names_the_marker() -> None:
    ctx = Context(RULES, "none", restriction_source="@pytest.mark.outbound_none on class TestX")
    verdict = decide(build_request("GET", "https://octopus.com/", client="httpx"), ctx)
    assert verdict.detail == (
        "this test is marked outbound_none (@pytest.mark.outbound_none on class TestX):"
        " nothing may be contacted",
    )


def test_resolve_entry_prefers_destination_names() -> None:
    assert resolve_entry("nuget", RULES, "x").destination == "nuget"
    entry = resolve_entry("*.nuget.org", RULES, "x")
    assert entry.destination is None
    assert entry.pattern is not None
    with pytest.raises(PolicyError, match="'a b' is neither a documented destination"):
        resolve_entry("a b", RULES, "x")
    with pytest.raises(PolicyError, match="must be a destination name or a host pattern"):
        resolve_entry(42, RULES, "x")


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("/api/*/check", "/api/v1/check", True),
        ("/api/*/check", "/api/v1/v2/check", False),
        ("/api/**", "/api/v1/v2/check", True),
        ("/api/**", "/api/", True),
        ("/api/{version}/check", "/api/2024.1/check", True),
        ("/api/{version}/check", "/api//check", False),
        ("/a.b", "/aXb", False),
        ("/exact", "/exact/", False),
    ],
)
def test_path_globs(pattern: str, path: str, matches: bool) -> None:
    assert path_matches(pattern, path) is matches


segment = st.text(alphabet="abcdefghij0123456789-._~", min_size=1, max_size=8)


@given(st.lists(segment, min_size=1, max_size=5))
def test_star_matches_exactly_one_segment(segments: list[str]) -> None:
    path = "/" + "/".join(segments)
    assert path_matches("/" + "/".join("*" for _ in segments), path)
    assert not path_matches("/" + "/".join("*" for _ in segments[:-1]) + "/*/*", path)
    assert path_matches("/**", path)


@given(st.lists(segment, min_size=1, max_size=5))
def test_literal_paths_match_only_themselves(segments: list[str]) -> None:
    path = "/" + "/".join(segments)
    assert path_matches(path, path)
    assert not path_matches(path, path + "x")


def test_a_raw_connection_is_judged_on_its_port() -> None:
    """A socket connection has no scheme, method or path; the documented ports still bind it."""
    rules = Rules(Policy((Destination("db", ("db.example",), ports=(5432,)),)))
    peer = peer_from_address("db.example", 25)
    smtp = OutboundRequest(
        method="CONNECT",
        url="tcp://db.example:25",
        scheme="",
        host="db.example",
        port=25,
        path="",
        query_text="",
        headers={},
        client=SOCKET,
        peer=peer,
    )
    verdict = decide(smtp, Context(rules))
    assert (verdict.allowed, verdict.reasons, verdict.closest) == (False, ("port",), "db")
    postgres = dataclasses.replace(smtp, port=5432, peer=peer_from_address("db.example", 5432))
    assert decide(postgres, Context(rules)).allowed


def test_a_scheme_pattern_admits_only_its_default_port() -> None:
    """``https://host`` admits port 443 alone: another port is a near miss on the port."""
    rules = Rules(Policy((Destination("update", ("https://octopus.com",)),)))
    verdict = decide(
        build_request("GET", "https://octopus.com:8443/", client="requests"), Context(rules)
    )
    assert (verdict.allowed, verdict.reasons, verdict.closest) == (False, ("port",), "update")
    assert "admits only port 443" in verdict.detail[0]
