"""The namespace: a process started in new user, network and mount namespaces.

A small helper (``_HELPER``, run by this interpreter with ``-I -S``: the standard library
alone, no ``sitecustomize``, no site packages) makes them with ``unshare(2)`` through
``ctypes`` (``os.unshare`` exists from Python 3.12 only; the ``unshare`` program of
util-linux is not needed), then, holding the capabilities a new user namespace gives its
first process:

- maps the caller's user and group ids to themselves (programs inside see their own ids,
  and have no capability left once they start: they cannot undo what follows);
- brings ``lo`` up (``SIOCSIFFLAGS``);
- makes a TUN device (``/dev/net/tun``), gives it addresses no one uses (``TUN_IPV4``,
  ``TUN_IPV6``: rtnetlink, no ``ip`` program) and routes every other address to it (IPv4 and
  IPv6 default routes): what a program sends straight to an address is read outside
  (``_tun``), and goes nowhere. Where that cannot be done, there is no route at all: a
  connection to any other address fails at once (``ENETUNREACH``), unseen;
- makes every mount private to the namespace and binds the sandbox's own ``resolv.conf``
  (``nameserver 127.0.0.1``) and ``nsswitch.conf`` (``hosts: files dns``: no resolver that
  asks a service outside over a unix socket) over the machine's;
- binds the gateway's port (TCP, ``127.0.0.1``, a free port) and the DNS responder's
  (``127.0.0.1:53``, UDP and TCP), opens the namespace's ``sock_diag`` netlink socket and
  socket tables (``_programs``), and hands all of them and the TUN device to the parent over
  a unix socket pair (``SCM_RIGHTS``): the parent, in the machine's namespace, serves them
  there, and reaches the outside itself;
- sets the proxy variables and ``exec``s the command, which keeps the helper's pid. A
  command that cannot start is said on the same socket pair; one that starts closes it.

The helper dies with the parent (``PR_SET_PDEATHSIG``): nothing is left without a gateway.
"""

from __future__ import annotations

import array
import contextlib
import json
import os
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: The variables that point programs at the gateway (and keep local traffic off it).
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")

#: The TUN device inside, and its own addresses: the IPv4 "dummy address" (RFC 7600, for a
#: host with no IPv4 address of its own) and one of IPv6's discard-only prefix (RFC 6666).
#: Neither is anyone's destination; packets to every other address are routed to it.
TUN_NAME = "outbound0"
TUN_IPV4 = "192.0.0.8"
TUN_IPV6 = "100::8"

_HELPER = r"""
import array, ctypes, fcntl, json, os, socket, struct, sys

channel = socket.socket(fileno=int(sys.argv[1]))
os.set_inheritable(channel.fileno(), False)


def say(data, fds=()):
    message = [(json.dumps(data) + "\n").encode()]
    if fds:
        channel.sendmsg(message, [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
    else:
        channel.sendall(message[0])


def fail(step, error):
    say({"error": "%s: %s" % (step, error), "step": step})
    os._exit(70)


buffer = b""
while not buffer.endswith(b"\n"):
    chunk = channel.recv(1 << 16)
    if not chunk:
        os._exit(70)
    buffer += chunk
config = json.loads(buffer)
libc = ctypes.CDLL(None, use_errno=True)


def check(step, result):
    if result != 0:
        fail(step, os.strerror(ctypes.get_errno()))


libc.prctl(1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG, SIGKILL: no sandbox outlives its gateway
uid, gid = os.getuid(), os.getgid()
CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWNET = 0x00020000, 0x10000000, 0x40000000
check("unshare(CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWNS)",
      libc.unshare(CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWNS))
try:
    with open("/proc/self/setgroups", "w") as out:
        out.write("deny")
    with open("/proc/self/uid_map", "w") as out:
        out.write("%d %d 1" % (uid, uid))
    with open("/proc/self/gid_map", "w") as out:
        out.write("%d %d 1" % (gid, gid))
except OSError as exc:
    fail("mapping the user in the new user namespace", exc.strerror or exc)
try:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    request = struct.pack("16sh14x", b"lo", 0)
    flags = struct.unpack("16sh14x", fcntl.ioctl(probe, 0x8913, request))[1]  # SIOCGIFFLAGS
    fcntl.ioctl(probe, 0x8914, struct.pack("16sh14x", b"lo", flags | 1))  # SIOCSIFFLAGS, IFF_UP
    probe.close()
except OSError as exc:
    fail("bringing lo up in the new network namespace", exc.strerror or exc)


def netlink(sock, kind, body, attributes):  # NLM_F_REQUEST | NLM_F_ACK | _CREATE | _EXCL
    payload = body + b"".join(
        struct.pack("=HH", 4 + len(value), code) + value + b"\0" * (-len(value) % 4)
        for code, value in attributes
    )
    sock.send(struct.pack("=IHHII", 16 + len(payload), kind, 0x605, 1, 0) + payload)
    error = struct.unpack_from("=i", sock.recv(4096), 16)[0]
    if error:
        raise OSError(-error, os.strerror(-error))


tun, tun_error = None, ""
try:  # the road nowhere: what is sent to any other address is read outside, and refused
    if not config.get("tun"):
        raise OSError("not asked for")
    tun = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    name = config["tun"]["name"].encode()
    fcntl.ioctl(tun, 0x400454CA, struct.pack("16sh14x", name, 0x1001))  # TUNSETIFF: TUN, NO_PI
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    fcntl.ioctl(probe, 0x8914, struct.pack("16sh14x", name, 1))  # SIOCSIFFLAGS, IFF_UP
    probe.close()
    index = struct.pack("=I", socket.if_nametoindex(name.decode()))
    rtnl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)  # NETLINK_ROUTE
    for family, address in ((socket.AF_INET, config["tun"]["ipv4"]),
                            (socket.AF_INET6, config["tun"]["ipv6"])):
        packed = socket.inet_pton(family, address)
        try:  # RTM_NEWADDR (no duplicate address detection: IFA_F_NODAD), RTM_NEWROUTE default
            netlink(rtnl, 20, struct.pack("=BBBBI", family, len(packed) * 8, 2, 0,
                                          struct.unpack("=I", index)[0]),
                    [(2, packed), (1, packed)])
            netlink(rtnl, 24, struct.pack("=BBBBBBBBI", family, 0, 0, 0, 254, 4,
                                          253 if family == socket.AF_INET else 0, 1, 0),
                    [(4, index)])
        except OSError as exc:
            if family == socket.AF_INET:
                raise
            tun_error = "IPv6: %s" % (exc.strerror or exc)  # (IPv6 off: unreachable, unseen)
    rtnl.close()
except OSError as exc:
    tun_error = "%s" % (exc.strerror or exc)
    if tun is not None:
        os.close(tun)
        tun = None
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                       ctypes.c_void_p]
check("making the mounts private", libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None))
for source, target in config["binds"]:
    if os.path.exists(target):  # (no resolv.conf: the C library asks 127.0.0.1 anyway)
        check("binding %s over %s" % (source, target),
              libc.mount(source.encode(), target.encode(), None, MS_BIND, None))
try:
    gateway = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    gateway.bind(("127.0.0.1", config.get("port", 0)))
    gateway.listen(512)
    dns_udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dns_udp.bind(("127.0.0.1", 53))
    dns_tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    dns_tcp.bind(("127.0.0.1", 53))
    dns_tcp.listen(64)
except OSError as exc:
    fail("binding the gateway's and the DNS responder's ports", exc.strerror or exc)
tables = {}
try:  # the namespace's sock_diag: a socket found by its address at once
    tables["diag"] = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 4).detach()
except OSError:
    pass
for name in ("tcp", "tcp6", "udp", "udp6"):  # (else by reading the tables whole)
    try:
        tables[name] = os.open("/proc/self/net/" + name, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        pass
if tun is not None:
    tables["tun"] = tun
port = gateway.getsockname()[1]
fds = [gateway.fileno(), dns_udp.fileno(), dns_tcp.fileno(), *tables.values()]
say({"port": port, "pid": os.getpid(), "netns": os.readlink("/proc/self/ns/net"),
     "tables": list(tables), "tun_error": tun_error}, fds)
for sock in (gateway, dns_udp, dns_tcp):
    sock.close()
for fd in tables.values():
    os.close(fd)
env = dict(config["env"])
proxy = "127.0.0.1:%d" % port
for name, value in (("HTTP_PROXY", "http://" + proxy), ("HTTPS_PROXY", "http://" + proxy),
                    ("ALL_PROXY", "socks5h://" + proxy), ("NO_PROXY", "localhost,127.0.0.1,::1")):
    env[name] = env[name.lower()] = value
env["PYTEST_OUTBOUND_SANDBOX_PROXY"] = proxy
command = config["command"]
try:
    os.execvpe(command[0], command, env)
except OSError as exc:
    say({"exec_error": "%s: %s" % (command[0], exc.strerror or exc)})
    os._exit(127)
"""


class SandboxUnavailable(Exception):
    """The sandbox cannot be made here; the message names why."""


class CommandNotStarted(Exception):
    """The command could not start inside the sandbox (not found, not executable)."""


@dataclass
class Sandboxed:
    """A command running in the sandbox, and the sockets it handed out."""

    process: subprocess.Popen[bytes]
    port: int
    netns: str
    gateway: socket.socket
    dns_udp: socket.socket
    dns_tcp: socket.socket
    tables: dict[str, int] = field(default_factory=dict)
    #: The TUN device every other address is routed to (``_tun``), None when it could not
    #: be made (``tun_error`` says why): then such packets fail as unreachable, unseen.
    tun: int | None = None
    tun_error: str = ""

    @property
    def pid(self) -> int:
        return self.process.pid

    def close_sockets(self) -> None:
        for sock in (self.gateway, self.dns_udp, self.dns_tcp):
            with contextlib.suppress(OSError):
                sock.close()
        if self.tun is not None:
            with contextlib.suppress(OSError):
                os.close(self.tun)
            self.tun = None


def unavailable_reason() -> str | None:
    """Why the sandbox cannot be made on this system, as far as can be told without trying
    (the platform); None when it may. Whether user namespaces are allowed is found by
    trying (``launch``)."""
    if not sys.platform.startswith("linux"):
        return f"the sandbox needs Linux (user and network namespaces); this is {sys.platform}"
    return None


def _hint() -> str:
    """What the system says about unprivileged user namespaces, when it forbids them."""
    for path, bad, text in (
        ("/proc/sys/kernel/unprivileged_userns_clone", "0", "kernel.unprivileged_userns_clone"),
        ("/proc/sys/user/max_user_namespaces", "0", "user.max_user_namespaces"),
        (
            "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
            "1",
            "kernel.apparmor_restrict_unprivileged_userns",
        ),
    ):
        try:
            with open(path) as handle:
                value = handle.read().strip()
        except OSError:
            continue
        if value == bad:
            return f" ({text} = {value})"
    return ""


def launch(
    command: Sequence[str],
    env: Mapping[str, str],
    binds: Sequence[tuple[str, str]],
    *,
    cwd: str | None = None,
    tun: bool = True,
) -> Sandboxed:
    """Start ``command`` in the sandbox; raise ``SandboxUnavailable`` when it cannot be made,
    ``CommandNotStarted`` when the command cannot start. ``tun``: route every other address
    to a TUN device handed out (``Sandboxed.tun``), else nowhere."""
    reason = unavailable_reason()
    if reason is not None:
        raise SandboxUnavailable(reason)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        process = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _HELPER, str(theirs.fileno())],
            pass_fds=[theirs.fileno()],
            cwd=cwd,
        )
    except OSError as exc:
        ours.close()
        theirs.close()
        raise SandboxUnavailable(f"the sandbox's helper could not start: {exc}") from None
    theirs.close()
    try:
        config = {
            "command": list(command),
            "env": dict(env),
            "binds": [list(b) for b in binds],
            "tun": {"name": TUN_NAME, "ipv4": TUN_IPV4, "ipv6": TUN_IPV6} if tun else None,
        }
        ours.sendall((json.dumps(config) + "\n").encode())
        data, fds = _receive(ours)
        if "error" in data:
            process.wait()
            if str(data.get("step", "")).startswith("unshare"):
                raise SandboxUnavailable(
                    "the sandbox cannot be made here: user namespaces are not allowed"
                    f" ({data['error']}{_hint()})"
                )
            # (Ubuntu's AppArmor lets unshare(2) succeed and takes the capabilities away)
            raise SandboxUnavailable(f"the sandbox cannot be made here: {data['error']}{_hint()}")
        if len(fds) < 3:
            process.kill()
            process.wait()
            raise SandboxUnavailable("the sandbox's helper handed out no sockets")
        names = list(data.get("tables", ()))
        tables = dict(zip(names, fds[3:], strict=False))
        sandboxed = Sandboxed(
            process=process,
            port=int(data["port"]),
            netns=str(data["netns"]),
            gateway=socket.socket(fileno=fds[0]),
            dns_udp=socket.socket(fileno=fds[1]),
            dns_tcp=socket.socket(fileno=fds[2]),
            tun=tables.pop("tun", None),
            tun_error=str(data.get("tun_error") or ""),
            tables=tables,
        )
        late, _ = _receive(ours)  # EOF: the command started (the socket pair closes on exec)
        if "exec_error" in late:
            process.wait()
            sandboxed.close_sockets()
            raise CommandNotStarted(str(late["exec_error"]))
        return sandboxed
    except BaseException:
        if process.poll() is None:
            process.kill()
            process.wait()
        raise
    finally:
        ours.close()


def _receive(sock: socket.socket) -> tuple[dict[str, Any], list[int]]:
    """One JSON line from the helper, and the descriptors that came with it ({} at EOF)."""
    buffer = b""
    fds: list[int] = []
    while not buffer.endswith(b"\n"):
        data, ancillary, _flags, _address = sock.recvmsg(1 << 16, socket.CMSG_SPACE(64))
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                received = array.array("i")
                received.frombytes(payload[: len(payload) - len(payload) % received.itemsize])
                fds.extend(received)
        if not data:
            break
        buffer += data
    if not buffer:
        return {}, fds
    loaded = json.loads(buffer)
    return (loaded if isinstance(loaded, dict) else {}), fds
