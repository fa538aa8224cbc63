"""Zero-phase (non-causal) smoothing of whole 3D keypoint trajectories, for offline reprocessing.

Two smoothers with one interface, ``smooth(points (T, K, 3) m, weights (T, K), fs_hz) -> (T, K, 3)``:

- ``"butterworth"``: what Pose2Sim does. Hampel outlier rejection (window 7, 2 sigma, as
  Pose2Sim's ``reject_outliers``), gaps shorter than ``max_gap_s`` interpolated linearly
  (Pose2Sim's ``interp_if_gap_smaller_than``), then a low-pass Butterworth run forward and
  backward (``scipy.signal.filtfilt``) on every contiguous run of samples. As in Pose2Sim the
  designed order is ``order / 2``, so the forward-backward pass has magnitude ``|H|^2`` of an
  ``order / 2`` filter (``order`` 4 at 6 Hz -> -6 dB at 6 Hz). It ignores the confidence of each
  point: a low-score point weighs as much as a good one. Unlike Pose2Sim it keeps the last frame.
- ``"rts"``: a Rauch-Tung-Striebel smoother (forward Kalman filter, backward RTS pass) per
  coordinate with a constant-acceleration model driven by white jerk of spectral density
  ``jerk_psd`` (m^2/s^5), and a measurement noise that depends on each point's confidence:
  variance ``noise_m^2 / w`` with ``w`` from :func:`point_weights` (score, views,
  reprojection error; ``w = 0``: missing). Gaps are bridged by the model (up to ``max_gap_s``:
  beyond, the trajectory is cut and restarted). ``robust_iterations`` re-weighting passes
  (a Cauchy weight on each point's 3D residual to the smoothed path, scale ``robust_k`` times
  its expected noise) remove outliers that survived triangulation. Its steady-state response is
  that of a zero-phase low-pass with a -6 dB point at ``~ (jerk_psd / noise^2 * w)^(1/6) / (2 pi)``
  (0 phase lag at every frequency).

Which is the default (:class:`SmoothingSettings`) was decided on the virtual subject by
``benchmarks/bench_reprocess.py --variants`` (joint angles and 3D error against the truth, two
bodies; see the settings docstring for the figures).

Units: m, s, Hz; weights dimensionless.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.signal
from numba import njit

__all__ = ["SmoothingSettings", "SMOOTHERS", "point_weights", "smooth", "butterworth_zero_phase", "rts_smooth",
           "hampel"]

SMOOTHERS = ("rts", "butterworth", "none")


@dataclass(frozen=True)
class SmoothingSettings:
    """Offline keypoint smoothing (TOML ``[reprocess.smoothing]`` maps 1:1).

    The default, ``"rts"``, was chosen from ``bench_reprocess.py --variants`` on held-out virtual
    subjects (1.55 m and 1.95 m bodies, demo rig, 3 px noise, 2 % outliers, 5 % dropouts, a
    bystander; motion seeds 21, 22): its 3D error was lower than the Pose2Sim-style
    Butterworth's on both (median 3.22 vs 3.36 mm and 3.19 vs 3.31 mm; 95th percentile 7.2 vs
    8.6 mm and 6.8 vs 8.2 mm), and so were the knee, ankle and elbow angles (knee 0.63 vs 3.24
    deg on the 1.55 m body, where a Butterworth-smoothed outlier burst bent the knee). The mean
    coordinate RMSE was split (1.07 vs 1.35 deg; 1.25 vs 1.11 deg): on the 1.95 m body the
    weakly observed pelvis tilt / lumbar / hip flexion combination, which moves by a degree
    with a 0.2 % change of the scaled torso, favoured the Butterworth run. ``jerk_psd`` and
    ``noise_m`` (their ratio sets the bandwidth) were picked on other scenes (generic body,
    motion seeds 0 and 3): lowest median 3D error with a 95th percentile no worse than the
    neighbours (1e4 / 0.016: 3.27 / 6.75 mm; 2e4 / 0.012: 3.41 / 6.83 mm; Butterworth 6 Hz:
    3.47 / 7.86 mm).

    Attributes:
        kind: ``"rts"`` (confidence-weighted Rauch-Tung-Striebel), ``"butterworth"``
            (Pose2Sim's Hampel + forward-backward Butterworth) or ``"none"``.
        cutoff_hz: Butterworth cut-off, Hz (below fs / 2).
        order: Butterworth order as Pose2Sim counts it (even, >= 2: ``order / 2`` designed,
            run forward and backward).
        hampel: Butterworth: Hampel outlier rejection first, as Pose2Sim's ``reject_outliers``.
        max_gap_s: longest gap bridged (Butterworth: linear interpolation; RTS: the motion
            model), s; longer gaps stay NaN.
        jerk_psd: RTS process noise, spectral density of the jerk, m^2/s^5.
        noise_m: RTS measurement noise (std) of a point of weight 1, m.
        robust_iterations: RTS re-weighting passes against outliers (0 = none).
        robust_k: RTS Cauchy scale, in units of a point's expected noise std.
        min_views: a point triangulated from fewer cameras has weight 0 (RTS).
        reproj_scale_px: RTS weight falls as ``1 / (1 + (reproj / reproj_scale_px)^2)``, px.
    """

    kind: str = "rts"
    cutoff_hz: float = 6.0
    order: int = 4
    hampel: bool = True
    max_gap_s: float = 0.35
    jerk_psd: float = 1.0e4
    noise_m: float = 0.016
    robust_iterations: int = 2
    robust_k: float = 3.0
    min_views: int = 2
    reproj_scale_px: float = 8.0

    def __post_init__(self) -> None:
        if self.kind not in SMOOTHERS:
            raise ValueError(f"smoothing.kind must be one of {SMOOTHERS}, got {self.kind!r}")
        if not (self.cutoff_hz > 0 and self.max_gap_s >= 0 and self.jerk_psd > 0 and self.noise_m > 0
                and self.robust_k > 0 and self.reproj_scale_px > 0):
            raise ValueError("smoothing: cutoff_hz, jerk_psd, noise_m, robust_k, reproj_scale_px must be > 0, "
                             "max_gap_s >= 0")
        if self.order < 2 or self.order % 2:
            raise ValueError(f"smoothing.order must be even and >= 2, got {self.order}")
        if self.robust_iterations < 0 or self.min_views < 1:
            raise ValueError("smoothing.robust_iterations must be >= 0 and min_views >= 1")


def point_weights(scores: np.ndarray, n_views: np.ndarray, reproj_px: np.ndarray, points: np.ndarray,
                  settings: SmoothingSettings = SmoothingSettings()) -> np.ndarray:
    """``(T, K)`` confidence of each triangulated point, 0 = missing.

    ``w = score * (views - 1) / (1 + (reproj / reproj_scale_px)^2)`` (a point seen by more
    cameras is better determined), 0 where the point is not finite or seen by fewer than
    ``min_views`` cameras. Args: scores (T, K) 0..1, n_views (T, K), reproj_px (T, K) px,
    points (T, K, 3) m.
    """
    s = np.clip(np.nan_to_num(np.asarray(scores, dtype=np.float64)), 0.0, 1.0)
    v = np.asarray(n_views, dtype=np.float64)
    e = np.nan_to_num(np.asarray(reproj_px, dtype=np.float64), nan=1e3)
    w = s * np.maximum(v - 1.0, 0.0) / (1.0 + (e / settings.reproj_scale_px) ** 2)
    ok = np.isfinite(points).all(-1) & (v >= settings.min_views)
    return np.where(ok, w, 0.0)


def smooth(points: np.ndarray, weights: np.ndarray, fs_hz: float,
           settings: SmoothingSettings = SmoothingSettings()) -> np.ndarray:
    """Zero-phase smoothing of ``(T, K, 3)`` trajectories (m, NaN = missing) sampled at ``fs_hz``.

    ``weights`` (T, K): point confidence (:func:`point_weights`), 0 = missing; the Butterworth
    uses it only as a missing mask. Returns (T, K, 3) m, NaN where nothing could be estimated
    (before the first / after the last sample of a keypoint, gaps longer than ``max_gap_s``).
    """
    pts = np.asarray(points, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if pts.ndim != 3 or pts.shape[2] != 3 or w.shape != pts.shape[:2]:
        raise ValueError(f"points must be (T, K, 3) and weights (T, K); got {pts.shape} and {w.shape}")
    if not fs_hz > 0:
        raise ValueError(f"fs_hz must be > 0, got {fs_hz}")
    w = np.where(np.isfinite(pts).all(-1) & np.isfinite(w), np.maximum(w, 0.0), 0.0)
    if settings.kind == "none":
        return np.where((w > 0)[..., None], pts, np.nan)
    if settings.kind == "butterworth":
        T, K, _ = pts.shape
        x = np.where((w > 0)[..., None], pts, np.nan).reshape(T, K * 3)
        return butterworth_zero_phase(x, fs_hz, settings.cutoff_hz, settings.order,
                                      int(round(settings.max_gap_s * fs_hz)), settings.hampel).reshape(T, K, 3)
    return rts_smooth(pts, w, fs_hz, settings)


# ============================================================================ Butterworth


def hampel(x: np.ndarray, window: int = 7, n_sigma: float = 2.0) -> np.ndarray:
    """Pose2Sim's Hampel filter on a (T,) series: a sample more than ``n_sigma`` robust standard
    deviations (0.6745 * |x - median| / MAD) from its window's median is replaced by the median."""
    x = np.asarray(x, dtype=np.float64)
    h = window // 2
    if x.size < window:
        return x.copy()
    win = np.lib.stride_tricks.sliding_window_view(x, window)  # (T - 2h, window)
    med = np.median(win, axis=1)
    mad = np.median(np.abs(win - med[:, None]), axis=1)
    mid = x[h:x.size - h]
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.where(mad != 0, 0.6745 * (mid - med) / mad, 0.0)
    out = x.copy()
    out[h:x.size - h] = np.where(np.abs(z) > n_sigma, med, mid)
    return out


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of the runs of True in a (T,) bool array."""
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1)))


def butterworth_zero_phase(x: np.ndarray, fs_hz: float, cutoff_hz: float = 6.0, order: int = 4,
                           max_gap_frames: int = 20, use_hampel: bool = True) -> np.ndarray:
    """Pose2Sim's filtering of (T, C) series (NaN = missing): Hampel, linear interpolation of gaps
    up to ``max_gap_frames``, then ``filtfilt(butter(order / 2, cutoff))`` on each contiguous run
    longer than the filter's padding (shorter runs are left unfiltered, as Pose2Sim does)."""
    x = np.array(x, dtype=np.float64)
    b, a = scipy.signal.butter(order // 2, cutoff_hz / (fs_hz / 2.0), "low")
    padlen = 3 * max(len(a), len(b))
    T = x.shape[0]
    t = np.arange(T)
    for c in range(x.shape[1]):
        col = x[:, c]
        ok = np.isfinite(col)
        if ok.sum() < 2:
            continue
        if use_hampel:
            for s, e in _runs(ok):
                col[s:e] = hampel(col[s:e])
        missing = ~ok
        for s, e in _runs(missing):
            if s > 0 and e < T and e - s <= max_gap_frames:
                col[s:e] = np.interp(t[s:e], [s - 1, e], [col[s - 1], col[e]])
        for s, e in _runs(np.isfinite(col)):
            if e - s > padlen:
                col[s:e] = scipy.signal.filtfilt(b, a, col[s:e])
        x[:, c] = col
    return x


# ============================================================================ RTS


@njit(cache=True)
def _inv3(a, out):  # pragma: no cover - compiled
    """``out`` = the inverse of the 3x3 matrix ``a`` (adjugate / determinant; the RTS gain's
    predicted covariances are symmetric positive definite)."""
    c00 = a[1, 1] * a[2, 2] - a[1, 2] * a[2, 1]
    c01 = a[1, 2] * a[2, 0] - a[1, 0] * a[2, 2]
    c02 = a[1, 0] * a[2, 1] - a[1, 1] * a[2, 0]
    inv_det = 1.0 / (a[0, 0] * c00 + a[0, 1] * c01 + a[0, 2] * c02)
    out[0, 0] = c00 * inv_det
    out[1, 0] = c01 * inv_det
    out[2, 0] = c02 * inv_det
    out[0, 1] = (a[0, 2] * a[2, 1] - a[0, 1] * a[2, 2]) * inv_det
    out[1, 1] = (a[0, 0] * a[2, 2] - a[0, 2] * a[2, 0]) * inv_det
    out[2, 1] = (a[0, 1] * a[2, 0] - a[0, 0] * a[2, 1]) * inv_det
    out[0, 2] = (a[0, 1] * a[1, 2] - a[0, 2] * a[1, 1]) * inv_det
    out[1, 2] = (a[0, 2] * a[1, 0] - a[0, 0] * a[1, 2]) * inv_det
    out[2, 2] = (a[0, 0] * a[1, 1] - a[0, 1] * a[1, 0]) * inv_det


@njit(cache=True)
def _rts_point(z, r, dt, q, max_gap, out):  # pragma: no cover - compiled
    """One keypoint: z (T, 3) measurements (m), r (T,) their variance (m^2; inf = missing); the
    three axes share the covariance. Constant-acceleration model, jerk PSD q. Writes the smoothed
    positions into out (T, 3) (NaN outside the segments, which are split at gaps of more than
    ``max_gap`` samples)."""
    T = z.shape[0]
    out[:] = np.nan
    F = np.array([[1.0, dt, 0.5 * dt * dt], [0.0, 1.0, dt], [0.0, 0.0, 1.0]])
    Q = q * np.array([[dt ** 5 / 20.0, dt ** 4 / 8.0, dt ** 3 / 6.0],
                      [dt ** 4 / 8.0, dt ** 3 / 3.0, dt ** 2 / 2.0],
                      [dt ** 3 / 6.0, dt ** 2 / 2.0, dt]])
    xf = np.zeros((T, 3, 3))  # (time, state, axis)
    Pf = np.zeros((T, 3, 3))
    xp = np.zeros((T, 3, 3))
    Pp = np.zeros((T, 3, 3))
    x = np.zeros((3, 3))
    P = np.zeros((3, 3))
    FP = np.zeros((3, 3))
    C = np.zeros((3, 3))
    xs = np.zeros((3, 3))
    tmp = np.zeros((3, 3))
    inv = np.zeros((3, 3))
    Kg = np.zeros(3)
    i = 0
    while i < T:
        while i < T and not np.isfinite(r[i]):
            i += 1
        if i >= T:
            break
        start = i
        last = i
        j = i + 1
        while j < T:
            if np.isfinite(r[j]):
                if j - last - 1 > max_gap:
                    break
                last = j
            j += 1
        stop = last + 1
        x[:] = 0.0
        for a in range(3):
            x[0, a] = z[start, a]
        P[:] = 0.0
        P[0, 0] = r[start]
        P[1, 1] = 4.0  # (2 m/s)^2
        P[2, 2] = 400.0  # (20 m/s^2)^2
        for k in range(start, stop):
            if k > start:
                # x = F x ; P = F P F' + Q
                for a in range(3):
                    x0, x1, x2 = x[0, a], x[1, a], x[2, a]
                    x[0, a] = x0 + dt * x1 + 0.5 * dt * dt * x2
                    x[1, a] = x1 + dt * x2
                for m in range(3):
                    for n in range(3):
                        FP[m, n] = F[m, 0] * P[0, n] + F[m, 1] * P[1, n] + F[m, 2] * P[2, n]
                for m in range(3):
                    for n in range(3):
                        P[m, n] = FP[m, 0] * F[n, 0] + FP[m, 1] * F[n, 1] + FP[m, 2] * F[n, 2] + Q[m, n]
            xp[k] = x
            Pp[k] = P
            if k > start and np.isfinite(r[k]):
                s = P[0, 0] + r[k]
                for m in range(3):
                    Kg[m] = P[m, 0] / s
                for a in range(3):
                    innov = z[k, a] - x[0, a]
                    for m in range(3):
                        x[m, a] += Kg[m] * innov
                p00, p01, p02 = P[0, 0], P[0, 1], P[0, 2]
                for m in range(3):
                    km = Kg[m]
                    P[m, 0] -= km * p00
                    P[m, 1] -= km * p01
                    P[m, 2] -= km * p02
            xf[k] = x
            Pf[k] = P
        # backward RTS pass (positions only: the smoothed covariance is not needed)
        xs[:] = xf[stop - 1]
        for a in range(3):
            out[stop - 1, a] = xs[0, a]
        for k in range(stop - 2, start - 1, -1):
            _inv3(Pp[k + 1], inv)
            for m in range(3):  # tmp = Pf[k] F'
                for n in range(3):
                    tmp[m, n] = Pf[k, m, 0] * F[n, 0] + Pf[k, m, 1] * F[n, 1] + Pf[k, m, 2] * F[n, 2]
            for m in range(3):
                for n in range(3):
                    C[m, n] = tmp[m, 0] * inv[0, n] + tmp[m, 1] * inv[1, n] + tmp[m, 2] * inv[2, n]
            for a in range(3):
                d0 = xs[0, a] - xp[k + 1, 0, a]
                d1 = xs[1, a] - xp[k + 1, 1, a]
                d2 = xs[2, a] - xp[k + 1, 2, a]
                for m in range(3):
                    xs[m, a] = xf[k, m, a] + C[m, 0] * d0 + C[m, 1] * d1 + C[m, 2] * d2
                out[k, a] = xs[0, a]
        i = stop


def _rts_pass(pts: np.ndarray, w: np.ndarray, fs_hz: float, st: SmoothingSettings) -> np.ndarray:
    T, K, _ = pts.shape
    dt = 1.0 / fs_hz
    max_gap = int(round(st.max_gap_s * fs_hz))
    var = np.where(w > 0, st.noise_m ** 2 / np.where(w > 0, w, 1.0), np.inf)  # (T, K)
    z = np.where(np.isfinite(pts), pts, 0.0)
    out = np.full((T, K, 3), np.nan)
    buf = np.empty((T, 3))
    for k in range(K):
        r = np.ascontiguousarray(var[:, k])
        if not np.isfinite(r).any():
            continue
        _rts_point(np.ascontiguousarray(z[:, k]), r, dt, st.jerk_psd, max_gap, buf)
        out[:, k] = buf
    return out


def rts_smooth(points: np.ndarray, weights: np.ndarray, fs_hz: float,
               settings: SmoothingSettings = SmoothingSettings()) -> np.ndarray:
    """Confidence-weighted RTS smoothing of (T, K, 3) points (m) with (T, K) weights (0 =
    missing), with ``robust_iterations`` Cauchy re-weighting passes; (T, K, 3) m."""
    pts = np.asarray(points, dtype=np.float64)
    w0 = np.asarray(weights, dtype=np.float64)
    w = w0.copy()
    out = _rts_pass(pts, w, fs_hz, settings)
    for _ in range(settings.robust_iterations):
        d = np.linalg.norm(pts - out, axis=-1)  # (T, K) 3D residual, m
        sigma = settings.noise_m / np.sqrt(np.where(w0 > 0, w0, 1.0)) * math.sqrt(3.0)
        with np.errstate(invalid="ignore"):
            rw = 1.0 / (1.0 + (d / (settings.robust_k * sigma)) ** 2)
        w = np.where(np.isfinite(rw) & (w0 > 0), w0 * rw, 0.0)
        out = _rts_pass(pts, w, fs_hz, settings)
    return out
