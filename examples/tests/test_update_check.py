"""Seed page: "What information is included when Octopus checks for updates?"

An HTTPS request to octopus.com every 8 hours (unless opted out) carrying the version number and
a unique installation ID, and nothing else.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from deployserver import Server, ServerSettings

LATEST = {"latestVersion": "2024.2.0"}


@pytest.mark.outbound_only("update-check")
def test_update_check_sends_only_the_version_and_installation_id(outbound, server):
    outbound.stub("update-check", json=LATEST)

    result = server.check_for_updates()

    assert result.checked
    assert result.latest_version == "2024.2.0"
    [request] = outbound.to("update-check")
    assert (request.method, request.scheme, request.client) == ("GET", "https", "httpx")
    assert sorted(request.fields) == ["installationId", "version"]
    assert request.query == {"version": ["2024.1.3"], "installationId": [server.installation.id]}
    assert uuid.UUID(server.installation.id).version == 4


def test_update_check_goes_to_octopus_com_itself(outbound, server):
    """octopus.com is hosted on Azure, but the request is addressed to octopus.com, not Azure."""
    outbound.stub("update-check", json=LATEST)

    server.check_for_updates()

    assert [r.host for r in outbound.requests] == ["octopus.com"]
    outbound.assert_not_contacted("azure")


@pytest.mark.outbound_none
def test_the_installation_id_is_generated_once_per_installation(tmp_path: Path):
    first = Server(ServerSettings(home=tmp_path / "one"))
    restarted = Server(ServerSettings(home=tmp_path / "one"))
    other = Server(ServerSettings(home=tmp_path / "two"))

    assert first.installation.id == restarted.installation.id
    assert first.installation.id != other.installation.id


@pytest.mark.outbound_expect("update-check", count=2)
def test_the_server_refuses_to_check_twice_within_8_hours(outbound, server, time_machine):
    time_machine.move_to(datetime(2024, 3, 1, 9, 0, tzinfo=UTC), tick=False)
    outbound.stub("update-check", json=LATEST)
    assert server.check_for_updates().checked

    time_machine.shift(timedelta(hours=7, minutes=59))
    again = server.check_for_updates()
    assert not again.checked
    assert "less than 8 hours ago" in again.skipped
    assert not Server(server.settings).check_for_updates().checked  # a restart remembers

    time_machine.shift(timedelta(minutes=1))
    assert server.check_for_updates().checked

    first, second = outbound.to("update-check")
    assert second.time - first.time == 8 * 60 * 60


@pytest.mark.outbound_none
def test_opting_out_sends_nothing_to_the_vendor(settings: ServerSettings):
    settings.check_for_updates = False
    settings.community_step_templates = False

    result = Server(settings).run_scheduled_tasks()

    assert not result.checked
    assert result.skipped == "checking for updates is turned off"
