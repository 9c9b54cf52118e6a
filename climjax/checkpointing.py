"""Orbax checkpoints of the training state: atomic writes, resume by default.

Orbax writes each step into a temporary directory and renames it when complete,
so a run killed mid-write leaves the previous checkpoint intact; restore always
picks the newest *finalised* step. Restores go against an abstract state
(`jax.eval_shape` of the initial state), so shapes and dtypes are checked.
Only the chief process writes.
"""

from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp


def make_manager(directory: str, *, max_to_keep: int = 2) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
  return ocp.CheckpointManager(os.path.abspath(directory), options=options)


def restore_latest(manager: ocp.CheckpointManager, initial_state):
  """(state, step) from the newest checkpoint, or (initial_state, 0) if none."""
  step = manager.latest_step()
  if step is None:
    return initial_state, 0
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, initial_state)
  state = manager.restore(step, args=ocp.args.StandardRestore(abstract))
  return state, int(step)


def save(manager: ocp.CheckpointManager, step: int, state, *, force: bool = False) -> bool:
  """Starts an asynchronous, atomic save of `state` at `step`; returns whether it saved."""
  if manager.latest_step() == step:
    return False
  return manager.save(step, args=ocp.args.StandardSave(state), force=force)
