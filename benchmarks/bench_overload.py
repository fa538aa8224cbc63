"""Overload: the live chain in real time on an idle machine, then with every core kept busy by
other processes (``sh -c 'while :; do :; done'`` at normal priority, one per core). Prints the
lag (last camera frame in -> Skeleton3D and -> JointAngles, p50/p99), what was shed or dropped
(and where), and id stability (distinct ids given to the one subject), for both runs.

    python benchmarks/bench_overload.py [--seconds 30]

When late, the pipeline sheds the oldest work (counted) and never falls behind by more than about
one wait window plus one slot; an overloaded run shows it on the status topic ("overloaded").
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
from pathlib import Path



def _run(seconds: float, busy: int) -> dict:
    from rtkin.core.stats import histogram_percentiles, merge_histograms
    from rtkin.io.recording import recorded_outputs
    from rtkin.runtime.config import load_config
    from rtkin.runtime.runner import Runner
    from rtkin.runtime.summary import frame_accounting

    hogs = [subprocess.Popen(["sh", "-c", "while :; do :; done"]) for _ in range(busy)]
    try:
        with tempfile.TemporaryDirectory(prefix="rtkin_overload_") as tmp:
            cfg = Path(tmp) / "run.toml"
            cfg.write_text(f"""
[run]
name = "o"
output_dir = "{tmp}/out"
[source.virtual]
duration_s = {seconds}
bystander = true
[transport]
keypoints = "ipc://{tmp}/kp.sock"
outputs = "ipc://{tmp}/out.sock"
angles = "ipc://{tmp}/ik{{worker}}.sock"
""")
            runner = Runner(load_config(cfg), log=lambda *a: None)
            res = runner.run()
            rec = runner.recording_file()
            sks = recorded_outputs(rec) if rec else []
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    sync = res.reports.get("sync", {})
    ik = merge_histograms(v.get("e2e_hist") for k, v in res.reports.items() if k.startswith("ik:"))
    acc = frame_accounting(res.reports, res.sent)
    ids = sorted({int(p) for sk in sks for p in sk.person_ids})
    return {"errors": res.errors, "slots": sync.get("sync", {}).get("framesets", 0), "outputs": sync.get("outputs", 0),
            "shed_slots": sync.get("shed", {}).get("slots", 0), "late": acc["total"].get("late", 0),
            "lost": acc["total"].get("lost", 0), "sent": acc["total"].get("sent", 0),
            "ik_shed": sum(v.get("shed", 0) for k, v in res.reports.items() if k.startswith("ik:")),
            "sk_lag": histogram_percentiles(sync.get("arrival_latency_hist", {}), (50, 99), 1e3),
            "ja_lag": histogram_percentiles(ik, (50, 99), 1e3), "ids": ids, "balanced": acc["balanced"],
            "stop_s": res.stop_s}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--busy", type=int, default=os.cpu_count() or 2, help="busy processes in the loaded run")
    args = ap.parse_args(argv)
    rows = [("idle", _run(args.seconds, 0)), (f"{args.busy} busy loops", _run(args.seconds, args.busy))]
    print(f"live synthetic session, {args.seconds:g} s real time, 1 person + bystander, 4 cameras at 60 Hz")
    print(f"{'machine':<14} {'slots':>6} {'out':>6} {'shed':>5} {'late':>5} {'lost':>5} {'IK shed':>8} "
          f"{'frame->sk3d p50/p99 ms':>23} {'frame->angles p50/p99 ms':>25} {'ids':>8} {'stop s':>7}")
    for label, r in rows:
        print(f"{label:<14} {r['slots']:6d} {r['outputs']:6d} {r['shed_slots']:5d} {r['late']:5d} {r['lost']:5d} "
              f"{r['ik_shed']:8d} {r['sk_lag'][0]:11.1f} / {r['sk_lag'][1]:7.1f} {r['ja_lag'][0]:12.1f} / "
              f"{r['ja_lag'][1]:7.1f} {str(r['ids']):>8} {r['stop_s']:7.1f}")
        if r["errors"] or not r["balanced"]:
            print(f"  errors: {r['errors']}; frames balanced: {r['balanced']}")
    idle, busy = rows[0][1], rows[1][1]
    if idle["ja_lag"][0] == idle["ja_lag"][0] and busy["ja_lag"][0] == busy["ja_lag"][0]:
        print(f"loaded / idle JointAngles lag p50: {busy['ja_lag'][0] / idle['ja_lag'][0]:.2f}, "
              f"p99: {busy['ja_lag'][1] / idle['ja_lag'][1]:.2f}")


if __name__ == "__main__":
    main()
