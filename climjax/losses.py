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
