"""A flood of hostile messages against a live sync node, while a good camera stream plays.

``Flood`` (the recipe) is what hypothesis draws in ``tests/test_fuzz.py``: which kinds of bad
message, how often, and seeds; :func:`run_flood` expands it to N messages (numpy RNG), publishes
them from extra publisher sockets (one per family, as other processes on the machine would) between
the frames of the real cameras, and returns what the sync node reported, its RSS over time and the
Skeleton3D that came out. ``benchmarks/bench_fuzz.py`` runs a longer one and prints the figures.
"""

from __future__ import annotations

import dataclasses
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import msgpack
import numpy as np
import zmq

from rtkin.core.codec import encode
from rtkin.core.messages import KeypointFrame, Skeleton3D
from rtkin.runtime.config import IKRunSettings, RecordingSettings, RunConfig, RunSettings, SourceSettings, TransportSettings
from rtkin.runtime.runner import Runner
from rtkin.runtime.transport import Receiver

#: Families of bad messages.
KINDS = ("garbage", "bad_topic", "bad_header", "wrong_keypoints", "unknown_camera", "wrong_skeleton",
         "too_many_people", "off_image", "index_backwards", "future", "past", "topic_mismatch", "forged_seq",
         "forged_end", "status_junk")


@dataclass(frozen=True)
class Flood:
    """A recipe: relative weight of each kind (KINDS order) and a seed."""

    weights: tuple[float, ...]
    seed: int = 0


def _topic(base: bytes, seq: int, stamp: int | None = None) -> bytes:
    t = base + b"\0" + struct.pack(">Q", seq % 2**64)
    return t + struct.pack(">q", stamp) if stamp is not None else t


class _Hostile:
    """Builds bad messages of every kind (multipart frame lists)."""

    def __init__(self, rng: np.random.Generator, cams: list[str], good: list[KeypointFrame]):
        self.rng, self.cams, self.good = rng, cams, good
        self.seq = 0

    def frame(self, **changes) -> KeypointFrame:
        f = self.good[int(self.rng.integers(len(self.good)))]
        fields = {k: getattr(f, k) for k in ("camera", "frame_index", "capture_ns", "skeleton", "keypoints")}
        fields.update(changes)
        return KeypointFrame(**fields)

    def kp(self, frame: KeypointFrame, base: bytes | None = None, seq: int | None = None) -> list:
        frames = encode(frame)
        self.seq += 1
        frames[0] = _topic(base or b"kp/" + frame.camera.encode() + b"/", self.seq if seq is None else seq)
        return frames

    def make(self, kind: str) -> list:
        r = self.rng
        if kind == "garbage":
            return [r.bytes(int(r.integers(0, 64))) for _ in range(int(r.integers(1, 5)))]
        if kind == "bad_topic":
            return [b"kp/cam01/" + r.bytes(int(r.integers(0, 12))), r.bytes(16)]
        if kind == "bad_header":
            good = self.kp(self.frame())
            return [good[0], r.bytes(int(r.integers(1, 200)))] + good[2:]
        if kind == "wrong_keypoints":
            return self.kp(self.frame(keypoints=np.zeros((1, 25, 3), np.float32)))
        if kind == "unknown_camera":
            return self.kp(self.frame(camera=f"cam{int(r.integers(5, 99))}"))
        if kind == "wrong_skeleton":
            return self.kp(self.frame(skeleton="COCO_17"))
        if kind == "too_many_people":
            return self.kp(self.frame(keypoints=np.ones((65, 26, 3), np.float32)))
        if kind == "off_image":
            kp = np.ones((1, 26, 3), np.float32)
            kp[..., 0] = 1e7
            return self.kp(self.frame(keypoints=kp))
        if kind == "index_backwards":
            return self.kp(self.frame(frame_index=0))
        if kind == "future":
            return self.kp(self.frame(capture_ns=time.monotonic_ns() + int(10e9)))
        if kind == "past":
            return self.kp(self.frame(capture_ns=max(0, time.monotonic_ns() - int(10e9))))
        if kind == "topic_mismatch":
            f = self.frame()
            other = next(c for c in self.cams if c != f.camera)
            return self.kp(f, base=b"kp/" + other.encode() + b"/")
        if kind == "forged_seq":
            f = self.frame()
            return self.kp(f, seq=int(r.integers(0, 2**63)))
        if kind == "forged_end":
            return [_topic(b"status/end/" + r.choice(self.cams).encode() + b"/", 0),
                    msgpack.packb({"camera": str(r.choice(self.cams)), "sent": -1})]
        if kind == "status_junk":
            return [_topic(b"status/end/x/", 0), r.bytes(int(r.integers(0, 40)))]
        raise ValueError(kind)


def _pick(variants: list, rng: np.random.Generator, kind: str) -> list:
    """One of a kind's prebuilt messages; forged sequence numbers get a fresh random one."""
    frames = list(variants[int(rng.integers(len(variants)))])
    if kind == "forged_seq":
        base = bytes(frames[0]).partition(b"\0")[0]
        frames[0] = _topic(base, int(rng.integers(0, 2**63)))
    return frames


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def run_flood(tmp_path: Path, flood: Flood, n_messages: int, good_seconds: float = 8.0, log=lambda *a: None) -> dict:
    """Start a sync node and a recorder (no sources, no IK); play the virtual subject's 4 cameras
    in real time from this process while ``n_messages`` hostile messages go out in between.

    Returns ``{"status": final sync report, "outputs": [(recv_ns, Skeleton3D)], "sent_bad": {kind:
    n}, "sent_good": n, "rss_kb": (idle, peak, end), "recording": path}``.
    """
    from rtkin.capture.keypoints import shifted, virtual_frames, virtual_scene
    from rtkin.sim import virtual

    transport = TransportSettings(keypoints=f"ipc://{tmp_path}/kp.sock", outputs=f"ipc://{tmp_path}/out.sock",
                                  angles=f"ipc://{tmp_path}/ik{{worker}}.sock")
    src = SourceSettings(kind="none")
    cfg = dataclasses.replace(RunConfig(), run=RunSettings(name="fuzz", output_dir=str(tmp_path / "out")),
                              transport=transport, source=src, ik=IKRunSettings(enabled=False),
                              recording=RecordingSettings(enabled=True, outputs=True))
    runner = Runner(cfg, log=log)
    runner.start()
    sync_pid = runner.procs["sync"].p.pid
    scene = virtual_scene(dataclasses.replace(src.virtual, duration_s=good_seconds), 60.0)
    rig = virtual.demo_rig()
    per_cam = [virtual_frames(scene, rig, cam, "HALPE_26") for cam in rig.names]
    good = sorted((f for frames in per_cam for f in frames), key=lambda f: f.capture_ns)
    rng = np.random.default_rng(flood.seed)
    hostile = _Hostile(rng, list(rig.names), good)
    w = np.asarray(flood.weights, float)
    kinds = rng.choice(len(KINDS), size=n_messages, p=w / w.sum())
    # built before the stream, a few hundred variants per kind: an attacker's CPU is its own, so the
    # flood must not slow this machine's sync by the cost of making it (only its topic is per message)
    variants = {k: [hostile.make(k) for _ in range(min(300, n_messages))] for k in KINDS}

    zctx = zmq.Context()
    pubs = {}
    for k in KINDS:  # one "process" per family (so a forged sequence never touches the cameras' own)
        s = zctx.socket(zmq.PUB)
        s.setsockopt(zmq.SNDHWM, 100_000)
        s.connect(transport.keypoints)
        pubs[k] = s
    cam_pub = zctx.socket(zmq.PUB)
    cam_pub.setsockopt(zmq.SNDHWM, 100_000)
    cam_pub.connect(transport.keypoints)
    rx = Receiver(zctx, transport.outputs, [b"sk3d/"], bind=False, rcvhwm=1_000_000)
    outputs: list = []
    stop = threading.Event()

    def listen():
        while not stop.is_set():
            got = rx.recv(20)
            if got is not None and isinstance(got.message, Skeleton3D):
                outputs.append((time.monotonic_ns(), got.message))

    th = threading.Thread(target=listen, daemon=True)
    th.start()
    time.sleep(0.5)  # connections settle
    idle = _rss_kb(sync_pid)
    peak = idle
    sent_bad = {k: 0 for k in KINDS}
    t0 = time.monotonic_ns() + int(0.2e9)
    seqs: dict[str, int] = {}
    i_bad = 0
    per_frame = max(1, n_messages // max(1, len(good)))
    for f in good:
        due = t0 + f.capture_ns
        while i_bad < n_messages and time.monotonic_ns() < due:
            for _ in range(per_frame):
                if i_bad >= n_messages:
                    break
                k = KINDS[kinds[i_bad]]
                pubs[k].send_multipart(_pick(variants[k], rng, k), copy=False)
                sent_bad[k] += 1
                i_bad += 1
            break
        delay = (due - time.monotonic_ns()) / 1e9
        if delay > 0:
            time.sleep(delay)
        frames = encode(shifted(f, t0))
        seq = seqs.get(f.camera, 0)
        seqs[f.camera] = seq + 1
        frames[0] = _topic(b"kp/" + f.camera.encode() + b"/", seq)
        cam_pub.send_multipart(frames, copy=False)
        if len(outputs) % 50 == 0:
            peak = max(peak, _rss_kb(sync_pid))
    while i_bad < n_messages:  # the rest, after the cameras
        k = KINDS[kinds[i_bad]]
        pubs[k].send_multipart(_pick(variants[k], rng, k), copy=False)
        sent_bad[k] += 1
        i_bad += 1
    time.sleep(1.0)
    peak = max(peak, _rss_kb(sync_pid))
    end = _rss_kb(sync_pid)
    alive = runner.procs["sync"].p.exitcode is None
    runner.request_stop()
    result = runner.run()
    stop.set()
    th.join(2)
    rx.close()
    for s in list(pubs.values()) + [cam_pub]:
        s.close(linger=0)
    zctx.term()
    return {"status": result.reports.get("sync", {}), "recorder": result.reports.get("recorder", {}),
            "errors": result.errors, "alive": alive,
            "outputs": outputs, "sent_bad": sent_bad, "sent_good": len(good), "rss_kb": (idle, peak, end),
            "recording": runner.recording_file(), "t0_ns": t0}
