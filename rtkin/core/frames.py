"""The one explicit rotation between the world (calibration) frame and OpenSim's ground.

The world frame of a rig is z-up (Pose2Sim demo, Qualisys, most lab calibrations). OpenSim's
ground is y-up. Pose2Sim's TRC writer maps world (X, Y, Z) to OpenSim (Y, Z, X); rtkin uses the
same mapping so TRC files and models agree with Pose2Sim's:

    osim = OSIM_FROM_WORLD @ world        world = WORLD_FROM_OSIM @ osim

Only the IK stage (and ground-truth generation, which drives the OpenSim model) uses it.
"""

from __future__ import annotations

import numpy as np

#: (3, 3) rotation taking OpenSim ground coordinates (y up) to world coordinates (z up).
WORLD_FROM_OSIM = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
WORLD_FROM_OSIM.flags.writeable = False

#: (3, 3) rotation taking world coordinates (z up) to OpenSim ground coordinates (y up).
OSIM_FROM_WORLD = WORLD_FROM_OSIM.T.copy()
OSIM_FROM_WORLD.flags.writeable = False


def world_to_osim(points: np.ndarray) -> np.ndarray:
    """World points (..., 3) m -> OpenSim ground (..., 3) m."""
    return np.asarray(points, dtype=np.float64) @ OSIM_FROM_WORLD.T


def osim_to_world(points: np.ndarray) -> np.ndarray:
    """OpenSim ground points (..., 3) m -> world (..., 3) m."""
    return np.asarray(points, dtype=np.float64) @ WORLD_FROM_OSIM.T
