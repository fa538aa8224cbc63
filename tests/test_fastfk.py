"""The compiled forward kinematics (rtkin.kinematics.fastfk) against OpenSim's own."""

from __future__ import annotations

import numpy as np
import pytest

from rtkin.kinematics import ik as ik_module
from rtkin.kinematics.augment import augmented_ik_settings
from rtkin.kinematics.fastfk import KinematicTree, Unsupported
from rtkin.kinematics.ik import IKSettings, IKSolver
from rtkin.kinematics.model import apply_scale, template_model, model_path_for
from rtkin.core.skeletons import get_skeleton


def _random_poses(solver: IKSolver, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    lo = np.where(np.isfinite(solver._lo), solver._lo, -1.5)
    hi = np.where(np.isfinite(solver._hi), solver._hi, 1.5)
    return rng.uniform(lo, hi, size=(n, lo.size))


def _worst(solver: IKSolver, poses: np.ndarray) -> tuple[float, float]:
    dp = dj = 0.0
    for q in poses:
        P, J = solver.tree.evaluate(q)
        P_ref, J_ref = solver._fk_opensim(q)
        dp, dj = max(dp, float(np.abs(P - P_ref).max())), max(dj, float(np.abs(J - J_ref).max()))
    return dp, dj


@pytest.mark.parametrize("skeleton,augmented", [("HALPE_26", False), ("HALPE_26", True), ("COCO_17", False)])
def test_markers_and_jacobian_equal_opensim(skeleton, augmented):
    settings = IKSettings(skeleton=skeleton)
    if augmented:
        settings = augmented_ik_settings(settings)
    solver = IKSolver(settings)
    assert solver.tree is not None
    dp, dj = _worst(solver, _random_poses(solver, 40, seed=3))
    assert dp < 1e-9 and dj < 1e-8, (dp, dj)
    # beyond the coordinate ranges too (the knee's splines extrapolate)
    q = solver._q_default.copy()
    knee = solver._qidx[solver.coordinate_names.index("knee_angle_r")]
    for v in (-0.6, 2.5, 3.4):
        q[knee] = v
        P, _ = solver.tree.evaluate(q)
        assert np.abs(P - solver._fk_opensim(q)[0]).max() < 1e-6


def test_a_scaled_model_equals_opensim():
    """Non-uniform scaling rescales offsets, markers and the knee's translation splines."""
    settings = IKSettings(skeleton="HALPE_26")
    model = template_model(model_path_for(settings), get_skeleton("HALPE_26")).clone()
    factors = {"pelvis": 0.9, "femur_r": 1.15, "femur_l": 1.12, "tibia_r": 0.85, "tibia_l": 0.88,
               "torso": 1.1, "humerus_r": 0.95, "ulna_r": 1.2, "radius_r": 1.2}
    apply_scale(model, factors)
    solver = IKSolver(settings, model=model)
    assert solver.tree is not None
    dp, dj = _worst(solver, _random_poses(solver, 30, seed=5))
    assert dp < 1e-9 and dj < 1e-8, (dp, dj)


def test_an_unsupported_model_falls_back_to_opensim(monkeypatch):
    """A component the kernel does not reproduce: the IK runs on OpenSim's kinematics, same answer."""
    calls = []

    def refuse(*a, **k):
        calls.append(1)
        raise Unsupported("test: not supported")

    monkeypatch.setattr(ik_module, "KinematicTree", refuse)
    monkeypatch.setattr(ik_module, "_TREE_OK", {})
    settings = IKSettings(skeleton="HALPE_26")
    slow = IKSolver(settings)
    assert calls and slow.tree is None
    monkeypatch.undo()
    fast = IKSolver(settings)
    assert fast.tree is not None
    rng = np.random.default_rng(9)
    q = np.clip(fast._q_default + rng.uniform(-0.3, 0.3, fast._q_default.size), fast._lo, fast._hi)
    # the same pose's markers as observations: both solvers find it back from the default pose
    x = slow._fk_opensim(q)[0]
    w = np.where(np.isfinite(x).all(-1), slow.weights, 0.0)
    a = slow.solve_markers(x, w)
    b = fast.solve_markers(x, w)
    assert a.marker_rms_m < 0.02 and b.marker_rms_m < 0.02
    assert np.abs(a.values - b.values).max() < 1e-3


def test_a_kernel_that_disagrees_is_refused():
    solver = IKSolver(IKSettings(skeleton="HALPE_26"))
    tree = solver.tree
    tree.stations = tree.stations + 1e-4  # markers 0.1 mm off
    with pytest.raises(Unsupported, match="differs from OpenSim"):
        tree.check(solver._fk_opensim, solver._lo, solver._hi)


def test_a_constraint_is_unsupported():
    import opensim as osim

    settings = IKSettings(skeleton="HALPE_26")
    model = template_model(model_path_for(settings), get_skeleton("HALPE_26")).clone()
    cs = model.getCoordinateSet()
    c = osim.CoordinateCouplerConstraint()
    c.setName("couple_knees")
    names = osim.ArrayStr()
    names.append("knee_angle_r")
    c.setIndependentCoordinateNames(names)
    c.setDependentCoordinateName("knee_angle_l")
    c.setFunction(osim.LinearFunction(1.0, 0.0))
    model.addConstraint(c)
    state = model.initSystem()
    assert cs.getSize() > 0
    with pytest.raises(Unsupported, match="constraints"):
        KinematicTree(model, state, [], np.zeros((0, 3)), {})


@pytest.mark.parametrize("augmented", [False, True])
def test_the_compiled_solve_equals_the_python_loop(augmented, monkeypatch):
    """rtkin.kinematics.lm.lm_solve runs IKSolver's Levenberg-Marquardt loop in one call: on a
    stream with noise, occlusions and a jump (cold start, warm frames, speed bounds, outlier
    drops, the posture and pelvis priors, robust weights) it gives the Python loop's angles."""
    from rtkin.sim import virtual

    truth = virtual.simulate_subject(virtual.MotionSettings(duration_s=1.5, fps=60.0, seed=3))
    rng = np.random.default_rng(0)
    pts = truth.keypoints + rng.normal(0.0, 0.01, truth.keypoints.shape)
    pts[20:26, 9] = np.nan  # a wrist hidden
    pts[40:43, 15] += 0.4  # an ankle 40 cm off for 3 frames
    settings = IKSettings(skeleton="HALPE_26")
    if augmented:
        settings = augmented_ik_settings(settings)
    runs = {}
    for compiled in (True, False):
        monkeypatch.setattr(IKSolver, "compiled_lm", compiled)
        s = IKSolver(settings)
        n, noise = s.n_extra, np.random.default_rng(1)
        out = []
        for f in range(len(pts)):
            x, w = s.markers_from_points(pts[f])
            if n and s.last_model_markers is not None:  # augmented markers: the last pose's, 2 cm noise
                x[-n:] = s.last_model_markers[-n:] + noise.normal(0.0, 0.02, (n, 3))
                w[-n:] = s.weights[-n:]
            out.append(s.solve_markers(x, w, f / 60.0).values)
        runs[compiled] = np.array(out)
    assert np.abs(runs[True] - runs[False]).max() < 1e-7
