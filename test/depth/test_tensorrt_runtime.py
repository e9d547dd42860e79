"""The torch-free TensorRT runner: numpy in and out, CUDA through cuda-python's runtime API.

Without a GPU the CUDA plumbing and its error messages are tested; with one (marked ``gpu``) a real
engine runs and matches ONNX Runtime.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from onnx_helpers import tiny_depth_onnx

from depth_perception.depth import tensorrt_backend as tb
from depth_perception.depth.engine_profiles import ShapeProfile
from depth_perception.depth.tensorrt_runtime import HostEngineRunner, cuda_call, import_cudart


def test_the_host_runner_and_cuda_runtime_load_without_torch() -> None:
    pytest.importorskip("cuda.bindings.runtime", reason="cuda-python is not installed")
    code = ("import json, sys; from depth_perception.depth import tensorrt_runtime as r; "
            "cudart = r.import_cudart(); "
            "version = r.cuda_call(cudart, cudart.cudaRuntimeGetVersion(), 'asking the version'); "
            "print(json.dumps({'version': version, 'torch': 'torch' in sys.modules}))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["torch"] is False and seen["version"] >= 11000  # e.g. 13050 for CUDA 13.5


def test_a_failed_cuda_call_names_what_it_was_doing() -> None:
    cudart = pytest.importorskip("cuda.bindings.runtime", reason="cuda-python is not installed")
    assert import_cudart() is cudart
    # freeing a pointer CUDA never gave out fails on every machine (no driver: another reason)
    with pytest.raises(RuntimeError, match=r"CUDA freeing a stray pointer failed: .+ \(\d+\)"):
        cuda_call(cudart, cudart.cudaFree(16), "freeing a stray pointer")


@pytest.mark.gpu
def test_the_host_runner_matches_onnxruntime_on_a_real_engine(tmp_path) -> None:
    if not tb.tensorrt_available():
        pytest.skip("TensorRT or a CUDA GPU is missing")
    ort = pytest.importorskip("onnxruntime")
    model = tiny_depth_onnx(tmp_path / "tiny.onnx")
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    profile = ShapeProfile((32, 32), (64, 96), (128, 128))
    with tb.TensorRTBackend(model, precision="fp32", profile=profile, cache_dir=tmp_path) as built:
        engine_bytes = built.artifact.engine_bytes
    runner = HostEngineRunner(engine_bytes, tmp_path / "tiny.engine")
    rng = np.random.default_rng(0)
    first = None
    for h, w in [(64, 96), (32, 128), (64, 96)]:  # a new shape rebinds, the old one again
        x = rng.standard_normal((1, 3, h, w), dtype=np.float32)
        out = runner.run({"pixel_values": x})["predicted_depth"]
        assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == (1, h, w)
        np.testing.assert_allclose(out, session.run(None, {"pixel_values": x})[0], atol=1e-3)
        first = out if first is None else first
    assert first is not out and np.isfinite(first).all()  # every call returns its own array
    with pytest.raises(ValueError, match="outside the shape profile"):
        runner.run({"pixel_values": np.zeros((1, 3, 256, 256), np.float32)})
    runner.close()
    with pytest.raises(RuntimeError, match="is closed"):
        runner.run({"pixel_values": np.zeros((1, 3, 64, 96), np.float32)})


def test_asking_for_a_gpu_does_not_import_torch() -> None:
    """A robot running a built engine never pays torch's ~0.5 GB just to find its GPU."""
    pytest.importorskip("cuda.bindings.runtime", reason="cuda-python is not installed")
    code = ("import json, sys; from depth_perception.depth import estimator as e; "
            "print(json.dumps({'cuda': e.cuda_available(), 'trt': e.tensorrt_available(), "
            "'torch': 'torch' in sys.modules}))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["torch"] is False
    from depth_perception.depth.tensorrt_runtime import cuda_device_count

    assert seen["cuda"] is ((cuda_device_count() or 0) > 0)


@pytest.mark.gpu
def test_an_estimator_on_a_built_engine_runs_without_torch(tmp_path) -> None:
    """The robot's path: an engine built once (with torch), then run by a process that never
    imports torch: numpy pre/post-processing, cuda-python buffers."""
    if not tb.tensorrt_available():
        pytest.skip("TensorRT or a CUDA GPU is missing")
    from depth_perception.depth.estimator import DepthEstimator

    with DepthEstimator("student_tabletop", backend="tensorrt", precision="fp32", log=None) as est:
        engine = est.backend.trt.engine_path
        reference = est.predict(np.full((240, 320, 3), 100, np.uint8)).values
    code = ("import json, sys, numpy as np; from depth_perception.depth.estimator import "
            "DepthEstimator; "
            f"est = DepthEstimator('student_tabletop', backend='tensorrt', engine_path={str(engine)!r},"
            " precision='fp32', log=None); "
            "d = est.predict(np.full((240, 320, 3), 100, np.uint8)).values; "
            "print(json.dumps({'torch': 'torch' in sys.modules, 'host': est.host_arrays, "
            "'depth': d.tolist()}))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["torch"] is False and seen["host"] is True
    np.testing.assert_allclose(np.array(seen["depth"]), reference, rtol=1e-3, atol=1e-3)
