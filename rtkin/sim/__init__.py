"""The virtual subject: a known motion of Pose2Sim's OpenSim model, its keypoints by forward
kinematics, projected into a rig and corrupted as a real 2D estimator does: ground truth for tests
and benchmarks.

May import rtkin.core and rtkin.kinematics (the model and its scaling).
"""
