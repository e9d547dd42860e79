"""The network being trained: a compact student (preset or weights file) or a trainable zoo model,
float32 on CPU, with an optional learnt metric head.

:meth:`Trainee.raw` maps N x 3 x H x W normalised pixels to the N x H x W network output at the
input's size (relative inverse depth, or metres for metric models); :meth:`Trainee.forward` adds the
metric head, whose output is depth in metres.
"""

from __future__ import annotations

import math
import os
from typing import Any

from .config import TrainingError
from ..depth.student import PRESETS


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
    from ..depth.student import build_student, load_student, student_info
    from ..depth.zoo import student_spec

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


def metric_head_class() -> Any:
    """The ``MetricHead`` torch module class (built on first use: torch is imported lazily)."""
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


def default_crop(trainee: Trainee) -> tuple[int, int]:
    """(height, width) of training crops: the model's input size, at 4:3 unless it takes squares."""
    m = trainee.spec.patch_multiple
    h = trainee.spec.input_size  # a zoo ``_tiny`` spec already carries its tiny input size
    if trainee.spec.resize_mode == "fixed":
        return h, h
    return h, max(m, int(round(h * 4 / 3 / m)) * m)


__all__ = ["Trainee", "default_crop", "make_trainee", "metric_head_class"]
