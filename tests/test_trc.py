"""TRC export (rtkin.io.trc): round trips, OpenSim loading, upright subject, NaN, Pose2Sim compatibility."""

from __future__ import annotations

import numpy as np
import pytest

from rtkin.core.frames import OSIM_FROM_WORLD
from rtkin.core.messages import Skeleton3D
from rtkin.core.skeletons import get_skeleton
from rtkin.io.trc import read_trc, skeleton3d_to_trc, write_trc

osim = pytest.importorskip("opensim")
osim.Logger.setLevelString("error")

DEC = 6
TOL = 0.6 * 10.0**-DEC  # half a unit in the last written digit, plus float slack


def random_session(rng, t=30, k=5, rate=60.0, nan_fraction=0.15):
    time_s = 0.25 + np.arange(t) / rate
    pts = rng.uniform(-2, 2, (t, k, 3))
    pts[rng.random((t, k)) < nan_fraction] = np.nan
    return time_s, pts, [f"M{i}" for i in range(k)]


def osim_table(path):
    """(times (T,), values (T, K, 3) in the OpenSim frame, names) via TimeSeriesTableVec3."""
    table = osim.TimeSeriesTableVec3(str(path))
    flat_table = table.flatten()  # keep it alive: getMatrix() is a view into it (else a segfault)
    flat = flat_table.getMatrix().to_numpy().copy()
    times = np.array(list(table.getIndependentColumn()))
    names = list(table.getColumnLabels())
    return table, times, flat.reshape(table.getNumRows(), table.getNumColumns(), 3), names


def standing_subject(name="HALPE_26"):
    """(K, 3) world points (z up, m) of a simple upright subject facing +x."""
    sk = get_skeleton(name)
    z = {"Nose": 1.62, "LEye": 1.65, "REye": 1.65, "LEar": 1.63, "REar": 1.63, "Head": 1.70, "Neck": 1.50,
         "LShoulder": 1.45, "RShoulder": 1.45, "LElbow": 1.15, "RElbow": 1.15, "LWrist": 0.85, "RWrist": 0.85,
         "LHip": 0.95, "RHip": 0.95, "Hip": 0.95, "LKnee": 0.52, "RKnee": 0.52, "LAnkle": 0.10, "RAnkle": 0.10,
         "LBigToe": 0.02, "RBigToe": 0.02, "LSmallToe": 0.02, "RSmallToe": 0.02,
         "LHeel": 0.03, "RHeel": 0.03}  # fmt: skip
    pts = np.zeros((sk.n_keypoints, 3))
    for i, n in enumerate(sk.keypoints):
        side = 0.15 if n.startswith("L") else -0.15 if n.startswith("R") else 0.0
        fwd = 0.1 if "Toe" in n or n in ("Nose", "LEye", "REye") else 0.0
        pts[i] = (1.0 + fwd, 2.0 + side, z[n])  # subject standing at world (1, 2)
    return sk, pts


# --- round trip and layout ----------------------------------------------------------------------


def test_round_trip(tmp_path, rng):
    time_s, pts, names = random_session(rng)
    path = write_trc(tmp_path / "s.trc", time_s, pts, names)
    assert path == tmp_path / "s.trc"
    t2, p2, n2 = read_trc(path)
    assert n2 == tuple(names)
    np.testing.assert_allclose(t2, time_s, atol=TOL)
    assert np.array_equal(np.isnan(p2), np.isnan(pts))
    np.testing.assert_allclose(p2, pts, atol=TOL)
    assert not list(tmp_path.glob(".*tmp"))  # temp file renamed away


def test_header_layout(tmp_path, rng):
    time_s, pts, names = random_session(rng, t=4, k=2, nan_fraction=0)
    pts[1, 1] = np.nan
    path = write_trc(tmp_path / "walk.trc", time_s, pts, names)
    lines = path.read_text().split("\n")
    assert lines[0] == "PathFileType\t4\t(X/Y/Z)\twalk.trc"
    assert lines[1].split("\t") == ["DataRate", "CameraRate", "NumFrames", "NumMarkers", "Units",
                                    "OrigDataRate", "OrigDataStartFrame", "OrigNumFrames"]  # fmt: skip
    assert lines[2].split("\t") == ["60", "60", "4", "2", "m", "60", "1", "4"]
    assert lines[3] == "Frame#\tTime\tM0\t\t\tM1\t\t\t"
    assert lines[4] == "\t\tX1\tY1\tZ1\tX2\tY2\tZ2\t"
    row = lines[6].split("\t")
    assert row[0] == "2" and row[1] == f"{time_s[1]:.6f}" and row[5:] == ["NaN"] * 3
    osim_pt = OSIM_FROM_WORLD @ pts[1, 0]
    assert row[2:5] == [f"{v:.6f}" for v in osim_pt]
    assert lines[-1] == "" and len(lines) == 5 + 4 + 1
    assert "\r" not in path.read_text()


def test_rate_and_units(tmp_path, rng):
    time_s, pts, names = random_session(rng, t=10, rate=100.0)
    p = write_trc(tmp_path / "a.trc", time_s, pts, names)
    assert p.read_text().split("\n")[2].split("\t")[0] == "100"
    p = write_trc(tmp_path / "b.trc", time_s, pts, names, rate_hz=59.94, units="mm", decimals=3)
    header = p.read_text().split("\n")[2].split("\t")
    assert header[0] == header[1] == header[5] == "59.94" and header[4] == "mm"
    t2, p2, _ = read_trc(p)
    np.testing.assert_allclose(p2, pts, atol=0.6e-6)  # mm with 3 decimals = micrometres
    table, _, vals, _ = osim_table(p)
    assert table.getTableMetaDataAsString("Units") == "mm"
    np.testing.assert_allclose(vals, 1000 * pts @ OSIM_FROM_WORLD.T, atol=0.6e-3)
    # one frame needs an explicit rate
    with pytest.raises(ValueError, match="rate_hz"):
        write_trc(tmp_path / "c.trc", time_s[:1], pts[:1], names)
    write_trc(tmp_path / "c.trc", time_s[:1], pts[:1], names, rate_hz=30)
    assert read_trc(tmp_path / "c.trc")[1].shape == (1, 5, 3)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"points_world": np.zeros((3, 2))}, "shape"),
        ({"points_world": np.zeros((2, 2, 3))}, "shape"),
        ({"marker_names": ["a"]}, "marker names"),
        ({"marker_names": ["a", "a"]}, "unique"),
        ({"marker_names": ["a", "b\tc"]}, "tabs"),
        ({"marker_names": ["a", ""]}, "non-empty"),
        ({"time_s": [0.0, 0.0, 0.1]}, "increasing"),
        ({"time_s": [0.0, np.nan, 0.1]}, "finite"),
        ({"points_world": np.full((3, 2, 3), np.inf)}, "infinite"),
        ({"units": "in"}, "units"),
        ({"rate_hz": 0}, "rate_hz"),
        ({"decimals": -1}, "decimals"),
    ],
)
def test_write_rejects_bad_input(tmp_path, kwargs, match):
    args = {"time_s": [0.0, 0.1, 0.2], "points_world": np.zeros((3, 2, 3)), "marker_names": ["a", "b"]}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        write_trc(tmp_path / "bad.trc", **args)
    assert not list(tmp_path.iterdir())


def test_failed_write_keeps_the_old_file(tmp_path, rng, monkeypatch):
    time_s, pts, names = random_session(rng, t=3)
    path = write_trc(tmp_path / "keep.trc", time_s, pts, names)
    before = path.read_text()
    import rtkin.io.trc as trc_mod

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(trc_mod.os, "replace", boom)
    with pytest.raises(RuntimeError):
        write_trc(path, time_s, pts + 1, names)
    assert path.read_text() == before and sorted(p.name for p in tmp_path.iterdir()) == ["keep.trc"]


# --- OpenSim reads it ---------------------------------------------------------------------------


def test_opensim_loads_it(tmp_path, rng):
    time_s, pts, names = random_session(rng, t=40, k=6)
    path = write_trc(tmp_path / "o.trc", time_s, pts, names)
    table, times, vals, labels = osim_table(path)
    assert table.getNumRows() == 40 and table.getNumColumns() == 6
    assert labels == names
    np.testing.assert_allclose(times, time_s, atol=TOL)
    want = pts @ OSIM_FROM_WORLD.T  # the one world -> OpenSim rotation
    assert np.array_equal(np.isnan(vals), np.isnan(want))
    np.testing.assert_allclose(vals, want, atol=TOL)
    assert table.getTableMetaDataAsString("DataRate") == "60"
    assert table.getTableMetaDataAsString("Units") == "m"

    md = osim.MarkerData(str(path))
    assert md.getNumFrames() == 40
    assert [md.getMarkerNames().get(i) for i in range(md.getMarkerNames().getSize())] == names
    assert md.getDataRate() == 60.0 and md.getUnits().getAbbreviation() == "m"
    for t in (0, 17, 39):
        frame = md.getFrame(t)
        assert frame.getFrameTime() == pytest.approx(time_s[t], abs=TOL)
        got = np.array([[frame.getMarker(j).get(i) for i in range(3)] for j in range(6)])
        assert np.array_equal(np.isnan(got), np.isnan(want[t]))
        np.testing.assert_allclose(got, want[t], atol=TOL)


def test_nan_markers_load_as_nan_in_opensim(tmp_path, rng):
    time_s, pts, names = random_session(rng, t=5, k=3, nan_fraction=0)
    pts[0, 0] = np.nan  # first marker
    pts[2, 2] = np.nan  # last marker: the case empty cells break in OpenSim
    pts[4] = np.nan  # a whole frame
    path = write_trc(tmp_path / "nan.trc", time_s, pts, names)
    _, _, vals, _ = osim_table(path)
    assert np.array_equal(np.isnan(vals).all(-1), np.isnan(pts).all(-1))
    assert np.isnan(vals).any(-1).sum() == np.isnan(pts).any(-1).sum()
    md = osim.MarkerData(str(path))
    assert np.isnan(md.getFrame(2).getMarker(2).get(1)) and np.isfinite(md.getFrame(2).getMarker(1).get(1))


def test_standing_subject_loads_upright(tmp_path):
    sk, pts = standing_subject()
    time_s = np.arange(3) / 30.0
    path = write_trc(tmp_path / "stand.trc", time_s, np.broadcast_to(pts, (3, *pts.shape)), sk.keypoints)
    _, _, vals, labels = osim_table(path)
    y = vals[0, :, 1]  # OpenSim y is up
    head, l_ank, r_ank = (labels.index(n) for n in ("Head", "LAnkle", "RAnkle"))
    assert y[head] > y[l_ank] + 1.5 and y[head] > y[r_ank] + 1.5
    assert y[head] == pytest.approx(1.70, abs=TOL) and y[l_ank] == pytest.approx(0.10, abs=TOL)
    assert np.all(y > 0) and y.argmax() == head
    # OpenSim's x, z (the floor) are world y, x
    np.testing.assert_allclose(vals[0, head, [2, 0]], pts[sk.index("Head"), :2], atol=TOL)


def test_standing_subject_matches_the_pose2sim_model_up_axis(tmp_path):
    """Ankle -> Head points the same way in our TRC (as OpenSim loads it) and in the model's default pose."""
    from rtkin.core import assets

    sk, pts = standing_subject()
    path = write_trc(tmp_path / "stand.trc", [0.0, 0.1], np.stack([pts, pts]), sk.keypoints)
    model = osim.Model(str(assets.model_path()))
    model.set_MarkerSet(osim.MarkerSet(str(assets.marker_set_path(sk.name))))
    state = model.initSystem()
    markers = model.getMarkerSet()

    def loc(name):
        return np.array(markers.get(name).getLocationInGround(state).to_numpy())

    _, _, vals, labels = osim_table(path)

    def up(get):
        v = get("Head") - (get("LAnkle") + get("RAnkle")) / 2
        return v / np.linalg.norm(v)

    model_up, trc_up = up(loc), up(lambda n: vals[0, labels.index(n)])
    assert model_up @ trc_up > 0.95, (model_up, trc_up)
    assert model_up[1] > 0.95 and trc_up[1] > 0.95  # both along OpenSim +y


# --- Pose2Sim compatibility ---------------------------------------------------------------------


def test_pose2sim_reads_it(tmp_path, rng):
    common = pytest.importorskip("Pose2Sim.common")
    time_s, pts, names = random_session(rng, t=12, k=4)
    pts[3, 3] = np.nan
    path = write_trc(tmp_path / "p2s.trc", time_s, pts, names)
    want = (pts @ OSIM_FROM_WORLD.T).reshape(12, -1)

    data, frames_col, time_col, markers, _header = common.read_trc(str(path))
    assert markers == names
    assert list(frames_col) == list(range(1, 13))
    np.testing.assert_allclose(time_col.to_numpy(), time_s, atol=TOL)
    np.testing.assert_allclose(data.to_numpy(dtype=float), want, atol=TOL)

    marker_names, arr = common.extract_trc_data(str(path))
    assert marker_names == names
    np.testing.assert_allclose(arr[:, 0], time_s, atol=TOL)
    np.testing.assert_allclose(arr[:, 1:], want, atol=TOL)


def test_same_axes_as_pose2sim_zup2yup(rng):
    common = pytest.importorskip("Pose2Sim.common")
    import pandas as pd

    pts = rng.normal(size=(5, 3, 3))
    cols = [f"{m}_{a}" for m in "ABC" for a in "xyz"]
    ours = (pts @ OSIM_FROM_WORLD.T).reshape(5, -1)
    theirs = common.zup2yup(pd.DataFrame(pts.reshape(5, -1), columns=cols)).to_numpy()
    np.testing.assert_array_equal(ours, theirs)


def test_read_pose2sim_style_file_with_empty_cells(tmp_path):
    """Pose2Sim writes NaN as empty cells (and frame numbers from 0); read_trc accepts that."""
    text = (
        "PathFileType\t4\t(X/Y/Z)\tx.trc\n"
        "DataRate\tCameraRate\tNumFrames\tNumMarkers\tUnits\tOrigDataRate\tOrigDataStartFrame\tOrigNumFrames\n"
        "30\t30\t3\t2\tm\t30\t0\t3\n"
        "Frame#\tTime\tA\t\t\tB\t\t\t\n"
        "\t\tX1\tY1\tZ1\tX2\tY2\tZ2\t\n"
        "0\t0.0\t\t\t\t4.0\t5.0\t6.0\n"
        "1\t0.0333\t1.0\t2.0\t3.0\t\t\t\n"
        "2\t0.0667\t1.0\t2.0\t3.0\n"
        "\n"
    )
    path = tmp_path / "p2s_style.trc"
    path.write_text(text)
    t, world, names = read_trc(path)
    assert names == ("A", "B") and t.tolist() == [0.0, 0.0333, 0.0667]
    osim_pts = world @ OSIM_FROM_WORLD.T
    assert np.isnan(osim_pts[0, 0]).all() and np.isnan(osim_pts[1, 1]).all() and np.isnan(osim_pts[2, 1]).all()
    np.testing.assert_allclose(osim_pts[0, 1], [4, 5, 6])
    np.testing.assert_allclose(osim_pts[1, 0], [1, 2, 3])


def test_read_rejects_non_trc(tmp_path):
    path = tmp_path / "x.trc"
    path.write_text("hello\n")
    with pytest.raises(ValueError, match="not a TRC"):
        read_trc(path)


# --- from Skeleton3D ----------------------------------------------------------------------------


def sk3d(time_ns, ids, points):
    n, k = points.shape[:2]
    missing = np.isnan(points[..., 0])
    views = np.where(missing, 0, 3).astype(np.uint8)
    err = np.where(missing, np.nan, 1.0).astype(np.float32)
    ids = np.array(ids, dtype=np.int64)
    return Skeleton3D(time_ns, time_ns, "HALPE_26", ids, points, np.ones((n, k), np.float32), err, views)


def test_skeleton3d_to_trc_one_person(tmp_path):
    sk, stand = standing_subject()
    t0 = 5_000_000_000
    msgs, want = [], []
    for i in range(6):
        me = stand + [0.01 * i, 0, 0]
        other = stand + [0, 3, 0]
        if i == 2:  # person 7 absent
            msgs.append(sk3d(t0 + i * 33_333_333, [9], other[None]))
            want.append(np.full_like(stand, np.nan))
        elif i == 4:  # present, listed second, one keypoint not triangulated
            me = me.copy()
            me[sk.index("LWrist")] = np.nan
            msgs.append(sk3d(t0 + i * 33_333_333, [9, 7], np.stack([other, me])))
            want.append(me)
        else:
            msgs.append(sk3d(t0 + i * 33_333_333, [7, 9], np.stack([me, other])))
            want.append(me)
    path = skeleton3d_to_trc(tmp_path / "p7.trc", msgs, 7, "HALPE_26")
    t, pts, names = read_trc(path)
    assert names == sk.keypoints  # HALPE_26 has no derived points
    np.testing.assert_allclose(t, np.arange(6) * 0.033333333, atol=TOL)
    assert np.array_equal(np.isnan(pts), np.isnan(np.array(want)))
    np.testing.assert_allclose(pts, np.array(want), atol=TOL)
    assert path.read_text().split("\n")[2].split("\t")[0] == "30"
    table, *_ = osim_table(path)
    assert table.getNumRows() == 6 and table.getNumColumns() == 26

    with pytest.raises(ValueError, match="none of"):
        skeleton3d_to_trc(tmp_path / "x.trc", msgs, 123, "HALPE_26")
    with pytest.raises(ValueError, match="increasing"):
        skeleton3d_to_trc(tmp_path / "x.trc", msgs[::-1], 7, "HALPE_26")
    with pytest.raises(ValueError, match="skeleton"):
        skeleton3d_to_trc(tmp_path / "x.trc", msgs, 7, "COCO_17")
    with pytest.raises(ValueError, match="no messages"):
        skeleton3d_to_trc(tmp_path / "x.trc", [], 7, "HALPE_26")


def test_skeleton3d_to_trc_adds_derived_points(tmp_path, rng):
    sk = get_skeleton("COCO_17")
    pts = rng.uniform(0, 2, (1, sk.n_keypoints, 3))
    msgs = [
        Skeleton3D(i * 10_000_000, i * 10_000_000, "COCO_17", np.array([1]), pts + i,
                   np.ones((1, 17), np.float32), np.ones((1, 17), np.float32), np.full((1, 17), 2, np.uint8))
        for i in range(3)
    ]  # fmt: skip
    path = skeleton3d_to_trc(tmp_path / "coco.trc", msgs, 1, "COCO_17", t0_ns=-10_000_000)
    t, got, names = read_trc(path)
    assert names == sk.points and "Neck" in names and "Hip" in names
    np.testing.assert_allclose(t, [0.01, 0.02, 0.03], atol=TOL)
    np.testing.assert_allclose(got[1], sk.with_derived(pts[0] + 1), atol=TOL)
    path = skeleton3d_to_trc(tmp_path / "coco_k.trc", msgs, 1, "COCO_17", include_derived=False)
    assert read_trc(path)[2] == sk.keypoints
