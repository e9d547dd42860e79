"""depth_perception: metric depth images and point clouds of graspable objects from a camera.

The core (camera, stereo, pipeline, scene generator) has no ROS dependency; `depth_perception.ros`
holds the thin rclpy layer and message conversion.
"""

__version__ = "0.1.0"
