"""The small scaling sweep colab/04_scaling.ipynb runs (launch/scaling.py reads it).

  python launch/scaling.py --config=colab/scaling_sweep.py:fast --workdir=/tmp/scaling
  python launch/scaling.py --config=colab/scaling_sweep.py --workdir=runs/notebook_scaling

The TC classifier at its test size (configs/tc.py:tiny): `fast` is the three
points the notebook's test runs (sync on 1 and 2 ranks, hybrid with 2 groups
of 1 rank and 1 parameter server: 3 ranks), 10 steps each; the default adds
4 sync ranks and hybrid with 1 group, 150 steps each. Same layout as
configs/scaling.py, whose default is the full local sweep of the README.
"""

from __future__ import annotations

import ml_collections


def get_sweep(arg: str | None = None) -> ml_collections.ConfigDict:
  fast = arg == "fast"
  if arg not in (None, "fast"):
    raise ValueError(f"unknown sweep argument {arg!r}; expected none or 'fast'")
  steps = 10 if fast else 150
  models = {
    "tc": {
      "config": "configs/tc.py:tiny",
      "steps": steps,
      "strong_batch": 128,
      "weak_batch": 64,
      "metric": "test_accuracy",
      "target": 0.9,
      "overrides": {
        "train": {
          "eval_every": steps if fast else steps // 3,
          "log_every": 10,
          "checkpoint_every": 1000,
        }
      },
      "slurm_time": "00:10:00",
    }
  }
  sync_ranks = (1, 2) if fast else (1, 2, 4)
  groups = (2,) if fast else (1, 2)
  points = [
    dict(model="tc", ranks=r, strategy="sync", groups=1, servers=0, mode="strong")
    for r in sync_ranks
  ]
  points += [
    dict(model="tc", ranks=3, strategy="hybrid", groups=g, servers=1, mode="strong") for g in groups
  ]
  return ml_collections.ConfigDict({"models": models, "points": points})
