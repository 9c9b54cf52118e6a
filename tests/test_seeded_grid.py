"""climjax.evaluation.seeded_grid: mean ± std over seeds and paired comparisons, by hand."""

import math

import numpy as np
import pytest
from scipy import stats

from climjax.evaluation import seeded_grid

KW = {"x": "f", "compare": "w", "seed": "seed"}


def _rows():
  # f=1: w=10 beats w=0 by exactly 0.1 on every seed; f=0.1: mixed, and seed 2 of w=10 unfinished.
  base = {0: 0.50, 1: 0.40, 2: 0.45}
  rows = [{"f": 1.0, "w": 0.0, "seed": s, "m": v} for s, v in base.items()]
  rows += [{"f": 1.0, "w": 10.0, "seed": s, "m": v + 0.1} for s, v in base.items()]
  rows += [{"f": 0.1, "w": 0.0, "seed": s, "m": v} for s, v in ((0, 0.2), (1, 0.3), (2, 0.25))]
  rows += [{"f": 0.1, "w": 10.0, "seed": s, "m": v} for s, v in ((0, 0.3), (1, 0.28), (2, None))]
  return rows


def test_summary_is_mean_and_sample_std_of_the_finished_seeds():
  out = {(r["f"], r["w"]): r for r in seeded_grid.summarise(_rows(), metric="m", **KW)}
  assert out[1.0, 0.0]["n"] == 3
  assert out[1.0, 0.0]["mean"] == pytest.approx(0.45)
  assert out[1.0, 0.0]["std"] == pytest.approx(np.std([0.5, 0.4, 0.45], ddof=1))
  assert out[0.1, 10.0]["n"] == 2 and out[0.1, 10.0]["mean"] == pytest.approx(0.29)
  assert out[0.1, 10.0]["seeds"] == [0, 1]


def test_paired_comparison_pairs_by_seed_and_matches_scipy():
  out = seeded_grid.paired_comparisons(_rows(), metric="m", baseline=0.0, **KW)
  at = {r["f"]: r for r in out}
  assert at[1.0]["mean_difference"] == pytest.approx(0.1) and at[1.0]["wins"] == 3
  # Constant differences: no t statistic (zero variance), not a division by zero.
  assert math.isnan(at[1.0]["t"])
  low = at[0.1]  # only seeds 0 and 1 are paired
  assert low["n"] == 2 and low["wins"] == 1 and low["losses"] == 1
  expected = stats.ttest_rel([0.3, 0.28], [0.2, 0.3])
  assert low["p"] == pytest.approx(expected.pvalue) and low["t"] == pytest.approx(
    expected.statistic
  )


def test_write_study_tables_and_plot(tmp_path):
  paths = seeded_grid.write_study(str(tmp_path), _rows(), metrics=["m"], baseline=0.0,
                                  x_label="labelled", compare_label="λ", **KW)  # fmt: skip
  text = open(paths["md"]).read()
  assert "0.450 ± 0.050 (n=3)" in text and "+0.100 ± 0.000" in text and "| 3 / 0 |" in text
  assert open(paths["csv"]).read().count("\n") == 5
  assert (tmp_path / "study.png").stat().st_size > 5000
