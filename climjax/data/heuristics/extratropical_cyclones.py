"""Extratropical cyclones: closed PSL lows poleward of the tropics, tracked for a day.

The criteria are described in the `climjax.data.heuristics` docstring.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from climjax.data.errors import DataError
from climjax.data.heuristics import criteria
from climjax.data.heuristics.cyclone_tracks import time_steps_hours, track_cyclones
from climjax.data.heuristics.grid import _field, _grid_of, _source
from climjax.data.heuristics.lows import (
  _local_minima,
  _merge_nearby,
  _pressure_centre,
  _recovery_box,
)
from climjax.data.heuristics.rays import _nan_reduce, _ray_samples
from climjax.data.heuristics.sphere import KM_PER_DEG, great_circle_km

ETC_COLUMNS: tuple[str, ...] = (
    "time", "time_index", "lat", "lon", "y", "x", "psl", "psl_rise", "ymin", "xmin", "ymax",
    "xmax", "lat_min", "lon_min", "lat_max", "lon_max", *criteria.CRITERIA_COLUMNS,
)  # fmt: skip
# What an ETC label rests on: PSL alone (the tracker's duration and travel need no variable).
ETC_CRITERIA: tuple[str, ...] = ("closed_low",)


def detect_extratropical_cyclones(
  ds: xr.Dataset,
  *,
  psl_rise_pa: float = 200.0,
  psl_radius_deg: float = 6.0,
  merge_distance_deg: float = 6.0,
  search_window_deg: float = 3.0,
  min_abs_lat: float = 20.0,
  max_abs_lat: float = 80.0,
  centre_radius_deg: float = 3.0,
  num_directions: int = 8,
  box_recovery: float = 0.7,
) -> pd.DataFrame:
  """ETC candidates at every time of `ds` (dims time, lat, lon; PSL required).

  As TempestExtremes finds them (`DetectNodes --searchbymin PSL --mergedist 6
  --closedcontourcmd PSL,200,6,0`): PSL minima of a `search_window_deg`-wide
  window between `min_abs_lat` and `max_abs_lat`; of minima within
  `merge_distance_deg` of each other the lowest is kept; a minimum is a
  cyclone where PSL rises by `psl_rise_pa` within `psl_radius_deg` of it
  along every one of `num_directions` great-circle rays (the closed-contour
  test, sampled along rays as the TC detector does). The centre is the
  centroid of the pressure deficit within `centre_radius_deg`; the box spans,
  along each ray, the distance at which PSL has recovered `box_recovery` of
  that ray's rise (0.7: 1.55 radii of a Gaussian low).

  Returns:
    One row per candidate with columns `ETC_COLUMNS`: the centre (`lat`,
    `lon`, and as fractional pixels `y`, `x`), `psl` (Pa) at the minimum, the
    smallest rise over the rays `psl_rise` (Pa), and the box in pixels
    (fractional, x continuing past the seam of a global grid) and degrees
    (lon_max = lon_min + width), and the criteria columns
    (`criteria.CRITERIA_COLUMNS`: `closed_low` applied, none skipped). No
    criterion needs a variable beyond PSL, so `df.attrs["skipped_criteria"]`
    is empty. `df.attrs["time_steps_hours"]` holds the smallest, median and
    largest step of the time coordinate, as the TC detector records it, so
    the tracker knows the data's own sampling even at times without
    candidates.
  """
  if "PSL" not in ds:
    raise DataError(
      _source(ds), "required by detect_extratropical_cyclones (cyclones are PSL minima)", "PSL"
    )
  grid = _grid_of(ds)
  step = 0.5 * min(grid.dlat, grid.dlon)
  radii = np.arange(0.0, psl_radius_deg + step / 2, step)
  bearings = np.arange(num_directions) * 360.0 / num_directions
  band = (np.abs(grid.lat) >= min_abs_lat) & (np.abs(grid.lat) <= max_abs_lat)
  times = ds["time"].values if "time" in ds.coords else np.arange(ds.sizes["time"])

  rows = []
  for t in range(ds.sizes["time"]):
    psl = _field(ds, "PSL", t)
    cy, cx = np.unravel_index(_local_minima(psl, grid, search_window_deg), psl.shape)
    keep = band[cy]
    cy, cx = cy[keep], cx[keep]
    if len(cy) == 0:
      continue
    psl_c = psl[cy, cx].astype(np.float64)
    keep = _merge_nearby(grid.lat[cy], grid.lon[cx], psl_c, merge_distance_deg)
    cy, cx, psl_c = cy[keep], cx[keep], psl_c[keep]
    lat_c, lon_c = grid.lat[cy], grid.lon[cx]
    s, ray_lat, ray_lon = _ray_samples({"PSL": psl}, grid, lat_c, lon_c, radii, bearings)
    ray_rise = _nan_reduce(np.max, s["PSL"], -1, 0.0) - psl_c[:, None]
    passed = ray_rise.min(axis=1) >= psl_rise_pa
    if not passed.any():
      continue
    cy, cx, psl_c, ray_rise = cy[passed], cx[passed], psl_c[passed], ray_rise[passed]
    lat_c, lon_c = lat_c[passed], lon_c[passed]
    psl_rise = ray_rise.min(axis=1)
    centre_lat, centre_lon = _pressure_centre(psl, grid, cy, cx, 0.5 * psl_rise, centre_radius_deg)
    box = _recovery_box(
        grid, s["PSL"][passed], psl_c, ray_rise, ray_lat[passed], ray_lon[passed], lon_c,
        centre_lon, box_recovery,
    )  # fmt: skip
    rows.append(
      pd.DataFrame(
        {
          "time": [times[t]] * len(cy),
          "time_index": t,
          "lat": centre_lat,
          "lon": centre_lon,
          "y": grid.y_of(centre_lat),
          "x": grid.x_of(centre_lon),
          "psl": psl_c,
          "psl_rise": psl_rise,
          **box,
          **criteria.columns(len(cy), ETC_CRITERIA, []),
        }
      )
    )
  df = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=list(ETC_COLUMNS))
  df.attrs["skipped_criteria"] = []
  df.attrs["time_steps_hours"] = time_steps_hours(times)
  return df


def track_extratropical_cyclones(
  candidates: pd.DataFrame,
  *,
  max_speed_km_per_day: float = 2700.0,
  min_duration_days: float = 1.0,
  min_endpoint_deg: float = 12.0,
) -> pd.DataFrame:
  """Joins ETC candidates into tracks (`track_cyclones`) and keeps the travelling ones.

  As TempestExtremes' ETC tracking (`StitchNodes --range 6 --min_endpoint_dist
  12`): candidates 6 hours apart join when at most 6 deg apart (2,700 km/day;
  storms in the westerlies move at up to ~25 m/s, and a centre jumps as the
  low deepens), and a track must last `min_duration_days` (every step counts:
  no wind or warm-core test) and end at least `min_endpoint_deg` from where it
  began, which drops quasi-stationary lows (thermal and subpolar lows, noise).
  """
  etc = candidates.drop(columns=["wind", "warm_core_ok", "thickness_ok"], errors="ignore")
  return track_cyclones(
    etc,
    max_speed_km_per_day=max_speed_km_per_day,
    min_duration_days=min_duration_days,
    min_endpoint_km=min_endpoint_deg * KM_PER_DEG,
  )


def away_from(
  candidates: pd.DataFrame, others: pd.DataFrame, *, distance_deg: float = 6.0
) -> pd.DataFrame:
  """The candidates with no row of `others` within `distance_deg` at the same `time_index`.

  A tropical cyclone poleward of 20 deg is a closed low too; where both
  detectors find it, the TC label stands and the ETC candidate goes.
  """
  if candidates.empty or others.empty:
    return candidates
  near = np.zeros(len(candidates), bool)
  by_time = dict(tuple(others.groupby("time_index")))
  for i, (t, lat, lon) in enumerate(
    candidates[["time_index", "lat", "lon"]].itertuples(index=False, name=None)
  ):
    other = by_time.get(t)
    if other is not None:
      dist = great_circle_km(lat, lon, other["lat"].to_numpy(), other["lon"].to_numpy())
      near[i] = bool((dist <= distance_deg * KM_PER_DEG).any())
  out = candidates.loc[~near].reset_index(drop=True)
  out.attrs = dict(candidates.attrs)
  return out
