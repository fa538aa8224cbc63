"""Live inputs: :class:`WebcamSource`, :class:`NetworkStreamSource` (FFmpeg, bounded timeouts,
reconnection with exponential backoff; credentials masked) and :class:`LatestFrameSource` (a
background grabber that keeps only the newest frame).
"""

from __future__ import annotations

import socket
import threading
import time
from collections import deque
from dataclasses import dataclass
from urllib.parse import urlsplit

import cv2
import numpy as np

from rtkin.capture.framesource import CaptureError, CaptureFactory, CaptureLike, Frame, FrameSource, _as_bgr, _release_quietly, _sane_fps

__all__ = ["ReconnectPolicy", "WebcamSource", "NetworkStreamSource", "LatestFrameSource"]


#: URL schemes opened as network streams (compared case-insensitively).
NETWORK_SCHEMES: tuple[str, ...] = ("rtsp", "rtsps", "http", "https", "udp", "tcp")


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
