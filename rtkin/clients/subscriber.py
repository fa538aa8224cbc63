"""Subscribe to rtkin's live outputs from your own Python program.

::

    from rtkin.clients.subscriber import Subscriber

    with Subscriber() as sub:               # the sync node + every IK worker slot (defaults)
        for msg in sub:                      # JointAngles and Skeleton3D, decoded and validated
            if type(msg).__name__ == "JointAngles":
                print(msg.person_id, dict(zip(msg.names, np.degrees(msg.values))))

Endpoints (defaults of ``rtkin.runtime.config.TransportSettings``): ``Skeleton3D`` on topic ``sk3d/`` at the
sync node's ``tcp://127.0.0.1:5551``; ``JointAngles`` on topic ``ja/<person>/`` at IK worker ``w``'s
``tcp://127.0.0.1:{5552 + w}``, one worker per person in the first free of ``ik.max_workers`` slots
(8 by default: connect to every slot's port to get every person; :data:`DEFAULT_ENDPOINTS` does).

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

import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Union

import numpy as np
import zmq

from rtkin.core.messages import JointAngles, Skeleton3D, coordinate_unit
from rtkin.runtime.transport import Receiver, ReceiverCounters, settle

__all__ = ["Subscriber", "coordinate_unit", "DEFAULT_ENDPOINTS", "DEFAULT_ANGLES_ENDPOINTS"]

Message = Union[JointAngles, Skeleton3D]

#: The default IK worker slots' endpoints (``rtkin.runtime.config.angles_endpoints`` of the default config:
#: ``ik.max_workers`` = 8 from port 5552; a test checks they agree).
DEFAULT_ANGLES_ENDPOINTS = tuple(f"tcp://127.0.0.1:{5552 + w}" for w in range(8))
#: The default outputs: the sync node (Skeleton3D) and every IK worker slot (JointAngles).
DEFAULT_ENDPOINTS = ("tcp://127.0.0.1:5551",) + DEFAULT_ANGLES_ENDPOINTS

_POLL_SLICE_MS = 100  # longest single blocking poll, so Ctrl-C is handled promptly


def _topic_bytes(t: str | bytes) -> bytes:
    return t.encode() if isinstance(t, str) else bytes(t)


class Subscriber:
    """A ZeroMQ SUB socket connected to one or more rtkin publishers, yielding typed messages.

    Args:
        endpoints: one endpoint or a list (``"tcp://host:port"``, ``"ipc:///path"``); the socket
            connects to each of them.
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
        ctx: ZeroMQ context (default: the process-wide ``zmq.Context.instance()``).

    Attributes:
        counters: ``received`` (messages that arrived, including malformed ones), ``malformed``
            (undecodable or invalid, dropped), ``dropped`` (sequence gaps: messages the publisher
            sent that never arrived, e.g. lost at a high-water mark), ``filtered`` (skipped by
            ``person_ids``).
    """

    def __init__(
        self,
        endpoints: str | Sequence[str] = DEFAULT_ENDPOINTS,
        topics: Iterable[str | bytes] = ("ja/", "sk3d/"),
        timeout_s: float | None = None,
        rcvhwm: int = 100,
        person_ids: Iterable[int] | None = None,
        settle_s: float = 0.2,
        ctx: zmq.Context | None = None,
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
        ctx = ctx if ctx is not None else zmq.Context.instance()
        self._rx = Receiver(ctx, eps[0], self.topics, bind=False, rcvhwm=rcvhwm)
        try:
            for ep in eps[1:]:
                self._rx.socket.connect(ep)
            if settle_s > 0:
                self.settle(settle_s)
        except Exception:
            self._rx.close()
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
        """All counters as a dict: received, malformed, dropped, filtered."""
        return {**self._rx.counters.as_dict(), "filtered": self.filtered}

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
            self._rx.close()

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
