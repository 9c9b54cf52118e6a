"""Figures a run leaves in `workdir/plots/`: training curves, maps with boxes, reconstructions.

Everything draws with matplotlib's Agg backend into PNG files, so it works on a
cluster node without a display. Functions take numpy arrays and paths, return
the path written, and import nothing from JAX.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import patches  # noqa: E402

from climjax.data.variables import CLASS_NAMES  # noqa: E402
from climjax.evaluation.detection import pixel_to_degrees  # noqa: E402

PathLike = str | os.PathLike

# One colour per event class (TD, TC, ETC, AR, WF), readable on the viridis fields.
CLASS_COLOURS = ("#ffffff", "#ff2d2d", "#ffb000", "#00e5ff", "#d062ff")


def read_metrics(metrics_jsonl: PathLike, *, x_key: str = "step") -> dict[str, tuple]:
  """Numeric series in a metrics.jsonl: {key: (steps, values)}, sorted by step.

  Lines without `x_key`, blank lines and non-numeric values (strings, lists) are
  skipped, so eval records logged at other steps or with other keys mix freely
  with training records.
  """
  series: dict[str, list[tuple[float, float]]] = {}
  with open(metrics_jsonl) as f:
    for line_number, line in enumerate(f, 1):
      line = line.strip()
      if not line:
        continue
      try:
        record = json.loads(line)
      except json.JSONDecodeError as e:
        raise ValueError(f"{metrics_jsonl}:{line_number}: not a JSON object ({e})") from None
      if not isinstance(record, dict) or x_key not in record:
        continue
      step = record[x_key]
      for key, value in record.items():
        if key == x_key or isinstance(value, bool) or not isinstance(value, int | float):
          continue
        series.setdefault(key, []).append((float(step), float(value)))
  out = {}
  for key, points in series.items():
    points.sort(key=lambda p: p[0])
    steps, values = zip(*points, strict=True)
    out[key] = (np.asarray(steps), np.asarray(values))
  return out


def plot_curves(
  metrics_jsonl: PathLike,
  out_png: PathLike,
  *,
  keys: Sequence[str] | None = None,
  x_key: str = "step",
  title: str | None = None,
) -> str:
  """One panel per numeric key of a metrics.jsonl against `x_key`, into `out_png`.

  `keys` picks and orders the panels (default: every numeric key in the order it
  first appears). A panel whose values are all positive and span more than two
  decades is drawn on a log axis, which is what loss curves usually need.
  """
  series = read_metrics(metrics_jsonl, x_key=x_key)
  if keys is None:
    keys = list(series)
  missing = [k for k in keys if k not in series]
  if missing:
    raise KeyError(f"{metrics_jsonl}: no numeric values for {missing}; it has {sorted(series)}")
  if not keys:
    raise ValueError(f"{metrics_jsonl}: no numeric series with a {x_key!r} field to plot")
  ncols = min(3, len(keys))
  nrows = math.ceil(len(keys) / ncols)
  fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.0 * nrows), squeeze=False)
  for ax, key in zip(axes.flat, keys, strict=False):
    steps, values = series[key]
    finite = np.isfinite(values)
    ax.plot(steps, values, lw=1.2, marker="." if len(steps) < 30 else None)
    _style_panel(ax, values[finite], key, x_key)
  return _finish_panels(fig, axes, len(keys), title, out_png)


def _style_panel(ax, values: np.ndarray, title: str, xlabel: str, ylabel: str = "") -> None:
  """Title, labels and grid of one curve panel; a log axis when the finite positive
  `values` span more than two decades."""
  if values.size and values.min() > 0 and values.max() / values.min() > 100:
    ax.set_yscale("log")
  ax.set_title(title, fontsize=9)
  ax.set_xlabel(xlabel, fontsize=8)
  if ylabel:
    ax.set_ylabel(ylabel, fontsize=8)
  ax.tick_params(labelsize=7)
  ax.grid(alpha=0.3)


def _finish_panels(fig, axes, used: int, title: str | None, out_png: PathLike) -> str:
  for ax in list(axes.flat)[used:]:
    ax.set_visible(False)
  if title:
    fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  return _save(fig, out_png)


# The panels of a run's curves.png: (title, y label, keys drawn together). Keys
# absent from a run or constant over it are left out, and so is a panel with none.
TRAINING_PANELS = (
  ("training loss", "loss (per example)", ("loss", "class", "detection", "reconstruction")),
  ("training accuracy (batch)", "accuracy", ("accuracy",)),
  ("held-out accuracy", "accuracy", ("test_accuracy",)),
  ("held-out mAP", "mAP", ("test_map@0.1", "test_map@0.5")),
  ("held-out loss", "loss", ("test_loss", "test_reconstruction_mse")),
  ("learning rate", "learning rate", ("learning_rate",)),
  ("throughput", "examples / s", ("examples_per_second",)),
  ("gradient norm", "global L2 norm", ("grad_norm",)),
  ("communication", "fraction of the step", ("communication_fraction",)),
)


def plot_training_curves(
  metrics_jsonl: PathLike, out_png: PathLike, *, title: str | None = None
) -> str:
  """A run's curves.png: training loss, held-out metrics, learning rate and throughput.

  Held-out series (`test_*`, logged every `train.eval_every` steps and once at
  the end) are drawn with markers and their last point labelled; series that
  never change (e.g. the communication of a one-process run) get no panel.
  """
  series = read_metrics(metrics_jsonl)
  panels = []
  for name, ylabel, keys in TRAINING_PANELS:
    shown = [k for k in keys if k in series and _varies(series[k][1])]
    if shown:
      panels.append((name, ylabel, shown))
  if not panels:
    raise ValueError(f"{metrics_jsonl}: no training series to plot; it has {sorted(series)}")
  ncols = min(3, len(panels))
  nrows = math.ceil(len(panels) / ncols)
  fig, axes = plt.subplots(nrows, ncols, figsize=(4.4 * ncols, 3.1 * nrows), squeeze=False)
  for ax, (name, ylabel, keys) in zip(axes.flat, panels, strict=False):
    held_out = name.startswith("held-out")
    for key in keys:
      steps, values = series[key]
      ax.plot(steps, values, lw=1.2, marker="o" if held_out or len(steps) < 30 else None,
              ms=3, label=key)  # fmt: skip
      if held_out and len(values):
        ax.annotate(f"{values[-1]:.3f}", (steps[-1], values[-1]), fontsize=7,
                    xytext=(-4, 4), textcoords="offset points", ha="right")  # fmt: skip
    values = np.concatenate([series[k][1] for k in keys])
    _style_panel(ax, values[np.isfinite(values)], name, "step", ylabel)
    if len(keys) > 1:
      ax.legend(fontsize=7)
  return _finish_panels(fig, axes, len(panels), title, out_png)


def _varies(values: np.ndarray) -> bool:
  finite = values[np.isfinite(values)]
  return finite.size > 0 and (finite.size == 1 or float(np.ptp(finite)) > 0)


def _save(fig, out_png: PathLike) -> str:
  out_png = os.fspath(out_png)
  os.makedirs(os.path.dirname(os.path.abspath(out_png)), exist_ok=True)
  fig.savefig(out_png, dpi=110)
  plt.close(fig)
  return out_png


def _edges(centres: np.ndarray) -> np.ndarray:
  """Cell edges of a 1-D coordinate of regularly spaced cell centres."""
  centres = np.asarray(centres, dtype=np.float64)
  if centres.size == 1:
    return np.array([centres[0] - 0.5, centres[0] + 0.5])
  mid = 0.5 * (centres[1:] + centres[:-1])
  return np.concatenate([[2 * centres[0] - mid[0]], mid, [2 * centres[-1] - mid[-1]]])


def _image(ax, field, lats, lons, **kwargs):
  # imshow draws a regular grid several times faster than pcolormesh; rows are
  # latitude ascending, so the origin is at the bottom.
  lat_edges, lon_edges = _edges(lats), _edges(lons)
  return ax.imshow(
    field,
    origin="lower",
    extent=(lon_edges[0], lon_edges[-1], lat_edges[0], lat_edges[-1]),
    aspect="auto",
    interpolation="nearest",
    **kwargs,
  )


def _land_fraction(lats: np.ndarray, lons: np.ndarray) -> np.ndarray | None:
  """The land fraction on this grid, or None when climjax has no land-sea mask yet."""
  try:
    from climjax.data import landsea
  except ImportError:
    return None
  fn = getattr(landsea, "land_fraction", None)
  if fn is None:
    return None
  return np.asarray(fn(np.asarray(lats), np.asarray(lons)), dtype=np.float32)


def _draw_boxes(ax, boxes, labels, lats, lons, *, linestyle, scores=None, class_names=CLASS_NAMES):
  boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
  labels = np.asarray(labels).reshape(-1)
  lon_lo, lon_hi = _edges(lons)[[0, -1]]
  lat_lo, lat_hi = _edges(lats)[[0, -1]]
  for i, (box, label) in enumerate(zip(boxes, labels, strict=True)):
    (lat0, lat1), (lon0, lon1) = pixel_to_degrees(box[[0, 2]], box[[1, 3]], lats, lons)
    colour = CLASS_COLOURS[int(label) % len(CLASS_COLOURS)]
    ax.add_patch(
      patches.Rectangle(
        (lon0, lat0),
        lon1 - lon0,
        lat1 - lat0,
        fill=False,
        edgecolor=colour,
        lw=1.3,
        linestyle=linestyle,
      )
    )
    name = class_names[int(label)] if 0 <= int(label) < len(class_names) else str(int(label))
    text = name if scores is None else f"{name} {float(scores[i]):.2f}"
    # Above the box's top-left corner, or just inside it where that would leave the map.
    top = lat1 + 0.04 * (lat_hi - lat_lo) > lat_hi
    ax.text(
      min(max(lon0, lon_lo), lon_hi), min(lat1, lat_hi), text, color=colour, fontsize=6,
      va="top" if top else "bottom", ha="left", clip_on=True,
    )  # fmt: skip


def _class_legend(ax, labels, class_names, *, with_styles: bool) -> None:
  """One entry per class present (its colour), and what solid and dashed mean."""
  from matplotlib import patheffects
  from matplotlib.lines import Line2D

  outline = [patheffects.withStroke(linewidth=3.6, foreground="0.2")]  # white TD shows
  present = sorted(
    {int(v) for v in np.concatenate([np.ravel(x) for x in labels])} if labels else ()
  )
  handles = [
    Line2D([], [], color=CLASS_COLOURS[c % len(CLASS_COLOURS)], lw=2, path_effects=outline,
           label=class_names[c] if 0 <= c < len(class_names) else str(c))
    for c in present
  ]  # fmt: skip
  if with_styles:
    handles += [
      Line2D([], [], color="0.4", lw=1.3, ls="-", label="ground truth"),
      Line2D([], [], color="0.4", lw=1.3, ls="--", label="predicted"),
    ]
  if handles:
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.12, 1.0), fontsize=7,
              frameon=False, borderaxespad=0.0)  # fmt: skip


def _coastlines(ax, lats, lons) -> None:
  land = _land_fraction(lats, lons)
  if land is not None and np.nanmin(land) < 0.5 < np.nanmax(land):
    ax.contour(lons, lats, land, levels=[0.5], colors="k", linewidths=0.6)


def plot_detections(
  field: np.ndarray,
  out_png: PathLike,
  *,
  lats: np.ndarray,
  lons: np.ndarray,
  true_boxes: np.ndarray,
  true_labels: np.ndarray,
  pred_boxes: np.ndarray,
  pred_labels: np.ndarray,
  pred_scores: np.ndarray | None = None,
  field_name: str = "",
  units: str = "",
  time: str = "",
  min_score: float = 0.0,
  title: str | None = None,
  class_names: Sequence[str] = CLASS_NAMES,
) -> str:
  """A (lat, lon) field on a map with true boxes (solid) and predicted boxes (dashed).

  Boxes are pixel (ymin, xmin, ymax, xmax) on the field's grid; they are placed
  in degrees through `lats` / `lons` (`evaluation.detection.pixel_to_degrees`;
  latitude ascending, so north is up). Predictions scoring below `min_score`
  are not drawn. Coastlines are the 0.5 contour of the land fraction of
  `climjax.data.landsea` (no map data is downloaded). The colour bar carries
  `field_name` and `units`; the title the snapshot's `time`.
  """
  field = np.asarray(field, dtype=np.float32)
  if field.ndim != 2 or field.shape != (len(lats), len(lons)):
    raise ValueError(
      f"plot_detections: field must be (lat, lon) = {(len(lats), len(lons))}, got {field.shape}"
    )
  pred_boxes = np.asarray(pred_boxes, dtype=np.float64).reshape(-1, 4)
  pred_labels = np.asarray(pred_labels).reshape(-1)
  if pred_scores is not None:
    pred_scores = np.asarray(pred_scores, dtype=np.float64).reshape(-1)
    keep = pred_scores >= min_score
    pred_boxes, pred_labels, pred_scores = pred_boxes[keep], pred_labels[keep], pred_scores[keep]
  aspect = len(lons) / max(len(lats), 1)
  fig, ax = plt.subplots(figsize=(min(13.0, 3.2 * aspect + 2.6), 3.6))
  mesh = _image(ax, field, lats, lons, cmap="viridis")
  label = f"{field_name} ({units})" if units else field_name
  fig.colorbar(mesh, ax=ax, fraction=0.03, pad=0.02, label=label)
  _coastlines(ax, lats, lons)
  _draw_boxes(ax, true_boxes, true_labels, lats, lons, linestyle="-", class_names=class_names)
  _draw_boxes(
    ax,
    pred_boxes,
    pred_labels,
    lats,
    lons,
    linestyle="--",
    scores=pred_scores,
    class_names=class_names,
  )
  _class_legend(ax, [np.ravel(true_labels), pred_labels], class_names, with_styles=True)
  ax.set_xlim(_edges(lons)[[0, -1]])
  ax.set_ylim(_edges(lats)[[0, -1]])
  ax.set_xlabel("longitude (°E)")
  ax.set_ylabel("latitude (°N)")
  if title is None:
    title = "solid: ground truth, dashed: predicted"
    if pred_scores is not None and min_score > 0:
      title += f" (score ≥ {min_score:g})"
  if time:
    title = f"{time}: {title}"
  ax.set_title(title, fontsize=9)
  fig.tight_layout()
  return _save(fig, out_png)


def plot_reconstruction(
  inputs: np.ndarray,
  reconstruction: np.ndarray,
  out_png: PathLike,
  *,
  channel_names: Sequence[str],
  channels: Sequence[int] | None = None,
  lats: np.ndarray | None = None,
  lons: np.ndarray | None = None,
  time: str = "",
) -> str:
  """Input, reconstruction and their difference, one row per chosen channel.

  `inputs` and `reconstruction` are (lat, lon, channel) in the units the
  network sees: each channel standardised (minus its training mean, over its
  standard deviation), so the colour bars are in standard deviations. Input and
  reconstruction share a colour scale so a washed-out reconstruction shows.
  """
  inputs = np.asarray(inputs, dtype=np.float32)
  reconstruction = np.asarray(reconstruction, dtype=np.float32)
  if inputs.shape != reconstruction.shape or inputs.ndim != 3:
    raise ValueError(
      f"plot_reconstruction: inputs {inputs.shape} and reconstruction "
      f"{reconstruction.shape} must be the same (lat, lon, channel) shape"
    )
  if len(channel_names) != inputs.shape[-1]:
    raise ValueError(
      f"plot_reconstruction: {len(channel_names)} channel names for {inputs.shape[-1]} channels"
    )
  channels = list(range(min(4, inputs.shape[-1]))) if channels is None else list(channels)
  on_map = lats is not None and lons is not None
  lats = np.arange(inputs.shape[0]) if lats is None else np.asarray(lats)
  lons = np.arange(inputs.shape[1]) if lons is None else np.asarray(lons)
  aspect = inputs.shape[1] / inputs.shape[0]
  fig, axes = plt.subplots(
    len(channels), 3, figsize=(3 * 2.3 * aspect + 1.6, 2.4 * len(channels) + 0.5), squeeze=False
  )
  for row, c in zip(axes, channels, strict=True):
    x, r = inputs[..., c], reconstruction[..., c]
    lo, hi = float(np.nanmin(x)), float(np.nanmax(x))
    err = r - x
    vmax = float(np.nanmax(np.abs(err))) or 1.0
    panels = [
      (x, "viridis", lo, hi, "input"),
      (r, "viridis", lo, hi, "reconstruction"),
      (err, "RdBu_r", -vmax, vmax, "reconstruction - input"),
    ]
    for ax, (data, cmap, vmin, vmax_, label) in zip(row, panels, strict=True):
      mesh = _image(ax, data, lats, lons, cmap=cmap, vmin=vmin, vmax=vmax_)
      bar = fig.colorbar(mesh, ax=ax, fraction=0.04, pad=0.02)
      bar.set_label("standard deviations", fontsize=6)
      bar.ax.tick_params(labelsize=6)
      if on_map:
        _coastlines(ax, lats, lons)
        ax.set_xlabel("longitude (°E)", fontsize=7)
        ax.set_ylabel("latitude (°N)", fontsize=7)
      else:
        ax.set_xlabel("grid column", fontsize=7)
        ax.set_ylabel("grid row", fontsize=7)
      ax.set_title(f"{channel_names[c]}: {label}", fontsize=8)
      ax.tick_params(labelsize=6)
  heading = "standardised fields (per channel: minus the training mean, over its std)"
  fig.suptitle(f"{time}: {heading}" if time else heading, fontsize=9)
  fig.tight_layout()
  return _save(fig, out_png)


def plot_embedding_map(
  xy: np.ndarray,
  labels: np.ndarray,
  out_png: PathLike,
  *,
  withheld: int,
  title: str = "",
  class_names: Sequence[str] = CLASS_NAMES,
) -> str:
  """A 2-D map of cell embeddings (t-SNE), a colour per true class, the withheld one on top.

  `labels`: the class of each point, -1 for background cells.
  """
  xy, labels = np.asarray(xy, dtype=np.float64), np.asarray(labels)
  fig, ax = plt.subplots(figsize=(6.4, 5.4))
  palette = {-1: "0.75", 0: "#1f77b4", 1: "#d62728", 2: "#2ca02c", 3: "#9467bd"}
  order = [c for c in sorted(set(labels.tolist())) if c != withheld] + [withheld]
  for c in order:
    pick = labels == c
    if not pick.any():
      continue
    name = "background" if c < 0 else class_names[c]
    is_withheld = c == withheld
    ax.scatter(
      xy[pick, 0], xy[pick, 1], s=14 if is_withheld else 5,
      c=palette.get(int(c), "k"), edgecolors="k" if is_withheld else "none",
      linewidths=0.4, alpha=1.0 if is_withheld else 0.6, zorder=3 if is_withheld else 2,
      label=f"{name} (withheld: no labels in training)" if is_withheld else name,
    )  # fmt: skip
  ax.set_xticks([])
  ax.set_yticks([])
  ax.set_xlabel("t-SNE 1")
  ax.set_ylabel("t-SNE 2")
  ax.legend(fontsize=7, markerscale=2, loc="best")
  ax.set_title(title, fontsize=9)
  fig.tight_layout()
  return _save(fig, out_png)


def plot_discovered_cells(
  fields: Sequence[np.ndarray],
  cells: Sequence[np.ndarray],
  truth: Sequence[np.ndarray],
  out_png: PathLike,
  *,
  lats: np.ndarray,
  lons: np.ndarray,
  withheld_name: str,
  field_name: str = "",
  units: str = "",
  times: Sequence[str] = (),
  title: str = "",
) -> str:
  """Held-out fields, a row each: the truth (cells of the withheld class) beside the
  cells the discovered cluster holds, both over the field with coastlines.

  `cells`, `truth`: (gh, gw) booleans on the detector's grid of cells.
  """
  rows = len(fields)
  aspect = len(lons) / max(len(lats), 1)
  fig, axes = plt.subplots(rows, 2, figsize=(2 * (2.6 * aspect + 0.6), 2.7 * rows), squeeze=False)
  lat_edges, lon_edges = _edges(lats), _edges(lons)
  extent = (lon_edges[0], lon_edges[-1], lat_edges[0], lat_edges[-1])
  for r in range(rows):
    field = np.asarray(fields[r], dtype=np.float32)
    vmin, vmax = np.percentile(field, [1, 99])
    for col, (mask, what) in enumerate(((truth[r], f"true {withheld_name} cells"),
                                        (cells[r], "cells of the discovered cluster"))):  # fmt: skip
      ax = axes[r, col]
      mesh = _image(ax, field, lats, lons, cmap="Greys_r", vmin=vmin, vmax=vmax)
      overlay = np.ma.masked_where(~np.asarray(mask, bool), np.ones(np.shape(mask)))
      ax.imshow(overlay, origin="lower", extent=extent, aspect="auto", cmap="autumn",
                alpha=0.55, interpolation="nearest", vmin=0, vmax=1)  # fmt: skip
      _coastlines(ax, lats, lons)
      when = f", {times[r]}" if r < len(times) else ""
      ax.set_title(f"{what}{when}", fontsize=8)
      if r == rows - 1:
        ax.set_xlabel("longitude (°E)", fontsize=7)
      if col == 0:
        ax.set_ylabel("latitude (°N)", fontsize=7)
      ax.tick_params(labelsize=6)
    fig.colorbar(mesh, ax=axes[r].tolist(), fraction=0.02, pad=0.01,
                 label=f"{field_name} ({units})" if units else field_name)  # fmt: skip
  fig.subplots_adjust(hspace=0.3)
  if title:
    fig.suptitle(title, fontsize=9)
  return _save(fig, out_png)
