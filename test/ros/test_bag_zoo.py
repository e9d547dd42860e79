"""Every tiny twin of the model zoo through the bag tool: a rosbags-written bag with the colour
image, its CameraInfo and (where the metric mode takes one) a registered depth image in; a bag
whose depth, stamped as the image, is the known metric depth of :mod:`zoo_cases` out.

``process_bag`` is what ``depth-perception bag`` runs; the last test runs the command itself for
Depth Anything 3 Metric, whose metres come from the fx of the recorded CameraInfo.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from consumers import read_depth_m
from depth_perception.depth.estimator import DepthEstimator
from depth_perception.ros import messages as M
from depth_perception.ros.bag import BagWriter, process_bag, read_bag
from zoo_cases import CAMERA, PARAMETERS, RGB, TINY, ZooCase, assert_metric, zoo_case

STAMPS = [2_000_000_000, 2_100_000_000]
TOPICS = {"image": "/camera/image", "camera_info": "/camera/camera_info",
          "sparse_depth": "/camera/depth"}


def write_bag(path: Path, case: ZooCase) -> None:
    """Two frames of RGB with CameraInfo, and the case's registered depth (32FC1 metres)."""
    t = M.rosbags_types()
    with BagWriter(path, types=t) as bag:
        for stamp in STAMPS:
            header = M.make_header(t, stamp, "cam_optical")
            bag.write(TOPICS["image"], M.numpy_to_image(t, RGB, "rgb8", header), stamp)
            bag.write(TOPICS["camera_info"], M.model_to_camera_info(t, CAMERA, header), stamp)
            if case.sparse_m is not None:
                bag.write(TOPICS["sparse_depth"], M.numpy_to_image(t, case.sparse_m, "32FC1", header),
                          stamp)


def output_depths(path: Path) -> list:
    return [msg for topic, _, _, msg in read_bag(path) if topic == "/depth_perception/depth"]


@pytest.mark.parametrize("name", TINY)
def test_every_zoo_model_writes_metric_depth_through_the_bag_tool(tmp_path: Path, name: str) -> None:
    case = zoo_case(DepthEstimator(name, random_init=True, backend="torch", log=None))
    write_bag(tmp_path / "in", case)
    topics = TOPICS if case.sparse_m is not None else {k: TOPICS[k] for k in ("image", "camera_info")}
    summary = process_bag(tmp_path / "in", tmp_path / "out",
                          {**PARAMETERS, "model": name, **case.parameters}, topics, progress=False,
                          log=lambda _line: None)
    assert (summary.frames_valid, summary.frames_failed) == (2, 0), summary.table()
    assert summary.depth_sources == {case.mode: 2}
    depths = output_depths(tmp_path / "out")
    assert [M.stamp_to_ns(m.header.stamp) for m in depths] == STAMPS
    for msg in depths:
        assert_metric(read_depth_m(msg), case, name)


def test_the_bag_command_makes_depth_anything_3_metric_metric_with_the_recorded_fx(tmp_path: Path) -> None:
    name = "depth_anything_3_metric_large_tiny"
    case = zoo_case(DepthEstimator(name, random_init=True, backend="torch", log=None))
    assert case.mode == "model" and case.sparse_m is None
    write_bag(tmp_path / "in", case)
    sets = [f"{k}={v}" for k, v in {**PARAMETERS, "model": name, **case.parameters}.items()
            if k != "segmentation.source"] + ["segmentation.source=[]"]
    argv = [sys.executable, "-m", "depth_perception.cli", "bag", str(tmp_path / "in"),
            str(tmp_path / "out")]
    for s in sets:
        argv += ["--set", s]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert "frames with valid depth" in proc.stdout
    depths = output_depths(tmp_path / "out")
    assert len(depths) == 2
    for msg in depths:
        assert_metric(read_depth_m(msg), case, name)
