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
  config.trainer = "classifier"
  config.seed = 0

  config.data = ml_collections.ConfigDict(
      {
          "source": "synthetic",  # synthetic | netcdf | extremeweather
          "input": "",  # path or glob for netcdf / extremeweather sources
          "data_dir": "runs/tfds",  # where tfds array_record datasets are built
          "num_train": {"default": 20_000, "tiny": 1_024, "paper": 20_000}[size],
          "num_test": {"default": 4_000, "tiny": 512, "paper": 4_000}[size],
          "seed": 0,
          "num_threads": 2,  # reader threads of the input pipeline
          "prefetch": 4,  # batches read ahead
      }
  )
  config.model = ml_collections.ConfigDict({"name": "tc_cnn", "conv_impl": "xla"})
  config.optimizer = common.optimizer_config(learning_rate=2e-3, warmup_steps=50)
  config.train = ml_collections.ConfigDict(
      {
          "steps": {"default": 1_500, "tiny": 60, "paper": 4_000}[size],
          "batch_size": {"default": 256, "tiny": 64, "paper": 256}[size],
          "checkpoint_every": {"default": 250, "tiny": 20, "paper": 500}[size],
          "log_every": {"default": 50, "tiny": 10, "paper": 100}[size],
          "eval_every": {"default": 500, "tiny": 30, "paper": 1000}[size],
          "eval_batch_size": 512,
      }
  )
  config.platform = common.platform_config()
  config.parallel = common.parallel_config()
  return config
