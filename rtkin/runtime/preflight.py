"""Checks made before a run starts any process: every setting that names a file, a folder, a camera
or a port is checked, so a bad configuration fails in a second with one line that names the key
or the file and says what to do (:class:`~rtkin.runtime.config.ConfigError`), and a run never
replaces an earlier session's files (:func:`claim_session`).
"""

from __future__ import annotations

import dataclasses
import errno
import os
import socket
from pathlib import Path

from rtkin.runtime.config import ConfigError, RunConfig, angles_endpoints

__all__ = ["preflight", "claim_session", "session_files", "check_endpoint_free"]


def preflight(cfg: RunConfig, force: bool = False) -> RunConfig:
    """Check ``cfg`` against the machine; returns it with the session settled (output folder
    absolute, session name free: see :func:`claim_session`).

    Raises:
        ConfigError: one line naming the key or file, saying what to do.
    """
    rig = _check_rig(cfg)
    _check_sources(cfg, rig.names)
    _check_ports(cfg)
    return claim_session(cfg, force)


# ----------------------------------------------------------------------------- session files


def session_files(out_dir: Path, name: str) -> list[Path]:
    """Files of session ``name`` in ``out_dir``: ``<name>.*`` and ``<name>_*`` (recording, partial
    recording, TRC, MOT, scaled models, report)."""
    if not out_dir.is_dir():
        return []
    return sorted(p for p in out_dir.iterdir() if p.name.startswith((f"{name}.", f"{name}_")))


def claim_session(cfg: RunConfig, force: bool = False) -> RunConfig:
    """Settle where the run writes: the output folder (created, must be writable, made absolute)
    and a session name whose files do not exist yet (``name``, then ``name-2``, ``name-3``, ...;
    with ``force`` the name is kept and its files are replaced as the run writes them).

    Raises:
        ConfigError: the folder cannot be created or written, or an explicit ``[recording] path``
            exists (without ``force``).
    """
    out = cfg.output_dir().resolve()
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".rtkin-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"[run] output_dir: cannot write to {out} ({e.strerror or e}); choose another folder") from None
    name = cfg.run.name
    if cfg.recording.path:
        rec = Path(cfg.recording.path).expanduser().resolve()
        if (rec.exists() or Path(str(rec) + ".partial").exists()) and not force:
            raise ConfigError(f"[recording] path: {rec} exists; choose another path, or pass --force to replace it")
        try:
            rec.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"[recording] path: cannot create {rec.parent} ({e.strerror or e})") from None
        recording = dataclasses.replace(cfg.recording, path=str(rec))
    else:
        recording = cfg.recording
        if not force:
            n = 1
            while session_files(out, name):
                n += 1
                name = f"{cfg.run.name}-{n}"
    run = dataclasses.replace(cfg.run, name=name, output_dir=str(out))
    return dataclasses.replace(cfg, run=run, recording=recording)


# ----------------------------------------------------------------------------- rig and sources


def _check_rig(cfg: RunConfig):
    from rtkin.core.calibration import CalibrationError, load_calib
    from rtkin.sim import virtual

    if cfg.rig.calibration:
        path = cfg.path(cfg.rig.calibration)
        if not path.is_file():
            raise ConfigError(f"[rig] calibration: file not found: {path} (paths are relative to the config file)")
        try:
            rig = load_calib(path)
        except (CalibrationError, ValueError, OSError) as e:
            raise ConfigError(f"[rig] calibration: {path}: {e}") from None
    else:
        rig = virtual.demo_rig()
    if cfg.rig.cameras:
        missing = [c for c in cfg.rig.cameras if c not in rig.names]
        if missing:
            raise ConfigError(f"[rig] cameras: {', '.join(missing)} not in the calibration "
                              f"(it has {', '.join(rig.names)})")
        rig = rig.subset(cfg.rig.cameras)
    if len(rig) < 2:
        raise ConfigError(f"[rig]: {len(rig)} camera ({', '.join(rig.names)}); triangulation needs at least 2")
    return rig


def _check_sources(cfg: RunConfig, cameras) -> None:
    src = cfg.source
    if src.kind == "openpose":
        _check_openpose(cfg, cameras)
    elif src.kind == "capture":
        _check_capture(cfg, cameras)


def _check_openpose(cfg: RunConfig, cameras) -> None:
    op = cfg.source.openpose
    if not op.root:
        raise ConfigError("[source.openpose] root: not set (the folder holding one OpenPose-JSON folder per camera)")
    root = cfg.path(op.root)
    if not root.is_dir():
        raise ConfigError(f"[source.openpose] root: folder not found: {root} (paths are relative to the config file)")
    if "{camera}" not in op.folder_pattern:
        raise ConfigError(f"[source.openpose] folder_pattern: {op.folder_pattern!r} must contain {{camera}}")
    missing = [c for c in cameras if not (root / op.folder_pattern.format(camera=c)).is_dir()]
    if missing:
        found = sorted(p.name for p in root.iterdir() if p.is_dir())
        tried = ", ".join(op.folder_pattern.format(camera=c) for c in missing)
        raise ConfigError(f"[source.openpose]: no folder for camera(s) {', '.join(missing)} in {root}: tried {tried} "
                          f"(folder_pattern {op.folder_pattern!r}); found: {', '.join(found) or 'no folders'}. "
                          "Set [rig] cameras or folder_pattern to match")
    empty = [c for c in cameras if not any((root / op.folder_pattern.format(camera=c)).glob("*.json"))]
    if empty:
        raise ConfigError(f"[source.openpose]: no .json files in the folder of camera(s) {', '.join(empty)} under {root}")


def _check_capture(cfg: RunConfig, cameras) -> None:
    cap = cfg.source.capture
    if cap.inputs and len(cap.inputs) != len(cameras):
        raise ConfigError(f"[source.capture] inputs: {len(cap.inputs)} entries for {len(cameras)} cameras "
                          f"({', '.join(cameras)}); give one per camera, in rig order")
    for cam, spec in zip(cameras, cap.inputs):
        if spec.isdigit() or "://" in spec:
            continue
        p = cfg.path(spec)
        if not p.exists():
            raise ConfigError(f"[source.capture] inputs: {cam}: {p} not found (a video file, an image folder, a "
                              "webcam index or a stream URL; paths are relative to the config file)")
    for key in ("pose_model", "det_model"):
        value = getattr(cap, key)
        if value and not cfg.path(value).is_file():
            raise ConfigError(f"[source.capture] {key}: file not found: {cfg.path(value)}")


# ----------------------------------------------------------------------------- ports


def _check_ports(cfg: RunConfig) -> None:
    t = cfg.transport
    binds = [("[transport] keypoints", t.keypoints), ("[transport] outputs", t.outputs)]
    if cfg.ik.enabled:
        binds += [(f"[transport] angles (IK worker {w})", ep) for w, ep in enumerate(angles_endpoints(cfg))]
    seen: dict[str, str] = {}
    for key, ep in binds:
        if ep in seen:
            raise ConfigError(f"{key}: {ep} is also {seen[ep]}; every endpoint must differ")
        seen[ep] = key
        reason = check_endpoint_free(ep)
        if reason:
            raise ConfigError(f"{key}: {ep} {reason}")


def check_endpoint_free(endpoint: str) -> str | None:
    """Why a process of this run could not bind ``endpoint`` (``tcp://host:port`` or ``ipc://path``),
    or None when it can."""
    if endpoint.startswith("ipc://"):
        path = endpoint[len("ipc://"):]
        if not Path(path).parent.is_dir():
            return f"cannot be created: folder {Path(path).parent} does not exist"
        if Path(path).exists():
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                try:
                    s.connect(path)
                except OSError:
                    return None  # a stale socket file: binding replaces it
            return "is in use by another process (another rtkin run?); stop it or choose another endpoint"
        return None
    if not endpoint.startswith("tcp://"):
        return None
    host, _, port = endpoint[len("tcp://"):].rpartition(":")
    if not port.isdigit():
        return None  # wildcard / named ports: zmq reports it
    host = host.strip("[]")
    host = "0.0.0.0" if host in ("*", "") else host
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as libzmq does: TIME_WAIT is not "in use"
        try:
            s.bind((host, int(port)))
            s.listen(1)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                return "is in use (another rtkin run, or another program); stop it or choose other ports in [transport]"
            if e.errno == errno.EADDRNOTAVAIL:
                return f"cannot be bound: {host} is not an address of this machine"
            return f"cannot be bound: {e.strerror}"
    return None
