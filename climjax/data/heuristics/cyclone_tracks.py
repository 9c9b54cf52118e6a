"""Joining cyclone candidates into tracks, and keeping the tracks that last.

Tropical cyclones (TECA's gfdl_tc_trajectory) and extratropical cyclones share the
tracker; they differ in the speed limit and in what makes a step count. Candidates
are joined by the time that really elapsed between their snapshots, so reanalyses
sampled at uneven steps (ERA5 extracts 7 and 8 h apart) track like 6-hourly output.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from climjax.data.heuristics import criteria
from climjax.data.heuristics.sphere import great_circle_km

# Steps that differ from each other by more than this fraction of the median are uneven.
IRREGULAR_STEP_TOLERANCE = 0.1
# The default gap allowance, in median steps: uneven sampling joins, a missing snapshot doesn't.
DEFAULT_MAX_GAP_STEPS = 1.5


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


def time_steps_hours(times: Sequence) -> dict[str, float] | None:
  """Smallest, median and largest step (hours) between distinct times; None for fewer than 2.

  The TC detector records this of its dataset's time coordinate in `df.attrs`, so
  the tracker knows the data's own sampling even at times without candidates.
  """
  return _step_summary(np.diff(np.unique(_days(times))))


def _step_summary(gaps_days: np.ndarray) -> dict[str, float] | None:
  if len(gaps_days) == 0:
    return None
  hours = gaps_days * 24.0
  return {"min": float(hours.min()), "median": float(np.median(hours)), "max": float(hours.max())}


def _durations(track: np.ndarray, days: np.ndarray, step_days: float) -> np.ndarray:
  """Days each candidate stands for: half the gap to the track's previous and next points.

  A track's first and last points take the gap on their one side twice; a track
  of one point takes the nominal step. On regular steps every point is one step
  (TECA's count of steps times the step); on uneven ones the sum follows the
  time that elapsed.
  """
  order = np.lexsort((days, track))
  t, d = track[order], days[order]
  same = t[1:] == t[:-1]
  gap = np.where(same, np.diff(d), np.nan)
  before = np.concatenate([[np.nan], gap])
  after = np.concatenate([gap, [np.nan]])
  before = np.where(np.isnan(before), after, before)
  after = np.where(np.isnan(after), before, after)
  weight = np.where(np.isnan(before), step_days, 0.5 * (before + after))
  out = np.empty(len(track))
  out[order] = weight
  return out


def _warn_if_irregular(steps: dict[str, float], max_gap_days: float, long_gaps: int) -> None:
  spread = steps["max"] - steps["min"]
  if spread <= IRREGULAR_STEP_TOLERANCE * steps["median"]:
    return
  message = (
    f"track_cyclones: irregular time steps ({steps['min']:.3g} to {steps['max']:.3g} h, median "
    f"{steps['median']:.3g} h); candidates are joined by the time elapsed between them, across "
    f"gaps of at most {max_gap_days * 24:.3g} h"
  )
  if long_gaps == 1:
    message += "; 1 longer gap between candidate times ends the tracks across it"
  elif long_gaps:
    message += f"; {long_gaps} longer gaps between candidate times end the tracks across them"
  warnings.warn(message, stacklevel=3)


def _track_criteria(tracks: pd.DataFrame) -> pd.DataFrame:
  """Every point of a track carries the criteria skipped on any of its points."""
  skipped = {}
  for track_id, cells in tracks.groupby("track_id")["criteria_skipped"]:
    skipped[track_id] = criteria.joined(
      dict.fromkeys(c for cell in cells for c in criteria.names_of(cell))
    )
  cells = tracks["track_id"].map(skipped)
  out = tracks.assign(criteria_skipped=cells.to_numpy(object))
  if "criteria" in out.columns:
    out["criteria"] = [
      criteria.joined(c for c in criteria.names_of(applied) if c not in criteria.names_of(lost))
      for applied, lost in zip(out["criteria"], out["criteria_skipped"], strict=True)
    ]
  out["reduced"] = out["criteria_skipped"].astype(bool).to_numpy()
  return out


def track_cyclones(
  candidates: pd.DataFrame,
  *,
  max_speed_km_per_day: float = 1600.0,
  min_wind: float = 17.0,
  min_duration_days: float = 2.0,
  max_gap_hours: float | None = None,
  time_step_days: float | None = None,
  min_endpoint_km: float = 0.0,
) -> pd.DataFrame:
  """Joins cyclone candidates into tracks and keeps the tracks that are cyclones.

  A candidate continues a track whose last point is at most `max_gap_hours`
  earlier and at most `max_speed_km_per_day` times the elapsed time away;
  pairs are joined nearest first, each track and each candidate at most once
  per time. The elapsed time comes from the `time` column (datetime64, cftime
  or numbers of days), so uneven steps join like regular ones. The nominal
  step is `time_step_days`, else the median step the detector recorded of its
  dataset (`candidates.attrs["time_steps_hours"]`), else the median step
  between candidate times; `max_gap_hours` defaults to 1.5 nominal steps:
  steps up to half again as long as usual join, while a snapshot missing
  altogether ends a track, as TECA's rule of consecutive steps does. Steps
  that vary by more than 10% of the median are reported in a warning.

  As in TECA, a track is kept if it is a cyclone for at least
  `min_duration_days` in all, where a point counts when its `wind` is at least
  `min_wind` and it has a warm core and a thick core (`warm_core_ok`,
  `thickness_ok`, taken as True where the columns are absent), for the time it
  stands for (half the gaps to its neighbours on the track: one step on
  regular data, as TECA's count of steps times the step). Where the wind is
  unknown (NaN, or no `wind` column: extratropical candidates) the flags alone
  count, so without wind and flags every point counts. A track must also end
  at least `min_endpoint_km` from where it began (TempestExtremes'
  `min_endpoint_dist`; 0 for TCs, which TECA does not test).

  On grids coarser than the detector's reference spacing the grid's peak
  wind falls short of the storm's, so `min_wind` is scaled by the factor
  the TC detector recorded (`candidates.attrs["thresholds"]["wind_scale"]`,
  (1.25 deg / spacing)^0.2; 1 where none is recorded), as the detector
  scales its own thresholds.

  Where the candidates say what they rest on (`criteria_skipped`, as the
  detectors' tables do), each kept point carries the criteria skipped on any
  point of its track, since the track as a whole is judged: a track is
  `reduced` when any of its points is.

  Returns:
    The kept candidates with an integer `track_id` (0, 1, ... in order of
    first appearance), sorted by track and time. `attrs["tracking"]` records
    the nominal step and the gap allowance used (hours) and the steps judged
    for regularity (the data's where recorded, else the candidates');
    `attrs["thresholds"]` the candidates' thresholds with `min_wind` (m/s,
    as applied) and `wind_scale` added.
  """
  required = {"time", "lat", "lon"}
  if not required <= set(candidates.columns):
    raise ValueError(f"candidates need columns {sorted(required)}, have {list(candidates.columns)}")
  thresholds = dict(candidates.attrs.get("thresholds") or {})
  wind_scale = float(thresholds.get("wind_scale", 1.0))
  thresholds.update(wind_scale=wind_scale, min_wind=min_wind * wind_scale)
  if candidates.empty:
    out = candidates.assign(track_id=pd.Series(dtype=np.int64))
    out.attrs = {**candidates.attrs, "thresholds": thresholds}
    return out
  days = _days(candidates["time"].to_numpy())
  times = np.unique(days)
  gaps = np.diff(times)
  steps = candidates.attrs.get("time_steps_hours") or _step_summary(gaps)
  if time_step_days is None:
    time_step_days = steps["median"] / 24 if steps else 1.0
  if max_gap_hours is None:
    max_gap_hours = DEFAULT_MAX_GAP_STEPS * time_step_days * 24
  max_gap_days = max_gap_hours / 24
  reach = max_gap_days * (1 + 1e-6)  # float days of cftime differences
  if steps:
    _warn_if_irregular(steps, max_gap_days, int((gaps > reach).sum()))
  lat = candidates["lat"].to_numpy(np.float64)
  lon = candidates["lon"].to_numpy(np.float64)

  track = np.full(len(candidates), -1, np.int64)
  last_row: list[int] = []  # per track: its latest candidate
  last_day = np.zeros(0)
  for day in times:
    current = np.flatnonzero(days == day)
    open_tracks = np.flatnonzero(last_day >= day - reach)
    if len(open_tracks):
      rows = np.asarray(last_row)[open_tracks]
      dist = great_circle_km(
        lat[rows][:, None], lon[rows][:, None], lat[current][None], lon[current][None]
      )
      within = dist <= max_speed_km_per_day * (day - last_day[open_tracks])[:, None]
      # Nearest pairs first: each storm continues to the closest candidate in reach.
      taken = np.zeros(len(open_tracks), bool)
      for flat in np.argsort(np.where(within, dist, np.inf), axis=None, kind="stable"):
        i, j = np.unravel_index(flat, dist.shape)
        if not within[i, j]:
          break
        if not taken[i] and track[current[j]] < 0:
          track[current[j]], taken[i] = open_tracks[i], True
    for j in current:
      if track[j] < 0:
        track[j] = len(last_row)
        last_row.append(j)
        last_day = np.append(last_day, day)
      else:
        last_row[track[j]] = j
        last_day[track[j]] = day

  wind = (
    candidates["wind"].to_numpy(np.float64)
    if "wind" in candidates.columns
    else np.full(len(candidates), np.nan)
  )
  strong = np.where(np.isnan(wind), True, wind >= thresholds["min_wind"])
  for flag in ("warm_core_ok", "thickness_ok"):
    if flag in candidates.columns:
      strong &= candidates[flag].to_numpy(bool)
  weight = _durations(track, days, time_step_days) * strong
  strong_days = np.bincount(track, weights=weight, minlength=len(last_row))
  keep = strong_days >= min_duration_days - 1e-9
  if min_endpoint_km > 0:
    order = np.lexsort((days, track))  # by track, then time
    first = order[np.unique(track[order], return_index=True)[1]]
    last = order[len(order) - 1 - np.unique(track[order][::-1], return_index=True)[1]]
    keep &= great_circle_km(lat[first], lon[first], lat[last], lon[last]) >= min_endpoint_km
  keep_ids = np.flatnonzero(keep)
  kept = np.isin(track, keep_ids)
  out = candidates.loc[kept].copy()
  # Renumber the kept tracks 0, 1, ... in order of first appearance.
  old = track[kept]
  _, first = np.unique(old, return_index=True)
  order = np.argsort(np.argsort(first))
  out["track_id"] = order[np.searchsorted(np.unique(old), old)]
  out["_days"] = days[kept]
  out = out.sort_values(["track_id", "_days"], kind="stable").drop(columns="_days")
  if "criteria_skipped" in out.columns and len(out):
    out = _track_criteria(out)
  out.attrs = dict(candidates.attrs)
  out.attrs["thresholds"] = thresholds
  out.attrs["tracking"] = {
    "time_step_hours": time_step_days * 24,
    "max_gap_hours": max_gap_hours,
    "time_steps_hours": steps,
  }
  return out.reset_index(drop=True)
