"""The patch-classifier task (TC, AR, WF; Liu et al. 2016) for the training loop.

Data: centred patches from the task's tfds dataset (synthetic, netCDF or
ExtremeWeather; climjax.data.tfds_builders), standardised per channel with the
training split's statistics. Model: the paper's CNN for the task
(climjax.models.cnn). Loss: softmax cross-entropy (training/steps.py).
Evaluation: accuracy, loss, precision and recall over a whole split, each rank
taking its shard. Outputs: eval/accuracy.csv and eval/accuracy.md, and the
summary keys test_accuracy, train_accuracy, test_loss and the FLOP counts.
"""

from __future__ import annotations

import functools
import os

import jax
import ml_collections
import numpy as np

from climjax.data import pipeline, tfds_builders
from climjax.data.stats import normalizer as channel_normalizer
from climjax.models import cnn
from climjax.tasks import TaskData
from climjax.training import steps, validate
from climjax.training.state import create_train_state

NAMES = ("tc", "ar", "wf")


def validate_config(config: ml_collections.ConfigDict) -> None:
  validate.one_of(config, "task", NAMES)
  validate.one_of(config, "model.name", cnn.MODELS)
  validate.one_of(config, "model.conv_impl", ("xla", "fast"))
  validate.one_of(config, "data.source", ("synthetic", "netcdf", "extremeweather"))
  # For file sources 0 means "every example the files hold".
  from_files = config.data.source != "synthetic"
  validate.positive_int(config, "data.num_train", allow_zero=from_files)
  validate.positive_int(config, "data.num_test", allow_zero=from_files)
  validate.positive_int(config, "train.eval_batch_size")


def normalizer(stats: dict):
  """Batch transform: standardised patches (training-split statistics), int32 labels."""
  standardise = channel_normalizer(stats, "patch")

  def transform(batch: dict) -> dict:
    return {"patch": standardise(batch)["patch"], "label": batch["label"].astype(np.int32)}

  return transform


def _prepare(config):
  return tfds_builders.prepare(tfds_builders.patches_builder(config.data, config.task), key="patch")


def load_data(config, topology, log) -> TaskData:
  """The task's dataset, built by the chief first (the others wait, then open it)."""
  log(f"[climjax] preparing {config.task} data ({config.data.source}) in {config.data.data_dir}")
  if topology.is_chief:
    sources, stats = _prepare(config)
  topology.barrier()
  if not topology.is_chief:
    # Only now: a builder made before the chief finished would see no splits.
    sources, stats = _prepare(config)
  log(f"[climjax] {len(sources['train'])} train / {len(sources['test'])} test examples")
  return task_data(config, sources, stats)


def task_data(config, sources: dict, stats: dict) -> TaskData:
  """The loop's view of random-access "train" and "test" sources, normalised with `stats`."""
  return TaskData(
    train=sources["train"],
    keys=("patch", "label"),
    transform=normalizer(stats),
    example_shape=tuple(sources["train"][0]["patch"].shape),
    description=f"{config.task} train split",
    eval={"sources": sources, "stats": stats},
  )


def make_model(config):
  return cnn.make_model(config.model)


def init_state(config, model, tx, data: TaskData):
  # Jitted: one compilation instead of one per initialiser op (seconds on 2 cores).
  shape = (1, *data.example_shape)
  return jax.jit(lambda rng: create_train_state(model, tx, rng, shape))(jax.random.key(config.seed))


def make_train_step(config, model):
  del config
  return functools.partial(steps.train_step, apply_fn=model.apply)


def make_eval_fn(config, model):
  del config
  return jax.jit(functools.partial(steps.eval_step, apply_fn=model.apply))


def step_flops(
  config, model, state, data: TaskData, *, tx, reduce_grads, local_batch: int
) -> tuple[dict, str]:
  """FLOPs per example of one train step: XLA's cost analysis, and the analytic count.

  Counted on the XLA formulation of the model: the fast kernels may execute
  structural zeros (climjax.ops.s2d) that are not the model's work. XLA's
  count includes elementwise work; the analytic one only convolutions and
  matrix products, as a cross-check.
  """
  from climjax.ops import flops

  del model
  reference = cnn.make_model(ml_collections.ConfigDict({**config.model, "conv_impl": "xla"}))
  reference_fn = jax.jit(
    functools.partial(steps.train_step, apply_fn=reference.apply, tx=tx, reduce_grads=reduce_grads)
  )
  abstract_state = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state)
  shape = data.example_shape
  batch = {
    "patch": jax.ShapeDtypeStruct((local_batch, *shape), np.float32),
    "label": jax.ShapeDtypeStruct((local_batch,), np.int32),
  }
  xla = flops.xla_flops(reference_fn, abstract_state, batch)
  analytic = flops.analytic_flops(reference_fn, abstract_state, batch)
  per_example = (xla if xla is not None else analytic) / local_batch
  analytic /= local_batch
  line = (
    f"train step: {per_example / 1e6:.2f} MFLOP per example "
    f"(XLA cost analysis; analytic conv+matmul count {analytic / 1e6:.2f})"
  )
  return {"flops_per_example": per_example, "analytic_flops_per_example": analytic}, line


def progress_text(metrics: dict) -> str:
  return f"loss {metrics['loss']:.4f} acc {metrics['accuracy']:.3f}"


def evaluate(eval_fn, params, source, *, config, topology, transform) -> dict:
  """Accuracy, loss, precision and recall over a whole split (all ranks' shards summed)."""
  totals: dict[str, float] = {}
  for batch in pipeline.eval_batches(
    source,
    keys=("patch", "label"),
    batch_size=config.train.eval_batch_size,
    shard_index=topology.data_index,
    shard_count=topology.data_count,
  ):
    inputs = {**transform(batch), "mask": batch["mask"]}
    for key, value in eval_fn(params, inputs).items():
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


def evaluate_during_training(config, eval_fn, params, data: TaskData, topology) -> tuple[dict, str]:
  test = evaluate(
    eval_fn, params, data.eval["sources"]["test"], config=config, topology=topology,
    transform=data.transform,
  )  # fmt: skip
  return (
    {"test_accuracy": test["accuracy"], "test_loss": test["loss"]},
    f"test accuracy {test['accuracy']:.4f}",
  )


def held_out_scalars(summary: dict) -> dict:
  """The end-of-run held-out numbers, as the last point of the curves evaluation logs."""
  return {k: summary[k] for k in ("test_accuracy", "test_loss") if summary.get(k) is not None}


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


def evaluate_and_write(config, workdir, eval_fn, params, data: TaskData, topology, log) -> dict:
  """Both splits on every rank (sharded); the chief writes the accuracy tables."""
  results = {
    split: evaluate(
      eval_fn,
      params,
      data.eval["sources"][split],
      config=config,
      topology=topology,
      transform=data.transform,
    )  # fmt: skip
    for split in ("train", "test")
  }
  log(
    f"[climjax] train accuracy {results['train']['accuracy']:.4f}, "
    f"test accuracy {results['test']['accuracy']:.4f}"
  )
  if topology.is_chief:
    write_eval_tables(workdir, results)
  return {
    "test_accuracy": results["test"]["accuracy"],
    "train_accuracy": results["train"]["accuracy"],
    "test_loss": results["test"]["loss"],
  }
