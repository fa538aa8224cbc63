"""Many sessions: one after the other, in local worker processes, and on a Dask cluster with two
worker processes (LocalCluster on loopback); the outputs are identical, and a corrupt recording
is reported without stopping the others."""

from __future__ import annotations

import logging

import pytest

from rtkin import cli
from rtkin.offline.batch import run_batch
from rtkin.offline.simulate import record_views
from rtkin.sim import virtual

FPS = 30.0
OVERRIDES = "[reprocess]\nreport = false\nscaling = false\n"  # the suite stays fast: scaling costs ~2 s a session


@pytest.fixture(scope="module")
def sessions(tmp_path_factory):
    d = tmp_path_factory.mktemp("sessions")
    recs = []
    for seed in (1, 2, 3):
        truth = virtual.simulate_subject(virtual.MotionSettings(duration_s=2.5, fps=FPS, seed=seed))
        views = virtual.render_views(virtual.demo_rig(), truth, seed=seed)
        recs.append(record_views(d / f"s{seed}.rtkrec", views, angles=False))
    bad = d / "s9_corrupt.rtkrec"
    bad.write_bytes(b"RTKREC1\n" + b"\xff" * 64)  # a corrupt header
    over = d / "over.toml"
    over.write_text(OVERRIDES)
    return recs, bad, over


def _outputs(root, recs):
    out = {}
    for r in recs:
        for f in sorted((root / r.stem).iterdir()):
            if f.suffix in (".mot", ".trc", ".c3d", ".osim"):
                out[f"{r.stem}/{f.name}"] = f.read_bytes()
    return out


def test_dask_cluster_gives_the_sequential_outputs_and_reports_the_corrupt_session(sessions, tmp_path, capsys):
    distributed = pytest.importorskip("distributed", reason='pip install "rtkin[dask]"')
    recs, bad, over = sessions
    seq = run_batch(recs, tmp_path / "seq", {"reprocess": {"report": False, "scaling": False}}, workers=1)
    assert all(o.ok for o in seq), [o.error for o in seq]
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None, silence_logs=logging.ERROR) as cluster:
        assert len(cluster.workers) == 2
        rc = cli.main(["reprocess", *map(str, recs[:2]), str(bad), str(recs[2]), "-o", str(tmp_path / "dask"),
                       "--config", str(over), "--scheduler", cluster.scheduler_address])
    out = capsys.readouterr().out
    assert rc == 1  # one session failed
    assert "3 of 4 sessions reprocessed; 1 failed" in out
    failed = [l for l in out.splitlines() if "FAILED" in l]
    assert len(failed) == 1 and "s9_corrupt" in failed[0] and "corrupt header" in failed[0]
    a, b = _outputs(tmp_path / "seq", recs), _outputs(tmp_path / "dask", recs)
    assert len(a) == 3 * 3 and a.keys() == b.keys()  # trc, mot, c3d per session
    assert all(a[k] == b[k] for k in a), [k for k in a if a[k] != b[k]]


def test_local_workers_report_the_corrupt_session(sessions, tmp_path, capsys):
    recs, bad, over = sessions
    rc = cli.main(["reprocess", str(bad), str(recs[0]), "--workers", "2", "-o", str(tmp_path / "loc"),
                   "--config", str(over)])
    out = capsys.readouterr().out
    assert rc == 1 and "1 of 2 sessions reprocessed" in out
    assert (tmp_path / "loc" / recs[0].stem / f"{recs[0].stem}_person0.mot").is_file()
    assert not (tmp_path / "loc" / bad.stem).exists() or not any((tmp_path / "loc" / bad.stem).iterdir())
