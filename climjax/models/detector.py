"""The semi-supervised extreme-weather detector of Racah et al. (2017).

An encoder of 5x5 stride-2 convolutions (LeakyReLU 0.1) maps a multi-channel
global field to a grid of cells, 2**len(features) pixels on a side (64 px with
the paper's six layers: 768x1152 -> 12x18). Three 3x3 convolutions on the grid
predict, per cell:

  objectness (2)  logits of {no object, object}
  classes    (4)  logits of the event class: 0 TD, 1 TC, 2 ETC, 3 AR
  boxes      (4)  (dy, dx, log_h, log_w): the box centre as a fraction of the
                  cell from its top-left corner (lat, lon order) and the box
                  size as log(size / anchor_size); raw (unsquashed) values,
                  which the loss regresses and `evaluation.detection` decodes.

A decoder of 5x5 stride-2 transposed convolutions mirrors the encoder back to
the input's channels; its squared error to the input is the unsupervised loss
that lets unlabelled fields train the encoder.

The 3-D variant reads several time steps, (B, T, H, W, C), with 3x5x5 kernels
that stride only in space. `temporal="pool"` averages the code over time before
the heads (one set of boxes per example); `temporal="keep"` applies the heads
at every time step (outputs gain a T axis). Its decoder reconstructs all T steps.

Convolutions come from `climjax.models.layers` so `model.conv_impl` switches
between XLA's kernels and the matrix-product CPU kernels ("fast"); the 3-D
layers are sums over time offsets of those 2-D convolutions (`TimeConv`).
Parameters have flax's names and shapes (a 3-D kernel is (3, 5, 5, in, out)),
so checkpoints do not depend on the implementation.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from climjax.models import layers

# Encoder filters of the paper (times model.width); the decoder mirrors them.
PAPER_FEATURES: tuple[int, ...] = (128, 256, 512, 768, 1024, 1280)
NUM_CLASSES = 4
TEMPORAL_MODES = ("pool", "keep")


def scaled_features(width: float, num_layers: int = 6) -> tuple[int, ...]:
  """The paper's first `num_layers` encoder filter counts times `width` (at least 1)."""
  if not 1 <= num_layers <= len(PAPER_FEATURES):
    raise ValueError(f"model.num_layers must be in 1..{len(PAPER_FEATURES)}, got {num_layers}")
  if width <= 0:
    raise ValueError(f"model.width must be positive, got {width}")
  return tuple(max(1, int(round(f * width))) for f in PAPER_FEATURES[:num_layers])


class TimeConv(nn.Module):
  """(B, T, H, W, C) convolution that strides only in space, "SAME" in time and space.

  The parameters are those of a flax N-d `nn.Conv` / `nn.ConvTranspose` with
  kernel (KT, KH, KW, in, out) and bias, so the 3-D network is the paper's
  3x5x5 one. A time offset dt contributes the 2-D (transposed) convolution of
  the time-shifted input with kernel[dt]; summing them over dt gives the 3-D
  result (a stride-1 transposed convolution in time is an ordinary one), and
  each 2-D piece goes through `layers` so `impl` selects the kernels.
  """

  features: int
  kernel_size: Sequence[int] = (3, 5, 5)
  strides: Sequence[int] = (2, 2)
  transpose: bool = False
  impl: str = "xla"

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    b, t, h, w, c = x.shape
    kt = self.kernel_size[0]
    kernel = self.param(
      "kernel", nn.initializers.lecun_normal(), (*self.kernel_size, c, self.features)
    )
    bias = self.param("bias", nn.initializers.zeros, (self.features,))
    lo = (kt - 1) // 2  # lax's "SAME" padding for stride 1
    xp = jnp.pad(x, ((0, 0), (lo, kt - 1 - lo), (0, 0), (0, 0), (0, 0)))
    conv = layers.conv_transpose2d if self.transpose else layers.conv2d
    y = None
    for dt in range(kt):
      piece = conv(
        xp[:, dt : dt + t].reshape(b * t, h, w, c), kernel[dt], self.strides, "SAME", self.impl
      )
      y = piece if y is None else y + piece
    return y.reshape(b, t, *y.shape[1:]) + bias


class Detector(nn.Module):
  """Encoder -> (objectness, class, box heads) on a grid; decoder -> reconstruction.

  Attributes:
    features: encoder filter counts, one 5x5 stride-2 conv each; the cell size
      is 2**len(features) pixels and H, W must be multiples of it.
    num_classes: event classes of the class head.
    time_steps: 1 for the 2-D network on (B, H, W, C); T > 1 for the 3-D
      network on (B, T, H, W, C).
    temporal: 3-D only: "pool" (mean over time before the heads) or "keep".
    negative_slope: of the LeakyReLU after every hidden layer.
    conv_impl: "xla" or "fast" (see climjax.models.layers).
  """

  features: Sequence[int] = PAPER_FEATURES
  num_classes: int = NUM_CLASSES
  time_steps: int = 1
  temporal: str = "pool"
  negative_slope: float = 0.1
  conv_impl: str = "xla"

  @property
  def cell_size(self) -> int:
    return 2 ** len(self.features)

  def _check_input(self, x: jnp.ndarray) -> None:
    spatial = 3 if self.time_steps == 1 else 4
    expected = "(B, H, W, C)" if spatial == 3 else f"(B, T={self.time_steps}, H, W, C)"
    if x.ndim != spatial + 1 or (spatial == 4 and x.shape[1] != self.time_steps):
      raise ValueError(f"Detector expects {expected} inputs, got shape {x.shape}")
    h, w = x.shape[-3:-1]
    if h % self.cell_size or w % self.cell_size:
      raise ValueError(
        f"Detector with {len(self.features)} stride-2 layers needs H and W divisible by "
        f"{self.cell_size}, got {h}x{w}"
      )
    if self.temporal not in TEMPORAL_MODES:
      raise ValueError(f"model.temporal must be one of {TEMPORAL_MODES}, got {self.temporal!r}")

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool = False) -> dict[str, jnp.ndarray]:
    del train  # no dropout or batch norm in the paper's network
    layers.check_impl(self.conv_impl)
    self._check_input(x)
    act = functools.partial(nn.leaky_relu, negative_slope=self.negative_slope)
    three_d = self.time_steps > 1

    # Encoder: every layer halves H and W (time is never strided).
    code = x
    for i, f in enumerate(self.features):
      if three_d:
        conv = TimeConv(f, impl=self.conv_impl, name=f"encoder_{i}")
      else:
        conv = layers.Conv(
          f, (5, 5), strides=(2, 2), padding="SAME", impl=self.conv_impl, name=f"encoder_{i}"
        )
      code = act(conv(code))

    # Heads on the grid. "keep" folds time into the batch so each step gets boxes.
    grid = code
    if three_d and self.temporal == "pool":
      grid = jnp.mean(code, axis=1)
    lead = grid.shape[:-3]
    grid = grid.reshape((-1, *grid.shape[-3:]))

    def head(n, name):
      out = layers.Conv(n, (3, 3), impl=self.conv_impl, name=name)(grid)
      return out.reshape((*lead, *out.shape[1:]))

    outputs = {
      "objectness": head(2, "objectness"),
      "classes": head(self.num_classes, "classes"),
      "boxes": head(4, "boxes"),
      # What the heads see of each cell: the encoder's code, (B, [T,] gh, gw, features[-1])
      # (launch/discover.py clusters it; unused outputs cost nothing under jit).
      "embedding": grid.reshape((*lead, *grid.shape[1:])),
    }

    # Decoder: the encoder mirrored, ending linear in the input's channels.
    y = code
    out_features = [*reversed(self.features[:-1]), x.shape[-1]]
    for i, f in enumerate(out_features):
      if three_d:
        deconv = TimeConv(f, transpose=True, impl=self.conv_impl, name=f"decoder_{i}")
      else:
        deconv = layers.ConvTranspose(
          f, (5, 5), strides=(2, 2), padding="SAME", impl=self.conv_impl, name=f"decoder_{i}"
        )
      y = deconv(y)
      if i < len(out_features) - 1:
        y = act(y)
    outputs["reconstruction"] = y
    return outputs


# The paper's 2-D and 3-D (8 time steps) networks, and a tiny one for tests.
Detector2D = functools.partial(Detector, features=PAPER_FEATURES)
Detector3D = functools.partial(Detector, features=PAPER_FEATURES, time_steps=8, temporal="pool")
_DetectorTiny = functools.partial(Detector, features=(4, 6, 8))


def make_detector(model_config) -> Detector:
  """The detector a `config.model` describes.

  Fields: width (scale of the paper's filters), num_layers (stride-2 encoder
  layers; the cell is 2**num_layers px), num_classes, time_steps (1 = 2-D),
  temporal ("pool" | "keep"), negative_slope, conv_impl ("xla" | "fast").
  """
  impl = model_config.get("conv_impl", "xla")
  layers.check_impl(impl)
  return Detector(
    features=scaled_features(
      float(model_config.get("width", 1.0)), int(model_config.get("num_layers", 6))
    ),
    num_classes=int(model_config.get("num_classes", NUM_CLASSES)),
    time_steps=int(model_config.get("time_steps", 1)),
    temporal=model_config.get("temporal", "pool"),
    negative_slope=float(model_config.get("negative_slope", 0.1)),
    conv_impl=impl,
  )


def input_shape(model_config, height: int, width: int, channels: int) -> tuple[int, ...]:
  """Shape of one example (no batch axis) for this model config."""
  t = int(model_config.get("time_steps", 1))
  return (height, width, channels) if t == 1 else (t, height, width, channels)


def count_parameters(model: Detector, example_shape: Sequence[int]) -> int:
  """Number of parameters, from shapes alone (nothing is allocated)."""
  shapes = jax.eval_shape(
    model.init, jax.random.key(0), jax.ShapeDtypeStruct((1, *example_shape), jnp.float32)
  )
  return int(sum(np.prod(p.shape) for p in jax.tree.leaves(shapes["params"])))


def forward_flops(model: Detector, example_shape: Sequence[int]) -> float:
  """FLOPs of one example's forward pass, counted analytically (2 per multiply-add).

  Counts the convolutions and transposed convolutions, which are all but a
  negligible part of the work; a training step is about 3x this (forward,
  input gradient, weight gradient).
  """
  example_shape = tuple(example_shape)
  if model.time_steps > 1:
    t, h, w, c = example_shape
    kt = 3
  else:
    (h, w, c), t, kt = example_shape, 1, 1
  flops = 0.0
  cin = c
  for f in model.features:
    h, w = h // 2, w // 2
    flops += 2.0 * t * h * w * kt * 25 * cin * f
    cin = f
  heads = 2 + model.num_classes + 4
  t_heads = t if (model.time_steps > 1 and model.temporal == "keep") else 1
  flops += 2.0 * t_heads * h * w * 9 * cin * heads
  # A transposed conv costs what its forward conv (output -> input) costs.
  out_features = [*reversed(model.features[:-1]), c]
  for f in out_features:
    flops += 2.0 * t * h * w * kt * 25 * cin * f
    h, w = h * 2, w * 2
    cin = f
  return flops
