"""The report's raster plotter (rtkin.io.plots): ticks, curves, envelopes, NaN gaps."""

import io

import numpy as np
from PIL import Image

from rtkin.io.plots import Canvas, nice_ticks, limits


def _pixels(cv: Canvas) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(cv.png())).convert("RGB")).astype(int)


def _red(img: np.ndarray) -> np.ndarray:
    return (img[..., 0] > 180) & (img[..., 1] < 80) & (img[..., 2] < 80)


def test_nice_ticks_are_round_and_inside():
    t = nice_ticks(-0.23, 1.71)
    assert np.allclose(t, [0.0, 0.5, 1.0, 1.5])
    assert np.allclose(nice_ticks(0, 20), [0, 5, 10, 15, 20])
    assert nice_ticks(1.0, 1.0).size == 1 and nice_ticks(np.nan, 1.0).size == 0
    assert limits(np.array([np.nan, 2.0, 4.0])) == (1.9, 4.1)


def test_a_one_sample_spike_survives_the_envelope():
    cv = Canvas(300, 200)
    ax = cv.panel((20, 20, 280, 180), (0, 10_000), (-1, 11), xticks=False, yticks=False)
    y = np.zeros(10_001)
    y[5_000] = 10.0  # 10 001 samples over 260 px: ~38 per column
    ax.line(np.arange(y.size), y, (230, 0, 0))
    red = _red(_pixels(cv))
    _, top = ax.px(0, 10.0)
    assert red[int(top) - 1:int(top) + 2].any()  # the spike's peak is drawn
    assert red[:, 150].sum() > 100  # as a vertical stroke near x = 5000


def test_nan_breaks_a_curve_and_spans_shade():
    cv = Canvas(300, 200)
    ax = cv.panel((20, 20, 280, 180), (0, 100), (0, 1), xticks=False, yticks=False)
    x = np.arange(101.0)
    y = np.full(101, 0.5)
    y[40:60] = np.nan
    ax.line(x, y, (230, 0, 0))
    ax.spans(x, x > 80, (0, 0, 255), alpha=80)
    img = _pixels(cv)
    row = int(ax.px(0, 0.5)[1])
    cols = np.flatnonzero(_red(img)[row])
    gap_a, gap_b = (int(v) for v in ax.px([41, 58], [0, 0])[0])
    assert cols.size and not ((cols > gap_a) & (cols < gap_b)).any()
    blue = (img[..., 2] > img[..., 0] + 20)[int(ax.px(0, 0.2)[1])]
    assert blue[int(ax.px(90, 0)[0][()])] and not blue[int(ax.px(50, 0)[0][()])]
