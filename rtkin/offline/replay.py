"""Replay a recording through the same stages: at recorded time or as fast as possible.

The recording holds every KeypointFrame the live sync node received, with its receive time, plus
the calibration and the run configuration. Replaying feeds the frames to a fresh
:class:`~rtkin.reconstruct.pipeline.Pipeline` with the recorded receive times as its clock, so the live
run's Skeleton3D outputs come out again, bit for bit (the recorded outputs, when present, are
compared).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from rtkin.core.calibration import read_calib_toml
from rtkin.runtime.config import RunConfig, config_from_dict
from rtkin.core.messages import KeypointFrame, Skeleton3D
from rtkin.reconstruct.pipeline import Pipeline
from rtkin.io.recording import INPUT, OUTPUT, RecordingReader

__all__ = ["ReplayResult", "replay", "recording_config"]


@dataclass
class ReplayResult:
    """Outputs of a replay and how they compare with the recorded live outputs."""

    outputs: list[Skeleton3D] = field(default_factory=list)
    recorded_outputs: list[Skeleton3D] = field(default_factory=list)
    inputs: int = 0
    truncated: bool = False
    tail_bytes_ignored: int = 0
    malformed: int = 0
    status: dict = field(default_factory=dict)
    config: RunConfig | None = None

    def matches_recorded(self) -> tuple[int, int]:
        """(equal, compared): how many recorded live outputs the replay reproduced exactly, in order.

        Live outputs after the last recorded input cannot be reproduced from a truncated file, so
        the comparison covers the replayed outputs that the recording also holds.
        """
        n = min(len(self.outputs), len(self.recorded_outputs))
        return sum(a == b for a, b in zip(self.outputs[:n], self.recorded_outputs[:n])), n


def recording_config(reader: RecordingReader) -> tuple[RunConfig, object]:
    """The run configuration and rig stored in a recording's header."""
    meta = reader.meta
    cfg = config_from_dict(meta.get("config", {}))
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "Calib.toml"
        p.write_text(meta["calibration_toml"])
        rig = read_calib_toml(p)
    return cfg, rig


def replay(path: str | Path, realtime: bool = False, on_output: Callable[[Skeleton3D], None] | None = None,
           flush_at_end: bool = True) -> ReplayResult:
    """Feed a recording's inputs through a fresh pipeline.

    Args:
        path: recording file (a file cut anywhere replays up to its last whole record).
        realtime: sleep so inputs are fed at their recorded pace; otherwise as fast as possible.
        on_output: called with each Skeleton3D as it is produced (e.g. to publish it).
        flush_at_end: emit the slots still pending at the end, as the live node does on stop --
            only for a recording that was closed cleanly (its end marker is there).
    """
    reader = RecordingReader(path)
    cfg, rig = recording_config(reader)
    pipe = Pipeline(rig, cfg.rig.skeleton, cfg.sync, cfg.reconstruction, clock_ns=None)
    res = ReplayResult(config=cfg)
    start_wall = start_rec = None
    for rec in reader:
        if rec.kind == OUTPUT and isinstance(rec.message, Skeleton3D):
            res.recorded_outputs.append(rec.message)
            continue
        if rec.kind != INPUT or not isinstance(rec.message, KeypointFrame):
            continue
        if realtime:
            if start_wall is None:
                start_wall, start_rec = time.monotonic_ns(), rec.recv_ns
            delay = (rec.recv_ns - start_rec) - (time.monotonic_ns() - start_wall)
            if delay > 0:
                time.sleep(delay / 1e9)
        res.inputs += 1
        for sk in pipe.push(rec.message, rec.recv_ns):
            res.outputs.append(sk)
            if on_output is not None:
                on_output(sk)
    if flush_at_end and reader.complete:  # a killed live run did not flush its last slots either
        for sk in pipe.flush():
            res.outputs.append(sk)
            if on_output is not None:
                on_output(sk)
    res.truncated, res.tail_bytes_ignored, res.malformed = reader.truncated, reader.tail_bytes_ignored, reader.n_malformed
    res.status = pipe.status()
    return res
