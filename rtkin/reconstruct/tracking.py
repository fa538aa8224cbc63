"""Stable person ids over time: 3D nearest neighbour with a maximum jump, confirmation of new
people, no ids for duplicates of a tracked person, and retirement.

A person seen for the first time starts a *tentative* track; it gets an id (and is output) only
once it has been matched in every frame for ``confirm_s`` - a ghost that flickers for a few
frames never becomes an id. A group that duplicates a tracked person (its keypoints within
``duplicate_m`` of the person's, mean over the keypoints both have) is the same body seen twice:
it starts no track at all. Ids are allocated at confirmation, so they count real people.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit
from scipy.optimize import linear_sum_assignment

__all__ = ["TrackingSettings", "Tracker"]

_DEFAULT_FPS = 60.0  # frame rate assumed for confirm_s when update() gets no times


@dataclass(frozen=True)
class TrackingSettings:
    """Tracker settings (TOML ``[reconstruction.tracking]`` maps 1:1).

    Attributes:
        max_jump_m: a person matches a track only if their mean keypoint distance to the track's
            last position is below this, m (per frame; doubled per unseen frame, up to 4x).
        max_unseen_frames: a track not matched for more frames than this is retired.
        min_keypoints: people with fewer triangulated keypoints are not tracked.
        confirm_s: a new person gets an id after being matched in every frame for this long, s
            (0 = at once). Multi mode only: in single mode the association picks the one subject
            from the first frame.
        duplicate_m: an untracked group within this of a tracked person (mean distance over
            common keypoints, m) is that person seen twice: no track, no id.
        duplicate_fraction: two detections of one view within this fraction of the person's
            size of each other (median over common keypoints) are one detection fired twice: the
            weaker never reaches the association (:mod:`rtkin.reconstruct.ghosts`); 0 = off.
    """

    max_jump_m: float = 0.5
    max_unseen_frames: int = 30
    min_keypoints: int = 4
    confirm_s: float = 0.1
    duplicate_m: float = 0.3
    duplicate_fraction: float = 0.06

    def __post_init__(self) -> None:
        if not (self.max_jump_m > 0 and self.max_unseen_frames >= 0 and self.min_keypoints >= 1):
            raise ValueError("tracking.max_jump_m > 0, max_unseen_frames >= 0 and min_keypoints >= 1 are required")
        if not (self.confirm_s >= 0 and self.duplicate_m >= 0 and 0 <= self.duplicate_fraction < 1):
            raise ValueError("tracking.confirm_s >= 0, duplicate_m >= 0 and 0 <= duplicate_fraction < 1 are required")


@dataclass
class _Track:
    id: int  # -1 while tentative
    points: np.ndarray  # (K, 3) last seen positions per keypoint (NaN never seen), m
    first_ns: int | None = None
    hits: int = 1
    unseen: int = 0

    @property
    def confirmed(self) -> bool:
        return self.id >= 0


def _mean_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean distance over keypoints finite in both (K, 3) arrays, m; inf if fewer than 3."""
    return float(mean_distances(a[None], b[None])[0, 0])


def mean_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(A, B) mean distance between the poses a (A, K, 3) and b (B, K, 3) over the keypoints
    finite in both, m; inf where fewer than 3 are."""
    out = np.empty((a.shape[0], b.shape[0]))
    _mean_distances_kernel(np.ascontiguousarray(a, dtype=np.float64), np.ascontiguousarray(b, dtype=np.float64), out)
    return out


@njit(cache=True)
def _mean_distances_kernel(a, b, out):  # pragma: no cover - compiled
    K = a.shape[1]
    for i in range(a.shape[0]):
        for j in range(b.shape[0]):
            n, total = 0, 0.0
            for k in range(K):
                dx, dy, dz = a[i, k, 0] - b[j, k, 0], a[i, k, 1] - b[j, k, 1], a[i, k, 2] - b[j, k, 2]
                if np.isfinite(a[i, k, 0]) and np.isfinite(a[i, k, 1]) and np.isfinite(a[i, k, 2]) and \
                        np.isfinite(b[j, k, 0]) and np.isfinite(b[j, k, 1]) and np.isfinite(b[j, k, 2]):
                    total += np.sqrt(dx * dx + dy * dy + dz * dz)
                    n += 1
            out[i, j] = total / n if n >= 3 else np.inf


class Tracker:
    """Stage: ``update(points (N, K, 3) m, time_ns) -> ids (N,) int64`` (-1 for people not
    tracked, tentative or duplicates).

    Attributes:
        retired: ids retired by the last update.
        counters: ``tentative`` tracks started, ``confirmed``, ``dropped_tentative`` (never
            confirmed), ``duplicates`` (groups that duplicated a tracked person).
    """

    def __init__(self, settings: TrackingSettings = TrackingSettings()):
        self.settings = settings
        self.reset()

    def reset(self) -> None:
        self._tracks: list[_Track] = []
        self._next_id = 0
        self._frame = 0
        self.retired: list[int] = []  # ids retired by the last update
        self.counters = {"tentative": 0, "confirmed": 0, "dropped_tentative": 0, "duplicates": 0}

    @property
    def active_ids(self) -> list[int]:
        return [t.id for t in self._tracks if t.confirmed]

    def last_points(self) -> np.ndarray:
        """(N_tracks, K, 3) last positions of the tracks, confirmed and most recently seen first."""
        if len(self._tracks) == 1:
            return self._tracks[0].points[None].copy()
        tracks = sorted(self._tracks, key=lambda t: (not t.confirmed, t.unseen))
        if not tracks:
            return np.zeros((0, 0, 3))
        return np.stack([t.points for t in tracks])

    def update(self, points: np.ndarray, time_ns: int | None = None) -> np.ndarray:
        points = np.asarray(points, dtype=np.float64)
        st = self.settings
        now = int(time_ns) if time_ns is not None else int(self._frame * 1e9 / _DEFAULT_FPS)
        self._frame += 1
        n = points.shape[0]
        ids = np.full(n, -1, dtype=np.int64)
        valid = np.flatnonzero(np.isfinite(points).all(-1).sum(-1) >= st.min_keypoints).tolist()
        matched: dict[int, int] = {}  # track index -> candidate
        if valid and self._tracks:
            tracked = self._tracks[0].points[None] if len(self._tracks) == 1 else np.stack([t.points for t in self._tracks])
            cost = mean_distances(points[valid], tracked)
            cost = cost + np.array([0.0 if t.confirmed else 1e-3 for t in self._tracks])[None, :]  # ties: confirmed
            gate = np.array([st.max_jump_m * min(2.0 ** t.unseen, 4.0) for t in self._tracks])
            if cost.shape == (1, 1):  # one person, one track (the common case): nothing to assign
                rows, cols = (0,), (0,)
            else:
                rows, cols = linear_sum_assignment(np.where(cost < gate[None, :], cost, 1e6))
            for r, c in zip(rows, cols):
                if cost[r, c] < gate[c]:
                    matched[c] = valid[r]
        taken = set(matched.values())
        for c, i in matched.items():
            self._merge(self._tracks[c], points[i])
        for i in valid:
            if i in taken:
                continue
            if self._duplicates_tracked(points[i], matched, points):
                self.counters["duplicates"] += 1
                continue
            self._tracks.append(_Track(-1, points[i].copy(), first_ns=now))
            self.counters["tentative"] += 1
            matched[len(self._tracks) - 1] = i
        self._confirm(matched, now)
        for c, i in matched.items():
            if self._tracks[c].confirmed:
                ids[i] = self._tracks[c].id
        self._age(set(matched))
        return ids

    def _duplicates_tracked(self, pts: np.ndarray, matched: dict[int, int], points: np.ndarray) -> bool:
        """``pts`` lies within ``duplicate_m`` of a confirmed person (where they are this frame,
        else their last position)."""
        lim = self.settings.duplicate_m
        if lim <= 0:
            return False
        for c, t in enumerate(self._tracks):
            if not t.confirmed:
                continue
            ref = points[matched[c]] if c in matched else t.points
            if _mean_distance(pts, ref) < lim:
                return True
        return False

    def _confirm(self, matched: dict[int, int], now: int) -> None:
        need_ns = self.settings.confirm_s * 1e9
        for c in matched:
            t = self._tracks[c]
            if not t.confirmed and now - t.first_ns >= need_ns - 1e6:  # 1 ms: slot-time rounding
                t.id = self._next_id
                self._next_id += 1
                self.counters["confirmed"] += 1

    def _merge(self, track: _Track, pts: np.ndarray) -> None:
        np.copyto(track.points, pts, where=np.isfinite(pts).all(-1)[:, None])
        track.unseen = 0
        track.hits += 1

    def _age(self, matched: set[int]) -> None:
        self.retired = []
        keep = []
        for k, t in enumerate(self._tracks):
            if k not in matched:
                if not t.confirmed:  # a tentative track must be seen in every frame
                    self.counters["dropped_tentative"] += 1
                    continue
                t.unseen += 1
            if t.unseen > self.settings.max_unseen_frames:
                self.retired.append(t.id)
            else:
                keep.append(t)
        self._tracks = keep
