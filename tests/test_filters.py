"""Causal keypoint filters: streaming == one pass, references, gaps, delays, validation."""

from __future__ import annotations

import dataclasses
import math
import re

import numpy as np
import pytest
import scipy.signal
from hypothesis import given, settings as hsettings, strategies as st

from rtkin.reconstruct import filters
from rtkin.reconstruct.filters import (
    DEFAULT_BUTTERWORTH_DELAY_MS,
    DEFAULT_ONE_EURO_DELAY_MS,
    ButterworthFilter,
    FilterSettings,
    OneEuroFilter,
    PassThroughFilter,
    group_delay_s,
    make_filter,
)

FS = 60.0
BW = FilterSettings(kind="butterworth")
OE = FilterSettings(kind="one_euro")


def _signal(T: int, n: int, seed: int = 0) -> np.ndarray:
    """(T, n) m: random walks + slow sinusoids around different offsets."""
    rng = np.random.default_rng(seed)
    t = np.arange(T) / FS
    walk = np.cumsum(rng.normal(0.0, 0.01, (T, n)), axis=0)
    return 0.5 + rng.normal(0, 1, n) + walk + 0.2 * np.sin(2 * np.pi * 0.7 * t)[:, None]


def _feed(f, x: np.ndarray, t: np.ndarray | None, sizes: list[int]):
    """Feed x (T, n) in chunks of the given sizes (1 -> a single (n,) sample); -> y, held (T, n)."""
    ys, hs = [], []
    i = 0
    sizes = list(sizes) + [len(x)]  # the rest in one chunk
    for size in sizes:
        if i >= len(x):
            break
        j = min(i + size, len(x))
        ts = None if t is None else (t[i] if j - i == 1 else t[i:j])
        if j - i == 1:
            y = f(x[i], ts)
            assert y.shape == x[i].shape and f.held.shape == x[i].shape
            ys.append(y[None])
            hs.append(f.held[None])
        else:
            y = f(x[i:j], ts)
            assert y.shape == x[i:j].shape and f.held.shape == x[i:j].shape
            ys.append(y)
            hs.append(f.held)
        i = j
    return np.concatenate(ys), np.concatenate(hs)


chunk_sizes = st.lists(st.integers(min_value=1, max_value=40), min_size=0, max_size=25)


# ---------------------------------------------------------------------------------- Butterworth
@hsettings(max_examples=30, deadline=None)
@given(sizes=chunk_sizes, order=st.sampled_from([2, 4]))
def test_butterworth_chunked_equals_sosfilt_one_pass(sizes, order):
    s = FilterSettings(kind="butterworth", order=order, cutoff_hz=6.0, fs_hz=FS)
    x = _signal(240, 7)
    sos = scipy.signal.butter(order, 6.0, fs=FS, output="sos")
    expected, _ = scipy.signal.sosfilt(sos, x, axis=0, zi=scipy.signal.sosfilt_zi(sos)[:, :, None] * x[0])
    f = ButterworthFilter(s, 7)
    np.testing.assert_array_equal(f.sos, sos)
    y, held = _feed(f, x, None, sizes)
    np.testing.assert_allclose(y, expected, rtol=0, atol=1e-10)
    assert not held.any()
    assert f.zi.shape == (order // 2, 2, 7)


def test_butterworth_starts_at_steady_state():
    f = ButterworthFilter(BW, 4)
    c = np.array([0.3, -1.2, 2.5, 0.0])
    y = f(np.tile(c, (30, 1)))
    np.testing.assert_allclose(y, np.tile(c, (30, 1)), rtol=0, atol=1e-12)


def test_butterworth_state_is_carried_and_reset():
    x = _signal(100, 3, seed=4)
    f = ButterworthFilter(BW, 3)
    y1 = f(x)
    y2 = f(x)  # continues from the end of the first pass: not a fresh start
    assert np.abs(y2[:5] - y1[:5]).max() > 1e-3
    f.reset()
    np.testing.assert_array_equal(f(x), y1)


# ---------------------------------------------------------------------------------- One-Euro
def _ref_one_euro(x, t, min_cutoff, beta, d_cutoff):
    """Plain-Python 1-euro filter (Casiez et al. 2012, Algorithm 1), channel by channel."""

    def alpha(dt, cutoff):
        tau = 1.0 / (2.0 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    y = np.empty_like(x)
    for c in range(x.shape[1]):
        x_hat = dx_hat = t_prev = None
        for i in range(x.shape[0]):
            xi = float(x[i, c])
            if x_hat is None:
                x_hat, dx_hat = xi, 0.0
            else:
                dt = float(t[i]) - t_prev
                dx = (xi - x_hat) / dt
                a_d = alpha(dt, d_cutoff)
                dx_hat = a_d * dx + (1.0 - a_d) * dx_hat
                a = alpha(dt, min_cutoff + beta * abs(dx_hat))
                x_hat = a * xi + (1.0 - a) * x_hat
            t_prev = float(t[i])
            y[i, c] = x_hat
    return y


@pytest.mark.parametrize("min_cutoff, beta, d_cutoff", [(1.5, 4.0, 1.0), (0.5, 20.0, 2.0), (3.0, 0.0, 1.0)])
def test_one_euro_matches_reference_with_variable_dt(min_cutoff, beta, d_cutoff):
    rng = np.random.default_rng(3)
    T = 400
    t = 5.0 + np.cumsum(rng.uniform(0.004, 0.04, T))  # jittered, variable rate
    x = _signal(T, 6, seed=1) + rng.normal(0, 0.01, (T, 6))
    f = OneEuroFilter(FilterSettings(min_cutoff_hz=min_cutoff, beta=beta, d_cutoff_hz=d_cutoff), 6)
    y = f(x, t)
    np.testing.assert_allclose(y, _ref_one_euro(x, t, min_cutoff, beta, d_cutoff), rtol=0, atol=1e-12)
    assert np.abs(y - x).max() > 1e-3  # it does filter


@hsettings(max_examples=30, deadline=None)
@given(sizes=chunk_sizes)
def test_one_euro_chunked_equals_one_pass(sizes):
    rng = np.random.default_rng(5)
    T = 240
    t = np.cumsum(rng.uniform(0.01, 0.03, T))
    x = _signal(T, 5, seed=2) + rng.normal(0, 0.01, (T, 5))
    expected = OneEuroFilter(OE, 5)(x, t)
    y, held = _feed(OneEuroFilter(OE, 5), x, t, sizes)
    np.testing.assert_array_equal(y, expected)
    assert not held.any()


def test_one_euro_constant_stays_constant():
    c = np.array([0.0, 1.234, -0.7])
    t = np.arange(200) / FS
    y = OneEuroFilter(OE, 3)(np.tile(c, (200, 1)), t)
    assert np.abs(y - c).max() <= 1e-12


#: The 1-euro paper's regime (slow cutoff, small beta): strong smoothing, more lag.
OE_SMOOTH = dataclasses.replace(OE, min_cutoff_hz=1.5, beta=4.0)


@pytest.mark.parametrize("settings, noise_m, factor", [(OE_SMOOTH, 0.01, 0.4), (OE, 0.005, 0.7)])
def test_one_euro_smooths_slow_noisy_signal(settings, noise_m, factor):
    """Both the paper's regime and the defaults (tuned for triangulated keypoints, ~5 mm noise)."""
    rng = np.random.default_rng(7)
    T = 1200
    t = np.arange(T) / FS
    clean = 0.05 * np.sin(2 * np.pi * 0.2 * t)[:, None] + np.zeros((1, 6))
    noise = rng.normal(0.0, noise_m, (T, 6))
    y_noisy = OneEuroFilter(settings, 6)(clean + noise, t)
    y_clean = OneEuroFilter(settings, 6)(clean, t)
    residual = (y_noisy - y_clean)[60:]  # noise left in the output
    assert residual.std() < factor * noise.std()


def test_one_euro_fast_ramp_lags_less_than_fixed_low_pass():
    T = 120
    t = np.arange(T) / FS
    v = 3.0  # m/s, fast limb motion
    x = (v * t)[:, None]
    y = OneEuroFilter(OE_SMOOTH, 1)(x, t)[:, 0]
    # fixed first-order low-pass at the same min cutoff (= One-Euro with beta = 0), from steady state
    r = 2 * np.pi * OE_SMOOTH.min_cutoff_hz / FS
    a = r / (r + 1)
    y_fixed = scipy.signal.lfilter([a], [1, -(1 - a)], x[:, 0], zi=[(1 - a) * x[0, 0]])[0]
    lag = (x[-30:, 0] - y[-30:]) / v  # s
    lag_fixed = (x[-30:, 0] - y_fixed[-30:]) / v
    assert lag_fixed.mean() > 0.08
    assert lag.mean() < 0.25 * lag_fixed.mean()
    # and beta = 0 is that fixed low-pass
    y0 = OneEuroFilter(dataclasses.replace(OE_SMOOTH, beta=0.0), 1)(x, t)[:, 0]
    np.testing.assert_allclose(y0, y_fixed, rtol=0, atol=1e-12)


def test_default_beta_raises_cutoff_for_fast_limbs():
    assert OE.min_cutoff_hz + OE.beta * 0.5 >= 10.0  # a limb at 0.5 m/s is barely filtered
    assert 2.0 <= OE.min_cutoff_hz <= 5.0


def test_one_euro_timestamps_must_increase():
    f = OneEuroFilter(OE, 2)
    f(np.zeros(2), 1.0)
    with pytest.raises(ValueError, match="dt <= 0"):
        f(np.zeros(2), 1.0)
    with pytest.raises(ValueError, match="dt <= 0"):
        f(np.zeros((3, 2)), np.array([2.0, 3.0, 3.0]))
    with pytest.raises(ValueError, match="dt <= 0"):
        f(np.zeros((2, 2)), np.array([0.5, 3.0]))
    with pytest.raises(ValueError, match="needs timestamps"):
        f(np.zeros(2), None)
    f.reset()  # after a reset time may start again
    f(np.zeros(2), 0.0)


# ---------------------------------------------------------------------------------- gaps
def _make(kind: str, **kw):
    return make_filter(FilterSettings(kind=kind, **kw), 2)


@pytest.mark.parametrize("kind", ["butterworth", "one_euro"])
def test_gap_hold_then_nan_then_fresh_start(kind):
    T = 40
    t = np.arange(T) / FS
    x = np.column_stack([0.1 * np.sin(2 * np.pi * t), np.linspace(0, 1, T)])
    x[10:20, 0] = np.nan  # 10 missing samples = 0.167 s > max_hold_s = 0.1 s
    x[20:, 0] += 0.5  # the keypoint comes back elsewhere
    f = _make(kind)
    y = f(x, t)
    held = f.held
    # held for elapsed 1/60 ... 6/60 s <= 0.1 s, the last filtered value
    np.testing.assert_array_equal(y[10:16, 0], np.full(6, y[9, 0]))
    assert held[10:16, 0].all()
    assert np.isnan(y[16:20, 0]).all() and not held[16:20, 0].any()
    assert not held[:10, 0].any() and not held[20:, 0].any()
    assert not held[:, 1].any() and np.isfinite(y[:, 1]).all()
    # fresh start: the first valid sample passes through (steady state / x_hat = x)
    assert y[20, 0] == pytest.approx(x[20, 0], abs=1e-12)


@pytest.mark.parametrize("kind", ["butterworth", "one_euro"])
def test_short_gap_resumes_from_previous_state(kind):
    T = 30
    t = np.arange(T) / FS
    x = np.zeros((T, 2))
    x[10:13, 0] = np.nan  # 3 samples: within max_hold_s
    x[13:, 0] = 0.2  # step after the gap
    f = _make(kind)
    y = f(x, t)
    assert f.held[10:13, 0].all()
    assert 0.0 < y[13, 0] < 0.2 - 1e-3  # filtered from the old state, not re-initialised


@pytest.mark.parametrize("kind", ["butterworth", "one_euro"])
def test_gap_predict_extrapolates_linearly(kind):
    T = 150
    t = np.arange(T) / FS
    v = np.array([0.5, -0.3])  # m/s
    x = t[:, None] * v + np.array([0.2, 1.0])
    x[140:, 0] = np.nan
    f = _make(kind, gap_mode="predict")
    y = f(x, t)
    gap = y[140:146, 0]  # 6 held samples
    assert f.held[140:146, 0].all() and np.isnan(y[146:, 0]).all()
    k = np.arange(1, 7)
    slope = np.polyfit(k / FS, gap, 1)[0]
    assert slope == pytest.approx(v[0], rel=1e-3)  # the filtered velocity of the ramp
    np.testing.assert_allclose(gap, y[139, 0] + slope * k / FS, rtol=0, atol=1e-12)  # a line from y[139]
    if kind == "butterworth":  # velocity = last filtered difference
        np.testing.assert_allclose(gap, y[139, 0] + (y[139, 0] - y[138, 0]) * k, rtol=0, atol=1e-12)
    hold = _make(kind)(x, t)
    np.testing.assert_array_equal(hold[140:146, 0], np.full(6, y[139, 0]))


def test_gap_timing_follows_timestamps():
    t = np.array([0.0, 0.05, 0.10, 0.14, 0.16, 0.20])
    x = np.array([[1.0], [1.0], [np.nan], [np.nan], [np.nan], [2.0]])
    for kind in ("butterworth", "one_euro"):
        f = make_filter(FilterSettings(kind=kind, max_hold_s=0.1), 1)
        y = f(x, t)
        np.testing.assert_array_equal(f.held[:, 0], [False, False, True, True, False, False])
        assert np.isnan(y[4, 0]) and y[5, 0] == pytest.approx(2.0, abs=1e-12)


def test_butterworth_counts_samples_without_timestamps():
    s = FilterSettings(kind="butterworth", max_hold_s=0.05, fs_hz=100.0)
    f = ButterworthFilter(s, 1)
    f(np.ones((5, 1)))
    held = []
    for _ in range(8):
        f(np.array([np.nan]))
        held.append(bool(f.held[0]))
    assert held == [True] * 5 + [False] * 3  # 5 samples / 100 Hz = max_hold_s


@hsettings(max_examples=20, deadline=None)
@given(sizes=chunk_sizes, kind=st.sampled_from(["butterworth", "one_euro"]),
       mode=st.sampled_from(["hold", "predict"]))
def test_chunked_equals_one_pass_with_gaps(sizes, kind, mode):
    rng = np.random.default_rng(11)
    T = 200
    t = np.arange(T) / FS + 0.3
    x = _signal(T, 4, seed=9)
    for c, (start, length) in enumerate([(20, 3), (50, 12), (120, 6), (150, 7)]):
        x[start:start + length, c] = np.nan
    x[rng.random((T, 4)) < 0.03] = np.nan
    s = FilterSettings(kind=kind, gap_mode=mode)
    ts = None if kind == "butterworth" else t
    y1 = make_filter(s, 4)(x, ts)
    f1 = make_filter(s, 4)
    f1(x, ts)
    y, held = _feed(make_filter(s, 4), x, ts, sizes)
    np.testing.assert_allclose(y, y1, rtol=0, atol=1e-10)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(y1))
    np.testing.assert_array_equal(held, f1.held)
    assert held.any() and np.isnan(y).any()


def test_passthrough():
    f = make_filter(FilterSettings(kind="none"), 3)
    assert isinstance(f, PassThroughFilter)
    x = np.array([[1.0, np.nan, 3.0], [4.0, 5.0, 6.0]])
    y = f(x, np.array([0.0, 0.1]))
    np.testing.assert_array_equal(y, x)
    assert y is not x and f.held.shape == (2, 3) and not f.held.any()
    assert f(x[0]).shape == (3,)
    assert group_delay_s(FilterSettings(kind="none")) == 0.0


def test_make_filter_registry():
    assert isinstance(make_filter(BW, 78), ButterworthFilter)
    assert isinstance(make_filter(OE, 78), OneEuroFilter)
    assert FilterSettings().kind == "one_euro"
    with pytest.raises(dataclasses.FrozenInstanceError):
        FilterSettings().beta = 1.0  # type: ignore[misc]


# ---------------------------------------------------------------------------------- delays
def _measured_group_delay_s(kind: str, f0: float = 1.0, df: float = 0.05) -> float:
    """Envelope (group) delay of the default filter: phases of two tones f0 -+ df, least squares."""
    s = FilterSettings(kind=kind)
    T = int(30 * FS)
    t = np.arange(T) / FS
    freqs = (f0 - df, f0 + df)
    amp = 1e-4  # m: slow motion, the One-Euro stays at its min cutoff
    x = 1.0 + amp * sum(np.sin(2 * np.pi * fk * t) for fk in freqs)
    y = make_filter(s, 1)(x[:, None], t)[:, 0]
    keep = t >= 10.0  # 20 s: whole periods of both tones
    cols = [np.ones(keep.sum())]
    for fk in freqs:
        cols += [np.sin(2 * np.pi * fk * t[keep]), np.cos(2 * np.pi * fk * t[keep])]
    coef = np.linalg.lstsq(np.column_stack(cols), y[keep], rcond=None)[0]
    phases = [math.atan2(coef[2 + 2 * k], coef[1 + 2 * k]) for k in range(2)]  # y ~ sin(wt + phase)
    return -(phases[1] - phases[0]) / (2 * np.pi * (freqs[1] - freqs[0]))


@pytest.mark.parametrize("kind", ["butterworth", "one_euro"])
def test_measured_group_delay_matches_group_delay_s(kind):
    expected = group_delay_s(FilterSettings(kind=kind), 1.0)
    assert abs(_measured_group_delay_s(kind) - expected) < 0.002  # s


def test_documented_delays_match_group_delay_s():
    bw_ms = group_delay_s(FilterSettings(kind="butterworth"), 1.0) * 1e3
    oe_ms = group_delay_s(FilterSettings(kind="one_euro"), 1.0) * 1e3
    assert round(bw_ms, 1) == DEFAULT_BUTTERWORTH_DELAY_MS
    assert round(oe_ms, 1) == DEFAULT_ONE_EURO_DELAY_MS
    d = FilterSettings()
    for doc in (filters.__doc__, FilterSettings.__doc__):
        m = re.search(r"Butterworth order (\d+) at ([\d.]+) Hz, ([\d.]+) Hz:\s+~([\d.]+) ms at 1 Hz", doc)
        assert m, doc
        assert (int(m[1]), float(m[2]), float(m[3])) == (d.order, d.cutoff_hz, d.fs_hz)
        assert float(m[4]) == DEFAULT_BUTTERWORTH_DELAY_MS
        m = re.search(r"One-Euro min cutoff ([\d.]+) Hz at ([\d.]+) Hz[^~]*~([\d.]+) ms at 1 Hz", doc)
        assert m, doc
        assert (float(m[1]), float(m[2])) == (d.min_cutoff_hz, d.fs_hz)
        assert float(m[3]) == DEFAULT_ONE_EURO_DELAY_MS


def test_group_delay_rejects_bad_frequency():
    with pytest.raises(ValueError, match="freq_hz"):
        group_delay_s(BW, 30.0)


# ---------------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "kw, msg",
    [
        ({"kind": "kalman"}, "kind"),
        ({"gap_mode": "zero"}, "gap_mode"),
        ({"min_cutoff_hz": 0.0}, "min_cutoff_hz"),
        ({"d_cutoff_hz": float("nan")}, "d_cutoff_hz"),
        ({"beta": -1.0}, "beta"),
        ({"order": 3}, "even"),
        ({"order": 0}, "even"),
        ({"order": 2.0}, "order must be an int"),
        ({"order": True}, "order must be an int"),
        ({"cutoff_hz": 30.0}, "Nyquist"),
        ({"fs_hz": -60.0}, "fs_hz"),
        ({"max_hold_s": -0.1}, "max_hold_s"),
        ({"max_hold_s": float("inf")}, "max_hold_s"),
        ({"cutoff_hz": "6"}, "cutoff_hz must be a number"),
    ],
)
def test_bad_settings(kw, msg):
    with pytest.raises(ValueError, match=msg):
        FilterSettings(**kw)


@pytest.mark.parametrize("kind", ["butterworth", "one_euro", "none"])
def test_bad_inputs(kind):
    f = make_filter(FilterSettings(kind=kind), 6)
    with pytest.raises(ValueError, match="n_channels=6"):
        f(np.zeros(5), 0.0)
    with pytest.raises(ValueError, match="n_channels=6"):
        f(np.zeros((3, 5)), np.arange(3.0))
    with pytest.raises(ValueError, match="n_channels=6"):
        f(np.zeros((2, 3, 6)), np.arange(2.0))
    with pytest.raises(ValueError, match="n_channels=6"):
        f(np.float64(1.0), 0.0)
    with pytest.raises(ValueError, match="t_s must have shape"):
        f(np.zeros((3, 6)), np.arange(4.0))
    with pytest.raises(ValueError, match="scalar"):
        f(np.zeros(6), np.arange(2.0))
    with pytest.raises(ValueError, match="finite"):
        f(np.zeros(6), float("nan"))
    with pytest.raises(ValueError, match="n_channels"):
        make_filter(FilterSettings(kind=kind), 0)
    with pytest.raises(TypeError, match="FilterSettings"):
        type(f)({"kind": kind}, 6)
