"""Typed messages passed between stages (never dicts).

Four immutable message types flow through the pipeline:

- :class:`KeypointFrame` -- 2D keypoints of one camera image, ``(P, K, 3)`` float32 = x_px, y_px, score.
- :class:`FrameSet` -- one time slot: the rig's cameras in rig order, each a KeypointFrame or None.
- :class:`Skeleton3D` -- tracked people, ``(N, K, 3)`` float64 points in metres (NaN = not triangulated).
- :class:`JointAngles` -- one person's ``(Q,)`` coordinate values (rad / m) with quality data.

Axis letters: P people in one view, N tracked people, K keypoints, Q coordinates.
Timestamps are integer nanoseconds (``_ns`` suffix).

Every message validates its fields on construction and raises :class:`MessageValidationError`
naming the field and the problem. Arrays are coerced to the documented dtype when the input is
numeric and the cast loses no information that matters (e.g. float64 -> float32 values, int -> float,
in-range int -> uint8), copied to C order and made read-only, so a message cannot change after
construction. ``==`` compares arrays exactly, NaN positions included; messages are unhashable.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

__all__ = [
    "coordinate_unit",
    "AngleFlag",
    "FrameSet",
    "JointAngles",
    "KeypointFrame",
    "MessageValidationError",
    "Skeleton3D",
]

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1


class MessageValidationError(ValueError):
    """A message field has a wrong type, dtype, shape or value; the message names the field."""


class AngleFlag(enum.IntFlag):
    """Per-coordinate quality flags of :class:`JointAngles` (bit field stored as uint8)."""

    HELD = 1  #: value held from an earlier frame (no fresh solution this frame)
    FILLED = 2  #: value filled in (interpolated / predicted), not measured this frame
    FEW_VIEWS = 4  #: the markers driving this coordinate were seen by too few cameras
    HIGH_REPROJ = 8  #: the markers driving this coordinate have a high reprojection error
    UNSCALED = 16  #: the model was not scaled to the subject yet (generic segment lengths)
    HEIGHT_ONLY = 32  #: the model is scaled uniformly to the subject's height only (given or estimated)
    PARTIAL = 64  #: per-segment scaling in progress (factors still being refined)
    UNOBSERVABLE = 128  #: the keypoint set cannot observe this coordinate: the value is a placeholder
    # (the model default); no UNSCALED / HEIGHT_ONLY / PARTIAL bit = scaled to the subject (SCALED)


_ANGLE_FLAG_MASK = 0
for _flag in AngleFlag:
    _ANGLE_FLAG_MASK |= int(_flag)


# ---------------------------------------------------------------------------------------------
# field checks


def _fail(where: str, problem: str) -> MessageValidationError:
    return MessageValidationError(f"{where}: {problem}")


def _int(where: str, value: Any, lo: int = _INT64_MIN, hi: int = _INT64_MAX) -> int:
    """Return ``value`` as a Python int in ``[lo, hi]``; bools are rejected."""
    if type(value) is int and lo <= value <= hi:  # the common case, fast
        return value
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise _fail(where, f"must be an int, got {type(value).__name__}")
    value = int(value)
    if not lo <= value <= hi:
        raise _fail(where, f"{value} is out of range [{lo}, {hi}]")
    return value


def _float(where: str, value: Any) -> float:
    """Return ``value`` (int or float, not bool) as a Python float."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise _fail(where, f"must be a float, got {type(value).__name__}")
    return float(value)


def _name(where: str, value: Any) -> str:
    """Return ``value`` as a non-empty str that encodes to UTF-8."""
    if type(value) is str and value.isascii() and value:  # the common case, fast
        return value
    if not isinstance(value, str) or not value:
        raise _fail(where, f"must be a non-empty str, got {value!r}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise _fail(where, f"is not valid Unicode text ({e.reason})") from e
    return str(value)


def _names(where: str, value: Any) -> tuple[str, ...]:
    """Return ``value`` (tuple or list of unique non-empty str) as a tuple."""
    if not isinstance(value, (tuple, list)):
        raise _fail(where, f"must be a tuple of str, got {type(value).__name__}")
    names = tuple(_name(f"{where}[{i}]", v) for i, v in enumerate(value))
    if len(set(names)) != len(names):
        dups = sorted({n for n in names if names.count(n) > 1})
        raise _fail(where, f"names must be unique, duplicated: {dups}")
    return names


def _check_kind(where: str, src: np.ndarray, dst: np.dtype) -> None:
    """Accept ints for any numeric field, floats for float fields (and empty floats for ints)."""
    kind = src.dtype.kind
    if kind in "iu" or (kind == "f" and (dst.kind == "f" or src.size == 0)):
        return
    raise _fail(where, f"must be a numeric array castable to {dst.name}, got dtype {src.dtype}")


def _check_axes(where: str, shape: tuple[int, ...], axes: tuple[str | int, ...]) -> None:
    if len(shape) != len(axes):
        raise _fail(where, f"must have shape {_spec(axes)}, got {len(shape)}-d shape {shape}")
    for size, axis in zip(shape, axes):
        if size != axis and isinstance(axis, int):
            raise _fail(where, f"must have shape {_spec(axes)}, got {shape}")


def _spec(axes: tuple[str | int, ...]) -> str:
    return "(" + ", ".join(str(a) for a in axes) + ")"


def _cast(where: str, src: np.ndarray, dst: np.dtype) -> np.ndarray:
    """Copy ``src`` to a C-ordered array of ``dst``; reject values that do not fit."""
    if src.dtype == dst:  # nothing to convert: every value fits (the common case, fast)
        return np.array(src, order="C", copy=True)
    if dst.kind in "iu" and src.size:
        info = np.iinfo(dst)
        if src.min() < info.min or src.max() > info.max:
            raise _fail(where, f"values outside the {dst.name} range [{info.min}, {info.max}]")
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.array(src, dtype=dst, order="C", copy=True)
    if dst.kind == "f" and src.dtype.kind == "f" and np.any(np.isfinite(src) & ~np.isfinite(out)):
        raise _fail(where, f"finite values overflow {dst.name}")
    return out


def _array(where: str, value: Any, dtype: Any, axes: tuple[str | int, ...]) -> np.ndarray:
    """Validate and coerce ``value`` to a read-only C-ordered array of ``dtype`` with ``axes``."""
    if type(value) is np.ndarray and value.dtype == dtype:  # no conversion (the common case, fast)
        _check_axes(where, value.shape, axes)
        out = np.array(value, order="C", copy=True)
        out.flags.writeable = False
        return out
    try:
        src = np.asarray(value)
    except (TypeError, ValueError) as e:
        raise _fail(where, f"cannot be converted to an array ({e})") from e
    dst = np.dtype(dtype)
    _check_kind(where, src, dst)
    _check_axes(where, src.shape, axes)
    out = _cast(where, src, dst)
    out.flags.writeable = False
    return out


def _first(mask: np.ndarray) -> tuple[int, ...]:
    """Index of the first True element of ``mask`` (for error messages)."""
    return tuple(int(i) for i in np.argwhere(mask)[0])


def _require_all(where: str, ok: np.ndarray, problem: str) -> None:
    """Raise naming the first element where ``ok`` is False."""
    if not (ok.all() if isinstance(ok, np.ndarray) else np.all(ok)):  # the method: ~1 us less per check
        raise _fail(where, f"{problem} (first at index {_first(~ok)})")


def _same(a: Any, b: Any) -> bool:
    """Exact equality; arrays compare dtype, shape and values with NaN == NaN."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)):
            return False
        if a.dtype != b.dtype or a.shape != b.shape:
            return False
        return bool(np.array_equal(a, b, equal_nan=a.dtype.kind == "f"))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b)


def _unchecked(cls, **values: Any):
    """A message of ``cls`` with these field values as they are, not validated (the ``trusted``
    constructors); arrays are made read-only."""
    msg = object.__new__(cls)
    for name, value in values.items():
        if type(value) is np.ndarray:
            value.flags.writeable = False
        object.__setattr__(msg, name, value)
    return msg


class _Message:
    """Shared behaviour: exact field-wise ``==``, no hashing, validated frozen fields."""

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(_same(getattr(self, f.name), getattr(other, f.name)) for f in fields(self))  # type: ignore[arg-type]

    __hash__ = None  # type: ignore[assignment]

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)


# ---------------------------------------------------------------------------------------------
# messages


@dataclass(frozen=True, eq=False)
class KeypointFrame(_Message):
    """2D keypoints of the people detected in one camera image.

    Attributes:
        camera: camera name, as in the rig's ordered camera list (non-empty).
        frame_index: per-camera frame counter, >= 0, increasing.
        capture_ns: capture time of the image, int ns on the rig's shared clock.
        skeleton: keypoint set name, e.g. ``"HALPE_26"`` (non-empty).
        keypoints: ``(P, K, 3)`` float32 = x_px, y_px, score per person P and keypoint K, in pixels
            of the original (distorted) image. All finite; score >= 0, score 0 = missing keypoint
            (its x, y are then meaningless). P may be 0; K >= 1.
        wall_ns: optional wall-clock capture time, int ns since the Unix epoch (for logs only).
    """

    camera: str
    frame_index: int
    capture_ns: int
    skeleton: str
    keypoints: np.ndarray
    wall_ns: int | None = None

    def __post_init__(self) -> None:
        self._set("camera", _name("KeypointFrame.camera", self.camera))
        self._set("frame_index", _int("KeypointFrame.frame_index", self.frame_index, lo=0))
        self._set("capture_ns", _int("KeypointFrame.capture_ns", self.capture_ns))
        self._set("skeleton", _name("KeypointFrame.skeleton", self.skeleton))
        if self.wall_ns is not None:
            self._set("wall_ns", _int("KeypointFrame.wall_ns", self.wall_ns))
        self._set("keypoints", _keypoints("KeypointFrame.keypoints", self.keypoints))

    @property
    def n_people(self) -> int:
        """P, the number of people detected in this image."""
        return int(self.keypoints.shape[0])

    @property
    def n_keypoints(self) -> int:
        """K, the number of keypoints of the skeleton."""
        return int(self.keypoints.shape[1])


def _keypoints(where: str, value: Any) -> np.ndarray:
    """Validate a ``(P, K, 3)`` keypoint array: finite, K >= 1, scores >= 0."""
    kp = _array(where, value, np.float32, ("P", "K", 3))
    if kp.shape[1] < 1:
        raise _fail(where, f"needs at least one keypoint (K >= 1), got shape {kp.shape}")
    _require_all(where, np.isfinite(kp), "must be finite (mark a missing keypoint with score 0)")
    _require_all(where + " score", kp[..., 2] >= 0, "scores must be >= 0")
    return kp


@dataclass(frozen=True, eq=False)
class FrameSet(_Message):
    """One time slot of the rig: the cameras in rig order, each with its KeypointFrame or None.

    Attributes:
        slot_ns: nominal time of the slot, int ns on the rig's shared clock.
        cameras: ``(C,)`` tuple of unique non-empty camera names in rig order (C >= 1).
        frames: ``(C,)`` tuple; ``frames[i]`` is the KeypointFrame of ``cameras[i]`` for this slot
            or None (no frame). All present frames share one skeleton name and keypoint count K.
        slot_index: slot counter, >= 0, increasing.
    """

    slot_ns: int
    cameras: tuple[str, ...]
    frames: tuple[KeypointFrame | None, ...]
    slot_index: int = 0

    def __post_init__(self) -> None:
        self._set("slot_ns", _int("FrameSet.slot_ns", self.slot_ns))
        self._set("slot_index", _int("FrameSet.slot_index", self.slot_index, lo=0))
        cameras = _names("FrameSet.cameras", self.cameras)
        if not cameras:
            raise _fail("FrameSet.cameras", "needs at least one camera")
        self._set("cameras", cameras)
        self._set("frames", _frames(cameras, self.frames))

    @property
    def capture_ns(self) -> int:
        """Latest ``capture_ns`` of the present frames (int ns), or ``slot_ns`` if none is present."""
        return max((f.capture_ns for f in self.frames if f is not None), default=self.slot_ns)

    @property
    def skeleton(self) -> str | None:
        """Skeleton name shared by the present frames, or None if no frame is present."""
        return next((f.skeleton for f in self.frames if f is not None), None)

    @property
    def n_present(self) -> int:
        """Number of cameras with a frame in this slot."""
        return sum(f is not None for f in self.frames)

    def frame(self, name: str) -> KeypointFrame | None:
        """The frame of camera ``name`` (None if absent this slot); KeyError for an unknown camera."""
        try:
            return self.frames[self.cameras.index(name)]
        except ValueError as e:
            raise KeyError(f"camera {name!r} is not in this FrameSet {self.cameras}") from e


def _frames(cameras: tuple[str, ...], frames: Any) -> tuple[KeypointFrame | None, ...]:
    """Validate ``frames`` against ``cameras``: same length, matching names, one skeleton and K."""
    if not isinstance(frames, (tuple, list)):
        raise _fail("FrameSet.frames", f"must be a tuple, got {type(frames).__name__}")
    if len(frames) != len(cameras):
        raise _fail("FrameSet.frames", f"has {len(frames)} entries for {len(cameras)} cameras")
    layout: tuple[str, int] | None = None
    for i, (cam, f) in enumerate(zip(cameras, frames)):
        if f is None:
            continue
        where = f"FrameSet.frames[{i}]"
        if not isinstance(f, KeypointFrame):
            raise _fail(where, f"must be a KeypointFrame or None, got {type(f).__name__}")
        if f.camera != cam:
            raise _fail(where, f"camera {f.camera!r} does not match cameras[{i}] = {cam!r}")
        this = (f.skeleton, f.n_keypoints)
        if layout is not None and this != layout:
            raise _fail(where, f"skeleton/K {this} differs from the other frames' {layout}")
        layout = this
    return tuple(frames)


@dataclass(frozen=True, eq=False)
class Skeleton3D(_Message):
    """Triangulated 3D keypoints of the tracked people at one time.

    Attributes:
        time_ns: time the points refer to, int ns (after filtering, may differ from capture).
        capture_ns: capture time of the FrameSet these points come from, int ns.
        skeleton: keypoint set name (non-empty).
        person_ids: ``(N,)`` int64 unique track ids.
        points: ``(N, K, 3)`` float64 world coordinates in metres; a point is all-NaN (not
            triangulated) or all-finite.
        scores: ``(N, K)`` float32 confidence per point, finite, >= 0.
        reproj_error_px: ``(N, K)`` float32 mean reprojection error in pixels, finite >= 0 where the
            point was triangulated (``n_views > 0``); NaN or finite >= 0 where ``n_views == 0``.
        n_views: ``(N, K)`` uint8 number of cameras used per point; 0 where the point is NaN, and 0
            for a finite point that a filter held or predicted through a gap (no measurement).
    """

    time_ns: int
    capture_ns: int
    skeleton: str
    person_ids: np.ndarray
    points: np.ndarray
    scores: np.ndarray
    reproj_error_px: np.ndarray
    n_views: np.ndarray

    def __post_init__(self) -> None:
        w = "Skeleton3D"
        self._set("time_ns", _int(f"{w}.time_ns", self.time_ns))
        self._set("capture_ns", _int(f"{w}.capture_ns", self.capture_ns))
        self._set("skeleton", _name(f"{w}.skeleton", self.skeleton))
        self._set("person_ids", _person_ids(f"{w}.person_ids", self.person_ids))
        self._set("points", _points(f"{w}.points", self.points))
        self._set("scores", _array(f"{w}.scores", self.scores, np.float32, ("N", "K")))
        self._set("reproj_error_px", _array(f"{w}.reproj_error_px", self.reproj_error_px, np.float32, ("N", "K")))
        self._set("n_views", _array(f"{w}.n_views", self.n_views, np.uint8, ("N", "K")))
        self._check_shapes()
        self._check_values()

    def _check_shapes(self) -> None:
        n, k = self.points.shape[:2]
        if self.person_ids.shape != (n,):
            raise _fail("Skeleton3D.person_ids", f"shape {self.person_ids.shape} != (N,) = ({n},) of points")
        for name in ("scores", "reproj_error_px", "n_views"):
            shape = getattr(self, name).shape
            if shape != (n, k):
                raise _fail(f"Skeleton3D.{name}", f"shape {shape} != (N, K) = {(n, k)} of points")

    def _check_values(self) -> None:
        missing = np.isnan(self.points[..., 0])  # (N, K); points are all-NaN or all-finite
        _require_all("Skeleton3D.scores", np.isfinite(self.scores) & (self.scores >= 0), "must be finite and >= 0")
        _require_all("Skeleton3D.n_views", ~missing | (self.n_views == 0), "must be 0 where the point is NaN")
        err = self.reproj_error_px
        ok = (np.isfinite(err) & (err >= 0)) | ((self.n_views == 0) & np.isnan(err))
        _require_all("Skeleton3D.reproj_error_px", ok, "must be finite >= 0 (NaN only where n_views is 0)")

    @classmethod
    def trusted(cls, time_ns: int, capture_ns: int, skeleton: str, person_ids: np.ndarray, points: np.ndarray,
                scores: np.ndarray, reproj_error_px: np.ndarray, n_views: np.ndarray) -> "Skeleton3D":
        """A Skeleton3D built by a stage of this process from arrays it made itself, NOT validated
        (the constructor's checks cost ~25 us per message). The caller guarantees every invariant
        of the class docstring: int times, C-ordered arrays of the exact dtypes and shapes
        (int64, float64, float32, float32, uint8), that nothing else references (they are made
        read-only here), and the value rules. Anything decoded from the wire or a file goes
        through the validating constructor (the codec does that)."""
        return _unchecked(cls, time_ns=time_ns, capture_ns=capture_ns, skeleton=skeleton, person_ids=person_ids,
                          points=points, scores=scores, reproj_error_px=reproj_error_px, n_views=n_views)

    @property
    def n_people(self) -> int:
        """N, the number of tracked people."""
        return int(self.points.shape[0])

    @property
    def n_keypoints(self) -> int:
        """K, the number of keypoints of the skeleton."""
        return int(self.points.shape[1])

    def select(self, index) -> "Skeleton3D":
        """The same message restricted to the people at ``index`` (indices into ``person_ids``)."""
        idx = np.asarray(index, dtype=np.intp)
        return Skeleton3D(self.time_ns, self.capture_ns, self.skeleton, self.person_ids[idx], self.points[idx],
                          self.scores[idx], self.reproj_error_px[idx], self.n_views[idx])


def _person_ids(where: str, value: Any) -> np.ndarray:
    ids = _array(where, value, np.int64, ("N",))
    if len(ids) > 1 and len(np.unique(ids)) != len(ids):
        raise _fail(where, f"ids must be unique, got {ids.tolist()}")
    return ids


def _points(where: str, value: Any) -> np.ndarray:
    """Validate ``(N, K, 3)`` points: K >= 1, each point all-NaN or all-finite."""
    pts = _array(where, value, np.float64, ("N", "K", 3))
    if pts.shape[1] < 1:
        raise _fail(where, f"needs at least one keypoint (K >= 1), got shape {pts.shape}")
    ok = np.isfinite(pts).all(axis=-1) | np.isnan(pts).all(axis=-1)
    _require_all(where, ok, "each point must be all-finite or all-NaN")
    return pts


def coordinate_unit(name: str) -> str:
    """Unit of a JointAngles coordinate's value: ``"m"`` for OpenSim translations (``*_tx``,
    ``*_ty``, ``*_tz``, e.g. ``pelvis_tx``), ``"rad"`` for every other (rotational) coordinate."""
    return "m" if name.endswith(("_tx", "_ty", "_tz")) else "rad"


@dataclass(frozen=True, eq=False)
class JointAngles(_Message):
    """Generalized coordinates of one person's model at one time, with quality data.

    Attributes:
        time_ns: time the values refer to, int ns.
        capture_ns: capture time of the data these values come from, int ns.
        person_id: track id of the person (as in Skeleton3D.person_ids).
        names: ``(Q,)`` tuple of unique non-empty coordinate names (e.g. OpenSim ``knee_angle_r``).
        values: ``(Q,)`` float64, finite; rad for rotational, m for translational coordinates.
        marker_rms_m: RMS marker error of the IK solution in metres, >= 0; NaN = unknown.
        quality: ``(Q,)`` float32 in [0, 1]; 1 = trustworthy, 0 = do not trust (grey out).
        flags: ``(Q,)`` uint8 bit field of :class:`AngleFlag` values.
    """

    time_ns: int
    capture_ns: int
    person_id: int
    names: tuple[str, ...]
    values: np.ndarray
    marker_rms_m: float
    quality: np.ndarray
    flags: np.ndarray

    def __post_init__(self) -> None:
        w = "JointAngles"
        self._set("time_ns", _int(f"{w}.time_ns", self.time_ns))
        self._set("capture_ns", _int(f"{w}.capture_ns", self.capture_ns))
        self._set("person_id", _int(f"{w}.person_id", self.person_id))
        self._set("names", _names(f"{w}.names", self.names))
        self._set("marker_rms_m", _rms(f"{w}.marker_rms_m", self.marker_rms_m))
        for name, dtype in (("values", np.float64), ("quality", np.float32), ("flags", np.uint8)):
            arr = _array(f"{w}.{name}", getattr(self, name), dtype, ("Q",))
            if len(arr) != len(self.names):
                raise _fail(f"{w}.{name}", f"has {len(arr)} entries for {len(self.names)} names")
            self._set(name, arr)
        _require_all(f"{w}.values", np.isfinite(self.values), "must be finite")
        _require_all(f"{w}.quality", (self.quality >= 0) & (self.quality <= 1), "must be in [0, 1]")
        _require_all(f"{w}.flags", (self.flags & ~np.uint8(_ANGLE_FLAG_MASK)) == 0, "has bits outside AngleFlag")

    @classmethod
    def trusted(cls, time_ns: int, capture_ns: int, person_id: int, names: tuple[str, ...], values: np.ndarray,
                marker_rms_m: float, quality: np.ndarray, flags: np.ndarray) -> "JointAngles":
        """A JointAngles built by a stage of this process (the IK stage) from arrays it made
        itself, NOT validated (the constructor's checks, mostly of the names, cost ~40 us per
        message). The caller guarantees every invariant of the class docstring: int ids and
        times, ``names`` a tuple already validated (e.g. by a message built from the same solver
        before, or by the solver's model), new C-ordered ``values`` float64 (finite),
        ``quality`` float32 in [0, 1] and ``flags`` uint8 of AngleFlag bits, one per name, that
        nothing else references (made read-only here), a float ``marker_rms_m`` >= 0 or NaN.
        Anything decoded from the wire or a file goes through the validating constructor."""
        return _unchecked(cls, time_ns=time_ns, capture_ns=capture_ns, person_id=person_id, names=names,
                          values=values, marker_rms_m=marker_rms_m, quality=quality, flags=flags)

    @property
    def n_coordinates(self) -> int:
        """Q, the number of coordinates."""
        return len(self.names)

    def value(self, name: str) -> float:
        """Value of coordinate ``name`` (rad or m); KeyError for an unknown name."""
        try:
            return float(self.values[self.names.index(name)])
        except ValueError as e:
            raise KeyError(f"coordinate {name!r} is not in this JointAngles message") from e


def _rms(where: str, value: Any) -> float:
    rms = _float(where, value)
    if not (math.isnan(rms) or (math.isfinite(rms) and rms >= 0)):
        raise _fail(where, f"must be >= 0 and finite, or NaN for unknown, got {rms}")
    return rms
