"""Forward kinematics of an OpenSim model in one Numba kernel: marker positions and their Jacobian.

The Gauss-Newton IK (:mod:`rtkin.kinematics.ik`) needs, several times per frame, every marker's
position in ground and ``dp/dq``. Through OpenSim's Python bindings that is one
``realizePosition``, one ``getLocationInGround`` per marker and one ``calcStationJacobian``: about
0.15 ms for 22 markers and 0.31 ms for 65 (keypoints + augmented markers; `bench_ik.py`), most of it crossing
the bindings. :class:`KinematicTree` reads the model once (joint frames, each joint's transform
axes and their functions, marker stations) and evaluates both in one compiled call.

What it reproduces (Simbody's mobilizers as OpenSim builds them):

- ``CustomJoint``: ``X_FM`` = rotations ``f_0(q)``, ``f_1(q)``, ``f_2(q)`` about axes 0-2 applied
  in sequence, each about its axis in the frame the previous rotations produced (body-fixed),
  and a translation ``sum_i f_{3+i}(q) axis_{3+i}`` in ``F``; functions of at most one
  coordinate: ``Constant``, ``LinearFunction``, or anything else (``SimmSpline``,
  ``MultiplierFunction``...) sampled with its derivative and interpolated (cubic Hermite, at
  :data:`TABLE_POINTS` points over the coordinate's range widened by :data:`TABLE_MARGIN` plus a
  spline's own knots, so a cubic spline's pieces are reproduced exactly);
- ``PinJoint`` (rotation about ``F``'s z), ``UniversalJoint`` (about x, then the new y),
  ``WeldJoint``, as the same six-axis form;
- ``X_GB(child) = X_GB(parent) X_PF X_FM(q) X_BM^-1`` with the joints' offset frames.

Anything else (another joint type, a function of several coordinates, a constraint, a model
where ``nq != nu``) raises :class:`Unsupported`; :meth:`KinematicTree.check` compares the kernel
with OpenSim at random poses inside the coordinate ranges, and the IK falls back to the bindings
when either fails. The result is within float noise of OpenSim's (test: ``tests/test_fastfk.py``).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["KinematicTree", "Unsupported", "damped_step", "TABLE_POINTS", "TABLE_MARGIN"]

TABLE_POINTS = 121  #: samples of a tabulated joint function (besides a spline's knots)
TABLE_MARGIN = 1.0  #: the table spans the coordinate's range widened by this on each side (rad or m)
_CONST, _LINEAR, _TABLE = 0, 1, 2


class Unsupported(ValueError):
    """The model has a component the kernel does not reproduce (the IK then uses OpenSim)."""


def _vec(v) -> np.ndarray:
    return np.asarray(v.to_numpy(), dtype=np.float64).reshape(3)


def _transform(osim, X) -> np.ndarray:
    """Simbody Transform -> ``(3, 4)`` [R | p] (R rebuilt from its body-fixed XYZ angles: two
    calls through the bindings instead of nine)."""
    a, b, c = _vec(X.R().convertRotationToBodyFixedXYZ())
    ca, sa, cb, sb, cc, sc = math.cos(a), math.sin(a), math.cos(b), math.sin(b), math.cos(c), math.sin(c)
    Rx = np.array([[1, 0, 0], [0, ca, -sa], [0, sa, ca]])
    Ry = np.array([[cb, 0, sb], [0, 1, 0], [-sb, 0, cb]])
    Rz = np.array([[cc, -sc, 0], [sc, cc, 0], [0, 0, 1]])
    out = np.empty((3, 4))
    out[:, :3] = Rx @ Ry @ Rz
    out[:, 3] = _vec(X.p())
    return out


_TABLES: dict[tuple, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}  # a spline's table, by its knots


def _table(osim, f, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Abscissae, values and derivatives of ``f`` over ``[lo, hi]`` widened by TABLE_MARGIN; a
    spline's knots are among the abscissae. A spline (also inside a ``MultiplierFunction``, as
    scaling wraps it) is tabulated once per process: a scaled model's table is a multiple."""
    scale = 1.0
    if f.getConcreteClassName() == "MultiplierFunction":
        mf = osim.MultiplierFunction.safeDownCast(f)
        scale, f = mf.getScale(), mf.getFunction()
    key = None
    knots = np.zeros(0)
    for cls in ("SimmSpline", "NaturalCubicSpline", "GCVSpline"):
        if f.getConcreteClassName() == cls:
            sp = getattr(osim, cls).safeDownCast(f)
            knots = np.array([sp.getX(i) for i in range(sp.getSize())], dtype=np.float64)
            key = (cls, lo, hi, tuple(knots), tuple(sp.getY(i) for i in range(sp.getSize())))
    if key is None or key not in _TABLES:
        x = np.union1d(np.linspace(lo - TABLE_MARGIN, hi + TABLE_MARGIN, TABLE_POINTS), knots)
        d = osim.StdVectorInt()
        d.append(0)
        fv = np.array([f.calcValue(osim.Vector(1, float(v))) for v in x])
        dv = np.array([f.calcDerivative(d, osim.Vector(1, float(v))) for v in x])
        if key is None:
            return x, scale * fv, scale * dv
        _TABLES[key] = (x, fv, dv)
    x, fv, dv = _TABLES[key]
    return x, scale * fv, scale * dv


def _inverse(X: np.ndarray) -> np.ndarray:
    R, p = X[:, :3], X[:, 3]
    return np.concatenate([R.T, (-R.T @ p)[:, None]], axis=1)


class KinematicTree:
    """The model's kinematic tree and markers, ready for :meth:`evaluate`.

    Args:
        model: an OpenSim ``Model`` after ``initSystem`` (its current scaling is read).
        state: its state.
        marker_bodies: the body each marker is fixed to, (M) names in the IK's marker order.
        stations: ``(M, 3)`` each marker's location in its body's frame, m.
        q_index: coordinate name -> index in the state's Q vector (nq).

    Raises:
        Unsupported: a joint type, function or constraint the kernel does not reproduce.
    """

    def __init__(self, model, state, marker_bodies, stations: np.ndarray, q_index: dict[str, int]):
        import opensim as osim

        if model.getConstraintSet().getSize():
            raise Unsupported("the model has constraints")
        self.nq = int(state.getNQ())
        if state.getNU() != self.nq:
            raise Unsupported("the model has quaternion joints (nq != nu)")
        bodies: dict[str, int] = {}  # body name -> index (ground = -1)
        joints, tables = [], []
        pending = [model.getJointSet().get(i) for i in range(model.getJointSet().getSize())]
        while pending:  # parents before children
            progressed = False
            for j in list(pending):
                parent = j.getParentFrame().findBaseFrame().getName()
                if parent != "ground" and parent not in bodies:
                    continue
                child = j.getChildFrame().findBaseFrame().getName()
                bodies[child] = len(bodies)
                joints.append(self._joint(osim, j, bodies, parent, child, q_index, tables))
                pending.remove(j)
                progressed = True
            if not progressed:
                raise Unsupported("the joints do not form a tree rooted at ground")
        nj = len(joints)
        self.parent = np.array([j[0] for j in joints], dtype=np.int64)  # (nj,) parent body, -1 = ground
        self.X_PF = np.array([j[1] for j in joints])  # (nj, 3, 4)
        self.X_MB = np.array([j[2] for j in joints])  # (nj, 3, 4) child body in the mobilizer's M frame
        self.axes = np.array([j[3] for j in joints])  # (nj, 6, 3) unit axes: 3 rotations, 3 translations
        self.kind = np.array([j[4] for j in joints], dtype=np.int64)  # (nj, 6) _CONST / _LINEAR / _TABLE
        self.qi = np.array([j[5] for j in joints], dtype=np.int64)  # (nj, 6) state q index (-1 = none)
        self.coef = np.array([j[6] for j in joints])  # (nj, 6, 2) slope, intercept (constant: value)
        self.table = np.array([j[7] for j in joints], dtype=np.int64)  # (nj, 6) table index (-1 = none)
        L = max((t[0].size for t in tables), default=2)
        self.t_n = np.array([t[0].size for t in tables] or [2], dtype=np.int64)  # (ntab,) samples per table
        self.t_x = np.full((len(tables) or 1, L), np.inf)  # (ntab, L) abscissae, +inf padded
        self.t_f, self.t_df = np.zeros_like(self.t_x), np.zeros_like(self.t_x)  # values, derivatives
        for i, (x, fv, dv) in enumerate(tables):
            self.t_x[i, :x.size], self.t_f[i, :x.size], self.t_df[i, :x.size] = x, fv, dv
        # desc[j, b]: body b is joint j's child body or below it
        desc = np.zeros((nj, nj), dtype=np.bool_)
        for j in range(nj - 1, -1, -1):
            desc[j, j] = True
            for k in range(j + 1, nj):
                if self.parent[k] == j:
                    desc[j] |= desc[k]
        self.desc = desc
        missing = sorted(set(marker_bodies) - set(bodies))
        if missing:
            raise Unsupported(f"markers on {missing}, not bodies of the tree")
        self._all_columns = np.arange(self.nq, dtype=np.int64)
        self._colmaps: dict[bytes, np.ndarray] = {}  # q index -> column, per column set
        self.body_names = tuple(bodies)  # (nj,) body of each index (joint j's child is body j)
        self.marker_body = np.array([bodies[b] for b in marker_bodies], dtype=np.int64)  # (M,) body index
        self.stations = np.array(stations, dtype=np.float64).reshape(-1, 3)  # (M, 3) in the body frame, m

    @staticmethod
    def _joint(osim, j, bodies, parent, child, q_index, tables):
        kind = j.getConcreteClassName()
        names = [j.get_coordinates(k).getName() for k in range(j.numCoordinates())]
        qs = [q_index[n] for n in names]
        ranges = [(j.get_coordinates(k).getRangeMin(), j.get_coordinates(k).getRangeMax())
                  for k in range(j.numCoordinates())]
        axes = np.zeros((6, 3))
        axes[:3], axes[3:] = np.eye(3), np.eye(3)
        kinds = np.zeros(6, dtype=np.int64)
        qi = np.full(6, -1, dtype=np.int64)
        coef = np.zeros((6, 2))
        tab = np.full(6, -1, dtype=np.int64)

        def linear(a, k, axis, slope=1.0, intercept=0.0):
            axes[a], kinds[a], qi[a], coef[a] = axis, _LINEAR, qs[k], (slope, intercept)

        if kind == "CustomJoint":
            st = osim.CustomJoint.safeDownCast(j).getSpatialTransform()
            for a in range(6):
                ta = st.getTransformAxis(a)
                axis = _vec(ta.getAxis())
                n = np.linalg.norm(axis)
                if n == 0:
                    raise Unsupported(f"joint {j.getName()}: a zero transform axis")
                axes[a] = axis / n
                cn = ta.getCoordinateNames()
                args = [cn.getValue(k) for k in range(cn.size())]
                if len(args) > 1:
                    raise Unsupported(f"joint {j.getName()}: a function of {len(args)} coordinates")
                if not ta.hasFunction():
                    continue
                f = ta.get_function()
                fk = f.getConcreteClassName()
                if not args or fk == "Constant":
                    kinds[a] = _CONST
                    coef[a, 0] = f.calcValue(osim.Vector(1, 0.0))
                    continue
                k = names.index(args[0])
                qi[a] = qs[k]
                if fk == "LinearFunction":
                    lf = osim.LinearFunction.safeDownCast(f)
                    kinds[a], coef[a] = _LINEAR, (lf.getSlope(), lf.getIntercept())
                    continue
                kinds[a], tab[a] = _TABLE, len(tables)
                tables.append(_table(osim, f, *ranges[k]))
        elif kind == "PinJoint":
            linear(2, 0, np.array([0.0, 0.0, 1.0]))
        elif kind == "UniversalJoint":
            linear(0, 0, np.array([1.0, 0.0, 0.0]))
            linear(1, 1, np.array([0.0, 1.0, 0.0]))
        elif kind != "WeldJoint":
            raise Unsupported(f"joint {j.getName()}: {kind}")
        X_PF = _transform(osim, j.getParentFrame().findTransformInBaseFrame())
        X_BM = _transform(osim, j.getChildFrame().findTransformInBaseFrame())
        p = -1 if parent == "ground" else bodies[parent]
        return p, X_PF, _inverse(X_BM), axes, kinds, qi, coef, tab

    def scaled(self, factors: dict[str, float], translations: str = "parent") -> "KinematicTree":
        """A copy of this tree with per-body uniform scale ``factors`` (body name -> factor, others
        1) applied as OpenSim's ``Model.scale`` does: a joint's offset frame on its parent body
        and its child body's offset frame move with their body's factor, marker stations with
        their body's, and the joint's translation functions with the ``translations`` body's
        (``"parent"`` or ``"child"``). For a model built from the unscaled one."""
        import copy

        s = np.array([float(factors.get(b, 1.0)) for b in self.body_names])
        sp = np.where(self.parent >= 0, s[np.maximum(self.parent, 0)], 1.0)  # (nj,) parent body factors
        st = sp if translations == "parent" else s
        out = copy.copy(self)
        out.X_PF = self.X_PF.copy()
        out.X_PF[:, :, 3] *= sp[:, None]
        out.X_MB = self.X_MB.copy()
        out.X_MB[:, :, 3] *= s[:, None]
        out.coef = self.coef.copy()
        out.coef[:, 3:, :] *= st[:, None, None]
        out.t_f, out.t_df = self.t_f.copy(), self.t_df.copy()
        for j in range(len(s)):
            for a in range(3, 6):
                if self.table[j, a] >= 0:
                    out.t_f[self.table[j, a]] *= st[j]
                    out.t_df[self.table[j, a]] *= st[j]
        out.stations = self.stations * s[self.marker_body][:, None]
        out._colmaps = {}
        return out

    def evaluate(self, q: np.ndarray, columns: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Markers ``(M, 3)`` in ground, m, and their Jacobian ``dp/dq`` at ``q`` ``(nq,)`` (the
        state's Q order): ``(3M, nq)``, or ``(3M, len(columns))`` for the q indices ``columns``
        only; rows ``3m..3m+2`` are marker m's."""
        M = self.stations.shape[0]
        colmap = self.column_map(columns)
        P = np.empty((M, 3))
        J = np.empty((3 * M, self.nq if columns is None else len(columns)))
        _evaluate(np.ascontiguousarray(q, dtype=np.float64), *self.arrays(), colmap, P, J)
        return P, J

    def column_map(self, columns: np.ndarray | None) -> np.ndarray:
        """``(nq,)`` int64: each q index's column among ``columns`` (-1 = not one; None = all)."""
        if columns is None:
            return self._all_columns
        key = columns.tobytes()
        colmap = self._colmaps.get(key)
        if colmap is None:
            colmap = np.full(self.nq, -1, dtype=np.int64)
            colmap[columns] = np.arange(len(columns))
            self._colmaps[key] = colmap
        return colmap

    def arrays(self) -> tuple:
        """The tree's arrays in the order the kernel (``_evaluate``) takes them, before ``colmap``."""
        return (self.parent, self.X_PF, self.X_MB, self.axes, self.kind, self.qi, self.coef, self.table, self.t_n,
                self.t_x, self.t_f, self.t_df, self.desc, self.marker_body, self.stations)

    def check(self, reference, q_lo: np.ndarray, q_hi: np.ndarray, n: int = 6, tol_m: float = 1e-7,
              seed: int = 0) -> float:
        """Largest difference to ``reference(q) -> ((M, 3), (3M, nq))`` (OpenSim) at ``n`` random
        poses within ``[q_lo, q_hi]`` (infinite bounds: +-1), in m (Jacobian entries scaled by
        0.1 rad). Raises :class:`Unsupported` above ``tol_m``."""
        rng = np.random.default_rng(seed)
        lo = np.where(np.isfinite(q_lo), q_lo, -1.0)
        hi = np.where(np.isfinite(q_hi), q_hi, 1.0)
        worst = 0.0
        for _ in range(n):
            q = rng.uniform(lo, hi)
            P, J = self.evaluate(q)
            P_ref, J_ref = reference(q)
            worst = max(worst, float(np.abs(P - P_ref).max()), 0.1 * float(np.abs(J - J_ref).max()))
        if not worst <= tol_m:
            raise Unsupported(f"the kernel differs from OpenSim by {worst:.2e} m")
        return worst


@njit(cache=True)
def _fun(k, qv, slope, intercept, n, tx, tf, tdf):
    """Value and derivative of one transform-axis function at ``qv``."""
    if k == _CONST:
        return slope, 0.0
    if k == _LINEAR:
        return slope * qv + intercept, slope
    if qv <= tx[0]:
        return tf[0] + tdf[0] * (qv - tx[0]), tdf[0]
    if qv >= tx[n - 1]:
        return tf[n - 1] + tdf[n - 1] * (qv - tx[n - 1]), tdf[n - 1]
    lo, hi = 0, n - 1  # tx[lo] <= qv < tx[hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if tx[mid] <= qv:
            lo = mid
        else:
            hi = mid
    dx = tx[hi] - tx[lo]
    t = (qv - tx[lo]) / dx
    f0, f1, d0, d1 = tf[lo], tf[hi], tdf[lo] * dx, tdf[hi] * dx
    t2 = t * t
    t3 = t2 * t
    h00, h10, h01, h11 = 2 * t3 - 3 * t2 + 1, t3 - 2 * t2 + t, -2 * t3 + 3 * t2, t3 - t2
    dh00, dh10, dh01, dh11 = 6 * t2 - 6 * t, 3 * t2 - 4 * t + 1, -6 * t2 + 6 * t, 3 * t2 - 2 * t
    return h00 * f0 + h10 * d0 + h01 * f1 + h11 * d1, (dh00 * f0 + dh10 * d0 + dh01 * f1 + dh11 * d1) / dx


@njit(cache=True)
def _rot(axis, a, R):
    """``R`` (3, 3) <- rotation by ``a`` rad about the unit ``axis`` (Rodrigues)."""
    c, s = math.cos(a), math.sin(a)
    x, y, z = axis[0], axis[1], axis[2]
    C = 1.0 - c
    R[0, 0], R[0, 1], R[0, 2] = c + x * x * C, x * y * C - z * s, x * z * C + y * s
    R[1, 0], R[1, 1], R[1, 2] = y * x * C + z * s, c + y * y * C, y * z * C - x * s
    R[2, 0], R[2, 1], R[2, 2] = z * x * C - y * s, z * y * C + x * s, c + z * z * C


@njit(cache=True)
def _evaluate(q, parent, X_PF, X_MB, axes, kind, qi, coef, table, t_n, t_x, t_f, t_df, desc,
              marker_body, stations, colmap, P, J):
    nj = parent.shape[0]
    M = stations.shape[0]
    X = np.empty((nj, 3, 4))  # body frames in ground
    w_ax = np.zeros((nj, 6, 3))  # each axis in ground
    o_ax = np.zeros((nj, 3))  # the M frame's origin in ground (the rotations' centre)
    dfdq = np.zeros((nj, 6))  # d f_a / d q
    Rg = np.empty((3, 3))
    pg = np.empty(3)
    Rs = np.empty((3, 3))
    R = np.empty((3, 3))
    Rtmp = np.empty((3, 3))
    for j in range(nj):
        # ground <- F
        if parent[j] < 0:
            for r in range(3):
                for c in range(3):
                    Rg[r, c] = X_PF[j, r, c]
                pg[r] = X_PF[j, r, 3]
        else:
            b = parent[j]
            for r in range(3):
                for c in range(3):
                    Rg[r, c] = X[b, r, 0] * X_PF[j, 0, c] + X[b, r, 1] * X_PF[j, 1, c] + X[b, r, 2] * X_PF[j, 2, c]
                pg[r] = X[b, r, 0] * X_PF[j, 0, 3] + X[b, r, 1] * X_PF[j, 1, 3] + X[b, r, 2] * X_PF[j, 2, 3] + X[b, r, 3]
        # F <- M: translation in F, then the body-fixed rotation sequence
        t = np.zeros(3)
        for a in range(3, 6):
            qv = q[qi[j, a]] if qi[j, a] >= 0 else 0.0
            tb = table[j, a] if table[j, a] >= 0 else 0
            f, d = _fun(kind[j, a], qv, coef[j, a, 0], coef[j, a, 1], t_n[tb], t_x[tb], t_f[tb], t_df[tb])
            dfdq[j, a] = d
            for r in range(3):
                t[r] += f * axes[j, a, r]
                w_ax[j, a, r] = Rg[r, 0] * axes[j, a, 0] + Rg[r, 1] * axes[j, a, 1] + Rg[r, 2] * axes[j, a, 2]
        for r in range(3):
            o_ax[j, r] = pg[r] + Rg[r, 0] * t[0] + Rg[r, 1] * t[1] + Rg[r, 2] * t[2]
        for r in range(3):
            for c in range(3):
                Rs[r, c] = Rg[r, c]
        for a in range(3):
            qv = q[qi[j, a]] if qi[j, a] >= 0 else 0.0
            tb = table[j, a] if table[j, a] >= 0 else 0
            f, d = _fun(kind[j, a], qv, coef[j, a, 0], coef[j, a, 1], t_n[tb], t_x[tb], t_f[tb], t_df[tb])
            dfdq[j, a] = d
            for r in range(3):  # the axis in ground, after the previous rotations
                w_ax[j, a, r] = Rs[r, 0] * axes[j, a, 0] + Rs[r, 1] * axes[j, a, 1] + Rs[r, 2] * axes[j, a, 2]
            _rot(axes[j, a], f, R)
            for r in range(3):
                for c in range(3):
                    Rtmp[r, c] = Rs[r, 0] * R[0, c] + Rs[r, 1] * R[1, c] + Rs[r, 2] * R[2, c]
            for r in range(3):
                for c in range(3):
                    Rs[r, c] = Rtmp[r, c]
        # ground <- child body: [Rs | o] X_MB
        for r in range(3):
            for c in range(3):
                X[j, r, c] = Rs[r, 0] * X_MB[j, 0, c] + Rs[r, 1] * X_MB[j, 1, c] + Rs[r, 2] * X_MB[j, 2, c]
            X[j, r, 3] = Rs[r, 0] * X_MB[j, 0, 3] + Rs[r, 1] * X_MB[j, 1, 3] + Rs[r, 2] * X_MB[j, 2, 3] + o_ax[j, r]
    for m in range(M):
        b = marker_body[m]
        for r in range(3):
            P[m, r] = X[b, r, 0] * stations[m, 0] + X[b, r, 1] * stations[m, 1] + X[b, r, 2] * stations[m, 2] + X[b, r, 3]
    J[:, :] = 0.0
    for j in range(nj):
        for a in range(6):
            k = colmap[qi[j, a]] if qi[j, a] >= 0 else -1
            if k < 0 or dfdq[j, a] == 0.0:
                continue
            d = dfdq[j, a]
            wx, wy, wz = w_ax[j, a, 0], w_ax[j, a, 1], w_ax[j, a, 2]
            for m in range(M):
                if not desc[j, marker_body[m]]:
                    continue
                if a < 3:  # rotation: w x (p - o)
                    rx, ry, rz = P[m, 0] - o_ax[j, 0], P[m, 1] - o_ax[j, 1], P[m, 2] - o_ax[j, 2]
                    J[3 * m, k] += d * (wy * rz - wz * ry)
                    J[3 * m + 1, k] += d * (wz * rx - wx * rz)
                    J[3 * m + 2, k] += d * (wx * ry - wy * rx)
                else:
                    J[3 * m, k] += d * wx
                    J[3 * m + 1, k] += d * wy
                    J[3 * m + 2, k] += d * wz


@njit(cache=True)
def damped_step(A: np.ndarray, g: np.ndarray, mu: float, diag: np.ndarray) -> np.ndarray:
    """Levenberg-Marquardt step ``-(A + mu diag(diag))^-1 g`` (``A`` (F, F), ``g``, ``diag``
    (F,)); raises ``numpy.linalg.LinAlgError`` on a singular system."""
    A_mu = A.copy()
    for i in range(A.shape[0]):
        A_mu[i, i] += mu * diag[i]
    return -np.linalg.solve(A_mu, g)
