"""Bundle adjustment of the people-based calibration (step 3 of :mod:`rtkin.calibrate.people`).

All camera poses (the reference camera's pose is held fixed; optionally one
focal-length factor per camera) and all 3D points: ``scipy.optimize.least_squares(method="trf",
loss="soft_l1", f_scale=2.5 px, x_scale="jac")`` with an analytic sparse Jacobian (from
``cv2.projectPoints``; finite differences on the sparsity pattern when a camera has skew),
residuals in distorted pixels through OpenCV's pinhole + distortion model. Observations above
``max(outlier_px, outlier_factor * median)`` are then dropped and the adjustment repeated.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.optimize import least_squares
from scipy.sparse import coo_matrix

from rtkin.calibrate.errors import NotEnoughDataError
from rtkin.core.calibration import Camera, rodrigues


# ============================================================================ bundle adjustment


def _rotate(X, rv):
    """Rotate points X (n, 3) by rotation vectors rv (n, 3) (Rodrigues)."""
    theta = np.linalg.norm(rv, axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        k = np.where(theta > 0, rv / theta, 0.0)
    cos, sin = np.cos(theta), np.sin(theta)
    dot = np.sum(X * k, axis=1, keepdims=True)
    return cos * X + sin * np.cross(k, X) + dot * (1.0 - cos) * k


def _project_obs(X, rv, tv, Kc, dc, fs):
    """Per observation: points (n, 3), poses, K (n, 3, 3), dist (n, 5), focal factors (n,) -> (n, 2) px."""
    Xc = _rotate(X, rv) + tv
    z = np.where(Xc[:, 2] > 1e-6, Xc[:, 2], 1e-6)
    x, y = Xc[:, 0] / z, Xc[:, 1] / z
    k1, k2, p1, p2, k3 = dc.T
    r2 = x * x + y * y
    radial = 1.0 + r2 * (k1 + r2 * (k2 + r2 * k3))
    xd = x * radial + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x)
    yd = y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y
    u = fs * (Kc[:, 0, 0] * xd + Kc[:, 0, 1] * yd) + Kc[:, 0, 2]
    v = fs * Kc[:, 1, 1] * yd + Kc[:, 1, 2]
    return np.column_stack([u, v])


class _BAProblem:
    """Parameters: poses of the free cameras (6 each), [focal log-factors (C)], points (N, 3)."""

    def __init__(self, cams, cam_idx, pt_idx, uv, fixed, refine_focal):
        self.C = len(cams)
        self.cam_idx, self.pt_idx, self.uv = cam_idx, pt_idx, uv
        self.N = int(pt_idx.max()) + 1
        active = np.zeros(self.C, bool)
        active[cam_idx] = True
        self.free = np.array([c for c in range(self.C) if c != fixed and active[c]], dtype=int)
        self.slot = np.full(self.C, -1)
        self.slot[self.free] = np.arange(self.free.size)
        self.refine_focal = refine_focal
        self.n_pose = 6 * self.free.size
        self.n_cam = self.n_pose + (self.C if refine_focal else 0)
        self.K = np.stack([c.K for c in cams])[cam_idx]
        self.dist = np.stack([c.dist for c in cams])[cam_idx]

    def pack(self, rvecs, tvecs, logf, X):
        parts = [np.column_stack([rvecs[self.free], tvecs[self.free]]).ravel()]
        if self.refine_focal:
            parts.append(logf)
        return np.concatenate(parts + [X.ravel()])

    def unpack(self, p, rvecs0, tvecs0):
        rv, tv = rvecs0.copy(), tvecs0.copy()
        pose = p[: self.n_pose].reshape(-1, 6)
        rv[self.free], tv[self.free] = pose[:, :3], pose[:, 3:]
        logf = p[self.n_pose: self.n_cam] if self.refine_focal else np.zeros(self.C)
        return rv, tv, logf, p[self.n_cam:].reshape(self.N, 3)

    def residuals(self, p, rvecs0, tvecs0):
        rv, tv, logf, X = self.unpack(p, rvecs0, tvecs0)
        c = self.cam_idx
        proj = _project_obs(X[self.pt_idx], rv[c], tv[c], self.K, self.dist, np.exp(logf[c]))
        return (proj - self.uv).ravel()

    def _layout(self):
        """Rows and columns (n, 2, 10) of each observation's Jacobian entries (6 pose, 1 focal,
        3 point) and the mask of those that exist (fixed camera, focal not refined)."""
        n = self.cam_idx.size
        slot = self.slot[self.cam_idx]
        rows = np.broadcast_to((2 * np.arange(n)[:, None] + np.arange(2))[:, :, None], (n, 2, 10))
        cols = np.zeros((n, 2, 10), dtype=np.int64)
        cols[:, :, :6] = (6 * slot[:, None] + np.arange(6))[:, None, :]
        cols[:, :, 6] = (self.n_pose + self.cam_idx)[:, None]
        cols[:, :, 7:] = (self.n_cam + 3 * self.pt_idx[:, None] + np.arange(3))[:, None, :]
        mask = np.ones((n, 2, 10), bool)
        mask[slot < 0, :, :6] = False
        mask[:, :, 6] = self.refine_focal
        return rows, cols, mask

    def sparsity(self):
        """Sparse (2n, n_params) pattern of the Jacobian (for finite differences)."""
        rows, cols, mask = self._layout()
        shape = (2 * self.cam_idx.size, self.n_cam + 3 * self.N)
        return coo_matrix((np.ones(int(mask.sum())), (rows[mask], cols[mask])), shape=shape).tocsr()

    def jacobian(self, p, rvecs0, tvecs0):
        """Analytic sparse Jacobian from ``cv2.projectPoints`` (pinhole + distortion, no skew):
        d/d(rvec, tvec) as given, d/dX = d/dtvec @ R, d/dlog f = fx d/dfx + fy d/dfy."""
        rv, tv, logf, X = self.unpack(p, rvecs0, tvecs0)
        if not hasattr(self, "_lay"):
            rows, cols, mask = self._layout()
            self._lay = (rows[mask], cols[mask], mask)
            self._by_cam = [(c, np.flatnonzero(self.cam_idx == c)) for c in range(self.C)]
        rows, cols, mask = self._lay
        vals = np.empty(mask.shape)
        for c, idx in self._by_cam:
            if idx.size == 0:
                continue
            Kc = self.K[idx[0]].copy()
            Kc[0, 0] *= np.exp(logf[c])
            Kc[1, 1] *= np.exp(logf[c])
            _, J = cv2.projectPoints(X[self.pt_idx[idx]], rv[c], tv[c], Kc, self.dist[idx[0]])
            J = J.reshape(idx.size, 2, -1)
            vals[idx, :, :6] = J[:, :, :6]
            vals[idx, :, 6] = J[:, :, 6] * Kc[0, 0] + J[:, :, 7] * Kc[1, 1]
            vals[idx, :, 7:] = J[:, :, 3:6] @ rodrigues(rv[c])
        shape = (2 * self.cam_idx.size, self.n_cam + 3 * self.N)
        return coo_matrix((vals[mask], (rows, cols)), shape=shape).tocsr()


def _run_ba(cams, cam_idx, pt_idx, uv, rvecs, tvecs, logf, X, fixed, s, max_nfev):
    prob = _BAProblem(cams, cam_idx, pt_idx, uv, fixed, s.refine_focal)
    skew = any(c.K[0, 1] != 0.0 for c in cams)  # cv2.projectPoints ignores skew: differentiate numerically
    jac = {"jac_sparsity": prob.sparsity()} if skew else {"jac": prob.jacobian}
    res = least_squares(prob.residuals, prob.pack(rvecs, tvecs, logf, X), method="trf", loss=s.loss,
                        f_scale=s.f_scale_px, x_scale="jac", max_nfev=max_nfev, ftol=1e-6, xtol=1e-8,
                        args=(rvecs, tvecs), **jac)
    rv, tv, lf, Xo = prob.unpack(res.x, rvecs, tvecs)
    r = np.linalg.norm(res.fun.reshape(-1, 2), axis=1)
    return rv, tv, lf, Xo, r


def _observations(ok):
    """(C, M) usable-observation mask -> camera index, original point index, compact point index
    (points seen at least twice) of each observation, and the number of points."""
    ok = ok & (ok.sum(0) >= 2)[None]
    cam_idx, m = np.nonzero(ok)
    pts, pt_idx = np.unique(m, return_inverse=True)
    return cam_idx, m, pt_idx, pts


@dataclass(frozen=True, eq=False)
class _BAResult:
    rvecs: np.ndarray  # (C, 3)
    tvecs: np.ndarray  # (C, 3)
    focal_scale: np.ndarray  # (C,)
    residuals: np.ndarray  # (n,) px, observations kept in the last pass
    cam_index: np.ndarray  # (n,) camera of each residual
    n_rejected: np.ndarray  # (C,) observations dropped as outliers
    n_points: int


def _adjust(obs, used, X, cams, rvecs, tvecs, ref, s, passes, max_nfev) -> _BAResult:
    """Robust bundle adjustment of the cameras with observations in ``used`` (C, M) and of the points
    X (M, 3); between passes, observations above the outlier threshold are dropped."""
    C = len(cams)
    cam_idx, m, pt_idx, pts = _observations(used & np.isfinite(X).all(-1)[None])
    uv = obs[cam_idx, m, :2]
    logf = np.zeros(C)
    Xp = X[pts]
    n_rejected = np.zeros(C, dtype=int)
    for i in range(passes):
        rvecs, tvecs, logf, Xp, r = _run_ba(cams, cam_idx, pt_idx, uv, rvecs, tvecs, logf, Xp, ref, s, max_nfev)
        if i == passes - 1:
            break
        thr = max(s.outlier_px, s.outlier_factor * float(np.median(r)))
        inl = r <= thr
        n_rejected += np.bincount(cam_idx[~inl], minlength=C)
        mask = np.zeros((C, pts.size), bool)
        mask[cam_idx[inl], pt_idx[inl]] = True
        cam_idx, m2, pt_idx, keep = _observations(mask)
        for c in np.unique(np.nonzero(used)[0]):
            if not np.any(cam_idx == c):
                raise NotEnoughDataError(f"camera {cams[c].name!r}: every observation was rejected as an outlier")
        uv = obs[cam_idx, pts[m2], :2]
        Xp, pts = Xp[keep], pts[keep]
    return _BAResult(rvecs, tvecs, np.exp(logf), r, cam_idx, n_rejected, int(pts.size))


def _with_focal(cam: Camera, f: float) -> Camera:
    if f == 1.0:
        return cam
    K = cam.K.copy()
    K[0, 0] *= f
    K[1, 1] *= f
    K[0, 1] *= f
    return Camera(cam.name, cam.size, K, cam.dist[: cam.n_dist], cam.rvec, cam.tvec)
