"""Input validation at the node boundary: a decodable message that is inconsistent with the run is
counted by reason and dropped, before any stage sees it.

The codec already refuses malformed messages (bad structure, sizes, non-finite keypoints). What it
cannot know is the run: which cameras exist, which skeleton and keypoint count the rig uses, how
many people a view can plausibly hold, where its image is. The live sync node and the replay path
run the same :class:`InputValidator`, so a recording holding a bad frame replays with that frame
skipped and counted, as it was live. What depends on a camera's stream so far (a capture time far
from its clock, a frame counter going back) is the synchroniser's call, after the clock check, so
a forged frame can never make the camera's own frames look wrong (:mod:`rtkin.reconstruct.clocks`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from rtkin.core.messages import KeypointFrame

__all__ = ["REASONS", "InputValidator", "ValidationCounters"]

#: Why a message was refused (counter keys).
REASONS = ("wrong_type", "unknown_camera", "wrong_skeleton", "wrong_keypoint_count", "too_many_people",
           "off_image")


@dataclass
class ValidationCounters:
    """Messages accepted, and refused by reason (overall and per camera)."""

    accepted: int = 0
    refused: dict = field(default_factory=dict)  # reason -> count
    by_camera: dict = field(default_factory=dict)  # camera -> {"accepted" or reason: count}

    def refuse(self, reason: str, camera: str | None) -> str:
        self.refused[reason] = self.refused.get(reason, 0) + 1
        if camera is not None:
            cam = self.by_camera.setdefault(camera, {})
            cam[reason] = cam.get(reason, 0) + 1
        return reason

    @property
    def total_refused(self) -> int:
        return sum(self.refused.values())

    def as_dict(self) -> dict:
        return {"accepted": self.accepted, "refused": dict(self.refused),
                "by_camera": {c: dict(v) for c, v in self.by_camera.items()}}


class InputValidator:
    """``check(message) -> None`` (accepted) or the reason it is refused. Decisions depend on the
    messages only (in order), so replaying the recorded frames repeats them exactly.

    Args:
        cameras: the rig's camera names (rig order).
        skeleton: the run's keypoint set name; n_keypoints: its K.
        image_sizes: camera -> (width, height) px; a keypoint seen (score > 0) more than one image
            size outside the image is refused (``off_image``). None: not checked.
        max_people: most people one view may hold (P).
    """

    def __init__(self, cameras: Sequence[str], skeleton: str, n_keypoints: int,
                 image_sizes: Mapping[str, tuple[int, int]] | None = None, max_people: int = 64):
        self.cameras = frozenset(cameras)
        self.image_sizes = dict(image_sizes or {})
        self.skeleton = skeleton
        self.n_keypoints = int(n_keypoints)
        self.max_people = int(max_people)
        self.counters = ValidationCounters()

    def precheck(self, schema: str, fields: Mapping, arrays) -> str | None:
        """The checks that a message's header alone decides (:func:`rtkin.core.codec.peek`):
        schema, camera, skeleton, keypoint count, people. Refused messages are counted as by
        :meth:`check`; accepted ones still go through :meth:`check` once decoded."""
        if schema != "KeypointFrame":
            return self.counters.refuse("wrong_type", None)
        cam = fields.get("camera")
        if cam not in self.cameras:
            return self.counters.refuse("unknown_camera", None)
        if fields.get("skeleton") != self.skeleton:
            return self.counters.refuse("wrong_skeleton", cam)
        shape = next((a[2] for a in arrays if a[0] == "keypoints"), None)
        if shape is None or len(shape) != 3:
            return None  # the decoder will say what is wrong
        if shape[1] != self.n_keypoints:
            return self.counters.refuse("wrong_keypoint_count", cam)
        if shape[0] > self.max_people:
            return self.counters.refuse("too_many_people", cam)
        return None

    def check(self, msg) -> str | None:
        if not isinstance(msg, KeypointFrame):
            return self.counters.refuse("wrong_type", None)
        cam = msg.camera
        if cam not in self.cameras:
            return self.counters.refuse("unknown_camera", None)
        if msg.skeleton != self.skeleton:
            return self.counters.refuse("wrong_skeleton", cam)
        if msg.n_keypoints != self.n_keypoints:
            return self.counters.refuse("wrong_keypoint_count", cam)
        if msg.n_people > self.max_people:
            return self.counters.refuse("too_many_people", cam)
        size = self.image_sizes.get(cam)
        if size is not None and msg.keypoints.size:
            kp = msg.keypoints
            seen = kp[..., 2] > 0
            w, h = size
            if seen.any() and (np.abs(kp[..., 0][seen] - w / 2).max() > 1.5 * w
                               or np.abs(kp[..., 1][seen] - h / 2).max() > 1.5 * h):
                return self.counters.refuse("off_image", cam)
        self.counters.accepted += 1
        by_cam = self.counters.by_camera.setdefault(cam, {})
        by_cam["accepted"] = by_cam.get("accepted", 0) + 1
        return None
