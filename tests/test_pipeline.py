"""The input pipeline: sharding, shuffling, resume and padded evaluation batches."""

import itertools

import numpy as np
import pytest

from climjax.data import pipeline


class ArraySource:
  """A random-access source like tfds's ArrayRecordDataSource, in memory."""

  def __init__(self, n):
    self.x = np.arange(n, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)
    self.y = np.arange(n) % 2

  def __len__(self):
    return len(self.y)

  def __getitems__(self, indices):
    return [{"patch": self.x[i], "label": self.y[i]} for i in indices]


def _take(it, n):
  return [b["patch"][:, 0].astype(int) for b in itertools.islice(it, n)]


def test_ranks_together_see_the_single_process_batches():
  src = ArraySource(100)
  single = _take(
    pipeline.train_batches(src, keys=("patch", "label"), global_batch_size=8, seed=3), 30
  )
  ranks = [
    _take(
      pipeline.train_batches(
        src, keys=("patch", "label"), global_batch_size=8, shard_index=r, shard_count=2, seed=3
      ),
      30,
    )
    for r in range(2)
  ]
  for s, a, b in zip(single, *ranks, strict=True):
    np.testing.assert_array_equal(s, np.concatenate([a, b]))
    assert len(a) == 4


def test_epochs_cover_the_data_and_reshuffle():
  src = ArraySource(40)
  batches = _take(pipeline.train_batches(src, keys=("patch",), global_batch_size=10, seed=0), 8)
  epoch1, epoch2 = np.concatenate(batches[:4]), np.concatenate(batches[4:])
  assert sorted(epoch1) == list(range(40)) and sorted(epoch2) == list(range(40))
  assert not np.array_equal(epoch1, epoch2)


def test_start_step_resumes_the_same_stream_and_seed_changes_it():
  src = ArraySource(50)
  full = _take(pipeline.train_batches(src, keys=("patch",), global_batch_size=5, seed=1), 25)
  resumed = _take(
    pipeline.train_batches(src, keys=("patch",), global_batch_size=5, seed=1, start_step=17), 8
  )
  for a, b in zip(full[17:], resumed, strict=True):
    np.testing.assert_array_equal(a, b)
  other = _take(pipeline.train_batches(src, keys=("patch",), global_batch_size=5, seed=2), 25)
  assert not all(np.array_equal(a, b) for a, b in zip(full, other, strict=True))


def test_transform_is_applied():
  src = ArraySource(20)
  it = pipeline.train_batches(
    src,
    keys=("patch", "label"),
    global_batch_size=4,
    transform=lambda b: {**b, "patch": b["patch"] * 0 + 7},
  )
  assert np.all(next(it)["patch"] == 7)


def test_bad_batch_sizes_are_rejected():
  src = ArraySource(20)
  with pytest.raises(ValueError, match="divisible"):
    pipeline.train_batches(src, keys=("patch",), global_batch_size=5, shard_count=2)
  with pytest.raises(ValueError, match="exceeds"):
    pipeline.train_batches(src, keys=("patch",), global_batch_size=64)


def test_eval_batches_pad_to_a_fixed_shape_and_cover_each_example_once():
  src = ArraySource(23)
  seen = []
  for rank in range(2):
    for batch in pipeline.eval_batches(
      src, keys=("patch", "label"), batch_size=5, shard_index=rank, shard_count=2
    ):
      assert batch["patch"].shape == (5, 3) and batch["mask"].shape == (5,)
      seen.extend(batch["patch"][batch["mask"] == 1, 0].astype(int).tolist())
  assert sorted(seen) == list(range(23))
