"""Timestamp synchronisation: KeypointFrames from C cameras -> FrameSets, one per time slot.

Slots are a regular grid at ``fps_hz`` anchored on the first frame's capture time; a frame goes to
the nearest slot if it is within ``tolerance_ms`` of it. A slot is emitted, in order, as soon as
every live camera has moved past it (complete), or ``max_wait_ms`` after its first frame arrived
(a late or silent camera never stalls the stream: its view is empty). A camera that delivered
nothing for ``stale_ms`` is not waited for until it delivers again (a killed camera costs one
``max_wait_ms`` once, not on every slot; when it comes back it rejoins). Frames for a slot already
emitted are late: dropped and counted.

Capture times are checked against the receive clock per camera (:mod:`rtkin.reconstruct.clocks`):
a camera whose clock jumps, drifts or lies is dropped (counted) and re-aligned, and never moves
the slot grid. A camera that ended its stream (:meth:`Synchronizer.end_camera`) is not waited for.

Every decision depends only on the frames and on the ``now_ns`` receive times passed in, never on
a clock read inside, so a recording of (frame, receive time) replays into the same FrameSets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from rtkin.core.messages import FrameSet, KeypointFrame
from rtkin.reconstruct.clocks import CameraClocks, ClockSettings

__all__ = ["SyncSettings", "SyncCounters", "Synchronizer", "ClockSettings"]


@dataclass(frozen=True)
class SyncSettings:
    """Synchroniser settings (TOML ``[sync]`` maps 1:1).

    Attributes:
        fps_hz: slot rate, Hz (the pipeline rate; usually the cameras' frame rate).
        tolerance_ms: max distance between a frame's capture time and its slot time, ms; frames
            further away are dropped (``None``: half a slot period, i.e. every frame gets a slot).
        max_wait_ms: how long a slot waits for missing cameras after its first frame, ms.
        stale_ms: a camera silent for this long (receive clock) is not waited for, ms.
        max_pending_slots: open slots kept at most; older ones are emitted regardless.
        shed: when the machine cannot keep up, FrameSets that lag the newest frames by more than
            one wait window plus one slot are not reconstructed (counted as shed): the output
            stays live instead of falling behind. The run turns it off for streams played as fast
            as possible (every frame is processed, with backpressure).
        clock: per-camera capture-time checks (:class:`rtkin.reconstruct.clocks.ClockSettings`).
    """

    fps_hz: float = 60.0
    tolerance_ms: float | None = None
    max_wait_ms: float = 30.0
    stale_ms: float = 150.0
    max_pending_slots: int = 16
    shed: bool = True
    clock: ClockSettings = ClockSettings()

    def __post_init__(self) -> None:
        if not self.fps_hz > 0:
            raise ValueError(f"sync.fps_hz must be > 0, got {self.fps_hz}")
        if self.tolerance_ms is not None and not self.tolerance_ms > 0:
            raise ValueError(f"sync.tolerance_ms must be > 0, got {self.tolerance_ms}")
        if not (self.max_wait_ms >= 0 and self.stale_ms > 0 and self.max_pending_slots >= 1):
            raise ValueError("sync.max_wait_ms >= 0, stale_ms > 0 and max_pending_slots >= 1 are required")

    @property
    def period_ns(self) -> int:
        return int(round(1e9 / self.fps_hz))

    @property
    def tolerance_ns(self) -> int:
        if self.tolerance_ms is None:
            return self.period_ns // 2
        return int(round(self.tolerance_ms * 1e6))

    @property
    def shed_lag_slots(self) -> int:
        """FrameSets this many slots older than the newest frame are shed (one wait + one slot)."""
        return int(-(-(self.max_wait_ms * 1e6 + self.period_ns) // self.period_ns))


#: A camera whose frame index went back is taken as restarted after this many frames counting up.
RESTART_FRAMES = 5

#: What happens to a frame in the synchroniser: exactly one of these per frame pushed.
FATES = ("used", "late", "superseded", "out_of_tolerance", "clock", "index_backwards", "unknown_camera",
         "wrong_skeleton")


@dataclass
class SyncCounters:
    """What the synchroniser did with its input (all cumulative). Every frame pushed is counted
    once in ``frames_in`` and once in one of :data:`FATES` (``used``: it went into a FrameSet;
    ``superseded``: a second frame of the same camera for one slot, the farther one; ``clock``:
    its capture time failed the camera's clock check; ``index_backwards``: its frame counter went
    back, and not as a restarted camera, which counts up steadily from its new index for
    ``RESTART_FRAMES`` frames). ``by_camera`` splits the fates per camera."""

    frames_in: int = 0
    used: int = 0
    late: int = 0
    superseded: int = 0
    out_of_tolerance: int = 0
    clock: int = 0
    index_backwards: int = 0
    unknown_camera: int = 0
    wrong_skeleton: int = 0
    framesets: int = 0
    incomplete: int = 0  # FrameSets emitted with at least one view empty
    realigned: int = 0  # clock re-alignments of a camera
    by_camera: dict = field(default_factory=dict)  # camera -> {fate: count}

    def count(self, fate: str, camera: str | None = None) -> None:
        setattr(self, fate, getattr(self, fate) + 1)
        if camera is not None:
            cam = self.by_camera.setdefault(camera, {})
            cam[fate] = cam.get(fate, 0) + 1

    def as_dict(self) -> dict:
        out = dict(self.__dict__)
        out["by_camera"] = {c: dict(v) for c, v in self.by_camera.items()}
        return out


@dataclass
class _Slot:
    index: int
    first_recv_ns: int
    frames: dict[int, KeypointFrame] = field(default_factory=dict)
    last_recv_ns: int = 0  # receive time of the newest frame kept in the slot


class Synchronizer:
    """Stage: ``push(frame, now_ns) -> [FrameSet, ...]``; ``poll(now_ns)`` emits timed-out slots.

    Args:
        cameras: camera names in rig order (FrameSets list them in this order).
        settings: see :class:`SyncSettings`.
        skeleton: if given, frames of another skeleton are dropped and counted.
    """

    def __init__(self, cameras: Sequence[str], settings: SyncSettings = SyncSettings(), skeleton: str | None = None):
        self.cameras = tuple(cameras)
        if len(set(self.cameras)) != len(self.cameras) or not self.cameras:
            raise ValueError(f"camera names must be unique and non-empty: {self.cameras}")
        self.settings = settings
        self.skeleton = skeleton
        self._cam_index = {c: i for i, c in enumerate(self.cameras)}
        self.counters = SyncCounters()
        self.clocks = CameraClocks(len(self.cameras), settings.clock)
        self.reset()

    def reset(self) -> None:
        """Forget every slot and camera state (counters are kept)."""
        self._origin_ns: int | None = None
        self._pending: dict[int, _Slot] = {}
        self._next_index = 0  # slots below this were emitted
        self._watermark = [-1] * len(self.cameras)  # highest slot delivered per camera
        self._last_recv = [None] * len(self.cameras)  # receive time of each camera's last frame
        self._start_ns: int | None = None  # receive time of the first frame (never-seen cameras are
        # waited for until stale_ms after it, so the first slots are not emitted with one view)
        self._last_capture = [None] * len(self.cameras)
        self._period_est = [None] * len(self.cameras)  # smoothed frame interval per camera, ns
        self._ended = [False] * len(self.cameras)  # the camera sent its end of stream
        self._last_index = [-1] * len(self.cameras)  # highest frame counter of each camera
        self._last_index_ns = [-(2**62)] * len(self.cameras)  # ... and its capture time
        self._restart = [(-1, 0)] * len(self.cameras)  # (last index, length) of a run counting up again
        self.newest_slot = -1  # highest slot that received a frame
        #: receive time of the last poll, while nothing changed since (a poll at the same time
        #: then has nothing to emit: a poll leaves no slot due nor ready at its time)
        self._polled_ns: int | None = None
        self.clocks.reset()
        #: slot index -> receive time of the last frame that went into its FrameSet (ns), for the
        #: "last camera frame in -> output" latency; the consumer pops the entries it uses.
        self.arrival_ns: dict[int, int] = {}
        #: slot index -> :attr:`newest_slot` when its FrameSet was emitted (how far behind the
        #: newest frames it came out: the overload decision); the consumer pops the entries.
        self.emitted_behind: dict[int, int] = {}

    # ------------------------------------------------------------------ input
    def push(self, frame: KeypointFrame, now_ns: int) -> list[FrameSet]:
        """Add one frame received at ``now_ns`` (receive clock, ns); returns FrameSets now due."""
        out = self.poll(now_ns) if now_ns != self._polled_ns else []  # the pipeline just polled
        self._polled_ns = None  # the camera's state changes below
        self.counters.frames_in += 1
        c = self._cam_index.get(frame.camera)
        if c is None:
            self.counters.count("unknown_camera")
            return out
        if self.skeleton is not None and frame.skeleton != self.skeleton:
            self.counters.count("wrong_skeleton", frame.camera)
            return out
        realigned = self.clocks.realignments
        capture_ns = self.clocks.check(c, frame.capture_ns, now_ns)
        self.counters.realigned += self.clocks.realignments - realigned
        if capture_ns is None:
            self.counters.count("clock", frame.camera)
            return out
        if capture_ns != frame.capture_ns:  # on the rig's clock from here on
            frame = KeypointFrame(frame.camera, frame.frame_index, capture_ns, frame.skeleton, frame.keypoints,
                                  wall_ns=frame.wall_ns)
        self._last_recv[c] = now_ns
        self._ended[c] = False
        self._track_rate(c, capture_ns)
        if self._start_ns is None:
            self._start_ns = now_ns
        if self._origin_ns is None:
            self._origin_ns = capture_ns
        s = self._slot_of(capture_ns)
        if s is None:
            self.counters.count("out_of_tolerance", frame.camera)
            return out
        if s < self._next_index:
            self.counters.count("late", frame.camera)
            return out
        if not self._index_ok(c, frame.frame_index, capture_ns):
            self.counters.count("index_backwards", frame.camera)
            return out
        self._add(c, s, frame, now_ns)
        out.extend(self._emit_ready(now_ns))
        return out

    def end_camera(self, camera: str, now_ns: int) -> list[FrameSet]:
        """``camera`` ended its stream (a finite source sent its last frame): slots no longer wait
        for it (until it sends again). Returns the FrameSets now due."""
        c = self._cam_index.get(camera)
        if c is None:
            return []
        self._polled_ns = None
        self._ended[c] = True
        return self._emit_ready(now_ns)

    @property
    def all_ended(self) -> bool:
        """Every camera has ended its stream."""
        return all(self._ended)

    def poll(self, now_ns: int) -> list[FrameSet]:
        """Emit slots whose wait expired by ``now_ns`` (and everything before them), in order."""
        if not self._pending:
            return []
        wait = int(self.settings.max_wait_ms * 1e6)
        due = [s for s, slot in self._pending.items() if now_ns >= slot.first_recv_ns + wait]
        out = self._emit_through(max(due)) if due else []
        out.extend(self._emit_ready(now_ns))
        self._polled_ns = now_ns
        return out

    def flush(self) -> list[FrameSet]:
        """End of stream: emit every pending slot."""
        self._polled_ns = None
        return self._emit_through(max(self._pending)) if self._pending else []

    def next_deadline_ns(self) -> int | None:
        """Receive-clock time at which :meth:`poll` will next have something to emit, or None."""
        if not self._pending:
            return None
        return min(s.first_recv_ns for s in self._pending.values()) + int(self.settings.max_wait_ms * 1e6)

    # ------------------------------------------------------------------ internals
    def _slot_of(self, capture_ns: int) -> int | None:
        period = self.settings.period_ns
        rel = capture_ns - self._origin_ns
        s = (rel + period // 2) // period
        if abs(rel - s * period) > self.settings.tolerance_ns:
            return None
        return int(s)

    def _slot_time(self, s: int) -> int:
        return self._origin_ns + s * self.settings.period_ns

    def _add(self, c: int, s: int, frame: KeypointFrame, now_ns: int) -> None:
        slot = self._pending.get(s)
        if slot is None:
            slot = self._pending[s] = _Slot(s, now_ns)
        old = slot.frames.get(c)
        if old is not None:
            self.counters.count("superseded", frame.camera)  # the one of the two that is not kept
            t = self._slot_time(s)
            if abs(old.capture_ns - t) <= abs(frame.capture_ns - t):
                return
        else:
            self.counters.count("used", frame.camera)
        slot.frames[c] = frame
        slot.last_recv_ns = max(slot.last_recv_ns, now_ns)
        self._watermark[c] = max(self._watermark[c], s)
        self.newest_slot = max(self.newest_slot, s)

    def _index_ok(self, c: int, index: int, capture_ns: int) -> bool:
        """The frame counter and the capture time agree: both go up (or both back: a frame that
        arrives out of order); a counter that went back while time went on is inconsistent, unless
        the camera restarted (its counter then counts up again for RESTART_FRAMES frames)."""
        if index > self._last_index[c]:
            self._last_index[c] = index
            self._last_index_ns[c] = capture_ns
            self._restart[c] = (-1, 0)
            return True
        if capture_ns <= self._last_index_ns[c]:
            return True
        last, n = self._restart[c]
        n = n + 1 if 0 <= last < index else 1
        if n >= RESTART_FRAMES:
            self._last_index[c] = index
            self._last_index_ns[c] = capture_ns
            self._restart[c] = (-1, 0)
            return True
        self._restart[c] = (index, n)
        return False

    def _track_rate(self, c: int, capture_ns: int) -> None:
        last = self._last_capture[c]
        self._last_capture[c] = capture_ns
        if last is None or capture_ns <= last:
            return
        dt = capture_ns - last
        est = self._period_est[c]
        self._period_est[c] = dt if est is None else 0.8 * est + 0.2 * dt

    def _done_with(self, c: int, slot: _Slot) -> bool:
        """Camera c will not improve this slot: it moved past it, or it has a frame there and is
        not faster than the slot rate (a faster camera may still send a closer frame)."""
        if self._watermark[c] > slot.index:
            return True
        f = slot.frames.get(c)
        if f is None:
            return False
        est = self._period_est[c]
        fast = est is not None and est < 0.75 * self.settings.period_ns
        return not fast or f.capture_ns >= self._slot_time(slot.index)

    def _live(self, now_ns: int) -> list[int]:
        stale = int(self.settings.stale_ms * 1e6)
        start = now_ns if self._start_ns is None else self._start_ns
        return [c for c, t in enumerate(self._last_recv)
                if not self._ended[c] and now_ns - (start if t is None else t) < stale]

    def _emit_ready(self, now_ns: int) -> list[FrameSet]:
        """Emit leading slots that every live camera has moved past (or that overflow)."""
        out: list[FrameSet] = []
        live = self._live(now_ns)
        while self._pending:
            s = min(self._pending)
            if all(self._done_with(c, self._pending[s]) for c in live):  # nobody left to wait for
                out.extend(self._emit_through(s))
            elif len(self._pending) > self.settings.max_pending_slots:
                out.extend(self._emit_through(s))
            else:
                break
        return out

    def _emit_through(self, last: int) -> list[FrameSet]:
        out = []
        for s in sorted(k for k in self._pending if k <= last):
            slot = self._pending.pop(s)
            frames = tuple(slot.frames.get(c) for c in range(len(self.cameras)))
            if any(f is None for f in frames):
                self.counters.incomplete += 1
            self.counters.framesets += 1
            out.append(FrameSet(self._slot_time(s), self.cameras, frames, slot_index=s))
            self.arrival_ns[s] = slot.last_recv_ns
            self.emitted_behind[s] = self.newest_slot - s
            if len(self.arrival_ns) > 4 * self.settings.max_pending_slots + 64:  # nobody pops: stay bounded
                self.arrival_ns.pop(next(iter(self.arrival_ns)))
            if len(self.emitted_behind) > 4 * self.settings.max_pending_slots + 64:
                self.emitted_behind.pop(next(iter(self.emitted_behind)))
        self._next_index = max(self._next_index, last + 1)
        return out
