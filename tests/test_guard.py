"""The runtime guard, tested directly (no pytest plugin involved): what counts as contact for
``min_interval``, and what a record keeps of a body larger than the cap."""

from __future__ import annotations

import json
from pathlib import Path

from pytest_outbound import Destination, OutboundBlocked, Policy
from pytest_outbound._decide import Context, Rules
from pytest_outbound._guard import AUDIT, ENFORCE, Guard
from pytest_outbound._policy import Payload
from pytest_outbound._record import build_request

UPDATE = Destination(
    "update", ("octopus.com",), payload=Payload(fields=("version",)), min_interval="8h"
)
GOOD = "https://octopus.com/check?version=1"
LEAKY = "https://octopus.com/check?version=1&hostname=build-07"


def guard(mode: str, body_limit: int = 1024) -> Guard:
    rules = Rules(Policy((UPDATE,)))
    return Guard(mode=mode, context=Context(rules), rootpath=Path(), body_limit=body_limit)


def observe(g: Guard, url: str) -> list[str]:
    """The request's reasons; what enforce mode raised, or what audit mode recorded."""
    request = build_request("GET", url, client="requests", body_limit=g.body_limit)
    try:
        g.observe(request)
    except OutboundBlocked as exc:
        return list(exc.reasons)
    return request.reasons


def test_a_request_blocked_in_enforce_mode_was_no_contact() -> None:
    """Blocked, it never left: the destination's min_interval starts at the first one sent."""
    g = guard(ENFORCE)
    assert observe(g, LEAKY) == ["payload:extra:hostname"]
    assert observe(g, GOOD) == []
    assert observe(g, GOOD) == ["interval"]


def test_a_violation_in_audit_mode_was_sent_and_counts_as_contact() -> None:
    g = guard(AUDIT)
    assert observe(g, LEAKY) == ["payload:extra:hostname"]
    assert observe(g, GOOD) == ["interval"]


def test_fields_come_from_the_whole_body_though_the_record_keeps_it_capped() -> None:
    g = guard(AUDIT, body_limit=16)
    body = json.dumps({"version": "2024.1.3", "installationId": "x" * 40}).encode()
    request = build_request(
        "POST",
        "https://api.example.com/v1",
        headers={"Content-Type": "application/json"},
        body=body,
        client="requests",
        body_limit=g.body_limit,
    )
    g.observe(request)
    assert (len(request.body), request.body_size) == (16, len(body))
    assert request.fields == ("version", "installationId")
