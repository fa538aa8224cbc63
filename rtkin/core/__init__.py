"""The vocabulary every stage shares: typed messages and their wire codec, skeletons as data,
cameras and rigs (Calib.toml I/O, projection), the world <-> OpenSim rotation, paths to the
pose2sim assets, timing windows and process priority.

Imports nothing else from rtkin.
"""
