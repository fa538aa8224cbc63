"""Which IK workers a run started: the sync node announces them, clients follow.

The sync node's status (topic ``status/sync/``, a msgpack dict every second) carries
``"ik_endpoints"``: the endpoints of the IK workers the run started and that are alive. A client
connects to the sync node's outputs only, and connects to / disconnects from IK workers as they are
announced, so a process that binds an IK slot's port on its own is never heard (it could otherwise
inject made-up people into a dashboard or a recording).

An announced endpoint whose host is a wildcard (``tcp://*:5552``, ``tcp://0.0.0.0:5552``) is
reached at the host of the sync node's endpoint; one that the client cannot reach with the same
security as the sync node's endpoint (a loopback worker seen from another host) is skipped.
"""

from __future__ import annotations

from typing import Iterable

from rtkin.runtime.security import endpoint_host, is_local_endpoint, is_wildcard_host

__all__ = ["SYNC_STATUS", "IK_ENDPOINTS_KEY", "MAX_ANNOUNCED", "announced_endpoints", "IKFollower"]

SYNC_STATUS = b"status/sync/"
IK_ENDPOINTS_KEY = "ik_endpoints"
MAX_ANNOUNCED = 256  # more than any run starts (ik.max_workers <= 64)


def announced_endpoints(status, sync_endpoint: str) -> list[str] | None:
    """The IK endpoints announced in a sync status dict, as this client reaches them (wildcard
    hosts replaced by the sync endpoint's host; unreachable ones left out), or None when the
    status announces nothing (an older sync node, or a malformed status)."""
    eps = status.get(IK_ENDPOINTS_KEY) if isinstance(status, dict) else None
    if not isinstance(eps, (list, tuple)) or len(eps) > MAX_ANNOUNCED:
        return None
    _, sync_host = endpoint_host(sync_endpoint)
    local = is_local_endpoint(sync_endpoint)
    out: list[str] = []
    for ep in eps:
        if not isinstance(ep, str) or len(ep) > 512:
            continue
        try:
            scheme, host = endpoint_host(ep)
        except ValueError:
            continue
        if scheme not in ("tcp", "ipc"):
            continue
        if scheme == "tcp" and is_wildcard_host(host):
            if not sync_host:
                host = "127.0.0.1"  # the sync node is reached over ipc: same machine
            else:
                host = sync_host
            port = ep.rsplit(":", 1)[-1]
            ep = f"tcp://[{host}]:{port}" if ":" in host else f"tcp://{host}:{port}"
        if is_local_endpoint(ep) != local:
            continue
        if ep not in out:
            out.append(ep)
    return out


class IKFollower:
    """Keeps a Receiver connected to exactly the announced IK workers.

    Args:
        receiver: a :class:`~rtkin.runtime.transport.Receiver` connected to the sync node's outputs
            and subscribed to ``status/sync/``.
        sync_endpoint: that outputs endpoint (the host announced wildcards resolve to).
        fixed: endpoints given explicitly, never disconnected.

    Attributes:
        connected: the announced endpoints currently connected.
        updates: announcements that changed the connections.
    """

    def __init__(self, receiver, sync_endpoint: str, fixed: Iterable[str] = ()):
        self.rx = receiver
        self.sync_endpoint = sync_endpoint
        self.fixed = set(fixed) | {sync_endpoint}
        self.connected: list[str] = []
        self.updates = 0

    def update(self, status) -> bool:
        """Apply one sync status dict; True when the connections changed."""
        eps = announced_endpoints(status, self.sync_endpoint)
        if eps is None:
            return False
        eps = [e for e in eps if e not in self.fixed]
        gone = [e for e in self.connected if e not in eps]
        new = [e for e in eps if e not in self.connected]
        for e in gone:
            self.rx.disconnect(e)
            self.connected.remove(e)
        for e in new:
            try:
                self.rx.connect(e)
            except (ValueError, OSError):  # zmq.ZMQError is an OSError
                continue
            self.connected.append(e)
        if gone or new:
            self.updates += 1
        return bool(gone or new)
