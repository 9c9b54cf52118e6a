// Direct stride-1 convolutions for narrow channels, as XLA FFI custom calls.
//
// XLA's CPU convolutions run the TC classifier's 8- and 16-channel layers at
// a fraction of what the cores can do: every matrix product they lower to is
// 8 or 16 wide. These kernels vectorise over the output row instead. Each
// image is copied to a zero-padded "row, channel, column" layout, so that 16
// consecutive output pixels of one channel are one contiguous vector; then
//
//   forward  y[h, w0:w0+L, o] += x[h+i, w0+j : w0+j+L, c] * k[i, j, c, o]
//            (a vector times a broadcast weight, accumulated in registers
//            over i, j, c for a block of output channels and columns)
//   weights  dk[i, j, c, o] += x[h+i, w0+j : w0+j+L, c] * dy[h, w0:w0+L, o]
//            (lane-wise partial sums, kept in registers over the rows of an
//            image and reduced across lanes and images at the end)
//
// On AVX-512 the weight gradient has two faster forms that read dy straight
// from NHWC: with 16k output channels the lanes are output channels and the
// input values are broadcast (WeightBlockNHWC); with exactly 8, one vector
// holds two neighbouring pixels and the input values are broadcast in pairs
// from the row layout (WeightBlockPairs).
//
// The input gradient is the forward kernel applied to dy with the kernel
// flipped and its channel axes swapped (climjax/ops/native.py). A max pool
// records where each window's maximum was; the "unpool" variants of the
// forward and weight-gradient kernels read a pooled gradient with that index
// and unpool it while copying (Source), so a convolution followed by a pool
// never holds its full-size gradient in memory.
//
// Images are spread over XLA's intra-op thread pool. Built by
// climjax/ops/native.py with the host's vector width (-march=native): `vf` is
// one AVX-512 register (16 lanes), elsewhere 8 lanes (one AVX2 register).

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#if defined(__AVX__)
#include <immintrin.h>
#endif

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

#if defined(__AVX512F__)
constexpr int L = 16;  // lanes of one vector
constexpr int kRegs = 32;
#else
constexpr int L = 8;
constexpr int kRegs = 16;
#endif
typedef float vf __attribute__((vector_size(L * sizeof(float))));
typedef float v8 __attribute__((vector_size(8 * sizeof(float))));

inline vf Load(const float* p) {
  vf v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
inline void Store(float* p, vf v) { std::memcpy(p, &v, sizeof(v)); }
// One float broadcast to every lane, loaded straight from memory (a register
// broadcast would take the shuffle port, which AVX-512 FMAs also use).
inline vf Splat(const float* p) {
#if defined(__AVX512F__)
  return reinterpret_cast<vf>(_mm512_set1_ps(*p));
#elif defined(__AVX__)
  return reinterpret_cast<vf>(_mm256_set1_ps(*p));
#else
  return vf{} + *p;
#endif
}
inline int64_t RoundUp(int64_t a, int64_t b) { return (a + b - 1) / b * b; }

// Runs body(item) for item in [0, n) on the calling thread and the pool's.
// The caller claims items too and waits only for items already claimed, so a
// busy pool cannot deadlock it; tasks that start after the last item was
// claimed find nothing to do and touch only the shared counters.
struct Loop {
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> done{0};
  int64_t n = 0;
  std::function<void(int64_t)> body;
  void Work() {
    for (int64_t i; (i = next.fetch_add(1)) < n;) {
      body(i);
      done.fetch_add(1, std::memory_order_release);
    }
  }
};

void ParallelFor(ffi::ThreadPool& pool, int64_t n, std::function<void(int64_t)> body) {
  auto loop = std::make_shared<Loop>();
  loop->n = n;
  loop->body = std::move(body);
  int64_t helpers = std::min<int64_t>(pool.num_threads(), n) - 1;
  for (int64_t t = 0; t < helpers; ++t) pool.Schedule([loop] { loop->Work(); });
  loop->Work();
  while (loop->done.load(std::memory_order_acquire) < n) std::this_thread::yield();
}

// One image's (H, W, C) pixels into rows (Hp, C, Wp), zero padded: padded
// row r, channel c, column q holds x[r - pt, q - pl, c].
void ToRows(const float* x, int64_t h, int64_t w, int64_t c, int64_t pt, int64_t pl,
            int64_t wp, float* rows) {
  for (int64_t r = 0; r < h; ++r) {
    const float* px = x + r * w * c;
    for (int64_t ch = 0; ch < c; ++ch) {
      float* pr = rows + ((r + pt) * c + ch) * wp + pl;
      int64_t q = 0;
#if defined(__AVX512F__)
      // Sixteen columns of one channel per gather (strided by c).
      const __m512i stride = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                                _mm512_set1_epi32(static_cast<int>(c)));
      for (; q + 16 <= w; q += 16)
        _mm512_storeu_ps(pr + q, _mm512_i32gather_ps(stride, px + q * c + ch, 4));
#endif
      for (; q < w; ++q) pr[q] = px[q * c + ch];
    }
  }
}

// Where a kernel's image comes from: an (N, H, W, C) array, or -- for the
// gradient arriving through a max pool -- the pooled gradient (N, PH, PW, C)
// and the pool's int8 index of each window's maximum, unpooled on the fly
// (each value lands on its window's maximum, every other pixel is zero).
struct Source {
  const float* data;
  const int8_t* index = nullptr;  // null: no pool
  int64_t h = 0, w = 0, c = 0;    // the image (unpooled)
  int64_t ph = 0, pw = 0;         // pooled size
  int64_t kh = 1, kw = 1;         // pool window

  void Fill(int64_t n, int64_t pt, int64_t pl, int64_t wp, float* rows) const {
    if (index == nullptr) return ToRows(data + n * h * w * c, h, w, c, pt, pl, wp, rows);
    std::fill(rows + pt * c * wp, rows + (pt + h) * c * wp, 0.0f);
    const float* v = data + n * ph * pw * c;
    const int8_t* at = index + n * ph * pw * c;
    int64_t offset[128];  // window position -> offset in the rows (no division per value)
    for (int64_t p = 0; p < kh * kw; ++p) offset[p] = (p / kw) * c * wp + p % kw;
    for (int64_t r = 0; r < ph; ++r)
      for (int64_t q = 0; q < pw; ++q) {
        float* corner = rows + ((r * kh + pt) * c) * wp + q * kw + pl;
        const int64_t e = (r * pw + q) * c;
        for (int64_t ch = 0; ch < c; ++ch) corner[ch * wp + offset[at[e + ch]]] = v[e + ch];
      }
  }

  // Image n as (H, W, C) pixels: the input itself, or unpooled into `buffer`.
  const float* Pixels(int64_t n, float* buffer) const {
    if (index == nullptr) return data + n * h * w * c;
    std::fill(buffer, buffer + h * w * c, 0.0f);
    const float* v = data + n * ph * pw * c;
    const int8_t* at = index + n * ph * pw * c;
    int64_t offset[128];  // window position -> offset in the image
    for (int64_t p = 0; p < kh * kw; ++p) offset[p] = ((p / kw) * w + p % kw) * c;
    for (int64_t r = 0; r < ph; ++r)
      for (int64_t q = 0; q < pw; ++q) {
        float* corner = buffer + (r * kh * w + q * kw) * c;
        const int64_t e = (r * pw + q) * c;
        for (int64_t ch = 0; ch < c; ++ch) corner[offset[at[e + ch]] + ch] = v[e + ch];
      }
    return buffer;
  }
};

ffi::Error CheckPool(const ffi::Buffer<ffi::F32>& v, const ffi::Buffer<ffi::S8>& index, int64_t h,
                     int64_t w, int64_t kh, int64_t kw) {
  auto d = v.dimensions(), e = index.dimensions();
  for (int a = 0; a < 4; ++a)
    if (d[a] != e[a]) return ffi::Error::InvalidArgument("pooled values and index differ in shape");
  if (kh < 1 || kw < 1 || d[1] * kh > h || d[2] * kw > w)
    return ffi::Error::InvalidArgument("pool window does not fit the unpooled size");
  return ffi::Error::Success();
}

Source Plain(const ffi::Buffer<ffi::F32>& x) {
  auto d = x.dimensions();
  return Source{x.typed_data(), nullptr, d[1], d[2], d[3]};
}

Source Unpooled(const ffi::Buffer<ffi::F32>& v, const ffi::Buffer<ffi::S8>& index, int64_t h,
                int64_t w, int64_t kh, int64_t kw) {
  auto d = v.dimensions();
  return Source{v.typed_data(), index.typed_data(), h, w, d[3], d[1], d[2], kh, kw};
}

struct Shape {
  int64_t n, h, w, c;    // input
  int64_t kh, kw, o;     // kernel
  int64_t pt, pb, pl, pr;
  int64_t oh() const { return h + pt + pb - kh + 1; }
  int64_t ow() const { return w + pl + pr - kw + 1; }
  int64_t hp() const { return h + pt + pb; }
  // Row length: room for every vector load of the last block of outputs.
  int64_t wp() const { return RoundUp(ow(), L) + kw - 1; }
};

// Forward, output channels [o0, o0 + OB), rows [y0, y0 + RB) and columns
// [w0, w0 + WB*L): RB*WB*OB vector accumulators, each weight broadcast once
// per RB*WB vectors. k is (KH, C, KW, O): the kernel with its column and
// channel axes swapped, so a block's weights for one (i, c) are contiguous.
template <int OB, int RB, int WB>
inline void ForwardBlock(const Shape& s, const float* rows, const float* k, int64_t y0,
                         int64_t o0, int64_t w0, float* out) {
  vf acc[RB][WB][OB] = {};
  const int64_t wp = s.wp();
  for (int64_t i = 0; i < s.kh; ++i)
    for (int64_t c = 0; c < s.c; ++c) {
      const float* xr = rows + ((y0 + i) * s.c + c) * wp + w0;
      const float* kr = k + ((i * s.c + c) * s.kw) * s.o + o0;
      for (int64_t j = 0; j < s.kw; ++j) {
        vf xv[RB][WB];
        for (int r = 0; r < RB; ++r)
          for (int b = 0; b < WB; ++b) xv[r][b] = Load(xr + r * s.c * wp + j + b * L);
        for (int o = 0; o < OB; ++o) {
          vf kv = Splat(kr + j * s.o + o);
          for (int r = 0; r < RB; ++r)
            for (int b = 0; b < WB; ++b) acc[r][b][o] += xv[r][b] * kv;
        }
      }
    }
  // Back to NHWC through a small buffer: vector stores, then a transposed copy.
  const int64_t ow = s.ow();
  alignas(64) float tile[OB][L];
  for (int r = 0; r < RB; ++r)
    for (int b = 0; b < WB; ++b) {
      for (int o = 0; o < OB; ++o) Store(tile[o], acc[r][b][o]);
      const int64_t lanes = std::min<int64_t>(L, ow - (w0 + b * L));
      float* po = out + ((y0 + r) * ow + w0 + b * L) * s.o + o0;
      for (int64_t lane = 0; lane < lanes; ++lane)
        for (int o = 0; o < OB; ++o) po[lane * s.o + o] = tile[o][lane];
    }
}

template <int OB>
void ForwardImage(const Shape& s, const float* rows, const float* k, float* out) {
  // Two vectors per block (two column vectors of a row, or one of each of two
  // rows when a row is one vector wide) when the channel block leaves room.
  constexpr int B = (2 * OB + 2 <= kRegs - 4) ? 2 : 1;
  const int64_t oh = s.oh(), owv = RoundUp(s.ow(), L);
  for (int64_t o0 = 0; o0 < s.o; o0 += OB) {
    if (owv >= B * L) {
      for (int64_t y = 0; y < oh; ++y) {
        int64_t w0 = 0;
        for (; w0 + B * L <= owv; w0 += B * L) ForwardBlock<OB, 1, B>(s, rows, k, y, o0, w0, out);
        for (; w0 < owv; w0 += L) ForwardBlock<OB, 1, 1>(s, rows, k, y, o0, w0, out);
      }
    } else {
      int64_t y = 0;
      for (; y + B <= oh; y += B) ForwardBlock<OB, B, 1>(s, rows, k, y, o0, 0, out);
      for (; y < oh; ++y) ForwardBlock<OB, 1, 1>(s, rows, k, y, o0, 0, out);
    }
  }
}

// Weight-gradient partial sums of one image for taps (i, c, j0..j0+JB) and
// output channels [o0, o0 + OB): acc holds (KH, C, KW, O) vectors of lanes.
template <int OB, int JB>
inline void WeightBlock(const Shape& s, const float* rows, const float* dys, int64_t i,
                        int64_t c, int64_t j0, int64_t o0, vf* acc) {
  vf a[JB][OB];
  vf* pa = acc + ((i * s.c + c) * s.kw + j0) * s.o + o0;
  for (int jj = 0; jj < JB; ++jj)
    for (int o = 0; o < OB; ++o) a[jj][o] = pa[jj * s.o + o];
  const int64_t wp = s.wp(), owp = RoundUp(s.ow(), L);
  for (int64_t y = 0; y < s.oh(); ++y) {
    const float* xr = rows + ((y + i) * s.c + c) * wp + j0;
    const float* dr = dys + (y * s.o + o0) * owp;
    for (int64_t w0 = 0; w0 < owp; w0 += L) {
      vf dv[OB];
      for (int o = 0; o < OB; ++o) dv[o] = Load(dr + o * owp + w0);
      for (int jj = 0; jj < JB; ++jj) {
        vf xv = Load(xr + w0 + jj);
        for (int o = 0; o < OB; ++o) a[jj][o] += xv * dv[o];
      }
    }
  }
  for (int jj = 0; jj < JB; ++jj)
    for (int o = 0; o < OB; ++o) pa[jj * s.o + o] = a[jj][o];
}

template <int OB>
void WeightImage(const Shape& s, const float* rows, const float* dys, vf* acc) {
  constexpr int JB = (2 * OB + OB + 2 <= kRegs) ? 2 : 1;
  for (int64_t i = 0; i < s.kh; ++i)
    for (int64_t c = 0; c < s.c; ++c)
      for (int64_t o0 = 0; o0 < s.o; o0 += OB) {
        int64_t j0 = 0;
        for (; j0 + JB <= s.kw; j0 += JB) WeightBlock<OB, JB>(s, rows, dys, i, c, j0, o0, acc);
        for (; j0 < s.kw; ++j0) WeightBlock<OB, 1>(s, rows, dys, i, c, j0, o0, acc);
      }
}

// Output channels per register block: the kernels need o % 8 == 0
// (climjax/ops/native.py pads the kernel's output channels to that).
constexpr int kOB = (L == 16) ? 8 : 4;

ffi::Error CheckShapes(const Shape& s) {
  if (s.o % 8 != 0) return ffi::Error::InvalidArgument("output channels must be a multiple of 8");
  if (s.oh() < 1 || s.ow() < 1) return ffi::Error::InvalidArgument("empty output");
  return ffi::Error::Success();
}

ffi::Error Forward(ffi::ThreadPool& pool, const Source& x, int64_t n, ffi::Buffer<ffi::F32> k,
                   ffi::ResultBuffer<ffi::F32> y, int64_t pt, int64_t pb, int64_t pl, int64_t pr) {
  auto kd = k.dimensions();  // k (KH, C, KW, O)
  Shape s{n, x.h, x.w, x.c, kd[0], kd[2], kd[3], pt, pb, pl, pr};
  if (kd[1] != s.c) return ffi::Error::InvalidArgument("kernel and input channels differ");
  if (auto e = CheckShapes(s); e.failure()) return e;
  const float* kp = k.typed_data();
  float* yp = y->typed_data();
  const int64_t out_image = s.oh() * s.ow() * s.o;
  const int64_t rows_size = s.hp() * s.c * s.wp() + L;
  // Images in chunks: the padded rows are allocated (and their padding
  // zeroed) once per chunk; Fill rewrites only the interior.
  const int64_t chunks = std::min<int64_t>(s.n, std::max<int64_t>(1, 4 * pool.num_threads()));
  ParallelFor(pool, chunks, [&](int64_t chunk) {
    std::vector<float> rows(rows_size, 0.0f);
    for (int64_t b = chunk * s.n / chunks; b < (chunk + 1) * s.n / chunks; ++b) {
      x.Fill(b, s.pt, s.pl, s.wp(), rows.data());
      ForwardImage<kOB>(s, rows.data(), kp, yp + b * out_image);
    }
  });
  return ffi::Error::Success();
}

ffi::Error ForwardImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> k,
                       ffi::ResultBuffer<ffi::F32> y, int64_t pt, int64_t pb, int64_t pl,
                       int64_t pr) {
  return Forward(pool, Plain(x), x.dimensions()[0], k, y, pt, pb, pl, pr);
}

// The forward kernel on a pooled gradient: the input gradient of a
// convolution followed by a max pool.
ffi::Error ForwardUnpoolImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> v,
                             ffi::Buffer<ffi::S8> index, ffi::Buffer<ffi::F32> k,
                             ffi::ResultBuffer<ffi::F32> y, int64_t pt, int64_t pb, int64_t pl,
                             int64_t pr, int64_t h, int64_t w, int64_t uh, int64_t uw) {
  if (auto e = CheckPool(v, index, h, w, uh, uw); e.failure()) return e;
  return Forward(pool, Unpooled(v, index, h, w, uh, uw), v.dimensions()[0], k, y, pt, pb, pl, pr);
}

#if defined(__AVX512F__)
// Weight gradient when the output channels fill whole vectors (o % 16 == 0):
// straight from NHWC, no layout copy. dk[i, j, c, o0:o0+16] sums
// x[y+i, x+j, c] * dy[y, x, o0:o0+16] over pixels: one vector load of dy per
// pixel, one broadcast FMA per (j, c) of the block, JB x CB partial sums held
// in registers over the whole image. x is read from a zero-padded copy.
template <int JB, int CB>
void WeightBlockNHWC(const Shape& s, const float* xpad, int64_t xw, const float* dy, int64_t i,
                     int64_t j0, int64_t c0, int64_t o0, vf* acc) {
  vf a[JB][CB];
  for (int jj = 0; jj < JB; ++jj)
    for (int cc = 0; cc < CB; ++cc) a[jj][cc] = acc[((i * s.kw + j0 + jj) * s.c + c0 + cc) * (s.o / L) + o0 / L];
  const int64_t ow = s.ow();
  for (int64_t y = 0; y < s.oh(); ++y) {
    const float* xr = xpad + ((y + i) * xw + j0) * s.c + c0;
    const float* dr = dy + y * ow * s.o + o0;
    for (int64_t x = 0; x < ow; ++x) {
      const vf dv = Load(dr + x * s.o);
      const float* px = xr + x * s.c;
      for (int jj = 0; jj < JB; ++jj)
        for (int cc = 0; cc < CB; ++cc) a[jj][cc] += Splat(px + jj * s.c + cc) * dv;
    }
  }
  for (int jj = 0; jj < JB; ++jj)
    for (int cc = 0; cc < CB; ++cc) acc[((i * s.kw + j0 + jj) * s.c + c0 + cc) * (s.o / L) + o0 / L] = a[jj][cc];
}

// Dispatch on the block's remaining kernel columns (<= 5) and channels (<= 4).
template <int JB, int CB>
void WeightTileNHWC(const Shape& s, const float* xpad, int64_t xw, const float* dy, int64_t i,
                    int64_t j0, int64_t c0, int64_t o0, vf* acc) {
  if constexpr (JB > 1) {
    if (s.kw - j0 < JB) return WeightTileNHWC<JB - 1, CB>(s, xpad, xw, dy, i, j0, c0, o0, acc);
  }
  if constexpr (CB > 1) {
    if (s.c - c0 < CB) return WeightTileNHWC<JB, CB - 1>(s, xpad, xw, dy, i, j0, c0, o0, acc);
  }
  WeightBlockNHWC<JB, CB>(s, xpad, xw, dy, i, j0, c0, o0, acc);
}

void WeightImageNHWC(const Shape& s, const float* xpad, int64_t xw, const float* dy, vf* acc) {
  for (int64_t o0 = 0; o0 < s.o; o0 += L)
    for (int64_t i = 0; i < s.kh; ++i)
      for (int64_t c0 = 0; c0 < s.c; c0 += 4)
        for (int64_t j0 = 0; j0 < s.kw; j0 += 5) WeightTileNHWC<5, 4>(s, xpad, xw, dy, i, j0, c0, o0, acc);
}

struct alignas(64) Lanes {
  int v[16];
};

// Weight gradient for exactly 8 output channels (half a vector) and an even
// output width: one vector holds two neighbouring pixels' 8 channels, permuted
// so that lane 2o + p is channel o of pixel x + p. The input is read from the
// row layout, where those two pixels' values of one channel are adjacent: one
// 8-byte broadcast per (j, c) gives lanes [x+j, x+1+j, x+j, ...], matching.
// JB x CB partial sums per block, each the pair-sum of lanes 2o and 2o + 1.
constexpr Lanes PairIndex() {
  Lanes out{};
  for (int lane = 0; lane < 16; ++lane) out.v[lane] = (lane % 2) * 8 + lane / 2;
  return out;
}
constexpr Lanes kPairIndex = PairIndex();

inline vf PairSplat(const float* p) {
  double pair;
  std::memcpy(&pair, p, sizeof(pair));
  return reinterpret_cast<vf>(_mm512_set1_pd(pair));
}

template <int JB, int CB>
void WeightBlockPairs(const Shape& s, const float* rows, const float* dy, int64_t i, int64_t j0,
                      int64_t c0, vf* acc) {
  vf a[JB][CB];
  for (int jj = 0; jj < JB; ++jj)
    for (int cc = 0; cc < CB; ++cc) a[jj][cc] = acc[(i * s.kw + j0 + jj) * s.c + c0 + cc];
  const __m512i perm = _mm512_load_si512(kPairIndex.v);
  const int64_t ow = s.ow(), wp = s.wp();
  for (int64_t y = 0; y < s.oh(); ++y) {
    const float* xr = rows + ((y + i) * s.c + c0) * wp + j0;
    const float* dr = dy + y * ow * 8;
    for (int64_t x = 0; x < ow; x += 2) {
      const vf dv = reinterpret_cast<vf>(_mm512_permutexvar_ps(perm, _mm512_loadu_ps(dr + x * 8)));
      for (int jj = 0; jj < JB; ++jj)
        for (int cc = 0; cc < CB; ++cc) a[jj][cc] += PairSplat(xr + cc * wp + x + jj) * dv;
    }
  }
  for (int jj = 0; jj < JB; ++jj)
    for (int cc = 0; cc < CB; ++cc) acc[(i * s.kw + j0 + jj) * s.c + c0 + cc] = a[jj][cc];
}

template <int JB, int CB>
void WeightTilePairs(const Shape& s, const float* rows, const float* dy, int64_t i, int64_t j0,
                     int64_t c0, vf* acc) {
  if constexpr (JB > 1) {
    if (s.kw - j0 < JB) return WeightTilePairs<JB - 1, CB>(s, rows, dy, i, j0, c0, acc);
  }
  if constexpr (CB > 1) {
    if (s.c - c0 < CB) return WeightTilePairs<JB, CB - 1>(s, rows, dy, i, j0, c0, acc);
  }
  WeightBlockPairs<JB, CB>(s, rows, dy, i, j0, c0, acc);
}

void WeightImagePairs(const Shape& s, const float* rows, const float* dy, vf* acc) {
  for (int64_t i = 0; i < s.kh; ++i)
    for (int64_t c0 = 0; c0 < s.c; c0 += 4)
      for (int64_t j0 = 0; j0 < s.kw; j0 += 5) WeightTilePairs<5, 4>(s, rows, dy, i, j0, c0, acc);
}

// One image's (H, W, C) pixels into a zero-padded (Hp, W + pl + pr, C) copy
// (the padding is zeroed once per buffer).
void Pad(const Shape& s, const float* x, float* xpad) {
  const int64_t xw = s.w + s.pl + s.pr;
  for (int64_t r = 0; r < s.h; ++r)
    std::memcpy(xpad + ((r + s.pt) * xw + s.pl) * s.c, x + r * s.w * s.c, s.w * s.c * sizeof(float));
}
#endif

ffi::Error WeightGrad(ffi::ThreadPool& pool, ffi::Buffer<ffi::F32> x, const Source& dy,
                      ffi::ResultBuffer<ffi::F32> dk, int64_t kh, int64_t kw, int64_t pt,
                      int64_t pb, int64_t pl, int64_t pr) {
  auto xd = x.dimensions();  // x (N, H, W, C); dy (N, OH, OW, O), maybe pooled
  Shape s{xd[0], xd[1], xd[2], xd[3], kh, kw, dy.c, pt, pb, pl, pr};
  if (auto e = CheckShapes(s); e.failure()) return e;
  if (dy.h != s.oh() || dy.w != s.ow())
    return ffi::Error::InvalidArgument("output gradient does not match the geometry");
  const float* xp = x.typed_data();
  const int64_t taps = s.kh * s.c * s.kw * s.o;
  const int64_t image = s.h * s.w * s.c;
  const int64_t rows_size = s.hp() * s.c * s.wp() + L;
  const int64_t owp = RoundUp(s.ow(), L);
  // Images in chunks, each chunk with its own lane-wise partial sums.
  const int64_t chunks = std::min<int64_t>(s.n, std::max<int64_t>(1, 2 * pool.num_threads()));
  std::vector<vf> partial(chunks * taps, vf{});
#if defined(__AVX512F__)
  const bool nhwc = s.o % L == 0;  // (KH, KW, C, O) partial sums, lanes = channels
  const bool pairs = s.o == 8 && s.ow() % 2 == 0;  // (KH, KW, C), lanes = (channel, pixel parity)
#else
  const bool nhwc = false, pairs = false;
#endif
  ParallelFor(pool, chunks, [&](int64_t chunk) {
    vf* acc = partial.data() + chunk * taps;
#if defined(__AVX512F__)
    if (nhwc) {
      const int64_t xw = s.w + s.pl + s.pr;
      std::vector<float> xpad(s.hp() * xw * s.c + L, 0.0f), dyfull(dy.index ? s.oh() * s.ow() * s.o : 0);
      for (int64_t n = chunk * s.n / chunks; n < (chunk + 1) * s.n / chunks; ++n) {
        Pad(s, xp + n * image, xpad.data());
        WeightImageNHWC(s, xpad.data(), xw, dy.Pixels(n, dyfull.data()), acc);
      }
      return;
    }
    if (pairs) {
      std::vector<float> rows(rows_size, 0.0f), dyfull(dy.index ? s.oh() * s.ow() * s.o : 0);
      for (int64_t n = chunk * s.n / chunks; n < (chunk + 1) * s.n / chunks; ++n) {
        ToRows(xp + n * image, s.h, s.w, s.c, s.pt, s.pl, s.wp(), rows.data());
        WeightImagePairs(s, rows.data(), dy.Pixels(n, dyfull.data()), acc);
      }
      return;
    }
#endif
    std::vector<float> rows(rows_size, 0.0f), dys(s.oh() * s.o * owp, 0.0f);
    for (int64_t n = chunk * s.n / chunks; n < (chunk + 1) * s.n / chunks; ++n) {
      ToRows(xp + n * image, s.h, s.w, s.c, s.pt, s.pl, s.wp(), rows.data());
      dy.Fill(n, 0, 0, owp, dys.data());
      WeightImage<kOB>(s, rows.data(), dys.data(), acc);
    }
  });
  // (KH, C, KW, O) lane sums -> dk (KH, KW, C, O).
  float* out = dk->typed_data();
  if (chunks == 0) {  // an empty batch
    std::fill(out, out + taps, 0.0f);
    return ffi::Error::Success();
  }
  if (pairs) {  // lanes (o, parity): sum the chunks, then each lane pair
    for (int64_t t = 0; t < s.kh * s.kw * s.c; ++t) {
      vf v = partial[t];
      for (int64_t ch = 1; ch < chunks; ++ch) v += partial[ch * taps + t];
      for (int64_t o = 0; o < 8; ++o) out[t * 8 + o] = v[2 * o] + v[2 * o + 1];
    }
    return ffi::Error::Success();
  }
  if (nhwc) {  // lanes are output channels: sum the chunks only
    for (int64_t t = 0; t < taps / L; ++t) {
      vf v = partial[t];
      for (int64_t ch = 1; ch < chunks; ++ch) v += partial[ch * taps + t];
      Store(out + t * L, v);
    }
    return ffi::Error::Success();
  }
  for (int64_t i = 0; i < s.kh; ++i)
    for (int64_t c = 0; c < s.c; ++c)
      for (int64_t j = 0; j < s.kw; ++j)
        for (int64_t o = 0; o < s.o; ++o) {
          int64_t t = ((i * s.c + c) * s.kw + j) * s.o + o;
          vf v = partial[t];
          for (int64_t ch = 1; ch < chunks; ++ch) v += partial[ch * taps + t];
          float sum = 0.0f;
          for (int lane = 0; lane < L; ++lane) sum += v[lane];
          out[((i * s.kw + j) * s.c + c) * s.o + o] = sum;
        }
  return ffi::Error::Success();
}

ffi::Error WeightGradImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x,
                          ffi::Buffer<ffi::F32> dy, ffi::ResultBuffer<ffi::F32> dk,
                          int64_t kh, int64_t kw, int64_t pt, int64_t pb, int64_t pl,
                          int64_t pr) {
  if (dy.dimensions()[0] != x.dimensions()[0])
    return ffi::Error::InvalidArgument("input and output gradient batches differ");
  return WeightGrad(pool, x, Plain(dy), dk, kh, kw, pt, pb, pl, pr);
}

// The weight gradient from a pooled output gradient (a convolution followed
// by a max pool): dy is unpooled into the kernel's row layout as it is read.
ffi::Error WeightGradUnpoolImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x,
                                ffi::Buffer<ffi::F32> v, ffi::Buffer<ffi::S8> index,
                                ffi::ResultBuffer<ffi::F32> dk, int64_t kh, int64_t kw,
                                int64_t pt, int64_t pb, int64_t pl, int64_t pr, int64_t h,
                                int64_t w, int64_t uh, int64_t uw) {
  if (v.dimensions()[0] != x.dimensions()[0])
    return ffi::Error::InvalidArgument("input and output gradient batches differ");
  if (auto e = CheckPool(v, index, h, w, uh, uw); e.failure()) return e;
  return WeightGrad(pool, x, Unpooled(v, index, h, w, uh, uw), dk, kh, kw, pt, pb, pl, pr);
}

// Max pooling with stride equal to the window ("VALID"), NHWC: the maximum
// and the row-major position in its window of the first element holding it
// (the one XLA's select_and_scatter picks). The index is what the backward
// pass needs; computed in XLA, its producer was fused into the backward loop
// and re-evaluated for every input element.
ffi::Error MaxPoolImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x,
                       ffi::ResultBuffer<ffi::F32> y, ffi::ResultBuffer<ffi::S8> index,
                       int64_t kh, int64_t kw) {
  auto xd = x.dimensions();
  const int64_t n = xd[0], h = xd[1], w = xd[2], c = xd[3];
  const int64_t oh = h / kh, ow = w / kw;
  if (oh < 1 || ow < 1 || kh * kw > 127) return ffi::Error::InvalidArgument("bad pooling window");
  const float* xp = x.typed_data();
  float* yp = y->typed_data();
  int8_t* ip = index->typed_data();
  ParallelFor(pool, n, [&](int64_t b) {
    for (int64_t r = 0; r < oh; ++r)
      for (int64_t q = 0; q < ow; ++q) {
        float* best = yp + ((b * oh + r) * ow + q) * c;
        int8_t* at = ip + ((b * oh + r) * ow + q) * c;
        auto window = [&](int64_t p) { return xp + ((b * h + r * kh + p / kw) * w + q * kw + p % kw) * c; };
        int64_t ch = 0;
        for (; ch + 8 <= c; ch += 8) {  // eight channels at a time, in vector registers
          v8 m, pos = {};
          std::memcpy(&m, window(0) + ch, sizeof(m));
          for (int64_t p = 1; p < kh * kw; ++p) {
            v8 v;
            std::memcpy(&v, window(p) + ch, sizeof(v));
            // Strictly greater: ties stay with the earlier position. A NaN
            // wins over numbers, as in XLA's maximum.
            auto take = (v > m) | ((v != v) & (m == m));
            m = take ? v : m;
            pos = take ? v8{} + static_cast<float>(p) : pos;
          }
          std::memcpy(best + ch, &m, sizeof(m));
          for (int k = 0; k < 8; ++k) at[ch + k] = static_cast<int8_t>(pos[k]);
        }
        for (; ch < c; ++ch) {
          float m = window(0)[ch];
          int8_t pos = 0;
          for (int64_t p = 1; p < kh * kw; ++p) {
            float v = window(p)[ch];
            if (v > m || (v != v && m == m)) m = v, pos = static_cast<int8_t>(p);
          }
          best[ch] = m;
          at[ch] = pos;
        }
      }
  });
  return ffi::Error::Success();
}

// Adds int64 attributes, by name, to a handler's binding. (Bindings can only
// be extended as rvalues and never copied or moved: everything is passed by
// reference and returned as a fresh value.)
template <typename Binding>
auto Attrs(Binding&& b, const char* name) {
  return std::move(b).template Attr<int64_t>(name);
}

template <typename Binding, typename... Names>
auto Attrs(Binding&& b, const char* name, Names... names) {
  return Attrs(std::move(b).template Attr<int64_t>(name), names...);
}

template <typename Binding>
auto Pads(Binding&& b) {
  return Attrs(std::move(b), "pt", "pb", "pl", "pr");
}

template <typename Binding>
auto Unpool(Binding&& b) {
  return Attrs(std::move(b), "h", "w", "uh", "uw");
}

template <typename Binding>
auto Kernel(Binding&& b) {
  return Attrs(std::move(b), "kh", "kw");
}

auto Bind() { return ffi::Ffi::Bind().Ctx<ffi::ThreadPool>(); }
using F32 = ffi::Buffer<ffi::F32>;
using S8 = ffi::Buffer<ffi::S8>;

}  // namespace

// forward(x, kernel) -> y
XLA_FFI_DEFINE_HANDLER_SYMBOL(ClimjaxNarrowConvForward, ForwardImpl,
                              Pads(Bind().Arg<F32>().Arg<F32>().Ret<F32>()));

// weight_grad(x, dy) -> dkernel
XLA_FFI_DEFINE_HANDLER_SYMBOL(ClimjaxNarrowConvWeightGrad, WeightGradImpl,
                              Pads(Kernel(Bind().Arg<F32>().Arg<F32>().Ret<F32>())));

// max_pool(x) -> (y, index)
XLA_FFI_DEFINE_HANDLER_SYMBOL(ClimjaxMaxPool, MaxPoolImpl,
                              Kernel(Bind().Arg<F32>().Ret<F32>().Ret<S8>()));

// forward_unpool(pooled dy, index, kernel) -> dx
XLA_FFI_DEFINE_HANDLER_SYMBOL(ClimjaxNarrowConvForwardUnpool, ForwardUnpoolImpl,
                              Unpool(Pads(Bind().Arg<F32>().Arg<S8>().Arg<F32>().Ret<F32>())));

// weight_grad_unpool(x, pooled dy, index) -> dkernel
XLA_FFI_DEFINE_HANDLER_SYMBOL(ClimjaxNarrowConvWeightGradUnpool, WeightGradUnpoolImpl,
                              Unpool(Pads(Kernel(Bind().Arg<F32>().Arg<F32>().Arg<S8>().Ret<F32>()))));
