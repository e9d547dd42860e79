"""`depth-perception bag`: a real rosbag2 in, the node's outputs with the input stamps out."""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from depth_perception.camera import CameraModel
from depth_perception.ros import messages as M
from depth_perception.ros.bag import BagWriter, NoValidDepth, process_bag, read_bag
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
    """Exact pairing: the second image gets the CameraInfo stamped with it, of the wrong size."""
    write_input_bag(tmp_path / "in", storage)
    summary = process_bag(tmp_path / "in", tmp_path / "out",
                          {"stereo": True, "max_depth": 5.0, "segmentation.source": [],
                           "camera_info.pairing": "exact"}, progress=False)
    assert summary.frames_processed == summary.frames_valid == 2
    assert summary.frames_failed == 1 and any("512x384" in e for e in summary.errors)
    assert summary.messages_skipped == 1  # the corrupt record
    assert summary.depth_sources == {"stereo": 2}
    out = list(read_bag(tmp_path / "out"))
    depth = [(stamp, msg) for topic, _, stamp, msg in out if topic == "/depth_perception/depth"]
    assert [M.stamp_to_ns(m.header.stamp) for _, m in depth] == [STAMPS[0], STAMPS[2]]
    assert [log for log, _ in depth] == [STAMPS[0], STAMPS[2]]
    assert {topic for topic, *_ in out} == {
        "/depth_perception/depth", "/depth_perception/depth/camera_info",
        "/depth_perception/depth/colored", "/depth_perception/points"}
    assert "frames with valid depth" in summary.table()


def test_latest_pairing_calibrates_each_image_with_the_camera_info_of_its_size(tmp_path):
    """The 512x384 CameraInfo stamped with the second image describes no image here: the image
    keeps the 256x192 calibration it had."""
    write_input_bag(tmp_path / "in")
    summary = process_bag(tmp_path / "in", tmp_path / "out",
                          {"stereo": True, "max_depth": 5.0, "segmentation.source": []},
                          progress=False)
    assert (summary.frames_valid, summary.frames_failed) == (3, 0), summary.table()
    assert summary.camera_info_max_age_s == pytest.approx(0.2)  # right camera, third frame


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
    assert "frames with valid depth" in proc.stdout
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
    assert summary.frames_processed == 3
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


# -- real camera recordings: ROS 1 .bag, the same converted to rosbag2, a ROS 2 bag -------------
#
# A monocular JPEG camera as recorded on robots: 1 Hz CameraInfo with plumb_bob distortion, logged
# late and stamped up to 1.4 s away from the images; metric depth from the bundled student network
# scaled by a sparse depth image (what an RGB-D sensor or projected LiDAR gives).

IMAGE_STAMPS = [10_000_000_000 + i * 350_000_000 for i in range(5)]  # 10.00 ... 11.40 s
INFO_STAMPS = [(10_000_000_000, 10_500_000_000), (11_000_000_000, 11_500_000_000)]  # (stamp, log)
D_PLUMB_BOB = [-0.05, 0.01, 0.0005, -0.0003, 0.0]
MONO = ["--config", str(Path(__file__).resolve().parents[2] / "config/cpu.yaml"),
        "--set", "segmentation.source=[]", "--sparse-depth", "/lidar/depth"]


def _sparse_mm(scene) -> np.ndarray:
    """16UC1 millimetres at 400 pixels, 0 elsewhere (no measurement)."""
    h, w = scene.depth_m.shape
    sparse = np.zeros((h, w), np.uint16)
    rng = np.random.default_rng(0)
    v, u = rng.integers(0, h, 400), rng.integers(0, w, 400)
    sparse[v, u] = np.nan_to_num(scene.depth_m[v, u] * 1000).astype(np.uint16)
    return sparse


def write_ros1_camera_bag(path: Path, camera_info: bool = True) -> None:
    """A ROS 1 .bag (ROS1_NOETIC definitions: CameraInfo K, D, R, P; Header with seq)."""
    import cv2
    from rosbags.rosbag1 import Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS1_NOETIC)
    T = ts.types
    scene = generate_tabletop(seed=3, width=320, height=240)
    h, w = scene.depth_m.shape

    def header(stamp_ns: int, seq: int) -> object:
        sec, nanosec = divmod(stamp_ns, 1_000_000_000)
        return T["std_msgs/msg/Header"](seq=seq, stamp=T["builtin_interfaces/msg/Time"](
            sec=sec, nanosec=nanosec), frame_id="cam_optical")

    jpeg = cv2.imencode(".jpg", scene.rgb[..., ::-1].copy())[1].ravel()
    sparse = _sparse_mm(scene)
    records = []
    for seq, stamp in enumerate(IMAGE_STAMPS):
        records.append((stamp, "/cam/image_raw/compressed", T["sensor_msgs/msg/CompressedImage"](
            header=header(stamp, seq), format="rgb8; jpeg compressed bgr8", data=jpeg)))
        records.append((stamp, "/lidar/depth", T["sensor_msgs/msg/Image"](
            header=header(stamp, seq), height=h, width=w, encoding="16UC1", is_bigendian=0,
            step=w * 2, data=sparse.view(np.uint8).ravel())))
    for seq, (stamp, log) in enumerate(INFO_STAMPS if camera_info else []):
        records.append((log, "/cam/camera_info", T["sensor_msgs/msg/CameraInfo"](
            header=header(stamp, seq), height=h, width=w, distortion_model="plumb_bob",
            D=np.array(D_PLUMB_BOB), K=scene.K.ravel().copy(), R=np.eye(3).ravel(),
            P=np.hstack([scene.K, np.zeros((3, 1))]).ravel(), binning_x=0, binning_y=0,
            roi=T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                      do_rectify=False))))
    with Writer(path) as bag:
        conns = {}
        for log, topic, msg in sorted(records, key=lambda r: r[0]):
            if topic not in conns:
                conns[topic] = bag.add_connection(topic, msg.__msgtype__, typestore=ts)
            bag.write(conns[topic], log, ts.serialize_ros1(msg, msg.__msgtype__))


def convert_to_rosbag2(src: Path, dst: Path) -> None:
    """What `rosbags-convert --src X.bag --dst DIR` runs: the ROS 1 definitions are kept."""
    from rosbags.convert.converter import convert

    convert([src], dst, "mcap", 9, None, "file", None, None, [], [], [], [])


def write_ros2_camera_bag(path: Path, cameras: tuple[str, ...] = ("/front",),
                          sizes: tuple[tuple[int, int], ...] = ((320, 240),)) -> None:
    """A ROS 2 bag: raw rgb8 images of each camera (cycling through ``sizes``), each size with its
    own CameraInfo (fx scaled with the width) once at the start, and a sparse depth image."""
    t = M.rosbags_types()
    scenes = {size: generate_tabletop(seed=3, width=size[0], height=size[1]) for size in sizes}
    with BagWriter(path, types=t) as bag:
        for size, scene in scenes.items():
            for ns in cameras:
                header = M.make_header(t, IMAGE_STAMPS[0] - 100_000_000, "cam_optical")
                cam = CameraModel(width=size[0], height=size[1], K=scene.K,
                                  D=np.array(D_PLUMB_BOB))
                bag.write(f"{ns}/camera_info", M.model_to_camera_info(t, cam, header),
                          IMAGE_STAMPS[0] - 100_000_000)
        for i, stamp in enumerate(IMAGE_STAMPS):
            scene = scenes[sizes[i % len(sizes)]]
            header = M.make_header(t, stamp, "cam_optical")
            for ns in cameras:
                bag.write(f"{ns}/image_raw", M.numpy_to_image(t, scene.rgb, "rgb8", header), stamp)
            bag.write("/lidar/depth", M.numpy_to_image(t, _sparse_mm(scene), "16UC1", header),
                      stamp)


@pytest.fixture(scope="module")
def camera_bags(tmp_path_factory):
    d = tmp_path_factory.mktemp("camera_bags")
    write_ros1_camera_bag(d / "ros1.bag")
    convert_to_rosbag2(d / "ros1.bag", d / "converted")
    write_ros2_camera_bag(d / "ros2")
    return d


def bag_command(*args: str) -> int:
    from depth_perception.cli import main

    return main(["bag", *map(str, args)])


@pytest.mark.parametrize("name", ["ros1.bag", "converted", "ros2"])
def test_the_camera_is_found_and_every_image_gets_metric_depth(camera_bags, tmp_path, name,
                                                                 capsys):
    assert bag_command(camera_bags / name, tmp_path / "out", *MONO) == 0
    table = capsys.readouterr().out
    assert _row(table, "frames with valid depth") == "5", table
    assert _row(table, "depth source sparse_depth") == "5"
    out = {}
    for topic, _, _, msg in read_bag(tmp_path / "out"):
        out.setdefault(topic, []).append(msg)
    assert [M.stamp_to_ns(m.header.stamp) for m in out["/depth_perception/depth"]] == IMAGE_STAMPS
    info = out["/depth_perception/depth/camera_info"][0]
    assert (info.width, info.height, info.header.frame_id) == (320, 240, "cam_optical")
    np.testing.assert_allclose(info.d, D_PLUMB_BOB)  # the recorded distortion, not zeros
    depth = read_depth_m(out["/depth_perception/depth"][0])
    truth = generate_tabletop(seed=3, width=320, height=240).depth_m
    ok = np.isfinite(depth) & np.isfinite(truth)
    assert ok.mean() > 0.5
    assert np.median(np.abs(depth[ok] - truth[ok]) / truth[ok]) < 0.15  # metric


def _row(table: str, name: str) -> str:
    """The value of summary-table row ``name``."""
    for line in table.splitlines():
        if line.startswith(name + "  "):
            return line.split()[-1]
    raise AssertionError(f"no row {name!r} in\n{table}")


def assert_user_error(code: int, capsys, *fragments: str) -> str:
    """Exit status 2 and one line on stderr naming the problem."""
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_several_cameras_are_listed_with_the_flag_that_chooses(tmp_path, capsys):
    write_ros2_camera_bag(tmp_path / "in", cameras=("/left_cam", "/right_cam"))
    code = bag_command(tmp_path / "in", tmp_path / "out", *MONO)
    assert_user_error(code, capsys, "/left_cam/image_raw", "/right_cam/image_raw", "--camera-ns")
    assert not (tmp_path / "out").exists()
    assert bag_command(tmp_path / "in", tmp_path / "out", *MONO, "--camera-ns", "/right_cam") == 0
    assert {topic for topic, *_ in read_bag(tmp_path / "out")} >= {"/depth_perception/depth"}


def test_the_right_camera_of_a_pair_and_a_compressed_copy_are_not_other_cameras():
    from depth_perception.ros.bag import find_topics

    image, compressed, info = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage",
                               "sensor_msgs/msg/CameraInfo")
    bag = {"/stereo/image_rect": image, "/stereo/image_rect/compressed": compressed,
           "/stereo/camera_info": info, "/stereo/right/image_rect": image,
           "/stereo/right/camera_info": info, "/rgbd/depth/image_raw": image,
           "/rgbd/depth/camera_info": info, "/tf": "tf2_msgs/msg/TFMessage"}
    assert find_topics(bag) == {"image": "/stereo/image_rect", "camera_info": "/stereo/camera_info"}
    assert find_topics(bag, stereo=True) == {
        "image": "/stereo/image_rect", "camera_info": "/stereo/camera_info",
        "right/image": "/stereo/right/image_rect", "right/camera_info": "/stereo/right/camera_info"}
    assert find_topics(bag, image="/rgbd/depth/image_raw")["camera_info"] == \
        "/rgbd/depth/camera_info"  # an explicit choice is taken as given


@pytest.mark.parametrize("damage", ["truncated ros1", "truncated mcap", "corrupt mid-way",
                                    "garbage", "missing"])
def test_an_unreadable_bag_is_one_line_exit_2_and_no_output(camera_bags, tmp_path, capsys, damage):
    if damage == "corrupt mid-way":  # the fourth image's record length is garbage
        bad = tmp_path / "corrupt"
        shutil.copytree(camera_bags / "ros2", bad)
        (mcap,) = bad.glob("*.mcap")
        data = bytearray(mcap.read_bytes())
        log_time = struct.pack("<Q", IMAGE_STAMPS[3])
        # an mcap Message record: opcode 0x05, length u64, channel u16, sequence u32, log time
        at = next(i for i in range(len(data)) if data.startswith(log_time, i) and data[i - 15] == 5)
        data[at - 14:at - 6] = b"\xff" * 8
        mcap.write_bytes(bytes(data))
    elif damage == "truncated ros1":
        data = (camera_bags / "ros1.bag").read_bytes()
        bad = tmp_path / "cut.bag"
        bad.write_bytes(data[: len(data) // 2])
    elif damage == "truncated mcap":
        bad = tmp_path / "cut"
        shutil.copytree(camera_bags / "ros2", bad)
        (mcap,) = bad.glob("*.mcap")
        data = mcap.read_bytes()
        mcap.write_bytes(data[: int(len(data) * 0.6)])
    elif damage == "garbage":
        bad = tmp_path / "garbage.bag"
        bad.write_bytes(b"#ROSBAG V2.0\n" + bytes(range(256)) * 40)
    else:
        bad = tmp_path / "no_such.bag"
    code = bag_command(bad, tmp_path / "out", *MONO)
    line = assert_user_error(code, capsys, bad.name)
    if damage == "corrupt mid-way":
        assert "corrupt or truncated bag after" in line  # found during the replay
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary


def test_no_camera_info_in_the_bag_is_one_line_and_no_output(tmp_path, capsys):
    write_ros1_camera_bag(tmp_path / "in.bag", camera_info=False)
    code = bag_command(tmp_path / "in.bag", tmp_path / "out", *MONO)
    assert_user_error(code, capsys, "no CameraInfo", "/cam/camera_info")
    assert not (tmp_path / "out").exists()


def test_no_frame_with_valid_depth_exits_2_with_the_reason_and_leaves_no_output(
        camera_bags, tmp_path, capsys):
    """The bundled network needs a metric signal: without the sparse depth topic every frame's
    depth is invalid. The summary says so; a rerun with the signal needs no --overwrite."""
    no_signal = [a for a in MONO if a not in ("--sparse-depth", "/lidar/depth")]
    code = bag_command(camera_bags / "ros1.bag", tmp_path / "out", *no_signal)
    captured = capsys.readouterr()
    assert code == 2, captured.err
    line, = captured.err.strip().splitlines()
    assert "no frame produced valid depth" in line and "no output bag written" in line, line
    assert _row(captured.out, "frames with valid depth") == "0"
    assert _row(captured.out, "frames with no valid depth") == "5"
    assert "no valid depth: " in captured.out and "wrote " not in captured.out
    assert not (tmp_path / "out").exists()
    assert bag_command(camera_bags / "ros1.bag", tmp_path / "out", *MONO) == 0


def test_exact_pairing_drops_and_counts_images_without_a_camera_info_of_their_stamp(
        camera_bags, tmp_path, capsys):
    code = bag_command(camera_bags / "ros1.bag", tmp_path / "out", *MONO,
                       "--set", "camera_info.pairing=exact")
    table = capsys.readouterr().out
    assert code == 0
    # the CameraInfo stamped 10.0 s pairs with the first image; 11.0 s matches no image
    assert _row(table, "frames with valid depth") == "1"
    assert _row(table, "images without a CameraInfo of the same stamp") == "4"


def test_latest_pairing_warns_about_camera_info_stamped_far_away(camera_bags, tmp_path, capsys):
    assert bag_command(camera_bags / "ros1.bag", tmp_path / "out", *MONO) == 0
    table = capsys.readouterr().out
    # images at 11.05 s and 11.40 s take the CameraInfo stamped 10.0 s (the next is logged later)
    assert _row(table, "CameraInfo older than camera_info.max_age") == "2"
    assert _row(table, "CameraInfo pairing (latest): max stamp distance s") == "1.40"
    assert bag_command(camera_bags / "ros1.bag", tmp_path / "out2", *MONO,
                       "--set", "camera_info.max_age=2.0") == 0
    assert _row(capsys.readouterr().out, "CameraInfo older than camera_info.max_age") == "0"


def test_two_image_sizes_each_take_their_own_camera_info(tmp_path):
    write_ros2_camera_bag(tmp_path / "in", sizes=((320, 240), (256, 192)))
    summary = process_bag(tmp_path / "in", tmp_path / "out",
                          {"model": "student_tabletop", "metric.mode": "sparse_depth",
                           "segmentation.source": []},
                          {"image": "/front/image_raw", "camera_info": "/front/camera_info",
                           "sparse_depth": "/lidar/depth"}, progress=False)
    assert (summary.frames_valid, summary.frames_failed) == (5, 0), summary.table()
    infos = [msg for topic, _, _, msg in read_bag(tmp_path / "out")
             if topic == "/depth_perception/depth/camera_info"]
    assert [(m.width, m.height) for m in infos] == [(320, 240), (256, 192)] * 2 + [(320, 240)]
    for m in infos:
        K = generate_tabletop(seed=3, width=m.width, height=m.height).K
        np.testing.assert_allclose(np.reshape(m.k, (3, 3)), K)


def test_an_image_of_a_size_no_camera_info_describes_fails_naming_the_sizes(tmp_path):
    scene = generate_tabletop(seed=3, width=320, height=240)
    t = M.rosbags_types()
    with BagWriter(tmp_path / "in", types=t) as bag:
        header = M.make_header(t, IMAGE_STAMPS[0], "cam_optical")
        bag.write("/front/camera_info", M.model_to_camera_info(
            t, CameraModel(width=640, height=480, K=scene.K * [[2], [2], [1]]), header),
            IMAGE_STAMPS[0])
        bag.write("/front/image_raw", M.numpy_to_image(t, scene.rgb, "rgb8", header),
                  IMAGE_STAMPS[0])
    with pytest.raises(NoValidDepth) as err:
        process_bag(tmp_path / "in", tmp_path / "out", {"model": "student_tabletop"},
                    progress=False)
    assert "no CameraInfo for a 320x240 image yet on /front/camera_info (have: 640x480)" in \
        str(err.value)
    assert err.value.summary.frames_failed == 1
    assert not (tmp_path / "out").exists()


def test_the_command_on_a_ros1_bag_as_a_user_runs_it(camera_bags, tmp_path):
    """The console entry: progress and model lines never reach stderr, which has the one error."""
    exe = [sys.executable, "-m", "depth_perception.cli", "bag"]
    no_signal = [a for a in MONO if a not in ("--sparse-depth", "/lidar/depth")]
    failed = subprocess.run(
        [*exe, str(camera_bags / "ros1.bag"), str(tmp_path / "out"), *no_signal],
        capture_output=True, text=True, timeout=120)
    assert failed.returncode == 2
    assert failed.stderr.count("\n") == 1 and "no frame produced valid depth" in failed.stderr
    assert "Traceback" not in failed.stderr and not (tmp_path / "out").exists()
    ok = subprocess.run([*exe, str(camera_bags / "ros1.bag"), str(tmp_path / "out"), *MONO],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert ok.stderr == "" and f"output bag: {tmp_path / 'out'}" in ok.stdout


def test_copied_inputs_of_a_ros1_bag_are_written_in_ros2_definitions(camera_bags, tmp_path):
    assert bag_command(camera_bags / "ros1.bag", tmp_path / "out", *MONO, "--copy-inputs") == 0
    out = {}
    for topic, _, _, msg in read_bag(tmp_path / "out"):
        out.setdefault(topic, []).append(msg)
    assert len(out["/cam/image_raw/compressed"]) == 5 and len(out["/cam/camera_info"]) == 2
    np.testing.assert_allclose(out["/cam/camera_info"][0].d, D_PLUMB_BOB)  # as rosbags-convert
    np.testing.assert_allclose(out["/cam/camera_info"][0].p[0], generate_tabletop(
        seed=3, width=320, height=240).K[0, 0])
    assert len(out["/depth_perception/depth"]) == 5


def test_a_bad_parameter_or_an_existing_output_is_one_line_before_any_work(camera_bags, tmp_path,
                                                                          capsys):
    code = bag_command(camera_bags / "ros2", tmp_path / "out", *MONO, "--set", "max_depth=far")
    assert_user_error(code, capsys, "max_depth must be a float")
    (tmp_path / "out").mkdir()
    code = bag_command(camera_bags / "ros2", tmp_path / "out", *MONO)
    assert_user_error(code, capsys, "already exists", "--overwrite")
    assert bag_command(camera_bags / "ros2", tmp_path / "out", *MONO, "--overwrite") == 0
    assert (tmp_path / "out" / "metadata.yaml").is_file()


def write_motion_bag(path: Path) -> None:
    """A driving robot (test/motion_scene.py): raw images of a distorted camera at 10 Hz, CameraInfo,
    and nav_msgs/Odometry at 50 Hz on its own clock, logged as it would be recorded."""
    from scipy.spatial.transform import Rotation

    import motion_scene as ms

    drive = ms.sequence(12, "drive")
    t = M.rosbags_types()
    G = t.typestore.types
    base = 10_000_000_000
    records = []
    for image, stamp in zip(drive.images, drive.stamps_ns):
        header = M.make_header(t, base + stamp, "cam_optical")
        records += [(base + stamp, "/cam/image_raw", M.numpy_to_image(t, image, "rgb8", header)),
                    (base + stamp, "/cam/camera_info", M.model_to_camera_info(t, ms.CAMERA, header))]
    for stamp, T in drive.odometry:
        q = Rotation.from_matrix(T[:3, :3]).as_quat()
        pose = G["geometry_msgs/msg/Pose"](
            position=G["geometry_msgs/msg/Point"](*(float(v) for v in T[:3, 3])),
            orientation=G["geometry_msgs/msg/Quaternion"](*(float(v) for v in q)))
        twist = G["geometry_msgs/msg/Twist"](linear=G["geometry_msgs/msg/Vector3"](0.0, 0.0, 0.0),
                                             angular=G["geometry_msgs/msg/Vector3"](0.0, 0.0, 0.0))
        odom = G["nav_msgs/msg/Odometry"](
            header=M.make_header(t, base + stamp, "odom"), child_frame_id="base_link",
            pose=G["geometry_msgs/msg/PoseWithCovariance"](pose=pose, covariance=np.zeros(36)),
            twist=G["geometry_msgs/msg/TwistWithCovariance"](twist=twist, covariance=np.zeros(36)))
        records.append((base + stamp + 3_000_000, "/odom", odom))  # logged a little late
    with BagWriter(path, types=t) as bag:
        for log_ns, topic, msg in sorted(records, key=lambda r: r[0]):
            bag.write(topic, msg, log_ns)


def test_odometry_gives_the_motion_scale_with_per_frame_source(tmp_path, capsys):
    import motion_scene as ms

    write_motion_bag(tmp_path / "drive")
    extrinsic = "[" + ", ".join(f"{v:g}" for v in ms.T_BASE_CAMERA.reshape(-1)) + "]"
    code = bag_command(tmp_path / "drive", tmp_path / "out", "--odometry", "/odom", "--per-frame",
                       "--set", "model=student_tabletop", "--set", "backend=torch",
                       "--set", "metric.mode=motion", "--set", f"metric.motion.T_base_camera={extrinsic}",
                       "--set", "max_depth=10.0", "--set", "segmentation.source=[]")
    out = capsys.readouterr().out
    assert code == 0, out
    assert int(_row(out, "depth source motion")) >= 3, out  # once the robot has moved a baseline
    per_frame = [line.split() for line in out.split("stamp_s  source  scale\n")[1].splitlines()
                 if line and line[0].isdigit()]
    assert per_frame and all(source == "motion" for _, source, _ in per_frame)
    assert all(float(scale) > 0 for *_, scale in per_frame)
