"""Every tiny twin of the model zoo through the real node (rclpy, DDS in the loopback-only
namespace): image + CameraInfo (+ the registered depth its metric mode takes) in, metric depth with
the image's stamp out, equal to the known metric depth of :mod:`zoo_cases`.

``model`` is read-only, so each model gets its own node in this process (a tiny model builds in
about a second). The test builds the same seed-0 network first, for the prediction the known depth
is derived from: a node that built other weights, lost the focal length of its CameraInfo or
fitted the wrong scale publishes other depths.
"""

from __future__ import annotations

import pytest

from consumers import read_depth_m
from depth_perception.depth.estimator import DepthEstimator
from node_harness import FRAME_ID
from node_harness import NodeHarness as Harness
from zoo_cases import CAMERA, PARAMETERS, RGB, TINY, assert_metric, zoo_case


@pytest.mark.parametrize("name", TINY)
def test_every_zoo_model_publishes_metric_depth_through_the_node(rclpy_context, name: str) -> None:
    case = zoo_case(DepthEstimator(name, random_init=True, backend="torch", log=None))
    # an empty list is not a typed ROS parameter: the masks topic, on which nothing arrives
    h = Harness(rclpy_context, {**PARAMETERS, "segmentation.source": ["topic"], "model": name,
                                **case.parameters}, tester_name=f"zoo_tester_{name}")
    try:
        t, M = h.types, h.M
        sparse_pub = h.tester.create_publisher(t.Image, "sparse_depth", 10)
        assert h.node._ready.wait(timeout=60.0), h.node.last_error
        assert h.node._models.estimator.spec.name == name
        # the node subscribes to the registered depth only in the modes that use it
        assert h.spin_until(lambda: (case.sparse_m is None or sparse_pub.get_subscription_count() > 0)
                            and h.pubs["image"].get_subscription_count() > 0, timeout=5.0)
        stamp = 5_000_000_000
        header = M.make_header(t, stamp, FRAME_ID)
        h.pubs["image"].publish(M.numpy_to_image(t, RGB, "rgb8", header))
        h.pubs["camera_info"].publish(M.model_to_camera_info(t, CAMERA, header))
        if case.sparse_m is not None:
            sparse_pub.publish(M.numpy_to_image(t, case.sparse_m, "32FC1", header))
        assert h.spin_until(lambda: h.received["depth"], timeout=30.0), h.node.last_error
        depth_msg = h.received["depth"][0]
        assert M.stamp_to_ns(depth_msg.header.stamp) == stamp and depth_msg.header.frame_id == FRAME_ID
        assert_metric(read_depth_m(depth_msg), case, name)
        assert h.node.frames_failed == 0, h.node.last_error
    finally:
        h.close()
