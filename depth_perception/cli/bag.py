"""``depth-perception bag``: the node's pipeline over a rosbag2 file, offline."""

from __future__ import annotations

import argparse
from typing import Any

from .errors import CliError


def add_bag_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
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
    return p


def _parse_value(text: str) -> Any:
    import yaml

    return yaml.safe_load(text)


def cmd_bag(args: argparse.Namespace) -> int:
    from ..config import load_parameters
    from ..ros.bag import input_topics, process_bag

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
