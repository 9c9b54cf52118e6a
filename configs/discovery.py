"""Pattern discovery: a detector trained with one class's labels withheld, its encoder probed.

  python launch/discover.py --config=configs/discovery.py        # TC withheld, 3 seeds
  python launch/discover.py --config=configs/discovery.py:all    # TD, TC, ETC, AR in turn
  python launch/discover.py --config=configs/discovery.py:tiny   # seconds, for tests

Each (withheld class, seed) is one run of the embedded demo detector
(configs/semisup.py, the same synthetic fields) through the one training loop
with `data.withheld_classes` set: the class's training boxes are removed, so the
heads learn that its events are background while the reconstruction loss still
sees them. launch/discover.py then embeds every grid cell of the held-out fields
with the trained encoder and measures, for the withheld class
(climjax.evaluation.discovery): purity and recall of the best-matching k-means
and HDBSCAN cluster, and a linear probe trained on 1, 5 and 25 labelled cells,
against the same measures on the raw fields pooled over each cell and on a
randomly initialised encoder; mean +- std over `discovery.seeds`.

Budget: each run trains DISCOVERY_STEPS = 400 steps (the demo trains 600) so
that three seeds of one withheld class stay within ~30 min on 2 cores; the
fields are generated once (`data.synthetic_cache`, shared with
configs/semisup_labels.py).
"""

from __future__ import annotations

import ml_collections

from climjax.data.variables import CLASS_NAMES
from configs import semisup

DISCOVERY_STEPS = 400


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  if arg not in (None, "", "default", "all", "tiny"):
    raise ValueError(f"unknown config argument {arg!r}; expected one of ('tiny', 'all')")
  tiny = arg == "tiny"
  config = semisup.get_config("tiny" if tiny else None)
  config.name = "discovery_tiny" if tiny else ("discovery_all" if arg == "all" else "discovery")
  # Generated once and reused by every run (tiny: generated per run, nothing left in runs/).
  config.data.synthetic_cache = "" if tiny else "runs/cache/synthetic"
  if not tiny:
    config.train.steps = DISCOVERY_STEPS
    config.train.eval_every = 0  # one held-out evaluation, at the end
    config.train.checkpoint_every = DISCOVERY_STEPS // 2
    config.eval.num_plots = 1
  config.discovery = ml_collections.ConfigDict(
    {
      # Withheld in turn, one training run per class and seed.
      "classes": ",".join(CLASS_NAMES) if arg == "all" else "TC",
      "seeds": "0,1" if tiny else "0,1,2",  # config.seed of each run (init and batch order)
      # The cells measured: at most this many of each class and of the background.
      "cells_per_class": 40 if tiny else 1500,
      "kmeans_clusters": 4 if tiny else 8,
      "hdbscan_min_cluster_size": 5 if tiny else 25,
      "probe_shots": "1,5" if tiny else "1,5,25",
      "probe_draws": 3 if tiny else 20,
      "tsne_points": 120 if tiny else 3000,
      "num_maps": 1 if tiny else 3,  # held-out fields shown with the discovered cells
    }
  )
  return config
