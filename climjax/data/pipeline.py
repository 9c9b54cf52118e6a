"""Per-rank sharded, shuffled, fixed-shape, prefetched batches over a random-access source.

The pipeline shuffles *indices* identically on every rank, cuts them into global
batches, and hands each rank its contiguous slice of every global batch. So with
synchronous data parallelism the ranks together see exactly the batches a single
process would see with the same global batch size, which is what makes MPI
training reproduce single-process training. Examples are read in batches
(`__getitems__`), on background threads, `prefetch` batches ahead.

Iteration is a pure function of (seed, step): starting at `start_step` gives the
same batches as running from zero and skipping, which is how a resumed run
continues the data stream exactly. Each epoch is reshuffled.

The (rank, size) shard comes from the caller; this module imports no MPI.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import grain
import numpy as np

from climjax.errors import ConfigError


class _Reader:
  """Reads and collates one batch of indices from a random-access source."""

  def __init__(self, source, keys: Sequence[str], transform: Callable[[dict], dict] | None):
    self._source = source
    self._keys = tuple(keys)
    self._transform = transform

  def __call__(self, indices: np.ndarray) -> dict:
    rows = self._source.__getitems__([int(i) for i in indices])
    batch = {key: np.stack([row[key] for row in rows]) for key in self._keys}
    return self._transform(batch) if self._transform else batch


def train_batches(
    source,
    *,
    keys: Sequence[str],
    global_batch_size: int,
    shard_index: int = 0,
    shard_count: int = 1,
    seed: int = 0,
    start_step: int = 0,
    transform: Callable[[dict], dict] | None = None,
    num_threads: int = 2,
    prefetch: int = 4,
) -> Iterator[dict]:
  """Endless shuffled training batches of `global_batch_size // shard_count` examples."""
  n = len(source)
  if global_batch_size % shard_count:
    raise ConfigError(
        f"train.batch_size={global_batch_size} is not divisible by the {shard_count} data shards"
    )
  if global_batch_size > n:
    raise ConfigError(
      f"train.batch_size={global_batch_size} exceeds the {n} training examples; "
      f"use a smaller --config.train.batch_size or more data"
    )
  local = global_batch_size // shard_count
  lo = shard_index * local
  indices = (
      grain.MapDataset.range(n)
      .seed(seed)
      .shuffle()
      .repeat(None)
      .batch(global_batch_size, drop_remainder=True)
  )
  batches = indices[start_step:].map(lambda idx: idx[lo : lo + local]).map(
      _Reader(source, keys, transform)
  )
  options = grain.ReadOptions(num_threads=max(1, num_threads), prefetch_buffer_size=max(1, prefetch))
  return iter(batches.to_iter_dataset(options))


def eval_batches(
    source,
    *,
    keys: Sequence[str],
    batch_size: int,
    shard_index: int = 0,
    shard_count: int = 1,
    transform: Callable[[dict], dict] | None = None,
) -> Iterator[dict]:
  """One pass over this shard in order; every batch is padded to `batch_size`.

  Each batch carries `mask` (1 for real examples, 0 for padding) so that a jitted
  evaluation step sees a single shape and padding never counts.
  """
  reader = _Reader(source, keys, transform)
  mine = np.arange(shard_index, len(source), shard_count)
  for start in range(0, len(mine), batch_size):
    idx = mine[start : start + batch_size]
    batch = reader(idx)
    pad = batch_size - len(idx)
    batch = {k: np.concatenate([v, np.zeros((pad, *v.shape[1:]), v.dtype)]) for k, v in batch.items()}
    batch["mask"] = np.concatenate([np.ones(len(idx), np.float32), np.zeros(pad, np.float32)])
    yield batch
