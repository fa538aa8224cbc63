"""Export the live outputs of a recording as recorded, with no recomputation: MOT (the recorded
JointAngles), TRC and C3D (the recorded Skeleton3D points), and the session report. The quick path
after any session, including one that was killed (the file reads up to its last whole record).

Time axis: seconds from the session's first slot, the first recorded Skeleton3D (JointAngles carry
the time of the Skeleton3D they were solved from), shared by every file of the session.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rtkin.core.messages import Skeleton3D
from rtkin.core.skeletons import get_skeleton

__all__ = ["export_recording", "ExportError"]


class ExportError(ValueError):
    """Nothing to export, or an output exists (one-line message)."""


def _targets(name: str, sks, jas, mot: bool, trc: bool, c3d: bool, min_frames: int) -> list[str]:
    out = []
    counts: dict[int, int] = {}
    for s in sks:
        for p in s.person_ids:
            counts[int(p)] = counts.get(int(p), 0) + 1
    for pid, n in sorted(counts.items()):
        if n >= min_frames:
            out += [f"{name}_person{pid}.{e}" for e, on in (("trc", trc), ("c3d", c3d)) if on]
    if mot:
        out += [f"{name}_person{pid}.mot" for pid, v in sorted(jas.items()) if len(v) >= min_frames]
    return out


def export_recording(recording: str | Path, out_dir: str | Path | None = None, *, mot: bool = True,
                     trc: bool = True, c3d: bool = True, report: bool = True, name: str | None = None,
                     min_frames: int = 30, force: bool = False, progress=None) -> list[Path]:
    """Write the recorded live outputs of ``recording`` as files; returns the paths written.

    Args:
        recording: ``.rtkrec`` file (complete or cut by a killed run).
        out_dir: output folder (default: beside the recording).
        mot, trc, c3d, report: which outputs.
        name: file name stem (default: the recording's stem).
        min_frames: people with fewer recorded frames (track fragments) are skipped.
        force: overwrite existing files (else ExportError).
        progress: ``progress(step, done, total)`` callback.

    Raises:
        ExportError: no recorded output of the requested kinds, or an output exists.
        RecordingError: not a readable recording.
    """
    from rtkin.io.c3d import write_c3d
    from rtkin.io.mot import joint_angles_to_mot, rotational_mask
    from rtkin.io.report import read_recorded, write_session_report
    from rtkin.io.trc import skeleton3d_to_trc

    path = Path(recording)
    out = Path(out_dir) if out_dir is not None else path.parent
    name = name or path.stem
    if progress is not None:
        progress("reading the recording", 0, 1)
    session = read_recorded(path, inputs=report)  # once, for every file and the report
    sks, jas, reader = session.skeletons, session.angles, session.reader
    if progress is not None:
        progress("reading the recording", 1, 1)
    if not sks and not jas:
        raise ExportError(f"{path}: no recorded outputs (Skeleton3D / JointAngles) to export; "
                          "`rtkin reprocess` computes them from the recorded inputs")
    if mot and not jas and not (trc or c3d or report):
        raise ExportError(f"{path}: no recorded JointAngles (was IK enabled?); try `rtkin reprocess`")
    wanted = _targets(name, sks, jas, mot, trc, c3d, min_frames) + ([f"{name}_report.html"] if report else [])
    existing = [out / f for f in wanted if (out / f).exists()]
    if existing and not force:
        raise ExportError(f"{existing[0]} exists; choose another output folder or pass --force")
    out.mkdir(parents=True, exist_ok=True)
    t0 = sks[0].time_ns if sks else min(v[0].time_ns for v in jas.values())
    fps = float((reader.meta.get("config", {}) or {}).get("sync", {}).get("fps_hz", 60.0))
    files: list[Path] = []
    if sks and (trc or c3d):
        sk_def = get_skeleton(sks[0].skeleton)
        sks = [s for s in sks if s.skeleton == sk_def.name]
        counts: dict[int, int] = {}
        for s in sks:
            for p in s.person_ids:
                counts[int(p)] = counts.get(int(p), 0) + 1
        for pid in sorted(p for p, n in counts.items() if n >= min_frames):
            mine = [s for s in sks if pid in s.person_ids]
            if trc:
                files.append(skeleton3d_to_trc(out / f"{name}_person{pid}.trc", mine, pid, sk_def.name,
                                               rate_hz=fps, t0_ns=t0))
            if c3d:
                files.append(_c3d(out / f"{name}_person{pid}.c3d", mine, pid, sk_def, t0, fps, write_c3d))
    if mot:
        for pid, msgs in sorted(jas.items()):
            if len(msgs) < min_frames:
                continue
            msgs = [m for m in msgs if m.names == msgs[0].names]
            files.append(joint_angles_to_mot(out / f"{name}_person{pid}.mot", msgs, rotational_mask(msgs[0].names),
                                             t0_ns=t0))
    if report:
        if progress is not None:
            progress("report", 0, 1)
        files.append(write_session_report(path, out, name=name, stem=f"{name}_report", session=session))
        if progress is not None:
            progress("report", 1, 1)
    return files


def _c3d(path: Path, msgs: list[Skeleton3D], pid: int, sk_def, t0: int, fps: float, write_c3d) -> Path:
    """One person's recorded points on the slot grid from their first to last slot (gaps NaN)."""
    period = 1e9 / fps
    slots = np.round((np.array([m.time_ns for m in msgs], dtype=np.int64) - t0) / period).astype(np.int64)
    first = int(slots[0])
    pts = np.full((int(slots[-1]) - first + 1, sk_def.n_keypoints, 3), np.nan)
    for s, m in zip(slots, msgs):
        pts[s - first] = m.points[int(np.flatnonzero(m.person_ids == pid)[0])]
    return write_c3d(path, pts, sk_def.keypoints, fps, first_time_s=first / fps)
