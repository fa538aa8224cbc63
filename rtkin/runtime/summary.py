"""The end-of-run summary: frame accounting and the figures a user reads after a session.

Frame accounting, per camera: every frame a source sent ends up exactly once as

- ``lost``: sent but never received (dropped in transport, or in flight when its process died);
- ``refused``: received but inconsistent with the run (validation reasons, counted by reason);
- ``late``, ``superseded``, ``out_of_tolerance``, ``clock`` (its capture time or frame counter
  failed its camera's checks): the synchroniser did not use it;
- ``shed``: it went into a FrameSet that was not reconstructed (the machine could not keep up);
- ``used``: it went into a reconstructed FrameSet.

``sent == lost + refused + late + superseded + out_of_tolerance + clock + shed + used``; the
summary says whether the books balance (they do unless a report is missing).
"""

from __future__ import annotations

from rtkin.core.stats import histogram_percentiles, merge_histograms

__all__ = ["frame_accounting", "format_summary", "ACCOUNT_COLUMNS"]

ACCOUNT_COLUMNS = ("sent", "lost", "refused", "late", "superseded", "out_of_tolerance", "clock", "shed", "used")
_SYNC_FATES = ("late", "superseded", "out_of_tolerance", "clock", "index_backwards", "wrong_skeleton")


def frame_accounting(reports: dict, sent: dict[str, int]) -> dict:
    """Per camera (rig order of ``sent``) and in total: the columns of :data:`ACCOUNT_COLUMNS`,
    plus ``balanced`` (every row adds up) and ``refused_by_reason``.

    Args:
        reports: the nodes' final reports (``RunResult.reports``).
        sent: frames sent per camera (``RunResult.sent``).
    """
    sync = reports.get("sync")
    rows: dict[str, dict[str, int]] = {}
    if sync is None:
        return {"rows": rows, "total": {}, "balanced": False, "refused_by_reason": {}, "missing": ["sync"]}
    by_fate = sync["sync"].get("by_camera", {})
    by_check = sync.get("validation", {}).get("by_camera", {})
    shed = sync.get("shed", {}).get("frames", {})
    for cam, n_sent in sent.items():
        fates = by_fate.get(cam, {})
        checks = by_check.get(cam, {})
        refused = sum(v for k, v in checks.items() if k != "accepted")
        received = checks.get("accepted", 0) + refused
        n_shed = shed.get(cam, 0)
        row = {"sent": int(n_sent), "lost": int(n_sent) - received, "refused": refused,
               "late": fates.get("late", 0), "superseded": fates.get("superseded", 0),
               "out_of_tolerance": fates.get("out_of_tolerance", 0),
               "clock": fates.get("clock", 0) + fates.get("index_backwards", 0) + fates.get("wrong_skeleton", 0),
               "shed": n_shed, "used": fates.get("used", 0) - n_shed}
        row["balanced"] = (row["sent"] == sum(row[k] for k in ACCOUNT_COLUMNS[1:])
                           and checks.get("accepted", 0) == fates.get("used", 0) + sum(fates.get(k, 0) for k in _SYNC_FATES)
                           and row["lost"] >= 0)
        rows[cam] = row
    total = {k: sum(r[k] for r in rows.values()) for k in ACCOUNT_COLUMNS}
    return {"rows": rows, "total": total, "balanced": bool(rows) and all(r["balanced"] for r in rows.values()),
            "refused_by_reason": dict(sync.get("validation", {}).get("refused", {})),
            "lost_in_transport_gaps": sync.get("receiver", {}).get("dropped", 0)}


def _accounting_lines(acc: dict) -> list[str]:
    if not acc.get("rows"):
        return []
    w = max(len(c) for c in acc["rows"]) + 1
    cols = ACCOUNT_COLUMNS
    lines = ["frames: " + " ".join(f"{c:>{max(len(c), 6)}}" for c in ("camera".ljust(w),) + cols)]
    for cam, row in list(acc["rows"].items()) + [("total", acc["total"])]:
        lines.append("        " + " ".join([cam.ljust(w)] + [f"{row[c]:>{max(len(c), 6)}}" for c in cols]))
    note = "every frame accounted for" if acc["balanced"] else "NOT balanced (a report is missing: a process was killed?)"
    refused = acc.get("refused_by_reason") or {}
    extra = f"; refused: {', '.join(f'{k} {v}' for k, v in refused.items())}" if refused else ""
    lines.append(f"        ({note}{extra})")
    return lines


def format_summary(summary: dict) -> str:
    """Human-readable end-of-run summary (``summary``: ``reports``, ``sent``, ``errors`` and
    whatever the demo adds: accuracy, angles, files)."""
    lines = []
    rep = summary.get("reports", {})
    sync = rep.get("sync")
    if summary.get("sent") is not None and sync:
        lines += _accounting_lines(frame_accounting(rep, summary["sent"]))
    if sync:
        s, r = sync["sync"], sync["receiver"]
        lines.append(f"FrameSets: {s['framesets']} ({s['incomplete']} with a view missing); Skeleton3D out: "
                     f"{sync['outputs']}; shed (overload): {sync.get('shed', {}).get('slots', 0)} slots")
        lines.append(f"transport: received {r['received']}, malformed {r['malformed']}, sequence gaps {r['dropped']}"
                     + (f"; clock re-alignments {s.get('realigned', 0)}" if s.get("realigned") else ""))
        for stage, t in sync["timing_ms"].items():
            if t.get("n"):
                lines.append(f"stage {stage:<12} p50 {t['p50']:.3f} ms  p99 {t['p99']:.3f} ms  (n={t['n']})")
        lat = sync["latency_ms"]
        if lat.get("n"):
            lines.append(f"capture -> Skeleton3D latency: p50 {lat['p50']:.2f} ms, p99 {lat['p99']:.2f} ms")
    acc = summary.get("accuracy")
    if acc:
        lines.append(f"3D error vs truth: median {acc['median_mm']:.1f} mm, p95 {acc['p95_mm']:.1f} mm "
                     f"({acc['frames_with_subject']}/{acc['frames']} frames with the subject; ids {acc['ids']})")
    fw = summary.get("frames_with_people")
    if fw:
        lines.append(f"Skeleton3D with a person: {fw[0]}/{fw[1]}")
    prov = {k.split(":", 1)[1]: v.get("provider") for k, v in rep.items() if k.startswith("source:") and v.get("provider")}
    if prov:
        lines.append("execution providers: " + ", ".join(f"{c} {p}" for c, p in sorted(prov.items())))
    rec = rep.get("recorder")
    if rec:
        lines.append(f"recording: {rec['path']} ({rec['inputs']} inputs, {rec['outputs']} outputs)")
    ang = summary.get("angles")
    if ang:
        last = ", ".join(f"{n} {v:.0f}" for n, v in ang["last"].items())
        lines.append(f"joint angles (person {ang['person']}, {ang['frames']} frames); last, deg: {last}")
        if ang.get("rmse_deg"):
            lines.append("joint angle RMSE vs truth, deg: " + ", ".join(f"{n} {v:.1f}" for n, v in ang["rmse_deg"].items()))
    lines += _ik_lines(rep)
    for key, label in (("trc", "TRC"), ("c3d", "C3D"), ("mot", "MOT"), ("scaled", "scaled model"), ("report", "report")):
        for path in _as_list(summary.get(key)):
            lines.append(f"{label}: {path}")
    if summary.get("stop_s") is not None:
        lines.append(f"stopped in {summary['stop_s']:.1f} s")
    for e in summary.get("errors", []):
        lines.append(f"error: {e}")
    return "\n".join(lines)


def _ik_lines(rep: dict) -> list[str]:
    lines = []
    ik = {k: v for k, v in rep.items() if k.startswith("ik:")}
    for k, v in sorted(ik.items()):
        t, lat, e2e = v["timing_ms"], v["latency_ms"], v.get("e2e_ms", {})
        if t.get("n"):
            who = ", ".join(map(str, v.get("served", []))) or "-"
            line = f"{k} (person {who}): IK p50 {t['p50']:.2f} ms, p99 {t['p99']:.2f} ms per frame"
            if lat.get("n"):
                line += f"; capture -> JointAngles p50 {lat['p50']:.2f} ms, p99 {lat['p99']:.2f} ms"
            if e2e.get("n"):
                line += f"; last camera frame in -> JointAngles out p50 {e2e['p50']:.2f} ms, p99 {e2e['p99']:.2f} ms"
            if v.get("shed"):
                line += f"; {v['shed']} frames shed (overload)"
            lines.append(line)
    hist = merge_histograms(v.get("e2e_hist") for v in ik.values())
    if len(ik) > 1 and hist["n"]:
        p50, p99 = histogram_percentiles(hist, (50, 99), scale=1e3)
        lines.append(f"all IK workers: last camera frame in -> JointAngles out p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    return lines


def _as_list(v) -> list:
    if v is None:
        return []
    return list(v) if isinstance(v, (list, tuple)) else [v]
