"""The patch-classifier training loop (TC, AR, WF): config in, workdir out.

One linear loop, meant to be read and forked (the detector's loop in
train_detector.py is such a fork). What it leaves in the workdir:

  config.json     the resolved config and platform settings
  checkpoints/    orbax checkpoints; a rerun with the same workdir resumes
  metrics.jsonl   one JSON object per logged step
  eval/           accuracy tables (CSV and Markdown)
  plots/          training curves
  summary.json    test_accuracy, train_accuracy, steps, examples_per_second,
                  wall_seconds, ... (names that scripts rely on)
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable

import jax
import ml_collections
import numpy as np

from climjax import checkpointing, parallel
from climjax.data import pipeline, tfds_builders
from climjax.models import cnn
from climjax.training import metrics as metrics_lib
from climjax.training import optim, steps, validate
from climjax.training.metrics import write_json
from climjax.training.state import TrainState, create_train_state, num_parameters

TASKS = ("tc", "ar", "wf")


def validate_config(config: ml_collections.ConfigDict) -> None:
  validate.common_checks(config)
  validate.one_of(config, "task", TASKS)
  validate.one_of(config, "model.name", cnn.MODELS)
  validate.one_of(config, "model.conv_impl", ("xla", "fast"))
  validate.one_of(config, "data.source", ("synthetic", "netcdf", "extremeweather"))
  # For file sources 0 means "every example the files hold".
  from_files = config.data.source != "synthetic"
  validate.positive_int(config, "data.num_train", allow_zero=from_files)
  validate.positive_int(config, "data.num_test", allow_zero=from_files)
  validate.positive_int(config, "train.eval_batch_size")


def normalizer(stats: dict):
  """Batch transform: per-channel standardisation with training-split statistics."""
  mean = np.asarray(stats["mean"], np.float32)
  std = np.maximum(np.asarray(stats["std"], np.float32), 1e-6)

  def transform(batch: dict) -> dict:
    return {
        "patch": (batch["patch"] - mean) / std,
        "label": batch["label"].astype(np.int32),
    }

  return transform


def prepare_data(config, topology: parallel.Topology):
  """Builds the task's dataset (the chief first, the others wait) -> (sources, stats)."""
  if topology.is_chief:
    sources, stats = tfds_builders.prepare(
        tfds_builders.patches_builder(config.data, config.task), key="patch"
    )
  topology.barrier()
  if not topology.is_chief:
    # Only now: a builder made before the chief finished would see no splits.
    sources, stats = tfds_builders.prepare(
        tfds_builders.patches_builder(config.data, config.task), key="patch"
    )
  return sources, stats


def evaluate(eval_fn, params, source, *, config, topology, transform) -> dict:
  """Accuracy, loss, precision and recall over a whole split (all ranks' shards summed)."""
  totals: dict[str, float] = {}
  for batch in _eval_batches(source, config, topology, transform):
    for key, value in eval_fn(params, batch).items():
      totals[key] = totals.get(key, 0.0) + float(value)
  keys = sorted(totals)
  summed = topology.allreduce_sum(np.array([totals[k] for k in keys], np.float64))
  totals = dict(zip(keys, summed.tolist(), strict=True))
  count = max(totals["count"], 1.0)
  tp, fp, fn = totals["true_positive"], totals["false_positive"], totals["false_negative"]
  return {
      "accuracy": totals["correct"] / count,
      "loss": totals["loss_sum"] / count,
      "precision": tp / max(tp + fp, 1.0),
      "recall": tp / max(tp + fn, 1.0),
      "count": int(totals["count"]),
  }


def _eval_batches(source, config, topology, transform):
  def with_mask(batch):
    out = transform({"patch": batch["patch"], "label": batch["label"]})
    out["mask"] = batch["mask"]
    return out

  for batch in pipeline.eval_batches(
      source,
      keys=("patch", "label"),
      batch_size=config.train.eval_batch_size,
      shard_index=topology.data_index,
      shard_count=topology.data_count,
  ):
    yield with_mask(batch)


def write_eval_tables(workdir: str, results: dict[str, dict]) -> None:
  """eval/accuracy.csv and eval/accuracy.md, one row per split."""
  os.makedirs(os.path.join(workdir, "eval"), exist_ok=True)
  columns = ("accuracy", "loss", "precision", "recall", "count")
  csv = ["split," + ",".join(columns)]
  md = ["| split | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
  for split, r in results.items():
    cells = [f"{r[c]:.4f}" if isinstance(r[c], float) else str(r[c]) for c in columns]
    csv.append(split + "," + ",".join(cells))
    md.append(f"| {split} | " + " | ".join(cells) + " |")
  for name, lines in (("accuracy.csv", csv), ("accuracy.md", md)):
    with open(os.path.join(workdir, "eval", name), "w") as f:
      f.write("\n".join(lines) + "\n")


def _format_seconds(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  return f"{seconds // 60}m{seconds % 60:02d}s"


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains the configured classifier, evaluates it, and writes the workdir."""
  if config.parallel.get("strategy", "single") == "hybrid":
    from climjax.parallel import hybrid

    return hybrid.train_and_evaluate(config, workdir)

  t_start = time.time()
  validate_config(config)
  topology = parallel.setup(config.parallel)
  chief = topology.is_chief
  log = start_run(config, workdir, topology)

  # ---- data -------------------------------------------------------------------
  log(f"[climjax] preparing {config.task} data ({config.data.source}) in {config.data.data_dir}")
  sources, stats = prepare_data(config, topology)
  transform = normalizer(stats)
  log(f"[climjax] {len(sources['train'])} train / {len(sources['test'])} test examples")

  # ---- model, optimizer, state (restored if the workdir has a checkpoint) ------
  model = cnn.make_model(config.model)
  total_steps = config.train.steps
  tx = optim.make_optimizer(config.optimizer, total_steps)
  sample = sources["train"][0]["patch"]
  init_state = create_train_state(model, tx, jax.random.key(config.seed), (1, *sample.shape))
  manager = checkpointing.make_manager(os.path.join(workdir, "checkpoints"))
  state, start_step = checkpointing.restore_latest(manager, init_state)
  if start_step:
    log(f"[climjax] resumed from checkpoint at step {start_step}")
  writer = metrics_lib.MetricWriter(
      os.path.join(workdir, "metrics.jsonl"), resume_step=start_step, enabled=chief
  )
  n_params = num_parameters(state.params)
  log(f"[climjax] model {config.model.name}: {n_params:,} parameters")

  train_fn = jax.jit(
      functools.partial(
          steps.train_step, apply_fn=model.apply, tx=tx, reduce_grads=topology.reduce_grads
      ),
      donate_argnums=0,
  )
  eval_fn = jax.jit(functools.partial(steps.eval_step, apply_fn=model.apply))

  # Strong scaling: train.batch_size is the global batch; weak: it is per rank.
  global_batch = topology.global_batch(config.train.batch_size)
  # FLOPs of the model as XLA's formulation computes it: the fast kernels may
  # execute structural zeros (climjax.ops.s2d) that are not the model's work.
  reference = cnn.make_model(ml_collections.ConfigDict({**config.model, "conv_impl": "xla"}))
  reference_fn = jax.jit(
      functools.partial(
          steps.train_step, apply_fn=reference.apply, tx=tx, reduce_grads=topology.reduce_grads
      )
  )
  flops_per_example, analytic_per_example = step_flops(
      reference_fn, state, sample.shape, topology.per_rank_batch(config.train.batch_size)
  )
  log(
      f"[climjax] train step: {flops_per_example / 1e6:.2f} MFLOP per example "
      f"(XLA cost analysis; analytic conv+matmul count {analytic_per_example / 1e6:.2f})"
  )
  batches = pipeline_train_batches(config, topology, sources["train"], start_step, transform)

  # ---- train ------------------------------------------------------------------
  timer = metrics_lib.TrainTimer()
  window_t, window_steps = time.time(), 0
  step = start_step
  for step in range(start_step + 1, total_steps + 1):
    batch = next(batches)  # a straggler's delay is injected inside the step (reduce_grads)
    state, train_metrics = train_fn(state, batch)
    if step == start_step + 1 or step % config.train.log_every == 0 or step == total_steps:
      train_metrics = jax.device_get(train_metrics)  # waits for the step
      metrics_lib.check_finite(step, float(train_metrics["loss"]), f"{config.task} train split")
    if step == start_step + 1:  # the first step compiles; time from its end
      jax.block_until_ready(state)
      timer.start()
    else:
      timer.count(global_batch)
    window_steps += 1
    if step % config.train.log_every == 0 or step == total_steps:
      jax.block_until_ready(state)
      now = time.time()
      rate = window_steps * global_batch / max(now - window_t, 1e-9)
      writer.write_scalars(
          step,
          {
              **train_metrics,
              "examples_per_second": rate,
              "gflops_per_second": rate * flops_per_example / 1e9,
              "wall_time": now - t_start,
          },
      )
      log(
          f"[climjax] step {step}/{total_steps} loss {train_metrics['loss']:.4f} "
          f"acc {train_metrics['accuracy']:.3f} {rate:,.0f} ex/s "
          f"eta {_format_seconds((total_steps - step) * global_batch / rate)}"
      )
      window_t, window_steps = now, 0
    saving = step % config.train.checkpoint_every == 0 or step == total_steps
    evaluating = config.train.eval_every and step % config.train.eval_every == 0 and step < total_steps
    if saving or evaluating:
      jax.block_until_ready(state)
      timer.pause()
    if saving and chief:
      checkpointing.save(manager, step, state)
    if evaluating:
      test = evaluate(eval_fn, state.params, sources["test"], config=config, topology=topology, transform=transform)
      writer.write_scalars(step, {"test_accuracy": test["accuracy"], "test_loss": test["loss"]})
      log(f"[climjax] step {step}: test accuracy {test['accuracy']:.4f}")
    if saving or evaluating:
      timer.start()
      window_t = time.time()  # the logged rate counts training time only
  jax.block_until_ready(state)
  timer.stop()
  manager.wait_until_finished()
  # Wall time includes compilation; throughput excludes it (TrainTimer).
  train_seconds = time.time() - t_start

  # ---- evaluate and write the workdir ------------------------------------------
  results = {
      split: evaluate(eval_fn, state.params, sources[split], config=config, topology=topology, transform=transform)
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
      "steps": int(step),
      "resumed_from_step": int(start_step),
      "examples_per_second": timer.examples_per_second,
      "flops_per_example": flops_per_example,
      "analytic_flops_per_example": analytic_per_example,
      "gflops_per_second": (
          timer.examples_per_second * flops_per_example / 1e9 if timer.examples_per_second else None
      ),
      "train_seconds": train_seconds,
      "wall_seconds": time.time() - t_start,
      "num_parameters": n_params,
      "train_step_compilations": train_fn._cache_size(),
      "parallel_strategy": topology.strategy,
      "num_ranks": topology.size,
  }
  if chief:
    write_eval_tables(workdir, results)
    _plot_curves(workdir)
    write_json(os.path.join(workdir, "summary.json"), summary)
    log(f"[climjax] wrote {os.path.join(workdir, 'summary.json')}")
  manager.close()
  return summary


def start_run(config, workdir: str, topology) -> Callable[..., None]:
  """The chief checks the workdir and writes config.json; every rank waits for it.

  Returns the run's `log`: print on the chief, silent elsewhere.
  """
  if topology.is_chief:
    validate.ensure_workdir(workdir)
    write_json(os.path.join(workdir, "config.json"), config.to_dict())
  topology.barrier()
  return print if topology.is_chief else (lambda *a, **k: None)


def step_flops(train_fn, state, example_shape, local_batch: int) -> tuple[float, float]:
  """(XLA's, analytic) FLOPs of one train step per example, from abstract shapes.

  XLA's count comes from the cost analysis of the compiled step (it includes
  elementwise work); the analytic one counts only convolutions and matrix
  products, as a cross-check.
  """
  from climjax.ops import flops

  abstract_state = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state)
  batch = {
      "patch": jax.ShapeDtypeStruct((local_batch, *example_shape), np.float32),
      "label": jax.ShapeDtypeStruct((local_batch,), np.int32),
  }
  xla = flops.xla_flops(train_fn, abstract_state, batch)
  analytic = flops.analytic_flops(train_fn, abstract_state, batch)
  return (xla if xla is not None else analytic) / local_batch, analytic / local_batch


def pipeline_train_batches(config, topology, source, start_step: int, transform):
  return pipeline.train_batches(
      source,
      keys=("patch", "label"),
      global_batch_size=topology.global_batch(config.train.batch_size),
      shard_index=topology.data_index,
      shard_count=topology.data_count,
      seed=config.data.seed,
      start_step=start_step,
      transform=transform,
      num_threads=config.data.num_threads,
      prefetch=config.data.prefetch,
  )


def _plot_curves(workdir: str) -> None:
  from climjax import plots

  os.makedirs(os.path.join(workdir, "plots"), exist_ok=True)
  plots.plot_curves(os.path.join(workdir, "metrics.jsonl"), os.path.join(workdir, "plots", "curves.png"))


__all__ = ["TrainState", "train_and_evaluate", "validate_config", "evaluate", "prepare_data"]
