"""Streaming per-channel normalisation statistics: mean, std, min, max.

A year of 25 km CAM5 fields does not fit in memory, so the statistics are
accumulated batch by batch with the parallel update of Chan, Golub & LeVeque
(1979) for the mean and the sum of squared deviations (M2), in float64: a
float32 sum of squares loses every digit of the variance of PSL (~1e5 Pa,
varying by ~1e3). `merge` combines the accumulators of several workers or
MPI ranks the same way. NaNs (missing values) are skipped and counted.

The finished statistics are a plain dict of per-channel arrays (what the
training transforms index), saved as JSON beside the data set they describe
(`stats_path`), written atomically, and applied with `normalize`.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence

import numpy as np

_ARRAYS = ("mean", "std", "min", "max", "num_missing")


class ChannelStats:
  """Accumulates statistics over all but the last axis of arrays (..., C) given to `update`.

  `channels` names the C channels; without it the count is taken from the
  first batch and the channels are unnamed.
  """

  def __init__(self, channels: Sequence[str] | None = None):
    self.channels = tuple(channels) if channels is not None else None
    self.count = 0  # positions seen (rows of the last axis)
    self.num_values = self.mean = self.m2 = self.min = self.max = self.num_missing = None
    if self.channels is not None:
      self._allocate(len(self.channels))

  def _allocate(self, c: int) -> None:
    self.num_values = np.zeros(c, np.int64)  # finite values seen, per channel
    self.mean = np.zeros(c, np.float64)
    self.m2 = np.zeros(c, np.float64)
    self.min = np.full(c, np.inf)
    self.max = np.full(c, -np.inf)
    self.num_missing = np.zeros(c, np.int64)

  @property
  def num_channels(self) -> int | None:
    return None if self.mean is None else len(self.mean)

  def update(self, x: np.ndarray) -> ChannelStats:
    """Adds a batch (..., C); NaNs are skipped and counted, infinities are an error."""
    x = np.asarray(x)
    if x.ndim < 1:
      raise ValueError(f"expected arrays (..., channels), got a scalar of shape {x.shape}")
    if self.mean is None:
      self._allocate(x.shape[-1])
    if x.shape[-1] != self.num_channels:
      raise ValueError(f"expected arrays (..., {self.num_channels}), got shape {x.shape}")
    flat = x.reshape(-1, x.shape[-1]).astype(np.float64)
    if np.isinf(flat).any():
      bad = np.nonzero(np.isinf(flat).any(axis=0))[0].tolist()
      raise ValueError(f"infinite values in channels {self._names(bad)}")
    missing = np.isnan(flat)
    n = (~missing).sum(axis=0)
    seen = n > 0
    self.count += flat.shape[0]
    self.num_missing += missing.sum(axis=0)
    if not seen.any():
      return self
    values = np.where(missing, 0.0, flat)
    mean = values.sum(axis=0) / np.maximum(n, 1)
    m2 = (np.where(missing, 0.0, flat - mean) ** 2).sum(axis=0)
    self._merge(n, mean, m2)
    self.min = np.fmin(self.min, np.where(missing, np.inf, flat).min(axis=0))
    self.max = np.fmax(self.max, np.where(missing, -np.inf, flat).max(axis=0))
    return self

  def _merge(self, n: np.ndarray, mean: np.ndarray, m2: np.ndarray) -> None:
    # Chan et al.: (n_a, mean_a, M2_a) + (n_b, mean_b, M2_b), stable for large offsets.
    total = self.num_values + n
    safe = np.maximum(total, 1)
    delta = mean - self.mean
    self.mean = self.mean + delta * n / safe
    self.m2 = self.m2 + m2 + delta**2 * self.num_values * n / safe
    self.num_values = total

  def merge(self, other: ChannelStats) -> ChannelStats:
    """Adds the statistics of `other` (another worker's share of the same channels)."""
    if other.mean is None:
      return self
    if self.mean is None:
      self._allocate(other.num_channels)
      self.channels = self.channels or other.channels
    if other.num_channels != self.num_channels or (
      self.channels and other.channels and other.channels != self.channels
    ):
      raise ValueError(
        f"cannot merge statistics of {other.channels or other.num_channels} channels "
        f"into {self.channels or self.num_channels}"
      )
    self._merge(other.num_values, other.mean, other.m2)
    self.count += other.count
    self.min = np.fmin(self.min, other.min)
    self.max = np.fmax(self.max, other.max)
    self.num_missing = self.num_missing + other.num_missing
    return self

  def _names(self, index: list[int]) -> list:
    return [self.channels[i] for i in index] if self.channels else index

  def finalize(self) -> dict:
    """The statistics so far, as a dict.

    Keys: "channels" (names or None), "count" (positions seen), and per channel
    (float64 arrays (C,)) "mean", "std" (population, ddof=0), "min", "max",
    "num_missing" (NaNs skipped).
    """
    if self.mean is None:
      raise ValueError("no data: call update() before finalize()")
    empty = np.nonzero(self.num_values == 0)[0].tolist()
    if empty:
      raise ValueError(f"no finite values seen for channels {self._names(empty)}")
    return {
      "channels": list(self.channels) if self.channels else None,
      "count": int(self.count),
      "mean": self.mean.copy(),
      "std": np.sqrt(self.m2 / self.num_values),
      "min": self.min.copy(),
      "max": self.max.copy(),
      "num_missing": self.num_missing.copy(),
    }


def stats_path(dataset_path: str | os.PathLike) -> str:
  """Where a data set's statistics live: `<dir>/stats.json`, or `<file stem>.stats.json`."""
  dataset_path = os.fspath(dataset_path)
  if os.path.isdir(dataset_path):
    return os.path.join(dataset_path, "stats.json")
  return os.path.splitext(dataset_path)[0] + ".stats.json"


def save(stats: dict, path: str | os.PathLike) -> None:
  """Writes finished statistics as JSON, atomically (a reader sees the old or the new file)."""
  data = {
    "channels": stats.get("channels"),
    "count": int(stats["count"]),
    # Python floats: json writes their repr, which round-trips float64 exactly.
    **{k: np.asarray(stats[k]).tolist() for k in _ARRAYS if k in stats},
  }
  path = os.fspath(path)
  fd, tmp = tempfile.mkstemp(
    dir=os.path.dirname(os.path.abspath(path)), prefix=".tmp-", suffix=".json"
  )
  try:
    with os.fdopen(fd, "w") as f:
      json.dump(data, f, indent=1)
      f.write("\n")
    os.chmod(tmp, 0o644)  # mkstemp makes it 0600; a shared dataset's stats must be readable
    os.replace(tmp, path)
  except BaseException:
    os.unlink(tmp)
    raise


def load(path: str | os.PathLike) -> dict:
  """Reads statistics written by `save`, with per-channel values as float64 arrays."""
  with open(path) as f:
    data = json.load(f)
  missing = [k for k in ("count", "mean", "std") if k not in data]
  if missing:
    raise ValueError(f"{os.fspath(path)}: not a statistics file, keys {missing} are missing")
  for k in _ARRAYS:
    if k in data:
      data[k] = np.asarray(data[k], np.int64 if k == "num_missing" else np.float64)
  return data


def normalize(x: np.ndarray, stats: dict, channels: Sequence[str] | None = None) -> np.ndarray:
  """(x - mean) / std per channel of the last axis, as float32.

  `channels` names the channels of `x` when they are a subset or a reordering
  of `stats["channels"]`. A channel with zero spread (a constant field, a land
  mask that is all ocean) is only centred: dividing by zero would make it NaN.
  """
  mean = np.asarray(stats["mean"], np.float64)
  std = np.asarray(stats["std"], np.float64)
  if channels is not None:
    known = stats.get("channels")
    if not known:
      raise ValueError("channels= needs statistics that name their channels")
    missing = [c for c in channels if c not in known]
    if missing:
      raise KeyError(f"no statistics for channels {missing}; have {known}")
    index = [list(known).index(c) for c in channels]
    mean, std = mean[index], std[index]
  x = np.asarray(x, np.float32)
  if x.shape[-1] != len(mean):
    raise ValueError(f"x has {x.shape[-1]} channels, the statistics {len(mean)}")
  scale = 1.0 / np.where(std > 0, std, 1.0)
  return ((x - mean.astype(np.float32)) * scale.astype(np.float32)).astype(np.float32)


def normalizer(stats: dict, key: str):
  """Batch transform: `batch[key]` standardised per channel with training-split statistics.

  The other entries pass through. The spread is floored at 1e-6 (a constant
  channel is only centred, up to that floor). Used by the training tasks and
  the baselines alike, so both see the same inputs.
  """
  mean = np.asarray(stats["mean"], np.float32)
  std = np.maximum(np.asarray(stats["std"], np.float32), 1e-6)

  def transform(batch: dict) -> dict:
    return {**batch, key: (batch[key] - mean) / std}

  return transform
