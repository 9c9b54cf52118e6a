"""How well heuristic labels find the events the synthetic generator planted.

`score_labels` matches the rows of `labels.label_events` (or of any table in
its layout) against `synthetic.generate_fields`'s event table, per class:
recall, false alarms per snapshot and position error.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from climjax.data.heuristics.sphere import great_circle_km

# Cyclones match when their centres are this close (km); rivers and fronts when
# their boxes overlap.
MATCH_KM: dict[str, float] = {"TD": 300.0, "TC": 300.0, "ETC": 600.0}
SCORE_COLUMNS: tuple[str, ...] = (
    "class_name", "planted", "found", "recall", "false_alarms_per_snapshot",
    "position_error_km", "matched_other_class",
)  # fmt: skip


def _box_centre(lat_s, lat_n, lon_w, lon_e) -> tuple[np.ndarray, np.ndarray]:
  """Centre of boxes given by their edges (lon_e < lon_w where a box crosses 0/360)."""
  width = np.mod(np.asarray(lon_e) - np.asarray(lon_w), 360.0)
  return (np.asarray(lat_s) + np.asarray(lat_n)) / 2, np.mod(np.asarray(lon_w) + width / 2, 360.0)


def _overlap(planted: pd.DataFrame, found: pd.DataFrame) -> np.ndarray:
  """(P, F) whether each planted box intersects each found box (longitudes modulo 360)."""
  lat = (planted["lat_south"].to_numpy()[:, None] <= found["lat_max"].to_numpy()[None]) & (
    found["lat_min"].to_numpy()[None] <= planted["lat_north"].to_numpy()[:, None]
  )
  west = planted["lon_west"].to_numpy()[:, None]
  east = (
    west + np.mod(planted["lon_east"].to_numpy() - planted["lon_west"].to_numpy(), 360.0)[:, None]
  )
  f0, f1 = found["lon_min"].to_numpy()[None], found["lon_max"].to_numpy()[None]
  lon = np.zeros(lat.shape, bool)
  for shift in (-360.0, 0.0, 360.0):
    lon |= (f0 + shift <= east) & (west <= f1 + shift)
  return lat & lon


def _distances(planted: pd.DataFrame, found: pd.DataFrame, class_name: str) -> np.ndarray:
  """(P, F) km between planted and found positions: centres of cyclones, box centres otherwise."""
  if class_name in MATCH_KM:
    p_lat, p_lon = planted["lat_center"].to_numpy(), planted["lon_center"].to_numpy()
    f_lat, f_lon = found["lat"].to_numpy(), found["lon"].to_numpy()
  else:
    p_lat, p_lon = _box_centre(
      planted["lat_south"], planted["lat_north"], planted["lon_west"], planted["lon_east"]
    )
    f_lat, f_lon = _box_centre(
      found["lat_min"], found["lat_max"], found["lon_min"], found["lon_max"]
    )
  return great_circle_km(p_lat[:, None], p_lon[:, None], f_lat[None], f_lon[None])


def _matches(planted: pd.DataFrame, found: pd.DataFrame, class_name: str):
  """(P, F) which found rows match which planted ones, and their distances (km)."""
  dist = _distances(planted, found, class_name)
  if class_name in MATCH_KM:
    return dist <= MATCH_KM[class_name], dist
  return _overlap(planted, found), dist


def score_labels(
  labels: pd.DataFrame,
  events: pd.DataFrame,
  num_snapshots: int,
  *,
  classes: tuple[str, ...] = ("TD", "TC", "ETC", "AR", "WF"),
  min_intensity: dict[str, float] | None = None,
) -> pd.DataFrame:
  """Per class: how many planted and found, recall, false alarms, position error.

  A planted event is found where a label of its class at the same time
  matches it: cyclone centres within `MATCH_KM`, river and front boxes that
  overlap. Recall is the share of planted events found (only those with
  `intensity` >= `min_intensity[class]` where given: events too weak for any
  detector); a false alarm is a label that matches no planted event of its
  class (`matched_other_class` counts those that match one of another class,
  e.g. a TD label on a planted TC). The position error is the median distance
  from each found event to its nearest matching label: centre to centre for
  cyclones, box centre to box centre for rivers and fronts (the generator's
  AR centre is its landfall point, a front's its midpoint).
  """
  min_intensity = min_intensity or {}
  rows = []
  for name in classes:
    planted = events[events["class_name"] == name]
    counted = planted["intensity"].to_numpy() >= min_intensity.get(name, -np.inf)
    planted = planted.assign(_counted=counted)
    found = labels[labels["class_name"] == name]
    others = events[events["class_name"] != name]
    hits, errors, false, other = 0, [], 0, 0
    for t in np.union1d(planted["time_index"].unique(), found["time_index"].unique()):
      p = planted[planted["time_index"] == t]
      f = found[found["time_index"] == t]
      match, dist = _matches(p, f, name)
      # Recall over the events strong enough to count; any planted event excuses a label.
      found_one = match.any(axis=1) & p["_counted"].to_numpy(bool)
      hits += int(found_one.sum())
      errors += [float(dist[i][match[i]].min()) for i in np.flatnonzero(found_one)]
      unmatched = f[~match.any(axis=0)] if len(p) else f
      if len(unmatched):
        # Against every planted event of the other classes, by centre (cyclones) or box.
        o = others[others["time_index"] == t]
        if len(o):
          near = _overlap(o, unmatched)
          if name in MATCH_KM:
            near = great_circle_km(
              o["lat_center"].to_numpy()[:, None], o["lon_center"].to_numpy()[:, None],
              unmatched["lat"].to_numpy()[None], unmatched["lon"].to_numpy()[None],
            ) <= MATCH_KM[name]  # fmt: skip
          other += int(near.any(axis=0).sum())
      false += len(unmatched)
    rows.append({
        "class_name": name,
        "planted": int(counted.sum()),
        "found": len(found),
        "recall": hits / counted.sum() if counted.sum() else np.nan,
        "false_alarms_per_snapshot": false / num_snapshots,
        "position_error_km": float(np.median(errors)) if errors else np.nan,
        "matched_other_class": other,
    })  # fmt: skip
  return pd.DataFrame(rows, columns=list(SCORE_COLUMNS))
