"""Hybrid data parallelism: synchronous compute groups, asynchronous parameter servers.

The strategy of Kurth et al. (2017, "Deep Learning at 15PF"), chosen by
`parallel.strategy = "hybrid"` with `parallel.num_groups` (G) and
`parallel.num_servers` (S). The last S ranks serve parameters; the other ranks
form G compute groups that all-reduce gradients inside the group (the shared
train step with an mpi4jax `reduce_grads`) and exchange them with the servers
asynchronously (parameter_server.py has the protocol). G = 1 is synchronous
training; one rank per group is fully asynchronous.

`train_and_evaluate` is a fork of the classifier loop in climjax/training/train.py
(data, model, state, evaluation and summary are train.py's pieces); what differs
is what happens between steps: the step's optimizer only captures the group's
reduced gradients, the leader pushes them and pulls fresh parameters, and the
servers own the optimizer state and the checkpoints.

Batches: with `parallel.scaling = "strong"` `train.batch_size` is split over all
worker ranks (each group's update uses batch_size / G examples); with "weak"
every worker takes batch_size. `train.steps` counts server updates, whichever
group makes them.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from climjax import parallel
from climjax.parallel import comm as comm_lib
from climjax.parallel import parameter_server as ps
from climjax.parallel import sync


def layout_from_config(parallel_config) -> comm_lib.Layout:
  return comm_lib.layout(
    "hybrid",
    num_groups=int(parallel_config.get("num_groups", 1)),
    num_servers=int(parallel_config.get("num_servers", 1)),
  )


def setup(parallel_config) -> parallel.Topology:
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
    return parallel.Topology(data_index=-1, role="server", allreduce_sum=np.asarray, **common)
  return parallel.Topology(
    data_index=layout.worker_index,
    role="worker",
    reduce_grads=sync.with_delay(
      sync.allreduce_mean(layout.group_comm_jax),
      sync.straggler_delay(parallel_config, layout.rank),
    ),
    allreduce_sum=comm_lib.allreduce_sum_host(layout.worker_comm),
    **common,
  )


def group_topology(topology: parallel.Topology, layout: comm_lib.Layout) -> parallel.Topology:
  """The topology of one compute group on its own, for evaluating while other groups train."""
  return dataclasses.replace(
    topology,
    data_index=layout.group_comm.Get_rank(),
    data_count=layout.group_comm.Get_size(),
    allreduce_sum=comm_lib.allreduce_sum_host(layout.group_comm),
  )


def train_and_evaluate(config, workdir: str) -> dict:
  """Trains the configured classifier with groups and parameter servers; writes the workdir.

  Every MPI rank calls it. Returns the summary (with the hybrid statistics on the chief).
  """
  # The training package builds on climjax.parallel, so it is imported here, not
  # at module level, to keep `climjax.parallel` importable on its own.
  from climjax.training import train as train_lib
  from climjax.training import validate

  train_lib.validate_config(config)
  try:
    topology = setup(config.parallel)
    layout = layout_from_config(config.parallel)
  except ValueError as e:
    raise validate.ConfigError(str(e)) from None
  if float(config.optimizer.get("grad_clip_norm", 0.0)) > 0 and layout.num_servers > 1:
    raise validate.ConfigError(
      "optimizer.grad_clip_norm clips by the global norm, but with parallel.num_servers > 1 "
      "each server sees only its shard: use one server or no clipping"
    )
  with comm_lib.abort_on_exception(layout.world):
    return _train_and_evaluate(config, workdir, topology, layout)


def _train_and_evaluate(
  config, workdir: str, topology: parallel.Topology, layout: comm_lib.Layout
) -> dict:
  from climjax.models import cnn
  from climjax.training import metrics as metrics_lib
  from climjax.training import optim, steps
  from climjax.training import train as train_lib
  from climjax.training.state import TrainState, create_train_state, num_parameters

  t_start = time.time()
  chief = topology.is_chief
  log = train_lib.start_run(config, workdir, topology)
  log(
    f"[climjax] hybrid: {layout.num_groups} group(s) of {layout.ranks_per_group} rank(s), "
    f"{layout.num_servers} parameter server(s)"
  )

  # ---- data, model, initial parameters (identical on every rank: same seed) ----
  sources, stats = train_lib.prepare_data(config, topology)
  transform = train_lib.normalizer(stats)
  model = cnn.make_model(config.model)
  total_updates = config.train.steps
  tx = optim.make_optimizer(config.optimizer, total_updates)
  sample = sources["train"][0]["patch"]
  # Jitted: one compilation instead of one per initialiser op (seconds on 2 cores).
  init_params = jax.device_get(
    jax.jit(lambda rng: create_train_state(model, tx, rng, (1, *sample.shape)).params)(
      jax.random.key(config.seed)
    )
  )
  plan = ps.ShardPlan.from_tree(init_params, layout.num_servers)
  n_params = num_parameters(init_params)

  # ---- parameter servers: serve until every group is done ------------------
  if layout.is_server:
    server = ps.ParameterServer(
      layout,
      plan,
      jax.tree.leaves(init_params),
      tx,
      total_updates=total_updates,
      checkpoint_dir=os.path.join(workdir, "parameter_servers"),
      checkpoint_every=config.train.checkpoint_every,
    )
    server.restore()
    rank_stats = server.serve()
    ps.final_params(layout, plan)
    ps.gather_stats(layout, rank_stats)
    return {"parallel_strategy": "hybrid", "role": "server", **rank_stats}

  # ---- compute groups -------------------------------------------------------
  capture = ps.gradient_capture()
  train_fn = jax.jit(
    functools.partial(
      steps.train_step, apply_fn=model.apply, tx=capture, reduce_grads=topology.reduce_grads
    ),
    donate_argnums=0,
  )
  eval_fn = jax.jit(functools.partial(steps.eval_step, apply_fn=model.apply))
  local = topology.per_rank_batch(config.train.batch_size)
  group = ps.ComputeGroup(layout, plan)

  # Compile (and run once on zeros) before the first pull, so that every group
  # starts with the others instead of one pushing for the length of a compile.
  state = TrainState(
    step=jnp.zeros((), jnp.int32), params=init_params, opt_state=capture.init(init_params)
  )
  warmup = {
    "patch": np.zeros((local, *sample.shape), np.float32),
    "label": np.zeros(local, np.int32),
  }
  state, _ = train_fn(state, warmup)
  jax.block_until_ready(state)
  comm_lib.barrier(layout.worker_comm)()

  leaves, stop = group.pull()
  resumed_from = group.version
  if resumed_from:
    log(f"[climjax] resumed from parameter-server version {resumed_from}")
  writer = metrics_lib.MetricWriter(
    os.path.join(workdir, "metrics.jsonl"), resume_step=resumed_from, enabled=chief
  )
  batches = train_lib.pipeline_train_batches(
    config, topology, sources["train"], group.start_step, transform
  )
  eval_every = config.train.eval_every
  next_eval = (resumed_from // eval_every + 1) * eval_every if eval_every else None
  own_group = group_topology(topology, layout)

  # ---- train: step, push, pull, until the servers have made train.steps updates ----
  step = group.start_step
  loop_start = time.perf_counter()
  window_t, window_steps = loop_start, 0
  staleness_seen: list[int] = []
  while not stop:
    t0 = time.perf_counter()
    batch = next(batches)
    t1 = time.perf_counter()
    state = state.replace(params=plan.unflatten(leaves))
    state, train_metrics = train_fn(state, batch)
    # The step's optimizer was the capture: opt_state holds the group-reduced gradients.
    grads = [np.asarray(g) for g in jax.tree.leaves(jax.device_get(state.opt_state))]
    train_metrics = jax.device_get(train_metrics)
    t2 = time.perf_counter()
    group.timings.input += t1 - t0
    group.timings.compute += t2 - t1
    metrics_lib.check_finite(step + 1, float(train_metrics["loss"]), f"{config.task} train split")
    step += 1
    leaves, stop = group.push_pull(grads, step=step, examples=local * group.group_size)
    if group.staleness >= 0:
      staleness_seen.append(group.staleness)
    window_steps += 1
    if chief and (step % config.train.log_every == 0 or stop):
      now = time.perf_counter()
      rate = window_steps * local * group.group_size / max(now - window_t, 1e-9)
      writer.write_scalars(
        group.version,
        {
          **train_metrics,
          "examples_per_second": rate,
          "staleness": float(np.mean(staleness_seen)) if staleness_seen else 0.0,
          "group_step": step,
          "wall_time": time.time() - t_start,
        },
      )
      log(
        f"[climjax] update {group.version}/{total_updates} (group 0 step {step}) "
        f"loss {train_metrics['loss']:.4f} acc {train_metrics['accuracy']:.3f} "
        f"{rate:,.0f} ex/s staleness {np.mean(staleness_seen) if staleness_seen else 0:.2f}"
      )
      window_t, window_steps, staleness_seen = now, 0, []
    # Group 0 evaluates on its own while the other groups keep training.
    if next_eval and layout.group == 0 and group.version >= next_eval and not stop:
      params = plan.unflatten(leaves)
      test = train_lib.evaluate(
        eval_fn, params, sources["test"], config=config, topology=own_group, transform=transform
      )
      writer.write_scalars(
        group.version, {"test_accuracy": test["accuracy"], "test_loss": test["loss"]}
      )
      log(f"[climjax] update {group.version}: test accuracy {test['accuracy']:.4f}")
      next_eval = (group.version // eval_every + 1) * eval_every
  wall = time.perf_counter() - loop_start
  group.finish()
  train_seconds = time.time() - t_start

  # ---- final parameters from the servers; statistics to the chief -----------
  params = plan.unflatten(ps.final_params(layout, plan))
  rank_stats = {
    "role": "worker",
    "rank": layout.rank,
    "group": layout.group,
    "is_leader": layout.is_leader,
    "steps": step - group.start_step,
    "group_examples": (step - group.start_step) * local * group.group_size,
    "wall_s": wall,
    "timings": group.timings.as_dict(),
    "straggler_delay_s": sync.straggler_delay(config.parallel, layout.rank),
  }
  gathered = ps.gather_stats(layout, rank_stats)

  # ---- evaluate on every worker and write the workdir --------------------------
  results = {
    split: train_lib.evaluate(
      eval_fn, params, sources[split], config=config, topology=topology, transform=transform
    )
    for split in ("train", "test")
  }
  log(
    f"[climjax] train accuracy {results['train']['accuracy']:.4f}, "
    f"test accuracy {results['test']['accuracy']:.4f}"
  )
  summary = {
    "task": config.task,
    "data_source": config.data.source,
    "test_accuracy": results["test"]["accuracy"],
    "train_accuracy": results["train"]["accuracy"],
    "test_loss": results["test"]["loss"],
    "resumed_from_step": int(resumed_from),
    "train_seconds": train_seconds,
    "num_parameters": n_params,
    "train_step_compilations": train_fn._cache_size(),
    "parallel_strategy": "hybrid",
    "num_ranks": layout.size,
    "num_groups": layout.num_groups,
    "num_servers": layout.num_servers,
  }
  if chief:
    hybrid_stats = ps.summarize(gathered, layout.num_groups)
    summary.update(hybrid_stats)
    summary["steps"] = int(hybrid_stats["server_updates"])
    summary["examples_per_second"] = float(sum(hybrid_stats["examples_per_second_by_group"]))
    summary["wall_seconds"] = time.time() - t_start
    train_lib.write_eval_tables(workdir, results)
    train_lib._plot_curves(workdir)
    metrics_lib.write_json(os.path.join(workdir, "summary.json"), summary)
    log(
      f"[climjax] {summary['steps']} updates, staleness mean {summary['staleness_mean']:.2f} "
      f"max {summary['staleness_max']}, communication {summary['communication_fraction']:.1%}"
    )
    log(f"[climjax] wrote {os.path.join(workdir, 'summary.json')}")
  return summary
