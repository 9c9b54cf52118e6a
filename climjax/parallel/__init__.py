"""The only package that touches MPI: topology, gradient reduction, strategies.

`setup(config.parallel)` is the single entry point the training loop calls. The
"single" strategy never imports mpi4py, so a plain install without MPI works.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

STRATEGIES = ("single", "sync", "hybrid")


def _identity(tree):
  return tree


@dataclasses.dataclass(frozen=True)
class Topology:
  """Where this process sits and how it combines gradients and host values.

  data_index / data_count: which shard of every split this rank reads.
  reduce_grads: called inside the jitted step on the gradient pytree.
  allreduce_sum: sums a host numpy array over the ranks that evaluate.
  barrier: waits for every rank (e.g. while the chief builds the dataset).
  """

  strategy: str = "single"
  rank: int = 0
  size: int = 1
  is_chief: bool = True
  data_index: int = 0
  data_count: int = 1
  reduce_grads: Callable = _identity
  allreduce_sum: Callable[[np.ndarray], np.ndarray] = _identity
  barrier: Callable[[], None] = lambda: None


def setup(parallel_config) -> Topology:
  strategy = parallel_config.get("strategy", "single")
  if strategy not in STRATEGIES:
    raise ValueError(f"parallel.strategy must be one of {STRATEGIES}, got {strategy!r}")
  if strategy == "single":
    return Topology()
  raise ValueError(f"parallel.strategy={strategy!r} is not available in this build yet")
