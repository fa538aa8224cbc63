"""Board calibration: boards, detection order, intrinsics (real Pose2Sim images + synthetic), board extrinsics."""

from __future__ import annotations

import os
import cv2
import numpy as np
import pytest

from rtkin.core import assets

from rtkin.sim import virtual
from rtkin.calibrate.board_extrinsics import BoardNotFoundError, calibrate_extrinsics_board, solve_extrinsics_board
from rtkin.calibrate.board_render import board_image, render_board, write_board_image
from rtkin.calibrate.boards import CharucoBoard, Checkerboard, detect_board, iter_images
from rtkin.calibrate.intrinsics import (
    IntrinsicsSettings,
    NotEnoughViewsError,
    calibrate_intrinsics,
    calibrate_intrinsics_detections,
    intrinsics_rig,
)
from rtkin.core.calibration import CalibrationError, Rig, read_calib_toml, rodrigues, rodrigues_inv, write_calib_toml

DEMO_BOARD = Checkerboard((4, 7), 0.060)  # Pose2Sim demo Config.toml: intrinsics_corners_nb = [4,7], 60 mm


# ----------------------------------------------------------------------------- helpers


def _board_centre(board) -> np.ndarray:
    x0, y0, x1, y1 = board.outline_m()
    return np.array([(x0 + x1) / 2, (y0 + y1) / 2, 0.0])


def _fits(board, K, dist, rvec, tvec, size, margin=6.0) -> bool:
    x0, y0, x1, y1 = board.outline_m()
    pts = np.array([[x, y, 0.0] for x in np.linspace(x0, x1, 5) for y in np.linspace(y0, y1, 5)])
    uv, _ = cv2.projectPoints(pts, np.asarray(rvec, float), np.asarray(tvec, float), K, np.asarray(dist, float))
    uv = uv.reshape(-1, 2)
    return bool(np.all(uv > margin) and np.all(uv[:, 0] < size[0] - margin) and np.all(uv[:, 1] < size[1] - margin))


def _calibration_views(board, K, dist, size, n, seed=0, z=(0.45, 0.7)):
    """n board poses (rvec, tvec) spread over the image, tilted by up to 35 deg, fully in view."""
    rng = np.random.default_rng(seed)
    ctr = _board_centre(board)
    targets = [(u, v) for u in (0.25, 0.5, 0.75) for v in (0.3, 0.7)]
    poses, i = [], 0
    while len(poses) < n:
        u, v = targets[i % len(targets)]
        i += 1
        ax, ay = rng.uniform(-35, 35, 2)
        az = rng.uniform(-20, 20)
        R = rodrigues(np.radians([ax, 0, 0])) @ rodrigues(np.radians([0, ay, 0])) @ rodrigues(np.radians([0, 0, az]))
        t = np.linalg.inv(K) @ [u * size[0], v * size[1], 1.0] * rng.uniform(*z) - R @ ctr
        if _fits(board, K, dist, rodrigues_inv(R), t, size):
            poses.append((rodrigues_inv(R), t))
    return poses


def _noisy(img, rng, std=2.0):
    return np.clip(img + rng.normal(0.0, std, img.shape), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- boards and detection


def test_board_object_points_and_validation():
    b = Checkerboard((4, 7), 0.06)
    P = b.object_points()
    assert P.shape == (28, 3) and np.all(P[:, 2] == 0)
    np.testing.assert_allclose(P[1], [0.06, 0, 0])  # row-major, cols fastest
    np.testing.assert_allclose(P[4], [0, 0.06, 0])
    assert not b.symmetric and Checkerboard((6, 6), 0.03).symmetric and Checkerboard((5, 7), 0.03).symmetric
    c = CharucoBoard((7, 5), 0.04, 0.03)
    assert c.object_points().shape == (24, 3) and c.n_corners == 24
    with pytest.raises(ValueError):
        Checkerboard((2, 7), 0.06)
    with pytest.raises(ValueError):
        Checkerboard((4, 7), -1.0)
    with pytest.raises(ValueError):
        CharucoBoard((7, 5), 0.04, 0.05)  # marker larger than the square
    with pytest.raises(ValueError):
        CharucoBoard((7, 5), 0.04, 0.03, dictionary="DICT_NOPE")


@pytest.mark.parametrize(
    "board",
    [Checkerboard((8, 5), 0.03), Checkerboard((5, 8), 0.03), CharucoBoard((7, 5), 0.04, 0.03)],
    ids=["checker8x5", "checker5x8", "charuco7x5"],
)
def test_detected_corners_are_the_board_points_in_every_orientation(board):
    """Canonical order: corner i of a detection is object point ids[i], whatever the board's turn."""
    K = np.array([[900.0, 0, 480.3], [0, 900.0, 360.7], [0, 0, 1]])
    ctr = _board_centre(board)
    for rz in (0, 90, 180, 270, 30):
        R = rodrigues(np.radians([35, 0, 0])) @ rodrigues([0, 0, np.radians(rz)])
        t = np.array([0.0, 0.0, 0.7]) - R @ ctr
        det = detect_board(render_board(board, K, np.zeros(4), rodrigues_inv(R), t, (960, 720)), board)
        assert det is not None, rz
        uv, _ = cv2.projectPoints(det.object_points(board), rodrigues_inv(R), t, K, np.zeros(4))
        err = np.linalg.norm(uv.reshape(-1, 2) - det.corners, axis=1)
        assert err.max() < 0.5, (rz, err.max())
        assert det.blur_px < 1.2 and det.square_px > 20


def test_board_seen_from_behind_is_not_found():
    board = Checkerboard((8, 5), 0.03)
    K = np.array([[900.0, 0, 480], [0, 900.0, 360], [0, 0, 1]])
    R = rodrigues([np.pi, 0, 0])  # board z towards the camera: its blank back faces it
    t = np.array([0.0, 0.0, 0.7]) - R @ _board_centre(board)
    assert detect_board(render_board(board, K, np.zeros(4), rodrigues_inv(R), t, (960, 720)), board) is None


def test_board_image_and_atomic_write(tmp_path, monkeypatch):
    board = Checkerboard((4, 7), 0.06)
    img, A = board_image(board, px_per_square=40)
    assert img.shape == (8 * 40 + 40, 5 * 40 + 40)
    det = detect_board(img, board)
    np.testing.assert_allclose(det.corners, (board.object_points()[:, :2] @ A[:2, :2].T + A[:2, 2]), atol=0.3)
    out = write_board_image(board, tmp_path / "board.png", px_per_square=40)
    assert detect_board(cv2.imread(str(out)), board) is not None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["board.png"]
    # a failure while writing leaves neither the target nor a temp file
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        write_board_image(board, tmp_path / "other.png")
    with pytest.raises(ValueError):
        write_board_image(board, tmp_path / "board.nope")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["board.png"]


# ----------------------------------------------------------------------------- intrinsics: real Pose2Sim images


@pytest.fixture(scope="module")
def demo_intrinsics_dir():
    d = assets.demo_dir() / "calibration" / "intrinsics"
    if not d.is_dir():
        pytest.skip(f"Pose2Sim demo intrinsics images not found in {d}")
    return d


@pytest.fixture(scope="module")
def demo_intrinsics(demo_intrinsics_dir):
    """Intrinsics of cam01..cam04 from the 7 checkerboard images shipped per camera."""
    return {cam: calibrate_intrinsics(demo_intrinsics_dir / f"int_{cam}_img", DEMO_BOARD)
            for cam in assets.DEMO_CAMERAS}


def test_real_demo_images_give_the_qualisys_focal_lengths(demo_intrinsics, demo_rig):
    """All 4 cameras (a cam04 folder exists too). Images are 1088 x 1920 (portrait), exactly the size in
    the Qualisys calibration (the demo *videos* decode 1080 wide; the stills do not)."""
    for cam, res in demo_intrinsics.items():
        ref = demo_rig[cam]
        assert res.image_size == ref.size == (1088, 1920)
        f_err = np.abs(np.diag(res.K)[:2] / np.diag(ref.K)[:2] - 1.0)
        assert np.all(f_err < 0.02), (cam, f_err)
        assert res.rms_px < 1.0, (cam, res.rms_px)
        assert len(res.used) >= 6 and res.views_total == 7
        assert res.dist.shape == (4,)  # k1, k2, p1, p2 (k3 fixed)
        assert 0.2 < res.coverage <= 1.0 and 0.0 < res.hull_coverage <= 1.0
        # Pose2Sim's cam02_06 and cam04_04 show the board edge-on / cut: reported, not fatal
        for r in res.rejected:
            assert r.reason == "not found"
        assert cam in res.report(cam) and "RMS" in res.report(cam)


def test_real_demo_board_orientation_does_not_matter(demo_intrinsics_dir, demo_intrinsics):
    """(7, 4) describes the same physical board turned by 90 deg: same calibration."""
    res = calibrate_intrinsics(demo_intrinsics_dir / "int_cam01_img", Checkerboard((7, 4), 0.060))
    np.testing.assert_allclose(res.K, demo_intrinsics["cam01"].K, rtol=1e-3)
    assert res.rms_px < 1.0


def test_intrinsics_rig_round_trips_through_calib_toml(demo_intrinsics, tmp_path):
    rig = intrinsics_rig(demo_intrinsics, cameras=["cam02", "cam01"])
    assert rig.names == ("cam02", "cam01")
    write_calib_toml(rig, tmp_path / "Calib_int.toml")
    back = read_calib_toml(tmp_path / "Calib_int.toml")
    np.testing.assert_array_equal(back["cam01"].K, demo_intrinsics["cam01"].K)
    assert back["cam01"].size == (1088, 1920)


# ----------------------------------------------------------------------------- intrinsics: synthetic


SYN_K = np.array([[900.0, 0.0, 490.0], [0.0, 905.0, 355.0], [0.0, 0.0, 1.0]])
SYN_DIST = np.array([-0.25, 0.08, 0.001, -0.0005])
SYN_SIZE = (960, 720)
SYN_BOARD = Checkerboard((8, 5), 0.03)


@pytest.fixture(scope="module")
def synthetic_views():
    rng = np.random.default_rng(0)
    poses = _calibration_views(SYN_BOARD, SYN_K, SYN_DIST, SYN_SIZE, 12)
    return [_noisy(render_board(SYN_BOARD, SYN_K, SYN_DIST, r, t, SYN_SIZE), rng) for r, t in poses]


def _max_model_difference_px(K1, d1, K2, d2, size) -> float:
    """Max pixel distance between where two lens models put the same rays, over the image."""
    u, v = np.meshgrid(np.linspace(0, size[0], 9), np.linspace(0, size[1], 9))
    n = cv2.undistortPoints(np.stack([u.ravel(), v.ravel()], 1).reshape(-1, 1, 2), K2, d2).reshape(-1, 2)
    X = np.concatenate([n, np.ones((n.shape[0], 1))], axis=1)
    a, _ = cv2.projectPoints(X, np.zeros(3), np.zeros(3), K1, d1)
    b, _ = cv2.projectPoints(X, np.zeros(3), np.zeros(3), K2, d2)
    return float(np.abs(a - b).max())


def test_synthetic_intrinsics_recover_K_and_distortion(synthetic_views):
    calls = []
    res = calibrate_intrinsics(synthetic_views, SYN_BOARD, progress=lambda i, n, label: calls.append((i, n, label)))
    assert calls[-1] == (12, 12, "view 12") and len(calls) == 12
    assert res.used == tuple(f"view {i}" for i in range(1, 13)) and not res.rejected
    rel = np.abs(np.array([res.K[0, 0] / SYN_K[0, 0], res.K[1, 1] / SYN_K[1, 1], res.K[0, 2] / SYN_K[0, 2],
                           res.K[1, 2] / SYN_K[1, 2]]) - 1.0)
    assert np.all(rel < 0.005), rel
    assert abs(res.dist[0] - SYN_DIST[0]) < 0.01 and abs(res.dist[1] - SYN_DIST[1]) < 0.02
    assert _max_model_difference_px(res.K, res.dist, SYN_K, SYN_DIST, SYN_SIZE) < 0.5
    assert res.rms_px < 0.2 and not res.warnings


def test_blurred_and_duplicate_views_are_rejected_with_reasons(synthetic_views):
    views = list(synthetic_views[:8])
    views.append(cv2.GaussianBlur(synthetic_views[8], (0, 0), 4.0))
    views.append(cv2.GaussianBlur(synthetic_views[9], (0, 0), 5.0))
    views.append(synthetic_views[0].copy())  # the board did not move
    res = calibrate_intrinsics(views, SYN_BOARD)
    reasons = {r.label: r for r in res.rejected}
    assert reasons["view 9"].reason == "blurred" and "px" in reasons["view 9"].detail
    assert reasons["view 10"].reason == "blurred"
    assert reasons["view 11"].reason == "duplicate" and "view 1" in reasons["view 11"].detail
    assert len(res.used) == 8 and res.views_found == 11
    assert abs(res.K[0, 0] / SYN_K[0, 0] - 1) < 0.005
    assert "rejected view 9: blurred" in res.report()


def test_too_few_views_says_how_many_more_and_why(synthetic_views):
    blank = np.full(SYN_SIZE[::-1], 120, np.uint8)
    views = list(synthetic_views[:3]) + [cv2.GaussianBlur(v, (0, 0), 5.0) for v in synthetic_views[3:5]] + [blank]
    with pytest.raises(NotEnoughViewsError) as ei:
        calibrate_intrinsics(views, SYN_BOARD, min_views=8)
    e = ei.value
    msg = str(e)
    assert msg.startswith("need at least 8 usable views, got 3")
    assert "2 blurred" in msg and "1 board not found" in msg
    assert "add at least 5 more views" in msg and "tilted" in msg and "corners" in msg
    assert isinstance(e, ValueError) and isinstance(e, CalibrationError)
    assert (e.needed, e.usable, e.reasons) == (8, 3, {"blurred": 2, "not found": 1})
    # boards that cover too little of the image
    with pytest.raises(NotEnoughViewsError, match="board too small"):
        calibrate_intrinsics(synthetic_views[:6], SYN_BOARD, settings=IntrinsicsSettings(min_area_fraction=0.6))
    with pytest.raises(ValueError):
        IntrinsicsSettings(min_views=2)


def test_outlier_views_are_dropped_and_the_camera_recalibrated(synthetic_views):
    dets = [detect_board(v, SYN_BOARD, f"view {i + 1}") for i, v in enumerate(synthetic_views[:10])]
    rng = np.random.default_rng(5)
    bad = dets[4]
    dets[4] = type(bad)(bad.label, bad.corners + rng.normal(0, 4.0, bad.corners.shape), bad.ids, bad.image_size,
                        bad.blur_px, bad.square_px, bad.area_fraction)
    res = calibrate_intrinsics_detections(dets, SYN_BOARD, SYN_SIZE)
    assert [(r.label, r.reason) for r in res.rejected] == [("view 5", "outlier")]
    assert "median" in res.rejected[0].detail and "view 5" not in res.used
    assert abs(res.K[0, 0] / SYN_K[0, 0] - 1) < 0.005 and res.rms_px < 0.2


def test_views_of_another_size_are_rejected(synthetic_views):
    with pytest.raises(NotEnoughViewsError, match="6 of a different image size"):
        calibrate_intrinsics(synthetic_views[:6], SYN_BOARD, image_size=(800, 600))


def test_intrinsics_from_folder_and_video(tmp_path, synthetic_views):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, v in enumerate(synthetic_views[:6]):
        cv2.imwrite(str(folder / f"v{i:02d}.png"), v)
    (folder / "notes.txt").write_text("not an image")
    res = calibrate_intrinsics(folder, SYN_BOARD)
    assert res.used == tuple(f"v{i:02d}.png" for i in range(6))
    # a video at 2 fps holding each view for 1 s, sampled every second
    video = tmp_path / "board.avi"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 2.0, SYN_SIZE, False)
    if not w.isOpened():
        pytest.skip("no MJPG video writer")
    for v in synthetic_views[:7]:
        w.write(v)
        w.write(v)
    w.release()
    labels = [label for label, img, _ in iter_images(video, every_s=1.0)]
    assert labels == [f"board.avi@{float(s):.2f}s" for s in range(7)]
    res = calibrate_intrinsics(video, SYN_BOARD, settings=IntrinsicsSettings(every_s=1.0))
    assert len(res.used) == 7 and abs(res.K[0, 0] / SYN_K[0, 0] - 1) < 0.01
    with pytest.raises(FileNotFoundError):
        calibrate_intrinsics(tmp_path / "missing", SYN_BOARD)


def test_fisheye_model():
    K = np.array([[420.0, 0, 482], [0, 421.0, 358], [0, 0, 1]])
    D = np.array([0.05, -0.02, 0.01, -0.003])
    board = Checkerboard((8, 5), 0.04)
    rng = np.random.default_rng(3)
    ctr = _board_centre(board)
    views = []
    targets = [(u, v) for u in (0.2, 0.5, 0.8) for v in (0.25, 0.75)]
    for i in range(40):
        if len(views) == 10:
            break
        u, v = targets[i % len(targets)]
        R = rodrigues(np.radians(rng.uniform(-35, 35, 3) * [1, 1, 0.5]))
        n = cv2.fisheye.undistortPoints(np.array([[[u * 960, v * 720]]], float), K, D).ravel()
        t = np.array([n[0], n[1], 1.0]) * rng.uniform(0.35, 0.5) - R @ ctr
        x0, y0, x1, y1 = board.outline_m()
        P = np.array([[[x, y, 0.0] for x in (x0, x1) for y in (y0, y1)]])
        uv = cv2.fisheye.projectPoints(P, rodrigues_inv(R).reshape(3, 1), t.reshape(3, 1), K, D)[0].reshape(-1, 2)
        if np.all(uv > 5) and np.all(uv < [955, 715]):
            views.append(render_board(board, K, D, rodrigues_inv(R), t, (960, 720), fisheye=True))
    res = calibrate_intrinsics(views, board, model="fisheye", min_views=5)
    assert res.fisheye and res.dist.shape == (4,)
    assert np.all(np.abs(np.diag(res.K)[:2] / np.diag(K)[:2] - 1) < 0.01)
    assert res.camera("fish").fisheye


# ----------------------------------------------------------------------------- extrinsics


# Ring of 4 cameras 3 m from the centre, 2.5 m high, looking at the floor centre; the board lies on the floor.
@pytest.fixture(scope="module")
def ring4() -> Rig:
    return virtual.ring_rig(4, radius_m=3.0, height_m=2.5, target_m=(0.0, 0.0, 0.0))


def _board_on_floor(board, yaw_deg=20.0, xy=(0.1, -0.05), tilt_deg=(0.0, 0.0)):
    """Board -> world (R, t) for a board lying face up (board z = world -z), turned by yaw."""
    face_up = np.diag([1.0, -1, -1])
    R = rodrigues([0, 0, np.radians(yaw_deg)]) @ rodrigues(np.radians([tilt_deg[0], tilt_deg[1], 0])) @ face_up
    return R, np.array([xy[0], xy[1], 0.0]) - R @ _board_centre(board)


def _render_rig(rig, board, pose):
    R, t = pose
    return {c.name: render_board(board, c.K, c.dist, rodrigues_inv(c.R @ R), c.R @ t + c.tvec, c.size) for c in rig}


def _errors_in_board_frame(rig_est, rig_true, pose, z_up=False):
    """Per camera: centre error (m) and rotation error (deg) vs the truth expressed in the board frame."""
    R, t = pose
    F = np.diag([1.0, -1, -1]) if z_up else np.eye(3)  # world = F board
    out = []
    for est in rig_est:
        cam = rig_true[est.name]
        Rt = cam.R @ R @ F.T  # world -> camera, world = (turned) board frame
        tt = cam.R @ t + cam.tvec
        out.append((np.linalg.norm(est.center + Rt.T @ tt), np.degrees(np.linalg.norm(rodrigues_inv(est.R @ Rt.T)))))
    return np.array(out)


@pytest.fixture(scope="module")
def charuco_floor(ring4):
    board = CharucoBoard((7, 5), 0.12, 0.09)
    pose = _board_on_floor(board)
    return board, pose, _render_rig(ring4, board, pose)


@pytest.mark.parametrize("z_up", [False, True])
def test_board_extrinsics_charuco(ring4, charuco_floor, z_up):
    board, pose, images = charuco_floor
    res = solve_extrinsics_board(images, ring4, board, z_up=z_up)
    assert res.rig.names == ring4.names
    err = _errors_in_board_frame(res.rig, ring4, pose, z_up)
    assert np.all(err[:, 0] < 0.02) and np.all(err[:, 1] < 1.0), err
    assert all(res.rms_px[n] < 0.5 for n in ring4.names) and all(res.n_points[n] == 24 for n in ring4.names)
    heights = np.array([c.center[2] for c in res.rig])
    np.testing.assert_allclose(heights, 2.5 if z_up else -2.5, atol=0.02)  # z up: cameras above the floor
    for n in ring4.names:
        assert n in res.report()
    for est, true in zip(res.rig, ring4):
        np.testing.assert_array_equal(est.K, true.K)


def test_board_extrinsics_checkerboard_origin_agrees_across_cameras(ring4):
    """The 4 cameras see the checkerboard turned by 90 deg steps; all must agree on its origin."""
    board = Checkerboard((6, 9), 0.08)
    pose = _board_on_floor(board, yaw_deg=-35.0)
    images = _render_rig(ring4, board, pose)
    intr = {c.name: (c.K, c.dist[:4]) for c in ring4}  # plain (K, dist) intrinsics
    rig = calibrate_extrinsics_board(images, intr, board, cameras=["cam03", "cam01", "cam02", "cam04"])
    assert rig.names == ("cam03", "cam01", "cam02", "cam04") and rig["cam01"].size == (1920, 1080)
    err = _errors_in_board_frame(rig, ring4, pose)
    assert np.all(err[:, 0] < 0.02) and np.all(err[:, 1] < 1.0), err
    with pytest.raises(CalibrationError, match="180"):
        calibrate_extrinsics_board(images, intr, Checkerboard((6, 8), 0.08))


def test_board_extrinsics_follow_camera_names(ring4, charuco_floor):
    """Convention: swapping two cameras' images swaps their recovered poses."""
    board, pose, images = charuco_floor
    swapped = dict(images, cam01=images["cam02"], cam02=images["cam01"])
    rig = calibrate_extrinsics_board(swapped, ring4, board)
    ok = calibrate_extrinsics_board(images, ring4, board)
    np.testing.assert_allclose(rig["cam01"].center, ok["cam02"].center, atol=1e-6)
    assert np.linalg.norm(rig["cam01"].center - ok["cam01"].center) > 1.0


def test_board_extrinsics_several_shots(ring4):
    """Three board poses; each camera misses one shot; joint refinement of cameras and boards."""
    board = CharucoBoard((7, 5), 0.12, 0.09)
    poses = [_board_on_floor(board, 20, (0.1, -0.05)), _board_on_floor(board, -30, (-0.3, 0.4), (25, 0)),
             _board_on_floor(board, 60, (0.4, 0.3), (0, -25))]
    shots = {c.name: [] for c in ring4}
    for s, p in enumerate(poses):
        for name, img in _render_rig(ring4, board, p).items():
            shots[name].append(img)
    shots["cam02"][1] = None
    shots["cam04"][2] = None
    res = solve_extrinsics_board(shots, ring4, board, reference_shot=0)
    assert res.shots_seen["cam02"] == (0, 2) and res.shots_seen["cam04"] == (0, 1)
    err = _errors_in_board_frame(res.rig, ring4, poses[0])
    assert np.all(err[:, 0] < 0.02) and np.all(err[:, 1] < 1.0), err
    # board pose of shot 2 in the world (= board of shot 0)
    R0, t0 = poses[0]
    R2, t2 = poses[2]
    t_in_board0 = R0.T @ (t2 - t0)  # origin of board 2 in board 0's frame
    np.testing.assert_allclose(res.board_poses[2][:3, 3], t_in_board0, atol=0.01)
    np.testing.assert_allclose(res.board_poses[2][:3, :3], R0.T @ R2, atol=0.01)
    assert all(v < 1.0 for v in res.rms_px.values())


def test_board_extrinsics_errors(ring4, charuco_floor):
    board, pose, images = charuco_floor
    blank = np.full((1080, 1920), 120, np.uint8)
    with pytest.raises(BoardNotFoundError) as ei:
        calibrate_extrinsics_board(dict(images, cam03=blank), ring4, board)
    assert ei.value.cameras == ("cam03",) and "cam03" in str(ei.value)
    # a board standing up, facing cam01: cam03 sees its blank back
    Rs = rodrigues([0, np.radians(70), 0]) @ np.diag([1.0, -1, -1])  # printed face turned towards +x (cam01)
    ts = np.array([0.0, 0.0, 0.3]) - Rs @ _board_centre(board)
    imgs = _render_rig(ring4, board, (Rs, ts))
    with pytest.raises(BoardNotFoundError) as ei:
        calibrate_extrinsics_board(imgs, ring4, board)
    assert "cam03" in ei.value.cameras and "cam01" not in ei.value.cameras
    with pytest.raises(CalibrationError, match="at least 2 cameras"):
        calibrate_extrinsics_board({"cam01": images["cam01"]}, ring4, board, cameras=["cam01"])
    with pytest.raises(CalibrationError, match="no intrinsics"):
        calibrate_extrinsics_board(images, {"cam01": ring4["cam01"]}, board)
