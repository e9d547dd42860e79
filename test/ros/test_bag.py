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
from consumers import read_depth_m, read_image

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


def test_a_monocular_model_sparse_depth_and_sam_prompted_by_recorded_detections(tmp_path):
    """The bag tool loads what the node loads: the bundled student network made metric by a
    recorded sparse depth image, and a (tiny, random) SAM prompted by recorded detections."""
    pytest.importorskip("segment_anything")
    import torch

    from depth_perception.depth.zoo import DEFAULT_MODEL
    from depth_perception.ros.vision_msgs import detections_to_msg, register_vision_types
    from depth_perception.segmentation.base import Detection
    from depth_perception.segmentation.sam import build_sam_model

    checkpoint = tmp_path / "sam_tiny.pth"
    torch.save(build_sam_model("tiny").state_dict(), checkpoint)
    scene = generate_tabletop(seed=5, width=256, height=192)
    t = M.rosbags_types()
    vision = register_vision_types(t.typestore)
    sparse = np.zeros(scene.depth_m.shape, np.uint16)  # 16UC1 mm, 0 = no measurement
    rng = np.random.default_rng(0)
    v, u = rng.integers(0, 192, 300), rng.integers(0, 256, 300)
    sparse[v, u] = np.nan_to_num(scene.depth_m[v, u] * 1000).astype(np.uint16)
    boxes = []
    for obj_id in (i for i in np.unique(scene.instance_mask) if i):
        ys, xs = np.nonzero(scene.instance_mask == obj_id)
        boxes.append(Detection(np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], float),
                               f"thing{obj_id}", 0.9))
    cam = CameraModel(width=256, height=192, K=scene.K)
    with BagWriter(tmp_path / "in", types=t) as bag:
        for k, stamp in enumerate(STAMPS[:2]):
            header = M.make_header(t, stamp, "cam_optical")
            bag.write("/camera/image", M.numpy_to_image(t, scene.rgb, "rgb8", header), stamp)
            bag.write("/camera/camera_info", M.model_to_camera_info(t, cam, header), stamp)
            bag.write("/lidar/depth", M.numpy_to_image(t, sparse, "16UC1", header), stamp)
            if k == 0:  # the second frame's detector never answered: depth without regions
                bag.write("/detector/detections", detections_to_msg(vision, boxes, header), stamp + 50)
    params = {"model": DEFAULT_MODEL, "metric.mode": "sparse_depth", "segmentation.source": ["sam"],
              "segmentation.sam.model": "tiny", "segmentation.sam.checkpoint": str(checkpoint)}
    topics = {"image": "/camera/image", "camera_info": "/camera/camera_info",
              "sparse_depth": "/lidar/depth", "detections": "/detector/detections"}
    summary = process_bag(tmp_path / "in", tmp_path / "out", params, topics, progress=False)
    assert (summary.frames_processed, summary.frames_failed) == (2, 0), summary.table()
    out = {}
    for topic, _, _, msg in read_bag(tmp_path / "out"):
        out.setdefault(topic, []).append(msg)
    depth = read_depth_m(out["/depth_perception/depth"][0])
    valid = np.isfinite(depth) & np.isfinite(scene.depth_m)
    assert np.median(np.abs(depth[valid] - scene.depth_m[valid]) / scene.depth_m[valid]) < 0.1  # metric
    first, second = out["/depth_perception/regions/labels"]
    assert read_image(first).any() and not read_image(second).any()
    assert len(out["/depth_perception/depth"]) == 2
