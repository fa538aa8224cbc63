"""Frame sources: the real demo videos, image folders, URLs that fail, reconnection with a fake
backend, the newest-frame mode, and the frame-size vs calibration policy. No camera, no network."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from rtkin.core import assets
from rtkin.capture.sources import (
    CaptureError,
    Frame,
    ImageFolderSource,
    LatestFrameSource,
    NetworkStreamSource,
    VideoFileSource,
    fit_to_calibration,
    natural_image_files,
    open_source,
    source_kind,
)

# ----------------------------------------------------------------------------- fakes


class FakeCapture:
    """A cv2.VideoCapture stand-in: ``n_frames`` frames (None = endless), then grab() fails.

    Pixel (0, 0) of frame k holds ``k % 256`` (channel 0) so tests can tell frames apart.
    """

    def __init__(self, n_frames: int | None = None, opened: bool = True, size=(32, 24), fps: float = 30.0,
                 grab_s: float = 0.0):
        self.n_frames, self.opened, self.size, self.fps, self.grab_s = n_frames, opened, size, fps, grab_s
        self.count = 0
        self.released = False

    def isOpened(self) -> bool:  # noqa: N802
        return self.opened and not self.released

    def grab(self) -> bool:
        if not self.isOpened() or (self.n_frames is not None and self.count >= self.n_frames):
            return False
        if self.grab_s:
            time.sleep(self.grab_s)
        self.count += 1
        return True

    def retrieve(self):
        img = np.zeros((self.size[1], self.size[0], 3), np.uint8)
        img[0, 0, 0] = (self.count - 1) % 256
        return True, img

    def get(self, prop: int) -> float:
        return {cv2.CAP_PROP_FPS: self.fps, cv2.CAP_PROP_FRAME_WIDTH: self.size[0],
                cv2.CAP_PROP_FRAME_HEIGHT: self.size[1],
                cv2.CAP_PROP_FRAME_COUNT: self.n_frames or 0}.get(prop, 0.0)

    def release(self) -> None:
        self.released = True


class ScriptedFactory:
    """Returns the scripted captures in turn (the last one repeats); records when it was called."""

    def __init__(self, *captures: FakeCapture):
        self.captures = list(captures)
        self.calls: list[float] = []

    def __call__(self) -> FakeCapture:
        self.calls.append(time.monotonic())
        return self.captures.pop(0) if len(self.captures) > 1 else self.captures[0]


def down() -> FakeCapture:
    return FakeCapture(opened=False)


# ----------------------------------------------------------------------------- demo video


@pytest.fixture(scope="module")
def demo_video() -> Path:
    try:
        return assets.demo_videos()["cam01"]
    except assets.AssetNotFoundError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def fast_frames(demo_video) -> list[Frame]:
    with open_source(demo_video, realtime=False) as src:
        return list(src)


def test_demo_video_as_a_file_source(demo_video):
    with open_source(str(demo_video), realtime=False) as src:
        assert isinstance(src, VideoFileSource) and src.kind == "video" and src.name == "cam01"
        assert src.fps == 60.0 and src.size == (1080, 1920)  # portrait, 1080 wide (calibration: 1088)
        frames = list(src)
    assert len(frames) == 100
    assert [f.index for f in frames] == list(range(100))
    assert all(f.image.shape == (1920, 1080, 3) and f.image.dtype == np.uint8 for f in frames)
    assert all(f.source_fps == 60.0 for f in frames)
    cap = np.array([f.capture_ns for f in frames])
    assert np.all(np.diff(cap) > 0)
    assert abs(frames[-1].wall_ns - time.time_ns()) < 60e9
    assert src.frames_read == 100 and src.frames_dropped == 0 and src.read_failures == 0
    assert src.read() is None  # closed


def test_realtime_pacing_is_never_faster_than_the_frame_rate_and_gives_the_same_frames(demo_video, fast_frames):
    t0 = time.monotonic()
    with open_source(demo_video, realtime=True) as src:
        frames = list(src)
    elapsed = time.monotonic() - t0
    n = frames[-1].index - frames[0].index + 1
    assert elapsed >= (n - 1) / 60.0  # a lower bound only: never a speed assertion
    assert frames[-1].capture_ns - frames[0].capture_ns >= (n - 1) / 60.0 * 1e9 - 1e6
    assert len(frames) + src.frames_dropped == 100  # anything late on a busy machine is counted
    by_index = {f.index: f for f in fast_frames}
    for f in frames:
        assert np.array_equal(f.image, by_index[f.index].image)


def test_decimation_keeps_every_nth_frame_with_source_indices(demo_video, fast_frames):
    with open_source(demo_video, realtime=False, decimate=4) as src:
        frames = list(src)
        assert src.delivered_fps == 15.0 and src.fps == 60.0
        assert src.frames_dropped == 0
    assert [f.index for f in frames] == list(range(0, 100, 4))
    for f in frames:
        assert np.array_equal(f.image, fast_frames[f.index].image)
    with pytest.raises(ValueError):
        open_source(demo_video, decimate=0)


def test_loop_continues_indices_and_restarts_the_video(demo_video, fast_frames):
    with open_source(demo_video, realtime=False, loop=True) as src:
        frames = [src.read() for _ in range(103)]
    assert [f.index for f in frames] == list(range(103))
    assert np.array_equal(frames[100].image, fast_frames[0].image)
    assert np.array_equal(frames[102].image, fast_frames[2].image)


def test_realtime_file_that_decodes_too_slowly_drops_and_counts(tmp_path):
    path = tmp_path / "slow.mp4"
    path.write_bytes(b"not read: the capture is faked")
    # 100 fps nominal, 20 ms per decode: about every other frame is overdue
    src = VideoFileSource(path, realtime=True, fps=100.0,
                          capture_factory=lambda: FakeCapture(n_frames=30, fps=100.0, grab_s=0.02))
    with src:
        frames = list(src)
    assert src.frames_dropped > 0
    assert len(frames) + src.frames_dropped == 30
    idx = [f.index for f in frames]
    assert idx == sorted(set(idx)) and idx[0] == 0
    assert all(f.image[0, 0, 0] == f.index for f in frames)  # each index is that source frame


# ----------------------------------------------------------------------------- image folder


def _write_folder(folder: Path, numbers, ext=".png") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for n in numbers:
        img = np.full((12, 16, 3), n, np.uint8)
        assert cv2.imwrite(str(folder / f"img{n}{ext}"), img)


def test_image_folder_natural_order_and_playback(tmp_path):
    folder = tmp_path / "cam05"
    _write_folder(folder, [10, 2, 1, 3])
    (folder / "notes.txt").write_text("ignored")
    assert [p.name for p in natural_image_files(folder)] == ["img1.png", "img2.png", "img3.png", "img10.png"]
    assert source_kind(folder) == "folder"
    with open_source(folder, realtime=False) as src:
        assert isinstance(src, ImageFolderSource) and src.name == "cam05"
        assert src.fps == 30.0 and src.size == (16, 12)
        frames = list(src)
    assert [int(f.image[0, 0, 0]) for f in frames] == [1, 2, 3, 10]  # img2 before img10
    assert [f.index for f in frames] == [0, 1, 2, 3]
    assert all(f.source_fps == 30.0 for f in frames)
    with open_source(folder, realtime=False, loop=True, decimate=3) as src:
        frames = [src.read() for _ in range(4)]
    assert [f.index for f in frames] == [0, 3, 6, 9]
    assert [int(f.image[0, 0, 0]) for f in frames] == [1, 10, 3, 2]


def test_image_folder_realtime_at_given_fps(tmp_path):
    _write_folder(tmp_path / "f", range(6))
    t0 = time.monotonic()
    with open_source(tmp_path / "f", fps=50.0) as src:
        frames = list(src)
    assert len(frames) + src.frames_dropped == 6
    assert time.monotonic() - t0 >= (frames[-1].index - frames[0].index) / 50.0


def test_unreadable_image_is_counted_and_skipped(tmp_path):
    folder = tmp_path / "f"
    _write_folder(folder, [1, 3])
    (folder / "img2.jpg").write_bytes(b"not a jpeg")
    with open_source(folder, realtime=False) as src:
        frames = list(src)
    assert [int(f.image[0, 0, 0]) for f in frames] == [1, 3]
    assert [f.index for f in frames] == [0, 2]
    assert src.read_failures == 1


def test_bad_folder_and_nonexistent_path_raise_capture_error(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "a.txt").write_text("x")
    with pytest.raises(CaptureError, match="no images in folder .*empty"):
        open_source(tmp_path / "empty")
    missing = tmp_path / "nope" / "cam01.mp4"
    with pytest.raises(CaptureError, match=f"no such file or directory: {missing}"):
        open_source(str(missing))
    bad_video = tmp_path / "broken.mp4"
    bad_video.write_bytes(b"\0" * 1000)
    with pytest.raises(CaptureError, match="cannot open video file .*broken.mp4"):
        open_source(bad_video)


# ----------------------------------------------------------------------------- registry, URLs, webcams


def test_registry_selects_by_spec(tmp_path, demo_video):
    assert source_kind(0) == "webcam" and source_kind("3") == "webcam"
    for url in ("rtsp://h/x", "HTTP://h/x", "https://h/x", "udp://h:1", "tcp://h:1"):
        assert source_kind(url) == "network"
    assert source_kind(tmp_path) == "folder" and source_kind(str(demo_video)) == "video"
    with pytest.raises(CaptureError, match="unsupported URL scheme 'ftp'"):
        source_kind("ftp://h/x")
    with pytest.raises(CaptureError):
        source_kind(True)
    with pytest.raises(TypeError, match="does not accept option.*bogus"):
        open_source(demo_video, bogus=1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("url, kwargs", [
    ("rtsp://127.0.0.1:9/none", {}),  # loopback, closed port: refused
    (f"http://127.0.0.1:{_free_port()}/stream.mjpg", {}),
    (f"udp://127.0.0.1:{_free_port()}", {"open_timeout_s": 0.5}),  # nothing arrives: the timeout bounds it
])
def test_unopenable_url_fails_fast_naming_the_url(url, kwargs):
    t0 = time.monotonic()
    with pytest.raises(CaptureError) as err:
        open_source(url, **kwargs)
    assert time.monotonic() - t0 < 4.0
    assert url in str(err.value) and "cannot open network stream" in str(err.value)


def test_url_credentials_are_masked():
    src = open_source("rtsp://admin:secret@cam.local:554/live", capture_factory=lambda: FakeCapture())
    with src:
        assert src.name == "rtsp://admin:***@cam.local:554/live"
    with pytest.raises(CaptureError) as err:
        open_source("rtsp://admin:secret@127.0.0.1:9/live")
    assert "secret" not in str(err.value) and "admin:***@127.0.0.1:9" in str(err.value)


def test_webcam_that_does_not_open_is_named():
    with pytest.raises(CaptureError, match=r"cannot open webcam 3 \(no such device"):
        open_source("3", capture_factory=down)
    with open_source(0, capture_factory=lambda: FakeCapture(n_frames=3), reconnect=None) as cam:
        assert cam.kind == "webcam" and cam.name == "webcam0" and cam.fps == 30.0
        assert [f.index for f in cam] == [0, 1, 2]


# ----------------------------------------------------------------------------- reconnection


def test_reconnect_with_exponential_backoff_and_counters():
    # 3 frames, then the stream drops; 4 reopen attempts fail, the 5th works
    factory = ScriptedFactory(FakeCapture(n_frames=3), down(), down(), down(), down(), FakeCapture())
    src = NetworkStreamSource("rtsp://cam.local/live", capture_factory=factory, backoff_initial_s=0.01,
                              backoff_max_s=0.04, max_reconnect_s=5.0)
    with src:
        frames = [src.read() for _ in range(6)]
    assert [f.index for f in frames] == list(range(6))
    assert list(src.reconnect_waits_s) == [0.01, 0.02, 0.04, 0.04, 0.04]  # doubling, capped
    assert src.reconnects == 1 and src.read_failures == 1 and src.frames_read == 6
    gaps = np.diff(factory.calls)
    assert np.all(gaps[1:] >= np.array([0.02, 0.04, 0.04, 0.04]) - 1e-3)  # it really waited
    assert np.all(np.diff([f.capture_ns for f in frames]) > 0)


def test_defaults_follow_half_second_doubling_to_eight():
    src = NetworkStreamSource("rtsp://cam.local/live", capture_factory=lambda: FakeCapture())
    p = src.reconnect_policy
    assert (p.initial_s, p.max_s) == (0.5, 8.0)
    src.close()


def test_gives_up_after_the_reconnect_budget():
    factory = ScriptedFactory(FakeCapture(n_frames=2), down())
    src = NetworkStreamSource("rtsp://cam.local/live", capture_factory=factory, backoff_initial_s=0.02,
                              backoff_max_s=0.05, max_reconnect_s=0.2)
    assert [src.read().index for _ in range(2)] == [0, 1]
    t0 = time.monotonic()
    with pytest.raises(CaptureError, match=r"rtsp://cam.local/live: stream lost .*giving up"):
        src.read()
    assert time.monotonic() - t0 < 2.0  # the budget (0.2 s) bounds it, not a speed check
    assert src.reconnects == 0 and sum(src.reconnect_waits_s) <= 0.2
    src.close()


def test_reconnect_false_ends_the_stream():
    src = open_source("http://cam.local/video", capture_factory=lambda: FakeCapture(n_frames=2), reconnect=False)
    assert [f.index for f in src] == [0, 1]
    assert src.read_failures == 1 and src.read() is None
    src.close()


def test_close_interrupts_a_backoff_wait_promptly():
    factory = ScriptedFactory(FakeCapture(n_frames=1), down())
    src = NetworkStreamSource("rtsp://cam.local/live", capture_factory=factory, backoff_initial_s=30.0,
                              backoff_max_s=30.0, max_reconnect_s=600.0)
    assert src.read().index == 0
    result: list = []
    reader = threading.Thread(target=lambda: result.append(src.read()))
    reader.start()
    time.sleep(0.1)  # the reader is now in its 30 s wait
    t0 = time.monotonic()
    src.close()
    reader.join(5.0)
    assert not reader.is_alive() and result == [None]
    assert time.monotonic() - t0 < 2.0  # not 30 s
    assert list(src.reconnect_waits_s) == [30.0]


def test_a_live_size_change_is_an_error():
    factory = ScriptedFactory(FakeCapture(n_frames=1, size=(32, 24)), FakeCapture(size=(64, 48)))
    src = NetworkStreamSource("rtsp://cam.local/live", capture_factory=factory, backoff_initial_s=0.01)
    assert src.read().size == (32, 24)
    with pytest.raises(CaptureError, match="size changed"):
        src.read()
    src.close()


# ----------------------------------------------------------------------------- newest-frame mode


def test_threaded_mode_gives_the_newest_frame_to_a_slow_consumer():
    cam = FakeCapture(grab_s=0.002)  # ~500 fps camera
    src = open_source(0, capture_factory=lambda: cam, threaded=True)
    assert isinstance(src, LatestFrameSource) and src.kind == "webcam"
    frames = []
    with src:
        for _ in range(5):
            frames.append(src.read())
            time.sleep(0.03)  # a slow consumer
        latest_grabbed = cam.count - 1
        newest = src.read()
    idx = [f.index for f in frames]
    assert idx == sorted(set(idx))
    assert src.frames_dropped >= idx[-1] + 1 - len(frames) > 0  # every skipped index was dropped, counted
    assert newest.index >= latest_grabbed - 2  # the newest frame, not a stale one
    assert newest.capture_ns <= time.monotonic_ns() and all(f.image[0, 0, 0] == f.index % 256 for f in frames)
    assert src.read() is None  # closed


def test_threaded_mode_ends_and_raises_like_the_wrapped_source():
    src = open_source("rtsp://cam.local/x", threaded=True, backoff_initial_s=0.01, max_reconnect_s=0.05,
                      capture_factory=ScriptedFactory(FakeCapture(n_frames=1), down()))
    assert src.read().index == 0
    with pytest.raises(CaptureError, match="giving up"):
        src.read()
    src.close()
    with open_source("http://cam.local/x", threaded=True, reconnect=False,
                     capture_factory=lambda: FakeCapture(n_frames=2)) as src:
        got = list(src)
    assert 1 <= len(got) <= 2 and got[-1].index == 1  # the last frame always arrives


def test_threaded_close_is_prompt_during_a_backoff():
    src = open_source("rtsp://cam.local/x", threaded=True, backoff_initial_s=30.0, backoff_max_s=30.0,
                      capture_factory=ScriptedFactory(FakeCapture(n_frames=1), down()))
    assert src.read().index == 0
    time.sleep(0.05)  # the grabber is in its 30 s wait
    t0 = time.monotonic()
    src.close()
    assert time.monotonic() - t0 < 2.0 and src.read() is None  # not 30 s


# ----------------------------------------------------------------------------- size vs calibration


def test_fit_to_calibration_policy():
    assert fit_to_calibration((1088, 1920), (1088, 1920))[:2] == (0.0, 0.0)
    dx, dy, note = fit_to_calibration((1080, 1920), (1088, 1920), name="cam01")
    assert (dx, dy) == (4.0, 0.0) and "cam01" in note and "centred crop" in note
    assert fit_to_calibration((1922, 1080), (1920, 1080))[:2] == (-1.0, 0.0)
    with pytest.raises(CaptureError, match=r"cam02: frame size 960x540 .* 1920x1080 \(same aspect ratio"):
        fit_to_calibration((960, 540), (1920, 1080), name="cam02")
    with pytest.raises(CaptureError):
        fit_to_calibration((1080, 1920), (1104, 1920))  # 24 px is not a crop margin
    assert fit_to_calibration((1080, 1920), (1104, 1920), max_crop_px=24)[0] == 12.0


def test_demo_crop_offset_centres_cam02_on_the_native_cameras(demo_rig, demo_keypoints_dir):
    """The measurement behind fit_to_calibration's policy (numbers in its docstring)."""
    from rtkin.io.openpose import read_openpose_folder
    from rtkin.reconstruct.triangulation import TriangulationSettings, Triangulator

    data = {c: read_openpose_folder(demo_keypoints_dir / f"{c}_json", 17) for c in ("cam02", "cam03", "cam04")}
    two = Triangulator(demo_rig.subset(["cam03", "cam04"]), TriangulationSettings(max_error_px=1e9,
                                                                                 exclusion_threshold_px=1e9))
    dx_policy = fit_to_calibration((1080, 1920), demo_rig["cam02"].size)[0]
    med = {}
    for dx in (0.0, dx_policy, 8.0):
        res = []
        for f in sorted(data["cam03"]):
            ref = demo_rig["cam02"].project(two(np.stack([data["cam03"][f][0], data["cam04"][f][0]])).points)
            dets = data["cam02"][f].copy()
            dets[..., 0] += dx
            d = dets[int(np.argmin([np.nanmedian(np.linalg.norm(p[:, :2] - ref, axis=-1)) for p in dets]))]
            ok = d[:, 2] > 0.3
            res.append(d[ok, 0] - ref[ok, 0])
        med[dx] = float(np.nanmedian(np.concatenate(res)))
    assert abs(med[dx_policy]) < min(abs(med[0.0]), abs(med[8.0])), med  # measured -4.2, -0.2, +3.8 px


def test_frame_validates_its_image():
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        Frame(np.zeros((4, 4), np.uint8), 0, 0, 0, 30.0)
    with pytest.raises(ValueError):
        Frame(np.zeros((4, 4, 3), np.float32), 0, 0, 0, 30.0)
