"""Model zoo: named monocular depth networks, their output semantics, input rules and licences.

Architectures come from maintained libraries (transformers; diffusers for Marigold), never re-typed
here: a spec only says which class to build and with which configuration (Depth Anything 3 is
transformers' Depth Anything with its own output activation: ``depth_anything_3.py``). Every model also has a
``<name>_tiny`` twin: the same architecture from a tiny configuration, for tests and plumbing only
(random weights, seconds instead of minutes).

Configurations of the real models follow the published checkpoints (transformers' conversion scripts
and the hub configs), so ``--random-init`` builds a model of the real size: inference cost does not
depend on the weight values, which makes benchmarks without weights honest.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Literal

from . import student

#: "relative_inverse": affine-invariant inverse depth (near = large); "relative_depth":
#: affine-invariant depth (far = large, Marigold); "metric": metres. The metric aligner's
#: prediction kinds (``metric.PREDICTION_KINDS``) are the same three.
OutputKind = Literal["relative_inverse", "relative_depth", "metric"]
ResizeMode = Literal["short_side", "fixed"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF_MEAN = (0.5, 0.5, 0.5)
HALF_STD = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class ModelSpec:
    """One named model.

    ``input_size`` is the network's shorter input side in pixels for ``resize_mode="short_side"``
    (the longer side keeps the image's aspect ratio; both are rounded to ``patch_multiple``), or the
    side of the square input for ``resize_mode="fixed"`` (models trained at one fixed size).
    """

    name: str
    family: str  # depth_anything_v2, depth_anything, depth_anything_3, dpt, zoedepth, depth_pro, prompt_depth_anything, marigold
    output: OutputKind
    input_size: int
    patch_multiple: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    licence: str
    make_config: Callable[[], Any] = field(repr=False, compare=False)
    make_tiny_config: Callable[[], Any] | None = field(default=None, repr=False, compare=False)
    max_depth_m: float | None = None  # metric heads with a bounded output (sigmoid * max_depth)
    hub_id: str | None = None
    model_class: str = "DepthAnythingForDepthEstimation"  # a transformers (or diffusers) class name
    resize_mode: ResizeMode = "short_side"
    #: extra network inputs besides ``pixel_values`` (Prompt Depth Anything: ``prompt_depth``)
    extra_inputs: tuple[str, ...] = ()
    #: what can read the original (non-HF) checkpoint of this family (``weights.load_original``)
    original_format: str | None = None
    #: the metric scale comes from the image's focal length fx in pixels (from K), which the
    #: pipeline passes as ``fx_px``: Depth Pro (else its own field-of-view estimate), Depth
    #: Anything 3 Metric (required: its output is depth at a canonical focal length)
    takes_focal: bool = False
    exportable: bool = True  # ONNX export / ONNX Runtime / TensorRT possible
    requires: tuple[str, ...] = ("transformers",)  # importable modules the model needs
    tiny: bool = False
    tiny_input_size: int | None = None  # input_size of the ``_tiny`` twin (default: per family)
    description: str = ""

    @property
    def dynamic_size(self) -> bool:
        """Whether the network accepts any input size (a multiple of ``patch_multiple``)."""
        return self.resize_mode != "fixed"

    def tiny_spec(self) -> "ModelSpec":
        if self.make_tiny_config is None:
            raise ValueError(f"model {self.name!r} has no tiny configuration")
        return replace(
            self,
            name=f"{self.name}_tiny",
            make_config=self.make_tiny_config,
            make_tiny_config=None,
            input_size=self.tiny_input_size or _TINY_INPUT[self.family],
            licence="random weights (tests and plumbing only; no trained weights exist)",
            hub_id=None,
            tiny=True,
            description=f"tiny random-weight twin of {self.name} (same architecture)",
        )


class UnknownModelError(ValueError):
    """A model name that is not in the zoo; the message lists the known names."""


# ----------------------------------------------------------------------------------------- configs
# Each builder imports transformers lazily so that this module (and `depth-perception models`)
# works where transformers is absent.


def _dinov2(size: str, out_indices: list[int], tiny: bool = False) -> Any:
    from transformers import Dinov2Config

    if tiny:
        # image_size 28 (2x2 patches): the position embeddings are always interpolated
        return Dinov2Config(image_size=28, patch_size=14, hidden_size=32, num_hidden_layers=4,
                            num_attention_heads=2, intermediate_size=64, out_indices=out_indices,
                            apply_layernorm=True, reshape_hidden_states=False)
    hidden, layers, heads = {"s": (384, 12, 6), "b": (768, 12, 12), "l": (1024, 24, 16)}[size]
    return Dinov2Config(image_size=518, patch_size=14, hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=4 * hidden, layerscale_value=1.0,
                        out_indices=out_indices, apply_layernorm=True, reshape_hidden_states=False)


_DA_HEAD = {  # size -> (fusion_hidden_size, neck_hidden_sizes)
    "s": (64, [48, 96, 192, 384]),
    "b": (128, [96, 192, 384, 768]),
    "l": (256, [256, 512, 1024, 1024]),
}


def _depth_anything_config(size: str, v2: bool, metric_max_m: float | None = None,
                           prompt: bool = False) -> Callable[[], Any]:
    def build() -> Any:
        if prompt:
            from transformers import PromptDepthAnythingConfig as Config
        else:
            from transformers import DepthAnythingConfig as Config
        if v2 or prompt:
            out = [5, 12, 18, 24] if size == "l" else [3, 6, 9, 12]
        else:
            out = [21, 22, 23, 24] if size == "l" else [9, 10, 11, 12]
        backbone = _dinov2(size, out)
        fusion, neck = _DA_HEAD[size]
        kwargs: dict[str, Any] = {}
        if metric_max_m is not None:
            # transformers 5.x types max_depth as int; the published heads use 20 and 80
            kwargs = {"depth_estimation_type": "metric", "max_depth": int(metric_max_m)}
        return Config(backbone_config=backbone, reassemble_hidden_size=backbone.hidden_size,
                      patch_size=14, fusion_hidden_size=fusion, neck_hidden_sizes=neck, **kwargs)

    return build


def _depth_anything_tiny(metric_max_m: float | None = None, prompt: bool = False) -> Callable[[], Any]:
    def build() -> Any:
        if prompt:
            from transformers import PromptDepthAnythingConfig as Config
        else:
            from transformers import DepthAnythingConfig as Config
        kwargs: dict[str, Any] = {}
        if metric_max_m is not None:
            kwargs = {"depth_estimation_type": "metric", "max_depth": int(metric_max_m)}
        return Config(backbone_config=_dinov2("s", [1, 2, 3, 4], tiny=True), reassemble_hidden_size=32,
                      patch_size=14, fusion_hidden_size=16, neck_hidden_sizes=[8, 16, 32, 32],
                      head_hidden_size=8, **kwargs)

    return build


def _dpt_large() -> Any:
    from transformers import DPTConfig

    return DPTConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                     intermediate_size=4096, image_size=384, patch_size=16,
                     backbone_out_indices=[5, 11, 17, 23], neck_hidden_sizes=[256, 512, 1024, 1024],
                     fusion_hidden_size=256, readout_type="project", use_auxiliary_head=False)


def _dpt_large_tiny() -> Any:
    from transformers import DPTConfig

    return DPTConfig(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
                     image_size=32, patch_size=16, backbone_out_indices=[0, 1, 2, 3],
                     neck_hidden_sizes=[8, 16, 32, 32], fusion_hidden_size=16, readout_type="project",
                     use_auxiliary_head=False)


def _bit_backbone(tiny: bool) -> dict[str, Any]:
    return {
        "global_padding": "same", "layer_type": "bottleneck",
        "depths": [1, 1, 1] if tiny else [3, 4, 9],
        "hidden_sizes": [16, 16, 32] if tiny else [256, 512, 1024],
        "embedding_size": 16 if tiny else 64,
        "out_features": ["stage1", "stage2", "stage3"], "embedding_dynamic_padding": True,
        "num_groups": 2 if tiny else 32,
    }


def _dpt_hybrid() -> Any:
    from transformers import DPTConfig

    return DPTConfig(is_hybrid=True, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                     intermediate_size=3072, image_size=384, patch_size=16,
                     backbone_out_indices=[2, 5, 8, 11], neck_hidden_sizes=[256, 512, 768, 768],
                     fusion_hidden_size=256, readout_type="project", backbone_config=_bit_backbone(False),
                     backbone_featmap_shape=[1, 1024, 24, 24], use_auxiliary_head=False)


def _dpt_hybrid_tiny() -> Any:
    from transformers import DPTConfig

    return DPTConfig(is_hybrid=True, hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                     intermediate_size=64, image_size=32, patch_size=16, backbone_out_indices=[0, 1, 2, 3],
                     neck_hidden_sizes=[16, 16, 32, 32], fusion_hidden_size=16, readout_type="project",
                     backbone_config=_bit_backbone(True), backbone_featmap_shape=[1, 32, 2, 2],
                     use_auxiliary_head=False)


def _beit(tiny: bool, image_size: int) -> Any:
    from transformers import BeitConfig

    if tiny:
        return BeitConfig(image_size=image_size, patch_size=16, hidden_size=32, num_hidden_layers=4,
                          num_attention_heads=2, intermediate_size=64, use_relative_position_bias=True,
                          reshape_hidden_states=False,
                          out_features=["stage1", "stage2", "stage3", "stage4"])
    return BeitConfig(image_size=image_size, patch_size=16, hidden_size=1024, num_hidden_layers=24,
                      num_attention_heads=16, intermediate_size=4096, use_relative_position_bias=True,
                      reshape_hidden_states=False,
                      out_features=["stage6", "stage12", "stage18", "stage24"])


def _dpt_beit(tiny: bool) -> Callable[[], Any]:
    def build() -> Any:
        from transformers import DPTConfig

        neck = [8, 16, 32, 32] if tiny else [256, 512, 1024, 1024]
        return DPTConfig(backbone_config=_beit(tiny, 32 if tiny else 512), neck_hidden_sizes=neck,
                         fusion_hidden_size=16 if tiny else 256, use_auxiliary_head=False)

    return build


_ZOE_BINS = {
    "nyu": [{"n_bins": 64, "min_depth": 1e-3, "max_depth": 10.0, "name": "nyu"}],
    "kitti": [{"n_bins": 64, "min_depth": 1e-3, "max_depth": 80.0, "name": "kitti"}],
}


def _zoedepth(domain: str, tiny: bool) -> Callable[[], Any]:
    def build() -> Any:
        from transformers import ZoeDepthConfig

        if not tiny:
            return ZoeDepthConfig(backbone_config=_beit(False, 384), bin_configurations=_ZOE_BINS[domain])
        bins = [dict(b, n_bins=8) for b in _ZOE_BINS[domain]]
        return ZoeDepthConfig(backbone_config=_beit(True, 32), neck_hidden_sizes=[8, 16, 32, 32],
                              fusion_hidden_size=16, bottleneck_features=16, num_relative_features=8,
                              bin_embedding_dim=8, num_attractors=[4, 4, 2, 1], bin_configurations=bins)

    return build


def _depth_pro(tiny: bool) -> Callable[[], Any]:
    def build() -> Any:
        from transformers import DepthProConfig, Dinov2Config

        if tiny:
            # input 64: patches of 16 (= sub-model image_size) at scales 0.25/0.5/1
            sub = {"image_size": 16, "patch_size": 4, "hidden_size": 16, "num_hidden_layers": 2,
                   "num_attention_heads": 2, "intermediate_size": 32}
            return DepthProConfig(
                patch_size=16, fusion_hidden_size=16, intermediate_hook_ids=[1, 0],
                intermediate_feature_dims=[8, 8], scaled_images_feature_dims=[16, 16, 8],
                use_fov_model=True, image_model_config=Dinov2Config(**sub),
                patch_model_config=Dinov2Config(**sub), fov_model_config=Dinov2Config(**sub))
        sub = {"image_size": 384, "patch_size": 16, "hidden_size": 1024, "num_hidden_layers": 24,
               "num_attention_heads": 16, "intermediate_size": 4096, "layerscale_value": 1.0}
        return DepthProConfig(use_fov_model=True, image_model_config=Dinov2Config(**sub),
                              patch_model_config=Dinov2Config(**sub), fov_model_config=Dinov2Config(**sub))

    return build


def _marigold(tiny: bool) -> Callable[[], Any]:
    """Marigold is a diffusers pipeline: the 'config' is a dict of component configs."""

    def build() -> Any:
        if tiny:
            return {
                "unet": dict(sample_size=8, in_channels=8, out_channels=4, layers_per_block=1,
                             block_out_channels=(8, 16), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                             up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=16,
                             attention_head_dim=2, norm_num_groups=4),
                "vae": dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 8),
                            down_block_types=("DownEncoderBlock2D",) * 2,
                            up_block_types=("UpDecoderBlock2D",) * 2, norm_num_groups=4, sample_size=16),
                "text": dict(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                             num_attention_heads=2, max_position_embeddings=8, bos_token_id=0,
                             eos_token_id=1, pad_token_id=1, projection_dim=16),
                "processing_resolution": 32,
                "denoising_steps": 2,
            }
        # Stable Diffusion 2 sizes (Marigold v1-1 is a fine-tuned SD2 U-Net with 8 input channels)
        return {
            "unet": dict(sample_size=96, in_channels=8, out_channels=4, layers_per_block=2,
                         block_out_channels=(320, 640, 1280, 1280),
                         down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                         up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
                         cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20),
                         use_linear_projection=True),
            "vae": dict(in_channels=3, out_channels=3, latent_channels=4,
                        block_out_channels=(128, 256, 512, 512),
                        down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, sample_size=768),
            "text": dict(vocab_size=49408, hidden_size=1024, intermediate_size=4096, num_hidden_layers=23,
                         num_attention_heads=16, max_position_embeddings=77, hidden_act="gelu",
                         projection_dim=512),
            "processing_resolution": 768,
            "denoising_steps": 4,
        }

    return build


_TINY_INPUT = {  # the tiny twins run at small sizes
    "depth_anything_v2": 56, "depth_anything": 56, "prompt_depth_anything": 56, "dpt": 64,
    "zoedepth": 64, "depth_pro": 64, "marigold": 32, "depth_anything_3": 56,
}

# -------------------------------------------------------------------------------------------- zoo

_DA_V2_LICENCE = {"s": "Apache-2.0", "b": "CC-BY-NC-4.0 (non-commercial)",
                  "l": "CC-BY-NC-4.0 (non-commercial)"}
_SIZE_WORD = {"s": "small", "b": "base", "l": "large"}
_SIZE_HUB = {"s": "Small", "b": "Base", "l": "Large"}


def _depth_anything_specs(s: str) -> list[ModelSpec]:
    """Depth Anything V2 (relative, metric indoor, metric outdoor) and V1 at size ``s``: DINOv2
    backbone + DPT head, 518-pixel short side in multiples of the 14-pixel patch."""
    common: dict[str, Any] = dict(input_size=518, patch_multiple=14, mean=IMAGENET_MEAN,
                                  std=IMAGENET_STD, original_format="depth_anything")
    tiny = s == "s"  # one tiny twin per family
    specs = [ModelSpec(
        name=f"depth_anything_v2_{_SIZE_WORD[s]}", family="depth_anything_v2",
        output="relative_inverse", licence=_DA_V2_LICENCE[s],
        make_config=_depth_anything_config(s, v2=True),
        make_tiny_config=_depth_anything_tiny() if tiny else None,
        hub_id=f"depth-anything/Depth-Anything-V2-{_SIZE_HUB[s]}-hf",
        description="relative inverse depth, DINOv2 + DPT head", **common)]
    for where, max_m, data in (("indoor", 20.0, "Hypersim"), ("outdoor", 80.0, "VKITTI")):
        specs.append(ModelSpec(
            name=f"depth_anything_v2_metric_{where}_{_SIZE_WORD[s]}", family="depth_anything_v2",
            output="metric", max_depth_m=max_m, licence=_DA_V2_LICENCE[s],
            make_config=_depth_anything_config(s, v2=True, metric_max_m=max_m),
            make_tiny_config=_depth_anything_tiny(max_m) if tiny else None,
            hub_id=f"depth-anything/Depth-Anything-V2-Metric-{data}-{_SIZE_HUB[s]}-hf",
            description=f"metric depth in metres, {where} (0-{max_m:g} m, trained on {data})",
            **common))
    specs.append(ModelSpec(
        name=f"depth_anything_{_SIZE_WORD[s]}", family="depth_anything",
        output="relative_inverse", licence="Apache-2.0",
        make_config=_depth_anything_config(s, v2=False),
        make_tiny_config=_depth_anything_tiny() if tiny else None,
        hub_id=f"LiheYoung/depth-anything-{_SIZE_WORD[s]}-hf",
        description="Depth Anything V1, relative inverse depth", **common))
    return specs


def _midas_specs() -> list[ModelSpec]:
    """MiDaS (DPT family): relative inverse depth, inputs in multiples of 32 pixels."""
    common: dict[str, Any] = dict(family="dpt", output="relative_inverse", patch_multiple=32,
                                  mean=HALF_MEAN, std=HALF_STD, model_class="DPTForDepthEstimation")
    return [
        # transformers runs these two only at their square training size: letterboxed, not squashed
        ModelSpec(name="dpt_large", input_size=384, licence="Apache-2.0",
                  make_config=_dpt_large, make_tiny_config=_dpt_large_tiny, hub_id="Intel/dpt-large",
                  resize_mode="fixed", tiny_input_size=32,
                  description="MiDaS 3.0 DPT-Large (ViT-L/16), square input", **common),
        ModelSpec(name="dpt_hybrid", input_size=384, licence="Apache-2.0",
                  make_config=_dpt_hybrid, make_tiny_config=_dpt_hybrid_tiny,
                  hub_id="Intel/dpt-hybrid-midas", resize_mode="fixed", tiny_input_size=32,
                  description="MiDaS 3.0 DPT-Hybrid (ResNet-50 + ViT-B/16), square input", **common),
        ModelSpec(name="midas_beit_large_512", input_size=512, licence="MIT",
                  make_config=_dpt_beit(False), make_tiny_config=_dpt_beit(True),
                  hub_id="Intel/dpt-beit-large-512", description="MiDaS 3.1 BEiT-L/16 at 512",
                  **common),
    ]


def _zoedepth_spec(domain: str, where: str, max_m: float) -> ModelSpec:
    """ZoeDepth trained on ``domain`` (``nyu`` or ``kitti``): metric depth up to ``max_m`` metres."""
    return ModelSpec(
        name=f"zoedepth_{domain}", family="zoedepth", output="metric", max_depth_m=max_m,
        input_size=384, patch_multiple=32, mean=HALF_MEAN, std=HALF_STD, licence="MIT",
        make_config=_zoedepth(domain, False), make_tiny_config=_zoedepth(domain, True),
        hub_id=f"Intel/zoedepth-{domain}", model_class="ZoeDepthForDepthEstimation",
        description=f"ZoeDepth, metric {where} ({domain.upper()}, up to {max_m:g} m)")


def _depth_pro_spec() -> ModelSpec:
    return ModelSpec(
        name="depth_pro", family="depth_pro", output="metric", input_size=1536,
        patch_multiple=1, mean=HALF_MEAN, std=HALF_STD,
        licence="Apple ML Research licence (apple-amlr: research only)",
        make_config=_depth_pro(False), make_tiny_config=_depth_pro(True),
        hub_id="apple/DepthPro-hf", model_class="DepthProForDepthEstimation",
        resize_mode="fixed", takes_focal=True,
        description="Depth Pro, metric; fixed square input; focal length from K "
                    "(or its own field-of-view head)")


def _depth_anything_3_specs() -> list[ModelSpec]:
    """Depth Anything 3's monocular models (:mod:`depth_perception.depth.depth_anything_3`): the
    DINOv2 ViT-L/14 + DPT network of Depth Anything V2 Large with an exp-activated head that
    predicts depth, not disparity. Input: ImageNet normalisation, sides in multiples of 14; the
    reference resizes the longer side to 504, which for a 4:3 camera is a 378-pixel short side.
    The any-view (multi-image, camera-pose) models are another architecture and not listed."""
    common: dict[str, Any] = dict(family="depth_anything_3", input_size=378, patch_multiple=14,
                                  mean=IMAGENET_MEAN, std=IMAGENET_STD, licence="Apache-2.0",
                                  make_config=_depth_anything_config("l", v2=True),
                                  make_tiny_config=_depth_anything_tiny(),
                                  model_class="DepthAnything3ForDepthEstimation",
                                  original_format="depth_anything_3")
    return [
        ModelSpec(name="depth_anything_3_mono_large", output="relative_depth",
                  hub_id="depth-anything/DA3MONO-LARGE",
                  description="Depth Anything 3 Mono (DA3MONO-LARGE): relative depth (far = large), "
                              "DINOv2-L + DPT head", **common),
        ModelSpec(name="depth_anything_3_metric_large", output="metric", takes_focal=True,
                  hub_id="depth-anything/DA3METRIC-LARGE",
                  description="Depth Anything 3 Metric (DA3METRIC-LARGE): metres = fx * output / 300 "
                              "(fx from K at the network input); needs CameraInfo", **common),
    ]


def _prompt_depth_anything_spec(s: str, licence: str) -> ModelSpec:
    return ModelSpec(
        name=f"prompt_depth_anything_{_SIZE_WORD[s]}", family="prompt_depth_anything",
        output="metric", input_size=518, patch_multiple=14, mean=IMAGENET_MEAN,
        std=IMAGENET_STD, licence=licence,
        make_config=_depth_anything_config(s, v2=True, prompt=True),
        make_tiny_config=_depth_anything_tiny(prompt=True) if s == "s" else None,
        hub_id=f"depth-anything/prompt-depth-anything-vit{s}-hf",
        model_class="PromptDepthAnythingForDepthEstimation", extra_inputs=("prompt_depth",),
        description="metric depth from RGB + a low-resolution metric depth prompt (e.g. LiDAR)")


def _marigold_spec() -> ModelSpec:
    return ModelSpec(
        name="marigold_depth", family="marigold", output="relative_depth", input_size=768,
        patch_multiple=8, mean=HALF_MEAN, std=HALF_STD, licence="Apache-2.0",
        make_config=_marigold(False), make_tiny_config=_marigold(True),
        hub_id="prs-eth/marigold-depth-v1-1", model_class="MarigoldDepthPipeline", exportable=False,
        requires=("diffusers", "transformers"),
        description="Marigold (diffusion), slow high-quality offline option; affine-invariant "
                    "depth (far = large)")


def _build_zoo() -> dict[str, ModelSpec]:
    """Every spec by name, in zoo order, each followed by its ``_tiny`` twin where it has one."""
    specs = [spec for s in "sbl" for spec in _depth_anything_specs(s)]
    specs += _depth_anything_3_specs()
    specs += _midas_specs()
    specs += [_zoedepth_spec("nyu", "indoor", 10.0), _zoedepth_spec("kitti", "outdoor", 80.0),
              _depth_pro_spec()]
    specs += [_prompt_depth_anything_spec("s", "Apache-2.0"),
              _prompt_depth_anything_spec("l", "CC-BY-NC-4.0 (non-commercial)")]
    specs.append(_marigold_spec())
    specs.append(student_spec())  # our own compact model; no torch import here
    zoo: dict[str, ModelSpec] = {}
    for spec in specs:
        zoo[spec.name] = spec
        if spec.make_tiny_config is not None:
            tiny = spec.tiny_spec()
            zoo[tiny.name] = tiny
    return zoo


def student_spec(name: str = student.DEFAULT_NAME,
                 config: student.StudentConfig | None = None) -> ModelSpec:
    """The spec of the compact student (family ``student``, :mod:`depth_perception.depth.student`):
    ``name`` a preset or the bundled model's name, ``config`` its architecture (default: the
    preset's)."""
    cfg = config or student.PRESETS.get(name, student.StudentConfig())
    return ModelSpec(
        name=name, family="student", output=student.OUTPUT_KIND, input_size=cfg.input_size,
        patch_multiple=cfg.patch_multiple, mean=cfg.mean, std=cfg.std,
        licence="Apache-2.0 (the project's own weights; synthetic tabletop domain)",
        make_config=lambda: cfg, make_tiny_config=lambda: student.PRESETS["student_tiny"],
        model_class="StudentDepthNet", requires=("torch", "safetensors"),
        tiny_input_size=student.PRESETS["student_tiny"].input_size,
        description="compact CNN student distilled/trained on the synthetic tabletop generator; "
                    "relative inverse depth; the offline default",
    )


_ZOO = _build_zoo()  # immutable after import: specs are frozen dataclasses

#: The offline default of `predict` and `demo`: bundled with the package, synthetic domain.
DEFAULT_MODEL = student.DEFAULT_NAME


def list_specs(include_tiny: bool = True) -> list[ModelSpec]:
    """All models, in zoo order."""
    return [s for s in _ZOO.values() if include_tiny or not s.tiny]


def get_spec(name: str | ModelSpec) -> ModelSpec:
    """The spec named ``name`` (a spec is returned as is); ValueError listing the known names."""
    if isinstance(name, ModelSpec):
        return name
    key = str(name).strip().lower().replace("-", "_")
    if key not in _ZOO:
        known = ", ".join(_ZOO)
        raise UnknownModelError(f"unknown model {name!r}; known models: {known}")
    return _ZOO[key]


#: Metric modes (``metric.MODES``) that make a prediction of each output kind metric. A relative
#: prediction has no scale of its own: it needs a metric signal every frame (or a fixed scale);
#: a metric network is published as is (``model``) or corrected by a signal.
_SIGNAL_MODES = ("sparse_depth", "pointcloud", "stereo", "plane", "motion")
METRIC_MODES: dict[str, tuple[str, ...]] = {
    "relative_inverse": ("auto",) + _SIGNAL_MODES + ("fixed",),
    "relative_depth": ("auto",) + _SIGNAL_MODES + ("fixed",),
    "metric": ("auto", "model") + _SIGNAL_MODES,
}


def metric_modes(spec: ModelSpec) -> tuple[str, ...]:
    """The metric modes that make sense for ``spec``'s output, from its output kind. A model that
    takes a prompt depth (Prompt Depth Anything) needs a registered depth image or LiDAR every
    frame anyway, so only the modes that use that (or none) apply."""
    modes = METRIC_MODES[spec.output]
    if "prompt_depth" in spec.extra_inputs:
        return tuple(m for m in modes if m in ("auto", "model", "sparse_depth", "pointcloud"))
    return modes


#: The precisions of each backend: torch (``torch_backend.PRECISIONS``; fp16 on CUDA only),
#: ONNX Runtime (fp32, or int8 by dynamic quantisation), TensorRT (``engine_keys.PRECISIONS``).
BACKEND_PRECISIONS: dict[str, tuple[str, ...]] = {
    "torch": ("fp32", "bf16", "fp16"),
    "onnxruntime": ("fp32", "int8"),
    "tensorrt": ("fp32", "fp16", "int8"),
}


def backends(spec: ModelSpec) -> dict[str, tuple[str, ...]]:
    """The backends that can run ``spec``, each with its precisions: every backend for a model with
    an ONNX export (ONNX Runtime and TensorRT run the exported graph), torch only otherwise."""
    found = {b: p for b, p in BACKEND_PRECISIONS.items() if b == "torch" or spec.exportable}
    if spec.exportable:  # OpenVINO (optional) reads the ONNX export on the CPU
        found["openvino"] = ("fp32", "int8")
    return found


def missing_requirements(spec: ModelSpec) -> list[str]:
    """Modules the spec needs that cannot be imported here (empty when the model can run)."""
    import importlib.util

    return [m for m in spec.requires if importlib.util.find_spec(m) is None]
