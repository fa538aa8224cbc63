"""Frame sources for the capture processes: one camera (or video, image folder, stream) each.

:func:`open_source` picks a source from a spec through a registry (no dynamic imports):

=====================================  =======================================================
spec                                   source
=====================================  =======================================================
``int`` or digit string (``"0"``)      :class:`WebcamSource` (``cv2.VideoCapture(index)``)
``rtsp:// http:// https:// udp://``    :class:`NetworkStreamSource` (FFmpeg, bounded timeouts,
``tcp://`` URL                         reconnection with exponential backoff)
existing directory                     :class:`ImageFolderSource` (natural order by the last
                                       number in the file name)
existing file                          :class:`VideoFileSource`
=====================================  =======================================================

Every source is a :class:`FrameSource`: an iterator of :class:`Frame`, ``read() -> Frame | None``
(``None`` = end of stream), ``close()`` (safe from another thread; it interrupts a reconnection
wait at once), a context manager, and counters. ``open_source(spec, threaded=True)`` wraps a source
in :class:`LatestFrameSource`: a background thread grabs continuously and keeps only the newest
frame, so a slow consumer always gets the latest image (older ones are dropped and counted).

Times: ``capture_ns`` is ``time.monotonic_ns()`` (the clock every rtkin process shares) taken when
the frame is grabbed, i.e. as soon as the backend hands the frame over -- before the conversion to
BGR. For a camera that is the arrival time (exposure + transfer + decode latency later than the
exposure). For a file played in real time it is the moment the frame is due (the source decodes
ahead, waits, then stamps). ``wall_ns`` is ``time.time_ns()`` taken at the same moment, for use
across machines.

Errors: a source that cannot be opened, a nonexistent path, a stream lost for longer than its
reconnection budget raise :class:`CaptureError` naming the camera / URL / path and the likely cause,
within a bounded time. Credentials in URLs are masked in names and messages.

Image size against the calibration: :func:`fit_to_calibration` (policy and measurements on the
Pose2Sim demo in its docstring)."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from rtkin.capture.framesource import CaptureError, CaptureLike, Frame, FrameSource
from rtkin.capture.live import NETWORK_SCHEMES, LatestFrameSource, NetworkStreamSource, ReconnectPolicy, WebcamSource, _mask_url
from rtkin.capture.playback import IMAGE_EXTENSIONS, ImageFolderSource, VideoFileSource, natural_image_files

# the whole frame-source API is importable from here (the entry point: open_source)
__all__ = [
    "CaptureError",
    "Frame",
    "FrameSource",
    "VideoFileSource",
    "ImageFolderSource",
    "WebcamSource",
    "NetworkStreamSource",
    "LatestFrameSource",
    "ReconnectPolicy",
    "SourceKind",
    "CaptureLike",
    "open_source",
    "source_kind",
    "register_source",
    "source_kinds",
    "fit_to_calibration",
    "natural_image_files",
    "IMAGE_EXTENSIONS",
    "NETWORK_SCHEMES",
]


@dataclass(frozen=True)
class SourceKind:
    """One entry of the source registry: ``matches(spec)`` selects it, ``open(spec, **options)`` builds it."""

    name: str
    matches: Callable[[Any], bool]
    open: Callable[..., FrameSource]
    accepts: Callable[..., Any]  # the callable whose keyword parameters are the accepted options


def _is_webcam(spec: Any) -> bool:
    if isinstance(spec, bool):
        return False
    return isinstance(spec, (int, np.integer)) or (isinstance(spec, str) and spec.strip().isdigit())


def _scheme(spec: Any) -> str | None:
    if not isinstance(spec, str) or "://" not in spec:
        return None
    return spec.split("://", 1)[0].lower()


def _is_network(spec: Any) -> bool:
    return _scheme(spec) in NETWORK_SCHEMES


def _is_path(spec: Any) -> bool:
    return isinstance(spec, (str, Path)) and _scheme(spec) is None


_REGISTRY: list[SourceKind] = [
    SourceKind("webcam", _is_webcam, lambda s, **o: WebcamSource(int(s), **o), WebcamSource),
    SourceKind("network", _is_network, lambda s, **o: NetworkStreamSource(s, **o), NetworkStreamSource),
    SourceKind("folder", lambda s: _is_path(s) and Path(s).is_dir(), lambda s, **o: ImageFolderSource(s, **o),
               ImageFolderSource),
    SourceKind("video", lambda s: _is_path(s) and Path(s).is_file(), lambda s, **o: VideoFileSource(s, **o),
               VideoFileSource),
]


def register_source(kind: SourceKind, *, first: bool = True) -> None:
    """Add a source kind (checked before the built-in ones unless ``first=False``); replaces a kind
    of the same name."""
    _REGISTRY[:] = [k for k in _REGISTRY if k.name != kind.name]
    if first:
        _REGISTRY.insert(0, kind)
    else:
        _REGISTRY.append(kind)


def source_kinds() -> tuple[str, ...]:
    """Registered kinds, in matching order."""
    return tuple(k.name for k in _REGISTRY)


def _find_kind(spec: Any) -> SourceKind:
    for kind in _REGISTRY:
        if kind.matches(spec):
            return kind
    scheme = _scheme(spec)
    if scheme is not None:
        raise CaptureError(f"unsupported URL scheme {scheme!r} in {_mask_url(str(spec))} "
                           f"(supported: {', '.join(NETWORK_SCHEMES)})")
    if _is_path(spec):
        raise CaptureError(f"no such file or directory: {spec}")
    raise CaptureError(f"cannot tell what source {spec!r} is: expected a webcam index, a URL, "
                       "an image folder or a video file")


def source_kind(spec: Any) -> str:
    """Name of the kind :func:`open_source` would pick for ``spec`` (without opening it)."""
    return _find_kind(spec).name


def _check_options(kind: SourceKind, options: dict[str, Any]) -> None:
    params = inspect.signature(kind.accepts).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    allowed = [n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise TypeError(f"{kind.name} source does not accept option(s) {', '.join(unknown)}; "
                        f"accepted: {', '.join(allowed)}")


def open_source(spec: Any, *, threaded: bool = False, **options: Any) -> FrameSource:
    """Open the frame source described by ``spec`` (see the module table).

    Args:
        spec: webcam index (int or digit string), stream URL, image folder or video file path.
        threaded: wrap the source in :class:`LatestFrameSource` (newest frame only; for live sources).
        **options: keyword options of the selected source class (e.g. ``realtime``, ``loop``,
            ``decimate`` for files; ``fps`` for folders; ``size``, ``fps`` for webcams; timeouts and
            backoff for streams); an option the source does not take raises :class:`TypeError`.

    Raises:
        CaptureError: nonexistent path, unsupported scheme, or a source that cannot be opened
            (naming the camera / URL / path and why), within the source's timeouts.
    """
    kind = _find_kind(spec)
    _check_options(kind, options)
    source = kind.open(spec, **options)
    return LatestFrameSource(source) if threaded else source


def fit_to_calibration(frame_size: tuple[int, int], calib_size: tuple[int, int], *,
                       max_crop_px: int = 8, name: str = "camera") -> tuple[float, float, str]:
    """How pixels of a decoded frame map onto the calibration's pixels: ``(dx, dy, note)``.

    Add ``(dx, dy)`` px to every 2D point measured on the frame before using it with the
    calibration (``x_calib = x_frame + dx``). Policy:

    - same size: ``(0, 0)``;
    - a difference of up to ``max_crop_px`` (default 8) px per axis is taken as a centred crop
      (or pad): ``dx = (calib_w - frame_w) / 2``, ``dy = (calib_h - frame_h) / 2``;
    - anything bigger is a different camera mode (binning, scaling, another sensor window) that no
      shift fixes: :class:`CaptureError` asking for a calibration made at the frame's resolution.

    The Pose2Sim demo (cam01/cam02 decode at 1080x1920, the Qualisys calibration says 1088x1920;
    cam03/cam04 decode at 1088) gives ``dx = +4``. Measured on the real MoveNet COCO-17 keypoints of
    ``pose2sim_demo_single_coco17`` (100 frames; subject in cam01/cam02 = person closest to the
    reprojection of the cam03+cam04 triangulation), shifting cam01/cam02 by dx before
    ``Triangulator(demo_rig())``:

    ==========  ===============  ==============  ====================================
    dx (px)     median reproj.   median reproj.  cam02 median x residual against the
                (default, with   (all 4 views    cam03+cam04 triangulation (native
                exclusion)       kept)           1088-wide cameras)
    ==========  ===============  ==============  ====================================
    0           9.90 px          17.53 px        -4.2 px
    +4          9.88 px          17.85 px        -0.2 px
    +8          9.70 px          18.42 px        +3.8 px
    ==========  ===============  ==============  ====================================

    The keypoints cannot settle it: the differences (0.2 px of ~10) are far below MoveNet's
    per-camera biases (cam01 sits +20 px in x from the other views' triangulation, whatever the
    shift; cam03, natively 1088 wide, +20 px too). The default metric's lower value at +8 is an
    artefact: it keeps falling up to +16 px (9.61 px) because larger shifts make the exclusion drop
    more views (3.04 -> 2.97 -> 2.86 views per point at 0 / +8 / +16), while the all-views error
    rises. The only 1080-wide view without a large bias, cam02, centres at +4 against the independent
    native-1088 pair. A centred crop (+4) is also the choice that is at most 4 px off whichever
    crop (left or right) was made, so it is the policy.

    Args:
        frame_size: decoded frame (width, height) px.
        calib_size: calibration image (width, height) px.
        max_crop_px: largest per-axis difference treated as a crop, px.
        name: camera name for the note and error message.
    """
    fw, fh = (int(v) for v in frame_size)
    cw, ch = (int(v) for v in calib_size)
    if min(fw, fh, cw, ch) <= 0:
        raise ValueError(f"{name}: sizes must be positive, got frame {frame_size}, calibration {calib_size}")
    if (fw, fh) == (cw, ch):
        return 0.0, 0.0, f"{name}: frame size {fw}x{fh} matches the calibration"
    ddx, ddy = cw - fw, ch - fh
    if abs(ddx) <= max_crop_px and abs(ddy) <= max_crop_px:
        dx, dy = ddx / 2.0, ddy / 2.0
        return dx, dy, (f"{name}: frame {fw}x{fh} vs calibration {cw}x{ch}: taken as a centred "
                        f"{'crop' if ddx >= 0 and ddy >= 0 else 'crop/pad'}, points shifted by "
                        f"({dx:+g}, {dy:+g}) px")
    hint = ""
    if fw * ch == fh * cw:
        hint = f" (same aspect ratio: a scaled stream, x{fw / cw:.3g}; calibrate at this resolution)"
    raise CaptureError(f"{name}: frame size {fw}x{fh} does not match the calibration's {cw}x{ch}{hint}; "
                       "use a calibration made at the camera's current resolution")
