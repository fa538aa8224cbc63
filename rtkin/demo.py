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

from rtkin.io.recording import recorded_outputs
from rtkin.runtime.config import CaptureSettings, RecordingSettings, RunConfig, RunSettings, VirtualSourceSettings
from rtkin.runtime.runner import Runner, RunResult
from rtkin.runtime.summary import format_summary

__all__ = ["synthetic_config", "video_config", "run_synthetic_demo", "run_video_demo", "error_vs_truth",
           "format_summary", "finish_run"]


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
    return dataclasses.replace(base, run=RunSettings(name="demo", output_dir=str(output_dir)), source=src,
                               recording=RecordingSettings(enabled=True, outputs=True))


def finish_run(runner: Runner, result: RunResult, log=print, report: bool = True) -> dict:
    """After a run: the summary dict (reports, frame accounting inputs, errors), and the session's
    files from its recording, as recorded (:func:`rtkin.offline.export.export_recording`: one TRC,
    C3D and MOT per person on the session's time axis, and the session report), plus the scaled
    models the IK workers used."""
    from rtkin.io.recording import RecordingError
    from rtkin.offline.export import ExportError, export_recording

    cfg = runner.cfg
    summary = {"errors": list(result.errors), "interrupted": result.interrupted, "reports": result.reports,
               "sent": result.sent, "stop_s": result.stop_s}
    summary["scaled"] = sorted({p for k, v in result.reports.items() if k.startswith("ik:")
                                for p in (v.get("scaled_models") or {}).values()})
    rec = runner.recording_file()
    if rec is None:
        return summary
    summary["recording"] = str(rec)
    try:
        files = export_recording(rec, cfg.output_dir(), name=cfg.run.name, report=report)
    except (ExportError, RecordingError, ValueError, OSError) as e:
        summary["errors"].append(f"no files exported from the recording: {e}")
        return summary
    for kind in ("trc", "c3d", "mot"):
        summary[kind] = [str(f) for f in files if f.suffix == f".{kind}"]
    summary["report"] = [str(f) for f in files if f.suffix == ".html"]
    return summary


def _angles_summary(rec: Path, t0_ns: int, fps_hz: float, motion=None, angles=None) -> dict:
    """JointAngles of the first person (``angles``: the recorded ones, else read from ``rec``):
    last values, and RMSE against the truth when given."""
    from rtkin.core.messages import JointAngles

    angles = recorded_outputs(rec, JointAngles) if angles is None else angles
    if not angles:
        return {}
    pid = angles[0].person_id
    mine = [a for a in angles if a.person_id == pid]
    out = {"angles": {"frames": len(mine), "person": pid, "last": {n: float(np.degrees(mine[-1].value(n)))
                                                                     for n in REPORTED_COORDINATES if n in mine[-1].names}}}
    if motion is not None:
        out["angles"]["rmse_deg"] = angles_vs_truth(mine, motion, t0_ns, fps_hz)
    return out


def run_video_demo(cfg: RunConfig, log=print, force: bool = False) -> tuple[RunResult, dict]:
    """Run the demo videos through the whole chain; summary and exports."""
    runner = Runner(cfg, log=log, force=force)
    cfg = runner.cfg
    cap = cfg.source.capture
    model = f"BlazePose {cap.blazepose_model}" if cap.model == "blazepose" else f"RTMPose {cap.mode}"
    pace = ("real time: a camera skips the frames it is too late for (counted as skipped_late)" if cfg.source.realtime
            else "every frame, the videos' clock as capture time (slower than real time on a CPU; --realtime "
                 "keeps up by skipping frames)")
    log(f"rtkin demo: the Pose2Sim demo videos as {len(runner.rig)} live cameras ({', '.join(runner.rig.names)}), "
        f"{model}, {pace}; outputs in {cfg.output_dir()} (session {cfg.run.name})")
    t0 = time.monotonic()
    result = runner.run()
    wall = time.monotonic() - t0
    sent = max(result.sent.values(), default=0)
    if sent and wall > 0:
        video_s = sent / cfg.source.fps_hz
        log(f"rtkin demo: {sent} frames per camera ({video_s:.2f} s of video) in {wall:.1f} s of wall time, "
            f"start-up included ({video_s / wall:.2f}x real time)")
    summary = finish_run(runner, result, log)
    if summary.get("recording"):
        from rtkin.core.messages import JointAngles, Skeleton3D

        rec = Path(summary["recording"])
        both = recorded_outputs(rec, (Skeleton3D, JointAngles))  # one pass over the file
        outputs = [m for m in both if isinstance(m, Skeleton3D)]
        summary["frames_with_people"] = (sum(1 for sk in outputs if sk.n_people), len(outputs))
        summary.update(_angles_summary(rec, runner.t0_ns, cfg.sync.fps_hz,
                                       angles=[m for m in both if isinstance(m, JointAngles)]))
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


def run_synthetic_demo(cfg: RunConfig, log=print, force: bool = False) -> tuple[RunResult, dict]:
    """Run ``cfg`` (a virtual-source config), then summarise against the truth."""
    from rtkin.capture.keypoints import virtual_scene

    runner = Runner(cfg, log=log, force=force)
    cfg = runner.cfg
    v = cfg.source.virtual
    log(f"rtkin demo --synthetic: virtual subject, {v.duration_s:g} s at {cfg.source.fps_hz:g} Hz, "
        f"{len(runner.rig)} cameras ({', '.join(runner.rig.names)}), noise {v.noise_px} px, "
        f"outliers {v.outlier_rate:.0%}, dropouts {v.dropout_rate:.0%}"
        + (", bystander in cam01/cam02" if v.bystander else "") + f"; outputs in {cfg.output_dir()} "
        f"(session {cfg.run.name})")
    result = runner.run()
    summary = finish_run(runner, result, log)
    if summary.get("recording"):
        from rtkin.core.messages import JointAngles, Skeleton3D

        rec = Path(summary["recording"])
        both = recorded_outputs(rec, (Skeleton3D, JointAngles))  # one pass over the file
        outputs = [m for m in both if isinstance(m, Skeleton3D)]
        scene = virtual_scene(v, cfg.source.fps_hz)
        truth = scene.subjects[0].keypoints_for(cfg.rig.skeleton)
        summary["accuracy"] = error_vs_truth(outputs, truth, runner.t0_ns, cfg.source.fps_hz)
        summary.update(_angles_summary(rec, runner.t0_ns, cfg.source.fps_hz, scene.subjects[0].motion,
                                       [m for m in both if isinstance(m, JointAngles)]))
    return result, summary
