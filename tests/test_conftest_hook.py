"""``pytest_outbound_destinations`` in conftest.py: directory-scoped, merged, validated."""

from __future__ import annotations

import textwrap

import pytest

PROBE_TEST = """
import requests, responses

def test_probe(outbound):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        for host in ("root.example", "a.example", "b.example"):
            mock.get(f"https://{{host}}/")
            requests.get(f"https://{{host}}/")
    assert {{r.host: r.destination for r in outbound.requests}} == {expected}
"""


def test_conftest_destinations_apply_to_their_directory_and_below(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini("[pytest]\noutbound_mode = audit\n")
    pytester.makeconftest(
        """
        from pytest_outbound import Destination

        def pytest_outbound_destinations(config):
            return [Destination(name="root", hosts=["root.example"])]
        """
    )
    a = pytester.mkdir("a")
    (a / "conftest.py").write_text(
        "from pytest_outbound import Destination\n"
        "def pytest_outbound_destinations():\n"
        "    yield Destination(name='a', hosts=['a.example'])\n"
    )
    (a / "test_a.py").write_text(
        PROBE_TEST.format(expected={"root.example": "root", "a.example": "a", "b.example": None})
    )
    deep = a / "deep"
    deep.mkdir()
    (deep / "test_deep.py").write_text(
        PROBE_TEST.format(expected={"root.example": "root", "a.example": "a", "b.example": None})
    )
    b = pytester.mkdir("b")
    (b / "conftest.py").write_text(
        "from pytest_outbound import Destination\n"
        "def pytest_outbound_destinations(config):\n"
        "    return [Destination(name='b', hosts=['b.example'])]\n"
    )
    (b / "test_b.py").write_text(
        PROBE_TEST.format(expected={"root.example": "root", "a.example": None, "b.example": "b"})
    )
    pytester.makepyfile(
        test_top=PROBE_TEST.format(
            expected={"root.example": "root", "a.example": None, "b.example": None}
        )
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["3 of 3 documented destinations were exercised"])


def test_conftest_and_toml_merge_and_clash(pytester: pytest.Pytester) -> None:
    pytester.makefile(".toml", outbound='[[destination]]\nname = "root"\nhosts = ["x.example"]\n')
    pytester.makeini("[pytest]\noutbound_policy = outbound.toml\n")
    pytester.makeconftest(
        """
        from pytest_outbound import Destination

        def pytest_outbound_destinations(config):
            return [Destination(name="root", hosts=["root.example"])]
        """
    )
    pytester.makepyfile("def test_it():\n    pass\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: conftest.py: duplicate destination name 'root' (first defined at *outbound.toml:1)*"
        ]
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "return ['octopus.com']",
            "conftest.py: pytest_outbound_destinations returned 'octopus.com';"
            " return Destination(...) objects",
        ),
        (
            "return [Destination(name='x', hosts=['bad host'])]",
            "conftest.py: destination 'x': *",
        ),
    ],
)
def test_bad_conftest_destinations_are_usage_errors(
    pytester: pytest.Pytester, body: str, message: str
) -> None:
    pytester.makeconftest(
        "from pytest_outbound import Destination\n"
        f"def pytest_outbound_destinations(config):\n    {body}\n"
    )
    pytester.makepyfile("def test_it():\n    pass\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])
    assert "Traceback" not in result.stderr.str()


# A conftest in the rootdir is registered before the plugin; one in a subdirectory during
# collection, after it: both must be called.
@pytest.mark.parametrize("where", [".", "sub"])
def test_request_and_violation_hooks_see_every_judged_request(
    pytester: pytest.Pytester, where: str
) -> None:
    pytester.makeini("[pytest]\noutbound_mode = audit\noutbound_allow = ok.example\n")
    directory = pytester.mkdir(where) if where != "." else pytester.path
    (directory / "conftest.py").write_text(
        textwrap.dedent(
            """
        SEEN = []

        def pytest_outbound_request(request):
            SEEN.append(("request", request.host, request.verdict))

        def pytest_outbound_violation(request):
            SEEN.append(("violation", request.host, request.reasons))

        def pytest_sessionfinish(session):
            import json, pathlib
            pathlib.Path("seen.json").write_text(json.dumps(SEEN))
        """
        )
    )
    (directory / "test_hooks.py").write_text(
        textwrap.dedent(
            """
        import requests, responses

        @responses.activate
        def test_two(outbound):
            responses.get("https://ok.example/")
            responses.get("https://leak.example/")
            requests.get("https://ok.example/")
            requests.get("https://leak.example/")
        """
        )
    )
    pytester.runpytest().assert_outcomes(passed=1)
    import json

    assert json.loads((pytester.path / "seen.json").read_text()) == [
        ["request", "ok.example", "allowed"],
        ["request", "leak.example", "violation"],
        ["violation", "leak.example", ["undocumented"]],
    ]
