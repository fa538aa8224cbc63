"""ZeroMQ transport: typed round trips, malformed input counted, gaps counted, no stalls."""

from __future__ import annotations

import threading
import time

import msgpack
import numpy as np
import pytest
import zmq

from rtkin.core.messages import KeypointFrame, Skeleton3D
from rtkin.runtime.transport import Publisher, Receiver, settle


@pytest.fixture
def ctx():
    c = zmq.Context()
    yield c
    c.destroy(linger=0)


def _kp(cam="cam01", i=0):
    return KeypointFrame(cam, i, 1_000 + i, "HALPE_26", np.random.default_rng(i).random((2, 26, 3), dtype=np.float32))


def _recv_all(rx, n, timeout_ms=2000):
    out = []
    deadline = time.monotonic() + timeout_ms / 1000
    while len(out) < n and time.monotonic() < deadline:
        got = rx.recv(50)
        if got is not None:
            out.append(got)
    return out


def _wait_connected(raw, rx, timeout_s=30.0):
    """Send well-formed status probes on the raw PUB socket until ``rx`` gets one (the
    subscription has reached the publisher: a fixed settle time is not enough on a busy machine)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        raw.send_multipart([b"status/probe/\0" + bytes(8), msgpack.packb({})])
        if rx.recv(50) is not None:
            while rx.recv(50) is not None:  # drain the other probes in flight
                pass
            return
    raise AssertionError("subscriber never connected")


def _pair(ctx, tmp_path, topics=(b"",), rcvhwm=1000):
    ep = f"ipc://{tmp_path}/t.sock"
    rx = Receiver(ctx, ep, topics, bind=True, rcvhwm=rcvhwm)
    tx = Publisher(ctx, ep, bind=False)
    settle(tx.socket, rx.socket)  # connection and subscription set-up
    return tx, rx


def test_round_trip_with_sequence_and_stamp(ctx, tmp_path):
    tx, rx = _pair(ctx, tmp_path)
    frames = [_kp(i=i) for i in range(5)]
    for f in frames:
        tx.send(f, stamp_ns=42)
    sk = Skeleton3D(1, 1, "HALPE_26", [7], np.zeros((1, 26, 3)), np.ones((1, 26)), np.zeros((1, 26)), np.full((1, 26), 2))
    tx.send(sk)
    got = _recv_all(rx, 6)
    assert [g.message for g in got[:5]] == frames and got[5].message == sk
    assert [g.seq for g in got[:5]] == list(range(5)) and got[0].stamp_ns == 42
    assert got[0].base == b"kp/cam01/" and got[5].base == b"sk3d/"
    assert rx.counters.dropped == 0 and rx.counters.malformed == 0
    tx.close(), rx.close()


def test_malformed_messages_are_counted_and_dropped(ctx, tmp_path):
    ep = f"ipc://{tmp_path}/m.sock"
    rx = Receiver(ctx, ep, [b""], bind=True)
    raw = ctx.socket(zmq.PUB)
    raw.connect(ep)
    _wait_connected(raw, rx)
    base = (rx.counters.received, rx.counters.malformed)
    raw.send_multipart([b"kp/cam01/\0" + bytes(8), b"\xc1garbage"])  # bad header
    raw.send_multipart([b"no-separator", b"x"])  # bad topic frame
    raw.send_multipart([b"kp/cam01/\0" + bytes(8)])  # truncated
    good = Publisher(ctx, ep, bind=False)
    got, deadline = [], time.monotonic() + 30
    while not got and time.monotonic() < deadline:  # until the new connection is up
        good.send(_kp())
        got = _recv_all(rx, 1, timeout_ms=100)
    while rx.counters.malformed - base[1] < 3 and rx.recv(100) is None and time.monotonic() < deadline:
        pass
    assert got and got[0].message == _kp()
    assert rx.counters.malformed - base[1] == 3 and rx.counters.received - base[0] >= 4
    raw.close(), good.close(), rx.close()


def test_sequence_gaps_are_counted_as_dropped(ctx, tmp_path):
    tx, rx = _pair(ctx, tmp_path)
    tx.send(_kp(i=0))
    tx._seq[b"kp/cam01/"] += 5  # as if five messages were lost on the way
    tx.send(_kp(i=1))
    tx.send(_kp(i=2))  # a gap counts once the stream goes on after it
    _recv_all(rx, 3)
    assert rx.counters.dropped == 5 and rx.counters.seq_rejected == 0
    tx.close(), rx.close()


def test_topic_prefixes_do_not_collide(ctx, tmp_path):
    tx, rx = _pair(ctx, tmp_path, topics=(b"kp/cam1/",))
    tx.send(_kp("cam10"))
    tx.send(_kp("cam1"))
    got = _recv_all(rx, 2, timeout_ms=500)
    assert [g.message.camera for g in got] == ["cam1"]
    tx.close(), rx.close()


def test_a_stuck_subscriber_never_stalls_the_publisher(ctx, tmp_path):
    ep = f"ipc://{tmp_path}/s.sock"
    tx = Publisher(ctx, ep, bind=True, sndhwm=10)
    stuck = Receiver(ctx, ep, [b""], bind=False, rcvhwm=10)  # never reads
    settle(tx.socket, stuck.socket)
    done = threading.Event()

    def spam():
        for i in range(20000):
            tx.send(_kp(i=i % 50))
        done.set()

    th = threading.Thread(target=spam, daemon=True)
    th.start()
    assert done.wait(60), "publisher blocked on a stuck subscriber"
    got = _recv_all(stuck, 100000, timeout_ms=300)
    assert len(got) < 20000 and stuck.counters.dropped > 0  # losses are visible at the receiver
    tx.close(), stuck.close()


# ----------------------------------------------------------------------------- counters vs forgery


def _book():
    from rtkin.runtime.transport import ReceiverCounters, _SeqBook

    c = ReceiverCounters()
    return c, _SeqBook(c)


def test_a_gap_counts_when_the_stream_goes_on_after_it():
    c, book = _book()
    for s in (0, 1, 2, 10, 11, 12):
        book(b"kp/cam01/", "p", s)
    assert c.dropped == 7 and c.seq_rejected == 0
    book(b"kp/cam01/", "p", 0)  # the publisher restarted
    book(b"kp/cam01/", "p", 1)
    assert c.restarts == 1 and c.dropped == 7


def test_one_spoofed_sequence_number_adds_no_phantom_loss():
    """The issue's attack: one message under kp/cam01/ with seq = last + 394 (393 phantom losses)."""
    c, book = _book()
    for s in range(100):
        book(b"kp/cam01/", "127.0.0.1", s)
    book(b"kp/cam01/", "127.0.0.1", 99 + 394)  # forged, same address as the camera
    for s in range(100, 200):
        book(b"kp/cam01/", "127.0.0.1", s)
    assert c.dropped == 0 and c.seq_rejected == 1 and c.restarts == 0


def test_a_forged_pair_is_taken_back_when_the_real_stream_resumes():
    c, book = _book()
    for s in range(50):
        book(b"sk3d/", "x", s)
    book(b"sk3d/", "x", 10**6)
    book(b"sk3d/", "x", 10**6 + 1)  # "confirmed" by the forger itself
    for s in range(50, 60):
        book(b"sk3d/", "x", s)
    assert c.dropped == 0 and c.seq_rejected >= 1 and c.restarts == 0


def test_fuzzed_sequence_numbers_stay_within_what_a_publisher_could_send():
    """The fuzzer that drove ``dropped`` to 3e20: random u64 sequence numbers, alone and in pairs."""
    from rtkin.runtime.transport import MAX_RATE_HZ, SEQ_SLACK

    c, book = _book()
    rng = np.random.default_rng(0)
    t0 = time.monotonic()
    for s in rng.integers(0, 2**63, 2000, dtype=np.uint64).tolist():
        book(b"kp/cam01/", "f", s)
        book(b"kp/cam01/", "f", s + 1)
    elapsed = time.monotonic() - t0
    # each confirmed jump is clamped to the publisher's plausible output since it was first heard
    assert 0 <= c.dropped <= 2000 * (SEQ_SLACK + MAX_RATE_HZ * (elapsed + 1))
    assert c.dropped < 1e8


def test_publishers_are_tracked_apart_and_the_book_stays_bounded():
    from rtkin.runtime.transport import MAX_TRACKS

    c, book = _book()
    for s in range(20):
        book(b"kp/cam01/", "10.0.0.2", s)
        book(b"kp/cam01/", "10.0.0.66", 10**9 + 7 * s)  # another host's stream: its own track
    assert c.dropped == 0 or c.dropped <= 20 * 6  # only its own gaps, never cam01's
    for i in range(3 * MAX_TRACKS):
        book(b"kp/x%d/" % i, "p", 0)
    assert len(book.tracks) == MAX_TRACKS


def test_a_spoofer_on_the_same_address_cannot_poison_a_receiver(ctx, tmp_path):
    """Socket level: a camera and a forger on loopback TCP (same peer address) under kp/cam01/."""
    from rtkin.core.codec import encode

    port = _free_port()
    ep = f"tcp://127.0.0.1:{port}"
    rx = Receiver(ctx, ep, [b"kp/"], bind=True)
    tx = Publisher(ctx, ep, bind=False)
    raw = ctx.socket(zmq.PUB)
    raw.connect(ep)
    frames = encode(_kp())
    settle(tx.socket, raw, rx.socket, seconds=0.3)
    got = []
    for i in range(300):
        tx.send(_kp(i=i))
        if i in (100, 200):
            raw.send_multipart([b"kp/cam01/\0" + (i + 394).to_bytes(8, "big")] + frames[1:])
        if (g := rx.recv(0)) is not None:
            got.append(g)
    got += _recv_all(rx, 300 - len(got), timeout_ms=3000)
    assert len([g for g in got if g.message.camera == "cam01"]) >= 250
    assert rx.counters.dropped == 0
    tx.close(), raw.close(), rx.close()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------- sizes and floods


def test_wire_sizes_fit_the_rig_and_refuse_the_issues_300_mb_messages():
    from rtkin.core.skeletons import get_skeleton
    from rtkin.runtime.config import RunConfig
    from rtkin.runtime.transport import DEFAULT_LINK, link_for, wire_sizes

    link = link_for(RunConfig())  # HALPE_26; cameras not listed: sized for 16
    frame, message = wire_sizes(16, get_skeleton("HALPE_26").n_keypoints)
    assert (link.max_frame_bytes, link.max_message_bytes) == (frame, message)
    # the largest legitimate frames fit: 64 people's Skeleton3D points, a status dict of 64 KiB
    assert 64 * 26 * 3 * 8 < frame and 64 * 1024 < frame < 300e6
    assert frame < DEFAULT_LINK.max_frame_bytes < 16e6  # 16 cameras, COCO_133
    assert 16 <= link.bound_hwm(1000) <= 1000 and link.bound_hwm(10) == 10
    assert link.bound_hwm(1000) * message <= link.queue_bytes + message


FLOOD_CHILD = r"""
import select, sys, time, zmq
from rtkin.runtime.transport import Link, Receiver, link_context, wire_sizes

def rss(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024

ctx = link_context(link=Link(*wire_sizes(16, 26)))  # = link_for(RunConfig()), without importing it all
rx = Receiver(ctx, sys.argv[1], [b"kp/"], bind=True, rcvhwm=1000)
for _ in range(20):
    rx.recv(10)
print("idle", rss("VmRSS"), flush=True)
while not select.select([sys.stdin], [], [], 0.01)[0]:  # reads nothing while the flood arrives,
    rx.socket.getsockopt(zmq.EVENTS)  # but attaches new connections as a busy node would
sys.stdin.readline()
n, quiet = 0, 0
while quiet < 10:
    got = rx.recv_raw(100)
    if got is None:
        quiet += 1
    else:
        n, quiet = n + 1, 0
print("done", rss("VmHWM"), n, rx.counters.received, flush=True)
rx.close()
ctx.term()
"""


def test_a_flood_of_huge_and_many_messages_keeps_a_receivers_memory_bounded(ctx, tmp_path):
    """The issue's flood: four 300 MB messages, then 100k messages, at a Receiver bound like the
    sync node's input: its peak RSS stays under twice its idle RSS, and it still works."""
    import subprocess
    import sys

    from rtkin.core.codec import encode

    ep = f"ipc://{tmp_path}/flood.sock"
    child = subprocess.Popen([sys.executable, "-c", FLOOD_CHILD, ep], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
    try:
        tag, idle = child.stdout.readline().split()
        assert tag == "idle"
        idle = int(idle)
        huge = ctx.socket(zmq.PUB)
        huge.setsockopt(zmq.SNDHWM, 4)
        huge.connect(ep)
        flood = ctx.socket(zmq.PUB)
        flood.setsockopt(zmq.SNDHWM, 1000)
        flood.connect(ep)
        settle(huge, flood, seconds=0.5)
        blob = bytes(300 * 1024 * 1024)
        for i in range(4):
            huge.send_multipart([b"kp/cam01/\0" + i.to_bytes(8, "big"), blob], copy=False)
        del blob
        frames = encode(_kp())
        for i in range(100_000):
            try:
                flood.send_multipart([b"kp/cam01/\0" + i.to_bytes(8, "big")] + frames[1:], flags=zmq.NOBLOCK)
            except zmq.Again:
                pass
        settle(huge, flood, seconds=1.0)
        child.stdin.write("go\n")
        child.stdin.flush()
        line = child.stdout.readline().split()
        assert line and line[0] == "done", line
        peak, n = int(line[1]), int(line[2])
    finally:
        child.kill()
        child.wait(10)
    huge.close(linger=0)
    flood.close(linger=0)
    print(f"receiver RSS idle {idle / 2**20:.0f} MiB, peak under the flood {peak / 2**20:.0f} MiB, {n} received")
    assert 0 < n < 100_000  # the flood got through, bounded by the high-water marks
    assert peak < 2 * idle, (peak / 2**20, idle / 2**20)
