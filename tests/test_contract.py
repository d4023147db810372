"""Payload contracts (SPEC §5.2): breaches, named formats, and the diff a person reads."""

from __future__ import annotations

import datetime
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_outbound._contract import (
    Breach,
    breach_reason,
    check_payload,
    format_contract_diff,
    matches_format,
    shorten,
)
from pytest_outbound._policy import Payload
from pytest_outbound._record import Fields

UUID = "c0ffee00-1234-4abc-8def-0123456789ab"

UPDATE_CHECK = Payload(
    fields=("version", "installationId"),
    required=("version", "installationId"),
    match={"installationId": "uuid", "version": "semver"},
)


def fields(opaque: bool = False, **values: str | tuple[str, ...]) -> Fields:
    return Fields(
        {k: (v,) if isinstance(v, str) else v for k, v in values.items()},
        opaque=opaque,
    )


# --- breaches ------------------------------------------------------------------------------------


def test_a_conforming_request_has_no_breach() -> None:
    assert check_payload(UPDATE_CHECK, fields(version="2024.1.3", installationId=UUID)) == []


def test_extra_fields_sorted() -> None:
    f = fields(version="1.0.0", installationId=UUID, os="linux", hostname="build-01")
    assert check_payload(UPDATE_CHECK, f) == [
        Breach("extra", "hostname", "build-01"),
        Breach("extra", "os", "linux"),
    ]


def test_extra_field_without_value() -> None:
    f = fields(version="1.0.0", installationId=UUID, env=())
    assert check_payload(UPDATE_CHECK, f) == [Breach("extra", "env", "")]


def test_missing_fields_in_required_order() -> None:
    payload = Payload(fields=("b", "a", "c"), required=("b", "a", "c"))
    assert check_payload(payload, fields(c="1")) == [Breach("missing", "b"), Breach("missing", "a")]


def test_a_required_field_without_values_is_present() -> None:
    """An empty JSON object or list is a field with no values: sent, so not missing."""
    payload = Payload(required=("env", "tags[]"))
    assert check_payload(payload, fields(env=(), **{"tags[]": ()})) == []
    assert check_payload(payload, fields()) == [
        Breach("missing", "env"),
        Breach("missing", "tags[]"),
    ]


def test_malformed_reports_the_first_bad_value_of_each_field() -> None:
    f = fields(version=("1.0.0", "one", "two"), installationId="abc")
    assert check_payload(UPDATE_CHECK, f) == [
        Breach("malformed", "installationId", "abc", "uuid"),
        Breach("malformed", "version", "one", "semver"),
    ]


def test_match_with_a_regex() -> None:
    payload = Payload(fields=("channel",), match={"channel": "stable|beta"})
    assert check_payload(payload, fields(channel="beta")) == []
    assert check_payload(payload, fields(channel="betamax")) == [
        Breach("malformed", "channel", "betamax", "stable|beta")
    ]


def test_opaque_body_breaches_unless_admitted() -> None:
    assert check_payload(Payload(), fields(opaque=True)) == [Breach("opaque", "")]
    assert check_payload(Payload(opaque_body=True), fields(opaque=True)) == []


def test_no_field_list_admits_any_field() -> None:
    payload = Payload(required=("v",), match={"v": "int"})
    assert check_payload(payload, fields(v="3", anything="x", other="y")) == []


def test_breach_order_extra_missing_malformed_opaque() -> None:
    f = fields(opaque=True, version="x", zzz="1", aaa="2")
    assert [breach_reason(b) for b in check_payload(UPDATE_CHECK, f)] == [
        "payload:extra:aaa",
        "payload:extra:zzz",
        "payload:missing:installationId",
        "payload:malformed:version",
        "payload:opaque",
    ]


def test_breach_values_are_shortened() -> None:
    long = "x" * 100
    [breach] = check_payload(Payload(fields=()), fields(secret=long))
    assert breach.value == "x" * 39 + "…"


def test_breach_reason() -> None:
    assert breach_reason(Breach("extra", "hostname", "b")) == "payload:extra:hostname"
    assert breach_reason(Breach("missing", "version")) == "payload:missing:version"
    assert breach_reason(Breach("malformed", "id", "x", "uuid")) == "payload:malformed:id"
    assert breach_reason(Breach("opaque", "")) == "payload:opaque"


def test_shorten() -> None:
    assert shorten("short") == "short"
    assert shorten("x" * 40) == "x" * 40
    assert shorten("x" * 41) == "x" * 39 + "…"
    assert shorten("abcdef", limit=4) == "abc…"
    assert len(shorten("y" * 1000, limit=10)) == 10


# --- named formats -------------------------------------------------------------------------------

GOOD = {
    "uuid": [UUID, UUID.upper(), "00000000-0000-0000-0000-000000000000"],
    "semver": [
        "0.0.0",
        "1.2.3",
        "10.20.30",
        "2024.1.3",
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-0.3.7",
        "1.0.0-x.7.z.92",
        "1.0.0-x-y-z.--",
        "1.0.0-alpha+001",
        "1.0.0+20130313144700",
        "1.0.0-beta+exp.sha.5114f85",
        "1.0.0+21AF26D3----117B344092BD",
        "1.0.0-0A.is.legal",
    ],
    "int": ["0", "42", "-7", "+7", "007", "123456789012345678901234567890"],
    "iso8601": [
        "2024-02-29",
        "2024-01-31T12:30",
        "2024-01-31T12:30:59",
        "2024-01-31T12:30:59Z",
        "2024-01-31T12:30:59.123456+02:00",
        "2024-01-31T12:30:59,5-0530",
        "2024-01-31t23:59:60z",
        "2024-01-31T00:00:00+01",
    ],
}
BAD = {
    "uuid": [
        "",
        "c0ffee",
        UUID.replace("-", ""),
        "{" + UUID + "}",
        UUID + "0",
        UUID.replace("c", "g"),
        UUID + "\n",
    ],
    "semver": [
        "",
        "1",
        "1.2",
        "1.2.3.4",
        "v1.2.3",
        "01.2.3",
        "1.02.3",
        "1.2.3-01",
        "1.2.3-",
        "1.2.3+",
        "1.2.3-alpha..1",
        "1.2.3+build..1",
        "1.2.3-beta_1",
        " 1.2.3",
        "1.2.3\n",
        "\u0661.\u0662.\u0663",  # Arabic-Indic digits
    ],
    "int": ["", "-", "1.0", "1e3", " 1", "1 ", "0x10", "\u0661\u0662", "1\n"],
    "iso8601": [
        "",
        "2024",
        "2024-1-1",
        "2023-02-29",
        "2024-13-01",
        "2024-01-32",
        "2024-01-31T24:00",
        "2024-01-31T12:60",
        "2024-01-31T12:30:61",
        "2024-01-31T12",
        "2024-01-31 12:30",
        "2024-01-31T12:30+25:00",
        "2024-01-31T12:30Z+01:00",
        "yesterday",
    ],
}


@pytest.mark.parametrize(("spec", "value"), [(s, v) for s, vs in GOOD.items() for v in vs])
def test_named_format_accepts(spec: str, value: str) -> None:
    assert matches_format(spec, value)


@pytest.mark.parametrize(("spec", "value"), [(s, v) for s, vs in BAD.items() for v in vs])
def test_named_format_rejects(spec: str, value: str) -> None:
    assert not matches_format(spec, value)


def test_regex_format_must_match_the_whole_value() -> None:
    assert matches_format(r"[a-z]+", "abc")
    assert not matches_format(r"[a-z]+", "abc1")
    assert not matches_format(r"b", "abc")
    assert matches_format(r"v\d+(\.\d+)*", "v1.2")


@given(st.builds(uuid.uuid4))
def test_every_uuid4_is_a_uuid(value: uuid.UUID) -> None:
    assert matches_format("uuid", str(value))
    assert not matches_format("int", str(value))


@given(st.uuids())
def test_every_uuid_text_is_a_uuid(value: uuid.UUID) -> None:
    assert matches_format("uuid", str(value))


numbers = st.integers(min_value=0, max_value=10**12).map(str)
alnum_ids = st.text("abcXYZ019-", min_size=1, max_size=6).filter(
    lambda s: not s.isdigit() or s == "0" or not s.startswith("0")
)
pre_ids = numbers | alnum_ids
build_ids = st.text("abcXYZ019-", min_size=1, max_size=6)


@st.composite
def semvers(draw: st.DrawFn) -> str:
    core = ".".join(draw(numbers) for _ in range(3))
    pre = draw(st.lists(pre_ids, max_size=3))
    build = draw(st.lists(build_ids, max_size=3))
    return core + ("-" + ".".join(pre) if pre else "") + ("+" + ".".join(build) if build else "")


@given(semvers())
def test_generated_semvers_match(value: str) -> None:
    assert matches_format("semver", value)


@given(semvers())
def test_semver_with_a_leading_zero_in_the_core_does_not_match(value: str) -> None:
    assert not matches_format("semver", "0" + value)


@given(st.integers())
def test_every_integer_is_an_int(value: int) -> None:
    assert matches_format("int", str(value))


def whole_minute_offset(value: datetime.datetime) -> bool:
    offset = value.utcoffset()
    return offset is None or offset % datetime.timedelta(minutes=1) == datetime.timedelta(0)


@given(st.datetimes(timezones=st.none() | st.timezones()).filter(whole_minute_offset))
def test_every_isoformat_datetime_is_iso8601(value: datetime.datetime) -> None:
    assert matches_format("iso8601", value.isoformat())
    assert matches_format("iso8601", value.date().isoformat())


# --- the diff ------------------------------------------------------------------------------------


def test_diff_of_a_request_with_every_kind_of_breach() -> None:
    payload = Payload(
        fields=("version", "installationId", "channel"),
        required=("version", "installationId"),
        match={"installationId": "uuid", "channel": "stable|beta"},
    )
    f = fields(
        opaque=True,
        version="2024.1.3",
        channel="nightly-" + "x" * 50,
        hostname="build-01",
        os=("linux", "mac"),
    )
    breaches = check_payload(payload, f)
    assert format_contract_diff(payload, f, breaches, name="update-check").splitlines() == [
        "payload contract of 'update-check':",
        "    version         = '2024.1.3'",
        "  - installationId" + " " * 48 + "required, missing",
        "  ! channel         = 'nightly-" + "x" * 31 + "…'  does not match stable|beta",
        "  + hostname        = 'build-01'" + " " * 34 + "not in fields",
        "  + os              = 'linux' (+1 more)" + " " * 27 + "not in fields",
        "  ! (body)" + " " * 56 + "cannot be parsed into fields; opaque_body = true admits it",
        "allowed fields: version, installationId, channel",
    ]


def test_diff_of_a_conforming_request() -> None:
    f = fields(version="2024.1.3", installationId=UUID)
    assert format_contract_diff(UPDATE_CHECK, f, check_payload(UPDATE_CHECK, f)) == (
        "payload contract:\n"
        "    version         = '2024.1.3'                              (semver)\n"
        "    installationId  = 'c0ffee00-1234-4abc-8def-0123456789ab'  (uuid)\n"
        "allowed fields: version, installationId"
    )


def test_diff_without_a_field_list_shows_the_fields_it_names() -> None:
    payload = Payload(required=("token",), match={"v": "int"})
    f = fields(v="x", other="1")
    assert format_contract_diff(payload, f, check_payload(payload, f), name="api") == (
        "payload contract of 'api':\n"
        "  - token                  required, missing\n"
        "  ! v               = 'x'  does not match int\n"
        "allowed fields: any"
    )


def test_diff_of_an_empty_request_against_an_empty_contract() -> None:
    assert format_contract_diff(Payload(fields=()), fields(), []) == (
        "payload contract:\n    (no fields)\nallowed fields: (none)"
    )


def test_diff_escapes_control_characters() -> None:
    payload = Payload(fields=())
    f = fields(x="a\nb\x1b[31m")
    diff = format_contract_diff(payload, f, check_payload(payload, f))
    assert "\x1b" not in diff
    assert diff.count("\n") == 2
