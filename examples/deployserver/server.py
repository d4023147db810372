"""The deployment server ("Octopus Server") and every outbound request it makes.

The seed page, "Outbound requests by Octopus", lists five; each has one method here:

1. pushing packages and deployment instructions to Tentacles, and checking their health
   (``deploy`` to a ``ListeningTentacle``, ``check_health``; requests);
2. downloading packages from the NuGet feeds you configure (``download_package``; requests);
3. Windows Azure traffic, only when deploying to an Azure target (``deploy`` to an
   ``AzureWebApp``; httpx);
4. checking for updates, if enabled: the version number and a unique installation ID, at most
   every 8 hours (``check_for_updates``; httpx);
5. checking for updated community step templates on library.octopus.com, if enabled
   (``update_step_templates``; requests).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import requests

from deployserver import nuget
from deployserver.nuget import Package

UPDATE_CHECK_URL = "https://octopus.com/api/updates/check"
UPDATE_CHECK_INTERVAL = 8 * 60 * 60  # seconds: "every 8 hours"
STEP_TEMPLATES_URL = "https://library.octopus.com/api/step-templates"
AZURE_LOGIN = "https://login.microsoftonline.com"
AZURE_MANAGEMENT = "https://management.azure.com"


@dataclass
class ServerSettings:
    """The server's configuration, with the seed page's defaults."""

    home: Path  # where the installation keeps its state (installation ID, last update check)
    version: str = "2024.1.3"
    check_for_updates: bool = True  # Configuration > Settings > Updates (opt-out)
    community_step_templates: bool = True
    nuget_feeds: tuple[str, ...] = (nuget.DEFAULT_FEED,)
    timeout: float = 10.0


@dataclass(frozen=True)
class ListeningTentacle:
    """A deployment target whose agent listens; the server connects to it."""

    host: str
    port: int = 10933

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"


@dataclass(frozen=True)
class AzureWebApp:
    """An Azure App Service deployment target, reached with a service principal."""

    subscription_id: str
    resource_group: str
    site: str
    tenant_id: str
    client_id: str
    client_secret: str = field(repr=False)


@dataclass(frozen=True)
class UpdateCheck:
    """The outcome of ``check_for_updates``: ``checked`` is False when no request was made."""

    checked: bool
    latest_version: str | None = None
    skipped: str = ""  # why no request was made


@dataclass
class Installation:
    """One installation's identity: a UUID generated once, kept in ``home/installation.json``."""

    id: str
    last_update_check: float | None = None

    @classmethod
    def load(cls, home: Path) -> Installation:
        path = home / "installation.json"
        if path.exists():
            data = json.loads(path.read_text())
            return cls(data["installationId"], data.get("lastUpdateCheck"))
        installation = cls(str(uuid.uuid4()))
        installation.save(home)
        return installation

    def save(self, home: Path) -> None:
        home.mkdir(parents=True, exist_ok=True)
        data = {"installationId": self.id, "lastUpdateCheck": self.last_update_check}
        (home / "installation.json").write_text(json.dumps(data))


class Server:
    """The deployment server. Uses requests for Tentacles, NuGet and the step template library,
    and httpx for the update check and Azure."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.installation = Installation.load(settings.home)
        self.http = requests.Session()
        self.http.headers["User-Agent"] = self.user_agent()
        self.client = httpx.Client(
            headers={"User-Agent": self.user_agent()}, timeout=settings.timeout
        )

    def user_agent(self) -> str:
        return f"OctopusServer/{self.settings.version}"

    # 4. Checking for updates (if enabled) -------------------------------------------------

    def update_check_query(self) -> dict[str, str]:
        """Everything the update check sends: the version number and the installation ID."""
        return {"version": self.settings.version, "installationId": self.installation.id}

    def check_for_updates(self) -> UpdateCheck:
        """HTTPS GET to octopus.com, unless opted out or already done in the last 8 hours."""
        if not self.settings.check_for_updates:
            return UpdateCheck(False, skipped="checking for updates is turned off")
        now = time.time()
        last = self.installation.last_update_check
        if last is not None and now - last < UPDATE_CHECK_INTERVAL:
            wait = (last + UPDATE_CHECK_INTERVAL - now) / 3600
            return UpdateCheck(False, skipped=f"checked less than 8 hours ago; next in {wait:.1f}h")
        response = self.client.get(UPDATE_CHECK_URL, params=self.update_check_query())
        response.raise_for_status()
        self.installation.last_update_check = now
        self.installation.save(self.settings.home)
        return UpdateCheck(True, latest_version=response.json()["latestVersion"])

    # 5. Community step templates (if enabled) ---------------------------------------------

    def update_step_templates(self) -> list[dict[str, str]] | None:
        """The community step templates from library.octopus.com, or None when disabled."""
        if not self.settings.community_step_templates:
            return None
        response = self.http.get(STEP_TEMPLATES_URL, timeout=self.settings.timeout)
        response.raise_for_status()
        templates: list[dict[str, str]] = response.json()
        return templates

    def run_scheduled_tasks(self) -> UpdateCheck:
        """What the server does on its timer: the update check and the template refresh."""
        result = self.check_for_updates()
        self.update_step_templates()
        return result

    # 2. Downloading packages from the NuGet feeds you configure ---------------------------

    def download_package(self, package_id: str, version: str) -> Package:
        """The package from the first configured feed that has it."""
        error: Exception | None = None
        for feed in self.settings.nuget_feeds:
            try:
                return nuget.download(
                    self.http, feed, package_id, version, timeout=self.settings.timeout
                )
            except requests.HTTPError as exc:
                error = exc
        raise LookupError(f"{package_id} {version} is in none of the feeds") from error

    # 1. Tentacles: health, packages, deployment instructions ------------------------------

    def check_health(self, tentacle: ListeningTentacle) -> bool:
        response = self.http.get(f"{tentacle.url}/health", timeout=self.settings.timeout)
        return response.ok and response.json().get("status") == "healthy"

    def deploy(self, package: Package, target: ListeningTentacle | AzureWebApp) -> str:
        """Deploy ``package`` to ``target``; returns the target's deployment/task id."""
        if isinstance(target, AzureWebApp):
            return self._deploy_to_azure(package, target)
        push = self.http.post(
            f"{target.url}/packages/{package.filename}",
            data=package.content,
            headers={"Content-Type": "application/octet-stream"},
            timeout=self.settings.timeout,
        )
        push.raise_for_status()
        instructions = {"package": package.filename, "script": "Deploy.ps1"}
        run = self.http.post(
            f"{target.url}/scripts", json=instructions, timeout=self.settings.timeout
        )
        run.raise_for_status()
        task_id: str = run.json()["taskId"]
        return task_id

    # 3. Windows Azure traffic (only when deploying to an Azure target) --------------------

    def _deploy_to_azure(self, package: Package, app: AzureWebApp) -> str:
        token = self.client.post(
            f"{AZURE_LOGIN}/{app.tenant_id}/oauth2/v2.0/token",
            data={
                "grant_type": "client_credentials",
                "client_id": app.client_id,
                "client_secret": app.client_secret,
                "scope": f"{AZURE_MANAGEMENT}/.default",
            },
        )
        token.raise_for_status()
        auth = {"Authorization": f"Bearer {token.json()['access_token']}"}
        site = self.client.get(
            f"{AZURE_MANAGEMENT}/subscriptions/{app.subscription_id}"
            f"/resourceGroups/{app.resource_group}/providers/Microsoft.Web/sites/{app.site}",
            params={"api-version": "2022-03-01"},
            headers=auth,
        )
        site.raise_for_status()
        scm_host = next(
            s["name"]
            for s in site.json()["properties"]["hostNameSslStates"]
            if s["hostType"] == "Repository"
        )
        upload = self.client.post(
            f"https://{scm_host}/api/zipdeploy",
            content=package.content,
            headers={**auth, "Content-Type": "application/zip"},
        )
        upload.raise_for_status()
        location: str = upload.headers.get("Location", f"https://{scm_host}/api/deployments/latest")
        return location
