"""Bad input is refused before anything starts: one line, exit code 2, no traceback, and no earlier
output touched (README "rtkin run"; issue "Real sessions")."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from rtkin.cli import main
from rtkin.runtime.config import ConfigError, RunConfig, load_config
from rtkin.runtime.preflight import check_endpoint_free, claim_session, preflight


def _write(tmp_path: Path, body: str, name="run.toml") -> Path:
    p = tmp_path / name
    p.write_text(body)
    return p


def _transport(tmp_path) -> str:
    return f"""
[transport]
keypoints = "ipc://{tmp_path}/kp.sock"
outputs = "ipc://{tmp_path}/out.sock"
angles = "ipc://{tmp_path}/ik{{worker}}.sock"
"""


def _fails(capsys, args, *needles) -> str:
    """``rtkin ARGS`` exits 2 with one ``rtkin: error:`` line containing every needle."""
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("rtkin: error: "), err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def earlier(tmp_path):
    """An earlier session's files in the output folder: nothing may touch them."""
    out = tmp_path / "out"
    out.mkdir()
    files = {out / "s.rtkrec": b"earlier recording", out / "s_person0.mot": b"earlier mot"}
    for p, data in files.items():
        p.write_bytes(data)
    yield out
    for p, data in files.items():
        assert p.read_bytes() == data


def test_unknown_skeleton_is_refused_and_a_spelling_variant_is_normalised(tmp_path, capsys, earlier):
    cfg = _write(tmp_path, f'[run]\nname = "s"\noutput_dir = "{earlier}"\n[rig]\nskeleton = "COCO_18"\n')
    _fails(capsys, ["run", cfg], "rig.skeleton", "COCO_18", "known skeletons")
    cfg = _write(tmp_path, '[rig]\nskeleton = "coco17"\n', "ok.toml")
    assert load_config(cfg).rig.skeleton == "COCO_17"  # one spelling on the wire: no mismatch later


def test_missing_calibration_and_unknown_camera(tmp_path, capsys, earlier):
    cfg = _write(tmp_path, f'[run]\nname = "s"\noutput_dir = "{earlier}"\n[rig]\ncalibration = "nope/Calib.toml"\n'
                 + _transport(tmp_path))
    _fails(capsys, ["run", cfg], "[rig] calibration", "file not found", "nope/Calib.toml")
    cfg = _write(tmp_path, f'[run]\nname = "s"\noutput_dir = "{earlier}"\n[rig]\ncameras = ["cam01", "cam9"]\n'
                 + _transport(tmp_path))
    _fails(capsys, ["run", cfg], "[rig] cameras", "cam9", "cam01, cam02, cam03, cam04")


def test_openpose_folders_that_do_not_match_the_cameras(tmp_path, capsys, earlier):
    root = tmp_path / "pose"
    for name in ("c1_json", "c2_json", "c3_json", "c4_json"):
        (root / name).mkdir(parents=True)
        (root / name / "f_000000.json").write_text('{"people": []}')
    cfg = _write(tmp_path, f'[run]\nname = "s"\noutput_dir = "{earlier}"\n[source]\nkind = "openpose"\n'
                 f'[source.openpose]\nroot = "{root}"\n' + _transport(tmp_path))
    line = _fails(capsys, ["run", cfg], "cam01_json", "{camera}_json", "found: c1_json, c2_json, c3_json, c4_json")
    assert "cam04" in line


def test_a_video_that_does_not_exist(tmp_path, capsys, earlier):
    cfg = _write(tmp_path, f'[run]\nname = "s"\noutput_dir = "{earlier}"\n[source]\nkind = "capture"\n'
                 '[source.capture]\ninputs = ["a.mp4", "b.mp4", "c.mp4", "d.mp4"]\n' + _transport(tmp_path))
    _fails(capsys, ["run", cfg], "[source.capture] inputs", "cam01", "a.mp4", "not found")


def test_duration_must_be_positive(tmp_path, capsys, earlier):
    cfg = _write(tmp_path, f'[run]\nname = "s"\noutput_dir = "{earlier}"\n' + _transport(tmp_path))
    _fails(capsys, ["run", cfg, "--duration", "-1"], "--duration must be > 0")
    _fails(capsys, ["demo", "--synthetic", "--duration", "0", "--output", earlier], "--duration must be > 0")


def test_a_busy_port_fails_at_once(tmp_path, capsys, earlier):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        assert check_endpoint_free(f"tcp://127.0.0.1:{port}")
        cfg = _write(tmp_path, f'[run]\nname = "s"\noutput_dir = "{earlier}"\n[transport]\n'
                     f'keypoints = "tcp://127.0.0.1:{port}"\noutputs = "ipc://{tmp_path}/o.sock"\n'
                     f'angles = "ipc://{tmp_path}/ik{{worker}}.sock"\n')
        _fails(capsys, ["run", cfg], "[transport] keypoints", str(port), "in use")
    assert check_endpoint_free(f"tcp://127.0.0.1:{port}") is None


def test_a_pose2sim_config_is_recognised(tmp_path, capsys):
    import Pose2Sim

    p2s = Path(Pose2Sim.__file__).parent / "Demo_SinglePerson" / "Config.toml"
    _fails(capsys, ["run", p2s], "Pose2Sim Config.toml", "rtkin reprocess")


def test_unknown_keys_name_their_section(tmp_path, capsys):
    _fails(capsys, ["run", _write(tmp_path, 'colour = "red"\n')], "top level", "colour")
    _fails(capsys, ["run", _write(tmp_path, '[sync]\nfps = 60\n', "b.toml")], "[sync]", "fps")


def test_an_existing_session_is_never_replaced(tmp_path, earlier):
    cfg = load_config(_write(tmp_path, f'[run]\nname = "s"\noutput_dir = "{earlier}"\n'))
    settled = claim_session(cfg)
    assert settled.run.name == "s-2" and Path(settled.run.output_dir) == earlier.resolve()
    (earlier / "s-2.rtkrec.partial").write_bytes(b"a killed run")
    assert claim_session(cfg).run.name == "s-3"
    (earlier / "s-2.rtkrec.partial").unlink()
    assert claim_session(cfg, force=True).run.name == "s"  # --force: the user asked to replace it


def test_an_explicit_recording_path_that_exists_is_refused(tmp_path, capsys, earlier):
    other = tmp_path / "notes.txt"
    other.write_text("unrelated file")
    cfg = _write(tmp_path, f'[run]\nname = "t"\noutput_dir = "{earlier}"\n[recording]\npath = "{other}"\n'
                 + _transport(tmp_path))
    _fails(capsys, ["run", cfg], "[recording] path", "exists", "--force")
    assert other.read_text() == "unrelated file"


def test_an_output_folder_that_cannot_be_written(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cfg = _write(tmp_path, f'[run]\noutput_dir = "{blocker}/out"\n' + _transport(tmp_path))
    _fails(capsys, ["run", cfg], "[run] output_dir", "cannot write")


def test_outputs_are_relative_to_the_working_directory(tmp_path, monkeypatch):
    """The example config lives inside the package: its outputs must not."""
    from rtkin.runtime.config import EXAMPLE_CONFIG

    monkeypatch.chdir(tmp_path)
    cfg = load_config(EXAMPLE_CONFIG)
    assert cfg.output_dir().resolve().is_relative_to(tmp_path)
    assert not cfg.recording_path().resolve().is_relative_to(EXAMPLE_CONFIG.parent)


def test_preflight_returns_the_settled_config(tmp_path):
    cfg = load_config(_write(tmp_path, f'[run]\noutput_dir = "{tmp_path}/o"\n' + _transport(tmp_path)))
    settled = preflight(cfg)
    assert isinstance(settled, RunConfig) and Path(settled.run.output_dir).is_dir()
    with pytest.raises(ConfigError):
        preflight(load_config(_write(tmp_path, '[rig]\ncalibration = "x.toml"\n', "bad.toml")))


def test_replay_of_a_recording_with_a_bad_header(tmp_path, capsys):
    from rtkin.io.recording import RecordingWriter

    bad = tmp_path / "bad.rtkrec"
    RecordingWriter(bad, {"config": {"rig": {"skeleton": "nope"}}, "calibration_toml": "x"}).close()
    _fails(capsys, ["replay", bad], str(bad), "configuration in its header is not valid")
    nocal = tmp_path / "nocal.rtkrec"
    RecordingWriter(nocal, {"config": {}}).close()
    _fails(capsys, ["replay", nocal], "no calibration")
    junk = tmp_path / "junk.rtkrec"
    junk.write_bytes(b"not a recording at all")
    _fails(capsys, ["replay", junk], "not an rtkin recording")
