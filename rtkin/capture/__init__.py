"""Cameras -> 2D keypoints: frame sources (video, image folder, webcam, network stream), pose
backends behind one interface (``backend``: RTMPose through onnxruntime, BlazePose through
MediaPipe) and keypoint sources without a pose model (the virtual
subject, OpenPose JSON folders).

May import rtkin.core, rtkin.io and rtkin.sim.
"""
