"""Live kinematics of the people one IK process serves: online scaling, the switch to each
person's scaled model in short steps, and the IK stage. A plain object: the IK process only
receives, calls it, sends and counts; tests drive it without processes.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from rtkin.core.messages import JointAngles, Skeleton3D
from rtkin.kinematics.ik import IKSettings
from rtkin.kinematics.ik_stage import IKStage
from rtkin.kinematics.scaling import OnlineScaler, ScalingSettings

__all__ = ["LiveKinematicsSettings", "LiveKinematics"]


@dataclass(frozen=True)
class LiveKinematicsSettings:
    """The subject and the scaling schedule of a live run (TOML ``[ik]``, see
    :class:`rtkin.runtime.config.IKRunSettings`, which adds the process layout).

    Attributes:
        scaling: scale the model to each person from their first ``scaling_seconds`` of good
            frames (:class:`rtkin.kinematics.scaling.OnlineScaler`); the scaled model is saved in
            the output folder.
        scaling_seconds: good data collected before scaling, s.
        until_scaled: ``"generic"`` (joint angles on the generic model meanwhile, flagged
            UNSCALED) or ``"wait"`` (no joint angles until the person is scaled).
        height_m: subject height, m (0 = unknown); with scaling, it scales the segments the
            keypoints cannot measure and is checked against the scaled model's height.
        mass_kg: subject mass, kg (0 = unknown); the scaled model's total mass.
        augment: marker augmentation (:mod:`rtkin.kinematics.augment`): Pose2Sim's LSTM
            augmenter turns each person's keypoints into 43 anatomical markers, tracked by the IK
            beside the keypoints. ``None`` = "auto", resolved by the run from the keypoint source
            (:func:`rtkin.kinematics.augment.resolve_augment`: on for real detector keypoints with
            heels and toes, off for the virtual subject, whose keypoints are the model's own
            markers, and for COCO_17); unresolved, it is off here.
    """

    scaling: bool = True
    scaling_seconds: float = 3.0
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


class LiveKinematics:
    """Stage: ``__call__(Skeleton3D) -> list[JointAngles]`` for every person in the message, with
    each person's model scaled live; :meth:`step` does one short piece of a pending model switch
    (call it in the gap after publishing a frame).

    Args:
        settings: subject and scaling schedule.
        solver: IK settings (``solver.skeleton`` is the stream's keypoint set).
        out_dir: where each person's scaled model is written (``<name>_person<id>_scaled.osim``).
        name: session name (file names).
        executor: background process pool for the scaling jobs (see
            :func:`rtkin.kinematics.scaling.background_executor`); None = one started on demand.
        log: where progress lines go (default: stderr).

    Attributes:
        ik: the :class:`IKStage`. scaled_models: person id -> scaled model path in use.
        augmenter: the :class:`~rtkin.kinematics.augment.MarkerAugmenter` (``settings.augment``),
            else None; ``augmented``: its output for the last message
            (:class:`~rtkin.kinematics.augment.AugmentedFrame`, same people; ``.message()`` is
            the Skeleton3D to publish), else None.
    """

    def __init__(self, settings: LiveKinematicsSettings, solver: IKSettings, out_dir: str | Path,
                 name: str = "session", executor=None, log=None):
        self.settings = settings
        self.solver = solver
        self.out_dir = Path(out_dir)
        self.name = name
        self.executor = executor
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.augmenter = None
        self.augmented = None
        if settings.augment:
            from rtkin.kinematics.augment import AugmentSettings, MarkerAugmenter, augmented_ik_settings

            self.augmenter = MarkerAugmenter(solver.skeleton, AugmentSettings(height_m=settings.height_m,
                                                                              mass_kg=settings.mass_kg))
            solver = augmented_ik_settings(solver, self.augmenter.marker_names)
        self.ik = IKStage(solver)
        self._scalers: dict[int, OnlineScaler] = {}
        self._switches: dict[int, tuple[Path, Iterator[None]]] = {}
        self.scaled_models: dict[int, str] = {}

    @property
    def counters(self) -> dict[str, int]:
        return self.ik.counters

    def forget(self, person_id: int) -> None:
        """Drop a person's IK and scaling state (a scaled model already in use stays listed)."""
        pid = int(person_id)
        self.ik.forget(pid)
        if self.augmenter is not None:
            self.augmenter.forget(pid)
        self._scalers.pop(pid, None)
        self._switches.pop(pid, None)

    def __call__(self, sk: Skeleton3D) -> list[JointAngles]:
        st = self.settings
        aug = self.augmented = self.augmenter.augment(sk) if self.augmenter is not None else None
        if st.scaling:
            self._feed_scalers(sk)
            if st.until_scaled == "wait":
                keep = [i for i, p in enumerate(sk.person_ids) if int(p) in self.scaled_models]
                if not keep:
                    return []
                if len(keep) < sk.n_people:
                    sk = sk.select(keep)
                    aug = aug.select(keep) if aug is not None else None
        return self.ik(sk, aug)

    @property
    def pending(self) -> bool:
        """A model switch is in progress (call :meth:`step`)."""
        return bool(self._switches)

    def step(self) -> None:
        """One step of each pending model switch (a few ms each)."""
        for pid in list(self._switches):
            path, steps = self._switches[pid]
            if next(steps, StopIteration) is StopIteration:
                del self._switches[pid]
                self.scaled_models[pid] = str(path)
                self.log(f"rtkin: person {pid} scaled: {path}")

    def _feed_scalers(self, sk: Skeleton3D) -> None:
        """Feed each unscaled person's OnlineScaler; when their scaled model is written, queue
        the switch to it."""
        st = self.settings
        for pid in (int(p) for p in sk.person_ids):
            if pid in self.scaled_models or pid in self._switches:
                continue
            scaler = self._scalers.get(pid)
            if scaler is None:
                self.out_dir.mkdir(parents=True, exist_ok=True)
                settings = ScalingSettings(skeleton=self.solver.skeleton, seconds=st.scaling_seconds,
                                           model=self.solver.model, height_m=st.height_m, mass_kg=st.mass_kg)
                scaler = self._scalers[pid] = OnlineScaler(
                    settings, self.out_dir / f"{self.name}_person{pid}_scaled.osim", person_id=pid,
                    background=True, executor=self.executor)
            path = scaler(sk)
            if path is not None:
                self._switches[pid] = (path, self.ik.switch_model(pid, path, scaler.result.factors,
                                                                  st.mass_kg or None))
                for w in scaler.result.warnings:
                    self.log(f"rtkin: person {pid} scaling: {w}")
