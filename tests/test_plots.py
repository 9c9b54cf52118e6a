"""The figures a run leaves explain themselves: legends, units, dates, held-out curves."""

import json

import numpy as np
import pytest

from climjax import plots


@pytest.fixture
def figures(monkeypatch):
  """The matplotlib figures the plot functions save, kept open for inspection."""
  kept = []

  def keep(fig, out_png):
    kept.append(fig)
    return str(out_png)

  monkeypatch.setattr(plots, "_save", keep)
  return kept


def _texts(fig):
  return [t.get_text() for ax in fig.axes for t in ax.texts] + [
    t.get_text() for ax in fig.axes for legend in [ax.get_legend()] if legend for t in legend.texts
  ]


def test_detection_map_has_a_class_legend_units_date_and_threshold(figures, tmp_path):
  lats, lons = np.linspace(-88.75, 88.75, 72), np.arange(0, 360, 2.5)
  plots.plot_detections(
    np.random.default_rng(0).normal(size=(72, 144)),
    tmp_path / "d.png",
    lats=lats,
    lons=lons,
    true_boxes=[[10, 10, 20, 30], [68, 140, 71, 143]],  # the second touches the north-east corner
    true_labels=[1, 3],
    pred_boxes=[[11, 11, 21, 29], [40, 40, 50, 50]],
    pred_labels=[1, 2],
    pred_scores=[0.9, 0.1],  # the ETC below the threshold is not drawn
    field_name="TMQ",
    units="kg/m2",
    time="1979-01-01T00:00:00",
    min_score=0.3,
  )
  (fig,) = figures
  ax, bar = fig.axes
  legend = [t.get_text() for t in ax.get_legend().texts]
  assert legend == ["TC", "AR", "ground truth", "predicted"]
  assert bar.get_ylabel() == "TMQ (kg/m2)"
  assert ax.get_title().startswith("1979-01-01T00:00:00") and "0.3" in ax.get_title()
  assert ax.get_xlabel() == "longitude (°E)" and ax.get_ylabel() == "latitude (°N)"
  labels = [t for t in ax.texts]
  assert [t.get_text() for t in labels] == ["TC", "AR", "TC 0.90"]
  lat_top = ax.get_ylim()[1]
  assert all(t.get_position()[1] <= lat_top for t in labels)  # labels stay inside the map


def test_reconstruction_says_standardised_with_coastlines_and_time(figures, tmp_path):
  rng = np.random.default_rng(1)
  x = rng.normal(size=(36, 72, 3)).astype(np.float32)
  plots.plot_reconstruction(
    x, 0.5 * x, tmp_path / "r.png", channel_names=["PSL", "TMQ", "U850"],
    lats=np.linspace(-87.5, 87.5, 36), lons=np.arange(0, 360, 5.0), time="1980-06-01",
  )  # fmt: skip
  (fig,) = figures
  assert "standardised" in fig._suptitle.get_text() and "1980-06-01" in fig._suptitle.get_text()
  maps = [ax for ax in fig.axes if ax.get_title()]
  assert len(maps) == 9
  assert all(ax.get_xlabel() == "longitude (°E)" for ax in maps)
  assert all(ax.collections for ax in maps)  # the land-sea contour
  bars = [ax for ax in fig.axes if not ax.get_title()]
  assert {ax.get_ylabel() for ax in bars} == {"standard deviations"}


def test_training_curves_show_held_out_points_and_learning_rate_not_constants(figures, tmp_path):
  metrics = tmp_path / "metrics.jsonl"
  rows = [
    {"step": s, "loss": 1.0 / s, "accuracy": 0.5 + s / 100, "learning_rate": 1e-3 * min(1, s / 20),
     "examples_per_second": 1000.0 + s, "communication_fraction": 0.0, "labelled_examples": 16.0}
    for s in (10, 20, 30, 40)
  ]  # fmt: skip
  rows += [{"step": 20, "test_accuracy": 0.8}, {"step": 40, "test_accuracy": 0.9}]
  metrics.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
  plots.plot_training_curves(metrics, tmp_path / "curves.png")
  (fig,) = figures
  titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
  assert "held-out accuracy" in titles and "learning rate" in titles
  assert "communication" not in titles  # constant: no panel
  assert not any("labelled" in t for t in titles)
  held_out = fig.axes[titles.index("held-out accuracy")]
  assert [t.get_text() for t in held_out.texts] == ["0.900"]  # the final point, labelled
  assert all(ax.get_ylabel() for ax in fig.axes if ax.get_visible())
