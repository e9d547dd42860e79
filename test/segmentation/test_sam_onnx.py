"""SAM on ONNX Runtime: the exported decoder matches torch at every aspect ratio (the stock export
does not), and the ONNX segmenter gives the torch segmenter's labels."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("segment_anything")
pytest.importorskip("onnxruntime")

from depth_perception.segmentation.base import Detection  # noqa: E402
from depth_perception.segmentation.sam import SamSegmenter, prompt_points  # noqa: E402
from depth_perception.segmentation.sam_onnx import (  # noqa: E402
    SamExportError,
    SamOnnxSegmenter,
    export_sam_onnx,
)

SIZES = [(240, 320), (320, 180), (200, 500)]  # 4:3 landscape, 9:16 portrait, 5:2 panorama


@pytest.fixture(scope="module")
def torch_sam():
    return SamSegmenter.from_config("tiny")


@pytest.fixture(scope="module")
def onnx_files(torch_sam, tmp_path_factory):
    # the tests below compare with torch more thoroughly than export's own check
    return export_sam_onnx(torch_sam.model, tmp_path_factory.mktemp("sam"), name="tiny", check=False,
                           optimize=False)


@pytest.fixture(scope="module")
def onnx_sam(onnx_files):
    return SamOnnxSegmenter(onnx_files.encoder, onnx_files.decoder, providers=["CPUExecutionProvider"])


def _image(h, w, seed=0):
    return (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)


@pytest.mark.parametrize("h,w", SIZES)
def test_onnx_matches_torch_at_every_aspect(torch_sam, onnx_sam, h, w):
    rgb = _image(h, w)
    emb_t, emb_o = torch_sam.encode(rgb), onnx_sam.encode(rgb)
    assert emb_t.input_size == emb_o.input_size
    np.testing.assert_allclose(emb_o.embeddings, emb_t.embeddings.numpy(), atol=1e-4)
    boxes = np.array([[0.1 * w, 0.1 * h, 0.6 * w, 0.5 * h], [0.3 * w, 0.4 * h, 0.95 * w, 0.9 * h]])
    points = np.array([[[0.5 * w, 0.5 * h], [0.2 * w, 0.8 * h]]] * 2)
    for prompts in ({"boxes_xyxy": boxes}, {"points_xy": points, "point_labels": [[1, 0], [1, 1]]},
                    {"points_xy": points[:, :1]},  # single point: multimask, best of three
                    {"boxes_xyxy": boxes, "points_xy": points}):
        ref = torch_sam.decode(emb_t, **prompts)
        got = onnx_sam.decode(emb_t, **prompts)  # same embedding: the decoder alone is compared
        assert got.masks.shape == (2, h, w)
        np.testing.assert_allclose(got.logits, ref.logits, atol=1e-4)
        np.testing.assert_allclose(got.iou, ref.iou, atol=1e-5)
        assert (got.masks == ref.masks).mean() > 0.9999


def test_stock_decoder_export_is_wrong_for_other_aspects(torch_sam, tmp_path):
    """Why the crop lives outside the graph: segment_anything's own SamOnnxModel, exported the way
    its script does with a 4:3 dummy, matches torch at 4:3 and not at 9:16."""
    import onnxruntime as ort
    import torch
    from segment_anything.utils.onnx import SamOnnxModel

    stock = SamOnnxModel(torch_sam.model, return_single_mask=True)
    names = ["image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input", "orig_im_size"]

    def args(h, w, emb, coords, labels):
        return (emb, torch.from_numpy(coords), torch.from_numpy(labels), torch.zeros(1, 1, 64, 64),
                torch.zeros(1), torch.tensor([h, w], dtype=torch.float32))

    emb = torch_sam.encode(_image(240, 320)).embeddings
    path = tmp_path / "stock.onnx"
    with torch.no_grad():
        torch.onnx.export(stock, args(240, 320, emb, np.zeros((1, 2, 2), np.float32), np.ones((1, 2), np.float32)),
                          str(path), dynamo=False, opset_version=17, input_names=names, output_names=["masks", "iou", "low"],
                          dynamic_axes={"point_coords": {1: "n"}, "point_labels": {1: "n"}})
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    agreement = {}
    for h, w in ((240, 320), (320, 180)):
        e = torch_sam.encode(_image(h, w))
        coords, labels = prompt_points(e.original_size, e.input_size, np.array([[0.2 * w, 0.2 * h, 0.7 * w, 0.8 * h]]))
        a = args(h, w, e.embeddings, coords, labels)
        with torch.no_grad():
            ref = stock(*a)[0].numpy()
        got = sess.run(["masks"], {n: v.numpy() for n, v in zip(names, a)})[0]
        agreement[(h, w)] = float(((got > 0) == (ref > 0)).mean())
    assert agreement[(240, 320)] > 0.9999
    assert agreement[(320, 180)] < 0.9


def test_onnx_segmenter_gives_the_torch_labels(torch_sam, onnx_sam):
    rgb = _image(180, 320, seed=3)
    dets = [Detection(np.array([20.0, 20.0, 150.0, 160.0]), "a", 0.9),
            Detection(np.array([120.0, 30.0, 310.0, 170.0]), "b", 0.6),
            Detection(points_xy=np.array([[60.0, 90.0]]), label="c")]
    ref, got = torch_sam.segment(rgb, dets), onnx_sam.segment(rgb, dets)
    assert (got.labels == ref.labels).mean() > 0.999
    assert got.names == ref.names


def test_loading_errors(onnx_files, tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        SamOnnxSegmenter(tmp_path / "nope.onnx", onnx_files.decoder)
    with pytest.raises(SamExportError, match="expected inputs"):
        SamOnnxSegmenter(onnx_files.decoder, onnx_files.decoder)  # a decoder where the encoder goes
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a graph")
    with pytest.raises(SamExportError, match="cannot load"):
        SamOnnxSegmenter(bad, onnx_files.decoder)
