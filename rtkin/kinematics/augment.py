"""Marker augmentation: Pose2Sim's LSTM marker augmenter as a stateful streaming stage.

The augmenter (OpenCap's "marker enhancer", shipped in Pose2Sim as ``MarkerAugmenter/LSTM/v0.3_lower``
and ``v0.3_upper``) predicts 43 anatomical markers of a lab marker set (``Markers_LSTM.xml``: ASIS,
PSIS, medial/lateral knees, ankles, elbows and wrists, thigh and shank clusters, hip joint centres,
feet) from sparse keypoints. Its LSTMs are causal, so running them one frame at a time with explicit
state (:mod:`rtkin.kinematics.augment_lstm`) gives exactly what Pose2Sim computes over a whole trial,
for ~0.3-0.5 ms per person-frame (both models) instead of ~8 ms or more for a 60-frame window per
frame (``benchmarks/bench_augment.py``).

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
  1.2 / 2.3 m, a given mass outside 40-110 kg to 0 at 25 / 150 kg; any of the model's input keypoints
  below 1 by the terms above halves it;

and it recovers from a drop no faster than ``1 / recovery_s`` per second (the LSTM remembers a bad
input for a while), starting from 0 at a new track (the LSTM's zero state needs a few frames).

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
from numba import njit

from rtkin.core import assets
from rtkin.core.frames import OSIM_FROM_WORLD
from rtkin.core.messages import Skeleton3D
from rtkin.core.skeletons import Skeleton, get_skeleton
from rtkin.kinematics.augment_lstm import LSTMState
from rtkin.kinematics.augment_models import (
    _DEFAULT_HEIGHT_M,
    _DEFAULT_MASS_KG,
    _MARKERS_OF,
    _ORIGIN,
    ANCHORS,
    AUGMENTED_MARKERS,
    AUGMENTED_SKELETON,
    LOWER_FEATURES,
    LOWER_MARKERS,
    POSE2SIM_VERSION,
    SEGMENT_RATIOS,
    UPPER_FEATURES,
    UPPER_MARKERS,
    AugmenterModel,
    augmented_marker_names,
    augmented_skeleton_name,
    available_models,
    estimate_height,
    frame_heights,
    load_models,
)

__all__ = [  # the definitions and models (augment_models) are re-exported here
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
    "SEGMENT_RATIOS",
    "AugmenterModel",
    "load_models",
    "available_models",
    "frame_heights",
    "estimate_height",
    "AugmentSettings",
    "AugmentedFrame",
    "PersonAugmenter",
    "MarkerAugmenter",
    "AugmentedSequence",
    "augment_sequence",
    "lstm_marker_set_path",
    "lstm_ik_weights",
    "augmented_ik_settings",
    "AUGMENTED_ROBUST_SCALE_M",
    "resolve_augment",
]


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


# ============================================================================ one person


def _ramp(x, good: float, bad: float):
    """1 at ``x <= good``, 0 at ``x >= bad``, linear between (NaN stays NaN)."""
    return np.minimum(np.maximum((bad - x) / (bad - good), 0.0), 1.0)


def _range_conf(value: float, good: tuple[float, float], bad: tuple[float, float]) -> float:
    """1 inside ``good`` (lo, hi), 0 outside ``bad``, linear between."""
    lo = (value - bad[0]) / (good[0] - bad[0])
    hi = (bad[1] - value) / (bad[1] - good[1])
    return max(0.0, min(1.0, lo, hi))


@njit(cache=True)
def _masked_min(mask, values, fill, sign):  # pragma: no cover - compiled
    """``np.where(mask, values, fill).min(axis=1)`` (``sign`` 1.0) or ``.max(axis=1)`` (``sign``
    -1.0, on ``-values`` and ``-fill`` negated back) of ``mask`` (R, P) bool over ``values`` (P,):
    (R,), NaN where a selected value is NaN. Without numpy's per-call overhead (exact: a min)."""
    out = np.empty(mask.shape[0])
    for r in range(mask.shape[0]):
        m = sign * fill
        nan = False
        for p in range(mask.shape[1]):
            if mask[r, p]:
                x = sign * values[p]
                if np.isnan(x):
                    nan = True
                elif x < m:
                    m = x
        out[r] = np.nan if nan else sign * m
    return out


#: the Hip keypoint and the mid-point of RHip and LHip agree to this (m; a few mm to ~2 cm on
#: the virtual subject, p99 of good frames); beyond it, the one nearer the last origin is used
_ORIGIN_AGREE_M = 0.1
_ENVELOPE = (0.7, 0.9)  # anchor distance from the hip / height: full trust, none
_SEGMENT = (math.log(1.25), math.log(1.6))  # |log(segment ratio / standard ratio)|: full trust, none
_HEIGHT_RANGE = ((1.45, 2.0), (1.2, 2.3))  # m: full trust, none
_MASS_RANGE = ((40.0, 110.0), (25.0, 150.0))  # kg: full trust, none


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
        self.models = names
        self._models: tuple[AugmenterModel, ...] = load_models(names)
        self.marker_names: tuple[str, ...] = tuple(n for m in names for n in _MARKERS_OF[m])
        self._tables(sk)
        self._fixed_height = float(height_m or settings.height_m)
        self.mass_kg = float(settings.mass_kg or _DEFAULT_MASS_KG)
        self._mass_conf = _range_conf(self.mass_kg, *_MASS_RANGE) if settings.mass_kg else 1.0
        #: frames whose origin was the RHip/LHip mid-point instead of a bad Hip keypoint
        self.origin_replaced = 0
        self.reset()

    def _tables(self, sk: Skeleton) -> None:
        """Index tables over both models at once: the features of model k are rows
        ``_f[k]:_f[k+1]`` of the gathered (F, 3) offsets, its inputs ``3 F_k + 2`` values."""
        idx = {n: i for i, n in enumerate(sk.points)}
        self._origin = idx[_ORIGIN]
        self._hips = np.array([idx["RHip"], idx["LHip"]], dtype=np.intp) if {"RHip", "LHip"} <= set(idx) else None
        feats = [f for m in self._models for f in m.features]
        self._feat = np.array([idx[f] for f in feats], dtype=np.intp)  # (F,) point index per feature
        self._f = np.cumsum([0] + [len(m.features) for m in self._models])
        self._e = np.cumsum([0] + [len(m.markers) for m in self._models])
        self._mean = [m.mean for m in self._models]
        self._scale = [1.0 / m.std for m in self._models]
        # (E, P) anchors of each marker; (E, P) the input points of each marker's model
        n_p = sk.n_points
        self._anchor = np.zeros((len(self.marker_names), n_p), dtype=bool)
        self._inputs = np.zeros((len(self.marker_names), n_p), dtype=bool)
        for k, m in enumerate(self._models):
            rows = slice(self._e[k], self._e[k + 1])
            self._inputs[rows, [idx[f] for f in m.features]] = True
            for e, name in enumerate(m.markers):
                self._anchor[self._e[k] + e, [idx[a] for a in ANCHORS[name]]] = True
        # segments with standard proportions, and (P, S) which points each one touches
        segs = [(idx[a], idx[b], r) for (a, b), r in SEGMENT_RATIOS.items() if a in idx and b in idx]
        self._seg_a = np.array([x[0] for x in segs], dtype=np.intp)
        self._seg_b = np.array([x[1] for x in segs], dtype=np.intp)
        self._seg_ratio = np.array([x[2] for x in segs])
        self._seg_of = np.zeros((n_p, len(segs)), dtype=bool)
        self._seg_of[self._seg_a, np.arange(len(segs))] = True
        self._seg_of[self._seg_b, np.arange(len(segs))] = True

    def reset(self) -> None:
        """Forget everything (a new track): fresh LSTM state, held inputs, confidence, height
        estimate (unless fixed)."""
        self._states: list[LSTMState] = [m.net.new_state() for m in self._models]
        self._held: np.ndarray | None = None  # (F, 3) last normalised offsets
        self._conf = np.zeros(len(self.marker_names))
        self._last_t: float | None = None
        self._last_origin: np.ndarray | None = None
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
            every input has been seen once, or in a frame without the hip), and ``(E,)``
            confidence in [0, 1].
        """
        sk = self.skeleton
        pts = np.asarray(points, dtype=np.float64)
        if sk.derived:
            pts = sk.with_derived(pts)
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
            hip = self._origin_point(pts, finite)
            rel = (pts - hip) @ OSIM_FROM_WORLD.T  # (K + D, 3) offsets in OpenSim axes (y up), m
            y = self._run_models(rel, finite, h)
            if y is not None:
                out = y @ OSIM_FROM_WORLD + hip  # OpenSim axes -> world
                conf_now = self._confidence(rel, finite, meas, h)
        # confidence drops at once, recovers at most dt / recovery_s per frame
        self._conf = np.minimum(conf_now, self._conf + dt / self.settings.recovery_s)
        return out, self._conf.copy()

    def _origin_point(self, pts: np.ndarray, finite: np.ndarray) -> np.ndarray:
        """The origin of every input and output (``(3,)`` m): the Hip keypoint, unless it
        disagrees with the mid-point of RHip and LHip by more than :data:`_ORIGIN_AGREE_M` and
        that mid-point is nearer the previous frame's origin (one bad Hip would otherwise move
        all 43 markers at once, and stay in the LSTMs' state for a few frames)."""
        hip = pts[self._origin]
        if self._hips is not None and self._last_origin is not None and finite[self._hips].all():
            mid = 0.5 * (pts[self._hips[0]] + pts[self._hips[1]])
            if (np.linalg.norm(hip - mid) > _ORIGIN_AGREE_M
                    and np.linalg.norm(mid - self._last_origin) < np.linalg.norm(hip - self._last_origin)):
                hip = mid
                self.origin_replaced += 1
        self._last_origin = hip
        return hip

    def prepare(self) -> None:
        """The part of the next step that depends on the past only (the LSTMs' recurrent
        products): call in idle time, e.g. after a frame was published. Optional: :meth:`step`
        does it otherwise, with the same result."""
        for model, state in zip(self._models, self._states):
            model.net.prepare(state)

    def _run_models(self, rel: np.ndarray, finite: np.ndarray, h: float) -> np.ndarray | None:
        """Features -> one step of each LSTM -> ``(E, 3)`` offsets from the hip (OpenSim axes,
        m); None before every input has been seen once (a missing input: its last offset)."""
        x = rel[self._feat] / h  # (F, 3)
        ok = finite[self._feat]
        if not ok.all():
            if self._held is None:
                return None
            x = np.where(ok[:, None], x, self._held)
        self._held = x
        ys = []
        for k, model in enumerate(self._models):
            xk = x[self._f[k]:self._f[k + 1]]
            inp = np.empty(3 * len(xk) + 2)
            inp[:-2] = xk.ravel()
            inp[-2], inp[-1] = h, self.mass_kg
            ys.append(model.net.step((inp - self._mean[k]) * self._scale[k], self._states[k]))
        return np.concatenate(ys).reshape(-1, 3) * h

    def _confidence(self, rel: np.ndarray, finite: np.ndarray, meas: np.ndarray, h: float) -> np.ndarray:
        """``(E,)``: per input point, measured 1 / held 0.5 / missing 0, its distance from the
        hip against the body envelope and its segments' proportions; per marker, the minimum
        over its anchors and its model's terms (height, mass, any input below 1 -> x 0.5)."""
        with np.errstate(invalid="ignore"):  # NaN for missing points: fmin ignores them
            env = _ramp(np.sqrt(np.einsum("ij,ij->i", rel, rel)) / h, *_ENVELOPE)
            point = np.fmin(np.where(meas, 1.0, np.where(finite, 0.5, 0.0)), env)  # (P,)
            if self._seg_a.size:
                d = rel[self._seg_a] - rel[self._seg_b]
                ratio = np.sqrt(np.einsum("ij,ij->i", d, d)) / (h * self._seg_ratio)
                seg = _ramp(np.abs(np.log(np.maximum(ratio, 1e-9))), *_SEGMENT)  # (S,)
                seg[np.isnan(seg)] = 1.0  # an end is missing: that point says so already
                point = np.fmin(point, _masked_min(self._seg_of, seg, 1.0, 1.0))
        glob = min(_range_conf(h, *_HEIGHT_RANGE), self._mass_conf)
        anchor = _masked_min(self._anchor, point, 1.0, 1.0)
        inputs_ok = _masked_min(self._inputs, point, 1.0, 1.0) >= 1.0
        return np.minimum(anchor, np.where(inputs_ok, glob, 0.5 * glob))


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
        counters: ``frames``, ``people`` (person-frames), ``resets`` (fresh states after a gap),
            ``origin_replaced`` (person-frames whose bad Hip keypoint gave way to the hips' mid-point).
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
        self.counters = {"frames": 0, "people": 0, "resets": 0, "origin_replaced": 0}
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

    def prepare(self) -> None:
        """:meth:`PersonAugmenter.prepare` for every person (idle time: after a frame's output)."""
        for p in self._people.values():
            p.prepare()

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
            person = self.person(pid)
            replaced = person.origin_replaced
            y, c = person.step(sk.points[j], sk.time_ns * 1e-9, sk.n_views[j] > 0)
            self.counters["origin_replaced"] += person.origin_replaced - replaced
            ok = np.isfinite(y[:, 0])
            pts[j, ok] = y[ok]
            conf[j] = np.where(ok, c, 0.0)
            v_all = sk.n_views[j].astype(np.float64)
            e_all = np.fmax(sk.reproj_error_px[j].astype(np.float64), 0.0)  # NaN (not measured) -> 0
            if self.skeleton.derived:
                v_all = self.skeleton.with_derived(v_all[:, None])[:, 0]
                e_all = self.skeleton.with_derived(e_all[:, None])[:, 0]
            views[j] = np.where(ok, _masked_min(self._anchor, v_all, 255.0, 1.0), 0).astype(np.uint8)
            err[j] = _masked_min(self._anchor, e_all, 0.0, -1.0)
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


#: Cauchy scale of the IK's robust loss when it tracks augmented markers, m (at least): their
#: residuals are ~30 mm RMS (measured: two truth scenes and the real demo, bench_augment.py), so
#: the keypoints' 20 mm scale treats a typical augmented marker as half an outlier, and the
#: reweighting keeps the solver iterating (7.8-8.5 instead of 4.5-5.7 model evaluations per
#: frame, and 1.3 deg worse mean joint-angle RMSE, on both truth scenes).
AUGMENTED_ROBUST_SCALE_M = 0.05


def augmented_ik_settings(solver, markers: Sequence[str] = AUGMENTED_MARKERS):
    """IK settings (:class:`rtkin.kinematics.ik.IKSettings`) that also track the augmented
    ``markers``: they are added to the model from ``Markers_LSTM.xml`` with the weights of
    Pose2Sim's LSTM IK setup, beside the keypoint markers with the weights of the skeleton's IK
    setup. Every weight is then multiplied by one factor, keypoint total / (keypoint + augmented
    total), so the solver's weight-relative terms (its smoothing prior) keep their strength; the
    robust loss scale is at least :data:`AUGMENTED_ROBUST_SCALE_M`."""
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
                   robust_scale_m=max(solver.robust_scale_m, AUGMENTED_ROBUST_SCALE_M),
                   marker_weights=tuple((m, w * f) for m, w in kp.items()),
                   extra_marker_set=str(lstm_marker_set_path()),
                   extra_marker_weights=tuple((m, w * f) for m, w in aug.items() if w > 0))


#: Keypoint sources (``[source] kind``) known to give real detector keypoints: a pose model on
#: camera frames in this run. An OpenPose-JSON folder may come from a detector or from a
#: simulation (truth scenes are written that way), so auto leaves it off.
_REAL_SOURCES = ("capture",)


def resolve_augment(augment: bool | None, source_kind: str, skeleton: str) -> bool:
    """The ``[ik] augment`` setting resolved: ``True`` / ``False`` as given; ``None`` ("auto")
    = on for keypoints a pose model finds on camera frames in this run (``source.kind``
    ``"capture"``) of a skeleton with the body model's inputs (HALPE_26, COCO_133: heels and
    toes), else off. OpenPose-JSON folders are off: rtkin cannot tell whether a detector or a
    simulation wrote them, and on the truth scenes written as OpenPose JSON the live pass
    went from 2-3 deg to 4.7-5.3 deg mean RMSE with it (``bench_accuracy.py --live --augment``).

    Why (``benchmarks/bench_augment.py``): the augmenter learnt to map detector keypoints to lab
    markers, correcting where detectors put joints; the virtual subject's keypoints are the
    model's own markers, which the LSTM then moves 2-6 cm away (joint-angle RMSE 2.2 -> 5.7 and
    3.0 -> 7.1 deg on two truth scenes). COCO_17 has no heels or toes, so only the arm model can run: its 8 markers then
    outweigh the keypoints and pull the trunk (measured on the real demo: pelvis list and lumbar
    flexion shift by 15-20 deg). ``"none"`` (sources started elsewhere): unknown, off."""
    if augment is not None:
        return bool(augment)
    return source_kind in _REAL_SOURCES and "lower" in available_models(skeleton)
