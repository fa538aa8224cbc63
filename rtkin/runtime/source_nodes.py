"""Camera processes: one per camera, publishing KeypointFrames to the sync node.

- :func:`source_node`: 2D keypoints without a pose model (virtual subject or OpenPose JSON),
  played in real time or as fast as possible.
- :func:`capture_node`: frames (video, image folder, webcam, stream) -> RTMPose -> KeypointFrames.
"""

from __future__ import annotations

import time
import traceback


from rtkin.core.priority import lower_priority
from rtkin.runtime.config import RunConfig
from rtkin.runtime.node import NodeContext, Stopper, load_rig, report
from rtkin.runtime.transport import link_context

__all__ = ["source_node", "capture_node", "capture_input", "capture_models"]

#: Sources and capture processes (upstream) yield to the sync and IK processes (downstream) when
#: the CPU is short: a slot whose frames all arrived is finished before work on the next frames
#: (which cannot be output earlier anyway) - on a machine with cores to spare it changes nothing.
SOURCE_NICE = 3



def source_node(cfg: RunConfig, camera: str, ctx: NodeContext) -> None:
    """Play one camera's KeypointFrames and PUB them to the sync node; ends with the stream."""
    from rtkin.capture.keypoints import openpose_frames, shifted, virtual_frames, virtual_scene
    from rtkin.runtime.transport import Publisher

    stop = Stopper(ctx)
    rig = load_rig(cfg)
    src = cfg.source
    sent = 0
    error = None
    zctx = link_context(cfg, ctx)  # sizes, keys; a remote camera's clock
    tx = Publisher(zctx, cfg.transport.keypoints, bind=False, sndhwm=cfg.transport.sndhwm)
    tx.settle(0.2)
    try:
        if src.kind == "virtual":
            frames = virtual_frames(virtual_scene(src.virtual, src.fps_hz), rig, camera, cfg.rig.skeleton)
        elif src.kind == "openpose":
            frames = openpose_frames(src.openpose, cfg.path(src.openpose.root), camera, cfg.rig.skeleton, src.fps_hz)
        else:
            raise ValueError(f"unknown source kind {src.kind!r}")
        lower_priority(SOURCE_NICE)
        ctx.ready.set()
        while not ctx.go.wait(0.1):
            if stop():
                return
        t0 = ctx.t0.value
        for frame in frames:
            if stop():
                break
            due = t0 + frame.capture_ns
            if src.realtime:
                delay = (due - time.monotonic_ns()) / 1e9
                if delay < -1.0 / src.fps_hz:
                    continue  # a restarted camera resumes at the current frame
                if delay > 0:
                    time.sleep(delay)
            tx.send(shifted(frame, t0))
            sent += 1
        time.sleep(0.05)
    except Exception:  # noqa: BLE001 - reported to the runner, then re-raised for a non-zero exit
        error = traceback.format_exc()
        raise
    finally:
        report(ctx, f"source:{camera}", {"sent": sent, **({"error": error} if error else {})})
        tx.close()
        zctx.term()




def capture_input(cfg: RunConfig, camera: str, index: int) -> str:
    """The source spec of one camera: ``source.capture.inputs[index]`` or the Pose2Sim demo video."""
    from rtkin.core import assets

    inputs = cfg.source.capture.inputs
    if not inputs:
        videos = assets.demo_videos()
        if camera not in videos:
            raise ValueError(f"no input for camera {camera!r}: set [source.capture] inputs (one per camera)")
        return str(videos[camera])
    if index >= len(inputs):
        raise ValueError(f"[source.capture] inputs has {len(inputs)} entries; camera {camera} is number {index + 1}")
    spec = inputs[index]
    if spec.isdigit() or "://" in spec:
        return spec
    return str(cfg.path(spec))


def capture_models(cfg: RunConfig, allow_download: bool = False):
    """The pose model spec of a capture run; with ``allow_download`` rtmlib fetches missing weights
    into its cache (once, with network access). Raises ModelNotAvailableError otherwise."""
    from rtkin.capture.models import model_spec, resolve_model

    cap = cfg.source.capture
    spec = model_spec(cfg.rig.skeleton, cap.mode, str(cfg.path(cap.pose_model)) if cap.pose_model else None,
                      str(cfg.path(cap.det_model)) if cap.det_model else None)
    resolve_model(spec.pose_model, allow_download)
    resolve_model(spec.det_model, allow_download)
    return spec


def _is_file_like(spec: str) -> bool:
    return not (spec.isdigit() or "://" in spec)


def capture_node(cfg: RunConfig, camera: str, ctx: NodeContext) -> None:
    """One camera: frames -> RTMPose -> KeypointFrames to the sync node (+ optional JPEG preview).

    Video files and image folders play as live cameras on the run's shared clock: frame i is
    captured at ``t0 + i / fps``; in real time a frame that is already late is skipped (a restarted
    camera resumes at the current frame), otherwise every frame is processed. Live sources
    (webcams, streams) are stamped when grabbed.
    """
    import cv2
    import numpy as np
    import onnxruntime as ort

    from rtkin.capture.sources import fit_to_calibration, open_source
    from rtkin.core.messages import KeypointFrame
    from rtkin.capture.onnx import select_providers
    from rtkin.capture.rtmpose import PoseEstimator
    from rtkin.core.stats import Window
    from rtkin.runtime.transport import Publisher

    stop = Stopper(ctx)
    cap = cfg.source.capture
    rig = load_rig(cfg)
    index = rig.index(camera)
    spec_in = capture_input(cfg, camera, index)
    zctx = link_context(cfg, ctx)  # sizes, keys; a remote camera's clock
    tx = Publisher(zctx, cfg.transport.keypoints, bind=False, sndhwm=cfg.transport.sndhwm)
    preview = None
    timing = {k: Window(5000) for k in ("decode", "preprocess", "inference", "postprocess", "publish")}
    sent, skipped, error, provider = 0, 0, None, None
    try:
        providers = select_providers(ort.get_available_providers(), list(cap.providers) or None,
                                     engine_cache_dir=cfg.path(cap.engine_cache_dir) if cap.engine_cache_dir else None)
        est = PoseEstimator(capture_models(cfg), providers, det_frequency=cap.det_frequency)
        provider = est.provider
        print(f"rtkin capture {camera}: {spec_in} -> RTMPose on {provider}", flush=True)
        file_like = _is_file_like(spec_in)
        if file_like:
            opts = {"fps": cap.fps} if cap.fps > 0 else {}
            src = open_source(spec_in, realtime=False, decimate=cap.decimate, loop=cap.loop, **opts)
        else:
            src = open_source(spec_in, threaded=True)
        dx, dy, note = fit_to_calibration(src.size, rig[camera].size, name=camera)
        if note:
            print(f"rtkin capture {camera}: {note}", flush=True)
        if cap.preview:
            preview = Publisher(zctx, cap.preview_endpoint.format(port=cap.preview_port + index, index=index, camera=camera),
                                bind=True, sndhwm=4)
        tx.settle(0.2)
        lower_priority(SOURCE_NICE)
        ctx.ready.set()
        while not ctx.go.wait(0.1):
            if stop():
                return
        t0 = ctx.t0.value
        fps = src.fps or cfg.source.fps_hz
        while not stop():
            t = time.perf_counter()
            frame = src.read()
            timing["decode"].add(time.perf_counter() - t)
            if frame is None:
                break
            if file_like:
                capture_ns = t0 + int(round(frame.index * 1e9 / fps))
                if cfg.source.realtime:
                    late = (time.monotonic_ns() - capture_ns) / 1e9
                    if late > 1.0 / fps:  # behind the shared clock (slow machine, or a restart):
                        due = int((time.monotonic_ns() - t0) * fps / 1e9) + 1  # jump to the next due
                        skipped += max(1, due - frame.index)  # frame, decoding without converting
                        src.skip_to(due)
                        continue
                    if late < 0:
                        time.sleep(-late)
            else:
                capture_ns = frame.capture_ns
            xy, scores = est(frame.image)
            for k in ("preprocess", "inference", "postprocess"):
                timing[k].add(est.timing.get(f"{k}_s", 0.0))
            kp = np.concatenate([xy + np.array([dx, dy], np.float32), scores[..., None]], axis=-1).astype(np.float32)
            kp[kp[..., 2] <= 0] = 0.0
            t = time.perf_counter()
            tx.send(KeypointFrame(camera, frame.index, capture_ns, cfg.rig.skeleton, kp, wall_ns=frame.wall_ns))
            timing["publish"].add(time.perf_counter() - t)
            sent += 1
            if preview is not None and sent % cap.preview_every == 0:
                _send_preview(preview, cv2, frame, kp, camera, capture_ns, cap.preview_width, dx, dy)
        time.sleep(0.05)
    except Exception as e:  # noqa: BLE001 - reported to the runner (clear message), non-zero exit
        error = f"{type(e).__name__}: {e}"
        raise SystemExit(2) from e
    finally:
        report(ctx, f"source:{camera}", {"sent": sent, "skipped_late": skipped, "provider": provider,
                                          "timing_ms": {k: w.summary() for k, w in timing.items()},
                                          **({"error": error} if error else {})})
        tx.close()
        if preview is not None:
            preview.close()
        zctx.term()


def _send_preview(pub, cv2, frame, kp, camera, capture_ns, width, dx, dy) -> None:
    """A small JPEG with the keypoints drawn, on ``preview/<camera>/`` (header map + JPEG bytes)."""
    import msgpack

    h, w = frame.image.shape[:2]
    scale = width / w
    small = cv2.resize(frame.image, (width, max(1, int(round(h * scale)))), interpolation=cv2.INTER_AREA)
    for person in kp:
        for x, y, s in person:
            if s > 0.3:
                cv2.circle(small, (int((x - dx) * scale), int((y - dy) * scale)), 2, (0, 255, 0), -1)
    ok, jpg = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 70])
    if ok:
        header = msgpack.packb({"camera": camera, "frame_index": frame.index, "capture_ns": capture_ns,
                                "width": small.shape[1], "height": small.shape[0]})
        pub._send([pub._topic(b"preview/" + camera.encode() + b"/", None), header, jpg.tobytes()])
