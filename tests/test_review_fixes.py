"""Regressions found in review: each test fails without its fix."""

from __future__ import annotations

import threading

import pytest

from pytest_outbound import Destination, Policy
from pytest_outbound._decide import Context, Rules, decide
from pytest_outbound._guard import ENFORCE, Guard
from pytest_outbound._messages import blocked_message
from pytest_outbound._record import build_request


def test_another_port_of_a_host_judged_at_the_http_layer_is_judged_again(
    pytester: pytest.Pytester,
) -> None:
    pytester.makefile(
        ".toml", outbound='[[destination]]\nname = "api"\nhosts = ["192.0.2.10:443"]\n'
    )
    pytester.makeini("[pytest]\noutbound_policy = outbound.toml\noutbound_mode = enforce\n")
    pytester.makepyfile(
        """
        import socket, pytest, requests
        from pytest_outbound import OutboundBlocked

        def test_smtp_after_https(outbound):
            outbound.stub("api")
            requests.get("https://192.0.2.10/")            # judged (and stubbed) on port 443
            with pytest.raises(OutboundBlocked):           # port 25 of the same host is not it
                socket.create_connection(("192.0.2.10", 25), timeout=0.1)
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)  # blocked, caught: still a failure
    result.stdout.fnmatch_lines(["*CONNECT tcp://192.0.2.10:25 (client: socket)*"])


def test_lookups_of_names_below_localhost_are_judged(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\noutbound_mode = enforce\n")
    pytester.makepyfile(
        """
        import socket, pytest
        from pytest_outbound import OutboundBlocked

        def test_dns_tunnel(outbound):
            socket.getaddrinfo("localhost", 80)            # answered locally: fine
            with pytest.raises(OutboundBlocked):
                socket.getaddrinfo("c2VjcmV0LXRva2Vu.localhost", 80)
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*DNS dns://c2vjcmv0lxrva2vu.localhost (client: dns)*"])


def test_sensitive_values_from_a_conftest_below_the_rootdir_count(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini("[pytest]\noutbound_mode = enforce\noutbound_allow = partner.example\n")
    sub = pytester.mkdir("sub")
    (sub / "conftest.py").write_text(
        "def pytest_outbound_sensitive_values(config):\n    return {'license': ['LIC-0042-XYZ']}\n"
    )
    (sub / "test_leak.py").write_text(
        "import requests\n\n"
        "def test_leak(outbound):\n"
        "    outbound.stub('partner.example', method='POST')\n"
        "    requests.post('https://partner.example/', data={'key': 'LIC-0042-XYZ'})\n"
    )
    result = pytester.runpytest()  # from the rootdir: sub/conftest.py loads during collection
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*sensitive:license*"])


def test_a_bad_sensitive_values_hook_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("def pytest_outbound_sensitive_values(config):\n    return ['x']\n")
    pytester.makepyfile("def test_it():\n    pass\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: conftest.py: pytest_outbound_sensitive_values returned [[]'x']; return a mapping*"]
    )


def test_a_typo_in_a_conftest_destination_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        "from pytest_outbound import Destination\n"
        "def pytest_outbound_destinations(config):\n"
        "    return [Destination(name='x', host=['a.example'])]\n"
    )
    pytester.makepyfile("def test_it():\n    pass\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: conftest.py: pytest_outbound_destinations: *unexpected keyword argument 'host'*"]
    )
    assert "Traceback" not in result.stderr.str()


def test_a_pattern_with_a_scheme_is_a_near_miss_not_undocumented() -> None:
    rules = Rules(Policy((Destination("update", ("https://octopus.com",)),)))
    request = build_request("GET", "http://octopus.com/", client="requests")
    verdict = decide(request, Context(rules))
    assert (verdict.reasons, verdict.closest) == (("scheme",), "update")
    message = blocked_message(request, verdict, Context(rules))
    assert 'hosts = ["https://octopus.com", "http://octopus.com"]' in message
    assert "add to" not in message  # no new destination that would admit plain http for all


def test_min_interval_holds_across_threads() -> None:
    rules = Rules(Policy((Destination("update", ("octopus.com",), min_interval="8h"),)))
    guard = Guard(
        mode=ENFORCE,
        context=Context(rules),
        rootpath=__import__("pathlib").Path("."),
        body_limit=1024,
    )
    barrier = threading.Barrier(8)
    sent = []

    def check() -> None:
        barrier.wait()
        try:
            guard.observe(build_request("GET", "https://octopus.com/", client="requests"))
            sent.append(1)
        except Exception:
            pass

    threads = [threading.Thread(target=check) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(sent) == 1


def test_every_patch_is_undone_exactly(pytester: pytest.Pytester) -> None:
    import _socket
    import http.client
    import threading as threading_module
    import urllib.request

    import aiohttp
    import httpx
    import requests
    import urllib3

    def attributes() -> dict[str, object]:
        return {
            "Session.send": requests.Session.__dict__["send"],
            "Session.request": requests.Session.__dict__["request"],
            "Client._send_single_request": httpx.Client.__dict__["_send_single_request"],
            "AsyncClient._send_single_request": httpx.AsyncClient.__dict__["_send_single_request"],
            "HTTPConnectionPool.urlopen": urllib3.HTTPConnectionPool.__dict__["urlopen"],
            "PoolManager.urlopen": urllib3.PoolManager.__dict__["urlopen"],
            "HTTPConnection.request": http.client.HTTPConnection.__dict__["request"],
            "HTTPConnection.putrequest": http.client.HTTPConnection.__dict__["putrequest"],
            "HTTPConnection.endheaders": http.client.HTTPConnection.__dict__["endheaders"],
            "urllib3 HTTPConnection.request": urllib3.connection.HTTPConnection.__dict__["request"],
            "do_open": urllib.request.AbstractHTTPHandler.__dict__["do_open"],
            "ClientRequest.__init__": aiohttp.ClientRequest.__dict__["__init__"],
            "Thread.start": threading_module.Thread.__dict__["start"],
            "_socket.getaddrinfo": _socket.getaddrinfo,
        }

    before = attributes()
    pytester.makepyfile(
        "import requests\n\ndef test_patched():\n    assert requests.Session.send.__wrapped__\n"
    )
    pytester.runpytest("-o", "outbound_mode=enforce").assert_outcomes(passed=1)
    assert attributes() == before


def test_bytes_header_names_and_values_are_recorded_as_text(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\noutbound_mode = enforce\noutbound_allow = api.example.com\n")
    pytester.makepyfile(
        """
        import requests, responses

        @responses.activate
        def test_bytes(outbound):
            responses.get("https://api.example.com/v1")
            requests.get("https://api.example.com/v1", headers={b"X-Raw": b"caf\\xe9"})
            assert outbound.requests[0].headers["X-Raw"] == "caf\\u00e9"
        """
    )
    pytester.runpytest().assert_outcomes(passed=1)
