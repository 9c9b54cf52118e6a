"""The MPI topology: who is a worker or a parameter server, and which compute group.

The single place that knows how ranks are laid out. Every other module asks a
`Layout` for its communicators instead of touching `MPI.COMM_WORLD`.

Placement: workers are world ranks 0 .. W-1 and parameter servers the last S
ranks, so rank 0 is always a worker (the chief, which evaluates and writes). The
W workers form G compute groups of W/G consecutive ranks: launchers fill nodes
with consecutive ranks, so a group's all-reduce stays inside a node where it can
(Kurth et al. 2017 place groups topology-aware for the same reason).

Every communicator is a clone (mpi4jax's "sharp bits"): mpi4jax collectives run
on XLA's threads while mpi4py calls run on the host thread, and messages on the
same communicator from both could match each other. So each role gets one
communicator for jitted collectives (`*_jax`) and another for host calls.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
import traceback

import numpy as np
from mpi4py import MPI

STRATEGIES_WITH_MPI = ("sync", "hybrid")

# Sleep between polls of a non-blocking request. MPICH busy-polls inside blocking
# calls; with more ranks than cores (the development machine has 2) a polling
# rank steals the core of the rank it waits for, so waits that may be long
# (servers idle between pushes, group members waiting for their leader) poll
# with a short sleep instead.
POLL_INTERVAL_S = 2e-4


@dataclasses.dataclass(frozen=True)
class Layout:
  """This rank's place in the world; the same arithmetic on every rank.

  group: this rank's compute group (-1 on a parameter server).
  server_index: this rank's index among the servers (-1 on a worker).
  group_comm / group_comm_jax: the ranks of this compute group (the servers'
    own communicator on a server), for host and for jitted calls.
  worker_comm: all workers (evaluation sums, data sharding); None on a server.
  server_comm: all servers; None on a worker.
  world: a clone of COMM_WORLD for point-to-point traffic between leaders and servers.
  """

  strategy: str
  rank: int
  size: int
  num_groups: int
  num_servers: int
  group: int
  server_index: int
  world: MPI.Comm
  group_comm: MPI.Comm
  group_comm_jax: MPI.Comm
  worker_comm: MPI.Comm | None
  server_comm: MPI.Comm | None

  @property
  def num_workers(self) -> int:
    return self.size - self.num_servers

  @property
  def ranks_per_group(self) -> int:
    return self.num_workers // self.num_groups

  @property
  def server_ranks(self) -> tuple[int, ...]:
    return tuple(range(self.num_workers, self.size))

  @property
  def is_server(self) -> bool:
    return self.server_index >= 0

  @property
  def group_leaders(self) -> tuple[int, ...]:
    """World rank of each group's leader (its first rank)."""
    return tuple(g * self.ranks_per_group for g in range(self.num_groups))

  @property
  def is_leader(self) -> bool:
    return not self.is_server and self.rank == self.group_leaders[self.group]

  @property
  def worker_index(self) -> int:
    """Index among the workers (the data shard this rank reads); -1 on a server."""
    return -1 if self.is_server else self.rank


def group_of(rank: int, *, num_workers: int, num_groups: int) -> int:
  """The compute group of a world rank (-1 for a parameter server)."""
  if rank >= num_workers:
    return -1
  return rank // (num_workers // num_groups)


def check_counts(strategy: str, size: int, num_groups: int, num_servers: int) -> None:
  """Raises with the numbers involved when the ranks cannot be laid out."""
  if strategy == "sync":
    if num_groups != 1 or num_servers != 0:
      raise ValueError(
        "parallel.strategy='sync' uses one group and no servers; got "
        f"num_groups={num_groups}, num_servers={num_servers}"
      )
    return
  if num_servers < 1:
    raise ValueError(f"parallel.strategy='hybrid' needs num_servers >= 1, got {num_servers}")
  workers = size - num_servers
  if workers < 1:
    raise ValueError(f"parallel.num_servers={num_servers} leaves no workers among {size} MPI ranks")
  if num_groups < 1 or workers % num_groups:
    raise ValueError(
      f"{workers} worker ranks ({size} ranks - {num_servers} servers) cannot form "
      f"parallel.num_groups={num_groups} equal compute groups"
    )


_LAYOUTS: dict[tuple, Layout] = {}


def layout(strategy: str, *, num_groups: int = 1, num_servers: int = 0) -> Layout:
  """Builds (once per process and argument set) the communicators for `strategy`.

  Collective over COMM_WORLD: every rank must call it with the same arguments.
  Cached because cloning and splitting are collective and the training loop and
  a strategy's own loop may both ask for the layout.
  """
  if strategy not in STRATEGIES_WITH_MPI:
    raise ValueError(f"MPI strategies are {STRATEGIES_WITH_MPI}, got {strategy!r}")
  key = (strategy, num_groups, num_servers)
  if key in _LAYOUTS:
    return _LAYOUTS[key]
  world = MPI.COMM_WORLD.Clone()
  rank, size = world.Get_rank(), world.Get_size()
  check_counts(strategy, size, num_groups, num_servers)
  workers = size - num_servers
  group = group_of(rank, num_workers=workers, num_groups=num_groups)
  server_index = rank - workers if rank >= workers else -1
  # Colour num_groups collects the servers into their own communicator.
  group_comm = world.Split(color=group if group >= 0 else num_groups, key=rank)
  group_comm_jax = group_comm.Clone()
  role_comm = world.Split(color=0 if group >= 0 else 1, key=rank)
  result = Layout(
    strategy=strategy,
    rank=rank,
    size=size,
    num_groups=num_groups,
    num_servers=num_servers,
    group=group,
    server_index=server_index,
    world=world,
    group_comm=group_comm,
    group_comm_jax=group_comm_jax,
    worker_comm=role_comm if group >= 0 else None,
    server_comm=role_comm if group < 0 else None,
  )
  _LAYOUTS[key] = result
  return result


def wait_all(requests: list[MPI.Request]) -> None:
  """MPI.Request.Waitall that sleeps between polls (see POLL_INTERVAL_S)."""
  while not MPI.Request.Testall(requests):
    time.sleep(POLL_INTERVAL_S)


def bcast_array(comm: MPI.Comm, array: np.ndarray, root: int) -> None:
  """In-place broadcast of a contiguous array, polling politely while waiting."""
  wait_all([comm.Ibcast(array, root=root)])


def allreduce_sum_host(comm: MPI.Comm):
  """A host-side sum over `comm` of numpy arrays (or scalars), returned as numpy."""

  def allreduce_sum(value: np.ndarray) -> np.ndarray:
    send = np.ascontiguousarray(np.asarray(value))
    recv = np.empty_like(send)
    wait_all([comm.Iallreduce(send, recv, op=MPI.SUM)])
    return recv

  return allreduce_sum


def blocking_allreduce_sum(comm: MPI.Comm):
  """mpi4py's plain MPI_Allreduce(SUM) of numpy buffers, (send, recv) -> None.

  For measurements against mpi4jax: no polling loop in between.
  """

  def allreduce(send: np.ndarray, recv: np.ndarray) -> None:
    comm.Allreduce(send, recv, op=MPI.SUM)

  return allreduce


def allreduce_max_host(comm: MPI.Comm):
  """The maximum over `comm` of a float (e.g. the slowest rank's time)."""

  def allreduce_max(value: float) -> float:
    return float(comm.allreduce(float(value), op=MPI.MAX))

  return allreduce_max


def blocking_barrier(comm: MPI.Comm):
  """MPI_Barrier as it is (busy-polling): for timing, where leaving it together matters."""

  def wait_for_everyone() -> None:
    comm.Barrier()

  return wait_for_everyone


def barrier(comm: MPI.Comm):
  def wait_for_everyone() -> None:
    wait_all([comm.Ibarrier()])

  return wait_for_everyone


@contextlib.contextmanager
def abort_on_exception(comm: MPI.Comm | None = None):
  """Turns an exception on one rank into MPI_Abort of the whole job.

  Without it the other ranks wait forever for a message the failed rank will
  never send (a server for a push, a group for its leader).
  """
  try:
    yield
  except BaseException:
    traceback.print_exc()
    sys.stderr.flush()
    (comm or MPI.COMM_WORLD).Abort(1)
    raise
