"""A virtual subject of known body dimensions: the generic model scaled by known factors.

:func:`simulate_scaled_subject` is :func:`rtkin.virtual.simulate_subject` on a scaled model: the
same seeded motion drives the generic model with its HALPE_26 markers (and the head landmarks)
scaled in memory by per-body ``factors`` (:func:`rtkin.scaling.scale_model`'s convention,
markers moved with their bodies), keypoints by OpenSim forward kinematics, feet put on the floor.
Not cached (a 10 s motion at 60 Hz costs ~1 s).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Mapping

import numpy as np

from .frames import WORLD_FROM_OSIM
from .skeletons import get_skeleton
from .virtual import _FOOT_KEYPOINTS, MotionSettings, SubjectTruth, _load_model, _soft_min, generate_motion

__all__ = ["simulate_scaled_subject"]


def simulate_scaled_subject(factors: Mapping[str, float], settings: MotionSettings = MotionSettings(),
                            floor_z: float = 0.0) -> SubjectTruth:
    """Motion + HALPE_26 keypoints (world, z up, m) of the generic model scaled by ``factors``
    (body name -> uniform factor; bodies not named keep 1)."""
    from .scaling import _apply_scale

    model = _load_model(with_markers=True)
    state = _apply_scale(model, factors)
    motion = generate_motion(settings)
    names = get_skeleton("HALPE_26").keypoints
    cs = model.getCoordinateSet()
    coords = [cs.get(n) for n in motion.names]
    ms = model.getMarkerSet()
    markers = [ms.get(n) for n in names]
    osim_pts = np.empty((motion.values.shape[0], len(markers), 3))
    for f, row in enumerate(motion.values):
        for c, v in zip(coords, row):
            c.setValue(state, float(v), False)
        model.realizePosition(state)
        for k, mk in enumerate(markers):
            osim_pts[f, k] = mk.getLocationInGround(state).to_numpy()
    foot = [names.index(n) for n in _FOOT_KEYPOINTS]
    contact = 0.012
    dy = floor_z + contact - _soft_min(osim_pts[:, foot, 1], axis=1)
    osim_pts[..., 1] += dy[:, None]
    values = motion.values.copy()
    values[:, motion.names.index("pelvis_ty")] += dy
    world = osim_pts @ WORLD_FROM_OSIM.T
    return SubjectTruth(replace(motion, values=values), tuple(names), world)
