"""Start, supervise and stop the processes of a run (``rtkin run``, ``rtkin demo``).

Start: the configuration is checked first (:func:`~rtkin.runtime.preflight.preflight`: files,
cameras, free ports, a session name that replaces nothing); then the sync node, the IK workers,
the recorder and one source per camera start in parallel, each saying what it does (compiling
kernels, loading models); the stream starts once all are ready. A node that fails to start ends
the run at once with its reason.

End: a finite source ends with an end-of-stream message; the sync node then flushes its last slots
and says so, the IK workers finish what they received, the recorder writes the rest and renames
the recording from ``.partial`` to its name. Ctrl-C, SIGTERM or the end of ``duration_s`` stop
the sources and take the same path. Every wait is bounded: the run is over within ~10 s of its end
(a node that does not stop in time is terminated), and a second Ctrl-C kills everything at once.
The nodes' reports are read continuously while they stop (a large report can never block a child
on a full pipe), and the reports are summaries, never sample lists.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import signal
import sys
import threading
import time
from dataclasses import dataclass, field

from rtkin.runtime.config import RunConfig
from rtkin.runtime.flow import Flow
from rtkin.runtime.ik_node import ik_node
from rtkin.runtime.leases import FREE, OFF, STARTING, Leases
from rtkin.runtime.node import NodeContext, load_rig
from rtkin.runtime.preflight import preflight
from rtkin.runtime.recorder_node import recorder_node
from rtkin.runtime.source_nodes import capture_models, capture_node, source_node
from rtkin.runtime.sync_node import sync_node

__all__ = ["Runner", "RunResult", "RunError"]

START_DELAY_S = 0.3  # the stream starts this long after every source is ready
STOP_BUDGET_S = 9.0  # the whole stop sequence, s (then whatever is left is killed)
REAP_WAIT_S = 0.5  # after SIGTERM to the stragglers (all at once), then after SIGKILL, s


class RunError(RuntimeError):
    """The run could not start (a node failed, with its reason)."""


@dataclass
class RunResult:
    """Final reports of every node (name -> dict) and how the run ended.

    Attributes:
        sent: frames each camera's source sent (camera -> count; counted in shared memory, so a
            killed source's frames are counted too).
    """

    reports: dict[str, dict] = field(default_factory=dict)
    interrupted: bool = False
    errors: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    stop_s: float = 0.0
    sent: dict[str, int] = field(default_factory=dict)
    killed: list[str] = field(default_factory=list)  # nodes that had to be terminated or killed


class _Proc:
    def __init__(self, mpctx, name, target, args, ctx: NodeContext):
        self.name, self.target, self.args, self.ctx = name, target, args, ctx
        self.mpctx = mpctx
        self.restarts = 0
        self.start()

    def start(self):
        self.ctx.ready.clear()
        self.ctx.stop.clear()
        self.ctx.done.clear()
        self.p = self.mpctx.Process(target=self.target, args=self.args + (self.ctx,), name=f"rtkin-{self.name}", daemon=False)
        self.p.start()
        self.started = time.monotonic()


class _Collector(threading.Thread):
    """Reads the nodes' results queue for as long as the run lives: final reports, progress lines
    and failure reasons (children never block on a full pipe)."""

    def __init__(self, results, log):
        super().__init__(name="rtkin-results", daemon=True)
        self.results, self.log = results, log
        self.reports: dict[str, dict] = {}
        self.errors: dict[str, str] = {}
        self.lock = threading.Lock()
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.poll(0.1)

    def poll(self, timeout: float) -> bool:
        try:
            name, payload = self.results.get(timeout=timeout)
        except (queue.Empty, EOFError, OSError, ValueError):
            return False
        with self.lock:
            if "log" in payload and len(payload) == 1:
                self.log(payload["log"])
                return True
            if "error" in payload and len(payload) <= 2:
                self.errors[name] = payload["error"]
                return True
            if name in self.reports and name.startswith("source:"):  # a restarted camera: add up
                prev = self.reports[name]
                payload = {**payload, "sent": prev.get("sent", 0) + payload.get("sent", 0)}
            self.reports[name] = payload
        return True

    def finish(self) -> None:
        """Stop the thread, then read what is left."""
        self._stop_event.set()
        self.join(2.0)
        while self.poll(0.05):
            pass


class Runner:
    """Runs one configuration; :meth:`run` blocks until the sources end, the duration passes, or
    Ctrl-C / SIGTERM.

    Args:
        cfg: the run configuration (checked by :func:`rtkin.runtime.preflight.preflight`; the
            settled configuration, with the session's final name, is :attr:`cfg`).
        log: where progress lines go.
        force: replace an earlier session of the same name instead of naming this one ``name-2``.

    Raises:
        ConfigError: the configuration cannot run on this machine (one line: key or file, and
            what to do).
    """

    def __init__(self, cfg: RunConfig, log=print, force: bool = False):
        self.cfg = preflight(cfg, force)
        self.log = log
        self.mp = mp.get_context("spawn")
        self.results = self.mp.Queue()
        self.procs: dict[str, _Proc] = {}
        self._interrupted = False
        self._hard_stop = False
        self.rig = load_rig(self.cfg)
        self._go = self.mp.Event()
        self._reported_dead: set[str] = set()
        self._t0 = self.mp.Value("q", 0)
        self._sent = self.mp.RawArray("q", len(self.rig))  # frames sent per camera (rig order)
        self.leases: Leases | None = Leases(self.mp, self.cfg.ik.max_workers) if self.cfg.ik.enabled else None
        self.flow: Flow | None = None if self.cfg.source.realtime else Flow(self.mp, self.cfg.ik.max_workers)
        self._ik_started = 0
        self._ik_full_logged = False
        self._ik_start_failures = 0
        self._ik_gave_up = False
        self._ik_was_starting: list[int] = []
        self._retired: list[_Proc] = []  # IK workers stopped or dead, whose slot was reused
        self._stopping = False
        self._collector = _Collector(self.results, log)
        self._collector.start()

    def recording_file(self):
        """The session's recording as it stands: the closed file, or the ``.partial`` one a killed
        recorder left (it replays up to its last whole record), or None."""
        from rtkin.runtime.recorder_node import partial_path

        final = self.cfg.recording_path()
        for p in (final, partial_path(final)):
            if p.exists():
                return p
        return None

    @property
    def t0_ns(self) -> int:
        """The stream start (monotonic ns) shared by the sources; 0 before :meth:`start`."""
        return int(self._t0.value)

    def _ctx(self) -> NodeContext:
        return NodeContext(self.mp.Event(), self.mp.Event(), self.results, self._go, self._t0, self.mp.Event(),
                           self.flow)

    # ------------------------------------------------------------------ start
    def start(self, timeout_s: float = 180.0) -> None:
        """Start every node (in parallel) and the stream once all are ready.

        Raises:
            ModelNotAvailableError: a capture run whose pose model weights are not available
                (checked before any process starts, so it fails in seconds with the way out).
            RunError: a node failed to start (its reason), or did not within ``timeout_s``.
        """
        cfg = self.cfg
        if cfg.source.kind == "capture":
            self.log(f"checking the {cfg.source.capture.model} models (rtmlib downloads RTMPose's once when missing)...")
            capture_models(cfg, allow_download=True)
        n_src = len(self.rig) if cfg.source.kind != "none" else 0
        n_ik = self._ik_floor() if cfg.ik.enabled else 0
        self.log(f"starting processes: sync, {n_ik} IK worker(s), "
                 f"{'recorder, ' if cfg.recording.enabled else ''}{n_src} camera source(s) "
                 "(a first run compiles kernels: up to a minute)...")
        if cfg.ik.enabled:
            from rtkin.kinematics.augment import resolve_augment

            on = resolve_augment(cfg.ik.augment, cfg.source.kind, cfg.rig.skeleton)
            why = "[ik] augment" if cfg.ik.augment is not None else f"auto, {cfg.source.kind} keypoints"
            self.log(f"marker augmentation {'on' if on else 'off'} ({why})")
        t = time.monotonic()
        self._spawn("sync", sync_node, (cfg, self.leases))
        for _ in range(n_ik):
            self._spawn_ik()
        if cfg.recording.enabled:
            self._spawn("recorder", recorder_node, (cfg, self.leases))
        if n_src:
            node = capture_node if cfg.source.kind == "capture" else source_node
            for c, cam in enumerate(self.rig.names):
                self._spawn(f"source:{cam}", node, (cfg, cam, self._sent))
        self._wait_ready(list(self.procs), timeout_s)
        self.log(f"all processes ready ({time.monotonic() - t:.1f} s); streaming")
        self._t0.value = time.monotonic_ns() + int(START_DELAY_S * 1e9)
        self._go.set()

    def _wait_ready(self, names: list[str], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        next_note = time.monotonic() + 15.0
        waiting = list(names)
        while waiting:
            for name in list(waiting):
                proc = self.procs[name]
                if proc.ctx.ready.is_set():
                    waiting.remove(name)
                elif proc.p.exitcode is not None:
                    self._abort_start(name, proc.p.exitcode)
            if self._interrupted:
                self._abort_start(None, None)
            if time.monotonic() > deadline:
                self._abort_start(waiting[0], None, f"did not start within {timeout_s:.0f} s")
            if time.monotonic() > next_note:
                self.log(f"still starting: {', '.join(waiting)}...")
                next_note = time.monotonic() + 15.0
            time.sleep(0.05)

    def _abort_start(self, name: str | None, code: int | None, why: str | None = None) -> None:
        """Stop what started and raise RunError with the failed node's own reason."""
        if name is not None and why is None:
            deadline = time.monotonic() + 2.0  # its reason is on the queue, or about to be
            while name not in self._collector.errors and time.monotonic() < deadline:
                time.sleep(0.02)
            why = self._collector.errors.get(name) or f"exited with code {code}"
        self._kill_all()
        self._collector.finish()
        if name is None:
            raise KeyboardInterrupt
        raise RunError(f"{name} failed to start: {why}")

    def _spawn(self, name, target, args) -> _Proc:
        proc = _Proc(self.mp, name, target, args, self._ctx())
        self.procs[name] = proc
        return proc

    def _spawn_ik(self) -> None:
        """Start an IK worker in the lowest OFF slot (its endpoint is ``angles_endpoints[slot]``)."""
        w = next(i for i, v in enumerate(self.leases.snapshot()) if v == OFF)
        self.leases.set(w, STARTING)
        if self.flow is not None:
            self.flow.ik_reset(w)
        self._ik_started += 1
        name = f"ik:{w}"
        old = self.procs.pop(name, None)
        if old is not None:
            self._retired.append(old)
        self._spawn(name, ik_node, (self.cfg, w, self._ik_started, self.leases))

    def _ik_floor(self) -> int:
        """IK workers kept running with nobody to serve: one for the first person plus the spares."""
        return min(self.cfg.ik.max_workers, 1 + self.cfg.ik.spare_workers)

    # ------------------------------------------------------------------ supervise
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
                reason = self._collector.errors.get(name)
                if code != 0 and state >= 0:
                    self.log(f"rtkin: {name} (person {state}) exited with code {code}"
                             f"{f' ({reason})' if reason else ''}; a free worker takes the person over")
                    result.errors.append(f"{name} exited with code {code} while serving person {state}")
                elif code != 0:
                    result.errors.append(f"{name} exited with code {code}" + (f": {reason}" if reason else ""))
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
            self._spawn_ik()
        if ready == 0 and OFF not in snap and not self._ik_full_logged:
            self.log(f"rtkin: all {len(snap)} IK workers serve someone; more people get no joint angles "
                     "(raise ik.max_workers)")
        self._ik_full_logged = ready == 0 and OFF not in snap
        running = len(snap) - snap.count(OFF)
        if running > self._ik_floor():
            w = self.leases.retire_one_free(spare)
            if w is not None:
                self.procs[f"ik:{w}"].ctx.stop.set()

    def request_stop(self) -> None:
        """End the run as Ctrl-C would (from ``on_tick`` or another thread)."""
        self._interrupted = True

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
            t_stop = time.monotonic()
            self.stop(result)
            result.stop_s = time.monotonic() - t_stop
            for s, h in old.items():
                signal.signal(s, h)
        result.interrupted = self._interrupted
        result.wall_s = time.monotonic() - t_start
        return result

    def _on_signal(self, signum, frame):
        if self._interrupted:  # a second Ctrl-C: everything, now
            self._hard_stop = True
            self.log("rtkin: second interrupt: stopping every process now")
            self._kill_all()
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
            reason = self._collector.errors.get(name)
            if name.startswith("source:"):
                if self.cfg.source.restart and proc.restarts < 100:
                    self.log(f"rtkin: {name} exited ({code}{f': {reason}' if reason else ''}); restarting")
                    self._collector.errors.pop(name, None)
                    proc.restarts += 1
                    proc.start()
                elif name not in self._reported_dead:
                    self._reported_dead.add(name)
                    self.log(f"rtkin: {name} exited with code {code}{f': {reason}' if reason else ''}; "
                             "the other cameras go on")
                    self._announce_end(name.split(":", 1)[1])
                continue
            if name.startswith("ik:"):
                continue  # _manage_ik
            if name == "recorder":
                if name not in self._reported_dead:
                    self._reported_dead.add(name)
                    result.errors.append(f"{name} exited with code {code}{f' ({reason})' if reason else ''}; the "
                                         "recording ends there (it stays readable up to its last whole record)")
                continue  # the live pipeline goes on without it
            result.errors.append(f"{name} exited with code {code}" + (f": {reason}" if reason else ""))
            return True
        return False

    def _announce_end(self, camera: str) -> None:
        """A camera process died for good: tell the sync node its stream ended (as the camera
        would have), so slots stop waiting for it (a run played as fast as possible would
        otherwise wait a minute for it)."""
        from rtkin.runtime.node import end_topic
        from rtkin.runtime.transport import Publisher, link_context

        ctx = link_context(self.cfg)
        pub = Publisher(ctx, self.cfg.transport.keypoints, bind=False)
        try:
            pub.settle(0.2)
            pub.send_status(end_topic(camera), {"camera": camera, "sent": -1, "by": "runner"})
            time.sleep(0.05)
        finally:
            pub.close()
            ctx.term()

    # ------------------------------------------------------------------ stop
    def stop(self, result: RunResult | None = None) -> None:
        """Sources, then sync, then IK workers, then recorder; each finishes its input first, every
        wait is bounded (``STOP_BUDGET_S`` in all), stragglers are terminated, then killed."""
        self._stopping = True
        deadline = time.monotonic() + STOP_BUDGET_S
        srcs = [p for n, p in self.procs.items() if n.startswith("source:")]
        sync = [p for n, p in self.procs.items() if n == "sync"]
        iks = [p for n, p in self.procs.items() if n.startswith("ik:")]
        rec = [p for n, p in self.procs.items() if n == "recorder"]
        self._stop_group(srcs, deadline - 6.5, wait_done=False)  # each sends its end of stream
        self._stop_group(sync, deadline - 4.5, wait_done=bool(srcs))  # flushes after every end
        self._stop_group(iks, deadline - 2.5, wait_done=bool(sync))  # finish the last Skeleton3D
        self._stop_group(rec, deadline, wait_done=False)  # writes the rest, closes, renames
        killed = self._reap(self._retired, time.monotonic() + 0.5)
        self._collector.finish()
        if result is not None:
            result.killed += killed
            self._collect(result)

    def _stop_group(self, procs: list[_Proc], deadline: float, wait_done: bool) -> None:
        if self._hard_stop:
            self._kill_all()
            return
        if wait_done:  # let them finish their input (end of stream), bounded
            while any(p.p.exitcode is None and not p.ctx.done.is_set() for p in procs):
                if time.monotonic() > deadline - 1.0 or self._hard_stop:
                    break
                time.sleep(0.02)
        for p in procs:
            p.ctx.stop.set()
        self._reap(procs, deadline)

    def _reap(self, procs: list[_Proc], deadline: float) -> list[str]:
        """Join ``procs`` until ``deadline``; terminate, then kill, what is left. Returns the names
        of the nodes that had to be terminated or killed."""
        for p in procs:
            while p.p.exitcode is None and time.monotonic() < deadline and not self._hard_stop:
                p.p.join(0.05)
        left = [p for p in procs if p.p.exitcode is None]
        killed = [p.name for p in left]
        for signal_them in (lambda p: p.p.terminate(), lambda p: p.p.kill()):  # all at once, then wait
            for p in left:
                if p.p.exitcode is None:
                    signal_them(p)
            end = time.monotonic() + REAP_WAIT_S
            for p in left:
                p.p.join(max(0.0, end - time.monotonic()))
        if killed:
            self.log(f"rtkin: {', '.join(killed)} did not stop in time and was terminated")
        return killed

    def _kill_all(self) -> None:
        for p in list(self.procs.values()) + self._retired:
            if p.p.exitcode is None:
                p.p.kill()

    def _collect(self, result: RunResult) -> None:
        with self._collector.lock:
            result.reports.update(self._collector.reports)
            errors = dict(self._collector.errors)
        for name, why in errors.items():
            line = f"{name}: {why}"
            if not any(line in e or (why in e) for e in result.errors):
                result.errors.append(line)
        result.sent = {cam: int(self._sent[c]) for c, cam in enumerate(self.rig.names)}


def main_run(cfg: RunConfig) -> int:  # pragma: no cover - exercised through the CLI tests
    runner = Runner(cfg)
    res = runner.run()
    for e in res.errors:
        print(f"rtkin: {e}", file=sys.stderr)
    return 1 if res.errors else 0
