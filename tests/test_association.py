"""Association across views (epipolar affinity, single and multi mode) and tracking."""

from __future__ import annotations

import numpy as np
import pytest

from rtkin.sim import virtual
from rtkin.reconstruct.association import AssociationSettings, Associator, pairwise_epipolar_distance
from rtkin.reconstruct.tracking import Tracker, TrackingSettings


@pytest.fixture(scope="module")
def with_bystander(demo_rig):
    s = virtual.simulate_subject(virtual.MotionSettings(duration_s=4.0))
    b = virtual.bystander(duration_s=4.0)
    return virtual.render_views(demo_rig, [s, b], seed=3)


def _views(v, t):
    return [v.frames[c][t].keypoints for c in range(len(v.rig))]


def test_epipolar_distance_small_for_same_person_large_for_others(demo_rig, with_bystander):
    v = with_bystander
    F = demo_rig.fundamentals()
    t = 60
    k0, k1 = v.frames[0][t].keypoints, v.frames[1][t].keypoints  # both see subject and bystander
    u0, u1 = demo_rig[0].undistort(k0[..., :2]), demo_rig[1].undistort(k1[..., :2])
    d = pairwise_epipolar_distance(F[0, 1], u0, k0[..., 2], u1, k1[..., 2], 4)
    ids0, ids1 = v.identity[0][t], v.identity[1][t]
    same = ids0[:, None] == ids1[None, :]
    assert d[same].max() < 10.0 and d[~same].min() > 40.0
    none = np.zeros_like(k1[..., 2])
    assert np.isinf(pairwise_epipolar_distance(F[0, 1], u0, k0[..., 2], u1, none, 4)).all()


def test_single_mode_picks_the_subject_not_the_bystander(demo_rig, with_bystander):
    v = with_bystander
    assoc = Associator(demo_rig)
    wrong = 0
    for t in range(v.n_frames):
        groups = assoc(_views(v, t))
        assert len(groups) == 1
        for c, i in groups[0].items():
            wrong += v.identity[c][t][i] != 0
        assert len(groups[0]) >= 3
    assert wrong == 0


def test_single_mode_follows_the_prior_when_given(demo_rig, with_bystander):
    v = with_bystander
    assoc = Associator(demo_rig)
    t = 30
    bystander_3d = v.truth_3d[t, 1][None]
    groups = assoc(_views(v, t), prior=bystander_3d)  # tracked person = the bystander
    assert all(v.identity[c][t][i] == 1 for c, i in groups[0].items())


def test_multi_mode_groups_three_people_in_a_ring():
    rig = virtual.ring_rig(8)
    people = virtual.orbiting_group(3, duration_s=3.0)
    v = virtual.render_views(rig, people, seed=5)
    assoc = Associator(rig, AssociationSettings(mode="multi"))
    pure, total = 0, 0
    for t in range(0, v.n_frames, 3):
        groups = assoc(_views(v, t))
        assert len(groups) >= 3
        for g in groups[:3]:
            ids = {int(v.identity[c][t][i]) for c, i in g.items()}
            pure += len(ids) == 1
            total += 1
    assert pure / total >= 0.99


def test_swapped_calibrations_break_association(demo_rig, with_bystander):
    """Convention check: with two cameras' calibrations swapped, the subject is no longer found
    consistently across all four views."""
    v = with_bystander
    swapped = demo_rig.subset(["cam02", "cam01", "cam03", "cam04"])
    good = Associator(demo_rig)(_views(v, 40))
    bad = Associator(swapped)(_views(v, 40))
    assert len(good[0]) == 4
    assert not bad or len(bad[0]) < 4


def test_tracker_keeps_ids_through_crossing_and_retires_them():
    tr = Tracker(TrackingSettings(max_jump_m=0.3, max_unseen_frames=5, confirm_s=0.0))
    K = 10
    base = np.zeros((K, 3))
    base[:, 2] = np.linspace(0, 1.7, K)
    a0, b0 = np.array([-1.0, 0, 0]), np.array([1.0, 0.4, 0])
    ids_a, ids_b = [], []
    for t in range(60):  # they walk towards and past each other, 0.4 m apart at the crossing
        pa = base + a0 + [t * 2.0 / 59, 0, 0]
        pb = base + b0 - [t * 2.0 / 59, 0, 0]
        order = [0, 1] if t % 2 else [1, 0]  # detections come in either order
        pts = np.stack([pa, pb])[order]
        ids = tr.update(pts)
        ids_a.append(ids[order.index(0)])
        ids_b.append(ids[order.index(1)])
    assert len(set(ids_a)) == 1 and len(set(ids_b)) == 1 and ids_a[0] != ids_b[0]
    # a jump beyond max_jump_m is a new person; an unseen track is retired after 5 frames
    far = tr.update(np.stack([base + [10.0, 0, 0]]))
    assert far[0] not in (ids_a[0], ids_b[0])
    for _ in range(6):
        tr.update(np.zeros((0, K, 3)))
    assert tr.active_ids == [] and set(tr.retired) <= {far[0], ids_a[0], ids_b[0]}


def test_tracker_ignores_people_with_too_few_keypoints():
    tr = Tracker(TrackingSettings(min_keypoints=4))
    pts = np.full((1, 10, 3), np.nan)
    pts[0, :3] = 0.0
    assert tr.update(pts)[0] == -1 and tr.active_ids == []
