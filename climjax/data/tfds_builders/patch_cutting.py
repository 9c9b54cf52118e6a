"""Cutting classifier patches from input snapshots: positives on events, negatives off them."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

import numpy as np
import pandas as pd

from climjax.data import variables
from climjax.data.errors import DataError
from climjax.data.tfds_builders.configs import (
  _LOG_EVERY_S,
  _SPLIT_IDS,
  NEGATIVE_LAT_BANDS,
  PATCH_SHAPES,
  _log,
)
from climjax.data.tfds_builders.frames import EVENT_COLUMNS, _Grid, _NetcdfFrames


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
