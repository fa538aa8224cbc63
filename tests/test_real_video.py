"""Real video, end to end: ``rtkin demo --pose blazepose`` on the Pose2Sim demo videos.

The four demo videos (100 frames each at 60 fps, installed with pose2sim) run through the demo's
own code path (``run_video_demo``: one BlazePose capture process per camera, the sync node, an IK
worker, the recorder; ipc endpoints instead of the default ports), then the recording is checked:
the KeypointFrames the cameras published, the live Skeleton3D and JointAngles (IK on Pose2Sim's
generic model with its BlazePose markers), the TRC and MOT files. The subject is not walking: they
step, lunge and turn with the arms swinging (knees bent up to ~70 deg), so the angle checks are
anatomical ranges and real motion, not a gait pattern.

cam01 and cam02 also see a bystander at the back of the room. "The subject, never the bystander"
is checked per camera against the other three: the subject triangulated from the other views,
projected into the camera, lands on the camera's own detection.

RTMPose with its real weights is checked on the same videos when rtmlib's cache holds them
(skipped here: they cannot be downloaded in tests). The person-detector test runs rtkin's RTMPose
detector path with the real YOLOX-nano from
``../shared/models`` (read-only; skipped when absent). About 30 s of wall time in all on 2 cores
(BlazePose ~20-35 ms per 1080x1920 frame, 400 frames); skipped with the reason when mediapipe is
not installed.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest

from conftest import require_blazepose
from rtkin.core import assets
from rtkin.core.skeletons import BLAZEPOSE

FPS = 60.0
SHARED_MODELS = Path(os.environ.get("RTKIN_SHARED_MODELS", Path(__file__).resolve().parents[2] / "shared" / "models"))
YOLOX_NANO = SHARED_MODELS / "yolox_nano_8xb8-300e_humanart-40f6f0d0.onnx"

#: keypoints the checks use (the body: the face and hand points add nothing here)
BODY = ("LShoulder", "RShoulder", "LElbow", "RElbow", "LWrist", "RWrist", "LHip", "RHip", "LKnee", "RKnee",
        "LAnkle", "RAnkle", "LHeel", "RHeel", "LBigToe", "RBigToe")

#: median reprojection error over keypoints and frames, px: measured 10.4 px (MoveNet's COCO-17
#: keypoints of the same videos: 9.9 px); the range catches a broken pixel mapping (tens of px) or
#: a silently perfect fake (~0)
REPROJ_RANGE_PX = (4.0, 16.0)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """``rtkin demo --pose blazepose`` as the CLI runs it (run_video_demo: one capture process per
    camera, sync, IK worker, recorder), on loopback-free ipc endpoints."""
    require_blazepose()
    from rtkin.demo import run_video_demo, video_config
    from rtkin.runtime.config import RunConfig, TransportSettings

    tmp = tmp_path_factory.mktemp("real_demo")
    transport = TransportSettings(keypoints=f"ipc://{tmp}/kp.sock", outputs=f"ipc://{tmp}/out.sock",
                                  angles=f"ipc://{tmp}/ja{{worker}}.sock")
    cfg = video_config(tmp / "out", pose="blazepose", base=dataclasses.replace(RunConfig(), transport=transport))
    lines: list[str] = []
    result, summary = run_video_demo(cfg, log=lines.append)
    return cfg, result, summary, lines


@pytest.fixture(scope="module")
def blazepose_frames(demo_run):
    """Per camera, the recorded KeypointFrames (what the capture processes published)."""
    from rtkin.io.recording import INPUT, RecordingReader

    frames = [r.message for r in RecordingReader(demo_run[2]["recording"]) if r.kind == INPUT]
    return {cam: sorted((f for f in frames if f.camera == cam), key=lambda f: f.frame_index)
            for cam in assets.DEMO_CAMERAS}


@pytest.fixture(scope="module")
def keypoints(blazepose_frames, demo_rig):
    """``(C, T, K, 3)`` px + score, the single detection of each camera and frame (zeros if none)."""
    T = max(len(v) for v in blazepose_frames.values())
    kp = np.zeros((len(demo_rig), T, BLAZEPOSE.n_keypoints, 3))
    for c, cam in enumerate(demo_rig.names):
        for f in blazepose_frames[cam]:
            if f.keypoints.shape[0]:
                kp[c, f.frame_index] = f.keypoints[0]
    return kp


@pytest.fixture(scope="module")
def skeletons(demo_run):
    """The live sync node's Skeleton3D outputs, as recorded."""
    from rtkin.core.messages import Skeleton3D
    from rtkin.io.recording import recorded_outputs

    return recorded_outputs(demo_run[2]["recording"], Skeleton3D)


@pytest.fixture(scope="module")
def joint_angles(demo_run):
    """The live IK worker's JointAngles, as recorded."""
    from rtkin.core.messages import JointAngles
    from rtkin.io.recording import recorded_outputs

    return recorded_outputs(demo_run[2]["recording"], JointAngles)


def test_demo_runs_the_real_videos_end_to_end(demo_run):
    cfg, result, summary, lines = demo_run
    assert not result.errors, result.errors
    assert "BlazePose full" in lines[0] and "every frame" in lines[0]
    for cam in assets.DEMO_CAMERAS:
        rep = result.reports[f"source:{cam}"]
        assert rep["sent"] == 100 and rep["provider"] == "MediaPipe TFLite (CPU)", rep
    sync = result.reports["sync"]["sync"]
    assert sync["framesets"] == 100 and sync["late"] <= 2  # a camera > 30 s behind the others: late
    with_people, total = summary["frames_with_people"]
    assert total == 100 and with_people >= 95
    assert Path(summary["recording"]).is_file()
    assert len(summary["trc"]) == 1 and len(summary["mot"]) == 1  # one subject: one TRC and one MOT
    trc = Path(summary["trc"][0]).read_text().splitlines()
    assert "LKnee" in trc[3] and "Hip" in trc[3]  # BLAZEPOSE marker names (+ the derived Hip)
    mot = Path(summary["mot"][0]).read_text()
    assert "knee_angle_r" in mot and "pelvis_tilt" in mot


def test_subject_found_in_almost_every_frame_of_every_camera(blazepose_frames):
    for cam, frames in blazepose_frames.items():
        assert len(frames) == 100, cam
        found = [f for f in frames if f.keypoints.shape[0] == 1 and f.keypoints[0, :, 2].mean() > 0.5]
        assert len(found) >= 0.95 * len(frames), (cam, len(found))
        assert all(f.keypoints.shape[0] <= 1 for f in frames)  # BlazePose: one person at most
        assert all(f.skeleton == "BLAZEPOSE" and f.keypoints.shape[1:] == (33, 3) for f in frames)


def test_each_camera_sees_the_subject_never_the_bystander(keypoints, demo_rig):
    """Leave one camera out: the subject triangulated from the other three lands on its detection."""
    from rtkin.reconstruct.triangulation import triangulate

    body = BLAZEPOSE.indices(BODY)
    height_px = []
    for c, cam in enumerate(demo_rig.names):
        others = keypoints[:, :, body].copy()
        others[c, ..., 2] = 0.0  # (C, T, B, 3) without camera c
        res = triangulate(demo_rig, others)
        proj = demo_rig[cam].project(res.points)  # (T, B, 2)
        own = keypoints[c][:, body]
        mirrored = BLAZEPOSE.swap_lr(keypoints[c], axis=-2)[:, body]  # the same person, left/right swapped

        def per_frame(det):  # (T,) median px distance, NaN where not seen
            ok = (det[..., 2] > 0.5) & np.isfinite(proj).all(-1)
            d = np.where(ok, np.linalg.norm(proj - det[..., :2], axis=-1), np.nan)
            return np.nanmedian(np.where(ok.any(1, keepdims=True), d, 0.0), axis=1) + np.where(ok.any(1), 0, np.nan)

        direct, swapped = per_frame(own), per_frame(mirrored)
        assert np.isfinite(direct).mean() >= 0.95, cam
        best = np.fmin(direct, swapped)
        swaps = int(np.sum((direct > 60.0) & (swapped < 0.5 * direct)))  # clearly mirrored, not just side-on
        # measured: median 11-29 px per camera (cam01 carries a ~20 px bias, as with MoveNet's
        # keypoints), worst frame ~60 px. BlazePose mirrors the body (left <-> right) in 28
        # consecutive frames of cam02 while the subject turns (~350 px off as is, ~13 px mirrored;
        # rtkin's triangulation drops that view then). The bystander stands ~300 px from the
        # subject in cam01/cam02, whichever way round.
        assert np.nanmedian(direct) < 40.0, (cam, np.nanmedian(direct))
        assert np.nanmax(best) < 120.0, (cam, np.nanmax(best), int(np.nanargmax(best)))
        height_px.append(np.nanmedian(np.ptp(own[..., 1], axis=1)))
        print(f"{cam}: leave-one-out distance median {np.nanmedian(direct):.1f} px, worst frame "
              f"{np.nanmax(best):.1f} px, left/right mirrored in {swaps} frames")
    assert min(height_px) > 400  # the detections are a whole body (~800 px tall), not a face or a hand


def test_reprojection_error_is_reported_and_in_range(skeletons, capsys):
    with_subject = [sk for sk in skeletons if sk.n_people]
    assert len(with_subject) >= 95
    assert {int(i) for sk in with_subject for i in sk.person_ids} == {0}  # one track, never switched
    err = np.stack([sk.reproj_error_px[0] for sk in with_subject])  # (T, K) px
    views = np.stack([sk.n_views[0] for sk in with_subject])
    med = float(np.nanmedian(err))
    with capsys.disabled():
        print(f"\nBlazePose on the Pose2Sim demo videos: median reprojection error {med:.2f} px, "
              f"median views per keypoint {np.median(views):.0f}")
    assert REPROJ_RANGE_PX[0] <= med <= REPROJ_RANGE_PX[1], med
    assert np.median(views[:, BLAZEPOSE.indices(BODY)]) >= 3


def test_ik_marker_rms_and_plausible_joint_angles(joint_angles):
    angles = joint_angles  # the live IK on the generic model: 1.67 s of video is too short to scale
    assert len(angles) >= 95
    rms_mm = np.array([ja.marker_rms_m for ja in angles]) * 1e3
    print(f"\nBlazePose demo, live IK (generic model): marker RMS median {np.nanmedian(rms_mm):.1f} mm, "
          f"p90 {np.nanpercentile(rms_mm, 90):.1f} mm")
    assert np.nanmedian(rms_mm) <= 30.0, np.nanmedian(rms_mm)

    def deg(name):
        return np.degrees([ja.value(name) for ja in angles])

    for side in "rl":
        knee = deg(f"knee_angle_{side}")
        assert -10.0 <= knee.min() and knee.max() <= 140.0, (side, knee.min(), knee.max())  # anatomical range
        assert np.ptp(knee) >= 20.0, side  # the knees bend and extend: they move
        hip = deg(f"hip_flexion_{side}")
        assert -30.0 <= hip.min() and hip.max() <= 120.0, (side, hip.min(), hip.max())
    tilt = deg("pelvis_tilt")
    assert -45.0 <= tilt.min() and tilt.max() <= 30.0, (tilt.min(), tilt.max())
    assert abs(np.median(deg("pelvis_list"))) <= 20.0


def test_real_yolox_nano_finds_the_subject_box(keypoints, demo_rig, tmp_path):
    """rtkin's detector path (PoseEstimator.detect: rtmlib's YOLOX pre-processing, our session,
    end2end output, thresholds) with the real YOLOX-nano on real frames."""
    if not YOLOX_NANO.is_file():
        pytest.skip(f"real YOLOX-nano not found at {YOLOX_NANO} (../shared/models beside the repo)")
    import cv2

    from onnx_models import make_rtmpose_model
    from rtkin.capture.models import model_spec
    from rtkin.capture.rtmpose import PoseEstimator

    pose = make_rtmpose_model(tmp_path / "pose.onnx", K=26, input_size=(192, 256))
    est = PoseEstimator(model_spec("HALPE_26", "lightweight", pose, YOLOX_NANO), ["cpu"], intra_op_threads=1)
    assert est.det_model.model_input_size == (416, 416)
    body = BLAZEPOSE.indices(BODY)
    for c, (cam, path) in enumerate(assets.demo_videos().items()):
        cap = cv2.VideoCapture(str(path))
        for t in (10, 60):
            cap.set(cv2.CAP_PROP_POS_FRAMES, t)
            ok, img = cap.read()
            assert ok
            boxes, scores = est.detect(img)
            assert len(boxes) >= 1 and np.all(np.diff(scores) <= 0)
            # the subject's extent from BlazePose (calibration pixels -> frame pixels)
            dx = (demo_rig[cam].size[0] - img.shape[1]) / 2
            pts = keypoints[c, t][body]
            pts = pts[pts[:, 2] > 0.5, :2] - [dx, 0]
            x0, y0 = pts.min(0)
            x1, y1 = pts.max(0)
            best = boxes[0]
            # the best box holds the subject's body (with a margin) and is about their size
            assert best[0] <= x0 + 30 and best[1] <= y0 + 60 and best[2] >= x1 - 30 and best[3] >= y1 - 30, (cam, t, best)
            assert (best[3] - best[1]) < 1.6 * (y1 - y0) and scores[0] > 0.5, (cam, t, best, scores[0])
        cap.release()


def test_rtmpose_real_weights_find_the_subject(demo_rig):
    """RTMPose lightweight with rtmlib's real weights, when its cache holds them (no download in tests)."""
    import cv2

    from rtkin.capture.models import ModelNotAvailableError, model_spec, resolve_model
    from rtkin.capture.rtmpose import PoseEstimator

    spec = model_spec("HALPE_26", "lightweight")
    try:
        resolve_model(spec.pose_model)
        resolve_model(spec.det_model)
    except ModelNotAvailableError as e:
        pytest.skip(f"RTMPose weights are not in rtmlib's cache and tests do not download: {str(e).splitlines()[0]}")
    from rtkin.core.skeletons import HALPE_26

    est = PoseEstimator(spec, ["cpu"], det_frequency=1)
    body = HALPE_26.indices(BODY[:12])
    for cam, path in assets.demo_videos().items():
        cap = cv2.VideoCapture(str(path))
        found = 0
        for _ in range(20):
            ok, img = cap.read()
            assert ok
            kpts, scores = est(img)
            best = int(np.argmax(scores.mean(1))) if len(scores) else None
            if best is not None and np.median(scores[best, body]) > 0.5 and np.ptp(kpts[best, body, 1]) > 400:
                found += 1
        cap.release()
        assert found >= 19, (cam, found)
