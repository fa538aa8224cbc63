"""Per-person, per-frame incremental inverse kinematics on Pose2Sim's OpenSim model.

:class:`IKStage` turns a :class:`~rtkin.core.messages.Skeleton3D` into one
:class:`~rtkin.core.messages.JointAngles` per person. It keeps one :class:`IKSolver` per person id;
each solver owns a clone of the OpenSim model (``Model_Pose2Sim_simple.osim`` by default, with
the skeleton's Pose2Sim marker set added; loaded once per process) and warm-starts every frame
from that person's previous pose.

The cost
--------
Markers are the skeleton's keypoints (``Skeleton.markers``; HALPE_26: 22, eyes and ears have
none), rotated from the world frame (z up) to OpenSim ground (y up) with
:data:`rtkin.core.frames.OSIM_FROM_WORLD` - the only place rtkin applies it. Marker ``m`` weighs
``w_m`` = Pose2Sim's IK-setup weight (shoulders and hips 2, nose and head 0.1, neck 0.2, the rest
1) x usability (finite, score >= ``min_score``, reprojection <= ``max_reproj_px``; a point a
filter held through a gap counts ``held_weight``). The solved pose minimises the marker distances
``|p_m(q) - x_m|`` (``p_m``: model marker by forward kinematics) over the coordinates ``q``
within their ranges.

Two solvers
-----------
- ``method="gauss_newton"`` (default): Levenberg-Marquardt on the forward kinematics and the
  analytic marker Jacobian ``dp/dq``, compiled from the model by
  :mod:`rtkin.kinematics.fastfk` (~12 us for 22 markers, ~26 us for 65, against 0.15 / 0.31 ms
  through OpenSim's bindings: ``realizePosition``, ``getLocationInGround`` per marker,
  ``SimbodyMatterSubsystem.calcStationJacobian``; checked against OpenSim once per model
  structure, which remains the fallback). It converges quadratically (2-4 iterations per frame) and gives the truth back on clean keypoints (< 0.02 deg without the
  smoothing prior). For noisy live data it adds, each measured on the virtual subject through
  the live pipeline: a Cauchy loss (``robust_scale_m``) so one bad marker cannot drag a limb;
  a random-walk prior towards the previous frame (``smoothing``) for the weakly observed
  directions (pelvis tilt vs lumbar and hip flexion; arm rotation with a nearly straight
  elbow); an innovation gate (``gate_m``) that drops a marker far from its predicted position
  (left/right mix-ups that triangulate consistently, smeared by the filter); and a re-solve
  without markers still ``outlier_m`` off after the solve.
- ``method="opensim"``: OpenSim's ``InverseKinematicsSolver`` as Pose2Sim runs it (plain
  weighted least squares), rebuilt every frame - a one-row ``TimeSeriesTableVec3`` ->
  ``MarkersReference`` -> solver -> ``assemble()``; the solver copies its reference, so it cannot
  be fed new rows - warm-started from the previous state. NaN markers are skipped by its
  assembler. The assembler's L-BFGS stops early along the badly conditioned pelvis-tilt / lumbar
  / hip-flexion direction: on clean keypoints it leaves ~3 mm marker error and 5-10 deg
  coordinate errors at ``accuracy`` 1e-3 (0.9 mm, 2-5 deg at 1e-5; no better below), for 3-5 ms
  (1e-3) or 6-10 ms (1e-5) per frame. Kept for comparison with Pose2Sim.

Observability
-------------
With HALPE_26 / COCO_17 keypoints the forearm rotation (``pro_sup``) is not observable (the
wrist keypoint lies near its axis) and drifts with the arm rotation, and the toes (``mtp``: two
toe keypoints 5 cm from the joint) only add noise to the ankle (ankle RMSE 4.8 -> 3.0 deg when
held); both are held at their model default (``fixed_coordinates``), and so is every
coordinate that moves no marker (wrist flexion/deviation: the hand has no keypoint). They are
reported with quality 0 and :attr:`~rtkin.core.messages.AngleFlag.FILLED`. The shoulder coordinates
are bounded to their model range (unclamped in the model), so an arm rotation cannot wind up.

Quality data
------------
A coordinate depends on the markers nearest to its joint: the first two marker-carrying
segments at and below the joint's child body (an axial rotation shows only on the segment after
the one it turns) and the nearest marker-carrying segment at or above its parent body; e.g.
``knee_angle_r`` on RKnee, RAnkle and RHeel, ``arm_rot_r`` on the shoulders, Neck, RElbow and
RWrist, ``pelvis_*`` on the hips, knees, shoulders and Neck. ``quality`` is the fraction of them
that are used and good (>= ``min_views`` cameras, reprojection <= ``high_reproj_px``, not held);
flags mark FEW_VIEWS, HIGH_REPROJ and HELD dependency markers, and the model's scaling state
(UNSCALED, HEIGHT_ONLY, PARTIAL; see :mod:`rtkin.kinematics.live`); coordinates the markers
cannot observe are held at their default and flagged UNOBSERVABLE.

The settings (:class:`IKSettings`, re-exported here) live in :mod:`rtkin.kinematics.ik_settings`,
the physiological guards (gate, unlock, posture and pelvis priors, pelvis tilt bound) in
:mod:`rtkin.kinematics.ik_guards`, the compiled forward kinematics in :mod:`rtkin.kinematics.fastfk`.
"""

from __future__ import annotations

import collections
import math
import statistics
from pathlib import Path
from typing import NamedTuple

import numpy as np

from rtkin.core.frames import OSIM_FROM_WORLD
from rtkin.core.messages import AngleFlag
from rtkin.core.skeletons import Skeleton, get_skeleton
from rtkin.kinematics.fastfk import KinematicTree, Unsupported
from rtkin.kinematics.ik_guards import PhysiologicalGuards, marker_rms
from rtkin.kinematics.ik_settings import METHODS, PELVIS_PITCH, IKSettings, ik_marker_weights
from rtkin.kinematics.lm import gauss_newton_python, lm_solve
from rtkin.kinematics.model import (_dependencies, _osim, _Topology, coordinate_q_indices, model_path_for,
                                   template_model)

__all__ = ["METHODS", "PELVIS_PITCH", "IKSettings", "IKSolution", "IKError", "IKSolver", "ik_marker_weights"]

_MAX_FAILURES = 3  # bad frames in a row before the next one starts cold
_STRUCTURAL: dict[tuple, np.ndarray] = {}  # structurally unobservable coordinates per model structure
_TREE_OK: dict[tuple, bool] = {}  # the compiled forward kinematics matched OpenSim, per model structure


_MIN_DT_S, _MAX_DT_S = 1e-3, 1.0  # bounds of the frame interval used by the smoothing prior, s
_EMPTY_Q = np.zeros(0, dtype=np.int64)


class IKError(RuntimeError):
    """One frame could not be solved (too few markers, no convergence, non-finite result)."""


class IKSolution(NamedTuple):
    """One frame's IK result.

    Attributes:
        values: ``(Q,)`` coordinate values in model order, rad / m.
        marker_rms_m: RMS distance between used observed and model markers, m.
        marker_errors_m: ``(M,)`` distance per marker (``IKSolver.marker_names`` order), m;
            NaN where the marker was not observed (it is reported for unused finite ones).
    """

    values: np.ndarray
    marker_rms_m: float
    marker_errors_m: np.ndarray


# ============================================================================ solver


class IKSolver(PhysiologicalGuards):
    """Warm-started per-frame IK of one person on one OpenSim model.

    Args:
        settings: IK settings (skeleton, model, method, weights, iterations...).
        model_path: model file overriding ``settings.model`` (e.g. a scaled model).

    Attributes:
        coordinate_names: ``(Q,)`` model coordinate names in model order (40 for the Pose2Sim
            simple model).
        marker_names: ``(M,)`` OpenSim marker names used, in ``skeleton.markers`` order, then
            the ``n_extra`` extra markers (``settings.extra_marker_weights``).
        marker_points: ``(M,)`` point index (into ``skeleton.points``, then ``n_points + e`` for
            extra marker ``e``) of each marker.
        weights: ``(M,)`` base marker weights (Pose2Sim IK setup + overrides).
        solved: ``(Q,)`` bool, False for coordinates held at their default (fixed / unobservable).
        dependencies: per coordinate, ``(n,)`` marker indices its quality and flags depend on.
        scaled: False while the model is the generic (unscaled) one.
        iterations: solver iterations of the last solve (Gauss-Newton) or 0.
        evaluations: forward-kinematics evaluations of the last solve (the cost driver).
        used: ``(M,)`` bool, the markers the last solution used (usable and not outliers).
    """

    #: opensim method: weight of the coordinate goals holding fixed coordinates near their default
    #: (they stay within 0.05 deg; weight 10 costs 1.5x the time, 100 nearly 2x)
    _HELD_COORDINATE_WEIGHT = 1.0
    #: ``(M,)`` solves in a row each marker ended more than ``outlier_m`` off (None = none yet)
    _outlier_run: np.ndarray | None = None
    #: a re-acquired pose the published one glides to (None = none)
    _glide_to: np.ndarray | None = None
    #: the solve runs compiled (:mod:`rtkin.kinematics.lm`) when the kinematics are; False = the
    #: Python loop (the reference it is tested against)
    compiled_lm = True

    def __init__(self, settings: IKSettings = IKSettings(), model_path: str | Path | None = None, model=None):
        osim = _osim()
        self.settings = settings
        self.skeleton: Skeleton = get_skeleton(settings.skeleton)
        path = model_path_for(settings, model_path)
        self.model_path = path
        #: AngleFlag scaling bit of this model (UNSCALED, HEIGHT_ONLY, PARTIAL; 0 = scaled to the subject)
        self.scale_flag = int(AngleFlag.UNSCALED)
        #: body -> uniform factor this model was scaled by from the generic one (None = generic)
        self.scale_factors: dict[str, float] | None = None
        if model is None:  # else: a model built in memory (with the skeleton's markers), owned from now on
            model = template_model(path, self.skeleton, settings.extra_marker_set).clone()  # ~5 ms, not ~90
        self.model = model
        self.state = model.initSystem()
        if settings.method == "gauss_newton" and self.state.getNQ() != self.state.getNU():
            raise ValueError(f"{path.name} has quaternion joints (nq != nu): use method='opensim'")
        self._matter = model.getMatterSubsystem()
        self._J = osim.Matrix()
        cs = model.getCoordinateSet()
        self._coords = [cs.get(i) for i in range(cs.getSize())]
        self.coordinate_names: tuple[str, ...] = tuple(c.getName() for c in self._coords)
        self._rotational = np.array([c.getMotionType() == 1 for c in self._coords])
        self._qidx = coordinate_q_indices(self._coords, self.state)
        self._setup_markers(model)
        topo = self._topology(model)
        self.dependencies, observable = _dependencies(topo, self.coordinate_names)
        unknown = set(settings.fixed_coordinates) - set(self.coordinate_names)
        if unknown:
            raise ValueError(f"IKSettings.fixed_coordinates: no coordinates {sorted(unknown)} in {path.name}")
        fixed = np.array([n in settings.fixed_coordinates for n in self.coordinate_names])
        self.solved = observable & ~fixed
        if settings.method == "gauss_newton":
            self.solved &= ~self._structurally_unobservable()
        self._free = np.sort(self._qidx[self.solved])  # q indices solved
        nq = self.state.getNQ()
        self._lo, self._hi = np.full(nq, -np.inf), np.full(nq, np.inf)
        root = [n for n in self.coordinate_names if topo.joint_bodies[n][0] == "ground"]
        override = {n: (lo, hi) for n, lo, hi in settings.ranges}
        for c, qi in zip(self._coords, self._qidx):
            if c.get_clamped() or (settings.bound_to_range and c.getName() not in root):
                self._lo[qi], self._hi[qi] = override.get(c.getName(), (c.getRangeMin(), c.getRangeMax()))
        self._q_default = self.state.getQ().to_numpy().copy()
        self._speed = np.full(nq, settings.max_joint_speed_rad_s)  # (nq,) per state q, rad/s or m/s
        heading = root[2] if len(root) >= 3 else None  # turning about the vertical is a joint's speed
        for c, qi in zip(self._coords, self._qidx):
            if c.getMotionType() != 1:
                self._speed[qi] = settings.max_root_speed_m_s
            elif c.getName() in root and c.getName() != heading:
                self._speed[qi] = settings.max_root_speed_rad_s
        self.bounded = False  # the last solve ended on a speed bound
        self._posture_on = True  # False while a cold solve looks for the global fit
        self._failures = 0  # frames in a row without an acceptable solution
        self._recent_rms: collections.deque[float] = collections.deque(maxlen=30)  # marker RMS of the last solves, m
        #: ``bounded`` frames (a speed bound held the solution), ``reacquired`` (a cold re-solve won)
        self.counters = {"bounded": 0, "reacquired": 0, "unlocked": 0}
        self._posture_w = np.zeros(nq)  # (nq,) posture prior weight per state q (towards 0)
        self._posture_fade = np.zeros(nq)  # (nq,) information at which it has faded out, 0 = never
        self._pitch_w = 0.0  # weight of the anterior pelvis tilt prior
        self._pitch_pos: dict[bytes, np.ndarray] = {}  # positions of the pelvis angles per free set
        self._posture_of: dict[bytes, tuple] = {}  # the posture prior's set-up per free set
        self._lm_setup: dict[bytes, tuple] = {}  # the compiled solve's set-up per free set
        pel = ("pelvis_tilt", "pelvis_list", "pelvis_rotation")
        self._pel_q = (np.array([self._qidx[self.coordinate_names.index(n)] for n in pel])
                       if all(n in self.coordinate_names for n in pel) else None)
        for n, wp, fade in settings.posture_prior:
            if n == PELVIS_PITCH:
                self._pitch_w = wp
            elif n in self.coordinate_names:  # a model without the coordinate: nothing to hold
                qi = self._qidx[self.coordinate_names.index(n)]
                self._posture_w[qi], self._posture_fade[qi] = wp, fade
        self._root_q = np.sort(self._qidx[[self.coordinate_names.index(n) for n in root]])
        self._root_body = topo.joint_bodies[root[0]][1] if root else ""
        self._topo = topo
        self._q: np.ndarray | None = None  # previous solution (state Q order), None = cold
        self.iterations = 0
        self.evaluations = 0
        self._dt = 1.0 / 60.0
        self.used = np.zeros(len(self.marker_names), dtype=bool)
        self._gated_run = np.zeros(len(self.marker_names), dtype=np.int64)  # consecutive gated frames
        self._gated = np.zeros(len(self.marker_names), dtype=bool)  # gated off in the current frame
        self._markers_prev: np.ndarray | None = None  # (M, 3) model markers of the last solution
        self._markers_prev2: np.ndarray | None = None  # ... and of the one before, m
        self._obs_prev: np.ndarray | None = None  # observed markers of the last two solves, m
        self._obs_prev2: np.ndarray | None = None
        self._dt_prev = 1.0 / 60.0
        #: the last solution's model markers and the observed markers, ``(M, 3)`` OpenSim ground m
        #: (NaN = not observed), and its time, s (None before the first solution)
        self.last_model_markers: np.ndarray | None = None
        self.last_observed_markers: np.ndarray | None = None
        self.last_time_s: float | None = None
        #: the compiled forward kinematics (:mod:`rtkin.kinematics.fastfk`); None = through OpenSim
        self.tree: KinematicTree | None = self._kinematic_tree(model, topo) if settings.method == "gauss_newton" else None
        if settings.method == "opensim":
            self._setup_opensim(osim)
        if self.tree is not None:  # the compiled solve loads (or compiles, once) now, not at the first frame
            self._lm(self._q_default, self.tree.evaluate(self._q_default)[0], np.ones(self.n_markers), self._free,
                     1, 0.0, None)
            self.evaluations = 0

    # ------------------------------------------------------------------ construction helpers
    def _setup_markers(self, model) -> None:
        osim = _osim()
        sk = self.skeleton
        ms = model.getMarkerSet()
        missing = [m for _, m in sk.markers if not ms.contains(m)]
        if missing:
            raise ValueError(f"model {self.model_path.name} has no markers {missing} of {sk.marker_set}")
        extra = self.settings.extra_marker_weights
        missing = [m for m, _ in extra if not ms.contains(m)]
        if missing:
            raise ValueError(f"model {self.model_path.name} has no extra markers {missing}")
        self.marker_names: tuple[str, ...] = tuple(m for _, m in sk.markers) + tuple(m for m, _ in extra)
        # extra marker e is point n_points + e (after the skeleton's points)
        self.marker_points = np.concatenate([sk.indices([p for p, _ in sk.markers]),
                                             sk.n_points + np.arange(len(extra))]).astype(np.intp)
        self.n_extra = len(extra)
        table = ik_marker_weights(sk.name)
        table.update(dict(self.settings.marker_weights))
        self.weights = np.array([table.get(m, 1.0) for m in self.marker_names[:len(sk.markers)]]
                                + [w for _, w in extra], dtype=np.float64)
        self._markers = [ms.get(m) for m in self.marker_names]
        model.realizePosition(self.state)
        self._mobods = osim.SimTKArrayMobilizedBodyIndex()
        self._stations = osim.SimTKArrayVec3()
        xyz = []
        for mk in self._markers:
            base = osim.PhysicalFrame.safeDownCast(mk.getParentFrame().findBaseFrame())
            self._mobods.push_back(base.getMobilizedBodyIndex())
            st = mk.findLocationInFrame(self.state, base)
            self._stations.push_back(st)
            xyz.append(st.to_numpy())
        self._station_xyz = np.array(xyz, dtype=np.float64).reshape(-1, 3)  # (M, 3) in the body frames, m

    def _kinematic_tree(self, model, topo: _Topology) -> KinematicTree | None:
        """The model's compiled forward kinematics, checked against OpenSim once per model
        structure and process (None: a component it does not reproduce; OpenSim is used)."""
        key = (self.coordinate_names, self.marker_names, topo.marker_body)
        if _TREE_OK.get(key) is False:
            return None
        try:
            tree = KinematicTree(model, self.state, topo.marker_body, self._station_xyz,
                                 {n: int(i) for n, i in zip(self.coordinate_names, self._qidx)})
            if key not in _TREE_OK:
                try:
                    tree.check(self._fk_opensim, self._lo, self._hi)
                finally:
                    self._set_q(self._q_default)
        except Unsupported:
            _TREE_OK[key] = False
            return None
        _TREE_OK[key] = True
        return tree

    def _structurally_unobservable(self) -> np.ndarray:
        """``(Q,)`` True for coordinates the markers cannot tell apart from others at any pose
        (e.g. ``neck_bending`` with COCO_17: one head marker, the nose, leaves the rotation
        about the neck-nose axis free): while the marker Jacobian over the solved coordinates is
        rank-deficient at the default pose and at two others, the coordinate with the largest
        component in the default pose's null direction is held. Cached per model structure."""
        key = (self.skeleton.name, self.coordinate_names, self.marker_names,
               tuple(self.solved))
        if key in _STRUCTURAL:
            return _STRUCTURAL[key].copy()
        solved = self.solved.copy()
        rng = np.random.default_rng(0)
        q0 = self.state.getQ().to_numpy().copy()
        poses = [q0]
        for _ in range(2):
            q = q0.copy()
            q[self._qidx] += rng.uniform(-0.3, 0.3, self._qidx.size)
            poses.append(q)
        out = np.zeros(len(self.coordinate_names), dtype=bool)
        try:
            for _ in range(len(self.coordinate_names)):
                cols = self._qidx[solved]
                nulls = []
                for q in poses:
                    self._set_q(q)
                    self._matter.calcStationJacobian(self.state, self._mobods, self._stations, self._J)
                    J = self._J.to_numpy()[:, cols]
                    _, sv, vt = np.linalg.svd(J, full_matrices=True)
                    sv = np.concatenate([sv, np.zeros(max(0, cols.size - sv.size))])
                    nulls.append(vt[sv < 1e-7 * max(sv.max(), 1e-12)])
                if any(n.shape[0] == 0 for n in nulls):
                    break
                k = np.flatnonzero(solved)[int(np.argmax(np.abs(nulls[0][0])))]
                solved[k] = False
                out[k] = True
        finally:
            self.state.setQ(_osim().Vector.createFromMat(q0))
            self.model.realizePosition(self.state)
        _STRUCTURAL[key] = out
        return out.copy()

    def _topology(self, model) -> _Topology:
        body_parent: dict[str, str] = {}
        joint_bodies: dict[str, tuple[str, str]] = {}
        js = model.getJointSet()
        for i in range(js.getSize()):
            j = js.get(i)
            parent = j.getParentFrame().findBaseFrame().getName()
            child = j.getChildFrame().findBaseFrame().getName()
            body_parent[child] = parent
            for k in range(j.numCoordinates()):
                joint_bodies[j.get_coordinates(k).getName()] = (parent, child)
        marker_body = tuple(mk.getParentFrame().findBaseFrame().getName() for mk in self._markers)
        return _Topology(body_parent, joint_bodies, marker_body)

    def _setup_opensim(self, osim) -> None:
        self._labels = osim.StdVectorString()
        for m in self.marker_names:
            self._labels.append(m)
        # Held coordinates become coordinate goals, not locks: a locked coordinate is a
        # constraint, which switches the assembler from L-BFGS to its interior-point optimizer
        # (measured: 17 mm instead of 2.6 mm median marker error at accuracy 1e-3).
        self._coord_refs = osim.SimTKArrayCoordinateReference()
        for c, solved in zip(self._coords, self.solved):
            if not solved:
                ref = osim.CoordinateReference(c.getName(), osim.Constant(c.getDefaultValue()))
                ref.setWeight(self._HELD_COORDINATE_WEIGHT)
                self._coord_refs.push_back(ref)

    # ------------------------------------------------------------------ public API
    @property
    def n_coordinates(self) -> int:
        """Q, the number of model coordinates."""
        return len(self.coordinate_names)

    @property
    def n_markers(self) -> int:
        """M, the number of markers the skeleton maps to the model."""
        return len(self.marker_names)

    @property
    def gated(self) -> np.ndarray:
        """``(M,)`` markers the innovation gate took out of the last frame (their data jumped)."""
        return self._gated

    @property
    def scaled(self) -> bool:
        """True when the model is scaled to the subject (no UNSCALED / HEIGHT_ONLY / PARTIAL)."""
        return self.scale_flag == 0

    @scaled.setter
    def scaled(self, value: bool) -> None:
        self.scale_flag = 0 if value else int(AngleFlag.UNSCALED)

    @property
    def warm(self) -> bool:
        """True when the next solve starts from the previous solution."""
        return self._q is not None

    @property
    def pose(self) -> np.ndarray | None:
        """A copy of the last solution's full state ``q`` (the next solve's warm start), or None
        (the next solve starts cold). For :meth:`start_from`."""
        return None if self._q is None else self._q.copy()

    def start_from(self, pose: np.ndarray | None) -> None:
        """Start the next solve from ``pose`` (a :attr:`pose` of this solver or of one on the
        same model structure; None = cold), with no motion history: e.g. the same frames fitted
        again on a slightly rescaled model start from their previous fits."""
        self.reset()
        if pose is not None:
            self._q = np.array(pose, dtype=np.float64)

    def dependency_matrix(self) -> tuple[np.ndarray, np.ndarray]:
        """``(Q, M)`` 1.0 where coordinate q depends on marker m (:attr:`dependencies`), and
        ``(Q,)`` the number of markers each depends on; built once."""
        if getattr(self, "_dep_matrix", None) is None:
            D = np.zeros((len(self.dependencies), len(self.marker_names)))
            for q, deps in enumerate(self.dependencies):
                D[q, deps] = 1.0
            self._dep_matrix = (D, D.sum(axis=1))
        return self._dep_matrix

    def continue_from(self, other: "IKSolver") -> None:
        """Warm-start from ``other``'s last pose (e.g. the generic-model solver of the same person
        when their scaled model takes over): no cold solve at the switch."""
        if other._q is None or other.coordinate_names != self.coordinate_names:
            return
        self._q = other._q.copy()
        self.state.setTime(other.state.getTime())
        self._dt, self._dt_prev = other._dt, other._dt_prev
        # this model's markers at that pose; the one before shifted by the same offsets (the
        # outlier gate predicts from both)
        self._markers_prev = self._positions(self._q)
        if other._markers_prev is not None and other._markers_prev2 is not None:
            self._markers_prev2 = other._markers_prev2 + (self._markers_prev - other._markers_prev)
        self._gated_run[:] = other._gated_run
        self._outlier_run = None if other._outlier_run is None else other._outlier_run.copy()
        self._glide_to = None if other._glide_to is None else other._glide_to.copy()
        self._gated = other._gated.copy()
        self._obs_prev, self._obs_prev2 = other._obs_prev, other._obs_prev2  # the gate's data history
        self._recent_rms.extend(other._recent_rms)

    def reset(self) -> None:
        """Forget the previous pose: the next solve starts from the initial guesses."""
        self._q = None
        self._markers_prev = self._markers_prev2 = None
        self._obs_prev = self._obs_prev2 = None
        self._gated_run[:] = 0
        self._outlier_run = None
        self._glide_to = None

    def markers_from_points(self, points: np.ndarray, weights: np.ndarray | None = None,
                            extra: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Skeleton points -> marker observations.

        Args:
            points: ``(K, 3)`` world keypoints (z up), m; NaN = missing.
            weights: ``(K,)`` bool mask or float weight factors per keypoint (None = all 1).
            extra: the extra markers (``IKSettings.extra_marker_weights``): ``(E, 3)`` world
                points (z up, m; NaN = missing) and ``(E,)`` weight factors; None = unused.

        Returns:
            ``(M, 3)`` markers in OpenSim ground (y up), m (NaN = missing), and ``(M,)`` weights
            (base weight x factor; 0 where missing or masked). Derived points (COCO ``Neck``)
            are the mean of their sources, with the smallest source factor.
        """
        sk = self.skeleton
        pts = np.asarray(points, dtype=np.float64)
        if pts.shape != (sk.n_keypoints, 3):
            raise ValueError(f"points must be (K, 3) = ({sk.n_keypoints}, 3) for {sk.name}, got {pts.shape}")
        f = np.ones(sk.n_keypoints) if weights is None else np.asarray(weights, dtype=np.float64)
        if f.shape != (sk.n_keypoints,):
            raise ValueError(f"weights must be (K,) = ({sk.n_keypoints},), got {f.shape}")
        if sk.derived:
            pts = sk.with_derived(pts)
            f = np.concatenate([f, [f[list(d.sources)].min() for d in sk.derived]])
        if self.n_extra:
            e_pts, e_f = (np.full((self.n_extra, 3), np.nan), np.zeros(self.n_extra)) if extra is None else extra
            e_pts, e_f = np.asarray(e_pts, dtype=np.float64), np.asarray(e_f, dtype=np.float64)
            if e_pts.shape != (self.n_extra, 3) or e_f.shape != (self.n_extra,):
                raise ValueError(f"extra must be ((E, 3), (E,)) with E = {self.n_extra}, got {e_pts.shape}, {e_f.shape}")
            pts, f = np.concatenate([pts, e_pts]), np.concatenate([f, e_f])
        x = pts[self.marker_points] @ OSIM_FROM_WORLD.T  # (M, 3) OpenSim ground
        w = self.weights * f[self.marker_points]
        finite = np.isfinite(x).all(-1)
        ok = finite & np.isfinite(w) & (w > 0)
        return np.where(finite[:, None], x, np.nan), np.where(ok, w, 0.0)

    def solve(self, points_world: np.ndarray, weights: np.ndarray | None = None, time_s: float = 0.0) -> IKSolution:
        """Solve one frame, warm-started from the previous solution.

        Args:
            points_world: ``(K, 3)`` keypoints of the skeleton in the world frame (z up), m;
                NaN = missing (ignored).
            weights: ``(K,)`` bool mask of keypoints to use, or float factors (>= 0) multiplying
                the IK-setup marker weights; None = use every finite keypoint.
            time_s: time of the frame, s (sets the OpenSim state's time).

        Returns:
            :class:`IKSolution`: ``(values (Q,) rad/m, marker_rms_m, marker_errors_m (M,))``.

        Raises:
            IKError: fewer than ``min_markers`` usable markers, or no acceptable solution; the
                previous pose is kept for the next frame unless the solution was rejected.
        """
        x, w = self.markers_from_points(points_world, weights)
        return self.solve_markers(x, w, time_s)

    def solve_markers(self, x: np.ndarray, w: np.ndarray, time_s: float = 0.0) -> IKSolution:
        """Like :meth:`solve` with ``(M, 3)`` markers already in OpenSim ground (y up), m, and
        ``(M,)`` final weights (0 = unused)."""
        n_used = int(np.count_nonzero(w > 0))
        if n_used < self.settings.min_markers:
            raise IKError(f"{n_used} usable markers, need {self.settings.min_markers}")
        self.evaluations = 0
        gap = float(time_s) - self.state.getTime()
        if gap > self.settings.max_gap_s:
            self.reset()  # the previous pose is too old to start from
        self._dt = min(max(gap, _MIN_DT_S), _MAX_DT_S)
        self.state.setTime(float(time_s))
        cold = self._q is None
        if cold:
            self._glide_to = None
        self._gated = np.zeros(len(w), dtype=bool)
        if not cold:
            w = self._gate(x, w)
        if not cold and self._glide_to is not None:  # gliding to a re-acquired pose (ik_guards)
            return self._finish(*self._glide(x, w), x, w, cold, time_s)
        q, P, rms = self._cold_solve(x, w) if cold else self._solve_from(self._q, x, w, False)
        w_all = w
        outlier = (w > 0) & (np.linalg.norm(P - x, axis=-1) > self.settings.outlier_m)
        if n_used - int(outlier.sum()) < self.settings.min_markers:
            outlier[:] = False
        if outlier.any():
            w = np.where(outlier, 0.0, w)  # e.g. a left/right swap that survived triangulation
            q, P, rms = self._cold_solve(x, w) if cold else self._solve_from(self._q, x, w, False)
        # solves in a row each marker was dropped (a frame without it leaves its count alone)
        run = self._outlier_run if self._outlier_run is not None else np.zeros(len(w), dtype=np.int64)
        run = self._outlier_run = np.where(outlier, run + 1, np.where(w_all > 0, 0, run))
        lock = outlier & (run >= self.settings.max_gated_frames)
        if self.n_extra:  # augmented markers are made from the keypoints: not evidence against the pose
            lock[len(lock) - self.n_extra:] = False
        if not cold and lock.any():  # dropped again and again: is the pose what is wrong?
            (q, P, rms), w = self._unlock(x, w, (q, P, rms), lock, w_all)
        typical = float(statistics.median(self._recent_rms)) if self._recent_rms else math.inf
        stuck = self.bounded and rms > 2.0 * typical
        if not cold and (rms > self.settings.max_marker_rms_m or stuck):
            # the fit is poor, or the data asks for more than the speed bounds allow and fits
            # worse than usual: try the initial poses (a wrong previous pose, e.g. a mirrored
            # arm, is re-acquired)
            retry = self._cold_solve(x, w)
            ratio = 1.0 if rms > self.settings.max_marker_rms_m else self.settings.jump_resolve_ratio
            if retry[2] < ratio * rms:
                # towards it, within the speed bounds (no jump): solved from the point of the
                # bounds nearest the better pose; the next frames continue there
                glide = self._solve_from(retry[0], x, w, False, anchor=self._q)
                if glide[2] < rms:
                    q, P, rms = glide
                    self.counters["reacquired"] += 1
            if self.bounded:
                self.counters["bounded"] += 1
        return self._finish(q, P, rms, x, w, cold, time_s)

    def _finish(self, q: np.ndarray, P: np.ndarray, rms: float, x: np.ndarray, w: np.ndarray, cold: bool,
                time_s: float) -> IKSolution:
        """Checks and keeps a frame's solution ``q`` (markers ``P``, RMS ``rms`` over the used
        markers ``w > 0``)."""
        if not (np.isfinite(q).all() and math.isfinite(rms)):
            self._q = None
            raise IKError("IK produced non-finite values")
        if rms > self.settings.max_marker_rms_m:
            # a bad frame: no output; the next starts again from the last good pose (bounded: no
            # jump), cold only after a few bad frames in a row
            self._failures += 1
            if cold or self._failures >= _MAX_FAILURES:
                self._q = None
            raise IKError(f"marker RMS {rms * 1e3:.0f} mm > {self.settings.max_marker_rms_m * 1e3:.0f} mm")
        self._failures = 0
        self._recent_rms.append(rms)
        self._remember(x)
        self._markers_prev2 = None if cold else self._markers_prev
        self._markers_prev, self._dt_prev = P, self._dt
        self._q = q
        self.used = (w > 0) & ~self._gated
        self.last_model_markers, self.last_observed_markers, self.last_time_s = P, x, float(time_s)
        err = np.linalg.norm(P - x, axis=-1)  # NaN where not observed
        return IKSolution(q[self._qidx].copy(), rms, err)

    def _set_q(self, q: np.ndarray) -> None:
        self.state.setQ(_osim().Vector.createFromMat(np.ascontiguousarray(q, dtype=np.float64)))
        self.model.realizePosition(self.state)

    def _positions(self, q: np.ndarray) -> np.ndarray:
        """``(M, 3)`` model markers in ground at ``q``, m."""
        if self.tree is not None:
            self.evaluations += 1
            return self.tree.evaluate(q)[0]
        return self._fk_opensim(q, jacobian=False)[0]

    def _fk(self, q: np.ndarray, free: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Markers ``(M, 3)`` and their Jacobian over the ``free`` q indices ``(3M, F)``
        (dp/dq = dp/du here) at ``q``."""
        if self.tree is not None:
            self.evaluations += 1
            return self.tree.evaluate(q, free)
        P, J = self._fk_opensim(q)
        return P, J[:, free]

    def _fk_opensim(self, q: np.ndarray, jacobian: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """:meth:`_fk` through OpenSim's bindings (realizePosition, getLocationInGround per
        marker, calcStationJacobian)."""
        self.evaluations += 1
        self._set_q(q)
        P = np.array([mk.getLocationInGround(self.state).to_numpy() for mk in self._markers])
        if not jacobian:
            return P, None
        self._matter.calcStationJacobian(self.state, self._mobods, self._stations, self._J)
        return P, self._J.to_numpy()

    # ------------------------------------------------------------------ Gauss-Newton
    def _gauss_newton(self, q: np.ndarray, x: np.ndarray, w: np.ndarray, free: np.ndarray,
                      iterations: int, prior: float = 0.0, bounds: tuple[np.ndarray, np.ndarray] | None = None
                      ) -> tuple[np.ndarray, np.ndarray, int]:
        """Levenberg-Marquardt (iteratively reweighted for the robust loss) over the ``free`` q
        indices, minimising ``marker cost + prior |q - q0|^2`` (``q0``: the starting ``q``).
        Returns q, its ``(M, 3)`` model markers and the number of iterations."""
        if self.tree is not None and self.compiled_lm:  # the same loop compiled (rtkin.kinematics.lm)
            return self._lm(q, x, w, free, iterations, prior, bounds)
        return gauss_newton_python(self, q, x, w, free, iterations, prior, bounds)

    def _lm(self, q: np.ndarray, x: np.ndarray, w: np.ndarray, free: np.ndarray, iterations: int, prior: float,
            bounds: tuple[np.ndarray, np.ndarray] | None) -> tuple[np.ndarray, np.ndarray, int]:
        """:meth:`_gauss_newton` in one call of :func:`rtkin.kinematics.lm.lm_solve`."""
        key = free.tobytes()
        setup = self._lm_setup.get(key)
        if setup is None:
            pos = self._pitch_positions(free)
            setup = self._lm_setup[key] = (self._posture_w[free].copy(), self._posture_fade[free].copy(),
                                           pos, self._pel_q if pos.size else _EMPTY_Q, self.tree.column_map(free))
        base, fade, pel_pos, pel_q, colmap = setup
        lo, hi = bounds if bounds is not None else (self._lo, self._hi)
        c = self.settings.robust_scale_m
        q, P, it, ev = lm_solve(np.asarray(q, dtype=np.float64), free, lo, hi, np.ascontiguousarray(x, dtype=np.float64),
                                np.ascontiguousarray(w, dtype=np.float64), int(iterations), float(prior),
                                c * c if math.isfinite(c) else math.inf, self.settings.damping,
                                self.settings.step_tolerance, self._posture_on, base, fade, pel_pos, pel_q,
                                float(self._pitch_w), *self.tree.arrays(), colmap)
        self.evaluations += ev
        return q, P, it

    #: Arm poses tried from a cold start, (arm_flex, arm_add, elbow_flex) rad per side: down,
    #: out sideways, forward, overhead (near arm_add = -90 deg the shoulder coordinates have
    #: several equivalent / locally optimal solutions).
    _ARM_STARTS = ((0.0, -0.2, 0.3), (0.0, -1.5, 0.3), (1.2, -0.3, 0.3), (0.0, -2.0, 0.3))

    def _set_named(self, q: np.ndarray, name: str, value: float) -> None:
        if name in self.coordinate_names:
            q[self._qidx[self.coordinate_names.index(name)]] = value

    def _initial_guesses(self, x: np.ndarray, w: np.ndarray) -> list[np.ndarray]:
        """First poses for a cold start: the default pose facing the hips' forward direction, the
        pelvis where the markers are and the root coordinates fitted to the markers of the root
        body and its neighbours (pelvis, thighs, trunk); then one copy per arm pose of
        ``_ARM_STARTS``."""
        q = self._q_default.copy()
        self._set_named(q, "elbow_flex_r", 0.3)
        self._set_named(q, "elbow_flex_l", 0.3)
        heading = self._heading(x)
        if heading is not None:
            self._set_named(q, "pelvis_rotation", heading)
        if self._root_q.size:
            P = self._positions(q)
            use = w > 0
            shift = np.average(x[use] - P[use], axis=0, weights=w[use])
            for axis, name in enumerate(("pelvis_tx", "pelvis_ty", "pelvis_tz")):
                if name in self.coordinate_names:
                    q[self._qidx[self.coordinate_names.index(name)]] += shift[axis]
            near = np.array([self._near_root(b) for b in self._topo.marker_body])
            w_root = np.where(near, w, 0.0)
            if np.count_nonzero(w_root) >= 3:
                q, _, _ = self._gauss_newton(q, x, w_root, self._root_q, self.settings.first_iterations)
        guesses = []
        for flex, add, elbow in self._ARM_STARTS:
            g = q.copy()
            for side in ("r", "l"):
                self._set_named(g, f"arm_flex_{side}", flex)
                self._set_named(g, f"arm_add_{side}", add)
                self._set_named(g, f"elbow_flex_{side}", elbow)
            if not any(np.array_equal(g, h) for h in guesses):
                guesses.append(g)
        return guesses

    def _cold_solve(self, x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """Best of the solves from every initial guess (stops at the first one that fits to
        ``cold_accept_m``). With extra (augmented) markers, which are made from the keypoints,
        the guesses are compared on the keypoints' own markers (a third of the markers: each
        start costs a third) and the best one is then solved on all of them."""
        search = w
        if self.n_extra:
            key = w.copy()
            key[len(w) - self.n_extra:] = 0.0
            if np.count_nonzero(key > 0) >= self.settings.min_markers:
                search = key
        best: tuple[np.ndarray, np.ndarray, float] | None = None
        self._posture_on = False  # the global fit first: the prior must not hold a lying body up
        try:
            for q in self._initial_guesses(x, search):
                sol = self._solve_from(q, x, search, True)
                if best is None or sol[2] < best[2]:
                    best = sol
                if best[2] <= self.settings.cold_accept_m:
                    break
        finally:
            self._posture_on = True
        assert best is not None
        if (self._posture_w.any() or self._pitch_w > 0) and self.settings.method == "gauss_newton":  # then the prior
            q, P, self.iterations = self._gauss_newton(best[0], x, w, self._free, self.settings.first_iterations)
            best = (q, P, marker_rms(P, x, (w > 0) & ~self._gated))
        elif search is not w:  # every marker, from the best start
            self._posture_on = False
            try:
                best = self._solve_from(best[0], x, w, True)
            finally:
                self._posture_on = True
        return best

    def _near_root(self, body: str) -> bool:
        return body == self._root_body or self._topo.body_parent.get(body) == self._root_body

    def _heading(self, x: np.ndarray) -> float | None:
        """Rotation about the vertical (OpenSim y) that turns the model's right (+z) onto the
        observed right direction (RHip - LHip, else RShoulder - LShoulder), rad."""
        names = self.marker_names
        for right, left in (("RHip", "LHip"), ("RShoulder", "LShoulder")):
            if right in names and left in names:
                d = x[names.index(right)] - x[names.index(left)]
                if np.isfinite(d).all() and math.hypot(d[0], d[2]) > 0.05:
                    return math.atan2(d[0], d[2])
        return None

    def _solve_from(self, q: np.ndarray, x: np.ndarray, w: np.ndarray, cold: bool, anchor: np.ndarray | None = None,
                    iterations: int | None = None) -> tuple[np.ndarray, np.ndarray, float]:
        """Solve from ``q``; returns the solution, its ``(M, 3)`` model markers and the marker
        RMS error over the used markers, m. Warm (not ``cold``): within the speed bounds around
        ``anchor`` (default ``q``: the previous pose). ``iterations``: at most this many (default
        ``first_iterations`` cold, ``max_iterations`` warm)."""
        if self.settings.method == "opensim":
            q = self._assemble(q, x, w)
            P = self._positions(q)
            self.iterations = 0
        else:
            n = iterations or (self.settings.first_iterations if cold else self.settings.max_iterations)
            prior = 0.0 if cold else self.settings.smoothing / self._dt
            bounds = None
            if not cold:  # no faster than a body moves
                step = self._speed * self._dt
                a = q if anchor is None else anchor
                bounds = (np.maximum(self._lo, a - step), np.minimum(self._hi, a + step))
            q_in = q
            q, P, self.iterations = self._gauss_newton(q, x, w, self._free, n, prior, bounds)
            tilt = None if bounds is None else self._pelvis_tilt_bound(q, q_in if anchor is None else anchor)
            if tilt is not None:  # the pelvis tilted too fast: held at the bound, the rest solved again
                bounds = (bounds[0].copy(), bounds[1].copy())
                bounds[0][self._pel_q] = bounds[1][self._pel_q] = np.clip(tilt, bounds[0][self._pel_q],
                                                                          bounds[1][self._pel_q])
                q, P, it = self._gauss_newton(q_in, x, w, self._free, n, prior, bounds)
                self.iterations += it
            if bounds is not None:
                at = (np.abs(q - bounds[0]) < 1e-9) & (bounds[0] > self._lo) \
                    | (np.abs(q - bounds[1]) < 1e-9) & (bounds[1] < self._hi)
                self.bounded = bool(at[self._free].any())
                self.bounded_q = np.flatnonzero(at)
        return q, P, marker_rms(P, x, (w > 0) & ~self._gated)  # over the markers it stands on (not gated off)

    # ------------------------------------------------------------------ OpenSim IK solver
    def _assemble(self, q: np.ndarray, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        """One frame with ``InverseKinematicsSolver.assemble`` from ``q``; returns the new q."""
        osim = _osim()
        use = w > 0
        table = osim.TimeSeriesTableVec3()
        table.setColumnLabels(self._labels)
        row = osim.RowVectorVec3(len(self.marker_names))
        nan = osim.Vec3(math.nan, math.nan, math.nan)
        for m, (p, u) in enumerate(zip(x, use)):
            row[m] = osim.Vec3(float(p[0]), float(p[1]), float(p[2])) if u else nan
        t = self.state.getTime()
        table.appendRow(t, row)
        weights = osim.SetMarkerWeights()
        for name, wm in zip(self.marker_names, w):
            weights.cloneAndAppend(osim.MarkerWeight(name, float(wm)))
        ref = osim.MarkersReference(table, weights)
        solver = osim.InverseKinematicsSolver(self.model, ref, self._coord_refs, self.settings.constraint_weight)
        solver.setAccuracy(self.settings.accuracy)
        self.state.setQ(osim.Vector.createFromMat(np.clip(q, self._lo, self._hi)))
        try:
            solver.assemble(self.state)
        except RuntimeError as e:  # SimTK exceptions surface as RuntimeError
            raise IKError(f"OpenSim assemble failed: {e}") from e
        return self.state.getQ().to_numpy().copy()


