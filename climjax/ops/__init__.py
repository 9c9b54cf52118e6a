"""CPU training kernels: convolutions and pooling with matrix-product backward passes.

`conv2d`, `conv_transpose2d` and `max_pool2d` compute what XLA's
`lax.conv_general_dilated`, `lax.conv_transpose` and `flax.linen.max_pool`
compute (NHWC, HWIO) with `jax.custom_vjp` rules that are faster on CPU
(narrow stride-1 convolutions in C++ kernels, `native`, or without them on a
space-to-depth grid, `s2d`); `conv2d_max_pool` fuses a convolution with the
max pool after it; `flops`
counts the work of a function to report achieved GFLOP/s.
"""

from climjax.ops.conv import conv2d, conv2d_max_pool, conv_transpose2d
from climjax.ops.flops import analytic_flops, xla_flops
from climjax.ops.pool import max_pool2d

__all__ = [
  "analytic_flops",
  "conv2d",
  "conv2d_max_pool",
  "conv_transpose2d",
  "max_pool2d",
  "xla_flops",
]
