"""The compute groups' side of the hybrid protocol, and the run's statistics.

A group's leader pushes the group-reduced gradients to every parameter server
and pulls the fresh shards back (parameter_server.py has the servers' side and
the whole protocol); the leader then broadcasts them to its group. Also here:
the optax transform with which workers run the shared train step
(`gradient_capture`), the final parameters for evaluation, and the per-rank
statistics gathered on rank 0.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import jax
import numpy as np
import optax

from climjax.parallel import comm as comm_lib
from climjax.parallel.shards import (
  HEADER_BYTES,
  TAG_DONE,
  TAG_FINAL,
  TAG_PARAMS,
  TAG_PULL,
  TAG_PUSH,
  ShardPlan,
)
from climjax.parallel.strategy import Timings, per_step, time_split


class ComputeGroup:
  """A group's side of the protocol; the leader talks to the servers, the others listen.

  Every rank of the group calls the same methods in the same order; each returns
  the full parameter leaves (numpy) and whether training should stop. After each
  call every rank of the group also knows `version` (the newest server version
  among the shards it holds) and `staleness` (of the update its push made; -1
  when none was applied).
  """

  def __init__(self, layout: comm_lib.Layout, plan: ShardPlan):
    if layout.is_server:
      raise ValueError("ComputeGroup is for worker ranks; this rank is a parameter server")
    self.layout = layout
    self.plan = plan
    self.versions = np.zeros(plan.num_servers, np.int64)
    self.timings = Timings()
    self.group_size = layout.group_comm.Get_size()
    self._all = plan.all_leaves()
    self._group_buf = plan.buffer(self._all)
    self._server_bufs = [plan.buffer(plan.leaves_of(s)) for s in range(plan.num_servers)]
    self.start_step = 0
    self.version = 0
    self.staleness = -1

  def _exchange(self, tag: int, grads: Sequence[np.ndarray] | None, step: int, examples: int):
    """Leader: push (or pull) every shard at once, wait for every reply.

    Returns (leaves, header) with header = [newest version, stop, group step, staleness].
    """
    t0 = time.perf_counter()
    world, servers = self.layout.world, self.layout.server_ranks
    sends, keep = [], []
    for s, dest in enumerate(servers):
      header = [self.versions[s], 0, step, examples]
      if grads is None:
        buf = np.zeros(HEADER_BYTES, np.uint8)
        buf.view(np.int64)[:] = header
      else:
        buf = self.plan.pack(grads, self.plan.leaves_of(s), header)
      keep.append(buf)
      sends.append(world.Isend(buf, dest=dest, tag=tag))
    recvs = [
      world.Irecv(self._server_bufs[s], source=dest, tag=TAG_PARAMS)
      for s, dest in enumerate(servers)
    ]
    comm_lib.wait_all(sends)
    t1 = time.perf_counter()
    # Replies arrive when the servers have applied the update: time spent here is
    # queueing behind other groups' pushes and the servers' own work.
    comm_lib.wait_all(recvs)
    t2 = time.perf_counter()
    leaves: list[np.ndarray | None] = [None] * len(self._all)
    summary = np.array([0, 0, 0, -1], np.int64)
    for s in range(self.plan.num_servers):
      indices = self.plan.leaves_of(s)
      header, shard = self.plan.unpack(self._server_bufs[s], indices)
      self.versions[s] = header[0]
      summary = np.maximum(summary, header)  # any server's stop stops the group
      for i, leaf in zip(indices, shard, strict=True):
        leaves[i] = leaf
    self.timings.communication += t1 - t0
    self.timings.waiting += t2 - t1
    return leaves, summary

  def _share(self, leaves, header: np.ndarray | None) -> tuple[list[np.ndarray], np.ndarray]:
    """Leader broadcasts parameters and the reply header to its group."""
    if self.group_size > 1:
      t0 = time.perf_counter()
      if self.layout.is_leader:
        self.plan.pack_into(self._group_buf, leaves, self._all, header)
      comm_lib.bcast_array(self.layout.group_comm, self._group_buf, root=0)
      header, leaves = self.plan.unpack(self._group_buf, self._all)
      elapsed = time.perf_counter() - t0
      if self.layout.is_leader:
        self.timings.communication += elapsed
      else:
        self.timings.waiting += elapsed  # members wait while the leader talks to the servers
    self.version, self.staleness = int(header[0]), int(header[3])
    return leaves, header

  def pull(self) -> tuple[list[np.ndarray], bool]:
    """Start-up: the servers' current parameters (resumed ones after a restart).

    Also sets `start_step`: how many steps this group had taken before a restart,
    so that its data stream continues where it stopped.
    """
    leaves, header = None, None
    if self.layout.is_leader:
      leaves, header = self._exchange(TAG_PULL, None, 0, 0)
    leaves, header = self._share(leaves, header)
    self.start_step = int(header[2])
    return leaves, bool(header[1])

  def push_pull(self, grads: Sequence[np.ndarray], *, step: int, examples: int):
    """Sends this step's group-reduced gradients; returns (fresh parameters, stop).

    `step` counts the group's steps including this one; `examples` the examples
    the whole group processed in it.
    """
    leaves, header = None, None
    if self.layout.is_leader:
      leaves, header = self._exchange(TAG_PUSH, grads, step, examples)
    leaves, header = self._share(leaves, header)
    return leaves, bool(header[1])

  def finish(self) -> None:
    """Leader tells every server this group is done (the shutdown protocol)."""
    if not self.layout.is_leader:
      return
    t0 = time.perf_counter()
    world = self.layout.world
    bufs = [np.zeros(HEADER_BYTES, np.uint8) for _ in self.layout.server_ranks]
    comm_lib.wait_all(
      [
        world.Isend(b, dest=d, tag=TAG_DONE)
        for b, d in zip(bufs, self.layout.server_ranks, strict=True)
      ]
    )
    self.timings.communication += time.perf_counter() - t0


def final_params(layout: comm_lib.Layout, plan: ShardPlan) -> list[np.ndarray] | None:
  """Every worker gets the servers' final parameters (None on a server).

  Rank 0 receives each final shard from its server and broadcasts the whole to
  the workers, which then evaluate on their shards of the evaluation data.
  """
  if layout.is_server:
    return None
  buf = plan.buffer(plan.all_leaves())
  if layout.rank == 0:
    leaves: list[np.ndarray | None] = [None] * len(plan.shapes)
    bufs = [plan.buffer(plan.leaves_of(s)) for s in range(plan.num_servers)]
    comm_lib.wait_all(
      [
        layout.world.Irecv(b, source=r, tag=TAG_FINAL)
        for b, r in zip(bufs, layout.server_ranks, strict=True)
      ]
    )
    for s, b in enumerate(bufs):
      indices = plan.leaves_of(s)
      _, shard = plan.unpack(b, indices)
      for i, leaf in zip(indices, shard, strict=True):
        leaves[i] = leaf
    plan.pack_into(buf, leaves, plan.all_leaves(), [0, 1, 0, 0])
  comm_lib.bcast_array(layout.worker_comm, buf, root=0)
  return plan.unpack(buf, plan.all_leaves())[1]


def summarize(rank_stats: list[dict], num_groups: int) -> dict:
  """Aggregates per-rank statistics (gathered on rank 0) into summary numbers."""
  workers = [r for r in rank_stats if r["role"] == "worker"]
  servers = [r for r in rank_stats if r["role"] == "server"]
  throughput = [0.0] * num_groups
  for r in workers:
    if r["is_leader"] and r["wall_s"] > 0:
      throughput[r["group"]] = r["group_examples"] / r["wall_s"]
  staleness = (
    np.concatenate([np.asarray(s["staleness"], np.int64) for s in servers])
    if servers
    else np.zeros(0, np.int64)
  )
  totals = {
    k: sum(r["timings"][k] for r in workers)
    for k in ("compute", "communication", "waiting", "input")
  }
  busy = sum(totals.values())
  summed = sum((per_step(Timings(**r["timings"])) for r in workers), np.zeros(6))
  return {
    **time_split(summed[:5], summed[5]),
    "examples_per_second_by_group": throughput,
    "staleness_mean": float(staleness.mean()) if staleness.size else 0.0,
    "staleness_max": int(staleness.max()) if staleness.size else 0,
    "staleness_histogram": np.bincount(staleness).tolist() if staleness.size else [],
    "waiting_fraction": totals["waiting"] / busy if busy else 0.0,
    "compute_fraction": totals["compute"] / busy if busy else 0.0,
    "input_fraction": totals["input"] / busy if busy else 0.0,
    "server_updates": max((s["version"] for s in servers), default=0),
    # Every server sees every push, so any one of them counts the updates by group.
    "updates_by_group": servers[0]["updates_by_group"] if servers else [],
    "ranks": [{k: v for k, v in r.items() if k != "staleness"} for r in rank_stats],
  }


def gather_stats(layout: comm_lib.Layout, stats: dict) -> list[dict] | None:
  """Per-rank statistics, gathered on rank 0 (None elsewhere)."""
  comm_lib.wait_all([layout.world.Ibarrier()])  # sleep-poll rather than spin in gather
  return layout.world.gather(stats, root=0)


def gradient_capture() -> optax.GradientTransformation:
  """An optax transform that applies nothing and keeps the (reduced) gradients as its state.

  Workers run the shared train step with it, so the step computes and reduces
  gradients exactly as in synchronous training, leaves the parameters alone
  (the servers own the update) and hands the gradients back in `opt_state`.
  """

  def init(params):
    return jax.tree_util.tree_map(lambda p: jax.numpy.zeros_like(p), params)

  def update(updates, state, params=None):
    del state, params
    return jax.tree_util.tree_map(lambda g: jax.numpy.zeros_like(g), updates), updates

  return optax.GradientTransformation(init, update)
