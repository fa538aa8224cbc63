"""Session report: ``report.html`` (self-contained: every plot inlined, no script, nothing loaded
from the network) plus the same plots as PNG files beside it.

Contents, per person: joint-angle curves per coordinate with left and right overlaid, shaded where
the angle's quality is low and with target bands when configured; range of motion (min, max,
mean, range) per angle; top and side views of the 3D keypoint trajectories; the scale factors
against the generic model. For the session: per-camera reprojection error and which cameras the
subject was triangulated from over time, and the frame accounting.

Two producers fill the same :class:`SessionReport`: ``rtkin reprocess`` (from its own arrays) and
:func:`write_session_report` (the live outputs of a recording, as recorded: the end of
``rtkin run`` and ``rtkin export --report``).

Time axis: seconds from the session's first slot (the first Skeleton3D), shared with the MOT,
TRC and C3D files. Angles in degrees here (the display edge), translations in m.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
import re
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Mapping, Sequence

import numpy as np

__all__ = ["PersonReport", "SessionReport", "write_report", "write_session_report", "camera_reprojection",
           "scale_factors_from_osim", "live_report_data"]

#: Low-quality shading threshold (quality in [0, 1]).
LOW_QUALITY = 0.5
#: Keypoints drawn in the trajectory views (those present in the skeleton).
TRAJECTORY_POINTS = ("Head", "Nose", "Neck", "Hip", "RWrist", "LWrist", "RAnkle", "LAnkle")


@dataclass
class PersonReport:
    """One person's data for the report.

    Attributes:
        person_id: track id.
        time_s: ``(T,)`` s on the session axis (rows of ``values``).
        names: ``(Q,)`` coordinate names.
        values: ``(T, Q)`` rad (rotations) / m (translations); NaN = no solution.
        quality: ``(T, Q)`` in [0, 1] or None.
        point_time_s: ``(T2,)`` s; points: ``(T2, K, 3)`` world m (z up); keypoint_names: ``(K,)``.
        scale_factors: body -> factor against the generic model (None: not scaled).
        model: path of the model the angles were solved on.
    """

    person_id: int
    time_s: np.ndarray
    names: tuple[str, ...]
    values: np.ndarray
    quality: np.ndarray | None = None
    point_time_s: np.ndarray | None = None
    points: np.ndarray | None = None
    keypoint_names: tuple[str, ...] = ()
    scale_factors: Mapping[str, float] | None = None
    model: str = ""


@dataclass
class SessionReport:
    """Everything the report shows.

    Attributes:
        title: page title. source: recording or project path. kind: e.g. ``"live outputs"``.
        fps: slot rate, Hz.
        people: per person.
        cameras: ``(C,)`` names; camera_time_s ``(S,)``; camera_reproj_px ``(S, C)`` median
            reprojection error of the subject's keypoints per camera (NaN: not seen);
            camera_used ``(S, C)`` bool: the camera's detection matched the subject.
        accounting: ordered label -> value (frames, slots, outputs, gaps...).
        targets: coordinate -> (min, max) in degrees (m for translations).
        notes: free lines shown at the top (warnings, settings).
    """

    title: str
    source: str
    kind: str
    fps: float
    people: list[PersonReport] = field(default_factory=list)
    cameras: tuple[str, ...] = ()
    camera_time_s: np.ndarray | None = None
    camera_reproj_px: np.ndarray | None = None
    camera_used: np.ndarray | None = None
    accounting: dict[str, object] = field(default_factory=dict)
    targets: dict[str, tuple[float, float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


# ============================================================================ helpers


def _is_rotation(name: str) -> bool:
    from rtkin.core.messages import coordinate_unit

    return coordinate_unit(name) == "rad"


def _side_pairs(names: Sequence[str]) -> list[tuple[str, str | None, str | None]]:
    """(label, right name, left name) rows: ``x_r`` / ``x_l`` pairs overlaid, others alone."""
    seen, rows = set(), []
    for n in names:
        if n in seen:
            continue
        m = re.match(r"^(.*)_([rl])$", n)
        if m:
            r, l = f"{m.group(1)}_r", f"{m.group(1)}_l"
            seen.update((r, l))
            rows.append((m.group(1), r if r in names else None, l if l in names else None))
        else:
            seen.add(n)
            rows.append((n, n, None))
    return rows


def _display(values: np.ndarray, name: str) -> np.ndarray:
    return np.degrees(values) if _is_rotation(name) else values


def _moving(values: np.ndarray) -> bool:
    v = values[np.isfinite(values)]
    return v.size > 1 and float(v.max() - v.min()) > 1e-9


def _thin(n: int, most: int = 1500) -> slice:
    """Every k-th sample so a curve has at most ``most`` points (plots of long sessions stay cheap)."""
    return slice(None, None, max(1, -(-n // most)))


def _png(fig) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return buf.getvalue()


def _figure(w: float, h: float, top: float = 0.9):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h))  # fixed margins: constrained layout costs seconds on a 27-panel figure
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.08, top=top, hspace=0.55, wspace=0.25)
    return fig


# ============================================================================ plots


def _angles_png(p: PersonReport, targets: Mapping[str, tuple[float, float]]) -> bytes:
    rows = [r for r in _side_pairs(p.names)
            if any(n and _moving(p.values[:, p.names.index(n)]) for n in r[1:])]
    n = max(len(rows), 1)
    cols = 3
    nrows = math.ceil(n / cols)
    height = 2.1 * nrows + 0.8
    fig = _figure(13, height, top=1 - 0.75 / height)
    fig.subplots_adjust(bottom=0.35 / height)
    axes = fig.subplots(nrows, cols, squeeze=False).ravel()
    for ax in axes[len(rows):]:
        ax.set_visible(False)
    for ax, (label, r, l) in zip(axes, rows):
        for name, color, side in ((r, "tab:red", "R"), (l, "tab:blue", "L")):
            if name is None:
                continue
            j = p.names.index(name)
            k = _thin(len(p.time_s))
            y = _display(p.values[k, j], name)
            ax.plot(p.time_s[k], y, color=color, lw=1.0, label=side if l else None)
            if p.quality is not None:
                low = p.quality[k, j] < LOW_QUALITY
                if low.any():
                    lo, hi = np.nanmin(y) if np.isfinite(y).any() else 0, np.nanmax(y) if np.isfinite(y).any() else 1
                    ax.fill_between(p.time_s[k], lo, hi, where=low, color=color, alpha=0.12, lw=0)
            band = targets.get(name)
            if band is not None:
                ax.axhspan(band[0], band[1], color="tab:green", alpha=0.12, lw=0)
        ax.set_title(label, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.locator_params(nbins=5)
        ax.set_ylabel("deg" if _is_rotation(r or l) else "m", fontsize=7)
        if l:
            ax.legend(fontsize=7, loc="upper right")
    for ax in axes[max(len(rows) - cols, 0):len(rows)]:
        ax.set_xlabel("time, s", fontsize=7)
    fig.suptitle(f"person {p.person_id}: joint angles (red right, blue left; shaded: quality < {LOW_QUALITY})",
                 fontsize=10, y=1 - 0.15 / height)
    return _png(fig)


def _trajectories_png(p: PersonReport) -> bytes:
    fig = _figure(11, 4.2)
    top, side = fig.subplots(1, 2)
    pts = p.points
    for name in TRAJECTORY_POINTS:
        if name not in p.keypoint_names:
            continue
        k = p.keypoint_names.index(name)
        xyz = pts[_thin(len(pts)), k]
        top.plot(xyz[:, 0], xyz[:, 1], lw=0.8, label=name)
        side.plot(xyz[:, 0], xyz[:, 2], lw=0.8, label=name)
    top.set_title("top view (world x-y, m)", fontsize=9)
    side.set_title("side view (world x-z, m; z up)", fontsize=9)
    for ax in (top, side):
        ax.set_aspect("equal", adjustable="datalim")
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    top.legend(fontsize=7, ncol=2)
    fig.suptitle(f"person {p.person_id}: 3D keypoint trajectories", fontsize=10)
    return _png(fig)


def _scaling_png(p: PersonReport) -> bytes:
    items = sorted(p.scale_factors.items())
    fig = _figure(11, 3.2)
    ax = fig.subplots()
    ax.bar(range(len(items)), [v for _, v in items], color="tab:purple")
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xticks(range(len(items)), [k for k, _ in items], rotation=60, fontsize=7)
    ax.set_ylabel("factor vs generic model", fontsize=8)
    ax.set_title(f"person {p.person_id}: scale factors against the generic model", fontsize=9)
    return _png(fig)


def _cameras_png(rep: SessionReport) -> bytes:
    fig = _figure(11, 5.0)
    err_ax, use_ax = fig.subplots(2, 1, sharex=True)
    t = rep.camera_time_s
    k = _thin(len(t))
    for c, name in enumerate(rep.cameras):
        err_ax.plot(t[k], rep.camera_reproj_px[k, c], lw=0.8, label=name)
    err_ax.set_ylabel("median reprojection px", fontsize=8)
    err_ax.set_title("per-camera reprojection error of the subject's keypoints", fontsize=9)
    err_ax.legend(fontsize=7, ncol=len(rep.cameras))
    used = np.asarray(rep.camera_used, dtype=float)
    use_ax.imshow(used.T, aspect="auto", interpolation="nearest", cmap="Greens", vmin=0, vmax=1,
                  extent=(float(t[0]) if t.size else 0, float(t[-1]) if t.size else 1, len(rep.cameras) - 0.5, -0.5))
    use_ax.set_yticks(range(len(rep.cameras)), rep.cameras, fontsize=7)
    use_ax.set_xlabel("time, s (session axis)", fontsize=8)
    use_ax.set_title(f"cameras used for the subject over time ({used.sum(1).mean():.2f} on average)", fontsize=9)
    for ax in (err_ax, use_ax):
        ax.tick_params(labelsize=7)
    return _png(fig)


# ============================================================================ HTML


def _rom_rows(p: PersonReport) -> list[list[str]]:
    out = []
    for j, n in enumerate(p.names):
        y = _display(p.values[:, j], n)
        y = y[np.isfinite(y)]
        if y.size == 0 or not _moving(y):
            continue
        unit = "deg" if _is_rotation(n) else "m"
        f = (lambda v: f"{v:.1f}") if unit == "deg" else (lambda v: f"{v:.3f}")
        q = "" if p.quality is None else f"{np.nanmean(p.quality[:, j] >= LOW_QUALITY) * 100:.0f} %"
        out.append([n, unit, f(y.min()), f(y.max()), f(y.mean()), f(y.max() - y.min()), q])
    return out


def _table(head: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    h = "".join(f"<th>{html.escape(str(c))}</th>" for c in head)
    b = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{h}</tr></thead><tbody>{b}</tbody></table>"


_CSS = """body{font-family:sans-serif;margin:1.5em;max-width:1250px;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}img{max-width:100%;border:1px solid #eee}.note{color:#a60}"""


def write_report(rep: SessionReport, out_dir: str | os.PathLike, stem: str = "report") -> Path:
    """Write ``<out_dir>/<stem>.html`` and its PNGs (``<stem>_*.png``); returns the HTML path.

    Every figure is embedded in the page as a data URI, so the HTML alone is the whole report.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    parts = [f"<h1>{html.escape(rep.title)}</h1>",
             f"<p>{html.escape(rep.kind)} of <code>{html.escape(rep.source)}</code>; {rep.fps:g} Hz; "
             "time axis: seconds from the session's first slot (as in the MOT / TRC / C3D files).</p>"]
    parts += [f'<p class="note">{html.escape(n)}</p>' for n in rep.notes]

    def img(name: str, data: bytes, alt: str) -> str:
        (out / f"{stem}_{name}.png").write_bytes(data)
        return f'<p><img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode()}"></p>'

    if not rep.people:
        parts.append('<p class="note">No joint angles in this session.</p>')
    for p in rep.people:
        parts.append(f"<h2>Person {p.person_id}</h2>")
        if p.model:
            parts.append(f"<p>model: <code>{html.escape(p.model)}</code></p>")
        if p.values.size and len(p.time_s):
            parts.append(img(f"angles_person{p.person_id}", _angles_png(p, rep.targets), "joint angles"))
            parts.append("<h3>Range of motion</h3>")
            parts.append(_table(["coordinate", "unit", "min", "max", "mean", "range", "good quality"], _rom_rows(p)))
        if p.points is not None and len(p.points):
            parts.append(img(f"trajectories_person{p.person_id}", _trajectories_png(p), "3D trajectories"))
        if p.scale_factors:
            parts.append("<h3>Scaling</h3>")
            parts.append(img(f"scaling_person{p.person_id}", _scaling_png(p), "scale factors"))
            parts.append(_table(["body", "factor"], [[k, f"{v:.3f}"] for k, v in sorted(p.scale_factors.items())]))
        elif p.scale_factors is not None:
            parts.append("<p>Not scaled: the generic model.</p>")
    if rep.camera_time_s is not None and len(rep.camera_time_s) and rep.cameras:
        parts.append("<h2>Cameras</h2>")
        parts.append(img("cameras", _cameras_png(rep), "per-camera reprojection"))
        with np.errstate(all="ignore"):
            rows = [[c, f"{np.nanmedian(rep.camera_reproj_px[:, i]):.2f}" if np.isfinite(rep.camera_reproj_px[:, i]).any() else "-",
                     f"{np.mean(rep.camera_used[:, i]) * 100:.1f} %"] for i, c in enumerate(rep.cameras)]
        parts.append(_table(["camera", "median reprojection px", "slots used"], rows))
    parts.append("<h2>Frame accounting</h2>")
    parts.append(_table(["item", "value"], [[k, v] for k, v in rep.accounting.items()]))
    page = (f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(rep.title)}</title>'
            f"<style>{_CSS}</style></head><body>{''.join(parts)}</body></html>\n")
    path = out / f"{stem}.html"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    return path


# ============================================================================ data helpers


def camera_reprojection(rig, frames: Mapping[str, Sequence[tuple[int, np.ndarray]]], slot_ns: np.ndarray,
                        points: np.ndarray, min_score: float = 0.3, match_px: float = 30.0
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Per slot and camera, the subject's median reprojection error and whether the camera saw them.

    Args:
        rig: :class:`rtkin.core.calibration.Rig`.
        frames: camera name -> ``[(capture_ns, keypoints (P, K, 3) px, px, score), ...]`` in time order.
        slot_ns: ``(S,)`` slot times, int ns (capture clock).
        points: ``(S, K, 3)`` the subject's 3D keypoints per slot, world m (NaN = missing).
        min_score: 2D keypoints below this score are not compared.
        match_px: a detection whose median error is below this counts as the subject.

    Returns:
        ``(S, C)`` median error px (NaN: no detection of the subject) and ``(S, C)`` bool used.
    """
    S, C = len(slot_ns), len(rig)
    err = np.full((S, C), np.nan)
    used = np.zeros((S, C), dtype=bool)
    if S == 0:
        return err, used
    period = float(np.median(np.diff(slot_ns))) if S > 1 else 1e9 / 60
    pts = np.asarray(points, dtype=np.float64)
    ok3 = np.isfinite(pts).all(-1)  # (S, K)
    for c, cam in enumerate(rig.cameras):
        fr = frames.get(cam.name, [])
        if not fr:
            continue
        times = np.array([f[0] for f in fr], dtype=np.int64)
        i = np.clip(np.searchsorted(times, slot_ns), 0, len(times) - 1)
        prev = np.clip(i - 1, 0, len(times) - 1)
        i = np.where(np.abs(times[prev] - slot_ns) < np.abs(times[i] - slot_ns), prev, i)
        near = np.abs(times[i] - slot_ns) <= period / 2
        uv = cam.project(np.where(ok3[..., None], pts, 0.0).reshape(-1, 3)).reshape(S, -1, 2)  # (S, K, 2)
        todo = np.flatnonzero(near & (ok3.sum(1) >= 3))
        for lo in range(0, todo.size, 2048):  # blocks of slots, vectorised (bounded memory)
            rows = todo[lo:lo + 2048]
            e, hit = _nearest_detection(uv[rows], ok3[rows], [fr[int(i[s])][1] for s in rows], min_score, match_px)
            err[rows[hit], c] = e[hit]
            used[rows[hit], c] = True
    return err, used


def _nearest_detection(uv: np.ndarray, ok3: np.ndarray, kps: list, min_score: float, match_px: float):
    """Per slot, the median px distance of the detection closest to the projected subject
    (``uv`` (R, K, 2), ``ok3`` (R, K) point known, ``kps`` R arrays (P, K, 3)): (R,) error and
    (R,) bool match (median under ``match_px`` over at least 3 keypoints seen with ``min_score``)."""
    import warnings

    R, K = ok3.shape
    P = max((kp.shape[0] for kp in kps), default=0)
    if P == 0:
        return np.full(R, np.nan), np.zeros(R, dtype=bool)
    det = np.zeros((R, P, K, 3), dtype=np.float32)  # padded with score 0: never compared
    for n, kp in enumerate(kps):
        det[n, : kp.shape[0]] = kp
    d = np.linalg.norm(det[..., :2] - uv[:, None], axis=-1)  # (R, P, K)
    good = (det[..., 2] >= min_score) & ok3[:, None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: replaced just below
        med = np.nanmedian(np.where(good, d, np.nan), axis=-1)  # (R, P)
    med[(np.isnan(d) & good).any(-1)] = np.nan  # as np.median of the compared distances says
    med[good.sum(-1) < 3] = np.inf
    best = med[np.arange(R), np.argmin(med, axis=1)]
    return best, np.isfinite(best) & (best <= match_px)


def scale_factors_from_osim(scaled: str | os.PathLike, generic: str | os.PathLike | None = None) -> dict[str, float]:
    """Per body, the scale factor of a scaled ``.osim`` against the generic model: the ratio of
    the lengths of the joint offsets that the body carries (a joint's parent frame is offset
    in its parent body, and scaling the body scales that offset), read from the XML. Bodies that
    carry no offset joint (hands, toes) are not listed."""
    from rtkin.core import assets

    def offsets(path) -> dict[str, float]:
        out: dict[str, float] = {}
        for frames in ET.parse(path).getroot().iter("frames"):
            for pof in frames.findall("PhysicalOffsetFrame"):
                tr, parent = pof.findtext("translation"), pof.findtext("socket_parent")
                if not tr or not parent or "bodyset/" not in parent:
                    continue
                n = float(np.linalg.norm([float(x) for x in tr.split()]))
                body = parent.rsplit("/", 1)[-1]
                if n > 1e-4 and n > out.get(body, 0.0):
                    out[body] = n
        return out

    a = offsets(generic or assets.model_path())
    b = offsets(scaled)
    return {k: b[k] / a[k] for k in sorted(a) if k in b}


# ============================================================================ live outputs


def _rig_from_meta(meta: Mapping) -> object | None:
    from rtkin.core.calibration import read_calib_toml

    text = meta.get("calibration_toml")
    if not text:
        return None
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "Calib.toml"
        p.write_text(text)
        return read_calib_toml(p)


#: The per-camera figures of the live report evaluate at most this many slots (a long session is
#: sampled evenly: a 10-minute session at 60 Hz, every 12th slot).
MAX_FIGURE_SLOTS = 3000


class RecordedSession(NamedTuple):
    """What a recording holds, read once (:func:`read_recorded`): its reader (header, flags),
    the Skeleton3D and JointAngles recorded live, and the inputs per camera (capture ns, keypoints)."""

    reader: object
    skeletons: list
    angles: dict
    frames: dict
    n_inputs: int


def read_recorded(recording: str | os.PathLike, inputs: bool = True) -> RecordedSession:
    """One pass over a recording: outputs (decoded, validated) sorted by time, and (``inputs``)
    each camera's inputs as ``(capture_ns, keypoints)`` for the report's per-camera figures, read
    without building messages (:func:`rtkin.core.codec.unpack_parts`: 3x faster, sizes and types
    still checked)."""
    from rtkin.core.codec import DecodeError, unpack, unpack_parts
    from rtkin.core.messages import JointAngles, Skeleton3D
    from rtkin.io.recording import INPUT, OUTPUT, RecordingReader

    reader = RecordingReader(recording)
    sks: list = []
    jas: dict[int, list] = {}
    frames: dict[str, list] = {}
    n_inputs = 0
    for kind, _recv_ns, body in reader.raw():
        try:
            if kind == INPUT:
                schema, fields, arrays = unpack_parts(body, reader.limits)
                if schema == "KeypointFrame":
                    n_inputs += 1
                    if inputs:
                        frames.setdefault(fields["camera"], []).append((fields["capture_ns"], arrays["keypoints"]))
            elif kind == OUTPUT:
                m = unpack(body, reader.limits)
                if isinstance(m, Skeleton3D):
                    sks.append(m)
                elif isinstance(m, JointAngles):
                    jas.setdefault(int(m.person_id), []).append(m)
        except DecodeError:
            reader.n_malformed += 1
    sks.sort(key=lambda s: s.time_ns)
    for v in jas.values():
        v.sort(key=lambda m: m.time_ns)
    return RecordedSession(reader, sks, jas, frames, n_inputs)


def live_report_data(recording: str | os.PathLike, out_dir: str | os.PathLike | None = None,
                     name: str | None = None, session: RecordedSession | None = None) -> SessionReport:
    """A :class:`SessionReport` of a recording's live outputs, as recorded (no recomputation):
    JointAngles, Skeleton3D, and the inputs for the per-camera figures; a killed run's file
    reads up to its last whole record (``session``: the recording already read, else it is read).
    Scale factors come from ``<out_dir>/<name>_person<id>_scaled.osim`` when present (the models
    the live run wrote)."""
    session = session or read_recorded(recording)
    reader, sks, jas, frames, n_inputs = session
    cfg = reader.meta.get("config", {}) or {}
    fps = float(cfg.get("sync", {}).get("fps_hz", 60.0))
    name = name or cfg.get("run", {}).get("name") or Path(recording).stem
    sks.sort(key=lambda s: s.time_ns)
    t0 = sks[0].time_ns if sks else min((v[0].time_ns for v in jas.values()), default=0)
    rep = SessionReport(title=f"rtkin session report: {name}", source=str(recording), kind="live outputs",
                        fps=fps, targets={str(t[0]): (float(t[1]), float(t[2]))
                                          for t in cfg.get("view", {}).get("targets", []) if len(t) == 3})
    if reader.truncated or not reader.complete:
        rep.notes.append("the recording ends without its end marker (a killed or crashed run): "
                         "everything up to its last whole record is shown")
    counts = {int(p): 0 for s in sks for p in s.person_ids}
    for s in sks:
        for p in s.person_ids:
            counts[int(p)] += 1
    subject = max(counts, key=counts.get) if counts else None
    out_dir = Path(out_dir) if out_dir is not None else Path(recording).parent
    for pid in sorted(jas):
        msgs = sorted(jas[pid], key=lambda m: m.time_ns)
        names = msgs[0].names
        msgs = [m for m in msgs if m.names == names]
        pts = [(s.time_ns, s.points[list(s.person_ids).index(pid)]) for s in sks if pid in s.person_ids]
        osim = out_dir / f"{name}_person{pid}_scaled.osim"
        factors = scale_factors_from_osim(osim) if osim.is_file() else {}
        rep.people.append(PersonReport(
            person_id=pid, time_s=np.array([(m.time_ns - t0) * 1e-9 for m in msgs]), names=tuple(names),
            values=np.stack([m.values for m in msgs]), quality=np.stack([m.quality for m in msgs]),
            point_time_s=np.array([(t - t0) * 1e-9 for t, _ in pts]) if pts else None,
            points=np.stack([p for _, p in pts]) if pts else None,
            keypoint_names=tuple(_skeleton_names(sks[0].skeleton)) if sks else (),
            scale_factors=factors, model=str(osim) if osim.is_file() else "generic model (not scaled)"))
    rig = _rig_from_meta(reader.meta)
    if rig is not None and sks and subject is not None:
        slot_ns = np.array([s.time_ns for s in sks], dtype=np.int64)
        pts = np.full((len(sks), sks[0].n_keypoints, 3), np.nan)
        for i, s in enumerate(sks):
            hit = np.flatnonzero(s.person_ids == subject)
            if hit.size:
                pts[i] = s.points[hit[0]]
        cams = [c for c in rig.names]
        for c in cams:
            frames.setdefault(c, []).sort(key=lambda f: f[0])
        step = max(1, -(-len(sks) // MAX_FIGURE_SLOTS))  # a long session: every step-th slot (a figure)
        slot_ns, pts = slot_ns[::step], pts[::step]
        err, used = camera_reprojection(rig, frames, slot_ns, pts)
        rep.cameras, rep.camera_time_s = tuple(cams), (slot_ns - t0) * 1e-9
        rep.camera_reproj_px, rep.camera_used = err, used
    rep.accounting = {"KeypointFrames recorded": n_inputs,
                      **{f"frames from {c}": len(v) for c, v in frames.items()},
                      "Skeleton3D slots recorded": len(sks),
                      "slots with the subject": counts.get(subject, 0) if subject is not None else 0,
                      "people tracked": len(counts),
                      **{f"JointAngles person {p}": len(v) for p, v in sorted(jas.items())},
                      "recording complete": "yes" if reader.complete else "no (killed run)",
                      "malformed records skipped": reader.n_malformed}
    return rep


def _skeleton_names(skeleton: str) -> tuple[str, ...]:
    from rtkin.core.skeletons import get_skeleton

    return get_skeleton(skeleton).keypoints


def write_session_report(recording: str | os.PathLike, out_dir: str | os.PathLike, name: str | None = None,
                         stem: str | None = None, session: RecordedSession | None = None) -> Path:
    """The report of a recording's live outputs, as recorded: ``<out_dir>/<stem>.html`` + PNGs
    (``stem`` default ``<name>_report``; ``session``: the recording already read). What the end
    of ``rtkin run`` writes (through :func:`rtkin.offline.export.export_recording`)."""
    rep = live_report_data(recording, out_dir, name, session)
    stem = stem or f"{name or Path(recording).stem}_report"
    return write_report(rep, out_dir, stem)
