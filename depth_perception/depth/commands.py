"""``depth-perception`` subcommands of the depth engine: ``models``, ``export`` and the monocular
options of ``predict``. cli.py wires these in:

    add_models_parser(sub); add_export_parser(sub); add_monocular_arguments(predict_parser)
    COMMANDS.update(models=cmd_models, export=cmd_export)
    estimator = estimator_from_args(args)   # in predict, when --model is given
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .zoo import list_specs, missing_requirements


def add_models_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "models", help="list the monocular depth models",
        description="The model zoo: family, output (relative inverse depth or metres), default input "
        "size and patch multiple, normalisation and licence. '*_tiny' models are the same "
        "architectures with tiny random weights, for tests only.",
    )
    p.add_argument("--tiny", action="store_true", help="also list the *_tiny test twins")
    p.add_argument("--verbose", "-v", action="store_true", help="normalisation, hub id, description")
    return p


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
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18, >= 17)")
    p.add_argument("--height", type=int, help="sample/fixed input height (default: the model's size)")
    p.add_argument("--width", type=int, help="sample/fixed input width (default: 4:3 of the height)")
    p.add_argument("--int8", action="store_true",
                   help="also write <output>.int8.onnx (dynamic int8 quantisation for CPUs)")
    return p


def add_monocular_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``predict`` for monocular models (it already has --model, --weights, --backend)."""
    p.add_argument("--random-init", action="store_true",
                   help="run --model with random weights (plumbing/benchmarks; depth is meaningless)")
    p.add_argument("--input-size", type=int, help="network input size (shorter side; model default)")
    p.add_argument("--onnx", help="ONNX file for --backend onnxruntime/tensorrt")
    p.add_argument("--engine", help="TensorRT engine for --backend tensorrt")
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16", "int8"],
                   help="torch: fp32/bf16/fp16; onnxruntime: fp32/int8; tensorrt: fp32/fp16/int8")
    p.add_argument("--device", help="torch device, e.g. cpu or cuda:0 (default: cuda if present)")


def estimator_from_args(args: argparse.Namespace) -> Any:
    from .estimator import DepthEstimator

    return DepthEstimator(
        args.model, weights=getattr(args, "weights", None), backend=getattr(args, "backend", "auto"),
        device=getattr(args, "device", None), random_init=getattr(args, "random_init", False),
        input_size=getattr(args, "input_size", None), onnx_path=getattr(args, "onnx", None),
        engine_path=getattr(args, "engine", None), precision=getattr(args, "precision", "fp32"),
    )


def format_models(tiny: bool = False, verbose: bool = False) -> str:
    rows = [("NAME", "FAMILY", "OUTPUT", "INPUT", "PATCH", "LICENCE")]
    notes = []
    for s in list_specs(include_tiny=tiny):
        out = s.output if s.max_depth_m is None else f"{s.output} (<= {s.max_depth_m:g} m)"
        if s.family == "marigold":
            out = "relative_depth"
        size = f"{s.input_size}" + (" fixed" if s.resize_mode == "fixed" else "")
        lic = s.licence
        missing = missing_requirements(s)
        if missing:
            lic += f"  [unavailable: pip install {' '.join(missing)}]"
        rows.append((s.name, s.family, out, size, str(s.patch_multiple), lic))
        if verbose:
            notes.append(f"{s.name}: {s.description}; mean {s.mean} std {s.std}; hub {s.hub_id or '-'}"
                         f"; onnx {'yes' if s.exportable else 'no (torch only)'}")
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:-1], widths)) + "  " + r[-1] for r in rows]
    return "\n".join(lines + ([""] + notes if notes else []))


def cmd_models(args: argparse.Namespace) -> int:
    print(format_models(tiny=args.tiny, verbose=args.verbose))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .estimator import width_4_3
    from .onnx_export import export_onnx
    from .onnxruntime_backend import quantize_int8
    from .weights import build_model
    from .zoo import get_spec

    spec = get_spec(args.model)
    if not spec.exportable:
        raise ValueError(f"model {spec.name} cannot be exported to ONNX ({spec.family}: torch only)")
    out = Path(args.output)
    if out.suffix != ".onnx":
        raise ValueError(f"--output must end in .onnx, got {out}")
    print(f"model {spec.name}: licence {spec.licence}", file=sys.stderr)
    h = args.height or spec.input_size
    w = args.width or (h if not spec.dynamic_size else width_4_3(h, spec.patch_multiple))
    if spec.dynamic_size and (h % spec.patch_multiple or w % spec.patch_multiple):
        raise ValueError(f"--height/--width must be multiples of {spec.patch_multiple} for {spec.name}")
    model = build_model(spec, weights=args.weights, random_init=args.random_init)
    path = export_onnx(model, out, h, w, dynamic=args.dynamic, opset=args.opset, spec=spec)
    shape = "N x 3 x H x W (dynamic)" if args.dynamic and spec.dynamic_size else f"1 x 3 x {h} x {w}"
    print(f"wrote {path} (input pixel_values {shape}, checked against torch)")
    if args.int8:
        q = quantize_int8(path, path.with_suffix(".int8.onnx"))
        print(f"wrote {q} (int8 dynamic quantisation)")
    return 0
