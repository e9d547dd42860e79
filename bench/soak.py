"""Soak: the node as users run it (its own process, `python -m depth_perception.ros.node`) fed at a
fixed rate for a bounded time with a mix of good stereo frames and bad inputs (unsupported
encodings, absurd CameraInfo, degenerate images, odd shapes). Prints frames in and out, every good
frame answered or not, drops (below the node, worker busy), the node's RSS at the start and the end
(and the ratio), and p50/p99 latency from publishing a frame to receiving its depth.

    .venv/bin/python bench/soak.py [--minutes 10] [--rate 10] [--width 640 --height 480]

The node runs stereo depth and clouds with half-size matching (``segmentation.source: []``,
``stereo.scale: 0.5``): on a 2-core CI machine a full-size VGA stereo frame with segmentation takes
~200 ms, and a node that cannot keep up drops frames by design (latest frame wins), which is not
what a soak measures. ``--set`` adds or changes node parameters.

Feeder and node use the Fast DDS profile the launch file gives the node
(config/fastdds_large_data.xml); ``--dds-profile none`` shows Fast DDS's defaults, whose 512 KiB
shared-memory segment delivers the first VGA image of each frame late (in steps of ~100 ms) and
so in bursts that the node's short frame queue cannot all keep.

Re-executes itself inside a loopback-only network namespace (scripts/netns.sh) when needed.
Target: no crash, every good frame answered, RSS end/start <= 1.10 over 10 minutes of VGA at 10 Hz.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
import goals  # noqa: E402
from netns import ensure_loopback_only  # noqa: E402
#: one bad input after every BAD_EVERY good frames, cycling through BAD_KINDS
BAD_EVERY = 4
BAD_KINDS = ("encoding", "absurd_camera_info", "black", "noise", "one_row", "truncated")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return math.nan


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=10.0, help="frames per second")
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--warmup", type=float, default=20.0, help="seconds before the start RSS")
    ap.add_argument("--set", action="append", default=[], metavar="NAME:=VALUE",
                    help="a node parameter, e.g. --set segmentation.source:=[geometric] "
                    "(default: depth and clouds only; see the docstring)")
    ap.add_argument("--dds-profile", default=str(REPO / "config" / "fastdds_large_data.xml"),
                    help="Fast DDS XML profile of the feeder and the node, as the launch file "
                    "gives the node (default: config/fastdds_large_data.xml); none = Fast DDS's "
                    "defaults")
    args = ap.parse_args()
    ensure_loopback_only(__file__)
    if args.dds_profile != "none":  # before rclpy starts; the node inherits it
        for variable in ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE"):
            os.environ[variable] = str(Path(args.dds_profile).resolve())

    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    from depth_perception.camera import CameraModel
    from depth_perception.ros import messages as M
    from depth_perception.scene import generate_tabletop

    scene = generate_tabletop(seed=0, width=args.width, height=args.height)
    h, w = scene.depth_m.shape
    right_P = np.hstack([scene.K, [[-scene.K[0, 0] * scene.baseline_m], [0.0], [0.0]]])
    cam, right_cam = CameraModel(width=w, height=h, K=scene.K), CameraModel(width=w, height=h,
                                                                            K=scene.K, P=right_P)
    params = ["stereo:=true", "max_depth:=5.0", "qos.reliability:=reliable",
              "segmentation.source:=[]", "stereo.scale:=0.5", *args.set]
    node = subprocess.Popen(
        [sys.executable, "-m", "depth_perception.ros.node", "--ros-args",
         *[x for p in params for x in ("-p", p)], "--log-level", "fatal"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rclpy.init()
    feeder = rclpy.create_node("soak_feeder")
    t = M.rclpy_types()
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    pubs = {name: feeder.create_publisher(cls, name, qos) for name, cls in (
        ("image", t.Image), ("camera_info", t.CameraInfo), ("right/image", t.Image),
        ("right/camera_info", t.CameraInfo))}
    sent: dict[int, tuple[float, bool]] = {}  # stamp → (publish time, good)
    latencies_ms: list[float] = []
    answered: set[int] = set()

    def on_depth(msg) -> None:
        stamp = M.stamp_to_ns(msg.header.stamp)
        if stamp in sent and stamp not in answered:
            answered.add(stamp)
            if sent[stamp][1]:
                latencies_ms.append((time.monotonic() - sent[stamp][0]) * 1e3)

    feeder.create_subscription(t.Image, "depth", on_depth, QoSProfile(depth=10))
    diagnostics: dict[str, str] = {}

    def on_diagnostics(array) -> None:
        for status in array.status:
            if status.name.endswith(": depth"):
                diagnostics.update({kv.key: kv.value for kv in status.values})

    from diagnostic_msgs.msg import DiagnosticArray

    feeder.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 10)
    executor = SingleThreadedExecutor()
    executor.add_node(feeder)

    def spin_for(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=max(0.0, min(0.01, end - time.monotonic())))

    deadline = time.monotonic() + 60
    while pubs["image"].get_subscription_count() == 0 and time.monotonic() < deadline:
        spin_for(0.1)
    if node.poll() is not None or pubs["image"].get_subscription_count() == 0:
        print("the node did not start")
        return 1

    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, scene.rgb.shape, dtype=np.uint8)

    def publish(k: int, stamp: int) -> bool:
        """Frame k; returns whether it is a good one."""
        header = M.make_header(t, stamp, "camera_optical")
        kind = BAD_KINDS[(k // BAD_EVERY) % len(BAD_KINDS)] if k % BAD_EVERY == BAD_EVERY - 1 else ""
        left, right, info = scene.rgb, scene.right_rgb, M.model_to_camera_info(t, cam, header)
        if kind == "black":
            left = right = np.zeros_like(scene.rgb)
        elif kind == "noise":
            left = right = noise
        elif kind == "one_row":
            left = right = scene.rgb[:1]
            info = M.model_to_camera_info(t, CameraModel.from_intrinsics(
                500.0, 500.0, w / 2, 0.0, w, 1), header)
        elif kind == "absurd_camera_info":
            info.k = [0.0] * 9
        left_msg = M.numpy_to_image(t, left, "rgb8", header)
        if kind == "encoding":
            left_msg.encoding = "yuv422"
        elif kind == "truncated":
            left_msg.height = left_msg.height * 2
        pubs["camera_info"].publish(info)
        pubs["right/camera_info"].publish(M.model_to_camera_info(
            t, right_cam if kind != "one_row" else CameraModel.from_intrinsics(
                500.0, 500.0, w / 2, 0.0, w, 1), header))
        pubs["right/image"].publish(M.numpy_to_image(t, right, "rgb8", header))
        pubs["image"].publish(left_msg)
        return kind == ""

    period = 1.0 / args.rate
    start = time.monotonic()
    end = start + args.minutes * 60
    rss_start = rss_peak = math.nan
    cpu_start = feeder_cpu_start = math.nan
    k_start = 0
    publish_ms: list[float] = []  # how long the feeder's four publish calls took
    gaps_ms: list[float] = []  # between the starts of consecutive frames: the feed's regularity
    last_pub = None
    k = 0
    next_at = start
    while time.monotonic() < end and node.poll() is None:
        stamp = 1_000_000_000 + k * int(period * 1e9)
        t_pub = time.monotonic()
        good = publish(k, stamp)
        publish_ms.append((time.monotonic() - t_pub) * 1e3)
        if last_pub is not None:
            gaps_ms.append((t_pub - last_pub) * 1e3)
        last_pub = t_pub
        sent[stamp] = (time.monotonic(), good)
        k += 1
        next_at += period
        spin_for(max(0.0, next_at - time.monotonic()))
        if math.isnan(rss_start) and time.monotonic() - start >= args.warmup:
            rss_start = rss_mb(node.pid)
            cpu_start, feeder_cpu_start, k_start = cpu_s(node.pid), time.process_time(), k
        if not math.isnan(rss_start):
            rss_peak = max(rss_peak, rss_mb(node.pid)) if not math.isnan(rss_peak) else rss_start
    # CPU per frame over the same span as the RSS figures (after the warm-up)
    node_cpu_ms = ((cpu_s(node.pid) - cpu_start) * 1e3 / max(k - k_start, 1)
                   if node.poll() is None else math.nan)
    feeder_cpu_ms = (time.process_time() - feeder_cpu_start) * 1e3 / max(k - k_start, 1)
    spin_for(3.0)  # the last frames' depth and a diagnostics round
    crashed = node.poll() is not None
    rss_end = rss_mb(node.pid) if not crashed else math.nan
    node.send_signal(2)
    try:
        exit_status = node.wait(timeout=20)
    except subprocess.TimeoutExpired:
        node.kill()
        exit_status = None
    def count(key: str) -> int:
        try:
            return int(diagnostics.get(key, ""))
        except ValueError:
            return -1

    good = [s for s, (_, g) in sent.items() if g]
    good_answered = sum(1 for s in good if s in answered)
    bad_answered = sum(1 for s, (_, g) in sent.items() if not g and s in answered)
    rows = [
        ("duration s", f"{time.monotonic() - start:.0f}"),
        ("image size", f"{w}x{h}"),
        ("Fast DDS profile", Path(args.dds_profile).name),
        ("rate Hz (sent)", f"{k / (args.minutes * 60):.2f}"),
        ("frames in: good / bad", f"{len(good)} / {k - len(good)}"),
        ("depth out: good / bad (NaN depth)", f"{good_answered} / {bad_answered}"),
        ("good frames answered", f"{good_answered / max(len(good), 1):.4f}"),
        # every frame's fate is known: answered, dropped as stale (by the worker: latest frame
        # wins; by the synchroniser: a newer set completed first), or failed with its error;
        # 1.000 = nothing lost silently (the last diagnostics may lag by a second)
        ("frames accounted for (out + dropped + failed) / in",
         f"{(good_answered + bad_answered + count('frames dropped (worker busy)') + count('frames dropped (unsynchronised)') + count('frames failed')) / max(k, 1):.3f}"),
        ("dropped (unsynchronised)", diagnostics.get("frames dropped (unsynchronised)", "?")),
        ("dropped (worker busy)", diagnostics.get("frames dropped (worker busy)", "?")),
        ("lost below the node (DDS)", diagnostics.get("image lost below the node (DDS)", "?")),
        ("frames failed (bad inputs)", diagnostics.get("frames failed", "?")),
        ("node RSS MB start / peak / end", f"{rss_start:.0f} / {rss_peak:.0f} / {rss_end:.0f}"),
        ("node RSS end / start", f"{rss_end / rss_start:.3f}"),
        ("latency ms p50 / p99 (good frames)",
         f"{percentile(latencies_ms, 50):.0f} / {percentile(latencies_ms, 99):.0f}"),
        ("mean latency ms", f"{statistics.fmean(latencies_ms):.0f}" if latencies_ms else "nan"),
        ("feed interval ms p1 / p50 / p99 (regular = period)",
         f"{percentile(gaps_ms, 1):.0f} / {percentile(gaps_ms, 50):.0f} / {percentile(gaps_ms, 99):.0f}"),
        ("feeder publish ms p50 / p99 / max",
         f"{percentile(publish_ms, 50):.1f} / {percentile(publish_ms, 99):.1f} / {max(publish_ms, default=math.nan):.1f}"),
        ("node CPU ms per frame in (all threads)", f"{node_cpu_ms:.0f}"),
        ("feeder CPU ms per frame (same machine)", f"{feeder_cpu_ms:.0f}"),
        ("machine cores / load average at the end",
         f"{os.cpu_count()} / {os.getloadavg()[0]:.2f}"),
        ("node crashed", str(crashed).lower()),
        ("node exit status on SIGINT", str(exit_status)),
    ]
    width = max(len(name) for name, _ in rows)
    print("\n".join(f"{name:<{width}}  {value}" for name, value in rows))
    bench = "bench/soak.py"
    run = f"{args.minutes:g} min of {w}x{h} at {args.rate:g} Hz, DDS profile {Path(args.dds_profile).name}"
    answered = good_answered / max(len(good), 1)
    goals.record(bench, f"node alive through bad inputs ({run})", "no crash, exit 0 on SIGINT",
                 f"crashed: {str(crashed).lower()}, exit status {exit_status}",
                 not crashed and exit_status == 0)
    goals.record(bench, f"every good frame answered ({run})", "1.0000", f"{answered:.4f}",
                 good_answered == len(good),
                 f"node {node_cpu_ms:.0f} ms CPU per frame, feeder {feeder_cpu_ms:.0f} ms on the same "
                 f"{os.cpu_count()} cores; dropped as stale: "
                 f"{diagnostics.get('frames dropped (worker busy)', '?')}")
    goals.record(bench, f"node RSS end / start ({run})", "<= 1.10",
                 f"{rss_end / rss_start:.3f} ({rss_start:.0f} → {rss_end:.0f} MB)",
                 rss_end / rss_start <= 1.10)
    goals.record(bench, f"latency p50 / p99, good frames ({run})", "",
                 f"{percentile(latencies_ms, 50):.0f} / {percentile(latencies_ms, 99):.0f} ms", None)
    feeder.destroy_node()
    rclpy.shutdown()
    return 0 if not crashed and good_answered == len(good) else 1


if __name__ == "__main__":
    sys.exit(main())
