"""Execution providers and onnxruntime sessions: :func:`select_providers` picks, from what
onnxruntime offers, TensorRT (FP16, engine + timing cache on disk so a restart does not rebuild
engines) -> CUDA -> OpenVINO (CPU) -> CPU, CPU always last as the fallback; :func:`create_session`
builds an ``InferenceSession`` from that list (dropping a provider that fails to initialise) and
:func:`session_provider` says which provider the session really uses.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import onnxruntime as ort

log = logging.getLogger(__name__)

__all__ = ["default_engine_cache_dir", "select_providers", "create_session", "session_provider"]


#: Short name -> onnxruntime provider name, in the default order of preference.
PROVIDERS: dict[str, str] = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "cpu": "CPUExecutionProvider",
}


DEFAULT_PROVIDER_ORDER: tuple[str, ...] = tuple(PROVIDERS.values())


_CPU = PROVIDERS["cpu"]


def default_engine_cache_dir() -> Path:
    """``$RTKIN_CACHE_DIR/trt_engines`` or ``~/.cache/rtkin/trt_engines`` (not created here)."""
    base = os.environ.get("RTKIN_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "rtkin")
    return Path(base) / "trt_engines"


def _provider_full_name(name: str) -> str:
    key = name.strip().lower()
    for short, full in PROVIDERS.items():
        if key in (short, full.lower()):
            return full
    known = ", ".join(f"{s!r} ({f})" for s, f in PROVIDERS.items())
    raise ValueError(f"unknown execution provider {name!r}; known: {known}")


def _provider_options(name: str, engine_cache_dir: Path, device_id: int) -> dict[str, Any]:
    # Option names from the onnxruntime docs:
    # - TensorRT: https://onnxruntime.ai/docs/execution-providers/TensorRT-ExecutionProvider.html
    #   ("Configurations": device_id, trt_fp16_enable, trt_engine_cache_enable,
    #   trt_engine_cache_path, trt_timing_cache_enable, trt_timing_cache_path; the timing cache
    #   options came with microsoft/onnxruntime#14767 and #17865, ORT >= 1.15 / 1.17). Engines are
    #   keyed by a hash of the model graph, so one directory serves every model.
    # - CUDA: https://onnxruntime.ai/docs/execution-providers/CUDA-ExecutionProvider.html (device_id)
    # - OpenVINO: https://onnxruntime.ai/docs/execution-providers/OpenVINO-ExecutionProvider.html
    #   (device_type "CPU" | "GPU" | "NPU" ...)
    # onnxruntime's Python layer turns every option value into str (True -> "True").
    if name == PROVIDERS["tensorrt"]:
        engine_cache_dir.mkdir(parents=True, exist_ok=True)
        return {
            "device_id": device_id,
            "trt_fp16_enable": True,
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(engine_cache_dir),
            "trt_timing_cache_enable": True,
            "trt_timing_cache_path": str(engine_cache_dir),
        }
    if name == PROVIDERS["cuda"]:
        return {"device_id": device_id}
    if name == PROVIDERS["openvino"]:
        return {"device_type": "CPU"}
    return {}


def select_providers(
    available: Sequence[str],
    preference: Sequence[str] | str | None = None,
    engine_cache_dir: str | Path | None = None,
    device_id: int = 0,
) -> list[tuple[str, dict[str, Any]]]:
    """Execution providers to ask onnxruntime for, best first, each with its options.

    Args:
        available: what this onnxruntime offers (``onnxruntime.get_available_providers()``).
        preference: provider names to try, in order (short ``"tensorrt"``, ``"cuda"``,
            ``"openvino"``, ``"cpu"`` or full ``"CUDAExecutionProvider"``, any case); default
            TensorRT -> CUDA -> OpenVINO -> CPU. A preferred provider that is not available is
            skipped with a warning.
        engine_cache_dir: TensorRT engine and timing cache directory (created when TensorRT is
            selected); default :func:`default_engine_cache_dir`.
        device_id: GPU index for TensorRT and CUDA.

    Returns:
        ``[(provider_name, options), ...]``, always ending with ``("CPUExecutionProvider", {})``.

    Raises:
        ValueError: an unknown provider name in ``preference`` (the message lists known names).
    """
    if isinstance(preference, str):
        preference = [preference]
    wanted = DEFAULT_PROVIDER_ORDER if preference is None else [_provider_full_name(p) for p in preference]
    offered = set(available)
    chosen: list[str] = []
    for name in wanted:
        if name in chosen:
            continue
        if name != _CPU and name not in offered:
            if preference is not None:
                log.warning("execution provider %s is not available here (onnxruntime offers %s); skipped",
                            name, ", ".join(available) or "nothing")
            continue
        chosen.append(name)
    if _CPU not in chosen:
        chosen.append(_CPU)
    cache = Path(engine_cache_dir).expanduser() if engine_cache_dir is not None else default_engine_cache_dir()
    return [(name, _provider_options(name, cache, int(device_id))) for name in chosen]


def _normalise_providers(providers: Sequence[str | tuple[str, dict]]) -> list[tuple[str, dict]]:
    out = []
    for p in providers:
        if isinstance(p, str):
            out.append((p, {}))
        else:
            name, opts = p
            out.append((str(name), dict(opts)))
    if not out:
        raise ValueError("providers must not be empty")
    return out


def create_session(
    model_path: str | Path,
    providers: Sequence[str | tuple[str, dict]],
    intra_op_threads: int | None = None,
) -> ort.InferenceSession:
    """An onnxruntime session (graph optimisation ALL, log severity warning) on ``providers``.

    ``providers`` is what :func:`select_providers` returns (names alone are accepted too). If the
    first provider fails to initialise (e.g. TensorRT libraries missing), it is dropped with a
    warning and the next is tried; onnxruntime itself silently falls back to CPU for a provider
    it does not have, so check :func:`session_provider`.

    Args:
        model_path: an existing ``.onnx`` file.
        providers: ``[(name, options), ...]`` best first.
        intra_op_threads: CPU threads per operator (onnxruntime default: all cores).
    """
    path = Path(model_path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {path}")
    provs = _normalise_providers(providers)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 2  # 0 verbose, 1 info, 2 warning, 3 error
    if intra_op_threads:
        so.intra_op_num_threads = int(intra_op_threads)
    while True:
        try:
            return ort.InferenceSession(str(path), sess_options=so, providers=provs)
        except Exception as e:  # onnxruntime raises its own Fail / RuntimeException types
            if len(provs) == 1:
                raise
            log.warning("could not create a session on %s (%s: %s); trying %s",
                        provs[0][0], type(e).__name__, e, provs[1][0])
            provs = provs[1:]


def session_provider(session: ort.InferenceSession) -> str:
    """The provider a session actually runs on (its first one), e.g. ``"CPUExecutionProvider"``."""
    return session.get_providers()[0]
