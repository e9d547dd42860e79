"""Every family's tiny model: torch and ONNX Runtime agree at three sizes/aspect ratios.

The comparison runs through DepthEstimator (same pre/post-processing, different backends), so the
dynamic models see three different network input shapes from one dynamic export: a graph that kept
its export size (the classic Depth Anything trap) fails here on shape or values.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from skimage import data

from depth_perception.depth.engine_onnx_ops import SEQUENCE_OPS, graph_ops, unsupported_ops
from depth_perception.depth.estimator import DepthEstimator
from depth_perception.depth.onnx_export import (
    ExportError, default_opset, export_onnx, external_data_path, installed_tensorrt_version,
    opset_for_tensorrt, target_tensorrt, weight_bytes,
)
from depth_perception.depth.weights import build_model
from depth_perception.depth.zoo import backends, get_spec, list_specs

# every tiny twin the zoo lists as running on ONNX Runtime (`depth-perception models`): nothing
# listed may fail. Fixed-size models are exported at their fixed size. BEiT-based and Depth Pro
# graphs take 10-30 s each to export: marked slow (CI runs them; deselect with -m "not slow" while
# iterating)
SLOW = pytest.mark.slow


def is_slow(spec) -> bool:
    return spec.family in ("zoedepth", "depth_pro") or spec.name.startswith("midas_beit")


ONNX_TWINS = [s for s in list_specs() if s.tiny and "onnxruntime" in backends(s)]
FAMILIES = [pytest.param(s.name, marks=[SLOW] if is_slow(s) else []) for s in ONNX_TWINS]
# three real images of different aspect ratios: 4:3 landscape, portrait, wide
ASTRONAUT = data.astronaut()
IMAGES = [ASTRONAUT[::8, ::6][:60, :80], ASTRONAUT[::5, ::9][:90, :50], data.coffee()[::4, ::4][:40, :100]]
PROMPT = np.linspace(0.5, 3.0, 8 * 6, dtype=np.float32).reshape(8, 6)


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape
    span = float(np.nanmax(b) - np.nanmin(b))
    assert span > 0, "degenerate (flat) reference output: the comparison would prove nothing"
    return float(np.nanmax(np.abs(a - b))) / span


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, Path]:
    return {}


def export_once(name: str, cache: dict[str, Path], tmp: Path) -> tuple[DepthEstimator, Path]:
    # seed 1: every tiny family's random output varies across the image (not clipped flat by ReLU)
    torch_est = DepthEstimator(name, backend="torch", random_init=True, device="cpu", log=None, seed=1)
    if name not in cache:
        spec = get_spec(name)
        s = spec.input_size
        w = s + spec.patch_multiple if spec.dynamic_size else s
        full = name == "depth_anything_v2_small_tiny"  # the product path: optimiser and self-check on
        cache[name] = export_onnx(torch_est.backend.model, tmp / f"{name}.onnx", s, w, dynamic=True,
                                  spec=spec, check=full, optimize=full)
    return torch_est, cache[name]


@pytest.mark.parametrize("name", FAMILIES)
def test_torch_and_onnxruntime_agree_at_three_aspect_ratios(name: str, exported, tmp_path_factory) -> None:
    torch_est, onnx_path = export_once(name, exported, tmp_path_factory.mktemp(name))
    ort_est = DepthEstimator(name, backend="onnxruntime", onnx_path=onnx_path, log=None)
    assert ort_est.backend_name == "onnxruntime"
    kwargs = {"fx_px": 70.0} if get_spec(name).takes_focal else {}
    if get_spec(name).extra_inputs:
        kwargs = {"prompt_depth_m": PROMPT}
    for rgb in IMAGES:
        ref = torch_est.predict(rgb, **kwargs)
        got = ort_est.predict(rgb, **kwargs)
        assert got.values.shape == rgb.shape[:2] and got.kind == ref.kind
        assert relative_error(got.values, ref.values) <= 1e-4, (name, rgb.shape)
    # the other precision the zoo lists for ONNX Runtime runs too (its accuracy: the int8 test below)
    int8 = DepthEstimator(name, backend="onnxruntime", onnx_path=onnx_path, precision="int8", log=None)
    assert np.isfinite(int8.predict(IMAGES[0], **kwargs).values).all()
    if importlib.util.find_spec("openvino") is not None:  # the optional backend the zoo lists
        ov = DepthEstimator(name, backend="openvino", onnx_path=onnx_path, threads=1, log=None)
        ref = torch_est.predict(IMAGES[1], **kwargs)
        assert relative_error(ov.predict(IMAGES[1], **kwargs).values, ref.values) <= 1e-3, name
    if get_spec(name).dynamic_size:
        from depth_perception.depth.processing import network_geometry

        sizes = {network_geometry(*im.shape[:2], get_spec(name)).net_hw for im in IMAGES}
        assert len(sizes) == 3  # three different network input shapes went through one graph


def test_dynamic_export_has_free_batch_height_and_width(exported, tmp_path_factory) -> None:
    name = "depth_anything_v2_small_tiny"
    torch_est, onnx_path = export_once(name, exported, tmp_path_factory.mktemp("dyn"))
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["pixel_values"]
    assert [o.name for o in sess.get_outputs()] == ["predicted_depth"]
    model = torch_est.backend.model
    gen = torch.Generator().manual_seed(2)
    # square at the backbone's native size (where DINOv2 skips interpolation), batch 3, tall, tiny
    for shape in [(1, 3, 28, 28), (3, 3, 56, 56), (1, 3, 126, 42), (2, 3, 14, 70)]:
        x = torch.randn(*shape, generator=gen)
        got = sess.run(None, {"pixel_values": x.numpy()})[0]
        with torch.no_grad():
            ref = model(pixel_values=x).predicted_depth.numpy()
        assert got.shape == (shape[0], shape[2], shape[3])
        assert relative_error(got, ref) <= 1e-4, shape


@pytest.mark.parametrize("version, opset", [
    (None, 17),  # no TensorRT here: what every supported TensorRT parses
    ("8.5.2.2", 17),  # JetPack 5.1
    ("8.6.1.6", 17),
    ("10.0.1.6", 18),
    ("10.13.0.35", 18),  # the exporter's own opset, no conversion
])
def test_the_export_opset_is_one_the_target_tensorrt_parses(version, opset: int) -> None:
    assert opset_for_tensorrt(version) == opset
    with pytest.raises(ValueError, match="unrecognised TensorRT version"):
        opset_for_tensorrt("latest")


def test_exports_are_written_at_the_default_or_the_asked_opset(exported, tmp_path: Path) -> None:
    import onnx

    def opset_of(path: Path) -> int:
        return {o.domain: o.version for o in onnx.load(str(path)).opset_import}[""]

    if installed_tensorrt_version() is None:
        assert default_opset() == 17
    # the dynamic Depth Anything export above (converted from 18 when the default is 17)
    _, dynamic = export_once("depth_anything_v2_small_tiny", exported, tmp_path)
    assert opset_of(dynamic) == default_opset()
    # the student at both opsets; the conversion to 17 was checked against torch on the way
    model = DepthEstimator("student_tabletop_tiny", backend="torch", random_init=True, log=None,
                           seed=1).backend.model
    spec = get_spec("student_tabletop_tiny")
    for opset in (17, 18):
        path = export_onnx(model, tmp_path / f"student{opset}.onnx", 32, 48, opset=opset, spec=spec,
                           optimize=False)
        assert opset_of(path) == opset
    with pytest.raises(ValueError, match="too old"):
        export_onnx(model, tmp_path / "old.onnx", 32, 48, opset=16, spec=spec)


def test_fixed_size_export_refuses_other_sizes(exported, tmp_path_factory) -> None:
    _, onnx_path = export_once("dpt_large_tiny", exported, tmp_path_factory.mktemp("fixed"))
    from depth_perception.depth.onnxruntime_backend import OnnxRuntimeBackend

    backend = OnnxRuntimeBackend(onnx_path)
    assert backend.fixed_hw == (32, 32)
    with pytest.raises(ValueError, match="exported for 32x32"):
        backend.infer(np.zeros((1, 3, 32, 64), np.float32))


def test_marigold_is_torch_only(tmp_path: Path) -> None:
    model_spec = get_spec("marigold_depth_tiny")
    assert not model_spec.exportable and list(backends(model_spec)) == ["torch"]
    # every other family's twin is listed on ONNX Runtime, so the comparison above covers it
    assert {s.family for s in ONNX_TWINS} == {s.family for s in list_specs() if s.tiny} - {"marigold"}
    with pytest.raises(ExportError, match="torch only"):
        export_onnx(object(), tmp_path / "m.onnx", 32, 32, spec=model_spec)


def test_a_graph_that_disagrees_with_torch_is_not_written(tmp_path: Path, monkeypatch) -> None:
    """The self-check catches a wrong graph (here: torch changed after tracing) and writes nothing."""
    import depth_perception.depth.onnx_export as ox

    model = build_model("dpt_large_tiny", random_init=True)
    real = ox.max_relative_error

    def after_tampering(wrapped, *args, **kwargs):
        with torch.no_grad():
            wrapped.model.head.head[4].bias += 1.0
        return real(wrapped, *args, **kwargs)

    monkeypatch.setattr(ox, "max_relative_error", after_tampering)
    with pytest.raises(ExportError, match=r"disagrees with torch \(relative error"):
        export_onnx(model, tmp_path / "bad.onnx", 32, 32, dynamic=False, spec=get_spec("dpt_large_tiny"))
    assert not (tmp_path / "bad.onnx").exists()


@pytest.mark.parametrize("optimize", [True, False])
def test_weights_over_the_threshold_are_written_beside_the_graph(tmp_path: Path, optimize: bool) -> None:
    """Depth Pro's 3.8 GB of weights exceed protobuf's 2 GB: the same mechanism, tiny model, low
    threshold. The graph keeps only a reference; the weights file travels with it."""
    name = "dpt_large_tiny"
    model = build_model(name, random_init=True, seed=1)
    path = export_onnx(model, tmp_path / "out" / "m.onnx", 32, 32, dynamic=False, spec=get_spec(name),
                       optimize=optimize, external_data_threshold_bytes=weight_bytes(model) // 2)
    data_file = external_data_path(path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["m.onnx", "m.onnx.data"]
    assert data_file.stat().st_size > 0.9 * weight_bytes(model), data_file.stat().st_size
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"pixel_values": x.numpy()})[0]
    with torch.no_grad():
        ref = model(pixel_values=x).predicted_depth.numpy()
    assert relative_error(got, ref) <= 1e-4
    # below the threshold (the default for every model but the largest): one self-contained file
    small = export_onnx(model, tmp_path / "one" / "m.onnx", 32, 32, dynamic=False, spec=get_spec(name),
                        optimize=optimize)
    assert [p.name for p in small.parent.iterdir()] == ["m.onnx"]
    assert small.stat().st_size > path.stat().st_size + 0.9 * weight_bytes(model)


def test_int8_quantisation_is_close_to_fp32(exported, tmp_path_factory) -> None:
    name = "depth_anything_v2_small_tiny"
    _, onnx_path = export_once(name, exported, tmp_path_factory.mktemp("int8"))
    fp32 = DepthEstimator(name, backend="onnxruntime", onnx_path=onnx_path, log=None)
    int8 = DepthEstimator(name, backend="onnxruntime", onnx_path=onnx_path, precision="int8", log=None)
    a, b = fp32.predict(IMAGES[0]).values, int8.predict(IMAGES[0]).values
    err = relative_error(b, a)
    assert 0 < err < 0.1  # changed (really quantised) but still the same depth map
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.98


# the TensorRT releases robots run: JetPack 5.1 (8.5), 5.1.x/x86 (8.6), JetPack 6 (10.3)
ROBOT_TENSORRT = ["8.5", "8.6", "10.3"]


@pytest.mark.parametrize("name", FAMILIES)
def test_every_export_uses_only_operators_every_robot_tensorrt_parses(name: str, exported,
                                                                      tmp_path_factory) -> None:
    """The graphs exported without a TensorRT installed (for the oldest, 8.5) parse on every
    TensorRT the robots run (with one installed: on it and later ones); ZoeDepth's used to keep
    SplitToSequence/SequenceAt."""
    from depth_perception.depth.tensorrt_import import parse_tensorrt_version

    _, onnx_path = export_once(name, exported, tmp_path_factory.mktemp(name))
    ops = graph_ops(onnx_path)
    assert not SEQUENCE_OPS & set(ops) and "Loop" not in ops, sorted(ops)
    target = parse_tensorrt_version(target_tensorrt())
    checked = [v for v in ROBOT_TENSORRT if parse_tensorrt_version(v) >= target]
    assert checked == ROBOT_TENSORRT or installed_tensorrt_version() is not None
    for version in checked:
        assert unsupported_ops(onnx_path, version) == {}, (name, version)


# one tiny twin of every family whose input size is free
DYNAMIC_FAMILIES = [pytest.param(name, marks=[SLOW] if is_slow(get_spec(name)) else [])
                    for name in sorted({s.family: s.name for s in ONNX_TWINS if s.dynamic_size}.values())]


@pytest.mark.parametrize("name", DYNAMIC_FAMILIES)
def test_exports_for_tensorrt_10_agree_with_torch_at_two_aspect_ratios(name: str, tmp_path: Path) -> None:
    """JetPack 6's TensorRT 10 gets opset 18 with LayerNormalization kept; the export's own check
    runs ONNX Runtime against torch at a landscape and a portrait size (relative error <= 1e-4)."""
    spec = get_spec(name)
    model = build_model(name, random_init=True, seed=1)
    s, m = spec.input_size, spec.patch_multiple
    path = export_onnx(model, tmp_path / "m.onnx", s, s + m, spec=spec, tensorrt="10.3", check=True,
                       tolerance=1e-4)
    import onnx

    graph = onnx.load(str(path), load_external_data=False)
    assert {o.domain: o.version for o in graph.opset_import}[""] == 18
    assert unsupported_ops(path, "10.3") == {}


def test_layer_normalization_is_spelled_out_for_tensorrt_8_5_only(tmp_path: Path) -> None:
    """TensorRT 8.5's parser has no LayerNormalization; the rewrite for it still equals torch."""
    name = "depth_anything_v2_small_tiny"
    spec = get_spec(name)
    model = build_model(name, random_init=True, seed=1)
    s, m = spec.input_size, spec.patch_multiple  # the sample size of the exports above
    old = export_onnx(model, tmp_path / "85.onnx", s, s + m, spec=spec, tensorrt="8.5", check=True)
    new = export_onnx(model, tmp_path / "86.onnx", s, s + m, spec=spec, tensorrt="8.6", check=True)
    assert graph_ops(old)["LayerNormalization"] == 0 and graph_ops(old)["ReduceMean"] > 0
    assert graph_ops(new)["LayerNormalization"] > 0
    assert unsupported_ops(new, "8.5") == {"LayerNormalization": graph_ops(new)["LayerNormalization"]}
    x = np.random.default_rng(3).normal(size=(2, 3, 42, 28)).astype(np.float32)  # portrait, batch 2
    a, b = (ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"pixel_values": x})[0]
            for p in (old, new))
    assert relative_error(a, b) <= 1e-5
