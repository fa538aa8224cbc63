"""Latency and timing statistics over a bounded window (p50 / p99 without unbounded memory)."""

from __future__ import annotations

import numpy as np

__all__ = ["Window"]


class Window:
    """The last ``size`` samples of one quantity (e.g. seconds per stage call)."""

    def __init__(self, size: int = 10000):
        self._buf = np.empty(size)
        self._n = 0

    def add(self, value: float) -> None:
        self._buf[self._n % self._buf.size] = value
        self._n += 1

    @property
    def count(self) -> int:
        return self._n

    def values(self) -> np.ndarray:
        return self._buf[: min(self._n, self._buf.size)]

    def percentile(self, q: float) -> float:
        v = self.values()
        return float(np.percentile(v, q)) if v.size else float("nan")

    def summary(self, scale: float = 1e3) -> dict[str, float]:
        """{"n", "p50", "p99", "max"} with values multiplied by ``scale`` (s -> ms by default)."""
        v = self.values()
        if not v.size:
            return {"n": 0}
        p50, p99 = np.percentile(v, [50, 99])
        return {"n": int(self._n), "p50": float(p50 * scale), "p99": float(p99 * scale), "max": float(v.max() * scale)}
