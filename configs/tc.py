"""Tropical-cyclone patch classifier (Liu et al. 2016), on synthetic CAM5-like patches.

  python launch/main.py --config=configs/tc.py            # embedded demo, minutes on 2 cores
  python launch/main.py --config=configs/tc.py:tiny       # seconds, for tests
  python launch/main.py --config=configs/tc.py:paper      # the paper's ~10k+10k patches

The default reaches test accuracy >= 0.95 on held-out synthetic patches (see
README "Results" for the measured number and time). The network is the paper's:
32x32x8 -> conv 5x5-8 -> pool 2 -> conv 5x5-16 -> pool 2 -> fc 50 -> fc 2.
"""

from __future__ import annotations

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  size = common.parse_arg(arg)
  config = ml_collections.ConfigDict()
  config.name = "tc" if size == "default" else f"tc_{size}"
  config.task = "tc"
  config.seed = 0

  config.data = ml_collections.ConfigDict(
      {
          "source": "synthetic",  # synthetic | netcdf | extremeweather
          "input": "",  # path or glob for netcdf / extremeweather sources
          "variables_map": "",  # other names for CAM5 variables, e.g. "msl:PSL,tcw:TMQ"
          "box_order": "",  # extremeweather boxes: "yxyx" | "xxyy" | "" (detect)
          "test_fraction": 0.2,  # file sources: the last fraction of times is the test split
          "nonfinite": "refuse",  # file sources: a NaN or Inf is refused, or "mask" (filled)
          "require_all_criteria": False,  # netcdf: refuse labels that skipped a criterion
          "data_dir": "runs/tfds",  # where tfds array_record datasets are built
          "num_train": {"default": 20_000, "tiny": 1_024, "paper": 20_000}[size],
          "num_test": {"default": 4_000, "tiny": 512, "paper": 4_000}[size],
          "seed": 0,
          "num_threads": 2,  # reader threads of the input pipeline
          "prefetch": 4,  # batches read ahead
      }
  )
  config.model = ml_collections.ConfigDict({"name": "tc_cnn", "conv_impl": "fast"})
  config.optimizer = common.optimizer_config(learning_rate=2e-3, warmup_steps=50)
  config.train = ml_collections.ConfigDict(
      {
          "steps": {"default": 600, "tiny": 60, "paper": 4_000}[size],
          "batch_size": {"default": 256, "tiny": 64, "paper": 256}[size],
          "checkpoint_every": {"default": 200, "tiny": 20, "paper": 500}[size],
          "log_every": {"default": 50, "tiny": 10, "paper": 100}[size],
          "eval_every": {"default": 200, "tiny": 30, "paper": 1000}[size],
          "eval_batch_size": 512,
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
          "optimizer.learning_rate": ("log_float", 3e-4, 1e-2),
          "train.batch_size": ("categorical", (64, 128, 256)),
          "optimizer.warmup_steps": ("int", 0, 100),
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
          "cnn_steps": {"default": 400, "tiny": 20, "paper": 1_000}[size],
          "baselines": {
              # 32x32x8 = 8,192 features: no reduction needed.
              "pool": 1,
              # Kernel SVM and k-NN cost grows with the square of the training set;
              # baselines fit on at most this many training examples (a fixed
              # random subset of the same split), and are tested on the whole test split.
              "max_train": {"default": 2_000, "tiny": 256, "paper": 10_000}[size],
              "n_jobs": -1,  # random forest / k-NN worker processes (-1: all cores)
          },
          # Trials per baseline in launch/reproduce_table.py.
          "table_trials": {"default": 3, "tiny": 2, "paper": 20}[size],
      }
  )
