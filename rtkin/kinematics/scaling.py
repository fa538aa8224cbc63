"""Subject scaling: segment lengths from 3D keypoints -> a scaled OpenSim model.

Pose2Sim measures the generic model's segment lengths in its default pose, arms out horizontally
(``arm_add`` = -90 deg), where the shoulder marker (on the torso) sits ~3 cm off the shoulder
joint: the humerus comes out over-scaled (~1.17 instead of 1.08). Here:

1. :func:`segment_lengths` measures robust (trimmed-mean) distances between the keypoint pairs
   that define each segment (:data:`SEGMENTS`), from frames that pass the quality filters (views,
   reprojection) and the pose filter (hip and knee flexion estimated from the 3D keypoints below
   ``max_flexion_deg``, as Pose2Sim does).
2. :func:`model_segment_lengths` measures the SAME landmark distances on the model (its markers
   from the skeleton's Pose2Sim marker set) by forward kinematics in a NEUTRAL pose: observable
   coordinates 0 (arms down, elbows straight), the others at the model defaults.
3. :func:`scale_factors` turns measured / model lengths into per-body factors
   (:data:`BODY_SEGMENTS`), iterating because segments couple (the hip-knee distance depends on
   where the scaled pelvis puts the hip joint, the shoulder-elbow distance on the torso factor).
   Landmark distances also depend on the pose (shoulder-elbow: 0.268-0.314 m on the generic model
   between arm elevation 90 deg and 60 deg flexion; elbow-wrist with elbow flexion; knee-ankle
   with knee flexion), so by default it then refines the factors by IK: the scaled model is fitted
   to a subsample of the good frames (:class:`rtkin.kinematics.ik.IKSolver`), the same distances are measured
   on the model in those poses, and each factor is multiplied by the robust mean ratio
   data / model, ``refine_iterations`` times.
4. :func:`scale_model` writes the scaled ``.osim`` with the ScaleTool's model scaler
   (``ModelScaler``, scaling order ``manualScale``: uniform per-body factors; the skeleton's
   markers are added first so they move with their bodies; masses preserved in distribution and
   set to ``mass_kg`` when given). The live switch rebuilds the same model in memory with
   ``Model.scale`` (what the model scaler calls), in short steps.
5. :class:`OnlineScaler` is the live stage: fed Skeleton3D messages, it collects ``seconds`` of
   good frames of one person, then computes the factors and writes the scaled model.

Units: metres, seconds, degrees where named ``_deg``, pixels where named ``_px``.
"""

from __future__ import annotations

import concurrent.futures as cf
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from rtkin.core import assets
from rtkin.core.frames import WORLD_FROM_OSIM
from rtkin.kinematics.model import (apply_scale, coordinate_q_indices, marker_points, neutral_values,
                                   scale_tool_manual, template_model)
from rtkin.core.messages import Skeleton3D
from rtkin.core.skeletons import Skeleton, get_skeleton

__all__ = [
    "ScalingSettings",
    "SEGMENTS",
    "BODY_SEGMENTS",
    "ScalingResult",
    "good_frames",
    "segment_lengths",
    "model_segment_lengths",
    "scale_factors",
    "scale_model",
    "scaled_model",
    "write_model",
    "OnlineScaler",
    "background_executor",
    "model_stature",
]

#: Segment name -> (landmark a, landmark b): keypoint names (HALPE_26); ``Hip`` and ``Neck`` fall
#: back to the mid-point of RHip/LHip and RShoulder/LShoulder for skeletons without them.
SEGMENTS: dict[str, tuple[str, str]] = {
    "pelvis_width": ("RHip", "LHip"),
    "shoulder_width": ("RShoulder", "LShoulder"),
    "trunk": ("Hip", "Neck"),
    "head": ("Neck", "Head"),
    "femur_r": ("RHip", "RKnee"),
    "femur_l": ("LHip", "LKnee"),
    "tibia_r": ("RKnee", "RAnkle"),
    "tibia_l": ("LKnee", "LAnkle"),
    "foot_r": ("RHeel", "RBigToe"),
    "foot_l": ("LHeel", "LBigToe"),
    "humerus_r": ("RShoulder", "RElbow"),
    "humerus_l": ("LShoulder", "LElbow"),
    "forearm_r": ("RElbow", "RWrist"),
    "forearm_l": ("LElbow", "LWrist"),
}

#: Model body -> segments whose length ratios set its (uniform) scale factor (mean of the ratios).
BODY_SEGMENTS: dict[str, tuple[str, ...]] = {
    "pelvis": ("pelvis_width",),
    "sacrum": ("pelvis_width",),
    "femur_r": ("femur_r",), "femur_l": ("femur_l",),
    "tibia_r": ("tibia_r",), "tibia_l": ("tibia_l",),
    "talus_r": ("foot_r",), "calcn_r": ("foot_r",), "toes_r": ("foot_r",),
    "talus_l": ("foot_l",), "calcn_l": ("foot_l",), "toes_l": ("foot_l",),
    "torso": ("trunk", "shoulder_width"),
    "head": ("head",),
    "humerus_r": ("humerus_r",), "humerus_l": ("humerus_l",),
    "ulna_r": ("forearm_r",), "radius_r": ("forearm_r",), "hand_r": ("forearm_r",),
    "ulna_l": ("forearm_l",), "radius_l": ("forearm_l",), "hand_l": ("forearm_l",),
}

BACKGROUND_NICE = 15  # niceness of the background scaling process (set before it imports anything
# heavy: it yields the CPU to the live IK; a one-off job of seconds)
_MIDPOINTS = {"Hip": ("RHip", "LHip"), "Neck": ("RShoulder", "LShoulder")}
_REFINE_IK_ITERATIONS = 20
_REFINE_DT_S = 1.0
_REFINE_GAP_S = 2.0
_FILTER_POINTS = ("RHip", "LHip", "RKnee", "LKnee", "RAnkle", "LAnkle", "RShoulder", "LShoulder")


# ============================================================================ settings


@dataclass(frozen=True)
class ScalingSettings:
    """Scaling settings (TOML keys map 1:1).

    Attributes:
        skeleton: keypoint set of the incoming points (selects the Pose2Sim marker set).
        model: generic OpenSim model; ``""`` = Pose2Sim's ``Model_Pose2Sim_simple.osim``.
        seconds: good data to collect before scaling, s (frames = seconds x frame rate).
        min_views: a keypoint triangulated from fewer cameras is not used.
        max_reproj_px: a keypoint with a larger mean reprojection error is not used, px.
        min_score: a keypoint with a lower score is not used (score units, 0..1).
        max_flexion_deg: frames whose hip or knee flexion (estimated from the 3D keypoints: the
            angle between trunk and thigh, thigh and shank) exceeds this are skipped, deg.
        trim_fraction: fraction of the samples cut at EACH end for the trimmed mean, 0..0.5.
        min_samples: a segment with fewer good samples keeps factor 1 (reported as missing).
        factor_range: factors are clipped to this (min, max) range.
        coupling_iterations: fixed-point iterations on the neutral-pose model lengths.
        refine_iterations: IK-based pose-matched refinements (0 = neutral pose only).
        refine_frames: good frames (evenly spaced) fitted by IK per refinement.
        height_m: subject height, m, 0 = unknown. Bodies the keypoints do not measure (and whose
            mirror body is not measured either) are scaled by height / generic stature
            (:func:`model_stature`, 1.685 m); the scaled model's stature is checked against it
            (``ScalingResult.warnings`` beyond :data:`HEIGHT_WARNING_FRACTION`).
        mass_kg: subject mass, kg; the scaled model's total mass (distribution preserved);
            0 = masses scaled with the body volumes by OpenSim.
    """

    skeleton: str = "HALPE_26"
    model: str = ""
    seconds: float = 3.0
    min_views: int = 2
    max_reproj_px: float = 10.0
    min_score: float = 0.3
    max_flexion_deg: float = 30.0
    trim_fraction: float = 0.1
    min_samples: int = 10
    factor_range: tuple[float, float] = (0.5, 2.0)
    coupling_iterations: int = 4
    refine_iterations: int = 2
    refine_frames: int = 40
    height_m: float = 0.0
    mass_kg: float = 0.0

    def __post_init__(self) -> None:
        get_skeleton(self.skeleton)
        if not self.seconds > 0:
            raise ValueError(f"ScalingSettings.seconds must be > 0, got {self.seconds!r}")
        if not 0.0 <= self.trim_fraction < 0.5:
            raise ValueError(f"ScalingSettings.trim_fraction must be in [0, 0.5), got {self.trim_fraction!r}")
        if not 0 < self.max_flexion_deg <= 180:
            raise ValueError(f"ScalingSettings.max_flexion_deg must be in (0, 180], got {self.max_flexion_deg!r}")
        for name in ("min_views", "min_samples", "refine_frames"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"ScalingSettings.{name} must be >= 1")
        for name in ("coupling_iterations", "refine_iterations"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"ScalingSettings.{name} must be >= 0")
        lo, hi = self.factor_range
        if not 0 < lo < 1 < hi:
            raise ValueError(f"ScalingSettings.factor_range must satisfy 0 < min < 1 < max, got {self.factor_range!r}")
        if self.height_m < 0 or self.mass_kg < 0:
            raise ValueError("ScalingSettings.height_m and mass_kg must be >= 0")


@dataclass(frozen=True, eq=False)
class ScalingResult:
    """Outcome of :func:`scale_factors`.

    Attributes:
        factors: body name -> uniform scale factor (dimensionless).
        segment_factors: segment name -> factor (after refinement: the measured / scaled-generic
            length ratio folded in).
        measured_m: segment name -> robust measured length, m.
        model_m: segment name -> generic model length in the neutral pose, m.
        n_frames: frames passing the filters.
        missing: segments without enough good samples (their bodies take the mirror body's
            factor, else height / generic stature when the height is given, else 1).
        stature_m: standing height of the scaled model (:func:`model_stature`), m.
        warnings: what a user should check (scaled stature far from the given height, segments
            not measured).
    """

    factors: dict[str, float]
    segment_factors: dict[str, float]
    measured_m: dict[str, float]
    model_m: dict[str, float]
    n_frames: int
    missing: tuple[str, ...] = ()
    stature_m: float = math.nan
    warnings: tuple[str, ...] = ()


# ============================================================================ helpers


def _skeleton(skeleton: str | Skeleton) -> Skeleton:
    return skeleton if isinstance(skeleton, Skeleton) else get_skeleton(skeleton)


def _landmark(points: np.ndarray, names: Sequence[str], name: str) -> np.ndarray:
    """(..., 3) landmark ``name`` from ``points`` (..., K, 3) named ``names`` (mid-point fallback)."""
    if name in names:
        return points[..., list(names).index(name), :]
    if name in _MIDPOINTS:
        a, b = _MIDPOINTS[name]
        return 0.5 * (_landmark(points, names, a) + _landmark(points, names, b))
    return np.full(points.shape[:-2] + (3,), np.nan)


def _distances(points: np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
    """Per segment, the (...,) landmark distances (NaN where an end is missing)."""
    return {s: np.linalg.norm(_landmark(points, names, a) - _landmark(points, names, b), axis=-1)
            for s, (a, b) in SEGMENTS.items()}


def _angle_deg(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    nu, nv = np.linalg.norm(u, axis=-1), np.linalg.norm(v, axis=-1)
    c = np.einsum("...i,...i->...", u, v) / (nu * nv)
    return np.degrees(np.arccos(np.clip(c, -1.0, 1.0)))


def _trimmed_mean(x: np.ndarray, fraction: float) -> float:
    x = np.sort(x[np.isfinite(x)])
    if x.size == 0:
        return math.nan
    k = int(fraction * x.size)
    return float(x[k:x.size - k].mean()) if x.size - 2 * k > 0 else float(np.median(x))


def good_frames(points: np.ndarray, skeleton: str | Skeleton = "HALPE_26",
                settings: ScalingSettings = ScalingSettings()) -> np.ndarray:
    """(T,) bool: frames where the filter keypoints (hips, knees, ankles, shoulders) are present
    and hip and knee flexion estimated from them are below ``settings.max_flexion_deg``.

    ``points`` (T, K, 3) world m, NaN where a keypoint is missing or not usable.
    """
    names = _skeleton(skeleton).keypoints
    pts = np.asarray(points, dtype=np.float64)
    P = {n: _landmark(pts, names, n) for n in _FILTER_POINTS + ("Hip", "Neck")}
    trunk = P["Hip"] - P["Neck"]  # pointing down, as a standing thigh does
    ok = np.ones(pts.shape[0], dtype=bool)
    for s in "RL":
        thigh = P[f"{s}Knee"] - P[f"{s}Hip"]
        shank = P[f"{s}Ankle"] - P[f"{s}Knee"]
        hip = _angle_deg(trunk, thigh)
        knee = _angle_deg(thigh, shank)
        with np.errstate(invalid="ignore"):
            ok &= np.isfinite(hip) & np.isfinite(knee) & (hip <= settings.max_flexion_deg) & (knee <= settings.max_flexion_deg)
    return ok


def usable_points(sk: Skeleton3D, n: int, settings: ScalingSettings) -> np.ndarray:
    """(K, 3) points of person ``n`` with unusable ones (views, reprojection, score) set to NaN."""
    pts = np.array(sk.points[n], dtype=np.float64)
    with np.errstate(invalid="ignore"):
        ok = ((sk.n_views[n] >= settings.min_views) & (sk.reproj_error_px[n] <= settings.max_reproj_px)
              & (sk.scores[n] >= settings.min_score))
    pts[~ok] = np.nan
    return pts


# ============================================================================ measured lengths


def segment_lengths(points: np.ndarray, skeleton: str | Skeleton = "HALPE_26",
                    settings: ScalingSettings = ScalingSettings(), *, mask: np.ndarray | None = None) -> dict[str, float]:
    """Robust segment lengths, m, from (T, K, 3) world points (m; NaN = missing / unusable).

    Only frames passing :func:`good_frames` (and ``mask``, (T,) bool, if given) count; each
    segment's length is the trimmed mean (``settings.trim_fraction`` cut at each end) of its
    landmark distances. A segment with fewer than ``settings.min_samples`` samples is NaN.
    """
    sk = _skeleton(skeleton)
    pts = np.asarray(points, dtype=np.float64)
    keep = good_frames(pts, sk, settings)
    if mask is not None:
        keep &= np.asarray(mask, dtype=bool)
    out = {}
    for s, d in _distances(pts[keep], sk.keypoints).items():
        d = d[np.isfinite(d)]
        out[s] = _trimmed_mean(d, settings.trim_fraction) if d.size >= settings.min_samples else math.nan
    return out


# ============================================================================ model lengths


def model_segment_lengths(model_path: str | Path | None = None, skeleton: str | Skeleton = "HALPE_26",
                          factors: Mapping[str, float] | None = None) -> dict[str, float]:
    """The :data:`SEGMENTS` landmark distances on a model in the NEUTRAL pose, m.

    The landmarks are the model's markers of the skeleton's Pose2Sim marker set (those of the
    keypoints the data measures), by forward kinematics with the observable coordinates at 0
    (arms down, elbows and knees straight) and the others at their defaults - not the model's
    default pose (arms out horizontally, shoulder marker ~3 cm off the joint).

    Args:
        model_path: OpenSim model (default: Pose2Sim's generic simple model).
        skeleton: keypoint set (selects the marker set).
        factors: body -> scale factor applied in memory first (default: none).
    """
    sk = _skeleton(skeleton)
    return _neutral_lengths(template_model(Path(model_path or assets.model_path()), sk), sk, factors)


# ============================================================================ factors


def _body_factors(seg: Mapping[str, float], lo: float, hi: float, default: float = 1.0) -> dict[str, float]:
    """Per body, the mean of its measured segments' factors; a body without any takes its
    mirror body's factor (femur_l for femur_r), else ``default``."""
    out, unmeasured = {}, []
    for body, segs in BODY_SEGMENTS.items():
        vals = [seg[s] for s in segs if math.isfinite(seg.get(s, math.nan))]
        if vals:
            out[body] = float(np.clip(np.mean(vals), lo, hi))
        else:
            unmeasured.append(body)
    for body in unmeasured:
        mirror = body[:-1] + {"r": "l", "l": "r"}[body[-1]] if body.endswith(("_r", "_l")) else None
        out[body] = out[mirror] if mirror in out else float(np.clip(default, lo, hi))
    return out


#: Landmarks of the standing height on the model (HALPE_26 markers, neutral pose): the crown
#: ("Head" marker) over the lowest foot marker. On the generic model: 1.685 m.
_STATURE_TOP = "Head"
_STATURE_FEET = ("RHeel", "LHeel", "RBigToe", "LBigToe", "RSmallToe", "LSmallToe")
#: The scaled model's stature may differ from the given height by this fraction before a warning.
HEIGHT_WARNING_FRACTION = 0.06


def model_stature(model_path: str | Path | None = None, factors: Mapping[str, float] | None = None) -> float:
    """Standing height of a model (scaled in memory by ``factors``), m: the crown marker over the
    lowest foot marker in the neutral pose (HALPE_26 markers, whatever the keypoint skeleton)."""
    sk = get_skeleton("HALPE_26")
    pts = _neutral_points(template_model(Path(model_path or assets.model_path()), sk), sk, factors)
    idx = sk.indices([_STATURE_TOP, *_STATURE_FEET])
    return float(pts[idx[0], 1] - np.nanmin(pts[idx[1:], 1]))


def scale_factors(points: np.ndarray, skeleton: str | Skeleton = "HALPE_26",
                  settings: ScalingSettings = ScalingSettings(), model_path: str | Path | None = None,
                  *, mask: np.ndarray | None = None) -> ScalingResult:
    """Per-body scale factors from (T, K, 3) world keypoints (m, NaN = unusable).

    Segment factor = measured length / model length in the neutral pose; the bodies of
    :data:`BODY_SEGMENTS` get the mean of their segments' factors. Because a landmark distance
    can depend on a neighbouring body's factor, the factors are iterated
    (``coupling_iterations``) until the scaled model's neutral lengths match the measurements,
    then refined by IK in the measured poses (``refine_iterations``; see the module doc).
    """
    sk = _skeleton(skeleton)
    generic = Path(model_path or settings.model or assets.model_path())
    pts = np.asarray(points, dtype=np.float64)
    keep = good_frames(pts, sk, settings)
    if mask is not None:
        keep &= np.asarray(mask, dtype=bool)
    measured = segment_lengths(pts, sk, settings, mask=keep)
    base = model_segment_lengths(generic, sk)
    lo, hi = settings.factor_range
    missing = tuple(s for s, v in measured.items() if not math.isfinite(v))
    # bodies nothing measures (and no mirror body does): the subject's height over the model's
    default = settings.height_m / model_stature(generic) if settings.height_m else 1.0
    seg = {s: measured[s] / base[s] for s in SEGMENTS}
    factors = _body_factors(seg, lo, hi, default)
    model = template_model(Path(generic), sk)  # _neutral_lengths works on a copy
    for _ in range(settings.coupling_iterations):
        cur = _neutral_lengths(model, sk, factors)
        seg = {s: seg[s] * measured[s] / cur[s] for s in SEGMENTS}
        factors = _body_factors(seg, lo, hi, default)
    if settings.refine_iterations and np.count_nonzero(keep) >= settings.min_samples:
        idx = np.flatnonzero(keep)
        idx = idx[np.linspace(0, idx.size - 1, min(settings.refine_frames, idx.size)).round().astype(int)]
        poses = None
        for _ in range(settings.refine_iterations):
            ratios, poses = _ik_ratios(generic, sk, factors, pts[idx], settings, poses)
            seg = {s: seg[s] * ratios[s] if math.isfinite(ratios[s]) else seg[s] for s in SEGMENTS}
            factors = _body_factors(seg, lo, hi, default)
    stature = model_stature(generic, factors)
    warnings = []
    if settings.height_m and abs(stature / settings.height_m - 1) > HEIGHT_WARNING_FRACTION:
        warnings.append(f"the scaled model stands {stature:.2f} m tall, the configured height is "
                        f"{settings.height_m:.2f} m: check the height, or the calibration's scale")
    if missing:
        warnings.append(f"not measured (too few good samples): {', '.join(missing)}; their bodies take the "
                        + ("mirror side's factor or the height ratio" if settings.height_m else
                           "mirror side's factor or 1 (set the subject's height to scale them)"))
    return ScalingResult(factors, seg, measured, base, int(np.count_nonzero(keep)), missing, stature,
                         tuple(warnings))


def _neutral_points(generic_model, sk: Skeleton, factors: Mapping[str, float] | None) -> np.ndarray:
    """(K, 3) the skeleton's markers in the neutral pose, OpenSim ground m, of ``generic_model``
    (unscaled, with the skeleton's markers; not modified) scaled by ``factors``: by the compiled
    kinematic tree scaled in memory (:func:`_neutral_tree`), else on a scaled OpenSim copy."""
    fk = _neutral_tree(generic_model, sk)
    if fk is None:
        return _neutral_points_osim(generic_model, sk, factors)
    tree, q, rows, translations = fk
    out = np.full((sk.n_keypoints, 3), np.nan)
    out[rows] = tree.scaled(dict(factors or {}), translations).evaluate(q)[0]
    return out


def _neutral_points_osim(generic_model, sk: Skeleton, factors: Mapping[str, float] | None) -> np.ndarray:
    """:func:`_neutral_points` through OpenSim: a copy of the model scaled by ``Model.scale``."""
    model = generic_model.clone()
    state = apply_scale(model, factors) if factors else model.initSystem()
    return marker_points(model, state, sk, neutral_values(model))


#: (id of the template model, skeleton) -> (the template, (tree, neutral q, keypoint rows, translations) or None)
_NEUTRAL_TREES: dict[tuple[int, str], tuple[Any, tuple | None]] = {}
#: the scaled tree must place every marker within this of OpenSim's scaled model, m
_NEUTRAL_CHECK_M = 1e-9


def _neutral_tree(generic_model, sk: Skeleton) -> tuple | None:
    """The template model's compiled kinematic tree (:class:`rtkin.kinematics.fastfk.KinematicTree`)
    over the skeleton's markers, with the neutral pose's ``q`` and the keypoint row of each
    marker; built once per template and process (a scaled model costs an array copy instead of
    an OpenSim clone + ``Model.scale``: ~15 ms). Checked once against OpenSim's scaling with
    uneven factors; None (OpenSim is used) when it does not reproduce it."""
    key = (id(generic_model), sk.name)
    hit = _NEUTRAL_TREES.get(key)
    if hit is not None and hit[0] is generic_model:
        return hit[1]
    _NEUTRAL_TREES[key] = (generic_model, None)
    from rtkin.kinematics.fastfk import KinematicTree, Unsupported
    from rtkin.kinematics.model import _osim

    osim = _osim()
    model = generic_model.clone()
    state = model.initSystem()
    cs = model.getCoordinateSet()
    coords = [cs.get(i) for i in range(cs.getSize())]
    try:
        q_index = {c.getName(): int(i) for c, i in zip(coords, coordinate_q_indices(coords, state))}
    except ValueError:
        return None
    for n, v in neutral_values(model).items():
        cs.get(n).setValue(state, float(v), False)
    model.realizePosition(state)
    q = state.getQ().to_numpy().copy()
    ms = model.getMarkerSet()
    marker_of = dict(sk.markers)  # as marker_points: the keypoints' markers (no derived points)
    pairs = [(k, marker_of[n]) for k, n in enumerate(sk.keypoints) if n in marker_of and ms.contains(marker_of[n])]
    bodies, stations = [], []
    for _, m in pairs:
        base = osim.PhysicalFrame.safeDownCast(ms.get(m).getParentFrame().findBaseFrame())
        bodies.append(base.getName())
        stations.append(ms.get(m).findLocationInFrame(state, base).to_numpy())
    try:
        tree = KinematicTree(model, state, bodies, np.array(stations), q_index)
    except (Unsupported, KeyError):
        return None
    rows = np.array([k for k, _ in pairs], dtype=np.intp)
    test = {b: 0.8 + 0.03 * i for i, b in enumerate(tree.body_names)}  # uneven: every body its own factor
    want = _neutral_points_osim(generic_model, sk, test)[rows]
    for translations in ("parent", "child"):
        got = tree.scaled(test, translations).evaluate(q)[0]
        if np.abs(got - want).max() <= _NEUTRAL_CHECK_M:
            _NEUTRAL_TREES[key] = (generic_model, (tree, q, rows, translations))
            return _NEUTRAL_TREES[key][1]
    return None


def _neutral_lengths(generic_model, sk: Skeleton, factors: Mapping[str, float] | None) -> dict[str, float]:
    pts = _neutral_points(generic_model, sk, factors)
    return {s: float(d) for s, d in _distances(pts, sk.keypoints).items()}


def _ik_ratios(generic: Path, sk: Skeleton, factors: Mapping[str, float], pts: np.ndarray,
               settings: ScalingSettings, starts: list | None = None) -> tuple[dict[str, float], list]:
    """Per segment, the trimmed mean of data / model landmark distance, the scaled model fitted
    by IK to each frame of ``pts`` (F, K, 3) world m; and the F fitted poses (None: failed).

    ``starts``: the poses of a previous refinement (the same frames, slightly different
    factors): each frame starts from its own previous fit (a few iterations instead of tracking
    from one sampled frame to the next)."""
    from rtkin.kinematics.ik import IKError, IKSettings, IKSolver

    # the model scale_model would write, built in memory (no file written and read back)
    model = template_model(Path(generic), sk).clone()
    scale_tool_manual(model, factors)
    ik = IKSolver(IKSettings(skeleton=sk.name, smoothing=0.0, gate_m=math.inf, outlier_m=math.inf, max_gap_s=_REFINE_GAP_S,
                             max_iterations=_REFINE_IK_ITERATIONS, max_marker_rms_m=0.2), model_path=generic, model=model)
    # the fitted keypoints are the solution's model markers (marker_points' rows, without OpenSim)
    own = ik.marker_points[:len(sk.markers)]
    rows = np.flatnonzero(own < sk.n_keypoints)
    data, fitted, poses = [], [], []
    for f, p in enumerate(pts):
        if starts is not None:
            ik.start_from(starts[f])
        try:
            ik.solve(p, time_s=f * _REFINE_DT_S)
        except IKError:
            ik.reset()
            poses.append(None)
            continue
        poses.append(ik.pose)
        m = np.full((sk.n_keypoints, 3), np.nan)
        m[own[rows]] = ik.last_model_markers[rows]
        data.append(p)
        fitted.append(m @ WORLD_FROM_OSIM.T)
    if not data:
        return {s: math.nan for s in SEGMENTS}, poses
    dd = _distances(np.stack(data), sk.keypoints)
    dm = _distances(np.stack(fitted), sk.keypoints)
    out = {}
    for s in SEGMENTS:
        r = dd[s] / dm[s]
        r = r[np.isfinite(r)]
        out[s] = _trimmed_mean(r, settings.trim_fraction) if r.size >= min(settings.min_samples, len(data)) else math.nan
    return out, poses


# ============================================================================ scaled model


def scale_model(generic_path: str | Path | None, factors: Mapping[str, float], out_path: str | Path,
                mass_kg: float | None = None, skeleton: str = "HALPE_26") -> Path:
    """Write the generic model scaled by per-body uniform ``factors`` to ``out_path`` (.osim).

    The skeleton's Pose2Sim markers are added before scaling, so the saved model carries them at
    their scaled locations (:class:`rtkin.kinematics.ik.IKSolver` keeps markers a model already has).
    Bodies not in ``factors`` keep factor 1; names the model lacks are ignored. ``mass_kg``: the
    total mass, distribution preserved; None = masses scale with the body volumes (OpenSim).
    """
    return write_model(scaled_model(generic_path, factors, mass_kg, skeleton), out_path)


def scaled_model(generic_path: str | Path | None, factors: Mapping[str, float], mass_kg: float | None = None,
                 skeleton: str = "HALPE_26", extra_marker_set: str | Path = ""):
    """The model :func:`scale_model` writes, in memory (an ``opensim.Model`` the caller owns);
    with ``extra_marker_set``'s markers too (e.g. the augmented ones), scaled with their bodies."""
    model = template_model(Path(generic_path or assets.model_path()), _skeleton(skeleton), extra_marker_set).clone()
    scale_tool_manual(model, factors, mass_kg)
    model.setName(f"{model.getName()}_scaled")
    return model


def write_model(model, out_path: str | Path) -> Path:
    """Write ``model`` (from :func:`scaled_model`) to ``out_path`` (.osim), creating its folder.
    The file is replaced whole: written beside it first (``.<name>.<pid>.part``), then renamed, so
    a process killed while writing leaves the previous file, not half of a new one."""
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    part = out.with_name(f".{out.name}.{os.getpid()}.part")
    try:
        if not model.printToXML(str(part)):
            raise RuntimeError(f"could not write {out}")
        os.replace(part, out)
    finally:
        part.unlink(missing_ok=True)
    return out


# ============================================================================ live stage


class OnlineScaler:
    """Live scaling stage: collects good frames of one person, then writes the scaled model.

    Call it with each :class:`~rtkin.core.messages.Skeleton3D`; it returns the scaled model path once
    (the call that completes the collection, which blocks for the factor computation, ~1-3 s),
    None otherwise. The person is ``person_id`` or, if None, the first one seen.

    Args:
        settings: scaling settings.
        out_path: where to write the scaled model (default: a temporary directory).
        person_id: track id to scale.
        background: compute the factors and the scaled model in a worker process, so a live caller
            is not blocked for the 1-2 s it takes; the path comes out of a later call.
        executor: with ``background``, a ``concurrent.futures`` executor to run it in (a live
            process starts one early, see :func:`background_executor`, so the process start and
            its imports do not land in the middle of the session); None = one started on demand.
    """

    def __init__(self, settings: ScalingSettings = ScalingSettings(), out_path: str | Path | None = None,
                 person_id: int | None = None, background: bool = False, executor=None):
        self.settings = settings
        self.background = background
        self._future = None
        self._pool = None
        self._executor = executor
        self.skeleton = get_skeleton(settings.skeleton)
        self.person_id = person_id
        self.out_path = Path(out_path) if out_path else Path(tempfile.mkdtemp(prefix="rtkin_scaled_")) / "scaled.osim"
        self.reset()

    def reset(self) -> None:
        """Forget the collected frames and any result."""
        self._frames: list[np.ndarray] = []
        self._times: list[int] = []
        self._seen = 0
        self.result: ScalingResult | None = None
        self.model_path: Path | None = None
        self.error: str | None = None
        self._future = None

    @property
    def done(self) -> bool:
        return self.model_path is not None

    @property
    def frames_needed(self) -> int:
        """Good frames needed: ``seconds`` x the frame rate estimated from the message times."""
        if len(self._times) < 2:
            return max(1, int(round(self.settings.seconds * 30.0)))
        dt = float(np.median(np.diff(np.asarray(self._times[-200:], dtype=np.int64)))) * 1e-9
        fps = 1.0 / dt if dt > 0 else 30.0
        return max(1, int(round(self.settings.seconds * fps)))

    def __call__(self, sk: Skeleton3D) -> Path | None:
        if self._future is not None:
            return self._collect_background()
        if self.done:
            return None
        if sk.n_people == 0:
            return None
        ids = [int(i) for i in sk.person_ids]
        if self.person_id is None:
            self.person_id = ids[0]
        if self.person_id not in ids:
            return None
        if sk.skeleton != self.skeleton.name:
            raise ValueError(f"OnlineScaler expects {self.skeleton.name} points, got {sk.skeleton}")
        n = ids.index(self.person_id)
        self._seen += 1
        self._times.append(int(sk.time_ns))
        pts = usable_points(sk, n, self.settings)
        if not good_frames(pts[None], self.skeleton, self.settings)[0]:
            return None
        self._frames.append(pts)
        if len(self._frames) < self.frames_needed:
            return None
        return self._finish()

    def _finish(self) -> Path | None:
        s = self.settings
        if self.background:
            if self._executor is None:
                self._pool = background_executor()
            pool = self._executor or self._pool
            self._future = pool.submit(_scale_job, np.stack(self._frames), self.skeleton.name, s, self.out_path)
            return None
        try:
            self.result = scale_factors(np.stack(self._frames), self.skeleton, s)
            self.model_path = scale_model(s.model or None, self.result.factors, self.out_path,
                                          mass_kg=s.mass_kg or None, skeleton=self.skeleton.name)
        except Exception as e:  # noqa: BLE001 - reported in the status, collection restarts
            self.error = f"{type(e).__name__}: {e}"
            self._frames.clear()
            return None
        return self.model_path

    def _collect_background(self) -> Path | None:
        """The background job's model path once it has finished (once), else None."""
        if not self._future.done():
            return None
        future, self._future = self._future, None
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None
        try:
            self.result, self.model_path = future.result()
        except Exception as e:  # noqa: BLE001 - reported in the status, collection restarts
            self.error = f"{type(e).__name__}: {e}"
            self._frames.clear()
            return None
        return self.model_path

    def status(self) -> dict[str, Any]:
        """``state`` (``collecting`` / ``done``), ``frames`` n / ``needed`` N, factors, model."""
        st: dict[str, Any] = {"state": "done" if self.done else "collecting", "frames": len(self._frames),
                              "needed": self.frames_needed, "seen": self._seen, "person_id": self.person_id}
        if self.result is not None:
            st["factors"] = dict(self.result.factors)
            st["missing"] = list(self.result.missing)
        if self.model_path is not None:
            st["model"] = str(self.model_path)
        if self.error:
            st["error"] = self.error
        return st


def background_executor(warm: bool = False):
    """A one-process pool for background scaling jobs, at low priority (niceness
    ``BACKGROUND_NICE``, set before it imports anything heavy): it yields the CPU to the live
    stages. ``warm``: start the process now (and wait for it) instead of at the first job."""
    import multiprocessing as mp

    from rtkin.core.priority import background_init

    pool = cf.ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn"),
                                  initializer=background_init, initargs=(BACKGROUND_NICE,))
    if warm:
        pool.submit(os.getpid).result(timeout=120)
    return pool


class InlineExecutor(cf.Executor):
    """Runs a submitted job at once, in this process: the background pool's deterministic stand-in
    (offline simulation), and the last write of a session whose pool is stopped."""

    def submit(self, fn, /, *args, **kwargs):
        fut: cf.Future = cf.Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except Exception as e:  # noqa: BLE001 - handed to the caller through the future
            fut.set_exception(e)
        return fut


def _scale_job(frames: np.ndarray, skeleton: str, settings: ScalingSettings, out_path) -> tuple:
    """Scale factors and scaled model from collected frames (runs in a worker process)."""
    result = scale_factors(frames, skeleton, settings)
    path = scale_model(settings.model or None, result.factors, out_path, mass_kg=settings.mass_kg or None,
                       skeleton=skeleton)
    return result, path
