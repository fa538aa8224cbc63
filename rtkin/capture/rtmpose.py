"""RTMPose on one image: rtmlib's pre/post-processing around onnxruntime sessions of our own.

**PoseEstimator**, a stage: BGR image -> keypoints ``(P, K, 2)`` px and scores ``(P, K)``. The
person detector runs every ``det_frequency`` frames (Pose2Sim's ``det_frequency``); in between,
each person's box is the box of their previous keypoints (rtmlib's ``PoseTracker`` idea). The
rtmlib objects (``RTMPose``, ``YOLOX`` / ``RTMDet``) are built around our sessions, without
rtmlib's constructor (which would first open a CPU session of its own and print). Person crops
use rtmlib's ``bbox_xyxy2cs`` + ``top_down_affine`` but are normalised in float32 into reused
buffers (:meth:`PoseEstimator.pose_inputs`): ``RTMPose.preprocess`` allocates float64 temporaries
that cost ~2 ms per person in page faults inside a frame loop; the tests check both agree.

Execution providers: :mod:`rtkin.capture.onnx`; model names and lookup: :mod:`rtkin.capture.models`.

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
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnxruntime as ort
from rtmlib import YOLOX, RTMDet, RTMPose
from rtmlib.tools.pose_estimation.post_processings import get_simcc_maximum
from rtmlib.tools.pose_estimation.pre_processings import bbox_xyxy2cs, top_down_affine
from rtmlib.tools.solution.pose_tracker import pose_to_bbox

from rtkin.capture.models import PoseModelSpec, resolve_model
from rtkin.capture.onnx import PROVIDERS, create_session, select_providers, session_provider

__all__ = ["decode_simcc", "PoseEstimator"]


log = logging.getLogger(__name__)


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

    name = "RTMPose"

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
    def detect(self, image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The person detector alone on a BGR image ``(H, W, 3)`` uint8 (tracking state untouched).

        Returns:
            ``boxes (B, 4)`` xyxy px of the image, best first (at most ``max_people``), and their
            ``scores (B,)`` (detectors exported without NMS give no scores: ``-rank``).
        """
        img = np.asarray(image_bgr)
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"image must be (H, W, 3) uint8 BGR, got {img.dtype} {img.shape}")
        timing = dict.fromkeys(_TIMING_KEYS, 0.0)
        boxes = self._detect(img, timing)
        return boxes, self._last_det_scores

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
        order = np.argsort(-scores, kind="stable")[: self.max_people]
        boxes = boxes[order]
        self._last_det_scores = scores[order]
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
