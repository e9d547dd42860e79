"""Regions → GraspableRegionArray / PointCloud2 / 16UC1 labels / MarkerArray, checked by CDR round trips.

The rosbags typestore needs no ROS install and no rclpy init. The rclpy part runs where
depth_perception_msgs is importable:

    scripts/build_msgs.sh && scripts/netns.sh .venv/bin/python -m pytest test/ros/test_region_messages.py -q
"""

from __future__ import annotations

import numpy as np
import pytest

from depth_perception.camera import CameraModel
from depth_perception.regions import Verdict, extract_regions, label_image, scene_cloud
from depth_perception.ros import clouds as C
from depth_perception.ros import messages as M
from depth_perception.ros import region_messages as RM
from depth_perception.scene import generate_tabletop

ARRAY = "depth_perception_msgs/msg/GraspableRegionArray"
MARKERS = "visualization_msgs/msg/MarkerArray"


@pytest.fixture(scope="module")
def scene_regions():
    scene = generate_tabletop(seed=3, width=320, height=240)
    h, w = scene.depth_m.shape
    pts = CameraModel(width=w, height=h, K=scene.K).backproject(scene.depth_m)
    names = {i + 1: kind for i, kind in enumerate(scene.labels)}
    regions = extract_regions(pts, scene.instance_mask, rgb=scene.rgb, names=names,
                              support_plane=scene.table_plane_camera)
    # one region without any depth: its descriptors are NaN and it must still serialise
    labels = scene.instance_mask.copy()
    labels[:4, :4] = 99
    pts_nan = pts.copy()
    pts_nan[:4, :4] = np.nan
    empty = [r for r in extract_regions(pts_nan, labels) if r.id == 99]
    # one degenerate region: a single pixel row of the table (a line, never graspable)
    labels = scene.instance_mask.copy()
    labels[h - 3, 40:120] = 98
    line = [r for r in extract_regions(pts, labels, rgb=scene.rgb) if r.id == 98]
    assert line[0].verdict == Verdict.DEGENERATE
    return scene, pts, regions + empty + line


@pytest.fixture(scope="module")
def rosbags():
    types = M.rosbags_types()
    return types, RM.register_region_types(types.typestore), RM.rosbags_marker_types(types.typestore)


def quaternion_to_rotation(q) -> np.ndarray:
    x, y, z, w = q.x, q.y, q.z, q.w
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def check_array(msg, regions, stamp_ns: int, frame_id: str) -> None:
    assert M.stamp_to_ns(msg.header.stamp) == stamp_ns and msg.header.frame_id == frame_id
    assert [r.id for r in msg.regions] == [r.id for r in regions]
    for m, r in zip(msg.regions, regions):
        assert m.header.frame_id == frame_id and m.label == r.label and m.reason == r.reason
        assert (m.verdict, m.graspable, m.point_count) == (int(r.verdict), r.graspable, r.point_count)
        assert (m.roi.x_offset, m.roi.y_offset, m.roi.width, m.roi.height) == r.roi
        assert m.depth_source == "stereo" and np.isclose(m.depth_confidence, 0.75)
        xyz = C.cloud_to_xyz(m.cloud).reshape(-1, 3)
        assert np.array_equal(xyz, r.points)
        if r.point_count == 0:
            assert r.verdict == Verdict.TOO_FEW_POINTS and np.isnan(m.centroid.x)
            assert (m.box_pose.orientation.w, m.box_pose.orientation.x) == (1.0, 0.0)
            continue
        assert "rgb" in [f.name for f in m.cloud.fields]
        assert np.allclose([m.centroid.x, m.centroid.y, m.centroid.z], r.centroid)
        assert np.allclose([m.box_size.x, m.box_size.y, m.box_size.z], r.box_size)
        assert np.allclose([m.approach.x, m.approach.y, m.approach.z], r.approach)
        assert np.isclose(m.grasp_width, r.grasp_width, rtol=1e-6)
        assert np.allclose(quaternion_to_rotation(m.box_pose.orientation), r.box_rotation, atol=1e-9)


def test_region_array_cdr_round_trip(scene_regions, rosbags):
    _, _, regions = scene_regions
    types, region_types, _ = rosbags
    header = M.make_header(types, 1_700_000_000_123_456_789, "camera_color_optical_frame")
    msg = RM.regions_to_msg(region_types, types, regions, header, "stereo", 0.75)
    store = types.typestore
    raw = store.serialize_cdr(msg, ARRAY)
    decoded = store.deserialize_cdr(raw, ARRAY)
    check_array(decoded, regions, 1_700_000_000_123_456_789, "camera_color_optical_frame")
    assert store.serialize_cdr(decoded, ARRAY).tobytes() == raw.tobytes()
    # registering again (a second bag, a second node) is harmless
    assert RM.register_region_types(store).GraspableRegion is region_types.GraspableRegion


def test_markers_cdr_round_trip(scene_regions, rosbags):
    _, _, regions = scene_regions
    types, _, marker_types = rosbags
    header = M.make_header(types, 5, "cam")
    msg = RM.regions_to_markers(marker_types, regions, header, lifetime_s=0.5)
    decoded = types.typestore.deserialize_cdr(types.typestore.serialize_cdr(msg, MARKERS), MARKERS)
    Marker = marker_types.Marker
    first, rest = decoded.markers[0], decoded.markers[1:]
    assert first.action == Marker.DELETEALL
    drawn = [r for r in regions if r.point_count]  # the depth-less region gets no markers
    assert len(rest) == 3 * len(drawn)
    by_kind = {t: [m for m in rest if m.type == t] for t in (Marker.CUBE, Marker.TEXT_VIEW_FACING, Marker.ARROW)}
    assert all(len(v) == len(drawn) for v in by_kind.values())
    assert any(r.verdict == Verdict.DEGENERATE for r in drawn)
    for cube, text, arrow, r in zip(*by_kind.values(), drawn):
        assert cube.id == text.id == arrow.id == r.id and cube.ns == "regions/boxes"
        assert np.allclose([cube.scale.x, cube.scale.y, cube.scale.z], np.maximum(r.box_size, 1e-3))
        assert np.allclose(quaternion_to_rotation(cube.pose.orientation), r.box_rotation, atol=1e-9)
        assert (cube.color.r, cube.color.g, cube.color.b) == pytest.approx(RM.VERDICT_COLOURS[r.verdict])
        assert text.text.startswith(f"{r.label or 'object'} #{r.id}\n{r.verdict.name.lower().replace('_', ' ')}")
        assert f"{r.grasp_width * 100:.1f} cm" in text.text
        start, end = (np.array([p.x, p.y, p.z]) for p in arrow.points)
        assert np.allclose(end, r.surface_centroid) and np.allclose((end - start) / 0.1, r.approach)
        assert (cube.lifetime.sec, cube.lifetime.nanosec) == (0, 500_000_000)


def test_region_cloud_label_image_and_scene_cloud(scene_regions, rosbags):
    scene, pts, regions = scene_regions
    types, _, _ = rosbags
    header = M.make_header(types, 7, "cam")
    cloud = C.cloud_to_array(RM.regions_cloud_msg(types, regions, header))
    assert cloud.shape == (1, sum(r.point_count for r in regions))
    assert set(np.unique(cloud["label"])) == {r.id for r in regions if r.point_count}
    image = RM.label_image_msg(types, regions, scene.depth_m.shape, header)
    assert image.encoding == "16UC1"
    assert np.array_equal(M.image_to_numpy(image), label_image(regions, scene.depth_m.shape))
    cloud = scene_cloud(pts, scene.rgb, scene.instance_mask, stride=2)
    organised = C.points_to_cloud(types, cloud.xyz, header, rgb=cloud.rgb, label=cloud.label)
    arr = C.cloud_to_array(organised)
    assert arr.shape == (120, 160) and (organised.height, organised.width) == (120, 160)
    assert np.array_equal(arr["label"], scene.instance_mask[::2, ::2])
    assert np.array_equal(arr["z"], pts[::2, ::2, 2], equal_nan=True)


def _per_field_cloud_bytes(xyz, rgb=None, label=None) -> bytes:
    """The straightforward layout: a zeroed structured array filled field by field."""
    out = np.zeros(xyz.shape[:-1], dtype=C.cloud_dtype(rgb is not None, label is not None))
    out["x"], out["y"], out["z"] = xyz[..., 0], xyz[..., 1], xyz[..., 2]
    if rgb is not None:
        c = rgb.astype(np.uint32)
        out["rgb"] = ((c[..., 0] << 16) | (c[..., 1] << 8) | c[..., 2]).view(np.float32)
    if label is not None:
        out["label"] = label
    return out.tobytes()


@pytest.mark.parametrize("fields", [(), ("rgb",), ("label",), ("rgb", "label")])
def test_cloud_bytes_match_a_per_field_build(scene_regions, rosbags, fields):
    """The interleaving fast path writes exactly the bytes of the per-field layout: NaN points,
    packed 0x00RRGGBB colours, uint16 labels with zero padding; organised and unorganised."""
    scene, pts, regions = scene_regions
    types, _, _ = rosbags
    header = M.make_header(types, 7, "cam")
    rgb = scene.rgb if "rgb" in fields else None
    label = scene.instance_mask.astype(np.uint16) if "label" in fields else None
    holes = pts.copy()
    holes[5:9, 7:40] = np.nan  # no depth there
    for xyz, dense in ((holes, False), (pts, True)):
        msg = C.points_to_cloud(types, xyz, header, rgb=rgb, label=label)
        assert bytes(msg.data) == _per_field_cloud_bytes(xyz, rgb, label)
        assert msg.is_dense is dense
    r = max(regions, key=lambda r: r.point_count)  # an unorganised cloud (Nx3)
    colours = r.colors if rgb is not None else None
    ids = np.full(r.point_count, r.id) if label is not None else None  # int64 ids: cast to uint16
    small = C.points_to_cloud(types, r.points, header, rgb=colours, label=ids)
    assert bytes(small.data) == _per_field_cloud_bytes(r.points, colours, ids)
    assert small.is_dense is True
    # the message owns its bytes: changing the input afterwards changes nothing
    before = bytes(small.data)
    points = r.points.copy()
    again = C.points_to_cloud(types, points, header)
    points[:] = 0
    assert bytes(again.data) == _per_field_cloud_bytes(r.points) and bytes(small.data) == before


def test_rotation_to_quaternion_all_branches():
    rng = np.random.default_rng(0)
    for _ in range(200):
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        R = q * np.sign(np.linalg.det(q))
        x, y, z, w = RM.rotation_to_quaternion(R)
        assert w >= 0 and np.isclose(x * x + y * y + z * z + w * w, 1.0)
        back = quaternion_to_rotation(type("Q", (), dict(x=x, y=y, z=z, w=w)))
        assert np.allclose(back, R, atol=1e-9)
    for R in (np.diag([1.0, -1, -1]), np.diag([-1.0, 1, -1]), np.diag([-1.0, -1, 1])):  # 180° turns
        assert np.allclose(quaternion_to_rotation(type("Q", (), dict(zip("xyzw", RM.rotation_to_quaternion(R))))), R)
    assert RM.rotation_to_quaternion(np.full((3, 3), np.nan)) == (0.0, 0.0, 0.0, 1.0)


def test_missing_definitions_are_named(tmp_path):
    with pytest.raises(M.MessageError, match="GraspableRegion.msg"):
        RM.find_msg_dir(tmp_path)


def test_rclpy_classes_serialise_to_what_rosbags_reads(scene_regions, rosbags):
    """rclpy messages (when depth_perception_msgs is built and sourced) decode with rosbags."""
    pytest.importorskip("rclpy", reason="rclpy not installed (pip install -r requirements/ros.txt)")
    region_types = RM.rclpy_region_types()
    if region_types is None:
        pytest.skip("depth_perception_msgs not importable: scripts/build_msgs.sh, source scripts/ros_env.sh")
    from rclpy.serialization import deserialize_message, serialize_message

    _, _, regions = scene_regions
    types, _, _ = rosbags
    rclpy_types = M.rclpy_types()
    header = M.make_header(rclpy_types, 42, "cam")
    msg = RM.regions_to_msg(region_types, rclpy_types, regions, header, "stereo", 0.75)
    raw = serialize_message(msg)
    check_array(types.typestore.deserialize_cdr(raw, ARRAY), regions, 42, "cam")
    # not compared with ==: NaN descriptors of the depth-less region never compare equal
    check_array(deserialize_message(raw, region_types.GraspableRegionArray), regions, 42, "cam")

    marker_types = RM.rclpy_marker_types()
    markers = RM.regions_to_markers(marker_types, regions, header)
    decoded = types.typestore.deserialize_cdr(serialize_message(markers), MARKERS)
    assert decoded.markers[0].action == marker_types.Marker.DELETEALL
    assert [m.text for m in decoded.markers] == [m.text for m in markers.markers]
