"""The semi-supervised detector task (Racah et al. 2017) for the training loop.

Data: global fields with padded boxes (climjax.data.fields: synthetic, or the
ExtremeWeather HDF5 / CAM5 netCDF files), a seeded fraction of the training
fields labelled; standardised per channel. Model: the encoder-decoder of
climjax.models.detector (2-D, or 3-D over consecutive fields). Loss:
detection + lambda x reconstruction (losses.detection_loss; unlabelled fields
train only the reconstruction). Evaluation, on the chief: AP per class at IoU
0.1 and 0.5 (standard VOC all-point, and the original paper's variant beside
it), after decoding and per-class NMS. Outputs:

  eval/           ap.csv / ap.md
  plots/          detections_*.png, reconstruction.png
  predictions.nc  held-out detections (time, box) -> class, score, lat/lon box
  stats.json      the training fields' per-channel statistics (launch/predict.py
                  normalises new files with them)
  summary keys    map@0.1, map@0.5, ap@0.1, ap@0.5 (class name -> AP),
                  racah2017_*, reconstruction_mse, ...
"""

from __future__ import annotations

import functools
import math
import os

import jax
import ml_collections
import numpy as np

from climjax import losses, provenance
from climjax.data import fields, pipeline
from climjax.data import stats as stats_lib
from climjax.data.fields import BATCH_KEYS, ArraySource, load_split
from climjax.data.stats import normalizer as channel_normalizer
from climjax.data.variables import CAM5_VARIABLES, CLASS_NAMES
from climjax.evaluation import detection
from climjax.models import detector
from climjax.tasks import TaskData
from climjax.training import steps, validate
from climjax.training.state import create_train_state

IOU_THRESHOLDS = (0.1, 0.5)


def validate_config(config: ml_collections.ConfigDict) -> None:
  validate.one_of(config, "task", ("detection",))
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
  withheld_classes(config)  # names it cannot resolve are a ConfigError
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


# ---------------------------------------------------------------------------
# Data, model, steps.


def _load(config):
  kwargs = {"time_steps": config.model.time_steps, "temporal": config.model.temporal}
  return load_split(config.data, "train", **kwargs), load_split(config.data, "test", **kwargs)


def withheld_classes(config) -> list[int]:
  """The class ids of `data.withheld_classes` ("TC" or "TD,AR"; "" = none)."""
  text = config.data.get("withheld_classes", "") or ""
  names = [n.strip() for n in text.split(",") if n.strip()]
  known = CLASS_NAMES[: config.model.num_classes]
  unknown = [n for n in names if n not in known]
  if unknown:
    raise validate.ConfigError(
      f"data.withheld_classes: unknown class {unknown[0]!r}; the classes are {', '.join(known)}"
    )
  return [known.index(n) for n in names]


def withhold(split: dict, class_ids: list[int]) -> dict:
  """The split with every box of those classes removed: to the loss they are background."""
  if not class_ids:
    return split
  keep = ~np.isin(split["box_classes"], class_ids)
  return {**split, "box_mask": np.where(keep, split["box_mask"], 0.0).astype(np.float32)}


def load_data(config, topology, log) -> TaskData:
  """Both splits in memory on every rank (file sources: the chief builds the dataset first)."""
  if config.data.source == "synthetic":
    log(
      f"[climjax] generating {config.data.num_train} train / {config.data.num_test} test "
      f"synthetic fields of {config.data.height}x{config.data.width}"
    )
    train, test = _load(config)
  else:
    log(f"[climjax] reading {config.data.source} fields from {config.data.input}")
    if topology.is_chief:
      train, test = _load(config)
    topology.barrier()
    if not topology.is_chief:
      train, test = _load(config)
  withheld = withheld_classes(config)
  if withheld:  # configs/discovery.py: can the encoder separate a class it was never told about?
    before = int(train["box_mask"].sum())
    train = withhold(train, withheld)
    log(
      f"[climjax] withheld {config.data.withheld_classes}: {before - int(train['box_mask'].sum())}"
      " training boxes removed (their events stay in the fields, unlabelled)"
    )
  stats = fields.channel_stats(train["fields"])
  log(
    f"[climjax] {int(train['labelled'].sum())} of {len(train['labelled'])} training fields "
    f"labelled, {int(train['box_mask'].sum())} boxes; {int(test['box_mask'].sum())} test boxes"
  )
  return TaskData(
    train=ArraySource({k: train[k] for k in BATCH_KEYS}),
    keys=BATCH_KEYS,
    transform=channel_normalizer(stats, "fields"),
    example_shape=tuple(train["fields"].shape[1:]),
    description=f"{config.data.source} train split",
    eval={"test": test, "stats": stats, "num_labelled": int(train["labelled"].sum())},
  )


def make_model(config):
  return detector.make_detector(config.model)


def init_state(config, model, tx, data: TaskData):
  # The "rbg" generator: XLA compiles threefry initialisers of this network for
  # ~10 s of CPU and rbg ones for ~2 s; which generator drew the initial weights
  # does not matter.
  init_key = jax.random.key(config.seed, impl="rbg")
  return jax.jit(functools.partial(create_train_state, model, tx), static_argnums=1)(
    init_key, (1, *data.example_shape)
  )


def make_train_step(config, model):
  loss_fn = functools.partial(
    losses.detection_loss,
    cell_size=model.cell_size,
    anchor_size=config.model.anchor_size,
    **config.loss.to_dict(),
  )
  return functools.partial(steps.detector_train_step, apply_fn=model.apply, loss_fn=loss_fn)


def make_eval_fn(config, model):
  del config
  return jax.jit(functools.partial(steps.predict_step, apply_fn=model.apply))


def step_flops(
  config, model, state, data: TaskData, *, tx, reduce_grads, local_batch: int
) -> tuple[dict, str]:
  del config, state, tx, reduce_grads, local_batch
  flops = detector.forward_flops(model, data.example_shape)
  return (
    {"forward_gflops_per_example": flops / 1e9},
    f"detector {tuple(model.features)}: {flops / 1e9:.2f} GFLOP forward per example",
  )


def progress_text(metrics: dict) -> str:
  return (
    f"loss {metrics['loss']:.4f} (detection {metrics['detection']:.3f}, "
    f"reconstruction mse {metrics['reconstruction_mse']:.3f})"
  )


# ---------------------------------------------------------------------------
# Evaluation (on the chief) and outputs.


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


def write_plots(workdir: str, test: dict, results: dict, *, config, stats: dict) -> None:
  from climjax import plots

  out = os.path.join(workdir, "plots")
  os.makedirs(out, exist_ok=True)
  channels = test["channels"]
  shown = next((c for c in ("TMQ", "PSL") if c in channels), channels[0])
  c = channels.index(shown)
  truth = ground_truth_list(test)
  times = _flat_times(test["times"], config.model.time_steps, config.model.temporal)
  units = CAM5_VARIABLES[shown].units if shown in CAM5_VARIABLES else ""
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
      min_score=float(config.eval.get("plot_score_threshold", 0.3)),
      field_name=shown,
      units=units,
      time=f"test field {i}, {_time_text(times[i])}",
    )
  if results["reconstructions"]:
    normalized = channel_normalizer(stats, "fields")({"fields": test["fields"][:1]})["fields"][0]
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
      time=f"test field 0, {_time_text(np.asarray(test['times'])[0].reshape(-1)[-1])}",
    )


def _time_text(value) -> str:
  """A snapshot's time label as stored (ISO date, or file[index]) as text."""
  return value.decode() if isinstance(value, bytes) else str(value)


def evaluate_during_training(config, eval_fn, params, data: TaskData, topology) -> tuple[dict, str]:
  if not topology.is_chief:
    return {}, ""
  scores = evaluate(eval_fn, params, data.eval["test"], config=config, transform=data.transform)
  return (
    {
      "test_map@0.1": _json_float(scores["map@0.1"]),
      "test_map@0.5": _json_float(scores["map@0.5"]),
      "test_reconstruction_mse": scores["reconstruction_mse"],
    },
    f"test mAP@0.1 {scores['map@0.1']:.3f} @0.5 {scores['map@0.5']:.3f}",
  )


def held_out_scalars(summary: dict) -> dict:
  """The end-of-run held-out numbers, as the last point of the curves evaluation logs."""
  names = {"map@0.1": "test_map@0.1", "map@0.5": "test_map@0.5",
           "reconstruction_mse": "test_reconstruction_mse"}  # fmt: skip
  return {names[k]: summary[k] for k in names if summary.get(k) is not None}


def evaluate_and_write(config, workdir, eval_fn, params, data: TaskData, topology, log) -> dict:
  """The chief evaluates the held-out fields and writes tables, predictions and plots."""
  if not topology.is_chief:
    return {}
  test = data.eval["test"]
  results = evaluate(eval_fn, params, test, config=config, transform=data.transform, keep_outputs=1)
  log(
    f"[climjax] test mAP@0.1 {results['map@0.1']:.3f}, mAP@0.5 {results['map@0.5']:.3f} "
    f"(original paper's AP variant: {results['racah2017_map@0.1']:.3f}, "
    f"{results['racah2017_map@0.5']:.3f}); reconstruction mse "
    f"{results['reconstruction_mse']:.4f}"
  )
  # The normalisation the network was trained with, for launch/predict.py.
  stats_lib.save(
    {**data.eval["stats"], "channels": list(test["channels"])}, os.path.join(workdir, "stats.json")
  )
  rows = {f"ap@{t}": results[f"ap@{t}"] for t in IOU_THRESHOLDS}
  rows.update({f"racah2017_ap@{t}": results[f"racah2017_ap@{t}"] for t in IOU_THRESHOLDS})
  detection.write_ap_tables(rows, os.path.join(workdir, "eval"))
  detection.write_predictions(
    os.path.join(workdir, "predictions.nc"),
    results["detections"],
    times=_flat_times(test["times"], config.model.time_steps, config.model.temporal),
    lats=test["lats"],
    lons=test["lons"],
    attrs=provenance.netcdf_attrs(
      config_name=config.get("name", ""),
      checkpoint_step=int(config.train.steps),
      config=config.to_dict(),
    ),  # fmt: skip
  )
  summary = {
    "labelled_fraction": float(config.data.labelled_fraction),
    "withheld_classes": [CLASS_NAMES[c] for c in withheld_classes(config)],
    "reconstruction_weight": float(config.loss.reconstruction_weight),
    "reconstruction_mse": results["reconstruction_mse"],
    "num_test_fields": len(test["labelled"]),
    "num_test_boxes": int(test["box_mask"].sum()),
  }
  for t in IOU_THRESHOLDS:
    summary[f"map@{t}"] = _json_float(results[f"map@{t}"])
    summary[f"ap@{t}"] = _named(results[f"ap@{t}"])
    summary[f"racah2017_map@{t}"] = _json_float(results[f"racah2017_map@{t}"])
    summary[f"racah2017_ap@{t}"] = _named(results[f"racah2017_ap@{t}"])
  write_plots(workdir, test, results, config=config, stats=data.eval["stats"])
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
