"""Small ONNX models with the signatures of RTMPose and of rtmlib's person detectors, for tests.

Built with the ``onnx`` package, no weights, no network. Their outputs are known in advance (a
single SimCC peak per keypoint, fixed boxes), so a test can compute by hand what the estimator
must return; a tiny term ``eps * mean(input)`` keeps every output a function of the input image
(so the input really reaches the graph and the optimiser cannot fold it away).

- :func:`make_rtmpose_model`: input ``"input"`` float32 ``(1 | batch, 3, H, W)`` -> ``simcc_x
  (N, K, 2W)``, ``simcc_y (N, K, 2H)`` (SimCC split ratio 2, as rtmlib's RTMPose decodes).
- :func:`make_detector_model`: input ``"input"`` float32 ``(1, 3, S, S)`` -> either the mmdeploy
  "end2end" layout of rtmlib's YOLOX / RTMDet downloads, ``dets (1, N, 5)`` = x1, y1, x2, y2, score
  in model-input pixels and ``labels (1, N)`` int64, or the raw YOLOX head without NMS,
  ``(1, A, 6)`` = (cx, cy, log w, log h) grid offsets, objectness, class score, over the
  A = sum((S/s)^2, s in 8, 16, 32) anchors, which rtmlib decodes itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["make_rtmpose_model", "make_detector_model", "simcc_targets", "OPSET"]

OPSET = 17
_IR_VERSION = 8  # readable by every onnxruntime rtkin supports (>= 1.17)


def simcc_targets(peaks_uv: np.ndarray, input_size: tuple[int, int], split_ratio: float = 2.0) -> np.ndarray:
    """SimCC bin indices ``(K, 2)`` (int) of keypoint positions ``(K, 2)`` in model-input pixels.

    Positions must lie on the SimCC grid (multiples of ``1 / split_ratio``) inside the input.
    """
    peaks_uv = np.asarray(peaks_uv, dtype=np.float64)
    idx = peaks_uv * split_ratio
    if not np.allclose(idx, np.round(idx)):
        raise ValueError(f"peaks must be multiples of 1/{split_ratio} px: {peaks_uv}")
    idx = np.round(idx).astype(np.int64)
    w, h = input_size
    if idx.min() < 0 or np.any(idx[:, 0] >= w * split_ratio) or np.any(idx[:, 1] >= h * split_ratio):
        raise ValueError("peaks must lie inside the model input")
    return idx


def _mean_node() -> list[onnx.NodeProto]:
    """``m = mean(input) per image``, shaped ``(N, 1, 1)``."""
    return [
        helper.make_node("ReduceMean", ["input"], ["m4"], axes=[1, 2, 3], keepdims=1),
        helper.make_node("Reshape", ["m4", "shape_n11"], ["m"]),
    ]


def _save(nodes, inputs, outputs, inits, path: str | Path, name: str) -> Path:
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="rtkin-tests")
    model.ir_version = _IR_VERSION
    onnx.checker.check_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def make_rtmpose_model(
    path: str | Path,
    K: int = 26,
    input_size: tuple[int, int] = (192, 256),
    peaks: np.ndarray | None = None,
    scores: float | Sequence[float] | np.ndarray = 0.9,
    *,
    dynamic_batch: bool = False,
    eps: float = 1e-4,
) -> Path:
    """Write an RTMPose-like model whose keypoint ``k`` peaks at ``peaks[k]`` (model-input pixels).

    Args:
        path: output ``.onnx`` file.
        K: number of keypoints.
        input_size: model input ``(w, h)`` in pixels; outputs are ``(N, K, 2w)`` and ``(N, K, 2h)``.
        peaks: ``(K, 2)`` positions ``(u, v)`` in model-input pixels, multiples of 0.5; default:
            a zig-zag over the middle of the input (u = 0.35 w / 0.65 w, v from 0.2 h to 0.8 h).
        scores: peak value(s) ``(K,)`` (what rtmlib reports as the keypoint score, see below).
        dynamic_batch: first input/output dimension symbolic (``"batch"``) instead of 1.
        eps: ``simcc = onehot * score + eps * mean(input)``: decoded scores are
            ``score + eps * mean`` (mean of the normalised crop, |mean| < ~3), locations exact.

    Returns:
        ``path``.
    """
    w, h = input_size
    if peaks is None:
        v = np.linspace(0.2 * h, 0.8 * h, K)
        u = np.where(np.arange(K) % 2 == 0, 0.35 * w, 0.65 * w)
        peaks = np.round(np.stack([u, v], axis=1) * 2) / 2
    peaks = np.asarray(peaks, dtype=np.float64)
    if peaks.shape != (K, 2):
        raise ValueError(f"peaks must be (K={K}, 2), got {peaks.shape}")
    idx = simcc_targets(peaks, input_size)
    sc = np.broadcast_to(np.asarray(scores, dtype=np.float32), (K,))
    sx = np.zeros((1, K, 2 * w), np.float32)
    sy = np.zeros((1, K, 2 * h), np.float32)
    sx[0, np.arange(K), idx[:, 0]] = sc
    sy[0, np.arange(K), idx[:, 1]] = sc

    n = "batch" if dynamic_batch else 1
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, [n, 3, h, w])]
    outputs = [
        helper.make_tensor_value_info("simcc_x", TensorProto.FLOAT, [n, K, 2 * w]),
        helper.make_tensor_value_info("simcc_y", TensorProto.FLOAT, [n, K, 2 * h]),
    ]
    inits = [
        numpy_helper.from_array(np.array([-1, 1, 1], np.int64), "shape_n11"),
        numpy_helper.from_array(np.array(eps, np.float32), "eps"),
        numpy_helper.from_array(sx, "peaks_x"),
        numpy_helper.from_array(sy, "peaks_y"),
    ]
    nodes = _mean_node() + [
        helper.make_node("Mul", ["m", "eps"], ["e"]),
        helper.make_node("Add", ["e", "peaks_x"], ["simcc_x"]),
        helper.make_node("Add", ["e", "peaks_y"], ["simcc_y"]),
    ]
    return _save(nodes, inputs, outputs, inits, path, "fake_rtmpose")


def _raw_yolox_rows(boxes: np.ndarray, input_side: int) -> np.ndarray:
    """Raw YOLOX head output ``(A, 6)`` that rtmlib's grid decoding turns into ``boxes``.

    Each box goes to the stride-32 anchor cell holding its centre: ``cx = (o0 + gx) * s``,
    ``w = exp(o2) * s``; objectness = score, class score = 1. Other anchors score 0.
    """
    rows, offset = [], 0
    for s in (8, 16, 32):
        g = input_side // s
        rows.append(np.zeros((g * g, 6), np.float32))
        if s == 32:
            base = offset
        offset += g * g
    raw = np.concatenate(rows, 0)
    g = input_side // 32
    for x1, y1, x2, y2, score in boxes:
        cx, cy, bw, bh = (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1
        gx, gy = int(cx // 32), int(cy // 32)
        raw[base + gy * g + gx] = [cx / 32 - gx, cy / 32 - gy, np.log(bw / 32), np.log(bh / 32), score, 1.0]
    return raw


def make_detector_model(
    path: str | Path,
    boxes: np.ndarray | Sequence[Sequence[float]] = ((200.0, 100.0, 300.0, 500.0, 0.9),),
    input_size: int = 640,
    *,
    layout: str = "end2end",
    eps: float = 1e-6,
) -> Path:
    """Write a person detector that always finds ``boxes`` (model-input pixels of the padded image).

    Args:
        path: output ``.onnx`` file.
        boxes: ``(N, 5)`` rows ``x1, y1, x2, y2, score`` in pixels of the ``input_size`` square
            input (rtmlib resizes the image by ``ratio = min(S / H, S / W)`` into its top-left corner,
            so image pixels are these divided by ``ratio``).
        input_size: side S of the square input.
        layout: ``"end2end"`` (``dets (1, N, 5)`` + ``labels (1, N)``, NMS inside the model, as the
            rtmlib downloads) or ``"raw"`` (YOLOX head ``(1, A, 6)``; rtmlib decodes and runs NMS;
            one box per stride-32 cell).
        eps: ``score + eps * mean(input)``, so scores depend (negligibly) on the image.

    Returns:
        ``path``.
    """
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 5)
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, input_size, input_size])]
    if layout == "end2end":
        const, score_col = boxes[None], 4
        outputs = [
            helper.make_tensor_value_info("dets", TensorProto.FLOAT, [1, len(boxes), 5]),
            helper.make_tensor_value_info("labels", TensorProto.INT64, [1, len(boxes)]),
        ]
    elif layout == "raw":
        const, score_col = _raw_yolox_rows(boxes, input_size)[None], 4
        outputs = [helper.make_tensor_value_info("output", TensorProto.FLOAT, list(const.shape))]
    else:
        raise ValueError(f"layout must be 'end2end' or 'raw', got {layout!r}")
    mask = np.zeros_like(const)
    mask[..., score_col] = eps * (const[..., score_col] > 0)  # only live rows move
    inits = [
        numpy_helper.from_array(np.array([-1, 1, 1], np.int64), "shape_n11"),
        numpy_helper.from_array(const, "boxes"),
        numpy_helper.from_array(mask.astype(np.float32), "mask"),
    ]
    out0 = outputs[0].name
    nodes = _mean_node() + [
        helper.make_node("Mul", ["m", "mask"], ["e"]),
        helper.make_node("Add", ["e", "boxes"], [out0]),
    ]
    if layout == "end2end":
        inits.append(numpy_helper.from_array(np.zeros((1, len(boxes)), np.int64), "labels_const"))
        nodes.append(helper.make_node("Identity", ["labels_const"], ["labels"]))
    return _save(nodes, inputs, outputs, inits, path, f"fake_detector_{layout}")
