"""The ``outbound`` fixture object: this test's requests, assertions, allows and stubs (SPEC §4)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pytest_outbound._decide import Entry, resolve_entry
from pytest_outbound._errors import OutboundBlocked, PolicyError
from pytest_outbound._guard import Scope
from pytest_outbound._policy import Payload
from pytest_outbound._record import EXPECTED_BLOCK, VIOLATION, OutboundRequest

if TYPE_CHECKING:
    from pytest_outbound._stubs import Stub


class Outbound:
    """What the test under way sent out, and the tools to shape and check it."""

    def __init__(self, scope: Scope) -> None:
        self._scope = scope

    def __repr__(self) -> str:
        return f"<outbound {self._scope.nodeid}: {len(self._scope.records)} requests>"

    @property
    def requests(self) -> list[OutboundRequest]:
        """The ``OutboundRequest``s of this test so far, in order (setup, call, teardown)."""
        return list(self._scope.records)

    def _entry(self, entry: str, what: str) -> Entry:
        """``entry`` resolved (SPEC §4); a mistake is a ``ValueError`` naming the call and the
        test ("did you mean 'update-check'?"), raised at the test's own line."""
        __tracebackhide__ = True
        try:
            return resolve_entry(entry, self._scope.context.rules, self._where(what))
        except PolicyError as exc:
            raise ValueError(str(exc)) from None

    def _where(self, what: str) -> str:
        return f"outbound.{what}() in {self._scope.nodeid}"

    def _to(self, entry: str, what: str) -> list[OutboundRequest]:
        __tracebackhide__ = True
        resolved = self._entry(entry, what)
        return [r for r in self._scope.records if resolved.covers(r)]

    def to(self, entry: str) -> list[OutboundRequest]:
        """The requests of this test that went to ``entry`` (destination name, host pattern,
        or ``"*"``: all of them)."""
        __tracebackhide__ = True
        return self._to(entry, "to")

    def assert_contacted(self, entry: str, count: int | None = None) -> None:
        """Fail unless ``entry`` was contacted (at least once, or exactly ``count`` times)."""
        __tracebackhide__ = True
        if count is not None and (
            not isinstance(count, int) or isinstance(count, bool) or count < 0
        ):
            raise ValueError(
                f"{self._where('assert_contacted')}: count must be a whole number"
                f" (or None: at least once), got {count!r}"
            )
        found = self._to(entry, "assert_contacted")
        if count is None and not found:
            raise self._failure(
                f"{entry!r} was not contacted in this test\n{self._contacted_text()}"
            )
        if count is not None and len(found) != count:
            raise self._failure(
                f"{entry!r} was contacted {len(found)} time(s), expected {count}\n"
                f"{self._contacted_text()}"
            )

    def assert_not_contacted(self, entry: str) -> None:
        """Fail if ``entry`` was contacted in this test."""
        __tracebackhide__ = True
        found = self._to(entry, "assert_not_contacted")
        if found:
            lines = "\n".join(f"  {r.method} {r.url} ({r.location})" for r in found)
            raise self._failure(f"{entry!r} was contacted {len(found)} time(s):\n{lines}")

    def assert_payload(
        self,
        entry: str,
        fields: Sequence[str] | None = None,
        required: Sequence[str] = (),
        match: Mapping[str, str] | None = None,
    ) -> None:
        """Fail unless every request to ``entry`` in this test keeps this ad-hoc contract.

        ``fields``: the only fields allowed; ``required``: fields that must be present;
        ``match``: per-field regex or named format (uuid, semver, int, iso8601).
        """
        __tracebackhide__ = True
        payload = Payload(
            fields=None if fields is None else tuple(fields),
            required=tuple(required),
            match=dict(match or {}),
        )
        found = self._to(entry, "assert_payload")
        if not found:
            raise self._failure(
                f"{entry!r} was not contacted in this test\n{self._contacted_text()}"
            )
        from pytest_outbound._contract import check_payload, format_contract_diff

        problems = []
        for request in found:
            values = request.field_values()
            breaches = check_payload(payload, values)
            if breaches:
                diff = format_contract_diff(payload, values, breaches, name=entry)
                problems.append(f"{request.method} {request.url} ({request.location}):\n{diff}")
        if problems:
            raise self._failure(
                f"{len(problems)} of {len(found)} request(s) to {entry!r} break the payload"
                " contract:\n" + "\n".join(problems)
            )

    @contextlib.contextmanager
    def expect_blocked(self, entry: str) -> Iterator[None]:
        """Assert that a request to ``entry`` is blocked inside the ``with`` block.

        It passes when requests to ``entry``, and only those, were blocked (in enforce the
        ``OutboundBlocked`` is caught here, whether the code let it through or caught it
        itself); it fails when nothing was, or when a request elsewhere was blocked too (that
        one fails the test as any block does). In audit, where nothing is blocked, the
        requests must be violations: the test means the same in both modes."""
        __tracebackhide__ = True
        resolved = self._entry(entry, "expect_blocked")
        scope = self._scope
        records, pending = len(scope.records), len(scope.pending)
        raised: BaseException | None = None
        try:
            yield
        except OutboundBlocked as exc:
            raised = exc
        violations = [r for r in scope.records[records:] if r.verdict == VIOLATION]
        expected = [r for r in violations if resolved.covers(r)]
        others = [r for r in violations if not resolved.covers(r)]
        if others or not expected:
            if raised is not None:
                raise raised
            if others:
                lines = "\n".join(f"  {r.method} {r.url} ({r.location})" for r in others)
                raise self._failure(
                    f"expected only requests to {entry!r} to be blocked; also blocked:\n{lines}"
                )
            raise self._failure(
                f"expected a request to {entry!r} to be blocked; none was\n{self._contacted_text()}"
            )
        for record in expected:  # what the test expected fails neither it nor the run
            record.reasons = [*record.reasons, EXPECTED_BLOCK]
        del scope.pending[pending:]

    def allow(self, *entries: str) -> None:
        """Permit these destinations or host patterns too, from now on, in this test
        (``"*"``: any destination)."""
        __tracebackhide__ = True
        if not entries:
            raise ValueError(
                f"{self._where('allow')}: name at least one destination or host pattern"
                " ('*' allows any destination)"
            )
        resolved = [self._entry(e, "allow") for e in entries]
        self._scope.context = self._scope.context.with_allowed(resolved)

    def stub(
        self,
        entry: str,
        *,
        method: str = "GET",
        status: int = 200,
        json: Any = None,
        body: str | bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Stub:
        """Answer matching requests from requests and httpx clients with this response.

        The request is still judged by the policy first: stubbing does not document it.
        """
        __tracebackhide__ = True
        from pytest_outbound._stubs import Stub  # responses and respx, only when stubbing

        stub = Stub(
            self._entry(entry, "stub"),
            method=method,
            status=status,
            json=json,
            body=body,
            headers=headers,
        )
        self._scope.stubs.append(stub)
        return stub

    def _failure(self, text: str) -> AssertionError:
        """An assertion's failure, its URLs shown as every output shows them: sensitive
        values and URL passwords masked."""
        from pytest_outbound._sensitive import masker_of

        return AssertionError(masker_of(self._scope.context.rules.scanner)(text))

    def _contacted_text(self) -> str:
        if not self._scope.records:
            return "no outbound requests were made in this test"
        lines = [
            f"  {r.method} {r.url} -> {r.destination or 'undocumented'}"
            for r in self._scope.records
        ]
        return "requests made in this test:\n" + "\n".join(lines)
