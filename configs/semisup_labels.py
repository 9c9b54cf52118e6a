"""How much do unlabelled fields help? Labelled fraction x reconstruction weight x seed.

The study (36 runs, each a launch/main.py run in its own directory; rerunning
the command finishes an interrupted study):

  python launch/grid.py --config=configs/semisup_labels.py --workdir=runs/semisup_labels

writes runs/semisup_labels/grid.md (every run) and study.md / study.csv /
study.png (climjax.evaluation.seeded_grid): mAP@0.5 and mAP@0.1 as mean +- std
over the seeds for each labelled fraction and reconstruction weight, and per
fraction a paired comparison of each lambda > 0 against lambda = 0 (paired by
seed: the same initialisation and batch order).

The grid: labels on 100%, 25%, 10% and 5% of the training fields; the
reconstruction loss at lambda = 10 (the original code's value), 1, and 0 (off:
the unlabelled fields contribute nothing, a purely supervised baseline on the
labelled subset); three seeds (`config.seed`: initialisation and batch order).
The training and held-out fields (`data.seed`) and which fields are labelled
stay the same in every run. Racah et al. (2017) found the reconstruction term
helped most when labels were scarce.

Budget: the embedded demo (configs/semisup.py, 600 steps) takes ~6 min a run
here, 36 runs ~4 h on 2 cores; each run of the study trains STUDY_STEPS = 160
steps instead (the same cosine schedule, compressed) and generates the fields
once (`data.synthetic_cache`). Its mAP is therefore lower than the demo's; the
comparison between points is what the study measures.

One point by hand:

  python launch/main.py --config=configs/semisup_labels.py --workdir=runs/semisup_labels/labelled0.1_lambda0_seed0 \\
      --config.data.labelled_fraction=0.1 --config.loss.reconstruction_weight=0 --config.seed=0
"""

from __future__ import annotations

import ml_collections

from configs import semisup

LABELLED_FRACTIONS = (1.0, 0.25, 0.1, 0.05)
RECONSTRUCTION_WEIGHTS = (10.0, 1.0, 0.0)
SEEDS = (0, 1, 2)
STUDY_STEPS = 160


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = semisup.get_config(arg)
  config.name = config.name.replace("semisup", "semisup_labels", 1)
  if arg in (None, "", "default"):
    config.train.steps = STUDY_STEPS
    config.train.checkpoint_every = STUDY_STEPS // 2
    config.optimizer.warmup_steps = 10
    config.train.eval_every = 0  # one held-out evaluation, at the end
    config.eval.num_plots = 1
    config.data.synthetic_cache = "runs/cache/synthetic"
  return config


def get_sweep(arg: str | None = None) -> list[dict]:
  """One dict per run: its name and the dotted overrides of `get_config(arg)`."""
  del arg  # the grid is the same at every size
  return [
    {
      "name": f"labelled{fraction:g}_lambda{weight:g}_seed{seed}",
      "data.labelled_fraction": fraction,
      "loss.reconstruction_weight": weight,
      "seed": seed,
    }
    for seed in SEEDS  # outermost: an unfinished study has every point at fewer seeds
    for fraction in LABELLED_FRACTIONS
    for weight in RECONSTRUCTION_WEIGHTS
  ]


def get_study(arg: str | None = None) -> dict:
  """How launch/grid.py summarises the grid (climjax.evaluation.seeded_grid.write_study)."""
  del arg
  return {
    "x": "data.labelled_fraction",
    "compare": "loss.reconstruction_weight",
    "baseline": 0.0,
    "seed": "seed",
    "metrics": ["map@0.5", "map@0.1"],
    "x_label": "training fields with boxes",
    "compare_label": "λ",
  }
