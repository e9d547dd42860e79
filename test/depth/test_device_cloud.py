"""Depth -> cloud with torch equals the pipeline's numpy back-projection (CameraModel.backproject),
on CPU tensors here; on a GPU (marked ``gpu``) the same on CUDA tensors, through one copy back."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from depth_perception.camera import CameraModel  # noqa: E402
from depth_perception.depth.device_cloud import (  # noqa: E402
    backproject,
    depth_and_cloud_to_host,
    pinhole_rays,
)

H, W = 48, 64


def camera(skew: float = 0.0, **kw) -> CameraModel:
    K = np.array([[70.5, skew, 30.25], [0.0, 72.0, 25.5], [0.0, 0.0, 1.0]])
    return CameraModel(width=W, height=H, K=K, **kw)


def depth_with_holes() -> np.ndarray:
    depth = np.random.default_rng(0).uniform(0.3, 4.0, (H, W)).astype(np.float32)
    depth[5, 7] = np.nan
    depth[20:23, 40:44] = np.nan
    return depth


@pytest.mark.parametrize("skew", [0.0, 0.8])
def test_rays_equal_the_camera_models(skew):
    cam = camera(skew)
    rays = pinhole_rays(cam.K, H, W)
    assert rays.dtype == torch.float32 and tuple(rays.shape) == (H, W, 2)
    np.testing.assert_array_equal(rays.numpy(), cam.normalized_rays())


@pytest.mark.parametrize("skew", [0.0, 0.8])
def test_cloud_equals_the_numpy_backprojection_nan_kept(skew):
    cam, depth = camera(skew), depth_with_holes()
    expected = cam.backproject(depth)
    cloud = backproject(torch.from_numpy(depth), pinhole_rays(cam.K, H, W))
    assert cloud.dtype == torch.float32 and tuple(cloud.shape) == (H, W, 3)
    np.testing.assert_array_equal(cloud.numpy(), expected)  # NaN where NaN: equal
    assert np.isnan(cloud.numpy()[5, 7]).all()


def test_a_distorted_cameras_rays_come_from_the_camera_model():
    cam = camera(D=np.array([-0.2, 0.05, 0.001, -0.002, 0.0]))
    depth = depth_with_holes()
    rays = torch.from_numpy(cam.normalized_rays())
    np.testing.assert_array_equal(backproject(torch.from_numpy(depth), rays).numpy(),
                                  cam.backproject(depth, cam.normalized_rays()))


def test_depth_and_cloud_come_back_together_contiguous():
    cam, depth = camera(), depth_with_holes()
    values, cloud = depth_and_cloud_to_host(torch.from_numpy(depth), pinhole_rays(cam.K, H, W))
    assert values.flags.c_contiguous and cloud.flags.c_contiguous
    assert values.dtype == np.float32 and cloud.dtype == np.float32
    np.testing.assert_array_equal(values, depth)
    np.testing.assert_array_equal(cloud, cam.backproject(depth))


def test_mismatched_rays_are_refused():
    rays = pinhole_rays(camera().K, H, W)
    with pytest.raises(ValueError, match="HxWx2"):
        backproject(torch.zeros(H, W + 1), rays)
    with pytest.raises(ValueError, match="fx, fy > 0"):
        pinhole_rays(np.zeros((3, 3)), H, W)


@pytest.mark.gpu
def test_on_the_gpu_one_copy_back_equals_the_cpu():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    cam, depth = camera(0.8), depth_with_holes()
    rays = pinhole_rays(cam.K, H, W, device="cuda")
    assert rays.is_cuda
    values, cloud = depth_and_cloud_to_host(torch.from_numpy(depth).cuda(), rays)
    np.testing.assert_array_equal(values, depth)
    # GPU float64 division is IEEE-exact like the CPU's: the rays, and so the cloud, are equal
    np.testing.assert_array_equal(cloud, cam.backproject(depth))
