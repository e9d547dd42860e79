"""SAM on ONNX Runtime: encoder and decoder exported to ONNX, masks correct for every aspect ratio.

The trap. ``segment_anything.utils.onnx.SamOnnxModel`` puts the mask post-processing in the graph:
upscale to 1024², crop to the resized image (``int(prepadded_size[0])``), upscale to the original
size. Tracing turns that ``int()`` into a constant taken from the *dummy* ``orig_im_size``, so a
decoder exported with a 4:3 dummy crops every 16:9 (or portrait) frame wrongly, silently.

Here the decoder graph stops at the low-resolution logits of all four mask tokens (its inputs are
only embeddings and prompts, dynamic in the number of prompts and points); the mask choice,
the crop to *this* frame's resized size and the upscale happen outside the graph, in numpy
(:func:`.sam.postprocess_masks`), exactly as the torch path does them. The encoder graph takes the
normalised, padded SxS image (fixed S: SAM's encoder has one input size).

Files: ``<name>_encoder.onnx`` and ``<name>_decoder.onnx``; TensorRT engines can be built from them
with the depth engine's cache (the encoder is where the time goes).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .base import SegmentationError
from .sam import ImageEmbedding, SamBase, SamConfig, preprocess_image

ENCODER_INPUT = "image"
ENCODER_OUTPUT = "image_embeddings"
DECODER_INPUTS = ("image_embeddings", "point_coords", "point_labels")
DECODER_OUTPUTS = ("low_res_masks", "iou_predictions")
DEFAULT_OPSET = 18


class SamExportError(SegmentationError):
    """Export failed or the exported graph disagrees with torch."""


@dataclass(frozen=True)
class SamOnnxFiles:
    encoder: Path
    decoder: Path


def _decoder_module(sam: Any) -> Any:
    import torch
    from segment_anything.utils.onnx import SamOnnxModel

    class DecoderForExport(torch.nn.Module):
        """Prompts (already in the model's input frame, ONNX point form) → low-res logits of all
        mask tokens + predicted IoUs. No mask input (the node never feeds one) and no crop."""

        def __init__(self) -> None:
            super().__init__()
            # SamOnnxModel's point embedding is the traceable form of the prompt encoder's
            self.helper = SamOnnxModel(sam, return_single_mask=False)
            self.sam = sam

        def forward(self, image_embeddings, point_coords, point_labels):
            pe = self.sam.prompt_encoder
            sparse = self.helper._embed_points(point_coords, point_labels)
            dense = pe.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(
                point_coords.shape[0], -1, image_embeddings.shape[2], image_embeddings.shape[3])
            return self.sam.mask_decoder.predict_masks(
                image_embeddings=image_embeddings, image_pe=pe.get_dense_pe(),
                sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense)

    return DecoderForExport().eval()


def _export(module: Any, args: tuple, path: Path, input_names, output_names, dynamic_shapes, opset: int,
            external_data: bool, optimize: bool) -> None:
    import torch

    try:
        with torch.no_grad():
            program = torch.onnx.export(module, args, dynamo=True, opset_version=opset,
                                        input_names=list(input_names), output_names=list(output_names),
                                        dynamic_shapes=dynamic_shapes, verbose=False, optimize=optimize,
                                        external_data=external_data)
        if program is None:
            raise RuntimeError("torch.onnx.export returned no program")
        program.save(str(path), external_data=external_data)
    except Exception as exc:  # noqa: BLE001 - exporter failures come in many types
        raise SamExportError(f"SAM ONNX export of {path.name} failed: {type(exc).__name__}: {exc}") from exc


def export_sam_onnx(model: Any, out_dir: str | os.PathLike, name: str = "sam", opset: int = DEFAULT_OPSET,
                    check: bool = True, tolerance: float = 1e-3, optimize: bool = True) -> SamOnnxFiles:
    """Export a ``segment_anything`` Sam to ``<out_dir>/<name>_encoder.onnx`` and ``_decoder.onnx``.

    The decoder is dynamic in the number of prompts and of points per prompt. ``check`` runs both
    graphs in ONNX Runtime against torch (a random image, prompts of two forms) and raises
    :class:`SamExportError` (writing nothing) when the largest error exceeds ``tolerance`` x the
    output range. ``optimize`` runs onnxscript's graph optimiser (smaller files; ONNX Runtime
    optimises at load time anyway).
    """
    import torch

    model = model.eval().float().cpu()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    S = int(model.image_encoder.img_size)
    e = S // int(model.image_encoder.patch_embed.proj.kernel_size[0])
    C = int(model.prompt_encoder.embed_dim)
    big = sum(p.numel() * 4 for p in model.parameters()) > 1.5e9  # protobuf's 2 GB limit: vit_h
    gen = torch.Generator().manual_seed(0)
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        enc_tmp, dec_tmp = Path(tmp) / f"{name}_encoder.onnx", Path(tmp) / f"{name}_decoder.onnx"
        _export(model.image_encoder, (torch.randn(1, 3, S, S, generator=gen),), enc_tmp,
                [ENCODER_INPUT], [ENCODER_OUTPUT], None, opset, big, optimize)
        dec = _decoder_module(model)
        d = torch.export.Dim.DYNAMIC
        # sample batch 2 and 3 points: torch.export specialises dimensions of size 1
        args = (torch.randn(1, C, e, e, generator=gen), torch.rand(2, 3, 2, generator=gen) * S,
                torch.tensor([[1.0, 2.0, 3.0], [0.0, 1.0, -1.0]]))
        _export(dec, args, dec_tmp, DECODER_INPUTS, DECODER_OUTPUTS,
                {"image_embeddings": None, "point_coords": {0: d, 1: d}, "point_labels": {0: d, 1: d}},
                opset, False, optimize)
        if check:
            err = _check(model, dec, enc_tmp, dec_tmp)
            if not err <= tolerance:
                raise SamExportError(f"exported SAM disagrees with torch: relative error {err:.2e} > {tolerance:.0e}")
        files = SamOnnxFiles(out / enc_tmp.name, out / dec_tmp.name)
        for f in Path(tmp).iterdir():  # the graphs plus any external-data files
            os.replace(f, out / f.name)
    return files


def _check(model: Any, dec: Any, enc_path: Path, dec_path: Path) -> float:
    import onnxruntime as ort
    import torch

    S = int(model.image_encoder.img_size)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(1, 3, S, S, generator=gen)
    enc = ort.InferenceSession(str(enc_path), providers=["CPUExecutionProvider"])
    decs = ort.InferenceSession(str(dec_path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        ref_emb = model.image_encoder(x)
    got_emb = enc.run([ENCODER_OUTPUT], {ENCODER_INPUT: x.numpy()})[0]
    worst = _rel(got_emb, ref_emb.numpy())
    for b, n in ((1, 1), (3, 4)):  # other batch / point counts than the export's sample
        coords = torch.rand(b, n, 2, generator=gen) * S
        labels = torch.randint(-1, 4, (b, n), generator=gen).float()
        with torch.no_grad():
            ref = dec(ref_emb, coords, labels)
        got = decs.run(list(DECODER_OUTPUTS), {"image_embeddings": ref_emb.numpy(),
                                               "point_coords": coords.numpy(), "point_labels": labels.numpy()})
        worst = max(worst, _rel(got[0], ref[0].numpy()), _rel(got[1], ref[1].numpy()))
    return worst


def _rel(got: np.ndarray, ref: np.ndarray) -> float:
    if got.shape != ref.shape:
        return float("inf")
    return float(np.abs(got - ref).max() / max(float(np.ptp(ref)), 1e-12))


class SamOnnxSegmenter(SamBase):
    """SAM on ONNX Runtime (CPU, or CUDA when present). Same API and thread safety as
    :class:`.sam.SamSegmenter`: ``encode`` once per frame, ``decode`` once per prompt batch;
    ONNX Runtime sessions may be run from several threads."""

    backend = "onnxruntime"

    def __init__(self, encoder_path: str | os.PathLike, decoder_path: str | os.PathLike,
                 providers: list[str] | None = None, threads: int | None = None) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = int(threads)
        if providers is None:
            providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
                         if p in ort.get_available_providers()]
        self.sessions = []
        for path, ins, outs in ((encoder_path, [ENCODER_INPUT], [ENCODER_OUTPUT]),
                                (decoder_path, list(DECODER_INPUTS), list(DECODER_OUTPUTS))):
            p = Path(path)
            if not p.is_file():
                raise FileNotFoundError(f"SAM ONNX model not found: {p}")
            try:
                sess = ort.InferenceSession(str(p), opts, providers=providers)
            except Exception as exc:  # noqa: BLE001 - InvalidGraph, Fail, ...
                raise SamExportError(f"{p}: ONNX Runtime cannot load it: {exc}") from exc
            got_in = [i.name for i in sess.get_inputs()]
            got_out = [o.name for o in sess.get_outputs()]
            if got_in != ins or got_out != outs:
                raise SamExportError(f"{p}: expected inputs {ins} and outputs {outs}, got {got_in} and {got_out}"
                                     " (was it exported by depth_perception.segmentation.sam_onnx?)")
            self.sessions.append(sess)
        self.encoder, self.decoder = self.sessions
        size = self.encoder.get_inputs()[0].shape[-1]
        if not isinstance(size, int):
            raise SamExportError(f"{encoder_path}: encoder input must have a fixed size, got {size!r}")
        self.config = SamConfig("onnx", 0, 0, 0, (), image_size=size)

    def encode(self, rgb: np.ndarray) -> ImageEmbedding:
        x, input_size = preprocess_image(rgb, self.config.image_size)
        emb = self.encoder.run([ENCODER_OUTPUT], {ENCODER_INPUT: x})[0]
        return ImageEmbedding(emb, tuple(rgb.shape[:2]), input_size)

    def _run_decoder(self, embeddings: Any, coords: np.ndarray, labels: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
        low_all, iou_all = self.decoder.run(list(DECODER_OUTPUTS), {
            "image_embeddings": np.asarray(embeddings, np.float32), "point_coords": coords,
            "point_labels": labels})
        return low_all, iou_all
