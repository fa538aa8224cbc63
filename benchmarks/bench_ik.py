"""Incremental IK cost and accuracy: ms per person-frame, p50 / p99, on the virtual subject.

The virtual subject (walk, squat, arm raise at 60 Hz) goes through the live 3D pipeline (Pose2Sim
demo rig, 3 px noise, 2 % outliers, 5 % dropouts, One-Euro filter); the Skeleton3D stream is then
fed to IKStage, as the IK process would run it. For each solver configuration it prints:

- IKStage: the whole per-person call (usability masks, solve, quality and flags, JointAngles),
  per person-frame, p50 / p99 (the first, cold frame included in p99 only as one sample);
- solve: the bare IKSolver.solve_markers call on the same markers, warm-started;
- clean: the bare solve on the clean keypoints (the truth markers), warm-started;
- RMSE against the truth coordinates for the coordinates with accuracy targets (deg).

First, the forward kinematics with their Jacobian per evaluation: compiled
(:mod:`rtkin.kinematics.fastfk`) against OpenSim's bindings, same poses, same process.

Configurations: the default Gauss-Newton solver, and OpenSim's InverseKinematicsSolver (one-row
TimeSeriesTableVec3 + MarkersReference + solver rebuilt per frame, assemble() warm-started) at
accuracy 1e-3 and 1e-5.

End to end (``--e2e``): the live chain as ``rtkin run`` starts it, every stage in its own process
(4 virtual camera sources at 60 Hz, the sync node, one IK worker per person plus a spare, the
recorder), 1 person x 4 cameras. Latency = the IK worker publishing a JointAngles minus the sync
node receiving the last camera frame of that slot (the ``sk3d/`` stamp; one machine, one
monotonic clock), p50 / p99 / max over the run. Printed for the run as configured (scaling on:
the one-off scaling computation runs in the background during it), with scaling off, and without
the recorder; then 4 people x 4 cameras (ring) at 30 Hz, one IK process per person: latency per
person and its median over the first vs the last quarter of the run (a backlog would grow).

Usage: python benchmarks/bench_ik.py [--seconds 12] [--skip-opensim] [--e2e] [--e2e-only]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from rtkin.sim import virtual
from rtkin.kinematics.ik import IKSettings, IKSolver
from rtkin.kinematics.ik_stage import IKStage
from rtkin.reconstruct.pipeline import Pipeline

FPS = 60.0
#: coordinate -> column label of the RMSE table
REPORT = {"knee_angle_r": "knee", "hip_flexion_r": "hip", "ankle_angle_r": "ankle", "pelvis_tilt": "tilt",
          "L5_S1_Flex_Ext": "lumb", "elbow_flex_r": "elbow", "arm_rot_r": "armrot"}


def _stream(seconds: float):
    truth = virtual.simulate_subject(virtual.MotionSettings(duration_s=seconds, fps=FPS))
    rig = virtual.demo_rig()
    cs = virtual.CorruptionSettings(noise_px=3.0, outlier_rate=0.02, dropout_rate=0.05)
    views = virtual.render_views(rig, truth, corruption=cs, seed=11)
    sks = Pipeline(rig, "HALPE_26", clock_ns=None).run(virtual.arrival_order(views, seed=2))
    frames = np.array([int(round((sk.time_ns - views.time_ns[0]) * FPS / 1e9)) for sk in sks])
    return truth, sks, frames


def _pct(samples_s) -> str:
    p50, p99 = np.percentile(np.asarray(samples_s) * 1e3, [50, 99])
    return f"{p50:6.2f} {p99:6.2f}"


def _measure(settings: IKSettings, truth, sks, frames) -> None:
    stage = IKStage(settings)
    values, t_stage = [], []
    for sk in sks:
        t = time.perf_counter()
        out = stage(sk)
        t_stage.append(time.perf_counter() - t)
        values.append(out[0].values if out else np.full(len(truth.motion.names), np.nan))
    solver = IKSolver(settings)
    t_solve = []
    for sk in sks:
        factor, _ = stage.usable(sk, 0)
        x, w = solver.markers_from_points(sk.points[0], factor)
        t = time.perf_counter()
        solver.solve_markers(x, w, sk.time_ns * 1e-9)
        t_solve.append(time.perf_counter() - t)
    clean = IKSolver(settings)
    t_clean = []
    for f in range(truth.keypoints.shape[0]):
        t = time.perf_counter()
        clean.solve(truth.keypoints[f], None, f / FPS)
        t_clean.append(time.perf_counter() - t)
    est = np.array(values)
    names = list(truth.motion.names)
    err = np.degrees(np.sqrt(np.nanmean((est - truth.motion.values[frames]) ** 2, axis=0)))
    label = settings.method if settings.method == "gauss_newton" else f"opensim acc {settings.accuracy:g}"
    if settings.method == "gauss_newton" and not settings.posture_prior:
        label = "gauss_newton unguarded"
    rmse = " ".join(f"{err[names.index(n)]:6.1f}" for n in REPORT)
    print(f"{label:<22} {_pct(t_stage[1:]):>15}   {_pct(t_solve[1:]):>13}   {_pct(t_clean[1:]):>13}   {rmse}")


def _e2e(seconds: float, scaling: bool, recorder: bool = True) -> None:
    import dataclasses
    import tempfile

    from rtkin.demo import synthetic_config
    from rtkin.runtime.runner import Runner

    with tempfile.TemporaryDirectory(prefix="rtkin_bench_e2e_") as tmp:
        cfg = synthetic_config(tmp, duration_s=seconds, bystander=False)
        cfg = dataclasses.replace(cfg, ik=dataclasses.replace(cfg.ik, scaling=scaling),
                                  recording=dataclasses.replace(cfg.recording, enabled=recorder))
        res = Runner(cfg, log=lambda *a: None).run()
    from rtkin.core.stats import histogram_percentiles, merge_histograms

    hist = merge_histograms(v.get("e2e_hist") for k, v in res.reports.items() if k.startswith("ik:"))
    ik = np.concatenate([[v["timing_ms"]["p50"]] for k, v in res.reports.items()
                         if k.startswith("ik:") and v["timing_ms"].get("n")] or [[np.nan]])
    sync = res.reports.get("sync", {})
    rec = sync.get("timing_ms", {}).get("reconstruct", {})
    if not hist["n"]:
        print(f"  scaling {'on ' if scaling else 'off'}: no JointAngles ({res.errors})")
        return
    p50, p99 = histogram_percentiles(hist, (50, 99), scale=1e3)
    mx = hist["max"] * 1e3
    print(f"  scaling {'on ' if scaling else 'off'}, recorder {'on ' if recorder else 'off'}: n={hist['n']:5d}  "
          f"last camera frame in -> JointAngles out p50 {p50:5.2f}  p99 {p99:5.2f}  max {mx:6.2f} ms   "
          f"(in this run: reconstruct p50 {rec.get('p50', float('nan')):.2f} ms, IK p50 {ik[0]:.2f} ms)")


def _e2e_people(seconds: float, people: int = 4, fps: float = 30.0) -> None:
    """``people`` subjects walking around each other, 4 cameras (ring), one IK process each."""
    import dataclasses
    import tempfile
    from pathlib import Path

    from rtkin.core.calibration import write_calib_toml
    from rtkin.demo import synthetic_config
    from rtkin.runtime.runner import Runner

    with tempfile.TemporaryDirectory(prefix="rtkin_bench_e2e_") as tmp:
        write_calib_toml(virtual.ring_rig(4), Path(tmp) / "Calib.toml")
        cfg = synthetic_config(tmp, duration_s=seconds, bystander=False)
        cfg = dataclasses.replace(
            cfg, rig=dataclasses.replace(cfg.rig, calibration=str(Path(tmp) / "Calib.toml")),
            source=dataclasses.replace(cfg.source, fps_hz=fps,
                                       virtual=dataclasses.replace(cfg.source.virtual, people=people)),
            sync=dataclasses.replace(cfg.sync, fps_hz=fps),
            reconstruction=dataclasses.replace(cfg.reconstruction, association=dataclasses.replace(
                cfg.reconstruction.association, mode="multi")))
        res = Runner(cfg, log=lambda *a: None).run()
    from rtkin.core.stats import histogram_percentiles

    rows = []
    for k, v in sorted(res.reports.items()):
        h = v.get("e2e_hist") if k.startswith("ik:") else None
        if not h or h["n"] < 10:
            continue
        rows.append((k, v["served"], h["n"], *histogram_percentiles(h, (50, 99), scale=1e3), v.get("shed", 0),
                     v["receiver"]["dropped"]))
    print(f"  {people} people x 4 cameras at {fps:g} Hz, {seconds:g} s, one IK process each "
          f"({len(rows)} served; errors: {res.errors or 'none'}):")
    for k, served, n, p50, p99, shed, dropped in rows:
        print(f"    {k:<7} person {','.join(map(str, served)):<4} n={n:4d}  p50 {p50:5.2f}  p99 {p99:6.2f} ms   "
              f"shed (behind) {shed}  dropped {dropped}")


def bench_fk() -> None:
    """The compiled forward kinematics against OpenSim's bindings, same poses, same process."""
    from rtkin.kinematics.augment import augmented_ik_settings

    print("forward kinematics + Jacobian per evaluation, us (min of 5 x 500, CPU time):")
    for label, settings in (("keypoints (HALPE_26)", IKSettings()),
                            ("keypoints + augmented", augmented_ik_settings(IKSettings()))):
        s = IKSolver(settings)
        if s.tree is None:
            print(f"  {label}: the compiled kinematics are not in use (fallback)")
            continue
        rng = np.random.default_rng(0)
        q = np.clip(s._q_default + rng.uniform(-0.3, 0.3, s._q_default.size), s._lo, s._hi)

        def per_call(f) -> float:
            best = math.inf
            for _ in range(5):
                t = time.process_time()
                for _ in range(500):
                    f(q)
                best = min(best, (time.process_time() - t) / 500 * 1e6)
            return best

        fast, slow = per_call(lambda v: s._fk(v, s._free)), per_call(s._fk_opensim)
        print(f"  {label:<24} {len(s.marker_names):3d} markers: compiled {fast:6.1f}   OpenSim bindings "
              f"{slow:6.1f}   ({slow / fast:.0f}x)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=12.0, help="length of the virtual session, s")
    ap.add_argument("--skip-opensim", action="store_true", help="only the Gauss-Newton solver")
    ap.add_argument("--e2e", action="store_true", help="also the multi-process end-to-end latency")
    ap.add_argument("--e2e-only", action="store_true", help="only the multi-process end-to-end latency")
    args = ap.parse_args()
    if args.e2e or args.e2e_only:
        print(f"end to end, live processes, 1 person x 4 cameras at {FPS:g} Hz, {args.seconds:g} s:")
        for scaling, recorder in ((True, True), (False, True), (False, False)):
            _e2e(args.seconds, scaling, recorder)
        _e2e_people(args.seconds)
        if args.e2e_only:
            return
    bench_fk()
    truth, sks, frames = _stream(args.seconds)
    IKSolver()  # load the model once (template), as a running IK process would have
    print(f"{len(sks)} Skeleton3D frames at {FPS:g} Hz, 1 person; times in ms per person-frame")
    print(f"{'':<22} {'':>15}   {'':>13}   {'':>13}   RMSE vs truth (deg, noisy stream)")
    print(f"{'solver':<22} {'IKStage p50/p99':>15}   {'solve p50/p99':>13}   {'clean p50/p99':>13}   "
          f"{' '.join(f'{v:>6}' for v in REPORT.values())}")
    # the default, and (a same-process reference) the solver without the physiological guards:
    # no posture prior, speed bounds out of reach
    configs = [IKSettings(), IKSettings(posture_prior=(), max_joint_speed_rad_s=1e9, max_root_speed_rad_s=1e9,
                                        max_root_speed_m_s=1e9)]
    if not args.skip_opensim:
        configs += [IKSettings(method="opensim", accuracy=1e-3), IKSettings(method="opensim", accuracy=1e-5)]
    for settings in configs:
        _measure(settings, truth, sks, frames)


if __name__ == "__main__":
    main()
