"""What every node process shares: the runner's context, the stop condition, the final report,
the run's rig, and the latency-loop garbage-collector setting.

The nodes are thin shells around the stages (receive, call, send, count), one module each:
:mod:`~rtkin.runtime.sync_node`, :mod:`~rtkin.runtime.ik_node`, :mod:`~rtkin.runtime.recorder_node`,
:mod:`~rtkin.runtime.source_nodes` (keypoint sources and capture). Each runs in its own process,
stops on SIGTERM/SIGINT or when its parent dies, and reports final counters on a multiprocessing
queue.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass


from rtkin.runtime.config import RunConfig

__all__ = ["NodeContext", "Stopper", "load_rig", "report", "quiet_gc", "STATUS_INTERVAL_S"]

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


class Stopper:
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
    from rtkin.sim import virtual
    from rtkin.core.calibration import load_calib

    rig = load_calib(cfg.path(cfg.rig.calibration)) if cfg.rig.calibration else virtual.demo_rig()
    return rig.subset(cfg.rig.cameras) if cfg.rig.cameras else rig


def quiet_gc() -> None:
    """Latency-critical loops: move everything allocated during start-up (models, compiled
    kernels) out of the collector's sight and collect young objects less often, so a full
    collection does not land in the middle of a frame."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 1000)


def report(ctx: NodeContext, name: str, payload: dict) -> None:
    try:
        ctx.results.put((name, payload), timeout=1.0)
    except Exception:  # noqa: BLE001 - a full/closed queue must not turn a clean exit into a crash
        pass


