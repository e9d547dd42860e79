"""INT8 calibration: representative images -> TensorRT's entropy calibrator and its cached table.

Calibration images (HxWx3 RGB, any size) go through the estimator's own pre-processing to float32
1 x 3 x H x W at the profile's opt size (int8 ranges must be measured on the statistics inference
will see; :func:`spec_preprocess` gives a zoo model's, :func:`imagenet_preprocess` is the default
for a graph of unknown origin), batched into one torch CUDA buffer that
TensorRT reads. The resulting table is cached beside the engines, keyed by the ONNX graph, the
images and the input size (:func:`.engine_keys.calibration_cache_path`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from .engine_files import atomic_write_bytes
from .tensorrt_import import BACKEND_LOG, import_torch_cuda
from .zoo import IMAGENET_MEAN, IMAGENET_STD, ModelSpec

if TYPE_CHECKING:
    import tensorrt as trt
    from typing_extensions import Buffer
else:
    from .tensorrt_import import trt

# rgb HxWx3 uint8 + (H, W) network input size -> float32 1 x 3 x H x W, normalised exactly as the
# estimator does at inference time (int8 calibration must see the statistics it will run on).
PreprocessFn = Callable[[np.ndarray, "tuple[int, int]"], np.ndarray]


@dataclass(frozen=True)
class CalibrationData:
    """Where int8 calibration images come from and how they are pre-processed.

    ``preprocess`` must be the estimator's own pre-processing (see :data:`PreprocessFn`);
    ``preprocess_id`` names it in the cache key (change it when the pre-processing changes).
    """

    directory: Path
    preprocess: PreprocessFn
    preprocess_id: str = ""
    max_images: int | None = 256
    cache_file: Path | None = None  # calibration table; default: in the engine cache directory


#: names :func:`imagenet_preprocess` in calibration cache keys
IMAGENET_PREPROCESS_ID = "imagenet-cover-crop-v1"


def imagenet_preprocess(rgb: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """HxWx3 uint8 RGB -> float32 1 x 3 x H x W: resize to cover ``size_hw`` keeping the aspect,
    centre crop, ImageNet mean/std (Depth Anything's normalisation). The calibration default for
    a graph that names no zoo model (see :func:`spec_preprocess`)."""
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 RGB image, got shape {rgb.shape}")
    return _normalise(_cover_crop(rgb, size_hw), np.asarray(IMAGENET_MEAN, np.float32),
                      np.asarray(IMAGENET_STD, np.float32))


def spec_preprocess(spec: ModelSpec) -> tuple[PreprocessFn, str]:
    """(pre-processing, its id for the cache key) of a zoo model, as its estimator prepares inputs:
    the spec's mean/std (ImageNet for Depth Anything; 0.5/0.5 for DPT, MiDaS BEiT, ZoeDepth and
    Depth Pro) and, for fixed-size models, the letterbox (image scaled to fit, centred on a zero
    border = the mean colour); aspect-preserving models cover the profile size and centre-crop."""
    mean = np.asarray(spec.mean, np.float32)
    std = np.asarray(spec.std, np.float32)
    letterbox = spec.resize_mode == "fixed"

    def preprocess(rgb: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
        import cv2

        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"expected an HxWx3 RGB image, got shape {rgb.shape}")
        if not letterbox:
            return _normalise(_cover_crop(rgb, size_hw), mean, std)
        out_h, out_w = size_hw
        h, w = rgb.shape[:2]
        scale = min(out_h / h, out_w / w)
        ch, cw = max(1, round(h * scale)), max(1, round(w * scale))
        content = cv2.resize(rgb, (cw, ch), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
        out = np.zeros((1, 3, out_h, out_w), np.float32)
        top, left = (out_h - ch) // 2, (out_w - cw) // 2
        out[:, :, top:top + ch, left:left + cw] = _normalise(content, mean, std)
        return out

    if not letterbox and spec.mean == IMAGENET_MEAN and spec.std == IMAGENET_STD:
        return preprocess, IMAGENET_PREPROCESS_ID  # the same numbers: keep existing calibration tables
    layout = "letterbox" if letterbox else "cover-crop"
    numbers = ",".join(f"{v:g}" for v in (*spec.mean, *spec.std))
    return preprocess, f"{layout}-v1-meanstd-{numbers}"


def _cover_crop(rgb: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """HxWx3 uint8 resized to cover ``size_hw`` keeping the aspect, centre-cropped to it."""
    import cv2

    out_h, out_w = size_hw
    h, w = rgb.shape[:2]
    scale = max(out_h / h, out_w / w)
    new_h, new_w = max(out_h, round(h * scale)), max(out_w, round(w * scale))
    resized = cv2.resize(rgb, (new_w, new_h), interpolation=cv2.INTER_AREA if scale < 1
                         else cv2.INTER_CUBIC)
    top, left = (new_h - out_h) // 2, (new_w - out_w) // 2
    return np.asarray(resized[top:top + out_h, left:left + out_w])


def _normalise(rgb: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """hxwx3 uint8 -> float32 1 x 3 x h x w, (x / 255 - mean) / std."""
    normed = (rgb.astype(np.float32) / 255.0 - mean) / std
    return np.ascontiguousarray(normed.transpose(2, 0, 1)[None], dtype=np.float32)


def make_entropy_calibrator(images: Sequence[Path], preprocess: PreprocessFn,
                            input_shape: Sequence[int], cache_file: Path, device: int = 0,
                            logger: logging.Logger | None = None) -> trt.IInt8EntropyCalibrator2:
    """An ``IInt8EntropyCalibrator2`` feeding ``images`` (batch N of ``input_shape`` N x C x H x W)
    through ``preprocess`` from one torch CUDA buffer, with a calibration table at ``cache_file``.

    TensorRT calls these methods from C++ and cannot take a Python exception, so a failing image is
    logged, calibration stops, and the error is kept in ``.error`` for the caller to raise.
    """
    torch = import_torch_cuda()
    log = logger or BACKEND_LOG
    shape = tuple(int(d) for d in input_shape)
    if len(shape) != 4:
        raise ValueError(f"calibration input shape must be N x C x H x W, got {shape}")
    batch, _, height, width = shape
    if not images:
        raise ValueError("no calibration images")
    from ..files import read_image

    class _EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.error: Exception | None = None
            self.batches_read = 0
            self._next = 0
            self._buffer = torch.empty(shape, dtype=torch.float32,
                                       device=torch.device("cuda", device))

        def get_batch_size(self) -> int:
            return batch

        def get_batch(self, names: list[str]) -> list[int]:
            if self.error is not None or self._next + batch > len(images):
                return []  # no more batches: calibration ends
            paths = images[self._next:self._next + batch]
            self._next += batch
            try:
                arrays = []
                for p in paths:
                    x = np.asarray(preprocess(read_image(p), (height, width)), dtype=np.float32)
                    if x.shape != (1,) + shape[1:]:
                        raise ValueError(f"pre-processing {p} gave shape {x.shape}, expected "
                                         f"{(1,) + shape[1:]}")
                    arrays.append(x)
                self._buffer.copy_(torch.from_numpy(np.concatenate(arrays, axis=0)))
                # TensorRT reads the buffer on its own stream: the copy must be finished.
                torch.cuda.synchronize(self._buffer.device)
            except Exception as exc:  # noqa: BLE001 - must not propagate into TensorRT's C++
                self.error = exc
                log.error("int8 calibration stopped at %s: %s", paths[0], exc)
                return []
            self.batches_read += 1
            return [int(self._buffer.data_ptr())]

        # The stubs say Buffer; TensorRT's documented contract is "bytes, or None for no cache".
        def read_calibration_cache(self) -> bytes | None:  # type: ignore[override]
            if cache_file.exists() and cache_file.stat().st_size > 0:
                log.info("using int8 calibration table %s", cache_file)
                return cache_file.read_bytes()
            return None

        def write_calibration_cache(self, cache: Buffer) -> None:
            try:
                atomic_write_bytes(cache_file, bytes(cache))
            except OSError as exc:  # a read-only cache must not fail the build
                log.warning("could not write the int8 calibration table %s: %s", cache_file, exc)

    return _EntropyCalibrator()


def raise_calibration_error(calibrator: Any) -> None:
    """The calibrator cannot raise into TensorRT, so it keeps its first error: raise it here."""
    error = getattr(calibrator, "error", None)
    if error is not None:
        raise ValueError(f"int8 calibration failed: {error}") from error
