"""package.xml declares what the package imports, so that `rosdep install` gives a working node."""

from __future__ import annotations

import ast
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from ros_checks import TOOLS_HINT, require_module

REPO = Path(__file__).resolve().parents[2]

#: third-party Python modules → their rosdep keys (rosdistro's rosdep/python.yaml)
PYTHON_KEYS = {"numpy": "python3-numpy", "cv2": "python3-opencv", "scipy": "python3-scipy",
               "tqdm": "python3-tqdm", "yaml": "python3-yaml", "rosbags": "python3-rosbags-pip",
               "PIL": "python3-pil",
               "torch": "python3-torch", "transformers": "python3-transformers-pip",
               "safetensors": "python3-transformers-pip"}  # no key of its own; a transformers dependency
#: imported only when a user configures that backend or tool (documented as optional)
OPTIONAL = {"onnxruntime", "onnx", "tensorrt", "segment_anything", "diffusers", "matplotlib",
            "skimage", "tokenizers", "typing_extensions", "cuda", "polygraphy", "openvino",
            "huggingface_hub",  # a hub id's download (a transformers dependency)
            "onnxscript", "onnx_ir",  # exporting to ONNX (the onnx extra)
            "nncf",  # quantising for OpenVINO (the quantize extra)
            "threadpoolctl"}  # BLAS threads (pip installs it; without it they stay as they are)


def depends(kind: str) -> set[str]:
    return {e.text.strip() for e in ET.parse(REPO / "package.xml").getroot().iter(kind)}


def imported_modules(paths) -> set[str]:
    names = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def ros_packages() -> set[str]:
    require_module("ament_index_python", TOOLS_HINT)
    from ament_index_python.packages import get_packages_with_prefixes

    return set(get_packages_with_prefixes())


def test_every_ros_package_the_node_and_launch_file_import_is_an_exec_depend():
    sources = [*(REPO / "depth_perception").rglob("*.py"), *(REPO / "launch").glob("*.py")]
    imported = imported_modules(sources) & ros_packages()
    imported -= {"depth_perception"}
    assert imported <= depends("exec_depend"), sorted(imported - depends("exec_depend"))


def test_every_ros_exec_depend_is_imported():
    sources = [*(REPO / "depth_perception").rglob("*.py"), *(REPO / "launch").glob("*.py")]
    ros_deps = {d for d in depends("exec_depend") if not d.startswith("python3-")}
    unused = ros_deps - imported_modules(sources)
    assert not unused, f"declared but never imported: {sorted(unused)}"


def test_every_required_third_party_module_has_its_rosdep_key():
    imported = imported_modules((REPO / "depth_perception").rglob("*.py"))
    third_party = {m for m in imported if m in PYTHON_KEYS}
    missing = {PYTHON_KEYS[m] for m in third_party} - depends("exec_depend")
    assert not missing, sorted(missing)
    assert set(PYTHON_KEYS) <= imported  # the table has no stale entries
    unknown = imported - set(PYTHON_KEYS) - OPTIONAL - ros_packages() - set(sys.stdlib_module_names)
    assert unknown <= {"depth_perception"}, f"imported, neither declared nor optional: {sorted(unknown)}"


def test_test_depends_name_the_consumer_libraries_the_tests_use():
    tests = imported_modules((REPO / "test").rglob("*.py"))
    assert {"launch_testing", "cv_bridge", "sensor_msgs_py"} <= tests
    assert {"launch_testing", "cv_bridge", "sensor_msgs_py", "python3-pytest"} <= depends("test_depend")
