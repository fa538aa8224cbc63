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

from rtkin.reconstruct.association import AssociationSettings
from rtkin.reconstruct.filters import FilterSettings
from rtkin.reconstruct.health import HealthSettings
from rtkin.kinematics.ik import IKSettings
from rtkin.reconstruct.sync import SyncSettings
from rtkin.reconstruct.tracking import TrackingSettings
from rtkin.reconstruct.triangulation import TriangulationSettings

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
        name: session name (file names in the output folder).
        output_dir: folder for the recording and exports (created).
        duration_s: stop after this many seconds; 0 runs until Ctrl-C / SIGTERM / end of the source.
    """

    name: str = "session"
    output_dir: str = "rtkin_out"
    duration_s: float = 0.0


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
    """

    keypoints: str = "tcp://127.0.0.1:5550"
    outputs: str = "tcp://127.0.0.1:5551"
    angles: str = "tcp://127.0.0.1:{port}"
    angles_port: int = 5552
    sndhwm: int = 1000
    rcvhwm: int = 1000


@dataclass(frozen=True)
class VirtualSourceSettings:
    """The virtual subject played live as one stream per camera (see ``rtkin.sim.virtual``).

    Attributes:
        duration_s: length of the motion, s. seed: motion and corruption seed.
        noise_px, outlier_rate, dropout_rate, swap_rate: 2D corruption (px, fractions).
        bystander: add a standing bystander (seen by the cameras that see the back of the room).
        people: number of subjects (>1: they walk around each other).
        presence: per subject, ``[start_s, end_s]`` when they are in view (people walking in and
            out); subjects without an entry are always in view. Empty = everybody, always.
    """

    duration_s: float = 12.0
    seed: int = 0
    noise_px: float = 3.0
    outlier_rate: float = 0.02
    dropout_rate: float = 0.05
    swap_rate: float = 0.0
    bystander: bool = False
    people: int = 1
    presence: tuple[tuple[float, float], ...] = ()

    def __post_init__(self) -> None:
        for i, w in enumerate(self.presence):
            if len(w) != 2 or not 0 <= w[0] < w[1]:
                raise ValueError(f"source.virtual.presence[{i}] must be [start_s, end_s] with 0 <= start < end, got {w}")


@dataclass(frozen=True)
class OpenPoseSourceSettings:
    """OpenPose-JSON folders as Pose2Sim writes them, one per camera.

    Attributes:
        root: folder holding the per-camera folders, relative to the config.
        folder_pattern: per-camera folder name, ``{camera}`` replaced (Pose2Sim: ``{camera}_json``).
    """

    root: str = ""
    folder_pattern: str = "{camera}_json"


@dataclass(frozen=True)
class CaptureSettings:
    """Cameras, videos or streams through RTMPose (one capture process per camera).

    Attributes:
        inputs: per camera, in rig order: a video file, an image folder, a webcam index ("0") or
            a stream URL (rtsp://, http://); relative paths resolve against the config. [] = the
            Pose2Sim demo videos (cam01..cam04).
        mode: RTMPose models as in Pose2Sim: lightweight | balanced | performance.
        pose_model, det_model: local ONNX files overriding the mode's models ("" = rtmlib's
            download cache; rtmlib fetches them once with network access).
        det_frequency: run the person detector every N frames, track boxes in between.
        providers: execution provider preference, e.g. ["tensorrt", "cuda", "cpu"];
            [] = the best one onnxruntime offers (TensorRT -> CUDA -> OpenVINO / CPU).
        engine_cache_dir: TensorRT engine cache ("" = ~/.cache/rtkin/trt_engines).
        decimate: keep every Nth frame of the source.
        loop: replay video files / image folders from the start when they end.
        fps: frame rate of video files / image folders, Hz (0 = the container's; folders: 30).
        preview: publish a low-resolution JPEG preview of each camera.
        preview_endpoint: where each camera's preview PUB binds; ``{port}`` (``preview_port`` +
            camera index), ``{index}`` (0-based) and ``{camera}`` are substituted.
        preview_port: port of the first camera's preview.
        preview_width: preview width, px. preview_every: publish every Nth processed frame.
    """

    inputs: tuple[str, ...] = ()
    mode: str = "balanced"
    pose_model: str = ""
    det_model: str = ""
    det_frequency: int = 4
    providers: tuple[str, ...] = ()
    engine_cache_dir: str = ""
    decimate: int = 1
    loop: bool = False
    fps: float = 0.0
    preview: bool = False
    preview_endpoint: str = "tcp://127.0.0.1:{port}"
    preview_port: int = 5560
    preview_width: int = 320
    preview_every: int = 2

    def __post_init__(self) -> None:
        if self.mode not in ("lightweight", "balanced", "performance"):
            raise ValueError(f"capture.mode must be lightweight, balanced or performance, got {self.mode!r}")
        if self.det_frequency < 1 or self.decimate < 1 or self.preview_every < 1 or self.preview_width < 16:
            raise ValueError("capture.det_frequency, decimate, preview_every must be >= 1 and preview_width >= 16")


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
class RecordingSettings:
    """Attributes:
        enabled: record every KeypointFrame the sync node receives (crash-safe log).
        path: recording file ("" = ``<output_dir>/<name>.rtkrec``).
        outputs: also record the Skeleton3D outputs.
    """

    enabled: bool = True
    path: str = ""
    outputs: bool = True


@dataclass(frozen=True)
class ReconstructionSettings:
    """Everything between FrameSets and Skeleton3D."""

    association: AssociationSettings = AssociationSettings()
    triangulation: TriangulationSettings = TriangulationSettings()
    tracking: TrackingSettings = TrackingSettings()
    filter: FilterSettings = FilterSettings()
    health: HealthSettings = HealthSettings()


@dataclass(frozen=True)
class IKRunSettings:
    """Inverse kinematics in the run (TOML ``[ik]``; the solver's settings in ``[ik.solver]``).

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
        height_m: subject height, m (0 = unknown); with scaling, it scales the segments the
            keypoints cannot measure and is checked against the scaled model's height.
        mass_kg: subject mass, kg (0 = unknown); the scaled model's total mass.
        scaling: scale the model to each person from their first ``scaling_seconds`` of good
            frames (``rtkin.kinematics.scaling.OnlineScaler``); the scaled model is saved in the output folder.
        until_scaled: ``"generic"`` (joint angles on the generic model meanwhile, flagged
            UNSCALED) or ``"wait"`` (no joint angles until the person is scaled).
        solver: the IK solver settings (``rtkin.kinematics.ik.IKSettings``; its skeleton is the rig's).
    """

    enabled: bool = True
    max_workers: int = 8
    spare_workers: int = 1
    release_after_s: float = 1.0
    scaling: bool = True
    scaling_seconds: float = 3.0
    until_scaled: str = "generic"
    height_m: float = 0.0
    mass_kg: float = 0.0
    solver: IKSettings = IKSettings()

    def __post_init__(self) -> None:
        if not 1 <= self.max_workers <= 64:
            raise ValueError(f"ik.max_workers must be in [1, 64], got {self.max_workers}")
        if not 1 <= self.spare_workers <= self.max_workers:
            raise ValueError(f"ik.spare_workers must be in [1, max_workers], got {self.spare_workers}")
        if not self.release_after_s > 0:
            raise ValueError(f"ik.release_after_s must be > 0, got {self.release_after_s}")
        if self.height_m < 0 or self.mass_kg < 0 or (self.height_m and not 0.5 <= self.height_m <= 2.5):
            raise ValueError(f"ik.height_m must be 0 (unknown) or in [0.5, 2.5] m and ik.mass_kg >= 0, "
                             f"got {self.height_m} m, {self.mass_kg} kg")
        if self.until_scaled not in ("generic", "wait"):
            raise ValueError(f"ik.until_scaled must be 'generic' or 'wait', got {self.until_scaled!r}")


@dataclass(frozen=True)
class ViewSettings:
    """The browser dashboard (``rtkin view``, ``--view``; TOML ``[view]``).

    Attributes:
        host: interface to serve on (loopback unless you change it).
        port: HTTP + WebSocket port.
        window_s: seconds of curves.
        targets: target bands ``[[coordinate, min, max], ...]`` in degrees (m for translations):
            the readout turns green inside, red outside (the page can change them).
    """

    host: str = "127.0.0.1"
    port: int = 8765
    window_s: float = 10.0
    targets: tuple[tuple[str, float, float], ...] = ()


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
        """A config path resolved against the config file's folder."""
        q = Path(p).expanduser()
        return q if q.is_absolute() else Path(self.base_dir) / q

    def recording_path(self) -> Path:
        if self.recording.path:
            return self.path(self.recording.path)
        return self.path(self.run.output_dir) / f"{self.run.name}.rtkrec"

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
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(fields)}")
    kwargs = {k: _convert(hints[k], v, f"{where}.{k}" if where else k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where or 'config'}: {e}") from e


def config_from_dict(data: dict, base_dir: str | Path = ".") -> RunConfig:
    """Build a RunConfig from a TOML-like dict (unknown keys -> ConfigError)."""
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
