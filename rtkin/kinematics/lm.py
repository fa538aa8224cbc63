"""The IK's Levenberg-Marquardt solve in one compiled call (Numba), on the compiled forward
kinematics of :mod:`rtkin.kinematics.fastfk`.

:meth:`rtkin.kinematics.ik.IKSolver._gauss_newton` is a loop of small numpy operations (normal
equations, robust weights, the posture and pelvis-pitch priors, a damped step, a trial pose):
one warm solve spent ~0.6 ms in Python around ~40 us of kinematics (cProfile, 65 markers).
:func:`lm_solve` runs the same loop, the same terms in the same order, in one call; the solver
uses it whenever the kinematics are compiled (the OpenSim fallback keeps the Python loop).

Terms (``F`` free coordinates ``qf``, markers ``m`` with weight ``w_m > 0``, residual ``r_m``):

- markers: Cauchy ``w c^2 log(1 + |r|^2 / c^2)`` (``c`` = robust scale; plain ``w |r|^2``
  when it is infinite), iteratively reweighted (``w / (1 + |r|^2 / c^2)``);
- smoothing: ``prior |qf - qf0|^2`` (``qf0``: the starting pose);
- posture: ``pw . qf^2``, ``pw`` = the base weight faded by the pose (``fade`` = 0: to nothing
  at 90 deg) or by the markers' information on the coordinate (``fade`` > 0), updated with
  every accepted step;
- pelvis pitch: ``w_p th^2`` (``th``: the pelvis's forward axis above the horizontal, ``w_p``
  faded to nothing at 90 deg).

Imports: numpy, numba, :mod:`rtkin.kinematics.fastfk`.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from rtkin.kinematics.fastfk import _evaluate, damped_step

__all__ = ["lm_solve", "gauss_newton_python", "robust_cost", "pelvis_pitch_grad"]

_HALF_PI = 0.5 * math.pi


@njit(cache=True)
def pelvis_pitch_grad(t: float, l: float, r: float):  # noqa: E741 - the model's names (tilt, list, rotation)
    """Pelvis forward-axis angle above the horizontal (rad) and its gradient ``(3,)`` over
    ``(pelvis_tilt, pelvis_list, pelvis_rotation)`` (ground_pelvis: ``Rz(t) Rx(l) Ry(r)``,
    OpenSim ground y up)."""
    st, ct, sl, cl, sr, cr = math.sin(t), math.cos(t), math.sin(l), math.cos(l), math.sin(r), math.cos(r)
    v = st * cr + ct * sl * sr  # y component of R e_x
    g = np.zeros(3)
    if abs(v) >= 1.0:
        return math.copysign(_HALF_PI, v), g
    k = 1.0 / math.sqrt(1.0 - v * v)
    g[0] = k * (ct * cr - st * sl * sr)
    g[1] = k * (ct * cl * sr)
    g[2] = k * (-st * sr + ct * sl * cr)
    return math.asin(v), g


@njit(cache=True)
def _marker_cost(P, x, w, c2, rho):
    """Robust marker cost; ``rho`` (M,) <- the IRLS weights (0 for unused markers)."""
    cost = 0.0
    for m in range(P.shape[0]):
        if w[m] <= 0.0:
            rho[m] = 0.0
            continue
        d2 = (P[m, 0] - x[m, 0]) ** 2 + (P[m, 1] - x[m, 1]) ** 2 + (P[m, 2] - x[m, 2]) ** 2
        if math.isinf(c2):
            cost += w[m] * d2
            rho[m] = w[m]
        else:
            cost += w[m] * (c2 * math.log1p(d2 / c2))
            rho[m] = w[m] / (1.0 + d2 / c2)
    return cost


@njit(cache=True)
def _posture(J, w, qf, base, fade, on, pw):
    """``pw`` (F,) <- the posture prior weights at ``qf`` (see the module doc)."""
    F = qf.shape[0]
    for j in range(F):
        pw[j] = 0.0
        if not on or base[j] <= 0.0:
            continue
        if fade[j] == 0.0:
            f = 1.0 - (qf[j] / _HALF_PI) ** 2
        else:
            info = 0.0
            for m in range(w.shape[0]):
                if w[m] > 0.0:
                    info += w[m] * (J[3 * m, j] ** 2 + J[3 * m + 1, j] ** 2 + J[3 * m + 2, j] ** 2)
            f = 1.0 - info / fade[j]
        pw[j] = base[j] * min(max(f, 0.0), 1.0)


@njit(cache=True)
def _pitch(q, pel_q, pitch_w):
    """(cost, weight, angle, gradient (3,)) of the pelvis pitch prior at ``q``."""
    th, jp = pelvis_pitch_grad(q[pel_q[0]], q[pel_q[1]], q[pel_q[2]])
    wp = pitch_w * max(0.0, 1.0 - (th / _HALF_PI) ** 2)
    return wp * th * th, wp, th, jp


@njit(cache=True)
def lm_solve(q, free, lo, hi, x, w, iterations, prior, c2, damping, step_tol,
             post_on, post_base, post_fade, pel_pos, pel_q, pitch_w,
             parent, X_PF, X_MB, axes, kind, qi, coef, table, t_n, t_x, t_f, t_df, desc, marker_body,
             stations, colmap):
    """Levenberg-Marquardt over the ``free`` q indices from ``q`` within ``[lo, hi]``: the loop
    of ``IKSolver._gauss_newton`` (see the module doc). ``x`` (M, 3) observed markers (OpenSim
    ground, m), ``w`` (M,) weights (0 = unused); ``post_*`` (F,) posture prior per free
    coordinate (``post_on`` False: none); ``pel_pos`` (3,) positions of the pelvis angles in
    ``free`` (empty: no pitch prior), ``pel_q`` their q indices; the rest: the tree's arrays
    (``fastfk._evaluate``) with ``colmap`` mapping q indices to ``free`` positions.

    Returns ``(q (nq,), markers (M, 3), iterations, model evaluations)``."""
    M, F = x.shape[0], free.shape[0]
    q = np.minimum(np.maximum(q, lo), hi)
    q0 = np.empty(F)
    for j in range(F):
        q0[j] = q[free[j]]
    P, J = np.empty((M, 3)), np.empty((3 * M, F))
    _evaluate(q, parent, X_PF, X_MB, axes, kind, qi, coef, table, t_n, t_x, t_f, t_df, desc, marker_body,
              stations, colmap, P, J)
    evals = 1
    rho = np.empty(M)
    cost = _marker_cost(P, x, w, c2, rho)
    qf = q0.copy()
    pw = np.zeros(F)
    _posture(J, w, qf, post_base, post_fade, post_on, pw)
    pitch_on = post_on and pitch_w > 0.0 and pel_pos.shape[0] == 3
    for j in range(F):
        cost += pw[j] * qf[j] * qf[j]
    if pitch_on:
        cost += _pitch(q, pel_q, pitch_w)[0]
    mu = damping
    it = 0
    A, g, diag = np.empty((F, F)), np.empty(F), np.empty(F)
    nz = np.empty(F, dtype=np.int64)
    P_new, J_new, rho_new = np.empty((M, 3)), np.empty((3 * M, F)), np.empty(M)
    step = 0.0
    for it in range(1, iterations + 1):
        A[:, :] = 0.0
        g[:] = 0.0
        for m in range(M):  # J^T diag(rho) J, J^T diag(rho) r over the used markers
            if w[m] <= 0.0:
                continue
            for c in range(3):
                row = 3 * m + c
                r = rho[m] * (P[m, c] - x[m, c])
                n = 0
                for a in range(F):  # a marker moves with the few coordinates of its chain
                    if J[row, a] != 0.0:
                        nz[n] = a
                        n += 1
                for i in range(n):
                    a = nz[i]
                    ja = J[row, a]
                    g[a] += ja * r
                    s = rho[m] * ja
                    for k in range(i, n):
                        A[a, nz[k]] += s * J[row, nz[k]]
        for a in range(F):
            for b in range(a + 1, F):
                A[b, a] = A[a, b]
        for j in range(F):
            qf[j] = q[free[j]]
            if prior > 0.0:
                A[j, j] += prior
                g[j] += prior * (qf[j] - q0[j])
            A[j, j] += pw[j]
            g[j] += pw[j] * qf[j]
        if pitch_on:
            c_p, wp, th, jp = _pitch(q, pel_q, pitch_w)
            if c_p > 0.0:
                for a in range(3):
                    for b in range(3):
                        A[pel_pos[a], pel_pos[b]] += wp * jp[a] * jp[b]
                    g[pel_pos[a]] += wp * th * jp[a]
        for j in range(F):
            diag[j] = A[j, j] + 1e-9
        moved = False
        for _ in range(8):  # raise the damping until the cost decreases
            A_mu = A.copy()
            for j in range(F):
                A_mu[j, j] += mu * diag[j]
            try:
                dq = -np.linalg.solve(A_mu, g)
            except Exception:  # noqa: BLE001 - a singular system (numba: no exception classes)
                mu *= 10.0
                continue
            if np.abs(dq).max() < step_tol:
                return q, P, it, evals  # converged: the next step would be negligible
            q_new = q.copy()
            for j in range(F):
                q_new[free[j]] += dq[j]
            q_new = np.minimum(np.maximum(q_new, lo), hi)
            _evaluate(q_new, parent, X_PF, X_MB, axes, kind, qi, coef, table, t_n, t_x, t_f, t_df, desc,
                      marker_body, stations, colmap, P_new, J_new)
            evals += 1
            cost_new = _marker_cost(P_new, x, w, c2, rho_new)
            for j in range(F):
                v = q_new[free[j]]
                cost_new += prior * (v - q0[j]) ** 2 + pw[j] * v * v
            if pitch_on:
                cost_new += _pitch(q_new, pel_q, pitch_w)[0]
            if cost_new <= cost or not math.isfinite(cost):
                step = np.abs(q_new - q).max()
                q = q_new
                P, P_new = P_new, P
                J, J_new = J_new, J
                rho, rho_new = rho_new, rho
                cost = cost_new
                if post_on and np.any(pw != 0.0):  # the fade follows the pose
                    for j in range(F):
                        qf[j] = q[free[j]]
                    pw_new = np.empty(F)
                    _posture(J, w, qf, post_base, post_fade, post_on, pw_new)
                    for j in range(F):
                        cost += (pw_new[j] - pw[j]) * qf[j] * qf[j]
                    pw = pw_new
                mu = max(mu / 3.0, 1e-9)
                moved = True
                break
            mu *= 4.0
        if not moved or step < step_tol:
            break
    return q, P, it, evals


def robust_cost(r: np.ndarray, w: np.ndarray, c: float) -> tuple[float, np.ndarray]:
    """Robust marker cost of residuals ``r`` (n, 3) m with weights ``w`` (n,), and the IRLS
    weights ``(n,)``: Cauchy ``w c^2 log(1 + d^2 / c^2)`` (~ ``w d^2`` for ``d << c``), or
    plain ``w d^2`` when ``c`` is inf."""
    d2 = np.einsum("ij,ij->i", r, r)
    if not math.isfinite(c):
        return float(w @ d2), w
    c2 = c * c
    return float(w @ (c2 * np.log1p(d2 / c2))), w / (1.0 + d2 / c2)


def gauss_newton_python(s, q: np.ndarray, x: np.ndarray, w: np.ndarray, free: np.ndarray, iterations: int,
                        prior: float = 0.0, bounds: tuple[np.ndarray, np.ndarray] | None = None
                        ) -> tuple[np.ndarray, np.ndarray, int]:
    """The loop of :func:`lm_solve` in numpy for the solver ``s`` (an
    :class:`rtkin.kinematics.ik.IKSolver`), on its forward kinematics whatever they are (the
    OpenSim fallback; the reference the compiled loop is tested against)."""
    use = w > 0
    xs, wu = x[use], w[use]
    rows = np.repeat(np.flatnonzero(use) * 3, 3) + np.tile(np.arange(3), int(use.sum()))
    lo, hi = bounds if bounds is not None else (s._lo, s._hi)
    q = np.clip(q, lo, hi)
    q0 = q[free].copy()
    every = bool(use.all())
    P, J = s._fk(q, free)
    Jf = J if every else J[rows]
    ws_base = np.repeat(wu, 3)
    cost, rho = robust_cost(P[use] - xs, wu, s.settings.robust_scale_m)
    pw = s._posture_weights(Jf, ws_base, free, q[free]) if s._posture_on else np.zeros(free.size)
    cost += float(pw @ q[free] ** 2) + s._pitch_term(q, free)[0]
    mu = s.settings.damping
    it = 0
    di = np.arange(free.size)  # diagonal of the normal matrix
    for it in range(1, iterations + 1):
        ws = np.repeat(rho, 3)
        A = Jf.T @ (Jf * ws[:, None])
        g = Jf.T @ (ws * (P[use] - xs).ravel())
        if prior > 0:
            A[di, di] += prior
            g += prior * (q[free] - q0)
        A[di, di] += pw
        g += pw * q[free]
        c_p, pos, jp, w_p, th = s._pitch_term(q, free)
        if c_p > 0:
            A[np.ix_(pos, pos)] += w_p * np.outer(jp, jp)
            g[pos] += w_p * th * jp
        diag = A[di, di] + 1e-9
        moved = False
        for _ in range(8):  # raise the damping until the cost decreases
            try:
                dq = damped_step(A, g, mu, diag)
            except np.linalg.LinAlgError:
                mu *= 10.0
                continue
            if np.abs(dq).max() < s.settings.step_tolerance:
                return q, P, it  # converged: the next step would be negligible
            q_new = q.copy()
            q_new[free] += dq
            q_new = np.clip(q_new, lo, hi)
            P_new, J_new = s._fk(q_new, free)
            cost_new, rho_new = robust_cost(P_new[use] - xs, wu, s.settings.robust_scale_m)
            cost_new += prior * float(np.sum((q_new[free] - q0) ** 2)) + float(pw @ q_new[free] ** 2) \
                + s._pitch_term(q_new, free)[0]
            if cost_new <= cost or not math.isfinite(cost):
                step = np.abs(q_new - q).max()
                q, P, cost, rho = q_new, P_new, cost_new, rho_new
                Jf = J_new if every else J_new[rows]
                if s._posture_on and pw.any():  # the fade follows the pose
                    pw_new = s._posture_weights(Jf, ws_base, free, q[free])
                    cost += float((pw_new - pw) @ q[free] ** 2)
                    pw = pw_new
                mu = max(mu / 3.0, 1e-9)
                moved = True
                break
            mu *= 4.0
        if not moved or step < s.settings.step_tolerance:
            break
    return q, P, it
