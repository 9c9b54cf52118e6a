"""Weather fronts: the thermal front parameter (Hewson 1998) on T850, or on TREFHT without it.

The criteria are described in the `climjax.data.heuristics` docstring.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import xarray as xr
from scipy import ndimage

from climjax.data.errors import DataError
from climjax.data.heuristics.atmospheric_rivers import (
  _column_span,
  _diameter_km,
  _label_wrapped,
  _land_mask,
)
from climjax.data.heuristics.grid import _field, _Grid, _grid_of, _source, region_box
from climjax.data.heuristics.sphere import EARTH_RADIUS_KM, KM_PER_DEG

FRONT_COLUMNS: tuple[str, ...] = (
    "time", "time_index", "lat", "lon", "y", "x", "length_km", "num_pixels", "max_gradient",
    "max_tfp", "ymin", "xmin", "ymax", "xmax", "lat_min", "lon_min", "lat_max", "lon_max",
)  # fmt: skip

_PER_100_KM = 1e5  # m


def _gradient(field: np.ndarray, grid: _Grid) -> tuple[np.ndarray, np.ndarray]:
  """(east, north) components of the gradient of a (lat, lon) field, per metre."""
  a = EARTH_RADIUS_KM * 1e3
  phi = np.deg2rad(grid.lat)
  d_north = np.gradient(field, phi, axis=0) / a
  if grid.is_global:
    dlam = np.deg2rad(grid.dlon)
    d_lam = (np.roll(field, -1, axis=1) - np.roll(field, 1, axis=1)) / (2 * dlam)
  else:
    d_lam = np.gradient(field, np.deg2rad(grid.lon), axis=1)
  cos_phi = np.maximum(np.cos(phi), 1e-3)[:, None]
  return d_lam / (a * cos_phi), d_north


def _smooth(field: np.ndarray, grid: _Grid, length_km: float) -> np.ndarray:
  """Gaussian smoothing over `length_km` (the zonal width taken at 45 deg), wrapping in longitude."""
  if length_km <= 0:
    return field
  dy_km = grid.dlat * KM_PER_DEG
  dx_km = grid.dlon * KM_PER_DEG * np.cos(np.deg2rad(45.0))
  return ndimage.gaussian_filter(
    field, (length_km / dy_km, length_km / dx_km), mode=("nearest", grid.lon_mode)
  )


def _surface_fields(
  t: np.ndarray, land: np.ndarray, grid: _Grid, fill_km: float
) -> tuple[np.ndarray, np.ndarray]:
  """(sea, land) versions of a 2 m temperature: each surface's own values, continued across the other.

  Where a cell is not (nearly) all sea, the sea version holds the average of
  the sea cells within about `fill_km` (a normalised convolution), and
  likewise for land; derivatives of either then never straddle a coastline,
  whose land-sea contrast would otherwise look like a front.
  """
  out = []
  for pure in (land <= 0.1, land >= 0.9):
    weight = pure.astype(np.float64)
    total = _smooth(weight, grid, fill_km)
    with np.errstate(invalid="ignore", divide="ignore"):
      filled = np.where(total > 1e-3, _smooth(weight * t, grid, fill_km) / total, t)
    out.append(np.where(pure, t, filled))
  return out[0], out[1]


def thermal_front_parameter(
  tau: np.ndarray, lat: np.ndarray, lon: np.ndarray, *, smoothing_km: float = 100.0
) -> tuple[np.ndarray, np.ndarray]:
  """(TFP in K/(100 km)^2, |grad tau| in K/100 km) of a thermal field tau (lat, lon).

  TFP = -grad|grad tau| . grad tau / |grad tau| (Renard and Clarke 1965;
  Hewson 1998): positive where the gradient weakens toward the warm air, i.e.
  along the warm edge of a frontal zone, where a front is drawn. `tau` is smoothed over
  `smoothing_km` first, since the second derivatives amplify grid-scale noise.
  `lat` ascending, `lon` ascending in degrees (a global grid wraps).
  """
  grid = _Grid(np.asarray(lat, np.float64), np.asarray(lon, np.float64))
  return _tfp(tau, grid, smoothing_km)


def _tfp(tau: np.ndarray, grid: _Grid, smoothing_km: float) -> tuple[np.ndarray, np.ndarray]:
  tau = _smooth(np.asarray(tau, np.float64), grid, smoothing_km)
  te, tn = _gradient(tau, grid)
  magnitude = np.hypot(te, tn)
  ge, gn = _gradient(magnitude, grid)
  with np.errstate(invalid="ignore", divide="ignore"):
    tfp = -(ge * te + gn * tn) / np.maximum(magnitude, 1e-12)
  return tfp * _PER_100_KM**2, magnitude * _PER_100_KM


def detect_fronts(
  ds: xr.Dataset,
  *,
  variable: str | None = None,
  tfp_threshold: float = 0.3,
  gradient_threshold: float = 1.5,
  min_length_km: float = 500.0,
  smoothing_km: float = 100.0,
  min_abs_lat: float = 20.0,
  max_abs_lat: float = 60.0,
  land_fraction: np.ndarray | xr.DataArray | None = None,
  land_sea_km: float = 200.0,
) -> pd.DataFrame:
  """Fronts at every time of `ds` (dims time, lat, lon; T850 or TREFHT required).

  The thermal variable is `variable`, by default T850 where the dataset has
  it, else TREFHT, with a warning: surface temperature also steps at every
  coast (land-sea contrast, the diurnal cycle over land), so for TREFHT the
  derivatives are taken on a sea field and a land field, each surface's own
  values continued across the other's cells (`_surface_fields`, over
  `land_sea_km`), and each pixel takes those of its surface. The land
  fraction is `land_fraction`, else LANDFRAC, else `climjax.data.landsea`.
  On the synthetic generator's fields (192 x 288) this takes the false
  fronts from 14 per snapshot, nearly all coasts, to 0.03. Front pixels are where the thermal front
  parameter (`thermal_front_parameter`, after `smoothing_km` of smoothing)
  is at least `tfp_threshold` K/(100 km)^2 and the gradient, Hewson's
  masking parameter, at least `gradient_threshold` K/100 km, between
  `min_abs_lat` and `max_abs_lat`. A front is a connected region of them
  (8 neighbours, across the longitude seam) at least `min_length_km` long
  (the largest great-circle distance across it).

  Returns:
    One row per front with columns `FRONT_COLUMNS`: a point on the front
    (`lat`, `lon`, as fractional pixels `y`, `x`: the front pixel nearest
    its centroid), length, pixel count, the largest gradient (K/100 km) and
    TFP on it, and its box in pixels (inclusive indices; xmax may exceed W-1
    across the seam) and degrees. `df.attrs["variable"]` names the thermal
    variable and `df.attrs["skipped_criteria"]` what was left out.
  """
  grid = _grid_of(ds)
  skipped = []
  if variable is None:
    variable = "T850" if "T850" in ds else "TREFHT"
    if variable == "TREFHT" and "TREFHT" in ds:
      warnings.warn(
        "detect_fronts: no T850, using TREFHT (derivatives over land and sea apart)",
        stacklevel=2,
      )
  if variable not in ds:
    raise DataError(_source(ds), "required by detect_fronts (T850, else TREFHT)", variable)
  land = None
  if variable == "TREFHT":
    land = _land_mask(ds, grid, land_fraction, required=False)
    if land is None:
      skipped.append("land-sea contrast (needs a land fraction)")
      warnings.warn("detect_fronts: no land mask, coasts may be taken for fronts", stacklevel=2)
  on_land = land >= 0.5 if land is not None else None
  band = (np.abs(grid.lat) >= min_abs_lat) & (np.abs(grid.lat) <= max_abs_lat)
  width = len(grid.lon)
  lat_flat = np.repeat(grid.lat, width)
  lon_flat = np.tile(grid.lon, len(grid.lat))
  area = np.broadcast_to(grid.cell_area_km2(), (len(grid.lat), width)).ravel()
  times = ds["time"].values if "time" in ds.coords else np.arange(ds.sizes["time"])

  rows = []
  for t in range(ds.sizes["time"]):
    tau = _field(ds, variable, t).astype(np.float64)
    if land is None:
      tfp, gradient = _tfp(tau, grid, smoothing_km)
    else:
      sea_tau, land_tau = _surface_fields(tau, land, grid, land_sea_km)
      tfp, gradient = _tfp(sea_tau, grid, smoothing_km)
      tfp_land, gradient_land = _tfp(land_tau, grid, smoothing_km)
      tfp, gradient = np.where(on_land, tfp_land, tfp), np.where(on_land, gradient_land, gradient)
    mask = (tfp >= tfp_threshold) & (gradient >= gradient_threshold) & band[:, None]
    labels, n = _label_wrapped(mask, grid.is_global)
    if n == 0:
      continue
    flat_labels = labels.ravel()
    pixels = np.flatnonzero(flat_labels)
    order = np.argsort(flat_labels[pixels], kind="stable")
    sizes = np.bincount(flat_labels, minlength=n + 1)
    groups = np.split(pixels[order], np.cumsum(sizes[1:])[:-1])
    for members in groups:
      length = _diameter_km(lat_flat[members], lon_flat[members])
      if length < min_length_km:
        continue
      ys, xs = np.unravel_index(members, mask.shape)
      # The front pixel nearest the area-weighted centroid (on the unit sphere).
      p, lam, w = np.deg2rad(lat_flat[members]), np.deg2rad(lon_flat[members]), area[members]
      xyz = np.stack([np.cos(p) * np.cos(lam), np.cos(p) * np.sin(lam), np.sin(p)], axis=1)
      centre = (w[:, None] * xyz).sum(axis=0)
      k = int(np.argmax(xyz @ centre))
      x0, x1 = _column_span(xs, width, grid.is_global)
      rows.append({
          "time": times[t],
          "time_index": t,
          "lat": float(lat_flat[members[k]]),
          "lon": float(lon_flat[members[k]]),
          "y": float(ys[k]),
          "x": float(xs[k] + (width if xs[k] < x0 else 0)),
          "length_km": length,
          "num_pixels": int(len(members)),
          "max_gradient": float(gradient.ravel()[members].max()),
          "max_tfp": float(tfp.ravel()[members].max()),
          **region_box(grid, ys, x0, x1),
      })  # fmt: skip
  df = pd.DataFrame(rows, columns=list(FRONT_COLUMNS))
  df.attrs["variable"] = variable
  df.attrs["skipped_criteria"] = skipped
  return df
