"""Build a zoo network and fill its weights.

Sources, tried in this order of what ``weights`` looks like:

* ``None`` with ``random_init=True``: seeded random weights (real architecture, any size).
* a folder: a transformers ``save_pretrained`` folder (``config.json`` + ``model.safetensors``);
* ``*.safetensors``: a state dict in transformers' key names for the spec's architecture;
* ``*.pth`` / ``*.pt`` / ``*.bin``: a torch state dict, either in transformers' names or an original
  Depth Anything (V1/V2/metric) checkpoint (``pretrained.*`` / ``depth_head.*`` keys), mapped onto
  transformers' ``DepthAnythingForDepthEstimation`` as transformers' own conversion script does.
  Always ``torch.load(weights_only=True)``: no pickled code runs.
* anything else that is not an existing path but looks like ``owner/name``: a hub id, downloaded by
  transformers (the only path that uses the network, and only when the user asks for it).

Loading is strict: a missing, truncated or mismatched file raises :class:`WeightsError` naming the
file and what is wrong (missing keys, unexpected keys, shape mismatches).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Mapping

from .zoo import ModelSpec, get_spec

STATE_DICT_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class WeightsError(ValueError):
    """Weights that cannot be used; the message names the file and the problem."""


# ------------------------------------------------------------------------------------ building


def model_class(spec: ModelSpec) -> Any:
    """The torch class that builds ``spec``: transformers' by name, or our Depth Anything 3
    subclass of transformers' Depth Anything."""
    if spec.model_class == "DepthAnything3ForDepthEstimation":
        from .depth_anything_3 import DepthAnything3ForDepthEstimation

        return DepthAnything3ForDepthEstimation
    import transformers

    return getattr(transformers, spec.model_class)


def build_model(spec: ModelSpec | str, weights: str | os.PathLike | None = None,
                random_init: bool = False, seed: int = 0) -> Any:
    """The spec's torch network in eval mode, float32 on CPU.

    Exactly one of ``weights`` and ``random_init`` must be given. The returned model carries
    ``_depth_spec_name`` so that later stages (export) know its spec.
    """
    spec = get_spec(spec)
    if spec.family == "marigold":
        raise ValueError("Marigold is a diffusers pipeline: use depth_perception.depth.marigold")
    if spec.family == "student":
        from .student import build_student, load_student

        if random_init:
            model = build_student(spec.make_config(), seed)
        else:  # no weights: the file bundled with the package
            model = load_student(weights)
        model.eval()
        model._depth_spec_name = spec.name
        return model
    if (weights is None) == (not random_init):
        raise ValueError(
            f"model {spec.name}: give weights (a local folder, .safetensors, .pth or a hub id) or "
            "random_init=True (real architecture, random weights: for tests and benchmarks)"
        )
    if weights is None:
        model = model_class(spec)(spec.make_config())
        randomize_weights(model, seed)
    else:
        model = load_weights(spec, weights)
    model.eval()
    model._depth_spec_name = spec.name
    return model


def randomize_weights(model: Any, seed: int = 0) -> None:
    """Seeded random weights that keep activations O(1) through any depth of network.

    transformers' own init (zero biases, std 0.02) leaves the tiny test models' outputs constant,
    which would make every comparison test pass trivially; fan-in scaled weights give outputs that
    vary across the image, and the same seed gives the same weights.
    """
    import math

    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim >= 2:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(max(fan_in, 1)))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            else:  # norm scales, layer scales, tokens
                p.copy_(0.75 + 0.5 * torch.rand(p.shape, generator=gen))
        # single-channel output convolutions feed the final ReLU: a positive bias keeps most of the
        # random depth map above zero instead of clipped flat
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d) and module.out_channels == 1 and module.bias is not None:
                module.bias.fill_(1.0)
        for name, b in model.named_buffers():
            if name.endswith("running_var"):
                b.fill_(1.0)
            elif name.endswith("running_mean"):
                b.zero_()


# ------------------------------------------------------------------------------------- loading


def load_weights(spec: ModelSpec, weights: str | os.PathLike) -> Any:
    path = Path(os.path.expanduser(str(weights)))
    if path.is_dir():
        return _load_folder(spec, path)
    if path.is_file():
        sd = read_state_dict(path)
        return _from_state_dict(spec, sd, path)
    text = str(weights)
    looks_like_path = path.suffix in (".safetensors",) + STATE_DICT_SUFFIXES or text.startswith(
        (".", "/", "~")) or os.sep in text.replace("/", "", 1)
    if _HUB_ID.match(text) and not looks_like_path:
        return _load_hub(spec, text)
    raise WeightsError(f"weights not found: {text} (no such file or folder)")


def read_state_dict(path: Path) -> dict[str, Any]:
    """Tensors of a .safetensors or torch file; WeightsError naming the file when unreadable."""
    if path.stat().st_size == 0:
        raise WeightsError(f"{path}: file is empty")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file

            return dict(load_file(str(path)))
        except Exception as exc:  # noqa: BLE001 - SafetensorError and OSError alike
            raise WeightsError(f"{path}: not a readable safetensors file (truncated or corrupt?): "
                               f"{exc}") from exc
    if path.suffix not in STATE_DICT_SUFFIXES:
        raise WeightsError(f"{path}: unknown weights format {path.suffix!r}; expected a folder, "
                           f".safetensors or one of {', '.join(STATE_DICT_SUFFIXES)}")
    import pickle

    import torch

    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise WeightsError(f"{path}: refused to load: it holds Python objects besides tensors "
                           f"(weights_only=True): {str(exc).splitlines()[0]}") from exc
    except Exception as exc:  # noqa: BLE001 - EOFError, RuntimeError(zip), ...
        raise WeightsError(f"{path}: not a readable torch checkpoint (truncated or corrupt?): "
                           f"{type(exc).__name__}: {exc}") from exc
    for key in ("state_dict", "model", "module"):  # common training-checkpoint wrappers
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping) or not all(isinstance(k, str) for k in obj):
        raise WeightsError(f"{path}: expected a state dict (name -> tensor), got {type(obj).__name__}")
    sd = {k.removeprefix("module."): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not sd:
        raise WeightsError(f"{path}: holds no tensors")
    return sd


def _from_state_dict(spec: ModelSpec, sd: dict[str, Any], path: Path) -> Any:
    if is_original_depth_anything_3(sd):
        if spec.original_format != "depth_anything_3":
            raise WeightsError(f"{path}: a Depth Anything 3 checkpoint, but model {spec.name} is not "
                               "a Depth Anything 3 model")
        sd = convert_original_depth_anything_3(sd, spec.make_config())
    elif is_original_depth_anything(sd):
        if spec.original_format != "depth_anything":
            raise WeightsError(f"{path}: an original Depth Anything checkpoint, but model {spec.name} "
                               "is not a Depth Anything model")
        sd = convert_original_depth_anything(sd, spec.make_config())
    # transformers renames checkpoint keys on load (e.g. DINOv2's attention.attention.query ->
    # attention.q_proj in 5.x): load through from_pretrained so its own conversions apply
    import tempfile

    from safetensors.torch import save_file

    with tempfile.TemporaryDirectory(prefix="depth_weights_") as tmp:
        spec.make_config().save_pretrained(tmp)
        save_file({k: v.contiguous() for k, v in sd.items()}, str(Path(tmp) / "model.safetensors"))
        return _from_pretrained(spec, tmp, path)


def _from_pretrained(spec: ModelSpec, folder: str | Path, named: Any, config: Any = None) -> Any:
    cls = model_class(spec)
    kwargs = {"config": config} if config is not None else {}
    try:
        # mismatched shapes are collected (not raised) so that the error can name them
        model, info = cls.from_pretrained(str(folder), local_files_only=True, output_loading_info=True,
                                          ignore_mismatched_sizes=True, **kwargs)
    except Exception as exc:  # noqa: BLE001 - size mismatches, corrupt files, ...
        text = str(exc).strip().splitlines()
        raise WeightsError(f"{named}: weights do not fit model {spec.name}: "
                           f"{text[0] if text else type(exc).__name__}") from exc
    _check_loading_info(info, named, spec)
    return model


def _load_folder(spec: ModelSpec, folder: Path) -> Any:
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise WeightsError(f"{folder}: not a transformers model folder (no config.json)")
    files = [folder / n for n in ("model.safetensors", "pytorch_model.bin",
                                  "model.safetensors.index.json", "pytorch_model.bin.index.json")]
    if not any(f.is_file() for f in files):
        raise WeightsError(f"{folder}: no weights (model.safetensors or pytorch_model.bin)")
    for f in files[:2]:
        if f.is_file():
            sd = read_state_dict(f)  # a truncated file is reported by name before transformers sees it
            if is_original_depth_anything_3(sd):  # the reference's hub folder: its config is not ours
                return _from_state_dict(spec, sd, f)
    config_cls = type(spec.make_config())
    try:
        config = config_cls.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:  # noqa: BLE001
        raise WeightsError(f"{config_file}: not a config for {spec.name}: {exc}") from exc
    return _from_pretrained(spec, folder, folder, config=config)


def _load_hub(spec: ModelSpec, hub_id: str) -> Any:
    if spec.original_format == "depth_anything_3":
        # the reference's hub repos hold its own checkpoint layout, not a transformers folder
        try:
            from huggingface_hub import hf_hub_download

            path = hf_hub_download(hub_id, "model.safetensors")
        except Exception as exc:  # noqa: BLE001 - no network, unknown id, ...
            raise WeightsError(f"hub id {hub_id}: could not download ({type(exc).__name__}: {exc}); "
                               "pass a local folder or file instead") from exc
        return load_weights(spec, path)
    cls = model_class(spec)
    try:
        model, info = cls.from_pretrained(hub_id, output_loading_info=True)
    except Exception as exc:  # noqa: BLE001 - no network, unknown id, gated repo, ...
        raise WeightsError(f"hub id {hub_id}: could not download or load ({type(exc).__name__}: "
                           f"{exc}); pass a local folder or file instead") from exc
    _check_loading_info(info, hub_id, spec)
    return model


def _check_loading_info(info: Mapping[str, Any], where: Any, spec: ModelSpec) -> None:
    problems = []
    for key, what in (("missing_keys", "missing key(s)"), ("unexpected_keys", "unexpected key(s)"),
                      ("mismatched_keys", "shape mismatch(es)")):
        items = sorted(map(str, info.get(key) or []))
        if items:
            problems.append(f"{len(items)} {what} (e.g. {', '.join(items[:3])})")
    if problems:
        raise WeightsError(f"{where}: weights do not match model {spec.name}: " + "; ".join(problems)
                           + " - wrong model name or size?")


def save_weights(model: Any, path: str | os.PathLike) -> Path:
    """Write ``model``'s weights in transformers' checkpoint key names: a folder (save_pretrained),
    a ``.safetensors`` file or a ``.pth`` state dict."""
    path = Path(path)
    if path.suffix != ".safetensors" and path.suffix not in STATE_DICT_SUFFIXES:
        model.save_pretrained(str(path))
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    sd = checkpoint_state_dict(model)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(sd, str(path))
    else:
        import torch

        torch.save(sd, str(path))
    return path


def checkpoint_state_dict(model: Any) -> dict[str, Any]:
    """The state dict as transformers writes it to disk (its checkpoint key names)."""
    import tempfile

    from safetensors.torch import load_file

    with tempfile.TemporaryDirectory(prefix="depth_weights_") as tmp:
        model.save_pretrained(tmp)
        return dict(load_file(str(Path(tmp) / "model.safetensors")))


# -------------------------------------------------------- original Depth Anything checkpoints


def is_original_depth_anything(sd: Mapping[str, Any]) -> bool:
    return any(k.startswith("pretrained.") for k in sd) and any(k.startswith("depth_head.") for k in sd)


def _depth_anything_renames(num_layers: int) -> list[tuple[str, str]]:
    """(original, transformers) names; qkv is split separately. From transformers'
    ``convert_depth_anything_to_hf.py``."""
    r = [("pretrained.cls_token", "backbone.embeddings.cls_token"),
         ("pretrained.mask_token", "backbone.embeddings.mask_token"),
         ("pretrained.pos_embed", "backbone.embeddings.position_embeddings"),
         ("pretrained.patch_embed.proj.weight", "backbone.embeddings.patch_embeddings.projection.weight"),
         ("pretrained.patch_embed.proj.bias", "backbone.embeddings.patch_embeddings.projection.bias"),
         ("pretrained.norm.weight", "backbone.layernorm.weight"),
         ("pretrained.norm.bias", "backbone.layernorm.bias")]
    for i in range(num_layers):
        src, dst = f"pretrained.blocks.{i}.", f"backbone.encoder.layer.{i}."
        r += [(src + "ls1.gamma", dst + "layer_scale1.lambda1"),
              (src + "ls2.gamma", dst + "layer_scale2.lambda1"),
              (src + "attn.proj.weight", dst + "attention.output.dense.weight"),
              (src + "attn.proj.bias", dst + "attention.output.dense.bias")]
        for part in ("norm1", "norm2", "mlp.fc1", "mlp.fc2"):
            r += [(src + f"{part}.{t}", dst + f"{part}.{t}") for t in ("weight", "bias")]
    for i in range(4):
        for t in ("weight", "bias"):
            r.append((f"depth_head.projects.{i}.{t}", f"neck.reassemble_stage.layers.{i}.projection.{t}"))
            if i != 2:  # layer 2 keeps its resolution: no resize layer
                r.append((f"depth_head.resize_layers.{i}.{t}", f"neck.reassemble_stage.layers.{i}.resize.{t}"))
        r.append((f"depth_head.scratch.layer{i + 1}_rn.weight", f"neck.convs.{i}.weight"))
    for i, j in {1: 3, 2: 2, 3: 1, 4: 0}.items():  # refinenet order is reversed in transformers
        src, dst = f"depth_head.scratch.refinenet{i}.", f"neck.fusion_stage.layers.{j}."
        for t in ("weight", "bias"):
            r.append((src + f"out_conv.{t}", dst + f"projection.{t}"))
            for u in (1, 2):
                for c in (1, 2):
                    r.append((src + f"resConfUnit{u}.conv{c}.{t}",
                              dst + f"residual_layer{u}.convolution{c}.{t}"))
    for src, dst in (("output_conv1", "conv1"), ("output_conv2.0", "conv2"), ("output_conv2.2", "conv3")):
        for t in ("weight", "bias"):
            r.append((f"depth_head.scratch.{src}.{t}", f"head.{dst}.{t}"))
    return r


def convert_original_depth_anything(sd: Mapping[str, Any], config: Any) -> dict[str, Any]:
    """Map an original Depth Anything V1/V2 (relative or metric) state dict onto transformers' keys.

    Unknown keys are kept under their original names so that loading reports them as unexpected.
    """
    layers = config.backbone_config.num_hidden_layers
    hidden = config.backbone_config.hidden_size
    src = dict(sd)
    out: dict[str, Any] = {}
    for old, new in _depth_anything_renames(layers):
        if old in src:
            out[new] = src.pop(old)
    for i in range(layers):
        dst = f"backbone.encoder.layer.{i}.attention.attention."
        for t in ("weight", "bias"):
            qkv = src.pop(f"pretrained.blocks.{i}.attn.qkv.{t}", None)
            if qkv is not None:
                for j, part in enumerate(("query", "key", "value")):
                    out[dst + f"{part}.{t}"] = qkv[j * hidden:(j + 1) * hidden]
    out.update(src)
    return out


def to_original_depth_anything(sd: Mapping[str, Any], config: Any) -> dict[str, Any]:
    """Inverse of :func:`convert_original_depth_anything` (writes checkpoints in the original layout)."""
    import torch

    layers = config.backbone_config.num_hidden_layers
    src = dict(sd)
    out: dict[str, Any] = {}
    for old, new in _depth_anything_renames(layers):
        if new in src:
            out[old] = src.pop(new)
    for i in range(layers):
        dst = f"backbone.encoder.layer.{i}.attention.attention."
        for t in ("weight", "bias"):
            parts = [src.pop(dst + f"{p}.{t}") for p in ("query", "key", "value")]
            out[f"pretrained.blocks.{i}.attn.qkv.{t}"] = torch.cat(parts, 0)
    if src:
        raise ValueError(f"unmapped keys: {sorted(src)[:5]}")
    return out


# ------------------------------------------------------------- Depth Anything 3 checkpoints
# The reference (ByteDance-Seed/Depth-Anything-3) saves ``DepthAnything3`` (its API class) whose
# ``model`` is ``DepthAnything3Net``: keys ``model.backbone.pretrained.*`` (DINOv2, the same names
# as Depth Anything V1/V2's ``pretrained.*``) and ``model.head.*`` (its DPT: V1/V2's ``depth_head.*``
# plus ``scratch.sky_output_conv2.*``). See :mod:`depth_perception.depth.depth_anything_3`.

_DA3_BACKBONE, _DA3_HEAD, _DA3_SKY = "backbone.pretrained.", "head.", "head.scratch.sky_output_conv2."


def is_original_depth_anything_3(sd: Mapping[str, Any]) -> bool:
    keys = [k.removeprefix("model.") for k in sd]
    return any(k.startswith(_DA3_BACKBONE) for k in keys) and any(
        k.startswith(_DA3_HEAD + "scratch.") for k in keys)


def convert_original_depth_anything_3(sd: Mapping[str, Any], config: Any) -> dict[str, Any]:
    """Map a Depth Anything 3 Mono/Metric state dict (the reference's key names) onto the keys of
    :class:`~depth_perception.depth.depth_anything_3.DepthAnything3ForDepthEstimation`.

    The sky head is dropped; the two parameters transformers has and DA3 lacks (mask token, first
    residual unit of the coarsest fusion block: both unused at inference) are zeros. Keys of other
    DA3 models (camera encoder/decoder, 3D Gaussian head) are kept and reported as unexpected.
    """
    import torch

    v2: dict[str, Any] = {}
    for key, value in sd.items():
        k = key.removeprefix("model.")
        if k.startswith(_DA3_SKY):
            continue
        if k.startswith(_DA3_BACKBONE):
            v2["pretrained." + k.removeprefix(_DA3_BACKBONE)] = value
        elif k.startswith(_DA3_HEAD):
            v2["depth_head." + k.removeprefix(_DA3_HEAD)] = value
        else:
            v2[key] = value
    out = convert_original_depth_anything(v2, config)
    like = out.get("backbone.embeddings.position_embeddings")
    dtype = like.dtype if like is not None else torch.float32
    hidden, fusion = config.backbone_config.hidden_size, config.fusion_hidden_size
    out.setdefault("backbone.embeddings.mask_token", torch.zeros(1, hidden, dtype=dtype))
    for c in (1, 2):
        unit = f"neck.fusion_stage.layers.0.residual_layer1.convolution{c}."
        out.setdefault(unit + "weight", torch.zeros(fusion, fusion, 3, 3, dtype=dtype))
        out.setdefault(unit + "bias", torch.zeros(fusion, dtype=dtype))
    return out


def to_original_depth_anything_3(sd: Mapping[str, Any], config: Any) -> dict[str, Any]:
    """Inverse of :func:`convert_original_depth_anything_3` (the reference's key names, without the
    sky head and the unused parameters): writes checkpoints in the reference's layout."""
    src = dict(sd)
    src.pop("backbone.embeddings.mask_token", None)
    for c in (1, 2):
        for t in ("weight", "bias"):
            src.pop(f"neck.fusion_stage.layers.0.residual_layer1.convolution{c}.{t}", None)
    out: dict[str, Any] = {}
    for k, v in to_original_depth_anything(src, config).items():
        if k.startswith("pretrained."):
            out["model." + _DA3_BACKBONE + k.removeprefix("pretrained.")] = v
        else:
            out["model." + _DA3_HEAD + k.removeprefix("depth_head.")] = v
    return out
