"""FLOP counts of JAX functions, to report achieved GFLOP/s.

`analytic_flops` walks the jaxpr and counts 2 x multiply-adds of every
`conv_general_dilated` and `dot_general`, including those inside jit,
custom_vjp/custom_jvp rules, remat and scan bodies. It counts what is live: an
operation whose result never reaches the function's outputs (for instance the
input gradient that a custom_vjp rule computes for a network's input, which
XLA then removes) is not counted. A convolution counts only the kernel taps
that land on real input pixels, not on padding or on the holes of an input
(lhs) dilation: that is what XLA's `HloCostAnalysis` counts, and it makes a
transposed convolution cost the same as the forward convolution it mirrors.

The native narrow-channel kernels (climjax.ops.native) are XLA custom calls,
which XLA's cost analysis cannot see; `analytic_flops` counts them like the
convolutions they compute (output channels as the kernel runs them, padded to
a multiple of 8).

`xla_flops` reads the same number from XLA's cost analysis of the compiled
program (custom calls excluded). It also counts elementwise work (1 FLOP per add, multiply, max, ...),
so it runs a few percent above `analytic_flops` for a convolutional network.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import numpy as np

try:  # jax >= 0.4.36 exposes the jaxpr types here; `jax.core` is the older home.
  from jax.extend.core import ClosedJaxpr, Jaxpr, Literal
except ImportError:  # pragma: no cover
  from jax.core import ClosedJaxpr, Jaxpr, Literal


def _valid_taps(
  in_size: int,
  out_size: int,
  kernel: int,
  stride: int,
  pad_lo: int,
  lhs_dilation: int,
  rhs_dilation: int,
) -> int:
  """Number of (output, kernel tap) pairs along one axis that read a real input pixel."""
  o = np.arange(out_size)[:, None]
  k = np.arange(kernel)[None, :]
  u = o * stride - pad_lo + k * rhs_dilation  # position in the dilated, unpadded input
  real = (u >= 0) & (u % lhs_dilation == 0) & (u // lhs_dilation < in_size)
  return int(real.sum())


def _conv_flops(eqn) -> float:
  lhs, rhs = (v.aval.shape for v in eqn.invars[:2])
  out = eqn.outvars[0].aval.shape
  p = eqn.params
  dn = p["dimension_numbers"]
  lhs_spec, rhs_spec, out_spec = dn.lhs_spec, dn.rhs_spec, dn.out_spec
  taps = 1
  for i in range(len(lhs_spec) - 2):
    taps *= _valid_taps(
      lhs[lhs_spec[i + 2]],
      out[out_spec[i + 2]],
      rhs[rhs_spec[i + 2]],
      p["window_strides"][i],
      p["padding"][i][0],
      (p["lhs_dilation"] or (1,) * len(lhs))[i],
      (p["rhs_dilation"] or (1,) * len(lhs))[i],
    )
  batch = out[out_spec[0]]
  out_features = out[out_spec[1]]
  in_features_per_group = rhs[rhs_spec[1]]
  return 2.0 * batch * out_features * in_features_per_group * taps


def _native_conv_flops(eqn) -> float:
  """The native convolution custom calls (climjax.ops.native):

    forward(x, kernel (KH, C, KW, O))               weight_grad(x, dy)
    forward_unpool(pooled x, index, kernel)         weight_grad_unpool(x, pooled dy, index)

  An "unpool" operand is a pooled array standing for an image of the `h` x `w`
  attributes' size.
  """
  attrs = {k: int(v) for k, v in eqn.params["attributes"]}
  shapes = [v.aval.shape for v in eqn.invars]
  if eqn.params["target_name"].startswith("climjax_narrow_conv_forward"):
    x, (kh, _, kw, o) = shapes[0], shapes[-1]
    if "h" in attrs:
      x = (x[0], attrs["h"], attrs["w"], x[3])
    out = eqn.outvars[0].aval.shape
  else:
    x, out, (kh, kw) = shapes[0], shapes[1], (attrs["kh"], attrs["kw"])
    if "h" in attrs:
      out = (out[0], attrs["h"], attrs["w"], out[3])
    o = out[3]
  taps = _valid_taps(x[1], out[1], kh, 1, attrs["pt"], 1, 1)
  taps *= _valid_taps(x[2], out[2], kw, 1, attrs["pl"], 1, 1)
  return 2.0 * x[0] * x[3] * o * taps


_NATIVE_CONVS = (
  "climjax_narrow_conv_forward",
  "climjax_narrow_conv_weight_grad",
  "climjax_narrow_conv_forward_unpool",
  "climjax_narrow_conv_weight_grad_unpool",
)


def _dot_flops(eqn) -> float:
  lhs, rhs = (v.aval.shape for v in eqn.invars[:2])
  (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
  contracted = np.prod([lhs[d] for d in lc], dtype=float)
  batch = np.prod([lhs[d] for d in lb], dtype=float)
  lhs_free = np.prod([s for d, s in enumerate(lhs) if d not in lc and d not in lb], dtype=float)
  rhs_free = np.prod([s for d, s in enumerate(rhs) if d not in rc and d not in rb], dtype=float)
  return 2.0 * batch * contracted * lhs_free * rhs_free


# Primitives whose (first) sub-jaxpr takes the equation's operands and returns
# its results one for one, so liveness passes straight through them.
_CALL_PARAMS = ("jaxpr", "call_jaxpr", "fun_jaxpr")


def _as_jaxpr(obj) -> Jaxpr | None:
  if isinstance(obj, ClosedJaxpr):
    return obj.jaxpr
  if isinstance(obj, Jaxpr):
    return obj
  return None


def _count(jaxpr: Jaxpr, used_out: list[bool]) -> tuple[float, list[bool]]:
  """FLOPs of the live part of `jaxpr`, and which of its inputs that part reads."""
  used = {
    v for v, u in zip(jaxpr.outvars, used_out, strict=True) if u and not isinstance(v, Literal)
  }
  total = 0.0
  for eqn in reversed(jaxpr.eqns):
    live_out = [v in used for v in eqn.outvars]
    if not any(live_out) and not eqn.effects:
      continue
    name = eqn.primitive.name
    flops, used_in = 0.0, [True] * len(eqn.invars)
    if name == "conv_general_dilated":
      flops = _conv_flops(eqn)
    elif name == "dot_general":
      flops = _dot_flops(eqn)
    elif name == "ffi_call" and eqn.params["target_name"] in _NATIVE_CONVS:
      flops = _native_conv_flops(eqn)
    else:
      call = next((_as_jaxpr(eqn.params[k]) for k in _CALL_PARAMS if k in eqn.params), None)
      if (
        call is not None
        and len(call.invars) == len(eqn.invars)
        and len(call.outvars) == len(eqn.outvars)
        and name != "scan"
      ):
        flops, used_in = _count(call, live_out)
      else:
        # Loops and branches: count every sub-jaxpr as fully live; a scan body
        # runs `length` times, a cond costs its most expensive branch, and a
        # while body is counted once (its trip count is not known statically).
        sub_flops = []
        for value in eqn.params.values():
          values = value if isinstance(value, tuple | list) else (value,)
          for item in values:
            sub = _as_jaxpr(item)
            if sub is not None:
              sub_flops.append(_count(sub, [True] * len(sub.outvars))[0])
        if sub_flops:
          flops = max(sub_flops) if name == "cond" else sum(sub_flops)
        if name == "scan":
          flops *= eqn.params["length"]
    total += flops
    for v, u in zip(eqn.invars, used_in, strict=True):
      if u and not isinstance(v, Literal):
        used.add(v)
  return total, [v in used for v in jaxpr.invars]


def analytic_flops(fn: Callable, *args, **kwargs) -> float:
  """2 x multiply-adds of the convolutions and matrix products `fn(*args)` runs.

  Works on any traceable function: a forward pass, a `jax.grad` or `jax.vjp`
  of one (then it is forward + backward), or a whole jitted train step.
  """
  closed = jax.make_jaxpr(fn)(*args, **kwargs)
  return _count(closed.jaxpr, [True] * len(closed.jaxpr.outvars))[0]


def xla_flops(jitted_fn, *args, **kwargs) -> float | None:
  """FLOPs XLA's cost analysis assigns to the compiled `jitted_fn(*args)`, or None.

  `jitted_fn` must be a `jax.jit` function. In jax 0.10 `Compiled.cost_analysis()`
  returns a dict (older versions a list with one dict per device); a backend
  that gives no analysis yields None.
  """
  analysis = jitted_fn.lower(*args, **kwargs).compile().cost_analysis()
  if isinstance(analysis, list | tuple):
    analysis = analysis[0] if analysis else None
  if not analysis or "flops" not in analysis:
    return None
  return float(analysis["flops"])
