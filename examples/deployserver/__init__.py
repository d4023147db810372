"""A miniature deployment server and agent that make exactly the outbound requests documented on
the vendor page ``shared/seed/outbound-requests.md`` ("Outbound requests"), and nothing else.

``deployserver.server`` is the Octopus Server side, ``deployserver.agent`` the Tentacle side;
``outbound.toml`` beside this file is that page as a pytest-outbound policy.
"""

from deployserver.agent import Agent, AgentSettings, PackageNotAvailable
from deployserver.nuget import DEFAULT_FEED, Package
from deployserver.server import (
    AzureWebApp,
    ListeningTentacle,
    Server,
    ServerSettings,
    UpdateCheck,
)

__all__ = [
    "DEFAULT_FEED",
    "Agent",
    "AgentSettings",
    "AzureWebApp",
    "ListeningTentacle",
    "Package",
    "PackageNotAvailable",
    "Server",
    "ServerSettings",
    "UpdateCheck",
]
