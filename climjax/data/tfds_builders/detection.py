"""The `extreme_weather` builder: global 16-channel snapshots with padded event boxes.

For the detector (Racah et al. 2017).
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import tensorflow_datasets as tfds

from climjax.data import variables
from climjax.data.errors import DataError
from climjax.data.tfds_builders.configs import (
  _LOG_EVERY_S,
  ALL_CRITERIA_SUFFIX,
  DEFAULT_DATA_DIR,
  DETECTION_MAX_BOXES,
  NONFINITE_SUFFIX,
  DetectionConfig,
  _check_sizes,
  _digest,
  _event_knobs,
  _file_fields,
  _log,
  _nonfinite,
  _require_all_criteria,
  parse_event_knobs,
)
from climjax.data.tfds_builders.frames import (
  EVENT_COLUMNS,
  _input_grid,
  _iso,
  _open_frames,
  _split_frames,
  masked_note,
  record_criteria,
)

DETECTION_KEYS: tuple[str, ...] = ("image", "boxes", "labels", "mask", "time")

_GENERATION_BYTES = 256 << 20  # synthetic snapshots generated per call, in bytes


def detection_config(data_config) -> DetectionConfig:
  """The builder config for `config.data` of the detector.

  Reads `source`, `num_train`, `num_test`, `seed` and, where present, `input`,
  `variables_map`, `box_order`, `test_fraction`, `max_boxes` (default 15) and,
  for synthetic data, `height` and `width` (default 768 x 1152). For file
  sources the grid is read off the input (which must exist, else DataError).
  Synthetic data also read the event knobs (`synthetic.EVENT_KNOBS`: `tc_rate`,
  `ar_intensity`, ...); those other than 1.0 end the dataset's name. File
  sources read `nonfinite` ("refuse", or "mask": `NONFINITE_SUFFIX` ends the name),
  netcdf `require_all_criteria` (`ALL_CRITERIA_SUFFIX` ends the name).
  """
  source = data_config.source
  files = _file_fields(data_config, source)
  _check_sizes(data_config, source)
  knobs = _event_knobs(data_config, source)
  nonfinite = _nonfinite(data_config, source)
  all_criteria = _require_all_criteria(data_config, source)
  if source == "synthetic":
    height, width = int(data_config.get("height", 768)), int(data_config.get("width", 1152))
    where = f"{height}x{width}"
  else:
    height, width = _input_grid(source, files, nonfinite)
    where = f"{_digest(files)}-{height}x{width}"
  max_boxes = int(data_config.get("max_boxes", DETECTION_MAX_BOXES))
  if max_boxes < 1:
    raise ValueError(f"data.max_boxes must be >= 1, got {max_boxes}")
  name = (
    f"{source}-{where}-train{data_config.num_train}-test{data_config.num_test}"
    f"-seed{data_config.seed}-boxes{max_boxes}"
  ) + "".join(f"-{knob.replace('=', '')}" for knob in knobs.split(",") if knob)
  name += NONFINITE_SUFFIX if nonfinite == "mask" else ""
  name += ALL_CRITERIA_SUFFIX if all_criteria else ""
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
    nonfinite=nonfinite,
    require_all_criteria=all_criteria,
    event_knobs=knobs,
    **files,
  )


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

  VERSION = tfds.core.Version("1.1.0")  # 1.1: heuristic AR boxes from mode="auto" (file sources)
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
    record_criteria(self.info.metadata, frames, "detection")
    self._set_grid(frames.grid.lat, frames.grid.lon, getattr(frames, "calendar", None))
    self.info.metadata["nonfinite"] = {"policy": cfg.nonfinite, "masked": {}}
    out = {}
    for split, frame_range in splits.items():
      cap = getattr(cfg, f"num_{split}")
      if cap:
        frame_range = frame_range[:cap]
      out[split] = self._file_examples(frames, events, split, frame_range)
    return out

  def _set_grid(self, lat: np.ndarray, lon: np.ndarray, calendar: str | None = None) -> None:
    self.info.metadata.update(
      {
        "lat": [float(v) for v in lat],
        "lon": [float(v) for v in lon],
        # The CF calendar of the "time" strings (360_day dates are no datetime64).
        "calendar": calendar or "standard",
        "channels": list(variables.EXTREMEWEATHER_CHANNELS),
        "boxes": "ymin, xmin, ymax, xmax in pixels, y on latitude, maxima exclusive",
        "classes": list(variables.CLASS_NAMES),
      }
    )

  def _generate_examples(self, split: str, seed: int, num: int):
    from climjax.data import synthetic

    cfg = self.builder_config
    chunk = max(1, min(64, _GENERATION_BYTES // (cfg.height * cfg.width * 16 * 4)))
    knobs = parse_event_knobs(cfg.event_knobs)
    t0 = time.time()
    for c0 in range(0, num, chunk):
      n = min(chunk, num - c0)
      ds, events = synthetic.generate_fields(
        n, seed=seed, nlat=cfg.height, nlon=cfg.width, start=c0, **knobs
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
    before = dict(frames.masked)
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
    note = masked_note(frames, before)
    if note:
      _log(
        f"detection {split}: data.nonfinite='mask' filled {note} that were NaN or Inf with "
        "the snapshot's mean of the field"
      )
    # Recorded beside the dataset (dataset_info's metadata), per split and field.
    counts = {k: v - before.get(k, 0) for k, v in frames.masked.items()}
    self.info.metadata["nonfinite"]["masked"][split] = {k: v for k, v in counts.items() if v}


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
