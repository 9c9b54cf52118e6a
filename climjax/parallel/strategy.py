"""What a training strategy is: where a rank sits, and what it does around the step.

The training loop (climjax/training/train.py) runs any task under any strategy.
A task says what is trained; a strategy says how gradients and parameters move:

- `Topology`: this rank's place (chief or not, which data shard, worker or
  parameter server) and the `reduce_grads` the jitted step applies to its
  gradients (identity, or an MPI all-reduce).
- `Strategy`: what happens outside the step, through a handful of methods the
  loop calls in order: `step_optimizer` (the optax transform the step applies),
  `restore` (state and first step: from the chief's orbax checkpoint, or from
  the parameter servers), `after_step` (nothing, or the leader's push/pull with
  the servers), `saves_now` / `save`, `finish` (the final parameters and this strategy's
  summary statistics), and `serve` on a parameter-server rank.

This module knows no MPI, no model and no training code: `single` and `sync`
are this class with another `Topology` (sync.py makes one whose reduce_grads
all-reduces); `hybrid` (hybrid.py) overrides the methods.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable

import numpy as np

from climjax import checkpointing

STRATEGIES = ("single", "sync", "hybrid")
SCALINGS = ("strong", "weak")


def _identity(tree):
  return tree


def _no_wait() -> None:
  return None


@dataclasses.dataclass(frozen=True)
class Topology:
  """Where this process sits and how it combines gradients and host values.

  data_index / data_count: which shard of every split this rank reads.
  reduce_grads: called inside the jitted step on the gradient pytree.
  allreduce_sum: sums a host numpy array over the ranks that evaluate.
  barrier: waits for every rank (e.g. while the chief builds the dataset).
  scaling: how `per_rank_batch` turns the configured batch into this rank's.
  role: "worker" (trains on data) or "server" (a hybrid parameter server, which
    reads no data; its data_index is -1).
  """

  strategy: str = "single"
  rank: int = 0
  size: int = 1
  is_chief: bool = True
  data_index: int = 0
  data_count: int = 1
  reduce_grads: Callable = _identity
  allreduce_sum: Callable[[np.ndarray], np.ndarray] = _identity
  barrier: Callable[[], None] = _no_wait
  scaling: str = "strong"
  role: str = "worker"

  def per_rank_batch(self, batch_size: int) -> int:
    """Examples this rank takes per step from the configured `batch_size`.

    strong: batch_size is the global batch, split evenly over data_count ranks;
    weak: every rank takes batch_size (the global batch grows with the ranks).
    """
    if self.scaling not in SCALINGS:
      raise ValueError(f"parallel.scaling must be one of {SCALINGS}, got {self.scaling!r}")
    if self.scaling == "weak":
      return batch_size
    if batch_size % self.data_count:
      raise ValueError(
        f"strong scaling splits batch_size={batch_size} over {self.data_count} ranks: "
        "it must divide evenly"
      )
    return batch_size // self.data_count

  def global_batch(self, batch_size: int) -> int:
    """Examples per step over all data ranks (what the data pipeline slices)."""
    return self.per_rank_batch(batch_size) * self.data_count


@dataclasses.dataclass
class Timings:
  """Seconds one rank spent, by kind.

  compute: the jitted step, including the in-group all-reduce (fused into the
    step, so not separable) and any injected straggler delay; on a server,
    applying updates.
  communication: moving parameters and gradients between leader and servers and
    inside the group, while this rank's own messages are in flight.
  waiting: blocked on other ranks: a leader for the servers' replies (queueing
    behind other groups), a member for its leader, a server for the next push.
  input: waiting for the input pipeline's next batch.
  """

  compute: float = 0.0
  communication: float = 0.0
  waiting: float = 0.0
  input: float = 0.0

  def as_dict(self) -> dict[str, float]:
    return dataclasses.asdict(self)


class Strategy:
  """`single` and `sync`: every rank takes every step; the chief writes orbax checkpoints.

  `progress` is what `train.steps` counts and what metrics.jsonl is keyed by:
  here the step itself (a hybrid run counts server updates instead).
  """

  is_server = False

  def __init__(self, topology: Topology, parallel_config=None):
    self.topology = topology
    self.parallel_config = parallel_config
    self.timings = Timings()
    self.progress = 0
    self.total_steps = 0
    self._manager = None

  @property
  def name(self) -> str:
    return self.topology.strategy

  @property
  def group_size(self) -> int:
    """Ranks whose examples make up one update (all data ranks in sync)."""
    return self.topology.data_count

  @property
  def evaluates_during_training(self) -> bool:
    return True

  @property
  def eval_topology(self) -> Topology:
    """The ranks that evaluate together during training."""
    return self.topology

  def describe(self) -> str | None:
    """One line for the log about the layout, where there is something to say."""
    if self.topology.size > 1:
      return f"{self.name}: {self.topology.size} ranks, gradients all-reduced every step"
    return None

  def guard(self):
    """Context for the whole run on this rank (hybrid: one failing rank aborts the job)."""
    return contextlib.nullcontext()

  def step_optimizer(self, tx):
    """The optax transform the jitted step applies (hybrid: a gradient capture)."""
    return tx

  def restore(self, state, *, workdir: str, total_steps: int, warm_up: Callable):
    """(state, first step to take - 1, stop) from the newest checkpoint in `workdir`.

    `warm_up(state) -> state` compiles the step; not needed here (the first
    step compiles and the loop's timer leaves it out).
    """
    del warm_up
    self.total_steps = total_steps
    self._manager = checkpointing.make_manager(os.path.join(workdir, "checkpoints"))
    state, step = checkpointing.restore_latest(self._manager, state)
    self.progress = step
    return state, step, step >= total_steps

  def after_step(self, state, *, step: int, examples: int, started: float):
    """(state, stop) after the jitted step `step` (1-based) has been dispatched."""
    del examples, started
    self.progress = step
    return state, step >= self.total_steps

  def saves_now(self, *, every: int, stop: bool) -> bool:
    """Whether this rank checkpoints after the current step: the chief, every `every` and at the end."""
    return self.topology.is_chief and (self.progress % every == 0 or stop)

  def save(self, state) -> None:
    """An asynchronous, atomic orbax save at the current step."""
    checkpointing.save(self._manager, self.progress, state)

  def log_scalars(self, step: int) -> dict:
    """Strategy numbers for a metrics.jsonl record (and the log line's suffix)."""
    del step
    return {}

  def finish(self, state):
    """(final parameters, summary entries of this strategy) once the loop has stopped."""
    self._manager.wait_until_finished()
    return state.params, {}

  def close(self) -> None:
    if self._manager is not None:
      self._manager.close()

  def serve(self, params, tx, *, workdir: str, total_steps: int, checkpoint_every: int) -> dict:
    raise RuntimeError(f"strategy {self.name!r} has no parameter servers")
