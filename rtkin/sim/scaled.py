"""A virtual subject of known body dimensions: the generic model scaled by known factors.

:func:`simulate_scaled_subject` is :func:`rtkin.sim.virtual.simulate_subject` on a scaled model: the
same seeded motion drives the generic model with its HALPE_26 markers (and the head landmarks)
scaled in memory by per-body ``factors`` (:func:`rtkin.kinematics.scaling.scale_model`'s convention,
markers moved with their bodies), keypoints by OpenSim forward kinematics, feet put on the floor.
Not cached (a 10 s motion at 60 Hz costs ~1 s).
"""

from __future__ import annotations

from typing import Mapping

from rtkin.core.skeletons import get_skeleton
from rtkin.sim.virtual import MotionSettings, SubjectTruth, _load_model, fk_markers, generate_motion, on_floor

__all__ = ["simulate_scaled_subject"]


def simulate_scaled_subject(factors: Mapping[str, float], settings: MotionSettings = MotionSettings(),
                            floor_z: float = 0.0) -> SubjectTruth:
    """Motion + HALPE_26 keypoints (world, z up, m) of the generic model scaled by ``factors``
    (body name -> uniform factor; bodies not named keep 1)."""
    from rtkin.kinematics.model import apply_scale

    model = _load_model(with_markers=True)
    state = apply_scale(model, factors)
    motion = generate_motion(settings)
    names = tuple(get_skeleton("HALPE_26").keypoints)
    return on_floor(motion, names, fk_markers(model, state, motion, names), floor_z)
