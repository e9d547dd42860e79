"""Install with colcon (ament_python) on a robot, or with `pip install -e .[dev]` anywhere."""

from glob import glob
from pathlib import Path

from setuptools import Extension, find_packages, setup

PACKAGE = "depth_perception"
# The source folder, wherever setup.py is run from: `colcon build --symlink-install` runs it from
# build/<package>, where setup.py is a symlink to the source (and README.md is not linked).
HERE = Path(__file__).resolve().parent


def _files(pattern: str) -> list[str]:
    """Files matching `pattern` in the source folder, as paths relative to it (sorted).

    setuptools wants data_files relative to setup.py; colcon runs it from the source folder (plain
    install) or from build/<package>, which links these folders to the source (symlink install).
    """
    return sorted(glob(pattern, root_dir=HERE))


setup(
    name=PACKAGE,
    version="0.1.0",
    description="Metric depth and graspable-object point clouds from a colour camera, for ROS 2.",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    package_data={PACKAGE: ["data/*"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", _files("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", _files("config/*.yaml") + _files("config/*.rviz")
         + _files("config/*.xml")),
    ],
    # Loose on purpose: a Jetson brings its own torch/TensorRT builds. Exact pins for CI live in
    # requirements/*.txt.
    install_requires=[
        "numpy>=1.22",
        "opencv-python-headless>=4.6; platform_machine!='aarch64'",
        "scipy>=1.8",
        "tqdm>=4.60",
        "rosbags>=0.10.4",
        "PyYAML>=5.4",
        # image sizes from headers, before decoding (input pixel limits)
        "Pillow>=9.1",
        # one BLAS thread in the node and the command (depth_perception.threads)
        "threadpoolctl>=3.1",
        "setuptools",
    ],
    extras_require={
        "torch": ["torch>=2.1", "transformers>=4.45", "safetensors>=0.4"],
        # onnxscript (with onnx_ir): torch.onnx's exporter, and the constant folding of exports
        "onnx": ["onnx>=1.15", "onnxruntime>=1.17", "onnxscript>=0.3"],
        "openvino": ["openvino>=2024.0"],
        # NNCF: only when quantising for OpenVINO (depth.quantize); the int8 IR runs without it
        "quantize": ["openvino>=2024.0", "nncf>=2.12"],
        # TensorRT itself comes with JetPack / NVIDIA's wheels; cuda-python runs a built engine
        # without torch
        "tensorrt": ["cuda-python>=12.0"],
        "sam": ["segment-anything>=1.0", "torchvision>=0.16"],
        "dev": ["pytest>=7", "scikit-image>=0.21", "mypy>=1.5", "ruff>=0.4"],
    },
    # The compiled loops of regions.extract_regions. optional: without a compiler the install still
    # works and extract_regions uses its numpy implementation (same results, slower).
    # -ffp-contract=off: no fused multiply-adds, so float32 results match the numpy path;
    # -fno-math-errno: sqrt as one instruction (errno is never read)
    ext_modules=[
        Extension(
            f"{PACKAGE}._regions_kernel",
            sources=[f"{PACKAGE}/_regions_kernel.cpp"],
            language="c++",
            extra_compile_args=["-std=c++17", "-O3", "-ffp-contract=off", "-fno-math-errno"],
            optional=True,
        )
    ],
    zip_safe=False,
    maintainer="depth_perception maintainers",
    maintainer_email="maintainers@depth-perception.dev",
    entry_points={
        "console_scripts": [
            "depth_perception_node = depth_perception.ros.node:main",
            "depth-perception = depth_perception.cli:main",
        ],
    },
)
