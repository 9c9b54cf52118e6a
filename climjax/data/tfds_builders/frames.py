"""Input snapshots ("frames") from netCDF or ExtremeWeather files, and the events on them.

netCDF snapshots are labelled by the TECA-style heuristics
(`climjax.data.heuristics`: TD, TC, ETC and AR boxes, fronts for WF patches),
ExtremeWeather ones by the boxes in the files;
`_split_frames` splits the snapshots by time into train and test.

A NaN or Inf in a snapshot read is refused (a `DataError` naming the file,
the field and the time step) unless the config says `data.nonfinite="mask"`:
each such value is then replaced by the mean of the field's finite values in
that snapshot, and counted per field (`masked`) for the builder to log and
record. A snapshot with no finite value of a field is refused either way.
"""

from __future__ import annotations

import dataclasses
import glob
import os

import numpy as np
import pandas as pd

from climjax.data import variables
from climjax.data.errors import DataError
from climjax.data.tfds_builders.configs import (
  PATCH_SPACING,
  TASK_CLASS_IDS,
  _log,
  parse_variables_map,
)

# One row per event per snapshot: box edges in pixels (maxima exclusive; x may
# continue past the seam), centre as fractional pixel indices.
EVENT_COLUMNS = ("frame", "class_id", "ymin", "xmin", "ymax", "xmax", "cy", "cx")


@dataclasses.dataclass
class _Grid:
  lat: np.ndarray
  lon: np.ndarray

  @property
  def shape(self) -> tuple[int, int]:
    return len(self.lat), len(self.lon)

  @property
  def dlat(self) -> float:
    return float(np.median(np.abs(np.diff(self.lat)))) if len(self.lat) > 1 else 180.0

  @property
  def dlon(self) -> float:
    return float(np.median(np.diff(self.lon))) if len(self.lon) > 1 else 360.0

  @property
  def wraps(self) -> bool:
    """Whether longitudes go all the way round (windows may wrap across the seam)."""
    return abs(self.dlon * len(self.lon) - 360.0) < 0.5 * self.dlon

  @property
  def reaches_poles(self) -> bool:
    """Whether the rows end within a cell of the poles (windows may reflect across them)."""
    return self.lat.min() - self.dlat <= -89.0 and self.lat.max() + self.dlat >= 89.0

  def stride(self, task: str) -> tuple[int, int]:
    """Block-averaging factors that bring this grid to the task's patch spacing."""
    sy, sx = PATCH_SPACING[task]
    return max(1, round(sy / self.dlat)), max(1, round(sx / self.dlon))

  def pixel(self, lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fractional pixel indices of points (longitude continuing past the seam)."""
    y = np.interp(lat, self.lat, np.arange(len(self.lat), dtype=np.float64))
    x = (np.mod(np.asarray(lon, np.float64) - self.lon[0], 360.0)) / self.dlon
    return y, x


def _fill_nonfinite(plane: np.ndarray) -> int:
  """Replaces NaN and Inf in one snapshot's field by the mean of its finite values; the count."""
  bad = ~np.isfinite(plane)
  count = int(bad.sum())
  if count:
    plane[bad] = plane[~bad].mean()  # a field with no finite value is refused before this
  return count


def _iso(t) -> str:
  if isinstance(t, np.datetime64):
    return str(np.datetime_as_string(t, unit="s"))
  return t.isoformat() if hasattr(t, "isoformat") else str(t)


class _NetcdfFrames:
  """The time steps of netCDF files, read one at a time through `netcdf.open_fields`."""

  def __init__(
    self,
    pattern: str,
    variables_map: str,
    nonfinite: str = "refuse",
    require_all_criteria: bool = False,
  ):
    from climjax.data import netcdf

    self.pattern = pattern
    self.nonfinite = nonfinite
    self.require_all_criteria = require_all_criteria
    # Per class: labels, those on reduced criteria, and why (`heuristics.criteria.summary`).
    self.criteria: dict[str, dict] = {}
    self.masked: dict[str, int] = {}  # field -> values masked so far (nonfinite="mask")
    self.ds = netcdf.open_fields(
      pattern, None, name_map=parse_variables_map(variables_map), nonfinite=nonfinite
    )
    files = self.ds.encoding["source_files"]
    self.description = files[0] if len(files) == 1 else f"{files[0]} (and {len(files) - 1} more)"
    self.grid = _Grid(
      self.ds["lat"].values.astype(np.float64), self.ds["lon"].values.astype(np.float64)
    )
    self.times = [_iso(t) for t in self.ds["time"].values]
    self.calendar = self.ds["time"].encoding.get("calendar", "standard")

  def __len__(self) -> int:
    return len(self.times)

  def require(self, channels, why: str) -> None:
    for name in channels:
      if name not in self.ds:
        raise DataError(
          self.description,
          f"not found, needed for {why}; the files hold {sorted(self.ds.data_vars)} "
          "(map another name onto it with variables_map, e.g. msl:PSL)",
          name,
        )

  def read(self, i: int, channels) -> np.ndarray:
    out = np.empty((*self.grid.shape, len(channels)), np.float32)
    for c, name in enumerate(channels):
      if name == "LANDFRAC" and name not in self.ds:
        out[..., c] = self.land_fraction()
      else:
        out[..., c] = self.ds[name][i].values  # refused by the reader unless "mask"
        if self.nonfinite == "mask":
          self.masked[name] = self.masked.get(name, 0) + _fill_nonfinite(out[..., c])
    return out

  def land_fraction(self) -> np.ndarray:
    if not hasattr(self, "_land"):
      from climjax.data import landsea

      self._land = landsea.land_fraction(self.grid.lat, self.grid.lon)
    return self._land

  def _heuristics_land(self) -> np.ndarray:
    return self.ds["LANDFRAC"][0].values if "LANDFRAC" in self.ds else self.land_fraction()

  def events(self, task: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(positives, events to keep negatives away from) found by the heuristics."""
    from climjax.data import heuristics

    if task == "wf":
      if "T850" not in self.ds:
        self.require(("TREFHT",), "the front heuristics (T850, else TREFHT)")
      fronts = self._labels(("WF",))
      return fronts, fronts
    if task == "tc":
      self.require(("PSL",), "the TC heuristics")
      candidates = heuristics.detect_tropical_cyclones(
        self.ds, require_all_criteria=self.require_all_criteria
      )
      tracked = heuristics.track_cyclones(candidates) if len(candidates) else candidates
      self.criteria = heuristics.criteria.summary(tracked.assign(class_name="TC"))
      return self._tc_rows(tracked), self._tc_rows(candidates)
    self.require(("TMQ",), "the AR heuristics")
    rivers = heuristics.detect_atmospheric_rivers(self.ds, land_fraction=self._heuristics_land())
    self.criteria = {"AR": {"labels": len(rivers), "reduced": 0, "skipped": {}}}
    rows = self._ar_rows(rivers)
    return rows, rows

  def _labels(self, classes: tuple[str, ...]) -> pd.DataFrame:
    """`heuristics.label_events` of `classes` as event rows; `criteria` says what they rest on."""
    from climjax.data import heuristics

    labels = heuristics.label_events(
      self.ds,
      classes=classes,
      land_fraction=self._heuristics_land(),
      require_all_criteria=self.require_all_criteria,
    )
    self.criteria = labels.attrs["criteria"]
    return self._label_rows(labels)

  def _tc_rows(self, df: pd.DataFrame) -> pd.DataFrame:
    # Heuristic boxes are fractional pixel *indices* of the storm's extent; +0.5 turns
    # them into pixel edges like every other box here.
    return pd.DataFrame({
        "frame": df["time_index"].to_numpy(np.int64),
        "class_id": variables.CLASS_IDS["TC"],
        "ymin": df["ymin"].to_numpy(np.float64) + 0.5,
        "xmin": df["xmin"].to_numpy(np.float64) + 0.5,
        "ymax": df["ymax"].to_numpy(np.float64) + 0.5,
        "xmax": df["xmax"].to_numpy(np.float64) + 0.5,
        "cy": df["y"].to_numpy(np.float64),
        "cx": df["x"].to_numpy(np.float64),
    }, columns=list(EVENT_COLUMNS))  # fmt: skip

  def _ar_rows(self, df: pd.DataFrame) -> pd.DataFrame:
    cy, cx = self.grid.pixel(df["lat"].to_numpy(np.float64), df["lon"].to_numpy(np.float64))
    return pd.DataFrame({
        "frame": df["time_index"].to_numpy(np.int64),
        "class_id": variables.CLASS_IDS["AR"],
        "ymin": df["ymin"].to_numpy(np.float64),  # inclusive indices -> edges
        "xmin": df["xmin"].to_numpy(np.float64),
        "ymax": df["ymax"].to_numpy(np.float64) + 1,
        "xmax": df["xmax"].to_numpy(np.float64) + 1,
        "cy": cy,
        "cx": cx,
    }, columns=list(EVENT_COLUMNS))  # fmt: skip

  def _label_rows(self, labels: pd.DataFrame) -> pd.DataFrame:
    # `label_events` boxes are pixel edges already, x continuing past the seam.
    return pd.DataFrame({
        "frame": labels["time_index"].to_numpy(np.int64),
        "class_id": labels["class_id"].to_numpy(np.int64),
        "ymin": labels["ymin"].to_numpy(np.float64),
        "xmin": labels["xmin"].to_numpy(np.float64),
        "ymax": labels["ymax"].to_numpy(np.float64),
        "xmax": labels["xmax"].to_numpy(np.float64),
        "cy": labels["y"].to_numpy(np.float64),
        "cx": labels["x"].to_numpy(np.float64),
    }, columns=list(EVENT_COLUMNS))  # fmt: skip

  def detection_events(self) -> pd.DataFrame:
    """TD, TC, ETC and AR boxes of every snapshot (`heuristics.label_events`)."""
    return self._labels(tuple(variables.CLASS_NAMES))


class _ExtremeWeatherFrames:
  """The images of one or more ExtremeWeather files, in file order."""

  def __init__(self, pattern: str, box_order: str, nonfinite: str = "refuse"):
    from climjax.data import extremeweather, synthetic

    self.pattern = pattern
    self.nonfinite = nonfinite
    self.masked: dict[str, int] = {}
    paths = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
    if not paths:
      raise DataError(pattern, "no files match this pattern")
    self.files = [
      extremeweather.ExtremeWeatherFile(
        p, box_order=box_order or None, check_finite=nonfinite != "mask"
      )
      for p in paths
    ]
    first = self.files[0]
    for f in self.files[1:]:
      if (f.height, f.width) != (first.height, first.width):
        raise DataError(
          f.path,
          f"images are {f.height}x{f.width}, those of {first.path} {first.height}x{first.width}",
          "images",
        )
    self.description = paths[0] if len(paths) == 1 else f"{paths[0]} (and {len(paths) - 1} more)"
    # The released files hold no coordinates: the CAM5 grid, latitude ascending.
    self.grid = _Grid(*synthetic.latlon_grid(first.height, first.width))
    self.index = [(k, i) for k, f in enumerate(self.files) for i in range(len(f))]
    self.times = [f"{os.path.basename(self.files[k].path)}[{i}]" for k, i in self.index]

  def __len__(self) -> int:
    return len(self.index)

  def require(self, channels, why: str) -> None:
    del channels, why  # the files hold all 16 channels (ExtremeWeatherFile checks the shape)

  def read(self, frame: int, channels) -> np.ndarray:
    k, i = self.index[frame]
    image = self.files[k][i]["image"]  # refused there if not finite, unless "mask"
    out = np.empty((*self.grid.shape, len(channels)), np.float32)
    for c, name in enumerate(channels):
      if name == "LANDFRAC":
        out[..., c] = self.land_fraction()
        continue
      out[..., c] = image[..., variables.EXTREMEWEATHER_CHANNELS.index(name)]
      if self.nonfinite == "mask":
        if not np.isfinite(out[..., c]).any():
          raise DataError(
            self.files[k].path,
            f"image {i} channel {name} holds no finite value (nothing to fill it from)",
            "images",
          )
        self.masked[name] = self.masked.get(name, 0) + _fill_nonfinite(out[..., c])
    return out

  def land_fraction(self) -> np.ndarray:
    if not hasattr(self, "_land"):
      from climjax.data import landsea

      self._land = landsea.land_fraction(self.grid.lat, self.grid.lon)
    return self._land

  def _rows(self, class_ids=None) -> pd.DataFrame:
    rows = []
    for frame, (k, i) in enumerate(self.index):
      boxes, labels = self.files[k].boxes(i)
      for box, label in zip(boxes, labels, strict=True):
        if class_ids is None or int(label) in class_ids:
          ymin, xmin, ymax, xmax = (float(v) for v in box)
          centre = ((ymin + ymax) / 2 - 0.5, (xmin + xmax) / 2 - 0.5)
          rows.append((frame, int(label), ymin, xmin, ymax, xmax, *centre))
    return pd.DataFrame(rows, columns=list(EVENT_COLUMNS))

  def events(self, task: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows = self._rows({TASK_CLASS_IDS[task]})
    if rows.empty:
      raise DataError(
        self.description,
        f"no boxes of class {TASK_CLASS_IDS[task]} ({task.upper()}) to centre "
        f"{task.upper()} patches on",
        "boxes",
      )
    return rows, rows

  def detection_events(self) -> pd.DataFrame:
    return self._rows(set(range(len(variables.CLASS_NAMES))))


def _open_frames(source: str, cfg) -> _NetcdfFrames | _ExtremeWeatherFrames:
  if source == "netcdf":
    return _NetcdfFrames(cfg.input, cfg.variables_map, cfg.nonfinite, cfg.require_all_criteria)
  return _ExtremeWeatherFrames(cfg.input, cfg.box_order, cfg.nonfinite)


def record_criteria(metadata, frames, what: str) -> None:
  """Puts what the labels rest on into the dataset's metadata, and says so if any are reduced.

  `metadata["criteria"]` is `frames.criteria` (per class: labels, reduced,
  skipped criteria); ExtremeWeather's boxes are the files' own ({}).
  """
  from climjax.data.heuristics import criteria

  counts = getattr(frames, "criteria", {})
  metadata["criteria"] = counts
  if any(c["reduced"] for c in counts.values()):
    _log(
      f"{what}: heuristic labels on reduced criteria (counted as met for want of variables): "
      f"{criteria.describe(counts)}; data.require_all_criteria=True refuses such input"
    )

def masked_note(frames, before: dict[str, int]) -> str:
  """'12 values (TMQ 10, PSL 2)' masked since `before` (a copy of `frames.masked`); '' if none."""
  counts = {k: v - before.get(k, 0) for k, v in frames.masked.items()}
  counts = {k: v for k, v in counts.items() if v}
  if not counts:
    return ""
  parts = ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
  return f"{sum(counts.values())} values ({parts})"


def _input_grid(source: str, files: dict, nonfinite: str = "refuse") -> tuple[int, int]:
  """(H, W) of the input's snapshots, reading only metadata (and netCDF's first step)."""
  if source == "netcdf":
    frames = _NetcdfFrames(files["input"], files["variables_map"], nonfinite)
    return frames.grid.shape
  from climjax.data import extremeweather

  pattern = files["input"]
  paths = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
  if not paths:
    raise DataError(pattern, "no files match this pattern")
  first = extremeweather.ExtremeWeatherFile(
    paths[0], box_order=files["box_order"] or None, check_finite=nonfinite != "mask"
  )
  first.close()
  return first.height, first.width


def _split_frames(num_frames: int, test_fraction: float, description: str) -> dict[str, range]:
  """Snapshots of each split: the first (1 - test_fraction) train, the rest test."""
  if num_frames < 2:
    raise DataError(
      description, f"holds {num_frames} snapshot(s); a train and a test split need at least 2"
    )
  num_test = min(num_frames - 1, max(1, int(round(test_fraction * num_frames))))
  return {
    "train": range(0, num_frames - num_test),
    "test": range(num_frames - num_test, num_frames),
  }
