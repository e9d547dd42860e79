"""``depth-perception build-engine``: build, check and cache a TensorRT engine offline.

    depth-perception build-engine --onnx model.onnx [--model NAME [--input-size N]] [--fp16]
        [--int8 --calib DIR] [--min HxW --opt HxW --max HxW] [--output PATH] [--workspace MB]

``add_build_engine_parser(sub)`` adds the sub-command and ``cmd_build_engine(args)`` runs it. With
``--model`` the shape profiles are the ones the estimator (and so the node) looks its engine up
with (:func:`depth_perception.depth.estimator.engine_profiles_for`), and int8 calibration uses the
model's own normalisation and layout
(:func:`depth_perception.depth.tensorrt_calibration.spec_preprocess`). Both import nothing heavy
until the command runs.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..depth.engine_cache import DEFAULT_TOLERANCE, InputProfile, ShapeProfile, format_hw, parse_hw
from .errors import CliError

if TYPE_CHECKING:
    from ..depth.tensorrt_backend import Precision, PreprocessFn

DEFAULT_OPT_HW = (518, 518)


def hw_arg(text: str) -> tuple[int, int]:
    """argparse type for ``HxW`` (pixels): ``518x518``, ``364x644``; ``518`` means 518x518."""
    try:
        return parse_hw(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_build_engine_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]"
                            ) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "build-engine",
        help="build a TensorRT engine from an exported ONNX model (needs an NVIDIA GPU)",
        description="Build a TensorRT engine from an ONNX file exported by `depth-perception "
        "export`, check it against ONNX Runtime on random inputs inside the shape profile (a "
        "mismatch is refused with the measured error), and store it in the engine cache "
        "(~/.cache/depth_perception/engines or $DEPTH_PERCEPTION_CACHE) or at --output. "
        "The node and `predict --backend tensorrt` find cached engines by themselves.",
    )
    p.add_argument("--onnx", required=True, type=Path, metavar="PATH", help="exported ONNX model")
    p.add_argument("--model", metavar="NAME",
                   help="the zoo model the ONNX file was exported from: its shape profiles (the "
                   "ones the node looks up) and, for --int8, its normalisation; needed by --int8")
    p.add_argument("--input-size", type=int, metavar="N",
                   help="with --model: the node's input_size (default: the model's own)")
    p.add_argument("--fp16", action="store_true", help="allow FP16 kernels (fastest on most GPUs)")
    p.add_argument("--int8", action="store_true",
                   help="INT8 with FP16 fallback; needs --calib (default precision: fp32)")
    p.add_argument("--calib", type=Path, metavar="DIR",
                   help="folder of representative images for int8 calibration")
    p.add_argument("--calib-images", type=int, default=256, metavar="N",
                   help="use at most N calibration images, evenly spread (default 256)")
    p.add_argument("--min", dest="min_hw", type=hw_arg, metavar="HxW",
                   help="smallest input size the engine accepts (default: the model's, else --opt)")
    p.add_argument("--opt", dest="opt_hw", type=hw_arg, metavar="HxW",
                   help="input size to tune for (default: the model's, else "
                   f"{format_hw(DEFAULT_OPT_HW)})")
    p.add_argument("--max", dest="max_hw", type=hw_arg, metavar="HxW",
                   help="largest input size the engine accepts (default: the model's, else --opt)")
    p.add_argument("--output", "-o", type=Path, metavar="PATH",
                   help="write the engine here (plus PATH's .json sidecar) instead of the cache")
    p.add_argument("--workspace", type=int, metavar="MB",
                   help="TensorRT workspace limit in MiB (default: TensorRT's, the GPU's memory)")
    p.add_argument("--cache-dir", type=Path, metavar="DIR", help="engine cache folder")
    p.add_argument("--device", type=int, default=0, help="CUDA device index (default 0)")
    p.add_argument("--no-validate", action="store_true",
                   help="skip the ONNX Runtime comparison (not recommended)")
    p.add_argument("--tolerance", type=float, metavar="REL",
                   help="accepted max error relative to the output range (default: "
                   + ", ".join(f"{k} {v:g}" for k, v in DEFAULT_TOLERANCE.items()) + ")")
    p.add_argument("--rebuild", action="store_true", help="build even if a matching engine exists")
    return p


@dataclass(frozen=True)
class BuildRequest:
    """A checked ``build-engine`` command line."""

    onnx: Path
    precision: Precision
    profile: ShapeProfile
    output: Path | None
    workspace_mb: int | None
    calib_dir: Path | None
    calib_images: int
    cache_dir: Path | None
    device: int
    validate: bool
    tolerance: float | None
    rebuild: bool
    #: the zoo model's name (``--model``), None for a graph of unknown origin
    model: str | None = None
    #: profiles of further inputs (Prompt Depth Anything's ``prompt_depth``), from the model
    extra_profiles: dict[str, InputProfile] = field(default_factory=dict)


def request_from_args(args: argparse.Namespace) -> BuildRequest:
    """Check option combinations; ``ValueError`` names the offending option."""
    precision: Precision = "int8" if args.int8 else "fp16" if args.fp16 else "fp32"
    if args.int8 and args.calib is None:
        raise ValueError("--int8 needs --calib DIR, a folder of representative images")
    if args.calib is not None and not args.int8:
        raise ValueError("--calib is only used with --int8")
    if args.calib_images <= 0:
        raise ValueError(f"--calib-images must be > 0, got {args.calib_images}")
    if args.workspace is not None and args.workspace <= 0:
        raise ValueError(f"--workspace must be > 0 MB, got {args.workspace}")
    if args.tolerance is not None and not args.tolerance > 0:
        raise ValueError(f"--tolerance must be > 0, got {args.tolerance}")
    if args.device < 0:
        raise ValueError(f"--device must be >= 0, got {args.device}")
    model: str | None = None
    extra: dict[str, InputProfile] = {}
    profile: ShapeProfile | None = None
    if args.model is not None:
        from ..depth.estimator import engine_profiles_for
        from ..depth.zoo import get_spec

        spec = get_spec(args.model)
        if not spec.exportable:
            raise ValueError(f"--model {spec.name} has no ONNX export ({spec.family}: torch only)")
        if args.input_size is not None and args.input_size <= 0:
            raise ValueError(f"--input-size must be > 0, got {args.input_size}")
        if args.input_size and spec.resize_mode == "short_side" and args.input_size % spec.patch_multiple:
            raise ValueError(f"--input-size {args.input_size} must be a multiple of "
                             f"{spec.patch_multiple} for {spec.name}")
        model = spec.name
        profile, extra = engine_profiles_for(spec, args.input_size)
    elif args.input_size is not None:
        raise ValueError("--input-size is only used with --model")
    elif args.int8:
        raise ValueError("--int8 needs --model NAME: calibration must see the inputs that model's "
                         "pre-processing makes (its normalisation and layout)")
    if profile is None or args.opt_hw or args.min_hw or args.max_hw:
        # explicit sizes replace the model's profile (and then name an engine the node would not
        # look up unless its input_size gives the same one)
        opt = args.opt_hw or (profile.opt_hw if profile is not None else DEFAULT_OPT_HW)
        lo, hi = args.min_hw or opt, args.max_hw or opt
        try:
            profile = ShapeProfile(lo, opt, hi)
        except ValueError as exc:
            raise ValueError(f"--min/--opt/--max: {exc}") from None
    return BuildRequest(
        onnx=args.onnx, precision=precision, profile=profile, output=args.output,
        workspace_mb=args.workspace, calib_dir=args.calib, calib_images=args.calib_images,
        cache_dir=args.cache_dir, device=args.device, validate=not args.no_validate,
        tolerance=args.tolerance, rebuild=args.rebuild, model=model, extra_profiles=extra)


def _console_logging() -> None:
    """Show the backend's progress lines (building..., built in ...) when nothing else logs."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("depth-perception: %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)


def cmd_build_engine(args: argparse.Namespace, preprocess: PreprocessFn | None = None,
                     preprocess_id: str | None = None) -> int:
    """Run ``build-engine``. Errors a user can fix are raised as ``ValueError`` or ``CliError``."""
    from ..depth.tensorrt_backend import (
        IMAGENET_PREPROCESS_ID,
        CalibrationData,
        TensorRTUnavailableError,
        ensure_engine,
        imagenet_preprocess,
        spec_preprocess,
    )
    from ..depth.zoo import get_spec

    req = request_from_args(args)
    if not req.onnx.is_file():
        raise CliError(f"--onnx {req.onnx}: no such file")
    _console_logging()
    calibration = None
    if req.precision == "int8" and req.calib_dir is not None:
        if preprocess is None and req.model is not None:
            preprocess, preprocess_id = spec_preprocess(get_spec(req.model))
        elif preprocess is None:
            preprocess, preprocess_id = imagenet_preprocess, IMAGENET_PREPROCESS_ID
        calibration = CalibrationData(
            directory=req.calib_dir, preprocess=preprocess,
            preprocess_id=preprocess_id or str(getattr(preprocess, "__qualname__", "custom")),
            max_images=req.calib_images)
    try:
        artifact = ensure_engine(
            req.onnx, precision=req.precision, profile=req.profile, cache_dir=req.cache_dir,
            output=req.output, device=req.device, workspace_mb=req.workspace_mb,
            calibration=calibration, validate=req.validate, tolerance=req.tolerance,
            rebuild=req.rebuild, extra_profiles=req.extra_profiles or None)
    except TensorRTUnavailableError as exc:
        raise CliError(str(exc)) from exc
    state = "built" if artifact.built else "up to date (use --rebuild to build again)"
    lines = [f"{state}: {artifact.engine_path}",
             f"  {req.precision}, input {req.profile.describe()}"
             + "".join(f", {n} {p.describe()}" for n, p in req.extra_profiles.items())
             + ", TensorRT "
             f"{artifact.key.tensorrt_version}, {artifact.key.gpu_name} "
             f"(sm_{artifact.key.compute_capability[0]}{artifact.key.compute_capability[1]})"]
    if artifact.calibration is not None:
        lines.append(f"  int8 {artifact.calibration.describe()}; found by any node asking for int8 "
                     "with this model and input size")
    if artifact.report is not None:
        lines.append(f"  checked against ONNX Runtime: worst {artifact.report.worst.describe()}")
    print("\n".join(lines))
    return 0
