"""2D keypoint sources without a pose model: the virtual subject and OpenPose-JSON folders.

A source gives one camera's frames with capture times relative to the stream start (ns); the
player adds a start time ``t0_ns`` shared by every camera of a run and sends each frame at its
capture time, so a camera process that is killed and restarted resumes at the current frame and
its frames line up with the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rtkin.sim import virtual
from rtkin.core.calibration import Rig
from rtkin.core.messages import KeypointFrame
from rtkin.io.openpose import list_frames, read_openpose_json
from rtkin.core.skeletons import get_skeleton

__all__ = ["virtual_scene", "virtual_frames", "openpose_frames", "shifted", "VirtualScene"]


@dataclass(frozen=True)
class VirtualSourceSettings:
    """The virtual subject played live as one stream per camera (see ``rtkin.sim.virtual``).

    Attributes:
        duration_s: length of the motion, s. seed: motion and corruption seed.
        noise_px, outlier_rate, dropout_rate, swap_rate: 2D corruption (px, fractions).
        bystander: add a standing bystander (seen by the cameras that see the back of the room).
        people: number of subjects (>1: they walk around each other).
        presence: per subject, ``[start_s, end_s]`` when they are in view (people walking in and
            out); subjects without an entry are always in view. Empty = everybody, always.
    """

    duration_s: float = 12.0
    seed: int = 0
    noise_px: float = 3.0
    outlier_rate: float = 0.02
    dropout_rate: float = 0.05
    swap_rate: float = 0.0
    bystander: bool = False
    people: int = 1
    presence: tuple[tuple[float, float], ...] = ()

    def __post_init__(self) -> None:
        for i, w in enumerate(self.presence):
            if len(w) != 2 or not 0 <= w[0] < w[1]:
                raise ValueError(f"source.virtual.presence[{i}] must be [start_s, end_s] with 0 <= start < end, got {w}")


@dataclass(frozen=True)
class OpenPoseSourceSettings:
    """OpenPose-JSON folders as Pose2Sim writes them, one per camera.

    Attributes:
        root: folder holding the per-camera folders, relative to the config.
        folder_pattern: per-camera folder name, ``{camera}`` replaced (Pose2Sim: ``{camera}_json``).
    """

    root: str = ""
    folder_pattern: str = "{camera}_json"


@dataclass(frozen=True)
class VirtualScene:
    """The subjects of a virtual run (truth) and the corruption applied to every camera."""

    subjects: tuple[virtual.SubjectTruth, ...]
    corruption: virtual.CorruptionSettings
    seed: int
    presence: tuple[tuple[float, float], ...] = ()  # per subject: (start_s, end_s) in view


def virtual_scene(settings: VirtualSourceSettings, fps_hz: float) -> VirtualScene:
    """Subjects (and bystander) of a virtual source; same settings -> same scene in every process."""
    if settings.people > 1:
        subjects = virtual.orbiting_group(settings.people, settings.duration_s, fps_hz, settings.seed)
    else:
        subjects = [virtual.simulate_subject(virtual.MotionSettings(duration_s=settings.duration_s, fps=fps_hz,
                                                                    seed=settings.seed))]
    if settings.bystander:
        subjects.append(virtual.bystander(seed=settings.seed + 7, duration_s=settings.duration_s, fps=fps_hz))
    cs = virtual.CorruptionSettings(noise_px=settings.noise_px, outlier_rate=settings.outlier_rate,
                                    dropout_rate=settings.dropout_rate, swap_rate=settings.swap_rate)
    return VirtualScene(tuple(subjects), cs, settings.seed, tuple(tuple(map(float, w)) for w in settings.presence))


def virtual_frames(scene: VirtualScene, rig: Rig, camera: str, skeleton: str) -> list[KeypointFrame]:
    """One camera's detections of the scene; capture times relative to the start (+ jitter), ns.

    The corruption of camera ``c`` is seeded by (scene seed, camera index), so every process
    renders the same stream for a camera whatever else runs.
    """
    c = rig.index(camera)
    views = virtual.render_views(rig.subset([camera]), scene.subjects, skeleton, scene.corruption,
                                 seed=scene.seed * 1009 + c, start_ns=0)
    if not scene.presence:
        return list(views.frames[0])
    out = []
    for t, (frame, who) in enumerate(zip(views.frames[0], views.identity[0])):
        now_s = views.time_ns[t] * 1e-9
        keep = [i for i, s in enumerate(who) if s >= len(scene.presence)
                or scene.presence[s][0] <= now_s < scene.presence[s][1]]
        out.append(frame if len(keep) == len(who) else
                   KeypointFrame(frame.camera, frame.frame_index, frame.capture_ns, frame.skeleton,
                                 frame.keypoints[keep]))
    return out


def openpose_frames(settings: OpenPoseSourceSettings, root: Path, camera: str, skeleton: str,
                    fps_hz: float) -> list[KeypointFrame]:
    """One camera's OpenPose-JSON folder played at ``fps_hz``, capture times relative to the start.

    Frame ``i`` of the folder (by the number in its file name) is captured at ``i / fps``.
    A file that cannot be read is skipped with a warning on stderr (counted by the sync as a gap).
    """
    folder = root / settings.folder_pattern.format(camera=camera)
    files = list_frames(folder)
    if not files:
        raise FileNotFoundError(f"no OpenPose JSON files in {folder}")
    K = get_skeleton(skeleton).n_keypoints
    period = 1e9 / fps_hz
    first = files[0][0]
    out = []
    for idx, path in files:
        try:
            kp = read_openpose_json(path, K)
        except ValueError as e:
            import sys

            print(f"rtkin: skipping {path}: {e}", file=sys.stderr)
            continue
        out.append(KeypointFrame(camera, idx - first, int(round((idx - first) * period)), skeleton, kp))
    return out


def shifted(frame: KeypointFrame, t0_ns: int) -> KeypointFrame:
    """The frame with its relative capture time moved to the run's clock (``t0_ns`` + relative)."""
    return KeypointFrame(frame.camera, frame.frame_index, t0_ns + frame.capture_ns, frame.skeleton, frame.keypoints)
