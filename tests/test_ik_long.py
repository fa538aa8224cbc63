"""60 s of live joint angles on the virtual subject: no arm flips (the issue's acceptance)."""

from __future__ import annotations

import numpy as np

from rtkin.sim import virtual
from rtkin.kinematics.ik import IKSettings
from rtkin.kinematics.ik_stage import IKStage
from rtkin.reconstruct.pipeline import Pipeline

ARM = ("arm_flex_r", "arm_add_r", "arm_rot_r", "arm_flex_l", "arm_add_l", "arm_rot_l", "elbow_flex_r", "elbow_flex_l")


def test_no_arm_flips_over_60_seconds(demo_rig):
    """Demo rig, 3 px noise, 2 % outliers, 5 % dropouts, a bystander; 3600 frames through the live
    pipeline and IK. A flip (the arm solved in a mirrored configuration) shows as an error of tens
    of degrees that persists; arm rotation with a nearly straight elbow is the weakest coordinate
    (measured max error 34 deg, others < 15 deg)."""
    s = virtual.simulate_subject(virtual.MotionSettings(duration_s=60.0))
    cs = virtual.CorruptionSettings(noise_px=3.0, outlier_rate=0.02, dropout_rate=0.05)
    views = virtual.render_views(demo_rig, [s, virtual.bystander(duration_s=60.0)], corruption=cs, seed=5)
    pipe, ik = Pipeline(demo_rig, "HALPE_26", clock_ns=None), IKStage(IKSettings())
    rows, frames, names = [], [], None
    for recv, f in virtual.arrival_order(views):
        for sk in pipe.push(f, recv):
            for ja in ik(sk):
                names = ja.names
                rows.append(ja.values)
                frames.append(int(round((ja.time_ns - views.time_ns[0]) * 60 / 1e9)))
    values, frames = np.array(rows), np.array(frames)
    assert len(rows) > 0.98 * 3600
    est = np.degrees(values[:, [names.index(n) for n in ARM]])
    truth = np.degrees(s.motion.values[frames][:, [s.motion.names.index(n) for n in ARM]])
    err = np.abs(est - truth)
    assert err.max() < 45.0  # never a mirrored arm
    assert np.percentile(err, 99) < 15.0  # and glitches are rare and short
    elbows = est[:, -2:]
    assert elbows.min() > -1.0 and elbows.max() < 150.0
