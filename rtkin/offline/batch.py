"""Reprocess many sessions: locally in N worker processes, or on an existing Dask distributed
cluster, one task per session. A failing session is reported and the others finish.

Each task is :func:`run_one` (importable, so Dask workers can run it): it reprocesses one
recording into its output folder and returns a small :class:`SessionOutcome`, never raising,
so one corrupt file cannot stop the batch. With Dask the workers write the outputs themselves:
the recordings and output folders must be on a filesystem every worker sees at the same path
(a lab's shared drive), and the workers need rtkin installed (same version as the client).

Outputs are the same whichever way a session runs (the computation is deterministic and
single-threaded per session).
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

__all__ = ["SessionOutcome", "run_one", "run_batch", "session_out_dir"]


@dataclass
class SessionOutcome:
    """One session's result: ok, or the one-line error; files written; wall time (s) and the
    session's length (s)."""

    recording: str
    out_dir: str
    ok: bool
    error: str = ""
    files: list[str] = field(default_factory=list)
    people: int = 0
    seconds: float = 0.0
    duration_s: float = 0.0


def session_out_dir(recording: str | Path, out_root: str | Path | None) -> Path:
    """``<out_root>/<stem>`` or, without ``out_root``, ``<stem>_reprocessed`` beside the recording
    (a Pose2Sim project folder: ``<project>/rtkin``)."""
    rec = Path(recording)
    if rec.is_dir():
        return Path(out_root) / rec.name if out_root else rec / "rtkin"
    return Path(out_root) / rec.stem if out_root else rec.with_name(f"{rec.stem}_reprocessed")


def run_one(recording: str, out_dir: str, overrides: Mapping | None = None, force: bool = False) -> SessionOutcome:
    """Reprocess one recording (or Pose2Sim project folder); every error becomes the outcome's
    ``error`` (the type and the message), nothing is raised."""
    t = time.perf_counter()
    try:
        if Path(recording).is_dir():
            from rtkin.offline.pose2sim_project import reprocess_project

            res = reprocess_project(recording, out_dir, overrides=overrides, force=force)
        else:
            from rtkin.offline.reprocess import reprocess

            res = reprocess(recording, out_dir, overrides=overrides, force=force)
    except Exception as e:  # noqa: BLE001 - one session's failure must not stop the batch
        msg = str(e).splitlines()[0] if str(e) else ""
        return SessionOutcome(str(recording), str(out_dir), False, f"{type(e).__name__}: {msg}",
                              seconds=time.perf_counter() - t)
    return SessionOutcome(str(recording), str(out_dir), True, files=[str(f) for f in res.files],
                          people=len(res.people), seconds=time.perf_counter() - t, duration_s=res.duration_s)


def run_batch(recordings: Sequence[str | Path], out_root: str | Path | None = None, overrides: Mapping | None = None,
              workers: int = 1, scheduler: str | None = None, force: bool = False,
              on_done: Callable[[SessionOutcome, int, int], None] | None = None) -> list[SessionOutcome]:
    """Reprocess every recording; outcomes in the input order.

    Args:
        recordings: ``.rtkrec`` files or Pose2Sim project folders.
        out_root: outputs in ``<out_root>/<stem>`` (see :func:`session_out_dir`).
        overrides: settings overriding each recording's (as ``rtkin reprocess --config``).
        workers: local worker processes (1 = in this process, one after the other).
        scheduler: a Dask scheduler address (``tcp://host:8786``); then ``workers`` is ignored.
        force: overwrite existing outputs.
        on_done: ``on_done(outcome, done, total)`` after each session (progress bar).

    Raises:
        ValueError: two recordings would write the same output folder.
    """
    recs = [str(Path(r).resolve()) for r in recordings]
    outs = [str(session_out_dir(r, out_root).resolve()) for r in recs]
    dup = {o for o in outs if outs.count(o) > 1}
    if dup:
        raise ValueError(f"several sessions would write {sorted(dup)[0]}: give them different names")
    jobs = list(zip(recs, outs))
    results: dict[int, SessionOutcome] = {}

    def done(i: int, outcome: SessionOutcome) -> None:
        results[i] = outcome
        if on_done is not None:
            on_done(outcome, len(results), len(jobs))

    if scheduler:
        _run_dask(jobs, overrides, force, scheduler, done)
    elif workers <= 1:
        for i, (r, o) in enumerate(jobs):
            done(i, run_one(r, o, overrides, force))
    else:
        with cf.ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
            futs = {pool.submit(run_one, r, o, overrides, force): i for i, (r, o) in enumerate(jobs)}
            for fut in cf.as_completed(futs):
                done(futs[fut], _result(fut, jobs[futs[fut]]))
    return [results[i] for i in range(len(jobs))]


def _result(fut, job) -> SessionOutcome:
    """A future's outcome; a worker that died (killed, out of memory) is the session's error."""
    try:
        return fut.result()
    except Exception as e:  # noqa: BLE001 - e.g. a worker process killed mid-session
        return SessionOutcome(job[0], job[1], False, f"worker failed: {type(e).__name__}: {e}")


def _run_dask(jobs, overrides, force: bool, scheduler: str, done) -> None:
    try:
        from distributed import Client, as_completed
    except ImportError as e:
        raise ValueError("--scheduler needs Dask: pip install \"rtkin[dask]\" (dask[distributed])") from e
    try:
        client = Client(scheduler, timeout="15s")
    except (OSError, TimeoutError) as e:
        raise ValueError(f"cannot reach the Dask scheduler at {scheduler}: {e}") from e
    try:
        futs = [client.submit(run_one, r, o, overrides, force, pure=False, key=f"rtkin-reprocess-{i}-{Path(r).stem}")
                for i, (r, o) in enumerate(jobs)]
        index = {f.key: i for i, f in enumerate(futs)}
        for fut in as_completed(futs):
            i = index[fut.key]
            done(i, _result(fut, jobs[i]))
    finally:
        client.close()
