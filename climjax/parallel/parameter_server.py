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

import dataclasses
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

TAG_PUSH = 11  # leader -> server: gradients of the server's shard
TAG_PULL = 12  # leader -> server: asks for the current shard (start-up)
TAG_DONE = 13  # leader -> server: this group has finished
TAG_PARAMS = 14  # server -> leader: the shard after the update (reply to PUSH/PULL)
TAG_FINAL = 15  # server -> rank 0: the final shard, for evaluation

# Every message starts with HEADER_LEN int64. Leader -> server: the version the
# gradient was computed from, 0, the group's step, examples in the step.
# Server -> leader: the server's version, stop flag, the group's step, staleness
# of the update just applied (-1: none).
HEADER_LEN = 4
HEADER_BYTES = HEADER_LEN * 8


def assign_leaves(sizes: Sequence[int], num_servers: int) -> list[int]:
  """The server that owns each leaf: largest leaves first, each to the least-loaded server."""
  load = [0] * num_servers
  owner = [0] * len(sizes)
  for i in sorted(range(len(sizes)), key=lambda i: (-sizes[i], i)):
    server = min(range(num_servers), key=lambda s: (load[s], s))
    owner[i] = server
    load[server] += sizes[i]
  return owner


@dataclasses.dataclass(frozen=True)
class ShardPlan:
  """How the parameter pytree is cut into server shards and packed into messages.

  A message is a byte buffer: HEADER_LEN int64 followed by the raw bytes of the
  shard's leaves in order, so one send carries a whole shard of any dtypes.
  """

  treedef: jax.tree_util.PyTreeDef
  shapes: tuple[tuple[int, ...], ...]
  dtypes: tuple[np.dtype, ...]
  owner: tuple[int, ...]
  num_servers: int

  @classmethod
  def from_tree(cls, tree, num_servers: int) -> ShardPlan:
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    shapes = tuple(tuple(np.shape(x)) for x in leaves)
    dtypes = tuple(np.dtype(np.asarray(x).dtype) for x in leaves)
    sizes = [
      int(np.prod(s, dtype=np.int64)) * d.itemsize for s, d in zip(shapes, dtypes, strict=True)
    ]
    return cls(treedef, shapes, dtypes, tuple(assign_leaves(sizes, num_servers)), num_servers)

  def leaves_of(self, server: int) -> tuple[int, ...]:
    return tuple(i for i, s in enumerate(self.owner) if s == server)

  def _nbytes(self, indices: Sequence[int]) -> int:
    return sum(
      int(np.prod(self.shapes[i], dtype=np.int64)) * self.dtypes[i].itemsize for i in indices
    )

  def buffer(self, indices: Sequence[int]) -> np.ndarray:
    return np.empty(HEADER_BYTES + self._nbytes(indices), np.uint8)

  def pack(
    self, leaves: Sequence[np.ndarray], indices: Sequence[int], header: Sequence[int]
  ) -> np.ndarray:
    """One message: header, then leaves[k] for k in indices (a full leaf list)."""
    buf = self.buffer(indices)
    self.pack_into(buf, leaves, indices, header)
    return buf

  def pack_into(
    self, buf: np.ndarray, leaves, indices: Sequence[int], header: Sequence[int]
  ) -> None:
    buf[:HEADER_BYTES].view(np.int64)[:] = header
    offset = HEADER_BYTES
    for i in indices:
      raw = np.ascontiguousarray(leaves[i], dtype=self.dtypes[i]).reshape(-1).view(np.uint8)
      buf[offset : offset + raw.size] = raw
      offset += raw.size

  def unpack(self, buf: np.ndarray, indices: Sequence[int]) -> tuple[np.ndarray, list[np.ndarray]]:
    """(header, leaves in `indices` order), copied out of the buffer."""
    header = buf[:HEADER_BYTES].view(np.int64).copy()
    out, offset = [], HEADER_BYTES
    for i in indices:
      n = int(np.prod(self.shapes[i], dtype=np.int64)) * self.dtypes[i].itemsize
      out.append(buf[offset : offset + n].view(self.dtypes[i]).reshape(self.shapes[i]).copy())
      offset += n
    return header, out

  def all_leaves(self) -> tuple[int, ...]:
    return tuple(range(len(self.shapes)))

  def unflatten(self, leaves: Sequence[np.ndarray]):
    return jax.tree_util.tree_unflatten(self.treedef, list(leaves))


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


def _wait(requests: list[MPI.Request]) -> None:
  comm_lib.wait_all(requests)


# ----------------------------------------------------------------------------
# Parameter server
# ----------------------------------------------------------------------------


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
    _wait([r for r, _ in pending])
    wall = time.perf_counter() - start
    self.save()
    # The final shard goes to rank 0, which evaluates.
    header = [self.version, 1, 0, 0]
    _wait([world.Isend(self.plan.pack(self._by_index(), self.mine, header), dest=0, tag=TAG_FINAL)])
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


# ----------------------------------------------------------------------------
# Compute group
# ----------------------------------------------------------------------------


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
    _wait(sends)
    t1 = time.perf_counter()
    # Replies arrive when the servers have applied the update: time spent here is
    # queueing behind other groups' pushes and the servers' own work.
    _wait(recvs)
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
    _wait(
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
    _wait(
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
  return {
    "examples_per_second_by_group": throughput,
    "staleness_mean": float(staleness.mean()) if staleness.size else 0.0,
    "staleness_max": int(staleness.max()) if staleness.size else 0,
    "staleness_histogram": np.bincount(staleness).tolist() if staleness.size else [],
    "communication_fraction": totals["communication"] / busy if busy else 0.0,
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
