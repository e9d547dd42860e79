"""Launch depth_perception_node.

    ros2 launch depth_perception depth_perception.launch.py camera:=/camera/color \
        config:=$(ros2 pkg prefix depth_perception)/share/depth_perception/config/stereo.yaml
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory("depth_perception")
    camera = LaunchConfiguration("camera")
    right_camera = LaunchConfiguration("right_camera")
    return LaunchDescription([
        DeclareLaunchArgument("namespace", default_value="depth_perception",
                              description="namespace of the node and its outputs"),
        DeclareLaunchArgument("camera", default_value="/camera",
                              description="namespace of the colour camera (image, camera_info)"),
        DeclareLaunchArgument("right_camera", default_value="/camera/right",
                              description="namespace of the right camera of a rectified pair"),
        DeclareLaunchArgument("image", default_value="image_rect",
                              description="image topic name inside the camera namespace"),
        DeclareLaunchArgument("config", default_value=os.path.join(share, "config", "default.yaml"),
                              description="parameter file"),
        Node(
            package="depth_perception",
            executable="depth_perception_node",
            name="depth_perception",
            namespace=LaunchConfiguration("namespace"),
            parameters=[LaunchConfiguration("config")],
            remappings=[
                ("image", PathJoinSubstitution([camera, LaunchConfiguration("image")])),
                ("camera_info", PathJoinSubstitution([camera, "camera_info"])),
                ("right/image", PathJoinSubstitution([right_camera, LaunchConfiguration("image")])),
                ("right/camera_info", PathJoinSubstitution([right_camera, "camera_info"])),
            ],
            output="screen",
        ),
    ])
