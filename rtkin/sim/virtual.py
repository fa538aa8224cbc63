"""The virtual subject: ground truth without a mocap lab.

A known, smooth, seeded motion of the Pose2Sim OpenSim model (``Model_Pose2Sim_simple.osim``)
drives its keypoint markers by forward kinematics; the 3D keypoints are projected into a rig and
corrupted as a real 2D pose estimator does (pixel noise, a score model, dropouts, confident
outliers, left/right swaps, bystanders, timestamp jitter). The coordinates that drive the model
are the truth for joint angles; the 3D keypoints are the truth for triangulation.

Three steps, each usable alone:

- :func:`generate_motion` -> :class:`Motion` (T, Q) coordinate values, OpenSim units (rad, m).
- :func:`simulate_subject` -> :class:`SubjectTruth`: motion + HALPE_26 keypoints (T, K, 3) in the
  world frame (z up), by OpenSim forward kinematics, cached on disk.
- :func:`render_views` -> :class:`Views`: per camera, per frame, 2D detections (P, K, 3) with
  capture timestamps, and which detection is which subject.

Keypoints are the markers of Pose2Sim's ``Markers_Halpe26.xml`` (COCO_17 keypoints are the same
landmarks, so they are taken by name; Pose2Sim's ``Markers_Coco17.xml`` places RHip on the knee,
which is not what a pose model sees). Eyes and ears have no marker there: they are placed on the
head body at the offsets in :data:`HEAD_LANDMARKS`.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from rtkin.core import assets
from rtkin.core.calibration import Rig
from rtkin.core.frames import OSIM_FROM_WORLD, WORLD_FROM_OSIM
from rtkin.core.messages import KeypointFrame
from rtkin.core.skeletons import get_skeleton
from rtkin.sim.patterns import EXTRA_PATTERNS

__all__ = [
    "MotionSettings",
    "Motion",
    "SubjectTruth",
    "CorruptionSettings",
    "Views",
    "generate_motion",
    "simulate_subject",
    "render_views",
    "ring_rig",
    "demo_rig",
    "bystander",
    "orbiting_group",
    "arrival_order",
    "DEMO_BYSTANDER_CENTER",
    "OBSERVABLE_COORDINATES",
]

#: Coordinates the keypoints can observe; the motion drives these (others stay at default).
from rtkin.kinematics.model import OBSERVABLE_COORDINATES  # noqa: E402  (re-exported: the coordinates it drives)

#: Head landmarks without a Pose2Sim marker: head-body frame location, m (x fwd, y up, z right).
HEAD_LANDMARKS = {
    "LEye": (0.098, 0.045, -0.032),
    "REye": (0.098, 0.045, 0.032),
    "LEar": (0.005, 0.030, -0.075),
    "REar": (0.005, 0.030, 0.075),
}

_FOOT_KEYPOINTS = ("LHeel", "RHeel", "LBigToe", "RBigToe", "LSmallToe", "RSmallToe", "LAnkle", "RAnkle")
_FK_VERSION = 1  # bump when the FK or marker placement changes (invalidates the disk cache)


def _deg(x):
    return np.deg2rad(x)


# ============================================================================ motion


@dataclass(frozen=True)
class MotionSettings:
    """A seeded, smooth motion: walking-like cycle, squats, arm raises, repeating.

    Attributes:
        duration_s: length, s (the schedule repeats every ``sum(segments_s)``).
        fps: sample rate, Hz.
        seed: randomises amplitudes, gait frequency and phases, heading and drift.
        center_m: world (x, y) of the pelvis path centre, m (default: where the Pose2Sim demo's
            subject stands in its rig).
        heading_rad: mean facing direction, rad about world z; 0 faces world +y.
        wander_m: amplitude of the slow drift of the pelvis around the centre, m.
        turn_rad: amplitude of the slow heading oscillation, rad.
        segments: schedule of named segments (``walk``, ``squat``, ``arm_raise``, ``stand``,
            ``lunge``, ``trunk_bend``, ``march``: see :mod:`rtkin.sim.patterns`).
        segments_s: durations of the segments, s.
        ramp_s: blend time between segments, s.
        amplitude: global scale of the joint excursions (1 = nominal).
        orbit_radius_m: > 0: walk around ``center_m`` on a circle of this radius, m, facing the
            direction of travel (replaces the drift and heading oscillation).
        orbit_period_s: time for one lap, s; negative laps clockwise.
        orbit_phase_rad: starting angle on the circle, rad (0 = +x of the centre).
    """

    duration_s: float = 12.0
    fps: float = 60.0
    seed: int = 0
    center_m: tuple[float, float] = (-0.9, 0.0)
    heading_rad: float = 0.0
    wander_m: float = 0.25
    turn_rad: float = 0.5
    segments: tuple[str, ...] = ("walk", "squat", "arm_raise")
    segments_s: tuple[float, ...] = (4.0, 3.0, 3.0)
    ramp_s: float = 0.6
    amplitude: float = 1.0
    orbit_radius_m: float = 0.0
    orbit_period_s: float = 12.0
    orbit_phase_rad: float = 0.0

    def __post_init__(self) -> None:
        if self.orbit_radius_m > 0 and self.orbit_period_s == 0:
            raise ValueError("orbit_period_s must be non-zero")
        if self.duration_s <= 0 or self.fps <= 0:
            raise ValueError("duration_s and fps must be > 0")
        if len(self.segments) != len(self.segments_s) or not self.segments:
            raise ValueError("segments and segments_s must be non-empty and of equal length")
        unknown = set(self.segments) - set(_PATTERNS)
        if unknown:
            raise ValueError(f"unknown motion segments {sorted(unknown)}; known: {sorted(_PATTERNS)}")

    @property
    def n_frames(self) -> int:
        return int(round(self.duration_s * self.fps))


@dataclass(frozen=True, eq=False)
class Motion:
    """Coordinate trajectories of the OpenSim model.

    Attributes:
        time_s: (T,) s from the start.
        names: (Q,) coordinate names (model order).
        values: (T, Q) rad for rotations, m for translations (OpenSim ground frame, y up).
    """

    time_s: np.ndarray
    names: tuple[str, ...]
    values: np.ndarray

    def __getitem__(self, name: str) -> np.ndarray:
        """(T,) trajectory of one coordinate."""
        return self.values[:, self.names.index(name)]


def _wrap(phi):
    return (phi + 0.5) % 1.0 - 0.5


def _bump(phi, center, width):
    return np.exp(-0.5 * (_wrap(phi - center) / width) ** 2)


def _walk(t, rng, amp):
    f = rng.uniform(0.9, 1.1)
    phi = f * t + rng.uniform(0, 1)
    out = {}
    for side, ph in (("r", phi), ("l", phi + 0.5)):
        c = np.cos(2 * np.pi * ph)
        out[f"hip_flexion_{side}"] = _deg(10 + 20 * c)
        out[f"hip_adduction_{side}"] = _deg(3 * np.cos(2 * np.pi * (ph - 0.1)))
        out[f"hip_rotation_{side}"] = _deg(4 * np.sin(2 * np.pi * ph))
        out[f"knee_angle_{side}"] = _deg(5 + 15 * _bump(ph, 0.15, 0.06) + 55 * _bump(ph, 0.72, 0.1))
        out[f"ankle_angle_{side}"] = _deg(2 + 8 * _bump(ph, 0.45, 0.12) - 15 * _bump(ph, 0.62, 0.05))
        out[f"arm_flex_{side}"] = _deg(-20 * c)
        out[f"elbow_flex_{side}"] = _deg(25 + 10 * c)
    out["pelvis_tilt"] = _deg(2 * np.sin(4 * np.pi * phi))
    out["pelvis_list"] = _deg(4 * np.sin(2 * np.pi * phi))
    out["pelvis_rotation"] = _deg(5 * np.sin(2 * np.pi * phi))
    out["L5_S1_Flex_Ext"] = _deg(3 * np.sin(4 * np.pi * phi))
    out["L5_S1_Lat_Bending"] = -0.5 * out["pelvis_list"]
    out["L5_S1_axial_rotation"] = -0.8 * out["pelvis_rotation"]
    return {k: v * amp for k, v in out.items()}


def _squat(t, rng, amp):
    period = rng.uniform(1.4, 1.7)
    d = 0.5 - 0.5 * np.cos(2 * np.pi * t / period)
    depth = amp * rng.uniform(0.9, 1.1)
    out = {"pelvis_tilt": _deg(-20 * d), "L5_S1_Flex_Ext": _deg(-10 * d)}
    for side in ("r", "l"):
        out[f"hip_flexion_{side}"] = _deg(80 * d)
        out[f"knee_angle_{side}"] = _deg(100 * d)
        out[f"ankle_angle_{side}"] = _deg(25 * d)
        out[f"hip_adduction_{side}"] = _deg(-5 * d)
        out[f"arm_flex_{side}"] = _deg(60 * d)
        out[f"elbow_flex_{side}"] = _deg(30 * d)
    return {k: v * depth for k, v in out.items()}


def _arm_raise(t, rng, amp):
    period = rng.uniform(1.4, 1.7)
    a = 0.5 - 0.5 * np.cos(2 * np.pi * t / period)
    s = np.sin(2 * np.pi * t / (2 * period))
    out = {
        "arm_add_r": _deg(-100 * a),
        "arm_flex_r": _deg(10 * a),
        "arm_rot_r": _deg(30 * s),
        "elbow_flex_r": _deg(15 + 20 * a),
        "arm_flex_l": _deg(80 * a),
        "arm_add_l": _deg(-20 * a),
        "arm_rot_l": _deg(-25 * s),
        "elbow_flex_l": _deg(20 + 70 * a),
        "L5_S1_Lat_Bending": _deg(10 * s),
        "L5_S1_axial_rotation": _deg(15 * s),
        "pelvis_rotation": _deg(10 * s),
        "knee_angle_r": _deg(8 * a),
        "knee_angle_l": _deg(8 * a),
    }
    return {k: v * amp for k, v in out.items()}


def _stand(t, rng, amp):
    return {"pelvis_list": _deg(1.5 * np.sin(2 * np.pi * t / 3.1)), "L5_S1_Flex_Ext": _deg(2 * np.sin(2 * np.pi * t / 4.3))}


_PATTERNS = {"walk": _walk, "squat": _squat, "arm_raise": _arm_raise, "stand": _stand}
_PATTERNS.update(EXTRA_PATTERNS)  # lunge, trunk_bend, march (walking in place)

#: Neutral standing pose (deviations from the model defaults), rad.
_BASELINE = {"arm_add_r": _deg(-8), "arm_add_l": _deg(-8), "elbow_flex_r": _deg(10), "elbow_flex_l": _deg(10),
             "knee_angle_r": _deg(3), "knee_angle_l": _deg(3)}


def _smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * x * (x * (6 * x - 15) + 10)


def _segment_weights(t, settings: MotionSettings) -> np.ndarray:
    """(S, T) blend weights of the schedule's segments, summing to 1, periodic."""
    period = float(sum(settings.segments_s))
    starts = np.concatenate([[0.0], np.cumsum(settings.segments_s)[:-1]])
    r = settings.ramp_s
    w = np.zeros((len(starts), t.size))
    for i, (s, d) in enumerate(zip(starts, settings.segments_s)):
        for shift in (-period, 0.0, period):
            tc = t % period + shift
            w[i] += _smoothstep((tc - s) / r + 0.5) * (1 - _smoothstep((tc - s - d) / r + 0.5))
    return w / w.sum(axis=0, keepdims=True)


def generate_motion(settings: MotionSettings = MotionSettings(), names: Sequence[str] | None = None,
                    defaults: Mapping[str, float] | None = None) -> Motion:
    """Seeded smooth motion of the model's coordinates.

    Args:
        settings: the schedule and its randomisation.
        names: all coordinate names of the model, in model order (default: read from the model).
        defaults: default value per coordinate (default: read from the model).

    Returns:
        Motion with (T, Q) values; ``pelvis_ty`` is provisional (the feet are put on the floor by
        :func:`simulate_subject`, which updates it).
    """
    if names is None or defaults is None:
        names, defaults = _model_coordinates()
    T = settings.n_frames
    t = np.arange(T) / settings.fps
    rng = np.random.default_rng(settings.seed)
    # observable coordinates start from the anatomical neutral pose (0; the model's default has
    # the arms out horizontally), the others stay at the model's defaults
    vals = {n: np.full(T, 0.0 if n in OBSERVABLE_COORDINATES and n != "pelvis_ty" else float(defaults[n]))
            for n in names}
    for k, v in _BASELINE.items():
        vals[k] = vals[k] + v
    weights = _segment_weights(t, settings)
    for i, seg in enumerate(settings.segments):
        amp = settings.amplitude * rng.uniform(0.85, 1.15)
        for k, v in _PATTERNS[seg](t, rng, amp).items():
            vals[k] = vals[k] + weights[i] * v
    _add_path(vals, t, rng, settings)
    values = np.stack([vals[n] for n in names], axis=1)
    return Motion(t, tuple(names), values)


def _add_path(vals, t, rng, s: MotionSettings) -> None:
    """Heading oscillation and a slow drift around ``center_m`` (world), in OpenSim ground."""
    ph = rng.uniform(0, 2 * np.pi, size=3)
    if s.orbit_radius_m > 0:
        ang = s.orbit_phase_rad + 2 * np.pi * t / s.orbit_period_s
        dx = s.orbit_radius_m * np.cos(ang)
        dy = s.orbit_radius_m * np.sin(ang)
        # facing the direction of travel: heading h faces world (-sin h, cos h)
        heading = ang if s.orbit_period_s > 0 else ang + np.pi
        vals["pelvis_rotation"] = vals["pelvis_rotation"] + heading
    else:
        vals["pelvis_rotation"] = vals["pelvis_rotation"] + s.heading_rad + s.turn_rad * np.sin(2 * np.pi * t / 9.0 + ph[0])
        dx = s.wander_m * np.sin(2 * np.pi * t / 7.0 + ph[1])
        dy = s.wander_m * np.sin(2 * np.pi * t / 11.0 + ph[2])
    osim = OSIM_FROM_WORLD @ np.array([s.center_m[0], s.center_m[1], 0.0])
    off = OSIM_FROM_WORLD @ np.stack([dx, dy, np.zeros_like(t)])
    vals["pelvis_tx"] = osim[0] + off[0]
    vals["pelvis_tz"] = osim[2] + off[2]


# ============================================================================ forward kinematics


@dataclass(frozen=True, eq=False)
class SubjectTruth:
    """Ground truth of one virtual subject.

    Attributes:
        motion: coordinates that drove the model (pelvis_ty after putting the feet on the floor).
        keypoint_names: (K,) HALPE_26 names in model order.
        keypoints: (T, K, 3) world coordinates (z up), m.
    """

    motion: Motion
    keypoint_names: tuple[str, ...]
    keypoints: np.ndarray

    @property
    def time_s(self) -> np.ndarray:
        return self.motion.time_s

    def keypoints_for(self, skeleton: str) -> np.ndarray:
        """(T, K', 3) world keypoints of another skeleton (by name: COCO_17 ⊂ HALPE_26)."""
        names = get_skeleton(skeleton).keypoints
        missing = [n for n in names if n not in self.keypoint_names]
        if missing:
            raise ValueError(f"the virtual subject has no {skeleton} keypoints {missing[:5]}...")
        idx = [self.keypoint_names.index(n) for n in names]
        return self.keypoints[:, idx]


def _cache_dir() -> Path:
    base = os.environ.get("RTKIN_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "rtkin")
    return Path(base) / "virtual_subject"


_MODEL_INFO: dict[str, tuple] = {}


def _model_coordinates() -> tuple[tuple[str, ...], dict[str, float]]:
    """Coordinate names (model order) and defaults of the simple model; cached on disk."""
    key = str(assets.model_path())
    if key not in _MODEL_INFO:
        model = _load_model()
        cs = model.getCoordinateSet()
        names = tuple(cs.get(i).getName() for i in range(cs.getSize()))
        _MODEL_INFO[key] = (names, {n: cs.get(n).getDefaultValue() for n in names})
    return _MODEL_INFO[key]


def _load_model(with_markers: bool = False):
    import opensim as osim

    osim.Logger.setLevelString("error")
    model = osim.Model(str(assets.model_path()))
    if with_markers:
        markers = osim.MarkerSet(str(assets.marker_set_path("HALPE_26")))
        for i in range(markers.getSize()):
            model.addMarker(markers.get(i).clone())
        head = model.getBodySet().get("head")
        for name, loc in HEAD_LANDMARKS.items():
            model.addMarker(osim.Marker(name, head, osim.Vec3(*loc)))
    model.initSystem()
    return model


def _fk(motion: Motion, keypoint_names: Sequence[str]) -> np.ndarray:
    """OpenSim forward kinematics of the generic model: (T, K, 3) marker positions in ground, m."""
    model = _load_model(with_markers=True)
    return fk_markers(model, model.initSystem(), motion, keypoint_names)


def fk_markers(model, state, motion: Motion, keypoint_names: Sequence[str]) -> np.ndarray:
    """(T, K, 3) positions in OpenSim ground (m) of ``model``'s named markers along ``motion``."""
    cs = model.getCoordinateSet()
    coords = [cs.get(n) for n in motion.names]
    ms = model.getMarkerSet()
    markers = [ms.get(n) for n in keypoint_names]
    out = np.empty((motion.values.shape[0], len(markers), 3))
    for f, row in enumerate(motion.values):
        for c, val in zip(coords, row):
            c.setValue(state, float(val), False)
        model.realizePosition(state)
        for k, mk in enumerate(markers):
            out[f, k] = mk.getLocationInGround(state).to_numpy()
    return out


def _fk_cached(motion: Motion, keypoint_names: tuple[str, ...]) -> np.ndarray:
    h = hashlib.sha256()
    h.update(f"v{_FK_VERSION}|{assets.model_path().stat().st_size}|{assets.marker_set_path('HALPE_26').stat().st_size}".encode())
    h.update(repr((motion.names, keypoint_names, sorted(HEAD_LANDMARKS.items()))).encode())
    h.update(np.ascontiguousarray(motion.values).tobytes())
    path = _cache_dir() / f"fk_{h.hexdigest()[:24]}.npy"
    if path.exists():
        try:
            arr = np.load(path)
            if arr.shape == (motion.values.shape[0], len(keypoint_names), 3):
                return arr
        except (OSError, ValueError):
            pass  # unreadable cache entry: recompute and overwrite
    arr = _fk(motion, keypoint_names)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npy")
    np.save(tmp, arr)
    os.replace(tmp, path)
    return arr


def _soft_min(x: np.ndarray, axis: int, tau: float = 0.002) -> np.ndarray:
    """Smooth minimum (log-sum-exp), m; at most ``tau * ln(n)`` below the true minimum."""
    m = x.min(axis=axis, keepdims=True)
    return (m - tau * np.log(np.exp(-(x - m) / tau).sum(axis=axis, keepdims=True))).squeeze(axis)


_MEMO: dict[tuple, SubjectTruth] = {}


def simulate_subject(settings: MotionSettings = MotionSettings(), floor_z: float = 0.0) -> SubjectTruth:
    """Motion + HALPE_26 keypoints by forward kinematics, feet on the floor ``floor_z`` (m).

    Cached in memory and on disk (``$RTKIN_CACHE_DIR`` or ``~/.cache/rtkin``), so repeated calls
    cost milliseconds. The vertical placement is a pure translation of the whole body, folded
    into ``pelvis_ty`` so the truth coordinates reproduce the keypoints exactly.
    """
    key = (settings, floor_z)
    if key in _MEMO:
        return _MEMO[key]
    motion = generate_motion(settings)
    names = get_skeleton("HALPE_26").keypoints
    truth = on_floor(motion, tuple(names), _fk_cached(motion, tuple(names)), floor_z)
    _MEMO[key] = truth
    return truth


def on_floor(motion: Motion, names: tuple[str, ...], osim_pts: np.ndarray, floor_z: float = 0.0) -> SubjectTruth:
    """Put the feet on the floor: a vertical translation of the whole body, folded into
    ``pelvis_ty``; osim_pts (T, K, 3) OpenSim ground m -> SubjectTruth in the world (z up)."""
    foot = [names.index(n) for n in _FOOT_KEYPOINTS]
    contact = 0.012  # height of the lowest foot marker above the sole in the default pose, m
    dy = floor_z + contact - _soft_min(osim_pts[:, foot, 1], axis=1)
    osim_pts = osim_pts.copy()
    osim_pts[..., 1] += dy[:, None]
    values = motion.values.copy()
    values[:, motion.names.index("pelvis_ty")] += dy
    world = osim_pts @ WORLD_FROM_OSIM.T
    for arr in (values, world):
        arr.flags.writeable = False
    return SubjectTruth(replace(motion, values=values), names, world)


#: Where a bystander stands in the demo rig: seen by cam01 and cam02 only ("at the back of the
#: room", under cam03 and cam04, as in the real demo videos), 2.35 m behind the subject.
DEMO_BYSTANDER_CENTER = (-3.25, 0.0)


def bystander(seed: int = 7, duration_s: float = 12.0, fps: float = 60.0,
              center_m: tuple[float, float] = DEMO_BYSTANDER_CENTER) -> SubjectTruth:
    """A second person standing and swaying (the ``stand`` segment), facing the room."""
    return simulate_subject(MotionSettings(duration_s=duration_s, fps=fps, seed=seed, center_m=center_m,
                                           wander_m=0.05, turn_rad=0.2, segments=("stand",), segments_s=(5.0,)))


def orbiting_group(n: int = 3, duration_s: float = 12.0, fps: float = 60.0, seed: int = 0,
                   center_m: tuple[float, float] = (0.0, 0.0)) -> list[SubjectTruth]:
    """``n`` subjects walking around each other: alternate laps in opposite directions on circles
    of 0.7 / 1.6 / 2.5 m..., so they pass each other (closest ~0.9 m) every few seconds."""
    out = []
    for i in range(n):
        radius = 0.7 + 0.9 * (i % 3) + 0.3 * (i // 3)
        period = (10.0 + 2.0 * i) * (1 if i % 2 == 0 else -1)
        out.append(simulate_subject(MotionSettings(
            duration_s=duration_s, fps=fps, seed=seed + 101 * i, center_m=center_m, orbit_radius_m=radius,
            orbit_period_s=period, orbit_phase_rad=2 * np.pi * i / n, segments=("walk", "arm_raise", "walk"),
            segments_s=(5.0, 2.0, 5.0))))
    return out


# ============================================================================ rigs


def demo_rig() -> Rig:
    """The Pose2Sim demo rig (4 cameras, Qualisys calibration shipped with pose2sim)."""
    from rtkin.core.calibration import read_qca

    return read_qca(assets.demo_qca_path())


def ring_rig(n: int = 8, radius_m: float = 5.0, height_m: float = 1.8, target_m=(0.0, 0.0, 1.0),
             size=(1920, 1080), focal_px: float = 1400.0, dist=(0.0, 0.0, 0.0, 0.0)) -> Rig:
    """A ring of ``n`` cameras around ``target_m`` (world, z up), all looking at it."""
    from rtkin.core.calibration import Camera, rodrigues_inv

    cams = []
    target = np.asarray(target_m, dtype=np.float64)
    for i in range(n):
        a = 2 * np.pi * i / n
        c = target + np.array([radius_m * np.cos(a), radius_m * np.sin(a), height_m - target[2]])
        z = target - c
        z /= np.linalg.norm(z)
        x = np.cross(z, [0.0, 0.0, 1.0])
        x /= np.linalg.norm(x)
        y = np.cross(z, x)
        R = np.stack([x, y, z])  # world->camera rows: camera axes in world
        K = np.array([[focal_px, 0, size[0] / 2], [0, focal_px, size[1] / 2], [0, 0, 1.0]])
        cams.append(Camera(f"cam{i + 1:02d}", size, K, np.array(dist, dtype=float), rodrigues_inv(R), -R @ c))
    return Rig(tuple(cams))


# ============================================================================ 2D views


@dataclass(frozen=True)
class CorruptionSettings:
    """How the 2D detections deviate from the perfect projections (every knob a parameter).

    Attributes:
        noise_px: std of Gaussian pixel noise, px.
        score_mean, score_std: score of a normal detection (clipped to [0.05, 1]).
        low_score_rate: fraction of points with a low score (0.05..0.35) and 3x the noise.
        dropout_rate: fraction of points missing (score 0).
        outlier_rate: fraction of points displaced by 30..150 px with a confident score.
        swap_rate: probability per view, person and frame of a left/right swap of the whole body.
        jitter_ms: std of the capture-timestamp jitter, ms.
        offset_ms: max absolute constant per-camera clock offset, ms.
        edge_px: points closer than this to the image border (or outside) are missing.
        shuffle: shuffle the order of people in each view.
        duplicate_rate: probability per view, person and frame of a second, partial detection of
            the same person (offset 5-25 px, a third of its keypoints missing, lower scores), as a
            detector that fires twice on one body gives: a "ghost" for the association.
    """

    noise_px: float = 3.0
    score_mean: float = 0.85
    score_std: float = 0.08
    low_score_rate: float = 0.05
    dropout_rate: float = 0.05
    outlier_rate: float = 0.02
    swap_rate: float = 0.005
    jitter_ms: float = 1.0
    offset_ms: float = 2.0
    edge_px: float = 2.0
    shuffle: bool = True
    duplicate_rate: float = 0.0

    @classmethod
    def clean(cls) -> "CorruptionSettings":
        """Perfect projections: no noise, full scores, no corruption, exact timestamps."""
        return cls(noise_px=0.0, score_mean=1.0, score_std=0.0, low_score_rate=0.0, dropout_rate=0.0,
                   outlier_rate=0.0, swap_rate=0.0, jitter_ms=0.0, offset_ms=0.0, shuffle=False)


@dataclass(frozen=True, eq=False)
class Views:
    """2D detections of one or more virtual subjects in every camera of a rig.

    Attributes:
        rig: the rig (camera order).
        skeleton: keypoint set name.
        frames: per camera (rig order), per frame: a KeypointFrame with (P, K, 3) detections.
        identity: per camera, per frame: (P,) index of the subject behind each detection.
        truth_2d: (C, T, S, K, 2) perfect projections, distorted px (NaN behind the camera).
        truth_3d: (T, S, K, 3) world keypoints, m.
        subjects: the subjects' truths.
        time_ns: (T,) ideal capture time of each frame index, ns.
    """

    rig: Rig
    skeleton: str
    frames: tuple[tuple[KeypointFrame, ...], ...]
    identity: tuple[tuple[np.ndarray, ...], ...]
    truth_2d: np.ndarray
    truth_3d: np.ndarray
    subjects: tuple[SubjectTruth, ...]
    time_ns: np.ndarray

    @property
    def n_frames(self) -> int:
        return self.truth_3d.shape[0]

    def keypoints_of(self, subject: int = 0) -> np.ndarray:
        """(C, T, K, 3) the detections of one subject (score 0 where it is not detected)."""
        C, T = len(self.rig), self.n_frames
        K = self.truth_3d.shape[2]
        out = np.zeros((C, T, K, 3), dtype=np.float32)
        for c in range(C):
            for t in range(T):
                hit = np.flatnonzero(self.identity[c][t] == subject)
                if hit.size:
                    out[c, t] = self.frames[c][t].keypoints[hit[0]]
        return out


def render_views(rig: Rig, subjects: Sequence[SubjectTruth] | SubjectTruth, skeleton: str = "HALPE_26",
                 corruption: CorruptionSettings = CorruptionSettings(), seed: int = 0,
                 visible_in: Mapping[int, Sequence[str]] | None = None, start_ns: int = 1_000_000_000) -> Views:
    """Project subjects into every camera and corrupt the 2D points.

    Args:
        rig: cameras, rig order.
        subjects: one or more subjects with the same number of frames (subject 0 is "the" subject).
        skeleton: ``HALPE_26`` or ``COCO_17``.
        corruption: noise and failure model.
        seed: corruption randomness.
        visible_in: subject index -> camera names where it is detected (default: all cameras);
            e.g. ``{1: ["cam01", "cam02"]}`` for a bystander seen by two cameras.
        start_ns: capture time of frame 0, ns.
    """
    subjects = (subjects,) if isinstance(subjects, SubjectTruth) else tuple(subjects)
    T = subjects[0].keypoints.shape[0]
    if any(s.keypoints.shape[0] != T for s in subjects):
        raise ValueError("all subjects must have the same number of frames")
    skel = get_skeleton(skeleton)
    pts3d = np.stack([s.keypoints_for(skel.name) for s in subjects], axis=1)  # (T, S, K, 3)
    truth_2d = rig.project(pts3d)  # (C, T, S, K, 2)
    rng = np.random.default_rng(seed)
    fps = 1.0 / np.median(np.diff(subjects[0].time_s)) if T > 1 else 60.0
    time_ns = start_ns + np.round(subjects[0].time_s * 1e9).astype(np.int64)
    frames, identity = [], []
    for c, cam in enumerate(rig.cameras):
        shown = [s for s in range(len(subjects)) if visible_in is None or s not in visible_in or cam.name in visible_in[s]]
        stamps = _timestamps(time_ns, fps, corruption, rng)
        cf, ci = [], []
        for t in range(T):
            dets, ids = _detect(truth_2d[c, t], shown, cam.size, skel, corruption, rng)
            cf.append(KeypointFrame(cam.name, t, int(stamps[t]), skel.name, dets))
            ci.append(ids)
        frames.append(tuple(cf))
        identity.append(tuple(ci))
    return Views(rig, skel.name, tuple(frames), tuple(identity), truth_2d, pts3d, subjects, time_ns)


def _timestamps(time_ns: np.ndarray, fps: float, cs: CorruptionSettings, rng) -> np.ndarray:
    """(T,) strictly increasing capture times with a per-camera offset and jitter, ns."""
    offset = rng.uniform(-cs.offset_ms, cs.offset_ms) * 1e6
    jitter = rng.normal(0.0, cs.jitter_ms * 1e6, size=time_ns.size)
    jitter = np.clip(jitter, -0.4e9 / fps, 0.4e9 / fps)  # never reorder frames
    return time_ns + np.round(offset + jitter).astype(np.int64)


def _detect(uv: np.ndarray, shown: list[int], size, skel, cs: CorruptionSettings, rng):
    """uv (S, K, 2) perfect px -> detections (P, K, 3) float32 and (P,) subject indices."""
    w, h = size
    dets, ids = [], []
    for s in shown:
        p = uv[s]
        inside = np.isfinite(p).all(-1) & (p[:, 0] >= cs.edge_px) & (p[:, 0] < w - cs.edge_px) \
            & (p[:, 1] >= cs.edge_px) & (p[:, 1] < h - cs.edge_px)
        if inside.sum() < 3:  # a person mostly out of the frame is not detected
            continue
        dets.append(_corrupt(p, inside, skel, cs, rng))
        ids.append(s)
        if cs.duplicate_rate > 0 and rng.random() < cs.duplicate_rate:
            dets.append(_ghost(dets[-1], rng))
            ids.append(s)
    if not dets:
        return np.zeros((0, len(skel.keypoints), 3), dtype=np.float32), np.zeros(0, dtype=np.int64)
    order = rng.permutation(len(dets)) if cs.shuffle else np.arange(len(dets))
    return np.stack([dets[i] for i in order]).astype(np.float32), np.asarray(ids, dtype=np.int64)[order]


def _corrupt(p: np.ndarray, inside: np.ndarray, skel, cs: CorruptionSettings, rng) -> np.ndarray:
    """One person: perfect px (K, 2) -> (K, 3) x, y, score as a 2D estimator would give."""
    K = p.shape[0]
    score = np.clip(rng.normal(cs.score_mean, cs.score_std, K), 0.05, 1.0)
    sigma = np.full(K, float(cs.noise_px))
    low = rng.random(K) < cs.low_score_rate
    score[low] = rng.uniform(0.05, 0.35, low.sum())
    sigma[low] *= 3.0
    xy = np.where(np.isfinite(p), p, 0.0) + rng.normal(size=(K, 2)) * sigma[:, None]
    out = rng.random(K) < cs.outlier_rate
    if out.any():
        ang = rng.uniform(0, 2 * np.pi, out.sum())
        r = rng.uniform(30, 150, out.sum())
        xy[out] += np.stack([np.cos(ang), np.sin(ang)], -1) * r[:, None]
        score[out] = rng.uniform(0.5, 0.9, out.sum())
    det = np.concatenate([xy, score[:, None]], axis=-1)
    if rng.random() < cs.swap_rate:
        det = skel.swap_lr(det, axis=0)
        inside = skel.swap_lr(inside, axis=0)
    missing = ~inside | (rng.random(K) < cs.dropout_rate)
    det[missing] = 0.0
    return det


def _ghost(det: np.ndarray, rng) -> np.ndarray:
    """A second, partial detection of the same body: shifted 5-25 px, a third of the keypoints
    missing, scores lowered."""
    out = det.copy()
    ang, r = rng.uniform(0, 2 * np.pi), rng.uniform(5, 25)
    seen = out[:, 2] > 0
    out[seen, :2] += np.array([np.cos(ang), np.sin(ang)]) * r + rng.normal(0, 3.0, (int(seen.sum()), 2))
    out[seen, 2] *= rng.uniform(0.6, 0.9)
    out[rng.random(len(out)) < 0.33] = 0.0
    return out


def arrival_order(views: Views, delay_ms: tuple[float, float] = (1.0, 4.0), seed: int = 0,
                  drop_cameras: Mapping[str, tuple[int, int]] | None = None) -> list[tuple[int, KeypointFrame]]:
    """Every camera's frames as a receiver would get them: ``(recv_ns, frame)`` sorted by receive time.

    Args:
        views: rendered views.
        delay_ms: uniform transport delay range after capture, ms.
        seed: delay randomness.
        drop_cameras: camera name -> (first, last) frame indices it does not deliver (a camera
            that dies and comes back).
    """
    rng = np.random.default_rng(seed)
    out = []
    for c, cam in enumerate(views.rig.names):
        gap = (drop_cameras or {}).get(cam)
        for f in views.frames[c]:
            if gap is not None and gap[0] <= f.frame_index <= gap[1]:
                continue
            out.append((f.capture_ns + int(rng.uniform(*delay_ms) * 1e6), f))
    out.sort(key=lambda e: e[0])
    return out
