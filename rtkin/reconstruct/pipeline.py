"""KeypointFrames -> Skeleton3D: the synchroniser plus the reconstructor, with per-stage timing.

Plain object, no sockets: the live sync node, ``rtkin replay`` and the benchmarks all drive it
with ``push_batch(frames, recv_ns)`` (or ``push``), ``poll(now_ns)``, ``end_camera`` and ``flush()``.

Overload: the live node reads every frame waiting on its socket, then pushes them as one batch
with one receive time. A FrameSet emitted while its slot lags the newest frame received by more
than ``sync.shed_lag_slots`` is not reconstructed but shed (counted, per camera): when the machine
cannot keep up, the oldest work goes and the output stays within about one wait window plus one
slot of the newest frames. The decision depends only on the frames and their receive times, so a
replay that groups the recorded frames by receive time sheds the same FrameSets.
"""

from __future__ import annotations

import time
from typing import Callable

from rtkin.core.calibration import Rig
from rtkin.core.messages import KeypointFrame, Skeleton3D
from rtkin.reconstruct.reconstructor import ReconstructionSettings, Reconstructor
from rtkin.core.stats import Window
from rtkin.reconstruct.sync import SyncSettings, Synchronizer

__all__ = ["Pipeline"]


class Pipeline:
    """Synchronizer + Reconstructor.

    Args:
        rig: cameras in pipeline order.
        skeleton: keypoint set of the incoming frames.
        sync: synchroniser settings. reconstruction: everything after it.
        clock_ns: clock for the capture-to-output latency (``time.monotonic_ns`` live; the sources
            stamp capture times with the same clock). ``None`` disables latency measurement.
    """

    def __init__(self, rig: Rig, skeleton: str = "HALPE_26", sync: SyncSettings = SyncSettings(),
                 reconstruction: ReconstructionSettings = ReconstructionSettings(),
                 clock_ns: Callable[[], int] | None = time.monotonic_ns):
        self.rig = rig
        self.sync = Synchronizer(rig.names, sync, skeleton=skeleton)
        self.reconstructor = Reconstructor(rig, skeleton, reconstruction)
        self.clock_ns = clock_ns
        self.timing = {"sync": Window(), "reconstruct": Window()}
        self.latency = Window()  # capture (newest input) -> Skeleton3D out, s
        self.arrival_latency = Window()  # last input frame received -> Skeleton3D out, s
        #: receive time (ns) of the last input frame of each Skeleton3D the last call returned
        #: (same order); the sync node stamps its ``sk3d/`` messages with it.
        self.last_arrival_ns: list[int] = []
        self.outputs = 0
        self.shed_slots = 0  # FrameSets not reconstructed (overload)
        self.shed_frames: dict[str, int] = {}  # camera -> frames in shed FrameSets
        self._shed_recent: list[int] = []  # receive times (ns) of recent sheds, for "overloaded"

    def reset(self) -> None:
        self.sync.reset()
        self.reconstructor.reset()

    def push(self, frame: KeypointFrame, recv_ns: int) -> list[Skeleton3D]:
        """One frame received at ``recv_ns`` (ns); the Skeleton3D now due."""
        return self.push_batch((frame,), recv_ns)

    def push_batch(self, frames, recv_ns: int) -> list[Skeleton3D]:
        """Frames received together at ``recv_ns`` (ns), in arrival order; the Skeleton3D now due
        (FrameSets lagging the newest frame too far are shed, see the module docstring)."""
        t = time.perf_counter()
        framesets = self.sync.poll(recv_ns)  # what timed out before this batch (as a live poll would)
        # more than three slots' worth of frames at once: the sync is behind, lags say nothing of clocks
        self.sync.clocks.hold = len(frames) > 3 * len(self.sync.cameras)
        for frame in frames:
            framesets += self.sync.push(frame, recv_ns)
        if frames:
            self.timing["sync"].add((time.perf_counter() - t) / len(frames))
        return self._reconstruct(self._shed(framesets, recv_ns))

    def poll(self, now_ns: int) -> list[Skeleton3D]:
        return self._reconstruct(self._shed(self.sync.poll(now_ns), now_ns))

    def end_camera(self, camera: str, now_ns: int) -> list[Skeleton3D]:
        """``camera`` ended its stream: slots stop waiting for it."""
        return self._reconstruct(self._shed(self.sync.end_camera(camera, now_ns), now_ns))

    def flush(self) -> list[Skeleton3D]:
        """End of stream: every pending slot, none shed."""
        framesets = self.sync.flush()
        for fs in framesets:
            self.sync.emitted_behind.pop(fs.slot_index, None)
        return self._reconstruct(framesets)

    def run(self, events) -> list[Skeleton3D]:
        """Every ``(recv_ns, frame)`` of ``events`` pushed in order (consecutive events with the
        same receive time as one batch, as the live node received them), then the end of the
        stream: all the Skeleton3D outputs (offline use of the live stage: replay, tests)."""
        out: list[Skeleton3D] = []
        batch, batch_ns = [], None
        for recv_ns, frame in events:
            if batch and recv_ns != batch_ns:
                out += self.push_batch(batch, batch_ns)
                batch = []
            batch.append(frame)
            batch_ns = recv_ns
        if batch:
            out += self.push_batch(batch, batch_ns)
        return out + self.flush()

    def overloaded(self, now_ns: int, window_ns: int = 1_000_000_000) -> bool:
        """FrameSets were shed within ``window_ns`` before ``now_ns``."""
        self._shed_recent = [t for t in self._shed_recent if now_ns - t < window_ns]
        return bool(self._shed_recent)

    def _shed(self, framesets, now_ns: int) -> list:
        behind = [self.sync.emitted_behind.pop(fs.slot_index, 0) for fs in framesets]
        if not self.sync.settings.shed or not framesets:
            return framesets
        keep = []
        for fs, lag in zip(framesets, behind):
            if lag <= self.sync.settings.shed_lag_slots:
                keep.append(fs)
                continue
            self.shed_slots += 1
            self.sync.arrival_ns.pop(fs.slot_index, None)
            for f in fs.frames:
                if f is not None:
                    self.shed_frames[f.camera] = self.shed_frames.get(f.camera, 0) + 1
            if not self._shed_recent or self._shed_recent[-1] != now_ns:
                self._shed_recent = self._shed_recent[-100:] + [now_ns]
        return keep

    def _reconstruct(self, framesets) -> list[Skeleton3D]:
        out = []
        self.last_arrival_ns = []
        for fs in framesets:
            t = time.perf_counter()
            sk = self.reconstructor(fs)
            self.timing["reconstruct"].add(time.perf_counter() - t)
            arrival = self.sync.arrival_ns.pop(fs.slot_index, 0)
            self.last_arrival_ns.append(arrival)
            if self.clock_ns is not None:
                now = self.clock_ns()
                self.latency.add((now - sk.capture_ns) * 1e-9)
                if arrival:
                    self.arrival_latency.add((now - arrival) * 1e-9)
            out.append(sk)
        self.outputs += len(out)
        return out

    def status(self) -> dict:
        """Counters and p50/p99 timings (ms) for a status message."""
        return {
            "sync": self.sync.counters.as_dict(),
            "shed": {"slots": self.shed_slots, "frames": dict(self.shed_frames)},
            "clocks": self.sync.clocks.status(),
            "timing_ms": {k: w.summary() for k, w in self.timing.items()},
            "latency_ms": self.latency.summary(),
            "arrival_latency_ms": self.arrival_latency.summary(),
            "outputs": self.outputs,
            "health": self.reconstructor.health.status() if self.reconstructor.health is not None else None,
        }
