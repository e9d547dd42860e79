"""``depth-perception train`` (train or fine-tune a depth model) and ``depth-perception distill``
(a student on a teacher's pseudo-labels), over :mod:`depth_perception.training`."""

from __future__ import annotations

import argparse
from pathlib import Path

DATA_HELP = ("tabletop[:n=2000,size=192x144,seed=0,cache=DIR,workers=1] (generator scenes), "
             "folder:PATH or PATH (rgb/ + depth/ with 16-bit mm PNG or float .npy metres), or "
             "bag:PATH[,image=TOPIC,depth=TOPIC,camera_info=TOPIC,slop=S,stride=N,max=N] (rosbag2)")


def _size(text: str) -> tuple[int, int]:
    """WIDTHxHEIGHT → (height, width)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from None
    return h, w


def _add_common(p: argparse.ArgumentParser, default_steps: int) -> None:
    p.add_argument("--out", required=True, help="output folder (checkpoints, model, curves)")
    p.add_argument("--steps", type=int, default=default_steps, help=f"optimiser steps (default {default_steps})")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (AdamW, cosine decay)")
    p.add_argument("--crop", type=_size, metavar="WxH",
                   help="training crop (default: the model's input size at 4:3)")
    p.add_argument("--alpha", type=float, default=0.5, help="weight of gradient matching (default 0.5)")
    p.add_argument("--eval-every", type=int, default=500, help="held-out evaluation interval (steps)")
    p.add_argument("--checkpoint-every", type=int, default=500, help="checkpoint interval (steps)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads for torch (default 1: polite on shared machines; 0 = torch's default)")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                   help="bf16: CPU autocast (fast on AMX / AVX-512 BF16 CPUs) or CUDA")
    p.add_argument("--device", default="cpu", help="torch device for training (cpu, cuda, cuda:1)")
    p.add_argument("--no-augment", action="store_true", help="no scale/crop/flip/colour augmentation")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def add_train_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "train", help="train or fine-tune a depth model on RGB + depth",
        description="Relative models learn affine-invariant inverse depth (scale-and-shift-invariant "
        "loss + multi-scale gradient matching, + surface normals with --beta when K is known); metric "
        "models, and relative ones with --metric (a learnt global metric head), learn SILog on metric "
        "depth, dense or sparse. Checkpoints are safetensors; --resume continues a run.",
    )
    p.add_argument("--model", required=True,
                   help="student, student_tiny, or a zoo model name (see `depth-perception models`)")
    p.add_argument("--weights", help="start from these weights (student .safetensors, or the zoo "
                   "model's folder/.safetensors/.pth); default: random initialisation")
    p.add_argument("--data", required=True, help=DATA_HELP)
    p.add_argument("--metric", action="store_true",
                   help="train metric depth: a relative model gets a global inverse-affine metric head")
    p.add_argument("--beta", type=float, default=0.0, help="weight of the surface-normal loss (needs K)")
    p.add_argument("--silog-lambda", type=float, default=0.85, help="SILog lambda (metric training)")
    p.add_argument("--holdout", type=int, default=16, help="images held out for evaluation")
    _add_common(p, 2000)
    return p


def add_distill_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "distill", help="train a student on a teacher's pseudo-labels",
        description="The teacher labels the images (relative inverse or metric depth); the student "
        "learns the labels with the affine-invariant losses, optionally plus sparse metric "
        "supervision from ground-truth depth. Prints student vs teacher on a held-out split.",
    )
    p.add_argument("--teacher", required=True, help="zoo model name of the teacher")
    p.add_argument("--teacher-weights", help="teacher weights (folder, .safetensors, .pth, hub id)")
    p.add_argument("--teacher-backend", default="auto", choices=["auto", "torch", "onnxruntime", "tensorrt"])
    p.add_argument("--teacher-input-size", type=int, help="teacher input size (default: the model's)")
    p.add_argument("--teacher-random-init", action="store_true",
                   help="random teacher weights (plumbing tests only; *_tiny models need it)")
    p.add_argument("--student", default="student", help="student, student_tiny, or a zoo model name")
    p.add_argument("--student-weights", help="start the student from these weights")
    p.add_argument("--images", required=True, help="images to label: " + DATA_HELP)
    p.add_argument("--sparse-points", type=int, default=0,
                   help="ground-truth depth samples per image for sparse metric supervision (0 = off; "
                   "needs a source with depth)")
    p.add_argument("--sparse-weight", type=float, default=0.5)
    p.add_argument("--holdout", type=int, default=8, help="images held out for the comparison")
    _add_common(p, 1000)
    return p


def _train_config(args: argparse.Namespace, model: str, weights: str | None, data: str, beta: float = 0.0,
                  metric: bool = False, holdout: int = 16):
    from ..training.losses import LossConfig
    from ..training.config import TrainConfig

    return TrainConfig(
        model=model, weights=weights, data=data, out=args.out, steps=args.steps, batch_size=args.batch_size,
        lr=args.lr, crop_hw=args.crop, metric=metric, holdout=holdout, eval_every=args.eval_every,
        checkpoint_every=args.checkpoint_every, seed=args.seed, threads=args.threads or None,
        precision=args.precision, device=args.device, resume=args.resume, augment=not args.no_augment,
        progress=not args.quiet,
        loss=LossConfig(alpha=args.alpha, beta=beta, silog_lambda=getattr(args, "silog_lambda", 0.85)),
    )


def cmd_train(args: argparse.Namespace) -> int:
    from ..training.train import train

    config = _train_config(args, args.model, args.weights, args.data, beta=args.beta, metric=args.metric,
                           holdout=args.holdout)
    result = train(config)
    print(result.summary())
    print(f"loss curves: {Path(args.out) / 'loss_curves.png'}")
    return 0


def cmd_distill(args: argparse.Namespace) -> int:
    from ..training.distill import DistillConfig, distill

    tc = _train_config(args, args.student, args.student_weights, args.images, holdout=args.holdout)
    config = DistillConfig(
        teacher=args.teacher, teacher_weights=args.teacher_weights, teacher_backend=args.teacher_backend,
        teacher_input_size=args.teacher_input_size, teacher_random_init=args.teacher_random_init,
        student=args.student, student_weights=args.student_weights, images=args.images,
        sparse_points=args.sparse_points, sparse_weight=args.sparse_weight, holdout=args.holdout, train=tc)
    result = distill(config)
    print(result.table())
    print(f"student weights: {result.model_path}")
    return 0


__all__ = ["add_distill_parser", "add_train_parser", "cmd_distill", "cmd_train"]
