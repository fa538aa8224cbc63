"""Joint-angle accuracy against the truth: rtkin live (causal) vs Pose2Sim offline, same 2D input.

The virtual subject (HALPE_26, Pose2Sim demo rig, 3 px noise, 2 % outliers, 5 % dropouts, 60 Hz,
subject only: one person per view) goes through

- rtkin, live and causal: frames in arrival order -> Pipeline (sync, triangulation, One-Euro)
  -> IKStage on the generic model ``Model_Pose2Sim_simple.osim`` (no scaling: the virtual subject
  is the generic model);
- Pose2Sim 0.10's own offline pipeline on the same 2D detections, written as OpenPose JSON with a
  Calib.toml in a temporary project: triangulation (``undistort_points = true``), filtering (its
  defaults: Hampel + Butterworth 6 Hz, zero lag, non-causal), kinematics (``use_augmentation =
  false``, ``use_simple_model = true``: the same model as the truth). Pose2Sim's kinematics always
  scales the model; its IK is therefore also run on the unscaled generic model (Pose2Sim's own
  ``perform_IK``, IK setup and marker set), the situation rtkin is in. Both are reported.

Printed: RMSE vs truth (deg) per coordinate, joint rotation angle errors (the angle of the relative
rotation truth -> estimate of pelvis->femur and torso->humerus, by OpenSim forward kinematics,
independent of the coordinate split), the issue's targets with pass/fail, and timings.
Frames are compared by frame index (Pose2Sim's filtering drops the last frame).

Usage: python benchmarks/bench_accuracy.py [--seconds 12] [--keep DIR] [--skip-pose2sim]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")  # Pose2Sim's filtering imports matplotlib: never a window

import numpy as np

from rtkin.core import assets

from rtkin.sim import virtual
from rtkin.core.calibration import write_calib_toml
from rtkin.kinematics.ik import IKSettings
from rtkin.kinematics.ik_stage import IKStage
from rtkin.reconstruct.pipeline import Pipeline

FPS = 60.0
TRANSLATIONS = ("pelvis_tx", "pelvis_ty", "pelvis_tz")
SKELETON = "HALPE_26"

#: (row label, right coordinate, left coordinate or None)
ROWS = (
    ("pelvis tilt", "pelvis_tilt", None),
    ("pelvis list", "pelvis_list", None),
    ("pelvis rotation", "pelvis_rotation", None),
    ("hip flexion", "hip_flexion_r", "hip_flexion_l"),
    ("hip adduction", "hip_adduction_r", "hip_adduction_l"),
    ("hip rotation", "hip_rotation_r", "hip_rotation_l"),
    ("knee", "knee_angle_r", "knee_angle_l"),
    ("ankle", "ankle_angle_r", "ankle_angle_l"),
    ("lumbar flexion", "L5_S1_Flex_Ext", None),
    ("shoulder flexion", "arm_flex_r", "arm_flex_l"),
    ("shoulder adduction", "arm_add_r", "arm_add_l"),
    ("elbow", "elbow_flex_r", "elbow_flex_l"),
)

#: joint rotation angles: (label, parent body, child bodies right/left)
JOINTS = (("hip (pelvis->femur)", "pelvis", ("femur_r", "femur_l")),
          ("shoulder (torso->hum)", "torso", ("humerus_r", "humerus_l")))

#: issue targets: label -> (coordinates, max RMSE deg)
TARGETS = (
    ("knee <= 3", ("knee_angle_r", "knee_angle_l"), 3.0),
    ("hip flexion <= 4", ("hip_flexion_r", "hip_flexion_l"), 4.0),
    ("ankle flexion <= 4", ("ankle_angle_r", "ankle_angle_l"), 4.0),
    ("pelvis <= 4", ("pelvis_tilt", "pelvis_list", "pelvis_rotation"), 4.0),
    ("elbow <= 5", ("elbow_flex_r", "elbow_flex_l"), 5.0),
)


# ============================================================================ input


def make_input(seconds: float):
    """Truth and the corrupted 2D views of the subject alone (one person per view)."""
    truth = virtual.simulate_subject(virtual.MotionSettings(duration_s=seconds, fps=FPS))
    rig = virtual.demo_rig()
    cs = virtual.CorruptionSettings(noise_px=3.0, outlier_rate=0.02, dropout_rate=0.05)
    views = virtual.render_views(rig, truth, skeleton=SKELETON, corruption=cs, seed=11)
    return truth, rig, views


# ============================================================================ rtkin


def run_rtkin(truth, rig, views) -> tuple[np.ndarray, dict]:
    """Live causal chain; (T, Q) estimates in the truth's coordinate order (rad, NaN = no output)."""
    names = list(truth.motion.names)
    T = views.n_frames
    est = np.full((T, len(names)), np.nan)
    t0 = time.perf_counter()
    pipe = Pipeline(rig, SKELETON, clock_ns=None)
    stage = IKStage(IKSettings())
    t_setup = time.perf_counter() - t0
    t_pipe, t_ik, n_out = [], [], 0
    arrivals = virtual.arrival_order(views, seed=2)
    t_start = time.perf_counter()

    def handle(sks):
        nonlocal n_out
        for sk in sks:
            if sk.n_people == 0:
                continue
            t = time.perf_counter()
            out = stage(sk)
            t_ik.append(time.perf_counter() - t)
            if not out:
                continue
            ja = out[0]
            f = int(round((sk.time_ns - views.time_ns[0]) * FPS / 1e9))
            if 0 <= f < T:
                idx = [names.index(n) for n in ja.names if n in names]
                est[f, idx] = np.asarray(ja.values)[[i for i, n in enumerate(ja.names) if n in names]]
                n_out += 1

    for recv, frame in arrivals:
        t = time.perf_counter()
        sks = pipe.push(frame, recv)
        t_pipe.append(time.perf_counter() - t)
        handle(sks)
    handle(pipe.flush())
    wall = time.perf_counter() - t_start
    timing = {"setup_s": t_setup, "wall_s": wall, "frames_out": n_out,
              "pipeline_ms_per_2d_frame": np.percentile(np.array(t_pipe) * 1e3, [50, 99]),
              "ik_ms_per_frame": np.percentile(np.array(t_ik) * 1e3, [50, 99])}
    return est, timing


# ============================================================================ Pose2Sim


def write_openpose(views, pose_dir: Path) -> None:
    """The subject's detections as OpenPose JSON: ``pose/camXX_json/camXX_NNNNNN.json``."""
    kp = views.keypoints_of(0)  # (C, T, K, 3), score 0 where not detected
    for c, cam in enumerate(views.rig.names):
        d = pose_dir / f"{cam}_json"
        d.mkdir(parents=True, exist_ok=True)
        for t in range(views.n_frames):
            pts = kp[c, t].astype(np.float64)
            pts[pts[:, 2] <= 0] = 0.0
            people = [] if not (pts[:, 2] > 0).any() else [{"person_id": [-1],
                                                            "pose_keypoints_2d": [round(float(v), 4) for v in pts.ravel()]}]
            (d / f"{cam}_{t:06d}.json").write_text(json.dumps({"version": 1.3, "people": people}))


def pose2sim_config(project: Path) -> dict:
    """Pose2Sim's demo Config.toml, adjusted to run offline on the virtual subject."""
    import Pose2Sim
    import rtoml

    cfg = rtoml.load(Path(Pose2Sim.__file__).parent / "Demo_SinglePerson" / "Config.toml")
    cfg["project"].update(project_dir=str(project), multi_person=False, frame_rate=int(FPS), frame_range="all",
                          participant_height="auto", participant_mass=70.0)
    cfg["pose"].update(pose_model="HALPE_26", display_detection=False, save_video="none")
    cfg["triangulation"].update(undistort_points=True, make_c3d=False)
    cfg["filtering"].update(display_figures=False, save_filt_plots=False, make_c3d=False)
    cfg["markerAugmentation"].update(make_c3d=False)
    cfg["kinematics"].update(use_augmentation=False, use_simple_model=True, filter_ik=False,
                             remove_individual_scaling_setup=True, remove_individual_ik_setup=True)
    cfg["logging"] = {"use_custom_logging": True}
    return cfg


def read_mot(path: Path) -> tuple[np.ndarray, list[str], np.ndarray, bool]:
    """(T,) time s, column names, (T, Q) values, inDegrees."""
    lines = path.read_text().splitlines()
    end = next(i for i, l in enumerate(lines) if l.strip().lower() == "endheader")
    in_deg = any(l.strip().lower() == "indegrees=yes" for l in lines[:end])
    cols = lines[end + 1].split("\t")
    data = np.array([[float(v) for v in l.split()] for l in lines[end + 2:] if l.strip()])
    return data[:, 0], [c.strip() for c in cols[1:]], data[:, 1:], in_deg


def mot_to_estimates(path: Path, names: list[str], T: int) -> tuple[np.ndarray, dict]:
    """A Pose2Sim .mot -> (T, Q) rad in the truth's order, rows by frame index (time * fps)."""
    t, cols, vals, in_deg = read_mot(path)
    est = np.full((T, len(names)), np.nan)
    frames = np.round(t * FPS).astype(int)
    ok = (frames >= 0) & (frames < T)
    for j, c in enumerate(cols):
        if c in names:
            v = vals[:, j]
            if in_deg and c not in TRANSLATIONS:
                v = np.radians(v)
            est[frames[ok], names.index(c)] = v[ok]
    return est, {"rows": len(t), "first": int(frames.min()), "last": int(frames.max()), "inDegrees": in_deg}


@contextlib.contextmanager
def _redirect_fds(path: Path):
    """Send fds 1 and 2 (Python and C++ output: Pose2Sim, tqdm, OpenSim's console log) to a file."""
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(path, "a") as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        try:
            with contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
                yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def run_pose2sim(truth, rig, views, workdir: Path) -> dict:
    """Pose2Sim triangulation, filtering, kinematics (scaled) + IK on the unscaled generic model."""
    import opensim
    import rtoml

    project = workdir / "p2s_trial"
    if project.exists():
        shutil.rmtree(project)
    (project / "calibration").mkdir(parents=True)
    write_calib_toml(rig, project / "calibration" / "Calib.toml")
    t = time.perf_counter()
    write_openpose(views, project / "pose")
    t_json = time.perf_counter() - t
    cfg = pose2sim_config(project)
    (project / "Config.toml").write_text(rtoml.dumps(cfg))

    log_path = workdir / "pose2sim_log.txt"
    handler = logging.FileHandler(log_path, mode="w")
    root = logging.getLogger()
    old_level, root.level = root.level, logging.INFO
    root.addHandler(handler)
    timing = {"write_json_s": t_json}
    config = {"project": {"project_dir": str(project)}}
    try:
        with _redirect_fds(workdir / "pose2sim_stdout.txt"):
            from Pose2Sim import Pose2Sim as P2S
            from Pose2Sim import kinematics as p2s_kin

            for step in ("triangulation", "filtering", "kinematics"):
                t = time.perf_counter()
                getattr(P2S, step)(config)
                timing[f"{step}_s"] = time.perf_counter() - t
            # the same IK, on the unscaled generic model (Pose2Sim's perform_IK, setup and markers)
            trc = next(f for f in (project / "pose-3d").glob("*.trc") if "_filt" in f.name)
            kin_u = project / "kinematics_unscaled"
            kin_u.mkdir(exist_ok=True)
            setup = p2s_kin.get_opensim_setup_dir()
            model = opensim.Model(str(p2s_kin.get_model_path(True, setup)))
            model.set_MarkerSet(opensim.MarkerSet(str(p2s_kin.get_markers_path("HALPE_26", setup))))
            model.initSystem()
            model.printToXML(str((kin_u / (trc.stem + ".osim")).resolve()))
            t = time.perf_counter()
            p2s_kin.perform_IK(trc, kin_u, setup, "HALPE_26", remove_IK_setup=True)
            timing["ik_unscaled_s"] = time.perf_counter() - t
    finally:
        root.removeHandler(handler)
        handler.close()
        root.level = old_level
        opensim.Logger.removeFileSink()
        opensim.Logger.setLevelString("error")
    names = list(truth.motion.names)
    T = views.n_frames
    mot_s = next((project / "kinematics").glob("*.mot"))
    mot_u = next(kin_u.glob("*.mot"))
    est_s, info_s = mot_to_estimates(mot_s, names, T)
    est_u, info_u = mot_to_estimates(mot_u, names, T)
    raw_trc = [f for f in (project / "pose-3d").glob("*.trc") if "_filt" not in f.name]
    scale_info = _scale_factors(project / "kinematics" / (mot_s.stem + ".osim"))
    return {"scaled": est_s, "unscaled": est_u, "info_scaled": info_s, "info_unscaled": info_u,
            "timing": timing, "trc": [f.name for f in raw_trc] + [trc.name], "scales": scale_info,
            "project": project, "log": log_path}


def _scale_factors(osim_path: Path) -> str:
    """Femur / humerus length ratios of a scaled model to the generic one (from joint offsets)."""
    import opensim

    if not osim_path.exists():
        return "n/a"
    gen = opensim.Model(str(assets.model_path()))
    sc = opensim.Model(str(osim_path))
    out = []
    for child, label in (("tibia_r", "femur"), ("talus_r", "tibia"), ("ulna_r", "humerus")):
        a, b = (_parent_offset(m, child) for m in (gen, sc))
        out.append(f"{label} {np.linalg.norm(b) / np.linalg.norm(a):.3f}" if a is not None and b is not None
                   else f"{label} ?")
    return ", ".join(out)


def _parent_offset(model, child: str):
    """Translation of the parent frame of the joint whose child body is ``child`` (m), or None."""
    js = model.getJointSet()
    for i in range(js.getSize()):
        j = js.get(i)
        if j.getChildFrame().findBaseFrame().getName() == child:
            return j.getParentFrame().findTransformInBaseFrame().p().to_numpy()
    return None


# ============================================================================ errors


def _wrap(x):
    return (x + np.pi) % (2 * np.pi) - np.pi


def rmse_deg(est: np.ndarray, truth_vals: np.ndarray, names: list[str], common: np.ndarray) -> dict[str, float]:
    """Per-coordinate RMSE (deg) over the frames in ``common`` (bool (T,))."""
    out = {}
    for j, n in enumerate(names):
        d = _wrap(est[common, j] - truth_vals[common, j])
        d = d[np.isfinite(d)]
        out[n] = float(np.degrees(np.sqrt(np.mean(d ** 2)))) if d.size else np.nan
    return out


class BodyOrientations:
    """OpenSim forward kinematics of the generic model: body rotations in ground per frame."""

    def __init__(self, bodies):
        import opensim

        opensim.Logger.setLevelString("error")
        self.model = opensim.Model(str(assets.model_path()))
        self.state = self.model.initSystem()
        cs = self.model.getCoordinateSet()
        self.coords = {cs.get(i).getName(): cs.get(i) for i in range(cs.getSize())}
        self.defaults = {n: c.getDefaultValue() for n, c in self.coords.items()}
        self.bodies = {b: self.model.getBodySet().get(b) for b in bodies}

    def __call__(self, values: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
        """(T, Q) coordinates -> body -> (T, 3, 3) rotation ground<-body (NaN rows where any NaN)."""
        T = values.shape[0]
        out = {b: np.full((T, 3, 3), np.nan) for b in self.bodies}
        for f in range(T):
            row = values[f]
            if not np.isfinite(row).all():
                continue
            for n, v in zip(names, row):
                if n in self.coords:
                    self.coords[n].setValue(self.state, float(v), False)
            self.model.realizePosition(self.state)
            for b, body in self.bodies.items():
                m = body.getTransformInGround(self.state).R().asMat33()
                out[b][f] = [[m.get(i, j) for j in range(3)] for i in range(3)]
        return out


def rotation_errors(fk: BodyOrientations, truth_R, est: np.ndarray, names: list[str], common) -> dict[str, float]:
    """RMS (and p95) angle of R_rel_truth^T R_rel_est per joint side, deg."""
    est_R = fk(np.where(common[:, None], est, np.nan), names)
    out = {}
    for label, parent, children in JOINTS:
        for child in children:
            rel_t = np.einsum("tji,tjk->tik", truth_R[parent], truth_R[child])
            rel_e = np.einsum("tji,tjk->tik", est_R[parent], est_R[child])
            d = np.einsum("tji,tjk->tik", rel_t, rel_e)
            cos = np.clip((np.trace(d, axis1=1, axis2=2) - 1) / 2, -1, 1)
            ang = np.degrees(np.arccos(cos))
            ang = ang[np.isfinite(ang)]
            out[child] = (float(np.sqrt(np.mean(ang ** 2))), float(np.percentile(ang, 95))) if ang.size else (np.nan, np.nan)
    return out


# ============================================================================ report


def _fmt(v, w=7) -> str:
    return f"{v:{w}.2f}" if np.isfinite(v) else f"{'-':>{w}}"


def print_report(systems: dict[str, dict], rot: dict[str, dict], n_common: int, T: int) -> None:
    labels = list(systems)
    w = 10
    head = f"{'RMSE vs truth (deg)':<22}" + "".join(f"{l + ' R':>{w + 2}}{l + ' L':>{w + 2}}" for l in labels)
    print(f"\nJoint angles, RMSE vs truth, deg ({n_common} common frames of {T}; R / L side)")
    print(head)
    print("-" * len(head))
    for label, r, l in ROWS:
        cells = ""
        for s in labels:
            cells += f"{_fmt(systems[s][r], w):>{w + 2}}" + (f"{_fmt(systems[s][l], w):>{w + 2}}" if l else f"{'':>{w + 2}}")
        print(f"{label:<22}{cells}")
    print("\nJoint rotation angle error (angle of R_truth^T R_est of the relative rotation), RMS / p95, deg")
    for label, parent, children in JOINTS:
        cells = ""
        for s in labels:
            for c in children:
                rms, p95 = rot[s][c]
                cells += f"{f'{rms:.2f}/{p95:.1f}':>{w + 2}}"
        print(f"{label:<22}{cells}")
    print("\nTargets (worst side / worst pelvis coordinate):")
    ref = next((l for l in labels if l.startswith("P2S")), None)
    print(f"{'target':<22}" + "".join(f"{l:>{w + 6}}" for l in labels))
    for label, coords, lim in TARGETS:
        cells = ""
        for s in labels:
            v = max(systems[s][c] for c in coords)
            cells += f"{f'{v:.2f} ' + ('PASS' if v <= lim else 'FAIL'):>{w + 6}}"
        print(f"{label:<22}{cells}")
    if ref is not None:
        print("  (P2S gen: Pose2Sim's triangulation + filtering + its IK on the generic, unscaled model, as rtkin;"
              " P2S scl: Pose2Sim's kinematics as it always runs, with its own scaling)")
        print("\nrtkin within 1 deg of Pose2Sim or better (every reported coordinate, each Pose2Sim variant):")
        for s in labels:
            if s == "rtkin":
                continue
            worse = [(c, systems["rtkin"][c] - systems[s][c]) for _, r, l in ROWS for c in (r, l) if c
                     if systems["rtkin"][c] > systems[s][c] + 1.0]
            print(f"  vs {s:<12} {'PASS' if not worse else 'FAIL'}"
                  + ("" if not worse else ": " + ", ".join(f"{c} +{d:.1f}" for c, d in worse)))


def _best_lag(est: np.ndarray, truth_vals: np.ndarray, j: int, common: np.ndarray, max_lag: int = 10) -> str:
    """'lag L frames: RMSE' for the delay L in 0..max_lag (estimate behind truth) minimising RMSE."""
    best = None
    for lag in range(max_lag + 1):
        e = est[lag:, j] - truth_vals[: len(truth_vals) - lag, j]
        e = e[common[lag:] & np.isfinite(e)]
        r = float(np.degrees(np.sqrt(np.mean(e ** 2))))
        if best is None or r < best[1]:
            best = (lag, r)
    return f"lag {best[0]} frames: {best[1]:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=12.0, help="length of the virtual session, s")
    ap.add_argument("--keep", type=str, default="", help="keep the Pose2Sim project in this folder")
    ap.add_argument("--skip-pose2sim", action="store_true", help="rtkin only")
    args = ap.parse_args()

    t = time.perf_counter()
    truth, rig, views = make_input(args.seconds)
    T = views.n_frames
    names = list(truth.motion.names)
    print(f"virtual subject: {T} frames at {FPS:g} Hz ({args.seconds:g} s), {SKELETON}, demo rig "
          f"{', '.join(rig.names)}, 3 px noise, 2 % outliers, 5 % dropouts; subject only "
          f"(input built in {time.perf_counter() - t:.1f} s)")

    est_rt, tim_rt = run_rtkin(truth, rig, views)
    print(f"rtkin live: {tim_rt['frames_out']} JointAngles in {tim_rt['wall_s']:.2f} s wall "
          f"({T / tim_rt['wall_s']:.0f} frames/s); pipeline per 2D frame p50/p99 "
          f"{tim_rt['pipeline_ms_per_2d_frame'][0]:.3f}/{tim_rt['pipeline_ms_per_2d_frame'][1]:.3f} ms; "
          f"IKStage per frame p50/p99 {tim_rt['ik_ms_per_frame'][0]:.2f}/{tim_rt['ik_ms_per_frame'][1]:.2f} ms")

    estimates = {"rtkin": est_rt}
    if not args.skip_pose2sim:
        workdir = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_accuracy_"))
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            p2s = run_pose2sim(truth, rig, views, workdir)
            estimates["P2S gen"] = p2s["unscaled"]  # Pose2Sim IK on the generic (unscaled) model
            estimates["P2S scl"] = p2s["scaled"]  # Pose2Sim as it always runs: scaled model
            tm = p2s["timing"]
            print(f"Pose2Sim offline: JSON {tm['write_json_s']:.1f} s, triangulation {tm['triangulation_s']:.1f} s, "
                  f"filtering {tm['filtering_s']:.1f} s, kinematics (scaling + IK) {tm['kinematics_s']:.1f} s, "
                  f"IK on the unscaled model {tm['ik_unscaled_s']:.1f} s")
            print(f"  TRC: {', '.join(p2s['trc'])}; .mot rows {p2s['info_scaled']['rows']} (frames "
                  f"{p2s['info_scaled']['first']}..{p2s['info_scaled']['last']} of 0..{T - 1}), "
                  f"inDegrees={'yes' if p2s['info_scaled']['inDegrees'] else 'no'}; scaled model: {p2s['scales']}")
            print(f"  logs: {p2s['log']}" + (f"; project kept in {workdir}" if args.keep else ""))
        except Exception as e:  # noqa: BLE001 (report it, still print rtkin's table)
            print(f"\n*** Pose2Sim failed: {type(e).__name__}: {e}\n*** rtkin's table alone below.")
        finally:
            if not args.keep:
                shutil.rmtree(workdir, ignore_errors=True)

    common = np.ones(T, dtype=bool)
    for est in estimates.values():
        common &= np.isfinite(est[:, [names.index(c) for _, r, l in ROWS for c in (r, l) if c]]).all(1)
    systems = {k: rmse_deg(v, truth.motion.values, names, common) for k, v in estimates.items()}
    t = time.perf_counter()
    fk = BodyOrientations({"pelvis", "torso", "femur_r", "femur_l", "humerus_r", "humerus_l"})
    truth_R = fk(truth.motion.values, names)
    rot = {k: rotation_errors(fk, truth_R, v, names, common) for k, v in estimates.items()}
    print(f"(forward kinematics for rotation errors: {time.perf_counter() - t:.1f} s)")
    print_report(systems, rot, int(common.sum()), T)
    print("\nLag diagnostic (knee_angle_r, hip_flexion_r): RMSE at the best whole-frame delay of the estimate")
    for k, v in estimates.items():
        print(f"  {k:<10} " + "; ".join(f"{c} " + _best_lag(v, truth.motion.values, names.index(c), common)
                                     for c in ("knee_angle_r", "hip_flexion_r")))


if __name__ == "__main__":
    main()
