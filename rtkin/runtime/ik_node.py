"""An IK worker process: SUB Skeleton3D -> :class:`~rtkin.kinematics.live.LiveKinematics` ->
PUB JointAngles ``ja/<id>/``, one person per worker (see :mod:`rtkin.runtime.leases`).
"""

from __future__ import annotations

import sys
import time

from rtkin.runtime.config import RunConfig
from rtkin.runtime.node import (END_TOPIC, STATUS_INTERVAL_S, NodeContext, Stopper, announce, end_topic, fail,
                                quiet_gc, report)

__all__ = ["ik_node"]

IDLE_POLL_S = 0.05  # a FREE IK worker looks for an unserved person this often


def ik_node(cfg: RunConfig, worker: int, incarnation: int, leases, ctx: NodeContext) -> None:
    """One person's IK: SUB Skeleton3D -> LiveKinematics -> PUB JointAngles ``ja/<id>/``.

    FREE, the worker drains the stream every ``IDLE_POLL_S`` and claims a person nobody serves;
    serving, it solves its person's frames until the person has been gone for
    ``ik.release_after_s`` of stream time (Skeleton3D times: a stream processed slower than real
    time does not release anybody; IK and scaling state dropped, slot FREE again). In real time a
    worker that falls behind solves the newest frame and sheds the older ones (counted); played
    as fast as possible it solves every frame (the sync waits for it). Each JointAngles message is
    stamped with the receive time of the last camera frame of its slot (the sync node's ``sk3d/``
    stamp), so subscribers can measure the end-to-end latency. With ``[ik] augment`` (resolved from
    the source kind, :func:`rtkin.kinematics.augment.resolve_augment`), the person's augmented
    markers go out too, as a Skeleton3D on ``aug/<id>/``. After the sync node's end of stream
    the worker has answered everything and says so (``status/end/ik<w>/``).
    """
    stop = Stopper(ctx)
    name = f"ik:{worker}"
    code = 0
    try:
        _IKNode(cfg, worker, incarnation, leases, ctx, stop).run()
    except Exception as e:  # noqa: BLE001 - the reason goes to the runner, then a non-zero exit
        fail(ctx, name, e, cfg.log_dir())
        code = 1
    _exit_now(ctx, code)


def _exit_now(ctx: NodeContext, code: int) -> None:
    """Leave the process once its report has reached the runner, without the interpreter's exit
    hooks: concurrent.futures joins the scaling pool's manager thread at exit, and that join can
    hang for good once the pool's process was killed (seen: 1 stop in 4 waited for the runner's
    deadline and was terminated)."""
    import os
    import threading

    try:
        ctx.results.close()
        flush = threading.Thread(target=ctx.results.join_thread, daemon=True)
        flush.start()
        flush.join(2.0)
    except Exception:  # noqa: BLE001 - exiting anyway
        pass
    try:  # unlink the semaphores this process made (the scaling pool's queues): os._exit skips the
        # finalizers that would, and the resource tracker then warns of leaked semaphores at the end
        from multiprocessing import util

        util._run_finalizers(0)
    except Exception:  # noqa: BLE001 - exiting anyway
        pass
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


class _IKNode:
    def __init__(self, cfg, worker, incarnation, leases, ctx, stop):
        import dataclasses

        from rtkin.core.stats import Window
        from rtkin.kinematics.live import LiveKinematics
        from rtkin.runtime.config import angles_endpoints
        from rtkin.runtime.transport import Publisher, Receiver, link_context

        self.cfg, self.worker, self.incarnation, self.leases, self.ctx, self.stop = (
            cfg, worker, incarnation, leases, ctx, stop)
        self.zctx = link_context(cfg)  # socket sizes and CURVE keys of the run
        self.rx = Receiver(self.zctx, cfg.transport.outputs, [b"sk3d/", END_TOPIC + b"sync/"], bind=False,
                           rcvhwm=cfg.transport.rcvhwm)
        self.tx = Publisher(self.zctx, angles_endpoints(cfg)[worker], bind=True, sndhwm=cfg.transport.sndhwm)
        self.timing, self.latency, self.e2e = Window(), Window(), Window()
        self.pool = None
        announce(ctx, f"ik:{worker}", f"ik worker {worker}: loading the OpenSim model...")
        if cfg.ik.scaling:  # the background scaling process starts now, not mid-session
            from rtkin.kinematics.scaling import background_executor

            self.pool = background_executor(warm=True)
        from rtkin.kinematics.augment import resolve_augment

        live = dataclasses.replace(cfg.ik.live(), augment=resolve_augment(cfg.ik.augment, cfg.source.kind,
                                                                          cfg.rig.skeleton))
        self.stage = LiveKinematics(live, dataclasses.replace(cfg.ik.solver, skeleton=cfg.rig.skeleton),
                                    cfg.output_dir(), cfg.run.name, executor=self.pool)
        self.realtime = cfg.source.realtime
        self.outputs = self.shed = 0
        self.person: int | None = None
        self.last_seen_ns = self.stream_ns = 0  # stream time: a slow stream never looks like a leave
        self.served: list[int] = []
        self.ended = False

    def run(self) -> None:
        from rtkin.runtime.leases import FREE

        self.rx.settle(0.2)
        quiet_gc()
        self.leases.set(self.worker, FREE)
        self.ctx.ready.set()
        next_status = time.monotonic() + STATUS_INTERVAL_S
        try:
            while not self.stop():
                if not self._step():
                    break
                if time.monotonic() >= next_status:
                    self._status()
                    next_status = time.monotonic() + STATUS_INTERVAL_S
            self._drain_rest()
        finally:
            if self.person is not None:
                self.leases.release(self.worker, self.person)
            if self.pool is not None:  # a model write still running is not waited for: finish() writes
                # the latest estimate itself (the processes are taken first: shutdown forgets them)
                procs = list((getattr(self.pool, "_processes", None) or {}).values())
                self.pool.shutdown(wait=False, cancel_futures=True)
                for proc in procs:
                    proc.kill()
                    proc.join(1.0)
            try:
                self.stage.finish()
            except Exception as e:  # noqa: BLE001 - the angles are out; the report must still go
                print(f"rtkin: ik worker {self.worker}: writing the scaled models failed: {type(e).__name__}: {e}",
                      file=sys.stderr, flush=True)
            report(self.ctx, f"ik:{self.worker}#{self.incarnation}", self._final())
            self.rx.close()
            self.tx.close()
            self.zctx.term()

    # ------------------------------------------------------------------ loop
    def _step(self) -> bool:
        """One loop turn; False when the worker must exit (retired)."""
        from rtkin.runtime.leases import RETIRING

        if self.person is None and self.leases.state(self.worker) == RETIRING:
            return False
        timeout = 50 if self.person is not None or not self.realtime else int(IDLE_POLL_S * 1000)
        batch = self._batch(timeout)
        if self.person is None and self.realtime and batch:
            batch = batch[-1:]  # a FREE worker in real time only looks at the newest frame
        self._handle(batch)
        if self.stage.pending:
            self.stage.step()
        if batch:
            self.stage.prepare()  # the augmenter's share of the next frame that needs no new data
        if self.person is not None and self.stream_ns - self.last_seen_ns > self.cfg.ik.release_after_s * 1e9:
            self._release(f"not seen for {self.cfg.ik.release_after_s:g} s of stream")
        return True

    def _batch(self, timeout_ms: int) -> list:
        out = []
        got = self.rx.recv(timeout_ms)
        while got is not None:
            out.append(got)
            got = self.rx.recv(0) if len(out) < 5000 else None
        return out

    def _handle(self, batch: list) -> None:
        from rtkin.core.messages import Skeleton3D

        mine_idx = []
        for i, got in enumerate(batch):
            if got.base.startswith(END_TOPIC):
                self.ended = True
                continue
            if not isinstance(got.message, Skeleton3D):
                continue
            sk = got.message
            self.stream_ns = max(self.stream_ns, sk.time_ns)
            if self.person is None and sk.n_people:
                self._claim(sk)
            if self.person is not None and any(int(p) == self.person for p in sk.person_ids):
                mine_idx.append(i)
        if self.realtime and len(mine_idx) > 1:  # behind: the newest frame only, the rest shed
            self.shed += len(mine_idx) - 1
            mine_idx = mine_idx[-1:]
        for i in mine_idx:
            self._solve(batch[i])
        if batch and self.ctx.flow is not None:
            seqs = [g.seq for g in batch if g.base == b"sk3d/"]
            if seqs:
                self.ctx.flow.ik_took(self.worker, seqs[-1])
        if self.ended and self.ctx.done is not None and not self.ctx.done.is_set():
            self.tx.send_status(end_topic(f"ik{self.worker}"), {"outputs": self.outputs})
            self.ctx.done.set()

    def _claim(self, sk) -> None:
        person = self.leases.claim(self.worker, sk.person_ids)
        if person is not None:
            self.person = person
            self.served.append(person)
            self.last_seen_ns = self.stream_ns = sk.time_ns
            print(f"rtkin: ik worker {self.worker} serves person {person}", file=sys.stderr, flush=True)

    def _solve(self, got) -> None:
        sk = got.message
        mine = [i for i, pid in enumerate(sk.person_ids) if int(pid) == self.person]
        self.last_seen_ns = max(self.last_seen_ns, sk.time_ns)
        sk = sk.select(mine) if sk.n_people > 1 else sk
        t = time.perf_counter()
        angles = self.stage(sk)
        if angles:
            self.timing.add(time.perf_counter() - t)
        for ja in angles:
            self.tx.send(ja, stamp_ns=got.stamp_ns)
            now = time.monotonic_ns()
            if self.realtime:  # (played faster than real time, capture times are stream times)
                self.latency.add((now - ja.capture_ns) * 1e-9)
            if got.stamp_ns:
                self.e2e.add((now - got.stamp_ns) * 1e-9)
            self.outputs += 1
        if self.stage.augmented is not None:  # after the angles: adds no latency to them
            self.tx.send(self.stage.augmented.message(), base=b"aug/%d/" % self.person, stamp_ns=got.stamp_ns)

    def _release(self, why: str) -> None:
        self.stage.forget(self.person)
        self.leases.release(self.worker, self.person)
        print(f"rtkin: ik worker {self.worker} released person {self.person} ({why})", file=sys.stderr, flush=True)
        self.person = None

    def _drain_rest(self) -> None:
        """Stopping: solve what already arrived (a bounded amount), let the last messages leave."""
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            batch = self._batch(20)
            if not batch:
                break
            self._handle(batch)
        time.sleep(0.05)

    # ------------------------------------------------------------------ reports
    def _status(self) -> None:
        self.tx.send_status(f"ik{self.worker}", {"person": self.person, "counters": dict(self.stage.counters),
                                                 "shed": self.shed, "timing_ms": self.timing.summary(),
                                                 "latency_ms": self.latency.summary(), "e2e_ms": self.e2e.summary()})

    def _final(self) -> dict:
        return {"worker": self.worker, "outputs": self.outputs, "shed": self.shed, "served": self.served,
                "counters": dict(self.stage.counters), "scaled_models": self.stage.scaled_models,
                "timing_ms": self.timing.summary(), "latency_ms": self.latency.summary(),
                "e2e_ms": self.e2e.summary(), "e2e_hist": self.e2e.histogram(),
                "receiver": self.rx.counters.as_dict()}
