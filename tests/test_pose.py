"""rtkin.capture.rtmpose: provider selection, model specs and lookup, SimCC decoding, the PoseEstimator stage.

No network: the models are generated (tests/onnx_models.py) with known SimCC peaks and boxes, so the
expected keypoints are computed here by hand (box -> padded, aspect-corrected crop -> peak in crop
pixels -> image pixels). One test uses the real RTMPose weights if rtmlib's cache holds them.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

import rtmlib
from rtkin.core import assets
from rtkin.capture import models as capture_models
from rtkin.capture import onnx as capture_onnx
from rtkin.capture.models import ModelNotAvailableError, PoseModelSpec, model_spec, resolve_model
from rtkin.capture.onnx import create_session, select_providers, session_provider
from rtkin.capture.rtmpose import PoseEstimator, decode_simcc

from onnx_models import make_detector_model, make_rtmpose_model

TRT, CUDA, OV, CPU = (capture_onnx.PROVIDERS[k] for k in ("tensorrt", "cuda", "openvino", "cpu"))
W_IN, H_IN = 192, 256  # RTMPose input (w, h)
K = 26
# known SimCC peaks (u, v) in crop pixels: a zig-zag down the crop
PEAKS = np.stack([48.0 + 96.0 * (np.arange(K) % 2), 32.0 + 8.0 * np.arange(K)], axis=1)
RATIO = 1 / 3  # detector canvas 640 / 1920 (the demo videos are 1080 x 1920 portrait)
BOX_CANVAS = (120.0, 200.0, 240.0, 560.0)  # person box in detector-canvas pixels


# --------------------------------------------------------------------------- helpers


def expected_keypoints(box_xyxy, peaks=PEAKS, input_size=(W_IN, H_IN)) -> np.ndarray:
    """By hand: rtmlib pads the box by 1.25, widens it to the input aspect ratio and maps the crop's
    (w, h) onto it, centre on centre."""
    x1, y1, x2, y2 = box_xyxy
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    bw, bh = (x2 - x1) * 1.25, (y2 - y1) * 1.25
    w, h = input_size
    if bw > bh * w / h:
        bh = bw * h / w
    else:
        bw = bh * w / h
    return np.stack([cx + (peaks[:, 0] / w - 0.5) * bw, cy + (peaks[:, 1] / h - 0.5) * bh], axis=1)


def keypoint_box(kpts, img_hw, expansion=1.25):
    """By hand: box of the keypoints, grown by 1.25 about its centre, clipped to the image."""
    lo, hi = kpts.min(axis=0), kpts.max(axis=0)
    c = (lo + hi) / 2
    lo, hi = c - (c - lo) * expansion, c + (hi - c) * expansion
    H, W = img_hw
    return np.clip([lo[0], lo[1], hi[0], hi[1]], 0, [W, H, W, H])


class CountingSession:
    """Wraps an onnxruntime session and counts ``run`` calls."""

    def __init__(self, session):
        self._s = session
        self.runs = 0
        self.batch_sizes: list[int] = []

    def run(self, output_names, feed, *args, **kwargs):
        self.runs += 1
        self.batch_sizes.append(next(iter(feed.values())).shape[0])
        return self._s.run(output_names, feed, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._s, name)


def count_runs(est: PoseEstimator) -> tuple[CountingSession, CountingSession]:
    est.det_model.session = CountingSession(est.det_model.session)
    est.pose_model.session = CountingSession(est.pose_model.session)
    return est.det_model.session, est.pose_model.session


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    """First frame of the Pose2Sim demo's cam01 (1920 x 1080 portrait, BGR)."""
    cap = cv2.VideoCapture(str(assets.demo_videos()["cam01"]))
    ok, img = cap.read()
    cap.release()
    assert ok and img.shape == (1920, 1080, 3)
    return img


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("onnx")
    return {
        "pose": make_rtmpose_model(d / "pose.onnx", K=K, peaks=PEAKS, scores=0.9),
        "pose_dyn": make_rtmpose_model(d / "pose_dyn.onnx", K=K, peaks=PEAKS, scores=0.9, dynamic_batch=True),
        "pose_low": make_rtmpose_model(d / "pose_low.onnx", K=K, peaks=PEAKS, scores=0.2),
        "pose17": make_rtmpose_model(d / "pose17.onnx", K=17),
        "det": make_detector_model(d / "det.onnx", boxes=[(*BOX_CANVAS, 0.9)]),
        "det_raw": make_detector_model(d / "det_raw.onnx", boxes=[(*BOX_CANVAS, 0.9)], layout="raw"),
        "det3": make_detector_model(
            d / "det3.onnx",
            boxes=[(20, 100, 100, 400, 0.6), (120, 200, 240, 560, 0.9), (260, 50, 340, 300, 0.4)],
        ),
    }


def estimator(models, pose_key="pose", det_key="det", **kwargs) -> PoseEstimator:
    spec = model_spec("HALPE_26", pose_path=models[pose_key], det_path=models[det_key],
                      det_kind=kwargs.pop("det_kind", None))
    return PoseEstimator(spec, providers=[(CPU, {})], **kwargs)


# --------------------------------------------------------------------------- SimCC


def test_decode_simcc_hand_computed():
    sx = np.zeros((2, 3, 8), np.float32)  # N=2 people, K=3, Wx=8 bins (w=4 px)
    sy = np.zeros((2, 3, 10), np.float32)  # Wy=10 bins (h=5 px)
    sx[0, 0, 5], sy[0, 0, 2] = 0.8, 0.6  # -> (2.5, 1.0) px, score 0.7
    sx[0, 1, 0], sy[0, 1, 9] = 1.0, 0.2  # -> (0.0, 4.5) px, score 0.6
    sx[1, 2, 7], sy[1, 2, 4] = 0.5, 0.5  # -> (3.5, 2.0) px, score 0.5
    sx[1, 1, 3], sy[1, 1, 3] = -0.4, -0.2  # no positive bin: max 0 (the other bins), score 0
    locs, scores = decode_simcc(sx, sy)
    assert locs.shape == (2, 3, 2) and scores.shape == (2, 3) and locs.dtype == np.float32
    np.testing.assert_allclose(locs[0, 0], [2.5, 1.0])
    np.testing.assert_allclose(locs[0, 1], [0.0, 4.5])
    np.testing.assert_allclose(locs[1, 2], [3.5, 2.0])
    np.testing.assert_allclose(scores[0, :2], [0.7, 0.6], atol=1e-7)
    np.testing.assert_allclose(scores[1, 2], 0.5)
    # rtmlib: where the score is <= 0 the location is -1 bins -> -1/2 px (max of zeros is 0)
    np.testing.assert_allclose(locs[0, 2], [-0.5, -0.5])
    np.testing.assert_allclose(locs[1, 1], [-0.5, -0.5])
    assert scores[1, 1] == 0
    # split ratio
    np.testing.assert_allclose(decode_simcc(sx, sy, split_ratio=1.0)[0][0, 0], [5.0, 2.0])
    with pytest.raises(ValueError):
        decode_simcc(sx[0], sy[0])


# --------------------------------------------------------------------------- providers


def test_tensorrt_first_with_engine_cache(tmp_path):
    cache = tmp_path / "engines"
    sel = select_providers([CPU, CUDA, TRT, OV], engine_cache_dir=cache, device_id=1)
    assert [n for n, _ in sel] == [TRT, CUDA, OV, CPU]
    assert sel[0][1] == {
        "device_id": 1,
        "trt_fp16_enable": True,
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(cache),
        "trt_timing_cache_enable": True,
        "trt_timing_cache_path": str(cache),
    }
    assert cache.is_dir()  # created, so engines survive a restart
    assert sel[1][1] == {"device_id": 1} and sel[2][1] == {"device_type": "CPU"} and sel[3][1] == {}


def test_default_engine_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("RTKIN_CACHE_DIR", str(tmp_path))
    sel = select_providers([TRT, CPU])
    assert sel[0][1]["trt_engine_cache_path"] == str(tmp_path / "trt_engines")
    assert (tmp_path / "trt_engines").is_dir()
    monkeypatch.delenv("RTKIN_CACHE_DIR")
    assert capture_onnx.default_engine_cache_dir() == Path.home() / ".cache" / "rtkin" / "trt_engines"


@pytest.mark.parametrize(
    "available, expected",
    [
        ([CUDA, CPU], [CUDA, CPU]),
        (["AzureExecutionProvider", OV, CPU], [OV, CPU]),
        (["AzureExecutionProvider", CPU], [CPU]),
        ([], [CPU]),  # CPU is always there as the fallback
    ],
)
def test_fallback_order(available, expected, tmp_path):
    sel = select_providers(available, engine_cache_dir=tmp_path / "e")
    assert [n for n, _ in sel] == expected
    assert not (tmp_path / "e").exists()  # no TensorRT, no cache directory


def test_preference_override(tmp_path, caplog):
    avail = [TRT, CUDA, OV, CPU]
    assert [n for n, _ in select_providers(avail, ["cuda"])] == [CUDA, CPU]
    assert [n for n, _ in select_providers(avail, ["OpenVINO", "CUDAExecutionProvider"])] == [OV, CUDA, CPU]
    assert [n for n, _ in select_providers(avail, "cpu")] == [CPU]
    with caplog.at_level(logging.WARNING, logger="rtkin.capture.onnx"):
        sel = select_providers([CPU], ["tensorrt", "cuda"], engine_cache_dir=tmp_path)
    assert [n for n, _ in sel] == [CPU]
    assert "TensorrtExecutionProvider is not available" in caplog.text and "CUDAExecutionProvider" in caplog.text


def test_unknown_provider_name():
    with pytest.raises(ValueError, match="unknown execution provider 'rocm'.*tensorrt.*cuda.*openvino.*cpu"):
        select_providers([CPU], ["rocm"])


def test_create_session_on_cpu(models):
    s = create_session(models["pose"], select_providers(["AzureExecutionProvider", "CPUExecutionProvider"]), 1)
    assert session_provider(s) == CPU
    out = s.run(None, {"input": np.zeros((1, 3, H_IN, W_IN), np.float32)})
    assert [o.shape for o in out] == [(1, K, 2 * W_IN), (1, K, 2 * H_IN)]
    # a GPU provider this onnxruntime lacks: the session still works, on CPU, and says so
    with pytest.warns(UserWarning):
        s = create_session(models["pose"], [(CUDA, {"device_id": 0}), (CPU, {})])
    assert session_provider(s) == CPU
    with pytest.raises(FileNotFoundError):
        create_session(models["pose"].parent / "nope.onnx", [(CPU, {})])


def test_create_session_drops_a_provider_that_fails(models, monkeypatch, caplog):
    real = capture_onnx.ort.InferenceSession
    tried = []

    def fake(path, sess_options=None, providers=None):
        tried.append([p for p, _ in providers])
        if providers[0][0] == TRT:
            raise RuntimeError("libnvinfer.so.10: cannot open shared object file")
        return real(path, sess_options=sess_options, providers=[(CPU, {})])

    monkeypatch.setattr(capture_onnx.ort, "InferenceSession", fake)
    with caplog.at_level(logging.WARNING, logger="rtkin.capture.onnx"):
        s = create_session(models["pose"], [(TRT, {}), (CPU, {})])
    assert tried == [[TRT, CPU], [CPU]] and session_provider(s) == CPU
    assert "libnvinfer" in caplog.text


# --------------------------------------------------------------------------- model specs


def test_model_spec_uses_rtmlib_tables():
    spec = model_spec()
    table = rtmlib.BodyWithFeet.MODE["balanced"]
    assert spec == PoseModelSpec("HALPE_26", table["pose"], (192, 256), table["det"], (640, 640), "yolox")
    assert spec.n_keypoints == 26
    light = model_spec("coco_17", "lightweight")
    assert light.pose_model == rtmlib.Body.MODE["lightweight"]["pose"] and light.det_input_size == (416, 416)
    assert model_spec("COCO_133", "performance").pose_input_size == (288, 384)
    assert model_spec("COCO_133").pose_model == rtmlib.Wholebody.MODE["balanced"]["pose"]
    local = model_spec("HALPE_26", "performance", pose_path="/m/pose.onnx", det_path="/m/rtmdet-m.onnx")
    assert local.pose_model == "/m/pose.onnx" and local.pose_input_size == (288, 384)
    assert local.det_kind == "rtmdet"
    with pytest.raises(ValueError, match="mode must be one of"):
        model_spec(mode="fast")
    with pytest.raises(KeyError):
        model_spec("HALPE_99")
    with pytest.raises(ValueError):
        PoseModelSpec("HALPE_26", "p", (192, 256), "d", (640, 640), "ssd")


# --------------------------------------------------------------------------- resolve_model


URL = rtmlib.BodyWithFeet.MODE["balanced"]["pose"]


def test_resolve_local_path(models, tmp_path):
    assert resolve_model(models["pose"]) == models["pose"]
    with pytest.raises(FileNotFoundError, match="model file not found") as e:
        resolve_model(tmp_path / "missing.onnx")
    assert not isinstance(e.value, ModelNotAvailableError)


def test_resolve_url_offline_fails_fast_with_help(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    assert capture_models.rtmlib_cache_dir() == cache
    t = time.perf_counter()
    with pytest.raises(ModelNotAvailableError) as e:
        resolve_model(URL)
    assert time.perf_counter() - t < 1.0
    msg = str(e.value)
    assert URL in msg and str(cache) in msg
    assert "rtkin needs the RTMPose weights: run once with network access (they download automatically)" in msg
    assert "--pose-model PATH" in msg and "rtkin demo --synthetic" in msg
    assert isinstance(e.value, FileNotFoundError)


def test_resolve_url_from_rtmlib_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("TORCH_HOME", raising=False)
    cache = tmp_path / "rtmlib" / "hub" / "checkpoints"
    # rtmlib names the extracted end2end.onnx after the zip, cut at the first dot
    target = cache / "rtmpose-m_simcc-body7_pt-body7-halpe26_700e-256x192-4d3e73dd_20230605.onnx"
    assert capture_models.cached_model_path(URL) == target
    target.parent.mkdir(parents=True)
    target.write_bytes(b"onnx")
    assert resolve_model(URL) == target


def test_download_failure_is_wrapped_quickly(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    t = time.perf_counter()
    with pytest.raises(ModelNotAvailableError, match="download failed") as e:  # .invalid never resolves
        resolve_model("https://rtkin-test.invalid/models/pose.zip", allow_download=True, timeout_s=2.0)
    assert time.perf_counter() - t < 6.0
    assert "rtkin-test.invalid" in str(e.value) and "--pose-model PATH" in str(e.value)

    # host reachable but rtmlib's download fails: still a ModelNotAvailableError
    def boom(*a, **k):
        raise OSError("HTTP Error 404")

    monkeypatch.setattr(capture_models, "_probe_hosts", lambda urls, timeout_s: None)
    monkeypatch.setattr(rtmlib.tools.file, "download_checkpoint", boom)
    with pytest.raises(ModelNotAvailableError, match="HTTP Error 404"):
        resolve_model(URL, allow_download=True)


# --------------------------------------------------------------------------- PoseEstimator


def test_rtmlib_objects_use_our_session(models, frame):
    est = estimator(models)
    pm, dm = est.pose_model, est.det_model
    assert isinstance(pm, rtmlib.RTMPose) and isinstance(dm, rtmlib.YOLOX)
    assert pm.model_input_size == (W_IN, H_IN) and dm.model_input_size == (640, 640)
    assert est.provider == est.det_provider == CPU and pm.device == CPU
    # rtmlib's own inference() and __call__ work on the objects we built around our sessions ...
    crop, center, scale = pm.preprocess(frame, np.array(BOX_CANVAS) / RATIO)
    sx, sy = pm.inference(crop)
    assert sx.shape == (1, K, 2 * W_IN) and sy.shape == (1, K, 2 * H_IN)
    ref_k, ref_s = pm(frame, bboxes=[np.array(BOX_CANVAS) / RATIO])
    # ... and give what the estimator gives
    kpts, scores = est(frame)
    np.testing.assert_allclose(kpts, ref_k, atol=1e-4)
    np.testing.assert_allclose(scores, ref_s, atol=1e-6)


def test_pose_inputs_match_rtmlib_preprocess(models, frame):
    est = estimator(models)
    boxes = np.array([[360.0, 600.0, 720.0, 1680.0], [-50.0, 1500.0, 400.0, 1990.0]])  # one past the edges
    blob, centers, scales = est.pose_inputs(frame, boxes)
    assert blob.shape == (2, 3, H_IN, W_IN) and blob.dtype == np.float32
    for i, box in enumerate(boxes):
        crop, center, scale = est.pose_model.preprocess(frame, box)  # rtmlib, float64 (h, w, 3)
        np.testing.assert_allclose(blob[i], crop.transpose(2, 0, 1), atol=1e-5)
        np.testing.assert_allclose(centers[i], center)
        np.testing.assert_allclose(scales[i], scale)


def test_keypoints_on_a_demo_frame(models, frame):
    est = estimator(models, det_frequency=4)
    kpts, scores = est(frame)
    assert kpts.shape == (1, K, 2) and scores.shape == (1, K)
    assert kpts.dtype == np.float32 and scores.dtype == np.float32
    box = np.array(BOX_CANVAS) / RATIO  # (360, 600, 720, 1680) px
    # by hand: centre (540, 1140), padded 450 x 1350, widened to 1012.5 x 1350 (w/h = 0.75)
    exp = expected_keypoints(box)
    np.testing.assert_allclose(exp[0], [540 - 253.125, 1140 + (32 / 256 - 0.5) * 1350])
    np.testing.assert_allclose(kpts[0], exp, atol=1e-3)
    np.testing.assert_allclose(scores, 0.9, atol=1e-3)  # peak value (+ 1e-4 * mean of the crop)
    assert est.detector_ran and list(est.track_ids) == [0]

    # next frame: no detection, the box is the (x1.25, clipped) box of the previous keypoints
    kpts2, _ = est(frame)
    assert not est.detector_ran and list(est.track_ids) == [0]
    np.testing.assert_allclose(kpts2[0], expected_keypoints(keypoint_box(exp, frame.shape[:2])), atol=1e-3)

    t = est.timing
    for part in ("preprocess", "inference", "postprocess"):
        assert t[f"{part}_s"] == pytest.approx(t[f"det_{part}_s"] + t[f"pose_{part}_s"])
    assert t["det_inference_s"] == 0.0 and t["pose_inference_s"] > 0  # no detector this frame
    assert t["total_s"] >= t["preprocess_s"] + t["inference_s"] + t["postprocess_s"]


def test_detector_runs_every_n_frames(models, frame):
    est = estimator(models, det_frequency=3)
    det, pm = count_runs(est)
    ran = []
    for _ in range(7):
        kpts, _ = est(frame)
        ran.append(est.detector_ran)
        assert len(kpts) == 1
    assert ran == [True, False, False, True, False, False, True]
    assert det.runs == 3 and pm.runs == 7
    est.reset()
    est(frame)
    assert est.detector_ran and det.runs == 4


def test_detector_every_frame_when_everyone_is_lost(models, frame):
    est = estimator(models, pose_key="pose_low", det_frequency=5)  # every keypoint scores 0.2
    det, pm = count_runs(est)
    for _ in range(4):
        kpts, scores = est(frame)
        assert len(kpts) == 1 and np.allclose(scores, 0.2, atol=1e-3)  # still reported
    assert det.runs == 4 and pm.runs == 4


def test_detector_threshold_and_max_people(models, frame):
    est = estimator(models, det_key="det3", det_frequency=1)  # scores 0.6, 0.9, 0.4
    kpts, _ = est(frame)
    assert len(kpts) == 2  # 0.4 < det_score_threshold 0.5
    centres = sorted(k.mean(axis=0)[0] for k in kpts)
    assert centres[0] < 200 < 500 < centres[1]

    est = estimator(models, det_key="det3", max_people=1)
    kpts, _ = est(frame)
    np.testing.assert_allclose(kpts[0], expected_keypoints(np.array(BOX_CANVAS) / RATIO), atol=1e-3)

    est = estimator(models, det_key="det3", det_score_threshold=0.3)
    assert len(est(frame)[0]) == 3


def test_track_ids_stay_with_people(models, frame):
    est = estimator(models, det_key="det3", det_frequency=2)
    det, pm = count_runs(est)
    for _ in range(5):
        kpts, _ = est(frame)
        assert list(est.track_ids) == [0, 1]
        # ids in order of first detection, best score first: the 0.9 box (centre) is id 0
        assert kpts[1, :, 0].mean() < 400 < kpts[0, :, 0].mean()
    assert det.runs == 3 and pm.runs == 10 and set(pm.batch_sizes) == {1}


def test_two_boxes_on_one_person_give_one_person(models, frame, tmp_path):
    det = make_detector_model(tmp_path / "dup.onnx", boxes=[(*BOX_CANVAS, 0.9), (121, 201, 241, 562, 0.8)])
    est = PoseEstimator(model_spec(pose_path=models["pose"], det_path=det), providers=["cpu"], det_frequency=2)
    _, pm = count_runs(est)
    for _ in range(3):
        kpts, _ = est(frame)
        assert len(kpts) == 1 and list(est.track_ids) == [0]
    assert pm.runs == 2 + 1 + 2  # both boxes on detection frames, one tracked box in between


def test_batched_model_runs_once_per_frame(models, frame):
    ref = estimator(models, det_key="det3", det_frequency=1)
    est = estimator(models, pose_key="pose_dyn", det_key="det3", det_frequency=1)
    assert est.batch_people and not ref.batch_people
    _, pm = count_runs(est)
    for _ in range(2):
        k_ref, s_ref = ref(frame)
        k, s = est(frame)
        np.testing.assert_allclose(k, k_ref, atol=1e-4)
        np.testing.assert_allclose(s, s_ref, atol=1e-5)
    assert pm.runs == 2 and pm.batch_sizes == [2, 2]


@pytest.mark.parametrize("det_key, det_kind", [("det_raw", None), ("det", "rtmdet")])
def test_other_detector_layouts(models, frame, det_key, det_kind):
    """A raw YOLOX head (grid decoding + NMS by rtmlib) and RTMDet's normalised input."""
    est = estimator(models, det_key=det_key, det_kind=det_kind)
    assert isinstance(est.det_model, rtmlib.RTMDet if det_kind == "rtmdet" else rtmlib.YOLOX)
    kpts, _ = est(frame)
    assert len(kpts) == 1
    np.testing.assert_allclose(kpts[0], expected_keypoints(np.array(BOX_CANVAS) / RATIO), atol=1e-2)


def test_input_validation(models, frame):
    est = estimator(models)
    with pytest.raises(ValueError, match="uint8"):
        est(frame.astype(np.float32))
    with pytest.raises(ValueError, match="uint8"):
        est(frame[..., 0])
    with pytest.raises(ValueError, match="outputs 17 keypoints but skeleton HALPE_26 has 26"):
        estimator(models, pose_key="pose17")
    with pytest.raises(ValueError, match="det_frequency"):
        estimator(models, det_frequency=0)


def test_estimator_without_weights_says_so(models, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # empty rtmlib cache
    with pytest.raises(ModelNotAvailableError, match="rtkin needs the RTMPose weights"):
        PoseEstimator(model_spec(det_path=models["det"]), providers=["cpu"])


def test_no_person(models, frame, tmp_path):
    det = make_detector_model(tmp_path / "empty.onnx", boxes=[(10, 10, 50, 50, 0.1)])
    est = PoseEstimator(model_spec(pose_path=models["pose"], det_path=det), providers=["cpu"])
    det_s, pm = count_runs(est)
    for _ in range(3):
        kpts, scores = est(frame)
        assert kpts.shape == (0, K, 2) and scores.shape == (0, K) and len(est.track_ids) == 0
    assert det_s.runs == 3 and pm.runs == 0


# --------------------------------------------------------------------------- real weights


def _cached_real_spec() -> PoseModelSpec | None:
    for mode in ("balanced", "lightweight", "performance"):
        spec = model_spec("HALPE_26", mode)
        if capture_models._cached(spec.pose_model) and capture_models._cached(spec.det_model):
            return spec
    return None


def test_real_rtmpose_finds_the_demo_subject(frame):
    spec = _cached_real_spec()
    if spec is None:
        pytest.skip(
            f"RTMPose weights not in rtmlib's cache ({capture_models.rtmlib_cache_dir()}); "
            "they download automatically with network access"
        )
    est = PoseEstimator(spec, providers=["cpu"], det_frequency=4)
    kpts, scores = est(frame)
    assert len(kpts) >= 1
    best = int(np.argmax(scores.mean(axis=1)))
    k, s = kpts[best], scores[best]
    H, W = frame.shape[:2]
    assert s.mean() > 0.5
    assert np.all((k[:, 0] >= 0) & (k[:, 0] < W) & (k[:, 1] >= 0) & (k[:, 1] < H))
    # HALPE_26: 0 nose, 11/12 hips, 15/16 ankles, 17 head, 18 neck: upright subject
    assert k[17, 1] < k[18, 1] < k[11, 1] < k[15, 1] and k[0, 1] < k[12, 1] < k[16, 1]
    height = k[[15, 16], 1].mean() - k[17, 1]
    assert 0.15 * H < height < H
    # same as rtmlib's own solution on the same weights (CPU)
    ref = rtmlib.BodyWithFeet(det=str(capture_models._cached(spec.det_model)), pose=str(capture_models._cached(spec.pose_model)),
                              det_input_size=spec.det_input_size[::-1],
                              pose_input_size=spec.pose_input_size, backend="onnxruntime", device="cpu")
    ref_k, ref_s = ref(frame)
    j = int(np.argmin(np.abs(ref_k[:, :, 0].mean(axis=1) - k[:, 0].mean())))
    np.testing.assert_allclose(k, ref_k[j], atol=0.5)
    np.testing.assert_allclose(s, ref_s[j], atol=1e-2)
