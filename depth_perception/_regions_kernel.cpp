// Compiled per-pixel work of the regions cleaning pass (depth_perception/regions/cleaning.py,
// steps 1-5 of its docstring, numbered finer below; Python marks the dropped masks).
//
// Why C++: the numpy implementation (the reference, and the fallback when this module is not
// built) makes ~300 array passes per frame. Here the same steps are a few passes over the mask
// pixels ("positions", row-major), written as plain loops over contiguous arrays so the compiler
// vectorises the arithmetic; only the neighbour look-ups are scalar.
//
// Arithmetic follows regions/cleaning.py operation by operation in float32 (built with
// -ffp-contract=off), so both implementations keep the same points; per-instance sums are float64
// and may differ from numpy's in the last bits. test/test_regions_kernel.py holds the two against
// each other.
//
// Only the CPython C API and the buffer protocol are used (no numpy headers, no pybind11). Two
// calls per frame, with Python in between allocating the outputs:
//   clean(...)   masks, erosion, validity, support plane, depth edges, depth outliers,
//                statistical outliers, connected components, the largest component per instance
//                and the others that join it (an object split by an occluder);
//   collect(...) the kept points grouped by instance (row-major inside) with colours, grid
//                normals, row-run ends and per-instance sums (mean, 4x4 Gram, normals, heights).
// Compiling with -DDP_KERNEL_CORE_ONLY leaves out the Python layer (for a C++ benchmark).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <unordered_map>
#include <vector>

namespace dp {

struct Params {
  int64_t H = 0, W = 0;
  int erosion = 1, min_pixels = 50, outlier_k = 4;
  double ang = 0, std_ratio = 2, min_px = 3, gap_px = 6, gap_m = 0.01, plane_margin = 0.005, min_fraction = 0.1;
  double edge_m = 0.01, edge_px = 8, mad_k = 3.5, mad_floor = 0.01;
};

struct Instance {
  int32_t id = 0;
  int64_t mask_n = 0, valid_n = 0, behind_n = 0, low_n = 0;
  bool uneroded = false;
  int64_t best_root = -1, best_size = 0;
};

struct Candidate {
  int64_t j, root, size;
  bool joins = false;  // some point lies within the gap (3-D) of its instance's largest component
};

// Per-position arrays of one frame ("positions": the labelled pixels in row-major order), written
// by clean() and read by collect(), plus the temporaries of both. Kept from frame to frame (one per
// thread): fresh allocations of this size can come back from the allocator as untouched pages, and
// their first-touch faults cost as much as the arithmetic (a C++ benchmark of this file: ~740
// faults per VGA frame, 40 % of its time). resize() keeps the capacity.
struct Scratch {
  uint64_t generation = 0;
  int64_t H = 0, W = 0, m = 0;
  std::vector<int32_t> lut;  // per label id
  std::vector<int64_t> row_start;  // first position of each row (H + 1)
  std::vector<int32_t> mask, inst, col, down, root, size, above;
  std::vector<uint8_t> edge, use, state, cnt, inlier, inlier_below, kept, root_kept, is_end;
  std::vector<float> limit_at;  // the outlier limit of each position's instance
  std::vector<float> x, y, z, inv_foot, gap, xd, yd, zd, len_r, len_d, rel_r, rel_d, rel_u, mean_dist;
  std::vector<float> erx, ery, erz, edx, edy, edz, eux, euy, euz, nx, ny, nz, inv;
  std::vector<int32_t> diag[2];
  std::vector<float> rel_diag[2], rel_diag_in[2];
};

// v resized to n elements (values unspecified) / set to n copies of value. The capacity is kept
// from frame to frame, and given back when a frame needs much less than it holds (one large frame
// must not pin its memory for good).
template <class V>
inline void fit(V& v, size_t n) {
  if (v.capacity() > 4 * n + (size_t{1} << 16)) V().swap(v);
}
template <class V>
inline auto* sized(V& v, size_t n) {
  fit(v, n);
  v.resize(n);
  return v.data();
}
template <class V, class T>
inline auto* filled(V& v, size_t n, T value) {
  fit(v, n);
  v.assign(n, value);
  return v.data();
}

// The number of labelled pixels of each row (zero words skipped four pixels at a time: masks cover
// a small part of the image) as running totals: row_start[v] = first position of row v.
inline int64_t count_labelled(const uint16_t* __restrict lab, int64_t H, int64_t W, int64_t* __restrict row_start) {
  int64_t m = 0;
  for (int64_t v = 0; v < H; ++v) {
    row_start[v] = m;
    const uint16_t* row = lab + v * W;
    int64_t u = 0;
    for (; u + 4 <= W; u += 4) {
      uint64_t word;
      std::memcpy(&word, row + u, 8);
      if (!word) continue;
      m += (row[u] != 0) + (row[u + 1] != 0) + (row[u + 2] != 0) + (row[u + 3] != 0);
    }
    for (; u < W; ++u) m += row[u] != 0;
  }
  row_start[H] = m;
  return m;
}

// c ? v : 0 without a branch (GCC 12 vectorises bit operations but not float selects)
inline float if_set(bool c, float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, 4);
  bits &= 0u - static_cast<uint32_t>(c);
  std::memcpy(&v, &bits, 4);
  return v;
}

// edge flags: the grid edge to the right / below joins two used points of one instance (LINK_*),
// and two inliers closer than the cluster gap (SHORT_*); USE: the point is used at all
constexpr uint8_t LINK_R = 1, LINK_D = 2, SHORT_R = 4, SHORT_D = 8, USE = 16;

// the median of v (reordered), the mean of the two middle values for an even count (as numpy)
inline double median_of(std::vector<double>& v) {
  const size_t hi = v.size() / 2, lo = (v.size() - 1) / 2;
  std::nth_element(v.begin(), v.begin() + hi, v.end());
  const double b = v[hi];
  const double a = lo == hi ? b : *std::max_element(v.begin(), v.begin() + hi);
  return (a + b) / 2;
}

inline int32_t find_root(int32_t* parent, int32_t i) {
  while (parent[i] != i) {
    parent[i] = parent[parent[i]];  // path halving
    i = parent[i];
  }
  return i;
}

// True when the (2e+1)^2 window around (v, u) (clipped to the image, as cv2.erode's default
// border) holds label l only: the pixel survives the erosion of its mask.
inline bool survives_erosion(const uint16_t* lab, int64_t H, int64_t W, int64_t v, int64_t u, int e, uint16_t l) {
  constexpr bool little_endian = __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__;  // the mask below keeps lanes 0-2
  if (little_endian && e == 1 && u >= 1 && u + 3 <= W && v >= 1 && v + 1 < H) {
    // three rows of three labels: one 8-byte load per row, the fourth label masked off
    const uint64_t pattern = 0x000100010001ull * l, keep = 0xFFFFFFFFFFFFull;
    uint64_t a, b, c;
    std::memcpy(&a, lab + (v - 1) * W + u - 1, 8);
    std::memcpy(&b, lab + v * W + u - 1, 8);
    std::memcpy(&c, lab + (v + 1) * W + u - 1, 8);
    return !(((a ^ pattern) | (b ^ pattern) | (c ^ pattern)) & keep);
  }
  const int64_t v0 = std::max<int64_t>(v - e, 0), v1 = std::min<int64_t>(v + e, H - 1);
  const int64_t u0 = std::max<int64_t>(u - e, 0), u1 = std::min<int64_t>(u + e, W - 1);
  for (int64_t r = v0; r <= v1; ++r)
    for (const uint16_t *q = lab + r * W + u0, *end = lab + r * W + u1; q <= end; ++q)
      if (*q != l) return false;
  return true;
}

// -- the arithmetic passes: plain loops over restrict arrays, which the compiler vectorises (it
//    does not trust __restrict on local pointers, only on parameters) ------------------------------

// per point: state bits (1 finite, 2 in front, 4 below the plane margin), 1 / footprint, cluster gap
void point_terms(const float* __restrict x, const float* __restrict y, const float* __restrict z, int64_t count,
                 const float plane[4], bool has_plane, float margin, float ang, float gap_px, float gap_m,
                 uint8_t* __restrict state, float* __restrict inv_foot, float* __restrict gap) {
  for (int64_t i = 0; i < count; ++i) {
    const float s = x[i] + y[i] + z[i];
    const bool finite = std::fabs(s) <= std::numeric_limits<float>::max();
    const float h = plane[0] * x[i] + plane[1] * y[i] + plane[2] * z[i] + plane[3];
    state[i] = static_cast<uint8_t>(finite | ((z[i] > 0) << 1) | ((has_plane && h < margin) << 2));
    const float foot = z[i] * ang;
    inv_foot[i] = 1.0f / foot;
    gap[i] = std::max(foot * gap_px, gap_m);
  }
}

// |b[i] - a[i]| for count points, and that length in footprints where the link flag is set (else 0)
void edge_terms(const float* __restrict ax, const float* __restrict ay, const float* __restrict az,
                const float* __restrict bx, const float* __restrict by, const float* __restrict bz,
                const uint8_t* __restrict edge, uint8_t flag, const float* __restrict inv_foot, int64_t count,
                float* __restrict len, float* __restrict rel) {
  for (int64_t i = 0; i < count; ++i) {
    const float dx = bx[i] - ax[i], dy = by[i] - ay[i], dz = bz[i] - az[i];
    const float l = std::sqrt(dx * dx + dy * dy + dz * dz);
    len[i] = l;
    rel[i] = if_set(edge[i] & flag, l * inv_foot[i]);
  }
}

// the sum of the grid-edge lengths (footprints) at each point, in the order of cleaning.py: right,
// left, down, up; rel_r[-1] and rel_r of unlinked edges are 0
void neighbour_sums(const float* __restrict rel_r, const float* __restrict rel_d, const float* __restrict rel_u,
                    int64_t count, float* __restrict sum) {
  if (count) sum[0] = ((rel_r[0] + 0.f) + rel_d[0]) + rel_u[0];
  for (int64_t i = 1; i < count; ++i) {
    float s = rel_r[i];
    s += rel_r[i - 1];
    s += rel_d[i];
    s += rel_u[i];
    sum[i] = s;
  }
}

// edge[i] = USE | LINK_R where the next position is the next pixel of the row, of the same
// instance, and both are used (use has count + 1 entries, the last 0)
void right_links(const int32_t* __restrict mask, const int32_t* __restrict col, const int32_t* __restrict inst,
                 const uint8_t* __restrict use, int32_t W, int64_t count, uint8_t* __restrict edge) {
  for (int64_t i = 0; i + 1 < count; ++i) {
    const bool r = (mask[i + 1] == mask[i] + 1) & (col[i] != W - 1) & (inst[i + 1] == inst[i]) & (use[i] != 0) &
                   (use[i + 1] != 0);
    edge[i] = static_cast<uint8_t>((use[i] ? USE : 0) | (r ? LINK_R : 0));
  }
  if (count) edge[count - 1] = use[count - 1] ? USE : 0;
}

// SHORT_R / SHORT_D where a link joins two inliers closer than the first one's gap (inlier has
// count + 1 entries, the last 0; inlier_below: the point below is an inlier)
void short_edges(const uint8_t* __restrict inlier, const uint8_t* __restrict inlier_below,
                 const float* __restrict len_r, const float* __restrict len_d, const float* __restrict gap,
                 int64_t count, uint8_t* __restrict edge) {
  // written with 0/1 bytes and shifts: the compiler vectorises that, not the same with bools
  static_assert(LINK_R == 1 && LINK_D == 2 && SHORT_R == 4 && SHORT_D == 8, "flag bits");
  for (int64_t i = 0; i < count; ++i) {
    const uint8_t near_r = static_cast<uint8_t>(len_r[i] < gap[i]);
    const uint8_t near_d = static_cast<uint8_t>(len_d[i] < gap[i]);
    const uint8_t r = (edge[i] & 1) & inlier[i] & inlier[i + 1] & near_r;
    const uint8_t d = ((edge[i] >> 1) & 1) & inlier[i] & inlier_below[i] & near_d;
    edge[i] = static_cast<uint8_t>(edge[i] | (r << 2) | (d << 3));
  }
}

// count[i] += the links right, left and down of each point
void link_counts(const uint8_t* __restrict edge, int64_t n, uint8_t* __restrict count) {
  if (n) count[0] += static_cast<uint8_t>((edge[0] & LINK_R) + ((edge[0] & LINK_D) >> 1));
  for (int64_t i = 1; i < n; ++i)
    count[i] += static_cast<uint8_t>((edge[i] & LINK_R) + ((edge[i] & LINK_D) >> 1) + (edge[i - 1] & LINK_R));
}

// inlier[i]: used, with grid neighbours, mean edge length within its instance's limit
void inliers(const uint8_t* __restrict edge, const uint8_t* __restrict count, const float* __restrict mean_dist,
             const float* __restrict limit, int64_t n, uint8_t* __restrict inlier) {
  for (int64_t i = 0; i < n; ++i)
    inlier[i] = static_cast<uint8_t>(((edge[i] & USE) != 0) & (count[i] != 0) & (mean_dist[i] <= limit[i]));
}

// sum[i] / max(count[i], 1), in place or not
void mean_of(const float* sum, const uint8_t* __restrict count, int64_t n, float* mean) {
  for (int64_t i = 0; i < n; ++i) mean[i] = sum[i] / static_cast<float>(count[i] > 1 ? count[i] : 1);
}

// t_u x t_v and -1 / |t_u x t_v| (0 where undefined) per point: t_u = e_r[i + 1] + e_r[i] (edge to
// the right + edge from the left, stored shifted by one), t_v = e_u + e_d (from above + below)
void grid_normals(const float* __restrict erx, const float* __restrict ery, const float* __restrict erz,
                  const float* __restrict eux, const float* __restrict euy, const float* __restrict euz,
                  const float* __restrict edx, const float* __restrict edy, const float* __restrict edz,
                  int64_t count, float* __restrict nx, float* __restrict ny, float* __restrict nz,
                  float* __restrict inv) {
  for (int64_t i = 0; i < count; ++i) {
    const float tu0 = erx[i + 1] + erx[i], tu1 = ery[i + 1] + ery[i], tu2 = erz[i + 1] + erz[i];
    const float tv0 = eux[i] + edx[i], tv1 = euy[i] + edy[i], tv2 = euz[i] + edz[i];
    float cx = tu1 * tv2;
    cx -= tu2 * tv1;
    float cy = tu2 * tv0;
    cy -= tu0 * tv2;
    float cz = tu0 * tv1;
    cz -= tu1 * tv0;
    nx[i] = cx;
    ny[i] = cy;
    nz[i] = cz;
    const float r = -1.0f / std::sqrt(cx * cx + cy * cy + cz * cz);
    inv[i] = if_set(std::fabs(r) <= std::numeric_limits<float>::max(), r);
  }
}

// e_r at i + 1: the edge i -> i + 1 where the flag is set, else 0
void right_edges(const float* __restrict x, const uint8_t* __restrict edge, uint8_t flag, int64_t count,
                 float* __restrict er) {
  for (int64_t i = 0; i + 1 < count; ++i) er[i + 1] = if_set(edge[i] & flag, x[i + 1] - x[i]);
}

// Which candidate components come within the gap of their instance's largest component in 3-D,
// as cleaning.py decides with a k-d tree: some point of the candidate closer
// than the largest gap among the candidate's points to some point of the largest component. A
// hash of the largest component's points in cells of that size, and the 27 cells around each
// candidate point. Rare (objects split by an occluder), so plain containers.
inline void join_near_candidates(const Scratch& a, const std::vector<Instance>& instances,
                                 std::vector<Candidate>& candidates) {
  const int64_t m = a.m;
  const int32_t* root = a.root.data();
  const int32_t* inst = a.inst.data();
  const float *x = a.x.data(), *y = a.y.data(), *z = a.z.data(), *gap = a.gap.data();
  // the points of every candidate and of the largest component of every instance that has one
  std::vector<int32_t> tag(m, 0);  // at a root: 1 + candidate index, or -1 for a largest component
  for (size_t c = 0; c < candidates.size(); ++c) {
    tag[candidates[c].root] = static_cast<int32_t>(c + 1);
    tag[instances[candidates[c].j].best_root] = -1;
  }
  std::vector<std::vector<int32_t>> members(candidates.size());
  std::vector<std::vector<int32_t>> largest(instances.size());
  for (int64_t i = 0; i < m; ++i) {
    if (root[i] < 0) continue;
    const int32_t t = tag[root[i]];
    if (t > 0) members[t - 1].push_back(static_cast<int32_t>(i));
    else if (t < 0) largest[inst[i]].push_back(static_cast<int32_t>(i));
  }
  for (size_t c = 0; c < candidates.size(); ++c) {
    double bound = 0;
    for (int32_t i : members[c]) bound = std::max(bound, static_cast<double>(gap[i]));
    const std::vector<int32_t>& near = largest[candidates[c].j];
    if (!(bound > 0) || near.empty()) continue;
    auto cell = [&](int32_t i, int dx, int dy, int dz) {
      const int64_t cx = static_cast<int64_t>(std::floor(x[i] / bound)) + dx;
      const int64_t cy = static_cast<int64_t>(std::floor(y[i] / bound)) + dy;
      const int64_t cz = static_cast<int64_t>(std::floor(z[i] / bound)) + dz;
      return (static_cast<uint64_t>(cx & 0x1FFFFF) << 42) | (static_cast<uint64_t>(cy & 0x1FFFFF) << 21) |
             static_cast<uint64_t>(cz & 0x1FFFFF);
    };
    std::unordered_map<uint64_t, std::vector<int32_t>> cells;
    cells.reserve(near.size());
    for (int32_t i : near) cells[cell(i, 0, 0, 0)].push_back(i);
    const double bound2 = bound * bound;
    bool joins = false;
    for (size_t n_i = 0; n_i < members[c].size() && !joins; ++n_i) {
      const int32_t i = members[c][n_i];
      for (int d = 0; d < 27 && !joins; ++d) {
        const auto it = cells.find(cell(i, d % 3 - 1, d / 3 % 3 - 1, d / 9 - 1));
        if (it == cells.end()) continue;
        for (int32_t q : it->second) {
          const double dx = static_cast<double>(x[q]) - x[i], dy = static_cast<double>(y[q]) - y[i],
                       dz = static_cast<double>(z[q]) - z[i];
          if (dx * dx + dy * dy + dz * dz < bound2) {
            joins = true;
            break;
          }
        }
      }
    }
    candidates[c].joins = joins;
  }
}

// Steps 1-6: returns m, the number of labelled pixels; fills `instances` (in id order) and
// `candidates` (other components large enough to join their instance's largest one).
inline int64_t clean(const float* __restrict P, const uint16_t* __restrict lab, const double* plane, const Params& prm, Scratch& a,
                     std::vector<Instance>& instances, std::vector<Candidate>& candidates) {
  const int64_t H = prm.H, W = prm.W;
  a.H = H;
  a.W = W;
  int64_t* __restrict row_start = sized(a.row_start, H + 1);
  const int64_t m_all = count_labelled(lab, H, W, row_start);  // every array below is sized to it
  int32_t* __restrict mask = sized(a.mask, m_all);
  int32_t* __restrict inst = sized(a.inst, m_all);
  int32_t* __restrict col = sized(a.col, m_all);
  uint8_t* __restrict edge = sized(a.edge, m_all);
  uint8_t* __restrict use = sized(a.use, m_all + 1);
  float* __restrict x = sized(a.x, m_all);
  float* __restrict y = sized(a.y, m_all);
  float* __restrict z = sized(a.z, m_all);

  // 1. the labelled pixels, row by row (the rows counted above), with their coordinates (SoA);
  //    instances in order of first appearance; mask sizes, erosion survivors
  int32_t* __restrict lut = filled(a.lut, 65536, -1);
  std::vector<Instance> seen;
  int64_t m = 0;
  {
    uint16_t last = 0;  // the current instance's label, index and counts, held in registers
    int32_t cur = -1;
    int64_t mask_n = 0;
    auto flush = [&]() {
      if (cur < 0) return;
      seen[cur].mask_n += mask_n;
      mask_n = 0;
    };
    for (int64_t v = 0; v < H; ++v) {
      if (row_start[v + 1] == row_start[v]) continue;  // nothing labelled in this row
      const uint16_t* __restrict row = lab + v * W;
      for (int64_t u = 0; u < W;) {
        if (u + 4 <= W) {
          uint64_t word;
          std::memcpy(&word, row + u, 8);
          if (!word) {
            u += 4;
            continue;
          }
        }
        const int64_t stop = std::min<int64_t>(u + 4, W);
        for (; u < stop; ++u) {
          const uint16_t l = row[u];
          if (!l) continue;
          if (l != last) {  // counts of the last instance to its record, the new one's looked up
            flush();
            last = l;
            cur = lut[l];
            if (cur < 0) {
              cur = lut[l] = static_cast<int32_t>(seen.size());
              Instance s;
              s.id = l;
              seen.push_back(s);
            }
          }
          const bool survives = prm.erosion <= 0 || survives_erosion(lab, H, W, v, u, prm.erosion, l);
          ++mask_n;
          const int64_t p = v * W + u;
          mask[m] = static_cast<int32_t>(p);
          x[m] = P[3 * p];
          y[m] = P[3 * p + 1];
          z[m] = P[3 * p + 2];
          inst[m] = cur;
          col[m] = static_cast<int32_t>(u);
          use[m] = survives;  // for now; step 2 decides
          ++m;
        }
      }
    }
    flush();
  }
  a.m = m;  // == m_all
  const size_t k = seen.size();
  if (!k) {
    instances.clear();
    a.m = 0;
    return 0;
  }
  {  // dense instance indices in id order
    std::vector<int32_t> order(k), rank(k);
    for (size_t j = 0; j < k; ++j) order[j] = static_cast<int32_t>(j);
    std::sort(order.begin(), order.end(), [&](int32_t p, int32_t q) { return seen[p].id < seen[q].id; });
    instances.resize(k);
    for (size_t j = 0; j < k; ++j) {
      rank[order[j]] = static_cast<int32_t>(j);
      instances[j] = seen[order[j]];
    }
    for (int64_t i = 0; i < m; ++i) inst[i] = rank[inst[i]];
  }

  // 2. validity, support plane, footprints (coordinates were copied while listing); then the
  //    points in use
  const float pn0 = plane ? static_cast<float>(plane[0]) : 0.f, pn1 = plane ? static_cast<float>(plane[1]) : 0.f,
              pn2 = plane ? static_cast<float>(plane[2]) : 0.f, pd = plane ? static_cast<float>(plane[3]) : 0.f;
  const float margin = static_cast<float>(prm.plane_margin), angf = static_cast<float>(prm.ang);
  const float gpx = static_cast<float>(prm.gap_px), gm = static_cast<float>(prm.gap_m);
  uint8_t* __restrict state = sized(a.state, m);  // bit 0 finite, bit 1 in front, bit 2 below the plane margin
  float* __restrict inv_foot = sized(a.inv_foot, m);
  float* __restrict gap = sized(a.gap, m);
  const float plane32[4] = {pn0, pn1, pn2, pd};
  point_terms(x, y, z, m, plane32, plane != nullptr, margin, angf, gpx, gm, state, inv_foot, gap);
  {  // too small to erode: fewer than min_pixels survivors with valid depth
    std::vector<int64_t> survivors(k, 0);
    for (int64_t i = 0; i < m; ++i) survivors[inst[i]] += use[i] && (state[i] & 3) == 3;
    for (size_t j = 0; j < k; ++j) instances[j].uneroded = prm.erosion > 0 && survivors[j] < prm.min_pixels;
  }
  {
    // per-instance counts in registers while the instance stays the same (positions are
    // row-major: it changes a few times per row), flushed when it changes
    int32_t cur = -1;
    int64_t valid_n = 0, behind_n = 0, low_n = 0;
    bool uneroded = false;
    auto flush = [&]() {
      if (cur < 0) return;
      Instance& s = instances[cur];
      s.valid_n += valid_n;
      s.behind_n += behind_n;
      s.low_n += low_n;
      valid_n = behind_n = low_n = 0;
    };
    for (int64_t i = 0; i < m; ++i) {
      if (inst[i] != cur) {
        flush();
        cur = inst[i];
        uneroded = instances[cur].uneroded;
      }
      const uint8_t st = state[i];
      const bool valid = (st & 3) == 3;
      valid_n += valid;
      behind_n += (st & 3) == 1;  // finite, not in front
      const bool eroded_ok = uneroded || use[i];
      const bool low = valid && eroded_ok && (st & 4);
      low_n += low;
      use[i] = valid && eroded_ok && !low;
    }
    flush();
  }
  {  // depth edges: a 4-neighbour, of any mask or none, whose depth differs by more than the
     // smaller of the two pixels' max(edge_m, edge_px · z · ang); neighbours without depth do not
     // count (NaN compares false)
    const float jpx = static_cast<float>(prm.edge_px * prm.ang), jm = static_cast<float>(prm.edge_m);
    for (int64_t i = 0; i < m; ++i) {
      if (!use[i]) continue;
      const int64_t p = mask[i], u = col[i];
      const float zi = z[i], thr = std::max(zi * jpx, jm);
      auto jumps = [&](int64_t q) {
        const float zq = P[3 * q + 2];
        return std::fabs(zq - zi) > std::min(thr, std::max(zq * jpx, jm));
      };
      const bool edge = (u + 1 < W && jumps(p + 1)) || (u > 0 && jumps(p - 1)) || (p + W < H * W && jumps(p + W)) ||
                        (p >= W && jumps(p - W));
      use[i] = !edge;
    }
  }
  {  // depth outliers: farther from the mask's median depth (float64) than max(mad_k x 1.4826 x
     // MAD, mad_floor)
    std::vector<std::vector<double>> depths(k);
    for (int64_t i = 0; i < m; ++i)
      if (use[i]) depths[inst[i]].push_back(z[i]);
    std::vector<double> median(k, 0.0), limit(k, 0.0);
    for (size_t j = 0; j < k; ++j) {
      std::vector<double>& v = depths[j];
      if (v.empty()) continue;
      median[j] = median_of(v);
      for (double& d : v) d = std::fabs(d - median[j]);
      limit[j] = std::max(prm.mad_k * 1.4826 * median_of(v), prm.mad_floor);
    }
    for (int64_t i = 0; i < m; ++i)
      if (use[i] && std::fabs(static_cast<double>(z[i]) - median[inst[i]]) > limit[inst[i]]) use[i] = 0;
  }

  // 3. grid edges between used points of one instance: right is the next position, down is
  //    found by walking the next row; each length once (vectorised after the look-ups)
  int32_t* __restrict down = sized(a.down, m);
  use[m] = 0;
  right_links(mask, col, inst, use, static_cast<int32_t>(W), m, edge);
  float* __restrict xd = sized(a.xd, m);
  float* __restrict yd = sized(a.yd, m);
  float* __restrict zd = sized(a.zd, m);
  // positions are sorted by (row, column): walk the row below alongside each row
  for (int64_t v = 0; v < H; ++v) {
    int64_t j = row_start[v + 1];
    const int64_t end = v + 1 < H ? row_start[v + 2] : j;
    for (int64_t i = row_start[v]; i < row_start[v + 1]; ++i) {
      while (j < end && col[j] < col[i]) ++j;
      const bool linked = j < end && col[j] == col[i] && inst[j] == inst[i] && (edge[i] & USE) && (edge[j] & USE);
      const int32_t t = linked ? static_cast<int32_t>(j) : static_cast<int32_t>(i);
      down[i] = linked ? t : -1;
      xd[i] = x[t];
      yd[i] = y[t];
      zd[i] = z[t];
      edge[i] |= linked ? LINK_D : 0;
    }
  }
  float* __restrict len_r = sized(a.len_r, m);
  float* __restrict len_d = sized(a.len_d, m);
  float* __restrict rel_r = sized(a.rel_r, m);
  float* __restrict rel_d = sized(a.rel_d, m);
  if (m) edge_terms(x, y, z, x + 1, y + 1, z + 1, edge, LINK_R, inv_foot, m - 1, len_r, rel_r);
  if (m) len_r[m - 1] = rel_r[m - 1] = 0.f;
  edge_terms(x, y, z, xd, yd, zd, edge, LINK_D, inv_foot, m, len_d, rel_d);
  // the edge into each point from above (one per direction)
  float* __restrict rel_u = filled(a.rel_u, m, 0.f);
  uint8_t* __restrict cnt = filled(a.cnt, m, 0);
  for (int64_t i = 0; i < m; ++i)
    if (edge[i] & LINK_D) {
      rel_u[down[i]] = rel_d[i];
      cnt[down[i]] = 1;
    }
  // diagonals (outlier_k == 8): look-ups and lengths in one scalar loop, rarely used
  std::vector<int32_t>* diag = a.diag;
  std::vector<float>*rel_diag = a.rel_diag, *rel_diag_in = a.rel_diag_in;
  if (prm.outlier_k == 8) {
    for (int d = 0; d < 2; ++d) {
      diag[d].assign(m, -1);
      rel_diag[d].assign(m, 0.f);
      rel_diag_in[d].assign(m, 0.f);
      for (int64_t i = 0; i < m; ++i) {
        if (!(edge[i] & USE)) continue;
        if (d == 0 ? col[i] >= W - 1 : col[i] <= 0) continue;
        const int64_t v = (mask[i] - col[i]) / W;
        if (v + 1 >= H) continue;
        const int32_t* b = col + row_start[v + 1], *e = col + row_start[v + 2];
        const int32_t* at = std::lower_bound(b, e, col[i] + (d == 0 ? 1 : -1));
        if (at == e || *at != col[i] + (d == 0 ? 1 : -1)) continue;
        const int32_t t = static_cast<int32_t>(at - col);
        if (inst[t] != inst[i] || !(edge[t] & USE)) continue;
        diag[d][i] = t;
        const float dx = x[t] - x[i], dy = y[t] - y[i], dz = z[t] - z[i];
        rel_diag[d][i] = std::sqrt(dx * dx + dy * dy + dz * dz) * inv_foot[i];
        rel_diag_in[d][t] = rel_diag[d][i];
        ++cnt[t];
      }
    }
  }

  // 4. statistical outlier removal: the mean edge length in footprints, summed in the order of
  //    cleaning.py (right, left, down, up, then per diagonal out and in)
  float* __restrict mean_dist = sized(a.mean_dist, m);
  neighbour_sums(rel_r, rel_d, rel_u, m, mean_dist);
  link_counts(edge, m, cnt);
  if (prm.outlier_k == 8) {
    for (int64_t i = 0; i < m; ++i) {
      float sum = mean_dist[i];
      for (int d = 0; d < 2; ++d) {
        sum += rel_diag[d][i];
        sum += rel_diag_in[d][i];
        cnt[i] += diag[d][i] >= 0;
      }
      mean_dist[i] = sum;
    }
  }
  mean_of(mean_dist, cnt, m, mean_dist);
  std::vector<double> has_n(k, 0), sum1(k, 0), sum2(k, 0);
  {
    int32_t cur = inst[0];  // m > 0: there are instances
    double n1 = 0, s1 = 0, s2 = 0;
    for (int64_t i = 0; i < m; ++i) {
      if (inst[i] != cur) {  // flush the sums of the last instance
        has_n[cur] += n1;
        sum1[cur] += s1;
        sum2[cur] += s2;
        n1 = s1 = s2 = 0;
        cur = inst[i];
      }
      const float md = mean_dist[i];
      const bool has = (edge[i] & USE) && cnt[i];
      n1 += has;
      s1 += has ? md : 0.f;
      s2 += has ? static_cast<double>(md * md) : 0.0;
    }
    has_n[cur] += n1;
    sum1[cur] += s1;
    sum2[cur] += s2;
  }
  std::vector<float> limit(k);
  for (size_t j = 0; j < k; ++j) {
    const double mu = sum1[j] / has_n[j];
    const double sd = std::sqrt(std::max(sum2[j] / has_n[j] - mu * mu, 0.0));
    const double lim = mu + prm.std_ratio * sd;
    limit[j] = static_cast<float>(std::isnan(lim) ? lim : std::max(lim, prm.min_px));
  }
  uint8_t* __restrict inlier = filled(a.inlier, m + 1, 0);
  float* __restrict limit_at = sized(a.limit_at, m);
  for (int64_t i = 0; i < m; ++i) limit_at[i] = limit[inst[i]];
  inliers(edge, cnt, mean_dist, limit_at, m, inlier);

  // 5. connected components of the inliers over edges shorter than the gap of their first point.
  //    Right-linked inliers form runs (parent = the run's first position); down edges join runs,
  //    one union per pair of runs where a link starts; the root is a component's first position.
  int32_t* __restrict root = sized(a.root, m);
  uint8_t* __restrict inlier_below = sized(a.inlier_below, m);
  for (int64_t i = 0; i < m; ++i) inlier_below[i] = down[i] >= 0 && inlier[down[i]];
  short_edges(inlier, inlier_below, len_r, len_d, gap, m, edge);
  root[0] = inlier[0] ? 0 : -1;
  for (int64_t i = 1; i < m; ++i)
    root[i] = !inlier[i] ? -1 : (edge[i - 1] & SHORT_R) ? root[i - 1] : static_cast<int32_t>(i);
  auto join = [&](int32_t p, int32_t q) {
    p = find_root(root, p);
    q = find_root(root, q);
    if (p < q) root[q] = p;
    else if (q < p) root[p] = q;
  };
  for (int64_t i = 0; i < m; ++i) {
    if (!(edge[i] & SHORT_D)) continue;
    // along a run, consecutive links reach consecutive points below: the same pair of runs
    const bool same_pair = i > 0 && (edge[i - 1] & SHORT_R) && (edge[i - 1] & SHORT_D) &&
                           (edge[down[i - 1]] & SHORT_R) && down[i - 1] + 1 == down[i];
    if (!same_pair) join(static_cast<int32_t>(i), down[i]);
  }
  if (prm.outlier_k == 8)
    for (int d = 0; d < 2; ++d)
      for (int64_t i = 0; i < m; ++i) {
        const int32_t t = diag[d][i];
        if (t < 0 || !inlier[i] || !inlier[t]) continue;
        const float dx = x[t] - x[i], dy = y[t] - y[i], dz = z[t] - z[i];
        if (std::sqrt(dx * dx + dy * dy + dz * dz) < gap[i]) join(static_cast<int32_t>(i), t);
      }
  // every inlier to its root: a parent precedes its child, so it is final already
  int32_t* __restrict size = filled(a.size, m, 0);
  for (int64_t i = 0; i < m; ++i) {
    if (root[i] < 0) continue;
    root[i] = root[root[i]];
    ++size[root[i]];
  }

  // 6. the largest component per instance (ties: the later one, as cleaning.py) and the others
  //    large enough to join it when they come within the gap (an object split by an occluder)
  std::vector<int64_t> roots;
  for (int64_t i = 0; i < m; ++i) {
    if (root[i] != i) continue;
    roots.push_back(i);
    Instance& s = instances[inst[i]];
    if (size[i] >= s.best_size) {
      s.best_size = size[i];
      s.best_root = i;
    }
  }
  for (int64_t r : roots) {
    const Instance& s = instances[inst[r]];
    if (r != s.best_root && size[r] > 1 && size[r] >= prm.min_fraction * static_cast<double>(s.best_size))
      candidates.push_back({inst[r], r, size[r]});
  }
  if (!candidates.empty()) join_near_candidates(a, instances, candidates);
  return m;
}

struct Collected {
  int64_t* index;      // (N,) pixel
  float* points;       // (N, 3)
  float* normals;      // (3, N) t_u x t_v, not normalised
  uint8_t* colours;    // (N, 3) or null
  int64_t* ends;       // (N,) output indices of row-run ends, grouped by instance
  int64_t* counts;     // (k,)
  int64_t* end_counts; // (k,)
  double* sums;        // (k, 3)
  double* gram;        // (k, 4, 4) sums of (q, |q|^2) outer products, q = p - mean
  double* normal_sums; // (k, 3) sums of the camera-facing unit normals (-n / |n|; 0 where n = 0)
  float* heights;      // (k, 2) lowest / highest above the plane, NaN without plane or points
  int64_t* cols;       // (k, 2) leftmost / rightmost column
};

// Step 7-8 for the kept components (keep_roots: the first k are each instance's largest, -1 for
// none, then those that joined one). Returns the number of kept points, or -1 when more than N.
inline int64_t collect(const uint8_t* __restrict rgb, const double* plane, Scratch& a, int64_t k, const int32_t* keep_roots,
                       int64_t n_roots, int64_t N, const Collected& out) {
  const int64_t W = a.W, m = a.m;
  const int32_t* __restrict root = a.root.data();
  const uint8_t* __restrict edge = a.edge.data();
  const int32_t* __restrict down = a.down.data();
  const int32_t* __restrict inst = a.inst.data();
  const float* __restrict x = a.x.data();
  const float* __restrict y = a.y.data();
  const float* __restrict z = a.z.data();
  uint8_t* __restrict root_kept = filled(a.root_kept, m + 1, 0);
  uint8_t* __restrict kept = filled(a.kept, m + 1, 0);
  for (int64_t r = 0; r < n_roots; ++r)
    if (keep_roots[r] >= 0 && keep_roots[r] < m) root_kept[keep_roots[r]] = 1;
  for (int64_t i = 0; i < m; ++i) kept[i] = root[i] >= 0 && root_kept[root[i]];

  // counts first, so that every instance's points are written in place; a row-run end is a kept
  // point whose two row neighbours are not both kept points of its instance
  uint8_t* __restrict is_end = sized(a.is_end, m);
  std::fill(out.counts, out.counts + k, 0);
  std::fill(out.end_counts, out.end_counts + k, 0);
  for (int64_t i = 0; i < m; ++i) {
    const bool inner = i > 0 && (edge[i - 1] & LINK_R) && kept[i - 1] && (edge[i] & LINK_R) && kept[i + 1];
    is_end[i] = kept[i] && !inner;
    out.counts[inst[i]] += kept[i];
    out.end_counts[inst[i]] += is_end[i];
  }
  int64_t total = 0, total_ends = 0;
  std::vector<int64_t> at(k), end_at(k);
  for (int64_t j = 0; j < k; ++j) {
    at[j] = total;
    end_at[j] = total_ends;
    total += out.counts[j];
    total_ends += out.end_counts[j];
  }
  if (total > N) return -1;

  // tangents for every position as cleaning.py: t_u = (edge to the right) + (edge from the left),
  // t_v = (edge from above) + (edge below), an edge that is not short counting as zero (a short
  // edge never leaves its component: both of its ends are kept or neither)
  float* __restrict erx = filled(a.erx, m + 1, 0.f);  // e(i -> i + 1) at i + 1
  float* __restrict ery = filled(a.ery, m + 1, 0.f);
  float* __restrict erz = filled(a.erz, m + 1, 0.f);
  right_edges(x, edge, SHORT_R, m, erx);
  right_edges(y, edge, SHORT_R, m, ery);
  right_edges(z, edge, SHORT_R, m, erz);
  float* __restrict edx = filled(a.edx, m + 1, 0.f);  // e(i -> below) at i; 0 at m
  float* __restrict edy = filled(a.edy, m + 1, 0.f);
  float* __restrict edz = filled(a.edz, m + 1, 0.f);
  int32_t* __restrict above = filled(a.above, m, static_cast<int32_t>(m));  // m: the zero entry
  for (int64_t i = 0; i < m; ++i) {
    if (!(edge[i] & SHORT_D)) continue;
    const int32_t t = down[i];
    edx[i] = x[t] - x[i];
    edy[i] = y[t] - y[i];
    edz[i] = z[t] - z[i];
    above[t] = static_cast<int32_t>(i);
  }
  float* __restrict nx = sized(a.nx, m);
  float* __restrict ny = sized(a.ny, m);
  float* __restrict nz = sized(a.nz, m);
  float* __restrict inv = sized(a.inv, m);
  float* __restrict eux = sized(a.eux, m);  // e(above -> i) at i
  float* __restrict euy = sized(a.euy, m);
  float* __restrict euz = sized(a.euz, m);
  for (int64_t i = 0; i < m; ++i) {
    const int32_t u = above[i];
    eux[i] = edx[u];
    euy[i] = edy[u];
    euz[i] = edz[u];
  }
  grid_normals(erx, ery, erz, eux, euy, euz, edx, edy, edz, m, nx, ny, nz, inv);

  // the kept points, grouped by instance, and the per-instance sums
  std::fill(out.sums, out.sums + 3 * k, 0.0);
  std::fill(out.gram, out.gram + 16 * k, 0.0);
  std::fill(out.normal_sums, out.normal_sums + 3 * k, 0.0);
  std::fill(out.heights, out.heights + 2 * k, std::numeric_limits<float>::quiet_NaN());
  for (int64_t j = 0; j < k; ++j) {
    out.cols[2 * j] = W;
    out.cols[2 * j + 1] = -1;
  }
  const float pn0 = plane ? static_cast<float>(plane[0]) : 0.f, pn1 = plane ? static_cast<float>(plane[1]) : 0.f,
              pn2 = plane ? static_cast<float>(plane[2]) : 0.f, pd = plane ? static_cast<float>(plane[3]) : 0.f;
  const int32_t* __restrict mask = a.mask.data();
  const int32_t* __restrict col = a.col.data();
  int64_t* __restrict index = out.index;
  float* __restrict points = out.points;
  float* __restrict normals = out.normals;
  uint8_t* __restrict colours = out.colours;
  int64_t* __restrict ends = out.ends;
  // the current instance's write cursors and sums live in registers (positions are row-major:
  // the instance changes a few times per row) and are flushed when it changes
  struct Running {
    int32_t j = -1;
    int64_t o = 0, e = 0, c0 = 0, c1 = 0;
    double s[3] = {0, 0, 0}, ns[3] = {0, 0, 0};
    float h0 = 0, h1 = 0;
  } r;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  auto flush = [&]() {
    if (r.j < 0) return;
    const int32_t j = r.j;
    at[j] = r.o;
    end_at[j] = r.e;
    for (int c = 0; c < 3; ++c) {
      out.sums[3 * j + c] += r.s[c];
      out.normal_sums[3 * j + c] += r.ns[c];
    }
    float* hj = out.heights + 2 * j;
    if (plane && !(r.h0 >= hj[0])) hj[0] = r.h0;  // NaN start: the first flush sets both
    if (plane && !(r.h1 <= hj[1])) hj[1] = r.h1;
    out.cols[2 * j] = std::min<int64_t>(out.cols[2 * j], r.c0);
    out.cols[2 * j + 1] = std::max<int64_t>(out.cols[2 * j + 1], r.c1);
  };
  for (int64_t i = 0; i < m; ++i) {
    if (!kept[i]) continue;
    if (inst[i] != r.j) {
      flush();
      r = Running();
      r.j = inst[i];
      r.o = at[r.j];
      r.e = end_at[r.j];
      r.c0 = W;
      r.c1 = -1;
      r.h0 = r.h1 = nan;
    }
    const int64_t o = r.o++, p = mask[i];
    const float px = x[i], py = y[i], pz = z[i];
    index[o] = p;
    points[3 * o] = px;
    points[3 * o + 1] = py;
    points[3 * o + 2] = pz;
    if (colours) std::memcpy(colours + 3 * o, rgb + 3 * p, 3);
    if (is_end[i]) ends[r.e++] = o;
    normals[o] = nx[i];
    normals[N + o] = ny[i];
    normals[2 * N + o] = nz[i];
    r.ns[0] += nx[i] * inv[i];
    r.ns[1] += ny[i] * inv[i];
    r.ns[2] += nz[i] * inv[i];
    r.s[0] += px;
    r.s[1] += py;
    r.s[2] += pz;
    if (plane) {
      const float h = pn0 * px + pn1 * py + pn2 * pz + pd;
      if (!(h >= r.h0)) r.h0 = h;  // NaN start: the first point sets both
      if (!(h <= r.h1)) r.h1 = h;
    }
    r.c0 = std::min<int64_t>(r.c0, col[i]);
    r.c1 = std::max<int64_t>(r.c1, col[i]);
  }
  flush();
  // centred second moments per instance, from its grouped points
  int64_t start = 0;
  for (int64_t j = 0; j < k; ++j) {
    const int64_t c = out.counts[j];
    if (c) {
      const double mx = out.sums[3 * j] / c, my = out.sums[3 * j + 1] / c, mz = out.sums[3 * j + 2] / c;
      double s[10] = {0};
      for (int64_t o = start; o < start + c; ++o) {
        const double qx = out.points[3 * o] - mx, qy = out.points[3 * o + 1] - my, qz = out.points[3 * o + 2] - mz;
        const double q2 = qx * qx + qy * qy + qz * qz;
        s[0] += qx * qx; s[1] += qx * qy; s[2] += qx * qz; s[3] += qx * q2;
        s[4] += qy * qy; s[5] += qy * qz; s[6] += qy * q2;
        s[7] += qz * qz; s[8] += qz * q2;
        s[9] += q2 * q2;
      }
      static const int at4[4][4] = {{0, 1, 2, 3}, {1, 4, 5, 6}, {2, 5, 7, 8}, {3, 6, 8, 9}};
      for (int row = 0; row < 4; ++row)
        for (int c2 = 0; c2 < 4; ++c2) out.gram[16 * j + 4 * row + c2] = s[at4[row][c2]];
    }
    start += c;
  }
  return total;
}

}  // namespace dp

#ifndef DP_KERNEL_CORE_ONLY
#define PY_SSIZE_T_CLEAN
#include <Python.h>

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
  // C-contiguous buffer of at least `bytes` bytes, writable for outputs; None where `optional`.
  // Sets a Python error and returns false otherwise.
  bool get(PyObject* obj, Py_ssize_t bytes, bool writable, const char* name, bool optional = false) {
    if (obj == Py_None && optional) return true;
    if (PyObject_GetBuffer(obj, &view, PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0)) != 0) return false;
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


// The scratch of this thread: clean() fills it, collect() reads it (checked by the
// generation number clean() returns, so a stale or foreign hand-over raises instead of reading
// another frame).
thread_local dp::Scratch scratch;

bool check_size(Py_ssize_t H, Py_ssize_t W) {
  if (H < 1 || W < 1 || static_cast<int64_t>(H) * W >= (int64_t{1} << 31)) {
    PyErr_SetString(PyExc_ValueError, "image must have 1 .. 2^31 - 1 pixels");
    return false;
  }
  return true;
}

bool check_generation(unsigned long long generation) {
  if (generation != scratch.generation || !generation) {
    PyErr_SetString(PyExc_RuntimeError, "regions kernel: collect() without the matching clean()");
    return false;
  }
  return true;
}

// clean(pts, lab, plane, H, W, erosion_px, ang, min_pixels, outlier_k, std_ratio, min_px, gap_px,
//       gap_m, plane_margin, min_cluster_fraction, edge_jump_m, edge_jump_px, mad_k, mad_floor_m)
//   pts HxWx3 float32, lab HxW uint16, plane (4,) float64 unit normal + d or None.
// Returns (generation, ids, per_instance, candidates):
//   generation    hands this frame's scratch to collect()
//   ids           instance ids in increasing order
//   per_instance  per instance: (mask px, valid, behind, on_plane, uneroded, best root, best size,
//                 ); roots are positions
//   candidates    (instance index, root, size, joins) of other components large enough to join
//                 the best one; joins: they come within the gap of it
PyObject* clean(PyObject*, PyObject* args) {
  PyObject *o_pts, *o_lab, *o_plane;
  dp::Params prm;
  Py_ssize_t H, W;
  if (!PyArg_ParseTuple(args, "OOOnnidiidddddddddd", &o_pts, &o_lab, &o_plane, &H, &W, &prm.erosion, &prm.ang,
                        &prm.min_pixels, &prm.outlier_k, &prm.std_ratio, &prm.min_px, &prm.gap_px, &prm.gap_m,
                        &prm.plane_margin, &prm.min_fraction, &prm.edge_m, &prm.edge_px, &prm.mad_k, &prm.mad_floor))
    return nullptr;
  if (!check_size(H, W)) return nullptr;
  prm.H = H;
  prm.W = W;
  const int64_t n = static_cast<int64_t>(H) * W;
  Buffer b_pts, b_lab, b_plane;
  if (!b_pts.get(o_pts, n * 12, false, "pts") || !b_lab.get(o_lab, n * 2, false, "lab") ||
      !b_plane.get(o_plane, 32, false, "plane", true))
    return nullptr;
  std::vector<dp::Instance> instances;
  std::vector<dp::Candidate> candidates;
  dp::Scratch& a = scratch;
  a.generation = 0;  // invalid until this frame is complete
  Py_BEGIN_ALLOW_THREADS;
  dp::clean(b_pts.as<float>(), b_lab.as<uint16_t>(), b_plane.as<double>(), prm, a, instances, candidates);
  Py_END_ALLOW_THREADS;
  static unsigned long long frames = 0;  // only ever touched with the GIL held
  a.generation = ++frames;

  PyObject* ids = PyList_New(static_cast<Py_ssize_t>(instances.size()));
  PyObject* per = PyList_New(static_cast<Py_ssize_t>(instances.size()));
  PyObject* cand = PyList_New(static_cast<Py_ssize_t>(candidates.size()));
  if (!ids || !per || !cand) {
    Py_XDECREF(ids);
    Py_XDECREF(per);
    Py_XDECREF(cand);
    return nullptr;
  }
  for (size_t j = 0; j < instances.size(); ++j) {
    const dp::Instance& s = instances[j];
    PyList_SET_ITEM(ids, j, PyLong_FromLong(s.id));
    PyList_SET_ITEM(per, j,
                    Py_BuildValue("(LLLLNLL)", (long long)s.mask_n, (long long)s.valid_n, (long long)s.behind_n,
                                  (long long)s.low_n, PyBool_FromLong(s.uneroded), (long long)s.best_root,
                                  (long long)s.best_size));
  }
  for (size_t i = 0; i < candidates.size(); ++i)
    PyList_SET_ITEM(cand, i, Py_BuildValue("(LLLN)", (long long)candidates[i].j, (long long)candidates[i].root,
                                           (long long)candidates[i].size, PyBool_FromLong(candidates[i].joins)));
  return Py_BuildValue("(KNNN)", a.generation, ids, per, cand);
}

// collect(generation, rgb, plane, keep_roots, k, N, index, points, normals, colours, ends, counts,
//         end_counts, sums, gram, normal_sums, heights, cols)
//   keep_roots (R,) int32: each instance's kept component (-1: none; the first k), then any that
//   joined one; N: the number of kept points. Outputs as dp::Collected.
// Returns (number of kept points, number of row-run ends).
PyObject* collect(PyObject*, PyObject* args) {
  unsigned long long generation;
  PyObject *o_rgb, *o_plane, *o_roots, *r[12];
  Py_ssize_t k, N;
  if (!PyArg_ParseTuple(args, "KOOOnnOOOOOOOOOOOO", &generation, &o_rgb, &o_plane, &o_roots, &k, &N, &r[0], &r[1],
                        &r[2], &r[3], &r[4], &r[5], &r[6], &r[7], &r[8], &r[9], &r[10], &r[11]))
    return nullptr;
  if (!check_generation(generation)) return nullptr;
  dp::Scratch& a = scratch;
  const int64_t n = a.H * a.W;
  if (k < 0 || N < 0) {
    PyErr_SetString(PyExc_ValueError, "collect: negative sizes");
    return nullptr;
  }
  Buffer b_rgb, b_plane, b_roots, out[12];
  if (!b_rgb.get(o_rgb, n * 3, false, "rgb", true) || !b_plane.get(o_plane, 32, false, "plane", true) ||
      !b_roots.get(o_roots, k * 4, false, "keep_roots"))
    return nullptr;
  const int64_t n_roots = b_roots.view.len / 4;
  const char* names[12] = {"index", "points", "normals", "colours", "ends", "counts",
                           "end_counts", "sums", "gram", "normal_sums", "heights", "cols"};
  const Py_ssize_t bytes[12] = {N * 8, N * 12, N * 12, N * 3, N * 8, k * 8, k * 8, k * 24, k * 128, k * 24, k * 8, k * 16};
  for (int i = 0; i < 12; ++i)
    if (!out[i].get(r[i], bytes[i], true, names[i], i == 3)) return nullptr;
  if (b_rgb.held != out[3].held) {
    PyErr_SetString(PyExc_ValueError, "collect: rgb and colours, both or neither");
    return nullptr;
  }
  const dp::Collected c{out[0].as<int64_t>(), out[1].as<float>(),  out[2].as<float>(),  out[3].as<uint8_t>(),
                        out[4].as<int64_t>(), out[5].as<int64_t>(), out[6].as<int64_t>(), out[7].as<double>(),
                        out[8].as<double>(),  out[9].as<double>(),  out[10].as<float>(), out[11].as<int64_t>()};
  int64_t total = 0;
  Py_BEGIN_ALLOW_THREADS;
  total = dp::collect(b_rgb.as<uint8_t>(), b_plane.as<double>(), a, k, b_roots.as<int32_t>(), n_roots, N, c);
  Py_END_ALLOW_THREADS;
  if (total < 0) {
    PyErr_Format(PyExc_ValueError, "collect: more kept points than the %zd allotted", N);
    return nullptr;
  }
  int64_t ends = 0;
  for (Py_ssize_t j = 0; j < k; ++j) ends += c.end_counts[j];
  return Py_BuildValue("(LL)", (long long)total, (long long)ends);
}

PyMethodDef methods[] = {
    {"clean", clean, METH_VARARGS, "The regions cleaning pass (see the source)."},
    {"collect", collect, METH_VARARGS, "The kept points and their per-instance sums (see the source)."},
    {nullptr, nullptr, 0, nullptr},
};

PyModuleDef module = {PyModuleDef_HEAD_INIT, "_regions_kernel",
                      "Compiled per-pixel loops of the depth_perception.regions cleaning pass.", -1, methods,
                      nullptr, nullptr, nullptr, nullptr};

}  // namespace

PyMODINIT_FUNC PyInit__regions_kernel(void) { return PyModule_Create(&module); }
#endif
