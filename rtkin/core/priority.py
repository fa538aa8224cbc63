"""Process priority helpers: a process that can wait (recorder, sources, background scaling)
yields the CPU to the latency-critical sync and IK processes on a machine with few cores."""

from __future__ import annotations

import os
import signal

__all__ = ["background_init", "lower_priority"]


def background_init(niceness: int) -> None:
    """Initializer of a worker's helper process (background scaling): lower priority, leave
    Ctrl-C to the parent (the whole process group gets SIGINT in a terminal; the parent shuts the
    helper down), and exit when the parent dies (a killed IK worker leaves no orphan).
    This module imports nothing heavy."""
    import threading
    import time

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, name="rtkin-parent-watch", daemon=True).start()
    lower_priority(niceness)


def lower_priority(increment: int) -> None:
    """Raise this process's niceness by ``increment`` (yield the CPU to the latency-critical sync
    and IK processes on a machine with few cores); normal priority where not permitted."""
    try:
        os.nice(increment)
    except OSError:  # pragma: no cover - not permitted: normal priority
        pass
