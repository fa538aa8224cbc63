"""Subject scaling: known factors recovered from the virtual subject's keypoints, scaled model IK."""

from __future__ import annotations

import numpy as np
import pytest

from rtkin.sim import virtual
from rtkin.kinematics.ik import IKSettings, IKSolver
from rtkin.core.messages import Skeleton3D
from rtkin.kinematics.scaling import (BODY_SEGMENTS, OnlineScaler, ScalingSettings, model_segment_lengths, scale_factors,
                           scale_model, segment_lengths)
from rtkin.sim.scaled import simulate_scaled_subject

FPS = 30.0
MOTION = virtual.MotionSettings(duration_s=10.0, fps=FPS, seed=0)
#: Known body dimensions of the scaled virtual subject (bodies not named keep 1).
TRUE = {"pelvis": 0.95, "sacrum": 0.95, "femur_r": 1.08, "femur_l": 1.08, "tibia_r": 1.05, "tibia_l": 1.05,
        "humerus_r": 1.08, "humerus_l": 1.08, "torso": 1.03, "ulna_r": 0.97, "radius_r": 0.97, "hand_r": 0.97,
        "ulna_l": 0.97, "radius_l": 0.97, "hand_l": 0.97}


@pytest.fixture(scope="module")
def scaled_truth():
    return simulate_scaled_subject(TRUE, MOTION)


@pytest.fixture(scope="module")
def scaled_result(scaled_truth):
    return scale_factors(scaled_truth.keypoints)


def test_generic_subject_gives_unit_factors():
    truth = virtual.simulate_subject(MOTION)
    res = scale_factors(truth.keypoints)
    assert res.n_frames > 100 and not res.missing
    for body, f in res.factors.items():
        assert f == pytest.approx(1.0, abs=0.01), body


def test_model_lengths_are_neutral_pose():
    L = model_segment_lengths()
    # arms down: the shoulder-marker-to-elbow distance of the neutral pose, not the default
    # (arms-out) pose's 0.27 m
    assert L["humerus_r"] == pytest.approx(0.298, abs=0.002)
    assert L["humerus_l"] == pytest.approx(L["humerus_r"], rel=1e-6)
    assert L["femur_r"] == pytest.approx(0.383, abs=0.002)
    assert L["pelvis_width"] == pytest.approx(0.2108, abs=0.001)


def test_known_factors_recovered_within_3_percent(scaled_result):
    for body in BODY_SEGMENTS:
        assert scaled_result.factors[body] == pytest.approx(TRUE.get(body, 1.0), rel=0.03), body
    # and in fact much closer on clean keypoints
    err = max(abs(scaled_result.factors[b] / TRUE.get(b, 1.0) - 1) for b in BODY_SEGMENTS)
    assert err < 0.01


def test_segment_lengths_skip_flexed_frames(scaled_truth):
    s = ScalingSettings()
    L = segment_lengths(scaled_truth.keypoints, "HALPE_26", s)
    assert all(np.isfinite(v) for v in L.values())
    # with every frame (squat included) the knee-ankle distance shrinks (marker off the knee axis)
    loose = segment_lengths(scaled_truth.keypoints, "HALPE_26", ScalingSettings(max_flexion_deg=180))
    assert loose["tibia_r"] < L["tibia_r"]


def test_scaled_model_ik_fits_scaled_subject(scaled_truth, scaled_result, tmp_path):
    path = scale_model(None, scaled_result.factors, tmp_path / "scaled.osim")
    assert path.is_file()
    solver = IKSolver(IKSettings(model=str(path)))
    rms = []
    for f in range(0, scaled_truth.keypoints.shape[0], 3):
        rms.append(solver.solve(scaled_truth.keypoints[f], time_s=f / FPS).marker_rms_m)
    assert np.median(rms) < 0.002 and np.percentile(rms, 95) < 0.002
    # the generic model cannot fit this subject as well
    generic = IKSolver(IKSettings())
    g = [generic.solve(scaled_truth.keypoints[f], time_s=f / FPS).marker_rms_m
         for f in range(0, scaled_truth.keypoints.shape[0], 3)]
    assert np.median(g) > 3 * np.median(rms)


def test_scale_model_mass(tmp_path):
    import opensim as osim

    path = scale_model(None, TRUE, tmp_path / "m.osim", mass_kg=80.0)
    m = osim.Model(str(path))
    s = m.initSystem()
    assert m.getTotalMass(s) == pytest.approx(80.0, rel=1e-6)
    assert m.getMarkerSet().contains("RElbow")


def _messages(points, fps, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    T, K, _ = points.shape
    for f in range(T):
        p = points[f] + rng.normal(0, noise, (K, 3))
        yield Skeleton3D(time_ns=int(f * 1e9 / fps), capture_ns=int(f * 1e9 / fps), skeleton="HALPE_26",
                         person_ids=np.array([3]), points=p[None], scores=np.full((1, K), 0.9, np.float32),
                         reproj_error_px=np.full((1, K), 2.0, np.float32), n_views=np.full((1, K), 4, np.uint8))


def test_online_scaler(scaled_truth, tmp_path):
    stage = OnlineScaler(ScalingSettings(seconds=3.0), out_path=tmp_path / "online.osim")
    assert stage.status()["state"] == "collecting"
    out = None
    for msg in _messages(scaled_truth.keypoints, FPS, noise=0.003):
        r = stage(msg)
        if r is not None:
            out = r
            break
    assert out is not None and out.is_file()
    st = stage.status()
    assert st["state"] == "done" and st["frames"] == st["needed"] == 90 and st["person_id"] == 3
    for body in BODY_SEGMENTS:
        assert st["factors"][body] == pytest.approx(TRUE.get(body, 1.0), rel=0.03), body


@pytest.fixture(scope="module")
def live_skeletons(scaled_truth):
    """The scaled subject through the live pipeline: demo rig, 3 px noise, 2 % outliers, 5 % dropouts."""
    from rtkin.reconstruct.pipeline import Pipeline

    rig = virtual.demo_rig()
    cs = virtual.CorruptionSettings(noise_px=3.0, outlier_rate=0.02, dropout_rate=0.05)
    views = virtual.render_views(rig, scaled_truth, corruption=cs, seed=11)
    return Pipeline(rig, "HALPE_26", clock_ns=None).run(virtual.arrival_order(views, seed=2))


def test_live_pipeline_scaling(live_skeletons, tmp_path):
    stage = OnlineScaler(ScalingSettings(seconds=3.0), out_path=tmp_path / "live.osim")
    out = None
    for sk in live_skeletons:
        out = stage(sk) or out
    st = stage.status()
    assert out is not None and st["state"] == "done", st
    errs = {b: st["factors"][b] / TRUE.get(b, 1.0) - 1 for b in BODY_SEGMENTS}
    print("\nlive scaling, factor / truth - 1 [%]:", {b: round(100 * e, 2) for b, e in errs.items()})
    for body, e in errs.items():
        assert abs(e) < 0.03, body


def test_online_scaler_in_the_background_gives_the_same_model():
    """background=True computes in a worker process; the caller gets the path from a later call."""
    from rtkin.sim import virtual as _v
    from rtkin.core.messages import Skeleton3D as _S

    subj = _v.simulate_subject(_v.MotionSettings(duration_s=4.0, fps=30.0))
    msgs = [_S(int(t * 1e9), int(t * 1e9), "HALPE_26", [0], subj.keypoints[i][None], np.ones((1, 26)),
               np.ones((1, 26)), np.full((1, 26), 4)) for i, t in enumerate(subj.time_s)]
    fg = OnlineScaler(ScalingSettings(seconds=1.0))
    bg = OnlineScaler(ScalingSettings(seconds=1.0), background=True)
    path_fg = next(p for p in (fg(m) for m in msgs) if p is not None)
    path_bg = None
    import time as _t

    deadline = _t.monotonic() + 120
    i = 0
    while path_bg is None and _t.monotonic() < deadline:
        path_bg = bg(msgs[min(i, len(msgs) - 1)])
        i += 1
        if i > len(msgs):
            _t.sleep(0.1)
    assert path_bg is not None and bg.result is not None and path_fg.is_file() and path_bg.is_file()
    for body, f in fg.result.factors.items():
        assert abs(bg.result.factors[body] - f) < 1e-9


def test_switch_model_in_steps_equals_loading_the_saved_model(scaled_truth, scaled_result, tmp_path):
    """The live switch rebuilds the scaled model in memory in short steps; it must solve exactly
    like the saved file, and continue from the person's pose (no cold start at the switch)."""
    from rtkin.kinematics.ik_stage import IKStage
    from rtkin.core.messages import AngleFlag

    path = scale_model(None, scaled_result.factors, tmp_path / "scaled.osim", mass_kg=70.0)
    msgs = list(_messages(scaled_truth.keypoints[:40], FPS, noise=0.002))
    a, b = IKStage(IKSettings()), IKStage(IKSettings())
    for m in msgs[:20]:
        a(m), b(m)
    a.use_model(3, path)
    steps = list(b.switch_model(3, path, scaled_result.factors, mass_kg=70.0))
    assert len(steps) >= 3  # spread over several frame gaps
    assert b.solver(3).scaled and b.solver(3).model_path == path
    assert b.solver(3).model.getTotalMass(b.solver(3).state) == pytest.approx(70.0, rel=1e-6)
    iters = []
    for m in msgs[20:]:
        ja, jb = a(m)[0], b(m)[0]
        np.testing.assert_allclose(jb.values, ja.values, atol=1e-6)
        assert not (jb.flags & AngleFlag.UNSCALED).any()
        iters.append(b.solver(3).iterations)
    assert iters[0] <= 2 * max(1, int(np.median(iters)))  # warm: the first frame is not a cold solve


def test_model_stature_scales_with_the_model():
    from rtkin.kinematics.scaling import model_stature

    h = model_stature()
    assert h == pytest.approx(1.685, abs=0.005)  # crown marker over the lowest foot marker
    assert model_stature(factors={b: 1.1 for b in BODY_SEGMENTS}) == pytest.approx(1.1 * h, rel=1e-6)


def test_coco17_scaling_uses_the_corrected_markers_mirrors_and_height(scaled_truth):
    """COCO_17 has no feet and no head-top keypoint: the feet take height / generic stature when
    the height is given; the right femur is measured with the corrected RHip marker (Pose2Sim's
    Coco17 RHip sits at knee height, which would clip the factor)."""
    from rtkin.kinematics.scaling import model_stature

    pts = scaled_truth.keypoints_for("COCO_17")
    true_stature = model_stature(factors=TRUE)
    plain = scale_factors(pts, "COCO_17", ScalingSettings(skeleton="COCO_17"))
    for body in ("femur_r", "femur_l", "tibia_r", "humerus_r", "pelvis"):
        assert plain.factors[body] == pytest.approx(TRUE[body], rel=0.03), body
    assert plain.factors["calcn_r"] == 1.0 and any("foot_r" in w for w in plain.warnings)
    given = scale_factors(pts, "COCO_17", ScalingSettings(skeleton="COCO_17", height_m=true_stature))
    assert given.factors["calcn_r"] == pytest.approx(true_stature / model_stature(), rel=1e-6)
    assert given.stature_m == pytest.approx(true_stature, rel=0.03)
    assert not any("configured height" in w for w in given.warnings)
    wrong = scale_factors(pts, "COCO_17", ScalingSettings(skeleton="COCO_17", height_m=1.3 * true_stature))
    assert any("configured height" in w for w in wrong.warnings)


@pytest.mark.parametrize("skeleton", ["HALPE_26", "COCO_17"])
def test_scaled_kinematic_tree_gives_opensims_scaled_neutral_pose(skeleton):
    """The neutral-pose markers of a scaled model come from the compiled kinematic tree scaled in
    memory: the same points as OpenSim's Model.scale on a copy, for uneven per-body factors."""
    from pathlib import Path

    from rtkin.core import assets
    from rtkin.core.skeletons import get_skeleton
    from rtkin.kinematics import scaling as sc
    from rtkin.kinematics.model import template_model

    sk = get_skeleton(skeleton)
    model = template_model(Path(assets.model_path()), sk)
    assert sc._neutral_tree(model, sk) is not None  # the fast path is taken
    rng = np.random.default_rng(3)
    factors = {b: float(rng.uniform(0.7, 1.3)) for b in BODY_SEGMENTS}
    fast, ref = sc._neutral_points(model, sk, factors), sc._neutral_points_osim(model, sk, factors)
    assert np.array_equal(np.isnan(fast), np.isnan(ref))
    assert np.nanmax(np.abs(fast - ref)) < 1e-9
    generic = sc._neutral_points(model, sk, None)
    assert np.nanmax(np.abs(fast - generic)) > 0.05  # the factors do move the markers
