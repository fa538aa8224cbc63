"""Lab Streaming Layer output: rtkin joint angles as LSL streams (one per person).

Needs pylsl (``pip install rtkin[lsl]``; the pylsl wheels bundle liblsl on Linux, macOS and
Windows). Each person's stream:

- name ``rtkin JointAngles p<person_id>``, type ``"Mocap"``, source id ``rtkin-ja-<person_id>``,
  channel format double, one channel per coordinate, nominal rate ``rate_hz`` (0 = irregular);
- XML description: ``<channels><channel><label>knee_angle_r</label><unit>rad</unit>
  <type>JointAngle</type></channel>...</channels>`` (``<type>Position</type>`` for the ``*_tx/ty/tz``
  translations, unit ``m``), plus ``<acquisition><manufacturer>rtkin</manufacturer>
  <content>JointAngles</content><person_id>..</person_id></acquisition>``.
- values: rad for rotations (or degrees with ``units="deg"``), m for translations.

Timestamps: each sample is stamped with the *capture* time of the camera images it comes from, not
the time it was pushed, so LSL recordings (LabRecorder/XDF) line it up with other devices without
the pipeline latency. rtkin's ``capture_ns`` is ``time.monotonic_ns()``; ``pylsl.local_clock()``
is ``std::chrono::steady_clock``, which on Linux is ``CLOCK_MONOTONIC`` too, the same clock as
Python's ``time.monotonic()`` (checked: equal to a few microseconds). The outlet still measures
the offset ``local_clock() - time.monotonic()`` once when created and adds it, so the stamps stay
right on systems where the two clocks differ (macOS, Windows). Capture times are in the sync
host's monotonic clock (cameras on other hosts convert theirs, ``rtkin.runtime.clock``): run the
bridge on the sync host (the monotonic clock is per machine).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import numpy as np

from rtkin.clients.subscriber import Subscriber, coordinate_unit
from rtkin.core.messages import JointAngles

__all__ = ["LSLOutlet", "run_lsl_bridge", "clock_offset_s", "import_pylsl"]

_INSTALL_HINT = "LSL output needs pylsl: pip install rtkin[lsl]  (or: pip install pylsl)"


def import_pylsl():
    """Import pylsl, raising an ImportError that says how to install it (also when liblsl is missing)."""
    try:
        import pylsl  # noqa: PLC0415
    except (ImportError, RuntimeError, OSError) as e:  # pylsl raises RuntimeError when liblsl is not found
        raise ImportError(f"{_INSTALL_HINT} ({type(e).__name__}: {e})") from e
    return pylsl


def clock_offset_s(pylsl=None, samples: int = 9) -> float:
    """``pylsl.local_clock() - time.monotonic()`` in s (the tightest of ``samples`` bracketings)."""
    pylsl = pylsl or import_pylsl()
    best = None
    for _ in range(samples):
        a = time.monotonic()
        lsl = pylsl.local_clock()
        b = time.monotonic()
        if best is None or b - a < best[0]:
            best = (b - a, lsl - (a + b) / 2)
    return best[1]


def _units(names: Sequence[str], units: str | Sequence[str] | None) -> list[str]:
    if units is None or isinstance(units, str):
        rot = "rad" if units in (None, "rad") else units
        if rot not in ("rad", "deg"):
            raise ValueError(f"units must be 'rad', 'deg' or one unit per coordinate, got {units!r}")
        return ["m" if coordinate_unit(n) == "m" else rot for n in names]
    out = list(units)
    if len(out) != len(names):
        raise ValueError(f"{len(out)} units for {len(names)} coordinates")
    bad = [u for u in out if u not in ("rad", "deg", "m")]
    if bad:
        raise ValueError(f"units must be 'rad', 'deg' or 'm', got {bad}")
    return out


class LSLOutlet:
    """One person's joint angles as an LSL outlet.

    Args:
        names: coordinate names (channel labels), in channel order.
        person_id: the person's track id (stream name and source id).
        rate_hz: nominal sampling rate (the camera rate, e.g. 60); 0 = irregular.
        units: None / ``"rad"`` (rotations in rad, translations in m), ``"deg"`` (rotations converted
            to degrees), or one of ``"rad"``, ``"deg"``, ``"m"`` per coordinate.
        stream_type: LSL stream type (default ``"Mocap"``).
    """

    def __init__(self, names: Sequence[str], person_id: int, rate_hz: float = 0.0,
                 units: str | Sequence[str] | None = None, stream_type: str = "Mocap"):
        pylsl = import_pylsl()
        self.names = tuple(names)
        if not self.names:
            raise ValueError("LSLOutlet needs at least one coordinate")
        self.person_id = int(person_id)
        self.units = _units(self.names, units)
        self._scale = np.array([np.degrees(1.0) if u == "deg" else 1.0 for u in self.units])
        self.info = pylsl.StreamInfo(
            name=f"rtkin JointAngles p{self.person_id}", type=stream_type, channel_count=len(self.names),
            nominal_srate=float(rate_hz), channel_format=pylsl.cf_double64, source_id=f"rtkin-ja-{self.person_id}",
        )  # fmt: skip
        desc = self.info.desc()
        chans = desc.append_child("channels")
        for name, unit in zip(self.names, self.units):
            ch = chans.append_child("channel")
            ch.append_child_value("label", name)
            ch.append_child_value("unit", unit)
            ch.append_child_value("type", "Position" if unit == "m" else "JointAngle")
        acq = desc.append_child("acquisition")
        acq.append_child_value("manufacturer", "rtkin")
        acq.append_child_value("content", "JointAngles")
        acq.append_child_value("person_id", str(self.person_id))
        acq.append_child_value("timestamps", "capture time (rtkin capture_ns on the LSL clock)")
        self.outlet = pylsl.StreamOutlet(self.info)
        self.offset_s = clock_offset_s(pylsl)
        self.pushed = 0
        self._index: tuple[tuple[str, ...], np.ndarray] | None = None

    def lsl_time(self, capture_ns: int) -> float:
        """An rtkin ``capture_ns`` (``time.monotonic_ns()``) as an LSL timestamp, s."""
        return capture_ns * 1e-9 + self.offset_s

    def _sample(self, msg: JointAngles) -> np.ndarray:
        if msg.names == self.names:
            values = msg.values
        else:  # another order or set of coordinates: map by name, NaN for the missing ones
            if self._index is None or self._index[0] != msg.names:
                pos = {n: i for i, n in enumerate(msg.names)}
                self._index = (msg.names, np.array([pos.get(n, -1) for n in self.names]))
            idx = self._index[1]
            values = np.where(idx >= 0, msg.values[np.maximum(idx, 0)], np.nan)
        return values * self._scale

    def push(self, msg: JointAngles) -> None:
        """Push one JointAngles sample stamped with its capture time."""
        self.outlet.push_sample(self._sample(msg).tolist(), self.lsl_time(msg.capture_ns))
        self.pushed += 1

    def have_consumers(self) -> bool:
        return bool(self.outlet.have_consumers())

    def close(self) -> None:
        """Destroy the outlet (consumers see the stream end)."""
        self.outlet = None  # pylsl destroys the outlet when the object is released


def run_lsl_bridge(endpoints: str | Sequence[str], stop_event: threading.Event, *,
                   rate_hz: float = 0.0, units: str | Sequence[str] | None = None,
                   person_ids=None, settle_s: float = 0.2, keys: str | None = None,
                   client: str = "") -> dict[str, int]:
    """Subscribe to JointAngles and push each person's to its own LSL outlet.

    ``endpoints``: the sync node's outputs (the IK workers it announces are followed, see
    :class:`~rtkin.clients.subscriber.Subscriber`), then any endpoints to connect to as given;
    ``keys``/``client``: CURVE keys for a run bound on a network address.

    Outlets are created on a person's first message (with that message's coordinate names).
    Runs until ``stop_event`` is set (checked every 0.1 s); returns the counters (received,
    malformed, dropped, filtered, pushed, outlets).
    """
    import_pylsl()  # fail early with the install hint
    outlets: dict[int, LSLOutlet] = {}
    pushed = 0
    with Subscriber(endpoints, topics=("ja/",), person_ids=person_ids, settle_s=settle_s, keys=keys,
                    client=client) as sub:
        while not stop_event.is_set():
            msg = sub.recv(timeout_s=0.1)
            if not isinstance(msg, JointAngles):
                continue
            out = outlets.get(msg.person_id)
            if out is None:
                out = outlets[msg.person_id] = LSLOutlet(msg.names, msg.person_id, rate_hz, units)
            out.push(msg)
            pushed += 1
        counters = sub.counters_dict()
    for o in outlets.values():
        o.close()
    return {**counters, "pushed": pushed, "outlets": len(outlets)}
