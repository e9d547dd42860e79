"""ROS 2 layer: the only place that imports rclpy (node.py) and message conversion (messages.py)."""
