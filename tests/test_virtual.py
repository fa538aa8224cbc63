"""The virtual subject: motion, forward kinematics truth, projection and corruption model."""

from __future__ import annotations

import numpy as np
import pytest

from rtkin.sim import virtual
from rtkin.core.frames import OSIM_FROM_WORLD
from rtkin.core.skeletons import get_skeleton


def test_motion_is_seeded_smooth_and_long_enough(subject):
    m = subject.motion
    assert m.values.shape[0] >= 600 and np.allclose(np.diff(m.time_s), 1 / 60)
    again = virtual.generate_motion(virtual.MotionSettings(seed=0))
    other = virtual.generate_motion(virtual.MotionSettings(seed=1))
    q = [m.names.index(n) for n in virtual.OBSERVABLE_COORDINATES if n != "pelvis_ty"]
    np.testing.assert_array_equal(again.values[:, q], m.values[:, q])
    assert np.abs(other.values[:, q] - m.values[:, q]).max() > 0.05
    # smooth: per-frame changes stay physiological (< 10 deg or 3 cm per 1/60 s)
    assert np.abs(np.diff(m.values, axis=0)).max() < np.deg2rad(10)
    # every driven coordinate actually moves; the unobservable ones do not
    for n in virtual.OBSERVABLE_COORDINATES:
        assert np.ptp(m[n]) > 1e-3, n
    for n in ("pro_sup_r", "wrist_flex_l", "mtp_angle_r", "neck_rotation"):
        assert np.ptp(m[n]) == 0.0


def test_motion_covers_walk_squat_and_arm_raise(subject):
    m = subject.motion
    t = m.time_s
    walk, squat, raise_ = (t < 3.5), (t > 4.5) & (t < 6.5), (t > 7.5) & (t < 9.5)
    assert np.ptp(m["hip_flexion_r"][walk]) > np.deg2rad(30)  # leg swing
    assert np.max(m["knee_angle_r"][squat]) > np.deg2rad(80)  # deep knee flexion
    assert np.min(m["arm_add_r"][raise_]) < np.deg2rad(-80)  # arm abducted to ~horizontal+


def test_keypoints_are_opensim_forward_kinematics_of_the_truth(subject):
    """Independent FK of the truth coordinates reproduces the cached keypoints (pelvis_ty included)."""
    import opensim as osim

    from rtkin.core import assets

    osim.Logger.setLevelString("error")
    model = osim.Model(str(assets.model_path()))
    markers = osim.MarkerSet(str(assets.marker_set_path("HALPE_26")))
    for i in range(markers.getSize()):
        model.addMarker(markers.get(i).clone())
    state = model.initSystem()
    names = ["RKnee", "LWrist", "Nose", "RBigToe"]
    idx = [subject.keypoint_names.index(n) for n in names]
    for f in (0, 250, 333, 500, 700):
        for q, name in enumerate(subject.motion.names):
            model.getCoordinateSet().get(name).setValue(state, float(subject.motion.values[f, q]), False)
        model.realizePosition(state)
        for n, k in zip(names, idx):
            p = model.getMarkerSet().get(n).getLocationInGround(state).to_numpy()
            np.testing.assert_allclose(OSIM_FROM_WORLD @ subject.keypoints[f, k], p, atol=1e-9)


def test_feet_on_the_floor_and_plausible_body(subject):
    sk = get_skeleton("HALPE_26")
    kp = subject.keypoints
    foot = sk.indices(["LHeel", "RHeel", "LBigToe", "RBigToe", "LSmallToe", "RSmallToe", "LAnkle", "RAnkle"])
    lowest = kp[:, foot, 2].min(axis=1)
    assert np.all((lowest > 0.0119) & (lowest < 0.012 + 0.002 * np.log(8) + 1e-4))  # soft-min contact
    head = kp[:, sk.index("Head"), 2]
    assert head.max() > 1.6 and head.min() > 1.0  # standing, and still >1 m at the deepest squat
    # landmarks on one rigid body keep their distance
    for a, b in [("RHip", "LHip"), ("RShoulder", "LShoulder"), ("Nose", "Head"), ("LHeel", "LBigToe")]:
        length = np.linalg.norm(kp[:, sk.index(a)] - kp[:, sk.index(b)], axis=-1)
        assert np.ptp(length) < 1e-9, (a, b)
    # left is left: facing world +y at pelvis_rotation 0 means the left hip is at -x
    f0 = np.argmin(np.abs(subject.motion["pelvis_rotation"]))
    assert kp[f0, sk.index("LHip"), 0] < kp[f0, sk.index("RHip"), 0]


def test_coco17_is_the_same_landmarks_by_name(subject):
    coco = subject.keypoints_for("COCO_17")
    names = get_skeleton("COCO_17").keypoints
    assert coco.shape == (subject.keypoints.shape[0], 17, 3)
    for k, n in enumerate(names):
        np.testing.assert_array_equal(coco[:, k], subject.keypoints[:, subject.keypoint_names.index(n)])
    with pytest.raises(ValueError, match="COCO_133"):
        subject.keypoints_for("COCO_133")


def test_forward_kinematics_is_cached_on_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("RTKIN_CACHE_DIR", str(tmp_path))
    s = virtual.MotionSettings(duration_s=0.5, seed=42)
    a = virtual.simulate_subject(s)
    files = list((tmp_path / "virtual_subject").glob("fk_*.npy"))
    assert len(files) == 1
    virtual._MEMO.clear()
    b = virtual.simulate_subject(s)
    np.testing.assert_array_equal(a.keypoints, b.keypoints)
    files[0].write_bytes(b"corrupt")  # a damaged cache entry is recomputed, not trusted
    virtual._MEMO.clear()
    c = virtual.simulate_subject(s)
    np.testing.assert_array_equal(a.keypoints, c.keypoints)


def test_clean_views_are_exact_projections(demo_rig, subject):
    v = virtual.render_views(demo_rig, subject, corruption=virtual.CorruptionSettings.clean())
    kp = v.keypoints_of(0)
    np.testing.assert_allclose(kp[..., :2], v.truth_2d[:, :, 0], atol=1e-3)  # float32 pixels
    assert (kp[..., 2] == 1.0).all()
    assert np.array_equal(v.frames[0][10].keypoints.shape, (1, 26, 3))
    stamps = np.array([f.capture_ns for f in v.frames[2]])
    np.testing.assert_array_equal(stamps, v.time_ns)


def test_corruption_statistics_match_the_knobs(demo_rig, subject):
    cs = virtual.CorruptionSettings(noise_px=3.0, low_score_rate=0.0, dropout_rate=0.05, outlier_rate=0.02,
                                    swap_rate=0.0, jitter_ms=1.0, offset_ms=0.0)
    v = virtual.render_views(demo_rig, subject, corruption=cs, seed=3)
    kp = v.keypoints_of(0)
    truth = v.truth_2d[:, :, 0]
    present = kp[..., 2] > 0
    assert abs((~present).mean() - 0.05) < 0.01
    d = np.linalg.norm(kp[..., :2] - truth, axis=-1)[present]
    outliers = d > 25.0
    assert abs(outliers.mean() - 0.02) < 0.006
    inl = (kp[..., :2] - truth)[present][~outliers]
    assert abs(inl.std() - 3.0) < 0.15
    for c in range(len(demo_rig)):
        stamps = np.array([f.capture_ns for f in v.frames[c]])
        assert np.all(np.diff(stamps) > 0)
        assert abs((stamps - v.time_ns).std() / 1e6 - 1.0) < 0.15


def test_left_right_swaps_happen_at_the_stated_rate(demo_rig, subject):
    cs = virtual.CorruptionSettings(noise_px=0.0, low_score_rate=0, dropout_rate=0, outlier_rate=0, swap_rate=0.1)
    v = virtual.render_views(demo_rig, subject, corruption=cs, seed=4)
    sk = get_skeleton("HALPE_26")
    kp = v.keypoints_of(0)
    truth = v.truth_2d[:, :, 0]
    swapped = np.isclose(kp[..., :2], sk.swap_lr(truth, axis=-2), atol=1e-2).all(-1).all(-1)
    assert abs(swapped.mean() - 0.1) < 0.02


def test_bystander_only_in_the_stated_views_and_identities_are_kept(demo_rig, subject):
    other = virtual.bystander()  # behind the subject: in the field of view of cam01 and cam02 only
    v = virtual.render_views(demo_rig, [subject, other], seed=2)
    only12 = virtual.render_views(demo_rig, [subject, other], seed=2, visible_in={1: ["cam01"]})
    assert not any(1 in ids for ids in only12.identity[1])
    for c, cam in enumerate(demo_rig):
        counts = [len(ids) for ids in v.identity[c]]
        has_by = np.mean([1 in ids for ids in v.identity[c]])
        if cam.name in ("cam01", "cam02"):
            assert has_by > 0.95 and max(counts) == 2
        else:
            assert has_by == 0.0 and max(counts) == 1
    # identity tells which detection is which subject
    c, t = 0, 100
    ids = v.identity[c][t]
    for p, s in enumerate(ids):
        det = v.frames[c][t].keypoints[p]
        ok = det[:, 2] > 0
        err = np.linalg.norm(det[ok, :2] - v.truth_2d[c, t, s][ok], axis=-1)
        assert np.median(err) < 10.0


def test_ring_rig_sees_a_subject_at_its_centre():
    rig = virtual.ring_rig(8, radius_m=4.0)  # tighter than the default 5 m
    s = virtual.simulate_subject(virtual.MotionSettings(duration_s=2.0, center_m=(0.0, 0.0)))
    v = virtual.render_views(rig, s, corruption=virtual.CorruptionSettings.clean())
    kp = v.keypoints_of(0)
    assert (kp[..., 2] > 0).mean() > 0.99
    centres = np.stack([c.center for c in rig])
    np.testing.assert_allclose(np.linalg.norm(centres[:, :2], axis=1), 4.0)
    # all cameras look at the target
    for cam in rig:
        np.testing.assert_allclose(cam.undistort(cam.project([0.0, 0.0, 1.0])), cam.K[:2, 2], atol=1e-6)
