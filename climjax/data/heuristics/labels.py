"""Heuristic labels of every class at once: TD, TC, ETC and AR boxes for the detector, fronts.

`label_events` runs every detector on a dataset and gives one table in the
layout of the synthetic generator's events, so labels made from netCDF and
events planted by `climjax.data.synthetic` are read (and compared) the same way.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from climjax.data import variables
from climjax.data.heuristics import criteria
from climjax.data.heuristics.atmospheric_rivers import detect_atmospheric_rivers
from climjax.data.heuristics.cyclone_tracks import track_cyclones
from climjax.data.heuristics.extratropical_cyclones import (
  ETC_CRITERIA,
  away_from,
  detect_extratropical_cyclones,
  track_extratropical_cyclones,
)
from climjax.data.heuristics.fronts import detect_fronts
from climjax.data.heuristics.tropical_cyclones import TC_CRITERIA, detect_tropical_cyclones

LABEL_COLUMNS: tuple[str, ...] = (
    "time", "time_index", "class_id", "class_name", "lat", "lon", "y", "x", "ymin", "xmin",
    "ymax", "xmax", "lat_min", "lon_min", "lat_max", "lon_max", "track_id",
    *criteria.CRITERIA_COLUMNS,
)  # fmt: skip

# What each class's label rests on (`criteria`): a TD is the TC detector's relaxed closed low
# and vorticity below TC-strength wind; rivers and fronts need nothing beyond TMQ and T850 /
# TREFHT (the front's land-sea contrast is skipped where no land fraction is known).
CLASS_CRITERIA: dict[str, tuple[str, ...]] = {
  "TC": TC_CRITERIA,
  "TD": ("closed_low", "vorticity", "wind"),
  "ETC": ETC_CRITERIA,
  "AR": ("tmq_threshold", "length", "width", "landfall"),
  "WF": ("thermal_front", "length"),
}

LABEL_CLASSES: tuple[str, ...] = variables.CLASS_NAMES_WITH_FRONTS  # TD, TC, ETC, AR, WF

# Tropical depressions: tropical lows below TC strength, found by the TC detector with
# its thresholds relaxed this far (closed by 100 Pa, cyclonic at 1e-4 1/s; on coarse grids
# these and the TC thresholds are scaled as the detector scales its own).
TD_VORTICITY = 1.0e-4
TD_PSL_RISE_PA = 100.0
TD_MAX_ABS_LAT = 30.0
TD_MAX_WIND = 17.0  # m/s: tropical-storm strength
TC_VORTICITY = 1.6e-4
TC_PSL_RISE_PA = 400.0
ETC_TRACK_ID_OFFSET = 1_000_000  # ETC track ids follow on from the TCs'


def label_rows(df: pd.DataFrame, class_name: str, *, edges: str, track: bool) -> pd.DataFrame:
  """One detector's rows as label rows (`LABEL_COLUMNS`); `edges` says how its pixel box is given.

  "fractional": fractional pixel indices of the extent (cyclones), +0.5 to pixel edges;
  "inclusive": inclusive pixel indices (regions), max + 1 to exclusive edges.
  """
  shift_min, shift_max = (0.5, 0.5) if edges == "fractional" else (0.0, 1.0)
  class_id = variables.FRONT_CLASS_ID if class_name == "WF" else variables.CLASS_IDS[class_name]
  return pd.DataFrame({
      "time": df["time"].to_numpy(),
      "time_index": df["time_index"].to_numpy(np.int64),
      "class_id": class_id,
      "class_name": class_name,
      "lat": df["lat"].to_numpy(np.float64),
      "lon": df["lon"].to_numpy(np.float64),
      "y": df["y"].to_numpy(np.float64),
      "x": df["x"].to_numpy(np.float64),
      "ymin": df["ymin"].to_numpy(np.float64) + shift_min,
      "xmin": df["xmin"].to_numpy(np.float64) + shift_min,
      "ymax": df["ymax"].to_numpy(np.float64) + shift_max,
      "xmax": df["xmax"].to_numpy(np.float64) + shift_max,
      "lat_min": df["lat_min"].to_numpy(np.float64),
      "lon_min": df["lon_min"].to_numpy(np.float64),
      "lat_max": df["lat_max"].to_numpy(np.float64),
      "lon_max": df["lon_max"].to_numpy(np.float64),
      "track_id": df["track_id"].to_numpy(np.int64) if track else -1,
      **_criteria_of(df, class_name),
  }, columns=list(LABEL_COLUMNS))  # fmt: skip


def _criteria_of(df: pd.DataFrame, class_name: str) -> dict[str, np.ndarray]:
  """The criteria columns of one class's rows, kept to the criteria that class's labels use.

  A detector's table without them (rivers, fronts) rests on `CLASS_CRITERIA`
  less what its `attrs["skipped_criteria"]` says it skipped.
  """
  wanted = CLASS_CRITERIA[class_name]
  if not set(criteria.CRITERIA_COLUMNS) <= set(df.columns):
    skipped = [
      "land_sea_contrast" if s.startswith("land-sea") else s.split(" ")[0]
      for s in df.attrs.get("skipped_criteria", [])
    ]
    return criteria.columns(len(df), wanted, skipped)

  def kept(cells) -> list[str]:
    return [criteria.joined(c for c in criteria.names_of(cell) if c in wanted) for cell in cells]

  applied, lost = kept(df["criteria"]), kept(df["criteria_skipped"])
  return {
    "criteria": np.asarray(applied, dtype=object),
    "criteria_skipped": np.asarray(lost, dtype=object),
    "reduced": np.asarray([bool(k) for k in lost], dtype=bool),
  }


def _with_pixel_centre(df: pd.DataFrame, ds: xr.Dataset) -> pd.DataFrame:
  """Rivers carry no fractional centre: their area-weighted centre on the grid."""
  lat = ds["lat"].values.astype(np.float64)
  lon = ds["lon"].values.astype(np.float64)
  y = np.interp(df["lat"].to_numpy(np.float64), lat, np.arange(len(lat), dtype=np.float64))
  x = np.mod(df["lon"].to_numpy(np.float64) - lon[0], 360.0) / float(np.median(np.diff(lon)))
  return df.assign(y=y, x=x)


def label_events(
  ds: xr.Dataset,
  *,
  classes: tuple[str, ...] = LABEL_CLASSES,
  land_fraction: np.ndarray | xr.DataArray | None = None,
  require_all_criteria: bool = False,
  ar_mode: str = "auto",
) -> pd.DataFrame:
  """The heuristic labels of `classes` at every time of `ds`, one row per event per time.

  - TC: candidates of `detect_tropical_cyclones` (TECA's thresholds) on the
    tracks `track_cyclones` keeps (a cyclone for 2 days: the files need them).
  - ETC: `detect_extratropical_cyclones` on `track_extratropical_cyclones`'
    tracks, except within 6 deg of a TC (a TC poleward of 20 deg is a closed
    low too: its TC label stands).
  - TD: the TC detector's candidates with its thresholds relaxed to
    `TD_VORTICITY` and `TD_PSL_RISE_PA`, within `TD_MAX_ABS_LAT` of the
    equator, with winds below `TD_MAX_WIND` (tropical-storm strength), and
    not within 6 deg of a TC or ETC label.
  - AR: `detect_atmospheric_rivers` (its `mode` is `ar_mode`); WF:
    `detect_fronts` (both with the land fraction `land_fraction`, else the
    dataset's LANDFRAC, else `landsea`).

  The TC detector runs once, relaxed; the TC candidates are those of its rows
  that meet TECA's thresholds, exactly what a strict run finds.

  Returns:
    Columns `LABEL_COLUMNS`: the class (ids of `variables.CLASS_IDS`, fronts
    `variables.FRONT_CLASS_ID`), the centre in degrees and as fractional
    pixel indices (`y`, `x`; for fronts a point on the front), the box in
    pixel edges (maxima exclusive, x continuing past the seam of a global
    grid, as the synthetic events' boxes) and in degrees (lon_max = lon_min +
    width), the track id (cyclones; -1 otherwise) and what the label rests on
    (`criteria.CRITERIA_COLUMNS`, kept to the class's `CLASS_CRITERIA`: a TC
    track is `reduced` where any of its points skipped a criterion). Sorted
    by time and class. `df.attrs["skipped_criteria"]` lists what the
    detectors skipped, `df.attrs["criteria"]` counts reduced labels per class
    (`criteria.summary`).

  With `require_all_criteria` a dataset lacking a criterion's variables is
  refused (DataError, one line naming them) and labels that skipped a
  criterion (a cyclone whose wind could not be measured) are left out.
  """
  unknown = set(classes) - set(LABEL_CLASSES)
  if unknown:
    raise ValueError(f"classes must be among {LABEL_CLASSES}, got {sorted(unknown)}")
  parts, skipped = [], []
  tc = etc = pd.DataFrame(columns=["time_index", "lat", "lon"])
  if {"TD", "TC", "ETC"} & set(classes):
    candidates = detect_tropical_cyclones(
      ds,
      vorticity_threshold=TD_VORTICITY,
      psl_rise_pa=TD_PSL_RISE_PA,
      require_all_criteria=require_all_criteria,
    )
    skipped += candidates.attrs["skipped_criteria"]
    vorticity = candidates["vorticity"].to_numpy(np.float64)
    used = candidates.attrs["thresholds"]
    strict = candidates[
      (np.isnan(vorticity) | (vorticity >= TC_VORTICITY * used["vorticity_scale"]))
      & (candidates["psl_rise"].to_numpy(np.float64) >= TC_PSL_RISE_PA * used["psl_rise_scale"])
    ].reset_index(drop=True)
    strict.attrs = dict(candidates.attrs)
    tc = track_cyclones(strict)
    if "TC" in classes:
      parts.append(label_rows(tc, "TC", edges="fractional", track=True))
  if {"TD", "ETC"} & set(classes):
    etc = away_from(track_extratropical_cyclones(detect_extratropical_cyclones(ds)), tc)
    if "ETC" in classes:
      # Track ids of their own, after those of the TCs.
      etc_rows = label_rows(etc, "ETC", edges="fractional", track=True)
      parts.append(etc_rows.assign(track_id=etc_rows["track_id"] + ETC_TRACK_ID_OFFSET))
  if "TD" in classes:
    wind = candidates["wind"].to_numpy(np.float64)
    weak = candidates[
      (np.abs(candidates["lat"].to_numpy(np.float64)) <= TD_MAX_ABS_LAT)
      & (np.isnan(wind) | (wind < TD_MAX_WIND))
    ]
    near = pd.concat([tc[["time_index", "lat", "lon"]], etc[["time_index", "lat", "lon"]]])
    parts.append(label_rows(away_from(weak, near), "TD", edges="fractional", track=False))
  if "AR" in classes:
    rivers = detect_atmospheric_rivers(ds, mode=ar_mode, land_fraction=land_fraction)
    parts.append(label_rows(_with_pixel_centre(rivers, ds), "AR", edges="inclusive", track=False))
  if "WF" in classes:
    fronts = detect_fronts(ds, land_fraction=land_fraction)
    if require_all_criteria and fronts.attrs["skipped_criteria"]:
      criteria.refuse(ds, "detect_fronts", {"land_sea_contrast": ("LANDFRAC",)})
    skipped += fronts.attrs["skipped_criteria"]
    parts.append(label_rows(fronts, "WF", edges="inclusive", track=False))
  parts = [p for p in parts if len(p)]
  if parts:
    labels = pd.concat(parts, ignore_index=True)
  else:
    labels = pd.DataFrame(columns=list(LABEL_COLUMNS))
  labels = labels.sort_values(["time_index", "class_id"], kind="stable").reset_index(drop=True)
  if require_all_criteria:
    labels = labels[~labels["reduced"].to_numpy(bool)].reset_index(drop=True)
  labels.attrs["skipped_criteria"] = list(dict.fromkeys(skipped))
  labels.attrs["criteria"] = criteria.summary(labels)
  return labels
