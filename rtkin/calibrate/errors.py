"""The error raised by the people-based calibration steps (people, subject, registration, bundle, world).

(Board calibration errors live with their step: :mod:`rtkin.calibrate.intrinsics`,
:mod:`rtkin.calibrate.board_extrinsics`.)
"""

from __future__ import annotations

__all__ = [
    "NotEnoughDataError",
]


class NotEnoughDataError(ValueError):
    """Too few cameras, or a camera (named in the message) with too few usable observations."""
