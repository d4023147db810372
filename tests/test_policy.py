"""The policy model and TOML loading (pure core): every fault names file, line and fix."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_outbound import Destination, Payload, Policy, PolicyError
from pytest_outbound._policy import parse_duration

SEED = """
[[destination]]
name = "update-check"
description = "Checking for updates (if enabled)."
when = "The Check for updates setting is on; every 8 hours."
hosts = ["octopus.com"]
schemes = ["https"]
min_interval = "8h"

[destination.payload]
fields = ["version", "installationId"]
required = ["version", "installationId"]
[destination.payload.match]
installationId = "uuid"

[[destination]]
name = "nuget"
hosts = ["*.nuget.org", "api.nuget.org"]
ports = [443]
methods = ["get"]
paths = ["/v3/**"]
"""


def test_spec_example_loads() -> None:
    policy = Policy.from_toml_text(SEED, "outbound.toml")
    update, nuget = policy.destinations
    assert update.name == "update-check"
    assert update.hosts == ("octopus.com",)
    assert update.schemes == ("https",)
    assert update.min_interval_seconds == 8 * 3600
    assert update.payload == Payload(
        fields=("version", "installationId"),
        required=("version", "installationId"),
        match={"installationId": "uuid"},
    )
    assert update.source == "outbound.toml:2"
    assert nuget.source == "outbound.toml:16"
    assert nuget.methods == ("GET",)
    assert nuget.ports == (443,)
    assert policy.get("nuget") is nuget
    assert policy.get("missing") is None


def test_from_toml_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "outbound.toml"
    path.write_text(SEED, encoding="utf-8")
    policy = Policy.from_toml(path)
    assert [d.name for d in policy] == ["update-check", "nuget"]
    assert policy.destinations[1].source == f"{path}:16"


def test_a_file_read_again_is_parsed_once_and_a_changed_one_anew(tmp_path: Path) -> None:
    """A run reads its policy files twice (the early guard, then configure): the same text
    is parsed once; a text changed in between (a conftest writing it) is read anew."""
    path = tmp_path / "outbound.toml"
    path.write_text(SEED, encoding="utf-8")
    first = Policy.from_toml(path)
    assert Policy.from_toml(path) is first
    assert Policy.from_toml(path, "other.toml") is not first  # another source: its own lines
    path.write_text(SEED.replace('name = "nuget"', 'name = "pypi"'), encoding="utf-8")
    changed = Policy.from_toml(path)
    assert [d.name for d in changed] == ["update-check", "pypi"]
    path.write_text("[[destination]\n", encoding="utf-8")
    with pytest.raises(PolicyError, match="invalid TOML"):  # a fault is never remembered
        Policy.from_toml(path)
    with pytest.raises(PolicyError, match="invalid TOML"):
        Policy.from_toml(path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[[destination]\nname = 'x'", "outbound.toml:1: invalid TOML"),
        (
            "[[destination]]\nname = 'x'\n",
            "outbound.toml:1: destination 'x': missing required key 'hosts' (e.g. hosts =",
        ),
        (
            "[[destination]]\nname = 'x'\nhsts = ['a.com']\n",
            "outbound.toml:3: destination 'x': unknown key 'hsts'; did you mean 'hosts'?",
        ),
        (
            "\n\n[[destination]]\nname = 'x'\nhosts = ['a.com']\n[[destination]]\nname = 'x'\n"
            "hosts = ['b.com']\n",
            "outbound.toml:7: duplicate destination name 'x' (first defined at outbound.toml:3)",
        ),
        (
            "[[destination]]\nname = 'x'\nhosts = ['a b.com']\n",
            "outbound.toml:3: destination 'x': ",
        ),
        (
            "[[destination]]\nname = 'x'\nhosts = ['a.com']\nmin_interval = '8 hours'\n",
            "outbound.toml:4: destination 'x': bad duration '8 hours'",
        ),
        (
            "[[destination]]\nname = 'x'\nhosts = ['a.com']\n[destination.payload.match]\n"
            "id = 'uuid4'\n",
            "outbound.toml:5: destination 'x': payload: match.id = 'uuid4' is not a named format"
            " (did you mean 'uuid'?); to match that literal text write the regex '^uuid4$'",
        ),
        (
            "[[destination]]\nname = 'x'\nhosts = 'a.com'\n",
            "outbound.toml:3: destination 'x': hosts must be a list of strings, e.g. hosts ="
            " ['a.com']",
        ),
        (
            "[[destination]]\nname = 'x'\nhosts = ['a.com']\nports = [0]\n",
            "outbound.toml:4: destination 'x': ports: 0 is not a port number",
        ),
        (
            "[[destination]]\nname = 'x'\nhosts = ['a.com']\n[destination.payload]\n"
            "feilds = ['a']\n",
            "outbound.toml:5: destination 'x': unknown key 'feilds' in [destination.payload];"
            " did you mean 'fields'?",
        ),
        ("[destinations]\n", "outbound.toml:1: unknown top-level key 'destinations'"),
        (
            "[[destination]]\nname = 'x'\nhosts = ['a.com']\n[destination.payload]\n"
            "fields = ['a']\nrequired = ['b']\n",
            "outbound.toml:6: destination 'x': payload: 'b' is required or matched but not listed",
        ),
    ],
    ids=[
        "bad-toml",
        "missing-hosts",
        "unknown-key",
        "duplicate-name",
        "bad-pattern",
        "bad-duration",
        "unknown-format",
        "hosts-not-list",
        "bad-port",
        "unknown-payload-key",
        "unknown-top-level",
        "required-not-in-fields",
    ],
)
def test_malformed_policy_names_file_line_and_fault(text: str, expected: str) -> None:
    with pytest.raises(PolicyError) as info:
        Policy.from_toml_text(text, "outbound.toml")
    assert str(info.value).startswith(expected), str(info.value)
    assert "\n" not in str(info.value)


def test_unreadable_file_is_a_policy_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read policy file"):
        Policy.from_toml(tmp_path / "missing.toml")


def test_destination_accepts_lists_and_validates_in_python() -> None:
    dest = Destination(name="nuget", hosts=["*.nuget.org"], schemes=["HTTPS"])  # type: ignore[arg-type]
    assert dest.hosts == ("*.nuget.org",)
    assert dest.schemes == ("https",)
    with pytest.raises(PolicyError, match="destination 'bad': hosts must name at least one"):
        Destination(name="bad", hosts=())
    with pytest.raises(PolicyError, match="name must be a non-empty identifier"):
        Destination(name="has space", hosts=("a.com",))


def test_merge_keeps_order_and_refuses_duplicate_names() -> None:
    a = Policy((Destination("a", ("a.com",)),), ("x.com",))
    b = Policy((Destination("b", ("b.com",), source="conftest.py"),), ("x.com", "y.com"))
    merged = a.merge(b)
    assert [d.name for d in merged] == ["a", "b"]
    assert merged.allowed == ("x.com", "y.com")
    assert a.merge(Policy()) is a
    with pytest.raises(PolicyError, match="duplicate destination name 'a'"):
        a.merge(Policy((Destination("a", ("other.com",), source="conftest.py"),)))


@given(st.integers(min_value=0, max_value=10**6), st.sampled_from(["s", "m", "h", "d"]))
def test_durations_scale_by_unit(n: int, unit: str) -> None:
    factor = {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]
    assert parse_duration(f"{n}{unit}") == n * factor


@pytest.mark.parametrize("text", ["", "8", "h", "8 hours", "-1h", "1.5.2h"])
def test_bad_durations_say_how_to_write_one(text: str) -> None:
    with pytest.raises(ValueError, match=r'e\.g\. "8h"'):
        parse_duration(text)
