"""Segmentation: geometric accuracy and speed at 640x480, fusion speed, SAM per frame on CPU (torch vs
ONNX Runtime).

    .venv/bin/python bench/segmentation.py [--seeds 8] [--sam vit_b] [--no-sam] [--cache /tmp/dp_sam_onnx]

(1) Geometric segmentation (support plane + clustering) on generator scenes with exact depth:
    matched IoU with the true instance masks (Hungarian), separated and touching objects, extra
    segments, and milliseconds per 640x480 frame (median over scenes); plus fusion (erosion,
    discontinuities, MAD, dominant cluster) of the true masks, milliseconds per frame.
(2) SAM with random weights at the real size (inference cost does not depend on weight values):
    image encoder once per frame (1024x1024 input) and the decoder for a batch of 5 box prompts,
    PyTorch vs ONNX Runtime, both fp32 on this CPU, and TensorRT (fp16 encoder) where a GPU and
    TensorRT are present (the row is skipped with the reason otherwise), same run (ratios are what to compare: the machine
    is shared and noisy). The ONNX export is cached under --cache.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from depth_perception.camera import CameraModel  # noqa: E402
from depth_perception.metrics import matched_iou  # noqa: E402
from depth_perception.scene import generate_tabletop  # noqa: E402
from depth_perception.regions.fusion import fuse_masks  # noqa: E402
from depth_perception.segmentation import Segmentation, segment_geometric  # noqa: E402


def _time(fn, repeats: int) -> float:
    """Median milliseconds of ``repeats`` calls (after one warm-up)."""
    fn()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts) * 1e3)


def geometric(seeds: int, width: int, height: int) -> None:
    print(f"\n(1) geometric segmentation, {width}x{height}, exact depth, {seeds} scenes per row")
    print(f"{'objects':>10} {'n':>4} {'IoU mean':>9} {'median':>7} {'min':>6} {'>=0.8':>6} {'extra':>6} "
          f"{'ms/frame':>9} {'fusion ms':>10}")
    for separated in (True, False):
        ious, extra, ms, fus = [], 0, [], []
        for seed in range(seeds):
            sc = generate_tabletop(seed=seed, width=width, height=height, separated=separated)
            K = sc.K
            pts = CameraModel.from_intrinsics(K[0, 0], K[1, 1], K[0, 2], K[1, 2], width, height).backproject(sc.depth_m)
            seg = segment_geometric(pts)
            iou = matched_iou(sc.instance_mask, seg.labels)
            ious.extend(iou)
            extra += max(0, len(seg) - len(iou))
            ms.append(_time(lambda: segment_geometric(pts), 3))
            truth = Segmentation(sc.instance_mask)
            fus.append(_time(lambda: fuse_masks(truth, pts), 3))
        v = np.array(ious)
        print(f"{'separated' if separated else 'touching':>10} {len(v):4d} {v.mean():9.3f} {np.median(v):7.3f} "
              f"{v.min():6.3f} {np.mean(v >= 0.8):6.0%} {extra:6d} {np.median(ms):9.1f} {np.median(fus):10.1f}")


def sam(name: str, cache: Path, repeats: int, prompts: int) -> None:
    import torch

    from depth_perception.segmentation.sam import SamSegmenter, build_sam_model
    from depth_perception.segmentation.sam_onnx import SamOnnxSegmenter, export_sam_onnx

    print(f"\n(2) SAM {name}, random weights, CPU fp32, torch {torch.__version__} ({torch.get_num_threads()} threads)")
    model = build_sam_model(name)
    cache.mkdir(parents=True, exist_ok=True)
    enc, dec = cache / f"{name}_encoder.onnx", cache / f"{name}_decoder.onnx"
    if not (enc.is_file() and dec.is_file()):
        t = time.perf_counter()
        export_sam_onnx(model, cache, name=name, check=False)
        print(f"    exported to ONNX in {time.perf_counter() - t:.0f} s ({cache})")
    backends = {"torch": SamSegmenter(model), "onnxruntime": SamOnnxSegmenter(enc, dec, providers=["CPUExecutionProvider"])}
    from depth_perception.depth.tensorrt_backend import TensorRTUnavailableError
    from depth_perception.segmentation.sam_tensorrt import SamTensorRTSegmenter, check_tensorrt_ready

    try:
        check_tensorrt_ready()
        t = time.perf_counter()
        backends["tensorrt"] = SamTensorRTSegmenter(enc, dec)  # fp16 encoder, cached engines
        print(f"    TensorRT engines ready in {time.perf_counter() - t:.0f} s (built once, then cached)")
    except TensorRTUnavailableError as exc:
        print(f"    tensorrt row skipped: {exc}")
    rgb = generate_tabletop(seed=0, width=640, height=480).rgb
    rng = np.random.default_rng(0)
    x0 = rng.uniform(0, 400, prompts)
    y0 = rng.uniform(0, 300, prompts)
    boxes = np.column_stack([x0, y0, x0 + rng.uniform(40, 200, prompts), y0 + rng.uniform(40, 160, prompts)])
    rows = {}
    for label, seg in backends.items():
        emb = seg.encode(rgb)
        rows[label] = (_time(lambda: seg.encode(rgb), repeats), _time(lambda: seg.decode(emb, boxes), repeats))
    print(f"{'backend':>12} {'encoder ms':>11} {f'decoder ms ({prompts} boxes)':>24} {'frame ms':>9}")
    for label, (e, d) in rows.items():
        print(f"{label:>12} {e:11.0f} {d:24.1f} {e + d:9.0f}")
    te, td = rows["torch"]
    oe, od = rows["onnxruntime"]
    print(f"{'ratio ort/torch':>12} {oe / te:11.2f} {od / td:24.2f} {(oe + od) / (te + td):9.2f}")
    if "tensorrt" in rows:
        re_, rd = rows["tensorrt"]
        print(f"{'ratio trt/ort':>12} {re_ / oe:11.3f} {rd / od:24.3f} {(re_ + rd) / (oe + od):9.3f}")
    e = backends["torch"].encode(rgb)
    a, b = backends["torch"].decode(e, boxes), backends["onnxruntime"].decode(e, boxes)
    print(f"    same embedding: masks agree on {np.mean(a.masks == b.masks):.5f} of pixels, "
          f"max |logit diff| {np.abs(a.logits - b.logits).max():.1e}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--size", default="640x480")
    ap.add_argument("--sam", default="vit_b", choices=["vit_b", "vit_l", "vit_h", "tiny"])
    ap.add_argument("--no-sam", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--prompts", type=int, default=5)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/dp_sam_onnx"))
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.lower().split("x"))
    geometric(args.seeds, w, h)
    if not args.no_sam:
        sam(args.sam, args.cache, args.repeats, args.prompts)


if __name__ == "__main__":
    main()
