"""Config and workdir checks that fail early with one line naming the field."""

from __future__ import annotations

import json
import os

from climjax.errors import ConfigError

__all__ = [
  "ConfigError",
  "common_checks",
  "ensure_workdir",
  "one_of",
  "positive_float",
  "positive_int",
]


def _get(config, dotted: str):
  node = config
  for part in dotted.split("."):
    if part not in node:
      raise ConfigError(f"{dotted}: missing from the config")
    node = node[part]
  return node


def positive_int(config, dotted: str, *, allow_zero: bool = False) -> int:
  value = _get(config, dotted)
  ok = (
    isinstance(value, int)
    and not isinstance(value, bool)
    and (value >= 0 if allow_zero else value > 0)
  )
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


# What may change when a run is continued: its length (and how often it logs).
RESUMABLE_FIELDS = ("train.steps",)


def _flat(tree: dict, prefix: str = "") -> dict:
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      out.update(_flat(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = value
  return out


def holds_a_run(workdir: str) -> bool:
  """Whether `workdir` has checkpoints that a rerun would resume from."""
  for sub in ("checkpoints", "parameter_servers"):
    path = os.path.join(workdir, sub)
    if os.path.isdir(path) and os.listdir(path):
      return True
  return False


def check_resume(config, workdir: str, *, force: bool = False) -> None:
  """Refuses to resume a run whose stored config.json differs in more than `train.steps`.

  A run continued under another strategy, data source or batch size would
  mix two experiments in one workdir and report the second's settings for the
  first's checkpoints. `force` (`launch/main.py --resume=force`) continues anyway.
  """
  path = os.path.join(workdir, "config.json")
  if force or not os.path.exists(path) or not holds_a_run(workdir):
    return
  with open(path) as f:
    stored = _flat(json.load(f))
  current = _flat(json.loads(json.dumps(config.to_dict(), default=str)))
  changed = sorted(
    k for k in set(stored) | set(current)
    if k not in RESUMABLE_FIELDS and stored.get(k) != current.get(k)
  )  # fmt: skip
  if changed:
    shown = ", ".join(f"{k} {stored.get(k)!r} -> {current.get(k)!r}" for k in changed[:4])
    more = f" and {len(changed) - 4} more" if len(changed) > 4 else ""
    raise ConfigError(
      f"{workdir} holds a run with another config ({shown}{more}): only train.steps may "
      "change to continue it; use another --workdir, or --resume=force to continue anyway"
    )
