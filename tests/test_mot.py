"""MOT export: OpenSim reads it, degrees at the edge, round trip."""

from __future__ import annotations

import numpy as np
import pytest

from rtkin.io.mot import read_mot, write_mot


def test_mot_round_trip_and_opensim_reads_it(tmp_path):
    osim = pytest.importorskip("opensim")
    t = np.arange(50) / 60.0
    names = ["pelvis_tilt", "pelvis_tx", "knee_angle_r"]
    vals = np.stack([0.1 * np.sin(t), 0.5 + 0.01 * t, np.deg2rad(60) * np.ones_like(t)], axis=1)
    vals[3, 2] = np.nan
    path = write_mot(tmp_path / "a.mot", t, names, vals, rotational=[True, False, True])
    tt, nn, vv, deg = read_mot(path)
    assert deg and nn == names and np.allclose(tt, t, atol=1e-6)
    np.testing.assert_allclose(vv[:, 0], np.rad2deg(vals[:, 0]), atol=1e-6)
    np.testing.assert_allclose(vv[:, 1], vals[:, 1], atol=1e-8)  # translations stay in metres
    table = osim.TimeSeriesTable(str(path))
    assert table.getNumRows() == 50 and list(table.getColumnLabels()) == names
    assert table.getTableMetaDataAsString("inDegrees") == "yes"
    assert abs(table.getDependentColumn("knee_angle_r")[10] - 60.0) < 1e-6
    assert np.isnan(table.getDependentColumn("knee_angle_r")[3])


def test_mot_validation(tmp_path):
    with pytest.raises(ValueError, match="strictly increasing"):
        write_mot(tmp_path / "b.mot", [0.0, 0.0], ["a"], np.zeros((2, 1)), [True])
    with pytest.raises(ValueError, match="values must be"):
        write_mot(tmp_path / "b.mot", [0.0, 1.0], ["a"], np.zeros((2, 2)), [True])
