"""Calibration: Pose2Sim Calib.toml I/O, Qualisys import vs Pose2Sim, projection conventions."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from rtkin.core import assets
from rtkin.core.calibration import (
    CalibrationError,
    Camera,
    Rig,
    load_calib,
    read_calib_toml,
    read_qca,
    rodrigues,
    rodrigues_inv,
    write_calib_toml,
)

pose2sim_calibration = pytest.importorskip("Pose2Sim.calibration")
pose2sim_common = pytest.importorskip("Pose2Sim.common")


def _points_in_view(rig, n=200, seed=0):
    """(n, 3) world points in the demo capture volume (around the subject), m."""
    rng = np.random.default_rng(seed)
    return np.array([-0.9, 0.0, 0.0]) + rng.uniform([-0.6, -0.6, 0.0], [0.6, 0.6, 1.8], size=(n, 3))


def test_qca_import_equals_pose2sim_converter():
    path = assets.demo_qca_path()
    rig = read_qca(path)
    ret, C, S, D, K, R, T = pose2sim_calibration.calib_qca_fun(str(path))
    assert rig.names == tuple(C) == ("cam01", "cam02", "cam03", "cam04")
    for cam, s, d, k, r, t in zip(rig, S, D, K, R, T):
        assert cam.size == tuple(int(v) for v in s)
        np.testing.assert_allclose(cam.K, k, atol=1e-6, rtol=0)
        np.testing.assert_allclose(cam.dist[:4], d, atol=1e-6, rtol=0)
        np.testing.assert_allclose(cam.rvec, r, atol=1e-6, rtol=0)
        np.testing.assert_allclose(cam.tvec, t, atol=1e-6, rtol=0)
        np.testing.assert_allclose(cam.R, cv2.Rodrigues(np.asarray(r))[0], atol=1e-9)


def test_calib_toml_round_trip_is_exact(demo_rig, tmp_path):
    path = tmp_path / "Calib.toml"
    write_calib_toml(demo_rig, path)
    back = read_calib_toml(path)
    assert back.names == demo_rig.names
    for a, b in zip(demo_rig, back):
        for f in ("K", "dist", "rvec", "tvec"):
            np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
        assert a.size == b.size and a.fisheye == b.fisheye


def test_pose2sim_reads_our_toml_and_we_read_theirs(demo_rig, tmp_path):
    ours = tmp_path / "ours.toml"
    write_calib_toml(demo_rig, ours)
    P_p2s = pose2sim_common.computeP(ours)
    np.testing.assert_allclose(np.stack(P_p2s), demo_rig.projection_matrices(), rtol=1e-12, atol=1e-9)

    theirs = tmp_path / "theirs.toml"
    C = list(demo_rig.names)
    S = [list(c.size) for c in demo_rig]
    pose2sim_calibration.toml_write(str(theirs), C, S, [c.dist[:4] for c in demo_rig],
                                    [c.K for c in demo_rig], [c.rvec for c in demo_rig], [c.tvec for c in demo_rig])
    back = read_calib_toml(theirs)
    assert back.names == demo_rig.names
    np.testing.assert_allclose(back.projection_matrices(), demo_rig.projection_matrices(), rtol=1e-12)


def test_section_key_and_order_come_from_the_file(tmp_path, demo_rig):
    """anipose/FreeMoCap style keys (cam_0...) with a name field; file order is rig order."""
    reordered = demo_rig.subset(["cam03", "cam01", "cam04", "cam02"])
    path = tmp_path / "Calib.toml"
    write_calib_toml(reordered, path)
    text = path.read_text().replace("[cam03]", "[cam_0]").replace("[cam01]", "[cam_1]")
    path.write_text(text)
    assert read_calib_toml(path).names == ("cam03", "cam01", "cam04", "cam02")


def test_projection_agrees_with_cv2(demo_rig):
    X = _points_in_view(demo_rig)
    for cam in demo_rig:
        ref = cv2.projectPoints(X, cam.rvec, cam.tvec, cam.K, cam.dist)[0][:, 0]
        np.testing.assert_allclose(cam.project(X), ref, atol=1e-6)


def test_projection_with_k3_agrees_with_cv2():
    cam = Camera("c", (1920, 1080), [[1400, 0, 950], [0, 1410, 530], [0, 0, 1]],
                 [-0.3, 0.12, 0.001, -0.002, -0.02], [0.1, -0.2, 0.05], [0.1, 0.2, 4.0])
    X = np.random.default_rng(0).uniform(-1, 1, (100, 3))
    ref = cv2.projectPoints(X, cam.rvec, cam.tvec, cam.K, cam.dist)[0][:, 0]
    np.testing.assert_allclose(cam.project(X), ref, atol=1e-6)
    und = cam.undistort(cam.project(X))
    pin = cv2.projectPoints(X, cam.rvec, cam.tvec, cam.K, None)[0][:, 0]
    np.testing.assert_allclose(und, pin, atol=1e-6)


def test_undistortion_inverts_distortion_and_matches_cv2(demo_rig):
    X = _points_in_view(demo_rig)
    for cam in demo_rig:
        distorted = cam.project(X)
        pinhole = cv2.projectPoints(X, cam.rvec, cam.tvec, cam.K, None)[0][:, 0]
        np.testing.assert_allclose(cam.undistort(distorted), pinhole, atol=1e-6)
        # OpenCV's own scheme with its fixed 5 iterations: converged well enough for these lenses
        ref = cv2.undistortPoints(distorted.reshape(-1, 1, 2), cam.K, cam.dist, P=cam.K)[:, 0]
        np.testing.assert_allclose(cam.undistort(distorted), ref, atol=1e-4)


def test_centre_and_viewing_direction(demo_rig):
    for cam in demo_rig:
        # the centre maps to the camera origin; a point on the optical axis to the principal point
        np.testing.assert_allclose(cam.R @ cam.center + cam.tvec, 0, atol=1e-12)
        on_axis = cam.center + 3.0 * cam.view_direction
        np.testing.assert_allclose(cam.undistort(cam.project(on_axis)), cam.K[:2, 2], atol=1e-6)
        # demo cameras hang ~1.7-2.1 m up and look down at the room
        assert 1.5 < cam.center[2] < 2.3 and cam.view_direction[2] < 0


def test_points_behind_camera_are_nan(demo_rig):
    cam = demo_rig[0]
    behind = cam.center - 2.0 * cam.view_direction
    assert np.isnan(cam.project(behind)).all()


def test_fundamental_matrices_satisfy_epipolar_constraint(demo_rig):
    X = _points_in_view(demo_rig, 50)
    F = demo_rig.fundamentals()
    for a in range(len(demo_rig)):
        for b in range(len(demo_rig)):
            if a == b:
                continue
            xa = np.c_[demo_rig[a].undistort(demo_rig[a].project(X)), np.ones(len(X))]
            xb = np.c_[demo_rig[b].undistort(demo_rig[b].project(X)), np.ones(len(X))]
            lines = xa @ F[a, b].T  # epipolar lines in b
            dist_px = np.abs((xb * lines).sum(1)) / np.linalg.norm(lines[:, :2], axis=1)
            assert dist_px.max() < 1e-6
            # and a point off the line is measurably off
            normal = lines[:, :2] / np.linalg.norm(lines[:, :2], axis=1, keepdims=True)
            xb_off = xb + np.c_[20.0 * normal, np.zeros(len(X))]
            assert (np.abs((xb_off * lines).sum(1)) / np.linalg.norm(lines[:, :2], axis=1)).min() > 1.0


def test_rodrigues_matches_cv2_including_near_pi():
    rng = np.random.default_rng(3)
    vecs = list(rng.normal(size=(20, 3))) + [np.array([np.pi - 1e-8, 0, 0]), np.array([0, 0, 1e-14])]
    for v in vecs:
        R = rodrigues(v)
        np.testing.assert_allclose(R, cv2.Rodrigues(v)[0], atol=1e-9)
        np.testing.assert_allclose(rodrigues(rodrigues_inv(R)), R, atol=1e-9)


def test_rig_order_and_names(demo_rig):
    sub = demo_rig.subset(["cam04", "cam02"])
    assert sub.names == ("cam04", "cam02")
    assert sub.index("cam02") == 1
    with pytest.raises(KeyError, match="cam09"):
        demo_rig["cam09"]
    with pytest.raises(CalibrationError, match="duplicate"):
        Rig((demo_rig[0], demo_rig[0]))


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda s: s.replace("matrix = ", "matrix_x = ", 1), "lacks"),
        (lambda s: s.replace("distortions = [", "distortions = [ 0.0, 0.0, 0.0,", 1), "distortions"),
        (lambda s: s.replace("rotation = [", "rotation = [ 0.0,", 1), "rotation"),
        (lambda s: s.replace('name = "cam01"', 'name = "cam02"', 1), "duplicate"),
        (lambda s: s + "\n[broken\n", "not a valid TOML"),
        (lambda s: "[metadata]\nadjusted = false\n", "no camera"),
    ],
)
def test_malformed_calib_toml_raises_calibration_error(demo_rig, tmp_path, mutate, message):
    path = tmp_path / "Calib.toml"
    write_calib_toml(demo_rig, path)
    path.write_text(mutate(path.read_text()))
    with pytest.raises(CalibrationError, match=message):
        read_calib_toml(path)


def test_load_calib_dispatch_and_errors(tmp_path):
    assert load_calib(assets.demo_qca_path()).names[0] == "cam01"
    with pytest.raises(FileNotFoundError):
        load_calib(tmp_path / "missing.toml")
    bad = tmp_path / "calib.yaml"
    bad.write_text("x: 1")
    with pytest.raises(CalibrationError, match="unknown calibration format"):
        load_calib(bad)


def test_camera_validation():
    ok = dict(name="c", size=(100, 100), K=np.eye(3) * [100, 100, 1], dist=np.zeros(4), rvec=np.zeros(3), tvec=np.zeros(3))
    Camera(**ok)
    with pytest.raises(CalibrationError, match="fx, fy > 0"):
        Camera(**{**ok, "K": np.zeros((3, 3))})
    with pytest.raises(CalibrationError, match="size"):
        Camera(**{**ok, "size": (0, 100)})
    with pytest.raises(CalibrationError, match="non-empty"):
        Camera(**{**ok, "name": ""})
    with pytest.raises(CalibrationError, match="non-finite"):
        Camera(**{**ok, "tvec": [0, np.nan, 0]})
