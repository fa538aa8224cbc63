"""The definitions of Pose2Sim's marker augmenter and its models: input keypoints, output markers,
anchors, the models shipped in pose2sim, the height estimate (see :mod:`rtkin.kinematics.augment`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from rtkin.core import assets
from rtkin.core.skeletons import Skeleton, get_skeleton
from rtkin.kinematics.augment_lstm import LSTMNet, load_lstm

__all__ = [
    "POSE2SIM_VERSION",
    "AUGMENTED_SKELETON",
    "AUGMENTED_MARKERS",
    "LOWER_FEATURES",
    "UPPER_FEATURES",
    "LOWER_MARKERS",
    "UPPER_MARKERS",
    "ANCHORS",
    "SEGMENT_RATIOS",
    "AugmenterModel",
    "load_models",
    "available_models",
    "augmented_skeleton_name",
    "augmented_marker_names",
    "frame_heights",
    "estimate_height",
]

#: The Pose2Sim release whose ``markerAugmentation.py`` / ``common.py`` these features follow.
POSE2SIM_VERSION = "0.10.49"

#: Inputs of the lower-body model (``getOpenPoseMarkers_lowerExtremity2``), in model order.
LOWER_FEATURES = ("Neck", "RShoulder", "LShoulder", "RHip", "LHip", "RKnee", "LKnee", "RAnkle", "LAnkle",
                  "RHeel", "LHeel", "RSmallToe", "LSmallToe", "RBigToe", "LBigToe")
#: Outputs of the lower-body model, in model order.
LOWER_MARKERS = ("r.ASIS_study", "L.ASIS_study", "r.PSIS_study", "L.PSIS_study", "r_knee_study",
                 "r_mknee_study", "r_ankle_study", "r_mankle_study", "r_toe_study", "r_5meta_study",
                 "r_calc_study", "L_knee_study", "L_mknee_study", "L_ankle_study", "L_mankle_study",
                 "L_toe_study", "L_calc_study", "L_5meta_study", "r_shoulder_study", "L_shoulder_study",
                 "C7_study", "r_thigh1_study", "r_thigh2_study", "r_thigh3_study", "L_thigh1_study",
                 "L_thigh2_study", "L_thigh3_study", "r_sh1_study", "r_sh2_study", "r_sh3_study",
                 "L_sh1_study", "L_sh2_study", "L_sh3_study", "RHJC_study", "LHJC_study")
#: Inputs of the upper-body model (``getMarkers_upperExtremity_noPelvis2``), in model order.
UPPER_FEATURES = ("Neck", "RShoulder", "LShoulder", "RElbow", "LElbow", "RWrist", "LWrist")
#: Outputs of the upper-body model, in model order.
UPPER_MARKERS = ("r_lelbow_study", "r_melbow_study", "r_lwrist_study", "r_mwrist_study",
                 "L_lelbow_study", "L_melbow_study", "L_lwrist_study", "L_mwrist_study")
#: Every augmented marker: lower then upper.
AUGMENTED_MARKERS = LOWER_MARKERS + UPPER_MARKERS
#: ``Skeleton3D.skeleton`` of the augmented-marker messages, by the models run: their points are
#: :func:`augmented_marker_names` of it (both models: :data:`AUGMENTED_MARKERS`).
AUGMENTED_SKELETON = "LSTM"
_MARKERS_OF = {"lower": LOWER_MARKERS, "upper": UPPER_MARKERS}
_ORIGIN = "Hip"
_DEFAULT_MASS_KG = 70.0  # Pose2Sim's default participant_mass
_DEFAULT_HEIGHT_M = 1.7  # Pose2Sim's default_height when it cannot compute one


def _anchors() -> dict[str, tuple[str, ...]]:
    """Augmented marker -> the input keypoints next to it (its confidence follows theirs)."""
    out: dict[str, tuple[str, ...]] = {}
    for s, S in (("r", "R"), ("L", "L")):
        out.update({
            f"{s}.ASIS_study": ("RHip", "LHip"), f"{s}.PSIS_study": ("RHip", "LHip"),
            f"{S}HJC_study": ("RHip", "LHip"),
            f"{s}_knee_study": (f"{S}Knee",), f"{s}_mknee_study": (f"{S}Knee",),
            f"{s}_ankle_study": (f"{S}Ankle",), f"{s}_mankle_study": (f"{S}Ankle",),
            f"{s}_toe_study": (f"{S}BigToe", f"{S}SmallToe"), f"{s}_5meta_study": (f"{S}BigToe", f"{S}SmallToe"),
            f"{s}_calc_study": (f"{S}Heel",), f"{s}_shoulder_study": (f"{S}Shoulder",),
            f"{s}_lelbow_study": (f"{S}Elbow",), f"{s}_melbow_study": (f"{S}Elbow",),
            f"{s}_lwrist_study": (f"{S}Wrist",), f"{s}_mwrist_study": (f"{S}Wrist",),
        })
        for i in (1, 2, 3):
            out[f"{s}_thigh{i}_study"] = (f"{S}Hip", f"{S}Knee")
            out[f"{s}_sh{i}_study"] = (f"{S}Knee", f"{S}Ankle")
    out["C7_study"] = ("Neck",)
    return out


#: Augmented marker -> its anchor input keypoints.
ANCHORS: dict[str, tuple[str, ...]] = _anchors()

#: Segment (keypoint pair) -> length / stature in standard proportions (Winter 2009, Fig. 4.1,
#: after Drillis & Contini 1966): thigh 0.245, shank 0.246, upper arm 0.186, forearm 0.146.
SEGMENT_RATIOS: dict[tuple[str, str], float] = {}
for _S in ("R", "L"):
    SEGMENT_RATIOS.update({(f"{_S}Hip", f"{_S}Knee"): 0.245, (f"{_S}Knee", f"{_S}Ankle"): 0.246,
                           (f"{_S}Shoulder", f"{_S}Elbow"): 0.186, (f"{_S}Elbow", f"{_S}Wrist"): 0.146})


# ============================================================================ models


@dataclass(frozen=True, eq=False)
class AugmenterModel:
    """One augmenter LSTM with its input and output definitions.

    Attributes:
        name: ``"lower"`` or ``"upper"``.
        features: ``(F_k,)`` input keypoint names (F = 3 F_k + 2 values: offsets, height, mass).
        markers: ``(E_k,)`` output marker names.
        net: the LSTM (:class:`rtkin.kinematics.augment_lstm.LSTMNet`).
        mean, std: ``(F,)`` float32 input normalisation (``mean.npy``, ``std.npy``).
        onnx_path: the ``model.onnx`` it was read from.
    """

    name: str
    features: tuple[str, ...]
    markers: tuple[str, ...]
    net: LSTMNet
    mean: np.ndarray
    std: np.ndarray
    onnx_path: Path


_MODEL_DIRS = {"lower": ("v0.3_lower", LOWER_FEATURES, LOWER_MARKERS),
               "upper": ("v0.3_upper", UPPER_FEATURES, UPPER_MARKERS)}
_MODELS: dict[str, AugmenterModel] = {}


def load_models(names: Sequence[str] = ("lower", "upper")) -> tuple[AugmenterModel, ...]:
    """The augmenter models shipped in the installed pose2sim (loaded once per process, ~0.2 s).

    Raises:
        AssetNotFoundError: a model file is missing; ValueError: an unexpected graph;
        ImportError: the ``onnx`` package is missing.
    """
    out = []
    for name in names:
        m = _MODELS.get(name)
        if m is None:
            folder, feats, markers = _MODEL_DIRS[name]
            d = assets.marker_augmenter_dir() / "LSTM" / folder
            onnx_path, mean_path, std_path = (d / "model.onnx", d / "mean.npy", d / "std.npy")
            for p in (onnx_path, mean_path, std_path):
                if not p.is_file():
                    raise assets.AssetNotFoundError(f"marker augmenter file {p} not found; it is installed "
                                                    "with `pip install pose2sim`.")
            net = LSTMNet(load_lstm(onnx_path))
            mean = np.load(mean_path, allow_pickle=False).astype(np.float64).ravel()
            std = np.load(std_path, allow_pickle=False).astype(np.float64).ravel()
            n_in = 3 * len(feats) + 2
            if net.n_inputs != n_in or mean.shape != (n_in,) or std.shape != (n_in,) or net.n_outputs != 3 * len(markers):
                raise ValueError(f"{d}: model has {net.n_inputs} inputs / {net.n_outputs} outputs, mean {mean.shape}, "
                                 f"std {std.shape}; expected {n_in} inputs and {3 * len(markers)} outputs")
            m = _MODELS[name] = AugmenterModel(name, feats, markers, net, mean, std, onnx_path)
        out.append(m)
    return tuple(out)


def available_models(skeleton: Skeleton | str, names: Sequence[str] = ("lower", "upper")) -> tuple[str, ...]:
    """The models of ``names`` whose inputs (and ``Hip``) the skeleton's points provide."""
    sk = get_skeleton(skeleton) if isinstance(skeleton, str) else skeleton
    points = set(sk.points)
    return tuple(n for n in names if set(_MODEL_DIRS[n][1]) | {_ORIGIN} <= points)


def augmented_skeleton_name(models: Sequence[str]) -> str:
    """``Skeleton3D.skeleton`` of augmented markers from ``models``: ``"LSTM"`` for both,
    ``"LSTM_lower"`` / ``"LSTM_upper"`` for one."""
    return AUGMENTED_SKELETON if tuple(models) == ("lower", "upper") else f"{AUGMENTED_SKELETON}_{models[0]}"


def augmented_marker_names(skeleton_name: str) -> tuple[str, ...]:
    """The point names of an augmented-marker ``Skeleton3D`` (its ``skeleton`` field)."""
    if skeleton_name == AUGMENTED_SKELETON:
        return AUGMENTED_MARKERS
    prefix = AUGMENTED_SKELETON + "_"
    if skeleton_name.startswith(prefix) and skeleton_name[len(prefix):] in _MARKERS_OF:
        return _MARKERS_OF[skeleton_name[len(prefix):]]
    raise KeyError(f"not an augmented-marker skeleton: {skeleton_name!r}")


# ============================================================================ height


def _dist(P: np.ndarray, idx: dict[str, int], a: str, b: str) -> np.ndarray:
    return np.linalg.norm(P[..., idx[a], :] - P[..., idx[b], :], axis=-1)


def frame_heights(points: np.ndarray, skeleton: Skeleton) -> np.ndarray:
    """Per-frame stature estimates ``(T,)`` m from ``(T, K + D, 3)`` points (with derived points),
    Pose2Sim's ``common.compute_height`` formula without its trimming: mean of both sides' heel to
    ankle (0.10 m without heels) + ankle to knee + knee to hip + hip to shoulder, plus mid-shoulder
    to head x 1.008 (or to the nose x 1.5; without either, the legs / 0.485). NaN where a needed
    point is missing."""
    idx = {n: i for i, n in enumerate(skeleton.points)}
    P = np.asarray(points, dtype=np.float64)
    if not {"RAnkle", "RKnee", "RHip", "RShoulder", "LAnkle", "LKnee", "LHip", "LShoulder"} <= set(idx):
        return np.full(P.shape[:-2], np.nan)
    if "RHeel" in idx and "LHeel" in idx:
        foot = (_dist(P, idx, "RHeel", "RAnkle") + _dist(P, idx, "LHeel", "LAnkle")) / 2
    else:
        foot = np.full(P.shape[:-2], 0.10)
    legs = foot + sum((_dist(P, idx, f"R{a}", f"R{b}") + _dist(P, idx, f"L{a}", f"L{b}")) / 2
                      for a, b in (("Ankle", "Knee"), ("Knee", "Hip")))
    back = (_dist(P, idx, "RHip", "RShoulder") + _dist(P, idx, "LHip", "LShoulder")) / 2
    mid = (P[..., idx["RShoulder"], :] + P[..., idx["LShoulder"], :]) / 2
    if "Head" in idx:
        head = np.linalg.norm(mid - P[..., idx["Head"], :], axis=-1) * 1.008
    elif "Nose" in idx:
        head = np.linalg.norm(mid - P[..., idx["Nose"], :], axis=-1) * 1.5
    else:
        return legs / 0.485
    return legs + back + head


def estimate_height(points: np.ndarray, skeleton: Skeleton | str) -> float:
    """Stature, m, from ``(T, K, 3)`` keypoints (world or any frame): the median over frames of
    :func:`frame_heights` (Pose2Sim: a 50 % trimmed mean); NaN when no frame has the points."""
    sk = get_skeleton(skeleton) if isinstance(skeleton, str) else skeleton
    h = frame_heights(sk.with_derived(np.asarray(points, dtype=np.float64)), sk)
    h = h[np.isfinite(h)]
    return float(np.median(h)) if h.size else math.nan
