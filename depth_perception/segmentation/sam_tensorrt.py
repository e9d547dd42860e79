"""SAM on TensorRT: the two ONNX graphs of :mod:`.sam_onnx`, built into cached, validated engines.

Both engines go through the depth engine's machinery (:mod:`..depth.tensorrt_backend`,
:mod:`..depth.engine_cache`): built once per (ONNX hash, TensorRT version, GPU, precision, shape
profile), checked against ONNX Runtime before they are stored (a mismatch is refused with the
measured error), corrupt cache entries rebuilt, builds serialised across processes by a lock.

- Encoder: the fixed 1 x 3 x S x S input; fp16 by default (it is where the time goes; TensorRT
  keeps the normalisation layers in fp32), int8 with calibration images.
- Decoder: a fixed 1 x C x e x e embedding and an optimisation profile over the number of prompts
  B and points per prompt P (:class:`DecoderProfile`); fp32 by default (a few million weights:
  fp16 saves little, and the mask choice depends on its IoU head). Larger prompt batches are split
  into engine-sized ones, smaller ones padded to the profile's minimum.

Pre- and post-processing are those of the other backends (:func:`.sam.preprocess_image`,
:func:`.sam.prompt_points`, :func:`.sam.select_masks`, :func:`.sam.postprocess_masks`), so the
masks are right at every aspect ratio. ``tensorrt`` and ``torch`` are imported on first use; where
either (or a CUDA GPU) is missing, construction raises
:class:`~depth_perception.depth.tensorrt_backend.TensorRTUnavailableError` saying which.

Also here: finding an ``export-sam`` folder's files (:func:`find_sam_onnx`) and exporting a
checkpoint into the engine cache on first use (:func:`cached_sam_onnx`), for both ONNX backends.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence, cast

import numpy as np

from ..depth.engine_cache import (
    PRECISIONS,
    InputProfile,
    ShapeProfile,
    TensorProfile,
    build_lock,
    default_cache_dir,
    sha256_file,
)
from .base import SegmentationError
from .sam import ImageEmbedding, SamBase, SamConfig, SamWeightsError, get_config, preprocess_image
from .sam_onnx import (
    DECODER_INPUTS,
    DECODER_OUTPUTS,
    ENCODER_INPUT,
    ENCODER_OUTPUT,
    SamExportError,
    SamOnnxFiles,
)

if TYPE_CHECKING:
    from ..depth.engine_cache import EngineKey
    from ..depth.tensorrt_backend import Precision, TensorRTBackend, ValidationFeeds

DEFAULT_ENCODER_PRECISION: Precision = "fp16"
DEFAULT_DECODER_PRECISION: Precision = "fp32"
SAM_PREPROCESS_ID = "sam-resize-longest-pad-v1"  # names preprocess_image in int8 cache keys
_LOG = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------
# The decoder's shape profile


def _range(value: Sequence[int], what: str) -> tuple[int, int, int]:
    lo_opt_hi = tuple(value)
    if len(lo_opt_hi) != 3 or any(isinstance(v, bool) or int(v) != v for v in lo_opt_hi):
        raise ValueError(f"decoder profile {what} must be three ints (min, opt, max), got {value!r}")
    lo, opt, hi = (int(v) for v in lo_opt_hi)
    if not 1 <= lo <= opt <= hi:
        raise ValueError(f"decoder profile {what} needs 1 <= min <= opt <= max, got {lo}, {opt}, {hi}")
    return lo, opt, hi


@dataclass(frozen=True)
class DecoderProfile:
    """How many prompts per engine call (B) and points per prompt (P) the decoder engine accepts,
    each ``(min, opt, max)``; TensorRT tunes its kernels for the opt sizes.

    P counts what the decoder sees: a box is its 2 corners, and a prompt without a box gets one
    padding point, so K points alone need P = K + 1 and a box with K points P = K + 2. A prompt
    batch larger than max is split, a smaller one than min padded (prompts are independent); a
    prompt whose P lies outside the range is refused (extra padding points would change masks).
    """

    prompts: tuple[int, int, int] = (1, 4, 16)
    points: tuple[int, int, int] = (1, 2, 8)

    def __post_init__(self) -> None:
        object.__setattr__(self, "prompts", _range(self.prompts, "prompts"))
        object.__setattr__(self, "points", _range(self.points, "points"))

    @classmethod
    def from_engine_shapes(cls, coords_shapes: Sequence[Sequence[int]]) -> "DecoderProfile":
        """From an engine's (min, opt, max) shapes of ``point_coords`` (B x P x 2 each)."""
        lo, opt, hi = (tuple(int(d) for d in s) for s in coords_shapes)
        if not len(lo) == len(opt) == len(hi) == 3:
            raise ValueError(f"point_coords profile must be B x P x 2 shapes, got {coords_shapes!r}")
        return cls((lo[0], opt[0], hi[0]), (lo[1], opt[1], hi[1]))

    def tensor_profiles(self) -> dict[str, InputProfile]:
        """The TensorRT profiles of the decoder's ``point_coords`` (B x P x 2) and ``point_labels``
        (B x P)."""
        (b0, b1, b2), (p0, p1, p2) = self.prompts, self.points
        return {"point_coords": TensorProfile((b0, p0, 2), (b1, p1, 2), (b2, p2, 2)),
                "point_labels": TensorProfile((b0, p0), (b1, p1), (b2, p2))}

    def batches(self, n_prompts: int, n_points: int) -> list[tuple[int, int, int]]:
        """The engine calls for ``n_prompts`` prompts of ``n_points`` decoder points each:
        ``(start, stop, batch)`` per call, prompts ``start:stop`` run padded to ``batch``.

        :class:`~.base.SegmentationError` when ``n_points`` is outside the profile.
        """
        lo_p, _, hi_p = self.points
        if not lo_p <= n_points <= hi_p:
            raise SegmentationError(
                f"a prompt of {n_points} decoder points (box corners and the padding point "
                f"included) is outside the SAM decoder engine's profile ({lo_p}..{hi_p} points): "
                "give fewer points, or build the engine with a wider DecoderProfile(points=...)")
        if n_prompts < 0:
            raise ValueError(f"n_prompts must be >= 0, got {n_prompts}")
        lo_b, _, hi_b = self.prompts
        calls = []
        for start in range(0, n_prompts, hi_b):
            stop = min(start + hi_b, n_prompts)
            calls.append((start, stop, max(stop - start, lo_b)))
        return calls

    def describe(self) -> str:
        return (f"prompts {'/'.join(map(str, self.prompts))}, "
                f"points {'/'.join(map(str, self.points))} (min/opt/max)")


def decoder_validation_feeds(profile: DecoderProfile, image_size: int) -> ValidationFeeds:
    """Prompts for the k-th validation input of a decoder engine: (B, P) at the profile's opt, min
    and max first, then random sizes in range; points anywhere in the S x S input, labels of all
    five kinds (-1 padding, 0/1 background/foreground, 2/3 box corners), so every prompt-embedding
    path of the graph is compared with ONNX Runtime."""
    def feeds(k: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(1000 + k)
        ends = [(profile.prompts[i], profile.points[i]) for i in (1, 0, 2)]
        if k < len(ends):
            b, p = ends[k]
        else:
            b = int(rng.integers(profile.prompts[0], profile.prompts[2] + 1))
            p = int(rng.integers(profile.points[0], profile.points[2] + 1))
        coords = rng.uniform(0.0, float(image_size), (b, p, 2)).astype(np.float32)
        labels = rng.integers(-1, 4, (b, p)).astype(np.float32)
        return {"point_coords": coords, "point_labels": labels}
    return feeds


# --------------------------------------------------------------------------------------------------
# What each engine is built from


def onnx_input_shapes(path: str | os.PathLike[str]) -> dict[str, tuple[int, ...]]:
    """Input name -> shape (-1 = dynamic) of an ONNX graph, without loading external weights."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - DecodeError, OSError...: all "not an ONNX graph"
        raise SamExportError(f"{path}: not a readable ONNX file ({type(exc).__name__}: {exc})") from exc
    initializers = {t.name for t in model.graph.initializer}
    shapes: dict[str, tuple[int, ...]] = {}
    for value in model.graph.input:
        if value.name in initializers:  # old exporters list weights as inputs too
            continue
        dims = value.type.tensor_type.shape.dim
        shapes[str(value.name)] = tuple(int(d.dim_value) if d.dim_value > 0 else -1 for d in dims)
    return shapes


@dataclass(frozen=True)
class SamEngineSpec:
    """What one of SAM's engines is built from: the arguments of ``ensure_engine`` for it."""

    onnx: Path
    precision: Precision
    profile: ShapeProfile
    input_name: str
    output_name: str
    extra_profiles: tuple[tuple[str, InputProfile], ...] = ()

    def key(self, tensorrt_version: str, gpu_name: str, compute_capability: tuple[int, int]
            ) -> EngineKey:
        """The engine cache key this engine is filed under on that TensorRT and GPU."""
        from ..depth.tensorrt_backend import engine_key

        return engine_key(self.onnx, tensorrt_version=tensorrt_version, gpu_name=gpu_name,
                          compute_capability=compute_capability, precision=self.precision,
                          profile=self.profile,
                          extra_profiles=dict(self.extra_profiles))


def _check_precision(precision: str, what: str) -> Precision:
    if precision in PRECISIONS:
        return cast("Precision", precision)
    raise ValueError(f"SAM {what} precision must be one of {', '.join(PRECISIONS)}, "
                     f"got {precision!r}")


def _expect_inputs(path: Path, shapes: Mapping[str, tuple[int, ...]], names: Sequence[str]) -> None:
    if list(shapes) != list(names):
        raise SamExportError(f"{path}: expected inputs {list(names)}, got {list(shapes)} (was it "
                             "exported by `depth-perception export-sam`?)")


def sam_engine_specs(encoder_onnx: str | os.PathLike[str], decoder_onnx: str | os.PathLike[str], *,
                     encoder_precision: str = DEFAULT_ENCODER_PRECISION,
                     decoder_precision: str = DEFAULT_DECODER_PRECISION,
                     decoder_profile: DecoderProfile | None = None
                     ) -> tuple[SamEngineSpec, SamEngineSpec]:
    """The encoder and decoder engine specs for an ``export-sam`` pair (pure: reads the graphs'
    input shapes, needs neither TensorRT nor a GPU)."""
    enc_path, dec_path = Path(encoder_onnx), Path(decoder_onnx)
    for p in (enc_path, dec_path):
        if not p.is_file():
            raise FileNotFoundError(f"SAM ONNX model not found: {p}")
        if p.suffix.lower() != ".onnx":
            raise ValueError(f"{p}: expected an .onnx file written by `depth-perception export-sam` "
                             "(TensorRT engines are built from it and cached)")
    enc_precision = _check_precision(encoder_precision, "encoder")
    dec_precision = _check_precision(decoder_precision, "decoder")
    if dec_precision == "int8":
        raise ValueError("SAM decoder precision int8 is not supported (int8 calibration takes "
                         "single-input graphs): use fp32 or fp16 for the decoder")
    enc_shapes = onnx_input_shapes(enc_path)
    _expect_inputs(enc_path, enc_shapes, [ENCODER_INPUT])
    image = enc_shapes[ENCODER_INPUT]
    if len(image) != 4 or image[:2] != (1, 3) or image[2] <= 0 or image[2] != image[3]:
        raise SamExportError(f"{enc_path}: encoder input must be a fixed 1x3xSxS image, got "
                             f"{'x'.join(str(d) if d > 0 else '?' for d in image)}")
    dec_shapes = onnx_input_shapes(dec_path)
    _expect_inputs(dec_path, dec_shapes, DECODER_INPUTS)
    emb = dec_shapes["image_embeddings"]
    if len(emb) != 4 or emb[0] != 1 or any(d <= 0 for d in emb):
        raise SamExportError(f"{dec_path}: decoder image_embeddings must be a fixed 1xCxexe input, "
                             f"got {emb}")
    profile = decoder_profile or DecoderProfile()
    encoder = SamEngineSpec(enc_path, enc_precision, ShapeProfile.fixed(image[2], image[3]),
                            ENCODER_INPUT, ENCODER_OUTPUT)
    decoder = SamEngineSpec(dec_path, dec_precision,
                            ShapeProfile.fixed(emb[2], emb[3], batch=1, channels=emb[1]),
                            "image_embeddings", DECODER_OUTPUTS[0],
                            tuple(sorted(profile.tensor_profiles().items())))
    return encoder, decoder


def check_tensorrt_ready(device: int = 0) -> None:
    """Raise :class:`~depth_perception.depth.tensorrt_backend.TensorRTUnavailableError` naming what
    is missing (TensorRT, torch, a CUDA GPU) before anything slow (export, build) starts."""
    from ..depth.tensorrt_backend import gpu_identity, import_tensorrt

    import_tensorrt()
    gpu_identity(device)  # imports torch and asks for the device: the backend's buffers live there


# --------------------------------------------------------------------------------------------------
# The segmenter


def _to_numpy(value: Any) -> np.ndarray:
    """A backend output (torch tensor on any device, or numpy) as a host float32 array."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value, np.float32)


class SamTensorRTSegmenter(SamBase):
    """SAM on TensorRT. Same API and thread safety as :class:`.sam.SamSegmenter`: ``encode`` once
    per frame (the embedding stays on the GPU as a torch CUDA tensor), ``decode`` once per prompt
    batch, from any thread (each engine serialises its own calls).

    :param encoder_path, decoder_path: the ``<name>_encoder.onnx`` / ``_decoder.onnx`` pair written
        by ``depth-perception export-sam``; engines are built on first use (minutes for vit_h),
        checked against ONNX Runtime and cached (``cache_dir``, default
        ``~/.cache/depth_perception/engines`` or ``$DEPTH_PERCEPTION_CACHE``).
    :param encoder_precision: fp16 (default), fp32, or int8 (needs ``calibration_dir``).
    :param decoder_precision: fp32 (default) or fp16.
    :param decoder_profile: prompts and points per decoder call (:class:`DecoderProfile`).
    :param validate, tolerance: the ONNX Runtime check of new engines (as ``build-engine``).

    Use as a context manager or call :meth:`close` to free both engines.
    """

    backend = "tensorrt"

    def __init__(self, encoder_path: str | os.PathLike[str], decoder_path: str | os.PathLike[str],
                 *, encoder_precision: str = DEFAULT_ENCODER_PRECISION,
                 decoder_precision: str = DEFAULT_DECODER_PRECISION,
                 decoder_profile: DecoderProfile | None = None,
                 cache_dir: str | os.PathLike[str] | None = None, device: int = 0,
                 validate: bool = True, tolerance: float | None = None,
                 workspace_mb: int | None = None,
                 calibration_dir: str | os.PathLike[str] | None = None,
                 logger: logging.Logger | None = None) -> None:
        check_tensorrt_ready(device)  # the clearest error first: no TensorRT / torch / GPU
        from ..depth.tensorrt_backend import CalibrationData, TensorRTBackend

        enc, dec = sam_engine_specs(encoder_path, decoder_path, encoder_precision=encoder_precision,
                                    decoder_precision=decoder_precision,
                                    decoder_profile=decoder_profile)
        profile = decoder_profile or DecoderProfile()
        calibration = None
        if enc.precision == "int8" and calibration_dir is None:
            raise ValueError("encoder_precision 'int8' needs calibration_dir: a folder of "
                             "representative camera images")
        if calibration_dir is not None:
            if enc.precision != "int8":
                raise ValueError("calibration_dir is only used with encoder_precision='int8'")
            size = enc.profile.opt_hw[0]

            def preprocess(rgb: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
                return preprocess_image(rgb, size)[0]  # the encoder's own input: 1x3xSxS

            calibration = CalibrationData(Path(calibration_dir), preprocess, SAM_PREPROCESS_ID)
        common: dict[str, Any] = dict(cache_dir=cache_dir, device=device, validate=validate,
                                      tolerance=tolerance, workspace_mb=workspace_mb,
                                      logger=logger or _LOG)
        encoder = TensorRTBackend(enc.onnx, precision=enc.precision, profile=enc.profile,
                                  input_name=enc.input_name, output_name=enc.output_name,
                                  calibration=calibration, **common)
        try:
            decoder = TensorRTBackend(
                dec.onnx, precision=dec.precision, profile=dec.profile, input_name=dec.input_name,
                output_name=dec.output_name, extra_profiles=dict(dec.extra_profiles),
                validation_feeds=decoder_validation_feeds(profile, enc.profile.opt_hw[0]), **common)
        except BaseException:
            encoder.close()
            raise
        self._bind(encoder, decoder)

    @classmethod
    def from_backends(cls, encoder: Any, decoder: Any) -> "SamTensorRTSegmenter":
        """A segmenter over two ready engines (objects with :class:`TensorRTBackend`'s
        ``infer_all``, ``profile_shapes`` and ``close``), e.g. engines loaded elsewhere."""
        self = cls.__new__(cls)
        self._bind(encoder, decoder)
        return self

    def _bind(self, encoder: Any, decoder: Any) -> None:
        self.encoder_backend = encoder
        self.decoder_backend = decoder
        # Sizes from the engines themselves: what they accept is what counts.
        image = tuple(encoder.profile_shapes(ENCODER_INPUT)[1])
        self.decoder_profile = DecoderProfile.from_engine_shapes(
            decoder.profile_shapes("point_coords"))
        self.config = SamConfig("tensorrt", 0, 0, 0, (), image_size=int(image[-1]))

    def encode(self, rgb: np.ndarray) -> ImageEmbedding:
        """HxWx3 uint8 RGB → :class:`.sam.ImageEmbedding` (1xCxexe float32 torch CUDA tensor)."""
        x, input_size = preprocess_image(rgb, self.config.image_size)
        emb = self.encoder_backend.infer_all({ENCODER_INPUT: x})[ENCODER_OUTPUT]
        height, width = np.asarray(rgb).shape[:2]
        return ImageEmbedding(emb, (int(height), int(width)), input_size)

    def _run_decoder(self, embeddings: Any, coords: np.ndarray, labels: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
        """Decoder outputs (Bx4xhxw logits, Bx4 IoU) for B prompts, in engine-sized calls."""
        lows: list[np.ndarray] = []
        ious: list[np.ndarray] = []
        for start, stop, batch in self.decoder_profile.batches(len(coords), coords.shape[1]):
            c, lab = coords[start:stop], labels[start:stop]
            if batch > stop - start:  # under the engine's min batch: repeat the last prompt
                pad = batch - (stop - start)
                c = np.concatenate([c, np.repeat(c[-1:], pad, axis=0)])
                lab = np.concatenate([lab, np.repeat(lab[-1:], pad, axis=0)])
            out = self.decoder_backend.infer_all({"image_embeddings": embeddings,
                                                  "point_coords": c, "point_labels": lab})
            lows.append(_to_numpy(out[DECODER_OUTPUTS[0]])[:stop - start])
            ious.append(_to_numpy(out[DECODER_OUTPUTS[1]])[:stop - start])
        return np.concatenate(lows), np.concatenate(ious)

    def close(self) -> None:
        """Free both engines. Idempotent."""
        for backend in (getattr(self, "encoder_backend", None),
                        getattr(self, "decoder_backend", None)):
            if backend is not None:
                backend.close()

    def __enter__(self) -> "SamTensorRTSegmenter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------------------------------
# ONNX files for the onnxruntime and tensorrt backends


def find_sam_onnx(directory: str | os.PathLike[str], preferred: Sequence[str] = ("sam",)
                  ) -> SamOnnxFiles:
    """The ``<name>_encoder.onnx`` + ``<name>_decoder.onnx`` pair in an ``export-sam`` folder: the
    only one, else the first name of ``preferred`` present; ``ValueError`` naming what is there."""
    folder = Path(directory)
    if not folder.is_dir():
        raise ValueError(f"SAM ONNX folder {folder} does not exist")
    suffix = "_encoder.onnx"
    names = sorted(p.name[:-len(suffix)] for p in folder.glob(f"*{suffix}")
                   if (folder / f"{p.name[:-len(suffix)]}_decoder.onnx").is_file())
    if not names:
        raise ValueError(f"SAM ONNX folder {folder} holds no <name>_encoder.onnx + "
                         f"<name>_decoder.onnx pair (write one with `depth-perception export-sam "
                         f"-o {folder}`)")
    if len(names) == 1:
        name = names[0]
    else:
        found = [n for n in preferred if n in names]
        if not found:
            raise ValueError(f"SAM ONNX folder {folder} holds several exports ({', '.join(names)}) "
                             f"and none is named {' or '.join(preferred)}: keep one")
        name = found[0]
    return SamOnnxFiles(folder / f"{name}_encoder.onnx", folder / f"{name}_decoder.onnx")


def cached_sam_onnx(model: str, checkpoint: str | os.PathLike[str],
                    cache_dir: str | os.PathLike[str] | None = None,
                    log: Callable[[str], None] | None = None) -> SamOnnxFiles:
    """The ONNX export of a SAM checkpoint, kept in the engine cache under
    ``sam_onnx/<model>-<16 hex of the checkpoint's sha256>/``: exported (and checked against torch)
    on first use, found there afterwards. Concurrent first uses export once (a lock)."""
    cfg = get_config(model)
    ckpt = Path(checkpoint)
    if not ckpt.is_file():
        raise SamWeightsError(f"SAM checkpoint not found: {ckpt}")
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    safe = re.sub(r"[^A-Za-z0-9_-]+", "_", cfg.name)
    folder = root / "sam_onnx" / f"{safe}-{sha256_file(ckpt)[:16]}"
    files = SamOnnxFiles(folder / f"{safe}_encoder.onnx", folder / f"{safe}_decoder.onnx")

    def present() -> bool:
        return files.encoder.is_file() and files.decoder.is_file()

    if present():
        return files
    with build_lock(folder / "export"):
        if present():  # another process exported it while we waited
            return files
        from .sam import build_sam_model
        from .sam_onnx import export_sam_onnx

        (log or _LOG.warning)(f"exporting SAM {cfg.name} from {ckpt} to ONNX in {folder} "
                              "(first use only; this can take minutes)")
        exported: SamOnnxFiles = export_sam_onnx(build_sam_model(cfg, ckpt), folder, name=safe)
        return exported


__all__ = [
    "DEFAULT_DECODER_PRECISION",
    "DEFAULT_ENCODER_PRECISION",
    "DecoderProfile",
    "SamEngineSpec",
    "SamTensorRTSegmenter",
    "cached_sam_onnx",
    "check_tensorrt_ready",
    "decoder_validation_feeds",
    "find_sam_onnx",
    "onnx_input_shapes",
    "sam_engine_specs",
]
