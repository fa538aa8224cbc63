"""Associate people across views: which detection in each camera is the same person.

Pairwise affinity: for detections i (view a) and j (view b), the median symmetric epipolar
distance over the keypoints both see with a score above ``min_score`` (undistorted px): how far
each keypoint lies from the epipolar line of its counterpart, averaged both ways. The median
ignores a few wrong keypoints (a swapped limb, an outlier) that would dominate a mean. Same person
-> a few px; different people -> tens to hundreds.

Multi-person mode groups detections greedily: pairs sorted by affinity are merged into groups when
the merge keeps at most one detection per view and the groups agree (mean pairwise distance under
``max_epipolar_px``). Single-person mode forms the same groups and keeps one: the group closest to
the tracked subject's last 3D pose when there is one (reprojected into the views), otherwise the
group seen by the most views (then the most consistent) -- never "the largest box", so a
bystander seen by two cameras loses to the subject seen by four.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from numba import njit

from rtkin.core.calibration import UNDISTORT_ITERATIONS, Rig, _undistort_kernel, project_point, stacked_pinholes

__all__ = ["AssociationSettings", "Associator", "pairwise_epipolar_distance"]


@dataclass(frozen=True)
class AssociationSettings:
    """Association settings (TOML ``[association]`` maps 1:1).

    Attributes:
        mode: ``"single"`` (one subject; bystanders rejected) or ``"multi"``.
        min_score: keypoints below this score are ignored (0..1).
        max_epipolar_px: two detections can be the same person if their median symmetric epipolar
            distance is below this, px.
        min_common_keypoints: keypoints both detections must see for their distance to count.
        prior_gate_px: single mode: a group whose median reprojection distance to the tracked
            subject's last pose is above this is not the subject, px.
        duplicate_m: multi mode: two groups whose triangulated keypoints are closer than this
            (mean distance) are one person split in two; the one seen by fewer views is dropped, m.
    """

    mode: str = "single"
    min_score: float = 0.3
    max_epipolar_px: float = 40.0
    min_common_keypoints: int = 4
    prior_gate_px: float = 80.0
    duplicate_m: float = 0.35

    def __post_init__(self) -> None:
        if self.mode not in ("single", "multi"):
            raise ValueError(f"association.mode must be 'single' or 'multi', got {self.mode!r}")
        if not (self.max_epipolar_px > 0 and self.prior_gate_px > 0 and self.min_common_keypoints >= 1):
            raise ValueError("association thresholds must be > 0")


@njit(cache=True)
def _epipolar_kernel(F, ua, wa, ub, wb, min_common, out):  # pragma: no cover - compiled
    """out (Pa, Pb) median symmetric epipolar distance over keypoints seen in both, px."""
    K = ua.shape[1]
    buf = np.empty(K)
    la = np.empty((K, 3))
    for i in range(ua.shape[0]):
        _lines(F, ua[i], la)
        for j in range(ub.shape[0]):
            out[i, j] = _pair_distance(F, ua[i], wa[i], la, ub[j], wb[j], min_common, buf)


@njit(cache=True)
def _lines(F, ua, la):  # pragma: no cover - compiled
    """la (K, 3): epipolar lines in view b of view a's points ua (K, 2): F @ x_a."""
    for k in range(ua.shape[0]):
        for r in range(3):
            la[k, r] = F[r, 0] * ua[k, 0] + F[r, 1] * ua[k, 1] + F[r, 2]


@njit(cache=True)
def _pair_distance(F, ua, wa, la, ub, wb, min_common, buf):  # pragma: no cover - compiled
    """Median symmetric epipolar distance between one detection of view a (ua (K, 2), weights
    wa (K,), its lines la (K, 3) from :func:`_lines`) and one of view b (ub, wb), px; inf when
    fewer than ``min_common`` keypoints are seen in both. buf (K,) scratch."""
    n = 0
    for k in range(ua.shape[0]):
        if wa[k] <= 0.0 or wb[k] <= 0.0:
            continue
        xb, yb = ub[k, 0], ub[k, 1]
        # line in a of b's point: F^T @ x_b
        l0 = F[0, 0] * xb + F[1, 0] * yb + F[2, 0]
        l1 = F[0, 1] * xb + F[1, 1] * yb + F[2, 1]
        l2 = F[0, 2] * xb + F[1, 2] * yb + F[2, 2]
        d_a = abs(l0 * ua[k, 0] + l1 * ua[k, 1] + l2) / (np.sqrt(l0 * l0 + l1 * l1) + 1e-12)
        d_b = abs(la[k, 0] * xb + la[k, 1] * yb + la[k, 2]) / (np.sqrt(la[k, 0] ** 2 + la[k, 1] ** 2) + 1e-12)
        buf[n] = 0.5 * (d_a + d_b)
        n += 1
    if n < min_common or n == 0:
        return np.inf
    return np.median(buf[:n])


@njit(cache=True)
def _all_pairs_kernel(dets, cam_of, Ks, dists, F, min_score, min_common, n_iter, und, w, out):  # pragma: no cover
    """Every view's detections at once: dets (R, K, 3) distorted px + score, cam_of (R,) camera
    of each row (rows grouped by camera, rig order), Ks (C, 3, 3), dists (C, 5), F (C, C, 3, 3).
    Writes und (R, K, 2) undistorted px, w (R, K) weights (score, 0 below ``min_score``) and
    out (R, R) the median symmetric epipolar distance of rows r < s of different cameras (inf
    elsewhere)."""
    R, K = dets.shape[0], dets.shape[1]
    uv = np.empty((K, 2))
    for r in range(R):
        c = cam_of[r]
        for k in range(K):
            uv[k, 0], uv[k, 1] = dets[r, k, 0], dets[r, k, 1]
            sc = dets[r, k, 2]
            w[r, k] = sc if sc >= min_score else 0.0
        _undistort_kernel(uv, Ks[c], dists[c], n_iter, und[r])
    out[:] = np.inf
    buf = np.empty(K)
    la = np.empty((K, 3))
    for r in range(R):
        a = cam_of[r]
        for b in range(a + 1, F.shape[0]):
            _lines(F[a, b], und[r], la)
            for s in range(r + 1, R):
                if cam_of[s] == b:
                    out[r, s] = _pair_distance(F[a, b], und[r], w[r], la, und[s], w[s], min_common, buf)


def pairwise_epipolar_distance(F: np.ndarray, ua: np.ndarray, wa: np.ndarray, ub: np.ndarray, wb: np.ndarray,
                               min_common: int) -> np.ndarray:
    """Median symmetric epipolar distance between detections of two views.

    Args:
        F: (3, 3) fundamental matrix, ``x_b^T F x_a = 0`` (undistorted px).
        ua: (Pa, K, 2) undistorted px of view a; wa: (Pa, K) weights (0 = not seen).
        ub: (Pb, K, 2) undistorted px of view b; wb: (Pb, K) weights.
        min_common: fewer common keypoints than this -> inf.

    Returns:
        (Pa, Pb) median distance over the keypoints both see, px (inf where not comparable).
    """
    out = np.empty((ua.shape[0], ub.shape[0]))
    _epipolar_kernel(np.ascontiguousarray(F, dtype=np.float64), np.ascontiguousarray(ua, dtype=np.float64),
                     np.ascontiguousarray(wa, dtype=np.float64), np.ascontiguousarray(ub, dtype=np.float64),
                     np.ascontiguousarray(wb, dtype=np.float64), int(min_common), out)
    return out


class Associator:
    """Stage: per-view detections -> groups of (view, detection) that are one person.

    Call with ``views``: per camera (rig order) a (P_c, K, 3) array (x_px, y_px, score; distorted
    px) or None, and optionally ``prior``: (N, K, 3) world points of the people tracked last
    (single mode uses the first). Returns a list of groups, each a dict camera index -> detection
    index, best first; single mode returns at most one group.
    """

    def __init__(self, rig: Rig, settings: AssociationSettings = AssociationSettings()):
        self.rig = rig
        self.settings = settings
        self._F = rig.fundamentals()
        self._cams = stacked_pinholes(rig)  # for the single-person prior's projections

    def reset(self) -> None:
        """Stateless; present for the stage interface."""

    def __call__(self, views: Sequence[np.ndarray | None], prior: np.ndarray | None = None) -> list[dict[int, int]]:
        C = len(self.rig)
        if len(views) != C:
            raise ValueError(f"expected {C} views (rig order), got {len(views)}")
        pairs, dets, row_of = self._pairs(views)
        groups = self._group(pairs)
        if self.settings.mode == "multi":
            return [g for g, _ in groups if len(g) >= 2]
        return self._pick_subject(groups, dets, row_of, prior)

    # ------------------------------------------------------------------ steps
    def _pairs(self, views) -> tuple[list[tuple[float, int, int, int, int]], np.ndarray | None, dict]:
        """All (distance, view a, det i, view b, det j) under the threshold, best first: every
        view's detections undistorted and compared pairwise in one kernel call. Also the
        detections as rows ``(R, K, 3)`` float64 and the row of each (view, det)."""
        s = self.settings
        present = [(c, v) for c, v in enumerate(views) if v is not None and len(v)]
        if len(present) < 2:
            return [], None, {}
        dets = np.ascontiguousarray(np.concatenate([v for _, v in present]), dtype=np.float64)  # (R, K, 3)
        cams = [c for c, v in present for _ in range(len(v))]
        det_of = [i for _, v in present for i in range(len(v))]
        cam_of = np.array(cams, np.int64)
        R, K = dets.shape[:2]
        und, w, d = np.empty((R, K, 2)), np.empty((R, K)), np.empty((R, R))
        _all_pairs_kernel(dets, cam_of, self._cams[2], self._cams[3], self._F, float(s.min_score),
                          int(s.min_common_keypoints), UNDISTORT_ITERATIONS, und, w, d)
        out = [(float(d[r, q]), cams[r], det_of[r], cams[q], det_of[q])
               for r, q in zip(*np.nonzero(d < s.max_epipolar_px))]
        out.sort()
        return out, dets, {(c, i): r for r, (c, i) in enumerate(zip(cams, det_of))}

    def _group(self, pairs) -> list[tuple[dict[int, int], float]]:
        """Greedy merging of pairs into groups; returns (group, mean pair distance), best first."""
        dist = {}
        for d, a, i, b, j in pairs:
            dist[(a, i, b, j)] = dist[(b, j, a, i)] = d
        owner: dict[tuple[int, int], int] = {}
        groups: dict[int, dict[int, int]] = {}
        next_id = 0
        for d, a, i, b, j in pairs:
            ga, gb = owner.get((a, i)), owner.get((b, j))
            if ga is None:
                ga, next_id = next_id, next_id + 1
                groups[ga] = {a: i}
                owner[(a, i)] = ga
            if gb is None:
                gb, next_id = next_id, next_id + 1
                groups[gb] = {b: j}
                owner[(b, j)] = gb
            if ga == gb or set(groups[ga]) & set(groups[gb]):
                continue  # already together, or would put two detections of one view together
            cross = [dist.get((va, ia, vb, ib), np.inf) for va, ia in groups[ga].items() for vb, ib in groups[gb].items()]
            if _mean(cross) < self.settings.max_epipolar_px and max(cross) < 2 * self.settings.max_epipolar_px:
                for v, k in groups[gb].items():
                    owner[(v, k)] = ga
                groups[ga].update(groups.pop(gb))
        scored = []
        for g in groups.values():
            items = list(g.items())
            ds = [dist[(va, ia, vb, ib)] for n, (va, ia) in enumerate(items) for vb, ib in items[n + 1:]
                  if (va, ia, vb, ib) in dist]
            scored.append((g, _mean(ds) if ds else np.inf))
        scored.sort(key=lambda t: (-len(t[0]), t[1]))
        return scored

    def _pick_subject(self, groups, dets, row_of, prior) -> list[dict[int, int]]:
        if not groups:
            return []
        if prior is not None and len(prior) and np.isfinite(prior[0]).any():
            d = self._prior_distances(groups, dets, row_of, prior[0])
            best = int(np.argmin(d))
            if d[best] < self.settings.prior_gate_px:
                return [groups[best][0]]
        g = groups[0][0]
        return [g] if len(g) >= 2 else []

    def _prior_distances(self, groups, dets: np.ndarray, row_of: dict, points: np.ndarray) -> np.ndarray:
        """(G,) median px distance between each group's detections (rows ``row_of[(view, det)]``
        of ``dets``, from :meth:`_pairs`) and the reprojection of the tracked subject's last 3D
        pose ``points`` (K, 3) (inf when nothing is comparable)."""
        rows = [(n, c, row_of[(c, i)]) for n, (g, _) in enumerate(groups) for c, i in g.items()]
        out = np.empty(len(groups))
        _prior_kernel(np.ascontiguousarray(points, dtype=np.float64), *self._cams,
                      dets[np.array([r for _, _, r in rows], np.intp)],
                      np.array([c for _, c, _ in rows], np.int64), np.array([n for n, _, _ in rows], np.int64),
                      float(self.settings.min_score), out)
        return out


def _mean(values: list[float]) -> float:
    """``float(np.mean(values))``, bit for bit, without numpy's call overhead for short lists
    (numpy adds fewer than 8 values in order, as ``sum`` does)."""
    return sum(values) / len(values) if len(values) < 8 else float(np.mean(values))


@njit(cache=True)
def _prior_kernel(points, R, t, K, dist, dets, cam_of, group_of, min_score, out):  # pragma: no cover - compiled
    """out (G,) = median over the groups' (detection row, keypoint) of the px distance between the
    detection (score >= min_score) and ``points`` (K, 3) projected into its camera (in front of
    it, distorted px); inf where none. R (C, 3, 3), t (C, 3), K (C, 3, 3), dist (C, 5) per camera;
    dets (N, K, 3); cam_of, group_of (N,)."""
    C, Kp, G, N = R.shape[0], points.shape[0], out.shape[0], dets.shape[0]
    proj = np.full((C, Kp, 2), np.nan)
    done = np.zeros(C, np.bool_)
    for n in range(N):
        c = cam_of[n]
        if not done[c]:
            done[c] = True
            for k in range(Kp):
                proj[c, k, 0], proj[c, k, 1] = project_point(R[c], t[c], K[c], dist[c], points[k, 0],
                                                             points[k, 1], points[k, 2])
    buf = np.empty((G, N * Kp))
    cnt = np.zeros(G, np.int64)
    for n in range(N):
        c, g = cam_of[n], group_of[n]
        for k in range(Kp):
            if dets[n, k, 2] >= min_score and np.isfinite(proj[c, k, 0]):
                dx = dets[n, k, 0] - proj[c, k, 0]
                dy = dets[n, k, 1] - proj[c, k, 1]
                buf[g, cnt[g]] = np.sqrt(dx * dx + dy * dy)
                cnt[g] += 1
    for g in range(G):
        out[g] = np.median(buf[g, : cnt[g]]) if cnt[g] > 0 else np.inf
