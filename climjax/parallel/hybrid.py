"""Hybrid data parallelism: synchronous compute groups, asynchronous parameter servers.

The strategy of Kurth et al. (2017, "Deep Learning at 15PF"), chosen by
`parallel.strategy = "hybrid"` with `parallel.num_groups` (G) and
`parallel.num_servers` (S). The last S ranks serve parameters; the other ranks
form G compute groups that all-reduce gradients inside the group (the shared
train step with an mpi4jax `reduce_grads`) and exchange them with the servers
asynchronously (parameter_server.py has the protocol). G = 1 is synchronous
training; one rank per group is fully asynchronous.

`HybridStrategy` plugs this into the one training loop (climjax/training/train.py)
for any task: the step's optimizer only captures the group's reduced gradients
(`step_optimizer`), the leader pushes them and pulls fresh parameters after
each step (`after_step`), and the servers own the optimizer state and the
checkpoints (`serve`, for any parameter tree). The loop runs on the workers;
a server rank runs `serve` instead.

Batches: with `parallel.scaling = "strong"` `train.batch_size` is split over all
worker ranks (each group's update uses batch_size / G examples); with "weak"
every worker takes batch_size. `train.steps` counts server updates, whichever
group makes them.
"""

from __future__ import annotations

import dataclasses
import os
import time

import jax
import numpy as np

from climjax.parallel import comm as comm_lib
from climjax.parallel import parameter_server as ps
from climjax.parallel import sync
from climjax.parallel.strategy import Strategy, Topology


def layout_from_config(parallel_config) -> comm_lib.Layout:
  return comm_lib.layout(
    "hybrid",
    num_groups=int(parallel_config.get("num_groups", 1)),
    num_servers=int(parallel_config.get("num_servers", 1)),
  )


def setup(parallel_config) -> Topology:
  """Topology for a hybrid run: workers shard the data by worker index; servers read none.

  reduce_grads averages over the compute group; allreduce_sum sums over all
  workers (evaluation); the chief is rank 0, group 0's leader.
  """
  layout = layout_from_config(parallel_config)
  common = dict(
    strategy="hybrid",
    rank=layout.rank,
    size=layout.size,
    is_chief=layout.rank == 0,
    data_count=layout.num_workers,
    barrier=comm_lib.barrier(layout.world),
    scaling=parallel_config.get("scaling", "strong"),
  )
  if layout.is_server:
    return Topology(data_index=-1, role="server", allreduce_sum=np.asarray, **common)
  clock = sync.step_clock(layout.group_comm)
  return Topology(
    data_index=layout.worker_index,
    role="worker",
    reduce_grads=sync.with_delay(
      sync.allreduce_mean(layout.group_comm_jax, clock),
      sync.straggler_delay(parallel_config, layout.rank),
    ),
    allreduce_sum=comm_lib.allreduce_sum_host(layout.worker_comm),
    clock=clock,
    **common,
  )


def group_topology(topology: Topology, layout: comm_lib.Layout) -> Topology:
  """The topology of one compute group on its own, for evaluating while other groups train."""
  return dataclasses.replace(
    topology,
    data_index=layout.group_comm.Get_rank(),
    data_count=layout.group_comm.Get_size(),
    allreduce_sum=comm_lib.allreduce_sum_host(layout.group_comm),
  )


class HybridStrategy(Strategy):
  """Compute groups and parameter servers; `progress` counts server updates."""

  checkpoints_on_signal = False  # see Strategy

  def __init__(self, parallel_config):
    self.layout = layout_from_config(parallel_config)
    super().__init__(setup(parallel_config), parallel_config)
    self.is_server = self.layout.is_server
    self._group: ps.ComputeGroup | None = None
    self._plan: ps.ShardPlan | None = None
    self._staleness: list[int] = []
    self._steps = self._examples = 0
    self._loop_start = 0.0

  @property
  def group_size(self) -> int:
    return self.layout.ranks_per_group

  @property
  def evaluates_during_training(self) -> bool:
    # Group 0 evaluates on its own while the other groups keep training.
    return self.layout.group == 0

  @property
  def eval_topology(self) -> Topology:
    return group_topology(self.topology, self.layout)

  def describe(self) -> str:
    layout = self.layout
    return (
      f"hybrid: {layout.num_groups} group(s) of {layout.ranks_per_group} rank(s), "
      f"{layout.num_servers} parameter server(s)"
    )

  def guard(self):
    return comm_lib.abort_on_exception(self.layout.world)

  def step_optimizer(self, tx):
    del tx  # the servers apply it
    return ps.gradient_capture()

  # ---- a parameter-server rank: serve until every group is done --------------

  def serve(self, params, tx, *, workdir: str, total_steps: int, checkpoint_every: int) -> dict:
    params = jax.device_get(params)
    plan = ps.ShardPlan.from_tree(params, self.layout.num_servers)
    server = ps.ParameterServer(
      self.layout,
      plan,
      jax.tree.leaves(params),
      tx,
      total_updates=total_steps,
      checkpoint_dir=os.path.join(workdir, "parameter_servers"),
      checkpoint_every=checkpoint_every,
    )
    server.restore()
    rank_stats = server.serve()
    ps.final_params(self.layout, plan)
    ps.gather_stats(self.layout, rank_stats)
    return {"parallel_strategy": "hybrid", "role": "server", **rank_stats}

  # ---- a worker rank ------------------------------------------------------

  def restore(self, state, *, workdir: str, total_steps: int, checkpoint_every: int, warm_up):
    """Compiles the step, then pulls the servers' (possibly resumed) parameters."""
    del workdir, checkpoint_every  # the servers own the checkpoints
    self.total_steps = total_steps
    self._plan = ps.ShardPlan.from_tree(jax.device_get(state.params), self.layout.num_servers)
    self._group = ps.ComputeGroup(self.layout, self._plan)
    self._group.timings = self.timings
    # Compile (and run once) before the first pull, so that every group starts
    # with the others instead of one pushing for the length of a compile.
    state = warm_up(state)
    comm_lib.barrier(self.layout.worker_comm)()
    leaves, stop = self._group.pull()
    self.progress = self._group.version
    self._loop_start = time.perf_counter()
    return state.replace(params=self._plan.unflatten(leaves)), self._group.start_step, stop

  def after_step(self, state, *, step: int, examples: int, started: float):
    # The step's optimizer was the capture: opt_state holds the group-reduced gradients.
    grads = [np.asarray(g) for g in jax.tree.leaves(jax.device_get(state.opt_state))]
    self.account(started)  # the step: compute, and the group's all-reduce inside it
    leaves, stop = self._group.push_pull(grads, step=step, examples=examples)
    if self._group.staleness >= 0:
      self._staleness.append(self._group.staleness)
    self._steps += 1
    self._examples += examples
    self.progress = self._group.version
    return state.replace(params=self._plan.unflatten(leaves)), stop

  def saves_now(self, *, every: int, stop: bool) -> bool:
    del every, stop
    return False  # each server writes its own shard

  def log_scalars(self, step: int) -> tuple[dict, str]:
    scalars, _ = super().log_scalars(step)
    seen, self._staleness = self._staleness, []
    staleness = float(np.mean(seen)) if seen else 0.0
    scalars.update(staleness=staleness, group_step=step)
    fraction = scalars.get("communication_fraction", 0.0)
    return scalars, f" staleness {staleness:.2f} group_step {step} comm {fraction:.0%}"

  def finish(self, state):
    """The servers' final parameters on every worker; the run's statistics on the chief."""
    del state
    wall = time.perf_counter() - self._loop_start
    self._group.finish()
    params = self._plan.unflatten(ps.final_params(self.layout, self._plan))
    rank_stats = {
      "role": "worker",
      "rank": self.layout.rank,
      "group": self.layout.group,
      "is_leader": self.layout.is_leader,
      "steps": self._steps,
      "group_examples": self._examples,
      "wall_s": wall,
      "timings": self.timings.as_dict(),
      "straggler_delay_s": sync.straggler_delay(self.parallel_config, self.layout.rank),
    }
    gathered = ps.gather_stats(self.layout, rank_stats)
    stats = {"num_groups": self.layout.num_groups, "num_servers": self.layout.num_servers}
    if self.topology.is_chief:
      stats.update(ps.summarize(gathered, self.layout.num_groups))
      stats["steps"] = int(stats["server_updates"])
      stats["examples_per_second"] = float(sum(stats["examples_per_second_by_group"]))
    return params, stats
