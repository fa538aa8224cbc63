"""Camera processes: one per camera, publishing KeypointFrames to the sync node.

- :func:`source_node`: 2D keypoints without a pose model (virtual subject or OpenPose JSON),
  played in real time or as fast as possible.
- :func:`capture_node`: frames (video, image folder, webcam, stream) -> RTMPose or BlazePose -> KeypointFrames.
"""

from __future__ import annotations

import time
import traceback


from rtkin.core.priority import lower_priority
from rtkin.runtime.config import RunConfig
from rtkin.runtime.node import NodeContext, Stopper, end_topic, fail, load_rig, report
from rtkin.runtime.transport import link_context

__all__ = ["source_node", "capture_node", "capture_input", "capture_models"]

#: Sources and capture processes (upstream) yield to the sync and IK processes (downstream) when
#: the CPU is short: a slot whose frames all arrived is finished before work on the next frames
#: (which cannot be output earlier anyway) - on a machine with cores to spare it changes nothing.
SOURCE_NICE = 3



def source_node(cfg: RunConfig, camera: str, sent_counts, ctx: NodeContext) -> None:
    """Play one camera's KeypointFrames and PUB them to the sync node; ends with the stream.

    ``sent_counts``: a shared int64 array (rig order) where the frames sent are counted (a
    killed source's frames stay counted)."""
    lower_priority(SOURCE_NICE)  # first: a restarted source never starves the sync while it prepares
    stop = Stopper(ctx)
    name = f"source:{camera}"
    try:
        _play_keypoints(cfg, camera, sent_counts, ctx, stop)
    except Exception as e:  # noqa: BLE001 - the reason goes to the runner, then a non-zero exit
        fail(ctx, name, e, cfg.log_dir())
        raise SystemExit(2) from None


def _play_keypoints(cfg: RunConfig, camera: str, sent_counts, ctx: NodeContext, stop: Stopper) -> None:
    from rtkin.capture.keypoints import openpose_frames, shifted, virtual_frames, virtual_scene
    from rtkin.runtime.transport import Publisher

    rig = load_rig(cfg)
    c = rig.index(camera)
    src = cfg.source
    zctx = link_context(cfg, ctx)  # sizes, keys; a remote camera's clock
    tx = Publisher(zctx, cfg.transport.keypoints, bind=False, sndhwm=cfg.transport.sndhwm)
    sent = 0
    try:
        tx.settle(0.2)
        if src.kind == "virtual":
            frames = virtual_frames(virtual_scene(src.virtual, src.fps_hz), rig, camera, cfg.rig.skeleton)
        elif src.kind == "openpose":
            frames = openpose_frames(src.openpose, cfg.path(src.openpose.root), camera, cfg.rig.skeleton, src.fps_hz)
        else:
            raise ValueError(f"unknown source kind {src.kind!r}")
        ctx.ready.set()
        while not ctx.go.wait(0.1):
            if stop():
                return
        t0 = ctx.t0.value
        for frame in frames:
            if stop():
                break
            if src.realtime:
                delay = (t0 + frame.capture_ns - time.monotonic_ns()) / 1e9
                if delay < -1.0 / src.fps_hz:
                    continue  # a restarted camera resumes at the current frame
                if delay > 0:
                    time.sleep(delay)
            elif ctx.flow is not None and not ctx.flow.wait_to_send(frame.capture_ns, stop):
                break
            tx.send(shifted(frame, t0))
            sent += 1
            sent_counts[c] += 1
    finally:
        tx.send_status(end_topic(camera), {"camera": camera, "sent": sent})
        time.sleep(0.05)  # let the last messages leave
        report(ctx, f"source:{camera}", {"sent": sent})
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
    """The pose model spec of a capture run (RTMPose or BlazePose: ``rtkin.capture.backend``); with
    ``allow_download`` rtmlib fetches missing RTMPose weights into its cache (once, with network
    access). Raises ModelNotAvailableError / BlazePoseNotAvailableError / ValueError otherwise."""
    from rtkin.capture.backend import backend_spec

    return backend_spec(cfg.source.capture, cfg.rig.skeleton, cfg.path, allow_download,
                        multi_person=cfg.reconstruction.association.mode == "multi")


def _is_file_like(spec: str) -> bool:
    return not (spec.isdigit() or "://" in spec)


def capture_node(cfg: RunConfig, camera: str, sent_counts, ctx: NodeContext) -> None:
    """One camera: frames -> RTMPose -> KeypointFrames to the sync node (+ optional JPEG preview).

    Video files and image folders play as live cameras on the run's shared clock: frame i is
    captured at ``t0 + i / fps``; in real time a frame that is already late is skipped (a restarted
    camera resumes at the current frame), otherwise every frame is processed. Live sources
    (webcams, streams) are stamped when grabbed.
    """
    import cv2
    import numpy as np

    from rtkin.capture.backend import create_backend
    from rtkin.capture.sources import fit_to_calibration, open_source
    from rtkin.core.messages import KeypointFrame
    from rtkin.core.stats import Window
    from rtkin.runtime.transport import Publisher

    lower_priority(SOURCE_NICE)  # first: a restarted camera never starves the sync while it loads
    stop = Stopper(ctx)
    cap = cfg.source.capture
    rig = load_rig(cfg)
    index = rig.index(camera)
    spec_in = capture_input(cfg, camera, index)
    zctx = link_context(cfg, ctx)  # sizes, keys; a remote camera's clock
    tx = Publisher(zctx, cfg.transport.keypoints, bind=False, sndhwm=cfg.transport.sndhwm)
    preview = None
    timing = {k: Window(5000) for k in ("decode", "preprocess", "inference", "postprocess", "publish")}
    sent, skipped, provider = 0, 0, None
    try:
        est = create_backend(capture_models(cfg), cap,
                             engine_cache_dir=cfg.path(cap.engine_cache_dir) if cap.engine_cache_dir else None)
        provider = est.provider
        print(f"rtkin capture {camera}: {spec_in} -> {est.name} on {provider}", flush=True)
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
                elif ctx.flow is not None and not ctx.flow.wait_to_send(capture_ns - t0, stop):
                    break
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
            sent_counts[index] += 1
            if preview is not None and sent % cap.preview_every == 0:
                _send_preview(preview, cv2, frame, kp, camera, capture_ns, cap.preview_width, dx, dy)
    except Exception as e:  # noqa: BLE001 - reported to the runner (clear message), non-zero exit
        fail(ctx, f"source:{camera}", e, cfg.log_dir())
        raise SystemExit(2) from None
    finally:
        tx.send_status(end_topic(camera), {"camera": camera, "sent": sent})
        time.sleep(0.05)  # let the last messages leave
        report(ctx, f"source:{camera}", {"sent": sent, "skipped_late": skipped, "provider": provider,
                                          "timing_ms": {k: w.summary() for k, w in timing.items()}})
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
