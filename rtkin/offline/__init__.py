"""Recorded sessions: replay through the live stages.

May import the stages (rtkin.capture, rtkin.reconstruct, rtkin.kinematics), rtkin.io, rtkin.sim,
rtkin.core, and rtkin.runtime for the run configuration and publishing.
"""
