"""Clock offsets NTP-style over ZeroMQ, and the configuration of a camera on another host."""

from __future__ import annotations

import threading
import time

import msgpack
import pytest
import zmq

from rtkin.runtime.clock import ClockClient, ClockSample, ClockServer, offset_from
from rtkin.runtime.config import RunConfig, config_from_dict
from rtkin.runtime.remote import remote_config, tcp_endpoint
from rtkin.runtime.transport import Receiver


def test_offset_and_round_trip_of_one_exchange():
    offset, d1, d2, hold = 2_000_000_000, 300_000, 500_000, 40_000
    t1 = 10_000
    t2 = t1 + offset + d1
    t3 = t2 + hold
    t4 = t3 - offset + d2
    s = ClockSample(t1, t2, t3, t4)
    assert s.rtt_ns == d1 + d2
    assert abs(s.offset_ns - offset) <= s.rtt_ns // 2  # asymmetric paths: within half the round trip
    assert s.offset_ns - offset == (d1 - d2) // 2
    best = offset_from([s, ClockSample(t1, t1 + offset + 10, t1 + offset + 20, t1 + 30)])
    assert best == (offset, 20, 11)  # the shortest round trip wins
    assert offset_from([]) is None


@pytest.fixture
def served(tmp_path):
    """A ClockServer attached to a Receiver, served by a thread that waits for frames."""
    ctx = zmq.Context()
    rx = Receiver(ctx, f"ipc://{tmp_path}/kp.sock", [b"kp/"], bind=True)
    server = ClockServer(ctx, f"ipc://{tmp_path}/clock.sock", epoch_ns=123)
    rx.attach(server)
    stop = threading.Event()
    th = threading.Thread(target=lambda: [rx.recv(20) for _ in iter(stop.is_set, True)], daemon=True)
    th.start()
    yield ctx, rx, server, f"ipc://{tmp_path}/clock.sock"
    stop.set()
    th.join(5)
    rx.close()  # closes the attached clock server too
    ctx.destroy(linger=0)


def test_a_camera_two_seconds_ahead_measures_its_offset(served):
    ctx, rx, server, ep = served
    ahead = 2_000_000_000
    client = ClockClient(ctx, ep, "cam01", clock=lambda: time.monotonic_ns() + ahead, interval_s=0.05).start()
    try:
        assert client.wait(30)
        while len(client.samples) < 8:
            time.sleep(0.05)
    finally:
        client.stop()
    assert abs(client.offset_ns + ahead) <= client.uncertainty_ns  # the truth lies within the bound
    assert abs(client.offset_ns + ahead) < 2_000_000 and client.rtt_ns > 0
    assert client.epoch_ns == 123
    assert client.to_server_ns(ahead + 5) == pytest.approx(5, abs=client.uncertainty_ns)
    cams = rx.status()["clock"]["cameras"]
    assert cams["cam01"]["offset_ms"] == pytest.approx(-2000, abs=2) and cams["cam01"]["samples"] >= 4
    assert cams["cam01"]["uncertainty_ms"] > 0


def test_the_clock_server_survives_garbage(served):
    ctx, rx, server, ep = served
    raw = ctx.socket(zmq.DEALER)
    raw.setsockopt(zmq.LINGER, 0)
    raw.connect(ep)
    for junk in (b"\xc1", msgpack.packb([1, 2]), msgpack.packb({"v": 1, "t1": "x"}), msgpack.packb({"v": 2, "t1": 1}),
                 msgpack.packb({"v": 1, "t1": 5, "camera": "x" * 100, "estimate": "no"})):
        raw.send(junk)
    assert raw.poll(10_000)  # the last one is a valid request (a bad camera name is just not listed)
    rep = msgpack.unpackb(raw.recv())
    assert rep["t1"] == 5 and rep["t2"] <= rep["t3"]
    deadline = time.monotonic() + 10
    while (server.malformed < 4 or server.served < 1) and time.monotonic() < deadline:  # counted after sending
        time.sleep(0.05)
    assert server.malformed == 4 and server.served >= 1
    assert "x" * 100 not in server.status()["cameras"]
    raw.send(bytes(10_000))  # over the request size limit: the connection is dropped by libzmq
    time.sleep(0.3)
    assert server.malformed == 4
    raw.close()


def test_a_camera_hosts_configuration():
    base = config_from_dict({"transport": {"clock": "tcp://*:5549", "keys": "keys", "keypoints": "tcp://*:5550"},
                             "rig": {"cameras": ["cam01", "cam02"]}})
    cfg = remote_config(base, "cam02", connect="10.1.2.3:5550", client="cam02")
    t = cfg.transport
    assert (t.keypoints, t.clock, t.keys, t.client) == ("tcp://10.1.2.3:5550", "tcp://10.1.2.3:5549", "keys", "cam02")
    cfg = remote_config(base, "cam02", connect="10.1.2.3:5550", clock="10.1.2.4:6000", inputs="rtsp://cam2/stream")
    assert cfg.transport.clock == "tcp://10.1.2.4:6000"
    assert cfg.source.kind == "capture" and cfg.source.capture.inputs == ("", "rtsp://cam2/stream")
    with pytest.raises(ValueError, match="wildcard"):
        remote_config(base, "cam01")
    with pytest.raises(ValueError, match="clock endpoint"):
        remote_config(RunConfig(), "cam01", connect="127.0.0.1:5550")
    none = config_from_dict({"source": {"kind": "none"}, "transport": {"clock": "tcp://127.0.0.1:5549"}})
    with pytest.raises(ValueError, match="kind is 'none'"):
        remote_config(none, "cam01", connect="127.0.0.1:5550")
    assert tcp_endpoint("[fe80::1]:5550") == "tcp://[fe80::1]:5550"
    for bad in ("host", "host:", ":5", "host:99999", "host:x"):
        with pytest.raises(ValueError, match="HOST:PORT"):
            tcp_endpoint(bad)
