"""Recorded sessions: replay through the live stages; reprocess (best-accuracy offline pass),
export (live outputs as recorded), batch (many sessions, locally or on Dask), Pose2Sim projects.

May import the stages (rtkin.capture, rtkin.reconstruct, rtkin.kinematics), rtkin.io, rtkin.sim,
rtkin.core, and rtkin.runtime for the run configuration and publishing.
"""
