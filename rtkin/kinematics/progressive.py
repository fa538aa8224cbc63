"""Progressive live scaling: per-segment evidence from every solved frame -> per-body factors,
refined as the evidence grows (analytic, in-process, a fraction of a millisecond per frame).

Why not collect "good frames" and scale once: a live user needs right angles from the first
seconds, and whole good frames are rare (a squat, an occluded foot, a missing camera). Here each
solved frame contributes the segments it sees well:

1. Evidence. After the IK solves a frame on the model in use, each segment of
   :data:`rtkin.kinematics.scaling.SEGMENTS` whose two landmarks were used by the solution, seen
   by enough cameras, with a small reprojection error and a small IK residual gives one sample of
   its *neutral-equivalent length*: the measured landmark distance times (the model's neutral-pose
   length / the model's landmark distance in the solved pose). The pose factor removes what the
   pose does to a landmark distance (the shoulder marker sits ~3 cm off the joint: the
   shoulder-elbow distance changes with the arm elevation), so no frame is excluded for its pose.
2. Factors. Landmark distances are homogeneous of degree one in the body factors; around the
   generic model, ``L(p) = L0 + C (p - 1)`` with ``C`` = d(neutral lengths)/d(factors) of the
   generic model, computed once by finite differences (:func:`length_jacobian`). The factors ``p``
   of the body groups :data:`PARAMETERS` minimise
   ``sum_s w_s (L_s(p) - Lbar_s)^2 + sum_b (p_b - p0)^2 / sigma_prior^2
   + sum_pairs (p_r - p_l)^2 / sigma_sym^2``:
   robust (trimmed) mean segment lengths weighted by their standard errors, a prior at the
   stature factor ``p0`` (given height / generic stature, or estimated from the data), and a
   left/right prior. A body nothing measures (the feet with COCO_17) takes the prior. Linear
   least squares on 13 unknowns: microseconds.
3. Schedule. Refinements at ``refine_at_s`` seconds of usable data (a frame counts the fraction
   of the measurable segments it contributes), then every ``every_s`` until the factors change by
   less than ``converged_change``: the scaling state is then SCALED and refinement stops.

The factors can be checked with :func:`rtkin.kinematics.scaling.scale_factors`, the offline
scaling of a whole session.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from rtkin.core.messages import AngleFlag, Skeleton3D
from rtkin.core.skeletons import Skeleton, get_skeleton

__all__ = ["PARAMETERS", "MIRRORS", "REFINE_AT_S", "ProgressiveScalingSettings", "ScaleEstimate", "ProgressiveScaler",
           "length_jacobian", "to_body_factors", "stature_factor"]

#: Scale parameter (a body group sharing one uniform factor) -> model bodies.
PARAMETERS: dict[str, tuple[str, ...]] = {
    "pelvis": ("pelvis", "sacrum"),
    "femur_r": ("femur_r",), "femur_l": ("femur_l",),
    "tibia_r": ("tibia_r",), "tibia_l": ("tibia_l",),
    "foot_r": ("talus_r", "calcn_r", "toes_r"), "foot_l": ("talus_l", "calcn_l", "toes_l"),
    "torso": ("torso",), "head": ("head",),
    "humerus_r": ("humerus_r",), "humerus_l": ("humerus_l",),
    "forearm_r": ("ulna_r", "radius_r", "hand_r"), "forearm_l": ("ulna_l", "radius_l", "hand_l"),
}
_PNAMES = tuple(PARAMETERS)
#: seconds of usable data of the refinements before the last one: early and often at first (each
#: moves the model at most ``max_step``; held-out scenes, height given: mean error over the first
#: 2 s 2.3-2.5 -> 1.8-2.2 deg against refinements at 1 s and 3 s only)
REFINE_AT_S = (0.25, 0.5, 1.0, 3.0)
_NOT_EVIDENCE = ("shoulder_width",)
#: Left/right parameter pairs (a weak symmetry prior ties them).
MIRRORS = tuple((p, p[:-2] + "_l") for p in _PNAMES if p.endswith("_r"))


@dataclass(frozen=True)
class ProgressiveScalingSettings:
    """Settings of :class:`ProgressiveScaler` (units in the names).

    Attributes:
        min_views: a landmark triangulated from fewer cameras gives no sample.
        max_reproj_px: ... or with a larger mean reprojection error, px.
        min_score: ... or with a lower score (0..1).
        max_residual_m: ... or farther from the model after the IK solve than this, m. Loose on
            purpose: a segment of the generic model 20 % too short leaves its end 10-15 cm off,
            and must still be measured (glitches are gated off by the data, and the trimmed mean
            takes the rest).
        refine_at_s: seconds of usable data at which the factors are refined.
        every_s: after the last of ``refine_at_s``, refine every this many seconds of usable data
            until converged.
        converged_change: converged (SCALED) when a refinement after the last scheduled one
            changes no factor by more than this fraction.
        min_segment_s: a segment with less usable data than this (s) is not used yet.
        trim_fraction: cut at each end of a segment's samples for its robust mean.
        sample_sigma_m: floor of a segment sample's standard deviation, m.
        samples_per_s: independent samples per second of a segment (consecutive frames are
            correlated), for its standard error.
        prior_sigma: spread of a body's factor around the stature factor (relative).
        symmetry_sigma: spread of left vs right factors (relative).
        factor_range: factors are clipped to this range.
        max_step: a model switch changes no factor by more than this fraction; larger changes
            are applied in several switches (no jump in the angles). 0 = in one switch.
        stature_at_s: without a given height, a first estimate (the stature and the segments
            measured so far) at this much usable data, s: until then the model is the generic
            one (UNSCALED).
    """

    min_views: int = 2
    max_reproj_px: float = 15.0
    min_score: float = 0.3
    max_residual_m: float = 0.25
    refine_at_s: tuple[float, ...] = REFINE_AT_S + (10.0,)
    every_s: float = 5.0
    converged_change: float = 0.004
    min_segment_s: float = 0.1
    trim_fraction: float = 0.1
    sample_sigma_m: float = 0.004
    samples_per_s: float = 5.0
    prior_sigma: float = 0.06
    symmetry_sigma: float = 0.03
    factor_range: tuple[float, float] = (0.5, 2.0)
    max_step: float = 0.02
    stature_at_s: float = 0.1

    def __post_init__(self) -> None:
        if not self.refine_at_s or any(b <= a for a, b in zip(self.refine_at_s, self.refine_at_s[1:])) \
                or self.refine_at_s[0] <= 0:
            raise ValueError(f"refine_at_s must be increasing positive seconds, got {self.refine_at_s!r}")
        for name in ("every_s", "converged_change", "sample_sigma_m", "samples_per_s", "prior_sigma",
                     "symmetry_sigma", "max_residual_m", "max_reproj_px"):
            if not getattr(self, name) > 0:
                raise ValueError(f"ProgressiveScalingSettings.{name} must be > 0")
        if not 0 <= self.trim_fraction < 0.5 or self.max_step < 0:
            raise ValueError("trim_fraction must be in [0, 0.5) and max_step >= 0")


@dataclass(frozen=True)
class ScaleEstimate:
    """One refinement's result.

    Attributes:
        factors: body -> uniform factor (every body of :data:`PARAMETERS`).
        params: parameter -> factor. se: parameter -> standard error (relative).
        measured: parameters the data measures (the others follow the priors).
        stature_factor: the prior's factor (height / generic stature, given or estimated).
        usable_s: usable data behind it, s. change: largest relative change from the previous
            estimate (inf for the first).
        flag: AngleFlag scaling state it gives: PARTIAL, or 0 (SCALED).
        stature_m: standing height of the model these factors give, m.
    """

    factors: dict[str, float]
    params: dict[str, float]
    se: dict[str, float]
    measured: tuple[str, ...]
    stature_factor: float
    usable_s: float
    change: float
    flag: int
    stature_m: float = math.nan


# ============================================================================ model side

_JACOBIANS: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
_STATURE: dict[str, tuple[float, np.ndarray]] = {}
_STEP = 0.02


def length_jacobian(model_path: str | Path, skeleton: Skeleton) -> tuple[np.ndarray, np.ndarray]:
    """``(S,)`` neutral-pose segment lengths of the generic model (m, NaN = not measurable with
    this skeleton) and ``(S, P)`` their derivatives by the :data:`PARAMETERS` factors (m per unit
    factor), by central differences; cached per process (~0.5 s the first time)."""
    from rtkin.kinematics.model import template_model
    from rtkin.kinematics.scaling import SEGMENTS, _neutral_lengths

    key = (str(Path(model_path).resolve()), skeleton.name)
    if key not in _JACOBIANS:
        tmpl = template_model(Path(model_path), skeleton)
        base = _neutral_lengths(tmpl, skeleton, None)
        L0 = np.array([base[s] for s in SEGMENTS])
        C = np.zeros((len(SEGMENTS), len(_PNAMES)))
        for j, p in enumerate(_PNAMES):
            hi = _neutral_lengths(tmpl, skeleton, {b: 1 + _STEP for b in PARAMETERS[p]})
            lo = _neutral_lengths(tmpl, skeleton, {b: 1 - _STEP for b in PARAMETERS[p]})
            C[:, j] = [(hi[s] - lo[s]) / (2 * _STEP) for s in SEGMENTS]
        C[~np.isfinite(C)] = 0.0
        _JACOBIANS[key] = (L0, C)
    return _JACOBIANS[key]


def stature_jacobian(model_path: str | Path) -> tuple[float, np.ndarray]:
    """The generic model's standing height (m, :func:`rtkin.kinematics.scaling.model_stature`)
    and ``(P,)`` its derivatives by the :data:`PARAMETERS` factors (m per unit factor); cached."""
    from rtkin.kinematics.scaling import model_stature

    key = str(Path(model_path).resolve())
    if key not in _STATURE:
        s0 = model_stature(model_path)
        d = np.array([(model_stature(model_path, {b: 1 + _STEP for b in PARAMETERS[p]})
                       - model_stature(model_path, {b: 1 - _STEP for b in PARAMETERS[p]})) / (2 * _STEP)
                      for p in _PNAMES])
        _STATURE[key] = (s0, d)
    return _STATURE[key]


def to_body_factors(params: Mapping[str, float]) -> dict[str, float]:
    """Parameter factors -> factor of every body of :data:`PARAMETERS`."""
    return {b: float(params[p]) for p, bodies in PARAMETERS.items() for b in bodies}


def stature_factor(height_m: float, model_path: str | Path | None = None) -> float:
    """Uniform factor that makes the generic model stand ``height_m`` tall."""
    from rtkin.kinematics.scaling import model_stature

    return float(height_m) / model_stature(model_path)


# ============================================================================ the estimator


class ProgressiveScaler:
    """Per-segment evidence of one person -> refined per-body factors (see the module doc).

    Args:
        settings: thresholds, schedule and priors.
        skeleton: keypoint set name.
        model_path: the generic model.
        height_m: the subject's height, m (0 = unknown: the stature is estimated from the data).

    Use: after each solved frame, :meth:`observe`; when :meth:`due` is True, :meth:`refine`
    returns the new estimate (also in :attr:`estimate`).
    """

    def __init__(self, settings: ProgressiveScalingSettings, skeleton: str, model_path: str | Path,
                 height_m: float = 0.0):
        from rtkin.kinematics.scaling import SEGMENTS

        self.settings = settings
        self.skeleton = get_skeleton(skeleton)
        self.model_path = Path(model_path)
        self.height_m = float(height_m)
        self.segments = tuple(SEGMENTS)
        self.L0, self.C = length_jacobian(self.model_path, self.skeleton)
        self.S0, self.dS = stature_jacobian(self.model_path)
        # segments the estimate uses: landmarks this skeleton has, and not the shoulder width:
        # detectors put the shoulder keypoints inside the model's acromion markers (MoveNet on
        # the real demo: 0.36 m apart vs 0.40 m on a model whose trunk fits at 0.97), which would
        # shrink the torso; the torso's factor comes from the trunk length.
        self.measurable = np.isfinite(self.L0) & np.array([s not in _NOT_EVIDENCE for s in self.segments])
        self.p0_given = stature_factor(height_m, self.model_path) if height_m else None
        self._landmarks: tuple | None = None
        self._diff: np.ndarray | None = None  # (S, M) see _landmark_matrices
        self._need: np.ndarray | None = None
        self._samples: list[list[float]] = [[] for _ in self.segments]
        self._seconds = np.zeros(len(self.segments))  # usable time behind each segment's samples, s
        self.usable_s = 0.0
        self._last_t: float | None = None
        self._next = 0  # index into the schedule
        self.estimate: ScaleEstimate | None = None
        self.converged = False

    # ------------------------------------------------------------------ evidence
    def _landmark_markers(self, solver) -> tuple:
        """Per segment: (marker indices of landmark a, of landmark b), or None if not measurable."""
        from rtkin.kinematics.scaling import _MIDPOINTS, SEGMENTS

        sk = self.skeleton
        point_names = sk.points
        by_kp = {}
        for m, pi in enumerate(solver.marker_points):
            if pi < sk.n_keypoints:
                by_kp[point_names[pi]] = m

        def resolve(name):
            if name in by_kp:
                return [by_kp[name]]
            if name in _MIDPOINTS and all(n in by_kp for n in _MIDPOINTS[name]):
                return [by_kp[n] for n in _MIDPOINTS[name]]
            return None

        out = []
        for s, (a, b) in SEGMENTS.items():
            ia, ib = resolve(a), resolve(b)
            out.append(None if ia is None or ib is None else (np.array(ia), np.array(ib)))
        return tuple(out)

    def _landmark_matrices(self, n_markers: int) -> tuple[np.ndarray, np.ndarray]:
        """``(S, M)`` landmark a's mean minus landmark b's (as weights on the markers), and
        ``(S, M)`` 1 where a segment needs the marker."""
        diff = np.zeros((len(self._landmarks), n_markers))
        need = np.zeros_like(diff)
        for s, lm in enumerate(self._landmarks):
            if lm is None:
                continue
            ia, ib = lm
            np.add.at(diff[s], ia, 1.0 / len(ia))
            np.add.at(diff[s], ib, -1.0 / len(ib))
            need[s, ia] = need[s, ib] = 1.0
        return diff, need

    def good_markers(self, solver, sk: Skeleton3D, n: int) -> np.ndarray:
        """``(M,)`` markers of the last solution that may give samples: not gated off, seen by
        ``min_views`` cameras (not held), small reprojection error, good score, residual below
        ``max_residual_m``."""
        st = self.settings
        skel = self.skeleton
        views = sk.n_views[n].astype(np.int64)
        err = sk.reproj_error_px[n].astype(np.float64)
        score = sk.scores[n].astype(np.float64)
        if skel.derived:
            views = np.concatenate([views, [views[list(d.sources)].min() for d in skel.derived]])
            err = np.concatenate([err, [err[list(d.sources)].max() for d in skel.derived]])
            score = np.concatenate([score, [score[list(d.sources)].min() for d in skel.derived]])
        mp = solver.marker_points
        own = mp < len(views)  # the skeleton's markers (augmented markers are not evidence of the lengths)
        mp = np.where(own, mp, 0)
        with np.errstate(invalid="ignore"):
            ok = own & (views[mp] >= st.min_views) & (err[mp] <= st.max_reproj_px) & (score[mp] >= st.min_score)
            resid = np.linalg.norm(solver.last_model_markers - solver.last_observed_markers, axis=-1)
            # not gated off (a glitch against the marker's own recent path: data, not model),
            # even if the solution dropped it: a model far too small leaves its ends far off
            ok &= ~solver.gated & (resid <= st.max_residual_m)
        return ok

    def observe(self, solver, sk: Skeleton3D, n: int) -> int:
        """Add the samples of person ``n`` of ``sk`` from ``solver``'s solution of that frame
        (call right after it was solved). Returns the number of segments sampled."""
        if solver.last_model_markers is None:
            return 0
        if self._landmarks is None:
            self._landmarks = self._landmark_markers(solver)
        t = float(solver.last_time_s)
        dt = 0.0 if self._last_t is None else min(max(t - self._last_t, 0.0), 0.1)
        if self._last_t is None:
            dt = 1.0 / 60.0
        self._last_t = t
        good = self.good_markers(solver, sk, n)
        P, X = solver.last_model_markers, solver.last_observed_markers
        p_cur = self._params_of(solver)
        neutral = self.L0 + self.C @ (p_cur - 1.0)  # (S,) neutral lengths of the model in use
        # every segment at once: landmark a - landmark b as (S, M) averaging matrices
        if self._diff is None:
            self._diff, self._need = self._landmark_matrices(len(good))
            self._lm_ok = np.array([lm is not None for lm in self._landmarks])
        seen = (self._need @ ~good == 0) & self._lm_ok  # (S,) all its landmark markers good
        with np.errstate(invalid="ignore"):
            d_model = np.linalg.norm(self._diff @ np.where(good[:, None], P, 0.0), axis=-1)
            d_data = np.linalg.norm(self._diff @ np.where(good[:, None], X, 0.0), axis=-1)
            take = seen & (d_model > 1e-3) & np.isfinite(d_data)
        count = 0
        for s in np.flatnonzero(take):
            self._samples[s].append(float(d_data[s] * neutral[s] / d_model[s]))
            self._seconds[s] += dt
            count += 1
        n_meas = sum(lm is not None for lm in self._landmarks)
        if n_meas:
            self.usable_s += dt * count / n_meas
        return count

    @staticmethod
    def _params_of(solver) -> np.ndarray:
        f = solver.scale_factors
        if not f:
            return np.ones(len(_PNAMES))
        return np.array([f.get(PARAMETERS[p][0], 1.0) for p in _PNAMES])

    # ------------------------------------------------------------------ schedule
    def due(self) -> bool:
        """A refinement is due (the usable data passed the next point of the schedule)."""
        if self.converged:
            return False
        st = self.settings
        if self.estimate is None and self.p0_given is None and st.stature_at_s < st.refine_at_s[0]:
            return self.usable_s >= st.stature_at_s  # without a height: a first estimate early
        if self._next < len(st.refine_at_s):
            return self.usable_s >= st.refine_at_s[self._next]
        last = self.estimate.usable_s if self.estimate is not None else st.refine_at_s[-1]
        return self.usable_s >= last + st.every_s

    # ------------------------------------------------------------------ factors
    def _segment_stats(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per segment: robust mean length (m), standard error (m), seconds of samples."""
        st = self.settings
        S = len(self.segments)
        mean, se, secs = np.full(S, np.nan), np.full(S, np.inf), np.zeros(S)
        for s, x in enumerate(self._samples):
            if not x:
                continue
            a = np.sort(np.asarray(x))
            k = int(st.trim_fraction * a.size)
            core = a[k:a.size - k] if a.size - 2 * k > 0 else a
            secs[s] = self._seconds[s]
            if secs[s] < st.min_segment_s:
                continue
            mean[s] = float(core.mean())
            sigma = max(float(core.std()), st.sample_sigma_m)
            n_eff = max(1.0, secs[s] * st.samples_per_s)
            se[s] = sigma / math.sqrt(n_eff)
        return mean, se, secs

    def _solve(self, mean: np.ndarray, se: np.ndarray, use: np.ndarray, p0: float) -> tuple[np.ndarray, np.ndarray]:
        """Factors ``(P,)`` and their covariance ``(P, P)`` with the prior at ``p0``."""
        st = self.settings
        L0, C = self.L0[use], self.C[use]
        W = 1.0 / se[use] ** 2
        P = len(_PNAMES)
        A = C.T @ (C * W[:, None])
        b = C.T @ (W * (mean[use] - L0 + C.sum(1)))  # L(p) = L0 - C 1 + C p
        lam = 1.0 / (st.prior_sigma * p0) ** 2
        A[np.arange(P), np.arange(P)] += lam
        b += lam * p0
        mu = 1.0 / (st.symmetry_sigma * p0) ** 2
        idx = {p: i for i, p in enumerate(_PNAMES)}
        for r, l in MIRRORS:
            i, j = idx[r], idx[l]
            A[i, i] += mu
            A[j, j] += mu
            A[i, j] -= mu
            A[j, i] -= mu
        return np.clip(np.linalg.solve(A, b), *st.factor_range), np.linalg.inv(A)

    def stature_m(self, params: np.ndarray) -> float:
        """Standing height of the model scaled by ``(P,)`` factors, m (linearised)."""
        return float(self.S0 + self.dS @ (params - 1.0))

    def refine(self) -> ScaleEstimate | None:
        """Solve the factors from the evidence so far; None if no segment is measured yet."""
        st = self.settings
        mean, se, _ = self._segment_stats()
        use = np.isfinite(mean) & self.measurable
        if not use.any():
            return None
        if self.p0_given is not None:
            p0 = self.p0_given
            p, cov = self._solve(mean, se, use, p0)
        else:  # the stature from the data: that of the model the measured segments give
            p0 = 1.0
            for _ in range(3):
                p, cov = self._solve(mean, se, use, p0)
                p0 = self.stature_m(p) / self.S0
        early = self.estimate is None and self.usable_s < st.refine_at_s[0]  # not a scheduled one
        measured = tuple(_PNAMES[j] for j in np.flatnonzero(np.abs(self.C[use]).sum(0) > 1e-6))
        params = {n: float(v) for n, v in zip(_PNAMES, p)}
        prev = self.estimate
        change = math.inf if prev is None else max(abs(params[k] / prev.params[k] - 1) for k in params)
        if not early:
            self._next += 1
        self.converged = self._next > len(st.refine_at_s) and change < st.converged_change
        flag = 0 if self.converged else int(AngleFlag.PARTIAL)
        self.estimate = ScaleEstimate(to_body_factors(params), params,
                                      {n: float(math.sqrt(cov[i, i]) / max(p[i], 1e-6)) for i, n in enumerate(_PNAMES)},
                                      measured, float(p0), self.usable_s, change, flag,
                                      self.stature_m(np.array([params[n] for n in _PNAMES])))
        return self.estimate

    def status(self) -> dict:
        """Usable seconds, samples per segment, the current estimate's factors and state."""
        e = self.estimate
        return {"usable_s": round(self.usable_s, 2),
                "samples": {s: len(x) for s, x in zip(self.segments, self._samples)},
                "state": "scaled" if self.converged else ("partial" if e is not None else "collecting"),
                **({"params": {k: round(v, 4) for k, v in e.params.items()},
                    "stature_factor": round(e.stature_factor, 4)} if e is not None else {})}
