"""Pieces every experiment config shares: argument parsing and default blocks.

Config files are Python returning an `ml_collections.ConfigDict`; the argument
after the colon (`configs/tc.py:tiny`) picks the size of the run.
"""

from __future__ import annotations

import ml_collections

SIZES = ("default", "tiny", "paper")


def parse_arg(arg: str | None) -> str:
  """'tiny' | 'paper' | None -> the run size; anything else is an error."""
  size = arg or "default"
  if size not in SIZES:
    raise ValueError(f"unknown config argument {size!r}; expected one of {SIZES}")
  return size


def platform_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(
      {
          # 0 = every core this process may use. Under MPI, cores are split by local rank.
          "threads": 0,
          # Extra XLA flags, space separated (measured in README "Performance"): YNNPACK
          # keeps the matrix products but not single convolutions, whose weight gradient
          # it ran at half the speed of XLA's own stride-1 pieces (climjax.ops).
          "xla_flags": "--xla_cpu_experimental_ynn_fusion_type=individual_dot",
          # "tcmalloc" preloads libtcmalloc_minimal when installed (falls back silently).
          "allocator": "tcmalloc",
          "backend": "cpu",
      }
  )


def parallel_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(
      {
          "strategy": "single",  # single | sync | hybrid | simulated
          "num_groups": 1,  # hybrid: compute groups
          "num_servers": 0,  # hybrid: parameter-server ranks
          "scaling": "strong",  # strong: global batch fixed; weak: per-rank batch fixed
          "straggler_rank": -1,  # experiments: this rank sleeps straggler_delay s per step
          "straggler_delay": 0.0,
          # 1: all-reduce on a host thread while the next step computes; updates
          # applied one step late (Kurth et al. 2018). single / sync only.
          "gradient_lag": 0,
          # simulated: each update's staleness drawn from these counts by staleness
          # ("5,12,3"; a hybrid run's staleness_histogram), else Poisson with mean
          # staleness_per_group x (num_groups - 1).
          "staleness_histogram": "",
          "staleness_per_group": 1.0,
          "staleness_seed": 0,
      }
  )


def optimizer_config(**overrides) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict(
      {
          "name": "adam",  # adam | adamw | sgd
          "learning_rate": 1e-3,
          "momentum": 0.9,  # sgd only
          "weight_decay": 0.0,
          "schedule": "cosine",  # constant | cosine
          "warmup_steps": 0,
          "grad_clip_norm": 0.0,  # 0 = off
      }
  )
  config.update(overrides)
  return config
