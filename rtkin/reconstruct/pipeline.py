"""KeypointFrames -> Skeleton3D: the synchroniser plus the reconstructor, with per-stage timing.

Plain object, no sockets: the live sync node, ``rtkin replay`` and the benchmarks all drive it
with ``push(frame, recv_ns)``, ``poll(now_ns)`` and ``flush()``.
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

    def reset(self) -> None:
        self.sync.reset()
        self.reconstructor.reset()

    def push(self, frame: KeypointFrame, recv_ns: int) -> list[Skeleton3D]:
        t = time.perf_counter()
        framesets = self.sync.push(frame, recv_ns)
        self.timing["sync"].add(time.perf_counter() - t)
        return self._reconstruct(framesets)

    def poll(self, now_ns: int) -> list[Skeleton3D]:
        return self._reconstruct(self.sync.poll(now_ns))

    def flush(self) -> list[Skeleton3D]:
        return self._reconstruct(self.sync.flush())

    def run(self, events) -> list[Skeleton3D]:
        """Every ``(recv_ns, frame)`` of ``events`` pushed in order, then the end of the stream:
        all the Skeleton3D outputs (offline use of the live stage: tests, benchmarks)."""
        out: list[Skeleton3D] = []
        for recv_ns, frame in events:
            out += self.push(frame, recv_ns)
        return out + self.flush()

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
            "timing_ms": {k: w.summary() for k, w in self.timing.items()},
            "latency_ms": self.latency.summary(),
            "arrival_latency_ms": self.arrival_latency.summary(),
            "outputs": self.outputs,
            "health": self.reconstructor.health.status() if self.reconstructor.health is not None else None,
        }
