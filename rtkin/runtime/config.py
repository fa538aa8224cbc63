"""Run configuration: frozen settings dataclasses, mapped 1:1 from TOML; unknown keys are errors.

Every default lives in the dataclasses (here and in each stage's module); a TOML file only
overrides. ``rtkin/configs/run_example.toml`` is a complete, commented example.
"""

from __future__ import annotations

import dataclasses
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from rtkin.capture.keypoints import OpenPoseSourceSettings, VirtualSourceSettings
from rtkin.capture.settings import CaptureSettings
from rtkin.io.recording import RecordingSettings
from rtkin.kinematics.ik import IKSettings
from rtkin.kinematics.live import LiveKinematicsSettings
from rtkin.reconstruct.reconstructor import ReconstructionSettings
from rtkin.reconstruct.sync import SyncSettings

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "ConfigError",
    "RunSettings",
    "RigSettings",
    "TransportSettings",
    "VirtualSourceSettings",
    "OpenPoseSourceSettings",
    "CaptureSettings",
    "SourceSettings",
    "RecordingSettings",
    "ReconstructionSettings",
    "RunConfig",
    "IKRunSettings",
    "ViewSettings",
    "load_config",
    "config_from_dict",
    "EXAMPLE_CONFIG",
]

EXAMPLE_CONFIG = Path(__file__).parents[1] / "configs" / "run_example.toml"


class ConfigError(ValueError):
    """A run configuration is invalid: unknown key, wrong type or bad value (message says where)."""


@dataclass(frozen=True)
class RunSettings:
    """Attributes:
        name: session name (file names in the output folder). A run never replaces an earlier
            session's files: when ``<name>.rtkrec`` (or its outputs) exist, the session is named
            ``<name>-2``, ``<name>-3``, ... (``rtkin run --force`` replaces them instead).
        output_dir: folder for the recording and exports (created); a relative path is relative to
            the working directory (inputs such as the calibration are relative to the config file).
        duration_s: stop after this many seconds; 0 runs until Ctrl-C / SIGTERM / end of the source.
    """

    name: str = "session"
    output_dir: str = "rtkin_out"
    duration_s: float = 0.0

    def __post_init__(self) -> None:
        if not self.name or any(ch in self.name for ch in "/\\\0") or self.name in (".", ".."):
            raise ValueError(f"run.name must be a plain file name (no slashes), got {self.name!r}")
        if not self.output_dir:
            raise ValueError("run.output_dir must not be empty")
        if not self.duration_s >= 0:
            raise ValueError(f"run.duration_s must be >= 0 (0 = until the end or Ctrl-C), got {self.duration_s}")


@dataclass(frozen=True)
class RigSettings:
    """Attributes:
        calibration: Calib.toml or .qca.txt path ("" = the Pose2Sim demo rig), relative to the config.
        cameras: camera names in pipeline order (empty = the calibration's order).
        skeleton: keypoint set of the 2D streams (HALPE_26, COCO_17, COCO_133).
    """

    calibration: str = ""
    cameras: tuple[str, ...] = ()
    skeleton: str = "HALPE_26"

    def __post_init__(self) -> None:
        from rtkin.core.skeletons import get_skeleton

        try:
            canonical = get_skeleton(self.skeleton).name
        except KeyError as e:
            raise ValueError(f"rig.skeleton: {e.args[0]}") from None
        object.__setattr__(self, "skeleton", canonical)  # "coco17" -> "COCO_17": one spelling on the wire
        if len(set(self.cameras)) != len(self.cameras):
            raise ValueError(f"rig.cameras has duplicates: {list(self.cameras)}")


@dataclass(frozen=True)
class TransportSettings:
    """ZeroMQ endpoints; loopback unless set otherwise.

    Attributes:
        keypoints: the sync node binds a SUB here; camera sources connect PUBs to it.
        outputs: the sync node binds a PUB here (Skeleton3D ``sk3d/``, recorded inputs ``tap/``,
            status ``status/``); recorder, IK and viewers connect.
        angles: IK worker ``w`` binds a PUB here (JointAngles ``ja/<person>/``, status); ``{port}``
            is ``angles_port + w``, ``{worker}`` is ``w``.
        sndhwm: send high-water mark per subscriber, messages (beyond it messages are dropped,
            a publisher never blocks).
        rcvhwm: receive high-water mark of the sync node's input, messages.
        clock: the sync node binds a clock server here for cameras on other hosts ("" = none;
            see ``rtkin.runtime.clock``).
        keys: CURVE key folder made by ``rtkin keys`` (relative to the config): required by every
            non-loopback endpoint ("" = no keys; see ``rtkin.runtime.security``).
        client: this host's client key name in ``keys`` (camera and viewer hosts; "" = the
            server's own key pair, for the sync host's processes).
        insecure: allow plaintext on non-loopback endpoints (warned on every start).
    """

    keypoints: str = "tcp://127.0.0.1:5550"
    outputs: str = "tcp://127.0.0.1:5551"
    angles: str = "tcp://127.0.0.1:{port}"
    angles_port: int = 5552
    sndhwm: int = 1000
    rcvhwm: int = 1000
    clock: str = ""
    keys: str = ""
    client: str = ""
    insecure: bool = False

    def __post_init__(self) -> None:
        from rtkin.runtime.security import is_local_endpoint

        eps = [self.keypoints, self.outputs, self.angles.format(port=self.angles_port, worker=0)] + (
            [self.clock] if self.clock else [])
        for ep in eps:
            try:
                local = is_local_endpoint(ep)
            except ValueError as e:
                raise ValueError(str(e)) from None
            if not local and not self.keys and not self.insecure:
                raise ValueError(f"{ep} is not a loopback address: set keys (CURVE keys made by "
                                 "`rtkin keys`) or insecure = true (plaintext)")


@dataclass(frozen=True)
class SourceSettings:
    """Attributes:
        kind: ``"capture"`` (videos / cameras through RTMPose), ``"virtual"`` or ``"openpose"``
            (``"none"``: sources are started elsewhere).
        fps_hz: frame rate the sources play at, Hz.
        realtime: play at the frame rate (True) or as fast as possible (False).
        restart: restart a source process that dies.
    """

    kind: str = "virtual"
    fps_hz: float = 60.0
    realtime: bool = True
    restart: bool = False
    virtual: VirtualSourceSettings = VirtualSourceSettings()
    openpose: OpenPoseSourceSettings = OpenPoseSourceSettings()
    capture: CaptureSettings = CaptureSettings()

    def __post_init__(self) -> None:
        if self.kind not in ("capture", "virtual", "openpose", "none"):
            raise ValueError(f"source.kind must be 'capture', 'virtual', 'openpose' or 'none', got {self.kind!r}")
        if not self.fps_hz > 0:
            raise ValueError(f"source.fps_hz must be > 0, got {self.fps_hz}")


@dataclass(frozen=True)
class IKRunSettings(LiveKinematicsSettings):
    """Inverse kinematics in the run (TOML ``[ik]``; the solver's settings in ``[ik.solver]``).

    The subject and scaling keys (``scaling``, ``scaling_seconds``, ``until_scaled``, ``height_m``,
    ``mass_kg``) are :class:`rtkin.kinematics.live.LiveKinematicsSettings`'s; this adds the
    process layout.

    Attributes:
        enabled: run IK worker processes on the Skeleton3D stream.
        max_workers: IK processes at most: one per person (several people use several cores), so
            also the most people who get joint angles at once; worker ``w`` publishes on
            ``angles_endpoints(cfg)[w]`` (see :mod:`rtkin.runtime.leases`).
        spare_workers: idle workers kept loaded (>= 1), so a person who walks in is served at once
            (a new worker takes seconds to load OpenSim); idle ones beyond this are stopped, but
            ``1 + spare_workers`` run even with nobody in view (started before the stream).
        release_after_s: a person unseen for this long in stream time (Skeleton3D times) frees
            their worker (IK and scaling state dropped), s. The tracker never reuses a retired id.
        solver: the IK solver settings (``rtkin.kinematics.ik.IKSettings``; its skeleton is the rig's).
    """

    enabled: bool = True
    max_workers: int = 8
    spare_workers: int = 1
    release_after_s: float = 1.0
    solver: IKSettings = IKSettings()

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 1 <= self.max_workers <= 64:
            raise ValueError(f"ik.max_workers must be in [1, 64], got {self.max_workers}")
        if not 1 <= self.spare_workers <= self.max_workers:
            raise ValueError(f"ik.spare_workers must be in [1, max_workers], got {self.spare_workers}")
        if not self.release_after_s > 0:
            raise ValueError(f"ik.release_after_s must be > 0, got {self.release_after_s}")

    def live(self) -> LiveKinematicsSettings:
        """The part the kinematics stage takes."""
        return LiveKinematicsSettings(**{f.name: getattr(self, f.name)
                                         for f in dataclasses.fields(LiveKinematicsSettings)})


@dataclass(frozen=True)
class ViewSettings:
    """The browser dashboard (``rtkin view``, ``--view``; TOML ``[view]``).

    Attributes:
        host: interface to serve on (loopback unless you change it).
        port: HTTP + WebSocket port.
        window_s: seconds of curves.
        targets: target bands ``[[coordinate, min, max], ...]`` in degrees (m for translations):
            the readout turns green inside, red outside (the page can change them).
        allowed_hosts: more ``Host`` names the dashboard answers to (e.g. a DNS name of this
            machine; IP addresses and its own name always work).
        allowed_origins: more web origins allowed to open its WebSocket (``"http://host:port"``).
    """

    host: str = "127.0.0.1"
    port: int = 8765
    window_s: float = 10.0
    targets: tuple[tuple[str, float, float], ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunConfig:
    """A whole run: ``rtkin run CONFIG.toml``. ``base_dir`` resolves relative paths."""

    run: RunSettings = RunSettings()
    rig: RigSettings = RigSettings()
    transport: TransportSettings = TransportSettings()
    source: SourceSettings = SourceSettings()
    sync: SyncSettings = SyncSettings()
    reconstruction: ReconstructionSettings = ReconstructionSettings()
    recording: RecordingSettings = RecordingSettings()
    ik: IKRunSettings = IKRunSettings()
    view: ViewSettings = ViewSettings()
    base_dir: str = field(default=".", metadata={"toml": False})

    def path(self, p: str) -> Path:
        """An input path (calibration, videos, keypoint folders) resolved against the config
        file's folder."""
        q = Path(p).expanduser()
        return q if q.is_absolute() else Path(self.base_dir) / q

    def output_dir(self) -> Path:
        """The output folder: absolute, or relative to the working directory (never inside the
        folder of the config file, which may be the installed package)."""
        return Path(self.run.output_dir).expanduser()

    def log_dir(self) -> Path:
        """Where node failures leave their tracebacks (``rtkin_errors.log``)."""
        return self.output_dir()

    def recording_path(self) -> Path:
        """The session's recording (``[recording] path``, relative to the working directory, or
        ``<output_dir>/<name>.rtkrec``). While the run writes it, it is ``<path>.partial``."""
        if self.recording.path:
            return Path(self.recording.path).expanduser()
        return self.output_dir() / f"{self.run.name}.rtkrec"

    def output_path(self, suffix: str) -> Path:
        """``<output_dir>/<name><suffix>`` (e.g. ``".trc"``, ``"_person0.mot"``)."""
        return self.output_dir() / f"{self.run.name}{suffix}"

    def effective_sync(self) -> SyncSettings:
        """The synchroniser settings the run uses. Played as fast as possible (``[source]
        realtime = false``), the sync waits for every camera (ended cameras excepted), sheds
        nothing and does not check capture times against the clock (they are stream times)."""
        if self.source.realtime:
            return self.sync
        # a pose model on a loaded CPU can keep a camera seconds behind the others (BlazePose: 5+ s
        # seen on 2 busy cores); a camera that ends says so, a dead one is stale after a minute
        return dataclasses.replace(self.sync, max_wait_ms=max(self.sync.max_wait_ms, 60_000.0),
                                   stale_ms=max(self.sync.stale_ms, 60_000.0),
                                   max_pending_slots=max(self.sync.max_pending_slots, 100_000), shed=False,
                                   clock=dataclasses.replace(self.sync.clock, enabled=False))

    def to_dict(self) -> dict:
        """Plain dict (TOML-able) of every setting, defaults included."""
        return _to_dict(self)


# ----------------------------------------------------------------------------- generic mapping


def _plain(v):
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    return v


def _to_dict(obj) -> dict:
    out = {}
    for f in dataclasses.fields(obj):
        if not f.metadata.get("toml", True):
            continue
        v = getattr(obj, f.name)
        if dataclasses.is_dataclass(v):
            out[f.name] = _to_dict(v)
        elif v is not None:
            out[f.name] = _plain(v)
    return out


def _convert(tp, value, where: str):
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {type(value).__name__}")
        return _build(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        if args and args[-1] is not Ellipsis:  # fixed length, one type per position
            if len(value) != len(args):
                raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
            return tuple(_convert(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
        item = args[0] if args else str
        return tuple(_convert(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported setting type {tp}")  # pragma: no cover


def _build(cls, data: dict, where: str):
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init and f.metadata.get("toml", True)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        section = f"[{where}]" if where else "top level"
        raise ConfigError(f"{section}: unknown key(s) {unknown}; known: {sorted(fields)}")
    kwargs = {k: _convert(hints[k], v, f"{where}.{k}" if where else k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where or 'config'}: {e}") from e


#: Sections of a Pose2Sim ``Config.toml`` (none of them is an rtkin section).
_POSE2SIM_SECTIONS = {"project", "pose", "synchronization", "calibration", "personAssociation", "triangulation",
                      "filtering", "markerAugmentation", "kinematics", "logging"}


def config_from_dict(data: dict, base_dir: str | Path = ".") -> RunConfig:
    """Build a RunConfig from a TOML-like dict (unknown keys -> ConfigError)."""
    if len(_POSE2SIM_SECTIONS & set(data)) >= 2:
        raise ConfigError("this is a Pose2Sim Config.toml, not an rtkin run configuration: to process a Pose2Sim "
                          "project use `rtkin reprocess PROJECT_FOLDER`; for a live run write an rtkin config "
                          "(a complete example: rtkin/configs/run_example.toml)")
    cfg = _build(RunConfig, data, "")
    return dataclasses.replace(cfg, base_dir=str(base_dir))


def load_config(path: str | Path) -> RunConfig:
    """Read a run configuration TOML file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from e
    return config_from_dict(data, base_dir=path.resolve().parent)


def angles_endpoints(cfg: RunConfig) -> list[str]:
    """The JointAngles endpoint of every IK worker (subscribers connect to all of them)."""
    t = cfg.transport
    return [t.angles.format(port=t.angles_port + w, worker=w) for w in range(cfg.ik.max_workers)]
