"""Picking the subject in views that also see bystanders, before any extrinsics are known:
:func:`select_subject` (tracks per view, each tested by a calibration with the views that see only the subject).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from rtkin.calibrate.errors import NotEnoughDataError
from rtkin.calibrate.people import PeopleCalibrationSettings, _as_cameras, calibrate_from_people
from rtkin.core.calibration import Camera, Rig
from rtkin.reconstruct.triangulation import TriangulationSettings, Triangulator

__all__ = [
    "SubjectSelectionSettings",
    "select_subject",
]


@dataclass(frozen=True)
class SubjectSelectionSettings:
    """Defaults of :func:`select_subject` (one place).

    Attributes:
        min_score: keypoints below this score are not used (score units).
        ransac_px: RANSAC threshold of the test calibrations, px (about a real detector's noise).
        max_px: a selected detection's median reprojection error must be below this, px, or below
            3x the median over frames if that is larger (capped at 4x ``max_px``).
        max_hypotheses: candidate tracks tested per view.
        min_track_fraction: candidate tracks cover at least this fraction of the frames.
    """

    min_score: float = 0.4
    ransac_px: float = 10.0
    max_px: float = 30.0
    max_hypotheses: int = 3
    min_track_fraction: float = 0.25

    def __post_init__(self) -> None:
        if not (self.ransac_px > 0 and self.max_px > 0) or self.max_hypotheses < 1:
            raise ValueError("ransac_px and max_px must be > 0 px and max_hypotheses >= 1")


def select_subject(
    detections: Sequence[Sequence[np.ndarray]],
    intrinsics: Sequence[Camera | tuple] | Rig,
    anchors: Sequence[int] | None = None,
    settings: SubjectSelectionSettings = SubjectSelectionSettings(),
) -> np.ndarray:
    """Pick the subject in views that also see bystanders, without any extrinsics.

    Two or more *anchor* views see only the subject (at most one detection in >= 95 % of frames,
    unless given; with several detections there, the one with the highest summed score). For every
    other view:

    1. Hypotheses: the people of that view are tracked over time (greedy frame-to-frame matching of
       keypoints); the ``max_hypotheses`` longest tracks covering >= ``min_track_fraction`` of the
       frames are the candidates (shorter ones overfit the test below).
    2. Test: the anchors and the view are calibrated together (:func:`calibrate_from_people`) with
       each candidate track; the subject is re-triangulated *without* view exclusion and the
       median reprojection error over all points is the score; the lowest wins. A bystander can
       match the subject's body in a single resection (similar shapes, little motion; a two-view
       geometry from noisy keypoints is poor), but it cannot be triangulated consistently with
       views that see only the subject: on the Pose2Sim demo, median 8-12 px for the subject's
       track vs 18-700 px for the bystander's.

    Finally all views are calibrated together and every non-anchor view re-picks, frame by frame,
    the detection that reprojects best with its pose from that calibration (which also mends
    tracks broken by crossings).

    Args:
        detections: per camera, per frame, a (P, K, 3) array x_px, y_px, score (distorted px).
        intrinsics: per camera a Camera or (K, dist[, size]) (only K and dist are used).
        anchors: indices of views that see only the subject (default: detected as above).
        settings: thresholds (:class:`SubjectSelectionSettings`).

    Returns:
        (C, T, K, 3) float32 keypoints of the subject (score 0 where not selected).

    Raises:
        NotEnoughDataError: fewer than two anchor views, or a view where no track calibrates.
    """
    C = len(detections)
    names = tuple(f"view{i}" for i in range(C))
    cams = _as_cameras(intrinsics, names)
    T = len(detections[0]) if C else 0
    if any(len(d) != T for d in detections):
        raise ValueError("every camera needs the same number of frames")
    K = next((d.shape[1] for cam in detections for d in cam if np.ndim(d) == 3 and len(d)), 0)
    if K == 0:
        raise NotEnoughDataError("no detections in any view")
    if anchors is None:
        anchors = [c for c in range(C) if np.mean([len(d) <= 1 for d in detections[c]]) >= 0.95]
    anchors = sorted(anchors)
    if len(anchors) < 2:
        raise NotEnoughDataError(f"need >= 2 anchor views that see only the subject, found {anchors}")
    out = np.zeros((C, T, K, 3), dtype=np.float32)
    for a in anchors:
        for t, d in enumerate(detections[a]):
            if len(d):
                out[a, t] = d[int(np.argmax(np.where(d[..., 2] > 0, d[..., 2], 0).sum(1)))]
    ss = settings
    sub = PeopleCalibrationSettings(min_score=ss.min_score, ransac_px=ss.ransac_px, max_points=1000,
                                    outlier_px=2 * ss.ransac_px, fix_world=False)
    tri = TriangulationSettings(min_score=ss.min_score, exclusion_threshold_px=2 * ss.ransac_px,
                                max_error_px=4 * ss.ransac_px)
    no_exclusion = TriangulationSettings(min_score=ss.min_score, exclusion_threshold_px=1e9, max_error_px=1e9)

    def calibrated(views):
        views = sorted(views)
        rig, _ = calibrate_from_people(out[views], [names[v] for v in views], [cams[v] for v in views], settings=sub)
        return rig, views

    for c in range(C):
        if c in anchors:
            continue
        best = (np.inf, None)
        tracks = _tracks(detections[c], ss.min_score)
        long = [tr for tr in tracks if (tr >= 0).sum() >= ss.min_track_fraction * T]  # short ones overfit
        for track in (long or tracks)[:ss.max_hypotheses]:
            out[c] = 0.0
            for t in np.flatnonzero(track >= 0):
                out[c, t] = detections[c][t][track[t]]
            try:
                rig, views = calibrated(anchors + [c])
            except NotEnoughDataError:
                continue
            score = float(np.nanmedian(Triangulator(rig, no_exclusion)(out[views]).reproj_error_px))
            if score < best[0]:
                best = (score, out[c].copy())
        if best[1] is None:
            raise NotEnoughDataError(f"view {c}: no track of detections calibrates with the anchor views")
        out[c] = best[1]
    if len(anchors) < C:  # every view's pose from the calibration of all views: re-pick
        rig, _ = calibrated(range(C))
        X = Triangulator(rig, tri)(out).points
        for c in range(C):
            if c not in anchors:
                out[c] = 0.0
                _pick_detections(detections[c], rig[names[c]], X, ss.min_score, ss.max_px, out[c])
    return out


def _tracks(dets, min_score, max_gap=5, max_cost=0.3) -> list[np.ndarray]:
    """People tracks of one view by greedy frame-to-frame matching: (T,) detection index per frame
    (-1 where absent), longest first. Matching cost: median distance over common keypoints / the
    detection's size (diagonal of its keypoints' box)."""
    T = len(dets)
    tracks: list[np.ndarray] = []
    last: list[tuple[int, np.ndarray]] = []  # per track: (frame, keypoints) last seen
    for t, d in enumerate(dets):
        pairs = []
        for p in range(len(d)):
            ok_p = d[p, :, 2] >= min_score
            if ok_p.sum() < 3:
                continue
            pts = d[p, ok_p, :2]
            size = float(np.linalg.norm(pts.max(0) - pts.min(0))) + 1e-9
            for j, (tl, kl) in enumerate(last):
                ok = ok_p & (kl[:, 2] >= min_score)
                if t - tl <= max_gap and ok.sum() >= 3:
                    cost = float(np.median(np.linalg.norm(d[p, ok, :2] - kl[ok, :2], axis=1))) / size
                    if cost <= max_cost:
                        pairs.append((cost, p, j))
        used_p, used_j = set(), set()
        for cost, p, j in sorted(pairs):
            if p in used_p or j in used_j:
                continue
            used_p.add(p)
            used_j.add(j)
            tracks[j][t] = p
            last[j] = (t, d[p])
        for p in range(len(d)):
            if p not in used_p and (d[p, :, 2] >= min_score).sum() >= 3:
                tracks.append(np.full(T, -1))
                tracks[-1][t] = p
                last.append((t, d[p]))
    return sorted(tracks, key=lambda tr: -int((tr >= 0).sum()))


def _pick_detections(dets, posed: Camera, X, min_score, max_px, out) -> None:
    """Write into out (T, K, 3) the detection of each frame that reprojects best (median px over
    keypoints). Accepted below ``max(max_px, 3 x the median best error)`` (at most 4 x max_px): early
    geometries from few views are rough, and a bystander is off by hundreds of px."""
    best = np.full(len(dets), np.inf)
    choice = np.zeros(len(dets), dtype=int)
    for t, d in enumerate(dets):
        if not len(d):
            continue
        err = np.linalg.norm(d[..., :2] - posed.project(X[t])[None], axis=-1)  # (P, K)
        err = np.where(d[..., 2] >= min_score, err, np.nan)
        med = np.array([np.median(e[np.isfinite(e)]) if np.isfinite(e).sum() >= 3 else np.inf for e in err])
        choice[t] = int(np.argmin(med))
        best[t] = med[choice[t]]
    finite = best[np.isfinite(best)]
    if finite.size == 0:
        return
    thr = min(max(max_px, 3.0 * float(np.median(finite))), 4.0 * max_px)
    for t in np.flatnonzero(best <= thr):
        out[t] = dets[t][choice[t]]
