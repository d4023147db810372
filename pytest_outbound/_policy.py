"""The policy model: documented destinations, their payload contracts, and loading them from TOML.

Pure: no pytest, no patching. Every fault raises ``PolicyError`` naming where it came from
(``outbound.toml:12``), which destination, and what to write instead.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_outbound._errors import PolicyError
from pytest_outbound._hosts import HostError, HostPattern

if TYPE_CHECKING:
    import tomllib

NAMED_FORMATS = ("uuid", "semver", "int", "iso8601")

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_WORD_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_METHOD_RE = re.compile(r"^[A-Z]+$")
_SCHEME_RE = re.compile(r"^[a-z][a-z0-9+.-]*$")


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
                object.__setattr__(self, "fields", _strings(self.fields, "fields"))
            object.__setattr__(self, "required", _strings(self.required, "required"))
            if not isinstance(self.match, Mapping):
                raise ValueError("match must be a table of field = format")
            match = dict(self.match)
            for name, pattern in match.items():
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
            object.__setattr__(self, "match", match)
            if not isinstance(self.opaque_body, bool):
                raise ValueError("opaque_body must be true or false")
        except ValueError as exc:
            raise PolicyError(f"payload: {exc}") from None
        if self.fields is not None:
            allowed = set(self.fields)
            for name in (*self.required, *self.match):
                if name not in allowed:
                    raise PolicyError(
                        f"payload: {name!r} is required or matched but not listed in fields;"
                        f" add it to fields = [...]"
                    )


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
        except (ValueError, HostError) as exc:
            raise PolicyError(f"{where}: {exc}", self.source) from None
        except PolicyError as exc:
            raise PolicyError(f"{where}: {exc.message}", self.source) from None

    def _validate(self) -> None:
        if not isinstance(self.name, str) or not _NAME_RE.match(self.name):
            raise ValueError(
                "name must be a non-empty identifier of letters, digits, '-', '_', '.', ':'"
                ' (e.g. name = "update-check")'
            )
        hosts = _strings(self.hosts, "hosts")
        if not hosts:
            raise ValueError(
                'hosts must name at least one host pattern, e.g. hosts = ["example.com"]'
            )
        for text in hosts:
            HostPattern.parse(text)
        object.__setattr__(self, "hosts", hosts)
        for attr in ("description", "when", "group"):
            if not isinstance(getattr(self, attr), str):
                raise ValueError(f"{attr} must be a string")
        schemes = tuple(s.lower() for s in _strings(self.schemes, "schemes"))
        for s in schemes:
            if not _SCHEME_RE.match(s):
                raise ValueError(f'schemes: {s!r} is not a URL scheme (e.g. "https")')
        object.__setattr__(self, "schemes", schemes)
        ports = tuple(self.ports) if not isinstance(self.ports, int | str) else (self.ports,)
        for port in ports:
            if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
                raise ValueError(f"ports: {port!r} is not a port number from 1 to 65535")
        object.__setattr__(self, "ports", ports)
        methods = tuple(m.upper() for m in _strings(self.methods, "methods"))
        for m in methods:
            if not _METHOD_RE.match(m):
                raise ValueError(f'methods: {m!r} is not an HTTP method (e.g. "GET")')
        object.__setattr__(self, "methods", methods)
        paths = _strings(self.paths, "paths")
        for p in paths:
            if not p.startswith("/"):
                raise ValueError(f"paths: {p!r} must start with '/' (e.g. \"/api/*/check\")")
        object.__setattr__(self, "paths", paths)
        if self.payload is not None and not isinstance(self.payload, Payload):
            raise ValueError("payload must be a Payload(...)")
        if self.min_interval is not None:
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
        lines = _table_lines(text)
        unknown = sorted(set(data) - {"destination", "allow"})
        if unknown:
            raise PolicyError(
                f"unknown top-level key {unknown[0]!r}; a policy file holds [[destination]]"
                " tables and an optional allow = [...] list",
                source,
            )
        raw_dests = data.get("destination", [])
        if not isinstance(raw_dests, list):
            raise PolicyError(
                "'destination' must be an array of tables: write [[destination]]", source
            )
        dests = []
        for index, raw in enumerate(raw_dests):
            line = lines[index] if index < len(lines) else None
            where = f"{source}:{line}" if line else source
            dests.append(_destination_from_table(raw, where))
        allowed: Sequence[str] = ()
        if "allow" in data:
            try:
                allowed = _strings(data["allow"], "allow")
            except ValueError as exc:
                raise PolicyError(str(exc), source) from None
        try:
            return cls(tuple(dests), tuple(allowed))
        except PolicyError as exc:
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
            raise PolicyError(f"{label}: {_unknown_key_message(key, _DEST_KEYS)}", where)
    for key in ("name", "hosts"):
        if key not in raw:
            example = 'name = "update-check"' if key == "name" else 'hosts = ["example.com"]'
            raise PolicyError(f"{label}: missing required key {key!r} (e.g. {example})", where)
    payload = None
    if "payload" in raw:
        praw = raw["payload"]
        if not isinstance(praw, dict):
            raise PolicyError(f"{label}: payload must be a table: [destination.payload]", where)
        for key in praw:
            if key not in _PAYLOAD_KEYS:
                msg = _unknown_key_message(key, _PAYLOAD_KEYS, "[destination.payload]")
                raise PolicyError(f"{label}: {msg}", where)
        try:
            payload = Payload(**praw)
        except PolicyError as exc:
            raise PolicyError(f"{label}: {exc.message}", where) from None
        except TypeError as exc:
            raise PolicyError(f"{label}: payload: {exc}", where) from None
    kwargs = {k: v for k, v in raw.items() if k != "payload"}
    return Destination(**kwargs, payload=payload, source=where)


_TABLE_RE = re.compile(r"^\s*\[\[\s*destination\s*\]\]")


def _table_lines(text: str) -> list[int]:
    """1-based line numbers of each ``[[destination]]`` header, in order."""
    return [no for no, line in enumerate(text.splitlines(), 1) if _TABLE_RE.match(line)]


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
