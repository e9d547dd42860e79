"""NNCF int8 for OpenVINO: an ONNX export in, an int8 OpenVINO IR out that stays within 1 % of the
fp32 depth and runs without nncf."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from depth_perception.depth.estimator import DepthEstimator
from depth_perception.depth.processing import preprocess_numpy
from depth_perception.depth.zoo import get_spec
from depth_perception.scene import generate_tabletop

pytest.importorskip("openvino", reason="optional backend: pip install openvino")
pytest.importorskip("nncf", reason="optional quantiser: pip install nncf")

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def student_onnx(tmp_path_factory) -> Path:
    """The bundled student with its trained weights, exported as the estimator exports it."""
    from depth_perception.depth.onnx_export import export_onnx
    from depth_perception.depth.student import default_weights_path
    from depth_perception.depth.weights import build_model

    spec = get_spec("student_tabletop")
    path = tmp_path_factory.mktemp("quantize") / "student.onnx"
    return export_onnx(build_model(spec, weights=default_weights_path()), path, spec.input_size,
                       spec.input_size * 4 // 3, dynamic=True, spec=spec)


def calibration(count: int = 4) -> list[np.ndarray]:
    spec = get_spec("student_tabletop")
    return [preprocess_numpy(generate_tabletop(seed=i).rgb, spec, spec.input_size)[0]
            for i in range(count)]


def op_types(xml: Path) -> list[str]:
    import openvino as ov

    return [op.get_type_name() for op in ov.Core().read_model(str(xml)).get_ordered_ops()]


def test_the_int8_ir_stays_within_one_percent_of_fp32(student_onnx, tmp_path) -> None:
    from depth_perception.depth.quantize import quantize_openvino_int8

    xml = quantize_openvino_int8(student_onnx, tmp_path / "student.int8.xml", calibration(),
                                 transformer=True)
    assert xml.is_file() and xml.with_suffix(".bin").is_file()
    assert "FakeQuantize" in op_types(xml)  # int8 ranges in the graph, run as int8 kernels
    rgb = generate_tabletop(seed=99).rgb  # the calibration's domain, not one of its scenes
    kw = dict(device="cpu", threads=1, log=None)
    fp32 = DepthEstimator("student_tabletop", backend="openvino", onnx_path=student_onnx,
                          **kw).predict(rgb).values
    int8 = DepthEstimator("student_tabletop", backend="openvino", onnx_path=xml,
                          **kw).predict(rgb).values
    abs_rel = float(np.mean(np.abs(int8 - fp32) / fp32))
    assert 0 < abs_rel < 0.01


def test_kept_op_types_stay_fp32(student_onnx, tmp_path, capfd) -> None:
    import openvino as ov

    from depth_perception.depth.quantize import quantize_openvino_int8

    xml = quantize_openvino_int8(student_onnx, tmp_path / "fp32conv.xml", calibration(1),
                                 keep_fp32_types=("Convolution",))
    # NNCF says at INFO, layer by layer, what it leaves out: not in a node's log
    assert "INFO:nncf" not in "".join(capfd.readouterr())
    convs = [op for op in ov.Core().read_model(str(xml)).get_ordered_ops()
             if op.get_type_name() == "Convolution"]
    assert convs
    for conv in convs:  # fp32 weights: a plain constant, not int8 and its dequantisation
        assert conv.input_value(1).get_node().get_type_name() == "Constant"
        assert conv.input_value(1).get_element_type() == ov.Type.f32


def test_the_estimator_quantises_openvino_int8_by_nncf(student_onnx) -> None:
    est = DepthEstimator("student_tabletop", backend="openvino", precision="int8",
                         onnx_path=student_onnx, device="cpu", threads=1, log=None)
    assert est.backend.path.suffix == ".xml"
    assert est.predict(generate_tabletop(seed=5).rgb).values.shape == (480, 640)


def test_the_int8_ir_runs_without_nncf(student_onnx, tmp_path) -> None:
    from depth_perception.depth.quantize import quantize_openvino_int8

    xml = quantize_openvino_int8(student_onnx, tmp_path / "student.int8.xml", calibration(1))
    child = ("import sys; sys.modules['nncf'] = None\n"  # importing nncf now raises ImportError
             "import numpy as np\n"
             "from depth_perception.depth.estimator import DepthEstimator\n"
             f"est = DepthEstimator('student_tabletop', backend='openvino', onnx_path={str(xml)!r},"
             " log=None)\n"
             "print(est.predict(np.zeros((48, 64, 3), np.uint8)).values.shape)\n")
    out = subprocess.run([sys.executable, "-c", child], cwd=ROOT, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "(48, 64)"


def test_bad_requests_are_named(student_onnx, tmp_path, monkeypatch) -> None:
    from depth_perception.depth.quantize import quantize_openvino_int8

    with pytest.raises(ValueError, match=r"\.xml"):
        quantize_openvino_int8(student_onnx, tmp_path / "out.onnx", calibration(1))
    with pytest.raises(ValueError, match="calibration"):
        quantize_openvino_int8(student_onnx, tmp_path / "out.xml", [])
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        quantize_openvino_int8(tmp_path / "missing.onnx", tmp_path / "out.xml", calibration(1))
    monkeypatch.setitem(sys.modules, "nncf", None)
    with pytest.raises(ImportError, match="pip install nncf"):
        quantize_openvino_int8(student_onnx, tmp_path / "out.xml", calibration(1))
