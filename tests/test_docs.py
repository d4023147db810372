"""The generated documentation page (pure core), checked against the seed vendor page."""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_outbound import Destination, Payload, Policy
from pytest_outbound._docs import (
    OTHER_GROUP,
    Evidence,
    docs_diff,
    evidence_from_records,
    field_label,
    interval_words,
    payload_words,
    render_docs,
)
from pytest_outbound._record import OutboundRequest, build_request

UUID = "3f2b8c1e-9a4d-4e7b-8f1a-2c3d4e5f6a7b"

UPDATE = Destination(
    name="update-check",
    hosts=("octopus.com",),
    description="Checking for updates (if enabled).",
    when="The Check for updates setting is on.",
    schemes=("https",),
    min_interval="8h",
    group="Outbound requests by Octopus",
    payload=Payload(
        fields=("version", "installationId"),
        required=("version", "installationId"),
        match={"installationId": "uuid"},
    ),
)
NUGET = Destination(
    name="nuget",
    hosts=("api.nuget.org", "*.nuget.org"),
    description="Downloading packages from NuGet feeds.",
    ports=(443,),
    methods=("GET",),
    paths=("/v3/**",),
)
CRL = Destination(
    name="crl",
    hosts=("crl.microsoft.com",),
    description="Certificate revocation list checking.",
    group="Outbound requests by Tentacle",
    payload=Payload(fields=()),
)


def record(dest: str | None, nodeid: str, url: str) -> OutboundRequest:
    r = build_request("GET", url, client="requests")
    r.destination, r.nodeid, r.phase = dest, nodeid, "call"
    return r


CHECK_URL = f"https://octopus.com/api/check?version=2024.1&installationId={UUID}"


def update_records() -> list[OutboundRequest]:
    return [
        record("update-check", "tests/test_b.py::test_one", CHECK_URL),
        record("update-check", "tests/test_a.py::test_two", CHECK_URL),
        record("update-check", "tests/test_a.py::test_two", CHECK_URL + "&extra=1"),
        record("nuget", "tests/test_a.py::test_two", "https://api.nuget.org/v3/index.json"),
        record("update-check", "tests/test_c.py::test_three", CHECK_URL),
        record(None, "tests/test_c.py::test_three", "https://evil.example/"),
        record("update-check", "", CHECK_URL),
    ]


def sections(page: str, level: str) -> dict[str, str]:
    """Heading text -> the text under it, for headings of one level ("##" or "###")."""
    out: dict[str, str] = {}
    parts = re.split(rf"^{level} (.+)$", page, flags=re.MULTILINE)
    for title, body in zip(parts[1::2], parts[2::2], strict=True):
        out[title] = body.split("\n## ")[0]
    return out


# -- the page's structure --------------------------------------------------------------------


def test_page_layout() -> None:
    page = render_docs([UPDATE, NUGET, CRL])
    lines = page.splitlines()
    assert lines[0] == "# Outbound requests"
    assert not page.startswith("---")  # no front matter
    assert page.endswith("\n")
    assert not page.endswith("\n\n")
    assert all(line == line.rstrip() for line in lines)
    assert "This page describes every outbound network request" in page
    assert [line for line in lines if line.startswith("## ")] == [
        "## Outbound requests by Octopus",
        "## Outbound requests by Tentacle",
        f"## {OTHER_GROUP}",
    ]
    assert [line for line in lines if line.startswith("### ")] == [
        "### update-check",
        "### crl",
        "### nuget",
    ]


def test_title_option() -> None:
    assert render_docs([UPDATE], title="Egress").startswith("# Egress\n")


def test_groups_in_first_appearance_order_and_explicit_other_merges() -> None:
    a = Destination(name="a", hosts=("a.example",), group="Zeta")
    b = Destination(name="b", hosts=("b.example",))
    c = Destination(name="c", hosts=("c.example",), group="Alpha")
    d = Destination(name="d", hosts=("d.example",), group="Zeta")
    e = Destination(name="e", hosts=("e.example",), group=OTHER_GROUP)
    page = render_docs([a, b, c, d, e])
    groups = sections(page, "##")
    assert list(groups) == ["Zeta", "Alpha", OTHER_GROUP]
    assert re.findall(r"^### (\w)$", groups["Zeta"], re.MULTILINE) == ["a", "d"]
    assert re.findall(r"^### (\w)$", groups[OTHER_GROUP], re.MULTILINE) == ["b", "e"]


def test_group_overview_lists_every_destination() -> None:
    body = sections(render_docs([UPDATE, NUGET, CRL]), "##")[OTHER_GROUP]
    assert (
        "Outbound requests are made only for:\n\n- Downloading packages from NuGet feeds.\n" in body
    )
    nameless = render_docs([Destination(name="bare", hosts=("x.example",))])
    assert "- `bare`\n" in nameless


def test_no_destinations() -> None:
    page = render_docs([])
    assert "No outbound requests are documented." in page
    assert "## " not in page


def test_where_when_and_interval() -> None:
    body = sections(render_docs([UPDATE, NUGET]), "###")
    assert "- **Where:** `octopus.com` over HTTPS.\n" in body["update-check"]
    assert "- **When:** The Check for updates setting is on.\n" in body["update-check"]
    assert "- **How often:** At most once every 8 hours.\n" in body["update-check"]
    assert (
        "- **Where:** `api.nuget.org` or `*.nuget.org` on port 443 (method GET; path `/v3/**`).\n"
    ) in body["nuget"]
    assert "When:" not in body["nuget"]
    assert "How often:" not in body["nuget"]


def test_where_with_several_schemes_ports_methods_paths() -> None:
    dest = Destination(
        name="x",
        hosts=("a.example", "b.example", "c.example"),
        schemes=("http", "https"),
        ports=(80, 443),
        methods=("GET", "POST"),
        paths=("/a", "/b/{id}"),
    )
    assert (
        "- **Where:** `a.example`, `b.example` or `c.example` over HTTP or HTTPS on ports 80 or"
        " 443 (methods GET, POST; paths `/a`, `/b/{id}`).\n"
    ) in render_docs([dest])


def test_multiline_author_text_stays_on_one_line() -> None:
    dest = Destination(
        name="x", hosts=("a.example",), description="One\n  sentence.", when="Only\nsometimes."
    )
    page = render_docs([dest])
    assert "\nOne sentence.\n" in page
    assert "- **When:** Only sometimes.\n" in page


# -- payload in words ---------------------------------------------------------------------------


def test_payload_words_for_the_update_check() -> None:
    assert payload_words(UPDATE.payload) == (
        "This request includes: the version (`version`, required); the installation ID"
        " (`installationId`, required, a UUID). It carries nothing else."
    )


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        (None, "It may carry any fields."),
        (Payload(), "It may carry any fields."),
        (Payload(fields=()), "It carries no fields."),
        (
            Payload(fields=(), opaque_body=True),
            "It carries no fields. It may also carry a body that is not made of fields.",
        ),
        (
            Payload(required=("version",), match={"os": "^(linux|windows)$", "n": "int"}),
            "It may carry any fields. Checked: the version (`version`, required); the n (`n`,"
            " an integer); the OS (`os`, matching `^(linux|windows)$`).",
        ),
        (
            Payload(
                fields=("header:x-api-key", "cookie:sid", "items[].id", "since"),
                required=("header:x-api-key",),
                match={"since": "iso8601"},
            ),
            "This request includes: the `x-api-key` header (`header:x-api-key`, required);"
            " the `sid` cookie (`cookie:sid`); `items[].id`; the since (`since`, an ISO 8601"
            " date and time). It carries nothing else.",
        ),
        (
            Payload(fields=("version",), match={"version": "semver"}),
            "This request includes: the version (`version`, a version number such as 1.2.3)."
            " It carries nothing else.",
        ),
    ],
)
def test_payload_words(payload: Payload | None, words: str) -> None:
    assert payload_words(payload) == words


@pytest.mark.parametrize(
    ("name", "label"),
    [
        ("version", "the version"),
        ("installationId", "the installation ID"),
        ("installation_id", "the installation ID"),
        ("osVersion", "the OS version"),
        ("HTTPProxyURL", "the HTTP proxy URL"),
        ("header:x-trace", "the `x-trace` header"),
        ("cookie:sid", "the `sid` cookie"),
        ("a.b", ""),
        ("tags[]", ""),
    ],
)
def test_field_labels(name: str, label: str) -> None:
    assert field_label(name) == label


@pytest.mark.parametrize(
    ("duration", "words"),
    [
        ("8h", "at most once every 8 hours"),
        ("1h", "at most once every hour"),
        ("30m", "at most once every 30 minutes"),
        ("90s", "at most once every 90 seconds"),
        ("1.5h", "at most once every 90 minutes"),
        ("1d", "at most once every day"),
        ("2d", "at most once every 2 days"),
        ("48h", "at most once every 2 days"),
        ("500ms", "at most once every 500 milliseconds"),
        ("1s", "at most once every second"),
    ],
)
def test_interval_words(duration: str, words: str) -> None:
    assert interval_words(duration) == words


# -- evidence -----------------------------------------------------------------------------------


def test_evidence_from_records() -> None:
    evidence = evidence_from_records(update_records())
    assert list(evidence) == ["nuget", "update-check"]
    assert evidence["update-check"] == Evidence(
        tests=(
            "tests/test_a.py::test_two",
            "tests/test_b.py::test_one",
            "tests/test_c.py::test_three",
        ),
        count=5,
        fields=("extra", "installationId", "version"),
    )
    assert evidence["nuget"] == Evidence(tests=("tests/test_a.py::test_two",), count=1, fields=())


def test_evidence_does_not_depend_on_record_order() -> None:
    recs = update_records()
    expected = evidence_from_records(recs)
    for seed in range(5):
        shuffled = recs[:]
        random.Random(seed).shuffle(shuffled)
        assert evidence_from_records(shuffled) == expected


def test_evidence_lines() -> None:
    page = render_docs([UPDATE, NUGET, CRL], evidence_from_records(update_records()))
    body = sections(page, "###")
    assert (
        "- **Evidence:** Exercised by 3 tests, 5 requests; fields observed: `version`,"
        " `installationId`, `extra`.\n"
    ) in body["update-check"]
    assert (
        "- **Tests:** `tests/test_a.py::test_two`, `tests/test_b.py::test_one`,"
        " `tests/test_c.py::test_three`\n"
    ) in body["update-check"]
    assert "- **Evidence:** Exercised by 1 test, 1 request; no fields observed.\n" in body["nuget"]
    assert "- **Evidence:** No test exercised it.\n" in body["crl"]
    assert "Tests:" not in body["crl"]


def test_no_evidence_no_evidence_lines() -> None:
    page = render_docs([UPDATE, NUGET])
    assert "Evidence" not in page
    assert "Tests:" not in page


def test_evidence_outside_any_test() -> None:
    page = render_docs([UPDATE], {"update-check": Evidence(tests=(), count=2, fields=())})
    assert "- **Evidence:** Exercised outside any test, 2 requests; no fields observed.\n" in page


def test_many_tests_are_collapsed() -> None:
    tests = tuple(f"tests/test_x.py::test_{i:02d}" for i in range(12))
    page = render_docs([UPDATE], {"update-check": Evidence(tests=tests, count=12, fields=())})
    assert "- **Evidence:** Exercised by 12 tests, 12 requests" in page
    assert "Tests:**" not in page
    block = page[page.index("<details>") : page.index("</details>")]
    assert "<summary>The 12 tests that exercised update-check</summary>" in block
    assert block.count("\n- `tests/test_x.py::test_") == 12


# -- stability ----------------------------------------------------------------------------------


def test_byte_stable() -> None:
    dests = [UPDATE, NUGET, CRL]
    evidence = evidence_from_records(update_records())
    reordered = dict(reversed(list(evidence.items())))
    first = render_docs(dests, evidence)
    assert render_docs(dests, evidence) == first
    assert render_docs(dests, reordered) == first
    assert render_docs(list(dests), evidence_from_records(update_records()[::-1])) == first


def test_match_table_order_does_not_matter() -> None:
    def dest(match: dict[str, str]) -> Destination:
        return Destination(name="x", hosts=("a.example",), payload=Payload(match=match))

    forward = render_docs([dest({"a": "uuid", "b": "int"})])
    assert render_docs([dest({"b": "int", "a": "uuid"})]) == forward
    assert "Checked: the a (`a`, a UUID); the b (`b`, an integer)." in forward


def test_byte_stable_across_processes(tmp_path: Path) -> None:
    policy = tmp_path / "outbound.toml"
    policy.write_text(SEED_POLICY, encoding="utf-8")
    outputs = {
        subprocess.run(
            [sys.executable, "-m", "pytest_outbound", "docs", str(policy)],
            capture_output=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
        ).stdout
        for seed in (0, 1, 2)
    }
    assert len(outputs) == 1


# -- docs_diff ----------------------------------------------------------------------------------


def test_docs_diff() -> None:
    old = render_docs([UPDATE])
    new = render_docs([UPDATE, NUGET])
    assert docs_diff(new, new, "docs/outbound.md") == ""
    diff = docs_diff(new, old, "docs/outbound.md")
    assert diff.startswith("--- docs/outbound.md (current)\n+++ docs/outbound.md (generated")
    assert "+### nuget\n" in diff
    assert not any(line.startswith("-### ") for line in diff.splitlines())


def test_docs_diff_marks_a_missing_final_newline() -> None:
    diff = docs_diff("a\nb\n", "a\nb", "p.md")
    assert "-b\n\\ No newline at end of file\n+b\n" in diff
    assert diff.endswith("\n")


# -- the seed page ------------------------------------------------------------------------------

# The outbound requests the seed page (the vendor's "Outbound requests" page this project grew
# from) lists, as it writes them: (section, list item).
SEED_ITEMS = [
    (
        "Outbound requests by Tentacle",
        "[Certificate revocation list checking](http://en.wikipedia.org/wiki/Revocation_list),"
        " which is a security feature of .NET.",
    ),
    (
        "Outbound requests by Tentacle",
        "[Automatic root certificate updates](https://help.octopus.com/t/crl-ocsp-lookups-and-"
        "akamai-url-hits-from-octopus-and-tentacles/4854/3), again triggered by .NET.",
    ),
    (
        "Outbound requests by Tentacle",
        "NuGet package downloads (only when using the **Tentacle downloads directly from NuGet**"
        " option).",
    ),
    (
        "Outbound requests by Tentacle",
        "Connections back to the Octopus Server (only when Tentacle is configured in [polling"
        " mode](/docs/infrastructure/deployment-targets/windows-targets/tentacle-communication.md"
        "#polling-tentacles)).",
    ),
    (
        "Outbound requests by Octopus",
        "Pushing packages and deployment instructions, and checking the health, of Tentacles.",
    ),
    (
        "Outbound requests by Octopus",
        "Downloading packages from the [NuGet feeds](/docs/packaging-applications/package-"
        "repositories/index.md) that you configure.",
    ),
    (
        "Outbound requests by Octopus",
        "Windows Azure traffic (only when deploying to an Azure deployment target).",
    ),
    ("Outbound requests by Octopus", "Checking for updates (if enabled)."),
    (
        "Outbound requests by Octopus",
        "Checking for updated [community contribute step templates](/docs/projects/community-"
        "step-templates.md) (if enabled).",
    ),
]
# Hosts the seed page names, and the destination that goes there.
SEED_HOSTS = {"update-check": "octopus.com", "step-templates": "library.octopus.com"}

SEED_POLICY = """\
[[destination]]
name = "crl-check"
group = "Outbound requests by Tentacle"
description = "[Certificate revocation list checking](http://en.wikipedia.org/wiki/Revocation_list), which is a security feature of .NET."
when = "When .NET validates a certificate and its revocation list is not cached."
hosts = ["crl.microsoft.com", "*.digicert.com"]
schemes = ["http"]
methods = ["GET"]
[destination.payload]
fields = []

[[destination]]
name = "root-certificates"
group = "Outbound requests by Tentacle"
description = "Automatic root certificate updates, again triggered by .NET."
when = "When .NET refreshes its trusted root certificates."
hosts = ["ctldl.windowsupdate.com"]
methods = ["GET"]

[[destination]]
name = "tentacle-nuget"
group = "Outbound requests by Tentacle"
description = "NuGet package downloads."
when = "Only when using the **Tentacle downloads directly from NuGet** option."
hosts = ["api.nuget.org", "*.nuget.org"]
schemes = ["https"]

[[destination]]
name = "polling"
group = "Outbound requests by Tentacle"
description = "Connections back to the Octopus Server."
when = "Only when Tentacle is configured in polling mode."
hosts = ["octopus.example.com"]
ports = [10943]

[[destination]]
name = "tentacles"
group = "Outbound requests by Octopus"
description = "Pushing packages and deployment instructions, and checking the health, of Tentacles."
when = "When deploying to, or checking the health of, a listening Tentacle."
hosts = ["10.0.0.0/8"]
ports = [10933]

[[destination]]
name = "nuget-feeds"
group = "Outbound requests by Octopus"
description = "Downloading packages from the NuGet feeds that you configure."
when = "When a deployment needs a package from a configured feed."
hosts = ["api.nuget.org", "*.nuget.org", "*.myget.org"]
schemes = ["https"]

[[destination]]
name = "azure"
group = "Outbound requests by Octopus"
description = "Windows Azure traffic."
when = "Only when deploying to an Azure deployment target."
hosts = ["*.azure.com", "*.windows.net"]
schemes = ["https"]

[[destination]]
name = "update-check"
group = "Outbound requests by Octopus"
description = "Checking for updates (if enabled)."
when = 'When the "Check for updates" option is enabled (Configuration, Settings, Updates); it is on by default.'
hosts = ["octopus.com"]
schemes = ["https"]
min_interval = "8h"
[destination.payload]
fields = ["version", "installationId"]
required = ["version", "installationId"]
[destination.payload.match]
version = "semver"
installationId = "uuid"

[[destination]]
name = "step-templates"
group = "Outbound requests by Octopus"
description = "Checking for updated community contribute step templates (if enabled)."
when = "When the community step template integration is enabled."
hosts = ["library.octopus.com"]
schemes = ["https"]
"""


def _plain(markdown: str) -> str:
    """Markdown as the reader sees it: link text without targets, no bold, one space."""
    text = re.sub(r"\[([^\]]+)\]\([^)]*\)", r"\1", markdown)
    return " ".join(text.replace("**", "").split())


def _seed_item(item: str) -> tuple[str, str]:
    """A seed list item -> (what, when): "X (only when Y)." -> ("X.", "only when Y")."""
    text = _plain(item)
    m = re.fullmatch(r"(.*?) \((only when .*)\)\.", text)
    return (f"{m.group(1)}.", m.group(2)) if m else (text, "")


@pytest.fixture(scope="module")
def seed_page(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The page ``python -m pytest_outbound docs`` renders from the seed policy."""
    root = tmp_path_factory.mktemp("seed")
    (root / "outbound.toml").write_text(SEED_POLICY, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "pytest_outbound", "docs", "outbound.toml", "-o", "outbound.md"],
        cwd=root,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "wrote outbound.md: 9 destinations\n"
    return (root / "outbound.md").read_text(encoding="utf-8")


def test_seed_policy_is_valid() -> None:
    assert len(Policy.from_toml_text(SEED_POLICY, "outbound.toml").destinations) == 9


def test_seed_page_has_the_seed_sections(seed_page: str) -> None:
    assert seed_page.startswith("# Outbound requests\n")
    assert list(sections(seed_page, "##")) == [
        "Outbound requests by Tentacle",
        "Outbound requests by Octopus",
    ]


@pytest.mark.parametrize(
    ("group", "item"), SEED_ITEMS, ids=[_seed_item(i)[0] for _, i in SEED_ITEMS]
)
def test_seed_page_covers_every_outbound_request_of_the_seed(
    seed_page: str, group: str, item: str
) -> None:
    what, when = _seed_item(item)
    groups = {title: _plain(body) for title, body in sections(seed_page, "##").items()}
    assert what in groups[group], f"{what!r} is not listed under {group!r}"
    if when:
        assert f"When: {when[0].upper()}{when[1:]}." in groups[group]
    # each item is a destination section of its own with a Where line and a When line
    details = {
        _plain(body).split(" - Where:")[0]: body for body in sections(seed_page, "###").values()
    }
    assert what in details
    assert "- **Where:** `" in details[what]
    assert "- **When:** " in details[what]


@pytest.mark.parametrize(("name", "host"), sorted(SEED_HOSTS.items()))
def test_seed_page_names_the_hosts_the_seed_names(seed_page: str, name: str, host: str) -> None:
    body = sections(seed_page, "###")[name]
    assert f"- **Where:** `{host}` over HTTPS." in body


def test_seed_page_says_what_the_update_check_sends(seed_page: str) -> None:
    body = sections(seed_page, "###")["update-check"]
    assert "Checking for updates (if enabled)." in body
    assert 'When the "Check for updates" option is enabled' in body
    assert "- **Where:** `octopus.com` over HTTPS." in body  # "a HTTPS request to octopus.com"
    assert "- **How often:** At most once every 8 hours." in body
    sends = next(line for line in body.splitlines() if line.startswith("- **What it sends:**"))
    # "This request includes: the current version number; a unique installation ID." and
    # nothing else: the seed's promise, now derived from the payload contract.
    assert sends == (
        "- **What it sends:** This request includes: the version (`version`, required, a version"
        " number such as 1.2.3); the installation ID (`installationId`, required, a UUID)."
        " It carries nothing else."
    )
    for words in ("version number", "installation ID", "UUID", "nothing else"):
        assert words in sends


def test_seed_page_does_not_document_more_than_the_seed(seed_page: str) -> None:
    listed = re.findall(r"^### (.+)$", seed_page, re.MULTILINE)
    assert len(listed) == len(SEED_ITEMS)
