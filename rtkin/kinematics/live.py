"""Live kinematics of the people one IK process serves: each person's model scaled from the first
frame and refined as evidence comes, switched in short warm-started steps, and the IK stage.
A plain object: the IK process only receives, calls it, sends and counts; tests drive it without
processes.

The scaling of one person over a session (the JointAngles flags say where it is):

- frame 0: with ``height_m`` given, the generic model scaled uniformly to that height
  (HEIGHT_ONLY); without it, the generic model (UNSCALED) until a first estimate of the stature
  and the segments seen so far, at 0.1 s of usable data.
- every solved frame adds per-segment evidence (:class:`rtkin.kinematics.progressive.ProgressiveScaler`);
  at 0.25, 0.5, 1 and 3 s and ``scaling_seconds`` of usable data the per-body factors are refined (PARTIAL),
  then every few seconds until they stop changing (SCALED).
- each refinement is applied by rebuilding the model in memory from the generic one in a few
  short steps between frames (:meth:`LiveKinematics.step`), warm-started from the current pose;
  a large change is applied as several smaller switches, so the angles glide instead of jumping.
- the scaled model is written as ``.osim`` with OpenSim's ScaleTool model scaler in the
  background (from the second refinement on, and when SCALED).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from rtkin.core.messages import AngleFlag, JointAngles, Skeleton3D
from rtkin.kinematics.ik import IKSettings
from rtkin.kinematics.ik_stage import IKStage
from rtkin.kinematics.model import apply_scale, model_path_for, template_model
from rtkin.kinematics.progressive import (PARAMETERS, REFINE_AT_S, ProgressiveScaler, ProgressiveScalingSettings,
                                          ScaleEstimate, length_jacobian, stature_factor, stature_jacobian,
                                          to_body_factors)

__all__ = ["LiveKinematicsSettings", "LiveKinematics", "scaling_state"]

#: a refinement not in use this long after its data is stepped faster, s
CATCH_UP_S = 0.4
_SETTLED_S = 1.0  # the scaled model file is written from the refinement at this much usable data on


@dataclass(frozen=True)
class LiveKinematicsSettings:
    """The subject and the scaling schedule of a live run (TOML ``[ik]``, see
    :class:`rtkin.runtime.config.IKRunSettings`, which adds the process layout).

    Attributes:
        scaling: scale the model to each person live (see the module doc); the scaled model is
            saved in the output folder.
        scaling_seconds: usable data by which the scaling should be complete, s: refinements at
            0.25, 0.5, 1 and 3 s (:data:`rtkin.kinematics.progressive.REFINE_AT_S`) and this, then
            every 5 s until the factors stop changing.
        until_scaled: ``"generic"`` (joint angles from the first frame, on the height-scaled or
            generic model, flagged HEIGHT_ONLY / UNSCALED) or ``"wait"`` (no joint angles until
            the first per-segment refinement is in use; the frames are solved meanwhile, for the
            evidence).
        height_m: subject height, m (0 = unknown: estimated with the segments from the data):
            the first frame is solved on the generic model scaled to it, and it anchors the
            segments the keypoints do not measure.
        mass_kg: subject mass, kg (0 = unknown); the scaled model's total mass.
        augment: marker augmentation (:mod:`rtkin.kinematics.augment`): Pose2Sim's LSTM
            augmenter turns each person's keypoints into 43 anatomical markers, tracked by the IK
            beside the keypoints. ``None`` = "auto", resolved by the run from the keypoint source
            (:func:`rtkin.kinematics.augment.resolve_augment`: on for real detector keypoints with
            heels and toes, off for the virtual subject, whose keypoints are the model's own
            markers, and for COCO_17); unresolved, it is off here.
    """

    scaling: bool = True
    scaling_seconds: float = 10.0
    until_scaled: str = "generic"
    height_m: float = 0.0
    mass_kg: float = 0.0
    augment: bool | None = None

    def __post_init__(self) -> None:
        if self.height_m < 0 or self.mass_kg < 0 or (self.height_m and not 0.5 <= self.height_m <= 2.5):
            raise ValueError(f"ik.height_m must be 0 (unknown) or in [0.5, 2.5] m and ik.mass_kg >= 0, "
                             f"got {self.height_m} m, {self.mass_kg} kg")
        if self.until_scaled not in ("generic", "wait"):
            raise ValueError(f"ik.until_scaled must be 'generic' or 'wait', got {self.until_scaled!r}")
        if not self.scaling_seconds > 0:
            raise ValueError(f"ik.scaling_seconds must be > 0, got {self.scaling_seconds}")

    def schedule(self) -> tuple[float, ...]:
        """Seconds of usable data at which the factors are refined."""
        return tuple(sorted({s for s in REFINE_AT_S if s < self.scaling_seconds} | {float(self.scaling_seconds)}))


def scaling_state(flags: np.ndarray) -> str:
    """``"UNSCALED"``, ``"HEIGHT_ONLY"``, ``"PARTIAL"`` or ``"SCALED"`` from a JointAngles'
    ``(Q,)`` flags (the scaling bits are the same on every coordinate)."""
    f = int(np.bitwise_or.reduce(np.asarray(flags, dtype=np.uint8))) if len(flags) else 0
    for bit, name in ((AngleFlag.UNSCALED, "UNSCALED"), (AngleFlag.HEIGHT_ONLY, "HEIGHT_ONLY"),
                      (AngleFlag.PARTIAL, "PARTIAL")):
        if f & int(bit):
            return name
    return "SCALED"


@dataclass
class _Person:
    scaler: ProgressiveScaler
    target: ScaleEstimate | None = None
    switch: Iterator[None] | None = None
    switch_to: dict[str, float] | None = None
    refinements: list[tuple[float, dict]] = field(default_factory=list)
    refined_at: float = 0.0  # time.monotonic() of the last refinement
    #: per refinement: (usable s, wall s from its data to its model in use)
    landed: list[tuple[float, float]] = field(default_factory=list)


class LiveKinematics:
    """Stage: ``__call__(Skeleton3D) -> list[JointAngles]`` for every person in the message, with
    each person's model scaled live; :meth:`step` does one short piece of a pending model switch
    (call it in the gap after publishing a frame).

    Args:
        settings: subject and scaling schedule.
        solver: IK settings (``solver.skeleton`` is the stream's keypoint set).
        out_dir: where each person's scaled model is written (``<name>_person<id>_scaled.osim``);
            None = not written.
        name: session name (file names).
        executor: background process pool writing the models (see
            :func:`rtkin.kinematics.scaling.background_executor`); None = one started on demand.
        log: where progress lines go (default: stderr).
        scaling: the evidence thresholds and priors (:class:`ProgressiveScalingSettings`); its
            schedule is replaced by ``settings.schedule()``.

    Attributes:
        ik: the :class:`IKStage`. scaled_models: person id -> scaled model file written.
        augmenter: the :class:`~rtkin.kinematics.augment.MarkerAugmenter` (``settings.augment``),
            else None; ``augmented``: its output for the last message
            (:class:`~rtkin.kinematics.augment.AugmentedFrame`, same people; ``.message()`` is
            the Skeleton3D to publish), else None.
    """

    def __init__(self, settings: LiveKinematicsSettings, solver: IKSettings, out_dir: str | Path | None,
                 name: str = "session", executor=None, log=None,
                 scaling: ProgressiveScalingSettings = ProgressiveScalingSettings()):
        import dataclasses

        self.settings = settings
        self.solver = solver
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.name = name
        self.executor = executor
        self._pool = None
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.augmenter = None
        self.augmented = None
        if settings.augment:
            from rtkin.kinematics.augment import AugmentSettings, MarkerAugmenter, augmented_ik_settings

            self.augmenter = MarkerAugmenter(solver.skeleton, AugmentSettings(height_m=settings.height_m,
                                                                              mass_kg=settings.mass_kg))
            solver = augmented_ik_settings(solver, self.augmenter.marker_names)
        self.ik = IKStage(solver)
        self.generic = model_path_for(solver)
        self.scaling = dataclasses.replace(scaling, refine_at_s=settings.schedule())
        self._people: dict[int, _Person] = {}
        self._writes: dict[int, tuple] = {}  # person -> (future, path, estimate) of the write running
        self._due: dict[int, ScaleEstimate] = {}  # person -> the estimate their file should hold
        self._on_disk: dict[int, ScaleEstimate] = {}  # person -> the estimate their file holds
        self.scaled_models: dict[int, str] = {}
        self._height_model = None
        self._height_factors: dict[str, float] | None = None
        if settings.scaling:  # the heavy set-up now, not at the first frame
            length_jacobian(self.generic, self.ik.skeleton)
            stature_jacobian(self.generic)  # ~0.5 s: at the first frame, it shed 30 frames
            if settings.height_m:
                k = stature_factor(settings.height_m, self.generic)
                self._height_factors = to_body_factors({p: k for p in PARAMETERS})
                self._height_model = template_model(self.generic, self.ik.skeleton, solver.extra_marker_set).clone()
                apply_scale(self._height_model, self._height_factors, settings.mass_kg or None)

    @property
    def counters(self) -> dict[str, int]:
        return self.ik.counters

    def forget(self, person_id: int) -> None:
        """Drop a person's IK and scaling state (a scaled model already written stays listed)."""
        pid = int(person_id)
        self.ik.forget(pid)
        if self.augmenter is not None:
            self.augmenter.forget(pid)
        self._people.pop(pid, None)

    def scaler(self, person_id: int) -> ProgressiveScaler | None:
        """The person's scaling evidence and estimate (None if not started)."""
        p = self._people.get(int(person_id))
        return p.scaler if p else None

    def __call__(self, sk: Skeleton3D) -> list[JointAngles]:
        st = self.settings
        aug = self.augmented = self.augmenter.augment(sk) if self.augmenter is not None else None
        if not st.scaling:
            return self.ik(sk, aug)
        self._collect_writes()
        for pid in (int(p) for p in sk.person_ids):
            if pid not in self._people:
                self._start(pid)
            elif pid not in self.ik.person_ids:  # the IK dropped the solver (a long gap): same
                self._restore(pid)  # evidence, the model back
        out = self.ik(sk, aug)
        ids = [int(p) for p in sk.person_ids]
        for ja in out:
            self._evidence(ja.person_id, sk, ids.index(ja.person_id))
        if st.until_scaled == "wait":  # solved (the evidence), not published before per-segment scaling
            wait = int(AngleFlag.UNSCALED | AngleFlag.HEIGHT_ONLY)
            out = [ja for ja in out if not self.ik.solver(ja.person_id).scale_flag & wait]
        return out

    def _start(self, pid: int) -> None:
        """A new person: their evidence collector, and the height-scaled model from frame 0."""
        self.ik.forget(pid)
        self._people[pid] = _Person(ProgressiveScaler(self.scaling, self.solver.skeleton, self.generic,
                                                      self.settings.height_m))
        if self._height_model is not None:
            self.ik.use_model(pid, self._model_name(pid), model=self._height_model.clone(),
                              flag=int(AngleFlag.HEIGHT_ONLY), factors=self._height_factors)

    def _restore(self, pid: int) -> None:
        person = self._people[pid]
        if self._height_model is not None:
            self.ik.use_model(pid, self._model_name(pid), model=self._height_model.clone(),
                              flag=int(AngleFlag.HEIGHT_ONLY), factors=self._height_factors)
        if person.target is not None:
            self._next_switch(pid, limit=False)

    def _model_name(self, pid: int) -> Path:
        base = self.out_dir if self.out_dir is not None else Path(".")
        return base / f"{self.name}_person{pid}_scaled.osim"

    def _evidence(self, pid: int, sk: Skeleton3D, n: int) -> None:
        person = self._people[pid]
        sc = person.scaler
        sc.observe(self.ik.solver(pid), sk, n)
        if not sc.due():
            return
        est = sc.refine()
        if est is None:
            return
        person.target = est
        person.refined_at = time.monotonic()
        person.refinements.append((sc.usable_s, dict(est.params)))
        state = "SCALED" if est.flag == 0 else "PARTIAL"
        self.log(f"rtkin: person {pid} scaling at {round(sc.usable_s, 2):g} s of usable data: {state}, "
                 f"stature {est.stature_m:.2f} m, " + ", ".join(f"{k} {v:.3f}" for k, v in est.params.items()))
        # the first estimate on a second of data or more: worth checking the height against, and
        # writing (the earlier ones are soon replaced)
        settle_s = min(_SETTLED_S, self.settings.scaling_seconds)
        settled = sc.usable_s >= settle_s or est.flag == 0
        first_settled = settled and not any(u >= settle_s for u, _ in person.refinements[:-1])
        if self.settings.height_m and abs(est.stature_m / self.settings.height_m - 1) > 0.06 and first_settled:
            self.log(f"rtkin: person {pid}: the keypoints give a {est.stature_m:.2f} m tall model, the configured "
                     f"height is {self.settings.height_m:.2f} m: check the height, or the calibration's scale")
        if person.switch is None:
            self._next_switch(pid)
        if self.out_dir is not None and settled:
            self._write(pid, est)

    def _next_switch(self, pid: int, limit: bool = True) -> None:
        """Start the switch towards the person's target (at most ``max_step`` per factor)."""
        person = self._people[pid]
        target = person.target.factors
        cur = self.ik.solver(pid).scale_factors
        # from the generic model (angles flagged UNSCALED, a stature estimate on the way) in one go
        step = self.scaling.max_step if limit and cur is not None else 0.0
        cur = cur or {b: 1.0 for b in target}
        nxt, last = {}, True
        for b, f in target.items():
            c = cur.get(b, 1.0)
            if step > 0 and abs(f / c - 1) > step:
                f = c * (1 + step * np.sign(f / c - 1))
                last = False
            nxt[b] = float(f)
        flag = person.target.flag if last else int(AngleFlag.PARTIAL)
        person.switch_to = nxt
        person.switch = self.ik.switch_model(pid, self._model_name(pid), nxt, self.settings.mass_kg or None, flag)

    def prepare(self) -> None:
        """Idle-time work for the next frame (the augmenter's recurrent products): a live loop
        calls it after publishing a frame's angles; the results do not depend on it."""
        if self.augmenter is not None:
            self.augmenter.prepare()

    @property
    def pending(self) -> bool:
        """A model switch is in progress (call :meth:`step`)."""
        return any(p.switch is not None for p in self._people.values())

    def step(self) -> None:
        """One step of each pending model switch (a few ms each); a refinement still not in use
        ``CATCH_UP_S`` after its data (a busy machine: few frame gaps) takes three steps per call."""
        for pid, person in self._people.items():
            n = 3 if person.switch is not None and time.monotonic() - person.refined_at > CATCH_UP_S else 1
            for _ in range(n):
                if person.switch is not None:
                    self._step_person(pid, person)

    def _step_person(self, pid: int, person: _Person) -> None:
        if next(person.switch, StopIteration) is not StopIteration:
            return
        person.switch = None
        reached = all(abs(person.switch_to[b] / f - 1) < 1e-9 for b, f in person.target.factors.items())
        if not reached:
            self._next_switch(pid)
            return
        dt = time.monotonic() - person.refined_at
        person.landed.append((person.target.usable_s, dt))
        self.log(f"rtkin: person {pid} model of {round(person.target.usable_s, 2):g} s of usable data in use "
                 f"{dt * 1e3:.0f} ms after its data")

    # ------------------------------------------------------------------ writing the .osim
    def _write(self, pid: int, est: ScaleEstimate) -> None:
        """Have ``est`` written to the person's model file: now in the background, or, while an
        older write runs, as soon as it is done (:meth:`_collect_writes`)."""
        self._due[pid] = est
        if pid not in self._writes:
            self._submit(pid, est)

    def _submit(self, pid: int, est: ScaleEstimate, pool=None) -> None:
        from rtkin.kinematics.scaling import background_executor

        pool = pool or self.executor
        if pool is None:
            if self._pool is None:
                self._pool = background_executor()
            pool = self._pool
        path = self._model_name(pid)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        fut = pool.submit(_write_model, str(self.generic), est.factors, str(path), self.settings.mass_kg or None,
                          self.solver.skeleton)
        self._writes[pid] = (fut, path, est)

    def _collect_writes(self) -> None:
        for pid, (fut, path, est) in list(self._writes.items()):
            if not fut.done():
                continue
            del self._writes[pid]
            try:
                fut.result()
            except Exception as e:  # noqa: BLE001 - reported; the live model is unaffected
                self.log(f"rtkin: person {pid}: writing the scaled model failed: {type(e).__name__}: {e}")
                continue
            self._written(pid, path, est)
            if self._due[pid] is not est:  # a newer estimate came while this one was written
                self._submit(pid, self._due[pid])

    def _written(self, pid: int, path: Path, est: ScaleEstimate) -> None:
        self._on_disk[pid] = est
        if self.scaled_models.get(pid) != str(path):
            self.log(f"rtkin: person {pid} scaled model written: {path}")
        self.scaled_models[pid] = str(path)

    def finish(self) -> None:
        """The session ends: each person's latest estimate that is not in their model file yet is
        written now, in this process (~0.1-0.3 s each). Call it once the background writer is
        stopped (a write it had running is abandoned: the file is replaced whole, never left half
        written, see :func:`rtkin.kinematics.scaling.write_model`)."""
        from rtkin.kinematics.scaling import InlineExecutor

        self._collect_writes()
        self._writes.clear()
        now = InlineExecutor()
        for pid, est in self._due.items():
            path = self._model_name(pid)
            for stray in path.parent.glob(f".{path.name}.*.part"):  # of a writer killed mid-file
                stray.unlink(missing_ok=True)
            if self._on_disk.get(pid) is not est:
                self._submit(pid, est, now)
        self._collect_writes()

    def close(self, wait: bool = True) -> None:
        """``wait``: let the model writes finish, then write what they missed (:meth:`finish`);
        stop the pool started on demand."""
        if wait:
            deadline = time.monotonic() + 120.0
            while self._writes and time.monotonic() < deadline:
                for fut, _, _ in list(self._writes.values()):
                    try:
                        fut.result(timeout=max(0.0, deadline - time.monotonic()))
                    except Exception:  # noqa: BLE001 - reported by _collect_writes
                        pass
                self._collect_writes()
            self.finish()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=not wait)
            self._pool = None

    def status(self) -> dict:
        """Per person: the scaling evidence and state."""
        return {pid: p.scaler.status() for pid, p in self._people.items()}


def _write_model(generic: str, factors: dict, path: str, mass_kg: float | None, skeleton: str) -> str:
    """Scaled model file with OpenSim's ScaleTool model scaler (runs in the background process)."""
    from rtkin.kinematics.scaling import scale_model

    return str(scale_model(generic, factors, path, mass_kg=mass_kg, skeleton=skeleton))
