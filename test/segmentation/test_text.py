"""Text prompt → OWLv2 (tiny, random weights, loaded from a local folder) → boxes → SAM."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("transformers")
pytest.importorskip("segment_anything")

from seg_helpers import tabletop  # noqa: E402

from depth_perception.segmentation.base import SegmentationError  # noqa: E402
from depth_perception.segmentation.sam import SamSegmenter  # noqa: E402
from depth_perception.segmentation.text import (  # noqa: E402
    OpenVocabDetector,
    TextDetectorParams,
    TextSegmenter,
    nms,
    owl_boxes_to_pixels,
    parse_queries,
    save_tiny_owlv2,
)


@pytest.fixture(scope="module")
def owl_dir(tmp_path_factory):
    return save_tiny_owlv2(tmp_path_factory.mktemp("owlv2"))


@pytest.fixture(scope="module")
def sam():
    return SamSegmenter.from_config("tiny")


def test_parse_queries():
    assert parse_queries("mug, screwdriver;red  cup\n\n, Mug") == ["mug", "screwdriver", "red cup"]
    assert parse_queries(["a", " a ", "b"]) == ["a", "b"]
    assert parse_queries(" , ") == []


def test_processor_pads_to_a_square_at_the_bottom_right(owl_dir):
    """The assumption behind owl_boxes_to_pixels, checked on the real image processor: a wide image
    fills the top of the square input, and the rest is padding."""
    det = OpenVocabDetector.from_pretrained(owl_dir)
    img = np.full((32, 64, 3), 255, np.uint8)  # 2:1, white
    pix = det.processor(text=[["x"]], images=img, return_tensors="pt")["pixel_values"][0].numpy()
    S = pix.shape[-1]
    top, bottom = pix[:, : S // 2 - 2], pix[:, S // 2 + 2:]
    assert np.ptp(top, axis=(1, 2)).max() < 1e-3 and np.ptp(bottom, axis=(1, 2)).max() < 1e-3
    assert (top.mean(axis=(1, 2)) > bottom.mean(axis=(1, 2)) + 1).all()  # image vs pad


def test_boxes_are_scaled_by_the_padded_square():
    # a box centred in the image's top half of the padded square, on a 2:1 (W=640, H=320) frame
    xyxy = owl_boxes_to_pixels(np.array([[0.5, 0.25, 0.5, 0.25]]), (320, 640))
    np.testing.assert_allclose(xyxy, [[160, 80, 480, 240]])
    np.testing.assert_allclose(owl_boxes_to_pixels(np.array([[0.9, 0.9, 0.4, 0.4]]), (320, 640)),
                               [[448, 320, 640, 320]])  # clipped to the image


def test_nms_suppresses_within_a_query_only():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10], [50, 50, 60, 60]], float)
    keep = nms(boxes, np.array([0.9, 0.8, 0.7, 0.6]), np.array([0, 0, 1, 0]), 0.5)
    assert sorted(keep.tolist()) == [0, 2, 3]


def test_text_prompt_to_named_masks(owl_dir, sam):
    scene, _ = tabletop(0)
    det = OpenVocabDetector.from_pretrained(owl_dir, params=TextDetectorParams(threshold=0.0, max_detections=3))
    seg = TextSegmenter(det, sam).segment(scene.rgb, "mug, screwdriver")
    assert seg.source == "text" and seg.labels.shape == scene.depth_m.shape
    assert 1 <= len(seg.names) <= 3 and set(seg.names.values()) <= {"mug", "screwdriver"}
    assert all(0 <= s <= 1 for s in seg.scores.values())


def test_prompt_with_no_hits_is_reported_and_empty(owl_dir, sam):
    scene, _ = tabletop(0)
    det = OpenVocabDetector.from_pretrained(owl_dir, params=TextDetectorParams(threshold=1.0))
    seg = TextSegmenter(det, sam).segment(scene.rgb, "mug")
    assert len(seg) == 0 and "no hits for 'mug'" in seg.message
    assert "empty text prompt" in TextSegmenter(det, sam).segment(scene.rgb, " ").message


def test_missing_weights(tmp_path):
    with pytest.raises(SegmentationError, match="no config.json"):
        OpenVocabDetector.from_pretrained(tmp_path)
    with pytest.raises(SegmentationError, match="threshold"):
        TextDetectorParams(threshold=2.0)
