"""``rtkin watch``: a live terminal table of the latest joint angles per person.

Needs rich (``pip install rtkin[view]``). One row per person and coordinate: the value (degrees for
rotations, metres for the ``*_tx/ty/tz`` translations), its quality in [0, 1] (yellow below 0.8,
red below 0.5), its :class:`~rtkin.core.messages.AngleFlag` flags, the marker RMS, and the latency from
image capture to arrival here (``capture_ns`` is in the sync host's ``time.monotonic_ns()``, cameras
on other hosts included: meaningful when watching on the sync host).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from rtkin.clients.subscriber import DEFAULT_ENDPOINT, Subscriber, coordinate_unit
from rtkin.core.messages import AngleFlag, JointAngles

__all__ = ["render_table", "watch", "format_flags"]

_FLAG_ABBR = {
    AngleFlag.HELD: "held",
    AngleFlag.FILLED: "filled",
    AngleFlag.FEW_VIEWS: "few-views",
    AngleFlag.HIGH_REPROJ: "high-reproj",
    AngleFlag.UNSCALED: "unscaled",
    AngleFlag.HEIGHT_ONLY: "height-only",
    AngleFlag.PARTIAL: "scaling",
    AngleFlag.UNOBSERVABLE: "unobservable",
}


def _rich():
    try:
        import rich.table  # noqa: F401, PLC0415
    except ImportError as e:
        raise ImportError("rtkin watch needs rich: pip install rtkin[view]  (or: pip install rich)") from e
    import rich  # noqa: PLC0415

    return rich


def format_flags(flags: int) -> str:
    """``"held,few-views"`` for an AngleFlag bit field ("" for none)."""
    return ",".join(abbr for flag, abbr in _FLAG_ABBR.items() if int(flags) & int(flag))


def _quality_style(q: float) -> str:
    return "red" if q < 0.5 else "yellow" if q < 0.8 else "green"


def render_table(latest: Mapping[int, JointAngles], coordinates: Sequence[str] | None = None,
                 latency_ms: Mapping[int, float] | None = None, now_ns: int | None = None,
                 caption: str | None = None):
    """A rich Table of the latest JointAngles per person.

    Args:
        latest: ``{person_id: JointAngles}``.
        coordinates: coordinate names to show, in this order (None = every coordinate of each message).
        latency_ms: ``{person_id: capture-to-arrival latency in ms}``; missing people show
            ``now_ns - capture_ns`` instead.
        now_ns: ``time.monotonic_ns()`` by default.
        caption: text under the table.
    """
    from rich.table import Table  # noqa: PLC0415
    from rich.text import Text  # noqa: PLC0415

    now_ns = time.monotonic_ns() if now_ns is None else now_ns
    latency_ms = latency_ms or {}
    table = Table(title="rtkin joint angles", caption=caption, expand=False)
    table.add_column("person", justify="right")
    table.add_column("coordinate")
    table.add_column("value", justify="right")
    table.add_column("unit")
    table.add_column("quality", justify="right")
    table.add_column("flags")
    table.add_column("rms mm", justify="right")
    table.add_column("latency ms", justify="right")
    if not latest:
        table.add_row("-", "(waiting for JointAngles)", "", "", "", "", "", "")
        return table
    for n, pid in enumerate(sorted(latest)):
        msg = latest[pid]
        if n:
            table.add_section()
        lat = latency_ms.get(pid, (now_ns - msg.capture_ns) / 1e6)
        rms = "" if math.isnan(msg.marker_rms_m) else f"{msg.marker_rms_m * 1e3:.1f}"
        names = msg.names if coordinates is None else tuple(coordinates)
        index = {name: i for i, name in enumerate(msg.names)}
        first = True
        for name in names:
            i = index.get(name)
            if i is None:
                value, unit, qtext, ftext = Text("n/a", style="dim"), "", Text(""), ""
            elif int(msg.flags[i]) & int(AngleFlag.UNOBSERVABLE):  # a placeholder, not a measurement
                value, unit, qtext, ftext = Text("n/a", style="dim"), "", Text("0.00", style="dim"), "unobservable"
            else:
                v = float(msg.values[i])
                unit = coordinate_unit(name)
                value = Text(f"{v:.3f}" if unit == "m" else f"{np.degrees(v):.1f}")
                unit = "m" if unit == "m" else "deg"
                q = float(msg.quality[i])
                qtext = Text(f"{q:.2f}", style=_quality_style(q))
                ftext = format_flags(int(msg.flags[i]))
            table.add_row(str(pid) if first else "", name, value, unit, qtext, ftext,
                          rms if first else "", f"{lat:.0f}" if first else "")
            first = False
    return table


def watch(endpoints: str | Iterable[str] | None = None, coordinates: Sequence[str] | None = None,
          refresh_hz: float = 10.0, person_ids=None, duration_s: float | None = None,
          keys: str | None = None, client: str = "") -> dict[str, int]:
    """Show the latest joint angles of every person live until Ctrl-C (or ``duration_s``).

    Args:
        endpoints: the sync node's outputs (default ``tcp://127.0.0.1:5551``; the IK workers it
            announces are followed), then any endpoints to connect to as given.
        coordinates: coordinate names to show (None = all).
        refresh_hz: screen refreshes per second.
        person_ids: only these people (None = everyone).
        duration_s: stop after this many seconds (None = until Ctrl-C).
        keys, client: CURVE key folder and client name for a run bound on a network address.

    Returns the subscriber's counters (received, malformed, dropped, filtered).
    """
    _rich()
    from rich.console import Console  # noqa: PLC0415
    from rich.live import Live  # noqa: PLC0415

    endpoints = DEFAULT_ENDPOINT if endpoints is None else endpoints
    eps = [endpoints] if isinstance(endpoints, str) else list(endpoints)
    latest: dict[int, JointAngles] = {}
    latency: dict[int, float] = {}
    period = 1.0 / max(0.5, float(refresh_hz))
    end = None if duration_s is None else time.monotonic() + duration_s
    counters: dict[str, int] = {}
    with Subscriber(eps, topics=("ja/",), person_ids=person_ids, rcvhwm=100, settle_s=0.0, keys=keys,
                    client=client) as sub:

        def view():
            c = sub.counters_dict()
            cap = (f"{', '.join(eps)}  received {c['received']}  dropped {c['dropped']}  "
                   f"malformed {c['malformed']}  (Ctrl-C to quit)")
            return render_table(latest, coordinates, latency, caption=cap)

        try:
            with Live(view(), console=Console(), refresh_per_second=refresh_hz, auto_refresh=False) as live:
                next_draw = time.monotonic()
                while end is None or time.monotonic() < end:
                    msg = sub.recv(timeout_s=max(0.0, next_draw - time.monotonic()))
                    if isinstance(msg, JointAngles):
                        latest[msg.person_id] = msg
                        latency[msg.person_id] = (time.monotonic_ns() - msg.capture_ns) / 1e6
                    if time.monotonic() >= next_draw:
                        live.update(view(), refresh=True)
                        next_draw = time.monotonic() + period
        except KeyboardInterrupt:
            pass
        counters = sub.counters_dict()
    return counters
