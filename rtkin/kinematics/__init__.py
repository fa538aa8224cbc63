"""3D keypoints -> joint angles: the OpenSim model as rtkin uses it, the per-frame IK solver and
stage, subject scaling, and the live per-person schedule (scale, switch models, solve).

May import rtkin.core only.
"""
