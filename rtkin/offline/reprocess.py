"""Reprocess a recorded session at the best accuracy: the live stages, offline, with the whole
session in view.

Steps (the same stage objects as live, fed from the recording):

1. **Reconstruct**: the recording's KeypointFrames, in recorded order with their receive times,
   through a :class:`~rtkin.reconstruct.pipeline.Pipeline` (sync, association, triangulation as
   live) with the causal filter and the live calibration check off: raw triangulated points.
2. **Tracks**: the live tracker's ids are repaired with the whole session in view
   (:mod:`rtkin.offline.tracks`: fragments stitched, id switches swapped back).
3. **Smoothing**: zero-phase, each point weighted by its confidence
   (:mod:`rtkin.reconstruct.smoothing`; gaps up to ``max_gap_s`` bridged).
4. **Scaling** from the best frames of the whole session: the ``scaling_frames`` frames where
   the most keypoints are measured well (:func:`rtkin.kinematics.scaling.scale_factors` with
   that mask, the subject's height and mass when configured), written as ``*_scaled.osim``.
5. **Marker augmentation** when ``augment`` is set (see :func:`_augment`, issue 17).
6. **IK** on the scaled model from the first frame: :class:`~rtkin.kinematics.ik_stage.IKStage`
   (the live stage) warm-started frame to frame on the smoothed points; with ``backward_pass``
   a second pass runs from the last frame back, and each frame keeps the solution with the
   lower marker RMS error. IK solves at ``ik_rate_hz`` (every n-th frame, n = frame rate //
   ik_rate_hz) and a cubic spline interpolates the coordinates between: the smoothed input has
   little content above ~6 Hz, and on the held-out virtual subjects of bench_reprocess.py solving
   every 3rd frame at 60 Hz scored as well as every frame (mean coordinate RMSE 1.07 vs 1.09 deg
   and 1.25 vs 1.26 deg) for a third of the IK time.
7. **Outputs** per person: ``<name>_person<id>.trc`` (smoothed keypoints, OpenSim frame),
   ``.mot`` (joint angles), ``.c3d`` (world frame, z up, mm), ``_scaled.osim``, and the
   session's ``<name>_report.html`` + PNGs.

Time axis: every file counts seconds from the session's first slot (the first Skeleton3D the
pipeline produced; its slot time is 0 s), so MOT, TRC, C3D and the report line up.

Settings: the recording's run configuration (what the live run used), overridden by a TOML file
whose tables are those of the run configuration (``[ik.solver]``, ``[reconstruction.triangulation]``,
``[ik] height_m``, ...) plus ``[reprocess]`` (:class:`ReprocessSettings`). Unknown keys are errors.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from rtkin.core.messages import KeypointFrame, Skeleton3D
from rtkin.core.skeletons import get_skeleton
from rtkin.io.recording import INPUT, RecordingReader
from rtkin.offline.tracks import Track, TrackRepairSettings, repair_tracks
from rtkin.reconstruct.filters import FilterSettings
from rtkin.reconstruct.health import HealthSettings
from rtkin.reconstruct.pipeline import Pipeline
from rtkin.reconstruct.smoothing import SmoothingSettings, point_weights, smooth

__all__ = ["ReprocessSettings", "ReprocessError", "ReprocessResult", "PersonResult", "reprocess",
           "load_overrides", "output_files"]

Progress = Callable[[str, int, int], None]

#: a frame rate this fraction under a multiple of ``ik_rate_hz`` counts as that multiple
_STRIDE_SLACK = 0.01


class ReprocessError(ValueError):
    """A recording or settings problem that stops a reprocess (one-line message)."""


@dataclass(frozen=True)
class ReprocessSettings:
    """Offline pass settings (TOML ``[reprocess]``; the stages' own settings stay in their tables).

    Attributes:
        smoothing: zero-phase smoothing of the 3D keypoints.
        tracks: whole-session track repair.
        scaling: scale the model to each person (else the generic model).
        scaling_frames: how many of the session's best frames scaling uses: highest mean point
            confidence (score, views, reprojection) among the frames that pass the scaling's
            pose filter (hips and knees nearly straight).
        ik_rate_hz: IK solves every n-th frame, n = max(1, floor(frame rate / ik_rate_hz)), a
            frame rate up to 1 % under a multiple counting as that multiple (60 Hz, 59.94 Hz or
            59.9999988 Hz from a 16666667 ns period: every 3rd frame; 30 Hz: every frame), and
            interpolates between, Hz; 0 = every frame.
        backward_pass: also solve from the last frame back and keep, per frame, the solution
            with the lower marker RMS error (doubles the IK time).
        augment: marker augmentation before IK (issue 17; see :func:`_augment`).
        max_people: export at most this many people, longest tracked first (0 = all).
        trc, mot, c3d, report: which files to write.
    """

    smoothing: SmoothingSettings = SmoothingSettings()
    tracks: TrackRepairSettings = TrackRepairSettings()
    scaling: bool = True
    scaling_frames: int = 600
    ik_rate_hz: float = 20.0
    backward_pass: bool = False
    augment: bool = False
    max_people: int = 0
    trc: bool = True
    mot: bool = True
    c3d: bool = True
    report: bool = True

    def __post_init__(self) -> None:
        if self.scaling_frames < 10 or self.ik_rate_hz < 0 or self.max_people < 0:
            raise ValueError("reprocess: scaling_frames >= 10, ik_rate_hz >= 0 and max_people >= 0 are required")

    def ik_stride(self, fps: float) -> int:
        """Frames per IK solve at ``fps`` Hz (a rate a hair under a multiple of ``ik_rate_hz``,
        as a period rounded to whole ns or NTSC's 59.94 Hz gives, counts as that multiple)."""
        return 1 if not self.ik_rate_hz else max(1, math.floor(fps / self.ik_rate_hz * (1 + _STRIDE_SLACK)))


@dataclass
class PersonResult:
    """One exported person: id, slots (first, last), frames seen, IK solves, frames with angles
    (solved or interpolated), files, model, factors."""

    person_id: int
    first_slot: int
    last_slot: int
    frames: int
    solved: int
    files: list[Path] = field(default_factory=list)
    model: str = ""
    factors: dict[str, float] = field(default_factory=dict)
    live_ids: list[int] = field(default_factory=list)
    backward_kept: int = 0
    angle_frames: int = 0


@dataclass
class ReprocessResult:
    """What a reprocess did: people, files, counters and timings (s per step: ``timings`` wall
    clock, ``cpu_timings`` this process's CPU time, same keys)."""

    recording: Path
    out_dir: Path
    name: str
    fps: float
    duration_s: float
    people: list[PersonResult] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    counters: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    cpu_timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


# ============================================================================ settings


def _merge(base: dict, over: Mapping) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), dict) else v
    return out


def load_overrides(path: str | Path | None) -> dict:
    """Read an overrides TOML file (None -> {}); ReprocessError if missing or invalid."""
    if path is None:
        return {}
    import tomllib

    p = Path(path)
    if not p.is_file():
        raise ReprocessError(f"overrides file not found: {p}")
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ReprocessError(f"{p}: not valid TOML: {e}") from e


def _settings(meta: Mapping, overrides: Mapping) -> tuple[Any, ReprocessSettings]:
    """(RunConfig, ReprocessSettings) from the recording's config and the overrides."""
    from rtkin.runtime.config import ConfigError, RunConfig, _build, config_from_dict

    over = dict(overrides)
    rp = over.pop("reprocess", {})
    try:
        cfg: RunConfig = config_from_dict(_merge(meta.get("config", {}) or {}, over))
        settings = _build(ReprocessSettings, rp, "reprocess")
    except ConfigError as e:
        raise ReprocessError(str(e)) from e
    return cfg, settings


def output_files(name: str, person_ids, settings: ReprocessSettings = ReprocessSettings()) -> list[str]:
    """File names a reprocess writes for these people (to refuse overwriting foreign files)."""
    out = []
    for pid in person_ids:
        out += [f"{name}_person{pid}.{ext}" for ext, on in (("trc", settings.trc), ("mot", settings.mot),
                                                             ("c3d", settings.c3d)) if on]
        if settings.scaling:
            out.append(f"{name}_person{pid}_scaled.osim")
    if settings.report:
        out.append(f"{name}_report.html")
    return out


# ============================================================================ steps


class _Timings:
    """Seconds per step, wall clock and this process's CPU time, summed over calls (people)."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    @staticmethod
    def now() -> tuple[float, float]:
        return time.perf_counter(), time.process_time()

    def add(self, key: str, since: tuple[float, float]) -> None:
        self.wall[key] = self.wall.get(key, 0.0) + time.perf_counter() - since[0]
        self.cpu[key] = self.cpu.get(key, 0.0) + time.process_time() - since[1]


@dataclass
class _Session:
    """Step 1's outputs: per slot Skeleton3D (raw points), the 2D inputs, and the slot grid."""

    sks: list[Skeleton3D]
    slots: np.ndarray  # (S,) slot index of each sk
    t0_ns: int
    frames: dict[str, list]
    inputs: int
    truncated: bool
    complete: bool
    malformed: int
    pipeline_s: float = 0.0  # of which in the live stages (the rest: reading and decoding)
    pipeline_cpu_s: float = 0.0  # the same in CPU time


def _reconstruct(reader: RecordingReader, rig, cfg, progress: Progress | None) -> _Session:
    recon = dataclasses.replace(cfg.reconstruction, filter=FilterSettings(kind="none"),
                                health=HealthSettings(enabled=False))
    pipe = Pipeline(rig, cfg.rig.skeleton, cfg.sync, recon, clock_ns=None)
    sks: list[Skeleton3D] = []
    frames: dict[str, list] = {c: [] for c in rig.names}
    n, t_pipe, c_pipe = 0, 0.0, 0.0
    for rec in reader:
        if rec.kind != INPUT or not isinstance(rec.message, KeypointFrame):
            continue
        m = rec.message
        n += 1
        if m.camera in frames:
            frames[m.camera].append((m.capture_ns, m.keypoints))
        t, c = time.perf_counter(), time.process_time()
        try:
            sks += pipe.push(m, rec.recv_ns)
        except ValueError as e:  # a frame of another rig / skeleton: the recording is inconsistent
            raise ReprocessError(f"{reader.path}: input {n}: {e}") from e
        t_pipe += time.perf_counter() - t
        c_pipe += time.process_time() - c
        if progress is not None and n % 500 == 0:
            progress("reconstruct", n, 0)
    sks += pipe.flush()  # offline, even a killed run's pending slots hold complete data
    if progress is not None:
        progress("reconstruct", n, n)
    if not sks:
        raise ReprocessError(f"{reader.path}: no {cfg.rig.skeleton} KeypointFrames of cameras "
                             f"{', '.join(rig.names)} to reconstruct")
    sks.sort(key=lambda s: s.time_ns)
    t0 = sks[0].time_ns
    period = 1e9 / cfg.sync.fps_hz
    slots = np.round((np.array([s.time_ns for s in sks], dtype=np.int64) - t0) / period).astype(np.int64)
    for fr in frames.values():
        fr.sort(key=lambda x: x[0])
    return _Session(sks, slots, t0, frames, n, reader.truncated, reader.complete, reader.n_malformed, t_pipe, c_pipe)


def _person_arrays(sess: _Session, track: Track, K: int) -> dict[str, np.ndarray]:
    """A person's raw arrays on their slot range [first, last]: points (T, K, 3), scores,
    n_views, reproj (T, K), present (T,)."""
    first, last = track.start, track.end
    T = last - first + 1
    pts = np.full((T, K, 3), np.nan)
    sc = np.zeros((T, K))
    nv = np.zeros((T, K))
    err = np.full((T, K), np.nan)
    present = np.zeros(T, dtype=bool)
    by_slot = {int(s): i for i, s in enumerate(sess.slots)}
    for slot, row in track.rows.items():
        sk = sess.sks[by_slot[slot]]
        i = slot - first
        pts[i], sc[i], nv[i], err[i] = sk.points[row], sk.scores[row], sk.n_views[row], sk.reproj_error_px[row]
        present[i] = True
    return {"points": pts, "scores": sc, "n_views": nv, "reproj": err, "present": present, "first": first}


def _best_frames(w: np.ndarray, smoothed: np.ndarray, n: int, skeleton: str) -> np.ndarray:
    """(T,) bool: the ``n`` frames of the session with the highest mean point confidence (every
    keypoint counted, missing = 0) among those the scaling can use (all keypoints estimated, hips
    and knees nearly straight: :func:`rtkin.kinematics.scaling.good_frames`)."""
    from rtkin.kinematics.scaling import good_frames

    usable = np.isfinite(smoothed).all((-1, -2)) & good_frames(smoothed, skeleton)
    score = np.where(usable, w.mean(1), -1.0)
    order = np.argsort(-score, kind="stable")[:n]
    mask = np.zeros(len(score), dtype=bool)
    mask[order[score[order] > 0]] = True
    return mask


def _scale(points: np.ndarray, mask: np.ndarray, cfg, out_path: Path) -> tuple[Path, dict, list[str], Any]:
    """Scale factors from the ``mask`` frames of ``points``; writes the scaled model to
    ``out_path`` and returns (its path, the factors, warnings, the same model in memory)."""
    from rtkin.kinematics.scaling import ScalingSettings, scale_factors, scaled_model, write_model

    st = ScalingSettings(skeleton=cfg.rig.skeleton, model=cfg.ik.solver.model, height_m=cfg.ik.height_m,
                         mass_kg=cfg.ik.mass_kg)
    res = scale_factors(points, cfg.rig.skeleton, st, mask=mask)
    model = scaled_model(cfg.ik.solver.model or None, res.factors, cfg.ik.mass_kg or None, cfg.rig.skeleton)
    return write_model(model, out_path), dict(res.factors), list(res.warnings), model


def _augment(points: np.ndarray, cfg, fps: float):
    """Marker augmentation (issue 17), the same stage as live stepped over the whole sequence:
    ``points`` (T, K, 3) smoothed world keypoints, m -> :class:`rtkin.kinematics.augment.AugmentedSequence`
    (the augmented markers, which the IK then tracks beside the keypoints)."""
    from rtkin.kinematics.augment import AugmentSettings, augment_sequence

    try:
        return augment_sequence(points, cfg.rig.skeleton, fps,
                                AugmentSettings(height_m=cfg.ik.height_m, mass_kg=cfg.ik.mass_kg))
    except ValueError as e:
        raise ReprocessError(f"reprocess.augment: {e}") from None


def _ik_pass(stage, pid: int, frames: list[int], points, scores, n_views, reproj, slot_ns, skeleton: str,
             backward: bool, progress: Progress | None, label: str, aug=None):
    """Feed ``frames`` (indices into the person arrays) through an IKStage (with the augmented
    markers ``aug``, an AugmentedSequence, when given); per frame the JointAngles or None."""
    out = {}
    total = len(frames)
    for j, i in enumerate(frames):
        t = int(slot_ns[i])
        sk = Skeleton3D(time_ns=-t if backward else t, capture_ns=t, skeleton=skeleton,
                        person_ids=np.array([pid]), points=points[i][None], scores=scores[i][None].astype(np.float32),
                        reproj_error_px=reproj[i][None].astype(np.float32), n_views=n_views[i][None].astype(np.uint8))
        ja = stage(sk, None if aug is None else _augmented_frame(aug, i, sk))
        out[i] = ja[0] if ja else None
        if progress is not None and (j % 200 == 0 or j == total - 1):
            progress(label, j + 1, total)
    return out


def _augmented_frame(aug, i: int, sk: Skeleton3D):
    """Frame ``i`` of an AugmentedSequence as the IK stage's extra markers (one person): the
    confidence as score, the anchors' views and error as the keypoints' worst."""
    from rtkin.kinematics.augment import AugmentedFrame

    pts = aug.markers[i][None]
    ok = np.isfinite(pts).all(-1)
    views = np.where(ok, max(1, int(sk.n_views[0].min(initial=255))) if sk.n_views.size else 1, 0).astype(np.uint8)
    err = np.where(ok, float(np.nanmax(sk.reproj_error_px, initial=0.0)), np.nan).astype(np.float32)
    return AugmentedFrame(sk.time_ns, sk.capture_ns, "LSTM", sk.person_ids, pts,
                          aug.confidence[i][None].astype(np.float32), err, views)


def _interpolate(values: np.ndarray, solved: np.ndarray) -> np.ndarray:
    """Fill unsolved rows of (T, Q) between solved ones by a cubic spline (per contiguous block of
    solved rows at most a stride apart); rows outside stay NaN."""
    from scipy.interpolate import CubicSpline

    idx = np.flatnonzero(solved)
    out = values.copy()
    if idx.size < 2:
        return out
    splits = np.flatnonzero(np.diff(idx) > 8) + 1
    for block in np.split(idx, splits):
        if block.size < 2:
            continue
        cs = CubicSpline(block, values[block], axis=0)
        rows = np.arange(block[0], block[-1] + 1)
        fill = rows[~solved[rows]]
        out[fill] = cs(fill)
    return out


def _ik(cfg, settings: ReprocessSettings, model_path: Path | None, model, factors: dict, pid: int, arr: dict,
        X: np.ndarray, slot_ns: np.ndarray, progress: Progress | None, aug=None):
    """Joint angles of one person: (names, values (T, Q), quality (T, Q), solved (T,) bool, backward kept).
    ``model_path``: the scaled model :func:`_scale` wrote by ``factors`` and ``model`` the same in
    memory (None, None: the generic model)."""
    from rtkin.kinematics.ik_stage import IKStage
    from rtkin.kinematics.scaling import scaled_model

    T = X.shape[0]
    finite = np.isfinite(X).all(-1)
    views = np.where(arr["present"][:, None] & np.isfinite(arr["points"]).all(-1), arr["n_views"], 0)
    scores = np.where(finite, np.where(views > 0, arr["scores"], 0.0), 0.0)
    reproj = np.where(views > 0, np.nan_to_num(arr["reproj"], nan=0.0), np.nan)
    stride = settings.ik_stride(cfg.sync.fps_hz)
    frames = [i for i in range(0, T, stride) if finite[i].any()]
    if frames and frames[-1] != T - 1 and finite[T - 1].any():
        frames.append(T - 1)

    solver = dataclasses.replace(cfg.ik.solver, skeleton=cfg.rig.skeleton)
    if aug is not None:
        from rtkin.kinematics.augment import augmented_ik_settings

        solver = augmented_ik_settings(solver, aug.names)

    if model is not None and solver.extra_marker_set:
        # the augmented markers too, scaled with their bodies (as a live switch scales them):
        # the same scaling of the template with the IK's own markers
        model = scaled_model(solver.model or None, factors, cfg.ik.mass_kg or None, solver.skeleton,
                             solver.extra_marker_set)
    # (no ~40 ms load of the written .osim: the model in memory is the one written)

    def stage():
        s = IKStage(solver, spare=model is None)
        if model is not None:
            s.use_model(pid, model_path, model=model.clone(), factors=factors)
        return s

    fwd = _ik_pass(stage(), pid, frames, X, scores, views, reproj, slot_ns, cfg.rig.skeleton, False, progress, "IK",
                   aug)
    bwd = (_ik_pass(stage(), pid, frames[::-1], X, scores, views, reproj, slot_ns, cfg.rig.skeleton, True, progress,
                    "IK backward", aug) if settings.backward_pass else {})
    first = next((ja for ja in fwd.values() if ja is not None), None)
    if first is None:
        return None
    names = first.names
    Q = len(names)
    values = np.full((T, Q), np.nan)
    quality = np.zeros((T, Q), dtype=np.float32)
    solved = np.zeros(T, dtype=bool)
    kept_bwd = 0
    for i in frames:
        a, b = fwd.get(i), bwd.get(i)
        if b is not None and (a is None or b.marker_rms_m < a.marker_rms_m):
            a = b
            kept_bwd += 1
        if a is not None:
            values[i], quality[i], solved[i] = a.values, a.quality, True
    if stride > 1:
        values = _interpolate(values, solved)
        src = np.flatnonzero(solved)
        if src.size:
            near = src[np.clip(np.searchsorted(src, np.arange(T)), 0, src.size - 1)]
            quality = quality[near]
    return names, values, quality, solved, kept_bwd


# ============================================================================ main entry


def reprocess(recording: str | Path, out_dir: str | Path | None = None, overrides: Mapping | None = None,
              progress: Progress | None = None, force: bool = False, log: Callable[[str], None] | None = None
              ) -> ReprocessResult:
    """Reprocess one recording (see the module docstring); returns what it wrote.

    Args:
        recording: ``.rtkrec`` file (a killed run's file reprocesses up to its last whole record).
        out_dir: output folder (default ``<recording stem>_reprocessed`` beside the recording).
        overrides: TOML-like dict of settings overriding the recording's (see the module doc).
        progress: ``progress(step, done, total)`` callback (total 0 = unknown).
        force: overwrite existing output files (else ReprocessError if one exists).
        log: where progress lines and warnings go (default: nothing).

    Raises:
        ReprocessError: unreadable recording, bad settings, nothing to reconstruct, or an
            output file exists without ``force``.
    """
    from rtkin.io.recording import RecordingError
    from rtkin.offline.replay import recording_config

    timings = _Timings()
    t_all = timings.now()
    rec = Path(recording)
    if not rec.is_file():
        raise ReprocessError(f"recording not found: {rec}")
    try:
        reader = RecordingReader(rec, kinds=(INPUT,))  # the outputs are recomputed: not decoded
        _, rig = recording_config(reader)
    except (RecordingError, KeyError, ValueError) as e:
        raise ReprocessError(f"{rec}: {e}" if str(rec) not in str(e) else str(e)) from e
    cfg, st = _settings(reader.meta, overrides or {})
    name = rec.stem
    out = Path(out_dir) if out_dir is not None else rec.with_name(f"{name}_reprocessed")
    say = log or (lambda s: None)
    fps = float(cfg.sync.fps_hz)
    skel = get_skeleton(cfg.rig.skeleton)
    if st.augment:
        from rtkin.kinematics.augment import available_models

        if not available_models(cfg.rig.skeleton):  # before the long steps
            raise ReprocessError(f"reprocess.augment: the {cfg.rig.skeleton} keypoints give the marker augmenter "
                                 "none of its inputs")

    t = timings.now()
    sess = _reconstruct(reader, rig, cfg, progress)
    timings.add("reconstruct", t)
    timings.wall["of which live stages"], timings.cpu["of which live stages"] = sess.pipeline_s, sess.pipeline_cpu_s
    S = int(sess.slots[-1]) + 1
    slot_ns = sess.t0_ns + np.round(np.arange(S) * 1e9 / fps).astype(np.int64)

    t = timings.now()
    obs: dict[int, dict[int, int]] = {}
    for sk, slot in zip(sess.sks, sess.slots):
        for row, pid in enumerate(sk.person_ids):
            obs.setdefault(int(pid), {})[int(slot)] = row
    by_slot = {int(s): i for i, s in enumerate(sess.slots)}
    people, track_counts = repair_tracks(obs, lambda s, r: sess.sks[by_slot[s]].points[r], fps, st.tracks)
    if st.max_people:
        people = people[: st.max_people]
    timings.add("tracks", t)
    res = ReprocessResult(rec, out, name, fps, S / fps)
    res.counters = {"inputs": sess.inputs, "slots": S, "skeleton3d": len(sess.sks), **track_counts,
                    "people": len(people), "truncated": sess.truncated, "complete": sess.complete,
                    "malformed": sess.malformed}
    if not people:
        raise ReprocessError(f"{rec}: nobody was tracked for {st.tracks.min_track_s:g} s or more")
    existing = [out / f for f in output_files(name, [p.id for p in people], st) if (out / f).exists()]
    if existing and not force:
        raise ReprocessError(f"{existing[0]} exists (and {len(existing) - 1} more outputs); "
                             "choose another -o folder or pass --force")
    out.mkdir(parents=True, exist_ok=True)

    reports = []
    subject_pts = None
    for track in people:
        pr, rep = _person(track, sess, cfg, st, skel, slot_ns, out, name, fps, progress, timings, res.warnings)
        res.people.append(pr)
        res.files += pr.files
        reports.append(rep)
        if subject_pts is None:
            subject_pts = (pr.first_slot, rep.points)
    if st.report:
        t = timings.now()
        if progress is not None:
            progress("report", 0, 1)
        res.files.append(_report(res, reports, sess, rig, cfg, st, slot_ns, subject_pts, out, name))
        timings.add("report", t)
        if progress is not None:
            progress("report", 1, 1)
    timings.add("total", t_all)
    res.timings, res.cpu_timings = timings.wall, timings.cpu
    for w in res.warnings:
        say(f"rtkin: warning: {w}")
    return res


def _person(track: Track, sess: _Session, cfg, st: ReprocessSettings, skel, slot_ns, out: Path, name: str,
            fps: float, progress, timings: "_Timings", warnings: list):
    from rtkin.io.c3d import write_c3d
    from rtkin.io.mot import rotational_mask, write_mot
    from rtkin.io.report import PersonReport
    from rtkin.io.trc import write_trc

    pid = track.id
    t = timings.now()
    arr = _person_arrays(sess, track, skel.n_keypoints)
    first = arr["first"]
    T = arr["points"].shape[0]
    w = point_weights(arr["scores"], arr["n_views"], arr["reproj"], arr["points"], st.smoothing)
    X = smooth(arr["points"], w, fps, st.smoothing)
    aug = _augment(X, cfg, fps) if st.augment else None
    timings.add("smoothing", t)
    if progress is not None:
        progress(f"smoothing person {pid}", 1, 1)
    my_ns = slot_ns[first:first + T]
    time_s = (my_ns - sess.t0_ns) * 1e-9
    pr = PersonResult(pid, first, first + T - 1, int(arr["present"].sum()), 0, live_ids=sorted(track.sources))
    model_path = model = None
    if st.scaling:
        t = timings.now()
        if progress is not None:
            progress(f"scaling person {pid}", 0, 1)
        best = _best_frames(w, X, st.scaling_frames, cfg.rig.skeleton)
        try:
            model_path, pr.factors, warn, model = _scale(X, best, cfg, out / f"{name}_person{pid}_scaled.osim")
            warnings += [f"person {pid} scaling: {x}" for x in warn]
            pr.model = str(model_path)
            pr.files.append(model_path)
        except (ValueError, RuntimeError) as e:
            warnings.append(f"person {pid}: scaling failed ({e}); generic model used")
        timings.add("scaling", t)
        if progress is not None:
            progress(f"scaling person {pid}", 1, 1)
    t = timings.now()
    ik = _ik(cfg, st, model_path, model, pr.factors, pid, arr, X, my_ns, progress, aug)
    timings.add("ik", t)
    t = timings.now()
    rows = np.isfinite(X).all(-1).any(-1)
    if st.trc and rows.any():
        pts, names = X, skel.keypoints
        if skel.derived:
            pts, names = skel.with_derived(X), skel.points
        pr.files.append(write_trc(out / f"{name}_person{pid}.trc", time_s[rows], pts[rows], names, rate_hz=fps))
    if st.c3d and rows.any():
        lo, hi = np.flatnonzero(rows)[[0, -1]]
        pr.files.append(write_c3d(out / f"{name}_person{pid}.c3d", X[lo:hi + 1], skel.keypoints, fps,
                                  first_time_s=float(time_s[lo])))
    rep = PersonReport(pid, np.zeros(0), (), np.zeros((0, 0)), point_time_s=time_s, points=X,
                       keypoint_names=skel.keypoints, scale_factors=pr.factors if st.scaling else None,
                       model=pr.model or "generic model")
    if ik is None:
        warnings.append(f"person {pid}: IK solved no frame")
    else:
        coords, values, quality, solved, pr.backward_kept = ik
        pr.solved = int(solved.sum())
        ok = np.isfinite(values).all(1)
        pr.angle_frames = int(ok.sum())
        if st.mot and ok.any():
            pr.files.append(write_mot(out / f"{name}_person{pid}.mot", time_s[ok], coords, values[ok],
                                      rotational_mask(coords)))
        rep.time_s, rep.names, rep.values, rep.quality = time_s[ok], tuple(coords), values[ok], quality[ok]
    timings.add("write", t)
    return pr, rep


def _report(res: ReprocessResult, reports, sess: _Session, rig, cfg, st, slot_ns, subject, out: Path,
            name: str) -> Path:
    from rtkin.io.report import SessionReport, camera_reprojection, write_report

    rep = SessionReport(title=f"rtkin session report: {name} (reprocessed)", source=str(res.recording),
                        kind="offline reprocess", fps=res.fps, people=reports,
                        targets={str(n): (float(a), float(b)) for n, a, b in cfg.view.targets})
    rep.notes += res.warnings
    rep.notes.append(f"smoothing {st.smoothing.kind}; scaling {'from the best frames' if st.scaling else 'off'}; "
                     f"IK every {st.ik_stride(res.fps)} frame(s), interpolated between"
                     f"{', forward + backward' if st.backward_pass else ''}")
    if not sess.complete:
        rep.notes.append("the recording has no end marker (a killed run): reprocessed up to its last whole record")
    if subject is not None:
        first, pts = subject
        T = pts.shape[0]
        err, used = camera_reprojection(rig, sess.frames, slot_ns[first:first + T], pts)
        rep.cameras, rep.camera_time_s = rig.names, (slot_ns[first:first + T] - sess.t0_ns) * 1e-9
        rep.camera_reproj_px, rep.camera_used = err, used
    c = res.counters
    rep.accounting = {"KeypointFrames read": c["inputs"], **{f"frames from {k}": len(v) for k, v in sess.frames.items()},
                      "slots (session length)": f"{c['slots']} ({res.duration_s:.2f} s)",
                      "Skeleton3D slots": c["skeleton3d"], "live tracks": c["live_tracks"],
                      "fragments stitched": c["stitched"], "id switches repaired": c["swaps"],
                      "short tracks dropped": c["dropped_short"]}
    for p in res.people:
        rep.accounting[f"person {p.person_id}: slots {p.first_slot}-{p.last_slot}"] = (
            f"{p.frames} seen, {p.angle_frames} with joint angles ({p.solved} IK solves)"
            + (f", {p.backward_kept} from the backward pass" if p.backward_kept else ""))
    rep.accounting["recording complete"] = "yes" if sess.complete else "no (killed run)"
    return write_report(rep, out, f"{name}_report")
