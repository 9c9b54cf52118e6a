"""Semi-supervised extreme-weather detector (Racah et al. 2017) on synthetic global fields.

  python launch/main.py --config=configs/semisup.py          # embedded demo, <= 15 min on 2 cores
  python launch/main.py --config=configs/semisup.py:tiny     # seconds, for tests
  python launch/main.py --config=configs/semisup.py:paper    # the paper's network, 768x1152x16

The default trains on 16-channel CAM5-like global fields from
`climjax.data.synthetic.generate_fields`, downsampled 4x from the 25 km grid to
192x288 (0.94 x 1.25 deg), with planted TDs, TCs, ETCs and ARs. Four stride-2
layers give the paper's 12x18 grid of cells, each 16 px here = 64 px of the
full grid, so cells cover the same area as in the paper. Width 1/8 of the
paper's filters; "fast" (matrix-product) CPU convolutions, without which XLA's
transposed-convolution weight gradient makes a step ~12x slower. It should
reach mAP@0.5 >= 0.5 (standard VOC AP) on held-out synthetic fields; README
"Results" has the measured numbers and time.

`:paper` is the paper's network (filters 128..1280, LeakyReLU 0.1, lambda = 10,
Adam 1e-4) at the full 768x1152 grid, 132.9M parameters; its training length
here is a placeholder for a cluster run. `time_steps > 1` selects the 3-D
network (3x5x5 kernels over consecutive 6-hourly fields).
"""

from __future__ import annotations

import ml_collections

from climjax.data.variables import EXTREMEWEATHER_CHANNELS
from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  size = common.parse_arg(arg)
  config = ml_collections.ConfigDict()
  config.name = "semisup" if size == "default" else f"semisup_{size}"
  config.task = "detection"
  config.trainer = "detector"
  config.seed = 0

  config.data = ml_collections.ConfigDict(
    {
      "source": "synthetic",
      "height": {"default": 192, "tiny": 64, "paper": 768}[size],
      "width": {"default": 288, "tiny": 96, "paper": 1152}[size],
      "channels": EXTREMEWEATHER_CHANNELS,
      "num_train": {"default": 640, "tiny": 16, "paper": 1460}[size],
      "num_test": {"default": 160, "tiny": 8, "paper": 365}[size],
      # More than the released files' 15, so no planted event goes unlabelled.
      "max_boxes": 24,
      # Fraction of training fields whose boxes the loss sees; the rest train
      # only the reconstruction (configs/semisup_labels.py sweeps it).
      "labelled_fraction": 1.0,
      "seed": 0,
      "num_threads": 1,  # the batches are slices of in-memory arrays
      "prefetch": 2,
    }
  )
  config.model = ml_collections.ConfigDict(
    {
      "name": "detector",
      "width": {"default": 1 / 8, "tiny": 1 / 32, "paper": 1.0}[size],
      "num_layers": {"default": 4, "tiny": 3, "paper": 6}[size],
      "num_classes": 4,
      "time_steps": 1,  # > 1: the 3-D network over consecutive fields
      "temporal": "pool",  # 3-D only: "pool" time before the heads, or "keep"
      "negative_slope": 0.1,
      "anchor_size": {"default": 16.0, "tiny": 8.0, "paper": 64.0}[size],
      "conv_impl": {"default": "fast", "tiny": "fast", "paper": "fast"}[size],
    }
  )
  config.loss = ml_collections.ConfigDict(
    {
      "reconstruction_weight": 10.0,  # lambda of the original code
      "offset_weight": 5.0,
      "size_weight": 7.0,
      "no_object_weight": 0.5,
      "class_weight": 1.0,
      # Where the box loss turns linear (cell / log-size units), see losses.detection_loss.
      "smooth_l1_beta": 1.0,
    }
  )
  config.optimizer = common.optimizer_config(
    learning_rate={"default": 1e-3, "tiny": 1e-3, "paper": 1e-4}[size],
    schedule={"default": "cosine", "tiny": "constant", "paper": "constant"}[size],
    warmup_steps={"default": 20, "tiny": 0, "paper": 0}[size],
  )
  config.train = ml_collections.ConfigDict(
    {
      "steps": {"default": 400, "tiny": 6, "paper": 20_000}[size],
      "batch_size": {"default": 16, "tiny": 4, "paper": 8}[size],
      "checkpoint_every": {"default": 100, "tiny": 3, "paper": 500}[size],
      "log_every": {"default": 20, "tiny": 2, "paper": 50}[size],
      "eval_every": {"default": 0, "tiny": 0, "paper": 2000}[size],
      "eval_batch_size": {"default": 32, "tiny": 8, "paper": 4}[size],
    }
  )
  config.eval = ml_collections.ConfigDict(
    {
      "score_threshold": 0.05,
      "nms_iou_threshold": 0.3,
      "max_detections": 30,
      "num_plots": {"default": 4, "tiny": 1, "paper": 4}[size],
    }
  )
  config.platform = common.platform_config()
  config.parallel = common.parallel_config()
  return config
