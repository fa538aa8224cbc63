"""Cameras and rigs: Pose2Sim ``Calib.toml`` I/O, Qualisys import, projection, undistortion.

Conventions (also in ``calib/README.md``):

- Extrinsics are world->camera, OpenCV style: ``X_cam = R @ X_world + t``; ``rotation`` in a
  Calib.toml is the Rodrigues vector of ``R``, ``translation`` is ``t`` in metres.
- Intrinsics ``K`` (3, 3) in pixels of the original, distorted image; distortion is OpenCV's
  pinhole model ``(k1, k2, p1, p2[, k3])``.
- 2D points are pixels of the distorted image. "Undistorted pixels" are the ideal pinhole
  image of the same camera (same ``K``, no distortion): ``K @ [R | t] @ X`` lands on them.
- A rig is an explicit, ordered tuple of uniquely named cameras; file order is rig order.
"""

from __future__ import annotations

import math
import re
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from numba import njit

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "CalibrationError",
    "calib_toml_text",
    "project_point",
    "stacked_pinholes",
    "parse_calib_toml",
    "Camera",
    "Rig",
    "load_calib",
    "read_calib_toml",
    "write_calib_toml",
    "read_qca",
    "rodrigues",
    "rodrigues_inv",
    "project_points",
    "undistort_points",
]

_NON_CAMERA_SECTIONS = ("metadata", "capture_volume", "charuco", "checkerboard")


class CalibrationError(ValueError):
    """A calibration file or camera definition is malformed or inconsistent."""


# ----------------------------------------------------------------------------- rotations


def rodrigues(rvec: Sequence[float]) -> np.ndarray:
    """Rotation vector (3,) [rad, axis * angle] -> rotation matrix (3, 3) (same as cv2.Rodrigues)."""
    r = np.asarray(rvec, dtype=np.float64).reshape(3)
    theta = float(np.linalg.norm(r))
    if theta < 1e-12:
        return np.eye(3)
    k = r / theta
    kx = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.eye(3) + math.sin(theta) * kx + (1.0 - math.cos(theta)) * (kx @ kx)


def rodrigues_inv(R: np.ndarray) -> np.ndarray:
    """Rotation matrix (3, 3) -> rotation vector (3,) [rad]; accurate near 0 and near pi."""
    R = np.asarray(R, dtype=np.float64)
    w = np.array([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]])
    s = np.linalg.norm(w) / 2.0  # sin(theta)
    c = (np.trace(R) - 1.0) / 2.0  # cos(theta)
    theta = math.atan2(s, c)
    if theta < 1e-12:
        return np.zeros(3)
    if s > 1e-6:
        return w / (2.0 * s) * theta
    # near pi: k k^T = (sym(R) - c I) / (1 - c); take the best-conditioned column, sign from w
    B = ((R + R.T) / 2.0 - c * np.eye(3)) / (1.0 - c)
    i = int(np.argmax(np.diag(B)))
    k = B[:, i] / math.sqrt(max(B[i, i], 1e-300))
    k /= np.linalg.norm(k)
    if k @ w < 0:
        k = -k
    return k * theta


# ----------------------------------------------------------------------------- kernels


@njit(cache=True)
def _project_kernel(X, R, t, K, dist, out):  # pragma: no cover - compiled
    """X (M, 3) world m; R (3, 3); t (3,); K (3, 3); dist (5,) -> out (M, 2) distorted px."""
    k1, k2, p1, p2, k3 = dist[0], dist[1], dist[2], dist[3], dist[4]
    for m in range(X.shape[0]):
        xc = R[0, 0] * X[m, 0] + R[0, 1] * X[m, 1] + R[0, 2] * X[m, 2] + t[0]
        yc = R[1, 0] * X[m, 0] + R[1, 1] * X[m, 1] + R[1, 2] * X[m, 2] + t[1]
        zc = R[2, 0] * X[m, 0] + R[2, 1] * X[m, 1] + R[2, 2] * X[m, 2] + t[2]
        x = xc / zc
        y = yc / zc
        r2 = x * x + y * y
        radial = 1.0 + r2 * (k1 + r2 * (k2 + r2 * k3))
        xd = x * radial + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x)
        yd = y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y
        out[m, 0] = K[0, 0] * xd + K[0, 1] * yd + K[0, 2]
        out[m, 1] = K[1, 1] * yd + K[1, 2]


@njit(cache=True)
def project_point(R, t, K, dist, X, Y, Z):  # pragma: no cover - compiled
    """One world point (m) -> distorted px ``(u, v)`` of a pinhole camera (R (3, 3), t (3,), K
    (3, 3), dist (5,)); NaN when it is not finite or not in front of the camera. For Numba kernels
    that project per point (the same model as :meth:`Camera.project`)."""
    if not (np.isfinite(X) and np.isfinite(Y) and np.isfinite(Z)):
        return np.nan, np.nan
    zc = R[2, 0] * X + R[2, 1] * Y + R[2, 2] * Z + t[2]
    if not zc > 0:
        return np.nan, np.nan
    x = (R[0, 0] * X + R[0, 1] * Y + R[0, 2] * Z + t[0]) / zc
    y = (R[1, 0] * X + R[1, 1] * Y + R[1, 2] * Z + t[1]) / zc
    k1, k2, p1, p2, k3 = dist[0], dist[1], dist[2], dist[3], dist[4]
    r2 = x * x + y * y
    radial = 1.0 + r2 * (k1 + r2 * (k2 + r2 * k3))
    xd = x * radial + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x)
    yd = y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y
    return K[0, 0] * xd + K[0, 1] * yd + K[0, 2], K[1, 1] * yd + K[1, 2]


def stacked_pinholes(rig: "Rig") -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(R (C, 3, 3), t (C, 3), K (C, 3, 3), dist (C, 5))`` of a rig, contiguous float64, for
    kernels that call :func:`project_point`."""
    for c in rig.cameras:
        c._check_pinhole()
    return tuple(np.ascontiguousarray([getattr(c, a) for c in rig.cameras], dtype=np.float64)
                 for a in ("R", "tvec", "K", "dist"))


@njit(cache=True)
def _undistort_kernel(uv, K, dist, n_iter, out):  # pragma: no cover - compiled
    """uv (M, 2) distorted px -> out (M, 2) undistorted px (same K). OpenCV's fixed-point scheme."""
    k1, k2, p1, p2, k3 = dist[0], dist[1], dist[2], dist[3], dist[4]
    fx, fy, cx, cy, s = K[0, 0], K[1, 1], K[0, 2], K[1, 2], K[0, 1]
    for m in range(uv.shape[0]):
        y0 = (uv[m, 1] - cy) / fy
        x0 = (uv[m, 0] - cx - s * y0) / fx
        x = x0
        y = y0
        for _ in range(n_iter):
            r2 = x * x + y * y
            icdist = 1.0 / (1.0 + r2 * (k1 + r2 * (k2 + r2 * k3)))
            dx = 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x)
            dy = p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y
            xn = (x0 - dx) * icdist
            yn = (y0 - dy) * icdist
            step = abs(xn - x) + abs(yn - y)
            x = xn
            y = yn
            if step < 1e-12:  # normalised units: far below 1e-6 px
                break
        out[m, 0] = fx * x + s * y + cx
        out[m, 1] = fy * y + cy


UNDISTORT_ITERATIONS = 30
"""Maximum fixed-point iterations of the undistortion (OpenCV's default is a fixed 5); it stops
early once a step moves the point by less than 1e-12 focal lengths."""


# ----------------------------------------------------------------------------- camera


def _as_dist5(dist: Sequence[float]) -> np.ndarray:
    d = np.asarray(dist, dtype=np.float64).ravel()
    if d.size not in (4, 5):
        raise CalibrationError(
            f"distortions must have 4 (k1, k2, p1, p2) or 5 (+ k3) values, got {d.size}"
        )
    return np.concatenate([d, np.zeros(5 - d.size)])


@dataclass(frozen=True, eq=False)
class Camera:
    """One calibrated pinhole camera.

    Attributes:
        name: unique camera name (e.g. ``"cam01"``).
        size: image (width, height) in px.
        K: (3, 3) intrinsic matrix, px.
        dist: (5,) OpenCV distortion ``k1, k2, p1, p2, k3`` (k3 = 0 when the file gives 4).
        rvec: (3,) Rodrigues vector of the world->camera rotation, rad.
        tvec: (3,) world->camera translation, m.
        fisheye: True for OpenCV's fisheye model (read and written, not projected yet).
    """

    name: str
    size: tuple[int, int]
    K: np.ndarray
    dist: np.ndarray
    rvec: np.ndarray
    tvec: np.ndarray
    fisheye: bool = False
    n_dist: int = 4  # how many distortion values the source gave (4 or 5), kept for writing
    R: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise CalibrationError(f"camera name must be a non-empty string, got {self.name!r}")
        K = np.array(self.K, dtype=np.float64)
        if K.shape != (3, 3) or not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
            raise CalibrationError(f"{self.name}: matrix must be a finite 3x3 with fx, fy > 0")
        if not np.allclose(K[2], [0.0, 0.0, 1.0]) or K[1, 0] != 0.0:
            raise CalibrationError(f"{self.name}: matrix must be [[fx, s, cx], [0, fy, cy], [0, 0, 1]]")
        raw_dist = np.asarray(self.dist, dtype=np.float64).ravel()
        dist = _as_dist5(raw_dist)
        rvec = np.array(self.rvec, dtype=np.float64).reshape(-1)
        tvec = np.array(self.tvec, dtype=np.float64).reshape(-1)
        if rvec.shape != (3,) or tvec.shape != (3,):
            raise CalibrationError(f"{self.name}: rotation and translation must have 3 values each")
        if not (np.all(np.isfinite(dist)) and np.all(np.isfinite(rvec)) and np.all(np.isfinite(tvec))):
            raise CalibrationError(f"{self.name}: non-finite distortion, rotation or translation")
        w, h = (int(round(float(v))) for v in self.size)
        if w <= 0 or h <= 0:
            raise CalibrationError(f"{self.name}: image size must be positive, got {self.size}")
        for name, arr in (("K", K), ("dist", dist), ("rvec", rvec), ("tvec", tvec)):
            arr.flags.writeable = False
            object.__setattr__(self, name, arr)
        R = rodrigues(rvec)
        R.flags.writeable = False
        object.__setattr__(self, "R", R)
        object.__setattr__(self, "size", (w, h))
        object.__setattr__(self, "n_dist", 5 if raw_dist.size == 5 else 4)

    # -- derived geometry
    @property
    def center(self) -> np.ndarray:
        """(3,) camera centre in world coordinates, m."""
        return -self.R.T @ self.tvec

    @property
    def view_direction(self) -> np.ndarray:
        """(3,) unit optical axis (camera +z) in world coordinates."""
        return self.R[2].copy()

    @property
    def P(self) -> np.ndarray:
        """(3, 4) projection matrix ``K [R | t]`` onto undistorted pixels."""
        return self.K @ np.hstack([self.R, self.tvec[:, None]])

    @property
    def focal_px(self) -> float:
        """Mean focal length, px."""
        return float((self.K[0, 0] + self.K[1, 1]) / 2.0)

    # -- projection
    def project(self, X: np.ndarray) -> np.ndarray:
        """World points (..., 3) m -> distorted pixels (..., 2). Points behind the camera are NaN."""
        self._check_pinhole()
        X = np.asarray(X, dtype=np.float64)
        if X.shape[-1] != 3:
            raise ValueError(f"project expects (..., 3) points, got shape {X.shape}")
        flat = np.ascontiguousarray(X.reshape(-1, 3))
        out = np.empty((flat.shape[0], 2))
        _project_kernel(flat, np.ascontiguousarray(self.R), self.tvec, self.K, self.dist, out)
        depth = flat @ self.R[2] + self.tvec[2]
        out[~(depth > 0)] = np.nan
        return out.reshape(X.shape[:-1] + (2,))

    def undistort(self, uv: np.ndarray) -> np.ndarray:
        """Distorted pixels (..., 2) -> undistorted pixels (..., 2) of the same K."""
        self._check_pinhole()
        uv = np.asarray(uv, dtype=np.float64)
        if uv.shape[-1] != 2:
            raise ValueError(f"undistort expects (..., 2) pixels, got shape {uv.shape}")
        flat = np.ascontiguousarray(uv.reshape(-1, 2))
        out = np.empty_like(flat)
        _undistort_kernel(flat, self.K, self.dist, UNDISTORT_ITERATIONS, out)
        return out.reshape(uv.shape)

    def _check_pinhole(self) -> None:
        if self.fisheye:
            raise CalibrationError(f"{self.name}: fisheye projection is not supported yet")

    def with_size(self, size: tuple[int, int]) -> "Camera":
        """Same camera with a different declared image size (intrinsics unchanged)."""
        return Camera(self.name, size, self.K, self.dist[: self.n_dist], self.rvec, self.tvec, self.fisheye)

    def with_name(self, name: str) -> "Camera":
        return Camera(name, self.size, self.K, self.dist[: self.n_dist], self.rvec, self.tvec, self.fisheye)


# ----------------------------------------------------------------------------- rig


@dataclass(frozen=True, eq=False)
class Rig:
    """An ordered set of uniquely named cameras. Order is explicit and meaningful (rig order)."""

    cameras: tuple[Camera, ...]

    def __post_init__(self) -> None:
        cams = tuple(self.cameras)
        if not cams:
            raise CalibrationError("a rig needs at least one camera")
        names = [c.name for c in cams]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise CalibrationError(f"duplicate camera names in rig: {dupes}")
        object.__setattr__(self, "cameras", cams)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.cameras)

    def __len__(self) -> int:
        return len(self.cameras)

    def __iter__(self):
        return iter(self.cameras)

    def __getitem__(self, key: int | str) -> Camera:
        if isinstance(key, str):
            for cam in self.cameras:
                if cam.name == key:
                    return cam
            raise KeyError(f"no camera named {key!r} in rig {list(self.names)}")
        return self.cameras[key]

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"no camera named {name!r} in rig {list(self.names)}") from None

    def subset(self, names: Iterable[str]) -> "Rig":
        """Rig of the named cameras, in the order given."""
        return Rig(tuple(self[n] for n in names))

    def projection_matrices(self) -> np.ndarray:
        """(C, 3, 4) projection matrices onto undistorted pixels, rig order."""
        return np.stack([c.P for c in self.cameras])

    def project(self, X: np.ndarray) -> np.ndarray:
        """World points (..., 3) m -> distorted pixels (C, ..., 2) in every camera, rig order."""
        return np.stack([c.project(X) for c in self.cameras])

    def fundamental(self, a: int | str, b: int | str) -> np.ndarray:
        """(3, 3) fundamental matrix F with ``x_b^T F x_a = 0`` for undistorted homogeneous pixels."""
        ca, cb = self[a], self[b]
        R = cb.R @ ca.R.T
        t = cb.tvec - R @ ca.tvec
        tx = np.array([[0.0, -t[2], t[1]], [t[2], 0.0, -t[0]], [-t[1], t[0], 0.0]])
        F = np.linalg.inv(cb.K).T @ tx @ R @ np.linalg.inv(ca.K)
        return F / np.linalg.norm(F)

    def fundamentals(self) -> np.ndarray:
        """(C, C, 3, 3) all pairwise fundamental matrices; ``F[a, b]`` maps view a to lines in b."""
        C = len(self)
        F = np.zeros((C, C, 3, 3))
        for a in range(C):
            for b in range(C):
                if a != b:
                    F[a, b] = self.fundamental(a, b)
        return F

    def describe(self) -> list[dict]:
        """Per camera: name, size px, focal px, centre m (world), viewing direction (unit)."""
        return [
            {
                "name": c.name,
                "size": c.size,
                "focal_px": c.focal_px,
                "center_m": c.center,
                "view_dir": c.view_direction,
            }
            for c in self.cameras
        ]


# ----------------------------------------------------------------------------- Calib.toml


def read_calib_toml(path: str | Path) -> Rig:
    """Read a Pose2Sim / anipose / FreeMoCap ``Calib.toml``. Sections keep file order.

    A camera section is any table other than ``metadata``, ``capture_volume``, ``charuco``,
    ``checkerboard``; its ``name`` key names the camera (the section key when absent).
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise CalibrationError(f"{path}: not a valid TOML file: {e}") from e
    return parse_calib_toml(text, path)


def parse_calib_toml(text: str, where: str | Path = "<calibration>") -> Rig:
    """A ``Calib.toml``'s text (e.g. stored in a recording's header) -> Rig; ``where`` names it in
    errors."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise CalibrationError(f"{where}: not a valid TOML file: {e}") from e
    path = where
    cams = []
    for key, sec in data.items():
        if key in _NON_CAMERA_SECTIONS or not isinstance(sec, dict):
            continue
        cams.append(_camera_from_section(key, sec, path))
    if not cams:
        raise CalibrationError(f"{path}: no camera sections found")
    return Rig(tuple(cams))


_CAMERA_KEYS = {"name", "size", "matrix", "distortions", "rotation", "translation", "fisheye"}


def _camera_from_section(key: str, sec: dict, path: Path) -> Camera:
    missing = [k for k in ("size", "matrix", "distortions", "rotation", "translation") if k not in sec]
    if missing:
        raise CalibrationError(f"{path}: section [{key}] lacks {missing}")
    try:
        return Camera(
            name=str(sec.get("name", key)),
            size=tuple(sec["size"]),
            K=np.array(sec["matrix"], dtype=np.float64),
            dist=np.array(sec["distortions"], dtype=np.float64),
            rvec=np.array(sec["rotation"], dtype=np.float64),
            tvec=np.array(sec["translation"], dtype=np.float64),
            fisheye=bool(sec.get("fisheye", False)),
        )
    except (TypeError, ValueError) as e:
        raise CalibrationError(f"{path}: section [{key}]: {e}") from e


def _fmt(v: float) -> str:
    return repr(float(v))


def _fmt_list(vals: Iterable[float]) -> str:
    return "[ " + ", ".join(_fmt(v) for v in vals) + "]"


def write_calib_toml(rig: Rig, path: str | Path, error_px: float = 0.0) -> None:
    """Write ``rig`` as a Pose2Sim ``Calib.toml`` (section per camera, rig order; floats exact)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(calib_toml_text(rig, error_px), encoding="utf-8")
    tmp.replace(path)


def calib_toml_text(rig: Rig, error_px: float = 0.0) -> str:
    """``rig`` as the text of a Pose2Sim ``Calib.toml`` (what :func:`write_calib_toml` writes)."""
    lines = []
    for c in rig.cameras:
        K = c.K
        lines += [
            f"[{_toml_key(c.name)}]",
            f'name = "{c.name}"',
            f"size = [ {_fmt(c.size[0])}, {_fmt(c.size[1])}]",
            "matrix = [ " + ", ".join(_fmt_list(row) for row in K) + "]",
            f"distortions = {_fmt_list(c.dist[: c.n_dist])}",
            f"rotation = {_fmt_list(c.rvec)}",
            f"translation = {_fmt_list(c.tvec)}",
            f"fisheye = {'true' if c.fisheye else 'false'}",
            "",
        ]
    lines += ["[metadata]", "adjusted = false", f"error = {_fmt(error_px)}", ""]
    return "\n".join(lines)


def _toml_key(name: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9_-]+", name):
        return name
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


# ----------------------------------------------------------------------------- Qualisys


def read_qca(path: str | Path, binning_factor: float = 1.0) -> Rig:
    """Import a Qualisys ``.qca.txt`` calibration (as Pose2Sim's ``calib_qca_fun`` does).

    Only video cameras are kept (``model`` containing "video" or "none"), in file order.
    Qualisys stores camera->world poses in mm with an image-down y axis flipped relative to
    OpenCV; this returns world->camera OpenCV extrinsics in m, and intrinsics in px of the
    ``fov_video`` window (sub-pixel units of 1/64 px).
    """
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise CalibrationError(f"{path}: not a valid Qualisys XML calibration: {e}") from e
    cams = []
    for tag in root.findall("cameras/camera"):
        model = tag.attrib.get("model", "").lower()
        if "video" not in model and "none" not in model:
            continue
        try:
            cams.append(_qca_camera(tag, binning_factor))
        except (KeyError, TypeError, ValueError) as e:
            raise CalibrationError(f"{path}: camera {tag.attrib.get('serial')!r}: {e}") from e
    if not cams:
        raise CalibrationError(f"{path}: no video cameras found")
    return Rig(tuple(cams))


def _qca_camera(tag: ET.Element, binning: float) -> Camera:
    fov = tag.find("fov_video")
    intr = tag.find("intrinsic")
    tr = tag.find("transform")
    if fov is None or intr is None or tr is None:
        raise CalibrationError("missing fov_video, intrinsic or transform element")
    a = {k: float(v) for k, v in fov.attrib.items()}
    w = (a["right"] - a["left"] + 1) / binning
    h = (a["bottom"] - a["top"] + 1) / binning
    g = {k: float(intr.attrib[k]) for k in intr.attrib if k not in ()}
    sub = 64.0 * binning
    dist = [g["radialDistortion1"], g["radialDistortion2"], g["tangentalDistortion1"], g["tangentalDistortion2"]]
    dist = [d / sub for d in dist]
    fu, fv = g["focalLengthU"] / sub, g["focalLengthV"] / sub
    cu = g["centerPointU"] / sub - a["left"]
    cv = g["centerPointV"] / sub - a["top"]
    K = np.array([[fu, 0.0, cu], [0.0, fv, cv], [0.0, 0.0, 1.0]])
    t = {k: float(v) for k, v in tr.attrib.items()}
    # Qualisys stores the camera orientation column by column: r_ij read row-wise is already
    # the world->camera rotation (Pose2Sim transposes twice), and (x, y, z) is the centre in mm.
    R_wc = np.array([[t[f"r{i}{j}"] for j in (1, 2, 3)] for i in (1, 2, 3)])
    pos = np.array([t["x"], t["y"], t["z"]]) / 1000.0
    t_wc = -R_wc @ pos
    flip = np.diag([1.0, -1.0, -1.0])  # rotation of pi about the camera x axis
    R = flip @ R_wc
    tvec = flip @ t_wc
    return Camera(str(tag.attrib["serial"]), (w, h), K, np.array(dist), rodrigues_inv(R), tvec)


# ----------------------------------------------------------------------------- helpers


def load_calib(path: str | Path) -> Rig:
    """Load a rig from ``Calib.toml`` or Qualisys ``.qca.txt`` (by extension)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"calibration file not found: {path}")
    name = path.name.lower()
    if name.endswith(".qca.txt") or name.endswith(".qca"):
        return read_qca(path)
    if name.endswith(".toml"):
        return read_calib_toml(path)
    raise CalibrationError(f"{path}: unknown calibration format (expected .toml or .qca.txt)")


def project_points(rig: Rig, X: np.ndarray) -> np.ndarray:
    """World points (..., 3) m -> distorted pixels (C, ..., 2) in every camera of ``rig``."""
    return rig.project(X)


def undistort_points(rig: Rig, uv: np.ndarray) -> np.ndarray:
    """Distorted pixels (C, ..., 2), rig order -> undistorted pixels (C, ..., 2)."""
    uv = np.asarray(uv, dtype=np.float64)
    if uv.shape[0] != len(rig):
        raise ValueError(f"expected {len(rig)} cameras on axis 0, got shape {uv.shape}")
    return np.stack([cam.undistort(uv[i]) for i, cam in enumerate(rig.cameras)])
