"""An IK worker process: SUB Skeleton3D -> :class:`~rtkin.kinematics.live.LiveKinematics` ->
PUB JointAngles ``ja/<id>/``, one person per worker (see :mod:`rtkin.runtime.leases`).
"""

from __future__ import annotations

import sys
import time

import zmq

from rtkin.runtime.config import RunConfig
from rtkin.runtime.node import STATUS_INTERVAL_S, NodeContext, Stopper, quiet_gc, report

__all__ = ["ik_node"]

IDLE_POLL_S = 0.05  # a FREE IK worker looks for an unserved person this often



def ik_node(cfg: RunConfig, worker: int, incarnation: int, leases, ctx: NodeContext) -> None:
    """One person's IK: SUB Skeleton3D -> LiveKinematics -> PUB JointAngles ``ja/<id>/`` (see
    :mod:`rtkin.runtime.leases`).

    FREE, the worker drains the stream every ``IDLE_POLL_S`` and claims a person nobody serves;
    serving, it blocks on the stream and solves every frame of its person, until the person has
    been gone for ``ik.release_after_s`` of stream time (Skeleton3D times: a stream processed
    slower than real time, e.g. every video frame through RTMPose on a CPU, does not release
    anybody; IK and scaling state dropped, slot FREE again). With ``[ik] augment`` (resolved from
    the source kind, :func:`rtkin.kinematics.augment.resolve_augment`), the person's augmented
    markers go out too, as a Skeleton3D on ``aug/<id>/``. Each
    JointAngles message is stamped with the receive time of the last camera frame of its slot
    (the sync node's ``sk3d/`` stamp), so subscribers can measure the end-to-end latency.
    """
    import dataclasses

    from rtkin.core.messages import Skeleton3D
    from rtkin.core.stats import Window
    from rtkin.kinematics.live import LiveKinematics
    from rtkin.runtime.config import angles_endpoints
    from rtkin.runtime.leases import FREE, RETIRING
    from rtkin.runtime.transport import Publisher, Receiver

    stop = Stopper(ctx)
    zctx = zmq.Context()
    rx = Receiver(zctx, cfg.transport.outputs, [b"sk3d/"], bind=False, rcvhwm=cfg.transport.rcvhwm)
    tx = Publisher(zctx, angles_endpoints(cfg)[worker], bind=True, sndhwm=cfg.transport.sndhwm)
    timing, latency, e2e = Window(), Window(), Window(100_000)
    pool = None
    if cfg.ik.scaling:  # the background scaling process starts now, not mid-session
        from rtkin.kinematics.scaling import background_executor

        pool = background_executor(warm=True)
    from rtkin.kinematics.augment import resolve_augment

    live = dataclasses.replace(cfg.ik.live(), augment=resolve_augment(cfg.ik.augment, cfg.source.kind, cfg.rig.skeleton))
    stage = LiveKinematics(live, dataclasses.replace(cfg.ik.solver, skeleton=cfg.rig.skeleton),
                           cfg.path(cfg.run.output_dir), cfg.run.name, executor=pool)
    rx.settle(0.2)
    quiet_gc()
    leases.set(worker, FREE)
    ctx.ready.set()
    outputs = 0
    person: int | None = None
    last_seen_ns = stream_ns = 0  # stream time (Skeleton3D.time_ns): a slow stream never looks like a leave
    served: list[int] = []
    next_status = time.monotonic() + STATUS_INTERVAL_S

    def release(why: str) -> None:
        nonlocal person
        stage.forget(person)
        leases.release(worker, person)
        print(f"rtkin: ik worker {worker} released person {person} ({why})", file=sys.stderr, flush=True)
        person = None

    try:
        while not stop():
            if person is None:
                if leases.state(worker) == RETIRING:
                    break
                time.sleep(IDLE_POLL_S)
                newest = None
                while (got := rx.recv(0)) is not None:
                    if isinstance(got.message, Skeleton3D):
                        newest = got.message
                if newest is not None and newest.n_people:
                    person = leases.claim(worker, newest.person_ids)
                    if person is not None:
                        served.append(person)
                        last_seen_ns = stream_ns = newest.time_ns
                        print(f"rtkin: ik worker {worker} serves person {person}", file=sys.stderr, flush=True)
                continue
            got = rx.recv(50)
            if got is not None and isinstance(got.message, Skeleton3D):
                sk = got.message
                stream_ns = max(stream_ns, sk.time_ns)
                mine = [i for i, pid in enumerate(sk.person_ids) if int(pid) == person]
                if mine:
                    last_seen_ns = max(last_seen_ns, sk.time_ns)
                    sk = sk.select(mine) if sk.n_people > 1 else sk
                    t = time.perf_counter()
                    angles = stage(sk)
                    if angles:
                        timing.add(time.perf_counter() - t)
                    for ja in angles:
                        tx.send(ja, stamp_ns=got.stamp_ns)
                        now = time.monotonic_ns()
                        latency.add((now - ja.capture_ns) * 1e-9)
                        if got.stamp_ns:
                            e2e.add((now - got.stamp_ns) * 1e-9)
                        outputs += 1
                    if stage.augmented is not None:  # after the angles: adds no latency to them
                        tx.send(stage.augmented.message(), base=b"aug/%d/" % person, stamp_ns=got.stamp_ns)
            if stage.pending:
                stage.step()
            if person is not None and stream_ns - last_seen_ns > cfg.ik.release_after_s * 1e9:
                release(f"not seen for {cfg.ik.release_after_s:g} s of stream")
            if time.monotonic() >= next_status:
                tx.send_status(f"ik{worker}", {"person": person, "counters": dict(stage.counters),
                                               "timing_ms": timing.summary(), "latency_ms": latency.summary(),
                                               "e2e_ms": e2e.summary()})
                next_status = time.monotonic() + STATUS_INTERVAL_S
        time.sleep(0.05)
    finally:
        if person is not None:
            leases.release(worker, person)
        report(ctx, f"ik:{worker}#{incarnation}", {"worker": worker, "outputs": outputs, "served": served, "counters": dict(stage.counters),
                                      "scaled_models": stage.scaled_models, "timing_ms": timing.summary(),
                                      "latency_ms": latency.summary(), "e2e_ms": e2e.summary(),
                                      "e2e_s": e2e.values().tolist(), "receiver": rx.counters.as_dict()})
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        rx.close()
        tx.close()
        zctx.term()
