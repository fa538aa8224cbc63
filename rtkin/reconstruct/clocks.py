"""Per-camera clock tracking: a capture timestamp is a claim, checked against the receive clock.

For every frame the synchroniser passes ``lag = receive time - capture time`` (ns): the camera's
capture-to-receive latency when its clock is the sync host's. Latencies differ between cameras
(pose estimation, network) but each camera's is steady, and its smallest value over a short
window (the *envelope*; latency noise only adds delay) is steadier still. So each camera is
checked against its own recent envelope, and a newly seen camera against the others':

- *fault*: a frame whose lag is more than ``future_ms`` below its camera's envelope (captured "in
  the future") or ``past_ms`` above it is not used, and counted. A single bad frame costs that
  frame only; the slot grid never moves. A camera seen for the first time (or back after a
  silence) must lie within ``join_ms`` of the other cameras' envelopes, and the very first camera
  between ``-future_ms`` and ``join_ms`` of a zero lag: capture times are on the sync host's clock
  (remote cameras translate theirs), so a first frame stamped hours away never sets the grid.
- *re-alignment*: when a camera's faulty frames agree with each other for ``realign_ms`` (its new
  clock is steady: a jump, a restarted camera host), its correction ``delta`` (added to its
  capture times) is reset so that its lag is back at its baseline: it costs ~``realign_ms``.
- *drift*: a camera whose envelope moves more than ``drift_ms`` away from its baseline, beyond
  what the other cameras' envelopes moved (a busy sync delays every camera alike), gets its
  correction nudged by that amount: a clock 1 % fast moves 10 ms/s and is corrected about once a
  second. A move faster than a clock drifts (``max_drift``, since the baseline was last set) and
  within ``future_ms`` is a change of latency, not of clock: the baseline moves, the capture
  times stay (a host's first frames arrive late while it connects: taken for a drift, the end of
  that delay shifted the camera's times by tens of ms, and on a two-host rig nearly all its
  frames were then late). On one host the cameras share a monotonic clock and none of this triggers.

*hold*: when the sync itself is behind (it read a large batch at once), every lag is inflated by
its own backlog, which says nothing about the cameras' clocks: frames are then checked only
against the future side, and envelopes, corrections and re-alignments wait.

Every decision depends only on the frames, the receive times and the batches passed in, so a
recording of (frame, receive time) replays into the same decisions.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

__all__ = ["ClockSettings", "CameraClocks"]


@dataclass(frozen=True)
class ClockSettings:
    """Clock checks of the synchroniser (TOML ``[sync.clock]`` maps 1:1).

    Attributes:
        enabled: check capture times against the receive clock (the run turns it off for
            streams played faster than real time: their capture times are stream times).
        future_ms: a frame captured this much later than its camera's envelope allows is a fault, ms.
        past_ms: a frame this much older than its camera's envelope is a fault (not queueing), ms.
        join_ms: a camera joining must lie within this of the other cameras' envelopes, ms.
        window_ms: receive-time window of each camera's lag envelope, ms.
        realign_ms: a faulty camera is re-aligned once its frames agree for this long, ms.
        agree_ms: faulty frames "agree" when their lags lie within this range, ms.
        drift_ms: a camera's envelope this far from its baseline (beyond the others' move) is
            corrected, ms.
        max_drift: the fastest a camera clock drifts (s per s); a faster move of the envelope,
            up to ``future_ms``, is a latency change (the baseline follows; no correction).
    """

    enabled: bool = True
    future_ms: float = 50.0
    past_ms: float = 1000.0
    join_ms: float = 1000.0
    window_ms: float = 500.0
    realign_ms: float = 300.0
    agree_ms: float = 60.0
    drift_ms: float = 5.0
    max_drift: float = 0.02

    def __post_init__(self) -> None:
        vals = (self.future_ms, self.past_ms, self.join_ms, self.window_ms, self.realign_ms, self.agree_ms,
                self.drift_ms, self.max_drift)
        if not all(v > 0 for v in vals):
            raise ValueError("sync.clock: every duration must be > 0 ms")
        if not self.drift_ms < self.future_ms:
            raise ValueError("sync.clock.drift_ms must be below future_ms")


class _Camera:
    __slots__ = ("delta", "env", "accepted", "base", "based", "faults", "realigned")

    def __init__(self) -> None:
        self.delta = 0  # ns added to the camera's capture times
        #: (recv_ns, corrected lag ns) of accepted frames in the window, lags increasing from the
        #: front (a sliding-window minimum: the front is the envelope)
        self.env: deque[tuple[int, int]] = deque()
        self.accepted = 0  # frames accepted since the camera joined or was re-aligned
        self.base: int | None = None  # corrected lag when the camera joined (ns)
        self.based = 0  # recv_ns when the envelope was last at its baseline (joined, corrected)
        self.faults: deque[tuple[int, int]] = deque()  # (recv_ns, raw lag ns) of rejected frames
        self.realigned = 0

    def envelope(self) -> int | None:
        return self.env[0][1] if self.env else None

    def add(self, recv_ns: int, lag: int) -> None:
        while self.env and self.env[-1][1] >= lag:
            self.env.pop()
        self.env.append((recv_ns, lag))
        self.accepted += 1


class CameraClocks:
    """Stage helper of the synchroniser: ``check(c, capture_ns, recv_ns) -> capture_ns on the
    rig's clock, or None`` (a clock fault: do not use the frame).

    Args:
        n_cameras: cameras (indexed 0..C-1 in rig order).
        settings: see :class:`ClockSettings`.
    """

    def __init__(self, n_cameras: int, settings: ClockSettings = ClockSettings()):
        self.n = int(n_cameras)
        self.settings = settings
        self.reset()

    def reset(self) -> None:
        self._cams = [_Camera() for _ in range(self.n)]
        self.faults = 0
        self.realignments = 0
        self.drift_corrections = 0
        #: the sync is behind (set per batch by the pipeline): future-side checks only
        self.hold = False

    # ------------------------------------------------------------------ public
    def delta_ns(self, c: int) -> int:
        """The correction (ns) currently added to camera ``c``'s capture times."""
        return self._cams[c].delta

    def check(self, c: int, capture_ns: int, recv_ns: int) -> int | None:
        """Camera ``c``'s frame captured at ``capture_ns`` and received at ``recv_ns`` (ns): its
        capture time on the rig's clock, or None (a clock fault, counted)."""
        s = self.settings
        if not s.enabled:
            return capture_ns
        cam = self._cams[c]
        for other in self._cams:  # every window at this time: a stalled sync expires them alike
            self._expire(other, recv_ns)
        lag = recv_ns - capture_ns - cam.delta
        expected = cam.envelope()
        if self.hold:  # a backlog only adds lag: a frame "from the future" is still a fault
            if expected is None:
                expected = cam.base if cam.base is not None else self._others(c)
            if expected is None:  # nothing known yet: a latency, not hours (backlog or not)
                bad = not -s.future_ms * 1e6 <= lag <= s.join_ms * 1e6
            else:
                bad = lag - expected < -s.future_ms * 1e6
            if bad:
                self.faults += 1
                return None
            return capture_ns + cam.delta
        if expected is not None:
            ok = -s.future_ms * 1e6 <= lag - expected <= s.past_ms * 1e6
        elif cam.base is not None or (expected := self._others(c)) is not None:
            expected = cam.base if cam.base is not None else expected
            ok = abs(lag - expected) <= s.join_ms * 1e6
        else:  # the first camera of all: a latency, not a clock offset
            ok = -s.future_ms * 1e6 <= lag <= s.join_ms * 1e6
        if not ok:
            return self._fault(c, cam, recv_ns, recv_ns - capture_ns)
        cam.faults.clear()
        cam.add(recv_ns, lag)
        if cam.base is None:
            cam.base, cam.based = lag, recv_ns
        self._drift(c, cam, recv_ns)
        return capture_ns + cam.delta

    def status(self) -> dict:
        """Clock faults, re-alignments, and per camera (rig order) the correction and the lag
        envelope, ms."""
        cams = []
        for cam in self._cams:
            env = cam.envelope()
            cams.append({"delta_ms": cam.delta / 1e6, "lag_ms": None if env is None else env / 1e6,
                         "realigned": cam.realigned})
        return {"faults": self.faults, "realignments": self.realignments,
                "drift_corrections": self.drift_corrections, "cameras": cams}

    # ------------------------------------------------------------------ internals
    def _expire(self, cam: _Camera, now_ns: int) -> None:
        horizon = now_ns - int(self.settings.window_ms * 1e6)
        while cam.env and cam.env[0][0] < horizon:
            cam.env.popleft()

    def _others(self, c: int) -> int | None:
        """Median envelope (ns) of the other cameras that have one, or None."""
        envs = sorted(e for i, cam in enumerate(self._cams) if i != c and (e := cam.envelope()) is not None)
        if not envs:
            return None
        m = len(envs) // 2
        return envs[m] if len(envs) % 2 else (envs[m - 1] + envs[m]) // 2

    def _fault(self, c: int, cam: _Camera, recv_ns: int, raw_lag: int) -> None:
        s = self.settings
        self.faults += 1
        cam.faults.append((recv_ns, raw_lag))
        agree = int(s.agree_ms * 1e6)
        lags = [l for _, l in cam.faults]
        while max(lags) - min(lags) > agree:  # keep the newest run of agreeing frames
            cam.faults.popleft()
            lags.pop(0)
        if recv_ns - cam.faults[0][0] >= s.realign_ms * 1e6:
            if cam.base is not None:
                target = cam.base + (self._common_shift(c) or 0)
            else:
                target = self._others(c) or 0  # nobody to align with: onto the receive clock
            cam.delta = min(lags) - target
            cam.based = recv_ns
            cam.env.clear()
            cam.accepted = 0
            cam.faults.clear()
            cam.realigned += 1
            self.realignments += 1
        return None

    def _common_shift(self, c: int) -> int | None:
        """Median move (ns) of the other cameras' envelopes from their baselines, or None."""
        moves = sorted(e - cam.base for i, cam in enumerate(self._cams)
                       if i != c and cam.base is not None and (e := cam.envelope()) is not None)
        if not moves:
            return None
        m = len(moves) // 2
        return moves[m] if len(moves) % 2 else (moves[m - 1] + moves[m]) // 2

    def _drift(self, c: int, cam: _Camera, now_ns: int) -> None:
        """Nudge ``delta`` when this camera's envelope left its baseline by more than ``drift_ms``
        beyond the other cameras' common move, at most as fast as a clock drifts; a faster (and
        small) move is a latency change: the baseline follows."""
        common = self._common_shift(c)
        if common is None or cam.accepted < 3:
            return
        s = self.settings
        d = cam.envelope() - cam.base - common
        if abs(d) > s.drift_ms * 1e6:
            if abs(d) <= s.future_ms * 1e6 and abs(d) > s.max_drift * (now_ns - cam.based) + s.drift_ms * 1e6:
                cam.base += d  # faster than a clock drifts: the latency changed, the clock did not
                cam.based = now_ns
                return
            cam.based = now_ns
            self.drift_corrections += 1
            cam.delta += d  # lag = recv - capture - delta: this moves the envelope back
            for i, (t, l) in enumerate(cam.env):
                cam.env[i] = (t, l - d)
