"""ZeroMQ transport for typed messages: publish with sequence numbers, receive with counters.

A message on the wire is the codec's frames ``[topic, header, buffers...]``; the topic frame is
``base + b"\\0" + seq (u64 BE) [+ stamp_ns (i64 BE)]``. ``base`` ends with ``/`` (``kp/cam01/``,
``sk3d/``, ``tap/``, ``status/sync/``) so a prefix subscription never matches another camera
(``kp/cam1/`` vs ``kp/cam10/``). Receivers count undecodable messages as malformed and sequence
gaps as dropped, per publisher (see :class:`Receiver`); neither ever raises.

Sockets: PUB never blocks (a slow or stuck subscriber loses messages beyond the high-water mark,
the publisher does not stall). Serialize first, then send; one socket per thread.

Every socket is set up by the process's :class:`Link` (carried by a :class:`LinkContext`, made by
:func:`link_context` from the run configuration; a plain ``zmq.Context`` gets :data:`DEFAULT_LINK`):

- ``ZMQ_MAXMSGSIZE``: no frame larger than the largest legitimate one of the rig
  (:func:`wire_sizes`); a peer sending more is disconnected by libzmq before it is buffered.
- receive high-water marks of *bound* sockets (which anyone who reaches the address can connect
  to) capped so one connection's queue holds at most ``queue_bytes`` of largest messages.
- TCP: heartbeats (a dead link is noticed within ~2 s), reconnection every 0.1 s with a 0.5 s
  connect timeout (a host whose link comes back rejoins within about a second).
- security (:mod:`rtkin.runtime.security`): CURVE on non-loopback addresses, or plaintext with
  ``insecure`` and a warning, or a refusal.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass
from typing import Iterable

import msgpack
import zmq

from rtkin.core.codec import DEFAULT_LIMITS, DecodeError, DecodeLimits, decode, encode
from rtkin.runtime.security import (
    Authenticator, Curve, InsecureEndpointError, is_local_endpoint, load_curve, warn_insecure,
)

__all__ = ["Publisher", "Receiver", "Received", "ReceiverCounters", "topic_base", "settle", "STATUS_TOPIC",
           "Link", "LinkContext", "link_context", "link_for", "wire_sizes", "DEFAULT_LINK"]

STATUS_TOPIC = b"status/"
_SEQ = struct.Struct(">Q")
_STAMP = struct.Struct(">q")

#: Frames no larger than this are always legitimate (msgpack headers and status dicts), bytes.
MIN_FRAME_BYTES = 64 * 1024
#: Bound sockets: a connection's receive queue holds at most this many bytes of largest messages.
QUEUE_BYTES = 64 * 1024 * 1024
#: People per view the wire sizes allow by default (the codec's own limit is higher).
SIZING_PEOPLE = 64

# TCP liveness (ms): heartbeats notice a dead link, reconnection is quick and never backs off.
HEARTBEAT_IVL_MS = 500
HEARTBEAT_TIMEOUT_MS = 2000
RECONNECT_IVL_MS = 100
CONNECT_TIMEOUT_MS = 500


def wire_sizes(cameras: int, keypoints: int, people: int = SIZING_PEOPLE) -> tuple[int, int]:
    """``(largest frame, largest message)`` in bytes of a legitimate rtkin message for a rig, with
    a 2x margin: ``cameras`` C (status dicts grow with them), ``keypoints`` K of the skeleton,
    ``people`` P per view / tracked. A KeypointFrame carries ``(P, K, 3)`` float32, a Skeleton3D
    ``(N, K, 3)`` float64 points plus three ``(N, K)`` arrays; headers and status dicts stay under
    ``max(64 KiB, 16 KiB + C * 4 KiB)``.
    """
    if min(cameras, keypoints, people) < 1:
        raise ValueError(f"wire_sizes needs cameras, keypoints, people >= 1, got {cameras}, {keypoints}, {people}")
    small = max(MIN_FRAME_BYTES, 16 * 1024 + cameras * 4096)
    frame = max(small, people * keypoints * 3 * 8)
    message = DEFAULT_LIMITS.max_topic_bytes + small + max(people * keypoints * 12, people * (8 + keypoints * 33))
    return 2 * frame, 2 * message


@dataclass(frozen=True)
class Link:
    """How one process sets up its sockets (see the module docstring).

    Attributes:
        max_frame_bytes: ``ZMQ_MAXMSGSIZE`` of every socket (per frame), bytes.
        max_message_bytes: the largest legitimate message, bytes (sizes the receive HWM of bound
            sockets: at most ``queue_bytes // max_message_bytes`` messages, at least 16).
        queue_bytes: receive queue budget per connection of a bound socket, bytes.
        curve: CURVE keys for non-loopback endpoints (None: no keys).
        insecure: allow plaintext on non-loopback endpoints (warned once per endpoint).
        curve_loopback: CURVE on loopback TCP endpoints too (a machine whose other users must
            not read the stream; ``ipc://`` and ``inproc://`` stay plaintext).
    """

    max_frame_bytes: int
    max_message_bytes: int
    queue_bytes: int = QUEUE_BYTES
    curve: Curve | None = None
    insecure: bool = False
    curve_loopback: bool = False

    def bound_hwm(self, requested: int) -> int:
        """Receive high-water mark of a bound socket asked for ``requested`` messages."""
        return max(1, min(int(requested), max(16, self.queue_bytes // self.max_message_bytes)))


#: Sockets on a plain ``zmq.Context``: sizes for up to 16 cameras and COCO_133, no keys.
DEFAULT_LINK = Link(*wire_sizes(16, 133))


def link_for(cfg) -> Link:
    """The Link of a run configuration: wire sizes of its rig and skeleton, its CURVE keys."""
    from rtkin.core.skeletons import get_skeleton

    t = cfg.transport
    cams = len(cfg.rig.cameras) or 16
    frame, message = wire_sizes(cams, get_skeleton(cfg.rig.skeleton).n_keypoints)
    curve = load_curve(cfg.path(t.keys), t.client) if t.keys else None
    return Link(frame, message, curve=curve, insecure=t.insecure)


class LinkContext(zmq.Context):
    """A ZeroMQ context carrying its process's :class:`Link`, the CURVE authenticator of its bound
    sockets (started at the first CURVE bind, stopped on ``term``), and optionally a remote
    camera's clock (KeypointFrames sent on it are moved into the sync host's clock)."""

    link: Link = DEFAULT_LINK
    clock: object = None
    _authenticator: Authenticator | None = None

    def authenticator(self) -> Authenticator:
        if self._authenticator is None:
            self._authenticator = Authenticator(self, self.link.curve.authorized)
        return self._authenticator

    def term(self) -> None:
        if self._authenticator is not None:
            auth, self._authenticator = self._authenticator, None
            auth.stop()
        super().term()


def link_context(cfg=None, node_ctx=None, link: Link | None = None) -> LinkContext:
    """A :class:`LinkContext` for a process of the run ``cfg`` (``link`` overrides it); a node
    context with a ``clock`` attribute (a remote camera) passes it on to the Publishers."""
    ctx = LinkContext()
    ctx.link = link if link is not None else (link_for(cfg) if cfg is not None else DEFAULT_LINK)
    ctx.clock = getattr(node_ctx, "clock", None)
    return ctx


def _link(ctx: zmq.Context) -> Link:
    return ctx.link if isinstance(ctx, LinkContext) else DEFAULT_LINK


def _setup(sock: zmq.Socket, ctx: zmq.Context, endpoint: str, bind: bool) -> str:
    """Size limits, TCP liveness and security of a new socket, before it binds or connects to
    ``endpoint``; returns its ZAP domain ("" without CURVE)."""
    link = _link(ctx)
    sock.setsockopt(zmq.MAXMSGSIZE, link.max_frame_bytes)
    if endpoint.startswith("tcp://"):
        sock.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
        sock.setsockopt(zmq.HEARTBEAT_TTL, HEARTBEAT_TIMEOUT_MS)
        sock.setsockopt(zmq.RECONNECT_IVL, RECONNECT_IVL_MS)
        sock.setsockopt(zmq.CONNECT_TIMEOUT, CONNECT_TIMEOUT_MS)
    curve = link.curve
    if is_local_endpoint(endpoint) and not (curve and link.curve_loopback and endpoint.startswith("tcp://")):
        return ""
    if curve is None:
        if not link.insecure:
            raise InsecureEndpointError(
                f"{endpoint} is not a loopback address: set [transport] keys (CURVE keys made by "
                "`rtkin keys`), or insecure = true for plaintext")
        warn_insecure(endpoint, "binding" if bind else "connecting to")
        return ""
    if bind:
        if curve.server is None:
            raise InsecureEndpointError(f"binding {endpoint} needs the server key: no server.key_secret in {curve.folder}")
        domain = ctx.authenticator().domain(endpoint)
        sock.setsockopt_string(zmq.ZAP_DOMAIN, domain)
        sock.setsockopt(zmq.CURVE_SERVER, 1)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, curve.server.public)
        sock.setsockopt(zmq.CURVE_SECRETKEY, curve.server.secret)
        return domain
    if curve.client is None or curve.server_public is None:
        raise InsecureEndpointError(f"connecting to {endpoint} needs server.key and this host's client key in {curve.folder}")
    sock.setsockopt(zmq.CURVE_SERVERKEY, curve.server_public)
    sock.setsockopt(zmq.CURVE_PUBLICKEY, curve.client.public)
    sock.setsockopt(zmq.CURVE_SECRETKEY, curve.client.secret)
    return ""


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
    """A PUB socket sending typed messages (and status dicts) with per-topic sequence numbers.

    On a :class:`LinkContext` with a ``clock`` (a camera on another host), KeypointFrames are sent
    with their capture time moved into the sync host's clock (``clock.to_server_ns``).
    """

    def __init__(self, ctx: zmq.Context, endpoint: str, bind: bool, sndhwm: int = 1000):
        self.socket = ctx.socket(zmq.PUB)
        try:
            self.socket.setsockopt(zmq.SNDHWM, sndhwm)  # own messages: sized by what we send
            self.socket.setsockopt(zmq.LINGER, 200)
            _setup(self.socket, ctx, endpoint, bind)
            (self.socket.bind if bind else self.socket.connect)(endpoint)
        except Exception:
            self.socket.close(linger=0)
            raise
        self.clock = getattr(ctx, "clock", None) if isinstance(ctx, LinkContext) else None
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
        if self.clock is not None and type(msg).__name__ == "KeypointFrame":
            msg = self.clock.to_server(msg)
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

    def forward(self, frames, base: bytes, stamp_ns: int | None = None) -> None:
        """Send received frames ``[topic, header, buffers...]`` again under a new topic (this
        publisher's sequence), without decoding or re-encoding them."""
        self._send([self._topic(base, stamp_ns), *frames[1:]])

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
    """Attributes:
        received: messages that arrived (malformed ones included).
        malformed: undecodable messages, dropped.
        dropped: messages lost before reaching us (sequence gaps confirmed by the publisher's
            next message, at most ``MAX_RATE_HZ`` per second of the publisher's life).
        seq_rejected: sequence numbers that did not fit their publisher's stream (a forged or
            corrupted jump); the message itself is still delivered.
        restarts: publishers whose sequence went back (a process restarted).
        auth_refused: CURVE clients refused at the handshake (bound sockets with keys only).
    """

    received: int = 0
    malformed: int = 0
    dropped: int = 0
    seq_rejected: int = 0
    restarts: int = 0
    auth_refused: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


#: No rtkin topic is published faster than this (16 cameras x 120 fps on ``tap/``), messages/s.
MAX_RATE_HZ = 4000
#: A gap this small needs no more evidence than the publisher's own next messages.
SEQ_SLACK = 16
#: Publishers tracked at once per receiver (the one heard first is forgotten first).
MAX_TRACKS = 1024


class _Track:
    """One publisher's sequence on one topic base."""

    __slots__ = ("first_seq", "first_ns", "last", "pending", "undo")

    def __init__(self, seq: int, now: int):
        self.first_seq, self.first_ns, self.last = seq, now, seq
        self.pending: int | None = None  # a jump waiting for the next message to confirm it
        self.undo: tuple[int, int, int] | None = None  # last counted gap: (last before, counted, seq)


class _SeqBook:
    """Sequence gaps per publisher: per topic base and per connection where the transport says
    who sent a message (the CURVE key of an authenticated client, the peer's IP for TCP, its
    process for ``ipc://``).

    A jump is counted only when the publisher's next message continues after it, and taken back
    when the stream then resumes just after its old position (the jump was not its own: a forged
    or corrupted sequence number, counted in ``seq_rejected``). A counted gap never exceeds what
    the publisher could have sent since it was first heard (``MAX_RATE_HZ``)."""

    def __init__(self, counters: ReceiverCounters):
        self.c = counters
        self.tracks: dict[tuple[bytes, str], _Track] = {}  # oldest first

    def __call__(self, base: bytes, peer: str, seq: int) -> None:
        key = (base, peer)
        tr = self.tracks.get(key)
        if tr is not None and seq == tr.last + 1 and tr.pending is None and tr.undo is None:
            tr.last = seq  # the common case
            return
        now = time.monotonic_ns()
        if tr is None:
            self.tracks[key] = _Track(seq, now)
            if len(self.tracks) > MAX_TRACKS:  # forget the publisher heard first (it starts over if still there)
                del self.tracks[next(iter(self.tracks))]
            return
        if tr.pending is not None:
            p, tr.pending = tr.pending, None
            if p < seq <= p + SEQ_SLACK:  # confirmed: the stream goes on after the jump
                before = tr.last
                tr.undo = (before, self._gap(tr, p, now) + self._gap(tr, seq, now), seq)
                return
            self.c.seq_rejected += 1  # the stream did not follow the jump: it was not its own
        if tr.undo is not None and (seq <= tr.last or seq > tr.undo[2] + 4 * SEQ_SLACK):
            before, counted, _ = tr.undo
            tr.undo = None
            if before < seq <= before + SEQ_SLACK:  # back to where it was: the jump was foreign
                self.c.dropped -= counted
                self.c.seq_rejected += 1
                tr.last = seq
                return
        if seq == tr.last + 1:
            tr.last = seq
        elif seq > tr.last + 1:
            tr.pending = seq
        else:  # seq <= last: the publisher restarted (a camera process came back): start over
            self.c.restarts += 1
            self.tracks[key] = _Track(seq, now)

    def _gap(self, tr: _Track, seq: int, now: int) -> int:
        """Count the gap before ``seq`` (clamped to the publisher's plausible output); advance."""
        most = tr.first_seq + SEQ_SLACK + MAX_RATE_HZ * (now - tr.first_ns) // 1_000_000_000
        gap = seq - tr.last - 1
        counted = max(0, min(gap, most - tr.last))
        if counted < gap:
            self.c.seq_rejected += 1
        self.c.dropped += counted
        tr.last = seq
        return counted


class Receiver:
    """A SUB socket decoding typed messages; malformed input is counted and dropped.

    A bound Receiver accepts connections from anyone who reaches its address: its receive
    high-water mark is capped by the Link (``Link.bound_hwm``), and with CURVE keys it counts
    the clients refused at the handshake (``counters.auth_refused``). :meth:`attach` serves other
    sockets of the process (the clock server) while it waits.
    """

    def __init__(self, ctx: zmq.Context, endpoint: str, topics: Iterable[bytes], bind: bool,
                 rcvhwm: int = 1000, limits: DecodeLimits = DEFAULT_LIMITS):
        self.ctx = ctx
        self.socket = ctx.socket(zmq.SUB)
        try:
            self.socket.setsockopt(zmq.RCVHWM, _link(ctx).bound_hwm(rcvhwm) if bind else rcvhwm)
            self.socket.setsockopt(zmq.LINGER, 0)
            for t in topics:
                self.socket.setsockopt(zmq.SUBSCRIBE, t)
            self._domain = _setup(self.socket, ctx, endpoint, bind)
            (self.socket.bind if bind else self.socket.connect)(endpoint)
        except Exception:
            self.socket.close(linger=0)
            raise
        self._local = is_local_endpoint(endpoint)
        self.limits = limits
        self._counters = ReceiverCounters()
        self._seqs = _SeqBook(self._counters)
        self._peer_prop = "User-Id" if self._domain else "Peer-Address"
        self._attached: list = []
        self._poller: zmq.Poller | None = None
        self.connected: list[str] = [] if bind else [endpoint]

    @property
    def counters(self) -> ReceiverCounters:
        if self._domain:
            self._counters.auth_refused = self.ctx.authenticator().refused(self._domain)
        return self._counters

    def connect(self, endpoint: str) -> None:
        """Also connect to ``endpoint`` (same security as the first: both local or both not)."""
        if is_local_endpoint(endpoint) != self._local:
            raise InsecureEndpointError(f"{endpoint}: one socket cannot mix local and network endpoints")
        self.socket.connect(endpoint)
        self.connected.append(endpoint)

    def disconnect(self, endpoint: str) -> None:
        """Stop receiving from ``endpoint`` (a no-op if not connected)."""
        if endpoint in self.connected:
            self.connected.remove(endpoint)
            try:
                self.socket.disconnect(endpoint)
            except zmq.ZMQError:
                pass

    def attach(self, service) -> None:
        """While waiting for messages, serve ``service`` too: an object with a ``socket`` and a
        ``handle()`` method called when that socket is readable (and whose ``status()`` joins
        :meth:`status`)."""
        self._attached.append(service)
        self._poller = zmq.Poller()
        for s in [self.socket] + [a.socket for a in self._attached]:
            self._poller.register(s, zmq.POLLIN)

    def status(self) -> dict:
        """Counters, plus each attached service's ``status()`` under its ``name``."""
        out: dict = self.counters.as_dict()
        for a in self._attached:
            out[a.name] = a.status()
        return out

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
        self._count_gap(head[0], head[1], frames[0])
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
        self._count_gap(base, seq, frames[0])
        return Received(base, seq, stamp, msg)

    def _next(self, timeout_ms: int):
        """The next multipart message's frames within ``timeout_ms``, or None."""
        if self._poller is None:
            if not self.socket.poll(timeout_ms):
                return None
            return self.socket.recv_multipart(copy=False)
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            ready = dict(self._poller.poll(max(0, int((deadline - time.monotonic()) * 1000 + 0.5))))
            for a in self._attached:
                if a.socket in ready:
                    a.handle()
            if self.socket in ready:
                return self.socket.recv_multipart(copy=False)
            if time.monotonic() >= deadline:
                return None

    def _topic(self, frames) -> tuple[bytes, int, int | None] | None:
        """Count one received message; its topic ``(base, seq, stamp)``, or None (malformed)."""
        self._counters.received += 1
        try:
            if len(frames) < 2:
                raise ValueError("no header frame")
            return _parse_topic(_bytes(frames[0]))
        except (ValueError, TypeError, IndexError) as e:
            return self._malformed(e)

    def _malformed(self, error: Exception) -> None:
        self._counters.malformed += 1
        self.last_error = str(error)
        return None

    def count_malformed(self, error: Exception) -> None:
        """Count a message taken with :meth:`recv_raw` that did not decode."""
        self._malformed(error)

    def _count_gap(self, base: bytes, seq: int, frame=None) -> None:
        peer = ""
        if frame is not None and hasattr(frame, "get"):
            try:
                peer = frame.get(self._peer_prop)
            except zmq.ZMQError:
                pass
        self._seqs(base, peer, seq)

    def close(self) -> None:
        """Close the socket and the attached services' sockets."""
        for a in self._attached:
            a.close()
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
