"""``depth-perception build-engine`` through a real argparse parser: the checked request, and one
clear error where TensorRT is absent."""

from __future__ import annotations

import argparse
import logging
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
                                          "--model", "depth_anything_v2_small",
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
    (["--int8", "--calib", "frames"], "--int8 needs --model NAME"),
    (["--input-size", "364"], "--input-size is only used with --model"),
    (["--model", "depth_anything_v2_small", "--input-size", "360"], "multiple of 14"),
    (["--model", "marigold_depth"], "no ONNX export"),
    (["--model", "nope"], "unknown model"),
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


@pytest.mark.parametrize("name, input_size", [
    ("depth_anything_v2_small_tiny", None),  # aspect-preserving: 1:1 to 2:1 at its size
    ("depth_anything_v2_small_tiny", 42),
    ("dpt_large_tiny", None),  # fixed square
    ("prompt_depth_anything_small_tiny", None),  # and its prompt_depth input
    ("depth_anything_3_metric_large_tiny", None),  # fx scales its output on the host: no input
])
def test_the_engine_build_engine_files_is_the_one_the_estimator_looks_up(tmp_path, name, input_size):
    from depth_perception.depth.estimator import DepthEstimator
    from depth_perception.depth.tensorrt_engines import engine_key

    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"the same graph for both")
    argv = ["--onnx", str(onnx), "--model", name, "--fp16"]
    req = engine.request_from_args(_parse(*argv, *(["--input-size", str(input_size)] if input_size else [])))
    est = DepthEstimator(name, backend="torch", random_init=True, input_size=input_size, log=None)
    profile, extra = est.engine_profiles()  # what its tensorrt backend passes to ensure_engine
    gpu = dict(tensorrt_version="10.13.0.35", gpu_name="NVIDIA Orin", compute_capability=(8, 7))
    built = engine_key(onnx, precision=req.precision, profile=req.profile,
                       extra_profiles=req.extra_profiles, **gpu)
    looked_up = engine_key(onnx, precision="fp16", profile=profile, extra_profiles=extra, **gpu)
    assert built == looked_up and built.file_name("m") == looked_up.file_name("m")
    assert ("prompt_depth" in dict(built.extra_profiles)) == name.startswith("prompt")


@pytest.mark.parametrize("name, mean", [("dpt_large", 0.5), ("midas_beit_large_512", 0.5),
                                        ("zoedepth_nyu", 0.5), ("depth_pro", 0.5),
                                        ("depth_anything_v2_small", 0.485),
                                        ("depth_anything_3_metric_large", 0.485)])
def test_int8_calibration_sees_what_the_estimator_feeds_the_model(name, mean):
    import numpy as np
    from skimage import data

    from depth_perception.depth.processing import preprocess
    from depth_perception.depth.tensorrt_calibration import IMAGENET_PREPROCESS_ID, spec_preprocess
    from depth_perception.depth.zoo import get_spec

    spec = get_spec(name).tiny_spec() if name == "depth_pro" else get_spec(name)  # 64, not 1536
    calibrate, ident = spec_preprocess(spec)
    assert (ident == IMAGENET_PREPROCESS_ID) == (mean != 0.5)  # a new normalisation, a new table
    grey = np.full((240, 320, 3), 128, np.uint8)
    x, geo = preprocess(grey, spec)  # the estimator's own input, at the size it picks
    np.testing.assert_allclose(calibrate(grey, geo.net_hw), x.numpy(), atol=1e-3)  # letterbox too
    photo = data.astronaut()[::2, ::2][:240]
    x, geo = preprocess(photo, spec)
    ours = calibrate(photo, geo.net_hw)
    assert ours.shape == tuple(x.shape) and ours.dtype == np.float32
    # the same statistics per channel (the crop to the profile size and the resampling differ)
    for stat in (np.mean, np.std):
        np.testing.assert_allclose(stat(ours, axis=(0, 2, 3)), stat(x.numpy(), axis=(0, 2, 3)), atol=0.05)


class _BuildOnTheCPU:
    """What `ensure_engine` needs from TensorRT, torch and the GPU, standing in for them on a
    machine without any: a TensorRT version and GPU identity for the key, a calibrator and a build
    that records what they were given. The cache, keys, sidecars and lookup are the real ones."""

    def __init__(self, monkeypatch):
        import contextlib
        import types

        from depth_perception.depth import tensorrt_engines as te

        self.builds: list[dict] = []
        fake_trt = types.SimpleNamespace(__version__="10.3.0.30")
        no_device = types.SimpleNamespace(device=lambda _: contextlib.nullcontext())
        fake_torch = types.SimpleNamespace(cuda=no_device)
        monkeypatch.setattr(te, "import_tensorrt", lambda: fake_trt)
        monkeypatch.setattr(te, "import_torch_cuda", lambda: fake_torch)
        monkeypatch.setattr(te, "gpu_identity", lambda device: ("Orin (nvgpu)", (8, 7)))
        def calibrator(images, preprocess, shape, table, device, log):
            return ("calibrator", len(images), shape)

        monkeypatch.setattr(te, "make_entropy_calibrator", calibrator)

        def build(onnx, **kwargs):
            self.builds.append(kwargs)
            return f"int8 engine {len(self.builds)}".encode()

        monkeypatch.setattr(te, "build_serialized_engine", build)


def _calibration_images(folder: Path, n: int, seed: int = 0) -> Path:
    import cv2
    import numpy as np

    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        cv2.imwrite(str(folder / f"{i:03d}.png"), rng.integers(0, 255, (24, 32, 3), dtype=np.uint8))
    return folder


def test_the_node_finds_the_int8_engine_build_engine_made(tmp_path, monkeypatch, capsys):
    """`build-engine --int8 --calib DIR --model M` files the engine under the key the estimator
    looks up with at int8 (no images named), and the images it was calibrated on are shown."""
    from depth_perception.depth.engine_cache import ENV_CACHE_DIR, read_sidecar
    from depth_perception.depth.estimator import DepthEstimator
    from depth_perception.depth.tensorrt_engines import engine_key, ensure_engine

    fake = _BuildOnTheCPU(monkeypatch)
    monkeypatch.setenv(ENV_CACHE_DIR, str(tmp_path / "cache"))  # the node's default cache
    name = "depth_anything_v2_small_tiny"
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"an exported graph")
    frames = _calibration_images(tmp_path / "frames", 3)
    argv = ["--onnx", str(onnx), "--model", name, "--int8", "--calib", str(frames), "--no-validate"]
    assert engine.cmd_build_engine(_parse(*argv)) == 0
    out = capsys.readouterr().out
    assert out.startswith("built: ") and f"int8 calibrated on 3 images from {frames}" in out
    written = Path(out.split()[1])
    assert written.parent == tmp_path / "cache" and fake.builds[0]["calibrator"][:2] == ("calibrator", 3)

    # what the node's DepthEstimator(precision="int8", backend="tensorrt") asks for: no images
    profile, extra = DepthEstimator(name, backend="torch", random_init=True, log=None).engine_profiles()
    found = ensure_engine(onnx, precision="int8", profile=profile, extra_profiles=extra)
    assert not found.built and found.engine_path == written and found.engine_bytes == b"int8 engine 1"
    assert found.calibration is not None and found.calibration.images == 3
    assert found.calibration.directory == str(frames)
    looked_up = engine_key(onnx, tensorrt_version="10.3.0.30", gpu_name="Orin (nvgpu)",
                           compute_capability=(8, 7), precision="int8", profile=profile,
                           extra_profiles=extra)
    side = read_sidecar(written)
    assert side["key_digest"] == looked_up.digest() == found.key.digest()  # written == looked up
    assert side["calibration"]["calibration_id"] == found.calibration.calibration_id
    assert len(fake.builds) == 1

    # the same images again: up to date; other images: recalibrated into the same entry
    assert engine.cmd_build_engine(_parse(*argv)) == 0 and len(fake.builds) == 1
    assert "up to date" in capsys.readouterr().out
    other = _calibration_images(tmp_path / "other", 4, seed=1)
    argv[argv.index(str(frames))] = str(other)
    assert engine.cmd_build_engine(_parse(*argv)) == 0 and len(fake.builds) == 2
    again = ensure_engine(onnx, precision="int8", profile=profile, extra_profiles=extra)
    assert again.engine_path == written and again.engine_bytes == b"int8 engine 2"
    assert again.calibration is not None and again.calibration.images == 4


def test_int8_without_an_engine_or_images_says_how_to_build_one(tmp_path, monkeypatch):
    from depth_perception.depth.tensorrt_engines import ensure_engine

    fake = _BuildOnTheCPU(monkeypatch)
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"an exported graph")
    with pytest.raises(ValueError, match=r"no int8 TensorRT engine for .*m\.onnx at input 518x518 on "
                       r"Orin \(nvgpu\) \(TensorRT 10\.3\.0\.30\) .*build-engine .*--int8 --calib DIR"):
        ensure_engine(onnx, precision="int8", cache_dir=tmp_path / "cache")
    assert fake.builds == []


def test_a_parser_failure_names_the_operators_the_tables_miss(tmp_path, monkeypatch, caplog):
    from onnx import TensorProto, helper, save

    from depth_perception.depth import tensorrt_engines as te
    from depth_perception.depth.tensorrt_build import EngineBuildError

    _BuildOnTheCPU(monkeypatch)

    def parser_refuses(onnx, **kwargs):
        raise EngineBuildError(f"TensorRT 10.3.0.30 could not parse {onnx}: No importer registered "
                               "for op: SplitToSequence")

    monkeypatch.setattr(te, "build_serialized_engine", parser_refuses)
    graph = helper.make_graph(
        [helper.make_node("SplitToSequence", ["pixel_values"], ["s"], axis=0)], "g",
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, [1, 3, 518, 518])],
        [helper.make_tensor_sequence_value_info("s", TensorProto.FLOAT, None)])
    onnx = tmp_path / "seq.onnx"
    save(helper.make_model(graph), str(onnx))
    log = logging.getLogger("depth_perception.test_build")
    log.addHandler(caplog.handler)  # directly: whatever propagation the session's logging set up
    with pytest.raises(EngineBuildError, match=r"No importer registered for op: SplitToSequence; "
                       r"TensorRT 10\.3's ONNX parser has no importer for: SplitToSequence \(x1\)"):
        try:
            te.ensure_engine(onnx, precision="fp16", cache_dir=tmp_path / "cache", logger=log)
        finally:
            log.removeHandler(caplog.handler)
    assert "has no importer for: SplitToSequence (x1)" in caplog.text  # said before the build too
