"""Does a client that stops reading slow the pipeline? Latency with and without stuck clients.

Runs the synthetic live chain (virtual subject, demo rig, 4 camera processes, sync, IK, recorder)
twice for the same duration, in this process's machine:

1. no clients;
2. stuck clients: a ZeroMQ subscriber on the Skeleton3D and JointAngles endpoints that never reads
   (small receive queue), and the browser dashboard with a WebSocket client that completes the
   handshake and never reads.

Prints capture -> Skeleton3D (sync process) and capture -> JointAngles (IK process) p50 / p99 for
both runs and the ratio (the issue bounds it at +10 %).

Usage: python benchmarks/bench_stuck_client.py [--seconds 10]
"""

from __future__ import annotations

import argparse
import socket
import tempfile

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


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args(argv)
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
