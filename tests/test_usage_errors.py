"""Every bad input is a one-line usage error before the first test, naming where it was
written (file and line of the key, test and line of the marker, the option) and the fix; an
entry is a destination name, ``"*"``, or a host pattern that could be a real destination, so
a typo never silently becomes a host (SPEC §2, §4; issue 24)."""

from __future__ import annotations

import json
import math
import string
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_outbound import PolicyError
from pytest_outbound._decide import ALLOW_ANY, Rules, resolve_entry
from pytest_outbound._hosts import HostPattern, entry_for_host
from pytest_outbound._policy import Destination, Policy

POLICY = """\
[[destination]]
name = "update-check"
hosts = ["octopus.com"]
schemes = ["https"]

[[destination]]
name = "local-api"
hosts = ["api.example"]
"""

NEVER_RUNS = "def test_never_runs():\n    raise AssertionError('a usage error comes first')\n"


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makefile(".toml", outbound=POLICY)
    pytester.makeini("[pytest]\noutbound_policy = outbound.toml\n")
    return pytester


def usage_error(result: pytest.RunResult) -> str:
    """The one line of a usage error, checked: before any test, no traceback."""
    everything = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in everything, everything
    assert "INTERNALERROR" not in everything, everything
    assert "test_never_runs" not in result.stdout.str()
    assert result.ret == pytest.ExitCode.USAGE_ERROR, everything
    errors = [line for line in result.stderr.lines if line.strip()]
    assert len(errors) == 1, errors
    assert errors[0].startswith("ERROR: ")
    return errors[0].removeprefix("ERROR: ")


def no_traceback(result: pytest.RunResult) -> None:
    everything = result.stdout.str() + result.stderr.str()
    assert "INTERNALERROR" not in everything, everything
    assert "Traceback" not in everything, everything


# -- the policy file: the line of the key at fault -------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            'schemes = ["htps"]',
            "outbound.toml:13: destination 'extra': schemes: 'htps' is not a scheme clients"
            " send (http, https, ws, wss); did you mean 'https'?",
        ),
        (
            'methods = ["GTE"]',
            "outbound.toml:13: destination 'extra': methods: 'GTE' is not an HTTP method of the"
            " IANA registry (GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, TRACE, CONNECT,"
            " WebDAV's...); did you mean 'GET'?",
        ),
        (
            'methods = ["PURGE"]',
            "outbound.toml:13: destination 'extra': methods: 'PURGE' is not an HTTP method of the"
            " IANA registry (GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, TRACE, CONNECT,"
            " WebDAV's...); for a method of your own, leave methods out",
        ),
        (
            "ports = 1.5",
            "outbound.toml:13: destination 'extra': ports must be a list of port numbers,"
            " e.g. ports = [443], got float",
        ),
        (
            "ports = {}",
            "outbound.toml:13: destination 'extra': ports must be a list of port numbers,"
            " e.g. ports = [443], got dict",
        ),
        (
            "min_interval = 8",
            "outbound.toml:13: destination 'extra': bad duration 8: write a number and a unit,"
            ' e.g. "8h", "30m", "90s"',
        ),
        (
            'description = ["a"]',
            "outbound.toml:13: destination 'extra': description must be a string",
        ),
        (
            "payload = { fields = 5 }",
            "outbound.toml:13: destination 'extra': payload: fields must be a list of strings,"
            " got int",
        ),
    ],
    ids=[
        "scheme",
        "method",
        "custom-method",
        "port-float",
        "port-table",
        "duration",
        "str",
        "payload",
    ],
)
def test_a_bad_value_names_the_line_of_its_key(
    suite: pytest.Pytester, line: str, expected: str
) -> None:
    suite.makefile(
        ".toml",
        outbound=POLICY + f'\n[[destination]]\nname = "extra"\nhosts = ["extra.example"]\n{line}\n',
    )
    suite.makepyfile(NEVER_RUNS)
    assert usage_error(suite.runpytest()) == expected


def test_a_payload_key_in_its_own_table_names_its_line(suite: pytest.Pytester) -> None:
    suite.makefile(
        ".toml",
        outbound=POLICY
        + "\n[destination.payload]\nfields = ['v']\n\n[destination.payload.match]\n"
        + "v = 'uuidd'\n",
    )
    suite.makepyfile(NEVER_RUNS)
    assert usage_error(suite.runpytest()) == (
        "outbound.toml:14: destination 'local-api': payload: match.v = 'uuidd' is not a named"
        " format (did you mean 'uuid'?); to match that literal text write the regex '^uuidd$'"
    )


def test_a_host_pattern_with_a_scheme_no_client_sends(suite: pytest.Pytester) -> None:
    suite.makefile(".toml", outbound=POLICY.replace('"octopus.com"', '"htps://octopus.com"'))
    suite.makepyfile(NEVER_RUNS)
    assert usage_error(suite.runpytest()) == (
        "outbound.toml:3: destination 'update-check': hosts: in 'htps://octopus.com', 'htps'"
        " is not a scheme clients send (http, https, ws, wss); did you mean 'https'?"
    )


def test_a_duplicate_name_points_at_the_second_name(suite: pytest.Pytester) -> None:
    suite.makefile(".toml", outbound=POLICY.replace('"local-api"', '"update-check"'))
    suite.makepyfile(NEVER_RUNS)
    assert usage_error(suite.runpytest()) == (
        "outbound.toml:7: duplicate destination name 'update-check' (first defined at"
        " outbound.toml:1); names must be unique"
    )


def test_two_files_named_outbound_toml_are_told_apart(pytester: pytest.Pytester) -> None:
    for directory in ("a", "b"):
        pytester.mkdir(directory)
        (pytester.path / directory / "outbound.toml").write_text(POLICY, encoding="utf-8")
    pytester.makeini("[pytest]\noutbound_policy =\n    a/outbound.toml\n    b/outbound.toml\n")
    pytester.makepyfile(NEVER_RUNS)
    root = pytester.path.resolve()
    assert usage_error(pytester.runpytest()) == (
        f"{root}/b/outbound.toml:1: duplicate destination name 'update-check' (first defined"
        f" at {root}/a/outbound.toml:1); names must be unique"
    )


def test_one_file_named_twice_is_read_once(suite: pytest.Pytester) -> None:
    suite.makepyfile("def test_it():\n    pass\n")
    result = suite.runpytest("--outbound-policy=outbound.toml")
    result.assert_outcomes(passed=1)
    no_traceback(result)


def test_an_allow_list_in_the_policy_file_takes_entries(suite: pytest.Pytester) -> None:
    suite.makefile(
        ".toml", outbound='# reviewed\n\nallow = ["ok.example", "intranet"]\n\n' + POLICY
    )
    suite.makepyfile(NEVER_RUNS)
    assert usage_error(suite.runpytest()) == (
        "outbound.toml:3: allow: 'intranet' is neither a documented destination (local-api,"
        " update-check) nor a host pattern that could be a real destination (an IP, a CIDR,"
        " localhost, a name with a dot); a single-label host is written with a trailing dot:"
        " 'intranet.'"
    )


# -- markers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            "@pytest.mark.outbound_allow('a.com', strict=True)\ndef test_it():\n    pass\n",
            "@pytest.mark.outbound_allow at test_marker.py:2 on test test_it: unknown keyword"
            " argument 'strict'; write outbound_allow(*entries)",
        ),
        (
            "@pytest.mark.outbound_allow()\ndef test_it():\n    pass\n",
            "@pytest.mark.outbound_allow at test_marker.py:2 on test test_it: name at least one"
            " destination or host pattern ('*' allows any destination)",
        ),
        (
            "@pytest.mark.outbound_only('local-api', exclusive=True)\ndef test_it():\n    pass\n",
            "@pytest.mark.outbound_only at test_marker.py:2 on test test_it: unknown keyword"
            " argument 'exclusive'; write outbound_only(*entries)",
        ),
        (
            "@pytest.mark.outbound_expect('local-api', cnt=2)\ndef test_it():\n    pass\n",
            "@pytest.mark.outbound_expect at test_marker.py:2 on test test_it: unknown keyword"
            " argument 'cnt'; write outbound_expect(entry, count=None)",
        ),
        (
            "class TestIt:\n    @pytest.mark.outbound_only('update-chek')\n"
            "    def test_it(self):\n        pass\n",
            "@pytest.mark.outbound_only at test_marker.py:3 on test test_it: 'update-chek' is"
            " not a documented destination; did you mean 'update-check'? (a single-label host"
            " is written with a trailing dot: 'update-chek.')",
        ),
        (
            "@pytest.mark.outbound_expect('local-apii')\nclass TestIt:\n"
            "    def test_it(self):\n        pass\n",
            "@pytest.mark.outbound_expect at test_marker.py:2 on class TestIt: 'local-apii' is"
            " not a documented destination; did you mean 'local-api'? (a single-label host is"
            " written with a trailing dot: 'local-apii.')",
        ),
        (
            "\npytestmark = pytest.mark.outbound_only('intranet')\n\n"
            "@pytest.mark.outbound_none\ndef test_it():\n    pass\n",
            # the module's marker gives way to the test's, and is checked all the same
            "@pytest.mark.outbound_only at test_marker.py:3 on module test_marker.py:"
            " 'intranet' is neither a documented destination (local-api, update-check) nor a"
            " host pattern that could be a real destination (an IP, a CIDR, localhost, a name"
            " with a dot); a single-label host is written with a trailing dot: 'intranet.'",
        ),
        (
            "@pytest.mark.outbound_allow('intranet:8080')\ndef test_it():\n    pass\n",
            "@pytest.mark.outbound_allow at test_marker.py:2 on test test_it: 'intranet:8080' is"
            " neither a documented destination (local-api, update-check) nor a host pattern"
            " that could be a real destination (an IP, a CIDR, localhost, a name with a dot);"
            " a single-label host is written with a trailing dot: 'intranet.:8080'",
        ),
        (
            "@pytest.mark.outbound_allow('htps://octopus.com')\ndef test_it():\n    pass\n",
            "@pytest.mark.outbound_allow at test_marker.py:2 on test test_it: in"
            " 'htps://octopus.com', 'htps' is not a scheme clients send (http, https, ws, wss);"
            " did you mean 'https'?",
        ),
        (
            "@pytest.mark.outbound_allow(42)\ndef test_it():\n    pass\n",
            "@pytest.mark.outbound_allow at test_marker.py:2 on test test_it: entry 42 must be"
            " a destination name or a host pattern (or '*')",
        ),
        (
            "@pytest.mark.outbound_expect('local-api', count='two')\ndef test_it():\n    pass\n",
            "@pytest.mark.outbound_expect at test_marker.py:2 on test test_it: count must be a"
            " whole number, got 'two'",
        ),
    ],
    ids=[
        "allow-keyword",
        "allow-empty",
        "only-keyword",
        "expect-keyword",
        "typo-in-class",
        "typo-on-class",
        "single-label-module",
        "single-label-port",
        "scheme",
        "not-a-string",
        "expect-count",
    ],
)
def test_a_bad_marker_names_its_test_and_line(
    suite: pytest.Pytester, source: str, expected: str
) -> None:
    suite.makepyfile(test_marker="import pytest\n" + source)
    assert usage_error(suite.runpytest()) == expected


# -- options ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "ini", "expected"),
    [
        (
            ["--outbound-allow", "update-chek"],
            "",
            "--outbound-allow: 'update-chek' is not a documented destination; did you mean"
            " 'update-check'? (a single-label host is written with a trailing dot:"
            " 'update-chek.')",
        ),
        (
            [],
            "outbound_allow =\n    ok.example\n    intranet\n",
            "outbound_allow: 'intranet' is neither a documented destination (local-api,"
            " update-check) nor a host pattern that could be a real destination (an IP, a CIDR,"
            " localhost, a name with a dot); a single-label host is written with a trailing"
            " dot: 'intranet.'",
        ),
        (
            ["--outbound-allow", "*"],
            "",
            "--outbound-allow '*': '*' allows any destination in one test"
            ' (@pytest.mark.outbound_allow("*"), outbound.allow("*")); to record without'
            " blocking anywhere, use outbound_mode = audit",
        ),
        (
            [],
            "outbound_require_coverage = sure\n",
            "outbound_require_coverage = 'sure': write true or false (or yes/no, on/off, 1/0)",
        ),
        (
            [],
            "outbound_offline = maybe\n",
            "outbound_offline = 'maybe': write true or false (or yes/no, on/off, 1/0)",
        ),
        (
            ["--outbound-report", "afile/report.json"],
            "",
            "--outbound-report afile/report.json: cannot write there: {root}/afile is not a"
            " directory",
        ),
        (
            ["--outbound-report", "."],
            "",
            "--outbound-report .: is a directory; give the path of the file to write",
        ),
        (
            [],
            "outbound_report = afile/deeper/report.json\n",
            "outbound_report = {root}/afile/deeper/report.json: cannot write there:"
            " {root}/afile is not a directory",
        ),
        (
            ["--outbound-docs", "."],
            "",
            "--outbound-docs .: is a directory; give the path of the file to write",
        ),
        (
            ["--outbound-docs-check", "missing.md"],
            "",
            "--outbound-docs-check missing.md: the page is missing; write it with"
            " --outbound-docs missing.md (give both options the same path to check and write"
            " it in one run)",
        ),
        (
            ["--outbound-docs-check", "."],
            "",
            "--outbound-docs-check .: is a directory; give the page to check",
        ),
    ],
    ids=[
        "cli-allow-typo",
        "ini-allow-single-label",
        "cli-allow-any",
        "bool-coverage",
        "bool-offline",
        "report-under-a-file",
        "report-a-directory",
        "ini-report-under-a-file",
        "docs-a-directory",
        "docs-check-missing",
        "docs-check-a-directory",
    ],
)
def test_a_bad_option_names_the_option(
    suite: pytest.Pytester, args: list[str], ini: str, expected: str
) -> None:
    suite.makeini(f"[pytest]\noutbound_policy = outbound.toml\n{ini}")
    (suite.path / "afile").write_text("a file, not a directory\n", encoding="utf-8")
    suite.makepyfile(NEVER_RUNS)
    root = suite.path.resolve()
    assert usage_error(suite.runpytest(*args)) == expected.format(root=root)


def test_a_page_checked_and_written_in_one_run_is_missing_not_out_of_date(
    suite: pytest.Pytester,
) -> None:
    suite.makepyfile("def test_it():\n    pass\n")
    result = suite.runpytest("--outbound-docs-check", "page.md", "--outbound-docs", "page.md")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["the documentation page page.md is missing (it was written now;*"])
    assert "out of date" not in result.stdout.str()
    assert (suite.path / "page.md").exists()
    no_traceback(result)
    again = suite.runpytest("--outbound-docs-check", "page.md")
    again.assert_outcomes(passed=1)
    assert again.ret == pytest.ExitCode.OK


def test_known_names_in_an_allow_option_are_no_hosts(suite: pytest.Pytester) -> None:
    """A destination's name in ``--outbound-allow`` means that destination (allowed already),
    not a host of that name; a single-label host written ``intranet.`` is one."""
    suite.makepyfile(
        """
        import requests, responses

        def test_it(outbound):
            with responses.RequestsMock() as mock:
                mock.get("https://intranet/x")
                requests.get("https://intranet/x")
            assert [r.verdict for r in outbound.requests] == ["allowed"]
        """
    )
    result = suite.runpytest(
        "-o", "outbound_mode=enforce", "--outbound-allow", "local-api", "--outbound-allow",
        "intranet.",
    )  # fmt: skip
    result.assert_outcomes(passed=1)


# -- conftest hooks --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "raise RuntimeError('the feed is down')",
            "conftest.py: pytest_outbound_destinations: RuntimeError at line 5: the feed is down",
        ),
        (
            "return None",
            "conftest.py: pytest_outbound_destinations returned None; return a list of"
            " Destination(...) objects (an empty one for none)",
        ),
        (
            "return Destination(name='a', hosts=['a.example'])",
            "conftest.py: pytest_outbound_destinations returned Destination(name='a',"
            " hosts=('a.example',), description='', when='', schemes=(), ports=(), methods=(),"
            " paths=(), payload=None, min_interval=None, group='', source=''); return a list of"
            " Destination(...) objects (an empty one for none)",
        ),
        (
            "yield Destination(name='a', hosts=['a.example'])\n    raise KeyError('b')",
            "conftest.py: pytest_outbound_destinations: KeyError at line 6: 'b'",
        ),
        (
            "return [Destination(name='a', hosts=['a.example'], methods=['GTE'])]",
            "conftest.py: destination 'a': methods: 'GTE' is not an HTTP method of the IANA"
            " registry (GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, TRACE, CONNECT,"
            " WebDAV's...); did you mean 'GET'?",
        ),
    ],
    ids=["raises", "none", "not-a-list", "generator-raises", "bad-method"],
)
def test_a_failing_destinations_hook_names_its_conftest(
    pytester: pytest.Pytester, body: str, expected: str
) -> None:
    pytester.makeconftest(
        "from pytest_outbound import Destination\n\n\n"
        f"def pytest_outbound_destinations(config):\n    {body}\n"
    )
    pytester.makepyfile(NEVER_RUNS)
    assert usage_error(pytester.runpytest()) == expected


def test_a_failing_sensitive_values_hook_names_its_conftest(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        "def pytest_outbound_sensitive_values(config):\n    raise OSError('the vault is sealed')\n"
    )
    pytester.makepyfile(NEVER_RUNS)
    assert usage_error(pytester.runpytest()) == (
        "conftest.py: pytest_outbound_sensitive_values: OSError at line 2: the vault is sealed"
    )


# -- the fixture: a mistake fails the test at its line ---------------------------------------


def test_a_bad_fixture_call_fails_its_test_with_one_clear_line(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        test_calls="""
        import pytest

        def test_stub(outbound):
            outbound.stub("local-apii", json={})

        def test_not_contacted(outbound):
            outbound.assert_not_contacted("update-chek")

        def test_count(outbound):
            outbound.assert_contacted("local-api", count="two")

        def test_allow_nothing(outbound):
            outbound.allow()

        def test_to(outbound):
            outbound.to("intranet")
        """
    )
    result = suite.runpytest("-p", "no:randomly")
    result.assert_outcomes(failed=5)
    no_traceback(result)
    result.stdout.fnmatch_lines(
        [
            "E*ValueError: outbound.stub() in test_calls.py::test_stub: 'local-apii' is not a"
            " documented destination; did you mean 'local-api'? (a single-label host is written"
            " with a trailing dot: 'local-apii.')",
            "E*ValueError: outbound.assert_not_contacted() in test_calls.py::test_not_contacted:"
            " 'update-chek' is not a documented destination; did you mean 'update-check'? (a"
            " single-label host is written with a trailing dot: 'update-chek.')",
            "E*ValueError: outbound.assert_contacted() in test_calls.py::test_count: count must"
            " be a whole number (or None: at least once), got 'two'",
            "E*ValueError: outbound.allow() in test_calls.py::test_allow_nothing: name at least"
            " one destination or host pattern ('*' allows any destination)",
            "E*ValueError: outbound.to() in test_calls.py::test_to: 'intranet' is neither a"
            " documented destination (local-api, update-check) nor a host pattern that could be"
            " a real destination (an IP, a CIDR, localhost, a name with a dot); a single-label"
            " host is written with a trailing dot: 'intranet.'",
        ],
        consecutive=False,
    )
    # the traceback stops at the test's own line, not inside the plugin
    assert "_fixture.py" not in result.stdout.str()


# -- "*": any destination, recorded as such --------------------------------------------------


def test_any_destination_is_allowed_and_recorded_as_such(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        """
        import pytest, requests, responses
        from pytest_outbound import OutboundBlocked

        def get(url):
            with responses.RequestsMock() as mock:
                mock.get(url)
                return requests.get(url)

        @pytest.mark.outbound_allow("*")
        def test_marker(outbound):
            get("https://anything.example/a")
            get("https://api.example/b")  # documented: allowed as ever
            assert [(r.destination, r.reasons) for r in outbound.requests] == [
                (None, ["allow-any"]), ("local-api", []),
            ]
            assert len(outbound.to("*")) == 2

        @pytest.mark.outbound_only("*")
        def test_only_any(outbound):
            get("https://anything.example/a")
            get("https://octopus.com/b")
            assert [r.reasons for r in outbound.requests] == [["allow-any"], []]

        @pytest.mark.outbound_none
        def test_fixture_from_now_on(outbound):
            with outbound.expect_blocked("anything.example"):
                requests.get("https://anything.example/a")
            outbound.allow("*")
            outbound.stub("*", json={"ok": True})
            assert requests.get("https://anything.example/b").json() == {"ok": True}
            assert [r.verdict for r in outbound.requests] == ["violation", "allowed"]
        """
    )
    result = suite.runpytest(
        "-p", "no:randomly", "-o", "outbound_mode=enforce", "--outbound-report", "report.json"
    )
    result.assert_outcomes(passed=3)
    no_traceback(result)
    report = json.loads((suite.path / "report.json").read_text(encoding="utf-8"))
    anywhere = [r for r in report["requests"] if r["host"] == "anything.example"]
    assert [(r["verdict"], r["destination"], r["reasons"]) for r in anywhere] == [
        ("allowed", None, ["allow-any"]),
        ("allowed", None, ["allow-any"]),
        ("violation", None, ["outbound_none", "expected-block"]),
        ("allowed", None, ["allow-any"]),
    ]


def test_any_destination_still_keeps_sensitive_values_in(suite: pytest.Pytester) -> None:
    suite.makeini(
        "[pytest]\noutbound_policy = outbound.toml\noutbound_mode = enforce\n"
        "outbound_sensitive =\n    customer-id: ACME-7731-XY\n"
    )
    suite.makepyfile(
        """
        import pytest, requests
        from pytest_outbound import OutboundBlocked

        @pytest.mark.outbound_allow("*")
        def test_it(outbound):
            with pytest.raises(OutboundBlocked):
                requests.get("https://anything.example/?id=ACME-7731-XY")
            assert [r.reasons for r in outbound.requests] == [["sensitive:customer-id"]]
        """
    )
    result = suite.runpytest()
    result.assert_outcomes(failed=1)  # a block fails its test, caught or not
    result.stdout.fnmatch_lines(["*sensitive:customer-id*"])
    assert "allow-any" not in result.stdout.str()


def test_a_single_label_host_spelled_with_its_dot_is_a_host(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        """
        import pytest, requests, responses

        @pytest.mark.outbound_only("intranet.")
        def test_it(outbound):
            with responses.RequestsMock() as mock:
                mock.get("https://intranet/x")
                requests.get("https://intranet/x")
            assert [r.verdict for r in outbound.requests] == ["allowed"]
            assert len(outbound.to("intranet.")) == 1
            outbound.assert_contacted("https://intranet.", count=1)
            outbound.assert_not_contacted("localhost")
        """
    )
    suite.runpytest("-o", "outbound_mode=enforce").assert_outcomes(passed=1)


# -- never a traceback: random values of the wrong type for every key ------------------------

_FLOATS = st.floats().map(
    lambda f: "nan" if math.isnan(f) else ("-inf" if f < 0 else "inf") if math.isinf(f) else repr(f)
)
_SCALARS = st.one_of(
    st.integers(-(2**63), 2**63 - 1).map(str),
    _FLOATS,
    st.booleans().map(lambda b: "true" if b else "false"),
    st.text(max_size=12).map(json.dumps),  # a JSON string is a TOML basic string
    st.sampled_from(["1979-05-27", "1979-05-27T07:32:00Z", "07:32:00", '"8h"', '"uuid"']),
)
_TOML_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(lambda items: "[" + ", ".join(items) + "]"),
        st.dictionaries(
            st.text(string.ascii_lowercase + "_", min_size=1, max_size=8), inner, max_size=3
        ).map(lambda table: "{" + ", ".join(f"{k} = {v}" for k, v in table.items()) + "}"),
    ),
    max_leaves=6,
)
_DEST = '[[destination]]\nname = "x"\nhosts = ["x.example"]\n'
_DEST_KEYS = ("description", "when", "schemes", "ports", "methods", "paths", "payload")
_PAYLOAD_KEYS = ("fields", "required", "match", "opaque_body")


def _policy_with(key: str, value: str) -> tuple[str, int]:
    """A policy file with ``key = value`` in its place, and that line's number."""
    if key == "name":
        return f'[[destination]]\nname = {value}\nhosts = ["x.example"]\n', 2
    if key == "hosts":
        return f'[[destination]]\nname = "x"\nhosts = {value}\n', 3
    if key in ("allow", "destination"):
        return f"{key} = {value}\n", 1
    if key.startswith("payload."):
        return f"{_DEST}[destination.payload]\n{key.partition('.')[2]} = {value}\n", 5
    if key == "match":
        return f"{_DEST}[destination.payload.match]\nversion = {value}\n", 5
    return f"{_DEST}{key} = {value}\n", 4


@settings(max_examples=400, deadline=None)
@given(
    key=st.sampled_from(
        (
            "name",
            "hosts",
            "allow",
            "destination",
            "match",
            "min_interval",
            "group",
            *_DEST_KEYS,
            *(f"payload.{k}" for k in _PAYLOAD_KEYS),
        )
    ),
    value=_TOML_VALUES,
)
def test_any_toml_value_for_any_key_is_a_policy_or_a_one_line_error(key: str, value: str) -> None:
    text, line = _policy_with(key, value)
    error = _error_of(Policy.from_toml_text, text, "outbound.toml")
    if error is not None:  # anything but a PolicyError fails the test with its traceback
        assert "\n" not in str(error)
        if "invalid TOML" not in str(error):  # (a value TOML itself refuses: its own line)
            assert error.source == f"outbound.toml:{line}", (text, str(error))


def _error_of(function: Callable[..., object], *args: object) -> PolicyError | None:
    try:
        function(*args)
    except PolicyError as exc:
        return exc
    return None


_RULES = Rules(
    Policy(
        (
            Destination("update-check", ("octopus.com",)),
            Destination("local-api", ("api.example",)),
        )
    )
)


@settings(max_examples=500, deadline=None)
@given(
    text=st.one_of(
        st.text(max_size=24),
        st.text(string.ascii_letters + string.digits + "-_.:/*[]%", max_size=24),
        st.sampled_from(["update-chek", "local-apii", "*", "intranet", "intranet.", "10.0.0.0/8"]),
    )
)
def test_any_string_is_an_entry_or_a_one_line_error(text: str) -> None:
    where = "@pytest.mark.outbound_allow on test test_it"
    error = _error_of(resolve_entry, text, _RULES, where)
    if error is not None:
        assert str(error).startswith(f"{where}: ")
        assert "\n" not in str(error)
        return
    entry = resolve_entry(text, _RULES, where)
    if entry.destination is not None:
        assert entry.destination == text
    elif entry.pattern is None:
        assert entry.is_any
        assert text == "*"
    else:  # a host pattern that could be a real destination
        assert entry.pattern == HostPattern.parse(text)
        assert not entry.pattern.bare_single_label()
        if entry.pattern.kind == "name" and "." not in entry.pattern.host:
            assert entry.pattern.host == "localhost" or "." in text or "。" in text


def test_the_reason_for_any_destination_is_named_once() -> None:
    assert ALLOW_ANY == "allow-any"


@pytest.mark.parametrize(
    ("host", "entry"),
    [
        ("intranet", "intranet."),
        ("octopus.com", "octopus.com"),
        ("::1", "::1"),
        ("localhost", "localhost"),
    ],
)
def test_a_host_is_written_as_an_entry_that_resolves_to_it(host: str, entry: str) -> None:
    """What a message suggests for ``outbound_allow(...)`` must be an entry that is taken."""
    assert entry_for_host(host) == entry
    resolved = resolve_entry(entry, _RULES, "x")
    assert resolved.pattern is not None
    assert resolved.pattern.host == host
