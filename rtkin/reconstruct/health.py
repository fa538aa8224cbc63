"""Live calibration check: warn when a camera's reprojection error drifts (a bumped camera).

For every FrameSet the reconstructor triangulates, each camera's residual is the median distance
(distorted px) between its 2D detection of a person and the reprojection of that person's 3D
points. A bumped camera is usually dropped by the association and the robust triangulation, so
when a camera is not part of a person's group its detection nearest to the reprojection is used.
Per camera, a running median over ``window`` checks is compared with the camera's own baseline
(the median of its first ``baseline_frames`` checks): above ``factor`` x baseline and ``min_px``
raises an alarm, back below clears it. A bumped camera stays bumped, so one FrameSet in ``every``
is checked (the defaults: 12 checks a second at 60 Hz, an alarm about half a second after the
bump), which keeps the check a small share of the per-slot cost.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from numba import njit

from rtkin.core.calibration import Rig, project_point, stacked_pinholes

__all__ = ["HealthSettings", "CameraHealth"]


@dataclass(frozen=True)
class HealthSettings:
    """Live calibration check settings (TOML ``[reconstruction.health]`` maps 1:1).

    Attributes:
        enabled: run the check.
        every: check one FrameSet in this many.
        baseline_frames: checks used to learn each camera's normal residual.
        window: checks in the running median compared with the baseline.
        factor: alarm when the running median exceeds ``factor`` x baseline ...
        min_px: ... and this many px.
        min_score: detections below this score are not used.
    """

    enabled: bool = True
    every: int = 5
    baseline_frames: int = 40
    window: int = 12
    factor: float = 2.5
    min_px: float = 8.0
    min_score: float = 0.5

    def __post_init__(self) -> None:
        if self.every < 1 or self.baseline_frames < 1 or self.window < 1:
            raise ValueError("health.every, baseline_frames and window must be >= 1")


class CameraHealth:
    """Stage: ``update(views (C list of (P,K,3) or None), groups, points (G,K,3))`` per FrameSet;
    ``status()`` -> per-camera residual (px), baseline and alarm."""

    def __init__(self, rig: Rig, settings: HealthSettings = HealthSettings()):
        self.rig = rig
        self.settings = settings
        self._cams = stacked_pinholes(rig)
        self.reset()

    def due(self) -> bool:
        """Whether this FrameSet is one to check (one in ``settings.every``); call once per FrameSet."""
        self._seen += 1
        return (self._seen - 1) % self.settings.every == 0

    def reset(self) -> None:
        self._seen = 0
        C = len(self.rig)
        self._baseline_samples: list[list[float]] = [[] for _ in range(C)]
        self._baseline = [None] * C
        self._recent = [deque(maxlen=self.settings.window) for _ in range(C)]
        self.alarms: set[str] = set()
        self.events: list[tuple[str, str]] = []  # (camera, "raised" | "cleared"), cumulative

    def update(self, views, groups: list[dict[int, int]], points: np.ndarray) -> None:
        """views: per camera (P, K, 3) px or None; groups: camera -> detection per person;
        points: (G, K, 3) triangulated world points of those groups, m (NaN where missing)."""
        G = min(len(groups), len(points))
        C = len(self.rig)
        if G == 0:
            return
        counts = [0 if v is None else len(v) for v in views]
        if not any(counts):
            return
        dets = np.ascontiguousarray(np.concatenate([np.asarray(v, dtype=np.float64) for v in views if v is not None
                                                    and len(v)]), dtype=np.float64)  # (sum P, K, 3)
        start = np.zeros(C + 1, np.int64)
        start[1:] = np.cumsum(counts)
        member = np.full((G, C), -1, np.int64)
        for g in range(G):
            for c, i in groups[g].items():
                member[g, c] = i
        out = np.empty(C)
        _residual_kernel(np.ascontiguousarray(points[:G], dtype=np.float64), *self._cams, dets, start, member,
                         float(self.settings.min_score), out)
        for c in range(C):
            if np.isfinite(out[c]):
                self._add(c, float(out[c]))

    def _add(self, c: int, value: float) -> None:
        s = self.settings
        name = self.rig.names[c]
        if self._baseline[c] is None:
            self._baseline_samples[c].append(value)
            if len(self._baseline_samples[c]) >= s.baseline_frames:
                self._baseline[c] = float(np.median(self._baseline_samples[c]))
            return
        self._recent[c].append(value)
        if len(self._recent[c]) < s.window:
            return
        current = float(np.median(self._recent[c]))
        bad = current > s.factor * self._baseline[c] and current > s.min_px
        if bad and name not in self.alarms:
            self.alarms.add(name)
            self.events.append((name, "raised"))
        elif not bad and name in self.alarms:
            self.alarms.discard(name)
            self.events.append((name, "cleared"))

    def status(self) -> dict:
        """{"cameras": {name: {"residual_px", "baseline_px", "alarm"}}, "alarms": [...]}"""
        cams = {}
        for c, name in enumerate(self.rig.names):
            recent = self._recent[c]
            cams[name] = {
                "residual_px": float(np.median(recent)) if recent else None,
                "baseline_px": self._baseline[c],
                "alarm": name in self.alarms,
            }
        return {"cameras": cams, "alarms": sorted(self.alarms)}


@njit(cache=True)
def _residual_kernel(points, R, t, K, dist, dets, start, member, min_score, out):  # pragma: no cover - compiled
    """Per camera c: the median px distance, over the people (G) seen with >= 3 triangulated points,
    between the reprojection of their points (G, K, 3) and their detection in c (``member[g, c]``,
    else the detection of c nearest to the reprojection), keypoints with score >= min_score; NaN
    when none. ``dets[start[c]:start[c + 1]]`` are camera c's detections (P_c, K, 3)."""
    C, G, Kp = start.shape[0] - 1, points.shape[0], points.shape[1]
    proj = np.empty((Kp, 2))
    dist_px = np.empty(Kp)
    best = np.empty(Kp)
    pool = np.empty(G * Kp)
    for c in range(C):
        n_pool = 0
        if start[c + 1] == start[c]:
            out[c] = np.nan
            continue
        for g in range(G):
            n_fin = 0
            for k in range(Kp):
                proj[k, 0], proj[k, 1] = project_point(R[c], t[c], K[c], dist[c], points[g, k, 0], points[g, k, 1],
                                                       points[g, k, 2])
                if np.isfinite(points[g, k, 0]) and np.isfinite(points[g, k, 1]) and np.isfinite(points[g, k, 2]):
                    n_fin += 1
            if n_fin < 3:
                continue
            lo, hi = start[c], start[c + 1]
            if member[g, c] >= 0:
                lo = start[c] + member[g, c]
                hi = lo + 1
            best_med, n_best = np.inf, 0
            for d in range(lo, hi):
                n = 0
                for k in range(Kp):
                    if dets[d, k, 2] >= min_score and np.isfinite(proj[k, 0]):
                        dx = dets[d, k, 0] - proj[k, 0]
                        dy = dets[d, k, 1] - proj[k, 1]
                        dist_px[n] = np.sqrt(dx * dx + dy * dy)
                        n += 1
                if n >= 3:
                    med = np.median(dist_px[:n])
                    if med < best_med:
                        best_med, n_best = med, n
                        best[:n] = dist_px[:n]
            for k in range(n_best):
                pool[n_pool] = best[k]
                n_pool += 1
        out[c] = np.median(pool[:n_pool]) if n_pool > 0 else np.nan
