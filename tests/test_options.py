"""Options, ini, --help/--markers output, usage errors, and switching the plugin off."""

from __future__ import annotations

import pytest

NOT_PATCHED = """
import httpx, requests

def test_nothing_patched():
    assert not hasattr(requests.Session.send, "__wrapped__")
    assert not hasattr(httpx.Client._send_single_request, "__wrapped__")
    assert not hasattr(httpx.AsyncClient._send_single_request, "__wrapped__")
"""


def test_help_is_pinned(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(
        [
            "outbound requests (pytest-outbound):",
            "  --outbound-mode=MODE  audit (record and report, default), enforce (block and",
            "                        fail on undocumented egress) or off (patch nothing).",
            "                        Overrides the ini option outbound_mode.",
            "  --outbound-policy=PATH",
            "                        a TOML policy file of documented destinations;",
            "                        repeatable. Added to the ini option outbound_policy.",
            "  --outbound-allow=PATTERN",
            "                        also allow this host pattern (example.com,",
            "                        *.example.com, 10.0.0.0/8, host:443, https://host);",
            "                        repeatable.",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "  outbound_mode (string):",
            "                        pytest-outbound mode: audit, enforce or off.",
            "  outbound_policy (paths):",
            "                        TOML policy files of documented destinations, relative",
            "                        to the ini file.",
            "  outbound_allow (linelist):",
            "                        host patterns allowed in every test (one per line).",
        ]
    )


def test_markers_are_pinned(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(
        [
            "@pytest.mark.outbound_allow(*entries): also permit these destinations (by name)"
            " or host patterns in this test. See pytest-outbound.",
            "",
            "@pytest.mark.outbound_only(*entries): only these destinations (by name) or host"
            " patterns may be contacted in this test. See pytest-outbound.",
            "",
            "@pytest.mark.outbound_none: nothing may be contacted in this test. See"
            " pytest-outbound.",
            "",
            "@pytest.mark.outbound_expect(entry, count=None): fail unless entry (destination"
            " name or host pattern) was contacted, at least once or exactly count times. See"
            " pytest-outbound.",
        ]
    )


def test_disabled_with_p_no_outbound_patches_nothing(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(NOT_PATCHED)
    result = pytester.runpytest("-p", "no:outbound")
    result.assert_outcomes(passed=1)
    result.stdout.no_fnmatch_line("*= outbound =*")


def test_mode_off_patches_nothing(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\noutbound_mode = off\n")
    pytester.makepyfile(NOT_PATCHED)
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    result.stdout.no_fnmatch_line("*= outbound =*")


def test_patches_are_undone_after_the_session(pytester: pytest.Pytester) -> None:
    import httpx
    import requests

    before = (requests.Session.send, httpx.Client._send_single_request)
    pytester.makepyfile(
        """
        import requests

        def test_patched():
            assert requests.Session.send.__wrapped__
        """
    )
    pytester.runpytest().assert_outcomes(passed=1)
    assert (requests.Session.send, httpx.Client._send_single_request) == before


def test_malformed_policy_file_is_a_one_line_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makefile(".toml", outbound='[[destination]]\nname = "x"\nhsts = ["a.com"]\n')
    pytester.makeini("[pytest]\noutbound_policy = outbound.toml\n")
    pytester.makepyfile("def test_never_runs():\n    raise AssertionError\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.stderr.lines if line.strip()]
    assert len(errors) == 1, result.stderr.lines
    assert errors[0].startswith("ERROR: ")
    assert errors[0].endswith(
        "outbound.toml:3: destination 'x': unknown key 'hsts'; did you mean 'hosts'?"
    )
    assert "test_never_runs" not in result.stdout.str()


def test_policy_path_is_relative_to_the_ini_file(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    sub = pytester.mkdir("sub")
    (sub / "policy.toml").write_text('[[destination]]\nname = "x"\nhosts = ["x.example"]\n')
    pytester.makeini("[pytest]\noutbound_policy = sub/policy.toml\n")
    pytester.makepyfile("def test_it():\n    pass\n")
    monkeypatch.chdir(pytester.mkdir("elsewhere"))
    result = pytester.runpytest(str(pytester.path))
    result.stdout.fnmatch_lines(["0 of 1 documented destination was exercised", "  x (x.example)"])


def test_a_policy_file_the_rootdir_conftest_rewrites_is_read_anew(
    pytester: pytest.Pytester,
) -> None:
    """The guard started before the conftests read the file as it was; the session reads it
    again at configure (the text read first is parsed once, a changed one anew)."""
    pytester.makefile(".toml", policy='[[destination]]\nname = "old"\nhosts = ["old.example"]\n')
    pytester.makeini("[pytest]\noutbound_policy = policy.toml\n")
    pytester.makeconftest(
        """
        import pathlib

        pathlib.Path(__file__).with_name("policy.toml").write_text(
            '[[destination]]\\nname = "new"\\nhosts = ["new.example"]\\n'
        )
        """
    )
    pytester.makepyfile("def test_it():\n    pass\n")
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        ["0 of 1 documented destination was exercised", "  new (new.example)"]
    )


def test_cli_policy_and_allow_add_to_ini(pytester: pytest.Pytester) -> None:
    pytester.makefile(".toml", extra='[[destination]]\nname = "extra"\nhosts = ["extra.example"]\n')
    pytester.makeini("[pytest]\noutbound_mode = enforce\noutbound_allow =\n    ini.example\n")
    pytester.makepyfile(
        """
        import requests, responses

        @responses.activate
        def test_it(outbound):
            for host in ("extra.example", "ini.example", "cli.example"):
                responses.get(f"https://{host}/")
                requests.get(f"https://{host}/")
            assert [r.destination for r in outbound.requests] == ["extra", None, None]
        """
    )
    result = pytester.runpytest(
        "--outbound-policy", "extra.toml", "--outbound-allow", "cli.example"
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        ["undocumented hosts:", "  cli.example (1 request(s))", "  ini.example (1 request(s))"]
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--outbound-mode", "strict"],
            "*'strict' is not a mode; choose one of: audit, enforce, off*",
        ),
        (["--outbound-allow", "a b"], "*'a b' is not a host pattern*"),
        (["-o", "outbound_mode=strict"], "ERROR: outbound_mode = 'strict' is not a mode*"),
        (["-o", "outbound_local=maybe"], "ERROR: outbound_local = 'maybe': write allow or enforce"),
        (["-o", "outbound_body_limit=lots"], "ERROR: outbound_body_limit = 'lots': write a whole*"),
        (["--outbound-policy", "missing.toml"], "ERROR: missing.toml: cannot read policy file*"),
    ],
)
def test_bad_options_are_clear_usage_errors(
    pytester: pytest.Pytester, args: list[str], message: str
) -> None:
    pytester.makepyfile("def test_it():\n    pass\n")
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    assert "Traceback" not in result.stderr.str()
