"""Checkpoints and final weights of a training run, in its out folder::

    checkpoints/step_0000500.safetensors   weights + metric head + AdamW state; step and config in
                                           the metadata (what ``--resume`` continues from)
    model.safetensors                      final weights (student metadata, or transformers keys)

Every file is written to a temporary name and renamed, so a killed run never leaves half a file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from .config import TrainingError
from .trainee import Trainee

CHECKPOINT_DIR = "checkpoints"
MODEL_FILE = "model.safetensors"


def checkpoint_path(out: Path, step: int) -> Path:
    """Where the checkpoint taken after ``step`` steps goes."""
    return out / CHECKPOINT_DIR / f"step_{step:07d}.safetensors"


def latest_checkpoint(out: str | os.PathLike) -> Path | None:
    """The newest checkpoint in the out folder ``out``; None when there is none."""
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


def prune_checkpoints(out: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` (at least one) checkpoints in ``out``."""
    found = sorted((out / CHECKPOINT_DIR).glob("step_*.safetensors"))
    for old in found[:-max(1, keep)]:
        old.unlink(missing_ok=True)


__all__ = ["CHECKPOINT_DIR", "MODEL_FILE", "checkpoint_path", "latest_checkpoint", "load_checkpoint",
           "prune_checkpoints", "save_checkpoint", "save_final"]
