"""``depth-perception export`` (a depth model to ONNX) and ``depth-perception export-sam``
(Segment Anything's encoder and decoder to ONNX, optionally on to TensorRT engines)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import CliError


def add_export_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "export", help="export a depth model to ONNX",
        description="Write an ONNX graph: input 'pixel_values' (N x 3 x H x W float32, normalised), "
        "output 'predicted_depth' (N x H x W). With --dynamic, N, H and W are free (H, W multiples of "
        "the model's patch multiple); the export is checked against torch at a second size and "
        "aspect ratio before it is written.",
    )
    p.add_argument("--model", required=True, help="model name (see `depth-perception models`)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--weights", help="local folder, .safetensors, .pth, or a hub id")
    src.add_argument("--random-init", action="store_true",
                     help="real architecture with random weights (benchmarks, plumbing)")
    p.add_argument("--output", "-o", required=True, help="output .onnx file")
    p.add_argument("--dynamic", action="store_true", help="dynamic batch, height and width")
    p.add_argument("--tensorrt", metavar="VERSION",
                   help="the TensorRT that will build engines from the graph: 8.5 (JetPack 5.1), "
                   "8.6, 10.3 (JetPack 6)...; default: the installed one, else 8.5, whose graph "
                   "every TensorRT >= 8.5 parses. Sets the default opset and, for 8.5, writes "
                   "LayerNormalization as the elementary ops it stands for")
    p.add_argument("--opset", type=int, help="ONNX opset (>= 17; default: what --tensorrt parses, "
                   "18 for TensorRT 10, else 17)")
    p.add_argument("--height", type=int, help="sample/fixed input height (default: the model's size)")
    p.add_argument("--width", type=int, help="sample/fixed input width (default: 4:3 of the height)")
    p.add_argument("--int8", action="store_true",
                   help="also write <output>.int8.onnx (dynamic int8 quantisation for CPUs)")
    return p


def cmd_export(args: argparse.Namespace) -> int:
    from ..depth.engine_onnx_ops import describe_unsupported, unsupported_ops
    from ..depth.estimator import width_4_3
    from ..depth.onnx_export import export_onnx, external_data_path, target_tensorrt
    from ..depth.tensorrt_import import parse_tensorrt_version
    from ..depth.onnxruntime_backend import quantize_int8
    from ..depth.weights import build_model
    from ..depth.zoo import get_spec

    spec = get_spec(args.model)
    if not spec.exportable:
        raise ValueError(f"model {spec.name} cannot be exported to ONNX ({spec.family}: torch only)")
    out = Path(args.output)
    if out.suffix != ".onnx":
        raise ValueError(f"--output must end in .onnx, got {out}")
    if args.tensorrt is not None and parse_tensorrt_version(args.tensorrt) < (8, 5):
        raise ValueError(f"--tensorrt {args.tensorrt}: TensorRT before 8.5 is not supported")
    tensorrt = target_tensorrt(args.tensorrt)
    print(f"model {spec.name}: licence {spec.licence}", file=sys.stderr)
    h = args.height or spec.input_size
    w = args.width or (h if not spec.dynamic_size else width_4_3(h, spec.patch_multiple))
    if spec.dynamic_size and (h % spec.patch_multiple or w % spec.patch_multiple):
        raise ValueError(f"--height/--width must be multiples of {spec.patch_multiple} for {spec.name}")
    model = build_model(spec, weights=args.weights, random_init=args.random_init)
    path = export_onnx(model, out, h, w, dynamic=args.dynamic, opset=args.opset, spec=spec,
                       tensorrt=tensorrt)
    shape = "N x 3 x H x W (dynamic)" if args.dynamic and spec.dynamic_size else f"1 x 3 x {h} x {w}"
    print(f"wrote {path} (input pixel_values {shape}, checked against torch; for TensorRT "
          f">= {tensorrt})")
    found = unsupported_ops(path, tensorrt)
    if found:  # still a good ONNX Runtime model; say so now, not minutes into an engine build
        print(f"warning: {describe_unsupported(found, tensorrt)}: this graph runs on ONNX Runtime "
              "and torch, not TensorRT", file=sys.stderr)
    if external_data_path(path).is_file():
        print(f"wrote {external_data_path(path)} (its weights, over protobuf's 2 GB limit: keep the "
              "two files together)")
    if args.int8:
        q = quantize_int8(path, path.with_suffix(".int8.onnx"))
        print(f"wrote {q} (int8 dynamic quantisation)")
    return 0


def add_export_sam_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "export-sam",
        help="export Segment Anything's encoder and decoder to ONNX",
        description="Writes <output>/<name>_encoder.onnx and _decoder.onnx, checked against torch. "
        "The decoder stops at low-resolution logits; the crop and upscale to the frame happen "
        "outside the graph, so masks stay correct at every image size and aspect ratio.",
    )
    p.add_argument("--model", default="vit_b", choices=["vit_b", "vit_l", "vit_h", "tiny"])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="local SAM checkpoint (sam_vit_*.pth)")
    src.add_argument("--random-init", action="store_true", help="random weights (benchmarks)")
    p.add_argument("--output", "-o", required=True, help="output folder")
    p.add_argument("--name", default="sam")
    p.add_argument("--engine", nargs="?", const="fp16", choices=["fp16", "fp32"],
                   metavar="PRECISION",
                   help="then build both TensorRT engines (encoder at PRECISION: fp16, the "
                   "default, or fp32; decoder fp32), check them against ONNX Runtime and cache "
                   "them where the node finds them (needs TensorRT and an NVIDIA GPU)")
    return p


def cmd_export_sam(args: argparse.Namespace) -> int:
    from ..segmentation.sam import build_sam_model
    from ..segmentation.sam_onnx import export_sam_onnx

    if args.engine:  # fail before the export, not after minutes of it
        from ..depth.tensorrt_backend import TensorRTUnavailableError
        from ..segmentation.sam_tensorrt import check_tensorrt_ready

        try:
            check_tensorrt_ready()
        except TensorRTUnavailableError as exc:
            raise CliError(f"--engine: {exc}") from exc
    model = build_sam_model(args.model, None if args.random_init else args.checkpoint)
    files = export_sam_onnx(model, args.output, name=args.name)
    print(f"wrote {files}")
    if args.engine:
        from ..segmentation.sam_tensorrt import SamTensorRTSegmenter

        with SamTensorRTSegmenter(files.encoder, files.decoder,
                                  encoder_precision=args.engine) as sam:
            for what, backend in (("encoder", sam.encoder_backend),
                                  ("decoder", sam.decoder_backend)):
                art = backend.artifact
                state = "built" if art.built else "up to date"
                check = ("" if art.report is None else
                         f"; checked against ONNX Runtime: worst {art.report.worst.describe()}")
                print(f"{what} engine {state}: {art.engine_path} ({art.key.precision}{check})")
    return 0
