"""The depth model sub-commands (`models`, `export`, `predict`'s monocular options) through a real
argparse parser."""

from __future__ import annotations

import argparse
from pathlib import Path

import onnxruntime as ort
import pytest

from depth_perception.cli import export, models, predict


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="depth-perception")
    sub = p.add_subparsers(dest="command", required=True)
    models.add_models_parser(sub)
    export.add_export_parser(sub)
    monocular = sub.add_parser("predict")
    monocular.add_argument("--model")
    monocular.add_argument("--weights")
    monocular.add_argument("--backend", default="auto")
    predict.add_monocular_arguments(monocular)
    return p


def test_models_lists_semantics_and_licences(capsys) -> None:
    assert models.cmd_models(parser().parse_args(["models"])) == 0
    out = capsys.readouterr().out
    assert "depth_anything_v2_small" in out and "Apache-2.0" in out and "CC-BY-NC-4.0" in out
    assert "metric (<= 20 m)" in out and "relative_inverse" in out
    assert "_tiny" not in out
    rows = {line.split()[0]: line for line in out.splitlines()[1:] if line}
    assert "torch,onnxruntime,tensorrt" in rows["depth_anything_v2_small"]
    assert "onnxruntime" not in rows["marigold_depth"]  # diffusion pipeline: torch only
    models.cmd_models(parser().parse_args(["models", "--tiny", "-v"]))
    out = capsys.readouterr().out
    assert "depth_anything_v2_small_tiny" in out
    assert "onnxruntime (fp32 int8), tensorrt (fp32 fp16 int8)" in out
    notes = {line.split(":")[0]: line for line in out.splitlines() if ": " in line}
    assert "metric.mode auto model sparse_depth" in notes["zoedepth_nyu"]
    assert " model " not in notes["depth_anything_v2_small"].split("metric.mode")[1]


def test_export_writes_a_checked_onnx_file(tmp_path: Path, capsys) -> None:
    out = tmp_path / "dpt.onnx"
    args = parser().parse_args(["export", "--model", "dpt_large_tiny", "--random-init", "-o", str(out),
                                "--int8"])
    assert export.cmd_export(args) == 0
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert sess.get_inputs()[0].shape == [1, 3, 32, 32]
    assert (tmp_path / "dpt.int8.onnx").is_file()
    assert "checked against torch" in capsys.readouterr().out


def test_export_for_tensorrt_10_keeps_layer_normalization_at_opset_18(tmp_path: Path, capsys) -> None:
    import onnx

    from depth_perception.depth.engine_onnx_ops import graph_ops

    out = tmp_path / "da.onnx"
    args = parser().parse_args(["export", "--model", "depth_anything_v2_small_tiny", "--random-init",
                                "-o", str(out), "--dynamic", "--tensorrt", "10.3", "--height", "28"])
    assert export.cmd_export(args) == 0
    assert {o.domain: o.version for o in onnx.load(str(out)).opset_import}[""] == 18
    assert graph_ops(out)["LayerNormalization"] > 0
    printed = capsys.readouterr()
    assert "for TensorRT >= 10.3" in printed.out and "warning" not in printed.err


@pytest.mark.parametrize("argv, message", [
    (["export", "--model", "marigold_depth_tiny", "--random-init", "-o", "m.onnx"], "cannot be exported"),
    (["export", "--model", "dpt_large_tiny", "--random-init", "-o", "m.pt"], "must end in .onnx"),
    (["export", "--model", "nope", "--random-init", "-o", "m.onnx"], "unknown model"),
    (["export", "--model", "dpt_large_tiny", "--random-init", "-o", "m.onnx", "--tensorrt", "7.2"],
     "TensorRT before 8.5 is not supported"),
    (["export", "--model", "dpt_large_tiny", "--random-init", "-o", "m.onnx", "--tensorrt", "latest"],
     "unrecognised TensorRT version"),
    (["export", "--model", "dpt_large_tiny", "--random-init", "-o", "m.onnx", "--tensorrt", "8.6",
      "--opset", "18"], "opset 18 is newer than TensorRT 8.6 parses"),
])
def test_export_errors_are_one_clear_line(argv: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        export.cmd_export(parser().parse_args(argv))


def test_predict_options_build_an_estimator() -> None:
    args = parser().parse_args(["predict", "--model", "depth_anything_v2_small_tiny", "--random-init",
                                "--backend", "torch", "--input-size", "42"])
    est = predict.estimator_from_args(args)
    assert est.backend_name == "torch" and est.input_size == 42


@pytest.mark.parametrize("model", ["depth_pro_tiny", "depth_anything_3_metric_large_tiny"])
def test_predict_gives_the_focal_length_to_the_models_that_take_it(model: str, tmp_path: Path) -> None:
    import numpy as np
    from skimage import data

    from depth_perception import cli
    from depth_perception.files import write_image

    image = tmp_path / "astronaut.png"
    write_image(image, data.astronaut()[::8, ::8])
    depth = {}
    for fx in ("100", "200"):
        out = tmp_path / f"fx{fx}.npy"
        assert cli.main(["predict", "-i", str(image), "-o", str(out), "--format", "npy",
                         "--model", model, "--random-init", "--focal", fx]) == 0
        depth[fx] = np.load(out)
    np.testing.assert_allclose(depth["200"], 2 * depth["100"], rtol=1e-4)  # twice as far


def test_predict_without_focal_length_for_depth_anything_3_metric_is_one_clear_line(tmp_path: Path,
                                                                                   capsys) -> None:
    from skimage import data

    from depth_perception import cli
    from depth_perception.files import write_image

    image = tmp_path / "astronaut.png"
    write_image(image, data.astronaut()[::8, ::8])
    assert cli.main(["predict", "-i", str(image), "-o", str(tmp_path / "d.npy"), "--format", "npy",
                     "--model", "depth_anything_3_metric_large_tiny", "--random-init"]) != 0
    err = capsys.readouterr().err
    assert "needs the focal length" in err and "--focal" in err and "Traceback" not in err
