"""Joining cyclone candidates into tracks, and keeping the tracks that last.

Tropical cyclones (TECA's gfdl_tc_trajectory) and extratropical cyclones share the
tracker; they differ in the speed limit and in what makes a step count.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from climjax.data.heuristics.sphere import great_circle_km


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
  min_endpoint_km: float = 0.0,
) -> pd.DataFrame:
  """Joins cyclone candidates into tracks and keeps the tracks that are cyclones.

  Candidates at consecutive times (`time_step_days` apart, by default the
  smallest spacing between candidate times) are joined nearest pair first
  while their distance is at most `max_speed_km_per_day` times the step. As in
  TECA, a track is kept if it is a cyclone for at least `min_duration_days` in
  all (steps times the step), where a step counts when its `wind` is at least
  `min_wind` and it has a warm core and a thick core (`warm_core_ok`,
  `thickness_ok`, taken as True where the columns are absent). Where the wind
  is unknown (NaN, or no `wind` column: extratropical candidates) the flags
  alone count, so without wind and flags every step counts. A track must also
  end at least `min_endpoint_km` from where it began (TempestExtremes'
  `min_endpoint_dist`; 0 for TCs, which TECA does not test).

  Returns:
    The kept candidates with an integer `track_id` (0, 1, ... in order of
    first appearance), sorted by track and time.
  """
  required = {"time", "lat", "lon"}
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

  wind = (
    candidates["wind"].to_numpy(np.float64)
    if "wind" in candidates.columns
    else np.full(len(candidates), np.nan)
  )
  strong = np.where(np.isnan(wind), True, wind >= min_wind)
  for flag in ("warm_core_ok", "thickness_ok"):
    if flag in candidates.columns:
      strong &= candidates[flag].to_numpy(bool)
  strong_days = np.bincount(track, weights=strong.astype(np.float64)) * time_step_days
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
  out.attrs = dict(candidates.attrs)
  return out.reset_index(drop=True)
