"""The only package that touches MPI: topology, gradient reduction, strategies.

`make_strategy(config.parallel)` is the single entry point the training loop
calls (strategy.py says what a strategy does around the jitted step). The
"single" strategy never imports mpi4py, so a plain install without MPI works;
"sync" (sync.py) and "hybrid" (hybrid.py, with the parameter-server protocol in
parameter_server.py and compute_group.py) import it when chosen. Nothing here
imports a model or the training package.

Config (`config.parallel`):
  strategy: "single" | "sync" | "hybrid" | "simulated" (asynchrony drawn in one
    process, simulated.py: num_groups, staleness_histogram, staleness_per_group).
  num_groups, num_servers: hybrid compute groups and parameter-server ranks.
  scaling: "strong" (the global batch is split over the ranks that read data)
    or "weak" (each rank keeps `batch_size`); see `Topology.per_rank_batch`.
  straggler_rank, straggler_delay: the rank (-1 none) that sleeps this many
    seconds per step, to measure how each strategy copes with a slow rank.
  gradient_lag: 0, or 1 (single / sync): all-reduce each step's gradients while
    the next step computes and apply them one step late (lag.py).
"""

from __future__ import annotations

from climjax.parallel.strategy import SCALINGS, STRATEGIES, Strategy, Timings, Topology

__all__ = ["SCALINGS", "STRATEGIES", "Strategy", "Timings", "Topology", "make_strategy", "setup"]


def _launched_ranks() -> int:
  """The MPI world size the launcher announced (mpiexec sets it), without importing mpi4py."""
  import os

  for name in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE"):
    if os.environ.get(name, "").isdigit():
      return int(os.environ[name])
  return 1


def _check(parallel_config) -> str:
  strategy = parallel_config.get("strategy", "single")
  if strategy not in STRATEGIES:
    raise ValueError(f"parallel.strategy must be one of {STRATEGIES}, got {strategy!r}")
  ranks = _launched_ranks()
  if strategy in ("single", "simulated") and ranks > 1:
    raise ValueError(
      f"parallel.strategy={strategy!r} is one process, but this is one of {ranks} MPI ranks "
      "(each would train alone and overwrite the others' checkpoints): use 'sync' or 'hybrid'"
    )
  scaling = parallel_config.get("scaling", "strong")
  if scaling not in SCALINGS:
    raise ValueError(f"parallel.scaling must be one of {SCALINGS}, got {scaling!r}")
  return strategy


def setup(parallel_config) -> Topology:
  """The Topology for `parallel_config.strategy`; collective over MPI ranks if not single."""
  strategy = _check(parallel_config)
  if strategy in ("single", "simulated"):
    return Topology(strategy=strategy, scaling=parallel_config.get("scaling", "strong"))
  if strategy == "sync":
    from climjax.parallel import sync

    return sync.setup(parallel_config)
  from climjax.parallel import hybrid

  return hybrid.setup(parallel_config)


def make_strategy(parallel_config) -> Strategy:
  """The Strategy the config names (collective over MPI ranks if not single).

  Raises ValueError naming the field when the ranks cannot be laid out.
  """
  strategy = _check(parallel_config)
  lag = int(parallel_config.get("gradient_lag", 0))
  if lag not in (0, 1):
    raise ValueError(f"parallel.gradient_lag must be 0 or 1, got {lag}")
  if lag and strategy not in ("single", "sync"):
    raise ValueError(f"parallel.gradient_lag=1 is for strategy 'single' or 'sync', not {strategy!r}")
  if strategy == "simulated":
    from climjax.parallel import simulated

    return simulated.SimulatedAsyncStrategy(parallel_config)
  if strategy == "hybrid":
    from climjax.parallel import hybrid

    return hybrid.HybridStrategy(parallel_config)
  if not lag:
    return Strategy(setup(parallel_config), parallel_config)
  from climjax.parallel import lag as lag_lib

  if strategy == "single":
    return lag_lib.LaggedStrategy(setup(parallel_config), parallel_config, None)
  from climjax.parallel import comm as comm_lib
  from climjax.parallel import sync

  topology = sync.setup(parallel_config, reduce_in_step=False)
  mean = sync.host_allreduce_mean(comm_lib.layout("sync").world) if topology.size > 1 else None
  return lag_lib.LaggedStrategy(topology, parallel_config, mean)
