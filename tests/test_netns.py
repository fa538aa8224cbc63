"""A real multi-host rig in network namespaces: a sync host and two camera hosts.

The sync host runs ``rtkin run`` (sources elsewhere, keypoints bound on every address with CURVE,
a clock server); each camera host runs ``rtkin capture --connect`` with the virtual subject. The
camera host A has its monotonic clock 2 s ahead (a time namespace); host B's link can be impaired
like ``tc netem delay 100ms loss 1%`` (the kernel's netem where it exists, else a relay process
doing the same on a TUN link). The test process watches the sync node's outputs over ``ipc://``.

Skipped, with the reason, where namespaces cannot be made (not root, no iproute2).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

import netns_rig as nr
from rtkin.core.messages import KeypointFrame, Skeleton3D
from rtkin.runtime.security import create_keys
from rtkin.runtime.transport import Receiver

ROOT = Path(__file__).resolve().parents[1]
FPS = 30.0
OFFSET_S = 2.0  # host A's monotonic clock is this far ahead of the sync host's
SYNC_A, CAM_A = "10.213.1.1", "10.213.1.2"
SYNC_B, CAM_B = "10.213.2.1", "10.213.2.2"

pytestmark = pytest.mark.skipif(bool(nr.unavailable()), reason=str(nr.unavailable()))


class Watch:
    """Collects what the sync node publishes: tapped frames per camera (with its receive stamp and
    this process's receive time), Skeleton3D times, the latest status."""

    def __init__(self, endpoint: str):
        self.ctx = zmq.Context()
        self.rx = Receiver(self.ctx, endpoint, [b"tap/", b"sk3d/", b"status/sync/"], bind=False, rcvhwm=100_000)
        self.frames: dict[str, list[tuple[int, int, int]]] = {}  # camera -> (recv stamp, capture_ns, here_ns)
        self.sk3d: list[tuple[int, int]] = []  # (here_ns, people)
        self.status: dict = {}
        self.lock = threading.RLock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop.is_set():
            got = self.rx.recv(50)
            if got is None:
                continue
            now = time.monotonic_ns()
            with self.lock:
                if isinstance(got.message, KeypointFrame):
                    self.frames.setdefault(got.message.camera, []).append((got.stamp_ns, got.message.capture_ns, now))
                elif isinstance(got.message, Skeleton3D):
                    self.sk3d.append((now, got.message.n_people))
                elif isinstance(got.message, dict):
                    self.status = got.message

    def count(self, camera: str, after_ns: int = 0) -> int:
        with self.lock:
            return sum(1 for f in self.frames.get(camera, ()) if f[2] > after_ns)

    def first_after(self, camera: str, after_ns: int) -> int | None:
        with self.lock:
            return next((f[2] for f in self.frames.get(camera, ()) if f[2] > after_ns), None)

    def wait(self, pred, timeout_s: float, what: str):
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            with self.lock:
                v = pred()
            if v:
                return v
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}")

    def close(self):
        self.stop.set()
        self.thread.join(5)
        self.rx.close()
        self.ctx.term()


def _toml(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _time_ns_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    r = subprocess.run(["unshare", "--time", "--monotonic", "5", sys.executable, "-c",
                        "import time; print(time.monotonic())"], capture_output=True, text=True, timeout=60)
    return r.returncode == 0 and float(r.stdout) > time.monotonic() + 4


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    nr.remove_stale()
    tmp = tmp_path_factory.mktemp("netns")
    create_keys(tmp / "keys", ["cam01", "cam02"])
    create_keys(tmp / "rogue", ["cam03"])  # a client key the sync host does not know...
    shutil.copy(tmp / "keys" / "server.key", tmp / "rogue" / "server.key")  # ...with the real server key
    (tmp / "rogue" / "server.key_secret").unlink()
    sync_cfg = _toml(tmp / "sync.toml", f"""
[run]
name = "netns"
output_dir = "{tmp}/out"
[rig]
cameras = ["cam01", "cam02"]
[transport]
keypoints = "tcp://*:5550"
clock = "tcp://*:5549"
outputs = "ipc://{tmp}/out.sock"
angles = "ipc://{tmp}/ja{{worker}}.sock"
keys = "keys"
[source]
kind = "none"
fps_hz = {FPS}
[sync]
fps_hz = {FPS}
[ik]
enabled = false
[recording]
enabled = false
""")
    cam_cfg = _toml(tmp / "cam.toml", f"""
[transport]
keypoints = "tcp://{SYNC_A}:5550"
clock = "tcp://*:5549"
keys = "keys"
[source]
kind = "virtual"
fps_hz = {FPS}
[source.virtual]
duration_s = 300.0
""")
    rig = nr.Rig()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
    state = {"tmp": tmp, "rig": rig, "env": env, "cam_cfg": cam_cfg}
    watch = None
    try:
        s, a, b = rig.host("s"), rig.host("a"), rig.host("b")
        rig.veth(s, SYNC_A, a, CAM_A, "rtka")
        netem = nr.netem_supported()
        if netem:
            rig.veth(s, SYNC_B, b, CAM_B, "rtkb")
        else:
            rig.relay_link(b, CAM_B, s, SYNC_B, "rtkb", tmp / "netem.txt")
        offset = OFFSET_S if _time_ns_works() else 0.0
        state.update(s=s, a=a, b=b, netem=netem, offset=offset)
        rig.run(s, [sys.executable, "-m", "rtkin", "run", str(sync_cfg)], env, tmp / "sync.log")
        watch = Watch(f"ipc://{tmp}/out.sock")
        state["watch"] = watch
        cap = [sys.executable, "-m", "rtkin", "capture", "--config", str(cam_cfg)]
        state["cam_a"] = rig.run(a, cap + ["--connect", f"{SYNC_A}:5550", "--camera", "cam01", "--client", "cam01"],
                                 env, tmp / "cam01.log", time_offset_s=offset)
        state["cam_b"] = rig.run(b, cap + ["--connect", f"{SYNC_B}:5550", "--camera", "cam02", "--client", "cam02"],
                                 env, tmp / "cam02.log")
        try:
            watch.wait(lambda: watch.count("cam01") > 30 and watch.count("cam02") > 30, 120, "frames of both cameras")
        except AssertionError:
            logs = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(tmp.glob("*.log")))
            raise AssertionError(f"the camera hosts never streamed to the sync host\n{logs}") from None
        yield state
    finally:
        if watch is not None:
            watch.close()
        rig.close()


def test_two_camera_hosts_stream_over_curve(rig):
    w = rig["watch"]
    w.wait(lambda: sum(1 for _, n in w.sk3d if n > 0) > 10, 30, "Skeleton3D with the subject")
    rx = w.wait(lambda: w.status.get("receiver"), 30, "a sync status")
    assert rx["auth_refused"] == 0 and rx["malformed"] == 0


def test_clock_offset_of_a_host_two_seconds_ahead_is_estimated(rig):
    if not rig["offset"]:
        pytest.skip("time namespaces (unshare --time) unavailable: cannot shift a host's clock")
    w = rig["watch"]
    cams = w.wait(lambda: (c := w.status.get("receiver", {}).get("clock", {}).get("cameras", {}))
                  and "offset_ms" in c.get("cam01", {}) and "offset_ms" in c.get("cam02", {}) and c, 30,
                  "both cameras' clock reports")
    a, b = cams["cam01"], cams["cam02"]
    print(f"host A (+{OFFSET_S:g} s): offset {a['offset_ms']:+.3f} ms (error {a['offset_ms'] + OFFSET_S * 1e3:+.3f} ms), "
          f"round trip {a['rtt_ms']:.3f} ms, uncertainty {a['uncertainty_ms']:.3f} ms; host B: offset "
          f"{b['offset_ms']:+.3f} ms, round trip {b['rtt_ms']:.3f} ms")
    assert abs(a["offset_ms"] - (-OFFSET_S * 1e3)) < 2.0, a  # the sync host's clock minus host A's
    assert abs(b["offset_ms"]) < 2.0, b
    for c in (a, b):
        assert 0 < c["rtt_ms"] < 50 and 0 < c["uncertainty_ms"] <= c["rtt_ms"] and c["samples"] >= 4
    # host A's capture times arrive in the sync host's clock: receive - capture is a latency, not -2 s
    with w.lock:
        lat = np.array([(stamp - cap) / 1e9 for stamp, cap, _ in w.frames["cam01"][-60:]])
    assert np.median(lat) > -0.05 and np.median(lat) < 1.0, np.median(lat)


def test_a_client_with_a_wrong_key_is_refused(rig):
    w, r = rig["watch"], rig["rig"]
    refused = lambda: w.status["receiver"]["auth_refused"] + w.status["receiver"]["clock"]["auth_refused"]  # noqa: E731
    before = refused()
    rogue = r.run(rig["b"], [sys.executable, "-m", "rtkin", "capture", "--config", str(rig["cam_cfg"]),
                             "--connect", f"{SYNC_B}:5550", "--camera", "cam03", "--keys", str(rig["tmp"] / "rogue"),
                             "--client", "cam03"], rig["env"], rig["tmp"] / "rogue.log")
    try:
        w.wait(lambda: refused() > before, 60, "the sync host refusing the key")
        time.sleep(1.0)
        assert w.count("cam03") == 0
        assert "cam03" not in w.status["receiver"]["clock"]["cameras"]
        assert rogue.poll() is None  # still knocking: it never got the clock
    finally:
        r.stop(rogue)


def test_a_camera_host_cut_off_rejoins_when_the_link_is_back(rig, record_property):
    w, r = rig["watch"], rig["rig"]
    nr.ip("-n", rig["a"], "link", "set", "rtka", "down")
    try:
        cut = time.monotonic_ns()
        w.wait(lambda: w.count("cam01", after_ns=cut + 500_000_000) == 0 and time.monotonic_ns() > cut + 3e9,
               30, "the cut to stop cam01's frames")
        assert w.count("cam01", after_ns=cut + 500_000_000) == 0
        sk_during = len(w.sk3d)
    finally:
        nr.ip("-n", rig["a"], "link", "set", "rtka", "up")
    up = time.monotonic_ns()
    back = w.wait(lambda: w.first_after("cam01", up), 30, "cam01 to rejoin")
    rejoin_s = (back - up) / 1e9
    record_property("rejoin_s", rejoin_s)
    print(f"camera host A rejoined {rejoin_s:.2f} s after its link came back")
    w.wait(lambda: w.count("cam01", after_ns=back) > 30, 30, "cam01 to keep streaming")
    assert len(w.sk3d) > sk_during  # the sync kept producing
    assert rig["cam_a"].poll() is None


def test_a_slow_lossy_link_leaves_that_camera_late_or_missing_and_the_sync_going(rig):
    w = rig["watch"]
    impair = (["tc", "-n", rig["b"], "qdisc", "add", "dev", "rtkb", "root", "netem", "delay", "100ms", "loss", "1%"]
              if rig["netem"] else None)
    before = dict(w.status["sync"])
    sk_before = len(w.sk3d)
    t0 = time.monotonic_ns()
    if impair:
        subprocess.run(impair, check=True, timeout=30)
    else:
        (rig["tmp"] / "netem.txt").write_text("100 0.01\n")
    try:
        w.wait(lambda: time.monotonic_ns() > t0 + 4e9 and w.count("cam02", after_ns=t0 + 1e9) > 0, 30,
               "cam02 frames over the slow link")
        with w.lock:
            late = [(stamp - cap) / 1e9 for stamp, cap, here in w.frames["cam02"] if here > t0 + 1e9]
        after = dict(w.wait(lambda: w.status["sync"]["frames_in"] > before["frames_in"] + 60 and w.status["sync"], 30,
                            "sync status"))
    finally:
        if impair:
            subprocess.run(["tc", "-n", rig["b"], "qdisc", "del", "dev", "rtkb", "root"], timeout=30)
        else:
            (rig["tmp"] / "netem.txt").write_text("0 0\n")
    print(f"cam02 over the impaired link: receive - capture p50 {np.median(late) * 1e3:.0f} ms")
    assert np.median(late) > 0.08  # the impairment is there (100 ms one way)
    assert len(w.sk3d) - sk_before > 2 * FPS  # the sync kept producing
    counted = (after["late"] - before["late"]) + (after["incomplete"] - before["incomplete"])
    print(f"over ~4 s of impairment: {len(w.sk3d) - sk_before} Skeleton3D, late +{after['late'] - before['late']}, "
          f"incomplete FrameSets +{after['incomplete'] - before['incomplete']}")
    assert counted > FPS, (before, after)  # cam02's frames were late or missing, and counted
