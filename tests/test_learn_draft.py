"""The draft policy, from report records straight (``_learn.draft``): what is learned and how,
what is only noted, grouping under ``*.`` wildcards, names, and appending to a file."""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_outbound._decide import Context, Rules, decide
from pytest_outbound._hosts import peer_from_address, peer_from_url
from pytest_outbound._learn import LearnError, draft, learn_into, registrable_domain
from pytest_outbound._policy import Policy
from pytest_outbound._report import request_from_json


def rec(
    url: str,
    method: str = "GET",
    *,
    client: str = "requests",
    verdict: str = "violation",
    reasons: Sequence[str] = ("undocumented",),
    nodeid: str = "test_app.py::test_it",
    phase: str = "call",
    fields: Sequence[str] = (),
    destination: str | None = None,
) -> dict[str, Any]:
    """A report record: an HTTP request by URL, or ``tcp://``/``dns://`` as the backstop
    writes them (no scheme; a lookup has no port)."""
    if client in ("socket", "dns"):
        rest = url.split("://", 1)[1]
        if client == "dns":
            host, port = rest, None
        else:
            host, _, port_text = rest.rpartition(":")
            host, port = host.strip("[]"), int(port_text)
        peer = peer_from_address(host, port)
        scheme, path = "", ""
        method = "DNS" if client == "dns" else "CONNECT"
    else:
        peer = peer_from_url(url)
        scheme, path = peer.scheme, "/" + url.split("://", 1)[1].partition("/")[2].split("?")[0]
    return {
        "method": method,
        "url": url,
        "scheme": scheme,
        "host": peer.host,
        "port": peer.port,
        "path": path,
        "query": {},
        "headers": {},
        "fields": list(fields),
        "client": client,
        "destination": destination,
        "verdict": verdict,
        "reasons": list(reasons),
        "nodeid": nodeid,
        "phase": phase,
        "location": "app.py:1",
        "thread": "MainThread",
        "time": 0.0,
    }


def report(
    *records: dict[str, Any], mode: str = "audit", names: Sequence[str] = ()
) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "mode": mode,
        "destinations": [{"name": n} for n in names],
        "requests": list(records),
    }


def blocks(text: str) -> dict[str, str]:
    """Each ``[[destination]]`` block of a draft, by name."""
    out = {}
    for block in text.split("[[destination]]\n")[1:]:
        name = block.split('name = "', 1)[1].split('"', 1)[0]
        out[name] = block.strip()
    return out


def admits(text: str, record: dict[str, Any]) -> bool:
    request = request_from_json(record)
    request.peer = peer_from_address(record["host"], record["port"], record["scheme"])
    return decide(request, Context(Rules(Policy.from_toml_text(text)))).allowed


def test_one_destination_per_host_with_what_was_seen() -> None:
    learned = draft(
        report(
            rec("https://api.example.org/v1/items?page=1", fields=["page"]),
            rec("https://api.example.org/v1/orders", "POST", fields=["item", "qty"]),
            rec("http://api.example.org/health", "HEAD", nodeid="test_app.py::test_health"),
            rec("https://files.example.net:8443/up", "PUT", nodeid="b.py::test_b"),
        )
    )
    assert learned.added == ["api-example-org", "files-example-net"]
    assert learned.notes == []
    found = blocks(learned.text)
    assert found["api-example-org"] == (
        'name = "api-example-org"\n'
        'hosts = ["api.example.org"]\n'
        'description = "TODO: what these requests are for."\n'
        'when = "TODO: when the code makes them."\n'
        'schemes = ["http", "https"]\n'
        'methods = ["GET", "HEAD", "POST"]\n'
        "# observed: 3 requests in 2 tests: test_app.py::test_health, test_app.py::test_it\n"
        "# [destination.payload]  # draft contract: the fields observed\n"
        '# fields = ["item", "page", "qty"]'
    )
    # a non-default port: the ports are written, and only then
    assert 'ports = [8443]\nmethods = ["PUT"]' in found["files-example-net"]


def test_ports_are_written_when_one_is_not_its_schemes_default() -> None:
    learned = draft(report(rec("https://svc.example.org/a"), rec("http://svc.example.org:8080/b")))
    assert 'schemes = ["http", "https"]\nports = [443, 8080]' in learned.text
    for record in (rec("https://svc.example.org/a"), rec("http://svc.example.org:8080/b")):
        assert admits(learned.text, record)


def test_the_tests_named_are_a_few_then_a_count() -> None:
    records = [rec("https://a.example.org/", nodeid=f"t.py::test_{i}") for i in range(5)]
    records.append(rec("https://a.example.org/", nodeid="", phase="collect"))
    text = draft(report(*records)).text
    assert (
        "# observed: 6 requests in 5 tests: t.py::test_0, t.py::test_1, t.py::test_2 and 3 more\n"
    ) in text
    only_outside = draft(report(rec("https://b.example.org/", nodeid="", phase="session"))).text
    assert "# observed: 1 request outside any test (session)\n" in only_outside


def test_several_subdomains_of_one_domain_are_one_wildcard_destination() -> None:
    learned = draft(
        report(
            rec("https://api.example.com/"),
            rec("https://cdn.example.com/"),
            rec("https://example.com/"),
            rec("https://eu.api.shop.example.co.uk/"),
            rec("https://us.api.shop.example.co.uk/"),
            rec("https://one.example.org/"),
        )
    )
    assert learned.added == ["example-co-uk", "example-com", "one-example-org"]
    found = blocks(learned.text)
    assert 'hosts = ["example.com", "*.example.com"]' in found["example-com"]
    assert (
        "# grouped: api.example.com, cdn.example.com, example.com (subdomains of example.com)"
        in found["example-com"]
    )
    assert 'hosts = ["*.example.co.uk"]' in found["example-co-uk"]
    assert 'hosts = ["one.example.org"]' in found["one-example-org"]


@pytest.mark.parametrize(
    ("hosts", "why"),
    [
        (["a.co.uk", "b.co.uk"], "co.uk is a public suffix: two owners"),
        (["a.github.io", "b.github.io"], "a hosting provider's shared zone"),
        (["x.s3.amazonaws.com", "y.s3.amazonaws.com"], "a hosting provider's shared zone"),
        (["a.tokyo.jp", "b.tokyo.jp"], "an unknown TLD: not sure"),
        (["www.bbc.uk", "cdn.bbc.uk"], "a ccTLD not known to be flat: not sure"),
        (["a.hp.com", "b.hp.com"], "a two-letter label below com may be a suffix (uk.com)"),
        (["a.localhost", "b.localhost"], "not a registered domain"),
    ],
)
def test_no_grouping_across_owners_or_when_unsure(hosts: list[str], why: str) -> None:
    learned = draft(report(*(rec(f"https://{h}/") for h in hosts)))
    assert len(learned.added) == 2, why
    assert "*." not in learned.text


@pytest.mark.parametrize(
    ("host", "domain"),
    [
        ("api.example.com", "example.com"),
        ("example.com", "example.com"),
        ("a.b.example.co.uk", "example.co.uk"),
        ("shop.example.com.au", "example.com.au"),
        ("x.example.de", "example.de"),
        ("x.example.com.es", "example.com.es"),
        ("www.uk.com", "www.uk.com"),
        ("x.github.io", None),
        ("x.y.blob.core.windows.net", None),
        ("x.kawasaki.jp", None),
        ("school.sch.uk", None),
        ("com", None),
        ("xn--80ak6aa92e.xn--p1ai", None),
    ],
)
def test_registrable_domain(host: str, domain: str | None) -> None:
    assert registrable_domain(host) == domain


def test_names_are_valid_and_unique() -> None:
    existing = '[[destination]]\nname = "a-example-org"\nhosts = ["old.example.org"]\n'
    learned = draft(
        report(
            rec("https://a.example.org/"),
            rec("https://a-example.org/"),
            rec("https://[2001:db8::1]/"),
            rec("https://203.0.113.7/"),
            names=["a-example-org-2"],  # another policy of the run (a conftest's)
        ),
        existing,
    )
    assert sorted(learned.added) == [
        "2001-db8-1",
        "203-0-113-7",
        "a-example-org-3",
        "a-example-org-4",
    ]
    Policy.from_toml_text(learned.text)


def test_socket_and_lookup_records() -> None:
    lookup = rec("dns://updates.example.org", client="dns", reasons=["dns"])
    connect = rec("tcp://198.51.100.4:5432", client="socket")
    named = rec("tcp://db.example.net:5432", client="socket")
    learned = draft(report(lookup, connect, named))
    found = blocks(learned.text)
    # a lookup is judged on its host alone: no scheme, port or method to learn
    assert found["updates-example-org"].splitlines()[2:] == [
        'description = "TODO: what these requests are for."',
        'when = "TODO: when the code makes them."',
        "# observed: 1 request in 1 test: test_app.py::test_it",
        "# only name lookups were seen (no connection through the plugin's clients)",
    ]
    # a raw connection: its port
    assert 'hosts = ["198.51.100.4"]' in found["198-51-100-4"]
    assert "ports = [5432]" in found["198-51-100-4"]
    assert "methods" not in found["198-51-100-4"]
    assert "ports = [5432]" in found["db-example-net"]
    for record in (lookup, connect, named):
        assert admits(learned.text, record)


def test_what_no_policy_entry_can_admit_is_noted_not_learned() -> None:
    records = [
        rec("https://ok.example.org/", verdict="allowed", reasons=[]),
        rec("https://ok.example.org/x", verdict="allowed", reasons=[], destination="ok"),
        {
            **rec("https://x.example.org/"),
            "url": "child:/usr/bin/python3 -I -c pass",
            "client": "child",
            "host": "",
            "reasons": ["unguarded-child"],
        },
        {**rec("https://x.example.org/"), "host": "evil.com\\@x", "reasons": ["ambiguous-host"]},
        rec(
            "https://upd.example.org/",
            destination="update-check",
            reasons=["payload:extra:os"],
        ),
        rec("https://upd.example.org/", destination="update-check", reasons=["interval"]),
        rec("https://upd.example.org/", destination="update-check", reasons=["sensitive:user"]),
        rec("https://m.example.org/", reasons=["outbound_none"]),
        rec("https://leak.example.org/", reasons=["undocumented", "sensitive:hostname"]),
        rec("https://blocked.example.org/", reasons=["undocumented", "expected-block"]),
    ]
    learned = draft(report(*records))
    assert learned.added == ["leak-example-org"]  # undocumented: learned, and noted
    assert learned.notes == [
        "not learned: 1 child program(s) the plugin could not guard (python3): a policy"
        " cannot admit them; name them in the ini option outbound_child_allow",
        "not learned: 1 request(s) whose host cannot be judged (ambiguous URL or unreadable"
        " address): no entry can allow them",
        "not learned: 2 request(s) to documented destination 'update-check' broke its payload"
        " contract or min_interval: extend that destination by hand, or stop the code from"
        " sending it",
        "not learned: 2 request(s) carried one of this machine's sensitive values: no policy"
        " admits that; stop the code from sending it",
        "not learned: 1 request(s) refused by their test's own outbound_only/outbound_none marker",
        "not learned: 1 request(s) a test expects to be blocked (outbound.expect_blocked)",
    ]


def test_what_the_file_admits_already_is_not_learned_again() -> None:
    existing = (
        '[[destination]]\nname = "api"\nhosts = ["*.example.org"]\nmethods = ["GET"]\n'
        "\n[[destination]]\n"
        'name = "files"\nhosts = ["files.example.net:8443"]\n'
    )
    learned = draft(
        report(
            rec("https://a.example.org/"),  # admitted by api
            rec("https://files.example.net:8443/"),  # admitted by files
            rec("https://b.example.org/", "DELETE"),  # api: not this method
            rec("https://files.example.net/"),  # files: not this port
        ),
        existing,
    )
    assert learned.added == ["b-example-org", "files-example-net"]
    found = blocks(learned.text)
    assert "# near 'api', which admits this host" in found["b-example-org"]
    assert "# near 'files', which admits this host" in found["files-example-net"]
    assert learned.text.startswith(existing)


def test_awkward_text_stays_valid_toml() -> None:
    learned = draft(
        report(
            rec(
                "https://odd.example.org/",
                "POST",
                fields=['we"ird', "back\\slash", "tab\tbed", "header:x-key"],
                nodeid='t.py::test_x[a\nb "c"]',
            )
        )
    )
    text = learned.text
    assert '# observed: 1 request in 1 test: t.py::test_x[a\\x0ab "c"]\n' in text
    assert '# fields = ["back\\\\slash", "header:x-key", "tab\\u0009bed", "we\\"ird"]' in text
    uncommented = text.replace("# [destination.payload]", "[destination.payload]").replace(
        "# fields", "fields"
    )
    payload = Policy.from_toml_text(uncommented).destinations[0].payload
    assert payload is not None
    assert payload.fields == ("back\\slash", "header:x-key", "tab\tbed", 'we"ird')


def test_crlf_files_are_extended_in_crlf() -> None:
    existing = '[[destination]]\r\nname = "a"\r\nhosts = ["a.example.org"]\r\n'
    learned = draft(report(rec("https://b.example.org/")), existing)
    assert learned.text.startswith(existing)
    assert "\n" not in learned.text.replace("\r\n", "")
    Policy.from_toml_text(learned.text)


def test_learn_into_writes_atomically_and_keeps_the_files_mode(tmp_path: Path) -> None:
    target = tmp_path / "outbound.toml"
    existing = '# mine\n[[destination]]\nname = "a"\nhosts = ["a.example.org"]\n'
    target.write_text(existing)
    target.chmod(0o600)
    link = tmp_path / "link.toml"
    link.symlink_to(target)
    learned = learn_into(link, report(rec("https://b.example.org/")))
    assert learned.added == ["b-example-org"]
    assert link.is_symlink()
    assert target.read_text().startswith(existing)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(os.listdir(tmp_path)) == ["link.toml", "outbound.toml"]  # no temporary left


def test_learn_into_refuses_a_file_it_cannot_extend(tmp_path: Path) -> None:
    target = tmp_path / "outbound.toml"
    target.write_text('[[destination]]\nname = "a"\nhosts = ["a.example.org"]\ncolour = 1\n')
    with pytest.raises(LearnError, match=r"outbound.toml:\d+: destination 'a': unknown key"):
        learn_into(target, report(rec("https://b.example.org/")))
    target.write_bytes(b"\xff\xfe")
    with pytest.raises(LearnError, match="not UTF-8 text"):
        learn_into(target, report(rec("https://b.example.org/")))


_HOSTS = st.sampled_from(
    [
        "api.example.com",
        "cdn.example.com",
        "example.com",
        "a.b.example.com",
        "x.example.co.uk",
        "y.example.co.uk",
        "solo.example.org",
        "p.github.io",
        "q.github.io",
        "203.0.113.7",
        "[2001:db8::1]",
        "localhost",
    ]
)


@st.composite
def _records(draw: st.DrawFn) -> dict[str, Any]:
    host = draw(_HOSTS)
    kind = draw(st.sampled_from(["http", "socket", "dns"]))
    nodeid = draw(st.sampled_from(["t.py::a", "t.py::b", ""]))
    if kind == "dns" and not host[0].isdigit() and not host.startswith("["):
        return rec(f"dns://{host}", client="dns", reasons=["dns"], nodeid=nodeid)
    port = draw(st.sampled_from([None, 8080, 443, 80]))
    if kind == "socket":
        return rec(f"tcp://{host}:{port or 443}", client="socket", nodeid=nodeid)
    scheme = draw(st.sampled_from(["http", "https"]))
    method = draw(st.sampled_from(["GET", "POST", "PUT"]))
    fields = draw(st.lists(st.sampled_from(["a", "b.c", "header:x-id"]), unique=True))
    url = f"{scheme}://{host}{f':{port}' if port else ''}/p"
    return rec(url, method, fields=fields, nodeid=nodeid)


@settings(max_examples=150, deadline=None)
@given(st.lists(_records(), min_size=1, max_size=12), st.booleans())
def test_the_draft_admits_every_request_it_learned(
    records: list[dict[str, Any]], uncomment: bool
) -> None:
    first = draft(report(*records))
    text = first.text
    if uncomment:  # the draft contract admits what was seen
        text = "\n".join(
            line[2:]
            if line.startswith(("# [destination.payload]", "# fields", "# required"))
            else line
            for line in text.splitlines()
        )
    for record in records:
        assert admits(text, record), record["url"]
    assert draft(report(*records), first.text).added == []
    # the same records in another order (another pytest-xdist schedule): the same file
    assert draft(report(*reversed(records))).text == first.text


def test_a_lookup_is_not_held_to_the_payload_contract() -> None:
    """A name lookup or a connection carries no fields: a contract's required fields are
    not missing there (the HTTP request is held to it)."""
    policy = (
        '[[destination]]\nname = "api"\nhosts = ["api.example.org"]\n'
        '[destination.payload]\nfields = ["a"]\nrequired = ["a"]\n'
    )
    assert admits(policy, rec("https://api.example.org/?a=1", fields=["a"]))
    assert admits(policy, rec("dns://api.example.org", client="dns", reasons=["dns"]))
