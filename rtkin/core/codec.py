"""Wire format of the messages: ZeroMQ multipart frames, and a packed byte string for recordings.

A message on the wire is a list of frames::

    [topic, header, buf0, buf1, ...]

- ``topic``: bytes used for ZMQ prefix subscription (default per schema, see :func:`default_topic`).
  Decoding ignores its content.
- ``header``: a msgpack map ``{"schema": str, "v": 1, "fields": {scalar fields},
  "arrays": [[name, dtype_str, shape], ...]}``.
- ``buf_i``: raw C-order little-endian bytes of the i-th listed array.

Each schema has a fixed set of scalar fields and arrays, and every array ONE dtype (e.g. keypoints
``"<f4"``): the header's dtype must match it, never the other way round. A FrameSet carries each
present camera's scalar fields in ``fields["frames"]`` (None for absent cameras) and one keypoint
array per present camera, named ``"keypoints/<camera index>"``.

:func:`pack` / :func:`unpack` turn the frame list into one self-delimiting byte string::

    u32 frame_count, then per frame: u32 length, bytes     (little-endian)

Decoding never trusts the input: any malformed input raises :class:`DecodeError` (a ValueError)
with a specific message, and sizes are checked against :class:`DecodeLimits` before anything is
read or allocated. Decoded arrays are copies owned by the (immutable) message.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import NamedTuple, Any, Union

import msgpack
import numpy as np

from rtkin.core.messages import FrameSet, JointAngles, KeypointFrame, MessageValidationError, Skeleton3D

__all__ = [
    "DEFAULT_LIMITS",
    "SCHEMA_VERSION",
    "Peek",
    "peek",
    "unpack_parts",
    "DecodeError",
    "DecodeLimits",
    "Message",
    "decode",
    "default_topic",
    "encode",
    "pack",
    "pack_frames",
    "unpack",
    "unpack_from",
]

SCHEMA_VERSION = 1
Message = Union[KeypointFrame, FrameSet, Skeleton3D, JointAngles]

_U32 = struct.Struct("<I")
_HEADER_KEYS = frozenset({"schema", "v", "fields", "arrays"})


class DecodeError(ValueError):
    """Malformed, oversized or invalid input to :func:`decode` / :func:`unpack`."""


@dataclass(frozen=True)
class DecodeLimits:
    """Size limits checked before decoding reads or allocates anything.

    Attributes:
        max_header_bytes: msgpack header frame size, bytes.
        max_topic_bytes: topic frame size, bytes.
        max_array_bytes: one array buffer, bytes.
        max_total_bytes: all frames of one message together, bytes.
        max_cameras: cameras C in a FrameSet.
        max_people: people per array (P in a KeypointFrame, N in a Skeleton3D).
        max_keypoints: keypoints K per skeleton.
        max_names: coordinates Q in a JointAngles.
    """

    max_header_bytes: int = 64 * 1024
    max_topic_bytes: int = 1024
    max_array_bytes: int = 16 * 1024 * 1024
    max_total_bytes: int = 64 * 1024 * 1024
    max_cameras: int = 64
    max_people: int = 256
    max_keypoints: int = 1024
    max_names: int = 1024

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if type(value) is not int or value < 1:
                raise ValueError(f"DecodeLimits.{f.name} must be an int >= 1, got {value!r}")

    @property
    def max_frames(self) -> int:
        """Most frames a message may have: topic, header and one array per camera (or 5 arrays)."""
        return 2 + max(self.max_cameras, 5)

    def axis_limit(self, axis: str) -> int:
        """Largest allowed size of axis letter ``axis`` (P, N, K or Q)."""
        return {"P": self.max_people, "N": self.max_people, "K": self.max_keypoints, "Q": self.max_names}[axis]


DEFAULT_LIMITS = DecodeLimits()


# ---------------------------------------------------------------------------------------------
# schemas


@dataclass(frozen=True)
class _ArraySpec:
    """One array of a schema: its name, its ONE wire dtype and its axes (letters or fixed sizes)."""

    name: str
    dtype: str  # numpy ``dtype.str``, little-endian
    axes: tuple[str | int, ...]


_KEYPOINTS = _ArraySpec("keypoints", "<f4", ("P", "K", 3))
_SK3D_ARRAYS = (
    _ArraySpec("person_ids", "<i8", ("N",)),
    _ArraySpec("points", "<f8", ("N", "K", 3)),
    _ArraySpec("scores", "<f4", ("N", "K")),
    _ArraySpec("reproj_error_px", "<f4", ("N", "K")),
    _ArraySpec("n_views", "|u1", ("N", "K")),
)
_JA_ARRAYS = (
    _ArraySpec("values", "<f8", ("Q",)),
    _ArraySpec("quality", "<f4", ("Q",)),
    _ArraySpec("flags", "|u1", ("Q",)),
)

# scalar field kinds; _NAMES lists are limited by max_names, _CAMERAS and _FRAMES by max_cameras
_INT, _OPT_INT, _FLOAT, _STR = "int", "int|None", "float", "str"
_NAMES, _CAMERAS, _FRAMES = "names", "cameras", "frames"
_LISTS = (_NAMES, _CAMERAS, _FRAMES)

_KP_FIELDS = {"camera": _STR, "frame_index": _INT, "capture_ns": _INT, "skeleton": _STR, "wall_ns": _OPT_INT}
_FS_FRAME_FIELDS = {k: v for k, v in _KP_FIELDS.items() if k != "camera"}  # camera is cameras[i]
_FS_FIELDS = {"slot_ns": _INT, "slot_index": _INT, "cameras": _CAMERAS, "frames": _FRAMES}
_SK3D_FIELDS = {"time_ns": _INT, "capture_ns": _INT, "skeleton": _STR}
_JA_FIELDS = {
    "time_ns": _INT,
    "capture_ns": _INT,
    "person_id": _INT,
    "names": _NAMES,
    "marker_rms_m": _FLOAT,
}


def _scalars(msg: Any, kinds: dict[str, str]) -> dict[str, Any]:
    """Header fields of ``msg`` for the field kinds ``kinds`` (tuples become lists)."""
    return {k: list(getattr(msg, k)) if kinds[k] in _LISTS else getattr(msg, k) for k in kinds}


def _fs_fields(fs: FrameSet) -> dict[str, Any]:
    out = _scalars(fs, {k: v for k, v in _FS_FIELDS.items() if k != "frames"})
    out["frames"] = [None if f is None else _scalars(f, _FS_FRAME_FIELDS) for f in fs.frames]
    return out


def _fs_specs(fields_: dict[str, Any]) -> tuple[_ArraySpec, ...]:
    """Arrays of a FrameSet: one keypoint array per present camera (``fields_`` already checked)."""
    present = [i for i, f in enumerate(fields_["frames"]) if f is not None]
    return tuple(_ArraySpec(f"keypoints/{i}", _KEYPOINTS.dtype, _KEYPOINTS.axes) for i in present)


def _fs_arrays(fs: FrameSet) -> list[np.ndarray]:
    return [f.keypoints for f in fs.frames if f is not None]


def _build_fs(fields_: dict[str, Any], arrays: dict[str, np.ndarray]) -> FrameSet:
    cams = fields_["cameras"]
    frames = [
        None if f is None else KeypointFrame(camera=cams[i], keypoints=arrays[f"keypoints/{i}"], **f)
        for i, f in enumerate(fields_["frames"])
    ]
    return FrameSet(fields_["slot_ns"], tuple(cams), tuple(frames), slot_index=fields_["slot_index"])


@dataclass(frozen=True)
class _Schema:
    """How one message type maps to header fields and arrays, and back."""

    name: str
    cls: type
    field_kinds: dict[str, str]
    specs: Callable[[dict[str, Any]], tuple[_ArraySpec, ...]]
    get_fields: Callable[[Any], dict[str, Any]]
    get_arrays: Callable[[Any], list[np.ndarray]]
    build: Callable[[dict[str, Any], dict[str, np.ndarray]], Any]
    topic: Callable[[Any], bytes]


def _plain_schema(
    cls: type, kinds: dict[str, str], specs: tuple[_ArraySpec, ...], topic: Callable[[Any], bytes]
) -> _Schema:
    """Schema of a message whose arrays are plain dataclass fields named like the specs."""
    return _Schema(
        name=cls.__name__,
        cls=cls,
        field_kinds=kinds,
        specs=lambda _fields: specs,
        get_fields=lambda m: _scalars(m, kinds),
        get_arrays=lambda m: [getattr(m, s.name) for s in specs],
        build=lambda f, a: cls(**f, **a),
        topic=topic,
    )


_SCHEMAS: dict[str, _Schema] = {
    s.name: s
    for s in (
        _plain_schema(KeypointFrame, _KP_FIELDS, (_KEYPOINTS,), lambda m: b"kp/" + m.camera.encode()),
        _Schema("FrameSet", FrameSet, _FS_FIELDS, _fs_specs, _fs_fields, _fs_arrays, _build_fs, lambda m: b"fs"),
        _plain_schema(Skeleton3D, _SK3D_FIELDS, _SK3D_ARRAYS, lambda m: b"sk3d"),
        _plain_schema(JointAngles, _JA_FIELDS, _JA_ARRAYS, lambda m: b"ja/%d" % m.person_id),
    )
}
_BY_CLASS: dict[type, _Schema] = {s.cls: s for s in _SCHEMAS.values()}


# ---------------------------------------------------------------------------------------------
# encoding


def _schema_of(msg: Any) -> _Schema:
    try:
        return _BY_CLASS[type(msg)]
    except KeyError as e:
        raise TypeError(f"cannot encode {type(msg).__name__}: not a message type") from e


def default_topic(msg: Message) -> bytes:
    """Default ZMQ topic: ``b"kp/<camera>"``, ``b"fs"``, ``b"sk3d"`` or ``b"ja/<person_id>"``.

    ZMQ subscriptions match prefixes: subscribing to ``b"kp/cam1"`` also receives ``b"kp/cam10"``.
    """
    return _schema_of(msg).topic(msg)


def encode(msg: Message, topic: bytes | None = None) -> list[bytes]:
    """Encode ``msg`` as ZMQ frames ``[topic, header, buf0, ...]`` (see module docstring).

    Args:
        msg: a KeypointFrame, FrameSet, Skeleton3D or JointAngles.
        topic: topic frame; None = :func:`default_topic`.

    Raises:
        TypeError: ``msg`` is not a message or ``topic`` is not bytes.
    """
    schema = _schema_of(msg)
    if topic is None:
        topic = schema.topic(msg)
    if not isinstance(topic, bytes):
        raise TypeError(f"topic must be bytes, got {type(topic).__name__}")
    fields_ = schema.get_fields(msg)
    specs = schema.specs(fields_)
    arrays = schema.get_arrays(msg)
    header = {
        "schema": schema.name,
        "v": SCHEMA_VERSION,
        "fields": fields_,
        "arrays": [[s.name, s.dtype, list(a.shape)] for s, a in zip(specs, arrays)],
    }
    buffers = [np.ascontiguousarray(a, dtype=np.dtype(s.dtype)).tobytes() for s, a in zip(specs, arrays)]
    return [topic, msgpack.packb(header, use_bin_type=True), *buffers]


def pack(msg: Message, topic: bytes | None = None) -> bytes:
    """Encode ``msg`` as one self-delimiting byte string: u32 count, then u32 length + bytes per frame."""
    return pack_frames(encode(msg, topic))


def pack_frames(frames: Sequence[Any]) -> bytes:
    """Already-encoded frames (bytes-like or ``zmq.Frame``) as :func:`pack` writes them, without
    decoding them (a recorder storing what it received; :func:`unpack` validates on reading)."""
    views = [_as_view(f, i) for i, f in enumerate(frames)]
    parts = [_U32.pack(len(views))]
    for v in views:
        parts += [_U32.pack(v.nbytes), v]
    return b"".join(parts)


# ---------------------------------------------------------------------------------------------
# decoding: frames


def _as_view(frame: Any, index: int) -> memoryview:
    """A flat byte view of one frame (bytes, bytearray, memoryview or zmq.Frame-like ``.buffer``)."""
    if isinstance(frame, str):
        raise DecodeError(f"frame {index} is a str, expected bytes")
    buf = frame if isinstance(frame, (bytes, bytearray, memoryview)) else getattr(frame, "buffer", frame)
    try:
        view = memoryview(buf)
    except TypeError as e:
        raise DecodeError(f"frame {index} ({type(frame).__name__}) is not a bytes-like buffer") from e
    if view.ndim == 1 and view.format == "B":
        return view
    if not view.c_contiguous:
        raise DecodeError(f"frame {index} is not a contiguous buffer")
    return view.cast("B")


def _frame_views(frames: Any, limits: DecodeLimits) -> list[memoryview]:
    """Check the frame list's length and total size; return byte views."""
    if isinstance(frames, (bytes, bytearray, memoryview, str)):
        raise DecodeError("expected a sequence of frames, got a single buffer (use unpack() for packed bytes)")
    if not isinstance(frames, Sequence):
        raise DecodeError(f"expected a sequence of frames, got {type(frames).__name__}")
    if not 2 <= len(frames) <= limits.max_frames:
        raise DecodeError(f"message has {len(frames)} frames, expected 2..{limits.max_frames}")
    views = [_as_view(f, i) for i, f in enumerate(frames)]
    total = sum(v.nbytes for v in views)
    if total > limits.max_total_bytes:
        raise DecodeError(f"message is {total} bytes, limit {limits.max_total_bytes}")
    if views[0].nbytes > limits.max_topic_bytes:
        raise DecodeError(f"topic is {views[0].nbytes} bytes, limit {limits.max_topic_bytes}")
    return views


# ---------------------------------------------------------------------------------------------
# decoding: header


def _unpack_header(view: memoryview, limits: DecodeLimits) -> Any:
    if view.nbytes > limits.max_header_bytes:
        raise DecodeError(f"header is {view.nbytes} bytes, limit {limits.max_header_bytes}")
    n = limits.max_header_bytes
    try:
        return msgpack.unpackb(
            view, raw=False, strict_map_key=True, use_list=True,
            max_str_len=n, max_bin_len=0, max_array_len=n, max_map_len=n, max_ext_len=0,
        )  # fmt: skip
    except (ValueError, TypeError, msgpack.UnpackException) as e:  # UnicodeDecodeError is a ValueError
        raise DecodeError(f"header is not valid msgpack: {e}") from e


def _read_header(view: memoryview, limits: DecodeLimits) -> tuple[_Schema, dict[str, Any], list[Any]]:
    """Parse and check the header map; return the schema, the scalar fields and the array entries."""
    header = _unpack_header(view, limits)
    if not isinstance(header, dict):
        raise DecodeError(f"header must be a map, got {type(header).__name__}")
    if header.keys() != _HEADER_KEYS:
        _exact_keys("header", header, _HEADER_KEYS)
    name, version = header["schema"], header["v"]
    if not isinstance(name, str) or name not in _SCHEMAS:
        raise DecodeError(f"unknown schema {name!r}, expected one of {sorted(_SCHEMAS)}")
    if type(version) is not int or version != SCHEMA_VERSION:
        raise DecodeError(f"{name}: unsupported version {version!r}, this decoder reads v{SCHEMA_VERSION}")
    if not isinstance(header["arrays"], list):
        raise DecodeError(f"{name}: header 'arrays' must be a list, got {type(header['arrays']).__name__}")
    schema = _SCHEMAS[name]
    return schema, _check_fields(schema, header["fields"], limits), header["arrays"]


def _exact_keys(where: str, mapping: dict[str, Any], expected: frozenset[str] | set[str]) -> None:
    keys = set(mapping)
    if keys != expected:
        missing, extra = sorted(expected - keys), sorted(map(repr, keys - expected))
        raise DecodeError(f"{where}: missing keys {missing}, unexpected keys [{', '.join(extra)}]")


def _check_fields(schema: _Schema, value: Any, limits: DecodeLimits) -> dict[str, Any]:
    where = f"{schema.name}.fields"
    if not isinstance(value, dict):
        raise DecodeError(f"{where} must be a map, got {type(value).__name__}")
    if value.keys() != schema.field_kinds.keys():
        _exact_keys(where, value, set(schema.field_kinds))
    for key, kind in schema.field_kinds.items():
        v = value[key]
        if type(v) is not _WIRE_TYPES.get(kind) and not (v is None and kind == _OPT_INT):  # lists, or wrong
            _check_scalar(f"{schema.name}.{key}", v, kind, limits)
    if schema.cls is FrameSet and len(value["frames"]) != len(value["cameras"]):
        raise DecodeError(f"FrameSet: {len(value['frames'])} frames for {len(value['cameras'])} cameras")
    return value


_WIRE_TYPES = {_INT: int, _OPT_INT: int, _FLOAT: float, _STR: str}


def _check_scalar(where: str, value: Any, kind: str, limits: DecodeLimits) -> None:
    """Check one header field's wire type (values are checked by the message constructor)."""
    if kind == _OPT_INT and value is None:
        return
    if kind in _LISTS:
        _check_list(where, value, kind, limits)
        return
    if type(value) is not _WIRE_TYPES[kind]:
        raise DecodeError(f"{where} must be {kind}, got {type(value).__name__}")


def _check_list(where: str, value: Any, kind: str, limits: DecodeLimits) -> None:
    limit = limits.max_names if kind == _NAMES else limits.max_cameras
    if not isinstance(value, list):
        raise DecodeError(f"{where} must be a list, got {type(value).__name__}")
    if len(value) > limit:
        raise DecodeError(f"{where} has {len(value)} entries, limit {limit}")
    for i, item in enumerate(value):
        if kind != _FRAMES:
            _check_scalar(f"{where}[{i}]", item, _STR, limits)
        elif item is not None:
            _check_frame_fields(f"{where}[{i}]", item, limits)


def _check_frame_fields(where: str, value: Any, limits: DecodeLimits) -> None:
    if not isinstance(value, dict):
        raise DecodeError(f"{where} must be a map or nil, got {type(value).__name__}")
    _exact_keys(where, value, set(_FS_FRAME_FIELDS))
    for key, kind in _FS_FRAME_FIELDS.items():
        _check_scalar(f"{where}.{key}", value[key], kind, limits)


# ---------------------------------------------------------------------------------------------
# decoding: arrays


def _check_entry(where: str, entry: Any) -> tuple[str, str, list[int]]:
    """Structure of one header array entry ``[name, dtype_str, shape]``."""
    if not (isinstance(entry, list) and len(entry) == 3):
        raise DecodeError(f"{where} must be [name, dtype, shape], got {entry!r:.200}")
    name, dtype, shape = entry
    if not (isinstance(name, str) and isinstance(dtype, str) and isinstance(shape, list)):
        raise DecodeError(f"{where} must be [str, str, list], got {entry!r:.200}")
    if not all(type(d) is int and d >= 0 for d in shape):
        raise DecodeError(f"{where}: shape must be non-negative ints, got {shape!r:.200}")
    return name, dtype, shape


def _check_shape(where: str, shape: list[int], spec: _ArraySpec, limits: DecodeLimits) -> None:
    """Rank, fixed sizes and per-axis limits of a declared shape (before any allocation)."""
    if len(shape) != len(spec.axes):
        raise DecodeError(f"{where}: shape {shape} has rank {len(shape)}, expected {len(spec.axes)} {spec.axes}")
    for size, axis in zip(shape, spec.axes):
        limit = axis if isinstance(axis, int) else limits.axis_limit(axis)
        if isinstance(axis, int) and size != axis:
            raise DecodeError(f"{where}: shape {shape} must have size {axis} on that axis, expected {spec.axes}")
        if size > limit:
            raise DecodeError(f"{where}: axis {axis} = {size} exceeds limit {limit}")


_DTYPES = {d: np.dtype(d) for d in ("<f4", "<f8", "<i8", "|u1")}


def _read_array(where: str, entry: Any, spec: _ArraySpec, buf: memoryview, limits: DecodeLimits) -> np.ndarray:
    """Check one array entry and its buffer; return a read-only zero-copy view of the buffer."""
    name, dtype, shape = _check_entry(where, entry)
    if name != spec.name:
        raise DecodeError(f"{where}: array name {name!r:.100}, expected {spec.name!r}")
    where = f"{where} {name!r}"
    if dtype != spec.dtype:
        raise DecodeError(f"{where}: dtype {dtype!r:.100}, expected {spec.dtype!r}")
    _check_shape(where, shape, spec, limits)
    dt = _DTYPES[spec.dtype]
    nbytes = dt.itemsize * math.prod(shape)
    if nbytes > limits.max_array_bytes:
        raise DecodeError(f"{where}: {nbytes} bytes exceeds limit {limits.max_array_bytes}")
    if buf.nbytes != nbytes:
        raise DecodeError(f"{where}: buffer is {buf.nbytes} bytes, shape {shape} x {dtype} needs {nbytes}")
    arr = np.frombuffer(buf, dtype=dt).reshape(shape)
    arr.flags.writeable = False
    return arr


def _read_arrays(
    schema: _Schema, entries: list[Any], specs: tuple[_ArraySpec, ...], bufs: list[memoryview], limits: DecodeLimits
) -> dict[str, np.ndarray]:
    if len(entries) != len(specs):
        raise DecodeError(f"{schema.name}: header lists {len(entries)} arrays, expected {len(specs)}")
    if len(bufs) != len(specs):
        raise DecodeError(f"{schema.name}: {len(bufs)} array frames after the header, expected {len(specs)}")
    return {
        spec.name: _read_array(f"{schema.name}.arrays[{i}]", entry, spec, buf, limits)
        for i, (entry, spec, buf) in enumerate(zip(entries, specs, bufs))
    }


# ---------------------------------------------------------------------------------------------
# decoding: public


def decode(frames: Sequence[Any], limits: DecodeLimits = DEFAULT_LIMITS) -> Message:
    """Decode ZMQ frames ``[topic, header, buf0, ...]`` into a message.

    Args:
        frames: sequence of bytes, bytearray, memoryview or zmq.Frame-like objects (``.buffer``).
        limits: size limits, checked before anything is read or allocated.

    Returns:
        A validated KeypointFrame, FrameSet, Skeleton3D or JointAngles that owns its arrays.

    Raises:
        DecodeError: for any malformed, oversized or invalid input (the only exception raised).
    """
    return _decode_views(_frame_views(frames, limits), limits)


def _decode_views(views: list[memoryview], limits: DecodeLimits) -> Message:
    """:func:`decode` of flat byte views whose count and total size are checked."""
    if views[0].nbytes > limits.max_topic_bytes:
        raise DecodeError(f"topic is {views[0].nbytes} bytes, limit {limits.max_topic_bytes}")
    schema, fields_, entries = _read_header(views[1], limits)
    arrays = _read_arrays(schema, entries, schema.specs(fields_), views[2:], limits)
    try:
        return schema.build(fields_, arrays)
    except MessageValidationError as e:
        raise DecodeError(f"{schema.name}: invalid message: {e}") from e


class Peek(NamedTuple):
    """What a message's header says, before any array is read: its schema name, its scalar fields
    (``KeypointFrame``: camera, frame_index, capture_ns, skeleton, wall_ns) and the declared
    ``(name, dtype, shape)`` of each array."""

    schema: str
    fields: dict
    arrays: tuple


def peek(frames: Sequence[Any], limits: DecodeLimits = DEFAULT_LIMITS) -> Peek:
    """Read only the header of ``[topic, header, buf0, ...]`` (msgpack, no array touched): a node
    can refuse a message inconsistent with its run before paying for the full :func:`decode`.

    Raises:
        DecodeError: the frames or the header are malformed (as :func:`decode` would say).
    """
    views = _frame_views(frames, limits)
    schema, fields_, entries = _read_header(views[1], limits)
    arrays = []
    for i, e in enumerate(entries):
        name, dtype, shape = _check_entry(f"{schema.name}.arrays[{i}]", e)
        arrays.append((name, dtype, tuple(shape)))
    return Peek(schema.name, fields_, tuple(arrays))


def _read_u32(view: memoryview, pos: int, what: str) -> int:
    if pos + 4 > view.nbytes:
        raise DecodeError(f"truncated: {what} needs 4 bytes at offset {pos}, only {view.nbytes - pos} left")
    return int(_U32.unpack_from(view, pos)[0])


def _split_packed(view: memoryview, pos: int, limits: DecodeLimits) -> tuple[list[memoryview], int]:
    """Split packed frames starting at ``pos``; return the frame views and the end offset."""
    count = _read_u32(view, pos, "frame count")
    pos += 4
    if not 2 <= count <= limits.max_frames:
        raise DecodeError(f"packed message has {count} frames, expected 2..{limits.max_frames}")
    frames, total, size = [], 0, view.nbytes
    for i in range(count):
        if pos + 4 > size:
            _read_u32(view, pos, f"length of frame {i}")  # raises
        n = _U32.unpack_from(view, pos)[0]
        pos += 4
        total += n
        if total > limits.max_total_bytes:
            raise DecodeError(f"packed message exceeds {limits.max_total_bytes} bytes at frame {i}")
        if pos + n > size:
            raise DecodeError(f"truncated: frame {i} needs {n} bytes at offset {pos}, only {size - pos} left")
        frames.append(view[pos : pos + n])
        pos += n
    return frames, pos


def unpack_from(data: Any, offset: int = 0, limits: DecodeLimits = DEFAULT_LIMITS) -> tuple[Message, int]:
    """Decode one packed message starting at byte ``offset`` of ``data``.

    Returns:
        ``(message, end)``: ``end`` is the offset just after the message (start of the next one).

    Raises:
        DecodeError: for any malformed, truncated, oversized or invalid input.
    """
    view = _as_view(data, 0)
    if type(offset) is not int or not 0 <= offset <= view.nbytes:
        raise DecodeError(f"offset {offset!r} outside the {view.nbytes}-byte buffer")
    frames, end = _split_packed(view, offset, limits)
    return _decode_views(frames, limits), end  # flat views, count and size checked


def unpack_parts(data: Any, limits: DecodeLimits = DEFAULT_LIMITS) -> tuple[str, dict, dict[str, np.ndarray]]:
    """One packed message's schema name, scalar fields and arrays, every size and type checked
    as :func:`unpack` does, but not built into a validated message (values not checked: finite,
    scores >= 0, ...). For reading many trusted records fast (a session's report); use
    :func:`unpack` for anything a stage consumes.

    Raises:
        DecodeError: for any malformed, truncated or oversized input, or trailing bytes.
    """
    view = _as_view(data, 0)
    frames, end = _split_packed(view, 0, limits)
    if end != view.nbytes:
        raise DecodeError(f"{view.nbytes - end} trailing bytes after the packed message")
    views = _frame_views(frames, limits)
    schema, fields_, entries = _read_header(views[1], limits)
    return schema.name, fields_, _read_arrays(schema, entries, schema.specs(fields_), views[2:], limits)


def unpack(data: Any, limits: DecodeLimits = DEFAULT_LIMITS) -> Message:
    """Decode one packed message (from :func:`pack`) that fills all of ``data`` (bytes-like).

    Raises:
        DecodeError: for any malformed, truncated, oversized or invalid input, or trailing bytes.
    """
    view = _as_view(data, 0)
    msg, end = unpack_from(view, 0, limits)
    if end != view.nbytes:
        raise DecodeError(f"{view.nbytes - end} trailing bytes after the packed message")
    return msg
