"""The compact student: size budget, any input size, weights files with metadata, ONNX parity."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from depth_perception.depth.student import (  # noqa: E402
    OUTPUT_KIND,
    PRESETS,
    StudentConfig,
    StudentWeightsError,
    build_student,
    load_student,
    student_info,
)
from depth_perception.depth.zoo import student_spec  # noqa: E402
from depth_perception.training.student import (  # noqa: E402
    calibrate_output,
    parameter_bytes,
    save_student,
)


def test_the_bundled_architecture_fits_the_5_mb_budget():
    net = build_student("student")
    assert parameter_bytes(net) <= 5_000_000
    assert parameter_bytes(build_student("student_tiny")) < 100_000


@pytest.mark.parametrize("hw", [(32, 48), (48, 32), (64, 64), (144, 192)])
def test_output_is_one_inverse_depth_map_at_the_input_size(hw):
    net = build_student("student_tiny", seed=1)
    x = torch.randn(2, 3, *hw, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = net(pixel_values=x)
    assert out.predicted_depth.shape == (2, *hw)
    assert float(out.predicted_depth.std()) > 0  # not a constant map
    # images are independent in eval mode: batch of two == two batches of one
    with torch.no_grad():
        one = net(pixel_values=x[1:]).predicted_depth
    assert torch.allclose(one[0], out.predicted_depth[1], atol=1e-5)


def test_weights_round_trip_with_their_metadata(tmp_path):
    net = build_student("student_tiny", seed=3)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.01)
        net.output_scale.fill_(2.0)
    path = save_student(net, tmp_path / "s.safetensors", name="my_student", extra={"note": "hi"})
    info = student_info(path)
    assert info.config == PRESETS["student_tiny"] and info.output == OUTPUT_KIND
    assert info.name == "my_student" and info.extra["note"] == "hi"
    assert info.patch_multiple == 16 and info.mean == PRESETS["student_tiny"].mean
    back = load_student(path)
    x = torch.randn(1, 3, 32, 48)
    with torch.no_grad():
        assert torch.equal(back(pixel_values=x).predicted_depth, net(pixel_values=x).predicted_depth)


def test_foreign_or_broken_files_are_refused(tmp_path):
    from safetensors.torch import save_file

    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(other))
    with pytest.raises(StudentWeightsError, match="not a depth_perception student"):
        load_student(other)
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x00" * 20)
    with pytest.raises(StudentWeightsError, match="not a readable"):
        student_info(broken)
    with pytest.raises(StudentWeightsError, match="not found"):
        load_student(tmp_path / "missing.safetensors")
    with pytest.raises(ValueError, match="4 entries"):
        StudentConfig(widths=(8, 8))


def test_calibration_folds_a_global_affine_into_the_output():
    net = build_student("student_tiny", seed=2)
    x = torch.randn(2, 3, 32, 48)
    with torch.no_grad():
        before = net(pixel_values=x).predicted_depth.numpy()
    target = [3.0 * b - 0.5 for b in before]
    a, b = calibrate_output(net, list(before), target)
    with torch.no_grad():
        after = net(pixel_values=x).predicted_depth.numpy()
    assert a == pytest.approx(3.0, rel=1e-4) and np.allclose(after, np.stack(target), atol=1e-4)


def test_the_depth_engine_runs_it_and_onnx_runtime_agrees(tmp_path):
    """The engine's torch backend and ONNX exporter take the student unchanged (dynamic H/W)."""
    ort = pytest.importorskip("onnxruntime")
    from depth_perception.depth.onnx_export import export_onnx
    from depth_perception.depth.processing import postprocess, preprocess
    from depth_perception.depth.torch_backend import TorchBackend
    from depth_perception.scene import generate_tabletop

    spec = student_spec("student_tiny")
    net = build_student("student_tiny", seed=4)
    path = export_onnx(net, tmp_path / "student.onnx", 32, 48, dynamic=True, spec=spec, optimize=False)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    backend = TorchBackend(net, device="cpu")
    for w, h in ((80, 60), (64, 96)):  # sizes other than the export's, both aspect ratios
        rgb = generate_tabletop(seed=5, width=w, height=h).rgb
        x, geo = preprocess(rgb, spec, 48)
        ref = backend.infer(x)["predicted_depth"].numpy()
        got = sess.run(["predicted_depth"], {"pixel_values": x.numpy()})[0]
        assert got.shape == ref.shape == (1, *geo.net_hw)
        assert np.abs(got - ref).max() <= 1e-4 * (np.ptp(ref) + 1e-6)
        assert postprocess(got, geo).shape == (h, w)


def test_the_zoo_spec_uses_the_same_preprocessing_as_the_zoo():
    from depth_perception.depth.zoo import IMAGENET_MEAN, IMAGENET_STD

    spec = student_spec()
    assert spec.name == "student_tabletop" and spec.family == "student" and spec.output == OUTPUT_KIND
    assert spec.mean == IMAGENET_MEAN and spec.std == IMAGENET_STD
    assert spec.input_size % spec.patch_multiple == 0 and spec.dynamic_size
    tiny = spec.tiny_spec()
    assert tiny.name == "student_tabletop_tiny" and tiny.make_config() == PRESETS["student_tiny"]


def test_saving_the_same_weights_twice_gives_identical_bytes(tmp_path):
    """safetensors orders metadata randomly; the shipped file's sha256 must be reproducible."""
    net = build_student("student_tiny")
    extra = {f"key{i}": str(i) for i in range(8)}
    a = save_student(net, tmp_path / "a.safetensors", extra=extra).read_bytes()
    b = save_student(net, tmp_path / "b.safetensors", extra=extra).read_bytes()
    assert a == b
    assert student_info(tmp_path / "a.safetensors").extra["key7"] == "7"
