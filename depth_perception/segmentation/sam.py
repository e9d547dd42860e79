"""Segment Anything (the ``segment-anything`` package) prompted by boxes and/or points.

- Models: ``vit_b`` / ``vit_l`` / ``vit_h`` built by the library's own modules with the published
  hyper-parameters, weights from a local ``sam_vit_*.pth`` (``torch.load(weights_only=True)``), and
  ``tiny``: the same architecture, a few layers wide, for tests (random weights, same code path).
- Thread safety: the library's ``SamPredictor`` keeps the image in the object (``set_image`` then
  ``predict``), so two threads sharing it mix frames. Here the image embedding is a value:
  :meth:`SamSegmenter.encode` returns an :class:`ImageEmbedding` (once per frame) and
  :meth:`SamSegmenter.decode` takes it with a batch of prompts (once per prompt batch). The segmenter
  holds only the read-only model.
- Pre/post-processing (resize to the longest side, pad, normalise; crop and upscale the masks) is
  shared with the ONNX Runtime backend (:mod:`.sam_onnx`), so both see the same pixels.

Prompts are in pixels of the original image: boxes Nx4 XYXY, points NxKx2 (x, y) with labels NxK
(1 foreground, 0 background).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .base import Detection, Segmentation, SegmentationError, check_image_rgb, join_messages

PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)
MASK_THRESHOLD = 0.0


class SamWeightsError(SegmentationError):
    """A SAM checkpoint that is missing, unreadable or of another variant."""


@dataclass(frozen=True)
class SamConfig:
    """Hyper-parameters of one SAM variant (those of segment_anything.build_sam for the real ones)."""

    name: str
    encoder_embed_dim: int
    encoder_depth: int
    encoder_num_heads: int
    encoder_global_attn_indexes: tuple[int, ...]
    image_size: int = 1024
    patch_size: int = 16
    window_size: int = 14
    prompt_embed_dim: int = 256
    decoder_mlp_dim: int = 2048
    decoder_num_heads: int = 8
    mask_in_chans: int = 16
    iou_head_hidden_dim: int = 256

    @property
    def embedding_size(self) -> int:
        return self.image_size // self.patch_size


SAM_CONFIGS: dict[str, SamConfig] = {
    "vit_b": SamConfig("vit_b", 768, 12, 12, (2, 5, 8, 11)),
    "vit_l": SamConfig("vit_l", 1024, 24, 16, (5, 11, 17, 23)),
    "vit_h": SamConfig("vit_h", 1280, 32, 16, (7, 15, 23, 31)),
    # tests: every module of the real architecture, a few channels wide, 256-pixel input
    "tiny": SamConfig("tiny", 32, 2, 2, (1,), image_size=256, window_size=4, prompt_embed_dim=32,
                      decoder_mlp_dim=64, decoder_num_heads=2, mask_in_chans=4, iou_head_hidden_dim=32),
}


def get_config(name: str | SamConfig) -> SamConfig:
    if isinstance(name, SamConfig):
        return name
    if name not in SAM_CONFIGS:
        raise SegmentationError(f"unknown SAM model {name!r}; choose one of {', '.join(SAM_CONFIGS)}")
    return SAM_CONFIGS[name]


def build_sam_model(config: str | SamConfig = "vit_b", checkpoint: str | Path | None = None,
                    device: str = "cpu", seed: int | None = 0) -> Any:
    """A ``segment_anything.modeling.Sam`` in eval mode.

    :param config: "vit_b", "vit_l", "vit_h", "tiny" or a :class:`SamConfig`.
    :param checkpoint: local ``.pth`` state dict (the official ``sam_vit_*.pth`` files); None gives
        random weights (tests, benchmarks: inference cost does not depend on the values).
    :param seed: seeds the random initialisation (reproducible tests); None leaves torch's RNG alone.
    """
    import torch
    from functools import partial

    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    cfg = get_config(config)
    state = load_sam_checkpoint(checkpoint, cfg) if checkpoint is not None else None
    if seed is not None:
        gen_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
    try:
        e = cfg.embedding_size
        sam = Sam(
            image_encoder=ImageEncoderViT(
                depth=cfg.encoder_depth, embed_dim=cfg.encoder_embed_dim, img_size=cfg.image_size,
                mlp_ratio=4, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
                num_heads=cfg.encoder_num_heads, patch_size=cfg.patch_size, qkv_bias=True,
                use_rel_pos=True, global_attn_indexes=cfg.encoder_global_attn_indexes,
                window_size=cfg.window_size, out_chans=cfg.prompt_embed_dim),
            prompt_encoder=PromptEncoder(
                embed_dim=cfg.prompt_embed_dim, image_embedding_size=(e, e),
                input_image_size=(cfg.image_size, cfg.image_size), mask_in_chans=cfg.mask_in_chans),
            mask_decoder=MaskDecoder(
                num_multimask_outputs=3,
                transformer=TwoWayTransformer(depth=2, embedding_dim=cfg.prompt_embed_dim,
                                              mlp_dim=cfg.decoder_mlp_dim, num_heads=cfg.decoder_num_heads),
                transformer_dim=cfg.prompt_embed_dim, iou_head_depth=3,
                iou_head_hidden_dim=cfg.iou_head_hidden_dim),
            pixel_mean=list(PIXEL_MEAN), pixel_std=list(PIXEL_STD))
    finally:
        if seed is not None:
            torch.random.set_rng_state(gen_state)
    if state is not None:
        missing, unexpected = sam.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise SamWeightsError(
                f"{checkpoint}: does not fit SAM {cfg.name}: {len(missing)} missing keys "
                f"(e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]})")
    return sam.eval().to(device)


def load_sam_checkpoint(path: str | Path, config: str | SamConfig | None = None) -> dict[str, Any]:
    """The state dict of a local SAM checkpoint, checked against ``config`` (variant named on a
    mismatch). Never unpickles code: ``torch.load(weights_only=True)``."""
    import torch

    p = Path(path)
    if not p.is_file():
        raise SamWeightsError(f"SAM checkpoint not found: {p} (download sam_vit_b_01ec64.pth, "
                              "sam_vit_l_0b3195.pth or sam_vit_h_4b8939.pth and pass its path)")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - zip errors, unpickling errors, EOF: all "unreadable"
        raise SamWeightsError(f"{p}: not a readable PyTorch checkpoint ({type(exc).__name__}: {exc})") from exc
    for key in ("model", "state_dict"):  # training checkpoints wrap the weights
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(hasattr(v, "shape") for v in state.values()):
        raise SamWeightsError(f"{p}: expected a state dict of tensors, got {type(state).__name__}")
    if config is not None:
        cfg = get_config(config)
        found = checkpoint_variant(state)
        if found is not None and found != cfg.name:
            raise SamWeightsError(f"{p}: is a SAM {found} checkpoint, but {cfg.name} was asked for")
        if found is None:
            raise SamWeightsError(f"{p}: not a SAM checkpoint (no image_encoder.patch_embed.proj.weight "
                                  "or an unknown encoder size)")
    return state


def checkpoint_variant(state: dict[str, Any]) -> str | None:
    """The SAM variant ("vit_b", ...) a state dict holds, from its encoder width and depth."""
    w = state.get("image_encoder.patch_embed.proj.weight")
    if w is None:
        return None
    blocks = {k.split(".")[2] for k in state if k.startswith("image_encoder.blocks.")}
    for name, cfg in SAM_CONFIGS.items():
        if w.shape[0] == cfg.encoder_embed_dim and len(blocks) == cfg.encoder_depth:
            return name
    return None


# -- pre / post-processing shared by the torch and ONNX Runtime backends -----------------------------


def preprocess_shape(height: int, width: int, long_side: int) -> tuple[int, int]:
    """(h, w) of an image resized so its longest side is ``long_side`` (ResizeLongestSide)."""
    scale = long_side / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def preprocess_image(rgb: np.ndarray, image_size: int) -> tuple[np.ndarray, tuple[int, int]]:
    """HxWx3 uint8 RGB → (1x3xSxS float32 normalised and zero-padded at the bottom/right, (h, w)
    of the resized image inside the padding)."""
    import cv2

    img = check_image_rgb(rgb)
    h, w = preprocess_shape(img.shape[0], img.shape[1], image_size)
    # area averaging when shrinking (anti-aliased, as the reference PIL resize), bilinear when growing
    interp = cv2.INTER_AREA if h < img.shape[0] else cv2.INTER_LINEAR
    resized = cv2.resize(img, (w, h), interpolation=interp).astype(np.float32)
    x = np.zeros((1, 3, image_size, image_size), np.float32)
    x[0, :, :h, :w] = ((resized - np.array(PIXEL_MEAN, np.float32)) / np.array(PIXEL_STD, np.float32)).transpose(2, 0, 1)
    return x, (h, w)


def prompt_points(original_size: tuple[int, int], input_size: tuple[int, int],
                  boxes_xyxy: np.ndarray | None = None, points_xy: np.ndarray | None = None,
                  point_labels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Prompts in original pixels → (BxNx2 float32 coordinates in the model's input frame, BxN
    float32 labels) in the single-sequence form of the ONNX decoder: points (1 fg, 0 bg), then box
    corners (labels 2, 3); without a box one padding point (label -1), as the prompt encoder adds."""
    boxes, pts, labels = check_prompts(boxes_xyxy, points_xy, point_labels)
    sy, sx = input_size[0] / original_size[0], input_size[1] / original_size[1]
    scale = np.array([sx, sy], np.float32)
    n = len(boxes) if boxes is not None else len(pts)
    parts, labs = [], []
    if pts is not None:
        parts.append(pts * scale)
        labs.append(labels)
    if boxes is not None:
        parts.append(boxes.reshape(n, 2, 2) * scale)
        labs.append(np.tile(np.array([2.0, 3.0], np.float32), (n, 1)))
    else:
        parts.append(np.zeros((n, 1, 2), np.float32))
        labs.append(-np.ones((n, 1), np.float32))
    return np.concatenate(parts, axis=1).astype(np.float32), np.concatenate(labs, axis=1).astype(np.float32)


def check_prompts(boxes_xyxy, points_xy, point_labels):
    """Validated (boxes Bx4 | None, points BxKx2 | None, labels BxK | None), float32."""
    boxes = pts = labels = None
    if boxes_xyxy is not None:
        boxes = np.asarray(boxes_xyxy, np.float32).reshape(-1, 4)
        if not np.isfinite(boxes).all() or (boxes[:, 2] < boxes[:, 0]).any() or (boxes[:, 3] < boxes[:, 1]).any():
            raise SegmentationError(f"boxes must be finite XYXY with x1 >= x0 and y1 >= y0, got {boxes.tolist()}")
    if points_xy is not None:
        pts = np.asarray(points_xy, np.float32)
        if pts.ndim == 2:
            pts = pts[:, None, :]
        if pts.ndim != 3 or pts.shape[2] != 2 or not np.isfinite(pts).all():
            raise SegmentationError(f"points must be finite BxKx2 (x, y) pixels, got shape {pts.shape}")
        labels = (np.ones(pts.shape[:2], np.float32) if point_labels is None
                  else np.asarray(point_labels, np.float32).reshape(pts.shape[:2]))
        if not np.isin(labels, (0.0, 1.0)).all():
            raise SegmentationError("point labels must be 1 (foreground) or 0 (background)")
    if boxes is None and pts is None:
        raise SegmentationError("a prompt needs boxes and/or points")
    if boxes is not None and pts is not None and len(boxes) != len(pts):
        raise SegmentationError(f"{len(boxes)} boxes but {len(pts)} point sets: one of each per prompt")
    return boxes, pts, labels


def multimask_wanted(n_points: int, has_box: bool) -> bool:
    """SAM's advice: a single point is ambiguous (part / object / group), so ask for three masks
    and keep the best; a box or several points are not."""
    return not has_box and n_points == 1


def select_masks(low_res_all: np.ndarray, iou_all: np.ndarray, multimask: bool) -> tuple[np.ndarray, np.ndarray]:
    """From the decoder's 4 outputs (single-mask token first, then 3 multimask tokens): Bxhxw
    logits and (B,) predicted IoU of the mask SAM would return."""
    if not multimask:
        return low_res_all[:, 0], iou_all[:, 0]
    best = np.argmax(iou_all[:, 1:], axis=1) + 1
    rows = np.arange(len(best))
    return low_res_all[rows, best], iou_all[rows, best]


def postprocess_masks(low_res: np.ndarray, image_size: int, input_size: tuple[int, int],
                      original_size: tuple[int, int]) -> np.ndarray:
    """Bxhxw logits → BxHxW float32 logits of the original image: bilinear to SxS, crop the padding
    to the resized image's (h, w), bilinear to (H, W). The crop is taken from ``input_size`` of
    *this* image (the stock ONNX export bakes the dummy image's crop into the graph)."""
    import cv2

    S = int(image_size)
    h, w = input_size
    H, W = original_size
    out = np.empty((len(low_res), H, W), np.float32)
    # cv2 resizes up to 512 channels in one call; bilinear with half-pixel centres = torch's
    # F.interpolate(mode="bilinear", align_corners=False)
    for start in range(0, len(low_res), 256):
        chunk = np.ascontiguousarray(low_res[start:start + 256].transpose(1, 2, 0), np.float32)
        up = cv2.resize(chunk, (S, S), interpolation=cv2.INTER_LINEAR)
        up = up.reshape(S, S, -1)[:h, :w]
        full = cv2.resize(np.ascontiguousarray(up), (W, H), interpolation=cv2.INTER_LINEAR)
        out[start:start + chunk.shape[2]] = full.reshape(H, W, -1).transpose(2, 0, 1)
    return out


# -- results ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageEmbedding:
    """The encoder's output for one frame; pass it to ``decode`` from any thread.

    embeddings: 1xCxhxw (torch tensor or numpy array, per backend).
    original_size: (H, W) of the frame; input_size: (h, w) of the resized image inside the padding.
    """

    embeddings: Any
    original_size: tuple[int, int]
    input_size: tuple[int, int]


@dataclass(frozen=True)
class MaskPrediction:
    """masks: BxHxW bool; iou: (B,) SAM's predicted IoU; logits: BxHxW float32 (threshold 0);
    low_res_logits: Bxhxw float32 (the decoder's own resolution)."""

    masks: np.ndarray
    iou: np.ndarray
    logits: np.ndarray
    low_res_logits: np.ndarray


def masks_to_segmentation(masks: np.ndarray, names: Sequence[str], scores: Sequence[float],
                          source: str, message: str = "", min_pixels: int = 1) -> Segmentation:
    """BxHxW bool masks → one label image (ids 1..B in prompt order). Overlaps go to the more
    confident mask (painted last); masks under ``min_pixels`` are left out and reported."""
    B = len(masks)
    shape = masks.shape[1:] if B else (0, 0)
    labels = np.zeros(shape, np.uint16)
    order = np.argsort(np.asarray(scores, float), kind="stable")
    for k in order:  # a loop over masks, not pixels
        labels[masks[k]] = k + 1
    counts = np.bincount(labels.ravel(), minlength=B + 1)
    empty = [names[k] or f"prompt {k + 1}" for k in range(B) if counts[k + 1] < min_pixels]
    if empty:
        small = np.zeros(B + 1, bool)
        small[1:] = counts[1:] < min_pixels
        labels[small[labels]] = 0
    notes = [f"{len(empty)} prompt(s) gave no mask: {', '.join(map(repr, empty[:5]))}"] if empty else []
    return Segmentation(labels=labels, names={k + 1: names[k] or f"id {k + 1}" for k in range(B)},
                        scores={k + 1: float(scores[k]) for k in range(B)}, source=source,
                        message=join_messages(message, *notes))


class SamBase:
    """Shared by the torch, ONNX Runtime and TensorRT segmenters: prompts from detections,
    batching, and the decode around an exported decoder graph (``_run_decoder``; the torch
    segmenter decodes through the library instead)."""

    config: SamConfig
    source = "sam"

    def encode(self, rgb: np.ndarray) -> ImageEmbedding:  # pragma: no cover - abstract
        raise NotImplementedError

    def decode(self, embedding: ImageEmbedding, boxes_xyxy: np.ndarray | None = None,
               points_xy: np.ndarray | None = None, point_labels: np.ndarray | None = None
               ) -> MaskPrediction:
        """One batch of B prompts (boxes Bx4 and/or points BxKx2 + labels BxK, original pixels)
        → B masks at the original size (the embedding may come from any SAM backend)."""
        boxes, pts, labels = check_prompts(boxes_xyxy, points_xy, point_labels)
        coords, labs = prompt_points(embedding.original_size, embedding.input_size, boxes, pts, labels)
        low_all, iou_all = self._run_decoder(embedding.embeddings, coords, labs)
        multimask = multimask_wanted(0 if pts is None else int(pts.shape[1]), boxes is not None)
        low, iou = select_masks(low_all, iou_all, multimask)
        logits = postprocess_masks(low, self.config.image_size, embedding.input_size, embedding.original_size)
        return MaskPrediction(masks=logits > MASK_THRESHOLD, iou=iou.astype(np.float32), logits=logits,
                              low_res_logits=low.astype(np.float32))

    def _run_decoder(self, embeddings: Any, coords: np.ndarray, labels: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - abstract
        """The decoder graph's (Bx4xhxw low-res logits, Bx4 IoU) for B prompts in input pixels."""
        raise NotImplementedError

    def segment(self, rgb: np.ndarray, detections: Sequence[Detection],
                embedding: ImageEmbedding | None = None, min_pixels: int = 1) -> Segmentation:
        """Masks for every detection with a box and/or points (e.g. a Detection2DArray from a VLM).

        Encodes the frame once (or reuses ``embedding``) and decodes once per group of prompts of
        the same form (all box-only prompts in one batch). Names and scores come from the
        detections (score: the detector's when given, else SAM's predicted IoU).
        """
        img = check_image_rgb(rgb)
        usable = [d for d in detections if d.box_xyxy is not None or d.points_xy is not None]
        skipped = len(detections) - len(usable)
        note = f"{skipped} detection(s) without a box or points ignored" if skipped else ""
        if not usable:
            return Segmentation.empty(img.shape[:2], self.source,
                                      join_messages(note, "no prompts (no detections with a box or points)"))
        emb = embedding if embedding is not None else self.encode(img)
        groups: dict[tuple[bool, int], list[int]] = {}
        for k, d in enumerate(usable):
            n_pts = 0 if d.points_xy is None else int(np.asarray(d.points_xy).reshape(-1, 2).shape[0])
            groups.setdefault((d.box_xyxy is not None, n_pts), []).append(k)
        masks = np.zeros((len(usable), *img.shape[:2]), bool)
        ious = np.zeros(len(usable))
        for (has_box, n_pts), ks in groups.items():
            boxes = np.stack([np.asarray(usable[k].box_xyxy, np.float32) for k in ks]) if has_box else None
            pts = labels = None
            if n_pts:
                pts = np.stack([np.asarray(usable[k].points_xy, np.float32).reshape(-1, 2) for k in ks])
                labels = np.stack([np.ones(n_pts, np.float32) if usable[k].point_labels is None
                                   else np.asarray(usable[k].point_labels, np.float32).reshape(-1) for k in ks])
            pred = self.decode(emb, boxes, pts, labels)
            masks[ks] = pred.masks
            ious[ks] = pred.iou
        scores = [d.score if d.score > 0 else float(ious[k]) for k, d in enumerate(usable)]
        return masks_to_segmentation(masks, [d.label for d in usable], scores, self.source, note, min_pixels)


class SamSegmenter(SamBase):
    """SAM on PyTorch. Thread-safe: no per-image state; ``encode`` once per frame, ``decode`` once
    per prompt batch, from any thread."""

    backend = "torch"

    def __init__(self, model: Any, device: str | None = None, config: SamConfig | None = None) -> None:
        self.model = model.eval()
        if device is not None:
            self.model.to(device)
        self.device = next(self.model.parameters()).device
        size = int(self.model.image_encoder.img_size)
        self.config = config or SamConfig("custom", 0, 0, 0, (), image_size=size)
        if self.config.image_size != size:
            raise SegmentationError(f"config {self.config.name} has image_size {self.config.image_size}, "
                                    f"the model {size}")
        import torch

        with torch.inference_mode():  # a fixed positional encoding: once, not per decode
            self._dense_pe = self.model.prompt_encoder.get_dense_pe()

    @classmethod
    def from_config(cls, config: str | SamConfig = "vit_b", checkpoint: str | Path | None = None,
                    device: str = "cpu") -> SamSegmenter:
        return cls(build_sam_model(config, checkpoint, device), config=get_config(config))

    def encode(self, rgb: np.ndarray) -> ImageEmbedding:
        """HxWx3 uint8 RGB → :class:`ImageEmbedding` (the heavy part: the ViT encoder)."""
        import torch

        x, input_size = preprocess_image(rgb, self.config.image_size)
        with torch.inference_mode():
            emb = self.model.image_encoder(torch.from_numpy(x).to(self.device))
        return ImageEmbedding(emb, tuple(rgb.shape[:2]), input_size)

    def decode(self, embedding: ImageEmbedding, boxes_xyxy: np.ndarray | None = None,
               points_xy: np.ndarray | None = None, point_labels: np.ndarray | None = None) -> MaskPrediction:
        """One batch of B prompts (boxes Bx4 and/or points BxKx2 + labels BxK, original pixels) →
        B masks, through the library's prompt encoder, mask decoder and ``postprocess_masks``."""
        import torch

        boxes, pts, labels = check_prompts(boxes_xyxy, points_xy, point_labels)
        H, W = embedding.original_size
        sy, sx = embedding.input_size[0] / H, embedding.input_size[1] / W
        scale = torch.tensor([sx, sy], dtype=torch.float32, device=self.device)
        sam = self.model
        with torch.inference_mode():
            t_pts = None
            if pts is not None:
                t_pts = (torch.from_numpy(pts).to(self.device) * scale, torch.from_numpy(labels).to(self.device))
            t_boxes = None
            if boxes is not None:
                t_boxes = (torch.from_numpy(boxes).to(self.device).reshape(-1, 2, 2) * scale).reshape(-1, 4)
            sparse, dense = sam.prompt_encoder(points=t_pts, boxes=t_boxes, masks=None)
            multimask = multimask_wanted(0 if pts is None else pts.shape[1], boxes is not None)
            low, iou = sam.mask_decoder(image_embeddings=embedding.embeddings, image_pe=self._dense_pe,
                                        sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                        multimask_output=multimask)
            if multimask:
                best = torch.argmax(iou, dim=1)
                rows = torch.arange(len(best), device=best.device)
                low, iou = low[rows, best][:, None], iou[rows, best][:, None]
            logits = sam.postprocess_masks(low, embedding.input_size, embedding.original_size)
        logits_np = logits[:, 0].float().cpu().numpy()
        return MaskPrediction(masks=logits_np > MASK_THRESHOLD, iou=iou[:, 0].float().cpu().numpy(),
                              logits=logits_np, low_res_logits=low[:, 0].float().cpu().numpy())
