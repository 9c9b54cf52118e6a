"""tfds dataset builders (array_record) for the classifier patches and for detection.

Datasets are built once into `data.data_dir` and read back by random access with
`tfds.data_source`-style sources (no TensorFlow needed). One builder config per
(task, source, input, sizes, seed), so datasets of different sizes or inputs
never collide and a second run reuses the first's files. tfds writes a dataset
into an `incomplete.*` directory and renames it when every split is written,
so a build that fails (bad input, interrupted) leaves no dataset behind and
never touches one built before.

Two builders:

`ClimatePatches` (`climate_patches/<config>`): centred multi-variable patches
with a binary label, for the TC / AR / WF classifiers (Liu et al. 2016).
Examples: {"patch": float32 (h, w, C), "label": int64 0 (background) | 1 (event)},
shapes `PATCH_SHAPES`, channels `variables.TASK_CHANNELS[task]`.

`ExtremeWeather` (`extreme_weather/<config>`): whole global snapshots with
their boxes, for the detector (Racah et al. 2017). Examples:
  "image"   float32 (H, W, 16), channels `variables.EXTREMEWEATHER_CHANNELS`
            (NHWC, physical units, latitude ascending)
  "boxes"   float32 (max_boxes, 4): (ymin, xmin, ymax, xmax) in pixels, y on
            the latitude axis, maxima exclusive (pixel edges); padding rows 0
  "labels"  int32 (max_boxes,): class ids 0 TD, 1 TC, 2 ETC, 3 AR; padding 0
  "mask"    float32 (max_boxes,): 1 for a real box, 0 for padding
  "time"    bytes: the snapshot's date (ISO 8601) where the input has one,
            else "<file>[<index>]" (ExtremeWeather files hold no dates)
Examples keep time order (index i of a split is its i-th snapshot), so 3-D
models can take windows of consecutive indices. The grid is in
`builder.info.metadata` ("lat", "lon": cell centres in degrees, "channels").
Images are stored as raw float32 bytes (56.6 MB for 768 x 1152 x 16), not
as lists of floats; array_record still compresses each record (zstd, tfds's
setting), which is most of the cost of reading one back.

Sources (builder config `source`, with `input` a path or glob):

  synthetic       `synthetic.tc_patches`, `patches.ar_patches` /
                  `patches.wf_patches`; detection: `synthetic.generate_fields`
                  at `height` x `width`, the test split from seed + 10,000.
  netcdf          CAM5 / CF files read with `netcdf.open_fields` (names mapped
                  by `variables.ALIASES` and `variables_map`), labelled by the
                  TECA-style heuristics: TCs are candidates of
                  `heuristics.detect_tropical_cyclones` on tracks kept by
                  `heuristics.track_cyclones` (tracks need 2 days of fields),
                  ARs come from `heuristics.detect_atmospheric_rivers`.
                  Detection boxes are TC and AR only (climjax has no TD or ETC
                  detector); WF patches cannot be built from netCDF (there is
                  no front detector) and the build says so.
  extremeweather  `climo_YYYY.h5` files (`extremeweather.ExtremeWeatherFile`):
                  patches are cut around the boxes of the task's class (TC 1,
                  AR 3, WF 4 where a file has fronts); detection takes the
                  images and boxes as they are.

For netCDF and ExtremeWeather input the snapshots are split by time: the first
`1 - test_fraction` of them train, the rest test, so a storm seen in training
is not seen again at the next time step in the test split. `num_train` and
`num_test` then cap the examples per split (0 = all): patches half positive,
half negative; snapshots, the first of the split. Positive
patches are centred on each event (an AR on its area-weighted centre); as many
negatives are centred at random in the task's latitude band
(`NEGATIVE_LAT_BANDS`), on snapshots of the same split drawn at random,
where the window overlaps no event of the task's class (for TCs: no heuristic
candidate at all, tracked or not). Windows wrap around in longitude and
reflect across the poles (`patches.cut_patch`); on a regional grid, windows
that leave it are skipped. Patches are defined on a grid spacing
(`PATCH_SPACING`: the 25 km CAM5 grid for TC and AR, 1 deg for fronts); input
finer than that is block-averaged by the nearest integer factor.

Normalisation statistics are computed from the *training* split only and saved
as `stats.json` beside the dataset. `prepare` also decodes small datasets once
into memory-mapped .npy files (`decoded/` beside the dataset): a batch is then
an array slice rather than a parse of 256 records, which is what keeps the
input pipeline well ahead of training.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import math
import os
import shutil
import time
import warnings
from collections.abc import Iterator, Mapping

import numpy as np
import pandas as pd
import tensorflow_datasets as tfds

from climjax.data import stats as stats_lib
from climjax.data import variables
from climjax.data.errors import DataError

# Patch shape (lat, lon) of each supervised task (Liu et al. 2016).
PATCH_SHAPES: dict[str, tuple[int, int]] = {"tc": (32, 32), "ar": (148, 224), "wf": (27, 60)}
# Grid spacing (deg lat, deg lon) a patch is defined on: that of `synthetic` / `patches`.
PATCH_SPACING: dict[str, tuple[float, float]] = {
  "tc": (180.0 / 768, 360.0 / 1152),
  "ar": (180.0 / 768, 360.0 / 1152),
  "wf": (1.0, 1.0),
}
# |latitude| band (deg) where negatives of each task are centred: where its events live.
NEGATIVE_LAT_BANDS: dict[str, tuple[float, float]] = {
  "tc": (0.0, 40.0),
  "ar": (20.0, 70.0),
  "wf": (25.0, 60.0),
}
# Class id of each task's events in the ExtremeWeather boxes.
TASK_CLASS_IDS: dict[str, int] = {
  "tc": variables.CLASS_IDS["TC"],
  "ar": variables.CLASS_IDS["AR"],
  "wf": variables.FRONT_CLASS_ID,
}
SOURCES: tuple[str, ...] = ("synthetic", "netcdf", "extremeweather")
DEFAULT_DATA_DIR = "runs/tfds"
DEFAULT_TEST_FRACTION = 0.2
DETECTION_MAX_BOXES = 15  # rows per image in the released ExtremeWeather files
DETECTION_KEYS: tuple[str, ...] = ("image", "boxes", "labels", "mask", "time")
# Splits whose decoded arrays are at most this large are cached by `prepare`.
DECODED_CACHE_MAX_BYTES = 4 << 30

_CHUNK = 1024  # examples generated per call of the synthetic generator
_SPLIT_IDS = {"train": 0, "test": 1}
_GENERATION_BYTES = 256 << 20  # synthetic snapshots generated per call, in bytes
_LOG_EVERY_S = 10.0


def chunk_seed(seed: int, split: str, chunk: int) -> int:
  """Independent, reproducible seed for one chunk of one split."""
  return int(np.random.SeedSequence([seed, _SPLIT_IDS[split], chunk]).generate_state(1)[0])


def _log(message: str) -> None:
  print(f"[climjax] {message}", flush=True)


# ---------------------------------------------------------------------------
# Builder configs
# ---------------------------------------------------------------------------


def parse_variables_map(value) -> dict[str, str]:
  """`"msl:PSL,tcw:TMQ"` (or a mapping) -> {"msl": "PSL", "tcw": "TMQ"}: file names -> CAM5 names."""
  if not value:
    return {}
  if isinstance(value, Mapping) or hasattr(value, "items"):
    pairs = [(str(k), str(v)) for k, v in value.items()]
  else:
    pairs = []
    for item in str(value).split(","):
      name, sep, target = item.partition(":")
      if not sep or not name.strip() or not target.strip():
        raise ValueError(
          f"variables_map must look like 'msl:PSL,tcw:TMQ' (name in the file:CAM5 name), "
          f"got {value!r}"
        )
      pairs.append((name.strip(), target.strip()))
  known = set(variables.CAM5_VARIABLES) | {"LANDFRAC"}
  for name, target in pairs:
    if target not in known:
      raise ValueError(
        f"variables_map: {name}:{target} maps onto {target!r}, which is not a CAM5 variable "
        f"({', '.join(sorted(known))})"
      )
  return dict(pairs)


def _canonical_map(value) -> str:
  """The variables map as a sorted 'a:B,c:D' string (part of the dataset's identity)."""
  return ",".join(f"{k}:{v}" for k, v in sorted(parse_variables_map(value).items()))


def _file_fields(data_config, source: str) -> dict:
  """The config fields that say which files a dataset comes from, checked and normalised."""
  if source not in SOURCES:
    raise ValueError(f"data.source must be one of {SOURCES}, got {source!r}")
  variables_map = _canonical_map(data_config.get("variables_map", ""))
  box_order = data_config.get("box_order", "") or ""
  test_fraction = float(data_config.get("test_fraction", DEFAULT_TEST_FRACTION))
  if source == "synthetic":
    return {"input": "", "variables_map": "", "box_order": "", "test_fraction": test_fraction}
  given = data_config.get("input", "") or ""
  if not given:
    raise ValueError(f"data.source={source!r} needs data.input: a file, directory or glob")
  if os.path.isdir(given):
    given = os.path.join(given, "*.nc" if source == "netcdf" else "*.h5")
  if variables_map and source == "extremeweather":
    raise ValueError(
      "data.variables_map applies to netCDF input; ExtremeWeather files have a fixed channel order"
    )
  if box_order and box_order not in ("yxyx", "xxyy"):
    raise ValueError(f"data.box_order must be 'yxyx', 'xxyy' or '' (detect), got {box_order!r}")
  if not 0.0 < test_fraction < 1.0:
    raise ValueError(f"data.test_fraction must be in (0, 1), got {test_fraction}")
  return {
    "input": os.path.abspath(os.path.expanduser(given)),
    "variables_map": variables_map,
    "box_order": box_order,
    "test_fraction": test_fraction,
  }


def _check_sizes(data_config, source: str) -> None:
  for split in ("train", "test"):
    num = int(data_config.num_train if split == "train" else data_config.num_test)
    if num < (1 if source == "synthetic" else 0):
      what = "at least 1" if source == "synthetic" else ">= 0 (0: every example found)"
      raise ValueError(f"data.num_{split} must be {what} for data.source={source!r}, got {num}")


def _digest(fields: dict) -> str:
  """8 hex digits identifying the input files and how they are read."""
  text = "|".join(f"{k}={fields[k]}" for k in sorted(fields))
  return hashlib.sha1(text.encode()).hexdigest()[:8]


@dataclasses.dataclass
class PatchesConfig(tfds.core.BuilderConfig):
  task: str = "tc"
  source: str = "synthetic"
  input: str = ""
  num_train: int = 0
  num_test: int = 0
  seed: int = 0
  variables_map: str = ""  # netcdf: "name_in_file:CAM5_NAME,..."
  box_order: str = ""  # extremeweather: "yxyx" | "xxyy" | "" (read off the values)
  test_fraction: float = DEFAULT_TEST_FRACTION  # netcdf / extremeweather: last snapshots held out


def patches_config(data_config, task: str) -> PatchesConfig:
  """The builder config for `config.data` of a classifier task.

  Reads `source`, `num_train`, `num_test`, `seed` and, where present, `input`,
  `variables_map`, `box_order`, `test_fraction`. For file sources the name
  carries a digest of the absolute input path and how it is read.
  """
  if task not in PATCH_SHAPES:
    raise ValueError(f"task must be one of {sorted(PATCH_SHAPES)}, got {task!r}")
  source = data_config.source
  files = _file_fields(data_config, source)
  _check_sizes(data_config, source)
  where = "" if source == "synthetic" else f"-{_digest(files)}"
  name = (
    f"{task}-{source}{where}-train{data_config.num_train}"
    f"-test{data_config.num_test}-seed{data_config.seed}"
  )
  return PatchesConfig(
    name=name,
    version=ClimatePatches.VERSION,
    task=task,
    source=source,
    num_train=int(data_config.num_train),
    num_test=int(data_config.num_test),
    seed=int(data_config.seed),
    **files,
  )


@dataclasses.dataclass
class DetectionConfig(tfds.core.BuilderConfig):
  source: str = "synthetic"
  input: str = ""
  variables_map: str = ""
  box_order: str = ""
  test_fraction: float = DEFAULT_TEST_FRACTION
  height: int = 768
  width: int = 1152
  num_train: int = 0
  num_test: int = 0
  seed: int = 0
  max_boxes: int = DETECTION_MAX_BOXES


def detection_config(data_config) -> DetectionConfig:
  """The builder config for `config.data` of the detector.

  Reads `source`, `num_train`, `num_test`, `seed` and, where present, `input`,
  `variables_map`, `box_order`, `test_fraction`, `max_boxes` (default 15) and,
  for synthetic data, `height` and `width` (default 768 x 1152). For file
  sources the grid is read off the input (which must exist, else DataError).
  """
  source = data_config.source
  files = _file_fields(data_config, source)
  _check_sizes(data_config, source)
  if source == "synthetic":
    height, width = int(data_config.get("height", 768)), int(data_config.get("width", 1152))
    where = f"{height}x{width}"
  else:
    height, width = _input_grid(source, files)
    where = f"{_digest(files)}-{height}x{width}"
  max_boxes = int(data_config.get("max_boxes", DETECTION_MAX_BOXES))
  if max_boxes < 1:
    raise ValueError(f"data.max_boxes must be >= 1, got {max_boxes}")
  name = (
    f"{source}-{where}-train{data_config.num_train}-test{data_config.num_test}"
    f"-seed{data_config.seed}-boxes{max_boxes}"
  )
  return DetectionConfig(
    name=name,
    version=ExtremeWeather.VERSION,
    source=source,
    height=height,
    width=width,
    num_train=int(data_config.num_train),
    num_test=int(data_config.num_test),
    seed=int(data_config.seed),
    max_boxes=max_boxes,
    **files,
  )


# ---------------------------------------------------------------------------
# Input snapshots ("frames") from netCDF or ExtremeWeather files
# ---------------------------------------------------------------------------

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


def _iso(t) -> str:
  if isinstance(t, np.datetime64):
    return str(np.datetime_as_string(t, unit="s"))
  return t.isoformat() if hasattr(t, "isoformat") else str(t)


class _NetcdfFrames:
  """The time steps of netCDF files, read one at a time through `netcdf.open_fields`."""

  def __init__(self, pattern: str, variables_map: str):
    from climjax.data import netcdf

    self.pattern = pattern
    self.ds = netcdf.open_fields(pattern, None, name_map=parse_variables_map(variables_map))
    files = self.ds.encoding["source_files"]
    self.description = files[0] if len(files) == 1 else f"{files[0]} (and {len(files) - 1} more)"
    self.grid = _Grid(
      self.ds["lat"].values.astype(np.float64), self.ds["lon"].values.astype(np.float64)
    )
    self.times = [_iso(t) for t in self.ds["time"].values]

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
        out[..., c] = self.ds[name][i].values
    return out

  def land_fraction(self) -> np.ndarray:
    if not hasattr(self, "_land"):
      from climjax.data import landsea

      self._land = landsea.land_fraction(self.grid.lat, self.grid.lon)
    return self._land

  def events(self, task: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(positives, events to keep negatives away from) found by the heuristics."""
    from climjax.data import heuristics

    if task == "wf":
      raise DataError(
        self.description,
        "weather-front patches cannot be built from netCDF: climjax has no front detector "
        "(heuristics.py finds TCs and ARs); use --source=synthetic, or ExtremeWeather files "
        "whose boxes include fronts (class 4)",
      )
    if task == "tc":
      self.require(("PSL",), "the TC heuristics")
      candidates = heuristics.detect_tropical_cyclones(self.ds)
      tracked = heuristics.track_cyclones(candidates) if len(candidates) else candidates
      return self._tc_rows(tracked), self._tc_rows(candidates)
    self.require(("TMQ",), "the AR heuristics")
    land = self.ds["LANDFRAC"][0].values if "LANDFRAC" in self.ds else self.land_fraction()
    rivers = heuristics.detect_atmospheric_rivers(self.ds, land_fraction=land)
    rows = self._ar_rows(rivers)
    return rows, rows

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

  def detection_events(self) -> pd.DataFrame:
    """TC (tracked) and AR boxes of every snapshot: what the heuristics can label."""
    tc, _ = self.events("tc")
    ar, _ = self.events("ar")
    return pd.concat([tc, ar], ignore_index=True)


class _ExtremeWeatherFrames:
  """The images of one or more ExtremeWeather files, in file order."""

  def __init__(self, pattern: str, box_order: str):
    from climjax.data import extremeweather, synthetic

    self.pattern = pattern
    paths = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
    if not paths:
      raise DataError(pattern, "no files match this pattern")
    self.files = [extremeweather.ExtremeWeatherFile(p, box_order=box_order or None) for p in paths]
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
    image = self.files[k][i]["image"]
    out = np.empty((*self.grid.shape, len(channels)), np.float32)
    for c, name in enumerate(channels):
      if name == "LANDFRAC":
        out[..., c] = self.land_fraction()
      else:
        out[..., c] = image[..., variables.EXTREMEWEATHER_CHANNELS.index(name)]
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
    return _NetcdfFrames(cfg.input, cfg.variables_map)
  return _ExtremeWeatherFrames(cfg.input, cfg.box_order)


def _input_grid(source: str, files: dict) -> tuple[int, int]:
  """(H, W) of the input's snapshots, reading only metadata."""
  if source == "netcdf":
    frames = _NetcdfFrames(files["input"], files["variables_map"])
    return frames.grid.shape
  from climjax.data import extremeweather

  pattern = files["input"]
  paths = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
  if not paths:
    raise DataError(pattern, "no files match this pattern")
  first = extremeweather.ExtremeWeatherFile(paths[0], box_order=files["box_order"] or None)
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


# ---------------------------------------------------------------------------
# Cutting patches
# ---------------------------------------------------------------------------


def _window(grid: _Grid, task: str) -> tuple[tuple[int, int], tuple[int, int]]:
  """((rows, cols) of the window on the input grid, (stride y, stride x))."""
  (h, w), (sy, sx) = PATCH_SHAPES[task], grid.stride(task)
  return (h * sy, w * sx), (sy, sx)


def _fits(grid: _Grid, window: tuple[int, int], cy: float, cx: float) -> bool:
  """Whether a window centred on (cy, cx) lies on the grid (wrapping/reflecting where global)."""
  (nlat, nlon), (wh, ww) = grid.shape, window
  y0, x0 = int(round(cy)) - wh // 2, int(round(cx)) - ww // 2
  rows_ok = (grid.reaches_poles and wh <= nlat) or (0 <= y0 and y0 + wh <= nlat)
  cols_ok = grid.wraps or (0 <= x0 and x0 + ww <= nlon)
  return bool(rows_ok and cols_ok)


def _cut(
  fields: np.ndarray, cy: float, cx: float, task: str, stride: tuple[int, int]
) -> np.ndarray:
  """The task's patch centred on pixel (cy, cx), block-averaged by `stride`."""
  from climjax.data import patches

  (h, w), (sy, sx) = PATCH_SHAPES[task], stride
  big = patches.cut_patch(fields, (cy, cx), (h * sy, w * sx))
  if sy == sx == 1:
    return np.ascontiguousarray(big, np.float32)
  return big.reshape(h, sy, w, sx, big.shape[-1]).mean(axis=(1, 3), dtype=np.float32)


def _overlaps(boxes: pd.DataFrame, window: tuple[int, int], cy: int, cx: int, width: int) -> bool:
  """Whether a window centred on pixel (cy, cx) overlaps any of the boxes (x modulo width)."""
  if boxes.empty:
    return False
  wh, ww = window
  y0, x0 = cy - wh // 2, cx - ww // 2
  rows = (boxes["ymin"].to_numpy() < y0 + wh) & (boxes["ymax"].to_numpy() > y0)
  xmin, xmax = boxes["xmin"].to_numpy(), boxes["xmax"].to_numpy()
  cols = np.zeros(len(boxes), bool)
  for shift in (-width, 0, width):
    cols |= (xmin + shift < x0 + ww) & (xmax + shift > x0)
  return bool(np.any(rows & cols))


def _file_patches(
  frames,
  positives: pd.DataFrame,
  avoid: pd.DataFrame,
  task: str,
  cfg,
  split: str,
  frame_range: range,
) -> Iterator[tuple]:
  """(key, example) of one split of patches cut from input snapshots.

  `positives`: the events to centre positive patches on; `avoid`: the events no
  negative window may overlap (both with `EVENT_COLUMNS`, over all snapshots).
  The checks run when this is called, the cutting when the result is iterated,
  so a split without events fails before tfds writes anything.
  """
  grid = frames.grid
  window, stride = _window(grid, task)
  rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, _SPLIT_IDS[split], 0xF11E]))
  mine = positives[positives["frame"].isin(frame_range)]
  fitting = np.array([_fits(grid, window, r.cy, r.cx) for r in mine.itertuples()], bool)
  skipped = int((~fitting).sum())
  mine = mine[fitting] if len(mine) else mine
  cap = getattr(cfg, f"num_{split}")
  num_pos = len(mine) if not cap else min(len(mine), math.ceil(cap / 2))
  if num_pos < len(mine):
    mine = mine.iloc[np.sort(rng.choice(len(mine), num_pos, replace=False))]
  num_neg = num_pos if not cap else min(num_pos, cap - num_pos)
  if num_pos == 0:
    where = f"{split} snapshots {frame_range.start}-{frame_range.stop - 1} (of {len(frames)})"
    hint = "; give more snapshots or another test_fraction"
    if task == "tc" and isinstance(frames, _NetcdfFrames):
      hint = "; TC tracks need at least 2 days of 6-hourly fields" + hint
    raise DataError(
      frames.description,
      f"no {task.upper()} found in the {where}"
      + (f"; the windows of {skipped} do not fit on the grid" if skipped else "")
      + hint,
    )
  # Negatives go to snapshots of the split drawn at random, not only those with events.
  negatives_at = np.bincount(
    rng.integers(frame_range.start, frame_range.stop, num_neg), minlength=frame_range.stop
  )
  lo, hi = NEGATIVE_LAT_BANDS[task]
  band = np.flatnonzero((np.abs(grid.lat) >= lo) & (np.abs(grid.lat) <= hi))
  if not len(band):
    raise DataError(
      frames.description, f"the grid has no latitudes in the {task.upper()} band {lo}-{hi} deg"
    )
  return _cut_patches(
    frames, mine, avoid, task, split, frame_range, negatives_at, band, skipped, rng
  )


def _cut_patches(
  frames, mine, avoid, task, split, frame_range, negatives_at, band, skipped, rng
) -> Iterator[tuple]:
  """Reads each snapshot of the split once; cuts its positives and `negatives_at[frame]` negatives."""
  grid = frames.grid
  window, stride = _window(grid, task)
  channels = variables.TASK_CHANNELS[task]
  by_frame = dict(tuple(mine.groupby("frame")))
  avoid_by_frame = dict(tuple(avoid.groupby("frame")))
  empty = pd.DataFrame(columns=list(EVENT_COLUMNS))
  key, counts = 0, [0, 0]  # negatives, positives
  t0 = last = time.time()
  for n, frame in enumerate(frame_range):
    here, want = by_frame.get(frame, empty), int(negatives_at[frame])
    if here.empty and not want:
      continue
    fields = frames.read(frame, channels)
    for row in here.itertuples():
      yield key, {"patch": _cut(fields, row.cy, row.cx, task, stride), "label": 1}
      key, counts[1] = key + 1, counts[1] + 1
    blocked = avoid_by_frame.get(frame, empty)
    tries = 100 * want
    while want and tries:
      tries -= 1
      cy, cx = int(rng.choice(band)), int(rng.integers(grid.shape[1]))
      if not _fits(grid, window, cy, cx) or _overlaps(blocked, window, cy, cx, grid.shape[1]):
        continue
      yield key, {"patch": _cut(fields, cy, cx, task, stride), "label": 0}
      key, counts[0], want = key + 1, counts[0] + 1, want - 1
    if time.time() - last > _LOG_EVERY_S or n == len(frame_range) - 1:
      last = time.time()
      _log(
        f"{task} {split}: snapshot {n + 1}/{len(frame_range)}, {counts[1]} positive + "
        f"{counts[0]} negative patches ({time.time() - t0:.0f} s)"
      )
  if skipped:
    _log(f"{task} {split}: skipped {skipped} events whose window does not fit on the grid")


# ---------------------------------------------------------------------------
# Patches builder
# ---------------------------------------------------------------------------


def _synthetic_patches(task: str, num: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
  from climjax.data import synthetic

  if task == "tc":
    return synthetic.tc_patches(num, seed=seed)
  from climjax.data import patches

  return {"ar": patches.ar_patches, "wf": patches.wf_patches}[task](num, seed=seed)


class ClimatePatches(tfds.core.GeneratorBasedBuilder):
  """Centred multi-variable patches with a binary label (event / no event)."""

  VERSION = tfds.core.Version("1.1.0")  # 1.1: patches stored as raw bytes
  BUILDER_CONFIG_CLASS = PatchesConfig

  def _info(self) -> tfds.core.DatasetInfo:
    cfg = self.builder_config
    h, w = PATCH_SHAPES[cfg.task]
    channels = variables.TASK_CHANNELS[cfg.task]
    origin = cfg.source if cfg.source == "synthetic" else f"{cfg.source} files {cfg.input}"
    return tfds.core.DatasetInfo(
      builder=self,
      description=f"{cfg.task.upper()} patches ({', '.join(channels)}) from {origin}",
      features=tfds.features.FeaturesDict(
        {
          # Raw bytes: ~4x faster to write than a float list, same to read.
          "patch": tfds.features.Tensor(
            shape=(h, w, len(channels)), dtype=np.float32, encoding=tfds.features.Encoding.BYTES
          ),
          "label": tfds.features.ClassLabel(names=["background", cfg.task]),
        }
      ),
      supervised_keys=("patch", "label"),
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    cfg = self.builder_config
    if cfg.source == "synthetic":
      return {
        "train": self._generate_examples("train", cfg.num_train),
        "test": self._generate_examples("test", cfg.num_test),
      }
    # Open and label the input once, here, so a bad file fails before any split is written.
    frames = _open_frames(cfg.source, cfg)
    splits = _split_frames(len(frames), cfg.test_fraction, frames.description)
    _log(
      f"{cfg.task} from {frames.description}: {len(frames)} snapshots, "
      f"{len(splits['train'])} train / {len(splits['test'])} test"
    )
    frames.require([c for c in variables.TASK_CHANNELS[cfg.task] if c != "LANDFRAC"], "patches")
    positives, avoid = frames.events(cfg.task)
    return {
      split: _file_patches(frames, positives, avoid, cfg.task, cfg, split, frame_range)
      for split, frame_range in splits.items()
    }

  def _generate_examples(self, split: str, num: int):
    cfg = self.builder_config
    t0 = time.time()
    for chunk, start in enumerate(range(0, num, _CHUNK)):
      count = min(_CHUNK, num - start)
      x, y = _synthetic_patches(cfg.task, count, chunk_seed(cfg.seed, split, chunk))
      for i in range(count):
        yield start + i, {"patch": x[i], "label": int(y[i])}
      _log(
        f"{cfg.task} {split}: generated {start + count}/{num} patches ({time.time() - t0:.0f} s)"
      )


def patches_builder(data_config, task: str) -> ClimatePatches:
  return ClimatePatches(
    config=patches_config(data_config, task),
    data_dir=data_config.get("data_dir", DEFAULT_DATA_DIR),
    file_format="array_record",
  )


# ---------------------------------------------------------------------------
# Detection builder
# ---------------------------------------------------------------------------


def _pad_boxes(
  events: pd.DataFrame, height: int, width: int, max_boxes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
  """One snapshot's events as (boxes (max_boxes, 4) float32, labels int32, mask float32, dropped).

  Boxes are clipped to the image; one that crosses the longitude seam (xmax > W
  or xmin < 0) is clipped on the side of its centre, as `synthetic` does. Where
  there are more than `max_boxes`, the largest are kept and `dropped` counts the rest.
  """
  boxes = np.zeros((max_boxes, 4), np.float32)
  labels = np.zeros(max_boxes, np.int32)
  mask = np.zeros(max_boxes, np.float32)
  if events.empty:
    return boxes, labels, mask, 0
  b = events[["ymin", "xmin", "ymax", "xmax"]].to_numpy(np.float64).copy()
  centre_x = np.mod(events["cx"].to_numpy(np.float64), width)
  # Bring every box to start within the image, then clip on the side of its centre.
  shift = np.floor(b[:, 1] / width) * width
  b[:, [1, 3]] -= shift[:, None]
  past = b[:, 3] > width
  east_side = centre_x >= width / 2
  b[past & ~east_side, 1] = 0.0
  b[past & ~east_side, 3] = b[past & ~east_side, 3] - width
  b[past & east_side, 3] = width
  b[:, [0, 2]] = np.clip(b[:, [0, 2]], 0, height)
  b[:, [1, 3]] = np.clip(b[:, [1, 3]], 0, width)
  keep = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
  b, cls = b[keep], events["class_id"].to_numpy(np.int64)[keep]
  order = np.argsort(-(b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]), kind="stable")[:max_boxes]
  k = len(order)
  boxes[:k], labels[:k], mask[:k] = b[order], cls[order], 1.0
  return boxes, labels, mask, len(b) - k


class ExtremeWeather(tfds.core.GeneratorBasedBuilder):
  """Global 16-channel snapshots with padded event boxes, for the detector."""

  VERSION = tfds.core.Version("1.0.0")
  BUILDER_CONFIG_CLASS = DetectionConfig

  def _info(self) -> tfds.core.DatasetInfo:
    cfg = self.builder_config
    n, c = cfg.max_boxes, len(variables.EXTREMEWEATHER_CHANNELS)
    origin = cfg.source if cfg.source == "synthetic" else f"{cfg.source} files {cfg.input}"
    return tfds.core.DatasetInfo(
      builder=self,
      description=(
        f"{cfg.height}x{cfg.width}x{c} snapshots ({', '.join(variables.EXTREMEWEATHER_CHANNELS)}) "
        f"from {origin}, with up to {n} boxes (ymin, xmin, ymax, xmax pixels, maxima "
        f"exclusive) of classes {', '.join(variables.CLASS_NAMES)}"
      ),
      features=tfds.features.FeaturesDict(
        {
          # Raw float32 bytes: no per-value proto encoding of 14M floats.
          "image": tfds.features.Tensor(
            shape=(cfg.height, cfg.width, c),
            dtype=np.float32,
            encoding=tfds.features.Encoding.BYTES,
          ),
          "boxes": tfds.features.Tensor(shape=(n, 4), dtype=np.float32),
          "labels": tfds.features.Tensor(shape=(n,), dtype=np.int32),
          "mask": tfds.features.Tensor(shape=(n,), dtype=np.float32),
          "time": tfds.features.Text(),
        }
      ),
      metadata=tfds.core.MetadataDict(),
      # Keep time order: index i of a split is its i-th snapshot.
      disable_shuffling=True,
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    cfg = self.builder_config
    if cfg.source == "synthetic":
      from climjax.data import synthetic

      lat, lon = synthetic.latlon_grid(cfg.height, cfg.width)
      self._set_grid(lat, lon)
      return {
        "train": self._generate_examples("train", cfg.seed, cfg.num_train),
        "test": self._generate_examples(
          "test", cfg.seed + synthetic.TEST_SEED_OFFSET, cfg.num_test
        ),
      }
    frames = _open_frames(cfg.source, cfg)
    if frames.grid.shape != (cfg.height, cfg.width):
      raise DataError(
        frames.description,
        f"grid {frames.grid.shape} differs from the {cfg.height}x{cfg.width} of the config",
      )
    if cfg.source == "netcdf":
      frames.require(variables.EXTREMEWEATHER_CHANNELS, "detection images")
    splits = _split_frames(len(frames), cfg.test_fraction, frames.description)
    _log(f"detection from {frames.description}: labelling {len(frames)} snapshots")
    events = frames.detection_events()
    self._set_grid(frames.grid.lat, frames.grid.lon)
    out = {}
    for split, frame_range in splits.items():
      cap = getattr(cfg, f"num_{split}")
      if cap:
        frame_range = frame_range[:cap]
      out[split] = self._file_examples(frames, events, split, frame_range)
    return out

  def _set_grid(self, lat: np.ndarray, lon: np.ndarray) -> None:
    self.info.metadata.update(
      {
        "lat": [float(v) for v in lat],
        "lon": [float(v) for v in lon],
        "channels": list(variables.EXTREMEWEATHER_CHANNELS),
        "boxes": "ymin, xmin, ymax, xmax in pixels, y on latitude, maxima exclusive",
        "classes": list(variables.CLASS_NAMES),
      }
    )

  def _generate_examples(self, split: str, seed: int, num: int):
    from climjax.data import synthetic

    cfg = self.builder_config
    chunk = max(1, min(64, _GENERATION_BYTES // (cfg.height * cfg.width * 16 * 4)))
    t0 = time.time()
    for c0 in range(0, num, chunk):
      n = min(chunk, num - c0)
      ds, events = synthetic.generate_fields(
        n, seed=seed, nlat=cfg.height, nlon=cfg.width, start=c0
      )
      rows = synthetic.padded_boxes(events, n, max_boxes=cfg.max_boxes)
      times = [_iso(t) for t in ds["time"].values]
      for i in range(n):
        image = np.empty(
          (cfg.height, cfg.width, len(variables.EXTREMEWEATHER_CHANNELS)), np.float32
        )
        for c, name in enumerate(variables.EXTREMEWEATHER_CHANNELS):
          image[..., c] = ds[name].values[i]
        real = rows[i, :, 4] >= 0
        yield (
          c0 + i,
          {
            "image": image,
            "boxes": np.where(real[:, None], rows[i, :, :4], 0).astype(np.float32),
            "labels": np.where(real, rows[i, :, 4], 0).astype(np.int32),
            "mask": real.astype(np.float32),
            "time": times[i],
          },
        )
      _log(f"detection {split}: generated {c0 + n}/{num} snapshots ({time.time() - t0:.0f} s)")

  def _file_examples(self, frames, events: pd.DataFrame, split: str, frame_range: range):
    cfg = self.builder_config
    by_frame = dict(tuple(events.groupby("frame")))
    empty = pd.DataFrame(columns=list(EVENT_COLUMNS))
    t0 = last = time.time()
    num_boxes = dropped = 0
    for n, frame in enumerate(frame_range):
      boxes, labels, mask, lost = _pad_boxes(
        by_frame.get(frame, empty), cfg.height, cfg.width, cfg.max_boxes
      )
      num_boxes, dropped = num_boxes + int(mask.sum()), dropped + lost
      image = frames.read(frame, variables.EXTREMEWEATHER_CHANNELS)
      yield (
        n,
        {
          "image": image,
          "boxes": boxes,
          "labels": labels,
          "mask": mask,
          "time": frames.times[frame],
        },
      )
      if time.time() - last > _LOG_EVERY_S or n == len(frame_range) - 1:
        last = time.time()
        _log(
          f"detection {split}: snapshot {n + 1}/{len(frame_range)}, {num_boxes} boxes "
          f"({time.time() - t0:.0f} s)"
        )
    if dropped:
      _log(
        f"detection {split}: {dropped} boxes beyond max_boxes={cfg.max_boxes} left out (the smallest)"
      )


def detection_builder(data_config) -> ExtremeWeather:
  """The `extreme_weather` builder for `config.data` (see `detection_config`).

  Use as `sources, stats = prepare(detection_builder(config.data), key="image")`;
  examples have the keys `DETECTION_KEYS` (module docstring).
  """
  return ExtremeWeather(
    config=detection_config(data_config),
    data_dir=data_config.get("data_dir", DEFAULT_DATA_DIR),
    file_format="array_record",
  )


# ---------------------------------------------------------------------------
# Reading back: statistics and the decoded cache
# ---------------------------------------------------------------------------


def _stats_path(builder: tfds.core.DatasetBuilder) -> str:
  return os.path.join(str(builder.data_dir), "stats.json")


def _batch_size(source, budget_bytes: int = 64 << 20) -> int:
  """Examples per read so that one read holds about `budget_bytes`."""
  row = source[0]
  size = sum(np.asarray(v).nbytes for v in row.values())
  return max(1, min(1024, budget_bytes // max(size, 1)))


def compute_stats(source, key: str, batch: int | None = None) -> stats_lib.ChannelStats:
  """Per-channel statistics of `key` over a random-access source, streamed.

  `batch` examples are read at a time; by default as many as fit in ~64 MB
  (1,024 TC patches, one 768x1152x16 image).
  """
  batch = batch or _batch_size(source)
  acc = stats_lib.ChannelStats()
  for start in range(0, len(source), batch):
    rows = source.__getitems__(list(range(start, min(start + batch, len(source)))))
    acc.update(np.stack([r[key] for r in rows]))
  return acc


class DecodedSource:
  """A split decoded once into one .npy file per feature, read through memory maps.

  The same random-access interface as tfds's ArrayRecordDataSource (`len`,
  `source[i]`, `source.__getitems__(indices)` -> list of dicts), but a read of
  many examples is one array gather per feature instead of a proto parse per
  example. `read_batch(indices)` gives the stacked arrays directly.
  """

  def __init__(self, directory: str):
    self.directory = directory
    self.arrays = {
      name[: -len(".npy")]: np.load(os.path.join(directory, name), mmap_mode="r")
      for name in sorted(os.listdir(directory))
      if name.endswith(".npy")
    }
    lengths = {len(v) for v in self.arrays.values()}
    if len(lengths) != 1:
      raise ValueError(f"{directory}: decoded features have different lengths {lengths}")
    self._len = lengths.pop()

  def __len__(self) -> int:
    return self._len

  def read_batch(self, indices) -> dict[str, np.ndarray]:
    idx = np.asarray(indices, np.int64)
    return {k: np.asarray(v[idx]) for k, v in self.arrays.items()}

  def __getitems__(self, indices) -> list[dict]:
    batch = self.read_batch(indices)
    return [{k: v[i] for k, v in batch.items()} for i in range(len(indices))]

  def __getitem__(self, index: int) -> dict:
    if not -self._len <= index < self._len:
      raise IndexError(f"index {index} out of range for {self._len} examples")
    return {k: np.array(v[index]) for k, v in self.arrays.items()}

  def __reduce__(self):
    # Reopen the files in the receiving process rather than pickling the arrays' contents.
    return (type(self), (self.directory,))

  def __repr__(self) -> str:
    return f"DecodedSource({self.directory!r}, {self._len} examples, keys {sorted(self.arrays)})"


def decode_split(source, directory: str) -> DecodedSource:
  """Decodes every example of `source` into `directory` (written whole, then renamed)."""
  if os.path.isdir(directory):
    return DecodedSource(directory)
  n = len(source)
  tmp = f"{directory}.incomplete-{os.getpid()}"
  shutil.rmtree(tmp, ignore_errors=True)
  os.makedirs(tmp)
  try:
    batch = _batch_size(source)
    first = source[0]
    arrays, texts = {}, {}
    for k, v in first.items():
      if isinstance(v, bytes | str) or np.asarray(v).dtype.kind in "OSU":
        texts[k] = []  # variable-length strings: gathered, saved at the end
      else:
        v = np.asarray(v)
        arrays[k] = np.lib.format.open_memmap(
          os.path.join(tmp, f"{k}.npy"), mode="w+", dtype=v.dtype, shape=(n, *v.shape)
        )
    for start in range(0, n, batch):
      rows = source.__getitems__(list(range(start, min(start + batch, n))))
      for k, out in arrays.items():
        out[start : start + len(rows)] = np.stack([r[k] for r in rows])
      for k, out in texts.items():
        out.extend(r[k] for r in rows)
    for out in arrays.values():
      out.flush()
    for k, values in texts.items():
      np.save(os.path.join(tmp, f"{k}.npy"), np.asarray(values, dtype=np.bytes_))
    del arrays
    try:
      os.rename(tmp, directory)
    except OSError:
      if not os.path.isdir(directory):  # another process finished first otherwise
        raise
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return DecodedSource(directory)


def _decoded(builder, split: str, source, cache: bool | None):
  if cache is False or len(source) == 0:
    return source
  row = source[0]
  size = len(source) * sum(np.asarray(v).nbytes for v in row.values())
  if cache is None and size > DECODED_CACHE_MAX_BYTES:
    return source
  directory = os.path.join(str(builder.data_dir), "decoded", split)
  try:
    os.makedirs(os.path.dirname(directory), exist_ok=True)
    if not os.path.isdir(directory):
      t0 = time.time()
      decoded = decode_split(source, directory)
      _log(f"decoded {split} ({size / 2**20:,.0f} MiB) into {directory} ({time.time() - t0:.0f} s)")
      return decoded
    return DecodedSource(directory)
  except OSError as e:
    # A read-only or full data_dir: the array_record source works, only slower.
    warnings.warn(
      f"cannot cache decoded {split} split in {directory} ({e}); reading records", stacklevel=3
    )
    return source


def prepare(
  builder: tfds.core.DatasetBuilder, *, key: str, cache: bool | None = None
) -> tuple[dict, dict]:
  """Builds the dataset if needed; returns ({split: source}, stats) with stats from train.

  `cache`: decode each split once into memory-mapped arrays (`DecodedSource`);
  None decodes splits of at most `DECODED_CACHE_MAX_BYTES` and reads larger
  ones record by record (tfds's ArrayRecordDataSource). Either source gives
  the same examples.
  """
  tfds.disable_progress_bar()  # our own progress lines instead of tqdm's
  builder.download_and_prepare(file_format="array_record")
  sources = {
    split: _decoded(builder, split, source, cache)
    for split, source in builder.as_data_source().items()
  }
  path = _stats_path(builder)
  if not os.path.exists(path):
    stats_lib.save(compute_stats(sources["train"], key).finalize(), path)
  return sources, stats_lib.load(path)
