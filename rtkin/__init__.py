"""rtkin: real-time streaming markerless 3D human kinematics.

The public surface is re-exported here (``from rtkin import Subscriber, Pipeline, IKStage``);
submodules are imported on first use, so ``import rtkin`` stays light for a client program.

Conventions (see calib/README.md and the design notes): SI units inside (m, rad, s; timestamps
in integer nanoseconds with an ``_ns`` suffix), 2D points in pixels of the original (distorted)
image, extrinsics world->camera (``X_cam = R X_world + t``), cameras by name in an explicit order.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: public name -> module that defines it
_EXPORTS = {
    # clients
    "Subscriber": "rtkin.clients.subscriber",
    # messages
    "KeypointFrame": "rtkin.core.messages",
    "FrameSet": "rtkin.core.messages",
    "Skeleton3D": "rtkin.core.messages",
    "JointAngles": "rtkin.core.messages",
    "AngleFlag": "rtkin.core.messages",
    "coordinate_unit": "rtkin.core.messages",
    # vocabulary
    "get_skeleton": "rtkin.core.skeletons",
    "Camera": "rtkin.core.calibration",
    "Rig": "rtkin.core.calibration",
    "load_calib": "rtkin.core.calibration",
    # stages, for in-process use
    "Synchronizer": "rtkin.reconstruct.sync",
    "Reconstructor": "rtkin.reconstruct.reconstructor",
    "Pipeline": "rtkin.reconstruct.pipeline",
    "IKSettings": "rtkin.kinematics.ik",
    "IKStage": "rtkin.kinematics.ik_stage",
    "LiveKinematics": "rtkin.kinematics.live",
    "OnlineScaler": "rtkin.kinematics.scaling",
    "MarkerAugmenter": "rtkin.kinematics.augment",
    "augment_sequence": "rtkin.kinematics.augment",
    "PoseEstimator": "rtkin.capture.rtmpose",
    "BlazePoseEstimator": "rtkin.capture.blazepose",
    "create_backend": "rtkin.capture.backend",
    "open_source": "rtkin.capture.sources",
    # files and runs
    "RecordingReader": "rtkin.io.recording",
    "RunConfig": "rtkin.runtime.config",
    "load_config": "rtkin.runtime.config",
    "Runner": "rtkin.runtime.runner",
    "replay": "rtkin.offline.replay",
    "reprocess": "rtkin.offline.reprocess",
    "export_recording": "rtkin.offline.export",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'rtkin' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
