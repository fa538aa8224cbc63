"""Skeletons as data: keypoint order, kinematic tree, left/right pairs and OpenSim markers.

A :class:`Skeleton` describes the output of one pose model (RTMPose ``HALPE_26``, ``COCO_17``,
``COCO_133``; MediaPipe ``BLAZEPOSE``): ``keypoints[k]`` is the name of output ``k``, so a ``KeypointFrame`` array
``(P, K, 3)`` (x_px, y_px, score) and a triangulated ``(N, K, 3)`` array (metres) share the index.

Tables below are literal copies of the trees in Pose2Sim's ``skeletons.py`` (anytree ``Node(name,
id=...)``); ``tests/test_skeletons.py`` checks them node for node against the installed Pose2Sim
and the marker sets in ``Pose2Sim/OpenSim_Setup``. Nothing here imports Pose2Sim or anytree.

Points, keypoints and derived points
------------------------------------
Pose2Sim's COCO trees contain *virtual* nodes (``id=None``): ``Hip`` (root) and ``Neck`` (child of
``Hip``), which the pose model does not output. They are kept here as :class:`DerivedPoint`\\ s,
computed as the mean of source keypoints, as Pose2Sim does in ``common.add_neck_hip_data`` (on
3D data, before marker augmentation): ``Hip = (LHip + RHip) / 2``,
``Neck = (LShoulder + RShoulder) / 2``.
*Points* are the keypoints followed by the derived points: point index ``K + j`` is
``derived[j]``; :meth:`Skeleton.with_derived` appends them to an array, ``(..., K, C)`` ->
``(..., K + D, C)``. ``point_parents`` is the full Pose2Sim tree over points; ``parents`` is the
same tree restricted to keypoints (a keypoint whose parent is a derived point gets ``-1``), so it
can index ``(…, K, …)`` arrays directly. HALPE_26 outputs ``Hip`` (19) and ``Neck`` (18) itself
and has no derived points.

Pose2Sim's BLAZEPOSE tree has a ``Hip`` root with ``id=None`` (derived, as for COCO; it has no
``Neck``) and names id 25 ``Lknee``: rtkin calls it ``LKnee``, the name of the marker in
``Markers_BlazePose.xml`` and of the IK task in ``IK_Setup_Pose2Sim_Blazepose.xml``
(:data:`POSE2SIM_TREE_TYPOS`). Pose2Sim itself writes a TRC column ``Lknee`` that no marker
matches, so its BlazePose IK runs without the left knee.

Keypoints the Pose2Sim tree does not name (documented in the tables as "not in Pose2Sim tree"):
- HALPE_26 and COCO_17 ids 1-4: ``LEye``, ``REye``, ``LEar``, ``REar`` (their COCO names, as in
  Pose2Sim's COCO_133); parent ``Nose``, as in Pose2Sim's COCO_133.
- BLAZEPOSE ids 1, 3, 4, 6 (inner and outer eye corners ``LEyeInner``, ``LEyeOuter``,
  ``REyeInner``, ``REyeOuter``), 7, 8 (``LEar``, ``REar``) and 9, 10 (mouth corners ``LMouth``,
  ``RMouth``): MediaPipe's ``left_eye_inner`` ... ``mouth_right``; parent ``Nose``.
- COCO_133 ids 91 and 112, the hand roots of COCO-WholeBody (a second wrist estimate from the hand
  head): ``LHandRoot``, ``RHandRoot``, parents ``LWrist``, ``RWrist``.

Names follow Pose2Sim exactly, including its irregular COCO_133 hand names: the second thumb joint
(ids 93/114) is ``LThumb``/``RThumb`` and the first index and pinky joints (96/117, 108/129) are
``LIndex``/``RIndex``, ``LPinky``/``RPinky``; the others are numbered (``LThumb1``, ``LIndex2``...).
Those un-numbered names are the hand markers of ``Markers_Coco133.xml``. Face points (ids 23-90,
the 68-point 300-W mark-up) are ``Jaw1-17``, ``EyebrowR1-5``, ``EyebrowL1-5``, ``Nose1-9``,
``REye1-6``, ``LEye1-6``, ``Mouth1-20``, where R/L is the subject's side; Pose2Sim hangs each group
as a chain under ``Neck``.

Left/right pairs
----------------
``lr_pairs`` are ``(left, right)`` keypoint indices: every ``L<x>``/``R<x>`` name pair, plus, for
COCO_133, the 29 mirror pairs of the face, taken from the COCO-WholeBody flip map (not from the
names: the mirror of ``REye1``, the right outer eye corner, is ``LEye4``; of ``EyebrowR1`` it is
``EyebrowL5``; the jaw and mouth mirror within one name group). Derived points are central.

Markers
-------
``markers`` maps point names to marker names of the Pose2Sim marker set ``marker_set``; all three
marker sets use the keypoint names, and a marker may belong to a derived point (COCO_17 ``Neck``).
Keypoints without a marker: eyes and ears in HALPE_26 and COCO_17; ears, face and most hand points
in COCO_133. See :data:`KNOWN_MARKER_SET_ISSUES` for defects of the shipped marker sets.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from types import MappingProxyType

import numpy as np

__all__ = [
    "DerivedPoint",
    "Skeleton",
    "SKELETONS",
    "DEFAULT_SKELETON",
    "KNOWN_MARKER_SET_ISSUES",
    "MARKER_SET_FIXES",
    "get_skeleton",
    "HALPE_26",
    "COCO_17",
    "COCO_133",
    "BLAZEPOSE",
    "POSE2SIM_TREE_TYPOS",
]


@dataclass(frozen=True)
class DerivedPoint:
    """A point computed from keypoints rather than output by the pose model.

    Attributes:
        name: point name, e.g. ``"Neck"``.
        sources: keypoint indices whose mean is the point (same units as the keypoints).
        parent: parent *point* index (keypoint ``< K`` or derived ``K + j``), ``-1`` for a root.
    """

    name: str
    sources: tuple[int, ...]
    parent: int


@dataclass(frozen=True)
class Skeleton:
    """Keypoint layout of one pose model, its kinematic tree and its OpenSim markers.

    Attributes:
        name: skeleton name, e.g. ``"HALPE_26"``.
        keypoints: ``(K,)`` names in pose-model output order (index ``k`` = RTMPose output ``k``).
        point_parents: ``(K + D,)`` parent point index of each point (keypoints, then derived
            points), ``-1`` for a root: Pose2Sim's tree node for node.
        lr_pairs: ``(left, right)`` keypoint index pairs swapped by :meth:`swap_lr`.
        marker_set: file name of the Pose2Sim OpenSim marker set, e.g. ``"Markers_Halpe26.xml"``
            (locate it with ``rtkin.core.assets.marker_set_path(name)``).
        markers: ``(point name, OpenSim marker name)`` pairs, in marker-set order.
        derived: ``(D,)`` points computed from keypoints (``Hip``/``Neck`` for COCO models).
        unmapped_markers: ``(marker name, reason)`` for markers of ``marker_set`` deliberately
            left out of ``markers``.
    """

    name: str
    keypoints: tuple[str, ...]
    point_parents: tuple[int, ...]
    lr_pairs: tuple[tuple[int, int], ...]
    marker_set: str
    markers: tuple[tuple[str, str], ...]
    derived: tuple[DerivedPoint, ...] = ()
    unmapped_markers: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        _validate(self)

    # ----------------------------------------------------------------- sizes and names
    @property
    def n_keypoints(self) -> int:
        """K, the number of pose-model outputs."""
        return len(self.keypoints)

    @property
    def n_points(self) -> int:
        """K + D, keypoints plus derived points."""
        return len(self.keypoints) + len(self.derived)

    @cached_property
    def points(self) -> tuple[str, ...]:
        """``(K + D,)`` point names: keypoints, then derived points."""
        return self.keypoints + tuple(d.name for d in self.derived)

    @cached_property
    def parents(self) -> tuple[int, ...]:
        """``(K,)`` parent keypoint index per keypoint; ``-1`` for a root or a derived parent."""
        k = self.n_keypoints
        return tuple(p if p < k else -1 for p in self.point_parents[:k])

    @cached_property
    def roots(self) -> tuple[int, ...]:
        """Point indices of the tree roots (``point_parents == -1``)."""
        return tuple(i for i, p in enumerate(self.point_parents) if p == -1)

    @cached_property
    def marker_map(self) -> Mapping[str, str]:
        """Point name -> OpenSim marker name (read-only view of ``markers``)."""
        return MappingProxyType(dict(self.markers))

    @cached_property
    def _index(self) -> dict[str, int]:
        return {n: i for i, n in enumerate(self.points)}

    def index(self, name: str) -> int:
        """Point index of ``name``: ``< K`` for a keypoint, ``K + j`` for ``derived[j]``.

        Raises:
            KeyError: unknown name.
        """
        try:
            return self._index[name]
        except KeyError as e:
            raise KeyError(f"no point {name!r} in skeleton {self.name}") from e

    def indices(self, names: Iterable[str]) -> np.ndarray:
        """``(M,)`` intp point indices of ``names``, for fancy indexing (see :meth:`index`)."""
        return np.array([self.index(n) for n in names], dtype=np.intp)

    # ----------------------------------------------------------------- tree
    def bones(self, derived: bool = False) -> list[tuple[int, int]]:
        """``(parent, child)`` index pairs of the tree, ordered by child.

        Args:
            derived: if False, only bones between keypoints (indices ``< K``, usable on
                ``(…, K, …)`` arrays); if True, all bones between points (indices ``< K + D``,
                for arrays extended with :meth:`with_derived`).
        """
        n = self.n_points if derived else self.n_keypoints
        return [(p, c) for c, p in enumerate(self.point_parents[:n]) if 0 <= p < n]

    # ----------------------------------------------------------------- arrays
    @cached_property
    def _lr_permutation(self) -> np.ndarray:
        perm = np.arange(self.n_points, dtype=np.intp)
        for left, right in self.lr_pairs:
            perm[left], perm[right] = right, left
        perm.setflags(write=False)
        return perm

    def lr_permutation(self, n: int | None = None) -> np.ndarray:
        """``(n,)`` read-only permutation swapping left/right; ``n`` is K (default) or K + D."""
        n = self.n_keypoints if n is None else n
        if n not in (self.n_keypoints, self.n_points):
            raise ValueError(
                f"{self.name}: keypoint axis has {n} entries, expected {self.n_keypoints} "
                f"(keypoints) or {self.n_points} (with derived points)"
            )
        return self._lr_permutation[:n]

    def swap_lr(self, array: np.ndarray, axis: int = -2) -> np.ndarray:
        """Copy of ``array`` with left and right keypoints exchanged along ``axis``.

        Args:
            array: any array whose ``axis`` has K (or K + D) entries, e.g. ``(P, K, 3)`` pixels and
                scores or ``(N, K, 3)`` metres; values and units are untouched.
            axis: the keypoint axis (default ``-2``, as in ``(…, K, 3)``).

        Returns:
            New array of the same shape and dtype. Applying it twice gives ``array`` back.
        """
        array = np.asarray(array)
        perm = self.lr_permutation(array.shape[axis])
        return np.take(array, perm, axis=axis)

    def with_derived(self, array: np.ndarray, axis: int = -2) -> np.ndarray:
        """Append the derived points to an array of keypoints.

        Args:
            array: ``(…, K, C)`` (for ``axis=-2``) keypoint data, e.g. ``(N, K, 3)`` metres.
                Derived values are the mean of their sources channel by channel (so a score
                channel is averaged too); a NaN source gives a NaN derived value.
            axis: the keypoint axis, with K entries.

        Returns:
            ``(…, K + D, C)`` float array; equal to ``array`` (as float) when D = 0.
        """
        array = np.asarray(array)
        ax = axis % array.ndim
        if array.shape[ax] != self.n_keypoints:
            raise ValueError(
                f"{self.name}: axis {axis} has {array.shape[ax]} entries, "
                f"expected {self.n_keypoints} keypoints"
            )
        if not np.issubdtype(array.dtype, np.floating):
            array = array.astype(np.float64)
        extra = [np.take(array, list(d.sources), axis=ax).mean(axis=ax, keepdims=True)
                 for d in self.derived]
        return np.concatenate([array, *extra], axis=ax)


def _validate(sk: Skeleton) -> None:
    """Check internal consistency; raise ValueError on the first problem."""
    k, n = len(sk.keypoints), len(sk.keypoints) + len(sk.derived)
    names = sk.keypoints + tuple(d.name for d in sk.derived)
    if len(set(names)) != n:
        raise ValueError(f"{sk.name}: duplicate point names")
    if len(sk.point_parents) != n:
        raise ValueError(f"{sk.name}: {len(sk.point_parents)} parents for {n} points")
    for j, d in enumerate(sk.derived):
        if d.parent != sk.point_parents[k + j]:
            raise ValueError(f"{sk.name}: derived point {d.name} parent mismatch")
        if not d.sources or not all(0 <= s < k for s in d.sources):
            raise ValueError(f"{sk.name}: derived point {d.name} needs keypoint sources")
    for i, p in enumerate(sk.point_parents):
        if not -1 <= p < n or p == i:
            raise ValueError(f"{sk.name}: bad parent {p} for point {names[i]}")
    for i in range(n):  # acyclic: every walk up reaches a root within n steps
        j, steps = i, 0
        while j != -1:
            j, steps = sk.point_parents[j], steps + 1
            if steps > n:
                raise ValueError(f"{sk.name}: cycle through point {names[i]}")
    flat = [i for pair in sk.lr_pairs for i in pair]
    if len(set(flat)) != len(flat) or not all(0 <= i < k for i in flat):
        raise ValueError(f"{sk.name}: lr_pairs must be distinct keypoint indices")
    marker_names = [m for _, m in sk.markers] + [m for m, _ in sk.unmapped_markers]
    if len(set(marker_names)) != len(marker_names):
        raise ValueError(f"{sk.name}: duplicate marker names")
    for point, _ in sk.markers:
        if point not in names:
            raise ValueError(f"{sk.name}: marker for unknown point {point!r}")


def _build(
    name: str,
    table: tuple[tuple[str, str | None], ...],
    derived: tuple[tuple[str, tuple[str, ...], str | None], ...],
    lr_names: tuple[tuple[str, str], ...],
    marker_set: str,
    markers: tuple[str, ...],
) -> Skeleton:
    """Build a Skeleton from name tables (markers named like their points)."""
    points = [n for n, _ in table] + [n for n, _, _ in derived]
    idx = {n: i for i, n in enumerate(points)}

    def parent(p: str | None) -> int:
        return -1 if p is None else idx[p]

    parents = tuple(parent(p) for _, p in table) + tuple(parent(p) for _, _, p in derived)
    return Skeleton(
        name=name,
        keypoints=tuple(n for n, _ in table),
        point_parents=parents,
        lr_pairs=tuple((idx[left], idx[right]) for left, right in lr_names),
        marker_set=marker_set,
        markers=tuple((m, m) for m in markers),
        derived=tuple(DerivedPoint(n, tuple(idx[s] for s in src), parent(p))
                      for n, src, p in derived),
    )


# ===================================================================== tables
# (keypoint name, parent name or None); row k = pose-model output k. Parents may be derived points.

_HALPE_26_KEYPOINTS: tuple[tuple[str, str | None], ...] = (
    ("Nose", "Head"),             # 0
    ("LEye", "Nose"),             # 1  (not in Pose2Sim tree)
    ("REye", "Nose"),             # 2  (not in Pose2Sim tree)
    ("LEar", "Nose"),             # 3  (not in Pose2Sim tree)
    ("REar", "Nose"),             # 4  (not in Pose2Sim tree)
    ("LShoulder", "Neck"),        # 5
    ("RShoulder", "Neck"),        # 6
    ("LElbow", "LShoulder"),      # 7
    ("RElbow", "RShoulder"),      # 8
    ("LWrist", "LElbow"),         # 9
    ("RWrist", "RElbow"),         # 10
    ("LHip", "Hip"),              # 11
    ("RHip", "Hip"),              # 12
    ("LKnee", "LHip"),            # 13
    ("RKnee", "RHip"),            # 14
    ("LAnkle", "LKnee"),          # 15
    ("RAnkle", "RKnee"),          # 16
    ("Head", "Neck"),             # 17
    ("Neck", "Hip"),              # 18
    ("Hip", None),                # 19
    ("LBigToe", "LAnkle"),        # 20
    ("RBigToe", "RAnkle"),        # 21
    ("LSmallToe", "LBigToe"),     # 22
    ("RSmallToe", "RBigToe"),     # 23
    ("LHeel", "LAnkle"),          # 24
    ("RHeel", "RAnkle"),          # 25
)

_COCO_17_KEYPOINTS: tuple[tuple[str, str | None], ...] = (
    ("Nose", "Neck"),             # 0
    ("LEye", "Nose"),             # 1  (not in Pose2Sim tree)
    ("REye", "Nose"),             # 2  (not in Pose2Sim tree)
    ("LEar", "Nose"),             # 3  (not in Pose2Sim tree)
    ("REar", "Nose"),             # 4  (not in Pose2Sim tree)
    ("LShoulder", "Neck"),        # 5
    ("RShoulder", "Neck"),        # 6
    ("LElbow", "LShoulder"),      # 7
    ("RElbow", "RShoulder"),      # 8
    ("LWrist", "LElbow"),         # 9
    ("RWrist", "RElbow"),         # 10
    ("LHip", "Hip"),              # 11
    ("RHip", "Hip"),              # 12
    ("LKnee", "LHip"),            # 13
    ("RKnee", "RHip"),            # 14
    ("LAnkle", "LKnee"),          # 15
    ("RAnkle", "RKnee"),          # 16
)

_COCO_133_KEYPOINTS: tuple[tuple[str, str | None], ...] = (
    ("Nose", "Neck"),             # 0
    ("LEye", "Nose"),             # 1
    ("REye", "Nose"),             # 2
    ("LEar", "Nose"),             # 3
    ("REar", "Nose"),             # 4
    ("LShoulder", "Neck"),        # 5
    ("RShoulder", "Neck"),        # 6
    ("LElbow", "LShoulder"),      # 7
    ("RElbow", "RShoulder"),      # 8
    ("LWrist", "LElbow"),         # 9
    ("RWrist", "RElbow"),         # 10
    ("LHip", "Hip"),              # 11
    ("RHip", "Hip"),              # 12
    ("LKnee", "LHip"),            # 13
    ("RKnee", "RHip"),            # 14
    ("LAnkle", "LKnee"),          # 15
    ("RAnkle", "RKnee"),          # 16
    ("LBigToe", "LAnkle"),        # 17
    ("LSmallToe", "LBigToe"),     # 18
    ("LHeel", "LAnkle"),          # 19
    ("RBigToe", "RAnkle"),        # 20
    ("RSmallToe", "RBigToe"),     # 21
    ("RHeel", "RAnkle"),          # 22
    ("Jaw1", "Neck"),             # 23
    ("Jaw2", "Jaw1"),             # 24
    ("Jaw3", "Jaw2"),             # 25
    ("Jaw4", "Jaw3"),             # 26
    ("Jaw5", "Jaw4"),             # 27
    ("Jaw6", "Jaw5"),             # 28
    ("Jaw7", "Jaw6"),             # 29
    ("Jaw8", "Jaw7"),             # 30
    ("Jaw9", "Jaw8"),             # 31
    ("Jaw10", "Jaw9"),            # 32
    ("Jaw11", "Jaw10"),           # 33
    ("Jaw12", "Jaw11"),           # 34
    ("Jaw13", "Jaw12"),           # 35
    ("Jaw14", "Jaw13"),           # 36
    ("Jaw15", "Jaw14"),           # 37
    ("Jaw16", "Jaw15"),           # 38
    ("Jaw17", "Jaw16"),           # 39
    ("EyebrowR1", "Neck"),        # 40
    ("EyebrowR2", "EyebrowR1"),   # 41
    ("EyebrowR3", "EyebrowR2"),   # 42
    ("EyebrowR4", "EyebrowR3"),   # 43
    ("EyebrowR5", "EyebrowR4"),   # 44
    ("EyebrowL1", "EyebrowR5"),   # 45
    ("EyebrowL2", "EyebrowL1"),   # 46
    ("EyebrowL3", "EyebrowL2"),   # 47
    ("EyebrowL4", "EyebrowL3"),   # 48
    ("EyebrowL5", "EyebrowL4"),   # 49
    ("Nose1", "Neck"),            # 50
    ("Nose2", "Nose1"),           # 51
    ("Nose3", "Nose2"),           # 52
    ("Nose4", "Nose3"),           # 53
    ("Nose5", "Nose4"),           # 54
    ("Nose6", "Nose5"),           # 55
    ("Nose7", "Nose6"),           # 56
    ("Nose8", "Nose7"),           # 57
    ("Nose9", "Nose8"),           # 58
    ("REye1", "Neck"),            # 59
    ("REye2", "REye1"),           # 60
    ("REye3", "REye2"),           # 61
    ("REye4", "REye3"),           # 62
    ("REye5", "REye4"),           # 63
    ("REye6", "REye5"),           # 64
    ("LEye1", "Neck"),            # 65
    ("LEye2", "LEye1"),           # 66
    ("LEye3", "LEye2"),           # 67
    ("LEye4", "LEye3"),           # 68
    ("LEye5", "LEye4"),           # 69
    ("LEye6", "LEye5"),           # 70
    ("Mouth1", "Neck"),           # 71
    ("Mouth2", "Mouth1"),         # 72
    ("Mouth3", "Mouth2"),         # 73
    ("Mouth4", "Mouth3"),         # 74
    ("Mouth5", "Mouth4"),         # 75
    ("Mouth6", "Mouth5"),         # 76
    ("Mouth7", "Mouth6"),         # 77
    ("Mouth8", "Mouth7"),         # 78
    ("Mouth9", "Mouth8"),         # 79
    ("Mouth10", "Mouth9"),        # 80
    ("Mouth11", "Mouth10"),       # 81
    ("Mouth12", "Mouth11"),       # 82
    ("Mouth13", "Mouth12"),       # 83
    ("Mouth14", "Mouth13"),       # 84
    ("Mouth15", "Mouth14"),       # 85
    ("Mouth16", "Mouth15"),       # 86
    ("Mouth17", "Mouth16"),       # 87
    ("Mouth18", "Mouth17"),       # 88
    ("Mouth19", "Mouth18"),       # 89
    ("Mouth20", "Mouth19"),       # 90
    ("LHandRoot", "LWrist"),      # 91  (not in Pose2Sim tree)
    ("LThumb1", "LWrist"),        # 92
    ("LThumb", "LThumb1"),        # 93
    ("LThumb3", "LThumb"),        # 94
    ("LThumb4", "LThumb3"),       # 95
    ("LIndex", "LWrist"),         # 96
    ("LIndex2", "LIndex"),        # 97
    ("LIndex3", "LIndex2"),       # 98
    ("LIndex4", "LIndex3"),       # 99
    ("LMiddle1", "LWrist"),       # 100
    ("LMiddle2", "LMiddle1"),     # 101
    ("LMiddle3", "LMiddle2"),     # 102
    ("LMiddle4", "LMiddle3"),     # 103
    ("LRing1", "LWrist"),         # 104
    ("LRing2", "LRing1"),         # 105
    ("LRing3", "LRing2"),         # 106
    ("LRing4", "LRing3"),         # 107
    ("LPinky", "LWrist"),         # 108
    ("LPinky2", "LPinky"),        # 109
    ("LPinky3", "LPinky2"),       # 110
    ("LPinky4", "LPinky3"),       # 111
    ("RHandRoot", "RWrist"),      # 112  (not in Pose2Sim tree)
    ("RThumb1", "RWrist"),        # 113
    ("RThumb", "RThumb1"),        # 114
    ("RThumb3", "RThumb"),        # 115
    ("RThumb4", "RThumb3"),       # 116
    ("RIndex", "RWrist"),         # 117
    ("RIndex2", "RIndex"),        # 118
    ("RIndex3", "RIndex2"),       # 119
    ("RIndex4", "RIndex3"),       # 120
    ("RMiddle1", "RWrist"),       # 121
    ("RMiddle2", "RMiddle1"),     # 122
    ("RMiddle3", "RMiddle2"),     # 123
    ("RMiddle4", "RMiddle3"),     # 124
    ("RRing1", "RWrist"),         # 125
    ("RRing2", "RRing1"),         # 126
    ("RRing3", "RRing2"),         # 127
    ("RRing4", "RRing3"),         # 128
    ("RPinky", "RWrist"),         # 129
    ("RPinky2", "RPinky"),        # 130
    ("RPinky3", "RPinky2"),       # 131
    ("RPinky4", "RPinky3"),       # 132
)

_BLAZEPOSE_KEYPOINTS: tuple[tuple[str, str | None], ...] = (  # MediaPipe PoseLandmark order
    ("Nose", "Hip"),              # 0  nose
    ("LEyeInner", "Nose"),        # 1  left_eye_inner (not in Pose2Sim tree)
    ("LEye", "Nose"),             # 2  left_eye
    ("LEyeOuter", "Nose"),        # 3  left_eye_outer (not in Pose2Sim tree)
    ("REyeInner", "Nose"),        # 4  right_eye_inner (not in Pose2Sim tree)
    ("REye", "Nose"),             # 5  right_eye
    ("REyeOuter", "Nose"),        # 6  right_eye_outer (not in Pose2Sim tree)
    ("LEar", "Nose"),             # 7  left_ear (not in Pose2Sim tree)
    ("REar", "Nose"),             # 8  right_ear (not in Pose2Sim tree)
    ("LMouth", "Nose"),           # 9  mouth_left (not in Pose2Sim tree)
    ("RMouth", "Nose"),           # 10 mouth_right (not in Pose2Sim tree)
    ("LShoulder", "Hip"),         # 11
    ("RShoulder", "Hip"),         # 12
    ("LElbow", "LShoulder"),      # 13
    ("RElbow", "RShoulder"),      # 14
    ("LWrist", "LElbow"),         # 15
    ("RWrist", "RElbow"),         # 16
    ("LPinky", "LWrist"),         # 17
    ("RPinky", "RWrist"),         # 18
    ("LIndex", "LWrist"),         # 19
    ("RIndex", "RWrist"),         # 20
    ("LThumb", "LWrist"),         # 21
    ("RThumb", "RWrist"),         # 22
    ("LHip", "Hip"),              # 23
    ("RHip", "Hip"),              # 24
    ("LKnee", "LHip"),            # 25 (Pose2Sim's tree: "Lknee")
    ("RKnee", "RHip"),            # 26
    ("LAnkle", "LKnee"),          # 27
    ("RAnkle", "RKnee"),          # 28
    ("LHeel", "LAnkle"),          # 29
    ("RHeel", "RAnkle"),          # 30
    ("LBigToe", "LAnkle"),        # 31 left_foot_index (tip of the foot)
    ("RBigToe", "RAnkle"),        # 32 right_foot_index
)
_BLAZEPOSE_DERIVED: tuple[tuple[str, tuple[str, ...], str | None], ...] = (("Hip", ("LHip", "RHip"), None),)

#: Names in Pose2Sim's skeleton trees that differ from the marker and setup files (and from
#: rtkin): skeleton -> {Pose2Sim tree name: rtkin name}.
POSE2SIM_TREE_TYPOS: dict[str, dict[str, str]] = {"BLAZEPOSE": {"Lknee": "LKnee"}}

# Virtual nodes of Pose2Sim's COCO trees (id=None), computed as in common.add_neck_hip_data.
_COCO_DERIVED: tuple[tuple[str, tuple[str, ...], str | None], ...] = (
    ("Hip", ("LHip", "RHip"), None),
    ("Neck", ("LShoulder", "RShoulder"), "Hip"),
)

_BLAZEPOSE_LR: tuple[tuple[str, str], ...] = tuple(
    (f"L{x}", f"R{x}")
    for x in ("EyeInner", "Eye", "EyeOuter", "Ear", "Mouth", "Shoulder", "Elbow", "Wrist", "Pinky", "Index",
              "Thumb", "Hip", "Knee", "Ankle", "Heel", "BigToe")
)
_BODY_LR: tuple[tuple[str, str], ...] = tuple(
    (f"L{x}", f"R{x}")
    for x in ("Eye", "Ear", "Shoulder", "Elbow", "Wrist", "Hip", "Knee", "Ankle")
)
_FEET_LR: tuple[tuple[str, str], ...] = (
    ("LBigToe", "RBigToe"), ("LSmallToe", "RSmallToe"), ("LHeel", "RHeel"),
)
_HANDS_LR: tuple[tuple[str, str], ...] = (
    ("LHandRoot", "RHandRoot"),
    ("LThumb1", "RThumb1"), ("LThumb", "RThumb"), ("LThumb3", "RThumb3"), ("LThumb4", "RThumb4"),
    ("LIndex", "RIndex"), ("LIndex2", "RIndex2"), ("LIndex3", "RIndex3"), ("LIndex4", "RIndex4"),
    ("LMiddle1", "RMiddle1"), ("LMiddle2", "RMiddle2"),
    ("LMiddle3", "RMiddle3"), ("LMiddle4", "RMiddle4"),
    ("LRing1", "RRing1"), ("LRing2", "RRing2"), ("LRing3", "RRing3"), ("LRing4", "RRing4"),
    ("LPinky", "RPinky"), ("LPinky2", "RPinky2"), ("LPinky3", "RPinky3"), ("LPinky4", "RPinky4"),
)
# Face mirror pairs (subject's left, subject's right), from the COCO-WholeBody / 300-W flip map
# (face index f = keypoint id - 23): jaw f <-> 16-f, brows 17-21 <-> 26-22,
# nostrils 31,32 <-> 35,34, eyes 36..41 <-> 45,44,43,42,47,46,
# mouth 48,49,50,55,56 <-> 54,53,52,59,58 and 60,61,65 <-> 64,63,67.
_FACE_LR: tuple[tuple[str, str], ...] = (
    ("Jaw17", "Jaw1"), ("Jaw16", "Jaw2"), ("Jaw15", "Jaw3"), ("Jaw14", "Jaw4"),
    ("Jaw13", "Jaw5"), ("Jaw12", "Jaw6"), ("Jaw11", "Jaw7"), ("Jaw10", "Jaw8"),
    ("EyebrowL5", "EyebrowR1"), ("EyebrowL4", "EyebrowR2"), ("EyebrowL3", "EyebrowR3"),
    ("EyebrowL2", "EyebrowR4"), ("EyebrowL1", "EyebrowR5"),
    ("Nose9", "Nose5"), ("Nose8", "Nose6"),
    ("LEye4", "REye1"), ("LEye3", "REye2"), ("LEye2", "REye3"),
    ("LEye1", "REye4"), ("LEye6", "REye5"), ("LEye5", "REye6"),
    ("Mouth7", "Mouth1"), ("Mouth6", "Mouth2"), ("Mouth5", "Mouth3"),
    ("Mouth8", "Mouth12"), ("Mouth9", "Mouth11"),
    ("Mouth17", "Mouth13"), ("Mouth16", "Mouth14"), ("Mouth18", "Mouth20"),
)

# Marker names of the Pose2Sim marker sets, in file order; each is the name of the point it tracks.
_HALPE_26_MARKERS: tuple[str, ...] = (
    "Nose", "Head", "Neck", "LShoulder", "RShoulder", "LElbow", "RElbow", "LWrist", "RWrist",
    "Hip", "LHip", "RHip", "LKnee", "RKnee", "LAnkle", "RAnkle",
    "LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe", "RHeel",
)
_COCO_17_MARKERS: tuple[str, ...] = (
    "Nose", "Neck", "LShoulder", "RShoulder", "LElbow", "RElbow", "LWrist", "RWrist",
    "LHip", "RHip", "LKnee", "RKnee", "LAnkle", "RAnkle",
)  # "Neck" is the derived mid-shoulder point; the marker sits at the shoulder markers' midpoint.
_COCO_133_MARKERS: tuple[str, ...] = (
    "Nose", "REye", "LEye", "LShoulder", "RShoulder", "LElbow", "RElbow", "LWrist", "RWrist",
    "LHip", "RHip", "LKnee", "RKnee", "LAnkle", "RAnkle",
    "LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe", "RHeel",
    "RThumb", "RIndex", "RPinky", "LThumb", "LIndex", "LPinky",
)

_BLAZEPOSE_MARKERS: tuple[str, ...] = (
    "Nose", "LEye", "REye", "LShoulder", "RShoulder", "LElbow", "RElbow", "LWrist", "RWrist",
    "LHip", "RHip", "LKnee", "RKnee", "LAnkle", "RAnkle", "LBigToe", "LHeel", "RBigToe", "RHeel",
    "RThumb", "RPinky", "RIndex", "LThumb", "LPinky", "LIndex",
)

#: Defects of the marker sets shipped with Pose2Sim (checked by the tests): file -> marker -> note.
#: Every other left/right marker pair is an exact mirror image (z -> -z on the mirrored body).
KNOWN_MARKER_SET_ISSUES: dict[str, dict[str, str]] = {
    "Markers_Coco17.xml": {
        "RHip": "on /bodyset/pelvis at (-0.0054, -0.3979, -0.0006) m, ~0.32 m below the hip on "
                "the midline (it looks like the Halpe26 RKnee location pasted into the pelvis "
                "frame); LHip is at (-0.0639, -0.0813, -0.1054). The Coco17 scaling setup uses "
                "RHip in the pelvis (RHip-LHip) and right femur (RHip-RKnee) pairs.",
        "RKnee": "at (-0.0054, -0.3861, 0.0051) on femur_r, not the mirror of LKnee "
                 "(-0.0054, -0.3979, -0.0006) as in Markers_Halpe26.xml (1.2 cm off).",
    },
    "Markers_BlazePose.xml": {
        "LPinky": "at RIndex's location (0.0015, -0.0627, 0.0179) on hand_l, z not mirrored; 3 mm from the "
                  "mirror of RPinky, on the ulnar side all the same (IK weight 0.05).",
        "LIndex": "at RPinky's location (0.0045, -0.0613, -0.0150) on hand_l, z not mirrored; 3 mm from the "
                  "mirror of RIndex (IK weight 0.05).",
        "LThumb": "(0.0077, -0.0330, -0.0350) on hand_l, 6 mm from the mirror of RThumb (IK weight 0.05).",
    },
}


#: What rtkin loads instead (:func:`rtkin.kinematics.ik.load_with_markers`): marker file -> (skeleton whose
#: marker set has the right marker, markers taken from it). The Halpe26 RHip / RKnee are the exact
#: mirrors of LHip / LKnee, and the same anatomical points.
MARKER_SET_FIXES: dict[str, tuple[str, tuple[str, ...]]] = {
    "Markers_Coco17.xml": ("HALPE_26", ("RHip", "RKnee")),
}

HALPE_26 = _build(
    "HALPE_26", _HALPE_26_KEYPOINTS, (), _BODY_LR + _FEET_LR,
    "Markers_Halpe26.xml", _HALPE_26_MARKERS,
)
"""RTMPose body with feet (Halpe 26 keypoints), the default; outputs Head, Neck and Hip itself."""

COCO_17 = _build(
    "COCO_17", _COCO_17_KEYPOINTS, _COCO_DERIVED, _BODY_LR,
    "Markers_Coco17.xml", _COCO_17_MARKERS,
)
"""RTMPose body (COCO 17 keypoints); Hip and Neck are derived points."""

COCO_133 = _build(
    "COCO_133", _COCO_133_KEYPOINTS, _COCO_DERIVED, _BODY_LR + _FEET_LR + _HANDS_LR + _FACE_LR,
    "Markers_Coco133.xml", _COCO_133_MARKERS,
)
"""RTMPose whole body (COCO-WholeBody 133: body, feet, face, hands); Hip and Neck are derived."""

BLAZEPOSE = _build(
    "BLAZEPOSE", _BLAZEPOSE_KEYPOINTS, _BLAZEPOSE_DERIVED, _BLAZEPOSE_LR,
    "Markers_BlazePose.xml", _BLAZEPOSE_MARKERS,
)
"""MediaPipe BlazePose (33 landmarks: face, body, simplified hands and feet); Hip is derived."""

#: All skeletons by name.
SKELETONS: dict[str, Skeleton] = {s.name: s for s in (HALPE_26, COCO_17, COCO_133, BLAZEPOSE)}

#: Name of the default skeleton.
DEFAULT_SKELETON = "HALPE_26"


def _key(name: str) -> str:
    return name.replace("_", "").replace("-", "").lower()


def get_skeleton(name: str) -> Skeleton:
    """Skeleton by name; case, ``_`` and ``-`` are ignored (``"halpe26"`` -> ``HALPE_26``).

    Raises:
        KeyError: unknown name; the message lists the known names.
    """
    for known, skeleton in SKELETONS.items():
        if _key(known) == _key(name):
            return skeleton
    raise KeyError(f"unknown skeleton {name!r}; known skeletons: {', '.join(SKELETONS)}")
