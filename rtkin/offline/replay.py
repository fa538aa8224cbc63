"""Replay a recording through the same stages: at recorded time or as fast as possible.

The recording holds every KeypointFrame the live sync node received, with its receive time, plus
the calibration and the run configuration. Replaying validates each frame as the live node did
(:class:`~rtkin.reconstruct.validation.InputValidator`: a bad frame is skipped and counted) and
feeds the frames received together (same receive time) to a fresh
:class:`~rtkin.reconstruct.pipeline.Pipeline` as one batch, with the recorded receive times as its
clock, so the live run's Skeleton3D outputs come out again, bit for bit (the recorded outputs,
when present, are compared).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from rtkin.core.calibration import CalibrationError, parse_calib_toml
from rtkin.core.messages import KeypointFrame, Skeleton3D
from rtkin.core.skeletons import get_skeleton
from rtkin.io.recording import CAMERA_END, INPUT, OUTPUT, RecordingError, RecordingReader
from rtkin.reconstruct.pipeline import Pipeline
from rtkin.reconstruct.validation import InputValidator
from rtkin.runtime.config import ConfigError, RunConfig, config_from_dict

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
    damaged: list[tuple[int, int, str]] = field(default_factory=list)  # byte ranges skipped mid-file
    refused: dict[str, int] = field(default_factory=dict)  # frames refused by validation, by reason
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
    """The run configuration and rig stored in a recording's header.

    Raises:
        RecordingError: the header lacks them or they are not valid (one line saying which).
    """
    meta = reader.meta
    where = str(reader.path)
    try:
        cfg = config_from_dict(meta.get("config", {}))
    except (ConfigError, TypeError, AttributeError) as e:
        raise RecordingError(f"{where}: the run configuration in its header is not valid: {e}") from None
    text = meta.get("calibration_toml")
    if not isinstance(text, str):
        raise RecordingError(f"{where}: its header holds no calibration (not written by `rtkin run`?)")
    try:
        rig = parse_calib_toml(text, f"{where} (header calibration)")
    except (CalibrationError, ValueError) as e:
        raise RecordingError(f"{where}: the calibration in its header is not valid: {e}") from None
    if cfg.rig.cameras and list(cfg.rig.cameras) != list(rig.names):
        raise RecordingError(f"{where}: header cameras {list(cfg.rig.cameras)} differ from its calibration's "
                             f"{list(rig.names)}")
    return cfg, rig


def replay(path: str | Path, realtime: bool = False, on_output: Callable[[Skeleton3D], None] | None = None,
           flush_at_end: bool = True) -> ReplayResult:
    """Feed a recording's inputs through a fresh pipeline.

    Args:
        path: recording file (a file cut anywhere replays up to its last whole record; damage in
            the middle is skipped, see :attr:`ReplayResult.damaged`).
        realtime: sleep so inputs are fed at their recorded pace; otherwise as fast as possible.
        on_output: called with each Skeleton3D as it is produced (e.g. to publish it).
        flush_at_end: emit the slots still pending at the end, as the live node does on stop --
            only for a recording that was closed cleanly (its end marker is there).

    Raises:
        RecordingError: not a readable recording (bad magic or header), in one line.
    """
    reader = RecordingReader(path, kinds=(INPUT, OUTPUT, CAMERA_END))
    cfg, rig = recording_config(reader)
    pipe = Pipeline(rig, cfg.rig.skeleton, cfg.effective_sync(), cfg.reconstruction, clock_ns=None)
    validator = InputValidator(rig.names, cfg.rig.skeleton, get_skeleton(cfg.rig.skeleton).n_keypoints,
                               {c.name: c.size for c in rig.cameras})
    res = ReplayResult(config=cfg)
    start_wall = start_rec = None
    batch: list[KeypointFrame] = []
    batch_ns = None

    def emit(outputs) -> None:
        for sk in outputs:
            res.outputs.append(sk)
            if on_output is not None:
                on_output(sk)

    for rec in reader:
        if rec.kind == OUTPUT and isinstance(rec.message, Skeleton3D):
            res.recorded_outputs.append(rec.message)
            continue
        if rec.kind == CAMERA_END:  # as live: the batch received with it first, then the end
            if batch:
                emit(pipe.push_batch(batch, batch_ns))
            if not batch or batch_ns != rec.recv_ns:
                emit(pipe.poll(rec.recv_ns))
            batch = []
            emit(pipe.end_camera(rec.message, rec.recv_ns))
            continue
        if rec.kind != INPUT:
            continue
        if batch and rec.recv_ns != batch_ns:  # the live node received these together
            emit(pipe.push_batch(batch, batch_ns))
            batch = []
        if realtime:
            if start_wall is None:
                start_wall, start_rec = time.monotonic_ns(), rec.recv_ns
            delay = (rec.recv_ns - start_rec) - (time.monotonic_ns() - start_wall)
            if delay > 0:
                time.sleep(delay / 1e9)
        res.inputs += 1
        if validator.check(rec.message) is None:
            batch.append(rec.message)
            batch_ns = rec.recv_ns
    if batch:
        emit(pipe.push_batch(batch, batch_ns))
    if flush_at_end and reader.complete:  # a killed live run did not flush its last slots either
        emit(pipe.flush())
    res.truncated, res.tail_bytes_ignored, res.malformed = reader.truncated, reader.tail_bytes_ignored, reader.n_malformed
    res.damaged = list(reader.damaged)
    res.refused = dict(validator.counters.refused)
    res.status = pipe.status()
    return res
