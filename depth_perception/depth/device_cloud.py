"""Depth -> organised point cloud with torch, on the depth's own device (CUDA or CPU).

The same back-projection as :meth:`depth_perception.camera.CameraModel.backproject` (x = X/Z ray
times depth, z = depth, NaN depth -> NaN point, REP 117), so that a depth that is still on the GPU
becomes a cloud there and the two come back to the host in one copy (:func:`depth_and_cloud_to_host`)
instead of the depth coming back, then the cloud being computed on the CPU.

    rays = pinhole_rays(cam.effective().K, h, w, device="cuda")     # once per camera
    depth_np, cloud_np = depth_and_cloud_to_host(depth_t, rays)      # every frame

Rays of a distorted camera: ``torch.from_numpy(cam.normalized_rays()).to(device)``, once.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def pinhole_rays(K: Any, height: int, width: int, device: Any = "cpu") -> Any:
    """HxWx2 float32 torch tensor on ``device``: (x/z, y/z) of every pixel's viewing ray through the
    undistorted pinhole ``K`` (3x3, pixels; skew honoured), computed as
    :meth:`CameraModel.normalized_rays` computes them (float64, then float32), so equal to it."""
    import torch

    k = np.asarray(K, dtype=np.float64).reshape(3, 3)
    if height < 1 or width < 1:
        raise ValueError(f"image must be at least 1x1 pixels, got {width}x{height}")
    if not (np.isfinite(k).all() and k[0, 0] > 0 and k[1, 1] > 0):
        raise ValueError(f"K must be finite with fx, fy > 0, got K={k.tolist()}")
    # Python floats: a numpy scalar on the left of a CUDA tensor must not try numpy's operator
    fx, fy, cx, cy, skew = (float(k[i, j]) for i, j in ((0, 0), (1, 1), (0, 2), (1, 2), (0, 1)))
    v, u = torch.meshgrid(torch.arange(height, dtype=torch.float64, device=device),
                          torch.arange(width, dtype=torch.float64, device=device), indexing="ij")
    # the operations and their order of camera.py's, so the float32 rays are bit-equal
    x = (u - cx - skew * (v - cy) / fy) / fx
    y = (v - cy) / fy
    return torch.stack([x, y], dim=-1).to(torch.float32)


def _check(depth_m: Any, rays: Any) -> None:
    if depth_m.ndim != 2:
        raise ValueError(f"depth must be HxW, got shape {tuple(depth_m.shape)}")
    if tuple(rays.shape) != (*depth_m.shape, 2):
        raise ValueError(f"rays must be HxWx2 for depth {tuple(depth_m.shape)}, "
                         f"got {tuple(rays.shape)}")
    if rays.device != depth_m.device:
        raise ValueError(f"rays are on {rays.device} but depth is on {depth_m.device}")


def backproject(depth_m: Any, rays: Any) -> Any:
    """HxW depth tensor (metres) and HxWx2 rays (:func:`pinhole_rays`) on one device -> HxWx3
    float32 organised cloud on that device (camera optical frame); NaN depth gives NaN points."""
    import torch

    _check(depth_m, rays)
    z = depth_m.to(torch.float32)
    return torch.stack([rays[..., 0] * z, rays[..., 1] * z, z], dim=-1)


def depth_and_cloud_to_host(depth_m: Any, rays: Any) -> tuple[np.ndarray, np.ndarray]:
    """HxW depth tensor and its rays on one device -> (HxW float32 depth, HxWx3 float32 cloud) as
    numpy, both contiguous, through ONE device -> host copy: both are written into one device
    buffer, which is copied into pinned (page-locked) host memory when the device is a GPU.
    Equal to ``backproject(depth_m, rays)`` and ``depth_m`` copied back separately."""
    import torch

    _check(depth_m, rays)
    h, w = depth_m.shape
    n = h * w
    flat = torch.empty(4 * n, dtype=torch.float32, device=depth_m.device)
    z = flat[:n].view(h, w)
    z.copy_(depth_m)
    cloud = flat[n:].view(h, w, 3)
    cloud[..., :2] = rays * z[..., None]
    cloud[..., 2] = z
    if flat.device.type == "cpu":
        host = flat
    else:
        # pinned: a direct DMA copy, about twice the bandwidth of a pageable one; torch's caching
        # host allocator reuses the block once the arrays below are gone
        host = torch.empty(4 * n, dtype=torch.float32, pin_memory=True)
        host.copy_(flat)  # blocking: returns when the data is on the host
    array = host.numpy()
    return array[:n].reshape(h, w), array[n:].reshape(h, w, 3)


__all__ = ["pinhole_rays", "backproject", "depth_and_cloud_to_host"]
