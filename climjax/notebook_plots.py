"""Figures, and a few small helpers, for the notebooks in colab/.

Like climjax.plots (whose map pieces it reuses: coastlines from the land mask
of climjax.data.landsea, boxes in the class colours), every figure function
takes numpy arrays, tables or summaries, draws with matplotlib's Agg backend
into a PNG and returns the path. Maps have latitude / longitude axes in
degrees, colour bars carry units, and boxes a legend with the class names.
Nothing here imports JAX at module level (`classifier_predictions` does, when
called).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence

import numpy as np

from climjax import plots
from climjax.data.variables import CLASS_NAMES_WITH_FRONTS, TC_CHANNELS

plt = plots.plt
PathLike = plots.PathLike

# Grid spacing of the CAM5 25 km grid the TC patches are cut from (climjax.data.synthetic).
PATCH_DLAT, PATCH_DLON = 180 / 768, 360 / 1152


# ---- helpers --------------------------------------------------------------------


def run_script(repo: str, script: str, *args: str, tail: int = 6) -> str:
  """Runs `python <repo>/<script> args...`, prints its last `tail` lines, returns its output.

  A failure raises RuntimeError with the end of the output, so a notebook cell stops there.
  """
  command = [sys.executable, os.path.join(repo, script), *map(str, args)]
  result = subprocess.run(command, capture_output=True, text=True)
  output = result.stdout + result.stderr
  lines = [line for line in output.splitlines() if line.strip()]
  if result.returncode != 0:
    raise RuntimeError(f"{script} exited with {result.returncode}:\n" + "\n".join(lines[-25:]))
  print("\n".join(lines[-tail:]))
  return output


def classifier_predictions(config, workdir: str, *, split: str = "test") -> dict:
  """A trained patch classifier's predictions on a split of its own dataset.

  Restores the newest checkpoint of `workdir` (a single-process or sync run of
  `config`), reads `split` as training did (same tfds dataset, same
  standardisation) and returns x (the patches in physical units), y (labels),
  predicted (argmax) and probability (softmax of the positive class).
  """
  import jax  # noqa: PLC0415
  import orbax.checkpoint as ocp  # noqa: PLC0415

  from climjax import checkpointing  # noqa: PLC0415
  from climjax.data import pipeline, tfds_builders  # noqa: PLC0415
  from climjax.tasks import classification  # noqa: PLC0415

  builder = tfds_builders.patches_builder(config.data, config.task)
  sources, stats = tfds_builders.prepare(builder, key="patch")
  transform = classification.normalizer(stats)
  manager = checkpointing.make_manager(os.path.join(workdir, "checkpoints"))
  step = manager.latest_step()
  if step is None:
    raise FileNotFoundError(f"{workdir}: no checkpoint; train first")
  params = manager.restore(step, args=ocp.args.StandardRestore())["params"]
  manager.close()
  model = classification.make_model(config)
  apply = jax.jit(lambda p, x: jax.nn.softmax(model.apply({"params": p}, x)))
  xs, ys, probs = [], [], []
  for batch in pipeline.eval_batches(
    sources[split], keys=("patch", "label"), batch_size=int(config.train.eval_batch_size)
  ):
    real = batch["mask"] > 0
    prob = np.asarray(apply(params, transform(batch)["patch"]))
    xs.append(batch["patch"][real])
    ys.append(batch["label"][real].astype(np.int32))
    probs.append(prob[real])
  prob = np.concatenate(probs)
  return {
    "x": np.concatenate(xs),
    "y": np.concatenate(ys),
    "predicted": prob.argmax(-1).astype(np.int32),
    "probability": prob[:, 1],
  }


def _map_axes(ax, lats, lons, *, labels: bool = True) -> None:
  ax.set_xlim(plots._edges(lons)[[0, -1]])
  ax.set_ylim(plots._edges(lats)[[0, -1]])
  if labels:
    ax.set_xlabel("longitude (°E)", fontsize=8)
    ax.set_ylabel("latitude (°N)", fontsize=8)
  ax.tick_params(labelsize=7)


def _class_handles(class_ids, class_names, *, styles: Sequence[tuple[str, str]] = ()):
  from matplotlib import patheffects  # noqa: PLC0415
  from matplotlib.lines import Line2D  # noqa: PLC0415

  outline = [patheffects.withStroke(linewidth=3.6, foreground="0.2")]  # the white TD shows
  handles = [
    Line2D([], [], color=plots.CLASS_COLOURS[c % len(plots.CLASS_COLOURS)], lw=2,
           path_effects=outline, label=class_names[c] if 0 <= c < len(class_names) else str(c))
    for c in sorted({int(c) for c in class_ids})
  ]  # fmt: skip
  handles += [Line2D([], [], color="0.4", lw=1.3, ls=ls, label=label) for label, ls in styles]
  return handles


def _legend_below(ax, handles) -> None:
  if handles:
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.2),
              ncol=min(len(handles), 7), fontsize=7, frameon=False)  # fmt: skip


def _degree_box(ax, lat0, lat1, lon0, lon1, colour, linestyle, text=None) -> None:
  """A box in degrees; one whose west edge lies east of its east edge crosses 0/360."""
  from matplotlib import patches  # noqa: PLC0415

  width = (lon1 - lon0) % 360.0 if lon1 < lon0 else lon1 - lon0
  for shift in (0.0, -360.0, 360.0):
    ax.add_patch(patches.Rectangle((lon0 + shift, lat0), width, lat1 - lat0, fill=False,
                                   edgecolor=colour, lw=1.2, linestyle=linestyle))  # fmt: skip
  if text:
    ax.text(lon0, lat1, text, color=colour, fontsize=6, va="bottom", clip_on=True)


# ---- 01: the data ------------------------------------------------------------------


def plot_fields(ds, names: Sequence[str], out_png: PathLike, *, time_index: int = 0,
                ncols: int = 2) -> str:  # fmt: skip
  """Maps of the variables `names` of a (time, lat, lon) dataset at one time, with coastlines."""
  lats, lons = ds["lat"].values, ds["lon"].values
  nrows = math.ceil(len(names) / ncols)
  aspect = len(lons) / len(lats)
  fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * (2.3 * aspect + 1.6), 2.7 * nrows),
                           squeeze=False)  # fmt: skip
  for ax, name in zip(axes.flat, names, strict=False):
    var = ds[name]
    mesh = plots._image(ax, var.values[time_index], lats, lons, cmap="viridis")
    units = var.attrs.get("units", "")
    fig.colorbar(mesh, ax=ax, fraction=0.04, pad=0.02, format="%.3g").set_label(
      f"{name} ({units})" if units else name, fontsize=7
    )
    plots._coastlines(ax, lats, lons)
    _map_axes(ax, lats, lons)
    ax.set_title(f"{name}: {var.attrs.get('long_name', name)}", fontsize=8)
  for ax in list(axes.flat)[len(names) :]:
    ax.set_visible(False)
  time = (
    str(ds["time"].values[time_index])[:16] if "time" in ds.coords else ""
  )  # datetime64 or cftime
  fig.suptitle(f"{time}: coastlines are the 0.5 contour of the land fraction", fontsize=9)
  fig.tight_layout()
  return plots._save(fig, out_png)


def plot_box_panels(
  field: np.ndarray,
  lats: np.ndarray,
  lons: np.ndarray,
  panels: Sequence[tuple[str, np.ndarray, np.ndarray]],
  out_png: PathLike,
  *,
  field_name: str,
  units: str,
  time: str = "",
  class_names: Sequence[str] = CLASS_NAMES_WITH_FRONTS,
) -> str:
  """One map per panel (title, pixel boxes (N, 4) as ymin, xmin, ymax, xmax, class ids (N,))
  of the same field, e.g. the generator's true boxes beside the heuristics' boxes."""
  aspect = len(lons) / len(lats)
  fig, axes = plt.subplots(len(panels), 1, figsize=(2.9 * aspect + 2.0, 3.3 * len(panels)),
                           squeeze=False)  # fmt: skip
  present = np.concatenate([np.ravel(labels) for _, _, labels in panels] or [np.zeros(0)])
  for ax, (title, boxes, labels) in zip(axes[:, 0], panels, strict=True):
    mesh = plots._image(ax, field, lats, lons, cmap="viridis")
    fig.colorbar(mesh, ax=ax, fraction=0.03, pad=0.02).set_label(f"{field_name} ({units})")
    plots._coastlines(ax, lats, lons)
    plots._draw_boxes(ax, boxes, labels, lats, lons, linestyle="-", class_names=class_names)
    _map_axes(ax, lats, lons)
    ax.set_title(f"{time}: {title} ({len(np.ravel(labels))} boxes)" if time else title, fontsize=9)
  _legend_below(axes[-1, 0], _class_handles(present, class_names))
  fig.tight_layout()
  return plots._save(fig, out_png)


def plot_class_counts(
  counts: Mapping[str, Mapping[str, float]],
  out_png: PathLike,
  *,
  classes: Sequence[str] = CLASS_NAMES_WITH_FRONTS,
  ylabel: str = "boxes (all snapshots)",
  title: str = "",
) -> str:
  """Grouped bars: for each class, one bar per series of `counts` ({series: {class: n}})."""
  fig, ax = plt.subplots(figsize=(6.4, 3.4))
  width = 0.8 / max(len(counts), 1)
  x = np.arange(len(classes))
  for k, (series, values) in enumerate(counts.items()):
    heights = [float(values.get(c, 0)) for c in classes]
    bars = ax.bar(x + (k - (len(counts) - 1) / 2) * width, heights, width, label=series)
    ax.bar_label(bars, fmt="%g", fontsize=7)
  ax.set_xticks(x, list(classes))
  ax.set_xlabel("event class")
  ax.set_ylabel(ylabel)
  ax.set_title(title, fontsize=9)
  ax.legend(fontsize=8)
  ax.grid(alpha=0.3, axis="y")
  fig.tight_layout()
  return plots._save(fig, out_png)


# ---- 02: the TC classifier ---------------------------------------------------------------


def plot_tc_patches(
  patches: np.ndarray,
  titles: Sequence[str],
  out_png: PathLike,
  *,
  channels: Sequence[str] = TC_CHANNELS,
  ncols: int = 4,
  suptitle: str = "",
) -> str:
  """TC patches (N, H, W, C) in physical units: PSL in hPa, TMQ contours, lowest-level winds."""
  n = len(patches)
  ncols = max(1, min(ncols, n))
  nrows = max(1, math.ceil(n / ncols))
  fig, axes = plt.subplots(nrows, ncols, figsize=(3.3 * ncols, 3.0 * nrows), squeeze=False)
  if n == 0:
    axes[0, 0].text(0.5, 0.5, "no patches to show", ha="center", va="center")
    axes[0, 0].set_axis_off()
  psl, tmq = channels.index("PSL"), channels.index("TMQ")
  u, v = channels.index("UBOT"), channels.index("VBOT")
  for i, ax in enumerate(axes.flat):
    if i >= n:
      if n:
        ax.set_visible(False)
      continue
    x = patches[i]
    size = x.shape[0]
    mesh = ax.imshow(x[..., psl] / 100.0, origin="lower", cmap="viridis")
    fig.colorbar(mesh, ax=ax, fraction=0.046, pad=0.03).set_label("PSL (hPa)", fontsize=7)
    contours = ax.contour(x[..., tmq], levels=4, colors="w", linewidths=0.6)
    ax.clabel(contours, fontsize=5, fmt="%.0f")
    step = max(1, size // 8)
    grid = np.arange(0, size, step)
    ax.quiver(grid, grid, x[::step, ::step, u], x[::step, ::step, v], color="0.9", scale=300,
              width=0.006)  # fmt: skip
    ax.set_title(titles[i], fontsize=8)
    ax.set_xlabel(f"grid column ({PATCH_DLON:.2f}° lon)", fontsize=7)
    ax.set_ylabel(f"grid row ({PATCH_DLAT:.2f}° lat)", fontsize=7)
    ax.tick_params(labelsize=6)
  fig.suptitle(suptitle or "PSL (colour, hPa), TMQ (white contours, kg/m²), "
               "lowest-level wind (arrows, m/s)", fontsize=9)  # fmt: skip
  fig.tight_layout()
  return plots._save(fig, out_png)


def plot_confusion_matrix(
  cm: np.ndarray, class_names: Sequence[str], out_png: PathLike, *, title: str = ""
) -> str:
  """Counts of (true, predicted) classes, with each row's share of its true class."""
  cm = np.asarray(cm)
  fig, ax = plt.subplots(figsize=(5.0, 4.0), layout="constrained")
  mesh = ax.imshow(cm, cmap="Blues")
  fig.colorbar(mesh, ax=ax, fraction=0.046, pad=0.04).set_label("test patches")
  totals = np.maximum(cm.sum(axis=1, keepdims=True), 1)
  for (i, j), n in np.ndenumerate(cm):
    dark = n > cm.max() / 2
    ax.text(j, i, f"{n}\n({n / totals[i, 0]:.1%})", ha="center", va="center", fontsize=9,
            color="w" if dark else "k")  # fmt: skip
  ticks = np.arange(len(class_names))
  ax.set_xticks(ticks, list(class_names))
  ax.set_yticks(ticks, list(class_names))
  ax.set_xlabel("predicted class")
  ax.set_ylabel("true class")
  ax.set_title(title, fontsize=9)
  return plots._save(fig, out_png)


def plot_accuracies(
  accuracies: Mapping[str, float], out_png: PathLike, *, title: str = "", highlight: str = ""
) -> str:
  """Horizontal bars of test accuracy per method; `highlight` is drawn in another colour."""
  names = list(accuracies)
  values = np.array([accuracies[n] for n in names], float)
  fig, ax = plt.subplots(figsize=(6.0, 0.45 * len(names) + 1.3))
  colours = ["#d62728" if n == highlight else "#1f77b4" for n in names]
  bars = ax.barh(np.arange(len(names)), values, color=colours)
  ax.bar_label(bars, fmt="%.3f", fontsize=8, padding=2)
  ax.set_yticks(np.arange(len(names)), names)
  ax.invert_yaxis()
  low = max(0.0, float(np.nanmin(values)) - 0.1) if len(values) else 0.0
  ax.set_xlim(low, 1.02)
  ax.set_xlabel("test accuracy (fraction of held-out patches)")
  ax.set_title(title, fontsize=9)
  ax.grid(alpha=0.3, axis="x")
  fig.tight_layout()
  return plots._save(fig, out_png)


# ---- 03: the detector -----------------------------------------------------------------------


def plot_ap_per_class(
  summary: Mapping, out_png: PathLike, *, thresholds: Sequence[float] = (0.1, 0.5), title: str = ""
) -> str:
  """Held-out AP per class at each IoU threshold from a detector run's summary.json."""
  classes = list(summary[f"ap@{thresholds[0]}"])
  fig, ax = plt.subplots(figsize=(6.2, 3.4))
  width = 0.8 / len(thresholds)
  x = np.arange(len(classes))
  for k, t in enumerate(thresholds):
    ap = summary[f"ap@{t}"]
    heights = [np.nan if ap[c] is None else float(ap[c]) for c in classes]
    mean = summary.get(f"map@{t}")
    label = f"IoU ≥ {t:g} (mAP {mean:.3f})" if mean is not None else f"IoU ≥ {t:g}"
    bars = ax.bar(x + (k - (len(thresholds) - 1) / 2) * width, np.nan_to_num(heights), width,
                  label=label)  # fmt: skip
    ax.bar_label(bars, labels=["n/a" if np.isnan(h) else f"{h:.2f}" for h in heights],
                 fontsize=7)  # fmt: skip
  ax.set_xticks(x, classes)
  ax.set_xlabel("event class")
  ax.set_ylabel("average precision (VOC all-point)")
  ax.set_ylim(0, 1.05)
  ax.set_title(title, fontsize=9)
  ax.legend(fontsize=8)
  ax.grid(alpha=0.3, axis="y")
  fig.tight_layout()
  return plots._save(fig, out_png)


def plot_labelled_fraction(rows: Sequence[Mapping], out_png: PathLike, *, title: str = "") -> str:
  """mAP and reconstruction error against the labelled fraction, a line per reconstruction weight.

  `rows`: one per run with labelled_fraction, reconstruction_weight, map@0.1,
  map@0.5 and reconstruction_mse (the keys of a detector run's summary.json).
  """
  panels = (
    ("map@0.1", "held-out mAP@0.1"),
    ("map@0.5", "held-out mAP@0.5"),
    ("reconstruction_mse", "reconstruction MSE (std²)"),
  )
  fig, axes = plt.subplots(1, 3, figsize=(12.0, 3.4))
  weights = sorted({float(r["reconstruction_weight"]) for r in rows}, reverse=True)
  for ax, (key, ylabel) in zip(axes, panels, strict=True):
    for w in weights:
      points = sorted((100 * float(r["labelled_fraction"]), r.get(key)) for r in rows
                      if float(r["reconstruction_weight"]) == w)  # fmt: skip
      xs = [p[0] for p in points]
      ys = [np.nan if p[1] is None else float(p[1]) for p in points]
      on = "on" if w > 0 else "off"
      ax.plot(xs, ys, marker="o", label=f"λ = {w:g} (reconstruction {on})")
    ax.set_xlabel("training fields with boxes (%)")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
  axes[0].legend(fontsize=8)
  fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  return plots._save(fig, out_png)


# ---- 04: scaling --------------------------------------------------------------------------

_SPLIT_KEYS = {"compute_seconds": "compute_s", "communication_seconds": "comm_s",
               "wait_seconds": "wait_s", "input_seconds": "input_s", "step_seconds": "step_s"}  # fmt: skip


def scaling_row(summary: Mapping, *, name: str, ranks: int, strategy: str, groups: int = 1,
                servers: int = 0, model: str = "tc", mode: str = "strong") -> dict:  # fmt: skip
  """A run's summary.json as a row of launch/scaling.py's scaling.csv (for
  climjax.evaluation.scaling_plots), for runs made outside a sweep."""
  row = {"name": name, "ranks": ranks, "strategy": strategy, "groups": groups,
         "servers": servers, "model": model, "mode": mode, "cores": os.cpu_count(),
         "examples_per_second": summary.get("examples_per_second"),
         "staleness_mean": summary.get("staleness_mean", 0.0)}  # fmt: skip
  row.update({column: summary.get(key) for key, column in _SPLIT_KEYS.items()})
  return row


def _ranks_text(ranks: int, cores: int | None) -> str:
  text = f"{ranks} rank{'s' if ranks != 1 else ''}"
  return f"{text} > {cores} cores" if cores and ranks > cores else text


def plot_throughput(rows: Sequence[Mapping], out_png: PathLike, *, title: str = "") -> str:
  """Training throughput of each run (a row of scaling.csv), ranks and cores beside it."""
  fig, ax = plt.subplots(figsize=(6.4, 0.5 * len(rows) + 1.5))
  labels = [r.get("name") or f"{r['strategy']} r{int(r['ranks'])}" for r in rows]
  values = np.array([float(r.get("examples_per_second") or 0.0) for r in rows])
  bars = ax.barh(np.arange(len(rows)), values, color="#1f77b4")
  cores = [int(r["cores"]) if r.get("cores") else None for r in rows]
  ax.bar_label(bars, labels=[
    f"{v:,.0f}  ({_ranks_text(int(r['ranks']), c)})"
    for v, r, c in zip(values, rows, cores, strict=True)
  ], fontsize=7, padding=2)  # fmt: skip
  ax.set_yticks(np.arange(len(rows)), labels)
  ax.invert_yaxis()
  ax.set_xlim(0, 1.45 * max(values.max(), 1.0))
  ax.set_xlabel("training examples / s (whole job)")
  ax.set_title(title, fontsize=9)
  ax.grid(alpha=0.3, axis="x")
  fig.tight_layout()
  return plots._save(fig, out_png)


def plot_model_scaling(
  workload,
  machine,
  nodes: Sequence[int],
  layouts: Mapping[str, Mapping],
  out_png: PathLike,
) -> str:
  """climjax.parallel.scaling_model's throughput against nodes, and its time split at the largest.

  `layouts`: label -> keyword arguments of `scaling_model.iteration_time`
  (strategy, groups, servers, algorithm, gradient_lag). Nodes count workers;
  hybrid servers are extra.
  """
  from climjax.parallel import scaling_model  # noqa: PLC0415

  nodes = sorted(int(n) for n in nodes)
  fig, (left, right) = plt.subplots(1, 2, figsize=(11.0, 3.9))
  one = scaling_model.throughput(workload, machine, 1)
  left.plot(nodes, [one * n for n in nodes], "k--", lw=0.8, label="ideal (linear)")
  split_rows = []
  for label, layout in layouts.items():
    fits = [n for n in nodes if n >= int(layout.get("groups", 1))]
    rates = [scaling_model.throughput(workload, machine, n, **layout) for n in fits]
    left.plot(fits, rates, marker="o", ms=3, label=label)
    split_rows.append((label, scaling_model.iteration_time(workload, machine, fits[-1], **layout)))
  left.set_xscale("log", base=2)
  left.set_yscale("log")
  left.set_xlabel("worker nodes")
  left.set_ylabel("examples / s (model)")
  left.set_title(f"{workload.name} on {machine.name}"[:90], fontsize=8)
  left.grid(alpha=0.3, which="both")
  left.legend(fontsize=7)
  parts = (("compute_s", "compute"), ("straggler_s", "waiting for stragglers"),
           ("exposed_comm_s", "communication (exposed)"), ("wait_s", "server queue"))  # fmt: skip
  bottom = np.zeros(len(split_rows))
  for key, name in parts:
    values = np.array([t[key] for _, t in split_rows])
    right.bar(np.arange(len(split_rows)), values, bottom=bottom, label=name)
    bottom += values
  right.set_xticks(np.arange(len(split_rows)), [label for label, _ in split_rows], fontsize=7)
  right.set_ylabel("seconds per iteration (model)")
  right.set_title(f"time split at {nodes[-1]:,} worker nodes", fontsize=9)
  right.grid(alpha=0.3, axis="y")
  right.legend(fontsize=7)
  fig.tight_layout()
  return plots._save(fig, out_png)


# ---- 05: applying the detector --------------------------------------------------------------


def plot_detections_degrees(
  field: np.ndarray,
  lats: np.ndarray,
  lons: np.ndarray,
  detections: Mapping[str, np.ndarray],
  out_png: PathLike,
  *,
  truth: Mapping[str, np.ndarray] | None = None,
  min_score: float = 0.0,
  field_name: str = "",
  units: str = "",
  time: str = "",
  class_names: Sequence[str] = CLASS_NAMES_WITH_FRONTS,
) -> str:
  """A field with boxes in degrees: detections (class_id, score, lat_min, lat_max, lon_min,
  lon_max; dashed, scores >= `min_score`) and, optionally, true boxes (class_id, lat_south,
  lat_north, lon_west, lon_east, as the synthetic events.csv; solid)."""
  aspect = len(lons) / len(lats)
  fig, ax = plt.subplots(figsize=(3.2 * aspect + 2.4, 4.0))
  mesh = plots._image(ax, field, lats, lons, cmap="viridis")
  fig.colorbar(mesh, ax=ax, fraction=0.03, pad=0.02).set_label(f"{field_name} ({units})")
  plots._coastlines(ax, lats, lons)
  keep = np.asarray(detections["score"]) >= min_score
  ids = [np.asarray(detections["class_id"])[keep]]
  if truth is not None:
    ids.append(np.asarray(truth["class_id"]))
    for c, s, n, w, e in zip(*(np.asarray(truth[k]) for k in
                              ("class_id", "lat_south", "lat_north", "lon_west", "lon_east")),
                             strict=True):  # fmt: skip
      colour = plots.CLASS_COLOURS[int(c) % len(plots.CLASS_COLOURS)]
      _degree_box(ax, s, n, w, e, colour, "-")
  for c, score, s, n, w, e in zip(*(np.asarray(detections[k])[keep] for k in
                                   ("class_id", "score", "lat_min", "lat_max", "lon_min",
                                    "lon_max")), strict=True):  # fmt: skip
    colour = plots.CLASS_COLOURS[int(c) % len(plots.CLASS_COLOURS)]
    _degree_box(ax, s, n, w, e, colour, "--", text=f"{class_names[int(c)]} {score:.2f}")
  _map_axes(ax, lats, lons)
  styles = [("true (planted)", "-"), ("detected", "--")] if truth is not None else []
  _legend_below(ax, _class_handles(np.concatenate(ids), class_names, styles=styles))
  shown = f"{int(keep.sum())} detections with score ≥ {min_score:g}"
  ax.set_title(f"{time}: {shown}" if time else shown, fontsize=9)
  fig.tight_layout()
  return plots._save(fig, out_png)


def plot_tracks(tracks, out_png: PathLike, *, title: str = "") -> str:
  """Every track of a tracks.nc (climjax.evaluation.events.read_tracks) on a map, by class."""
  dets = tracks.detections
  lats, lons = dets.lats, dets.lons
  class_names = dets.class_names
  aspect = len(lons) / len(lats)
  fig, ax = plt.subplots(figsize=(3.2 * aspect + 1.6, 4.0))
  land = plots._land_fraction(lats, lons)
  if land is not None:
    plots._image(ax, land, lats, lons, cmap="Greys", vmin=0, vmax=2.5)
  plots._coastlines(ax, lats, lons)
  counts = {}
  for tid, c in zip(tracks.trajectory_id, tracks.class_id, strict=True):
    mine = np.flatnonzero(tracks.track_id == tid)
    order = mine[np.argsort(dets.snapshot[mine], kind="stable")]
    lon = np.rad2deg(np.unwrap(np.deg2rad(dets.lon[order])))
    colour = plots.CLASS_COLOURS[int(c) % len(plots.CLASS_COLOURS)]
    if colour == "#ffffff":  # white TDs on a white map: a dark grey instead
      colour = "0.25"
    for shift in (0.0, -360.0, 360.0):
      ax.plot(lon + shift, dets.lat[order], color=colour, lw=1.0, alpha=0.85)
    ax.plot(lon[0], dets.lat[order][0], "o", color=colour, ms=2.5)
    counts[int(c)] = counts.get(int(c), 0) + 1
  _map_axes(ax, lats, lons)
  from matplotlib.lines import Line2D  # noqa: PLC0415

  handles = [Line2D([], [], color="0.25" if plots.CLASS_COLOURS[c] == "#ffffff"
                    else plots.CLASS_COLOURS[c], lw=2, label=f"{class_names[c]} ({counts[c]} tracks)")
             for c in sorted(counts)]  # fmt: skip
  _legend_below(ax, handles)
  ax.set_title(title or "tracks (dots: where each starts)", fontsize=9)
  fig.tight_layout()
  return plots._save(fig, out_png)
