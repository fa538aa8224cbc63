"""Calibrate a new rig with a board: intrinsics per camera, then extrinsics from one board seen by all.

Boards:

- :class:`Checkerboard` ``(cols, rows)`` inner corners, ``square_m`` squares. Corner ``k = r * cols + c``
  sits at ``(c, r, 0) * square_m`` in the board frame.
- :class:`CharucoBoard` ``(cols, rows)`` squares with ArUco markers; corner ids and positions are
  OpenCV's (origin at the board's outer corner).

Board frame (both boards): x along the printed rows (left to right as printed), y down the printed
columns, **z into the board**, i.e. away from a camera that sees the printed face (OpenCV's
convention). A board lying face up on the floor therefore has z pointing down; ``z_up=True`` in
:func:`calibrate_extrinsics_board` turns the world by 180 deg about x so that z is up.

A checkerboard's corner order is ambiguous to the detector (it may come back mirrored or turned by
180 deg). Every detection here is put into one canonical order: the printed face is seen (so the
grid is right-handed in the image), and the square between corners 0, 1, ``cols``, ``cols + 1`` is
dark. The second rule can only be applied when the board is not symmetric under a 180 deg turn, i.e.
when ``cols + rows`` is odd (the Pose2Sim demo's 4 x 7 board is fine); a symmetric checkerboard is
accepted for intrinsics but refused for extrinsics.

Units: metres for the board and translations, pixels of the original (distorted) image for 2D
points and intrinsics, radians for rotations; extrinsics are world->camera (``X_cam = R X_world + t``).

Stages (each usable alone; no file I/O inside the numeric code):

- :func:`iter_images` -> (label, grey image) from arrays, image files, a folder or a video.
- :func:`detect_board` -> :class:`BoardDetection` (corners, ids, edge blur and board size in px).
- :func:`calibrate_intrinsics_detections` -> :class:`IntrinsicsResult` (view screening,
  OpenCV calibration, outlier-view rejection, report); :func:`calibrate_intrinsics` = all three.
- :func:`solve_extrinsics_board` -> :class:`BoardExtrinsicsResult` (PnP per camera and shot, joint
  robust least squares, per-camera RMS); :func:`calibrate_extrinsics_board` returns its rig.
- :func:`render_board` draws a board seen by a known camera (tests, checks); :func:`write_board_image`
  writes a printable board (atomically).
"""

from __future__ import annotations

import math
import os
import tempfile
from collections import Counter, deque
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence, Union

import cv2
import numpy as np
from scipy.optimize import least_squares

from rtkin.core.calibration import CalibrationError, Camera, Rig, rodrigues, rodrigues_inv

__all__ = [
    "Checkerboard",
    "CharucoBoard",
    "Board",
    "BoardDetection",
    "ViewRejection",
    "IntrinsicsSettings",
    "IntrinsicsResult",
    "ExtrinsicsSettings",
    "BoardExtrinsicsResult",
    "NotEnoughViewsError",
    "BoardNotFoundError",
    "iter_images",
    "detect_board",
    "calibrate_intrinsics",
    "calibrate_intrinsics_detections",
    "intrinsics_rig",
    "solve_extrinsics_board",
    "calibrate_extrinsics_board",
    "render_board",
    "board_image",
    "write_board_image",
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg")

ImageLike = Union[np.ndarray, str, Path]


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


class BoardNotFoundError(CalibrationError):
    """The board was not found in a camera's image(s); ``cameras`` names them (rig order)."""

    def __init__(self, message: str, cameras: Sequence[str]):
        super().__init__(message)
        self.cameras = tuple(cameras)


# ============================================================================ boards


def _check_positive(name: str, v: float) -> float:
    v = float(v)
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be a positive length in metres, got {v}")
    return v


def _check_pair(name: str, v, minimum: int) -> tuple[int, int]:
    try:
        a, b = (int(x) for x in v)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} must be two integers (cols, rows), got {v!r}") from e
    if a < minimum or b < minimum or (a, b) != tuple(v):
        raise ValueError(f"{name} must be two integers >= {minimum} (cols, rows), got {tuple(v)}")
    return a, b


@dataclass(frozen=True)
class Checkerboard:
    """A plain checkerboard.

    Attributes:
        inner_corners: (cols, rows) inner corners, e.g. ``(4, 7)`` for a board of 5 x 8 squares.
            ``(7, 4)`` describes the same physical board turned by 90 deg; both detect.
        square_m: side of a square, m.
    """

    inner_corners: tuple[int, int]
    square_m: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "inner_corners", _check_pair("inner_corners", self.inner_corners, 3))
        object.__setattr__(self, "square_m", _check_positive("square_m", self.square_m))

    @property
    def n_corners(self) -> int:
        return self.inner_corners[0] * self.inner_corners[1]

    @property
    def symmetric(self) -> bool:
        """True if the board looks the same after a 180 deg (or 90 deg) turn: its origin is ambiguous."""
        c, r = self.inner_corners
        return (c + r) % 2 == 0  # (also covers square boards, c == r)

    def object_points(self) -> np.ndarray:
        """(N, 3) corner positions in the board frame, m (z = 0); ``N = cols * rows``, row-major."""
        c, r = self.inner_corners
        grid = np.mgrid[0:r, 0:c]  # (2, r, c): row index, col index
        xy = np.stack([grid[1].ravel(), grid[0].ravel()], axis=1) * self.square_m
        return np.concatenate([xy, np.zeros((xy.shape[0], 1))], axis=1)

    def outline_m(self) -> tuple[float, float, float, float]:
        """Printed board extent (x0, y0, x1, y1) in the board frame, m (one square around the corners)."""
        c, r = self.inner_corners
        s = self.square_m
        return (-s, -s, c * s, r * s)


@dataclass(frozen=True)
class CharucoBoard:
    """A ChArUco board (checkerboard with ArUco markers in the light squares).

    Attributes:
        squares: (cols, rows) squares (not inner corners), e.g. ``(7, 5)``.
        square_m: side of a square, m.
        marker_m: side of a marker, m (< ``square_m``).
        dictionary: OpenCV ArUco dictionary name, e.g. ``"DICT_4X4_50"``.
        legacy: OpenCV's pre-4.6 layout for boards with an even number of rows (older prints).
    """

    squares: tuple[int, int]
    square_m: float
    marker_m: float
    dictionary: str = "DICT_4X4_50"
    legacy: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "squares", _check_pair("squares", self.squares, 2))
        object.__setattr__(self, "square_m", _check_positive("square_m", self.square_m))
        object.__setattr__(self, "marker_m", _check_positive("marker_m", self.marker_m))
        if self.marker_m >= self.square_m:
            raise ValueError(f"marker_m ({self.marker_m}) must be smaller than square_m ({self.square_m})")
        if not isinstance(self.dictionary, str) or not self.dictionary.startswith("DICT_") or not hasattr(
            cv2.aruco, self.dictionary
        ):
            raise ValueError(f"unknown ArUco dictionary {self.dictionary!r} (e.g. 'DICT_4X4_50')")
        n_markers = (self.squares[0] * self.squares[1]) // 2
        dict_size = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, self.dictionary)).bytesList.shape[0]
        if n_markers > dict_size:
            raise ValueError(f"{self.dictionary} has {dict_size} markers, the board needs {n_markers}")

    @property
    def symmetric(self) -> bool:
        """Always False: marker ids fix the board's origin."""
        return False

    @property
    def n_corners(self) -> int:
        return (self.squares[0] - 1) * (self.squares[1] - 1)

    @cached_property
    def cv_board(self) -> "cv2.aruco.CharucoBoard":
        """The OpenCV board object (built once)."""
        d = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, self.dictionary))
        b = cv2.aruco.CharucoBoard(self.squares, self.square_m, self.marker_m, d)
        b.setLegacyPattern(bool(self.legacy))
        return b

    @cached_property
    def _detector(self) -> "cv2.aruco.CharucoDetector":
        return cv2.aruco.CharucoDetector(self.cv_board)

    def object_points(self) -> np.ndarray:
        """(N, 3) ChArUco corner positions in the board frame, m (z = 0); row ``i`` is corner id ``i``."""
        return np.asarray(self.cv_board.getChessboardCorners(), dtype=np.float64).reshape(-1, 3)

    def outline_m(self) -> tuple[float, float, float, float]:
        """Printed board extent (x0, y0, x1, y1) in the board frame, m."""
        return (0.0, 0.0, self.squares[0] * self.square_m, self.squares[1] * self.square_m)


Board = Union[Checkerboard, CharucoBoard]


def _check_board(board) -> None:
    if not isinstance(board, (Checkerboard, CharucoBoard)):
        raise TypeError(f"board must be a Checkerboard or CharucoBoard, got {type(board).__name__}")


# ============================================================================ images


def _to_gray(img: np.ndarray) -> np.ndarray:
    """Any image (H, W), (H, W, 1|3|4), uint8/uint16/float -> (H, W) uint8."""
    a = np.asarray(img)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim == 3 and a.shape[2] in (3, 4):
        a = cv2.cvtColor(a, cv2.COLOR_BGR2GRAY if a.shape[2] == 3 else cv2.COLOR_BGRA2GRAY)
    if a.ndim != 2:
        raise ValueError(f"expected an image (H, W) or (H, W, 3), got shape {a.shape}")
    if a.dtype == np.uint8:
        return np.ascontiguousarray(a)
    if a.dtype == np.uint16:
        return (a >> 8).astype(np.uint8)
    if np.issubdtype(a.dtype, np.floating):
        top = 1.0 if float(np.nanmax(a)) <= 1.0 else 255.0
        return np.clip(np.nan_to_num(a) * (255.0 / top), 0, 255).astype(np.uint8)
    return np.clip(a, 0, 255).astype(np.uint8)


def _read_gray(path: Path) -> np.ndarray | None:
    data = np.fromfile(str(path), dtype=np.uint8)  # works with non-ASCII paths, unlike imread
    if data.size == 0:
        return None
    return cv2.imdecode(data, cv2.IMREAD_GRAYSCALE)


def _iter_video(path: Path, every_s: float) -> Iterator[tuple[str, np.ndarray | None, int | None]]:
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        yield f"{path.name}", None, 1
        return
    try:
        fps = cap.get(cv2.CAP_PROP_FPS)
        fps = fps if fps and math.isfinite(fps) and fps > 0 else 30.0
        step = max(1, int(round(every_s * fps)))
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        total = (n + step - 1) // step if n > 0 else None
        i = 0
        while True:
            if i % step == 0:
                ok, frame = cap.read()
                if not ok:
                    break
                yield f"{path.name}@{i / fps:.2f}s", _to_gray(frame), total
            elif not cap.grab():
                break
            i += 1
    finally:
        cap.release()


def _expand_sources(images) -> list:
    """Folder / video / sequence -> flat list of sources (arrays or file paths)."""
    if isinstance(images, (str, Path)):
        p = Path(images)
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS + VIDEO_EXTENSIONS)
            if not files:
                raise FileNotFoundError(f"no images or videos ({', '.join(IMAGE_EXTENSIONS)}) in folder {p}")
            return files
        if not p.exists():
            raise FileNotFoundError(f"calibration images not found: {p}")
        return [p]
    if isinstance(images, np.ndarray):
        if images.ndim in (2, 3) and images.dtype != object and (images.ndim == 2 or images.shape[-1] in (1, 3, 4)):
            return [images]  # one image
        return list(images)  # (V, H, W[, 3]) stack
    return list(images)


def iter_images(
    images: Sequence[ImageLike] | ImageLike, every_s: float = 1.0
) -> Iterator[tuple[str, np.ndarray | None, int | None]]:
    """Yield ``(label, grey image (H, W) uint8 or None if unreadable, total views or None)``.

    Args:
        images: a sequence of images (arrays (H, W[, 3]), BGR as OpenCV reads them) or paths;
            a folder (its images and videos, sorted by file name); or one image or video path.
        every_s: a video is sampled every ``every_s`` seconds, s.

    Labels are file names (``cam01_03_int.jpg``; full paths when two files share a name),
    ``video.mp4@12.00s`` for video frames and ``view 3`` for arrays. Images are loaded one at a time
    (a long video never sits in memory).
    """
    if not (every_s > 0):
        raise ValueError(f"every_s must be > 0, got {every_s}")
    sources = _expand_sources(images)
    has_video = any(isinstance(s, (str, Path)) and Path(s).suffix.lower() in VIDEO_EXTENSIONS for s in sources)
    names = [Path(s).name for s in sources if isinstance(s, (str, Path))]
    unique = len(set(names)) == len(names)  # else label files by their full path
    for i, src in enumerate(sources):
        if isinstance(src, (str, Path)):
            p = Path(src)
            if p.suffix.lower() in VIDEO_EXTENSIONS:
                for label, img, _ in _iter_video(p, every_s):
                    yield label, img, None
                continue
            if not p.exists():
                raise FileNotFoundError(f"calibration image not found: {p}")
            yield p.name if unique else str(p), _read_gray(p), None if has_video else len(sources)
        else:
            yield f"view {i + 1}", _to_gray(src), None if has_video else len(sources)


# ============================================================================ detection


@dataclass(frozen=True, eq=False)
class BoardDetection:
    """The board found in one image.

    Attributes:
        label: where the image came from (file name, video time, ``view i``).
        corners: (M, 2) corner positions, px of the original (distorted) image.
        ids: (M,) indices into ``board.object_points()``.
        image_size: (width, height) of the image, px.
        blur_px: blur of the board's square edges, px: the standard deviation of the Gaussian blur
            that gives the measured edge profile (``contrast / (sqrt(2 pi) * peak gradient)``, median
            over the edges between neighbouring corners). A perfectly sharp edge measures ~0.8 px.
        square_px: median side of a board square in the image, px.
        area_fraction: area of the convex hull of the corners / image area.
    """

    label: str
    corners: np.ndarray
    ids: np.ndarray
    image_size: tuple[int, int]
    blur_px: float
    square_px: float
    area_fraction: float

    def object_points(self, board: Board) -> np.ndarray:
        """(M, 3) board-frame positions of the detected corners, m."""
        return board.object_points()[self.ids]


_SUBPIX_CRITERIA = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_COUNT, 40, 1e-3)


def detect_board(image: np.ndarray, board: Board, label: str = "", max_side: int = 1000) -> BoardDetection | None:
    """Find ``board`` in one image; None if it is not (completely, for a checkerboard) found.

    Args:
        image: (H, W) or (H, W, 3) BGR image.
        board: the board to look for.
        label: name carried into the result.
        max_side: a checkerboard is searched in a copy scaled so its longer side is at most this
            (px; speed), then its corners are refined at full resolution (``cornerSubPix``).
            ChArUco boards are searched at full resolution.

    Returns:
        :class:`BoardDetection` with corners in full-resolution px; a checkerboard's corners come in
        the canonical order described in the module docstring.
    """
    _check_board(board)
    gray = _to_gray(image)
    if isinstance(board, Checkerboard):
        found = _detect_checkerboard(gray, board, max_side)
    else:
        found = _detect_charuco(gray, board)
    if found is None:
        return None
    corners, ids = found
    return _make_detection(label, gray, board, corners, ids)


def _detect_checkerboard(gray: np.ndarray, board: Checkerboard, max_side: int):
    cols, rows = board.inner_corners
    h, w = gray.shape
    scale = min(1.0, float(max_side) / max(h, w))
    small = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else gray
    # The sector-based detector first: it copes better with blur and tilt, and places corners next
    # to the image border correctly where the classic one (from cut quads) can be off by 10+ px.
    ok, c = cv2.findChessboardCornersSB(small, (cols, rows), flags=cv2.CALIB_CB_EXHAUSTIVE)
    if not ok:
        flags = cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE | cv2.CALIB_CB_FAST_CHECK
        ok, c = cv2.findChessboardCorners(small, (cols, rows), None, flags)
    if not ok or c is None or c.shape[0] != cols * rows:
        return None
    # back to full-resolution pixel coordinates (pixel centres at integers in both images)
    c0 = (c.reshape(-1, 2).astype(np.float64) + 0.5) / scale - 0.5
    spacing = _grid_spacing(c0.reshape(rows, cols, 2))
    half = int(np.clip(round(0.35 * spacing), 2, 15))
    c = cv2.cornerSubPix(gray, c0.astype(np.float32).reshape(-1, 1, 2), (half, half), (-1, -1), _SUBPIX_CRITERIA)
    c = c.reshape(-1, 2).astype(np.float64)
    keep = np.linalg.norm(c - c0, axis=1) <= max(0.25 * spacing, 2.0 / scale)  # refinement ran away: drop
    order = _canonical_order(c.reshape(rows, cols, 2), gray, board)  # (rows, cols) indices into c
    idx = order.ravel()
    ids = np.arange(cols * rows)[keep[idx]]
    return c[idx][keep[idx]], ids


def _grid_spacing(grid: np.ndarray) -> float:
    """Median distance between neighbouring corners of a (rows, cols, 2) grid, px."""
    d = np.concatenate([
        np.linalg.norm(np.diff(grid, axis=1), axis=-1).ravel(),
        np.linalg.norm(np.diff(grid, axis=0), axis=-1).ravel(),
    ])
    return float(np.median(d))


def _canonical_order(grid: np.ndarray, gray: np.ndarray, board: Checkerboard) -> np.ndarray:
    """(rows, cols) indices into a detected (rows, cols, 2) grid putting it in canonical order:
    right-handed in the image (printed face seen) and the square at (0.5, 0.5) squares dark."""
    rows, cols = grid.shape[:2]
    order = np.arange(rows * cols).reshape(rows, cols)
    dx = np.diff(grid, axis=1).mean(axis=(0, 1))
    dy = np.diff(grid, axis=0).mean(axis=(0, 1))
    if dx[0] * dy[1] - dx[1] * dy[0] < 0:  # mirrored: reverse the columns
        order = order[:, ::-1]
    if board.symmetric:
        return order
    pts = grid.reshape(-1, 2)[order.ravel()]
    H, _ = cv2.findHomography(board.object_points()[:, :2], pts)
    if H is None:
        return order
    s = board.square_m
    r_i, c_i = np.mgrid[0 : rows - 1, 0 : cols - 1]
    offs = np.array([[0.0, 0.0], [0.2, 0.2], [-0.2, 0.2], [0.2, -0.2], [-0.2, -0.2]])
    centres = (np.stack([c_i.ravel(), r_i.ravel()], axis=1)[:, None, :] + 0.5 + offs[None]) * s  # (Q, 5, 2)
    uv = cv2.perspectiveTransform(centres.reshape(-1, 1, 2), H).reshape(-1, 2).astype(np.float32)
    vals = cv2.remap(gray.astype(np.float32), uv[:, 0].reshape(-1, 1), uv[:, 1].reshape(-1, 1), cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE).reshape(centres.shape[0], -1).mean(axis=1)
    dark = (r_i + c_i).ravel() % 2 == 0
    if vals[dark].mean() > vals[~dark].mean():  # turned by 180 deg
        order = order[::-1, ::-1]
    return order


def _detect_charuco(gray: np.ndarray, board: CharucoBoard):
    corners, ids, _, _ = board._detector.detectBoard(gray)
    if corners is None or ids is None or len(ids) < 4:
        return None
    return np.asarray(corners, dtype=np.float64).reshape(-1, 2), np.asarray(ids, dtype=np.int64).ravel()


def _make_detection(label: str, gray: np.ndarray, board: Board, corners: np.ndarray, ids: np.ndarray) -> BoardDetection:
    h, w = gray.shape
    square_px = _square_px(corners, board.object_points()[ids], board.square_m)
    hull = cv2.convexHull(corners.astype(np.float32))
    area = float(cv2.contourArea(hull)) / float(w * h)
    blur = _edge_blur_px(gray, corners, board.object_points()[ids], board.square_m)
    return BoardDetection(label, corners, ids, (w, h), blur, square_px, area)


def _square_px(corners: np.ndarray, obj: np.ndarray, square_m: float) -> float:
    """Median image distance between corners one square apart on the board, px."""
    i, j = _neighbour_pairs(obj, square_m)
    if i.size == 0:
        return float("nan")
    return float(np.median(np.linalg.norm(corners[i] - corners[j], axis=-1)))


def _neighbour_pairs(obj: np.ndarray, square_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i, j) of corners one square apart on the board (obj (M, 3) m)."""
    d_obj = np.linalg.norm(obj[:, None, :2] - obj[None, :, :2], axis=-1)
    return np.nonzero(np.triu(np.abs(d_obj - square_m) < 1e-6 * square_m + 1e-12))


def _edge_blur_px(gray: np.ndarray, corners: np.ndarray, obj: np.ndarray, square_m: float) -> float:
    """Gaussian-equivalent blur (std, px) of the square edges between neighbouring corners.

    A step of contrast A blurred by a Gaussian of std sigma has a peak gradient A / (sqrt(2 pi) sigma).
    The contrast is the spread (5th-95th percentile) of the board region; the peak gradient is taken
    across each edge near its middle (away from the corners). Median over edges.
    """
    i, j = _neighbour_pairs(obj, square_m)
    if i.size == 0:
        return float("nan")
    h, w = gray.shape
    a, b = corners[i], corners[j]
    L = np.linalg.norm(b - a, axis=1)
    pad = int(math.ceil(float(L.max()))) + 4
    x0, y0 = np.maximum(np.floor(corners.min(axis=0)).astype(int) - pad, 0)
    x1, y1 = np.minimum(np.ceil(corners.max(axis=0)).astype(int) + pad, [w, h])
    crop = gray[y0:y1, x0:x1].astype(np.float32)
    gx = cv2.Sobel(crop, cv2.CV_32F, 1, 0, ksize=3) / 8.0
    gy = cv2.Sobel(crop, cv2.CV_32F, 0, 1, ksize=3) / 8.0
    grad = cv2.magnitude(gx, gy)
    hull = np.zeros(crop.shape, np.uint8)
    cv2.fillConvexPoly(hull, np.round(cv2.convexHull((corners - [x0, y0]).astype(np.float32))).astype(np.int32), 1)
    vals = crop[hull.astype(bool)]
    if vals.size < 16:
        return float("nan")
    lo, hi = np.percentile(vals, [5, 95])
    contrast = float(hi - lo)
    # sample |gradient| on lines across each edge: along t in [0.3, 0.7], across s in [-0.25, 0.25] L
    u = (b - a) / L[:, None]
    n = np.stack([-u[:, 1], u[:, 0]], axis=1)
    t = np.linspace(0.3, 0.7, 5)
    sfrac = np.linspace(-0.25, 0.25, 41)
    pts = (a[:, None, None, :] + (t[None, :, None, None] * (b - a)[:, None, None, :])
           + sfrac[None, None, :, None] * L[:, None, None, None] * n[:, None, None, :]) - [x0, y0]  # (E, 5, 41, 2)
    m = pts.reshape(-1, 2).astype(np.float32)
    g = cv2.remap(grad, m[:, 0].reshape(-1, 1), m[:, 1].reshape(-1, 1), cv2.INTER_LINEAR,
                  borderMode=cv2.BORDER_REPLICATE).reshape(pts.shape[:3])
    peak = np.median(g.max(axis=2), axis=1)  # (E,) per edge
    peak = float(np.median(peak))
    if contrast < 8.0 or peak <= 0:
        return float("inf")  # no visible edges: as good as blurred
    return contrast / (math.sqrt(2.0 * math.pi) * peak)


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


# ============================================================================ extrinsics


@dataclass(frozen=True)
class ExtrinsicsSettings:
    """Knobs of :func:`solve_extrinsics_board`.

    Attributes:
        huber_px: scale of the Huber loss of the joint refinement, px (residuals beyond it count linearly).
        min_corners: fewest corners for a (camera, shot) observation to be used.
        detect_max_side: see :func:`detect_board`, px.
        max_nfev: iteration budget of the least-squares refinement.
    """

    huber_px: float = 1.0
    min_corners: int = 6
    detect_max_side: int = 1000
    max_nfev: int = 200


@dataclass(frozen=True, eq=False)
class BoardExtrinsicsResult:
    """Rig calibrated from a board seen by several cameras.

    Attributes:
        rig: the cameras (intrinsics as given), extrinsics world->camera; the world is the board
            frame of the reference shot (``z_up``: turned by 180 deg about x so z is up).
        reference_shot: index of the shot whose board frame is the world.
        rms_px: per camera (rig order), RMS reprojection error over its observations, px.
        n_points: per camera, number of corners used.
        shots_seen: per camera, indices of the shots in which it saw the board.
        board_poses: (S, 4, 4) board -> world transforms per shot, m (NaN for shots nobody saw).
        initial_rms_px: per camera, RMS before the joint refinement (PnP chain only), px.
    """

    rig: Rig
    reference_shot: int
    rms_px: dict
    n_points: dict
    shots_seen: dict
    board_poses: np.ndarray
    initial_rms_px: dict

    def report(self) -> str:
        """One line per camera: RMS px, corners and shots used, camera centre in the world (m)."""
        lines = [f"board extrinsics: {len(self.rig)} cameras, world = board of shot {self.reference_shot}"]
        for cam in self.rig:
            c = cam.center
            n = cam.name
            lines.append(f"  {n}: RMS {self.rms_px[n]:.3f} px (initial {self.initial_rms_px[n]:.3f}) "
                         f"on {self.n_points[n]} corners in shots {list(self.shots_seen[n])}; "
                         f"centre [{c[0]:.3f}, {c[1]:.3f}, {c[2]:.3f}] m")
        return "\n".join(lines)


@dataclass(frozen=True)
class _Intr:
    K: np.ndarray
    dist: np.ndarray
    fisheye: bool
    size: tuple[int, int] | None
    n_dist: int


def _as_intr(name: str, v) -> _Intr:
    if isinstance(v, Camera):
        return _Intr(v.K, v.dist[: v.n_dist] if not v.fisheye else v.dist[:4], v.fisheye, v.size, v.n_dist)
    if isinstance(v, IntrinsicsResult):
        return _Intr(v.K, v.dist, v.fisheye, v.image_size, len(v.dist))
    try:
        K, dist = v[0], v[1]
        K = np.asarray(K, dtype=np.float64).reshape(3, 3)
        dist = np.asarray(dist, dtype=np.float64).ravel()
    except (TypeError, ValueError, IndexError) as e:
        raise CalibrationError(f"{name}: intrinsics must be a Camera, an IntrinsicsResult or (K (3, 3), dist), "
                               f"got {v!r}") from e
    fisheye = bool(v[2]) if len(v) > 2 else False
    if dist.size not in (4, 5) and not (fisheye and dist.size == 4):
        raise CalibrationError(f"{name}: dist must have 4 or 5 values, got {dist.size}")
    return _Intr(K, dist, fisheye, None, dist.size)


def _norm_points(uv: np.ndarray, intr: _Intr) -> np.ndarray:
    """Distorted px (M, 2) -> ideal normalised image coordinates (M, 2)."""
    crit = (cv2.TERM_CRITERIA_COUNT + cv2.TERM_CRITERIA_EPS, 50, 1e-12)
    pts = np.asarray(uv, dtype=np.float64).reshape(-1, 1, 2)
    if intr.fisheye:
        out = cv2.fisheye.undistortPoints(pts, intr.K, intr.dist[:4], criteria=crit)
    else:
        out = cv2.undistortPoints(pts, intr.K, intr.dist, criteria=crit)
    return out.reshape(-1, 2)


def _pnp(obj: np.ndarray, uv: np.ndarray, intr: _Intr) -> np.ndarray:
    """Board pose in the camera (4, 4) from corners: IPPE on undistorted points, then LM refinement."""
    norm = _norm_points(uv, intr)
    n, rvecs, tvecs, errs = cv2.solvePnPGeneric(obj.astype(np.float64), norm, np.eye(3), None, flags=cv2.SOLVEPNP_IPPE)
    if not n:
        raise CalibrationError("PnP failed")
    best = int(np.argmin(np.asarray(errs).ravel()))
    rvec, tvec = cv2.solvePnPRefineLM(obj.astype(np.float64), norm, np.eye(3), None, rvecs[best].copy(),
                                      tvecs[best].copy())
    return _T(rodrigues(rvec.ravel()), tvec.ravel())


def _T(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = t
    return T


def _inv(T: np.ndarray) -> np.ndarray:
    return _T(T[:3, :3].T, -T[:3, :3].T @ T[:3, 3])


def _shots_of(v) -> list:
    """One camera's entry -> list of shots (image, path, detection or None)."""
    if v is None or isinstance(v, (str, Path, BoardDetection)):
        return [v]
    if isinstance(v, np.ndarray) and v.dtype != object and (v.ndim == 2 or (v.ndim == 3 and v.shape[-1] in (1, 3, 4))):
        return [v]
    return list(v)


def _load_shot(x, label: str) -> np.ndarray | BoardDetection | None:
    if x is None or isinstance(x, BoardDetection):
        return x
    if isinstance(x, (str, Path)):
        p = Path(x)
        if not p.exists():
            raise FileNotFoundError(f"{label}: image not found: {p}")
        img = _read_gray(p)
        if img is None:
            raise CalibrationError(f"{label}: cannot decode image {p}")
        return img
    return _to_gray(x)


def solve_extrinsics_board(
    images_per_camera: Mapping[str, object],
    intrinsics: Rig | Mapping[str, object],
    board: Board,
    cameras: Sequence[str] | None = None,
    z_up: bool = False,
    reference_shot: int | None = None,
    settings: ExtrinsicsSettings | None = None,
) -> BoardExtrinsicsResult:
    """Extrinsics of several cameras from a board they see at the same time(s).

    Args:
        images_per_camera: camera name -> one synchronized shot (image (H, W[, 3]) BGR, path, or a
            :class:`BoardDetection`) or a list of shots; shot ``i`` of every camera is the same instant
            (use None where a camera has no image). All lists must have the same length.
        intrinsics: a :class:`~rtkin.core.calibration.Rig` (its extrinsics are ignored), or camera name ->
            :class:`~rtkin.core.calibration.Camera` | :class:`IntrinsicsResult` | ``(K (3, 3), dist (4|5,))``.
        board: the board; a checkerboard must not be symmetric (see module docstring).
        cameras: rig order (default: the rig's order, else the order of ``images_per_camera``).
        z_up: world = board frame turned by 180 deg about x (origin at the board's origin corner,
            z up when the board lies face up on the floor). Default: world = board frame.
        reference_shot: the shot whose board defines the world (default: the first shot seen by
            the most cameras).
        settings: :class:`ExtrinsicsSettings`.

    Returns:
        :class:`BoardExtrinsicsResult` (rig in ``cameras`` order, per-camera RMS px).

    Raises:
        CalibrationError: fewer than 2 cameras, a symmetric checkerboard, missing intrinsics or images,
            cameras not linked to the others by a shared shot.
        BoardNotFoundError: a camera never sees the board (names the cameras).
    """
    _check_board(board)
    settings = settings if settings is not None else ExtrinsicsSettings()
    if board.symmetric:
        raise CalibrationError(
            f"checkerboard {board.inner_corners} looks the same turned by 180 deg, so cameras may disagree on its "
            "origin: use a board with an odd total of inner corners (e.g. 4 x 7), or a ChArUco board")
    names, intr = _resolve_cameras(images_per_camera, intrinsics, cameras)
    shots = {n: _shots_of(images_per_camera[n]) for n in names}
    n_shots = {len(v) for v in shots.values()}
    if len(n_shots) != 1:
        counts = {n: len(v) for n, v in shots.items()}
        raise CalibrationError(f"every camera needs the same number of shots, got {counts}")
    S = n_shots.pop()
    obs, sizes = _detect_shots(names, shots, board, intr, settings)
    missing = [n for n in names if not any((n, s) in obs for s in range(S))]
    if missing:
        which = "its image" if S == 1 else f"any of its {S} shots"
        what = ("the whole checkerboard" if isinstance(board, Checkerboard)
                else f"at least {settings.min_corners} ChArUco corners")
        raise BoardNotFoundError(f"board not found in {', '.join(missing)} ({which}): every camera must see {what}",
                                 missing)
    if reference_shot is None:
        seen = [sum((n, s) in obs for n in names) for s in range(S)]
        reference_shot = int(np.argmax(seen))
    if not (0 <= reference_shot < S) or not any((n, reference_shot) in obs for n in names):
        raise CalibrationError(f"reference shot {reference_shot} is not seen by any camera")
    cam_T, shot_T = _chain_poses(names, S, obs, intr, reference_shot)
    init = {n: _rms_cam(n, cam_T, shot_T, obs, intr) for n in names}
    cam_T, shot_T = _refine(names, S, obs, intr, cam_T, shot_T, reference_shot, settings)
    rms = {n: _rms_cam(n, cam_T, shot_T, obs, intr) for n in names}
    F = _T(np.diag([1.0, -1.0, -1.0]), np.zeros(3)) if z_up else np.eye(4)  # world' = F world
    rig = Rig(tuple(_camera_out(n, intr[n], sizes[n], cam_T[n] @ _inv(F)) for n in names))
    poses = np.full((S, 4, 4), np.nan)
    for s, T in shot_T.items():
        poses[s] = F @ T
    return BoardExtrinsicsResult(
        rig=rig, reference_shot=reference_shot, rms_px=rms,
        n_points={n: int(sum(len(obs[(n, s)][1]) for s in range(S) if (n, s) in obs)) for n in names},
        shots_seen={n: tuple(s for s in range(S) if (n, s) in obs) for n in names},
        board_poses=poses, initial_rms_px=init,
    )


def calibrate_extrinsics_board(
    images_per_camera: Mapping[str, object],
    intrinsics: Rig | Mapping[str, object],
    board: Board,
    cameras: Sequence[str] | None = None,
    z_up: bool = False,
    reference_shot: int | None = None,
    settings: ExtrinsicsSettings | None = None,
) -> Rig:
    """Same as :func:`solve_extrinsics_board` but returns only the :class:`~rtkin.core.calibration.Rig`."""
    return solve_extrinsics_board(images_per_camera, intrinsics, board, cameras, z_up, reference_shot, settings).rig


def _resolve_cameras(images_per_camera, intrinsics, cameras) -> tuple[list[str], dict[str, _Intr]]:
    if cameras is not None:
        names = list(cameras)
    elif isinstance(intrinsics, Rig):
        names = list(intrinsics.names)
    else:
        names = list(images_per_camera)
    if len(set(names)) != len(names):
        raise CalibrationError(f"duplicate camera names: {names}")
    if len(names) < 2:
        raise CalibrationError(f"board extrinsics need at least 2 cameras, got {len(names)}: {names}")
    no_img = [n for n in names if n not in images_per_camera]
    if no_img:
        raise CalibrationError(f"no images for camera(s) {no_img}")
    intr = {}
    for n in names:
        try:
            v = intrinsics[n]
        except KeyError:
            raise CalibrationError(f"no intrinsics for camera {n!r}") from None
        intr[n] = _as_intr(n, v)
    return names, intr


def _detect_shots(names, shots, board, intr, settings: ExtrinsicsSettings):
    """-> obs {(camera, shot): (board points (M, 3), corners (M, 2))}, sizes {camera: (w, h)}."""
    obs, sizes = {}, {}
    for n in names:
        for s, x in enumerate(shots[n]):
            item = _load_shot(x, f"{n} shot {s}")
            if item is None:
                continue
            if isinstance(item, BoardDetection):
                det = item
            else:
                det = detect_board(item, board, f"{n} shot {s}", settings.detect_max_side)
            size = tuple(item.image_size) if isinstance(item, BoardDetection) else (item.shape[1], item.shape[0])
            if n in sizes and sizes[n] != size:
                raise CalibrationError(f"{n}: shots have different image sizes {sizes[n]} and {size}")
            sizes[n] = size
            if intr[n].size is not None and tuple(intr[n].size) != size:
                raise CalibrationError(f"{n}: image is {size[0]}x{size[1]} px but its intrinsics are for "
                                       f"{intr[n].size[0]}x{intr[n].size[1]} px")
            if det is None or len(det.ids) < settings.min_corners:
                continue
            obj = det.object_points(board)
            sv = np.linalg.svd(obj[:, :2] - obj[:, :2].mean(axis=0), compute_uv=False)
            if sv[-1] / math.sqrt(len(obj)) < 0.25 * board.square_m:
                continue  # corners on a line: no pose
            obs[(n, s)] = (obj, det.corners)
    return obs, sizes


def _chain_poses(names, S, obs, intr, ref: int):
    """Initial camera (world->cam) and shot (board->world) transforms by walking camera-shot links."""
    pnp = {}
    shot_T = {ref: np.eye(4)}
    cam_T: dict[str, np.ndarray] = {}
    queue = deque([("shot", ref)])
    while queue:
        kind, key = queue.popleft()
        if kind == "shot":
            for n in names:
                if n not in cam_T and (n, key) in obs:
                    P = pnp.setdefault((n, key), _pnp(*obs[(n, key)], intr[n]))
                    cam_T[n] = P @ _inv(shot_T[key])
                    queue.append(("cam", n))
        else:
            for s in range(S):
                if s not in shot_T and (key, s) in obs:
                    P = pnp.setdefault((key, s), _pnp(*obs[(key, s)], intr[key]))
                    shot_T[s] = _inv(cam_T[key]) @ P
                    queue.append(("shot", s))
    lost = [n for n in names if n not in cam_T]
    if lost:
        raise CalibrationError(f"camera(s) {lost} share no board shot with the others "
                               "(directly or through other cameras)")
    return cam_T, shot_T


def _project_obs(obj, cam_T, shot_T, intr: _Intr) -> np.ndarray:
    T = cam_T @ shot_T
    return _project_cv(obj, rodrigues_inv(T[:3, :3]), T[:3, 3], intr.K, intr.dist, intr.fisheye)


def _rms_cam(n, cam_T, shot_T, obs, intr) -> float:
    sq, m = 0.0, 0
    for (c, s), (obj, uv) in obs.items():
        if c == n and s in shot_T:
            r = _project_obs(obj, cam_T[n], shot_T[s], intr[n]) - uv
            sq += float(np.sum(r**2))
            m += len(uv)
    return math.sqrt(sq / m) if m else float("nan")


def _pose_vec(T: np.ndarray) -> np.ndarray:
    return np.concatenate([rodrigues_inv(T[:3, :3]), T[:3, 3]])


def _vec_pose(v: np.ndarray) -> np.ndarray:
    return _T(rodrigues(v[:3]), v[3:6])


def _refine(names, S, obs, intr, cam_T, shot_T, ref, settings: ExtrinsicsSettings):
    """Joint robust least squares over camera poses and the non-reference board poses."""
    free_shots = [s for s in sorted(shot_T) if s != ref]
    x0 = np.concatenate([_pose_vec(cam_T[n]) for n in names] + [_pose_vec(shot_T[s]) for s in free_shots])
    cam_idx = {n: i for i, n in enumerate(names)}
    shot_idx = {s: len(names) + i for i, s in enumerate(free_shots)}
    keys = [k for k in obs if k[1] in shot_T]

    def unpack(x):
        cams = {n: _vec_pose(x[6 * i : 6 * i + 6]) for n, i in cam_idx.items()}
        shots = {ref: np.eye(4), **{s: _vec_pose(x[6 * i : 6 * i + 6]) for s, i in shot_idx.items()}}
        return cams, shots

    def residuals(x):
        cams, shots = unpack(x)
        res = [_project_obs(obs[k][0], cams[k[0]], shots[k[1]], intr[k[0]]) - obs[k][1] for k in keys]
        return np.concatenate([r.ravel() for r in res])

    # sparsity: a residual depends on its camera's 6 and its shot's 6 parameters
    rows = sum(2 * len(obs[k][1]) for k in keys)
    sparsity = np.zeros((rows, x0.size), dtype=bool)
    r = 0
    for k in keys:
        m = 2 * len(obs[k][1])
        i = cam_idx[k[0]]
        sparsity[r : r + m, 6 * i : 6 * i + 6] = True
        if k[1] in shot_idx:
            j = shot_idx[k[1]]
            sparsity[r : r + m, 6 * j : 6 * j + 6] = True
        r += m
    sol = least_squares(residuals, x0, loss="huber", f_scale=settings.huber_px, jac_sparsity=sparsity,
                        x_scale="jac", max_nfev=settings.max_nfev, method="trf")
    return unpack(sol.x)


def _camera_out(name: str, intr: _Intr, size, T: np.ndarray) -> Camera:
    return Camera(name, size, intr.K, intr.dist[: intr.n_dist] if not intr.fisheye else intr.dist[:4],
                  rodrigues_inv(T[:3, :3]), T[:3, 3], intr.fisheye)


# ============================================================================ drawing


def board_image(board: Board, px_per_square: int = 100, margin_px: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Printable picture of a board and where the board frame lands in it.

    Args:
        board: the board.
        px_per_square: side of a square, px.
        margin_px: white border, px (default: half a square).

    Returns:
        image (H, W) uint8 (white 255, dark 0), and A (3, 3): board-frame (x, y, 1) in m -> image
        pixel (u, v, 1) (pixel centres at integer coordinates).
    """
    _check_board(board)
    p = int(px_per_square)
    if p < 8:
        raise ValueError(f"px_per_square must be >= 8, got {px_per_square}")
    m = p // 2 if margin_px is None else int(margin_px)
    x0, y0, x1, y1 = board.outline_m()
    nx = int(round((x1 - x0) / board.square_m))
    ny = int(round((y1 - y0) / board.square_m))
    if isinstance(board, CharucoBoard):
        img = board.cv_board.generateImage((nx * p + 2 * m, ny * p + 2 * m), marginSize=m, borderBits=1)
    else:
        img = np.full((ny * p + 2 * m, nx * p + 2 * m), 255, np.uint8)
        for j in range(ny):
            for i in range(nx):
                if (i + j) % 2 == 0:
                    img[m + j * p : m + (j + 1) * p, m + i * p : m + (i + 1) * p] = 0
    k = p / board.square_m
    A = np.array([[k, 0.0, m - 0.5 - k * x0], [0.0, k, m - 0.5 - k * y0], [0.0, 0.0, 1.0]])
    return img, A


def write_board_image(board: Board, path: str | Path, px_per_square: int = 100, margin_px: int | None = None) -> Path:
    """Write a printable board picture (PNG/JPEG/... by extension), atomically (temp file, then rename).

    Print it at ``square_m`` per square: ``px_per_square`` px must map to ``board.square_m`` m.
    """
    path = Path(path)
    img, _ = board_image(board, px_per_square, margin_px)
    try:
        ok, buf = cv2.imencode(path.suffix, img) if path.suffix else (False, None)
    except cv2.error:
        ok = False
    if not ok:
        raise ValueError(f"cannot encode a board image as {path.suffix!r} (use .png, .jpg, .bmp or .tif)")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(buf.tobytes())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def render_board(
    board: Board,
    K: np.ndarray,
    dist: Sequence[float],
    rvec: Sequence[float],
    tvec: Sequence[float],
    size: tuple[int, int],
    fisheye: bool = False,
    background: int = 120,
    supersample: int = 2,
) -> np.ndarray:
    """Grey image (H, W) uint8 of ``board`` seen by a camera (synthetic views for tests and checks).

    Args:
        board: the board (its printed picture fills the board's outline plus half a square of white).
        K: (3, 3) intrinsics, px; dist: OpenCV distortion (pinhole 4/5 values, fisheye 4).
        rvec, tvec: (3,) board -> camera pose (``X_cam = R X_board + t``), rad and m.
        size: (width, height), px.
        fisheye: OpenCV fisheye model.
        background: grey level outside the board.
        supersample: rendering is done at this factor and area-averaged (anti-aliasing).

    A camera that sees the board from behind sees a blank (light grey) back.
    """
    w, h = int(size[0]), int(size[1])
    ss = max(1, int(supersample))
    K = np.asarray(K, dtype=np.float64)
    R, t = rodrigues(rvec), np.asarray(tvec, dtype=np.float64).reshape(3)
    # board point -> homogeneous normalised camera coordinates: x ~ [r1 r2 t] (X, Y, 1)
    Hn = np.column_stack([R[:, 0], R[:, 1], t])
    sq_px = _rendered_square_px(board, K, Hn)
    ppsq = int(np.clip(1.5 * sq_px * ss, 16, 256))
    img, A = board_image(board, ppsq)
    x, y = _ray_grid(K, np.asarray(dist, float).ravel(), (w, h), ss, bool(fisheye))  # (h*ss, w*ss) each
    Hi = np.linalg.inv(Hn)  # normalised ray (x, y, 1) -> board (X, Y, 1) up to scale
    qz = Hi[2, 0] * x + Hi[2, 1] * y + Hi[2, 2]
    valid = qz > 0  # the plane is in front of the camera along this ray
    with np.errstate(divide="ignore", invalid="ignore"):
        bx = (Hi[0, 0] * x + Hi[0, 1] * y + Hi[0, 2]) / qz
        by = (Hi[1, 0] * x + Hi[1, 1] * y + Hi[1, 2]) / qz
    mx = np.where(valid, A[0, 0] * bx + A[0, 2], -1e6).astype(np.float32)
    my = np.where(valid, A[1, 1] * by + A[1, 2], -1e6).astype(np.float32)
    front = float(R[:, 2] @ t) > 0  # camera centre on the printed side (board z points away from it)
    src = img if front else np.full_like(img, 200)
    out = cv2.remap(src, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=int(background))
    if ss > 1:
        out = cv2.resize(out, (w, h), interpolation=cv2.INTER_AREA)
    return out


_RAY_CACHE: dict = {}


def _ray_grid(K: np.ndarray, dist: np.ndarray, size: tuple[int, int], ss: int, fisheye: bool):
    """Normalised ideal coordinates (x, y), each (h*ss, w*ss), of the (supersampled) pixel centres of a
    camera's distorted image. Cached for the last few cameras (rendering many poses of one camera)."""
    key = (K.tobytes(), dist.tobytes(), size, ss, fisheye)
    if key not in _RAY_CACHE:
        w, h = size
        us = (np.arange(w * ss) + 0.5) / ss - 0.5
        vs = (np.arange(h * ss) + 0.5) / ss - 0.5
        uu, vv = np.meshgrid(us, vs)
        if not fisheye and not np.any(dist):
            y = (vv - K[1, 2]) / K[1, 1]
            x = (uu - K[0, 2] - K[0, 1] * y) / K[0, 0]
        else:
            n = _norm_points(np.stack([uu.ravel(), vv.ravel()], axis=1), _Intr(K, dist, fisheye, None, dist.size))
            x, y = n[:, 0].reshape(uu.shape), n[:, 1].reshape(uu.shape)
        while len(_RAY_CACHE) >= 3:
            _RAY_CACHE.pop(next(iter(_RAY_CACHE)))
        _RAY_CACHE[key] = (x, y)
    return _RAY_CACHE[key]


def _rendered_square_px(board: Board, K: np.ndarray, Hn: np.ndarray) -> float:
    """Largest projected side of a board square, px (to pick the texture resolution)."""
    x0, y0, x1, y1 = board.outline_m()
    s = board.square_m
    pts = np.array([[x, y, 1.0] for x in (x0, x1) for y in (y0, y1)])
    p = pts @ Hn.T
    if np.any(p[:, 2] <= 1e-9):
        return 64.0
    z = p[:, 2].min()
    return float(K[0, 0] * s / z)
