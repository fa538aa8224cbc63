"""An IK that stays physiological: speed bounds, a posture prior that knows which way is up
(whatever the heading, and not for a lying body), and angles that do not depend on where the
stream started (real demo keypoints)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rtkin.core.frames import OSIM_FROM_WORLD
from rtkin.kinematics.ik import IKSettings, IKSolver
from rtkin.kinematics.ik_guards import _pelvis_pitch
from rtkin.sim import virtual

FPS = 60.0


@pytest.fixture(scope="module")
def truth():
    return virtual.simulate_subject(virtual.MotionSettings(duration_s=3.0, fps=FPS, seed=0))


def test_a_glitch_cannot_move_a_joint_faster_than_a_body_can(truth):
    s = IKSolver(IKSettings(gate_m=math.inf, outlier_m=math.inf, max_marker_rms_m=1.0))  # the speed bounds alone
    names = s.coordinate_names
    for f in range(30):
        prev = s.solve(truth.keypoints[f], None, f / FPS).values
    pts = truth.keypoints[30].copy()
    k = s.skeleton.index
    for n in ("RAnkle", "RHeel", "RBigToe", "RSmallToe"):
        pts[k(n)] += np.array([0.0, 0.0, 0.35])  # the right foot 35 cm up for one frame
    sol = s.solve(pts, None, 30 / FPS)
    step = np.abs(sol.values - prev)
    rot = [i for i, n in enumerate(names) if not n.endswith(("_tx", "_ty", "_tz"))]
    assert step[rot].max() <= 17.5 / FPS + 1e-6
    assert s.bounded  # the data asked for more
    free = IKSolver(IKSettings(gate_m=math.inf, outlier_m=math.inf, max_marker_rms_m=1.0, max_joint_speed_rad_s=1e9,
                               max_root_speed_rad_s=1e9, max_root_speed_m_s=1e9))
    for f in range(30):
        p = free.solve(truth.keypoints[f], None, f / FPS).values
    assert np.abs(free.solve(pts, None, 30 / FPS).values - p)[rot].max() > 1.5 * 17.5 / FPS  # it would have


def test_the_posture_prior_is_heading_independent_and_leaves_a_lying_body_alone(truth):
    f = 60
    pitch = []
    for heading in (0.0, 90.0, 200.0):
        a = math.radians(heading)
        rz = np.array([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0], [0.0, 0.0, 1.0]])
        s = IKSolver()
        v = s.solve(truth.keypoints[f] @ rz.T, None, 0.0).values
        n = s.coordinate_names
        pitch.append(_pelvis_pitch(np.array([v[n.index(c)] for c in ("pelvis_tilt", "pelvis_list", "pelvis_rotation")])))
    assert np.ptp(np.degrees(pitch)) < 0.5
    lying = IKSolver(IKSettings(max_marker_rms_m=1.0)).solve(truth.keypoints[f] @ OSIM_FROM_WORLD.T, None, 0.0)
    assert lying.marker_rms_m < 0.002  # the prior fades out: the body is fitted lying down


def _demo_run(demo_rig, demo_keypoints_dir, start: int, scaling: bool):
    from rtkin.capture.keypoints import OpenPoseSourceSettings, openpose_frames
    from rtkin.kinematics.live import LiveKinematics, LiveKinematicsSettings
    from rtkin.reconstruct.pipeline import Pipeline

    frames = {c: openpose_frames(OpenPoseSourceSettings(), demo_keypoints_dir, c, "COCO_17", FPS) for c in demo_rig.names}
    events = sorted(((f.capture_ns + 1_000_000 + 1000 * i, f) for i, c in enumerate(demo_rig.names)
                     for f in frames[c] if f.frame_index >= start), key=lambda e: e[0])
    live = LiveKinematics(LiveKinematicsSettings(scaling=scaling), IKSettings(skeleton="COCO_17"), None,
                          log=lambda m: None)
    out = {}
    for sk in Pipeline(demo_rig, "COCO_17", clock_ns=None).run(events):
        for ja in live(sk):
            out[int(round(sk.time_ns * FPS / 1e9))] = ja
        if live.pending:
            live.step()
    return out


def test_real_demo_keypoints_upright_pelvis_fit_and_start_frame_independence(demo_rig, demo_keypoints_dir):
    """The Pose2Sim demo subject (MoveNet COCO-17, balancing on one leg with a strong sideways
    lean): the pelvis's forward tilt stays near upright, the fit within 30 mm, and the angles do
    not depend on where the stream started (same model; live scaling makes the models differ)."""
    base = _demo_run(demo_rig, demo_keypoints_dir, 0, scaling=False)
    fr = sorted(base)
    pitch = np.degrees([_pelvis_pitch(np.array([base[f].value(c) for c in ("pelvis_tilt", "pelvis_list",
                                                                            "pelvis_rotation")])) for f in fr])
    rms = np.array([base[f].marker_rms_m for f in fr])
    print(f"\nreal demo: pelvis forward tilt median {np.median(pitch):.1f} deg (max step "
          f"{np.abs(np.diff(pitch)).max():.1f}), marker RMS median {np.median(rms) * 1e3:.1f} mm")
    assert abs(np.median(pitch)) < 10.0 and np.median(rms) < 0.030
    names = base[fr[0]].names
    observed = [i for i, fl in enumerate(base[fr[-1]].flags) if not fl & 128 and not names[i].endswith(("_tx", "_ty", "_tz"))]
    for start in (1, 5, 30):
        later = _demo_run(demo_rig, demo_keypoints_dir, start, scaling=False)
        common = [f for f in later if f in base and f >= start + FPS]
        d = np.degrees(np.abs(np.array([later[f].values - base[f].values for f in common])))[:, observed]
        assert d.max() < 1.0, (start, names[observed[int(np.argmax(d.max(0)))]], d.max())


def _rot(axis, deg: float) -> np.ndarray:
    """Rotation matrix about ``axis`` by ``deg`` (Rodrigues)."""
    k = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
    K = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    a = math.radians(deg)
    return np.eye(3) + math.sin(a) * K + (1 - math.cos(a)) * K @ K


def test_a_leaning_pelvis_tilts_no_faster_than_the_root_bound_whatever_the_coordinates(truth):
    """Leaning 30 deg sideways, a turn of the data about the body's own (leaning) long axis must
    not tilt the pelvis faster than ``max_root_speed_rad_s``: the coordinate bounds alone let
    ``pelvis_rotation`` (about that axis) move at the joint speed."""
    from rtkin.kinematics.ik_guards import _pelvis_rotation, _rotvec

    st = IKSettings(gate_m=math.inf, outlier_m=math.inf, max_marker_rms_m=1.0)
    s = IKSolver(st)
    pts = truth.keypoints[60]
    c = np.nanmean(pts, axis=0)
    lean = _rot([1.0, 0.0, 0.0], 30.0)  # world z up: a sideways lean for a subject facing +x or -x
    base = (pts - c) @ lean.T + c
    for f in range(10):
        v0 = s.solve(base, None, f / FPS).values
    turned = (base - c) @ _rot(lean @ [0.0, 0.0, 1.0], 20.0).T + c  # 20 deg about the leaning long axis
    v1 = s.solve(turned, None, 10 / FPS).values
    n = s.coordinate_names
    pel = [n.index(c) for c in ("pelvis_tilt", "pelvis_list", "pelvis_rotation")]
    th = np.degrees(_rotvec(_pelvis_rotation(v1[pel]) @ _pelvis_rotation(v0[pel]).T))  # OpenSim ground, y up
    assert math.hypot(th[0], th[2]) <= math.degrees(st.max_root_speed_rad_s) / FPS + 1e-3
    assert abs(th[1]) > 8.0  # it did turn about the vertical (fast turns stay allowed)


def _wrist_hidden_then_flexed(truth, f0: int = 60):
    """A solver that saw frame ``f0`` for 10 frames, then 3 with the right wrist hidden; and that
    frame with the elbow flexed 60 deg more (the wrist moved), to feed next. Returns (solver,
    flexed points (K, 3), next frame index)."""
    s = IKSolver()
    k = s.skeleton.index
    pts = truth.keypoints[f0].copy()
    sh, el, wr = pts[k("RShoulder")], pts[k("RElbow")], pts[k("RWrist")]
    flexed = pts.copy()
    flexed[k("RWrist")] = el + _rot(np.cross(el - sh, wr - el), 60.0) @ (wr - el)
    hidden = pts.copy()
    hidden[k("RWrist")] = np.nan
    t = 0
    for p in [pts] * 10 + [hidden] * 3:
        s.solve(p, None, t / FPS)
        t += 1
    return s, flexed, t


def test_a_marker_dropped_as_an_outlier_again_and_again_pulls_a_wrong_pose_back(truth):
    """The right wrist hides while the elbow flexes 60 deg more, then reappears 20+ cm from the
    model's wrist: dropped as an outlier, it used to be dropped for ever (the elbow, unobserved,
    never moved). Now the pose takes it back within a few frames, within the speed bounds."""
    s, flexed, t = _wrist_hidden_then_flexed(truth)
    elbow = s.coordinate_names.index("elbow_flex_r")
    before = s.solve(flexed, None, t / FPS)
    m = s.marker_names.index("RWrist")
    assert before.marker_errors_m[m] > s.settings.outlier_m  # dropped
    errs = []
    for _ in range(15):
        t += 1
        sol = s.solve(flexed, None, t / FPS)
        errs.append(sol.marker_errors_m[m])
    assert errs[-1] < 0.02 and s.used[m]
    assert math.degrees(sol.values[elbow] - before.values[elbow]) > 40.0
    assert s.counters["unlocked"] > 0


def test_a_wrong_pose_is_pulled_back_even_while_a_real_outlier_elsewhere_stays_dropped(truth):
    """As above, but from the frame the wrist reappears the nose is also 30 cm off (a real
    outlier: no pose puts the nose there without moving the rest of the body). Both are dropped
    again and again; the nose stays dropped, and it must not keep the wrist locked out (it did:
    the pose was only pulled back when every locked marker could be taken back at once)."""
    s, flexed, t = _wrist_hidden_then_flexed(truth)
    flexed[s.skeleton.index("Nose")] += np.array([0.3, 0.0, 0.0])
    wrist, nose = s.marker_names.index("RWrist"), s.marker_names.index("Nose")
    for _ in range(20):
        sol = s.solve(flexed, None, t / FPS)
        t += 1
    assert sol.marker_errors_m[wrist] < 0.02 and s.used[wrist]
    assert sol.marker_errors_m[nose] > 0.2 and not s.used[nose]


def test_an_arm_cornered_in_another_basin_glides_back_at_the_speed_limit(truth):
    """With augmented markers, an arm left cornered at its joint ranges (here put there: flexed
    180 deg, adducted -150 deg) while the subject's arm hangs: its wrist keypoint and the
    augmented wrist markers are all dropped as outliers, and no local solve leaves that basin
    (the synthetic live run stayed there for 1 s). The initial poses are tried with the locked
    wrist back, and the published arm glides to the re-acquired pose no faster than a joint
    moves, then fits."""
    from rtkin.kinematics.augment import augmented_ik_settings

    s = IKSolver(augmented_ik_settings(IKSettings(skeleton="HALPE_26")))
    names = s.coordinate_names
    qi = {n: s._qidx[names.index(n)] for n in ("arm_flex_r", "arm_add_r", "arm_rot_r", "elbow_flex_r")}
    x0, w = s.markers_from_points(truth.keypoints[60])
    s.solve_markers(x0, w, 0.0)  # the pose of frame 60 (keypoints only)
    q_true = s._q.copy()
    x = s._positions(q_true)  # every marker, augmented ones included, where that pose puts them
    w_all = s.weights.copy()
    wrist = s.marker_names.index("RWrist")
    corner = q_true.copy()
    corner[qi["arm_flex_r"]], corner[qi["arm_add_r"]] = math.pi, math.radians(-150.0)
    s._q = corner
    prev = corner[s._qidx].copy()
    rot = [i for i, n in enumerate(names) if not n.endswith(("_tx", "_ty", "_tz"))]
    steps = []
    for f in range(1, 41):
        sol = s.solve_markers(x, w_all, f / FPS)
        steps.append(np.abs(sol.values - prev)[rot].max())
        prev = sol.values
    assert s.counters["reacquired"] >= 1
    assert max(steps) <= 17.5 / FPS + 1e-6  # no jump: the glide is a movement a body can make
    assert sol.marker_errors_m[wrist] < 0.01 and s.used[wrist]
    assert abs(math.degrees(sol.values[names.index("arm_flex_r")] - q_true[qi["arm_flex_r"]])) < 2.0
