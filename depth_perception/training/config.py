"""What one training run is asked to do (:class:`TrainConfig`), and the error raised for a request
that cannot run (:class:`TrainingError`).

Units: ``lr`` and ``weight_decay`` are AdamW's; ``steps``, ``warmup_steps``, ``eval_every`` and
``checkpoint_every`` count optimiser steps of ``batch_size`` images; ``crop_hw`` is (height, width)
in pixels of the network input.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .losses import LossConfig


class TrainingError(ValueError):
    """A training request that cannot run (unknown model, incompatible options, bad checkpoint)."""


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


__all__ = ["TrainConfig", "TrainingError"]
