"""TRC export of 3D keypoints: the OpenSim / Pose2Sim marker trajectory text format.

Layout (tab-separated, ``\\n`` line ends), as Pose2Sim's ``make_trc`` writes it::

    PathFileType  4  (X/Y/Z)  <file name>
    DataRate  CameraRate  NumFrames  NumMarkers  Units  OrigDataRate  OrigDataStartFrame  OrigNumFrames
    60  60  <T>  <K>  m  60  1  <T>
    Frame#  Time  <name1>  ""  ""  <name2>  ""  ""  ...          (each name, then two empty cells)
    ""  ""  X1  Y1  Z1  X2  Y2  Z2 ...
    1  0.000000  x  y  z  ...                                    (frame numbers from 1)

Coordinates are OpenSim ground coordinates (y up): world points (z up, rtkin's calibration
frame) are rotated once with :data:`rtkin.core.frames.OSIM_FROM_WORLD`, the same mapping as Pose2Sim's
TRC writer, so a standing subject loads upright. :func:`read_trc` applies the inverse.

Missing markers (NaN) are written as ``NaN`` tokens. OpenSim 4.6 reads ``NaN`` (and ``nan``) as
missing in both ``TimeSeriesTableVec3`` and ``MarkerData``. Empty cells, which Pose2Sim writes
(pandas' default), load in the middle of a row but NOT at its end: ``TimeSeriesTableVec3``
rejects a row whose last marker is empty ("Unexpected number of columns"), so empty cells are
never written here. :func:`read_trc` accepts both.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rtkin.core.frames import OSIM_FROM_WORLD, WORLD_FROM_OSIM
from rtkin.core.messages import Skeleton3D
from rtkin.core.skeletons import get_skeleton

__all__ = ["read_trc", "skeleton3d_to_trc", "write_trc"]

#: Units a TRC may declare -> metres per unit.
UNITS_TO_M = {"m": 1.0, "cm": 0.01, "mm": 0.001}

_HEADER_KEYS = (
    "DataRate", "CameraRate", "NumFrames", "NumMarkers", "Units",
    "OrigDataRate", "OrigDataStartFrame", "OrigNumFrames",
)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# writing


def _check_names(marker_names: Sequence[str], k: int) -> tuple[str, ...]:
    names = tuple(marker_names)
    if len(names) != k:
        raise ValueError(f"{len(names)} marker names for K = {k} markers")
    for n in names:
        if not isinstance(n, str) or not n or n != n.strip() or any(c in n for c in "\t\r\n"):
            raise ValueError(f"marker name {n!r} must be a non-empty str without tabs, line breaks or edge spaces")
    if len(set(names)) != len(names):
        raise ValueError(f"marker names must be unique, duplicated: {sorted({n for n in names if names.count(n) > 1})}")
    return names


def _check_inputs(time_s: np.ndarray, points: np.ndarray) -> None:
    if time_s.ndim != 1:
        raise ValueError(f"time_s must have shape (T,), got {time_s.shape}")
    if points.ndim != 3 or points.shape[2] != 3 or points.shape[0] != time_s.shape[0]:
        raise ValueError(f"points_world must have shape (T, K, 3) = ({time_s.shape[0]}, K, 3), got {points.shape}")
    if points.shape[1] < 1:
        raise ValueError("points_world needs at least one marker (K >= 1)")
    if not np.all(np.isfinite(time_s)):
        raise ValueError("time_s must be finite")
    if time_s.size > 1 and not np.all(np.diff(time_s) > 0):
        raise ValueError("time_s must be strictly increasing (OpenSim requires it)")
    if np.any(np.isinf(points)):
        raise ValueError("points_world must be finite or NaN (missing), not infinite")


def _rate(time_s: np.ndarray, rate_hz: float | None) -> float:
    if rate_hz is None:
        if time_s.size < 2:
            raise ValueError("rate_hz is needed when there are fewer than 2 frames")
        return round(1.0 / float(np.median(np.diff(time_s))), 3)
    is_number = isinstance(rate_hz, numbers.Real) and not isinstance(rate_hz, bool)
    if not (is_number and math.isfinite(rate_hz) and rate_hz > 0):
        raise ValueError(f"rate_hz must be a finite number > 0, got {rate_hz!r}")
    return float(rate_hz)


def _fmt_rate(rate: float) -> str:
    return str(int(rate)) if rate == int(rate) else format(rate, ".10g")


def _header_lines(name: str, rate: float, n_frames: int, names: tuple[str, ...], units: str) -> list[str]:
    r = _fmt_rate(rate)
    values = (r, r, n_frames, len(names), units, r, 1, n_frames)
    return [
        f"PathFileType\t4\t(X/Y/Z)\t{name}",
        "\t".join(_HEADER_KEYS),
        "\t".join(map(str, values)),
        "Frame#\tTime\t" + "\t\t\t".join(names) + "\t\t\t",
        "\t\t" + "\t".join(f"X{i + 1}\tY{i + 1}\tZ{i + 1}" for i in range(len(names))) + "\t",
    ]


def _data_lines(time_s: np.ndarray, flat: np.ndarray, decimals: int) -> list[str]:
    """``flat (T, 3K)`` OpenSim-frame values -> data rows (NaN written as ``NaN``)."""
    row_fmt = "%d\t%." + str(decimals) + "f" + ("\t%." + str(decimals) + "f") * flat.shape[1]
    lines = []
    for i, (t, row) in enumerate(zip(time_s.tolist(), flat.tolist())):
        line = row_fmt % (i + 1, t, *row)
        lines.append(line.replace("nan", "NaN") if "nan" in line else line)
    return lines


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_trc(
    path: str | os.PathLike[str],
    time_s: Sequence[float] | np.ndarray,
    points_world: np.ndarray,
    marker_names: Sequence[str],
    rate_hz: float | None = None,
    units: str = "m",
    *,
    decimals: int = 6,
) -> Path:
    """Write marker trajectories as a TRC file OpenSim and Pose2Sim read.

    Args:
        path: output file; written to a temporary file beside it, then renamed (atomic).
        time_s: ``(T,)`` times in seconds, strictly increasing (written as the Time column).
        points_world: ``(T, K, 3)`` marker positions in metres, world frame (z up); NaN = missing.
        marker_names: ``(K,)`` unique marker names (e.g. the skeleton's keypoint names).
        rate_hz: DataRate / CameraRate in Hz; None = ``1 / median(diff(time_s))`` (rounded to
            1e-3 Hz), which needs T >= 2.
        units: ``"m"`` or ``"mm"`` (or ``"cm"``): unit of the written numbers (the input is metres).
        decimals: digits after the decimal point for coordinates (in ``units``) and time (s).

    Returns:
        The path written.

    Raises:
        ValueError: bad shapes, names, times, rate or units.
    """
    time_s = np.asarray(time_s, dtype=np.float64)
    points = np.asarray(points_world, dtype=np.float64)
    _check_inputs(time_s, points)
    names = _check_names(marker_names, points.shape[1])
    if units not in UNITS_TO_M:
        raise ValueError(f"units must be one of {sorted(UNITS_TO_M)}, got {units!r}")
    if type(decimals) is not int or not 0 <= decimals <= 17:
        raise ValueError(f"decimals must be an int in [0, 17], got {decimals!r}")
    rate = _rate(time_s, rate_hz)
    path = Path(path)
    osim = points @ OSIM_FROM_WORLD.T / UNITS_TO_M[units]  # (T, K, 3): the one world->OpenSim rotation
    lines = _header_lines(path.name, rate, len(time_s), names, units)
    lines += _data_lines(time_s, osim.reshape(len(time_s), -1), decimals)
    _atomic_write_text(path, "\n".join(lines) + "\n")
    return path


# ---------------------------------------------------------------------------------------------
# reading


def _parse_float(token: str) -> float:
    token = token.strip()
    return float(token) if token else math.nan


def _read_rows(lines: list[str], first: int, k: int, where: str) -> tuple[np.ndarray, np.ndarray]:
    times, values = [], []
    for n, line in enumerate(lines[first:], start=first + 1):
        if not line.strip():
            continue
        cells = line.rstrip("\r\n").split("\t")
        if len(cells) < 2:
            raise ValueError(f"{where}: line {n} has no Time column")
        vals = cells[2:]
        while len(vals) > 3 * k and not vals[-1].strip():  # trailing tabs
            vals.pop()
        if len(vals) > 3 * k:
            raise ValueError(f"{where}: line {n} has {len(vals)} values for {k} markers")
        try:
            times.append(float(cells[1]))
            row = [_parse_float(v) for v in vals]
        except ValueError as e:
            raise ValueError(f"{where}: line {n}: {e}") from e
        values.append(row + [math.nan] * (3 * k - len(row)))  # trailing empty cells may be missing
    return np.array(times, dtype=np.float64), np.array(values, dtype=np.float64).reshape(len(times), k, 3)


def read_trc(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Read a TRC file (ours, Pose2Sim's or OpenSim's) back into world coordinates.

    Returns:
        ``(time_s (T,) s, points_world (T, K, 3) m in the world frame (z up), names (K,))``;
        empty or NaN cells are NaN. The inverse of :func:`write_trc` up to its written precision.

    Raises:
        ValueError: not a TRC file, unknown units or malformed rows.
    """
    where = str(path)
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    if len(lines) < 5 or not lines[0].startswith("PathFileType"):
        raise ValueError(f"{where}: not a TRC file (no PathFileType header line)")
    header = dict(zip(lines[1].rstrip("\r").split("\t"), lines[2].rstrip("\r").split("\t")))
    units = header.get("Units", "m").strip()
    if units not in UNITS_TO_M:
        raise ValueError(f"{where}: unknown Units {units!r}, expected one of {sorted(UNITS_TO_M)}")
    names = tuple(n.strip() for n in lines[3].rstrip("\r").split("\t")[2::3] if n.strip())
    if not names:
        raise ValueError(f"{where}: no marker names on line 4")
    time_s, osim = _read_rows(lines, 5, len(names), where)
    world = osim @ WORLD_FROM_OSIM.T * UNITS_TO_M[units]
    return time_s, world, names


# ---------------------------------------------------------------------------------------------
# from Skeleton3D messages


def _person_points(messages: Sequence[Skeleton3D], person_id: int, skeleton_name: str, k: int) -> np.ndarray:
    """``(T, K, 3)`` points of ``person_id`` over ``messages``, NaN where the person is absent."""
    out = np.full((len(messages), k, 3), np.nan)
    for t, msg in enumerate(messages):
        if not isinstance(msg, Skeleton3D):
            raise TypeError(f"messages[{t}] is a {type(msg).__name__}, expected Skeleton3D")
        if msg.skeleton != skeleton_name or msg.n_keypoints != k:
            raise ValueError(
                f"messages[{t}] has skeleton {msg.skeleton!r} with K = {msg.n_keypoints}, "
                f"expected {skeleton_name!r} with K = {k}"
            )
        rows = np.flatnonzero(msg.person_ids == person_id)
        if rows.size:
            out[t] = msg.points[rows[0]]
    return out


def skeleton3d_to_trc(
    path: str | os.PathLike[str],
    messages: Sequence[Skeleton3D],
    person_id: int,
    skeleton_name: str,
    *,
    rate_hz: float | None = None,
    t0_ns: int | None = None,
    include_derived: bool = True,
    units: str = "m",
    decimals: int = 6,
) -> Path:
    """Write one person's 3D keypoints over a session as a TRC (see :func:`write_trc`).

    Args:
        path: output file.
        messages: ``(T,)`` Skeleton3D in strictly increasing ``time_ns``, all of ``skeleton_name``.
        person_id: track id to export; frames where it is absent are NaN.
        skeleton_name: e.g. ``"HALPE_26"``; marker names are its keypoint names.
        rate_hz: DataRate in Hz; None = estimated from the times.
        t0_ns: time (int ns) written as 0 s; None = the first message's ``time_ns``.
        include_derived: also write the skeleton's derived points (``Hip``/``Neck`` of the COCO
            models, means of keypoints), which Pose2Sim's marker sets use.
        units, decimals: as in :func:`write_trc`.

    Raises:
        ValueError: no messages, mixed skeletons, non-increasing times, or ``person_id`` never present.
    """
    if len(messages) == 0:
        raise ValueError("no messages to export")
    sk = get_skeleton(skeleton_name)
    points = _person_points(messages, int(person_id), skeleton_name, sk.n_keypoints)
    if not any(np.any(m.person_ids == person_id) for m in messages):
        raise ValueError(f"person {person_id} is in none of the {len(messages)} messages")
    time_ns = np.array([m.time_ns for m in messages], dtype=np.int64)
    if np.any(np.diff(time_ns) <= 0):
        raise ValueError("messages must be in strictly increasing time_ns")
    t0 = int(time_ns[0]) if t0_ns is None else int(t0_ns)
    time_s = (time_ns - t0) / 1e9
    names = sk.keypoints
    if include_derived and sk.derived:
        points, names = sk.with_derived(points), sk.points
    return write_trc(path, time_s, points, names, rate_hz=rate_hz, units=units, decimals=decimals)
