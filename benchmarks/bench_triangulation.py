"""Triangulation speed: rtkin's Numba DLT vs Pose2Sim's functions, same frames, one process.

Virtual subject (HALPE_26, 26 keypoints) in the Pose2Sim demo rig (4 cameras), clean views and
with one camera offset by 80 px. Per frame, Pose2Sim triangulates keypoint by keypoint with
``triangulation_from_best_cameras`` (its exclusion loop, as ``triangulate_all`` calls it) and
``weighted_triangulation`` (the bare SVD DLT); rtkin triangulates the whole frame in one call
(undistortion, DLT, reprojection errors in distorted pixels, leave-one-out exclusion included).

Usage: python benchmarks/bench_triangulation.py [--frames N] [--repeat R]
Prints ms per frame for each, the ratios, and the 3D error against truth.
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np

logging.disable(logging.WARNING)  # Pose2Sim logs a GUI-backend warning on import

from Pose2Sim.common import weighted_triangulation  # noqa: E402
from Pose2Sim.triangulation import triangulation_from_best_cameras  # noqa: E402

from rtkin.sim import virtual  # noqa: E402
from rtkin.reconstruct.triangulation import TriangulationSettings, Triangulator  # noqa: E402

P2S_CONFIG = {"triangulation": {"reproj_error_threshold_triangulation": 15, "min_cameras_for_triangulation": 2,
                                "handle_LR_swap": False, "undistort_points": False}}


def _time_per_frame(fn, frames, repeat=1):
    """Best-of-``repeat`` mean seconds per frame of ``fn(frame)`` over ``frames``."""
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        for f in frames:
            fn(f)
        best = min(best, (time.perf_counter() - t0) / len(frames))
    return best


def _p2s_best_cameras(P, kp):
    """Pose2Sim's per-keypoint exclusion loop over one frame kp (C, K, 3) -> (K, 3)."""
    out = np.empty((kp.shape[1], 3))
    for k in range(kp.shape[1]):
        coords = (kp[:, k, 0], kp[:, k, 1], kp[:, k, 2])
        Q, _, _, _ = triangulation_from_best_cameras(P2S_CONFIG, coords, coords, P, None)
        out[k] = Q
    return out


def _p2s_weighted(P, kp):
    out = np.empty((kp.shape[1], 3))
    for k in range(kp.shape[1]):
        out[k] = weighted_triangulation(P, kp[:, k, 0], kp[:, k, 1], kp[:, k, 2])[:3]
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=60, help="frames timed for Pose2Sim (rtkin runs all 720)")
    ap.add_argument("--repeat", type=int, default=5, help="best-of repeats for rtkin")
    args = ap.parse_args(argv)

    rig = virtual.demo_rig()
    subject = virtual.simulate_subject()
    views = virtual.render_views(rig, subject, corruption=virtual.CorruptionSettings.clean())
    clean = views.keypoints_of(0).astype(np.float64)  # (C, T, K, 3)
    truth = views.truth_3d[:, 0]
    bad = clean.copy()
    bad[1, ..., 0] += 80.0
    P = list(rig.projection_matrices())
    tri = Triangulator(rig)
    tri_nodist = Triangulator(rig, TriangulationSettings(undistort=False))
    step = max(1, clean.shape[1] // args.frames)
    p2s_idx = list(range(0, clean.shape[1], step))[: args.frames]

    print(f"virtual subject, demo rig: {len(rig)} cameras x {clean.shape[2]} keypoints per frame")
    print(f"{'case':<10} {'method':<44} {'ms/frame':>10} {'x faster':>9} {'3D err mm':>10}")
    for name, kp in (("clean", clean), ("cam02+80px", bad)):
        frames_all = [kp[:, t] for t in range(kp.shape[1])]
        frames_p2s = [kp[:, t] for t in p2s_idx]
        tri(frames_all[0])  # compile / load the cached kernels before timing
        t_rt = _time_per_frame(tri, frames_all, args.repeat)
        t_rt_nd = _time_per_frame(tri_nodist, frames_all, args.repeat)
        t_best = _time_per_frame(lambda f: _p2s_best_cameras(P, f), frames_p2s)
        t_w = _time_per_frame(lambda f: _p2s_weighted(P, f), frames_p2s)
        err_rt = np.nanmean(np.linalg.norm(tri(kp).points - truth, axis=-1)) * 1e3
        pts_best = np.stack([_p2s_best_cameras(P, f) for f in frames_p2s])
        err_best = np.nanmean(np.linalg.norm(pts_best - truth[p2s_idx], axis=-1)) * 1e3
        rows = [
            ("rtkin Triangulator (undistort + exclusion)", t_rt, err_rt),
            ("rtkin Triangulator (no undistortion)", t_rt_nd, np.nan),
            ("Pose2Sim triangulation_from_best_cameras", t_best, err_best),
            ("Pose2Sim weighted_triangulation (no excl.)", t_w, np.nan),
        ]
        for label, t, e in rows:
            print(f"{name:<10} {label:<44} {t * 1e3:10.4f} {t_best / t:9.1f} {e:10.3f}")
    print("x faster = Pose2Sim best-cameras time / this row's time (same frames, same process)")


if __name__ == "__main__":
    main()
