"""Process entry points: thin shells around the stages (receive, call, send, count).

- :func:`sync_node`: SUB KeypointFrames -> :class:`~rtkin.pipeline.Pipeline` -> PUB Skeleton3D;
  every received frame is re-published on ``tap/`` with its receive time so the recorder logs
  exactly what the pipeline saw (a replay of the log reproduces the outputs).
- :func:`recorder_node`: SUB ``tap/`` (+ ``sk3d/``) -> crash-safe recording file.
- :func:`source_node`: one camera's KeypointFrames (virtual subject or OpenPose JSON) -> PUB,
  played in real time or as fast as possible.

Each runs in its own process, stops on SIGTERM/SIGINT or when its parent dies, and reports final
counters on a multiprocessing queue.
"""

from __future__ import annotations

import os
import signal
import time
import traceback
from dataclasses import dataclass

import zmq

from .config import RunConfig

__all__ = ["NodeContext", "sync_node", "recorder_node", "source_node", "load_rig"]

STATUS_INTERVAL_S = 1.0


@dataclass
class NodeContext:
    """What a node process gets from the runner: events, a results queue, the stream start.

    Sources prepare their frames, set ``ready``, wait for ``go`` and then read ``t0`` (a shared
    int64: the run's stream start, monotonic ns), so slow process start-up never eats frames.
    """

    stop: object  # multiprocessing.Event
    ready: object  # multiprocessing.Event
    results: object  # multiprocessing.Queue
    go: object = None  # multiprocessing.Event, shared by the sources
    t0: object = None  # multiprocessing.Value("q"), shared by the sources


class _Stopper:
    """SIGTERM / SIGINT / parent death -> stop (checked by the node loops)."""

    def __init__(self, ctx: NodeContext):
        self.ctx = ctx
        self.parent = os.getppid()
        self.flag = False
        signal.signal(signal.SIGTERM, self._handle)
        signal.signal(signal.SIGINT, self._handle)

    def _handle(self, *_):
        self.flag = True

    def __call__(self) -> bool:
        return self.flag or self.ctx.stop.is_set() or os.getppid() != self.parent


def load_rig(cfg: RunConfig):
    """The run's rig: the configured calibration (or the Pose2Sim demo rig), cameras in order."""
    from . import virtual
    from .calibration import load_calib

    rig = load_calib(cfg.path(cfg.rig.calibration)) if cfg.rig.calibration else virtual.demo_rig()
    return rig.subset(cfg.rig.cameras) if cfg.rig.cameras else rig


def _report(ctx: NodeContext, name: str, payload: dict) -> None:
    try:
        ctx.results.put((name, payload), timeout=1.0)
    except Exception:  # noqa: BLE001 - a full/closed queue must not turn a clean exit into a crash
        pass


# ----------------------------------------------------------------------------- sync


def sync_node(cfg: RunConfig, ctx: NodeContext) -> None:
    """SUB KeypointFrames -> Pipeline -> PUB Skeleton3D (+ tap, status). Runs until stopped."""
    from .messages import KeypointFrame
    from .pipeline import Pipeline
    from .transport import Publisher, Receiver

    stop = _Stopper(ctx)
    rig = load_rig(cfg)
    pipe = Pipeline(rig, cfg.rig.skeleton, cfg.sync, cfg.reconstruction)
    zctx = zmq.Context()
    rx = Receiver(zctx, cfg.transport.keypoints, [b"kp/"], bind=True, rcvhwm=cfg.transport.rcvhwm)
    tx = Publisher(zctx, cfg.transport.outputs, bind=True, sndhwm=cfg.transport.sndhwm)
    _warm_up(pipe)
    tx.settle(0.05)
    ctx.ready.set()
    wrong_type = 0
    next_status = time.monotonic() + STATUS_INTERVAL_S
    try:
        while not stop():
            timeout = _poll_timeout_ms(pipe)
            got = rx.recv(timeout)
            now = time.monotonic_ns()
            if got is None:
                outs = pipe.poll(now)
            elif isinstance(got.message, KeypointFrame):
                tx.send(got.message, base=b"tap/", stamp_ns=now)
                outs = pipe.push(got.message, now)
            else:
                wrong_type += 1
                outs = []
            for sk in outs:
                tx.send(sk)
            if time.monotonic() >= next_status:
                tx.send_status("sync", {**pipe.status(), "receiver": rx.counters.as_dict(), "wrong_type": wrong_type})
                next_status = time.monotonic() + STATUS_INTERVAL_S
        for sk in pipe.flush():
            tx.send(sk)
        time.sleep(0.05)  # let the last messages leave
    finally:
        final = {**pipe.status(), "receiver": rx.counters.as_dict(), "wrong_type": wrong_type}
        timings = {k: w.values().tolist() for k, w in pipe.timing.items()}
        _report(ctx, "sync", {**final, "samples_s": timings, "latency_s": pipe.latency.values().tolist()})
        rx.close()
        tx.close()
        zctx.term()


def _poll_timeout_ms(pipe) -> int:
    deadline = pipe.sync.next_deadline_ns()
    if deadline is None:
        return 20
    return int(min(20, max(0, (deadline - time.monotonic_ns()) / 1e6 + 0.5)))


def _warm_up(pipe) -> None:
    """Load the compiled kernels before the first real frame (no first-frame latency spike)."""
    import numpy as np

    C = len(pipe.rig)
    K = pipe.reconstructor.skeleton.n_keypoints
    pipe.reconstructor.triangulator(np.zeros((C, 1, K, 3)))


# ----------------------------------------------------------------------------- recorder


def recorder_node(cfg: RunConfig, ctx: NodeContext) -> None:
    """SUB ``tap/`` (+ ``sk3d/``) -> RecordingWriter. Flushes periodically; closes on stop."""
    from .calibration import write_calib_toml
    from .messages import KeypointFrame, Skeleton3D
    from .recording import INPUT, OUTPUT, RecordingWriter
    from .transport import Receiver

    stop = _Stopper(ctx)
    path = cfg.recording_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    rig = load_rig(cfg)
    tmp_calib = path.with_suffix(".calib.toml")
    write_calib_toml(rig, tmp_calib)
    meta = {"config": cfg.to_dict(), "calibration_toml": tmp_calib.read_text(), "cameras": list(rig.names),
            "skeleton": cfg.rig.skeleton}
    tmp_calib.unlink()
    topics = [b"tap/"] + ([b"sk3d/"] if cfg.recording.outputs else [])
    zctx = zmq.Context()
    rx = Receiver(zctx, cfg.transport.outputs, topics, bind=False, rcvhwm=100_000)
    counts = {"inputs": 0, "outputs": 0}
    writer = RecordingWriter(path, meta, flush_interval_s=0.1, overwrite=True)
    rx.settle(0.2)  # let the subscription reach the publisher before declaring ready
    ctx.ready.set()
    try:
        while True:
            got = rx.recv(50)
            if got is None:
                writer.flush()  # idle: nothing may stay in the buffer
                if stop():
                    break
                continue
            if got.base == b"tap/" and isinstance(got.message, KeypointFrame):
                writer.write(got.message, got.stamp_ns, INPUT)
                counts["inputs"] += 1
            elif isinstance(got.message, Skeleton3D):
                writer.write(got.message, time.monotonic_ns(), OUTPUT)
                counts["outputs"] += 1
    finally:
        writer.close()
        _report(ctx, "recorder", {**counts, "receiver": rx.counters.as_dict(), "path": str(path)})
        rx.close()
        zctx.term()


# ----------------------------------------------------------------------------- sources


def source_node(cfg: RunConfig, camera: str, ctx: NodeContext) -> None:
    """Play one camera's KeypointFrames and PUB them to the sync node; ends with the stream."""
    from .sources import openpose_frames, shifted, virtual_frames, virtual_scene
    from .transport import Publisher

    stop = _Stopper(ctx)
    rig = load_rig(cfg)
    src = cfg.source
    sent = 0
    error = None
    zctx = zmq.Context()
    tx = Publisher(zctx, cfg.transport.keypoints, bind=False, sndhwm=cfg.transport.sndhwm)
    tx.settle(0.2)
    try:
        if src.kind == "virtual":
            frames = virtual_frames(virtual_scene(src.virtual, src.fps_hz), rig, camera, cfg.rig.skeleton)
        elif src.kind == "openpose":
            frames = openpose_frames(src.openpose, cfg.path(src.openpose.root), camera, cfg.rig.skeleton, src.fps_hz)
        else:
            raise ValueError(f"unknown source kind {src.kind!r}")
        ctx.ready.set()
        while not ctx.go.wait(0.1):
            if stop():
                return
        t0 = ctx.t0.value
        for frame in frames:
            if stop():
                break
            due = t0 + frame.capture_ns
            if src.realtime:
                delay = (due - time.monotonic_ns()) / 1e9
                if delay < -1.0 / src.fps_hz:
                    continue  # a restarted camera resumes at the current frame
                if delay > 0:
                    time.sleep(delay)
            tx.send(shifted(frame, t0))
            sent += 1
        time.sleep(0.05)
    except Exception:  # noqa: BLE001 - reported to the runner, then re-raised for a non-zero exit
        error = traceback.format_exc()
        raise
    finally:
        _report(ctx, f"source:{camera}", {"sent": sent, **({"error": error} if error else {})})
        tx.close()
        zctx.term()
