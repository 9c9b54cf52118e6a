"""metrics.jsonl: one JSON object per logged step, written by one process.

On resume, entries after the restored step are dropped first, so a killed and
resumed run leaves one entry per step, never two.
"""

from __future__ import annotations

import json
import math
import os
import time

import numpy as np


def _plain(value):
  if isinstance(value, (np.generic, np.ndarray)) or hasattr(value, "item"):
    value = np.asarray(value)
    return value.item() if value.ndim == 0 else value.tolist()
  return value


def write_json(path: str, obj) -> None:
  """Atomic JSON write: a reader never sees a half-written file."""
  tmp = f"{path}.tmp.{os.getpid()}"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=2, sort_keys=True, default=str)
    f.write("\n")
  os.replace(tmp, path)


class TrainTimer:
  """Training throughput for summary.json: examples over wall seconds from the
  end of the first (compiling) step to the end of the last, input waits
  included, in-loop evaluations and checkpoints excluded.

  The caller blocks on the train state before `start`, `pause` and `stop`:
  JAX dispatches steps asynchronously, so a clock read around the dispatch
  alone measures only the dispatch.
  """

  def __init__(self):
    self.seconds, self.examples, self._since = 0.0, 0, None

  def start(self) -> None:
    self._since = time.time()

  def count(self, examples: int) -> None:
    self.examples += examples

  def pause(self) -> None:
    if self._since is not None:
      self.seconds += time.time() - self._since
      self._since = None

  stop = pause

  @property
  def examples_per_second(self) -> float | None:
    return self.examples / self.seconds if self.seconds > 0 and self.examples else None


class MetricWriter:
  """Appends `{"step": s, **scalars}` lines to `path` (no-op when not `enabled`)."""

  def __init__(self, path: str, *, resume_step: int = 0, enabled: bool = True):
    self.path = path
    self.enabled = enabled
    if enabled and os.path.exists(path):
      with open(path) as f:
        kept = [line for line in f if line.strip() and json.loads(line).get("step", 0) <= resume_step]
      tmp = f"{path}.tmp"
      with open(tmp, "w") as f:
        f.writelines(kept)
      os.replace(tmp, path)

  def write_scalars(self, step: int, scalars: dict) -> None:
    if not self.enabled:
      return
    record = {"step": int(step), **{k: _plain(v) for k, v in scalars.items()}}
    with open(self.path, "a") as f:
      f.write(json.dumps(record) + "\n")


def check_finite(step: int, loss: float, source: str) -> None:
  """Stops training on a non-finite loss, naming the step and the batch's source."""
  if not math.isfinite(loss):
    raise FloatingPointError(f"non-finite loss {loss} at step {step} (batch from {source})")
