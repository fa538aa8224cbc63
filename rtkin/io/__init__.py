"""Files: the crash-safe session recording, TRC, MOT and OpenPose-JSON readers and writers.

May import rtkin.core only.
"""
