"""Binary classification metrics on host arrays: accuracy, precision, recall, confusion.

Shared by the scikit-learn baselines (baselines.py) and the results table
(launch/reproduce_table.py), so that every method in the table is scored by the
same code. Label 1 is the event (TC, AR or front), 0 the background, as in the
patch datasets and the CNN's eval step.

Evaluators yield `(name, value)` pairs (big_vision style); `metrics_dict` collects
them for callers that want a dict.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def _check(labels: np.ndarray, predicted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  labels = np.asarray(labels).reshape(-1)
  predicted = np.asarray(predicted).reshape(-1)
  if labels.shape != predicted.shape:
    raise ValueError(f"labels {labels.shape} and predictions {predicted.shape} differ in length")
  if labels.size == 0:
    raise ValueError("no examples to score")
  return labels.astype(np.int64), predicted.astype(np.int64)


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, num_classes: int = 2) -> np.ndarray:
  """Counts (num_classes, num_classes): row = true class, column = predicted class."""
  labels, predicted = _check(labels, predicted)
  for name, values in (("labels", labels), ("predictions", predicted)):
    if values.min() < 0 or values.max() >= num_classes:
      raise ValueError(f"{name} must lie in [0, {num_classes}), got {values.min()}..{values.max()}")
  return np.bincount(labels * num_classes + predicted, minlength=num_classes**2).reshape(
    num_classes, num_classes
  )


def accuracy(labels: np.ndarray, predicted: np.ndarray) -> float:
  labels, predicted = _check(labels, predicted)
  return float(np.mean(labels == predicted))


def binary_metrics(labels: np.ndarray, predicted: np.ndarray) -> Iterator[tuple[str, float]]:
  """Yields accuracy, precision, recall, f1 and the four confusion counts of class 1.

  Precision (recall) is 0 when nothing is predicted (present) positive, the
  convention of the CNN's evaluation (training/train.py), so the columns agree.
  """
  cm = confusion_matrix(labels, predicted, 2)
  tn, fp, fn, tp = (int(v) for v in cm.reshape(-1))
  total = tn + fp + fn + tp
  precision = tp / max(tp + fp, 1)
  recall = tp / max(tp + fn, 1)
  yield "accuracy", (tp + tn) / total
  yield "precision", precision
  yield "recall", recall
  yield "f1", 2 * precision * recall / (precision + recall) if precision + recall else 0.0
  yield "true_positive", tp
  yield "false_positive", fp
  yield "false_negative", fn
  yield "true_negative", tn
  yield "count", total


def metrics_dict(labels: np.ndarray, predicted: np.ndarray, prefix: str = "") -> dict[str, float]:
  """`binary_metrics` as a dict, keys prefixed (e.g. "test_accuracy")."""
  return {f"{prefix}{name}": value for name, value in binary_metrics(labels, predicted)}
