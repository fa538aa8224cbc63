"""The recorder process: SUB ``tap/`` (+ ``sk3d/``, ``ja/``) -> crash-safe recording file.

The file is written as ``<recording>.partial`` and renamed to its name when it closes: a killed
run leaves a ``.partial`` that still replays up to its last whole record. JointAngles are taken
only from the IK workers this run started (their slots in the shared lease table), never from
whatever else binds an IK port.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from rtkin.core.priority import lower_priority
from rtkin.runtime.config import RunConfig
from rtkin.runtime.node import TAP_END, NodeContext, Stopper, fail, load_rig, report

__all__ = ["recorder_node", "partial_path"]

RECORDER_NICE = 5  # the recorder buffers; it can wait behind the sync and IK processes


def partial_path(path: Path) -> Path:
    """Where a recording is written until it closes."""
    return path.with_name(path.name + ".partial")


def recorder_node(cfg: RunConfig, leases, ctx: NodeContext) -> None:
    """SUB ``tap/`` (+ ``sk3d/``, ``ja/``) -> RecordingWriter. Flushes when idle; closes on stop."""
    stop = Stopper(ctx)
    try:
        _record(cfg, leases, ctx, stop)
    except Exception as e:  # noqa: BLE001 - the reason goes to the runner, then a non-zero exit
        fail(ctx, "recorder", e, cfg.log_dir())
        raise SystemExit(1) from None


def _record(cfg: RunConfig, leases, ctx: NodeContext, stop: Stopper) -> None:
    from rtkin.core.calibration import calib_toml_text
    from rtkin.core.codec import pack_frames
    from rtkin.io.recording import INPUT, OUTPUT, RecordingError, RecordingWriter
    from rtkin.runtime.config import angles_endpoints
    from rtkin.runtime.transport import Receiver, link_context

    final = cfg.recording_path()
    path = partial_path(final)
    rig = load_rig(cfg)
    meta = {"config": cfg.to_dict(), "calibration_toml": calib_toml_text(rig), "cameras": list(rig.names),
            "skeleton": cfg.rig.skeleton}
    topics = [b"tap/", TAP_END] + ([b"sk3d/", b"ja/"] if cfg.recording.outputs else [])
    zctx = link_context(cfg)  # socket sizes and CURVE keys of the run
    rx = Receiver(zctx, cfg.transport.outputs, topics, bind=False, rcvhwm=100_000)
    ik_eps = angles_endpoints(cfg) if cfg.recording.outputs and cfg.ik.enabled and leases is not None else []
    connected: set[int] = set()
    counts = {"inputs": 0, "outputs": 0}
    writer = RecordingWriter(path, meta, flush_interval_s=0.1, overwrite=True)  # the session's own name
    rx.settle(0.2)  # let the subscription reach the publisher before declaring ready
    lower_priority(RECORDER_NICE)
    ctx.ready.set()
    flow = ctx.flow
    idle_since = None
    next_slots = 0.0
    try:
        while True:
            if ik_eps and time.monotonic() >= next_slots:
                _follow_slots(rx, ik_eps, leases, connected)
                next_slots = time.monotonic() + 0.2
            got = rx.recv_raw(50)
            if got is None:
                writer.flush()  # idle: nothing may stay in the buffer
                if stop():
                    idle_since = idle_since or time.monotonic()
                    if time.monotonic() - idle_since > 0.1:
                        break
                continue
            idle_since = None
            base, seq, stamp, frames = got
            # stored as received (the publishers validated them; reading a recording validates
            # again): no decode / re-encode on the machine that runs the live chain
            if base == b"tap/":
                writer.write_packed(pack_frames(frames), stamp if stamp is not None else time.monotonic_ns(), INPUT)
                counts["inputs"] += 1
                if flow is not None:
                    flow.recorder_took(seq)
            elif base == TAP_END and len(frames) == 2:
                try:
                    writer.write_camera_end(bytes(frames[1]).decode(), stamp if stamp is not None else time.monotonic_ns())
                except (UnicodeDecodeError, RecordingError):
                    rx.count_malformed(ValueError("camera end with a bad camera name"))
            elif base.startswith((b"sk3d/", b"ja/")):
                writer.write_packed(pack_frames(frames), time.monotonic_ns(), OUTPUT)
                counts["outputs"] += 1
    finally:
        writer.close()
        os.replace(path, final)
        report(ctx, "recorder", {**counts, "receiver": rx.counters.as_dict(), "path": str(final)})
        rx.close()
        zctx.term()


def _follow_slots(rx, endpoints: list[str], leases, connected: set[int]) -> None:
    """Connect to the IK worker slots that run (not OFF), disconnect from the others."""
    from rtkin.runtime.leases import OFF

    for w, state in enumerate(leases.snapshot()):
        if state != OFF and w not in connected:
            rx.connect(endpoints[w])
            connected.add(w)
        elif state == OFF and w in connected:
            rx.disconnect(endpoints[w])
            connected.discard(w)
