"""Synchronous data parallelism: gradients averaged over all ranks every step.

`reduce_grads` runs inside the jitted train step: an mpi4jax all-reduce of the
gradient pytree, so every rank applies the same update and the parameters stay
identical without ever being broadcast. Same convergence per step as one process
with the global batch; the step runs at the pace of the slowest rank.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import mpi4jax
import numpy as np
from jax.experimental import io_callback
from mpi4py import MPI

from climjax.parallel import comm as comm_lib
from climjax.parallel.strategy import StepClock, Topology


def allreduce_sum(comm: MPI.Comm) -> Callable[[jax.Array], jax.Array]:
  """The sum of one array over `comm`, for use inside jit (mpi4jax)."""

  def summed(x: jax.Array) -> jax.Array:
    return mpi4jax.allreduce(x, op=MPI.SUM, comm=comm)

  return summed


def allreduce_mean(comm: MPI.Comm, clock: StepClock | None = None) -> Callable:
  """reduce_grads for a jitted step: mean of a pytree over the ranks of `comm`.

  Leaves of one dtype are concatenated into one buffer so that a network with
  many small layers pays one all-reduce latency per step, not one per leaf.
  With a `clock`, host callbacks around each all-reduce time it: `arrive` once
  the buffer is ready (and waits there for the other ranks), `done` after.
  """
  size = comm.Get_size()

  def reduce_grads(tree):
    if size == 1:
      return tree
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    by_dtype: dict[jnp.dtype, list[int]] = {}
    for i, leaf in enumerate(leaves):
      by_dtype.setdefault(jnp.result_type(leaf), []).append(i)
    reduced = list(leaves)
    for indices in by_dtype.values():
      flat = jnp.concatenate([jnp.ravel(leaves[i]) for i in indices])
      if clock is not None:
        flat = _after_host_call(flat, clock.arrive)
      flat = allreduce_sum(comm)(flat) / size
      if clock is not None:
        flat = _after_host_call(flat, clock.done)
      offset = 0
      for i in indices:
        n = leaves[i].size
        reduced[i] = flat[offset : offset + n].reshape(leaves[i].shape)
        offset += n
    return jax.tree_util.tree_unflatten(treedef, reduced)

  return reduce_grads


def _after_host_call(x: jax.Array, fn: Callable[[], None]) -> jax.Array:
  """`x`, once the host has run `fn()`: after x is computed and before anything uses it.

  The callback reads one element of x (so it runs once x exists), and the
  optimization barrier makes every consumer of x wait for its result.
  """

  def call(_):
    fn()
    return np.zeros((), np.float32)

  token = io_callback(call, jax.ShapeDtypeStruct((), jnp.float32), x[:1])
  x, _ = jax.lax.optimization_barrier((x, token))
  return x


def with_delay(reduce_grads: Callable, seconds: float) -> Callable:
  """reduce_grads that first sleeps `seconds` on this rank: an injected straggler.

  The sleep is a host callback inside the jitted step, on the smallest gradient
  leaf, whose result the reduction consumes: it adds to the step as slow
  compute would. A sleep in the Python loop instead overlaps with the step
  already dispatched (JAX dispatches asynchronously) and hides in it.
  """
  if seconds <= 0:
    return reduce_grads

  def sleep_then_return(x: np.ndarray) -> np.ndarray:
    time.sleep(seconds)
    return np.asarray(x)

  def delayed(tree):
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    smallest = min(range(len(leaves)), key=lambda i: leaves[i].size)
    leaf = leaves[smallest]
    leaves[smallest] = io_callback(
      sleep_then_return, jax.ShapeDtypeStruct(leaf.shape, leaf.dtype), leaf
    )
    return reduce_grads(jax.tree_util.tree_unflatten(treedef, leaves))

  return delayed


def straggler_delay(parallel_config, rank: int) -> float:
  """Seconds per step this rank sleeps (parallel.straggler_rank / straggler_delay).

  Applied through `with_delay` in the reduce_grads that setup() returns, so it
  slows every strategy's step the same way.
  """
  if int(parallel_config.get("straggler_rank", -1)) != rank:
    return 0.0
  delay = float(parallel_config.get("straggler_delay", 0.0))
  if delay < 0:
    raise ValueError(f"parallel.straggler_delay must be >= 0 seconds, got {delay}")
  return delay


def step_clock(comm: MPI.Comm) -> StepClock:
  """A StepClock whose `arrive` waits at a barrier on its own clone of `comm`."""
  return StepClock(comm_lib.barrier(comm.Clone()))


def host_allreduce_mean(comm: MPI.Comm) -> Callable[[np.ndarray], np.ndarray]:
  """The mean over the ranks of `comm` of a numpy vector, on a clone of its own.

  For a background thread (gradient lag): the clone keeps its messages apart
  from the host collectives the main thread makes meanwhile (evaluation sums).
  """
  summed = comm_lib.allreduce_sum_host(comm.Clone())
  size = comm.Get_size()

  def mean(flat: np.ndarray) -> np.ndarray:
    return summed(flat) / size

  return mean


def setup(parallel_config, *, reduce_in_step: bool = True):
  """Topology for synchronous training over every MPI rank.

  reduce_in_step=False: the jitted step keeps this rank's own gradients (the
  gradient-lag strategy all-reduces them on the host instead).
  """
  layout = comm_lib.layout("sync")
  clock = step_clock(layout.world) if reduce_in_step else None
  reduce = allreduce_mean(layout.group_comm_jax, clock) if reduce_in_step else (lambda g: g)
  return Topology(
    strategy="sync",
    rank=layout.rank,
    size=layout.size,
    is_chief=layout.rank == 0,
    data_index=layout.rank,
    data_count=layout.size,
    reduce_grads=with_delay(reduce, straggler_delay(parallel_config, layout.rank)),
    allreduce_sum=comm_lib.allreduce_sum_host(layout.world),
    barrier=comm_lib.barrier(layout.world),
    scaling=parallel_config.get("scaling", "strong"),
    clock=clock,
  )
