"""``depth-perception demo``: the whole pipeline offline on bundled or generated data."""

from __future__ import annotations

import argparse


def add_demo_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from ..demo import SCENES

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
    return p


def cmd_demo(args: argparse.Namespace) -> int:
    from ..demo import format_report, run_demo

    report = run_demo(args.out, scene=args.scene, seed=args.seed, depth=args.depth)
    print(format_report(report))
    return 0
