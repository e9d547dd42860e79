"""``depth-perception predict``: a depth image for every frame of images, a folder, a glob or a video,
from a monocular model or a rectified stereo pair."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from .errors import CliError


def add_predict_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from ..files import DEPTH_FORMATS, MAX_PIXELS

    p = sub.add_parser(
        "predict",
        help="depth for images, a folder, a glob or a video",
        description="Write a depth image for every input frame, at the input's resolution. "
        "png8: 8-bit gray, 255 = near, 0 = far/invalid; png16: millimetres (0 = invalid); "
        "npy: float32 metres (NaN = invalid); color: colourised PNG.",
    )
    p.add_argument("--input", "-i", required=True, help="image, folder, glob ('imgs/*.png') or video")
    p.add_argument("--output", "-o", required=True,
                   help="output file (single image) or folder (several frames)")
    p.add_argument("--format", choices=DEPTH_FORMATS, default="png8")
    p.add_argument("--model", help="monocular depth model name (see the model zoo)")
    p.add_argument("--weights", help="local weights for --model")
    p.add_argument("--backend", default="auto",
                   choices=["auto", "torch", "onnxruntime", "openvino", "tensorrt"])
    p.add_argument("--stereo-right", metavar="PATH",
                   help="right images of a rectified stereo pair (same kind as --input)")
    p.add_argument("--baseline", type=float, help="stereo baseline in metres")
    p.add_argument("--focal", type=float,
                   help="focal length fx in pixels (stereo; also the metric scale of Depth Pro "
                        "and Depth Anything 3 Metric)")
    p.add_argument("--doffs", type=float, default=0.0,
                   help="principal point difference cx_right - cx_left in pixels (default 0)")
    p.add_argument("--min-depth", type=float, default=0.1, help="metres (default 0.1)")
    p.add_argument("--max-depth", type=float, default=20.0, help="metres (default 20)")
    p.add_argument("--max-pixels", type=float, default=MAX_PIXELS,
                   help=f"refuse input frames over this many pixels before decoding them "
                   f"(default {MAX_PIXELS:.0f})")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing output (it is replaced only once the run succeeds)")
    add_monocular_arguments(p)
    return p


@contextmanager
def _outputs(out: Path, single: bool, fmt: str,
             overwrite: bool) -> Iterator[tuple[Callable[[str], Path], Path]]:
    """(frame name → path to write its depth to, the final output). Everything is written under a
    temporary name beside ``out`` and renamed when the run succeeds: a failed run leaves nothing."""
    from ..files import atomic_output, depth_suffix

    if single and out.suffix:
        final = out.with_suffix(depth_suffix(fmt))
        with atomic_output(final, overwrite) as tmp:
            yield (lambda _name: tmp), final
        return
    with atomic_output(out, overwrite) as tmp:
        tmp.mkdir()
        yield (lambda name: tmp / name), out


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
    from ..depth.estimator import DepthEstimator

    return DepthEstimator(
        args.model, weights=getattr(args, "weights", None), backend=getattr(args, "backend", "auto"),
        device=getattr(args, "device", None), random_init=getattr(args, "random_init", False),
        input_size=getattr(args, "input_size", None), onnx_path=getattr(args, "onnx", None),
        engine_path=getattr(args, "engine", None), precision=getattr(args, "precision", "fp32"),
    )


def cmd_predict(args: argparse.Namespace) -> int:
    import numpy as np
    from tqdm import tqdm

    from ..camera import CameraModel
    from ..files import count_frames, iter_images, list_inputs, write_depth
    from ..pipeline import Frame, Pipeline, PipelineConfig

    kind, paths = list_inputs(args.input)  # a missing input is the first thing to report
    if args.stereo_right is None:
        if not args.model:
            from ..depth.zoo import DEFAULT_MODEL

            # The bundled student needs no download; it is synthetic-domain, and says so.
            print(f"no --model given: using the bundled {DEFAULT_MODEL} (synthetic tabletop "
                  "domain; give --model/--weights for real scenes)", file=sys.stderr)
            args.model = DEFAULT_MODEL
        return _predict_monocular(args)
    if args.baseline is None or args.baseline <= 0:
        raise CliError("stereo needs --baseline in metres (> 0)")
    if args.focal is None or args.focal <= 0:
        raise CliError("stereo needs --focal, the focal length fx in pixels (> 0)")

    kind_r, paths_r = list_inputs(args.stereo_right)
    if kind != kind_r:
        raise CliError(f"--input is a {kind} but --stereo-right is a {kind_r}")
    if kind == "image" and len(paths) != len(paths_r):
        raise CliError(f"--input has {len(paths)} images but --stereo-right has {len(paths_r)}")

    single = kind == "image" and len(paths) == 1
    pipeline = Pipeline(PipelineConfig(min_depth_m=args.min_depth, max_depth_m=args.max_depth))
    total = count_frames(args.input)
    max_pixels = int(args.max_pixels)
    lefts, rights = iter_images(args.input, max_pixels), iter_images(args.stereo_right, max_pixels)
    written = 0
    no_depth: dict[str, int] = {}  # why a frame had no valid depth -> frames
    with _outputs(Path(args.output), single, args.format, args.overwrite) as (target, final):
        for left, right in tqdm(zip(lefts, rights), total=total, unit="frame", disable=None):
            if left.rgb.shape != right.rgb.shape:
                raise CliError(
                    f"{left.name}: left is {left.rgb.shape[1]}x{left.rgb.shape[0]} but right "
                    f"{right.name} is {right.rgb.shape[1]}x{right.rgb.shape[0]}"
                )
            h, w = left.rgb.shape[:2]
            cam = CameraModel.from_intrinsics(args.focal, args.focal, (w - 1) / 2, (h - 1) / 2, w, h)
            right_cam = CameraModel(
                width=w, height=h, K=cam.K,
                P=np.array([[args.focal, 0, (w - 1) / 2 + args.doffs, -args.focal * args.baseline],
                            [0, args.focal, (h - 1) / 2, 0], [0, 0, 1, 0]]),
            )
            result = pipeline.process(Frame(left.rgb, cam, right_rgb=right.rgb,
                                             right_camera=right_cam))
            write_depth(target(left.name), result.depth_m, args.format)
            written += 1
            why = result.why_no_depth()
            if why:
                no_depth[why] = no_depth.get(why, 0) + 1
        if written and sum(no_depth.values()) == written:
            raise CliError(f"no frame produced valid depth ({next(iter(no_depth))})")
    print(f"wrote {written} depth image(s) to {final}")
    for why, n in no_depth.items():
        print(f"warning: {n} frame(s) without valid depth: {why}", file=sys.stderr)
    return 0


def _predict_monocular(args: argparse.Namespace) -> int:
    """Depth from a monocular network for every input frame (see :func:`_write_prediction`)."""
    from tqdm import tqdm

    from ..files import count_frames, iter_images, list_inputs

    kind, paths = list_inputs(args.input)
    single = kind == "image" and len(paths) == 1
    estimator = estimator_from_args(args)
    # the metric scale of Depth Pro (else its FOV head) and Depth Anything 3 Metric comes from fx
    inputs = {"fx_px": args.focal} if args.focal and estimator.spec.takes_focal else {}
    frames = iter_images(args.input, int(args.max_pixels))
    with _outputs(Path(args.output), single, args.format, args.overwrite) as (target, final):
        for item in tqdm(frames, total=count_frames(args.input), unit="frame", disable=None):
            _write_prediction(args, estimator.predict(item.rgb, **inputs), target(item.name))
    print(f"wrote depth for {args.input} to {final}")
    return 0


def _write_prediction(args: argparse.Namespace, pred: Any, target: Path) -> None:
    """A network's output to ``target``: metric models write metres; relative ones write their
    normalised inverse depth for png8/color (255 = near) and raw values for npy."""
    import numpy as np

    from ..files import write_depth, write_image
    from ..visualize import colorize_depth

    if pred.kind == "metric":
        depth_m = pred.values.copy()
        depth_m[~np.isfinite(depth_m) | (depth_m < args.min_depth) |
                (depth_m > args.max_depth)] = np.nan
        write_depth(target, depth_m, args.format)
        return
    if args.format == "png16":
        raise CliError(f"{args.model} predicts relative depth; png16 (millimetres) needs a "
                       "metric model or a metric signal")
    # Relative inverse depth behaves like 1/z up to an affine map: pass a pseudo-depth so the
    # same writers apply (near stays bright); relative depth (Marigold) is near = small.
    v = pred.values.astype(np.float32)
    if args.format == "npy":
        np.save(target.with_suffix(".npy"), v)
        return
    lo, hi = np.nanpercentile(v, [1, 99]) if np.isfinite(v).any() else (0.0, 1.0)
    t = np.clip((v - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
    near = t if pred.kind == "relative_inverse" else 1.0 - t
    gray = (1 + near * 254).round().astype(np.uint8)
    gray[~np.isfinite(v)] = 0
    if args.format == "color":
        write_image(target.with_suffix(".png"), colorize_depth(1.0 / (0.05 + near)))
    else:
        write_image(target.with_suffix(".png"), gray)
