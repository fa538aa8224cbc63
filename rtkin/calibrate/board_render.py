"""Drawing boards: :func:`render_board` draws a board seen by a known camera (tests, checks);
:func:`board_image` is a printable picture of a board and :func:`write_board_image` writes it (atomically).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from rtkin.calibrate.board_extrinsics import _Intr, _norm_points
from rtkin.calibrate.boards import Board, CharucoBoard, _check_board
from rtkin.core.calibration import rodrigues

__all__ = [
    "render_board",
    "board_image",
    "write_board_image",
]


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
