"""Losses: keyword-only pure functions returning (total, {part: value})."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def softmax_cross_entropy(
    *, logits: jnp.ndarray, labels: jnp.ndarray, weights: jnp.ndarray | None = None
) -> tuple[jnp.ndarray, dict[str, jnp.ndarray]]:
  """Mean cross-entropy of integer `labels` under `logits` (..., classes).

  `weights` (same shape as labels) masks out padding examples; the mean is over
  the weighted examples.
  """
  xent = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  if weights is None:
    weights = jnp.ones_like(xent)
  total = jnp.sum(xent * weights) / jnp.maximum(jnp.sum(weights), 1.0)
  accuracy = jnp.sum((jnp.argmax(logits, -1) == labels) * weights) / jnp.maximum(
      jnp.sum(weights), 1.0
  )
  return total, {"xent": total, "accuracy": jax.lax.stop_gradient(accuracy)}


# ---------------------------------------------------------------------------
# The semi-supervised detector (Racah et al. 2017; docs/DESIGN.md section 2).


def smooth_l1(x: jnp.ndarray, *, beta: float = 1.0) -> jnp.ndarray:
  """Elementwise Huber-style smooth L1: 0.5 x^2 / beta inside |x| < beta, else |x| - beta/2."""
  ax = jnp.abs(x)
  return jnp.where(ax < beta, 0.5 * x * x / beta, ax - 0.5 * beta)


def assign_boxes_to_cells(
    *,
    boxes: jnp.ndarray,
    box_classes: jnp.ndarray,
    box_mask: jnp.ndarray,
    grid_shape: tuple[int, int],
    cell_size: float,
    anchor_size: float,
) -> dict[str, jnp.ndarray]:
  """Detection targets on the grid from fixed-shape padded boxes.

  boxes: (..., M, 4) pixel (ymin, xmin, ymax, xmax); box_classes: (..., M) int;
  box_mask: (..., M), 1 for real boxes, 0 for padding. Each real box goes to
  the cell containing its centre (clipped into the grid). When several boxes
  share a cell the first one in the list keeps it: a stable rule, so the same
  labels always give the same targets.

  Returns (..., gh, gw) `object` (1 where a box is assigned), `classes` (int),
  and (..., gh, gw, 4) `boxes` = (dy, dx, log(h / anchor), log(w / anchor)),
  dy, dx being the centre's offset from the cell's corner in cell units.
  """
  gh, gw = grid_shape
  boxes = boxes.astype(jnp.float32)
  cy = 0.5 * (boxes[..., 0] + boxes[..., 2]) / cell_size
  cx = 0.5 * (boxes[..., 1] + boxes[..., 3]) / cell_size
  iy = jnp.clip(jnp.floor(cy), 0, gh - 1).astype(jnp.int32)
  ix = jnp.clip(jnp.floor(cx), 0, gw - 1).astype(jnp.int32)
  # Degenerate (zero-size) boxes would give log(0); one pixel is the smallest size.
  h = jnp.maximum(boxes[..., 2] - boxes[..., 0], 1.0)
  w = jnp.maximum(boxes[..., 3] - boxes[..., 1], 1.0)
  per_box = jnp.stack(
      [cy - iy, cx - ix, jnp.log(h / anchor_size), jnp.log(w / anchor_size)], axis=-1
  )

  # (..., M, cells) one-hot of each real box's cell; a dense product instead of a
  # scatter keeps the first-box-wins rule deterministic and the shapes static.
  m = boxes.shape[-2]
  cell = jax.nn.one_hot(iy * gw + ix, gh * gw) * (box_mask[..., None] > 0)
  # Priority M - j makes the earliest box in the list win its cell.
  priority = cell * (m - jnp.arange(m, dtype=jnp.float32))[:, None]
  winner = jnp.argmax(priority, axis=-2)  # (..., cells)
  has_object = jnp.max(cell, axis=-2)  # (..., cells)
  take = jax.nn.one_hot(winner, m) * has_object[..., None]  # (..., cells, M)
  grid_boxes = jnp.einsum("...cm,...mk->...ck", take, per_box)
  grid_classes = jnp.einsum("...cm,...m->...c", take, box_classes.astype(jnp.float32))
  lead = boxes.shape[:-2]
  return {
      "object": has_object.reshape(*lead, gh, gw),
      "classes": jnp.round(grid_classes).astype(jnp.int32).reshape(*lead, gh, gw),
      "boxes": grid_boxes.reshape(*lead, gh, gw, 4),
  }


def detection_loss(
    *,
    outputs: dict[str, jnp.ndarray],
    inputs: jnp.ndarray,
    boxes: jnp.ndarray,
    box_classes: jnp.ndarray,
    box_mask: jnp.ndarray,
    labelled: jnp.ndarray,
    cell_size: float,
    anchor_size: float,
    reconstruction_weight: float = 10.0,
    offset_weight: float = 5.0,
    size_weight: float = 7.0,
    no_object_weight: float = 0.5,
    class_weight: float = 1.0,
    smooth_l1_beta: float = 1.0,
) -> tuple[jnp.ndarray, dict[str, jnp.ndarray]]:
  """Semi-supervised detection loss: detection on labelled examples + λ·reconstruction on all.

  outputs: the detector's dict: objectness (B, [T,] gh, gw, 2), classes
    (B, [T,] gh, gw, K), boxes (B, [T,] gh, gw, 4), reconstruction (inputs' shape).
  inputs: what the decoder reconstructs, (B, [T,] H, W, C).
  boxes / box_classes / box_mask: padded ground truth (B, [T,] M, ...), see
    `assign_boxes_to_cells`.
  labelled: (B,) 1 where an example's boxes are known; unlabelled examples add
    only the reconstruction term.

  Per labelled example (and time step, for the 3-D "keep" network) the terms
  are summed over cells, as in YOLO-style detectors: offset_weight x smooth-L1
  of the (dy, dx) offsets and size_weight x smooth-L1 of the log sizes on cells
  that hold an object; objectness cross-entropy on every cell, no-object cells
  weighted by no_object_weight; class cross-entropy on object cells. They are
  averaged over labelled examples (0 when the batch has none). The
  reconstruction term is the mean squared error over every element of every
  example. `smooth_l1_beta` is where the box loss turns from quadratic to
  linear (in cell and log-size units); below 1 it keeps pulling at the small
  errors that decide the IoU of boxes smaller than a cell.

  Returns (total, parts). Parts are the weighted terms that add up to `total`
  (offset, size, objectness, class, reconstruction), their detection sum, and
  `reconstruction_mse` (unweighted) for reporting.
  """
  gh, gw = outputs["objectness"].shape[-3:-1]
  targets = assign_boxes_to_cells(
      boxes=boxes,
      box_classes=box_classes,
      box_mask=box_mask,
      grid_shape=(gh, gw),
      cell_size=cell_size,
      anchor_size=anchor_size,
  )
  obj = targets["object"]
  # Broadcast the per-example flag over time steps and cells.
  lead = obj.shape[:-2]
  example_weight = jnp.broadcast_to(
      labelled.astype(jnp.float32).reshape(labelled.shape + (1,) * (len(lead) - 1)), lead
  )
  num_labelled = jnp.maximum(jnp.sum(example_weight), 1.0)

  def per_example_mean(cell_values):
    return jnp.sum(jnp.sum(cell_values, axis=(-2, -1)) * example_weight) / num_labelled

  box_error = smooth_l1(outputs["boxes"].astype(jnp.float32) - targets["boxes"], beta=smooth_l1_beta)
  offset = per_example_mean(jnp.sum(box_error[..., :2], axis=-1) * obj)
  size = per_example_mean(jnp.sum(box_error[..., 2:], axis=-1) * obj)
  objectness_xent = optax.softmax_cross_entropy_with_integer_labels(
      outputs["objectness"].astype(jnp.float32), obj.astype(jnp.int32)
  )
  objectness = per_example_mean(objectness_xent * (obj + no_object_weight * (1.0 - obj)))
  class_xent = optax.softmax_cross_entropy_with_integer_labels(
      outputs["classes"].astype(jnp.float32), targets["classes"]
  )
  classes = per_example_mean(class_xent * obj)
  mse = jnp.mean(jnp.square(outputs["reconstruction"].astype(jnp.float32) - inputs))

  parts = {
      "offset": offset_weight * offset,
      "size": size_weight * size,
      "objectness": objectness,
      "class": class_weight * classes,
  }
  parts["detection"] = parts["offset"] + parts["size"] + parts["objectness"] + parts["class"]
  parts["reconstruction"] = reconstruction_weight * mse
  parts["reconstruction_mse"] = mse
  total = parts["detection"] + parts["reconstruction"]
  return total, parts
