"""``DepthEstimator``: one image in, depth at the image's resolution out, on any backend.

    est = DepthEstimator("depth_anything_v2_small", weights="ckpt/depth_anything_v2_vits.pth")
    pred = est.predict(rgb)            # rgb: HxWx3 uint8
    pred.values, pred.kind             # HxW float32; "relative_inverse" | "metric" | "relative_depth"

    staged = est.upload(next_rgb)      # on a GPU: its copy overlaps the next predict's work
    pred = est.predict(staged, rays=rays)   # rays HxWx2: pred.points, the HxWx3 cloud (one copy back)

Backends: ``torch`` (CPU/CUDA), ``onnxruntime`` (an ONNX file, or one exported on the fly),
``openvino`` (the same ONNX file on the CPU; fp32, or int8: an NNCF-quantised OpenVINO IR when
nncf is installed, else a static QDQ file),
``tensorrt`` (an engine or an ONNX file; needs a CUDA GPU and TensorRT), and ``auto``: TensorRT when a
GPU and TensorRT are present, torch on another GPU, else ONNX Runtime when an ONNX file is given,
else torch on the CPU.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

from .onnx_export import FOV_NAME, INPUT_NAME, OUTPUT_NAME, PROMPT_NAME
from .processing import (
    MAX_ASPECT_RATIO,
    Geometry,
    UploadedImage,
    check_rgb,
    depth_pro_inverse_depth,
    postprocess,
    postprocess_tensor,
    preprocess,
    preprocess_numpy,
    prompt_from_depth,
)
from .zoo import ModelSpec, get_spec, missing_requirements

BACKENDS = ("auto", "torch", "onnxruntime", "openvino", "tensorrt")
#: backends fed numpy arrays by numpy/OpenCV pre- and post-processing (torch-free at run time)
HOST_BACKENDS = ("onnxruntime", "openvino")
#: scenes the static int8 ranges of ``backend="openvino", precision="int8"`` are calibrated on
CALIBRATION_SCENES = 8


class BackendUnavailableError(RuntimeError):
    """The requested backend cannot run here (no GPU, TensorRT missing, model not exportable)."""


@dataclass
class DepthPrediction:
    """Depth for one image, aligned with it (HxW)."""

    values: np.ndarray  # HxW float32: metres ("metric") or relative (see kind)
    #: "relative_inverse" (affine-invariant inverse depth, near = large), "metric" (metres) or
    #: "relative_depth" (affine-invariant depth, far = large: Marigold)
    kind: str
    timings_ms: dict[str, float] = field(default_factory=dict)
    field_of_view_deg: float | None = None  # Depth Pro's own estimate
    #: HxWx3 float32 organised cloud of ``values`` taken as metres (camera optical frame, NaN
    #: kept) when ``predict`` was given rays; a metric model's cloud, else only for timing
    points: np.ndarray | None = None


class DepthPredictor(Protocol):
    """What the pipeline calls on a monocular depth model: :class:`DepthEstimator`, or a stand-in."""

    def predict(self, rgb: np.ndarray) -> DepthPrediction:
        """HxWx3 uint8 RGB in; depth aligned with it (``values`` HxW, ``kind``) out."""
        ...


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


def cuda_available() -> bool:
    """Whether a CUDA GPU is usable: asked through cuda-python when torch is not imported yet
    (importing torch only to ask costs ~0.5 GB of memory on a robot running a TensorRT engine),
    else through torch."""
    if "torch" not in sys.modules:
        from .tensorrt_runtime import cuda_device_count

        count = cuda_device_count()
        if count is not None:
            return count > 0
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())


def tensorrt_available() -> bool:
    # find_spec alone is fooled by tensorrt-stubs (installed for type checking); ask the backend.
    if importlib.util.find_spec("tensorrt") is None or not cuda_available():
        return False
    from .tensorrt_backend import tensorrt_available as importable

    return importable()


class DepthEstimator:
    """A zoo model bound to one backend. ``predict`` is safe to call from one thread at a time per
    instance (the backends hold no per-call state, but CUDA streams are per instance)."""

    def __init__(
        self,
        spec_or_name: ModelSpec | str,
        weights: str | os.PathLike | None = None,
        backend: str = "auto",
        device: str | None = None,
        random_init: bool = False,
        input_size: int | None = None,
        onnx_path: str | os.PathLike | None = None,
        engine_path: str | os.PathLike | None = None,
        precision: str = "fp32",
        log: Callable[[str], None] | None = _stderr,
        seed: int = 0,
        max_aspect_ratio: float = MAX_ASPECT_RATIO,
        threads: int | None = None,
    ) -> None:
        self.spec = spec = get_spec(spec_or_name)
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        missing = missing_requirements(spec)
        if missing:
            raise BackendUnavailableError(
                f"model {spec.name} needs {', '.join(missing)}: pip install {' '.join(missing)}")
        if input_size is not None and spec.resize_mode == "short_side" and input_size % spec.patch_multiple:
            raise ValueError(f"input size {input_size} must be a multiple of {spec.patch_multiple} "
                             f"for {spec.name}")
        self.input_size = int(input_size or spec.input_size)
        self.max_aspect_ratio = float(max_aspect_ratio)
        self.precision = precision
        self._log = log or (lambda _msg: None)
        self._tmp: tempfile.TemporaryDirectory | None = None
        self.kind = spec.output
        if spec.family == "student" and weights is None and not random_init:
            from .student import default_weights_path

            weights = default_weights_path()  # bundled with the package
        if weights is None and not random_init and onnx_path is None and engine_path is None:
            raise ValueError(f"model {spec.name}: give weights (a local folder, .safetensors, .pth or "
                             "a hub id), an ONNX file / TensorRT engine, or random_init=True")
        self.backend_name = self._choose(backend, onnx_path, engine_path)
        #: pre/post-processing on numpy host arrays (ONNX Runtime, OpenVINO): no torch import when
        #: the model file exists; the other backends keep the tensors on their device
        self.host_arrays = self.backend_name in HOST_BACKENDS
        self._log(f"depth model {spec.name}: licence {spec.licence}; backend {self.backend_name}")
        self._device: Any = "cpu"
        self._uploader: Any = None  # ImageUploader, made on the first CUDA frame
        if self.backend_name == "torch":
            self.backend = self._torch_backend(weights, random_init, device, seed)
        elif self.backend_name == "onnxruntime":
            path = Path(onnx_path) if onnx_path else self._export(weights, random_init, seed)
            from .onnxruntime_backend import OnnxRuntimeBackend, quantize_int8

            if precision == "int8":
                path = quantize_int8(path, self._tmpdir() / f"{path.stem}.int8.onnx")
            elif precision != "fp32":
                raise ValueError("onnxruntime precision must be fp32 or int8")
            self.backend = OnnxRuntimeBackend(path, device=device, threads=threads)
        elif self.backend_name == "openvino":
            from .openvino_backend import OpenVinoBackend

            path = Path(onnx_path) if onnx_path else self._export(weights, random_init, seed)
            if precision == "int8":
                path = self._quantize_static(path)
            elif precision != "fp32":
                raise ValueError("openvino precision must be fp32 (a QDQ int8 file runs as int8) or "
                                 "int8 (static, calibrated on generated tabletop scenes)")
            self.backend = OpenVinoBackend(path, threads=threads, device=device)
        else:  # tensorrt
            from . import tensorrt_backend  # lazy: TensorRT is heavy and often absent

            source = engine_path or onnx_path or self._export(weights, random_init, seed)
            profile, extra = self.engine_profiles()
            trt_backend = tensorrt_backend.TensorRTBackend(
                source, precision=precision, profile=profile, extra_profiles=extra)
            self.backend = _TensorRTAdapter(trt_backend)
            # a built engine without torch: numpy pre/post-processing, cuda-python buffers
            self.host_arrays = trt_backend.host_arrays
            self._device = "cpu" if self.host_arrays else "cuda"

    # ------------------------------------------------------------------------------ set-up

    def engine_profiles(self) -> tuple[Any, dict[str, Any]]:
        """The TensorRT shape profiles this estimator builds and looks its engine up with
        (:func:`engine_profiles_for` at its input size); ``build-engine --model`` uses the same."""
        return engine_profiles_for(self.spec, self.input_size)

    def _choose(self, backend: str, onnx_path: Any, engine_path: Any) -> str:
        spec = self.spec
        if backend == "auto":
            if not spec.exportable:
                return "torch"
            if engine_path is not None or (tensorrt_available() and self.precision != "bf16"):
                return "tensorrt" if tensorrt_available() else "torch"
            if cuda_available():
                return "torch"
            return "onnxruntime" if onnx_path is not None else "torch"
        if backend != "torch" and not spec.exportable:
            raise BackendUnavailableError(f"model {spec.name} runs on the torch backend only "
                                          f"({spec.family} has no ONNX export)")
        if backend == "tensorrt" and not tensorrt_available():
            why = "no CUDA GPU" if not cuda_available() else "the tensorrt Python package is missing"
            raise BackendUnavailableError(f"backend tensorrt is not available here: {why}; "
                                          "use --backend onnxruntime or torch")
        if backend == "onnxruntime" and importlib.util.find_spec("onnxruntime") is None:
            raise BackendUnavailableError("backend onnxruntime needs: pip install onnxruntime")
        if backend == "openvino" and importlib.util.find_spec("openvino") is None:
            raise BackendUnavailableError("backend openvino needs: pip install openvino")
        return backend

    def _quantize_static(self, path: Path) -> Path:
        """Static int8 copy of ``path``, calibrated on generated tabletop scenes (the domain of the
        pipeline) through this estimator's own preprocessing: an OpenVINO IR by NNCF when nncf is
        installed (:func:`openvino_int8_options`), else ONNX Runtime's QDQ file."""
        from ..scene import generate_tabletop
        from .onnxruntime_backend import quantize_int8_static
        from .processing import preprocess_numpy
        from .quantize import nncf_available, quantize_openvino_int8

        self._log(f"calibrating static int8 on {CALIBRATION_SCENES} generated scenes")
        calibration = [preprocess_numpy(generate_tabletop(seed=i).rgb, self.spec, self.input_size,
                                        self.max_aspect_ratio)[0]
                       for i in range(CALIBRATION_SCENES)]
        if nncf_available():
            return quantize_openvino_int8(path, self._tmpdir() / f"{path.stem}.int8.xml",
                                          calibration, **openvino_int8_options(self.spec))
        return quantize_int8_static(path, self._tmpdir() / f"{path.stem}.int8.onnx", calibration,
                                    op_types=static_int8_op_types(self.spec))

    def _tmpdir(self) -> Path:
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="depth_perception_")
        return Path(self._tmp.name)

    def _build_torch(self, weights: Any, random_init: bool, seed: int) -> Any:
        from .weights import build_model

        return build_model(self.spec, weights=weights, random_init=random_init, seed=seed)

    def _torch_backend(self, weights: Any, random_init: bool, device: Any, seed: int) -> Any:
        if self.spec.family == "marigold":
            from .marigold import MarigoldBackend

            backend = MarigoldBackend(self.spec, weights=weights, random_init=random_init, device=device,
                                      precision=self.precision, seed=seed)
        else:
            from .torch_backend import TorchBackend

            backend = TorchBackend(self._build_torch(weights, random_init, seed), device=device,
                                   precision=self.precision)
        self._device = backend.device
        return backend

    def _export(self, weights: Any, random_init: bool, seed: int) -> Path:
        from .onnx_export import export_onnx

        model = self._build_torch(weights, random_init, seed)
        path = self._tmpdir() / f"{self.spec.name}.onnx"
        self._log(f"exporting {self.spec.name} to ONNX (once per run; use `depth-perception export` "
                  "to keep the file)")
        h = w = self.input_size
        if self.spec.dynamic_size:  # trace at a typical 4:3 camera aspect (any size works after)
            w = width_4_3(self.input_size, self.spec.patch_multiple)
        return export_onnx(model, path, h, w, dynamic=True, spec=self.spec)

    # ----------------------------------------------------------------------------- inference

    @property
    def device_upload(self) -> bool:
        """Whether images go to a CUDA device through :class:`~.processing.ImageUploader` (pinned
        staging, an upload stream): the torch CUDA and TensorRT-on-torch paths."""
        return (not self.host_arrays and self.spec.family != "marigold"
                and str(self._device).startswith("cuda"))

    def upload(self, rgb: np.ndarray) -> np.ndarray | UploadedImage:
        """Start copying an HxWx3 uint8 image to the device, to give to :meth:`predict` later:
        upload frame N+1, then predict frame N, and the copy overlaps frame N's work. Returns at
        once (after a host copy into pinned memory). Where images are not uploaded (CPU and
        host-array backends) it checks ``rgb`` and returns it, so callers need no branch."""
        if not self.device_upload:
            check_rgb(rgb)
            return rgb
        if self._uploader is None:
            from .processing import ImageUploader

            self._uploader = ImageUploader(self._device)
        return self._uploader.upload(rgb)

    def predict(self, rgb: np.ndarray | UploadedImage, fx_px: float | None = None,
                prompt_depth_m: np.ndarray | None = None, rays: Any = None) -> DepthPrediction:
        """HxWx3 uint8 RGB (or what :meth:`upload` returned for it) → depth at HxW.

        ``fx_px``: focal length in pixels of this image (from K) for the metric scale of the models
        with ``spec.takes_focal``: Depth Pro (else its own FOV estimate), Depth Anything 3 Metric
        (required). ``prompt_depth_m``: metric depth (NaN/<=0 invalid; a low-resolution
        depth image or sparse samples on the image grid) for Prompt Depth Anything, pooled and
        hole-filled by :func:`~depth_perception.depth.processing.prompt_from_depth`.
        ``rays``: HxWx2 float32 viewing rays of the image (``CameraModel.normalized_rays()``, or
        :func:`~depth_perception.depth.device_cloud.pinhole_rays` on this estimator's device, which
        saves their upload every frame): the prediction then carries ``points``, the organised
        cloud of ``values``, made on the device where the depth is and copied back with the depth
        in one copy.
        """
        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        if isinstance(rgb, np.ndarray) and self.device_upload:
            rgb = self.upload(rgb)  # pinned staging, then used at once: no overlap, same path
        if isinstance(rgb, UploadedImage) and (self._uploader is None or not self.device_upload):
            raise ValueError("an UploadedImage is only for the estimator whose upload() made it")
        if self.spec.family == "marigold":
            check_rgb(rgb)  # preprocess checks it on the other path
            values = self.backend.predict(rgb, self.input_size)
            timings["inference"] = (time.perf_counter() - t0) * 1e3
            timings["total"] = timings["inference"]
            points = None if rays is None else _backproject_host(values, np.asarray(_cpu(rays)))
            return DepthPrediction(values, self.kind, timings, points=points)
        if self.host_arrays:
            x, geo = preprocess_numpy(rgb, self.spec, self.input_size, self.max_aspect_ratio)
        elif isinstance(rgb, UploadedImage):
            x, geo = preprocess(self._uploader.take(rgb), self.spec, self.input_size,
                                device=self._device, max_aspect_ratio=self.max_aspect_ratio)
            self._uploader.release(rgb)
        else:
            x, geo = preprocess(rgb, self.spec, self.input_size, device=self._device,
                                max_aspect_ratio=self.max_aspect_ratio)
        prompt = self._prompt(prompt_depth_m, x)
        t1 = time.perf_counter()
        timings["preprocess"] = (t1 - t0) * 1e3
        out = self.backend.infer(x, prompt) if prompt is not None else self.backend.infer(x)
        t2 = time.perf_counter()
        timings["inference"] = (t2 - t1) * 1e3
        pred = out["predicted_depth"]
        fov = None
        points = None
        if self.spec.family == "depth_pro":
            fov = float(np.asarray(_cpu(out["field_of_view"])).reshape(-1)[0])
            inv = depth_pro_inverse_depth(_cpu(pred), geo, fx_px=fx_px, fov_deg=fov)
            values = 1.0 / np.clip(postprocess(inv, geo), 1e-4, 1e4)
        elif self.spec.family == "depth_anything_3" and self.kind == "metric":
            from .depth_anything_3 import metric_depth_m

            values = metric_depth_m(postprocess(pred, geo), geo, fx_px)
        elif rays is not None and not isinstance(pred, np.ndarray):
            from .device_cloud import depth_and_cloud_to_host

            depth = postprocess_tensor(pred, geo)
            device_rays = _torch_on(rays, depth.device)
            values, points = depth_and_cloud_to_host(depth, device_rays)
        else:
            values = postprocess(pred, geo)
        if rays is not None and points is None:
            points = _backproject_host(values, np.asarray(_cpu(rays)))
        timings["postprocess"] = (time.perf_counter() - t2) * 1e3
        timings["total"] = (time.perf_counter() - t0) * 1e3
        return DepthPrediction(values.astype(np.float32, copy=False), self.kind, timings, fov,
                               points)

    def _prompt(self, prompt_depth_m: np.ndarray | None, x: Any) -> Any:
        if "prompt_depth" not in self.spec.extra_inputs:
            if prompt_depth_m is not None:
                raise ValueError(f"model {self.spec.name} takes no prompt depth")
            return None
        if prompt_depth_m is None:
            raise ValueError(f"model {self.spec.name} needs prompt_depth_m: a low-resolution metric "
                             "depth image (e.g. from LiDAR or an RGB-D sensor)")
        p = prompt_from_depth(prompt_depth_m)  # dense, at most PROMPT_MAX_SIDE: fits the engine
        if self.host_arrays:
            return p[None, None]
        import torch

        return torch.from_numpy(p)[None, None].to(x.device)

    def close(self) -> None:
        backend = getattr(self, "backend", None)
        if hasattr(backend, "close"):
            backend.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> "DepthEstimator":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class _TensorRTAdapter:
    """TensorRTBackend's by-name ``infer_all`` seen through the backends' ``infer`` contract."""

    name = "tensorrt"

    def __init__(self, trt: Any) -> None:
        self.trt = trt

    def infer(self, pixel_values: Any, prompt_depth: Any = None) -> dict[str, Any]:
        feeds = {INPUT_NAME: pixel_values}
        if prompt_depth is not None:
            feeds[PROMPT_NAME] = prompt_depth
        outs = self.trt.infer_all(feeds)
        result = {"predicted_depth": outs[OUTPUT_NAME]}
        if FOV_NAME in outs:
            result["field_of_view"] = outs[FOV_NAME]
        return result

    def close(self) -> None:
        self.trt.close()


def engine_profiles_for(spec: ModelSpec, input_size: int | None = None) -> tuple[Any, dict[str, Any]]:
    """The TensorRT shape profiles the estimator builds and looks engines up with for ``spec`` at
    ``input_size`` (default: the spec's): (``pixel_values`` profile, {further input: profile}).

    Fixed-size models get their one size; aspect-preserving ones any landscape or portrait image up
    to 2:1 at this input size (one engine per camera rig). Prompt Depth Anything's ``prompt_depth``
    gets :func:`~depth_perception.depth.engine_profiles.prompt_depth_profile` (every prompt the
    estimator passes is pooled to fit it)."""
    from .engine_profiles import ShapeProfile, prompt_depth_profile
    from .processing import PROMPT_MAX_SIDE

    s, m = int(input_size or spec.input_size), spec.patch_multiple
    if spec.resize_mode == "fixed":
        main = ShapeProfile.fixed(s, s)
    else:
        main = ShapeProfile((s, s), (s, width_4_3(s, m)), (_round_up(2 * s, m), _round_up(2 * s, m)))
    extra: dict[str, Any] = {}
    if PROMPT_NAME in spec.extra_inputs:
        extra[PROMPT_NAME] = prompt_depth_profile(PROMPT_MAX_SIDE)
    return main, extra


def static_int8_op_types(spec: ModelSpec) -> tuple[str, ...]:
    """What static int8 quantises for ``spec``: convolutions too for the all-convolution student
    (0.5 % AbsRel, 2x on OpenVINO), MatMul weights only for the transformers (their convolutional
    DPT heads lose 2-15 % AbsRel in int8; ``bench/inference.py``)."""
    return ("Conv", "MatMul") if spec.family == "student" else ("MatMul",)


def openvino_int8_options(spec: ModelSpec) -> dict[str, Any]:
    """How NNCF quantises ``spec`` for OpenVINO (:func:`~depth_perception.depth.quantize.
    quantize_openvino_int8` keywords): everything for the all-convolution student (0.3 % AbsRel),
    the transformers' MatMuls and attention but not their convolutional DPT heads (Depth Anything
    V2 Small: 1.10 % AbsRel; with int8 convolutions 11 %, ``bench/inference.py --nncf-all``)."""
    if spec.family == "student":
        return {"transformer": True}
    return {"transformer": True, "keep_fp32_types": ("Convolution", "ConvolutionBackpropData")}


def _cpu(x: Any) -> Any:
    return x.detach().cpu() if hasattr(x, "detach") else x


def _torch_on(x: Any, device: Any) -> Any:
    """A torch tensor of ``x`` on ``device`` (no copy when it is there already)."""
    import torch

    return torch.as_tensor(x, device=device)


def _backproject_host(depth_m: np.ndarray, rays: np.ndarray) -> np.ndarray:
    """HxW depth and HxWx2 rays (numpy) → HxWx3 float32 cloud: ``CameraModel.backproject``'s
    arithmetic, for the host-array backends (no torch)."""
    if rays.shape != (*depth_m.shape, 2):
        raise ValueError(f"rays must be HxWx2 for depth {depth_m.shape}, got {rays.shape}")
    z = np.asarray(depth_m, dtype=np.float32)
    r = rays.astype(np.float32, copy=False)
    return np.stack([r[..., 0] * z, r[..., 1] * z, z], axis=-1)


def _round_up(x: int, m: int) -> int:
    return max(m, -(-x // m) * m)


def width_4_3(height: int, multiple: int) -> int:
    """The width of a 4:3 camera image at this network height, rounded up to the patch multiple
    (what dynamic-size models are traced and profiled at)."""
    return _round_up(height * 4 // 3, multiple)


__all__ = ["DepthEstimator", "DepthPrediction", "DepthPredictor", "BackendUnavailableError",
           "engine_profiles_for", "static_int8_op_types", "openvino_int8_options",
           "Geometry", "BACKENDS"]
