"""rtkin: real-time streaming markerless 3D human kinematics.

Conventions (see calib/README.md and the design notes): SI units inside (m, rad, s; timestamps
in integer nanoseconds with an ``_ns`` suffix), 2D points in pixels of the original (distorted)
image, extrinsics world->camera (``X_cam = R X_world + t``), cameras by name in an explicit order.
"""

__version__ = "0.1.0"

from rtkin.clients.subscriber import Subscriber  # noqa: E402,F401  (typed subscriber for client programs)

__all__ = ["Subscriber", "__version__"]
