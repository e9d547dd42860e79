"""The TensorRT backend: what runs without TensorRT here, the type check against the TensorRT 10
stubs, and (marked ``gpu``) real engines built from a tiny ONNX model and compared with ONNX Runtime.

Also a script: ``python test/depth/test_tensorrt_backend.py --write-stubs build/trt-stubs`` writes
the repaired ``tensorrt-stubs`` that ``mypy --config-file mypy-trt.ini`` reads (see that file).
"""

from __future__ import annotations

import argparse
import ast
import configparser
import importlib.util
import logging
import os
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from depth_perception.depth import engine_cache as ec
from depth_perception.depth import tensorrt_backend as tb
from depth_perception.depth import tensorrt_engines as te
from depth_perception.depth import tensorrt_import as ti
from depth_perception.depth.engine_cache import ShapeProfile
from depth_perception.depth.zoo import IMAGENET_MEAN, IMAGENET_STD
from onnx_helpers import tiny_depth_onnx

REPO = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------------------------------
# Repaired tensorrt-stubs for mypy


def write_patched_tensorrt_stubs(dest: Path) -> Path:
    """Copy the installed ``tensorrt-stubs`` .pyi files to ``dest`` with their known defects fixed.

    Every release up to 10.13.0.35.1 ships: a parameter named ``in`` (a syntax error), a required
    parameter after defaulted ones in ``add_scale_nd`` (a syntax error), a module-level
    ``bool: DataType`` that turns every ``-> bool`` into an invalid type, and ``typing_extensions.Buffer``
    used without importing typing_extensions. Each fix must apply, so a release that changes is noticed.
    """
    spec = importlib.util.find_spec("tensorrt_stubs")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("tensorrt-stubs is not installed "
                                "(pip install --no-deps tensorrt-stubs==10.13.0.35.1)")
    site = Path(spec.origin).parent.parent
    shutil.rmtree(dest, ignore_errors=True)
    for package in ("tensorrt", "tensorrt_bindings"):
        shutil.copytree(site / package, dest / package,
                        ignore=lambda _d, names: [n for n in names if not n.endswith(".pyi")])
    stub = dest / "tensorrt_bindings" / "tensorrt.pyi"
    text = stub.read_text(encoding="utf-8")
    fixes = [
        (r"\bin: ", "in_: "),
        (r"power: Weights = None, channel_axis: int\)", "power: Weights = None, channel_axis: int = ...)"),
    ]
    for pattern, replacement in fixes:
        text, count = re.subn(pattern, replacement, text)
        if count == 0:
            raise ValueError(f"tensorrt-stubs changed: {pattern!r} not found in {stub.name}")
    lines = text.split("\n")
    shadowed = 0
    for i, line in enumerate(lines):
        if not line.startswith("bool: DataType"):
            new = re.sub(r"(?<!['\w.])bool\b(?!')", "builtins.bool", line)
            shadowed += new != line
            lines[i] = new
    if shadowed == 0:
        raise ValueError("tensorrt-stubs changed: no `bool` annotations to repair")
    lines.insert(1, "import builtins\nimport typing_extensions")
    stub.write_text("\n".join(lines), encoding="utf-8")
    for path in dest.rglob("*.pyi"):
        ast.parse(path.read_text(encoding="utf-8"), str(path))  # a new defect fails here, loudly
    return dest


def test_mypy_against_tensorrt_stubs(tmp_path):
    """The CI type check: our TensorRT code against the TensorRT 10 API as the stubs describe it."""
    required = os.environ.get("DP_REQUIRE_TYPECHECK") == "1"
    for module in ("mypy", "tensorrt_stubs"):
        if importlib.util.find_spec(module) is None:
            if required:
                pytest.fail(f"{module} is not installed and DP_REQUIRE_TYPECHECK=1")
            pytest.skip(f"{module} is not installed")
    stubs = write_patched_tensorrt_stubs(tmp_path / "stubs")
    env = dict(os.environ, MYPYPATH=str(stubs))
    proc = subprocess.run(  # no paths given: mypy checks the `files` of mypy-trt.ini
        [sys.executable, "-m", "mypy", "--config-file", str(REPO / "mypy-trt.ini"),
         "--cache-dir", str(tmp_path / "mypy-cache")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"in {len(mypy_checked_files())} source files" in proc.stdout, proc.stdout


def mypy_checked_files() -> list[str]:
    """The ``files`` of mypy-trt.ini: what the type check above covers."""
    config = configparser.ConfigParser()
    config.read(REPO / "mypy-trt.ini", encoding="utf-8")
    return [f.strip() for f in config["mypy"]["files"].split(",") if f.strip()]


# A module touches TensorRT when it imports it, or takes the lazy ``trt`` stand-in.
_USES_TENSORRT = re.compile(r"^\s*(import tensorrt\b|from \S*tensorrt_import import .*\btrt\b)",
                            re.MULTILINE)


def test_mypy_covers_every_tensorrt_module():
    checked = set(mypy_checked_files())
    assert all((REPO / f).is_file() for f in checked), sorted(checked)
    touching = {p.relative_to(REPO).as_posix() for p in (REPO / "depth_perception").rglob("*.py")
                if _USES_TENSORRT.search(p.read_text(encoding="utf-8"))}
    assert "depth_perception/depth/tensorrt_runtime.py" in touching  # the pattern still matches
    assert touching <= checked, f"add to mypy-trt.ini's files: {sorted(touching - checked)}"


def test_mypy_sees_real_tensorrt_types(tmp_path):
    """Guards the check above against passing vacuously (tensorrt resolving to Any)."""
    if importlib.util.find_spec("mypy") is None or importlib.util.find_spec("tensorrt_stubs") is None:
        pytest.skip("mypy or tensorrt-stubs is not installed")
    stubs = write_patched_tensorrt_stubs(tmp_path / "stubs")
    probe = tmp_path / "probe.py"
    probe.write_text("import tensorrt as trt\n"
                     "def f(e: trt.ICudaEngine) -> None:\n"
                     "    e.execute_async_v2([], 0)\n"  # removed in TensorRT 10
                     "    e.num_io_tensors.upper()\n")
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(REPO / "mypy-trt.ini"),
         "--cache-dir", str(tmp_path / "mypy-cache"), str(probe)],
        cwd=REPO, env=dict(os.environ, MYPYPATH=str(stubs)), capture_output=True, text=True,
        timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert '"ICudaEngine" has no attribute "execute_async_v2"' in proc.stdout
    assert '"int" has no attribute "upper"' in proc.stdout


# --------------------------------------------------------------------------------------------------
# Without TensorRT


def test_modules_import_without_torch_or_tensorrt():
    files = [f for f in mypy_checked_files() if f.startswith("depth_perception/depth/")]
    modules = [f.removesuffix(".py").replace("/", ".") for f in files] + ["depth_perception.cli.engine"]
    code = ("import sys, depth_perception.depth as d; before = set(sys.modules); "
            f"import {', '.join(modules)}; "
            "print(sorted(m for m in set(sys.modules) - before "
            "if m.split('.')[0] in ('torch', 'tensorrt', 'onnxruntime', 'onnx', 'cv2')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def _no_real_tensorrt():
    if tb.tensorrt_available():
        pytest.skip("a real TensorRT is installed here")


def test_missing_tensorrt_is_a_clear_error(monkeypatch):
    _no_real_tensorrt()
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # what `import` does for an absent module
    with pytest.raises(tb.TensorRTUnavailableError, match="TensorRT is not usable here") as err:
        tb.import_tensorrt()
    assert "onnxruntime or torch backend" in str(err.value)
    assert isinstance(err.value, ImportError)
    assert not tb.tensorrt_available()


def test_stub_only_tensorrt_package_is_not_mistaken_for_tensorrt(monkeypatch, tmp_path):
    """`pip install tensorrt-stubs` leaves a bare tensorrt/ folder that imports as a namespace."""
    _no_real_tensorrt()
    (tmp_path / "tensorrt").mkdir()
    (tmp_path / "tensorrt" / "__init__.pyi").write_text("__version__: str\n")
    monkeypatch.delitem(sys.modules, "tensorrt", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(tb.TensorRTUnavailableError, match="has no TensorRT runtime"):
        tb.import_tensorrt()


def test_backend_without_tensorrt_fails_before_touching_anything(monkeypatch, tmp_path):
    _no_real_tensorrt()
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(tb.TensorRTUnavailableError):
        tb.TensorRTBackend(tmp_path / "missing.onnx", cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("version,parsed,explicit_batch", [
    ("10.13.0.35", (10, 13), False), ("10.0.1.6", (10, 0), False),
    ("8.6.2.3", (8, 6), True), ("8.5.2.2", (8, 5), True)])
def test_supported_tensorrt_versions(version, parsed, explicit_batch):
    assert tb.check_tensorrt_version(version) == parsed
    assert tb.needs_explicit_batch_flag(version) is explicit_batch


@pytest.mark.parametrize("version", ["8.4.3.1", "8.2.1.8", "7.1.3"])
def test_tensorrt_before_8_5_is_refused_with_the_reason(version):
    with pytest.raises(tb.TensorRTVersionError) as err:
        tb.check_tensorrt_version(version)
    message = str(err.value)
    assert version in message and "bindings API" in message and ">= 8.5" in message


def test_unparseable_version_is_an_error():
    with pytest.raises(ValueError, match="unrecognised TensorRT version"):
        tb.parse_tensorrt_version("ten")


def test_profile_is_resolved_against_the_onnx_input():
    dynamic = ShapeProfile((266, 266), (518, 518), (784, 784))
    assert tb.resolve_profile((-1, 3, -1, -1), dynamic) == dynamic
    prompt = tb.resolve_profile((-1, 1, -1, -1), ShapeProfile.fixed(192, 256), "prompt_depth")
    assert prompt.channels == 1
    fixed = ShapeProfile.fixed(518, 518)
    assert tb.resolve_profile((1, 3, 518, 518), fixed) == fixed
    with pytest.raises(ValueError, match=r"fixed height of 518 .* --opt 518x518 .* --dynamic"):
        tb.resolve_profile((1, 3, 518, 518), dynamic)
    with pytest.raises(ValueError, match="fixed width of 686"):
        tb.resolve_profile((1, 3, -1, 686), ShapeProfile.fixed(518, 518))
    with pytest.raises(ValueError, match="fixed batch of 2"):
        tb.resolve_profile((2, 3, -1, -1), dynamic)
    with pytest.raises(ValueError, match="N x C x H x W"):
        tb.resolve_profile((-1, -1, -1), dynamic)


def test_input_name_is_picked_by_name_or_uniqueness():
    assert tb.pick_input_name(["prompt_depth", "pixel_values"]) == "pixel_values"
    assert tb.pick_input_name(["images"]) == "images"
    with pytest.raises(ValueError, match="none is named 'pixel_values'"):
        tb.pick_input_name(["a", "b"])


# --------------------------------------------------------------------------------------------------
# The builder's calls, against a recording stand-in for the TensorRT module. No GPU can run two
# TensorRT versions side by side, so the version switch is checked here; the GPU tests below run
# the same function for real.


class _Recorder:
    def __init__(self, calls, name):
        self._calls, self._name = calls, name

    def __getattr__(self, method):
        def record(*args):
            self._calls.append((f"{self._name}.{method}", *args))
        return record


def fake_tensorrt(version, inputs=None, parse_ok=True, build_ok=True):
    calls: list[tuple] = []
    inputs = inputs or {"pixel_values": (-1, 3, -1, -1)}
    module = types.ModuleType("tensorrt")
    module.__version__ = version
    module.calls = calls

    class ILogger:
        def __init__(self):
            pass

    class Tensor:
        def __init__(self, name, shape):
            self.name, self.shape = name, list(shape)

    class Network:
        num_inputs = len(inputs)

        def get_input(self, i):
            return Tensor(*list(inputs.items())[i])

    class Error:
        def desc(self):
            return "Unsupported ONNX opset: 42"

    class OnnxParser:
        num_errors = 0 if parse_ok else 1

        def __init__(self, network, logger):
            pass

        def parse_from_file(self, path):
            calls.append(("parse_from_file", path))
            return parse_ok

        def get_error(self, i):
            return Error()

    class Config(_Recorder):
        def __setattr__(self, name, value):
            if name.startswith("_"):
                object.__setattr__(self, name, value)
            else:
                calls.append((f"config.{name}=", value))

    class Builder:
        def __init__(self, logger):
            assert isinstance(logger, ILogger)

        def create_network(self, flags):
            calls.append(("create_network", flags))
            return Network()

        def create_builder_config(self):
            return Config(calls, "config")

        def create_optimization_profile(self):
            return _Recorder(calls, "profile")

        def build_serialized_network(self, network, config):
            return b"serialized engine" if build_ok else None

    module.ILogger, module.Builder, module.OnnxParser = ILogger, Builder, OnnxParser
    module.Dims = list
    module.NetworkDefinitionCreationFlag = types.SimpleNamespace(EXPLICIT_BATCH=0)
    module.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")
    module.BuilderFlag = types.SimpleNamespace(FP16="FP16", INT8="INT8")
    return module


@pytest.fixture
def use_fake_tensorrt(monkeypatch):
    def install(*args, **kwargs):
        module = fake_tensorrt(*args, **kwargs)
        monkeypatch.setitem(sys.modules, "tensorrt", module)
        ti.tensorrt_logger.cache_clear()
        return module

    yield install
    ti.tensorrt_logger.cache_clear()  # never keep a stand-in logger for real use


def _names(calls, prefix):
    return [c for c in calls if c[0].startswith(prefix)]


@pytest.mark.parametrize("version,flags", [("8.6.1.6", 1), ("8.5.2.2", 1), ("10.13.0.35", 0)])
def test_explicit_batch_flag_only_before_tensorrt_10(use_fake_tensorrt, version, flags):
    trt = use_fake_tensorrt(version)
    assert tb.build_serialized_engine("m.onnx", precision="fp32") == b"serialized engine"
    assert ("create_network", flags) in trt.calls


def test_fp16_build_sets_profile_workspace_and_flag(use_fake_tensorrt):
    trt = use_fake_tensorrt("10.13.0.35")
    profile = ShapeProfile((266, 266), (518, 518), (784, 784))
    tb.build_serialized_engine("m.onnx", precision="fp16", profile=profile, workspace_mb=2048)
    assert ("parse_from_file", "m.onnx") in trt.calls
    assert _names(trt.calls, "profile.") == [
        ("profile.set_shape", "pixel_values", [1, 3, 266, 266], [1, 3, 518, 518], [1, 3, 784, 784])]
    assert ("config.set_memory_pool_limit", "WORKSPACE", 2048 << 20) in trt.calls
    assert _names(trt.calls, "config.set_flag") == [("config.set_flag", "FP16")]


def test_fp32_build_sets_no_precision_flag(use_fake_tensorrt):
    trt = use_fake_tensorrt("10.13.0.35")
    tb.build_serialized_engine("m.onnx", precision="fp32")
    assert _names(trt.calls, "config.set_flag") == []
    assert not _names(trt.calls, "config.set_memory_pool_limit")


def test_int8_build_uses_the_calibrator_at_the_build_profile(use_fake_tensorrt):
    trt = use_fake_tensorrt("8.6.1.6")
    calibrator = object()
    tb.build_serialized_engine("m.onnx", precision="int8", calibrator=calibrator)
    assert _names(trt.calls, "config.set_flag") == [("config.set_flag", "FP16"),
                                                     ("config.set_flag", "INT8")]
    assert ("config.int8_calibrator=", calibrator) in trt.calls
    assert _names(trt.calls, "config.set_calibration_profile")
    with pytest.raises(ValueError, match="needs a calibrator"):
        tb.build_serialized_engine("m.onnx", precision="int8")


def test_parser_errors_are_reported(use_fake_tensorrt):
    use_fake_tensorrt("10.13.0.35", parse_ok=False)
    with pytest.raises(tb.EngineBuildError, match="could not parse m.onnx: Unsupported ONNX opset: 42"):
        tb.build_serialized_engine("m.onnx")


def test_failed_build_is_reported(use_fake_tensorrt):
    use_fake_tensorrt("10.13.0.35", build_ok=False)
    with pytest.raises(tb.EngineBuildError, match="failed to build an engine from m.onnx"):
        tb.build_serialized_engine("m.onnx")


def test_static_onnx_and_further_inputs(use_fake_tensorrt):
    use_fake_tensorrt("10.13.0.35", inputs={"pixel_values": (1, 3, 518, 518)})
    with pytest.raises(ValueError, match="fixed height of 518"):
        tb.build_serialized_engine("m.onnx", profile=ShapeProfile((266, 266), (518, 518),
                                                                 (784, 784)))
    trt = use_fake_tensorrt("10.13.0.35", inputs={"pixel_values": (-1, 3, -1, -1),
                                                  "prompt_depth": (-1, 1, -1, -1)})
    with pytest.raises(ValueError, match="further dynamic input 'prompt_depth'"):
        tb.build_serialized_engine("m.onnx")
    tb.build_serialized_engine("m.onnx", extra_profiles={
        "prompt_depth": ShapeProfile((96, 128), (192, 256), (384, 512))})
    assert ("profile.set_shape", "prompt_depth", [1, 1, 96, 128], [1, 1, 192, 256],
            [1, 1, 384, 512]) in trt.calls


# --------------------------------------------------------------------------------------------------
# The default int8 calibration pre-processing


def test_default_calibration_preprocessing_keeps_aspect_and_normalises():
    skimage_data = pytest.importorskip("skimage.data")
    rgb = skimage_data.astronaut()  # 512 x 512
    x = tb.imagenet_preprocess(rgb, (364, 644))
    assert x.shape == (1, 3, 364, 644) and x.dtype == np.float32 and x.flags.c_contiguous
    gray = np.full((240, 320, 3), 124, np.uint8)
    y = tb.imagenet_preprocess(gray, (112, 112))
    mean, std = np.asarray(IMAGENET_MEAN, np.float32), np.asarray(IMAGENET_STD, np.float32)
    expected = (124 / 255 - mean) / std
    np.testing.assert_allclose(y[0, :, 50, 50], expected, atol=1e-5)
    # Cover + centre crop: the astronaut's middle row stays in the middle, unsquashed.
    assert abs(x[0, 0, 182].mean() - tb.imagenet_preprocess(rgb, (644, 644))[0, 0, 322].mean()) < 0.1


# --------------------------------------------------------------------------------------------------
# On a GPU: real engines from a tiny real ONNX graph, compared with ONNX Runtime


def _gpu_parts():
    if not tb.tensorrt_available():
        pytest.skip("TensorRT is not installed")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    ort = pytest.importorskip("onnxruntime")
    return torch, ort


GPU_PROFILE = ShapeProfile((32, 32), (64, 96), (128, 128))


@pytest.fixture(scope="module")
def gpu_model(tmp_path_factory):
    torch, ort = _gpu_parts()
    root = tmp_path_factory.mktemp("trt")
    model = tiny_depth_onnx(root / "tiny.onnx")
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])

    def reference(x):
        return session.run(["predicted_depth"], {"pixel_values": x})[0]

    return torch, model, root / "cache", reference


@pytest.mark.gpu
def test_engine_is_built_cached_and_matches_onnxruntime(gpu_model, caplog):
    torch, model, cache, reference = gpu_model
    caplog.set_level(logging.INFO)
    with tb.TensorRTBackend(model, precision="fp32", profile=GPU_PROFILE, cache_dir=cache) as trt:
        assert trt.artifact.built and trt.artifact.report.ok
        assert "building a TensorRT fp32 engine" in caplog.text
        rng = np.random.default_rng(0)
        for h, w in [(64, 96), (32, 128), (128, 40)]:  # opt, then other aspect ratios
            x = rng.standard_normal((1, 3, h, w), dtype=np.float32)
            depth = trt.infer(x)
            assert depth.is_cuda and depth.dtype == torch.float32 and tuple(depth.shape) == (1, h, w)
            result = ec.compare_outputs(reference(x), depth.cpu().numpy(), 1e-2)
            assert result.ok, result.describe()
    assert trt.artifact.engine_path.exists() and ec.sidecar_path(trt.artifact.engine_path).exists()
    caplog.clear()
    with tb.TensorRTBackend(model, precision="fp32", profile=GPU_PROFILE, cache_dir=cache) as again:
        assert not again.artifact.built
        assert again.artifact.engine_path == trt.artifact.engine_path
    assert "building" not in caplog.text


@pytest.mark.gpu
def test_buffers_are_reused_and_results_are_not_overwritten(gpu_model):
    torch, model, cache, _ = gpu_model
    with tb.TensorRTBackend(model, precision="fp32", profile=GPU_PROFILE, cache_dir=cache) as trt:
        a = torch.randn(1, 3, 64, 96, device="cuda")
        first = trt.infer(a)
        ptr = trt.buffer("predicted_depth").data_ptr()
        second = trt.infer(a * 2)
        assert trt.buffer("predicted_depth").data_ptr() == ptr  # same shape: same buffers
        assert not torch.equal(first, second)  # the first result was a copy, not the buffer
        trt.infer(torch.randn(1, 3, 32, 32, device="cuda"))
        assert tuple(trt.buffer("predicted_depth").shape) == (1, 32, 32)


@pytest.mark.gpu
def test_execute_bound_reruns_the_engine_on_its_filled_buffers(gpu_model):
    """The engine's own time, as bench/gpu.py measures it: no copy in, no copy out."""
    torch, model, cache, _ = gpu_model
    with tb.TensorRTBackend(model, precision="fp32", profile=GPU_PROFILE, cache_dir=cache) as trt:
        with pytest.raises(RuntimeError, match="no bound buffers"):
            trt.execute_bound()
        depth = trt.infer(torch.randn(1, 3, 64, 96, device="cuda"))
        torch.cuda.synchronize()  # execute_bound waits for nothing: order the zeroing by hand
        trt.buffer("predicted_depth").zero_()
        torch.cuda.synchronize()
        stream = trt.execute_bound()
        stream.synchronize()
        torch.testing.assert_close(trt.buffer("predicted_depth").reshape(depth.shape), depth)


@pytest.mark.gpu
def test_input_on_a_side_stream_is_waited_for(gpu_model):
    torch, model, cache, reference = gpu_model
    x = np.random.default_rng(1).standard_normal((1, 3, 64, 96), dtype=np.float32)
    with tb.TensorRTBackend(model, precision="fp32", profile=GPU_PROFILE, cache_dir=cache) as trt:
        side = torch.cuda.Stream()
        with torch.cuda.stream(side):
            dev = torch.from_numpy(x).cuda(non_blocking=True) * 1.0
            depth = trt.infer(dev)
            out = depth.cpu().numpy()  # ordered on the caller's (side) stream
    assert ec.compare_outputs(reference(x), out, 1e-2).ok


@pytest.mark.gpu
def test_sizes_outside_the_profile_are_refused(gpu_model):
    _, model, cache, _ = gpu_model
    with tb.TensorRTBackend(model, precision="fp32", profile=GPU_PROFILE, cache_dir=cache) as trt:
        with pytest.raises(ValueError, match="outside the shape profile .* max 1x3x128x128"):
            trt.infer(np.zeros((1, 3, 160, 64), np.float32))
        with pytest.raises(ValueError, match="takes ?x3x?x?"):
            trt.infer(np.zeros((1, 4, 64, 64), np.float32))


@pytest.mark.gpu
def test_corrupt_cached_engine_is_rebuilt(gpu_model, caplog):
    _, model, cache, _ = gpu_model
    with tb.TensorRTBackend(model, precision="fp32", profile=GPU_PROFILE, cache_dir=cache) as trt:
        path = trt.engine_path
    path.write_bytes(path.read_bytes()[:100])
    caplog.set_level(logging.INFO)
    with tb.TensorRTBackend(model, precision="fp32", profile=GPU_PROFILE, cache_dir=cache) as trt:
        assert trt.artifact.built
    assert f"engine file {path} is corrupt (it is truncated" in caplog.text


@pytest.mark.gpu
def test_engine_file_loads_directly_and_close_is_idempotent(gpu_model):
    _, model, cache, _ = gpu_model
    with tb.TensorRTBackend(model, precision="fp32", profile=GPU_PROFILE, cache_dir=cache) as trt:
        path = trt.engine_path
    direct = tb.TensorRTBackend(path)
    assert direct.precision == "fp32" and direct.profile_shapes()[2] == (1, 3, 128, 128)
    assert tuple(direct.infer(np.zeros((1, 3, 64, 64), np.float32)).shape) == (1, 64, 64)
    direct.close()
    direct.close()
    with pytest.raises(RuntimeError, match="closed"):
        direct.infer(np.zeros((1, 3, 64, 64), np.float32))


@pytest.mark.gpu
def test_engine_that_disagrees_is_refused_and_not_cached(gpu_model, tmp_path, monkeypatch):
    _, model, _, _ = gpu_model
    real_validate = te.validate_engine

    def engine_with_wrong_depth(run, *args, **kwargs):  # what peers' broken engines do
        return real_validate(lambda x: run(x) * 1.5, *args, **kwargs)

    monkeypatch.setattr(te, "validate_engine", engine_with_wrong_depth)
    with pytest.raises(ec.EngineValidationError, match=r"refusing to use it: worst input 1x3x\d+x\d+: "
                                                       "relative error"):
        tb.TensorRTBackend(model, precision="fp16", profile=GPU_PROFILE, cache_dir=tmp_path)
    assert not list(tmp_path.glob("*.engine"))


@pytest.mark.gpu
def test_int8_engine_from_calibration_images(gpu_model, tmp_path):
    import cv2

    _, model, _, _ = gpu_model
    skimage_data = pytest.importorskip("skimage.data")
    calib = tmp_path / "calib"
    calib.mkdir()
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        cv2.imwrite(str(calib / f"{name}.png"), getattr(skimage_data, name)()[..., ::-1])
    calibration = tb.CalibrationData(calib, tb.imagenet_preprocess, tb.IMAGENET_PREPROCESS_ID)
    with tb.TensorRTBackend(model, precision="int8", profile=GPU_PROFILE, cache_dir=tmp_path,
                            calibration=calibration, tolerance=0.3) as trt:
        assert trt.artifact.report.ok
        assert tuple(trt.infer(np.zeros((1, 3, 64, 96), np.float32)).shape) == (1, 64, 96)
    assert list(tmp_path.glob("tiny.*.64x96.calib"))


if __name__ == "__main__":
    cli = argparse.ArgumentParser(description=__doc__)
    cli.add_argument("--write-stubs", metavar="DIR", required=True)
    print(write_patched_tensorrt_stubs(Path(cli.parse_args().write_stubs)))
