"""Fine-tuning: ``depth-perception train --model NAME [--weights PATH] --data SPEC --out DIR``.

The model is the compact student (``student``, ``student_tiny`` or a student ``.safetensors``
given as ``--weights``) or any trainable zoo network (transformers, random or loaded weights).
Relative models learn with the affine-invariant loss on inverse depth (SSI + gradient matching,
+ normals when K is known); metric models, and relative ones given ``metric=True`` (a learnt global
inverse-affine metric head on top), learn with SILog on metric depth from dense or sparse targets.

Out folder::

    checkpoints/step_0000500.safetensors   weights + optimiser state + metadata (resume)
    model.safetensors                      final weights (student metadata, or transformers keys)
    history.csv, eval.json                 loss per step, held-out metrics per evaluation
    loss_curves.png                        loss and held-out AbsRel curves (matplotlib or OpenCV)
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .data import Augment, DataError, DepthDataset, TrainingView, open_dataset, split
from .losses import LossConfig, LossMode, LossTerms, depth_loss
from .student import PRESETS

CHECKPOINT_DIR = "checkpoints"
MODEL_FILE = "model.safetensors"


class TrainingError(ValueError):
    """A training request that cannot run (unknown model, incompatible options, bad checkpoint)."""


# ------------------------------------------------------------------------------------- trainee


class Trainee:
    """The network being trained and what the loop needs to know about it."""

    def __init__(self, net: Any, name: str, kind: str, spec: Any, is_student: bool) -> None:
        self.net, self.name, self.kind, self.spec, self.is_student = net, name, kind, spec, is_student
        self.metric_head: Any = None

    @property
    def mean(self) -> tuple[float, ...]:
        return tuple(self.spec.mean)

    @property
    def std(self) -> tuple[float, ...]:
        return tuple(self.spec.std)

    def modules(self) -> list[Any]:
        return [self.net] + ([self.metric_head] if self.metric_head is not None else [])

    def parameters(self) -> list[Any]:
        return [p for m in self.modules() for p in m.parameters() if p.requires_grad]

    def train(self, mode: bool = True) -> None:
        for m in self.modules():
            m.train(mode)

    def raw(self, pixel_values: Any) -> Any:
        """N x H x W network output at the input's size."""
        import torch.nn.functional as F

        out = self.net(pixel_values=pixel_values, return_dict=True).predicted_depth
        if out.ndim == 4:
            out = out[:, 0]
        if tuple(out.shape[-2:]) != tuple(pixel_values.shape[-2:]):
            out = F.interpolate(out[:, None], size=pixel_values.shape[-2:], mode="bilinear",
                                align_corners=False)[:, 0]
        return out

    def forward(self, pixel_values: Any) -> Any:
        out = self.raw(pixel_values)
        return self.metric_head(out) if self.metric_head is not None else out

    @property
    def output_kind(self) -> str:
        """What :meth:`forward` returns: ``metric`` (metres) or ``relative_inverse``."""
        return "metric" if self.metric_head is not None else self.kind


def make_trainee(model: str, weights: str | os.PathLike | None = None, seed: int = 0) -> Trainee:
    """A student preset/file or a zoo network, float32 on CPU."""
    from .student import build_student, load_student, student_info, student_spec

    if model in PRESETS:
        if weights is not None:
            net = load_student(weights)
            info = student_info(weights)
            spec = student_spec(model, info.config)
        else:
            net = build_student(model, seed=seed)
            spec = student_spec(model, PRESETS[model])
        return Trainee(net, model, "relative_inverse", spec, is_student=True)
    from ..depth.weights import build_model
    from ..depth.zoo import get_spec

    spec = get_spec(model)
    if spec.family == "marigold":
        raise TrainingError("Marigold (a diffusion pipeline) cannot be trained here; choose a student "
                            "or a Depth Anything / DPT / ZoeDepth / Depth Pro model")
    if spec.family == "student":  # registered in the zoo by name: same as the preset
        return make_trainee("student", weights, seed)
    if spec.extra_inputs:
        raise TrainingError(f"{spec.name} needs extra inputs ({', '.join(spec.extra_inputs)}); not trainable "
                            "with this command")
    net = build_model(spec, weights=weights, random_init=weights is None, seed=seed)
    return Trainee(net, spec.name, spec.output, spec, is_student=False)


def _metric_head_class() -> Any:
    import torch
    from torch import nn

    class MetricHead(nn.Module):
        """Relative inverse depth → metres: ``1 / max(scale * out + shift, 1/max_depth)`` with a learnt
        global scale (> 0, log-parametrised) and shift; the same map as the pipeline's fixed metric
        mode (``fixed_scale``, ``fixed_shift``)."""

        def __init__(self, max_depth_m: float = 100.0) -> None:
            super().__init__()
            self.log_scale = nn.Parameter(torch.zeros(()))
            self.shift = nn.Parameter(torch.zeros(()))
            self.min_inverse = 1.0 / max_depth_m

        def forward(self, out: torch.Tensor) -> torch.Tensor:
            inv = torch.exp(self.log_scale) * out + self.shift
            return 1.0 / inv.clamp(min=self.min_inverse)

        def initialise(self, out: torch.Tensor, depth_m: torch.Tensor) -> None:
            """Least-squares inverse-affine start from one batch (a random start would sit in the
            clamp, where no gradient flows)."""
            ok = torch.isfinite(depth_m) & (depth_m > 0) & torch.isfinite(out)
            x, y = out[ok].double(), 1.0 / depth_m[ok].double()
            if x.numel() < 2 or float(x.std()) == 0:
                return
            s = float(((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum())
            s = abs(s) if s != 0 else 1.0
            with torch.no_grad():
                self.log_scale.fill_(math.log(s))
                self.shift.fill_(float(y.mean() - s * x.mean()))

        def values(self) -> tuple[float, float]:
            return float(torch.exp(self.log_scale)), float(self.shift)

    return MetricHead


# ------------------------------------------------------------------------------------ config


@dataclass
class TrainConfig:
    """One training run. ``crop_hw`` defaults to the model's input size at 4:3."""

    model: str = "student"
    weights: str | None = None
    data: str = "tabletop"
    out: str = "train_out"
    steps: int = 2000
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    crop_hw: tuple[int, int] | None = None
    loss: LossConfig = field(default_factory=LossConfig)
    metric: bool = False
    holdout: int = 16
    eval_every: int = 500
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    seed: int = 0
    threads: int | None = 1
    precision: str = "fp32"  # or bf16 (CPU autocast; AMX/AVX-512 BF16 CPUs and CUDA)
    device: str = "cpu"
    resume: bool = False
    augment: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise TrainingError(f"steps and batch size must be >= 1, got {self.steps}, {self.batch_size}")
        if not self.lr > 0:
            raise TrainingError(f"learning rate must be > 0, got {self.lr}")
        if self.precision not in ("fp32", "bf16"):
            raise TrainingError(f"precision must be fp32 or bf16, got {self.precision!r}")


def learning_rate(step: int, config: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to 5 %: a function of the step alone, so resuming needs
    no scheduler state."""
    warm = min(config.warmup_steps, max(1, config.steps // 10))
    if step < warm:
        return config.lr * (step + 1) / warm
    t = (step - warm) / max(1, config.steps - warm)
    return config.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def default_crop(trainee: Trainee) -> tuple[int, int]:
    m = trainee.spec.patch_multiple
    h = trainee.spec.input_size  # a zoo ``_tiny`` spec already carries its tiny input size
    if trainee.spec.resize_mode == "fixed":
        return h, h
    return h, max(m, int(round(h * 4 / 3 / m)) * m)


# --------------------------------------------------------------------------------- evaluation


@dataclass
class EvalSummary:
    """Mean per-image metrics on held-out images (relative models after the oracle inverse-affine
    alignment to ground truth), and CPU milliseconds per image."""

    abs_rel: float
    delta1: float
    n_images: int
    ms_per_image: float
    aligned: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def aligned_depth(prediction: np.ndarray, kind: str, gt_m: np.ndarray) -> np.ndarray:
    """Depth in metres from a prediction of ``kind``: metric as is; relative inverse depth through
    the oracle inverse-affine fit to ``gt_m`` (metric.oracle_inverse_affine); affine-invariant depth
    (``relative_depth``) through a least-squares affine fit in depth."""
    from ..metrics import oracle_inverse_affine

    pred = np.asarray(prediction, np.float64)
    if kind == "metric":
        return pred.astype(np.float32)
    if kind == "relative_depth":
        ok = np.isfinite(pred) & np.isfinite(gt_m) & (gt_m > 0)
        A = np.column_stack([pred[ok], np.ones(ok.sum())])
        (a, b), *_ = np.linalg.lstsq(A, gt_m[ok].astype(np.float64), rcond=None)
        d = a * pred + b
        return np.where(d > 0, d, np.nan).astype(np.float32)
    s, t = oracle_inverse_affine(pred, gt_m)
    inv = s * pred + t
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(inv > 0, 1.0 / inv, np.nan).astype(np.float32)


def evaluate(predict: Callable[[np.ndarray], np.ndarray], kind: str, dataset: DepthDataset,
             progress: bool = False, desc: str = "evaluating") -> EvalSummary:
    """AbsRel and delta1 of ``predict`` (HxWx3 uint8 → HxW) over a dataset with depth."""
    from tqdm import tqdm

    from ..metrics import depth_metrics

    if not dataset.has_depth:
        raise DataError(f"{dataset.description}: no ground-truth depth to evaluate against")
    rel, d1, ms = [], [], []
    for sample in tqdm(dataset, total=len(dataset), desc=desc, leave=False, disable=not progress or None):
        t0 = time.perf_counter()
        pred = predict(sample.rgb)
        ms.append((time.perf_counter() - t0) * 1e3)
        m = depth_metrics(aligned_depth(pred, kind, sample.depth_m), sample.depth_m)
        if m.n:
            rel.append(m.abs_rel)
            d1.append(m.delta1)
    if not rel:
        return EvalSummary(float("nan"), float("nan"), 0, float(np.median(ms)) if ms else 0.0, kind != "metric")
    return EvalSummary(float(np.mean(rel)), float(np.mean(d1)), len(rel), float(np.median(ms)),
                       kind != "metric")


def make_predictor(trainee: Trainee, input_size: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """HxWx3 uint8 → HxW output of the trainee (the depth engine's pre/post-processing)."""
    import torch

    from ..depth.processing import postprocess, preprocess

    spec = trainee.spec
    size = input_size or spec.input_size

    def predict(rgb: np.ndarray) -> np.ndarray:
        device = next(trainee.net.parameters()).device  # wherever training put it
        x, geo = preprocess(rgb, spec, size, device=device)
        was_training = trainee.net.training
        trainee.train(False)
        with torch.inference_mode():
            out = trainee.forward(x)
        trainee.train(was_training)
        return postprocess(out.float(), geo)

    return predict


# ------------------------------------------------------------------------------- checkpoints


def _checkpoint_path(out: Path, step: int) -> Path:
    return out / CHECKPOINT_DIR / f"step_{step:07d}.safetensors"


def latest_checkpoint(out: str | os.PathLike) -> Path | None:
    folder = Path(out) / CHECKPOINT_DIR
    if not folder.is_dir():
        return None
    found = sorted(p for p in folder.glob("step_*.safetensors") if re.fullmatch(r"step_\d+", p.stem))
    return found[-1] if found else None


def save_checkpoint(path: Path, trainee: Trainee, optimizer: Any, step: int, meta: dict[str, str]) -> Path:
    """Weights (``model.*``), metric head (``head.*``) and AdamW state (``optim.<i>.*``) in one
    safetensors file; step and configuration in its metadata. Written atomically."""
    import torch
    from safetensors.torch import save_file

    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in trainee.net.state_dict().items()}
    if trainee.metric_head is not None:
        tensors.update({f"head.{k}": v.detach().cpu().contiguous()
                        for k, v in trainee.metric_head.state_dict().items()})
    for i, state in optimizer.state_dict()["state"].items():
        for k, v in state.items():
            tensors[f"optim.{i}.{k}"] = torch.as_tensor(v).detach().cpu().contiguous()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata={**meta, "step": str(step)})
    os.replace(tmp, path)
    return path


def load_checkpoint(path: Path, trainee: Trainee, optimizer: Any) -> int:
    """Restore weights and optimiser state; return the step the checkpoint was taken after."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
        tensors = load_file(str(path))
    except Exception as exc:  # noqa: BLE001
        raise TrainingError(f"{path}: not a readable checkpoint: {exc}") from exc
    if meta.get("model") != trainee.name:
        raise TrainingError(f"{path}: checkpoint of model {meta.get('model')!r}, not {trainee.name!r}")
    model_sd = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        trainee.net.load_state_dict(model_sd, strict=True)
        if trainee.metric_head is not None:
            trainee.metric_head.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("head.")})
    except RuntimeError as exc:
        raise TrainingError(f"{path}: weights do not fit {trainee.name}: {str(exc).splitlines()[0]}") from exc
    sd = optimizer.state_dict()
    state: dict[int, dict[str, Any]] = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, i, name = k.split(".", 2)
            state.setdefault(int(i), {})[name] = v
    sd["state"] = state
    optimizer.load_state_dict(sd)
    return int(meta["step"])


def save_final(trainee: Trainee, path: Path, extra: dict[str, str]) -> Path:
    """The trained weights: a student file (with its metadata) or transformers-keyed safetensors
    that ``DepthEstimator(name, weights=path)`` loads."""
    if trainee.is_student:
        from .student import save_student

        return save_student(trainee.net, path, name=trainee.name, extra=extra)
    from ..depth.weights import save_weights

    return save_weights(trainee.net, path)


# ------------------------------------------------------------------------------------ history


HISTORY_FIELDS = ("step", "lr", "total", "si", "grad", "normal", "eval_abs_rel", "eval_delta1", "seconds")


def _read_history(path: Path, up_to_step: int) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    with path.open() as f:
        rows = [{k: (float(v) if v not in ("", None) else None) for k, v in r.items()} for r in csv.DictReader(f)]
    return [r for r in rows if r["step"] is not None and r["step"] <= up_to_step]


def _write_history(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=HISTORY_FIELDS)
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in HISTORY_FIELDS})
    os.replace(tmp, path)


def plot_curves(rows: Sequence[dict[str, Any]], path: str | os.PathLike, title: str = "") -> Path:
    """Loss (log scale, raw and smoothed) and held-out AbsRel against step, as a PNG. Uses
    matplotlib when installed, else draws with OpenCV (always available)."""
    path = Path(path)
    steps = np.array([r["step"] for r in rows if r.get("total") is not None], np.float64)
    loss = np.array([r["total"] for r in rows if r.get("total") is not None], np.float64)
    ev = [(r["step"], r["eval_abs_rel"]) for r in rows if r.get("eval_abs_rel") is not None]
    smooth = _ema(loss, 0.9) if loss.size else loss
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return _plot_cv2(steps, loss, smooth, ev, path, title)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    axes[0].semilogy(steps, loss, alpha=0.3, label="loss")
    axes[0].semilogy(steps, smooth, label="smoothed")
    axes[0].set_xlabel("step")
    axes[0].legend()
    if ev:
        axes[1].plot(*zip(*ev), marker="o")
    axes[1].set_xlabel("step")
    axes[1].set_ylabel("held-out AbsRel")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _ema(x: np.ndarray, k: float) -> np.ndarray:
    """Exponential moving average y[i] = k y[i-1] + (1-k) x[i], started at x[0]."""
    from scipy.signal import lfilter

    y, _ = lfilter([1.0 - k], [1.0, -k], x, zi=[k * x[0]])
    return np.asarray(y)


def _plot_cv2(steps: np.ndarray, loss: np.ndarray, smooth: np.ndarray, ev: list, path: Path, title: str) -> Path:
    import cv2

    H, W, pad = 360, 480, 50
    canvas = np.full((H, 2 * W, 3), 255, np.uint8)

    def panel(x0: int, xs: np.ndarray, series: list[tuple[np.ndarray, tuple[int, int, int]]], log: bool,
              label: str) -> None:
        cv2.rectangle(canvas, (x0 + pad, 20), (x0 + W - 15, H - pad), (0, 0, 0), 1)
        cv2.putText(canvas, label, (x0 + pad, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        ys_all = np.concatenate([s for s, _ in series]) if series else np.array([])
        ys_all = ys_all[np.isfinite(ys_all) & ((ys_all > 0) if log else True)]
        if xs.size == 0 or ys_all.size == 0:
            return
        f = np.log10 if log else (lambda v: v)
        lo, hi = float(f(ys_all).min()), float(f(ys_all).max())
        hi = hi if hi > lo else lo + 1e-6
        x_lo, x_hi = float(xs.min()), float(xs.max()) if xs.max() > xs.min() else float(xs.min()) + 1

        def px(x: np.ndarray, y: np.ndarray) -> np.ndarray:
            u = x0 + pad + (x - x_lo) / (x_hi - x_lo) * (W - pad - 15)
            v = (H - pad) - (f(np.maximum(y, 1e-12) if log else y) - lo) / (hi - lo) * (H - pad - 20)
            return np.stack([u, v], 1).astype(np.int32)

        for ys, colour in series:
            pts = px(xs, ys)
            cv2.polylines(canvas, [pts.reshape(-1, 1, 2)], False, colour, 1, cv2.LINE_AA)
            if len(pts) < 30:
                for p in pts:
                    cv2.circle(canvas, tuple(int(c) for c in p), 3, colour, -1)
        for frac in (0.0, 0.5, 1.0):
            val = lo + frac * (hi - lo)
            txt = f"{10 ** val:.3g}" if log else f"{val:.3g}"
            v = int((H - pad) - frac * (H - pad - 20))
            cv2.putText(canvas, txt, (x0 + 2, v + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
        for frac in (0.0, 0.5, 1.0):
            u = int(x0 + pad + frac * (W - pad - 15))
            cv2.putText(canvas, f"{x_lo + frac * (x_hi - x_lo):.0f}", (u - 10, H - pad + 16),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(canvas, "step", (x0 + W // 2, H - 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1,
                    cv2.LINE_AA)

    panel(0, steps, [(loss, (200, 200, 200)), (smooth, (180, 80, 0))], True, f"training loss {title}")
    if ev:
        xs, ys = (np.array(v, np.float64) for v in zip(*ev))
        panel(W, xs, [(ys, (0, 0, 200))], False, "held-out AbsRel")
    else:
        panel(W, np.array([]), [], False, "held-out AbsRel (no evaluation)")
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), canvas):
        raise OSError(f"{path}: could not write the loss curves")
    return path


# ------------------------------------------------------------------------------------- the loop


LossFn = Callable[[Trainee, dict[str, Any], Any], LossTerms]


def _collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    import torch

    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


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


def run_training(trainee: Trainee, view: TrainingView, config: TrainConfig, loss_fn: LossFn,
                 eval_fn: Callable[[], EvalSummary | None] | None = None,
                 log: Callable[[str], None] | None = None, extra_meta: dict[str, str] | None = None) -> TrainResult:
    """The optimisation loop shared by ``train`` and ``distill``."""
    import torch
    from tqdm import tqdm

    log = log or (lambda m: print(m, file=sys.stderr))
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
    per_epoch = n // config.batch_size
    optimizer = torch.optim.AdamW(trainee.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    meta = {"model": trainee.name, "config": json.dumps(_jsonable(asdict(config)), sort_keys=True),
            **(extra_meta or {})}
    start = 0
    history_path = out / "history.csv"
    ckpt = latest_checkpoint(out) if config.resume else None
    if config.resume and ckpt is None:
        log(f"no checkpoint in {out / CHECKPOINT_DIR}: starting from step 0")
    if ckpt is not None:
        start = load_checkpoint(ckpt, trainee, optimizer)
        log(f"resumed from {ckpt} (step {start})")
    elif config.resume is False and latest_checkpoint(out) is not None:
        raise TrainingError(f"{out} already holds checkpoints: pass --resume to continue, or choose a "
                            "new --out")
    history = _read_history(history_path, start)
    evaluation: EvalSummary | None = None
    t0 = time.perf_counter()
    seconds0 = float(history[-1]["seconds"]) if history and history[-1].get("seconds") else 0.0
    trainee.train(True)
    bar = tqdm(range(start, config.steps), initial=start, total=config.steps, unit="step",
               desc=f"training {trainee.name}", disable=not config.progress or None)
    step = start
    for step in bar:
        epoch, offset = divmod(step, per_epoch)
        order = np.random.default_rng((config.seed, epoch)).permutation(n)
        view.epoch = epoch
        batch = _collate([view[int(i)] for i in order[offset * config.batch_size:(offset + 1) * config.batch_size]])
        batch = {k: v.to(device) for k, v in batch.items()}
        lr = learning_rate(step, config)
        for g in optimizer.param_groups:
            g["lr"] = lr
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.precision == "bf16"):
            raw = trainee.raw(batch["pixel_values"])
        raw = raw.float()
        if trainee.metric_head is not None and step == 0:
            trainee.metric_head.initialise(raw.detach(), batch["target"])
        pred = trainee.metric_head(raw) if trainee.metric_head is not None else raw
        terms = loss_fn(trainee, batch, pred)
        optimizer.zero_grad(set_to_none=True)
        terms.total.backward()
        torch.nn.utils.clip_grad_norm_(trainee.parameters(), 5.0)
        optimizer.step()
        row: dict[str, Any] = {"step": step + 1, "lr": lr, **terms.as_floats(),
                               "seconds": seconds0 + time.perf_counter() - t0}
        done = step + 1
        if eval_fn is not None and (done % config.eval_every == 0 or done == config.steps):
            trainee.train(False)
            evaluation = eval_fn()
            trainee.train(True)
            if evaluation is not None:
                row["eval_abs_rel"], row["eval_delta1"] = evaluation.abs_rel, evaluation.delta1
                tqdm.write(f"step {done}: held-out AbsRel {evaluation.abs_rel:.4f}, delta1 {evaluation.delta1:.4f}",
                           file=sys.stderr)  # stdout is for results
        history.append(row)
        bar.set_postfix(loss=f"{row['total']:.4f}", lr=f"{lr:.2e}")
        if done % config.checkpoint_every == 0 or done == config.steps:
            save_checkpoint(_checkpoint_path(out, done), trainee, optimizer, done, meta)
            _prune(out, config.keep_checkpoints)
            _write_history(history_path, history)
    bar.close()
    _write_history(history_path, history)
    trainee.train(False)
    extra = {"trained_steps": str(config.steps), "data": config.data}
    head = trainee.metric_head.values() if trainee.metric_head is not None else None
    if head is not None:
        extra |= {"metric_head_scale": f"{head[0]:.9g}", "metric_head_shift": f"{head[1]:.9g}"}
    model_path = save_final(trainee, out / MODEL_FILE, extra)
    if evaluation is not None:
        (out / "eval.json").write_text(json.dumps(evaluation.as_dict(), indent=2))
    try:
        plot_curves(history, out / "loss_curves.png", title=trainee.name)
    except OSError as exc:
        log(f"could not draw loss curves: {exc}")
    seconds = seconds0 + time.perf_counter() - t0
    return TrainResult(out, model_path, config.steps, seconds, history, evaluation, head)


def _prune(out: Path, keep: int) -> None:
    found = sorted((out / CHECKPOINT_DIR).glob("step_*.safetensors"))
    for old in found[:-max(1, keep)]:
        old.unlink(missing_ok=True)


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


# ------------------------------------------------------------------------------------- train()


def train(config: TrainConfig, log: Callable[[str], None] | None = None) -> TrainResult:
    """Fine-tune (or train from scratch) ``config.model`` on ``config.data``."""
    import torch

    if config.threads:
        torch.set_num_threads(int(config.threads))
    trainee = make_trainee(config.model, config.weights, config.seed)
    if config.metric:
        if trainee.kind == "relative_inverse":
            trainee.metric_head = _metric_head_class()()
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


__all__ = [
    "EvalSummary", "TrainConfig", "TrainResult", "Trainee", "TrainingError", "aligned_depth", "evaluate",
    "latest_checkpoint", "learning_rate", "make_predictor", "make_trainee", "plot_curves", "run_training",
    "save_checkpoint", "load_checkpoint", "train",
]
