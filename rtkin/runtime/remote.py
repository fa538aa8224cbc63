"""A camera on another host: ``rtkin capture --connect HOST:PORT --camera NAME --config CONFIG.toml``.

The camera host runs the same camera process as a local run (:func:`~rtkin.runtime.source_nodes.
capture_node` for cameras / videos through RTMPose, :func:`~rtkin.runtime.source_nodes.source_node`
for the virtual subject or OpenPose JSON), publishing to the sync host's keypoints endpoint
instead of a local one. Around it:

- its clock: a :class:`~rtkin.runtime.clock.ClockClient` measures the offset to the sync host's
  clock (``[transport] clock`` there) before the first frame and all along; every KeypointFrame
  leaves with its capture time in the sync host's clock. File and virtual sources play frame ``i``
  at the sync host's ``epoch + i / fps``, so all cameras' frame ``i`` are captured together.
- the link: ZeroMQ reconnects by itself when the link drops (every 0.1 s, heartbeats notice a dead
  connection within ~2 s); frames captured while the link is down are lost, not queued: the
  camera rejoins at its current frame.
- security: a non-loopback sync host needs CURVE keys (``[transport] keys`` with this host's
  ``client`` key and the server's public key) or ``insecure = true``.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
from dataclasses import dataclass

from rtkin.runtime.config import RunConfig
from rtkin.runtime.node import NodeContext
from rtkin.runtime.security import endpoint_host, is_local_endpoint, is_wildcard_host

__all__ = ["RemoteNodeContext", "remote_config", "run_remote_camera", "tcp_endpoint"]


@dataclass
class RemoteNodeContext(NodeContext):
    """A node context for a camera process started by hand: its own events, and the clock."""

    clock: object = None


class _Value:
    """Stands in for ``multiprocessing.Value``: the stream start read by the camera node."""

    def __init__(self, value: int):
        self.value = value


def tcp_endpoint(host_port: str) -> str:
    """``HOST:PORT`` (or ``[IPv6]:PORT``) -> ``tcp://HOST:PORT``; ValueError when malformed."""
    host, sep, port = host_port.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT, got {host_port!r}")
    return f"tcp://{host}:{port}"


def remote_config(cfg: RunConfig, camera: str, connect: str | None = None, clock: str | None = None,
                  keys: str | None = None, client: str | None = None, inputs: str | None = None) -> RunConfig:
    """The configuration a camera host runs with: the keypoints endpoint of the sync host
    (``connect`` = ``HOST:PORT``, or the config's ``[transport] keypoints``), the clock endpoint
    (``clock`` = ``HOST:PORT``; default: the config's ``[transport] clock`` port on the sync
    host), keys, and optionally this camera's input (``[source.capture] inputs``).
    Raises ValueError with what is missing.
    """
    t = cfg.transport
    keypoints = tcp_endpoint(connect) if connect else t.keypoints
    scheme, host = endpoint_host(keypoints)
    if scheme == "tcp" and is_wildcard_host(host):
        raise ValueError(f"{keypoints} is a wildcard: give the sync host with --connect HOST:PORT")
    if clock:
        clock_ep = tcp_endpoint(clock)
    elif t.clock:
        _, chost = endpoint_host(t.clock)
        port = t.clock.rsplit(":", 1)[-1]
        if connect or is_wildcard_host(chost) or is_local_endpoint(t.clock) != is_local_endpoint(keypoints):
            clock_ep = f"tcp://[{host}]:{port}" if ":" in host else f"tcp://{host}:{port}"  # the sync host's
        else:
            clock_ep = t.clock
    else:
        raise ValueError("the sync host's clock endpoint is needed: --clock HOST:PORT or [transport] clock "
                         "(the sync host serves it there)")
    transport = dataclasses.replace(t, keypoints=keypoints, clock=clock_ep,
                                    keys=t.keys if keys is None else keys, client=t.client if client is None else client)
    source = cfg.source
    if inputs is not None:
        names = list(cfg.rig.cameras) or [camera]
        specs = [""] * len(names)
        if camera not in names:
            raise ValueError(f"camera {camera!r} is not in [rig] cameras {names}")
        specs[names.index(camera)] = inputs
        source = dataclasses.replace(source, kind="capture",
                                     capture=dataclasses.replace(source.capture, inputs=tuple(specs)))
    if source.kind == "none":
        raise ValueError("[source] kind is 'none': a camera host needs 'capture', 'virtual' or 'openpose' (or --input)")
    return dataclasses.replace(cfg, transport=transport, source=source)


def run_remote_camera(cfg: RunConfig, camera: str, log=print, stop: threading.Event | None = None) -> dict:
    """Run one camera of ``cfg`` (made by :func:`remote_config`) until its stream ends, Ctrl-C /
    SIGTERM, or ``stop``; returns the camera node's final report (``clock``: the last offset).
    """
    from rtkin.runtime.clock import ClockClient
    from rtkin.runtime.node import load_rig
    from rtkin.runtime.source_nodes import capture_node, source_node
    from rtkin.runtime.transport import link_context

    rig = load_rig(cfg)
    if camera not in rig.names:
        raise ValueError(f"camera {camera!r} is not in the rig ({', '.join(rig.names)})")
    stop = stop or threading.Event()
    zctx = link_context(cfg)
    try:
        clock = ClockClient(zctx, cfg.transport.clock, camera).start()
    except Exception:
        zctx.destroy(linger=0)
        raise
    results: queue.Queue = queue.Queue()
    try:
        log(f"rtkin capture {camera}: frames to {cfg.transport.keypoints}, clock from {cfg.transport.clock}")
        waited = 0.0
        while not clock.wait(0.5):
            waited += 0.5
            if stop.is_set():
                return {}
            if waited == 3.0:
                log(f"rtkin capture {camera}: waiting for the sync host's clock at {cfg.transport.clock} ...")
        log(f"rtkin capture {camera}: clock offset to the sync host {clock.offset_ns / 1e6:+.3f} ms "
            f"(round trip {clock.rtt_ns / 1e6:.3f} ms, +/- {clock.uncertainty_ns / 1e6:.3f} ms)")
        go = threading.Event()
        go.set()
        ctx = RemoteNodeContext(stop=stop, ready=threading.Event(), results=results, go=go,
                                t0=_Value(clock.to_local_ns(clock.epoch_ns)), clock=clock)
        node = capture_node if cfg.source.kind == "capture" else source_node
        try:
            node(cfg, camera, [0] * len(rig), ctx)  # (frames sent, per camera: this host counts its own)
        except SystemExit:  # the capture node reports its error, then exits non-zero
            pass
    finally:
        clock.stop()
        zctx.destroy(linger=0)
    report = {}
    while not results.empty():
        report.update(results.get_nowait()[1])
    report["clock"] = {"offset_ms": clock.offset_ns / 1e6, "rtt_ms": clock.rtt_ns / 1e6,
                       "uncertainty_ms": clock.uncertainty_ns / 1e6, "timeouts": clock.timeouts}
    return report
