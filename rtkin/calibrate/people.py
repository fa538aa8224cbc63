"""Rig extrinsics from a person moving through the capture volume (no calibration board).

Inputs are each camera's intrinsics (K, distortion) and synchronized 2D keypoints of ONE person
per view and frame, ``(C, T, K, 3)`` = x_px, y_px, score in distorted pixels (the caller picks the
person; :func:`select_subject` does it for views with bystanders). Output is a :class:`Rig` whose
extrinsics are world->camera (OpenCV, ``X_cam = R X_world + t``) in the *body-defined world* below,
plus a :class:`PeopleCalibrationReport`. Nothing is written; a caller writes ``Calib.toml``.

Method
------
1. Observations: keypoints with score >= ``min_score`` (0.6) in every ``frame_step``-th frame (1);
   of the (frame, keypoint) points seen by >= 2 cameras at most ``max_points`` (2000), evenly
   spread over time, enter the adjustment.
2. Initialisation (incremental, as in structure-from-motion): the reference camera (given, or the
   one sharing most observations) and the partner whose essential matrix
   (``cv2.findEssentialMat``, RANSAC on normalised undistorted points, ``cv2.recoverPose``) has most
   inliers with a usable triangulation angle fix the first frame and unit of length (baseline 1).
   Every further camera is *resected* from the points triangulated so far (``cv2.solvePnPRansac``
   on distorted pixels with the lens model): that puts it in the common frame at the common scale
   without chaining relative poses or matching pair scales. After each addition the registered
   cameras get a quick robust adjustment and the points are re-triangulated with robust view
   exclusion (:class:`~rtkin.reconstruct.triangulation.Triangulator`). Cameras are added in order of how many
   triangulated points they see.
3. Bundle adjustment of all camera poses (the reference camera's pose is held fixed; optionally one
   focal-length factor per camera) and all 3D points: ``scipy.optimize.least_squares(method="trf",
   loss="soft_l1", f_scale=2.5 px, x_scale="jac")`` with an analytic sparse Jacobian (from
   ``cv2.projectPoints``; finite differences on the sparsity pattern when a camera has skew),
   residuals in distorted pixels through OpenCV's pinhole + distortion model. Observations above
   ``max(outlier_px, outlier_factor * median)`` are then dropped and the adjustment repeated.
4. World frame, from the person (``fix_world=True``; all frames triangulated with the adjusted rig),
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

import math
import time
from dataclasses import dataclass, replace
from typing import Sequence

import cv2
import numpy as np
from scipy.optimize import least_squares
from scipy.sparse import coo_matrix

from rtkin.core.calibration import Camera, Rig, rodrigues, rodrigues_inv
from rtkin.core.skeletons import get_skeleton
from rtkin.reconstruct.triangulation import TriangulationSettings, Triangulator

__all__ = [
    "NotEnoughDataError",
    "PeopleCalibrationSettings",
    "RigAlignment",
    "PeopleCalibrationReport",
    "calibrate_from_people",
    "similarity_transform",
    "align_rig",
    "select_subject",
    "SubjectSelectionSettings",
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


class NotEnoughDataError(ValueError):
    """Too few cameras, or a camera (named in the message) with too few usable observations."""


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
        fix_world: put the rig in the body-defined world frame (module docstring); else the
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


@dataclass(frozen=True)
class SubjectSelectionSettings:
    """Defaults of :func:`select_subject` (one place).

    Attributes:
        min_score: keypoints below this score are not used (score units).
        ransac_px: RANSAC threshold of the test calibrations, px (about a real detector's noise).
        max_px: a selected detection's median reprojection error must be below this, px, or below
            3x the median over frames if that is larger (capped at 4x ``max_px``).
        max_hypotheses: candidate tracks tested per view.
        min_track_fraction: candidate tracks cover at least this fraction of the frames.
    """

    min_score: float = 0.4
    ransac_px: float = 10.0
    max_px: float = 30.0
    max_hypotheses: int = 3
    min_track_fraction: float = 0.25

    def __post_init__(self) -> None:
        if not (self.ransac_px > 0 and self.max_px > 0) or self.max_hypotheses < 1:
            raise ValueError("ransac_px and max_px must be > 0 px and max_hypotheses >= 1")


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
        height_m: the subject's stature, m (sets the scale; see the module docstring).
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


def select_subject(
    detections: Sequence[Sequence[np.ndarray]],
    intrinsics: Sequence[Camera | tuple] | Rig,
    anchors: Sequence[int] | None = None,
    settings: SubjectSelectionSettings = SubjectSelectionSettings(),
) -> np.ndarray:
    """Pick the subject in views that also see bystanders, without any extrinsics.

    Two or more *anchor* views see only the subject (at most one detection in >= 95 % of frames,
    unless given; with several detections there, the one with the highest summed score). For every
    other view:

    1. Hypotheses: the people of that view are tracked over time (greedy frame-to-frame matching of
       keypoints); the ``max_hypotheses`` longest tracks covering >= ``min_track_fraction`` of the
       frames are the candidates (shorter ones overfit the test below).
    2. Test: the anchors and the view are calibrated together (:func:`calibrate_from_people`) with
       each candidate track; the subject is re-triangulated *without* view exclusion and the
       median reprojection error over all points is the score; the lowest wins. A bystander can
       match the subject's body in a single resection (similar shapes, little motion; a two-view
       geometry from noisy keypoints is poor), but it cannot be triangulated consistently with
       views that see only the subject: on the Pose2Sim demo, median 8-12 px for the subject's
       track vs 18-700 px for the bystander's.

    Finally all views are calibrated together and every non-anchor view re-picks, frame by frame,
    the detection that reprojects best with its pose from that calibration (which also mends
    tracks broken by crossings).

    Args:
        detections: per camera, per frame, a (P, K, 3) array x_px, y_px, score (distorted px).
        intrinsics: per camera a Camera or (K, dist[, size]) (only K and dist are used).
        anchors: indices of views that see only the subject (default: detected as above).
        settings: thresholds (:class:`SubjectSelectionSettings`).

    Returns:
        (C, T, K, 3) float32 keypoints of the subject (score 0 where not selected).

    Raises:
        NotEnoughDataError: fewer than two anchor views, or a view where no track calibrates.
    """
    C = len(detections)
    names = tuple(f"view{i}" for i in range(C))
    cams = _as_cameras(intrinsics, names)
    T = len(detections[0]) if C else 0
    if any(len(d) != T for d in detections):
        raise ValueError("every camera needs the same number of frames")
    K = next((d.shape[1] for cam in detections for d in cam if np.ndim(d) == 3 and len(d)), 0)
    if K == 0:
        raise NotEnoughDataError("no detections in any view")
    if anchors is None:
        anchors = [c for c in range(C) if np.mean([len(d) <= 1 for d in detections[c]]) >= 0.95]
    anchors = sorted(anchors)
    if len(anchors) < 2:
        raise NotEnoughDataError(f"need >= 2 anchor views that see only the subject, found {anchors}")
    out = np.zeros((C, T, K, 3), dtype=np.float32)
    for a in anchors:
        for t, d in enumerate(detections[a]):
            if len(d):
                out[a, t] = d[int(np.argmax(np.where(d[..., 2] > 0, d[..., 2], 0).sum(1)))]
    ss = settings
    sub = PeopleCalibrationSettings(min_score=ss.min_score, ransac_px=ss.ransac_px, max_points=1000,
                                    outlier_px=2 * ss.ransac_px, fix_world=False)
    tri = TriangulationSettings(min_score=ss.min_score, exclusion_threshold_px=2 * ss.ransac_px,
                                max_error_px=4 * ss.ransac_px)
    no_exclusion = TriangulationSettings(min_score=ss.min_score, exclusion_threshold_px=1e9, max_error_px=1e9)

    def calibrated(views):
        views = sorted(views)
        rig, _ = calibrate_from_people(out[views], [names[v] for v in views], [cams[v] for v in views], settings=sub)
        return rig, views

    for c in range(C):
        if c in anchors:
            continue
        best = (np.inf, None)
        tracks = _tracks(detections[c], ss.min_score)
        long = [tr for tr in tracks if (tr >= 0).sum() >= ss.min_track_fraction * T]  # short ones overfit
        for track in (long or tracks)[:ss.max_hypotheses]:
            out[c] = 0.0
            for t in np.flatnonzero(track >= 0):
                out[c, t] = detections[c][t][track[t]]
            try:
                rig, views = calibrated(anchors + [c])
            except NotEnoughDataError:
                continue
            score = float(np.nanmedian(Triangulator(rig, no_exclusion)(out[views]).reproj_error_px))
            if score < best[0]:
                best = (score, out[c].copy())
        if best[1] is None:
            raise NotEnoughDataError(f"view {c}: no track of detections calibrates with the anchor views")
        out[c] = best[1]
    if len(anchors) < C:  # every view's pose from the calibration of all views: re-pick
        rig, _ = calibrated(range(C))
        X = Triangulator(rig, tri)(out).points
        for c in range(C):
            if c not in anchors:
                out[c] = 0.0
                _pick_detections(detections[c], rig[names[c]], X, ss.min_score, ss.max_px, out[c])
    return out


def _tracks(dets, min_score, max_gap=5, max_cost=0.3) -> list[np.ndarray]:
    """People tracks of one view by greedy frame-to-frame matching: (T,) detection index per frame
    (-1 where absent), longest first. Matching cost: median distance over common keypoints / the
    detection's size (diagonal of its keypoints' box)."""
    T = len(dets)
    tracks: list[np.ndarray] = []
    last: list[tuple[int, np.ndarray]] = []  # per track: (frame, keypoints) last seen
    for t, d in enumerate(dets):
        pairs = []
        for p in range(len(d)):
            ok_p = d[p, :, 2] >= min_score
            if ok_p.sum() < 3:
                continue
            pts = d[p, ok_p, :2]
            size = float(np.linalg.norm(pts.max(0) - pts.min(0))) + 1e-9
            for j, (tl, kl) in enumerate(last):
                ok = ok_p & (kl[:, 2] >= min_score)
                if t - tl <= max_gap and ok.sum() >= 3:
                    cost = float(np.median(np.linalg.norm(d[p, ok, :2] - kl[ok, :2], axis=1))) / size
                    if cost <= max_cost:
                        pairs.append((cost, p, j))
        used_p, used_j = set(), set()
        for cost, p, j in sorted(pairs):
            if p in used_p or j in used_j:
                continue
            used_p.add(p)
            used_j.add(j)
            tracks[j][t] = p
            last[j] = (t, d[p])
        for p in range(len(d)):
            if p not in used_p and (d[p, :, 2] >= min_score).sum() >= 3:
                tracks.append(np.full(T, -1))
                tracks[-1][t] = p
                last.append((t, d[p]))
    return sorted(tracks, key=lambda tr: -int((tr >= 0).sum()))


def _pick_detections(dets, posed: Camera, X, min_score, max_px, out) -> None:
    """Write into out (T, K, 3) the detection of each frame that reprojects best (median px over
    keypoints). Accepted below ``max(max_px, 3 x the median best error)`` (at most 4 x max_px): early
    geometries from few views are rough, and a bystander is off by hundreds of px."""
    best = np.full(len(dets), np.inf)
    choice = np.zeros(len(dets), dtype=int)
    for t, d in enumerate(dets):
        if not len(d):
            continue
        err = np.linalg.norm(d[..., :2] - posed.project(X[t])[None], axis=-1)  # (P, K)
        err = np.where(d[..., 2] >= min_score, err, np.nan)
        med = np.array([np.median(e[np.isfinite(e)]) if np.isfinite(e).sum() >= 3 else np.inf for e in err])
        choice[t] = int(np.argmin(med))
        best[t] = med[choice[t]]
    finite = best[np.isfinite(best)]
    if finite.size == 0:
        return
    thr = min(max(max_px, 3.0 * float(np.median(finite))), 4.0 * max_px)
    for t in np.flatnonzero(best <= thr):
        out[t] = dets[t][choice[t]]


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


# ============================================================================ small helpers


def _angle_between(a, b) -> float:
    return float(np.degrees(np.arccos(np.clip(a @ b / np.linalg.norm(a) / np.linalg.norm(b), -1.0, 1.0))))


def _angle_deg(Ra, Rb) -> float:
    return float(np.degrees(np.linalg.norm(rodrigues_inv(Ra @ Rb.T))))


def _rms(r) -> float:
    return float(np.sqrt(np.mean(r ** 2))) if r.size else float("nan")


def _median(r) -> float:
    return float(np.median(r)) if r.size else float("nan")
