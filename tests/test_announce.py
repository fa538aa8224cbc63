"""Clients hear only the IK workers the run started: the sync status announces them.

The attack of the issue: a process that binds an IK worker port nobody uses injected a made-up
"person 99" into the dashboard and the recording. Here a fake sync node announces one IK worker
(``"ik_endpoints"`` in its ``status/sync/`` dict) while a rogue publisher binds another endpoint.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import zmq

from rtkin.clients.dashboard import Dashboard
from rtkin.clients.subscriber import Subscriber
from rtkin.core.messages import JointAngles
from rtkin.runtime.announce import IKFollower, announced_endpoints
from rtkin.runtime.transport import Publisher, Receiver

NAMES = ("hip_flexion_r", "knee_angle_r")


def _ja(person: int) -> JointAngles:
    now = time.monotonic_ns()
    return JointAngles(now, now - 1_000_000, person, NAMES, [0.1, 0.2], 0.01, np.ones(2, np.float32), np.zeros(2, np.uint8))


def test_announced_endpoints_as_a_client_reaches_them():
    st = {"ik_endpoints": ["tcp://*:5552", "tcp://0.0.0.0:5553", "tcp://127.0.0.1:5554", "ipc:///tmp/ja0", 7,
                           "nonsense", "tcp://[::]:5555"]}
    assert announced_endpoints(st, "tcp://10.0.0.1:5551") == [
        "tcp://10.0.0.1:5552", "tcp://10.0.0.1:5553", "tcp://10.0.0.1:5555"]  # loopback ones are not reachable
    assert announced_endpoints(st, "tcp://127.0.0.1:5551") == [
        "tcp://127.0.0.1:5552", "tcp://127.0.0.1:5553", "tcp://127.0.0.1:5554", "ipc:///tmp/ja0", "tcp://127.0.0.1:5555"]
    assert announced_endpoints(st, "ipc:///tmp/out")[:2] == ["tcp://127.0.0.1:5552", "tcp://127.0.0.1:5553"]
    for bad in ({}, {"ik_endpoints": "tcp://x:1"}, {"ik_endpoints": ["x"] * 1000}, [1], None):
        assert announced_endpoints(bad, "tcp://127.0.0.1:5551") in (None, [])
    assert announced_endpoints({"ik_endpoints": []}, "tcp://127.0.0.1:5551") == []


class FakeRun:
    """A sync node's outputs announcing ``announced`` (a list the test may change), an IK worker,
    and a rogue publisher on an endpoint nobody announces."""

    def __init__(self, tmp_path):
        self.ctx = zmq.Context()
        self.sync_ep = f"ipc://{tmp_path}/out.sock"
        self.ja_ep = f"ipc://{tmp_path}/ja0.sock"
        self.rogue_ep = f"ipc://{tmp_path}/ja7.sock"
        self.sync = Publisher(self.ctx, self.sync_ep, bind=True)
        self.worker = Publisher(self.ctx, self.ja_ep, bind=True)
        self.rogue = Publisher(self.ctx, self.rogue_ep, bind=True)
        self.announced = [self.ja_ep]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop.is_set():  # one thread drives every socket (status 20 times a second)
            self.sync.send_status("sync", {"ik_endpoints": list(self.announced), "sync": {}})
            self.worker.send(_ja(1))
            self.rogue.send(_ja(99))
            self.stop.wait(0.05)

    def close(self):
        self.stop.set()
        self.thread.join(5)
        for p in (self.sync, self.worker, self.rogue):
            p.close()
        self.ctx.destroy(linger=0)


@pytest.fixture
def run(tmp_path):
    r = FakeRun(tmp_path)
    yield r
    r.close()


def _people(sub, seconds: float) -> set[int]:
    seen, end = set(), time.monotonic() + seconds
    while time.monotonic() < end:
        msg = sub.recv(timeout_s=0.1)
        if isinstance(msg, JointAngles):
            seen.add(msg.person_id)
    return seen


def test_a_subscriber_follows_the_announced_workers_and_never_hears_a_rogue_slot(run):
    with Subscriber(run.sync_ep, topics=("ja/",), settle_s=0.0) as sub:
        deadline = time.monotonic() + 30
        seen: set[int] = set()
        while 1 not in seen and time.monotonic() < deadline:
            seen |= _people(sub, 0.2)
        assert sub.ik_endpoints == [run.ja_ep]
        seen |= _people(sub, 1.0)
        assert seen == {1}  # person 99 from the unannounced endpoint never arrives
        run.announced = []  # the worker stopped: clients let it go
        deadline = time.monotonic() + 30
        while sub.ik_endpoints and time.monotonic() < deadline:
            _people(sub, 0.1)
        assert sub.ik_endpoints == []
        _people(sub, 0.5)  # what was already queued
        assert _people(sub, 1.0) == set()


def test_status_dicts_are_yielded_only_when_asked_for(run):
    with Subscriber(run.sync_ep, topics=("ja/", "status/"), settle_s=0.0, timeout_s=0.2) as sub:
        deadline = time.monotonic() + 30
        kinds: set[str] = set()
        while len(kinds) < 2 and time.monotonic() < deadline:
            msg = sub.recv()
            if msg is not None:
                kinds.add(type(msg).__name__)
        assert kinds == {"dict", "JointAngles"}
    with Subscriber(run.sync_ep, topics=("ja/",), settle_s=0.0, timeout_s=0.2) as sub:
        assert all(not isinstance(sub.recv(), dict) for _ in range(20))


def test_the_dashboard_never_shows_a_rogue_slots_person(run):
    dash = Dashboard(run.sync_ep, port=0, rate_hz=20.0).start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not dash.snapshot()["people"]:
            time.sleep(0.1)
        time.sleep(1.0)
        ids = {p["id"] for p in dash.snapshot()["people"]}
        assert ids == {1} and dash.ik_endpoints == [run.ja_ep]
    finally:
        dash.stop()


def test_a_follower_connects_and_disconnects_one_receiver(run):
    rx = Receiver(run.ctx, run.sync_ep, [b"status/sync/"], bind=False)
    try:
        f = IKFollower(rx, run.sync_ep, fixed=[run.rogue_ep])
        assert f.update({"ik_endpoints": [run.ja_ep, run.rogue_ep]}) and f.connected == [run.ja_ep]
        assert not f.update({"ik_endpoints": [run.ja_ep]}) and not f.update({"no": 1})
        assert f.update({"ik_endpoints": []}) and f.connected == [] and rx.connected == [run.sync_ep]
    finally:
        rx.close()
