"""``rtkin`` command line: ``rtkin --version``, ``rtkin calib ...``, ``rtkin demo``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from . import __version__

__all__ = ["main"]


class CliError(Exception):
    """A user-facing error: printed as ``rtkin: error: ...`` with exit code 2, no traceback."""


# ----------------------------------------------------------------------------- calib


def _cmd_calib_convert(args: argparse.Namespace) -> int:
    from .calibration import CalibrationError, read_calib_toml, read_qca, write_calib_toml

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
    from .calibration import CalibrationError, load_calib

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


# ----------------------------------------------------------------------------- demo


def _cmd_demo(args: argparse.Namespace) -> int:
    """Virtual subject -> 2D corruption -> triangulation, with a summary against the truth."""
    from . import virtual
    from .triangulation import Triangulator

    if not args.synthetic:
        print("rtkin demo: the real-video demo needs the capture stage (not built yet); "
              "running the synthetic demo (rtkin demo --synthetic).")
    t0 = time.perf_counter()
    print(f"virtual subject: {args.duration:.0f} s at {args.fps:.0f} Hz, seed {args.seed} (forward kinematics, cached)")
    subject = virtual.simulate_subject(virtual.MotionSettings(duration_s=args.duration, fps=args.fps, seed=args.seed))
    rig = virtual.demo_rig()
    cs = virtual.CorruptionSettings(noise_px=args.noise_px, outlier_rate=args.outliers, dropout_rate=args.dropouts)
    views = virtual.render_views(rig, subject, corruption=cs, seed=args.seed)
    print(f"rendered {views.n_frames} frames x {len(rig)} cameras ({', '.join(rig.names)}): "
          f"noise {cs.noise_px} px, outliers {cs.outlier_rate:.0%}, dropouts {cs.dropout_rate:.0%}")
    tri = Triangulator(rig)
    kp = views.keypoints_of(0)
    tri(kp[:, 0])  # load compiled kernels before timing
    lat = np.empty(views.n_frames)
    pts = np.empty_like(views.truth_3d[:, 0])
    err_px = np.empty(pts.shape[:2])
    for t in range(views.n_frames):
        s = time.perf_counter()
        res = tri(kp[:, t])
        lat[t] = time.perf_counter() - s
        pts[t], err_px[t] = res.points, res.reproj_error_px
    err = np.linalg.norm(pts - views.truth_3d[:, 0], axis=-1) * 1e3
    print(f"triangulated: {np.isfinite(err).mean():.1%} of keypoints; 3D error vs truth "
          f"median {np.nanmedian(err):.1f} mm, p95 {np.nanpercentile(err, 95):.1f} mm; "
          f"reprojection median {np.nanmedian(err_px):.2f} px")
    print(f"triangulation latency per frame: p50 {np.percentile(lat, 50) * 1e6:.0f} us, "
          f"p99 {np.percentile(lat, 99) * 1e6:.0f} us; total {time.perf_counter() - t0:.1f} s")
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
    calib.set_defaults(func=lambda a: _usage(calib))

    demo = sub.add_parser("demo", help="run the demo (for now: the virtual subject through triangulation)")
    demo.add_argument("--synthetic", action="store_true", help="use the virtual subject instead of the demo videos")
    demo.add_argument("--duration", type=float, default=12.0, help="seconds of motion (default 12)")
    demo.add_argument("--fps", type=float, default=60.0, help="frame rate, Hz (default 60)")
    demo.add_argument("--seed", type=int, default=0, help="motion and corruption seed")
    demo.add_argument("--noise-px", type=float, default=3.0, help="2D noise std, px (default 3)")
    demo.add_argument("--outliers", type=float, default=0.02, help="fraction of outlier 2D points (default 0.02)")
    demo.add_argument("--dropouts", type=float, default=0.05, help="fraction of missing 2D points (default 0.05)")
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
