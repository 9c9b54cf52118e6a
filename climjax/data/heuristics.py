"""TECA-style heuristic detectors: tropical cyclones, their tracks, atmospheric rivers.

These make labels (positions and boxes) from fields without hand labelling,
the way the ExtremeWeather labels were made (DESIGN.md section 4). Every
threshold is in physical units and every distance in degrees of great circle or
km, so the detectors work unchanged on any grid; search windows become pixel
footprints through the grid spacing.

Tropical cyclones follow TECA's port of the GFDL detector (Vitart et al. 1997,
Knutson et al. 2007; TECA's gfdl_tc_candidates and gfdl_tc_trajectory). A
candidate is a sea-level pressure minimum, the lowest point of a 7.75 deg wide
(lat x lon) window around it, such that

- the cyclonic 850 hPa relative vorticity reaches 1.6e-4 1/s within 2 deg of
  it (vorticity maximum and pressure minimum within 2 deg of each other);
- PSL rises by at least 400 Pa within 5 deg in every direction (a closed low).

Each candidate also carries two flags, as in TECA, used by the tracker rather
than to drop candidates (`require_warm_core=True` drops them instead):

- warm core: the core temperature, mean of T500 and T200, has its maximum
  within 2 deg of the centre and falls by at least 0.8 K within 5 deg of that
  maximum in every direction;
- thickness: the 200-1000 hPa thickness (Z200 - Z1000) likewise falls by at
  least 50 m within 4 deg of its maximum.

"Every direction" is tested, as in GFDL/TECA, along 8 rays (N, NE, E, ...;
`num_directions`), here great circles sampled at half the grid spacing. A criterion whose variables are missing is skipped
(its flag is True) with a warning and listed in `df.attrs["skipped_criteria"]`.

Tracks join candidates at consecutive times that are close enough for a storm
moving at most 1,600 km/day; a track is a cyclone if, for at least 2 days in
all, its wind is at least 17 m/s while it has a warm core and a thick core.

Atmospheric rivers (older TECA, Prabhat et al. 2012): connected regions of
TMQ >= 20 kg/m2 outside the deep tropics, at least 2,000 km long (the largest
great-circle distance across the region), at most 1,250 km wide (area divided
by length), reaching land. By default TMQ must also stand 10 kg/m2 above its
zonal median, which keeps the moist subtropical belt from joining every river
(`min_tmq_anomaly=None` restores the plain threshold). Components connect
across the longitude seam of a global grid.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
import xarray as xr
from scipy import ndimage

from climjax.data.errors import DataError

EARTH_RADIUS_KM = 6371.0
KM_PER_DEG = np.pi * EARTH_RADIUS_KM / 180


# ---------------------------------------------------------------------------
# Geometry on the sphere
# ---------------------------------------------------------------------------


def great_circle_km(lat1, lon1, lat2, lon2) -> np.ndarray:
  """Haversine distance in km between points given in degrees (broadcasts)."""
  p1, p2 = np.deg2rad(lat1), np.deg2rad(lat2)
  dp, dl = p2 - p1, np.deg2rad(np.asarray(lon2) - np.asarray(lon1))
  h = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
  return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))


def destination(lat, lon, bearing_deg, distance_deg) -> tuple[np.ndarray, np.ndarray]:
  """Point reached from (lat, lon) along a great circle (degrees; broadcasts); lon in [0, 360)."""
  p1, l1 = np.deg2rad(lat), np.deg2rad(lon)
  theta, delta = np.deg2rad(bearing_deg), np.deg2rad(distance_deg)
  sin_p2 = np.sin(p1) * np.cos(delta) + np.cos(p1) * np.sin(delta) * np.cos(theta)
  p2 = np.arcsin(np.clip(sin_p2, -1.0, 1.0))
  l2 = l1 + np.arctan2(
    np.sin(theta) * np.sin(delta) * np.cos(p1), np.cos(delta) - np.sin(p1) * sin_p2
  )
  return np.rad2deg(p2), np.mod(np.rad2deg(l2), 360.0)


def relative_vorticity(
  u: np.ndarray, v: np.ndarray, lat: np.ndarray, lon: np.ndarray
) -> np.ndarray:
  """Relative vorticity (1/s) of winds (..., lat, lon) on the sphere.

  zeta = (dv/dlambda - d(u cos phi)/dphi) / (a cos phi): the cos(phi) metric
  terms matter away from the equator (a plain dv/dx - du/dy misses the
  u tan(phi) / a term). Longitude differences wrap on a global grid. Rows at
  the poles, where the expression is singular, are set to zero.
  """
  phi = np.deg2rad(np.asarray(lat, np.float64))
  lam = np.deg2rad(np.asarray(lon, np.float64))
  cos_phi = np.cos(phi)[:, None]
  u = np.asarray(u, np.float64)
  v = np.asarray(v, np.float64)
  if _is_global(np.asarray(lon)):
    dlam = 2 * np.pi / len(lon)
    dv_dlam = (np.roll(v, -1, axis=-1) - np.roll(v, 1, axis=-1)) / (2 * dlam)
  else:
    dv_dlam = np.gradient(v, lam, axis=-1)
  ducos_dphi = np.gradient(u * cos_phi, phi, axis=-2)
  a = EARTH_RADIUS_KM * 1e3
  with np.errstate(divide="ignore", invalid="ignore"):
    zeta = (dv_dlam - ducos_dphi) / (a * cos_phi)
  return np.where(cos_phi > 1e-6, zeta, 0.0).astype(np.float32)


def _is_global(lon: np.ndarray) -> bool:
  if len(lon) < 2:
    return False
  step = np.median(np.diff(lon))
  return abs(step * len(lon) - 360.0) < 0.5 * step


@dataclasses.dataclass(frozen=True)
class _Grid:
  """A (lat, lon) grid: ascending latitude, longitude 0-360 ascending."""

  lat: np.ndarray
  lon: np.ndarray

  @property
  def dlat(self) -> float:
    return float(np.median(np.abs(np.diff(self.lat))))

  @property
  def dlon(self) -> float:
    return float(np.median(np.diff(self.lon)))

  @property
  def is_global(self) -> bool:
    return _is_global(self.lon)

  @property
  def lon_mode(self) -> str:
    return "wrap" if self.is_global else "nearest"

  def window(self, radius_deg: float) -> tuple[int, int]:
    """Full sizes (rows, columns) of a +-radius_deg window, in pixels."""
    return (
      2 * max(1, int(round(radius_deg / self.dlat))) + 1,
      2 * max(1, int(round(radius_deg / self.dlon))) + 1,
    )

  def y_of(self, lat: np.ndarray) -> np.ndarray:
    """Fractional row of latitudes (clipped to the grid)."""
    return np.interp(lat, self.lat, np.arange(len(self.lat), dtype=np.float64))

  def x_of(self, lon: np.ndarray) -> np.ndarray:
    """Fractional column of longitudes; on a global grid it continues past the seam."""
    if self.is_global:
      return (np.asarray(lon) - self.lon[0]) / self.dlon
    return np.interp(lon, self.lon, np.arange(len(self.lon), dtype=np.float64))

  def nearest(self, lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest grid indices of points, and whether each point lies on the grid."""
    iy = np.rint(self.y_of(lat)).astype(np.int64)
    inside = (lat >= self.lat[0] - self.dlat / 2) & (lat <= self.lat[-1] + self.dlat / 2)
    if self.is_global:
      ix = np.mod(np.rint(self.x_of(lon)).astype(np.int64), len(self.lon))
    else:
      ix = np.rint(self.x_of(lon)).astype(np.int64)
      inside &= (lon >= self.lon[0] - self.dlon / 2) & (lon <= self.lon[-1] + self.dlon / 2)
    return iy, ix, inside

  def cell_area_km2(self) -> np.ndarray:
    """Area of each grid cell (lat, 1) in km2, from the latitude of its edges."""
    edges = np.concatenate([[-90.0], (self.lat[1:] + self.lat[:-1]) / 2, [90.0]])
    if self.lat[0] > -90 + self.dlat:  # regional grid: half a cell beyond the outer rows
      edges[0] = self.lat[0] - self.dlat / 2
    if self.lat[-1] < 90 - self.dlat:
      edges[-1] = self.lat[-1] + self.dlat / 2
    band = np.abs(np.diff(np.sin(np.deg2rad(np.clip(edges, -90, 90)))))
    return (EARTH_RADIUS_KM**2 * np.deg2rad(self.dlon) * band)[:, None]


def _source(ds: xr.Dataset) -> str:
  files = ds.encoding.get("source_files")
  if not files:
    return "<dataset>"
  return files[0] if len(files) == 1 else f"{files[0]} (and {len(files) - 1} more)"


def _grid_of(ds: xr.Dataset) -> _Grid:
  for dim in ("lat", "lon"):
    if dim not in ds.coords:
      raise DataError(_source(ds), f"expected a {dim!r} coordinate (dims time, lat, lon)", dim)
  lat = np.asarray(ds["lat"].values, np.float64)
  lon = np.asarray(ds["lon"].values, np.float64)
  if np.any(np.diff(lat) <= 0) or np.any(np.diff(lon) <= 0):
    raise DataError(
      _source(ds), "expected ascending lat and lon (as netcdf.open_fields returns)", "lat/lon"
    )
  return _Grid(lat, lon)


def _field(ds: xr.Dataset, name: str, t: int) -> np.ndarray:
  var = ds[name]
  if var.dims != ("time", "lat", "lon"):
    raise DataError(_source(ds), f"expected dims (time, lat, lon), found {var.dims}", name)
  return np.asarray(var.isel(time=t).values, np.float32)


# ---------------------------------------------------------------------------
# Tropical cyclones
# ---------------------------------------------------------------------------

TC_COLUMNS: tuple[str, ...] = (
    "time", "time_index", "lat", "lon", "y", "x", "psl", "vorticity", "wind", "warm_core",
    "thickness", "psl_rise", "warm_core_ok", "thickness_ok", "ymin", "xmin", "ymax", "xmax",
    "lat_min", "lon_min", "lat_max", "lon_max",
)  # fmt: skip


def _local_minima(field: np.ndarray, grid: _Grid, window_deg: float) -> np.ndarray:
  """Flat indices of one pixel per local minimum of a window_deg-wide window (ties merged)."""
  filled = np.where(np.isfinite(field), field, np.inf)
  lowest = ndimage.minimum_filter(
    filled, size=grid.window(window_deg / 2), mode=("nearest", grid.lon_mode)
  )
  mask = (filled == lowest) & np.isfinite(filled)
  # A flat minimum is one candidate, not one per pixel.
  labels, _ = ndimage.label(mask)
  flat = labels.ravel()
  where = np.flatnonzero(flat)
  _, first = np.unique(flat[where], return_index=True)
  return where[first]


def _ray_samples(
  fields: dict[str, np.ndarray],
  grid: _Grid,
  lat_c: np.ndarray,
  lon_c: np.ndarray,
  radii: np.ndarray,
  bearings: np.ndarray,
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
  """Values (K, D, R) of each field along D rays from K centres, NaN off the grid."""
  lat, lon = destination(
    lat_c[:, None, None], lon_c[:, None, None], bearings[None, :, None], radii[None, None, :]
  )
  iy, ix, inside = grid.nearest(lat, lon)
  iy = np.clip(iy, 0, len(grid.lat) - 1)
  ix = np.clip(ix, 0, len(grid.lon) - 1)
  samples = {name: np.where(inside, f[iy, ix], np.nan) for name, f in fields.items()}
  return samples, lat, lon


def _nan_reduce(fn, x: np.ndarray, axis, empty: float) -> np.ndarray:
  """np.nanmax/nanmin without the all-NaN warning; `empty` where nothing is finite."""
  finite = np.isfinite(x)
  fill = -np.inf if fn is np.max else np.inf
  out = fn(np.where(finite, x, fill), axis=axis)
  return np.where(np.any(finite, axis=axis), out, empty)


def _core_drop(
  field: np.ndarray,
  grid: _Grid,
  samples: np.ndarray,
  ray_lat: np.ndarray,
  ray_lon: np.ndarray,
  core: np.ndarray,
  radii: np.ndarray,
  bearings: np.ndarray,
) -> np.ndarray:
  """Smallest fall, over all directions, of a field away from its core maximum.

  The core is the largest sample within the core radius of the centre (`core`
  selects those radii of `samples`, (K, D, R)); from there, rays of length
  `radii[-1]` must each reach a value below the core's by the threshold. Rays
  start at the core maximum, not the pressure centre, so a cold-core low (whose
  warmest point within the core radius lies on its rim) does not pass.
  """
  inner = np.where(np.isfinite(samples[..., core]), samples[..., core], -np.inf)
  flat = inner.reshape(len(inner), -1)
  best = np.argmax(flat, axis=1)
  peak = flat[np.arange(len(flat)), best]
  peak_lat = ray_lat[..., core].reshape(len(inner), -1)[np.arange(len(flat)), best]
  peak_lon = ray_lon[..., core].reshape(len(inner), -1)[np.arange(len(flat)), best]
  rays, _, _ = _ray_samples({"f": field}, grid, peak_lat, peak_lon, radii, bearings)
  lowest = _nan_reduce(np.min, rays["f"], -1, np.nan)
  drop = (peak[:, None] - lowest).min(axis=1)
  return np.where(np.isfinite(peak), drop, np.nan)


def _pressure_centre(
  psl: np.ndarray,
  grid: _Grid,
  cy: np.ndarray,
  cx: np.ndarray,
  depth: np.ndarray,
  radius_deg: float,
) -> tuple[np.ndarray, np.ndarray]:
  """Centre (lat, lon) of each low: the centroid of its pressure deficit near the minimum.

  Weights are how far PSL lies below `depth` above the minimum, over pixels
  within `radius_deg` of it. The single lowest pixel of a flat-bottomed low
  wanders with small-scale noise by a few pixels; the centroid of the deficit
  does not.
  """
  height, width = psl.shape
  lat_c, lon_c = grid.lat[cy], grid.lon[cx]
  ry = max(1, int(np.ceil(radius_deg / grid.dlat)))
  widest = np.cos(np.deg2rad(min(float(np.abs(lat_c).max()), 85.0)))
  rx = min(max(1, int(np.ceil(radius_deg / (grid.dlon * widest)))), width // 2)
  iy = cy[:, None, None] + np.arange(-ry, ry + 1)[None, :, None]
  ix = cx[:, None, None] + np.arange(-rx, rx + 1)[None, None, :]
  valid = (iy >= 0) & (iy < height)
  if grid.is_global:
    ix = np.mod(ix, width)
  else:
    valid = valid & (ix >= 0) & (ix < width)
  iy, ix = np.clip(iy, 0, height - 1), np.clip(ix, 0, width - 1)
  lat = grid.lat[iy]
  east = np.mod(grid.lon[ix] - lon_c[:, None, None] + 180.0, 360.0) - 180.0
  near = great_circle_km(
    lat_c[:, None, None], lon_c[:, None, None], lat, lon_c[:, None, None] + east
  )
  weight = np.clip(psl[cy, cx][:, None, None] + depth[:, None, None] - psl[iy, ix], 0.0, None)
  weight = np.where(valid & (near <= radius_deg * KM_PER_DEG) & np.isfinite(weight), weight, 0.0)
  total = np.maximum(weight.sum(axis=(1, 2)), 1e-30)
  centre_lat = (weight * lat).sum(axis=(1, 2)) / total
  centre_lon = lon_c + (weight * east).sum(axis=(1, 2)) / total
  return centre_lat, np.mod(centre_lon, 360.0)


def _zonal_anomaly(field: np.ndarray) -> np.ndarray:
  """Field minus its mean along each latitude row."""
  return field - np.nanmean(field, axis=1, keepdims=True)


def detect_tropical_cyclones(
  ds: xr.Dataset,
  *,
  vorticity_threshold: float = 1.6e-4,
  search_window_deg: float = 7.75,
  core_radius_deg: float = 2.0,
  psl_rise_pa: float = 400.0,
  psl_radius_deg: float = 5.0,
  warm_core_k: float = 0.8,
  warm_core_radius_deg: float = 5.0,
  thickness_m: float = 50.0,
  thickness_radius_deg: float = 4.0,
  wind_radius_deg: float = 2.0,
  max_abs_lat: float | None = 60.0,
  require_warm_core: bool = False,
  num_directions: int = 8,
  box_recovery: float = 0.5,
) -> pd.DataFrame:
  """TC candidates at every time of `ds` (dims time, lat, lon; PSL required).

  Criteria and defaults as in the module docstring; the relaxed TECA variant is
  `vorticity_threshold=1.4e-4, warm_core_k=0.6, psl_rise_pa=300`. The warm
  core and the thickness are measured on anomalies from their zonal (per
  latitude row) mean: the meridional temperature gradient of the subtropics,
  1-2 K across 5 deg, would otherwise hide a storm's warm core on its
  equatorward side and fake one poleward. Candidates poleward of `max_abs_lat`
  (None: no limit) are not considered: near the poles the 1/cos(lat) metric
  term turns grid-scale wind noise into large vorticity, and tropical cyclones
  do not live there. `wind` is the largest wind speed (UBOT/VBOT, else
  U850/V850) within `wind_radius_deg`. The box spans, along each ray, the
  distance at which PSL has recovered `box_recovery` of its rise within
  `psl_radius_deg`.

  Returns:
    One row per candidate with columns `TC_COLUMNS`: the centre (`lat`, `lon`,
    the centroid of the pressure deficit around the PSL minimum, and the same
    point as fractional pixel coordinates `y`, `x`), the measured criteria
    (`psl` Pa at the minimum; `vorticity` 1/s, cyclonic positive in both
    hemispheres; `psl_rise` Pa; `warm_core` K; `thickness` m; NaN where
    skipped), the flags `warm_core_ok` and `thickness_ok` (True where the
    criterion was skipped), and the box in pixels (`ymin`, `xmin`, `ymax`,
    `xmax`; fractional, x continuing past the seam of a global grid) and
    degrees (`lat_min`, `lon_min`, `lat_max`, `lon_max`; lon_max = lon_min +
    width). `df.attrs["skipped_criteria"]` lists criteria skipped for missing
    variables.
  """
  if "PSL" not in ds:
    raise DataError(
      _source(ds), "required by detect_tropical_cyclones (storm centres are PSL minima)", "PSL"
    )
  grid = _grid_of(ds)

  def has(*names: str) -> bool:
    return all(n in ds for n in names)

  skipped = []
  if not has("U850", "V850"):
    skipped.append("vorticity (needs U850, V850)")
  core_levels = [n for n in ("T500", "T200") if n in ds]
  if not core_levels:
    skipped.append("warm_core (needs T500 or T200)")
  if not has("Z200", "Z1000"):
    skipped.append("thickness (needs Z200, Z1000)")
  wind_pair = ("UBOT", "VBOT") if has("UBOT", "VBOT") else ("U850", "V850")
  if not has(*wind_pair):
    skipped.append("wind (needs UBOT, VBOT or U850, V850)")
  for criterion in skipped:
    warnings.warn(f"detect_tropical_cyclones: skipping the {criterion} criterion", stacklevel=2)

  step = 0.5 * min(grid.dlat, grid.dlon)
  max_radius = max(core_radius_deg, psl_radius_deg, wind_radius_deg)
  radii = np.arange(0.0, max_radius + step / 2, step)
  bearings = np.arange(num_directions) * 360.0 / num_directions

  def within(radius: float) -> np.ndarray:
    return radii <= radius + 1e-9

  def outer(radius: float) -> np.ndarray:
    return np.arange(0.0, radius + step / 2, step)

  times = ds["time"].values if "time" in ds.coords else np.arange(ds.sizes["time"])

  rows = []
  for t in range(ds.sizes["time"]):
    psl = _field(ds, "PSL", t)
    cy, cx = np.unravel_index(_local_minima(psl, grid, search_window_deg), psl.shape)
    if max_abs_lat is not None:
      keep = np.abs(grid.lat[cy]) <= max_abs_lat
      cy, cx = cy[keep], cx[keep]
    if len(cy) == 0:
      continue

    # Closed low: PSL rises by psl_rise_pa within psl_radius along every ray.
    fields = {"PSL": psl}
    if has("U850", "V850"):
      zeta = relative_vorticity(_field(ds, "U850", t), _field(ds, "V850", t), grid.lat, grid.lon)
      fields["zeta"] = zeta * np.sign(grid.lat)[:, None]  # cyclonic positive in the SH too
    s, _, _ = _ray_samples(fields, grid, grid.lat[cy], grid.lon[cx], radii, bearings)
    psl_c = psl[cy, cx].astype(np.float64)
    ray_rise = _nan_reduce(np.max, s["PSL"][..., within(psl_radius_deg)], -1, 0.0) - psl_c[:, None]
    passed = ray_rise.min(axis=1) >= psl_rise_pa
    if "zeta" in s:
      vorticity = _nan_reduce(np.max, s["zeta"][..., within(core_radius_deg)], (1, 2), -np.inf)
      passed &= vorticity >= vorticity_threshold
    if not passed.any():
      continue

    # Measure the candidates: centre, warm core, thickness, wind, box.
    cy, cx, psl_c, ray_rise = cy[passed], cx[passed], psl_c[passed], ray_rise[passed]
    n = len(cy)
    psl_rise = ray_rise.min(axis=1)
    vorticity = vorticity[passed] if "zeta" in s else np.full(n, np.nan)
    lat_c, lon_c = grid.lat[cy], grid.lon[cx]
    if core_levels:
      core_t = np.mean([_field(ds, name, t) for name in core_levels], axis=0)
      fields["core_t"] = _zonal_anomaly(core_t)
    if has("Z200", "Z1000"):
      fields["thickness"] = _zonal_anomaly(_field(ds, "Z200", t) - _field(ds, "Z1000", t))
    if has(*wind_pair):
      fields["wind"] = np.hypot(_field(ds, wind_pair[0], t), _field(ds, wind_pair[1], t))
    fields.pop("zeta", None)
    s, ray_lat, ray_lon = _ray_samples(fields, grid, lat_c, lon_c, radii, bearings)
    core = within(core_radius_deg)

    warm_core = np.full(n, np.nan)
    if "core_t" in s:
      warm_core = _core_drop(
          fields["core_t"], grid, s["core_t"], ray_lat, ray_lon, core,
          outer(warm_core_radius_deg), bearings,
      )  # fmt: skip
    thickness = np.full(n, np.nan)
    if "thickness" in s:
      thickness = _core_drop(
          fields["thickness"], grid, s["thickness"], ray_lat, ray_lon, core,
          outer(thickness_radius_deg), bearings,
      )  # fmt: skip
    warm_core_ok = warm_core >= warm_core_k if "core_t" in s else np.ones(n, bool)
    thickness_ok = thickness >= thickness_m if "thickness" in s else np.ones(n, bool)
    wind = np.full(n, np.nan)
    if "wind" in s:
      wind = _nan_reduce(np.max, s["wind"][..., within(wind_radius_deg)], (1, 2), np.nan)

    # Box: along each ray, where PSL has recovered box_recovery of that ray's rise.
    in_psl = within(psl_radius_deg)
    recovered = (s["PSL"][..., in_psl] - psl_c[:, None, None]) >= (
      box_recovery * np.maximum(ray_rise, 0)
    )[..., None]
    recovered[..., -1] = True
    edge = np.argmax(recovered, axis=-1)[..., None]  # (K, D, 1): first radius index
    edge_lat = np.take_along_axis(ray_lat[..., in_psl], edge, -1)[..., 0]
    edge_lon = np.take_along_axis(ray_lon[..., in_psl], edge, -1)[..., 0]
    east = np.mod(edge_lon - lon_c[:, None] + 180.0, 360.0) - 180.0

    centre_lat, centre_lon = _pressure_centre(psl, grid, cy, cx, 0.5 * psl_rise, core_radius_deg)
    # Express the box around the refined centre, so that across the seam both use
    # the same continuation of longitude.
    shift = np.mod(lon_c - centre_lon + 180.0, 360.0) - 180.0
    box_lo = centre_lon + shift + east.min(axis=1)
    box_hi = centre_lon + shift + east.max(axis=1)
    lat_min, lat_max = edge_lat.min(axis=1), edge_lat.max(axis=1)
    lon_min = np.mod(box_lo, 360.0)
    found = pd.DataFrame({
        "time": [times[t]] * n,
        "time_index": t,
        "lat": centre_lat,
        "lon": centre_lon,
        "y": grid.y_of(centre_lat),
        "x": grid.x_of(centre_lon),
        "psl": psl_c,
        "vorticity": vorticity,
        "wind": wind,
        "warm_core": warm_core,
        "thickness": thickness,
        "psl_rise": psl_rise,
        "warm_core_ok": warm_core_ok,
        "thickness_ok": thickness_ok,
        "ymin": grid.y_of(lat_min),
        "xmin": grid.x_of(box_lo),
        "ymax": grid.y_of(lat_max),
        "xmax": grid.x_of(box_hi),
        "lat_min": lat_min,
        "lon_min": lon_min,
        "lat_max": lat_max,
        "lon_max": lon_min + (box_hi - box_lo),
    })  # fmt: skip
    if require_warm_core:
      found = found[found["warm_core_ok"] & found["thickness_ok"]]
    rows.append(found)
  df = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=list(TC_COLUMNS))
  df.attrs["skipped_criteria"] = skipped
  return df


# ---------------------------------------------------------------------------
# Tracks
# ---------------------------------------------------------------------------


def _days(times: Sequence) -> np.ndarray:
  """Times (datetime64, cftime or numbers) as float days since the earliest."""
  values = np.asarray(times)
  if values.size == 0:
    return np.zeros(0)
  if values.dtype.kind == "M":
    return (values - values.min()) / np.timedelta64(1, "D")
  if values.dtype.kind in "iuf":
    return values.astype(np.float64) - values.min()
  first = min(values)
  return np.array([(t - first).total_seconds() / 86_400 for t in values])


def track_cyclones(
  candidates: pd.DataFrame,
  *,
  max_speed_km_per_day: float = 1600.0,
  min_wind: float = 17.0,
  min_duration_days: float = 2.0,
  time_step_days: float | None = None,
) -> pd.DataFrame:
  """Joins TC candidates into tracks and keeps the tracks that are cyclones.

  Candidates at consecutive times (`time_step_days` apart, by default the
  smallest spacing between candidate times) are joined nearest pair first
  while their distance is at most `max_speed_km_per_day` times the step. As in
  TECA, a track is kept if it is a cyclone for at least `min_duration_days` in
  all (steps times the step), where a step counts when its `wind` is at least
  `min_wind` and it has a warm core and a thick core (`warm_core_ok`,
  `thickness_ok`, taken as True where the columns are absent). Where the wind
  is unknown (NaN: no wind variables) the flags alone count.

  Returns:
    The kept candidates with an integer `track_id` (0, 1, ... in order of
    first appearance), sorted by track and time.
  """
  required = {"time", "lat", "lon", "wind"}
  if not required <= set(candidates.columns):
    raise ValueError(f"candidates need columns {sorted(required)}, have {list(candidates.columns)}")
  if candidates.empty:
    return candidates.assign(track_id=pd.Series(dtype=np.int64))
  days = _days(candidates["time"].to_numpy())
  steps = np.unique(days)
  if time_step_days is None:
    gaps = np.diff(steps)
    time_step_days = float(gaps.min()) if len(gaps) else 1.0
  max_km = max_speed_km_per_day * time_step_days
  lat = candidates["lat"].to_numpy(np.float64)
  lon = candidates["lon"].to_numpy(np.float64)

  track = np.full(len(candidates), -1, np.int64)
  next_id = 0
  previous = np.zeros(0, np.int64)  # rows at the previous step
  previous_day = -np.inf
  for day in steps:
    current = np.flatnonzero(days == day)
    if day - previous_day <= time_step_days * 1.01 and len(previous):
      dist = great_circle_km(
        lat[previous][:, None], lon[previous][:, None], lat[current][None], lon[current][None]
      )
      # Nearest pairs first: each storm continues to the closest candidate in reach.
      for flat in np.argsort(dist, axis=None):
        i, j = np.unravel_index(flat, dist.shape)
        if dist[i, j] > max_km:
          break
        if track[current[j]] < 0 and not np.isin(track[previous[i]], track[current]):
          track[current[j]] = track[previous[i]]
    for j in current:
      if track[j] < 0:
        track[j], next_id = next_id, next_id + 1
    previous, previous_day = current, day

  wind = candidates["wind"].to_numpy(np.float64)
  strong = np.where(np.isnan(wind), True, wind >= min_wind)
  for flag in ("warm_core_ok", "thickness_ok"):
    if flag in candidates.columns:
      strong &= candidates[flag].to_numpy(bool)
  strong_days = np.bincount(track, weights=strong.astype(np.float64)) * time_step_days
  keep_ids = np.flatnonzero(strong_days >= min_duration_days - 1e-9)
  kept = np.isin(track, keep_ids)
  out = candidates.loc[kept].copy()
  # Renumber the kept tracks 0, 1, ... in order of first appearance.
  old = track[kept]
  _, first = np.unique(old, return_index=True)
  order = np.argsort(np.argsort(first))
  out["track_id"] = order[np.searchsorted(np.unique(old), old)]
  out["_days"] = days[kept]
  out = out.sort_values(["track_id", "_days"], kind="stable").drop(columns="_days")
  out.attrs = dict(candidates.attrs)
  return out.reset_index(drop=True)


# ---------------------------------------------------------------------------
# Atmospheric rivers
# ---------------------------------------------------------------------------

AR_COLUMNS: tuple[str, ...] = (
    "time", "time_index", "lat", "lon", "length_km", "width_km", "area_km2", "tmq_max",
    "landfall", "num_pixels", "ymin", "xmin", "ymax", "xmax", "lat_min", "lon_min", "lat_max",
    "lon_max",
)  # fmt: skip

_EIGHT_NEIGHBOURS = np.ones((3, 3), bool)


def _label_wrapped(mask: np.ndarray, wrap: bool) -> tuple[np.ndarray, int]:
  """8-connected components; on a global grid, components touching across the seam merge."""
  labels, n = ndimage.label(mask, structure=_EIGHT_NEIGHBOURS)
  if not wrap or n == 0:
    return labels, n
  west, east = labels[:, 0], labels[:, -1]
  pairs = []
  for shift in (-1, 0, 1):  # diagonal neighbours across the seam count too
    other = np.roll(east, shift)
    if shift == -1:
      other[-1] = 0
    elif shift == 1:
      other[0] = 0
    both = (west > 0) & (other > 0)
    pairs.append(np.stack([west[both], other[both]], axis=1))
  pairs = np.concatenate(pairs)
  if len(pairs) == 0:
    return labels, n
  # Union-find over the few labels on the seam.
  parent = np.arange(n + 1)

  def root(i: int) -> int:
    while parent[i] != i:
      parent[i] = parent[parent[i]]
      i = parent[i]
    return i

  for a, b in pairs:
    ra, rb = root(a), root(b)
    if ra != rb:
      parent[max(ra, rb)] = min(ra, rb)
  roots = np.array([root(i) for i in range(n + 1)])
  unique, relabel = np.unique(roots, return_inverse=True)
  return relabel[labels], len(unique) - 1


def _column_span(cols: np.ndarray, width: int, wrap: bool) -> tuple[int, int]:
  """(first, last) column of a set of columns; `last` may exceed width-1 across the seam."""
  cols = np.unique(cols)
  if not wrap or len(cols) == 1:
    return int(cols[0]), int(cols[-1])
  gaps = np.diff(np.concatenate([cols, [cols[0] + width]]))
  widest = int(np.argmax(gaps))  # the occupied arc starts after the widest empty gap
  if widest == len(cols) - 1:
    return int(cols[0]), int(cols[-1])
  first = int(cols[widest + 1])
  return first, int(cols[widest]) + width


def _diameter_km(lat: np.ndarray, lon: np.ndarray, max_points: int = 1500) -> float:
  """Largest great-circle distance between points (the ends of an elongated region)."""
  if len(lat) > max_points:
    pick = np.linspace(0, len(lat) - 1, max_points).astype(np.int64)
    lat, lon = lat[pick], lon[pick]
  p, lam = np.deg2rad(lat), np.deg2rad(lon)
  xyz = np.stack([np.cos(p) * np.cos(lam), np.cos(p) * np.sin(lam), np.sin(p)], axis=1)
  cos_angle = np.clip((xyz @ xyz.T).min(), -1.0, 1.0)
  return float(EARTH_RADIUS_KM * np.arccos(cos_angle))


def _land_mask(ds: xr.Dataset, grid: _Grid, land_fraction, required: bool) -> np.ndarray | None:
  """Land fraction (lat, lon): given, else the dataset's LANDFRAC, else `landsea`, else None."""
  if land_fraction is None and "LANDFRAC" in ds:
    land_fraction = ds["LANDFRAC"]
    if "time" in land_fraction.dims:
      land_fraction = land_fraction.isel(time=0)
  if land_fraction is None:
    try:
      from climjax.data import landsea  # noqa: PLC0415 - optional module
    except ImportError:
      if not required:
        return None
      raise ValueError(
        "detect_atmospheric_rivers(require_landfall=True) needs a land mask: pass "
        "land_fraction= (lat, lon) or include LANDFRAC in the dataset"
      ) from None
    land_fraction = landsea.land_fraction(grid.lat, grid.lon)
  land = np.asarray(getattr(land_fraction, "values", land_fraction), np.float32)
  if land.shape != (len(grid.lat), len(grid.lon)):
    raise ValueError(
      f"land_fraction has shape {land.shape}, expected the grid's {(len(grid.lat), len(grid.lon))}"
    )
  return land


def detect_atmospheric_rivers(
  ds: xr.Dataset,
  *,
  tmq_threshold: float = 20.0,
  min_length_km: float = 2000.0,
  max_width_km: float = 1250.0,
  require_landfall: bool = True,
  land_fraction: np.ndarray | xr.DataArray | None = None,
  min_abs_lat: float = 20.0,
  max_abs_lat: float = 80.0,
  min_tmq_anomaly: float | None = 10.0,
  min_land_pixels: int = 1,
) -> pd.DataFrame:
  """Atmospheric rivers at every time of `ds` (dims time, lat, lon; TMQ required).

  Regions of TMQ >= `tmq_threshold` (kg/m2) between `min_abs_lat` and
  `max_abs_lat` (the deep tropics are moist everywhere and would join every
  river into one belt) that are at least `min_length_km` long and at most
  `max_width_km` wide (area / length). Where `min_tmq_anomaly` is set, TMQ must
  also exceed its zonal (per latitude row) median by that much: the subtropics
  often hold 20 kg/m2 all around a latitude circle, a belt that would join
  every river and fail the width test; a river stands out from its latitude.
  `min_tmq_anomaly=None` gives the plain TECA threshold. With
  `require_landfall`, a river must reach land: at least `min_land_pixels` of
  its pixels lie on land (land fraction >= 0.5) or next to it (one of the 8
  neighbours on land), since moisture rains out over land and a river's
  threshold region often ends at the coast. The land fraction is
  `land_fraction` (lat, lon), else the dataset's LANDFRAC, else
  `climjax.data.landsea.land_fraction`.

  Returns:
    One row per river with columns `AR_COLUMNS`: area-weighted centre, length,
    width, area, peak TMQ, whether it reaches land (None where no land mask is
    known and landfall is not required), and its box in pixels
    (inclusive pixel indices; xmax may exceed W-1 across the seam) and degrees.
  """
  if "TMQ" not in ds:
    raise DataError(_source(ds), "required by detect_atmospheric_rivers", "TMQ")
  grid = _grid_of(ds)
  land = _land_mask(ds, grid, land_fraction, required=require_landfall)
  if land is not None:
    on_land = land >= 0.5
    if grid.is_global:  # the neighbours of column 0 include column W-1
      on_land = np.concatenate([on_land[:, -1:], on_land, on_land[:, :1]], axis=1)
    reach = ndimage.binary_dilation(on_land, structure=_EIGHT_NEIGHBOURS)
    coast_or_land = (reach[:, 1:-1] if grid.is_global else reach).ravel()
  area = np.broadcast_to(grid.cell_area_km2(), (len(grid.lat), len(grid.lon)))
  band = (np.abs(grid.lat) >= min_abs_lat) & (np.abs(grid.lat) <= max_abs_lat)
  # A region of n connected pixels spans at most n pixel diagonals: cheap rejection.
  max_step_km = float(np.sqrt(area.max() * 2)) * 1.5
  wrap = grid.is_global
  width = len(grid.lon)
  # Flat per-pixel lookups, made once (ravel of a broadcast view copies every time).
  lat_flat = np.repeat(grid.lat, width)
  lon_flat = np.tile(grid.lon, len(grid.lat))
  area_flat = np.ascontiguousarray(area).ravel()
  times = ds["time"].values if "time" in ds.coords else np.arange(ds.sizes["time"])

  rows = []
  for t in range(ds.sizes["time"]):
    tmq = _field(ds, "TMQ", t)
    mask = (tmq >= tmq_threshold) & band[:, None]
    if min_tmq_anomaly is not None:
      mask &= tmq - np.nanmedian(tmq, axis=1, keepdims=True) >= min_tmq_anomaly
    labels, n = _label_wrapped(mask, wrap)
    if n == 0:
      continue
    edge = mask & ~ndimage.binary_erosion(mask, structure=_EIGHT_NEIGHBOURS)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    flat_labels = labels.ravel()
    pixels = np.flatnonzero(flat_labels)
    order = np.argsort(flat_labels[pixels], kind="stable")
    groups = np.split(pixels[order], np.cumsum(sizes[1:])[:-1])
    edge_pixels = np.flatnonzero(edge.ravel())
    edge_groups = np.split(
      edge_pixels[np.argsort(flat_labels[edge_pixels], kind="stable")],
      np.cumsum(np.bincount(flat_labels[edge_pixels], minlength=n + 1)[1:])[:-1],
    )
    for label in range(1, n + 1):
      members = groups[label - 1]
      if len(members) * max_step_km < min_length_km:
        continue
      border = edge_groups[label - 1]
      length = _diameter_km(lat_flat[border], lon_flat[border])
      if length < min_length_km:
        continue
      cell = area_flat[members]
      region_area = float(cell.sum())
      region_width = region_area / max(length, max_step_km)
      if region_width > max_width_km:
        continue
      landfall = None  # unknown without a land mask
      if land is not None:
        landfall = int(coast_or_land[members].sum()) >= min_land_pixels
      if require_landfall and not landfall:
        continue
      ys, xs = np.unravel_index(members, mask.shape)
      lam = np.deg2rad(grid.lon[xs])
      centre_lon = np.rad2deg(np.arctan2((cell * np.sin(lam)).sum(), (cell * np.cos(lam)).sum()))
      x0, x1 = _column_span(xs, width, wrap)
      lon_min = float(grid.lon[x0])
      rows.append({
          "time": times[t],
          "time_index": t,
          "lat": float((cell * grid.lat[ys]).sum() / cell.sum()),
          "lon": float(np.mod(centre_lon, 360.0)),
          "length_km": length,
          "width_km": region_width,
          "area_km2": region_area,
          "tmq_max": float(tmq.ravel()[members].max()),
          "landfall": landfall,
          "num_pixels": int(len(members)),
          "ymin": int(ys.min()),
          "xmin": x0,
          "ymax": int(ys.max()),
          "xmax": x1,
          "lat_min": float(grid.lat[ys.min()]),
          "lon_min": lon_min,
          "lat_max": float(grid.lat[ys.max()]),
          "lon_max": lon_min + (x1 - x0) * grid.dlon,
      })  # fmt: skip
  return pd.DataFrame(rows, columns=list(AR_COLUMNS))
