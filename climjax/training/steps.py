"""Pure train, eval and predict steps: the patch classifiers' and the detector's.

Bound with `functools.partial` and compiled once with `jax.jit(donate_argnums=0)`.
Parallelism enters only through `reduce_grads` (identity in one process, an
MPI all-reduce under synchronous data parallelism).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from climjax import losses
from climjax.training.state import TrainState


def _update(state: TrainState, objective: Callable, *, tx, reduce_grads):
  """The shared update: gradients of `objective(params) -> (loss, parts)`, reduced
  (identity, or an all-reduce), applied by `tx`; with the norms every step logs."""
  (loss, parts), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
  grads = reduce_grads(grads)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  norms = {
    "grad_norm": optax.tree.norm(grads),
    "update_norm": optax.tree.norm(updates),
    "param_norm": optax.tree.norm(params),
  }
  return TrainState(step=state.step + 1, params=params, opt_state=opt_state), loss, parts, norms


def train_step(
  state: TrainState,
  batch: dict,
  *,
  apply_fn: Callable,
  tx: optax.GradientTransformation,
  reduce_grads: Callable = lambda g: g,
) -> tuple[TrainState, dict]:
  def loss_fn(params):
    logits = apply_fn({"params": params}, batch["patch"], train=True)
    return losses.softmax_cross_entropy(logits=logits, labels=batch["label"])

  state, loss, parts, norms = _update(state, loss_fn, tx=tx, reduce_grads=reduce_grads)
  metrics = {
    "loss": loss,
    "accuracy": parts["accuracy"],
    **norms,
  }
  return state, metrics


def eval_step(params, batch: dict, *, apply_fn: Callable) -> dict:
  """Sums over the real (mask = 1) examples of a padded batch."""
  logits = apply_fn({"params": params}, batch["patch"], train=False)
  mask = batch["mask"]
  xent = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
  predicted = jnp.argmax(logits, -1)
  return {
    "correct": jnp.sum((predicted == batch["label"]) * mask),
    "loss_sum": jnp.sum(xent * mask),
    "count": jnp.sum(mask),
    # Confusion counts for the positive class (label 1 = event).
    "true_positive": jnp.sum((predicted == 1) * (batch["label"] == 1) * mask),
    "false_positive": jnp.sum((predicted == 1) * (batch["label"] == 0) * mask),
    "false_negative": jnp.sum((predicted == 0) * (batch["label"] == 1) * mask),
  }


def detector_train_step(
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

  state, loss, parts, norms = _update(state, objective, tx=tx, reduce_grads=reduce_grads)
  metrics = {
    "loss": loss,
    **parts,
    "labelled_examples": jnp.sum(batch["labelled"]),
    **norms,
  }
  return state, metrics


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
