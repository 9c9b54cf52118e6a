"""TECA-style tropical-cyclone candidates (GFDL detector): closed PSL lows with cyclonic vorticity.

The criteria and the warm-core and thickness flags are described in the
`climjax.data.heuristics` docstring, and how they follow the grid spacing under
`detect_tropical_cyclones`.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import xarray as xr

from climjax.data.errors import DataError
from climjax.data.heuristics import criteria
from climjax.data.heuristics.cyclone_tracks import time_steps_hours
from climjax.data.heuristics.grid import _field, _Grid, _grid_of, _source
from climjax.data.heuristics.lows import _local_minima, _pressure_centre, _recovery_box
from climjax.data.heuristics.rays import _core_drop, _nan_reduce, _ray_samples
from climjax.data.heuristics.sphere import relative_vorticity

TC_COLUMNS: tuple[str, ...] = (
    "time", "time_index", "lat", "lon", "y", "x", "psl", "vorticity", "wind", "warm_core",
    "thickness", "psl_rise", "warm_core_ok", "thickness_ok", "ymin", "xmin", "ymax", "xmax",
    "lat_min", "lon_min", "lat_max", "lon_max", *criteria.CRITERIA_COLUMNS,
)  # fmt: skip
# What a TC label rests on: the detector's closed low and vorticity, and the tracker's
# warm core, thick core and wind (measured here, per candidate).
TC_CRITERIA: tuple[str, ...] = ("closed_low", "vorticity", "warm_core", "thickness", "wind")


# TECA's thresholds (1.6e-4 1/s, 400 Pa) hold for grids up to this spacing (deg): a
# tropical storm's grid vorticity stays above them there (measured on the synthetic
# generator's Holland vortices: about 1.8e-4 at least at 1.25 deg, down to 1.4e-4 at 1.5
# deg and 0.4e-4 at 2.5 deg, where nearly a third also rise by less than 400 Pa).
REFERENCE_SPACING_DEG = 1.25
# Beyond it the vorticity threshold falls as (reference / spacing)^2: a cell larger than
# the storm's core holds its circulation, so the cell's mean vorticity falls as 1 / area
# (Stokes). The closed-low rise falls as reference / spacing: the lowest cell centre lies
# up to half a cell from the storm's, where a compact low's deficit falls about as 1 / r.
VORTICITY_SPACING_EXPONENT = 2.0
PSL_RISE_SPACING_EXPONENT = 1.0
# The tracker's wind test falls as (reference / spacing)^0.2: the grid's peak wind is
# that of the cell centre nearest the radius of maximum wind, off the peak of the profile.
# Measured on the generator's storms (3 seeds, 6 days, 108-114 TCs per grid; median peak
# wind against the same storm's at 1.25 deg): 0.95 at 1.9 deg, 0.88 at 2.5, 0.89 at 3.0,
# 0.81 at 3.75 deg; this law gives 0.92, 0.87, 0.84, 0.80.
WIND_SPACING_EXPONENT = 0.2


def threshold_scales(
  grid: _Grid, reference_spacing_deg: float | None = REFERENCE_SPACING_DEG
) -> dict[str, float]:
  """Factors on the vorticity, closed-low and wind thresholds for this grid (1 up to the reference).

  The wind factor is the tracker's (`track_cyclones` reads it from the candidates' attrs).
  """
  if reference_spacing_deg is None or grid.spacing_deg <= reference_spacing_deg:
    return {"vorticity": 1.0, "psl_rise": 1.0, "wind": 1.0}
  ratio = reference_spacing_deg / grid.spacing_deg
  return {
    "vorticity": float(ratio**VORTICITY_SPACING_EXPONENT),
    "psl_rise": float(ratio**PSL_RISE_SPACING_EXPONENT),
    "wind": float(ratio**WIND_SPACING_EXPONENT),
  }


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
  reference_spacing_deg: float | None = REFERENCE_SPACING_DEG,
  require_all_criteria: bool = False,
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

  On coarse grids the criteria follow the grid spacing (the mean of the
  latitude and longitude steps), since thresholds are tuned to one resolution
  (TECA's to CAM5 at 0.25 deg; the GFDL detector of Vitart et al. 1997 used
  3.5e-5 1/s at T42, 2.8 deg; TempestExtremes' reanalysis TCs close by 200 Pa
  within 5.5 deg). Up to `reference_spacing_deg` the thresholds apply as
  given; beyond, `vorticity_threshold` is scaled by (reference / spacing)^2,
  since centred differences on cells larger than a storm's core give the
  core's circulation over the cell's area, and `psl_rise_pa` by reference /
  spacing, since the lowest cell centre misses the storm's by up to half a
  cell (at 2.5 deg: 4e-5 1/s and 200 Pa; at 2.8 deg 3.2e-5 1/s, near
  Vitart's); the tracker's wind test (`track_cyclones(min_wind=...)`) by
  (reference / spacing)^0.2, since the grid's peak wind is that of the cell
  nearest the radius of maximum wind (14.8 m/s for 17 at 2.5 deg). None
  keeps them fixed. A search radius (`core_radius_deg`, `wind_radius_deg`) is
  at least a cell's diagonal, so the vorticity maximum, the warm core and the
  wind may lie in any of the 8 cells around the pressure minimum (at 2.5 deg
  a 2 deg radius holds the centre cell only); a fall-off radius
  (`psl_radius_deg`, `warm_core_radius_deg`, `thickness_radius_deg`) is at
  least two diagonals, so every ray passes those 8 cells, one of which may be
  as low (or as warm) as the centre.

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
    width); and what it rests on (`criteria.CRITERIA_COLUMNS`: the criteria
    of `TC_CRITERIA` applied to it and those skipped, and `reduced`, True
    where any was skipped; the wind is skipped for a candidate whose wind is
    NaN). `df.attrs["skipped_criteria"]` lists criteria skipped for missing
    variables, `df.attrs["thresholds"]` the thresholds and radii used on this
    grid (with `grid_spacing_deg` and the factors `vorticity_scale`,
    `psl_rise_scale` and, for the tracker, `wind_scale`), and
    `df.attrs["time_steps_hours"]` the smallest, median and largest step of
    the time coordinate (for `track_cyclones`).

  A criterion whose variables are missing is skipped with a warning and
  counted as met, as in TECA; its candidates are `reduced`. With
  `require_all_criteria` such a dataset is refused instead (DataError, one
  line naming the variables), and candidates whose wind could not be
  measured are dropped.
  """
  if "PSL" not in ds:
    raise DataError(
      _source(ds), "required by detect_tropical_cyclones (storm centres are PSL minima)", "PSL"
    )
  grid = _grid_of(ds)

  def has(*names: str) -> bool:
    return all(n in ds for n in names)

  needs = {}  # skipped criterion -> the variables it needs
  if not has("U850", "V850"):
    needs["vorticity"] = ("U850", "V850")
  core_levels = [n for n in ("T500", "T200") if n in ds]
  if not core_levels:
    needs["warm_core"] = ("T500",)
  if not has("Z200", "Z1000"):
    needs["thickness"] = ("Z200", "Z1000")
  wind_pair = ("UBOT", "VBOT") if has("UBOT", "VBOT") else ("U850", "V850")
  if not has(*wind_pair):
    needs["wind"] = ("UBOT", "VBOT")
  if needs and require_all_criteria:
    criteria.refuse(ds, "detect_tropical_cyclones", needs)
  described = {
    "vorticity": "U850, V850",
    "warm_core": "T500 or T200",
    "thickness": "Z200, Z1000",
    "wind": "UBOT, VBOT or U850, V850",
  }
  skipped = [f"{c} (needs {described[c]})" for c in needs]
  for criterion in skipped:
    warnings.warn(f"detect_tropical_cyclones: skipping the {criterion} criterion", stacklevel=2)

  scales = threshold_scales(grid, reference_spacing_deg)
  vorticity_threshold = vorticity_threshold * scales["vorticity"]
  psl_rise_pa = psl_rise_pa * scales["psl_rise"]
  diagonal = grid.diagonal_deg
  core_radius_deg = max(core_radius_deg, diagonal)
  wind_radius_deg = max(wind_radius_deg, diagonal)
  psl_radius_deg = max(psl_radius_deg, 2 * diagonal)
  warm_core_radius_deg = max(warm_core_radius_deg, 2 * diagonal)
  thickness_radius_deg = max(thickness_radius_deg, 2 * diagonal)
  thresholds = {
    "grid_spacing_deg": grid.spacing_deg,
    "vorticity_scale": scales["vorticity"],
    "psl_rise_scale": scales["psl_rise"],
    "wind_scale": scales["wind"],
    "vorticity_threshold": vorticity_threshold,
    "psl_rise_pa": psl_rise_pa,
    "warm_core_k": warm_core_k,
    "thickness_m": thickness_m,
    "core_radius_deg": core_radius_deg,
    "wind_radius_deg": wind_radius_deg,
    "psl_radius_deg": psl_radius_deg,
    "warm_core_radius_deg": warm_core_radius_deg,
    "thickness_radius_deg": thickness_radius_deg,
  }

  step = 0.5 * min(grid.dlat, grid.dlon)
  max_radius = max(core_radius_deg, psl_radius_deg, wind_radius_deg)
  radii = np.arange(0.0, max_radius + step / 2, step)
  bearings = np.arange(num_directions) * 360.0 / num_directions

  def within(radius: float) -> np.ndarray:
    return radii <= radius + 1e-9

  def outer(radius: float) -> np.ndarray:
    return np.arange(0.0, radius + step / 2, step)

  times = ds["time"].values if "time" in ds.coords else np.arange(ds.sizes["time"])
  applied = [c for c in TC_CRITERIA if c not in needs]

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
    centre_lat, centre_lon = _pressure_centre(psl, grid, cy, cx, 0.5 * psl_rise, core_radius_deg)
    in_psl = within(psl_radius_deg)
    box = _recovery_box(
        grid, s["PSL"][..., in_psl], psl_c, ray_rise, ray_lat[..., in_psl],
        ray_lon[..., in_psl], lon_c, centre_lon, box_recovery,
    )  # fmt: skip
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
        **box,
        **criteria.columns(n, applied, list(needs), {"wind": np.isnan(wind)}),
    })  # fmt: skip
    if require_warm_core:
      found = found[found["warm_core_ok"] & found["thickness_ok"]]
    if require_all_criteria:
      found = found[~found["reduced"]]
    rows.append(found)
  df = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=list(TC_COLUMNS))
  df.attrs["skipped_criteria"] = skipped
  df.attrs["thresholds"] = thresholds
  df.attrs["time_steps_hours"] = time_steps_hours(times)
  return df
