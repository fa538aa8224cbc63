"""C3D export of 3D keypoints (the biomechanics lab's binary marker format), with the ``c3d`` library.

``c3d`` (pure Python, maintained, and what Pose2Sim itself writes C3D with) is already installed
with pose2sim; no compiled dependency is added.

Frame and units: C3D files are written in rtkin's world frame, **z up** (the calibration's
frame: the floor is z = 0), in **millimetres**, the convention of Vicon, Qualisys, Visual3D and
Mokka, with ``POINT:X_SCREEN = +X`` and ``Y_SCREEN = +Z`` so viewers show the subject upright.
(Pose2Sim instead copies its OpenSim-frame TRC, y up, into the C3D.) OpenSim's C3D adapter
reads the file as is: rotate by -90 deg about X (as for any lab C3D) to get OpenSim's y-up ground.

A missing marker is written as C3D's "invalid" point (residual -1) and read back as NaN.
Time: frame ``i`` (0-based) is at ``first_time_s + i / rate_hz``; ``first_time_s`` is stored in
the ``TRIAL:ACTUAL_START_FIELD`` sense as the first frame number ``round(first_time_s * rate)
+ 1`` (C3D counts frames from 1), so a file starting at the session's slot 0 starts at frame 1.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["write_c3d", "read_c3d"]


def _c3d():
    warnings.filterwarnings("ignore", category=UserWarning, module="c3d")
    import c3d

    return c3d


def write_c3d(path: str | os.PathLike, points_world: np.ndarray, marker_names: Sequence[str], rate_hz: float,
              first_time_s: float = 0.0) -> Path:
    """Write marker trajectories as a C3D file.

    Args:
        path: output file (written beside, then renamed: atomic).
        points_world: ``(T, K, 3)`` positions in metres, world frame (z up); NaN = missing.
        marker_names: ``(K,)`` labels (<= 30 characters is safest for other readers).
        rate_hz: frame rate, Hz; frames are evenly spaced (resample first if they are not).
        first_time_s: time of the first frame on the session's time axis, s (>= 0).

    Returns:
        The path written.
    """
    pts = np.asarray(points_world, dtype=np.float64)
    names = [str(n) for n in marker_names]
    if pts.ndim != 3 or pts.shape[2] != 3 or pts.shape[1] != len(names) or pts.shape[0] < 1:
        raise ValueError(f"points_world must be (T, K, 3) with K = {len(names)} names and T >= 1, got {pts.shape}")
    if not rate_hz > 0:
        raise ValueError(f"rate_hz must be > 0, got {rate_hz}")
    if first_time_s < 0:
        raise ValueError(f"first_time_s must be >= 0, got {first_time_s}")
    c3d = _c3d()
    writer = c3d.Writer(point_rate=float(rate_hz), analog_rate=0.0, point_scale=-1.0, point_units="mm  ")
    writer.set_point_labels(names)
    writer.set_screen_axis(X="+X", Y="+Z")
    mm = pts * 1000.0
    ok = np.isfinite(mm).all(-1)
    frames = []
    for t in range(pts.shape[0]):
        block = np.zeros((len(names), 5), dtype=np.float32)  # x, y, z, residual, camera mask
        block[:, :3] = np.where(ok[t][:, None], mm[t], 0.0)
        block[:, 3] = np.where(ok[t], 0.0, -1.0)
        frames.append((block, np.zeros((0, 0), dtype=np.float32)))
    writer.add_frames(frames)
    first = int(round(first_time_s * rate_hz)) + 1
    writer.set_start_frame(first)
    writer._set_last_frame(first + pts.shape[0] - 1)  # noqa: SLF001 - the library's only way (Pose2Sim does the same)
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            writer.write(f)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def read_c3d(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], float]:
    """Read a C3D file's points: ``(time_s (T,), points_world (T, K, 3) m, names (K,), rate_hz)``.

    Units are converted from the file's ``POINT:UNITS`` (mm or m) to metres; invalid points
    (residual < 0) are NaN; ``time_s`` counts from C3D frame 1 = 0 s. No axis change: a file
    written by :func:`write_c3d` comes back in the world frame (z up).
    """
    c3d = _c3d()
    with open(path, "rb") as f:
        reader = c3d.Reader(f)
        names = tuple(s.strip() for s in reader.point_labels)
        rate = float(reader.point_rate)
        units = reader.get("POINT:UNITS").string_value.strip().lower() if reader.get("POINT:UNITS") else "mm"
        scale = {"mm": 1e-3, "cm": 1e-2, "m": 1.0}.get(units, 1e-3)
        first = int(reader.first_frame)
        rows = []
        for _i, pts, _analog in reader.read_frames(check_nan=False):
            p = np.array(pts[:, :3], dtype=np.float64) * scale
            p[pts[:, 3] < 0] = np.nan
            rows.append(p)
    data = np.stack(rows) if rows else np.zeros((0, len(names), 3))
    time_s = (first - 1 + np.arange(data.shape[0])) / rate
    return time_s, data, names, rate
