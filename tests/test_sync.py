"""Timestamp synchronisation: slots, waits, silent and returning cameras, rates, late frames."""

from __future__ import annotations

import numpy as np
import pytest

from rtkin.core.messages import KeypointFrame
from rtkin.reconstruct.sync import SyncSettings, Synchronizer

CAMS = ("cam01", "cam02", "cam03", "cam04")
P = 16_666_667  # 60 Hz period, ns
MS = 1_000_000


def _frame(cam, i, capture_ns, k=26):
    return KeypointFrame(cam, i, capture_ns, "HALPE_26", np.zeros((1, k, 3), np.float32))


def _stream(n, cams=CAMS, period=P, delay=2 * MS, skip=None, t0=10**9):
    """(recv_ns, frame) for n frames of each camera, arrival-ordered; skip: cam -> set of indices."""
    ev = []
    for c, cam in enumerate(cams):
        for i in range(n):
            if skip and i in skip.get(cam, ()):
                continue
            cap = t0 + i * period + c * 100_000  # small per-camera offset
            ev.append((cap + delay + c * 10_000, _frame(cam, i, cap)))
    ev.sort(key=lambda e: e[0])
    return ev


def _run(sync, events, tick_ns=MS):
    """Feed events; poll every tick between them as a live node would. Returns [(emit_ns, fs)]."""
    out = []
    now = events[0][0]
    for recv, f in events:
        while now + tick_ns < recv:
            now += tick_ns
            out += [(now, fs) for fs in sync.poll(now)]
        now = recv
        out += [(now, fs) for fs in sync.push(f, recv)]
    out += [(now, fs) for fs in sync.flush()]
    return out


def test_complete_slots_in_order_emitted_when_the_last_camera_arrives():
    sync = Synchronizer(CAMS)
    ev = _stream(50)
    out = _run(sync, ev)
    assert [fs.slot_index for _, fs in out] == list(range(50))
    assert all(fs.n_present == 4 for _, fs in out)
    assert all(fs.cameras == CAMS for _, fs in out)
    last_arrival = {}
    for recv, f in ev:
        last_arrival[f.frame_index] = recv
    for emit, fs in out[:-1]:
        assert emit == last_arrival[fs.slot_index]  # no waiting once complete
    assert sync.counters.used == 200 and sync.counters.late == 0 and sync.counters.incomplete == 0
    # slot time is the grid time, within half a period of every frame's capture
    for _, fs in out:
        for f in fs.frames:
            assert abs(f.capture_ns - fs.slot_ns) <= P // 2


def test_a_silent_camera_never_stalls_and_rejoins():
    s = SyncSettings(max_wait_ms=30, stale_ms=100)
    sync = Synchronizer(CAMS, s)
    ev = _stream(120, skip={"cam03": set(range(30, 80))})  # dies at frame 30, back at 80
    out = _run(sync, ev)
    assert [fs.slot_index for _, fs in out] == list(range(120))  # every slot, none lost
    present = np.array([fs.frame("cam03") is not None for _, fs in out])
    assert present[:30].all() and not present[30:80].any() and present[80:].all()  # it rejoined
    assert all(fs.n_present >= 3 for _, fs in out)
    # once cam03 is stale, slots go out as soon as the other three arrived: within one frame period
    cap = {fs.slot_index: fs.slot_ns for _, fs in out}
    waits = [emit - cap[fs.slot_index] for emit, fs in out if 40 <= fs.slot_index < 80]
    assert max(waits) < P
    # while it was not yet stale, a slot waited at most max_wait
    first = [emit - cap[fs.slot_index] for emit, fs in out if 30 <= fs.slot_index < 36]
    assert max(first) <= 30 * MS + 3 * MS + P


def test_late_frames_are_dropped_and_counted():
    sync = Synchronizer(CAMS, SyncSettings(max_wait_ms=20))
    ev = _stream(10)
    late = [(r, f) for r, f in ev if f.camera == "cam02" and f.frame_index == 5][0]
    ev.remove(late)
    ev.append((late[0] + 200 * MS, late[1]))  # arrives 200 ms late
    ev.sort(key=lambda e: e[0])
    out = _run(sync, ev)
    fs5 = [fs for _, fs in out if fs.slot_index == 5][0]
    assert fs5.frame("cam02") is None and sync.counters.late == 1 and sync.counters.incomplete == 1


def test_cameras_at_different_frame_rates():
    sync = Synchronizer(("fast", "slow"), SyncSettings(fps_hz=60))
    ev = []
    for i in range(60):
        ev.append((10**9 + i * P + MS, _frame("fast", i, 10**9 + i * P)))
    for i in range(30):  # 30 fps camera, same clock
        ev.append((10**9 + i * 2 * P + 2 * MS, _frame("slow", i, 10**9 + i * 2 * P)))
    ev.sort(key=lambda e: e[0])
    out = _run(sync, ev)
    assert [fs.slot_index for _, fs in out] == list(range(60))
    slow = [fs.frame("slow") is not None for _, fs in out]
    assert sum(slow) == 30 and all(slow[::2])


def test_faster_camera_keeps_the_frame_closest_to_the_slot():
    sync = Synchronizer(("a", "b"), SyncSettings(fps_hz=60))
    ev = []
    for i in range(20):
        ev.append((10**9 + i * P + MS, _frame("a", i, 10**9 + i * P)))
    for i in range(40):  # 120 fps, a clock offset of 1/8 period: every slot has a frame 3/8 before
        cap = 10**9 + P // 8 + i * P // 2  # and one 1/8 after it
        ev.append((cap + MS, _frame("b", i, cap)))
    ev.sort(key=lambda e: e[0])
    out = _run(sync, ev)
    for _, fs in out[1:-1]:  # (the last slot is flushed at end of stream with an early frame only)
        assert abs(fs.frame("b").capture_ns - fs.slot_ns) < P // 4
    assert sync.counters.superseded >= 19 and sync.counters.late == 0


def test_tolerance_unknown_cameras_and_wrong_skeleton():
    sync = Synchronizer(("a", "b"), SyncSettings(fps_hz=60, tolerance_ms=2.0), skeleton="HALPE_26")
    sync.push(_frame("a", 0, 10**9), 10**9)
    sync.push(_frame("b", 0, 10**9 + 5 * MS), 10**9 + MS)  # 5 ms off the slot: out of tolerance
    sync.push(_frame("zzz", 0, 10**9), 10**9 + MS)
    sync.push(KeypointFrame("b", 1, 10**9 + P, "COCO_17", np.zeros((0, 17, 3), np.float32)), 10**9 + 2 * MS)
    c = sync.counters
    assert (c.out_of_tolerance, c.unknown_camera, c.wrong_skeleton) == (1, 1, 1)


def test_no_frame_lost_with_virtual_subject_jitter_and_offsets(demo_rig):
    from rtkin.sim import virtual

    s = virtual.simulate_subject(virtual.MotionSettings(duration_s=3.0))
    views = virtual.render_views(demo_rig, s, seed=4)  # 1 ms jitter, +-2 ms camera offsets
    sync = Synchronizer(demo_rig.names)
    out = _run(sync, virtual.arrival_order(views))
    assert len(out) == 180 and all(fs.n_present == 4 for _, fs in out)
    assert sync.counters.late == sync.counters.out_of_tolerance == 0


def test_decisions_depend_only_on_inputs_and_receive_times():
    ev = _stream(60, skip={"cam02": set(range(10, 20))})
    a = [fs for _, fs in _run(Synchronizer(CAMS), ev)]
    b = [fs for _, fs in _run(Synchronizer(CAMS), ev, tick_ns=7 * MS)]  # other poll rhythm
    assert a == b


@pytest.mark.parametrize("kw", [dict(fps_hz=0), dict(tolerance_ms=-1), dict(max_pending_slots=0)])
def test_settings_validation(kw):
    with pytest.raises(ValueError):
        SyncSettings(**kw)
