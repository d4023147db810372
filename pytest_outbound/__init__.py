"""pytest-outbound: make a program's network egress a tested fact.

Document the destinations your code may contact (a TOML policy or a conftest hook); the test
suite then records, and in ``enforce`` mode blocks, every request that goes anywhere else.

PYTEST_DONT_REWRITE: in a Python child (a pytest-xdist worker) the bootstrap's guard imports
this package before that child's pytest marks it for assertion rewriting; this marker keeps
pytest from warning that it is already imported (``filterwarnings = error`` made that warning
crash every worker). The package's code needs no rewritten asserts.
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
