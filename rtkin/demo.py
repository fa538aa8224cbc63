"""``rtkin demo --synthetic``: the whole live chain on the virtual subject, with a summary.

Four camera processes play the virtual subject (and optionally a bystander) in the Pose2Sim demo
rig in real time; the sync node synchronises, associates, triangulates, tracks and filters; the
recorder logs the session. At the end: frames, drops, per-stage p50/p99 latency, the 3D error
against the truth, and the output files (recording, TRC).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

from rtkin.runtime.config import CaptureSettings, RecordingSettings, RunConfig, RunSettings, VirtualSourceSettings
from rtkin.io.recording import recorded_outputs
from rtkin.runtime.runner import Runner, RunResult

__all__ = ["synthetic_config", "run_synthetic_demo", "error_vs_truth"]


def synthetic_config(output_dir: str | Path, duration_s: float = 12.0, realtime: bool = True, seed: int = 0,
                     bystander: bool = True, base: RunConfig | None = None) -> RunConfig:
    """A RunConfig playing the virtual subject through the demo rig into ``output_dir``."""
    base = base or RunConfig()
    src = dataclasses.replace(base.source, kind="virtual", realtime=realtime,
                              virtual=VirtualSourceSettings(duration_s=duration_s, seed=seed, bystander=bystander))
    return dataclasses.replace(base, run=RunSettings(name="synthetic", output_dir=str(output_dir)), source=src,
                               recording=RecordingSettings(enabled=True, outputs=True))


def video_config(output_dir: str | Path, realtime: bool = False, pose_model: str = "", det_model: str = "",
                 mode: str = "balanced", providers: tuple[str, ...] = (), base: RunConfig | None = None,
                 pose: str = "rtmpose") -> RunConfig:
    """A RunConfig playing the four Pose2Sim demo videos as live cameras through a pose model.

    ``pose``: ``"rtmpose"`` (HALPE_26 keypoints) or ``"blazepose"`` (BLAZEPOSE keypoints, one
    person). ``realtime=False`` processes every frame (on a CPU, the pose models are slower than
    60 fps per camera), with the videos' own clock as capture times and a sync that waits for slow
    cameras; ``realtime=True`` plays at the videos' rate and skips the frames a camera process is
    too late for.
    """
    base = base or RunConfig()
    cap = CaptureSettings(model=pose, mode=mode, pose_model=pose_model, det_model=det_model, providers=tuple(providers))
    if pose == "blazepose":
        base = dataclasses.replace(base, rig=dataclasses.replace(base.rig, skeleton="BLAZEPOSE"))
    src = dataclasses.replace(base.source, kind="capture", realtime=realtime, capture=cap)
    # every frame: a slot waits for the slowest camera (on a loaded 2-core PC, BlazePose cameras were
    # seen 5+ s apart: a 5 s wait then dropped frames as late)
    sync = base.sync if realtime else dataclasses.replace(base.sync, max_wait_ms=30000.0, stale_ms=60000.0,
                                                            max_pending_slots=100_000)
    return dataclasses.replace(base, run=RunSettings(name="demo", output_dir=str(output_dir)), source=src, sync=sync,
                               recording=RecordingSettings(enabled=True, outputs=True))


def _angles_summary(rec: Path, cfg: RunConfig, t0_ns: int, motion=None) -> dict:
    """JointAngles of the first person: MOT export, and RMSE against the truth when given."""
    from rtkin.core.messages import JointAngles
    from rtkin.io.mot import joint_angles_to_mot, rotational_mask

    angles = recorded_outputs(rec, JointAngles)
    if not angles:
        return {}
    pid = angles[0].person_id
    mine = [a for a in angles if a.person_id == pid]
    out = {"angles": {"frames": len(mine), "person": pid, "last": {n: float(np.degrees(mine[-1].value(n)))
                                                                     for n in REPORTED_COORDINATES if n in mine[-1].names}}}
    out["mot"] = str(joint_angles_to_mot(rec.with_suffix(".mot"), mine, rotational_mask(mine[0].names),
                                         t0_ns=mine[0].time_ns))
    if motion is not None:
        out["angles"]["rmse_deg"] = angles_vs_truth(mine, motion, t0_ns, cfg.source.fps_hz)
    return out


def run_video_demo(cfg: RunConfig, log=print) -> tuple[RunResult, dict]:
    """Run the demo videos through the whole chain; summary and TRC export."""
    from rtkin.io.trc import skeleton3d_to_trc

    runner = Runner(cfg, log=log)
    cap = cfg.source.capture
    model = f"BlazePose {cap.blazepose_model}" if cap.model == "blazepose" else f"RTMPose {cap.mode}"
    pace = ("real time: a camera skips the frames it is too late for (counted as skipped_late)" if cfg.source.realtime
            else "every frame, the videos' clock as capture time (slower than real time on a CPU; --realtime "
                 "keeps up by skipping frames)")
    log(f"rtkin demo: the Pose2Sim demo videos as {len(runner.rig)} live cameras ({', '.join(runner.rig.names)}), "
        f"{model}, {pace}")
    t0 = time.monotonic()
    result = runner.run()
    wall = time.monotonic() - t0
    sent = [v.get("sent", 0) for k, v in result.reports.items() if k.startswith("source:")]
    if sent and wall > 0:
        video_s = max(sent) / cfg.source.fps_hz
        log(f"rtkin demo: {max(sent)} frames per camera ({video_s:.2f} s of video) in {wall:.1f} s of wall time, "
            f"start-up included ({video_s / wall:.2f}x real time)")
    summary = {"errors": result.errors, "interrupted": result.interrupted, "reports": result.reports}
    rec = cfg.recording_path()
    if rec.exists():
        outputs = recorded_outputs(rec)
        summary["recording"] = str(rec)
        people = [sk for sk in outputs if sk.n_people]
        summary["frames_with_people"] = (len(people), len(outputs))
        if people:
            pid = int(people[0].person_ids[0])
            summary["trc"] = str(skeleton3d_to_trc(rec.with_suffix(".trc"), outputs, pid, cfg.rig.skeleton,
                                                   rate_hz=cfg.sync.fps_hz))
        summary.update(_angles_summary(rec, cfg, runner.t0_ns))
    return result, summary


#: Coordinates reported against the truth (the acceptance list of the IK issue).
REPORTED_COORDINATES = (
    "pelvis_tilt", "pelvis_list", "pelvis_rotation", "hip_flexion_r", "hip_adduction_r", "hip_rotation_r",
    "knee_angle_r", "ankle_angle_r", "L5_S1_Flex_Ext", "arm_flex_r", "arm_add_r", "elbow_flex_r",
)


def angles_vs_truth(angles, motion, t0_ns: int, fps_hz: float) -> dict[str, float]:
    """RMSE in degrees of each reported coordinate of the JointAngles against the truth motion."""
    period = 1e9 / fps_hz
    err: dict[str, list[float]] = {n: [] for n in REPORTED_COORDINATES}
    for ja in angles:
        t = int(round((ja.time_ns - t0_ns) / period))
        if not 0 <= t < motion.values.shape[0]:
            continue
        for n in REPORTED_COORDINATES:
            if n in ja.names:
                err[n].append(ja.value(n) - motion[n][t])
    return {n: float(np.degrees(np.sqrt(np.mean(np.square(v))))) for n, v in err.items() if v}


def error_vs_truth(outputs, truth_kp: np.ndarray, t0_ns: int, fps_hz: float) -> dict:
    """3D keypoint error of the tracked subject against the truth at the same frame.

    Args:
        outputs: Skeleton3D messages (single-person runs).
        truth_kp: (T, K, 3) world truth, m. t0_ns: stream start; fps_hz: frame rate.

    Returns:
        {"median_mm", "p95_mm", "frames", "frames_with_subject", "ids"}.
    """
    period = 1e9 / fps_hz
    errs, ids, seen = [], set(), 0
    for sk in outputs:
        t = int(round((sk.time_ns - t0_ns) / period))
        if sk.n_people == 0 or not 0 <= t < truth_kp.shape[0]:
            continue
        seen += 1
        ids.update(int(i) for i in sk.person_ids)
        errs.append(np.linalg.norm(sk.points[0] - truth_kp[t], axis=-1) * 1e3)
    e = np.concatenate(errs) if errs else np.array([np.nan])
    return {"median_mm": float(np.nanmedian(e)), "p95_mm": float(np.nanpercentile(e, 95)),
            "frames": len(outputs), "frames_with_subject": seen, "ids": sorted(ids)}


def run_synthetic_demo(cfg: RunConfig, log=print) -> tuple[RunResult, dict]:
    """Run ``cfg`` (a virtual-source config), then summarise against the truth."""
    from rtkin.capture.keypoints import virtual_scene
    from rtkin.io.trc import skeleton3d_to_trc

    runner = Runner(cfg, log=log)
    v = cfg.source.virtual
    log(f"rtkin demo --synthetic: virtual subject, {v.duration_s:.0f} s at {cfg.source.fps_hz:.0f} Hz, "
        f"{len(runner.rig)} cameras ({', '.join(runner.rig.names)}), noise {v.noise_px} px, "
        f"outliers {v.outlier_rate:.0%}, dropouts {v.dropout_rate:.0%}"
        + (", bystander in cam01/cam02" if v.bystander else ""))
    log("starting processes (sync, IK, recorder, one per camera)...")
    result = runner.run()
    summary = {"errors": result.errors, "interrupted": result.interrupted}
    rec = cfg.recording_path()
    if rec.exists():
        outputs = recorded_outputs(rec)
        truth = virtual_scene(v, cfg.source.fps_hz).subjects[0].keypoints_for(cfg.rig.skeleton)
        summary["accuracy"] = error_vs_truth(outputs, truth, runner.t0_ns, cfg.source.fps_hz)
        summary.update(_angles_summary(rec, cfg, runner.t0_ns, virtual_scene(v, cfg.source.fps_hz).subjects[0].motion))
        if outputs and any(sk.n_people for sk in outputs):
            pid = next(int(sk.person_ids[0]) for sk in outputs if sk.n_people)
            trc = skeleton3d_to_trc(rec.with_suffix(".trc"), outputs, pid, cfg.rig.skeleton, rate_hz=cfg.sync.fps_hz)
            summary["trc"] = str(trc)
        summary["recording"] = str(rec)
    summary["reports"] = result.reports
    return result, summary


def format_summary(summary: dict) -> str:
    """Human-readable end-of-run summary."""
    lines = []
    rep = summary.get("reports", {})
    sent = {k.split(":", 1)[1]: v.get("sent", 0) for k, v in rep.items() if k.startswith("source:")}
    if sent:
        lines.append("frames sent: " + ", ".join(f"{c} {n}" for c, n in sorted(sent.items())))
    sync = rep.get("sync")
    if sync:
        s, r = sync["sync"], sync["receiver"]
        lines.append(f"FrameSets: {s['framesets']} ({s['incomplete']} with a view missing); Skeleton3D out: {sync['outputs']}")
        lines.append(f"drops: late {s['late']}, out of tolerance {s['out_of_tolerance']}, lost in transport "
                     f"{r['dropped']}, malformed {r['malformed']}")
        for stage, t in sync["timing_ms"].items():
            if t.get("n"):
                lines.append(f"stage {stage:<12} p50 {t['p50']:.3f} ms  p99 {t['p99']:.3f} ms  (n={t['n']})")
        lat = sync["latency_ms"]
        if lat.get("n"):
            lines.append(f"capture -> Skeleton3D latency: p50 {lat['p50']:.2f} ms, p99 {lat['p99']:.2f} ms")
    acc = summary.get("accuracy")
    if acc:
        lines.append(f"3D error vs truth: median {acc['median_mm']:.1f} mm, p95 {acc['p95_mm']:.1f} mm "
                     f"({acc['frames_with_subject']}/{acc['frames']} frames with the subject; ids {acc['ids']})")
    fw = summary.get("frames_with_people")
    if fw:
        lines.append(f"Skeleton3D with a person: {fw[0]}/{fw[1]}")
    prov = {k.split(":", 1)[1]: v.get("provider") for k, v in rep.items() if k.startswith("source:") and v.get("provider")}
    if prov:
        lines.append("execution providers: " + ", ".join(f"{c} {p}" for c, p in sorted(prov.items())))
    rec = rep.get("recorder")
    if rec:
        lines.append(f"recording: {rec['path']} ({rec['inputs']} inputs, {rec['outputs']} outputs)")
    ang = summary.get("angles")
    if ang:
        last = ", ".join(f"{n} {v:.0f}" for n, v in ang["last"].items())
        lines.append(f"joint angles (person {ang['person']}, {ang['frames']} frames); last, deg: {last}")
        if ang.get("rmse_deg"):
            lines.append("joint angle RMSE vs truth, deg: " + ", ".join(f"{n} {v:.1f}" for n, v in ang["rmse_deg"].items()))
    ik = {k: v for k, v in rep.items() if k.startswith("ik:")}
    for k, v in sorted(ik.items()):
        t, lat, e2e = v["timing_ms"], v["latency_ms"], v.get("e2e_ms", {})
        if t.get("n"):
            who = ", ".join(map(str, v.get("served", []))) or "-"
            line = (f"{k} (person {who}): IK p50 {t['p50']:.2f} ms, p99 {t['p99']:.2f} ms per frame; "
                    f"capture -> JointAngles p50 {lat['p50']:.2f} ms, p99 {lat['p99']:.2f} ms")
            if e2e.get("n"):
                line += f"; last camera frame in -> JointAngles out p50 {e2e['p50']:.2f} ms, p99 {e2e['p99']:.2f} ms"
            lines.append(line)
    if summary.get("trc"):
        lines.append(f"TRC: {summary['trc']}")
    if summary.get("mot"):
        lines.append(f"MOT: {summary['mot']}")
    for e in summary.get("errors", []):
        lines.append(f"error: {e}")
    return "\n".join(lines)
