"""MOT export of joint angles (OpenSim's storage format): degrees at the edge, SI inside.

``write_mot`` takes values in rad (rotations) and m (translations), as JointAngles carries them,
and writes rotations in degrees with ``inDegrees=yes``, as OpenSim's IK tool does.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["write_mot", "read_mot", "joint_angles_to_mot", "rotational_mask"]


def rotational_mask(names: Sequence[str]) -> list[bool]:
    """Which coordinates are rotations (rad; written in degrees), not translations (m)."""
    from rtkin.core.messages import coordinate_unit

    return [coordinate_unit(n) == "rad" for n in names]


_NONFINITE = re.compile(r"-?(?:nan|inf)")


def write_mot(path: str | os.PathLike, time_s: np.ndarray, names: Sequence[str], values: np.ndarray,
              rotational: Sequence[bool], name: str = "Coordinates", notes: Sequence[str] = ()) -> Path:
    """Write a .mot file.

    Args:
        path: output file (written to a temporary file, then renamed).
        time_s: (T,) strictly increasing times, s.
        names: (Q,) coordinate names.
        values: (T, Q) rad for rotational coordinates, m for translations (NaN allowed).
        rotational: (Q,) True where the coordinate is a rotation (converted to degrees).
        notes: extra header lines (``key=value``; OpenSim ignores keys it does not know).
    """
    time_s = np.asarray(time_s, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    names = list(names)
    rot = np.asarray(rotational, dtype=bool)
    if values.shape != (time_s.size, len(names)) or rot.shape != (len(names),):
        raise ValueError(f"values must be (T, Q) = ({time_s.size}, {len(names)}), rotational (Q,); "
                         f"got {values.shape} and {rot.shape}")
    if time_s.size > 1 and not np.all(np.diff(time_s) > 0):
        raise ValueError("time_s must be strictly increasing")
    out = values.copy()
    out[:, rot] = np.rad2deg(out[:, rot])
    lines = [name, "version=1", f"nRows={time_s.size}", f"nColumns={len(names) + 1}", "inDegrees=yes", "",
             "Units are S.I. units (second, meters, Newtons, ...)",
             "If the header above contains a line with 'inDegrees', this indicates whether rotational "
             "values are in degrees (yes) or radians (no).", *notes, "", "endheader", "\t".join(["time"] + names)]
    row_fmt = "%.6f" + "\t%.8f" * len(names)  # one format per row (NaN and inf written as NaN)
    for t, row in zip(time_s.tolist(), out.tolist()):
        line = row_fmt % (t, *row)
        lines.append(_NONFINITE.sub("NaN", line) if "n" in line else line)
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def read_mot(path: str | os.PathLike) -> tuple[np.ndarray, list[str], np.ndarray, bool]:
    """(time_s (T,), names (Q,), values (T, Q) as written, in_degrees) of a .mot file."""
    text = Path(path).read_text(encoding="utf-8").splitlines()
    end = next(i for i, line in enumerate(text) if line.strip().lower() == "endheader")
    in_deg = any(line.strip().lower() == "indegrees=yes" for line in text[:end])
    header = text[end + 1].split("\t")
    rows = np.array([[float(v) for v in line.split("\t")] for line in text[end + 2:] if line.strip()])
    rows = rows.reshape(-1, len(header))
    return rows[:, 0], header[1:], rows[:, 1:], in_deg


def joint_angles_to_mot(path: str | os.PathLike, messages, rotational: Sequence[bool], t0_ns: int | None = None) -> Path:
    """One person's JointAngles messages (in time order) -> .mot; time 0 = ``t0_ns`` or the first."""
    messages = list(messages)
    if not messages:
        raise ValueError("no JointAngles to export")
    names = messages[0].names
    if any(m.names != names for m in messages):
        raise ValueError("JointAngles with different coordinate names cannot share a .mot file")
    t0 = messages[0].time_ns if t0_ns is None else t0_ns
    time_s = np.array([(m.time_ns - t0) * 1e-9 for m in messages])
    values = np.stack([m.values for m in messages])
    from rtkin.core.messages import AngleFlag

    unobservable = np.stack([(m.flags & np.uint8(AngleFlag.UNOBSERVABLE)) > 0 for m in messages])  # (T, Q)
    values[unobservable] = np.nan  # a placeholder value is not a measurement
    notes = []
    gone = [n for n, u in zip(names, unobservable.all(axis=0)) if u]
    if gone:
        notes.append("unobservable=" + ",".join(gone))
        notes.append("The keypoint set cannot observe the 'unobservable' coordinates: their columns are NaN.")
    return write_mot(path, time_s, names, values, rotational, notes=notes)

