"""Soak: a long real-time synthetic session with 2 people, the dashboard on and a subscriber
connected. Prints the time to exit, every process's RSS at the start and at the end, the
end-to-end latency (last camera frame in -> JointAngles out, as the subscriber sees it) p50/p99
per minute, and the frame accounting.

    python benchmarks/bench_soak.py                 # 10 minutes
    python benchmarks/bench_soak.py --minutes 2     # quicker

The acceptance of the "real sessions" issue: RSS grows < 10 % from the first to the last minute,
the last minute's latency p50 stays within 20 % of the first minute's, the run exits within 10 s.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return float("nan")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    args = ap.parse_args(argv)
    from rtkin.clients.dashboard import Dashboard
    from rtkin.clients.subscriber import Subscriber
    from rtkin.core.messages import JointAngles
    from rtkin.runtime.config import angles_endpoints, load_config
    from rtkin.runtime.runner import Runner
    from rtkin.runtime.summary import frame_accounting

    seconds = args.minutes * 60
    with tempfile.TemporaryDirectory(prefix="rtkin_soak_") as tmp:
        cfg_path = Path(tmp) / "soak.toml"
        cfg_path.write_text(f"""
[run]
name = "soak"
output_dir = "{tmp}/out"
duration_s = {seconds}
[source.virtual]
duration_s = {seconds + 30}
people = 2
[reconstruction.association]
mode = "multi"
[transport]
keypoints = "ipc://{tmp}/kp.sock"
outputs = "ipc://{tmp}/out.sock"
angles = "ipc://{tmp}/ik{{worker}}.sock"
""")
        cfg = load_config(cfg_path)
        runner = Runner(cfg, log=lambda *a: None)
        dash = Dashboard.from_config(runner.cfg, port=0).start()
        lat: list[tuple[float, float]] = []  # (seconds since start, e2e ms)
        stop = threading.Event()

        got_by_client = [0]
        ids: set[int] = set()

        def subscribe():
            """A user's program (rtkin.Subscriber) plus a raw receiver reading the latency stamps."""
            import zmq

            from rtkin.runtime.transport import Receiver

            zctx = zmq.Context()
            rx = Receiver(zctx, angles_endpoints(runner.cfg)[0], [b"ja/"], bind=False, rcvhwm=100_000)
            for ep in angles_endpoints(runner.cfg)[1:]:
                rx.socket.connect(ep)
            with Subscriber([runner.cfg.transport.outputs] + angles_endpoints(runner.cfg)) as sub:
                while not stop.is_set():
                    if sub.recv(0.0) is not None:
                        got_by_client[0] += 1
                    got = rx.recv(20)
                    if got is not None and isinstance(got.message, JointAngles):
                        ids.add(int(got.message.person_id))
                    if got is not None and isinstance(got.message, JointAngles) and got.stamp_ns:
                        lat.append(((time.monotonic_ns() - runner.t0_ns) / 1e9, (time.monotonic_ns() - got.stamp_ns) / 1e6))
            rx.close()
            zctx.term()

        th = threading.Thread(target=subscribe, daemon=True)
        rss: dict[str, list[float]] = {}

        def sample():
            for name, p in runner.procs.items():
                if p.p.pid and p.p.exitcode is None:
                    rss.setdefault(name, []).append(_rss_mb(p.p.pid))
            rss.setdefault("main", []).append(_rss_mb(os.getpid()))

        next_sample = [0.0]

        def tick(r):
            if time.monotonic() >= next_sample[0] and r.t0_ns:
                sample()
                next_sample[0] = time.monotonic() + 30.0

        runner.start()
        th.start()
        t_end = None
        result = runner.run(on_tick=tick)
        t_end = result.stop_s
        stop.set()
        th.join(2)
        dash.stop()
    print(f"soak: {args.minutes:g} min real time, 2 people, 4 cameras at 60 Hz, dashboard + subscriber connected")
    print(f"time to exit after the end: {t_end:.1f} s; errors: {result.errors or 'none'}; processes that had to "
          f"be terminated: {', '.join(result.killed) or 'none'}; person ids: {len(ids)}")
    print(f"{'process':<14} {'RSS start MB':>13} {'RSS end MB':>11} {'growth':>8}   (first sample after 1 min)")
    for name, v in sorted(rss.items()):
        v = [x for x in v if np.isfinite(x)]
        if len(v) >= 3:
            first, last = v[min(2, len(v) - 1)], v[-1]
            print(f"{name:<14} {first:13.1f} {last:11.1f} {100 * (last / first - 1):7.1f}%")
    if lat:
        a = np.array(lat)
        print("end-to-end latency (subscriber clock) per minute: minute  n  p50 ms  p99 ms")
        for m in range(int(np.ceil(a[:, 0].max() / 60))):
            sel = a[(a[:, 0] >= 60 * m) & (a[:, 0] < 60 * (m + 1)), 1]
            if sel.size:
                print(f"  {m + 1:3d} {sel.size:6d} {np.percentile(sel, 50):7.2f} {np.percentile(sel, 99):7.2f}")
        first = a[a[:, 0] < 60, 1]
        last = a[a[:, 0] >= a[:, 0].max() - 60, 1]
        if first.size and last.size:
            print(f"last minute p50 / first minute p50: {np.median(last) / np.median(first):.2f}")
    print(f"messages read by the rtkin.Subscriber client: {got_by_client[0]}")
    acc = frame_accounting(result.reports, result.sent)
    print(f"frames: {acc['total']} balanced={acc['balanced']}")


if __name__ == "__main__":
    main()
