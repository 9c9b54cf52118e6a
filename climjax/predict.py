"""A trained detector applied to new files: restore, stream, batch, decode, place on the globe.

Used by launch/predict.py (and notebooks). The training run's workdir holds all
that is needed: `config.json` (the network and its input), `stats.json` (the
per-channel normalisation of the training fields) and `checkpoints/` (orbax).

Snapshots are read a few at a time from the files (`open_frames`: CAM5 / CF
netCDF through climjax.data.netcdf, or ExtremeWeather HDF5), so memory stays
constant however many files there are; they go through the jitted predictor
in fixed-size batches aligned to the global snapshot index (the last one
padded), so each snapshot meets the same computation whichever process or
batch it falls in, and detections do not depend on how the work was split.

`heuristic_detections` gives the same table from the TECA-style heuristics
instead of a network (no training needed), so learned and heuristic events can
be compared with the same tracker and climatology.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Callable, Iterable, Sequence

import cftime
import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from climjax import checkpointing
from climjax.data import stats as stats_lib
from climjax.data.errors import DataError
from climjax.data.stats import normalizer
from climjax.errors import ConfigError
from climjax.evaluation import detection
from climjax.models import detector
from climjax.training import steps

TIME_UNITS = "days since 0001-01-01 00:00:00"
OPEN_FILES = 1  # netCDF files held open while streaming (see open_frames)
DETECTION_KEYS = (
  "snapshot", "class_id", "score", "lat", "lon", "lat_min", "lat_max", "lon_min", "lon_max",
)  # fmt: skip


@dataclasses.dataclass
class Trained:
  """What a training run left that prediction needs."""

  workdir: str
  config: ml_collections.ConfigDict
  params: dict
  stats: dict
  step: int
  predict_fn: Callable  # jit(params, normalised fields) -> head outputs


def _fail(path: str, what: str) -> ConfigError:
  return ConfigError(f"{path}: {what}")


def load_trained(workdir: str, *, log=print) -> Trained:
  """Config, statistics and the newest checkpoint's parameters of a detector's workdir."""
  config_path = os.path.join(workdir, "config.json")
  if not os.path.exists(config_path):
    raise _fail(
      workdir, "no config.json: not a climjax training workdir (train with launch/main.py)"
    )
  with open(config_path) as f:
    config = ml_collections.ConfigDict(json.load(f))
  if config.get("task") != "detection":
    raise _fail(
      config_path, f"task is {config.get('task')!r}; launch/predict.py applies the detector "
      "(configs/semisup.py)",
    )  # fmt: skip
  if config.model.time_steps != 1 and config.model.temporal != "pool":
    raise _fail(config_path, "a 3-D detector with model.temporal='keep' cannot predict yet")
  if config.parallel.get("strategy") == "hybrid":
    raise _fail(workdir, "a hybrid run keeps its parameters in parameter_servers/; "
                "predict from a single or sync run")  # fmt: skip
  model = detector.make_detector(config.model)
  shape = (1, *([config.model.time_steps] if config.model.time_steps > 1 else []),
           config.data.height, config.data.width, len(config.data.channels))  # fmt: skip
  expected = jax.eval_shape(lambda: model.init(jax.random.key(0), np.zeros(shape, np.float32)))
  params, step = _restore_params(os.path.join(workdir, "checkpoints"), expected["params"])
  stats = _training_stats(workdir, config, log)
  predict_fn = jax.jit(lambda p, x: _heads(steps.predict_step(p, x, apply_fn=model.apply)))
  return Trained(workdir, config, params, stats, step, predict_fn)


def _heads(outputs: dict) -> dict:
  return {k: outputs[k] for k in ("objectness", "classes", "boxes")}


def _restore_params(directory: str, expected) -> tuple[dict, int]:
  """The newest checkpoint's parameters, checked leaf by leaf against the config's network."""
  if not os.path.isdir(directory):
    raise _fail(
      directory, "no checkpoints: train first (launch/main.py --config=configs/semisup.py)"
    )
  manager = checkpointing.make_manager(directory)
  step = manager.latest_step()
  if step is None:
    raise _fail(directory, "no finished checkpoint")
  state = manager.restore(step, args=ocp.args.StandardRestore())
  manager.close()
  params = state["params"] if isinstance(state, dict) and "params" in state else None
  if params is None:
    raise _fail(directory, f"checkpoint {step} holds no 'params'")
  got = jax.tree_util.tree_flatten_with_path(params)[0]
  want = jax.tree_util.tree_flatten_with_path(expected)[0]
  got_shapes = {jax.tree_util.keystr(k): np.shape(v) for k, v in got}
  for k, v in want:
    name = jax.tree_util.keystr(k)
    if got_shapes.get(name) != tuple(v.shape):
      raise _fail(
        directory,
        f"checkpoint {step} does not fit the network of config.json: parameter {name} is "
        f"{got_shapes.get(name)}, the config's network needs {tuple(v.shape)} (a checkpoint "
        "from another config?)",
      )
  return jax.tree.map(np.asarray, params), int(step)


def _training_stats(workdir: str, config, log) -> dict:
  path = os.path.join(workdir, "stats.json")
  if os.path.exists(path):
    return stats_lib.load(path)
  from climjax.data import fields  # noqa: PLC0415

  log(f"[predict] {workdir} has no stats.json (trained before climjax wrote one): "
      "recomputing the normalisation from the training data in config.json")  # fmt: skip
  train = fields.load_split(config.data, "train")
  return fields.channel_stats(train["fields"])


# ---------------------------------------------------------------------------
# Input frames.


def open_frames(
  source: str, pattern: str, *, variables_map: str = "", box_order: str = "", nonfinite="refuse"
):
  """The snapshots of `pattern` as frames: `len`, `read(i, channels)`, `times`, `grid`,
  `require(channels, why)`, `description` (climjax.data.tfds_builders.frames).

  A NaN or Inf in a snapshot is refused naming the file, field and step, or with
  `nonfinite="mask"` filled (the count is in `frames.masked`).
  """
  import xarray as xr  # noqa: PLC0415

  from climjax.data.tfds_builders import frames  # noqa: PLC0415  (tensorflow-datasets)

  # Every open netCDF-4 file keeps an HDF5 chunk cache per variable, filled as
  # it is read and freed only when the file closes: with all files open,
  # memory grew by a whole snapshot per snapshot read (9.7 GB for 2,400 at
  # 192 x 288). Snapshots are read in time order, so a few open files suffice;
  # xarray closes the least recently used ones and reopens them if needed: with
  # one open file, peak memory was 1.70 GB for 240 snapshots and 1.73 GB for 2,400.
  xr.set_options(file_cache_maxsize=OPEN_FILES)
  cfg = ml_collections.ConfigDict(
    {
      "input": pattern,
      "variables_map": variables_map,
      "box_order": box_order,
      "nonfinite": nonfinite,
      "require_all_criteria": False,
    }
  )
  return frames._open_frames(source, cfg)


def check_frames(frames, config) -> None:
  """The input's grid and variables against what the network was trained on."""
  grid = tuple(frames.grid.shape)
  if grid != (config.data.height, config.data.width):
    raise DataError(
      frames.description,
      f"the files are on a {grid[0]}x{grid[1]} grid but the detector was trained on "
      f"{config.data.height}x{config.data.width} fields; regrid the input (e.g. cdo remapbil) "
      "or train on this grid (--config.data.height/width)",
      "grid",
    )
  frames.require(
    [c for c in config.data.channels if c != "LANDFRAC"], "the detector's input channels"
  )


def numeric_times(frames, calendar_hint: str = "noleap") -> tuple[np.ndarray, str, str]:
  """(time of every snapshot as a number, units, calendar)."""
  ds = getattr(frames, "ds", None)
  if ds is not None:
    values = ds["time"].values
    if len(values) and isinstance(values[0], cftime.datetime):
      calendar = values[0].calendar
      return np.asarray(cftime.date2num(list(values), TIME_UNITS, calendar), np.float64), \
        TIME_UNITS, calendar  # fmt: skip
    if np.issubdtype(np.asarray(values).dtype, np.datetime64):
      days = (np.asarray(values, "datetime64[s]") - np.datetime64("1970-01-01")) / np.timedelta64(
        1, "D"
      )
      return days.astype(np.float64), "days since 1970-01-01 00:00:00", "proleptic_gregorian"
  # ExtremeWeather files hold no times: 4 images a day from 1 January of the year
  # in the file name (climo_1979.h5), else of year 1.
  times = []
  for label in frames.times:
    name, _, index = label.rpartition("[")
    year = re.search(r"(1[89]\d\d|2[01]\d\d)", name)
    start = cftime.date2num(cftime.datetime(int(year.group(1)) if year else 1, 1, 1,
                                            calendar=calendar_hint), TIME_UNITS, calendar_hint)  # fmt: skip
    times.append(start + 0.25 * int(index.rstrip("]") or 0))
  return np.asarray(times, np.float64), TIME_UNITS, calendar_hint


# ---------------------------------------------------------------------------
# Prediction.


def batches_of(indices: Sequence[int], batch_size: int) -> list[list[int]]:
  """The global batches (consecutive snapshot indices, batch_size each) covering `indices`."""
  wanted = set(indices)
  starts = sorted({i - i % batch_size for i in wanted})
  return [[i for i in range(s, s + batch_size) if i in wanted] for s in starts]


def predict_frames(
  trained: Trained, frames, batch: Sequence[int], *, batch_size: int
) -> list[dict]:
  """Post-NMS detections (pixel boxes) of the snapshots `batch` (one global batch)."""
  config = trained.config
  channels = list(config.data.channels)
  steps_back = config.model.time_steps
  images = []
  for i in batch:
    if steps_back > 1:  # a window of the snapshots up to i (repeating the first at the start)
      window = [frames.read(max(j, 0), channels) for j in range(i - steps_back + 1, i + 1)]
      images.append(np.stack(window))
    else:
      images.append(frames.read(i, channels))
  x = np.stack(images)
  check_finite(x, frames, batch, channels)
  padded = np.concatenate([x, np.repeat(x[-1:], batch_size - len(x), axis=0)])
  normalised = normalizer(trained.stats, "fields")({"fields": padded})["fields"]
  out = jax.device_get(trained.predict_fn(trained.params, normalised))
  out = {k: v[: len(batch)] for k, v in out.items()}
  return detection.postprocess(
    out,
    cell_size=2**config.model.num_layers,
    anchor_size=config.model.anchor_size,
    score_threshold=config.eval.score_threshold,
    nms_iou_threshold=config.eval.nms_iou_threshold,
    max_detections=config.eval.max_detections,
    image_shape=(config.data.height, config.data.width),
  )


def check_finite(x: np.ndarray, frames, batch: Sequence[int], channels: Sequence[str]) -> None:
  bad = ~np.isfinite(x)
  if bad.any():
    where = np.argwhere(bad)[0]
    raise DataError(
      frames.description,
      f"non-finite values at snapshot {frames.times[batch[where[0]]]}: the detector needs "
      "complete fields (fill or mask them first)",
      channels[where[-1]],
    )


def to_table(found: Iterable[tuple[int, dict]], lats: np.ndarray, lons: np.ndarray) -> dict:
  """{key: array} over all detections of (snapshot, detections) pairs, boxes in degrees."""
  rows = {k: [] for k in DETECTION_KEYS}
  for snapshot, d in found:
    boxes = np.asarray(d["boxes"], np.float64).reshape(-1, 4)
    if not len(boxes):
      continue
    lat0, lon0, lat1, lon1 = detection.box_edges_degrees(boxes, lats, lons)
    rows["snapshot"].append(np.full(len(boxes), snapshot, np.int64))
    rows["class_id"].append(np.asarray(d["labels"], np.int64).reshape(-1))
    rows["score"].append(np.asarray(d["scores"], np.float64).reshape(-1))
    rows["lat_min"].append(np.minimum(lat0, lat1))
    rows["lat_max"].append(np.maximum(lat0, lat1))
    rows["lon_min"].append(lon0)
    rows["lon_max"].append(lon1)
    rows["lat"].append((lat0 + lat1) / 2)
    rows["lon"].append(np.mod((lon0 + lon1) / 2, 360.0))
  dtypes = {"snapshot": np.int64, "class_id": np.int64}
  return {
    k: np.concatenate(v) if v else np.zeros(0, dtypes.get(k, np.float64)) for k, v in rows.items()
  }


def sort_table(table: dict) -> dict:
  """Time order, then descending score: the order every split of the work gives."""
  order = np.lexsort((-table["score"], table["class_id"], table["snapshot"]))
  return {k: v[order] for k, v in table.items()}


def heuristic_detections(frames, indices: Sequence[int]) -> list[tuple[int, dict]]:
  """The TECA-style heuristics' boxes (score 1) of the snapshots `indices` as detections."""
  rows = frames.detection_events()
  rows = rows[rows["frame"].isin(list(indices))]
  found = []
  for i in indices:
    r = rows[rows["frame"] == i]
    found.append((i, {
      "boxes": r[["ymin", "xmin", "ymax", "xmax"]].to_numpy(np.float64),
      "labels": r["class_id"].to_numpy(np.int64),
      "scores": np.ones(len(r)),
    }))  # fmt: skip
  return found
