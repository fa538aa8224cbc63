"""A multi-host rig inside network namespaces, for tests: hosts, links, link faults.

Hosts are network namespaces this module creates (``ip netns add``) and deletes; links are veth
pairs (``ip link``), or, where the kernel has no ``netem`` qdisc, a pair of TUN devices joined by a
small relay process (``python tests/netns_rig.py relay ...``) that delays and drops packets the
way ``tc netem delay D loss L`` does on the camera host's side. Traffic stays on these addresses.

Everything is named ``rtkt<pid>...`` so concurrent test runs never collide and leftovers of a
killed run are recognised (its pid is gone) and removed.
"""

from __future__ import annotations

import ctypes
import heapq
import os
import random
import select
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

PREFIX = "rtkt"
CLONE_NEWNET = 0x40000000


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


def unavailable() -> str | None:
    """Why namespaces cannot be made here, or None."""
    if sys.platform != "linux":
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed (apt-get install iproute2)"
    name = f"{PREFIX}{os.getpid()}probe"
    r = ip("netns", "add", name, check=False)
    if r.returncode != 0:
        return f"`ip netns add` failed: {r.stderr.strip()}"
    ip("netns", "del", name, check=False)
    return None


def remove_stale() -> None:
    """Delete namespaces left by test runs whose process is gone."""
    r = ip("netns", "list", check=False)
    for line in r.stdout.splitlines():
        name = line.split()[0] if line.strip() else ""
        if not name.startswith(PREFIX):
            continue
        digits = "".join(c for c in name[len(PREFIX):] if c.isdigit())
        if digits and not Path(f"/proc/{digits}").exists():
            ip("netns", "del", name, check=False)


def netem_supported() -> bool:
    """True when the kernel has the netem qdisc (checked in a scratch namespace)."""
    if shutil.which("tc") is None:
        return False
    name = f"{PREFIX}{os.getpid()}netem"
    ip("netns", "add", name)
    try:
        r = subprocess.run(["tc", "-n", name, "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"],
                           capture_output=True, text=True, timeout=30)
        return r.returncode == 0
    finally:
        ip("netns", "del", name, check=False)


class Rig:
    """Namespaces and links of one test run; :meth:`close` removes everything (idempotent)."""

    def __init__(self):
        self.tag = f"{PREFIX}{os.getpid()}"
        self.hosts: list[str] = []
        self.procs: list[subprocess.Popen] = []

    def host(self, name: str) -> str:
        ns = f"{self.tag}{name}"
        ip("netns", "add", ns)
        self.hosts.append(ns)
        ip("-n", ns, "link", "set", "lo", "up")
        return ns

    def veth(self, a: str, a_addr: str, b: str, b_addr: str, dev: str) -> tuple[str, str]:
        """A veth pair ``dev`` between hosts ``a`` and ``b`` with ``addr/24`` on each side."""
        ip("-n", a, "link", "add", dev, "type", "veth", "peer", "name", dev, "netns", b)
        for ns, addr in ((a, a_addr), (b, b_addr)):
            ip("-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            ip("-n", ns, "link", "set", dev, "up")
        return dev, dev

    def relay_link(self, a: str, a_addr: str, b: str, b_addr: str, dev: str, control: Path) -> None:
        """TUN devices ``dev`` in ``a`` and ``b`` joined by a relay process impairing a -> b as
        ``control`` says (a file holding ``delay_ms loss``)."""
        control.write_text("0 0\n")
        p = subprocess.Popen([sys.executable, __file__, "relay", a, b, dev, str(control)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs.append(p)
        line = p.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"netem relay did not start: {line} {p.stderr.read() if p.poll() is not None else ''}")
        for ns, addr, peer in ((a, a_addr, b_addr), (b, b_addr, a_addr)):
            ip("-n", ns, "addr", "add", addr, "peer", peer, "dev", dev)
            ip("-n", ns, "link", "set", dev, "up")

    def run(self, ns: str, args: list[str], env: dict, log: Path, time_offset_s: float = 0.0) -> subprocess.Popen:
        """Start ``args`` in host ``ns`` (its own session, output to ``log``); with a monotonic
        clock ``time_offset_s`` ahead when not 0 (a time namespace, ``unshare --time``)."""
        cmd = ["ip", "netns", "exec", ns]
        if time_offset_s:
            cmd += ["unshare", "--time", "--monotonic", f"{time_offset_s:g}"]
        f = open(log, "w")
        p = subprocess.Popen(cmd + args, stdout=f, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        f.close()
        self.procs.append(p)
        return p

    def stop(self, p: subprocess.Popen, timeout_s: float = 10.0) -> None:
        """SIGTERM the process group of ``p`` (started by :meth:`run`), SIGKILL if it lingers."""
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(timeout_s)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(5)

    def close(self) -> None:
        for p in reversed(self.procs):
            if p.args[:1] == [sys.executable]:  # a relay: not in its own session
                if p.poll() is None:
                    p.kill()
                    p.wait(5)
            else:
                self.stop(p, timeout_s=5.0)
        self.procs.clear()
        for ns in self.hosts:
            ip("netns", "del", ns, check=False)
        self.hosts.clear()


# ----------------------------------------------------------------------------- relay process


def _setns(ns: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/var/run/netns/{ns}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {ns}")
    finally:
        os.close(fd)


def _tun(name: str) -> int:
    import fcntl

    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, 0x400454CA, struct.pack("16sH", name.encode(), 0x0001 | 0x1000))  # TUNSETIFF, IFF_TUN|IFF_NO_PI
    return fd


def relay(a: str, b: str, dev: str, control: str) -> None:
    """Forward IP packets between TUN ``dev`` in ``a`` and in ``b``; a -> b delayed and dropped as
    the control file says (``delay_ms loss``, re-read when it changes)."""
    own = os.open("/proc/self/ns/net", os.O_RDONLY)
    _setns(a)
    fa = _tun(dev)
    _setns(b)
    fb = _tun(dev)
    os.close(own)
    print("ready", flush=True)
    rng = random.Random(1)
    queue: list[tuple[float, int, bytes]] = []
    n = 0
    delay, loss, mtime = 0.0, 0.0, 0.0
    while True:
        try:
            st = os.stat(control).st_mtime
            if st != mtime:
                mtime = st
                d, lo = open(control).read().split()
                delay, loss = float(d) / 1000.0, float(lo)
        except (OSError, ValueError):
            pass
        timeout = max(0.0, min(0.05, queue[0][0] - time.monotonic())) if queue else 0.05
        ready, _, _ = select.select([fa, fb], [], [], timeout)
        now = time.monotonic()
        if fa in ready:
            pkt = os.read(fa, 65536)
            if not (loss and rng.random() < loss):
                n += 1
                heapq.heappush(queue, (now + delay, n, pkt))
        if fb in ready:
            _write(fa, os.read(fb, 65536))
        while queue and queue[0][0] <= time.monotonic():
            _write(fb, heapq.heappop(queue)[2])


def _write(fd: int, pkt: bytes) -> None:
    try:
        os.write(fd, pkt)
    except OSError:  # the other side is not up (yet): the packet is lost, as on a wire
        pass


if __name__ == "__main__" and len(sys.argv) == 6 and sys.argv[1] == "relay":
    relay(*sys.argv[2:])
