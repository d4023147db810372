"""Reading an inner (pytester) run's output the same way whatever terminal or CI it runs under."""

from __future__ import annotations

import re

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


SWALLOWED = (
    " outbound request(s) were blocked, and the code under test caught the OutboundBlocked"
    " exception; the test fails anyway"
)


def failed_only_for_swallowed_blocks(result: pytest.RunResult) -> None:
    """Every failure of the run is the plugin's own, for blocks its test caught, and nothing else.

    That failure's message opens the test's failure section. A test that failed on an error or
    assertion of its own after catching a block shows the same message too, in a "Captured
    outbound" section below its traceback: counting failures, or matching the message anywhere,
    cannot tell the two apart.
    """
    out = before_summary(result)
    start = out.find(" FAILURES ")
    assert start >= 0, out
    lines = out[start:].splitlines()[1:]
    end = next((i for i, line in enumerate(lines) if line.startswith("=")), len(lines))
    lines = lines[:end]
    heads = [i for i, line in enumerate(lines) if re.fullmatch(r"_{3,} .+ _{3,}", line)]
    assert heads, out
    for i in heads:
        opening = lines[i + 1] if i + 1 < len(lines) else ""
        assert re.fullmatch(r"\d+" + re.escape(SWALLOWED) + r".*", opening), "\n".join(
            lines[i : i + 40]
        )
