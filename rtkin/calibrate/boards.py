"""Calibration boards (checkerboard, ChArUco), calibration images, and finding a board in an image.

Boards:

- :class:`Checkerboard` ``(cols, rows)`` inner corners, ``square_m`` squares. Corner ``k = r * cols + c``
  sits at ``(c, r, 0) * square_m`` in the board frame.
- :class:`CharucoBoard` ``(cols, rows)`` squares with ArUco markers; corner ids and positions are
  OpenCV's (origin at the board's outer corner).

Board frame (both boards): x along the printed rows (left to right as printed), y down the printed
columns, **z into the board**, i.e. away from a camera that sees the printed face (OpenCV's
convention). A board lying face up on the floor therefore has z pointing down; ``z_up=True`` in
:func:`~rtkin.calibrate.board_extrinsics.calibrate_extrinsics_board` turns the world by 180 deg about x
so that z is up.

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

The next steps: :mod:`rtkin.calibrate.intrinsics`, :mod:`rtkin.calibrate.board_extrinsics`;
drawing boards: :mod:`rtkin.calibrate.board_render`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Iterator, Sequence, Union

import cv2
import numpy as np

__all__ = [
    "Checkerboard",
    "CharucoBoard",
    "Board",
    "BoardDetection",
    "iter_images",
    "detect_board",
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg")

ImageLike = Union[np.ndarray, str, Path]


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
