"""Launch depth_perception_node (and optionally RViz).

    ros2 launch depth_perception depth_perception.launch.py stereo:=true camera:=/camera/left \
        right_camera:=/camera/right
    ros2 launch depth_perception depth_perception.launch.py \
        config:=$(ros2 pkg prefix depth_perception)/share/depth_perception/config/cpu.yaml
    ros2 launch depth_perception depth_perception.launch.py model:=depth_anything_v2_small \
        weights:=/models/depth_anything_v2_vits.pth input_size:=364 use_rviz:=true

Arguments left empty keep the value of the config file. Every input is remapped from an argument,
so a launch never needs `--ros-args -r`. RViz is optional: without rviz2 installed, use_rviz:=true
logs a warning and the node runs alone. Its displays follow `namespace`, `camera` and `image`.
"""

import os
import shutil
import tempfile

from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, LogInfo, OpaqueFunction, Shutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = "depth_perception"
NODE_NAME = "depth_perception"

#: launch argument → node parameter, passed only when the argument is not empty.
OVERRIDES = {
    "model": "model",
    "weights": "weights",
    "backend": "backend",
    "precision": "precision",
    "input_size": "input_size",
    "metric_mode": "metric.mode",
    "segmentation": "segmentation.source",
    "stereo": "stereo",
}

#: node input → launch argument that names the topic it is remapped to.
INPUTS = {
    "sparse_depth": "sparse_depth",
    "lidar_points": "lidar_points",
    "odometry": "odometry",
    "masks": "masks",
    "detections": "detections",
    "prompt": "prompt",
}


def _parameter(param: str, text: str):
    """A launch argument's text as the node parameter's type."""
    if param == "segmentation.source":  # "topic,geometric" -> ["topic", "geometric"]
        return [x.strip() for x in text.split(",") if x.strip()]
    if param == "stereo":
        if text.lower() not in ("true", "false"):
            raise ValueError(f"stereo:={text}: expected true or false")
        return text.lower() == "true"
    if param == "input_size":
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"input_size:={text}: expected an integer (0 = the model's default)")
    return text


#: the environment variables Fast DDS reads its XML profile from (2.x: Humble, Jazzy; 3.x: Kilted)
DDS_PROFILE_VARIABLES = ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE")


def _dds_environment(choice: str, share: str, environ: dict[str, str]) -> dict[str, str]:
    """The environment variables the node gets for its Fast DDS profile. ``auto``: the packaged
    large-data profile (config/fastdds_large_data.xml), unless the environment names a profile
    already; ``none``: nothing; anything else: that file."""
    if choice == "none" or (choice == "auto" and any(environ.get(v) for v in DDS_PROFILE_VARIABLES)):
        return {}
    path = (os.path.join(share, "config", "fastdds_large_data.xml") if choice == "auto"
            else os.path.abspath(os.path.expanduser(choice)))
    if not os.path.isfile(path):
        raise FileNotFoundError(f"dds_profile:={choice}: no such file {path}")
    return {variable: path for variable in DDS_PROFILE_VARIABLES}


def _absolute(namespace: str, name: str) -> str:
    return "/" + "/".join(part for part in (namespace.strip("/"), name.strip("/")) if part)


def _rviz_config(share: str, namespace: str, image_topic: str) -> str:
    """The packaged RViz config with its topics moved to this launch's namespace and camera,
    written to a temporary file (RViz reads topics from the file only)."""
    with open(os.path.join(share, "config", "depth_perception.rviz"), encoding="utf-8") as f:
        text = f.read()
    text = text.replace("Value: /camera/image\n", f"Value: {image_topic}\n")
    outputs = _absolute(namespace, "").rstrip("/") + "/"  # "/ns/", or "/" without a namespace
    text = text.replace(f"Value: /{NODE_NAME}/", f"Value: {outputs}")
    fd, path = tempfile.mkstemp(prefix="depth_perception_", suffix=".rviz")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def _launch(context, *args, **kwargs):
    share = get_package_share_directory(PACKAGE)
    value = lambda name: LaunchConfiguration(name).perform(context)  # noqa: E731
    camera = value("camera").rstrip("/")
    right = value("right_camera").rstrip("/")
    image = value("image")
    namespace = value("namespace")
    overrides = {param: _parameter(param, value(arg))
                 for arg, param in OVERRIDES.items() if value(arg)}
    config = value("config") or os.path.join(share, "config", "default.yaml")
    remappings = [
        ("image", f"{camera}/{image}"),
        ("image/compressed", f"{camera}/{image}/compressed"),
        ("camera_info", f"{camera}/camera_info"),
        ("right/image", f"{right}/{image}"),
        ("right/image/compressed", f"{right}/{image}/compressed"),
        ("right/camera_info", f"{right}/camera_info"),
    ] + [(name, value(arg)) for name, arg in INPUTS.items() if value(arg)]
    actions = [
        Node(
            package=PACKAGE,
            executable="depth_perception_node",
            name=NODE_NAME,
            namespace=namespace,
            parameters=[config, overrides],
            remappings=remappings,
            additional_env=_dds_environment(value("dds_profile"), share, dict(os.environ)),
            output="screen",
            emulate_tty=True,
            # the node's own shutdown (bad parameters, a crash) ends the launch: no orphan RViz
            on_exit=Shutdown(reason="depth_perception_node exited"),
        )
    ]
    if value("use_rviz").lower() == "true":
        try:
            get_package_share_directory("rviz2")
            found = True
        except PackageNotFoundError:
            found = shutil.which("rviz2") is not None
        if not found:
            actions.append(LogInfo(msg="WARNING: use_rviz:=true but rviz2 is not installed "
                                       "(apt install ros-$ROS_DISTRO-rviz2); running without RViz"))
        else:
            rviz = _rviz_config(share, namespace, f"{camera}/{image}")
            actions.append(Node(package="rviz2", executable="rviz2", name="rviz2",
                                namespace=namespace, arguments=["-d", rviz], output="screen"))
    return actions


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory(PACKAGE)
    args = [
        ("namespace", NODE_NAME, "namespace of the node and its outputs"),
        ("camera", "/camera", "namespace of the colour camera (image, camera_info)"),
        ("image", "image_rect", "image topic name inside the camera namespace"),
        ("right_camera", "/camera/right", "namespace of the right camera of a rectified pair"),
        ("sparse_depth", "/camera/aligned_depth_to_color/image_raw",
         "registered depth image for metric.mode sparse_depth"),
        ("lidar_points", "", "PointCloud2 topic for metric.mode pointcloud (empty: not remapped)"),
        ("odometry", "", "nav_msgs/Odometry topic for metric.mode motion (empty: not remapped)"),
        ("masks", "/segmentation/masks", "instance-id mask image (segmentation.source topic)"),
        ("detections", "", "vision_msgs/Detection2DArray prompts for segmentation.source sam "
         "(empty: not remapped)"),
        ("prompt", "", "std_msgs/String text prompt for segmentation.source text "
         "(empty: not remapped)"),
        ("config", os.path.join(share, "config", "default.yaml"), "parameter file"),
        ("model", "", "depth model name (depth-perception models), e.g. student_tabletop (bundled) "
         "or depth_anything_v2_small; empty: from the config"),
        ("weights", "", "local weights file or folder for the model"),
        ("backend", "", "auto, torch, onnxruntime or tensorrt"),
        ("precision", "", "fp32, fp16, bf16 or int8"),
        ("input_size", "", "network input size (a multiple of the model's patch; 0 = the "
         "model's default)"),
        ("metric_mode", "", "auto, sparse_depth, pointcloud, stereo, plane, motion, model or fixed"),
        ("segmentation", "", "comma-separated mask sources: topic, sam, text, geometric"),
        ("stereo", "", "true: subscribe to the right camera, depth from SGBM"),
        ("dds_profile", "auto", "Fast DDS XML profile of the node: auto = config/"
         "fastdds_large_data.xml (shared-memory segment for camera-sized messages) unless "
         "FASTRTPS_DEFAULT_PROFILES_FILE is set; none = the environment's; or a file"),
        ("use_rviz", "false", "start RViz with config/depth_perception.rviz (skipped with a "
         "warning when rviz2 is not installed)"),
    ]
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=text)
         for name, default, text in args]
        + [OpaqueFunction(function=_launch)]
    )
