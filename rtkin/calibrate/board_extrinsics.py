"""Extrinsics of several cameras from a board they see at the same time(s), intrinsics known.

- :func:`solve_extrinsics_board` -> :class:`BoardExtrinsicsResult` (PnP per camera and shot, joint
  robust least squares, per-camera RMS); :func:`calibrate_extrinsics_board` returns its rig.
  Board frame, symmetric checkerboards and units: :mod:`rtkin.calibrate.boards`.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import cv2
import numpy as np
from scipy.optimize import least_squares

from rtkin.calibrate.boards import Board, BoardDetection, Checkerboard, _check_board, _read_gray, _to_gray, detect_board
from rtkin.calibrate.intrinsics import IntrinsicsResult, _project_cv
from rtkin.core.calibration import CalibrationError, Camera, Rig, rodrigues, rodrigues_inv

__all__ = [
    "ExtrinsicsSettings",
    "BoardExtrinsicsResult",
    "BoardNotFoundError",
    "solve_extrinsics_board",
    "calibrate_extrinsics_board",
]


# ============================================================================ errors


class BoardNotFoundError(CalibrationError):
    """The board was not found in a camera's image(s); ``cameras`` names them (rig order)."""

    def __init__(self, message: str, cameras: Sequence[str]):
        super().__init__(message)
        self.cameras = tuple(cameras)


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
        board: the board; a checkerboard must not be symmetric (see :mod:`rtkin.calibrate.boards`).
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
