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
    P = dets.shape[0]
    if P < 2:
        return []
    seen = dets[..., 2] >= min_score  # (P, K)
    size = np.zeros(P)
    for p in range(P):
        xy = dets[p, seen[p], :2]
        if len(xy) >= 2:
            size[p] = float(np.linalg.norm(xy.max(0) - xy.min(0)))
    total = np.where(seen, dets[..., 2], 0.0).sum(1)
    order = np.argsort(-total, kind="stable")  # best first: a duplicate of a kept one is dropped
    dropped: set[int] = set()
    out = []
    for a_i, a in enumerate(order):
        if a in dropped:
            continue
        for b in order[a_i + 1:]:
            if b in dropped:
                continue
            common = seen[a] & seen[b]
            if common.sum() < min_common:
                continue
            d = np.median(np.linalg.norm(dets[a, common, :2] - dets[b, common, :2], axis=-1))
            if d <= fraction * max(size[a], size[b]):
                dropped.add(int(b))
                out.append((int(a), int(b)))
    return out


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
