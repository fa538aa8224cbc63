"""Whole-session track repair: the live tracker sees only the past; offline, every track is known
from start to end, so fragments of one person (a track lost in an occlusion and restarted under a
new id) are stitched, and two tracks that swapped ids when people crossed are swapped back.

A track here is ``{slot index: (K, 3) points}`` (world m) per id; :func:`repair_tracks` returns
the merged tracks and the id map. Units: m, s.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["TrackRepairSettings", "Track", "repair_tracks"]


@dataclass(frozen=True)
class TrackRepairSettings:
    """Offline track repair (TOML ``[reprocess.tracks]`` maps 1:1).

    Attributes:
        stitch: join a track that starts after another ended when it starts where that one
            could have got to.
        max_gap_s: longest gap between the end of one track and the start of the next that is
            stitched, s.
        max_jump_m: distance always accepted between the end of one track and the start of the
            next (mean keypoint distance), m...
        max_speed_mps: ...plus this speed times the gap, m/s.
        swap: swap two overlapping tracks from the slot where continuing them crosswise fits
            their constant-velocity predictions much better (an id switch when people crossed).
        swap_ratio: ...when the crosswise cost is below this fraction of the straight one...
        swap_min_m: ...and the straight cost exceeds this, m (sum of two mean keypoint distances).
        min_track_s: people tracked for less than this (after repair) are not exported, s.
    """

    stitch: bool = True
    max_gap_s: float = 2.0
    max_jump_m: float = 0.3
    max_speed_mps: float = 1.5
    swap: bool = True
    swap_ratio: float = 0.3
    swap_min_m: float = 0.15
    min_track_s: float = 1.0

    def __post_init__(self) -> None:
        if not (self.max_gap_s >= 0 and self.max_jump_m > 0 and self.max_speed_mps >= 0
                and 0 < self.swap_ratio < 1 and self.swap_min_m > 0 and self.min_track_s >= 0):
            raise ValueError("reprocess.tracks: max_gap_s, max_speed_mps, min_track_s >= 0; max_jump_m, swap_min_m > 0; "
                             "0 < swap_ratio < 1")


@dataclass
class Track:
    """One person over the session. ``slots``: slot index -> row of the per-slot arrays of the
    Skeleton3D outputs (``(slot, row)``); ``sources``: the live ids merged into it."""

    id: int
    rows: dict[int, int] = field(default_factory=dict)
    sources: list[int] = field(default_factory=list)

    @property
    def start(self) -> int:
        return min(self.rows)

    @property
    def end(self) -> int:
        return max(self.rows)

    def __len__(self) -> int:
        return len(self.rows)


def _mean_dist(a: np.ndarray, b: np.ndarray) -> float:
    ok = np.isfinite(a).all(-1) & np.isfinite(b).all(-1)
    return float(np.linalg.norm(a[ok] - b[ok], axis=-1).mean()) if ok.sum() >= 3 else np.inf


def _swap_tracks(tracks: dict[int, Track], points, st: TrackRepairSettings) -> int:
    """Swap the remainders of overlapping track pairs at id switches; returns the swaps made."""
    n = 0
    ids = sorted(tracks)
    for i, a_id in enumerate(ids):
        for b_id in ids[i + 1:]:
            a, b = tracks[a_id], tracks[b_id]
            common = sorted(set(a.rows) & set(b.rows))
            for t in common:
                if not all(s in a.rows and s in b.rows for s in (t - 1, t - 2)):
                    continue
                pa = 2 * points(t - 1, a.rows[t - 1]) - points(t - 2, a.rows[t - 2])
                pb = 2 * points(t - 1, b.rows[t - 1]) - points(t - 2, b.rows[t - 2])
                xa, xb = points(t, a.rows[t]), points(t, b.rows[t])
                keep = _mean_dist(pa, xa) + _mean_dist(pb, xb)
                cross = _mean_dist(pa, xb) + _mean_dist(pb, xa)
                if keep > st.swap_min_m and cross < st.swap_ratio * keep:
                    ra = {s: r for s, r in a.rows.items() if s >= t}
                    rb = {s: r for s, r in b.rows.items() if s >= t}
                    for s in ra:
                        del a.rows[s]
                    for s in rb:
                        del b.rows[s]
                    a.rows.update(rb)
                    b.rows.update(ra)
                    n += 1
    return n


def _stitch(tracks: dict[int, Track], points, fps: float, st: TrackRepairSettings) -> int:
    """Join fragments in start order; returns the number of joins."""
    n = 0
    for b_id in sorted(tracks, key=lambda i: tracks[i].start):
        if b_id not in tracks:
            continue
        b = tracks[b_id]
        best, best_d = None, np.inf
        for a_id, a in tracks.items():
            if a_id == b_id or a.end >= b.start:
                continue
            gap_s = (b.start - a.end) / fps
            if gap_s > st.max_gap_s:
                continue
            d = _mean_dist(points(a.end, a.rows[a.end]), points(b.start, b.rows[b.start]))
            if d <= st.max_jump_m + st.max_speed_mps * gap_s and d < best_d:
                best, best_d = a_id, d
        if best is not None:
            a = tracks[best]
            a.rows.update(b.rows)
            a.sources += b.sources
            del tracks[b_id]
            n += 1
    return n


def repair_tracks(observations: dict[int, dict[int, int]], points, fps: float,
                  settings: TrackRepairSettings = TrackRepairSettings()) -> tuple[list[Track], dict[str, int]]:
    """Stitch and un-swap the live tracks of a whole session.

    Args:
        observations: live id -> {slot index: row in that slot's Skeleton3D}.
        points: ``points(slot, row) -> (K, 3)`` world m (NaN = missing).
        fps: slot rate, Hz.
        settings: what to repair.

    Returns:
        The people (tracks lasting at least ``min_track_s``), longest first, each with the
        smallest live id it merged as its id; and counters (``live_tracks``, ``stitched``,
        ``swaps``, ``dropped_short``).
    """
    tracks = {i: Track(i, dict(rows), [i]) for i, rows in observations.items() if rows}
    swaps = _swap_tracks(tracks, points, settings) if settings.swap else 0
    tracks = {i: t for i, t in tracks.items() if t.rows}
    joins = _stitch(tracks, points, fps, settings) if settings.stitch else 0
    people = [t for t in tracks.values() if len(t) >= settings.min_track_s * fps]
    for t in people:
        t.id = min(t.sources)
    people.sort(key=lambda t: (-len(t), t.id))
    return people, {"live_tracks": len(observations), "stitched": joins, "swaps": swaps,
                    "dropped_short": len(tracks) - len(people)}
