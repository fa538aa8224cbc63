"""OpenPose-JSON keypoint files, as Pose2Sim writes and reads them.

One folder per camera, one file per frame: ``camXX_json/camXX_NNNNNN.json`` with
``{"people": [{"pose_keypoints_2d": [x, y, score] * K, ...}, ...]}`` in pixels of the original
image. Files are ordered by the last number in their name (frame index), never by plain sort.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

__all__ = ["OpenPoseError", "read_openpose_json", "list_frames", "read_openpose_folder"]


class OpenPoseError(ValueError):
    """An OpenPose JSON file is malformed."""


_LAST_NUMBER = re.compile(r"(\d+)(?!.*\d)")


def read_openpose_json(path: str | Path, n_keypoints: int | None = None) -> np.ndarray:
    """One frame -> (P, K, 3) float32 x_px, y_px, score (an empty file gives P = 0).

    Args:
        path: the JSON file.
        n_keypoints: expected K; people with another count raise :class:`OpenPoseError`.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        people = data["people"]
        arrays = [np.asarray(p["pose_keypoints_2d"], dtype=np.float32) for p in people]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as e:
        raise OpenPoseError(f"{path}: not an OpenPose keypoint file: {e}") from e
    if not arrays:
        return np.zeros((0, n_keypoints or 0, 3), dtype=np.float32)
    sizes = {a.size for a in arrays}
    if len(sizes) != 1 or arrays[0].size % 3:
        raise OpenPoseError(f"{path}: people have inconsistent keypoint counts {sorted(sizes)}")
    kp = np.stack(arrays).reshape(len(arrays), -1, 3)
    if n_keypoints is not None and kp.shape[1] != n_keypoints:
        raise OpenPoseError(f"{path}: {kp.shape[1]} keypoints per person, expected {n_keypoints}")
    kp = np.nan_to_num(kp, nan=0.0, posinf=0.0, neginf=0.0)
    kp[kp[..., 2] <= 0] = 0.0  # missing keypoint: score 0 (and no position)
    return kp


def list_frames(folder: str | Path) -> list[tuple[int, Path]]:
    """(frame index, path) of every ``*.json`` in ``folder``, ordered by frame index."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"OpenPose JSON folder not found: {folder}")
    out = []
    for p in folder.glob("*.json"):
        m = _LAST_NUMBER.search(p.stem)
        if m is None:
            raise OpenPoseError(f"{p}: no frame number in the file name")
        out.append((int(m.group(1)), p))
    out.sort(key=lambda t: t[0])
    return out


def read_openpose_folder(folder: str | Path, n_keypoints: int | None = None) -> dict[int, np.ndarray]:
    """Every frame of one camera: frame index -> (P, K, 3) float32."""
    return {i: read_openpose_json(p, n_keypoints) for i, p in list_frames(folder)}
