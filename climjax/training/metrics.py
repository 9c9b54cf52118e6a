"""metrics.jsonl: one JSON object per logged step, written by one process.

On resume, entries after the restored step are dropped first, so a killed and
resumed run leaves one entry per step, never two.
"""

from __future__ import annotations

import json
import math
import os

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
