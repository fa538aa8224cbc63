"""Weighted DLT triangulation of many points at once, with robust view exclusion (Numba).

Method: the same linear system as Pose2Sim's ``weighted_triangulation`` -- for every view ``c``
two rows ``w_c (P_c[0] - u P_c[2])`` and ``w_c (P_c[1] - v P_c[2])`` on undistorted pixels,
weighted by the keypoint score -- solved non-homogeneously (X_4 = 1) through its normal
equations instead of an SVD of the 2C x 4 matrix. Both minimise the same algebraic residual; the
SVD adds the constraint ``|X_h| = 1``, which makes its answer depend on where the world origin
is (|X_h| grows with the distance to it) and tilts it by tens of micrometres (median ~0.04 mm,
max ~0.3 mm at 3 px noise on the demo rig) when views disagree, by nothing when they agree. The
linear solve is origin-independent, ~1000x cheaper than Pose2Sim's per-point SVD, and compiled
over people x keypoints in one loop. ``dlt="homogeneous"`` refines it to the SVD solution by
inverse iteration on the same 4x4 normal matrix, for exact comparisons with Pose2Sim.

Robust exclusion (the intent of Pose2Sim's ``triangulation_from_best_cameras`` without its
combinatorial loop): while the mean reprojection error of a point over its views is above
``exclusion_threshold_px`` and more than ``min_views`` views remain, drop the worst view -- the one
whose removal leaves the smallest mean error (greedy leave-one-out: C solves per dropped view
instead of all C-choose-k subsets) -- and re-solve. Reprojection errors are measured in the
original distorted pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from rtkin.core.calibration import Rig, _project_kernel, _undistort_kernel, UNDISTORT_ITERATIONS

__all__ = ["TriangulationSettings", "TriangulationResult", "Triangulator", "triangulate"]


@dataclass(frozen=True)
class TriangulationSettings:
    """Triangulation defaults (one place; TOML ``[triangulation]`` maps 1:1).

    Attributes:
        min_score: views whose keypoint score is below this are ignored (score units, 0..1).
        exclusion_threshold_px: drop the worst view while the mean reprojection error is above
            this, px (Pose2Sim's ``reproj_error_threshold_triangulation``).
        min_views: never exclude below this many views; fewer usable views -> NaN.
        max_error_px: a point whose mean reprojection error is still above this after exclusion
            is returned as NaN (``inf`` keeps every point).
        undistort: undistort 2D points before the DLT (the lens model of the rig); reprojection
            errors are always measured in distorted pixels.
        dlt: ``"linear"`` (default) solves the DLT with the 4th homogeneous coordinate fixed to 1:
            independent of where the world origin is. ``"homogeneous"`` gives the SVD solution
            (Pose2Sim's ``weighted_triangulation``), whose constraint ``|X_h| = 1`` makes the
            answer depend slightly on the world origin; kept for exact comparisons.
    """

    min_score: float = 0.3
    exclusion_threshold_px: float = 15.0
    min_views: int = 2
    max_error_px: float = 50.0
    undistort: bool = True
    dlt: str = "linear"

    def __post_init__(self) -> None:
        if self.dlt not in ("linear", "homogeneous"):
            raise ValueError(f"dlt must be 'linear' or 'homogeneous', got {self.dlt!r}")
        if self.min_views < 2:
            raise ValueError(f"min_views must be >= 2, got {self.min_views}")
        if not self.min_score >= 0:
            raise ValueError(f"min_score must be >= 0, got {self.min_score}")
        if not (self.exclusion_threshold_px > 0 and self.max_error_px > 0):
            raise ValueError("thresholds must be > 0 px")


@dataclass(frozen=True, eq=False)
class TriangulationResult:
    """Result for points of shape ``S`` (e.g. (N, K)).

    Attributes:
        points: (*S, 3) world coordinates, m; NaN where not triangulated.
        reproj_error_px: (*S,) mean reprojection error over the views used, px; NaN if none.
        used: (C, *S) bool, views that contributed to each point.
    """

    points: np.ndarray
    reproj_error_px: np.ndarray
    used: np.ndarray

    @property
    def n_views(self) -> np.ndarray:
        """(*S,) number of views used per point."""
        return self.used.sum(axis=0).astype(np.uint8)


@njit(cache=True)
def _normal_matrix(uv, w, P, mask, m, M):  # pragma: no cover - compiled
    """M (4, 4) = A^T A of the weighted DLT rows of point m over the masked views."""
    M[:, :] = 0.0
    a = np.empty(4)
    for c in range(P.shape[0]):
        if not mask[c]:
            continue
        wc2 = w[c, m] * w[c, m]
        for r in range(2):
            coord = uv[c, m, r]
            for j in range(4):
                a[j] = P[c, r, j] - coord * P[c, 2, j]
            for i in range(4):
                for j in range(i, 4):
                    M[i, j] += wc2 * a[i] * a[j]
    for i in range(4):
        for j in range(i):
            M[i, j] = M[j, i]


@njit(cache=True)
def _solve_linear(M, X):  # pragma: no cover - compiled
    """Non-homogeneous solution (X_4 = 1): M[:3, :3] X = -M[:3, 3], Cramer's rule. Success?"""
    c00 = M[1, 1] * M[2, 2] - M[1, 2] * M[2, 1]
    c01 = M[1, 2] * M[2, 0] - M[1, 0] * M[2, 2]
    c02 = M[1, 0] * M[2, 1] - M[1, 1] * M[2, 0]
    det = M[0, 0] * c00 + M[0, 1] * c01 + M[0, 2] * c02
    scale = M[0, 0] * M[1, 1] * M[2, 2]
    if scale == 0.0 or not (abs(det) > 1e-12 * abs(scale)):
        return False
    c10 = M[0, 2] * M[2, 1] - M[0, 1] * M[2, 2]
    c11 = M[0, 0] * M[2, 2] - M[0, 2] * M[2, 0]
    c12 = M[0, 1] * M[2, 0] - M[0, 0] * M[2, 1]
    c20 = M[0, 1] * M[1, 2] - M[0, 2] * M[1, 1]
    c21 = M[0, 2] * M[1, 0] - M[0, 0] * M[1, 2]
    c22 = M[0, 0] * M[1, 1] - M[0, 1] * M[1, 0]
    b0, b1, b2 = -M[0, 3], -M[1, 3], -M[2, 3]
    X[0] = (c00 * b0 + c10 * b1 + c20 * b2) / det
    X[1] = (c01 * b0 + c11 * b1 + c21 * b2) / det
    X[2] = (c02 * b0 + c12 * b1 + c22 * b2) / det
    return True


@njit(cache=True)
def _refine_homogeneous(M, X):  # pragma: no cover - compiled
    """Move X to the SVD (homogeneous) DLT solution: the eigenvector of M's smallest eigenvalue,
    by inverse iteration from the non-homogeneous solution (converges in 1-2 steps because the
    smallest eigenvalue is orders of magnitude below the others). Success?"""
    eps = 1e-13 * (M[0, 0] + M[1, 1] + M[2, 2] + M[3, 3])
    for _ in range(3):
        A = M.copy()
        for i in range(4):
            A[i, i] += eps
        y = np.array([X[0], X[1], X[2], 1.0])
        # Gaussian elimination with partial pivoting on the 4x4 system A z = y
        for k in range(4):
            p = k
            for i in range(k + 1, 4):
                if abs(A[i, k]) > abs(A[p, k]):
                    p = i
            if A[p, k] == 0.0:
                return False
            if p != k:
                for j in range(4):
                    A[k, j], A[p, j] = A[p, j], A[k, j]
                y[k], y[p] = y[p], y[k]
            for i in range(k + 1, 4):
                f = A[i, k] / A[k, k]
                for j in range(k, 4):
                    A[i, j] -= f * A[k, j]
                y[i] -= f * y[k]
        for k in range(3, -1, -1):
            acc = y[k]
            for j in range(k + 1, 4):
                acc -= A[k, j] * y[j]
            y[k] = acc / A[k, k]
        if y[3] == 0.0:
            return False
        X[0] = y[0] / y[3]
        X[1] = y[1] / y[3]
        X[2] = y[2] / y[3]
    return True


@njit(cache=True)
def _solve_point(uv, w, P, mask, m, X, homogeneous, M):  # pragma: no cover - compiled
    """Weighted DLT of point m over the masked views into X (3,). Success?"""
    _normal_matrix(uv, w, P, mask, m, M)
    if not _solve_linear(M, X):
        return False
    if homogeneous:
        return _refine_homogeneous(M, X)
    return True


@njit(cache=True)
def _view_errors(X, uv_raw, R, t, K, dist, mask, m, proj, err):  # pragma: no cover - compiled
    """Reprojection error (distorted px) of X in each masked view; mean over them."""
    total = 0.0
    n = 0
    for c in range(R.shape[0]):
        err[c] = -1.0
        if not mask[c]:
            continue
        _project_kernel(X.reshape(1, 3), R[c], t[c], K[c], dist[c], proj)
        du = proj[0, 0] - uv_raw[c, m, 0]
        dv = proj[0, 1] - uv_raw[c, m, 1]
        e = np.sqrt(du * du + dv * dv)
        if not np.isfinite(e):
            e = 1e30
        err[c] = e
        total += e
        n += 1
    return total / n


@njit(cache=True)
def _triangulate_kernel(
    uv, uv_raw, w, P, R, t, K, dist, excl_thr, min_views, max_err, homogeneous, out_X, out_err, out_used
):  # pragma: no cover - compiled
    """uv, uv_raw (C, M, 2) px; w (C, M) weights (0 = ignore); P (C, 3, 4); R (C, 3, 3);
    t (C, 3); K (C, 3, 3); dist (C, 5) -> out_X (M, 3) m, out_err (M,) px, out_used (C, M).

    Exclusion is greedy leave-one-out: while the mean error is above ``excl_thr`` and more than
    ``min_views`` views remain, the view whose removal leaves the smallest mean error is dropped.
    (Dropping the view with the largest residual is not enough: a least-squares fit spreads one
    bad view's error over the good ones, and the largest residual is then often a good view.)
    """
    C = uv.shape[0]
    mask = np.zeros(C, dtype=np.bool_)
    trial = np.zeros(C, dtype=np.bool_)
    err = np.empty(C)
    proj = np.empty((1, 2))
    X = np.empty(3)
    Xt = np.empty(3)
    M = np.empty((4, 4))
    for m in range(uv.shape[1]):
        n = 0
        for c in range(C):
            mask[c] = w[c, m] > 0.0
            n += mask[c]
        ok = False
        mean_err = np.nan
        if n >= 2 and _solve_point(uv, w, P, mask, m, X, homogeneous, M):
            ok = True
            mean_err = _view_errors(X, uv_raw, R, t, K, dist, mask, m, proj, err)
            while mean_err > excl_thr and n > min_views:
                best = -1
                best_err = np.inf
                for c in range(C):
                    if not mask[c]:
                        continue
                    trial[:] = mask
                    trial[c] = False
                    if _solve_point(uv, w, P, trial, m, Xt, homogeneous, M):
                        e = _view_errors(Xt, uv_raw, R, t, K, dist, trial, m, proj, err)
                        if e < best_err:
                            best_err = e
                            best = c
                if best < 0:
                    break
                mask[best] = False
                n -= 1
                _solve_point(uv, w, P, mask, m, X, homogeneous, M)
                mean_err = best_err
        if ok and mean_err <= max_err:
            out_X[m, 0] = X[0]
            out_X[m, 1] = X[1]
            out_X[m, 2] = X[2]
            out_err[m] = mean_err
            for c in range(C):
                out_used[c, m] = mask[c]
        else:
            out_X[m, 0] = np.nan
            out_X[m, 1] = np.nan
            out_X[m, 2] = np.nan
            out_err[m] = np.nan
            for c in range(C):
                out_used[c, m] = False


@njit(cache=True)
def _prepare_kernel(kp, min_score, K, dist, undistort, n_iter, uv, uv_raw, w):  # pragma: no cover
    """kp (C, M, 3) px, px, score -> uv (C, M, 2) undistorted px, uv_raw (C, M, 2), w (C, M)."""
    for c in range(kp.shape[0]):
        for m in range(kp.shape[1]):
            x = kp[c, m, 0]
            y = kp[c, m, 1]
            s = kp[c, m, 2]
            if np.isfinite(x) and np.isfinite(y) and np.isfinite(s) and s >= min_score and s > 0.0:
                w[c, m] = s
                uv_raw[c, m, 0] = x
                uv_raw[c, m, 1] = y
            else:
                w[c, m] = 0.0
                uv_raw[c, m, 0] = 0.0
                uv_raw[c, m, 1] = 0.0
        if undistort:
            _undistort_kernel(uv_raw[c], K[c], dist[c], n_iter, uv[c])
        else:
            uv[c] = uv_raw[c]


class Triangulator:
    """Triangulates keypoints seen by the cameras of one rig; rig arrays are prepared once.

    Call with 2D keypoints ``(C, *S, 3)`` = x_px, y_px, score in distorted pixels, cameras in rig
    order (S is e.g. (K,) or (N, K)); missing views have score 0 (or NaN coordinates).
    """

    def __init__(self, rig: Rig, settings: TriangulationSettings = TriangulationSettings()):
        if any(c.fisheye for c in rig):
            raise ValueError("fisheye cameras are not supported by the triangulator yet")
        self.rig = rig
        self.settings = settings
        self._P = np.ascontiguousarray(rig.projection_matrices())
        self._R = np.ascontiguousarray(np.stack([c.R for c in rig]))
        self._t = np.ascontiguousarray(np.stack([c.tvec for c in rig]))
        self._K = np.ascontiguousarray(np.stack([c.K for c in rig]))
        self._dist = np.ascontiguousarray(np.stack([c.dist for c in rig]))
        if not settings.undistort:  # treat every lens as an ideal pinhole, as Pose2Sim does by default
            self._dist = np.zeros_like(self._dist)

    def __call__(self, keypoints: np.ndarray) -> TriangulationResult:
        """keypoints (C, *S, 3) -> TriangulationResult for shape S."""
        kp = np.asarray(keypoints)
        C = len(self.rig)
        if kp.ndim < 2 or kp.shape[0] != C or kp.shape[-1] != 3:
            raise ValueError(f"keypoints must be (C={C}, ..., 3), got shape {kp.shape}")
        S = kp.shape[1:-1]
        flat = np.ascontiguousarray(kp.reshape(C, -1, 3), dtype=np.float64)
        M = flat.shape[1]
        uv = np.empty((C, M, 2))
        uv_raw = np.empty((C, M, 2))
        w = np.empty((C, M))
        s = self.settings
        _prepare_kernel(flat, float(s.min_score), self._K, self._dist, s.undistort, UNDISTORT_ITERATIONS, uv, uv_raw, w)
        X = np.empty((M, 3))
        err = np.empty(M)
        used = np.empty((C, M), dtype=np.bool_)
        _triangulate_kernel(
            uv, uv_raw, w, self._P, self._R, self._t, self._K, self._dist,
            float(s.exclusion_threshold_px), int(s.min_views), float(s.max_error_px),
            s.dlt == "homogeneous", X, err, used,
        )
        return TriangulationResult(X.reshape(S + (3,)), err.reshape(S), used.reshape((C,) + S))


def triangulate(rig: Rig, keypoints: np.ndarray, settings: TriangulationSettings = TriangulationSettings()) -> TriangulationResult:
    """One-shot helper: ``Triangulator(rig, settings)(keypoints)``; keypoints (C, *S, 3) px."""
    return Triangulator(rig, settings)(keypoints)
