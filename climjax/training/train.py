"""The training loop: config in, workdir out, for every task under every strategy.

One linear loop, meant to be read top to bottom (and forked for an
experiment). What is trained comes from the task module that `config.task`
names (climjax/tasks/: data, model, train step, evaluation, outputs); how
gradients and parameters move comes from the strategy that
`config.parallel.strategy` names (climjax/parallel/: single, sync, hybrid).
On a hybrid parameter-server rank the strategy serves instead of training.

What it leaves in the workdir (the chief writes):

  config.json     the resolved config
  checkpoints/    orbax checkpoints (hybrid: parameter_servers/, one shard each);
                  a rerun with the same workdir resumes
  metrics.jsonl   one JSON object per logged step
  eval/           the task's tables (accuracy, or AP per class)
  plots/          curves.png and the task's plots
  summary.json    the task's results plus steps, examples_per_second, the time split
                  of a step (compute_seconds, communication_seconds, wait_seconds,
                  input_seconds, step_seconds, communication_fraction),
                  wall_seconds, num_parameters, ... (names that scripts rely on)
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from climjax import parallel, provenance, tasks
from climjax.data import pipeline
from climjax.errors import Interrupted
from climjax.training import metrics as metrics_lib
from climjax.training import optim, signals, validate
from climjax.training.metrics import write_json
from climjax.training.state import num_parameters


def validate_config(config: ml_collections.ConfigDict):
  """Checks the fields every run shares and the task's own; returns the task module."""
  validate.common_checks(config)
  task = tasks.get(config.get("task"))
  task.validate_config(config)
  return task


def train_and_evaluate(
  config: ml_collections.ConfigDict,
  workdir: str,
  *,
  data: tasks.TaskData | None = None,
  resume: str = "auto",
) -> dict:
  """Trains the configured task with the configured strategy, evaluates, writes the workdir.

  Every MPI rank calls it. Returns the summary (complete on the chief). `data`
  replaces the task's own data (e.g. a sweep's fit / validation split of the
  training set); by default the task loads it from `config.data`. A workdir
  that holds checkpoints of a run with another config (anything but
  `train.steps` changed) is refused unless `resume="force"`.
  """
  if resume not in ("auto", "force"):
    raise validate.ConfigError(f"resume must be 'auto' or 'force', got {resume!r}")
  task = validate_config(config)
  try:
    strategy = parallel.make_strategy(config.parallel)
  except ValueError as e:  # ranks that cannot be laid out as configured
    raise validate.ConfigError(str(e)) from None
  stop_request = signals.StopRequest()
  with strategy.guard(), stop_request.installed(strategy.checkpoints_on_signal):
    try:
      return _train_and_evaluate(
        config, workdir, task, strategy, data, resume == "force", stop_request
      )
    finally:
      strategy.close()


def _train_and_evaluate(
  config, workdir: str, task, strategy: parallel.Strategy, data, force_resume: bool,
  stop_request: signals.StopRequest,
) -> dict:  # fmt: skip
  t_start = time.time()
  topology = strategy.topology
  chief = topology.is_chief
  log = start_run(config, workdir, topology, force_resume=force_resume)
  if strategy.describe():
    log(f"[climjax] {strategy.describe()}")

  # ---- data, model, initial state (identical on every rank: same seed) --------
  if data is None:
    data = task.load_data(config, topology, log)
  model = task.make_model(config)
  total_steps = config.train.steps
  tx = optim.make_optimizer(config.optimizer, total_steps)
  all_finite = jax.jit(
    lambda tree: jnp.all(jnp.stack([jnp.isfinite(x).all() for x in jax.tree.leaves(tree)]))
  )
  # The learning rate for the log, compiled now: not inside the timed steps.
  learning_rate = jax.jit(optim.learning_rate_schedule(config.optimizer, total_steps))
  learning_rate(0)
  step_tx = strategy.step_optimizer(tx)
  state = task.init_state(config, model, step_tx, data)
  n_params = num_parameters(state.params)
  log(f"[climjax] model {config.model.name}: {n_params:,} parameters")

  if strategy.is_server:  # a hybrid parameter server: owns the optimizer and checkpoints
    server_summary = strategy.serve(
      state.params,
      tx,
      workdir=workdir,
      total_steps=total_steps,
      checkpoint_every=config.train.checkpoint_every,
    )
    topology.barrier()  # the workers' last barrier, after the chief has written the workdir
    return server_summary

  train_fn = jax.jit(
    functools.partial(
      task.make_train_step(config, model), tx=step_tx, reduce_grads=topology.reduce_grads
    ),
    donate_argnums=0,
  )
  eval_fn = task.make_eval_fn(config, model)
  try:
    local_batch = topology.per_rank_batch(config.train.batch_size)
  except ValueError as e:  # e.g. a global batch that does not split over the ranks
    raise validate.ConfigError(f"train.batch_size: {e}") from None
  flops, flops_line = task.step_flops(
    config, model, state, data, tx=step_tx, reduce_grads=topology.reduce_grads,
    local_batch=local_batch,
  )  # fmt: skip
  log(f"[climjax] {flops_line}")
  flops_per_example = flops.get("flops_per_example")

  def warm_up(state):
    """One step on a batch of the first training example: compiles before training."""
    items = data.train.__getitems__([0] * local_batch)
    batch = data.transform({k: np.stack([item[k] for item in items]) for k in data.keys})
    state, _ = train_fn(state, batch)
    return jax.block_until_ready(state)

  # ---- restore: the newest checkpoint, or the servers' parameters ------------
  state, start_step, stop = strategy.restore(
    state, workdir=workdir, total_steps=total_steps,
    checkpoint_every=config.train.checkpoint_every, warm_up=warm_up,
  )  # fmt: skip
  start_progress = strategy.progress
  if start_progress:
    log(f"[climjax] resumed at step {start_progress}")
  writer = metrics_lib.MetricWriter(
    os.path.join(workdir, "metrics.jsonl"), resume_step=start_progress, enabled=chief
  )
  batches = pipeline.train_batches(
    data.train,
    keys=data.keys,
    global_batch_size=topology.global_batch(config.train.batch_size),
    shard_index=topology.data_index,
    shard_count=topology.data_count,
    seed=config.data.seed + config.seed,  # the data: data.seed; their order: both
    start_step=start_step,
    transform=data.transform,
    num_threads=config.data.num_threads,
    prefetch=config.data.prefetch,
  )

  # ---- train --------------------------------------------------------------------
  # Examples per update: this rank's batch times the ranks that all-reduce it.
  examples = local_batch * strategy.group_size
  eval_every = config.train.eval_every
  next_eval = (start_progress // eval_every + 1) * eval_every if eval_every else None
  timer = metrics_lib.TrainTimer()
  window_t, window_steps = time.time(), 0
  step = start_step
  while not stop:
    step += 1
    t0 = time.perf_counter()
    batch = next(batches)  # a straggler's delay is injected inside the step (reduce_grads)
    t1 = time.perf_counter()
    if _step_done(state):  # else the previous step was still running: the wait was hidden
      strategy.timings.input += t1 - t0
    state, train_metrics = train_fn(state, batch)
    state, stop = strategy.after_step(state, step=step, examples=examples, started=t1)
    progress = strategy.progress
    logging = step % config.train.log_every == 0 or stop
    if step == start_step + 1 or logging:
      train_metrics = jax.device_get(train_metrics)  # waits for the step
      metrics_lib.check_finite(progress, float(train_metrics["loss"]), data.description)
    if step == start_step + 1:  # the first step compiles; time from its end
      jax.block_until_ready(state)
      timer.start()
      strategy.start_timing()
    else:
      timer.count(examples)
    window_steps += 1
    if logging:
      jax.block_until_ready(state)
      strategy.settle()
      now = time.time()
      rate = window_steps * examples / max(now - window_t, 1e-9)
      extra, suffix = strategy.log_scalars(step)
      scalars = {**train_metrics, **extra, "examples_per_second": rate, "wall_time": now - t_start}
      scalars["learning_rate"] = float(learning_rate(max(progress - 1, 0)))
      if flops_per_example:
        scalars["gflops_per_second"] = rate * flops_per_example / 1e9
      writer.write_scalars(progress, scalars)
      log(
        f"[climjax] step {progress}/{total_steps} {task.progress_text(train_metrics)} "
        f"{rate:,.1f} ex/s{suffix} eta {_format_seconds((total_steps - progress) * examples / rate)}"
      )
      window_t, window_steps = now, 0
    saving = strategy.saves_now(every=config.train.checkpoint_every, stop=stop)
    evaluating = bool(
      next_eval and strategy.evaluates_during_training and progress >= next_eval and not stop
    )
    if saving or evaluating:
      jax.block_until_ready(state)
      strategy.settle()
      timer.pause()
    if saving:
      if not bool(all_finite(state.params)):  # never checkpoint a diverged model
        raise FloatingPointError(
          f"non-finite parameters after step {progress} (batches from {data.description})"
        )
      strategy.save(state)
    if evaluating:
      scalars, line = task.evaluate_during_training(
        config, eval_fn, strategy.eval_params(state), data, strategy.eval_topology
      )
      writer.write_scalars(progress, scalars)
      if line:
        log(f"[climjax] step {progress}: {line}")
      next_eval = (progress // eval_every + 1) * eval_every
    if saving or evaluating:
      timer.start()
      strategy.resume_timing()
      window_t = time.time()  # the logged rate counts training time only
    if stop_request.requested and chief and not stop:
      jax.block_until_ready(state)
      strategy.save_and_wait(state, saved_now=saving)
      raise Interrupted(
        f"{stop_request.signal_name} at step {progress}: checkpoint saved in "
        f"{os.path.join(workdir, 'checkpoints')}; rerun the same command to resume from it"
      )
  jax.block_until_ready(state)
  strategy.settle()
  timer.stop()
  strategy.stop_timing(timer.seconds)
  params, strategy_summary = strategy.finish(state)
  stop_request.release()  # the final checkpoint is written: SIGTERM now simply ends the run
  train_seconds = time.time() - t_start

  # ---- evaluate and write the workdir ------------------------------------------
  summary = {
    "task": config.task,
    "data_source": config.data.source,
    **task.evaluate_and_write(config, workdir, eval_fn, params, data, topology, log),
    "steps": int(strategy.progress),
    "resumed_from_step": int(start_progress),
    "examples_per_second": timer.examples_per_second,
    **flops,
    "train_seconds": train_seconds,
    "num_parameters": n_params,
    "train_step_compilations": train_fn._cache_size(),
    "parallel_strategy": strategy.name,
    "num_ranks": topology.size,
    **strategy_summary,
  }
  if flops_per_example:
    eps = summary["examples_per_second"]
    summary["gflops_per_second"] = eps * flops_per_example / 1e9 if eps else None
  if chief:
    writer.write_scalars(int(strategy.progress), task.held_out_scalars(summary))
    _plot_curves(workdir)
    summary["wall_seconds"] = time.time() - t_start
    summary["provenance"] = provenance.provenance()  # version, commit, packages, CPU, peak RSS
    write_json(os.path.join(workdir, "summary.json"), summary)
    log(f"[climjax] wrote {os.path.join(workdir, 'summary.json')}")
  topology.barrier()
  summary["wall_seconds"] = time.time() - t_start
  return summary


def start_run(config, workdir: str, topology, *, force_resume: bool = False) -> Callable[..., None]:
  """Every rank checks that a run in `workdir` may be continued with this config; the
  chief checks the workdir and writes config.json; every rank waits for it.

  Returns the run's `log`: print on the chief, silent elsewhere.
  """
  validate.check_resume(config, workdir, force=force_resume)
  topology.barrier()  # every rank has read the stored config before the chief rewrites it
  if topology.is_chief:
    validate.ensure_workdir(workdir)
    write_json(os.path.join(workdir, "config.json"), config.to_dict())
  topology.barrier()
  return print if topology.is_chief else (lambda *a, **k: None)


def _step_done(state) -> bool:
  """Whether the last dispatched step has finished (its step counter is ready)."""
  return state.step.is_ready() if hasattr(state.step, "is_ready") else True


def _format_seconds(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  return f"{seconds // 60}m{seconds % 60:02d}s"


def _plot_curves(workdir: str) -> None:
  from climjax import plots

  os.makedirs(os.path.join(workdir, "plots"), exist_ok=True)
  plots.plot_training_curves(
    os.path.join(workdir, "metrics.jsonl"), os.path.join(workdir, "plots", "curves.png")
  )
