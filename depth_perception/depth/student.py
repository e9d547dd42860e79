"""The compact student: a small encoder-decoder CNN predicting relative inverse depth.

This is the project's own network (not a re-typed published architecture): a residual encoder down
to 1/16 of the input, a global-context vector (image-wide average of the deepest features, which
carries the camera's tilt over the whole table), and a U-Net-style decoder with skip connections
back to full resolution. Everything is convolution, batch norm, ReLU, average pooling and bilinear
resizing, so it exports to ONNX with dynamic batch, height and width and runs fast on a CPU or a
Jetson.

Its interface is the one the depth engine uses for transformers models, so the torch backend and
the ONNX exporter take it unchanged::

    net = load_student(default_weights_path())
    out = net(pixel_values=x)             # x: N x 3 x H x W, normalised (mean/std below)
    out.predicted_depth                   # N x H x W relative inverse depth (near = large)

H and W must be multiples of :attr:`StudentConfig.patch_multiple` (16). Weights are a safetensors
file whose header metadata holds the configuration and the preprocessing (``student_info``).
The zoo registers it as ``student_tabletop`` (:func:`depth_perception.depth.zoo.student_spec`);
writing and calibrating weights files is training's part (:mod:`depth_perception.training.student`).
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

# the zoo's values, repeated (not imported): the zoo imports this module to register the student
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

DEFAULT_NAME = "student_tabletop"
DEFAULT_WEIGHTS = "student_tabletop.safetensors"
OUTPUT_KIND: Literal["relative_inverse"] = "relative_inverse"
#: the ``architecture`` entry of a student weights file's metadata
ARCHITECTURE = "depth_perception.student"


class StudentWeightsError(ValueError):
    """A student weights file that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class StudentConfig:
    """Widths of the encoder stages (stride 2, 4, 8, 16) and residual blocks per stage.

    ``input_size``: the shorter input side the student was trained at (the depth engine resizes
    images to it); ``patch_multiple``: both input sides must be multiples of it.
    """

    widths: tuple[int, ...] = (24, 32, 64, 96)
    blocks: tuple[int, ...] = (1, 2, 2, 2)
    decoder_widths: tuple[int, ...] = (64, 48, 24, 16)  # at 1/8, 1/4, 1/2, 1/1
    input_size: int = 144
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        if len(self.widths) != 4 or len(self.blocks) != 4 or len(self.decoder_widths) != 4:
            raise ValueError("a student has 4 encoder stages and 4 decoder stages: widths, blocks and "
                             f"decoder_widths need 4 entries each, got {self}")
        if min(self.widths + self.decoder_widths) < 1 or min(self.blocks) < 0:
            raise ValueError(f"student widths must be >= 1 and blocks >= 0, got {self}")
        if self.input_size % self.patch_multiple:
            raise ValueError(f"input_size {self.input_size} must be a multiple of {self.patch_multiple}")

    @property
    def patch_multiple(self) -> int:
        return 16

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "StudentConfig":
        d = json.loads(text)
        return cls(widths=tuple(d["widths"]), blocks=tuple(d["blocks"]),
                   decoder_widths=tuple(d["decoder_widths"]), input_size=int(d["input_size"]),
                   mean=tuple(d["mean"]), std=tuple(d["std"]))


#: named sizes: ``student`` is the bundled model's architecture, ``student_tiny`` a test twin
PRESETS: dict[str, StudentConfig] = {
    "student": StudentConfig(),
    DEFAULT_NAME: StudentConfig(),
    "student_tiny": StudentConfig(widths=(4, 8, 8, 16), blocks=(0, 1, 1, 1),
                                  decoder_widths=(8, 8, 4, 4), input_size=32),
}


@dataclass(frozen=True)
class StudentInfo:
    """What a caller needs to run a student file: preprocessing and output semantics."""

    config: StudentConfig
    output: str = OUTPUT_KIND
    name: str = DEFAULT_NAME
    extra: dict[str, str] = field(default_factory=dict)  # the rest of the file's metadata

    @property
    def input_size(self) -> int:
        return self.config.input_size

    @property
    def patch_multiple(self) -> int:
        return self.config.patch_multiple

    @property
    def mean(self) -> tuple[float, float, float]:
        return self.config.mean

    @property
    def std(self) -> tuple[float, float, float]:
        return self.config.std


@dataclass
class StudentOutput:
    """Same field name as transformers' DepthEstimatorOutput, so the depth engine reads it alike."""

    predicted_depth: Any  # N x H x W


@functools.lru_cache(maxsize=1)
def _module_classes() -> tuple[Any, Any]:
    """The torch module classes, defined on first use so that importing this file needs no torch."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    def conv_bn(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out),
                             nn.ReLU(inplace=True))

    class Residual(nn.Module):
        def __init__(self, c: int) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c),
                                      nn.ReLU(inplace=True), nn.Conv2d(c, c, 3, 1, 1, bias=False),
                                      nn.BatchNorm2d(c))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.relu(x + self.body(x))

    class Up(nn.Module):
        """Upsample to the skip's size, concatenate, fuse with two 3x3 convolutions."""

        def __init__(self, c_in: int, c_skip: int, c_out: int, convs: int = 2) -> None:
            super().__init__()
            self.fuse = nn.Sequential(conv_bn(c_in + c_skip, c_out),
                                      *[conv_bn(c_out, c_out) for _ in range(convs - 1)])

        def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            return self.fuse(torch.cat([x, skip], dim=1))

    class StudentDepthNet(nn.Module):
        """N x 3 x H x W normalised RGB → N x H x W relative inverse depth (H, W multiples of 16)."""

        def __init__(self, config: StudentConfig) -> None:
            super().__init__()
            self.config = config
            w, d = config.widths, config.decoder_widths
            stages = []
            c_prev = 3
            for c, n in zip(w, config.blocks):
                stages.append(nn.Sequential(conv_bn(c_prev, c, stride=2), *[Residual(c) for _ in range(n)]))
                c_prev = c
            self.stages = nn.ModuleList(stages)
            self.context = nn.Sequential(nn.Conv2d(w[3], w[3], 1), nn.ReLU(inplace=True))
            self.up3 = Up(2 * w[3], w[2], d[0])  # 1/16 → 1/8
            self.up2 = Up(d[0], w[1], d[1])  # → 1/4
            self.up1 = Up(d[1], w[0], d[2])  # → 1/2
            # → 1/1 with the image itself as the skip: one light convolution sharpens edges, the
            # bulk of the decoding happens at lower resolution where it is cheap
            self.up0 = Up(d[2], 3, d[3], convs=1)
            self.head = nn.Conv2d(d[3], 1, 3, 1, 1)
            # a fixed affine of the output (calibrated after training, see ``calibrate_output``):
            # keeps the relative output in a familiar range without touching what the net learnt
            self.register_buffer("output_scale", torch.ones(()))
            self.register_buffer("output_shift", torch.zeros(()))

        def forward(self, pixel_values: torch.Tensor, return_dict: bool = True) -> Any:
            x = pixel_values
            feats = []
            for stage in self.stages:
                x = stage(x)
                feats.append(x)
            g = self.context(F.adaptive_avg_pool2d(x, 1))
            x = torch.cat([x, g.expand_as(x)], dim=1)
            x = self.up3(x, feats[2])
            x = self.up2(x, feats[1])
            x = self.up1(x, feats[0])
            x = self.up0(x, pixel_values)
            depth = self.head(x)[:, 0] * self.output_scale + self.output_shift
            return StudentOutput(depth) if return_dict else (depth,)

    return StudentDepthNet, Residual


def build_student(config: StudentConfig | str = "student", seed: int = 0) -> Any:
    """A freshly initialised student (seeded; eval mode) from a config or a preset name."""
    import torch

    if isinstance(config, str):
        if config not in PRESETS:
            raise ValueError(f"unknown student {config!r}; known: {', '.join(PRESETS)}")
        config = PRESETS[config]
    cls = _module_classes()[0]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = cls(config)
    return net.eval()


def is_student(model: Any) -> bool:
    return isinstance(model, _module_classes()[0])


def student_info(path: str | os.PathLike) -> StudentInfo:
    """Configuration, preprocessing and output kind of a student weights file (header only)."""
    path = Path(path)
    if not path.is_file():
        raise StudentWeightsError(f"student weights not found: {path}")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
    except Exception as exc:  # noqa: BLE001 - SafetensorError, OSError, ...
        raise StudentWeightsError(f"{path}: not a readable safetensors file: {exc}") from exc
    if meta.get("architecture") != ARCHITECTURE or "config" not in meta:
        raise StudentWeightsError(f"{path}: not a depth_perception student (no student metadata)")
    try:
        config = StudentConfig.from_json(meta.pop("config"))
    except (ValueError, KeyError, TypeError) as exc:
        raise StudentWeightsError(f"{path}: unreadable student configuration: {exc}") from exc
    output = meta.pop("output", OUTPUT_KIND)
    name = meta.pop("name", DEFAULT_NAME)
    return StudentInfo(config=config, output=output, name=name, extra=meta)


def load_student(path: str | os.PathLike | None = None) -> Any:
    """The student in eval mode, float32 on CPU, from a weights file (default: the bundled one)."""
    from safetensors.torch import load_file

    path = Path(path) if path is not None else default_weights_path()
    info = student_info(path)
    net = build_student(info.config)
    sd = load_file(str(path))
    own = {k for k in net.state_dict() if not k.endswith("num_batches_tracked")}
    missing, unexpected = sorted(own - set(sd)), sorted(set(sd) - own)
    if missing or unexpected:
        raise StudentWeightsError(f"{path}: weights do not match the student configuration "
                                  f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    try:
        net.load_state_dict(sd, strict=False)
    except RuntimeError as exc:  # shape mismatches
        raise StudentWeightsError(f"{path}: {str(exc).splitlines()[0]}") from exc
    net.eval()
    net._depth_spec_name = info.name
    return net


def default_weights_path() -> Path:
    """The bundled student's weights inside the installed package (``depth_perception/data``)."""
    return Path(__file__).resolve().parent.parent / "data" / DEFAULT_WEIGHTS


__all__ = [
    "ARCHITECTURE", "DEFAULT_NAME", "DEFAULT_WEIGHTS", "OUTPUT_KIND", "PRESETS", "StudentConfig",
    "StudentInfo", "StudentOutput", "StudentWeightsError", "build_student", "default_weights_path",
    "is_student", "load_student", "student_info",
]
