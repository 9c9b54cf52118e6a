"""Config and workdir checks that fail early with one line naming the field."""

from __future__ import annotations

import os

from climjax.errors import ConfigError

__all__ = ["ConfigError", "common_checks", "ensure_workdir", "one_of", "positive_float", "positive_int"]


def _get(config, dotted: str):
  node = config
  for part in dotted.split("."):
    if part not in node:
      raise ConfigError(f"{dotted}: missing from the config")
    node = node[part]
  return node


def positive_int(config, dotted: str, *, allow_zero: bool = False) -> int:
  value = _get(config, dotted)
  ok = isinstance(value, int) and not isinstance(value, bool) and (value >= 0 if allow_zero else value > 0)
  if not ok:
    kind = "a non-negative" if allow_zero else "a positive"
    raise ConfigError(f"{dotted} must be {kind} integer, got {value!r}")
  return value


def one_of(config, dotted: str, choices) -> str:
  value = _get(config, dotted)
  if value not in choices:
    raise ConfigError(f"{dotted} must be one of {sorted(choices)}, got {value!r}")
  return value


def positive_float(config, dotted: str) -> float:
  value = _get(config, dotted)
  if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
    raise ConfigError(f"{dotted} must be a positive number, got {value!r}")
  return float(value)


def common_checks(config) -> None:
  """Fields every trainer shares (train.*, optimizer.*, platform.*, parallel.*)."""
  from climjax import parallel
  from climjax.training import optim

  for field in ("train.steps", "train.batch_size", "train.checkpoint_every", "train.log_every"):
    positive_int(config, field)
  positive_int(config, "train.eval_every", allow_zero=True)
  one_of(config, "optimizer.name", optim.OPTIMIZERS)
  one_of(config, "optimizer.schedule", optim.SCHEDULES)
  positive_float(config, "optimizer.learning_rate")
  positive_int(config, "optimizer.warmup_steps", allow_zero=True)
  positive_int(config, "platform.threads", allow_zero=True)
  one_of(config, "parallel.strategy", parallel.STRATEGIES)
  if (
    config.parallel.strategy == "hybrid"
    and float(config.optimizer.get("grad_clip_norm", 0.0)) > 0
    and int(config.parallel.get("num_servers", 1)) > 1
  ):
    raise ConfigError(
      "optimizer.grad_clip_norm clips by the global norm, but with parallel.num_servers > 1 "
      "each server sees only its shard: use one server or no clipping"
    )


def ensure_workdir(workdir: str) -> None:
  """Creates `workdir` and proves it writable, or raises a one-line ConfigError."""
  try:
    os.makedirs(workdir, exist_ok=True)
    probe = os.path.join(workdir, f".write_test.{os.getpid()}")
    with open(probe, "w") as f:
      f.write("ok")
    os.remove(probe)
  except OSError as e:
    raise ConfigError(f"--workdir={workdir}: cannot write there ({e.strerror})") from None
