"""Pipeline cost and throughput: sync + associate + triangulate + track + filter per FrameSet.

For 1, 4 and 8 people and 4, 8 and 16 cameras (generated rings; people walking around each other,
3 px noise, 2 % outliers, 5 % dropouts), the frames of every camera are fed in arrival order to
the same Pipeline the live sync node runs, as fast as possible (= ``rtkin replay`` speed).

- per FrameSet: the duration of the push() call that completed the slot and produced its
  Skeleton3D (the processing latency the last camera's frame sees), p50 / p99;
- sustained rate: FrameSets per second over the whole stream, all pushes included.

The headline row is the acceptance case: the Pose2Sim demo rig, 1 person (single mode) x 4
cameras. ``--live`` also runs the real multi-process chain in real time (virtual subject, demo rig)
and prints the capture -> Skeleton3D latency measured in the sync process.

Usage: python benchmarks/bench_pipeline.py [--seconds 4] [--live]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

from rtkin.sim import virtual
from rtkin.reconstruct.association import AssociationSettings
from rtkin.runtime.config import ReconstructionSettings
from rtkin.reconstruct.pipeline import Pipeline


def _measure(rig, subjects, mode, seed=1):
    cs = virtual.CorruptionSettings(noise_px=3.0, outlier_rate=0.02, dropout_rate=0.05)
    views = virtual.render_views(rig, subjects, corruption=cs, seed=seed)
    events = virtual.arrival_order(views, seed=seed)
    settings = ReconstructionSettings(association=AssociationSettings(mode=mode))
    pipe = Pipeline(rig, "HALPE_26", reconstruction=settings, clock_ns=None)
    warm = virtual.render_views(rig, subjects, corruption=cs, seed=seed + 1)  # compile / load kernels
    for recv, f in virtual.arrival_order(warm)[: 8 * len(rig)]:
        pipe.push(f, recv)
    pipe.reset()
    pipe.sync.reset()
    per_fs, n_fs = [], 0
    t_all = time.perf_counter()
    for recv, f in events:
        t = time.perf_counter()
        out = pipe.push(f, recv)
        dt = time.perf_counter() - t
        if out:
            per_fs.append(dt / len(out))
            n_fs += len(out)
    n_fs += len(pipe.flush())
    wall = time.perf_counter() - t_all
    return np.array(per_fs), n_fs, wall, None


def _row(label, per_fs, n_fs, wall):
    p50, p99 = np.percentile(per_fs, [50, 99]) * 1e3
    print(f"{label:<34} {p50:9.3f} {p99:9.3f} {n_fs / wall:12.0f}")


def _live(seconds: float) -> None:
    from rtkin.core.stats import histogram_percentiles
    from rtkin.demo import synthetic_config
    from rtkin.runtime.runner import Runner

    with tempfile.TemporaryDirectory() as d:
        cfg = synthetic_config(d, duration_s=seconds, realtime=True, bystander=True)
        res = Runner(cfg, log=lambda *a: None).run()
    s = res.reports.get("sync")
    if not s:
        print("live run failed:", res.errors)
        return
    lat = histogram_percentiles(s["latency_hist"], (50, 99), scale=1e3)
    rec = histogram_percentiles(s["timing_hist"]["reconstruct"], (50, 99), scale=1e3)
    print(f"\nlive, multi-process, real time (demo rig, 1 person + bystander, 4 cameras, 60 Hz, {seconds:.0f} s):")
    print(f"  capture -> Skeleton3D published: p50 {lat[0]:.2f} ms, p99 {lat[1]:.2f} ms "
          f"(n={s['latency_hist']['n']}; includes the wait for the last camera of each slot)")
    print(f"  reconstruct stage in the sync process: p50 {rec[0]:.3f} ms, p99 {rec[1]:.3f} ms")
    print(f"  drops: {s['sync']['late']} late, {s['shed']['slots']} slots shed, {s['receiver']['dropped']} lost in transport, "
          f"{s['receiver']['malformed']} malformed")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=4.0, help="seconds of motion per case (60 Hz)")
    ap.add_argument("--live", action="store_true", help="also run the multi-process chain in real time")
    args = ap.parse_args(argv)

    print(f"{'case':<34} {'p50 ms':>9} {'p99 ms':>9} {'FrameSets/s':>12}")
    subj = virtual.simulate_subject(virtual.MotionSettings(duration_s=args.seconds))
    demo = virtual.demo_rig()
    _row("demo rig, 1 person (single), 4 cams", *_measure(demo, [subj, virtual.bystander(duration_s=args.seconds)], "single")[:3])
    for people in (1, 4, 8):
        group = virtual.orbiting_group(people, duration_s=args.seconds)
        for cams in (4, 8, 16):
            rig = virtual.ring_rig(cams, radius_m=6.0)
            per_fs, n_fs, wall, _ = _measure(rig, group, "single" if people == 1 else "multi")
            _row(f"ring, {people} people, {cams} cams", per_fs, n_fs, wall)
    if args.live:
        _live(8.0)


if __name__ == "__main__":
    main()
