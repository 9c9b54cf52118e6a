"""What a training strategy is: where a rank sits, and what it does around the step.

The training loop (climjax/training/train.py) runs any task under any strategy.
A task says what is trained; a strategy says how gradients and parameters move:

- `Topology`: this rank's place (chief or not, which data shard, worker or
  parameter server) and the `reduce_grads` the jitted step applies to its
  gradients (identity, or an MPI all-reduce).
- `Strategy`: what happens outside the step, through a handful of methods the
  loop calls in order: `step_optimizer` (the optax transform the step applies),
  `restore` (state and first step: from the chief's orbax checkpoint, or from
  the parameter servers), `after_step` (nothing, or the leader's push/pull with
  the servers), `saves_now` / `save`, `finish` (the final parameters and this strategy's
  summary statistics), and `serve` on a parameter-server rank.

This module knows no MPI, no model and no training code: `single` and `sync`
are this class with another `Topology` (sync.py makes one whose reduce_grads
all-reduces); `hybrid` (hybrid.py) overrides the methods.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Callable

import numpy as np

from climjax import checkpointing

STRATEGIES = ("single", "sync", "hybrid", "simulated")
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
  clock: the StepClock that reduce_grads reports to (None: nothing to time
    inside the step, as in one process).
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
  clock: StepClock | None = None

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


@dataclasses.dataclass
class Timings:
  """Seconds one rank spent in its timed training steps, by kind.

  compute: the jitted step less the communication and waiting measured inside
    it (forward, backward, optimizer, an injected straggler's delay); on a
    server, applying updates.
  communication: moving gradients and parameters while this rank's own messages
    are in flight: the all-reduce inside the step (timed by a `StepClock`),
    the host traffic between leaders and servers, the part of a lagged
    all-reduce that the next step did not hide.
  waiting: blocked on other ranks: at the barrier before the in-step all-reduce
    (for the slowest rank), a leader for the servers' replies (queueing behind
    other groups), a member for its leader, a server for the next push.
  input: waiting for the input pipeline's next batch with no step running (a
    wait while the previous step still computes is hidden, and counts as compute).
  steps / wall: the timed steps (every step after the first, which compiles) and
    their wall seconds, checkpoints and evaluations left out; the four kinds
    above should add up to `wall`.
  """

  compute: float = 0.0
  communication: float = 0.0
  waiting: float = 0.0
  input: float = 0.0
  steps: int = 0
  wall: float = 0.0

  KINDS = ("compute", "communication", "waiting", "input")

  def as_dict(self) -> dict[str, float]:
    return dataclasses.asdict(self)

  def reset(self) -> None:
    """Zeroes every field in place (other objects may hold this one)."""
    for field in dataclasses.fields(self):
      setattr(self, field.name, field.default)

  def minus(self, other: Timings) -> Timings:
    return Timings(
      **{f.name: getattr(self, f.name) - getattr(other, f.name) for f in dataclasses.fields(self)}
    )


def time_split(per_step: np.ndarray, ranks: float) -> dict[str, float]:
  """summary.json's time split from per-step seconds summed over `ranks` ranks.

  `per_step` = (compute, communication, waiting, input, wall) seconds per timed
  step, each rank's own, summed over the ranks that trained (so the result is
  the mean rank's step).
  """
  if ranks <= 0:
    return {}
  compute, communication, waiting, inp, wall = (float(v) / ranks for v in per_step)
  busy = compute + communication + waiting + inp
  return {
    "compute_seconds": compute,
    "communication_seconds": communication,
    "wait_seconds": waiting,
    "input_seconds": inp,
    "step_seconds": wall,
    "communication_fraction": communication / busy if busy > 0 else 0.0,
  }


def per_step(timings: Timings) -> np.ndarray:
  """(compute, communication, waiting, input, wall) per timed step, and 1 (a rank count)."""
  if timings.steps <= 0:
    return np.zeros(6)
  values = [getattr(timings, k) for k in Timings.KINDS] + [timings.wall]
  return np.array([v / timings.steps for v in values] + [1.0])


class StepClock:
  """Communication and waiting inside a jitted step, from host callbacks around its all-reduce.

  The strategy's `reduce_grads` calls `arrive` when this rank's gradients are
  ready (it then waits at a barrier for the slowest rank: waiting) and `done`
  when the all-reduce has returned (communication). `take` hands the totals
  since the last call to the loop's side, after the step has finished.
  """

  def __init__(self, wait_for_everyone: Callable[[], None] = _no_wait):
    self._wait_for_everyone = wait_for_everyone
    self._waiting = self._communication = 0.0
    self._since = None

  def arrive(self) -> None:
    t0 = time.perf_counter()
    self._wait_for_everyone()
    self._since = time.perf_counter()
    self._waiting += self._since - t0

  def done(self) -> None:
    if self._since is not None:
      self._communication += time.perf_counter() - self._since
      self._since = None

  def take(self) -> tuple[float, float]:
    """(communication, waiting) seconds since the last call."""
    result = (self._communication, self._waiting)
    self._communication = self._waiting = 0.0
    return result


class Strategy:
  """`single` and `sync`: every rank takes every step; the chief writes orbax checkpoints.

  `progress` is what `train.steps` counts and what metrics.jsonl is keyed by:
  here the step itself (a hybrid run counts server updates instead).
  """

  is_server = False
  # SIGTERM: the chief checkpoints the last finished step (climjax/training/signals.py).
  # Strategies whose state lives elsewhere (servers) or is in flight (a lagged
  # update) keep the default: the process ends, and the rerun resumes from the
  # last periodic checkpoint.
  checkpoints_on_signal = True

  def __init__(self, topology: Topology, parallel_config=None):
    self.topology = topology
    self.parallel_config = parallel_config
    self.timings = Timings()
    self.progress = 0
    self.total_steps = 0
    self._manager = None
    self.checkpoint_every = 0
    self._logged = Timings()
    self._unbooked = 0  # steps dispatched but not yet booked in `timings` (see `settle`)
    self._mark = self._input_mark = 0.0

  @property
  def name(self) -> str:
    return self.topology.strategy

  @property
  def group_size(self) -> int:
    """Ranks whose examples make up one update (all data ranks in sync)."""
    return self.topology.data_count

  @property
  def evaluates_during_training(self) -> bool:
    return True

  @property
  def eval_topology(self) -> Topology:
    """The ranks that evaluate together during training."""
    return self.topology

  def describe(self) -> str | None:
    """One line for the log about the layout, where there is something to say."""
    if self.topology.size > 1:
      return f"{self.name}: {self.topology.size} ranks, gradients all-reduced every step"
    return None

  def guard(self):
    """Context for the whole run on this rank (hybrid: one failing rank aborts the job)."""
    return contextlib.nullcontext()

  def step_optimizer(self, tx):
    """The optax transform the jitted step applies (hybrid: a gradient capture)."""
    return tx

  def restore(
    self, state, *, workdir: str, total_steps: int, checkpoint_every: int, warm_up: Callable
  ):
    """(state, first step to take - 1, stop) from the newest checkpoint in `workdir`.

    `warm_up(state) -> state` compiles the step; not needed here (the first
    step compiles and the loop's timer leaves it out).
    """
    del warm_up
    self.total_steps = total_steps
    self.checkpoint_every = checkpoint_every
    self._manager = checkpointing.make_manager(os.path.join(workdir, "checkpoints"))
    state, step = checkpointing.restore_latest(self._manager, state)
    self.progress = step
    return state, step, step >= total_steps

  def after_step(self, state, *, step: int, examples: int, started: float):
    """(state, stop) after the jitted step `step` (1-based) was dispatched at `started`.

    Does not wait for the step: the next batch is fetched while it runs. Its
    time is booked by `settle`, when the loop next waits for the state.
    """
    del examples, started
    self._unbooked += 1
    self.progress = step
    return state, step >= self.total_steps

  # ---- the time split of every step -----------------------------------------

  def start_timing(self) -> None:
    """Called by the loop when its timer starts (after the compiling first step)."""
    self.timings.reset()
    self._logged = Timings()
    self._unbooked = 0
    if self.topology.clock is not None:
      self.topology.clock.take()
    self.resume_timing()

  def resume_timing(self) -> None:
    """The loop's timer runs again (after a checkpoint or an evaluation): steps from now on."""
    self._mark = time.perf_counter()
    self._input_mark = self.timings.input

  def settle(self) -> None:
    """Books the steps dispatched since the last booking; the loop has just waited for them.

    Their wall time since the mark, less what the loop spent waiting for input
    and what the step's clock measured as communication and waiting, is compute.
    """
    now = time.perf_counter()
    if self._unbooked:
      inp = self.timings.input - self._input_mark
      communication, waiting = self.topology.clock.take() if self.topology.clock else (0.0, 0.0)
      self.timings.communication += communication
      self.timings.waiting += waiting
      self.timings.compute += max(now - self._mark - inp - communication - waiting, 0.0)
      self.timings.steps += self._unbooked
      self._unbooked = 0
    self._mark, self._input_mark = now, self.timings.input

  def account(self, started: float) -> None:
    """Books one finished step dispatched at `started` (strategies that wait for every
    step): what the step's clock measured inside it as communication and waiting, the
    rest as compute."""
    elapsed = time.perf_counter() - started
    communication, waiting = self.topology.clock.take() if self.topology.clock else (0.0, 0.0)
    self.timings.communication += communication
    self.timings.waiting += waiting
    self.timings.compute += max(elapsed - communication - waiting, 0.0)
    self.timings.steps += 1

  def stop_timing(self, wall_seconds: float) -> None:
    """The loop's timed wall seconds, against which the split is checked."""
    self.timings.wall = wall_seconds

  def saves_now(self, *, every: int, stop: bool) -> bool:
    """Whether this rank checkpoints after the current step: the chief, every `every` and at the end."""
    return self.topology.is_chief and (self.progress % every == 0 or stop)

  def save(self, state) -> None:
    """An asynchronous, atomic orbax save at the current step."""
    checkpointing.save(self._manager, self.progress, state)

  def save_and_wait(self, state, *, saved_now: bool) -> None:
    """Checkpoints the current step (unless `saved_now`) and waits until it is on disk."""
    if not saved_now:
      self.save(state)
    self._manager.wait_until_finished()

  def log_scalars(self, step: int) -> tuple[dict, str]:
    """Strategy numbers for a metrics.jsonl record, and the log line's suffix.

    Here this rank's time split over the steps since the last record.
    """
    del step
    window = self.timings.minus(self._logged)
    self._logged = dataclasses.replace(self.timings)
    if window.steps <= 0:
      return {}, ""
    split = time_split(per_step(window)[:5], 1.0)
    del split["step_seconds"]  # the window's wall is not tracked; the record has the rate
    text = f" comm {split['communication_fraction']:.0%}" if self.topology.size > 1 else ""
    return split, text

  def summary_time_split(self) -> dict:
    """The time split for summary.json: per step, averaged over the ranks (collective)."""
    summed = self.topology.allreduce_sum(per_step(self.timings))
    return time_split(summed[:5], summed[5])

  def eval_params(self, state):
    """The parameters an evaluation during training scores (simulated: the newest version)."""
    return state.params

  def finish(self, state):
    """(final parameters, summary entries of this strategy) once the loop has stopped."""
    self._manager.wait_until_finished()
    return state.params, self.summary_time_split()

  def close(self) -> None:
    if self._manager is not None:
      self._manager.close()

  def serve(self, params, tx, *, workdir: str, total_steps: int, checkpoint_every: int) -> dict:
    raise RuntimeError(f"strategy {self.name!r} has no parameter servers")
