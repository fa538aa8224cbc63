"""Recorded inputs played as cameras: :class:`VideoFileSource` and :class:`ImageFolderSource`
(natural order by the last number in the file name), in real time or as fast as decoded.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import cv2
import numpy as np

from rtkin.capture.framesource import CaptureError, CaptureFactory, CaptureLike, Frame, FrameSource, _as_bgr, _release_quietly, _sane_fps

__all__ = ["VideoFileSource", "natural_image_files", "ImageFolderSource"]


#: Image file extensions an image folder may hold (lower case, compared case-insensitively).
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")


_LAST_NUMBER = re.compile(r"(\d+)(?!.*\d)")


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
