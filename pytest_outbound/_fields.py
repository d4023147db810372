"""The fields a request carries (SPEC §5.1): names and values from path, query, headers and body.

Pure: stdlib only, no pytest, no patching. On the hot path of every intercepted request, so the
body is parsed only as the kind its Content-Type (or, without one, its first byte) says it is.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Iterable, Sequence
from email import errors as email_errors
from email.message import Message
from email.parser import BytesParser
from email.utils import collapse_rfc2231_value
from typing import TypeAlias
from urllib.parse import parse_qsl, unquote

from pytest_outbound._policy import compile_path_template
from pytest_outbound._record import Fields

#: Headers every HTTP client sends on its own; they are not fields of a request.
TRANSPORT_HEADERS: frozenset[str] = frozenset(
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

#: A compressed body is inflated to at most this many bytes.
MAX_DECODED_SIZE = 8 * 1024 * 1024


# --- content decoding -------------------------------------------------------------------------

_GZIP_WBITS = 16 + zlib.MAX_WBITS
_ZLIB_WBITS = zlib.MAX_WBITS
_RAW_WBITS = -zlib.MAX_WBITS


def _inflate(data: bytes, wbits: int, limit: int, partial: bool) -> bytes | None:
    """Inflate every member of ``data`` (gzip may hold several); None when it is not ``wbits``."""
    out: list[bytes] = []
    size = 0
    while True:
        inflater = zlib.decompressobj(wbits)
        try:
            chunk = inflater.decompress(data, limit - size + 1)
        except zlib.error:
            return b"".join(out) if partial and out else None
        out.append(chunk)
        size += len(chunk)
        if size > limit:
            return b"".join(out)[:limit] if partial else None
        if not inflater.eof:
            if inflater.unconsumed_tail:  # stopped by the size limit
                return b"".join(out)[:limit] if partial else None
            # truncated input: what was inflated so far is all there is
            return b"".join(out) if partial and size else None
        data = inflater.unused_data
        if wbits != _GZIP_WBITS or not data.strip(b"\x00"):
            return b"".join(out)


def decode_content(
    body: bytes, content_encoding: str, *, partial: bool = False, limit: int = MAX_DECODED_SIZE
) -> bytes | None:
    """Undo a Content-Encoding (``gzip``, ``x-gzip``, ``deflate`` as zlib or raw, stacked as in
    ``"gzip, deflate"``; ``identity`` is a no-op).

    Returns None for an unknown encoding or a body that does not decode. With ``partial``, a
    truncated or oversized body gives what could be decoded (None only if nothing could).
    """
    codings = [c.strip().lower() for c in content_encoding.split(",")]
    data = body
    for coding in reversed(codings):
        if coding in ("", "identity") or not data:
            continue
        result: bytes | None
        if coding in ("gzip", "x-gzip"):
            result = _inflate(data, _GZIP_WBITS, limit, partial)
        elif coding == "deflate":
            result = _inflate(data, _ZLIB_WBITS, limit, partial)
            if result is None:
                result = _inflate(data, _RAW_WBITS, limit, partial)
        else:
            return None
        if result is None:
            return None
        data = result
    return data


def header_values(headers: Iterable[tuple[str, str]], name: str) -> list[str]:
    """Every value of the header ``name`` (lowercase), in order."""
    return [v for k, v in headers if k.strip().lower() == name]


def decode_body(
    body: bytes, headers: Sequence[tuple[str, str]], *, partial: bool = False
) -> bytes | None:
    """``body`` with the Content-Encoding of ``headers`` undone (see ``decode_content``)."""
    encoding = ",".join(header_values(headers, "content-encoding"))
    if not body or not encoding.strip():
        return body
    return decode_content(body, encoding, partial=partial)


# --- path templates ---------------------------------------------------------------------------


def match_path_template(template: str, path: str) -> dict[str, str] | None:
    """The parameters of ``path`` under ``template``, or None when it does not fit.

    ``match_path_template("/api/{version}/check", "/api/1.2/check")`` -> ``{"version": "1.2"}``.
    Parameter values are percent-decoded. A parameter named twice must have one value.
    """
    pattern, names = compile_path_template(template)
    m = pattern.fullmatch(path)
    if m is None:
        return None
    params: dict[str, str] = {}
    for name, raw in zip(names, m.groups(), strict=True):
        value = unquote(raw)
        if params.setdefault(name, value) != value:
            return None
    return params


# --- extraction -------------------------------------------------------------------------------

_JSON_LEAD_RE = re.compile(rb"[ \t\r\n]*[\[{]")
_FORM_KEY = rb"[^&=\x00-\x20\x7f-\xff]+"
_FORM_VALUE = rb"[^&\x00-\x20\x7f-\xff]*"
_FORM_RE = re.compile(rb"%s=%s(?:&%s=%s)*" % (_FORM_KEY, _FORM_VALUE, _FORM_KEY, _FORM_VALUE))


class _Number(str):
    """A JSON number kept as the text it was written as."""

    __slots__ = ()


class _Object(list[tuple[str, object]]):
    """A JSON object as its key/value pairs, duplicates kept (a later one must not hide one)."""

    __slots__ = ()


#: One decoder for every body, as ``json.loads`` keeps one for its defaults: given hooks,
#: ``json.loads`` makes a decoder and its scanner anew for each call (as long as parsing
#: this small body).
_JSON_DECODER = json.JSONDecoder(
    object_pairs_hook=_Object,
    parse_int=_Number,
    parse_float=_Number,
    parse_constant=_Number,
)


def _parse_json(body: bytes) -> object:
    """``json.loads(body, ...)`` with this module's hooks: the bytes decoded as it decodes
    them (UTF-8, -16 or -32, found from the first bytes; a BOM dropped)."""
    return _JSON_DECODER.decode(body.decode(json.detect_encoding(body), "surrogatepass"))


def _json_fields(doc: object, out: dict[str, list[str]]) -> bool:
    """Add the fields of a parsed JSON document to ``out``; False if it is a bare scalar."""
    if not isinstance(doc, list):
        return False
    if doc.__class__ is _Object and not any(isinstance(child, list) for _, child in doc):
        for key, child in doc:  # a flat object, as most payloads are: no walk needed
            out.setdefault(key, []).append(_json_text(child))
        return True
    stack: list[tuple[str, object]] = [("", doc)]
    while stack:
        name, value = stack.pop()
        if isinstance(value, _Object):
            if not value and name:
                out.setdefault(name, [])
            prefix = f"{name}." if name else ""
            stack.extend((prefix + key, child) for key, child in reversed(value))
        elif isinstance(value, list):
            item = f"{name}[]"
            if not value:
                if name:
                    out.setdefault(item, [])
            else:
                stack.extend((item, child) for child in reversed(value))
        else:
            out.setdefault(name, []).append(_json_text(value))
    return True


def _json_text(value: object) -> str:
    if isinstance(value, str):
        return str(value)
    if value is True:
        return "true"
    if value is False:
        return "false"
    return "null"


def _media_type(content_type: str) -> tuple[str, str]:
    """``"Multipart/Form-Data; boundary=x"`` -> ``("multipart/form-data", content_type)``."""
    return content_type.partition(";")[0].strip().lower(), content_type


def _add_pairs(text: str, out: dict[str, list[str]]) -> None:
    for key, value in parse_qsl(text, keep_blank_values=True):
        out.setdefault(key, []).append(value)


_BAD_MULTIPART = (
    email_errors.StartBoundaryNotFoundDefect,
    email_errors.NoBoundaryInMultipartDefect,
    email_errors.MultipartInvariantViolationDefect,
)


def _multipart_fields(body: bytes, content_type: str, out: dict[str, list[str]]) -> bool:
    """Add the part names of a multipart/form-data body; False if it does not parse."""
    head = b"Content-Type: " + content_type.encode("latin-1", "replace") + b"\r\n\r\n"
    try:
        msg = BytesParser().parsebytes(head + body)  # compat32, the default: no email.policy
    except Exception:  # the email parser is lenient; this is a belt for its braces
        return False
    if not msg.is_multipart() or any(isinstance(d, _BAD_MULTIPART) for d in msg.defects):
        return False
    parts = msg.get_payload()
    if not isinstance(parts, list):
        return False
    found: list[tuple[str, str]] = []
    for part in parts:
        if not isinstance(part, Message):
            return False
        raw_name = part.get_param("name", header="content-disposition")
        if raw_name is None:
            return False
        name = collapse_rfc2231_value(raw_name)
        payload = part.get_payload(decode=True)
        value = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
        found.append((str(name), value))
    for name, value in found:
        out.setdefault(name, []).append(value)
    return True


def _body_fields(
    body: bytes, content_type: str, content_encoding: str, out: dict[str, list[str]]
) -> bool:
    """Add the fields of ``body`` to ``out``; False when the body is opaque."""
    if content_encoding.strip():
        decoded = decode_content(body, content_encoding)
        if decoded is None:
            return False
        body = decoded
        if not body:
            return True
    media, full_type = _media_type(content_type)
    if media == "application/json" or media.endswith("+json"):
        kind = "json"
    elif media == "application/x-www-form-urlencoded":
        kind = "form"
    elif media == "multipart/form-data":
        return _multipart_fields(body, full_type, out)
    elif _JSON_LEAD_RE.match(body):
        kind = "json"
    elif _FORM_RE.fullmatch(body):
        kind = "form"
    else:
        return False
    if kind == "form":
        _add_pairs(body.decode("utf-8", "replace"), out)
        return True
    try:
        doc = _parse_json(body)
    except (ValueError, RecursionError):
        return False
    return _json_fields(doc, out)


def _add_cookies(header: str, out: dict[str, list[str]]) -> None:
    for piece in header.split(";"):
        piece = piece.strip()
        if not piece:
            continue
        name, _, value = piece.partition("=")
        out.setdefault(f"cookie:{name.strip()}", []).append(value.strip())


def extract_fields(
    *,
    path: str,
    query: str,
    headers: Sequence[tuple[str, str]],
    body: bytes,
    templates: Sequence[str] = (),
) -> Fields:
    """The fields of a request, in the order: path-template parameters, query, headers, cookies,
    body. ``query`` is the URL's query without ``?``; ``headers`` are (name, value) pairs in any
    case; ``body`` is as sent (Content-Encoding is undone here)."""
    out: dict[str, list[str]] = {}
    for template in templates:
        params = match_path_template(template, path)
        if params is not None:
            for key, value in params.items():
                out.setdefault(key, []).append(value)
            break
    if query:
        _add_pairs(query, out)
    content_type = ""
    encodings: list[str] = []
    cookies: list[str] = []
    for name, value in headers:
        lname = name.strip().lower()
        if lname in TRANSPORT_HEADERS:
            if lname == "content-type":
                content_type = content_type or value
            elif lname == "content-encoding":
                encodings.append(value)
        elif lname == "cookie":
            cookies.append(value)
        else:
            out.setdefault(f"header:{lname}", []).append(value)
    for cookie in cookies:
        _add_cookies(cookie, out)
    opaque = False
    if body:
        pairs, parsed = _fields_of_body(body, content_type, ",".join(encodings))
        for key, values in pairs:
            out.setdefault(key, []).extend(values)
        opaque = not parsed
    return Fields({key: tuple(vals) for key, vals in out.items()}, opaque)


_BodyFields: TypeAlias = tuple[tuple[tuple[str, tuple[str, ...]], ...], bool]

#: (body, content type, content encoding) -> its fields in order, and whether it parsed.
_BODIES: dict[tuple[bytes, str, str], _BodyFields] = {}
#: Bodies up to this size are remembered, this many of them (then the cache starts afresh).
_BODY_CACHE_SIZE = 4096
_BODY_CACHE_LIMIT = 256


def _fields_of_body(body: bytes, content_type: str, content_encoding: str) -> _BodyFields:
    """``_body_fields`` as (name, values) pairs, remembered for small bodies: a suite posts the
    same payloads again and again, and parsing one is most of a contract check's cost. The
    pairs are what ``_body_fields`` would add, in order, so merging them into the fields found
    before the body (``setdefault`` and ``extend``) gives what adding them directly gave."""
    cached = (
        len(body) <= _BODY_CACHE_SIZE
        and type(body) is bytes
        and type(content_type) is str
        and type(content_encoding) is str
    )
    key = (body, content_type, content_encoding)
    if cached:
        known = _BODIES.get(key)
        if known is not None:
            return known
    found: dict[str, list[str]] = {}
    parsed = _body_fields(body, content_type, content_encoding, found)
    result = (tuple((name, tuple(values)) for name, values in found.items()), parsed)
    if cached:
        if len(_BODIES) >= _BODY_CACHE_LIMIT:
            _BODIES.clear()
        _BODIES[key] = result
    return result
