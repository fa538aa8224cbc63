"""Authenticated links: which endpoints need CURVE, the keys (``rtkin keys``), refusals counted.

CURVE over a real network runs in tests/test_netns.py; here the same sockets run on loopback TCP
with ``Link.curve_loopback`` (no traffic leaves the machine).
"""

from __future__ import annotations

import dataclasses
import stat
import time

import numpy as np
import pytest
import zmq

from rtkin.cli import main
from rtkin.core.messages import KeypointFrame
from rtkin.runtime.config import ConfigError, config_from_dict
from rtkin.runtime.security import CurveKeyError, InsecureEndpointError, create_keys, is_local_endpoint, load_curve
from rtkin.runtime.transport import DEFAULT_LINK, Publisher, Receiver, _setup, link_context


def _kp(cam: str) -> KeypointFrame:
    return KeypointFrame(cam, 0, 1, "HALPE_26", np.zeros((1, 26, 3), np.float32))


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_which_endpoints_are_local():
    for ep in ("ipc:///tmp/x", "inproc://x", "tcp://127.0.0.1:5550", "tcp://127.3.4.5:1", "tcp://localhost:5",
               "tcp://[::1]:5", "tcp://lo:5550"):
        assert is_local_endpoint(ep), ep
    for ep in ("tcp://*:5550", "tcp://0.0.0.0:5550", "tcp://10.0.0.2:5550", "tcp://[::]:5", "tcp://eth0:5550",
               "tcp://camhost.local:5550", "tcp://127.0.0.1:4;10.0.0.2:5550"):
        assert not is_local_endpoint(ep), ep


def test_the_config_refuses_network_addresses_without_keys_or_insecure():
    with pytest.raises(ConfigError, match=r"tcp://\*:5550 is not a loopback address: set keys"):
        config_from_dict({"transport": {"keypoints": "tcp://*:5550"}})
    with pytest.raises(ConfigError, match="not a loopback"):
        config_from_dict({"transport": {"clock": "tcp://0.0.0.0:5549"}})
    assert config_from_dict({"transport": {"keypoints": "tcp://*:5550", "insecure": True}}).transport.insecure
    assert config_from_dict({"transport": {"keypoints": "tcp://*:5550", "keys": "k"}}).transport.keys == "k"


def test_sockets_refuse_plaintext_on_a_network_address(capsys):
    ctx = zmq.Context()
    try:
        for cls, kw in ((Publisher, {}), (Receiver, {"topics": [b""]})):
            with pytest.raises(InsecureEndpointError, match="not a loopback address"):
                cls(ctx, "tcp://192.0.2.1:5550", bind=False, **kw)  # refused before any connection
        insecure = link_context(link=dataclasses.replace(DEFAULT_LINK, insecure=True))
        sock = insecure.socket(zmq.PUB)
        assert _setup(sock, insecure, "tcp://*:5551", bind=True) == ""  # allowed, and warned about
        sock.close()
        insecure.term()
        err = capsys.readouterr().err
        assert "WARNING" in err and "PLAINTEXT" in err and "tcp://*:5551" in err
    finally:
        ctx.destroy(linger=0)


def test_rtkin_keys_writes_private_keys_and_never_overwrites(tmp_path, capsys):
    folder = tmp_path / "keys"
    assert main(["keys", str(folder), "--client", "cam01", "--client", "viewer"]) == 0
    out = capsys.readouterr().out
    assert "copy" in out and "cam01.key_secret" in out
    for f in ("server.key_secret", "clients/cam01.key_secret", "clients/viewer.key_secret"):
        assert stat.S_IMODE((folder / f).stat().st_mode) == 0o600, f
    assert {p.name for p in (folder / "authorized").iterdir()} == {"cam01.key", "viewer.key"}
    before = (folder / "clients" / "cam01.key_secret").read_bytes()
    assert main(["keys", str(folder), "--client", "cam01"]) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert (folder / "clients" / "cam01.key_secret").read_bytes() == before
    server = load_curve(folder)
    cam = load_curve(folder, "cam01")
    assert server.server is not None and cam.client.public in server.authorized
    assert cam.server_public == server.server.public and cam.client != server.server
    with pytest.raises(CurveKeyError, match="rtkin keys"):
        load_curve(tmp_path / "nope")
    with pytest.raises(CurveKeyError, match="no client key"):
        load_curve(folder, "cam09")


def _curve_ctx(folder, client="", **kw):
    return link_context(link=dataclasses.replace(DEFAULT_LINK, curve=load_curve(folder, client), curve_loopback=True,
                                                 **kw))


def test_curve_admits_known_clients_and_refuses_and_counts_the_others(tmp_path):
    create_keys(tmp_path / "keys", ["cam01"])
    create_keys(tmp_path / "other", ["cam01"])  # same name, another key: unknown to the server
    (tmp_path / "other" / "server.key_secret").unlink()
    (tmp_path / "other" / "server.key").write_bytes((tmp_path / "keys" / "server.key").read_bytes())
    server, good, bad = (_curve_ctx(tmp_path / "keys"), _curve_ctx(tmp_path / "keys", "cam01"),
                         _curve_ctx(tmp_path / "other", "cam01"))
    plain = zmq.Context()
    ep = f"tcp://127.0.0.1:{_free_port()}"
    rx = Receiver(server, ep, [b""], bind=True)
    tx_good = Publisher(good, ep, bind=False)
    tx_bad = Publisher(bad, ep, bind=False)
    tx_plain = Publisher(plain, ep, bind=False)  # no CURVE at all
    try:
        seen: set[str] = set()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not ("good" in seen and rx.counters.auth_refused >= 1):
            for tx, name in ((tx_good, "good"), (tx_bad, "bad"), (tx_plain, "plain")):
                tx.send(_kp(name))
            if (got := rx.recv(20)) is not None:
                seen.add(got.message.camera)
        for _ in range(50):  # a little more time for anything that should not arrive
            for tx, name in ((tx_good, "good"), (tx_bad, "bad"), (tx_plain, "plain")):
                tx.send(_kp(name))
            while (got := rx.recv(5)) is not None:
                seen.add(got.message.camera)
        assert seen == {"good"}
        assert rx.counters.auth_refused >= 1 and rx.status()["auth_refused"] >= 1
    finally:
        for s in (rx, tx_good, tx_bad, tx_plain):
            s.close()
        for c in (server, good, bad):
            c.term()
        plain.term()
