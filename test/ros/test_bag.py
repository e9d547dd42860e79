"""`depth-perception bag`: a real rosbag2 in, the node's outputs with the input stamps out."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from depth_perception.camera import CameraModel
from depth_perception.ros import messages as M
from depth_perception.ros.bag import BagWriter, process_bag, read_bag
from depth_perception.scene import generate_tabletop

STAMPS = [1_000_000_000, 1_100_000_000, 1_200_000_000]


def write_input_bag(path: Path, storage: str = "mcap") -> None:
    """Three stereo frames; the second has a CameraInfo of the wrong size; one corrupt record."""
    scene = generate_tabletop(seed=5, width=256, height=192)
    t = M.rosbags_types()
    h, w = scene.depth_m.shape
    P_right = np.hstack([scene.K, [[-scene.K[0, 0] * scene.baseline_m], [0.0], [0.0]]])
    with BagWriter(path, storage=storage, types=t) as bag:
        for i, stamp in enumerate(STAMPS):
            header = M.make_header(t, stamp, "cam_optical")
            size = (w * 2, h * 2) if i == 1 else (w, h)
            left = CameraModel(width=size[0], height=size[1], K=scene.K)
            right = CameraModel(width=size[0], height=size[1], K=scene.K, P=P_right)
            bag.write("/camera/image", M.numpy_to_image(t, scene.rgb, "rgb8", header), stamp)
            bag.write("/camera/camera_info", M.model_to_camera_info(t, left, header), stamp)
            bag.write("/camera/right/image", M.rgb_to_compressed(t, scene.right_rgb, header, "png"),
                      stamp)
            bag.write("/camera/right/camera_info", M.model_to_camera_info(t, right, header), stamp)
            bag.write("/segmenter/masks", M.numpy_to_image(t, scene.instance_mask, "16UC1", header),
                      stamp)
        conn = bag._connections["/camera/image"]
        bag._writer.write(conn, STAMPS[-1] + 1, b"\x00\x01not cdr")


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_process_bag_writes_outputs_with_input_stamps_and_counts_failures(tmp_path, storage):
    write_input_bag(tmp_path / "in", storage)
    summary = process_bag(tmp_path / "in", tmp_path / "out",
                          {"stereo": True, "max_depth": 5.0, "segmentation.source": []},
                          progress=False)
    assert summary.frames_processed == 2
    assert summary.frames_failed == 1 and any("512x384" in e for e in summary.errors)
    assert summary.messages_skipped == 1  # the corrupt record
    out = list(read_bag(tmp_path / "out"))
    depth = [(stamp, msg) for topic, _, stamp, msg in out if topic == "/depth_perception/depth"]
    assert [M.stamp_to_ns(m.header.stamp) for _, m in depth] == [STAMPS[0], STAMPS[2]]
    assert [log for log, _ in depth] == [STAMPS[0], STAMPS[2]]
    assert {topic for topic, *_ in out} == {
        "/depth_perception/depth", "/depth_perception/depth/camera_info",
        "/depth_perception/depth/colored", "/depth_perception/points"}
    assert "frames processed" in summary.table()


def test_missing_topic_is_a_clear_error(tmp_path):
    write_input_bag(tmp_path / "in")
    with pytest.raises(ValueError, match="/cam2/image"):
        process_bag(tmp_path / "in", tmp_path / "out",
                    topics={"image": "/cam2/image", "camera_info": "/camera/camera_info"},
                    progress=False)


def test_bag_command(tmp_path):
    write_input_bag(tmp_path / "in")
    repo = Path(__file__).resolve().parents[2]
    exe = [sys.executable, "-m", "depth_perception.cli"]
    proc = subprocess.run([*exe, "bag", str(tmp_path / "in"), str(tmp_path / "out"), "--config",
                           str(repo / "config/stereo.yaml"), "--set", "max_depth=4.0"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "frames processed" in proc.stdout
    again = subprocess.run([*exe, "bag", str(tmp_path / "in"), str(tmp_path / "out")],
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "already exists" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1


def test_masks_in_the_bag_give_region_topics(tmp_path):
    write_input_bag(tmp_path / "in")
    topics = {"image": "/camera/image", "camera_info": "/camera/camera_info",
              "right/image": "/camera/right/image", "right/camera_info": "/camera/right/camera_info",
              "masks": "/segmenter/masks"}
    summary = process_bag(tmp_path / "in", tmp_path / "out",
                          {"stereo": True, "segmentation.source": ["topic"]}, topics, progress=False)
    assert summary.frames_processed == 2
    out = {}
    for topic, msgtype, stamp, msg in read_bag(tmp_path / "out"):
        out.setdefault(topic, []).append((msgtype, msg))
    assert {"/depth_perception/regions", "/depth_perception/regions/labels",
            "/depth_perception/regions/points", "/depth_perception/regions/markers",
            "/depth_perception/masks/overlay"} <= set(out)
    msgtype, array = out["/depth_perception/regions"][0]
    assert msgtype == "depth_perception_msgs/msg/GraspableRegionArray"
    assert len(array.regions) >= 3 and M.stamp_to_ns(array.header.stamp) == STAMPS[0]
