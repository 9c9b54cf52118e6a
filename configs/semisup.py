"""Semi-supervised extreme-weather detector (Racah et al. 2017) on synthetic global fields.

  python launch/main.py --config=configs/semisup.py          # embedded demo, <= 15 min on 2 cores
  python launch/main.py --config=configs/semisup.py:tiny     # seconds, for tests
  python launch/main.py --config=configs/semisup.py:paper    # the paper's network, 768x1152x16

The default trains on 16-channel CAM5-like global fields from
`climjax.data.synthetic.generate_fields` on a 192x288 grid (0.94 x 1.25 deg,
4x coarser than the 25 km CAM5 grid) with planted TDs, TCs, ETCs and ARs:
640 consecutive 6-hourly training fields, 160 held-out fields from another
seed. The network is the paper's, narrowed to 1/8 of its filters (16, 32, 64)
and cut to three stride-2 layers: a 24x36 grid of 8-px cells. At this
resolution a TC's box is 5-14 px, and with the paper's 64-px-equivalent cells
(16 px here, four layers) boxes were placed too coarsely: after 300 steps
mAP@0.5 was 0.22 against 0.41 with 8-px cells. For the same reason the box
loss is smooth-L1 with beta = 1/9 (as in Faster R-CNN) rather than 1, which
took mAP@0.5 from 0.16 to 0.41 at 300 steps (measured on these data). The
convolutions are climjax's matrix-product CPU kernels ("fast"): with XLA's
own, the transposed convolutions' weight gradient makes a step ~12x slower.

Measured from a fresh clone on the quiet 2-core development machine,
2026-11-27: 6 min 05 s wall for the whole run, peak RSS 7.9 GB; held-out
mAP@0.5 = 0.528 and mAP@0.1 = 0.721 (standard VOC all-point AP; per class
@0.5: TD 0.33, TC 0.50, ETC 0.80, AR 0.47).

`:paper` is the paper's network (six layers, filters 128..1280, LeakyReLU
0.1, 64-px cells, lambda = 10, Adam 1e-4) on the full 768x1152 grid: 132.9M
parameters (532 MB), 640 GFLOP forward and 1.89 TFLOP forward + backward per
example. One training step runs on a 24 GiB CPU machine: peak RSS 4.5 GB at
batch 1 and 6.1 GB at batch 2 (`python launch/memory.py --width=1152 --batch=2`:
1.6 GB of parameters and Adam state, 3.3 GB of XLA temporaries; ~15 s per
example on 2 shared cores); its training length is a placeholder for a cluster run. (The scaled network of Kurth et al.'s talk,
"9 conv + 5 deconv, ~300 MB", is not this one: at 768x768 its size matches
`model.width = 0.75`, 74.8M parameters = 299 MB, but the layer counts do not:
here 6 conv + 3 head convs and 6 transposed convs, the paper's design.)
`model.time_steps > 1` selects the 3-D network
(3x5x5 kernels over that many consecutive fields).
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
  config.seed = 0

  config.data = ml_collections.ConfigDict(
    {
      # "synthetic", or fields from files: "extremeweather" (the released
      # climo_YYYY.h5 with their boxes) or "netcdf" (CAM5 output, boxes from the
      # TECA-style heuristics); data.height x data.width must then be the files' grid.
      "source": "synthetic",
      "input": "",  # file sources: a path, directory or glob
      "variables_map": "",  # netcdf: other names for CAM5 variables, e.g. "msl:PSL"
      "box_order": "",  # extremeweather boxes: "yxyx" | "xxyy" | "" (detect)
      "test_fraction": 0.2,  # file sources: the last fraction of times is the test split
      "nonfinite": "refuse",  # file sources: a NaN or Inf is refused, or "mask" (filled)
      "require_all_criteria": False,  # netcdf: refuse labels that skipped a criterion
      "data_dir": "runs/tfds",  # file sources: where the tfds dataset is built
      "height": {"default": 192, "tiny": 64, "paper": 768}[size],
      "width": {"default": 288, "tiny": 96, "paper": 1152}[size],
      "channels": EXTREMEWEATHER_CHANNELS,
      # File sources: at most this many snapshots of each split (0 = all).
      "num_train": {"default": 640, "tiny": 16, "paper": 1460}[size],
      "num_test": {"default": 160, "tiny": 8, "paper": 365}[size],
      # More than the released files' 15, so no planted event goes unlabelled.
      "max_boxes": 24,
      # Fraction of training fields whose boxes the loss sees; the rest train
      # only the reconstruction (configs/semisup_labels.py sweeps it).
      "labelled_fraction": 1.0,
      # Classes whose training boxes are removed ("TC", "TD,AR"): to the loss they are
      # background, their events still in the fields (configs/discovery.py).
      "withheld_classes": "",
      "seed": 0,
      # Synthetic: a directory to keep generated fields in and reuse (studies of
      # many runs on the same fields, configs/semisup_labels.py); "" generates each run.
      "synthetic_cache": "",
      # Synthetic event climate (climjax.data.synthetic.event_knobs): how many
      # events of each kind are born and how strong they are, times the default.
      "tc_rate": 1.0,
      "td_rate": 1.0,
      "etc_rate": 1.0,
      "ar_rate": 1.0,
      "tc_intensity": 1.0,  # TC pressure deficit (and warm core)
      "etc_intensity": 1.0,  # ETC pressure deficit
      "ar_intensity": 1.0,  # AR moisture excess
      "num_threads": 1,  # the batches are slices of in-memory arrays
      "prefetch": 2,
    }
  )
  config.model = ml_collections.ConfigDict(
    {
      "name": "detector",
      "width": {"default": 1 / 8, "tiny": 1 / 32, "paper": 1.0}[size],
      "num_layers": {"default": 3, "tiny": 3, "paper": 6}[size],
      "num_classes": 4,
      "time_steps": 1,  # > 1: the 3-D network over consecutive fields
      "temporal": "pool",  # 3-D only: "pool" time before the heads, or "keep"
      "negative_slope": 0.1,
      # Box sizes are regressed as log(size / anchor_size); the cell size is natural.
      "anchor_size": {"default": 8.0, "tiny": 8.0, "paper": 64.0}[size],
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
      "smooth_l1_beta": {"default": 1 / 9, "tiny": 1 / 9, "paper": 1.0}[size],
    }
  )
  config.optimizer = common.optimizer_config(
    learning_rate={"default": 1e-3, "tiny": 1e-3, "paper": 1e-4}[size],
    schedule={"default": "cosine", "tiny": "constant", "paper": "constant"}[size],
    warmup_steps={"default": 20, "tiny": 0, "paper": 0}[size],
  )
  config.train = ml_collections.ConfigDict(
    {
      "steps": {"default": 600, "tiny": 6, "paper": 20_000}[size],
      # paper: 6.1 GB peak RSS at 768x1152 (launch/memory.py); more fits in 24 GiB.
      "batch_size": {"default": 16, "tiny": 4, "paper": 2}[size],
      "checkpoint_every": {"default": 100, "tiny": 3, "paper": 500}[size],
      "log_every": {"default": 20, "tiny": 2, "paper": 50}[size],
      "eval_every": {"default": 200, "tiny": 0, "paper": 2000}[size],  # held-out mAP curve
      "eval_batch_size": {"default": 32, "tiny": 8, "paper": 2}[size],
    }
  )
  config.eval = ml_collections.ConfigDict(
    {
      "score_threshold": 0.05,  # what AP is computed over (a low threshold: the whole PR curve)
      "plot_score_threshold": 0.3,  # what detections_*.png draw
      "nms_iou_threshold": 0.3,
      "max_detections": 30,
      "num_plots": {"default": 4, "tiny": 1, "paper": 4}[size],
    }
  )
  config.platform = common.platform_config()
  config.parallel = common.parallel_config()
  return config
