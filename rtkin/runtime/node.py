"""What every node process shares: the runner's context, the stop condition, the final report,
failure reasons, the run's rig, and the latency-loop garbage-collector setting.

The nodes are thin shells around the stages (receive, call, send, count), one module each:
:mod:`~rtkin.runtime.sync_node`, :mod:`~rtkin.runtime.ik_node`, :mod:`~rtkin.runtime.recorder_node`,
:mod:`~rtkin.runtime.source_nodes` (keypoint sources and capture). Each runs in its own process,
stops when the runner sets its ``stop`` event, on SIGTERM, or when its parent dies (Ctrl-C is the
runner's: it stops the nodes in order), and reports small final counters on a multiprocessing
queue that the runner reads continuously. A node that fails sends its reason, one line, first.
"""

from __future__ import annotations

import os
import signal
import sys
import traceback
from dataclasses import dataclass

from rtkin.runtime.config import RunConfig

__all__ = ["NodeContext", "Stopper", "load_rig", "report", "announce", "fail", "quiet_gc", "STATUS_INTERVAL_S",
           "END_TOPIC", "TAP_END", "end_topic"]

STATUS_INTERVAL_S = 1.0

#: End-of-stream messages are status messages on ``status/end/<node>/`` (msgpack maps): a source
#: after its last frame (``{"camera", "sent"}``), the sync node after its last Skeleton3D, an IK
#: worker after the last JointAngles it owed.
END_TOPIC = b"status/end/"
#: The sync node re-publishes each camera end it took on ``tapend/`` (one frame: the camera name),
#: beside its ``tap/`` of inputs, for the recorder (not under ``tap/``: tap subscribers decode frames).
TAP_END = b"tapend/"


def end_topic(node: str) -> str:
    """The ``Publisher.send_status`` node name of ``node``'s end-of-stream message."""
    return f"end/{node}"


@dataclass
class NodeContext:
    """What a node process gets from the runner: events, a results queue, the stream start.

    Sources prepare their frames, set ``ready``, wait for ``go`` and then read ``t0`` (a shared
    int64: the run's stream start, monotonic ns), so slow process start-up never eats frames.
    A node sets ``done`` when it has finished everything its input will ever hold (end of stream).
    ``flow`` (:class:`rtkin.runtime.flow.Flow`) is the backpressure of runs played as fast as
    possible, None in real time.
    """

    stop: object  # multiprocessing.Event
    ready: object  # multiprocessing.Event
    results: object  # multiprocessing.Queue
    go: object = None  # multiprocessing.Event, shared by the sources
    t0: object = None  # multiprocessing.Value("q"), shared by the sources
    done: object = None  # multiprocessing.Event
    flow: object = None  # rtkin.runtime.flow.Flow or None


class Stopper:
    """SIGTERM / the runner's stop event / parent death -> stop (checked by the node loops).

    SIGINT is ignored: Ctrl-C in a terminal reaches every process of the group, and the runner
    stops the nodes in order (sources, sync, IK, recorder) so that nothing is lost."""

    def __init__(self, ctx: NodeContext):
        self.ctx = ctx
        self.parent = os.getppid()
        self.flag = False
        signal.signal(signal.SIGTERM, self._handle)
        signal.signal(signal.SIGINT, signal.SIG_IGN)

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
    """Send a node's final report (small: counters and summaries, never sample lists)."""
    try:
        ctx.results.put((name, payload), timeout=1.0)
    except Exception:  # noqa: BLE001 - a full/closed queue must not turn a clean exit into a crash
        pass


def announce(ctx: NodeContext, name: str, text: str) -> None:
    """A progress line for the runner to print (start-up steps: loading, compiling, ...)."""
    report(ctx, name, {"log": text})


def fail(ctx: NodeContext, name: str, error: BaseException, log_dir=None) -> None:
    """Report why a node failed: one line for the user (``error``), the traceback appended to
    ``<log_dir>/rtkin_errors.log`` when given (else printed on stderr)."""
    reason = f"{type(error).__name__}: {error}".strip().splitlines()[0] if str(error) else type(error).__name__
    tb = traceback.format_exc()
    where = None
    if log_dir is not None:
        try:
            os.makedirs(log_dir, exist_ok=True)
            where = os.path.join(log_dir, "rtkin_errors.log")
            with open(where, "a", encoding="utf-8") as f:
                f.write(f"--- {name} (pid {os.getpid()})\n{tb}\n")
        except OSError:
            where = None
    if where is None:
        print(tb, file=sys.stderr, flush=True)
    report(ctx, name, {"error": reason, **({"traceback_file": where} if where else {})})
