"""Pose2Sim project folders as reprocess input: ``Config.toml``, ``calibration/`` and ``pose/``.

A Pose2Sim trial folder holds ``Config.toml``, the rig calibration (``calibration/Calib*.toml``,
or a Qualisys ``.qca.txt``) and the 2D keypoints as OpenPose JSON, one folder per camera
(``pose/cam01_json/cam01_000000.json``...). :func:`reprocess_project` turns the JSON into a
recording (``<out>/<project>.rtkrec``: frame ``i`` of every camera captured at ``i / frame_rate``;
replayable like any other), then runs :func:`rtkin.offline.reprocess.reprocess` on it.

Settings with an rtkin equivalent are mapped (:func:`map_config`); the others are listed on one
line (they have no effect here). Mapped:

- ``project.frame_rate`` -> ``sync.fps_hz`` (``"auto"``: the frame rate of the project's videos
  if there are any, else 60 Hz as Pose2Sim assumes for images);
- ``pose.pose_model`` -> ``rig.skeleton`` (``Body_with_feet``/``HALPE_26`` -> HALPE_26,
  ``Body``/``COCO_17`` -> COCO_17, ``Whole_body``/``COCO_133`` -> COCO_133);
- ``filtering.filter`` / ``type`` / ``butterworth.cut_off_frequency`` / ``butterworth.order`` /
  ``reject_outliers`` -> ``reprocess.smoothing`` (``butterworth`` -> the same zero-phase
  Butterworth, ``kalman`` -> the RTS smoother, which is a Kalman smoother; other types keep
  rtkin's default and are listed as ignored);
- ``project.participant_height`` / ``participant_mass`` -> ``ik.height_m`` / ``ik.mass_kg``
  (``"auto"`` height: measured from the keypoints; a list: the first, i.e. the main subject);
- ``project.multi_person`` false -> ``reprocess.max_people = 1`` (only the main subject).

User overrides (``--config``) apply on top of the mapped settings.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, Mapping

__all__ = ["is_project", "map_config", "project_recording", "reprocess_project"]

_MODELS = {"body_with_feet": "HALPE_26", "halpe_26": "HALPE_26", "body": "COCO_17", "coco_17": "COCO_17",
           "coco": "COCO_17", "whole_body": "COCO_133", "coco_133": "COCO_133", "wholebody": "COCO_133"}
_MAPPED = {"project.frame_rate", "pose.pose_model", "filtering.filter", "filtering.type",
           "filtering.butterworth.cut_off_frequency", "filtering.butterworth.order", "filtering.reject_outliers",
           "project.participant_height", "project.participant_mass", "project.multi_person"}
#: read but not settings of the computation
_NEUTRAL = {"project.project_dir", "logging.use_custom_logging"}


def is_project(path: str | Path) -> bool:
    """A folder with a Config.toml and a pose folder."""
    p = Path(path)
    return p.is_dir() and (p / "Config.toml").is_file()


def _leaves(d: Mapping, prefix: str = "") -> list[str]:
    out = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        out += _leaves(v, key + ".") if isinstance(v, Mapping) else [key]
    return out


def _video_fps(project: Path) -> float | None:
    vids = sorted((project / "videos").glob("*")) if (project / "videos").is_dir() else []
    for v in vids:
        import cv2

        cap = cv2.VideoCapture(str(v))
        fps = cap.get(cv2.CAP_PROP_FPS)
        cap.release()
        if fps and fps > 0:
            return float(fps)
    return None


def map_config(p2s: Mapping, project: Path | None = None) -> tuple[dict, list[str], list[str]]:
    """Pose2Sim Config dict -> (rtkin overrides dict, notes, ignored keys).

    ``notes``: what a mapped value became when it was not taken literally (e.g. "auto").
    """
    over: dict[str, Any] = {"sync": {}, "rig": {}, "ik": {}, "reprocess": {}}
    notes: list[str] = []
    ignored: list[str] = []
    proj = p2s.get("project", {})
    fr = proj.get("frame_rate", "auto")
    if isinstance(fr, (int, float)) and not isinstance(fr, bool) and fr > 0:
        fps = float(fr)
    else:
        fps = (project is not None and _video_fps(project)) or 60.0
        notes.append(f"frame_rate {fr!r} -> {fps:g} Hz")
    over["sync"]["fps_hz"] = fps
    model = str(p2s.get("pose", {}).get("pose_model", "HALPE_26"))
    if model.lower() not in _MODELS:
        raise ValueError(f"pose.pose_model {model!r} has no rtkin skeleton (known: Body_with_feet/HALPE_26, "
                         "Body/COCO_17, Whole_body/COCO_133)")
    over["rig"]["skeleton"] = _MODELS[model.lower()]
    filt = p2s.get("filtering", {})
    kind = str(filt.get("type", "butterworth")).lower()
    sm: dict[str, Any] = {}
    if filt.get("filter", True) is False:
        sm["kind"] = "none"
    elif kind == "butterworth":
        bw = filt.get("butterworth", {})
        sm.update(kind="butterworth", cutoff_hz=float(bw.get("cut_off_frequency", 6)), order=int(bw.get("order", 4)))
        sm["hampel"] = bool(filt.get("reject_outliers", True))
    elif kind == "kalman":
        sm["kind"] = "rts"
    else:
        notes.append(f"filtering.type {kind!r} has no rtkin equivalent: rtkin's default smoother")
        ignored.append("filtering.type")
    over["reprocess"]["smoothing"] = sm
    h = proj.get("participant_height", "auto")
    h = h[0] if isinstance(h, list) and h else h
    if isinstance(h, (int, float)) and not isinstance(h, bool) and h > 0:
        over["ik"]["height_m"] = float(h)
    m = proj.get("participant_mass", 0)
    m = m[0] if isinstance(m, list) and m else m
    if isinstance(m, (int, float)) and not isinstance(m, bool) and m > 0:
        over["ik"]["mass_kg"] = float(m)
    if not proj.get("multi_person", False):
        over["reprocess"]["max_people"] = 1
    used = _MAPPED | _NEUTRAL
    ignored += [k for k in _leaves(p2s) if k not in used and not any(k.startswith(f"filtering.{t}.")
                                                                      for t in ("kalman", "one_euro", "gcv_spline",
                                                                                "acc_minimizing", "loess", "gaussian",
                                                                                "median", "butterworth_on_speed"))]
    return {k: v for k, v in over.items() if v}, notes, ignored


def _calibration(project: Path):
    from rtkin.core.calibration import load_calib

    cal = project / "calibration"
    cands = sorted(cal.glob("Calib*.toml")) + sorted(cal.glob("*.toml")) + sorted(cal.glob("*.qca.txt"))
    if not cands:
        raise ValueError(f"{project}: no calibration (calibration/Calib*.toml or *.qca.txt)")
    return load_calib(cands[0]), cands[0]


def _pose_folders(project: Path, cams: tuple[str, ...]) -> dict[str, Path]:
    pose = project / "pose"
    dirs = sorted(d for d in pose.glob("*") if d.is_dir()) if pose.is_dir() else []
    if not dirs:
        raise ValueError(f"{project}: no pose/<camera>_json folders of OpenPose JSON")
    out = {}
    for c in cams:
        hit = [d for d in dirs if d.name == f"{c}_json"] or [d for d in dirs if c in d.name]
        if len(hit) == 1:
            out[c] = hit[0]
    if len(out) != len(cams):
        if len(dirs) != len(cams):
            raise ValueError(f"{project}: {len(dirs)} pose folders for {len(cams)} calibrated cameras "
                             f"({', '.join(cams)})")
        out = dict(zip(cams, dirs))  # Pose2Sim pairs sorted folders with the calibration's cameras
    return out


def project_recording(project: str | Path, out_path: Path, overrides: Mapping, force: bool = False) -> Path:
    """Write the project's JSON keypoints as a recording (see the module doc); returns its path."""
    from rtkin.core.calibration import write_calib_toml
    from rtkin.core.messages import KeypointFrame
    from rtkin.core.skeletons import get_skeleton
    from rtkin.io.openpose import list_frames, read_openpose_json
    from rtkin.io.recording import INPUT, RecordingWriter
    from rtkin.runtime.config import config_from_dict

    project = Path(project)
    rig, calib_path = _calibration(project)
    cfg = config_from_dict({k: v for k, v in overrides.items() if k != "reprocess"})
    skel = get_skeleton(cfg.rig.skeleton)
    folders = _pose_folders(project, rig.names)
    period = 1e9 / cfg.sync.fps_hz
    events = []
    for c, cam in enumerate(rig.names):
        for idx, path in list_frames(folders[cam]):
            kp = read_openpose_json(path, skel.n_keypoints)
            t = 1_000_000_000 + int(round(idx * period))
            events.append((t, c, KeypointFrame(cam, idx, t, skel.name, kp)))
    if not events:
        raise ValueError(f"{project}: the pose folders hold no JSON files")
    events.sort(key=lambda e: (e[0], e[1]))
    tmp_calib = out_path.with_suffix(".calib.toml")
    write_calib_toml(rig, tmp_calib)
    meta = {"config": cfg.to_dict(), "calibration_toml": tmp_calib.read_text(), "cameras": list(rig.names),
            "skeleton": skel.name, "pose2sim_project": str(project.resolve()), "calibration_file": str(calib_path)}
    tmp_calib.unlink()
    with RecordingWriter(out_path, meta, flush_interval_s=1.0, overwrite=force) as w:
        for t, _c, frame in events:
            w.write(frame, t, INPUT)
    return out_path


def reprocess_project(project: str | Path, out_dir: str | Path | None = None, overrides: Mapping | None = None,
                      progress=None, force: bool = False, log: Callable[[str], None] | None = None):
    """Reprocess a Pose2Sim project folder (outputs in ``out_dir``, default ``<project>/rtkin``);
    returns the :class:`~rtkin.offline.reprocess.ReprocessResult`. The mapping and the ignored
    settings are printed through ``log`` (default: stderr), the latter on one line."""
    import tomllib

    from rtkin.offline.reprocess import ReprocessError, _merge, reprocess

    project = Path(project)
    say = log or (lambda s: print(s, file=sys.stderr, flush=True))
    try:
        p2s = tomllib.loads((project / "Config.toml").read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ReprocessError(f"{project / 'Config.toml'}: {e}") from e
    try:
        mapped, notes, ignored = map_config(p2s, project)
    except ValueError as e:
        raise ReprocessError(str(e)) from e
    over = _merge(mapped, overrides or {})
    out = Path(out_dir) if out_dir is not None else project / "rtkin"
    out.mkdir(parents=True, exist_ok=True)
    say(f"rtkin: Pose2Sim project {project}: frame rate {over['sync']['fps_hz']:g} Hz, skeleton {over['rig']['skeleton']}, "
        f"smoothing {over.get('reprocess', {}).get('smoothing', {}).get('kind', 'default')}, height "
        f"{over.get('ik', {}).get('height_m', 'measured')}, mass {over.get('ik', {}).get('mass_kg', '-')}"
        + (f" ({'; '.join(notes)})" if notes else ""))
    say(f"rtkin: Pose2Sim settings ignored (no rtkin equivalent): {', '.join(ignored) if ignored else 'none'}")
    rec = out / f"{project.name}.rtkrec"
    if rec.exists() and not force:
        raise ReprocessError(f"{rec} exists; choose another output folder or pass --force")
    try:
        project_recording(project, rec, over, force=force)
    except (ValueError, FileNotFoundError) as e:
        raise ReprocessError(str(e)) from e
    res = reprocess(rec, out, overrides=over, progress=progress, force=force, log=log)
    res.files.insert(0, rec)
    return res
