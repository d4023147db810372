"""pytest-outbound: make a program's network egress a tested fact.

Document the destinations your code may contact (a TOML policy or a conftest hook); the test
suite then records, and in ``enforce`` mode blocks, every request that goes anywhere else.

PYTEST_DONT_REWRITE: in a Python child (a pytest-xdist worker) the bootstrap's guard imports
this package before that child's pytest marks it for assertion rewriting; this marker keeps
pytest from warning that it is already imported (``filterwarnings = error`` made that warning
crash every worker). The package's code needs no rewritten asserts, and its submodules are
not rewritten either (``_PlainImports``).
"""

import importlib.machinery as _machinery
import sys as _sys
from collections.abc import Sequence as _Sequence


class _PlainImports:
    """Finds this package's submodules as the import system does without pytest.

    pytest marks every module of an installed plugin for assertion rewriting; a marked module
    is parsed, rewritten and compiled from source, and where pytest cannot cache the result
    (``PYTHONDONTWRITEBYTECODE``, a read-only site-packages) that happens in every process at
    every start: 0.15 s of CPU a process for this package, three times a run under
    ``-n 2``. Put before pytest's import hook, this finder hands the submodules to the path
    finder, which loads them from their compiled files. Any other name costs one string
    comparison."""

    @staticmethod
    def find_spec(
        name: str, path: _Sequence[str] | None = None, target: object = None
    ) -> _machinery.ModuleSpec | None:
        if not name.startswith("pytest_outbound."):
            return None
        return _machinery.PathFinder.find_spec(name, path)


if _PlainImports not in _sys.meta_path:
    _sys.meta_path.insert(0, _PlainImports)

# (after the finder: these are the first submodules imported)
from pytest_outbound._errors import OutboundBlocked, OutboundError, PolicyError  # noqa: E402
from pytest_outbound._policy import Destination, Payload, Policy  # noqa: E402
from pytest_outbound._record import OutboundRequest  # noqa: E402
from pytest_outbound._version import __version__  # noqa: E402

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
