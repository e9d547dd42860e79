"""Fine-tuning: ``depth-perception train --model NAME [--weights PATH] --data SPEC --out DIR``.

The model is the compact student (``student``, ``student_tiny`` or a student ``.safetensors``
given as ``--weights``) or any trainable zoo network (transformers, random or loaded weights).
Relative models learn with the affine-invariant loss on inverse depth (SSI + gradient matching,
+ normals when K is known); metric models, and relative ones given ``metric=True`` (a learnt global
inverse-affine metric head on top), learn with SILog on metric depth (metres) from dense or sparse
targets.

Out folder::

    checkpoints/step_0000500.safetensors   weights + optimiser state + metadata (resume)
    model.safetensors                      final weights (student metadata, or transformers keys)
    history.csv, eval.json                 loss per step, held-out metrics per evaluation
    loss_curves.png                        loss and held-out AbsRel curves (matplotlib or OpenCV)

The pieces: :mod:`.trainee` (the network), :mod:`.loop` (the steps), :mod:`.checkpoints`,
:mod:`.history` (CSV and curves), :mod:`.evaluation` (held-out metrics).
"""

from __future__ import annotations

import sys
from dataclasses import replace
from typing import Any, Callable

from .config import TrainConfig, TrainingError
from .dataset import split
from .evaluation import evaluate, make_predictor
from .loop import LossFn, TrainResult, run_training
from .losses import LossMode, LossTerms, depth_loss
from .sources import open_dataset
from .trainee import Trainee, default_crop, make_trainee, metric_head_class
from .view import Augment, TrainingView


def supervised_loss(config: TrainConfig) -> LossFn:
    """The loss of ``train``: SSI(+grad, +normal) for relative output, SILog for metric output."""

    def loss(trainee: Trainee, batch: dict[str, Any], pred: Any) -> LossTerms:
        mode: LossMode = "silog" if trainee.output_kind == "metric" else "ssi"
        cfg = replace(config.loss, mode=mode)
        K = batch["K"] if bool(batch["has_K"].all()) else None
        if K is None and cfg.beta > 0:
            cfg = replace(cfg, beta=0.0)  # some images have no intrinsics: no normals this batch
        return depth_loss(pred, batch["target"], K=K, config=cfg, target_kind="depth")

    return loss


def train(config: TrainConfig, log: Callable[[str], None] | None = None) -> TrainResult:
    """Fine-tune (or train from scratch) ``config.model`` on ``config.data``."""
    import torch

    if config.threads:
        torch.set_num_threads(int(config.threads))
    trainee = make_trainee(config.model, config.weights, config.seed)
    if config.metric:
        if trainee.kind == "relative_inverse":
            trainee.metric_head = metric_head_class()()
        elif trainee.kind != "metric":
            raise TrainingError(f"{trainee.name} outputs {trainee.kind}: no metric training")
    dataset = open_dataset(config.data, require_depth=True, progress=config.progress)
    holdout = min(config.holdout, max(0, len(dataset) - config.batch_size))
    train_set, held = split(dataset, holdout, seed=config.seed) if holdout else (dataset, None)
    crop = config.crop_hw or default_crop(trainee)
    view = TrainingView(train_set, crop, trainee.mean, trainee.std,
                        Augment() if config.augment else None, seed=config.seed)
    (log or (lambda m: print(m, file=sys.stderr)))(
        f"training {trainee.name} ({trainee.kind}{', metric head' if trainee.metric_head else ''}) on "
        f"{train_set.description}; {len(held) if held else 0} held out; crop {crop[1]}x{crop[0]}")
    eval_fn = None
    if held is not None and len(held):
        predict = make_predictor(trainee)
        eval_fn = lambda: evaluate(predict, trainee.output_kind, held)  # noqa: E731
    return run_training(trainee, view, config, supervised_loss(config), eval_fn, log)


__all__ = ["supervised_loss", "train"]
