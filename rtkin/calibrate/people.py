"""Rig extrinsics from a person moving through the capture volume (no calibration board): the entry point
:func:`calibrate_from_people`, its settings and report, and :func:`align_rig` (comparison with a reference rig).

Inputs are each camera's intrinsics (K, distortion) and synchronized 2D keypoints of ONE person
per view and frame, ``(C, T, K, 3)`` = x_px, y_px, score in distorted pixels (the caller picks the
person; :func:`rtkin.calibrate.subject.select_subject` does it for views with bystanders). Output is a
:class:`Rig` whose extrinsics are world->camera (OpenCV, ``X_cam = R X_world + t``) in the
*body-defined world* of :mod:`rtkin.calibrate.world`, plus a :class:`PeopleCalibrationReport`.
Nothing is written; a caller writes ``Calib.toml``.

Method
------
1. Observations: keypoints with score >= ``min_score`` (0.6) in every ``frame_step``-th frame (1);
   of the (frame, keypoint) points seen by >= 2 cameras at most ``max_points`` (2000), evenly
   spread over time, enter the adjustment.
2. Initialisation (registration of the cameras one by one): :mod:`rtkin.calibrate.registration`.
3. Bundle adjustment of all camera poses and points: :mod:`rtkin.calibrate.bundle`.
4. World frame from the person (floor, up, origin, x, scale): :mod:`rtkin.calibrate.world`.

Limitations: one person, synchronized views; intrinsics must be right (only focal lengths can be
refined, and only with a well-spread motion); the person must cover a volume (little motion
gives a weak geometry). The world frame needs walking over the floor: without a floor plane
(standing, short clips, or COCO_17 feet that do not spread) z comes from the body's vertical,
good to 0.5-2 deg for walking/squats/arm raises of the virtual subject but 9 deg off on the real
1.7 s Pose2Sim demo clip (a leg raise with up to 34 deg of trunk lean). A body-based stature is
good to a few percent for real people (exact only for the generic model's proportions); use
``known_distance`` for an exact scale. Left/right swaps of the detector are treated as outliers,
not fixed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

from rtkin.calibrate.bundle import _adjust, _with_focal
from rtkin.calibrate.errors import NotEnoughDataError
from rtkin.calibrate.registration import _initialise, _make_rig
from rtkin.calibrate.world import BodyFrame, _distance_scale, _fix_world
from rtkin.core.calibration import Camera, Rig, rodrigues_inv
from rtkin.core.skeletons import get_skeleton
from rtkin.reconstruct.triangulation import TriangulationSettings, Triangulator

__all__ = [
    "PeopleCalibrationSettings",
    "RigAlignment",
    "PeopleCalibrationReport",
    "calibrate_from_people",
    "similarity_transform",
    "align_rig",
]


@dataclass(frozen=True)
class PeopleCalibrationSettings:
    """Defaults of the people-based extrinsic calibration (one place).

    Attributes:
        min_score: keypoints with a lower score are ignored (score units, 0..1).
        min_observations: a camera needs at least this many usable keypoints (all frames).
        min_shared: a camera pair needs at least this many common points for an essential matrix.
        frame_step: use every n-th frame (neighbouring frames add little geometry).
        max_points: at most this many (frame, keypoint) 3D points in the bundle adjustment.
        ransac_px: RANSAC inlier threshold of the essential matrix (resection: 2x, widened up to
            8x if needed), px; about 2-3x the keypoint noise (8 px suits a 3 px virtual noise as
            well as MoveNet on 1920 px frames).
        loss: robust loss of the bundle adjustment (``soft_l1``, ``huber``, ``cauchy``, ``linear``).
        f_scale_px: residual scale of the robust loss, px.
        outlier_px: observations above ``max(outlier_px, outlier_factor * median residual)`` after
            the first adjustment are dropped, px.
        outlier_factor: see ``outlier_px``.
        refine_focal: also adjust one focal-length factor per camera (fx, fy together).
        max_nfev: function evaluations per bundle adjustment (each pass).
        reference_camera: name of the camera that fixes the initial frame (default: the camera
            sharing most observations).
        fix_world: put the rig in the body-defined world frame (:mod:`rtkin.calibrate.world`); else the
            reference camera's frame.
    """

    min_score: float = 0.6
    min_observations: int = 60
    min_shared: int = 30
    frame_step: int = 1
    max_points: int = 2000
    ransac_px: float = 8.0
    loss: str = "soft_l1"
    f_scale_px: float = 2.5
    outlier_px: float = 10.0
    outlier_factor: float = 4.0
    refine_focal: bool = False
    max_nfev: int = 60
    reference_camera: str | None = None
    fix_world: bool = True

    def __post_init__(self) -> None:
        if self.loss not in ("linear", "soft_l1", "huber", "cauchy", "arctan"):
            raise ValueError(f"unknown loss {self.loss!r}")
        if self.frame_step < 1 or self.max_points < 10 or self.min_shared < 8:
            raise ValueError("frame_step >= 1, max_points >= 10 and min_shared >= 8 are required")
        if not (self.ransac_px > 0 and self.f_scale_px > 0 and self.outlier_px > 0):
            raise ValueError("ransac_px, f_scale_px and outlier_px must be > 0 px")


@dataclass(frozen=True, eq=False)
class RigAlignment:
    """A rig compared with a reference rig after aligning camera centres.

    Attributes:
        mode: ``similarity`` (rotation, translation, scale), ``rigid`` (no scale), ``floor``
            (rotation about world z + horizontal translation only: checks up, floor and scale)
            or ``none``.
        scale: scale applied to the rig (1 unless ``similarity``).
        R: (3, 3) rotation applied to the rig's world.
        t: (3,) translation applied after rotation and scale, m.
        centre_error_m: (C,) distance between aligned and reference camera centres, m.
        orientation_error_deg: (C,) angle between aligned and reference camera rotations, deg.
        rig_size_m: max distance between reference camera centres, m.
    """

    mode: str
    scale: float
    R: np.ndarray
    t: np.ndarray
    centre_error_m: np.ndarray
    orientation_error_deg: np.ndarray
    rig_size_m: float

    @property
    def max_centre_error_m(self) -> float:
        return float(np.max(self.centre_error_m))

    @property
    def max_orientation_error_deg(self) -> float:
        return float(np.max(self.orientation_error_deg))


@dataclass(frozen=True, eq=False)
class PeopleCalibrationReport:
    """How well the calibration fits its data.

    Attributes:
        camera_names: (C,) rig order.
        rms_px, median_px: (C,) reprojection error (Euclidean distance between observed and
            reprojected point) of the observations used in the final adjustment, distorted px.
        n_observations: (C,) observations used in the final adjustment per camera.
        n_rejected: (C,) observations rejected as outliers per camera.
        overall_rms_px, overall_median_px: over all cameras, px.
        n_points: 3D points in the adjustment; n_frames: frames they come from.
        reference_camera: camera that fixed the initial frame; registration_order: camera order
            of the initialisation.
        world: how the world frame was fixed (text); up_source: ``floor``, ``body`` or
            ``camera``; scale_source: ``height``, ``distance`` or ``none``.
        metres_per_unit: scale from the initial unit (first baseline) to the world.
        stature_m: the subject's estimated stature in the final world units, m unless
            ``scale_source`` is ``none`` (a check on the scale when it comes from a distance).
        floor_tilt_deg: angle between the floor normal and the body's vertical (NaN if unused).
        focal_scale: (C,) factor applied to the focal lengths (1 unless ``refine_focal``).
        alignment: comparison with a reference rig (``similarity`` mode) when one was given.
        runtime_s: wall time, s.
    """

    camera_names: tuple[str, ...]
    rms_px: np.ndarray
    median_px: np.ndarray
    n_observations: np.ndarray
    n_rejected: np.ndarray
    overall_rms_px: float
    overall_median_px: float
    n_points: int
    n_frames: int
    reference_camera: str
    registration_order: tuple[str, ...]
    world: str
    up_source: str
    scale_source: str
    metres_per_unit: float
    stature_m: float
    floor_tilt_deg: float
    focal_scale: np.ndarray
    alignment: RigAlignment | None
    runtime_s: float

    def summary(self) -> str:
        lines = [f"people calibration: {len(self.camera_names)} cameras, {self.n_points} points from "
                 f"{self.n_frames} frames, reprojection RMS {self.overall_rms_px:.2f} px "
                 f"(median {self.overall_median_px:.2f}), {self.runtime_s:.1f} s",
                 f"world: {self.world}; stature {self.stature_m:.3f} "
                 + ("m" if self.scale_source != "none" else "(arbitrary unit)")]
        for i, n in enumerate(self.camera_names):
            line = (f"  {n}: RMS {self.rms_px[i]:.2f} px, median {self.median_px[i]:.2f} px, "
                    f"{self.n_observations[i]} obs ({self.n_rejected[i]} rejected)")
            if self.alignment is not None:
                line += (f", centre {1000 * self.alignment.centre_error_m[i]:.1f} mm, "
                         f"orientation {self.alignment.orientation_error_deg[i]:.2f} deg")
            lines.append(line)
        return "\n".join(lines)


# ============================================================================ public API


def calibrate_from_people(
    keypoints: np.ndarray,
    camera_names: Sequence[str],
    intrinsics: Sequence[Camera | tuple] | Rig,
    *,
    skeleton: str | Sequence[str] | None = None,
    height_m: float | None = None,
    known_distance: tuple[str, str, float] | None = None,
    settings: PeopleCalibrationSettings = PeopleCalibrationSettings(),
    reference: Rig | None = None,
) -> tuple[Rig, PeopleCalibrationReport]:
    """Extrinsics of a rig from one person's synchronized 2D keypoints.

    Args:
        keypoints: (C, T, K, 3) x_px, y_px, score of the person in each view and frame, distorted
            px (missing: score 0 or NaN); cameras in ``camera_names`` order.
        camera_names: (C,) names, rig order of the result.
        intrinsics: (C,) per camera a :class:`Camera` (its extrinsics are ignored) or a tuple
            ``(K (3, 3) px, dist (4|5,)[, size (w, h) px])``; or a Rig with these names.
        skeleton: skeleton name or keypoint names (K,), needed to fix the world frame (default:
            ``HALPE_26`` for K = 26, ``COCO_17`` for 17, ``COCO_133`` for 133).
        height_m: the subject's stature, m (sets the scale; see :mod:`rtkin.calibrate.world`).
        known_distance: ``(keypoint_a, keypoint_b, metres)``: scale from the median distance between
            two keypoints instead (takes precedence over ``height_m``).
        settings: method parameters.
        reference: optional reference rig (same names): the report gives centre and orientation
            errors after a similarity alignment to it.

    Returns:
        (rig, report): rig in ``camera_names`` order, extrinsics world->camera in m.

    Raises:
        NotEnoughDataError: fewer than 2 cameras, or a camera with too few usable observations or
            too few points shared with the others (the message names it and gives the counts).
    """
    t0 = time.perf_counter()
    s = settings
    kp, names, cams, kp_names = _validate(keypoints, camera_names, intrinsics, skeleton, s, reference)
    valid = _valid_mask(kp, s.min_score)  # (C, T, K)
    sel_t, sel_k = _select_points(valid, s)
    obs = kp[:, sel_t, sel_k]  # (C, M, 3) the points of the adjustment
    vis = valid[:, sel_t, sel_k]  # (C, M)
    ref, order, rvecs, tvecs, X, used = _initialise(obs, vis, cams, names, s)
    ba = _adjust(obs, used, X, cams, rvecs, tvecs, ref, s, passes=2, max_nfev=s.max_nfev)
    cams = [_with_focal(c, f) for c, f in zip(cams, ba.focal_scale)]
    rig = _make_rig(cams, ba.rvecs, ba.tvecs)
    world = BodyFrame.identity()
    if kp_names is not None and (s.fix_world or known_distance is not None):
        X_all = Triangulator(rig, TriangulationSettings(min_score=s.min_score))(kp).points  # (T, K, 3)
        if s.fix_world:
            world = _fix_world(X_all, kp_names, height_m, known_distance)
        else:
            world = replace(world, scale=_distance_scale(X_all, kp_names, known_distance), scale_source="distance")
    rig = world.apply(rig)
    alignment = align_rig(rig, reference, "similarity") if reference is not None else None
    C = len(names)
    res, cam_of = ba.residuals, ba.cam_index
    report = PeopleCalibrationReport(
        camera_names=names,
        rms_px=np.array([_rms(res[cam_of == c]) for c in range(C)]),
        median_px=np.array([_median(res[cam_of == c]) for c in range(C)]),
        n_observations=np.bincount(cam_of, minlength=C),
        n_rejected=ba.n_rejected,
        overall_rms_px=_rms(res),
        overall_median_px=_median(res),
        n_points=ba.n_points,
        n_frames=int(np.unique(sel_t).size),
        reference_camera=names[ref],
        registration_order=tuple(names[i] for i in order),
        world=world.description,
        up_source=world.up_source,
        scale_source=world.scale_source,
        metres_per_unit=float(world.scale),
        stature_m=float(world.stature * world.scale),
        floor_tilt_deg=float(world.floor_tilt_deg),
        focal_scale=ba.focal_scale,
        alignment=alignment,
        runtime_s=time.perf_counter() - t0,
    )
    return rig, report


def similarity_transform(src: np.ndarray, dst: np.ndarray, scale: bool = True) -> tuple[float, np.ndarray, np.ndarray]:
    """Umeyama: ``dst ~ s R src + t`` in the least-squares sense.

    Args:
        src, dst: (N, 3) corresponding points, N >= 3.
        scale: estimate ``s`` (else s = 1: a rigid transform).

    Returns:
        (s, R (3, 3), t (3,)).
    """
    src = np.asarray(src, dtype=float)
    dst = np.asarray(dst, dtype=float)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 3 or src.shape[0] < 3:
        raise ValueError(f"need two (N >= 3, 3) arrays of the same shape, got {src.shape} and {dst.shape}")
    ms, md = src.mean(0), dst.mean(0)
    a, b = src - ms, dst - md
    U, S, Vt = np.linalg.svd(b.T @ a / len(src))
    D = np.eye(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        D[2, 2] = -1.0
    R = U @ D @ Vt
    s = float(np.trace(np.diag(S) @ D) / (a ** 2).sum(1).mean()) if scale else 1.0
    return s, R, md - s * R @ ms


def align_rig(rig: Rig, reference: Rig, mode: str = "similarity") -> RigAlignment:
    """Align ``rig``'s camera centres to ``reference``'s (matched by name) and measure the errors.

    Args:
        rig, reference: rigs with the same camera names (order may differ; errors in ``rig`` order).
        mode: ``similarity`` (Umeyama with scale), ``rigid``, ``floor`` (rotation about world z and
            horizontal translation only: what is left free by a world fixed from the floor with a
            metric scale) or ``none``.
    """
    if sorted(rig.names) != sorted(reference.names):
        raise ValueError(f"rigs have different cameras: {list(rig.names)} vs {list(reference.names)}")
    ref = reference.subset(rig.names)
    src = np.stack([c.center for c in rig])
    dst = np.stack([c.center for c in ref])
    if mode in ("similarity", "rigid"):
        s, R, t = similarity_transform(src, dst, scale=mode == "similarity")
    elif mode == "floor":
        a, b = src[:, :2] - src[:, :2].mean(0), dst[:, :2] - dst[:, :2].mean(0)
        U, _, Vt = np.linalg.svd(b.T @ a)
        R2 = U @ np.diag([1.0, np.sign(np.linalg.det(U @ Vt))]) @ Vt
        R = np.eye(3)
        R[:2, :2] = R2
        s = 1.0
        t = np.zeros(3)
        t[:2] = dst[:, :2].mean(0) - R2 @ src[:, :2].mean(0)
    elif mode == "none":
        s, R, t = 1.0, np.eye(3), np.zeros(3)
    else:
        raise ValueError(f"mode must be similarity, rigid, floor or none, got {mode!r}")
    moved = s * src @ R.T + t
    err = np.linalg.norm(moved - dst, axis=1)
    ang = np.array([_angle_deg(c.R @ R.T, r.R) for c, r in zip(rig, ref)])
    size = max(float(np.linalg.norm(p - q)) for p in dst for q in dst)
    return RigAlignment(mode, float(s), R, t, err, ang, size)


# ============================================================================ input


def _validate(keypoints, camera_names, intrinsics, skeleton, s, reference=None):
    names = tuple(str(n) for n in camera_names)
    kp = np.asarray(keypoints, dtype=np.float64)
    if kp.ndim != 4 or kp.shape[-1] != 3:
        raise ValueError(f"keypoints must be (C, T, K, 3), got shape {kp.shape}")
    if len(set(names)) != len(names):
        raise ValueError(f"camera names must be unique, got {list(names)}")
    if kp.shape[0] != len(names):
        raise ValueError(f"keypoints have {kp.shape[0]} cameras, camera_names {len(names)}")
    if len(names) < 2:
        raise NotEnoughDataError(f"need at least 2 cameras, got {len(names)} ({list(names)})")
    cams = _as_cameras(intrinsics, names)
    if any(c.fisheye for c in cams):
        raise ValueError("fisheye cameras are not supported")
    counts = _valid_mask(kp, s.min_score).sum(axis=(1, 2))
    for n, cnt in zip(names, counts):
        if cnt < s.min_observations:
            raise NotEnoughDataError(
                f"camera {n!r} has {int(cnt)} keypoints with score >= {s.min_score} over "
                f"{kp.shape[1]} frames; at least {s.min_observations} are needed "
                f"(per camera: {dict(zip(names, counts.tolist()))})")
    if s.reference_camera is not None and s.reference_camera not in names:
        raise ValueError(f"reference_camera {s.reference_camera!r} is not one of {list(names)}")
    if reference is not None and sorted(reference.names) != sorted(names):
        raise ValueError(f"reference rig cameras {list(reference.names)} differ from {list(names)}")
    kp_names = _keypoint_names(skeleton, kp.shape[2])
    return kp, names, cams, kp_names


def _keypoint_names(skeleton, K):
    if skeleton is None:
        guess = {26: "HALPE_26", 17: "COCO_17", 133: "COCO_133"}.get(K)
        return tuple(get_skeleton(guess).keypoints) if guess else None
    names = tuple(get_skeleton(skeleton).keypoints) if isinstance(skeleton, str) else tuple(skeleton)
    if len(names) != K:
        raise ValueError(f"skeleton has {len(names)} keypoints, keypoints have {K}")
    return names


def _as_cameras(intrinsics, names) -> list[Camera]:
    """Cameras (extrinsics zeroed) named ``names`` from Cameras, (K, dist[, size]) tuples or a Rig."""
    if isinstance(intrinsics, Rig):
        items = [intrinsics[n] for n in names] if set(names) <= set(intrinsics.names) else list(intrinsics)
    else:
        items = list(intrinsics)
    if len(items) != len(names):
        raise ValueError(f"{len(items)} intrinsics for {len(names)} cameras")
    cams = []
    for n, item in zip(names, items):
        if isinstance(item, Camera):
            cams.append(Camera(n, item.size, item.K, item.dist[: item.n_dist], np.zeros(3), np.zeros(3)))
            continue
        Km = np.asarray(item[0], dtype=float)
        size = tuple(item[2]) if len(item) > 2 else (2 * Km[0, 2], 2 * Km[1, 2])
        cams.append(Camera(n, size, Km, np.asarray(item[1], dtype=float), np.zeros(3), np.zeros(3)))
    return cams


def _valid_mask(kp, min_score):
    with np.errstate(invalid="ignore"):
        return np.isfinite(kp).all(-1) & (kp[..., 2] >= min_score) & (kp[..., 2] > 0)


def _select_points(valid, s):
    """Indices (t, k) of the points used: every frame_step-th frame, seen by >= 2 views, at most
    max_points spread evenly over time."""
    T = valid.shape[1]
    frames = np.arange(0, T, s.frame_step)
    n_views = valid[:, frames].sum(0)  # (F, K)
    fi, k = np.nonzero(n_views >= 2)
    t = frames[fi]
    if t.size > s.max_points:
        keep = np.unique(np.round(np.linspace(0, t.size - 1, s.max_points)).astype(int))
        t, k = t[keep], k[keep]
    return t, k


# ============================================================================ small helpers


def _angle_deg(Ra, Rb) -> float:
    return float(np.degrees(np.linalg.norm(rodrigues_inv(Ra @ Rb.T))))


def _rms(r) -> float:
    return float(np.sqrt(np.mean(r ** 2))) if r.size else float("nan")


def _median(r) -> float:
    return float(np.median(r)) if r.size else float("nan")
