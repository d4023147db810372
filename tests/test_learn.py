"""The first policy (issue 24): ``--outbound-learn`` and ``init --from-report`` write a draft
policy from a run, which an enforcing run then passes; an existing policy is only appended to.

The suite is a small shop's: requests with responses and httpx with respx, two subdomains of
one domain (grouped under ``*.example.com``), a POST with JSON fields, a parametrized test and a
non-default port. Everything is answered by mocks: nothing leaves.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

SHOP_TESTS = """
import httpx
import pytest
import requests
import responses
import respx


@responses.activate
def test_catalogue():
    responses.get("https://api.example.com/v1/items", json=[])
    responses.get("https://cdn.example.com/img/1.png", body=b"png")
    assert requests.get("https://api.example.com/v1/items", params={"page": 2}).json() == []
    requests.get("https://cdn.example.com/img/1.png")


@responses.activate
def test_checkout():
    responses.post("https://api.example.com/v1/orders", json={"id": 7})
    requests.post("https://api.example.com/v1/orders", json={"item": "x", "customer": {"id": 3}})


@pytest.mark.parametrize("event", ["start", "stop"])
@respx.mock
def test_telemetry(event):
    respx.post("https://telemetry.example.org/collect").respond(204)
    httpx.post("https://telemetry.example.org/collect", json={"event": event, "version": "1.2"})


@respx.mock
def test_mirror():
    respx.get("http://mirror.example.net:8080/simple/").respond(200)
    httpx.get("http://mirror.example.net:8080/simple/")
"""

LEARNED = """\
# Outbound destinations for pytest-outbound (see its README, "Your first policy").
# Drafted from a test run: review every entry before relying on it. Say what each one is
# for (description, when), narrow its hosts, and uncomment a payload contract to pin what
# its requests may carry.

[[destination]]
name = "example-com"
hosts = ["*.example.com"]
description = "TODO: what these requests are for."
when = "TODO: when the code makes them."
schemes = ["https"]
methods = ["GET", "POST"]
# grouped: api.example.com, cdn.example.com (subdomains of example.com)
# observed: 3 requests in 2 tests: test_shop.py::test_catalogue, test_shop.py::test_checkout
# [destination.payload]  # draft contract: the fields observed
# fields = ["customer.id", "item", "page"]

[[destination]]
name = "mirror-example-net"
hosts = ["mirror.example.net"]
description = "TODO: what these requests are for."
when = "TODO: when the code makes them."
schemes = ["http"]
ports = [8080]
methods = ["GET"]
# observed: 1 request in 1 test: test_shop.py::test_mirror

[[destination]]
name = "telemetry-example-org"
hosts = ["telemetry.example.org"]
description = "TODO: what these requests are for."
when = "TODO: when the code makes them."
schemes = ["https"]
methods = ["POST"]
# observed: 2 requests in 2 tests: test_shop.py::test_telemetry[start], test_shop.py::test_telemetry[stop]
# [destination.payload]  # draft contract: the fields observed
# fields = ["event", "version"]
# required = ["event", "version"]
"""

UNDOCUMENTED = """

@responses.activate
def test_new_habit():
    responses.get("https://ads.example.net/pixel", body=b"")
    requests.get("https://ads.example.net/pixel")
"""


@pytest.fixture
def shop(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(test_shop=SHOP_TESTS)
    return pytester


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest_outbound", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )


def clean(output: str) -> None:
    assert "Traceback" not in output
    assert "INTERNALERROR" not in output


@pytest.mark.parametrize("workers", ["0", "2"])
def test_learn_then_enforce(shop: pytest.Pytester, workers: str) -> None:
    learn = shop.runpytest(
        "-n", workers, "--outbound-learn", "outbound.toml", "--outbound-report", "r.json"
    )
    learn.assert_outcomes(passed=5)
    learn.stdout.fnmatch_lines(
        [
            "learned: wrote 3 draft destinations to outbound.toml: example-com,"
            " mirror-example-net, telemetry-example-org"
        ]
    )
    policy = shop.path / "outbound.toml"
    assert policy.read_text() == LEARNED
    # the controller's merged records under pytest-xdist: init from the report it wrote agrees
    init = cli("init", "--from-report", "r.json", "-o", "init.toml", cwd=shop.path)
    assert init.returncode == 0, init.stderr
    assert (shop.path / "init.toml").read_bytes() == policy.read_bytes()

    shop.makeini("[pytest]\noutbound_policy = outbound.toml\noutbound_mode = enforce\n")
    enforce = shop.runpytest("-n", workers)
    enforce.assert_outcomes(passed=5)
    enforce.stdout.fnmatch_lines(["*6 outbound request(s), 0 violation(s)*"])

    if workers != "0":
        return  # (the rest does not depend on pytest-xdist)

    # the draft contracts, uncommented, admit what the suite sends
    policy.write_text(
        re.sub(r"^# (\[destination\.payload\]|fields|required)", r"\1", LEARNED, flags=re.M)
    )
    shop.runpytest().assert_outcomes(passed=5)

    # one undocumented request more, and the run fails
    (shop.path / "test_shop.py").write_text(SHOP_TESTS + UNDOCUMENTED)
    failed = shop.runpytest()
    failed.assert_outcomes(passed=5, failed=1)
    failed.stdout.fnmatch_lines(["*host 'ads.example.net' is not a documented destination*"])


def test_init_from_the_report_equals_learn(shop: pytest.Pytester) -> None:
    run = shop.runpytest("--outbound-learn", "learned.toml", "--outbound-report", "r.json")
    run.assert_outcomes(passed=5)
    init = cli("init", "--from-report", "r.json", "-o", "init.toml", cwd=shop.path)
    assert init.returncode == 0, init.stderr
    assert init.stdout == (
        "wrote 3 draft destinations to init.toml: example-com, mirror-example-net,"
        " telemetry-example-org\n"
    )
    assert init.stderr == ""
    assert (shop.path / "init.toml").read_bytes() == (shop.path / "learned.toml").read_bytes()
    assert (shop.path / "learned.toml").read_text() == LEARNED

    # without -o, the draft is printed
    printed = cli("init", "--from-report", "r.json", cwd=shop.path)
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout == LEARNED

    # once written, nothing is missing
    again = cli("init", "--from-report", "r.json", "-o", "init.toml", cwd=shop.path)
    assert again.returncode == 0
    assert again.stdout == "nothing to add to init.toml: every request is already allowed\n"
    assert (shop.path / "init.toml").read_text() == LEARNED


EXISTING = """\
# Our policy. Written by hand: keep   this   spacing.

[[destination]]  # the shop's own API
name = "shop-api"
description = "The catalogue and orders."
hosts = [ "api.example.com" ]
methods = ["GET"]          # only reads, we thought

[destination.payload]
fields = ["page"]
# (no trailing newline on purpose)"""


def test_extending_keeps_the_file_as_its_prefix(shop: pytest.Pytester) -> None:
    policy = shop.path / "outbound.toml"
    policy.write_bytes(EXISTING.encode())
    shop.makeini("[pytest]\noutbound_policy = outbound.toml\n")  # audit, judged by it
    run = shop.runpytest("--outbound-learn", "outbound.toml")
    run.assert_outcomes(passed=5)
    run.stdout.fnmatch_lines(
        [
            "learned: added 3 draft destinations to outbound.toml: example-com,"
            " mirror-example-net, telemetry-example-org"
        ]
    )
    data = policy.read_bytes()
    assert data.startswith(EXISTING.encode())
    added = data[len(EXISTING) :].decode()
    assert added.startswith(
        "\n\n# Drafted by pytest-outbound from a test run: review before relying on it.\n\n"
    )
    # shop-api admits the GETs of api.example.com (and its contract, their fields), not the
    # POST, a method it does not document: that and cdn.example.com are two subdomains of
    # example.com to document, grouped, with a pointer to shop-api
    group = added[added.index('name = "example-com"') :].split("\n\n")[0]
    assert 'hosts = ["*.example.com"]' in group
    assert 'methods = ["GET", "POST"]' in group
    assert (
        "# observed: 2 requests in 2 tests: test_shop.py::test_catalogue,"
        " test_shop.py::test_checkout"
    ) in group
    assert (
        "# near 'shop-api', which admits this host but not all of these requests: extend that"
        " destination instead if they are the same thing"
    ) in group
    assert '# fields = ["customer.id", "item"]' in group

    shop.makeini("[pytest]\noutbound_policy = outbound.toml\noutbound_mode = enforce\n")
    shop.runpytest().assert_outcomes(passed=5)

    # learning again adds nothing and leaves the file alone
    again = shop.runpytest("--outbound-learn", "outbound.toml")
    again.assert_outcomes(passed=5)
    again.stdout.fnmatch_lines(
        ["learned: nothing to add to outbound.toml: every request is already allowed"]
    )
    assert policy.read_bytes() == data


def test_learning_into_another_file_than_the_runs_policy(shop: pytest.Pytester) -> None:
    """What the run's own policy allowed is not learned; what the target file already admits
    is not learned again."""
    (shop.path / "base.toml").write_text(
        '[[destination]]\nname = "telemetry"\nhosts = ["telemetry.example.org"]\n'
    )
    (shop.path / "more.toml").write_text(
        '[[destination]]\nname = "mirror"\nhosts = ["mirror.example.net:8080"]\n'
    )
    shop.makeini("[pytest]\noutbound_policy = base.toml\n")
    shop.runpytest("--outbound-learn", "more.toml").assert_outcomes(passed=5)
    text = (shop.path / "more.toml").read_text()
    assert "telemetry.example.org" not in text
    assert text.count("mirror.example.net") == 1
    assert 'hosts = ["*.example.com"]' in text


def test_a_target_that_cannot_take_the_draft_is_a_usage_error(shop: pytest.Pytester) -> None:
    shop.mkdir("policies")
    result = shop.runpytest("--outbound-learn", "policies")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: --outbound-learn policies: is a directory; give the policy file to write"]
    )
    clean(result.stdout.str() + result.stderr.str())

    (shop.path / "afile").write_text("")
    result = shop.runpytest("--outbound-learn", "afile/outbound.toml")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --outbound-learn afile/outbound.toml: cannot write: *"])

    (shop.path / "broken.toml").write_text('[[destination]]\nname = "x"\nhsts = ["a.example"]\n')
    result = shop.runpytest("--outbound-learn", "broken.toml")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: --outbound-learn broken.toml:*: destination 'x': unknown key 'hsts'; did you"
            " mean 'hosts'?; fix it, or learn into another file (the draft is appended to it)"
        ]
    )
    clean(result.stdout.str() + result.stderr.str())
    assert (shop.path / "broken.toml").read_text().count("[[destination]]") == 1


def test_init_refuses_what_it_cannot_use(shop: pytest.Pytester) -> None:
    missing = cli("init", "--from-report", "nope.json", "-o", "p.toml", cwd=shop.path)
    assert missing.returncode == 2
    assert missing.stderr == "error: nope.json: no such report file\n"

    shop.runpytest("--outbound-report", "r.json").assert_outcomes(passed=5)
    (shop.path / "inline.toml").write_text('destination = [{name = "a", hosts = ["a.example"]}]\n')
    before = (shop.path / "inline.toml").read_text()
    inline = cli("init", "--from-report", "r.json", "-o", "inline.toml", cwd=shop.path)
    assert inline.returncode == 2
    assert inline.stderr.startswith("error: inline.toml: cannot append the draft to this file:")
    assert (shop.path / "inline.toml").read_text() == before
    clean(inline.stdout + inline.stderr)


def test_a_report_of_an_enforce_run_says_what_it_may_have_missed(shop: pytest.Pytester) -> None:
    shop.makeini("[pytest]\noutbound_mode = enforce\n")
    run = shop.runpytest("--outbound-report", "r.json")
    run.assert_outcomes(failed=5)
    init = cli("init", "--from-report", "r.json", "-o", "p.toml", cwd=shop.path)
    assert init.returncode == 0, init.stderr
    assert "note: learned from an enforce run" in init.stderr
    report = json.loads((shop.path / "r.json").read_text())
    assert report["mode"] == "enforce"
