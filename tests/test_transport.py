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
    _recv_all(rx, 2)
    assert rx.counters.dropped == 5
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
