"""SAM on PyTorch: tiny real architecture (random weights), prompts from boxes/points/detections,
checkpoint loading, thread safety."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

pytest.importorskip("segment_anything")

from seg_helpers import tabletop  # noqa: E402

from depth_perception.segmentation.base import Detection, SegmentationError  # noqa: E402
from depth_perception.segmentation.sam import (  # noqa: E402
    ImageEmbedding,
    SamSegmenter,
    SamWeightsError,
    build_sam_model,
    check_prompts,
    checkpoint_variant,
    load_sam_checkpoint,
)


class NotWeights:
    """An arbitrary object: unpickling it would run code of the file's choosing."""


@pytest.fixture(scope="module")
def tiny():
    return SamSegmenter.from_config("tiny")


@pytest.fixture(scope="module")
def rgb():
    return tabletop(0)[0].rgb  # 320x240


def test_decode_matches_the_library_predictor(tiny, rgb):
    """Same prompts through segment_anything.SamPredictor (stateful) and our decode (stateless)."""
    from segment_anything import SamPredictor

    pred = SamPredictor(tiny.model)
    pred.set_image(rgb)
    emb = tiny.encode(rgb)
    assert emb.input_size == tuple(pred.input_size) and emb.original_size == (240, 320)
    shared = ImageEmbedding(pred.features, emb.original_size, emb.input_size)
    box = np.array([40.0, 30.0, 200.0, 180.0])
    ref, ref_iou, _ = pred.predict(box=box, multimask_output=False)
    ours = tiny.decode(shared, boxes_xyxy=box[None])
    np.testing.assert_array_equal(ours.masks[0], ref[0])
    np.testing.assert_allclose(ours.iou, ref_iou, atol=1e-6)
    pts, labels = np.array([[100.0, 120.0], [60.0, 50.0]]), np.array([1, 0])
    ref, _, _ = pred.predict(point_coords=pts, point_labels=labels, multimask_output=False)
    ours = tiny.decode(shared, points_xy=pts[None], point_labels=labels[None])
    np.testing.assert_array_equal(ours.masks[0], ref[0])
    # one point is ambiguous: three masks, the best kept (as SamPredictor's multimask + argmax)
    ref, ref_iou, _ = pred.predict(point_coords=pts[:1], point_labels=labels[:1], multimask_output=True)
    ours = tiny.decode(shared, points_xy=pts[None, :1])
    np.testing.assert_array_equal(ours.masks[0], ref[np.argmax(ref_iou)])


def test_one_decode_per_prompt_batch(tiny, rgb):
    emb = tiny.encode(rgb)
    boxes = np.array([[10, 10, 100, 100], [150, 50, 300, 200], [0, 0, 320, 240]], float)
    batch = tiny.decode(emb, boxes_xyxy=boxes)
    assert batch.masks.shape == (3, 240, 320) and batch.masks.dtype == bool
    assert batch.low_res_logits.shape == (3, 64, 64)  # tiny: 256-pixel input, 64x64 decoder output
    for k in range(3):  # batching changes nothing
        np.testing.assert_allclose(tiny.decode(emb, boxes_xyxy=boxes[k:k + 1]).logits[0], batch.logits[k], atol=1e-5)


def test_segment_from_detections(tiny, rgb):
    dets = [Detection(np.array([40.0, 30.0, 200.0, 180.0]), "mug", 0.9),
            Detection(points_xy=np.array([[250.0, 60.0]]), label="ball"),  # points only: SAM's IoU as score
            Detection(np.array([150.0, 40.0, 310.0, 230.0]), "box", 0.5),
            Detection(label="no prompt", score=0.8)]
    seg = tiny.segment(rgb, dets)
    assert seg.source == "sam" and seg.labels.shape == (240, 320)
    assert "1 detection(s) without a box or points" in seg.message
    present = {seg.names[i] for i in seg.ids}
    assert present <= {"mug", "ball", "box"} and seg.scores.get(1, 0.9) == pytest.approx(0.9)
    empty = tiny.segment(rgb, [])
    assert len(empty) == 0 and "no prompts" in empty.message


def test_concurrent_frames_do_not_mix(tiny):
    """Two threads each encode their own frame and decode on it: results equal the sequential ones
    (SamPredictor's set_image/predict would mix them)."""
    frames = [tabletop(s)[0].rgb for s in (1, 2)]
    box = np.array([[60.0, 40.0, 260.0, 200.0]])
    expected = [tiny.decode(tiny.encode(f), box).logits for f in frames]
    results: dict[int, list] = {0: [], 1: []}

    def work(k):
        for _ in range(3):
            results[k].append(tiny.decode(tiny.encode(frames[k]), box).logits)

    threads = [threading.Thread(target=work, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in (0, 1):
        for got in results[k]:
            np.testing.assert_allclose(got, expected[k], atol=1e-5)
    assert not np.allclose(expected[0], expected[1])


def test_checkpoint_round_trip_and_errors(tiny, rgb, tmp_path):
    ckpt = tmp_path / "sam_tiny.pth"
    torch.save(tiny.model.state_dict(), ckpt)
    assert checkpoint_variant(load_sam_checkpoint(ckpt)) == "tiny"
    other = SamSegmenter.from_config("tiny", checkpoint=ckpt)
    box = np.array([[40.0, 30.0, 200.0, 180.0]])
    np.testing.assert_allclose(other.decode(other.encode(rgb), box).logits,
                               tiny.decode(tiny.encode(rgb), box).logits, atol=1e-6)
    with pytest.raises(SamWeightsError, match="not found"):
        build_sam_model("tiny", tmp_path / "missing.pth")
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(ckpt.read_bytes()[:1000])
    with pytest.raises(SamWeightsError, match="not a readable PyTorch checkpoint"):
        build_sam_model("tiny", corrupt)
    with pytest.raises(SamWeightsError, match="is a SAM tiny checkpoint, but vit_b"):
        build_sam_model("vit_b", ckpt)
    code = tmp_path / "code.pth"
    torch.save({"x": NotWeights()}, code)  # pickled objects are refused by weights_only loading
    with pytest.raises(SamWeightsError, match="not a readable"):
        build_sam_model("tiny", code)


def test_bad_prompts_and_models():
    with pytest.raises(SegmentationError, match="x1 >= x0"):
        check_prompts(np.array([[10, 10, 5, 20]]), None, None)
    with pytest.raises(SegmentationError, match="boxes and/or points"):
        check_prompts(None, None, None)
    with pytest.raises(SegmentationError, match="2 boxes but 1 point"):
        check_prompts(np.zeros((2, 4)), np.zeros((1, 1, 2)), None)
    with pytest.raises(SegmentationError, match="unknown SAM model"):
        build_sam_model("vit_x")
