"""The statistical-efficiency study as data: updates to a target against the number of groups.

  python launch/statistical_efficiency.py --config=configs/statistical_efficiency.py
  python launch/statistical_efficiency.py --config=configs/statistical_efficiency.py:tiny

Kurth et al. (2017) plot "statistical convergence": how many iterations hybrid
training needs to reach a loss as the number of compute groups G (the level of
asynchrony) grows. Here: updates (server versions) until the held-out metric
first reaches `target`, for G in `groups`, `seeds` seeds each (the seed of the
initialisation and of the data order; the data themselves fixed).

- G in `real_groups` (a model may name its own) runs for real: hybrid, G groups of one rank and one
  parameter server (G + 1 MPI ranks, oversubscribed on a small machine), weak
  scaling, so every update uses one rank's `train.batch_size` examples whatever G.
- Every G also runs simulated (parallel.strategy="simulated", one process): each
  update's staleness drawn from the real runs' measured histogram at that G,
  and beyond them from a Poisson model whose slope (mean staleness per extra
  group) is fitted to the real runs.

The same per-update batch and learning rate for every G: what changes is only
how stale the gradients are.
"""

from __future__ import annotations

import ml_collections

from configs import common


def get_study(arg: str | None = None) -> ml_collections.ConfigDict:
  size = common.parse_arg(arg)
  tiny = size == "tiny"
  return ml_collections.ConfigDict(
    {
      "groups": [1, 4] if tiny else [1, 2, 4, 8, 16],
      "real_groups": [1, 2] if tiny else [1, 2, 4],
      "seeds": [0, 1] if tiny else [0, 1, 2],
      "models": {
        "tc": {
          "config": "configs/tc.py:tiny",
          "metric": "test_accuracy",
          "target": 0.8 if tiny else 0.93,
          "overrides": {
            "train": {
              "steps": 30 if tiny else 600,
              "eval_every": 10,
              "log_every": 10,
              "checkpoint_every": 1000,
            },
            # A constant learning rate: a schedule tied to the step
            # count would end differently for runs that stop early.
            "optimizer": {"schedule": "constant", "warmup_steps": 0},
          },
        },
        # The tiny detector (64x96 fields, 1/32 of the paper's widths) stays
        # below mAP@0.1 ~0.1 on these fields, so the target is low: this
        # measures how fast asynchronous updates get there, not detection skill.
        "detector": {
          "config": "configs/semisup.py:tiny",
          "metric": "test_map@0.1",
          "target": 0.01 if tiny else 0.05,
          "overrides": {
            "train": {
              "steps": 6 if tiny else 240,
              "eval_every": 3 if tiny else 20,
              "log_every": 3 if tiny else 20,
              "checkpoint_every": 1000,
            },
            "data": {"num_train": 16 if tiny else 64, "num_test": 8 if tiny else 16},
          },
        },
      },
    }
  )
