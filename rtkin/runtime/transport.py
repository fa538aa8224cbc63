"""ZeroMQ transport for typed messages: publish with sequence numbers, receive with counters.

A message on the wire is the codec's frames ``[topic, header, buffers...]``; the topic frame is
``base + b"\\0" + seq (u64 BE) [+ stamp_ns (i64 BE)]``. ``base`` ends with ``/`` (``kp/cam01/``,
``sk3d/``, ``tap/``, ``status/sync/``) so a prefix subscription never matches another camera
(``kp/cam1/`` vs ``kp/cam10/``). Receivers count sequence gaps per (publisher topic) as dropped
messages, and undecodable messages as malformed; neither ever raises.

Sockets: PUB never blocks (a slow or stuck subscriber loses messages beyond the high-water mark,
the publisher does not stall). Serialize first, then send; one socket per thread.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass
from typing import Iterable

import msgpack
import zmq

from rtkin.core.codec import DEFAULT_LIMITS, DecodeError, DecodeLimits, decode, encode

__all__ = ["Publisher", "Receiver", "Received", "topic_base", "settle", "STATUS_TOPIC"]

STATUS_TOPIC = b"status/"
_SEQ = struct.Struct(">Q")
_STAMP = struct.Struct(">q")


def topic_base(msg) -> bytes:
    """Default topic base of a message: ``kp/<camera>/``, ``fs/``, ``sk3d/``, ``ja/<person>/``."""
    name = type(msg).__name__
    if name == "KeypointFrame":
        return b"kp/" + msg.camera.encode() + b"/"
    if name == "FrameSet":
        return b"fs/"
    if name == "Skeleton3D":
        return b"sk3d/"
    if name == "JointAngles":
        return b"ja/" + str(msg.person_id).encode() + b"/"
    raise TypeError(f"not a message: {name}")


class Publisher:
    """A PUB socket sending typed messages (and status dicts) with per-topic sequence numbers."""

    def __init__(self, ctx: zmq.Context, endpoint: str, bind: bool, sndhwm: int = 1000):
        self.socket = ctx.socket(zmq.PUB)
        self.socket.setsockopt(zmq.SNDHWM, sndhwm)
        self.socket.setsockopt(zmq.LINGER, 200)
        (self.socket.bind if bind else self.socket.connect)(endpoint)
        self._seq: dict[bytes, int] = {}
        self.sent = 0

    def settle(self, seconds: float = 0.2) -> None:
        """Give subscribers time to connect and subscribe before the first message (see :func:`settle`)."""
        settle(self.socket, seconds=seconds)

    def _topic(self, base: bytes, stamp_ns: int | None) -> bytes:
        seq = self._seq.get(base, 0)
        self._seq[base] = seq + 1
        t = base + b"\0" + _SEQ.pack(seq)
        return t + _STAMP.pack(stamp_ns) if stamp_ns is not None else t

    def send(self, msg, base: bytes | None = None, stamp_ns: int | None = None) -> None:
        """Encode ``msg`` then send it without blocking (dropped past the high-water mark)."""
        frames = encode(msg)
        frames[0] = self._topic(base if base is not None else topic_base(msg), stamp_ns)
        self._send(frames)

    def send_status(self, node: str, status: dict) -> None:
        """A status dict (msgpack) on ``status/<node>/``."""
        self._send([self._topic(STATUS_TOPIC + node.encode() + b"/", None), msgpack.packb(status, use_bin_type=True)])

    def _send(self, frames: list[bytes]) -> None:
        try:
            self.socket.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
            self.sent += 1
        except zmq.Again:  # only with no peers on some transports; PUB otherwise drops silently
            pass

    def close(self) -> None:
        self.socket.close()


@dataclass
class Received:
    """One received message: topic base, sequence, optional stamp, and the decoded object."""

    base: bytes
    seq: int
    stamp_ns: int | None
    message: object


@dataclass
class ReceiverCounters:
    received: int = 0
    malformed: int = 0
    dropped: int = 0  # sequence gaps: messages lost before reaching us (HWM, restarts excluded)

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class Receiver:
    """A SUB socket decoding typed messages; malformed input is counted and dropped."""

    def __init__(self, ctx: zmq.Context, endpoint: str, topics: Iterable[bytes], bind: bool,
                 rcvhwm: int = 1000, limits: DecodeLimits = DEFAULT_LIMITS):
        self.socket = ctx.socket(zmq.SUB)
        self.socket.setsockopt(zmq.RCVHWM, rcvhwm)
        self.socket.setsockopt(zmq.LINGER, 0)
        for t in topics:
            self.socket.setsockopt(zmq.SUBSCRIBE, t)
        (self.socket.bind if bind else self.socket.connect)(endpoint)
        self.limits = limits
        self.counters = ReceiverCounters()
        self._last_seq: dict[bytes, int] = {}

    def settle(self, seconds: float = 0.2) -> None:
        """Let connections attach and the subscriptions reach the publishers (see :func:`settle`)."""
        settle(self.socket, seconds=seconds)

    def recv(self, timeout_ms: int) -> Received | None:
        """Next message within ``timeout_ms`` (None on timeout or on a malformed message)."""
        frames = self._next(timeout_ms)
        return None if frames is None else self.parse(frames)

    def recv_raw(self, timeout_ms: int):
        """Next message within ``timeout_ms`` as ``(base, seq, stamp_ns, frames)`` without decoding it
        (sequence gaps counted; a bad topic frame counts as malformed and returns None)."""
        frames = self._next(timeout_ms)
        head = None if frames is None else self._topic(frames)
        if head is None:
            return None
        self._count_gap(head[0], head[1])
        return (*head, frames)

    def parse(self, frames) -> Received | None:
        head = self._topic(frames)
        if head is None:
            return None
        base, seq, stamp = head
        try:
            if base.startswith(STATUS_TOPIC):
                msg = msgpack.unpackb(_bytes(frames[1]), raw=False)
            else:
                msg = decode(frames, self.limits)
        except (DecodeError, ValueError, TypeError, IndexError) as e:  # msgpack errors are ValueErrors
            return self._malformed(e)
        self._count_gap(base, seq)
        return Received(base, seq, stamp, msg)

    def _next(self, timeout_ms: int):
        """The next multipart message's frames within ``timeout_ms``, or None."""
        if not self.socket.poll(timeout_ms):
            return None
        return self.socket.recv_multipart(copy=False)

    def _topic(self, frames) -> tuple[bytes, int, int | None] | None:
        """Count one received message; its topic ``(base, seq, stamp)``, or None (malformed)."""
        self.counters.received += 1
        try:
            if len(frames) < 2:
                raise ValueError("no header frame")
            return _parse_topic(_bytes(frames[0]))
        except (ValueError, TypeError, IndexError) as e:
            return self._malformed(e)

    def _malformed(self, error: Exception) -> None:
        self.counters.malformed += 1
        self.last_error = str(error)
        return None

    def _count_gap(self, base: bytes, seq: int) -> None:
        last = self._last_seq.get(base)
        if last is not None and seq > last + 1:
            self.counters.dropped += seq - last - 1
        # seq <= last: the publisher restarted (a camera process came back): start over
        self._last_seq[base] = seq

    def close(self) -> None:
        self.socket.close()


def settle(*sockets: zmq.Socket, seconds: float = 0.2) -> None:
    """Wait ``seconds`` while letting libzmq process the sockets' pending commands.

    libzmq attaches new connections and forwards subscriptions only when the application uses a
    socket, so a subscriber that sleeps has not subscribed yet, and a publisher's first message
    after a plain sleep is lost. Polling the sockets' events while waiting avoids both.
    """
    end = time.monotonic() + seconds
    while True:
        for s in sockets:
            s.getsockopt(zmq.EVENTS)
        if time.monotonic() >= end:
            break
        time.sleep(0.005)


def _bytes(frame) -> bytes:
    """A received frame (``zmq.Frame`` or bytes-like) as bytes."""
    return bytes(frame.buffer if hasattr(frame, "buffer") else frame)


def _parse_topic(topic: bytes) -> tuple[bytes, int, int | None]:
    base, sep, rest = topic.partition(b"\0")
    if not sep or len(rest) not in (8, 16):
        raise ValueError(f"bad topic frame {topic[:40]!r}")
    seq = _SEQ.unpack_from(rest)[0]
    stamp = _STAMP.unpack_from(rest, 8)[0] if len(rest) == 16 else None
    return base, seq, stamp
