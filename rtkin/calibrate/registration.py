"""Initial camera poses of the people-based calibration (step 2 of :mod:`rtkin.calibrate.people`):
essential matrix of the first pair, resection of the other cameras, triangulation of the points.

Incremental, as in structure-from-motion: the reference camera (given, or the
one sharing most observations) and the partner whose essential matrix
(``cv2.findEssentialMat``, RANSAC on normalised undistorted points, ``cv2.recoverPose``) has most
inliers with a usable triangulation angle fix the first frame and unit of length (baseline 1).
Every further camera is *resected* from the points triangulated so far (``cv2.solvePnPRansac``
on distorted pixels with the lens model): that puts it in the common frame at the common scale
without chaining relative poses or matching pair scales. After each addition the registered
cameras get a quick robust adjustment and the points are re-triangulated with robust view
exclusion (:class:`~rtkin.reconstruct.triangulation.Triangulator`). Cameras are added in order of how many
triangulated points they see.
"""

from __future__ import annotations

import cv2
import numpy as np

from rtkin.calibrate.bundle import _adjust
from rtkin.calibrate.errors import NotEnoughDataError
from rtkin.core.calibration import Camera, Rig, rodrigues_inv
from rtkin.reconstruct.triangulation import TriangulationSettings, Triangulator


# ============================================================================ initialisation


def _normalise(uv, cam: Camera):
    """(M, 2) distorted px -> (M, 2) normalised undistorted coordinates (NaN stays NaN)."""
    und = cam.undistort(np.nan_to_num(uv))
    x = (und[:, 0] - cam.K[0, 2] - cam.K[0, 1] * (und[:, 1] - cam.K[1, 2]) / cam.K[1, 1]) / cam.K[0, 0]
    y = (und[:, 1] - cam.K[1, 2]) / cam.K[1, 1]
    out = np.stack([x, y], -1)
    out[~np.isfinite(uv).all(-1)] = np.nan
    return out


def _essential(xa, xb, thr):
    """Relative pose b<-a from normalised points (n, 2): (R, t unit, inlier mask) or None."""
    if len(xa) < 8:
        return None
    E, mask = cv2.findEssentialMat(xa, xb, np.eye(3), method=cv2.RANSAC, prob=0.999, threshold=thr)
    if E is None or mask is None:
        return None
    E = E[:3]
    n, R, t, mask2 = cv2.recoverPose(E, xa, xb, np.eye(3), mask=mask.copy())
    if n < 8:
        return None
    return R, t.ravel(), mask2.ravel() > 0


def _initial_pair(obs, vis, cams, names, s):
    """Reference camera and the partner with the best essential matrix: (ref, j, R, t), X_j = R X_ref + t."""
    shared = np.einsum("im,jm->ij", vis.astype(np.int64), vis.astype(np.int64))  # (C, C) common points
    np.fill_diagonal(shared, 0)
    ref = names.index(s.reference_camera) if s.reference_camera else int(np.argmax(shared.sum(1)))
    focal = np.mean([c.focal_px for c in cams])
    x_ref = _normalise(obs[ref, :, :2], cams[ref])
    best = None
    for j in np.argsort(-shared[ref]):
        if j == ref or shared[ref, j] < s.min_shared:
            continue
        m = vis[ref] & vis[j]
        x_j = _normalise(obs[j, m, :2], cams[j])
        pose = _essential(x_ref[m], x_j, s.ransac_px / focal)
        if pose is None:
            continue
        R, t, inl = pose
        # most inliers, unless the rays are nearly parallel (a short baseline)
        score = inl.sum() * min(1.0, _median_parallax_deg(x_ref[m][inl], x_j[inl], R) / 3.0)
        if best is None or score > best[0]:
            best = (score, int(j), R, t)
    if best is None:
        raise NotEnoughDataError(
            f"no camera shares >= {s.min_shared} points with a usable relative pose with the reference "
            f"camera {names[ref]!r} (shared points: {dict(zip(names, shared[ref].tolist()))})")
    return ref, best[1], best[2], best[3]


def _initialise(obs, vis, cams, names, s):
    """Initial poses (C, 3) in the reference camera's frame, unit = first baseline.

    Returns (ref, registration order, rvecs, tvecs, points (M, 3), views used (C, M))."""
    C = len(cams)
    ref, j, R, t = _initial_pair(obs, vis, cams, names, s)
    rvecs, tvecs = np.zeros((C, 3)), np.zeros((C, 3))
    rvecs[j], tvecs[j] = rodrigues_inv(R), t
    registered = np.zeros(C, bool)
    registered[[ref, j]] = True
    order = [ref, j]
    X, used = _triangulate(cams, rvecs, tvecs, obs, vis, registered, s)
    while True:
        # a quick robust adjustment of what is registered keeps the points good enough to resect
        ba = _adjust(obs, used, X, cams, rvecs, tvecs, ref, s, passes=1, max_nfev=min(s.max_nfev, 15))
        rvecs, tvecs = ba.rvecs, ba.tvecs
        X, used = _triangulate(cams, rvecs, tvecs, obs, vis, registered, s)
        if registered.all():
            return ref, order, rvecs, tvecs, X, used
        seen = vis & np.isfinite(X).all(-1)[None]  # (C, M) observations of triangulated points
        c = int(np.argmax(np.where(registered, -1, seen.sum(1))))
        pose = None
        for factor in (2.0, 4.0, 8.0):  # widen the threshold if the points are still rough
            pose = pose or _resect(cams[c], X[seen[c]], obs[c, seen[c], :2], factor * s.ransac_px)
        if pose is None:
            raise NotEnoughDataError(
                f"camera {names[c]!r} sees only {int(seen[c].sum())} of the points triangulated by "
                f"{[names[i] for i in order]} and no camera pose agrees with them (>= 12 needed)")
        rvecs[c], tvecs[c] = pose
        registered[c] = True
        order.append(c)
        X, used = _triangulate(cams, rvecs, tvecs, obs, vis, registered, s)


def _median_parallax_deg(xa, xb, R):
    """Median angle between the two rays of each correspondence (camera a at the origin), deg."""
    ra = np.column_stack([xa, np.ones(len(xa))])
    rb = np.column_stack([xb, np.ones(len(xb))]) @ R  # R.T @ ray, in frame a
    cos = np.sum(ra * rb, 1) / np.linalg.norm(ra, axis=1) / np.linalg.norm(rb, axis=1)
    return float(np.degrees(np.median(np.arccos(np.clip(cos, -1.0, 1.0))))) if len(ra) else 0.0


def _resect(cam: Camera, X, uv, threshold_px):
    """Pose (rvec, tvec) of one camera from 3D points (n, 3) and their distorted pixels (n, 2)."""
    if len(X) < 12:
        return None
    X = np.ascontiguousarray(X, dtype=np.float64)
    uv = np.ascontiguousarray(uv, dtype=np.float64)
    dist = np.ascontiguousarray(cam.dist)
    ok, rvec, tvec, inl = cv2.solvePnPRansac(X, uv, cam.K, dist, iterationsCount=2000,
                                             reprojectionError=threshold_px, confidence=0.999,
                                             flags=cv2.SOLVEPNP_EPNP)
    if not ok or inl is None or len(inl) < max(12, 0.3 * len(X)):
        return None
    inl = inl.ravel()
    rvec, tvec = cv2.solvePnPRefineLM(X[inl], uv[inl], cam.K, dist, rvec, tvec)
    return rvec.ravel(), tvec.ravel()


def _make_rig(cams, rvecs, tvecs, subset=None) -> Rig:
    idx = range(len(cams)) if subset is None else subset
    return Rig(tuple(Camera(cams[i].name, cams[i].size, cams[i].K, cams[i].dist[: cams[i].n_dist],
                            rvecs[i], tvecs[i]) for i in idx))


def _triangulate(cams, rvecs, tvecs, obs, vis, registered, s):
    """Points (M, 3) from the registered views (NaN if not triangulated) and (C, M) views used."""
    idx = np.flatnonzero(registered)
    kp = np.where(vis[idx, :, None], obs[idx], 0.0)
    tri = Triangulator(_make_rig(cams, rvecs, tvecs, idx),
                       TriangulationSettings(min_score=s.min_score, exclusion_threshold_px=3 * s.ransac_px,
                                             max_error_px=max(25.0, 6 * s.ransac_px)))
    res = tri(kp)
    used = np.zeros(vis.shape, bool)
    used[idx] = res.used
    return res.points, used
