"""Global CAM5-like snapshots with planted, moving events (`generate_fields`), and detector arrays.

`padded_boxes` turns the event table into the ExtremeWeather box layout;
`generate_arrays` gives both as arrays.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import xarray as xr

from climjax.data import variables
from climjax.data.synthetic.background import _background, _NoiseBank, _planetary_waves
from climjax.data.synthetic.global_grid import DEFAULT_START, STEP_HOURS, _grid
from climjax.data.synthetic.planting import AR_MIN_TMQ, _plant_step
from climjax.data.synthetic.thermodynamics import _derived
from climjax.data.synthetic.tracks import _sample_tracks

# Held-out global fields come from seed + this: they never share a field or an event with training.
TEST_SEED_OFFSET = 10_000

EVENT_COLUMNS: tuple[str, ...] = (
    "time", "time_index", "class_id", "class_name", "ymin", "xmin", "ymax", "xmax",
    "lat_south", "lat_north", "lon_west", "lon_east", "lat_center", "lon_center",
    "track_id", "intensity", "wraps",
)  # fmt: skip

# Points per chunk of time steps generated at once: vectorised over time, bounded memory.
_CHUNK_POINTS = 2_000_000


def generate_fields(
  num_times: int,
  *,
  seed: int,
  nlat: int = 768,
  nlon: int = 1152,
  start: int = 0,
  rates: Mapping[str, float] | None = None,
  intensities: Mapping[str, float] | None = None,
) -> tuple[xr.Dataset, pd.DataFrame]:
  """CAM5-like global snapshots with planted, moving TCs, TDs, ETCs (with fronts) and ARs.

  Returns a Dataset with the 16 variables of `variables.EXTREMEWEATHER_CHANNELS`,
  each float32 (time, lat, lon) in physical units with CF attributes, on the grid
  of `latlon_grid(nlat, nlon)`, 6-hourly from DEFAULT_START + `start` steps; and
  the table of events, one row per event per time step, with columns
  `EVENT_COLUMNS`: the time and its index in the Dataset, the class (id from
  `variables.CLASS_IDS`; fronts `variables.FRONT_CLASS_ID` with class_name "WF"),
  the pixel box (ymin, xmin, ymax, xmax; y on the latitude axis, maxima
  exclusive), its edges in degrees (lon_west > lon_east where it crosses 0/360;
  `wraps` then marks the pixel box clipped at the image edge), the centre (for
  ARs the landfall point, for fronts the front's midpoint), the track id (shared
  by the steps of one event; a TC that weakens is the same track classed TD) and
  `intensity`: pressure deficit (Pa) for TD/TC/ETC, TMQ excess on the axis
  (kg/m2) for AR, warm-sector temperature excess (K) for fronts.

  Deterministic per seed, and time step i is the same whatever `start` and
  `num_times` include it: generating steps 0-99 and then 100-199 equals
  generating 0-199 at once: a 768 x 1152 snapshot holds 57 MB, so long runs at
  full resolution are generated (and written) in chunks of steps. Sizes are
  physical (km), so events keep their size on every grid; those narrower than a
  grid cell are widened to about one cell.

  The event climate has knobs per kind (`event_knobs` reads them from a
  config): `rates[kind]` (kinds `RATE_KINDS`: TC, TD, ETC, AR) multiplies how
  many events are born, `intensities[kind]` (`INTENSITY_KINDS`: TC, ETC, AR)
  their amplitude: the pressure deficit of TCs (with their warm core) and
  ETCs, the moisture excess of ARs. A stronger TC spends more of its life
  above 17 m/s, so more of its steps are labelled TC rather than TD. Absent
  kinds, and 1.0, are the default climate, bit for bit; a rate of 2 keeps
  every default event and adds as many again on average (`_sample_tracks`).
  """
  if num_times < 1 or start < 0:
    raise ValueError(f"num_times must be >= 1 and start >= 0, got {num_times}, {start}")
  if nlat < 8 or nlon < 8:
    raise ValueError(f"the grid must be at least 8 x 8, got {nlat} x {nlon}")
  grid = _grid(nlat, nlon)
  noise = _NoiseBank(seed, grid)
  waves = _planetary_waves(seed)
  tracks = _sample_tracks(seed, start, start + num_times, rates, intensities)
  times = DEFAULT_START + np.arange(start, start + num_times) * np.timedelta64(STEP_HOURS, "h")

  out = {
    name: np.empty((num_times, nlat, nlon), np.float32)
    for name in variables.EXTREMEWEATHER_CHANNELS
  }
  rows = []
  chunk = max(1, _CHUNK_POINTS // (nlat * nlon))
  for c0 in range(0, num_times, chunk):
    c1 = min(num_times, c0 + chunk)
    fields = _background(grid, noise, waves, range(start + c0, start + c1), times[c0:c1])
    fields["TMQ_ANOM"] = np.zeros_like(fields["PSL"])
    for t in range(c1 - c0):
      rows += _plant_step(grid, tracks, start + c0 + t, c0 + t, t, fields)
    for name, value in _derived(grid, fields, fields["TMQ_ANOM"]).items():
      out[name][c0:c1] = value
  # Rivers are labelled only where the river is moist enough (TECA: TMQ >= 20 kg/m2).
  rows = [
    row
    for row in rows
    if row["class_name"] != "AR"
    or out["TMQ"][row["time_index"], row["ymin"] : row["ymax"], row["xmin"] : row["xmax"]].max()
    >= AR_MIN_TMQ
  ]

  ds = xr.Dataset(
    {
      name: (("time", "lat", "lon"), out[name], _cf_attrs(name))
      for name in variables.EXTREMEWEATHER_CHANNELS
    },
    coords={
      "time": ("time", times, {"long_name": "time", "standard_name": "time"}),
      "lat": ("lat", grid.lat, {"units": "degrees_north", "long_name": "latitude"}),
      "lon": ("lon", grid.lon, {"units": "degrees_east", "long_name": "longitude"}),
    },
    attrs={
      "title": "Synthetic CAM5-like fields with planted extreme-weather events",
      "source": "climjax.data.synthetic.generate_fields",
      "seed": seed,
      "first_step": start,
      "Conventions": "CF-1.8",
      **{f"{k.lower()}_rate": float(v) for k, v in (rates or {}).items() if v != 1.0},
      **{f"{k.lower()}_intensity": float(v) for k, v in (intensities or {}).items() if v != 1.0},
    },
  )
  events = pd.DataFrame(rows, columns=[c for c in EVENT_COLUMNS if c != "time"])
  events.insert(0, "time", times[events["time_index"].to_numpy(int)])
  events = events.sort_values(["time_index", "class_id", "track_id"], kind="stable")
  events = events.reset_index(drop=True)
  events.attrs = {
    "box_convention": "pixels (ymin, xmin, ymax, xmax), y on latitude, maxima exclusive",
    "intensity_units": "Pa for TD/TC/ETC, kg/m2 for AR, K for WF",
  }
  return ds, events


def _cf_attrs(name: str) -> dict[str, str]:
  v = variables.CAM5_VARIABLES[name]
  return {"units": v.units, "long_name": v.long_name}


def padded_boxes(
  events: pd.DataFrame,
  num_times: int,
  *,
  max_boxes: int = 15,
  classes: tuple[int, ...] = (0, 1, 2, 3),
) -> np.ndarray:
  """Boxes per time step in the ExtremeWeather layout: int32 (num_times, max_boxes, 5).

  Rows are (ymin, xmin, ymax, xmax, class) with maxima exclusive, padded with -1.
  Only `classes` are kept (by default the four ExtremeWeather classes, without
  fronts); where a step has more than `max_boxes` events the largest boxes are
  kept.
  """
  boxes = np.full((num_times, max_boxes, 5), -1, np.int32)
  kept = events[events["class_id"].isin(classes)]
  area = (kept["ymax"] - kept["ymin"]) * (kept["xmax"] - kept["xmin"])
  kept = kept.assign(_area=area).sort_values(["time_index", "_area"], ascending=[True, False])
  for t, group in kept.groupby("time_index", sort=True):
    rows = group[["ymin", "xmin", "ymax", "xmax", "class_id"]].to_numpy(np.int32)[:max_boxes]
    boxes[int(t), : len(rows)] = rows
  return boxes


def generate_arrays(
  num_times: int,
  *,
  seed: int,
  nlat: int = 768,
  nlon: int = 1152,
  start: int = 0,
  max_boxes: int = 15,
  classes: tuple[int, ...] = (0, 1, 2, 3),
  rates: Mapping[str, float] | None = None,
  intensities: Mapping[str, float] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
  """`generate_fields` as arrays for a detector: x float32 (N, nlat, nlon, 16), boxes.

  Channels in `variables.EXTREMEWEATHER_CHANNELS` order (NHWC, physical units);
  boxes int32 (N, max_boxes, 5) from `padded_boxes`.
  """
  ds, events = generate_fields(
    num_times,
    seed=seed,
    nlat=nlat,
    nlon=nlon,
    start=start,
    rates=rates,
    intensities=intensities,
  )
  x = np.stack([ds[name].values for name in variables.EXTREMEWEATHER_CHANNELS], axis=-1)
  return x, padded_boxes(events, num_times, max_boxes=max_boxes, classes=classes)
