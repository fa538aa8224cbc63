"""Input validation at the node boundary: a decodable message that is inconsistent with the run is
counted by reason and dropped, before any stage sees it.

The codec already refuses malformed messages (bad structure, sizes, non-finite keypoints). What it
cannot know is the run: which cameras exist, which skeleton and keypoint count the rig uses, how
many people a view can plausibly hold, that a camera's frame counter only goes up. The live sync
node and the replay path run the same :class:`InputValidator`, so a recording holding a bad frame
replays with that frame skipped and counted, as it was live. (A capture time far from the
camera's own clock is the synchroniser's call: :mod:`rtkin.reconstruct.clocks`.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from rtkin.core.messages import KeypointFrame

__all__ = ["REASONS", "InputValidator", "ValidationCounters"]

#: Why a message was refused (counter keys).
REASONS = ("wrong_type", "unknown_camera", "wrong_skeleton", "wrong_keypoint_count", "too_many_people",
           "off_image", "index_backwards")


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
        restart_frames: a camera whose frame index went back is taken as restarted once this many
            frames in a row count up from the new index (until then they are refused).
    """

    def __init__(self, cameras: Sequence[str], skeleton: str, n_keypoints: int,
                 image_sizes: Mapping[str, tuple[int, int]] | None = None, max_people: int = 64,
                 restart_frames: int = 5):
        self.cameras = frozenset(cameras)
        self.image_sizes = dict(image_sizes or {})
        self.skeleton = skeleton
        self.n_keypoints = int(n_keypoints)
        self.max_people = int(max_people)
        self.restart_frames = int(restart_frames)
        self.counters = ValidationCounters()
        self._last_index: dict[str, int] = {}
        self._restart: dict[str, tuple[int, int]] = {}  # camera -> (last index of the new run, run length)

    def reset(self) -> None:
        """Forget the frame counters (validation counts are kept)."""
        self._last_index.clear()
        self._restart.clear()

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
        if not self._index_ok(cam, msg.frame_index):
            return self.counters.refuse("index_backwards", cam)
        self.counters.accepted += 1
        by_cam = self.counters.by_camera.setdefault(cam, {})
        by_cam["accepted"] = by_cam.get("accepted", 0) + 1
        return None

    def _index_ok(self, cam: str, index: int) -> bool:
        last = self._last_index.get(cam)
        if last is None or index > last:
            self._last_index[cam] = index
            self._restart.pop(cam, None)
            return True
        run_last, run_len = self._restart.get(cam, (None, 0))
        run_len = run_len + 1 if run_last is not None and index > run_last else 1
        if run_len >= self.restart_frames:  # counting up steadily from the new index: a restart
            self._last_index[cam] = index
            self._restart.pop(cam, None)
            return True
        self._restart[cam] = (index, run_len)
        return False
