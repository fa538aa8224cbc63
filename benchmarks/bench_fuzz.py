"""Fuzz: a live sync node takes a long flood of hostile messages (every kind of tests/fuzz_harness.py,
equal weights) while a real camera stream plays. Prints what was refused by reason, what came
out, the sync process's RSS (idle, peak, end) and the replay's verdicts.

    python benchmarks/bench_fuzz.py [--messages 1000000] [--seconds 30]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main(argv=None) -> None:
    from fuzz_harness import KINDS, Flood, run_flood

    from rtkin.offline.replay import replay

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--seconds", type=float, default=30.0, help="length of the good camera stream")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rtkin_fuzz_") as tmp:
        t = time.monotonic()
        res = run_flood(Path(tmp), Flood(tuple(1.0 for _ in KINDS), args.seed), args.messages, args.seconds)
        wall = time.monotonic() - t
        st = res["status"]
        r, v = st["receiver"], st["validation"]
        slots = res["sent_good"] // 4
        with_subject = sum(1 for _, sk in res["outputs"] if sk.time_ns >= res["t0_ns"] and sk.n_people)
        print(f"flood: {args.messages} hostile messages + {res['sent_good']} good frames in {wall:.1f} s; "
              f"sync alive: {res['alive']}; errors: {res['errors'] or 'none'}")
        print(f"received {r['received']}: malformed {r['malformed']}, accepted {v['accepted']}, "
              f"refused {sum(v['refused'].values())}, control {st['control']}, sequence gaps counted {r['dropped']}")
        print("refused by reason: " + ", ".join(f"{k} {n}" for k, n in sorted(v["refused"].items())))
        print(f"clock faults {st['sync']['clock']}, re-alignments {st['sync']['realigned']}")
        print(f"Skeleton3D with the subject: {with_subject} of {slots} slots ({100 * with_subject / max(1, slots):.1f} %)")
        idle, peak, end = res["rss_kb"]
        print(f"sync RSS: idle {idle / 1024:.1f} MB, peak {peak / 1024:.1f} MB ({peak / idle:.2f}x), end {end / 1024:.1f} MB")
        t = time.monotonic()
        rep = replay(res["recording"])
        same, n = rep.matches_recorded()
        print(f"recorder wrote {res['recorder'].get('inputs', 0)} of the {st['tap_sent']} frames the sync tapped")
        print(f"replay: {rep.inputs} frames in {time.monotonic() - t:.1f} s, refused as live: {rep.refused == v['refused']}, "
              f"outputs identical to live: {same}/{n}")


if __name__ == "__main__":
    main()
