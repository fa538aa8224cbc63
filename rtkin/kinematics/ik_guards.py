"""The IK's physiological guards, as a mixin of :class:`rtkin.kinematics.ik.IKSolver`.

What keeps a live solution physiological besides the marker fit (each measured on the virtual
subject and the real demo keypoints, see the module doc of :mod:`rtkin.kinematics.ik`):

- the innovation gate (``_gate``, ``_remember``): a marker far from its predicted position is
  dropped for the frame (left/right mix-ups that triangulate consistently);
- the unlock (``_unlock``): a marker dropped again and again is tried back each frame, and the
  pose moves towards it when it can take it without costing the others; when it cannot, and
  markers next to it are off too, the pose is re-acquired from the initial poses and the
  published one glides there at the joints' speed limit (``_glide``);
- the weak posture prior (``_posture_weights``) and the anterior pelvis pitch prior
  (``_pitch_term``, heading-independent);
- the pelvis tilt bound (``_pelvis_tilt_bound``): the pelvis turns about horizontal axes no faster
  than ``max_root_speed_rad_s``, whatever the coordinates.

The methods use the solver's state (``self``); they live here to keep ``ik.py`` readable.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from rtkin.kinematics.lm import pelvis_pitch_grad

_GATE_POWER = 8  # steepness of the innovation gate's weight
_NEIGHBOUR_M = 0.12  # markers this close on the model move with one segment, m
_REACQUIRE_RATIO = 0.5  # a locked marker's re-acquisition must halve the fit's RMS error
_UNLOCK_ROUNDS = 3  # re-solves of one unlock try, at most
_EMPTY_I, _EMPTY_F = np.zeros(0, dtype=np.intp), np.zeros(0)


def _pelvis_pitch(a: np.ndarray) -> float:
    """Angle of the pelvis's forward axis (body x) above the horizontal, rad, for
    ``a = (pelvis_tilt, pelvis_list, pelvis_rotation)`` (ground_pelvis: R = Rz(tilt) Rx(list)
    Ry(rotation), OpenSim ground y up): equal to ``pelvis_tilt`` when facing ground +x."""
    return _pelvis_pitch_grad(a)[0]


def _pelvis_pitch_grad(a: np.ndarray) -> tuple[float, np.ndarray]:
    """:func:`_pelvis_pitch` and its gradient ``(3,)`` over ``a`` (the compiled solve's own,
    :func:`rtkin.kinematics.lm.pelvis_pitch_grad`)."""
    return pelvis_pitch_grad(float(a[0]), float(a[1]), float(a[2]))


@njit(cache=True)
def _pelvis_rotation(a: np.ndarray) -> np.ndarray:
    """``(3, 3)`` pelvis orientation in ground (y up), ``Rz(tilt) Rx(list) Ry(rotation)``."""
    t, l, r = a[0], a[1], a[2]  # noqa: E741 - the model's names (tilt, list, rotation)
    ct, st, cl, sl, cr, sr = math.cos(t), math.sin(t), math.cos(l), math.sin(l), math.cos(r), math.sin(r)
    rz = np.array([[ct, -st, 0.0], [st, ct, 0.0], [0.0, 0.0, 1.0]])
    rx = np.array([[1.0, 0.0, 0.0], [0.0, cl, -sl], [0.0, sl, cl]])
    ry = np.array([[cr, 0.0, sr], [0.0, 1.0, 0.0], [-sr, 0.0, cr]])
    return rz @ rx @ ry


@njit(cache=True)
def _zxy_angles(R: np.ndarray) -> np.ndarray:
    """``(tilt, list, rotation)`` of ``R = Rz(tilt) Rx(list) Ry(rotation)``, rad."""
    return np.array([math.atan2(-R[0, 1], R[1, 1]), math.asin(max(-1.0, min(1.0, R[2, 1]))),
                     math.atan2(-R[2, 0], R[2, 2])])


@njit(cache=True)
def _rotvec(R: np.ndarray) -> np.ndarray:
    """Rotation vector (axis x angle, rad) of a rotation matrix (angles below pi)."""
    c = max(-1.0, min(1.0, (R[0, 0] + R[1, 1] + R[2, 2] - 1.0) / 2.0))
    ang = math.acos(c)
    v = np.array([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]])
    return v * (0.5 if ang < 1e-9 else ang / (2.0 * math.sin(ang)))


@njit(cache=True)
def _rotmat(v: np.ndarray) -> np.ndarray:
    """Rotation matrix of a rotation vector (Rodrigues)."""
    ang = math.sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2])
    if ang < 1e-12:
        return np.eye(3)
    k = v / ang
    K = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.eye(3) + math.sin(ang) * K + (1 - math.cos(ang)) * K @ K


@njit(cache=True)
def _tilt_bound(prev: np.ndarray, cur: np.ndarray, lim: float) -> np.ndarray:
    """``(3,)`` pelvis (tilt, list, rotation) turned from ``prev`` towards ``cur`` no faster than
    ``lim`` rad about horizontal axes (empty when ``cur`` is within that): see
    ``PhysiologicalGuards._pelvis_tilt_bound``."""
    R0 = _pelvis_rotation(prev)
    th = _rotvec(_pelvis_rotation(cur) @ R0.T)  # in ground (y up)
    h = math.hypot(th[0], th[2])
    if h <= lim * (1 + 1e-6):
        return np.zeros(0)
    th[0] *= lim / h
    th[2] *= lim / h
    a = _zxy_angles(_rotmat(th) @ R0)
    a[2] += 2 * np.pi * np.round((cur[2] - a[2]) / (2 * np.pi))  # the heading's turn count
    return a


def marker_rms(P: np.ndarray, x: np.ndarray, use: np.ndarray) -> float:
    """RMS distance between the model markers ``P`` and the observed ``x`` ``(M, 3)`` over the
    markers ``use`` ``(M,)`` bool, m (NaN when none)."""
    d2 = np.sum((P[use] - x[use]) ** 2, axis=-1)
    return float(np.sqrt(d2.mean())) if d2.size else math.nan


class PhysiologicalGuards:
    """Mixin of :class:`rtkin.kinematics.ik.IKSolver`: its guards (see the module doc)."""

    def _unlock(self, x: np.ndarray, w: np.ndarray, sol: tuple, lock: np.ndarray, w_lock: np.ndarray) -> tuple:
        """A marker dropped as an outlier several frames in a row may be right and the pose
        wrong: e.g. an elbow left at its bound after a glitch while the wrist moved on - dropping
        the wrist every frame then locks the wrong pose in. The frame is solved again from the
        current pose with the ``lock`` markers (weights ``w_lock``), free of the speed bounds;
        if that pose fits them within ``outlier_m`` and fits the other markers as well (their
        RMS within 10 %: a real outlier pulls the pose away from them), the frame moves towards
        it within the speed bounds (no jump), and the next frames follow until the markers fit
        and are used again. Returns ``sol`` or the glide."""
        q, P, rms = sol
        keep = (self.bounded, getattr(self, "bounded_q", None), self.iterations)
        use = (w > 0) & ~self._gated
        cand = lock.copy()
        for _ in range(min(int(lock.sum()), _UNLOCK_ROUNDS)):  # each locked marker on its own
            # merits: one that the pose cannot take back (e.g. a real outlier on another limb) is
            # left out and the others tried again, so the decision does not depend on what else
            # is locked. Bounded (rounds, iterations): it runs every frame while markers stay
            # dropped (unbounded: 100-140 model evaluations, 10-14 ms, per frame of a live run
            # with augmented markers; the same decisions on the real demo keypoints)
            q2, P2, _ = self._solve_from(self._q, x, np.where(cand, w_lock, w), True,
                                         iterations=2 * self.settings.max_iterations)
            fits = np.linalg.norm(P2[cand] - x[cand], axis=-1) <= self.settings.outlier_m
            if fits.all() or not fits.any():
                break
            cand[np.flatnonzero(cand)[~fits]] = False
        rms_other = marker_rms(P2, x, use)
        if fits.all() and rms_other <= 1.1 * rms:
            glide = self._solve_from(q2, x, w, False, anchor=self._q)
            if glide[2] <= 1.1 * rms:
                self.counters["unlocked"] += 1
                return glide, w
        run = int(self._outlier_run[lock].max())
        m = self.settings.max_gated_frames
        dropped = (w_lock > 0) & (w == 0) & ~lock  # the other markers dropped this frame
        near = np.linalg.norm(P[lock][:, None] - P[dropped][None], axis=-1) < _NEIGHBOUR_M
        if run >= 2 * m and run % m == 0 and ((run // m) & (run // m - 1)) == 0 and near.any():
            # still locked after 2, 4, 8... times the gate's frames, and markers next to it on
            # the model are off too (one bad keypoint is off alone): the pose may be in another
            # basin that no local solve leaves (e.g. an arm cornered at its joint ranges after
            # passing the shoulder's singular pose, its wrist keypoint and augmented wrist
            # markers all dropped): the initial poses are tried with the locked markers back
            back = np.where(lock, w_lock, w)
            retry = self._cold_solve(x, back)
            fits = np.linalg.norm(retry[1][lock] - x[lock], axis=-1) <= self.settings.outlier_m
            if fits.all() and retry[2] < _REACQUIRE_RATIO * marker_rms(P, x, (back > 0) & ~self._gated):
                # the published pose glides there at the joints' speed limit over the next frames
                # while that pose is tracked on its own (:meth:`_glide`): a speed-bounded solve
                # from this far falls back into the old basin (the locked markers' robust weights
                # are ~0 there)
                self.counters["reacquired"] += 1
                self._glide_to = retry[0]
                return self._glide_step(retry[0], retry[2]), back
        self.bounded, self.bounded_q, self.iterations = keep
        return sol, w

    def _glide(self, x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """A frame while the published pose glides to a re-acquired one (``_glide_to``): that
        pose is solved on (warm, its own speed bounds) and the published one moves towards it
        at most the joints' speed limit; returns ``(q, its (M, 3) markers, the target's RMS)``."""
        target, _, rms = self._solve_from(self._glide_to, x, w, False, anchor=self._glide_to)
        return self._glide_step(target, rms)

    def _glide_step(self, target: np.ndarray, rms: float) -> tuple[np.ndarray, np.ndarray, float]:
        step = self._speed * self._dt
        q = np.clip(target, np.maximum(self._lo, self._q - step), np.minimum(self._hi, self._q + step))
        self._glide_to = None if np.abs(q - target).max() < 1e-9 else target
        return q, self._positions(q), rms

    def _remember(self, x: np.ndarray) -> None:
        """Keep the observations of the last two solved frames for the gate's prediction; a
        marker gated off or missing keeps its last accepted position, still (the prediction
        comes from the data alone, whatever the solutions were)."""
        keep = self._gated | ~np.isfinite(x).all(-1)
        new = x.copy()
        prev = self._obs_prev
        if prev is None:
            self._obs_prev, self._obs_prev2 = new, None
            return
        new[keep] = prev[keep]
        prev2 = prev.copy()
        prev2[keep] = new[keep]
        self._obs_prev, self._obs_prev2 = new, prev2

    def _gate(self, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Innovation gating: markers far from where their observations of the last two solved
        frames (see :meth:`_remember`), extrapolated at constant velocity, put them (a glitch, e.g. a left/right mix-up in
        two views that triangulates consistently) lose their weight smoothly: factor
        ``1 / (1 + (d / g)^8)`` with ``g = gate_m + gate_accel_mps2 * dt^2 / 2`` (1 well inside,
        0.5 at ``g``, 0.04 at ``1.5 g``). The prediction comes from the data, not from the
        solutions, and the weight is continuous, not a cut: two runs started at different frames
        make the same choices (gating against the model's own predictions with a hard cut made
        the angles on the real demo keypoints depend on where the stream started, by up to
        75 deg). Not applied to a marker far off for more than ``max_gated_frames`` frames in a
        row (it may just be fast), nor when a third of the markers are (the prediction is stale)."""
        st = self.settings
        use = w > 0
        pred = self._obs_prev
        if pred is None:
            return w
        if self._obs_prev2 is not None:
            pred = pred + (pred - self._obs_prev2) * (self._dt / self._dt_prev)
        r = pred - x
        d = np.fmax(np.sqrt(np.add.reduce(r * r, axis=-1)), 0.0)  # |r| (np.linalg.norm's sum), NaN -> 0
        gate = st.gate_m + 0.5 * st.gate_accel_mps2 * self._dt ** 2
        factor = 1.0 / (1.0 + (d / gate) ** _GATE_POWER)
        far = use & (factor < 0.5)
        factor[~use | (self._gated_run >= st.max_gated_frames)] = 1.0
        n = int(far.sum())
        if n > use.sum() / 3 or use.sum() - n < st.min_markers:
            self._gated_run[:] = 0
            return w
        self._gated_run = np.where(far, self._gated_run + 1, 0)
        self._gated = factor < 0.5
        return w * factor

    # ------------------------------------------------------------------ kinematics
    def _pitch_term(self, q: np.ndarray, free: np.ndarray) -> tuple[float, np.ndarray, np.ndarray, float, float]:
        """The anterior pelvis tilt prior at ``q``: (cost, positions in ``free`` of the pelvis
        tilt / list / rotation, d(pitch)/d(those) (3,), weight, pitch rad). The pitch is the
        angle of the pelvis's forward axis above the horizontal, whatever the heading (the
        model's ``pelvis_tilt`` is a rotation about a ground axis: for a subject facing along
        ground z it is a lateral lean). Faded to nothing at 90 deg (a lying body)."""
        if self._pitch_w <= 0 or not self._posture_on or self._pel_q is None:
            return 0.0, _EMPTY_I, _EMPTY_F, 0.0, 0.0
        pos = self._pitch_positions(free)
        if not pos.size:
            return 0.0, _EMPTY_I, _EMPTY_F, 0.0, 0.0
        th, jp = _pelvis_pitch_grad(q[self._pel_q])
        w = self._pitch_w * max(0.0, 1.0 - (th / (0.5 * np.pi)) ** 2)
        return w * th * th, pos, jp, w, th

    def _pitch_positions(self, free: np.ndarray) -> np.ndarray:
        """Positions of the pelvis tilt / list / rotation in ``free`` (empty: not all solved)."""
        key = free.tobytes()
        pos = self._pitch_pos.get(key)
        if pos is None:
            pos = _EMPTY_I
            if self._pel_q is not None:
                pos = np.searchsorted(free, self._pel_q)
                if not (pos < free.size).all() or not (free[np.minimum(pos, free.size - 1)] == self._pel_q).all():
                    pos = _EMPTY_I  # the pelvis is not solved here
            self._pitch_pos[key] = pos
        return pos

    def _posture_weights(self, Jf: np.ndarray, ws: np.ndarray, free: np.ndarray, qf: np.ndarray) -> np.ndarray:
        """``(F,)`` posture prior weights of the ``free`` coordinates at the current pose ``qf``:
        the configured weight, faded by the information the markers give on the coordinate
        (``fade`` > 0), or (``fade`` = 0) by how far it is from neutral, to nothing at 90 deg:
        the prior knows an upright body, it must not pull a lying one."""
        key = free.tobytes()
        cached = self._posture_of.get(key)
        if cached is None:  # what depends on the free set only
            base, fade = self._posture_w[free], self._posture_fade[free]
            held = np.flatnonzero((base > 0) & (fade == 0))  # faded by the pose
            fading = np.flatnonzero((base > 0) & (fade > 0))  # faded by the information
            cached = self._posture_of[key] = (base, held, fading, fade[fading])
        base, held, fading, fade = cached
        pw = base.copy()
        if held.size:
            pw[held] *= np.clip(1.0 - (qf[held] / (0.5 * np.pi)) ** 2, 0.0, 1.0)
        if fading.size:
            Jfad = Jf[:, fading]
            info = np.einsum("ij,ij,i->j", Jfad, Jfad, ws)
            pw[fading] *= np.clip(1.0 - info / fade, 0.0, 1.0)
        return pw

    def _pelvis_tilt_bound(self, q: np.ndarray, prev: np.ndarray) -> np.ndarray | None:
        """The pelvis's (tilt, list, rotation) rotated from ``prev`` towards ``q`` no faster than
        ``max_root_speed_rad_s`` about horizontal axes (the turn about the vertical is left as
        it is), or None when ``q`` is within that. The coordinates alone cannot bound it:
        ``pelvis_rotation`` turns the pelvis about its own long axis, which tilts with the body
        (the demo subject leans 30 deg sideways on one leg: a 13 deg heading change from hip
        keypoint noise tilted the pelvis forward by 7 deg in one frame)."""
        if self._pel_q is None:
            return None
        a = _tilt_bound(prev[self._pel_q], q[self._pel_q], self.settings.max_root_speed_rad_s * self._dt)
        return a if a.size else None
