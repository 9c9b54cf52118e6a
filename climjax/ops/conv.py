"""Convolutions for CPU training whose heavy parts are large matrix products.

XLA's CPU convolution is good at the forward pass but slow at the weight
gradient (and catastrophically slow at the weight gradient of a transposed
convolution, ~1-2 GFLOP/s). Here every 2-D convolution is described by one
geometry -- a forward convolution of `z` (NHWC) with a kernel `v` (HWIO) --
and three pieces that any convolution or its gradient is made of:

  forward   out = conv(z, v)                      (a strided convolution)
  input     dz  = conv(z, v)ᵀ applied to dout     (a transposed convolution)
  weight    dv  = Σ_offsets slice(z)ᵀ · dout      (matrix products)

`conv2d` is (forward; input, weight) and `conv_transpose2d` is
(input; forward, weight) of the same geometry with the kernel flipped, so both
directions share one set of kernels. Each piece has an XLA formulation and
others built from large dense operations:

  im2col / col2im   matrix products over strided-slice patches (never
                    `conv_general_dilated_patches`, itself a slow convolution)
  stride phases     a stride-s gradient split into s² dense stride-1
                    convolutions, one per (row mod s, col mod s) phase with its
                    sub-kernel v[r::s, q::s]: no dilation zeros, no im2col copy

`_choose_*` pick per shape what `launch/bench_ops.py` measured to be faster,
and follow whether XLA hands convolutions to YNNPACK (`climjax.platform`):
climjax turns that off by default, because XLA's own stride-1 convolutions make
the phases twice as fast as YNNPACK's weight gradient on the detector's layers.
Transposed convolutions with kernels over 64 MB skip the flip and run as
batched products over kernel offsets (see `_FLIP_BYTES`). Stride-1
convolutions with at most 32 channels in and out leave this module for the
C++ kernels of `climjax.ops.native` (or, without them, `climjax.ops.s2d`).

Results equal XLA's to float32 rounding (tests/test_ops.py); the custom_vjp
rules return both gradients and let XLA drop the unused one (e.g. the input
gradient of a network's first layer).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from climjax import platform
from climjax.ops import native, pool, s2d

_DN = ("NHWC", "HWIO", "NHWC")


@dataclasses.dataclass(frozen=True)
class Geometry:
  """A 2-D forward convolution: input `z` (N, H, W, C) -> output (N, OH, OW, O).

  `pads` are the explicit (low, high) paddings of the input; `strides` the
  window strides. Kernel dilation is not used by any climjax model.
  """

  in_hw: tuple[int, int]
  kernel_hw: tuple[int, int]
  strides: tuple[int, int]
  pads: tuple[tuple[int, int], tuple[int, int]]

  @property
  def out_hw(self) -> tuple[int, int]:
    return tuple(
      (h + lo + hi - k) // s + 1
      for h, k, s, (lo, hi) in zip(self.in_hw, self.kernel_hw, self.strides, self.pads, strict=True)
    )

  def with_in_hw(self, in_hw: tuple[int, int]) -> Geometry:
    return dataclasses.replace(self, in_hw=tuple(in_hw))


def conv_geometry(
  in_hw: Sequence[int], kernel_hw: Sequence[int], strides: Sequence[int], padding: str
) -> Geometry:
  """The geometry of `lax.conv_general_dilated(x, w, strides, padding)`."""
  pads = lax.padtype_to_pads(tuple(in_hw), tuple(kernel_hw), tuple(strides), padding)
  return Geometry(tuple(in_hw), tuple(kernel_hw), tuple(strides), tuple(map(tuple, pads)))


def conv_transpose_geometry(
  in_hw: Sequence[int], kernel_hw: Sequence[int], strides: Sequence[int], padding: str
) -> Geometry:
  """The forward geometry whose input gradient is `lax.conv_transpose(..., padding)`.

  `lax.conv_transpose(x, w, s, padding)` (transpose_kernel=False) is a stride-1
  convolution of x dilated by s with padding (a, b). Written as a scatter,
  x[i] adds w[k] into y[i*s + a - k]; with the kernel flipped (k' = K-1-k) that
  is the input gradient of a forward convolution of y with low padding K-1-a.
  """
  geo_hw, pads = [], []
  for h, k, s in zip(in_hw, kernel_hw, strides, strict=True):
    if padding == "SAME":
      pad_len = k + s - 2
      a = k - 1 if s > k - 1 else int(np.ceil(pad_len / 2))
    elif padding == "VALID":
      pad_len = k + s - 2 + max(k - s, 0)
      a = k - 1
    else:
      raise ValueError(f"padding must be 'SAME' or 'VALID', got {padding!r}")
    b = pad_len - a
    out = (h - 1) * s + 1 + a + b - k + 1
    lo = k - 1 - a
    hi = (h - 1) * s + k - out - lo
    geo_hw.append(out)
    pads.append((lo, hi))
  return Geometry(tuple(geo_hw), tuple(kernel_hw), tuple(strides), tuple(pads))


# --------------------------------------------------------------------------
# The three pieces, each in an XLA and a matrix-product formulation.


# Every product below is written on 2-D (or offset-batched 3-D) operands:
# XLA's CPU dot ran 1.5-2.3x slower on the same weight gradient written as a
# contraction over the (N, H, W) axes of 4-D arrays than on the flattened
# (N·H·W, C) matrices (launch/bench_ops.py shapes, measured side by side).
def _flat(a: jnp.ndarray) -> jnp.ndarray:
  """(..., C) -> (M, C)."""
  return a.reshape(-1, a.shape[-1])


def _matmul(a: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
  return lax.dot_general(a, b, (((1,), (0,)), ((), ())))


def _offset_slice(zp: jnp.ndarray, geo: Geometry, i: int, j: int) -> jnp.ndarray:
  """The input pixels that kernel offset (i, j) multiplies, (N, OH, OW, C)."""
  (oh, ow), (sh, sw) = geo.out_hw, geo.strides
  n, _, _, c = zp.shape
  return lax.slice(
    zp, (0, i, j, 0), (n, i + (oh - 1) * sh + 1, j + (ow - 1) * sw + 1, c), (1, sh, sw, 1)
  )


def _pad_input(z: jnp.ndarray, geo: Geometry) -> jnp.ndarray:
  # lax.pad accepts the negative high padding a "SAME" stride can leave.
  (pt, pb), (pl, pr) = geo.pads
  return lax.pad(z, jnp.zeros((), z.dtype), ((0, 0, 0), (pt, pb, 0), (pl, pr, 0), (0, 0, 0)))


def forward_xla(z: jnp.ndarray, v: jnp.ndarray, geo: Geometry) -> jnp.ndarray:
  return lax.conv_general_dilated(z, v, geo.strides, geo.pads, dimension_numbers=_DN)


def forward_im2col(z: jnp.ndarray, v: jnp.ndarray, geo: Geometry) -> jnp.ndarray:
  """One (N·OH·OW, KH·KW·C) x (KH·KW·C, O) product over strided-slice patches."""
  kh, kw, c, o = v.shape
  zp = _pad_input(z, geo)
  cols = jnp.concatenate(
    [_offset_slice(zp, geo, i, j) for i in range(kh) for j in range(kw)], axis=-1
  )
  n, oh, ow, k = cols.shape
  return _matmul(cols.reshape(n * oh * ow, k), v.reshape(k, o)).reshape(n, oh, ow, o)


def _phase_inputs(zp: jnp.ndarray, geo: Geometry):
  """[(r, q, taps_h, taps_w, phase)]: the padded input's stride phases, each cut
  or zero-extended to what its taps v[r::s, q::s] reach in a VALID stride-1
  convolution with the output's size."""
  (kh, kw), (sh, sw), (oh, ow) = geo.kernel_hw, geo.strides, geo.out_hw
  zero = jnp.zeros((), zp.dtype)
  phases = []
  for r in range(min(sh, kh)):
    taps_h = -(-(kh - r) // sh)
    for q in range(min(sw, kw)):
      taps_w = -(-(kw - q) // sw)
      phase = zp[:, r::sh, q::sw, :]
      need_h, need_w = oh + taps_h - 1, ow + taps_w - 1
      phase = lax.pad(
        phase,
        zero,
        ((0, 0, 0), (0, need_h - phase.shape[1], 0), (0, need_w - phase.shape[2], 0), (0, 0, 0)),
      )
      phases.append((r, q, taps_h, taps_w, phase))
  return phases


def input_grad_xla(dout: jnp.ndarray, v: jnp.ndarray, geo: Geometry) -> jnp.ndarray:
  """dz as XLA computes it under autodiff: a convolution of the dilated dout."""
  sh, sw = geo.strides
  pads = []
  for h, k, s, o, (lo, _) in zip(
    geo.in_hw, geo.kernel_hw, geo.strides, geo.out_hw, geo.pads, strict=True
  ):
    before = k - lo - 1
    after = h + k - 1 - ((o - 1) * s + 1) - before
    pads.append((before, after))
  v_t = jnp.swapaxes(lax.rev(v, (0, 1)), 2, 3)
  return lax.conv_general_dilated(
    dout, v_t, (1, 1), pads, lhs_dilation=(sh, sw), dimension_numbers=_DN
  )


def _col2im(piece, geo: Geometry, n: int, c: int, dtype) -> jnp.ndarray:
  """Sum each kernel offset's columns into the input positions it came from.

  `piece(i, j)` is offset (i, j)'s (N, OH, OW, C) contribution. Output row
  oh*s + i - pad lands in phase (row mod s); within a phase the contributions
  are plain shifts, so each phase is one fusion of about K²/s² shifted adds and
  the phases are interleaved by a reshape. (Placing every offset with interior
  padding instead makes every output element evaluate all K² pads.)
  """
  (h, w), (sh, sw), ((pt, _), (pl, _)) = geo.in_hw, geo.strides, geo.pads
  (kh, kw), (oh, ow) = geo.kernel_hw, geo.out_hw
  rows, cols = -(-h // sh), -(-w // sw)  # phase sizes, rounded up
  zero = jnp.zeros((), dtype)
  phases = []
  for p in range(sh):
    phase_row = []
    for q in range(sw):
      acc = None
      for i in range(kh):
        if (i - pt - p) % sh:
          continue
        di = (i - pt - p) // sh
        for j in range(kw):
          if (j - pl - q) % sw:
            continue
          dj = (j - pl - q) // sw
          placed = lax.pad(
            piece(i, j),
            zero,
            ((0, 0, 0), (di, rows - di - oh, 0), (dj, cols - dj - ow, 0), (0, 0, 0)),
          )
          acc = placed if acc is None else acc + placed
      phase_row.append(jnp.zeros((n, rows, cols, c), dtype) if acc is None else acc)
    phases.append(jnp.stack(phase_row, axis=3))
  dz = jnp.stack(phases, axis=2).reshape(n, rows * sh, cols * sw, c)
  return dz[:, :h, :w, :]


def input_grad_col2im(dout: jnp.ndarray, v: jnp.ndarray, geo: Geometry) -> jnp.ndarray:
  """dz = col2im(dout · vᵀ): one matrix product, then the columns summed back."""
  kh, kw, c, o = v.shape
  n, oh, ow, _ = dout.shape
  cols = lax.dot_general(
    dout.reshape(n * oh * ow, o), v.reshape(kh * kw * c, o), (((1,), (1,)), ((), ()))
  ).reshape(n, oh, ow, kh * kw * c)

  def piece(i, j):
    k = i * kw + j
    return cols[..., k * c : (k + 1) * c]

  return _col2im(piece, geo, dout.shape[0], c, dout.dtype)


def _phase_taps(size: int, kernel: int, stride: int, pad_lo: int, out_size: int, rho: int):
  """1-D bookkeeping of `input_grad_phases` for the input positions h = rho + stride·t.

  Those positions receive only the kernel taps k ≡ (rho + pad_lo) mod stride,
  k = r + stride·m, from output o = t + (rho + pad_lo) // stride - m. Returns
  (r, taps, lo, hi): the first tap, how many there are, and the (low, high)
  padding of dout that turns the sum into a stride-1 VALID correlation with
  the taps reversed, for t = 0 .. ceil(size / stride) - 1.
  """
  r = (rho + pad_lo) % stride
  taps = max(0, -(-(kernel - r) // stride))
  length = -(-size // stride)
  lo = taps - 1 - (rho + pad_lo) // stride
  hi = length + taps - 1 - out_size - lo
  return r, taps, lo, hi


def input_grad_phases(dout: jnp.ndarray, v: jnp.ndarray, geo: Geometry) -> jnp.ndarray:
  """dz one stride phase at a time: s² stride-1 convolutions with sub-kernels.

  The input positions with the same (row mod s, col mod s) receive dout through
  one sub-kernel v[r::s, q::s] (3x3, 3x2, 2x3 or 2x2 taps for 5x5, stride 2), so
  each phase is a dense stride-1 convolution of dout -- no dilation zeros, no
  im2col copy -- and the phases are interleaved by one reshape. Every tap is
  used once: the FLOPs are those of the forward convolution.
  """
  (h, w), (sh, sw), ((pt, _), (pl, _)) = geo.in_hw, geo.strides, geo.pads
  (kh, kw), (oh, ow) = geo.kernel_hw, geo.out_hw
  n, c = dout.shape[0], v.shape[2]
  rows, cols = -(-h // sh), -(-w // sw)
  zero = jnp.zeros((), dout.dtype)
  phases = []
  for p in range(sh):
    r, taps_h, lo_h, hi_h = _phase_taps(h, kh, sh, pt, oh, p)
    phase_row = []
    for q in range(sw):
      s, taps_w, lo_w, hi_w = _phase_taps(w, kw, sw, pl, ow, q)
      if taps_h == 0 or taps_w == 0:
        phase_row.append(jnp.zeros((n, rows, cols, c), dout.dtype))
        continue
      u = _flip(v[r::sh, s::sw])  # (taps_h, taps_w, O, C), taps reversed
      padded = lax.pad(dout, zero, ((0, 0, 0), (lo_h, hi_h, 0), (lo_w, hi_w, 0), (0, 0, 0)))
      phase_row.append(
        lax.conv_general_dilated(padded, u, (1, 1), "VALID", dimension_numbers=_DN)
      )
    phases.append(jnp.stack(phase_row, axis=3))
  dz = jnp.stack(phases, axis=2).reshape(n, rows * sh, cols * sw, c)
  return dz[:, :h, :w, :]


def weight_grad_xla(z: jnp.ndarray, dout: jnp.ndarray, geo: Geometry, kernel_shape) -> jnp.ndarray:
  v0 = jnp.zeros(kernel_shape, z.dtype)
  _, vjp = jax.vjp(lambda v: forward_xla(z, v, geo), v0)
  return vjp(dout)[0]


def weight_grad_offsets(
  z: jnp.ndarray, dout: jnp.ndarray, geo: Geometry, kernel_shape
) -> jnp.ndarray:
  """dv[i, j] = slice_ij(z)ᵀ · dout: one (C, M) x (M, O) product per offset."""
  kh, kw, c, o = kernel_shape
  zp = _pad_input(z, geo)
  rows = [
    _matmul(_flat(_offset_slice(zp, geo, i, j)).T, _flat(dout))
    for i in range(kh)
    for j in range(kw)
  ]
  return jnp.stack(rows).reshape(kh, kw, c, o)


def weight_grad_phases(
  z: jnp.ndarray, dout: jnp.ndarray, geo: Geometry, kernel_shape, piece=None
) -> jnp.ndarray:
  """dv one stride phase at a time: the taps v[r::s, q::s] only ever see the
  input phase zp[r::s, q::s], so each block of dv is the weight gradient of a
  dense stride-1 convolution of that phase (`piece`, by default XLA's)."""
  kh, kw, c, o = kernel_shape
  sh, sw = geo.strides
  piece = piece or weight_grad_xla
  dv = jnp.zeros(kernel_shape, z.dtype)
  for r, q, taps_h, taps_w, phase in _phase_inputs(_pad_input(z, geo), geo):
    sub = Geometry(phase.shape[1:3], (taps_h, taps_w), (1, 1), ((0, 0), (0, 0)))
    dv = dv.at[r::sh, q::sw].set(piece(phase, dout, sub, (taps_h, taps_w, c, o)))
  return dv


def weight_grad_im2col(
  z: jnp.ndarray, dout: jnp.ndarray, geo: Geometry, kernel_shape
) -> jnp.ndarray:
  """dv = colsᵀ · dout with all offsets' slices side by side: one product."""
  kh, kw, c, o = kernel_shape
  zp = _pad_input(z, geo)
  cols = jnp.concatenate(
    [_offset_slice(zp, geo, i, j) for i in range(kh) for j in range(kw)], axis=-1
  )
  dv = _matmul(_flat(cols).T, _flat(dout))
  return dv.reshape(kh, kw, c, o)


# --------------------------------------------------------------------------
# Which formulation runs each piece. The thresholds come from
# launch/bench_ops.py on the 2-core AVX-512 development machine: XLA's direct
# convolution wins on narrow channels (the TC/AR/WF classifiers), where an
# im2col copy costs more memory traffic than the arithmetic it feeds; on wide
# channels a strided convolution's gradients are split by stride phase into
# dense stride-1 convolutions (XLA's own kernels, the platform default) or,
# when YNNPACK runs XLA's convolutions (whose weight gradient is slow), into
# matrix products over strided-slice im2col.


def _wide(c: int, o: int) -> bool:
  return c >= 16 and o >= 64


def _phases_pay(geo: Geometry, n: int) -> bool:
  """Stride phases beat im2col on large images; below ~64x64 input pixels per
  example the phases' small convolutions ran at half the im2col products' speed
  (detector layers at 48x48 and 24x24), and under YNNPACK never."""
  return n * geo.in_hw[0] * geo.in_hw[1] >= 4096 and not platform.ynn_convolutions()


def _choose_forward(geo: Geometry, n: int, c: int, o: int):
  oh, ow = geo.out_hw
  if c >= 128 and o >= 128 and n * oh * ow <= 1024:
    return forward_im2col
  return forward_xla


def _choose_input_grad(geo: Geometry, n: int, c: int, o: int):
  if not _wide(c, o):
    return input_grad_xla
  return input_grad_phases if _phases_pay(geo, n) else input_grad_col2im


def _choose_weight_grad(geo: Geometry, n: int, c: int, o: int):
  if not _wide(c, o):
    return weight_grad_xla
  return weight_grad_phases if _phases_pay(geo, n) else weight_grad_im2col


def _flip(w: jnp.ndarray) -> jnp.ndarray:
  """Spatially flipped kernel with input and output channels swapped (an involution)."""
  return jnp.swapaxes(lax.rev(w, (0, 1)), 2, 3)


# --------------------------------------------------------------------------
# The differentiable operations.


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv(x: jnp.ndarray, w: jnp.ndarray, geo: Geometry) -> jnp.ndarray:
  n, c, o = x.shape[0], w.shape[2], w.shape[3]
  return _choose_forward(geo, n, c, o)(x, w, geo)


def _conv_fwd(x, w, geo):
  return _conv(x, w, geo), (x, w)


def _conv_bwd(geo, res, dy):
  x, w = res
  n, c, o = x.shape[0], w.shape[2], w.shape[3]
  dx = _choose_input_grad(geo, n, c, o)(dy, w, geo)
  dw = _choose_weight_grad(geo, n, c, o)(x, dy, geo, w.shape)
  return dx, dw


_conv.defvjp(_conv_fwd, _conv_bwd)


def conv2d(
  x: jnp.ndarray, w: jnp.ndarray, strides: Sequence[int] = (1, 1), padding: str = "SAME"
) -> jnp.ndarray:
  """Same result as `lax.conv_general_dilated(x, w, strides, padding)` with NHWC/HWIO/NHWC.

  Args:
    x: (N, H, W, C) input.
    w: (KH, KW, C, O) kernel.
    strides: window strides (sh, sw).
    padding: "SAME" or "VALID".

  Returns:
    (N, OH, OW, O), with a custom backward pass built from matrix products or
    stride phases; narrow stride-1 convolutions run in the native kernels
    (`climjax.ops.native`) or, without them, on a space-to-depth grid
    (`climjax.ops.s2d`).
  """
  _check_operands(x, w, padding)
  if native.applies(x.shape, w.shape, strides, padding, x.dtype):
    return native.conv2d(x, w, padding)  # narrow channels: direct C++ kernels
  if s2d.s2d_applies(x.shape, w.shape, strides, padding) and not platform.ynn_convolutions():
    return s2d.conv2d_s2d(x, w)  # narrow channels: XLA's gradients on a folded grid
  geo = conv_geometry(x.shape[1:3], w.shape[:2], strides, padding)
  return _conv(x, w, geo)


def conv2d_max_pool(
  x: jnp.ndarray, w: jnp.ndarray, strides: Sequence[int], padding: str, window: Sequence[int]
) -> jnp.ndarray:
  """`max_pool2d(conv2d(x, w, strides, padding), window)`, fused where the native
  kernels apply (their backward pass unpools the gradient as it reads it)."""
  _check_operands(x, w, padding)
  if native.applies(x.shape, w.shape, strides, padding, x.dtype):
    return native.conv2d_max_pool(x, w, padding, window)
  return pool.max_pool2d(conv2d(x, w, strides, padding), window)


# A transposed convolution is the input gradient of a forward convolution with
# the kernel flipped (v[i, j] = w[K-1-i, K-1-j]ᵀ). Flipping costs a copy of the
# kernel at every use, which for the detector's widest layers (5x5x1280x1024,
# 131 MB) took longer than the layer's arithmetic; those layers have small
# spatial sizes, so above this kernel size the pieces are written on w itself
# as batched products over the kernel offsets, broadcasting the small
# activation across offsets instead of transposing the large kernel. At 39 MB
# (5x5x768x512) flipping still won in launch/bench_ops.py, at 78 MB it lost.
_FLIP_BYTES = 64 << 20


def _reversed_slices(a: jnp.ndarray, geo: Geometry) -> jnp.ndarray:
  """(KH·KW, N, OH, OW, C): entry (a, b) is the slice that w[a, b] multiplies."""
  kh, kw = geo.kernel_hw
  ap = _pad_input(a, geo)
  return jnp.stack(
    [_offset_slice(ap, geo, kh - 1 - i, kw - 1 - j) for i in range(kh) for j in range(kw)]
  )


def transpose_forward_batched(x: jnp.ndarray, w: jnp.ndarray, geo: Geometry) -> jnp.ndarray:
  kh, kw, cin, cout = w.shape
  n, h, w_, _ = x.shape
  xb = jnp.broadcast_to(_flat(x), (kh * kw, n * h * w_, cin))
  cols = lax.dot_general(xb, w.reshape(kh * kw, cin, cout), (((2,), (1,)), ((0,), (0,))))
  cols = cols.reshape(kh * kw, n, h, w_, cout)
  return _col2im(lambda i, j: cols[(kh - 1 - i) * kw + (kw - 1 - j)], geo, n, cout, x.dtype)


def transpose_input_grad_batched(dy: jnp.ndarray, w: jnp.ndarray, geo: Geometry) -> jnp.ndarray:
  kh, kw, cin, cout = w.shape
  slices = _reversed_slices(dy, geo)
  _, n, oh, ow, _ = slices.shape
  slices = slices.reshape(kh * kw, n * oh * ow, cout)
  prod = lax.dot_general(slices, w.reshape(kh * kw, cin, cout), (((2,), (2,)), ((0,), (0,))))
  return jnp.sum(prod, axis=0).reshape(n, oh, ow, cin)


def transpose_weight_grad_batched(x: jnp.ndarray, dy: jnp.ndarray, geo: Geometry, kernel_shape):
  kh, kw, cin, cout = kernel_shape
  slices = _reversed_slices(dy, geo)
  m = slices.shape[1] * slices.shape[2] * slices.shape[3]
  slices = slices.reshape(kh * kw, m, cout)
  xb = jnp.broadcast_to(_flat(x), (kh * kw, m, cin))
  dw = lax.dot_general(xb, slices, (((1,), (1,)), ((0,), (0,))))
  return dw.reshape(kernel_shape)


def _transpose_is_batched(w: jnp.ndarray) -> bool:
  return w.size * w.dtype.itemsize > _FLIP_BYTES


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv_transpose(x: jnp.ndarray, w: jnp.ndarray, geo: Geometry) -> jnp.ndarray:
  if _transpose_is_batched(w):
    return transpose_forward_batched(x, w, geo)
  # The forward convolution of this geometry maps y-shaped arrays to x-shaped
  # ones with kernel v = _flip(w): c = channels of y, o = channels of x.
  n, o, c = x.shape[0], w.shape[2], w.shape[3]
  return _choose_input_grad(geo, n, c, o)(x, _flip(w), geo)


def _conv_transpose_fwd(x, w, geo):
  return _conv_transpose(x, w, geo), (x, w)


def _conv_transpose_bwd(geo, res, dy):
  x, w = res
  if _transpose_is_batched(w):
    dx = transpose_input_grad_batched(dy, w, geo)
    return dx, transpose_weight_grad_batched(x, dy, geo, w.shape)
  n, o, c = x.shape[0], w.shape[2], w.shape[3]
  v = _flip(w)
  dx = _choose_forward(geo, n, c, o)(dy, v, geo)
  dv = _choose_weight_grad(geo, n, c, o)(dy, x, geo, v.shape)
  return dx, _flip(dv)


_conv_transpose.defvjp(_conv_transpose_fwd, _conv_transpose_bwd)


def conv_transpose2d(
  x: jnp.ndarray, w: jnp.ndarray, strides: Sequence[int] = (2, 2), padding: str = "SAME"
) -> jnp.ndarray:
  """Same result as `lax.conv_transpose(x, w, strides, padding)` (NHWC, HWIO, no kernel flip).

  This is what `flax.linen.ConvTranspose` computes (transpose_kernel=False).

  Args:
    x: (N, H, W, C) input.
    w: (KH, KW, C, O) kernel, C = input channels.
    strides: upsampling factors (sh, sw).
    padding: "SAME" (output H*sh x W*sw) or "VALID".

  Returns:
    (N, OH, OW, O), forward and backward built from matrix products where
    they are faster than XLA's transposed convolution.
  """
  _check_operands(x, w, padding)
  geo = conv_transpose_geometry(x.shape[1:3], w.shape[:2], strides, padding)
  return _conv_transpose(x, w, geo)


def _check_operands(x: jnp.ndarray, w: jnp.ndarray, padding: str) -> None:
  if x.ndim != 4 or w.ndim != 4:
    raise ValueError(f"expected NHWC input and HWIO kernel, got shapes {x.shape} and {w.shape}")
  if x.shape[3] != w.shape[2]:
    raise ValueError(f"input has {x.shape[3]} channels but the kernel expects {w.shape[2]}")
  if padding not in ("SAME", "VALID"):
    raise ValueError(f"padding must be 'SAME' or 'VALID', got {padding!r}")
