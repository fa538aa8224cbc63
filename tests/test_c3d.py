"""C3D export: round trip, missing markers, units and frame, read back with the c3d library itself."""

from __future__ import annotations

import numpy as np
import pytest

from rtkin.io.c3d import read_c3d, write_c3d


def test_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    pts = rng.normal(0, 1, (40, 3, 3))
    pts[5, 1] = np.nan
    path = write_c3d(tmp_path / "a.c3d", pts, ["RKnee", "LKnee", "Head"], 60.0, first_time_s=0.5)
    t, back, names, rate = read_c3d(path)
    assert names == ("RKnee", "LKnee", "Head") and rate == 60.0
    np.testing.assert_allclose(t, 0.5 + np.arange(40) / 60.0)
    assert np.isnan(back[5, 1]).all() and np.isfinite(np.delete(back.reshape(-1, 3), 5 * 3 + 1, 0)).all()
    np.testing.assert_allclose(back[np.isfinite(back)], pts[np.isfinite(pts)], atol=1e-6)


def test_file_is_millimetres_world_z_up(tmp_path):
    """Read with the c3d library directly: mm, the world frame unchanged (z up), screen axes set."""
    import c3d

    pts = np.zeros((2, 2, 3))
    pts[:, 1] = [0.1, 0.2, 1.7]  # a head 1.7 m above the floor
    path = write_c3d(tmp_path / "b.c3d", pts, ["RAnkle", "Head"], 100.0)
    with open(path, "rb") as f:
        r = c3d.Reader(f)
        assert r.get("POINT:UNITS").string_value.strip() == "mm"
        assert r.get("POINT:Y_SCREEN").string_value.strip() == "+Z"
        frames = [p for _, p, _ in r.read_frames()]
    np.testing.assert_allclose(frames[0][1, :3], [100.0, 200.0, 1700.0], atol=1e-3)


def test_bad_input(tmp_path):
    with pytest.raises(ValueError):
        write_c3d(tmp_path / "c.c3d", np.zeros((3, 2, 3)), ["a"], 60.0)
    with pytest.raises(ValueError):
        write_c3d(tmp_path / "c.c3d", np.zeros((3, 1, 3)), ["a"], 0.0)
    assert not (tmp_path / "c.c3d").exists()
