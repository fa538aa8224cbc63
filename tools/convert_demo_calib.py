"""Regenerate calib/pose2sim_demo/Calib.toml from the Qualisys file installed with pose2sim.

Usage: python tools/convert_demo_calib.py
"""

from pathlib import Path

from rtkin.core import assets
from rtkin.cli import main

if __name__ == "__main__":
    out = Path(__file__).resolve().parents[1] / "calib" / "pose2sim_demo" / "Calib.toml"
    raise SystemExit(main(["calib", "convert", str(assets.demo_qca_path()), str(out), "--force"]))
