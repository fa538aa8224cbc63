"""Process entry points: thin shells around the stages (receive, call, send, count).

- :func:`sync_node`: SUB KeypointFrames -> :class:`~rtkin.reconstruct.pipeline.Pipeline` -> PUB Skeleton3D;
  every received frame is re-published on ``tap/`` with its receive time so the recorder logs
  exactly what the pipeline saw (a replay of the log reproduces the outputs).
- :func:`recorder_node`: SUB ``tap/`` (+ ``sk3d/``) -> crash-safe recording file.
- :func:`source_node`: one camera's KeypointFrames (virtual subject or OpenPose JSON) -> PUB,
  played in real time or as fast as possible.

Each runs in its own process, stops on SIGTERM/SIGINT or when its parent dies, and reports final
counters on a multiprocessing queue.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import traceback
from dataclasses import dataclass

import zmq

from rtkin.runtime.config import RunConfig
from rtkin.runtime.leases import lower_priority

__all__ = ["NodeContext", "sync_node", "recorder_node", "source_node", "load_rig"]

STATUS_INTERVAL_S = 1.0
RECORDER_NICE = 5  # the recorder buffers; it can wait behind the sync and IK processes
#: Sources and capture processes (upstream) yield to the sync and IK processes (downstream) when
#: the CPU is short: a slot whose frames all arrived is finished before work on the next frames
#: (which cannot be output earlier anyway) - on a machine with cores to spare it changes nothing.
SOURCE_NICE = 3
IDLE_POLL_S = 0.05  # a FREE IK worker looks for an unserved person this often


@dataclass
class NodeContext:
    """What a node process gets from the runner: events, a results queue, the stream start.

    Sources prepare their frames, set ``ready``, wait for ``go`` and then read ``t0`` (a shared
    int64: the run's stream start, monotonic ns), so slow process start-up never eats frames.
    """

    stop: object  # multiprocessing.Event
    ready: object  # multiprocessing.Event
    results: object  # multiprocessing.Queue
    go: object = None  # multiprocessing.Event, shared by the sources
    t0: object = None  # multiprocessing.Value("q"), shared by the sources


class _Stopper:
    """SIGTERM / SIGINT / parent death -> stop (checked by the node loops)."""

    def __init__(self, ctx: NodeContext):
        self.ctx = ctx
        self.parent = os.getppid()
        self.flag = False
        signal.signal(signal.SIGTERM, self._handle)
        signal.signal(signal.SIGINT, self._handle)

    def _handle(self, *_):
        self.flag = True

    def __call__(self) -> bool:
        return self.flag or self.ctx.stop.is_set() or os.getppid() != self.parent


def load_rig(cfg: RunConfig):
    """The run's rig: the configured calibration (or the Pose2Sim demo rig), cameras in order."""
    from rtkin.sim import virtual
    from rtkin.core.calibration import load_calib

    rig = load_calib(cfg.path(cfg.rig.calibration)) if cfg.rig.calibration else virtual.demo_rig()
    return rig.subset(cfg.rig.cameras) if cfg.rig.cameras else rig


def _quiet_gc() -> None:
    """Latency-critical loops: move everything allocated during start-up (models, compiled
    kernels) out of the collector's sight and collect young objects less often, so a full
    collection does not land in the middle of a frame."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 1000)


def _report(ctx: NodeContext, name: str, payload: dict) -> None:
    try:
        ctx.results.put((name, payload), timeout=1.0)
    except Exception:  # noqa: BLE001 - a full/closed queue must not turn a clean exit into a crash
        pass


# ----------------------------------------------------------------------------- sync


def sync_node(cfg: RunConfig, ctx: NodeContext) -> None:
    """SUB KeypointFrames -> Pipeline -> PUB Skeleton3D (+ tap, status). Runs until stopped."""
    from rtkin.core.messages import KeypointFrame
    from rtkin.reconstruct.pipeline import Pipeline
    from rtkin.runtime.transport import Publisher, Receiver

    stop = _Stopper(ctx)
    rig = load_rig(cfg)
    pipe = Pipeline(rig, cfg.rig.skeleton, cfg.sync, cfg.reconstruction)
    pipe.reconstructor.defer_health = True  # the calibration check runs after publishing
    zctx = zmq.Context()
    rx = Receiver(zctx, cfg.transport.keypoints, [b"kp/"], bind=True, rcvhwm=cfg.transport.rcvhwm)
    tx = Publisher(zctx, cfg.transport.outputs, bind=True, sndhwm=cfg.transport.sndhwm)
    _warm_up(pipe)
    tx.settle(0.05)
    _quiet_gc()
    ctx.ready.set()
    wrong_type = 0
    seen_events = 0
    next_status = time.monotonic() + STATUS_INTERVAL_S
    try:
        while not stop():
            timeout = _poll_timeout_ms(pipe)
            got = rx.recv(timeout)
            now = time.monotonic_ns()
            if got is None:
                outs = pipe.poll(now)
            elif isinstance(got.message, KeypointFrame):
                outs = pipe.push(got.message, now)
            else:
                wrong_type += 1
                outs = []
            for sk, arrival in zip(outs, pipe.last_arrival_ns):
                tx.send(sk, stamp_ns=arrival or None)
            if got is not None and isinstance(got.message, KeypointFrame):
                # after the outputs: re-encoding the frame for the recorder is off the latency path
                tx.send(got.message, base=b"tap/", stamp_ns=now)
            pipe.reconstructor.run_deferred()
            health = pipe.reconstructor.health
            if health is not None and len(health.events) > seen_events:
                for cam, what in health.events[seen_events:]:
                    print(f"rtkin: calibration check: {cam} reprojection error alarm {what} "
                          f"({health.status()['cameras'][cam]})", file=sys.stderr, flush=True)
                seen_events = len(health.events)
                tx.send_status("sync", {**pipe.status(), "receiver": rx.counters.as_dict(), "wrong_type": wrong_type})
            if time.monotonic() >= next_status:
                tx.send_status("sync", {**pipe.status(), "receiver": rx.counters.as_dict(), "wrong_type": wrong_type})
                next_status = time.monotonic() + STATUS_INTERVAL_S
        for sk in pipe.flush():
            tx.send(sk)
        pipe.reconstructor.run_deferred()
        time.sleep(0.05)  # let the last messages leave
    finally:
        final = {**pipe.status(), "receiver": rx.counters.as_dict(), "wrong_type": wrong_type}
        timings = {k: w.values().tolist() for k, w in pipe.timing.items()}
        _report(ctx, "sync", {**final, "samples_s": timings, "latency_s": pipe.latency.values().tolist()})
        rx.close()
        tx.close()
        zctx.term()


def _poll_timeout_ms(pipe) -> int:
    deadline = pipe.sync.next_deadline_ns()
    if deadline is None:
        return 20
    return int(min(20, max(0, (deadline - time.monotonic_ns()) / 1e6 + 0.5)))


def _warm_up(pipe) -> None:
    """Compile / load every kernel before the first real frame (no first-frame latency spike; a
    fresh install has no Numba cache yet): one made-up FrameSet through the reconstructor, which
    is then reset (tracks, filters, calibration check)."""
    import numpy as np

    from rtkin.core.messages import FrameSet, KeypointFrame

    rig, sk = pipe.rig, pipe.reconstructor.skeleton
    rng = np.random.default_rng(0)
    frames = []
    for i, cam in enumerate(rig.cameras):
        kp = np.zeros((2, sk.n_keypoints, 3), dtype=np.float32)
        kp[..., 0] = rng.uniform(0, cam.size[0], kp.shape[:2])
        kp[..., 1] = rng.uniform(0, cam.size[1], kp.shape[:2])
        kp[..., 2] = 0.9
        frames.append(KeypointFrame(cam.name, 0, 0, sk.name, kp))
    try:
        pipe.reconstructor(FrameSet(0, rig.names, tuple(frames)))
        pipe.reconstructor.run_deferred()
    finally:
        pipe.reconstructor.reset()


# ----------------------------------------------------------------------------- IK


def ik_node(cfg: RunConfig, worker: int, incarnation: int, leases, ctx: NodeContext) -> None:
    """One person's IK: SUB Skeleton3D -> IKStage -> PUB JointAngles ``ja/<id>/`` (see
    :mod:`rtkin.runtime.leases`).

    FREE, the worker drains the stream every ``IDLE_POLL_S`` and claims a person nobody serves;
    serving, it blocks on the stream and solves every frame of its person, until the person has
    been gone for ``ik.release_after_s`` of stream time (Skeleton3D times: a stream processed
    slower than real time, e.g. every video frame through RTMPose on a CPU, does not release
    anybody; IK and scaling state dropped, slot FREE again). Each
    JointAngles message is stamped with the receive time of the last camera frame of its slot
    (the sync node's ``sk3d/`` stamp), so subscribers can measure the end-to-end latency.
    """
    import dataclasses

    from rtkin.runtime.config import angles_endpoints
    from rtkin.kinematics.ik import IKStage
    from rtkin.runtime.leases import FREE, RETIRING
    from rtkin.core.messages import Skeleton3D
    from rtkin.core.stats import Window
    from rtkin.runtime.transport import Publisher, Receiver

    stop = _Stopper(ctx)
    stage = IKStage(dataclasses.replace(cfg.ik.solver, skeleton=cfg.rig.skeleton))
    zctx = zmq.Context()
    rx = Receiver(zctx, cfg.transport.outputs, [b"sk3d/"], bind=False, rcvhwm=cfg.transport.rcvhwm)
    tx = Publisher(zctx, angles_endpoints(cfg)[worker], bind=True, sndhwm=cfg.transport.sndhwm)
    timing, latency, e2e = Window(), Window(), Window(100_000)
    scalers: dict[int, object] = {}
    scaled: dict[int, str] = {}
    switches: dict[int, tuple] = {}
    pool = None
    if cfg.ik.scaling:  # the background scaling process starts now, not mid-session
        from rtkin.kinematics.scaling import background_executor

        pool = background_executor(warm=True)
    rx.settle(0.2)
    _quiet_gc()
    leases.set(worker, FREE)
    ctx.ready.set()
    outputs = 0
    person: int | None = None
    last_seen_ns = stream_ns = 0  # stream time (Skeleton3D.time_ns): a slow stream never looks like a leave
    served: list[int] = []
    next_status = time.monotonic() + STATUS_INTERVAL_S

    def release(why: str) -> None:
        nonlocal person
        stage.forget(person)
        scalers.pop(person, None)
        switches.pop(person, None)
        leases.release(worker, person)
        print(f"rtkin: ik worker {worker} released person {person} ({why})", file=sys.stderr, flush=True)
        person = None

    try:
        while not stop():
            if person is None:
                if leases.state(worker) == RETIRING:
                    break
                time.sleep(IDLE_POLL_S)
                newest = None
                while (got := rx.recv(0)) is not None:
                    if isinstance(got.message, Skeleton3D):
                        newest = got.message
                if newest is not None and newest.n_people:
                    person = leases.claim(worker, newest.person_ids)
                    if person is not None:
                        served.append(person)
                        last_seen_ns = stream_ns = newest.time_ns
                        print(f"rtkin: ik worker {worker} serves person {person}", file=sys.stderr, flush=True)
                continue
            got = rx.recv(50)
            if got is not None and isinstance(got.message, Skeleton3D):
                sk = got.message
                stream_ns = max(stream_ns, sk.time_ns)
                mine = [i for i, pid in enumerate(sk.person_ids) if int(pid) == person]
                if mine:
                    last_seen_ns = max(last_seen_ns, sk.time_ns)
                    sk = _people(sk, mine) if sk.n_people > 1 else sk
                    if cfg.ik.scaling:
                        _scale_people(cfg, sk, stage, scalers, scaled, switches, pool)
                    if not (cfg.ik.scaling and cfg.ik.until_scaled == "wait" and person not in scaled):
                        t = time.perf_counter()
                        angles = stage(sk)
                        timing.add(time.perf_counter() - t)
                        for ja in angles:
                            tx.send(ja, stamp_ns=got.stamp_ns)
                            now = time.monotonic_ns()
                            latency.add((now - ja.capture_ns) * 1e-9)
                            if got.stamp_ns:
                                e2e.add((now - got.stamp_ns) * 1e-9)
                            outputs += 1
            if switches:
                _advance_switches(switches, scaled)
            if person is not None and stream_ns - last_seen_ns > cfg.ik.release_after_s * 1e9:
                release(f"not seen for {cfg.ik.release_after_s:g} s of stream")
            if time.monotonic() >= next_status:
                tx.send_status(f"ik{worker}", {"person": person, "counters": dict(stage.counters),
                                               "timing_ms": timing.summary(), "latency_ms": latency.summary(),
                                               "e2e_ms": e2e.summary()})
                next_status = time.monotonic() + STATUS_INTERVAL_S
        time.sleep(0.05)
    finally:
        if person is not None:
            leases.release(worker, person)
        _report(ctx, f"ik:{worker}#{incarnation}", {"worker": worker, "outputs": outputs, "served": served, "counters": dict(stage.counters),
                                      "scaled_models": scaled, "timing_ms": timing.summary(),
                                      "latency_ms": latency.summary(), "e2e_ms": e2e.summary(),
                                      "e2e_s": e2e.values().tolist(), "receiver": rx.counters.as_dict()})
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        rx.close()
        tx.close()
        zctx.term()


def _scale_people(cfg: RunConfig, sk, stage, scalers: dict, scaled: dict, switches: dict, executor=None) -> None:
    """Feed each unscaled person's OnlineScaler; when their scaled model is written, queue the
    switch to it (``switches[pid]``: a generator the loop advances one short step per frame gap)."""
    from rtkin.kinematics.scaling import OnlineScaler, ScalingSettings

    out_dir = cfg.path(cfg.run.output_dir)
    for pid in (int(p) for p in sk.person_ids):
        if pid in scaled or pid in switches:
            continue
        scaler = scalers.get(pid)
        if scaler is None:
            out_dir.mkdir(parents=True, exist_ok=True)
            settings = ScalingSettings(skeleton=cfg.rig.skeleton, seconds=cfg.ik.scaling_seconds,
                                       model=cfg.ik.solver.model, height_m=cfg.ik.height_m, mass_kg=cfg.ik.mass_kg)
            scaler = scalers[pid] = OnlineScaler(settings, out_dir / f"{cfg.run.name}_person{pid}_scaled.osim",
                                                 person_id=pid, background=True, executor=executor)
        path = scaler(sk)
        if path is not None:
            switches[pid] = (path, stage.switch_model(pid, path, scaler.result.factors, cfg.ik.mass_kg or None))
            for w in scaler.result.warnings:
                print(f"rtkin: person {pid} scaling: {w}", file=sys.stderr, flush=True)


def _advance_switches(switches: dict, scaled: dict) -> None:
    """One step of each pending model switch (called in the gap after a published frame)."""
    for pid in list(switches):
        path, steps = switches[pid]
        if next(steps, StopIteration) is StopIteration:
            del switches[pid]
            scaled[pid] = str(path)
            print(f"rtkin: person {pid} scaled: {path}", file=sys.stderr, flush=True)


def _people(sk, idx):
    """Skeleton3D restricted to the people at indices ``idx``."""
    from rtkin.core.messages import Skeleton3D

    return Skeleton3D(sk.time_ns, sk.capture_ns, sk.skeleton, sk.person_ids[idx], sk.points[idx], sk.scores[idx],
                      sk.reproj_error_px[idx], sk.n_views[idx])


# ----------------------------------------------------------------------------- recorder


def recorder_node(cfg: RunConfig, ctx: NodeContext) -> None:
    """SUB ``tap/`` (+ ``sk3d/``) -> RecordingWriter. Flushes periodically; closes on stop."""
    from rtkin.core.calibration import write_calib_toml
    from rtkin.core.codec import pack_frames
    from rtkin.io.recording import INPUT, OUTPUT, RecordingWriter
    from rtkin.runtime.transport import Receiver

    stop = _Stopper(ctx)
    path = cfg.recording_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    rig = load_rig(cfg)
    tmp_calib = path.with_suffix(".calib.toml")
    write_calib_toml(rig, tmp_calib)
    meta = {"config": cfg.to_dict(), "calibration_toml": tmp_calib.read_text(), "cameras": list(rig.names),
            "skeleton": cfg.rig.skeleton}
    tmp_calib.unlink()
    topics = [b"tap/"] + ([b"sk3d/", b"ja/"] if cfg.recording.outputs else [])
    zctx = zmq.Context()
    rx = Receiver(zctx, cfg.transport.outputs, topics, bind=False, rcvhwm=100_000)
    if cfg.recording.outputs and cfg.ik.enabled:
        from rtkin.runtime.config import angles_endpoints

        for ep in angles_endpoints(cfg):
            rx.socket.connect(ep)
    counts = {"inputs": 0, "outputs": 0}
    writer = RecordingWriter(path, meta, flush_interval_s=0.1, overwrite=True)
    rx.settle(0.2)  # let the subscription reach the publisher before declaring ready
    lower_priority(RECORDER_NICE)
    ctx.ready.set()
    try:
        while True:
            got = rx.recv_raw(50)
            if got is None:
                writer.flush()  # idle: nothing may stay in the buffer
                if stop():
                    break
                continue
            base, _seq, stamp, frames = got
            # stored as received (the publishers validated them; reading a recording validates
            # again): no decode / re-encode on the machine that runs the live chain
            if base == b"tap/":
                writer.write_packed(pack_frames(frames), stamp if stamp is not None else time.monotonic_ns(), INPUT)
                counts["inputs"] += 1
            elif base.startswith((b"sk3d/", b"ja/")):
                writer.write_packed(pack_frames(frames), time.monotonic_ns(), OUTPUT)
                counts["outputs"] += 1
    finally:
        writer.close()
        _report(ctx, "recorder", {**counts, "receiver": rx.counters.as_dict(), "path": str(path)})
        rx.close()
        zctx.term()


# ----------------------------------------------------------------------------- sources


def source_node(cfg: RunConfig, camera: str, ctx: NodeContext) -> None:
    """Play one camera's KeypointFrames and PUB them to the sync node; ends with the stream."""
    from rtkin.capture.keypoints import openpose_frames, shifted, virtual_frames, virtual_scene
    from rtkin.runtime.transport import Publisher

    stop = _Stopper(ctx)
    rig = load_rig(cfg)
    src = cfg.source
    sent = 0
    error = None
    zctx = zmq.Context()
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
        _report(ctx, f"source:{camera}", {"sent": sent, **({"error": error} if error else {})})
        tx.close()
        zctx.term()


# ----------------------------------------------------------------------------- capture


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
    from rtkin.capture.rtmpose import model_spec, resolve_model

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
    from rtkin.capture.rtmpose import PoseEstimator, select_providers
    from rtkin.core.stats import Window
    from rtkin.runtime.transport import Publisher

    stop = _Stopper(ctx)
    cap = cfg.source.capture
    rig = load_rig(cfg)
    index = rig.index(camera)
    spec_in = capture_input(cfg, camera, index)
    zctx = zmq.Context()
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
        _report(ctx, f"source:{camera}", {"sent": sent, "skipped_late": skipped, "provider": provider,
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
