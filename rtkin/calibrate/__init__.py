"""rtkin.calibrate: camera calibration -- board-based intrinsics and extrinsics, and people-based extrinsics.

May import only ``rtkin.core`` and ``rtkin.reconstruct``.
"""
