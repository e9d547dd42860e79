"""The optimisation loop shared by ``train`` and ``distill``.

Each step draws a batch of ``batch_size`` items from a :class:`~depth_perception.training.view.
TrainingView` (epoch-seeded order, so a resumed run sees the same batches), runs the trainee
(N x 3 x h x w normalised pixels → N x h x w output), takes AdamW steps on the given loss with the
gradient norm clipped to 5 and the learning rate of :func:`learning_rate`, evaluates every
``eval_every`` steps, and checkpoints every ``checkpoint_every`` steps. The run ends with
``model.safetensors``, ``history.csv``, ``eval.json`` and ``loss_curves.png`` in the out folder.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .checkpoints import (
    CHECKPOINT_DIR,
    MODEL_FILE,
    checkpoint_path,
    latest_checkpoint,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
    save_final,
)
from .config import TrainConfig, TrainingError
from .evaluation import EvalSummary
from .history import plot_curves, read_history, write_history
from .losses import LossTerms
from .trainee import Trainee
from .view import TrainingView

LossFn = Callable[[Trainee, dict[str, Any], Any], LossTerms]
EvalFn = Callable[[], EvalSummary | None]
Log = Callable[[str], None]


def learning_rate(step: int, config: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to 5 %: a function of the step alone, so resuming needs
    no scheduler state."""
    warm = min(config.warmup_steps, max(1, config.steps // 10))
    if step < warm:
        return config.lr * (step + 1) / warm
    t = (step - warm) / max(1, config.steps - warm)
    return config.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


@dataclass
class TrainResult:
    out: Path
    model_path: Path
    steps: int
    seconds: float
    history: list[dict[str, Any]]
    evaluation: EvalSummary | None
    metric_head: tuple[float, float] | None = None  # (scale, shift) in inverse depth, 1/m

    def summary(self) -> str:
        lines = [f"trained {self.steps} steps in {self.seconds / 60:.1f} min; weights: {self.model_path}"]
        if self.evaluation is not None and self.evaluation.n_images:
            e = self.evaluation
            how = "after per-image inverse-affine alignment" if e.aligned else "metric, no alignment"
            lines.append(f"held-out ({e.n_images} images, {how}): AbsRel {e.abs_rel:.4f}, "
                         f"delta1 {e.delta1:.4f}, {e.ms_per_image:.1f} ms/image")
        if self.metric_head is not None:
            s, t = self.metric_head
            lines.append(f"metric head: 1/depth = {s:.6g} * output + {t:.6g} (pipeline: metric.mode=fixed, "
                         f"fixed_scale={s:.6g}, fixed_shift={t:.6g})")
        return "\n".join(lines)


@dataclass
class _Run:
    """What the loop carries from step to step."""

    out: Path
    device: Any  # torch.device
    optimizer: Any  # torch.optim.AdamW
    meta: dict[str, str]  # checkpoint metadata: model, configuration, extra
    history: list[dict[str, Any]]
    start: int  # the first step of this invocation (> 0 when resumed)
    per_epoch: int  # batches per epoch
    seconds0: float  # training seconds before this invocation (resumed runs)
    t0: float = 0.0  # perf_counter at the first step of this invocation
    evaluation: EvalSummary | None = None  # the latest

    def seconds(self) -> float:
        return self.seconds0 + time.perf_counter() - self.t0


def run_training(trainee: Trainee, view: TrainingView, config: TrainConfig, loss_fn: LossFn,
                 eval_fn: EvalFn | None = None, log: Log | None = None,
                 extra_meta: dict[str, str] | None = None) -> TrainResult:
    """Train ``trainee`` on ``view`` for ``config.steps`` steps (resuming from the newest checkpoint
    with ``config.resume``); ``eval_fn`` measures held-out images every ``config.eval_every`` steps."""
    from tqdm import tqdm

    log = log or (lambda m: print(m, file=sys.stderr))
    run = _start(trainee, view, config, log, extra_meta)
    run.t0 = time.perf_counter()
    trainee.train(True)
    bar = tqdm(range(run.start, config.steps), initial=run.start, total=config.steps, unit="step",
               desc=f"training {trainee.name}", disable=not config.progress or None)
    for step in bar:
        row = _step(trainee, view, config, loss_fn, run, step)
        done = step + 1
        if eval_fn is not None and (done % config.eval_every == 0 or done == config.steps):
            run.evaluation = _evaluate(trainee, eval_fn, row, done)
        run.history.append(row)
        bar.set_postfix(loss=f"{row['total']:.4f}", lr=f"{row['lr']:.2e}")
        if done % config.checkpoint_every == 0 or done == config.steps:
            save_checkpoint(checkpoint_path(run.out, done), trainee, run.optimizer, done, run.meta)
            prune_checkpoints(run.out, config.keep_checkpoints)
            write_history(run.out / "history.csv", run.history)
    bar.close()
    return _finish(trainee, config, run, log)


def _start(trainee: Trainee, view: TrainingView, config: TrainConfig, log: Log,
           extra_meta: dict[str, str] | None) -> _Run:
    """Out folder, threads, device and optimiser; the step and history to go on from."""
    import torch

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    if config.threads:
        torch.set_num_threads(int(config.threads))
    device = torch.device(config.device)
    for m in trainee.modules():
        m.to(device)
    n = len(view)
    if n < config.batch_size:
        raise TrainingError(f"{n} training images is fewer than the batch size {config.batch_size}")
    optimizer = torch.optim.AdamW(trainee.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    meta = {"model": trainee.name, "config": json.dumps(_jsonable(asdict(config)), sort_keys=True),
            **(extra_meta or {})}
    start = _resume(trainee, optimizer, config, out, log)
    history = read_history(out / "history.csv", start)
    seconds0 = float(history[-1]["seconds"]) if history and history[-1].get("seconds") else 0.0
    return _Run(out, device, optimizer, meta, history, start, n // config.batch_size, seconds0)


def _resume(trainee: Trainee, optimizer: Any, config: TrainConfig, out: Path, log: Log) -> int:
    """The step to start from: the newest checkpoint's with ``config.resume`` (0 when there is none),
    else 0 in a folder without checkpoints."""
    ckpt = latest_checkpoint(out) if config.resume else None
    if config.resume and ckpt is None:
        log(f"no checkpoint in {out / CHECKPOINT_DIR}: starting from step 0")
    if ckpt is not None:
        start = load_checkpoint(ckpt, trainee, optimizer)
        log(f"resumed from {ckpt} (step {start})")
        return start
    if config.resume is False and latest_checkpoint(out) is not None:
        raise TrainingError(f"{out} already holds checkpoints: pass --resume to continue, or choose a "
                            "new --out")
    return 0


def _collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    import torch

    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


def _step(trainee: Trainee, view: TrainingView, config: TrainConfig, loss_fn: LossFn, run: _Run,
          step: int) -> dict[str, Any]:
    """One optimiser step on batch ``step``; its history row."""
    import torch

    n = len(view)
    epoch, offset = divmod(step, run.per_epoch)
    order = np.random.default_rng((config.seed, epoch)).permutation(n)
    view.epoch = epoch
    batch = _collate([view[int(i)] for i in order[offset * config.batch_size:(offset + 1) * config.batch_size]])
    batch = {k: v.to(run.device) for k, v in batch.items()}
    lr = learning_rate(step, config)
    for g in run.optimizer.param_groups:
        g["lr"] = lr
    with torch.autocast(run.device.type, dtype=torch.bfloat16, enabled=config.precision == "bf16"):
        raw = trainee.raw(batch["pixel_values"])
    raw = raw.float()
    if trainee.metric_head is not None and step == 0:
        trainee.metric_head.initialise(raw.detach(), batch["target"])
    pred = trainee.metric_head(raw) if trainee.metric_head is not None else raw
    terms = loss_fn(trainee, batch, pred)
    run.optimizer.zero_grad(set_to_none=True)
    terms.total.backward()
    torch.nn.utils.clip_grad_norm_(trainee.parameters(), 5.0)
    run.optimizer.step()
    return {"step": step + 1, "lr": lr, **terms.as_floats(), "seconds": run.seconds()}


def _evaluate(trainee: Trainee, eval_fn: EvalFn, row: dict[str, Any], done: int) -> EvalSummary | None:
    """Held-out metrics after ``done`` steps, added to the history ``row`` and reported on stderr."""
    from tqdm import tqdm

    trainee.train(False)
    evaluation = eval_fn()
    trainee.train(True)
    if evaluation is not None:
        row["eval_abs_rel"], row["eval_delta1"] = evaluation.abs_rel, evaluation.delta1
        tqdm.write(f"step {done}: held-out AbsRel {evaluation.abs_rel:.4f}, delta1 {evaluation.delta1:.4f}",
                   file=sys.stderr)  # stdout is for results
    return evaluation


def _finish(trainee: Trainee, config: TrainConfig, run: _Run, log: Log) -> TrainResult:
    """Write the history, the final weights, ``eval.json`` and the curves."""
    out = run.out
    write_history(out / "history.csv", run.history)
    trainee.train(False)
    extra = {"trained_steps": str(config.steps), "data": config.data}
    head = trainee.metric_head.values() if trainee.metric_head is not None else None
    if head is not None:
        extra |= {"metric_head_scale": f"{head[0]:.9g}", "metric_head_shift": f"{head[1]:.9g}"}
    model_path = save_final(trainee, out / MODEL_FILE, extra)
    if run.evaluation is not None:
        (out / "eval.json").write_text(json.dumps(run.evaluation.as_dict(), indent=2))
    try:
        plot_curves(run.history, out / "loss_curves.png", title=trainee.name)
    except OSError as exc:
        log(f"could not draw loss curves: {exc}")
    return TrainResult(out, model_path, config.steps, run.seconds(), run.history, run.evaluation, head)


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


__all__ = ["LossFn", "TrainResult", "learning_rate", "run_training"]
