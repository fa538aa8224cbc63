"""Marker augmentation: cost against Pose2Sim's way, and what it does to the joint angles.

1. Cost per person-frame, both LSTMs (lower + upper) on the virtual subject (HALPE_26), in one
   process: rtkin's streaming stage (``MarkerAugmenter.augment``: features, both LSTM steps,
   confidence) and its two LSTM steps alone, against Pose2Sim's way of running it live (the
   realtime forks): onnxruntime on the last 60 frames, every frame, both models; and onnxruntime
   over the whole sequence once (Pose2Sim offline), per frame.
2. Truth scenes (the virtual subject, bodies and motions unlike the defaults): 2D views with
   noise, outliers, dropouts -> the live pipeline -> LiveKinematics (online scaling on, as
   ``rtkin run``), with and without ``augment``. Printed: RMSE of the joint angles against the
   driving coordinates (deg), the IK marker RMS (all tracked markers, and the keypoint markers
   alone), the augmented markers' distance to the same markers on the truth model, IK cost.
3. The real demo keypoints (Pose2Sim demo, COCO_17 from MoveNet, 100 frames, no truth): the
   same with and without ``augment`` (scaling off: 1.7 s is too short to scale; the subject's
   height 1.72 m). COCO_17 has no heels or toes: only the upper (arm) model runs, as in
   Pose2Sim. Printed: joint angles (mean over frames), their difference, the frame-to-frame
   jitter (RMS second difference), the IK marker RMS.
4. End to end (``--e2e``): the live processes as ``rtkin run`` starts them (``bench_ik.py
   --e2e``'s set-up, 1 person, 4 cameras at 60 Hz), augment off / on alternated (``--e2e-pairs``): last camera
   frame in -> JointAngles out, p50 / p99.

The machine is shared: absolute times are noisy; compare the figures of one run.

Usage: python benchmarks/bench_augment.py [--seconds 10] [--e2e] [--e2e-seconds 20] [--e2e-pairs 3]
       [--skip-scenes]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from rtkin.core.frames import OSIM_FROM_WORLD, WORLD_FROM_OSIM
from rtkin.core.messages import Skeleton3D
from rtkin.core.skeletons import get_skeleton
from rtkin.kinematics import augment as A
from rtkin.kinematics.ik import IKSettings
from rtkin.kinematics.live import LiveKinematics, LiveKinematicsSettings, scaling_state
from rtkin.reconstruct.pipeline import Pipeline
from rtkin.sim import virtual

FPS = 60.0
#: coordinate -> column label
REPORT = {"pelvis_tilt": "tilt", "pelvis_list": "list", "hip_flexion_r": "hipflx", "hip_adduction_r": "hipadd",
          "hip_rotation_r": "hiprot", "knee_angle_r": "knee", "ankle_angle_r": "ankle", "L5_S1_Flex_Ext": "lumb",
          "arm_flex_r": "armflx", "arm_add_r": "armadd", "arm_rot_r": "armrot", "elbow_flex_r": "elbow"}


# ============================================================================ 1. cost


def _messages(points: np.ndarray, skeleton: str) -> list[Skeleton3D]:
    k = points.shape[1]
    return [Skeleton3D(int(f * 1e9 / FPS), int(f * 1e9 / FPS), skeleton, np.array([0]), points[f][None],
                       np.ones((1, k), np.float32), np.ones((1, k), np.float32), np.full((1, k), 4, np.uint8))
            for f in range(len(points))]


def _pose2sim_inputs(points: np.ndarray, model: A.AugmenterModel, height: float, mass: float = 70.0) -> np.ndarray:
    """(T, F) float32 normalised inputs exactly as Pose2Sim builds them from its TRC."""
    sk = get_skeleton("HALPE_26")
    P = points @ OSIM_FROM_WORLD.T
    hip = P[:, sk.index("Hip")]
    F = np.stack([P[:, sk.index(n)] - hip for n in model.features], 1).reshape(len(P), -1) / height
    X = np.concatenate([F, np.full((len(P), 1), height), np.full((len(P), 1), mass)], 1)
    return ((X - model.mean) / model.std).astype(np.float32)


def bench_cost(seconds: float) -> None:
    import onnxruntime as ort

    truth = virtual.simulate_subject(virtual.MotionSettings(duration_s=seconds, fps=FPS, seed=3))
    pts = truth.keypoints_for("HALPE_26")
    msgs = _messages(pts, "HALPE_26")
    models = A.load_models()
    h = A.estimate_height(pts, "HALPE_26")
    stage = A.MarkerAugmenter("HALPE_26", A.AugmentSettings(height_m=h))
    for m in msgs[:30]:  # warm-up
        stage.augment(m)
    stage.reset()
    t_stage = []
    for m in msgs:
        t = time.perf_counter()
        stage.augment(m)
        t_stage.append(time.perf_counter() - t)
    X = [_pose2sim_inputs(pts, m, h) for m in models]
    states = [m.net.new_state() for m in models]
    t_net = []
    for f in range(len(pts)):
        t = time.perf_counter()
        for m, x, s in zip(models, X, states):
            m.net.step(x[f], s)
        t_net.append(time.perf_counter() - t)
    sessions = [ort.InferenceSession(str(m.onnx_path), providers=["CPUExecutionProvider"]) for m in models]
    one = ort.SessionOptions()
    one.intra_op_num_threads = one.inter_op_num_threads = 1
    single = [ort.InferenceSession(str(m.onnx_path), one, providers=["CPUExecutionProvider"]) for m in models]

    def window(sess) -> list[float]:
        out = []
        for f in range(len(pts)):
            t = time.perf_counter()
            for s, x in zip(sess, X):
                s.run(["output_0"], {"inputs": x[max(0, f - 59):f + 1][None]})
            out.append(time.perf_counter() - t)
        return out

    t_win, t_win1 = window(sessions), window(single)
    t = time.perf_counter()
    for s, x in zip(sessions, X):
        s.run(["output_0"], {"inputs": x[None]})
    t_whole = (time.perf_counter() - t) / len(pts)
    ms = lambda v: np.percentile(np.asarray(v) * 1e3, [50, 99])  # noqa: E731
    (s50, s99), (n50, n99), (w50, w99), (v50, v99) = ms(t_stage), ms(t_net), ms(t_win), ms(t_win1)
    print(f"1. cost per person-frame, both LSTMs ({len(pts)} frames of the virtual subject, HALPE_26), ms p50 / p99:")
    print(f"   rtkin streaming stage (features + 2 LSTM steps + confidence) {s50:6.3f} / {s99:6.3f}   "
          f"(budget 0.5 ms p50: {'PASS' if s50 <= 0.5 else 'FAIL'})")
    print(f"   of which the two LSTM steps                               {n50:6.3f} / {n99:6.3f}")
    print(f"   Pose2Sim live way: onnxruntime on a 60-frame window        {w50:6.3f} / {w99:6.3f}   "
          f"-> rtkin is {w50 / s50:.0f}x faster (p50)")
    print(f"     same, onnxruntime on one thread (no contention)          {v50:6.3f} / {v99:6.3f}   "
          f"-> rtkin is {v50 / s50:.0f}x faster (p50)")
    print(f"   Pose2Sim offline: onnxruntime over the whole sequence once {t_whole * 1e3:6.3f} per frame (not causal-live)")


# ============================================================================ 2. truth scenes


@dataclasses.dataclass(frozen=True)
class Scene:
    name: str
    factors: dict
    motion: virtual.MotionSettings
    ring: int = 0  # 0 = the Pose2Sim demo rig, else a ring of n cameras


def scenes(seconds: float) -> list[Scene]:
    tall = {"pelvis": 1.06, "femur_r": 1.1, "femur_l": 1.1, "tibia_r": 1.12, "tibia_l": 1.12, "torso": 1.05,
            "humerus_r": 1.08, "humerus_l": 1.08, "ulna_r": 1.06, "ulna_l": 1.06, "radius_r": 1.06,
            "radius_l": 1.06, "calcn_r": 1.05, "calcn_l": 1.05, "head": 1.03}
    small = {b: 0.9 for b in tall} | {"torso": 0.93, "head": 0.95}
    return [
        Scene("tall, squat/arm raise/walk, turned, demo rig", tall,
              virtual.MotionSettings(duration_s=seconds, seed=5, segments=("squat", "arm_raise", "walk"),
                                     segments_s=(3.0, 3.0, 4.0), heading_rad=2.2, amplitude=1.15)),
        Scene("small, walking a 1 m circle + stand, 6-camera ring", small,
              virtual.MotionSettings(duration_s=seconds, seed=9, segments=("walk", "stand", "arm_raise"),
                                     segments_s=(4.0, 2.0, 3.0), orbit_radius_m=1.0, orbit_period_s=-9.0,
                                     center_m=(0.0, 0.0)), ring=6),
    ]


def truth_lstm_markers(factors: dict, motion) -> np.ndarray:
    """(T, 43, 3) world positions of Markers_LSTM.xml's markers on the scaled truth model."""
    import opensim as osim

    from rtkin.kinematics.model import apply_scale
    from rtkin.sim.virtual import _load_model, fk_markers

    model = _load_model()
    ms = osim.MarkerSet(str(A.lstm_marker_set_path()))
    for i in range(ms.getSize()):
        model.addMarker(ms.get(i).clone())
    model.finalizeConnections()
    state = apply_scale(model, factors)
    return fk_markers(model, state, motion, A.AUGMENTED_MARKERS) @ WORLD_FROM_OSIM.T


class Run:
    """One LiveKinematics pass over a Skeleton3D stream, recording angles and marker residuals."""

    def __init__(self, sks: list[Skeleton3D], t0_ns: int, n_frames: int, augment: bool, scaling: bool,
                 skeleton: str, height_m: float = 0.0):
        self.names: list[str] = []
        self.values = np.full((n_frames, 0), np.nan)
        self.rms_all, self.rms_kp, self.ik_ms = [], [], []
        self.scaled_frame = None
        self.aug = np.full((n_frames, len(A.AUGMENTED_MARKERS), 3), np.nan)
        with tempfile.TemporaryDirectory(prefix="rtkin_bench_aug_") as tmp:
            lk = LiveKinematics(LiveKinematicsSettings(scaling=scaling, augment=augment, height_m=height_m),
                                IKSettings(skeleton=skeleton), tmp, log=lambda *a: None)
            n_kp = len(get_skeleton(skeleton).markers)
            for sk in sks:
                if sk.n_people == 0:
                    continue
                sk = sk.select([0])
                f = int(round((sk.time_ns - t0_ns) * FPS / 1e9))
                t = time.perf_counter()
                out = lk(sk)
                self.ik_ms.append((time.perf_counter() - t) * 1e3)
                if out and 0 <= f < n_frames:
                    self._record(lk, sk, out[0], f, n_frames, n_kp)
                while lk.pending:  # offline: each model switch completes at once (same frames in both runs)
                    lk.step()
                if out and self.scaled_frame is None and scaling_state(out[0].flags) in ("PARTIAL", "SCALED"):
                    self.scaled_frame = f  # the first frame on a model scaled per segment

    def _record(self, lk: LiveKinematics, sk: Skeleton3D, ja, f: int, n_frames: int, n_kp: int) -> None:
        if not self.names:
            self.names = list(ja.names)
            self.values = np.full((n_frames, len(self.names)), np.nan)
        self.values[f] = ja.values
        self.rms_all.append(ja.marker_rms_m)
        solver = lk.ik.solver(ja.person_id)  # the keypoint markers' residuals of this solution
        x, _ = solver.markers_from_points(sk.points[0])
        d = np.linalg.norm(solver._markers_prev[:n_kp] - x[:n_kp], axis=-1)[solver.used[:n_kp]]
        self.rms_kp.append(float(np.sqrt(np.mean(d ** 2))) if d.size else np.nan)
        if lk.augmented is not None:
            cols = [A.AUGMENTED_MARKERS.index(n) for n in lk.augmenter.marker_names]
            self.aug[f, cols] = lk.augmented.points[0]

    def angle(self, name: str) -> np.ndarray:
        return self.values[:, self.names.index(name)]


def _rmse_deg(est: np.ndarray, truth: np.ndarray, frames: np.ndarray) -> float:
    d = (est[frames] - truth[frames] + np.pi) % (2 * np.pi) - np.pi
    d = d[np.isfinite(d)]
    return float(np.degrees(np.sqrt(np.mean(d ** 2)))) if d.size else float("nan")


def bench_scene(sc: Scene) -> None:
    from rtkin.sim.scaled import simulate_scaled_subject

    truth = simulate_scaled_subject(sc.factors, sc.motion)
    rig = virtual.ring_rig(sc.ring, radius_m=4.0) if sc.ring else virtual.demo_rig()
    cs = virtual.CorruptionSettings(noise_px=3.0, outlier_rate=0.02, dropout_rate=0.05)
    views = virtual.render_views(rig, truth, skeleton="HALPE_26", corruption=cs, seed=17)
    sks = Pipeline(rig, "HALPE_26", clock_ns=None).run(virtual.arrival_order(views, seed=4))
    T = views.n_frames
    stature = A.estimate_height(truth.keypoints_for("HALPE_26"), "HALPE_26")
    runs = {aug: Run(sks, views.time_ns[0], T, aug, True, "HALPE_26") for aug in (False, True)}
    scaled = max((r.scaled_frame or T) for r in runs.values())
    frames = np.arange(T) >= scaled
    print(f"\n2. truth scene: {sc.name}; {T} frames, stature {stature:.2f} m (keypoint estimate); "
          f"both runs scaled from frame {scaled}; errors over the {frames.sum()} frames after")
    head = "   augment  " + " ".join(f"{v:>6}" for v in REPORT.values())
    print(head + "   mean | marker RMS all / keypoints mm | IK ms p50 / p99")
    for aug, r in runs.items():
        errs = [_rmse_deg(r.angle(n), truth.motion[n], frames) for n in REPORT]
        print(f"   {'on ' if aug else 'off'}      " + " ".join(f"{e:6.2f}" for e in errs)
              + f"  {np.nanmean(errs):5.2f} | {np.nanmedian(r.rms_all) * 1e3:6.1f} / {np.nanmedian(r.rms_kp) * 1e3:5.1f}"
              + f"            | {np.percentile(r.ik_ms, 50):5.2f} / {np.percentile(r.ik_ms, 99):5.2f}")
    ref = truth_lstm_markers(sc.factors, truth.motion)
    d = np.linalg.norm(runs[True].aug - ref, axis=-1)  # (T, 43)
    groups = {"pelvis (ASIS/PSIS/HJC)": ("ASIS", "PSIS", "HJC"), "knees": ("knee",), "ankles": ("ankle",),
              "feet": ("toe", "5meta", "calc"), "thigh/shank clusters": ("thigh", "_sh"),
              "shoulders/C7": ("shoulder", "C7"), "elbows": ("elbow",), "wrists": ("wrist",)}
    parts = []
    for g, keys in groups.items():
        cols = [i for i, n in enumerate(A.AUGMENTED_MARKERS) if any(k in n for k in keys)]
        parts.append(f"{g} {np.nanmedian(d[frames][:, cols]) * 1e3:.0f}")
    print("   augmented markers vs the same markers on the truth model, median mm: " + ", ".join(parts))


# ============================================================================ 3. real demo


def bench_real() -> None:
    from rtkin.capture.keypoints import OpenPoseSourceSettings, openpose_frames

    root = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "pose2sim_demo_single_coco17"
    if not root.is_dir():
        print(f"\n3. real demo keypoints: not found at {root}, skipped")
        return
    rig = virtual.demo_rig()
    frames = {c: openpose_frames(OpenPoseSourceSettings(), root, c, "COCO_17", FPS) for c in rig.names}
    events = sorted(((f.capture_ns + 1_000_000 + 1000 * i, f) for i, c in enumerate(rig.names) for f in frames[c]),
                    key=lambda e: e[0])
    sks = Pipeline(rig, "COCO_17", clock_ns=None).run(events)
    sks = [sk for sk in sks if sk.n_people]
    T = 100
    t0 = min(sk.time_ns for sk in sks)
    runs = {aug: Run(sks, t0, T, aug, False, "COCO_17", height_m=1.72) for aug in (False, True)}
    print(f"\n3. real demo keypoints (COCO_17 MoveNet, {len(sks)} frames with the subject; no truth; "
          f"upper model only); generic model, height 1.72 m")
    print("   augment  " + " ".join(f"{v:>6}" for v in REPORT.values()) + "  | marker RMS all / keypoints mm")
    for aug, r in runs.items():
        mean = [np.degrees(np.nanmean(r.angle(n))) for n in REPORT]
        print(f"   {'on ' if aug else 'off'} mean " + " ".join(f"{m:6.1f}" for m in mean)
              + f"  | {np.nanmedian(r.rms_all) * 1e3:6.1f} / {np.nanmedian(r.rms_kp) * 1e3:5.1f}")
    diff = [np.degrees(np.sqrt(np.nanmean((runs[True].angle(n) - runs[False].angle(n)) ** 2))) for n in REPORT]
    print("   RMS on-off " + " ".join(f"{d:6.2f}" for d in diff))
    for aug, r in runs.items():
        jit = [np.degrees(np.sqrt(np.nanmean(np.diff(r.angle(n), 2) ** 2))) for n in REPORT]
        print(f"   jitter {'on ' if aug else 'off'} " + " ".join(f"{j:6.2f}" for j in jit)
              + "   (RMS 2nd difference per frame, deg)")


# ============================================================================ 4. end to end


def _e2e(seconds: float, augment: bool) -> tuple[float, float, int, float]:
    from rtkin.demo import synthetic_config
    from rtkin.runtime.config import TransportSettings
    from rtkin.runtime.runner import Runner

    with tempfile.TemporaryDirectory(prefix="rtkin_bench_e2e_") as tmp:
        cfg = synthetic_config(tmp, duration_s=seconds, bystander=False)
        ipc = TransportSettings(keypoints=f"ipc://{tmp}/kp.sock", outputs=f"ipc://{tmp}/out.sock",
                                angles=f"ipc://{tmp}/ja{{worker}}.sock")  # never the shared default ports
        cfg = dataclasses.replace(cfg, transport=ipc, ik=dataclasses.replace(cfg.ik, augment=augment))
        res = Runner(cfg, log=lambda *a: None).run()
    from rtkin.core.stats import histogram_percentiles, merge_histograms

    hist = merge_histograms(v.get("e2e_hist") for k, v in res.reports.items() if k.startswith("ik:"))
    ik = [v["timing_ms"]["p50"] for k, v in res.reports.items() if k.startswith("ik:") and v["timing_ms"].get("n")]
    if not hist["n"]:
        return float("nan"), float("nan"), 0, float("nan")
    exact = [v["e2e_ms"] for k, v in res.reports.items() if k.startswith("ik:") and v.get("e2e_ms", {}).get("n")]
    if len(exact) == 1 and exact[0]["n"] == hist["n"]:  # one worker kept every sample: exact percentiles
        p50, p99 = exact[0]["p50"], exact[0]["p99"]
    else:  # several workers: their histograms (6 % bins)
        p50, p99 = histogram_percentiles(hist, (50, 99), scale=1e3)
    return float(p50), float(p99), int(hist["n"]), float(ik[0]) if ik else float("nan")


def bench_e2e(seconds: float, pairs: int = 2) -> None:
    print(f"\n4. end to end, live processes (1 person, 4 cameras, 60 Hz, {seconds:g} s, scaling on): "
          "last camera frame in -> JointAngles out, ms")
    res = {False: [], True: []}
    for aug in (False, True) * pairs:
        p50, p99, n, ik = _e2e(seconds, aug)
        res[aug].append((p50, p99))
        print(f"   augment {'on ' if aug else 'off'}: n={n:5d}  p50 {p50:6.2f}  p99 {p99:7.2f}   "
              f"(IK worker per frame p50 {ik:5.2f})  load {os.getloadavg()[0]:.1f}")
    off99 = np.median([p for _, p in res[False]])
    on99 = np.median([p for _, p in res[True]])
    off50 = np.median([p for p, _ in res[False]])
    on50 = np.median([p for p, _ in res[True]])
    print(f"   median over the runs: p50 {off50:.2f} -> {on50:.2f} (+{on50 - off50:.2f}), p99 {off99:.2f} -> {on99:.2f} "
          f"(+{on99 - off99:.2f}); target p99 growth <= 1 ms: {'PASS' if on99 - off99 <= 1.0 else 'FAIL'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="length of the truth scenes and cost run, s")
    ap.add_argument("--e2e", action="store_true", help="also the multi-process end-to-end latency")
    ap.add_argument("--e2e-seconds", type=float, default=20.0)
    ap.add_argument("--e2e-pairs", type=int, default=3, help="off/on run pairs (alternated)")
    ap.add_argument("--skip-scenes", action="store_true", help="only the cost (and --e2e)")
    args = ap.parse_args()
    bench_cost(args.seconds)
    if not args.skip_scenes:
        for sc in scenes(args.seconds):
            bench_scene(sc)
        bench_real()
    if args.e2e:
        bench_e2e(args.e2e_seconds, args.e2e_pairs)


if __name__ == "__main__":
    main()
