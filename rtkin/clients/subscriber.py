"""Subscribe to rtkin's live outputs from your own Python program.

::

    from rtkin.clients.subscriber import Subscriber

    with Subscriber() as sub:               # the sync node + the IK workers it announces
        for msg in sub:                      # JointAngles and Skeleton3D, decoded and validated
            if type(msg).__name__ == "JointAngles":
                print(msg.person_id, dict(zip(msg.names, np.degrees(msg.values))))

Endpoints: ``Skeleton3D`` on topic ``sk3d/`` at the sync node's outputs (``[transport] outputs``,
``tcp://127.0.0.1:5551`` by default); ``JointAngles`` on topic ``ja/<person>/`` at each IK worker
(one per person). A Subscriber connects to the sync node only and follows its announcements: the
sync status (``status/sync/``, every second) lists the IK workers the run started and that are
alive (``"ik_endpoints"``), and the Subscriber connects to them and disconnects from the ones that
stopped (:mod:`rtkin.runtime.announce`). A process that binds an IK worker port on its own is never
heard. Endpoints you list after the first are connected as given (you vouch for them).

Another host: the run binds on a network address with CURVE keys (``rtkin keys``); give the key
folder and this host's client name (``keys=``, ``client=``).

Back-pressure: a subscriber never slows the pipeline. The publishers are ZeroMQ PUB sockets sending
without blocking: a subscriber that reads too slowly (or stops reading) simply loses the messages
beyond its queues (the publisher's send high-water mark, 1000 messages by default, plus this
socket's ``rcvhwm``). Lost messages show up as sequence gaps in ``counters.dropped``. Keep
``rcvhwm`` small when you only care about the latest values.

Lazy subscription: libzmq connects and forwards the subscription to the publisher in the
background, and only while the socket is being used; messages published before that are not
delivered to this subscriber. The constructor therefore waits ``settle_s`` (0.2 s by default) while
driving the socket (:func:`rtkin.runtime.transport.settle`); call :meth:`Subscriber.settle` again if you
connect before the publisher starts and need its very first messages.

A Subscriber is not thread-safe (one ZeroMQ socket): use it from one thread.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Union

import numpy as np
import zmq

from rtkin.core.messages import JointAngles, Skeleton3D, coordinate_unit
from rtkin.runtime.announce import SYNC_STATUS, IKFollower
from rtkin.runtime.transport import Receiver, ReceiverCounters, settle

__all__ = ["Subscriber", "coordinate_unit", "DEFAULT_ENDPOINT", "client_context"]

Message = Union[JointAngles, Skeleton3D]

#: The sync node's outputs of the default configuration (``[transport] outputs``; a test checks).
DEFAULT_ENDPOINT = "tcp://127.0.0.1:5551"


def client_context(keys: str | None = None, client: str = ""):
    """A ZeroMQ context for a client: with ``keys`` (a folder made by ``rtkin keys``) its sockets
    use CURVE on network addresses, presenting ``client``'s key; None without keys."""
    if not keys:
        return None
    from rtkin.runtime.security import load_curve
    from rtkin.runtime.transport import DEFAULT_LINK, link_context

    return link_context(link=dataclasses.replace(DEFAULT_LINK, curve=load_curve(keys, client)))

_POLL_SLICE_MS = 100  # longest single blocking poll, so Ctrl-C is handled promptly


def _topic_bytes(t: str | bytes) -> bytes:
    return t.encode() if isinstance(t, str) else bytes(t)


class Subscriber:
    """A ZeroMQ SUB socket connected to one or more rtkin publishers, yielding typed messages.

    Args:
        endpoints: the sync node's outputs endpoint (``"tcp://host:port"``, ``"ipc:///path"``),
            or a list: the sync node's first, then endpoints to connect to as given.
        topics: topic prefixes to subscribe to (str or bytes): ``"ja/"`` = every person's
            JointAngles, ``"ja/3/"`` = person 3 only, ``"sk3d/"`` = Skeleton3D. ``"status/"`` adds
            the nodes' status dicts (yielded as plain dicts).
        timeout_s: default timeout of :meth:`recv` and of iteration; None = wait forever.
            Iteration ends when a wait times out.
        rcvhwm: receive queue length, messages; beyond it (and the publisher's queue) messages are
            dropped, never delaying the publisher.
        person_ids: only these people: JointAngles of other people are skipped (and, when
            subscribing to ``"ja/"``, only ``ja/<id>/`` is subscribed so they never reach this
            process); Skeleton3D messages are reduced to these people's rows, and skipped when
            none of them is present.
        settle_s: time spent in the constructor letting the connections and subscriptions reach
            the publishers (see the module docs); 0 to skip.
        ctx: ZeroMQ context (default: the process-wide ``zmq.Context.instance()``, or a CURVE
            context with ``keys``).
        follow_ik: connect to the IK workers the sync node announces (``status/sync/``).
        keys, client: CURVE key folder (``rtkin keys``) and this host's client name, for a run
            bound on a network address.

    Attributes:
        counters: ``received`` (messages that arrived, including malformed ones), ``malformed``
            (undecodable or invalid, dropped), ``dropped`` (sequence gaps: messages the publisher
            sent that never arrived, e.g. lost at a high-water mark), ``filtered`` (skipped by
            ``person_ids``), and the transport's ``seq_rejected``, ``restarts``, ``auth_refused``.
        ik_endpoints: the announced IK workers currently connected.
    """

    def __init__(
        self,
        endpoints: str | Sequence[str] = DEFAULT_ENDPOINT,
        topics: Iterable[str | bytes] = ("ja/", "sk3d/"),
        timeout_s: float | None = None,
        rcvhwm: int = 100,
        person_ids: Iterable[int] | None = None,
        settle_s: float = 0.2,
        ctx: zmq.Context | None = None,
        follow_ik: bool = True,
        keys: str | None = None,
        client: str = "",
    ):
        eps = [endpoints] if isinstance(endpoints, str) else list(endpoints)
        if not eps:
            raise ValueError("Subscriber needs at least one endpoint")
        self.endpoints = tuple(eps)
        self.person_ids = None if person_ids is None else frozenset(int(p) for p in person_ids)
        self.topics = self._subscriptions([_topic_bytes(t) for t in topics])
        self.timeout_s = timeout_s
        self.filtered = 0
        self._closed = False
        self._own_ctx = client_context(keys, client) if ctx is None else None
        ctx = ctx if ctx is not None else self._own_ctx or zmq.Context.instance()
        self._yield_sync_status = any(SYNC_STATUS.startswith(t) for t in self.topics)
        subs = self.topics + ((SYNC_STATUS,) if follow_ik and not self._yield_sync_status else ())
        try:
            self._rx = Receiver(ctx, eps[0], subs, bind=False, rcvhwm=rcvhwm)
        except Exception:
            self._close_ctx()
            raise
        self._follow = IKFollower(self._rx, eps[0], fixed=eps[1:]) if follow_ik else None
        try:
            for ep in eps[1:]:
                self._rx.connect(ep)
            if settle_s > 0:
                self.settle(settle_s)
        except Exception:
            self.close()
            raise

    def _subscriptions(self, topics: list[bytes]) -> tuple[bytes, ...]:
        """Narrow ``ja/`` (or the empty prefix) to ``ja/<id>/`` per selected person."""
        if self.person_ids is None:
            return tuple(dict.fromkeys(topics))
        out: list[bytes] = []
        for t in topics:
            if t in (b"ja/", b"ja", b""):
                out += [b"ja/%d/" % p for p in sorted(self.person_ids)]
                if t == b"":  # everything else too
                    out += [b"sk3d/", b"status/"]
            else:
                out.append(t)
        return tuple(dict.fromkeys(out))

    # ----------------------------------------------------------------------------------- API

    @property
    def counters(self) -> ReceiverCounters:
        """Transport counters (received, malformed, dropped); ``filtered`` is an attribute."""
        return self._rx.counters

    def counters_dict(self) -> dict[str, int]:
        """All counters as a dict: received, malformed, dropped, filtered (and the transport's)."""
        return {**self._rx.counters.as_dict(), "filtered": self.filtered}

    @property
    def ik_endpoints(self) -> list[str]:
        """The announced IK workers this Subscriber is connected to."""
        return list(self._follow.connected) if self._follow is not None else []

    @property
    def socket(self) -> zmq.Socket:
        """The underlying SUB socket (e.g. to add it to your own ``zmq.Poller``)."""
        return self._rx.socket

    def settle(self, seconds: float = 0.2) -> None:
        """Drive the socket for ``seconds`` so connections attach and subscriptions propagate."""
        settle(self._rx.socket, seconds=seconds)

    def recv(self, timeout_s: float | None = ...) -> Message | dict | None:  # type: ignore[assignment]
        """The next message (JointAngles or Skeleton3D), or None when ``timeout_s`` passes first.

        ``timeout_s`` defaults to the constructor's; None waits forever. Malformed messages and
        filtered-out people are skipped (and counted) without ending the wait early.
        """
        if self._closed:
            raise RuntimeError("Subscriber is closed")
        timeout = self.timeout_s if timeout_s is ... else timeout_s
        deadline = None if timeout is None else time.monotonic() + max(0.0, float(timeout))
        while True:
            if deadline is None:
                wait_ms = _POLL_SLICE_MS
            else:
                left = deadline - time.monotonic()
                wait_ms = min(_POLL_SLICE_MS, max(0, int(left * 1000 + 0.999)))
            got = self._rx.recv(wait_ms)
            if got is not None and got.base == SYNC_STATUS:
                if self._follow is not None:
                    self._follow.update(got.message)
                if not self._yield_sync_status:
                    continue
            if got is not None:
                msg = self._select(got.message)
                if msg is not None:
                    return msg
                continue  # filtered: look again without waiting past the deadline
            if deadline is not None and time.monotonic() >= deadline:
                return None

    def __iter__(self) -> Iterator[Message | dict]:
        """Messages as they arrive; ends when a wait exceeds ``timeout_s`` or after :meth:`close`."""
        while not self._closed:
            msg = self.recv()
            if msg is None:
                return
            yield msg

    def close(self) -> None:
        """Close the socket (idempotent)."""
        if not self._closed:
            self._closed = True
            if hasattr(self, "_rx"):
                self._rx.close()
            self._close_ctx()

    def _close_ctx(self) -> None:
        if self._own_ctx is not None:
            ctx, self._own_ctx = self._own_ctx, None
            ctx.term()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass

    # ------------------------------------------------------------------------------ filtering

    def _select(self, msg):
        ids = self.person_ids
        if ids is None:
            return msg
        if isinstance(msg, JointAngles):
            if msg.person_id in ids:
                return msg
            self.filtered += 1
            return None
        if isinstance(msg, Skeleton3D):
            keep = np.isin(msg.person_ids, np.fromiter(ids, dtype=np.int64, count=len(ids)))
            if keep.all():
                return msg
            if not keep.any():
                self.filtered += 1
                return None
            return Skeleton3D(
                time_ns=msg.time_ns, capture_ns=msg.capture_ns, skeleton=msg.skeleton,
                person_ids=msg.person_ids[keep], points=msg.points[keep], scores=msg.scores[keep],
                reproj_error_px=msg.reproj_error_px[keep], n_views=msg.n_views[keep],
            )  # fmt: skip
        return msg
