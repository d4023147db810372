"""Reading an inner (pytester) run's output the same way whatever terminal or CI it runs under."""

from __future__ import annotations

import pytest


def before_summary(result: pytest.RunResult) -> str:
    """The run's output up to pytest's short test summary.

    The summary repeats each failure's message: in full when pytest sees a CI environment
    (``CI`` or ``BUILD_NUMBER`` set), cut to one line otherwise. A test that counts how often a
    message appears counts it in the failure sections, which look the same everywhere.
    """
    out = result.stdout.str()
    cut = out.find(" short test summary info ")
    return out if cut < 0 else out[:cut]
