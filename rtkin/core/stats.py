"""Latency and timing statistics: a bounded window (p50 / p99 without unbounded memory) and a
compact log-spaced histogram that processes can report (small, mergeable, percentiles)."""

from __future__ import annotations

import math
from typing import Iterable, Mapping

import numpy as np

__all__ = ["Window", "LogHistogram", "merge_histograms", "histogram_percentiles"]


class Window:
    """The last ``size`` samples of one quantity (e.g. seconds per stage call), plus a histogram
    of every sample (:meth:`histogram`), so a long run can report its whole distribution small."""

    def __init__(self, size: int = 10000):
        self._buf = np.empty(size)
        self._n = 0
        self.hist = LogHistogram()

    def add(self, value: float) -> None:
        self._buf[self._n % self._buf.size] = value
        self._n += 1
        self.hist.add(value)

    @property
    def count(self) -> int:
        return self._n

    def values(self) -> np.ndarray:
        return self._buf[: min(self._n, self._buf.size)]

    def percentile(self, q: float) -> float:
        v = self.values()
        return float(np.percentile(v, q)) if v.size else float("nan")

    def summary(self, scale: float = 1e3) -> dict[str, float]:
        """{"n", "p50", "p99", "max"} of the last ``size`` samples, multiplied by ``scale``
        (s -> ms by default); ``n`` counts every sample."""
        v = self.values()
        if not v.size:
            return {"n": 0}
        p50, p99 = np.percentile(v, [50, 99])
        return {"n": int(self._n), "p50": float(p50 * scale), "p99": float(p99 * scale), "max": float(v.max() * scale)}

    def histogram(self) -> dict:
        """Every sample since creation as a :class:`LogHistogram` dict (a few hundred bytes)."""
        return self.hist.as_dict()


class LogHistogram:
    """Counts of positive values in log-spaced bins (``per_decade`` bins per factor 10, from
    ``lo``); values <= ``lo`` go to bin 0. Relative resolution ~``10**(1/per_decade) - 1``
    (6 % at 40 per decade). Constant memory whatever the run length."""

    def __init__(self, lo: float = 1e-6, per_decade: int = 40):
        self.lo, self.per_decade = float(lo), int(per_decade)
        self.counts: dict[int, int] = {}
        self.n = 0
        self.max = -math.inf

    def add(self, value: float) -> None:
        if not math.isfinite(value):
            return
        b = 0 if value <= self.lo else int(math.log10(value / self.lo) * self.per_decade) + 1
        self.counts[b] = self.counts.get(b, 0) + 1
        self.n += 1
        self.max = max(self.max, value)

    def as_dict(self) -> dict:
        return {"lo": self.lo, "per_decade": self.per_decade, "n": self.n,
                "max": self.max if self.n else None, "counts": {str(k): v for k, v in sorted(self.counts.items())}}


def merge_histograms(hists: Iterable[Mapping]) -> dict:
    """Sum of :meth:`LogHistogram.as_dict` dicts with the same binning (e.g. several processes')."""
    hists = [h for h in hists if h and h.get("n")]
    if not hists:
        return {"lo": 1e-6, "per_decade": 40, "n": 0, "max": None, "counts": {}}
    lo, per = hists[0]["lo"], hists[0]["per_decade"]
    counts: dict[str, int] = {}
    for h in hists:
        if h["lo"] != lo or h["per_decade"] != per:
            raise ValueError("histograms with different binning cannot be merged")
        for k, v in h["counts"].items():
            counts[k] = counts.get(k, 0) + int(v)
    return {"lo": lo, "per_decade": per, "n": sum(h["n"] for h in hists),
            "max": max(h["max"] for h in hists), "counts": dict(sorted(counts.items(), key=lambda kv: int(kv[0])))}


def histogram_percentiles(hist: Mapping, qs: Iterable[float], scale: float = 1.0) -> list[float]:
    """Percentiles (0-100) of a histogram dict, each the geometric centre of its bin, x ``scale``
    (NaN when empty)."""
    qs = list(qs)
    if not hist or not hist.get("n"):
        return [float("nan")] * len(qs)
    lo, per = hist["lo"], hist["per_decade"]
    items = sorted((int(k), int(v)) for k, v in hist["counts"].items())
    cum = np.cumsum([v for _, v in items])
    out = []
    for q in qs:
        i = int(np.searchsorted(cum, q / 100.0 * cum[-1], side="left"))
        b = items[min(i, len(items) - 1)][0]
        value = lo if b == 0 else lo * 10 ** ((b - 0.5) / per)
        out.append(float(min(value, hist["max"]) * scale))
    return out
