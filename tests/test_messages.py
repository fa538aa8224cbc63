"""Construction and validation of the message types (rtkin.core.messages)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtkin.core.messages import (
    AngleFlag,
    FrameSet,
    JointAngles,
    KeypointFrame,
    MessageValidationError,
    Skeleton3D,
)

NAN = float("nan")


def kpf(camera="cam0", *, frame_index=0, capture_ns=1_000, skeleton="HALPE_26", keypoints=None, **kw):
    """A valid KeypointFrame, P=2, K=4 unless ``keypoints`` is given."""
    if keypoints is None:
        keypoints = np.ones((2, 4, 3), np.float32)
    return KeypointFrame(camera, frame_index, capture_ns, skeleton, keypoints, **kw)


def sk3d(n=2, k=3, **kw):
    """A valid Skeleton3D with finite points except person 0 keypoint 0."""
    points = np.arange(n * k * 3, dtype=float).reshape(n, k, 3)
    views = np.full((n, k), 2)
    err = np.full((n, k), 1.5)
    if n:
        points[0, 0] = NAN
        views[0, 0] = 0
        err[0, 0] = NAN
    args = dict(
        time_ns=5, capture_ns=4, skeleton="HALPE_26", person_ids=np.arange(n), points=points,
        scores=np.ones((n, k)), reproj_error_px=err, n_views=views,
    )  # fmt: skip
    args.update(kw)
    return Skeleton3D(**args)


def ja(names=("hip_flexion_r", "knee_angle_r"), **kw):
    q = len(names)
    args = dict(
        time_ns=5, capture_ns=4, person_id=1, names=names, values=np.linspace(-1, 1, q),
        marker_rms_m=0.01, quality=np.ones(q), flags=np.zeros(q, np.uint8),
    )  # fmt: skip
    args.update(kw)
    return JointAngles(**args)


def raises(match):
    return pytest.raises(MessageValidationError, match=match)


# --- KeypointFrame ------------------------------------------------------------------------------


def test_keypoint_frame_basic_and_properties():
    f = kpf(wall_ns=123)
    assert (f.n_people, f.n_keypoints) == (2, 4)
    assert f.keypoints.dtype == np.float32 and f.keypoints.flags.c_contiguous
    assert not f.keypoints.flags.writeable
    assert f.wall_ns == 123
    with pytest.raises(ValueError):
        f.keypoints[0, 0, 0] = 5
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.camera = "x"  # type: ignore[misc]


def test_keypoint_frame_copies_input():
    src = np.ones((1, 2, 3), np.float32)
    f = kpf(keypoints=src)
    src[0, 0, 0] = 99
    assert f.keypoints[0, 0, 0] == 1
    assert src.flags.writeable  # the caller's array is left alone


def test_keypoint_frame_coercions():
    f = kpf(keypoints=[[[1.5, 2.0, 0.5]]], frame_index=np.int64(3), capture_ns=np.int32(-7))
    assert f.keypoints.dtype == np.float32 and f.keypoints.shape == (1, 1, 3)
    assert type(f.frame_index) is int and type(f.capture_ns) is int
    assert kpf(keypoints=np.ones((1, 2, 3), np.int16)).keypoints.dtype == np.float32
    assert kpf(keypoints=np.ones((1, 2, 3), np.float64)[:, ::-1]).keypoints.flags.c_contiguous


def test_keypoint_frame_no_people():
    f = kpf(keypoints=np.zeros((0, 26, 3)))
    assert (f.n_people, f.n_keypoints) == (0, 26)


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(camera=""), "camera"),
        (dict(camera=5), "camera"),
        (dict(camera="\ud800"), "camera"),
        (dict(skeleton=""), "skeleton"),
        (dict(frame_index=-1), "frame_index"),
        (dict(frame_index=1.0), "frame_index"),
        (dict(capture_ns=True), "capture_ns"),
        (dict(capture_ns=2**63), "capture_ns"),
        (dict(capture_ns=None), "capture_ns"),
        (dict(wall_ns=1.5), "wall_ns"),
        (dict(keypoints=np.ones((4, 3))), r"keypoints.*\(P, K, 3\)"),
        (dict(keypoints=np.ones((1, 4, 2))), r"keypoints.*\(P, K, 3\)"),
        (dict(keypoints=np.ones((1, 0, 3))), "K >= 1"),
        (dict(keypoints=np.ones((1, 2, 3), bool)), "keypoints.*dtype bool"),
        (dict(keypoints=np.ones((1, 2, 3), complex)), "keypoints.*dtype complex"),
        (dict(keypoints=np.full((1, 2, 3), "a")), "keypoints.*dtype"),
        (dict(keypoints=[[[1, 2, 3]], [[1, 2]]]), "keypoints"),
        (dict(keypoints=np.full((1, 2, 3), 1e39)), "overflow float32"),
        (dict(keypoints=np.array([[[1, 2, -0.1]]])), "score.*>= 0"),
        (dict(keypoints=np.array([[[np.nan, 2, 0]]])), "keypoints.*finite"),
        (dict(keypoints=np.array([[[1, np.inf, 1]]])), "keypoints.*finite"),
    ],
)
def test_keypoint_frame_rejects(kw, match):
    with raises(match):
        kpf(**kw)


@settings(max_examples=60, deadline=None)
@given(
    p=st.integers(0, 3), k=st.integers(1, 5), data=st.data(),
    bad=st.sampled_from([np.nan, np.inf, -np.inf]),
)  # fmt: skip
def test_keypoint_frame_rejects_any_non_finite(p, k, data, bad):
    kp = np.ones((max(p, 1), k, 3), np.float32)
    idx = tuple(data.draw(st.integers(0, s - 1)) for s in kp.shape)
    kp[idx] = bad
    with raises("finite"):
        kpf(keypoints=kp)


# --- FrameSet -----------------------------------------------------------------------------------


def test_frame_set_basic():
    a, c = kpf("a", capture_ns=10), kpf("c", capture_ns=30)
    fs = FrameSet(slot_ns=20, cameras=["a", "b", "c"], frames=[a, None, c], slot_index=3)
    assert fs.cameras == ("a", "b", "c") and isinstance(fs.frames, tuple)
    assert fs.capture_ns == 30 and fs.skeleton == "HALPE_26" and fs.n_present == 2
    assert fs.frame("c") is c and fs.frame("b") is None
    with pytest.raises(KeyError, match="zz"):
        fs.frame("zz")


def test_frame_set_empty_slot():
    fs = FrameSet(20, ("a", "b"), (None, None))
    assert fs.capture_ns == 20 and fs.skeleton is None and fs.slot_index == 0


@pytest.mark.parametrize(
    "cameras, frames, match",
    [
        (("a", "b"), (None,), "1 entries for 2 cameras"),
        ((), (), "at least one camera"),
        (("a", "a"), (None, None), "unique"),
        (("a", ""), (None, None), r"cameras\[1\]"),
        ("ab", (None, None), "cameras.*tuple"),
        (("a", "b"), (None, kpf("a")), r"frames\[1\].*'a'.*'b'"),
        (("a", "b"), (None, "x"), r"frames\[1\].*KeypointFrame"),
        (("a", "b"), (kpf("a"), kpf("b", skeleton="COCO")), "skeleton"),
        (("a", "b"), (kpf("a"), kpf("b", keypoints=np.ones((1, 5, 3)))), "skeleton/K"),
        (("a",), None, "frames.*tuple"),
    ],
)
def test_frame_set_rejects(cameras, frames, match):
    with raises(match):
        FrameSet(0, cameras, frames)


def test_frame_set_rejects_bad_ints():
    with raises("slot_index"):
        FrameSet(0, ("a",), (None,), slot_index=-1)
    with raises("slot_ns"):
        FrameSet(0.5, ("a",), (None,))


# --- Skeleton3D ---------------------------------------------------------------------------------


def test_skeleton_basic():
    s = sk3d(2, 3)
    assert (s.n_people, s.n_keypoints) == (2, 3)
    dtypes = [s.person_ids.dtype, s.points.dtype, s.scores.dtype, s.reproj_error_px.dtype, s.n_views.dtype]
    assert dtypes == [np.int64, np.float64, np.float32, np.float32, np.uint8]
    assert not any(a.flags.writeable for a in (s.person_ids, s.points, s.scores, s.reproj_error_px, s.n_views))


def test_skeleton_empty_and_lists():
    s = sk3d(0, 26, person_ids=[])  # [] is float64 but empty: allowed for an int field
    assert (s.n_people, s.n_keypoints) == (0, 26) and s.person_ids.dtype == np.int64


def test_skeleton_reproj_finite_where_point_missing_is_ok():
    s = sk3d(reproj_error_px=np.full((2, 3), 2.0))
    assert s.reproj_error_px[0, 0] == 2.0


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(person_ids=[1, 1]), "person_ids.*unique"),
        (dict(person_ids=[1, 2, 3]), r"person_ids.*\(N,\)"),
        (dict(person_ids=[1.0, 2.0]), "person_ids.*dtype float64"),
        (dict(person_ids=np.array([2**64 - 1, 0], np.uint64)), "person_ids.*range"),
        (dict(points=np.zeros((2, 3))), r"points.*\(N, K, 3\)"),
        (dict(points=np.zeros((2, 0, 3)), scores=np.zeros((2, 0)), reproj_error_px=np.zeros((2, 0)),
              n_views=np.zeros((2, 0))), "K >= 1"),  # fmt: skip
        (dict(points=np.array([[[0, np.nan, 0]] * 3] * 2)), "all-finite or all-NaN"),
        (dict(points=np.array([[[0, np.inf, 0]] * 3] * 2)), "all-finite or all-NaN"),
        (dict(scores=np.ones((2, 4))), r"scores.*\(N, K\)"),
        (dict(scores=np.full((2, 3), -1.0)), "scores.*>= 0"),
        (dict(scores=np.full((2, 3), np.nan)), "scores.*finite"),
        (dict(reproj_error_px=np.full((2, 3), np.nan)), r"reproj_error_px.*NaN only.*\(0, 1\)"),
        (dict(reproj_error_px=np.full((2, 3), -1.0)), "reproj_error_px"),
        (dict(reproj_error_px=np.ones((3, 3))), "reproj_error_px.*shape"),
        (dict(n_views=np.full((2, 3), 2)), r"n_views.*0 where the point is NaN.*\(0, 0\)"),
        (dict(n_views=np.full((2, 3), 300)), "n_views.*uint8 range"),
        (dict(n_views=np.full((2, 3), -1)), "n_views.*uint8 range"),
        (dict(n_views=np.zeros((2, 3), np.float32)), "n_views.*dtype float32"),
        (dict(skeleton=None), "skeleton"),
        (dict(time_ns="1"), "time_ns"),
    ],
)
def test_skeleton_rejects(kw, match):
    with raises(match):
        sk3d(**kw)


# --- JointAngles --------------------------------------------------------------------------------


def test_joint_angles_basic():
    j = ja(flags=[AngleFlag.HELD | AngleFlag.FEW_VIEWS, 0], marker_rms_m=NAN)
    assert j.n_coordinates == 2 and j.names == ("hip_flexion_r", "knee_angle_r")
    assert j.value("knee_angle_r") == 1.0
    assert AngleFlag(int(j.flags[0])) == AngleFlag.HELD | AngleFlag.FEW_VIEWS
    assert (j.values.dtype, j.quality.dtype, j.flags.dtype) == (np.float64, np.float32, np.uint8)
    assert type(ja(marker_rms_m=0).marker_rms_m) is float
    with pytest.raises(KeyError):
        j.value("nope")


def test_angle_flag_values():
    assert [int(f) for f in AngleFlag] == [1, 2, 4, 8, 16, 32, 64, 128]  # every uint8 bit is defined
    assert [f.name for f in AngleFlag] == ["HELD", "FILLED", "FEW_VIEWS", "HIGH_REPROJ", "UNSCALED", "HEIGHT_ONLY",
                                           "PARTIAL", "UNOBSERVABLE"]


def test_joint_angles_empty():
    assert ja(names=()).n_coordinates == 0


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(names=("a", "a")), "names.*unique"),
        (dict(names=("a", "")), r"names\[1\]"),
        (dict(values=[0.0, 1.0, 2.0]), "values.*3 entries for 2 names"),
        (dict(values=[[0.0, 1.0]]), "values.*shape"),
        (dict(values=[0.0, np.nan]), "values.*finite"),
        (dict(quality=[0.5, 1.5]), r"quality.*\[0, 1\]"),
        (dict(quality=[np.nan, 1.0]), r"quality.*\[0, 1\]"),
        (dict(quality=[1.0]), "quality.*1 entries"),
        (dict(flags=[0.0, 1.0]), "flags.*dtype"),
        (dict(marker_rms_m=-0.1), "marker_rms_m"),
        (dict(marker_rms_m=np.inf), "marker_rms_m"),
        (dict(marker_rms_m=True), "marker_rms_m"),
        (dict(marker_rms_m="0.1"), "marker_rms_m"),
        (dict(person_id=1.0), "person_id"),
    ],
)
def test_joint_angles_rejects(kw, match):
    with raises(match):
        ja(**kw)


# --- equality -----------------------------------------------------------------------------------


def test_equality_exact_with_nan_positions():
    assert sk3d() == sk3d()
    assert ja(marker_rms_m=NAN) == ja(marker_rms_m=NAN)
    assert sk3d() != sk3d(reproj_error_px=np.where(np.isnan(sk3d().points[..., 0]), 7.0, 1.5))
    moved = sk3d().points.copy()
    moved[1, 1, 2] += 1e-12
    assert sk3d() != sk3d(points=moved)
    assert kpf() != kpf(frame_index=1)
    assert kpf() != "not a message" and kpf() != sk3d()


def test_frame_set_equality():
    a = FrameSet(0, ("a", "b"), (kpf("a"), None))
    assert a == FrameSet(0, ("a", "b"), (kpf("a"), None))
    assert a != FrameSet(0, ("a", "b"), (kpf("a", capture_ns=2), None))
    assert a != FrameSet(0, ("a", "b"), (None, None))


def test_messages_unhashable():
    with pytest.raises(TypeError):
        hash(kpf())


def test_replace_revalidates():
    with raises("frame_index"):
        dataclasses.replace(kpf(), frame_index=-5)
