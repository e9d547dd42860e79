"""The compiled kernel of the cleaning pass (``depth_perception/_regions_kernel.cpp``).

Built with the package where a C++ compiler exists and used by default: the same steps and the
same float32 arithmetic as the numpy pass in :mod:`.cleaning`, in a few loops over the mask pixels
instead of ~300 numpy array passes. ``RegionParams.implementation`` chooses ("auto",
"compiled", "numpy"); test/regions/test_kernel.py holds the two equal.
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import numpy as np

from .params import RegionError, RegionParams
from .segments import InstanceSums, Segments


def load(implementation: str):
    """The compiled module, or None for the numpy implementation."""
    if implementation == "numpy":
        return None
    try:
        from .. import _regions_kernel
    except ImportError as exc:
        if implementation == "compiled":
            raise RegionError(
                "implementation 'compiled' asked for, but depth_perception._regions_kernel is not built "
                f"({exc}); reinstall the package with a C++ compiler (pip install -e . / colcon build)"
            ) from None
        return None
    return _regions_kernel


def kernel_available() -> bool:
    """Whether the compiled kernel was built with the package."""
    return load("auto") is not None


def implementation_in_use(params: RegionParams | None = None) -> str:
    """"compiled" or "numpy": what the cleaning pass runs with these params (RegionError when
    "compiled" is asked for and not built)."""
    return "numpy" if load((params or RegionParams()).implementation) is None else "compiled"


class _Instance(NamedTuple):
    """What the kernel's clean() reports per instance (pixel counts; roots are mask positions)."""

    mask: int
    valid: int
    behind: int
    on_plane: int
    uneroded: bool
    best_root: int
    best_size: int


def bind(kernel) -> Callable[..., dict | None]:
    """The pass through ``kernel``, called as :func:`.cleaning._clean_numpy` is."""
    return functools.partial(_clean, kernel)


def _clean(kernel, pts, lab, plane, ang: float, params: RegionParams) -> dict | None:
    H, W = lab.shape
    generation, ids, per, candidates = kernel.clean(
        np.ascontiguousarray(pts), lab, plane, H, W, int(params.erosion_px), ang, int(params.min_pixels),
        int(params.outlier_k), float(params.outlier_std_ratio), float(params.outlier_min_px),
        float(params.cluster_gap_px), float(params.cluster_gap_m), float(params.plane_margin_m),
        float(params.min_cluster_fraction), float(params.edge_jump_m), float(params.edge_jump_px),
        float(params.mad_k), float(params.mad_floor_m))
    k = len(ids)
    if not k:
        return None
    per = [_Instance._make(p) for p in per]
    keep = [p.best_root for p in per]  # the largest component of each instance (-1: none)
    n_keep = sum(p.best_size for p in per)
    for _, root, size, joins in candidates:  # other components that join (an occluded object)
        if joins:
            keep.append(root)
            n_keep += size
    pixel = np.empty(n_keep, np.int64)
    points = np.empty((n_keep, 3), np.float32)
    normals = np.empty((3, n_keep), np.float32)
    ends = np.empty(n_keep, np.int64)
    counts, end_counts = np.empty(k, np.int64), np.empty(k, np.int64)
    sums, gram, normal_sums = np.empty((k, 3)), np.empty((k, 4, 4)), np.empty((k, 3))
    heights, cols = np.empty((k, 2), np.float32), np.empty((k, 2), np.int64)
    _, n_ends = kernel.collect(generation, None, plane, np.array(keep, np.int32), k, n_keep, pixel, points, normals,
                               None, ends, counts, end_counts, sums, gram, normal_sums, heights, cols)
    cnt = np.maximum(counts, 1)
    return dict(
        ids=list(ids), segments=Segments(counts), pixel=pixel, points=points, normal_vectors=normals,
        ends=ends[:n_ends], end_segments=Segments(end_counts),
        sums=InstanceSums(sums.T / cnt, gram / cnt[:, None, None], normal_sums.T / cnt,
                          heights if plane is not None else None, cols),
        counts=np.array([p[:4] for p in per], np.int64).reshape(k, 4),
        uneroded=np.array([p.uneroded for p in per], bool),
    )
