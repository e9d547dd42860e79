"""Pseudo-label self-training: ``depth-perception distill --teacher NAME --student NAME --images SPEC``.

A teacher (any zoo model, on any backend) labels unlabelled images (a folder, a rosbag, or
generator scenes); the student learns from the pseudo-labels with the affine-invariant losses
(SSI + gradient matching on inverse depth), optionally plus sparse metric supervision (a few
ground-truth depth samples per image, where the source has depth: an RGB-D bag, a folder with depth,
the generator) that pulls the student's geometry towards the truth where the teacher is wrong.
A held-out split is labelled too and never trained on; the closing table compares student and
teacher there: agreement always, and AbsRel / delta1 against ground truth when there is some.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .config import TrainConfig, TrainingError
from .dataset import DataError, DepthDataset, split
from .evaluation import EvalSummary, evaluate, make_predictor
from .loop import LossFn, run_training
from .losses import LossConfig, LossTerms, depth_loss, ssi_loss
from .sources import open_dataset
from .trainee import Trainee, default_crop, make_trainee
from .view import Augment, TrainingView


@dataclass
class DistillConfig:
    teacher: str = "depth_anything_v2_small"
    teacher_weights: str | None = None
    teacher_backend: str = "auto"
    teacher_input_size: int | None = None
    teacher_random_init: bool = False  # plumbing/tests: the ``*_tiny`` zoo twins have no weights
    student: str = "student"
    student_weights: str | None = None
    images: str = ""
    sparse_points: int = 0  # ground-truth samples per image for sparse metric supervision (0: off)
    sparse_weight: float = 0.5
    holdout: int = 8
    train: TrainConfig = field(default_factory=TrainConfig)


def teacher_to_inverse(values: np.ndarray, kind: str) -> np.ndarray:
    """A teacher's HxW output → inverse depth up to an affine map (NaN invalid)."""
    v = np.asarray(values, np.float32)
    if kind == "relative_inverse":
        return np.where(np.isfinite(v), v, np.nan).astype(np.float32)
    if kind == "metric":
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(np.isfinite(v) & (v > 0), 1.0 / v, np.nan).astype(np.float32)
    raise TrainingError(f"a teacher with {kind} output (affine-invariant depth, e.g. Marigold) cannot "
                        "supervise inverse depth: the unknown shift of depth does not map to inverse "
                        "depth; use a relative-inverse or metric teacher")


def pseudo_label(teacher: Any, dataset: DepthDataset, progress: bool = False,
                 desc: str = "teacher labelling") -> tuple[list[np.ndarray], float]:
    """Teacher inverse-depth labels for every image, and the teacher's median ms per image."""
    from tqdm import tqdm

    labels, ms = [], []
    for sample in tqdm(dataset, total=len(dataset), desc=desc, unit="img", disable=not progress or None):
        t0 = time.perf_counter()
        pred = teacher.predict(sample.rgb)
        ms.append((time.perf_counter() - t0) * 1e3)
        labels.append(teacher_to_inverse(pred.values, pred.kind))
    return labels, float(np.median(ms)) if ms else 0.0


def sparse_targets(dataset: DepthDataset, n: int, seed: int = 0) -> list[np.ndarray]:
    """``n`` ground-truth depth samples per image (NaN elsewhere), fixed per image."""
    from ..metrics import sparse_samples

    if not dataset.has_depth:
        raise DataError(f"{dataset.description}: sparse metric supervision needs ground-truth depth")
    out = []
    for i, s in enumerate(dataset):
        if s.depth_m is None:
            raise DataError(f"{s.name}: sparse metric supervision needs ground-truth depth")
        out.append(sparse_samples(s.depth_m, n, seed=seed + i))
    return out


def distill_loss(config: DistillConfig) -> LossFn:
    """SSI + gradient matching against the pseudo-labels, plus SSI against the sparse samples' inverse
    depth when the batch has them."""
    loss_cfg = LossConfig(mode="ssi", alpha=config.train.loss.alpha, beta=0.0, scales=config.train.loss.scales)

    def loss(trainee: Trainee, batch: dict[str, Any], pred: Any) -> LossTerms:
        terms = depth_loss(pred, batch["target"], config=loss_cfg, target_kind="inverse")
        if "sparse" in batch and config.sparse_weight > 0:
            import torch

            sparse = batch["sparse"]
            ok = torch.isfinite(sparse) & (sparse > 0)
            inv = torch.where(ok, 1.0 / torch.where(ok, sparse, torch.ones_like(sparse)),
                              torch.full_like(sparse, float("nan")))
            extra = ssi_loss(pred, inv)
            terms = LossTerms(terms.total + config.sparse_weight * extra, terms.si, terms.grad, extra)
        return terms

    return loss


@dataclass
class DistillResult:
    model_path: Path
    teacher: str
    student: str
    rows: list[tuple[str, str, str, str, str]]  # the table
    student_eval: EvalSummary | None
    teacher_eval: EvalSummary | None
    agreement_ssi: float  # SSI error of the student against the teacher on held-out images

    def table(self) -> str:
        widths = [max(len(r[i]) for r in self.rows) for i in range(len(self.rows[0]))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in self.rows]
        return "\n".join(lines + [
            "(held-out images; AbsRel/delta1 after per-image inverse-affine alignment to ground truth, "
            "'-' without ground truth; SSI vs teacher: mean |aligned student - teacher| / MAD(teacher))"])


def _agreement(student_predict: Callable, labels: list[np.ndarray], dataset: DepthDataset) -> float:
    """Mean SSI error (MAD-normalised) of the student's output against the teacher's labels."""
    import torch

    errs = []
    for sample, label in zip(dataset, labels):
        pred = student_predict(sample.rgb)
        errs.append(float(ssi_loss(torch.from_numpy(pred)[None], torch.from_numpy(label)[None])))
    return float(np.mean(errs)) if errs else float("nan")


def distill(config: DistillConfig, log: Callable[[str], None] | None = None) -> DistillResult:
    """Label ``config.images`` with the teacher, train the student on the labels, compare both."""
    import torch

    from ..depth.estimator import DepthEstimator

    log = log or (lambda m: print(m, file=sys.stderr))
    tc = config.train
    if tc.threads:
        torch.set_num_threads(int(tc.threads))
    if not config.images:
        raise TrainingError("distill needs --images (a folder, a bag, or tabletop:...)")
    dataset = open_dataset(config.images, require_depth=False, progress=tc.progress)
    holdout = min(config.holdout, max(0, len(dataset) - tc.batch_size))
    if holdout < 1:
        raise DataError(f"{dataset.description}: too few images for a held-out split and a batch of "
                        f"{tc.batch_size}")
    train_set, held = split(dataset, holdout, seed=tc.seed)
    teacher = DepthEstimator(config.teacher, weights=config.teacher_weights, backend=config.teacher_backend,
                             random_init=config.teacher_random_init, input_size=config.teacher_input_size,
                             log=log)
    if teacher.kind not in ("relative_inverse", "metric"):
        teacher_to_inverse(np.zeros((1, 1), np.float32), teacher.kind)  # raises with the reason
    labels, _ = pseudo_label(teacher, train_set, tc.progress)
    held_labels, teacher_ms = pseudo_label(teacher, held, tc.progress, desc="teacher (held out)")
    trainee = make_trainee(config.student, config.student_weights, tc.seed)
    crop = tc.crop_hw or default_crop(trainee)
    extras: dict[str, Sequence[np.ndarray]] | None = None
    if config.sparse_points > 0:
        extras = {"sparse": sparse_targets(train_set, config.sparse_points, tc.seed)}
    view = TrainingView(train_set, crop, trainee.mean, trainee.std, Augment() if tc.augment else None,
                        seed=tc.seed, targets=labels, extras=extras)
    sparse_note = f"; sparse metric supervision: {config.sparse_points} points/image" if config.sparse_points else ""
    log(f"distilling {config.teacher} into {trainee.name} on {len(train_set)} images ({len(held)} held out)"
        f"{sparse_note}")
    predict = make_predictor(trainee)
    eval_fn = (lambda: evaluate(predict, "relative_inverse", held)) if held.has_depth else None
    result = run_training(trainee, view, tc, distill_loss(config), eval_fn, log,
                          extra_meta={"teacher": config.teacher})

    # the closing comparison on the held-out split
    agreement = _agreement(predict, held_labels, held)
    student_eval = teacher_eval = None
    if held.has_depth:
        student_eval = evaluate(predict, "relative_inverse", held)

        def teacher_predict(rgb: np.ndarray) -> np.ndarray:
            pred = teacher.predict(rgb)
            return teacher_to_inverse(pred.values, pred.kind)

        # both sides through the same per-image inverse-affine alignment: a fair comparison even
        # when the teacher is metric
        teacher_eval = evaluate(teacher_predict, "relative_inverse", held)
    t0 = time.perf_counter()
    for sample in held:
        predict(sample.rgb)
    student_ms = (time.perf_counter() - t0) * 1e3 / max(1, len(held))
    teacher.close()

    def fmt(e: EvalSummary | None, attr: str) -> str:
        return "-" if e is None or not e.n_images else f"{getattr(e, attr):.4f}"

    rows = [("model", "AbsRel", "delta1", "SSI vs teacher", "ms/image (CPU)"),
            (f"teacher {config.teacher}", fmt(teacher_eval, "abs_rel"), fmt(teacher_eval, "delta1"), "0",
             f"{teacher_ms:.1f}"),
            (f"student {trainee.name}", fmt(student_eval, "abs_rel"), fmt(student_eval, "delta1"),
             f"{agreement:.4f}", f"{student_ms:.1f}")]
    return DistillResult(result.model_path, config.teacher, trainee.name, rows, student_eval, teacher_eval,
                         agreement)


__all__ = ["DistillConfig", "DistillResult", "distill", "pseudo_label", "sparse_targets", "teacher_to_inverse"]
