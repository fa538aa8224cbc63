"""``rtkin reprocess`` and ``rtkin export`` on a virtual session recorded through the live stages:
files, shared time axis, frame counts, accuracy, OpenSim loading upright, the report in a real
headless browser, a killed run's recording, track repair, Pose2Sim project folders."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from rtkin import cli
from rtkin.io.c3d import read_c3d
from rtkin.io.mot import read_mot
from rtkin.io.trc import read_trc
from rtkin.offline.simulate import record_views
from rtkin.offline.tracks import TrackRepairSettings, repair_tracks
from rtkin.sim import virtual

FPS = 30.0
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def scene():
    truth = virtual.simulate_subject(virtual.MotionSettings(duration_s=6.0, fps=FPS, seed=4))
    views = virtual.render_views(virtual.demo_rig(), truth, seed=6)
    return truth, views


@pytest.fixture(scope="module")
def recording(scene, tmp_path_factory):
    d = tmp_path_factory.mktemp("rec")
    return record_views(d / "sess.rtkrec", scene[1])


@pytest.fixture(scope="module")
def reprocessed(recording, tmp_path_factory):
    out = tmp_path_factory.mktemp("rep") / "out"
    assert cli.main(["reprocess", str(recording), "-o", str(out)]) == 0
    return out


def _truth_rmse_deg(truth, mot, name):
    t, cols, vals, in_deg = read_mot(mot)
    f = np.round(t * FPS).astype(int)
    est = np.radians(vals[:, cols.index(name)]) if in_deg else vals[:, cols.index(name)]
    return float(np.degrees(np.sqrt(np.mean((est - truth.motion[name][f]) ** 2))))


def test_reprocess_writes_every_output_on_one_time_axis(reprocessed, scene):
    truth, views = scene
    names = {p.name for p in reprocessed.iterdir()}
    for f in ("sess_person0.trc", "sess_person0.mot", "sess_person0.c3d", "sess_person0_scaled.osim",
              "sess_report.html"):
        assert f in names, f
    t_mot, cols, _, in_deg = read_mot(reprocessed / "sess_person0.mot")
    t_trc, pts, kp = read_trc(reprocessed / "sess_person0.trc")
    t_c3d, pts_c3d, _, rate = read_c3d(reprocessed / "sess_person0.c3d")
    # every frame of the session, the last one too (Pose2Sim's filter drops it), on one axis from 0 s
    assert len(t_mot) == len(t_trc) == len(t_c3d) == views.n_frames
    for t in (t_mot, t_trc, t_c3d):
        assert t[0] == pytest.approx(0.0, abs=1e-6)
        np.testing.assert_allclose(t * FPS, np.arange(views.n_frames), atol=1e-3)
    np.testing.assert_allclose(pts_c3d, pts[:, : pts_c3d.shape[1]], atol=1e-5)
    assert in_deg and rate == FPS
    # accuracy against the truth, scored from the written file
    assert _truth_rmse_deg(truth, reprocessed / "sess_person0.mot", "knee_angle_r") < 3.0
    tr = views.truth_3d[:, 0]
    assert np.nanmedian(np.linalg.norm(pts[:, :26] - tr, axis=-1)) < 0.008


def test_ik_stride_takes_a_rate_a_hair_under_a_multiple_as_that_multiple():
    from rtkin.offline.reprocess import ReprocessSettings

    st = ReprocessSettings()  # 20 Hz
    # a 16666667 ns period (59.9999988 Hz) or NTSC's 59.94 Hz solve every 3rd frame, as 60 Hz does
    assert [st.ik_stride(f) for f in (60.0, 1e9 / 16666667, 59.94, 30.0, 29.97, 50.0, 120.0)] == [3, 3, 3, 1, 1, 2, 6]
    assert ReprocessSettings(ik_rate_hz=0).ik_stride(60.0) == 1


def test_outputs_load_upright_in_opensim(reprocessed):
    import opensim as osim

    osim.Logger.setLevelString("error")
    table = osim.TimeSeriesTableVec3(str(reprocessed / "sess_person0.trc"))
    labels = list(table.getColumnLabels())
    row = table.getRowAtIndex(0)
    assert row[labels.index("Head")].get(1) - row[labels.index("RAnkle")].get(1) > 1.2  # y up in OpenSim
    model = osim.Model(str(reprocessed / "sess_person0_scaled.osim"))
    state = model.initSystem()
    sto = osim.Storage(str(reprocessed / "sess_person0.mot"))
    labels = [sto.getColumnLabels().get(i) for i in range(sto.getColumnLabels().getSize())]
    first = sto.getStateVector(0).getData()
    cs = model.getCoordinateSet()
    for i, name in enumerate(labels[1:]):
        if cs.contains(name):
            c = cs.get(name)
            v = first.get(i)
            c.setValue(state, np.radians(v) if c.getMotionType() == 1 else v, False)
    model.realizePosition(state)
    head = model.getBodySet().get("head").getPositionInGround(state).get(1)
    foot = model.getBodySet().get("calcn_r").getPositionInGround(state).get(1)
    assert head - foot > 1.2


def test_reprocess_refuses_to_overwrite_and_bad_settings(recording, reprocessed, tmp_path, capsys):
    before = (reprocessed / "sess_person0.mot").stat().st_mtime_ns
    assert cli.main(["reprocess", str(recording), "-o", str(reprocessed)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("rtkin: error:") and "exists" in err[-1] and "--force" in err[-1]
    assert (reprocessed / "sess_person0.mot").stat().st_mtime_ns == before
    bad = tmp_path / "bad.toml"
    bad.write_text("[reprocess]\nsmoothin = 1\n")
    assert cli.main(["reprocess", str(recording), "-o", str(tmp_path / "x"), "--config", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "smoothin" in err[0] and "Traceback" not in err[0]


def test_reprocess_with_other_settings(recording, tmp_path):
    over = tmp_path / "over.toml"
    over.write_text('[reprocess]\nscaling = false\nreport = false\nik_rate_hz = 10.0\n[reprocess.smoothing]\nkind = "butterworth"\n'
                    "[ik.solver]\nmax_iterations = 4\n")
    out = tmp_path / "o"
    assert cli.main(["reprocess", str(recording), "-o", str(out), "--config", str(over)]) == 0
    names = {p.name for p in out.iterdir()}
    assert "sess_person0.mot" in names and "sess_report.html" not in names and "sess_person0_scaled.osim" not in names
    t, _, vals, _ = read_mot(out / "sess_person0.mot")
    assert np.isfinite(vals).all() and len(t) > 100


def test_reprocess_with_marker_augmentation(recording, scene, tmp_path):
    """``[reprocess] augment = true``: the streaming augmenter stepped over the session, its markers
    tracked by the IK beside the keypoints (the same stage and IK hook as live)."""
    over = tmp_path / "aug.toml"
    over.write_text("[reprocess]\naugment = true\nreport = false\nscaling = false\n")
    out = tmp_path / "a"
    assert cli.main(["reprocess", str(recording), "-o", str(out), "--config", str(over)]) == 0
    t, names, vals, _ = read_mot(out / "sess_person0.mot")
    assert np.isfinite(vals).all() and len(t) > 100 and "knee_angle_r" in names
    # on the model's own keypoint markers augmentation costs accuracy (README), but stays sane
    assert _truth_rmse_deg(scene[0], out / "sess_person0.mot", "knee_angle_r") < 15.0


def _chromium():
    if os.environ.get("RTKIN_SKIP_BROWSER") == "1":
        pytest.skip("RTKIN_SKIP_BROWSER=1")
    exe = CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")
    if not exe:
        pytest.fail("the report test needs Debian's chromium (apt-get install -y chromium)")
    pytest.importorskip("playwright.sync_api", reason="pip install playwright (never `playwright install`)")
    return exe


def test_report_opens_in_headless_chromium(reprocessed, tmp_path):
    from playwright.sync_api import sync_playwright

    exe = _chromium()
    html = reprocessed / "sess_report.html"
    text = html.read_text()
    assert "http://" not in text and "https://" not in text and "<script" not in text  # self-contained
    for png in ("angles_person0", "trajectories_person0", "scaling_person0", "cameras"):
        assert (reprocessed / f"sess_report_{png}.png").stat().st_size > 1000
    shot = tmp_path / "report.png"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, headless=True,
                                     args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            page.goto(html.as_uri())
            page.wait_for_load_state("load")
            drawn = page.evaluate("Array.from(document.images).map(i => i.complete && i.naturalWidth > 300)")
            assert len(drawn) >= 4 and all(drawn)
            assert page.locator("text=Range of motion").count() >= 1
            assert page.locator("text=knee_angle_r").count() >= 1
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert shot.stat().st_size > 20_000


def test_export_of_a_killed_run(recording, tmp_path):
    cut = tmp_path / "killed.rtkrec"
    data = recording.read_bytes()
    cut.write_bytes(data[: int(len(data) * 0.7) + 5])  # mid-record, no end marker
    out = tmp_path / "exp"
    assert cli.main(["export", str(cut), "--mot", "--trc", "--c3d", "-o", str(out)]) == 0
    t_mot, cols, vals, _ = read_mot(out / "killed_person0.mot")
    t_trc, pts, _ = read_trc(out / "killed_person0.trc")
    t_c3d, pts_c3d, names, _ = read_c3d(out / "killed_person0.c3d")
    finite = np.isfinite(vals)  # a column is measured throughout, or NaN throughout (unobservable)
    assert len(t_mot) > 60 and finite[:, cols.index("knee_angle_r")].all()
    assert (finite.all(axis=0) | ~finite.any(axis=0)).all() and finite.all(axis=0).sum() > 20
    assert names[:3] == ("Hip", "RHip", "RKnee") or "RKnee" in names
    assert np.isfinite(pts_c3d).any() and pts_c3d.shape[1] == 26
    # the live outputs as recorded, on one axis: every MOT time is a TRC time
    assert t_trc[0] == pytest.approx(0.0, abs=1e-6)
    assert np.abs(t_mot[:, None] - t_trc[None]).min(1).max() < 1e-6
    assert not (out / "killed_report.html").exists()
    assert cli.main(["export", str(cut), "--mot", "-o", str(out)]) == 2  # exists: refused


def test_track_repair_stitches_fragments_and_swaps_back():
    K = 6
    base = np.zeros((K, 3))
    base[:, 2] = np.linspace(0, 1.7, K)

    def at(x, y):
        return base + [x, y, 0]

    pts = {}
    obs = {0: {}, 1: {}, 2: {}, 3: {}}
    for s in range(100):
        a = at(0.01 * s, 0.0)  # person A walks +x
        b = at(1.0 - 0.01 * s, 0.3)  # person B walks -x, 0.3 m apart
        if s < 40:
            obs[0][s], obs[1][s] = 0, 1
            pts[(s, 0)], pts[(s, 1)] = a, b
        elif s < 45:
            pass  # both lost 5 frames
        elif s < 70:  # tracks restarted with new ids 2 (A) and 3 (B)
            obs[2][s], obs[3][s] = 0, 1
            pts[(s, 0)], pts[(s, 1)] = a, b
        else:  # an id switch: id 2 now carries B and id 3 carries A
            obs[2][s], obs[3][s] = 0, 1
            pts[(s, 0)], pts[(s, 1)] = b, a
    people, counts = repair_tracks(obs, lambda s, r: pts[(s, r)], 30.0, TrackRepairSettings(min_track_s=0.5))
    assert counts["stitched"] == 2 and counts["swaps"] == 1 and len(people) == 2
    for p in people:
        xs = [pts[(s, r)][0, 0] for s, r in sorted(p.rows.items())]
        assert np.all(np.diff(xs) > 0) or np.all(np.diff(xs) < 0)  # one person each, whole session


def _pose2sim_project(root, views):
    import tomllib

    import Pose2Sim
    import rtoml

    from rtkin.core.calibration import write_calib_toml

    cfg = tomllib.loads((os.path.join(os.path.dirname(Pose2Sim.__file__), "Demo_SinglePerson", "Config.toml")
                         and open(os.path.join(os.path.dirname(Pose2Sim.__file__), "Demo_SinglePerson",
                                               "Config.toml")).read()))
    cfg["project"].update(frame_rate=int(FPS), participant_height=1.68, participant_mass=65.0)
    cfg["pose"]["pose_model"] = "Body_with_feet"
    cfg["filtering"]["butterworth"]["cut_off_frequency"] = 5
    (root / "calibration").mkdir(parents=True)
    write_calib_toml(views.rig, root / "calibration" / "Calib.toml")
    (root / "Config.toml").write_text(rtoml.dumps(cfg))
    for c, cam in enumerate(views.rig.names):
        d = root / "pose" / f"{cam}_json"
        d.mkdir(parents=True)
        for t, fr in enumerate(views.frames[c]):
            people = [{"pose_keypoints_2d": [round(float(v), 3) for v in p.ravel()]} for p in fr.keypoints]
            (d / f"{cam}_{t:06d}.json").write_text(json.dumps({"version": 1.3, "people": people}))


def test_pose2sim_project_folder(scene, tmp_path, capsys):
    import opensim as osim

    truth, views = scene
    proj = tmp_path / "Trial_1"
    _pose2sim_project(proj, views)
    over = tmp_path / "fast.toml"
    over.write_text("[reprocess]\nreport = false\n")
    assert cli.main(["reprocess", str(proj), "--config", str(over)]) == 0
    err = capsys.readouterr().err.splitlines()
    mapped = [l for l in err if "Pose2Sim project" in l]
    ignored = [l for l in err if "settings ignored" in l]
    assert len(ignored) == 1 and "pose.mode" in ignored[0] and "project.frame_rate" not in ignored[0]
    assert "30 Hz" in mapped[0] and "HALPE_26" in mapped[0] and "butterworth" in mapped[0] and "1.68" in mapped[0]
    out = proj / "rtkin"
    assert (out / "Trial_1.rtkrec").is_file()
    trc = out / "Trial_1_person0.trc"
    table = osim.TimeSeriesTableVec3(str(trc))
    labels = list(table.getColumnLabels())
    row = table.getRowAtIndex(0)
    assert row[labels.index("Head")].get(1) - row[labels.index("RAnkle")].get(1) > 1.2  # upright in OpenSim
    assert _truth_rmse_deg(truth, out / "Trial_1_person0.mot", "knee_angle_l") < 3.5


def test_end_of_run_report_from_the_live_outputs(recording):
    """What `rtkin run` writes at the end (unless --no-report): the report of the live outputs."""
    from rtkin.offline.export import export_recording

    assert cli._parser().parse_args(["run", "x.toml", "--no-report"]).no_report
    files = export_recording(recording, recording.parent, name="sess", mot=False, trc=False, c3d=False)
    html = recording.parent / "sess_report.html"
    assert html in files
    text = html.read_text()
    assert "live outputs" in text and "Range of motion" in text and "knee_angle_r" in text
    assert (recording.parent / "sess_report_angles_person0.png").is_file()
