"""Text prompt → open-vocabulary detector (OWLv2, transformers) → boxes → SAM masks, labels kept.

``"mug, screwdriver"`` (a `std_msgs/String` on ``prompt``) is split into queries; OWLv2 scores every
image patch's box against every query; boxes above ``threshold`` survive per-query NMS and prompt
SAM; each mask keeps its query as name and the detector's score.

Boxes. The OWLv2 image processor pads the image to a square (bottom and right) before resizing, so
predicted boxes are normalised to that padded square, not to the image: they are scaled by
max(H, W) on both axes (scaling by (W, H), as a generic post-processing call with the image size
does, stretches every box on non-square frames).

Weights come from a local Hugging Face folder (``google/owlv2-base-patch16-ensemble`` saved with
``save_pretrained``), loaded with ``local_files_only=True``; :func:`save_tiny_owlv2` writes a tiny
random-weight model + tokenizer of the same architecture for tests and benchmarks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .base import Detection, Segmentation, SegmentationError, check_image_rgb, join_messages
from .sam import ImageEmbedding, SamBase

SOURCE = "text"


def parse_queries(prompt: str | Sequence[str]) -> list[str]:
    """"mug, screwdriver; red cup" → ["mug", "screwdriver", "red cup"] (commas, semicolons or
    newlines separate; blanks and repeats dropped, order kept)."""
    parts = re.split(r"[,;\n]", prompt) if isinstance(prompt, str) else list(prompt)
    out: list[str] = []
    for p in parts:
        q = " ".join(str(p).split())
        if q and q.lower() not in (o.lower() for o in out):
            out.append(q)
    return out


@dataclass(frozen=True)
class TextDetectorParams:
    """Settings of the open-vocabulary detector (ROS parameters ``segmentation.text.*``)."""

    threshold: float = 0.2
    nms_iou: float = 0.3
    max_detections: int = 20

    def __post_init__(self) -> None:
        if not 0 <= self.threshold <= 1 or not 0 < self.nms_iou <= 1 or int(self.max_detections) < 1:
            raise SegmentationError(
                f"text detector needs threshold in [0, 1], nms_iou in (0, 1], max_detections >= 1; got "
                f"{self.threshold}, {self.nms_iou}, {self.max_detections}")


def owl_boxes_to_pixels(pred_boxes: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
    """Nx4 (cx, cy, w, h) normalised to OWLv2's padded square → Nx4 XYXY pixels of the image,
    clipped to it."""
    H, W = image_hw
    S = float(max(H, W))
    b = np.asarray(pred_boxes, np.float64).reshape(-1, 4)
    xyxy = np.column_stack([b[:, 0] - b[:, 2] / 2, b[:, 1] - b[:, 3] / 2,
                            b[:, 0] + b[:, 2] / 2, b[:, 1] + b[:, 3] / 2]) * S
    return np.clip(xyxy, 0.0, [W, H, W, H])


def nms(boxes: np.ndarray, scores: np.ndarray, groups: np.ndarray, iou: float) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression within each group, best score first."""
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    suppressed = np.zeros(len(boxes), bool)
    for i in order:  # a loop over the few boxes above threshold, vectorised against the rest
        if suppressed[i]:
            continue
        keep.append(int(i))
        x0 = np.maximum(boxes[i, 0], boxes[:, 0])
        y0 = np.maximum(boxes[i, 1], boxes[:, 1])
        x1 = np.minimum(boxes[i, 2], boxes[:, 2])
        y1 = np.minimum(boxes[i, 3], boxes[:, 3])
        inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
        with np.errstate(invalid="ignore", divide="ignore"):
            overlap = inter / (area[i] + area - inter)
        suppressed |= (overlap > iou) & (groups == groups[i])
    return np.array(keep, np.int64)


class OpenVocabDetector:
    """OWLv2 (``transformers.Owlv2ForObjectDetection``): RGB + queries → :class:`Detection` list.
    Stateless per call (thread-safe)."""

    def __init__(self, model: Any, processor: Any, device: str = "cpu",
                 params: TextDetectorParams | None = None) -> None:
        self.model = model.eval().to(device)
        self.processor = processor
        self.device = device
        self.params = params or TextDetectorParams()

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str = "cpu",
                        params: TextDetectorParams | None = None) -> OpenVocabDetector:
        """Load model + processor from a local Hugging Face folder (never the network)."""
        from transformers import Owlv2ForObjectDetection, Owlv2Processor

        p = Path(path)
        if not (p / "config.json").is_file():
            raise SegmentationError(f"OWLv2 folder {p} has no config.json (save the model and processor "
                                    "there with save_pretrained)")
        try:
            processor = Owlv2Processor.from_pretrained(p, local_files_only=True)
            model = Owlv2ForObjectDetection.from_pretrained(p, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise SegmentationError(f"cannot load OWLv2 from {p}: {exc}") from exc
        return cls(model, processor, device, params)

    def detect(self, rgb: np.ndarray, queries: Sequence[str]) -> list[Detection]:
        """Boxes (XYXY pixels of ``rgb``) for every query, best first, after threshold and NMS."""
        import torch

        img = check_image_rgb(rgb)
        queries = list(queries)
        if not queries:
            return []
        inputs = self.processor(text=[queries], images=img, return_tensors="pt", padding=True, truncation=True)
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        with torch.inference_mode():
            out = self.model(**inputs)
        probs = torch.sigmoid(out.logits[0]).float().cpu().numpy()  # (patches, queries)
        label = probs.argmax(axis=1)
        score = probs[np.arange(len(probs)), label]
        sel = np.flatnonzero(score >= self.params.threshold)
        if sel.size == 0:
            return []
        boxes = owl_boxes_to_pixels(out.pred_boxes[0].float().cpu().numpy()[sel], img.shape[:2])
        ok = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        sel, boxes = sel[ok], boxes[ok]
        keep = nms(boxes, score[sel], label[sel], self.params.nms_iou)[: int(self.params.max_detections)]
        return [Detection(box_xyxy=boxes[k], label=queries[int(label[sel[k]])], score=float(score[sel[k]]))
                for k in keep]


class TextSegmenter:
    """Text prompt → detector → SAM. ``segment`` is safe to call from several threads."""

    def __init__(self, detector: OpenVocabDetector, sam: SamBase) -> None:
        self.detector = detector
        self.sam = sam

    def segment(self, rgb: np.ndarray, prompt: str | Sequence[str],
                embedding: ImageEmbedding | None = None) -> Segmentation:
        """Instance masks named by the queries that found them. A prompt with no hits gives an empty
        segmentation whose message says so (the frame still yields depth and the scene cloud)."""
        img = check_image_rgb(rgb)
        queries = parse_queries(prompt)
        if not queries:
            return Segmentation.empty(img.shape[:2], SOURCE, "empty text prompt")
        dets = self.detector.detect(img, queries)
        missed = [q for q in queries if q not in {d.label for d in dets}]
        note = (f"no hits for {', '.join(map(repr, missed))} (threshold {self.detector.params.threshold})"
                if missed else "")
        if not dets:
            return Segmentation.empty(img.shape[:2], SOURCE, note)
        seg = self.sam.segment(img, dets, embedding=embedding)
        seg.source = SOURCE
        seg.message = join_messages(note, seg.message)
        return seg


def save_tiny_owlv2(path: str | Path, image_size: int = 64, seed: int = 0) -> Path:
    """Write a tiny random-weight OWLv2 (same architecture, 2 layers of width 32) with a byte-level
    CLIP tokenizer and a ``image_size`` processor to ``path``, for tests and benchmarks."""
    import torch
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer, Owlv2Config, Owlv2ForObjectDetection, Owlv2ImageProcessor, Owlv2Processor

    chars = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(vocab) + i for i, c in enumerate(chars)})
    # special tokens last, as in CLIP's vocabulary: OWLv2 treats a query whose first token id is 0
    # as padding
    bos, eos = len(vocab), len(vocab) + 1
    vocab.update({"<|startoftext|>": bos, "<|endoftext|>": eos})
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=16)  # OWL text: 16 positions
    cfg = Owlv2Config(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=16, bos_token_id=bos, eos_token_id=eos,
                         pad_token_id=eos),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=image_size, patch_size=16),
        projection_dim=32)
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = Owlv2ForObjectDetection(cfg).eval()
        # random heads saturate (scores 0, boxes 0 or 1); zeroed they give the patch-grid box prior
        # and plain query similarities, i.e. ordinary-looking detections to exercise the path
        with torch.no_grad():
            for layer in (model.box_head.dense2, model.class_head.logit_shift, model.class_head.logit_scale):
                layer.weight.zero_()
                layer.bias.zero_()
    finally:
        torch.random.set_rng_state(state)
    processor = Owlv2Processor(image_processor=Owlv2ImageProcessor(size={"height": image_size, "width": image_size}),
                               tokenizer=tokenizer)
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out
