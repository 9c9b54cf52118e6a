"""The scaling sweep as data: which models, which MPI layouts, strong and weak.

  python launch/scaling.py --config=configs/scaling.py --workdir=runs/scaling
  python launch/scaling.py --config=configs/scaling.py:tiny --workdir=/tmp/scaling   # tests
  python launch/scaling.py --config=configs/scaling.py:cluster --workdir=$SCRATCH/scaling \
      --emit=slurm --cores_per_node=68

`get_sweep(arg)` returns the models (a config file each, its training length,
batch sizes, the metric and target that `steps_to_target` reads) and the
points: (model, ranks, strategy, groups, servers, mode, and optionally
gradient_lag for sync points). `ranks` counts every
MPI rank, parameter servers included; a hybrid point's workers are
ranks - servers, split into `groups` equal compute groups.

Batch: strong keeps `strong_batch` as the global batch (split over the
workers); weak gives every worker `weak_batch`. Length: a sync point trains
`steps` steps; a hybrid point `steps x groups` server updates, so that every
point of a model and mode reads the same number of examples (a hybrid update
carries 1/groups of them) and evaluates as often per example read.

Default: the local sweep, ranks 1, 2, 4 (sync) and 3, 5 (hybrid: 1 server
and 2 or 4 workers) on the 2-core development machine, so 4 and 5 ranks are
oversubscribed and cannot speed up; it shows the machinery and the
bookkeeping, not a cluster's curve. Measured 2026-12-03: 16 min 09 s for its
17 points, while two other CPU-bound jobs shared the 2 cores (load 5-10), so
a quiet machine should take less. `cluster` is the same sweep at 1-256
nodes for `--emit=slurm`; `tiny` is three short points for tests.
"""

from __future__ import annotations

import ml_collections

ARGS = ("default", "tiny", "cluster")


def _points(model: str, specs) -> list[dict]:
  """(ranks, strategy, groups, servers, mode) tuples -> point dicts of `model`."""
  return [
    dict(model=model, ranks=r, strategy=st, groups=g, servers=s, mode=m) for r, st, g, s, m in specs
  ]


def _sync(ranks, modes=("strong", "weak")) -> list[tuple]:
  return [(r, "sync", 1, 0, m) for m in modes for r in ranks]


def _hybrid(workers: int, servers: int, groups, modes=("strong",)) -> list[tuple]:
  return [(workers + servers, "hybrid", g, servers, m) for m in modes for g in groups]


def get_sweep(arg: str | None = None) -> ml_collections.ConfigDict:
  size = arg or "default"
  if size not in ARGS:
    raise ValueError(f"unknown sweep argument {size!r}; expected one of {ARGS}")
  # Evaluations during training make `steps_to_target`; log and checkpoint rarely.
  # Overrides are nested like the config (train.eval_every -> {"train": {"eval_every": ...}}).
  local = {"log_every": 25, "checkpoint_every": 1000}
  if size == "cluster":
    models = {
      "tc": {
        "config": "configs/tc.py",
        "steps": 400,
        "strong_batch": 4096,  # 16 examples per rank at 256 workers
        "weak_batch": 64,
        "metric": "test_accuracy",
        "target": 0.95,
        "overrides": {"train": {"eval_every": 25, "log_every": 25}},
        "slurm_time": "00:30:00",
      },
      "detector": {
        "config": "configs/semisup.py",
        "steps": 300,
        "strong_batch": 256,  # 1 field per rank at 256 workers
        "weak_batch": 2,
        "metric": "test_map@0.5",
        "target": 0.3,
        "overrides": {"train": {"eval_every": 50, "log_every": 25}},
        "slurm_time": "01:00:00",
      },
    }
    ranks = (1, 2, 4, 8, 16, 32, 64, 128, 256)
    groups = (1, 2, 4, 8, 16)
    points = []
    for model in models:
      points += _points(model, _sync(ranks) + _hybrid(256, 4, groups, ("strong", "weak")))
  elif size == "tiny":
    models = {
      "tc": {
        "config": "configs/tc.py:tiny",
        "steps": 20,
        "strong_batch": 64,
        "weak_batch": 32,
        "metric": "test_accuracy",
        "target": 0.7,
        "overrides": {"train": {"eval_every": 10, "log_every": 10, "checkpoint_every": 100}},
        "slurm_time": "00:10:00",
      },
      "detector": {
        "config": "configs/semisup.py:tiny",
        "steps": 4,
        "strong_batch": 4,
        "weak_batch": 2,
        "metric": "test_map@0.1",
        "target": 0.01,
        "overrides": {"train": {"eval_every": 2, "log_every": 2, "checkpoint_every": 100}},
        "slurm_time": "00:10:00",
      },
    }
    points = _points("tc", _sync((1, 2), ("strong",)))
    points += _points("detector", _sync((1,), ("strong",)))
  else:
    models = {
      "tc": {
        # The tiny data (1,024 patches) and network, trained long enough to time.
        "config": "configs/tc.py:tiny",
        "steps": 150,
        "strong_batch": 256,
        "weak_batch": 64,
        "metric": "test_accuracy",
        "target": 0.95,
        "overrides": {"train": {"eval_every": 10, **local}},
        "slurm_time": "00:15:00",
      },
      "detector": {
        # The tiny detector (width 1/32, 64x96 fields) on 64 fields; at this size
        # mAP@0.5 stays near 0 in a few hundred steps, so the target is on mAP@0.1.
        "config": "configs/semisup.py:tiny",
        "steps": 60,
        "strong_batch": 8,
        "weak_batch": 4,
        "metric": "test_map@0.1",
        "target": 0.05,
        "overrides": {
          "data": {"num_train": 64, "num_test": 16},
          "train": {"eval_every": 20, **local},
        },
        "slurm_time": "00:15:00",
      },
    }
    points = _points("tc", _sync((1, 2, 4)) + _hybrid(2, 1, (1, 2)) + _hybrid(4, 1, (1, 4)))
    detector = _sync((1, 2, 4), ("strong",)) + _sync((1, 2), ("weak",)) + _hybrid(2, 1, (1, 2))
    points += _points("detector", detector)
    # Gradient lag (parallel.gradient_lag=1): the 2-rank sync points again, the
    # all-reduce overlapped with the next step and updates applied a step late.
    points += [dict(p, gradient_lag=1) for p in _points("tc", _sync((2,), ("strong",)))]
    points += [dict(p, gradient_lag=1) for p in _points("detector", _sync((2,), ("strong",)))]
  return ml_collections.ConfigDict({"models": models, "points": points})
