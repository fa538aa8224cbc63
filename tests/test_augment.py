"""Marker augmentation: the streaming LSTM against Pose2Sim's own augmentation (the real models it
ships, through onnxruntime), state, confidence, the IK with augmented markers, the settings."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pytest

from rtkin.core.messages import Skeleton3D
from rtkin.core.skeletons import get_skeleton
from rtkin.io.trc import read_trc, write_trc
from rtkin.kinematics import augment as A
from rtkin.kinematics.augment_lstm import LSTMNet, load_lstm
from rtkin.sim import virtual

FPS = 60.0
#: a body and motion unlike the virtual subject's defaults: another seed, squats and arm raises
#: first, turned away from the rig's +y, longer legs and arms
MOTION = virtual.MotionSettings(duration_s=4.0, seed=5, segments=("arm_raise", "squat", "walk"),
                                segments_s=(1.5, 1.5, 1.0), heading_rad=2.0, amplitude=1.2)
FACTORS = {"femur_r": 1.08, "femur_l": 1.08, "tibia_r": 1.1, "tibia_l": 1.1, "humerus_r": 1.05,
           "humerus_l": 1.05, "torso": 1.03, "pelvis": 1.04}


@pytest.fixture(scope="module")
def subject():
    from rtkin.sim.scaled import simulate_scaled_subject

    return simulate_scaled_subject(FACTORS, MOTION)


def _messages(points: np.ndarray, skeleton: str, t0_ns: int = 0, pid: int = 3) -> list[Skeleton3D]:
    k = points.shape[1]
    return [Skeleton3D(t0_ns + int(round(f * 1e9 / FPS)), t0_ns + int(round(f * 1e9 / FPS)), skeleton,
                       np.array([pid]), points[f][None], np.ones((1, k), np.float32),
                       np.ones((1, k), np.float32), np.full((1, k), 4, np.uint8)) for f in range(len(points))]


def _pose2sim_augment(tmp_path: Path, points: np.ndarray, names, height: float, mass: float):
    """Pose2Sim's own augment_markers_all on a TRC of ``points``: (input read back, output, names)."""
    from Pose2Sim.markerAugmentation import augment_markers_all

    d = tmp_path / "p2s"
    (d / "pose-3d").mkdir(parents=True)
    trc = d / "pose-3d" / "trial.trc"
    write_trc(trc, np.arange(len(points)) / FPS, points, names, rate_hz=FPS)
    _, pin, _ = read_trc(trc)  # what Pose2Sim reads (6 decimals)
    logging.disable(logging.WARNING)
    try:
        augment_markers_all({"project": {"project_dir": str(d), "participant_height": height,
                                         "participant_mass": mass, "frame_range": "all"},
                             "markerAugmentation": {"make_c3d": False, "feet_on_floor": False}})
    finally:
        logging.disable(logging.NOTSET)
    _, out, out_names = read_trc(d / "pose-3d" / "trial_LSTM.trc")
    return pin, out, out_names


# ============================================================================ the LSTM read-out


@pytest.mark.parametrize("model", ["v0.3_lower", "v0.3_upper"])
def test_step_wise_lstm_equals_onnxruntime_and_chunks_continue(model):
    import onnxruntime as ort

    from rtkin.core import assets

    path = assets.marker_augmenter_dir() / "LSTM" / model / "model.onnx"
    net = LSTMNet(load_lstm(path))
    X = np.random.default_rng(0).normal(scale=20.0, size=(150, net.n_inputs)).astype(np.float32)
    ref = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"inputs": X[None]})[0][0]
    out = net.run(X)
    assert out.shape == ref.shape
    assert np.abs(out - ref).max() < 1e-5  # normalised units (x height = metres)
    st = net.new_state()  # the same sequence in two chunks: the state carries over
    both = np.concatenate([net.run(X[:67], st), net.run(X[67:], st)])
    assert np.abs(both - out).max() < 1e-6
    assert np.abs(net.run(X[67:]) - out[67:]).max() > 1e-3  # a fresh state differs: it is state
    st = net.new_state()  # the recurrent part prepared ahead (a live loop's idle time): the same
    ahead = []
    for x in X:
        net.prepare(st)
        net.prepare(st)  # idempotent
        ahead.append(net.step(x, st))
    assert np.array_equal(np.stack(ahead), out)


def test_a_graph_that_is_not_a_keras_lstm_is_refused(tmp_path):
    import onnx

    from rtkin.core import assets

    model = onnx.load(str(assets.marker_augmenter_dir() / "LSTM" / "v0.3_upper" / "model.onnx"))
    loop = next(n for n in model.graph.node if n.op_type == "Loop")
    body = next(a.g for a in loop.attribute if a.name == "body")
    next(n for n in body.node if n.op_type == "Sigmoid").op_type = "Relu"  # a gate activation
    bad = tmp_path / "bad.onnx"
    onnx.save(model, str(bad))
    with pytest.raises(ValueError, match="activations"):
        load_lstm(bad)


# ============================================================================ against Pose2Sim


@pytest.mark.parametrize("skeleton", ["HALPE_26", "COCO_17"])
def test_streaming_stage_equals_pose2sim_over_the_whole_sequence(tmp_path, subject, skeleton):
    """Acceptance: frame by frame through the stage == Pose2Sim 0.10.49's augment_markers_all
    (its ONNX models through onnxruntime over the whole trial), within 1e-4 m on every frame and
    marker. COCO_17 (no heels or toes): Pose2Sim adds Neck and Hip and skips the lower model."""
    sk = get_skeleton(skeleton)
    pts = subject.keypoints_for(skeleton)
    height, mass = 1.83, 81.0
    pin, ref, ref_names = _pose2sim_augment(tmp_path, pts, sk.keypoints, height, mass)
    stage = A.MarkerAugmenter(skeleton, A.AugmentSettings(height_m=height, mass_kg=mass))
    assert stage.models == (("lower", "upper") if skeleton == "HALPE_26" else ("upper",))
    outs = [stage(m) for m in _messages(pin, skeleton)]
    got = np.stack([o.points[0] for o in outs])  # (T, E, 3)
    cols = [ref_names.index(n) for n in stage.marker_names]
    assert set(stage.marker_names) <= set(ref_names)
    err = np.abs(got - ref[:, cols])
    print(f"{skeleton}: {len(outs)} frames x {len(cols)} markers, max |stage - Pose2Sim| {err.max() * 1e6:.2f} um")
    assert np.isfinite(got).all()
    assert err.max() < 1e-4
    assert outs[0].skeleton == A.augmented_skeleton_name(stage.models)
    assert A.augmented_marker_names(outs[0].skeleton) == stage.marker_names


def test_offline_sequence_is_the_same_code_and_estimates_the_height_once(subject):
    pts = subject.keypoints_for("HALPE_26")
    h = A.estimate_height(pts, "HALPE_26")
    seq = A.augment_sequence(pts, "HALPE_26", FPS)
    assert seq.height_m == pytest.approx(h)
    stage = A.MarkerAugmenter("HALPE_26", A.AugmentSettings(height_m=h))
    live = []
    for m in _messages(pts, "HALPE_26"):
        live.append(stage(m).points[0])
        stage.prepare()  # as the live loop does after each frame: no change
    assert np.abs(np.stack(live) - seq.markers).max() < 1e-9
    assert seq.names == A.AUGMENTED_MARKERS and seq.confidence.shape == seq.markers.shape[:2]


def test_height_estimate_follows_the_body_size():
    from rtkin.sim.scaled import simulate_scaled_subject

    motion = dataclasses.replace(MOTION, duration_s=1.0)
    base = simulate_scaled_subject({}, motion).keypoints_for("HALPE_26")
    tall = simulate_scaled_subject({b: 1.12 for b in ("pelvis", "femur_r", "femur_l", "tibia_r", "tibia_l",
                                                      "calcn_r", "calcn_l", "torso", "head")}, motion)
    h0, h1 = A.estimate_height(base, "HALPE_26"), A.estimate_height(tall.keypoints_for("HALPE_26"), "HALPE_26")
    assert 1.5 < h0 < 1.9  # the generic model stands 1.69 m
    assert h1 / h0 == pytest.approx(1.12, abs=0.02)
    # COCO_17: no heels (foot = 0.10 m) nor head (nose x 1.5), still a plausible stature
    assert 1.4 < A.estimate_height(base[:, [get_skeleton("HALPE_26").index(n) for n in get_skeleton("COCO_17").keypoints]],
                                   "COCO_17") < 2.0


def test_live_height_is_estimated_then_frozen(subject):
    pts = subject.keypoints_for("HALPE_26")
    p = A.PersonAugmenter("HALPE_26", A.AugmentSettings(height_seconds=1.0))
    for f in range(int(0.5 * FPS)):
        p.step(pts[f], f / FPS)
    assert not p.height_final and np.isfinite(p.height_m)
    for f in range(int(0.5 * FPS), int(1.5 * FPS)):
        p.step(pts[f], f / FPS)
    frozen = p.height_m
    assert p.height_final
    p.step(pts[100] * 1.3, 2.0)  # a different body later does not move it
    assert p.height_m == frozen


def test_a_translated_world_translates_the_markers_exactly(subject):
    """Features are offsets from the hip: shifting the world shifts every marker the same."""
    pts = subject.keypoints_for("HALPE_26")[:60]
    shift = np.array([2.5, -1.0, 0.3])
    a = A.augment_sequence(pts, "HALPE_26", FPS, A.AugmentSettings(height_m=1.75))
    b = A.augment_sequence(pts + shift, "HALPE_26", FPS, A.AugmentSettings(height_m=1.75))
    assert np.abs(b.markers - (a.markers + shift)).max() < 1e-9
    # and the augmented markers sit next to their keypoints (world axes, not OpenSim's), the
    # lateral knee marker on the outer side of the right knee, the medial one inside
    sk = get_skeleton("HALPE_26")
    knee = pts[:, sk.index("RKnee")]
    right = pts[:, sk.index("RHip")] - pts[:, sk.index("LHip")]
    right /= np.linalg.norm(right, axis=-1, keepdims=True)
    lat, med = (a.markers[:, A.AUGMENTED_MARKERS.index(n)] for n in ("r_knee_study", "r_mknee_study"))
    assert np.median(np.linalg.norm(lat - knee, axis=-1)) < 0.12
    assert np.median(np.einsum("ij,ij->i", lat - med, right)) > 0.05


# ============================================================================ state and confidence


def test_state_resets_when_the_track_is_forgotten_or_gone_too_long(subject):
    pts = subject.keypoints_for("HALPE_26")
    msgs = _messages(pts[:120], "HALPE_26")
    stage = A.MarkerAugmenter("HALPE_26", A.AugmentSettings(height_m=1.8))
    for m in msgs[:60]:
        stage(m)
    stage.forget(3)
    after = [stage(m).points[0] for m in msgs[60:90]]
    fresh_stage = A.MarkerAugmenter("HALPE_26", A.AugmentSettings(height_m=1.8))
    fresh = [fresh_stage(m).points[0] for m in msgs[60:90]]
    assert np.abs(np.stack(after) - np.stack(fresh)).max() < 1e-9
    # a gap longer than max_gap_s: the same person id starts again from a fresh state
    late = dataclasses.replace(msgs[90], time_ns=msgs[89].time_ns + int(0.8e9), capture_ns=msgs[89].time_ns + int(0.8e9))
    stage(late)
    assert stage.counters["resets"] == 1


def test_one_bad_hip_keypoint_does_not_move_every_marker(subject):
    sk = get_skeleton("HALPE_26")
    pts = subject.keypoints_for("HALPE_26")[:90]
    clean = [m.points[0] for m in map(A.MarkerAugmenter("HALPE_26", A.AugmentSettings(height_m=1.8)), _messages(pts, "HALPE_26"))]
    hip, rhip = sk.keypoints.index("Hip"), sk.keypoints.index("RHip")
    for k, off, replaced in ((hip, 0.4, 1), (rhip, 0.4, 0)):  # a bad Hip; a bad RHip (the Hip is right)
        bad = pts.copy()
        bad[60, k] += np.array([off, 0.0, 0.0])
        stage = A.MarkerAugmenter("HALPE_26", A.AugmentSettings(height_m=1.8))
        got = [m.points[0] for m in map(stage, _messages(bad, "HALPE_26"))]
        assert stage.counters["origin_replaced"] == replaced
        err = np.linalg.norm(got[60] - clean[60], axis=-1)  # (43,) m
        # one feature off moves the markers it feeds (a few), never all of them by the outlier
        assert np.median(err) < 0.03, (k, np.median(err))
        assert np.abs(np.stack(got[:60]) - np.stack(clean[:60])).max() < 1e-9  # nothing before it changes


def test_confidence_follows_the_anchor_keypoints_and_recovers(subject):
    sk = get_skeleton("HALPE_26")
    pts = subject.keypoints_for("HALPE_26")[:150].copy()
    pts[60:75, sk.index("RKnee")] = np.nan  # the right knee goes missing for 0.25 s
    seq = A.augment_sequence(pts, "HALPE_26", FPS, A.AugmentSettings(height_m=1.8, recovery_s=0.5))
    c = dict(zip(seq.names, seq.confidence.T))
    assert np.isfinite(seq.markers[60:75]).all()  # the missing input is held
    assert (c["r_knee_study"][60:75] == 0).all() and (c["r_thigh1_study"][60:75] == 0).all()
    assert (c["L_knee_study"][60:75] <= 0.5).all()  # same model: its input is held
    assert (c["r_lwrist_study"][60:75] == 1).all()  # the upper model does not read the knee
    assert c["r_knee_study"][30] == 1 and c["r_knee_study"][0] == 0  # warm-up ramp from zero state
    assert 0 < c["r_knee_study"][80] < 1 and c["r_knee_study"][110] == 1  # recovers within 0.5 s


def test_confidence_drops_outside_the_bodies_the_model_was_trained_on(subject):
    pts = subject.keypoints_for("HALPE_26")[:60]
    ok = A.augment_sequence(pts, "HALPE_26", FPS, A.AugmentSettings(height_m=1.8))
    child = A.augment_sequence(pts, "HALPE_26", FPS, A.AugmentSettings(height_m=1.0))  # wrong height
    assert ok.confidence[-1].min() == 1.0
    assert child.confidence[-1].max() == 0.0
    short = A.augment_sequence(pts, "HALPE_26", FPS, A.AugmentSettings(height_m=1.45))  # adult, wrong
    c = dict(zip(short.names, short.confidence[-1]))
    assert 0 < c["r_knee_study"] < 0.9 and c["C7_study"] <= 0.5  # legs too long for 1.45 m: the body model
    assert c["r_lwrist_study"] == 1.0  # ... while the arms are still in proportion
    heavy = A.augment_sequence(pts, "HALPE_26", FPS, A.AugmentSettings(height_m=1.8, mass_kg=200.0))
    assert heavy.confidence[-1].max() == 0.0
    glitch = pts.copy()
    glitch[40:, get_skeleton("HALPE_26").index("LWrist")] += [0.0, 0.0, 2.0]  # 2 m off the body
    g = A.augment_sequence(glitch, "HALPE_26", FPS, A.AugmentSettings(height_m=1.8))
    c = dict(zip(g.names, g.confidence[-1]))
    assert c["L_lwrist_study"] == 0.0 and c["r_lwrist_study"] == 0.5 and c["r_knee_study"] == 1.0


# ============================================================================ IK and settings


def test_live_kinematics_tracks_the_augmented_markers(tmp_path, subject):
    from rtkin.kinematics.ik import IKSettings
    from rtkin.kinematics.live import LiveKinematics, LiveKinematicsSettings

    lk = LiveKinematics(LiveKinematicsSettings(scaling=False, augment=True), IKSettings(), tmp_path)
    assert lk.augmenter is not None
    solver_settings = lk.ik.settings
    names = [m for m, _ in solver_settings.extra_marker_weights]
    assert names == list(A.AUGMENTED_MARKERS)
    kp = dict(solver_settings.marker_weights)
    total = sum(kp.values()) + sum(w for _, w in solver_settings.extra_marker_weights)
    from rtkin.kinematics.ik import ik_marker_weights

    base = ik_marker_weights("HALPE_26")
    assert total == pytest.approx(sum(base[m] for _, m in get_skeleton("HALPE_26").markers))  # one scale factor
    lstm = A.lstm_ik_weights()
    w = dict(solver_settings.extra_marker_weights)
    assert w["r_calc_study"] / w["C7_study"] == pytest.approx(lstm["r_calc_study"] / lstm["C7_study"])
    assert solver_settings.robust_scale_m == A.AUGMENTED_ROBUST_SCALE_M
    outs = []
    for m in _messages(subject.keypoints_for("HALPE_26")[:40], "HALPE_26", pid=0):
        outs += lk(m)
    assert len(outs) == 40 and all(np.isfinite(ja.values).all() for ja in outs)
    solver = lk.ik.solver(0)
    assert solver.n_extra == len(A.AUGMENTED_MARKERS) and solver.used[-solver.n_extra:].any()
    assert lk.augmented.message().skeleton == "LSTM"
    # a scaled model built in memory carries the augmented markers, moved with their bodies
    for _ in lk.ik.switch_model(0, tmp_path / "scaled.osim", FACTORS):
        pass
    scaled = lk.ik.solver(0)
    assert scaled is not solver and scaled.n_extra == solver.n_extra
    knee = scaled.marker_names.index("r_knee_study")
    p0 = solver._positions(solver._q_default)[knee]
    p1 = scaled._positions(scaled._q_default)[knee]
    assert abs(np.linalg.norm(p1 - scaled._positions(scaled._q_default)[scaled.marker_names.index("RHip")])
               / np.linalg.norm(p0 - solver._positions(solver._q_default)[solver.marker_names.index("RHip")])
               - 1.08) < 0.03  # femur scaled by 1.08
    more = lk(_messages(subject.keypoints_for("HALPE_26")[40:41], "HALPE_26", t0_ns=int(40e9 / FPS), pid=0)[0])
    assert more and np.isfinite(more[0].values).all()
    lk.forget(0)
    assert not lk.augmenter._people


def test_ik_extra_markers_need_their_marker_set():
    from rtkin.kinematics.ik import IKSettings

    with pytest.raises(ValueError, match="extra_marker_set"):
        IKSettings(extra_marker_weights=(("C7_study", 5.0),))


def test_augment_setting_auto_resolves_from_the_source_and_maps_from_toml(tmp_path):
    from rtkin.runtime.config import ConfigError, load_config

    assert A.resolve_augment(None, "capture", "HALPE_26") and A.resolve_augment(None, "capture", "COCO_133")
    assert not A.resolve_augment(None, "openpose", "HALPE_26")  # a folder of unknown origin: asked for
    assert not A.resolve_augment(None, "virtual", "HALPE_26") and not A.resolve_augment(None, "none", "HALPE_26")
    assert not A.resolve_augment(None, "capture", "COCO_17")  # arms only: off unless asked
    assert A.resolve_augment(True, "virtual", "COCO_17") and not A.resolve_augment(False, "capture", "HALPE_26")
    p = tmp_path / "run.toml"
    p.write_text("[ik]\naugment = true\n")
    assert load_config(p).ik.augment is True and load_config(p).ik.live().augment is True
    p.write_text("[ik]\nscaling = false\n")
    assert load_config(p).ik.augment is None
    p.write_text('[ik]\naugment = "yes"\n')
    with pytest.raises(ConfigError, match="augment"):
        load_config(p)


def test_a_live_run_publishes_augmented_markers_beside_the_angles(tmp_path):
    """``rtkin run`` with ``[ik] augment = true``: the IK worker publishes each person's augmented
    markers as a Skeleton3D on ``aug/<person>/``, next to their JointAngles."""
    import threading

    from rtkin.clients.subscriber import Subscriber
    from rtkin.core.messages import JointAngles
    from rtkin.demo import synthetic_config
    from rtkin.runtime.config import TransportSettings, angles_endpoints
    from rtkin.runtime.runner import Runner

    cfg = synthetic_config(tmp_path / "out", duration_s=2.5, bystander=False)
    ipc = TransportSettings(keypoints=f"ipc://{tmp_path}/kp.sock", outputs=f"ipc://{tmp_path}/out.sock",
                            angles=f"ipc://{tmp_path}/ja{{worker}}.sock")
    cfg = dataclasses.replace(cfg, transport=ipc, ik=dataclasses.replace(cfg.ik, scaling=False, augment=True,
                                                                         max_workers=1),
                              recording=dataclasses.replace(cfg.recording, enabled=False))
    got: list = []
    stop = threading.Event()

    def listen():
        with Subscriber(angles_endpoints(cfg), topics=("aug/", "ja/"), timeout_s=0.1, settle_s=0.0) as sub:
            while not stop.is_set():
                m = sub.recv()
                if m is not None:
                    got.append(m)

    t = threading.Thread(target=listen, daemon=True)
    t.start()
    try:
        res = Runner(cfg, log=lambda *a: None).run()
    finally:
        stop.set()
        t.join(5)
    assert not res.errors
    aug = [m for m in got if isinstance(m, Skeleton3D)]
    ja = [m for m in got if isinstance(m, JointAngles)]
    assert len(ja) > 20 and len(aug) > 20
    assert all(m.skeleton == "LSTM" and m.n_keypoints == len(A.AUGMENTED_MARKERS) and m.n_people == 1 for m in aug)
    assert {int(m.person_ids[0]) for m in aug} == {ja[0].person_id}
    late = aug[len(aug) // 2:]  # the confidence recovers within the run (a busy machine sheds frames)
    assert all(np.isfinite(m.points).all() for m in late) and max(m.scores.max() for m in late) > 0.5
