"""Real sessions, start to finish (issue "Real sessions"): a run longer than the old pipe limit ends
by itself and writes everything; a file played as fast as possible loses no frame; every frame is
accounted for; a second Ctrl-C stops at once."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rtkin.core.calibration import write_calib_toml
from rtkin.io.recording import RecordingReader
from rtkin.runtime.config import load_config
from rtkin.runtime.runner import Runner
from rtkin.runtime.summary import ACCOUNT_COLUMNS, frame_accounting
from rtkin.sim import virtual


def _transport(tmp_path) -> str:
    return (f'[transport]\nkeypoints = "ipc://{tmp_path}/kp.sock"\noutputs = "ipc://{tmp_path}/out.sock"\n'
            f'angles = "ipc://{tmp_path}/ik{{worker}}.sock"\n')


def _check_books(result):
    acc = frame_accounting(result.reports, result.sent)
    assert acc["balanced"], acc
    for row in acc["rows"].values():  # each column is a count, the columns add up to what was sent
        assert all(row[c] >= 0 for c in ACCOUNT_COLUMNS)
        assert row["sent"] == sum(row[c] for c in ACCOUNT_COLUMNS[1:])
    return acc


def test_a_real_time_run_longer_than_a_pipe_ends_by_itself_with_every_output(tmp_path):
    """25 s in real time, two people: the reports that once filled the pipe (and hung the exit) are
    summaries; the run ends on its own, every frame is accounted for, every file is written."""
    cfg = load_config(_write(tmp_path, f"""
[run]
name = "long"
output_dir = "{tmp_path / 'out'}"
duration_s = 25.0
[source.virtual]
duration_s = 60.0
people = 2
{_transport(tmp_path)}"""))
    runner = Runner(cfg, log=lambda *a: None)
    result = runner.run()
    assert not result.errors, result.errors
    assert not result.killed  # every node stopped by itself
    for name, rep in result.reports.items():
        assert len(pickle.dumps(rep)) < 32_000, name  # small reports, whatever the run length
    acc = _check_books(result)
    assert acc["total"]["lost"] == 0 and acc["total"]["used"] > 0.9 * acc["total"]["sent"]
    from rtkin.demo import finish_run

    summary = finish_run(runner, result, log=lambda *a: None)
    rec = Path(summary["recording"])
    assert rec.name == "long.rtkrec" and RecordingReader(rec).meta  # closed: not a .partial
    assert len(summary["trc"]) == 2 and len(summary["mot"]) == 2 and len(summary["c3d"]) == 2  # one per person
    assert len(summary["report"]) == 1 and Path(summary["report"][0]).is_file()


def _write(tmp_path, text, name="run.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def _openpose_session(root: Path, n_frames: int, n_cams: int = 6) -> Path:
    """The virtual subject seen by a ring of cameras, written as Pose2Sim's OpenPose-JSON folders
    (``<cam>_json/<cam>_<frame>.json``), with its Calib.toml; returns the calibration path."""
    rig = virtual.ring_rig(n_cams)
    subject = virtual.simulate_subject(virtual.MotionSettings(duration_s=n_frames / 60.0, fps=60.0, seed=3))
    views = virtual.render_views(rig, [subject], "HALPE_26", virtual.CorruptionSettings(), seed=1)
    for c, cam in enumerate(rig.names):
        folder = root / f"{cam}_json"
        folder.mkdir(parents=True)
        for i, frame in enumerate(views.frames[c][:n_frames]):
            people = [{"pose_keypoints_2d": p.reshape(-1).astype(float).tolist()} for p in frame.keypoints]
            (folder / f"{cam}_{i:06d}.json").write_text(json.dumps({"people": people}))
    calib = root / "Calib.toml"
    write_calib_toml(rig, calib)
    return calib


def _fast_openpose_run(tmp_path, name: str, n: int, n_cams: int, ik: str):
    """The config of an OpenPose session (:func:`_openpose_session`) played as fast as possible,
    with ``ik`` as its ``[ik]`` table's body."""
    calib = _openpose_session(tmp_path / "pose", n, n_cams=n_cams)
    return load_config(_write(tmp_path, f"""
[run]
name = "{name}"
output_dir = "{tmp_path / 'out'}"
[rig]
calibration = "{calib}"
[source]
kind = "openpose"
realtime = false
[source.openpose]
root = "{tmp_path / 'pose'}"
[ik]
{ik}
{_transport(tmp_path)}"""))


def test_as_fast_as_possible_every_frame_comes_out(tmp_path):
    """An OpenPose folder of 6 cameras played as fast as possible: one Skeleton3D per frame, none
    lost to a high-water mark, joint angles for every frame with the subject."""
    n = 300
    cfg = _fast_openpose_run(tmp_path, "fast", n, 6, "scaling = false")
    runner = Runner(cfg, log=lambda *a: None)
    result = runner.run()
    assert not result.errors, result.errors
    acc = _check_books(result)
    assert acc["total"]["sent"] == 6 * n and acc["total"]["lost"] == 0 and acc["total"]["shed"] == 0
    assert acc["total"]["late"] == 0 and acc["total"]["used"] == 6 * n
    sync = result.reports["sync"]
    assert sync["outputs"] == n and sync["sync"]["incomplete"] == 0
    assert sync["ended"] == sorted(runner.rig.names) and sync["receiver"]["malformed"] == 0  # every end heard
    assert not sync["latency_ms"].get("n")  # no capture->output latency for stream times
    served = sum(v["outputs"] for k, v in result.reports.items() if k.startswith("ik:"))
    assert served >= n - 5  # the subject is in (nearly) every frame; each gets joint angles
    assert result.reports["recorder"]["inputs"] == 6 * n


def test_a_fast_run_ends_with_its_latest_scaling_in_the_model_file(tmp_path, capfd):
    """Played as fast as possible, a session's refinements come faster than the background writer
    writes them: at the end the model file holds the last estimate (not the first one written),
    is listed in the summary, and no half-written file is left."""
    import re

    cfg = _fast_openpose_run(tmp_path, "scaled", 360, 4, "scaling = true\nscaling_seconds = 3.0")
    runner = Runner(cfg, log=lambda *a: None)
    result = runner.run()
    assert not result.errors, result.errors
    from rtkin.demo import finish_run

    summary = finish_run(runner, result, log=lambda *a: None, report=False)
    path = tmp_path / "out" / "scaled_person0_scaled.osim"
    assert summary["scaled"] == [str(path)]
    logged = re.findall(r"person 0 scaling at [\d.]+ s of usable data: \w+, stature [\d.]+ m, pelvis ([\d.]+)",
                        capfd.readouterr().err)
    assert len(logged) >= 4
    from osim_checks import pelvis_factor_in

    assert pelvis_factor_in(path) == pytest.approx(float(logged[-1]), abs=6e-4)
    assert not list(path.parent.glob(".*.part"))


def test_a_second_ctrl_c_stops_everything_at_once(tmp_path):
    cfg = _write(tmp_path, f"""
[run]
name = "c"
output_dir = "{tmp_path / 'out'}"
[source.virtual]
duration_s = 60.0
{_transport(tmp_path)}""")
    proc = subprocess.Popen([sys.executable, "-m", "rtkin", "run", str(cfg)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    partial = tmp_path / "out" / "c.rtkrec.partial"
    try:
        deadline = time.monotonic() + 120  # a fresh machine compiles kernels first
        while time.monotonic() < deadline and (not partial.exists() or partial.stat().st_size < 200_000):
            time.sleep(0.3)
        assert partial.exists()
        os.killpg(proc.pid, signal.SIGINT)
        time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGINT)  # impatient: a second Ctrl-C
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    # (the second Ctrl-C lands while the nodes stop, or after: then it ends the exports at once)
    assert "second interrupt" in stdout + stderr or proc.returncode == 130
    assert "Traceback" not in stderr
    rec = next(p for p in (tmp_path / "out" / "c.rtkrec", partial) if p.exists())
    assert sum(1 for _ in RecordingReader(rec)) > 100  # whatever was written replays
