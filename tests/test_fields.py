"""Field extraction (SPEC §5.1): each source of fields, body decoding, the rules as properties."""

from __future__ import annotations

import gzip
import json
import random
import zlib
from collections import Counter
from collections.abc import Iterator, Sequence
from urllib.parse import urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_outbound._fields import (
    TRANSPORT_HEADERS,
    decode_body,
    decode_content,
    extract_fields,
    match_path_template,
)
from pytest_outbound._record import Fields


def fields_of(
    *,
    path: str = "/",
    query: str = "",
    headers: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
    templates: Sequence[str] = (),
) -> Fields:
    return extract_fields(path=path, query=query, headers=headers, body=body, templates=templates)


def raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


JSON = ("Content-Type", "application/json")


# --- query -------------------------------------------------------------------------------------


def test_query_names_and_repeated_values() -> None:
    f = fields_of(query="version=1.2&os=linux&os=mac")
    assert f.values == {"version": ("1.2",), "os": ("linux", "mac")}
    assert f.names() == {"version", "os"}
    assert not f.opaque


def test_query_brackets_blank_values_and_percent_decoding() -> None:
    f = fields_of(query="a[]=1&a[]=2&flag&empty=&na%6De=x+y%21")
    assert f.values == {"a[]": ("1", "2"), "flag": ("",), "empty": ("",), "name": ("x y!",)}


def test_no_fields_at_all() -> None:
    f = fields_of()
    assert f == Fields({})
    assert f.names() == frozenset()


# --- headers and cookies -------------------------------------------------------------------------


def test_headers_are_fields_except_the_transport_set() -> None:
    headers = [(name.title(), "x") for name in sorted(TRANSPORT_HEADERS)]
    headers += [("X-Api-Key", "k1"), ("Authorization", "Bearer t"), ("x-api-key", "k2")]
    f = fields_of(headers=headers)
    assert f.values == {"header:x-api-key": ("k1", "k2"), "header:authorization": ("Bearer t",)}


def test_cookies_from_every_cookie_header() -> None:
    f = fields_of(headers=[("Cookie", "sid=abc; theme=dark"), ("COOKIE", "sid=def;lone")])
    assert f.values == {
        "cookie:sid": ("abc", "def"),
        "cookie:theme": ("dark",),
        "cookie:lone": ("",),
    }
    assert "header:cookie" not in f.values


def test_transport_set_is_spec_list() -> None:
    assert (
        frozenset(
            {
                "host",
                "user-agent",
                "accept",
                "accept-encoding",
                "accept-language",
                "connection",
                "content-type",
                "content-length",
                "content-encoding",
                "transfer-encoding",
            }
        )
        == TRANSPORT_HEADERS
    )


# --- path templates ----------------------------------------------------------------------------


def test_path_template_parameters_from_the_first_matching_template() -> None:
    f = fields_of(
        path="/api/1.2/check",
        templates=["/other/{x}", "/api/{version}/check", "/api/{v2}/{what}"],
    )
    assert f.values == {"version": ("1.2",)}


def test_path_without_matching_template_has_no_parameters() -> None:
    assert fields_of(path="/api/1.2/other", templates=["/api/{version}/check"]).values == {}


@pytest.mark.parametrize(
    ("template", "path", "expected"),
    [
        ("/api/{version}/check", "/api/1.2/check", {"version": "1.2"}),
        ("/api/{version}/check", "/api/1%2E2/check", {"version": "1.2"}),
        ("/api/{version}/check", "/api//check", None),
        ("/api/{version}/check", "/api/1/2/check", None),
        ("/api/{version}/check", "/api/1.2/check/", None),
        ("/u/{id}.json", "/u/42.json", {"id": "42"}),
        ("/u/{a}/{b}", "/u/x/y", {"a": "x", "b": "y"}),
        ("/u/{a}/{a}", "/u/x/x", {"a": "x"}),
        ("/u/{a}/{a}", "/u/x/y", None),
        ("/static", "/static", {}),
        ("/a.b(c)+", "/a.b(c)+", {}),
        ("/a.b", "/axb", None),
        ("/files/*/raw", "/files/abc/raw", {}),
        ("/files/*/raw", "/files/a/b/raw", None),
        ("/files/**", "/files/a/b/c", {}),
        ("/v/{n}/**", "/v/3/x/y", {"n": "3"}),
    ],
)
def test_match_path_template(template: str, path: str, expected: dict[str, str] | None) -> None:
    assert match_path_template(template, path) == expected


# --- JSON bodies ---------------------------------------------------------------------------------


def test_json_nested_objects_lists_and_scalars() -> None:
    doc = (
        b'{"env": {"user": "x"}, "tags": ["a", "b"], "items": [{"id": 1}, {"id": 2.50}],'
        b' "ok": true, "no": false, "none": null, "big": 1e400, "n": -0}'
    )
    f = fields_of(headers=[JSON], body=doc)
    assert f.values == {
        "env.user": ("x",),
        "tags[]": ("a", "b"),
        "items[].id": ("1", "2.50"),
        "ok": ("true",),
        "no": ("false",),
        "none": ("null",),
        "big": ("1e400",),
        "n": ("-0",),
    }
    assert not f.opaque


def test_json_top_level_list() -> None:
    f = fields_of(headers=[JSON], body=b'[1, "two", {"a": [[3]]}]')
    assert f.values == {"[]": ("1", "two"), "[].a[][]": ("3",)}


def test_json_empty_containers_are_fields_without_values() -> None:
    f = fields_of(headers=[JSON], body=b'{"e": {}, "l": [], "x": [{}]}')
    assert f.values == {"e": (), "l[]": (), "x[]": ()}
    assert fields_of(headers=[JSON], body=b"{}").values == {}
    assert fields_of(headers=[JSON], body=b" [ ] ").values == {}


def test_json_duplicate_keys_keep_every_value() -> None:
    f = fields_of(headers=[JSON], body=b'{"a": 1, "a": 2}')
    assert f.values == {"a": ("1", "2")}


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "Application/JSON; charset=utf-8", "application/vnd.api+json"],
)
def test_json_content_types(content_type: str) -> None:
    f = fields_of(headers=[("content-type", content_type)], body=b'{"a": "b"}')
    assert f.values == {"a": ("b",)}


def test_json_sniffed_without_content_type() -> None:
    assert fields_of(body=b'\n  {"a": 1}').values == {"a": ("1",)}
    assert fields_of(headers=[("Content-Type", "text/plain")], body=b"[1]").values == {"[]": ("1",)}


@pytest.mark.parametrize(
    "body",
    [b'{"a": ', b"{not json}", b'"just a string"', b"42", b"null", b"\xff\xfe{"],
)
def test_declared_json_that_is_not_an_object_or_list_is_opaque(body: bytes) -> None:
    f = fields_of(headers=[JSON], body=body)
    assert f.opaque
    assert f.values == {}


def test_deeply_nested_json_does_not_crash() -> None:
    body = b"[" * 100_000 + b"]" * 100_000
    assert isinstance(fields_of(headers=[JSON], body=body), Fields)


# --- form and opaque bodies ----------------------------------------------------------------------


def test_form_urlencoded_body() -> None:
    f = fields_of(
        headers=[("Content-Type", "application/x-www-form-urlencoded")],
        body=b"user=bob&pw=s%20cret&pw=x&flag",
    )
    assert f.values == {"user": ("bob",), "pw": ("s cret", "x"), "flag": ("",)}


def test_form_sniffed_only_when_it_looks_like_pairs() -> None:
    assert fields_of(body=b"a=1&b=&c=x==").values == {"a": ("1",), "b": ("",), "c": ("x==",)}
    for body in (b"hello world", b"a=1&b", b"a=1 b=2", b"\x00\x01binary", b"=x"):
        f = fields_of(body=body)
        assert f.opaque, body
        assert f.values == {}


def test_unknown_content_type_opaque() -> None:
    f = fields_of(headers=[("Content-Type", "application/octet-stream")], body=b"\x89PNG\r\n")
    assert f.opaque


def test_empty_body_is_not_opaque() -> None:
    assert not fields_of(headers=[JSON], body=b"").opaque
    assert not fields_of(headers=[("Content-Encoding", "gzip")], body=b"").opaque


def test_a_compressed_empty_body_is_not_opaque() -> None:
    """A body that decodes to nothing carries no fields, whatever its Content-Type says."""
    for headers in ([JSON], [("Content-Type", "text/plain")], []):
        f = fields_of(headers=[*headers, ("Content-Encoding", "gzip")], body=gzip.compress(b""))
        assert (f.values, f.opaque) == ({}, False)


def test_the_first_content_type_header_decides_how_the_body_is_read() -> None:
    form = ("Content-Type", "application/x-www-form-urlencoded")
    f = fields_of(headers=[form, JSON], body=b"version=1.2&os=linux")
    assert (f.values, f.opaque) == ({"version": ("1.2",), "os": ("linux",)}, False)


# --- multipart -----------------------------------------------------------------------------------

MULTIPART = (
    b"--XyZ\r\n"
    b'Content-Disposition: form-data; name="field1"\r\n\r\n'
    b"value1\r\n"
    b"--XyZ\r\n"
    b'Content-Disposition: form-data; name="upload"; filename="a.txt"\r\n'
    b"Content-Type: text/plain\r\n\r\n"
    b"file content\r\n"
    b"--XyZ\r\n"
    b'Content-Disposition: form-data; name="field1"\r\n\r\n'
    b"value2\r\n"
    b"--XyZ--\r\n"
)


def test_multipart_part_names() -> None:
    f = fields_of(headers=[("Content-Type", 'multipart/form-data; boundary="XyZ"')], body=MULTIPART)
    assert f.values == {"field1": ("value1", "value2"), "upload": ("file content",)}
    assert not f.opaque


def test_multipart_without_boundary_is_opaque() -> None:
    assert fields_of(headers=[("Content-Type", "multipart/form-data")], body=MULTIPART).opaque
    wrong = [("Content-Type", "multipart/form-data; boundary=other")]
    assert fields_of(headers=wrong, body=MULTIPART).opaque


def test_multipart_part_without_a_name_is_opaque() -> None:
    body = b"--b\r\nContent-Disposition: form-data\r\n\r\nsecret\r\n--b--\r\n"
    assert fields_of(
        headers=[("Content-Type", "multipart/form-data; boundary=b")], body=body
    ).opaque


# --- content encodings ---------------------------------------------------------------------------

DOC = b'{"version": "1.2", "installationId": "abc"}'
DOC_FIELDS = {"version": ("1.2",), "installationId": ("abc",)}


@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        ("gzip", gzip.compress(DOC, mtime=0)),
        ("x-gzip", gzip.compress(DOC, mtime=0)),
        ("GZIP", gzip.compress(DOC, mtime=0)),
        ("deflate", zlib.compress(DOC)),
        ("deflate", raw_deflate(DOC)),
        ("gzip, deflate", zlib.compress(gzip.compress(DOC, mtime=0))),
        ("deflate,gzip", gzip.compress(raw_deflate(DOC), mtime=0)),
        ("identity", DOC),
        ("gzip, identity", gzip.compress(DOC, mtime=0)),
    ],
)
def test_compressed_bodies_are_decoded(encoding: str, body: bytes) -> None:
    f = fields_of(headers=[JSON, ("Content-Encoding", encoding)], body=body)
    assert f.values == DOC_FIELDS
    assert not f.opaque


def test_stacked_encodings_in_separate_headers() -> None:
    body = zlib.compress(gzip.compress(DOC))
    headers = [JSON, ("Content-Encoding", "gzip"), ("content-encoding", "deflate")]
    assert fields_of(headers=headers, body=body).values == DOC_FIELDS


def test_multi_member_gzip() -> None:
    body = gzip.compress(b'{"a": 1, ') + gzip.compress(b'"b": 2}')
    f = fields_of(headers=[("Content-Encoding", "gzip")], body=body)
    assert f.values == {"a": ("1",), "b": ("2",)}


@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        ("gzip", DOC),
        ("deflate", b"not compressed"),
        ("br", b"\x0b\x02\x80hello"),
        ("gzip", gzip.compress(DOC, mtime=0)[:-12]),
        ("gzip", gzip.compress(DOC, mtime=0) + b"trailing junk"),
    ],
)
def test_undecodable_bodies_are_opaque(encoding: str, body: bytes) -> None:
    f = fields_of(headers=[JSON, ("Content-Encoding", encoding)], body=body)
    assert f.opaque
    assert f.values == {}


def test_decode_content_partial_gives_what_could_be_decoded() -> None:
    data = random.Random(0).randbytes(5000).hex().encode()
    truncated = gzip.compress(data)[:2000]
    assert decode_content(truncated, "gzip") is None
    partial = decode_content(truncated, "gzip", partial=True)
    assert partial
    assert data.startswith(partial)


def test_decode_content_limit() -> None:
    bomb = gzip.compress(b"\0" * 100_000)
    assert decode_content(bomb, "gzip", limit=1000) is None
    assert decode_content(bomb, "gzip", limit=1000, partial=True) == b"\0" * 1000
    assert decode_content(bomb, "gzip") == b"\0" * 100_000


def test_decode_body_reads_the_headers() -> None:
    assert decode_body(gzip.compress(b"x"), [("Content-Encoding", "gzip")]) == b"x"
    assert decode_body(b"x", [("Content-Type", "text/plain")]) == b"x"
    assert decode_body(b"x", [("Content-Encoding", "zstd")]) is None


# --- every source together -----------------------------------------------------------------------


def test_all_sources_in_one_request() -> None:
    f = fields_of(
        path="/api/2024.1/check",
        query="channel=stable",
        headers=[
            ("Host", "octopus.com"),
            ("User-Agent", "agent/1"),
            ("X-Installation", "c0ffee"),
            ("Cookie", "sid=1"),
            JSON,
        ],
        body=b'{"version": "2024.1.3"}',
        templates=["/api/{release}/check"],
    )
    assert list(f.values) == [
        "release",
        "channel",
        "header:x-installation",
        "cookie:sid",
        "version",
    ]


# --- properties ----------------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_docs = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=25,
)
json_containers = st.lists(json_docs, max_size=4) | st.dictionaries(
    st.text(max_size=6), json_docs, max_size=4
)


def oracle(doc: object, at: str = "") -> Iterator[tuple[str, str | None]]:
    """(field, value) pairs by the SPEC's rule, written recursively; value None for a field
    that is an empty object or list."""
    if isinstance(doc, dict):
        if not doc and at:
            yield at, None
        for key, child in doc.items():
            yield from oracle(child, f"{at}.{key}" if at else key)
    elif isinstance(doc, list):
        if not doc and at:
            yield f"{at}[]", None
        for child in doc:
            yield from oracle(child, f"{at}[]")
    else:
        yield at, doc if isinstance(doc, str) else json.dumps(doc)


@given(json_containers)
def test_json_fields_equal_the_recursive_oracle(doc: object) -> None:
    f = fields_of(headers=[JSON], body=json.dumps(doc).encode())
    expected = list(oracle(doc))
    assert f.names() == {name for name, _ in expected}
    got = Counter((name, value) for name, values in f.values.items() for value in values)
    assert got == Counter((name, value) for name, value in expected if value is not None)
    assert not f.opaque
    # and in the document's order: fields as first met, each one's values as written
    in_order: dict[str, list[str]] = {}
    for name, value in expected:
        in_order.setdefault(name, [])
        if value is not None:
            in_order[name].append(value)
    assert f.values == {name: tuple(values) for name, values in in_order.items()}
    assert list(f.values) == list(in_order)


@pytest.mark.parametrize(
    "encoding", ["utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-be"]
)
@given(doc=json_containers)
def test_json_bodies_in_every_encoding_json_reads(doc: object, encoding: str) -> None:
    """Bodies are read as ``json.loads`` reads bytes: UTF-8, -16 or -32, with or without a BOM."""
    text = json.dumps(doc, ensure_ascii=False)
    assert fields_of(headers=[JSON], body=text.encode(encoding)) == fields_of(
        headers=[JSON], body=text.encode()
    )


def test_json_that_is_not_text_is_opaque() -> None:
    invalid_utf8 = b'{"a": "' + bytes([0xC3, 0xFF]) + b'"}'
    assert fields_of(headers=[JSON], body=invalid_utf8).opaque
    assert fields_of(headers=[JSON], body='{"a": "é"}'.encode()).values == {"a": ("é",)}
    # a lone surrogate, encoded as UTF-8 encodes it: json.loads reads it ("surrogatepass")
    surrogate = b'{"a": "' + bytes([0xED, 0xA0, 0x80]) + b'"}'
    assert fields_of(headers=[JSON], body=surrogate).values == {"a": (json.loads(surrogate)["a"],)}


@given(json_containers)
def test_json_fields_the_same_sniffed_and_compressed(doc: object) -> None:
    body = json.dumps(doc, ensure_ascii=False).encode()
    declared = fields_of(headers=[JSON], body=body)
    assert fields_of(body=body) == declared
    assert fields_of(headers=[("Content-Encoding", "gzip")], body=gzip.compress(body)) == declared


@given(st.lists(st.tuples(st.text(), st.text()), max_size=8))
def test_query_names_equal_the_generated_keys(pairs: list[tuple[str, str]]) -> None:
    f = fields_of(query=urlencode(pairs))
    assert f.names() == {key for key, _ in pairs}
    for key in f.names():
        assert f.values[key] == tuple(value for k, value in pairs if k == key)


@given(st.lists(st.tuples(st.text(min_size=1), st.text()), max_size=8))
def test_form_body_names_equal_the_generated_keys(pairs: list[tuple[str, str]]) -> None:
    form = ("Content-Type", "application/x-www-form-urlencoded")
    f = fields_of(headers=[form], body=urlencode(pairs).encode())
    assert f.names() == {key for key, _ in pairs}
