"""``rtkin reprocess`` against the truth and against Pose2Sim offline, same input, one run.

Scenes: virtual subjects of 1.55 m and 1.95 m with non-uniform proportions (the generic model
scaled per body by known factors), a seeded motion (walk, squat, arm raise), the Pose2Sim demo
rig (4 cameras), 3 px noise, 2 % outliers, 5 % dropouts, and a bystander seen by cam01 and cam02.
Motion and corruption seeds differ from those the defaults were tuned on (motion seeds 0 and 3).

Per scene:

1. the scene is recorded through the live stages in one process (``rtkin.offline.simulate``:
   sync, association, triangulation, One-Euro, live scaling + IK), like ``rtkin run`` writes it;
2. ``rtkin reprocess REC -o DIR`` runs (the CLI's own entry point, in this process, one core:
   BLAS threads are pinned to 1) with its defaults, then with variants (``--variants``);
3. Pose2Sim 0.10 runs offline on the same 2D detections (``P2S``: every person in every view, as
   OpenPose JSON), and again on the subject's detections alone (``P2S alone``: an easier input
   than rtkin gets, Pose2Sim's best case); ``benchmarks/bench_accuracy.py``'s project set-up:
   triangulation, filtering, kinematics with its own scaling;
4. everything is scored **from the files written**: the MOT (joint angles, by time -> frame) and
   the TRC (3D keypoints), against the truth: per-coordinate RMSE, joint rotation RMS (the
   angle of the relative rotation truth -> estimate of each joint's child body in its parent,
   independent of how a rotation is split into coordinates) and the 3D median error.

Printed: tables, the acceptance checks (mean coordinate RMSE <= 2 deg; rotation RMS below
Pose2Sim's on every joint; 3D median at or below Pose2Sim's filtered TRC), the reprocess speed as
a multiple of real time and against Pose2Sim's own pipeline on the same input, in the same run.

``--tune-smoothing`` instead prints the 3D error of the raw triangulation smoothed with the RTS
smoother at several (jerk_psd, noise_m) and with the Butterworth, on the TUNING scenes (generic
body, motion seeds 0 and 3, bystander): how the RTS defaults were picked.

The speed figures: the process's CPU time for the default reprocess (one core: BLAS and Numba
threads are 1), as a multiple of real time, with the CPU split per step (ms per 60 Hz slot), and
Pose2Sim's pipeline time on the same input, in the same run.

Usage: nice -n 5 python benchmarks/bench_reprocess.py [--seconds 20] [--variants] [--skip-pose2sim] [--keep DIR]
       nice -n 5 python benchmarks/bench_reprocess.py --speed [--seconds 60] [--repeat 3]   (speed only, with Pose2Sim)
       nice -n 5 python benchmarks/bench_reprocess.py --quick [--seconds 60] [--repeat 3]   (speed only, no Pose2Sim)
       nice -n 5 python benchmarks/bench_reprocess.py --tune-smoothing
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_v, "1")  # one core: set before numpy / numba load
os.environ.setdefault("MPLBACKEND", "Agg")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import dataclasses  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_accuracy as ba  # noqa: E402  (OpenPose JSON + Pose2Sim runs, MOT onto frames, table cells)

from rtkin.io.trc import read_trc  # noqa: E402
from rtkin.kinematics.scaling import model_stature  # noqa: E402
from rtkin.sim import scenes as scn  # noqa: E402
from rtkin.sim import scoring  # noqa: E402
from rtkin.sim import virtual  # noqa: E402
from rtkin.sim.scaled import simulate_scaled_subject  # noqa: E402

FPS = 60.0

#: (label, body -> scale factor): non-uniform proportions
BODIES = (
    ("1.55 m", {"pelvis": 0.93, "sacrum": 0.93, "femur_r": 0.89, "femur_l": 0.89, "tibia_r": 0.90, "tibia_l": 0.90,
                "talus_r": 0.92, "calcn_r": 0.92, "toes_r": 0.92, "talus_l": 0.92, "calcn_l": 0.92, "toes_l": 0.92,
                "torso": 0.95, "head": 0.97, "humerus_r": 0.91, "humerus_l": 0.91, "ulna_r": 0.88, "radius_r": 0.88,
                "hand_r": 0.9, "ulna_l": 0.88, "radius_l": 0.88, "hand_l": 0.9}),
    ("1.95 m", {"pelvis": 1.10, "sacrum": 1.10, "femur_r": 1.21, "femur_l": 1.21, "tibia_r": 1.18, "tibia_l": 1.18,
                "talus_r": 1.12, "calcn_r": 1.12, "toes_r": 1.12, "talus_l": 1.12, "calcn_l": 1.12, "toes_l": 1.12,
                "torso": 1.12, "head": 1.04, "humerus_r": 1.16, "humerus_l": 1.16, "ulna_r": 1.19, "radius_r": 1.19,
                "hand_r": 1.1, "ulna_l": 1.19, "radius_l": 1.19, "hand_l": 1.1}),
)
SEEDS = (21, 22)  # motion seeds (the defaults were tuned on 0 and 3)

#: joint rotation angles (:data:`rtkin.sim.scoring.JOINTS` rows: label, parent body, child bodies),
#: scored per child body
JOINTS = (("hip", "pelvis", ("femur_r", "femur_l")),
          ("knee R", "femur_r", ("tibia_r",)), ("knee L", "femur_l", ("tibia_l",)),
          ("ankle R", "tibia_r", ("talus_r",)), ("ankle L", "tibia_l", ("talus_l",)),
          ("lumbar", "pelvis", ("torso",)),
          ("shoulder", "torso", ("humerus_r", "humerus_l")),
          ("elbow R", "humerus_r", ("ulna_r",)), ("elbow L", "humerus_l", ("ulna_l",)))
#: the bodies whose orientations the joint rotations need
FK_BODIES = tuple(dict.fromkeys(b for _, parent, children in JOINTS for b in (parent, *children)))
#: row label of each scored child body
ROT_LABELS = {"torso": "lumbar (torso)"}

VARIANTS = (
    ("butterworth", {"reprocess": {"smoothing": {"kind": "butterworth"}}}),
    ("IK every frame", {"reprocess": {"ik_rate_hz": 0.0}}),
    ("backward pass", {"reprocess": {"backward_pass": True}}),
)


# ============================================================================ scenes


def make_scene(label: str, factors: dict, seed: int, seconds: float) -> tuple[scn.Scene, float]:
    """The scene of one body as a :class:`rtkin.sim.scenes.Scene` (so that bench_accuracy's
    OpenPose / Pose2Sim helpers take it) and the scaled model's stature, m.

    Its people are not :class:`~rtkin.sim.scenes.PersonSpec` persons (explicit per-body factors,
    the demo bystander): the spec carries only what the helpers read (rate, skeleton, no camera
    gaps) and the rendering seed and corruption."""
    st = virtual.MotionSettings(duration_s=seconds, fps=FPS, seed=seed)
    truth = simulate_scaled_subject(factors, st)
    by = virtual.bystander(seed=seed + 7, duration_s=seconds, fps=FPS)
    cs = virtual.CorruptionSettings(noise_px=3.0, outlier_rate=0.02, dropout_rate=0.05)
    rig = virtual.demo_rig()
    views = virtual.render_views(rig, [truth, by], corruption=cs, seed=100 + seed, visible_in={1: ["cam01", "cam02"]})
    spec = scn.SceneSpec(f"bench_reprocess {label}", duration_s=seconds, fps=FPS, skeleton=views.skeleton,
                         rig=scn.RigSpec("demo"), people=(), corruption=cs, seed=100 + seed,
                         note=f"{label} body, motion seed {seed}, demo bystander in cam01/cam02")
    return scn.Scene(spec, rig, (truth, by), (dict(factors), {}), views), model_stature(None, factors)


def subject_only(scene: scn.Scene) -> scn.Scene:
    """The scene with the subject's detections alone (the bystander's removed from every view)."""
    v = scene.views
    kp = v.keypoints_of(0)  # (C, T, K, 3), score 0 where the subject is not detected
    frames = tuple(tuple(dataclasses.replace(f, keypoints=kp[c, t][None]) for t, f in enumerate(cam))
                   for c, cam in enumerate(v.frames))
    identity = tuple(tuple(np.zeros(1, dtype=int) for _ in cam) for cam in v.frames)
    return dataclasses.replace(scene, views=dataclasses.replace(v, frames=frames, identity=identity))


# ============================================================================ scoring from files


def trc_points(path: Path, keypoints: tuple[str, ...], T: int) -> np.ndarray:
    t, pts, names = read_trc(path)
    out = np.full((T, len(keypoints), 3), np.nan)
    f = np.round(t * FPS).astype(int)
    ok = (f >= 0) & (f < T)
    for k, n in enumerate(keypoints):
        if n in names:
            out[f[ok], k] = pts[ok, names.index(n)]
    return out


def median_3d(est: np.ndarray, truth: np.ndarray, common: np.ndarray) -> tuple[float, float, float]:
    """(median, mean, p95) 3D error, mm."""
    d = np.linalg.norm(est[common] - truth[common], axis=-1)
    d = d[np.isfinite(d)] * 1e3
    return (float(np.median(d)), float(np.mean(d)), float(np.percentile(d, 95))) if d.size else (np.nan,) * 3


# ============================================================================ runs

P2S_STEPS = ("triangulation", "filtering", "kinematics")


def run_pose2sim(scene: scn.Scene, work: Path) -> tuple[np.ndarray, dict, dict]:
    """Pose2Sim offline on the scene's detections (bench_accuracy's OpenPose JSON and project
    set-up, in this process): ``(T, Q)`` estimates (rad / m, the truth's order), the step times
    (``"triangulation_s"``, ``"triangulation_cpu_s"``, ...) and ``{"write_json_s", "rows",
    "first", "last"`` (frames with angles), ``"scales"`` (its scaled model against the truth),
    ``"filtered_trc"``}."""
    from rtkin.io.report import scale_factors_from_osim

    work.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    ba.write_inputs(scene, work)
    write_json_s = time.perf_counter() - t
    est, tm = ba.run_pose2sim(scene, work)
    project = work / "p2s_trial"  # where ba.run_pose2sim builds its project
    have = np.flatnonzero(np.isfinite(est).any(1))
    osim = next((project / "kinematics").glob("*.osim"), None)
    got = scale_factors_from_osim(osim) if osim else {}
    truth = scene.factors[0]
    scales = ", ".join(f"{b} {got[b]:.3f} ({truth.get(b, 1.0):.3f})" for b in ("femur_r", "tibia_r", "humerus_r")
                       if b in got) or "n/a"
    filt = next(f for f in (project / "pose-3d").glob("*.trc") if "_filt" in f.name)
    return est, tm, {"write_json_s": write_json_s, "rows": int(have.size), "first": int(have[0]) if have.size else -1,
                     "last": int(have[-1]) if have.size else -1, "scales": scales, "filtered_trc": filt}



def run_reprocess(rec: Path, out: Path, overrides: dict | None) -> tuple[float, dict]:
    """``rtkin reprocess REC -o OUT`` through the CLI's entry point, in this process; returns
    (wall s, {"summary": CLI line, "cpu": process CPU s, "result": the ReprocessResult})."""
    import rtkin.offline.reprocess as rp
    from rtkin import cli

    args = ["reprocess", str(rec), "-o", str(out), "--force"]
    if overrides:
        cfg = out.with_suffix(".toml")
        cfg.parent.mkdir(parents=True, exist_ok=True)
        cfg.write_text(_toml(overrides))
        args += ["--config", str(cfg)]
    buf_out, buf_err = io.StringIO(), io.StringIO()
    captured = {}
    original = rp.reprocess

    def capture(*a, **k):  # the CLI imports it at call time: keep its result for the step split
        captured["result"] = original(*a, **k)
        return captured["result"]

    rp.reprocess = capture
    t, c = time.perf_counter(), time.process_time()
    try:
        with contextlib.redirect_stdout(buf_out), contextlib.redirect_stderr(buf_err):
            rc = cli.main(args)
    finally:
        rp.reprocess = original
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    if rc != 0:
        raise RuntimeError(f"rtkin reprocess failed ({rc}): {buf_err.getvalue()[-500:]}")
    line = next(l for l in buf_out.getvalue().splitlines() if l.startswith("reprocessed "))
    return wall, {"summary": line, "cpu": cpu, "result": captured.get("result")}


def print_speed_split(res, cpu: float, wall: float) -> None:
    """The reprocess's steps in CPU time: seconds, ms per 60 Hz slot, share."""
    S = max(int(res.counters.get("slots", 0)), 1)
    dur = res.duration_s
    tm = res.cpu_timings
    print(f"reprocess speed, one core (BLAS/numba threads 1): {dur:.1f} s recorded, {S} slots; process CPU {cpu:.2f} s "
          f"= {cpu / dur:.4f} CPU s per recorded s = {dur / cpu:.1f}x real time (wall {wall:.2f} s = {dur / wall:.1f}x; "
          f"budget for 20x: {1e3 / 20 / (S / dur):.3f} ms per slot)")
    print(f"  {'step (CPU)':<26}{'s':>8}{'ms/slot':>10}{'share':>8}")
    total = tm.get("total", cpu)
    for k, v in tm.items():
        if k != "total":
            print(f"  {k:<26}{v:8.3f}{v / S * 1e3:10.3f}{v / total:8.1%}")
    rest = cpu - total
    print(f"  {'(CLI, imports, outside)':<26}{rest:8.3f}{rest / S * 1e3:10.3f}{rest / cpu:8.1%}")
    print(f"  {'total':<26}{cpu:8.3f}{cpu / S * 1e3:10.3f}")


def _toml(d: dict, prefix: str = "") -> str:
    lines, tables = [], []
    for k, v in d.items():
        if isinstance(v, dict):
            tables.append((f"{prefix}{k}", v))
        else:
            lines.append(f"{k} = {json.dumps(v)}")
    out = "\n".join(lines) + ("\n" if lines else "")
    for name, v in tables:
        inner = {a: b for a, b in v.items() if not isinstance(b, dict)}
        out += f"[{name}]\n" + "".join(f"{a} = {json.dumps(b)}\n" for a, b in inner.items())
        out += _toml({a: b for a, b in v.items() if isinstance(b, dict)}, prefix=f"{name}.")
    return out


def score(est: np.ndarray, pts: np.ndarray | None, truth, views, names, fk, truth_R, common, common3d) -> dict:
    """Coordinates (RMSE per :data:`rtkin.sim.scoring.SCORED` coordinate and their mean, deg) and
    joint rotations (RMS per child body of :data:`JOINTS`, deg) over the ``common`` frames; 3D
    (median, mean, p95, mm) over the ``common3d`` frames."""
    sc = scoring.score(est, truth.motion.values, names, FPS, mask=common, fk=fk, truth_R=truth_R, joints=JOINTS)
    return {"coords": sc.rmse, "mean": sc.mean, "rot": {c: v[0] for c, v in sc.rotation.items()},
            "3d": median_3d(pts, views.truth_3d[:, 0], common3d) if pts is not None else (np.nan,) * 3}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="length of each session, s")
    ap.add_argument("--variants", action="store_true", help="also score Butterworth smoothing, IK stride 2/3, backward pass")
    ap.add_argument("--skip-pose2sim", action="store_true")
    ap.add_argument("--scenes", type=int, default=2, help="how many of the two bodies to run")
    ap.add_argument("--speed", action="store_true",
                    help="speed only: one scene, rtkin reprocess and Pose2Sim's pipeline on the same input, "
                         "no accuracy scoring")
    ap.add_argument("--quick", action="store_true", help="speed iteration: --speed without Pose2Sim")
    ap.add_argument("--repeat", type=int, default=2,
                    help="run the default reprocess this many times and keep the fastest (CPU) for the speed figures "
                         "(the first run in a fresh checkout also compiles and caches the Numba kernels)")
    ap.add_argument("--keep", default="", help="keep the work folder here")
    ap.add_argument("--tune-smoothing", action="store_true", help="RTS parameter sweep on the tuning scenes, then stop")
    args = ap.parse_args()
    if args.tune_smoothing:
        tune_smoothing()
        return
    if args.quick:
        args.speed, args.skip_pose2sim = True, True
    if args.speed:
        speed_only(args)
        return
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_reprocess_"))
    work.mkdir(parents=True, exist_ok=True)
    print("machine shared with other jobs: timings are noisy; ratios are measured in this run, one core "
          f"(BLAS/numba threads = {os.environ['OMP_NUM_THREADS']})")
    fk = scoring.BodyOrientations(FK_BODIES)
    checks = []
    try:
        for (label, factors), seed in list(zip(BODIES, SEEDS))[: args.scenes]:
            checks.append(run_scene(label, factors, seed, args, work / label.replace(" ", ""), fk))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print("\n=== acceptance over the scenes ===")
    for c in checks:
        print(c)


def run_scene(label: str, factors: dict, seed: int, args, work: Path, fk) -> str:
    from rtkin.offline.simulate import live_config, record_views

    work.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    scene, stature = make_scene(label, factors, seed, args.seconds)
    truth, views = scene.subject, scene.views
    T = views.n_frames
    names = list(truth.motion.names)
    rec = work / f"session_{label.replace(' ', '').replace('.', '')}.rtkrec"
    rec.unlink(missing_ok=True)
    for f in work.glob("*_scaled.osim"):
        f.unlink()
    record_views(rec, views, live_config(views, rec.stem, height_m=round(stature, 3)))
    print(f"\n##### body {label} (scaled model stature {stature:.3f} m), motion seed {seed}: {T} frames at {FPS:g} Hz, "
          f"demo rig, 3 px noise, 2 % outliers, 5 % dropouts, bystander in cam01/cam02; recorded live in "
          f"{time.perf_counter() - t:.1f} s -> {rec.name}")
    runs: dict[str, tuple] = {}
    wall, info = run_reprocess(rec, work / "rtkin", None)
    for _ in range(max(args.repeat, 1) - 1):  # a shared machine: keep the least disturbed run
        w2, i2 = run_reprocess(rec, work / "rtkin", None)
        if i2["cpu"] < info["cpu"]:
            wall, info = w2, i2
    cpu = info["cpu"]
    print(f"rtkin reprocess: {info['summary']} [process CPU {cpu:.2f} s]")
    print_speed_split(info["result"], cpu, wall)
    runs["rtkin"] = (work / "rtkin", wall)
    if args.variants:
        for vname, over in VARIANTS:
            w, inf = run_reprocess(rec, work / f"rtkin_{vname.replace(' ', '_')}", over)
            print(f"  variant {vname}: {inf['summary']}")
            runs[vname] = (work / f"rtkin_{vname.replace(' ', '_')}", w)
    estimates, points = {}, {}
    for k, (d, _) in runs.items():
        estimates[k] = ba._mot_on_frames(next(d.glob("*_person*.mot")), names, T, FPS)[0]
        points[k] = trc_points(next(d.glob("*_person*.trc")), truth.keypoint_names, T)
    p2s_wall = p2s_cpu = None
    if not args.skip_pose2sim:
        for key, sc, sub in (("P2S", scene, "p2s_same_input"), ("P2S alone", subject_only(scene), "p2s_alone")):
            p2s, tm, info = run_pose2sim(sc, work / sub)
            wall_used = sum(tm[f"{k}_s"] for k in P2S_STEPS)
            if key == "P2S":
                p2s_wall, p2s_cpu = wall_used, sum(tm[f"{k}_cpu_s"] for k in P2S_STEPS)
            what = "every detection (subject and bystander)" if key == "P2S" else "the subject's detections only"
            print(f"Pose2Sim offline on {what} (triangulation + filtering + kinematics): {wall_used:.1f} s "
                  f"(+ JSON {info['write_json_s']:.1f} s); .mot frames with angles {info['rows']} ({info['first']}.."
                  f"{info['last']} of 0..{T - 1}); scaled model (truth): {info['scales']}")
            estimates[key] = p2s
            points[key] = trc_points(info["filtered_trc"], truth.keypoint_names, T)
    rows = list(scoring.SCORED)
    idx = [names.index(c) for c in rows]
    common = np.ones(T, dtype=bool)
    for e in estimates.values():
        common &= np.isfinite(e[:, idx]).all(1)
    common3d = np.ones(T, dtype=bool)
    for p in points.values():
        common3d &= np.isfinite(p).any((-1, -2))
    truth_R = fk(truth.motion.values, names)
    scores = {k: score(estimates[k], points.get(k), truth, views, names, fk, truth_R, common, common3d)
              for k in estimates}
    report(scores, rows, int(common.sum()), int(common3d.sum()), T)
    # acceptance
    rt = scores["rtkin"]
    lines = [f"[{label}] mean coordinate RMSE {rt['mean']:.2f} deg (<= 2.0: {'PASS' if rt['mean'] <= 2.0 else 'FAIL'})"]
    for ref, what in (("P2S", "same input"), ("P2S alone", "Pose2Sim given the subject's detections only")):
        if ref not in scores:
            continue
        worse = [j for j, v in rt["rot"].items() if not v < scores[ref]["rot"][j]]
        lines.append(f"[{label}] joint rotation RMS below Pose2Sim's on every joint ({what}): "
                     f"{'PASS' if not worse else 'FAIL ' + ', '.join(worse)}")
        lines.append(f"[{label}] 3D median {rt['3d'][0]:.2f} mm vs Pose2Sim filtered {scores[ref]['3d'][0]:.2f} mm ({what}): "
                     f"{'PASS' if rt['3d'][0] <= scores[ref]['3d'][0] else 'FAIL'}")
    dur = T / FPS
    speed = (f"[{label}] speed, one core: {dur:.0f} s session reprocessed in {cpu:.2f} s CPU = {dur / cpu:.1f}x real time "
             f"(>= 20: {'PASS' if dur / cpu >= 20 else 'FAIL'}); wall {wall:.2f} s = {dur / wall:.1f}x on a shared machine")
    if p2s_wall:
        speed += (f"; Pose2Sim's pipeline on the same input: {p2s_wall:.1f} s wall (triangulation + filtering + "
                  f"kinematics) = {p2s_wall / wall:.1f}x rtkin's wall time; {p2s_cpu:.1f} s CPU = {p2s_cpu / cpu:.1f}x rtkin's "
                  f"CPU time")
    lines.append(speed)
    for v in runs:
        if v != "rtkin":
            lines.append(f"[{label}] variant {v}: mean RMSE {scores[v]['mean']:.2f} deg, 3D median {scores[v]['3d'][0]:.2f} mm, "
                         f"{dur / runs[v][1]:.1f}x real time")
    for l in lines:
        print(l)
    return "\n".join(lines)


def speed_only(args) -> None:
    """One scene (the first body, its motion seed): recorded live, reprocessed (``--repeat``
    times, the least CPU kept), then Pose2Sim's triangulation + filtering + kinematics on the
    same 2D detections (every person, OpenPose JSON), in this process; CPU-time ratios."""
    from rtkin.offline.simulate import live_config, record_views

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_reprocess_speed_"))
    work.mkdir(parents=True, exist_ok=True)
    label, factors = BODIES[0]
    try:
        print("machine shared with other jobs: CPU times are less disturbed than wall times; ratios measured in this "
              f"run, one core (BLAS/numba threads = {os.environ['OMP_NUM_THREADS']})")
        scene, stature = make_scene(label, factors, SEEDS[0], args.seconds)
        views = scene.views
        rec = work / "session_speed.rtkrec"
        rec.unlink(missing_ok=True)
        record_views(rec, views, live_config(views, rec.stem, height_m=round(stature, 3)))
        dur = views.n_frames / FPS
        best = None
        for _ in range(max(args.repeat, 1)):
            wall, info = run_reprocess(rec, work / "rtkin", None)
            if best is None or info["cpu"] < best[1]["cpu"]:
                best = (wall, info)
        wall, info = best
        cpu = info["cpu"]
        print(f"rtkin reprocess: {info['summary']}")
        print_speed_split(info["result"], cpu, wall)
        line = (f"speed, one core: {dur:.0f} s session reprocessed in {cpu:.2f} s CPU = {dur / cpu:.1f}x real time "
                f"(>= 20: {'PASS' if dur / cpu >= 20 else 'FAIL'})")
        if not args.skip_pose2sim:
            _, tm, _ = run_pose2sim(scene, work / "p2s")
            p_cpu, p_wall = sum(tm[f"{k}_cpu_s"] for k in P2S_STEPS), sum(tm[f"{k}_s"] for k in P2S_STEPS)
            print("Pose2Sim's pipeline on the same input (every detection), in this process: "
                  + ", ".join(f"{k} {tm[f'{k}_cpu_s']:.2f} s CPU" for k in P2S_STEPS)
                  + f" = {p_cpu:.2f} s CPU ({p_wall:.2f} s wall) = {dur / p_cpu:.2f}x real time")
            line += f"; Pose2Sim {p_cpu:.2f} s CPU = {p_cpu / cpu:.1f}x rtkin's CPU time"
        print(line)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def tune_smoothing(seconds: float = 12.0) -> None:
    """3D error (median / p95, mm) of smoothed raw triangulation on the tuning scenes."""
    from rtkin.reconstruct.filters import FilterSettings
    from rtkin.reconstruct.health import HealthSettings
    from rtkin.reconstruct.pipeline import Pipeline
    from rtkin.reconstruct.reconstructor import ReconstructionSettings
    from rtkin.reconstruct.smoothing import SmoothingSettings, point_weights, smooth

    cands = [("butterworth 6 Hz", SmoothingSettings(kind="butterworth"))]
    cands += [(f"rts {j:g} / {n:g}", SmoothingSettings(jerk_psd=j, noise_m=n))
              for j in (5e3, 1e4, 2e4) for n in (0.008, 0.012, 0.016, 0.02)]
    out: dict[str, list] = {k: [] for k, _ in cands}
    for seed in (0, 3):
        truth = virtual.simulate_subject(virtual.MotionSettings(duration_s=seconds, fps=FPS, seed=seed))
        by = virtual.bystander(seed=seed + 7, duration_s=seconds, fps=FPS)
        views = virtual.render_views(virtual.demo_rig(), [truth, by], seed=11 + seed, visible_in={1: ["cam01", "cam02"]})
        recon = ReconstructionSettings(filter=FilterSettings(kind="none"), health=HealthSettings(enabled=False))
        sks = Pipeline(views.rig, "HALPE_26", reconstruction=recon, clock_ns=None).run(virtual.arrival_order(views, seed=2))
        T, K = views.n_frames, 26
        P, S, V, E = np.full((T, K, 3), np.nan), np.zeros((T, K)), np.zeros((T, K)), np.full((T, K), np.nan)
        for sk in sks:
            f = int(round((sk.time_ns - views.time_ns[0]) * FPS / 1e9))
            if sk.n_people and 0 <= f < T:
                P[f], S[f], V[f], E[f] = sk.points[0], sk.scores[0], sk.n_views[0], sk.reproj_error_px[0]
        for name, st in cands:
            X = smooth(P, point_weights(S, V, E, P, st), FPS, st)
            d = np.linalg.norm(X - views.truth_3d[:, 0], axis=-1)
            d = d[np.isfinite(d)] * 1e3
            out[name].append((np.median(d), np.percentile(d, 95)))
    print("tuning scenes (generic body, motion seeds 0 and 3, bystander): 3D error median / p95, mm")
    for name, v in out.items():
        print(f"{name:<22}" + "  ".join(f"{a:.2f} / {b:.2f}" for a, b in v)
              + f"   mean {np.mean([a for a, _ in v]):.2f} / {np.mean([b for _, b in v]):.2f}")


def report(scores: dict, rows: list[str], n_common: int, n3d: int, T: int) -> None:
    labels = list(scores)
    w = max(12, max(len(l) for l in labels) + 2)
    print(f"\nCoordinate RMSE vs truth, deg ({n_common} common frames of {T}), from the written MOT files")
    print(f"{'coordinate':<22}" + "".join(f"{l:>{w}}" for l in labels))
    for c in rows:
        print(f"{c:<22}" + "".join(f"{ba._fmt(scores[l]['coords'][c], w)}" for l in labels))
    print(f"{'MEAN':<22}" + "".join(f"{scores[l]['mean']:{w}.2f}" for l in labels))
    print("\nJoint rotation RMS, deg (angle of R_truth^T R_est of each child body in its parent)")
    for j in scores[labels[0]]["rot"]:
        print(f"{ROT_LABELS.get(j, j):<22}" + "".join(f"{scores[l]['rot'][j]:{w}.2f}" for l in labels))
    print(f"\n3D median error of the written TRC vs truth, mm ({n3d} common frames)")
    for i, what in enumerate(("median", "mean", "p95")):
        print(f"{what:<22}" + "".join(f"{scores[l]['3d'][i]:{w}.2f}" for l in labels))


if __name__ == "__main__":
    main()
