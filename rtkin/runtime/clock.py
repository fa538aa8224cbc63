"""Clock offsets between hosts, NTP-style over ZeroMQ.

Every host has its own ``CLOCK_MONOTONIC``. A camera on another host measures how far its clock is
from the sync host's, so the capture times it sends are in the sync host's clock and every latency
figure of the run uses one clock.

Protocol (one request, one reply; msgpack maps, at most :data:`MAX_REQUEST_BYTES`):

- the camera (:class:`ClockClient`, a DEALER) sends ``{"v": 1, "t1": its clock, "camera": name,
  "estimate": {offset_ns, rtt_ns, uncertainty_ns, samples} | None}``;
- the sync host (:class:`ClockServer`, a ROUTER the sync process serves while it waits for frames)
  stamps ``t2`` when it reads the request and ``t3`` just before it answers ``{"v": 1, "t1", "t2",
  "t3", "epoch_ns"}``; the camera stamps ``t4`` on arrival.
- ``offset = ((t2 - t1) + (t3 - t4)) / 2`` (server clock - camera clock), ``rtt = (t4 - t1) -
  (t3 - t2)``. Whatever the path delays, the true offset lies within ``rtt / 2`` of the estimate;
  the client keeps the sample with the smallest round trip among the last :data:`WINDOW` ones
  (a few seconds: monotonic clocks drift apart by parts per million) and reports
  ``uncertainty = rtt / 2`` of that sample.

``epoch_ns`` is the sync host's stream start: file and virtual sources on camera hosts play frame
``i`` at ``epoch + i / fps`` of the sync host's clock, so every camera's frame ``i`` is captured at
the same moment. The server keeps each camera's last reported estimate for the sync status.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Callable

import msgpack
import zmq

__all__ = ["ClockServer", "ClockClient", "ClockSample", "offset_from", "clock_server_for_run", "MAX_REQUEST_BYTES"]

MAX_REQUEST_BYTES = 512
WINDOW = 16  # samples kept; one every INTERVAL_S
INTERVAL_S = 0.25
MAX_CAMERAS = 64  # cameras remembered by the server (least recently heard forgotten first)


@dataclass(frozen=True)
class ClockSample:
    """One exchange: ``t1``/``t4`` on the client's clock, ``t2``/``t3`` on the server's, ns."""

    t1: int
    t2: int
    t3: int
    t4: int

    @property
    def offset_ns(self) -> int:
        """Server clock minus client clock, ns."""
        return ((self.t2 - self.t1) + (self.t3 - self.t4)) // 2

    @property
    def rtt_ns(self) -> int:
        """Time on the wire (both ways), ns: the client's round trip minus the server's hold."""
        return (self.t4 - self.t1) - (self.t3 - self.t2)


def offset_from(samples) -> tuple[int, int, int] | None:
    """``(offset_ns, rtt_ns, uncertainty_ns)`` from the sample with the smallest round trip."""
    best = min(samples, key=lambda s: s.rtt_ns, default=None)
    if best is None:
        return None
    rtt = max(0, best.rtt_ns)
    return best.offset_ns, rtt, rtt // 2 + 1


class ClockServer:
    """The sync host's side: a ROUTER answering clock requests with its own clock.

    Served by the process that owns it (``Receiver.attach`` serves it while the sync node waits
    for frames): :meth:`handle` answers every pending request at once.

    Args:
        ctx: ZeroMQ context (a :class:`~rtkin.runtime.transport.LinkContext` for CURVE).
        endpoint: where to bind (a non-loopback address needs CURVE keys or ``insecure``).
        epoch_ns: the stream start told to cameras (default: now).
        clock: the server's clock (``time.monotonic_ns``).
    """

    name = "clock"

    def __init__(self, ctx: zmq.Context, endpoint: str, epoch_ns: int | None = None,
                 clock: Callable[[], int] = time.monotonic_ns):
        from rtkin.runtime.transport import _setup

        self.clock = clock
        self.epoch_ns = int(epoch_ns if epoch_ns is not None else clock())
        self.socket = ctx.socket(zmq.ROUTER)
        try:
            self.socket.setsockopt(zmq.RCVHWM, 100)
            self.socket.setsockopt(zmq.SNDHWM, 100)
            self.socket.setsockopt(zmq.LINGER, 0)
            self._domain = _setup(self.socket, ctx, endpoint, bind=True)
            self.socket.setsockopt(zmq.MAXMSGSIZE, MAX_REQUEST_BYTES)
            self.socket.bind(endpoint)
        except Exception:
            self.socket.close(linger=0)
            raise
        self.ctx = ctx
        self.endpoint = endpoint
        self.served = 0
        self.malformed = 0
        self.cameras: OrderedDict[str, tuple[dict, int]] = OrderedDict()

    def handle(self) -> None:
        """Answer every request waiting on the socket (never blocks, never raises on bad input)."""
        while True:
            try:
                frames = self.socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            t2 = self.clock()
            try:
                if len(frames) != 2:
                    raise ValueError("expected [identity, request]")
                req = msgpack.unpackb(frames[1], raw=False)
                if not isinstance(req, dict) or req.get("v") != 1 or type(req.get("t1")) is not int:
                    raise ValueError("not a clock request")
                reply = {"v": 1, "t1": req["t1"], "t2": t2, "epoch_ns": self.epoch_ns}
                self._note(req, t2)
            except (ValueError, TypeError):  # msgpack errors are ValueErrors
                self.malformed += 1
                continue
            reply["t3"] = self.clock()
            try:
                self.socket.send_multipart([frames[0], msgpack.packb(reply)], zmq.NOBLOCK)
                self.served += 1
            except zmq.ZMQError:  # the peer is gone, or its queue is full
                pass

    def _note(self, req: dict, now: int) -> None:
        cam, est = req.get("camera"), req.get("estimate")
        if not isinstance(cam, str) or not 0 < len(cam) <= 64:
            return
        if isinstance(est, dict):
            clean = {k: est[k] for k in ("offset_ns", "rtt_ns", "uncertainty_ns", "samples")
                     if type(est.get(k)) is int}
            self.cameras[cam] = (clean, now)
        elif cam not in self.cameras:
            self.cameras[cam] = ({}, now)
        self.cameras.move_to_end(cam)
        while len(self.cameras) > MAX_CAMERAS:
            self.cameras.popitem(last=False)

    def status(self) -> dict:
        """Requests served, malformed ones, CURVE clients refused; per remote camera: its clock
        offset to this host (ms, this host minus the camera's), round trip and uncertainty (ms),
        samples behind it, and seconds since it last asked."""
        now = self.clock()
        cams = {}
        for cam, (est, t) in self.cameras.items():
            d = {"age_s": round((now - t) / 1e9, 1)}
            if "offset_ns" in est:
                d.update(offset_ms=est["offset_ns"] / 1e6, rtt_ms=est.get("rtt_ns", 0) / 1e6,
                         uncertainty_ms=est.get("uncertainty_ns", 0) / 1e6, samples=est.get("samples", 0))
            cams[cam] = d
        refused = self.ctx.authenticator().refused(self._domain) if self._domain else 0
        return {"served": self.served, "malformed": self.malformed, "auth_refused": refused, "cameras": cams}

    def close(self) -> None:
        self.socket.close()


def clock_server_for_run(ctx: zmq.Context, cfg) -> ClockServer | None:
    """The run's clock server (``[transport] clock``), or None when no camera is remote."""
    return ClockServer(ctx, cfg.transport.clock) if cfg.transport.clock else None


class ClockClient:
    """A camera host's side: measures the offset to the sync host and converts capture times.

    :meth:`start` runs the exchanges in a background thread (its own socket); :meth:`wait`
    blocks until a first estimate exists. Reading :attr:`offset_ns` is thread-safe.

    Args:
        ctx: ZeroMQ context (a LinkContext for CURVE).
        endpoint: the sync host's clock endpoint (``tcp://HOST:PORT``).
        camera: name reported to the server (its status lists cameras by it).
        clock: this host's clock (``time.monotonic_ns``; tests shift it).
        interval_s: seconds between exchanges once synchronised (faster until the window fills).
        window: samples kept (the estimate uses the one with the smallest round trip).
        min_samples: samples before the first estimate counts (:meth:`wait`; the first exchange
            also sets up the connection and its round trip is long).
    """

    def __init__(self, ctx: zmq.Context, endpoint: str, camera: str, clock: Callable[[], int] = time.monotonic_ns,
                 interval_s: float = INTERVAL_S, window: int = WINDOW, min_samples: int = 4):
        self.ctx, self.endpoint, self.camera, self.clock = ctx, endpoint, camera, clock
        self.interval_s = interval_s
        self.min_samples = max(1, min(int(min_samples), int(window)))
        self.samples: deque[ClockSample] = deque(maxlen=window)
        self.offset_ns = 0
        self.rtt_ns = 0
        self.uncertainty_ns = 0
        self.epoch_ns: int | None = None  # the server's stream start, in the server's clock
        self.timeouts = 0
        self.synced = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ conversions

    def to_server_ns(self, local_ns: int) -> int:
        """A time of this host's clock in the sync host's clock, ns."""
        return int(local_ns) + self.offset_ns

    def to_local_ns(self, server_ns: int) -> int:
        return int(server_ns) - self.offset_ns

    def to_server(self, frame):
        """A KeypointFrame with its capture time in the sync host's clock."""
        from rtkin.core.messages import KeypointFrame

        return KeypointFrame(frame.camera, frame.frame_index, self.to_server_ns(frame.capture_ns), frame.skeleton,
                             frame.keypoints, wall_ns=frame.wall_ns)

    def estimate(self) -> dict | None:
        if not self.synced.is_set():
            return None
        return {"offset_ns": self.offset_ns, "rtt_ns": self.rtt_ns, "uncertainty_ns": self.uncertainty_ns,
                "samples": len(self.samples)}

    # ------------------------------------------------------------------ exchanges

    def start(self) -> "ClockClient":
        """Start the exchanges in a background thread (the socket is made here: a missing key or a
        plaintext network address raises now, not in the thread)."""
        sock = self._socket()
        self._thread = threading.Thread(target=self._run, args=(sock,), name="rtkin-clock", daemon=True)
        self._thread.start()
        return self

    def wait(self, timeout_s: float | None = None) -> bool:
        """True once an offset is known from ``min_samples`` exchanges (False after ``timeout_s``)."""
        return self.synced.wait(timeout_s)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _socket(self) -> zmq.Socket:
        from rtkin.runtime.transport import _setup

        sock = self.ctx.socket(zmq.DEALER)
        try:
            sock.setsockopt(zmq.LINGER, 0)
            _setup(sock, self.ctx, self.endpoint, bind=False)
            sock.connect(self.endpoint)
        except Exception:
            sock.close()
            raise
        return sock

    def _run(self, sock: zmq.Socket) -> None:
        try:
            while not self._stop.is_set():
                self.exchange(sock, timeout_s=1.0)
                fast = len(self.samples) < self.samples.maxlen // 2
                self._stop.wait(self.interval_s / 5 if fast else self.interval_s)
        finally:
            sock.close()

    def exchange(self, sock: zmq.Socket, timeout_s: float = 1.0) -> ClockSample | None:
        """One request/reply on ``sock`` (a DEALER connected to the server); updates the estimate."""
        t1 = self.clock()
        try:
            sock.send(msgpack.packb({"v": 1, "t1": t1, "camera": self.camera, "estimate": self.estimate()}),
                      zmq.NOBLOCK)
        except zmq.Again:
            self.timeouts += 1
            return None
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not sock.poll(int(left * 1000) + 1):
                self.timeouts += 1
                return None
            data = sock.recv()
            t4 = self.clock()
            try:
                rep = msgpack.unpackb(data, raw=False)
                if rep.get("t1") != t1:
                    continue  # a late reply to an earlier request
                sample = ClockSample(t1, int(rep["t2"]), int(rep["t3"]), t4)
                epoch = int(rep["epoch_ns"])
            except (ValueError, TypeError, KeyError, AttributeError):
                continue
            if sample.rtt_ns < 0:
                continue
            self.samples.append(sample)
            self.offset_ns, self.rtt_ns, self.uncertainty_ns = offset_from(self.samples)
            self.epoch_ns = epoch
            if len(self.samples) >= self.min_samples:
                self.synced.set()
            return sample
