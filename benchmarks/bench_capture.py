"""Capture cost per 1080p frame: decode, pre-processing, inference, post-processing, publish.

Runs the real capture path (rtkin.capture.sources video source -> rtkin.capture.rtmpose.PoseEstimator -> KeypointFrame
-> ZeroMQ publish) on the Pose2Sim demo video cam01 (1080x1920, 60 fps), one process, CPU:

- with small generated ONNX models that have RTMPose's and a YOLOX detector's signatures (inference
  is then negligible, so the figures are the overhead rtkin adds around a real model);
- with the real RTMPose weights (``--mode``) when rtmlib's cache holds them (skipped otherwise).

"Overhead" = pre-processing + post-processing + publish (decode excluded), the part the issue
bounds at 3 ms per 1080p frame. Prints p50 / p99 / mean in ms.

Usage: python benchmarks/bench_capture.py [--frames 200] [--mode balanced] [--det-frequency 4]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import zmq

from rtkin.core import assets
from rtkin.capture.sources import open_source
from rtkin.core.messages import KeypointFrame
from rtkin.capture.models import ModelNotAvailableError, model_spec
from rtkin.capture.rtmpose import PoseEstimator
from rtkin.runtime.transport import Publisher

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def _measure(est: PoseEstimator, n_frames: int) -> dict[str, np.ndarray]:
    video = assets.demo_videos()["cam01"]
    ctx = zmq.Context()
    pub = Publisher(ctx, "inproc://bench-capture", bind=True)
    cols = {k: [] for k in ("decode", "preprocess", "inference", "postprocess", "publish")}
    done = 0
    while done < n_frames:
        with open_source(str(video), realtime=False) as src:
            while done < n_frames:
                t = time.perf_counter()
                frame = src.read()
                t_dec = time.perf_counter() - t
                if frame is None:
                    break
                xy, scores = est(frame.image)
                t = time.perf_counter()
                kp = np.concatenate([xy, scores[..., None]], axis=-1).astype(np.float32)
                pub.send(KeypointFrame("cam01", frame.index, frame.capture_ns, "HALPE_26", kp))
                t_pub = time.perf_counter() - t
                cols["decode"].append(t_dec)
                cols["preprocess"].append(est.timing["preprocess_s"])
                cols["inference"].append(est.timing["inference_s"])
                cols["postprocess"].append(est.timing["postprocess_s"] + est.timing.get("tracking_s", 0.0))
                cols["publish"].append(t_pub)
                done += 1
    pub.close()
    ctx.destroy(linger=0)
    out = {k: np.array(v) * 1e3 for k, v in cols.items()}
    out["overhead (pre+post+publish)"] = out["preprocess"] + out["postprocess"] + out["publish"]
    return out


def _print(title: str, res: dict[str, np.ndarray], provider: str) -> None:
    print(f"\n{title} on {provider}, {len(res['decode'])} frames of cam01 (1080x1920):")
    print(f"  {'ms per frame':<28} {'p50':>8} {'p99':>8} {'mean':>8}")
    for k, v in res.items():
        print(f"  {k:<28} {np.percentile(v, 50):8.3f} {np.percentile(v, 99):8.3f} {v.mean():8.3f}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--mode", default="balanced", choices=["lightweight", "balanced", "performance"])
    ap.add_argument("--det-frequency", type=int, default=4)
    args = ap.parse_args(argv)

    from onnx_models import make_detector_model, make_rtmpose_model

    with tempfile.TemporaryDirectory() as d:
        pose = make_rtmpose_model(Path(d) / "pose.onnx", K=26)
        det = make_detector_model(Path(d) / "det.onnx")
        est = PoseEstimator(model_spec("HALPE_26", pose_path=pose, det_path=det), ["cpu"], det_frequency=args.det_frequency)
        _print("generated RTMPose-shaped models", _measure(est, args.frames), est.provider)
    try:
        est = PoseEstimator(model_spec("HALPE_26", args.mode), det_frequency=args.det_frequency)
    except ModelNotAvailableError as e:
        print(f"\nreal RTMPose weights ({args.mode}): skipped, not in rtmlib's cache ({str(e).splitlines()[0][:120]}...)")
        return
    _print(f"real RTMPose weights ({args.mode})", _measure(est, args.frames), est.provider)


if __name__ == "__main__":
    main()
