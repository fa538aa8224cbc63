"""No ghost ids: new people confirmed after a short time, duplicates of a tracked person never get
an id, a detection fired twice never reaches the association."""

from __future__ import annotations

import numpy as np
import pytest

from rtkin.reconstruct.ghosts import duplicate_pairs, suppress_duplicate_detections
from rtkin.reconstruct.tracking import Tracker, TrackingSettings
from rtkin.sim import virtual

K = 10


def _body(x: float, y: float = 0.0) -> np.ndarray:
    pts = np.zeros((K, 3))
    pts[:, 0], pts[:, 1] = x, y
    pts[:, 2] = np.linspace(0, 1.7, K)
    return pts


def test_a_new_person_gets_an_id_after_the_confirmation_time():
    tr = Tracker(TrackingSettings(confirm_s=0.1))
    ids = [tr.update(_body(0.0)[None], time_ns=int(f * 1e9 / 60))[0] for f in range(10)]
    assert ids[:6] == [-1] * 6 and ids[6] == ids[9] == 0  # 6 frames at 60 Hz = 0.1 s
    # a flicker (seen 3 frames, gone, back) never becomes an id
    tr = Tracker(TrackingSettings(confirm_s=0.1))
    out = []
    for f in range(30):
        pts = _body(0.0)[None] if f % 4 != 3 else np.zeros((0, K, 3))
        out += list(tr.update(pts, time_ns=int(f * 1e9 / 60)))
    assert set(out) == {-1} and tr.counters["confirmed"] == 0 and tr.counters["dropped_tentative"] > 0


def test_a_duplicate_of_a_tracked_person_gets_no_id():
    tr = Tracker(TrackingSettings(confirm_s=0.0, duplicate_m=0.3))
    assert list(tr.update(_body(0.0)[None], 0)) == [0]
    for f in range(1, 20):  # a ghost 20 cm away appears next to the person for a while
        ids = tr.update(np.stack([_body(0.0), _body(0.2)]), int(f * 1e9 / 60))
        assert list(ids) == [0, -1]
    assert tr.active_ids == [0] and tr.counters["duplicates"] == 19
    # a second person 1 m away is a person
    for f in range(20, 30):
        ids = tr.update(np.stack([_body(0.0), _body(1.0)]), int(f * 1e9 / 60))
    assert list(ids) == [0, 1]
    with pytest.raises(ValueError):
        TrackingSettings(confirm_s=-1.0)


def test_a_detection_fired_twice_is_dropped_before_association():
    rng = np.random.default_rng(0)
    person = np.concatenate([rng.uniform(500, 900, (26, 2)), np.full((26, 1), 0.9)], axis=1)
    other = person.copy()
    other[:, 0] += 300  # someone else, beside them
    ghost = person.copy()
    ghost[:, :2] += 12.0  # the same body, detected again 12 px off
    ghost[::3, 2] = 0.0
    ghost[:, 2] *= 0.8
    dets = np.stack([ghost, person, other]).astype(np.float32)
    assert duplicate_pairs(dets) == [(1, 0)]  # the stronger detection is kept
    two = dets[1:]
    views, n = suppress_duplicate_detections([dets, None, two])
    assert n == 1 and len(views[0]) == 2 and views[1] is None and views[2] is two  # nothing to drop: as is
    np.testing.assert_array_equal(views[0][0], person.astype(np.float32))


def test_virtual_group_with_ghost_detections_gets_one_id_per_person():
    """3 people walking around each other in an 8-camera ring, 5 % of detections fired twice:
    no ghost id, no short-lived id, ids stable."""
    from rtkin.reconstruct.association import AssociationSettings
    from rtkin.reconstruct.pipeline import Pipeline
    from rtkin.reconstruct.reconstructor import ReconstructionSettings

    rig = virtual.ring_rig(8)
    people = virtual.orbiting_group(3, duration_s=4.0)
    cs = virtual.CorruptionSettings(noise_px=2.0, outlier_rate=0.01, dropout_rate=0.03, duplicate_rate=0.05)
    views = virtual.render_views(rig, people, corruption=cs, seed=3)
    pipe = Pipeline(rig, "HALPE_26", reconstruction=ReconstructionSettings(association=AssociationSettings(mode="multi")),
                    clock_ns=None)
    outs = pipe.run(virtual.arrival_order(views, seed=1))
    life: dict[int, int] = {}
    owner: dict[int, set[int]] = {}
    for sk in outs:
        f = int(round((sk.time_ns - views.time_ns[0]) * 60 / 1e9))
        for n, pid in enumerate(sk.person_ids):
            life[int(pid)] = life.get(int(pid), 0) + 1
            d = [np.nanmean(np.linalg.norm(sk.points[n] - views.truth_3d[f, s], axis=-1)) for s in range(3)]
            owner.setdefault(int(pid), set()).add(int(np.argmin(d)))
    assert len(life) == 3, life  # one id per person, no ghost id
    assert min(life.values()) > 0.9 * len(outs)
    assert all(len(v) == 1 for v in owner.values())  # an id never moves to another person
    assert pipe.reconstructor.tracker.counters["confirmed"] == 3
