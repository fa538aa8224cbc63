"""One IK worker process per person: who serves whom, shared between the workers and the runner.

The runner keeps up to ``ik.max_workers`` worker *slots*; slot ``w`` binds the JointAngles
endpoint ``angles_endpoints(cfg)[w]`` (subscribers connect to all of them, so a worker started
later is heard without reconnecting). A slot's state lives in one shared int64:

- ``OFF`` (-2): no process (never started, stopped, or died);
- ``STARTING`` (-4): process started, loading the model;
- ``FREE`` (-1): running, serving nobody; it watches the Skeleton3D stream at a low rate and
  claims the first person nobody serves;
- ``RETIRING`` (-3): a surplus free worker the runner is stopping (it can no longer claim);
- ``>= 0``: the person id this worker serves (one person per worker, one worker per person).

Claims and releases happen under one lock, so two free workers never take the same person. A
worker releases its person after ``release_after_s`` without seeing them (the tracker retires an
id after ``max_unseen_frames`` and never reuses it), drops their IK state and becomes FREE again.
The runner keeps ``spare_workers`` FREE workers ready (a new person is served within one idle poll,
without waiting for OpenSim to load) and stops the free ones beyond that: a person who leaves frees
their worker's process. When a worker dies, the runner marks its slot OFF and the person is claimed
by a free worker.
"""

from __future__ import annotations

from typing import Iterable

__all__ = ["OFF", "FREE", "RETIRING", "STARTING", "Leases"]

OFF = -2
FREE = -1
RETIRING = -3
STARTING = -4


class Leases:
    """Shared slot table (``multiprocessing.Array('q')`` with its lock); picklable to spawned
    processes when passed as a Process argument.

    Args:
        mpctx: a multiprocessing context (the runner's ``spawn`` context).
        n: number of worker slots (``ik.max_workers``).
    """

    def __init__(self, mpctx, n: int):
        if n < 1:
            raise ValueError(f"Leases needs at least one slot, got {n}")
        self.owner = mpctx.Array("q", [OFF] * n)

    def __len__(self) -> int:
        return len(self.owner)

    def snapshot(self) -> list[int]:
        """Every slot's state / person id, read under the lock."""
        with self.owner.get_lock():
            return list(self.owner[:])

    def state(self, w: int) -> int:
        with self.owner.get_lock():
            return int(self.owner[w])

    def set(self, w: int, value: int) -> None:
        with self.owner.get_lock():
            self.owner[w] = value

    def claim(self, w: int, person_ids: Iterable[int]) -> int | None:
        """Slot ``w`` (FREE) takes the first of ``person_ids`` that no slot serves; returns it, or
        None (``w`` not FREE, or everybody already served)."""
        with self.owner.get_lock():
            if self.owner[w] != FREE:
                return None
            served = set(self.owner[:])
            for pid in person_ids:
                pid = int(pid)
                if pid >= 0 and pid not in served:
                    self.owner[w] = pid
                    return pid
            return None

    def release(self, w: int, person_id: int) -> bool:
        """Slot ``w`` stops serving ``person_id`` and becomes FREE (False if it did not serve them)."""
        with self.owner.get_lock():
            if self.owner[w] != person_id:
                return False
            self.owner[w] = FREE
            return True

    def retire_one_free(self, keep: int) -> int | None:
        """Mark the highest FREE slot RETIRING when more than ``keep`` are FREE; returns it or None."""
        with self.owner.get_lock():
            free = [w for w, v in enumerate(self.owner[:]) if v == FREE]
            if len(free) <= keep:
                return None
            self.owner[free[-1]] = RETIRING
            return free[-1]

    def served(self) -> dict[int, int]:
        """person id -> slot, for the slots serving someone."""
        return {int(v): w for w, v in enumerate(self.snapshot()) if v >= 0}
