"""A session's files from its recording: one TRC (3D keypoints) and one MOT (joint angles) per
person, on one time axis.

Time axis: every file of a session counts seconds from the session's first slot, the ``time_ns``
of the first Skeleton3D in the recording (the sync node outputs one per slot, people or not). So
the same frame has the same time in the TRC, the MOT and the recording, whoever was in view first.
Used at the end of a live run, by ``rtkin export`` and by the demos; nothing is recomputed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["SessionOutputs", "session_t0_ns", "export_session", "recording_to_mots"]


@dataclass
class SessionOutputs:
    """What :func:`export_session` wrote (and why some people got no files)."""

    t0_ns: int | None = None
    trc: list[Path] = field(default_factory=list)
    mot: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def session_t0_ns(skeletons, angles=()) -> int | None:
    """The session's time zero (ns): the first Skeleton3D's ``time_ns`` (else the first JointAngles')."""
    if skeletons:
        return int(skeletons[0].time_ns)
    return min((int(a.time_ns) for a in angles), default=None)


def export_session(recording: str | os.PathLike, out_dir: str | os.PathLike, name: str,
                   min_frames: int = 30, trc: bool = True, mot: bool = True) -> SessionOutputs:
    """Write ``<out_dir>/<name>_person<id>.trc`` and ``.mot`` for every person seen in at least
    ``min_frames`` frames (shorter tracks are fragments), from the outputs recorded live."""
    from rtkin.core.messages import JointAngles, Skeleton3D
    from rtkin.io.mot import joint_angles_to_mot, rotational_mask
    from rtkin.io.recording import OUTPUT, RecordingReader
    from rtkin.io.trc import skeleton3d_to_trc

    reader = RecordingReader(recording)
    skeletons, angles = [], []
    for rec in reader:
        if rec.kind == OUTPUT:
            if isinstance(rec.message, Skeleton3D):
                skeletons.append(rec.message)
            elif isinstance(rec.message, JointAngles):
                angles.append(rec.message)
    out = SessionOutputs(t0_ns=session_t0_ns(skeletons, angles))
    out_dir = Path(out_dir)
    if trc and skeletons:
        skeletons.sort(key=lambda s: s.time_ns)
        counts: dict[int, int] = {}
        for sk in skeletons:
            for pid in sk.person_ids:
                counts[int(pid)] = counts.get(int(pid), 0) + 1
        rate = _rate(reader.meta)
        for pid, n in sorted(counts.items()):
            if n < min_frames:
                out.skipped.append(f"person {pid}: {n} frames of 3D keypoints (a fragment, < {min_frames})")
                continue
            out.trc.append(skeleton3d_to_trc(out_dir / f"{name}_person{pid}.trc", skeletons, pid,
                                             skeletons[0].skeleton, rate_hz=rate, t0_ns=out.t0_ns))
    if mot and angles:
        by_person: dict[int, list] = {}
        for ja in angles:
            by_person.setdefault(int(ja.person_id), []).append(ja)
        for pid, msgs in sorted(by_person.items()):
            if len(msgs) < min_frames:
                out.skipped.append(f"person {pid}: {len(msgs)} frames of joint angles (< {min_frames})")
                continue
            msgs.sort(key=lambda m: m.time_ns)
            out.mot.append(joint_angles_to_mot(out_dir / f"{name}_person{pid}.mot", msgs,
                                               rotational_mask(msgs[0].names), t0_ns=out.t0_ns))
    return out


def recording_to_mots(recording: str | os.PathLike, out_dir: str | os.PathLike, name: str,
                      min_frames: int = 30) -> list[Path]:
    """Every person's recorded JointAngles -> ``<out_dir>/<name>_person<id>.mot`` (see
    :func:`export_session`)."""
    return export_session(recording, out_dir, name, min_frames=min_frames, trc=False).mot


def _rate(meta: dict) -> float | None:
    fps = meta.get("config", {}).get("sync", {}).get("fps_hz")
    return float(fps) if isinstance(fps, (int, float)) and fps > 0 else None
