"""The ``outbound`` fixture object: this test's requests, assertions, allows and stubs (SPEC §4)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pytest_outbound._decide import Entry, resolve_entry
from pytest_outbound._errors import PolicyError
from pytest_outbound._guard import Scope
from pytest_outbound._policy import Payload
from pytest_outbound._record import OutboundRequest

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
        try:
            return resolve_entry(entry, self._scope.context.rules, f"outbound.{what}()")
        except PolicyError as exc:
            raise ValueError(str(exc)) from None

    def to(self, entry: str) -> list[OutboundRequest]:
        """The requests of this test that went to ``entry`` (destination name or host pattern)."""
        resolved = self._entry(entry, "to")
        return [r for r in self._scope.records if resolved.covers(r)]

    def assert_contacted(self, entry: str, count: int | None = None) -> None:
        """Fail unless ``entry`` was contacted (at least once, or exactly ``count`` times)."""
        found = self.to(entry)
        __tracebackhide__ = True
        if count is None and not found:
            raise AssertionError(
                f"{entry!r} was not contacted in this test\n{self._contacted_text()}"
            )
        if count is not None and len(found) != count:
            raise AssertionError(
                f"{entry!r} was contacted {len(found)} time(s), expected {count}\n"
                f"{self._contacted_text()}"
            )

    def assert_not_contacted(self, entry: str) -> None:
        """Fail if ``entry`` was contacted in this test."""
        found = self.to(entry)
        __tracebackhide__ = True
        if found:
            lines = "\n".join(f"  {r.method} {r.url} ({r.location})" for r in found)
            raise AssertionError(f"{entry!r} was contacted {len(found)} time(s):\n{lines}")

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
        found = self.to(entry)
        if not found:
            raise AssertionError(
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
            raise AssertionError(
                f"{len(problems)} of {len(found)} request(s) to {entry!r} break the payload"
                " contract:\n" + "\n".join(problems)
            )

    def allow(self, *entries: str) -> None:
        """Permit these destinations or host patterns too, from now on, in this test."""
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

    def _contacted_text(self) -> str:
        if not self._scope.records:
            return "no outbound requests were made in this test"
        lines = [
            f"  {r.method} {r.url} -> {r.destination or 'undocumented'}"
            for r in self._scope.records
        ]
        return "requests made in this test:\n" + "\n".join(lines)
