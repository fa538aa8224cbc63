"""Ghost suppression before association: a detector that fires twice on one body gives two
detections in one view that lie on top of each other; the second one must never reach the
association, where it could take the person's place in that view (and so give a 3D "ghost" a few
centimetres from the person, or pull the person's triangulation).

Two detections of one view are duplicates when their keypoints both see (score >= ``min_score``,
at least ``min_common``) lie within ``fraction`` of the larger one's size (the diagonal of its
keypoints' bounding box) of each other, median over those keypoints; the detection with the
larger total score is kept. Two different people overlapping in an image have most keypoints far
apart (their separation is at least a torso width, ~15 % of a body's size), so the median stays
far above the default 6 %.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from numba import njit

__all__ = ["duplicate_pairs", "suppress_duplicate_detections"]


def duplicate_pairs(dets: np.ndarray, fraction: float = 0.06, min_score: float = 0.3,
                    min_common: int = 4) -> list[tuple[int, int]]:
    """(kept, dropped) index pairs of duplicate detections in one view.

    Args:
        dets: ``(P, K, 3)`` x_px, y_px, score of one view's detections.
        fraction: duplicates lie within this fraction of the larger detection's size, median.
        min_score: keypoints below this score are not compared.
        min_common: keypoints both must see for a comparison.
    """
    dets = np.asarray(dets)
    P = dets.shape[0]
    if P < 2:
        return []
    out = np.empty((P, 2), np.int64)
    n = _duplicates_kernel(np.ascontiguousarray(dets, dtype=np.float64), float(fraction), float(min_score),
                           int(min_common), out)
    return [(int(a), int(b)) for a, b in out[:n]]


@njit(cache=True)
def _duplicates_kernel(dets, fraction, min_score, min_common, out):  # pragma: no cover - compiled
    """Writes (kept, dropped) rows to ``out`` (P, 2); returns how many. dets (P, K, 3) float64."""
    P, K = dets.shape[0], dets.shape[1]
    size = np.zeros(P)
    total = np.zeros(P)
    for p in range(P):  # size: diagonal of the seen keypoints' bounding box; total: their scores
        n, x0, x1, y0, y1 = 0, np.inf, -np.inf, np.inf, -np.inf
        for k in range(K):
            s = dets[p, k, 2]
            if s >= min_score:
                total[p] += s
                n += 1
                x0, x1 = min(x0, dets[p, k, 0]), max(x1, dets[p, k, 0])
                y0, y1 = min(y0, dets[p, k, 1]), max(y1, dets[p, k, 1])
        if n >= 2:
            size[p] = np.sqrt((x1 - x0) ** 2 + (y1 - y0) ** 2)
    order = np.argsort(-total, kind="mergesort")  # best first (stable): a duplicate of a kept one is dropped
    dropped = np.zeros(P, np.bool_)
    buf = np.empty(K)
    n_out = 0
    for ai in range(P):
        a = order[ai]
        if dropped[a]:
            continue
        for bi in range(ai + 1, P):
            b = order[bi]
            if dropped[b]:
                continue
            n = 0
            for k in range(K):
                if dets[a, k, 2] >= min_score and dets[b, k, 2] >= min_score:
                    buf[n] = np.sqrt((dets[a, k, 0] - dets[b, k, 0]) ** 2 + (dets[a, k, 1] - dets[b, k, 1]) ** 2)
                    n += 1
            if n < min_common or n == 0:
                continue
            if np.median(buf[:n]) <= fraction * max(size[a], size[b]):
                dropped[b] = True
                out[n_out, 0], out[n_out, 1] = a, b
                n_out += 1
    return n_out


def suppress_duplicate_detections(views: Sequence[np.ndarray | None], fraction: float = 0.06,
                                  min_score: float = 0.3, min_common: int = 4) -> tuple[list, int]:
    """Per view, the detections without their duplicates (see :func:`duplicate_pairs`), and the
    number dropped. ``views``: per camera ``(P, K, 3)`` or None; unchanged arrays are passed
    through (no copy)."""
    out, n = [], 0
    for v in views:
        if v is None or len(v) < 2:
            out.append(v)
            continue
        pairs = duplicate_pairs(np.asarray(v), fraction, min_score, min_common)
        if not pairs:
            out.append(v)
            continue
        drop = {b for _, b in pairs}
        out.append(np.asarray(v)[[p for p in range(len(v)) if p not in drop]])
        n += len(drop)
    return out, n
