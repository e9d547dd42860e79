"""GPU path benchmark (TensorRT): end to end against the engine's own time, on one GPU.

Model: depth_anything_v2_small, random weights (cost does not depend on the values), TensorRT fp16
engine at network input 518 (a 640x480 frame becomes 518x686), built from the exported ONNX on
first use and then taken from the engine cache (``depth-perception build-engine``'s cache).

Three measurements, interleaved (A B C A B C ...: each round runs a burst of frames of each, so the
GPU's clocks and the machine's noise spread over all three):

  A  engine      ``execute_async_v3`` alone on the device buffers the last frame filled
                 (``TensorRTBackend.execute_bound``): CUDA events around each run (its GPU time),
                 and wall time of run + synchronise
  B  end to end  as the node calls it: uint8 640x480x3 numpy frame -> ``DepthEstimator.predict(
                 frame, rays=...)`` -> HxW float32 numpy depth and its HxWx3 organised cloud
                 (upload through pinned memory, resize/normalise on the device, engine, resize
                 back and back-projection on the device, one copy back); wall time per frame
  C  overlapped  B with frame N+1's upload queued (``DepthEstimator.upload``) before frame N is
                 predicted, so the copy overlaps frame N's work; wall time per frame, the next
                 frame's host staging included

Reported: median and IQR of each, B/A and C/A (A's GPU time: the engine's own), B's stages
(``timings_ms``), whether C's depth equals B's for the same frames, the GPU, TensorRT, torch and
CUDA versions. Goal (recorded through bench/goals.py): C/A <= 1.3.

    .venv/bin/python bench/gpu.py                  # make bench-gpu (engine build: minutes, once)
    .venv/bin/python bench/gpu.py --rounds 40 --frames 20 --onnx dav2_small.onnx

Without a CUDA GPU, TensorRT and torch it runs what needs none of them (the frames, the camera's
rays and the depth -> cloud function on CPU tensors against the numpy back-projection), prints one
line saying why it measured nothing, records the goal as not measured and exits 0.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
import goals  # noqa: E402

from depth_perception.camera import CameraModel  # noqa: E402
from depth_perception.scene import generate_tabletop  # noqa: E402

MODEL, INPUT_SIZE = "depth_anything_v2_small", 518
WIDTH, HEIGHT = 640, 480
GOAL, TARGET = "GPU end to end / engine", 1.3
BENCH = "bench/gpu.py"


@dataclass
class Samples:
    """Per-frame milliseconds of the three measurements, and B's stages."""

    engine_gpu_ms: list[float] = field(default_factory=list)  # A, CUDA events
    engine_wall_ms: list[float] = field(default_factory=list)  # A, run + synchronise
    end_to_end_ms: list[float] = field(default_factory=list)  # B
    overlapped_ms: list[float] = field(default_factory=list)  # C
    stages_ms: dict[str, list[float]] = field(default_factory=dict)  # B's timings_ms
    max_rel_diff: float = 0.0  # C's depth against B's, same frames


# ------------------------------------------------------------------------- what needs no GPU


def frames(count: int) -> tuple[list[np.ndarray], CameraModel]:
    """``count`` generated 640x480 tabletop frames (HxWx3 uint8) and their camera."""
    scenes = [generate_tabletop(seed=i, width=WIDTH, height=HEIGHT) for i in range(count)]
    return [s.rgb for s in scenes], scenes[0].camera


def check_cloud_on(device: str) -> float:
    """The device back-projection on ``device`` against the pipeline's numpy one, on a generated
    scene's true depth (NaN where nothing is hit); returns the largest |difference| (0 expected)."""
    import torch

    from depth_perception.depth.device_cloud import depth_and_cloud_to_host, pinhole_rays

    scene = generate_tabletop(seed=0, width=WIDTH, height=HEIGHT)
    cam = scene.camera
    depth = torch.from_numpy(scene.depth_m).to(device)
    _, cloud = depth_and_cloud_to_host(depth, pinhole_rays(cam.K, HEIGHT, WIDTH, device=device))
    expected = cam.backproject(scene.depth_m)
    if not np.array_equal(np.isnan(cloud), np.isnan(expected)):
        raise AssertionError("the device cloud's NaN differ from the numpy back-projection's")
    return float(np.nanmax(np.abs(cloud - expected)))


def unavailable() -> str | None:
    """Why the GPU path cannot be measured here, or None."""
    if importlib.util.find_spec("torch") is None:
        return "torch is not installed"
    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU (torch.cuda.is_available() is False)"
    from depth_perception.depth.estimator import tensorrt_available

    if not tensorrt_available():
        return "TensorRT is not installed (pip install tensorrt)"
    return None


def median_iqr(xs: list[float]) -> tuple[float, float]:
    q1, q2, q3 = np.percentile(xs, [25, 50, 75])
    return float(q2), float(q3 - q1)


def summarise(s: Samples) -> tuple[list[str], float, float]:
    """The report's table lines, B/A and C/A (A: the engine's GPU time, medians)."""
    a, _ = median_iqr(s.engine_gpu_ms)
    rows = [("A engine (CUDA events)", s.engine_gpu_ms), ("A engine (wall, run + sync)",
                                                          s.engine_wall_ms),
            ("B end to end: frame -> depth + cloud", s.end_to_end_ms),
            ("C end to end, next upload overlapped", s.overlapped_ms)]
    lines = ["| measurement | median ms | IQR ms | p90 ms | / A |", "|---|---:|---:|---:|---:|"]
    for label, xs in rows:
        m, iqr = median_iqr(xs)
        lines.append(f"| {label} | {m:.2f} | {iqr:.2f} | {np.percentile(xs, 90):.2f} | "
                     f"{m / a:.2f}x |")
    if s.stages_ms:
        lines.append("\nB's stages (median ms): " + ", ".join(
            f"{k} {median_iqr(v)[0]:.2f}" for k, v in s.stages_ms.items()))
    lines.append(f"C's depth against B's for the same frames: max relative difference "
                 f"{s.max_rel_diff:.1e}")
    return lines, median_iqr(s.end_to_end_ms)[0] / a, median_iqr(s.overlapped_ms)[0] / a


def record(b_over_a: float, c_over_a: float, engine_ms: float, gpu: str) -> None:
    goals.record(BENCH, GOAL, f"<= {TARGET:g}x", f"{c_over_a:.2f}x (without overlap "
                 f"{b_over_a:.2f}x)", c_over_a <= TARGET,
                 f"{MODEL} fp16 at {INPUT_SIZE}, {WIDTH}x{HEIGHT} frame -> depth + cloud; engine "
                 f"{engine_ms:.2f} ms on {gpu}")


# ------------------------------------------------------------------------------- on the GPU


def versions() -> dict[str, str]:
    import tensorrt
    import torch

    props = torch.cuda.get_device_properties(0)
    return {"GPU": f"{props.name} (compute {props.major}.{props.minor})",
            "TensorRT": tensorrt.__version__, "torch": torch.__version__,
            "CUDA (torch)": str(torch.version.cuda)}


def measure(est: Any, images: list[np.ndarray], rays: Any, rounds: int, burst: int,
            warmup: int) -> Samples:
    """Interleaved rounds of A, B and C, ``burst`` frames each."""
    import torch

    if warmup < 1:
        raise ValueError("at least one warm-up frame: it fills the engine's buffers for A")
    trt = est.backend.trt
    s = Samples()
    for i in range(warmup):  # TensorRT's first runs, the allocators, the uploader's buffers
        est.predict(images[i % len(images)], rays=rays)
        stream = trt.execute_bound()  # the runner's own stream, the same every time
    torch.cuda.synchronize()
    reference: dict[int, np.ndarray] = {}
    k = 0  # frame counter: every measurement walks through the same frames
    for _ in range(rounds):
        # A: the engine alone, on the buffers the last predict filled
        for _ in range(burst):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            start.record(stream)
            trt.execute_bound()
            end.record(stream)
            end.synchronize()
            s.engine_wall_ms.append((time.perf_counter() - t0) * 1e3)
            s.engine_gpu_ms.append(start.elapsed_time(end))
        # B: as the node calls it
        for j in range(burst):
            idx = (k + j) % len(images)
            t0 = time.perf_counter()
            pred = est.predict(images[idx], rays=rays)
            s.end_to_end_ms.append((time.perf_counter() - t0) * 1e3)
            reference[idx] = pred.values
            for name, ms in pred.timings_ms.items():
                s.stages_ms.setdefault(name, []).append(ms)
        # C: frame N+1 uploaded before frame N is predicted
        staged = est.upload(images[k % len(images)])
        for j in range(burst):
            idx = (k + j) % len(images)
            t0 = time.perf_counter()
            staged_next = est.upload(images[(idx + 1) % len(images)])
            pred = est.predict(staged, rays=rays)
            s.overlapped_ms.append((time.perf_counter() - t0) * 1e3)
            ref = reference[idx]
            diff = float(np.max(np.abs(pred.values - ref)) / max(float(np.ptp(ref)), 1e-12))
            s.max_rel_diff = max(s.max_rel_diff, diff)
            staged = staged_next
        est.predict(staged)  # the burst's last staged frame: untimed
        k += burst
    return s


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=20, help="interleaved rounds")
    ap.add_argument("--frames", type=int, default=10, help="frames per measurement per round")
    ap.add_argument("--warmup", type=int, default=10, help="untimed frames first")
    ap.add_argument("--onnx", type=Path, help="an exported ONNX file of the model (default: "
                    "exported here with random weights)")
    args = ap.parse_args(argv)
    images, cam = frames(8)
    cpu_diff = check_cloud_on("cpu") if importlib.util.find_spec("torch") else None
    why = unavailable()
    if why is not None:
        checked = ("" if cpu_diff is None else
                   f"; checked here: {len(images)} frames, the device cloud on CPU tensors equals "
                   f"the numpy back-projection (max |diff| {cpu_diff:g} m)")
        print(f"bench/gpu.py: measured nothing: {why}{checked}")
        goals.record(BENCH, GOAL, f"<= {TARGET:g}x", "not measured", None, why)
        return 0

    import torch

    from depth_perception.depth.device_cloud import pinhole_rays
    from depth_perception.depth.estimator import DepthEstimator

    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    info = versions()
    print("## GPU path (bench/gpu.py)\n\n| | |\n|---|---|")
    print("\n".join(f"| {k} | {v} |" for k, v in info.items()))
    print(f"| model | {MODEL}, TensorRT fp16, network input {INPUT_SIZE}, random weights |")
    print(f"| frames | {WIDTH}x{HEIGHT} uint8 RGB, {args.rounds} interleaved rounds x "
          f"{args.frames} frames (+{args.warmup} warm-up) |", flush=True)
    t0 = time.perf_counter()
    est = DepthEstimator(MODEL, backend="tensorrt", precision="fp16", input_size=INPUT_SIZE,
                         random_init=args.onnx is None, onnx_path=args.onnx, log=log)
    log(f"engine ready in {time.perf_counter() - t0:.0f} s ({est.backend.trt.engine_path})")
    if est.host_arrays:
        raise RuntimeError("the engine loaded on the torch-free runner; torch must be imported")
    rays = pinhole_rays(cam.K, HEIGHT, WIDTH, device="cuda")
    gpu_diff = check_cloud_on("cuda")
    try:
        samples = measure(est, images, rays, args.rounds, args.frames, args.warmup)
    finally:
        est.close()
    lines, b_over_a, c_over_a = summarise(samples)
    print("\n" + "\n".join(lines))
    print(f"device cloud on the GPU against the numpy back-projection: max |diff| {gpu_diff:g} m")
    verdict = "met" if c_over_a <= TARGET else "NOT met"
    print(f"\nB/A {b_over_a:.2f}x, C/A {c_over_a:.2f}x: goal C/A <= {TARGET:g}x {verdict}")
    record(b_over_a, c_over_a, median_iqr(samples.engine_gpu_ms)[0], info["GPU"])
    torch.cuda.synchronize()
    return 0


if __name__ == "__main__":
    sys.exit(main())
