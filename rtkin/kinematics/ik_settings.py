"""Settings of the per-frame IK (:class:`rtkin.kinematics.ik.IKSolver`), defaults in one place
(TOML ``[ik.solver]`` maps 1:1), and the Pose2Sim IK-setup marker weights.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from rtkin.core import assets
from rtkin.core.skeletons import get_skeleton

__all__ = ["METHODS", "PELVIS_PITCH", "IKSettings", "ik_marker_weights"]

#: Solver back-ends of :class:`IKSolver`.
METHODS = ("gauss_newton", "opensim")


#: Name of the anterior pelvis tilt in :attr:`IKSettings.posture_prior` (not a model coordinate).
PELVIS_PITCH = "pelvis_anterior_tilt"


@dataclass(frozen=True)
class IKSettings:
    """Inverse-kinematics settings (defaults in one place; TOML keys map 1:1).

    Attributes:
        skeleton: keypoint set of the incoming Skeleton3D, e.g. ``"HALPE_26"``; selects the
            Pose2Sim marker set and IK setup (marker weights).
        model: OpenSim model file; ``""`` = Pose2Sim's ``Model_Pose2Sim_simple.osim``.
        method: ``"gauss_newton"`` (default) or ``"opensim"`` (``InverseKinematicsSolver``).
        accuracy: convergence tolerance of OpenSim's assembler (``setAccuracy``), dimensionless;
            ``method="opensim"`` only.
        constraint_weight: weight of the model's kinematic constraints (``inf`` = enforced
            exactly, as OpenSim's default); ``method="opensim"`` only (the Pose2Sim models have
            no constraints).
        marker_weights: ``(marker name, weight)`` overrides of the weights read from Pose2Sim's
            IK setup XML for ``skeleton`` (dimensionless, >= 0; 0 = never used).
        min_score: a keypoint with a score below this is not used (score units, 0..1).
        max_reproj_px: a keypoint with a mean reprojection error above this is not used, px.
        held_weight: weight factor of a finite point a filter held through a gap
            (``n_views == 0``), 0..1; 0 = do not use held points.
        fixed_coordinates: coordinates held at their model default, not solved: forearm rotation
            is not observable from a wrist keypoint, toe flexion from two toe keypoints only
            adds noise to the ankle. Coordinates that move no marker are always held.
        bound_to_range: keep every coordinate except the root joint's (pelvis) within its model
            range, clamped or not (the model leaves the shoulders unclamped: an unobserved
            arm rotation could otherwise wind up); clamped coordinates are always bounded.
        robust_scale_m: scale ``c`` of the Cauchy loss on marker distances (``gauss_newton``),
            m: a marker ``d`` away from the model weighs ``1 / (1 + d^2 / c^2)`` of its weight,
            so a 20 cm glitch barely pulls the pose; ``inf`` = plain least squares.
        min_markers: fewer usable markers than this -> no solution for the frame.
        max_iterations: Gauss-Newton iterations per frame, warm-started (``gauss_newton``).
        first_iterations: Gauss-Newton iterations for a first frame (from the initial guess).
        step_tolerance: Gauss-Newton stops when no coordinate moves more than this in one
            iteration, rad for rotations / m for translations.
        damping: initial Levenberg-Marquardt damping (dimensionless; multiplies the diagonal).
        smoothing: random-walk prior pulling every solved coordinate towards its previous-frame
            value (``gauss_newton``): weight ``smoothing / dt`` (dt = time since the previous
            solve, s) in m^2 of weighted marker error per rad^2 (or m^2), so m^2 s / rad^2; the
            default is 1e-3 at 60 Hz. It steadies weakly observed directions (pelvis tilt vs
            lumbar and hip flexion, arm rotation with a nearly straight elbow) at the cost of a
            small lag there. 0 = none.
        gate_m, gate_accel_mps2: innovation gate: before solving, a marker farther than
            ``gate_m + gate_accel_mps2 * dt^2 / 2`` (m, m/s^2; dt = time since the previous
            frame, s) from its constant-velocity prediction (its observations in the last two
            solved frames) loses its weight (smoothly: half at that distance, 4 % at 1.5 times
            it): 0.074 m at 60 Hz, 0.116 m at 30 Hz. ``inf`` disables.
        max_gated_frames: a marker is gated at most this many frames in a row, then used again
            (so a truly fast movement cannot lock it out); a marker dropped as an outlier
            (``outlier_m``) this many solves in a row is tried again each frame: if the pose can
            take it back without costing the other markers, the pose was wrong and moves
            towards it (see ``IKSolver._unlock``).
        outlier_m: a used marker farther than this from the model after the solve (m) is dropped
            and the frame solved again without it (``inf`` disables).
        cold_accept_m: a cold start (first frame, or after a failure) tries initial arm poses in
            turn until the marker RMS error is below this, m, and keeps the best.
        max_marker_rms_m: a solution whose marker RMS error exceeds this (m) is retried from the
            initial guess; if it still exceeds it, the frame fails (no output) and the next frame
            starts from the last good pose again; after 3 failures in a row, cold.
        posture_prior: ``(coordinate, weight, fade)``: a weak prior pulling each coordinate
            towards neutral (0): ``weight`` of ``q^2`` in m^2 of weighted marker error per rad^2;
            ``fade`` > 0 (m^2/rad^2): the weight fades linearly to 0 as the keypoints' own
            information on the coordinate (the normal matrix's diagonal) reaches ``fade``. A
            weak prior acts in proportion to how weakly the keypoints observe the coordinate:
            against a direction they see well (information ~1e-1 m^2/rad^2 per frame) it costs
            nothing, along one they barely see it decides. Hip, RHip and LHip are colinear in
            the pelvis frame, so pelvis tilt, lumbar flexion, hip and neck flexion trade off
            along one direction with ~1e-3 m^2/rad^2 per frame (a few mm of model or data error
            move it by degrees; left alone it settles 5-10 deg off): held near upright. Upper-arm
            axial rotation is seen only through the wrist's offset from the humerus axis (~2e-3
            with a straight elbow, 0.015 at 30 deg, 0.06 at 90 deg): held near neutral while the
            elbow is nearly straight, free once it bends. Empty = none.
        ranges: ``(coordinate, min, max)`` (rad or m) replacing the model's range when bounding:
            Pose2Sim's model stops the shoulder at 90 deg of flexion and 120 deg of abduction,
            so an arm raised overhead has no solution inside the range and the IK settles in
            arbitrary compromises at the bounds; by default flexion and abduction reach 180 deg.
        max_joint_speed_rad_s, max_root_speed_rad_s, max_root_speed_m_s: how fast a body can
            move: a warm-started frame's coordinates stay within these speeds of the previous
            frame's (the joints and the pelvis heading 1000 deg/s; the pelvis tilt and list
            250 deg/s; translations 5 m/s), so noise or a glitch cannot make the angles jump.
            The pelvis also turns at most ``max_root_speed_rad_s`` about horizontal axes
            whatever the coordinates (``pelvis_rotation`` turns about the pelvis's own long
            axis, which leans with the body), at the joint speed about the vertical.
        jump_resolve_ratio: when a warm-started frame ends on one of those speed bounds (the data
            asks for a jump) with a marker RMS above twice the recent median, it is solved again
            cold from the initial poses; if that pose (a re-acquisition: the previous pose was
            wrong, e.g. a mirrored arm) fits with a marker RMS below this fraction of the bounded
            one's, the frame moves towards it within the speed bounds (no jump), and the next
            frames follow.
        max_gap_s: a person's frame more than this after their previous one (s) starts cold.
        forget_after_s: IKStage drops the solver of a person not seen for this long, s.
        min_views: a dependency marker triangulated from fewer cameras sets FEW_VIEWS.
        high_reproj_px: a dependency marker with a larger reprojection error (px) sets
            HIGH_REPROJ.
        extra_marker_set: OpenSim marker set file whose markers are added to the model (e.g.
            Pose2Sim's ``Markers_LSTM.xml``); set by ``[ik] augment`` (see
            :func:`rtkin.kinematics.augment.augmented_ik_settings`), "" = none.
        extra_marker_weights: ``(marker name, weight)`` of the extra markers tracked after the
            skeleton's, in this order (dimensionless, >= 0); their positions come with each frame
            (``IKSolver.markers_from_points(..., extra=...)``).
    """

    skeleton: str = "HALPE_26"
    model: str = ""
    method: str = "gauss_newton"
    accuracy: float = 1e-3
    constraint_weight: float = math.inf
    marker_weights: tuple[tuple[str, float], ...] = ()
    min_score: float = 0.3
    max_reproj_px: float = 15.0
    held_weight: float = 0.5
    fixed_coordinates: tuple[str, ...] = ("pro_sup_r", "pro_sup_l", "mtp_angle_r", "mtp_angle_l")
    bound_to_range: bool = True
    min_markers: int = 8
    max_iterations: int = 6
    first_iterations: int = 60
    step_tolerance: float = 1e-3
    damping: float = 1e-4
    smoothing: float = 1.7e-5
    robust_scale_m: float = 0.02
    gate_m: float = 0.06
    gate_accel_mps2: float = 100.0
    max_gated_frames: int = 3
    outlier_m: float = 0.1
    cold_accept_m: float = 0.002
    max_marker_rms_m: float = 0.08
    posture_prior: tuple[tuple[str, float, float], ...] = (
        (PELVIS_PITCH, 5e-3, 0.0), ("L5_S1_Flex_Ext", 5e-3, 0.0),
        ("arm_rot_r", 3e-3, 0.01), ("arm_rot_l", 3e-3, 0.01))
    ranges: tuple[tuple[str, float, float], ...] = (
        ("arm_flex_r", -1.5708, 3.1416), ("arm_flex_l", -1.5708, 3.1416),
        ("arm_add_r", -3.1416, 1.5708), ("arm_add_l", -3.1416, 1.5708))
    max_joint_speed_rad_s: float = 17.5
    max_root_speed_rad_s: float = 4.4
    max_root_speed_m_s: float = 5.0
    jump_resolve_ratio: float = 0.6
    max_gap_s: float = 0.5
    forget_after_s: float = 5.0
    min_views: int = 2
    high_reproj_px: float = 10.0
    extra_marker_set: str = ""
    extra_marker_weights: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"IKSettings.method must be one of {METHODS}, got {self.method!r}")
        get_skeleton(self.skeleton)  # KeyError for an unknown skeleton
        positive = ("accuracy", "constraint_weight", "step_tolerance", "damping", "max_marker_rms_m", "outlier_m",
                    "cold_accept_m", "robust_scale_m", "gate_m", "max_reproj_px", "high_reproj_px",
                    "max_gap_s", "forget_after_s")
        for name in positive:
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and v > 0 and not math.isnan(v)):
                raise ValueError(f"IKSettings.{name} must be > 0, got {v!r}")
        if not (self.gate_accel_mps2 >= 0 and math.isfinite(self.gate_accel_mps2)):
            raise ValueError(f"IKSettings.gate_accel_mps2 must be finite and >= 0, got {self.gate_accel_mps2!r}")
        if not 0.0 <= self.held_weight <= 1.0:
            raise ValueError(f"IKSettings.held_weight must be in [0, 1], got {self.held_weight!r}")
        if not 0.0 <= self.min_score:
            raise ValueError(f"IKSettings.min_score must be >= 0, got {self.min_score!r}")
        for entry in self.ranges:
            if not (len(entry) == 3 and isinstance(entry[0], str) and entry[1] < entry[2]):
                raise ValueError(f"IKSettings.ranges: bad entry {entry!r} (coordinate, min < max)")
        for entry in self.posture_prior:
            if not (len(entry) == 3 and isinstance(entry[0], str) and all(v >= 0 and math.isfinite(v) for v in entry[1:])):
                raise ValueError(f"IKSettings.posture_prior: bad entry {entry!r} (coordinate, weight >= 0, fade >= 0)")
        if not (self.smoothing >= 0 and math.isfinite(self.smoothing)):
            raise ValueError(f"IKSettings.smoothing must be finite and >= 0, got {self.smoothing!r}")
        for name in ("max_joint_speed_rad_s", "max_root_speed_rad_s", "max_root_speed_m_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"IKSettings.{name} must be > 0, got {getattr(self, name)!r}")
        if not 0 <= self.jump_resolve_ratio <= 1:
            raise ValueError(f"IKSettings.jump_resolve_ratio must be in [0, 1], got {self.jump_resolve_ratio!r}")
        for name in ("min_markers", "max_iterations", "first_iterations", "min_views", "max_gated_frames"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"IKSettings.{name} must be an int >= 1, got {v!r}")
        for name, w in self.marker_weights:
            if not (isinstance(name, str) and w >= 0 and math.isfinite(w)):
                raise ValueError(f"IKSettings.marker_weights: bad entry {(name, w)!r}")
        for name, w in self.extra_marker_weights:
            if not (isinstance(name, str) and w >= 0 and math.isfinite(w)):
                raise ValueError(f"IKSettings.extra_marker_weights: bad entry {(name, w)!r}")
        if self.extra_marker_weights and not self.extra_marker_set:
            raise ValueError("IKSettings.extra_marker_weights needs extra_marker_set (the file defining them)")


def ik_marker_weights(skeleton: str) -> dict[str, float]:
    """Marker weights of Pose2Sim's IK setup for ``skeleton`` (``IKMarkerTask``: weight, or 0 if
    ``apply`` is false), e.g. ``IK_Setup_Pose2Sim_Halpe26.xml``: shoulders and hips 2, nose and
    head 0.1, neck 0.2, the rest 1. Dimensionless."""
    root = ET.parse(assets.ik_setup_path(skeleton)).getroot()
    out: dict[str, float] = {}
    for task in root.iter("IKMarkerTask"):
        apply = (task.findtext("apply") or "true").strip().lower() == "true"
        weight = float((task.findtext("weight") or "0").strip())
        out[task.get("name", "")] = weight if apply else 0.0
    return out
