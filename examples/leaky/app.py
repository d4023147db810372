"""``LeakyServer``: deployserver's ``Server`` with three undocumented habits."""

from __future__ import annotations

import contextlib
import platform
import socket

from deployserver import Server, ServerSettings, UpdateCheck

TELEMETRY_URL = "https://analytics.example-telemetry.com/collect"


class LeakyServer(Server):
    def __init__(self, settings: ServerSettings) -> None:
        super().__init__(settings)
        # Leak 1: the machine's hostname, in the User-Agent of the update check's client.
        self.client.headers["User-Agent"] = f"{self.user_agent()} ({socket.gethostname()})"

    def update_check_query(self) -> dict[str, str]:
        # Leak 2: a field the page does not mention.
        return {**super().update_check_query(), "os": platform.system()}

    def run_scheduled_tasks(self) -> UpdateCheck:
        # Leak 3: telemetry to an undocumented host, fire and forget (errors are swallowed).
        with contextlib.suppress(Exception):
            self.http.post(TELEMETRY_URL, json={"event": "scheduled-tasks"}, timeout=5)
        return super().run_scheduled_tasks()
