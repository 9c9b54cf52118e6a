"""Per-layer GFLOP/s of climjax's convolutions against XLA's: forward, dX, dW.

  python launch/bench_ops.py                       # detector encoder + decoder, 384x384, batch 1
  python launch/bench_ops.py --size=768 --layers=1,2 --formulations
  python launch/bench_ops.py --tc                  # the TC classifier's convs, batch 256

Layers are the detector's: six 5x5 stride-2 "SAME" convolutions with the paper's
widths 16 -> 128 -> 256 -> 512 -> 768 -> 1024 -> 1280, and the decoder's six
5x5 stride-2 transposed convolutions mirroring them. "xla" is
`lax.conv_general_dilated` / `lax.conv_transpose` differentiated by JAX; "fast"
is `climjax.ops` with the formulation its heuristics choose; `--formulations`
adds a column per formulation of each piece (XLA convolution, im2col / col2im
matrix product, per-offset matrix products, stride phases, space-to-depth) so the heuristics can be re-checked
on another machine. Each piece is compiled alone (XLA removes the rest of the
backward pass as dead code) and timed best-of-`--reps`, the contenders
interleaved so that load from other processes hits them alike.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from launch.bench import apply_platform  # noqa: E402  (imports no JAX)

WIDTHS = (16, 128, 256, 512, 768, 1024, 1280)
DN = ("NHWC", "HWIO", "NHWC")


def _time(run) -> float:
  t0 = time.perf_counter()
  run()
  return time.perf_counter() - t0


def _pieces(kind: str, strides, padding):
  """{impl: {piece: f(x, w, dy)}} for one layer kind ("conv" or "transpose")."""
  import jax
  from jax import lax

  from climjax import ops

  if kind == "conv":
    ref = lambda x, w: lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=DN)  # noqa: E731
    fast = lambda x, w: ops.conv2d(x, w, strides, padding)  # noqa: E731
  else:
    ref = lambda x, w: lax.conv_transpose(x, w, strides, padding, dimension_numbers=DN)  # noqa: E731
    fast = lambda x, w: ops.conv_transpose2d(x, w, strides, padding)  # noqa: E731

  def split(fn):
    return {
      "fwd": lambda x, w, dy: fn(x, w),
      "dX": lambda x, w, dy: jax.vjp(lambda x: fn(x, w), x)[1](dy)[0],
      "dW": lambda x, w, dy: jax.vjp(lambda w: fn(x, w), w)[1](dy)[0],
    }

  return {"xla": split(ref), "fast": split(fast)}


def _formulations(kind: str, x_shape, w_shape, strides, padding):
  """{name: {piece: f(x, w, dy)}} with each formulation of climjax.ops.conv forced."""
  import jax

  from climjax.ops import conv as C
  from climjax.ops import s2d as S

  if kind == "conv":
    geo = C.conv_geometry(x_shape[1:3], w_shape[:2], strides, padding)
    folded = {}
    if S.s2d_applies(x_shape, w_shape, strides, padding):
      # Narrow stride-1 convolutions on the space-to-depth grid, XLA's autodiff.
      folded["s2d"] = {
        "fwd": lambda x, w, dy: S.conv2d_s2d(x, w),
        "dX": lambda x, w, dy: jax.vjp(lambda x: S.conv2d_s2d(x, w), x)[1](dy)[0],
        "dW": lambda x, w, dy: jax.vjp(lambda w: S.conv2d_s2d(x, w), w)[1](dy)[0],
      }
    return folded | {
      "xla-conv": {
        "fwd": lambda x, w, dy: C.forward_xla(x, w, geo),
        "dX": lambda x, w, dy: C.input_grad_xla(dy, w, geo),
      },
      "matmul": {
        "fwd": lambda x, w, dy: C.forward_im2col(x, w, geo),
        "dX": lambda x, w, dy: C.input_grad_col2im(dy, w, geo),
        "dW": lambda x, w, dy: C.weight_grad_im2col(x, dy, geo, w.shape),
      },
      "offsets": {"dW": lambda x, w, dy: C.weight_grad_offsets(x, dy, geo, w.shape)},
      "phases": {
        "dX": lambda x, w, dy: C.input_grad_phases(dy, w, geo),
        "dW": lambda x, w, dy: C.weight_grad_phases(x, dy, geo, w.shape),
      },
    }
  # A transposed conv is the input gradient of a forward conv (kernel flipped):
  # its forward is col2im or XLA's lhs-dilated conv, its dX a strided conv.
  geo = C.conv_transpose_geometry(x_shape[1:3], w_shape[:2], strides, padding)
  v_shape = (*w_shape[:2], w_shape[3], w_shape[2])
  return {
    "xla-conv": {
      "fwd": lambda x, w, dy: C.input_grad_xla(x, C._flip(w), geo),
      "dX": lambda x, w, dy: C.forward_xla(dy, C._flip(w), geo),
    },
    "matmul": {
      "fwd": lambda x, w, dy: C.input_grad_col2im(x, C._flip(w), geo),
      "dX": lambda x, w, dy: C.forward_im2col(dy, C._flip(w), geo),
      "dW": lambda x, w, dy: C._flip(C.weight_grad_im2col(dy, x, geo, v_shape)),
    },
    "offsets": {"dW": lambda x, w, dy: C._flip(C.weight_grad_offsets(dy, x, geo, v_shape))},
    "phases": {
      "fwd": lambda x, w, dy: C.input_grad_phases(x, C._flip(w), geo),
      "dW": lambda x, w, dy: C._flip(C.weight_grad_phases(dy, x, geo, v_shape)),
    },
    "batched": {
      "fwd": lambda x, w, dy: C.transpose_forward_batched(x, w, geo),
      "dX": lambda x, w, dy: C.transpose_input_grad_batched(dy, w, geo),
      "dW": lambda x, w, dy: C.transpose_weight_grad_batched(x, dy, geo, w.shape),
    },
  }


def _torch_pieces(kind: str, xs, ws, strides, channels_last: bool):
  """{piece: zero-argument callable} for the same layer in PyTorch (padding as "SAME")."""
  import torch

  n, h, w_, c = xs
  kh, kw, cin, cout = ws
  x = torch.randn(n, cin, h, w_)
  transposed = kind == "transpose"
  # PyTorch kernels are (O, I, KH, KW) for conv and (I, O, KH, KW) for conv_transpose.
  weight = torch.randn(cin, cout, kh, kw) if transposed else torch.randn(cout, cin, kh, kw)
  pad = [(kh - 1) // 2, (kw - 1) // 2]
  out_pad = [s - 1 for s in strides] if transposed else [0, 0]
  fmt = torch.channels_last if channels_last else torch.contiguous_format
  x, weight = x.contiguous(memory_format=fmt), weight.contiguous(memory_format=fmt)

  def forward():
    with torch.no_grad():
      if transposed:
        return torch.nn.functional.conv_transpose2d(
          x, weight, stride=strides, padding=pad, output_padding=out_pad
        )
      return torch.nn.functional.conv2d(x, weight, stride=strides, padding=pad)

  dy = forward().contiguous(memory_format=fmt)

  def backward(mask):
    def run():
      with torch.no_grad():
        return torch.ops.aten.convolution_backward(
          dy, x, weight, None, list(strides), pad, [1, 1], transposed, out_pad, 1, mask
        )

    return run

  return {
    "fwd": forward,
    "dX": backward([True, False, False]),
    "dW": backward([False, True, False]),
  }


def layer_specs(size: int, batch: int, tc: bool):
  """(name, kind, x_shape, w_shape, strides, padding, flops of the forward)."""
  from jax import lax

  specs = []
  if tc:
    for name, (h, c, o) in {"tc conv1": (32, 8, 8), "tc conv2": (16, 8, 16)}.items():
      specs.append((name, "conv", (batch, h, h, c), (5, 5, c, o), (1, 1), "SAME"))
  else:
    h = size
    for i in range(6):
      specs.append(
        (
          f"enc{i + 1}",
          "conv",
          (batch, h, h, WIDTHS[i]),
          (5, 5, WIDTHS[i], WIDTHS[i + 1]),
          (2, 2),
          "SAME",
        )
      )
      h //= 2
    rev = WIDTHS[::-1]
    for i in range(6):
      specs.append(
        (
          f"dec{i + 1}",
          "transpose",
          (batch, h, h, rev[i]),
          (5, 5, rev[i], rev[i + 1]),
          (2, 2),
          "SAME",
        )
      )
      h *= 2
  out = []
  for name, kind, xs, ws, st, pad in specs:
    # Useful multiply-adds: the forward conv of the geometry (for a transposed
    # conv, the strided conv it mirrors), padding taps included as is usual.
    if kind == "conv":
      oh, ow = (
        (d + lo + hi - k) // s + 1
        for d, k, s, (lo, hi) in zip(
          xs[1:3], ws[:2], st, lax.padtype_to_pads(xs[1:3], ws[:2], st, pad), strict=True
        )
      )
      flops = 2.0 * xs[0] * oh * ow * ws[0] * ws[1] * ws[2] * ws[3]
    else:
      flops = 2.0 * xs[0] * xs[1] * xs[2] * ws[0] * ws[1] * ws[2] * ws[3]
    out.append((name, kind, xs, ws, st, pad, flops))
  return out


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument("--size", type=int, default=384, help="detector input height = width")
  parser.add_argument("--batch", type=int, default=1)
  parser.add_argument(
    "--tc", action="store_true", help="the TC classifier's convs (batch 256) instead"
  )
  parser.add_argument("--layers", default="", help="comma-separated layer names (default: all)")
  parser.add_argument("--reps", type=int, default=5)
  parser.add_argument("--formulations", action="store_true", help="also time every formulation")
  parser.add_argument(
    "--impls",
    default="xla,fast",
    help="which of xla,fast to time (XLA's transposed-conv dW is slow)",
  )
  parser.add_argument(
    "--torch", action="store_true", help="also time PyTorch (NCHW, channels-last)"
  )
  parser.add_argument(
    "--xla_flags",
    default=None,
    help="XLA flags (default: the configs' platform.xla_flags, as a training run uses)",
  )
  args = parser.parse_args(argv)
  print(f"platform: {apply_platform(args.xla_flags)}", flush=True)

  import jax
  import jax.numpy as jnp

  if args.torch:
    import os

    import torch

    torch.set_num_threads(len(os.sched_getaffinity(0)))
  batch = 256 if args.tc and args.batch == 1 else args.batch
  specs = layer_specs(args.size, batch, args.tc)
  wanted = set(args.layers.split(",")) if args.layers else None
  rng = np.random.default_rng(0)
  header = None
  for name, kind, xs, ws, st, pad, flops in specs:
    if wanted and name not in wanted:
      continue
    impls = {k: v for k, v in _pieces(kind, st, pad).items() if k in args.impls.split(",")}
    if args.formulations:
      impls.update(_formulations(kind, xs, ws, st, pad))
    x = jnp.asarray(rng.standard_normal(xs), jnp.float32)
    w = jnp.asarray(rng.standard_normal(ws) / np.sqrt(np.prod(ws[:3])), jnp.float32)
    y_shape = jax.eval_shape(_pieces(kind, st, pad)["xla"]["fwd"], x, w, None).shape
    dy = jnp.asarray(rng.standard_normal(y_shape), jnp.float32)
    cols = [
      (impl, piece) for impl in impls for piece in ("fwd", "dX", "dW") if piece in impls[impl]
    ]
    runs = {}
    for c in cols:
      fn = jax.jit(impls[c[0]][c[1]])
      runs[c] = lambda fn=fn, a=(x, w, dy): jax.block_until_ready(fn(*a))
    if args.torch:
      for layout in ("nchw", "cl"):
        pieces = _torch_pieces(kind, xs, ws, st, layout == "cl")
        for piece, fn in pieces.items():
          runs[(f"torch-{layout}", piece)] = fn
          cols.append((f"torch-{layout}", piece))
    for run in runs.values():
      run()
    best = {c: float("inf") for c in cols}
    for _ in range(args.reps):
      for c, run in runs.items():
        best[c] = min(best[c], _time(run))
    if header is None:
      header = ["layer", "GFLOP"] + [f"{p} {i}" for i, p in cols]
      print("GFLOP/s per piece (a piece's FLOPs are the forward's)")
      print("| " + " | ".join(header) + " |")
      print("|" + "---|" * len(header))
    desc = f"{name} {xs[1]}x{xs[2]} {ws[2]}->{ws[3]}"
    print(
      f"| {desc} | {flops / 1e9:.2f} | "
      + " | ".join(f"{flops / best[c] / 1e9:.0f}" for c in cols)
      + " |",
      flush=True,
    )


if __name__ == "__main__":
  main()
