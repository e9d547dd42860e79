"""The `depth-perception` command. Errors are one readable line on stderr and a non-zero exit."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import __version__

EXIT_USAGE = 2


class CliError(Exception):
    """An error the user can fix; printed as one line."""


def _add_predict(sub: argparse._SubParsersAction) -> None:
    from .files import DEPTH_FORMATS

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
    p.add_argument("--backend", default="auto", choices=["auto", "torch", "onnxruntime", "tensorrt"])
    p.add_argument("--stereo-right", metavar="PATH",
                   help="right images of a rectified stereo pair (same kind as --input)")
    p.add_argument("--baseline", type=float, help="stereo baseline in metres")
    p.add_argument("--focal", type=float, help="focal length fx in pixels")
    p.add_argument("--doffs", type=float, default=0.0,
                   help="principal point difference cx_right - cx_left in pixels (default 0)")
    p.add_argument("--min-depth", type=float, default=0.1, help="metres (default 0.1)")
    p.add_argument("--max-depth", type=float, default=20.0, help="metres (default 20)")
    from .depth.commands import add_monocular_arguments

    add_monocular_arguments(p)


def _add_demo(sub: argparse._SubParsersAction) -> None:
    from .demo import SCENES

    p = sub.add_parser(
        "demo",
        help="run the whole pipeline offline on bundled/generated data",
        description="Runs the pipeline on a generated tabletop scene or the Middlebury motorcycle "
        "stereo pair and writes depth (PNG + npy), a PLY cloud, a PNG panel and a rosbag2 (mcap).",
    )
    p.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    p.add_argument("--scene", choices=SCENES, default="tabletop")
    p.add_argument("--seed", type=int, default=0, help="tabletop scene seed")
    p.add_argument("--depth", choices=["auto", "model", "stereo"], default="auto",
                   help="model: the bundled monocular student, made metric with the stereo pair; "
                   "stereo: SGBM only; auto: model on tabletop, stereo on motorcycle")


def _add_bag(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bag",
        help="run the node's pipeline over a rosbag2 file",
        description="Reads a rosbag2 (mcap or sqlite3) with rosbags, synchronises the inputs like "
        "the node, runs the pipeline in timestamp order and writes every output topic with the "
        "original stamps. Broken or unknown messages are skipped and counted.",
    )
    p.add_argument("input", help="input rosbag2 folder (or .mcap/.db3 file)")
    p.add_argument("output", help="output rosbag2 folder (must not exist unless --overwrite)")
    p.add_argument("--config", help="node parameter file (config/*.yaml)")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="override a parameter, e.g. --set max_depth=3.0 (repeatable)")
    p.add_argument("--stereo", action="store_true", help="same as --set stereo=true")
    p.add_argument("--camera-ns", default="/camera",
                   help="namespace of image + camera_info (default /camera)")
    p.add_argument("--right-ns", help="namespace of the right camera (default CAMERA_NS/right)")
    p.add_argument("--image", default="image", help="image topic name in the namespace")
    p.add_argument("--masks", metavar="TOPIC",
                   help="instance-id mask topic (sets segmentation.source=topic)")
    p.add_argument("--detections", metavar="TOPIC",
                   help="vision_msgs/Detection2DArray topic: SAM prompts (segmentation.source sam) "
                   "or names of the --masks instances")
    p.add_argument("--sparse-depth", metavar="TOPIC",
                   help="registered depth image for metric.mode sparse_depth")
    p.add_argument("--lidar", metavar="TOPIC", help="PointCloud2 for metric.mode pointcloud")
    p.add_argument("--output-ns", default="/depth_perception", help="namespace of the outputs")
    p.add_argument("--storage", choices=["mcap", "sqlite3"], default="mcap")
    p.add_argument("--copy-inputs", action="store_true", help="also copy the input topics")
    p.add_argument("--overwrite", action="store_true")


def _add_export_sam(sub: argparse._SubParsersAction) -> None:
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


def cmd_export_sam(args: argparse.Namespace) -> int:
    from .segmentation.sam import build_sam_model
    from .segmentation.sam_onnx import export_sam_onnx

    if args.engine:  # fail before the export, not after minutes of it
        from .depth.tensorrt_backend import TensorRTUnavailableError
        from .segmentation.sam_tensorrt import check_tensorrt_ready

        try:
            check_tensorrt_ready()
        except TensorRTUnavailableError as exc:
            raise CliError(f"--engine: {exc}") from exc
    model = build_sam_model(args.model, None if args.random_init else args.checkpoint)
    files = export_sam_onnx(model, args.output, name=args.name)
    print(f"wrote {files}")
    if args.engine:
        from .segmentation.sam_tensorrt import SamTensorRTSegmenter

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


def _parse_value(text: str):
    import yaml

    return yaml.safe_load(text)


def cmd_bag(args: argparse.Namespace) -> int:
    from .config import load_parameters
    from .ros.bag import input_topics, process_bag

    params = load_parameters(args.config) if args.config else {}
    for item in args.set:
        if "=" not in item:
            raise CliError(f"--set expects NAME=VALUE, got {item!r}")
        name, value = item.split("=", 1)
        params[name.strip()] = _parse_value(value)
    if args.stereo:
        params["stereo"] = True
    if args.masks:
        params["segmentation.source"] = ["topic"]
    topics = input_topics(args.camera_ns, bool(params.get("stereo", False)), args.right_ns,
                          args.image, args.masks, args.detections, args.sparse_depth, args.lidar)
    summary = process_bag(args.input, args.output, params, topics, output_ns=args.output_ns,
                          storage=args.storage, copy_inputs=args.copy_inputs,
                          overwrite=args.overwrite)
    print(summary.table())
    print(f"output bag: {args.output}")
    return 0 if summary.frames_processed > 0 else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="depth-perception",
        description="Metric depth and point clouds of graspable objects from a colour camera.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _add_predict(sub)
    _add_demo(sub)
    _add_bag(sub)
    _add_export_sam(sub)
    from .depth.commands import add_export_parser, add_models_parser
    from .depth.trt_commands import add_build_engine_parser
    from .training.commands import add_distill_parser, add_train_parser

    add_train_parser(sub)
    add_distill_parser(sub)
    add_models_parser(sub)
    add_export_parser(sub)
    add_build_engine_parser(sub)
    return parser


def cmd_predict(args: argparse.Namespace) -> int:
    import numpy as np
    from tqdm import tqdm

    from .camera import CameraModel
    from .files import count_frames, iter_images, list_inputs, write_depth
    from .pipeline import Frame, Pipeline, PipelineConfig

    kind, paths = list_inputs(args.input)  # a missing input is the first thing to report
    if args.stereo_right is None:
        if not args.model:
            from .depth.zoo import DEFAULT_MODEL

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
    out = Path(args.output)
    if not single or out.suffix == "":
        out.mkdir(parents=True, exist_ok=True)

    pipeline = Pipeline(PipelineConfig(min_depth_m=args.min_depth, max_depth_m=args.max_depth))
    total = count_frames(args.input)
    lefts, rights = iter_images(args.input), iter_images(args.stereo_right)
    written = 0
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
        result = pipeline.process(Frame(left.rgb, cam, right_rgb=right.rgb, right_camera=right_cam))
        target = out if (single and out.suffix) else out / left.name
        written_path = write_depth(target, result.depth_m, args.format)
        written += 1
    print(f"wrote {written} depth image(s) to {written_path if single else out}")
    return 0


def _predict_monocular(args: argparse.Namespace) -> int:
    """Depth from a monocular network for every input frame. Metric models write metres; relative
    ones write their normalised inverse depth for png8/color (255 = near) and raw values for npy."""
    import numpy as np
    from tqdm import tqdm

    from .depth.commands import estimator_from_args
    from .files import count_frames, iter_images, list_inputs, write_depth, write_image
    from .visualize import colorize_depth

    kind, paths = list_inputs(args.input)
    single = kind == "image" and len(paths) == 1
    out = Path(args.output)
    if not single or out.suffix == "":
        out.mkdir(parents=True, exist_ok=True)
    estimator = estimator_from_args(args)
    written = out
    for item in tqdm(iter_images(args.input), total=count_frames(args.input), unit="frame",
                     disable=None):
        pred = estimator.predict(item.rgb)
        target = out if (single and out.suffix) else out / item.name
        if pred.kind == "metric":
            depth_m = pred.values.copy()
            depth_m[~np.isfinite(depth_m) | (depth_m < args.min_depth) |
                    (depth_m > args.max_depth)] = np.nan
            written = write_depth(target, depth_m, args.format)
            continue
        if args.format == "png16":
            raise CliError(f"{args.model} predicts relative depth; png16 (millimetres) needs a "
                           "metric model or a metric signal")
        # Relative inverse depth behaves like 1/z up to an affine map: pass a pseudo-depth so the
        # same writers apply (near stays bright); relative depth (Marigold) is near = small.
        v = pred.values.astype(np.float32)
        if args.format == "npy":
            written = target.with_suffix(".npy")
            written.parent.mkdir(parents=True, exist_ok=True)
            np.save(written, v)
            continue
        lo, hi = np.nanpercentile(v, [1, 99]) if np.isfinite(v).any() else (0.0, 1.0)
        t = np.clip((v - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
        near = t if pred.kind == "relative_inverse" else 1.0 - t
        gray = (1 + near * 254).round().astype(np.uint8)
        gray[~np.isfinite(v)] = 0
        written = target.with_suffix(".png")
        if args.format == "color":
            write_image(written, colorize_depth(1.0 / (0.05 + near)))
        else:
            write_image(written, gray)
    print(f"wrote depth for {args.input} to {written if single else out}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import format_report, run_demo

    report = run_demo(args.out, scene=args.scene, seed=args.seed, depth=args.depth)
    print(format_report(report))
    return 0


def _lazy(module: str, name: str):
    def run(args: argparse.Namespace) -> int:
        import importlib

        return getattr(importlib.import_module(module, __package__), name)(args)

    return run


COMMANDS = {
    "predict": cmd_predict,
    "demo": cmd_demo,
    "bag": cmd_bag,
    "export-sam": cmd_export_sam,
    "models": _lazy(".depth.commands", "cmd_models"),
    "export": _lazy(".depth.commands", "cmd_export"),
    "build-engine": _lazy(".depth.trt_commands", "cmd_build_engine"),
    "train": _lazy(".training.commands", "cmd_train"),
    "distill": _lazy(".training.commands", "cmd_distill"),
}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("depth-perception: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `depth-perception models | head`: the reader left, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:  # noqa: BLE001 - the CLI's contract is one line, not a traceback
        if args.debug or os.environ.get("DEPTH_PERCEPTION_DEBUG"):
            raise
        known = isinstance(exc, (CliError, ValueError, OSError, FileExistsError))
        text = str(exc) if known else f"{type(exc).__name__}: {exc} (rerun with --debug for details)"
        print(f"depth-perception {args.command}: error: {text}", file=sys.stderr)
        return EXIT_USAGE if known else 1


if __name__ == "__main__":
    sys.exit(main())
