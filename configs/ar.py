"""Atmospheric-river patch classifier (Liu et al. 2016), on synthetic CAM5-like patches.

  python launch/main.py --config=configs/ar.py            # embedded demo, minutes on 2 cores
  python launch/main.py --config=configs/ar.py:tiny       # seconds, for tests
  python launch/main.py --config=configs/ar.py:paper      # the paper's ~6,500+6,800 patches

Inputs are TMQ (integrated water vapour) and the real land-sea mask on the
patch's grid (`variables.AR_CHANNELS`); the label says whether an atmospheric
river crosses the patch and reaches land (the TECA criteria, see
`patches.ar_patches`). The network is the paper's: 148x224x2 -> conv 12x12-8
-> pool 3 -> conv 12x12-16 -> pool 2 -> fc 200 -> fc 2. It does ~60x the TC
network's work per example (~150 M multiply-adds against ~2.5 M), so the
default trains on fewer, smaller batches.

The default reaches test accuracy ~0.88 on held-out synthetic patches
(measured 0.876, train 0.953, 2026-11-27, 2 shared cores: ~9 min for training
and evaluation, plus ~2 min to generate the 4,000 patches once).

Hyper-parameter search (`launch/sweep.py --config=configs/ar.py --method=...`)
and the table (`launch/reproduce_table.py`) read `get_sweep` and
`get_search_space` below.
"""

from __future__ import annotations

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  size = common.parse_arg(arg)
  config = ml_collections.ConfigDict()
  config.name = "ar" if size == "default" else f"ar_{size}"
  config.task = "ar"
  config.seed = 0

  config.data = ml_collections.ConfigDict(
    {
      "source": "synthetic",  # synthetic | netcdf | extremeweather
      "input": "",  # path or glob for netcdf / extremeweather sources
      "data_dir": "runs/tfds",  # where tfds array_record datasets are built
      "num_train": {"default": 3_000, "tiny": 256, "paper": 6_500}[size],
      "num_test": {"default": 1_000, "tiny": 128, "paper": 6_800}[size],
      "seed": 0,
      "num_threads": 2,  # reader threads of the input pipeline
      "prefetch": 4,  # batches read ahead
    }
  )
  config.model = ml_collections.ConfigDict({"name": "ar_cnn", "conv_impl": "fast"})
  config.optimizer = common.optimizer_config(learning_rate=1e-3, warmup_steps=20)
  config.train = ml_collections.ConfigDict(
    {
      "steps": {"default": 400, "tiny": 8, "paper": 3_000}[size],
      "batch_size": {"default": 32, "tiny": 16, "paper": 64}[size],
      "checkpoint_every": {"default": 100, "tiny": 4, "paper": 500}[size],
      "log_every": {"default": 20, "tiny": 4, "paper": 100}[size],
      "eval_every": {"default": 0, "tiny": 0, "paper": 1000}[size],
      "eval_batch_size": 64,
    }
  )
  config.platform = common.platform_config()
  config.parallel = common.parallel_config()
  return config


def get_search_space() -> dict[str, dict[str, tuple]]:
  """Per-method search spaces for `launch/sweep.py` (optuna TPE).

  Keys of "cnn" are dotted config fields; of the baselines, scikit-learn
  estimator arguments (climjax/evaluation/baselines.py). Each value is
  (kind, ...) with kind one of float, log_float, int, log_int, categorical.
  """
  return {
    "cnn": {
      "optimizer.learning_rate": ("log_float", 2e-4, 5e-3),
      "train.batch_size": ("categorical", (16, 32, 64)),
      "optimizer.warmup_steps": ("int", 0, 50),
    },
    "lr": {"C": ("log_float", 1e-5, 1e1)},
    "knn": {"n_neighbors": ("log_int", 1, 50), "weights": ("categorical", ("uniform", "distance"))},
    "svm": {"C": ("log_float", 1e-1, 1e2), "gamma": ("log_float", 1e-6, 2e-3)},
    "rf": {
      "n_estimators": ("int", 50, 200),
      "max_features": ("categorical", ("sqrt", "log2")),
      "min_samples_leaf": ("log_int", 1, 20),
    },
  }


def get_sweep(arg: str | None = None) -> ml_collections.ConfigDict:
  """How sweeps and the table treat this task (sizes follow `get_config(arg)`)."""
  size = common.parse_arg(arg)
  return ml_collections.ConfigDict(
    {
      "seed": 0,
      # Carved from the training split (stratified); the test split is never tuned on.
      "validation_fraction": 0.2,
      # A CNN trial trains this many steps (a shorter run than the config's).
      "cnn_steps": {"default": 150, "tiny": 6, "paper": 1_000}[size],
      "baselines": {
        # 148x224 patches flattened are 66k features; 4x4 average pooling
        # (37x56x2 = 4,144) keeps the river's large-scale shape and makes
        # SVM and k-NN affordable. The CNN sees full resolution.
        "pool": 4,
        # Kernel SVM and k-NN cost grows with the square of the training set;
        # baselines fit on at most this many training examples (a fixed
        # random subset of the same split), and are tested on the whole test split.
        "max_train": {"default": 2_000, "tiny": 256, "paper": 6_500}[size],
        "n_jobs": -1,  # random forest / k-NN worker processes (-1: all cores)
      },
      # Trials per baseline in launch/reproduce_table.py.
      "table_trials": {"default": 3, "tiny": 2, "paper": 20}[size],
    }
  )
