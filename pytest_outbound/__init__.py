"""pytest-outbound: make a program's network egress a tested fact.

Document the destinations your code may contact (a TOML policy or a conftest hook); the test
suite then records, and in ``enforce`` mode blocks, every request that goes anywhere else.
"""

from pytest_outbound._errors import OutboundBlocked, OutboundError, PolicyError
from pytest_outbound._policy import Destination, Payload, Policy
from pytest_outbound._record import OutboundRequest
from pytest_outbound._version import __version__

__all__ = [
    "Destination",
    "OutboundBlocked",
    "OutboundError",
    "OutboundRequest",
    "Payload",
    "Policy",
    "PolicyError",
    "__version__",
]
