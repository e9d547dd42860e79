"""CPU inference benchmark: the plain transformers pipeline vs our backends, full image in → depth at
the input resolution out.

Depth Anything V2 Small and Base at their real sizes with random weights (inference cost does not
depend on the weight values), at network input 518 and 364. Every row runs the same random model:

  pipeline     transformers `pipeline("depth-estimation")` (what a Python user writes today)
  torch fp32   DepthEstimator, torch backend (channels-last convolutions)
  torch bf16   torch backend, bf16 autocast (AVX-512 BF16 / AMX), eager attention, channels-last
  ort fp32     ONNX Runtime, graph-optimised, exported with eager attention
  ort int8     ONNX Runtime, dynamic int8 quantisation of MatMul weights (VNNI)

Prints ms/frame (median of --reps after a warm-up), the speed-up over the pipeline, and the
accuracy cost (max |d - d_fp32| / range of the torch fp32 depth, and the mean). Ratios are measured
in one run: a shared machine is noisy, and absolute numbers move between runs.

    .venv/bin/python bench/inference.py                   # both models, 518 and 364 (~5 min)
    .venv/bin/python bench/inference.py --models small --sizes 518 --reps 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from depth_perception.depth.estimator import DepthEstimator  # noqa: E402
from depth_perception.depth.onnx_export import export_onnx  # noqa: E402
from depth_perception.depth.onnxruntime_backend import quantize_int8  # noqa: E402
from depth_perception.depth.weights import build_model  # noqa: E402
from depth_perception.depth.zoo import get_spec  # noqa: E402


def camera_image(size: int) -> np.ndarray:
    """A real photo, square at the network size (so every path runs the same network shape)."""
    from skimage import data
    from skimage.transform import resize

    img = data.astronaut()
    return (resize(img, (size, size), anti_aliasing=True) * 255).astype(np.uint8)


def time_it(fn, reps: int, warmup: int = 2) -> tuple[float, object]:
    # ONNX Runtime needs a few runs per new input shape (arena growth) and oneDNN creates its
    # primitives on the first call: one warm-up run was measured to leave 3x outliers
    for _ in range(warmup):
        out = fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times), out


def hf_pipeline(model, size: int):
    from transformers import DPTImageProcessor, pipeline

    spec = get_spec(model._depth_spec_name)
    # Depth Anything V2's published processor, at this input size
    processor = DPTImageProcessor(do_resize=True, size={"height": size, "width": size},
                                  keep_aspect_ratio=True, ensure_multiple_of=14, resample=3,
                                  do_rescale=True, do_normalize=True, image_mean=list(spec.mean),
                                  image_std=list(spec.std))
    return pipeline("depth-estimation", model=model, image_processor=processor, device="cpu")


def errors(depth: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    span = float(ref.max() - ref.min()) or 1.0
    diff = np.abs(depth.astype(np.float64) - ref)
    return float(diff.max() / span), float(diff.mean() / span)


def run(model_name: str, size: int, reps: int, tmp: Path) -> list[tuple]:
    from PIL import Image

    spec = get_spec(model_name)
    rgb = camera_image(size)
    model = build_model(spec, random_init=True)
    rows = []

    pipe = hf_pipeline(model, size)
    pil = Image.fromarray(rgb)
    t_pipe, out = time_it(lambda: pipe(pil), reps)
    pipe_depth = np.asarray(out["predicted_depth"], dtype=np.float32)
    rows.append(("pipeline", t_pipe, pipe_depth))

    quiet = dict(log=None, input_size=size)
    est = DepthEstimator(spec, random_init=True, backend="torch", device="cpu", **quiet)
    t, ref = time_it(lambda: est.predict(rgb).values, reps)
    rows.append(("torch fp32", t, ref))
    est = DepthEstimator(spec, random_init=True, backend="torch", device="cpu", precision="bf16", **quiet)
    t, d = time_it(lambda: est.predict(rgb).values, reps)
    rows.append(("torch bf16", t, d))
    del est

    onnx = tmp / f"{model_name}.onnx"
    if not onnx.exists():
        t0 = time.perf_counter()
        export_onnx(model, onnx, 518, 532, dynamic=True, spec=spec)
        quantize_int8(onnx, tmp / f"{model_name}.int8.onnx")
        print(f"  (exported {model_name} and its int8 copy in {time.perf_counter() - t0:.0f} s)",
              file=sys.stderr)
    for label, precision in (("ort fp32", "fp32"), ("ort int8", "int8")):
        path = onnx if precision == "fp32" else tmp / f"{model_name}.int8.onnx"
        est = DepthEstimator(spec, backend="onnxruntime", onnx_path=path, **quiet)
        t, d = time_it(lambda: est.predict(rgb).values, reps)
        rows.append((label, t, d))
        del est

    table = []
    for label, t, depth in rows:
        max_err, mean_err = errors(depth, ref)
        table.append((model_name, size, label, t, t_pipe / t, max_err, mean_err))
    return table


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["small", "base"], choices=["small", "base"])
    ap.add_argument("--sizes", nargs="+", type=int, default=[518, 364])
    ap.add_argument("--reps", type=int, default=3, help="timed runs per row (median)")
    args = ap.parse_args(argv)
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}", file=sys.stderr)
    lines = [f"{'model':<26}{'input':>6}  {'backend':<11}{'ms/frame':>9}{'vs pipeline':>12}"
             f"{'max err':>10}{'mean err':>10}"]
    with tempfile.TemporaryDirectory(prefix="bench_inference_") as tmp:
        for m in args.models:
            for size in args.sizes:
                for row in run(f"depth_anything_v2_{m}", size, args.reps, Path(tmp)):
                    name, s, label, t, ratio, max_err, mean_err = row
                    line = (f"{name:<26}{s:>6}  {label:<11}{t:>9.0f}{ratio:>11.2f}x"
                            f"{max_err:>10.1e}{mean_err:>10.1e}")
                    lines.append(line)
                    print(line, flush=True)
    print("\nerr: |depth - torch fp32 depth| / range of torch fp32 depth (same random weights)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
