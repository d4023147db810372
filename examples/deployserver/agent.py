"""The deployment agent ("Tentacle") and every outbound request it makes.

The seed page, "Outbound requests by Tentacle", lists four; each has one method here (all
through requests):

- certificate revocation list checking, a security feature of .NET (``is_revoked``);
- automatic root certificate updates, again triggered by .NET (``update_root_certificates``);
- NuGet package downloads, only with the "Tentacle downloads directly from NuGet" option
  (``obtain_package``);
- connections back to the server, only in polling mode (``poll``, ``obtain_package``).

In the default listening mode the agent never connects out to the server: the server connects
to it and pushes packages (``receive_package``).

.NET makes the first two requests itself; they are modelled here as the plain HTTP GETs it
sends (CRLs and certificate trust lists are signed files, fetched over ``http``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

import requests

from deployserver import nuget
from deployserver.nuget import Package

DEFAULT_CRL_URLS = (
    "http://crl.microsoft.com/pki/crl/products/MicRooCerAut2011_2011_03_22.crl",
    "http://crl3.digicert.com/DigiCertGlobalRootG2.crl",
)
ROOT_CERTIFICATE_LIST_URL = (
    "http://ctldl.windowsupdate.com/msdownload/update/v3/static/trustedr/en/authrootstl.cab"
)


class PackageNotAvailable(LookupError):
    """A listening agent was asked for a package the server has not pushed."""


@dataclass
class AgentSettings:
    """The agent's configuration, with the seed page's defaults."""

    mode: Literal["listening", "polling"] = "listening"
    server_url: str = ""  # polling mode only, e.g. "https://octopus.acme.internal:10943"
    subscription_id: str = field(default_factory=lambda: f"poll://{uuid.uuid4().hex[:20]}/")
    download_directly_from_nuget: bool = False
    nuget_feed: str = nuget.DEFAULT_FEED
    crl_urls: tuple[str, ...] = DEFAULT_CRL_URLS
    root_certificate_list_url: str = ROOT_CERTIFICATE_LIST_URL
    timeout: float = 10.0

    def __post_init__(self) -> None:
        if self.mode == "polling" and not self.server_url:
            raise ValueError("a polling agent needs server_url")


class Agent:
    """The deployment agent."""

    def __init__(self, settings: AgentSettings | None = None) -> None:
        self.settings = settings or AgentSettings()
        self.http = requests.Session()
        self.http.headers["User-Agent"] = "Tentacle"
        self.inbox: dict[str, Package] = {}

    # Listening mode: the server connects to us ---------------------------------------------

    def receive_package(self, package: Package) -> None:
        """The server pushed ``package`` (no outbound request)."""
        self.inbox[package.filename] = package

    # Polling mode: connections back to the server ------------------------------------------

    def poll(self) -> list[dict[str, Any]]:
        """Ask the server for work. A listening agent has nothing to ask: it waits."""
        if self.settings.mode != "polling":
            return []
        response = self.http.get(
            f"{self.settings.server_url}/poll",
            params={"subscriptionId": self.settings.subscription_id},
            timeout=self.settings.timeout,
        )
        response.raise_for_status()
        work: list[dict[str, Any]] = response.json()["work"]
        return work

    # Packages: from NuGet (option), pushed by the server, or fetched from it (polling) -------

    def obtain_package(self, package_id: str, version: str) -> Package:
        settings = self.settings
        if settings.download_directly_from_nuget:
            return nuget.download(
                self.http, settings.nuget_feed, package_id, version, timeout=settings.timeout
            )
        wanted = Package(package_id, version, b"").filename
        if wanted in self.inbox:
            return self.inbox[wanted]
        if settings.mode == "polling":
            response = self.http.get(
                f"{settings.server_url}/packages/{wanted}", timeout=settings.timeout
            )
            response.raise_for_status()
            return Package(package_id, version, response.content)
        raise PackageNotAvailable(f"the server has not pushed {wanted}")

    # .NET: certificate revocation lists and root certificate updates -----------------------

    def is_revoked(self, serial: str) -> bool:
        """Whether certificate ``serial`` is on any of the revocation lists.

        Model: a list is one hex serial number per line (.NET parses the real DER format).
        """
        for url in self.settings.crl_urls:
            response = self.http.get(url, timeout=self.settings.timeout)
            response.raise_for_status()
            revoked = {line.strip().lower() for line in response.text.splitlines()}
            if serial.lower() in revoked:
                return True
        return False

    def update_root_certificates(self) -> bytes:
        """Download the current trusted root certificate list (a signed ``.cab``)."""
        response = self.http.get(
            self.settings.root_certificate_list_url, timeout=self.settings.timeout
        )
        response.raise_for_status()
        return response.content
