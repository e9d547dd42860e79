"""The recipe of the bundled default model (``scripts/train_default_model.sh`` runs it).

    python -m depth_perception.training.default_model --out build/student_tabletop [--threads 2]

1. render the training scenes of the tabletop generator (cached .npz chunks),
2. train the ``student`` architecture on them (SSI + gradient matching on inverse depth),
3. fold a global affine into the output so that it reads roughly as inverse depth in 1/m on
   tabletop scenes (it stays *relative*: per-image scale and shift are still unknown),
4. evaluate on held-out generator scenes (seeds never trained on) at the training resolution and at
   640x480, after the oracle per-image inverse-affine alignment,
5. write ``student_tabletop.safetensors`` and the model card ``student_tabletop.json`` into
   ``--install`` (default: the package's ``data`` folder).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .config import TrainConfig

EVAL_SEED = 1_000_000  # held-out scenes: far from any training seed


def evaluate_generator(predict: Any, seeds: range, width: int, height: int) -> dict[str, Any]:
    """Mean per-image AbsRel / delta1 after the oracle inverse-affine alignment on generator scenes."""
    from ..metrics import depth_metrics
    from ..scene import generate_tabletop
    from .evaluation import aligned_depth

    rel, d1, ms = [], [], []
    for seed in seeds:
        s = generate_tabletop(seed=seed, width=width, height=height)
        t0 = time.perf_counter()
        pred = predict(s.rgb)
        ms.append((time.perf_counter() - t0) * 1e3)
        m = depth_metrics(aligned_depth(pred, "relative_inverse", s.depth_m), s.depth_m)
        rel.append(m.abs_rel)
        d1.append(m.delta1)
    return {"scenes": len(rel), "size": f"{width}x{height}", "abs_rel": round(float(np.mean(rel)), 4),
            "abs_rel_worst": round(float(np.max(rel)), 4), "delta1": round(float(np.mean(d1)), 4),
            "ms_per_image_median": round(float(np.median(ms)), 1)}


def evaluate_sparse_fit(predict: Any, seeds: range, width: int, height: int, n_points: int = 200) -> dict[str, Any]:
    """What the pipeline would see: the scale and shift fitted (RANSAC + IRLS, metric.fit_inverse_affine)
    from ``n_points`` random true depth samples per image instead of the oracle's every pixel."""
    from ..metric import fit_inverse_affine
    from ..metrics import depth_metrics, sparse_samples
    from ..scene import generate_tabletop

    rel, d1, refused = [], [], 0
    for seed in seeds:
        s = generate_tabletop(seed=seed, width=width, height=height)
        pred = predict(s.rgb)
        fit = fit_inverse_affine(pred, sparse_samples(s.depth_m, n_points, seed=seed))
        if not fit.ok:
            refused += 1
            continue
        m = depth_metrics(fit.apply(pred), s.depth_m)
        rel.append(m.abs_rel)
        d1.append(m.delta1)
    return {"scenes": len(seeds), "size": f"{width}x{height}", "samples_per_image": n_points,
            "fits_refused": refused, "abs_rel": round(float(np.mean(rel)), 4) if rel else None,
            "delta1": round(float(np.mean(d1)), 4) if d1 else None}


def evaluate_real(predict: Any) -> dict[str, Any]:
    """The domain gap, measured: the Middlebury 2014 motorcycle (a real photograph, scikit-image),
    oracle-aligned, next to the best constant depth (a prediction that knows nothing)."""
    from ..metrics import depth_metrics
    from ..stereo import motorcycle_pair
    from .evaluation import aligned_depth

    m = motorcycle_pair()
    pred = predict(m.left)
    student = depth_metrics(aligned_depth(pred, "relative_inverse", m.depth_gt_m), m.depth_gt_m)
    flat = depth_metrics(aligned_depth(np.ones_like(pred) + 1e-3 * np.random.default_rng(0).standard_normal(
        pred.shape), "relative_inverse", m.depth_gt_m), m.depth_gt_m)
    return {"image": "middlebury2014/motorcycle (real, 741x500)", "abs_rel": round(student.abs_rel, 4),
            "delta1": round(student.delta1, 4), "constant_depth_abs_rel": round(flat.abs_rel, 4),
            "constant_depth_delta1": round(flat.delta1, 4)}


@dataclass(frozen=True)
class Recipe:
    """One run of the recipe: the command line, the training scenes' size and the training run."""

    args: argparse.Namespace
    width: int  # training scenes, pixels
    height: int
    data: str  # the training data spec
    config: TrainConfig


@dataclass(frozen=True)
class Measured:
    """What a run measured, for the weights' metadata, the model card and the printed summary."""

    calibration: tuple[float, float]  # (scale, shift) folded into the output, 1/m per output unit
    metrics: dict[str, Any]  # generator evaluations by name (see :func:`evaluate_all`)
    real: dict[str, Any] | None  # the real-image domain gap; None without scikit-image
    training_minutes: float
    wall_minutes: float


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="build/student_tabletop", help="training folder (checkpoints, curves)")
    p.add_argument("--install", default=str(Path(__file__).resolve().parent.parent / "data"),
                   help="where the weights and the model card go (default: the package's data folder)")
    p.add_argument("--scenes", type=int, default=2000)
    p.add_argument("--size", default="192x144")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--eval-scenes", type=int, default=100)
    p.add_argument("--eval-scenes-640", type=int, default=24)
    p.add_argument("--cache", help="scene cache folder (default ~/.cache/depth_perception/tabletop)")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--quiet", action="store_true")
    return p.parse_args(argv)


def make_recipe(args: argparse.Namespace) -> Recipe:
    """The training run of the command line: SSI + gradient matching on generator scenes."""
    from .losses import LossConfig

    w, h = (int(v) for v in args.size.split("x"))
    cache = f",cache={args.cache}" if args.cache else ""
    data = f"tabletop:n={args.scenes},size={w}x{h},seed=0,workers={args.threads}{cache}"
    config = TrainConfig(model="student", data=data, out=args.out, steps=args.steps, batch_size=args.batch_size,
                         lr=args.lr, holdout=16, eval_every=300, checkpoint_every=300, seed=0,
                         threads=args.threads, resume=args.resume, progress=not args.quiet,
                         loss=LossConfig(mode="ssi", alpha=0.5, beta=0.0))
    return Recipe(args, w, h, data, config)


def calibrate(net: Any, predict: Any, recipe: Recipe) -> tuple[float, float]:
    """Fold the global output affine in, fitted on 64 training scenes (never the evaluation seeds)."""
    from .sources import TabletopDataset
    from .student import calibrate_output

    scenes = TabletopDataset(n=recipe.args.scenes, width=recipe.width, height=recipe.height,
                             cache_dir=recipe.args.cache)
    idx = np.unique(np.linspace(0, len(scenes) - 1, 64).astype(int))
    preds = [predict(scenes[int(i)].rgb) for i in idx]
    invs = [1.0 / scenes.depth[int(i)].astype(np.float32) for i in idx]
    return calibrate_output(net, preds, invs)


def evaluate_all(predict: Any, recipe: Recipe) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The model card's numbers: held-out generator scenes at the training size (oracle and sparse
    fit) and at 640x480, and the real-image domain gap (None without scikit-image)."""
    args, w, h = recipe.args, recipe.width, recipe.height
    if args.eval_scenes < 1:
        raise SystemExit("--eval-scenes must be >= 1: the model card reports held-out numbers")
    metrics = {
        "train_size": evaluate_generator(predict, range(EVAL_SEED, EVAL_SEED + args.eval_scenes), w, h),
        "sparse_fit_200_points": evaluate_sparse_fit(predict, range(EVAL_SEED, EVAL_SEED + args.eval_scenes), w, h),
    }
    if args.eval_scenes_640 > 0:
        metrics["640x480"] = evaluate_generator(predict, range(EVAL_SEED, EVAL_SEED + args.eval_scenes_640), 640, 480)
    try:
        real: dict[str, Any] | None = evaluate_real(predict)
    except ImportError:  # scikit-image absent: no real image to measure the domain gap on
        real = None
    return metrics, real


def model_card(net: Any, weights: Path, recipe: Recipe, measured: Measured) -> dict[str, Any]:
    """The card that ships next to the weights: file, architecture, input, output, domain, training
    and evaluation."""
    import torch

    from ..depth.student import DEFAULT_NAME, DEFAULT_WEIGHTS

    args, metrics = recipe.args, measured.metrics
    a, b = measured.calibration
    return {
        "name": DEFAULT_NAME,
        "file": DEFAULT_WEIGHTS,
        "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
        "bytes": weights.stat().st_size,
        "parameters": int(sum(p.numel() for p in net.parameters())),
        "architecture": "depth_perception.depth.student.StudentDepthNet (own compact CNN: residual encoder "
                        "to 1/16, global context, U-Net decoder)",
        "config": json.loads(net.config.to_json()),
        "input": {"resize": "shorter side to input_size, both sides rounded to patch_multiple",
                  "input_size": net.config.input_size, "patch_multiple": net.config.patch_multiple,
                  "mean": list(net.config.mean), "std": list(net.config.std), "range": "RGB / 255"},
        "output": {"kind": "relative_inverse",
                   "meaning": "affine-invariant inverse depth (near = large). A global affine was folded in "
                              "so that on tabletop scenes it reads roughly as 1/metres, but every frame still "
                              "needs a scale/shift fit (metric strategies) for metric depth.",
                   "calibration": {"scale": a, "shift": b}},
        "domain": "SYNTHETIC: trained only on procedurally rendered tabletop scenes (textured table, wall, "
                  "boxes, cylinders, spheres; Lambertian shading). It has never seen a real photograph; expect "
                  "poor depth on real images. It is the offline default so that `predict` and `demo` work "
                  "without downloads; for real robots use a Depth Anything V2 / DPT model or distil one into "
                  "a student on your own images (`depth-perception distill`).",
        "training": {"data": recipe.data, "steps": args.steps, "batch_size": args.batch_size, "lr": args.lr,
                     "loss": asdict(recipe.config.loss),
                     "augmentation": "scale 1.0-1.25 + crop, h-flip, colour jitter",
                     "threads": args.threads, "training_minutes": round(measured.training_minutes, 1),
                     "wall_clock_minutes_this_invocation": round(measured.wall_minutes, 1), "resumed": args.resume,
                     "torch": torch.__version__,
                     "command": "scripts/train_default_model.sh"},
        "evaluation": {"protocol": "held-out generator seeds %d.. (never trained on); per-image oracle "
                                   "inverse-affine alignment to ground truth (metrics.oracle_inverse_affine), "
                                   "then AbsRel and delta1 (< 1.25) over valid pixels, averaged over images"
                                   % EVAL_SEED,
                       **metrics,
                       "real_image_domain_gap": measured.real},
        "licence": "Apache-2.0 (weights produced by this project's own script from its own generator)",
    }


def install(net: Any, recipe: Recipe, measured: Measured) -> tuple[Path, dict[str, Any]]:
    """Write the weights and their model card into ``--install``; (weights path, card)."""
    from ..depth.student import DEFAULT_NAME, DEFAULT_WEIGHTS
    from .student import DEFAULT_CARD, save_student

    folder = Path(recipe.args.install)
    weights = save_student(net, folder / DEFAULT_WEIGHTS, name=DEFAULT_NAME, extra={
        "domain": "synthetic tabletop generator (depth_perception.scene); not trained on real images",
        "abs_rel_aligned": str(measured.metrics["train_size"]["abs_rel"]),
        "delta1_aligned": str(measured.metrics["train_size"]["delta1"]),
    })
    card = model_card(net, weights, recipe, measured)
    (folder / DEFAULT_CARD).write_text(json.dumps(card, indent=2) + "\n")
    return weights, card


def main(argv: list[str] | None = None) -> int:
    import torch

    from .evaluation import make_predictor
    from .student import parameter_bytes
    from .train import train
    from .trainee import make_trainee

    args = parse_args(argv)
    t_start = time.perf_counter()
    torch.set_num_threads(args.threads)
    recipe = make_recipe(args)
    result = train(recipe.config)
    print(result.summary(), file=sys.stderr)

    trainee = make_trainee("student", result.model_path)
    net = trainee.net
    predict = make_predictor(trainee)
    calibration = calibrate(net, predict, recipe)
    metrics, real = evaluate_all(predict, recipe)
    measured = Measured(calibration, metrics, real, result.seconds / 60, (time.perf_counter() - t_start) / 60)
    weights, card = install(net, recipe, measured)
    print(json.dumps({"weights": str(weights), "bytes": card["bytes"], "parameters": card["parameters"],
                      "evaluation": metrics, "real_image": real,
                      "training_minutes": round(measured.training_minutes, 1),
                      "wall_clock_minutes": round(measured.wall_minutes, 1)}, indent=2))
    print(f"parameter bytes {parameter_bytes(net)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
