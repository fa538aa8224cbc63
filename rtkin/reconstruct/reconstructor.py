"""FrameSet -> Skeleton3D: associate, triangulate, track, filter. One plain stateful stage.

The same object runs inside the live sync process, in ``rtkin replay`` and in tests, so live and
replayed outputs are the same computation.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from numba import njit

from rtkin.reconstruct.association import AssociationSettings, Associator
from rtkin.core.calibration import Rig
from rtkin.reconstruct.filters import FilterSettings, make_filter
from rtkin.reconstruct.ghosts import suppress_duplicate_detections
from rtkin.reconstruct.health import CameraHealth, HealthSettings
from rtkin.core.messages import FrameSet, Skeleton3D
from rtkin.core.skeletons import get_skeleton
from rtkin.reconstruct.tracking import Tracker, TrackingSettings, mean_distances
from rtkin.reconstruct.triangulation import TriangulationSettings, Triangulator

__all__ = ["Reconstructor", "ReconstructionSettings"]


@dataclass(frozen=True)
class ReconstructionSettings:
    """Everything between FrameSets and Skeleton3D."""

    association: AssociationSettings = AssociationSettings()
    triangulation: TriangulationSettings = TriangulationSettings()
    tracking: TrackingSettings = TrackingSettings()
    filter: FilterSettings = FilterSettings()
    health: HealthSettings = HealthSettings()


class Reconstructor:
    """Stage: ``__call__(FrameSet) -> Skeleton3D`` (people seen in this slot, tracked ids).

    Args:
        rig: calibrated cameras; FrameSets must list the same camera names in the same order.
        skeleton: keypoint set name of the 2D detections.
        settings: association, triangulation, tracking and filter settings.
    """

    def __init__(self, rig: Rig, skeleton: str = "HALPE_26", settings: ReconstructionSettings = ReconstructionSettings()):
        self.rig = rig
        self.skeleton = get_skeleton(skeleton)
        self.settings = settings
        self.associator = Associator(rig, settings.association)
        self.triangulator = Triangulator(rig, settings.triangulation)
        tracking = settings.tracking
        if settings.association.mode == "single":  # one subject, picked from the first frame: no wait
            tracking = dataclasses.replace(tracking, confirm_s=0.0)
        self.tracker = Tracker(tracking)
        self.health = CameraHealth(rig, settings.health) if settings.health.enabled else None
        #: True: the calibration check is queued and run by :meth:`run_deferred` (the live sync
        #: node calls it after publishing, so it is not on the latency path); False: inline.
        self.defer_health = False
        self._deferred: list[tuple] = []
        self.reset()

    def reset(self) -> None:
        """Forget tracks and filter states."""
        self.tracker.reset()
        self._filters: dict[int, object] = {}
        self._deferred = []
        if self.health is not None:
            self.health.reset()

    def run_deferred(self) -> None:
        """Run the queued calibration-check updates, in frame order (see :attr:`defer_health`)."""
        pending, self._deferred = self._deferred, []
        for args in pending:
            self.health.update(*args)

    def __call__(self, fs: FrameSet) -> Skeleton3D:
        if fs.cameras != self.rig.names:
            raise ValueError(f"FrameSet cameras {fs.cameras} differ from the rig's {self.rig.names}")
        K = self.skeleton.n_keypoints
        views = [None if f is None else f.keypoints for f in fs.frames]
        for f in fs.frames:
            if f is not None and (f.skeleton != self.skeleton.name or f.n_keypoints != K):
                raise ValueError(f"{f.camera}: skeleton {f.skeleton} with {f.n_keypoints} keypoints, "
                                 f"expected {self.skeleton.name} ({K})")
        if self.settings.tracking.duplicate_fraction > 0:  # a detection fired twice: once
            views, _ = suppress_duplicate_detections(views, self.settings.tracking.duplicate_fraction,
                                                     self.settings.association.min_score)
        prior = self.tracker.last_points() if self.settings.association.mode == "single" else None
        groups = self.associator(views, prior if prior is not None and len(prior) else None)
        kp = np.zeros((len(self.rig), len(groups), K, 3), dtype=np.float64)
        for g, group in enumerate(groups):
            for c, i in group.items():
                kp[c, g] = views[c][i]
        res = self.triangulator(kp)
        if self.health is not None and self.health.due():
            if self.defer_health:
                self._deferred.append((views, groups, res.points))
            else:
                self.health.update(views, groups, res.points)
        points = _drop_duplicates(res.points, res.n_views, self.settings.association.duplicate_m)
        ids = self.tracker.update(points, fs.slot_ns)
        for pid in self.tracker.retired:
            self._filters.pop(pid, None)
        return self._output(fs, res, kp, ids)

    def _output(self, fs: FrameSet, res, kp: np.ndarray, ids: np.ndarray) -> Skeleton3D:
        keep = np.flatnonzero(ids >= 0)
        K = self.skeleton.n_keypoints
        t_s = fs.slot_ns * 1e-9
        points = np.empty((keep.size, K, 3))
        filtering = self.settings.filter.kind != "none"
        for n, g in enumerate(keep.tolist()):
            if not filtering:
                points[n] = res.points[g]
                continue
            pid = int(ids[g])
            filt = self._filters.get(pid)
            if filt is None:
                filt = self._filters[pid] = make_filter(self.settings.filter, K * 3)
            points[n] = np.asarray(filt(res.points[g].reshape(-1), t_s), dtype=np.float64).reshape(K, 3)
        scores = np.empty((keep.size, K), dtype=np.float32)
        err = np.empty((keep.size, K), dtype=np.float32)
        n_views = np.empty((keep.size, K), dtype=np.uint8)
        _person_arrays(res.used, kp, res.reproj_error_px, keep, points, scores, err, n_views)
        # every array is new and made here to the message's rules: no re-validation (~25 us)
        return Skeleton3D.trusted(fs.slot_ns, fs.capture_ns, self.skeleton.name, ids[keep].astype(np.int64),
                                  points, scores, err, n_views)


@njit(cache=True)
def _person_arrays(used, kp, reproj, keep, points, scores, err, n_views):  # pragma: no cover - compiled
    """The output arrays of the kept groups ``keep`` (N,): from ``used`` (C, G, K) views used,
    ``kp`` (C, G, K, 3) the detections (score last) and ``reproj`` (G, K) px, write ``scores``
    (N, K) the mean score over the views used (0 without one), ``err`` (N, K) and ``n_views``
    (N, K); a point of ``points`` (N, K, 3) with a non-finite coordinate becomes all-NaN, with
    0 views and a NaN error (a point is all-NaN or all-finite)."""
    C = used.shape[0]
    for n in range(keep.shape[0]):
        g = keep[n]
        for k in range(points.shape[1]):
            cnt = 0
            w = 0.0
            for c in range(C):  # in camera order, as numpy's sum over the first axis
                if used[c, g, k]:
                    cnt += 1
                    w += kp[c, g, k, 2]
            s = w / cnt if cnt > 0 else 0.0
            scores[n, k] = s if np.isfinite(s) else 0.0
            n_views[n, k] = cnt
            err[n, k] = reproj[g, k]
            if not (np.isfinite(points[n, k, 0]) and np.isfinite(points[n, k, 1]) and np.isfinite(points[n, k, 2])):
                points[n, k, 0] = points[n, k, 1] = points[n, k, 2] = np.nan
                n_views[n, k] = 0
                err[n, k] = np.nan


def _drop_duplicates(points: np.ndarray, n_views: np.ndarray, min_dist_m: float) -> np.ndarray:
    """(G, K, 3) points with groups that repeat a better-seen group (mean distance over common
    keypoints < ``min_dist_m``) set to NaN, so they are not tracked as a second person."""
    G = points.shape[0]
    if G < 2:
        return points
    order = np.argsort(-n_views.sum(-1), kind="stable")
    out = points.copy()
    d = mean_distances(points, points)  # (G, G); inf where fewer than 3 keypoints in common
    kept: list[int] = []
    for g in order:
        if any(d[g, h] < min_dist_m for h in kept):
            out[g] = np.nan
        else:
            kept.append(g)
    return out
