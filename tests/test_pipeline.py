"""FrameSets -> Skeleton3D in-process: accuracy on the virtual subject, real data, record & replay.

The same Pipeline object runs inside the live sync process; these tests drive it with the
frames in arrival order and receive times, exactly as the node does.
"""

from __future__ import annotations

import numpy as np
import pytest

from rtkin.sim import virtual
from rtkin.reconstruct.association import AssociationSettings
from rtkin.runtime.config import OpenPoseSourceSettings, ReconstructionSettings, RunConfig
from rtkin.reconstruct.pipeline import Pipeline
from rtkin.io.recording import INPUT, OUTPUT, RecordingWriter
from rtkin.offline.replay import replay
from rtkin.capture.keypoints import openpose_frames

PERIOD = 1e9 / 60


def _frame_of(sk, t0_ns):
    return int(round((sk.time_ns - t0_ns) / PERIOD))


@pytest.fixture(scope="module")
def live_single(demo_rig, subject):
    """Acceptance scenario: demo rig, 60 Hz, 3 px, 2 % outliers, 5 % dropouts, bystander in 2 views."""
    b = virtual.bystander()
    cs = virtual.CorruptionSettings(noise_px=3.0, outlier_rate=0.02, dropout_rate=0.05)
    views = virtual.render_views(demo_rig, [subject, b], corruption=cs, seed=11)
    assert {c for c in range(4) if any(1 in ids for ids in views.identity[c])} == {0, 1}  # cam01, cam02
    events = virtual.arrival_order(views, seed=2)
    pipe = Pipeline(demo_rig, "HALPE_26", clock_ns=None)
    return views, events, pipe.run(events), pipe


def test_live_single_person_accuracy_and_identity(live_single):
    views, _, outs, pipe = live_single
    assert len(outs) == views.n_frames and pipe.sync.counters.late == 0
    errs, ids = [], set()
    for sk in outs:
        assert sk.n_people == 1  # the subject, never the bystander as a second person
        ids.add(int(sk.person_ids[0]))
        errs.append(np.linalg.norm(sk.points[0] - views.truth_3d[_frame_of(sk, views.time_ns[0]), 0], axis=-1))
    err_mm = np.concatenate(errs) * 1e3
    assert ids == {0}  # the subject's id never switches
    assert np.nanmedian(err_mm) <= 15.0  # measured ~8 mm (One-Euro); 6.7 mm unfiltered
    assert np.isfinite(err_mm).mean() > 0.99


def _revalidated(sk):
    """``sk`` rebuilt through the validating constructor (raises on any broken invariant)."""
    from dataclasses import fields

    from rtkin.core.messages import Skeleton3D

    return Skeleton3D(**{f.name: getattr(sk, f.name) for f in fields(sk)})


def test_outputs_built_without_revalidation_still_pass_every_check(live_single):
    _, _, outs, _ = live_single  # the reconstructor builds them with Skeleton3D.trusted
    for sk in outs:
        assert _revalidated(sk) == sk
        for name in ("person_ids", "points", "scores", "reproj_error_px", "n_views"):
            assert not getattr(sk, name).flags.writeable
    with pytest.raises(ValueError):  # the check can fail: a negative reprojection error
        bad = outs[0]
        err = bad.reproj_error_px.copy()
        err[0, 0] = -1.0
        _revalidated(type(bad).trusted(bad.time_ns, bad.capture_ns, bad.skeleton, bad.person_ids.copy(),
                                       bad.points.copy(), bad.scores.copy(), err, bad.n_views.copy()))


def test_three_people_in_a_ring_keep_their_ids():
    rig = virtual.ring_rig(8)
    people = virtual.orbiting_group(3, duration_s=8.0)
    cs = virtual.CorruptionSettings(noise_px=3.0, outlier_rate=0.02, dropout_rate=0.05)
    views = virtual.render_views(rig, people, corruption=cs, seed=1)
    pipe = Pipeline(rig, "HALPE_26", reconstruction=ReconstructionSettings(association=AssociationSettings(mode="multi")),
                    clock_ns=None)
    outs = pipe.run(virtual.arrival_order(views))
    owner: dict[int, set[int]] = {}
    errs = []
    for sk in outs:
        t = _frame_of(sk, views.time_ns[0])
        for n, pid in enumerate(sk.person_ids):
            d = [np.nanmean(np.linalg.norm(sk.points[n] - views.truth_3d[t, s], axis=-1)) for s in range(3)]
            s = int(np.argmin(d))
            owner.setdefault(int(pid), set()).add(s)
            errs.append(np.linalg.norm(sk.points[n] - views.truth_3d[t, s], axis=-1))
    assert all(len(v) == 1 for v in owner.values())  # an id never jumps to another person
    frames_per_id = {pid: sum(pid in sk.person_ids for sk in outs) for pid in owner}
    main = [pid for pid, n in frames_per_id.items() if n > 0.95 * len(outs)]
    assert len(main) == 3  # three ids carry the whole run
    assert np.nanmedian(np.concatenate(errs)) * 1e3 <= 20.0  # measured ~11 mm
    for sk in outs[::7]:  # several people per message, built without re-validation: still valid
        assert _revalidated(sk) == sk


def test_real_demo_keypoints_through_the_openpose_source(demo_rig, demo_keypoints_dir):
    """Real MoveNet keypoints with a bystander in cam01/cam02: the subject in >= 95 % of frames,
    never the bystander (its reprojection matches the only person cam03 and cam04 see)."""
    frames = {c: openpose_frames(OpenPoseSourceSettings(), demo_keypoints_dir, c, "COCO_17", 60.0) for c in demo_rig.names}
    events = sorted(((f.capture_ns + 1_000_000 + 1000 * i, f) for i, c in enumerate(demo_rig.names) for f in frames[c]),
                    key=lambda e: e[0])
    pipe = Pipeline(demo_rig, "COCO_17", clock_ns=None)
    outs = pipe.run(events)
    assert len(outs) == 100
    with_subject = [sk for sk in outs if sk.n_people == 1]
    assert len(with_subject) >= 95
    for sk in with_subject:
        t = int(round((sk.time_ns - outs[0].time_ns) / PERIOD))
        det = frames["cam03"][t].keypoints[0]
        proj = demo_rig["cam03"].project(sk.points[0])
        ok = (det[:, 2] > 0.3) & np.isfinite(proj).all(-1)
        assert np.median(np.linalg.norm(det[ok, :2] - proj[ok], axis=-1)) < 40.0
    reproj = np.concatenate([sk.reproj_error_px[0] for sk in with_subject])
    print(f"real demo: subject in {len(with_subject)}/100 frames, median reprojection {np.nanmedian(reproj):.1f} px")
    assert 3.0 < np.nanmedian(reproj) < 20.0  # MoveNet precision (measured 9.7 px after exclusion)


def _record(path, cfg, rig, events, outs_by_push):
    meta = {"config": cfg.to_dict(), "calibration_toml": _calib_text(rig), "cameras": list(rig.names)}
    with RecordingWriter(path, meta) as w:
        for (recv, f), outs in zip(events, outs_by_push):
            w.write(f, recv, INPUT)
            for sk in outs:
                w.write(sk, recv, OUTPUT)


def _calib_text(rig):
    import tempfile
    from pathlib import Path

    from rtkin.core.calibration import write_calib_toml

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "c.toml"
        write_calib_toml(rig, p)
        return p.read_text()


def test_replay_reproduces_live_outputs_exactly_even_from_a_cut_file(tmp_path, demo_rig, live_single):
    views, events, _, _ = live_single
    cfg = RunConfig()
    pipe = Pipeline(demo_rig, "HALPE_26", cfg.sync, cfg.reconstruction, clock_ns=None)
    events = events[:800]
    per_push = [pipe.push(f, recv) for recv, f in events]
    live = [sk for outs in per_push for sk in outs]
    path = tmp_path / "s.rtkrec"
    _record(path, cfg, demo_rig, events, per_push)
    res = replay(path, flush_at_end=False)
    assert res.inputs == 800 and res.outputs == live and len(live) > 150
    assert res.matches_recorded() == (len(live), len(live))
    # cut the file in the middle of a record: the whole records before it replay identically
    data = path.read_bytes()
    for cut in (len(data) // 3 + 7, (2 * len(data)) // 3 + 1):
        part = tmp_path / f"cut{cut}.rtkrec"
        part.write_bytes(data[:cut])
        r = replay(part)
        assert r.truncated and 0 < len(r.outputs) < len(live)
        assert r.outputs == live[: len(r.outputs)]


def test_session_trc_loads_in_opensim_upright(tmp_path, live_single):
    osim = pytest.importorskip("opensim")
    from rtkin.io.trc import skeleton3d_to_trc

    _, _, outs, _ = live_single
    path = skeleton3d_to_trc(tmp_path / "s.trc", outs, 0, "HALPE_26", rate_hz=60.0)
    table = osim.TimeSeriesTableVec3(str(path))
    assert table.getNumRows() == len(outs) and table.getNumColumns() == 26
    labels = list(table.getColumnLabels())
    head = table.getDependentColumn("Head").getElt(0, 100)
    ankle = table.getDependentColumn("RAnkle").getElt(0, 100)
    assert labels[0] == "Nose" and head.get(1) > ankle.get(1) + 1.0  # y up in OpenSim, subject upright


def test_outputs_carry_the_arrival_of_their_last_camera_frame(demo_rig, subject):
    """``last_arrival_ns`` (the sync node's sk3d/ stamp, the start of the end-to-end latency) is
    the receive time of the newest frame that went into each Skeleton3D's slot."""
    views = virtual.render_views(demo_rig, subject, seed=3)
    events = virtual.arrival_order(views, seed=4)[:400]
    pipe = Pipeline(demo_rig, "HALPE_26", clock_ns=None)
    recv_of = {(f.camera, f.frame_index): recv for recv, f in events}
    got = []
    for recv, f in events:
        outs = pipe.push(f, recv)
        assert len(pipe.last_arrival_ns) == len(outs)
        got += [(sk, a, recv) for sk, a in zip(outs, pipe.last_arrival_ns)]
    assert len(got) > 50
    for sk, arrival, now in got:
        frame = _frame_of(sk, views.time_ns[0])
        expected = max(recv_of[(cam, frame)] for cam in demo_rig.names if (cam, frame) in recv_of)
        assert arrival == expected <= now
