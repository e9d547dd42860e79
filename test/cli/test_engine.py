"""``depth-perception build-engine`` through a real argparse parser: the checked request, and one
clear error where TensorRT is absent."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

from depth_perception.cli import CliError, engine
from depth_perception.depth import tensorrt_backend as tb
from depth_perception.depth.engine_cache import ShapeProfile


def _parse(*argv):
    parser = argparse.ArgumentParser(prog="depth-perception")
    engine.add_build_engine_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["build-engine", *argv])


def test_build_engine_arguments_make_a_request():
    req = engine.request_from_args(_parse("--onnx", "m.onnx", "--fp16", "--min", "266x266",
                                          "--opt", "518x518", "--max", "784x1036",
                                          "--workspace", "2048", "--output", "m.engine"))
    assert req.precision == "fp16" and req.workspace_mb == 2048
    assert req.profile == ShapeProfile((266, 266), (518, 518), (784, 1036))
    assert req.output == Path("m.engine") and req.validate and req.calib_dir is None


def test_build_engine_defaults_are_a_fixed_518_fp32_profile():
    req = engine.request_from_args(_parse("--onnx", "m.onnx"))
    assert req.precision == "fp32" and req.profile == ShapeProfile.fixed(518, 518)
    req = engine.request_from_args(_parse("--onnx", "m.onnx", "--opt", "364x644", "--int8",
                                          "--calib", "frames/", "--no-validate"))
    assert req.precision == "int8" and req.profile == ShapeProfile.fixed(364, 644)
    assert req.calib_dir == Path("frames") and not req.validate


@pytest.mark.parametrize("size", ["518", "518x", "0x518", "big"])
def test_build_engine_rejects_bad_sizes(size, capsys):
    if size == "518":  # a single number is a square size
        assert _parse("--onnx", "m", "--opt", size).opt_hw == (518, 518)
        return
    with pytest.raises(SystemExit) as exit_:
        _parse("--onnx", "m", "--max", size)
    assert exit_.value.code == 2
    assert "--max: bad size" in capsys.readouterr().err


@pytest.mark.parametrize("argv,message", [
    (["--int8"], "--int8 needs --calib DIR"),
    (["--calib", "frames"], "--calib is only used with --int8"),
    (["--min", "600x600", "--opt", "518x518"], "--min/--opt/--max: .*height needs min <= opt"),
    (["--workspace", "0"], "--workspace must be > 0"),
    (["--tolerance", "0"], "--tolerance must be > 0"),
])
def test_build_engine_rejects_bad_combinations(argv, message):
    with pytest.raises(ValueError, match=message):
        engine.request_from_args(_parse("--onnx", "m.onnx", *argv))


def test_build_engine_without_tensorrt_is_one_clear_error(monkeypatch, tmp_path):
    if tb.tensorrt_available():
        pytest.skip("a real TensorRT is installed here")
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    model = tmp_path / "m.onnx"
    model.write_bytes(b"onnx")
    with pytest.raises(CliError, match="TensorRT is not usable here"):
        engine.cmd_build_engine(_parse("--onnx", str(model), "--cache-dir", str(tmp_path / "c")))
    with pytest.raises(CliError, match="no such file"):
        engine.cmd_build_engine(_parse("--onnx", str(tmp_path / "absent.onnx")))
