"""Global fields for the detector, held in memory: synthetic or read from files.

`load_split` gives one split as arrays of `BATCH_KEYS` (fields, padded boxes,
box classes and mask, and which examples are labelled) plus the grid, times
and channel names; `ArraySource` and `Windows` make them random-access for
`data.pipeline` without copies. numpy only (no JAX).
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import re
import shutil
import tempfile

import numpy as np

from climjax.data import synthetic
from climjax.data.stats import ChannelStats
from climjax.errors import ConfigError

BATCH_KEYS = ("fields", "boxes", "box_classes", "box_mask", "labelled")
GENERATION_CHUNK = 64  # synthetic snapshots generated per call


class ArraySource:
  """A random-access source over equal-length arrays, for `data.pipeline`."""

  def __init__(self, arrays: dict[str, np.ndarray]):
    self.arrays = arrays
    self._len = len(next(iter(arrays.values())))

  def __len__(self) -> int:
    return self._len

  def __getitems__(self, indices):
    return [{k: v[i] for k, v in self.arrays.items()} for i in indices]


class Windows:
  """Example i is snapshots[i : i + T]: (T, H, W, C) windows of consecutive fields.

  Indexes like the (N, T, H, W, C) array it stands for without building it,
  which would hold every snapshot T times.
  """

  def __init__(self, snapshots: np.ndarray, time_steps: int):
    self.snapshots = snapshots
    self.time_steps = time_steps
    self.shape = (len(snapshots) - time_steps + 1, time_steps, *snapshots.shape[1:])
    self.ndim, self.dtype = len(self.shape), snapshots.dtype
    self.size = int(np.prod(self.shape))

  def __len__(self) -> int:
    return self.shape[0]

  def __getitem__(self, index):
    if isinstance(index, slice):
      return np.stack([self[i] for i in range(*index.indices(len(self)))])
    index = int(index)
    if not -len(self) <= index < len(self):
      raise IndexError(f"window {index} out of range for {len(self)} windows")
    index %= len(self)
    return self.snapshots[index : index + self.time_steps]


def labelled_mask(num: int, fraction: float, seed: int) -> np.ndarray:
  """1 for a seeded random `round(fraction * num)` of the examples, else 0."""
  order = np.random.default_rng([seed, 1]).permutation(num)
  mask = np.zeros(num, np.float32)
  mask[order[: int(round(fraction * num))]] = 1.0
  return mask


def _split_seed(data_config, split: str) -> int:
  return data_config.seed + (0 if split == "train" else synthetic.TEST_SEED_OFFSET)


def _event_knobs(data_config) -> dict:
  try:
    return synthetic.event_knobs(data_config)  # tc_rate, ar_intensity, ... (1.0 where absent)
  except ValueError as e:
    raise ConfigError(f"data.{e}") from e


def _generator_fingerprint() -> str:
  """A hash of the synthetic generator's source: a changed generator never reads an old cache."""
  digest = hashlib.sha256()
  for path in sorted(pathlib.Path(synthetic.__file__).parent.glob("*.py")):
    digest.update(path.read_bytes())
  return digest.hexdigest()[:16]


def _cached_synthetic_snapshots(data_config, split: str, steps: int) -> dict:
  """`_synthetic_snapshots`, kept in `data.synthetic_cache` (a directory) and memory-mapped.

  Runs of a study that differ only in what they train (seeds, labelled
  fraction, loss weights) share the same generated fields; generating the
  demo's 800 fields takes ~50 s of the 2-core machine, reading them back ~1 s.
  The key is every generation input plus the generator's source; a cache entry
  is written to a temporary directory and renamed, so a killed run leaves none half-written.
  """
  key = json.dumps(
    {
      "seed": _split_seed(data_config, split), "steps": steps, "height": data_config.height,
      "width": data_config.width, "channels": list(data_config.channels),
      "max_boxes": data_config.max_boxes, "knobs": _event_knobs(data_config),
      "generator": _generator_fingerprint(),
    },
    sort_keys=True,
  )  # fmt: skip
  name = f"{split}-{hashlib.sha256(key.encode()).hexdigest()[:20]}"
  path = pathlib.Path(data_config.synthetic_cache) / name
  if not (path / "key.json").exists():
    data = _synthetic_snapshots(data_config, split, steps)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{name}-", dir=path.parent))
    for k, v in data.items():
      np.save(tmp / f"{k}.npy", np.asarray(v))
    (tmp / "key.json").write_text(key)
    try:
      os.rename(tmp, path)
    except OSError:  # another process wrote the same entry first
      shutil.rmtree(tmp, ignore_errors=True)
  out = {k: np.load(path / f"{k}.npy", mmap_mode="r" if k == "fields" else None)
         for k in ("fields", "boxes", "box_classes", "box_mask", "times", "lats", "lons")}  # fmt: skip
  out["channels"] = tuple(str(c) for c in np.load(path / "channels.npy"))
  return out


def _synthetic_snapshots(data_config, split: str, steps: int) -> dict:
  """`steps` consecutive synthetic snapshots with their padded boxes, in memory."""
  seed = _split_seed(data_config, split)
  channels = tuple(data_config.channels)
  h, w = data_config.height, data_config.width
  # Generated in chunks straight into one array: the generator's own per-variable
  # arrays are as large as the result, so a single call would need twice the memory.
  fields = np.empty((steps, h, w, len(channels)), np.float32)
  rows = np.empty((steps, data_config.max_boxes, 5), np.int32)
  times = []
  knobs = _event_knobs(data_config)
  for c0 in range(0, steps, GENERATION_CHUNK):
    n = min(GENERATION_CHUNK, steps - c0)
    ds, events = synthetic.generate_fields(n, seed=seed, nlat=h, nlon=w, start=c0, **knobs)
    for k, name in enumerate(channels):
      fields[c0 : c0 + n, ..., k] = ds[name].values
    rows[c0 : c0 + n] = synthetic.padded_boxes(events, n, max_boxes=data_config.max_boxes)
    times.append(ds["time"].values)
  return {
    "fields": fields,
    "boxes": rows[..., :4].astype(np.float32),
    "box_classes": np.maximum(rows[..., 4], 0).astype(np.int32),
    "box_mask": (rows[..., 4] >= 0).astype(np.float32),
    "times": np.concatenate(times),
    "lats": ds["lat"].values,
    "lons": ds["lon"].values,
    "channels": channels,
  }


# CF calendars whose dates are numpy's datetime64 (proleptic Gregorian, close enough to
# "standard" after 1582); other calendars' dates are cftime's (360_day has 30 February).
_DATETIME64_CALENDARS = ("standard", "gregorian", "proleptic_gregorian")
_ISO = re.compile(r"(-?\d+)-(\d\d)-(\d\d)(?:[T ](\d\d):(\d\d)(?::(\d\d))?)?")


def _parse_times(raw, calendar: str = "standard") -> np.ndarray:
  """ISO dates (bytes or str) as datetime64, or as cftime dates on a calendar numpy lacks;
  snapshot numbers where the input has no dates (ExtremeWeather's 'climo_1979.h5[3]')."""
  strings = [t.decode() if isinstance(t, bytes) else str(t) for t in raw]
  if calendar not in _DATETIME64_CALENDARS:
    import cftime  # noqa: PLC0415  (file sources only)

    matches = [_ISO.fullmatch(t) for t in strings]
    if all(matches):
      return np.array(
        [cftime.datetime(*(int(g or 0) for g in m.groups()), calendar=calendar) for m in matches]
      )
  try:
    return np.array([np.datetime64(t) for t in strings])
  except ValueError:
    return np.arange(len(strings))


def _file_snapshots(data_config, split: str) -> dict:
  """The snapshots of an ExtremeWeather HDF5 or CAM5 netCDF split (boxes from the
  files or from the TECA-style heuristics), built once into a tfds dataset in
  `data.data_dir` and read through memory maps of its decoded cache."""
  from climjax.data import tfds_builders, variables  # noqa: PLC0415  (tensorflow-datasets)

  if tuple(data_config.channels) != tuple(variables.EXTREMEWEATHER_CHANNELS):
    raise ConfigError(
      f"data.channels must be the 16 ExtremeWeather variables "
      f"{', '.join(variables.EXTREMEWEATHER_CHANNELS)} (in that order) for "
      f"data.source={data_config.source!r}, got {tuple(data_config.channels)}"
    )
  try:
    builder = tfds_builders.detection_builder(data_config)
  except ValueError as e:  # a bad data.* field, named in the message
    raise ConfigError(str(e)) from e
  grid = (builder.builder_config.height, builder.builder_config.width)
  if grid != (data_config.height, data_config.width):
    raise ConfigError(
      f"data.input {data_config.input!r} is on a {grid[0]}x{grid[1]} grid but "
      f"data.height x data.width = {data_config.height}x{data_config.width}; set "
      f"--config.data.height={grid[0]} --config.data.width={grid[1]}"
    )
  sources, _ = tfds_builders.prepare(builder, key="image", cache=True)
  # items(): tfds' lazily loaded metadata is read on items(), not on get().
  metadata = dict(builder.info.metadata.items())
  masked = metadata.get("nonfinite", {}).get("masked", {}).get(split)
  if masked:  # said again whenever the dataset is read, not only when it was built
    print(
      f"[climjax] data.nonfinite='mask': {sum(masked.values())} NaN or Inf values of the "
      f"{split} split of {data_config.input} were filled with the snapshot's field mean "
      f"({', '.join(f'{k} {v}' for k, v in sorted(masked.items()))})",
      flush=True,
    )
  source = sources[split]
  if isinstance(source, tfds_builders.DecodedSource):
    arrays = source.arrays
  else:  # no writable cache: read the split into memory
    rows = source.__getitems__(range(len(source)))
    arrays = {k: np.stack([r[k] for r in rows]) for k in tfds_builders.DETECTION_KEYS}
  meta = builder.info.metadata
  return {
    "fields": arrays["image"],
    "boxes": np.asarray(arrays["boxes"], np.float32),
    "box_classes": np.asarray(arrays["labels"], np.int32),
    "box_mask": np.asarray(arrays["mask"], np.float32),
    "times": _parse_times(arrays["time"], meta.get("calendar", "standard")),
    "lats": np.asarray(meta["lat"]),
    "lons": np.asarray(meta["lon"]),
    "channels": tuple(variables.EXTREMEWEATHER_CHANNELS),
  }


def load_split(data_config, split: str, *, time_steps: int = 1, temporal: str = "pool") -> dict:
  """One split of global fields: arrays of BATCH_KEYS plus lats, lons, times, channels.

  `data.source="synthetic"`: consecutive 6-hourly snapshots of
  `synthetic.generate_fields` (events move and evolve between them); the test
  split comes from another seed, so it never shares a field or an event with
  training; `data.tc_rate`, `data.ar_intensity`, ... (`synthetic.EVENT_KNOBS`,
  1.0 where absent) set the event climate. "extremeweather" / "netcdf": the
  files named by `data.input` (netCDF boxes: `heuristics.label_events`), split
  in time by `data.test_fraction` (climjax.data.tfds_builders). With
  time_steps T > 1 each example is a window of T consecutive snapshots,
  (T, H, W, C) (a `Windows` view); its boxes are those of the last snapshot ("pool": the network
  sees the past to find what is there now) or of every snapshot ("keep").
  Fields keep their physical units; `stats.normalizer` standardises them.
  """
  if data_config.source == "synthetic":
    num = data_config.num_train if split == "train" else data_config.num_test
    generate = (
      _cached_synthetic_snapshots if data_config.get("synthetic_cache") else _synthetic_snapshots
    )
    data = generate(data_config, split, num + time_steps - 1)
  else:
    data = _file_snapshots(data_config, split)
    num = len(data["fields"]) - time_steps + 1
    if num < 1:
      raise ConfigError(
        f"the {split} split of {data_config.input!r} has {len(data['fields'])} snapshots, "
        f"fewer than model.time_steps={time_steps}"
      )
  if time_steps > 1:
    window = np.arange(num)[:, None] + np.arange(time_steps)[None, :]
    data["fields"], data["times"] = Windows(data["fields"], time_steps), data["times"][window]
    pick = window if temporal == "keep" else window[:, -1]
    for key in ("boxes", "box_classes", "box_mask"):
      data[key] = data[key][pick]
  seed = _split_seed(data_config, split)
  data["labelled"] = (
    labelled_mask(num, data_config.labelled_fraction, seed)
    if split == "train"
    else np.ones(num, np.float32)
  )
  return data


def channel_stats(fields: np.ndarray | Windows, chunk: int = 32) -> dict:
  """Per-channel mean and std of the fields, accumulated a few snapshots at a time."""
  snapshots = fields.snapshots if isinstance(fields, Windows) else fields
  acc = ChannelStats()
  for start in range(0, len(snapshots), chunk):
    acc.update(snapshots[start : start + chunk])
  return acc.finalize()
