"""Narrow-channel stride-1 convolutions in C++ (`narrow_conv.cc`), called from XLA.

XLA's CPU convolutions lower every layer to matrix products as wide as its
channel counts, so the patch classifiers' 8- and 16-channel layers ran at a
quarter of what the cores do, and their weight gradients slower still
(`launch/bench_ops.py --tc`). `narrow_conv.cc` computes them directly,
vectorised along the output row, as XLA FFI custom calls: a forward and a
weight-gradient kernel (the input gradient is the forward with the kernel
flipped), a max pool that records where each maximum was, and variants of the
two convolution kernels that read a pooled gradient and unpool it on the fly,
so that a convolution followed by a pool (`conv2d_max_pool`) never holds its
full-size gradient in memory. They run inside the jitted step like any other
XLA operation, on XLA's intra-op thread pool.

The library is compiled for the host CPU (`-march=native`) on first use, or by
`native.main()` (launch/install.sh runs it), into
`climjax/ops/_build/` (or `$CLIMJAX_NATIVE_DIR`), named by a hash of the
source, compiler, flags and CPU so that a stale build is never loaded. Where
no C++ compiler is found, or `CLIMJAX_NATIVE=0`, `available()` is False and
climjax uses XLA's convolutions (climjax.ops.conv, climjax.ops.s2d) and an
XLA max pool: same results to float32 rounding, about half the speed on the
TC classifier's step.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform as _platform
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

SOURCE = Path(__file__).with_name("narrow_conv.cc")
FLAGS = ("-O3", "-march=native", "-std=c++17", "-shared", "-fPIC")
DISABLE_ENV = "CLIMJAX_NATIVE"  # "0": never use the native kernels
DIR_ENV = "CLIMJAX_NATIVE_DIR"
_TARGETS = {
  "narrow_conv_forward": "ClimjaxNarrowConvForward",
  "narrow_conv_weight_grad": "ClimjaxNarrowConvWeightGrad",
  "narrow_conv_forward_unpool": "ClimjaxNarrowConvForwardUnpool",
  "narrow_conv_weight_grad_unpool": "ClimjaxNarrowConvWeightGradUnpool",
  "max_pool": "ClimjaxMaxPool",
}
# Widest channel counts sent here. Up to 32 the native kernels beat every XLA
# formulation on each piece (8-16 channels: `launch/bench_ops.py --tc`; 16-32,
# by hand on 256x16x16 and 64x32x32: 280-310 GFLOP/s against XLA's 51-265);
# wider layers have not been measured and keep XLA's wide matrix products.
MAX_CHANNELS = 32


class NativeBuildError(RuntimeError):
  """The C++ kernels could not be compiled or loaded."""


def _compiler() -> str | None:
  return shutil.which(os.environ.get("CXX", "c++")) or shutil.which("g++") or shutil.which("clang++")


def _cpu_tag() -> str:
  """The CPU's model and instruction-set flags (a -march=native build runs only there)."""
  try:
    lines = Path("/proc/cpuinfo").read_text().splitlines()
    keep = [ln for ln in lines if ln.startswith(("model name", "flags", "Features", "CPU part"))]
    return "\n".join(sorted(set(keep)))
  except OSError:
    return _platform.processor() or _platform.machine()


def library_path() -> Path:
  """Where the build for this source, compiler, jaxlib and CPU lives."""
  key = hashlib.sha256()
  for part in (SOURCE.read_bytes(), " ".join(FLAGS).encode(), str(_compiler()).encode(),
               jax.ffi.include_dir().encode(), jax.__version__.encode(), _cpu_tag().encode()):
    key.update(part)
  directory = Path(os.environ.get(DIR_ENV) or Path(__file__).with_name("_build"))
  return directory / f"narrow_conv-{key.hexdigest()[:16]}.so"


def build(path: Path | None = None) -> Path:
  """Compiles narrow_conv.cc; the file appears atomically (concurrent builds are safe)."""
  path = path or library_path()
  compiler = _compiler()
  if compiler is None:
    raise NativeBuildError("no C++ compiler found (set CXX, or install g++)")
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(suffix=".so", dir=path.parent)
  os.close(fd)
  cmd = [compiler, *FLAGS, "-I", jax.ffi.include_dir(), str(SOURCE), "-o", tmp]
  result = subprocess.run(cmd, capture_output=True, text=True)
  if result.returncode != 0:
    os.unlink(tmp)
    raise NativeBuildError(f"{' '.join(cmd)} failed:\n{result.stderr[-2000:]}")
  os.replace(tmp, path)
  for stale in path.parent.glob("narrow_conv-*.so"):  # builds of older sources
    if stale != path:
      stale.unlink(missing_ok=True)
  return path


@functools.cache
def _load() -> str | None:
  """Builds if needed, loads and registers the kernels; None on success, else why not."""
  if os.environ.get(DISABLE_ENV, "1") == "0":
    return f"{DISABLE_ENV}=0"
  try:
    path = library_path()
    if not path.exists():
      build(path)
    library = ctypes.cdll.LoadLibrary(str(path))
    for name, symbol in _TARGETS.items():
      capsule = jax.ffi.pycapsule(getattr(library, symbol))
      jax.ffi.register_ffi_target(f"climjax_{name}", capsule, platform="cpu")
  except (NativeBuildError, OSError, AttributeError) as error:
    warnings.warn(
      f"climjax: native narrow-channel convolutions unavailable, using XLA's ({error})",
      stacklevel=3,
    )
    return str(error)
  return None


def available() -> bool:
  """Whether the native kernels are built and registered (builds them on first call)."""
  return _load() is None


def applies(x_shape, w_shape, strides, padding, dtype) -> bool:
  """Stride-1 float32 convolutions with at most MAX_CHANNELS in and out."""
  _, _, c, o = w_shape
  return (
    tuple(strides) == (1, 1)
    and padding in ("SAME", "VALID")
    and jnp.dtype(dtype) == jnp.float32
    and max(c, o) <= MAX_CHANNELS
    and available()
  )


def _pads(x_shape, w_shape, padding: str) -> tuple[int, int, int, int]:
  (pt, pb), (pl, pr) = lax.padtype_to_pads(x_shape[1:3], w_shape[:2], (1, 1), padding)
  return pt, pb, pl, pr


def _ints(**values) -> dict:
  """Custom-call attributes: int64 scalars by name."""
  return {k: np.int64(v) for k, v in values.items()}


def _attrs(pads) -> dict:
  return _ints(**dict(zip(("pt", "pb", "pl", "pr"), pads, strict=True)))


def _round8(n: int) -> int:
  return -(-n // 8) * 8


def _pad_channels(a: jnp.ndarray, to: int) -> jnp.ndarray:
  return jnp.pad(a, ((0, 0), (0, 0), (0, 0), (0, to - a.shape[3])))


def _forward(x: jnp.ndarray, w: jnp.ndarray, pads, unpool=None) -> jnp.ndarray:
  """The forward custom call; output channels padded to a multiple of 8 and cut back.

  With `unpool = (index, (h, w), window)`, x is a pooled gradient that the
  kernel unpools (to h x w) as it reads it.
  """
  kh, kw, _, o = w.shape
  pt, pb, pl, pr = pads
  n = x.shape[0]
  h, wd = x.shape[1:3] if unpool is None else unpool[1]
  w = _pad_channels(w, _round8(o)).transpose(0, 2, 1, 3)
  out = jax.ShapeDtypeStruct((n, h + pt + pb - kh + 1, wd + pl + pr - kw + 1, w.shape[3]), x.dtype)
  if unpool is None:
    y = jax.ffi.ffi_call("climjax_narrow_conv_forward", out)(x, w, **_attrs(pads))
  else:
    index, _, (uh, uw) = unpool
    y = jax.ffi.ffi_call("climjax_narrow_conv_forward_unpool", out)(
      x, index, w, **_attrs(pads), **_ints(h=h, w=wd, uh=uh, uw=uw)
    )
  return y[..., :o]


def _weight_grad(x: jnp.ndarray, dy: jnp.ndarray, kernel_shape, pads, unpool=None) -> jnp.ndarray:
  kh, kw, c, o = kernel_shape
  out = jax.ShapeDtypeStruct((kh, kw, c, _round8(o)), x.dtype)
  if unpool is None:
    dk = jax.ffi.ffi_call("climjax_narrow_conv_weight_grad", out)(
      x, _pad_channels(dy, _round8(o)), **_ints(kh=kh, kw=kw), **_attrs(pads)
    )
  else:
    index, (h, w), (uh, uw) = unpool
    dk = jax.ffi.ffi_call("climjax_narrow_conv_weight_grad_unpool", out)(
      x,
      _pad_channels(dy, _round8(o)),
      _pad_channels(index, _round8(o)),
      **_ints(kh=kh, kw=kw, h=h, w=w, uh=uh, uw=uw),
      **_attrs(pads),
    )
  return dk[..., :o]


def _input_pads(x_shape, w_shape, pads) -> tuple[int, int, int, int]:
  """Pads that make dx = forward(dy, flipped kernel) have x's shape."""
  (_, h, wd, _), (kh, kw, _, _) = x_shape, w_shape
  pt, _, pl, _ = pads
  oh, ow = h + pads[0] + pads[1] - kh + 1, wd + pads[2] + pads[3] - kw + 1
  top, left = kh - 1 - pt, kw - 1 - pl
  return top, h + kh - 1 - oh - top, left, wd + kw - 1 - ow - left


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv(x: jnp.ndarray, w: jnp.ndarray, pads) -> jnp.ndarray:
  return _forward(x, w, pads)


def _conv_fwd(x, w, pads):
  return _forward(x, w, pads), (x, w)


def _conv_bwd(pads, res, dy):
  x, w = res
  flipped = jnp.swapaxes(lax.rev(w, (0, 1)), 2, 3)
  dx = _forward(dy, flipped, _input_pads(x.shape, w.shape, pads))
  return dx, _weight_grad(x, dy, w.shape, pads)


_conv.defvjp(_conv_fwd, _conv_bwd)


def conv2d(x: jnp.ndarray, w: jnp.ndarray, padding: str = "SAME") -> jnp.ndarray:
  """`lax.conv_general_dilated(x, w, (1, 1), padding)` (NHWC, HWIO) by the native kernels.

  Call only where `applies(...)` holds; the input gradient (unused for a
  network's first layer) is removed by XLA when nothing consumes it.
  """
  return _conv(x, w, _pads(x.shape, w.shape, padding))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv_pool(x: jnp.ndarray, w: jnp.ndarray, pads, window) -> jnp.ndarray:
  return max_pool_with_index(_forward(x, w, pads), window)[0]


def _conv_pool_fwd(x, w, pads, window):
  y = _forward(x, w, pads)
  pooled, index = max_pool_with_index(y, window)
  return pooled, (x, w, index, y.shape[1:3])


def _conv_pool_bwd(pads, window, res, dpooled):
  x, w, index, out_hw = res
  unpool = (index, out_hw, window)
  flipped = jnp.swapaxes(lax.rev(w, (0, 1)), 2, 3)
  dx = _forward(dpooled, flipped, _input_pads(x.shape, w.shape, pads), unpool)
  return dx, _weight_grad(x, dpooled, w.shape, pads, unpool)


_conv_pool.defvjp(_conv_pool_fwd, _conv_pool_bwd)


def conv2d_max_pool(
  x: jnp.ndarray, w: jnp.ndarray, padding: str, window: tuple[int, int]
) -> jnp.ndarray:
  """max_pool(conv(x, w), window) (stride = window, "VALID" pool) by the native kernels.

  The backward pass never materialises the unpooled gradient: both gradient
  kernels unpool the pooled one (by the forward's saved index) while copying
  it into their row layout. Call only where `applies(...)` holds.
  """
  return _conv_pool(x, w, _pads(x.shape, w.shape, padding), tuple(int(k) for k in window))


def max_pool_with_index(x: jnp.ndarray, window: tuple[int, int]):
  """(y, index): the max over each non-overlapping window and the int8 row-major
  position of its first maximum (call only where `available()` and x is float32)."""
  n, h, w, c = x.shape
  kh, kw = window
  out = (
    jax.ShapeDtypeStruct((n, h // kh, w // kw, c), x.dtype),
    jax.ShapeDtypeStruct((n, h // kh, w // kw, c), jnp.int8),
  )
  return jax.ffi.ffi_call("climjax_max_pool", out)(x, **_ints(kh=kh, kw=kw))


def main() -> None:
  """Builds (or finds) the library and says where."""
  path = library_path()
  if not path.exists():
    build(path)
  print(f"climjax native kernels: {path}")

