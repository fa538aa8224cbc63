"""Stable person ids over time: 3D nearest neighbour with a maximum jump and retirement."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = ["TrackingSettings", "Tracker"]


@dataclass(frozen=True)
class TrackingSettings:
    """Tracker settings (TOML ``[tracking]`` maps 1:1).

    Attributes:
        max_jump_m: a person matches a track only if their mean keypoint distance to the track's
            last position is below this, m (per frame; doubled per unseen frame, up to 4x).
        max_unseen_frames: a track not matched for more frames than this is retired.
        min_keypoints: people with fewer triangulated keypoints are not tracked.
    """

    max_jump_m: float = 0.5
    max_unseen_frames: int = 30
    min_keypoints: int = 4

    def __post_init__(self) -> None:
        if not (self.max_jump_m > 0 and self.max_unseen_frames >= 0 and self.min_keypoints >= 1):
            raise ValueError("tracking.max_jump_m > 0, max_unseen_frames >= 0 and min_keypoints >= 1 are required")


@dataclass
class _Track:
    id: int
    points: np.ndarray  # (K, 3) last seen positions per keypoint (NaN never seen), m
    unseen: int = 0


def _mean_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean distance over keypoints finite in both (K, 3) arrays, m; inf if fewer than 3."""
    ok = np.isfinite(a).all(-1) & np.isfinite(b).all(-1)
    if ok.sum() < 3:
        return np.inf
    return float(np.linalg.norm(a[ok] - b[ok], axis=-1).mean())


class Tracker:
    """Stage: ``update(points (N, K, 3) m) -> ids (N,) int64`` (-1 for people not tracked)."""

    def __init__(self, settings: TrackingSettings = TrackingSettings()):
        self.settings = settings
        self.reset()

    def reset(self) -> None:
        self._tracks: list[_Track] = []
        self._next_id = 0
        self.retired: list[int] = []  # ids retired by the last update

    @property
    def active_ids(self) -> list[int]:
        return [t.id for t in self._tracks]

    def last_points(self) -> np.ndarray:
        """(N_tracks, K, 3) last positions of the active tracks, most recently seen first."""
        tracks = sorted(self._tracks, key=lambda t: t.unseen)
        if not tracks:
            return np.zeros((0, 0, 3))
        return np.stack([t.points for t in tracks])

    def update(self, points: np.ndarray) -> np.ndarray:
        points = np.asarray(points, dtype=np.float64)
        n = points.shape[0]
        ids = np.full(n, -1, dtype=np.int64)
        valid = [i for i in range(n) if np.isfinite(points[i]).all(-1).sum() >= self.settings.min_keypoints]
        matched_tracks: set[int] = set()
        if valid and self._tracks:
            cost = np.array([[_mean_distance(points[i], t.points) for t in self._tracks] for i in valid])
            gate = np.array([self.settings.max_jump_m * min(2.0 ** t.unseen, 4.0) for t in self._tracks])
            big = 1e6
            rows, cols = linear_sum_assignment(np.where(cost < gate[None, :], cost, big))
            for r, c in zip(rows, cols):
                if cost[r, c] < gate[c]:
                    i, t = valid[r], self._tracks[c]
                    ids[i] = t.id
                    self._merge(t, points[i])
                    matched_tracks.add(c)
        for i in valid:
            if ids[i] < 0:
                t = _Track(self._next_id, points[i].copy())
                self._next_id += 1
                self._tracks.append(t)
                matched_tracks.add(len(self._tracks) - 1)
                ids[i] = t.id
        self._age(matched_tracks)
        return ids

    def _merge(self, track: _Track, pts: np.ndarray) -> None:
        ok = np.isfinite(pts).all(-1)
        track.points[ok] = pts[ok]
        track.unseen = 0

    def _age(self, matched: set[int]) -> None:
        self.retired = []
        keep = []
        for k, t in enumerate(self._tracks):
            if k not in matched:
                t.unseen += 1
            if t.unseen > self.settings.max_unseen_frames:
                self.retired.append(t.id)
            else:
                keep.append(t)
        self._tracks = keep
