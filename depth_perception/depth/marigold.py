"""Marigold depth through diffusers' ``MarigoldDepthPipeline``: the slow, high-quality offline option.

A diffusion model (a fine-tuned Stable Diffusion U-Net) denoises a depth latent conditioned on the
image; a few DDIM steps give affine-invariant depth (far = large) in [0, 1]. Torch only: no ONNX
export. Needs ``pip install diffusers``; without it the model reports itself unavailable.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np

from .zoo import ModelSpec


class MarigoldUnavailableError(RuntimeError):
    pass


def require_diffusers() -> None:
    if importlib.util.find_spec("diffusers") is None:
        raise MarigoldUnavailableError("Marigold needs diffusers: pip install diffusers")


def build_pipeline(spec: ModelSpec, weights: str | os.PathLike | None = None, random_init: bool = False,
                   seed: int = 0) -> Any:
    """A ``MarigoldDepthPipeline`` from a diffusers folder / hub id, or random weights."""
    require_diffusers()
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, MarigoldDepthPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from .weights import WeightsError, randomize_weights

    cfg = spec.make_config()
    if weights is not None:
        path = Path(str(weights))
        if path.exists() and not (path / "model_index.json").is_file():
            raise WeightsError(f"{path}: not a diffusers pipeline folder (no model_index.json)")
        try:
            return MarigoldDepthPipeline.from_pretrained(str(weights))
        except Exception as exc:  # noqa: BLE001
            raise WeightsError(f"{weights}: could not load the Marigold pipeline: {exc}") from exc
    if not random_init:
        raise ValueError(f"model {spec.name}: give weights (a diffusers folder or hub id) or random_init")
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**cfg["unet"])
    vae = AutoencoderKL(**cfg["vae"])
    text = CLIPTextModel(CLIPTextConfig(**cfg["text"]))
    for i, m in enumerate((unet, vae, text)):
        randomize_weights(m, seed + i)
    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear",
                              prediction_type="v_prediction", timestep_spacing="trailing",
                              clip_sample=False, set_alpha_to_one=False)
    pipe = MarigoldDepthPipeline(unet=unet, vae=vae, scheduler=scheduler, text_encoder=text,
                                 tokenizer=None, prediction_type="depth", scale_invariant=True,
                                 shift_invariant=True, default_denoising_steps=cfg["denoising_steps"],
                                 default_processing_resolution=cfg["processing_resolution"])
    # the empty prompt's embedding is all the text encoder is ever used for: compute it from the
    # start and end tokens, so no tokenizer vocabulary is needed for random weights
    with torch.no_grad():
        ids = torch.tensor([[text.config.bos_token_id, text.config.eos_token_id]])
        pipe.empty_text_embedding = text(ids)[0]
    return pipe


class MarigoldBackend:
    name = "torch"

    def __init__(self, spec: ModelSpec, weights: Any = None, random_init: bool = False, device: Any = None,
                 precision: str = "fp32", seed: int = 0, steps: int | None = None) -> None:
        import torch

        self.spec = spec
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision, torch.float32)
        self.pipe = build_pipeline(spec, weights, random_init, seed).to(self.device)
        if dtype != torch.float32:
            self.pipe = self.pipe.to(dtype=dtype)
        self.pipe.set_progress_bar_config(disable=True)
        self.steps = steps
        self.seed = seed

    def predict(self, rgb: np.ndarray, processing_resolution: int | None = None) -> np.ndarray:
        """HxWx3 uint8 → HxW float32 affine-invariant depth in [0, 1] (far = large)."""
        import torch

        image = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float() / 255.0
        gen = torch.Generator(device=self.device).manual_seed(self.seed)  # same input → same depth
        with torch.inference_mode():
            out = self.pipe(image.to(self.device), num_inference_steps=self.steps,
                            processing_resolution=processing_resolution, match_input_resolution=True,
                            generator=gen, output_type="np")
        return np.asarray(out.prediction, dtype=np.float32).reshape(rgb.shape[:2])
