"""Centred patches for the TC, AR and WF classifiers (Liu et al. 2016).

Three sources of patches:

* `cut_patch` cuts a (h, w) window out of any global field, wrapping around in
  longitude and reflecting across the poles.
* `tc_patches_from_fields` cuts labelled TC patches out of global fields and an
  event table (from `synthetic.generate_fields`, or any reader that gives a
  Dataset and the same table columns).
* `ar_patches` and `wf_patches` generate labelled AR and front patches directly
  on a regional grid with the physics of `synthetic` (`ar_anomalies`,
  `etc_anomalies`, `smooth_noise`, the Bretherton precipitation law) and the real
  land mask of `landsea`. Cutting them from global snapshots would cost a
  768 x 1152 snapshot per patch; generating the region alone is ~1,000 times
  cheaper and lets every hard negative be placed on purpose.

Labels follow the TECA definitions of the events. An AR (positive) is a plume
of TMQ >= 20 kg/m2 at least 2,000 km long, at most 1,250 km wide (full width at
half maximum), that reaches land. Hard negatives break one criterion each:
plumes that end at sea, plumes too wide, plumes too short. A front (positive)
is a surface temperature contrast of 4-10 K across 60-120 km with its pressure
trough and rain band; hard negatives are weak or diffuse fronts (contrasts of
0.5-2 K, or spread over 300-600 km), cyclones without fronts, rain bands
without a temperature contrast, and broad temperature gradients.

As in `synthetic.tc_patches`, examples are generated in blocks of
`synthetic.BLOCK_SIZE` with one random stream per (seed, block), so example i
of a seed never depends on `start` or `num`, and exactly
round(positive_fraction * BLOCK_SIZE) examples of every block are positive.
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import xarray as xr

from climjax.data import landsea, synthetic, variables

AR_SHAPE = (148, 224)
WF_SHAPE = (27, 60)
# AR patches are on the 25 km CAM5 grid (148 x 224 pixels = 35 x 70 deg). Front
# patches are on a 1 deg grid (27 x 60 deg, a whole synoptic system): the grid of
# the reanalysis-era front data sets; both spacings can be changed.
AR_SPACING = (synthetic.CAM5_DLAT, synthetic.CAM5_DLON)
WF_SPACING = (1.0, 1.0)

AR_NEGATIVE_KINDS: tuple[str, ...] = ("background", "no_landfall", "too_wide", "too_short")
AR_NEGATIVE_MIX: tuple[float, ...] = (0.25, 0.3, 0.2, 0.25)
WF_NEGATIVE_KINDS: tuple[str, ...] = (
    "background", "weak_front", "diffuse_front", "frontless_cyclone", "rain_band", "broad_gradient",
)  # fmt: skip
WF_NEGATIVE_MIX: tuple[float, ...] = (0.15, 0.2, 0.2, 0.15, 0.15, 0.15)

# ARs by the TECA criteria (Liu et al. 2016).
AR_MIN_LENGTH_KM = 2_000.0
AR_MAX_WIDTH_KM = 1_250.0
FWHM_PER_SIGMA = 2.3548  # full width at half maximum of a Gaussian, in sigmas


def cut_patch(
  fields: np.ndarray,
  center_yx: tuple[float, float],
  size: int | tuple[int, int],
  *,
  poles: str = "reflect",
) -> np.ndarray:
  """The (h, w) window of a global field centred on pixel `center_yx`.

  `fields`: (..., nlat, nlon, channel) on a global grid, latitude ascending,
  longitude covering 360 deg. The patch holds rows cy - h//2 to cy - h//2 + h - 1
  (so the centre pixel is at index h//2, w//2 of the patch; fractional centres
  are rounded). Columns wrap around in longitude. Rows past a pole either reflect
  across it (`poles="reflect"`: the row on the far side of the pole, half-way
  around in longitude, which is where the continuation really lies; vector
  components keep their sign, so treat winds there with care) or repeat the last
  row (`poles="clamp"`).
  """
  if fields.ndim < 3:
    raise ValueError(f"fields must be (..., lat, lon, channel), got shape {fields.shape}")
  h, w = (size, size) if np.isscalar(size) else tuple(size)
  nlat, nlon = fields.shape[-3], fields.shape[-2]
  cy, cx = int(np.round(center_yx[0])), int(np.round(center_yx[1]))
  rows = cy - h // 2 + np.arange(h)
  cols = cx - w // 2 + np.arange(w)
  shift = np.zeros(h, int)
  if poles == "reflect":
    south, north = rows < 0, rows >= nlat
    rows = np.where(south, -rows - 1, np.where(north, 2 * nlat - rows - 1, rows))
    shift = np.where(south | north, nlon // 2, 0)
    if np.any((rows < 0) | (rows >= nlat)):
      raise ValueError(f"a patch of {h} rows cannot reflect across a pole of a {nlat}-row grid")
  elif poles == "clamp":
    rows = np.clip(rows, 0, nlat - 1)
  else:
    raise ValueError(f"poles must be 'reflect' or 'clamp', got {poles!r}")
  cols2d = (cols[None, :] + shift[:, None]) % nlon
  return fields[..., rows[:, None], cols2d, :]


def _pixel_of(lat: np.ndarray, lon: np.ndarray, lat_c: float, lon_c: float) -> tuple[int, int]:
  """Nearest grid pixel (row, col) of a point; lon wraps."""
  row = int(np.abs(lat - lat_c).argmin())
  col = int(np.abs((lon - lon_c + 180.0) % 360.0 - 180.0).argmin())
  return row, col


def tc_patches_from_fields(
  fields: xr.Dataset,
  events: pd.DataFrame,
  *,
  seed: int,
  size: int = 32,
  negatives_per_positive: float = 1.0,
  channels: tuple[str, ...] = variables.TC_CHANNELS,
  max_abs_lat: float = 40.0,
) -> tuple[np.ndarray, np.ndarray]:
  """TC patches cut from global fields: x float32 (n, size, size, C), y int32 (n,).

  Positives are centred on every TC of `events` (rows with class_id
  CLASS_IDS["TC"]). Negatives are centred at random points within
  `max_abs_lat` of the equator whose distance to every TC centre of the same
  time is at least size // 4 pixels: background, TDs, and TCs that sit off
  centre. Their count is `negatives_per_positive` times the positives'.
  Patches are in the order positives, then negatives.
  """
  missing = [c for c in channels if c not in fields]
  if missing:
    raise KeyError(f"fields lack the variables {missing}; TC patches need {channels}")
  lat, lon = fields["lat"].values, fields["lon"].values
  data = np.stack([fields[c].values for c in channels], axis=-1).astype(np.float32)
  tcs = events[events["class_id"] == variables.CLASS_IDS["TC"]]
  x, y = [], []
  for _, ev in tcs.iterrows():
    centre = _pixel_of(lat, lon, ev["lat_center"], ev["lon_center"])
    x.append(cut_patch(data[int(ev["time_index"])], centre, size))
    y.append(1)
  rng = np.random.default_rng(np.random.SeedSequence([seed, 0x7C2]))
  rows_ok = np.flatnonzero(np.abs(lat) <= max_abs_lat)
  want = int(round(negatives_per_positive * len(tcs)))
  tries = 0
  while sum(1 for v in y if v == 0) < want and tries < 100 * max(want, 1):
    tries += 1
    t = int(rng.integers(data.shape[0]))
    cy, cx = int(rng.choice(rows_ok)), int(rng.integers(len(lon)))
    here = tcs[tcs["time_index"] == t]
    too_close = False
    for _, ev in here.iterrows():
      ey, ex = _pixel_of(lat, lon, ev["lat_center"], ev["lon_center"])
      dx = (cx - ex + len(lon) // 2) % len(lon) - len(lon) // 2
      too_close |= max(abs(cy - ey), abs(dx)) < size // 4
    if not too_close:
      x.append(cut_patch(data[t], (cy, cx), size))
      y.append(0)
  if not x:
    return np.zeros((0, size, size, len(channels)), np.float32), np.zeros((0,), np.int32)
  return np.stack(x).astype(np.float32), np.asarray(y, np.int32)


# ----------------------------------------------------------------------------
# Regional generators for AR and front patches.
# ----------------------------------------------------------------------------


def _labels(rng: np.random.Generator, positive_fraction: float, kinds: int, mix) -> tuple:
  if not 0.0 <= positive_fraction <= 1.0:
    raise ValueError(f"positive_fraction must be in [0, 1], got {positive_fraction}")
  n = synthetic.BLOCK_SIZE
  y = rng.permutation(np.arange(n) < int(round(positive_fraction * n))).astype(np.int32)
  kind = np.where(y == 1, -1, rng.choice(kinds, n, p=mix))
  return y, kind


def _interpolator(n: int, m: int) -> np.ndarray:
  """(n, m) linear interpolation from m coarse points spanning the same extent to n."""
  pos = np.linspace(0, m - 1, n)
  lo = np.clip(np.floor(pos).astype(int), 0, m - 2)
  frac = pos - lo
  k = np.zeros((n, m), np.float32)
  k[np.arange(n), lo] = 1 - frac
  k[np.arange(n), lo + 1] += frac
  return k


@functools.lru_cache(maxsize=2)
def _global_land(dlat: float, dlon: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  lat, lon = synthetic.latlon_grid(int(round(180 / dlat)), int(round(360 / dlon)))
  return lat, lon, landsea.land_fraction(lat, lon)


def _land_patch(lat_c: float, lon_c: float, shape, spacing) -> np.ndarray:
  lat, lon, land = _global_land(*spacing)
  return cut_patch(land[..., None], _pixel_of(lat, lon, lat_c, lon_c), shape)[..., 0]


def _ar_block(block: int, *, seed: int, shape, spacing, positive_fraction: float):
  rng = np.random.default_rng(np.random.SeedSequence([seed, block, 0xA2]))
  n = synthetic.BLOCK_SIZE
  h, w = shape
  dlat, dlon = spacing
  y, kind = _labels(rng, positive_fraction, len(AR_NEGATIVE_KINDS), AR_NEGATIVE_MIX)
  coasts = synthetic._west_coasts()
  # The plume is smooth (sigma >= 150 km), so it is computed on a grid 4 times
  # coarser and interpolated: ~16 times cheaper.
  ch, cw = -(-h // 4) + 1, -(-w // 4) + 1
  ky, kx = _interpolator(h, ch), _interpolator(w, cw)
  rows = (np.arange(h) - h // 2) * dlat
  cols = (np.arange(w) - w // 2) * dlon

  x = np.empty((n, h, w, 2), np.float32)
  coarse = np.empty((n, ch, cw), np.float32)
  noise = synthetic.smooth_noise(rng, (n, h, w), 300.0 / (dlat * synthetic.KM_PER_DEG))
  for i in range(n):
    lat_l, lon_l = coasts[rng.integers(len(coasts))]
    hemi = 1.0 if lat_l >= 0 else -1.0
    p = {
      "src_dlat": rng.uniform(10, 22),
      "src_dlon": rng.uniform(25, 55),
      "bow": rng.uniform(0, 5),
      "inland": rng.uniform(300, 800),
      "moist": rng.uniform(12, 25),
      "width": rng.uniform(150, 300),
      "jet": 0.0,
      "warm": 0.0,
    }
    k = kind[i]
    if k == AR_NEGATIVE_KINDS.index("too_wide"):
      p["width"] = rng.uniform(1.2, 2.0) * AR_MAX_WIDTH_KM / FWHM_PER_SIGMA
      p["moist"] = rng.uniform(8, 18)
    elif k == AR_NEGATIVE_KINDS.index("too_short"):
      # A plume of 600-1,500 km ending on the coast.
      length_deg = rng.uniform(600, 1_500) / synthetic.KM_PER_DEG
      angle = np.deg2rad(rng.uniform(15, 50))
      p["src_dlat"] = length_deg * np.sin(angle)
      p["src_dlon"] = length_deg * np.cos(angle) / np.cos(np.deg2rad(lat_l))
      p["bow"] = rng.uniform(0, 1)
      p["inland"] = rng.uniform(150, 300)
    track = synthetic._Track("AR", 0, 0, np.array([lat_l]), np.array([lon_l]), np.ones(1), p)
    path_lat, path_lon, envelope, _ = synthetic._ar_path(track, 0)
    # Every other axis point (~100 km apart) resolves plumes of sigma >= 150 km.
    path_lat, path_lon, envelope = path_lat[::2], path_lon[::2], envelope[::2]
    if k == AR_NEGATIVE_KINDS.index("no_landfall"):
      # The same river moved 6-14 deg upstream (west), fading out over the sea before
      # its would-be landfall.
      for _ in range(10):
        back = rng.uniform(6, 14)
        if synthetic._land_at(lat_l - hemi * 0.3 * back, lon_l - back) < 0.05:
          break
      path_lat, path_lon = path_lat - hemi * 0.3 * back, path_lon - back
      envelope = envelope * synthetic._sigmoid((0.8 - np.linspace(0, 1, len(envelope))) / 0.05)
    # The patch is centred on the plume for every kind (so where the coast lies in
    # the patch says little about the label), with some jitter.
    lat_c = 0.5 * (path_lat.min() + path_lat.max()) + rng.uniform(-3, 3)
    lon_c = 0.5 * (path_lon.min() + path_lon.max()) + rng.uniform(-5, 5)
    strength = rng.uniform(0.7, 1.0) if k != AR_NEGATIVE_KINDS.index("background") else 0.0

    lat_coarse = lat_c + np.linspace(rows[0], rows[-1], ch)
    lon_coarse = lon_c + np.linspace(cols[0], cols[-1], cw)
    lat_g = np.broadcast_to(lat_coarse[:, None], (ch, cw))
    lon_g = np.broadcast_to(lon_coarse[None, :], (ch, cw))
    plume = synthetic.ar_anomalies(lat_g, lon_g, path_lat, path_lon, envelope, p, strength=strength)
    coarse[i] = plume["TMQ"]

    lat_full = np.clip(lat_c + rows, -89.9, 89.9)[:, None]
    land = _land_patch(lat_c, lon_c, shape, spacing)
    season = rng.uniform(0.75, 1.15)
    background = synthetic._zonal_mean("TMQ", lat_full) * season * (1 - 0.35 * land)
    gradient = rng.normal(0, 3) * (np.arange(w) - w / 2)[None, :] / w
    x[i, ..., 0] = background + gradient + rng.uniform(2.5, 5.0) * noise[i]
    x[i, ..., 1] = land
  # Interpolate all plumes at once: two large float32 matrix products.
  plumes = (coarse.reshape(-1, cw) @ kx.T).reshape(n, ch, w)
  x[..., 0] += np.einsum("hc,ncw->nhw", ky, plumes, optimize=True)
  np.clip(x[..., 0], 0.5, 78.0, out=x[..., 0])
  return x, y, synthetic.kind_names(y, kind, AR_NEGATIVE_KINDS, "AR")


def ar_patches(
  num: int,
  *,
  seed: int,
  shape: tuple[int, int] = AR_SHAPE,
  spacing: tuple[float, float] = AR_SPACING,
  positive_fraction: float = 0.5,
  start: int = 0,
  return_kind: bool = False,
) -> tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Labelled AR patches: x float32 (num, 148, 224, 2) with channels (TMQ kg/m2,
  LANDFRAC), y int32 (num,), 1 where an atmospheric river crosses the patch and
  reaches land.

  Generated directly on a regional grid (see the module docstring); spacing in
  degrees (lat, lon), the 25 km CAM5 grid by default. Negatives: background
  (25 %), rivers that end at sea (30 %), plumes wider than 1,250 km (20 %),
  plumes shorter than 2,000 km (25 %). Examples `start` to `start + num` of the
  stream of `seed`; with `return_kind` also the name of what each holds ("AR"
  or one of `AR_NEGATIVE_KINDS`).
  """
  make = functools.partial(
    _ar_block, seed=seed, shape=shape, spacing=spacing, positive_fraction=positive_fraction
  )
  x, y, kind = synthetic.stream_blocks(num, start, make)
  return (x, y, kind) if return_kind else (x, y)


def _wf_block(block: int, *, seed: int, shape, spacing, positive_fraction: float):
  rng = np.random.default_rng(np.random.SeedSequence([seed, block, 0xF2]))
  n = synthetic.BLOCK_SIZE
  h, w = shape
  dlat, dlon = spacing
  y, kind = _labels(rng, positive_fraction, len(WF_NEGATIVE_KINDS), WF_NEGATIVE_MIX)
  names = variables.WF_CHANNELS
  px_km = dlat * synthetic.KM_PER_DEG
  noise = synthetic.smooth_noise(rng, (n, 3, h, w), max(450.0 / px_km, 1.5))
  rows = (np.arange(h) - h // 2)[:, None].astype(float)
  cols = (np.arange(w) - w // 2)[None, :].astype(float)
  x = np.empty((n, h, w, len(names)), np.float32)
  for i in range(n):
    k = kind[i]
    hemi = rng.choice([-1.0, 1.0])
    lat_c, lon_c = hemi * rng.uniform(30, 55), rng.uniform(0, 360)
    lat = np.clip(lat_c + rows * dlat, -89.5, 89.5)
    a = np.abs(lat)
    land = _land_patch(lat_c, lon_c, shape, spacing)
    local_summer = rng.uniform(-1, 1)
    north_km = rows * dlat * synthetic.KM_PER_DEG
    east_km = cols * dlon * synthetic.KM_PER_DEG * np.cos(np.deg2rad(lat))

    # Background: climatology, a random large-scale gradient, correlated noise.
    amp = 17.0 * np.sin(np.deg2rad(a)) ** 1.2 * (0.3 + 0.7 * land)
    trefht = 270.35 + 31.0 * np.cos(np.deg2rad(lat)) ** 3 + amp * local_summer
    angle = rng.uniform(0, 2 * np.pi)
    along = (east_km * np.cos(angle) + north_km * np.sin(angle)) / 1_000.0
    trefht = trefht + rng.normal(0, 0.7) * along + rng.uniform(1.0, 2.5) * noise[i, 0]
    psl = (
      synthetic._zonal_mean("PSL", lat)
      + rng.normal(0, 500)
      + rng.normal(0, 300) * along
      + rng.uniform(150, 400) * noise[i, 1]
    )
    rh = rng.uniform(0.45, 0.62) + 0.07 * noise[i, 2] - 0.08 * land
    tmq_anom = np.zeros_like(trefht)

    if y[i] == 1 or k in [
      WF_NEGATIVE_KINDS.index(v) for v in ("weak_front", "diffuse_front", "frontless_cyclone")
    ]:
      p = {
        "dp": rng.uniform(1_000, 3_500),
        "radius": rng.uniform(300, 700),
        "warm_angle": rng.uniform(-30, -5),
        "cold_angle": rng.uniform(-125, -95),
        "warm_length": rng.uniform(600, 1_100),
        "cold_length": rng.uniform(1_000, 2_200),
        "delta_t": rng.uniform(4, 10),
        "moist": rng.uniform(3, 8),
        "front_width": max(rng.uniform(60, 120), 0.75 * px_km),
        "cold_core": rng.uniform(2, 4),
      }
      front_strength = rng.uniform(0.7, 1.0)
      if k == WF_NEGATIVE_KINDS.index("weak_front"):
        p["delta_t"], p["moist"] = rng.uniform(0.5, 2.0), rng.uniform(1, 3)
      elif k == WF_NEGATIVE_KINDS.index("diffuse_front"):
        p["delta_t"], p["front_width"] = rng.uniform(3, 8), rng.uniform(300, 600)
        p["moist"] = rng.uniform(1, 3)
      elif k == WF_NEGATIVE_KINDS.index("frontless_cyclone"):
        front_strength = 0.0
      # Put the middle of one front (cold or warm) near the patch centre.
      front = "cold" if rng.random() < 0.6 else "warm"
      theta = np.deg2rad(p[f"{front}_angle"])
      half = 0.5 * p[f"{front}_length"]
      c_east = -half * np.cos(theta) + rng.uniform(-3, 3) * dlon * synthetic.KM_PER_DEG
      c_north = -hemi * half * np.sin(theta) + rng.uniform(-3, 3) * px_km
      anomalies = synthetic.etc_anomalies(
        north_km - c_north,
        east_km - c_east,
        lat,
        p,
        hemi=hemi,
        strength=rng.uniform(0.5, 1.0),
        front_strength=front_strength,
      )
      trefht, psl = trefht + anomalies["TREFHT"], psl + anomalies["PSL"]
      tmq_anom = anomalies["TMQ"]
    elif k == WF_NEGATIVE_KINDS.index("rain_band"):
      line = synthetic.sample_shear_line_params(rng, np.array([lat_c]))
      line = {key: float(v[0]) for key, v in line.items()}
      line["width"] = max(line["width"], 0.75 * px_km)
      band = synthetic.shear_line_anomalies(north_km, east_km, line)
      psl = psl + band["PSL"]
      tmq_anom = rng.uniform(2.0, 4.0) * band["TMQ"]
    elif k == WF_NEGATIVE_KINDS.index("broad_gradient"):
      trefht = trefht + rng.uniform(2, 4) * along

    sat = synthetic.tmq_saturation(np.minimum(trefht, 301.5))
    column_rh = np.clip(rh + tmq_anom / sat, 0.05, 0.93)
    x[i, ..., 0] = trefht
    x[i, ..., 1] = synthetic.precipitation_rate(column_rh)
    x[i, ..., 2] = psl
  return x, y, synthetic.kind_names(y, kind, WF_NEGATIVE_KINDS, "front")


def wf_patches(
  num: int,
  *,
  seed: int,
  shape: tuple[int, int] = WF_SHAPE,
  spacing: tuple[float, float] = WF_SPACING,
  positive_fraction: float = 0.5,
  start: int = 0,
  return_kind: bool = False,
) -> tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Labelled front patches: x float32 (num, 27, 60, 3) with channels (TREFHT K,
  PRECT m/s, PSL Pa), y int32 (num,), 1 where a sharp front crosses the patch
  near its centre.

  Generated directly on a regional grid, 1 deg by default, at 30-55 deg in
  either hemisphere. Positives: an extratropical cyclone's cold (60 %) or warm
  front, 4-10 K across 60-120 km (at least 0.75 grid cells), its middle within
  3 cells of the centre. Negatives: background (15 %), weak fronts of 0.5-2 K
  (20 %), diffuse fronts spread over 300-600 km (20 %), cyclones without fronts
  (15 %), rain bands with no temperature contrast (15 %), broad temperature
  gradients of 2-4 K per 1,000 km (15 %). Examples `start` to `start + num` of
  the stream of `seed`; with `return_kind` also the name of what each holds
  ("front" or one of `WF_NEGATIVE_KINDS`).
  """
  make = functools.partial(
    _wf_block, seed=seed, shape=shape, spacing=spacing, positive_fraction=positive_fraction
  )
  x, y, kind = synthetic.stream_blocks(num, start, make)
  return (x, y, kind) if return_kind else (x, y)
