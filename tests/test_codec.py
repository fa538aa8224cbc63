"""Wire format (rtkin.core.codec): round trips, malformed input, limits and fuzzing."""

from __future__ import annotations

import struct

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from rtkin.core.codec import (
    DEFAULT_LIMITS,
    DecodeError,
    DecodeLimits,
    decode,
    default_topic,
    encode,
    pack,
    unpack,
    unpack_from,
)
from rtkin.core.messages import FrameSet, JointAngles, KeypointFrame, Skeleton3D

MESSAGE_TYPES = (KeypointFrame, FrameSet, Skeleton3D, JointAngles)
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- strategies ---------------------------------------------------------------------------------

names = st.text(min_size=1, max_size=8)  # unicode, no surrogates
int64s = st.integers(-(2**63), 2**63 - 1)
f32 = st.floats(width=32, allow_nan=False, allow_infinity=False)
f32_pos = st.floats(0, 1e6, width=32)


@st.composite
def keypoint_arrays(draw, k=None, max_p=3):
    """(P, K, 3) float32: finite x, y; scores >= 0 with some exact zeros (missing)."""
    p = draw(st.integers(0, max_p))
    k = draw(st.integers(1, 6)) if k is None else k
    xy = draw(hnp.arrays(np.float32, (p, k, 2), elements=f32))
    score = draw(hnp.arrays(np.float32, (p, k, 1), elements=st.one_of(st.just(0.0), f32_pos)))
    return np.concatenate([xy, score], axis=-1)


@st.composite
def keypoint_frames(draw, camera=None, skeleton=None, k=None):
    return KeypointFrame(
        camera=draw(names) if camera is None else camera,
        frame_index=draw(st.integers(0, 2**63 - 1)),
        capture_ns=draw(int64s),
        skeleton=draw(names) if skeleton is None else skeleton,
        keypoints=draw(keypoint_arrays(k=k)),
        wall_ns=draw(st.none() | int64s),
    )


@st.composite
def frame_sets(draw):
    cameras = draw(st.lists(names, min_size=1, max_size=4, unique=True))
    skeleton, k = draw(names), draw(st.integers(1, 5))
    present = draw(st.lists(st.booleans(), min_size=len(cameras), max_size=len(cameras)))
    frames = [draw(keypoint_frames(c, skeleton, k)) if p else None for c, p in zip(cameras, present)]
    return FrameSet(draw(int64s), tuple(cameras), tuple(frames), draw(st.integers(0, 2**63 - 1)))


@st.composite
def skeletons(draw):
    n, k = draw(st.integers(0, 3)), draw(st.integers(1, 5))
    missing = draw(hnp.arrays(bool, (n, k)))
    points = draw(hnp.arrays(np.float64, (n, k, 3), elements=st.floats(-1e3, 1e3)))
    points[missing] = np.nan
    err = draw(hnp.arrays(np.float32, (n, k), elements=f32_pos))
    err[missing & draw(hnp.arrays(bool, (n, k)))] = np.nan  # NaN error only where the point is NaN
    views = draw(hnp.arrays(np.uint8, (n, k)))
    views[missing] = 0
    return Skeleton3D(
        time_ns=draw(int64s),
        capture_ns=draw(int64s),
        skeleton=draw(names),
        person_ids=np.array(draw(st.lists(int64s, min_size=n, max_size=n, unique=True)), np.int64),
        points=points,
        scores=draw(hnp.arrays(np.float32, (n, k), elements=f32_pos)),
        reproj_error_px=err,
        n_views=views,
    )


@st.composite
def joint_angles(draw):
    coord_names = draw(st.lists(names, max_size=6, unique=True))
    q = len(coord_names)
    return JointAngles(
        time_ns=draw(int64s),
        capture_ns=draw(int64s),
        person_id=draw(int64s),
        names=tuple(coord_names),
        values=draw(hnp.arrays(np.float64, (q,), elements=st.floats(allow_nan=False, allow_infinity=False))),
        marker_rms_m=draw(st.just(float("nan")) | st.floats(0, 1e3)),
        quality=draw(hnp.arrays(np.float32, (q,), elements=st.floats(0, 1, width=32))),
        flags=draw(hnp.arrays(np.uint8, (q,), elements=st.integers(0, 31))),
    )


messages = st.one_of(keypoint_frames(), frame_sets(), skeletons(), joint_angles())


def kpf(p=2, k=4, **kw):
    args = dict(camera="cam0", frame_index=3, capture_ns=10, skeleton="HALPE_26")
    args.update(kw)
    return KeypointFrame(keypoints=np.ones((p, k, 3), np.float32), **args)


def rebuild(frames, edit):
    """Re-encode ``frames`` after ``edit(header)`` mutates the decoded header map in place."""
    header = msgpack.unpackb(frames[1], raw=False)
    edit(header)
    return [frames[0], msgpack.packb(header, use_bin_type=True), *frames[2:]]


def assert_decode_error(frames, match=None, limits=DEFAULT_LIMITS):
    with pytest.raises(DecodeError, match=match):
        decode(frames, limits)


def decodes_or_raises(fn, *args):
    """Call a decoder: either a valid message comes back or DecodeError is raised, nothing else."""
    try:
        msg = fn(*args)
    except DecodeError:
        return None
    assert isinstance(msg, MESSAGE_TYPES)
    return msg


# --- round trips --------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", [keypoint_frames(), frame_sets(), skeletons(), joint_angles()],
                         ids=["KeypointFrame", "FrameSet", "Skeleton3D", "JointAngles"])  # fmt: skip
def test_round_trip(strategy):
    @FAST
    @given(msg=strategy)
    def check(msg):
        frames = encode(msg)
        assert all(isinstance(f, bytes) for f in frames)
        assert frames[0] == default_topic(msg)
        back = decode(frames)
        assert type(back) is type(msg) and back == msg
        assert unpack(pack(msg)) == msg
        for name in ("keypoints", "points", "values"):
            if hasattr(back, name):
                assert not getattr(back, name).flags.writeable

    check()


def test_round_trip_nan_bits_and_negative_zero_exact():
    s = Skeleton3D(0, 0, "s", [7], [[[np.nan] * 3, [-0.0, 0.0, 1e-300]]], [[0, 1]], [[np.nan, 0]], [[0, 3]])
    back = decode(encode(s))
    assert back.points.tobytes() == s.points.tobytes() and back.reproj_error_px.tobytes() == s.reproj_error_px.tobytes()


def test_default_topics():
    assert default_topic(kpf(camera="left")) == b"kp/left"
    assert default_topic(kpf(camera="caméra")) == "kp/caméra".encode()
    assert default_topic(FrameSet(0, ("a",), (None,))) == b"fs"
    j = JointAngles(0, 0, 42, (), [], 0.0, [], [])
    assert default_topic(j) == b"ja/42" and encode(j, topic=b"x")[0] == b"x"


def test_encode_rejects_non_messages():
    with pytest.raises(TypeError):
        encode({"camera": "a"})  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        encode(kpf(), topic="kp")  # type: ignore[arg-type]


def test_header_layout():
    frames = encode(kpf(p=2, k=5))
    header = msgpack.unpackb(frames[1], raw=False)
    assert header == {
        "schema": "KeypointFrame",
        "v": 1,
        "fields": {"camera": "cam0", "frame_index": 3, "capture_ns": 10, "skeleton": "HALPE_26", "wall_ns": None},
        "arrays": [["keypoints", "<f4", [2, 5, 3]]],
    }
    assert frames[2] == np.ones((2, 5, 3), "<f4").tobytes()


def test_frame_set_layout_skips_absent_cameras():
    fs = FrameSet(5, ("a", "b", "c"), (kpf(camera="a"), None, kpf(camera="c", p=0)))
    frames = encode(fs)
    header = msgpack.unpackb(frames[1], raw=False)
    assert [a[0] for a in header["arrays"]] == ["keypoints/0", "keypoints/2"]
    assert header["fields"]["frames"][1] is None and len(frames) == 4


class FakeZmqFrame:
    """Stands in for zmq.Frame: exposes the payload as ``.buffer``."""

    def __init__(self, data: bytes):
        self.buffer = memoryview(data)


def test_decode_accepts_buffer_types_and_owns_arrays():
    msg = kpf()
    frames = encode(msg)
    mutable = [bytearray(f) for f in frames]
    for variant in (mutable, [memoryview(f) for f in frames], [FakeZmqFrame(f) for f in frames], tuple(frames)):
        back = decode(variant)
        assert back == msg
    back = decode(mutable)
    mutable[2][:4] = struct.pack("<f", 123.0)
    assert back == msg and not back.keypoints.flags.writeable


def test_unpack_from_sequence_of_records():
    msgs = [kpf(), FrameSet(1, ("a",), (None,)), JointAngles(0, 0, 1, ("x",), [1.0], 0.0, [1.0], [0])]
    blob = b"".join(pack(m) for m in msgs) + b"tail"
    pos, out = 0, []
    for _ in msgs:
        m, pos = unpack_from(blob, pos)
        out.append(m)
    assert out == msgs and blob[pos:] == b"tail"
    with pytest.raises(DecodeError, match="trailing"):
        unpack(pack(msgs[0]) + b"\0")
    with pytest.raises(DecodeError, match="offset"):
        unpack_from(blob, len(blob) + 1)


# --- malformed input ----------------------------------------------------------------------------


def test_truncation_at_every_position():
    fs = FrameSet(5, ("a", "b"), (kpf(camera="a"), kpf(camera="b", p=1)))
    for data in (pack(kpf()), pack(fs)):
        for cut in range(len(data)):
            with pytest.raises(DecodeError):
                unpack(data[:cut])


@FAST
@given(msg=messages, data=st.data())
def test_truncation_any_message(msg, data):
    packed = pack(msg)
    cut = data.draw(st.integers(0, len(packed) - 1))
    with pytest.raises(DecodeError):
        unpack(packed[:cut])


def test_wrong_dtype_in_header_is_rejected_even_with_matching_buffer():
    msg = kpf()
    frames = encode(msg)
    for dtype in ("<f8", ">f4", "<f2", "<i4", "float32", "f4"):
        buf = np.ones((2, 4, 3), np.dtype(dtype)).tobytes()

        def edit(h, dtype=dtype):
            h["arrays"][0][1] = dtype

        assert_decode_error(rebuild(frames, edit)[:2] + [buf], "dtype")


def test_wrong_dtype_skeleton_n_views():
    frames = encode(Skeleton3D(0, 0, "s", [1], np.zeros((1, 2, 3)), [[1, 1]], [[0, 0]], [[2, 2]]))

    def edit(h):
        h["arrays"][4][1] = "<i8"

    bad = rebuild(frames, edit)
    bad[6] = np.array([[2, 2]], "<i8").tobytes()
    assert_decode_error(bad, "n_views.*dtype")


@pytest.mark.parametrize(
    "shape, match",
    [
        ([2, 12], "rank 2"),
        ([2, 4, 3, 1], "rank 4"),
        ([2, 6, 2], "size 3"),
        ([2, 4], "rank 2"),
        ([], "rank 0"),
    ],
)
def test_wrong_shape(shape, match):
    frames = encode(kpf())

    def edit(h):
        h["arrays"][0][2] = shape

    assert_decode_error(rebuild(frames, edit), match)


@pytest.mark.parametrize("shape", [[-1, 4, 3], [2.0, 4, 3], [True, 4, 3], "2,4,3", [None, 4, 3]])
def test_bad_shape_entries(shape):
    def edit(h):
        h["arrays"][0][2] = shape

    assert_decode_error(rebuild(encode(kpf()), edit), "shape must be non-negative ints|must be .str, str, list.")


def test_inconsistent_shapes_across_arrays():
    sk = Skeleton3D(0, 0, "s", [1, 2], np.zeros((2, 2, 3)), np.ones((2, 2)), np.zeros((2, 2)), np.ones((2, 2), int))
    frames = encode(sk)

    def edit(h):
        h["arrays"][2][2] = [1, 4]  # scores (N, K) = (1, 4): same byte count, wrong shape

    assert_decode_error(rebuild(frames, edit), "scores.*shape")


@pytest.mark.parametrize("delta", [-1, 1, -4, 4])
def test_buffer_length_mismatch(delta):
    frames = encode(kpf())
    buf = frames[2][:delta] if delta < 0 else frames[2] + b"\0" * delta
    assert_decode_error([*frames[:2], buf], "buffer is .* bytes")


def test_limits():
    big = encode(kpf(p=3, k=20))
    assert_decode_error(big, "axis P = 3 exceeds limit 2", DecodeLimits(max_people=2))
    assert_decode_error(big, "axis K = 20 exceeds limit 10", DecodeLimits(max_keypoints=10))
    assert_decode_error(big, "exceeds limit 100", DecodeLimits(max_array_bytes=100))
    assert_decode_error(big, "message is .* limit 500", DecodeLimits(max_total_bytes=500))
    assert_decode_error(big, "header is .* limit 50", DecodeLimits(max_header_bytes=50))
    assert_decode_error(big, "topic", DecodeLimits(max_topic_bytes=2))
    j = encode(JointAngles(0, 0, 1, ("a", "b", "c"), [0, 0, 0], 0.0, [1, 1, 1], [0, 0, 0]))
    assert_decode_error(j, "names has 3 entries, limit 2", DecodeLimits(max_names=2))
    fs = encode(FrameSet(0, ("a", "b", "c"), (None, None, None)))
    assert_decode_error(fs, "cameras has 3 entries, limit 2", DecodeLimits(max_cameras=2))
    with pytest.raises(DecodeError, match="exceeds 500 bytes"):
        unpack(pack(kpf(p=3, k=20)), DecodeLimits(max_total_bytes=500))
    with pytest.raises(ValueError):
        DecodeLimits(max_people=0)


def test_huge_declared_shape_is_rejected_before_allocation():
    frames = encode(kpf())
    for shape in ([2**40, 4, 3], [300, 4, 3], [0, 2**62, 3], [0, 4, 2**62]):

        def edit(h, shape=shape):
            h["arrays"][0][2] = shape

        assert_decode_error(rebuild(frames, edit), "exceeds limit|size 3")
    huge_count = struct.pack("<I", 2**32 - 1) + b"\0" * 8
    with pytest.raises(DecodeError, match="frames"):
        unpack(huge_count)
    huge_frame = struct.pack("<II", 2, 2**32 - 1)
    with pytest.raises(DecodeError, match="exceeds"):
        unpack(huge_frame)


@pytest.mark.parametrize("version", [0, 2, "1", 1.0, True, None])
def test_unknown_version(version):
    def edit(h):
        h["v"] = version

    assert_decode_error(rebuild(encode(kpf()), edit), "unsupported version")


@pytest.mark.parametrize("schema", ["Keypointframe", "", 3, None, ["KeypointFrame"]])
def test_unknown_schema(schema):
    def edit(h):
        h["schema"] = schema

    assert_decode_error(rebuild(encode(kpf()), edit), "unknown schema")


def test_schema_swapped_for_another():
    def edit(h):
        h["schema"] = "Skeleton3D"

    assert_decode_error(rebuild(encode(kpf()), edit), "Skeleton3D.fields: missing keys")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_keypoints(bad):
    kp = np.ones((2, 4, 3), "<f4")
    kp[1, 2, 0] = bad
    frames = encode(kpf())
    assert_decode_error([*frames[:2], kp.tobytes()], r"invalid message.*keypoints.*finite.*\(1, 2, 0\)")


def test_invalid_values_are_decode_errors():
    j = encode(JointAngles(0, 0, 1, ("a",), [0.5], 0.0, [1], [0]))
    assert_decode_error([*j[:2], np.array([np.nan]).tobytes(), *j[3:]], "values.*finite")
    # (every uint8 bit of the flags is an AngleFlag since UNOBSERVABLE = 128: no invalid flag byte left)
    assert_decode_error([*j[:3], np.array([2.0], "<f4").tobytes(), j[4]], "quality")


def test_extra_and_missing_frames():
    frames = encode(kpf())
    assert_decode_error([*frames, b""], "array frames after the header")
    assert_decode_error(frames[:2], "array frames after the header")
    assert_decode_error(frames[:1], "2..")
    assert_decode_error([], "2..")


def test_header_array_list_mismatch():
    def drop(h):
        h["arrays"] = []

    def rename(h):
        h["arrays"][0][0] = "kp"

    def short(h):
        h["arrays"][0] = ["keypoints", "<f4"]

    assert_decode_error(rebuild(encode(kpf()), drop), "header lists 0 arrays")
    assert_decode_error(rebuild(encode(kpf()), rename), "name 'kp'")
    assert_decode_error(rebuild(encode(kpf()), short), r"\[name, dtype, shape\]")


def test_frame_set_with_frame_marked_absent_but_buffer_present():
    fs = encode(FrameSet(0, ("a", "b"), (kpf(camera="a"), kpf(camera="b"))))

    def edit(h):
        h["fields"]["frames"][1] = None

    assert_decode_error(rebuild(fs, edit), "header lists 2 arrays, expected 1")


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda h: h["fields"].pop("capture_ns"), r"missing keys \['capture_ns'\]"),
        (lambda h: h["fields"].update(extra=1), "unexpected keys.*'extra'"),
        (lambda h: h["fields"].update(frame_index="3"), "frame_index must be int"),
        (lambda h: h["fields"].update(capture_ns=1.0), "capture_ns must be int"),
        (lambda h: h["fields"].update(capture_ns=True), "capture_ns must be int"),
        (lambda h: h["fields"].update(capture_ns=2**64 - 1), "capture_ns.*out of range"),
        (lambda h: h["fields"].update(frame_index=-1), "frame_index.*out of range"),
        (lambda h: h["fields"].update(wall_ns="x"), "wall_ns"),
        (lambda h: h["fields"].update(camera=""), "camera"),
        (lambda h: h["fields"].update(camera=b"cam0"), "max_bin_len"),  # bin is refused by msgpack
        (lambda h: h.update(extra=1), "header: .*unexpected"),
        (lambda h: h.pop("fields"), "header: missing keys"),
        (lambda h: h.update(fields=[1]), "fields must be a map"),
        (lambda h: h.update(arrays={}), "'arrays' must be a list"),
    ],
)
def test_bad_header_fields(edit, match):
    assert_decode_error(rebuild(encode(kpf()), edit), match)


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda h: h["fields"]["frames"].append(None), "3 frames for 2 cameras"),
        (lambda h: h["fields"].update(cameras="a"), "cameras must be a list"),
        (lambda h: h["fields"].update(cameras=[1]), r"cameras\[0\] must be str"),
        (lambda h: h["fields"]["frames"].__setitem__(0, 5), "map or nil"),
        (lambda h: h["fields"]["frames"][0].update(camera="a"), "unexpected keys.*'camera'"),
        (lambda h: h["fields"]["frames"][0].update(skeleton="other"), "invalid message"),
    ],
)
def test_bad_frame_set_fields(edit, match):
    fs = encode(FrameSet(0, ("a", "b"), (kpf(camera="a"), kpf(camera="b"))))
    assert_decode_error(rebuild(fs, edit), match)


def test_joint_angles_field_types():
    frames = encode(JointAngles(0, 0, 1, ("a",), [0.5], 0.01, [1], [0]))

    def int_rms(h):
        h["fields"]["marker_rms_m"] = 1

    def dup_names(h):
        h["fields"]["names"] = ["a", "a"]

    assert_decode_error(rebuild(frames, int_rms), "marker_rms_m must be float")
    assert_decode_error(rebuild(frames, dup_names), "unique")


@pytest.mark.parametrize(
    "header",
    [
        b"",
        b"\xc1",  # never-used msgpack byte
        b"\x93\x01\x02",  # truncated array
        b"\x81\xa1a\x01\x02",  # trailing bytes
        b"\xc4\x03abc",  # bin type (not allowed)
        b"\xd4\x01\x00",  # ext type
        b"\x81\x01\x02",  # int map key
        b"\x81\xa2\xff\xfe\x01",  # invalid utf-8
        b"\x91" * 5000,  # deep nesting
        msgpack.packb([1, 2, 3]),
        msgpack.packb("KeypointFrame"),
        b"not msgpack at all, just text",
    ],
)
def test_garbage_header(header):
    frames = encode(kpf())
    assert_decode_error([frames[0], header, *frames[2:]])


@pytest.mark.parametrize("frames", [b"abc", "abc", None, 5, [b"t", "header"], [b"t", 3], {b"t", b"h"}])
def test_not_a_frame_sequence(frames):
    with pytest.raises(DecodeError):
        decode(frames)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "data", [b"", b"\x00", b"\x00\x00\x00\x00", b"\x01\x00\x00\x00\x00\x00\x00\x00", "text", None]
)
def test_unpack_garbage(data):
    with pytest.raises(DecodeError):
        unpack(data)  # type: ignore[arg-type]


# --- fuzzing ------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=200))
def test_fuzz_random_bytes(data):
    decodes_or_raises(unpack, data)


@settings(max_examples=150, deadline=None)
@given(frames=st.lists(st.binary(max_size=64), max_size=6))
def test_fuzz_random_frames(frames):
    decodes_or_raises(decode, frames)


@st.composite
def mutated(draw):
    """A packed valid message with random byte flips, insertions and deletions."""
    data = bytearray(pack(draw(messages)))
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["flip", "set", "insert", "delete"]))
        if op == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            data[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=4))
        else:
            del data[pos]
    return bytes(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=mutated())
def test_fuzz_mutated_packed_messages(data):
    decodes_or_raises(unpack, data)


msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=8,
)
HEADER_PATHS = [
    ("schema",), ("v",), ("fields",), ("arrays",), ("fields", "capture_ns"), ("fields", "names"),
    ("fields", "frames"), ("fields", "cameras"), ("arrays", 0), ("arrays", 0, 1), ("arrays", 0, 2),
]  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(msg=messages, path=st.sampled_from(HEADER_PATHS), value=msgpack_values)
def test_fuzz_header_values(msg, path, value):
    """Replace one header entry by an arbitrary msgpack value: DecodeError or a valid message."""
    frames = encode(msg)
    header = msgpack.unpackb(frames[1], raw=False)
    node = header
    for key in path[:-1]:
        if isinstance(node, dict) and key in node or isinstance(node, list) and key < len(node):
            node = node[key]
        else:
            return
    if isinstance(node, list) and not path[-1] < len(node):
        return
    node[path[-1]] = value
    decodes_or_raises(decode, [frames[0], msgpack.packb(header, use_bin_type=True), *frames[2:]])


def test_decode_real_zmq_frames():
    zmq = pytest.importorskip("zmq")
    ctx = zmq.Context.instance()
    tx, rx = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
    try:
        tx.bind("inproc://rtkin-codec-test")
        rx.connect("inproc://rtkin-codec-test")
        msg = kpf()
        tx.send_multipart(encode(msg))
        assert decode(rx.recv_multipart(copy=False)) == msg
    finally:
        tx.close(linger=0)
        rx.close(linger=0)


def test_pack_frames_stores_received_frames_unchanged():
    """The recorder packs what it received without decoding; unpack gives the same message."""
    import zmq

    from rtkin.core.codec import pack_frames

    from rtkin.core.messages import KeypointFrame

    msg = KeypointFrame("cam01", 3, 123, "HALPE_26", np.random.default_rng(0).random((2, 26, 3), dtype=np.float32))
    frames = encode(msg)
    assert pack_frames(frames) == pack(msg)
    assert pack_frames([zmq.Frame(f) for f in frames]) == pack(msg)
    back = unpack(pack_frames(frames))
    np.testing.assert_array_equal(back.keypoints, msg.keypoints)
