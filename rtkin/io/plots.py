"""A small raster plotter for the session report: line, band, bar and heat-map panels with
ticks, labels and legends drawn straight into a Pillow image, then a PNG.

Why not matplotlib: the report's joint-angle figure alone has ~27 panels, and matplotlib's
per-axes and per-tick text layout cost ~1 s per report on one core (a 20 s session reprocessed
in ~2.7 s spent a third of it in the report). Drawing the same content here costs tens of
milliseconds, which keeps ``rtkin reprocess`` far faster than real time.

Curves longer than a few samples per pixel column are reduced to each column's minimum and
maximum (an envelope: a one-frame spike stays visible); NaN samples break a curve.

Coordinates: data units inside a panel (:meth:`Panel.line` etc.), pixels for the canvas layout.
"""

from __future__ import annotations

import functools
import io
import math
from typing import Sequence

import numpy as np

__all__ = ["Canvas", "Panel", "nice_ticks", "limits", "COLORS"]

#: Curve colours (matplotlib's ``tab10``): RGB.
COLORS = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
          (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))
RED, BLUE, GREEN, PURPLE = COLORS[3], COLORS[0], COLORS[2], COLORS[4]
_INK = (34, 34, 34)
_GRID = (225, 225, 225)


@functools.lru_cache(maxsize=8)
def _font(size: int):
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


def nice_ticks(lo: float, hi: float, n: int = 5) -> np.ndarray:
    """About ``n`` round tick values (1, 2, 2.5, 5 x 10^k steps) within [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return np.array([lo]) if math.isfinite(lo) else np.zeros(0)
    raw = (hi - lo) / max(n, 1)
    mag = 10.0 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks = np.arange(first, hi + step * 1e-6, step)
    return np.where(np.abs(ticks) < step * 1e-9, 0.0, ticks)


def _tick_label(v: float, step: float) -> str:
    digits = max(0, -int(math.floor(math.log10(step) + 1e-9))) if step > 0 else 0
    if step > 0 and round(step * 10 ** digits) % 10 == 5 and step < 1:  # 2.5, 0.25...
        digits += 1 if abs(step * 10 ** digits - round(step * 10 ** digits)) > 1e-9 else 0
    return f"{v:.{digits}f}"


def limits(*arrays: np.ndarray, margin: float = 0.05, floor: float = 1e-6) -> tuple[float, float]:
    """(lo, hi) of the finite values of ``arrays``, widened by ``margin`` of the range on each
    side (at least ``floor``); (0, 1) when nothing is finite."""
    vals = [np.asarray(a, dtype=float).ravel() for a in arrays if np.size(a)]
    v = np.concatenate(vals) if vals else np.zeros(0)
    v = v[np.isfinite(v)]
    if not v.size:
        return 0.0, 1.0
    lo, hi = float(v.min()), float(v.max())
    pad = max((hi - lo) * margin, floor)
    return lo - pad, hi + pad


class Canvas:
    """A white image of ``width`` x ``height`` px; panels are placed on it in pixels."""

    def __init__(self, width: int, height: int):
        from PIL import Image, ImageDraw

        self.image = Image.new("RGB", (int(width), int(height)), "white")
        self.draw = ImageDraw.Draw(self.image, "RGBA")  # RGBA fills blend (alpha shading)

    @property
    def size(self) -> tuple[int, int]:
        return self.image.size

    def text(self, xy: tuple[float, float], s: str, size: int = 11, anchor: str = "la", fill=_INK) -> None:
        """Text at ``xy`` px; ``anchor`` as Pillow's (``"ma"``: centred, top at y)."""
        self.draw.text(xy, s, font=_font(size), fill=fill, anchor=anchor)

    def vtext(self, xy: tuple[float, float], s: str, size: int = 10, fill=_INK, top: bool = False) -> None:
        """Text rotated 90 deg (reads bottom to top), centred on ``xy`` px (``top``: its end at
        ``xy``, centred horizontally)."""
        from PIL import Image, ImageDraw

        f = _font(size)
        l, t, r, b = f.getbbox(s)
        mask = Image.new("L", (r - l + 2, b - t + 2), 0)
        ImageDraw.Draw(mask).text((1 - l, 1 - t), s, font=f, fill=255)
        mask = mask.rotate(90, expand=True)
        x, y = int(xy[0] - mask.width / 2), int(xy[1] - (0 if top else mask.height / 2))
        self.image.paste(Image.new("RGB", mask.size, fill), (x, y), mask)

    def panel(self, box: tuple[float, float, float, float], xlim: tuple[float, float], ylim: tuple[float, float],
              **kw) -> "Panel":
        """A panel whose plot area is ``box`` = (left, top, right, bottom) px."""
        return Panel(self, box, xlim, ylim, **kw)

    def png(self) -> bytes:
        buf = io.BytesIO()
        self.image.save(buf, format="png", compress_level=3)
        return buf.getvalue()


class Panel:
    """One plot area with data limits; draws in data units.

    Args:
        canvas: the canvas. box: plot area (left, top, right, bottom) px.
        xlim, ylim: data ranges mapped onto the box (y grows upwards).
        title, xlabel, ylabel: text around the box. xticks / yticks: draw tick labels.
        yticklabels: ``[(y, label)]`` instead of numeric y ticks (categorical rows).
        grid: light grid lines at the ticks.
    """

    def __init__(self, canvas: Canvas, box, xlim, ylim, title: str = "", xlabel: str = "", ylabel: str = "",
                 xticks: bool = True, yticks: bool = True, yticklabels: Sequence[tuple[float, str]] | None = None,
                 grid: bool = False):
        self.c = canvas
        self.x0, self.y0, self.x1, self.y1 = (float(v) for v in box)
        self.xlim = (float(xlim[0]), float(xlim[1]) if xlim[1] > xlim[0] else float(xlim[0]) + 1.0)
        self.ylim = (float(ylim[0]), float(ylim[1]) if ylim[1] > ylim[0] else float(ylim[0]) + 1.0)
        d = canvas.draw
        if grid or xticks or yticks or yticklabels:
            self._axes(xticks, yticks, yticklabels, grid)
        d.rectangle((self.x0, self.y0, self.x1, self.y1), outline=_INK)
        if title:
            canvas.text(((self.x0 + self.x1) / 2, self.y0 - 3), title, size=12, anchor="md")
        if xlabel:
            canvas.text(((self.x0 + self.x1) / 2, self.y1 + 17), xlabel, size=10, anchor="ma")
        if ylabel:
            canvas.vtext((self.x0 - 44, (self.y0 + self.y1) / 2), ylabel, size=10)

    # ------------------------------------------------------------------ mapping
    def px(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        sx = (self.x1 - self.x0) / (self.xlim[1] - self.xlim[0])
        sy = (self.y1 - self.y0) / (self.ylim[1] - self.ylim[0])
        return self.x0 + (x - self.xlim[0]) * sx, self.y1 - (y - self.ylim[0]) * sy

    def _axes(self, xticks: bool, yticks: bool, yticklabels, grid: bool) -> None:
        d = self.c.draw
        xt = nice_ticks(*self.xlim)
        xt = xt[(xt >= self.xlim[0]) & (xt <= self.xlim[1])]
        px, _ = self.px(xt, np.zeros_like(xt))
        step = float(xt[1] - xt[0]) if xt.size > 1 else 1.0
        for v, x in zip(xt, px):
            if grid:
                d.line((x, self.y0, x, self.y1), fill=_GRID)
            d.line((x, self.y1, x, self.y1 + 4), fill=_INK)
            if xticks:
                self.c.text((x, self.y1 + 5), _tick_label(v, step), size=10, anchor="ma")
        if yticklabels is not None:
            for v, s in yticklabels:
                _, y = self.px(self.xlim[0], v)
                d.line((self.x0 - 4, float(y), self.x0, float(y)), fill=_INK)
                self.c.text((self.x0 - 6, float(y)), s, size=10, anchor="rm")
            return
        yt = nice_ticks(*self.ylim, n=4)
        yt = yt[(yt >= self.ylim[0]) & (yt <= self.ylim[1])]
        _, py = self.px(np.full_like(yt, self.xlim[0]), yt)
        step = float(yt[1] - yt[0]) if yt.size > 1 else 1.0
        for v, y in zip(yt, py):
            if grid:
                d.line((self.x0, y, self.x1, y), fill=_GRID)
            d.line((self.x0 - 4, y, self.x0, y), fill=_INK)
            if yticks:
                self.c.text((self.x0 - 6, y), _tick_label(v, step), size=10, anchor="rm")

    # ------------------------------------------------------------------ artists
    def line(self, x, y, color, width: int = 1) -> None:
        """A curve through (x, y) (NaN breaks it); dense curves drawn as a per-column envelope."""
        X, Y = self.px(x, y)
        ok = np.isfinite(X) & np.isfinite(Y)
        if not ok.any():
            return
        Y = np.clip(Y, self.y0 - 2, self.y1 + 2)  # out of range: pinned to the frame
        cols = max(int(self.x1 - self.x0), 1)
        for run in _runs(ok):
            xs, ys = X[run], Y[run]
            if xs.size > 3 * cols:
                xs, ys = _envelope(xs, ys)
            if xs.size == 1:
                self.c.draw.point((float(xs[0]), float(ys[0])), fill=color)
                continue
            self.c.draw.line(np.column_stack((xs, ys)).ravel().tolist(), fill=color, width=width)

    def spans(self, x, mask, color, alpha: int = 36) -> None:
        """Vertical shaded spans over the x where ``mask`` is true (each sample covers half the
        gap to its neighbours)."""
        x = np.asarray(x, dtype=float)
        m = np.asarray(mask, dtype=bool)
        if not m.any() or x.size == 0:
            return
        X, _ = self.px(x, np.zeros_like(x))
        mid = np.concatenate(([X[0]], (X[1:] + X[:-1]) / 2, [X[-1]]))
        fill = (*color, alpha)
        for run in _runs(m):
            a, b = float(mid[run.start]), float(mid[run.stop])
            self.c.draw.rectangle((a, self.y0 + 1, max(b, a + 1), self.y1 - 1), fill=fill)

    def hband(self, lo: float, hi: float, color, alpha: int = 36) -> None:
        """A horizontal band between ``lo`` and ``hi`` (data units), clipped to the panel."""
        _, (ya, yb) = self.px([self.xlim[0]] * 2, [lo, hi])
        top, bottom = max(min(ya, yb), self.y0 + 1), min(max(ya, yb), self.y1 - 1)
        if bottom > top:
            self.c.draw.rectangle((self.x0 + 1, top, self.x1 - 1, bottom), fill=(*color, alpha))

    def hline(self, y: float, color=_INK) -> None:
        _, py = self.px(self.xlim[0], y)
        self.c.draw.line((self.x0, float(py), self.x1, float(py)), fill=color)

    def bars(self, values: Sequence[float], color, width: float = 0.8) -> None:
        """Bars at x = 0, 1, ... from y = 0."""
        for i, v in enumerate(values):
            (xa, xb), (ya, yb) = self.px([i - width / 2, i + width / 2], [0.0, v])
            self.c.draw.rectangle((float(xa), float(min(ya, yb)), float(xb), float(max(ya, yb))), fill=color)

    def rows(self, on: np.ndarray, color) -> None:
        """A heat map of booleans ``on`` (R, N): row r drawn at y = r (row 0 on top: ylim reversed
        by the caller), column n spread evenly over the x range, ``color`` where true."""
        from PIL import Image

        on = np.asarray(on, dtype=bool)
        R, N = on.shape
        if not R or not N:
            return
        w, h = int(self.x1 - self.x0) - 1, int(self.y1 - self.y0) - 1
        rgb = np.where(on[..., None], np.array(color, dtype=np.uint8), np.uint8(255)).astype(np.uint8)
        img = Image.fromarray(rgb, "RGB").resize((w, h), Image.NEAREST)
        self.c.image.paste(img, (int(self.x0) + 1, int(self.y0) + 1))

    def legend(self, items: Sequence[tuple[str, tuple]], ncol: int = 1, loc: str = "upper right") -> None:
        """Labels with colour keys in a white box at a corner of the panel."""
        if not items:
            return
        f = _font(10)
        w = max(f.getbbox(s)[2] for s, _ in items) + 26
        rows = -(-len(items) // ncol)
        W, H = w * min(ncol, len(items)) + 6, rows * 14 + 6
        x = self.x1 - W - 4 if loc.endswith("right") else self.x0 + 4
        y = self.y0 + 4 if loc.startswith("upper") else self.y1 - H - 4
        self.c.draw.rectangle((x, y, x + W, y + H), fill=(255, 255, 255, 215), outline=(200, 200, 200))
        for i, (s, color) in enumerate(items):
            cx, cy = x + 4 + (i % ncol) * w, y + 10 + (i // ncol) * 14
            self.c.draw.line((cx, cy, cx + 16, cy), fill=color, width=2)
            self.c.text((cx + 20, cy), s, size=10, anchor="lm")


def _runs(mask: np.ndarray) -> list[slice]:
    """Slices of the runs of True in a 1-D bool array."""
    m = np.concatenate(([False], np.asarray(mask, dtype=bool), [False]))
    edges = np.flatnonzero(m[1:] != m[:-1])
    return [slice(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]


def _envelope(xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel column, the first, minimum, maximum and last y (in x order), so a dense curve
    keeps its spikes with a few points per column."""
    col = np.floor(xs).astype(np.int64)
    starts = np.flatnonzero(np.concatenate(([True], col[1:] != col[:-1])))
    lo = np.minimum.reduceat(ys, starts)
    hi = np.maximum.reduceat(ys, starts)
    ends = np.concatenate((starts[1:], [ys.size])) - 1
    x = np.repeat(col[starts].astype(float) + 0.5, 4)
    y = np.column_stack((ys[starts], lo, hi, ys[ends])).ravel()
    return x, y
