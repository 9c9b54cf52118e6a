"""The parameter-server protocol of hybrid training (hybrid.py): servers, groups, messages.

After Kurth et al. (2017, "Deep Learning at 15PF"). The last S ranks are
parameter servers; each owns a shard of the parameters (whole leaves, balanced by
size) and the optimizer state of that shard. The other ranks form G compute
groups. Per step, a group

  1. computes gradients with the shared jitted train step, all-reduced inside the
     group by mpi4jax (`reduce_grads`), so the group acts as one large batch;
  2. its leader pushes them to every server and pulls the fresh shards back
     (mpi4py non-blocking point-to-point: all servers work at once);
  3. the leader broadcasts the parameters to the rest of its group.

A server applies pushes in arrival order from any group (MPI.ANY_SOURCE), so
groups never wait for each other: G = 1 is synchronous training, one rank per
group fully asynchronous. Each update records its staleness: the server's
version minus the version the gradient was computed from.

Shutdown: a server stops applying updates once it reaches the update budget
(`train.steps` server updates; later pushes are answered but not applied) and
says so in its reply; the leader then sends DONE, and a server leaves its loop
when every group has, writes its final checkpoint and sends its final shard to
rank 0 for evaluation.

Checkpoints: each server writes its own shard and optimizer state as
`<dir>/shard_<s>_of_<S>/version_<v>.npz` (written to a temporary name, then
renamed), keeping the last two. On restart the servers resume from the newest
version all of them have, and a leader's start-up pull returns its group's step
count so its data stream continues where it stopped.

The optimizer is applied per shard, which is exact for optimizers that act leaf
by leaf (SGD, momentum, Adam, weight decay) but not for transforms that couple
leaves (global-norm clipping clips each shard by its own norm).
"""

from __future__ import annotations

import glob
import json
import os
import re
import time
from collections.abc import Sequence

import jax
import numpy as np
import optax
from mpi4py import MPI

from climjax.parallel import comm as comm_lib
from climjax.parallel.compute_group import (
  ComputeGroup,
  final_params,
  gather_stats,
  gradient_capture,
  summarize,
)
from climjax.parallel.shards import (
  HEADER_BYTES,
  HEADER_LEN,
  TAG_DONE,
  TAG_FINAL,
  TAG_PARAMS,
  TAG_PULL,
  TAG_PUSH,
  ShardPlan,
  assign_leaves,
)
from climjax.parallel.strategy import Timings

__all__ = [
  "HEADER_BYTES",
  "HEADER_LEN",
  "ComputeGroup",
  "ParameterServer",
  "ShardPlan",
  "Timings",
  "assign_leaves",
  "final_params",
  "gather_stats",
  "gradient_capture",
  "summarize",
]


class ParameterServer:
  """Owns one shard of the parameters and its optimizer state; applies pushes in arrival order."""

  def __init__(
    self,
    layout: comm_lib.Layout,
    plan: ShardPlan,
    init_leaves: Sequence[np.ndarray],
    tx: optax.GradientTransformation,
    *,
    total_updates: int,
    checkpoint_dir: str | None = None,
    checkpoint_every: int = 0,
  ):
    self.layout = layout
    self.plan = plan
    self.index = layout.server_index
    self.mine = plan.leaves_of(self.index)
    self.tx = tx
    self.total_updates = int(total_updates)
    self.params = [np.asarray(init_leaves[i]) for i in self.mine]
    self.opt_state = tx.init(self.params)
    self.version = 0
    self.group_steps = np.zeros(layout.num_groups, np.int64)
    self.staleness: list[int] = []
    self.updates_by_group = np.zeros(layout.num_groups, np.int64)
    self.timings = Timings()
    self.checkpoint_dir = checkpoint_dir
    self.checkpoint_every = int(checkpoint_every)
    self.resumed_from = 0

    def apply_update(params, opt_state, grads):
      updates, opt_state = tx.update(grads, opt_state, params)
      return optax.apply_updates(params, updates), opt_state

    # Compiled now, so that the first push is not charged a compilation and a
    # group does not wait on it.
    self._apply_update = (
      jax.jit(apply_update).lower(self.params, self.opt_state, self.params).compile()
    )

  def _by_index(self) -> dict[int, np.ndarray]:
    """This shard's leaves keyed by their index in the whole parameter list."""
    return dict(zip(self.mine, self.params, strict=True))

  # -- checkpoints: one file per shard and version, written atomically ---------

  def _shard_dir(self) -> str:
    return os.path.join(self.checkpoint_dir, f"shard_{self.index}_of_{self.plan.num_servers}")

  def _versions_on_disk(self) -> list[int]:
    if not self.checkpoint_dir:
      return []
    found = []
    for path in glob.glob(os.path.join(self._shard_dir(), "version_*.npz")):
      match = re.fullmatch(r"version_(\d+)\.npz", os.path.basename(path))
      if match:
        found.append(int(match.group(1)))
    return sorted(found)

  def save(self) -> None:
    if not self.checkpoint_dir or self.version in self._versions_on_disk():
      return
    os.makedirs(self._shard_dir(), exist_ok=True)
    arrays = {f"param_{k}": np.asarray(p) for k, p in enumerate(self.params)}
    opt_leaves = jax.tree_util.tree_leaves(self.opt_state)
    arrays.update({f"opt_{k}": np.asarray(x) for k, x in enumerate(opt_leaves)})
    arrays["version"] = np.int64(self.version)
    arrays["group_steps"] = self.group_steps
    arrays["leaf_shapes"] = np.array(json.dumps([self.plan.shapes[i] for i in self.mine]))
    final = os.path.join(self._shard_dir(), f"version_{self.version:09d}.npz")
    partial = final + ".partial"
    with open(partial, "wb") as f:
      np.savez(f, **arrays)
      f.flush()
      os.fsync(f.fileno())
    os.replace(partial, final)  # readers only ever see complete files
    # Keep two versions: the servers resume from the newest version they all
    # have, and a stop can land between one server's write and another's.
    for old in self._versions_on_disk()[:-2]:
      os.remove(os.path.join(self._shard_dir(), f"version_{old:09d}.npz"))

  def restore(self) -> int:
    """Loads the newest version every server has on disk (collective over the servers).

    Returns the version resumed from (0: none, keep the initial parameters).
    """
    mine = set(self._versions_on_disk())
    every = self.layout.server_comm.allgather(mine)
    common = set.intersection(*every) if every else set()
    if not common:
      return 0
    version = max(common)
    path = os.path.join(self._shard_dir(), f"version_{version:09d}.npz")
    with np.load(path) as data:
      shapes = [tuple(s) for s in json.loads(str(data["leaf_shapes"]))]
      expected = [self.plan.shapes[i] for i in self.mine]
      if shapes != expected:
        raise ValueError(
          f"{path}: parameter shapes {shapes} do not match this run's shard {expected} "
          "(a different model or number of servers?)"
        )
      self.params = [data[f"param_{k}"] for k in range(len(self.mine))]
      treedef = jax.tree_util.tree_structure(self.opt_state)
      opt_leaves = [data[f"opt_{k}"] for k in range(treedef.num_leaves)]
      self.opt_state = jax.tree_util.tree_unflatten(treedef, opt_leaves)
      self.version = int(data["version"])
      steps = data["group_steps"]
      self.group_steps[: min(len(steps), len(self.group_steps))] = steps[: len(self.group_steps)]
    self.resumed_from = self.version
    return self.version

  # -- the serving loop ------------------------------------------------------

  def _reply(self, dest: int, group: int, pending: list, staleness: int = -1) -> None:
    stop = int(self.version >= self.total_updates)
    header = [self.version, stop, self.group_steps[group], staleness]
    buf = self.plan.pack(self._by_index(), self.mine, header)
    pending.append((self.layout.world.Isend(buf, dest=dest, tag=TAG_PARAMS), buf))

  def serve(self) -> dict:
    """Serves pushes until every group has said DONE; returns this server's statistics."""
    world = self.layout.world
    group_of = {leader: g for g, leader in enumerate(self.layout.group_leaders)}
    grad_buf = self.plan.buffer(self.mine)
    pending: list[tuple[MPI.Request, np.ndarray]] = []
    done = 0
    start = time.perf_counter()
    while done < self.layout.num_groups:
      t0 = time.perf_counter()
      status = MPI.Status()
      message = world.improbe(MPI.ANY_SOURCE, MPI.ANY_TAG, status)
      while message is None:
        time.sleep(comm_lib.POLL_INTERVAL_S)
        message = world.improbe(MPI.ANY_SOURCE, MPI.ANY_TAG, status)
      t1 = time.perf_counter()
      self.timings.waiting += t1 - t0
      source, tag = status.Get_source(), status.Get_tag()
      group = group_of[source]
      if tag == TAG_PUSH:
        message.Recv(grad_buf)
        t2 = time.perf_counter()
        header, grads = self.plan.unpack(grad_buf, self.mine)
        computed_on, group_step = int(header[0]), int(header[2])
        self.group_steps[group] = max(self.group_steps[group], group_step)
        staleness = -1  # a push after the budget is not applied
        if self.version < self.total_updates:
          staleness = self.version - computed_on
          self.staleness.append(staleness)
          params, self.opt_state = self._apply_update(self.params, self.opt_state, grads)
          self.params = [np.asarray(p) for p in params]
          self.version += 1
          self.updates_by_group[group] += 1
          if self.checkpoint_every and self.version % self.checkpoint_every == 0:
            self.save()
        t3 = time.perf_counter()
        self._reply(source, group, pending, staleness)
        self.timings.compute += t3 - t2
        self.timings.communication += (t2 - t1) + (time.perf_counter() - t3)
      elif tag == TAG_PULL:
        message.Recv(np.empty(HEADER_BYTES, np.uint8))
        self._reply(source, group, pending)
        self.timings.communication += time.perf_counter() - t1
      elif tag == TAG_DONE:
        message.Recv(np.empty(HEADER_BYTES, np.uint8))
        done += 1
      else:
        raise RuntimeError(
          f"parameter server {self.index}: unexpected tag {tag} from rank {source}"
        )
      pending = [(r, b) for r, b in pending if not r.Test()]
    comm_lib.wait_all([r for r, _ in pending])
    wall = time.perf_counter() - start
    self.save()
    # The final shard goes to rank 0, which evaluates.
    header = [self.version, 1, 0, 0]
    comm_lib.wait_all(
      [world.Isend(self.plan.pack(self._by_index(), self.mine, header), dest=0, tag=TAG_FINAL)]
    )
    return {
      "role": "server",
      "rank": self.layout.rank,
      "server": self.index,
      "updates": self.version - self.resumed_from,
      "version": self.version,
      "resumed_from": self.resumed_from,
      "updates_by_group": self.updates_by_group.tolist(),
      "staleness": self.staleness,
      "wall_s": wall,
      "timings": self.timings.as_dict(),
      "shard_bytes": int(grad_buf.size - HEADER_BYTES),
      "num_leaves": len(self.mine),
    }
