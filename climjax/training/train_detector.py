"""The semi-supervised detector's training loop: config in, workdir out.

A fork of `train.py` (the classifier loop), kept linear so a researcher can read
it top to bottom and fork it again. It reuses the classifier's pieces: train
state, optimizer, orbax checkpoints with resume, the metric writer, the data
pipeline's resumable shuffled batches and config checks. What differs is the
data (global fields with padded boxes, some of them unlabelled), the loss
(`losses.detection_loss`) and the evaluation (AP per class). It leaves:

  config.json     the resolved config
  checkpoints/    orbax checkpoints; a rerun with the same workdir resumes
  metrics.jsonl   one JSON object per logged step (loss parts, norms, mAP evals)
  eval/           ap.csv / ap.md: AP per class at IoU 0.1 and 0.5 (standard VOC
                  all-point), and the original paper's variant beside it
  plots/          curves.png, detections_*.png, reconstruction.png
  predictions.nc  held-out detections (time, box) -> class, score, lat/lon box
  summary.json    map@0.1, map@0.5, ap@0.1, ap@0.5 (class name -> AP),
                  reconstruction_mse, wall_seconds, num_parameters, ...
"""

from __future__ import annotations

import functools
import math
import os
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from climjax import checkpointing, losses, parallel
from climjax.data import pipeline, synthetic
from climjax.data.stats import ChannelStats
from climjax.data.variables import CLASS_NAMES
from climjax.evaluation import detection
from climjax.models import detector
from climjax.training import metrics as metrics_lib
from climjax.training import optim, validate
from climjax.training.metrics import write_json
from climjax.training.state import TrainState, create_train_state, num_parameters
from climjax.training.train import start_run

IOU_THRESHOLDS = (0.1, 0.5)
BATCH_KEYS = ("fields", "boxes", "box_classes", "box_mask", "labelled")
GENERATION_CHUNK = 64  # synthetic snapshots generated per call


def validate_config(config: ml_collections.ConfigDict) -> None:
  validate.common_checks(config)
  validate.one_of(config, "trainer", ("detector",))
  validate.one_of(config, "model.name", ("detector",))
  validate.one_of(config, "model.conv_impl", ("xla", "fast"))
  validate.one_of(config, "model.temporal", detector.TEMPORAL_MODES)
  validate.positive_int(config, "model.time_steps")
  validate.positive_int(config, "model.num_layers")
  validate.positive_float(config, "model.width")
  validate.positive_float(config, "model.anchor_size")
  validate.one_of(config, "data.source", ("synthetic", "extremeweather", "netcdf"))
  synthetic_data = config.data.source == "synthetic"
  if not synthetic_data and not config.data.get("input"):
    raise validate.ConfigError(
      f"data.source={config.data.source!r} needs data.input, a file path or glob"
    )
  for field in ("data.num_train", "data.num_test"):  # file sources: caps, 0 = every snapshot
    validate.positive_int(config, field, allow_zero=not synthetic_data)
  for field in ("data.height", "data.width"):
    validate.positive_int(config, field)
  validate.positive_int(config, "train.eval_batch_size")
  fraction = config.data.labelled_fraction
  if not isinstance(fraction, int | float) or not 0.0 <= fraction <= 1.0:
    raise validate.ConfigError(f"data.labelled_fraction must be in [0, 1], got {fraction!r}")
  if config.loss.reconstruction_weight < 0:
    raise validate.ConfigError(
      f"loss.reconstruction_weight must be >= 0, got {config.loss.reconstruction_weight!r}"
    )
  cell = 2**config.model.num_layers
  if config.data.height % cell or config.data.width % cell:
    raise validate.ConfigError(
      f"data.height x data.width = {config.data.height}x{config.data.width} must be multiples "
      f"of the {cell}-pixel cell of model.num_layers={config.model.num_layers}"
    )
  if config.parallel.strategy == "hybrid":
    raise validate.ConfigError("parallel.strategy='hybrid' is not implemented for the detector")


# ---------------------------------------------------------------------------
# Data: synthetic global fields with planted events, held in memory.


class ArraySource:
  """A random-access source over equal-length arrays, for `data.pipeline`."""

  def __init__(self, arrays: dict[str, np.ndarray]):
    self.arrays = arrays
    self._len = len(next(iter(arrays.values())))

  def __len__(self) -> int:
    return self._len

  def __getitems__(self, indices):
    return [{k: v[i] for k, v in self.arrays.items()} for i in indices]


class Windows:
  """Example i is snapshots[i : i + T]: (T, H, W, C) windows of consecutive fields.

  Indexes like the (N, T, H, W, C) array it stands for without building it,
  which would hold every snapshot T times.
  """

  def __init__(self, snapshots: np.ndarray, time_steps: int):
    self.snapshots = snapshots
    self.time_steps = time_steps
    self.shape = (len(snapshots) - time_steps + 1, time_steps, *snapshots.shape[1:])
    self.ndim, self.dtype = len(self.shape), snapshots.dtype
    self.size = int(np.prod(self.shape))

  def __len__(self) -> int:
    return self.shape[0]

  def __getitem__(self, index):
    if isinstance(index, slice):
      return np.stack([self[i] for i in range(*index.indices(len(self)))])
    index = int(index)
    if not -len(self) <= index < len(self):
      raise IndexError(f"window {index} out of range for {len(self)} windows")
    index %= len(self)
    return self.snapshots[index : index + self.time_steps]


def labelled_mask(num: int, fraction: float, seed: int) -> np.ndarray:
  """1 for a seeded random `round(fraction * num)` of the examples, else 0."""
  order = np.random.default_rng([seed, 1]).permutation(num)
  mask = np.zeros(num, np.float32)
  mask[order[: int(round(fraction * num))]] = 1.0
  return mask


def _split_seed(data_config, split: str) -> int:
  return data_config.seed + (0 if split == "train" else synthetic.TEST_SEED_OFFSET)


def _synthetic_snapshots(data_config, split: str, steps: int) -> dict:
  """`steps` consecutive synthetic snapshots with their padded boxes, in memory."""
  seed = _split_seed(data_config, split)
  channels = tuple(data_config.channels)
  h, w = data_config.height, data_config.width
  # Generated in chunks straight into one array: the generator's own per-variable
  # arrays are as large as the result, so a single call would need twice the memory.
  fields = np.empty((steps, h, w, len(channels)), np.float32)
  rows = np.empty((steps, data_config.max_boxes, 5), np.int32)
  times = []
  for c0 in range(0, steps, GENERATION_CHUNK):
    n = min(GENERATION_CHUNK, steps - c0)
    ds, events = synthetic.generate_fields(n, seed=seed, nlat=h, nlon=w, start=c0)
    for k, name in enumerate(channels):
      fields[c0 : c0 + n, ..., k] = ds[name].values
    rows[c0 : c0 + n] = synthetic.padded_boxes(events, n, max_boxes=data_config.max_boxes)
    times.append(ds["time"].values)
  return {
    "fields": fields,
    "boxes": rows[..., :4].astype(np.float32),
    "box_classes": np.maximum(rows[..., 4], 0).astype(np.int32),
    "box_mask": (rows[..., 4] >= 0).astype(np.float32),
    "times": np.concatenate(times),
    "lats": ds["lat"].values,
    "lons": ds["lon"].values,
    "channels": channels,
  }


def _parse_times(raw) -> np.ndarray:
  """ISO dates (bytes or str) as datetime64, or snapshot numbers where a file has none."""
  strings = [t.decode() if isinstance(t, bytes) else str(t) for t in raw]
  try:
    return np.array([np.datetime64(t) for t in strings])
  except ValueError:
    return np.arange(len(strings))


def _file_snapshots(data_config, split: str) -> dict:
  """The snapshots of an ExtremeWeather HDF5 or CAM5 netCDF split (boxes from the
  files or from the TECA-style heuristics), built once into a tfds dataset in
  `data.data_dir` and read through memory maps of its decoded cache."""
  from climjax.data import tfds_builders, variables  # noqa: PLC0415  (tensorflow-datasets)

  if tuple(data_config.channels) != tuple(variables.EXTREMEWEATHER_CHANNELS):
    raise validate.ConfigError(
      f"data.channels must be the 16 ExtremeWeather variables "
      f"{', '.join(variables.EXTREMEWEATHER_CHANNELS)} (in that order) for "
      f"data.source={data_config.source!r}, got {tuple(data_config.channels)}"
    )
  try:
    builder = tfds_builders.detection_builder(data_config)
  except ValueError as e:  # a bad data.* field, named in the message
    raise validate.ConfigError(str(e)) from e
  grid = (builder.builder_config.height, builder.builder_config.width)
  if grid != (data_config.height, data_config.width):
    raise validate.ConfigError(
      f"data.input {data_config.input!r} is on a {grid[0]}x{grid[1]} grid but "
      f"data.height x data.width = {data_config.height}x{data_config.width}; set "
      f"--config.data.height={grid[0]} --config.data.width={grid[1]}"
    )
  sources, _ = tfds_builders.prepare(builder, key="image", cache=True)
  source = sources[split]
  if isinstance(source, tfds_builders.DecodedSource):
    arrays = source.arrays
  else:  # no writable cache: read the split into memory
    rows = source.__getitems__(range(len(source)))
    arrays = {k: np.stack([r[k] for r in rows]) for k in tfds_builders.DETECTION_KEYS}
  meta = builder.info.metadata
  return {
    "fields": arrays["image"],
    "boxes": np.asarray(arrays["boxes"], np.float32),
    "box_classes": np.asarray(arrays["labels"], np.int32),
    "box_mask": np.asarray(arrays["mask"], np.float32),
    "times": _parse_times(arrays["time"]),
    "lats": np.asarray(meta["lat"]),
    "lons": np.asarray(meta["lon"]),
    "channels": tuple(variables.EXTREMEWEATHER_CHANNELS),
  }


def load_split(data_config, split: str, *, time_steps: int = 1, temporal: str = "pool") -> dict:
  """One split of global fields: arrays of BATCH_KEYS plus lats, lons, times, channels.

  `data.source="synthetic"`: consecutive 6-hourly snapshots of
  `synthetic.generate_fields` (events move and evolve between them); the test
  split comes from another seed, so it never shares a field or an event with
  training. "extremeweather" / "netcdf": the files named by `data.input`, split
  in time by `data.test_fraction` (climjax.data.tfds_builders). With
  time_steps T > 1 each example is a window of T consecutive snapshots,
  (T, H, W, C) (a `Windows` view); its boxes are those of the last snapshot ("pool": the network
  sees the past to find what is there now) or of every snapshot ("keep").
  Fields keep their physical units; `normalizer` standardises them.
  """
  if data_config.source == "synthetic":
    num = data_config.num_train if split == "train" else data_config.num_test
    data = _synthetic_snapshots(data_config, split, num + time_steps - 1)
  else:
    data = _file_snapshots(data_config, split)
    num = len(data["fields"]) - time_steps + 1
    if num < 1:
      raise validate.ConfigError(
        f"the {split} split of {data_config.input!r} has {len(data['fields'])} snapshots, "
        f"fewer than model.time_steps={time_steps}"
      )
  if time_steps > 1:
    window = np.arange(num)[:, None] + np.arange(time_steps)[None, :]
    data["fields"], data["times"] = Windows(data["fields"], time_steps), data["times"][window]
    pick = window if temporal == "keep" else window[:, -1]
    for key in ("boxes", "box_classes", "box_mask"):
      data[key] = data[key][pick]
  seed = _split_seed(data_config, split)
  data["labelled"] = (
    labelled_mask(num, data_config.labelled_fraction, seed)
    if split == "train"
    else np.ones(num, np.float32)
  )
  return data


def channel_stats(fields: np.ndarray | Windows, chunk: int = 32) -> dict:
  """Per-channel mean and std of the fields, accumulated a few snapshots at a time."""
  snapshots = fields.snapshots if isinstance(fields, Windows) else fields
  acc = ChannelStats()
  for start in range(0, len(snapshots), chunk):
    acc.update(snapshots[start : start + chunk])
  return acc.finalize()


def normalizer(stats: dict) -> Callable[[dict], dict]:
  """Batch transform: per-channel standardisation with training-split statistics."""
  mean = np.asarray(stats["mean"], np.float32)
  std = np.maximum(np.asarray(stats["std"], np.float32), 1e-6)

  def transform(batch: dict) -> dict:
    return {**batch, "fields": (batch["fields"] - mean) / std}

  return transform


# ---------------------------------------------------------------------------
# Pure steps.


def train_step(
  state: TrainState,
  batch: dict,
  *,
  apply_fn: Callable,
  tx: optax.GradientTransformation,
  loss_fn: Callable,
  reduce_grads: Callable = lambda g: g,
) -> tuple[TrainState, dict]:
  def objective(params):
    outputs = apply_fn({"params": params}, batch["fields"], train=True)
    return loss_fn(
      outputs=outputs,
      inputs=batch["fields"],
      boxes=batch["boxes"],
      box_classes=batch["box_classes"],
      box_mask=batch["box_mask"],
      labelled=batch["labelled"],
    )

  (loss, parts), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
  grads = reduce_grads(grads)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  metrics = {
    "loss": loss,
    **parts,
    "labelled_examples": jnp.sum(batch["labelled"]),
    "grad_norm": optax.tree.norm(grads),
    "update_norm": optax.tree.norm(updates),
    "param_norm": optax.tree.norm(params),
  }
  return TrainState(step=state.step + 1, params=params, opt_state=opt_state), metrics


def predict_step(params, fields: jnp.ndarray, *, apply_fn: Callable) -> dict:
  """Head outputs and the per-example reconstruction squared error (summed)."""
  outputs = apply_fn({"params": params}, fields, train=False)
  axes = tuple(range(1, fields.ndim))
  return {
    "objectness": outputs["objectness"],
    "classes": outputs["classes"],
    "boxes": outputs["boxes"],
    "squared_error": jnp.sum(jnp.square(outputs["reconstruction"] - fields), axis=axes),
    "reconstruction": outputs["reconstruction"],
  }


# ---------------------------------------------------------------------------
# Evaluation.


def ground_truth_list(data: dict) -> list[dict]:
  """Per image (flattening time for the 3-D 'keep' network) {"boxes", "labels"} of real boxes."""
  boxes = data["boxes"].reshape(-1, *data["boxes"].shape[-2:])
  classes = data["box_classes"].reshape(-1, data["box_classes"].shape[-1])
  mask = data["box_mask"].reshape(-1, data["box_mask"].shape[-1]) > 0
  return [{"boxes": b[m], "labels": c[m]} for b, c, m in zip(boxes, classes, mask, strict=True)]


def evaluate(predict_fn, params, data: dict, *, config, transform, keep_outputs: int = 0) -> dict:
  """AP per class at each IoU threshold, mAP, the paper's AP variant, reconstruction MSE.

  Returns the scores plus the post-NMS detections per image and the first
  `keep_outputs` reconstructions (for plots).
  """
  source = ArraySource({k: data[k] for k in BATCH_KEYS})
  head_outputs = {"objectness": [], "classes": [], "boxes": []}
  squared_error, kept = 0.0, []
  for batch in pipeline.eval_batches(
    source, keys=BATCH_KEYS, batch_size=config.train.eval_batch_size, transform=transform
  ):
    real = batch["mask"] > 0
    out = jax.device_get(predict_fn(params, batch["fields"]))
    for k in head_outputs:
      head_outputs[k].append(out[k][real])
    squared_error += float(np.sum(out["squared_error"][real]))
    if len(kept) < keep_outputs:
      kept.extend(out["reconstruction"][real][: keep_outputs - len(kept)])
  head_outputs = {k: np.concatenate(v) for k, v in head_outputs.items()}
  cell, anchor = 2**config.model.num_layers, config.model.anchor_size
  image_shape = (config.data.height, config.data.width)
  raw = detection.decode_predictions(
    head_outputs,
    cell_size=cell,
    anchor_size=anchor,
    score_threshold=config.eval.score_threshold,
    image_shape=image_shape,
  )
  found = [
    detection.per_class_nms(
      d, iou_threshold=config.eval.nms_iou_threshold, max_detections=config.eval.max_detections
    )
    for d in raw
  ]
  truth = ground_truth_list(data)
  num_classes = config.model.num_classes
  results = {"detections": found, "reconstructions": kept}
  for t in IOU_THRESHOLDS:
    ap = detection.average_precision(found, truth, iou_threshold=t, num_classes=num_classes)
    paper = detection.average_precision_racah2017(
      raw, truth, iou_threshold=t, num_classes=num_classes
    )
    results[f"ap@{t}"] = ap
    results[f"map@{t}"] = detection.mean_average_precision(ap)
    results[f"racah2017_ap@{t}"] = paper
    results[f"racah2017_map@{t}"] = detection.mean_average_precision(paper)
  results["reconstruction_mse"] = squared_error / data["fields"].size
  return results


def _named(ap: dict[int, float]) -> dict[str, float | None]:
  # JSON has no NaN: a class without ground truth is written as null.
  return {CLASS_NAMES[c]: (None if math.isnan(v) else v) for c, v in ap.items()}


def _json_float(v: float) -> float | None:
  return None if math.isnan(v) else float(v)


def _format_seconds(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  return f"{seconds // 60}m{seconds % 60:02d}s"


def write_plots(workdir: str, test: dict, results: dict, *, config, stats: dict) -> None:
  from climjax import plots

  out = os.path.join(workdir, "plots")
  os.makedirs(out, exist_ok=True)
  plots.plot_curves(os.path.join(workdir, "metrics.jsonl"), os.path.join(out, "curves.png"))
  channels = test["channels"]
  shown = next((c for c in ("TMQ", "PSL") if c in channels), channels[0])
  c = channels.index(shown)
  truth = ground_truth_list(test)
  for i in range(min(config.eval.num_plots, len(truth))):
    found = results["detections"][i]
    plots.plot_detections(
      _evaluated_image(test["fields"], i, config.model.temporal)[..., c],
      os.path.join(out, f"detections_{i}.png"),
      lats=test["lats"],
      lons=test["lons"],
      true_boxes=truth[i]["boxes"],
      true_labels=truth[i]["labels"],
      pred_boxes=found["boxes"],
      pred_labels=found["labels"],
      pred_scores=found["scores"],
      field_name=shown,
      title=f"test field {i}: solid truth, dashed predicted (score >= "
      f"{config.eval.score_threshold})",
    )
  if results["reconstructions"]:
    normalized = normalizer(stats)({"fields": test["fields"][:1]})["fields"][0]
    reconstruction = results["reconstructions"][0]
    if normalized.ndim == 4:  # 3-D network: show the last time step
      normalized, reconstruction = normalized[-1], reconstruction[-1]
    plots.plot_reconstruction(
      normalized,
      reconstruction,
      os.path.join(out, "reconstruction.png"),
      channel_names=channels,
      channels=[channels.index(n) for n in ("PSL", "TMQ", "U850") if n in channels] or None,
      lats=test["lats"],
      lons=test["lons"],
    )


# ---------------------------------------------------------------------------
# The loop.


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains the configured detector on synthetic fields, evaluates it, writes the workdir."""
  t_start = time.time()
  validate_config(config)
  topology = parallel.setup(config.parallel)
  chief = topology.is_chief
  log = start_run(config, workdir, topology)

  # ---- data -------------------------------------------------------------------
  time_steps = config.model.time_steps
  if config.data.source == "synthetic":
    log(
      f"[climjax] generating {config.data.num_train} train / {config.data.num_test} test "
      f"synthetic fields of {config.data.height}x{config.data.width}"
    )
  else:
    log(f"[climjax] reading {config.data.source} fields from {config.data.input}")
  temporal = config.model.temporal
  train = load_split(config.data, "train", time_steps=time_steps, temporal=temporal)
  test = load_split(config.data, "test", time_steps=time_steps, temporal=temporal)
  stats = channel_stats(train["fields"])
  transform = normalizer(stats)
  log(
    f"[climjax] {int(train['labelled'].sum())} of {len(train['labelled'])} training fields "
    f"labelled, {int(train['box_mask'].sum())} boxes; {int(test['box_mask'].sum())} test boxes"
  )

  # ---- model, optimizer, state (restored if the workdir has a checkpoint) ------
  model = detector.make_detector(config.model)
  total_steps = config.train.steps
  tx = optim.make_optimizer(config.optimizer, total_steps)
  example_shape = train["fields"].shape[1:]
  # The "rbg" generator: XLA compiles threefry initialisers of this network for
  # ~10 s of CPU and rbg ones for ~2 s; which generator drew the initial weights
  # does not matter.
  init_key = jax.random.key(config.seed, impl="rbg")
  init_state = jax.jit(functools.partial(create_train_state, model, tx), static_argnums=1)(
    init_key, (1, *example_shape)
  )
  manager = checkpointing.make_manager(os.path.join(workdir, "checkpoints"))
  state, start_step = checkpointing.restore_latest(manager, init_state)
  if start_step:
    log(f"[climjax] resumed from checkpoint at step {start_step}")
  writer = metrics_lib.MetricWriter(
    os.path.join(workdir, "metrics.jsonl"), resume_step=start_step, enabled=chief
  )
  n_params = num_parameters(state.params)
  flops = detector.forward_flops(model, example_shape)
  log(
    f"[climjax] detector {tuple(model.features)}: {n_params:,} parameters, "
    f"{flops / 1e9:.2f} GFLOP forward per example"
  )

  loss_fn = functools.partial(
    losses.detection_loss,
    cell_size=model.cell_size,
    anchor_size=config.model.anchor_size,
    **config.loss.to_dict(),
  )
  train_fn = jax.jit(
    functools.partial(
      train_step,
      apply_fn=model.apply,
      tx=tx,
      loss_fn=loss_fn,
      reduce_grads=topology.reduce_grads,
    ),
    donate_argnums=0,
  )
  predict_fn = jax.jit(functools.partial(predict_step, apply_fn=model.apply))
  batches = pipeline.train_batches(
    ArraySource({k: train[k] for k in BATCH_KEYS}),
    keys=BATCH_KEYS,
    global_batch_size=topology.global_batch(config.train.batch_size),
    shard_index=topology.data_index,
    shard_count=topology.data_count,
    seed=config.data.seed,
    start_step=start_step,
    transform=transform,
    num_threads=config.data.num_threads,
    prefetch=config.data.prefetch,
  )

  # ---- train ------------------------------------------------------------------
  timer = metrics_lib.TrainTimer()
  window_t, window_steps = time.time(), 0
  step = start_step
  per_rank = topology.per_rank_batch(config.train.batch_size)
  for step in range(start_step + 1, total_steps + 1):
    batch = next(batches)
    state, train_metrics = train_fn(state, batch)
    last = step == total_steps
    if step == start_step + 1 or step % config.train.log_every == 0 or last:
      train_metrics = jax.device_get(train_metrics)  # waits for the step
      metrics_lib.check_finite(
        step, float(train_metrics["loss"]), f"{config.data.source} train split"
      )
    if step == start_step + 1:  # the first step compiles; time from its end
      jax.block_until_ready(state)
      timer.start()
    else:
      timer.count(per_rank)
    window_steps += 1
    if step % config.train.log_every == 0 or last:
      jax.block_until_ready(state)
      now = time.time()
      rate = window_steps * per_rank / max(now - window_t, 1e-9)
      writer.write_scalars(
        step, {**train_metrics, "examples_per_second": rate, "wall_time": now - t_start}
      )
      log(
        f"[climjax] step {step}/{total_steps} loss {train_metrics['loss']:.4f} "
        f"(detection {train_metrics['detection']:.3f}, reconstruction mse "
        f"{train_metrics['reconstruction_mse']:.3f}) {rate:,.1f} ex/s "
        f"eta {_format_seconds((total_steps - step) * per_rank / rate)}"
      )
      window_t, window_steps = now, 0
    saving = step % config.train.checkpoint_every == 0 or last
    evaluating = config.train.eval_every and step % config.train.eval_every == 0 and not last
    if saving or evaluating:
      jax.block_until_ready(state)
      timer.pause()
    if saving and chief:
      checkpointing.save(manager, step, state)
    if evaluating and chief:
      scores = evaluate(predict_fn, state.params, test, config=config, transform=transform)
      writer.write_scalars(
        step,
        {
          "test_map@0.1": _json_float(scores["map@0.1"]),
          "test_map@0.5": _json_float(scores["map@0.5"]),
          "test_reconstruction_mse": scores["reconstruction_mse"],
        },
      )
      log(
        f"[climjax] step {step}: test mAP@0.1 {scores['map@0.1']:.3f} @0.5 {scores['map@0.5']:.3f}"
      )
    if saving or evaluating:
      timer.start()
      window_t = time.time()  # the logged rate counts training time only
  jax.block_until_ready(state)
  timer.stop()
  manager.wait_until_finished()
  train_seconds = time.time() - t_start

  # ---- evaluate and write the workdir ------------------------------------------
  summary = {}
  if chief:
    results = evaluate(
      predict_fn,
      state.params,
      test,
      config=config,
      transform=transform,
      keep_outputs=1,
    )
    log(
      f"[climjax] test mAP@0.1 {results['map@0.1']:.3f}, mAP@0.5 {results['map@0.5']:.3f} "
      f"(original paper's AP variant: {results['racah2017_map@0.1']:.3f}, "
      f"{results['racah2017_map@0.5']:.3f}); reconstruction mse "
      f"{results['reconstruction_mse']:.4f}"
    )
    rows = {f"ap@{t}": results[f"ap@{t}"] for t in IOU_THRESHOLDS}
    rows.update({f"racah2017_ap@{t}": results[f"racah2017_ap@{t}"] for t in IOU_THRESHOLDS})
    detection.write_ap_tables(rows, os.path.join(workdir, "eval"))
    detection.write_predictions(
      os.path.join(workdir, "predictions.nc"),
      results["detections"],
      times=_flat_times(test["times"], time_steps, config.model.temporal),
      lats=test["lats"],
      lons=test["lons"],
    )
    summary = {
      "task": "detection",
      "data_source": config.data.source,
      "labelled_fraction": float(config.data.labelled_fraction),
      "reconstruction_weight": float(config.loss.reconstruction_weight),
      "steps": int(step),
      "resumed_from_step": int(start_step),
      "examples_per_second": timer.examples_per_second,
      "train_seconds": train_seconds,
      "num_parameters": n_params,
      "forward_gflops_per_example": flops / 1e9,
      "reconstruction_mse": results["reconstruction_mse"],
      "num_test_fields": len(test["labelled"]),
      "num_test_boxes": int(test["box_mask"].sum()),
      "train_step_compilations": train_fn._cache_size(),
      "parallel_strategy": topology.strategy,
      "num_ranks": topology.size,
    }
    for t in IOU_THRESHOLDS:
      summary[f"map@{t}"] = _json_float(results[f"map@{t}"])
      summary[f"ap@{t}"] = _named(results[f"ap@{t}"])
      summary[f"racah2017_map@{t}"] = _json_float(results[f"racah2017_map@{t}"])
      summary[f"racah2017_ap@{t}"] = _named(results[f"racah2017_ap@{t}"])
    summary["wall_seconds"] = time.time() - t_start
    write_plots(workdir, test, results, config=config, stats=stats)
    summary["wall_seconds"] = time.time() - t_start
    write_json(os.path.join(workdir, "summary.json"), summary)
    log(f"[climjax] wrote {os.path.join(workdir, 'summary.json')}")
  topology.barrier()
  manager.close()
  return summary


def _evaluated_image(fields, i: int, temporal: str) -> np.ndarray:
  """The (H, W, C) field of the i-th evaluated image (the list `ground_truth_list` makes)."""
  if fields.ndim == 4:
    return fields[i]
  t = fields.shape[1]
  # "pool" predicts for the last snapshot of each window; "keep" for every one.
  return fields[i][-1] if temporal == "pool" else fields[i // t][i % t]


def _flat_times(times, time_steps: int, temporal: str) -> np.ndarray:
  """The time label of each evaluated image (every step for the 3-D 'keep' network)."""
  times = np.asarray(times)
  if time_steps > 1 and temporal == "pool":
    return times[:, -1] if times.ndim == 2 else times
  return times.reshape(-1)
