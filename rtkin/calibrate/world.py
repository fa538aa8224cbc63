"""The world frame fixed from the person's body (step 4 of :mod:`rtkin.calibrate.people`): up from the
floor of the feet or the body's vertical, floor height, origin, forward axis, scale from the stature or a distance.

World frame, from the person (``fix_world=True``; all frames triangulated with the adjusted rig),
:func:`body_frame`:

- **z up**: the normal of the floor plane through the lowest foot keypoint (ankle, heel, toes)
  of each frame -- robust plane fit, iterated with the new normal -- when those points spread
  over the floor (std >= 3 % of stature along the second floor axis), fit a plane well
  (residual std <= 5 % of that spread) and agree with the body's vertical within 25 deg;
  otherwise the body's vertical: the median direction from the mid-ankle to the mid-shoulder.
  (COCO_17 has ankles only, whose height changes with posture: its floor is less exact.)
- **floor** (z = 0): median over frames of the lowest foot keypoint's height minus its height
  above the floor in the generic Pose2Sim model (ankle 8.1 cm, heel and toes 1.2 cm at a
  1.709 m stature, scaled with the subject's stature).
- **origin**: the floor point below the mean mid-hip position over the recording.
- **x**: the principal axis of the mid-hip path projected on the floor, signed so that the
  subject faces +x on average; when the path is nearly isotropic (largest variance < 2x the
  second), the mean facing direction instead if it is clear (mean unit facing >= 0.3).
  **y** = z x x. The report says which was used.
- **scale**: ``known_distance = (keypoint_a, keypoint_b, metres)`` uses the median distance
  between two keypoints; ``height_m`` uses a stature estimate from bone lengths (median over
  frames of shank, thigh, mid-hip -> mid-shoulder, mid-shoulder -> face keypoints), in ratio to
  the same lengths of the generic Pose2Sim model whose stature is taken as 1.709 m (its HALPE
  ``Head`` keypoint standing). Without either, the unit stays the initial baseline (arbitrary).

``fix_world=False`` (or a skeleton without hips, shoulders, knees and ankles) keeps the
reference camera's frame (reference camera at the origin, identity rotation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

from rtkin.calibrate.errors import NotEnoughDataError
from rtkin.core.calibration import Camera, Rig, rodrigues_inv

__all__ = [
    "BodyFrame",
    "body_frame",
    "GENERIC_STATURE_M",
]


#: Stature of the generic Pose2Sim model (height of its HALPE ``Head`` keypoint standing), m.
GENERIC_STATURE_M = 1.709

# Lengths of the generic Pose2Sim model standing (the virtual subject, ``rtkin.sim.virtual``), m.
_GENERIC_SEGMENTS = {
    "shank": 0.4078,  # knee -> ankle (each side)
    "thigh": 0.3834,  # hip -> knee (each side)
    "trunk": 0.5315,  # mid-hip -> mid-shoulder
    "Nose": 0.2038,  # mid-shoulder -> face keypoint
    "LEye": 0.2224,
    "REye": 0.2224,
    "LEar": 0.1914,
    "REar": 0.1914,
}
# Height above the floor of a foot keypoint when it is the lowest one, as a fraction of stature:
# the ankle standing, heel and toes at the sole (generic Pose2Sim model, rtkin.sim.virtual).
_CONTACT = {"Ankle": 0.0806, "Heel": 0.012, "BigToe": 0.012, "SmallToe": 0.012}
_SOLE_OFFSET = {side + k: v / GENERIC_STATURE_M for k, v in _CONTACT.items() for side in "LR"}
_FACE = ("Nose", "LEye", "REye", "LEar", "REar")


# ============================================================================ world frame


@dataclass(frozen=True, eq=False)
class BodyFrame:
    """A world frame fixed from a person (module docstring): ``X_world = scale * R @ (X - origin)``.

    Attributes:
        R: (3, 3) rotation from the input frame to the world (rows: world x, y, z in input coordinates).
        origin: (3,) world origin in input coordinates.
        scale: world units (m) per input unit.
        up_source: ``floor`` (feet plane), ``body`` (mid-ankle -> mid-shoulder) or ``camera`` (not fixed).
        scale_source: ``height``, ``distance`` or ``none``.
        stature: the subject's estimated stature in input units (NaN if not estimated).
        floor_tilt_deg: angle between the feet plane's normal and the body vertical, deg (NaN if no plane).
        description: the convention in words.
    """

    R: np.ndarray
    origin: np.ndarray
    scale: float
    up_source: str = "camera"
    scale_source: str = "none"
    stature: float = float("nan")
    floor_tilt_deg: float = float("nan")
    description: str = "reference camera frame (not fixed from the person)"

    @classmethod
    def identity(cls) -> "BodyFrame":
        return cls(np.eye(3), np.zeros(3), 1.0)

    def apply_points(self, X: np.ndarray) -> np.ndarray:
        """Points (..., 3) in input coordinates -> world (..., 3)."""
        return self.scale * (np.asarray(X, dtype=float) - self.origin) @ self.R.T

    def apply(self, rig: Rig) -> Rig:
        """The same rig with extrinsics world->camera in this world."""
        return _transform_rig(rig, self.R, self.origin, self.scale)


def body_frame(points: np.ndarray, keypoint_names: Sequence[str], height_m: float | None = None,
               known_distance: tuple[str, str, float] | None = None) -> BodyFrame:
    """The body-defined world frame (module docstring) of a triangulated person.

    Args:
        points: (T, K, 3) keypoints over time (any unit, NaN where missing).
        keypoint_names: (K,) names (needs LHip, RHip, LShoulder, RShoulder, LKnee, RKnee, LAnkle, RAnkle).
        height_m: the subject's stature, m: sets the scale. known_distance: ``(a, b, metres)``
            sets it from the median distance between two keypoints instead. Neither: scale 1.
    """
    X = np.asarray(points, dtype=float)
    names = tuple(keypoint_names)
    if X.ndim != 3 or X.shape[1:] != (len(names), 3):
        raise ValueError(f"points must be (T, K={len(names)}, 3), got shape {X.shape}")
    return _fix_world(X, names, height_m, known_distance)


def _transform_rig(rig: Rig, Rw, origin, scale) -> Rig:
    """World change X_new = scale * Rw @ (X_old - origin); returns the rig in the new world."""
    cams = []
    for c in rig:
        R = c.R @ Rw.T
        t = scale * (c.R @ origin + c.tvec)
        cams.append(Camera(c.name, c.size, c.K, c.dist[: c.n_dist], rodrigues_inv(R), t, c.fisheye))
    return Rig(tuple(cams))


def _pt(X, names, name):
    return X[:, names.index(name)] if name in names else np.full(X.shape[:1] + (3,), np.nan)


def _mid(X, names, a, b):
    return (_pt(X, names, a) + _pt(X, names, b)) / 2.0


def _fix_world(X, names, height_m, known_distance) -> BodyFrame:
    """World frame from the triangulated person X (T, K, 3) (initial units); see module docstring."""
    need = ("LHip", "RHip", "LShoulder", "RShoulder", "LKnee", "RKnee", "LAnkle", "RAnkle")
    if any(n not in names for n in need):
        w = BodyFrame.identity()
        if known_distance is not None:
            w = replace(w, scale=_distance_scale(X, names, known_distance), scale_source="distance")
        return replace(w, description=f"input frame (the skeleton lacks {[n for n in need if n not in names]})")
    stature_u = _stature(X, names)
    body_up = _body_up(X, names)
    up, tilt, up_source = body_up, float("nan"), "body"
    floor = _floor_fit(X, names, body_up, stature_u)
    if floor is not None:
        n = floor
        tilt = _angle_between(n, body_up)
        if tilt < 25.0:
            up, up_source = n, "floor"
    floor_h = _floor_height(X, names, up, stature_u)
    hip = _mid(X, names, "LHip", "RHip")
    hip = hip[np.isfinite(hip).all(1)]
    if len(hip) < 5:
        raise NotEnoughDataError(f"the hips were triangulated in only {len(hip)} frames; the world needs more")
    mean_hip = hip.mean(0)
    origin = mean_hip - (mean_hip @ up - floor_h) * up
    x, x_source = _forward_axis(X, names, up, hip)
    y = np.cross(up, x)
    Rw = np.stack([x, y, up])
    if known_distance is not None:
        scale, source = _distance_scale(X, names, known_distance), "distance"
    elif height_m is not None:
        scale, source = float(height_m) / stature_u, "height"
    else:
        scale, source = 1.0, "none"
    scale_text = {"distance": "a known keypoint distance", "height": "the stature", "none": "nothing (arbitrary unit)"}
    up_text = "the floor plane of the feet" if up_source == "floor" else "the body vertical"
    desc = (f"z up from {up_text}, origin on the floor below the mean hip, x along {x_source}, "
            f"scale from {scale_text[source]}")
    return BodyFrame(Rw, origin, scale, up_source, source, stature_u, tilt, desc)


def _stature(X, names) -> float:
    """Stature in the units of X (T, K, 3): median bone lengths vs the generic model's."""
    def med(a, b):
        d = np.linalg.norm(a - b, axis=-1)
        d = d[np.isfinite(d)]
        return float(np.median(d)) if d.size >= 5 else float("nan")

    measured, model = [], []
    for side in "LR":
        for seg, (a, b) in (("shank", ("Knee", "Ankle")), ("thigh", ("Hip", "Knee"))):
            if side + a in names and side + b in names:
                measured.append(med(_pt(X, names, side + a), _pt(X, names, side + b)))
                model.append(_GENERIC_SEGMENTS[seg])
    sh = _mid(X, names, "LShoulder", "RShoulder")
    measured.append(med(_mid(X, names, "LHip", "RHip"), sh))
    model.append(_GENERIC_SEGMENTS["trunk"])
    for f in _FACE:
        if f in names:
            measured.append(med(sh, _pt(X, names, f)))
            model.append(_GENERIC_SEGMENTS[f])
    measured, model = np.array(measured), np.array(model)
    ok = np.isfinite(measured)
    if not ok.any():
        raise NotEnoughDataError("the person's bones could not be measured (too few triangulated keypoints)")
    return GENERIC_STATURE_M * float(measured[ok].sum() / model[ok].sum())


def _distance_scale(X, names, known_distance) -> float:
    a, b, metres = known_distance
    for n in (a, b):
        if n not in names:
            raise ValueError(f"known_distance keypoint {n!r} is not one of {list(names)}")
    d = np.linalg.norm(_pt(X, names, a) - _pt(X, names, b), axis=-1)
    d = d[np.isfinite(d)]
    if d.size < 5:
        raise NotEnoughDataError(f"{a}-{b} triangulated in only {d.size} frames")
    return float(metres) / float(np.median(d))


def _body_up(X, names):
    v = _mid(X, names, "LShoulder", "RShoulder") - _mid(X, names, "LAnkle", "RAnkle")
    v = v[np.isfinite(v).all(1)]
    if len(v) < 5:
        raise NotEnoughDataError("too few frames with shoulders and ankles triangulated to find the vertical")
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    u = np.median(v, axis=0)
    return u / np.linalg.norm(u)


def _lowest_foot(X, names, up):
    """Per frame the lowest foot keypoint along ``up``: positions (T, 3) and sole offsets (T,) as a
    fraction of stature (NaN where no foot keypoint is triangulated)."""
    feet = [k for k in _SOLE_OFFSET if k in names]
    P = np.stack([_pt(X, names, k) for k in feet], axis=1)  # (T, F, 3)
    h = np.where(np.isfinite(P).all(-1), P @ up, np.inf)
    low = np.argmin(h, axis=1)
    rows = np.arange(len(P))
    off = np.array([_SOLE_OFFSET[k] for k in feet])[low]
    ok = np.isfinite(h[rows, low])
    return np.where(ok[:, None], P[rows, low], np.nan), np.where(ok, off, np.nan)


def _floor_height(X, names, up, stature_u) -> float:
    """Height of the floor along ``up``: median over frames of the lowest foot keypoint's height
    minus its sole offset."""
    Q, off = _lowest_foot(X, names, up)
    f = Q @ up - off * stature_u
    f = f[np.isfinite(f)]
    if f.size < 5:
        raise NotEnoughDataError("too few frames with a foot keypoint triangulated to find the floor")
    return float(np.median(f))


def _floor_fit(X, names, up0, stature_u):
    """Floor normal: plane through the lowest foot keypoint of each frame (robust, iterated with
    the new normal). None when those points do not spread over the floor (second std < 3 % of
    stature) or fit a plane badly (residual std > 5 % of that spread)."""
    up = up0
    for _ in range(5):
        Q, _off = _lowest_foot(X, names, up)
        Q = Q[np.isfinite(Q).all(1)]
        if len(Q) < 20:
            return None
        r = Q @ up
        for _trim in range(3):  # drop frames far off the current plane (jumps, bad points)
            med = np.median(r)
            mad = 1.4826 * np.median(np.abs(r - med))
            keep = np.abs(r - med) <= 3 * mad + 0.005 * stature_u
            Q, r = Q[keep], r[keep]
        _, S, Vt = np.linalg.svd(Q - Q.mean(0), full_matrices=False)
        n = Vt[2] * np.sign(Vt[2] @ up0)
        if S[1] < 0.03 * stature_u * math.sqrt(len(Q)) or S[2] > 0.05 * S[1]:
            return None
        converged = _angle_between(n, up) < 1e-3
        up = n
        if converged:
            break
    return up


def _forward_axis(X, names, up, hip):
    """Unit x axis on the floor and how it was chosen: the principal axis of the hip path signed by
    the mean facing direction, or that direction itself when the path is nearly isotropic."""
    P = np.eye(3) - np.outer(up, up)
    h = (hip - hip.mean(0)) @ P
    w, V = np.linalg.eigh(h.T @ h / max(len(h), 1))  # ascending; w[0] ~ 0 (the up direction)
    axis, source = V[:, 2], "the hip path"
    left = _pt(X, names, "LHip") - _pt(X, names, "RHip")
    face = np.cross(left, up) @ P
    face = face[np.isfinite(face).all(1)]
    face /= np.maximum(np.linalg.norm(face, axis=1, keepdims=True), 1e-12)
    mean_face = face.mean(0) if len(face) else np.zeros(3)
    if w[2] < 2.0 * w[1] and np.linalg.norm(mean_face) >= 0.3:
        axis, source = mean_face, "the mean facing direction"
    axis = axis @ P
    axis /= np.linalg.norm(axis)
    if axis @ mean_face < 0:
        axis = -axis
    return axis, source


def _angle_between(a, b) -> float:
    return float(np.degrees(np.arccos(np.clip(a @ b / np.linalg.norm(a) / np.linalg.norm(b), -1.0, 1.0))))
