"""`rtkin calib intrinsics | extrinsics`: files written on success, clear errors and no file on failure."""

from __future__ import annotations

import cv2
import numpy as np

from rtkin.core import assets

from rtkin.sim import virtual
from rtkin.core.calibration import read_calib_toml, write_calib_toml
from rtkin.cli import main

INTR = assets.demo_dir() / "calibration" / "intrinsics"


def test_intrinsics_command_on_the_pose2sim_images(tmp_path, capsys):
    out = tmp_path / "int.toml"
    assert main(["calib", "intrinsics", "--board", "checkerboard:4x7:0.060",
                 "--camera", f"cam01={INTR / 'int_cam01_img'}", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "RMS reprojection" in text and "7/7" in text  # report and progress
    cam = read_calib_toml(out)["cam01"]
    ref = virtual.demo_rig()["cam01"]
    assert abs(cam.K[0, 0] / ref.K[0, 0] - 1) < 0.02


def test_intrinsics_without_a_board_fails_cleanly(tmp_path, capsys):
    folder = tmp_path / "blank"
    folder.mkdir()
    for i in range(8):
        cv2.imwrite(str(folder / f"b{i}.png"), np.full((480, 640, 3), 127, np.uint8))
    out = tmp_path / "int.toml"
    assert main(["calib", "intrinsics", "--board", "checkerboard:4x7:0.060", "--camera", f"c={folder}",
                 "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "usable views" in err and "Traceback" not in err and not out.exists()


def test_people_extrinsics_command_on_real_keypoints(tmp_path, demo_keypoints_dir, capsys):
    out = tmp_path / "rig.toml"
    assert main(["calib", "extrinsics", "--intrinsics", str(_intrinsics(tmp_path)), "--people", str(demo_keypoints_dir),
                 "--skeleton", "COCO_17", "--height", "1.75", "-o", str(out)]) == 0
    rig = read_calib_toml(out)
    assert rig.names == ("cam01", "cam02", "cam03", "cam04")
    assert "reprojection RMS" in capsys.readouterr().out
    heights = [c.center[2] for c in rig]
    assert all(1.0 < h < 3.0 for h in heights)  # cameras up on the walls, z up


def test_people_extrinsics_with_one_camera_fails_cleanly(tmp_path, demo_keypoints_dir, capsys):
    one = tmp_path / "one.toml"
    write_calib_toml(virtual.demo_rig().subset(["cam03"]), one)
    out = tmp_path / "rig.toml"
    assert main(["calib", "extrinsics", "--intrinsics", str(one), "--people", str(demo_keypoints_dir),
                 "--skeleton", "COCO_17", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "camera" in err and "Traceback" not in err and not out.exists()


def _intrinsics(tmp_path):
    p = tmp_path / "intr.toml"
    write_calib_toml(virtual.demo_rig(), p)  # extrinsics are ignored by --people
    return p


def test_people_extrinsics_from_a_recording(tmp_path, capsys):
    """A recording of the virtual subject (with a bystander in two views) -> a rig close to the truth."""
    from rtkin.core.calibration import read_calib_toml as _read
    from rtkin.calibrate.people import align_rig
    from rtkin.io.recording import INPUT, RecordingWriter

    rig = virtual.demo_rig()
    s = virtual.simulate_subject(virtual.MotionSettings(duration_s=6.0))
    views = virtual.render_views(rig, [s, virtual.bystander(duration_s=6.0)], seed=2)
    rec = tmp_path / "s.rtkrec"
    with RecordingWriter(rec, {"config": {"sync": {"fps_hz": 60.0}}}) as w:
        for recv, f in virtual.arrival_order(views):
            w.write(f, recv, INPUT)
    out = tmp_path / "rig.toml"
    assert main(["calib", "extrinsics", "--intrinsics", str(_intrinsics(tmp_path)), "--people", str(rec),
                 "--height", "1.7", "-o", str(out)]) == 0
    got = _read(out)
    al = align_rig(got, rig, "similarity")
    assert max(al.centre_error_m) < 0.05
