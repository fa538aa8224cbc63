"""Capture processes end to end: real demo video frames -> RTMPose-shaped ONNX models -> sync.

No network and no real weights: small generated ONNX models with RTMPose's and a detector's
signatures (tests/onnx_models.py) run through the real capture node on the Pose2Sim demo videos.
"""

from __future__ import annotations

import dataclasses
import threading
import time

import cv2
import msgpack
import numpy as np
import pytest
import zmq

from rtkin.cli import main
from rtkin.runtime.config import CaptureSettings, RunConfig, RunSettings, SourceSettings, SyncSettings, TransportSettings
from rtkin.core.messages import KeypointFrame
from rtkin.io.recording import INPUT, RecordingReader
from rtkin.runtime.runner import Runner
from rtkin.runtime.transport import Receiver, settle

from onnx_models import make_detector_model, make_rtmpose_model


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    return str(make_rtmpose_model(d / "pose.onnx", K=26)), str(make_detector_model(d / "det.onnx"))


def _config(tmp_path, models, realtime, loop=False, preview=False, duration_s=0.0, inputs=(), fps=0.0):
    pose, det = models
    cap = CaptureSettings(pose_model=pose, det_model=det, loop=loop, preview=preview, inputs=tuple(inputs), fps=fps,
                          preview_endpoint=f"ipc://{tmp_path}/preview_{{camera}}.sock")
    src = SourceSettings(kind="capture", realtime=realtime, capture=cap)
    sync = SyncSettings() if realtime else SyncSettings(max_wait_ms=5000, stale_ms=20000, max_pending_slots=100_000)
    return dataclasses.replace(
        RunConfig(), run=RunSettings(name="cap", output_dir=str(tmp_path / "out"), duration_s=duration_s),
        source=src, sync=sync,
        transport=TransportSettings(keypoints=f"ipc://{tmp_path}/kp.sock", outputs=f"ipc://{tmp_path}/out.sock",
                                    angles=f"ipc://{tmp_path}/ik{{worker}}.sock"))


def test_demo_without_weights_fails_fast_with_the_way_out(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_cache"))  # rtmlib's cache: empty
    t = time.monotonic()
    assert main(["demo", "--pose", "rtmpose", "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert time.monotonic() - t < 10.0  # offline: a clear message within seconds, not a hang
    assert "--pose-model PATH" in err and "rtkin demo --synthetic" in err and "Traceback" not in err


def test_capture_nodes_on_the_demo_videos_feed_the_sync(tmp_path, models):
    cfg = _config(tmp_path, models, realtime=False, preview=True)
    got_preview = []
    stop = threading.Event()

    def listen():
        ctx = zmq.Context()
        s = ctx.socket(zmq.SUB)
        s.setsockopt(zmq.SUBSCRIBE, b"preview/")
        s.connect(f"ipc://{tmp_path}/preview_cam02.sock")
        while not stop.is_set():
            if s.poll(50):
                got_preview.append(s.recv_multipart())
        s.close()
        ctx.destroy(linger=0)

    th = threading.Thread(target=listen, daemon=True)
    th.start()
    runner = Runner(cfg, log=lambda *a: None)
    result = runner.run()
    stop.set()
    th.join(2)
    assert not result.errors, result.errors
    sync = result.reports["sync"]["sync"]
    assert sync["framesets"] == 100 and sync["incomplete"] == 0 and sync["late"] == 0
    for cam in ("cam01", "cam02", "cam03", "cam04"):
        rep = result.reports[f"source:{cam}"]
        assert rep["sent"] == 100 and rep["provider"] == "CPUExecutionProvider"
        assert set(rep["timing_ms"]) >= {"decode", "preprocess", "inference", "postprocess", "publish"}
    frames = [r.message for r in RecordingReader(runner.recording_file()) if r.kind == INPUT]
    assert len(frames) == 400
    cam01 = [f for f in frames if f.camera == "cam01"]
    assert [f.frame_index for f in cam01] == list(range(100))
    kp = cam01[10].keypoints
    assert kp.shape == (1, 26, 3) and (kp[..., 2] > 0.5).all()
    assert (kp[..., 0] > 0).all() and (kp[..., 0] < 1088).all() and (kp[..., 1] < 1920).all()
    assert got_preview, "no preview received"
    header = msgpack.unpackb(got_preview[-1][1])
    img = cv2.imdecode(np.frombuffer(got_preview[-1][2], np.uint8), cv2.IMREAD_COLOR)
    assert header["camera"] == "cam02" and img.shape[1] == 320 and header["width"] == 320


@pytest.fixture(scope="module")
def image_folders(tmp_path_factory):
    """20 real frames of each demo video as JPEG folders (lighter to play live than 60 fps video)."""
    from rtkin.core import assets

    root = tmp_path_factory.mktemp("frames")
    for cam, video in assets.demo_videos().items():
        folder = root / cam
        folder.mkdir()
        cap = cv2.VideoCapture(str(video))
        for i in range(20):
            ok, img = cap.read()
            assert ok
            cv2.imwrite(str(folder / f"{cam}_{i}.jpg"), img)
        cap.release()
    return [str(root / c) for c in ("cam01", "cam02", "cam03", "cam04")]


def test_a_killed_capture_process_rejoins(tmp_path, models, image_folders):
    cfg = _config(tmp_path, models, realtime=True, loop=True, duration_s=0.0, inputs=image_folders, fps=15.0)
    runner = Runner(cfg, log=lambda *a: None)
    ctx = zmq.Context()
    rx = Receiver(ctx, cfg.transport.outputs, [b"tap/"], bind=False, rcvhwm=1_000_000)
    events = {}
    taps = []

    def tick(r):
        while True:
            got = rx.recv(0)
            if got is None:
                break
            if isinstance(got.message, KeypointFrame):
                taps.append((time.monotonic_ns(), got.message))
        t = (time.monotonic_ns() - r.t0_ns) / 1e9
        if t > 1.0 and "kill" not in events:
            r.kill_source("cam03")
            events["kill"] = time.monotonic_ns()
        if t > 2.0 and "restart" not in events:
            r.restart_source("cam03")
            events["restart"] = time.monotonic_ns()
        if "restart" in events:  # liveness: wait for it to stream again (30 s bound on a busy machine)
            back = sum(1 for tt, f in taps if f.camera == "cam03" and tt > events["restart"])
            if back > 15 or time.monotonic_ns() - events["restart"] > 30e9:
                events.setdefault("stop_s", t)
                r.request_stop()

    runner.start()
    settle(rx.socket)
    result = runner.run(on_tick=tick)
    rx.close()
    ctx.destroy(linger=0)
    assert not result.errors, result.errors
    cam03 = [(t, f) for t, f in taps if f.camera == "cam03"]
    before = [f for t, f in cam03 if t < events["kill"]]
    after = [f for t, f in cam03 if t > events["restart"]]
    assert before and len(after) > 10  # it came back and streams again (15 fps)
    # it resumed at the current frame of the shared clock (not from the start of the video)
    # (capture times are on the run's monotonic clock: a frame from the start would be seconds old)
    assert all(0 <= t - f.capture_ns < 1.0e9 for t, f in cam03 if t > events["restart"])
    # the other cameras kept the output going all along (15 slots a second; half of them at least)
    assert result.reports["sync"]["sync"]["framesets"] > 0.5 * 15 * events["stop_s"]
