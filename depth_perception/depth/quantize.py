"""OpenVINO int8 by NNCF post-training quantisation: an ONNX file in, an OpenVINO IR (.xml + .bin)
out, which :class:`~depth_perception.depth.openvino_backend.OpenVinoBackend` runs without nncf.

nncf is needed only here, when quantising (``pip install depth-perception[quantize]``). Unlike the
QDQ file of :func:`~depth_perception.depth.onnxruntime_backend.quantize_int8_static`, NNCF's
transformer scheme also quantises attention's activation x activation products (Q·Kᵀ, softmax·V),
which OpenVINO then runs as int8 kernels (AVX-512 VNNI), and smooths the activation outliers of the
MatMuls (SmoothQuant). What to keep in fp32 for accuracy was measured by ``bench/inference.py``.
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from .onnx_export import INPUT_NAME


@contextmanager
def _nncf_warnings_only() -> Iterator[None]:
    """NNCF logs a line per layer at INFO (it sets its logger to INFO when imported): noise in a
    node's log or a benchmark's report. Only its warnings and errors, for the duration."""
    logger = logging.getLogger("nncf")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def nncf_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("nncf") is not None


def quantize_openvino_int8(src: str | os.PathLike, dst: str | os.PathLike,
                           calibration: Iterable[Any], transformer: bool = True,
                           keep_fp32: Sequence[str] = (), keep_fp32_types: Sequence[str] = (),
                           ) -> Path:
    """Static int8 OpenVINO IR of the ONNX file ``src``, written to ``dst`` (``.xml``, with its
    ``.bin`` beside it), with activation ranges calibrated on ``calibration``: 1x3xhxw float32
    network inputs (e.g. real photos through
    :func:`~depth_perception.depth.processing.preprocess_numpy`).

    ``transformer``: NNCF's transformer scheme (attention products in int8, SmoothQuant, mixed
    preset: symmetric weights, asymmetric activations); else its convolutional-network default.
    ``keep_fp32``: regular expressions of node names to leave in fp32; ``keep_fp32_types``:
    OpenVINO op types to leave in fp32 (e.g. ``"Convolution"``)."""
    try:
        import nncf
    except ImportError as exc:
        raise ImportError("OpenVINO int8 quantisation needs nncf: pip install nncf "
                          "(or depth-perception[quantize])") from exc
    import openvino as ov

    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise FileNotFoundError(f"ONNX model not found: {src}")
    if dst.suffix != ".xml":
        raise ValueError(f"an OpenVINO IR is written as .xml (+ .bin), got {dst}")
    inputs = [np.ascontiguousarray(x, dtype=np.float32) for x in calibration]
    if not inputs:
        raise ValueError("int8 quantisation needs at least one calibration input")
    model = ov.Core().read_model(str(src))
    ignored = None
    if keep_fp32 or keep_fp32_types:
        # validate=False: a pattern that matches nothing (another model's graph) is not an error
        ignored = nncf.IgnoredScope(patterns=list(keep_fp32), types=list(keep_fp32_types),
                                    validate=False)
    kwargs: dict[str, Any] = {"preset": nncf.QuantizationPreset.MIXED}
    if transformer:
        kwargs["model_type"] = nncf.ModelType.TRANSFORMER
    if ignored is not None:
        kwargs["ignored_scope"] = ignored
    with _nncf_warnings_only():
        quantized = nncf.quantize(model, nncf.Dataset(inputs, lambda x: {INPUT_NAME: x}),
                                  subset_size=len(inputs), **kwargs)
    dst.parent.mkdir(parents=True, exist_ok=True)
    # compress_to_fp16=False: the fp32 layers stay fp32 on disk (fp16 storage would round them)
    ov.save_model(quantized, str(dst), compress_to_fp16=False)
    return dst


def compress_openvino_int8_weights(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """OpenVINO IR of ``src`` with int8 weights (per output channel) and fp32 activations: no
    calibration; smaller file, decompressed to fp32 in the kernels (``bench/inference.py`` row
    ``ov int8 weights``)."""
    try:
        import nncf
    except ImportError as exc:
        raise ImportError("OpenVINO weight compression needs nncf: pip install nncf") from exc
    import openvino as ov

    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise FileNotFoundError(f"ONNX model not found: {src}")
    if dst.suffix != ".xml":
        raise ValueError(f"an OpenVINO IR is written as .xml (+ .bin), got {dst}")
    with _nncf_warnings_only():
        compressed = nncf.compress_weights(ov.Core().read_model(str(src)))
    dst.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(compressed, str(dst), compress_to_fp16=False)
    return dst
