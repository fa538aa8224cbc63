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


def _equal_aspect(xlim: tuple[float, float], ylim: tuple[float, float], w: float, h: float):
    """Limits widened so that one metre spans as many pixels along x as along y."""
    sx, sy = (xlim[1] - xlim[0]) / w, (ylim[1] - ylim[0]) / h
    if sx > sy:
        c, half = (ylim[0] + ylim[1]) / 2, sx * h / 2
        return xlim, (c - half, c + half)
    c, half = (xlim[0] + xlim[1]) / 2, sy * w / 2
    return (c - half, c + half), ylim


# ============================================================================ plots
# Drawn with :mod:`rtkin.io.plots` (Pillow): matplotlib's per-axes text layout cost ~1 s per
# report, a third of a whole reprocess.

_W = 1170  # figure width, px


def _angles_png(p: PersonReport, targets: Mapping[str, tuple[float, float]]) -> bytes:
    from rtkin.io.plots import BLUE, GREEN, RED, Canvas, limits

    rows = [r for r in _side_pairs(p.names)
            if any(n and _moving(p.values[:, p.names.index(n)]) for n in r[1:])]
    cols, cw, ch, head = 3, _W // 3, 200, 34
    nrows = max(math.ceil(len(rows) / cols), 1)
    cv = Canvas(_W, head + ch * nrows + 14)
    cv.text((_W / 2, 8), f"person {p.person_id}: joint angles (red right, blue left; shaded: quality < {LOW_QUALITY})",
            size=14, anchor="ma")
    t = p.time_s
    xlim = (float(t[0]), float(t[-1])) if len(t) and t[-1] > t[0] else (0.0, 1.0)
    for i, (label, r, l) in enumerate(rows):
        x0, y0 = (i % cols) * cw, head + (i // cols) * ch
        series = [(n, color, side) for n, color, side in ((r, RED, "R"), (l, BLUE, "L")) if n is not None]
        ys = [_display(p.values[:, p.names.index(n)], n) for n, _, _ in series]
        bands = [targets[n] for n, _, _ in series if n in targets]
        ax = cv.panel((x0 + 62, y0 + 24, x0 + cw - 14, y0 + ch - 38), xlim, limits(*ys, *bands),
                      title=label, ylabel="deg" if _is_rotation(r or l) else "m",
                      xlabel="time, s" if i >= len(rows) - cols else "")
        for lo, hi in bands:
            ax.hband(lo, hi, GREEN)
        if p.quality is not None:
            for n, color, _ in series:
                ax.spans(t, p.quality[:, p.names.index(n)] < LOW_QUALITY, color)
        for (n, color, _), y in zip(series, ys):
            ax.line(t, y, color)
        if l:
            ax.legend([(side, color) for _, color, side in series])
    return cv.png()


def _trajectories_png(p: PersonReport) -> bytes:
    from rtkin.io.plots import COLORS, Canvas, limits

    cv = Canvas(990, 380)
    cv.text((495, 6), f"person {p.person_id}: 3D keypoint trajectories", size=14, anchor="ma")
    names = [n for n in TRAJECTORY_POINTS if n in p.keypoint_names]
    xyz = p.points[:, [p.keypoint_names.index(n) for n in names]]  # (T, k, 3)
    boxes = ((60, 50, 480, 340), (560, 50, 980, 340))
    for (a, b), box, title in (((0, 1), boxes[0], "top view (world x-y, m)"),
                               ((0, 2), boxes[1], "side view (world x-z, m; z up)")):
        xlim, ylim = _equal_aspect(limits(xyz[..., a]), limits(xyz[..., b]), box[2] - box[0], box[3] - box[1])
        ax = cv.panel(box, xlim, ylim, title=title, grid=True)
        for k in range(len(names)):
            ax.line(xyz[:, k, a], xyz[:, k, b], COLORS[k % len(COLORS)])
        if a == 0 and b == 1:
            ax.legend([(n, COLORS[k % len(COLORS)]) for k, n in enumerate(names)], ncol=2)
    return cv.png()


def _scaling_png(p: PersonReport) -> bytes:
    from rtkin.io.plots import PURPLE, Canvas

    items = sorted(p.scale_factors.items())
    vals = [v for _, v in items]
    cv = Canvas(990, 300)
    top = max(vals + [1.0]) * 1.1
    ax = cv.panel((70, 30, 975, 225), (-0.6, len(items) - 0.4), (0.0, top), xticks=False,
                  title=f"person {p.person_id}: scale factors against the generic model",
                  ylabel="factor vs generic model")
    ax.bars(vals, PURPLE)
    ax.hline(1.0)
    for i, (k, _) in enumerate(items):
        x, _ = ax.px(i, 0.0)
        cv.vtext((float(x), 230), k, size=10, top=True)
    return cv.png()


def _cameras_png(rep: SessionReport) -> bytes:
    from rtkin.io.plots import COLORS, GREEN, Canvas, limits

    t = rep.camera_time_s
    xlim = (float(t[0]), float(t[-1])) if len(t) and t[-1] > t[0] else (0.0, 1.0)
    C = len(rep.cameras)
    cv = Canvas(990, 470)
    err = cv.panel((70, 30, 975, 215), xlim, limits(rep.camera_reproj_px, floor=0.5),
                   title="per-camera reprojection error of the subject's keypoints", ylabel="median reprojection px")
    for c in range(C):
        err.line(t, rep.camera_reproj_px[:, c], COLORS[c % len(COLORS)])
    err.legend([(n, COLORS[c % len(COLORS)]) for c, n in enumerate(rep.cameras)], ncol=C)
    used = np.asarray(rep.camera_used, dtype=bool)
    use = cv.panel((70, 260, 975, 420), xlim, (C - 0.5, -0.5), xlabel="time, s (session axis)",
                   yticklabels=[(c, n) for c, n in enumerate(rep.cameras)],
                   title=f"cameras used for the subject over time ({used.sum(1).mean():.2f} on average)")
    use.rows(used.T, GREEN)
    use.c.draw.rectangle((use.x0, use.y0, use.x1, use.y1), outline=(34, 34, 34))
    return cv.png()


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
