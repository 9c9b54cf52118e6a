"""Detector evaluation: box decoding, per-class NMS, average precision, predictions.nc.

Everything here is numpy on host arrays: it runs after the jitted forward pass.

Box coordinates are continuous pixel coordinates (ymin, xmin, ymax, xmax), y on
the latitude axis; pixel i covers [i, i + 1), so a box's area is
(ymax - ymin) * (xmax - xmin) with no "+1" (unlike the VOC devkit's integer
boxes).

Average precision (`average_precision`) is the standard VOC all-point
interpolated AP, per class, computed over all images together:

1. The class's detections from every image are sorted by descending score. The
   sort is stable over the order they were given in (image by image, and within
   an image in list order), so tied scores are taken in that order.
2. In that order each detection is compared with the ground-truth boxes of its
   class in its image. As in the VOC devkit it is matched to the one with the
   highest IoU (the first such box on an IoU tie); if that IoU >= iou_threshold
   and the box is not yet taken it is a true positive and takes the box,
   otherwise (IoU too low, or the box already taken: a duplicate) it is a false
   positive. The threshold is inclusive: IoU exactly 0.5 counts at 0.5.
3. precision = TP / (TP + FP) and recall = TP / (number of ground-truth boxes
   of the class), so missed ground truth lowers recall. AP is the area under
   the precision-recall curve after making precision monotone (the maximum
   precision at any higher recall), summed wherever recall changes.

A class with no ground-truth box in any image has an undefined AP: NaN, even
if it has detections. `mean_average_precision` is the mean over classes that
are not NaN (NaN when all are).

`average_precision_racah2017` reproduces the evaluation of the original
ExtremeWeather code as docs/DESIGN.md describes it, for comparison only: it is run on
detections without NMS and ignores missed ground truth (recall is taken
relative to the ground-truth boxes that some detection found), which inflates
AP. Report it beside the standard AP, labelled as such, never instead of it.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence

import numpy as np

from climjax.data.variables import CLASS_NAMES

Detections = dict[str, np.ndarray]  # {"boxes": (n, 4), "scores": (n,), "labels": (n,)}
GroundTruth = dict[str, np.ndarray]  # {"boxes": (m, 4), "labels": (m,)}


# ---------------------------------------------------------------------------
# Decoding the detector's grid outputs.


def _softmax(x: np.ndarray) -> np.ndarray:
  x = x - np.max(x, axis=-1, keepdims=True)
  e = np.exp(x)
  return e / np.sum(e, axis=-1, keepdims=True)


def decode_boxes(box_outputs: np.ndarray, *, cell_size: float, anchor_size: float) -> np.ndarray:
  """(..., gh, gw, 4) raw (dy, dx, log_h, log_w) -> (..., gh, gw, 4) pixel boxes.

  The inverse of `climjax.losses.assign_boxes_to_cells`: the centre is the cell's
  corner plus the offset (clipped into the cell, where the target always lies),
  the size anchor_size * exp(log size) (log size clipped to +-8 so an untrained
  network cannot overflow).
  """
  box_outputs = np.asarray(box_outputs, dtype=np.float64)
  gh, gw = box_outputs.shape[-3:-1]
  iy = np.arange(gh, dtype=np.float64)[:, None]
  ix = np.arange(gw, dtype=np.float64)[None, :]
  cy = (iy + np.clip(box_outputs[..., 0], 0.0, 1.0)) * cell_size
  cx = (ix + np.clip(box_outputs[..., 1], 0.0, 1.0)) * cell_size
  h = anchor_size * np.exp(np.clip(box_outputs[..., 2], -8.0, 8.0))
  w = anchor_size * np.exp(np.clip(box_outputs[..., 3], -8.0, 8.0))
  return np.stack([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2], axis=-1)


def decode_predictions(
  outputs: Mapping[str, np.ndarray],
  *,
  cell_size: float,
  anchor_size: float,
  score_threshold: float = 0.0,
  image_shape: tuple[int, int] | None = None,
) -> list[Detections]:
  """Every cell's box whose score >= score_threshold, per image, without NMS.

  `outputs` holds the detector's objectness (..., gh, gw, 2), classes
  (..., gh, gw, K) and boxes (..., gh, gw, 4); leading axes (batch, and time
  for the 3-D "keep" network) are flattened into the list of images. A cell's
  label is its most likely class and its score P(object) * P(label | object).
  With `image_shape` (H, W) boxes are clipped to the image.
  """
  objectness = np.asarray(outputs["objectness"], dtype=np.float64)
  gh, gw = objectness.shape[-3:-1]
  p_object = _softmax(objectness.reshape(-1, gh * gw, 2))[..., 1]
  class_logits = np.asarray(outputs["classes"], np.float64)
  p_class = _softmax(class_logits.reshape(-1, gh * gw, class_logits.shape[-1]))
  labels = np.argmax(p_class, axis=-1)
  scores = p_object * np.take_along_axis(p_class, labels[..., None], axis=-1)[..., 0]
  boxes = decode_boxes(
    np.asarray(outputs["boxes"]).reshape(-1, gh, gw, 4),
    cell_size=cell_size,
    anchor_size=anchor_size,
  ).reshape(-1, gh * gw, 4)
  if image_shape is not None:
    h, w = image_shape
    boxes = np.clip(boxes, 0.0, np.array([h, w, h, w], dtype=np.float64))
  detections = []
  for b, s, lab in zip(boxes, scores, labels, strict=True):
    keep = s >= score_threshold
    detections.append(
      {
        "boxes": b[keep].astype(np.float32),
        "scores": s[keep].astype(np.float32),
        "labels": lab[keep].astype(np.int32),
      }
    )
  return detections


# ---------------------------------------------------------------------------
# IoU and non-maximum suppression.


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """(n, m) intersection over union of boxes a (n, 4) and b (m, 4); 0 for empty unions."""
  a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
  b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
  top = np.maximum(a[:, None, 0], b[None, :, 0])
  left = np.maximum(a[:, None, 1], b[None, :, 1])
  bottom = np.minimum(a[:, None, 2], b[None, :, 2])
  right = np.minimum(a[:, None, 3], b[None, :, 3])
  inter = np.clip(bottom - top, 0, None) * np.clip(right - left, 0, None)
  area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
  area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
  union = area_a[:, None] + area_b[None, :] - inter
  return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, *, iou_threshold: float) -> np.ndarray:
  """Greedy non-maximum suppression: indices kept, by descending score.

  A box is dropped when its IoU with a kept, higher-ranked box is > iou_threshold.
  Tied scores keep their input order (stable sort).
  """
  scores = np.asarray(scores)
  order = np.argsort(-scores, kind="stable")
  ious = iou_matrix(boxes, boxes)
  suppressed = np.zeros(len(order), dtype=bool)
  keep = []
  for rank, i in enumerate(order):
    if suppressed[rank]:
      continue
    keep.append(i)
    suppressed[rank + 1 :] |= ious[i, order[rank + 1 :]] > iou_threshold
  return np.asarray(keep, dtype=np.int64)


def per_class_nms(
  detections: Detections, *, iou_threshold: float, max_detections: int | None = None
) -> Detections:
  """NMS within each class; the survivors of all classes by descending score."""
  boxes = np.asarray(detections["boxes"]).reshape(-1, 4)
  scores = np.asarray(detections["scores"]).reshape(-1)
  labels = np.asarray(detections["labels"]).reshape(-1)
  keep = []
  for c in np.unique(labels):
    idx = np.flatnonzero(labels == c)
    keep.append(idx[nms(boxes[idx], scores[idx], iou_threshold=iou_threshold)])
  keep = np.concatenate(keep) if keep else np.zeros((0,), np.int64)
  keep = keep[np.argsort(-scores[keep], kind="stable")]
  if max_detections is not None:
    keep = keep[:max_detections]
  return {"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]}


def postprocess(
  outputs: Mapping[str, np.ndarray],
  *,
  cell_size: float,
  anchor_size: float,
  score_threshold: float,
  nms_iou_threshold: float,
  max_detections: int | None = None,
  image_shape: tuple[int, int] | None = None,
) -> list[Detections]:
  """decode_predictions -> score threshold -> per-class NMS, per image."""
  raw = decode_predictions(
    outputs,
    cell_size=cell_size,
    anchor_size=anchor_size,
    score_threshold=score_threshold,
    image_shape=image_shape,
  )
  return [
    per_class_nms(d, iou_threshold=nms_iou_threshold, max_detections=max_detections) for d in raw
  ]


# ---------------------------------------------------------------------------
# Average precision.


def _match_class(detections, ground_truth, c: int, iou_threshold: float):
  """(scores, is_true_positive, number of GT) for class c, detections in ranked order."""
  if len(detections) != len(ground_truth):
    raise ValueError(
      f"average precision: {len(detections)} images of detections but "
      f"{len(ground_truth)} of ground truth"
    )
  det_image, det_index, det_scores = [], [], []
  gt_boxes = []
  for i, (d, g) in enumerate(zip(detections, ground_truth, strict=True)):
    labels = np.asarray(d["labels"]).reshape(-1)
    idx = np.flatnonzero(labels == c)
    det_image.append(np.full(len(idx), i))
    det_index.append(idx)
    det_scores.append(np.asarray(d["scores"], np.float64).reshape(-1)[idx])
    gt_labels = np.asarray(g["labels"]).reshape(-1)
    gt_boxes.append(np.asarray(g["boxes"], np.float64).reshape(-1, 4)[gt_labels == c])
  det_image = np.concatenate(det_image).astype(np.int64)
  det_index = np.concatenate(det_index).astype(np.int64)
  det_scores = np.concatenate(det_scores)
  num_gt = sum(len(b) for b in gt_boxes)

  order = np.argsort(-det_scores, kind="stable")
  taken = [np.zeros(len(b), dtype=bool) for b in gt_boxes]
  is_tp = np.zeros(len(order), dtype=bool)
  for rank, k in enumerate(order):
    i = det_image[k]
    if not len(gt_boxes[i]):
      continue
    box = np.asarray(detections[i]["boxes"], np.float64).reshape(-1, 4)[det_index[k]]
    ious = iou_matrix(box[None], gt_boxes[i])[0]
    best = int(np.argmax(ious))
    if ious[best] >= iou_threshold and not taken[i][best]:
      taken[i][best] = True
      is_tp[rank] = True
  return det_scores[order], is_tp, num_gt


def _all_point_ap(is_tp: np.ndarray, num_positive: int) -> float:
  """VOC all-point interpolated area under the precision-recall curve."""
  if num_positive == 0:
    return math.nan
  if not len(is_tp):
    return 0.0
  tp = np.cumsum(is_tp)
  fp = np.cumsum(~is_tp)
  recall = tp / num_positive
  precision = tp / np.maximum(tp + fp, 1)
  mrec = np.concatenate([[0.0], recall, [1.0]])
  mpre = np.concatenate([[0.0], precision, [0.0]])
  mpre = np.maximum.accumulate(mpre[::-1])[::-1]
  changes = np.flatnonzero(mrec[1:] != mrec[:-1])
  return float(np.sum((mrec[changes + 1] - mrec[changes]) * mpre[changes + 1]))


def average_precision(
  detections: Sequence[Detections],
  ground_truth: Sequence[GroundTruth],
  *,
  iou_threshold: float,
  num_classes: int,
) -> dict[int, float]:
  """Standard VOC all-point AP per class (see the module docstring); NaN for classes without GT.

  detections[i]: {"boxes": (n, 4), "scores": (n,), "labels": (n,)} for image i,
  normally after NMS; ground_truth[i]: {"boxes": (m, 4), "labels": (m,)}.
  """
  out = {}
  for c in range(num_classes):
    _, is_tp, num_gt = _match_class(detections, ground_truth, c, iou_threshold)
    out[c] = _all_point_ap(is_tp, num_gt)
  return out


def average_precision_racah2017(
  detections: Sequence[Detections],
  ground_truth: Sequence[GroundTruth],
  *,
  iou_threshold: float,
  num_classes: int,
) -> dict[int, float]:
  """The original ExtremeWeather evaluation's AP variant: NOT standard AP.

  Pass detections *without* NMS. Matching is as in `average_precision`, but
  ground truth that no detection found is ignored: recall is relative to the
  number of ground-truth boxes matched, so it always reaches 1 and a detector
  that misses most events can still score highly. 0 when a class has ground
  truth but nothing found it; NaN when it has no ground truth.
  """
  out = {}
  for c in range(num_classes):
    _, is_tp, num_gt = _match_class(detections, ground_truth, c, iou_threshold)
    if num_gt == 0:
      out[c] = math.nan
    elif not is_tp.any():
      out[c] = 0.0
    else:
      out[c] = _all_point_ap(is_tp, int(is_tp.sum()))
  return out


def mean_average_precision(ap: Mapping[int, float]) -> float:
  """Mean of the per-class APs that are defined (not NaN); NaN when none is."""
  values = [v for v in ap.values() if not math.isnan(v)]
  return float(np.mean(values)) if values else math.nan


# ---------------------------------------------------------------------------
# Tables and predictions.nc.


def write_ap_tables(
  rows: Mapping[str, Mapping[int, float]],
  out_dir: str | os.PathLike,
  *,
  stem: str = "ap",
  class_names: Sequence[str] = CLASS_NAMES,
) -> tuple[str, str]:
  """Per-class AP rows (e.g. {"ap@0.5": {0: ..., 1: ...}}) as `<stem>.csv` and `<stem>.md`.

  Columns: metric, one per class, mAP (the mean over defined classes). NaN
  (no ground truth) is written as "nan" in the CSV and "–" in Markdown.
  """
  os.makedirs(out_dir, exist_ok=True)
  header = ["metric", *class_names, "mAP"]
  table = []
  for name, ap in rows.items():
    values = [float(ap.get(c, math.nan)) for c in range(len(class_names))]
    table.append((name, values, mean_average_precision(dict(enumerate(values)))))
  csv_path = os.path.join(out_dir, f"{stem}.csv")
  with open(csv_path, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(header)
    for name, values, mean in table:
      writer.writerow([name, *(f"{v:.4f}" for v in values), f"{mean:.4f}"])

  def cell(v):
    return "–" if math.isnan(v) else f"{v:.3f}"

  md_path = os.path.join(out_dir, f"{stem}.md")
  with open(md_path, "w") as f:
    f.write("| " + " | ".join(header) + " |\n")
    f.write("|" + "---|" * len(header) + "\n")
    for name, values, mean in table:
      f.write("| " + " | ".join([name, *map(cell, values), cell(mean)]) + " |\n")
  return csv_path, md_path


def pixel_to_degrees(y, x, lats: np.ndarray, lons: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Continuous pixel coordinates to (lat, lon) degrees on a grid of cell centres.

  Pixel i covers [i, i + 1), so coordinate i + 0.5 is lats[i]; linear in between
  and extrapolated past the ends (a box edge at 0 is half a spacing before lats[0]).
  """

  def interp(p, coord):
    coord = np.asarray(coord, dtype=np.float64).reshape(-1)
    p = np.asarray(p, dtype=np.float64) - 0.5
    if coord.size == 1:
      return np.full_like(p, coord[0])
    out = np.interp(p, np.arange(coord.size, dtype=np.float64), coord)
    below = coord[0] + p * (coord[1] - coord[0])
    above = coord[-1] + (p - (coord.size - 1)) * (coord[-1] - coord[-2])
    return np.where(p < 0, below, np.where(p > coord.size - 1, above, out))

  return interp(y, lats), interp(x, lons)


def box_edges_degrees(pixels: np.ndarray, lats: np.ndarray, lons: np.ndarray):
  """(lat_min, lon_min, lat_max, lon_max) of pixel boxes (..., 4), kept on the globe and in
  the grid's longitude range (0-360, or -180-180): a box at the first column has its edge
  there, not half a cell before it. lat_min <= lat_max whichever way `lats` runs (on a
  north-to-south grid the box's ymin edge is its northern one)."""
  lat0, lon0 = pixel_to_degrees(pixels[..., 0], pixels[..., 1], lats, lons)
  lat1, lon1 = pixel_to_degrees(pixels[..., 2], pixels[..., 3], lats, lons)
  low, high = (0.0, 360.0) if np.nanmin(lons) >= 0 else (-180.0, 180.0)
  lat0, lat1 = np.clip(lat0, -90.0, 90.0), np.clip(lat1, -90.0, 90.0)
  lat0, lat1 = np.minimum(lat0, lat1), np.maximum(lat0, lat1)
  return lat0, np.clip(lon0, low, high), lat1, np.clip(lon1, low, high)


def write_predictions(
  path: str | os.PathLike,
  detections: Sequence[Detections],
  *,
  times: Sequence | np.ndarray,
  lats: np.ndarray,
  lons: np.ndarray,
  class_names: Sequence[str] = CLASS_NAMES,
  attrs: dict | None = None,
) -> str:
  """Writes detections as a netCDF file with dimensions (time, box).

  Variables: class (int, -1 where there is no box), score (NaN where none),
  lat_min / lat_max / lon_min / lon_max (degrees; box edges on the grid of
  `lats`, `lons`) and ymin / xmin / ymax / xmax (pixels). `times` labels the
  images (datetimes or numbers); boxes are in descending score order.
  """
  import xarray as xr

  if len(times) != len(detections):
    raise ValueError(f"write_predictions: {len(times)} times for {len(detections)} images")
  num_boxes = max([1, *(len(np.asarray(d["scores"]).reshape(-1)) for d in detections)])
  shape = (len(detections), num_boxes)
  classes = np.full(shape, -1, np.int32)
  scores = np.full(shape, np.nan, np.float32)
  pixels = np.full((*shape, 4), np.nan, np.float32)
  for t, d in enumerate(detections):
    s = np.asarray(d["scores"], np.float32).reshape(-1)
    order = np.argsort(-s, kind="stable")
    n = len(s)
    classes[t, :n] = np.asarray(d["labels"]).reshape(-1)[order]
    scores[t, :n] = s[order]
    pixels[t, :n] = np.asarray(d["boxes"], np.float32).reshape(-1, 4)[order]
  lat0, lon0, lat1, lon1 = box_edges_degrees(pixels, lats, lons)

  dims = ("time", "box")

  def var(data, units, long_name, **attrs):
    return xr.Variable(dims, data, {"units": units, "long_name": long_name, **attrs})

  ds = xr.Dataset(
    {
      "class": var(
        classes,
        "1",
        "event class of the box (-1: no box)",
        flag_values=np.arange(len(class_names), dtype=np.int32),
        flag_meanings=" ".join(class_names),
      ),
      "score": var(scores, "1", "detection score P(object) * P(class | object)"),
      "lat_min": var(lat0.astype(np.float32), "degrees_north", "southern edge of the box"),
      "lat_max": var(lat1.astype(np.float32), "degrees_north", "northern edge of the box"),
      "lon_min": var(lon0.astype(np.float32), "degrees_east", "western edge of the box"),
      "lon_max": var(lon1.astype(np.float32), "degrees_east", "eastern edge of the box"),
      "ymin": var(pixels[..., 0], "pixel", "box edge, latitude axis"),
      "xmin": var(pixels[..., 1], "pixel", "box edge, longitude axis"),
      "ymax": var(pixels[..., 2], "pixel", "box edge, latitude axis"),
      "xmax": var(pixels[..., 3], "pixel", "box edge, longitude axis"),
    },
    coords={"time": np.asarray(times), "box": np.arange(num_boxes, dtype=np.int32)},
    attrs={
      "title": "climjax detector predictions",
      "class_names": ", ".join(f"{i} {n}" for i, n in enumerate(class_names)),
      "box_convention": "pixel i covers [i, i+1); lat/lon edges on the input grid",
      **(attrs or {}),
    },
  )
  path = os.fspath(path)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f"{path}.tmp"
  ds.to_netcdf(tmp, engine="netcdf4")
  os.replace(tmp, path)
  return path
