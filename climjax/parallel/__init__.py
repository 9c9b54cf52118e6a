"""The only package that touches MPI: topology, gradient reduction, strategies.

`setup(config.parallel)` is the single entry point the training loop calls. The
"single" strategy never imports mpi4py, so a plain install without MPI works;
"sync" (sync.py) and "hybrid" (hybrid.py) import it when chosen.

Config (`config.parallel`):
  strategy: "single" | "sync" | "hybrid".
  num_groups, num_servers: hybrid compute groups and parameter-server ranks.
  scaling: "strong" (the global batch is split over the ranks that read data)
    or "weak" (each rank keeps `batch_size`); see `Topology.per_rank_batch`.
  straggler_rank, straggler_delay: the rank (-1 none) that sleeps this many
    seconds per step, to measure how each strategy copes with a slow rank.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

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


def setup(parallel_config) -> Topology:
  """The Topology for `parallel_config.strategy`; collective over MPI ranks if not single."""
  strategy = parallel_config.get("strategy", "single")
  if strategy not in STRATEGIES:
    raise ValueError(f"parallel.strategy must be one of {STRATEGIES}, got {strategy!r}")
  scaling = parallel_config.get("scaling", "strong")
  if scaling not in SCALINGS:
    raise ValueError(f"parallel.scaling must be one of {SCALINGS}, got {scaling!r}")
  if strategy == "single":
    return Topology(scaling=scaling)
  if strategy == "sync":
    from climjax.parallel import sync

    return sync.setup(parallel_config)
  from climjax.parallel import hybrid

  return hybrid.setup(parallel_config)
