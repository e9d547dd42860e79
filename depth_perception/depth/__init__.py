"""Monocular depth engine: model zoo (with the project's own compact student), weights,
pre/post-processing, ONNX export and the torch, ONNX Runtime and TensorRT backends.

Nothing heavy is imported here (torch, transformers, onnxruntime, tensorrt load on first use):

    from depth_perception.depth.estimator import DepthEstimator
    from depth_perception.depth.zoo import get_spec, list_specs
"""
