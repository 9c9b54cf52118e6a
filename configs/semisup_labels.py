"""How much do unlabelled fields help? Labelled fraction x reconstruction weight sweep.

One run of the sweep (get_sweep() lists all six as dotted overrides):

  python launch/main.py --config=configs/semisup_labels.py --workdir=runs/semisup_labels/labelled0.1_lambda0 \\
      --config.data.labelled_fraction=0.1 --config.loss.reconstruction_weight=0

All six, one after another, with the table in runs/semisup_labels/grid.md
(rerunning the command finishes an interrupted grid):

  python launch/grid.py --config=configs/semisup_labels.py --workdir=runs/semisup_labels

(`launch/sweep.py` is the hyper-parameter search of the classifiers; this grid
is not a search.) The base run is the embedded demo of configs/semisup.py. The sweep trains it
with labels on 100%, 25% and 10% of the training fields, each with the
reconstruction loss on (lambda = 10, the original code's value: unlabelled
fields train the encoder through the decoder) and off (lambda = 0: the
unlabelled fields contribute nothing, a purely supervised baseline on the
labelled subset). Racah et al. (2017) found the reconstruction term helped
most when labels were scarce; compare map@0.5 in each run's summary.json.

Result on the development machine (2026-11-27, one seed per point), mAP@0.5
with / without the reconstruction loss: 100% labelled 0.522 / 0.541, 25%
0.433 / 0.419, 10% 0.326 / 0.304 -- the paper's direction, but differences of
1-2 points that one seed cannot separate from noise.
"""

from __future__ import annotations

import ml_collections

from configs import semisup

LABELLED_FRACTIONS = (1.0, 0.25, 0.1)
RECONSTRUCTION_WEIGHTS = (10.0, 0.0)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = semisup.get_config(arg)
  config.name = config.name.replace("semisup", "semisup_labels", 1)
  return config


def get_sweep(arg: str | None = None) -> list[dict]:
  """One dict per run: its name and the dotted overrides of `get_config(arg)`."""
  del arg  # the grid is the same at every size
  return [
    {
      "name": f"labelled{fraction:g}_lambda{weight:g}",
      "data.labelled_fraction": fraction,
      "loss.reconstruction_weight": weight,
    }
    for fraction in LABELLED_FRACTIONS
    for weight in RECONSTRUCTION_WEIGHTS
  ]
