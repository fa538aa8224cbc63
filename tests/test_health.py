"""Live calibration check: a camera bumped mid-run raises an alarm, the others stay quiet."""

from __future__ import annotations

import numpy as np

from rtkin.sim import virtual
from rtkin.core.calibration import Camera, Rig, rodrigues, rodrigues_inv
from rtkin.reconstruct.pipeline import Pipeline


def _bumped(rig: Rig, name: str, deg: float) -> Rig:
    cams = []
    for c in rig:
        if c.name == name:  # the camera turned by `deg` about its own y axis (a knock on the mount)
            a = np.deg2rad(deg)
            turn = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
            R = turn @ rodrigues(c.rvec)
            c = Camera(c.name, c.size, c.K, c.dist[:4], rodrigues_inv(R), turn @ c.tvec)
        cams.append(c)
    return Rig(tuple(cams))


def test_a_bumped_camera_raises_an_alarm(demo_rig, subject):
    cs = virtual.CorruptionSettings(noise_px=3.0, outlier_rate=0.02, dropout_rate=0.05)
    good = virtual.render_views(demo_rig, subject, corruption=cs, seed=3)
    bumped = virtual.render_views(_bumped(demo_rig, "cam02", 1.5), subject, corruption=cs, seed=3)
    bump_at = 400
    events = []
    for recv, f in virtual.arrival_order(good):
        if f.camera == "cam02" and f.frame_index >= bump_at:
            f = bumped.frames[1][f.frame_index]
        events.append((recv, f))
    pipe = Pipeline(demo_rig, "HALPE_26", clock_ns=None)
    raised_at = {}
    for recv, f in events:
        pipe.push(f, recv)
        for cam, what in pipe.reconstructor.health.events:
            raised_at.setdefault((cam, what), f.frame_index)
    status = pipe.status()["health"]
    assert status["alarms"] == ["cam02"]
    assert set(raised_at) == {("cam02", "raised")}  # no false alarm on the other cameras, ever
    assert bump_at <= raised_at[("cam02", "raised")] <= bump_at + 60  # within a second at 60 Hz
    cams = status["cameras"]
    assert cams["cam02"]["residual_px"] > 2.5 * cams["cam02"]["baseline_px"]
    assert all(cams[c]["baseline_px"] < 8.0 for c in cams)
