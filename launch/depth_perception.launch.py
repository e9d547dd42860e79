"""Launch depth_perception_node (and optionally RViz).

    ros2 launch depth_perception depth_perception.launch.py camera:=/camera/color \
        config:=$(ros2 pkg prefix depth_perception)/share/depth_perception/config/cpu.yaml \
        model:=depth_anything_v2_small weights:=/models/depth_anything_v2_vits.pth use_rviz:=true

Arguments left empty keep the value of the config file.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

#: launch argument → node parameter, passed only when the argument is not empty.
OVERRIDES = {
    "model": "model",
    "weights": "weights",
    "backend": "backend",
    "precision": "precision",
    "metric_mode": "metric.mode",
    "segmentation": "segmentation.source",
}


def _node(context, *args, **kwargs):
    share = get_package_share_directory("depth_perception")
    value = lambda name: LaunchConfiguration(name).perform(context)  # noqa: E731
    camera = value("camera").rstrip("/")
    right = value("right_camera").rstrip("/")
    image = value("image")
    overrides = {param: value(arg) for arg, param in OVERRIDES.items() if value(arg)}
    if "segmentation.source" in overrides:  # "topic,geometric" -> ["topic", "geometric"]
        overrides["segmentation.source"] = [
            x.strip() for x in overrides["segmentation.source"].split(",") if x.strip()]
    if value("stereo"):
        overrides["stereo"] = value("stereo").lower() == "true"
    config = value("config") or os.path.join(share, "config", "default.yaml")
    return [
        Node(
            package="depth_perception",
            executable="depth_perception_node",
            name="depth_perception",
            namespace=value("namespace"),
            parameters=[config, overrides],
            remappings=[
                ("image", f"{camera}/{image}"),
                ("image/compressed", f"{camera}/{image}/compressed"),
                ("camera_info", f"{camera}/camera_info"),
                ("right/image", f"{right}/{image}"),
                ("right/camera_info", f"{right}/camera_info"),
                ("sparse_depth", value("sparse_depth")),
                ("masks", value("masks")),
            ],
            output="screen",
        )
    ]


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory("depth_perception")
    args = [
        ("namespace", "depth_perception", "namespace of the node and its outputs"),
        ("camera", "/camera", "namespace of the colour camera (image, camera_info)"),
        ("image", "image_rect", "image topic name inside the camera namespace"),
        ("right_camera", "/camera/right", "namespace of the right camera of a rectified pair"),
        ("sparse_depth", "/camera/aligned_depth_to_color/image_raw",
         "registered depth image for metric.mode sparse_depth"),
        ("masks", "/segmentation/masks", "instance-id mask image (segmentation.source topic)"),
        ("config", os.path.join(share, "config", "default.yaml"), "parameter file"),
        ("model", "", "depth model name (depth-perception models); empty: from the config"),
        ("weights", "", "local weights file or folder for the model"),
        ("backend", "", "auto, torch, onnxruntime or tensorrt"),
        ("precision", "", "fp32, fp16, bf16 or int8"),
        ("metric_mode", "", "sparse_depth, pointcloud, stereo, plane, model or fixed"),
        ("segmentation", "", "comma-separated mask sources: topic, sam, text, geometric"),
        ("stereo", "", "true: subscribe to the right camera"),
        ("use_rviz", "false", "start RViz with config/depth_perception.rviz"),
    ]
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=text)
         for name, default, text in args]
        + [
            OpaqueFunction(function=_node),
            Node(
                package="rviz2",
                executable="rviz2",
                arguments=["-d", os.path.join(share, "config", "depth_perception.rviz")],
                condition=IfCondition(LaunchConfiguration("use_rviz")),
                output="screen",
            ),
        ]
    )
