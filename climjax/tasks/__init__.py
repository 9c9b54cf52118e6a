"""Tasks: what the one training loop trains, looked up by `config.task`.

A task is a module (no base class) with these functions, which the loop in
climjax/training/train.py calls in this order:

  validate_config(config)                    raise ConfigError naming the field
  load_data(config, topology, log)           -> TaskData
  make_model(config)                         -> a flax.linen module
  init_state(config, model, tx, data)        -> TrainState (the same on every rank)
  make_train_step(config, model)             -> step(state, batch, *, tx, reduce_grads)
  make_eval_fn(config, model)                -> the jitted forward pass evaluation uses
  step_flops(config, model, state, data, *, tx, reduce_grads, local_batch)
                                             -> (summary entries, log line)
  progress_text(metrics)                     -> the task's part of a progress line
  evaluate_during_training(config, eval_fn, params, data, topology) -> (metrics, log line)
  evaluate_and_write(config, workdir, eval_fn, params, data, topology, log) -> summary entries
  held_out_scalars(summary)                  -> the final held-out point of the curves

The last one also writes the task's outputs (tables, plots, predictions.nc) on
the chief. A new task is a new module here and an entry in TASKS; a new way
of moving gradients is a strategy in climjax/parallel/, not a task.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any

from climjax.errors import ConfigError

TASKS = {
  "tc": "climjax.tasks.classification",
  "ar": "climjax.tasks.classification",
  "wf": "climjax.tasks.classification",
  "detection": "climjax.tasks.detection",
}


@dataclasses.dataclass
class TaskData:
  """What the loop needs of a task's data; `eval` is the task's own (splits, stats, grid).

  train: random-access source of training examples (climjax.data.pipeline).
  keys: the entries of a batch the train step reads.
  transform: batch -> normalised batch (applied by the input pipeline).
  example_shape: one example's input shape (no batch axis).
  description: where batches come from, for the non-finite-loss message.
  """

  train: Any
  keys: tuple[str, ...]
  transform: Callable[[dict], dict]
  example_shape: tuple[int, ...]
  description: str
  eval: dict


def get(name: str) -> ModuleType:
  """The task module for `config.task`."""
  if name not in TASKS:
    raise ConfigError(f"task must be one of {sorted(TASKS)}, got {name!r}")
  return importlib.import_module(TASKS[name])
