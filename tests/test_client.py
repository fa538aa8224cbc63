"""rtkin.clients.subscriber.Subscriber, the plain wire-format example, the LSL bridge and the watch table."""

from __future__ import annotations

import importlib.util
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from rtkin.clients.subscriber import Subscriber, coordinate_unit
from rtkin.core.codec import encode
from rtkin.core.messages import AngleFlag, JointAngles, Skeleton3D
from rtkin.runtime.transport import Publisher

NAMES = ("pelvis_tx", "hip_flexion_r", "knee_angle_r")


def ja(person: int = 1, t: int = 1_000_000_000, values=(0.1, 0.5, -1.0)) -> JointAngles:
    return JointAngles(
        time_ns=t, capture_ns=t - 5_000_000, person_id=person, names=NAMES, values=list(values),
        marker_rms_m=0.012, quality=[1.0, 0.6, 0.3], flags=[0, int(AngleFlag.HELD), int(AngleFlag.FEW_VIEWS | AngleFlag.UNSCALED)],
    )  # fmt: skip


def sk3d(ids=(1, 2), t: int = 2_000_000_000) -> Skeleton3D:
    n, k = len(ids), 4
    pts = np.arange(n * k * 3, dtype=np.float64).reshape(n, k, 3) / 10
    pts[0, 1] = np.nan
    views = np.full((n, k), 3, np.uint8)
    views[0, 1] = 0
    return Skeleton3D(
        time_ns=t, capture_ns=t - 1, skeleton="HALPE_26", person_ids=list(ids), points=pts,
        scores=np.full((n, k), 0.9, np.float32), reproj_error_px=np.full((n, k), 1.5, np.float32), n_views=views,
    )  # fmt: skip


@pytest.fixture
def ctx():
    c = zmq.Context()
    yield c
    c.destroy(linger=0)


@pytest.fixture
def endpoints(tmp_path):
    return [f"ipc://{tmp_path}/pub{i}" for i in range(2)]


def _pub(ctx, endpoint, **kw) -> Publisher:
    return Publisher(ctx, endpoint, bind=True, **kw)


def test_round_trip_two_endpoints(ctx, endpoints):
    pubs = [_pub(ctx, e) for e in endpoints]
    with Subscriber(endpoints, ctx=ctx, timeout_s=2.0) as sub:
        pubs[0].settle(0.1)
        pubs[0].send(sk3d())
        pubs[1].send(ja(person=3))
        got = [sub.recv(), sub.recv()]
        assert sub.recv(timeout_s=0.05) is None
        counters = sub.counters_dict()
    by_type = {type(m).__name__: m for m in got}
    assert by_type["Skeleton3D"] == sk3d()
    assert by_type["JointAngles"] == ja(person=3)
    assert counters == {"received": 2, "malformed": 0, "dropped": 0, "filtered": 0, "seq_rejected": 0,
                        "restarts": 0, "auth_refused": 0}
    assert sub.closed
    for p in pubs:
        p.close()


def test_iteration_ends_on_timeout_and_timeout_returns_none(ctx, endpoints):
    pub = _pub(ctx, endpoints[0])
    with Subscriber(endpoints[0], ctx=ctx, timeout_s=0.3) as sub:
        t0 = time.monotonic()
        assert sub.recv(timeout_s=0.1) is None
        assert 0.09 <= time.monotonic() - t0 < 1.0
        for i in range(5):
            pub.send(ja(person=1, t=10**9 + i))
        msgs = list(sub)  # ends 0.3 s after the last message
    assert [m.time_ns for m in msgs] == [10**9 + i for i in range(5)]
    pub.close()


def test_person_filter(ctx, endpoints):
    pub = _pub(ctx, endpoints[0])
    with Subscriber(endpoints[0], person_ids=[2], ctx=ctx, timeout_s=0.3) as sub:
        assert sub.topics == (b"ja/2/", b"sk3d/")
        for p in (1, 2, 3, 2, 12, 22):
            pub.send(ja(person=p))
        pub.send(sk3d(ids=(1, 2)))
        pub.send(sk3d(ids=(5,)))
        msgs = list(sub)
    assert [m.person_id for m in msgs if isinstance(m, JointAngles)] == [2, 2]
    skels = [m for m in msgs if isinstance(m, Skeleton3D)]
    assert len(skels) == 1 and skels[0].person_ids.tolist() == [2]
    np.testing.assert_array_equal(skels[0].points, sk3d(ids=(1, 2)).points[1:])
    assert sub.filtered == 1  # the Skeleton3D without person 2; ja/1/, ja/12/ never arrive
    pub.close()


def test_malformed_is_counted_not_raised(ctx, endpoints):
    pub = _pub(ctx, endpoints[0])
    with Subscriber(endpoints[0], ctx=ctx, timeout_s=0.3) as sub:
        pub.socket.send_multipart([b"ja/1/\0" + bytes(8), b"\xc1not msgpack"])
        pub.send(ja())
        assert sub.recv() == ja()
        assert sub.counters.malformed == 1
    pub.close()


def test_stuck_subscriber_never_blocks_the_publisher(ctx, endpoints):
    pub = _pub(ctx, endpoints[0], sndhwm=1000)
    sub = Subscriber(endpoints[0], ctx=ctx, rcvhwm=100, timeout_s=0.2)
    pub.settle(0.1)
    msg = ja()
    pub.send(msg)
    assert sub.recv() == msg
    t_first = time.monotonic()
    total = 5000
    sender = threading.Thread(target=lambda: [pub.send(msg) for _ in range(total)])
    sender.start()  # while the subscriber reads nothing
    sender.join(60)
    assert not sender.is_alive() and pub.sent == total + 1  # every send completed: none waited for the reader
    n = sum(1 for _ in sub)  # what was queued: the oldest messages, the rest was dropped
    assert 0 < n < total
    # a gap counts once the publisher's next messages confirm it, and never beyond what 4000
    # messages/s could have produced since the publisher was first heard: real streams are slower
    time.sleep(max(0.0, t_first + total / 4000 - time.monotonic()))
    pub.send(msg)
    pub.send(msg)
    assert sub.recv() == msg and sub.recv() == msg
    c = sub.counters
    assert c.received == n + 3 and c.dropped == total - n and c.seq_rejected == 0  # the losses, as sequence gaps
    sub.close()
    pub.close()


# ------------------------------------------------------------------------- wire format example


def _example():
    path = Path(__file__).resolve().parents[1] / "tools" / "subscribe_example.py"
    spec = importlib.util.spec_from_file_location("subscribe_example", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_wire_format_example_decodes_rtkin_messages(ctx, endpoints):
    ex = _example()
    a = ja(person=7)
    frames = encode(a)
    frames[0] = b"ja/7/\0" + (41).to_bytes(8, "big") + (-5).to_bytes(8, "big", signed=True)
    d = ex.decode(frames)
    assert (d["topic"], d["seq"], d["stamp_ns"], d["schema"]) == ("ja/7/", 41, -5, "JointAngles")
    assert d["fields"] == {"time_ns": a.time_ns, "capture_ns": a.capture_ns, "person_id": 7,
                           "names": list(NAMES), "marker_rms_m": a.marker_rms_m}
    for name in ("values", "quality", "flags"):
        np.testing.assert_array_equal(d["arrays"][name], getattr(a, name))
        assert d["arrays"][name].dtype == getattr(a, name).dtype

    s = sk3d()
    frames = encode(s)
    frames[0] = b"sk3d/\0" + bytes(8)
    d = ex.decode(frames)
    assert d["schema"] == "Skeleton3D" and d["stamp_ns"] is None
    for name in ("person_ids", "points", "scores", "reproj_error_px", "n_views"):
        np.testing.assert_array_equal(d["arrays"][name], getattr(s, name))

    # over a real socket: a Publisher's frames (with its topic) and a status dict
    pub = _pub(ctx, endpoints[0])
    sock = ctx.socket(zmq.SUB)
    for t in (b"ja/", b"status/"):
        sock.setsockopt(zmq.SUBSCRIBE, t)
    sock.connect(endpoints[0])
    pub.settle(0.2)
    from rtkin.runtime.transport import settle

    settle(sock, seconds=0.05)
    pub.send(a, stamp_ns=123)
    pub.send_status("ik0", {"frames": 3})
    assert sock.poll(2000)
    d = ex.decode(sock.recv_multipart())
    assert (d["topic"], d["seq"], d["stamp_ns"]) == ("ja/7/", 0, 123)
    np.testing.assert_array_equal(np.degrees(d["arrays"]["values"]), np.degrees(a.values))
    assert sock.poll(2000)
    d = ex.decode(sock.recv_multipart())
    assert d["schema"] == "status" and d["fields"] == {"frames": 3}
    sock.close(0)
    pub.close()


def test_example_script_imports_no_rtkin():
    src = (Path(__file__).resolve().parents[1] / "tools" / "subscribe_example.py").read_text()
    assert "import rtkin" not in src and "from rtkin" not in src


# ------------------------------------------------------------------------------------- LSL


def _pylsl():
    try:
        import pylsl
    except ImportError as e:
        pytest.skip(f"pylsl not installed: {e}")
    except RuntimeError as e:  # pylsl imports but cannot find liblsl
        pytest.skip(f"liblsl could not be loaded: {e}")
    return pylsl


def _channels(info):
    ch = info.desc().child("channels").child("channel")
    out = []
    while not ch.empty():
        out.append((ch.child_value("label"), ch.child_value("unit"), ch.child_value("type")))
        ch = ch.next_sibling()
    return out


def test_lsl_clock_is_monotonic():
    pylsl = _pylsl()
    from rtkin.clients.lsl import clock_offset_s

    if sys.platform.startswith("linux"):
        assert abs(clock_offset_s(pylsl)) < 1e-3
    a = pylsl.local_clock()
    assert abs(a - time.monotonic()) < 1.0 or not sys.platform.startswith("linux")


def test_lsl_round_trip():
    pylsl = _pylsl()
    from rtkin.clients.lsl import LSLOutlet

    person = 900 + (time.monotonic_ns() % 1000)  # unique stream per run
    out = LSLOutlet(NAMES, person_id=person, rate_hz=60.0, units="deg")
    streams = pylsl.resolve_byprop("source_id", f"rtkin-ja-{person}", timeout=5.0)
    assert streams, "the LSL stream was not found"
    inlet = pylsl.StreamInlet(streams[0])
    info = inlet.info(timeout=5.0)
    assert info.type() == "Mocap" and info.channel_count() == 3 and info.nominal_srate() == 60.0
    assert _channels(info) == [("pelvis_tx", "m", "Position"), ("hip_flexion_r", "deg", "JointAngle"),
                               ("knee_angle_r", "deg", "JointAngle")]
    inlet.open_stream(timeout=5.0)
    time.sleep(0.2)
    now = time.monotonic_ns()
    sent = [ja(person=person, t=now + i * 16_666_667, values=(0.1 * i, 0.5, -1.0 + i * 0.01)) for i in range(5)]
    deadline = time.monotonic() + 5.0
    got = []
    while len(got) < 5 and time.monotonic() < deadline:
        if not got:
            for m in sent:
                out.push(m)
        sample, ts = inlet.pull_sample(timeout=0.5)
        if sample is not None:
            got.append((sample, ts))
    assert len(got) == 5
    for m, (sample, ts) in zip(sent, got):
        np.testing.assert_allclose(sample, [m.values[0], np.degrees(m.values[1]), np.degrees(m.values[2])])
        # the stamp is the capture time on the LSL clock (local stream: no clock correction needed)
        assert abs(ts - m.capture_ns * 1e-9) < 1e-3
    # reordered names: mapped by name, missing -> NaN
    shuffled = JointAngles(0, now, person, ("knee_angle_r", "pelvis_tx"), [0.2, 0.3], 0.0, [1, 1], [0, 0])
    np.testing.assert_allclose(out._sample(shuffled), [0.3, np.nan, np.degrees(0.2)])
    out.close()


def test_lsl_bridge(ctx, endpoints):
    pylsl = _pylsl()
    from rtkin.clients.lsl import run_lsl_bridge

    person = 1900 + (time.monotonic_ns() % 1000)
    pub = _pub(ctx, endpoints[0])
    stop = threading.Event()
    result = {}
    th = threading.Thread(target=lambda: result.update(run_lsl_bridge(endpoints[0], stop, rate_hz=60)))
    th.start()
    try:
        inlet = None
        deadline = time.monotonic() + 8.0
        sample = None
        while sample is None and time.monotonic() < deadline:
            pub.send(ja(person=person, t=time.monotonic_ns()))
            if inlet is None:
                streams = pylsl.resolve_byprop("source_id", f"rtkin-ja-{person}", timeout=0.2)
                if streams:
                    inlet = pylsl.StreamInlet(streams[0])
                    inlet.open_stream(timeout=5.0)
                continue
            sample, _ = inlet.pull_sample(timeout=0.1)
        assert sample is not None
        np.testing.assert_allclose(sample, ja().values)
    finally:
        stop.set()
        th.join(5.0)
        pub.close()
    assert not th.is_alive() and result["outlets"] == 1 and result["pushed"] >= 1


# ----------------------------------------------------------------------------------- watch


def test_watch_table_rendering():
    pytest.importorskip("rich")
    from rich.console import Console

    from rtkin.clients.watch import format_flags, render_table

    a, b = ja(person=1), ja(person=4, values=(1.25, 0.0, np.pi / 2))
    table = render_table({4: b, 1: a}, latency_ms={1: 12.0}, now_ns=b.capture_ns + 30_000_000)
    console = Console(record=True, width=120)
    console.print(table)
    text = console.export_text()
    lines = text.splitlines()
    assert "rtkin joint angles" in text
    row = next(l for l in lines if "hip_flexion_r" in l)
    assert "28.6" in row and "deg" in row and "0.60" in row and "held" in row  # 0.5 rad = 28.6 deg
    row = next(l for l in lines if "knee_angle_r" in l and "90.0" in l)  # person 4: pi/2
    assert "few-views,unscaled" in row
    tx = [l for l in lines if "pelvis_tx" in l]
    assert "0.100" in tx[0] and " m " in tx[0] and "12" in tx[0] and "12.0" in tx[0]  # rms mm, latency
    assert "1.250" in tx[1] and "30" in tx[1]  # latency from now_ns - capture_ns
    assert text.index("pelvis_tx") < text.rindex("pelvis_tx")
    assert format_flags(0) == "" and format_flags(int(AngleFlag.HELD | AngleFlag.HIGH_REPROJ)) == "held,high-reproj"
    # a subset of coordinates, one unknown
    text2_console = Console(record=True, width=120)
    text2_console.print(render_table({1: a}, coordinates=["knee_angle_r", "nope"]))
    text2 = text2_console.export_text()
    assert "knee_angle_r" in text2 and "n/a" in text2 and "hip_flexion_r" not in text2
    empty = Console(record=True, width=120)
    empty.print(render_table({}))
    assert "waiting" in empty.export_text()


def test_watch_runs_for_a_duration(ctx, endpoints):
    pytest.importorskip("rich")
    from rtkin.clients.watch import watch

    pub = _pub(ctx, endpoints[0])
    stop = threading.Event()

    def feed():
        while not stop.is_set():
            pub.send(ja(person=2, t=time.monotonic_ns()))
            time.sleep(0.01)

    th = threading.Thread(target=feed)
    th.start()
    try:
        counters = watch(endpoints[0], refresh_hz=20, duration_s=0.6)
    finally:
        stop.set()
        th.join()
        pub.close()
    assert counters["received"] > 0 and counters["malformed"] == 0


def test_coordinate_unit():
    assert coordinate_unit("pelvis_tx") == "m" and coordinate_unit("knee_angle_r") == "rad"


def test_missing_optional_dependencies_say_how_to_install(monkeypatch):
    from rtkin.clients import lsl
    from rtkin.clients import watch

    monkeypatch.setitem(sys.modules, "pylsl", None)  # import pylsl -> ImportError
    with pytest.raises(ImportError, match=r"pip install rtkin\[lsl\]"):
        lsl.LSLOutlet(NAMES, person_id=1)
    monkeypatch.setitem(sys.modules, "rich.table", None)
    with pytest.raises(ImportError, match=r"pip install rtkin\[view\]"):
        watch.watch("ipc:///nonexistent", duration_s=0.1)


def test_the_default_endpoint_is_the_default_runs_sync_node():
    """Clients start at the sync node's outputs and follow the IK workers it announces."""
    from rtkin.clients.subscriber import DEFAULT_ENDPOINT
    from rtkin.runtime.config import RunConfig

    assert DEFAULT_ENDPOINT == RunConfig().transport.outputs
