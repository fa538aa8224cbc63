"""Locate runtime assets shipped inside the installed ``pose2sim`` package, without copying them.

rtkin uses Pose2Sim's OpenSim model, marker sets, scaling/IK setup files, marker-augmenter LSTMs and
its single-person demo (videos + Qualisys calibration). They live in the ``Pose2Sim`` package
directory of site-packages. The package is found with :func:`importlib.util.find_spec`, which does
not import it (importing Pose2Sim is slow and prints GUI warnings).

Every function returns a :class:`pathlib.Path` that exists, or raises :class:`AssetNotFoundError`
(a :class:`FileNotFoundError`) naming the missing file.

Skeleton names are matched the way Pose2Sim's ``kinematics.get_markers_path`` does: underscores
are dropped and case is ignored (``"HALPE_26"``, ``"halpe26"`` -> ``Markers_Halpe26.xml``), with the
same aliases (``HALPE_26_LOWER`` -> Halpe26, ``HALPE_68``/``HALPE_136`` -> Halpe68_136,
``COCO_133_WRIST`` -> Coco133, ``LSTM`` IK -> ``IK_Setup_Pose2Sim_withHands_LSTM.xml``).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

__all__ = [
    "AssetNotFoundError",
    "pose2sim_root",
    "opensim_setup_dir",
    "model_path",
    "marker_set_path",
    "ik_setup_path",
    "scaling_setup_path",
    "demo_dir",
    "demo_videos",
    "demo_qca_path",
    "marker_augmenter_dir",
    "DEMO_CAMERAS",
]

#: Camera names of the Pose2Sim single-person demo, in rig order.
DEMO_CAMERAS: tuple[str, ...] = ("cam01", "cam02", "cam03", "cam04")

_INSTALL_HINT = "it is installed with `pip install pose2sim`"

# Normalised skeleton name (no underscores, lower case) -> file-name stem used by Pose2Sim's
# OpenSim_Setup files, where it is not simply the normalised name itself.
_STEM_ALIASES: dict[str, str] = {
    "halpe26lower": "halpe26",
    "halpe68": "halpe68_136",
    "halpe136": "halpe68_136",
    "coco133wrist": "coco133",
}
_IK_ALIASES: dict[str, str] = {"lstm": "withhands_lstm"}


class AssetNotFoundError(FileNotFoundError):
    """A runtime asset expected inside the installed ``pose2sim`` package is missing."""


def _missing(what: str, where: Path | str | None = None) -> AssetNotFoundError:
    loc = f" (looked in {where})" if where is not None else ""
    return AssetNotFoundError(f"{what} not found{loc}; {_INSTALL_HINT}.")


def _existing(path: Path, what: str) -> Path:
    if not path.exists():
        raise _missing(f"{what} '{path.name}'", path.parent)
    return path


def pose2sim_root() -> Path:
    """Directory of the installed ``Pose2Sim`` package (not imported, only located)."""
    try:
        spec = importlib.util.find_spec("Pose2Sim")
    except (ImportError, ValueError) as e:
        raise _missing("Python package 'Pose2Sim'") from e
    if spec is None or not spec.submodule_search_locations:
        raise _missing("Python package 'Pose2Sim'")
    return Path(next(iter(spec.submodule_search_locations)))


def opensim_setup_dir() -> Path:
    """``Pose2Sim/OpenSim_Setup``: OpenSim models, marker sets, scaling and IK setup XML files."""
    return _existing(pose2sim_root() / "OpenSim_Setup", "directory")


def model_path(name: str = "Model_Pose2Sim_simple.osim") -> Path:
    """Path of an OpenSim model in ``OpenSim_Setup`` (default: the fast model without muscles).

    ``Model_Pose2Sim_muscles_flex.osim`` is the muscle model (offline use only).
    """
    return _existing(opensim_setup_dir() / name, "OpenSim model")


def _normalise(skeleton_name: str) -> str:
    return skeleton_name.replace("_", "").lower()


def _setup_file(prefix: str, skeleton_name: str, aliases: dict[str, str], what: str) -> Path:
    """Case-insensitive lookup of ``{prefix}{stem}.xml`` in ``OpenSim_Setup``."""
    key = _normalise(skeleton_name)
    stem = aliases.get(key, _STEM_ALIASES.get(key, key))
    wanted = f"{prefix}{stem}.xml".lower()
    setup = opensim_setup_dir()
    for f in sorted(setup.glob(f"{prefix}*.xml")):
        if f.name.lower() == wanted:
            return f
    raise _missing(f"{what} for skeleton '{skeleton_name}' (file '{wanted}', any case)", setup)


def marker_set_path(skeleton_name: str) -> Path:
    """OpenSim marker set of a skeleton, e.g. ``"HALPE_26"`` -> ``Markers_Halpe26.xml``."""
    return _setup_file("Markers_", skeleton_name, {}, "marker set")


def ik_setup_path(skeleton_name: str) -> Path:
    """OpenSim IK setup of a skeleton, e.g. ``"HALPE_26"`` -> ``IK_Setup_Pose2Sim_Halpe26.xml``."""
    return _setup_file("IK_Setup_Pose2Sim_", skeleton_name, _IK_ALIASES, "IK setup")


def scaling_setup_path(skeleton_name: str) -> Path:
    """OpenSim scaling setup, e.g. ``"HALPE_26"`` -> ``Scaling_Setup_Pose2Sim_Halpe26.xml``."""
    return _setup_file("Scaling_Setup_Pose2Sim_", skeleton_name, {}, "scaling setup")


def demo_dir() -> Path:
    """``Pose2Sim/Demo_SinglePerson``: 4 demo videos and their Qualisys calibration."""
    return _existing(pose2sim_root() / "Demo_SinglePerson", "demo directory")


def demo_videos() -> dict[str, Path]:
    """Demo videos by camera name, in rig order ``cam01``..``cam04`` (dict order is rig order)."""
    videos = demo_dir() / "videos"
    return {cam: _existing(videos / f"{cam}.mp4", "demo video") for cam in DEMO_CAMERAS}


def demo_qca_path() -> Path:
    """Qualisys calibration of the demo rig: ``Demo_SinglePerson/calibration/Calib.qca.txt``."""
    return _existing(demo_dir() / "calibration" / "Calib.qca.txt", "demo calibration")


def marker_augmenter_dir() -> Path:
    """``Pose2Sim/MarkerAugmenter``, holding the ``LSTM/v0.3_lower`` and ``v0.3_upper`` models."""
    return _existing(pose2sim_root() / "MarkerAugmenter", "marker augmenter directory")
