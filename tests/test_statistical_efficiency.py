"""Simulated asynchrony (parallel.strategy="simulated") and the statistical-efficiency study's
bookkeeping: staleness drawn as configured, the slope fitted from real runs, the table."""

import json
import os

import numpy as np
import pytest
from conftest import check_time_split

from climjax.parallel import simulated
from climjax.training import train
from configs import statistical_efficiency as study_config
from configs import tc
from launch import statistical_efficiency as study


def test_staleness_distribution_from_a_histogram_or_the_model():
  probs, source = simulated.staleness_distribution({"num_groups": 2, "staleness_histogram": "1,3"})
  np.testing.assert_allclose(probs, [0.25, 0.75])
  assert "measured" in source
  probs, source = simulated.staleness_distribution({"num_groups": 5, "staleness_per_group": 0.5})
  assert np.dot(np.arange(probs.size), probs) == pytest.approx(2.0, rel=1e-6)  # Poisson mean
  assert "Poisson" in source
  probs, _ = simulated.staleness_distribution({"num_groups": 1})
  np.testing.assert_array_equal(probs, [1.0])  # one group: synchronous
  for bad in ("1,x", "-1,2", "0,0"):
    with pytest.raises(ValueError, match="staleness_histogram"):
      simulated.staleness_distribution({"num_groups": 2, "staleness_histogram": bad})


def test_simulated_groups_train_with_the_drawn_staleness(tmp_path):
  config = tc.get_config("tiny")
  config.data.data_dir = str(tmp_path / "tfds")
  config.platform.allocator = "system"
  config.train.update(steps=40, eval_every=20)
  config.parallel.update(strategy="simulated", num_groups=4, staleness_per_group=1.0)
  summary = train.train_and_evaluate(config, str(tmp_path / "run"))
  assert summary["simulated"] is True and summary["num_groups"] == 4 and summary["steps"] == 40
  # Drawn from Poisson(3), except that the first updates cannot be older than the run.
  assert sum(summary["staleness_histogram"]) == 40
  assert 1.5 < summary["staleness_mean"] < 4.5, summary["staleness_histogram"]
  check_time_split(summary)
  with open(tmp_path / "run" / "metrics.jsonl") as f:
    records = [json.loads(line) for line in f]
  assert any("test_accuracy" in r for r in records)  # the newest version evaluated mid-run
  assert any(r.get("staleness", 0) > 0 for r in records)


def _write_run(directory, *, histogram, accuracy_by_step, steps):
  os.makedirs(directory)
  with open(os.path.join(directory, "summary.json"), "w") as f:
    hist = np.asarray(histogram)
    mean = float(np.dot(np.arange(hist.size), hist) / hist.sum()) if hist.size else 0.0
    json.dump({"staleness_histogram": histogram, "staleness_mean": mean, "steps": steps,
               "test_accuracy": accuracy_by_step[-1][1]}, f)  # fmt: skip
  with open(os.path.join(directory, "metrics.jsonl"), "w") as f:
    for step, accuracy in accuracy_by_step:
      f.write(json.dumps({"step": step, "test_accuracy": accuracy}) + "\n")


def test_study_bookkeeping_on_written_runs(tmp_path):
  spec = study_config.get_study("tiny")
  spec.groups, spec.real_groups, spec.seeds = [1, 2, 4], [1, 2], [0, 1]
  workdir = str(tmp_path)
  curves = {
    1: [(10, 0.7), (20, 0.85)],
    2: [(10, 0.6), (20, 0.7), (30, 0.82)],
    4: [(10, 0.5), (20, 0.6), (30, 0.7)],  # never reaches 0.8
  }
  for seed in spec.seeds:
    _write_run(study.run_dir(workdir, "tc", 1, seed, False), histogram=[30],
               accuracy_by_step=curves[1], steps=30)  # fmt: skip
    _write_run(study.run_dir(workdir, "tc", 2, seed, False), histogram=[10, 20],
               accuracy_by_step=curves[2], steps=30)  # fmt: skip
    for g in spec.groups:
      _write_run(study.run_dir(workdir, "tc", g, seed, True), histogram=[5] * g,
                 accuracy_by_step=curves[g], steps=30)  # fmt: skip
  histograms = study.measured_staleness(workdir, "tc", [1, 2], spec.seeds)
  np.testing.assert_array_equal(histograms[2], [20, 40])  # summed over the seeds
  assert study.staleness_slope(histograms) == pytest.approx(2 / 3)  # mean 2/3 at G - 1 = 1
  rows = study.collect(spec, workdir, ["tc"])
  assert len(rows) == 2 * 2 + 3 * 2
  table = {(t["simulated"], t["groups"]): t for t in study.aggregate(rows)}
  assert table[(0, 1)]["mean"] == 20 and table[(0, 2)]["mean"] == 30
  assert table[(1, 4)]["reached"] == 0 and np.isnan(table[(1, 4)]["mean"])
  path = study.write_csv(rows, str(tmp_path / "se.csv"))
  with open(path) as f:
    header = f.readline().strip().split(",")
  assert header[:5] == ["model", "groups", "seed", "simulated", "steps_to_target"]
  assert os.path.exists(study.plot(study.aggregate(rows), spec, str(tmp_path / "se.png")))


def test_unknown_model_is_one_line(capsys):
  assert study.main(["--config=configs/statistical_efficiency.py:tiny", "--only=resnet"]) == 2
  assert "unknown models ['resnet']" in capsys.readouterr().err
