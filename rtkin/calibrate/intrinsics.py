"""One camera's intrinsics from views of a board (boards, board frame and units: :mod:`rtkin.calibrate.boards`).

- :func:`calibrate_intrinsics_detections` -> :class:`IntrinsicsResult` (view screening,
  OpenCV calibration, outlier-view rejection, report); :func:`calibrate_intrinsics` = image
  iteration, board detection and this; :func:`intrinsics_rig` puts the results in a rig.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Mapping, Sequence

import cv2
import numpy as np

from rtkin.calibrate.boards import (Board, BoardDetection, CharucoBoard, ImageLike, _check_board, detect_board,
                                    iter_images)
from rtkin.core.calibration import CalibrationError, Camera, Rig, rodrigues

__all__ = [
    "ViewRejection",
    "IntrinsicsSettings",
    "IntrinsicsResult",
    "NotEnoughViewsError",
    "calibrate_intrinsics",
    "calibrate_intrinsics_detections",
    "intrinsics_rig",
]


# ============================================================================ errors


class NotEnoughViewsError(CalibrationError):
    """Too few usable board views to calibrate (a :class:`ValueError`).

    Attributes:
        needed: minimum number of usable views.
        usable: number of usable views found.
        reasons: ``{reason: count}`` of the rejected views (see :class:`ViewRejection`).
    """

    def __init__(self, message: str, needed: int, usable: int, reasons: Mapping[str, int]):
        super().__init__(message)
        self.needed = needed
        self.usable = usable
        self.reasons = dict(reasons)


# ============================================================================ intrinsics


@dataclass(frozen=True)
class IntrinsicsSettings:
    """Every knob of :func:`calibrate_intrinsics` (defaults live here only).

    Attributes:
        model: ``"pinhole"`` (OpenCV k1, k2, p1, p2 [+ k3]) or ``"fisheye"`` (OpenCV k1..k4).
        min_views: fewest usable views to calibrate (>= 3). The Pose2Sim demo ships 7 images per
            camera, of which 6 show the whole board; 10-20 tilted views are better.
        every_s: sampling period of a video, s.
        max_blur_px, max_blur_fraction: a view is "blurred" when its edge blur
            (:attr:`BoardDetection.blur_px`) exceeds both ``max_blur_px`` and ``max_blur_fraction`` x
            the side of a square in the image (a blur that matters is large in pixels *and* relative
            to the squares the detector and the corner refinement work on). The Pose2Sim demo's views
            measure 1.1-4.2 px on 72-170 px squares (at most 3 % of a square); a Gaussian blur of
            sigma 4 px on 40 px squares measures ~4 px. (The variance of the Laplacian was tried
            first: on the demo's sharp views it spans 11-330 depending on square size, noise and
            contrast, overlapping with blurred ones, so no single threshold works.)
        min_area_fraction: views whose corners' convex hull covers less of the image are "too small".
        min_corners: fewest corners in a view (partial ChArUco views), and they must span 2-D.
        duplicate_fraction: a view whose corners lie within this fraction of the image diagonal
            (mean distance) of an already accepted view's is a "duplicate" (board not moved).
        outlier_factor: after calibrating, views with RMS > ``outlier_factor`` x median RMS
            (and > ``outlier_min_px``) are dropped and the camera recalibrated.
        outlier_min_px: floor of the outlier test, px (a 0.05 px view is not an outlier of 0.01 px ones).
        fix_k3: pinhole only: keep k3 = 0 (OpenCV ``CALIB_FIX_K3``); the result has 4 distortions.
        fix_tangential: pinhole only: keep p1 = p2 = 0.
        detect_max_side: checkerboards are searched at most at this resolution, px (then refined).
        coverage_grid: coverage is the fraction of a ``coverage_grid`` x ``coverage_grid`` grid of image
            cells holding at least one corner of a used view.
        min_tilt_deg: views whose board normal is within this angle of the optical axis count as
            fronto-parallel; a warning is raised when fewer than 2 views are tilted more.
    """

    model: str = "pinhole"
    min_views: int = 6
    every_s: float = 1.0
    max_blur_px: float = 2.0
    max_blur_fraction: float = 0.05
    min_area_fraction: float = 0.01
    min_corners: int = 8
    duplicate_fraction: float = 0.01
    outlier_factor: float = 3.0
    outlier_min_px: float = 0.5
    fix_k3: bool = True
    fix_tangential: bool = False
    detect_max_side: int = 1000
    coverage_grid: int = 10
    min_tilt_deg: float = 15.0

    def __post_init__(self) -> None:
        if self.model not in ("pinhole", "fisheye"):
            raise ValueError(f"model must be 'pinhole' or 'fisheye', got {self.model!r}")
        if int(self.min_views) < 3:
            raise ValueError(f"min_views must be >= 3 (OpenCV needs 3 views of a plane), got {self.min_views}")
        if self.min_corners < 4:
            raise ValueError(f"min_corners must be >= 4, got {self.min_corners}")
        if self.outlier_factor <= 1.0:
            raise ValueError(f"outlier_factor must be > 1, got {self.outlier_factor}")


@dataclass(frozen=True)
class ViewRejection:
    """A view left out of a calibration.

    Attributes:
        label: the view (file name, video time, ``view i``).
        reason: one of ``"unreadable"``, ``"not found"``, ``"wrong size"``, ``"blurred"``,
            ``"too small"``, ``"too few corners"``, ``"duplicate"``, ``"outlier"``.
        detail: human-readable specifics (measured value vs threshold).
    """

    label: str
    reason: str
    detail: str = ""


_REASON_WORDS = {
    "unreadable": "unreadable",
    "not found": "board not found",
    "wrong size": "of a different image size",
    "blurred": "blurred",
    "too small": "board too small",
    "too few corners": "too few corners",
    "duplicate": "duplicate pose",
    "outlier": "reprojection outlier",
}
_REASON_HINTS = {
    "not found": "keep the whole board inside the image and well lit",
    "blurred": "hold the board still (or use more light / a shorter exposure) and keep it in focus",
    "too small": "bring the board closer so it fills more of the image",
    "too few corners": "show more of the board",
    "duplicate": "move or turn the board between shots",
    "wrong size": "give images of one size (the camera's full frame): intrinsics are in its pixels",
}


@dataclass(frozen=True, eq=False)
class IntrinsicsResult:
    """One camera's intrinsic calibration and its quality report.

    Attributes:
        model: ``"pinhole"`` or ``"fisheye"``.
        image_size: (width, height), px.
        K: (3, 3) intrinsic matrix, px.
        dist: distortion, pinhole ``(k1, k2, p1, p2)`` (4,) or ``(+ k3)`` (5,); fisheye ``(k1..k4)`` (4,).
        rms_px: RMS reprojection error over all corners of the used views, px.
        view_rms_px: per used view, RMS reprojection error, px (label -> px).
        view_tilt_deg: per used view, angle between the board normal and the optical axis, deg.
        views_total: views given (images, video frames).
        views_found: views in which the board was found.
        used: labels of the views used, in input order.
        rejected: the views left out and why, in input order.
        coverage: fraction of the ``coverage_grid``-squared image cells holding a used corner.
        hull_coverage: area of the convex hull of all used corners / image area.
        warnings: advice on a weak calibration (e.g. no tilted views, poor coverage).
    """

    model: str
    image_size: tuple[int, int]
    K: np.ndarray
    dist: np.ndarray
    rms_px: float
    view_rms_px: dict
    view_tilt_deg: dict
    views_total: int
    views_found: int
    used: tuple
    rejected: tuple
    coverage: float
    hull_coverage: float
    warnings: tuple = ()

    def __post_init__(self) -> None:
        for name in ("K", "dist"):
            arr = np.array(getattr(self, name), dtype=np.float64)
            arr.flags.writeable = False
            object.__setattr__(self, name, arr)

    @property
    def fisheye(self) -> bool:
        return self.model == "fisheye"

    def camera(self, name: str, rvec: Sequence[float] = (0.0, 0.0, 0.0),
               tvec: Sequence[float] = (0.0, 0.0, 0.0)) -> Camera:
        """A :class:`~rtkin.core.calibration.Camera` with these intrinsics (identity extrinsics by default)."""
        rvec, tvec = np.asarray(rvec, float), np.asarray(tvec, float)
        return Camera(name, self.image_size, self.K, self.dist, rvec, tvec, self.fisheye)

    def rejection_counts(self) -> dict[str, int]:
        """``{reason: count}`` of the rejected views."""
        return dict(Counter(r.reason for r in self.rejected))

    def report(self, name: str = "") -> str:
        """Multi-line human-readable report (views, RMS, coverage, rejections, warnings)."""
        head = f"{name}: " if name else ""
        fx, fy, cx, cy = self.K[0, 0], self.K[1, 1], self.K[0, 2], self.K[1, 2]
        lines = [
            f"{head}{self.model} {self.image_size[0]}x{self.image_size[1]} px: views {self.views_total} given, "
            f"{self.views_found} board found, {len(self.used)} used, {len(self.rejected)} rejected",
            f"  RMS reprojection {self.rms_px:.3f} px; fx {fx:.2f} fy {fy:.2f} cx {cx:.2f} cy {cy:.2f} px; "
            f"dist {np.array2string(self.dist, precision=5, separator=', ')}",
            f"  coverage {100 * self.coverage:.0f}% of image cells, "
            f"convex hull {100 * self.hull_coverage:.0f}% of the image",
        ]
        for label in self.used:
            rms, tilt = self.view_rms_px[label], self.view_tilt_deg[label]
            lines.append(f"  used {label}: RMS {rms:.3f} px, tilt {tilt:.0f} deg")
        for r in self.rejected:
            lines.append(f"  rejected {r.label}: {r.reason}" + (f" ({r.detail})" if r.detail else ""))
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def calibrate_intrinsics(
    images: Sequence[ImageLike] | str | Path,
    board: Board,
    model: str | None = None,
    image_size: tuple[int, int] | None = None,
    min_views: int | None = None,
    progress: Callable[[int, int | None, str], None] | None = None,
    settings: IntrinsicsSettings | None = None,
) -> IntrinsicsResult:
    """Calibrate one camera's intrinsics from views of a board.

    Args:
        images: a sequence of images (arrays (H, W[, 3]) BGR) or image paths, a folder, or a video
            (sampled every ``settings.every_s`` s); see :func:`iter_images`.
        board: :class:`Checkerboard` or :class:`CharucoBoard`.
        model: ``"pinhole"`` / ``"fisheye"``; overrides ``settings.model``.
        image_size: expected (width, height), px; views of another size are rejected ("wrong size").
            Default: the size of the first readable view.
        min_views: overrides ``settings.min_views``.
        progress: called after each view as ``progress(done, total or None, label)``.
        settings: :class:`IntrinsicsSettings` (defaults when None).

    Returns:
        :class:`IntrinsicsResult` (K, distortion, RMS px, per-view report, coverage).

    Raises:
        NotEnoughViewsError: fewer than ``min_views`` usable views (the message says how many are
            missing, why views were rejected and what views to add).
        FileNotFoundError: a path that does not exist.
    """
    _check_board(board)
    settings = _override(settings, model=model, min_views=min_views)
    detections: list[BoardDetection] = []
    rejected: list[ViewRejection] = []
    n = 0
    for label, gray, total in iter_images(images, settings.every_s):
        n += 1
        if gray is None:
            rejected.append(ViewRejection(label, "unreadable", "cannot decode the image"))
        else:
            size = (gray.shape[1], gray.shape[0])
            if image_size is None:
                image_size = size
            if tuple(image_size) != size:
                rejected.append(ViewRejection(label, "wrong size", _size_detail(size, image_size)))
            else:
                det = detect_board(gray, board, label, settings.detect_max_side)
                if det is None:
                    rejected.append(ViewRejection(label, "not found", ""))
                else:
                    detections.append(det)
        if progress is not None:
            progress(n, total, label)
    if image_size is None:
        raise _not_enough(settings.min_views, 0, rejected, n, board)
    return calibrate_intrinsics_detections(detections, board, tuple(image_size), settings, rejected, views_total=n)


def _size_detail(size, expected) -> str:
    return f"{size[0]}x{size[1]} px, expected {expected[0]}x{expected[1]}"


def _override(settings: IntrinsicsSettings | None, **kw) -> IntrinsicsSettings:
    settings = settings if settings is not None else IntrinsicsSettings()
    changes = {k: v for k, v in kw.items() if v is not None}
    return replace(settings, **changes) if changes else settings


def calibrate_intrinsics_detections(
    detections: Sequence[BoardDetection],
    board: Board,
    image_size: tuple[int, int],
    settings: IntrinsicsSettings | None = None,
    rejected: Sequence[ViewRejection] = (),
    views_total: int | None = None,
) -> IntrinsicsResult:
    """Screen board detections, calibrate, drop outlier views, recalibrate, report.

    Args:
        detections: one :class:`BoardDetection` per view where the board was found (input order).
        board: the board.
        image_size: (width, height), px.
        settings: :class:`IntrinsicsSettings`.
        rejected: views already rejected upstream (kept in the report and the error message).
        views_total: number of views given (default: detections + rejected).

    Raises:
        NotEnoughViewsError: fewer than ``settings.min_views`` usable views.
    """
    settings = settings if settings is not None else IntrinsicsSettings()
    rejected = list(rejected)
    total = views_total if views_total is not None else len(detections) + len(rejected)
    size = (int(image_size[0]), int(image_size[1]))
    good = _screen_views(detections, board, size, settings, rejected)
    if len(good) < settings.min_views:
        raise _not_enough(settings.min_views, len(good), rejected, total, board)
    while True:
        K, dist, rvecs, tvecs = _calibrate(good, board, size, settings)
        rms = [_view_rms(d, board, K, dist, r, t, settings.model) for d, r, t in zip(good, rvecs, tvecs)]
        med = float(np.median(rms))
        limit = max(settings.outlier_factor * med, settings.outlier_min_px)
        bad = [i for i, e in enumerate(rms) if e > limit]
        if not bad or len(good) - len(bad) < 3:
            break
        for i in bad:
            rejected.append(ViewRejection(good[i].label, "outlier", f"RMS {rms[i]:.2f} px > {limit:.2f} px "
                                          f"({settings.outlier_factor:g} x median {med:.2f} px)"))
        good = [d for i, d in enumerate(good) if i not in bad]
        if len(good) < settings.min_views:
            raise _not_enough(settings.min_views, len(good), rejected, total, board)
    return _intrinsics_result(good, board, size, settings, K, dist, rvecs, tvecs, rms, rejected, total, len(detections))


def _screen_views(detections, board, size, settings, rejected: list) -> list[BoardDetection]:
    """Drop blurred, small, sparse and duplicate views (appending to ``rejected``)."""
    diag = math.hypot(*size)
    good: list[BoardDetection] = []
    for d in detections:
        if tuple(d.image_size) != size:
            rejected.append(ViewRejection(d.label, "wrong size", _size_detail(d.image_size, size)))
            continue
        reason = _view_problem(d, board, settings)
        if reason is None:
            dup = _duplicate_of(d, good, settings.duplicate_fraction * diag)
            if dup is not None:
                reason = ("duplicate", f"same board pose as {dup}")
        if reason is not None:
            rejected.append(ViewRejection(d.label, *reason))
        else:
            good.append(d)
    return good


def _view_problem(d: BoardDetection, board: Board, s: IntrinsicsSettings) -> tuple[str, str] | None:
    if len(d.ids) < s.min_corners:
        return "too few corners", f"{len(d.ids)} corners < {s.min_corners}"
    obj = board.object_points()[d.ids, :2]
    sv = np.linalg.svd(obj - obj.mean(axis=0), compute_uv=False)
    if sv[-1] / math.sqrt(len(obj)) < 0.25 * board.square_m:
        return "too few corners", "corners nearly on one line"
    limit = max(s.max_blur_px, s.max_blur_fraction * d.square_px)
    if not (d.blur_px <= limit):
        return "blurred", (f"edges blurred by {d.blur_px:.1f} px, more than {limit:.1f} px "
                           f"({100 * s.max_blur_fraction:g}% of a {d.square_px:.0f} px square)")
    if d.area_fraction < s.min_area_fraction:
        return "too small", f"board covers {100 * d.area_fraction:.2f}% of the image < {100 * s.min_area_fraction:.2f}%"
    return None


def _duplicate_of(d: BoardDetection, accepted: Sequence[BoardDetection], tol_px: float) -> str | None:
    for a in accepted:
        common, ia, ib = np.intersect1d(a.ids, d.ids, return_indices=True)
        if len(common) < max(4, 0.8 * len(d.ids)):
            continue
        if float(np.linalg.norm(a.corners[ia] - d.corners[ib], axis=1).mean()) < tol_px:
            return a.label
    return None


def _cv_points(dets: Sequence[BoardDetection], board: Board, fisheye: bool):
    obj = [d.object_points(board).astype(np.float32 if not fisheye else np.float64) for d in dets]
    img = [d.corners.astype(np.float32 if not fisheye else np.float64) for d in dets]
    if fisheye:
        return [o.reshape(1, -1, 3) for o in obj], [i.reshape(1, -1, 2) for i in img]
    return [o.reshape(-1, 1, 3) for o in obj], [i.reshape(-1, 1, 2) for i in img]


def _fisheye_flag(name: str) -> int:
    return int(getattr(cv2.fisheye, name, getattr(cv2, name)))


def _calibrate(dets, board, size, s: IntrinsicsSettings):
    obj, img = _cv_points(dets, board, s.model == "fisheye")
    crit = (cv2.TERM_CRITERIA_COUNT + cv2.TERM_CRITERIA_EPS, 100, 1e-9)
    try:
        if s.model == "fisheye":
            flags = _fisheye_flag("CALIB_RECOMPUTE_EXTRINSIC") | _fisheye_flag("CALIB_FIX_SKEW")
            _, K, D, rvecs, tvecs = cv2.fisheye.calibrate(obj, img, size, np.eye(3), np.zeros(4), flags=flags,
                                                          criteria=crit)
            dist = np.asarray(D, dtype=np.float64).ravel()[:4]
        else:
            flags = (cv2.CALIB_FIX_K3 if s.fix_k3 else 0) | (cv2.CALIB_ZERO_TANGENT_DIST if s.fix_tangential else 0)
            _, K, D, rvecs, tvecs = cv2.calibrateCamera(obj, img, size, None, None, flags=flags, criteria=crit)
            D = np.asarray(D, dtype=np.float64).ravel()
            dist = D[:4] if s.fix_k3 else D[:5]
    except cv2.error as e:
        raise CalibrationError(f"OpenCV calibration failed on {len(dets)} views: {e}") from e
    rvecs = [np.asarray(r, dtype=np.float64).reshape(3) for r in rvecs]
    tvecs = [np.asarray(t, dtype=np.float64).reshape(3) for t in tvecs]
    return np.asarray(K, dtype=np.float64), dist, rvecs, tvecs


def _project_cv(obj: np.ndarray, rvec, tvec, K, dist, fisheye: bool) -> np.ndarray:
    """Board/world points (M, 3) m + pose -> distorted px (M, 2) with OpenCV's own models."""
    rvec = np.asarray(rvec, float).reshape(3, 1)
    tvec = np.asarray(tvec, float).reshape(3, 1)
    dist = np.asarray(dist, float).ravel()
    if fisheye:
        uv, _ = cv2.fisheye.projectPoints(obj.reshape(1, -1, 3).astype(np.float64), rvec, tvec, K, dist[:4])
    else:
        uv, _ = cv2.projectPoints(obj.reshape(-1, 1, 3).astype(np.float64), rvec, tvec, K, dist)
    return uv.reshape(-1, 2)


def _view_rms(d: BoardDetection, board, K, dist, rvec, tvec, model: str) -> float:
    uv = _project_cv(d.object_points(board), rvec, tvec, K, dist, model == "fisheye")
    return float(np.sqrt(np.mean(np.sum((uv - d.corners) ** 2, axis=1))))


def _coverage(corners: np.ndarray, size: tuple[int, int], n: int) -> tuple[float, float]:
    w, h = size
    cx = np.clip(np.floor((corners[:, 0] + 0.5) * n / w), 0, n - 1).astype(int)
    cy = np.clip(np.floor((corners[:, 1] + 0.5) * n / h), 0, n - 1).astype(int)
    grid = len(set(zip(cx.tolist(), cy.tolist()))) / float(n * n)
    hull = float(cv2.contourArea(cv2.convexHull(corners.astype(np.float32)))) / float(w * h)
    return grid, hull


def _intrinsics_result(good, board, size, s, K, dist, rvecs, tvecs, rms, rejected, total, found) -> IntrinsicsResult:
    all_corners = np.concatenate([d.corners for d in good])
    sq = sum(float(np.sum((_project_cv(d.object_points(board), r, t, K, dist, s.model == "fisheye") - d.corners) ** 2))
             for d, r, t in zip(good, rvecs, tvecs))
    rms_all = math.sqrt(sq / len(all_corners))
    tilt = {d.label: float(np.degrees(np.arccos(min(1.0, abs(rodrigues(r)[2, 2]))))) for d, r in zip(good, rvecs)}
    cov, hull = _coverage(all_corners, size, s.coverage_grid)
    warnings = []
    n_tilted = sum(1 for v in tilt.values() if v > s.min_tilt_deg)
    if n_tilted < 2:
        warnings.append(f"only {n_tilted} view(s) tilted by more than {s.min_tilt_deg:g} deg: the focal length is "
                        "poorly constrained; add views with the board tilted by 30-45 deg")
    if cov < 0.3:
        warnings.append(f"corners cover only {100 * cov:.0f}% of the image: the distortion is extrapolated near the "
                        "edges; add views with the board near the image corners")
    return IntrinsicsResult(
        model=s.model, image_size=size, K=K, dist=dist, rms_px=rms_all,
        view_rms_px={d.label: e for d, e in zip(good, rms)}, view_tilt_deg=tilt,
        views_total=int(total), views_found=int(found), used=tuple(d.label for d in good),
        rejected=tuple(rejected), coverage=cov, hull_coverage=hull, warnings=tuple(warnings),
    )


def _not_enough(needed: int, usable: int, rejected: Sequence[ViewRejection], total: int,
                board: Board) -> NotEnoughViewsError:
    counts = Counter(r.reason for r in rejected)
    parts = [f"{n} {_REASON_WORDS.get(k, k)}" for k, n in counts.most_common()]
    why = (": " + ", ".join(parts)) if parts else ""
    hints = [_REASON_HINTS[k] for k in counts if k in _REASON_HINTS]
    if "not found" in counts and isinstance(board, CharucoBoard):
        hints[hints.index(_REASON_HINTS["not found"])] = "keep the markers in view, sharp and well lit"
    more = needed - usable
    hints.append(f"add at least {more} more view{'s' if more != 1 else ''} with the board tilted (30-45 deg, "
                 "towards different sides) and covering the image corners")
    msg = f"need at least {needed} usable views, got {usable} of {total}{why}; " + "; ".join(hints)
    return NotEnoughViewsError(msg, needed, usable, dict(counts))


def intrinsics_rig(results: Mapping[str, IntrinsicsResult], cameras: Sequence[str] | None = None) -> Rig:
    """Rig of intrinsic-only cameras (identity extrinsics), e.g. to write a ``Calib_int.toml``.

    Args:
        results: camera name -> :class:`IntrinsicsResult`.
        cameras: rig order (default: the mapping's order).
    """
    names = list(cameras) if cameras is not None else list(results)
    return Rig(tuple(results[n].camera(n) for n in names))
