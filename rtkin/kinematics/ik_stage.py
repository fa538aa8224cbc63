"""The IK stage: Skeleton3D -> one JointAngles per person, one warm-started solver each, with
per-coordinate quality and flags (see :mod:`rtkin.kinematics.ik` for the solver and the cost).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from rtkin.core.messages import AngleFlag, JointAngles, Skeleton3D
from rtkin.core.skeletons import get_skeleton
from rtkin.core.stats import Window
from rtkin.kinematics.ik import IKError, IKSettings, IKSolver
from rtkin.kinematics.model import apply_scale_steps, model_path_for, template_model

__all__ = ["IKStage"]


class IKStage:
    """Skeleton3D -> one JointAngles per person, with one warm-started :class:`IKSolver` each.

    Args:
        settings: IK settings; ``settings.skeleton`` must match the incoming messages.
        model_path: model file overriding ``settings.model``.
        spare: build the first person's solver now (a live stage: the compiled kinematics load
            and are checked before the first frame); False when every person gets a scaled model
            through :meth:`use_model` before their first frame (an offline pass).

    Attributes:
        counters: ``frames`` (messages), ``people`` (person-frames seen), ``outputs``,
            ``no_markers`` (too few usable keypoints: no output), ``failed`` (solver error: no
            output), ``solvers_created``, ``forgotten`` (solvers dropped after ``forget_after_s``).
        timing: seconds per solved person-frame (:class:`rtkin.core.stats.Window`).
    """

    def __init__(self, settings: IKSettings = IKSettings(), model_path: str | Path | None = None, *,
                 spare: bool = True):
        self.settings = settings
        self.model_path = model_path
        self.skeleton = get_skeleton(settings.skeleton)
        self._solvers: dict[int, IKSolver] = {}
        self._checked_names: tuple[str, ...] | None = None  # the names of the last validated JointAngles
        path = model_path_for(settings, model_path)
        template_model(path, self.skeleton, settings.extra_marker_set)  # load (and fail) now, not at the first person
        # the first person's solver now: its compiled kinematics load (or, on a first run, compile)
        # and are checked against OpenSim here, not at the first frame
        self._spare: IKSolver | None = IKSolver(settings, model_path) if spare else None
        self.counters = {"frames": 0, "people": 0, "outputs": 0, "no_markers": 0, "failed": 0,
                         "solvers_created": 0, "forgotten": 0}
        self.timing = Window()
        self.last_error: str = ""
        self._last_seen_ns: dict[int, int] = {}

    def reset(self) -> None:
        """Forget every person (their solvers and previous poses)."""
        self._solvers.clear()
        self._last_seen_ns.clear()

    def forget(self, person_id: int) -> None:
        """Forget one person (e.g. a retired track id); unknown ids are ignored."""
        self._solvers.pop(int(person_id), None)
        self._last_seen_ns.pop(int(person_id), None)

    def _evict(self, now_ns: int) -> None:
        """Drop the solvers of people not seen for ``forget_after_s``."""
        limit = int(self.settings.forget_after_s * 1e9)
        for pid in [p for p, t in self._last_seen_ns.items() if now_ns - t > limit]:
            self.forget(pid)
            self.counters["forgotten"] += 1

    @property
    def person_ids(self) -> tuple[int, ...]:
        """Ids of the people with a solver, in creation order."""
        return tuple(self._solvers)

    def solver(self, person_id: int) -> IKSolver:
        """The solver of ``person_id``, created on first use."""
        pid = int(person_id)
        s = self._solvers.get(pid)
        if s is None:
            s, self._spare = self._spare or IKSolver(self.settings, self.model_path), None
            self._solvers[pid] = s
            self.counters["solvers_created"] += 1
        return s

    def use_model(self, person_id: int, model_path: str | Path, model=None, flag: int = 0,
                  factors: Mapping[str, float] | None = None, warm: bool = True) -> None:
        """Solve ``person_id`` from now on with a scaled model, warm-started from their current pose.

        Args:
            model_path: the model file (or, with ``model``, the name it goes by).
            model: the same model already built in memory (owned by the solver from now on).
            flag: the model's scaling state, an AngleFlag bit (UNSCALED, HEIGHT_ONLY, PARTIAL) or
                0 = scaled to the subject (the JointAngles lose UNSCALED).
            factors: body -> uniform factor the model was scaled by (kept on the solver).
            warm: start from the person's current pose; False = the next frame starts cold (the
                current pose was solved on a model far from this one).
        """
        pid = int(person_id)
        s = IKSolver(self.settings, model_path, model=model)
        s.scale_flag = int(flag)
        s.scale_factors = dict(factors) if factors is not None else None
        old = self._solvers.get(pid)
        if old is not None and warm:
            s.continue_from(old)
        elif old is not None:
            s.state.setTime(old.state.getTime())
        self._solvers[pid] = s
        self.counters["solvers_created"] += 1

    def switch_model(self, person_id: int, model_path: str | Path, factors: Mapping[str, float],
                     mass_kg: float | None = None, flag: int = 0, warm: bool = True) -> Iterator[None]:
        """:meth:`use_model` in steps of a few ms each (a generator: every ``next()`` does one).

        Loading a saved ``.osim`` takes ~90 ms, and OpenSim holds the GIL, so a thread cannot hide
        it from a 60 Hz loop. Instead the scaled model is rebuilt in memory from the generic
        template exactly as :func:`rtkin.kinematics.scaling.scale_model` built the file at ``model_path``
        (clone ~5 ms, initSystem ~4 ms, ``Model.scale`` ~8 ms, solver set-up ~8 ms); a live loop
        runs one step after each frame it published, in the gap before the next frame.
        """
        model = template_model(model_path_for(self.settings, self.model_path), self.skeleton,
                               self.settings.extra_marker_set).clone()
        yield
        yield from apply_scale_steps(model, factors, mass_kg)
        self.use_model(person_id, model_path, model=model, flag=flag, factors=factors, warm=warm)

    def usable(self, sk: Skeleton3D, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``(K,)`` weight factors of person ``n``'s keypoints (0 = unused, ``held_weight`` for a
        held point) and ``(K,)`` held mask."""
        st = self.settings
        pts = sk.points[n]
        finite = np.isfinite(pts).all(-1)
        held = finite & (sk.n_views[n] == 0)
        measured = finite & ~held & (sk.scores[n] >= st.min_score) & (sk.reproj_error_px[n] <= st.max_reproj_px)
        factor = np.where(measured, 1.0, np.where(held, st.held_weight, 0.0))
        return factor, held

    def __call__(self, sk: Skeleton3D, extra=None) -> list[JointAngles]:
        """One JointAngles per solved person of ``sk``. ``extra``: the extra markers
        (``settings.extra_marker_weights``) of the same people in the same order, a Skeleton3D
        or anything with its fields (:class:`rtkin.kinematics.augment.AugmentedFrame`); their
        ``scores`` multiply their weights."""
        if sk.skeleton != self.skeleton.name or sk.n_keypoints != self.skeleton.n_keypoints:
            raise ValueError(f"IKStage expects {self.skeleton.name} ({self.skeleton.n_keypoints} keypoints), "
                             f"got {sk.skeleton} ({sk.n_keypoints})")
        if extra is not None and not np.array_equal(extra.person_ids, sk.person_ids):
            raise ValueError("IKStage: extra markers are not of the same people")
        self.counters["frames"] += 1
        out = []
        self._evict(sk.time_ns)
        for n, pid in enumerate(sk.person_ids):
            self.counters["people"] += 1
            self._last_seen_ns[int(pid)] = sk.time_ns
            ja = self._person(sk, n, int(pid), extra)
            if ja is not None:
                out.append(ja)
        self.counters["outputs"] += len(out)
        return out

    def _person(self, sk: Skeleton3D, n: int, pid: int, extra=None) -> JointAngles | None:
        factor, held = self.usable(sk, n)
        if np.count_nonzero(factor > 0) < self.settings.min_markers:  # before creating a solver
            self.counters["no_markers"] += 1
            return None
        t0 = time.perf_counter()
        solver = self.solver(pid)
        ex = self._extra(solver, extra, n)
        x, w = solver.markers_from_points(sk.points[n], factor, None if ex is None else ex[:2])
        if np.count_nonzero(w > 0) < self.settings.min_markers:
            self.counters["no_markers"] += 1
            return None
        try:
            sol = solver.solve_markers(x, w, sk.time_ns * 1e-9)
        except IKError as e:
            self.counters["failed"] += 1
            self.last_error = str(e)
            return None
        self.timing.add(time.perf_counter() - t0)
        quality, flags = self._quality(solver, sk, n, held, ex)
        if solver.coordinate_names is not self._checked_names:  # validated once per solver's names
            ja = JointAngles(sk.time_ns, sk.capture_ns, pid, solver.coordinate_names, sol.values,
                             float(sol.marker_rms_m), quality, flags)
            self._checked_names = solver.coordinate_names
            return ja
        # every array is new, made here to the message's rules (finite values: the solver's
        # check; quality in [0, 1] and AngleFlag bits: _quality): no re-validation (~40 us)
        return JointAngles.trusted(int(sk.time_ns), int(sk.capture_ns), pid, solver.coordinate_names, sol.values,
                                   float(sol.marker_rms_m), quality, flags)

    def _extra(self, solver: IKSolver, extra, n: int) -> tuple | None:
        """Person ``n``'s extra markers for the solver: ``(E, 3)`` points, ``(E,)`` weight
        factors (usability x score), and their ``(E,)`` views, reprojection errors, held mask;
        None without extra markers."""
        if not solver.n_extra or extra is None:
            return None
        if extra.n_keypoints != solver.n_extra:
            raise ValueError(f"IKStage: {extra.n_keypoints} extra markers, the solver tracks {solver.n_extra}")
        factor, held = self.usable(extra, n)
        return (extra.points[n], factor * extra.scores[n], extra.n_views[n].astype(np.int64),
                extra.reproj_error_px[n].astype(np.float64), held)

    def _quality(self, solver: IKSolver, sk: Skeleton3D, n: int, held_k: np.ndarray, ex: tuple | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
        """``(Q,)`` quality in [0, 1] and ``(Q,)`` AngleFlag bits from the markers the solution
        used (not gated or rejected as outliers), their views, reprojection errors and held state."""
        st = self.settings
        sk_def = self.skeleton
        views = sk.n_views[n].astype(np.int64)
        err = sk.reproj_error_px[n].astype(np.float64)
        held = held_k
        if sk_def.derived:  # a derived point has its worst source's views / error / held state
            views = np.concatenate([views, [views[list(d.sources)].min() for d in sk_def.derived]])
            err = np.concatenate([err, [err[list(d.sources)].max() for d in sk_def.derived]])
            held = np.concatenate([held, [held[list(d.sources)].any() for d in sk_def.derived]])
        if solver.n_extra:  # extra markers: their own views / error / held state (none: unused)
            e = solver.n_extra
            ev, ee, eh = ex[2:] if ex is not None else (np.zeros(e, np.int64), np.full(e, np.nan), np.zeros(e, bool))
            views, err, held = np.concatenate([views, ev]), np.concatenate([err, ee]), np.concatenate([held, eh])
        mp = solver.marker_points
        m_views, m_err, m_held = views[mp], err[mp], held[mp]  # (M,)
        used = solver.used
        few = ~m_held & (m_views < st.min_views)
        high = (m_views > 0) & (m_err > st.high_reproj_px)
        held_used = m_held & used
        good = used & ~m_held & (m_views >= st.min_views) & ~(m_err > st.high_reproj_px)
        D, count = solver.dependency_matrix()  # (Q, M) float 0/1, (Q,) markers per coordinate
        with np.errstate(invalid="ignore", divide="ignore"):
            quality = np.where(count > 0, (D @ good) / count, 0.0).astype(np.float32)
        flags = np.full(D.shape[0], solver.scale_flag, dtype=np.uint8)
        flags[(D @ few) > 0] |= np.uint8(AngleFlag.FEW_VIEWS)
        flags[(D @ high) > 0] |= np.uint8(AngleFlag.HIGH_REPROJ)
        flags[(D @ held_used) > 0] |= np.uint8(AngleFlag.HELD)
        unsolved = ~solver.solved  # held at the model default: the keypoints cannot observe it
        flags[unsolved] = np.uint8(solver.scale_flag) | np.uint8(AngleFlag.FILLED | AngleFlag.UNOBSERVABLE)
        quality[unsolved] = 0.0
        return quality, flags

    def status(self) -> dict[str, Any]:
        """Counters and p50/p99 ms per solved person-frame."""
        return {"counters": dict(self.counters), "timing_ms": self.timing.summary(), "people": len(self._solvers)}
