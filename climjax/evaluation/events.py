"""The detection and track tables on disk: `detections.nc` / `tracks.nc` and their CSV twins.

A run of the detector (or the TECA-style heuristics) over years of files ends
as one table of detections: time, class, score, box centre and box edges in
degrees. It is written as a CF-1.8 discrete sampling geometry a climate
scientist opens with xarray, and as CSV for everyone else:

* `detections.nc`: featureType "point", one record per detection along `obs`,
  plus `snapshot_time(snapshot)`, every time processed (also those without a
  detection, so that empty months and years count as zero), and the input
  grid `grid_lat`, `grid_lon` (for frequency maps on it).
* `tracks.nc`: featureType "trajectory", the detections kept in tracks as a
  contiguous ragged array (`rowSize` per `trajectory`, sorted by track, then
  time).

Box longitudes: `lon_min` lies in [0, 360) and `lon_max = lon_min + width`,
so `lon_max` exceeds 360 for a box across the 0/360 seam (the heuristics'
convention). Times are numbers in CF `units` on a CF `calendar` (cftime).
Files are written under a temporary name and renamed into place.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
from collections.abc import Mapping, Sequence

import cftime
import netCDF4
import numpy as np
import pandas as pd

from climjax.data.errors import DataError
from climjax.data.variables import CLASS_NAMES
from climjax.evaluation import tracking

COLUMNS: tuple[str, ...] = (
  "snapshot", "class_id", "score", "lat", "lon", "lat_min", "lat_max", "lon_min", "lon_max",
)  # fmt: skip
_EDGES = {
  "lat_min": ("degrees_north", "southern edge of the detection box"),
  "lat_max": ("degrees_north", "northern edge of the detection box"),
  "lon_min": ("degrees_east", "western edge of the detection box, in [0, 360)"),
  "lon_max": ("degrees_east", "eastern edge of the detection box, lon_min + width (may pass 360)"),
}
PathLike = str | os.PathLike


@dataclasses.dataclass(frozen=True)
class Detections:
  """A detections file in memory: one entry per detection in the arrays, plus the run's context."""

  snapshot: np.ndarray  # int, index into `times`
  class_id: np.ndarray
  score: np.ndarray
  lat: np.ndarray
  lon: np.ndarray
  lat_min: np.ndarray
  lat_max: np.ndarray
  lon_min: np.ndarray
  lon_max: np.ndarray
  times: np.ndarray  # every processed snapshot, in `time_units` on `calendar`
  time_units: str
  calendar: str
  lats: np.ndarray  # the input grid
  lons: np.ndarray
  class_names: tuple[str, ...]
  attrs: dict
  path: str = ""

  def __len__(self) -> int:
    return len(self.snapshot)

  @property
  def time(self) -> np.ndarray:
    """The numeric time of each detection."""
    return self.times[self.snapshot]

  def columns(self) -> dict[str, np.ndarray]:
    """The detections dict that `write_detections` and `tracking.link_tracks` take."""
    return {k: getattr(self, k) for k in COLUMNS}

  def dates(self) -> np.ndarray:
    """Every snapshot time as a cftime datetime."""
    return to_dates(self.times, self.time_units, self.calendar)


def to_dates(times, time_units: str, calendar: str) -> np.ndarray:
  """Numeric CF times as cftime datetimes (any CF calendar)."""
  times = np.asarray(times, np.float64)
  if times.size == 0:
    return np.zeros(0, object)
  dates = cftime.num2date(times, time_units, calendar, only_use_cftime_datetimes=True)
  return np.asarray(dates, dtype=object).reshape(times.shape)


def _checked_times(times) -> np.ndarray:
  times = np.asarray(times, np.float64).reshape(-1)
  if not np.all(np.isfinite(times)) or np.any(np.diff(times) <= 0):
    raise ValueError("times must be finite and increasing: one per snapshot, in time order")
  return times


def _checked(detections: Mapping, num_snapshots: int, num_classes: int) -> dict[str, np.ndarray]:
  """The columns typed and validated, box longitudes normalised (order kept)."""
  missing = [k for k in COLUMNS if k not in detections]
  if missing:
    raise ValueError(f"detections lack {missing}; need {list(COLUMNS)}")
  cols = {k: np.asarray(detections[k]).reshape(-1) for k in COLUMNS}
  lengths = {k: len(v) for k, v in cols.items()}
  if len(set(lengths.values())) > 1:
    raise ValueError(f"detection arrays differ in length: {lengths}")
  cols["snapshot"] = cols["snapshot"].astype(np.int64)
  cols["class_id"] = cols["class_id"].astype(np.int32)
  for k in COLUMNS[2:]:
    cols[k] = cols[k].astype(np.float64)
  if np.any((cols["snapshot"] < 0) | (cols["snapshot"] >= num_snapshots)):
    raise ValueError(f"detections: snapshot indices must lie in [0, {num_snapshots})")
  if np.any((cols["class_id"] < 0) | (cols["class_id"] >= num_classes)):
    raise ValueError(f"detections: class_id must lie in [0, {num_classes}) (the class names)")
  if np.any(np.abs(cols["lat"]) > 90) or not np.all(np.isfinite(cols["lat"])):
    raise ValueError("detections: lat must be finite degrees north in [-90, 90]")
  width = np.mod(cols["lon_max"] - cols["lon_min"], 360.0)
  width = np.where((width == 0) & (cols["lon_max"] != cols["lon_min"]), 360.0, width)
  cols["lon_min"] = np.mod(cols["lon_min"], 360.0)
  cols["lon_max"] = cols["lon_min"] + width
  cols["lon"] = np.mod(cols["lon"], 360.0)
  return cols


def _global_attrs(title: str, feature_type: str, attrs: Mapping | None) -> dict:
  now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
  out = {
    "Conventions": "CF-1.8",
    "featureType": feature_type,
    "title": title,
    "institution": "climjax",
    "source": "climjax",
    "history": f"{now} written by climjax.evaluation.events",
    "references": "Racah et al. (2017), ExtremeWeather; TECA (Prabhat et al. 2012)",
    "comment": "box longitudes: lon_min in [0, 360), lon_max = lon_min + width",
  }
  for key, value in (attrs or {}).items():
    if value is None:
      continue
    if not isinstance(value, str | int | float | np.number):
      value = json.dumps(value, default=str, sort_keys=True)
    out[key] = value
  if attrs and "command" in attrs:
    out["history"] += f"; {attrs['command']}"
  return out


def _var(nc, name, values, dims, dtype, **attrs):
  v = nc.createVariable(name, dtype, dims)
  v.setncatts(attrs)
  v[:] = values
  return v


def _time_attrs(time_units: str, calendar: str, long_name: str) -> dict:
  return {"standard_name": "time", "long_name": long_name, "units": time_units,
          "calendar": calendar}  # fmt: skip


def _class_attrs(class_names: Sequence[str]) -> dict:
  bad = [n for n in class_names if not n or any(c.isspace() for c in n)]
  if bad:
    raise ValueError(f"class names must be single words for CF flag_meanings, got {bad}")
  return {"long_name": "event class", "flag_values": np.arange(len(class_names), dtype=np.int32),
          "flag_meanings": " ".join(class_names)}  # fmt: skip


def _write_box_columns(nc, cols: Mapping, dim: str, coordinates: str, class_attrs: dict | None):
  if class_attrs is not None:
    _var(nc, "class_id", cols["class_id"], (dim,), "i4", coordinates=coordinates, **class_attrs)
  _var(nc, "score", cols["score"], (dim,), "f4", units="1", coordinates=coordinates,
       long_name="detection score: P(object) * P(class | object); 1 for heuristic detections")  # fmt: skip
  for name, (units, long_name) in _EDGES.items():
    # The edges are latitudes / longitudes (not coordinates): CF checkers want the standard_name.
    standard_name = "latitude" if name.startswith("lat") else "longitude"
    _var(nc, name, cols[name], (dim,), "f8", units=units, long_name=long_name,
         standard_name=standard_name, coordinates=coordinates)  # fmt: skip
  _var(nc, "snapshot_index", cols["snapshot"], (dim,), "i4", units="1",
       long_name="index of the detection's time in snapshot_time")  # fmt: skip


def _write_snapshots_and_grid(nc, times, time_units, calendar, lats, lons):
  nc.createDimension("snapshot", len(times))
  nc.createDimension("grid_lat", len(lats))
  nc.createDimension("grid_lon", len(lons))
  _var(nc, "snapshot_time", times, ("snapshot",), "f8",
       **_time_attrs(time_units, calendar, "time of every snapshot processed"))  # fmt: skip
  _var(nc, "grid_lat", lats, ("grid_lat",), "f8", units="degrees_north",
       standard_name="latitude", long_name="latitude of the input grid")  # fmt: skip
  _var(nc, "grid_lon", lons, ("grid_lon",), "f8", units="degrees_east",
       standard_name="longitude", long_name="longitude of the input grid")  # fmt: skip


def _atomic(path: str, write) -> str:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f"{path}.tmp-{os.getpid()}"
  try:
    write(tmp)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
  return path


def _write_csv(path: str, cols: Mapping, dates: np.ndarray, class_names, lead: dict) -> str:
  table = pd.DataFrame({
    **lead,
    "time": [d.isoformat() for d in dates],
    "snapshot": cols["snapshot"],
    "class_id": cols["class_id"],
    "class": [class_names[c] for c in cols["class_id"]],
    **{k: cols[k] for k in COLUMNS[2:]},
  })  # fmt: skip
  return _atomic(path, lambda tmp: table.to_csv(tmp, index=False, float_format="%.6g"))


def write_detections(
  out_dir: PathLike,
  detections: Mapping[str, np.ndarray],
  *,
  times: np.ndarray,
  time_units: str,
  calendar: str,
  lats: np.ndarray,
  lons: np.ndarray,
  class_names: Sequence[str] = CLASS_NAMES,
  attrs: Mapping | None = None,
) -> tuple[str, str]:
  """Writes `out_dir/detections.nc` (CF point DSG) and `out_dir/detections.csv`.

  `detections` holds equal-length arrays `COLUMNS`; `times` every processed
  snapshot (numbers in `time_units` on `calendar`), so that periods without
  events count; `lats`, `lons` the input grid; `attrs` global attributes
  (checkpoint, config, source, command; non-strings stored as JSON).
  Detections are stored in snapshot order (stable). Returns both paths.
  """
  times = _checked_times(times)
  cols = _checked(detections, len(times), len(class_names))
  order = np.argsort(cols["snapshot"], kind="stable")
  cols = {k: v[order] for k, v in cols.items()}
  out_dir = os.fspath(out_dir)
  coordinates = "time lat lon"

  def write(tmp):
    with netCDF4.Dataset(tmp, "w", format="NETCDF4") as nc:
      nc.setncatts(_global_attrs("climjax detections", "point", attrs))
      nc.createDimension("obs", len(cols["snapshot"]))
      _var(nc, "time", times[cols["snapshot"]], ("obs",), "f8",
           **_time_attrs(time_units, calendar, "time of the detection"))  # fmt: skip
      _var(nc, "lat", cols["lat"], ("obs",), "f8", units="degrees_north",
           standard_name="latitude", long_name="latitude of the box centre")  # fmt: skip
      _var(nc, "lon", cols["lon"], ("obs",), "f8", units="degrees_east",
           standard_name="longitude", long_name="longitude of the box centre")  # fmt: skip
      _write_box_columns(nc, cols, "obs", coordinates, _class_attrs(class_names))
      _write_snapshots_and_grid(nc, times, time_units, calendar, np.asarray(lats), np.asarray(lons))

  nc_path = _atomic(os.path.join(out_dir, "detections.nc"), write)
  dates = to_dates(times[cols["snapshot"]], time_units, calendar)
  csv_path = _write_csv(os.path.join(out_dir, "detections.csv"), cols, dates, class_names, {})
  return nc_path, csv_path


def _resolve(path: PathLike, name: str) -> str:
  path = os.fspath(path)
  if os.path.isdir(path):
    path = os.path.join(path, name)
  if not os.path.exists(path):
    raise DataError(path, f"no such file (expected a run directory or its {name})")
  return path


def _open(path: str, feature_type: str, needed: Sequence[str]) -> netCDF4.Dataset:
  try:
    nc = netCDF4.Dataset(path)
  except OSError as e:
    raise DataError(path, f"not a netCDF file ({e})") from None
  kind = getattr(nc, "featureType", None)
  lacking = [v for v in needed if v not in nc.variables]
  if kind != feature_type or lacking:
    nc.close()
    what = "detections" if feature_type == "point" else "tracks"
    raise DataError(path, f"not a climjax {what} file (featureType {kind!r}, lacks {lacking})")
  return nc


def _common(nc, path: str) -> dict:
  t = nc["snapshot_time"]
  return {
    "times": np.asarray(t[:], np.float64),
    "time_units": t.units,
    "calendar": getattr(t, "calendar", "standard"),
    "lats": np.asarray(nc["grid_lat"][:], np.float64),
    "lons": np.asarray(nc["grid_lon"][:], np.float64),
    "class_names": tuple(nc["class_id"].flag_meanings.split()),
    "attrs": {k: nc.getncattr(k) for k in nc.ncattrs()},
    "path": path,
  }


def _column(nc, name: str) -> np.ndarray:
  values = np.ma.filled(nc[name][:], np.nan)
  return np.asarray(values, np.int64 if name == "snapshot_index" else np.float64)


def read_detections(path: PathLike) -> Detections:
  """Reads `detections.nc`, given the file or the run directory holding it."""
  path = _resolve(path, "detections.nc")
  needed = ("time", "lat", "lon", "class_id", "score", "snapshot_index", "snapshot_time",
            "grid_lat", "grid_lon", *_EDGES)  # fmt: skip
  with _open(path, "point", needed) as nc:
    cols = {k: _column(nc, k) for k in ("lat", "lon", "score", *_EDGES)}
    return Detections(
      snapshot=_column(nc, "snapshot_index"),
      class_id=np.asarray(nc["class_id"][:], np.int64),
      **cols,
      **_common(nc, path),
    )


def write_tracks(
  out_dir: PathLike,
  detections: Mapping[str, np.ndarray],
  track_ids: np.ndarray,
  *,
  times: np.ndarray,
  time_units: str,
  calendar: str,
  lats: np.ndarray | None = None,
  lons: np.ndarray | None = None,
  class_names: Sequence[str] = CLASS_NAMES,
  attrs: Mapping | None = None,
  time_step_days: float | None = None,
) -> tuple[str, str]:
  """Writes `out_dir/tracks.nc` (CF trajectory DSG, contiguous ragged) and `tracks.csv`.

  `track_ids` (one per detection, -1: in no track) come from
  `tracking.link_tracks`; detections with -1 are left out. Per trajectory:
  `trajectory_id`, `rowSize`, `class_id`, `lifetime` (days; last minus first
  time plus one snapshot spacing, `time_step_days` by default the median).
  `times`, `lats`, `lons` as for `write_detections` (the grid may be left out).
  """
  times = _checked_times(times)
  track_ids = np.asarray(track_ids, np.int64).reshape(-1)
  cols = _checked(detections, len(times), len(class_names))
  if len(track_ids) != len(cols["snapshot"]):
    raise ValueError(f"write_tracks: {len(track_ids)} track ids for {len(cols['snapshot'])} rows")
  kept = np.flatnonzero(track_ids >= 0)
  kept = kept[np.lexsort((cols["snapshot"][kept], track_ids[kept]))]
  cols = {**{k: v[kept] for k, v in cols.items()}, "track_id": track_ids[kept]}
  ids, first, sizes = np.unique(cols["track_id"], return_index=True, return_counts=True)
  lifetime = tracking.lifetimes_days(
    cols["snapshot"], cols["track_id"], times=times, time_units=time_units,
    time_step_days=time_step_days,
  )[1]  # fmt: skip
  out_dir = os.fspath(out_dir)

  def write(tmp):
    with netCDF4.Dataset(tmp, "w", format="NETCDF4") as nc:
      nc.setncatts(_global_attrs("climjax event tracks", "trajectory", attrs))
      nc.createDimension("trajectory", len(ids))
      nc.createDimension("obs", len(cols["snapshot"]))
      _var(nc, "trajectory_id", ids, ("trajectory",), "i4", cf_role="trajectory_id",
           long_name="track id")  # fmt: skip
      _var(nc, "rowSize", sizes, ("trajectory",), "i4", sample_dimension="obs",
           long_name="number of detections in the track")  # fmt: skip
      _var(nc, "class_id", cols["class_id"][first], ("trajectory",), "i4",
           **_class_attrs(class_names))  # fmt: skip
      _var(nc, "lifetime", lifetime, ("trajectory",), "f4", units="days",
           long_name="track lifetime: last minus first time plus one snapshot spacing")  # fmt: skip
      _var(nc, "time", times[cols["snapshot"]], ("obs",), "f8",
           **_time_attrs(time_units, calendar, "time of the detection"))  # fmt: skip
      _var(nc, "lat", cols["lat"], ("obs",), "f8", units="degrees_north",
           standard_name="latitude", long_name="latitude of the box centre")  # fmt: skip
      _var(nc, "lon", cols["lon"], ("obs",), "f8", units="degrees_east",
           standard_name="longitude", long_name="longitude of the box centre")  # fmt: skip
      _write_box_columns(nc, cols, "obs", "time lat lon", None)
      grid = [np.zeros(0) if g is None else np.asarray(g) for g in (lats, lons)]
      _write_snapshots_and_grid(nc, times, time_units, calendar, *grid)

  nc_path = _atomic(os.path.join(out_dir, "tracks.nc"), write)
  dates = to_dates(times[cols["snapshot"]], time_units, calendar)
  lead = {"track_id": cols["track_id"]}
  csv_path = _write_csv(os.path.join(out_dir, "tracks.csv"), cols, dates, class_names, lead)
  return nc_path, csv_path


@dataclasses.dataclass(frozen=True)
class Tracks:
  """A tracks file in memory: per-track arrays and the track id of every detection in them."""

  trajectory_id: np.ndarray
  class_id: np.ndarray  # per track
  lifetime: np.ndarray  # days, per track
  row_size: np.ndarray
  track_id: np.ndarray  # per detection (obs), expanded from rowSize
  detections: Detections  # the tracked detections, class per detection


def read_tracks(path: PathLike) -> Tracks:
  """Reads `tracks.nc`, given the file or the run directory holding it."""
  path = _resolve(path, "tracks.nc")
  needed = ("trajectory_id", "rowSize", "class_id", "lifetime", "time", "lat", "lon",
            "snapshot_index", "snapshot_time", "grid_lat", "grid_lon", *_EDGES)  # fmt: skip
  with _open(path, "trajectory", needed) as nc:
    ids = np.asarray(nc["trajectory_id"][:], np.int64)
    sizes = np.asarray(nc["rowSize"][:], np.int64)
    classes = np.asarray(nc["class_id"][:], np.int64)
    cols = {k: _column(nc, k) for k in ("lat", "lon", "score", *_EDGES)}
    detections = Detections(
      snapshot=_column(nc, "snapshot_index"),
      class_id=np.repeat(classes, sizes),
      **cols,
      **_common(nc, path),
    )
    return Tracks(
      trajectory_id=ids,
      class_id=classes,
      lifetime=np.asarray(nc["lifetime"][:], np.float64),
      row_size=sizes,
      track_id=np.repeat(ids, sizes),
      detections=detections,
    )
