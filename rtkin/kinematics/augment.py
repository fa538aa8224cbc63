"""Marker augmentation: Pose2Sim's LSTM marker augmenter as a stateful streaming stage.

The augmenter (OpenCap's "marker enhancer", shipped in Pose2Sim as ``MarkerAugmenter/LSTM/v0.3_lower``
and ``v0.3_upper``) predicts 43 anatomical markers of a lab marker set (``Markers_LSTM.xml``: ASIS,
PSIS, medial/lateral knees, ankles, elbows and wrists, thigh and shank clusters, hip joint centres,
feet) from sparse keypoints. Its LSTMs are causal, so running them one frame at a time with explicit
state (:mod:`rtkin.kinematics.augment_lstm`) gives exactly what Pose2Sim computes over a whole trial,
for ~0.2 ms per person-frame instead of ~8 ms for a 60-frame window per frame.

Inputs, as Pose2Sim 0.10.49 ``markerAugmentation.augment_markers_all`` builds them (from the TRC,
i.e. in OpenSim's y-up frame: world points are rotated by :data:`rtkin.core.frames.OSIM_FROM_WORLD`
first, as Pose2Sim's TRC writer does):

- lower model: ``Neck, RShoulder, LShoulder, RHip, LHip, RKnee, LKnee, RAnkle, LAnkle, RHeel, LHeel,
  RSmallToe, LSmallToe, RBigToe, LBigToe`` (``getOpenPoseMarkers_lowerExtremity2``); upper model:
  ``Neck, RShoulder, LShoulder, RElbow, LElbow, RWrist, LWrist``
  (``getMarkers_upperExtremity_noPelvis2``);
- each minus ``Hip`` (the skeleton's Hip point: HALPE_26 outputs it, COCO sets derive it as the
  mid-hip, as ``common.add_neck_hip_data`` does), divided by the subject's height, then the height
  (m) and the mass (kg) appended: (T, 47) and (T, 23);
- ``(x - mean) / std`` with the model's ``mean.npy`` / ``std.npy``;
- outputs (T, 105) and (T, 24): marker offsets from ``Hip`` divided by the height.

Height: ``height_m`` when given; else Pose2Sim's ``common.compute_height`` formula per frame (heel to
ankle + shank + thigh + hip to shoulder, both sides averaged, + mid-shoulder to head x 1.008, or to
the nose x 1.5) - Pose2Sim takes a trimmed mean over the trial, rtkin the median over the first
``height_seconds`` of the person's stream (then frozen; offline: over the whole sequence). Mass:
``mass_kg`` when given, else 70 kg (Pose2Sim's default ``participant_mass``).

A skeleton without the lower model's keypoints (COCO_17 has no heels or toes) gets the upper
markers only, as Pose2Sim skips a model whose inputs are missing.

Confidence per marker, in [0, 1]
--------------------------------
The ``std.npy`` files do not describe the spread of the training inputs: the marker-enhancer
training code (stanfordnmbl/marker-enhancer ``train_lstm.py``) stores the standard deviation of the
per-dataset means (e.g. 0.001 for horizontal offsets, which vary by +-0.1 in any real motion), so a
z-score against them flags everything. The training range is taken from what the training data
were instead: adults (the ``height`` / ``mass`` features) whose keypoints are in proportion to their
height. A marker's confidence is the minimum of

- its anchor keypoints' state (the input keypoints next to it, :data:`ANCHORS`): 1 when measured,
  0.5 when a filter held the point (``n_views == 0``), 0 when missing (its last input is then held);
- the length of the anchor segments (thigh, shank, upper arm, forearm) over the height against the
  standard proportions (Winter 2009, after Drillis & Contini): 1 within a factor 1.25, 0 beyond 1.6;
- an anchor farther than 0.7 x height from the hip (a glitch, not a body) ramps to 0 at 0.9;
- whole-model terms, which reach every output of an LSTM: height outside 1.45-2.0 m ramps to 0 at
  1.2 / 2.3 m, a given mass outside 40-110 kg to 0 at 25 / 150 kg; any input keypoint missing or out
  of the envelope halves it;

and it recovers from a drop no faster than ``1 / recovery_s`` per second (the LSTM remembers a bad
input for a while).

Live and offline
----------------
:class:`PersonAugmenter` is one person's state and one :meth:`~PersonAugmenter.step` per frame;
:class:`MarkerAugmenter` is the stage (``Skeleton3D -> Skeleton3D`` of the augmented markers, one
PersonAugmenter per track id, reset after a gap of ``max_gap_s`` or on :meth:`~MarkerAugmenter.forget`);
:func:`augment_sequence` runs the same PersonAugmenter over a whole ``(T, K, 3)`` sequence.
:func:`augmented_ik_settings` turns IK settings into the augmented IK (Pose2Sim's
``IK_Setup_Pose2Sim_withoutHands_LSTM.xml`` weights for the augmented markers beside the keypoints').
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

from rtkin.core import assets
from rtkin.core.frames import OSIM_FROM_WORLD
from rtkin.core.messages import Skeleton3D
from rtkin.core.skeletons import Skeleton, get_skeleton
from rtkin.kinematics.augment_lstm import LSTMNet, LSTMState, load_lstm

__all__ = [
    "POSE2SIM_VERSION",
    "AUGMENTED_SKELETON",
    "AUGMENTED_MARKERS",
    "augmented_marker_names",
    "augmented_skeleton_name",
    "LOWER_FEATURES",
    "UPPER_FEATURES",
    "LOWER_MARKERS",
    "UPPER_MARKERS",
    "ANCHORS",
    "AugmentSettings",
    "AugmentedFrame",
    "AugmenterModel",
    "load_models",
    "available_models",
    "estimate_height",
    "PersonAugmenter",
    "MarkerAugmenter",
    "AugmentedSequence",
    "augment_sequence",
    "lstm_marker_set_path",
    "lstm_ik_weights",
    "augmented_ik_settings",
    "resolve_augment",
]

#: The Pose2Sim release whose ``markerAugmentation.py`` / ``common.py`` these features follow.
POSE2SIM_VERSION = "0.10.49"

#: Inputs of the lower-body model (``getOpenPoseMarkers_lowerExtremity2``), in model order.
LOWER_FEATURES = ("Neck", "RShoulder", "LShoulder", "RHip", "LHip", "RKnee", "LKnee", "RAnkle", "LAnkle",
                  "RHeel", "LHeel", "RSmallToe", "LSmallToe", "RBigToe", "LBigToe")
#: Outputs of the lower-body model, in model order.
LOWER_MARKERS = ("r.ASIS_study", "L.ASIS_study", "r.PSIS_study", "L.PSIS_study", "r_knee_study",
                 "r_mknee_study", "r_ankle_study", "r_mankle_study", "r_toe_study", "r_5meta_study",
                 "r_calc_study", "L_knee_study", "L_mknee_study", "L_ankle_study", "L_mankle_study",
                 "L_toe_study", "L_calc_study", "L_5meta_study", "r_shoulder_study", "L_shoulder_study",
                 "C7_study", "r_thigh1_study", "r_thigh2_study", "r_thigh3_study", "L_thigh1_study",
                 "L_thigh2_study", "L_thigh3_study", "r_sh1_study", "r_sh2_study", "r_sh3_study",
                 "L_sh1_study", "L_sh2_study", "L_sh3_study", "RHJC_study", "LHJC_study")
#: Inputs of the upper-body model (``getMarkers_upperExtremity_noPelvis2``), in model order.
UPPER_FEATURES = ("Neck", "RShoulder", "LShoulder", "RElbow", "LElbow", "RWrist", "LWrist")
#: Outputs of the upper-body model, in model order.
UPPER_MARKERS = ("r_lelbow_study", "r_melbow_study", "r_lwrist_study", "r_mwrist_study",
                 "L_lelbow_study", "L_melbow_study", "L_lwrist_study", "L_mwrist_study")
#: Every augmented marker: lower then upper.
AUGMENTED_MARKERS = LOWER_MARKERS + UPPER_MARKERS
#: ``Skeleton3D.skeleton`` of the augmented-marker messages, by the models run: their points are
#: :func:`augmented_marker_names` of it (both models: :data:`AUGMENTED_MARKERS`).
AUGMENTED_SKELETON = "LSTM"
_MARKERS_OF = {"lower": LOWER_MARKERS, "upper": UPPER_MARKERS}
_ORIGIN = "Hip"
_DEFAULT_MASS_KG = 70.0  # Pose2Sim's default participant_mass
_DEFAULT_HEIGHT_M = 1.7  # Pose2Sim's default_height when it cannot compute one


def _anchors() -> dict[str, tuple[str, ...]]:
    """Augmented marker -> the input keypoints next to it (its confidence follows theirs)."""
    out: dict[str, tuple[str, ...]] = {}
    for s, S in (("r", "R"), ("L", "L")):
        out.update({
            f"{s}.ASIS_study": ("RHip", "LHip"), f"{s}.PSIS_study": ("RHip", "LHip"),
            f"{S}HJC_study": ("RHip", "LHip"),
            f"{s}_knee_study": (f"{S}Knee",), f"{s}_mknee_study": (f"{S}Knee",),
            f"{s}_ankle_study": (f"{S}Ankle",), f"{s}_mankle_study": (f"{S}Ankle",),
            f"{s}_toe_study": (f"{S}BigToe", f"{S}SmallToe"), f"{s}_5meta_study": (f"{S}BigToe", f"{S}SmallToe"),
            f"{s}_calc_study": (f"{S}Heel",), f"{s}_shoulder_study": (f"{S}Shoulder",),
            f"{s}_lelbow_study": (f"{S}Elbow",), f"{s}_melbow_study": (f"{S}Elbow",),
            f"{s}_lwrist_study": (f"{S}Wrist",), f"{s}_mwrist_study": (f"{S}Wrist",),
        })
        for i in (1, 2, 3):
            out[f"{s}_thigh{i}_study"] = (f"{S}Hip", f"{S}Knee")
            out[f"{s}_sh{i}_study"] = (f"{S}Knee", f"{S}Ankle")
    out["C7_study"] = ("Neck",)
    return out


#: Augmented marker -> its anchor input keypoints.
ANCHORS: dict[str, tuple[str, ...]] = _anchors()

#: Segment (keypoint pair) -> length / stature in standard proportions (Winter 2009, Fig. 4.1,
#: after Drillis & Contini 1966): thigh 0.245, shank 0.246, upper arm 0.186, forearm 0.146.
SEGMENT_RATIOS: dict[tuple[str, str], float] = {}
for _S in ("R", "L"):
    SEGMENT_RATIOS.update({(f"{_S}Hip", f"{_S}Knee"): 0.245, (f"{_S}Knee", f"{_S}Ankle"): 0.246,
                           (f"{_S}Shoulder", f"{_S}Elbow"): 0.186, (f"{_S}Elbow", f"{_S}Wrist"): 0.146})


# ============================================================================ settings


@dataclass(frozen=True)
class AugmentSettings:
    """Marker augmentation (defaults in one place).

    Attributes:
        height_m: subject height, m; 0 = estimate it from the keypoints.
        mass_kg: subject mass, kg (an input of the LSTMs); 0 = 70 kg, Pose2Sim's default.
        height_seconds: live, without ``height_m``: the height estimate is the median over the
            person's first this-many seconds of usable frames, then frozen, s.
        max_gap_s: a person unseen for longer than this restarts from a fresh LSTM state, s.
        recovery_s: after a drop, a marker's confidence recovers at most ``1 / recovery_s`` per
            second (the LSTM remembers a bad input for a while), s.
        models: which LSTMs to run, of ``("lower", "upper")``; one whose input keypoints the
            skeleton lacks is skipped.
    """

    height_m: float = 0.0
    mass_kg: float = 0.0
    height_seconds: float = 2.0
    max_gap_s: float = 0.5
    recovery_s: float = 0.5
    models: tuple[str, ...] = ("lower", "upper")

    def __post_init__(self) -> None:
        if self.height_m < 0 or (self.height_m and not 0.5 <= self.height_m <= 2.5):
            raise ValueError(f"AugmentSettings.height_m must be 0 (estimate) or in [0.5, 2.5] m, got {self.height_m}")
        if self.mass_kg < 0:
            raise ValueError(f"AugmentSettings.mass_kg must be >= 0, got {self.mass_kg}")
        for name in ("height_seconds", "max_gap_s", "recovery_s"):
            v = getattr(self, name)
            if not (v > 0 and math.isfinite(v)):
                raise ValueError(f"AugmentSettings.{name} must be > 0, got {v!r}")
        unknown = set(self.models) - {"lower", "upper"}
        if unknown or not self.models:
            raise ValueError(f"AugmentSettings.models must be a non-empty subset of ('lower', 'upper'), got {self.models}")


# ============================================================================ models


@dataclass(frozen=True, eq=False)
class AugmenterModel:
    """One augmenter LSTM with its input and output definitions.

    Attributes:
        name: ``"lower"`` or ``"upper"``.
        features: ``(F_k,)`` input keypoint names (F = 3 F_k + 2 values: offsets, height, mass).
        markers: ``(E_k,)`` output marker names.
        net: the LSTM (:class:`rtkin.kinematics.augment_lstm.LSTMNet`).
        mean, std: ``(F,)`` float32 input normalisation (``mean.npy``, ``std.npy``).
        onnx_path: the ``model.onnx`` it was read from.
    """

    name: str
    features: tuple[str, ...]
    markers: tuple[str, ...]
    net: LSTMNet
    mean: np.ndarray
    std: np.ndarray
    onnx_path: Path


_MODEL_DIRS = {"lower": ("v0.3_lower", LOWER_FEATURES, LOWER_MARKERS),
               "upper": ("v0.3_upper", UPPER_FEATURES, UPPER_MARKERS)}
_MODELS: dict[str, AugmenterModel] = {}


def load_models(names: Sequence[str] = ("lower", "upper")) -> tuple[AugmenterModel, ...]:
    """The augmenter models shipped in the installed pose2sim (loaded once per process, ~0.2 s).

    Raises:
        AssetNotFoundError: a model file is missing; ValueError: an unexpected graph;
        ImportError: the ``onnx`` package is missing.
    """
    out = []
    for name in names:
        m = _MODELS.get(name)
        if m is None:
            folder, feats, markers = _MODEL_DIRS[name]
            d = assets.marker_augmenter_dir() / "LSTM" / folder
            onnx_path, mean_path, std_path = (d / "model.onnx", d / "mean.npy", d / "std.npy")
            for p in (onnx_path, mean_path, std_path):
                if not p.is_file():
                    raise assets.AssetNotFoundError(f"marker augmenter file {p} not found; it is installed "
                                                    "with `pip install pose2sim`.")
            net = LSTMNet(load_lstm(onnx_path))
            mean = np.load(mean_path, allow_pickle=False).astype(np.float64).ravel()
            std = np.load(std_path, allow_pickle=False).astype(np.float64).ravel()
            n_in = 3 * len(feats) + 2
            if net.n_inputs != n_in or mean.shape != (n_in,) or std.shape != (n_in,) or net.n_outputs != 3 * len(markers):
                raise ValueError(f"{d}: model has {net.n_inputs} inputs / {net.n_outputs} outputs, mean {mean.shape}, "
                                 f"std {std.shape}; expected {n_in} inputs and {3 * len(markers)} outputs")
            m = _MODELS[name] = AugmenterModel(name, feats, markers, net, mean, std, onnx_path)
        out.append(m)
    return tuple(out)


def available_models(skeleton: Skeleton | str, names: Sequence[str] = ("lower", "upper")) -> tuple[str, ...]:
    """The models of ``names`` whose inputs (and ``Hip``) the skeleton's points provide."""
    sk = get_skeleton(skeleton) if isinstance(skeleton, str) else skeleton
    points = set(sk.points)
    return tuple(n for n in names if set(_MODEL_DIRS[n][1]) | {_ORIGIN} <= points)


def augmented_skeleton_name(models: Sequence[str]) -> str:
    """``Skeleton3D.skeleton`` of augmented markers from ``models``: ``"LSTM"`` for both,
    ``"LSTM_lower"`` / ``"LSTM_upper"`` for one."""
    return AUGMENTED_SKELETON if tuple(models) == ("lower", "upper") else f"{AUGMENTED_SKELETON}_{models[0]}"


def augmented_marker_names(skeleton_name: str) -> tuple[str, ...]:
    """The point names of an augmented-marker ``Skeleton3D`` (its ``skeleton`` field)."""
    if skeleton_name == AUGMENTED_SKELETON:
        return AUGMENTED_MARKERS
    prefix = AUGMENTED_SKELETON + "_"
    if skeleton_name.startswith(prefix) and skeleton_name[len(prefix):] in _MARKERS_OF:
        return _MARKERS_OF[skeleton_name[len(prefix):]]
    raise KeyError(f"not an augmented-marker skeleton: {skeleton_name!r}")


# ============================================================================ height


def _dist(P: np.ndarray, idx: dict[str, int], a: str, b: str) -> np.ndarray:
    return np.linalg.norm(P[..., idx[a], :] - P[..., idx[b], :], axis=-1)


def frame_heights(points: np.ndarray, skeleton: Skeleton) -> np.ndarray:
    """Per-frame stature estimates ``(T,)`` m from ``(T, K + D, 3)`` points (with derived points),
    Pose2Sim's ``common.compute_height`` formula without its trimming: mean of both sides' heel to
    ankle (0.10 m without heels) + ankle to knee + knee to hip + hip to shoulder, plus mid-shoulder
    to head x 1.008 (or to the nose x 1.5; without either, the legs / 0.485). NaN where a needed
    point is missing."""
    idx = {n: i for i, n in enumerate(skeleton.points)}
    P = np.asarray(points, dtype=np.float64)
    if not {"RAnkle", "RKnee", "RHip", "RShoulder", "LAnkle", "LKnee", "LHip", "LShoulder"} <= set(idx):
        return np.full(P.shape[:-2], np.nan)
    if "RHeel" in idx and "LHeel" in idx:
        foot = (_dist(P, idx, "RHeel", "RAnkle") + _dist(P, idx, "LHeel", "LAnkle")) / 2
    else:
        foot = np.full(P.shape[:-2], 0.10)
    legs = foot + sum((_dist(P, idx, f"R{a}", f"R{b}") + _dist(P, idx, f"L{a}", f"L{b}")) / 2
                      for a, b in (("Ankle", "Knee"), ("Knee", "Hip")))
    back = (_dist(P, idx, "RHip", "RShoulder") + _dist(P, idx, "LHip", "LShoulder")) / 2
    mid = (P[..., idx["RShoulder"], :] + P[..., idx["LShoulder"], :]) / 2
    if "Head" in idx:
        head = np.linalg.norm(mid - P[..., idx["Head"], :], axis=-1) * 1.008
    elif "Nose" in idx:
        head = np.linalg.norm(mid - P[..., idx["Nose"], :], axis=-1) * 1.5
    else:
        return legs / 0.485
    return legs + back + head


def estimate_height(points: np.ndarray, skeleton: Skeleton | str) -> float:
    """Stature, m, from ``(T, K, 3)`` keypoints (world or any frame): the median over frames of
    :func:`frame_heights` (Pose2Sim: a 50 % trimmed mean); NaN when no frame has the points."""
    sk = get_skeleton(skeleton) if isinstance(skeleton, str) else skeleton
    h = frame_heights(sk.with_derived(np.asarray(points, dtype=np.float64)), sk)
    h = h[np.isfinite(h)]
    return float(np.median(h)) if h.size else math.nan


# ============================================================================ one person


def _ramp(x, good: float, bad: float):
    """1 at ``x <= good``, 0 at ``x >= bad``, linear between."""
    return np.clip((bad - x) / (bad - good), 0.0, 1.0)


def _range_conf(value: float, good: tuple[float, float], bad: tuple[float, float]) -> float:
    """1 inside ``good`` (lo, hi), 0 outside ``bad``, linear between."""
    return float(min(_ramp(-value, -good[0], -bad[0]), _ramp(value, good[1], bad[1])))


_ENVELOPE = (0.7, 0.9)  # anchor distance from the hip / height: full trust, none
_SEGMENT = (math.log(1.25), math.log(1.6))  # |log(segment ratio / standard ratio)|: full trust, none
_HEIGHT_RANGE = ((1.45, 2.0), (1.2, 2.3))  # m: full trust, none
_MASS_RANGE = ((40.0, 110.0), (25.0, 150.0))  # kg: full trust, none


class _ModelPlan:
    """Index arrays of one model on one skeleton."""

    def __init__(self, model: AugmenterModel, sk: Skeleton, out_offset: int):
        self.model = model
        idx = {n: i for i, n in enumerate(sk.points)}
        self.feat = np.array([idx[f] for f in model.features], dtype=np.intp)  # (F_k,) point indices
        self.out = slice(out_offset, out_offset + len(model.markers))  # rows in the person's marker_names
        pos = {f: j for j, f in enumerate(model.features)}
        self.anchor = np.zeros((len(model.markers), len(model.features)), dtype=bool)  # (E_k, F_k)
        for e, m in enumerate(model.markers):
            for f in ANCHORS[m]:
                self.anchor[e, pos[f]] = True
        self.scale = 1.0 / model.std


class PersonAugmenter:
    """One person's augmentation state; :meth:`step` per frame, in time order.

    Args:
        skeleton: keypoint set of the points given to :meth:`step`.
        settings: see :class:`AugmentSettings`.
        height_m: fixed height for this person, m (overrides ``settings.height_m``; 0 = use
            the settings / estimate).

    Attributes:
        height_m: the height in use, m (NaN until known); ``height_final``: no longer estimated.
        models: the models run (those of ``settings.models`` the skeleton allows).
        marker_names: ``(E,)`` the markers :meth:`step` returns, the models' outputs in order.
    """

    def __init__(self, skeleton: Skeleton | str, settings: AugmentSettings = AugmentSettings(),
                 height_m: float = 0.0):
        self.skeleton = sk = get_skeleton(skeleton) if isinstance(skeleton, str) else skeleton
        self.settings = settings
        names = available_models(sk, settings.models)
        if not names:
            raise ValueError(f"{sk.name} has none of the keypoints the marker augmenter needs")
        self._plans, offset = [], 0
        for m in load_models(names):
            self._plans.append(_ModelPlan(m, sk, offset))
            offset += len(m.markers)
        self.models = names
        self.marker_names: tuple[str, ...] = tuple(n for m in names for n in _MARKERS_OF[m])
        self._origin = sk.index(_ORIGIN)
        idx = {n: i for i, n in enumerate(sk.points)}
        segs = [(idx[a], idx[b], r) for (a, b), r in SEGMENT_RATIOS.items() if a in idx and b in idx]
        self._seg_a = np.array([x[0] for x in segs], dtype=np.intp)
        self._seg_b = np.array([x[1] for x in segs], dtype=np.intp)
        self._seg_ratio = np.array([x[2] for x in segs])
        self._fixed_height = float(height_m or settings.height_m)
        self.mass_kg = float(settings.mass_kg or _DEFAULT_MASS_KG)
        self._mass_conf = _range_conf(self.mass_kg, *_MASS_RANGE) if settings.mass_kg else 1.0
        self.reset()

    def reset(self) -> None:
        """Forget everything (a new track): fresh LSTM state, held inputs, confidence, height
        estimate (unless fixed)."""
        self._states: list[LSTMState] = [p.model.net.new_state() for p in self._plans]
        self._held: list[np.ndarray | None] = [None] * len(self._plans)  # last normalised offsets (F_k, 3)
        self._conf = np.zeros(len(self.marker_names))
        self._last_t: float | None = None
        self._heights: list[float] = []
        self._t0: float | None = None
        self.height_m = self._fixed_height if self._fixed_height else math.nan
        self.height_final = bool(self._fixed_height)

    def _update_height(self, pts: np.ndarray, t: float) -> float:
        if not self.height_final:
            h = float(frame_heights(pts, self.skeleton))
            if math.isfinite(h):
                if self._t0 is None:
                    self._t0 = t
                self._heights.append(h)
                self.height_m = float(np.median(self._heights))
                if t - self._t0 >= self.settings.height_seconds:
                    self.height_final = True
        return self.height_m if math.isfinite(self.height_m) else _DEFAULT_HEIGHT_M

    def step(self, points: np.ndarray, time_s: float, measured: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
        """One frame.

        Args:
            points: ``(K, 3)`` world keypoints (z up), m; NaN = missing.
            time_s: frame time, s (increasing).
            measured: ``(K,)`` bool, False for a finite point a filter held (not measured);
                None = every finite point is measured.

        Returns:
            ``(E, 3)`` augmented markers (:attr:`marker_names`), world frame, m (NaN before
            every input of their model has been seen once, or in a frame without the hip), and
            ``(E,)`` confidence in [0, 1].
        """
        sk = self.skeleton
        pts = sk.with_derived(np.asarray(points, dtype=np.float64)) if sk.derived else np.asarray(points, dtype=np.float64)
        finite = np.isfinite(pts).all(-1)
        if measured is None:
            meas = finite
        else:
            m = np.asarray(measured, dtype=bool)
            if sk.derived:
                m = np.concatenate([m, np.array([m[list(d.sources)].all() for d in sk.derived], dtype=bool)])
            meas = finite & m
        out = np.full((len(self.marker_names), 3), np.nan)
        conf_now = np.zeros(len(self.marker_names))
        dt = 0.0 if self._last_t is None else max(float(time_s) - self._last_t, 0.0)
        self._last_t = float(time_s)
        if finite[self._origin]:
            h = self._update_height(pts, float(time_s))
            hip = pts[self._origin]
            rel = (pts - hip) @ OSIM_FROM_WORLD.T  # (K + D, 3) offsets in OpenSim axes (y up), m
            pconf = self._point_conf(rel, finite, meas, h)
            glob = min(_range_conf(h, *_HEIGHT_RANGE), self._mass_conf)
            for i, plan in enumerate(self._plans):
                y = self._run_model(i, plan, rel, finite, h)
                if y is None:
                    continue
                out[plan.out] = (y @ OSIM_FROM_WORLD) + hip  # OpenSim axes -> world
                fc = pconf[plan.feat]
                model_conf = glob * (1.0 if fc.min() >= 1.0 else 0.5)
                conf_now[plan.out] = np.minimum(np.where(plan.anchor, fc, 1.0).min(axis=1), model_conf)
        # confidence drops at once, recovers at most dt / recovery_s per frame
        self._conf = np.minimum(conf_now, self._conf + dt / self.settings.recovery_s)
        return out, self._conf.copy()

    def _point_conf(self, rel: np.ndarray, finite: np.ndarray, meas: np.ndarray, h: float) -> np.ndarray:
        """``(K + D,)`` confidence of each input point: measured 1 / held 0.5 / missing 0, its
        distance from the hip against the body envelope, its segments' proportions."""
        with np.errstate(invalid="ignore"):
            env = _ramp(np.sqrt(np.einsum("ij,ij->i", rel, rel)) / h, *_ENVELOPE)
            conf = np.minimum(np.where(meas, 1.0, np.where(finite, 0.5, 0.0)), np.nan_to_num(env))
            if self._seg_a.size:
                d = rel[self._seg_a] - rel[self._seg_b]
                ratio = np.sqrt(np.einsum("ij,ij->i", d, d)) / (h * self._seg_ratio)
                sc = np.nan_to_num(_ramp(np.abs(np.log(np.maximum(ratio, 1e-9))), *_SEGMENT))
                np.minimum.at(conf, self._seg_a, sc)
                np.minimum.at(conf, self._seg_b, sc)
        return conf

    def _run_model(self, i: int, plan: _ModelPlan, rel: np.ndarray, finite: np.ndarray, h: float
                   ) -> np.ndarray | None:
        """Features -> one LSTM step -> ``(E_k, 3)`` offsets from the hip (OpenSim axes, m);
        None before every input of the model has been seen once."""
        m = plan.model
        x = rel[plan.feat] / h  # (F_k, 3)
        f_ok = finite[plan.feat]
        if not f_ok.all():
            held = self._held[i]
            if held is None:
                return None
            x = np.where(f_ok[:, None], x, held)  # a missing input: its last offset, held
        self._held[i] = x
        inp = np.empty(m.mean.shape[0])
        inp[:-2] = x.ravel()
        inp[-2], inp[-1] = h, self.mass_kg
        z = (inp - m.mean) * plan.scale
        return m.net.step(z, self._states[i]).reshape(-1, 3) * h


# ============================================================================ the stage


class AugmentedFrame(NamedTuple):
    """The augmented markers of one Skeleton3D: the fields of a :class:`Skeleton3D` (same
    meaning, not validated; :meth:`message` builds the validated message for the wire).

    Attributes:
        skeleton: :func:`augmented_skeleton_name` (``"LSTM"`` with both models).
        points: ``(N, E, 3)`` world (z up), m; NaN where not available.
        scores: ``(N, E)`` float32 confidence in [0, 1].
        reproj_error_px: ``(N, E)`` float32, the largest of the anchor keypoints' (NaN where
            ``n_views`` is 0).
        n_views: ``(N, E)`` uint8, the fewest cameras among the anchor keypoints (a derived
            anchor: the mean of its sources); 0 when one is held or missing.
    """

    time_ns: int
    capture_ns: int
    skeleton: str
    person_ids: np.ndarray
    points: np.ndarray
    scores: np.ndarray
    reproj_error_px: np.ndarray
    n_views: np.ndarray

    @property
    def n_people(self) -> int:
        return int(self.points.shape[0])

    @property
    def n_keypoints(self) -> int:
        """E, the number of augmented markers."""
        return int(self.points.shape[1])

    def select(self, index) -> "AugmentedFrame":
        """The frame restricted to the people at ``index``."""
        idx = np.asarray(index, dtype=np.intp)
        return self._replace(person_ids=self.person_ids[idx], points=self.points[idx], scores=self.scores[idx],
                             reproj_error_px=self.reproj_error_px[idx], n_views=self.n_views[idx])

    def message(self) -> Skeleton3D:
        """The validated :class:`Skeleton3D` (e.g. to publish on ``aug/<person>/``)."""
        return Skeleton3D(*self)


class MarkerAugmenter:
    """Stage: ``Skeleton3D`` (keypoints) -> ``Skeleton3D`` of the augmented markers
    (``skeleton`` = :attr:`output_skeleton`, ``"LSTM"`` with both models, points in
    :attr:`marker_names` order), the same people in the same order; :meth:`augment` returns
    the same as an :class:`AugmentedFrame` (no message validation: the live IK path).

    Output per marker: ``scores`` = confidence in [0, 1]; ``n_views`` = the fewest cameras among
    its anchor keypoints (0 when one is held or missing); ``reproj_error_px`` = their largest
    reprojection error.

    Args:
        skeleton: keypoint set of the incoming messages.
        settings: see :class:`AugmentSettings`.

    Attributes:
        models: the models run (a skeleton without heels and toes, COCO_17, gets ``("upper",)``).
        marker_names: ``(E,)`` output marker names; ``output_skeleton``: their skeleton name
            (:func:`augmented_marker_names` maps it back).
        counters: ``frames``, ``people`` (person-frames), ``resets`` (fresh states after a gap).
    """

    def __init__(self, skeleton: str, settings: AugmentSettings = AugmentSettings()):
        self.skeleton = get_skeleton(skeleton)
        self.settings = settings
        self.models = available_models(self.skeleton, settings.models)
        if not self.models:
            raise ValueError(f"{self.skeleton.name} has none of the keypoints the marker augmenter needs")
        load_models(self.models)  # load now (and fail now), not at the first person
        self.output_skeleton = augmented_skeleton_name(self.models)
        self.marker_names = augmented_marker_names(self.output_skeleton)
        self._people: dict[int, PersonAugmenter] = {}
        self._seen_ns: dict[int, int] = {}
        self.counters = {"frames": 0, "people": 0, "resets": 0}
        self._anchor = self._anchor_indices()

    def _anchor_indices(self) -> np.ndarray:
        """``(E, K + D)`` bool: the anchor points of each output marker."""
        idx = {n: i for i, n in enumerate(self.skeleton.points)}
        out = np.zeros((len(self.marker_names), self.skeleton.n_points), dtype=bool)
        for e, m in enumerate(self.marker_names):
            out[e, [idx[a] for a in ANCHORS[m]]] = True
        return out

    def reset(self) -> None:
        """Forget every person."""
        self._people.clear()
        self._seen_ns.clear()

    def forget(self, person_id: int) -> None:
        """Forget one person (their next frame starts a fresh LSTM state)."""
        self._people.pop(int(person_id), None)
        self._seen_ns.pop(int(person_id), None)

    def person(self, person_id: int) -> PersonAugmenter:
        """The state of ``person_id``, created on first use."""
        pid = int(person_id)
        p = self._people.get(pid)
        if p is None:
            p = self._people[pid] = PersonAugmenter(self.skeleton, self.settings)
        return p

    def __call__(self, sk: Skeleton3D) -> Skeleton3D:
        return self.augment(sk).message()

    def augment(self, sk: Skeleton3D) -> AugmentedFrame:
        """Step every person of ``sk`` (see the class doc)."""
        if sk.skeleton != self.skeleton.name or sk.n_keypoints != self.skeleton.n_keypoints:
            raise ValueError(f"MarkerAugmenter expects {self.skeleton.name} ({self.skeleton.n_keypoints} keypoints), "
                             f"got {sk.skeleton} ({sk.n_keypoints})")
        self.counters["frames"] += 1
        n, e = sk.n_people, len(self.marker_names)
        pts = np.full((n, e, 3), np.nan)
        conf = np.zeros((n, e), dtype=np.float32)
        views = np.zeros((n, e), dtype=np.uint8)
        err = np.full((n, e), np.nan, dtype=np.float32)
        gap_ns = int(self.settings.max_gap_s * 1e9)
        for j, pid in enumerate(int(p) for p in sk.person_ids):
            self.counters["people"] += 1
            last = self._seen_ns.get(pid)
            if last is not None and sk.time_ns - last > gap_ns:
                self.forget(pid)
                self.counters["resets"] += 1
            self._seen_ns[pid] = sk.time_ns
            y, c = self.person(pid).step(sk.points[j], sk.time_ns * 1e-9, sk.n_views[j] > 0)
            ok = np.isfinite(y[:, 0])
            pts[j, ok] = y[ok]
            conf[j] = np.where(ok, c, 0.0)
            v_all = sk.n_views[j].astype(np.float64)
            e_all = np.nan_to_num(sk.reproj_error_px[j].astype(np.float64), nan=0.0)
            if self.skeleton.derived:
                v_all = self.skeleton.with_derived(v_all[:, None])[:, 0]
                e_all = self.skeleton.with_derived(e_all[:, None])[:, 0]
            views[j] = np.where(ok, np.where(self._anchor, v_all, 255.0).min(axis=1), 0).astype(np.uint8)
            err[j] = np.where(self._anchor, e_all, 0.0).max(axis=1)
        err = np.where(views > 0, err, np.nan).astype(np.float32)
        return AugmentedFrame(sk.time_ns, sk.capture_ns, self.output_skeleton, sk.person_ids.copy(), pts, conf, err, views)


# ============================================================================ offline


class AugmentedSequence(NamedTuple):
    """Augmented markers of one person over a sequence.

    Attributes:
        names: ``(E,)`` marker names (:data:`AUGMENTED_MARKERS`, or one model's markers when the
            skeleton lacks the other's inputs).
        markers: ``(T, E, 3)`` world frame (z up), m; NaN where not available.
        confidence: ``(T, E)`` in [0, 1].
        height_m: the height used, m.
    """

    names: tuple[str, ...]
    markers: np.ndarray
    confidence: np.ndarray
    height_m: float


def augment_sequence(points: np.ndarray, skeleton: str, time_s: np.ndarray | float = 60.0,
                     settings: AugmentSettings = AugmentSettings(), measured: np.ndarray | None = None
                     ) -> AugmentedSequence:
    """Augment one person's whole sequence (offline, e.g. ``rtkin reprocess``): the same
    :class:`PersonAugmenter` as live, stepped over every frame.

    Args:
        points: ``(T, K, 3)`` world keypoints (z up), m; NaN = missing.
        skeleton: their keypoint set.
        time_s: ``(T,)`` frame times, s, or the frame rate, Hz (a scalar).
        settings: without ``settings.height_m``, the height is estimated over the whole sequence
            first (:func:`estimate_height`), as Pose2Sim does, and held fixed.
        measured: ``(T, K)`` bool, False where a finite point was held, not measured (None = all).

    Returns:
        :class:`AugmentedSequence`.
    """
    P = np.asarray(points, dtype=np.float64)
    sk = get_skeleton(skeleton)
    if P.ndim != 3 or P.shape[1:] != (sk.n_keypoints, 3):
        raise ValueError(f"points must be (T, {sk.n_keypoints}, 3) for {sk.name}, got {P.shape}")
    T = P.shape[0]
    t = np.arange(T) / float(time_s) if np.ndim(time_s) == 0 else np.asarray(time_s, dtype=np.float64)
    if t.shape != (T,):
        raise ValueError(f"time_s must be a frame rate or (T,) = ({T},) times, got {np.shape(time_s)}")
    height = settings.height_m or estimate_height(P, sk)
    if not math.isfinite(height):
        height = _DEFAULT_HEIGHT_M
    person = PersonAugmenter(sk, settings, height_m=height)
    out = np.full((T, len(person.marker_names), 3), np.nan)
    conf = np.zeros((T, len(person.marker_names)))
    for f in range(T):
        out[f], conf[f] = person.step(P[f], t[f], None if measured is None else measured[f])
    return AugmentedSequence(person.marker_names, out, conf, float(height))


# ============================================================================ IK


def lstm_marker_set_path() -> Path:
    """Pose2Sim's ``Markers_LSTM.xml``: the augmented markers on the OpenSim model."""
    return assets.marker_set_path("LSTM")


def lstm_ik_weights() -> dict[str, float]:
    """Weights of the augmented markers in Pose2Sim's ``IK_Setup_Pose2Sim_withoutHands_LSTM.xml``
    (``IKMarkerTask``; 0 when not applied): pelvis 25, knees and ankles 30, heels 60, shoulders,
    C7, elbows and wrists 5, thigh and shank clusters 4. (The hand markers of the ``withHands``
    setup are COCO_133 keypoints, weighted by the skeleton's own setup.)"""
    path = assets.opensim_setup_dir() / "IK_Setup_Pose2Sim_withoutHands_LSTM.xml"
    if not path.is_file():
        raise assets.AssetNotFoundError(f"IK setup {path} not found; it is installed with `pip install pose2sim`.")
    out: dict[str, float] = {}
    for task in ET.parse(path).getroot().iter("IKMarkerTask"):
        apply = (task.findtext("apply") or "true").strip().lower() == "true"
        out[task.get("name", "")] = float((task.findtext("weight") or "0").strip()) if apply else 0.0
    return out


def augmented_ik_settings(solver, markers: Sequence[str] = AUGMENTED_MARKERS):
    """IK settings (:class:`rtkin.kinematics.ik.IKSettings`) that also track the augmented
    ``markers``: they are added to the model from ``Markers_LSTM.xml`` with the weights of
    Pose2Sim's LSTM IK setup, beside the keypoint markers with the weights of the skeleton's IK
    setup. Every weight is then multiplied by one factor, keypoint total / (keypoint + augmented
    total), so the solver's weight-relative terms (its smoothing prior) keep their strength."""
    from rtkin.kinematics.ik import ik_marker_weights

    sk = get_skeleton(solver.skeleton)
    kp = ik_marker_weights(sk.name)
    kp.update(dict(solver.marker_weights))
    kp = {m: kp.get(m, 1.0) for _, m in sk.markers}
    aug_table = lstm_ik_weights()
    aug = {m: aug_table.get(m, 0.0) for m in markers}
    total_kp, total_aug = sum(kp.values()), sum(aug.values())
    f = total_kp / (total_kp + total_aug) if total_kp + total_aug > 0 else 1.0
    return replace(solver,
                   marker_weights=tuple((m, w * f) for m, w in kp.items()),
                   extra_marker_set=str(lstm_marker_set_path()),
                   extra_marker_weights=tuple((m, w * f) for m, w in aug.items() if w > 0))


#: Keypoint sources (``[source] kind``) that give real detector keypoints.
_REAL_SOURCES = ("capture", "openpose")


def resolve_augment(augment: bool | None, source_kind: str) -> bool:
    """The ``[ik] augment`` setting resolved: ``True`` / ``False`` as given; ``None`` ("auto")
    = on for real detector keypoints (``source.kind`` ``"capture"`` or ``"openpose"``), off for
    the virtual subject (and for ``"none"``: sources started elsewhere, unknown)."""
    if augment is not None:
        return bool(augment)
    return source_kind in _REAL_SOURCES
