"""Checks of written OpenSim model files, shared by the tests."""

from __future__ import annotations

import numpy as np


def pelvis_factor_in(path) -> float:
    """The pelvis factor a scaled model file carries: its hip joint's offset in the pelvis over
    the generic model's."""
    import opensim as osim

    from rtkin.core import assets

    def hip(m):
        return m.getJointSet().get("hip_r").get_frames(0).get_translation().to_numpy()

    return float(np.linalg.norm(hip(osim.Model(str(path)))) / np.linalg.norm(hip(osim.Model(str(assets.model_path())))))
