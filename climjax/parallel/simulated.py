"""Asynchrony simulated in one process: each update applied with a drawn staleness.

For the statistical efficiency of hybrid training at more compute groups than
this machine can run (Kurth et al. 2017's "statistical convergence" against the
number of groups). Chosen by `parallel.strategy = "simulated"` with
`parallel.num_groups` = G. Each step stands for one group's update: its
gradient is taken at parameters `tau` versions old, then applied to the newest
version (as a parameter server applies a group's push), where `tau` is drawn
for every step from

- `parallel.staleness_histogram`: counts by staleness ("5,12,3": 5 updates with
  staleness 0, ...), the `staleness_histogram` a real hybrid run writes to its
  summary.json; or, when it is empty,
- a model: Poisson with mean `parallel.staleness_per_group` x (G - 1). With G
  equally fast groups every other group pushes about once between a group's
  pull and its push, so the mean grows by about one per group; the real runs
  measure the slope.

G = 1 with the model is synchronous training. The run's summary says what was
drawn (`staleness_mean`, `staleness_histogram`) and that it was simulated. The
versions kept for drawing are not checkpointed: a resumed run starts with only
the restored parameters and fills its history again.
"""

from __future__ import annotations

import collections

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from climjax import checkpointing
from climjax.parallel import lag
from climjax.parallel.strategy import Strategy, Topology


def staleness_distribution(parallel_config) -> tuple[np.ndarray, str]:
  """(probabilities by staleness, a description) from the config."""
  groups = int(parallel_config.get("num_groups", 1))
  if groups < 1:
    raise ValueError(f"parallel.num_groups must be >= 1, got {groups}")
  text = str(parallel_config.get("staleness_histogram", "") or "").strip()
  if text:
    try:
      counts = np.array([float(c) for c in text.split(",")])
    except ValueError:
      raise ValueError(
        f"parallel.staleness_histogram must be comma-separated counts, got {text!r}"
      ) from None
    if counts.min() < 0 or counts.sum() <= 0:
      raise ValueError(f"parallel.staleness_histogram needs counts >= 0, not all 0: {text!r}")
    return counts / counts.sum(), f"measured histogram {text}"
  per_group = float(parallel_config.get("staleness_per_group", 1.0))
  mean = per_group * (groups - 1)
  if mean <= 0:
    return np.ones(1), "no staleness"
  top = int(mean + 8 * np.sqrt(mean) + 8)
  k = np.arange(top + 1)
  log_p = k * np.log(mean) - mean - np.array([np.sum(np.log(np.arange(1, i + 1))) for i in k])
  p = np.exp(log_p)
  return p / p.sum(), f"Poisson, mean {per_group:g} x (G - 1) = {mean:g}"


class SimulatedAsyncStrategy(Strategy):
  """One process; `progress` counts updates; the newest version is what is saved and evaluated."""

  checkpoints_on_signal = False  # see Strategy

  def __init__(self, parallel_config):
    super().__init__(Topology(strategy="simulated"), parallel_config)
    self.groups = int(parallel_config.get("num_groups", 1))
    self._probs, self._source = staleness_distribution(parallel_config)
    self._rng = np.random.default_rng(int(parallel_config.get("staleness_seed", 0)))
    self._versions: collections.deque = collections.deque(maxlen=len(self._probs))
    self._drawn: list[int] = []
    self._window: list[int] = []
    self._tx = self._apply = self._ravel = self._copy = None

  def describe(self) -> str:
    return (
      f"simulated: {self.groups} asynchronous group(s) in one process; staleness {self._source}"
    )

  def step_optimizer(self, tx):
    self._tx = tx
    return lag.lagged_capture(tx)

  def restore(self, state, *, workdir, total_steps, checkpoint_every, warm_up):
    self._apply = lag.make_apply(self._tx, ravel_pytree(state.params)[1])
    self._ravel = lag.ravel_fn()
    self._copy = jax.jit(lambda tree: jax.tree.map(jnp.copy, tree))
    state, step, stop = super().restore(
      state, workdir=workdir, total_steps=total_steps, checkpoint_every=checkpoint_every,
      warm_up=warm_up,
    )  # fmt: skip
    self._versions.clear()
    self._versions.append(state.params)
    return state.replace(params=self._copy(state.params)), step, stop

  def after_step(self, state, *, step: int, examples: int, started: float):
    del examples
    flat = self._ravel(state.opt_state.grads)
    # The gradient (taken at a stale version) applied to the newest one.
    params, opt_state = self._apply(self._versions[-1], state.opt_state, flat)
    params, opt_state = jax.block_until_ready((params, opt_state))
    self.account(started)
    self._versions.append(params)
    tau = min(int(self._rng.choice(len(self._probs), p=self._probs)), len(self._versions) - 1)
    self._drawn.append(tau)
    self._window.append(tau)
    self.progress = step
    # A copy: the loop's step donates its state, and the version must outlive it.
    stale = self._copy(self._versions[-1 - tau])
    return state.replace(params=stale, opt_state=opt_state), step >= self.total_steps

  def eval_params(self, state):
    return self._versions[-1]

  def _newest(self, state):
    return state.replace(params=self._versions[-1])

  def save(self, state) -> None:
    checkpointing.save(self._manager, self.progress, self._newest(state))

  def log_scalars(self, step: int) -> tuple[dict, str]:
    scalars, _ = super().log_scalars(step)
    seen, self._window = self._window, []
    staleness = float(np.mean(seen)) if seen else 0.0
    scalars["staleness"] = staleness
    return scalars, f" staleness {staleness:.2f}"

  def finish(self, state):
    params, split = super().finish(self._newest(state))
    drawn = np.asarray(self._drawn, np.int64)
    return params, {
      **split,
      "simulated": True,
      "num_groups": self.groups,
      "staleness_source": self._source,
      "staleness_mean": float(drawn.mean()) if drawn.size else 0.0,
      "staleness_max": int(drawn.max()) if drawn.size else 0,
      "staleness_histogram": np.bincount(drawn).tolist() if drawn.size else [],
    }
