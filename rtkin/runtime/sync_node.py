"""The sync process: SUB KeypointFrames -> :class:`~rtkin.reconstruct.pipeline.Pipeline` -> PUB
Skeleton3D; every received frame is re-published on ``tap/`` with its receive time so the
recorder logs exactly what the pipeline saw (a replay of the log reproduces the outputs).
"""

from __future__ import annotations

import sys
import time


from rtkin.runtime.config import RunConfig
from rtkin.runtime.node import STATUS_INTERVAL_S, NodeContext, Stopper, load_rig, quiet_gc, report

__all__ = ["sync_node"]



def sync_node(cfg: RunConfig, ctx: NodeContext) -> None:
    """SUB KeypointFrames -> Pipeline -> PUB Skeleton3D (+ tap, status). Runs until stopped."""
    from rtkin.core.messages import KeypointFrame
    from rtkin.reconstruct.pipeline import Pipeline
    from rtkin.runtime.clock import clock_server_for_run
    from rtkin.runtime.transport import Publisher, Receiver, link_context

    stop = Stopper(ctx)
    rig = load_rig(cfg)
    pipe = Pipeline(rig, cfg.rig.skeleton, cfg.sync, cfg.reconstruction)
    pipe.reconstructor.defer_health = True  # the calibration check runs after publishing
    zctx = link_context(cfg)  # socket sizes and CURVE keys of the run
    rx = Receiver(zctx, cfg.transport.keypoints, [b"kp/"], bind=True, rcvhwm=cfg.transport.rcvhwm)
    clock = clock_server_for_run(zctx, cfg)  # cameras on other hosts; served while waiting for frames
    if clock is not None:
        rx.attach(clock)
    tx = Publisher(zctx, cfg.transport.outputs, bind=True, sndhwm=cfg.transport.sndhwm)
    _warm_up(pipe)
    tx.settle(0.05)
    quiet_gc()
    ctx.ready.set()
    wrong_type = 0
    seen_events = 0
    next_status = time.monotonic() + STATUS_INTERVAL_S
    try:
        while not stop():
            timeout = _poll_timeout_ms(pipe)
            got = rx.recv(timeout)
            now = time.monotonic_ns()
            if got is None:
                outs = pipe.poll(now)
            elif isinstance(got.message, KeypointFrame):
                outs = pipe.push(got.message, now)
            else:
                wrong_type += 1
                outs = []
            for sk, arrival in zip(outs, pipe.last_arrival_ns):
                tx.send(sk, stamp_ns=arrival or None)
            if got is not None and isinstance(got.message, KeypointFrame):
                # after the outputs: re-encoding the frame for the recorder is off the latency path
                tx.send(got.message, base=b"tap/", stamp_ns=now)
            pipe.reconstructor.run_deferred()
            health = pipe.reconstructor.health
            if health is not None and len(health.events) > seen_events:
                for cam, what in health.events[seen_events:]:
                    print(f"rtkin: calibration check: {cam} reprojection error alarm {what} "
                          f"({health.status()['cameras'][cam]})", file=sys.stderr, flush=True)
                seen_events = len(health.events)
                tx.send_status("sync", {**pipe.status(), "receiver": rx.status(), "wrong_type": wrong_type})
            if time.monotonic() >= next_status:
                tx.send_status("sync", {**pipe.status(), "receiver": rx.status(), "wrong_type": wrong_type})
                next_status = time.monotonic() + STATUS_INTERVAL_S
        for sk in pipe.flush():
            tx.send(sk)
        pipe.reconstructor.run_deferred()
        time.sleep(0.05)  # let the last messages leave
    finally:
        final = {**pipe.status(), "receiver": rx.status(), "wrong_type": wrong_type}
        timings = {k: w.values().tolist() for k, w in pipe.timing.items()}
        report(ctx, "sync", {**final, "samples_s": timings, "latency_s": pipe.latency.values().tolist()})
        rx.close()
        tx.close()
        zctx.term()


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


