"""Reading built datasets back: `prepare`, the decoded memory-mapped cache and the statistics.

`DecodedSource` has the random-access interface of tfds's
ArrayRecordDataSource, one array gather per feature per batch; statistics
come from the training split only.
"""

from __future__ import annotations

import os
import shutil
import time
import warnings

import numpy as np
import tensorflow_datasets as tfds

from climjax.data import stats as stats_lib
from climjax.data.tfds_builders.configs import _log

# Splits whose decoded arrays are at most this large are cached by `prepare`.
DECODED_CACHE_MAX_BYTES = 4 << 30


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
