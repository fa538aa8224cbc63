"""Project-level checks: CI runs the README's test command; CLI behaviour; shipped calibration."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rtkin import __version__

from rtkin.core import assets
from rtkin.core.calibration import read_calib_toml, read_qca
from rtkin.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands():
    block = re.search(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert block, "README.md must start with a bash block of set-up commands"
    return [line.strip() for line in block.group(1).strip().splitlines()]


def test_readme_has_two_setup_commands_and_ci_runs_the_test_one():
    cmds = _readme_commands()
    assert len(cmds) == 2 and "rtkin demo" in cmds[0] and "pytest" in cmds[1]
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert cmds[1] in [line.strip() for line in ci]


def test_shipped_demo_calibration_is_the_converted_qualisys_file():
    shipped = read_calib_toml(ROOT / "calib" / "pose2sim_demo" / "Calib.toml")
    fresh = read_qca(assets.demo_qca_path())
    assert shipped.names == fresh.names
    for a, b in zip(shipped, fresh):  # computed values: equal to rounding (numpy / opencv versions differ)
        np.testing.assert_allclose(a.K, b.K, rtol=1e-12, atol=1e-9)
        np.testing.assert_allclose(a.rvec, b.rvec, rtol=0, atol=1e-12)
        np.testing.assert_allclose(a.tvec, b.tvec, rtol=0, atol=1e-12)


def test_version_and_console_script():
    out = subprocess.run([sys.executable, "-m", "rtkin", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"rtkin {__version__}"


def test_calib_convert_and_show(tmp_path, capsys):
    out = tmp_path / "rig" / "Calib.toml"
    assert main(["calib", "convert", str(assets.demo_qca_path()), str(out)]) == 0
    assert read_calib_toml(out).names == ("cam01", "cam02", "cam03", "cam04")
    assert main(["calib", "convert", str(assets.demo_qca_path()), str(out)]) == 2  # no silent overwrite
    assert "--force" in capsys.readouterr().err
    assert main(["calib", "show", str(out)]) == 0
    text = capsys.readouterr().out
    assert "cam03" in text and "1088x1920" in text and "+2.088" in text  # cam03 hangs 2.09 m up


@pytest.mark.parametrize(
    "argv, message",
    [
        (["calib", "show", "does-not-exist.toml"], "not found"),
        (["calib", "convert", "does-not-exist.qca.txt", "x.toml"], "not found"),
    ],
)
def test_cli_errors_are_clear_and_without_traceback(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_cli_rejects_a_malformed_calibration(tmp_path, capsys):
    bad = tmp_path / "Calib.toml"
    bad.write_text("[cam1]\nname = 'a'\nsize = [1, 2]\n")
    assert main(["calib", "show", str(bad)]) == 2
    assert "lacks" in capsys.readouterr().err


def test_example_config_is_complete_and_equals_the_defaults():
    """The shipped example lists every setting at its default (so it documents them all)."""
    import dataclasses

    from rtkin.runtime.config import EXAMPLE_CONFIG, RunConfig, load_config

    cfg = load_config(EXAMPLE_CONFIG)
    assert dataclasses.replace(cfg, base_dir=".") == RunConfig()
    text = EXAMPLE_CONFIG.read_text()
    for section in ("[run]", "[rig]", "[transport]", "[source]", "[sync]", "[recording]",
                    "[reconstruction.association]", "[reconstruction.triangulation]",
                    "[reconstruction.tracking]", "[reconstruction.filter]"):
        assert section in text
