"""``depth-perception bag``: the node's pipeline over a rosbag2 file, offline."""

from __future__ import annotations

import argparse
from typing import Any

from .errors import CliError


def add_bag_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "bag",
        help="run the node's pipeline over a rosbag2 or ROS 1 bag",
        description="Reads a rosbag2 (mcap or sqlite3) or a ROS 1 .bag with rosbags, runs the "
        "node's pipeline in log-time order and writes every output topic with the original stamps "
        "to a new rosbag2. The camera is found without flags when the bag has one: an Image topic "
        "`.../image*` or a CompressedImage `.../image*/compressed` with `camera_info` beside it. "
        "Each image takes the latest CameraInfo of its size (camera_info.pairing latest; "
        "--set camera_info.pairing=exact pairs by stamp). Broken or unknown messages are skipped "
        "and counted. Exit status 2, with one line on stderr and no output bag, when the bag "
        "cannot be used or no frame produced valid depth.",
    )
    p.add_argument("input", help="input bag: rosbag2 folder, .mcap, .db3 or ROS 1 .bag")
    p.add_argument("output", help="output rosbag2 folder (must not exist unless --overwrite)")
    p.add_argument("--config", help="node parameter file (config/*.yaml)")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="override a parameter, e.g. --set max_depth=3.0 (repeatable)")
    p.add_argument("--stereo", action="store_true", help="same as --set stereo=true")
    p.add_argument("--camera-ns", metavar="NS",
                   help="look for the camera under NS only (default: anywhere in the bag)")
    p.add_argument("--image", metavar="TOPIC",
                   help="colour image topic (Image or CompressedImage), absolute or relative to "
                   "--camera-ns (default: found)")
    p.add_argument("--camera-info", metavar="TOPIC",
                   help="CameraInfo topic (default: camera_info beside the image)")
    p.add_argument("--right-ns", metavar="NS",
                   help="namespace of the right camera with --stereo (default: CAMERA_NS/right)")
    p.add_argument("--masks", metavar="TOPIC",
                   help="instance-id mask topic (sets segmentation.source=topic)")
    p.add_argument("--detections", metavar="TOPIC",
                   help="vision_msgs/Detection2DArray topic: SAM prompts (segmentation.source sam) "
                   "or names of the --masks instances")
    p.add_argument("--sparse-depth", metavar="TOPIC",
                   help="registered depth image for metric.mode sparse_depth")
    p.add_argument("--lidar", metavar="TOPIC", help="PointCloud2 for metric.mode pointcloud")
    p.add_argument("--odometry", metavar="TOPIC",
                   help="nav_msgs/Odometry for metric.mode motion (scale from the robot's own "
                   "motion; the camera extrinsic is metric.motion.T_base_camera)")
    p.add_argument("--output-ns", default="/depth_perception", help="namespace of the outputs")
    p.add_argument("--storage", choices=["mcap", "sqlite3"], default="mcap")
    p.add_argument("--copy-inputs", action="store_true", help="also copy the input topics")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output bag")
    p.add_argument("--per-frame", action="store_true",
                   help="print each frame's metric scale and its source after the summary")
    return p


def _parse_value(text: str) -> Any:
    import yaml

    return yaml.safe_load(text)


def cmd_bag(args: argparse.Namespace) -> int:
    import sys

    from ..config import load_parameters, validate_parameters
    from ..ros.bag import NoValidDepth, bag_topics, find_topics, process_bag

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
    problem = validate_parameters(params)
    if problem:
        raise CliError(problem)
    topics = find_topics(bag_topics(args.input), bool(params.get("stereo", False)),
                         args.camera_ns, args.image, args.camera_info, args.right_ns, args.masks,
                         args.detections, args.sparse_depth, args.lidar, args.odometry)
    try:
        summary = process_bag(args.input, args.output, params, topics, output_ns=args.output_ns,
                              storage=args.storage, copy_inputs=args.copy_inputs,
                              overwrite=args.overwrite, progress=sys.stderr.isatty(),
                              log=print)  # stderr stays for the one error line
    except NoValidDepth as exc:
        print(exc.summary.table())
        raise CliError(f"{exc} (no output bag written)") from exc
    print(summary.table())
    if args.per_frame:
        print("stamp_s  source  scale")
        for stamp_ns, source, scale in summary.scales:
            print(f"{stamp_ns / 1e9:.3f}  {source}  {scale:.6g}")
    print(f"output bag: {args.output}")
    return 0
