"""Labelled patches for the TC classifier (`tc_patches`), generated in reproducible blocks.

Background, planted events and hard negatives are described under "Background
state" and "Supervised TC patches" in the `climjax.data.synthetic` docstring.
`stream_blocks` and `kind_names` are shared with the AR and WF patches of
`climjax.data.patches`.
"""

from __future__ import annotations

import functools

import numpy as np

from climjax.data import variables
from climjax.data.synthetic.climatology import _zonal_mean
from climjax.data.synthetic.constants import CAM5_DLAT, CAM5_DLON, KM_PER_DEG
from climjax.data.synthetic.noise import smooth_noise
from climjax.data.synthetic.vortices import (
  cyclone_anomalies,
  sample_shear_line_params,
  sample_tc_params,
  sample_td_params,
  shear_line_anomalies,
)

# Examples are generated in fixed-size blocks, one random stream per block, so a
# range of examples does not depend on how the caller slices the stream.
BLOCK_SIZE = 256

# Negative kinds of `tc_patches`, drawn with equal probability.
TC_NEGATIVE_KINDS: tuple[str, ...] = ("background", "weak_low", "off_centre_tc", "shear_line")
# Probabilities of each negative kind: the hard cases dominate.
TC_NEGATIVE_MIX: tuple[float, ...] = (0.2, 0.35, 0.3, 0.15)

# Per-variable synoptic variability: (offset std, linear gradient std across the
# patch, correlated-noise std, noise length scale in pixels).
_TC_BACKGROUND_SPREAD: dict[str, tuple[float, float, float, float]] = {
  "PSL": (250.0, 250.0, 150.0, 4.0),
  "UBOT": (2.5, 2.0, 1.5, 3.0),
  "VBOT": (2.0, 2.0, 1.5, 3.0),
  "TMQ": (5.0, 5.0, 3.0, 3.0),
  "U850": (3.0, 2.5, 2.0, 3.0),
  "V850": (2.5, 2.5, 2.0, 3.0),
  "T200": (1.2, 0.8, 0.5, 4.0),
  "T500": (1.5, 1.0, 0.6, 4.0),
}


def _off_centre(rng: np.random.Generator, n: int, size: int, min_px: float) -> np.ndarray:
  """(n, 2) storm centres (pixels from the patch centre) at Chebyshev distance >= min_px.

  One coordinate is far (min_px to 0.75 size, either side), the other anywhere
  across the patch, so the storm may sit at a corner, an edge or outside.
  """
  far = rng.uniform(min_px, 0.75 * size, (n, 2)) * rng.choice([-1.0, 1.0], (n, 2))
  anywhere = rng.uniform(-size / 2, size / 2, (n, 2))
  far_axis = rng.integers(0, 2, n)[:, None] == np.arange(2)[None, :]
  return np.where(far_axis, far, anywhere)


def _tc_block(
  block: int, *, seed: int, size: int, positive_fraction: float
) -> tuple[np.ndarray, np.ndarray]:
  """One block of `BLOCK_SIZE` TC patches (x, y), from the block's own random stream."""
  rng = np.random.default_rng(np.random.SeedSequence([seed, block, 0x7C]))
  n = BLOCK_SIZE
  f32 = np.float32
  num_pos = int(round(positive_fraction * n))
  y = rng.permutation(np.arange(n) < num_pos).astype(np.int32)
  kind = np.where(y == 1, -1, rng.choice(len(TC_NEGATIVE_KINDS), n, p=TC_NEGATIVE_MIX))

  lat_c = rng.uniform(5, 35, n) * rng.choice([-1.0, 1.0], n)
  offsets = np.arange(size, dtype=f32) - (size - 1) / 2  # pixels from the patch centre
  lat = (lat_c[:, None, None] + offsets[None, :, None] * CAM5_DLAT).astype(f32)  # (n, size, 1)
  km_north = f32(CAM5_DLAT * KM_PER_DEG)
  km_east = (CAM5_DLON * KM_PER_DEG * np.cos(np.deg2rad(lat))).astype(f32)  # (n, size, 1)

  # Background: zonal mean + offset + large-scale gradient + correlated noise.
  names = variables.TC_CHANNELS
  spread = np.array([_TC_BACKGROUND_SPREAD[v] for v in names], f32)
  noise = smooth_noise(rng, (n, len(names), size, size), spread[:, 3])
  offset = (rng.standard_normal((n, len(names))) * spread[:, 0]).astype(f32)
  grad = (rng.standard_normal((n, len(names), 2)) * spread[:, 1, None] / size).astype(f32)
  out = np.empty((n, size, size, len(names)), f32)
  for c, name in enumerate(names):
    out[..., c] = (
      _zonal_mean(name, lat)
      + offset[:, c, None, None]
      + grad[:, c, 0, None, None] * offsets[None, :, None]
      + grad[:, c, 1, None, None] * offsets[None, None, :]
      + spread[c, 2] * noise[:, c]
    )

  def plant_vortices(idx: np.ndarray, centre: np.ndarray, is_tc: np.ndarray) -> None:
    """Add one TC (where is_tc) or TD to each example in idx, centred at `centre` pixels."""
    lat_storm = lat_c[idx] + centre[:, 0] * CAM5_DLAT
    tc, td = sample_tc_params(rng, lat_storm), sample_td_params(rng, lat_storm)
    params = {k: np.where(is_tc, tc[k], td[k])[:, None, None].astype(f32) for k in tc}
    vortex = cyclone_anomalies(
      (offsets[None, :, None] - centre[:, 0, None, None].astype(f32)) * km_north,
      (offsets[None, None, :] - centre[:, 1, None, None].astype(f32)) * km_east[idx],
      lat[idx],
      params,
    )
    for c, name in enumerate(names):
      out[idx, :, :, c] += vortex[name]

  def plant_shear_lines(idx: np.ndarray) -> None:
    line = sample_shear_line_params(rng, lat_c[idx])
    shear = shear_line_anomalies(
      offsets[None, :, None] * km_north,
      offsets[None, None, :] * km_east[idx],
      {k: v[:, None, None].astype(f32) for k, v in line.items()},
    )
    for c, name in enumerate(names):
      out[idx, :, :, c] += shear[name]

  # The defining event: a TC within 3 pixels of the centre (positives), a weak low
  # near the centre, a TC at least 8 pixels off centre, or a shear line.
  central = np.flatnonzero((y == 1) | (kind == TC_NEGATIVE_KINDS.index("weak_low")))
  plant_vortices(central, rng.uniform(-3, 3, (central.size, 2)), y[central] == 1)
  off = np.flatnonzero(kind == TC_NEGATIVE_KINDS.index("off_centre_tc"))
  plant_vortices(off, _off_centre(rng, off.size, size, 8), np.ones(off.size, bool))
  plant_shear_lines(np.flatnonzero(kind == TC_NEGATIVE_KINDS.index("shear_line")))
  # Distractors in any example, whatever its label: a second storm (TC or TD) far
  # from the centre, or a shear line, so no single feature decides the label.
  distract = rng.random(n)
  second = np.flatnonzero(distract < 0.2)
  plant_vortices(second, _off_centre(rng, second.size, size, 10), rng.random(second.size) < 0.5)
  is_line = kind == TC_NEGATIVE_KINDS.index("shear_line")
  plant_shear_lines(np.flatnonzero((distract >= 0.2) & (distract < 0.35) & ~is_line))

  tmq = variables.channel_index(names, "TMQ")
  np.clip(out[..., tmq], 1.0, 78.0, out=out[..., tmq])
  return out, y, kind_names(y, kind, TC_NEGATIVE_KINDS, "TC")


def kind_names(y: np.ndarray, kind: np.ndarray, negative_kinds: tuple[str, ...], positive: str):
  """Per example, the name of what was planted: `positive` or one of `negative_kinds`."""
  names = np.array(negative_kinds + (positive,))
  return names[np.where(y == 1, len(negative_kinds), kind)]


def stream_blocks(num: int, start: int, make_block) -> tuple[np.ndarray, ...]:
  """Examples `start` to `start + num` of a stream generated in blocks.

  `make_block(b)` returns a tuple of arrays whose first axis is the
  `BLOCK_SIZE` examples of block b (examples b * BLOCK_SIZE onwards). The output
  is preallocated, so peak memory is the output plus one block.
  """
  if num < 0 or start < 0:
    raise ValueError(f"num and start must be non-negative, got num={num}, start={start}")
  out = None
  first, last = start // BLOCK_SIZE, max(start + num - 1, start) // BLOCK_SIZE
  for block in range(first, last + 1):
    arrays = make_block(block)
    if out is None:
      out = tuple(np.empty((num, *a.shape[1:]), a.dtype) for a in arrays)
    lo = max(start, block * BLOCK_SIZE)
    hi = min(start + num, (block + 1) * BLOCK_SIZE)
    for o, a in zip(out, arrays, strict=True):
      o[lo - start : hi - start] = a[lo - block * BLOCK_SIZE : hi - block * BLOCK_SIZE]
  return out


def tc_patches(
  num: int,
  *,
  seed: int,
  size: int = 32,
  positive_fraction: float = 0.5,
  start: int = 0,
  return_kind: bool = False,
) -> tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Labelled patches for the TC classifier (Liu et al. 2016), in physical units.

  Returns x float32 (num, size, size, 8) with channels `variables.TC_CHANNELS`
  (PSL Pa, UBOT, VBOT m/s, TMQ kg/m2, U850, V850 m/s, T200, T500 K), latitude
  ascending along axis 1, and y int32 (num,): 1 where a tropical cyclone is
  centred in the patch (within 3 pixels), 0 otherwise. With `return_kind`, also
  the name of what each example holds ("TC" or one of `TC_NEGATIVE_KINDS`),
  for accuracy per kind of hard negative. Examples `start` to `start + num` of
  the stream for `seed`: the same example index always gives the same patch.
  Within each block of `BLOCK_SIZE` examples exactly
  round(positive_fraction * BLOCK_SIZE) are positive.
  """
  if not 0.0 <= positive_fraction <= 1.0:
    raise ValueError(f"positive_fraction must be in [0, 1], got {positive_fraction}")
  make = functools.partial(_tc_block, seed=seed, size=size, positive_fraction=positive_fraction)
  x, y, kind = stream_blocks(num, start, make)
  return (x, y, kind) if return_kind else (x, y)
