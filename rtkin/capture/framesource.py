"""The frame-source interface of the capture processes: :class:`Frame`, :class:`FrameSource`
(iterator, ``read()``, ``close()``, counters) and :class:`CaptureError`.

Times: ``capture_ns`` is ``time.monotonic_ns()`` taken when the frame is grabbed; ``wall_ns`` is
``time.time_ns()`` at the same moment (see :mod:`rtkin.capture.sources`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Protocol

import cv2
import numpy as np

__all__ = ["CaptureError", "Frame", "CaptureLike", "FrameSource"]


_MAX_SANE_FPS = 1000.0  # FFmpeg reports time-base rates (90000, 180000) for some streams


class CaptureError(RuntimeError):
    """A frame source cannot be opened, or a live source is lost for good."""


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
