"""Event tracks: detections of one class linked across consecutive snapshots (numpy only).

The tracker is TECA's rule for tropical cyclones made per class: a detection
continues the track whose last position is nearest, if reaching it needs at
most the class's maximum speed (great-circle km per day, times the time
elapsed); pairs are joined nearest first, each track and each detection at
most once per snapshot. A track may miss up to `max_gap` snapshots (the
detector's score can dip below threshold for a frame); the reach then grows
with the elapsed time. Tracks shorter than the class's minimum lifetime are
dropped (their detections get track id -1).

Defaults (`DEFAULT_RULES`), and why:

* TC: 1,600 km/day, >= 2 days: TECA's GFDL tracker (docs/DESIGN.md section 4).
* TD: 1,600 km/day, >= 1 day: depressions are steered by the same flow as
  TCs, but are weaker and shorter lived; TECA's 2 days is a TC persistence rule.
* ETC: 2,700 km/day, >= 1 day: extratropical cyclones ride the westerlies at
  up to ~25-30 m/s (2,200-2,600 km/day), faster than TCs; issue #14's ETC
  heuristic asks for >= 1 day.
* AR: 3,000 km/day, >= 1 day: an AR's centroid moves with its parent cyclone
  and also jumps as the filament grows and shrinks, so it gets the widest
  reach; AR conditions under 24 h are the weakest on the Ralph et al. (2019)
  AR scale, and 1 day removes one-frame blips.

Lifetime is last time minus first time plus one snapshot spacing, so that 8
six-hourly snapshots make 2 days, as in `heuristics.track_cyclones`.
`heuristic_detections` turns the TECA-style heuristic candidates into the same
detections dict, so learned and heuristic tracks come from the same tracker.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from climjax.data.heuristics.sphere import great_circle_km
from climjax.data.variables import CLASS_NAMES


@dataclasses.dataclass(frozen=True)
class TrackRule:
  max_speed_km_per_day: float
  min_duration_days: float


DEFAULT_RULES: dict[str, TrackRule] = {
  "TD": TrackRule(max_speed_km_per_day=1600.0, min_duration_days=1.0),
  "TC": TrackRule(max_speed_km_per_day=1600.0, min_duration_days=2.0),
  "ETC": TrackRule(max_speed_km_per_day=2700.0, min_duration_days=1.0),
  "AR": TrackRule(max_speed_km_per_day=3000.0, min_duration_days=1.0),
}
DEFAULT_MAX_GAP = 1

_DAYS_PER = {
  "day": 1.0, "d": 1.0, "hour": 1 / 24, "hr": 1 / 24, "h": 1 / 24, "minute": 1 / 1440,
  "min": 1 / 1440, "second": 1 / 86400, "sec": 1 / 86400, "s": 1 / 86400,
}  # fmt: skip


def days_per_time_unit(time_units: str) -> float:
  """Days in one unit of CF `time_units` ("hours since ..." -> 1/24).

  Every CF calendar counts time in fixed-length units, so differences of the
  numbers need no calendar.
  """
  unit = time_units.split(" since ")[0].strip().lower()
  key = unit[:-1] if unit.endswith("s") and unit[:-1] in _DAYS_PER else unit
  if key not in _DAYS_PER:
    raise ValueError(f"time units {time_units!r}: expected days, hours, minutes or seconds since")
  return _DAYS_PER[key]


def _days(times, time_units: str) -> np.ndarray:
  return np.asarray(times, np.float64).reshape(-1) * days_per_time_unit(time_units)


def _step(days: np.ndarray, time_step_days: float | None) -> float:
  if time_step_days is not None:
    return float(time_step_days)
  return float(np.median(np.diff(days))) if len(days) > 1 else 0.0


def _link_class(snapshot, lat, lon, days, rule: TrackRule, max_gap: int) -> np.ndarray:
  """Track labels (0, 1, ...) for the detections of one class, in the given order."""
  label = np.full(len(snapshot), -1, np.int64)
  # The tracks that may still continue: label, last detection, that one's snapshot.
  open_label = open_row = open_snap = np.zeros(0, np.int64)
  num_labels = 0
  for s in np.unique(snapshot):
    current = np.flatnonzero(snapshot == s)
    alive = s - open_snap - 1 <= max_gap
    open_label, open_row, open_snap = open_label[alive], open_row[alive], open_snap[alive]
    if len(open_row):
      dist = great_circle_km(
        lat[open_row][:, None], lon[open_row][:, None], lat[current], lon[current]
      )
      reach = rule.max_speed_km_per_day * (days[s] - days[open_snap])
      dist = np.where(dist <= reach[:, None] + 1e-6, dist, np.inf)
      used = np.zeros(len(open_row), bool)
      # Nearest pairs first: each track continues to the closest detection in reach.
      for flat in np.argsort(dist, axis=None, kind="stable"):
        i, j = np.unravel_index(flat, dist.shape)
        if not np.isfinite(dist[i, j]):
          break
        if used[i] or label[current[j]] >= 0:
          continue
        used[i] = True
        label[current[j]] = open_label[i]
        open_row[i], open_snap[i] = current[j], s
    fresh = current[label[current] < 0]
    label[fresh] = num_labels + np.arange(len(fresh))
    num_labels += len(fresh)
    open_label = np.concatenate([open_label, label[fresh]])
    open_row = np.concatenate([open_row, fresh])
    open_snap = np.concatenate([open_snap, np.full(len(fresh), s)])
  return label


def link_tracks(
  detections: Mapping[str, np.ndarray],
  *,
  times: np.ndarray,
  time_units: str,
  class_names: Sequence[str] = CLASS_NAMES,
  rules: Mapping[str, TrackRule] | None = None,
  max_gap: int = DEFAULT_MAX_GAP,
  time_step_days: float | None = None,
) -> np.ndarray:
  """A track id per detection (-1: in no track that lasts the class's minimum).

  `detections` needs `snapshot` (index into `times`), `class_id`, `lat`,
  `lon`; `times` are every processed snapshot in `time_units` (gaps count in
  snapshots of `times`). `rules` maps class names to `TrackRule`s (default
  `DEFAULT_RULES`; a class without a rule is not tracked). Classes never mix.
  Track ids run 0, 1, ... in order of first appearance.
  """
  rules = DEFAULT_RULES if rules is None else rules
  days = _days(times, time_units)
  step = _step(days, time_step_days)
  snapshot = np.asarray(detections["snapshot"], np.int64).reshape(-1)
  class_id = np.asarray(detections["class_id"], np.int64).reshape(-1)
  lat = np.asarray(detections["lat"], np.float64).reshape(-1)
  lon = np.asarray(detections["lon"], np.float64).reshape(-1)
  if np.any(np.diff(days) <= 0):
    raise ValueError("link_tracks: times must increase (one per snapshot, in time order)")
  if len(snapshot) and (snapshot.min() < 0 or snapshot.max() >= len(days)):
    raise ValueError(f"link_tracks: snapshot indices must lie in [0, {len(days)})")
  group = np.full(len(snapshot), -1, np.int64)  # kept track, numbered per class for now
  first_snap, first_row = [], []
  for c in np.unique(class_id):
    name = class_names[c] if 0 <= c < len(class_names) else str(c)
    if name not in rules:
      continue
    rule = rules[name]
    rows = np.flatnonzero(class_id == c)
    rows = rows[np.argsort(snapshot[rows], kind="stable")]
    label = _link_class(snapshot[rows], lat[rows], lon[rows], days, rule, max_gap)
    order = np.argsort(label, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(label[order]) != 0])
    snaps = snapshot[rows[order]]
    first = np.minimum.reduceat(snaps, starts)
    lifetime = days[np.maximum.reduceat(snaps, starts)] - days[first] + step
    kept = lifetime >= rule.min_duration_days - 1e-9
    # label -> kept-track number (-1 for dropped tracks); labels are 0..n-1 in order.
    number = np.where(kept, len(first_snap) + np.cumsum(kept) - 1, -1)
    group[rows] = number[label]
    first_snap.extend(first[kept])
    first_row.extend(np.minimum.reduceat(rows[order], starts)[kept])
  # Renumber 0, 1, ... by first appearance (first snapshot, then first row).
  rank = np.empty(len(first_snap), np.int64)
  rank[np.lexsort((np.asarray(first_row), np.asarray(first_snap)))] = np.arange(len(first_snap))
  return np.where(group >= 0, rank[np.maximum(group, 0)] if len(rank) else -1, -1)


def lifetimes_days(
  snapshot: np.ndarray,
  track_ids: np.ndarray,
  *,
  times: np.ndarray,
  time_units: str,
  time_step_days: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
  """(track ids, lifetime in days) of every track (ids >= 0), as `link_tracks` measures it."""
  days = _days(times, time_units)
  step = _step(days, time_step_days)
  snapshot = np.asarray(snapshot, np.int64).reshape(-1)
  track_ids = np.asarray(track_ids, np.int64).reshape(-1)
  kept = track_ids >= 0
  ids = np.unique(track_ids[kept])
  if not len(ids):
    return ids, np.zeros(0)
  t = days[snapshot[kept]]
  index = np.searchsorted(ids, track_ids[kept])
  first = np.full(len(ids), np.inf)
  last = np.full(len(ids), -np.inf)
  np.minimum.at(first, index, t)
  np.maximum.at(last, index, t)
  return ids, last - first + step


def heuristic_detections(
  tropical_cyclones=None,
  atmospheric_rivers=None,
  extratropical_cyclones=None,
  *,
  class_names: Sequence[str] = CLASS_NAMES,
  snapshot_offset: int = 0,
) -> dict[str, np.ndarray]:
  """The detections dict of TECA-style heuristic candidates, for `link_tracks` / `write_detections`.

  `tropical_cyclones`: the DataFrame of `heuristics.detect_tropical_cyclones`
  (every candidate becomes a TC; TECA's wind and warm-core persistence rule is
  `heuristics.track_cyclones`, not applied here so that learned and heuristic
  detections go through one tracker); `atmospheric_rivers`: that of
  `heuristics.detect_atmospheric_rivers` (class AR); `extratropical_cyclones`:
  any frame with the same columns (`time_index`, `lat`, `lon`, box edges in
  degrees), e.g. an ETC heuristic's (class ETC). Snapshots are the
  candidates' `time_index` plus `snapshot_offset` (the position of the
  dataset's first time among all snapshots processed). Scores are 1.
  """
  parts = []
  frames = (tropical_cyclones, "TC"), (atmospheric_rivers, "AR"), (extratropical_cyclones, "ETC")
  for frame, name in frames:
    if frame is None or len(frame) == 0:
      continue
    if name not in class_names:
      raise ValueError(f"heuristic_detections: class {name} not in {list(class_names)}")
    n = len(frame)
    part = {
      "snapshot": frame["time_index"].to_numpy(np.int64) + snapshot_offset,
      "class_id": np.full(n, list(class_names).index(name), np.int32),
      "score": np.ones(n, np.float32),
    }
    for key in ("lat", "lon", "lat_min", "lat_max", "lon_min", "lon_max"):
      part[key] = frame[key].to_numpy(np.float64)
    parts.append(part)
  keys = ("snapshot", "class_id", "score", "lat", "lon", "lat_min", "lat_max", "lon_min",
          "lon_max")  # fmt: skip
  if not parts:
    empty = {"snapshot": np.int64, "class_id": np.int32, "score": np.float32}
    return {k: np.zeros(0, empty.get(k, np.float64)) for k in keys}
  out = {k: np.concatenate([p[k] for p in parts]) for k in keys}
  order = np.argsort(out["snapshot"], kind="stable")
  return {k: v[order] for k, v in out.items()}
