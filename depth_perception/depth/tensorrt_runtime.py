"""Running: a serialized engine -> inference on torch CUDA tensors, through the tensor-name API.

TensorRT calls used (8.5 and later): ``num_io_tensors``, ``get_tensor_name``, ``get_tensor_mode``,
``get_tensor_dtype``, ``set_input_shape``, ``get_tensor_shape``, ``set_tensor_address``,
``execute_async_v3``. Inputs are numpy arrays or torch tensors on any device, with the engine's
shapes (N x C x H x W for images, inside the shape profile); outputs come back as new float32 CUDA
tensors that the caller owns.

Buffers are torch CUDA tensors, reused while input shapes stay the same, and all work is queued on
one torch CUDA stream owned by the runner (no pycuda). Inputs are ordered after the caller's
current stream and outputs before it, so torch post-processing on the device needs no host
synchronisation.

:class:`HostEngineRunner` is the same contract without torch (``import torch`` alone costs ~0.5 GB
of resident memory): numpy arrays in, numpy float32 arrays out, device memory and one stream through
CUDA's runtime API from ``cuda-python`` (``cuda.bindings.runtime``, or ``cuda.cudart`` before 12.6).
:func:`make_runner` picks the torch runner when torch is already imported, else this one.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from .engine_files import CorruptEngineError
from .engine_profiles import format_shape
from .onnx_export import INPUT_NAME, OUTPUT_NAME
from .tensorrt_build import pick_input_name
from .tensorrt_import import (TensorRTUnavailableError, dims_tuple, import_torch_cuda,
                              tensorrt_logger)

if TYPE_CHECKING:
    import tensorrt as trt
else:
    from .tensorrt_import import trt


class EngineRunner:
    """One deserialized engine with its context, stream and buffers, on one CUDA device."""

    def __init__(self, engine_bytes: bytes, source: Path, device: int = 0,
                 input_name: str = INPUT_NAME, output_name: str = OUTPUT_NAME) -> None:
        self._torch = import_torch_cuda()
        torch = self._torch
        self.source = source
        self.device = torch.device("cuda", device)
        self._runtime: trt.Runtime | None = None
        self._engine: trt.ICudaEngine | None = None
        self._context: trt.IExecutionContext | None = None
        self._stream: Any = None
        self._buffers: dict[str, Any] = {}
        self._bound: dict[str, tuple[int, ...]] = {}
        with torch.cuda.device(self.device):
            self._runtime = trt.Runtime(tensorrt_logger())
            engine = self._runtime.deserialize_cuda_engine(engine_bytes)
            if engine is None:
                raise CorruptEngineError(
                    source, f"TensorRT {trt.__version__} could not deserialize it (built by another "
                    "TensorRT version or for another GPU, or damaged)")
            self._engine = engine
            context = engine.create_execution_context()
            if context is None:
                raise RuntimeError(f"TensorRT could not create an execution context for {source} "
                                   "(out of GPU memory?)")
            self._context = context
            self._stream = torch.cuda.Stream(device=self.device)
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self.input_names = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.output_names = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if not self.input_names or not self.output_names:
            raise ValueError(f"engine {source} has inputs {self.input_names} and outputs "
                             f"{self.output_names}; it needs at least one of each")
        self.input_name = pick_input_name(self.input_names, input_name)
        self.output_name = output_name if output_name in self.output_names else self.output_names[0]
        self.dtypes = {n: _torch_dtype(torch, engine.get_tensor_dtype(n)) for n in names}
        self.engine_shapes = {n: dims_tuple(engine.get_tensor_shape(n)) for n in names}
        # Profile 0 (the only one we build): (min, opt, max) per input.
        self.profiles: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]] = {}
        for n in self.input_names:
            lo, mid, hi = engine.get_tensor_profile_shape(n, 0)
            self.profiles[n] = (dims_tuple(lo), dims_tuple(mid), dims_tuple(hi))

    def _as_device_tensor(self, name: str, value: Any) -> Any:
        torch = self._torch
        if isinstance(value, np.ndarray):
            tensor = torch.from_numpy(np.ascontiguousarray(value)).to(self.device)
        elif isinstance(value, torch.Tensor):
            tensor = value.to(self.device)
        else:
            raise ValueError(f"{name} must be a numpy array or a torch tensor, "
                             f"got {type(value).__name__}")
        expected = self.engine_shapes[name]
        if tensor.dim() != len(expected) or any(
                e > 0 and e != s for e, s in zip(expected, tensor.shape)):
            wanted = "x".join(str(d) if d > 0 else "?" for d in expected)
            raise ValueError(f"{name} has shape {format_shape(tensor.shape)}; the engine "
                             f"{self.source.name} takes {wanted}")
        return tensor

    def _check_profile(self, name: str, shape: tuple[int, ...]) -> None:
        lo, _, hi = self.profiles[name]
        if any(not a <= s <= b for a, s, b in zip(lo, shape, hi)):
            raise ValueError(
                f"{name} of shape {format_shape(shape)} is outside the shape profile of engine "
                f"{self.source.name} (min {format_shape(lo)}, max {format_shape(hi)}): rebuild it "
                "with --min/--max covering this size")

    def _bind(self, shapes: Mapping[str, tuple[int, ...]]) -> None:
        """Set input shapes and (re)allocate every IO buffer; only called when a shape changes."""
        torch = self._torch
        context = self._require_context()
        for name, shape in shapes.items():
            self._check_profile(name, shape)
        self._stream.synchronize()  # the previous enqueue may still read the old buffers
        self._bound = {}
        self._buffers.clear()
        for name, shape in shapes.items():
            if not context.set_input_shape(name, shape):
                raise ValueError(f"TensorRT refused shape {format_shape(shape)} for {name} "
                                 f"of engine {self.source.name}")
        # Allocated on our stream: the caching allocator then never hands this memory to another
        # stream while our queued work may still use it.
        with torch.cuda.stream(self._stream):
            for name in self.input_names + self.output_names:
                shape = shapes[name] if name in shapes else dims_tuple(context.get_tensor_shape(name))
                if any(d < 0 for d in shape):
                    raise RuntimeError(f"output {name} of engine {self.source.name} has a "
                                       f"data-dependent shape ({format_shape(shape)}); unsupported")
                buffer = torch.empty(shape, dtype=self.dtypes[name], device=self.device)
                if not context.set_tensor_address(name, int(buffer.data_ptr())):
                    raise RuntimeError(f"TensorRT refused the buffer for {name}")
                self._buffers[name] = buffer
        self._bound = dict(shapes)

    def _require_context(self) -> trt.IExecutionContext:
        if self._context is None:
            raise RuntimeError(f"the TensorRT engine {self.source.name} is closed")
        return self._context

    def buffer(self, name: str) -> Any:
        """The device buffer bound to ``name`` (for tests and zero-copy users); reused across calls."""
        return self._buffers[name]

    def run(self, feeds: Mapping[str, Any]) -> dict[str, Any]:
        """Inputs (numpy or torch, any device) -> every output as a new float32 CUDA tensor."""
        torch = self._torch
        context = self._require_context()
        missing = [n for n in self.input_names if n not in feeds]
        unknown = [n for n in feeds if n not in self.input_names]
        if missing or unknown:
            raise ValueError(f"engine {self.source.name} takes inputs {self.input_names}; "
                             f"missing {missing}, unknown {unknown}")
        with torch.cuda.device(self.device):
            tensors = {n: self._as_device_tensor(n, v) for n, v in feeds.items()}
            shapes = {n: tuple(int(d) for d in t.shape) for n, t in tensors.items()}
            if shapes != self._bound:
                self._bind(shapes)
            caller = torch.cuda.current_stream(self.device)
            stream = self._stream
            stream.wait_stream(caller)  # inputs may still be being written on the caller's stream
            with torch.cuda.stream(stream):
                for name, tensor in tensors.items():
                    self._buffers[name].copy_(tensor)
                    tensor.record_stream(stream)
                if not context.execute_async_v3(stream.cuda_stream):
                    raise RuntimeError(f"TensorRT failed to run engine {self.source.name} "
                                       "(its log messages say why)")
            caller.wait_stream(stream)
            # Copies on the caller's stream: the caller owns them, and our next call (which first
            # waits for the caller's stream) cannot overwrite them.
            return {n: self._buffers[n].to(torch.float32, copy=True) for n in self.output_names}

    def execute(self) -> Any:
        """Queue the engine once more on its bound buffers as the last :meth:`run` left them (no
        copy in, no copy out, nothing waited for) and return the runner's torch stream it is queued
        on: the engine's own time, for benchmarks (time it with CUDA events on that stream)."""
        context = self._require_context()
        if not self._bound:
            raise RuntimeError(f"engine {self.source.name} has no bound buffers yet: run() it once")
        with self._torch.cuda.device(self.device):
            if not context.execute_async_v3(self._stream.cuda_stream):
                raise RuntimeError(f"TensorRT failed to run engine {self.source.name} "
                                   "(its log messages say why)")
        return self._stream

    def close(self) -> None:
        if self._stream is not None:
            try:
                self._stream.synchronize()
            except Exception:  # noqa: BLE001 - closing must not fail on a broken CUDA context
                pass
        self._buffers.clear()
        self._bound = {}
        # Context before engine before runtime: each depends on the next.
        self._context = None
        self._engine = None
        self._runtime = None
        self._stream = None


def _torch_dtype(torch: Any, dtype: trt.DataType) -> Any:
    pairs = [("float32", "float32"), ("float16", "float16"), ("int32", "int32"), ("int8", "int8"),
             ("bool", "bool"), ("uint8", "uint8"), ("int64", "int64"), ("bfloat16", "bfloat16")]
    for trt_name, torch_name in pairs:
        # getattr: int64/bfloat16 are missing from TensorRT 8.x.
        if getattr(trt, trt_name, None) == dtype:
            return getattr(torch, torch_name)
    raise ValueError(f"TensorRT tensor type {dtype} has no torch equivalent")


def make_runner(engine_bytes: bytes, source: Path, device: int = 0, input_name: str = INPUT_NAME,
                output_name: str = OUTPUT_NAME) -> "EngineRunner | HostEngineRunner":
    """The torch runner (CUDA tensors out, no host round trip) when torch is already imported, else
    the torch-free :class:`HostEngineRunner` (numpy out)."""
    if "torch" in sys.modules:
        return EngineRunner(engine_bytes, source, device, input_name, output_name)
    return HostEngineRunner(engine_bytes, source, device, input_name, output_name)


def import_cudart() -> Any:
    """CUDA's runtime API from cuda-python, or :class:`TensorRTUnavailableError` saying why."""
    for name in ("cuda.bindings.runtime", "cuda.cudart"):  # the second: cuda-python < 12.6
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise TensorRTUnavailableError("the torch-free TensorRT runner needs cuda-python: "
                                   "pip install cuda-python (or import torch first)")


def cuda_device_count() -> int | None:
    """CUDA devices cuda-python sees (0 without a driver or GPU), or None without cuda-python."""
    try:
        cudart = import_cudart()
    except TensorRTUnavailableError:
        return None
    err, count = cudart.cudaGetDeviceCount()
    return int(count) if int(err) == 0 else 0


def cuda_call(cudart: Any, result: Any, what: str) -> Any:
    """The value of a cuda-python call (its results after the error code), or RuntimeError naming
    ``what`` and CUDA's own message."""
    err, *rest = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:  # cudaSuccess
        _, message = cudart.cudaGetErrorString(err)
        text = message.decode() if isinstance(message, bytes) else str(message)
        raise RuntimeError(f"CUDA {what} failed: {text} ({int(err)})")
    return rest[0] if len(rest) == 1 else tuple(rest) or None


#: TensorRT tensor types by name → numpy dtypes (getattr on trt: int64/bfloat16 are missing from
#: TensorRT 8.x; numpy has no bfloat16)
_NUMPY_TYPES = (("float32", np.float32), ("float16", np.float16), ("int32", np.int32),
                ("int8", np.int8), ("bool", np.bool_), ("uint8", np.uint8), ("int64", np.int64))


def _numpy_dtype(dtype: trt.DataType) -> Any:
    for trt_name, np_type in _NUMPY_TYPES:
        if getattr(trt, trt_name, None) == dtype:
            return np.dtype(np_type)
    raise ValueError(f"TensorRT tensor type {dtype} has no numpy equivalent")


class HostEngineRunner:
    """One deserialized engine with its context, stream and device buffers, without torch: numpy
    inputs are copied to the device, every output comes back as a new float32 numpy array."""

    def __init__(self, engine_bytes: bytes, source: Path, device: int = 0,
                 input_name: str = INPUT_NAME, output_name: str = OUTPUT_NAME) -> None:
        cudart = self._cudart = import_cudart()
        self.source = source
        self.device = int(device)
        self._runtime: trt.Runtime | None = None
        self._engine: trt.ICudaEngine | None = None
        self._context: trt.IExecutionContext | None = None
        self._stream: Any = None
        self._buffers: dict[str, int] = {}  # name -> device pointer
        self._bound: dict[str, tuple[int, ...]] = {}
        self._out_shapes: dict[str, tuple[int, ...]] = {}
        cuda_call(cudart, cudart.cudaSetDevice(self.device), f"selecting device {self.device}")
        self._runtime = trt.Runtime(tensorrt_logger())
        engine = self._runtime.deserialize_cuda_engine(engine_bytes)
        if engine is None:
            raise CorruptEngineError(
                source, f"TensorRT {trt.__version__} could not deserialize it (built by another "
                "TensorRT version or for another GPU, or damaged)")
        self._engine = engine
        context = engine.create_execution_context()
        if context is None:
            raise RuntimeError(f"TensorRT could not create an execution context for {source} "
                               "(out of GPU memory?)")
        self._context = context
        self._stream = cuda_call(cudart, cudart.cudaStreamCreate(), "creating a stream")
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self.input_names = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.output_names = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if not self.input_names or not self.output_names:
            raise ValueError(f"engine {source} has inputs {self.input_names} and outputs "
                             f"{self.output_names}; it needs at least one of each")
        self.input_name = pick_input_name(self.input_names, input_name)
        self.output_name = output_name if output_name in self.output_names else self.output_names[0]
        self.dtypes = {n: _numpy_dtype(engine.get_tensor_dtype(n)) for n in names}
        self.engine_shapes = {n: dims_tuple(engine.get_tensor_shape(n)) for n in names}
        self.profiles: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]] = {}
        for n in self.input_names:
            lo, mid, hi = engine.get_tensor_profile_shape(n, 0)
            self.profiles[n] = (dims_tuple(lo), dims_tuple(mid), dims_tuple(hi))

    def _as_host_array(self, name: str, value: Any) -> np.ndarray:
        if hasattr(value, "detach"):  # a torch tensor from a caller that has torch anyway
            value = value.detach().cpu().numpy()
        array = np.ascontiguousarray(value, dtype=self.dtypes[name])
        expected = self.engine_shapes[name]
        if array.ndim != len(expected) or any(e > 0 and e != s for e, s in zip(expected, array.shape)):
            wanted = "x".join(str(d) if d > 0 else "?" for d in expected)
            raise ValueError(f"{name} has shape {format_shape(array.shape)}; the engine "
                             f"{self.source.name} takes {wanted}")
        return array

    def _check_profile(self, name: str, shape: tuple[int, ...]) -> None:
        lo, _, hi = self.profiles[name]
        if any(not a <= s <= b for a, s, b in zip(lo, shape, hi)):
            raise ValueError(
                f"{name} of shape {format_shape(shape)} is outside the shape profile of engine "
                f"{self.source.name} (min {format_shape(lo)}, max {format_shape(hi)}): rebuild it "
                "with --min/--max covering this size")

    def _free(self) -> None:
        cudart = self._cudart
        for ptr in self._buffers.values():
            cuda_call(cudart, cudart.cudaFree(ptr), "freeing a buffer")
        self._buffers.clear()
        self._bound = {}

    def _bind(self, shapes: Mapping[str, tuple[int, ...]]) -> None:
        """Set input shapes and (re)allocate every IO buffer; only called when a shape changes."""
        cudart, context = self._cudart, self._require_context()
        for name, shape in shapes.items():
            self._check_profile(name, shape)
        cuda_call(cudart, cudart.cudaStreamSynchronize(self._stream), "synchronising")
        self._free()
        for name, shape in shapes.items():
            if not context.set_input_shape(name, shape):
                raise ValueError(f"TensorRT refused shape {format_shape(shape)} for {name} "
                                 f"of engine {self.source.name}")
        for name in self.input_names + self.output_names:
            shape = shapes[name] if name in shapes else dims_tuple(context.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise RuntimeError(f"output {name} of engine {self.source.name} has a "
                                   f"data-dependent shape ({format_shape(shape)}); unsupported")
            nbytes = max(1, int(np.prod(shape)) * self.dtypes[name].itemsize)
            ptr = int(cuda_call(cudart, cudart.cudaMalloc(nbytes), f"allocating {nbytes} bytes"))
            self._buffers[name] = ptr
            if not context.set_tensor_address(name, ptr):
                raise RuntimeError(f"TensorRT refused the buffer for {name}")
            if name in self.output_names:
                self._out_shapes[name] = shape
        self._bound = dict(shapes)

    def _require_context(self) -> trt.IExecutionContext:
        if self._context is None:
            raise RuntimeError(f"the TensorRT engine {self.source.name} is closed")
        return self._context

    def buffer(self, name: str) -> int:
        """The device pointer bound to ``name``; reused across calls."""
        return self._buffers[name]

    def run(self, feeds: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Inputs (numpy, or host/device torch tensors) -> every output as a new float32 numpy
        array. Synchronous: returns when the outputs are on the host."""
        cudart, context = self._cudart, self._require_context()
        missing = [n for n in self.input_names if n not in feeds]
        unknown = [n for n in feeds if n not in self.input_names]
        if missing or unknown:
            raise ValueError(f"engine {self.source.name} takes inputs {self.input_names}; "
                             f"missing {missing}, unknown {unknown}")
        arrays = {n: self._as_host_array(n, v) for n, v in feeds.items()}
        shapes = {n: tuple(int(d) for d in a.shape) for n, a in arrays.items()}
        if shapes != self._bound:
            self._bind(shapes)
        to_device = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        to_host = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        for name, array in arrays.items():
            cuda_call(cudart, cudart.cudaMemcpyAsync(self._buffers[name], array.ctypes.data,
                                                     array.nbytes, to_device, self._stream),
                      f"copying {name} to the device")
        if not context.execute_async_v3(int(self._stream)):
            raise RuntimeError(f"TensorRT failed to run engine {self.source.name} "
                               "(its log messages say why)")
        outs = {n: np.empty(self._out_shapes[n], self.dtypes[n]) for n in self.output_names}
        for name, out in outs.items():
            cuda_call(cudart, cudart.cudaMemcpyAsync(out.ctypes.data, self._buffers[name],
                                                     out.nbytes, to_host, self._stream),
                      f"copying {name} to the host")
        # the host arrays (inputs and outputs) must outlive the queued copies
        cuda_call(cudart, cudart.cudaStreamSynchronize(self._stream), "running the engine")
        return {n: o.astype(np.float32, copy=False) for n, o in outs.items()}

    def close(self) -> None:
        cudart = self._cudart
        if self._stream is not None:
            try:
                cudart.cudaStreamSynchronize(self._stream)
                self._free()
                cudart.cudaStreamDestroy(self._stream)
            except Exception:  # noqa: BLE001 - closing must not fail on a broken CUDA context
                pass
        self._buffers.clear()
        self._bound = {}
        self._context = None
        self._engine = None
        self._runtime = None
        self._stream = None
