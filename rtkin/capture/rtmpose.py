"""2D pose estimation on one image: rtmlib's pre/post-processing, onnxruntime sessions of our own.

Three parts:

- **Execution providers.** :func:`select_providers` picks, from what onnxruntime offers, TensorRT
  (FP16, engine + timing cache on disk so a restart does not rebuild engines) -> CUDA ->
  OpenVINO (CPU) -> CPU, CPU always last as the fallback; :func:`create_session` builds an
  ``InferenceSession`` from that list (dropping a provider that fails to initialise) and
  :func:`session_provider` says which provider the session really uses.
- **Models.** :class:`PoseModelSpec` / :func:`model_spec` name the pose model and the person
  detector of a skeleton and a Pose2Sim mode (``lightweight`` / ``balanced`` / ``performance``,
  the URLs of rtmlib's ``BodyWithFeet.MODE`` (HALPE_26), ``Body.MODE`` (COCO_17) and
  ``Wholebody.MODE`` (COCO_133)); :func:`resolve_model` maps a URL to the ``.onnx`` that rtmlib's
  downloader leaves in its cache and never blocks when offline (:class:`ModelNotAvailableError`).
- **PoseEstimator**, a stage: BGR image -> keypoints ``(P, K, 2)`` px and scores ``(P, K)``. The
  person detector runs every ``det_frequency`` frames (Pose2Sim's ``det_frequency``); in between,
  each person's box is the box of their previous keypoints (rtmlib's ``PoseTracker`` idea). The
  rtmlib objects (``RTMPose``, ``YOLOX`` / ``RTMDet``) are built around our sessions, without
  rtmlib's constructor (which would first open a CPU session of its own and print). Person crops
  use rtmlib's ``bbox_xyxy2cs`` + ``top_down_affine`` but are normalised in float32 into reused
  buffers (:meth:`PoseEstimator.pose_inputs`): ``RTMPose.preprocess`` allocates float64 temporaries
  that cost ~2 ms per person in page faults inside a frame loop; the tests check both agree.

rtmlib facts this module relies on (rtmlib 0.0.16, checked by ``tests/test_pose.py``):

- ``BaseTool.__init__`` sets ``session``, ``onnx_model``, ``model_input_size``, ``mean``, ``std``,
  ``backend``, ``device``; ``BaseTool.inference(img)`` needs only ``backend == "onnxruntime"``,
  ``session``: it feeds ``img (H, W, 3)`` as float32 ``(1, 3, H, W)`` to the first input and
  returns every output, in order.
- ``RTMPose.preprocess(img, bbox_xyxy)`` -> ``(crop (h, w, 3) float64 normalised, center (2,),
  scale (2,))``: the box is padded by 1.25, widened to the model aspect ratio ``w / h`` and warped
  to ``model_input_size = (w, h)``; (x - mean) / std with mean (123.675, 116.28, 103.53), std
  (58.395, 57.12, 57.375) on the BGR crop as is (rtmlib does not swap channels).
  ``RTMPose.postprocess([simcc_x (1, K, 2w), simcc_y (1, K, 2h)], center, scale)`` -> keypoints
  ``(1, K, 2)`` px = argmax / 2 / (w, h) * scale + center - scale / 2, scores ``(1, K)`` = mean of
  the x and y maxima (``get_simcc_maximum``).
- ``YOLOX.preprocess`` resizes by ``ratio = min(S_h / H, S_w / W)`` into the top-left corner of a
  114-grey ``model_input_size = (S_h, S_w)`` canvas, uint8, no normalisation (``RTMDet`` then
  normalises with its own mean/std). The downloaded detectors are mmdeploy "end2end" exports:
  ``dets (1, N, 5)`` = x1, y1, x2, y2, score in canvas pixels (NMS inside) and ``labels (1, N)``;
  rtmlib reads ``dets`` only, and ``YOLOX`` keeps score > 0.3 whatever ``score_thr`` says, so we
  threshold those ourselves. A raw YOLOX head ``(1, A, 5 + classes)`` is grid-decoded and NMS'd by
  rtmlib's ``postprocess``.
"""

from __future__ import annotations

import inspect
import logging
import os
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import cv2
import numpy as np
import onnxruntime as ort
from rtmlib import YOLOX, Body, BodyWithFeet, RTMDet, RTMPose, Wholebody
from rtmlib.tools.pose_estimation.post_processings import get_simcc_maximum
from rtmlib.tools.pose_estimation.pre_processings import bbox_xyxy2cs, top_down_affine
from rtmlib.tools.solution.pose_tracker import pose_to_bbox

from rtkin.core.skeletons import get_skeleton

__all__ = [
    "PROVIDERS",
    "DEFAULT_PROVIDER_ORDER",
    "MODES",
    "ModelNotAvailableError",
    "PoseModelSpec",
    "PoseEstimator",
    "select_providers",
    "create_session",
    "session_provider",
    "default_engine_cache_dir",
    "model_spec",
    "resolve_model",
    "rtmlib_cache_dir",
    "cached_model_path",
    "decode_simcc",
]

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- execution providers

#: Short name -> onnxruntime provider name, in the default order of preference.
PROVIDERS: dict[str, str] = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
DEFAULT_PROVIDER_ORDER: tuple[str, ...] = tuple(PROVIDERS.values())
_CPU = PROVIDERS["cpu"]


def default_engine_cache_dir() -> Path:
    """``$RTKIN_CACHE_DIR/trt_engines`` or ``~/.cache/rtkin/trt_engines`` (not created here)."""
    base = os.environ.get("RTKIN_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "rtkin")
    return Path(base) / "trt_engines"


def _provider_full_name(name: str) -> str:
    key = name.strip().lower()
    for short, full in PROVIDERS.items():
        if key in (short, full.lower()):
            return full
    known = ", ".join(f"{s!r} ({f})" for s, f in PROVIDERS.items())
    raise ValueError(f"unknown execution provider {name!r}; known: {known}")


def _provider_options(name: str, engine_cache_dir: Path, device_id: int) -> dict[str, Any]:
    # Option names from the onnxruntime docs:
    # - TensorRT: https://onnxruntime.ai/docs/execution-providers/TensorRT-ExecutionProvider.html
    #   ("Configurations": device_id, trt_fp16_enable, trt_engine_cache_enable,
    #   trt_engine_cache_path, trt_timing_cache_enable, trt_timing_cache_path; the timing cache
    #   options came with microsoft/onnxruntime#14767 and #17865, ORT >= 1.15 / 1.17). Engines are
    #   keyed by a hash of the model graph, so one directory serves every model.
    # - CUDA: https://onnxruntime.ai/docs/execution-providers/CUDA-ExecutionProvider.html (device_id)
    # - OpenVINO: https://onnxruntime.ai/docs/execution-providers/OpenVINO-ExecutionProvider.html
    #   (device_type "CPU" | "GPU" | "NPU" ...)
    # onnxruntime's Python layer turns every option value into str (True -> "True").
    if name == PROVIDERS["tensorrt"]:
        engine_cache_dir.mkdir(parents=True, exist_ok=True)
        return {
            "device_id": device_id,
            "trt_fp16_enable": True,
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(engine_cache_dir),
            "trt_timing_cache_enable": True,
            "trt_timing_cache_path": str(engine_cache_dir),
        }
    if name == PROVIDERS["cuda"]:
        return {"device_id": device_id}
    if name == PROVIDERS["openvino"]:
        return {"device_type": "CPU"}
    return {}


def select_providers(
    available: Sequence[str],
    preference: Sequence[str] | str | None = None,
    engine_cache_dir: str | Path | None = None,
    device_id: int = 0,
) -> list[tuple[str, dict[str, Any]]]:
    """Execution providers to ask onnxruntime for, best first, each with its options.

    Args:
        available: what this onnxruntime offers (``onnxruntime.get_available_providers()``).
        preference: provider names to try, in order (short ``"tensorrt"``, ``"cuda"``,
            ``"openvino"``, ``"cpu"`` or full ``"CUDAExecutionProvider"``, any case); default
            TensorRT -> CUDA -> OpenVINO -> CPU. A preferred provider that is not available is
            skipped with a warning.
        engine_cache_dir: TensorRT engine and timing cache directory (created when TensorRT is
            selected); default :func:`default_engine_cache_dir`.
        device_id: GPU index for TensorRT and CUDA.

    Returns:
        ``[(provider_name, options), ...]``, always ending with ``("CPUExecutionProvider", {})``.

    Raises:
        ValueError: an unknown provider name in ``preference`` (the message lists known names).
    """
    if isinstance(preference, str):
        preference = [preference]
    wanted = DEFAULT_PROVIDER_ORDER if preference is None else [_provider_full_name(p) for p in preference]
    offered = set(available)
    chosen: list[str] = []
    for name in wanted:
        if name in chosen:
            continue
        if name != _CPU and name not in offered:
            if preference is not None:
                log.warning("execution provider %s is not available here (onnxruntime offers %s); skipped",
                            name, ", ".join(available) or "nothing")
            continue
        chosen.append(name)
    if _CPU not in chosen:
        chosen.append(_CPU)
    cache = Path(engine_cache_dir).expanduser() if engine_cache_dir is not None else default_engine_cache_dir()
    return [(name, _provider_options(name, cache, int(device_id))) for name in chosen]


def _normalise_providers(providers: Sequence[str | tuple[str, dict]]) -> list[tuple[str, dict]]:
    out = []
    for p in providers:
        if isinstance(p, str):
            out.append((p, {}))
        else:
            name, opts = p
            out.append((str(name), dict(opts)))
    if not out:
        raise ValueError("providers must not be empty")
    return out


def create_session(
    model_path: str | Path,
    providers: Sequence[str | tuple[str, dict]],
    intra_op_threads: int | None = None,
) -> ort.InferenceSession:
    """An onnxruntime session (graph optimisation ALL, log severity warning) on ``providers``.

    ``providers`` is what :func:`select_providers` returns (names alone are accepted too). If the
    first provider fails to initialise (e.g. TensorRT libraries missing), it is dropped with a
    warning and the next is tried; onnxruntime itself silently falls back to CPU for a provider
    it does not have, so check :func:`session_provider`.

    Args:
        model_path: an existing ``.onnx`` file.
        providers: ``[(name, options), ...]`` best first.
        intra_op_threads: CPU threads per operator (onnxruntime default: all cores).
    """
    path = Path(model_path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {path}")
    provs = _normalise_providers(providers)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 2  # 0 verbose, 1 info, 2 warning, 3 error
    if intra_op_threads:
        so.intra_op_num_threads = int(intra_op_threads)
    while True:
        try:
            return ort.InferenceSession(str(path), sess_options=so, providers=provs)
        except Exception as e:  # onnxruntime raises its own Fail / RuntimeException types
            if len(provs) == 1:
                raise
            log.warning("could not create a session on %s (%s: %s); trying %s",
                        provs[0][0], type(e).__name__, e, provs[1][0])
            provs = provs[1:]


def session_provider(session: ort.InferenceSession) -> str:
    """The provider a session actually runs on (its first one), e.g. ``"CPUExecutionProvider"``."""
    return session.get_providers()[0]


# --------------------------------------------------------------------------- models

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


# --------------------------------------------------------------------------- SimCC


def decode_simcc(
    simcc_x: np.ndarray, simcc_y: np.ndarray, split_ratio: float = 2.0
) -> tuple[np.ndarray, np.ndarray]:
    """Keypoint locations and scores from SimCC vectors, as rtmlib's ``get_simcc_maximum``.

    Args:
        simcc_x: ``(N, K, Wx)`` x-axis classification vectors (``Wx = split_ratio * w``).
        simcc_y: ``(N, K, Wy)`` y-axis vectors.
        split_ratio: SimCC bins per model-input pixel (2 for every RTMPose model).

    Returns:
        ``locs (N, K, 2)`` float32 = argmax bins / split_ratio, in model-input pixels ``(u, v)``;
        ``scores (N, K)`` = mean of the x and y maxima. Where that score is <= 0, rtmlib sets the
        location to -1 bins (here ``-1 / split_ratio``).
    """
    sx = np.asarray(simcc_x)
    sy = np.asarray(simcc_y)
    if sx.ndim != 3 or sy.ndim != 3 or sx.shape[:2] != sy.shape[:2]:
        raise ValueError(f"simcc_x (N, K, Wx) and simcc_y (N, K, Wy) must agree, got {sx.shape}, {sy.shape}")
    locs, scores = get_simcc_maximum(sx, sy)
    return (locs / split_ratio).astype(np.float32), scores.astype(np.float32)


# --------------------------------------------------------------------------- estimator

_TIMING_KEYS = (
    "det_preprocess_s", "det_inference_s", "det_postprocess_s",
    "pose_preprocess_s", "pose_inference_s", "pose_postprocess_s",
    "tracking_s", "preprocess_s", "inference_s", "postprocess_s", "total_s",
)  # fmt: skip
_DUPLICATE_IOU = 0.8  # tracked boxes overlapping more than this follow the same person


def _init_default(cls: type, name: str) -> Any:
    """Default of a constructor argument of an rtmlib class (its mean / std), kept in sync."""
    return inspect.signature(cls.__init__).parameters[name].default


def _bind(cls: type, session: ort.InferenceSession, path: Path, model_input_size: tuple[int, int], **attrs: Any):
    """An rtmlib tool object around our session, without running rtmlib's ``BaseTool.__init__``
    (which opens a session of its own). Sets what ``__init__`` sets; see the module docstring."""
    tool = object.__new__(cls)
    tool.session = session
    tool.onnx_model = str(path)
    tool.model_input_size = model_input_size
    tool.backend = "onnxruntime"
    tool.device = session_provider(session)
    tool.mean = None
    tool.std = None
    for k, v in attrs.items():
        setattr(tool, k, v)
    return tool


def _static_hw(session: ort.InferenceSession) -> tuple[int, int] | None:
    shape = session.get_inputs()[0].shape
    if len(shape) == 4 and all(isinstance(d, int) and d > 0 for d in shape[2:]):
        return int(shape[2]), int(shape[3])
    return None


def _iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU ``(A, B)`` of xyxy boxes ``a (A, 4)`` and ``b (B, 4)``."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


class PoseEstimator:
    """Top-down 2D pose estimation of every person in a BGR image (a stage: state, ``reset()``, call).

    Args:
        spec: the models (:func:`model_spec`).
        providers: ``[(name, options), ...]`` from :func:`select_providers`, or provider names
            (``["cuda", "cpu"]``); default: the best onnxruntime offers.
        det_frequency: run the person detector every this many frames (1 = every frame); in
            between, boxes come from the previous frame's keypoints.
        det_score_threshold: minimum detector score of a person box.
        max_people: keep at most this many people per detection (highest scores); None = all.
        tracking_iou: minimum IoU between a person's keypoint boxes in consecutive frames to keep
            their track id (:attr:`track_ids`).
        kpt_threshold: keypoints scoring above this define a person's box for the next frame.
        min_person_score: a person whose mean keypoint score falls below this is not followed to
            the next frame (the detector finds them again, or not); when nobody is left, the
            detector runs on the next frame whatever ``det_frequency`` says.
        nms_threshold: IoU of rtmlib's NMS for detectors exported without NMS.
        allow_download: let :func:`resolve_model` download missing models.
        intra_op_threads: CPU threads per onnxruntime operator.

    Attributes:
        provider: the execution provider the pose model really runs on.
        timing: seconds spent by the last call: detector and pose pre-processing, inference and
            post-processing (``det_*_s``, ``pose_*_s``), ``tracking_s``, their sums
            ``preprocess_s`` / ``inference_s`` / ``postprocess_s`` and ``total_s``.
        detector_ran: whether the last call ran the detector.
        track_ids: ``(P,)`` int64 track id of each person of the last call (output order).
        pose_model, det_model: the rtmlib ``RTMPose`` and ``YOLOX`` / ``RTMDet`` objects (their
            ``.session`` is ours).
    """

    def __init__(
        self,
        spec: PoseModelSpec,
        providers: Sequence[str | tuple[str, dict]] | None = None,
        det_frequency: int = 4,
        det_score_threshold: float = 0.5,
        max_people: int | None = None,
        tracking_iou: float = 0.3,
        *,
        kpt_threshold: float = 0.3,
        min_person_score: float = 0.3,
        nms_threshold: float = 0.45,
        allow_download: bool = False,
        intra_op_threads: int | None = None,
    ) -> None:
        if int(det_frequency) < 1:
            raise ValueError(f"det_frequency must be >= 1, got {det_frequency}")
        if max_people is not None and int(max_people) < 1:
            raise ValueError(f"max_people must be >= 1 or None, got {max_people}")
        for name, v in (("det_score_threshold", det_score_threshold), ("tracking_iou", tracking_iou),
                        ("kpt_threshold", kpt_threshold), ("min_person_score", min_person_score),
                        ("nms_threshold", nms_threshold)):
            if not 0.0 <= float(v) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {v}")
        self.spec = spec
        self.det_frequency = int(det_frequency)
        self.det_score_threshold = float(det_score_threshold)
        self.max_people = None if max_people is None else int(max_people)
        self.tracking_iou = float(tracking_iou)
        self.kpt_threshold = float(kpt_threshold)
        self.min_person_score = float(min_person_score)

        if providers is None:
            providers = select_providers(ort.get_available_providers())
        elif all(isinstance(p, str) for p in providers):
            providers = select_providers(ort.get_available_providers(), preference=list(providers))
        pose_path = resolve_model(spec.pose_model, allow_download)
        det_path = resolve_model(spec.det_model, allow_download)
        pose_session = create_session(pose_path, providers, intra_op_threads)
        det_session = create_session(det_path, providers, intra_op_threads)

        self.pose_model = _bind(
            RTMPose, pose_session, pose_path, self._pose_input_size(pose_session),
            mean=_init_default(RTMPose, "mean"), std=_init_default(RTMPose, "std"), to_openpose=False,
        )  # fmt: skip
        self._pose_outputs = self._check_pose_outputs(pose_session)
        self._pose_input_name = pose_session.get_inputs()[0].name
        self._pose_mean = np.asarray(self.pose_model.mean, np.float32)
        self._pose_std = np.asarray(self.pose_model.std, np.float32)
        self._buffers: dict[str, np.ndarray] = {}
        batch_dim = pose_session.get_inputs()[0].shape[0]
        # One run for all people when the model takes a batch; not on TensorRT, which would build
        # a new engine for every new number of people unless given optimisation profiles.
        self.batch_people = not (isinstance(batch_dim, int) and batch_dim == 1) and (
            session_provider(pose_session) != PROVIDERS["tensorrt"]
        )

        det_cls = RTMDet if spec.det_kind == "rtmdet" else YOLOX
        # "multiclass": rtmlib's postprocess (used for raw heads only) then returns class ids too;
        # `mode` is the attribute's name before rtmlib 0.0.14.
        det_attrs: dict[str, Any] = {"det_mode": "multiclass", "mode": "multiclass",
                                     "nms_thr": float(nms_threshold), "score_thr": self.det_score_threshold}
        if det_cls is RTMDet:
            det_attrs.update(mean=_init_default(RTMDet, "mean"), std=_init_default(RTMDet, "std"))
        hw = _static_hw(det_session) or (spec.det_input_size[1], spec.det_input_size[0])
        self.det_model = _bind(det_cls, det_session, det_path, hw, **det_attrs)  # rtmlib: (h, w)
        self._det_input_name = det_session.get_inputs()[0].name
        self.reset()

    # ------------------------------------------------------------------ set-up helpers
    def _pose_input_size(self, session: ort.InferenceSession) -> tuple[int, int]:
        hw = _static_hw(session)
        if hw is None:
            return self.spec.pose_input_size
        size = (hw[1], hw[0])
        if size != self.spec.pose_input_size:
            log.info("pose model input is %dx%d (w x h), not the spec's %s; using the model's", *size,
                     self.spec.pose_input_size)
        return size

    def _check_pose_outputs(self, session: ort.InferenceSession) -> list[str]:
        outs = session.get_outputs()
        names = [o.name for o in outs]
        if len(outs) != 2:
            raise ValueError(f"an RTMPose model has 2 outputs (simcc_x, simcc_y), this one has {names}")
        if set(names) == {"simcc_x", "simcc_y"}:
            names = ["simcc_x", "simcc_y"]
        k = outs[0].shape[1] if len(outs[0].shape) == 3 else None
        if isinstance(k, int) and k != self.spec.n_keypoints:
            raise ValueError(
                f"pose model outputs {k} keypoints but skeleton {self.spec.skeleton} has {self.spec.n_keypoints}"
            )
        return names

    # ------------------------------------------------------------------ properties
    @property
    def provider(self) -> str:
        """Execution provider the pose model runs on, e.g. ``"CUDAExecutionProvider"``."""
        return session_provider(self.pose_model.session)

    @property
    def det_provider(self) -> str:
        """Execution provider the detector runs on."""
        return session_provider(self.det_model.session)

    def reset(self) -> None:
        """Forget the tracked people: the next call runs the detector."""
        self._frames_since_det = self.det_frequency  # frames since the detector last ran
        self._boxes = np.zeros((0, 4))  # (B, 4) xyxy px carried to the next frame
        self._prev_boxes = np.zeros((0, 4))  # (P, 4) keypoint boxes of the last frame, for ids
        self._prev_ids = np.zeros(0, np.int64)
        self._next_id = 0
        self.timing: dict[str, float] = dict.fromkeys(_TIMING_KEYS, 0.0)
        self.detector_ran = False
        self.track_ids = np.zeros(0, np.int64)

    # ------------------------------------------------------------------ call
    def __call__(self, image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Keypoints of every person in a BGR image.

        Args:
            image_bgr: ``(H, W, 3)`` uint8, OpenCV channel order.

        Returns:
            ``keypoints (P, K, 2)`` float32 pixels of the image, ``scores (P, K)`` float32 >= 0
            (SimCC confidences, roughly 0..1), people in track-id order (:attr:`track_ids`).
        """
        img = np.asarray(image_bgr)
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"image must be (H, W, 3) uint8 BGR, got {img.dtype} {img.shape}")
        t0 = time.perf_counter()
        timing = dict.fromkeys(_TIMING_KEYS, 0.0)
        K = self.spec.n_keypoints

        self.detector_ran = self._frames_since_det >= self.det_frequency or len(self._boxes) == 0
        if self.detector_ran:
            boxes = self._detect(img, timing)
            self._frames_since_det = 0
        else:
            boxes = self._boxes
        self._frames_since_det += 1

        if len(boxes):
            kpts, scores = self._estimate(img, boxes, timing)
        else:
            kpts, scores = np.zeros((0, K, 2), np.float32), np.zeros((0, K), np.float32)

        t = time.perf_counter()
        kpts, scores, ids = self._track(kpts, scores, img.shape[:2])
        timing["tracking_s"] = time.perf_counter() - t
        for part in ("preprocess", "inference", "postprocess"):
            timing[f"{part}_s"] = timing[f"det_{part}_s"] + timing[f"pose_{part}_s"]
        timing["total_s"] = time.perf_counter() - t0
        self.timing = timing
        self.track_ids = ids
        return kpts, scores

    # ------------------------------------------------------------------ detector
    def _detect(self, img: np.ndarray, timing: dict[str, float]) -> np.ndarray:
        """Person boxes ``(B, 4)`` xyxy px, best score first, at most ``max_people``."""
        det = self.det_model
        t = time.perf_counter()
        canvas, ratio = det.preprocess(img)  # (S_h, S_w, 3): uint8 (YOLOX) or normalised (RTMDet)
        blob = self._buffer("det", (1, 3) + canvas.shape[:2])
        for c, channel in enumerate(cv2.split(np.ascontiguousarray(canvas))):
            np.copyto(blob[0, c], channel, casting="unsafe")
        t1 = time.perf_counter()
        outputs = det.session.run(None, {self._det_input_name: blob})
        t2 = time.perf_counter()
        out = outputs[0]
        if out.ndim == 3 and out.shape[-1] == 5:  # end2end export: NMS done, (x1, y1, x2, y2, score)
            dets = out[0].astype(np.float64)
            keep = dets[:, 4] > self.det_score_threshold
            boxes, scores = dets[keep, :4] / ratio, dets[keep, 4]
        else:  # raw head: rtmlib decodes the grid and runs NMS (score_thr, nms_thr set in __init__)
            boxes, classes = det.postprocess(out, ratio)
            boxes = np.asarray(boxes, np.float64).reshape(-1, 4)[np.asarray(classes).reshape(-1) == 0]
            scores = -np.arange(len(boxes), dtype=np.float64)  # NMS output is best first
        ok = np.all(boxes[:, 2:] - boxes[:, :2] >= 1.0, axis=1)  # not clipped: rtmlib does not
        boxes, scores = boxes[ok], scores[ok]
        boxes = boxes[np.argsort(-scores, kind="stable")][: self.max_people]
        timing["det_preprocess_s"] = t1 - t
        timing["det_inference_s"] = t2 - t1
        timing["det_postprocess_s"] = time.perf_counter() - t2
        return boxes

    # ------------------------------------------------------------------ pose
    def _buffer(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """A reused float32 input buffer (fresh large temporaries cost page faults every frame)."""
        buf = self._buffers.get(name)
        if buf is None or buf.shape[0] < shape[0] or buf.shape[1:] != shape[1:]:
            buf = np.empty((max(shape[0], 4),) + tuple(shape[1:]), np.float32)
            self._buffers[name] = buf
        return buf[: shape[0]]

    def pose_inputs(self, img: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """RTMPose inputs of people: rtmlib's ``RTMPose.preprocess`` for many boxes at once.

        rtmlib's ``bbox_xyxy2cs`` (padding 1.25) and ``top_down_affine``, then ``(crop - mean) /
        std`` computed in float32 straight into a reused buffer (rtmlib computes in float64 and
        casts; results agree to float32 rounding).

        Args:
            img: ``(H, W, 3)`` uint8 BGR.
            boxes: ``(P, 4)`` xyxy px.

        Returns:
            ``blob (P, 3, h, w)`` float32 (a view of an internal buffer, valid until the next
            call), ``centers (P, 2)`` and ``scales (P, 2)`` px, as ``RTMPose.postprocess`` wants.
        """
        pm = self.pose_model
        w, h = pm.model_input_size
        blob = self._buffer("pose", (len(boxes), 3, h, w))
        centers = np.empty((len(boxes), 2))
        scales = np.empty((len(boxes), 2))
        for i, box in enumerate(np.asarray(boxes, np.float64)):
            center, scale = bbox_xyxy2cs(box, padding=1.25)
            crop, scale = top_down_affine((w, h), scale, center, img)
            for c, channel in enumerate(cv2.split(crop)):  # HWC -> CHW; split is the fast way
                np.subtract(channel, self._pose_mean[c], out=blob[i, c], dtype=np.float32)
                np.divide(blob[i, c], self._pose_std[c], out=blob[i, c])
            centers[i], scales[i] = center, scale
        return blob, centers, scales

    def _estimate(self, img: np.ndarray, boxes: np.ndarray, timing: dict[str, float]):
        pm = self.pose_model
        t = time.perf_counter()
        blob, centers, scales = self.pose_inputs(img, boxes)
        t1 = time.perf_counter()
        feed_name = self._pose_input_name
        if self.batch_people:
            sx, sy = pm.session.run(self._pose_outputs, {feed_name: blob})
        else:
            runs = [pm.session.run(self._pose_outputs, {feed_name: blob[i : i + 1]}) for i in range(len(blob))]
            sx = np.concatenate([r[0] for r in runs])
            sy = np.concatenate([r[1] for r in runs])
        t2 = time.perf_counter()
        kpts = np.empty((len(blob), sx.shape[1], 2), np.float32)
        scores = np.empty((len(blob), sx.shape[1]), np.float32)
        for i in range(len(blob)):
            k, s = pm.postprocess([sx[i : i + 1], sy[i : i + 1]], centers[i], scales[i])
            kpts[i], scores[i] = k[0], s[0]
        np.clip(scores, 0.0, None, out=scores)
        timing["pose_preprocess_s"] = t1 - t
        timing["pose_inference_s"] = t2 - t1
        timing["pose_postprocess_s"] = time.perf_counter() - t2
        return kpts, scores

    # ------------------------------------------------------------------ tracking
    def _keypoint_box(self, kpts: np.ndarray, scores: np.ndarray, hw: tuple[int, int]) -> np.ndarray | None:
        """rtmlib's ``pose_to_bbox`` (x1.25) of the confident keypoints, clipped; None if too few."""
        good = scores > self.kpt_threshold
        if good.sum() < 2:
            return None
        box = np.clip(pose_to_bbox(kpts[good].astype(np.float64)), 0, [hw[1], hw[0], hw[1], hw[0]])
        if np.any(box[2:] - box[:2] < 1.0):
            return None
        return box

    def _track(self, kpts: np.ndarray, scores: np.ndarray, hw: tuple[int, int]):
        """Drop duplicates, give track ids, choose the boxes of the next frame; returns the
        people sorted by track id."""
        P = len(kpts)
        mean = scores.mean(axis=1) if P else np.zeros(0)
        boxes = [self._keypoint_box(kpts[i], scores[i], hw) for i in range(P)]
        keep = self._not_duplicates(boxes, mean)
        idx = np.flatnonzero(keep)
        kpts, scores, mean = kpts[idx], scores[idx], mean[idx]
        boxes = [boxes[i] for i in idx]

        ids = self._assign_ids(boxes)
        order = np.argsort(ids, kind="stable")
        kpts, scores, mean, ids = kpts[order], scores[order], mean[order], ids[order]
        boxes = [boxes[i] for i in order]

        follow = [i for i, b in enumerate(boxes) if b is not None and mean[i] >= self.min_person_score]
        self._boxes = np.array([boxes[i] for i in follow]).reshape(-1, 4)
        known = [i for i, b in enumerate(boxes) if b is not None]
        self._prev_boxes = np.array([boxes[i] for i in known]).reshape(-1, 4)
        self._prev_ids = ids[known]
        return kpts, scores, ids

    @staticmethod
    def _not_duplicates(boxes: list[np.ndarray | None], mean: np.ndarray) -> np.ndarray:
        """``(P,)`` bool: False for a person whose box overlaps a better-scoring person's by more
        than ``_DUPLICATE_IOU`` (two tracked boxes that converged on one person)."""
        keep = np.ones(len(boxes), bool)
        have = [i for i, b in enumerate(boxes) if b is not None]
        if len(have) < 2:
            return keep
        iou = _iou_matrix(np.array([boxes[i] for i in have]), np.array([boxes[i] for i in have]))
        kept: list[int] = []  # rows of `iou`
        for r in sorted(range(len(have)), key=lambda r: -mean[have[r]]):
            if any(iou[r, q] > _DUPLICATE_IOU for q in kept):
                keep[have[r]] = False
            else:
                kept.append(r)
        return keep

    def _assign_ids(self, boxes: list[np.ndarray | None]) -> np.ndarray:
        """Greedy IoU matching with the previous frame's keypoint boxes; new ids otherwise."""
        ids = np.full(len(boxes), -1, np.int64)
        have = [i for i, b in enumerate(boxes) if b is not None]
        if have and len(self._prev_boxes):
            iou = _iou_matrix(np.array([boxes[i] for i in have]), self._prev_boxes)
            while iou.size and iou.max() > self.tracking_iou:
                r, c = np.unravel_index(np.argmax(iou), iou.shape)
                ids[have[r]] = self._prev_ids[c]
                iou[r, :] = -1
                iou[:, c] = -1
        for i in np.flatnonzero(ids < 0):
            ids[i] = self._next_id
            self._next_id += 1
        return ids
