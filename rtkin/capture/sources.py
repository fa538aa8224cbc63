"""Frame sources for the capture processes: one camera (or video, image folder, stream) each.

:func:`open_source` picks a source from a spec through a registry (no dynamic imports):

=====================================  =======================================================
spec                                   source
=====================================  =======================================================
``int`` or digit string (``"0"``)      :class:`WebcamSource` (``cv2.VideoCapture(index)``)
``rtsp:// http:// https:// udp://``    :class:`NetworkStreamSource` (FFmpeg, bounded timeouts,
``tcp://`` URL                         reconnection with exponential backoff)
existing directory                     :class:`ImageFolderSource` (natural order by the last
                                       number in the file name)
existing file                          :class:`VideoFileSource`
=====================================  =======================================================

Every source is a :class:`FrameSource`: an iterator of :class:`Frame`, ``read() -> Frame | None``
(``None`` = end of stream), ``close()`` (safe from another thread; it interrupts a reconnection
wait at once), a context manager, and counters. ``open_source(spec, threaded=True)`` wraps a source
in :class:`LatestFrameSource`: a background thread grabs continuously and keeps only the newest
frame, so a slow consumer always gets the latest image (older ones are dropped and counted).

Times: ``capture_ns`` is ``time.monotonic_ns()`` (the clock every rtkin process shares) taken when
the frame is grabbed, i.e. as soon as the backend hands the frame over -- before the conversion to
BGR. For a camera that is the arrival time (exposure + transfer + decode latency later than the
exposure). For a file played in real time it is the moment the frame is due (the source decodes
ahead, waits, then stamps). ``wall_ns`` is ``time.time_ns()`` taken at the same moment, for use
across machines.

Errors: a source that cannot be opened, a nonexistent path, a stream lost for longer than its
reconnection budget raise :class:`CaptureError` naming the camera / URL / path and the likely cause,
within a bounded time. Credentials in URLs are masked in names and messages.

Image size against the calibration: :func:`fit_to_calibration` (policy and measurements on the
Pose2Sim demo in its docstring).
"""

from __future__ import annotations

import inspect
import re
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol
from urllib.parse import urlsplit

import cv2
import numpy as np

__all__ = [
    "CaptureError",
    "Frame",
    "FrameSource",
    "VideoFileSource",
    "ImageFolderSource",
    "WebcamSource",
    "NetworkStreamSource",
    "LatestFrameSource",
    "ReconnectPolicy",
    "SourceKind",
    "CaptureLike",
    "open_source",
    "source_kind",
    "register_source",
    "source_kinds",
    "fit_to_calibration",
    "natural_image_files",
    "IMAGE_EXTENSIONS",
    "NETWORK_SCHEMES",
]

#: Image file extensions an image folder may hold (lower case, compared case-insensitively).
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
#: URL schemes opened as network streams (compared case-insensitively).
NETWORK_SCHEMES: tuple[str, ...] = ("rtsp", "rtsps", "http", "https", "udp", "tcp")

_LAST_NUMBER = re.compile(r"(\d+)(?!.*\d)")
_MAX_SANE_FPS = 1000.0  # FFmpeg reports time-base rates (90000, 180000) for some streams


class CaptureError(RuntimeError):
    """A frame source cannot be opened, or a live source is lost for good."""


# ============================================================================ the frame


@dataclass(frozen=True, eq=False)
class Frame:
    """One image of a source.

    Attributes:
        image: (H, W, 3) uint8 BGR.
        index: source frame number, >= 0, increasing: for files the frame number in the file
            (with ``decimate=N``: 0, N, 2N, ...; with ``loop``: continues counting across passes,
            pass p frame j -> p * n_frames + j), for image folders the position in the natural
            order, for live sources the count of frames grabbed (gaps = dropped frames).
        capture_ns: ``time.monotonic_ns()`` when the frame was grabbed (see the module docs), int ns.
        wall_ns: ``time.time_ns()`` at the same moment, int ns since the Unix epoch.
        source_fps: the source's nominal frame rate, Hz (not divided by ``decimate``); 0 if unknown.
    """

    image: np.ndarray
    index: int
    capture_ns: int
    wall_ns: int
    source_fps: float

    def __post_init__(self) -> None:
        img = self.image
        if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            desc = f"{img.dtype} array of shape {img.shape}" if isinstance(img, np.ndarray) else type(img).__name__
            raise ValueError(f"Frame.image must be (H, W, 3) uint8 BGR, got {desc}")
        if self.index < 0:
            raise ValueError(f"Frame.index must be >= 0, got {self.index}")

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) px."""
        return int(self.image.shape[1]), int(self.image.shape[0])


def _as_bgr(img: np.ndarray | None) -> np.ndarray | None:
    """Backend image -> (H, W, 3) uint8 BGR (grey and BGRA are converted), or None if unusable."""
    if img is None or not isinstance(img, np.ndarray) or img.size == 0:
        return None
    if img.dtype != np.uint8:
        return None
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if img.ndim == 3 and img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    if img.ndim == 3 and img.shape[2] == 1:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if img.ndim == 3 and img.shape[2] == 3:
        return img
    return None


def _sane_fps(value: float) -> float:
    v = float(value) if value is not None else 0.0
    return v if np.isfinite(v) and 0.0 < v <= _MAX_SANE_FPS else 0.0


# ============================================================================ backend protocol


class CaptureLike(Protocol):
    """The part of ``cv2.VideoCapture`` the sources use (tests inject fakes through factories)."""

    def isOpened(self) -> bool: ...  # noqa: N802 - OpenCV's name
    def grab(self) -> bool: ...
    def retrieve(self) -> tuple[bool, np.ndarray | None]: ...
    def get(self, prop_id: int) -> float: ...
    def release(self) -> None: ...


CaptureFactory = Callable[[], CaptureLike]


def _release_quietly(cap: CaptureLike | None) -> None:
    if cap is None:
        return
    try:
        cap.release()
    except cv2.error:  # releasing a broken capture must not mask the real error
        pass


# ============================================================================ base class


class FrameSource:
    """One camera's frames. Iterate, or call :meth:`read` until it returns ``None``.

    Counters (ints, read any time): ``frames_read`` frames delivered by :meth:`read`;
    ``frames_dropped`` frames grabbed or due but not delivered (a real-time file falling behind,
    the newest-frame mode replacing an unread frame); ``read_failures`` failed reads (a grab that
    failed, an unreadable image file); ``reconnects`` live streams recovered after a loss.

    ``close()`` may be called from any thread: it makes a waiting :meth:`read` return ``None``
    promptly (a reconnection backoff is interrupted at once; a grab in progress finishes first,
    bounded by the backend's timeouts) and releases the backend.
    """

    kind: str = "source"

    def __init__(self, name: str):
        self._name = str(name)
        self._stop = threading.Event()
        self._lock = threading.Lock()  # held during a read, so close() never releases mid-grab
        self._released = False
        self._fps = 0.0
        self._size = (0, 0)
        self._frames_read = 0
        self._frames_dropped = 0
        self._read_failures = 0
        self._reconnects = 0

    # -- properties
    @property
    def name(self) -> str:
        """Human-readable source name (camera name, file stem, masked URL)."""
        return self._name

    @property
    def fps(self) -> float:
        """Nominal frame rate of the source, Hz (0 if unknown); see also ``delivered_fps``."""
        return self._fps

    @property
    def delivered_fps(self) -> float:
        """Rate at which frames are delivered when nothing is dropped, Hz (``fps / decimate``)."""
        return self._fps

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) px of the delivered images (from the backend until the first frame)."""
        return self._size

    @property
    def frames_read(self) -> int:
        return self._frames_read

    @property
    def frames_dropped(self) -> int:
        return self._frames_dropped

    @property
    def read_failures(self) -> int:
        return self._read_failures

    @property
    def reconnects(self) -> int:
        return self._reconnects

    @property
    def closed(self) -> bool:
        return self._stop.is_set()

    def stats(self) -> dict[str, Any]:
        """Counters and properties as a plain dict (for status messages)."""
        return {
            "name": self.name, "kind": self.kind, "fps": self.fps, "size": self.size,
            "frames_read": self.frames_read, "frames_dropped": self.frames_dropped,
            "read_failures": self.read_failures, "reconnects": self.reconnects,
        }

    # -- reading
    def read(self) -> Frame | None:
        """The next frame, or ``None`` at the end of the stream or once closed."""
        if self._stop.is_set():
            return None
        with self._lock:
            if self._stop.is_set():
                return None
            frame = self._read()
        if frame is not None:
            self._frames_read += 1
        return frame

    def _read(self) -> Frame | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _frame(self, image: np.ndarray, index: int, capture_ns: int, wall_ns: int) -> Frame:
        self._size = (int(image.shape[1]), int(image.shape[0]))
        return Frame(image, int(index), int(capture_ns), int(wall_ns), float(self._fps))

    def __iter__(self) -> Iterator[Frame]:
        while True:
            frame = self.read()
            if frame is None:
                return
            yield frame

    # -- closing
    def close(self) -> None:
        """Stop: a pending :meth:`read` returns ``None``; the backend is released. Idempotent."""
        self._stop.set()
        with self._lock:
            if not self._released:
                self._released = True
                self._release()

    def _release(self) -> None:
        """Release backend resources (called once, never during a read)."""

    def __enter__(self) -> "FrameSource":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, fps={self.fps:g}, size={self.size})"


# ============================================================================ files: video, image folder


class _PlaybackSource(FrameSource):
    """A finite source played at its nominal rate (``realtime``) or as fast as possible.

    Subclasses provide sequential access: ``_grab_one()`` advances to the next source frame
    (decoding it if needed; False at the end of one pass), ``_retrieve()`` the last grabbed image,
    ``_rewind()`` restarts a pass for ``loop``. Positions are global source frame numbers that keep
    counting across passes.
    """

    def __init__(self, name: str, fps: float, realtime: bool, loop: bool, decimate: int):
        super().__init__(name)
        if not (isinstance(decimate, (int, np.integer)) and decimate >= 1):
            raise ValueError(f"decimate must be an int >= 1, got {decimate!r}")
        self._fps = _sane_fps(fps)
        self.realtime = bool(realtime)
        self.loop = bool(loop)
        self.decimate = int(decimate)
        if self.realtime and self._fps <= 0:
            raise CaptureError(f"{name}: unknown frame rate, cannot play in real time; "
                               "pass fps=... or realtime=False")
        self._pos = 0  # global number of the next frame _grab() would produce
        self._next = 0  # global number of the next frame to deliver (on the decimation grid)
        self._pass_frames = 0  # frames grabbed in the current pass
        self._t0_ns: int | None = None  # monotonic time at which frame _first was delivered
        self._first = 0
        self._failed_in_a_row = 0
        #: consecutive unreadable frames after which the source gives up (CaptureError).
        self.max_failures_in_a_row = 100

    @property
    def delivered_fps(self) -> float:
        return self._fps / self.decimate

    def _grab_one(self) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def _retrieve(self) -> np.ndarray | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _rewind(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _grab(self) -> bool:
        """Advance one global frame, starting a new pass at the end when looping."""
        if self._grab_one():
            self._pos += 1
            self._pass_frames += 1
            return True
        if not self.loop:
            return False
        if self._pass_frames == 0:
            raise CaptureError(f"{self.name}: no frame could be read in a whole pass; cannot loop")
        self._rewind()
        self._pass_frames = 0
        return self._grab()

    def _grab_through(self, frame_no: int) -> bool:
        """Grab until ``frame_no`` is the last grabbed frame; False if the stream ends first."""
        while self._pos <= frame_no:
            if not self._grab():
                return False
        return True

    def skip_to(self, frame_no: int) -> None:
        """Make ``frame_no`` (global, rounded up to the decimation grid) the next frame delivered,
        decoding but not converting the frames in between (a player catching up with a clock)."""
        step = self.decimate
        target = max(self._next, -(-int(frame_no) // step) * step)
        if target > self._next and self._grab_through(target - 1):
            self._frames_dropped += (target - self._next) // step
            self._next = target

    def _due_ns(self, frame_no: int) -> int:
        assert self._t0_ns is not None
        return self._t0_ns + int(round((frame_no - self._first) * 1e9 / self._fps))

    def _read(self) -> Frame | None:
        step = self.decimate
        while True:
            target = self._next
            if self.realtime and self._t0_ns is not None:
                period_ns = step * 1e9 / self._fps
                late_ns = time.monotonic_ns() - self._due_ns(target)
                for _ in range(int(late_ns // period_ns) if late_ns >= period_ns else 0):
                    if not self._grab_through(target):  # skip a frame that is already overdue
                        return None
                    self._frames_dropped += 1
                    target += step
            if not self._grab_through(target):
                return None
            self._next = target + step
            if self.realtime:
                if self._t0_ns is None:
                    self._t0_ns, self._first = time.monotonic_ns(), target
                else:
                    wait_ns = self._due_ns(target) - time.monotonic_ns()
                    if wait_ns > 0 and self._stop.wait(wait_ns / 1e9):
                        return None
            capture_ns, wall_ns = time.monotonic_ns(), time.time_ns()
            image = _as_bgr(self._retrieve())
            if image is None:
                self._read_failures += 1
                self._failed_in_a_row += 1
                if self._failed_in_a_row >= self.max_failures_in_a_row:
                    raise CaptureError(f"{self.name}: {self._failed_in_a_row} unreadable frames in a row")
                continue
            self._failed_in_a_row = 0
            return self._frame(image, target, capture_ns, wall_ns)


def _default_video_capture(path: Path) -> CaptureLike:
    return cv2.VideoCapture(str(path))


class VideoFileSource(_PlaybackSource):
    """A video file, played at its native rate (``realtime=True``) or as fast as possible.

    Args:
        path: the video file.
        realtime: deliver frame i no earlier than ``t0 + i / fps`` (t0 = first frame); when decoding
            falls more than one (decimated) frame period behind, overdue frames are decoded but not
            delivered, and counted in ``frames_dropped``. False: as fast as possible, never drops.
        loop: start again at the end (indices keep increasing).
        decimate: deliver every Nth frame (source frames 0, N, 2N, ...; ``index`` is the source
            frame number; ``delivered_fps = fps / N``). Skipped frames are not counted as dropped.
        fps: override the container's frame rate, Hz (None: the container's).
        name: source name (default: the file stem, e.g. ``"cam01"``).
        capture_factory: ``() -> CaptureLike`` opening the file (default ``cv2.VideoCapture``).
    """

    kind = "video"

    def __init__(self, path: str | Path, *, realtime: bool = True, loop: bool = False, decimate: int = 1,
                 fps: float | None = None, name: str | None = None,
                 capture_factory: CaptureFactory | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise CaptureError(f"video file not found: {self.path}")
        self._factory = capture_factory or (lambda: _default_video_capture(self.path))
        self._cap = self._open()
        container_fps = _sane_fps(self._cap.get(cv2.CAP_PROP_FPS))
        try:
            super().__init__(name or self.path.stem, fps if fps is not None else container_fps,
                             realtime, loop, decimate)
        except (CaptureError, ValueError):
            _release_quietly(self._cap)
            raise
        self._size = (int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        self.n_frames = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT))  # container's count, may be approximate

    def _open(self) -> CaptureLike:
        try:
            cap = self._factory()
        except cv2.error as e:
            raise CaptureError(f"cannot open video file {self.path}: {e}") from e
        if cap is None or not cap.isOpened():
            _release_quietly(cap)
            raise CaptureError(f"cannot open video file {self.path} (not a video, or a codec this "
                               "OpenCV build's FFmpeg lacks?)")
        return cap

    def _grab_one(self) -> bool:
        return bool(self._cap.grab())

    def _retrieve(self) -> np.ndarray | None:
        ok, img = self._cap.retrieve()
        return img if ok else None

    def _rewind(self) -> None:
        _release_quietly(self._cap)
        self._cap = self._open()  # reopening is reliable for every codec, seeking is not

    def _release(self) -> None:
        _release_quietly(self._cap)


def natural_image_files(folder: str | Path) -> list[Path]:
    """Image files of ``folder`` (``IMAGE_EXTENSIONS``, any case) in natural order.

    Ordered by the last number in the file name (``img2`` before ``img10``), then by name; files
    without a number come after the numbered ones, by name.
    """
    files = [p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]

    def key(p: Path) -> tuple[int, int, str]:
        m = _LAST_NUMBER.search(p.stem)
        return (0, int(m.group(1)), p.name) if m else (1, 0, p.name)

    return sorted(files, key=key)


class ImageFolderSource(_PlaybackSource):
    """A folder of images played like a video at ``fps``.

    Args:
        folder: the directory; images ordered by :func:`natural_image_files`.
        fps: nominal rate, Hz (default 30).
        realtime, loop, decimate, name: as for :class:`VideoFileSource`. ``index`` is the position
            in the natural order (plus ``p * n_frames`` on loop pass p).

    An unreadable image is counted in ``read_failures`` and skipped; an image whose size differs
    from the first one raises :class:`CaptureError` (one camera has one size).
    """

    kind = "folder"

    def __init__(self, folder: str | Path, *, fps: float = 30.0, realtime: bool = True, loop: bool = False,
                 decimate: int = 1, name: str | None = None):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise CaptureError(f"image folder not found: {self.folder}")
        if not (np.isfinite(fps) and fps > 0):
            raise ValueError(f"fps must be > 0, got {fps!r}")
        self.files = natural_image_files(self.folder)
        if not self.files:
            raise CaptureError(f"no images in folder {self.folder} (looked for {', '.join(IMAGE_EXTENSIONS)})")
        super().__init__(name or self.folder.name, fps, realtime, loop, decimate)
        self.n_frames = len(self.files)
        self._current: Path | None = None
        first = cv2.imread(str(self.files[0]), cv2.IMREAD_COLOR)
        if first is not None:
            self._size = (int(first.shape[1]), int(first.shape[0]))
        self._expected_size: tuple[int, int] | None = self._size if first is not None else None

    def _grab_one(self) -> bool:
        i = self._pass_frames
        if i >= len(self.files):
            return False
        self._current = self.files[i]  # images are only decoded when delivered
        return True

    def _retrieve(self) -> np.ndarray | None:
        assert self._current is not None
        img = cv2.imread(str(self._current), cv2.IMREAD_COLOR)
        if img is None:
            return None
        size = (int(img.shape[1]), int(img.shape[0]))
        if self._expected_size is None:
            self._expected_size = size
        elif size != self._expected_size:
            raise CaptureError(f"{self._current}: image size {size[0]}x{size[1]} differs from the folder's "
                               f"{self._expected_size[0]}x{self._expected_size[1]}")
        return img

    def _rewind(self) -> None:
        pass


# ============================================================================ live sources


@dataclass(frozen=True)
class ReconnectPolicy:
    """How a live source recovers from a lost stream.

    Attributes:
        initial_s: first wait before reopening, s.
        max_s: the wait doubles after every failed attempt up to this, s.
        max_total_s: give up (:class:`CaptureError`) when the outage would exceed this, s
            (measured from the failed read; a wait that would cross it is not started).
    """

    initial_s: float = 0.5
    max_s: float = 8.0
    max_total_s: float = 60.0

    def __post_init__(self) -> None:
        if not (self.initial_s > 0 and self.max_s >= self.initial_s and self.max_total_s >= 0):
            raise ValueError(f"need 0 < initial_s <= max_s and max_total_s >= 0, got {self}")


class _LiveSource(FrameSource):
    """A camera or stream read as frames come; reopened with backoff when a read fails.

    ``index`` counts grabbed frames across reconnections. The source is opened in the constructor;
    a failed first open raises :class:`CaptureError` at once (a wrong URL or index should be
    reported, not retried). ``reconnect=None`` makes a failed read the end of the stream.
    """

    def __init__(self, name: str, what: str, factory: CaptureFactory, reconnect: ReconnectPolicy | None):
        super().__init__(name)
        self._what = what  # "webcam 0", "network stream rtsp://..."
        self._factory = factory
        self.reconnect_policy = reconnect
        self._index = 0
        self._outage_start: float | None = None
        self._delay = 0.0
        self._attempts = 0
        #: waits before each reopen attempt, s (the last 256), to inspect the backoff.
        self.reconnect_waits_s: deque[float] = deque(maxlen=256)
        self._cap: CaptureLike | None = None
        cap = self._try_open()
        if isinstance(cap, str):
            raise CaptureError(f"cannot open {self._what} ({cap})")
        self._cap = cap
        self._fps = _sane_fps(cap.get(cv2.CAP_PROP_FPS))
        self._size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0))

    def _why_not_opened(self) -> str:  # pragma: no cover - overridden
        return "unknown reason"

    def _try_open(self) -> CaptureLike | str:
        """An opened capture, or the reason it failed."""
        try:
            cap = self._factory()
        except cv2.error as e:
            lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
            return f"OpenCV error: {lines[-1] if lines else type(e).__name__}"
        if cap is None or not cap.isOpened():
            _release_quietly(cap)
            return self._why_not_opened()
        return cap

    def _read(self) -> Frame | None:
        while not self._stop.is_set():
            if self._cap is not None:
                frame = self._grab_frame()
                if frame is not None:
                    return frame
                self._read_failures += 1
                _release_quietly(self._cap)
                self._cap = None
                if self.reconnect_policy is None:
                    return None
                if self._outage_start is None:
                    self._outage_start, self._delay, self._attempts = time.monotonic(), self.reconnect_policy.initial_s, 0
            elif self.reconnect_policy is None:  # ended earlier
                return None
            if not self._backoff_and_reopen():
                return None
        return None

    def _grab_frame(self) -> Frame | None:
        assert self._cap is not None
        if not self._cap.grab():
            return None
        capture_ns, wall_ns = time.monotonic_ns(), time.time_ns()
        ok, img = self._cap.retrieve()
        image = _as_bgr(img) if ok else None
        if image is None:
            return None
        size = (int(image.shape[1]), int(image.shape[0]))
        if self._frames_read and size != self._size:
            raise CaptureError(f"{self._what}: image size changed from {self._size[0]}x{self._size[1]} to "
                               f"{size[0]}x{size[1]}; the calibration no longer applies")
        if self._outage_start is not None:  # a frame again after an outage: reconnected
            self._reconnects += 1
            self._outage_start = None
        index = self._index
        self._index += 1
        return self._frame(image, index, capture_ns, wall_ns)

    def _backoff_and_reopen(self) -> bool:
        """One backoff wait + reopen attempt; False if closed meanwhile. Raises when out of budget."""
        policy = self.reconnect_policy
        assert policy is not None and self._outage_start is not None
        elapsed = time.monotonic() - self._outage_start
        if elapsed + self._delay > policy.max_total_s:
            raise CaptureError(f"{self._what}: stream lost and not back after {elapsed:.1f} s "
                               f"({self._attempts} reconnection attempts); giving up "
                               f"(max_reconnect_s={policy.max_total_s:g})")
        self.reconnect_waits_s.append(self._delay)
        if self._stop.wait(self._delay):
            return False
        self._attempts += 1
        self._delay = min(2.0 * self._delay, policy.max_s)
        cap = self._try_open()
        if not isinstance(cap, str):
            self._cap = cap
        return True

    def _release(self) -> None:
        _release_quietly(self._cap)
        self._cap = None


def _webcam_factory(index: int, size: tuple[int, int] | None, fps: float | None, api: int) -> CaptureFactory:
    def open_webcam() -> CaptureLike:
        cap = cv2.VideoCapture(index, api)
        if cap.isOpened():
            if size is not None:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, float(size[0]))
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, float(size[1]))
            if fps is not None:
                cap.set(cv2.CAP_PROP_FPS, float(fps))
        return cap

    return open_webcam


class WebcamSource(_LiveSource):
    """A local camera by index (``cv2.VideoCapture(index)``), read as frames come.

    Args:
        index: camera index (``/dev/video<index>`` with V4L2).
        size: requested (width, height) px; the camera may choose another mode (see ``size``).
        fps: requested frame rate, Hz.
        api_preference: OpenCV backend (``cv2.CAP_ANY``, ``cv2.CAP_V4L2``, ``cv2.CAP_DSHOW``...).
        reconnect: :class:`ReconnectPolicy` after a failed read (an unplugged camera), or None to end
            the stream at the first failed read.
        name: source name (default ``"webcam<index>"``).
        capture_factory: ``() -> CaptureLike`` replacing the OpenCV open (tests).
    """

    kind = "webcam"

    def __init__(self, index: int, *, size: tuple[int, int] | None = None, fps: float | None = None,
                 api_preference: int = cv2.CAP_ANY, reconnect: ReconnectPolicy | None = ReconnectPolicy(),
                 name: str | None = None, capture_factory: CaptureFactory | None = None):
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or index < 0:
            raise ValueError(f"webcam index must be an int >= 0, got {index!r}")
        self.index = int(index)
        self.requested_size = None if size is None else (int(size[0]), int(size[1]))
        self.requested_fps = fps
        factory = capture_factory or _webcam_factory(self.index, self.requested_size, fps, api_preference)
        super().__init__(name or f"webcam{self.index}", f"webcam {self.index}", factory, reconnect)

    def _why_not_opened(self) -> str:
        return "no such device, or in use by another program?"


def _mask_url(url: str) -> str:
    """The URL with its password (and a bare user token) replaced by ``***``."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = "***" if parts.password is None else f"{parts.username}:***"
    return parts._replace(netloc=f"{user}@{host}").geturl()


def _default_port(scheme: str) -> int | None:
    return {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443}.get(scheme)


def _probe_url(url: str, timeout_s: float) -> str:
    """Why a URL may not open, found within ``min(timeout_s, 3)`` s (a slow DNS cannot hang it)."""
    limit = max(0.1, min(timeout_s, 3.0))
    result: list[str] = []
    probe = threading.Thread(target=lambda: result.append(_probe_url_blocking(url, limit)), daemon=True)
    probe.start()
    probe.join(limit + 0.5)
    return result[0] if result else f"no answer within {limit:g} s (host name lookup or connection hangs)"


def _probe_url_blocking(url: str, timeout_s: float) -> str:
    """A TCP connect probe of the URL's host (not for UDP)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or _default_port(scheme)
    except ValueError:
        return "invalid port in the URL"
    host = parts.hostname
    if not host:
        return "no host in the URL"
    if scheme == "udp":
        return f"no stream received on {host}:{port} within the timeout"
    if port is None:
        return "no port in the URL"
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except socket.gaierror:
        return f"unknown host {host!r}"
    except ConnectionRefusedError:
        return f"connection refused: nothing listening at {host}:{port}"
    except (socket.timeout, TimeoutError):
        return f"no answer from {host}:{port} within {timeout_s:g} s"
    except OSError as e:
        return f"cannot reach {host}:{port}: {e.strerror or e}"
    return f"{host}:{port} answers, but no video could be opened: wrong path, credentials or format?"


def _network_factory(url: str, open_timeout_s: float, read_timeout_s: float) -> CaptureFactory:
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(open_timeout_s * 1000),
              cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(read_timeout_s * 1000)]

    def open_stream() -> CaptureLike:
        return cv2.VideoCapture(url, cv2.CAP_FFMPEG, params)

    return open_stream


class NetworkStreamSource(_LiveSource):
    """A live network stream (RTSP, HTTP(S), UDP, TCP) through OpenCV's FFmpeg backend.

    Opening and every read are bounded by ``open_timeout_s`` / ``read_timeout_s`` (OpenCV's
    ``CAP_PROP_OPEN_TIMEOUT_MSEC`` / ``CAP_PROP_READ_TIMEOUT_MSEC``). A failed first open raises
    :class:`CaptureError` with a diagnosis (connection refused, unknown host, no answer, ...). A
    stream that drops later (a read fails) is reopened after 0.5, 1, 2, 4, 8, 8... s (configurable),
    counted in ``reconnects`` once frames flow again; when the outage would exceed
    ``max_reconnect_s`` it raises :class:`CaptureError`. ``close()`` interrupts a wait at once.

    The stream is treated as live: a stream that ends (an HTTP file) is reopened like a dropped one;
    ``reconnect=False`` ends the source at the first failed read instead.

    Args:
        url: the stream URL (credentials are masked in ``name`` and messages).
        open_timeout_s, read_timeout_s: backend timeouts, s.
        backoff_initial_s, backoff_max_s, max_reconnect_s: :class:`ReconnectPolicy` fields.
        reconnect: False: a failed read ends the stream.
        name: source name (default: the masked URL).
        capture_factory: ``() -> CaptureLike`` replacing the OpenCV open (tests inject fakes).
    """

    kind = "network"

    def __init__(self, url: str, *, open_timeout_s: float = 5.0, read_timeout_s: float = 5.0,
                 backoff_initial_s: float = 0.5, backoff_max_s: float = 8.0, max_reconnect_s: float = 60.0,
                 reconnect: bool = True, name: str | None = None,
                 capture_factory: CaptureFactory | None = None):
        if not (open_timeout_s > 0 and read_timeout_s > 0):
            raise ValueError("open_timeout_s and read_timeout_s must be > 0")
        self.url = str(url)
        self.open_timeout_s = float(open_timeout_s)
        self.read_timeout_s = float(read_timeout_s)
        policy = ReconnectPolicy(backoff_initial_s, backoff_max_s, max_reconnect_s) if reconnect else None
        factory = capture_factory or _network_factory(self.url, self.open_timeout_s, self.read_timeout_s)
        masked = _mask_url(self.url)
        super().__init__(name or masked, f"network stream {masked}", factory, policy)

    def _why_not_opened(self) -> str:
        return _probe_url(self.url, self.open_timeout_s)


# ============================================================================ newest-frame mode


class LatestFrameSource(FrameSource):
    """Wraps a source; a background thread reads it continuously and keeps only the newest frame.

    :meth:`read` returns the newest frame not delivered yet (waiting for one if needed); a frame
    replaced before it was read is dropped and counted in ``frames_dropped``. ``capture_ns`` stays
    the grab time stamped by the wrapped source. Meant for live sources with a consumer slower than
    the camera (no latency builds up in the backend's buffers). Errors of the wrapped source (a
    stream lost for good) are raised by :meth:`read` once the frames before them are delivered.
    ``close()`` closes the wrapped source and joins the thread.
    """

    def __init__(self, inner: FrameSource):
        super().__init__(inner.name)
        self.inner = inner
        self.kind = inner.kind
        self._cond = threading.Condition()
        self._slot: Frame | None = None
        self._done = False
        self._error: BaseException | None = None
        self._replaced = 0
        self._thread = threading.Thread(target=self._run, name=f"grab-{inner.name}", daemon=True)
        self._thread.start()

    @property
    def fps(self) -> float:
        return self.inner.fps

    @property
    def delivered_fps(self) -> float:
        return self.inner.delivered_fps

    @property
    def size(self) -> tuple[int, int]:
        return self.inner.size

    @property
    def frames_dropped(self) -> int:
        return self.inner.frames_dropped + self._replaced

    @property
    def read_failures(self) -> int:
        return self.inner.read_failures

    @property
    def reconnects(self) -> int:
        return self.inner.reconnects

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                frame = self.inner.read()
                with self._cond:
                    if frame is None:
                        break
                    if self._slot is not None:
                        self._replaced += 1
                    self._slot = frame
                    self._cond.notify_all()
        except Exception as e:  # handed to the consumer thread by read()
            with self._cond:
                self._error = e
        finally:
            with self._cond:
                self._done = True
                self._cond.notify_all()

    def _read(self) -> Frame | None:
        with self._cond:
            while self._slot is None and not self._done and not self._stop.is_set():
                self._cond.wait()
            if self._slot is not None:
                frame, self._slot = self._slot, None
                return frame
            if self._error is not None and not self._stop.is_set():
                err, self._error = self._error, None
                if isinstance(err, CaptureError):
                    raise err
                raise CaptureError(f"{self.name}: grabber thread failed: {err}") from err
            return None

    def close(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()  # wake a read() waiting for a frame
        self.inner.close()  # interrupts a backoff wait of the grabber thread
        if threading.current_thread() is not self._thread:
            self._thread.join()
        super().close()


# ============================================================================ registry


@dataclass(frozen=True)
class SourceKind:
    """One entry of the source registry: ``matches(spec)`` selects it, ``open(spec, **options)`` builds it."""

    name: str
    matches: Callable[[Any], bool]
    open: Callable[..., FrameSource]
    accepts: Callable[..., Any]  # the callable whose keyword parameters are the accepted options


def _is_webcam(spec: Any) -> bool:
    if isinstance(spec, bool):
        return False
    return isinstance(spec, (int, np.integer)) or (isinstance(spec, str) and spec.strip().isdigit())


def _scheme(spec: Any) -> str | None:
    if not isinstance(spec, str) or "://" not in spec:
        return None
    return spec.split("://", 1)[0].lower()


def _is_network(spec: Any) -> bool:
    return _scheme(spec) in NETWORK_SCHEMES


def _is_path(spec: Any) -> bool:
    return isinstance(spec, (str, Path)) and _scheme(spec) is None


_REGISTRY: list[SourceKind] = [
    SourceKind("webcam", _is_webcam, lambda s, **o: WebcamSource(int(s), **o), WebcamSource),
    SourceKind("network", _is_network, lambda s, **o: NetworkStreamSource(s, **o), NetworkStreamSource),
    SourceKind("folder", lambda s: _is_path(s) and Path(s).is_dir(), lambda s, **o: ImageFolderSource(s, **o),
               ImageFolderSource),
    SourceKind("video", lambda s: _is_path(s) and Path(s).is_file(), lambda s, **o: VideoFileSource(s, **o),
               VideoFileSource),
]


def register_source(kind: SourceKind, *, first: bool = True) -> None:
    """Add a source kind (checked before the built-in ones unless ``first=False``); replaces a kind
    of the same name."""
    _REGISTRY[:] = [k for k in _REGISTRY if k.name != kind.name]
    if first:
        _REGISTRY.insert(0, kind)
    else:
        _REGISTRY.append(kind)


def source_kinds() -> tuple[str, ...]:
    """Registered kinds, in matching order."""
    return tuple(k.name for k in _REGISTRY)


def _find_kind(spec: Any) -> SourceKind:
    for kind in _REGISTRY:
        if kind.matches(spec):
            return kind
    scheme = _scheme(spec)
    if scheme is not None:
        raise CaptureError(f"unsupported URL scheme {scheme!r} in {_mask_url(str(spec))} "
                           f"(supported: {', '.join(NETWORK_SCHEMES)})")
    if _is_path(spec):
        raise CaptureError(f"no such file or directory: {spec}")
    raise CaptureError(f"cannot tell what source {spec!r} is: expected a webcam index, a URL, "
                       "an image folder or a video file")


def source_kind(spec: Any) -> str:
    """Name of the kind :func:`open_source` would pick for ``spec`` (without opening it)."""
    return _find_kind(spec).name


def _check_options(kind: SourceKind, options: dict[str, Any]) -> None:
    params = inspect.signature(kind.accepts).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    allowed = [n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise TypeError(f"{kind.name} source does not accept option(s) {', '.join(unknown)}; "
                        f"accepted: {', '.join(allowed)}")


def open_source(spec: Any, *, threaded: bool = False, **options: Any) -> FrameSource:
    """Open the frame source described by ``spec`` (see the module table).

    Args:
        spec: webcam index (int or digit string), stream URL, image folder or video file path.
        threaded: wrap the source in :class:`LatestFrameSource` (newest frame only; for live sources).
        **options: keyword options of the selected source class (e.g. ``realtime``, ``loop``,
            ``decimate`` for files; ``fps`` for folders; ``size``, ``fps`` for webcams; timeouts and
            backoff for streams); an option the source does not take raises :class:`TypeError`.

    Raises:
        CaptureError: nonexistent path, unsupported scheme, or a source that cannot be opened
            (naming the camera / URL / path and why), within the source's timeouts.
    """
    kind = _find_kind(spec)
    _check_options(kind, options)
    source = kind.open(spec, **options)
    return LatestFrameSource(source) if threaded else source


# ============================================================================ size vs calibration


def fit_to_calibration(frame_size: tuple[int, int], calib_size: tuple[int, int], *,
                       max_crop_px: int = 8, name: str = "camera") -> tuple[float, float, str]:
    """How pixels of a decoded frame map onto the calibration's pixels: ``(dx, dy, note)``.

    Add ``(dx, dy)`` px to every 2D point measured on the frame before using it with the
    calibration (``x_calib = x_frame + dx``). Policy:

    - same size: ``(0, 0)``;
    - a difference of up to ``max_crop_px`` (default 8) px per axis is taken as a centred crop
      (or pad): ``dx = (calib_w - frame_w) / 2``, ``dy = (calib_h - frame_h) / 2``;
    - anything bigger is a different camera mode (binning, scaling, another sensor window) that no
      shift fixes: :class:`CaptureError` asking for a calibration made at the frame's resolution.

    The Pose2Sim demo (cam01/cam02 decode at 1080x1920, the Qualisys calibration says 1088x1920;
    cam03/cam04 decode at 1088) gives ``dx = +4``. Measured on the real MoveNet COCO-17 keypoints of
    ``pose2sim_demo_single_coco17`` (100 frames; subject in cam01/cam02 = person closest to the
    reprojection of the cam03+cam04 triangulation), shifting cam01/cam02 by dx before
    ``Triangulator(demo_rig())``:

    ==========  ===============  ==============  ====================================
    dx (px)     median reproj.   median reproj.  cam02 median x residual against the
                (default, with   (all 4 views    cam03+cam04 triangulation (native
                exclusion)       kept)           1088-wide cameras)
    ==========  ===============  ==============  ====================================
    0           9.90 px          17.53 px        -4.2 px
    +4          9.88 px          17.85 px        -0.2 px
    +8          9.70 px          18.42 px        +3.8 px
    ==========  ===============  ==============  ====================================

    The keypoints cannot settle it: the differences (0.2 px of ~10) are far below MoveNet's
    per-camera biases (cam01 sits +20 px in x from the other views' triangulation, whatever the
    shift; cam03, natively 1088 wide, +20 px too). The default metric's lower value at +8 is an
    artefact: it keeps falling up to +16 px (9.61 px) because larger shifts make the exclusion drop
    more views (3.04 -> 2.97 -> 2.86 views per point at 0 / +8 / +16), while the all-views error
    rises. The only 1080-wide view without a large bias, cam02, centres at +4 against the independent
    native-1088 pair. A centred crop (+4) is also the choice that is at most 4 px off whichever
    crop (left or right) was made, so it is the policy.

    Args:
        frame_size: decoded frame (width, height) px.
        calib_size: calibration image (width, height) px.
        max_crop_px: largest per-axis difference treated as a crop, px.
        name: camera name for the note and error message.
    """
    fw, fh = (int(v) for v in frame_size)
    cw, ch = (int(v) for v in calib_size)
    if min(fw, fh, cw, ch) <= 0:
        raise ValueError(f"{name}: sizes must be positive, got frame {frame_size}, calibration {calib_size}")
    if (fw, fh) == (cw, ch):
        return 0.0, 0.0, f"{name}: frame size {fw}x{fh} matches the calibration"
    ddx, ddy = cw - fw, ch - fh
    if abs(ddx) <= max_crop_px and abs(ddy) <= max_crop_px:
        dx, dy = ddx / 2.0, ddy / 2.0
        return dx, dy, (f"{name}: frame {fw}x{fh} vs calibration {cw}x{ch}: taken as a centred "
                        f"{'crop' if ddx >= 0 and ddy >= 0 else 'crop/pad'}, points shifted by "
                        f"({dx:+g}, {dy:+g}) px")
    hint = ""
    if fw * ch == fh * cw:
        hint = f" (same aspect ratio: a scaled stream, x{fw / cw:.3g}; calibrate at this resolution)"
    raise CaptureError(f"{name}: frame size {fw}x{fh} does not match the calibration's {cw}x{ch}{hint}; "
                       "use a calibration made at the camera's current resolution")
