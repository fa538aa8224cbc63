"""Truth scenes: virtual subjects of known body size and proportions, generated camera rings with
lens distortion, long schedules of movements, bystanders and detector failures.

A :class:`SceneSpec` describes a scene completely (seeded); :func:`build_scene` turns it into a
:class:`Scene`: the rig, each person's truth (coordinates and keypoints) and body factors, and
the corrupted 2D detections of every camera. :data:`SCENES` names the scenes the accuracy
benchmark and the tests use, split into the ones tuned on (``tune_*``) and the ones only ever
measured (the acceptance scenes ``short_155``, ``tall_195``; the groups ``group3``, ``group4``).

Body sizes: :func:`body_factors` turns a standing height and a build (relative proportions per
body group, :data:`BUILDS`) into per-body uniform scale factors of the generic model, so that the
scaled model stands ``height_m`` tall (:func:`rtkin.kinematics.scaling.model_stature`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from rtkin.core.calibration import Camera, Rig, rodrigues_inv
from rtkin.kinematics.progressive import PARAMETERS
from rtkin.sim import virtual

__all__ = ["BODY_GROUPS", "BUILDS", "body_factors", "generated_ring", "RigSpec", "PersonSpec", "SceneSpec",
           "Scene", "build_scene", "SCENES", "ACCEPTANCE_SCENES", "TUNING_SCENES", "GROUP_SCENES"]

#: Body group -> model bodies sharing one factor (the groups the live scaling estimates).
BODY_GROUPS: dict[str, tuple[str, ...]] = PARAMETERS

#: Relative proportions (before the height normalisation) per build: group (both sides when the
#: name has no side) -> factor. Missing groups: 1.
BUILDS: dict[str, dict[str, float]] = {
    "uniform": {},
    "long_legs": {"pelvis": 0.95, "femur": 1.07, "tibia": 1.06, "foot": 1.03, "torso": 0.94, "head": 0.96,
                  "humerus": 1.03, "forearm": 1.05},
    "short_legs": {"pelvis": 1.07, "femur": 0.93, "tibia": 0.94, "foot": 0.97, "torso": 1.05, "head": 1.04,
                   "humerus": 0.96, "forearm": 0.95},
    "long_arms": {"tibia": 0.97, "torso": 1.02, "humerus": 1.08, "forearm": 1.07, "pelvis": 0.97},
    "stocky": {"pelvis": 1.09, "femur": 0.97, "tibia": 0.98, "foot": 1.03, "torso": 1.04, "head": 1.03,
               "humerus": 0.96, "forearm": 0.97},
}


def body_factors(height_m: float = 0.0, build: str | Mapping[str, float] = "uniform",
                 asymmetry: float = 0.0) -> dict[str, float]:
    """Per-body uniform scale factors of the generic model for a subject ``height_m`` tall.

    Args:
        height_m: standing height, m (0 = the generic model's, 1.685 m).
        build: a :data:`BUILDS` name or a group -> relative factor mapping.
        asymmetry: left limbs longer than right by this fraction (e.g. 0.01).

    Returns:
        body -> factor for every body of :data:`BODY_GROUPS`.
    """
    from rtkin.kinematics.scaling import model_stature

    rel = BUILDS[build] if isinstance(build, str) else dict(build)
    out = {}
    for group, bodies in BODY_GROUPS.items():
        base = group[:-2] if group.endswith(("_r", "_l")) else group
        f = rel.get(group, rel.get(base, 1.0))
        if group.endswith("_l"):
            f *= 1.0 + asymmetry
        for b in bodies:
            out[b] = float(f)
    if height_m:
        k = height_m / model_stature(factors=out)
        out = {b: f * k for b, f in out.items()}
    return out


# ============================================================================ rigs


def generated_ring(n: int = 6, radius_m: float = 4.5, seed: int = 0, height_m: tuple[float, float] = (1.1, 2.4),
                   target_m=(0.0, 0.0, 0.95), size=(1920, 1080), focal_px: tuple[float, float] = (1150.0, 1500.0),
                   k1: tuple[float, float] = (-0.28, -0.08), names: str = "cam{:02d}") -> Rig:
    """A ring of ``n`` cameras around ``target_m`` (world, z up) with seeded irregularities:
    azimuth jitter (+-10 deg), radius +-10 %, heights in ``height_m``, aim jitter (+-0.15 m),
    focal lengths in ``focal_px``, barrel distortion ``k1`` in the range given plus small k2 and
    tangential terms (OpenCV model), principal point off centre by up to 20 px."""
    rng = np.random.default_rng(seed)
    cams = []
    target = np.asarray(target_m, dtype=np.float64)
    for i in range(n):
        a = 2 * np.pi * i / n + np.radians(rng.uniform(-10, 10))
        r = radius_m * rng.uniform(0.9, 1.1)
        c = np.array([target[0] + r * np.cos(a), target[1] + r * np.sin(a), rng.uniform(*height_m)])
        aim = target + np.array([rng.uniform(-0.15, 0.15), rng.uniform(-0.15, 0.15), rng.uniform(-0.1, 0.1)])
        z = aim - c
        z /= np.linalg.norm(z)
        x = np.cross(z, [0.0, 0.0, 1.0])
        x /= np.linalg.norm(x)
        y = np.cross(z, x)
        R = np.stack([x, y, z])
        f = rng.uniform(*focal_px)
        K = np.array([[f, 0, size[0] / 2 + rng.uniform(-20, 20)], [0, f, size[1] / 2 + rng.uniform(-20, 20)],
                      [0, 0, 1.0]])
        dist = np.array([rng.uniform(*k1), rng.uniform(0.0, 0.08), rng.uniform(-1e-3, 1e-3),
                         rng.uniform(-1e-3, 1e-3)])
        cams.append(Camera(names.format(i + 1), size, K, dist, rodrigues_inv(R), -R @ c))
    return Rig(tuple(cams))


# ============================================================================ scene specs


@dataclass(frozen=True)
class RigSpec:
    """``kind = "ring"``: :func:`generated_ring` (n, radius_m, seed); ``"demo"``: the Pose2Sim demo rig."""

    kind: str = "ring"
    n: int = 6
    radius_m: float = 4.5
    seed: int = 0

    def build(self) -> Rig:
        if self.kind == "demo":
            return virtual.demo_rig()
        return generated_ring(self.n, self.radius_m, self.seed)


@dataclass(frozen=True)
class PersonSpec:
    """One person of a scene.

    Attributes:
        height_m: standing height, m (0 = the generic model). build, asymmetry: see :func:`body_factors`.
        segments, segments_s: the movement schedule (:class:`rtkin.sim.virtual.MotionSettings`).
        seed: motion seed. center_m: where they stand (world x, y), m. heading_rad: facing.
        wander_m, turn_rad: slow drift and heading oscillation. orbit_radius_m, orbit_period_s,
        orbit_phase_rad: walking around ``center_m`` instead (groups).
        cameras: camera names that see this person (empty = all).
        presence: (start_s, end_s) in view (empty = always).
    """

    height_m: float = 0.0
    build: str = "uniform"
    asymmetry: float = 0.0
    segments: tuple[str, ...] = ("walk", "squat", "arm_raise")
    segments_s: tuple[float, ...] = (4.0, 3.0, 3.0)
    seed: int = 0
    center_m: tuple[float, float] = (0.0, 0.0)
    heading_rad: float = 0.0
    wander_m: float = 0.2
    turn_rad: float = 0.5
    orbit_radius_m: float = 0.0
    orbit_period_s: float = 12.0
    orbit_phase_rad: float = 0.0
    cameras: tuple[str, ...] = ()
    presence: tuple[float, float] | tuple[()] = ()


@dataclass(frozen=True)
class SceneSpec:
    """A whole scene: rig, people (the first is the subject), detector failures.

    Attributes:
        camera_gaps: (camera, start_s, end_s): the camera delivers nothing in that window.
        mode: the association mode the scene is meant for (``single`` / ``multi``).
    """

    name: str
    duration_s: float = 24.0
    fps: float = 60.0
    skeleton: str = "HALPE_26"
    rig: RigSpec = RigSpec()
    people: tuple[PersonSpec, ...] = (PersonSpec(),)
    corruption: virtual.CorruptionSettings = virtual.CorruptionSettings()
    seed: int = 0
    camera_gaps: tuple[tuple[str, float, float], ...] = ()
    mode: str = "single"
    note: str = ""


@dataclass(frozen=True, eq=False)
class Scene:
    """A built scene: ``views`` (every camera's detections, :class:`rtkin.sim.virtual.Views`),
    each person's truth and body ``factors`` (body -> factor), and the spec."""

    spec: SceneSpec
    rig: Rig
    truths: tuple[virtual.SubjectTruth, ...]
    factors: tuple[dict[str, float], ...]
    views: virtual.Views = field(repr=False)

    @property
    def subject(self) -> virtual.SubjectTruth:
        return self.truths[0]

    def arrivals(self, seed: int = 0) -> list:
        """Every camera's frames in receive order (camera gaps removed), see
        :func:`rtkin.sim.virtual.arrival_order`."""
        gaps = {cam: (int(a * self.spec.fps), int(b * self.spec.fps)) for cam, a, b in self.spec.camera_gaps}
        return virtual.arrival_order(self.views, seed=seed, drop_cameras=gaps)

    def frame_missing(self, camera: str, frame: int) -> bool:
        """True when ``camera`` delivers nothing at ``frame`` (a camera gap)."""
        return any(cam == camera and a * self.spec.fps <= frame <= b * self.spec.fps
                   for cam, a, b in self.spec.camera_gaps)


def _person_truth(p: PersonSpec, duration_s: float, fps: float) -> tuple[virtual.SubjectTruth, dict[str, float]]:
    from rtkin.sim.scaled import simulate_scaled_subject

    ms = virtual.MotionSettings(duration_s=duration_s, fps=fps, seed=p.seed, center_m=p.center_m,
                                heading_rad=p.heading_rad, wander_m=p.wander_m, turn_rad=p.turn_rad,
                                segments=p.segments, segments_s=p.segments_s, orbit_radius_m=p.orbit_radius_m,
                                orbit_period_s=p.orbit_period_s, orbit_phase_rad=p.orbit_phase_rad)
    factors = body_factors(p.height_m, p.build, p.asymmetry)
    if all(abs(f - 1.0) < 1e-12 for f in factors.values()):
        return virtual.simulate_subject(ms), factors
    return simulate_scaled_subject(factors, ms), factors


def build_scene(spec: SceneSpec | str) -> Scene:
    """The rig, truths and 2D detections of a scene (a :data:`SCENES` name or a spec)."""
    spec = SCENES[spec] if isinstance(spec, str) else spec
    rig = spec.rig.build()
    truths, factors = zip(*(_person_truth(p, spec.duration_s, spec.fps) for p in spec.people))
    visible = {i: p.cameras for i, p in enumerate(spec.people) if p.cameras}
    views = virtual.render_views(rig, list(truths), spec.skeleton, spec.corruption, seed=spec.seed,
                                 visible_in=visible or None)
    views = _apply_presence(views, spec)
    return Scene(spec, rig, tuple(truths), tuple(factors), views)


def _apply_presence(views: virtual.Views, spec: SceneSpec) -> virtual.Views:
    """Remove the detections of people outside their presence window."""
    windows = {i: p.presence for i, p in enumerate(spec.people) if p.presence}
    if not windows:
        return views
    from dataclasses import replace

    from rtkin.core.messages import KeypointFrame

    t_s = np.arange(views.n_frames) / spec.fps
    frames, identity = [], []
    for cam_frames, cam_ids in zip(views.frames, views.identity):
        cf, ci = [], []
        for t, (f, ids) in enumerate(zip(cam_frames, cam_ids)):
            keep = [k for k, s in enumerate(ids) if s not in windows or windows[s][0] <= t_s[t] < windows[s][1]]
            if len(keep) < len(ids):
                f = KeypointFrame(f.camera, f.frame_index, f.capture_ns, f.skeleton, f.keypoints[keep])
                ids = ids[keep]
            cf.append(f)
            ci.append(ids)
        frames.append(tuple(cf))
        identity.append(tuple(ci))
    return replace(views, frames=tuple(frames), identity=tuple(identity))


# ============================================================================ the scenes

_ALL_MOVES = ("march", "squat", "lunge", "trunk_bend", "arm_raise", "walk")
_NOISY = virtual.CorruptionSettings(noise_px=3.0, outlier_rate=0.02, dropout_rate=0.05, swap_rate=0.005)


def _ring_cams(n: int, idx) -> tuple[str, ...]:
    return tuple(f"cam{i + 1:02d}" for i in idx if i < n)


SCENES: dict[str, SceneSpec] = {
    # --- tuned on (solver and scaling defaults were chosen on these two only)
    "tune_178": SceneSpec(
        "tune_178", duration_s=24.0, rig=RigSpec("ring", 7, 4.3, seed=21), seed=31,
        people=(PersonSpec(1.78, "long_arms", 0.01, ("walk", "squat", "arm_raise", "lunge", "trunk_bend", "march"),
                           (4.0, 4.0, 4.0, 4.0, 4.0, 4.0), seed=3, heading_rad=0.4),
                PersonSpec(1.70, "uniform", segments=("stand",), segments_s=(5.0,), seed=9, center_m=(2.3, 0.8),
                           wander_m=0.05, turn_rad=0.2, cameras=_ring_cams(7, (0, 1, 6)))),
        corruption=_NOISY, camera_gaps=(("cam03", 9.0, 11.0),),
        note="1.78 m long arms, 7-camera ring, standing bystander in 3 views, cam03 off 9-11 s"),
    "tune_162": SceneSpec(
        "tune_162", duration_s=22.0, rig=RigSpec("demo"), seed=32,
        people=(PersonSpec(1.62, "stocky", 0.0, ("arm_raise", "march", "trunk_bend", "squat", "lunge", "walk"),
                           (3.0, 4.0, 4.0, 4.0, 4.0, 3.0), seed=4, center_m=(-0.9, 0.0)),
                PersonSpec(1.80, "uniform", segments=("stand",), segments_s=(5.0,), seed=8,
                           center_m=virtual.DEMO_BYSTANDER_CENTER, wander_m=0.05, turn_rad=0.2,
                           cameras=("cam01", "cam02"))),
        corruption=_NOISY, note="1.62 m stocky, Pose2Sim demo rig, bystander in cam01/cam02"),
    "tune_192": SceneSpec(
        "tune_192", duration_s=22.0, rig=RigSpec("ring", 6, 4.6, seed=23), seed=33,
        people=(PersonSpec(1.92, "long_legs", 0.0, ("walk", "lunge", "arm_raise", "squat", "march", "trunk_bend"),
                           (3.0, 4.0, 4.0, 4.0, 3.0, 4.0), seed=5, heading_rad=-1.2),),
        corruption=_NOISY, note="1.92 m long legs, 6-camera ring, no bystander (added after short_155 / tall_195 "
                                "showed the no-height start on a body far from the generic model)"),
    # --- acceptance (never tuned on)
    "short_155": SceneSpec(
        "short_155", duration_s=24.0, rig=RigSpec("ring", 8, 4.0, seed=5), seed=41,
        people=(PersonSpec(1.55, "short_legs", 0.008, _ALL_MOVES, (4.0, 4.0, 5.0, 4.0, 4.0, 3.0), seed=11,
                           heading_rad=-0.7),
                PersonSpec(1.75, "uniform", segments=("walk", "stand"), segments_s=(4.0, 4.0), seed=12,
                           center_m=(-2.2, 1.2), wander_m=0.3, cameras=_ring_cams(8, (2, 3, 4, 5)),
                           presence=(3.0, 17.0))),
        corruption=virtual.CorruptionSettings(noise_px=3.0, outlier_rate=0.02, dropout_rate=0.06, swap_rate=0.006),
        camera_gaps=(("cam05", 12.0, 14.5),),
        note="1.55 m short legs, 8-camera ring, bystander walking in 3-17 s in 4 views, cam05 off 12-14.5 s"),
    "tall_195": SceneSpec(
        "tall_195", duration_s=24.0, rig=RigSpec("ring", 6, 4.8, seed=7), seed=42,
        people=(PersonSpec(1.95, "long_legs", -0.01, ("squat", "walk", "trunk_bend", "arm_raise", "lunge", "march"),
                           (4.0, 3.0, 5.0, 4.0, 5.0, 3.0), seed=13, heading_rad=2.0),
                PersonSpec(1.65, "stocky", segments=("stand",), segments_s=(5.0,), seed=14, center_m=(1.9, -1.6),
                           wander_m=0.1, cameras=_ring_cams(6, (0, 1, 5)))),
        corruption=virtual.CorruptionSettings(noise_px=3.5, outlier_rate=0.02, dropout_rate=0.05, swap_rate=0.005),
        camera_gaps=(("cam02", 15.0, 17.0),),
        note="1.95 m long legs, 6-camera ring, standing bystander in 3 views, cam02 off 15-17 s"),
    # --- multi-person groups (never tuned on)
    "group3": SceneSpec(
        "group3", duration_s=20.0, rig=RigSpec("ring", 8, 5.0, seed=9), seed=43, mode="multi",
        people=tuple(PersonSpec(h, b, 0.0, ("walk", "arm_raise", "walk", "squat"), (5.0, 3.0, 5.0, 3.0), seed=20 + i,
                                orbit_radius_m=r, orbit_period_s=p, orbit_phase_rad=2 * np.pi * i / 3)
                     for i, (h, b, r, p) in enumerate(((1.60, "stocky", 0.7, 10.0), (1.76, "uniform", 1.6, -12.0),
                                                       (1.92, "long_legs", 2.5, 14.0)))),
        corruption=virtual.CorruptionSettings(noise_px=3.0, outlier_rate=0.02, dropout_rate=0.05, swap_rate=0.003,
                                              duplicate_rate=0.03),
        note="3 people orbiting, 8-camera ring, 3 % duplicate (ghost) detections"),
    "group4": SceneSpec(
        "group4", duration_s=20.0, rig=RigSpec("ring", 8, 5.5, seed=10), seed=44, mode="multi",
        people=tuple(PersonSpec(h, b, 0.0, ("walk", "march", "walk", "arm_raise"), (5.0, 3.0, 5.0, 3.0), seed=30 + i,
                                orbit_radius_m=r, orbit_period_s=p, orbit_phase_rad=2 * np.pi * i / 4)
                     for i, (h, b, r, p) in enumerate(((1.58, "short_legs", 0.7, 10.0), (1.72, "long_arms", 1.6, -12.0),
                                                       (1.85, "uniform", 2.5, 14.0), (1.95, "long_legs", 3.2, -16.0)))),
        corruption=virtual.CorruptionSettings(noise_px=3.0, outlier_rate=0.02, dropout_rate=0.05, swap_rate=0.003,
                                              duplicate_rate=0.03),
        note="4 people orbiting, 8-camera ring, 3 % duplicate (ghost) detections"),
}

TUNING_SCENES = ("tune_178", "tune_162", "tune_192")
ACCEPTANCE_SCENES = ("short_155", "tall_195")
GROUP_SCENES = ("group3", "group4")
