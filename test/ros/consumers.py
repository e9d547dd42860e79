"""Outputs read back the way ROS consumers read them: images with the real ``cv_bridge``, clouds
with the real ``sensor_msgs_py.point_cloud2``. A message from a rosbags typestore (bag output)
goes through its CDR bytes into the rclpy class first, as it would when the bag is played."""

from __future__ import annotations

from typing import Any

import numpy as np

from ros_checks import TOOLS_HINT, require_module


def to_rclpy(msg: Any, cls: Any) -> Any:
    """``msg`` as an instance of the rclpy message class ``cls`` (rosbags messages via CDR)."""
    if isinstance(msg, cls):
        return msg
    from rclpy.serialization import deserialize_message

    from depth_perception.ros.messages import rosbags_types

    typestore = rosbags_types().typestore
    return deserialize_message(bytes(typestore.serialize_cdr(msg, msg.__msgtype__)), cls)


def read_image(msg: Any, desired_encoding: str = "passthrough") -> np.ndarray:
    """``cv_bridge.CvBridge().imgmsg_to_cv2``."""
    require_module("cv_bridge", TOOLS_HINT)
    from cv_bridge import CvBridge
    from sensor_msgs.msg import Image

    return CvBridge().imgmsg_to_cv2(to_rclpy(msg, Image), desired_encoding)


def read_depth_m(msg: Any) -> np.ndarray:
    """A REP 118 depth image in metres, NaN invalid (32FC1 as is; 16UC1 millimetres, 0 invalid)."""
    image = read_image(msg)
    if msg.encoding == "16UC1":
        return np.where(image == 0, np.nan, image / 1000.0).astype(np.float32)
    assert msg.encoding == "32FC1", msg.encoding
    return image


def read_cloud(msg: Any) -> np.ndarray:
    """``sensor_msgs_py.point_cloud2.read_points``, reshaped height × width (row-major, as the
    message lays points out; upstream's ``reshape_organized_cloud`` swaps the two)."""
    require_module("sensor_msgs_py.point_cloud2", TOOLS_HINT)
    from sensor_msgs.msg import PointCloud2
    from sensor_msgs_py.point_cloud2 import read_points

    msg = to_rclpy(msg, PointCloud2)
    return read_points(msg).reshape(msg.height, msg.width)


def read_xyz(msg: Any) -> np.ndarray:
    """height × width × 3 float32 from the x, y, z fields."""
    pts = read_cloud(msg)
    return np.stack([pts["x"], pts["y"], pts["z"]], axis=-1)
