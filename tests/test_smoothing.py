"""Zero-phase smoothing: Pose2Sim's Butterworth and the confidence-weighted RTS smoother."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal

from rtkin.reconstruct.smoothing import (SmoothingSettings, butterworth_zero_phase, hampel, point_weights, rts_smooth,
                                         smooth)

FS = 60.0


def _sine(T=600, f=1.0, amp=0.2):
    t = np.arange(T) / FS
    return t, amp * np.sin(2 * np.pi * f * t)


def _lag(x, y) -> int:
    """Delay (samples) of y behind x maximising their cross-correlation."""
    c = np.correlate(y - y.mean(), x - x.mean(), "full")
    return int(np.argmax(c) - (len(x) - 1))


def test_butterworth_matches_filtfilt_and_keeps_every_frame():
    rng = np.random.default_rng(0)
    _, x = _sine()
    noisy = x + rng.normal(0, 0.01, x.size)
    out = butterworth_zero_phase(noisy[:, None], FS, 6.0, 4, use_hampel=False)[:, 0]
    b, a = scipy.signal.butter(2, 6.0 / 30.0)
    np.testing.assert_allclose(out, scipy.signal.filtfilt(b, a, noisy), atol=1e-12)
    assert out.shape == x.shape and np.isfinite(out[-1])  # Pose2Sim's filtering drops the last frame; not here
    assert _lag(x, out) == 0


def test_butterworth_interpolates_short_gaps_only():
    _, x = _sine()
    y = x.copy()
    y[100:105] = np.nan  # 5 frames: bridged
    y[300:340] = np.nan  # 40 frames > max_gap_frames: stays missing
    out = butterworth_zero_phase(y[:, None], FS, 6.0, 4, max_gap_frames=20)[:, 0]
    assert np.isfinite(out[100:105]).all() and np.abs(out[100:105] - x[100:105]).max() < 0.01
    assert np.isnan(out[300:340]).all()


def test_hampel_replaces_a_spike():
    x = np.sin(np.linspace(0, 3, 50))
    y = x.copy()
    y[20] += 5.0
    assert abs(hampel(y)[20] - x[20]) < 0.1
    np.testing.assert_allclose(hampel(x), x)


def _points(x):
    """(T,) series -> (T, 1, 3) points moving along x."""
    p = np.zeros((x.size, 1, 3))
    p[:, 0, 0] = x
    return p


def test_rts_is_zero_phase_and_removes_noise():
    rng = np.random.default_rng(1)
    _, x = _sine(f=1.5)
    P = _points(x + rng.normal(0, 0.01, x.size))
    out = rts_smooth(P, np.ones((x.size, 1)), FS)[:, 0, 0]
    assert _lag(x, out) == 0
    assert np.sqrt(np.mean((out - x) ** 2)) < 0.5 * 0.01  # noise at least halved


def test_rts_weights_points_by_confidence():
    """A low-confidence displaced sample pulls the smoothed path less than a confident one."""
    _, x = _sine(f=0.5)
    P = _points(x.copy())
    P[200, 0, 0] += 0.05
    st = SmoothingSettings(robust_iterations=0)
    w = np.ones((x.size, 1))
    hi = rts_smooth(P, w, FS, st)[200, 0, 0] - x[200]
    w[200] = 0.05
    lo = rts_smooth(P, w, FS, st)[200, 0, 0] - x[200]
    assert 0 < lo < 0.5 * hi


def test_rts_robust_pass_rejects_confident_outliers():
    rng = np.random.default_rng(2)
    _, x = _sine()
    P = _points(x + rng.normal(0, 0.005, x.size))
    bad = rng.choice(np.arange(10, x.size - 10), 12, replace=False)
    P[bad, 0, 0] += 0.15  # confident outliers (weight 1)
    plain = rts_smooth(P, np.ones((x.size, 1)), FS, SmoothingSettings(robust_iterations=0))[:, 0, 0]
    robust = rts_smooth(P, np.ones((x.size, 1)), FS)[:, 0, 0]
    assert np.abs(robust - x)[bad].max() < 0.5 * np.abs(plain - x)[bad].max()


def test_rts_bridges_short_gaps_and_cuts_long_ones():
    _, x = _sine(f=0.5)
    P = _points(x)
    w = np.ones((x.size, 1))
    w[:30] = 0  # nothing before the first sample
    w[100:110] = 0  # 10 frames < max_gap_s * fs = 21
    w[300:360] = 0  # 60 frames: cut
    out = smooth(P, w, FS)[:, 0, 0]
    assert np.isnan(out[:30]).all()
    assert np.isfinite(out[100:110]).all() and np.abs(out[100:110] - x[100:110]).max() < 0.01
    assert np.isnan(out[300:360]).all() and np.isfinite(out[360:]).all()


def test_point_weights():
    pts = np.zeros((1, 4, 3))
    pts[0, 3] = np.nan
    w = point_weights(np.array([[0.9, 0.9, 0.9, 0.9]]), np.array([[4, 2, 1, 4]]), np.array([[2.0, 2.0, 2.0, 2.0]]), pts)
    assert w[0, 0] > w[0, 1] > 0 and w[0, 2] == 0 and w[0, 3] == 0  # more views better; 1 view or NaN: missing


def test_settings_are_checked():
    with pytest.raises(ValueError):
        SmoothingSettings(kind="kalman")
    with pytest.raises(ValueError):
        SmoothingSettings(order=3)
    with pytest.raises(ValueError):
        smooth(np.zeros((5, 2, 3)), np.ones((5, 3)), FS)


@pytest.mark.parametrize("kind", ["rts", "butterworth"])
def test_smoothers_reduce_the_3d_error_of_a_virtual_subject(kind):
    """Raw triangulation of the virtual subject through the live stages, then each smoother:
    the median 3D error against the truth drops, and no frame is lost."""
    from rtkin.reconstruct.filters import FilterSettings
    from rtkin.reconstruct.pipeline import Pipeline
    from rtkin.reconstruct.reconstructor import ReconstructionSettings
    from rtkin.sim import virtual

    truth = virtual.simulate_subject(virtual.MotionSettings(duration_s=4.0, fps=FS, seed=5))
    views = virtual.render_views(virtual.demo_rig(), truth, seed=9)
    pipe = Pipeline(views.rig, "HALPE_26", reconstruction=ReconstructionSettings(filter=FilterSettings(kind="none")),
                    clock_ns=None)
    sks = pipe.run(virtual.arrival_order(views, seed=1))
    T = views.n_frames
    P, S, V, E = np.full((T, 26, 3), np.nan), np.zeros((T, 26)), np.zeros((T, 26)), np.full((T, 26), np.nan)
    for sk in sks:
        f = int(round((sk.time_ns - views.time_ns[0]) * FS / 1e9))
        if sk.n_people and 0 <= f < T:
            P[f], S[f], V[f], E[f] = sk.points[0], sk.scores[0], sk.n_views[0], sk.reproj_error_px[0]
    st = SmoothingSettings(kind=kind)
    X = smooth(P, point_weights(S, V, E, P, st), FS, st)
    tr = views.truth_3d[:, 0]

    def med(A):
        d = np.linalg.norm(A - tr, axis=-1)
        return np.median(d[np.isfinite(d)])

    assert X.shape == P.shape and np.isfinite(X).all(-1).sum() >= np.isfinite(P).all(-1).sum()  # gaps filled, none lost
    assert med(X) < 0.8 * med(P)
