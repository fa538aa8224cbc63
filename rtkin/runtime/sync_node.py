"""The sync process: SUB KeypointFrames -> validate -> :class:`~rtkin.reconstruct.pipeline.Pipeline`
-> PUB Skeleton3D; every KeypointFrame received is re-published on ``tap/`` with its receive time
so the recorder logs exactly what the pipeline saw (a replay of the log reproduces the outputs).

Each loop reads every message waiting on the socket (one receive time for the batch), validates
them (:class:`~rtkin.reconstruct.validation.InputValidator`: refused ones are counted by reason),
pushes the batch, and publishes. End-of-stream messages from the sources stop the sync waiting for
those cameras; when every camera has ended, the last slots are flushed and the node says so
(``status/end/sync/``) and sets ``done``.
"""

from __future__ import annotations

import sys
import time


from rtkin.runtime.config import RunConfig
from rtkin.runtime.node import (END_TOPIC, STATUS_INTERVAL_S, TAP_END, NodeContext, Stopper, announce, end_topic, fail,
                                load_rig, quiet_gc, report)

__all__ = ["sync_node"]

MAX_BATCH = 2000  # messages read in one go at most


def sync_node(cfg: RunConfig, leases, ctx: NodeContext) -> None:
    """SUB KeypointFrames -> Pipeline -> PUB Skeleton3D (+ tap, status). Runs until stopped."""
    stop = Stopper(ctx)
    try:
        _SyncNode(cfg, ctx, stop, leases).run()
    except Exception as e:  # noqa: BLE001 - the reason goes to the runner, then a non-zero exit
        fail(ctx, "sync", e, cfg.log_dir())
        raise SystemExit(1) from None


class _SyncNode:
    def __init__(self, cfg: RunConfig, ctx: NodeContext, stop: Stopper, leases):
        from rtkin.core.skeletons import get_skeleton
        from rtkin.reconstruct.pipeline import Pipeline
        from rtkin.reconstruct.validation import InputValidator
        from rtkin.runtime.config import angles_endpoints
        from rtkin.runtime.clock import clock_server_for_run
        from rtkin.runtime.transport import Publisher, Receiver, link_context

        self.cfg, self.ctx, self.stop, self.leases = cfg, ctx, stop, leases
        rig = load_rig(cfg)
        # capture -> output latency only means something in real time (played faster, capture
        # times are stream times)
        self.pipe = Pipeline(rig, cfg.rig.skeleton, cfg.effective_sync(), cfg.reconstruction,
                             clock_ns=time.monotonic_ns if cfg.source.realtime else None)
        self.pipe.reconstructor.defer_health = True  # the calibration check runs after publishing
        self.validator = InputValidator(rig.names, cfg.rig.skeleton, get_skeleton(cfg.rig.skeleton).n_keypoints,
                                        {c.name: c.size for c in rig.cameras})
        self.ik_endpoints = angles_endpoints(cfg)
        self.zctx = link_context(cfg)  # socket sizes and CURVE keys of the run
        self.rx = Receiver(self.zctx, cfg.transport.keypoints, [b"kp/", END_TOPIC], bind=True,
                           rcvhwm=cfg.transport.rcvhwm)
        clock = clock_server_for_run(self.zctx, cfg)  # cameras on other hosts; served while waiting for frames
        if clock is not None:
            self.rx.attach(clock)
        self.tx = Publisher(self.zctx, cfg.transport.outputs, bind=True, sndhwm=cfg.transport.sndhwm)
        self.control = 0  # end-of-stream messages received
        self.status_errors = 0
        self.ended: set[str] = set()
        self.finished = False  # every camera ended and the last slots went out
        self.seen_events = 0
        self.flow_waits = 0

    # ------------------------------------------------------------------ lifetime
    def run(self) -> None:
        announce(self.ctx, "sync", "sync: compiling / loading the reconstruction kernels...")
        t = time.monotonic()
        _warm_up(self.pipe)
        self.tx.settle(0.05)
        quiet_gc()
        announce(self.ctx, "sync", f"sync: ready ({time.monotonic() - t:.1f} s)")
        self.ctx.ready.set()
        next_status = time.monotonic() + STATUS_INTERVAL_S
        try:
            while not self.stop():
                if self.ctx.flow is not None and self._consumers_behind():
                    self.flow_waits += 1
                    time.sleep(0.001)
                else:
                    self._step(_poll_timeout_ms(self.pipe))
                if time.monotonic() >= next_status:
                    self._status()
                    next_status = time.monotonic() + STATUS_INTERVAL_S
            self._step(0)  # what arrived before the stop
            self._finish()
        finally:
            report(self.ctx, "sync", self._final())
            self.rx.close()
            self.tx.close()
            self.zctx.term()

    def _step(self, timeout_ms: int) -> None:
        batch = self._drain(timeout_ms)
        now = time.monotonic_ns()
        frames, taps, ends = [], [], []
        for base, frames_in in batch:
            if base.startswith(END_TOPIC):
                camera = self._control(frames_in)
                if camera in self.pipe.rig.names:  # an unknown camera's end changes nothing
                    ends.append(camera)
                continue
            msg = self._accept(frames_in)
            if msg is not None:
                frames.append(msg)
                taps.append(frames_in)
        outs = self.pipe.push_batch(frames, now) if frames else self.pipe.poll(now)
        arrivals = list(self.pipe.last_arrival_ns)
        for cam in ends:
            self.ended.add(cam)
            outs += self.pipe.end_camera(cam, now)
            arrivals += self.pipe.last_arrival_ns
        self._publish(outs, arrivals)
        for raw in taps:  # after the outputs; as received, no re-encoding
            self.tx.forward(raw, b"tap/", stamp_ns=now)
        for cam in ends:  # recorded too: replay must stop waiting for the camera where the run did
            self.tx.forward([b"", cam.encode()], TAP_END, stamp_ns=now)
        self.pipe.reconstructor.run_deferred()
        self._health_events()
        if not self.finished and self.pipe.sync.all_ended and set(self.pipe.rig.names) <= self.ended:
            self._finish()

    def _accept(self, frames):
        """A KeypointFrame consistent with the run, or None (malformed or refused: counted). The
        header is checked before the arrays are read, so a flood of inconsistent messages costs
        little; what passes is decoded and checked in full."""
        from rtkin.core.codec import DecodeError, decode, peek

        try:
            head = peek(frames, self.rx.limits)
        except DecodeError as e:
            self.rx.count_malformed(e)
            return None
        if self.validator.precheck(head.schema, head.fields, head.arrays) is not None:
            return None
        try:
            msg = decode(frames, self.rx.limits)
        except DecodeError as e:
            self.rx.count_malformed(e)
            return None
        return msg if self.validator.check(msg) is None else None

    def _control(self, frames) -> str | None:
        """An end-of-stream message: the camera it names, or None (counted)."""
        import msgpack

        self.control += 1
        try:
            payload = bytes(frames[1].buffer if hasattr(frames[1], "buffer") else frames[1])
            if len(payload) > 4096:
                raise ValueError(f"end-of-stream message of {len(payload)} bytes")
            msg = msgpack.unpackb(payload, raw=False)
        except (ValueError, TypeError, IndexError) as e:  # msgpack errors are ValueErrors
            self.rx.count_malformed(e)
            self.control -= 1
            return None
        return msg["camera"] if isinstance(msg, dict) and isinstance(msg.get("camera"), str) else None

    def _drain(self, timeout_ms: int) -> list:
        """``(topic base, frames)`` of every message waiting (the first within ``timeout_ms``),
        up to MAX_BATCH; messages with a bad topic frame are counted as malformed."""
        out = []
        got = self.rx.recv_raw(timeout_ms)
        while True:
            if got is not None:
                out.append((got[0], got[3]))
            if len(out) >= MAX_BATCH or not self.rx.socket.poll(0):
                break
            got = self.rx.recv_raw(0)
        return out

    def _publish(self, outs, arrivals) -> None:
        for sk, arrival in zip(outs, arrivals):
            self.tx.send(sk, stamp_ns=arrival or None)
        if outs and self.ctx.flow is not None and self.ctx.t0 is not None:
            self.ctx.flow.slot_emitted(outs[-1].time_ns - int(self.ctx.t0.value))

    def _finish(self) -> None:
        """End of stream (every camera ended) or stop: the last slots out, then the end message."""
        if self.finished:
            return
        outs = self.pipe.flush()
        self._publish(outs, [0] * len(outs))
        self.pipe.reconstructor.run_deferred()
        self.finished = True
        self.tx.send_status(end_topic("sync"), {"outputs": self.pipe.outputs, "sk3d_sent": self._sent(b"sk3d/")})
        if self.ctx.done is not None:
            self.ctx.done.set()

    # ------------------------------------------------------------------ flow (as fast as possible)
    def _sent(self, base: bytes) -> int:
        return self.tx._seq.get(base, 0)

    def _consumers_behind(self) -> bool:
        flow = self.ctx.flow
        slots = [w for w, v in enumerate(self.leases.snapshot()) if v >= -1] if self.leases is not None else []
        behind = flow.consumers_behind(self._sent(b"sk3d/"), self._sent(b"tap/"), slots,
                                       self.cfg.recording.enabled)
        if not behind:
            self._stall = None
            return False
        key = tuple(flow.progress(k) for k in behind)
        now = time.monotonic()
        if getattr(self, "_stall", None) is None or self._stall[0] != key:
            self._stall = (key, now)
        if now - self._stall[1] > flow.stall_s:  # a consumer made no progress: do not wait for it
            return False
        return True

    # ------------------------------------------------------------------ status
    def _health_events(self) -> None:
        health = self.pipe.reconstructor.health
        if health is not None and len(health.events) > self.seen_events:
            for cam, what in health.events[self.seen_events:]:
                print(f"rtkin: calibration check: {cam} reprojection error alarm {what} "
                      f"({health.status()['cameras'][cam]})", file=sys.stderr, flush=True)
            self.seen_events = len(health.events)
            self._status()

    def _status(self) -> None:
        status = {**self._counters(), "overloaded": self.pipe.overloaded(time.monotonic_ns()),
                  "ik_endpoints": self._live_ik_endpoints()}
        try:
            self.tx.send_status("sync", status)
        except (OverflowError, TypeError, ValueError) as e:  # a counter driven out of range must not stop the node
            self.status_errors += 1
            self.last_status_error = str(e)

    def _live_ik_endpoints(self) -> list[str]:
        """The JointAngles endpoints of the IK workers this run started and that are running."""
        if self.leases is None:
            return []
        return [self.ik_endpoints[w] for w, v in enumerate(self.leases.snapshot()) if v >= -1]

    def _counters(self) -> dict:
        return {**self.pipe.status(), "receiver": self.rx.status(),
                "validation": self.validator.counters.as_dict(), "control": self.control,
                "ended": sorted(self.ended), "flow_waits": self.flow_waits, "tap_sent": self._sent(b"tap/"),
                "status_errors": self.status_errors}

    def _final(self) -> dict:
        out = self._counters()
        out["latency_hist"] = self.pipe.latency.histogram()
        out["arrival_latency_hist"] = self.pipe.arrival_latency.histogram()
        out["timing_hist"] = {k: w.histogram() for k, w in self.pipe.timing.items()}
        return out


def _poll_timeout_ms(pipe) -> int:
    deadline = pipe.sync.next_deadline_ns()
    if deadline is None:
        return 20
    return int(min(20, max(0, (deadline - time.monotonic_ns()) / 1e6 + 0.5)))


def _warm_up(pipe) -> None:
    """Compile / load every kernel before the first real frame (no first-frame latency spike; a
    fresh install has no Numba cache yet): one made-up FrameSet through the reconstructor, which
    is then reset (tracks, filters, calibration check)."""
    import numpy as np

    from rtkin.core.messages import FrameSet, KeypointFrame

    rig, sk = pipe.rig, pipe.reconstructor.skeleton
    rng = np.random.default_rng(0)
    frames = []
    for i, cam in enumerate(rig.cameras):
        kp = np.zeros((2, sk.n_keypoints, 3), dtype=np.float32)
        kp[..., 0] = rng.uniform(0, cam.size[0], kp.shape[:2])
        kp[..., 1] = rng.uniform(0, cam.size[1], kp.shape[:2])
        kp[..., 2] = 0.9
        frames.append(KeypointFrame(cam.name, 0, 0, sk.name, kp))
    try:
        pipe.reconstructor(FrameSet(0, rig.names, tuple(frames)))
        pipe.reconstructor.run_deferred()
    finally:
        pipe.reconstructor.reset()
