"""2D keypoints -> 3D people, in stream order: synchronise by capture time, associate people
across views, triangulate, track ids, filter; the live calibration check; the Pipeline that
chains them (sync -> associate -> triangulate -> track -> filter).

May import rtkin.core only.
"""
