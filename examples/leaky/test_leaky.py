"""The same expectations as tests/, run against LeakyServer: both tests fail (on purpose).

Expected violations: the update check's extra ``os`` field (payload contract), the hostname in
its User-Agent (sensitive value), and the POST to analytics.example-telemetry.com (undocumented).
"""

from __future__ import annotations

import pytest

from deployserver import ServerSettings
from leaky.app import LeakyServer


@pytest.mark.outbound_only("update-check")
def test_update_check_sends_only_the_version_and_installation_id(outbound, settings):
    outbound.stub("update-check", json={"latestVersion": "2024.2.0"})

    assert LeakyServer(settings).check_for_updates().checked


def test_opting_out_sends_nothing_anywhere(outbound, settings: ServerSettings):
    settings.check_for_updates = False
    settings.community_step_templates = False

    LeakyServer(settings).run_scheduled_tasks()  # the blocked telemetry is swallowed...

    # ...and these assertions pass, but pytest-outbound fails the test anyway.
    outbound.assert_not_contacted("octopus.com")
    outbound.assert_not_contacted("library.octopus.com")
