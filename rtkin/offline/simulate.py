"""Record a virtual scene through the live stages, in one process: a ``.rtkrec`` file like the one
``rtkin run`` writes (inputs in arrival order with their receive times, the live Skeleton3D and
JointAngles outputs, the configuration and the calibration in the header), deterministic, for
tests, benchmarks and trying ``rtkin reprocess`` / ``rtkin export`` without cameras.

The live kinematics (:class:`~rtkin.kinematics.live.LiveKinematics`) scale each person from
their first seconds as live, but the scaling job runs inline (not in a background process), so
the file does not depend on the machine's speed.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

from rtkin.core.calibration import write_calib_toml
from rtkin.io.recording import INPUT, OUTPUT, RecordingWriter
from rtkin.kinematics.live import LiveKinematics
from rtkin.kinematics.scaling import InlineExecutor
from rtkin.reconstruct.pipeline import Pipeline
from rtkin.runtime.config import RunConfig, RunSettings, RigSettings, SourceSettings
from rtkin.sim import virtual

__all__ = ["record_views", "live_config"]


def live_config(views: virtual.Views, name: str = "session", **ik) -> RunConfig:
    """The run configuration of a live run on ``views`` (virtual source, its skeleton and rate);
    ``ik``: :class:`~rtkin.runtime.config.IKRunSettings` fields (e.g. ``height_m``)."""
    fps = 1e9 / float(views.time_ns[1] - views.time_ns[0]) if views.n_frames > 1 else 60.0
    cfg = RunConfig(run=RunSettings(name=name), rig=RigSettings(skeleton=views.skeleton),
                    source=SourceSettings(kind="virtual", fps_hz=fps))
    return dataclasses.replace(cfg, sync=dataclasses.replace(cfg.sync, fps_hz=fps),
                               ik=dataclasses.replace(cfg.ik, **ik))


def record_views(path: str | Path, views: virtual.Views, cfg: RunConfig | None = None, *, angles: bool = True,
                 close: bool = True, arrival_seed: int = 2) -> Path:
    """Write a live recording of ``views`` to ``path`` (refuses an existing file).

    Args:
        path: the ``.rtkrec`` to create.
        views: the rendered scene (:func:`rtkin.sim.virtual.render_views`).
        cfg: the live run configuration (default :func:`live_config`).
        angles: run the live kinematics and record JointAngles (scaled models are written
            beside the recording, as a live run does).
        close: write the end marker; False leaves the file as a killed run does (no end marker).
        arrival_seed: transport-delay seed of the frames' arrival order.
    """
    path = Path(path)
    cfg = cfg or live_config(views, path.stem)
    rig = views.rig
    with tempfile.TemporaryDirectory() as d:
        calib = Path(d) / "Calib.toml"
        write_calib_toml(rig, calib)
        meta = {"config": cfg.to_dict(), "calibration_toml": calib.read_text(), "cameras": list(rig.names),
                "skeleton": cfg.rig.skeleton}
    pipe = Pipeline(rig, cfg.rig.skeleton, cfg.sync, cfg.reconstruction, clock_ns=None)
    kin = (LiveKinematics(cfg.ik.live(), dataclasses.replace(cfg.ik.solver, skeleton=cfg.rig.skeleton), path.parent,
                          name=path.stem, executor=InlineExecutor(), log=lambda s: None) if angles else None)
    writer = RecordingWriter(path, meta, flush_interval_s=1.0)

    def outputs(sks, recv):
        for sk in sks:
            writer.write(sk, recv, OUTPUT)
            if kin is not None and sk.n_people:
                for ja in kin(sk):
                    writer.write(ja, recv, OUTPUT)
                while kin.pending:
                    kin.step()

    last = 0
    for recv, frame in virtual.arrival_order(views, seed=arrival_seed):
        writer.write(frame, recv, INPUT)
        outputs(pipe.push(frame, recv), recv)
        last = recv
    outputs(pipe.flush(), last)
    if close:
        writer.close()
    else:
        writer.flush()
        writer._file.close()  # noqa: SLF001 - leave it as a killed writer does: no end marker
        writer._file = None  # noqa: SLF001
    return path
