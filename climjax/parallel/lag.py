"""Gradient lag: all-reduce step k's gradients while step k+1 computes, apply them one step late.

Kurth et al. (2018, "Exascale Deep Learning for Climate Analytics") hide the
gradient all-reduce behind the next step's forward and backward pass. Chosen by
`parallel.gradient_lag = 1` with strategy "sync" (or "single", which has no
communication but shows what the lag alone does to convergence).

How it runs in the one training loop: the jitted step computes this rank's
gradients and applies nothing (`lagged_capture` keeps them in the optimizer
state beside the real optimizer's); after the step, this strategy hands them to
a background thread that all-reduces them with mpi4py (the host thread then
dispatches the next step, so the two overlap), waits for the previous step's
all-reduce and applies that mean with the real optimizer. Step k+1 therefore
computes its gradients at parameters that lack step k's update: a staleness of
exactly one. Before a checkpoint and at the end the pending update is applied
(a flush), so a checkpoint holds no gradient in flight and a resumed run is the
same run.

The time split: the step is compute; waiting for an all-reduce that the next
step did not hide is communication; the all-reduce time that was hidden is
reported separately (`hidden_communication_seconds`). Waiting for a slower rank
happens inside the hidden all-reduce and is not separated from it.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from climjax.parallel.strategy import Strategy, Topology


class LagState(NamedTuple):
  inner: optax.OptState  # the real optimizer's state
  grads: optax.Updates  # this step's local gradients, for the host to all-reduce


def lagged_capture(tx: optax.GradientTransformation) -> optax.GradientTransformation:
  """The step's optimizer: applies nothing, keeps `tx`'s state and the step's gradients."""

  def init(params):
    return LagState(inner=tx.init(params), grads=jax.tree.map(jax.numpy.zeros_like, params))

  def update(updates, state, params=None):
    del params
    zeros = jax.tree.map(jax.numpy.zeros_like, updates)
    return zeros, LagState(inner=state.inner, grads=updates)

  return optax.GradientTransformation(init, update)


def make_apply(tx: optax.GradientTransformation, unravel: Callable) -> Callable:
  """jit((params, lag_state, flat gradient) -> (params, lag_state)): `tx` applied to the
  gradient that `unravel` turns back into the parameters' tree."""

  def apply(params, state: LagState, flat):
    updates, inner = tx.update(unravel(flat), state.inner, params)
    return optax.apply_updates(params, updates), state._replace(inner=inner)

  return jax.jit(apply)


def ravel_fn() -> Callable:
  """jit(tree -> one flat vector), the host's view of a gradient."""
  return jax.jit(lambda grads: ravel_pytree(grads)[0])


class _Done:
  """A finished future (one process: nothing to all-reduce)."""

  def __init__(self, value):
    self._value = value

  def result(self):
    return self._value


class LaggedStrategy(Strategy):
  """sync (or single) with the all-reduce on a host thread and updates one step late.

  `allreduce_mean(flat) -> flat`: the mean over the ranks of a float32 vector,
  called on the background thread (None in one process).
  """

  checkpoints_on_signal = False  # see Strategy

  def __init__(self, topology: Topology, parallel_config, allreduce_mean: Callable | None):
    super().__init__(topology, parallel_config)
    self._allreduce_mean = allreduce_mean
    self._executor = (
      concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="gradient-lag")
      if allreduce_mean is not None
      else None
    )
    self._pending = None
    self._hidden = 0.0  # seconds the background all-reduces took (timed steps)
    self._tx = None
    self._apply = self._ravel = None

  def describe(self) -> str:
    ranks = f"{self.topology.size} ranks, " if self.topology.size > 1 else ""
    return f"{self.name}: {ranks}gradient lag 1 (all-reduce overlapped, updates one step late)"

  def step_optimizer(self, tx):
    self._tx = tx
    return lagged_capture(tx)

  def restore(self, state, *, workdir, total_steps, checkpoint_every, warm_up):
    self._apply = make_apply(self._tx, ravel_pytree(state.params)[1])
    self._ravel = ravel_fn()
    return super().restore(
      state, workdir=workdir, total_steps=total_steps, checkpoint_every=checkpoint_every,
      warm_up=warm_up,
    )  # fmt: skip

  def _reduce(self, flat: np.ndarray) -> np.ndarray:
    t0 = time.perf_counter()
    result = self._allreduce_mean(flat)
    self._hidden += time.perf_counter() - t0
    return result

  def _submit(self, flat: np.ndarray):
    if self._executor is None:
      return _Done(flat)
    return self._executor.submit(self._reduce, flat)

  def _apply_pending(self, state):
    """Waits for the pending all-reduce (communication) and applies it (compute)."""
    if self._pending is None:
      return state
    t0 = time.perf_counter()
    reduced = self._pending.result()
    t1 = time.perf_counter()
    self._pending = None
    params, opt_state = jax.block_until_ready(self._apply(state.params, state.opt_state, reduced))
    state = state.replace(params=params, opt_state=opt_state)
    self.timings.communication += t1 - t0
    self.timings.compute += time.perf_counter() - t1
    return state

  def after_step(self, state, *, step: int, examples: int, started: float):
    del examples
    flat = np.asarray(self._ravel(state.opt_state.grads))  # waits for the step
    self.account(started)
    state = self._apply_pending(state)  # step k-1's mean, all-reduced while step k ran
    self._pending = self._submit(flat)
    self.progress = step
    stop = step >= self.total_steps
    if stop or (self.checkpoint_every and step % self.checkpoint_every == 0):
      state = self._apply_pending(state)  # flush: a checkpoint holds nothing in flight
    return state, stop

  def start_timing(self) -> None:
    super().start_timing()
    self._hidden = 0.0

  def finish(self, state):
    state = self._apply_pending(state)
    params, split = super().finish(state)
    # The all-reduce time the next step hid: the thread's, less what the host waited for.
    hidden = max(self._hidden - self.timings.communication, 0.0) / max(self.timings.steps, 1)
    hidden = float(self.topology.allreduce_sum(np.array([hidden]))[0]) / self.topology.size
    return params, {**split, "gradient_lag": 1, "hidden_communication_seconds": hidden}

  def close(self) -> None:
    if self._executor is not None:
      self._executor.shutdown(wait=True)
    super().close()
