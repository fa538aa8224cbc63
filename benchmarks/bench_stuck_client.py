"""Does a client that stops reading slow the pipeline? Latency with and without stuck clients.

Runs the synthetic live chain (virtual subject, demo rig, 4 camera processes, sync, IK, recorder)
twice for the same duration, in this process's machine:

1. no clients;
2. stuck clients: a ZeroMQ subscriber on the Skeleton3D and JointAngles endpoints that never reads
   (small receive queue), and the browser dashboard with a WebSocket client that completes the
   handshake and never reads.

Prints capture -> Skeleton3D (sync process) and capture -> JointAngles (IK process) p50 / p99 for
both runs and the ratio (the issue bounds it at +10 %).

Then the publisher side alone (``--burst``, default 5000): the time a PUB socket takes for a burst of
Skeleton3D + JointAngles sends to a dashboard in another process whose WebSocket client reads,
and whose client completed its handshake and never reads, as a ratio (the tests only check that
every send completes while such a client is connected; the timing lives here).

Usage: python benchmarks/bench_stuck_client.py [--seconds 10] [--burst 5000]
"""

from __future__ import annotations

import argparse
import socket
import tempfile
import time

import numpy as np
import zmq

from rtkin.runtime.config import angles_endpoints
from rtkin.clients.dashboard import Dashboard
from rtkin.demo import synthetic_config
from rtkin.runtime.runner import Runner


def _run(seconds: float, stuck: bool) -> dict[str, np.ndarray]:
    with tempfile.TemporaryDirectory() as d:
        cfg = synthetic_config(d, duration_s=seconds, realtime=True, bystander=True)
        runner = Runner(cfg, log=lambda *a: None)
        ctx, subs, dash, ws = zmq.Context(), [], None, None
        if stuck:
            for ep in [cfg.transport.outputs] + angles_endpoints(cfg):
                s = ctx.socket(zmq.SUB)
                s.setsockopt(zmq.RCVHWM, 10)
                s.setsockopt(zmq.SUBSCRIBE, b"")
                s.connect(ep)
                subs.append(s)  # never read
            dash = Dashboard.from_config(cfg, port=0).start()
            ws = socket.create_connection(("127.0.0.1", dash.port))
            ws.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            ws.sendall(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                       b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")  # then never read
        try:
            res = runner.run()
        finally:
            if ws is not None:
                ws.close()
            if dash is not None:
                dash.stop()
            for s in subs:
                s.close(linger=0)
            ctx.term()
    out = {"Skeleton3D": np.array(res.reports["sync"]["latency_s"]) * 1e3}
    ik = res.reports.get("ik:0")
    if ik:
        out["JointAngles"] = np.array([ik["latency_ms"]["p50"], ik["latency_ms"]["p99"]])
    return out


def _dashboard_process(endpoints, port_q, stop) -> None:
    import logging

    logging.getLogger("rtkin.clients.dashboard").setLevel(logging.CRITICAL)  # clients closed abruptly at the end
    dash = Dashboard(endpoints[0], endpoints[1:], port=0, rate_hz=50.0).start()
    port_q.put(dash.port)
    stop.wait()
    dash.stop()


def _ws_client(port: int, read: bool):
    """A raw WebSocket client: one that drains what it gets, or one that never reads."""
    import threading

    ws = socket.create_connection(("127.0.0.1", port))
    ws.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    ws.sendall(f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    def drain():
        try:
            while ws.recv(1 << 16):
                pass
        except OSError:
            pass

    if read:
        threading.Thread(target=drain, daemon=True).start()
    return ws


def _burst_s(n: int, stuck: bool) -> float:
    """Seconds for ``n`` Skeleton3D + JointAngles sends to a dashboard (another process) that has
    one WebSocket client: reading, or stuck."""
    import math
    import multiprocessing as mp

    from rtkin.core.messages import JointAngles, Skeleton3D
    from rtkin.runtime.transport import Publisher

    with tempfile.TemporaryDirectory() as d:
        ctx = zmq.Context()
        eps = [f"ipc://{d}/out", f"ipc://{d}/ja"]
        sk_pub, ja_pub = Publisher(ctx, eps[0], bind=True), Publisher(ctx, eps[1], bind=True)
        mpc = mp.get_context("spawn")
        port_q, stop = mpc.Queue(), mpc.Event()
        proc = mpc.Process(target=_dashboard_process, args=(eps, port_q, stop))
        proc.start()
        ws = _ws_client(port_q.get(timeout=60), read=not stuck)
        sk_pub.settle(1.0)
        names = ("hip_flexion_r", "knee_angle_r", "elbow_flex_r")
        rng = np.random.default_rng(0)
        sk = Skeleton3D(1, 0, "HALPE_26", np.arange(20), rng.normal(size=(20, 26, 3)), np.ones((20, 26), np.float32),
                        np.ones((20, 26), np.float32), np.full((20, 26), 4, np.uint8))
        ja = JointAngles(1, 0, 1, names, [math.radians(10)] * 3, 0.01, np.ones(3, np.float32), np.zeros(3, np.uint8))
        for _ in range(200):  # snapshots flow (and a stuck client's buffers fill)
            sk_pub.send(sk)
            ja_pub.send(ja)
            time.sleep(0.005)
        t0 = time.perf_counter()
        for _ in range(n):
            sk_pub.send(sk)
            ja_pub.send(ja)
        dt = time.perf_counter() - t0
        ws.close()
        stop.set()
        proc.join(10)
        sk_pub.close()
        ja_pub.close()
        ctx.destroy(linger=0)
    return dt


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--burst", type=int, default=5000)
    args = ap.parse_args(argv)
    reading = min(_burst_s(args.burst, stuck=False) for _ in range(3))
    with_stuck = min(_burst_s(args.burst, stuck=True) for _ in range(3))
    print(f"publisher burst of {args.burst} Skeleton3D (20 people) + {args.burst} JointAngles to a dashboard process "
          f"(best of 3): its WebSocket client reading {reading * 1e3:.0f} ms, never reading {with_stuck * 1e3:.0f} ms, "
          f"ratio {with_stuck / reading:.2f}")
    base = _run(args.seconds, stuck=False)
    stuck = _run(args.seconds, stuck=True)
    print(f"synthetic live run, {args.seconds:.0f} s, demo rig, 4 cameras, 1 person + bystander; latency in ms")
    print(f"{'':<34} {'p50':>8} {'p99':>8}")
    for name in ("Skeleton3D", "JointAngles"):
        for label, r in (("no client", base), ("stuck ZMQ + WebSocket clients", stuck)):
            v = r.get(name)
            if v is None:
                continue
            p50, p99 = (np.percentile(v, [50, 99]) if v.size > 2 else v)
            print(f"capture -> {name:<11} {label:<30} {p50:8.2f} {p99:8.2f}")
        if name in base and name in stuck:
            b = np.percentile(base[name], 50) if base[name].size > 2 else base[name][0]
            s = np.percentile(stuck[name], 50) if stuck[name].size > 2 else stuck[name][0]
            print(f"  p50 ratio stuck / none: {s / b:.2f}")


if __name__ == "__main__":
    main()
