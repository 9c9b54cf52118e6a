"""Detection evaluation against hand-computed cases; predictions.nc; plots."""

import json
import math

import numpy as np
import pytest
import xarray as xr

from climjax import plots
from climjax.evaluation import detection as det


def _d(boxes, scores, labels):
  return {
    "boxes": np.asarray(boxes, np.float32).reshape(-1, 4),
    "scores": np.asarray(scores, np.float32),
    "labels": np.asarray(labels, np.int32),
  }


def _g(boxes, labels):
  return {"boxes": np.asarray(boxes, np.float32).reshape(-1, 4), "labels": np.asarray(labels)}


NONE = _d(np.zeros((0, 4)), [], [])
BOX = [0, 0, 10, 10]


def ap(dets, gts, iou=0.5, num_classes=4):
  return det.average_precision(dets, gts, iou_threshold=iou, num_classes=num_classes)


def racah(dets, gts, iou=0.5, num_classes=4):
  return det.average_precision_racah2017(dets, gts, iou_threshold=iou, num_classes=num_classes)


def test_iou_matrix():
  iou = det.iou_matrix([BOX, [0, 0, 0, 0]], [[0, 5, 10, 15], BOX])
  np.testing.assert_allclose(iou, [[50 / 150, 1.0], [0.0, 0.0]])


def test_no_detections_gives_zero_and_no_ground_truth_gives_nan():
  result = ap([NONE], [_g([BOX, [20, 20, 30, 30]], [0, 0])])
  assert result[0] == 0.0
  assert all(math.isnan(result[c]) for c in (1, 2, 3))
  assert det.mean_average_precision(result) == 0.0


def test_no_ground_truth_at_all_is_nan_even_with_detections():
  result = ap([_d([BOX], [0.9], [1])], [_g(np.zeros((0, 4)), [])])
  assert all(math.isnan(v) for v in result.values())
  assert math.isnan(det.mean_average_precision(result))


def test_duplicates_are_false_positives_and_missed_ground_truth_counts():
  gts = [_g([BOX], [2])]
  dups = [_d([BOX, BOX], [0.9, 0.8], [2, 2])]
  # TP then FP: precision (1, 1/2) at recall (1, 1): AP 1.
  assert ap(dups, gts)[2] == pytest.approx(1.0)
  # A second, missed ground-truth box: recall stops at 1/2, AP 1/2.
  gts = [_g([BOX, [20, 20, 30, 30]], [2, 2])]
  assert ap(dups, gts)[2] == pytest.approx(0.5)
  # The original paper's variant ignores the missed box.
  assert racah(dups, gts)[2] == pytest.approx(1.0)


def test_ties_are_broken_by_input_order():
  gts = [_g(np.zeros((0, 4)), []), _g([BOX], [0])]
  dets = [_d([BOX], [0.5], [0]), _d([BOX], [0.5], [0])]
  # Image 0's false positive ranks first: precision (0, 1/2) at recall (0, 1).
  assert ap(dets, gts)[0] == pytest.approx(0.5)
  # The same detections with the images swapped: true positive first.
  assert ap(dets[::-1], gts[::-1])[0] == pytest.approx(1.0)


def test_iou_thresholds_inclusive():
  gts = [_g([BOX], [1])]
  half = [_d([[0, 0, 10, 5]], [0.9], [1])]  # IoU exactly 0.5
  third = [_d([[0, 0, 10, 3]], [0.9], [1])]  # IoU 0.3
  assert ap(half, gts, 0.5)[1] == 1.0
  assert ap(third, gts, 0.5)[1] == 0.0
  assert ap(third, gts, 0.1)[1] == 1.0


def test_multiple_images_and_classes():
  gts = [_g([BOX, [20, 20, 30, 30]], [1, 1]), _g([BOX], [1])]
  dets = [
    _d([BOX, [50, 50, 60, 60]], [0.9, 0.7], [1, 1]),
    _d([[1, 1, 10, 10], BOX], [0.8, 0.95], [1, 2]),
  ]
  # Class 1 ranked: TP (0.9), TP (0.8, IoU 0.81), FP (0.7); 3 GT.
  # Recall (1/3, 2/3, 2/3), precision (1, 1, 2/3): AP 2/3.
  result = ap(dets, gts, 0.5)
  assert result[1] == pytest.approx(2 / 3)
  assert math.isnan(result[2])  # detections but no ground truth
  assert det.mean_average_precision(result) == pytest.approx(2 / 3)
  assert racah(dets, gts, 0.5)[1] == pytest.approx(1.0)


def test_a_taken_best_match_makes_a_false_positive_even_at_low_iou():
  # As in the VOC devkit: the second detection's best match (A) is taken, so it
  # is a false positive although it overlaps B with IoU 0.43 > 0.1.
  gts = [_g([BOX, [0, 5, 10, 15]], [3, 3])]
  dets = [_d([BOX, [0, 1, 10, 11]], [0.9, 0.8], [3, 3])]
  assert ap(dets, gts, 0.1)[3] == pytest.approx(0.5)


def test_nms_per_class_and_stable():
  d = _d(
    [BOX, [0, 1, 10, 11], [0, 1, 10, 11], [30, 30, 40, 40]],
    [0.9, 0.8, 0.7, 0.8],
    [1, 1, 2, 1],
  )
  kept = det.per_class_nms(d, iou_threshold=0.5)
  # The class-1 box overlapping the 0.9 box (IoU 0.82) goes; class 2 is kept.
  np.testing.assert_allclose(kept["scores"], [0.9, 0.8, 0.7])
  np.testing.assert_array_equal(kept["labels"], [1, 1, 2])
  np.testing.assert_allclose(kept["boxes"][1], [30, 30, 40, 40])
  np.testing.assert_array_equal(det.nms(np.array([BOX, BOX]), [0.5, 0.5], iou_threshold=0.5), [0])


def test_decode_inverts_the_loss_targets():
  import jax.numpy as jnp

  from climjax import losses

  boxes = np.array([[[4.0, 12.0, 20.0, 28.0], [40.0, 0.0, 47.0, 30.0]]])
  classes = np.array([[3, 1]])
  targets = losses.assign_boxes_to_cells(
    boxes=jnp.asarray(boxes),
    box_classes=jnp.asarray(classes),
    box_mask=jnp.ones((1, 2)),
    grid_shape=(6, 4),
    cell_size=8,
    anchor_size=8,
  )
  obj = np.asarray(targets["object"])
  outputs = {
    "objectness": np.stack([-5 * obj, 5 * obj], -1),
    "classes": 10.0 * np.eye(4)[np.asarray(targets["classes"])],
    "boxes": np.asarray(targets["boxes"]),
  }
  found = det.postprocess(
    outputs, cell_size=8, anchor_size=8, score_threshold=0.5, nms_iou_threshold=0.5
  )
  assert len(found) == 1
  order = np.argsort(found[0]["boxes"][:, 0])
  np.testing.assert_allclose(found[0]["boxes"][order], boxes[0], atol=1e-4)
  np.testing.assert_array_equal(found[0]["labels"][order], [3, 1])
  assert (found[0]["scores"] > 0.99).all()


def test_ap_tables(tmp_path):
  csv_path, md_path = det.write_ap_tables(
    {"ap@0.5": {0: 0.5, 1: 1.0, 2: math.nan, 3: 0.0}}, tmp_path / "eval"
  )
  lines = open(csv_path).read().splitlines()
  assert lines[0] == "metric,TD,TC,ETC,AR,mAP"
  assert lines[1] == "ap@0.5,0.5000,1.0000,nan,0.0000,0.5000"
  assert "| ap@0.5 | 0.500 | 1.000 | – | 0.000 | 0.500 |" in open(md_path).read()


def test_predictions_netcdf_roundtrip(tmp_path):
  lats = np.linspace(-89.5, 89.5, 180)  # 1 degree grid, ascending
  lons = np.arange(0.0, 360.0, 1.0)
  dets = [_d([[90, 10, 100, 30], [0, 0, 1, 1]], [0.4, 0.9], [1, 3]), NONE]
  times = np.array(["2000-01-01T00", "2000-01-01T06"], dtype="datetime64[ns]")
  path = det.write_predictions(tmp_path / "predictions.nc", dets, times=times, lats=lats, lons=lons)
  with xr.open_dataset(path) as ds:
    assert ds["class"].dims == ("time", "box")
    assert ds.sizes == {"time": 2, "box": 2}
    np.testing.assert_array_equal(ds["class"].values, [[3, 1], [-1, -1]])
    np.testing.assert_allclose(ds["score"].values[0], [0.9, 0.4])
    assert np.isnan(ds["score"].values[1]).all()
    # Pixel rows 90..99 cover latitudes 0..10; columns 10..29 longitudes 9.5..29.5.
    np.testing.assert_allclose(ds["lat_min"].values[0, 1], 0.0, atol=1e-5)
    np.testing.assert_allclose(ds["lat_max"].values[0, 1], 10.0, atol=1e-5)
    np.testing.assert_allclose(ds["lon_min"].values[0, 1], 9.5, atol=1e-5)
    np.testing.assert_allclose(ds["lon_max"].values[0, 1], 29.5, atol=1e-5)
    np.testing.assert_allclose(ds["lat_min"].values[0, 0], -90.0, atol=1e-5)
    assert ds["time"].values[1] == times[1]


def test_plots(tmp_path):
  metrics = tmp_path / "metrics.jsonl"
  with open(metrics, "w") as f:
    for step in (1, 2, 3):
      f.write(json.dumps({"step": step, "loss": 10.0 / step**3, "note": "x"}) + "\n")
    f.write(json.dumps({"step": 3, "eval_map": 0.4}) + "\n")
  series = plots.read_metrics(metrics)
  assert sorted(series) == ["eval_map", "loss"]
  out = plots.plot_curves(metrics, tmp_path / "plots" / "curves.png")
  assert open(out, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
  with pytest.raises(KeyError, match="missing_key"):
    plots.plot_curves(metrics, tmp_path / "x.png", keys=["missing_key"])

  lats, lons = np.linspace(-60, 60, 24), np.linspace(0, 357, 48)
  field = np.random.default_rng(0).normal(size=(24, 48)).astype(np.float32)
  out = plots.plot_detections(
    field,
    tmp_path / "map.png",
    lats=lats,
    lons=lons,
    true_boxes=[[2, 3, 10, 12]],
    true_labels=[1],
    pred_boxes=[[3, 3, 11, 13]],
    pred_labels=[1],
    pred_scores=[0.8],
  )
  assert open(out, "rb").read(4) == b"\x89PNG"
  x = np.stack([field, -field], -1)
  out = plots.plot_reconstruction(x, 0.5 * x, tmp_path / "rec.png", channel_names=["PSL", "TMQ"])
  assert open(out, "rb").read(4) == b"\x89PNG"
