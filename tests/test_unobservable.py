"""Unobservable means unobservable: coordinates the keypoint set cannot observe are flagged
UNOBSERVABLE with quality 0 (never a silent 0), exported as NaN with a header note, shown as
n/a by `rtkin watch`."""

from __future__ import annotations

import numpy as np
import pytest

from rtkin.core.messages import AngleFlag, Skeleton3D
from rtkin.core.skeletons import get_skeleton
from rtkin.kinematics.ik import IKSettings
from rtkin.kinematics.ik_stage import IKStage
from rtkin.sim import virtual


@pytest.fixture(scope="module")
def truth():
    return virtual.simulate_subject(virtual.MotionSettings(duration_s=1.0, fps=30.0, seed=0))


def _angles(truth, skeleton: str, frames=range(5)):
    sk = get_skeleton(skeleton)
    stage = IKStage(IKSettings(skeleton=skeleton))
    out = []
    for f in frames:
        p = truth.keypoints_for(skeleton)[f][None]
        K = sk.n_keypoints
        msg = Skeleton3D(int(f * 1e9 / 30), int(f * 1e9 / 30), skeleton, np.array([1]), p,
                         np.full((1, K), 0.9, np.float32), np.full((1, K), 2.0, np.float32), np.full((1, K), 4, np.uint8))
        out += stage(msg)
    return out


def _unobservable(ja) -> set[str]:
    return {n for n, f in zip(ja.names, ja.flags) if f & AngleFlag.UNOBSERVABLE}


def test_coco17_cannot_observe_the_feet_the_wrists_the_forearm_rotation_nor_neck_bending(truth):
    ja = _angles(truth, "COCO_17")[-1]
    gone = _unobservable(ja)
    assert {"ankle_angle_r", "ankle_angle_l", "subtalar_angle_r", "subtalar_angle_l", "mtp_angle_r", "pro_sup_r",
            "wrist_flex_r", "wrist_dev_l", "neck_bending"} <= gone
    assert not gone & {"knee_angle_r", "hip_flexion_l", "elbow_flex_r", "arm_rot_l", "neck_flexion"}
    q = dict(zip(ja.names, ja.quality))
    assert all(q[n] == 0.0 for n in gone) and q["knee_angle_r"] > 0.5


def test_halpe26_sees_the_ankles_but_not_the_forearm_rotation_toes_or_wrists(truth):
    ja = _angles(truth, "HALPE_26")[-1]
    gone = _unobservable(ja)
    assert gone == {"pro_sup_r", "pro_sup_l", "mtp_angle_r", "mtp_angle_l", "wrist_flex_r", "wrist_dev_r",
                    "wrist_flex_l", "wrist_dev_l"}


def test_mot_export_writes_nan_and_says_so(truth, tmp_path):
    opensim = pytest.importorskip("opensim")
    from rtkin.io.mot import joint_angles_to_mot, read_mot, rotational_mask

    msgs = _angles(truth, "COCO_17")
    path = joint_angles_to_mot(tmp_path / "p.mot", msgs, rotational_mask(msgs[0].names))
    text = path.read_text()
    header = text.split("endheader")[0]
    assert "unobservable=" in header and "ankle_angle_r" in header.split("unobservable=")[1].splitlines()[0]
    _, names, values, _ = read_mot(path)
    assert np.isnan(values[:, names.index("ankle_angle_r")]).all()
    assert np.isfinite(values[:, names.index("knee_angle_r")]).all()
    table = opensim.TimeSeriesTable(str(path))  # OpenSim still reads it
    assert table.getNumRows() == len(msgs)


def test_watch_shows_unobservable_as_not_available(truth):
    pytest.importorskip("rich")
    from rtkin.clients.watch import format_flags, render_table

    ja = _angles(truth, "COCO_17", frames=range(1))[0]
    assert "unobservable" in format_flags(int(AngleFlag.UNOBSERVABLE | AngleFlag.FILLED))
    import rich.console

    console = rich.console.Console(width=200, record=True)
    console.print(render_table({1: ja}, coordinates=["ankle_angle_r", "knee_angle_r"], now_ns=ja.capture_ns))
    lines = console.export_text().splitlines()
    ankle = next(l for l in lines if "ankle_angle_r" in l)
    assert "n/a" in ankle and "unobservable" in ankle
