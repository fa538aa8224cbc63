"""Pose models by name: :class:`PoseModelSpec` / :func:`model_spec` name the pose model and the person
detector of a skeleton and a Pose2Sim mode (``lightweight`` / ``balanced`` / ``performance``, the
URLs of rtmlib's ``BodyWithFeet.MODE`` (HALPE_26), ``Body.MODE`` (COCO_17) and ``Wholebody.MODE``
(COCO_133)); :func:`resolve_model` maps a URL to the ``.onnx`` that rtmlib's downloader leaves in
its cache and never blocks when offline (:class:`ModelNotAvailableError`).
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from rtmlib import Body, BodyWithFeet, Wholebody

from rtkin.core.skeletons import get_skeleton

__all__ = ["PoseModelSpec", "model_spec", "ModelNotAvailableError", "rtmlib_cache_dir", "cached_model_path", "resolve_model"]


MODES: tuple[str, ...] = ("lightweight", "balanced", "performance")


# Skeleton -> rtmlib solution whose MODE table Pose2Sim uses for that skeleton.
_MODE_TABLES: dict[str, dict[str, dict[str, Any]]] = {
    "HALPE_26": BodyWithFeet.MODE,
    "COCO_17": Body.MODE,
    "COCO_133": Wholebody.MODE,
}


_DET_KINDS = ("yolox", "rtmdet")


@dataclass(frozen=True)
class PoseModelSpec:
    """Which pose model and person detector to run.

    Attributes:
        skeleton: ``"HALPE_26"``, ``"COCO_17"`` or ``"COCO_133"`` (the pose model's output order).
        pose_model: RTMPose ``.onnx`` path or rtmlib download URL.
        pose_input_size: pose model input ``(w, h)`` px (a static model shape takes precedence).
        det_model: person detector ``.onnx`` path or URL.
        det_input_size: detector input ``(w, h)`` px (square for every rtmlib detector).
        det_kind: ``"yolox"`` (raw pixels in) or ``"rtmdet"`` (normalised input).
    """

    skeleton: str
    pose_model: str
    pose_input_size: tuple[int, int]
    det_model: str
    det_input_size: tuple[int, int]
    det_kind: str = "yolox"

    def __post_init__(self) -> None:
        object.__setattr__(self, "skeleton", get_skeleton(self.skeleton).name)
        for name in ("pose_input_size", "det_input_size"):
            size = tuple(int(v) for v in getattr(self, name))
            if len(size) != 2 or min(size) <= 0:
                raise ValueError(f"{name} must be (w, h) > 0, got {getattr(self, name)!r}")
            object.__setattr__(self, name, size)
        if self.det_kind not in _DET_KINDS:
            raise ValueError(f"det_kind must be one of {_DET_KINDS}, got {self.det_kind!r}")
        object.__setattr__(self, "pose_model", str(self.pose_model))
        object.__setattr__(self, "det_model", str(self.det_model))

    @property
    def n_keypoints(self) -> int:
        """K, the number of keypoints of the skeleton."""
        return len(get_skeleton(self.skeleton).keypoints)


def _guess_det_kind(path_or_url: str) -> str:
    return "rtmdet" if "rtmdet" in os.path.basename(urlparse(path_or_url).path).lower() else "yolox"


def model_spec(
    skeleton: str = "HALPE_26",
    mode: str = "balanced",
    pose_path: str | Path | None = None,
    det_path: str | Path | None = None,
    *,
    det_kind: str | None = None,
) -> PoseModelSpec:
    """The models of a skeleton in a Pose2Sim mode, local paths overriding the download URLs.

    Args:
        skeleton: ``"HALPE_26"`` (rtmlib ``BodyWithFeet``), ``"COCO_17"`` (``Body``) or
            ``"COCO_133"`` (``Wholebody``); case and ``_`` ignored.
        mode: ``"lightweight"``, ``"balanced"`` or ``"performance"``.
        pose_path, det_path: local ``.onnx`` files replacing the mode's pose model / detector
            (the input sizes stay the mode's; a static model input shape overrides them anyway).
        det_kind: ``"yolox"`` or ``"rtmdet"``; default guessed from the detector's file name.
    """
    sk = get_skeleton(skeleton).name
    if sk not in _MODE_TABLES:
        raise ValueError(f"no rtmlib models for skeleton {sk!r}; known: {', '.join(_MODE_TABLES)}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    table = _MODE_TABLES[sk][mode]
    pose = str(pose_path) if pose_path is not None else table["pose"]
    det = str(det_path) if det_path is not None else table["det"]
    det_size = table["det_input_size"]  # rtmlib's (h, w); square for every MODE entry
    return PoseModelSpec(
        skeleton=sk,
        pose_model=pose,
        pose_input_size=tuple(table["pose_input_size"]),
        det_model=det,
        det_input_size=(det_size[1], det_size[0]),
        det_kind=det_kind or _guess_det_kind(det),
    )


class ModelNotAvailableError(FileNotFoundError):
    """A model is neither a local file nor in rtmlib's download cache, and cannot be downloaded."""


_HELP = (
    "rtkin needs the RTMPose weights: run once with network access (they download automatically), "
    "or pass --pose-model PATH, or try `rtkin demo --synthetic`"
)


def _is_url(s: str) -> bool:
    return urlparse(s).scheme.lower() in ("http", "https", "ftp")


def rtmlib_cache_dir() -> Path:
    """Where rtmlib's ``download_checkpoint`` keeps models: ``$TORCH_HOME/hub/checkpoints``
    (default ``${XDG_CACHE_HOME:-~/.cache}/rtmlib/hub/checkpoints``), evaluated now."""
    from rtmlib.tools.file import _get_rtmhub_dir

    return Path(_get_rtmhub_dir()) / "checkpoints"


def cached_model_path(url: str) -> Path:
    """The ``.onnx`` rtmlib leaves in its cache for ``url`` (may not exist).

    rtmlib downloads ``<name>.zip``, extracts the ``end2end.onnx`` inside and moves it to
    ``<cache>/<name up to its first dot>.onnx``.
    """
    filename = os.path.basename(urlparse(url).path)
    return rtmlib_cache_dir() / (filename.split(".")[0] + ".onnx")


def _cached(url: str) -> Path | None:
    onnx_path = cached_model_path(url)
    if onnx_path.is_file():
        return onnx_path
    raw = onnx_path.parent / os.path.basename(urlparse(url).path)  # a non-zip download kept as is
    if raw.is_file() and raw.suffix.lower() == ".onnx":
        return raw
    return None


def _probe_hosts(urls: Sequence[str], timeout_s: float) -> None:
    """Raise OSError unless one of the URLs' hosts accepts a TCP connection within ``timeout_s``.

    Run in a daemon thread so that a hanging DNS lookup (not covered by socket timeouts) cannot
    block us either.
    """
    errors: list[str] = []
    ok = threading.Event()

    def probe() -> None:
        for u in urls:
            p = urlparse(u)
            port = p.port or (443 if p.scheme == "https" else 80)
            try:
                with socket.create_connection((p.hostname, port), timeout=timeout_s):
                    ok.set()
                    return
            except OSError as e:
                errors.append(f"{p.hostname}: {e}")

    t = threading.Thread(target=probe, daemon=True, name="rtkin-model-probe")
    t.start()
    t.join(timeout_s * len(urls) + 1.0)
    if not ok.is_set():
        raise OSError("; ".join(errors) or f"no answer within {timeout_s:g} s")


def resolve_model(url_or_path: str | Path, allow_download: bool = False, *, timeout_s: float = 5.0) -> Path:
    """Local ``.onnx`` file of a model given as a path or an rtmlib download URL.

    Args:
        url_or_path: an existing file, or a URL (looked up in :func:`rtmlib_cache_dir`).
        allow_download: download a URL missing from the cache with rtmlib's ``download_checkpoint``
            (which also tries rtmlib's Hugging Face mirror). The hosts are probed first for at most
            ``timeout_s`` each, so an offline machine fails fast instead of hanging.

    Raises:
        FileNotFoundError: a local path that does not exist.
        ModelNotAvailableError: a URL not in the cache that may not or cannot be downloaded; the
            message names the URL, the cache directory and what to do.
    """
    s = str(url_or_path)
    if not _is_url(s):
        path = Path(s).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"model file not found: {path}")
        return path
    hit = _cached(s)
    if hit is not None:
        return hit
    where = f"{s}\nis not in rtmlib's model cache {rtmlib_cache_dir()} (expected {cached_model_path(s).name})"
    if not allow_download:
        raise ModelNotAvailableError(f"model not available offline: {where}.\n{_HELP}.")
    from rtmlib.tools import file as rtm_file

    mirror = getattr(rtm_file, "get_mirror_url", lambda u: None)(s)
    try:
        _probe_hosts([s] + ([mirror] if mirror else []), timeout_s)
        path = Path(rtm_file.download_checkpoint(s))
    except Exception as e:  # network, HTTP, zip errors: all mean "not available"
        raise ModelNotAvailableError(
            f"could not download the model: {where}; download failed ({type(e).__name__}: {e}).\n{_HELP}."
        ) from e
    if not path.is_file():
        raise ModelNotAvailableError(f"rtmlib's download of {s} left no file at {path}.\n{_HELP}.")
    return path
