"""The recorder process: SUB ``tap/`` (+ ``sk3d/``, ``ja/``) -> crash-safe recording file."""

from __future__ import annotations

import time

import zmq

from rtkin.core.priority import lower_priority
from rtkin.runtime.config import RunConfig
from rtkin.runtime.node import NodeContext, Stopper, load_rig, report

__all__ = ["recorder_node"]

RECORDER_NICE = 5  # the recorder buffers; it can wait behind the sync and IK processes



def recorder_node(cfg: RunConfig, ctx: NodeContext) -> None:
    """SUB ``tap/`` (+ ``sk3d/``) -> RecordingWriter. Flushes periodically; closes on stop."""
    from rtkin.core.calibration import write_calib_toml
    from rtkin.core.codec import pack_frames
    from rtkin.io.recording import INPUT, OUTPUT, RecordingWriter
    from rtkin.runtime.transport import Receiver

    stop = Stopper(ctx)
    path = cfg.recording_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    rig = load_rig(cfg)
    tmp_calib = path.with_suffix(".calib.toml")
    write_calib_toml(rig, tmp_calib)
    meta = {"config": cfg.to_dict(), "calibration_toml": tmp_calib.read_text(), "cameras": list(rig.names),
            "skeleton": cfg.rig.skeleton}
    tmp_calib.unlink()
    topics = [b"tap/"] + ([b"sk3d/", b"ja/"] if cfg.recording.outputs else [])
    zctx = zmq.Context()
    rx = Receiver(zctx, cfg.transport.outputs, topics, bind=False, rcvhwm=100_000)
    if cfg.recording.outputs and cfg.ik.enabled:
        from rtkin.runtime.config import angles_endpoints

        for ep in angles_endpoints(cfg):
            rx.socket.connect(ep)
    counts = {"inputs": 0, "outputs": 0}
    writer = RecordingWriter(path, meta, flush_interval_s=0.1, overwrite=True)
    rx.settle(0.2)  # let the subscription reach the publisher before declaring ready
    lower_priority(RECORDER_NICE)
    ctx.ready.set()
    try:
        while True:
            got = rx.recv_raw(50)
            if got is None:
                writer.flush()  # idle: nothing may stay in the buffer
                if stop():
                    break
                continue
            base, _seq, stamp, frames = got
            # stored as received (the publishers validated them; reading a recording validates
            # again): no decode / re-encode on the machine that runs the live chain
            if base == b"tap/":
                writer.write_packed(pack_frames(frames), stamp if stamp is not None else time.monotonic_ns(), INPUT)
                counts["inputs"] += 1
            elif base.startswith((b"sk3d/", b"ja/")):
                writer.write_packed(pack_frames(frames), time.monotonic_ns(), OUTPUT)
                counts["outputs"] += 1
    finally:
        writer.close()
        report(ctx, "recorder", {**counts, "receiver": rx.counters.as_dict(), "path": str(path)})
        rx.close()
        zctx.term()


