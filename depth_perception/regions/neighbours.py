"""Steps 3-4 of the cleaning pass in numpy: what the grid neighbours of the usable points decide.

Usable points are grouped by instance, row-major inside (:mod:`.segments`), so the right-hand grid
neighbour of a point is the next point; the one below (and for 8-neighbourhoods the diagonals)
comes from a pixel → point look-up over the rows in use. Each edge is measured once and serves the
outlier statistics, the connected components and the grid normals.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..grid import grid_components
from .params import RegionParams
from .segments import Segments, cross_soa, norm3


class _Down(NamedTuple):
    """The grid edges from every point towards one neighbour in the row below."""

    nb: np.ndarray  # (N,) the neighbour's point index, or -1
    linked: np.ndarray  # (N,) both are usable points of one instance
    d: np.ndarray  # (3, N) vector to it
    length: np.ndarray  # (N,)
    up: np.ndarray  # (N,) the point whose neighbour this one is, or N (a zero pad entry)


class Neighbours:
    """Grid edges between usable points of one instance, and the decisions made from them."""

    def __init__(self, pixel: np.ndarray, P: np.ndarray, seg: Segments, width: int, ang: float,
                 params: RegionParams, compare_instances: bool):
        """``pixel`` (N,) grid indices and ``P`` (3, N) points of the usable points, grouped by
        ``seg``; ``compare_instances``: whether two instances' points can be grid neighbours
        (eroded masks never touch: each kept pixel's window carries its own id)."""
        self.pixel, self.P, self.seg = pixel, P, seg
        N = self.N = pixel.size
        foot = P[2] * np.float32(ang)  # pixel footprint, metres
        self.inv_foot = np.float32(1.0) / foot
        self.gap = np.maximum(foot * np.float32(params.cluster_gap_px), np.float32(params.cluster_gap_m))
        row = pixel // width
        right = (pixel[1:] - pixel[:-1] == 1) & (row[1:] == row[:-1])
        right[seg.start[(seg.start > 0) & (seg.start < N)] - 1] = False  # across two instances
        self.right = right
        self.dR = P[:, 1:] - P[:, :-1]
        self.lenR = norm3(self.dR)
        inst = seg.repeat(np.arange(seg.count.size, dtype=np.int32)) if compare_instances else None
        self.downs = self._downs(row, width, inst, params.outlier_k) if N else []

    def _downs(self, row, W, inst, outlier_k) -> list[_Down]:
        N, idx = self.N, self.pixel
        r0 = int(row.min())
        local = idx - r0 * W
        pos = np.full((int(row.max()) - r0 + 2) * W + 1, -1, dtype=np.int32)
        pos[local] = np.arange(N, dtype=np.int32)
        steps = [(W, None)]
        if outlier_k == 8:
            col = idx - row * W
            steps += [(W + 1, col < W - 1), (W - 1, col > 0)]
        downs = []
        for step, col_ok in steps:
            nb = pos.take(local + step)
            linked = nb >= 0
            if inst is not None:
                linked &= inst.take(nb) == inst
            if col_ok is not None:
                linked &= col_ok
            d = self.P.take(nb, axis=1)
            d -= self.P
            src = np.flatnonzero(linked)
            up = np.full(N, N, dtype=np.intp)
            up[nb.take(src)] = src  # one predecessor per direction
            downs.append(_Down(nb, linked, d, norm3(d), up))
        return downs

    def inliers(self, params: RegionParams) -> np.ndarray:
        """Step 3: a point's mean neighbour distance in footprints against ``mean +
        outlier_std_ratio · std`` of its instance (at least ``outlier_min_px``); isolated points
        carry no surface evidence."""
        N, right, seg = self.N, self.right, self.seg
        relR = self.lenR * self.inv_foot[:-1]
        relR *= right
        nb_sum = np.zeros(N, dtype=np.float32)
        nb_cnt = np.zeros(N, dtype=np.uint8)
        nb_sum[:-1] += relR
        nb_sum[1:] += relR
        nb_cnt[:-1] += right
        nb_cnt[1:] += right
        for down in self.downs:
            rel = np.zeros(N + 1, dtype=np.float32)
            np.multiply(down.length, self.inv_foot, out=rel[:N])
            rel[:N] *= down.linked
            nb_sum += rel[:N]
            nb_sum += rel.take(down.up)
            nb_cnt += down.linked
            nb_cnt += down.up < N
        has_nb = nb_cnt > 0
        mean_dist = nb_sum / np.maximum(nb_cnt, 1)
        n_has = seg.count_true(has_nb)
        with np.errstate(invalid="ignore", divide="ignore"):
            m = seg.sum(mean_dist) / n_has
            s = np.sqrt(np.maximum(seg.sum(mean_dist * mean_dist) / n_has - m * m, 0.0))
        limit = np.maximum(m + params.outlier_std_ratio * s, params.outlier_min_px)
        return has_nb & (mean_dist <= seg.repeat(limit.astype(np.float32)))

    def dominant_clusters(self, inlier: np.ndarray, params: RegionParams) -> np.ndarray:
        """Step 4: the inliers of each instance's largest component over edges shorter than the
        gap (of the edge's first point), and of the other components with at least
        ``min_cluster_fraction`` of its points that come within the gap of it in 3-D."""
        gap = self.gap
        self.short_r = self.right & (self.lenR < gap[:-1]) & inlier[:-1] & inlier[1:]
        self.short_d = [d.linked & (d.length < gap) & inlier & inlier.take(d.nb) for d in self.downs]
        edges = []
        for short, down in zip(self.short_d, self.downs):
            src = np.flatnonzero(short)
            edges.append((src, down.nb.take(src)))
        comp = grid_components(self.N, self.short_r, edges)
        members = np.flatnonzero(inlier)
        size = np.bincount(comp.take(members), minlength=self.N)
        k = self.seg.count.size
        comp_inst = np.zeros(self.N, np.int64)
        comp_inst[comp.take(members)] = self.seg.repeat(np.arange(k)).take(members)
        roots = np.flatnonzero(size)
        root_size, root_inst = size.take(roots), comp_inst.take(roots)
        by_size = np.lexsort((root_size, root_inst))  # within each instance, largest last (ties: later)
        last = np.r_[root_inst[by_size][1:] != root_inst[by_size][:-1], True] if roots.size else by_size
        best = np.full(k, -1, dtype=np.int64)
        best[root_inst[by_size[last]]] = roots[by_size[last]]
        keep_comp = np.zeros(self.N + 1, dtype=bool)
        keep_comp[best[best >= 0]] = True
        best_size = np.r_[size, 0][best]
        large = (root_size >= params.min_cluster_fraction * best_size[root_inst]) & (root_size > 1)
        large &= ~keep_comp[roots]
        if large.any():
            cands = roots[large]
            keep_comp[cands[self._near(cands, best[root_inst[large]], comp, inlier)]] = True
        return inlier & keep_comp.take(comp)

    def _near(self, candidates, mains, comp, inlier) -> np.ndarray:
        """Which candidate components come within the gap (3-D) of their instance's largest one."""
        from scipy.spatial import cKDTree

        near = np.zeros(candidates.size, dtype=bool)
        for i, (c, main) in enumerate(zip(candidates, mains)):  # rare: an object split by an occluder
            a = np.flatnonzero((comp == main) & inlier)
            b = np.flatnonzero((comp == c) & inlier)
            d, _ = cKDTree(self.P[:, a].T).query(self.P[:, b].T, k=1,
                                                 distance_upper_bound=float(np.max(self.gap[b])))
            near[i] = bool(np.isfinite(d).any())
        return near

    def normals(self, keep: np.ndarray) -> np.ndarray:
        """(3, N) t_u x t_v from the kept short edges (after :meth:`dominant_clusters`).

        Each tangent is the edge to the next point plus the edge from the previous one, zero where
        an edge is missing: central differences, one-sided at the ends, zero when isolated. A
        short inlier edge never leaves its component, so one kept end means both are kept. On
        every visible surface the grid runs right (u) and down (v) as seen from the camera, so
        t_u x t_v points away from the camera without a per-point sign test.
        """
        N = self.N
        edges = np.zeros((3, N + 1), dtype=np.float32)  # edge i → i + 1 in column i + 1
        np.multiply(self.dR, self.short_r & keep[:-1], out=edges[:, 1:N])
        tu = edges[:, 1:] + edges[:, :-1]
        if self.downs:
            down = self.downs[0]
            np.multiply(down.d, self.short_d[0] & keep, out=edges[:, :N])  # edge i → below in column i
            tv = edges.take(down.up, axis=1)
            tv += edges[:, :N]
        else:
            tv = np.zeros_like(tu)
        return cross_soa(tu, tv)
