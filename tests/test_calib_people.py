"""People-based extrinsic calibration: virtual subject in the demo rig and an 8-camera ring, the real
Pose2Sim demo keypoints against the Qualisys calibration, conventions and bad input.

Measured numbers are printed (``pytest -s``) so that the test log doubles as a report."""

from __future__ import annotations

import time

import numpy as np
import pytest
from scipy.optimize._numdiff import approx_derivative

from rtkin.sim import virtual
from rtkin.calibrate import bundle
from rtkin.core.calibration import Rig, rodrigues
from rtkin.calibrate.errors import NotEnoughDataError
from rtkin.calibrate.people import PeopleCalibrationSettings, align_rig, calibrate_from_people, similarity_transform
from rtkin.calibrate.subject import select_subject
from rtkin.calibrate.world import GENERIC_STATURE_M, BodyFrame, body_frame
from rtkin.io.openpose import read_openpose_folder
from rtkin.core.skeletons import get_skeleton
from rtkin.reconstruct.triangulation import Triangulator

CORRUPTION = virtual.CorruptionSettings(noise_px=3, outlier_rate=0.02, dropout_rate=0.05, swap_rate=0)
HALPE = get_skeleton("HALPE_26").keypoints
# the virtual subject is the generic model, whose stature defines GENERIC_STATURE_M
HEIGHT_M = GENERIC_STATURE_M


def _views(rig, motion, seed=1):
    return virtual.render_views(rig, virtual.simulate_subject(motion), corruption=CORRUPTION, seed=seed)


@pytest.fixture(scope="module")
def demo_views(demo_rig):
    return _views(demo_rig, virtual.MotionSettings(duration_s=10))


@pytest.fixture(scope="module")
def ring_views(ring8):
    return _views(ring8, virtual.MotionSettings(duration_s=10, center_m=(0.0, 0.0), orbit_radius_m=1.5))


def _check_virtual(label, rig, views):
    """Calibrate from subject 0's detections and compare with the true rig three ways."""
    kp = views.keypoints_of(0)
    t0 = time.perf_counter()
    est, rep = calibrate_from_people(kp, rig.names, rig, height_m=HEIGHT_M, reference=rig)
    runtime = time.perf_counter() - t0
    sim = rep.alignment
    # the same world convention applied to the true keypoints, true rig: no alignment at all
    truth_frame = body_frame(views.truth_3d[:, 0], get_skeleton(views.skeleton).keypoints)
    conv = align_rig(est, truth_frame.apply(rig), "none")
    # the true (Qualisys-like) world up to the choice of x axis and origin on the floor
    floor = align_rig(est, rig, "floor")
    truth = views.truth_3d[:, 0]
    e_true = np.nanmean(np.linalg.norm(Triangulator(rig)(kp).points - truth, axis=-1))
    X_est = Triangulator(est)(kp).points
    e_est = np.nanmean(np.linalg.norm(sim.scale * X_est @ sim.R.T + sim.t - truth, axis=-1))
    print(f"\n[{label}] {rep.summary()}\n  runtime {runtime:.2f} s"
          f"\n  similarity: max centre {1000 * sim.max_centre_error_m:.1f} mm, max orientation "
          f"{sim.max_orientation_error_deg:.3f} deg (scale {sim.scale:.4f})"
          f"\n  body-frame convention, no alignment: max centre {1000 * conv.max_centre_error_m:.1f} mm, "
          f"max orientation {conv.max_orientation_error_deg:.3f} deg"
          f"\n  true world up to yaw + floor origin: max centre {1000 * floor.max_centre_error_m:.1f} mm, "
          f"max orientation {floor.max_orientation_error_deg:.3f} deg"
          f"\n  3D error: true rig {1000 * e_true:.2f} mm, recovered rig {1000 * e_est:.2f} mm "
          f"(ratio {e_est / e_true:.3f})")
    assert sim.max_centre_error_m <= 0.02
    assert sim.max_orientation_error_deg <= 1.0
    assert e_est <= 1.10 * e_true
    assert rep.overall_median_px < 4.0 and (rep.n_observations > 500).all()
    # the world fixed from the person (floor, origin, axes, stature) is the truth's to a few cm
    assert rep.scale_source == "height" and abs(sim.scale - 1.0) < 0.01  # metric scale from the stature
    assert conv.max_centre_error_m <= 0.05 and conv.max_orientation_error_deg <= 1.0
    assert floor.max_centre_error_m <= 0.05 and floor.max_orientation_error_deg <= 1.0
    return est, rep


def test_demo_rig_virtual_subject(demo_rig, demo_views):
    _check_virtual("demo rig, HALPE_26", demo_rig, demo_views)


def test_ring_of_eight_virtual_subject(ring8, ring_views):
    _, rep = _check_virtual("8-camera ring, HALPE_26", ring8, ring_views)
    assert rep.up_source == "floor"


def test_swapped_cameras_move_to_each_others_place(demo_rig, demo_views):
    """Convention: the result follows the names given; swapping two cameras' data swaps their poses."""
    kp = demo_views.keypoints_of(0)[[1, 0, 2, 3]]
    intr = [demo_rig[1], demo_rig[0], demo_rig[2], demo_rig[3]]
    est, _ = calibrate_from_people(kp, demo_rig.names, intr, height_m=HEIGHT_M)
    swapped_truth = demo_rig.subset(["cam02", "cam01", "cam03", "cam04"])
    right = align_rig(est, Rig(tuple(c.with_name(n) for c, n in zip(swapped_truth, demo_rig.names))))
    wrong = align_rig(est, demo_rig)
    assert right.max_centre_error_m < 0.02
    assert wrong.max_centre_error_m > 0.5


def test_refine_focal_recovers_wrong_focal_lengths(demo_rig, demo_views):
    kp = demo_views.keypoints_of(0)
    factors = np.array([1.03, 0.98, 1.0, 1.02])
    intr = []
    for cam, f in zip(demo_rig, factors):
        K = cam.K.copy()
        K[0, 0] *= f
        K[1, 1] *= f
        intr.append((K, cam.dist[:4], cam.size))
    fixed = calibrate_from_people(kp, demo_rig.names, intr, height_m=HEIGHT_M, reference=demo_rig)[1]
    refined = calibrate_from_people(kp, demo_rig.names, intr, height_m=HEIGHT_M, reference=demo_rig,
                                    settings=PeopleCalibrationSettings(refine_focal=True))[1]
    recovered = refined.focal_scale * factors
    print(f"\n[refine_focal] focal error {np.round(100 * (recovered - 1), 2)} %, centre error "
          f"{1000 * refined.alignment.max_centre_error_m:.1f} mm (fixed wrong focal: "
          f"{1000 * fixed.alignment.max_centre_error_m:.1f} mm)")
    assert np.abs(recovered - 1).max() < 0.015
    assert refined.alignment.max_centre_error_m < fixed.alignment.max_centre_error_m
    assert refined.alignment.max_centre_error_m < 0.02


# ----------------------------------------------------------------------------- real keypoints


def _real_detections(folder, rig):
    dets = []
    for name in rig.names:
        frames = read_openpose_folder(folder / f"{name}_json", 17)
        dets.append([frames[i] for i in sorted(frames)])
    return dets


def _reference_choice(dets, kp, rig, c, t):
    """Index of the detection of view c closest to the reprojection of the cam03 + cam04 subject,
    with the Qualisys rig: used ONLY to check the reference-free selection."""
    X = Triangulator(rig.subset(["cam03", "cam04"]))(kp[[2, 3], t]).points
    proj = rig[c].project(X)
    err = [np.nanmedian(np.linalg.norm(d[:, :2] - proj, axis=1)) for d in dets[c][t]]
    return int(np.nanargmin(err))


def test_select_subject_with_a_virtual_bystander(demo_rig):
    """cam01/cam02 also see a bystander standing at the back (as in the real demo videos)."""
    subject = virtual.simulate_subject(virtual.MotionSettings(duration_s=5))
    views = virtual.render_views(demo_rig, [subject, virtual.bystander(duration_s=5)], corruption=CORRUPTION, seed=2,
                                 visible_in={1: ["cam01", "cam02"]})
    dets = [[f.keypoints for f in views.frames[c]] for c in range(len(demo_rig))]
    kp = select_subject(dets, demo_rig)
    truth = views.keypoints_of(0)
    right = [sum(np.array_equal(kp[c, t], truth[c, t]) for t in range(views.n_frames)) for c in range(4)]
    print(f"\n[select_subject, virtual bystander] right picks per camera {right} of {views.n_frames}")
    assert min(right) >= 0.98 * views.n_frames


def test_real_demo_keypoints_match_qualisys(demo_rig, demo_keypoints_dir):
    """cam01/cam02 also see a bystander. The subject is picked without any extrinsics
    (:func:`select_subject`: cam03 + cam04 see only the subject; each person tracked in cam01 /
    cam02 is tested by calibrating it with cam03 + cam04, and the track that triangulates
    consistently wins). The Qualisys rig serves only to check the choice and the result."""
    dets = _real_detections(demo_keypoints_dir, demo_rig)
    t0 = time.perf_counter()
    kp = select_subject(dets, demo_rig)
    t_sel = time.perf_counter() - t0
    T = kp.shape[1]
    wrong, missing = {}, {}
    for c in (0, 1):
        picked = [next((i for i, d in enumerate(dets[c][t]) if np.array_equal(d, kp[c, t])), None) for t in range(T)]
        missing[c] = sum(p is None for p in picked)
        wrong[c] = sum(p is not None and p != _reference_choice(dets, kp, demo_rig, c, t) for t, p in enumerate(picked))
    assert all(kp[c, :, :, 2].sum() > 0 for c in (2, 3))
    est, rep = calibrate_from_people(kp, demo_rig.names, demo_rig, reference=demo_rig)
    a = rep.alignment
    rel = a.max_centre_error_m / a.rig_size_m
    print(f"\n[real demo] selection {t_sel:.1f} s: cam01 {wrong[0]} wrong / {missing[0]} unselected, "
          f"cam02 {wrong[1]} wrong / {missing[1]} unselected of {T} frames\n{rep.summary()}"
          f"\n  rig size {a.rig_size_m:.2f} m, max centre error {1000 * a.max_centre_error_m:.0f} mm "
          f"= {100 * rel:.2f} % of the rig size, max orientation error {a.max_orientation_error_deg:.2f} deg")
    assert wrong[0] <= 0.05 * T and wrong[1] <= 0.05 * T
    assert missing[0] <= 0.1 * T and missing[1] <= 0.1 * T
    assert rel <= 0.05
    assert a.max_orientation_error_deg <= 5.0


# ----------------------------------------------------------------------------- pieces


def test_similarity_transform_recovers_a_known_transform(rng):
    src = rng.normal(size=(10, 3))
    R = rodrigues(np.array([0.3, -0.2, 1.1]))
    dst = 2.5 * src @ R.T + np.array([1.0, -2.0, 0.5])
    s, R_est, t = similarity_transform(src, dst)
    assert s == pytest.approx(2.5) and np.allclose(R_est, R) and np.allclose(t, [1.0, -2.0, 0.5])
    s, _, _ = similarity_transform(src, src @ R.T, scale=False)
    assert s == 1.0


def test_align_rig_modes(demo_rig):
    R = rodrigues(np.array([0.0, 0.0, 0.7]))  # a turn about the vertical
    frame = BodyFrame(R, np.array([0.3, -0.2, 0.0]), 1.0)
    moved = frame.apply(demo_rig)
    assert align_rig(moved, demo_rig, "floor").max_centre_error_m < 1e-9
    assert align_rig(moved, demo_rig, "none").max_centre_error_m > 0.1
    scaled = BodyFrame(np.eye(3), np.zeros(3), 0.5).apply(demo_rig)
    a = align_rig(scaled, demo_rig, "similarity")
    assert a.scale == pytest.approx(2.0) and a.max_centre_error_m < 1e-9 and a.max_orientation_error_deg < 1e-6
    assert align_rig(scaled, demo_rig, "floor").max_centre_error_m > 0.1
    with pytest.raises(ValueError):
        align_rig(demo_rig, virtual.ring_rig(5))


def test_bundle_adjustment_jacobian_matches_finite_differences(rng):
    rig = virtual.ring_rig(4, dist=(0.05, -0.02, 0.001, 0.002))
    X = rng.normal(0, 0.5, (15, 3)) + [0, 0, 1]
    cam_idx, pt_idx = np.repeat(np.arange(4), 15), np.tile(np.arange(15), 4)
    rv, tv = np.stack([c.rvec for c in rig]), np.stack([c.tvec for c in rig])
    for refine in (False, True):
        prob = bundle._BAProblem(list(rig), cam_idx, pt_idx, rng.normal(size=(60, 2)), 0, refine)
        x = prob.pack(rv, tv, np.full(4, 0.03), X)
        analytic = prob.jacobian(x, rv, tv).toarray()
        numeric = approx_derivative(lambda p: prob.residuals(p, rv, tv), x, method="3-point")
        assert np.abs(analytic - numeric).max() < 1e-5 * np.abs(numeric).max()
        assert ((prob.sparsity().toarray() > 0) == (numeric != 0)).all()


@pytest.mark.parametrize("skeleton", ["HALPE_26", "COCO_17"])
def test_body_frame_of_the_true_subject(skeleton):
    """The world convention applied to exact keypoints: z up, floor at z = 0, stature -> scale."""
    subj = virtual.simulate_subject(virtual.MotionSettings(duration_s=10, center_m=(0.0, 0.0), orbit_radius_m=1.5))
    names = get_skeleton(skeleton).keypoints
    X = subj.keypoints_for(skeleton)
    f = body_frame(2.0 * X, names, height_m=HEIGHT_M)  # input in half-metres
    tilt = np.degrees(np.arccos(f.R[2, 2]))
    floor_z = (f.origin / 2.0)[2]
    print(f"\n[body frame {skeleton}] up from {f.up_source}: tilt {tilt:.3f} deg, floor {1000 * floor_z:.1f} mm, "
          f"scale {f.scale:.4f} (exact 0.5), stature {f.stature * f.scale:.3f} m")
    assert f.up_source == "floor" and tilt < (0.2 if skeleton == "HALPE_26" else 1.0)
    assert abs(floor_z) < 0.01
    assert f.scale == pytest.approx(0.5, rel=0.005)
    world = f.apply_points(2.0 * X)
    lowest = 0.012 if skeleton == "HALPE_26" else 0.0806  # sole contact vs ankle height, m
    assert abs(np.nanmedian(world[..., 2].min(axis=1)) - lowest) < 0.01  # feet on the floor
    hips = [names.index("LHip"), names.index("RHip")]
    assert np.allclose(np.nanmean(world[:, hips, :2], axis=(0, 1)), 0.0, atol=1e-9)  # origin below the hips
    d = np.median(np.linalg.norm(X[:, names.index("LShoulder")] - X[:, names.index("RShoulder")], axis=-1))
    g = body_frame(2.0 * X, names, known_distance=("LShoulder", "RShoulder", d))
    assert g.scale == pytest.approx(0.5, rel=1e-9) and g.scale_source == "distance"


# ----------------------------------------------------------------------------- bad input


def test_fewer_than_two_cameras(demo_rig, demo_views):
    kp = demo_views.keypoints_of(0)[:1]
    with pytest.raises(NotEnoughDataError, match="at least 2 cameras"):
        calibrate_from_people(kp, ["cam01"], [demo_rig[0]])


def test_a_camera_that_never_sees_the_person(demo_rig, demo_views):
    kp = demo_views.keypoints_of(0)[:, :60].copy()
    kp[2] = 0.0  # cam03 sees nobody
    with pytest.raises(NotEnoughDataError, match=r"camera 'cam03' has 0 keypoints") as e:
        calibrate_from_people(kp, demo_rig.names, demo_rig)
    assert isinstance(e.value, ValueError) and "at least 60" in str(e.value)
    kp[2, :2] = demo_views.keypoints_of(0)[2, :2]  # a glimpse is not enough either
    with pytest.raises(NotEnoughDataError, match="cam03"):
        calibrate_from_people(kp, demo_rig.names, demo_rig)


def test_malformed_input(demo_rig, demo_views):
    kp = demo_views.keypoints_of(0)[:, :30]
    with pytest.raises(ValueError, match=r"\(C, T, K, 3\)"):
        calibrate_from_people(kp[..., :2], demo_rig.names, demo_rig)
    with pytest.raises(ValueError, match="camera_names"):
        calibrate_from_people(kp, demo_rig.names[:3], demo_rig)
    with pytest.raises(ValueError, match="skeleton"):
        calibrate_from_people(kp, demo_rig.names, demo_rig, skeleton="COCO_17")
    with pytest.raises(ValueError, match="reference_camera"):
        calibrate_from_people(kp, demo_rig.names, demo_rig, settings=PeopleCalibrationSettings(reference_camera="camX"))
    with pytest.raises(NotEnoughDataError, match="anchor"):
        select_subject([[np.zeros((2, 17, 3))] * 5] * 3, demo_rig.subset(["cam01", "cam02", "cam03"]))
