"""Enforcement that cannot be sidestepped (issue 21): every road around the block, tried.

Each technique runs in an inner session under ``outbound_mode = enforce`` with
``outbound_local = enforce``, so that a loopback target counts as outbound and a real connection
can be judged without anything leaving the machine. Its target is a listener on loopback that
*this* (outer) process owns: a TCP server, a UDP socket and a unix socket per technique. After
the inner run has returned (or its process has exited) the listeners are read without waiting
(``accept``/``recvfrom`` on non-blocking sockets: on loopback a connection or a datagram is
queued before the call that made it returns), so what reached them is known exactly, with no
sleeps and whatever the inner process did at its exit. Name lookups are of ``localhost`` (and
reverse lookups of 127.0.0.1), which the hosts file answers: a lookup the plugin fails to block
sends no query either.

A technique passes only when all of these hold:

- the listener received nothing;
- the call that tried it raised ``OutboundBlocked`` (the inner helper ``attempt`` logs what
  each try did: blocked, another error, or nothing at all);
- the inner run failed (``ret != 0``), with the plugin's message naming the blocked request:
  in the inner test's own failure or error (classes 1-3, 5), or in the output of a run whose
  egress was outside any test (class 4), and in its JSON report with the phase.

Techniques that can share a session do (one inner run per group, cached for the group's
other techniques in this process: the suite runs under ``-n 2`` and must stay fast); each
technique is still its own test here, with its own assertions. Techniques that change the
process for good (``importlib.reload(socket)``, gevent's monkey-patching) and those whose
target name the suite's own network guard would refuse (``no_network``, beneath in-process
runs) run in a subprocess; so does every class-4 technique, since it is about the process's
life and exit status.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import socket
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

INI = """
[pytest]
outbound_mode = enforce
outbound_local = enforce
outbound_sensitive_machine = false
# The disguises of the str/tuple-subclass and two-faced port techniques: documented.
outbound_allow =
    127.0.0.2
    127.0.0.1:9
"""

# The inner runs' helper module: where the listeners are, and a log of what each try did.
HELPER = '''
import json
import pathlib

from pytest_outbound import OutboundBlocked

HERE = pathlib.Path(__file__).parent
_TARGETS = json.loads((HERE / "targets.json").read_text())
TCP = {label: ("127.0.0.1", port) for label, port in _TARGETS["tcp"].items()}
UDP = {label: ("127.0.0.1", port) for label, port in _TARGETS["udp"].items()}
UNIX = _TARGETS["unix"]
#: What the pytest_outbound_violation hook of class 3 does the next time it is called.
HOOK_NEXT = []


def attempt(label, action):
    """Try one technique, swallowing whatever it raises (as careless code does), and log
    what happened: "blocked" (OutboundBlocked at the call site) or what it did instead."""
    try:
        action()
    except OutboundBlocked:
        outcome = "blocked"
    except Exception as error:
        outcome = f"not blocked: it raised {type(error).__name__}: {error}"
    else:
        outcome = "not blocked: it returned"
    with open(HERE / "attempts.txt", "a", encoding="utf-8") as log:
        log.write(f"{label}\\t{outcome}\\n")
'''


# -- the listeners ---------------------------------------------------------------------------


class Listeners:
    """Per label, a TCP server, a UDP socket (both on 127.0.0.1) and a unix socket, all
    non-blocking: ``received`` reads what reached them without waiting."""

    def __init__(self, labels: list[str]) -> None:
        self._dir = tempfile.mkdtemp(prefix="sidestep-")  # short: a unix path has <= 107 bytes
        self._sockets: dict[str, tuple[socket.socket, socket.socket, socket.socket]] = {}
        self.targets: dict[str, dict[str, Any]] = {"tcp": {}, "udp": {}, "unix": {}}
        for index, label in enumerate(labels):
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            tcp.bind(("127.0.0.1", 0))
            tcp.listen(64)
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.bind(("127.0.0.1", 0))
            unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            path = os.path.join(self._dir, f"{index}.sock")
            unix.bind(path)
            unix.listen(64)
            for each in (tcp, udp, unix):
                each.setblocking(False)
            self._sockets[label] = (tcp, udp, unix)
            self.targets["tcp"][label] = tcp.getsockname()[1]
            self.targets["udp"][label] = udp.getsockname()[1]
            self.targets["unix"][label] = path

    def received(self) -> dict[str, list[str]]:
        got: dict[str, list[str]] = {}
        for label, (tcp, udp, unix) in self._sockets.items():
            seen = got[label] = []
            for server, kind in ((tcp, "a TCP connection"), (unix, "a unix-socket connection")):
                while True:
                    try:
                        conn, peer = server.accept()
                    except BlockingIOError:
                        break
                    conn.close()
                    seen.append(f"{kind} from {peer!r}")
            while True:
                try:
                    data, peer = udp.recvfrom(65536)
                except BlockingIOError:
                    break
                seen.append(f"a UDP datagram {data[:40]!r} from {peer!r}")
        return got

    def close(self) -> None:
        for sockets in self._sockets.values():
            for each in sockets:
                each.close()
        shutil.rmtree(self._dir, ignore_errors=True)


# -- running a group of techniques -----------------------------------------------------------


@dataclasses.dataclass(eq=False)  # a group is itself: compared by identity
class Group:
    name: str
    files: dict[str, str]  # module name -> source
    subprocess: bool = False


@dataclasses.dataclass
class Run:
    result: pytest.RunResult
    targets: dict[str, dict[str, Any]]
    received: dict[str, list[str]]
    attempts: dict[str, list[str]]
    #: inner test name -> (failure/error/skipped, its message and text), one per element
    junit: dict[str, list[tuple[str, str]]]
    report: dict[str, Any] | None

    @property
    def last_line(self) -> str:
        """pytest's closing line: the outcomes."""
        return next((line for line in reversed(self.result.outlines) if line.strip()), "")

    @property
    def output(self) -> str:
        return self.result.stdout.str() + "\n" + self.result.stderr.str()

    def port(self, label: str, kind: str = "tcp") -> int:
        return int(self.targets[kind][label])

    def names(self, label: str, template: str) -> str:
        return template.format(
            tcp=self.targets["tcp"][label],
            udp=self.targets["udp"][label],
            unix=self.targets["unix"][label],
        )


def run_group(pytester: pytest.Pytester, group: Group, labels: list[str]) -> Run:
    pytester.makeini(INI)
    pytester.makepyfile(sidestep=HELPER)
    for name, source in group.files.items():
        pytester.makepyfile(**{name: source})
    listeners = Listeners([*labels, "trigger"])
    try:
        pytester.makefile(".json", targets=json.dumps(listeners.targets))
        args = ("-p", "no:randomly", "--junitxml=inner.xml", "--outbound-report=report.json")
        if group.subprocess:
            result = pytester.runpytest_subprocess(*args, timeout=120)
        else:
            result = pytester.runpytest(*args)
        received = listeners.received()
    finally:
        listeners.close()
    return Run(
        result=result,
        targets=listeners.targets,
        received=received,
        attempts=_attempts(pytester.path / "attempts.txt"),
        junit=_junit(pytester.path / "inner.xml"),
        report=_report(pytester.path / "report.json"),
    )


_RUNS: dict[str, Run] = {}


def shared_run(pytester: pytest.Pytester, group: Group) -> Run:
    """The group's one inner run in this process, made by the first of its tests to ask."""
    run = _RUNS.get(group.name)
    if run is None:
        labels = [label for label, (owner, _) in TECHNIQUES.items() if owner is group]
        run = _RUNS[group.name] = run_group(pytester, group, labels)
    return run


def _attempts(path: Path) -> dict[str, list[str]]:
    attempts: dict[str, list[str]] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            label, _, outcome = line.partition("\t")
            attempts.setdefault(label, []).append(outcome)
    return attempts


def _junit(path: Path) -> dict[str, list[tuple[str, str]]]:
    verdicts: dict[str, list[tuple[str, str]]] = {}
    if path.exists():
        for case in ET.parse(path).getroot().iter("testcase"):
            verdicts[case.get("name", "")] = [
                (element.tag, f"{element.get('message', '')}\n{element.text or ''}")
                for element in case
                if element.tag in ("failure", "error", "skipped")
            ]
    return verdicts


def _report(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return None


# -- what every technique must show ----------------------------------------------------------


def assert_nothing_got_out(run: Run, label: str) -> None:
    assert run.received[label] == [], (
        f"{label}: egress reached the loopback listener: {run.received[label]};"
        f" the try logged {run.attempts.get(label)}"
    )


def assert_blocked_at_the_call_site(run: Run, label: str) -> None:
    outcomes = run.attempts.get(label)
    assert outcomes, f"{label}: the technique was never tried (see the inner output):\n{run.output}"
    assert set(outcomes) == {"blocked"}, f"{label}: no OutboundBlocked at the call site: {outcomes}"


def assert_the_test_failed_for_it(run: Run, label: str, names: str) -> None:
    """The inner test ``test_<label>`` failed or errored with the plugin's message naming the
    blocked request (``names`` in it), and the run failed."""
    assert run.result.ret != 0, f"{label}: the inner run passed:\n{run.output}"
    verdicts = run.junit.get(f"test_{label}")
    assert verdicts is not None, f"{label}: no inner test test_{label}:\n{run.output}"
    failures = [text for kind, text in verdicts if kind in ("failure", "error")]
    assert any("outbound request blocked" in text and names in text for text in failures), (
        f"{label}: test_{label} did not fail for a blocked request naming {names!r};"
        f" its report: {verdicts or 'passed'}"
    )


def assert_blocked_inside_a_test(run: Run, label: str, names: str = ":{tcp}") -> None:
    assert_nothing_got_out(run, label)
    assert_blocked_at_the_call_site(run, label)
    assert_the_test_failed_for_it(run, label, run.names(label, names))


# -- class 1: C-level roads around the patched Python names ----------------------------------

C_LEVEL = Group(
    "c-level",
    {
        "conftest": """
            import socket
            from socket import gethostbyname as early_gethostbyname  # before the plugin configures

            import pytest

            SAVED_CONNECT = socket.socket.connect  # likewise: what a library imported early keeps


            @pytest.fixture
            def saved_connect():
                return SAVED_CONNECT


            @pytest.fixture
            def saved_gethostbyname():
                return early_gethostbyname
            """,
        "test_c_level": """
            import _socket
            import contextlib
            import socket

            from sidestep import TCP, UDP, attempt


            def test_c_connect_on_socket():
                with socket.socket() as s:
                    attempt("c_connect_on_socket", lambda: _socket.socket.connect(s, TCP["c_connect_on_socket"]))


            class Skipping(socket.socket):
                def connect(self, address):
                    return super(socket.socket, self).connect(address)  # _socket.socket's own


            def test_super_connect():
                with Skipping() as s:
                    attempt("super_connect", lambda: s.connect(TCP["super_connect"]))


            def test_saved_connect(saved_connect):
                with socket.socket() as s:
                    attempt("saved_connect", lambda: saved_connect(s, TCP["saved_connect"]))


            def test_sockettype():
                with contextlib.closing(socket.SocketType(socket.AF_INET, socket.SOCK_STREAM)) as s:
                    attempt("sockettype", lambda: s.connect(TCP["sockettype"]))


            def test_c_socket_class():
                with contextlib.closing(_socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
                    attempt("c_socket_class", lambda: s.connect(TCP["c_socket_class"]))


            def test_c_connect_ex():
                with socket.socket() as s:
                    attempt("c_connect_ex", lambda: _socket.socket.connect_ex(s, TCP["c_connect_ex"]))


            def test_c_sendto():
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                    attempt("c_sendto", lambda: _socket.socket.sendto(u, b"x", UDP["c_sendto"]))


            def test_c_sendmsg():
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                    attempt("c_sendmsg", lambda: _socket.socket.sendmsg(u, [b"x"], [], 0, UDP["c_sendmsg"]))


            def test_c_gethostbyname():
                attempt("c_gethostbyname", lambda: _socket.gethostbyname("localhost"))


            def test_c_gethostbyname_ex():
                attempt("c_gethostbyname_ex", lambda: _socket.gethostbyname_ex("localhost"))


            def test_c_getaddrinfo():
                attempt("c_getaddrinfo", lambda: _socket.getaddrinfo("localhost", 80))


            def test_gethostbyaddr_name():
                attempt("gethostbyaddr_name", lambda: socket.gethostbyaddr("localhost"))


            def test_getnameinfo():
                # a reverse lookup asks a nameserver about an address (loopback's are about
                # this machine, and not judged); the suite's own guard refuses it if let out
                attempt("getnameinfo", lambda: socket.getnameinfo(("192.0.2.10", 80), 0))


            def test_saved_gethostbyname(saved_gethostbyname):
                attempt("saved_gethostbyname", lambda: saved_gethostbyname("localhost"))
            """,
    },
)

# Each changes the process for good (or imports gevent): a process of their own, in this order.
C_LEVEL_ISOLATED = Group(
    "c-level-isolated",
    {
        "test_isolated": """
            import importlib
            import socket

            from sidestep import TCP, attempt


            def test_gevent_socket():
                import gevent.socket  # not monkey-patched: its own socket class on _socket's

                attempt("gevent_socket", lambda: gevent.socket.create_connection(TCP["gevent_socket"]).close())


            def test_reload_socket():  # last: the module is fresh from here on
                fresh = importlib.reload(socket)
                attempt("reload_socket", lambda: fresh.create_connection(TCP["reload_socket"]).close())
            """,
    },
    subprocess=True,
)

GEVENT_PATCHED = Group(
    "gevent-patched",
    {
        "test_gevent": """
            import socket

            from sidestep import TCP, attempt


            def test_gevent_monkey_patch_socket():
                from gevent import monkey

                monkey.patch_socket()
                attempt(
                    "gevent_monkey_patch_socket",
                    lambda: socket.create_connection(TCP["gevent_monkey_patch_socket"]).close(),
                )
            """,
    },
    subprocess=True,
)

# -- class 2: fail-open parsing ---------------------------------------------------------------

PARSING = Group(
    "parsing",
    {
        "test_parsing": '''
            import socket
            import struct

            from sidestep import TCP, UDP, UNIX, attempt

            DOCUMENTED = "127.0.0.2"  # outbound_allow in the ini; nothing listens there


            def test_empty_host():  # the OS connects "" (0.0.0.0) to this machine
                with socket.socket() as s:
                    attempt("empty_host", lambda: s.connect(("", TCP["empty_host"][1])))


            def test_empty_host_sendto():
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                    attempt("empty_host_sendto", lambda: u.sendto(b"x", ("", UDP["empty_host_sendto"][1])))


            def test_bytearray_host():
                with socket.socket() as s:
                    address = (bytearray(b"127.0.0.1"), TCP["bytearray_host"][1])
                    attempt("bytearray_host", lambda: s.connect(address))


            class Port:
                def __init__(self, number):
                    self.number = number

                def __index__(self):
                    return self.number


            def test_index_port():
                with socket.socket() as s:
                    attempt("index_port", lambda: s.connect(("127.0.0.1", Port(TCP["index_port"][1]))))


            class TwoFacedPort:
                """The documented port (9: outbound_allow) the first time it is read, the real one after."""

                def __init__(self, number):
                    self.number = number
                    self.reads = 0

                def __index__(self):
                    self.reads += 1
                    return 9 if self.reads == 1 else self.number


            def test_index_port_two_faced():
                with socket.socket() as s:
                    port = TwoFacedPort(TCP["index_port_two_faced"][1])
                    attempt("index_port_two_faced", lambda: s.connect(("127.0.0.1", port)))


            class Disguised(str):
                """Shows DOCUMENTED to every Python method; C reads the characters it was made of
                (through ``encode``, which the idna codec calls for a str subclass: left alone)."""


            _MACHINERY = {
                "__new__", "__init__", "__init_subclass__", "__subclasshook__", "__class__",
                "__getattribute__", "__setattr__", "__delattr__", "__dir__", "__reduce__",
                "__reduce_ex__", "__getnewargs__", "__sizeof__", "__doc__", "encode",
            }
            for _name in dir(str):
                if _name not in _MACHINERY and callable(getattr(str, _name)):
                    setattr(Disguised, _name, (lambda n: lambda self, *a, **k: getattr(DOCUMENTED, n)(*a, **k))(_name))


            def test_str_subclass_host():
                host = Disguised("127.0.0.1")
                assert (str(host), host.lower(), host == DOCUMENTED) == (DOCUMENTED, DOCUMENTED, True)
                with socket.socket() as s:
                    attempt("str_subclass_host", lambda: s.connect((host, TCP["str_subclass_host"][1])))


            class DisguisedAddress(tuple):
                """Shows (DOCUMENTED, port) to Python code; C reads the items it was made of."""

                def __new__(cls, real, shown):
                    self = super().__new__(cls, real)
                    self.shown = shown
                    return self

                def __getitem__(self, index):
                    return self.shown[index]

                def __iter__(self):
                    return iter(self.shown)

                def __repr__(self):
                    return repr(self.shown)


            def test_tuple_subclass_address():
                port = TCP["tuple_subclass_address"][1]
                address = DisguisedAddress(("127.0.0.1", port), (DOCUMENTED, port))
                assert (address[0], list(address)) == (DOCUMENTED, [DOCUMENTED, port])
                with socket.socket() as s:
                    attempt("tuple_subclass_address", lambda: s.connect(address))


            def test_sock_raw():
                # A UDP header written by hand (checksum 0: none), sent to a raw socket's "port 0".
                port = UDP["sock_raw"][1]
                datagram = struct.pack("!HHHH", 9, port, 8 + 3, 0) + b"raw"

                def send():
                    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP) as raw:
                        raw.sendto(datagram, ("127.0.0.1", 0))

                attempt("sock_raw", send)


            def test_af_packet():  # link-layer frames: nothing the plugin can judge, so creating one is blocked
                attempt("af_packet", lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW).close())


            def test_af_unix_connect():  # SPEC 3: unix sockets are local, judged under local = enforce
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    attempt("af_unix_connect", lambda: s.connect(UNIX["af_unix_connect"]))
            ''',
    },
)

# The suite's network guard (beneath in-process runs) refuses a name the hosts file lacks:
# a process of their own, where nothing but the plugin stands between them and the resolver.
IDNA = Group(
    "idna",
    {
        "test_idna": """
            import socket

            from sidestep import TCP, attempt

            DROPPED = "local\\u200dhost"  # IDNA2003 (Python's codec) drops the zero-width joiner


            def test_idna_dropped_char_connect():
                with socket.socket() as s:
                    attempt("idna_dropped_char_connect", lambda: s.connect((DROPPED, TCP["idna_dropped_char_connect"][1])))


            def test_idna_dropped_char_lookup():
                attempt("idna_dropped_char_lookup", lambda: socket.getaddrinfo(DROPPED, 80))
            """,
    },
    subprocess=True,
)

# -- class 3: exemptions that outlive their reason -------------------------------------------

EXEMPTIONS = Group(
    "exemptions",
    {
        "conftest": """
            from sidestep import HOOK_NEXT, attempt


            def pytest_outbound_violation(request):
                if HOOK_NEXT:  # once: a hook that is judged reports its own block here again
                    attempt(*HOOK_NEXT.pop())
            """,
        "test_exemptions": """
            import http.client
            import socket
            import urllib.request

            import httpx
            import requests

            from sidestep import HOOK_NEXT, TCP, attempt


            def via_requests(host, port):
                requests.get(f"http://{host}:{port}/", timeout=2)


            def via_http_client(host, port):
                conn = http.client.HTTPConnection(host, port, timeout=2)
                try:
                    conn.request("GET", "/")
                    conn.getresponse()
                finally:
                    conn.close()


            def via_httpx(host, port):
                httpx.get(f"http://{host}:{port}/", timeout=2)


            def via_urllib(host, port):
                urllib.request.urlopen(f"http://{host}:{port}/", timeout=2)


            def swallowed(call, *args):
                try:
                    call(*args)
                except Exception:
                    pass  # the block, caught by the code under test


            def connect(label):
                socket.create_connection(TCP[label], timeout=2).close()


            def test_blocked_requests_then_connect():
                swallowed(via_requests, "127.0.0.1", TCP["blocked_requests_then_connect"][1])
                attempt("blocked_requests_then_connect", lambda: connect("blocked_requests_then_connect"))


            def test_blocked_http_client_then_connect():
                swallowed(via_http_client, "127.0.0.1", TCP["blocked_http_client_then_connect"][1])
                attempt("blocked_http_client_then_connect", lambda: connect("blocked_http_client_then_connect"))


            def test_blocked_httpx_then_connect():
                swallowed(via_httpx, "127.0.0.1", TCP["blocked_httpx_then_connect"][1])
                attempt("blocked_httpx_then_connect", lambda: connect("blocked_httpx_then_connect"))


            def test_blocked_urllib_then_connect():
                swallowed(via_urllib, "127.0.0.1", TCP["blocked_urllib_then_connect"][1])
                attempt("blocked_urllib_then_connect", lambda: connect("blocked_urllib_then_connect"))


            def test_blocked_http_then_getaddrinfo():
                port = TCP["blocked_http_then_getaddrinfo"][1]
                swallowed(via_requests, "localhost", port)
                attempt("blocked_http_then_getaddrinfo", lambda: socket.getaddrinfo("localhost", port))


            def test_blocked_http_then_gethostbyname():
                swallowed(via_requests, "localhost", TCP["blocked_http_then_gethostbyname"][1])
                attempt("blocked_http_then_gethostbyname", lambda: socket.gethostbyname("localhost"))


            def test_violation_hook_connect_after_socket_violation():
                label = "violation_hook_connect_after_socket_violation"
                HOOK_NEXT.append((label, lambda: connect(label)))
                swallowed(connect, "trigger")


            def test_violation_hook_connect_after_http_violation():
                label = "violation_hook_connect_after_http_violation"
                HOOK_NEXT.append((label, lambda: connect(label)))
                swallowed(via_requests, "127.0.0.1", TCP["trigger"][1])


            def test_violation_hook_lookup_after_socket_violation():
                label = "violation_hook_lookup_after_socket_violation"
                HOOK_NEXT.append((label, lambda: socket.getaddrinfo("localhost", 80)))
                swallowed(connect, "trigger")
            """,
    },
)

# -- class 5: outcomes that swallow a violation ----------------------------------------------
# Every skip and xfail in these inner tests is the technique under test: an outcome that would
# hide a block. Each must still end in an error at teardown and a failed run.

OUTCOMES = Group(
    "outcomes",
    {
        "test_outcomes": """
            import socket

            import pytest
            import requests

            from sidestep import TCP


            def connect(label):
                socket.create_connection(TCP[label], timeout=2).close()


            def test_skip_no_network():
                try:
                    requests.get(f"http://127.0.0.1:{TCP['skip_no_network'][1]}/", timeout=2)
                except Exception:
                    pytest.skip("no network")


            def test_swallow_then_skip():
                try:
                    connect("swallow_then_skip")
                except Exception:
                    pass
                pytest.skip("the service is not configured here")


            @pytest.mark.xfail(strict=True, reason="needs the network")
            def test_xfail_strict():
                connect("xfail_strict")


            @pytest.mark.xfail(strict=False, reason="needs the network")
            def test_xfail_non_strict():
                connect("xfail_non_strict")


            @pytest.mark.xfail(reason="the upstream is flaky")
            def test_xfail_swallowed():
                try:
                    connect("xfail_swallowed")
                except Exception:
                    pass


            def test_xfail_imperative():
                try:
                    connect("xfail_imperative")
                except Exception:
                    pytest.xfail("no network")


            @pytest.fixture
            def service():
                try:
                    connect("skip_in_fixture")
                except Exception:
                    pass
                pytest.skip("the service is unavailable")


            def test_skip_in_fixture(service):
                pass
            """,
    },
)

# -- class 4: the life of the process --------------------------------------------------------

_SEND = 'attempt("{label}", lambda: socket.create_connection(TCP["{label}"], timeout=2).close())'

#: label -> (the rootdir conftest that sends, the phases its request may be reported in)
LIFE: dict[str, tuple[str, set[str]]] = {
    "conftest_import": (
        """
        import socket
        from sidestep import TCP, attempt

        # a telemetry SDK's start-up ping, while the rootdir conftest is imported
        {send}
        """,
        {"collect"},
    ),
    "pytest_configure": (
        """
        import socket
        from sidestep import TCP, attempt


        def pytest_configure(config):
            {send}
        """,
        {"collect"},
    ),
    "pytest_unconfigure_trylast": (
        """
        import socket
        import pytest
        from sidestep import TCP, attempt


        @pytest.hookimpl(trylast=True)
        def pytest_unconfigure(config):
            {send}
        """,
        {"session", "exit"},
    ),
    "add_cleanup": (
        """
        import socket
        from sidestep import TCP, attempt


        def pytest_configure(config):
            config.add_cleanup(lambda: {send})
        """,
        {"session", "exit"},
    ),
    "atexit_at_import": (
        """
        import atexit
        import socket
        from sidestep import TCP, attempt

        # a telemetry SDK's flush, registered when it is imported
        atexit.register(lambda: {send})
        """,
        {"session", "exit"},
    ),
    "daemon_thread_after_session": (
        """
        import socket
        import threading
        import pytest
        from sidestep import TCP, attempt

        SESSION_OVER = threading.Event()
        REPORTERS = []


        @pytest.fixture
        def reporter():
            def report():
                SESSION_OVER.wait(60)
                {send}

            thread = threading.Thread(target=report, daemon=True)
            thread.start()
            REPORTERS.append(thread)


        @pytest.hookimpl(trylast=True)
        def pytest_unconfigure(config):  # after the plugin's: the session is over
            SESSION_OVER.set()
            for thread in REPORTERS:
                thread.join(60)
        """,
        {"session", "exit"},
    ),
    "pytest_terminal_summary": (
        """
        import socket
        from sidestep import TCP, attempt


        def pytest_terminal_summary(terminalreporter):
            {send}
        """,
        {"session", "exit"},
    ),
    "pytest_sessionfinish": (
        """
        import socket
        from sidestep import TCP, attempt


        def pytest_sessionfinish(session):
            {send}
        """,
        {"session", "exit"},
    ),
    "pytest_sessionfinish_after_the_plugins": (
        """
        import socket
        import pytest
        from sidestep import TCP, attempt


        @pytest.hookimpl(wrapper=True)
        def pytest_sessionfinish(session):
            result = yield  # every other implementation has run, the plugin's too
            {send}
            return result
        """,
        {"session", "exit"},
    ),
}


LIFE_GROUPS = {
    label: Group(
        label,
        {
            "conftest": conftest.replace("{send}", _SEND.format(label=label)),
            "test_life": "def test_fine(reporter):\n    pass\n"
            if label == "daemon_thread_after_session"
            else "def test_fine():\n    pass\n",
        },
        subprocess=True,  # the process's own exit status is what is judged
    )
    for label, (conftest, _) in LIFE.items()
}


#: label -> (its group, what the plugin's message for it must name: a format of the label's
#: targets, ``{tcp}``/``{udp}`` ports and the ``{unix}`` path).
TECHNIQUES: dict[str, tuple[Group, str]] = {
    # class 1
    "c_connect_on_socket": (C_LEVEL, ":{tcp}"),
    "super_connect": (C_LEVEL, ":{tcp}"),
    "saved_connect": (C_LEVEL, ":{tcp}"),
    "sockettype": (C_LEVEL, ":{tcp}"),
    "c_socket_class": (C_LEVEL, ":{tcp}"),
    "c_connect_ex": (C_LEVEL, ":{tcp}"),
    "c_sendto": (C_LEVEL, ":{udp}"),
    "c_sendmsg": (C_LEVEL, ":{udp}"),
    "c_gethostbyname": (C_LEVEL, "localhost"),
    "c_gethostbyname_ex": (C_LEVEL, "localhost"),
    "c_getaddrinfo": (C_LEVEL, "localhost"),
    "gethostbyaddr_name": (C_LEVEL, "localhost"),
    "getnameinfo": (C_LEVEL, "192.0.2.10"),
    "saved_gethostbyname": (C_LEVEL, "localhost"),
    "gevent_socket": (C_LEVEL_ISOLATED, ":{tcp}"),
    "reload_socket": (C_LEVEL_ISOLATED, ":{tcp}"),
    "gevent_monkey_patch_socket": (GEVENT_PATCHED, ":{tcp}"),
    # class 2
    "empty_host": (PARSING, ":{tcp}"),
    "empty_host_sendto": (PARSING, ":{udp}"),
    "bytearray_host": (PARSING, ", {tcp})"),  # unjudgeable: named as given
    "index_port": (PARSING, ""),  # failing closed need not call __index__ to name the port
    "index_port_two_faced": (PARSING, ""),
    "str_subclass_host": (PARSING, ""),  # never judged, nor named, as the disguise (below)
    "tuple_subclass_address": (PARSING, ""),
    "sock_raw": (PARSING, ""),
    "af_packet": (PARSING, ""),
    "af_unix_connect": (PARSING, "{unix}"),
    "idna_dropped_char_connect": (IDNA, ":{tcp}"),
    "idna_dropped_char_lookup": (IDNA, ""),
    # class 3
    "blocked_requests_then_connect": (EXEMPTIONS, ":{tcp}"),
    "blocked_http_client_then_connect": (EXEMPTIONS, ":{tcp}"),
    "blocked_httpx_then_connect": (EXEMPTIONS, ":{tcp}"),
    "blocked_urllib_then_connect": (EXEMPTIONS, ":{tcp}"),
    "blocked_http_then_getaddrinfo": (EXEMPTIONS, "localhost"),
    "blocked_http_then_gethostbyname": (EXEMPTIONS, "localhost"),
    "violation_hook_connect_after_socket_violation": (EXEMPTIONS, ":{tcp}"),
    "violation_hook_connect_after_http_violation": (EXEMPTIONS, ":{tcp}"),
    "violation_hook_lookup_after_socket_violation": (EXEMPTIONS, "localhost"),
    # class 5
    "skip_no_network": (OUTCOMES, ":{tcp}"),
    "swallow_then_skip": (OUTCOMES, ":{tcp}"),
    "xfail_strict": (OUTCOMES, ":{tcp}"),
    "xfail_non_strict": (OUTCOMES, ":{tcp}"),
    "xfail_swallowed": (OUTCOMES, ":{tcp}"),
    "xfail_imperative": (OUTCOMES, ":{tcp}"),
    "skip_in_fixture": (OUTCOMES, ":{tcp}"),
}


def _labels(*groups: Group) -> list[Any]:
    params = []
    for label, (group, _) in TECHNIQUES.items():
        if any(group is each for each in groups):
            marks = []
            if label == "af_packet" and not hasattr(socket, "AF_PACKET"):
                marks.append(pytest.mark.skip(reason="AF_PACKET is Linux's"))
            params.append(pytest.param(label, id=label, marks=marks))
    return params


@pytest.mark.parametrize("label", _labels(C_LEVEL, C_LEVEL_ISOLATED, GEVENT_PATCHED))
def test_a_c_level_road_around_the_patched_names_is_blocked(
    pytester: pytest.Pytester, label: str
) -> None:
    """Class 1: ``_socket`` called directly, on an ordinary socket or a class of its own, a
    method or resolver saved before the plugin configured, a reloaded ``socket``, gevent."""
    group, names = TECHNIQUES[label]
    assert_blocked_inside_a_test(shared_run(pytester, group), label, names)


@pytest.mark.parametrize("label", _labels(PARSING, IDNA))
def test_an_address_the_plugin_cannot_read_as_c_does_fails_closed(
    pytester: pytest.Pytester, label: str
) -> None:
    """Class 2: what the plugin cannot parse, or parses otherwise than C reads it, is a
    violation; a family or type it cannot judge is blocked; AF_UNIX is judged (local)."""
    group, names = TECHNIQUES[label]
    run = shared_run(pytester, group)
    assert_blocked_inside_a_test(run, label, names)
    if label in ("str_subclass_host", "tuple_subclass_address"):
        disguise = f"127.0.0.2:{run.port(label)}"
        assert not any(disguise in text for _, text in run.junit[f"test_{label}"]), (
            f"{label}: the plugin named the disguise {disguise} as the destination"
        )


@pytest.mark.parametrize("label", _labels(EXEMPTIONS))
def test_a_blocked_request_exempts_nothing_and_the_plugins_hooks_are_judged(
    pytester: pytest.Pytester, label: str
) -> None:
    """Class 3: a blocked HTTP request leaves no exemption for its host:port or name, and the
    code of a ``pytest_outbound_violation`` hook is judged like any other."""
    group, names = TECHNIQUES[label]
    assert_blocked_inside_a_test(shared_run(pytester, group), label, names)


@pytest.mark.parametrize("label", _labels(OUTCOMES))
def test_a_block_fails_the_run_whatever_the_tests_outcome(
    pytester: pytest.Pytester, label: str
) -> None:
    """Class 5 (SPEC 4): skipped, xfailed (strict or not), skipped from a fixture: a test
    whose request was blocked errors at its teardown, naming the request, and the run fails."""
    run = shared_run(pytester, OUTCOMES)
    assert_nothing_got_out(run, label)
    assert run.result.ret != 0, f"the inner run exited 0 ({run.last_line}):\n{run.output}"
    assert run.result.parseoutcomes().get("errors"), (
        f"the inner run has no errors ({run.last_line}):\n{run.output}"
    )
    verdicts = run.junit.get(f"test_{label}", [])
    errors = [text for kind, text in verdicts if kind == "error"]
    names = run.names(label, TECHNIQUES[label][1])
    assert any("outbound request blocked" in text and names in text for text in errors), (
        f"test_{label} has no error naming the blocked request ({names}); its report:"
        f" {verdicts or 'passed'}"
    )
    run.result.stdout.fnmatch_lines([f"*ERROR at teardown of test_{label}*"])


@pytest.mark.parametrize("label", sorted(LIFE))
def test_egress_over_the_life_of_the_process_is_blocked_and_fails_it(
    pytester: pytest.Pytester, label: str
) -> None:
    """Class 4: from the rootdir conftest's import to the last ``atexit`` handler, egress
    outside any test is blocked and makes the process exit non-zero, even after pytest has
    fixed its exit status; the output names the request and its phase (``collect``,
    ``session`` or ``exit``), and so does the JSON report."""
    run = run_group(pytester, LIFE_GROUPS[label], [label])
    port = run.port(label)
    assert_nothing_got_out(run, label)
    assert_blocked_at_the_call_site(run, label)
    assert run.result.ret != 0, f"{label}: the process exited 0:\n{run.output}"
    named = [line for line in run.output.splitlines() if f"127.0.0.1:{port}" in line]
    assert named, f"{label}: nothing in the output names the blocked request:\n{run.output}"
    phases = LIFE[label][1]
    phase = re.compile(r"\b(" + "|".join(phases) + r")\b")
    assert any(phase.search(line) for line in named), (
        f"{label}: no line naming the request names its phase ({' or '.join(sorted(phases))}):"
        f" {named}"
    )
    # SPEC 6: the report lists every request, those made before the plugin configured or
    # after the report was first written too, with its phase.
    assert run.report is not None, f"{label}: no report was written:\n{run.output}"
    reported = [
        r
        for r in run.report.get("requests", [])
        if r.get("port") == port and r.get("verdict") == "violation"
    ]
    assert reported, (
        f"{label}: the report has no violation to port {port}: {run.report['requests']}"
    )
    assert {r.get("phase") for r in reported} <= phases, (
        f"{label}: reported with phase {[r.get('phase') for r in reported]}, expected one of"
        f" {sorted(phases)}"
    )
