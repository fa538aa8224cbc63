"""Start, supervise and stop the processes of a run (``rtkin run``, ``rtkin demo``).

Order: sync node (binds the endpoints), recorder, then one source process per camera. Ctrl-C or
SIGTERM stop everything cleanly: sources first, then the sync node (it flushes its last slots),
then the recorder (it closes the file). Children also exit on their own if this process dies.
A dead source is restarted when ``source.restart`` is set; it resumes at the current frame.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import signal
import sys
import time
from dataclasses import dataclass, field

from rtkin.runtime.config import RunConfig
from rtkin.runtime.leases import FREE, OFF, STARTING, Leases
from rtkin.runtime.ik_node import ik_node
from rtkin.runtime.node import NodeContext, load_rig
from rtkin.runtime.recorder_node import recorder_node
from rtkin.runtime.source_nodes import capture_models, capture_node, source_node
from rtkin.runtime.sync_node import sync_node

__all__ = ["Runner", "RunResult"]

START_DELAY_S = 0.3  # the stream starts this long after every source is ready


@dataclass
class RunResult:
    """Final reports of every node (name -> dict) and how the run ended."""

    reports: dict[str, dict] = field(default_factory=dict)
    interrupted: bool = False
    errors: list[str] = field(default_factory=list)
    wall_s: float = 0.0


class _Proc:
    def __init__(self, mpctx, name, target, args, ctx: NodeContext):
        self.name, self.target, self.args, self.ctx = name, target, args, ctx
        self.mpctx = mpctx
        self.restarts = 0
        self.start()

    def start(self):
        self.ctx.ready.clear()
        self.ctx.stop.clear()
        self.p = self.mpctx.Process(target=self.target, args=self.args + (self.ctx,), name=f"rtkin-{self.name}", daemon=False)
        self.p.start()


class Runner:
    """Runs one configuration; :meth:`run` blocks until the sources end, the duration passes, or
    Ctrl-C / SIGTERM."""

    def __init__(self, cfg: RunConfig, log=print):
        self.cfg = cfg
        self.log = log
        self.mp = mp.get_context("spawn")
        self.results = self.mp.Queue()
        self.procs: dict[str, _Proc] = {}
        self._interrupted = False
        self.rig = load_rig(cfg)
        self._go = self.mp.Event()
        self._reported_dead: set[str] = set()
        self._t0 = self.mp.Value("q", 0)
        self.leases: Leases | None = None  # IK worker slots (rtkin.runtime.leases)
        self._ik_started = 0
        self._ik_full_logged = False
        self._ik_start_failures = 0
        self._ik_gave_up = False
        self._ik_was_starting: list[int] = []
        self._retired: list[_Proc] = []  # IK workers stopped or dead, whose slot was reused
        self._stopping = False

    @property
    def t0_ns(self) -> int:
        """The stream start (monotonic ns) shared by the sources; 0 before :meth:`start`."""
        return int(self._t0.value)

    def _ctx(self) -> NodeContext:
        return NodeContext(self.mp.Event(), self.mp.Event(), self.results, self._go, self._t0)

    def start(self, timeout_s: float = 120.0) -> None:
        """Start the sync node, the recorder and the sources; start the stream once all are ready.

        Raises:
            ModelNotAvailableError: a capture run whose RTMPose weights are not available (checked
                before any process starts, so it fails in seconds with the way out).
        """
        if self.cfg.source.kind == "capture":
            self.log(f"checking the {self.cfg.source.capture.model} models (rtmlib downloads RTMPose's once when missing)...")
            capture_models(self.cfg, allow_download=True)
        self._spawn("sync", sync_node, (self.cfg,))
        if self.cfg.ik.enabled:
            self.leases = Leases(self.mp, self.cfg.ik.max_workers)
            for _ in range(self._ik_floor()):  # loaded (in parallel) before the stream starts
                self._spawn_ik(wait=False)
            deadline = time.monotonic() + timeout_s
            for name in [n for n in self.procs if n.startswith("ik:")]:
                p = self.procs[name]
                while not p.ctx.ready.wait(0.1):
                    if p.p.exitcode is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"{name} failed to start (exit code {p.p.exitcode})")
        if self.cfg.recording.enabled:
            self._spawn("recorder", recorder_node, (self.cfg,))
        if self.cfg.source.kind != "none":
            node = capture_node if self.cfg.source.kind == "capture" else source_node
            srcs = [self._spawn(f"source:{cam}", node, (self.cfg, cam), wait=False) for cam in self.rig.names]
            deadline = time.monotonic() + timeout_s
            for p in srcs:
                while not p.ctx.ready.wait(0.1):
                    if p.p.exitcode is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"{p.name} failed to start (exit code {p.p.exitcode})")
        self._t0.value = time.monotonic_ns() + int(START_DELAY_S * 1e9)
        self._go.set()

    def _spawn_ik(self, wait: bool = True) -> None:
        """Start an IK worker in the lowest OFF slot (its endpoint is ``angles_endpoints[slot]``)."""
        w = next(i for i, v in enumerate(self.leases.snapshot()) if v == OFF)
        self.leases.set(w, STARTING)
        self._ik_started += 1
        name = f"ik:{w}"
        old = self.procs.pop(name, None)
        if old is not None:
            self._retired.append(old)
        self._spawn(name, ik_node, (self.cfg, w, self._ik_started, self.leases), wait=wait)

    def _manage_ik(self, result: RunResult) -> None:
        """One IK worker per person: mark dead workers OFF, keep ``spare_workers`` FREE ones
        (at least one; starting more as people arrive, up to ``max_workers``), stop free ones
        beyond that (never going below :meth:`_ik_floor` processes)."""
        if self.leases is None or self._stopping:
            return
        for name, proc in list(self.procs.items()):
            if not name.startswith("ik:"):
                continue
            w = int(name[3:])
            code = proc.p.exitcode
            state = self.leases.state(w)
            if code is not None and state != OFF:
                if code != 0 and state == STARTING:
                    self._ik_start_failures += 1
                if code != 0 and state >= 0:
                    self.log(f"rtkin: {name} (person {state}) exited with code {code}; "
                             "a free worker takes the person over")
                    result.errors.append(f"{name} exited with code {code} while serving person {state}")
                elif code != 0:
                    result.errors.append(f"{name} exited with code {code}")
                self.leases.set(w, OFF)
        snap = self.leases.snapshot()
        ready = snap.count(FREE) + snap.count(STARTING)
        spare = self.cfg.ik.spare_workers
        if any(snap[w] == FREE or snap[w] >= 0 for w in self._ik_was_starting):
            self._ik_start_failures = 0  # a newly started worker came up
        self._ik_was_starting = [w for w, v in enumerate(snap) if v == STARTING]
        if self._ik_start_failures >= 3:
            if not self._ik_gave_up:
                self._ik_gave_up = True
                self.log("rtkin: 3 IK workers in a row died while starting; no new IK workers are started")
                result.errors.append("IK workers fail to start (see their errors above)")
        elif ready < max(1, spare) and OFF in snap:
            self._spawn_ik(wait=False)
        if ready == 0 and OFF not in snap and not self._ik_full_logged:
            self.log(f"rtkin: all {len(snap)} IK workers serve someone; more people get no joint angles "
                     "(raise ik.max_workers)")
        self._ik_full_logged = ready == 0 and OFF not in snap
        running = len(snap) - snap.count(OFF)
        if running > self._ik_floor():
            w = self.leases.retire_one_free(spare)
            if w is not None:
                self.procs[f"ik:{w}"].ctx.stop.set()

    def _ik_floor(self) -> int:
        """IK workers kept running with nobody to serve: one for the first person plus the spares."""
        return min(self.cfg.ik.max_workers, 1 + self.cfg.ik.spare_workers)

    def _spawn(self, name, target, args, wait=True, timeout_s=60.0):
        proc = _Proc(self.mp, name, target, args, self._ctx())
        self.procs[name] = proc
        if wait and not proc.ctx.ready.wait(timeout_s):
            raise RuntimeError(f"{name} did not start within {timeout_s:.0f} s (exit code {proc.p.exitcode})")
        return proc

    def kill_source(self, camera: str) -> None:
        """Kill one camera's process (SIGKILL), as a crash would."""
        self.procs[f"source:{camera}"].p.kill()

    def restart_source(self, camera: str) -> None:
        proc = self.procs[f"source:{camera}"]
        proc.p.join(1.0)
        proc.restarts += 1
        proc.start()

    def run(self, duration_s: float | None = None, on_tick=None) -> RunResult:
        """Start (if needed), wait for the end, stop everything, collect the reports."""
        t_start = time.monotonic()
        old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        for s in old:
            signal.signal(s, self._on_signal)
        result = RunResult()
        try:
            if not self.procs:
                self.start()
            duration = self.cfg.run.duration_s if duration_s is None else duration_s
            while not self._interrupted:
                time.sleep(0.05)
                if on_tick is not None:
                    on_tick(self)
                if self._check_children(result):
                    break
                self._manage_ik(result)
                if duration and time.monotonic_ns() - self.t0_ns >= duration * 1e9:
                    break
                if self._sources_done():
                    break
        finally:
            self.stop(result)
            for s, h in old.items():
                signal.signal(s, h)
        result.interrupted = self._interrupted
        result.wall_s = time.monotonic() - t_start
        return result

    def _on_signal(self, signum, frame):
        self._interrupted = True

    def _sources_done(self) -> bool:
        srcs = [p for n, p in self.procs.items() if n.startswith("source:")]
        return bool(srcs) and all(p.p.exitcode == 0 for p in srcs)

    def _check_children(self, result: RunResult) -> bool:
        """True when the run must end (a core node died)."""
        for name, proc in self.procs.items():
            code = proc.p.exitcode
            if code is None or code == 0:
                continue
            if name.startswith("source:"):
                if self.cfg.source.restart and proc.restarts < 100:
                    self.log(f"rtkin: {name} exited ({code}); restarting")
                    proc.restarts += 1
                    proc.start()
                continue
            if name.startswith("ik:"):
                continue  # _manage_ik
            if name == "recorder":
                if name not in self._reported_dead:
                    self._reported_dead.add(name)
                    result.errors.append(f"{name} exited with code {code}; the recording ends there "
                                         "(it stays readable up to its last whole record)")
                continue  # the live pipeline goes on without it
            result.errors.append(f"{name} exited with code {code}")
            return True
        return False

    def stop(self, result: RunResult | None = None) -> None:
        """Stop sources, then sync, then recorder; escalate to SIGTERM/SIGKILL if needed."""
        self._stopping = True
        iks = [n for n in self.procs if n.startswith("ik:")]
        order = ([n for n in self.procs if n.startswith("source:")] + [n for n in ("sync",) if n in self.procs]
                 + iks + [n for n in ("recorder",) if n in self.procs])
        for name in order:
            proc = self.procs[name]
            if name.startswith("ik:"):
                time.sleep(0.1)  # the last Skeleton3D the sync flushed reach the IK workers
            proc.ctx.stop.set()
            if not name.startswith("source:"):
                proc.p.join(5.0)
        for name in order:
            proc = self.procs[name]
            proc.p.join(3.0)
            if proc.p.is_alive():
                proc.p.terminate()
                proc.p.join(2.0)
            if proc.p.is_alive():
                proc.p.kill()
                proc.p.join(1.0)
        for proc in self._retired:
            proc.p.join(1.0)
        if result is not None:
            self._collect(result)

    def _collect(self, result: RunResult) -> None:
        while True:
            try:
                name, payload = self.results.get(timeout=0.2)
            except queue.Empty:
                break
            if name in result.reports and name.startswith("source:"):
                prev = result.reports[name]
                payload = {**payload, "sent": prev.get("sent", 0) + payload.get("sent", 0)}
            result.reports[name] = payload
            if "error" in payload:
                result.errors.append(f"{name}: {payload['error'].strip().splitlines()[-1]}")


def main_run(cfg: RunConfig) -> int:  # pragma: no cover - exercised through the CLI tests
    runner = Runner(cfg)
    res = runner.run()
    for e in res.errors:
        print(f"rtkin: {e}", file=sys.stderr)
    return 1 if res.errors else 0
