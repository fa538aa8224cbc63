"""Backpressure for runs played as fast as possible (``[source] realtime = false``).

PUB/SUB never blocks a publisher: a source that outruns the sync, or a sync that outruns the IK
workers or the recorder, would lose messages at the high-water mark. A file played as fast as
possible must lose nothing, so the processes of such a run (one host) share a few counters:

- the sync node writes the stream time of the last slot it emitted; a source does not send a frame
  more than ``window_s`` of stream ahead of it;
- each consumer of the sync's outputs writes how many it has taken (IK worker: ``sk3d/``
  messages; recorder: ``tap/`` messages); the sync node does not read more input while one of them
  is more than ``window_msgs`` behind what it sent (a consumer that makes no progress for
  ``stall_s`` is not waited for: a dead process never freezes the run).

In real time none of this applies: late work is shed instead (see ``SyncSettings.shed``).
"""

from __future__ import annotations

import time

__all__ = ["Flow"]


class Flow:
    """Shared counters (``multiprocessing`` raw values: one writer each), picklable to spawned
    processes as a Process argument.

    Args:
        mpctx: the runner's multiprocessing context.
        n_ik: IK worker slots.
        window_s: stream time a source may run ahead of the sync's emitted slots, s.
        window_msgs: messages the sync may run ahead of its slowest consumer.
        stall_s: a consumer without progress for this long is no longer waited for, s.
    """

    def __init__(self, mpctx, n_ik: int, window_s: float = 1.0, window_msgs: int = 200, stall_s: float = 3.0):
        self.emitted_ns = mpctx.RawValue("q", 0)  # stream time (ns since t0) of the last slot out
        self.ik_taken = mpctx.RawArray("q", max(1, n_ik))  # per IK slot: sk3d/ messages taken (0: none yet)
        self.tap_taken = mpctx.RawValue("q", 0)  # tap/ messages the recorder wrote
        self.window_ns = int(window_s * 1e9)
        self.window_msgs = int(window_msgs)
        self.stall_s = float(stall_s)

    # ------------------------------------------------------------------ sources
    def wait_to_send(self, stream_ns: int, stop) -> bool:
        """Block until a frame at ``stream_ns`` (ns since t0) may be sent; False if ``stop()``."""
        while stream_ns > self.emitted_ns.value + self.window_ns:
            if stop():
                return False
            time.sleep(0.001)
        return True

    # ------------------------------------------------------------------ sync node
    def slot_emitted(self, stream_ns: int) -> None:
        if stream_ns > self.emitted_ns.value:
            self.emitted_ns.value = stream_ns

    def consumers_behind(self, sk_sent: int, tap_sent: int, ik_slots, recorder: bool) -> list[int]:
        """The consumers' counters that are more than ``window_msgs`` behind: each IK slot in
        ``ik_slots`` that has taken something, and the recorder (-1) when ``recorder``."""
        out = []
        for w in ik_slots:
            taken = self.ik_taken[w]
            if taken and sk_sent - taken > self.window_msgs:
                out.append(w)
        if recorder and tap_sent - self.tap_taken.value > self.window_msgs:
            out.append(-1)
        return out

    def progress(self, key: int) -> int:
        return self.tap_taken.value if key == -1 else self.ik_taken[key]

    # ------------------------------------------------------------------ consumers
    def ik_took(self, w: int, seq: int) -> None:
        """IK slot ``w`` has taken the ``sk3d/`` message with sequence number ``seq``."""
        self.ik_taken[w] = seq + 1

    def ik_reset(self, w: int) -> None:
        self.ik_taken[w] = 0

    def recorder_took(self, seq: int) -> None:
        self.tap_taken.value = seq + 1
