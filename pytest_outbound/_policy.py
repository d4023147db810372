"""The policy model: documented destinations, their payload contracts, and loading them from TOML.

Pure: no pytest, no patching. Every fault raises ``PolicyError`` naming where it came from
(``outbound.toml:12``), which destination, and what to write instead.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_outbound._errors import PolicyError
from pytest_outbound._hosts import SCHEMES, HostError, HostPattern

if TYPE_CHECKING:
    import tomllib

NAMED_FORMATS = ("uuid", "semver", "int", "iso8601")

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_WORD_RE = re.compile(r"^[a-z][a-z0-9_]*$")
#: The methods of the IANA HTTP Method Registry (RFC 9110's, PATCH, WebDAV's and the rest).
#: Any other token would be valid on the wire, but documenting one is far more often a typo
#: (``GTE``) than a server's private method: a destination that takes one leaves
#: ``methods`` out.
METHODS = (
    "GET",
    "HEAD",
    "POST",
    "PUT",
    "DELETE",
    "CONNECT",
    "OPTIONS",
    "TRACE",
    "PATCH",
    "QUERY",
    "ACL",
    "BASELINE-CONTROL",
    "BIND",
    "CHECKIN",
    "CHECKOUT",
    "COPY",
    "LABEL",
    "LINK",
    "LOCK",
    "MERGE",
    "MKACTIVITY",
    "MKCALENDAR",
    "MKCOL",
    "MKREDIRECTREF",
    "MKWORKSPACE",
    "MOVE",
    "ORDERPATCH",
    "PRI",
    "PROPFIND",
    "PROPPATCH",
    "REBIND",
    "REPORT",
    "SEARCH",
    "UNBIND",
    "UNCHECKOUT",
    "UNLINK",
    "UNLOCK",
    "UPDATE",
    "UPDATEREDIRECTREF",
    "VERSION-CONTROL",
)
_COMMON_METHODS = "GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, TRACE, CONNECT"


def _ports(value: object) -> tuple[int, ...]:
    """``ports``: port numbers from 1 to 65535 (one alone is taken as a list of one)."""
    if isinstance(value, int | str):
        items: tuple[object, ...] = (value,)
    elif isinstance(value, Iterable) and not isinstance(value, Mapping):
        items = tuple(value)
    else:
        raise ValueError(
            f"ports must be a list of port numbers, e.g. ports = [443], got {type(value).__name__}"
        )
    for port in items:
        if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
            raise ValueError(f"ports: {port!r} is not a port number from 1 to 65535")
    return items  # type: ignore[return-value]


class _KeyFault(ValueError):
    """A fault of one policy key (``schemes``, ``payload.fields``): the TOML loader points
    the error at that key's line."""

    def __init__(self, message: str, key: str) -> None:
        super().__init__(message)
        self.key = key


@contextlib.contextmanager
def _key(name: str) -> Iterator[None]:
    """Faults raised inside are ``name``'s."""
    try:
        yield
    except _KeyFault:
        raise
    except (ValueError, HostError) as exc:
        raise _KeyFault(str(exc), name) from None


def check_scheme(scheme: str, what: str) -> None:
    """``scheme`` must be one a client sends; raises ``ValueError`` after ``what``."""
    if scheme not in SCHEMES:
        close = _close_matches(scheme, SCHEMES)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"{what}{scheme!r} is not a scheme clients send ({', '.join(SCHEMES)}){hint}"
        )


def entry_pattern(text: str, names: Collection[str]) -> HostPattern:
    """The host pattern an *entry* that is not a destination's name stands for (SPEC §4).

    It must be one that could be a real destination: an IP, a CIDR, ``localhost``, a name with
    a dot, or a single-label name written with a trailing dot (``intranet.``). Anything else
    is far more often a mistyped destination name: ``ValueError`` says so, with the closest of
    ``names`` ("did you mean 'update-check'?").
    """
    try:
        pattern = HostPattern.parse(text)
    except HostError as exc:
        close = _close_matches(text, names)
        fix = f"; did you mean {close[0]!r}? ({exc})" if close else f": {exc}"
        raise ValueError(
            f"{text!r} is neither a documented destination ({_listed(names)}) nor a valid"
            f" host pattern{fix}"
        ) from None
    if pattern.scheme:
        check_scheme(pattern.scheme, f"in {text!r}, ")
    if pattern.bare_single_label():
        dotted = _with_trailing_dot(text)
        close = _close_matches(text, names)
        if close:
            raise ValueError(
                f"{text!r} is not a documented destination; did you mean {close[0]!r}?"
                f" (a single-label host is written with a trailing dot: {dotted!r})"
            )
        raise ValueError(
            f"{text!r} is neither a documented destination ({_listed(names)}) nor a host"
            " pattern that could be a real destination (an IP, a CIDR, localhost, a name with"
            f" a dot); a single-label host is written with a trailing dot: {dotted!r}"
        )
    return pattern


def _with_trailing_dot(text: str) -> str:
    """``intranet:8080`` -> ``intranet.:8080``; ``https://intranet`` -> ``https://intranet.``."""
    head, sep, rest = text.partition("://")
    if not sep:
        head, rest = "", text
    host, colon, port = rest.partition(":")
    host, slash, path = host.partition("/")
    return f"{head}{sep}{host}.{slash}{path}{colon}{port}"


def _listed(names: Collection[str], limit: int = 8) -> str:
    """``a, b, c`` (the first ``limit`` in order, then how many more) for a message."""
    ordered = sorted(names)
    if not ordered:
        return "none documented"
    more = len(ordered) - limit
    return ", ".join(ordered[:limit]) + (f" and {more} more" if more > 0 else "")


def parse_duration(text: str) -> float:
    """``"8h"`` -> 28800.0 seconds. Raises ``ValueError`` with the accepted forms."""
    m = _DURATION_RE.match(text) if isinstance(text, str) else None
    if m is None:
        raise ValueError(
            f'bad duration {text!r}: write a number and a unit, e.g. "8h", "30m", "90s"'
        )
    return float(m.group(1)) * _DURATION_UNITS[m.group(2)]


@functools.lru_cache(maxsize=512)
def compile_path_template(template: str) -> tuple[re.Pattern[str], tuple[str, ...]]:
    """A destination's ``paths`` entry as a regex, with one group per parameter, and their names.

    ``/api/{version}/check``: a parameter ``{name}`` is one non-empty path segment. The path
    globs of SPEC §2 work too: ``*`` is any text within a segment, ``**`` any text. (Here, not
    in ``_fields`` with the rest of field extraction: deciding on a path needs it, and the
    plugin's start-up imports this module, not that one.)
    """
    names: list[str] = []
    parts: list[str] = []
    for token in re.findall(r"\*\*|\*|\{[^/{}]+\}|[^*{]+|.", template):
        if token == "**":
            parts.append(".*")
        elif token == "*":
            parts.append("[^/]*")
        elif len(token) > 2 and token[0] == "{" and token[-1] == "}":
            parts.append("([^/]+)")
            names.append(token[1:-1])
        else:
            parts.append(re.escape(token))
    return re.compile("".join(parts)), tuple(names)


def _strings(value: Any, what: str) -> tuple[str, ...]:
    if isinstance(value, str):
        raise ValueError(f"{what} must be a list of strings, e.g. {what} = [{value!r}]")
    if not isinstance(value, Iterable) or isinstance(value, Mapping):
        raise ValueError(f"{what} must be a list of strings, got {type(value).__name__}")
    items = tuple(value)
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"{what} must contain only strings, got {item!r}")
    return items


@dataclass(frozen=True)
class Payload:
    """What a destination's requests may carry (SPEC §5.2).

    ``fields``: the only fields allowed (``None``: any). ``required``: fields that must be
    present. ``match``: per-field regex or named format (uuid, semver, int, iso8601).
    ``opaque_body``: admit a body that cannot be parsed into fields.
    """

    fields: tuple[str, ...] | None = None
    required: tuple[str, ...] = ()
    match: Mapping[str, str] = field(default_factory=dict)
    opaque_body: bool = False

    def __post_init__(self) -> None:
        try:
            if self.fields is not None:
                with _key("payload.fields"):
                    object.__setattr__(self, "fields", _strings(self.fields, "fields"))
            with _key("payload.required"):
                object.__setattr__(self, "required", _strings(self.required, "required"))
            with _key("payload.match"):
                if not isinstance(self.match, Mapping):
                    raise ValueError("match must be a table of field = format")
            match = dict(self.match)
            for name, pattern in match.items():
                with _key(f"payload.match.{name}"):
                    _check_format(name, pattern)
            object.__setattr__(self, "match", match)
            with _key("payload.opaque_body"):
                if not isinstance(self.opaque_body, bool):
                    raise ValueError("opaque_body must be true or false")
        except _KeyFault as exc:
            raise PolicyError(f"payload: {exc}", key=exc.key) from None
        if self.fields is not None:
            allowed = set(self.fields)
            for key, names in (("required", self.required), ("match", tuple(self.match))):
                for name in names:
                    if name not in allowed:
                        raise PolicyError(
                            f"payload: {name!r} is required or matched but not listed in"
                            " fields; add it to fields = [...]",
                            key=f"payload.{key}" if key == "required" else f"payload.match.{name}",
                        )


def _check_format(name: str, pattern: object) -> None:
    """One ``match`` entry: a named format or a regex."""
    if not isinstance(pattern, str):
        raise ValueError(f"match.{name} must be a string (regex or named format)")
    known = ", ".join(NAMED_FORMATS)
    if pattern not in NAMED_FORMATS and _WORD_RE.match(pattern):
        close = _close_matches(pattern, NAMED_FORMATS)
        hint = f"did you mean {close[0]!r}?" if close else f"named formats: {known}"
        raise ValueError(
            f"match.{name} = {pattern!r} is not a named format ({hint}); to match"
            f" that literal text write the regex '^{pattern}$'"
        )
    if pattern not in NAMED_FORMATS:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(
                f"match.{name} = {pattern!r} is neither a named format ({known})"
                f" nor a valid regex: {exc}"
            ) from None


@dataclass(frozen=True)
class Destination:
    """One documented reason for the code to talk to the network (SPEC §2)."""

    name: str
    hosts: tuple[str, ...]
    description: str = ""
    when: str = ""
    schemes: tuple[str, ...] = ()
    ports: tuple[int, ...] = ()
    methods: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    payload: Payload | None = None
    min_interval: str | None = None
    group: str = ""
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        where = f"destination {self.name!r}" if isinstance(self.name, str) else "destination"
        try:
            self._validate()
        except _KeyFault as exc:
            raise PolicyError(f"{where}: {exc}", self.source, exc.key) from None
        except (ValueError, HostError) as exc:
            raise PolicyError(f"{where}: {exc}", self.source) from None
        except PolicyError as exc:
            raise PolicyError(f"{where}: {exc.message}", self.source, exc.key) from None

    def _validate(self) -> None:
        with _key("name"):
            if not isinstance(self.name, str) or not _NAME_RE.match(self.name):
                raise ValueError(
                    "name must be a non-empty identifier of letters, digits, '-', '_', '.', ':'"
                    ' (e.g. name = "update-check")'
                )
        with _key("hosts"):
            hosts = _strings(self.hosts, "hosts")
            if not hosts:
                raise ValueError(
                    'hosts must name at least one host pattern, e.g. hosts = ["example.com"]'
                )
            for text in hosts:
                scheme = HostPattern.parse(text).scheme
                if scheme:
                    check_scheme(scheme, f"hosts: in {text!r}, ")
        object.__setattr__(self, "hosts", hosts)
        for attr in ("description", "when", "group"):
            with _key(attr):
                if not isinstance(getattr(self, attr), str):
                    raise ValueError(f"{attr} must be a string")
        with _key("schemes"):
            schemes = tuple(s.lower() for s in _strings(self.schemes, "schemes"))
            for s in schemes:
                check_scheme(s, "schemes: ")
        object.__setattr__(self, "schemes", schemes)
        with _key("ports"):
            ports = _ports(self.ports)
        object.__setattr__(self, "ports", ports)
        with _key("methods"):
            methods = tuple(m.upper() for m in _strings(self.methods, "methods"))
            for m in methods:
                if m not in METHODS:
                    close = _close_matches(m, _COMMON_METHODS.split(", "))
                    fix = (
                        f"did you mean {close[0]!r}?"
                        if close
                        else "for a method of your own, leave methods out"
                    )
                    raise ValueError(
                        f"methods: {m!r} is not an HTTP method of the IANA registry"
                        f" ({_COMMON_METHODS}, WebDAV's...); {fix}"
                    )
        object.__setattr__(self, "methods", methods)
        with _key("paths"):
            paths = _strings(self.paths, "paths")
            for p in paths:
                if not p.startswith("/"):
                    raise ValueError(f"paths: {p!r} must start with '/' (e.g. \"/api/*/check\")")
        object.__setattr__(self, "paths", paths)
        with _key("payload"):
            if self.payload is not None and not isinstance(self.payload, Payload):
                raise ValueError("payload must be a Payload(...)")
        if self.min_interval is not None:
            with _key("min_interval"):
                parse_duration(self.min_interval)

    @functools.cached_property
    def min_interval_seconds(self) -> float | None:
        return None if self.min_interval is None else parse_duration(self.min_interval)


@dataclass(frozen=True)
class Policy:
    """Documented destinations plus anonymous allowed host patterns, merged from every source."""

    destinations: tuple[Destination, ...] = ()
    allowed: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        seen: dict[str, Destination] = {}
        for dest in self.destinations:
            if dest.name in seen:
                first = seen[dest.name]
                where = f" (first defined at {first.source})" if first.source else ""
                raise PolicyError(
                    f"duplicate destination name {dest.name!r}{where}; names must be unique",
                    dest.source,
                    "name",
                )
            seen[dest.name] = dest
        for text in self.allowed:
            try:
                HostPattern.parse(text)
            except HostError as exc:
                raise PolicyError(f"allowed host pattern {text!r}: {exc}") from None

    def merge(self, other: Policy) -> Policy:
        """Both policies' destinations and patterns; a name defined in both is an error."""
        if not other.destinations and not other.allowed:
            return self
        return Policy(
            self.destinations + other.destinations,
            self.allowed + tuple(a for a in other.allowed if a not in self.allowed),
        )

    def get(self, name: str) -> Destination | None:
        for dest in self.destinations:
            if dest.name == name:
                return dest
        return None

    def __iter__(self) -> Iterator[Destination]:
        return iter(self.destinations)

    @classmethod
    def from_toml(cls, path: str | Path, source: str | None = None) -> Policy:
        """Load a TOML policy file; every fault names ``file:line`` (``source`` names the file)."""
        path = Path(path)
        source = source or str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise PolicyError(f"cannot read policy file: {exc.strerror}", source) from None
        except UnicodeDecodeError as exc:
            raise PolicyError(
                f"cannot read policy file: it is not UTF-8 text (byte {exc.start})", source
            ) from None
        key = (cls, text, source)
        policy = _READ.get(key)
        if policy is None:
            policy = cls.from_toml_text(text, source)
            if len(_READ) >= _READ_LIMIT:
                _READ.clear()
            _READ[key] = policy
        return policy

    @classmethod
    def from_toml_text(cls, text: str, source: str = "<policy>") -> Policy:
        import tomllib  # here: a suite whose destinations come from conftest hooks skips it

        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise PolicyError(f"invalid TOML: {exc}", _toml_error_source(source, exc)) from None
        lines = _KeyLines(text, source)
        unknown = sorted(set(data) - {"destination", "allow"})
        if unknown:
            raise PolicyError(
                f"unknown top-level key {unknown[0]!r}; a policy file holds [[destination]]"
                " tables and an optional allow = [...] list",
                lines.key(None, unknown[0]),
            )
        raw_dests = data.get("destination", [])
        if not isinstance(raw_dests, list):
            raise PolicyError(
                "'destination' must be an array of tables: write [[destination]]",
                lines.key(None, "destination"),
            )
        dests = []
        located: dict[str, int] = {}
        for index, raw in enumerate(raw_dests):
            where = lines.destination(index)
            try:
                dests.append(_destination_from_table(raw, where))
            except PolicyError as exc:
                if not exc.key:
                    raise
                raise PolicyError(exc.message, lines.key(index, exc.key), exc.key) from None
            located.setdefault(where, index)
        allowed: list[str] = []
        if "allow" in data:
            try:
                names = {d.name for d in dests}
                for text in _strings(data["allow"], "allow"):
                    if text not in names:  # a documented destination is allowed already
                        entry_pattern(text, names)
                        allowed.append(text)
            except ValueError as exc:
                raise PolicyError(f"allow: {exc}", lines.key(None, "allow")) from None
        try:
            return cls(tuple(dests), tuple(allowed))
        except PolicyError as exc:
            second = located.get(exc.source) if exc.key else None
            if second is not None:  # a duplicate name: the line of the second one's name
                raise PolicyError(exc.message, lines.key(second, exc.key), exc.key) from None
            raise PolicyError(exc.message, exc.source or source) from None


#: Policies read from files, by class, text and source. A run reads its files twice, for the
#: guard started before the conftests are imported and for the session at configure; the same
#: text is parsed and checked once (a file changed in between is read anew). Policies and their
#: destinations are frozen, so one object serves both.
_READ: dict[tuple[type[Policy], str, str], Policy] = {}
_READ_LIMIT = 8


_DEST_KEYS = (
    "name",
    "hosts",
    "description",
    "when",
    "schemes",
    "ports",
    "methods",
    "paths",
    "payload",
    "min_interval",
    "group",
)
_PAYLOAD_KEYS = ("fields", "required", "match", "opaque_body")


def _unknown_key_message(key: str, known: Sequence[str], where: str = "") -> str:
    close = _close_matches(key, known)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(known)}"
    return f"unknown key {key!r}{f' in {where}' if where else ''}{hint}"


def _destination_from_table(raw: Any, where: str) -> Destination:
    if not isinstance(raw, dict):
        raise PolicyError("each [[destination]] must be a table", where)
    label = (
        f"destination {raw['name']!r}" if isinstance(raw.get("name"), str) else "[[destination]]"
    )
    for key in raw:
        if key not in _DEST_KEYS:
            raise PolicyError(f"{label}: {_unknown_key_message(key, _DEST_KEYS)}", where, key)
    for key in ("name", "hosts"):
        if key not in raw:
            example = 'name = "update-check"' if key == "name" else 'hosts = ["example.com"]'
            raise PolicyError(f"{label}: missing required key {key!r} (e.g. {example})", where)
    payload = None
    if "payload" in raw:
        praw = raw["payload"]
        if not isinstance(praw, dict):
            raise PolicyError(
                f"{label}: payload must be a table: [destination.payload]", where, "payload"
            )
        for key in praw:
            if key not in _PAYLOAD_KEYS:
                msg = _unknown_key_message(key, _PAYLOAD_KEYS, "[destination.payload]")
                raise PolicyError(f"{label}: {msg}", where, f"payload.{key}")
        try:
            payload = Payload(**praw)
        except PolicyError as exc:
            raise PolicyError(f"{label}: {exc.message}", where, exc.key) from None
        except TypeError as exc:
            raise PolicyError(f"{label}: payload: {exc}", where, "payload") from None
    kwargs = {k: v for k, v in raw.items() if k != "payload"}
    return Destination(**kwargs, payload=payload, source=where)


_TABLE_RE = re.compile(r"^\s*\[\[\s*destination\s*\]\]")
_KEY_PART = r"""(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')"""
_DOTTED = rf"{_KEY_PART}(?:\s*\.\s*{_KEY_PART})*"
_HEADER_RE = re.compile(rf"^\s*\[\[?\s*({_DOTTED})\s*\]\]?\s*(?:#.*)?$")
_KEY_RE = re.compile(rf"^\s*({_DOTTED})\s*=")
_PART_RE = re.compile(_KEY_PART)


class _KeyLines:
    """Where a policy file writes each destination and each key, for errors that point at
    the key at fault (``outbound.toml:7``), not at its table's header. Read from the text
    (``tomllib`` keeps no positions): a key line is ``key =`` under its table's header, a
    dotted key (``payload.fields =``) or an inline table (``payload = {...}``, its line)."""

    def __init__(self, text: str, source: str) -> None:
        self.source = source
        self.lines = text.splitlines()
        #: 0-based line of each ``[[destination]]`` header, in order.
        self.headers = [n for n, line in enumerate(self.lines) if _TABLE_RE.match(line)]

    def _at(self, line: int | None) -> str:
        return f"{self.source}:{line + 1}" if line is not None else self.source

    def destination(self, index: int) -> str:
        """``file:line`` of the ``index``-th ``[[destination]]`` header."""
        if index < len(self.headers):
            return self._at(self.headers[index])
        return self.key(None, "destination")  # an inline array of tables

    def key(self, index: int | None, key: str) -> str:
        """``file:line`` of ``key`` (a dotted path: ``payload.match.version``) in the
        ``index``-th destination (``None``: at the top level); else of the nearest table or
        key above it that holds it; else of the destination's header."""
        if index is None:
            start, end, table, wanted = 0, len(self.lines), "", key
        elif index < len(self.headers):
            start = self.headers[index]
            end = self.headers[index + 1] if index + 1 < len(self.headers) else len(self.lines)
            table, wanted = "destination", f"destination.{key}"
        else:  # an inline array of tables: its line
            return self.key(None, "destination")
        best, best_depth = (start if index is not None else None), 0
        for n in range(start, end):
            line = self.lines[n]
            header = _HEADER_RE.match(line)
            if header is not None:
                table = _dotted(header.group(1))
                full = table
            else:
                found = _KEY_RE.match(line)
                if found is None:
                    continue
                full = f"{table}.{_dotted(found.group(1))}" if table else _dotted(found.group(1))
            if full == wanted:
                return self._at(n)
            if wanted.startswith(f"{full}.") and full.count(".") + 1 > best_depth:
                best, best_depth = n, full.count(".") + 1
        return self._at(best)


def _dotted(text: str) -> str:
    """A TOML dotted key as one string: ``destination . "payload"`` -> ``destination.payload``."""
    return ".".join(part.strip("\"'") for part in _PART_RE.findall(text))


def _toml_error_source(source: str, exc: tomllib.TOMLDecodeError) -> str:
    lineno = getattr(exc, "lineno", None)
    if lineno is None:
        m = re.search(r"line (\d+)", str(exc))
        lineno = int(m.group(1)) if m else None
    return f"{source}:{lineno}" if lineno else source


def _close_matches(word: str, choices: Iterable[str]) -> list[str]:
    """The closest of ``choices`` for a "did you mean" (difflib imported only for a mistake)."""
    import difflib

    return difflib.get_close_matches(word, list(choices), n=1)
