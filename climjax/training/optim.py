"""optax optimizers and learning-rate schedules from `config.optimizer`."""

from __future__ import annotations

import optax

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine")


def learning_rate_schedule(opt_config, total_steps: int) -> optax.Schedule:
  lr = float(opt_config.learning_rate)
  warmup = int(opt_config.get("warmup_steps", 0))
  schedule = opt_config.get("schedule", "constant")
  if schedule == "constant":
    main = optax.constant_schedule(lr)
  elif schedule == "cosine":
    main = optax.cosine_decay_schedule(lr, max(1, total_steps - warmup), alpha=0.01)
  else:
    raise ValueError(f"optimizer.schedule must be one of {SCHEDULES}, got {schedule!r}")
  if warmup <= 0:
    return main
  return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), main], [warmup])


def make_optimizer(opt_config, total_steps: int) -> optax.GradientTransformation:
  """The optax chain the config names: optional clipping, then the optimizer."""
  schedule = learning_rate_schedule(opt_config, total_steps)
  name = opt_config.name
  if name == "adam":
    tx = optax.adam(schedule)
  elif name == "adamw":
    tx = optax.adamw(schedule, weight_decay=float(opt_config.get("weight_decay", 0.0)))
  elif name == "sgd":
    tx = optax.sgd(schedule, momentum=float(opt_config.get("momentum", 0.0)) or None)
  else:
    raise ValueError(f"optimizer.name must be one of {OPTIMIZERS}, got {name!r}")
  clip = float(opt_config.get("grad_clip_norm", 0.0))
  return optax.chain(optax.clip_by_global_norm(clip), tx) if clip > 0 else tx
