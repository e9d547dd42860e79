"""Importing TensorRT and torch on first use, the supported TensorRT versions, the process logger.

Written against the TensorRT 10 Python API (type-checked with the ``tensorrt-stubs`` package) and
its tensor-name interface, which exists since TensorRT 8.5, so the same code serves JetPack 5
(TensorRT 8.5/8.6). TensorRT < 8.5 only has the bindings API and is refused with a clear message.

``trt`` here stands in for the ``tensorrt`` module until an attribute is first used, so this module
and those that take ``trt`` from it import (and their pure helpers run) where neither TensorRT nor
torch is installed. The backend's buffers are torch CUDA tensors, hence :func:`import_torch_cuda`.
"""

from __future__ import annotations

import functools
import logging
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import tensorrt as trt
else:

    class _LazyTensorRT:
        """Stands in for the ``tensorrt`` module until an attribute is first used."""

        def __getattr__(self, name: str) -> Any:
            return getattr(import_tensorrt(), name)

    trt = _LazyTensorRT()

MIN_TENSORRT = (8, 5)
# One logger for all the TensorRT backend's modules, named after the module users import.
BACKEND_LOG = logging.getLogger("depth_perception.depth.tensorrt_backend")


class TensorRTUnavailableError(ImportError):
    """TensorRT (or torch with CUDA, which holds its buffers) cannot be used here."""


class TensorRTVersionError(TensorRTUnavailableError):
    """The installed TensorRT predates the tensor-name API (8.5)."""



def parse_tensorrt_version(version: str) -> tuple[int, int]:
    """``"10.13.0.35"`` -> ``(10, 13)``."""
    match = re.match(r"\s*(\d+)\.(\d+)", version)
    if not match:
        raise ValueError(f"unrecognised TensorRT version string {version!r}")
    return int(match.group(1)), int(match.group(2))


def check_tensorrt_version(version: str) -> tuple[int, int]:
    """(major, minor) of a supported TensorRT; :class:`TensorRTVersionError` below 8.5."""
    parsed = parse_tensorrt_version(version)
    if parsed < MIN_TENSORRT:
        raise TensorRTVersionError(
            f"TensorRT {version} only has the legacy bindings API (get_binding_*, execute_async_v2); "
            "this backend uses the tensor-name API of TensorRT >= 8.5 (JetPack >= 5.1 on Jetson). "
            "Upgrade TensorRT, or use the onnxruntime or torch backend")
    return parsed


def needs_explicit_batch_flag(version: str) -> bool:
    """TensorRT < 10 builds implicit-batch networks unless asked; 10 deprecates (ignores) the flag."""
    return parse_tensorrt_version(version)[0] < 10


def import_tensorrt() -> Any:
    """The ``tensorrt`` module, or :class:`TensorRTUnavailableError` saying what is missing."""
    try:
        import tensorrt as module
    except (ImportError, OSError) as exc:  # OSError: the wheel is there but libnvinfer is not
        raise TensorRTUnavailableError(
            f"TensorRT is not usable here ({type(exc).__name__}: {exc}). On Jetson it comes with "
            "JetPack (python3-libnvinfer); on a desktop GPU `pip install tensorrt`. Without it use "
            "the onnxruntime or torch backend") from exc
    if not hasattr(module, "Builder") or not hasattr(module, "__version__"):
        # `tensorrt-stubs` alone installs a bare `tensorrt/` folder that imports as an empty
        # namespace package: the import succeeds, yet there is no TensorRT.
        where = ", ".join(str(p) for p in getattr(module, "__path__", []))
        raise TensorRTUnavailableError(
            f"the 'tensorrt' package found here ({where or 'unknown location'}) has no TensorRT "
            "runtime (type stubs only?). Install TensorRT's Python bindings, or use the "
            "onnxruntime or torch backend")
    check_tensorrt_version(str(module.__version__))
    return module


def tensorrt_available() -> bool:
    """True when :func:`import_tensorrt` would succeed (says nothing about a GPU)."""
    try:
        import_tensorrt()
    except TensorRTUnavailableError:
        return False
    return True


def import_torch_cuda() -> Any:
    """The ``torch`` module with a CUDA device, or :class:`TensorRTUnavailableError` saying why."""
    try:
        import torch as module
    except ImportError as exc:
        raise TensorRTUnavailableError(
            "the TensorRT backend keeps its buffers as torch CUDA tensors: install torch with CUDA "
            f"support ({exc})") from exc
    if not module.cuda.is_available():
        raise TensorRTUnavailableError(
            "the TensorRT backend needs a CUDA GPU, and torch sees none "
            "(torch.cuda.is_available() is False)")
    return module


@functools.lru_cache(maxsize=1)
def tensorrt_logger() -> trt.ILogger:
    """The one TensorRT logger of this process, forwarding to logging ``depth_perception.tensorrt``.

    Cached on purpose: TensorRT keeps the first logger it is given for every later builder and
    runtime of the process, so a logger owned by one backend would dangle once that backend closed.
    TensorRT's INFO is chatty and goes to DEBUG.
    """
    target = logging.getLogger("depth_perception.tensorrt")
    levels = {0: logging.CRITICAL, 1: logging.ERROR, 2: logging.WARNING, 3: logging.DEBUG,
              4: logging.DEBUG}

    class _ForwardingLogger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)

        def log(self, severity: trt.ILogger.Severity, msg: str) -> None:
            level = levels.get(int(severity), logging.WARNING)
            if target.isEnabledFor(level):
                target.log(level, "TensorRT: %s", msg)

    return _ForwardingLogger()


def dims_tuple(dims: trt.Dims) -> tuple[int, ...]:
    """TensorRT ``Dims`` -> a tuple of ints (-1 marks a dynamic axis)."""
    return tuple(int(dims[i]) for i in range(len(dims)))


def gpu_identity(device: int = 0) -> tuple[str, tuple[int, int]]:
    """(GPU name, compute capability) of a CUDA device, as the cache key records them."""
    torch = import_torch_cuda()
    major, minor = torch.cuda.get_device_capability(device)
    return str(torch.cuda.get_device_name(device)), (int(major), int(minor))

