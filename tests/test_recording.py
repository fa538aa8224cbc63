"""Crash-safe recording (rtkin.io.recording): round trips, every-byte truncation, corruption, kill -9."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import time
import zlib

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from rtkin.core import codec
from rtkin.core.messages import KeypointFrame, Skeleton3D
from rtkin.io.recording import (
    CAMERA_END,
    END,
    HEADER,
    INPUT,
    MAGIC,
    OUTPUT,
    Record,
    RecordingError,
    RecordingReader,
    RecordingWriter,
    read_all,
)

META = {"calibration_toml": "[cam1]\nname = \"cam1\"\n", "config": {"fps": 60.0, "cameras": ["cam1", "cam2"]}}


def kp_frame(i: int, camera: str = "cam1", p: int = 1, k: int = 26, seed: int = 0) -> KeypointFrame:
    rng = np.random.default_rng(seed + i)
    kp = rng.uniform(0, 1000, (p, k, 3)).astype(np.float32)
    kp[..., 2] = rng.uniform(0, 1, (p, k))
    wall_ns = 1_700_000_000_000_000_000 + i
    return KeypointFrame(camera, i, 1_000_000_000 + i * 16_666_667, "HALPE_26", kp, wall_ns=wall_ns)


def skeleton(i: int, n: int = 2, k: int = 26, seed: int = 0) -> Skeleton3D:
    rng = np.random.default_rng(seed + 1000 + i)
    pts = rng.normal(0, 1, (n, k, 3))
    missing = rng.random((n, k)) < 0.2
    pts[missing] = np.nan
    err = rng.uniform(0, 5, (n, k)).astype(np.float32)
    err[missing] = np.nan
    views = rng.integers(2, 5, (n, k)).astype(np.uint8)
    views[missing] = 0
    return Skeleton3D(
        time_ns=i * 16_666_667, capture_ns=i * 16_666_667 - 5, skeleton="HALPE_26",
        person_ids=np.arange(n) + 7, points=pts, scores=rng.uniform(0, 1, (n, k)).astype(np.float32),
        reproj_error_px=err, n_views=views,
    )  # fmt: skip


def write_recording(path, items, meta=META, **kw) -> RecordingWriter:
    with RecordingWriter(path, meta, **kw) as w:
        for kind, recv_ns, msg in items:
            w.write(msg, recv_ns, kind)
    return w


def assert_records_equal(got: list[Record], want: list[tuple[int, int, object]]) -> None:
    assert len(got) == len(want)
    for rec, (kind, recv_ns, msg) in zip(got, want):
        assert rec.kind == kind and rec.recv_ns == recv_ns
        assert type(rec.message) is type(msg) and rec.message == msg


# --- round trips --------------------------------------------------------------------------------


def test_round_trip_keypoints_and_skeletons(tmp_path):
    items = []
    for i in range(200):
        items.append((INPUT, 10_000 + 2 * i, kp_frame(i, camera=f"cam{i % 4 + 1}", p=i % 3)))
        if i % 4 == 3:
            items.append((OUTPUT, 10_000 + 2 * i + 1, skeleton(i, n=i % 3)))
    path = tmp_path / "session.rtkrec"
    w = write_recording(path, items)
    assert w.closed and w.n_records == len(items)
    assert w.n_bytes == path.stat().st_size

    reader = RecordingReader(path)
    assert reader.meta == META
    assert reader.header["rtkin_version"] and isinstance(reader.header["created_ns"], int)
    records = list(reader)
    assert_records_equal(records, items)
    stats = (reader.n_records, reader.n_malformed, reader.truncated, reader.tail_bytes_ignored)
    assert stats == (len(items), 0, False, 0)
    assert reader.stop_reason is None
    assert all(isinstance(r.recv_ns, int) for r in records)

    meta, again = read_all(path)
    assert meta == META
    assert_records_equal(again, items)


def test_camera_ends_are_recorded_in_order_and_survive_damage(tmp_path):
    path = tmp_path / "ends.rtkrec"
    with RecordingWriter(path, META) as w:
        for i in range(30):
            w.write(kp_frame(i), 1000 + i)
            if i in (10, 20):
                w.write_camera_end("cam2", 1000 + i)
        with pytest.raises(RecordingError, match="camera name"):
            w.write_camera_end("", 2000)
    assert [r.kind for r in RecordingReader(path)] == [INPUT] * 30  # by default: inputs and outputs
    got = [(r.recv_ns, r.message) for r in RecordingReader(path, kinds=(INPUT, CAMERA_END)) if r.kind == CAMERA_END]
    assert got == [(1010, "cam2"), (1020, "cam2")]
    # a flipped byte in the record before an end: the reader resumes at the end record
    data = bytearray(path.read_bytes())
    at = data.find(struct.pack("<Bq", CAMERA_END, 1010) + b"cam2")
    data[at - 40] ^= 0xFF
    path.write_bytes(bytes(data))
    reader = RecordingReader(path, kinds=(INPUT, CAMERA_END))
    kinds = [r.kind for r in reader]
    assert kinds.count(CAMERA_END) == 2 and reader.damaged and kinds.count(INPUT) == 29


def test_write_packed_equals_write_and_file_layout(tmp_path):
    msg = kp_frame(3)
    a, b = tmp_path / "a.rec", tmp_path / "b.rec"
    with RecordingWriter(a, {}) as wa, RecordingWriter(b, {}) as wb:
        wa.write(msg, 123, OUTPUT)
        wb.write_packed(codec.pack(msg), 123, OUTPUT)
    da, db = a.read_bytes(), b.read_bytes()
    assert da.startswith(MAGIC)
    # header record: u32 len | u32 crc | u8 kind=0 | i64 recv_ns | msgpack map
    hlen, hcrc = struct.unpack_from("<II", da, len(MAGIC))
    hpayload = da[len(MAGIC) + 8 : len(MAGIC) + 8 + hlen]
    assert zlib.crc32(hpayload) == hcrc and hpayload[0] == HEADER
    assert msgpack.unpackb(hpayload[9:])["meta"] == {}
    start = len(MAGIC) + 8 + hlen
    end_size = 8 + 9  # the end marker a clean close appends: length, crc, kind=END, recv_ns
    end_a = da[-end_size:]
    assert struct.unpack_from("<IIB", end_a)[::2] == (9, END)
    da, db = da[:-end_size], db[:-end_size]
    tail_a = da[start:]
    assert tail_a == db[len(db) - len(tail_a) :]  # identical message records
    length, crc = struct.unpack_from("<II", tail_a)
    payload = tail_a[8:]
    assert length == len(payload) and zlib.crc32(payload) == crc
    kind, recv_ns = struct.unpack_from("<Bq", payload)
    assert (kind, recv_ns) == (OUTPUT, 123)
    assert codec.unpack(payload[9:]) == msg


def test_empty_recording_and_negative_recv_ns(tmp_path):
    path = tmp_path / "empty.rec"
    RecordingWriter(path, {"x": 1}).close()
    meta, records = read_all(path)
    assert meta == {"x": 1} and records == []
    write_recording(path, [(INPUT, -(2**63), kp_frame(0)), (INPUT, 2**63 - 1, kp_frame(1))], overwrite=True)
    assert [r.recv_ns for r in read_all(path)[1]] == [-(2**63), 2**63 - 1]


def test_reader_can_iterate_twice(tmp_path):
    path = tmp_path / "r.rec"
    write_recording(path, [(INPUT, i, kp_frame(i)) for i in range(5)])
    reader = RecordingReader(path)
    assert len(list(reader)) == 5 and len(list(reader)) == 5 and reader.n_records == 5


# --- writer arguments -----------------------------------------------------------------------------


def test_refuses_to_overwrite(tmp_path):
    path = tmp_path / "keep.rec"
    write_recording(path, [(INPUT, 1, kp_frame(0))])
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        RecordingWriter(path, META)
    assert path.read_bytes() == before  # untouched
    write_recording(path, [(INPUT, 5, kp_frame(1)), (INPUT, 6, kp_frame(2))], overwrite=True)
    assert [r.recv_ns for r in read_all(path)[1]] == [5, 6]


def test_writer_rejects_bad_arguments(tmp_path):
    with pytest.raises(RecordingError, match="msgpack"):
        RecordingWriter(tmp_path / "a.rec", {"obj": object()})
    with pytest.raises(RecordingError, match="msgpack"):
        RecordingWriter(tmp_path / "b.rec", {"nested": {1: "int key"}})
    with pytest.raises(RecordingError, match="msgpack"):
        RecordingWriter(tmp_path / "b.rec", {"huge": 2**70})
    assert not (tmp_path / "a.rec").exists() and not (tmp_path / "b.rec").exists()
    with pytest.raises(RecordingError, match="flush_interval_s"):
        RecordingWriter(tmp_path / "c.rec", {}, flush_interval_s=-1)
    with RecordingWriter(tmp_path / "d.rec", {}) as w:
        with pytest.raises(RecordingError, match="kind"):
            w.write(kp_frame(0), 1, kind=HEADER)
        with pytest.raises(TypeError, match="recv_ns"):
            w.write(kp_frame(0), 1.5)
        with pytest.raises(RecordingError, match="int64"):
            w.write(kp_frame(0), 2**63)
        with pytest.raises(TypeError):
            w.write({"not": "a message"}, 1)
        w.write(kp_frame(0), np.int64(9))
        assert w.n_records == 1
    with pytest.raises(ValueError, match="closed"):
        w.write(kp_frame(1), 10)
    assert [r.recv_ns for r in read_all(tmp_path / "d.rec")[1]] == [9]


def test_flush_interval_hands_data_to_the_os(tmp_path):
    path = tmp_path / "f.rec"
    w = RecordingWriter(path, {}, flush_interval_s=0.0)  # flush every record
    w.write(kp_frame(0), 1)
    assert path.stat().st_size == w.n_bytes  # visible without close()
    assert len(read_all(path)[1]) == 1
    w.close()

    path2 = tmp_path / "g.rec"
    w = RecordingWriter(path2, {}, flush_interval_s=3600.0)
    w.write(kp_frame(0), 1)
    size_header = path2.stat().st_size
    assert size_header < w.n_bytes  # still buffered
    w.flush()
    assert path2.stat().st_size == w.n_bytes
    w.close()


def test_flush_on_time(tmp_path):
    path = tmp_path / "t.rec"
    with RecordingWriter(path, {}, flush_interval_s=0.05) as w:
        w.write(kp_frame(0), 1)
        time.sleep(0.08)
        w.write(kp_frame(1), 2)  # interval passed: this write flushes both
        assert path.stat().st_size == w.n_bytes


def test_write_cost_per_record(tmp_path):
    msgs = [kp_frame(i, p=2) for i in range(2000)]
    packed = [codec.pack(m) for m in msgs]
    with RecordingWriter(tmp_path / "speed.rec", {}) as w:
        t0 = time.perf_counter()
        for i, p in enumerate(packed):
            w.write_packed(p, i)
        dt = (time.perf_counter() - t0) / len(packed)
    assert dt < 200e-6, f"write_packed costs {dt * 1e6:.1f} us per record"  # ~2-5 us measured


# --- truncation and corruption ------------------------------------------------------------------


@pytest.fixture
def small_recording(tmp_path):
    items = [
        (INPUT, 100, kp_frame(0, p=1, k=5)),
        (INPUT, 110, kp_frame(1, p=2, k=5)),
        (OUTPUT, 120, skeleton(1, n=1, k=5)),
        (INPUT, 130, kp_frame(2, p=0, k=5)),
        (OUTPUT, 140, skeleton(2, n=2, k=5)),
    ]
    path = tmp_path / "small.rec"
    write_recording(path, items, meta={"rig": "tiny"})
    data = path.read_bytes()
    # record boundaries: end of header, then end of each record
    hlen = struct.unpack_from("<I", data, len(MAGIC))[0]
    ends = [len(MAGIC) + 8 + hlen]
    while ends[-1] < len(data):
        ends.append(ends[-1] + 8 + struct.unpack_from("<I", data, ends[-1])[0])
    assert ends[-1] == len(data) and len(ends) == len(items) + 2  # + the end marker of a clean close
    return path, data, items, ends


def test_cut_at_every_byte(small_recording, tmp_path):
    _, data, items, ends = small_recording
    header_end = ends[0]
    cut_path = tmp_path / "cut.rec"
    for cut in range(len(data) + 1):
        cut_path.write_bytes(data[:cut])
        if cut < header_end:
            with pytest.raises(RecordingError):
                RecordingReader(cut_path)
            continue
        reader = RecordingReader(cut_path)
        records = list(reader)
        n_whole = sum(e <= cut for e in ends[1:-1])
        assert_records_equal(records, items[:n_whole])
        assert reader.meta == {"rig": "tiny"}
        assert reader.n_records == n_whole and reader.n_malformed == 0
        at_boundary = cut in ends
        assert reader.truncated == (not at_boundary), cut
        assert reader.tail_bytes_ignored == cut - max(e for e in ends if e <= cut), cut
        assert (reader.stop_reason is None) == at_boundary
        assert reader.complete == (cut == len(data))  # only the untouched file has the end marker


def test_flipped_byte_in_middle_record_skips_only_that_record(small_recording, tmp_path):
    _, data, items, ends = small_recording
    start, end = ends[2], ends[3]  # record index 2 (the third message)
    bad = bytearray(data)
    bad[(start + 8 + end) // 2] ^= 0x40  # a payload byte
    path = tmp_path / "flipped.rec"
    path.write_bytes(bytes(bad))
    reader = RecordingReader(path)
    assert_records_equal(list(reader), items[:2] + items[3:])  # the records after it are recovered
    assert not reader.truncated and reader.complete
    assert [(s, e) for s, e, _ in reader.damaged] == [(start, end)] and "CRC" in reader.damaged[0][2]
    assert reader.bytes_skipped == end - start


def test_flipped_length_skips_to_the_next_record(small_recording, tmp_path):
    _, data, items, ends = small_recording
    bad = bytearray(data)
    struct.pack_into("<I", bad, ends[1], 0xFFFFFFF0)  # absurd length of the second message
    path = tmp_path / "len.rec"
    path.write_bytes(bytes(bad))
    reader = RecordingReader(path)
    assert_records_equal(list(reader), items[:1] + items[2:])
    assert not reader.truncated and "length" in reader.damaged[0][2]


def test_garbage_in_the_middle_is_skipped_and_reported(small_recording, tmp_path):
    """2 KB of garbage inserted between two records (a bad block): everything else is read."""
    _, data, items, ends = small_recording
    rng = np.random.default_rng(5)
    garbage = rng.integers(0, 256, 2048, dtype=np.uint8).tobytes()
    path = tmp_path / "garbage.rec"
    path.write_bytes(data[: ends[2]] + garbage + data[ends[2]:])
    reader = RecordingReader(path)
    assert_records_equal(list(reader), items)
    assert reader.damaged and reader.bytes_skipped == len(garbage) and not reader.truncated


def test_crc_valid_undecodable_record_is_skipped(small_recording, tmp_path):
    _, data, items, ends = small_recording
    # replace record 1 by a record with a correct crc whose message is garbage, and add one of an
    # unknown kind: both are skipped, the reading goes on
    def record(kind, recv_ns, body):
        payload = struct.pack("<Bq", kind, recv_ns) + body
        return struct.pack("<II", len(payload), zlib.crc32(payload)) + payload

    garbage = record(INPUT, 111, b"\x02\x00\x00\x00not a message")
    unknown = record(9, 112, codec.pack(items[1][2]))
    path = tmp_path / "malformed.rec"
    path.write_bytes(data[: ends[1]] + garbage + unknown + data[ends[2] :])
    reader = RecordingReader(path)
    assert_records_equal(list(reader), [items[0], *items[2:]])
    assert reader.n_malformed == 2 and not reader.truncated and reader.n_records == 4


def test_decode_limits_apply(small_recording):
    path, _, items, _ = small_recording
    reader = RecordingReader(path, limits=codec.DecodeLimits(max_people=1))
    got = list(reader)
    n_ok = sum(1 for _, _, m in items if m.n_people <= 1)
    assert len(got) == n_ok and reader.n_malformed == len(items) - n_ok and not reader.truncated


@pytest.mark.parametrize(
    "content, match",
    [
        (b"", "too short"),
        (b"RTKREC", "too short"),
        (b"RTKREC2\n" + b"\x00" * 40, "not an rtkin recording"),
        (b"PK\x03\x04 a zip file", "not an rtkin recording"),
        (MAGIC, "header record missing"),
        (MAGIC + struct.pack("<II", 3, 0), "length"),
    ],
)
def test_bad_magic_or_header(tmp_path, content, match):
    path = tmp_path / "bad.rec"
    path.write_bytes(content)
    with pytest.raises(RecordingError, match=match):
        RecordingReader(path)
    with pytest.raises(ValueError):  # RecordingError is a ValueError
        read_all(path)


def test_header_corruption_and_wrong_first_kind(small_recording, tmp_path):
    _, data, _, ends = small_recording
    bad = bytearray(data)
    bad[len(MAGIC) + 12] ^= 1
    path = tmp_path / "h.rec"
    path.write_bytes(bytes(bad))
    with pytest.raises(RecordingError, match="CRC"):
        RecordingReader(path)
    path.write_bytes(MAGIC + data[ends[0] :])  # first record is a message, not a header
    with pytest.raises(RecordingError, match="expected the header"):
        RecordingReader(path)


# --- kill -9 while writing ----------------------------------------------------------------------

CHILD = r"""
import sys, time
import numpy as np
from rtkin.core.messages import KeypointFrame
from rtkin.io.recording import RecordingWriter
w = RecordingWriter(sys.argv[1], {"child": True}, flush_interval_s=0.05)
kp = np.random.default_rng(0).uniform(0, 500, (2, 26, 3)).astype(np.float32)
i = 0
print("ready", flush=True)
while True:
    w.write(KeypointFrame("cam1", i, i * 1000, "HALPE_26", kp), time.monotonic_ns())
    i += 1
    if i % 20 == 0:
        time.sleep(0.001)
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_kill_dash_nine_leaves_a_readable_prefix(tmp_path):
    path = tmp_path / "killed.rec"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        time.sleep(0.5)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL

    reader = RecordingReader(path)
    records = list(reader)
    assert reader.meta == {"child": True}
    assert len(records) >= 10
    assert reader.n_malformed == 0
    idx = [r.message.frame_index for r in records]
    assert idx == list(range(len(records)))  # all valid, none lost before the tail
    recv = [r.recv_ns for r in records]
    assert recv == sorted(recv)
    record_size = 8 + 9 + len(codec.pack(records[0].message))
    assert reader.tail_bytes_ignored < record_size  # at most one partial record
    assert reader.truncated == (reader.tail_bytes_ignored > 0)


# --- property test ------------------------------------------------------------------------------

f32 = st.floats(0, 1e4, width=32)


@st.composite
def kp_frames(draw):
    p, k = draw(st.integers(0, 3)), draw(st.integers(1, 6))
    kp = draw(hnp.arrays(np.float32, (p, k, 3), elements=f32))
    return KeypointFrame(
        draw(st.sampled_from(["cam1", "cam2", "c\u00e9"])), draw(st.integers(0, 2**40)),
        draw(st.integers(-(2**62), 2**62)), "HALPE_26", kp, draw(st.none() | st.integers(0, 2**62)),
    )  # fmt: skip


@st.composite
def skeletons(draw):
    n, k = draw(st.integers(0, 3)), draw(st.integers(1, 6))
    missing = draw(hnp.arrays(bool, (n, k)))
    pts = draw(hnp.arrays(np.float64, (n, k, 3), elements=st.floats(-10, 10)))
    pts[missing] = np.nan
    err = draw(hnp.arrays(np.float32, (n, k), elements=f32))
    views = draw(hnp.arrays(np.uint8, (n, k)))
    views[missing] = 0
    ids = np.array(draw(st.lists(st.integers(0, 1000), min_size=n, max_size=n, unique=True)), dtype=np.int64)
    return Skeleton3D(draw(st.integers(0, 2**62)), draw(st.integers(0, 2**62)), "HALPE_26", ids, pts,
                      draw(hnp.arrays(np.float32, (n, k), elements=f32)), err, views)  # fmt: skip


items_strategy = st.lists(
    st.one_of(
        st.tuples(st.just(INPUT), st.integers(-(2**63), 2**63 - 1), kp_frames()),
        st.tuples(st.just(OUTPUT), st.integers(-(2**63), 2**63 - 1), skeletons()),
    ),
    max_size=12,
)


metas = st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=20), max_size=3)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])  # fmt: skip
@given(items=items_strategy, meta=metas, cut_fraction=st.floats(0, 1))
def test_property_round_trip_and_prefix(tmp_path, items, meta, cut_fraction):
    meta = {k: v for k, v in meta.items() if not (isinstance(v, int) and not -(2**63) <= v < 2**64)}
    path = tmp_path / "prop.rec"
    write_recording(path, items, meta=meta, overwrite=True)
    got_meta, records = read_all(path)
    assert got_meta == meta
    assert_records_equal(records, items)

    # any cut past the header reads back a prefix of the records
    data = path.read_bytes()
    hlen = struct.unpack_from("<I", data, len(MAGIC))[0]
    header_end = len(MAGIC) + 8 + hlen
    cut = header_end + int(cut_fraction * (len(data) - header_end))
    path.write_bytes(data[:cut])
    reader = RecordingReader(path)
    prefix = list(reader)
    assert_records_equal(prefix, items[: len(prefix)])
    assert reader.tail_bytes_ignored == 0 or reader.truncated
