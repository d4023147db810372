"""Downloading a package from a NuGet v3 feed, shared by the server and the agent.

Two GETs to the feed's host: the service index, then the ``.nupkg`` from its
``PackageBaseAddress`` (for the default feed both are on ``api.nuget.org``).
"""

from __future__ import annotations

from dataclasses import dataclass

import requests

DEFAULT_FEED = "https://api.nuget.org/v3/index.json"


@dataclass(frozen=True)
class Package:
    """A package to deploy: its id, its version and the ``.nupkg`` bytes."""

    id: str
    version: str
    content: bytes

    @property
    def filename(self) -> str:
        return f"{self.id}.{self.version}.nupkg"


def download(
    http: requests.Session, feed: str, package_id: str, version: str, *, timeout: float
) -> Package:
    """Fetch ``package_id`` ``version`` from the NuGet v3 feed whose service index is ``feed``."""
    index = http.get(feed, timeout=timeout)
    index.raise_for_status()
    base = next(
        r["@id"]
        for r in index.json()["resources"]
        if str(r["@type"]).startswith("PackageBaseAddress")
    )
    lid, lver = package_id.lower(), version.lower()
    nupkg = http.get(f"{base.rstrip('/')}/{lid}/{lver}/{lid}.{lver}.nupkg", timeout=timeout)
    nupkg.raise_for_status()
    return Package(package_id, version, nupkg.content)
