"""Live calibration check: warn when a camera's reprojection error drifts (a bumped camera).

For every FrameSet the reconstructor triangulates, each camera's residual is the median distance
(distorted px) between its 2D detection of a person and the reprojection of that person's 3D
points. A bumped camera is usually dropped by the association and the robust triangulation, so
when a camera is not part of a person's group its detection nearest to the reprojection is used.
Per camera, a running median over ``window`` frames is compared with the camera's own baseline
(the median of its first ``baseline_frames`` frames): above ``factor`` x baseline and ``min_px``
raises an alarm, back below clears it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from rtkin.core.calibration import Rig

__all__ = ["HealthSettings", "CameraHealth"]


@dataclass(frozen=True)
class HealthSettings:
    """Live calibration check settings (TOML ``[reconstruction.health]`` maps 1:1).

    Attributes:
        enabled: run the check.
        baseline_frames: frames used to learn each camera's normal residual.
        window: frames of the running median compared with the baseline.
        factor: alarm when the running median exceeds ``factor`` x baseline ...
        min_px: ... and this many px.
        min_score: detections below this score are not used.
    """

    enabled: bool = True
    baseline_frames: int = 120
    window: int = 30
    factor: float = 2.5
    min_px: float = 8.0
    min_score: float = 0.5


class CameraHealth:
    """Stage: ``update(views (C list of (P,K,3) or None), groups, points (G,K,3))`` per FrameSet;
    ``status()`` -> per-camera residual (px), baseline and alarm."""

    def __init__(self, rig: Rig, settings: HealthSettings = HealthSettings()):
        self.rig = rig
        self.settings = settings
        self.reset()

    def reset(self) -> None:
        C = len(self.rig)
        self._baseline_samples: list[list[float]] = [[] for _ in range(C)]
        self._baseline = [None] * C
        self._recent = [deque(maxlen=self.settings.window) for _ in range(C)]
        self.alarms: set[str] = set()
        self.events: list[tuple[str, str]] = []  # (camera, "raised" | "cleared"), cumulative

    def update(self, views, groups: list[dict[int, int]], points: np.ndarray) -> None:
        """views: per camera (P, K, 3) px or None; groups: camera -> detection per person;
        points: (G, K, 3) triangulated world points of those groups, m (NaN where missing)."""
        s = self.settings
        for c, cam in enumerate(self.rig.cameras):
            if views[c] is None or len(views[c]) == 0:
                continue
            dets = np.asarray(views[c])
            res = []
            for g, group in enumerate(groups[: len(points)]):
                finite = np.isfinite(points[g]).all(-1)
                if finite.sum() < 3:
                    continue
                proj = np.full(points[g].shape[:-1] + (2,), np.nan)
                proj[finite] = cam.project(points[g][finite])
                cand = [group[c]] if c in group else range(len(dets))
                best = None
                for i in cand:
                    ok = finite & (dets[i, :, 2] >= s.min_score) & np.isfinite(proj).all(-1)
                    if ok.sum() < 3:
                        continue
                    d = np.linalg.norm(dets[i, ok, :2] - proj[ok], axis=-1)
                    if best is None or np.median(d) < np.median(best):
                        best = d
                if best is not None:
                    res.append(best)
            if res:
                self._add(c, float(np.median(np.concatenate(res))))

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
