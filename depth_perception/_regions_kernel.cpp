// Compiled per-pixel work of depth_perception.regions.extract_regions (steps 1-8 of its docstring).
//
// Why C++: the numpy implementation in regions.py (the reference, and the fallback when this module
// is not built) needs ~300 array passes per frame and cannot reach the 5 ms budget for a 640x480
// frame with 10 regions on one core; these loops make one or two passes over the mask pixels.
//
// Only the CPython C API and the buffer protocol are used (no numpy headers, no pybind11), so any
// compiler that builds Python extensions builds this. Arithmetic follows regions.py operation by
// operation in float32 (built with -ffp-contract=off) so the two implementations keep the same
// points; per-instance sums are float64 here and may differ from numpy's in the last bits.
//
// Two calls per frame, with Python in between for the rare merge of split components (k-d tree):
//   clean(...)   masks, erosion, validity, support plane, statistical outliers, connected
//                components, the largest component per instance and the merge candidates;
//   collect(...) the kept points grouped by instance (row-major inside) with colours, grid
//                normals, row-run ends and per-instance sums (mean, 4x4 Gram, normals, heights).

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <tuple>
#include <vector>

namespace {

// A buffer argument (numpy array, bytes) held for the duration of a call.
struct Buffer {
  Py_buffer view{};
  bool held = false;
  Buffer() = default;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() {
    if (held) PyBuffer_Release(&view);
  }
  // Contiguous buffer of at least `bytes` bytes; `writable` for outputs. Sets a Python error and
  // returns false otherwise. None is accepted where `optional` (held stays false).
  bool get(PyObject* obj, Py_ssize_t bytes, bool writable, const char* name, bool optional = false) {
    if (obj == Py_None && optional) return true;
    int flags = PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, &view, flags) != 0) return false;
    held = true;
    if (view.len < bytes) {
      PyErr_Format(PyExc_ValueError, "%s: buffer of %zd bytes, need %zd", name, view.len, bytes);
      return false;
    }
    return true;
  }
  template <typename T>
  T* as() const {
    return held ? static_cast<T*>(view.buf) : nullptr;
  }
};

inline float len3(float dx, float dy, float dz) {
  // the order of regions._norm3: (dx*dx + dy*dy) + dz*dz
  return std::sqrt(dx * dx + dy * dy + dz * dz);
}


// Writes the index of every labelled pixel of lab, row-major, to out; returns their number. Zero
// words are skipped four pixels at a time (masks cover a small part of the image).
inline int64_t list_labelled(const uint16_t* lab, int64_t n, int32_t* out) {
  int64_t m = 0, p = 0;
  for (; p + 4 <= n; p += 4) {
    uint64_t word;
    std::memcpy(&word, lab + p, 8);
    if (!word) continue;
    for (int64_t q = p; q < p + 4; ++q)
      if (lab[q]) out[m++] = static_cast<int32_t>(q);
  }
  for (; p < n; ++p)
    if (lab[p]) out[m++] = static_cast<int32_t>(p);
  return m;
}

// True when the (2e+1)^2 window around (v, u) (clipped to the image, as cv2.erode's default
// border) holds label l only: the pixel survives the erosion of its mask.
inline bool survives_erosion(const uint16_t* lab, int64_t H, int64_t W, int64_t v, int64_t u, int e, uint16_t l) {
  if (e == 1 && u >= 1 && u + 3 <= W && v >= 1 && v + 1 < H) {
    // the common case, three rows of three labels: one 8-byte load per row (the fourth label is
    // masked off; u + 3 <= W keeps the load inside the row below the last)
    const uint64_t pattern = 0x000100010001ull * l, keep = 0xFFFFFFFFFFFFull;
    for (int64_t r = v - 1; r <= v + 1; ++r) {
      uint64_t word;
      std::memcpy(&word, lab + r * W + u - 1, 8);
      if ((word ^ pattern) & keep) return false;
    }
    return true;
  }
  const int64_t v0 = std::max<int64_t>(v - e, 0), v1 = std::min<int64_t>(v + e, H - 1);
  const int64_t u0 = std::max<int64_t>(u - e, 0), u1 = std::min<int64_t>(u + e, W - 1);
  for (int64_t r = v0; r <= v1; ++r)
    for (const uint16_t *q = lab + r * W + u0, *end = lab + r * W + u1; q <= end; ++q)
      if (*q != l) return false;
  return true;
}

// Per-position edge flags written by clean() for collect(): the grid edge to the right / below
// joins two used points of one instance (LINK_*), and also two inliers closer than the gap (SHORT_*).
constexpr uint8_t LINK_R = 1, LINK_D = 2, SHORT_R = 4, SHORT_D = 8, USE = 16;

int32_t find_root(int32_t* parent, int32_t i) {
  while (parent[i] != i) {
    parent[i] = parent[parent[i]];  // path halving
    i = parent[i];
  }
  return i;
}

// clean(pts, lab, plane, mask, pos, inst, root, edge, H, W, erosion_px, ang, min_points, outlier_k,
//       std_ratio, min_px, gap_px, gap_m, plane_margin, min_cluster_fraction)
//   pts HxWx3 float32, lab HxW uint16, plane (4,) float64 unit normal + d or None.
//   Outputs (buffers of H*W entries; the first m are written, pos only at labelled pixels):
//   mask int32 the labelled pixels in row-major order ("positions" index this list);
//   pos int32 HxW the position of each labelled pixel; inst int32 the instance (index into ids)
//   of each position; root int32 the position of the first
//   point of each inlier's component, -1 for other points; edge uint8 the flags above.
// Returns (m, ids, per_instance, candidates):
//   ids           instance ids in increasing order
//   per_instance  one tuple per instance: (mask px, valid, behind, on_plane, uneroded, best root,
//                 best size, u_min, v_min, u_max, v_max of the mask)
//   candidates    (instance index, root, size) of other components that may join the best one
PyObject* clean(PyObject*, PyObject* args) {
  PyObject *o_pts, *o_lab, *o_plane, *o_mask, *o_pos, *o_inst, *o_root, *o_edge;
  Py_ssize_t H, W;
  double ang, std_ratio, min_px, gap_px, gap_m, plane_margin, min_fraction;
  int erosion, min_points, outlier_k;
  if (!PyArg_ParseTuple(args, "OOOOOOOOnnidiidddddd", &o_pts, &o_lab, &o_plane, &o_mask, &o_pos, &o_inst, &o_root, &o_edge,
                        &H, &W, &erosion, &ang, &min_points, &outlier_k, &std_ratio, &min_px, &gap_px, &gap_m,
                        &plane_margin, &min_fraction))
    return nullptr;
  const int64_t n = static_cast<int64_t>(H) * W;
  if (H < 1 || W < 1 || n >= (int64_t{1} << 31)) {
    PyErr_SetString(PyExc_ValueError, "clean: image must have 1 .. 2^31 - 1 pixels");
    return nullptr;
  }
  Buffer b_pts, b_lab, b_plane, b_mask, b_pos, b_inst, b_root, b_edge;
  if (!b_pts.get(o_pts, n * 12, false, "pts") || !b_lab.get(o_lab, n * 2, false, "lab") ||
      !b_plane.get(o_plane, 32, false, "plane", true) || !b_mask.get(o_mask, n * 4, true, "mask") ||
      !b_pos.get(o_pos, n * 4, true, "pos") || !b_inst.get(o_inst, n * 4, true, "inst") ||
      !b_root.get(o_root, n * 4, true, "root") || !b_edge.get(o_edge, n, true, "edge"))
    return nullptr;
  const float* P = b_pts.as<float>();
  const uint16_t* lab = b_lab.as<uint16_t>();
  const double* plane = b_plane.as<double>();
  int32_t* mask = b_mask.as<int32_t>();
  int32_t* pos = b_pos.as<int32_t>();
  int32_t* inst = b_inst.as<int32_t>();
  int32_t* root = b_root.as<int32_t>();
  uint8_t* edge = b_edge.as<uint8_t>();

  int64_t m = 0;
  size_t k = 0;
  std::vector<int32_t> ids;
  std::vector<int64_t> mask_n, valid_n, behind_n, low_n, best_size, best_root;
  std::vector<int64_t> u_lo, v_lo, u_hi, v_hi;
  std::vector<char> uneroded;
  std::vector<std::tuple<int64_t, int64_t, int64_t>> candidates;

  Py_BEGIN_ALLOW_THREADS;
  // 1. the labelled pixels; instances (dense index j in id order), mask sizes, bounding boxes,
  //    erosion survivors
  m = list_labelled(lab, n, mask);
  std::vector<int32_t> lut(65536, -1);
  std::vector<uint16_t> seen;  // ids in order of first appearance
  std::vector<int64_t> eroded_n;
  int64_t v = 0, row_end = W;
  for (int64_t i = 0; i < m; ++i) {
    const int64_t p = mask[i];
    while (p >= row_end) { ++v; row_end += W; }
    const int64_t u = p - (row_end - W);
    const uint16_t l = lab[p];
    int32_t j = lut[l];
    if (j < 0) {
      j = lut[l] = static_cast<int32_t>(seen.size());
      seen.push_back(l);
      mask_n.push_back(0);
      eroded_n.push_back(0);
      u_lo.push_back(u);
      u_hi.push_back(u);
      v_lo.push_back(v);
      v_hi.push_back(v);
    }
    inst[i] = j;
    pos[p] = static_cast<int32_t>(i);
    const bool survives = erosion <= 0 || survives_erosion(lab, H, W, v, u, erosion, l);
    edge[i] = survives ? USE : 0;  // USE here means "survives"; step 2 decides
    ++mask_n[j];
    eroded_n[j] += survives;
    u_lo[j] = std::min(u_lo[j], u);
    u_hi[j] = std::max(u_hi[j], u);
    v_hi[j] = v;
  }
  k = seen.size();
  {  // dense indices in id order
    std::vector<size_t> order(k);
    std::vector<int32_t> rank(k);
    for (size_t j = 0; j < k; ++j) order[j] = j;
    std::sort(order.begin(), order.end(), [&](size_t x, size_t y) { return seen[x] < seen[y]; });
    for (size_t j = 0; j < k; ++j) rank[order[j]] = static_cast<int32_t>(j);
    auto permute = [&](std::vector<int64_t>& a) {
      std::vector<int64_t> b(k);
      for (size_t j = 0; j < k; ++j) b[j] = a[order[j]];
      a.swap(b);
    };
    for (auto* a : {&mask_n, &eroded_n, &u_lo, &u_hi, &v_lo, &v_hi}) permute(*a);
    for (size_t j = 0; j < k; ++j) {
      ids.push_back(seen[order[j]]);
      lut[seen[order[j]]] = static_cast<int32_t>(j);
      uneroded.push_back(erosion > 0 && eroded_n[j] < min_points);
    }
    for (int64_t i = 0; i < m; ++i) inst[i] = rank[inst[i]];
  }
  valid_n.assign(k, 0);
  behind_n.assign(k, 0);
  low_n.assign(k, 0);

  // 2. points in use: eroded mask, finite, in front of the camera, above the support plane; the
  //    pixel footprint's inverse and the cluster gap of each
  const float pn0 = plane ? static_cast<float>(plane[0]) : 0.f, pn1 = plane ? static_cast<float>(plane[1]) : 0.f,
              pn2 = plane ? static_cast<float>(plane[2]) : 0.f, pd = plane ? static_cast<float>(plane[3]) : 0.f;
  const float margin = static_cast<float>(plane_margin), angf = static_cast<float>(ang);
  const float gpx = static_cast<float>(gap_px), gm = static_cast<float>(gap_m);
  std::unique_ptr<float[]> inv_foot(new float[m]), gap(new float[m]);
  for (int64_t i = 0; i < m; ++i) {
    const int64_t p = mask[i];
    const int32_t j = inst[i];
    const float x = P[3 * p], y = P[3 * p + 1], z = P[3 * p + 2];
    const bool finite = std::isfinite(x + y + z), front = z > 0;
    valid_n[j] += finite && front;
    behind_n[j] += finite && !front;
    bool use = finite && front && (uneroded[j] || edge[i]);
    if (use && plane) {
      const float h = pn0 * x + pn1 * y + pn2 * z + pd;
      if (h < margin) {
        ++low_n[j];
        use = false;
      }
    }
    edge[i] = use ? USE : 0;
    const float foot = z * angf;
    inv_foot[i] = 1.0f / foot;
    gap[i] = std::max(foot * gpx, gm);
  }

  // 3. grid edges between used points of one instance (right: the next position; down: through
  //    pos), each length computed once; statistical outlier removal on the mean edge length in
  //    pixel footprints (accumulated in the order of regions.py: right, left, down, up, then the
  //    diagonals)
  std::unique_ptr<float[]> len_r(new float[m]), len_d(new float[m]), rel_dr(nullptr), rel_dl(nullptr);
  std::unique_ptr<int32_t[]> down(new int32_t[m]), dr(nullptr), dl(nullptr);
  const bool k8 = outlier_k == 8;
  if (k8) {
    rel_dr.reset(new float[m]);
    rel_dl.reset(new float[m]);
    dr.reset(new int32_t[m]);
    dl.reset(new int32_t[m]);
  }
  // the position of pixel q when it is a used point of instance label l, else -1
  auto used_at = [&](int64_t q, uint16_t l) -> int32_t {
    if (lab[q] != l) return -1;
    const int32_t t = pos[q];
    return (edge[t] & USE) ? t : -1;
  };
  auto dist = [&](int64_t a, int64_t b) {  // |P[b] - P[a]|, the order of regions._norm3
    return len3(P[3 * b] - P[3 * a], P[3 * b + 1] - P[3 * a + 1], P[3 * b + 2] - P[3 * a + 2]);
  };
  v = 0;
  row_end = W;
  for (int64_t i = 0; i < m; ++i) {
    const int64_t p = mask[i];
    while (p >= row_end) { ++v; row_end += W; }
    down[i] = -1;
    if (!(edge[i] & USE)) continue;
    const int64_t u = p - (row_end - W);
    const uint16_t l = lab[p];
    if (u < W - 1 && i + 1 < m && mask[i + 1] == p + 1 && lab[p + 1] == l && (edge[i + 1] & USE)) {
      edge[i] |= LINK_R;
      len_r[i] = dist(p, p + 1);
    }
    if (v < H - 1) {
      const int32_t t = used_at(p + W, l);
      if (t >= 0) {
        edge[i] |= LINK_D;
        down[i] = t;
        len_d[i] = dist(p, p + W);
      }
    }
    if (k8) {
      dr[i] = dl[i] = -1;
      if (v < H - 1 && u < W - 1) {
        const int32_t t = used_at(p + W + 1, l);
        if (t >= 0) { dr[i] = t; rel_dr[i] = dist(p, p + W + 1) * inv_foot[i]; }
      }
      if (v < H - 1 && u > 0) {
        const int32_t t = used_at(p + W - 1, l);
        if (t >= 0) { dl[i] = t; rel_dl[i] = dist(p, p + W - 1) * inv_foot[i]; }
      }
    }
  }
  // incoming edges (from the left and from above) are the outgoing edges of earlier points:
  // accumulate forward, each edge into both of its ends
  std::unique_ptr<float[]> nb_sum(new float[m]), nb_up(new float[m]);
  std::unique_ptr<uint8_t[]> nb_cnt(new uint8_t[m]);
  std::unique_ptr<float[]> up_dr(nullptr), up_dl(nullptr);
  for (int64_t i = 0; i < m; ++i) nb_up[i] = 0.f;
  if (k8) {
    up_dr.reset(new float[m]);
    up_dl.reset(new float[m]);
    for (int64_t i = 0; i < m; ++i) up_dr[i] = up_dl[i] = 0.f;
  }
  std::unique_ptr<uint8_t[]> up_cnt(new uint8_t[m]);
  for (int64_t i = 0; i < m; ++i) up_cnt[i] = 0;
  for (int64_t i = 0; i < m; ++i) {
    if (!(edge[i] & USE)) continue;
    if (edge[i] & LINK_D) { nb_up[down[i]] = len_d[i] * inv_foot[i]; ++up_cnt[down[i]]; }
    if (k8) {
      if (dr[i] >= 0) { up_dr[dr[i]] = rel_dr[i]; ++up_cnt[dr[i]]; }
      if (dl[i] >= 0) { up_dl[dl[i]] = rel_dl[i]; ++up_cnt[dl[i]]; }
    }
  }
  std::vector<double> has_n(k, 0), sum1(k, 0), sum2(k, 0);
  std::unique_ptr<float[]> mean_dist(new float[m]);
  for (int64_t i = 0; i < m; ++i) {
    if (!(edge[i] & USE)) continue;
    float sum = 0.f;
    int cnt = up_cnt[i];
    if (edge[i] & LINK_R) { sum += len_r[i] * inv_foot[i]; ++cnt; }
    if (i > 0 && (edge[i - 1] & LINK_R)) { sum += len_r[i - 1] * inv_foot[i - 1]; ++cnt; }
    if (edge[i] & LINK_D) { sum += len_d[i] * inv_foot[i]; ++cnt; }
    sum += nb_up[i];
    if (k8) {
      if (dr[i] >= 0) { sum += rel_dr[i]; ++cnt; }
      sum += up_dr[i];
      if (dl[i] >= 0) { sum += rel_dl[i]; ++cnt; }
      sum += up_dl[i];
    }
    if (!cnt) {
      mean_dist[i] = std::numeric_limits<float>::infinity();  // isolated: never an inlier
      continue;
    }
    const float md = sum / static_cast<float>(cnt);
    mean_dist[i] = md;
    const int32_t j = inst[i];
    has_n[j] += 1;
    sum1[j] += md;
    sum2[j] += static_cast<double>(md * md);
  }
  std::vector<float> limit(k);
  for (size_t j = 0; j < k; ++j) {
    const double mu = sum1[j] / has_n[j];
    const double sd = std::sqrt(std::max(sum2[j] / has_n[j] - mu * mu, 0.0));
    const double lim = mu + std_ratio * sd;
    limit[j] = static_cast<float>(std::isnan(lim) ? lim : std::max(lim, min_px));
  }
  for (int64_t i = 0; i < m; ++i)
    root[i] = ((edge[i] & USE) && mean_dist[i] <= limit[inst[i]]) ? static_cast<int32_t>(i) : -1;

  // 4. connected components of the inliers over edges shorter than the gap of their first point;
  //    a component's root is its first position (union by smaller root)
  auto join = [&](int32_t a, int32_t b) {
    a = find_root(root, a);
    b = find_root(root, b);
    if (a < b) root[b] = a;
    else if (b < a) root[a] = b;
  };
  for (int64_t i = 0; i < m; ++i) {
    if (root[i] < 0) continue;
    if ((edge[i] & LINK_R) && root[i + 1] >= 0 && len_r[i] < gap[i]) {
      edge[i] |= SHORT_R;
      join(static_cast<int32_t>(i), static_cast<int32_t>(i + 1));
    }
    if ((edge[i] & LINK_D) && root[down[i]] >= 0 && len_d[i] < gap[i]) {
      edge[i] |= SHORT_D;
      join(static_cast<int32_t>(i), down[i]);
    }
    if (k8) {  // the diagonals join components but give no tangent
      const int64_t p = mask[i];
      if (dr[i] >= 0 && root[dr[i]] >= 0 && dist(p, p + W + 1) < gap[i]) join(static_cast<int32_t>(i), dr[i]);
      if (dl[i] >= 0 && root[dl[i]] >= 0 && dist(p, p + W - 1) < gap[i]) join(static_cast<int32_t>(i), dl[i]);
    }
  }
  // every inlier to its root: a parent precedes its child, so it is final already
  std::unique_ptr<int32_t[]> size(new int32_t[m]);
  for (int64_t i = 0; i < m; ++i) {
    size[i] = 0;
    if (root[i] < 0) continue;
    root[i] = root[root[i]];
    ++size[root[i]];
  }

  // 5. the largest component per instance (ties: the later one, as regions.py) and the others
  //    large enough to join it when they come within the gap (decided in Python)
  best_root.assign(k, -1);
  best_size.assign(k, 0);
  std::vector<int64_t> roots;
  for (int64_t i = 0; i < m; ++i) {
    if (root[i] != i) continue;
    roots.push_back(i);
    const int32_t j = inst[i];
    if (size[i] >= best_size[j]) {
      best_size[j] = size[i];
      best_root[j] = i;
    }
  }
  for (int64_t r : roots) {
    const int32_t j = inst[r];
    if (r != best_root[j] && size[r] > 1 && size[r] >= min_fraction * static_cast<double>(best_size[j]))
      candidates.emplace_back(j, r, size[r]);
  }
  Py_END_ALLOW_THREADS;

  PyObject* py_ids = PyList_New(static_cast<Py_ssize_t>(k));
  PyObject* py_inst = PyList_New(static_cast<Py_ssize_t>(k));
  PyObject* py_cand = PyList_New(static_cast<Py_ssize_t>(candidates.size()));
  if (!py_ids || !py_inst || !py_cand) {
    Py_XDECREF(py_ids);
    Py_XDECREF(py_inst);
    Py_XDECREF(py_cand);
    return nullptr;
  }
  for (size_t j = 0; j < k; ++j) {
    PyList_SET_ITEM(py_ids, j, PyLong_FromLong(ids[j]));
    PyList_SET_ITEM(py_inst, j,
                    Py_BuildValue("(LLLLNLLLLLL)", (long long)mask_n[j], (long long)valid_n[j],
                                  (long long)behind_n[j], (long long)low_n[j], PyBool_FromLong(uneroded[j]),
                                  (long long)best_root[j], (long long)best_size[j], (long long)u_lo[j],
                                  (long long)v_lo[j], (long long)u_hi[j], (long long)v_hi[j]));
  }
  for (size_t i = 0; i < candidates.size(); ++i) {
    auto [j, r, sz] = candidates[i];
    PyList_SET_ITEM(py_cand, i, Py_BuildValue("(LLL)", (long long)j, (long long)r, (long long)sz));
  }
  return Py_BuildValue("(LNNN)", (long long)m, py_ids, py_inst, py_cand);
}

// collect(pts, rgb, plane, mask, m, pos, inst, root, edge, keep_roots, k, n_roots, H, W, N, index,
//         points, normals, colours, ends, counts, end_counts, sums, gram, normal_sums, heights, cols)
//   mask / pos / inst / root / edge as written by clean(); keep_roots (n_roots,) int32: the
//   components kept (the first k: each instance's largest, -1 for none; then any that joined one).
//   Outputs, N = kept points, grouped by instance in id order, row-major inside:
//   index (N,) int64 pixel, points (N, 3) float32, normals (3, N) float32 (t_u x t_v, not
//   normalised), colours (N, 3) uint8 or None, ends (N,) int64 indices (into the output) of
//   row-run ends, grouped by instance, end_counts of them each; counts / end_counts (k,) int64,
//   sums (k, 3) float64, gram (k, 4, 4) float64 sums of (q, |q|^2) outer products with
//   q = p - mean, normal_sums (k, 3) float64 of the -unit normals, heights (k, 2) float32 min /
//   max above the plane (NaN without plane or points), cols (k, 2) int64 min / max column.
PyObject* collect(PyObject*, PyObject* args) {
  PyObject *o_pts, *o_rgb, *o_plane, *o_mask, *o_pos, *o_inst, *o_root, *o_edge, *o_roots;
  PyObject *o_index, *o_points, *o_normals, *o_colours, *o_ends, *o_counts, *o_end_counts, *o_sums, *o_gram,
      *o_nsum, *o_heights, *o_cols;
  Py_ssize_t m, k, n_roots, H, W, N;
  if (!PyArg_ParseTuple(args, "OOOOnOOOOOnnnnnOOOOOOOOOOOO", &o_pts, &o_rgb, &o_plane, &o_mask, &m, &o_pos,
                        &o_inst, &o_root, &o_edge, &o_roots, &k, &n_roots, &H, &W, &N, &o_index, &o_points,
                        &o_normals, &o_colours, &o_ends, &o_counts, &o_end_counts, &o_sums, &o_gram, &o_nsum,
                        &o_heights, &o_cols))
    return nullptr;
  const int64_t n = static_cast<int64_t>(H) * W;
  if (H < 1 || W < 1 || n >= (int64_t{1} << 31) || m < 0 || m > n || k < 0 || n_roots < k) {
    PyErr_SetString(PyExc_ValueError, "collect: inconsistent sizes");
    return nullptr;
  }
  Buffer b_pts, b_rgb, b_plane, b_mask, b_pos, b_inst, b_root, b_edge, b_roots;
  Buffer b_index, b_points, b_normals, b_colours, b_ends, b_counts, b_end_counts, b_sums, b_gram, b_nsum,
      b_heights, b_cols;
  if (!b_pts.get(o_pts, n * 12, false, "pts") || !b_rgb.get(o_rgb, n * 3, false, "rgb", true) ||
      !b_plane.get(o_plane, 32, false, "plane", true) || !b_mask.get(o_mask, m * 4, false, "mask") ||
      !b_pos.get(o_pos, n * 4, false, "pos") || !b_inst.get(o_inst, m * 4, false, "inst") ||
      !b_root.get(o_root, m * 4, false, "root") || !b_edge.get(o_edge, m, false, "edge") ||
      !b_roots.get(o_roots, n_roots * 4, false, "keep_roots") || !b_index.get(o_index, N * 8, true, "index") ||
      !b_points.get(o_points, N * 12, true, "points") || !b_normals.get(o_normals, N * 12, true, "normals") ||
      !b_colours.get(o_colours, N * 3, true, "colours", true) || !b_ends.get(o_ends, N * 8, true, "ends") ||
      !b_counts.get(o_counts, k * 8, true, "counts") || !b_end_counts.get(o_end_counts, k * 8, true, "end_counts") ||
      !b_sums.get(o_sums, k * 24, true, "sums") || !b_gram.get(o_gram, k * 128, true, "gram") ||
      !b_nsum.get(o_nsum, k * 24, true, "normal_sums") || !b_heights.get(o_heights, k * 8, true, "heights") ||
      !b_cols.get(o_cols, k * 16, true, "cols"))
    return nullptr;
  if (b_rgb.held != b_colours.held) {
    PyErr_SetString(PyExc_ValueError, "collect: rgb and colours, both or neither");
    return nullptr;
  }
  const float* P = b_pts.as<float>();
  const uint8_t* rgb = b_rgb.as<uint8_t>();
  const double* plane = b_plane.as<double>();
  const int32_t* mask = b_mask.as<int32_t>();
  const int32_t* pos = b_pos.as<int32_t>();
  const int32_t* inst = b_inst.as<int32_t>();
  const int32_t* root = b_root.as<int32_t>();
  const uint8_t* edge = b_edge.as<uint8_t>();
  const int32_t* keep_roots = b_roots.as<int32_t>();
  int64_t* index = b_index.as<int64_t>();
  float* points = b_points.as<float>();
  float* normals = b_normals.as<float>();
  uint8_t* colours = b_colours.as<uint8_t>();
  int64_t* ends = b_ends.as<int64_t>();
  int64_t* counts = b_counts.as<int64_t>();
  int64_t* end_counts = b_end_counts.as<int64_t>();
  double* sums = b_sums.as<double>();
  double* gram = b_gram.as<double>();
  double* nsum = b_nsum.as<double>();
  float* heights = b_heights.as<float>();
  int64_t* cols = b_cols.as<int64_t>();
  int64_t total = 0, total_ends = 0;

  Py_BEGIN_ALLOW_THREADS;
  std::unique_ptr<uint8_t[]> root_kept(new uint8_t[m]());
  for (Py_ssize_t r = 0; r < n_roots; ++r)
    if (keep_roots[r] >= 0 && keep_roots[r] < m) root_kept[keep_roots[r]] = 1;
  auto kept = [&](int64_t i) { return root[i] >= 0 && root_kept[root[i]]; };
  // a row-run end: not both grid neighbours in the row are kept points of the instance
  auto is_end = [&](int64_t i) {
    return !(i > 0 && (edge[i - 1] & LINK_R) && kept(i - 1) && (edge[i] & LINK_R) && kept(i + 1));
  };

  // counts first, so that every instance's points are written in place
  std::fill(counts, counts + k, 0);
  std::fill(end_counts, end_counts + k, 0);
  for (int64_t i = 0; i < m; ++i) {
    if (!kept(i)) continue;
    ++counts[inst[i]];
    end_counts[inst[i]] += is_end(i);
  }
  std::vector<int64_t> at(k), end_at(k);
  for (Py_ssize_t j = 0; j < k; ++j) {
    at[j] = total;
    end_at[j] = total_ends;
    total += counts[j];
    total_ends += end_counts[j];
  }
  if (total <= N) {
    std::fill(sums, sums + 3 * k, 0.0);
    std::fill(gram, gram + 16 * k, 0.0);
    std::fill(nsum, nsum + 3 * k, 0.0);
    std::fill(heights, heights + 2 * k, std::numeric_limits<float>::quiet_NaN());
    for (Py_ssize_t j = 0; j < k; ++j) {
      cols[2 * j] = W;
      cols[2 * j + 1] = -1;
    }
    const float pn0 = plane ? static_cast<float>(plane[0]) : 0.f, pn1 = plane ? static_cast<float>(plane[1]) : 0.f,
                pn2 = plane ? static_cast<float>(plane[2]) : 0.f, pd = plane ? static_cast<float>(plane[3]) : 0.f;
    // the point above each one along a short edge (its predecessor in t_v), -1 for none
    std::unique_ptr<int32_t[]> above(new int32_t[m]);
    for (int64_t i = 0; i < m; ++i) above[i] = -1;
    int64_t row_end = W;
    for (int64_t i = 0; i < m; ++i) {
      if (!kept(i)) continue;
      const int64_t p = mask[i];
      while (p >= row_end) row_end += W;
      const int64_t u = p - (row_end - W);
      const int32_t j = inst[i];
      const int64_t o = at[j]++;
      const float x = P[3 * p], y = P[3 * p + 1], z = P[3 * p + 2];
      index[o] = p;
      points[3 * o] = x;
      points[3 * o + 1] = y;
      points[3 * o + 2] = z;
      if (colours) std::memcpy(colours + 3 * o, rgb + 3 * p, 3);
      if (is_end(i)) ends[end_at[j]++] = o;
      // tangents as regions.py: t_u = (edge to the right) + (edge from the left), t_v = (edge from
      // above) + (edge below); an edge that is missing or not short counts as zero (a short edge
      // never leaves its component, so both ends of it are kept)
      float er[3] = {0.f, 0.f, 0.f}, el[3] = {0.f, 0.f, 0.f}, ea[3] = {0.f, 0.f, 0.f}, eb[3] = {0.f, 0.f, 0.f};
      if (edge[i] & SHORT_R)
        for (int c = 0; c < 3; ++c) er[c] = P[3 * (p + 1) + c] - P[3 * p + c];
      if (i > 0 && (edge[i - 1] & SHORT_R))
        for (int c = 0; c < 3; ++c) el[c] = P[3 * p + c] - P[3 * (p - 1) + c];
      if (above[i] >= 0) {
        const int64_t q = mask[above[i]];
        for (int c = 0; c < 3; ++c) ea[c] = P[3 * p + c] - P[3 * q + c];
      }
      if (edge[i] & SHORT_D) {
        const int64_t q = p + W;
        above[pos[q]] = static_cast<int32_t>(i);
        for (int c = 0; c < 3; ++c) eb[c] = P[3 * q + c] - P[3 * p + c];
      }
      const float tu0 = er[0] + el[0], tu1 = er[1] + el[1], tu2 = er[2] + el[2];
      const float tv0 = ea[0] + eb[0], tv1 = ea[1] + eb[1], tv2 = ea[2] + eb[2];
      float nx = tu1 * tv2;
      nx -= tu2 * tv1;
      float ny = tu2 * tv0;
      ny -= tu0 * tv2;
      float nz = tu0 * tv1;
      nz -= tu1 * tv0;
      normals[o] = nx;
      normals[N + o] = ny;
      normals[2 * N + o] = nz;
      float inv = -1.0f / len3(nx, ny, nz);
      if (!std::isfinite(inv)) inv = 0.f;
      nsum[3 * j] += nx * inv;
      nsum[3 * j + 1] += ny * inv;
      nsum[3 * j + 2] += nz * inv;
      sums[3 * j] += x;
      sums[3 * j + 1] += y;
      sums[3 * j + 2] += z;
      if (plane) {
        const float h = pn0 * x + pn1 * y + pn2 * z + pd;
        float* hj = heights + 2 * j;
        if (!(h >= hj[0])) hj[0] = h;  // NaN start: the first point sets both
        if (!(h <= hj[1])) hj[1] = h;
      }
      cols[2 * j] = std::min(cols[2 * j], u);
      cols[2 * j + 1] = std::max(cols[2 * j + 1], u);
    }
    // centred second moments per instance, from its grouped points
    int64_t start = 0;
    for (Py_ssize_t j = 0; j < k; ++j) {
      const int64_t c = counts[j];
      if (c) {
        const double mx = sums[3 * j] / c, my = sums[3 * j + 1] / c, mz = sums[3 * j + 2] / c;
        double s[10] = {0};
        for (int64_t o = start; o < start + c; ++o) {
          const double qx = points[3 * o] - mx, qy = points[3 * o + 1] - my, qz = points[3 * o + 2] - mz;
          const double q2 = qx * qx + qy * qy + qz * qz;
          s[0] += qx * qx; s[1] += qx * qy; s[2] += qx * qz; s[3] += qx * q2;
          s[4] += qy * qy; s[5] += qy * qz; s[6] += qy * q2;
          s[7] += qz * qz; s[8] += qz * q2;
          s[9] += q2 * q2;
        }
        static const int at4[4][4] = {{0, 1, 2, 3}, {1, 4, 5, 6}, {2, 5, 7, 8}, {3, 6, 8, 9}};
        for (int a = 0; a < 4; ++a)
          for (int b = 0; b < 4; ++b) gram[16 * j + 4 * a + b] = s[at4[a][b]];
      }
      start += c;
    }
  }
  Py_END_ALLOW_THREADS;
  if (total > N) {
    PyErr_Format(PyExc_ValueError, "collect: %lld kept points, only %zd allotted", (long long)total, N);
    return nullptr;
  }
  return Py_BuildValue("(LL)", (long long)total, (long long)total_ends);
}

PyMethodDef methods[] = {
    {"clean", clean, METH_VARARGS, "Masks, outliers and components of extract_regions (see the source)."},
    {"collect", collect, METH_VARARGS, "Kept points and per-instance sums of extract_regions (see the source)."},
    {nullptr, nullptr, 0, nullptr},
};

PyModuleDef module = {PyModuleDef_HEAD_INIT, "_regions_kernel",
                      "Compiled per-pixel loops of depth_perception.regions.extract_regions.", -1, methods,
                      nullptr, nullptr, nullptr, nullptr};

}  // namespace

PyMODINIT_FUNC PyInit__regions_kernel(void) { return PyModule_Create(&module); }
