"""Pattern discovery: cell truth, cluster matching, the probe, withheld classes, the launcher."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from climjax.evaluation import discovery
from climjax.tasks import detection
from climjax.training.validate import ConfigError
from configs import discovery as discovery_config
from configs import semisup

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_cell_classes_take_the_smallest_covering_box_and_ignore_padding():
  # One 4x4-pixel image of 2x2 cells (cell size 2): a big AR over the whole top row,
  # a small TC over the top-left cell, a padded row that must be ignored.
  boxes = np.array([[[0, 0, 2, 4], [0, 0, 2, 2], [2, 0, 4, 4]]], np.float32)
  classes = np.array([[3, 1, 0]])
  mask = np.array([[1.0, 1.0, 0.0]])
  out = discovery.cell_classes(boxes, classes, mask, (2, 2), 2)
  np.testing.assert_array_equal(out[0], [[1, 3], [discovery.BACKGROUND, discovery.BACKGROUND]])


def test_pooled_fields_are_cell_means_and_stds():
  fields = np.arange(2 * 4 * 4 * 1, dtype=np.float32).reshape(2, 4, 4, 1)
  pooled = discovery.pooled_fields(fields, 2)
  assert pooled.shape == (2, 2, 2, 2)
  np.testing.assert_allclose(pooled[0, 0, 0], [np.mean([0, 1, 4, 5]), np.std([0, 1, 4, 5])])


def test_sample_cells_caps_each_class():
  labels = np.array([-1] * 50 + [0] * 3 + [2] * 20)
  picked = discovery.sample_cells(labels, per_class=10, seed=1)
  counts = {c: int(np.sum(labels[picked] == c)) for c in (-1, 0, 2)}
  assert counts == {-1: 10, 0: 3, 2: 10}
  assert np.all(np.diff(picked) > 0)


def test_best_match_finds_the_cluster_by_f1_and_skips_noise():
  assignment = np.array([0, 0, 0, 0, 1, 1, -1, -1, 2, 2])
  target = np.array([1, 1, 1, 0, 0, 0, 1, 1, 1, 0], bool)
  best = discovery.best_match(assignment, target)
  assert best["cluster"] == 0
  assert best["purity"] == pytest.approx(3 / 4)
  assert best["recall"] == pytest.approx(3 / 6)
  assert best["num_clusters"] == 3
  none = discovery.best_match(np.array([-1, -1]), np.array([True, False]))
  assert none["cluster"] is None and none["purity"] == 0.0


def test_probe_and_clusters_separate_a_separable_class_and_not_noise():
  rng = np.random.default_rng(0)
  labels = np.repeat([-1, 0, 1], 60)
  separable = rng.normal(size=(180, 6)) + 6.0 * (labels == 1)[:, None]
  noise = rng.normal(size=(180, 6))
  kw = {"target": 1, "shots": 5, "draws": 5}
  assert discovery.probe(separable, labels, **kw)[0] > 0.95
  assert discovery.probe(noise, labels, **kw)[0] < 0.75
  scores, clusters = discovery.measure(
    separable, labels, target=1, k=3, min_cluster_size=10, shots=(1, 5), draws=3
  )
  assert scores["kmeans_purity"] > 0.95 and scores["kmeans_recall"] > 0.95
  assert {"probe@1", "probe@5", "hdbscan_purity"} <= set(scores)
  kmeans = next(c for c in clusters if c.method == "kmeans")
  np.testing.assert_array_equal(kmeans.assign(separable[:20]), kmeans.assignment[:20])


def test_probe_with_one_shot_leaves_cells_to_test_when_a_class_is_tiny():
  labels = np.array([-1] * 30 + [1] * 2)
  x = np.random.default_rng(1).normal(size=(32, 3))
  mean, std = discovery.probe(x, labels, target=1, shots=25, draws=2)
  assert 0.0 <= mean <= 1.0 and np.isfinite(std)


def test_withheld_classes_remove_only_their_boxes():
  config = semisup.get_config("tiny")
  config.data.withheld_classes = "TC, AR"
  ids = detection.withheld_classes(config)
  assert ids == [1, 3]
  split = {
    "box_classes": np.array([[0, 1, 3], [1, 2, 0]]),
    "box_mask": np.array([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]], np.float32),
  }
  out = detection.withhold(split, ids)
  np.testing.assert_array_equal(out["box_mask"], [[1, 0, 0], [0, 1, 0]])
  np.testing.assert_array_equal(split["box_mask"][0], [1, 1, 1])  # the input is not changed
  assert detection.withhold(split, []) is split


def test_an_unknown_withheld_class_is_a_config_error():
  config = semisup.get_config("tiny")
  config.data.withheld_classes = "TC,HURRICANE"
  with pytest.raises(ConfigError, match="data.withheld_classes: unknown class 'HURRICANE'"):
    detection.validate_config(config)


def test_discovery_configs():
  default, every, tiny = (discovery_config.get_config(a) for a in (None, "all", "tiny"))
  assert default.discovery.classes == "TC"
  assert every.discovery.classes == "TD,TC,ETC,AR"
  assert len(default.discovery.seeds.split(",")) >= 3
  assert default.discovery.probe_shots == "1,5,25"
  assert tiny.data.synthetic_cache == ""
  with pytest.raises(ValueError, match="unknown config argument"):
    discovery_config.get_config("paper")


def _discover(*args, timeout=600):
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  return subprocess.run(
    [sys.executable, os.path.join(REPO, "launch", "discover.py"), *args],
    capture_output=True, text=True, cwd=REPO, env=env, timeout=timeout,
  )  # fmt: skip


def test_discover_refuses_an_unknown_class_in_one_line(tmp_path):
  result = _discover(
    "--config=configs/discovery.py:tiny", f"--workdir={tmp_path}",
    "--config.discovery.classes=XX",
  )  # fmt: skip
  assert result.returncode != 0
  assert "discovery.classes" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_tiny_discovery_trains_measures_writes_and_is_not_retrained(tmp_path):
  args = ("--config=configs/discovery.py:tiny", f"--workdir={tmp_path}")
  result = _discover(*args)
  assert result.returncode == 0, result.stderr[-3000:]
  for seed in (0, 1):
    summary = json.loads((tmp_path / "withheld_TC" / f"seed{seed}" / "summary.json").read_text())
    assert summary["withheld_classes"] == ["TC"]
  table = (tmp_path / "discovery.md").read_text()
  for name in ("trained encoder", "random encoder", "raw fields (pooled)"):
    assert f"| TC | {name} |" in table
  assert " ± " in table  # two seeds: a standard deviation
  results = json.loads((tmp_path / "discovery.json").read_text())
  per_seed = results[0]["per_seed"]["trained encoder"]
  assert [s["seed"] for s in per_seed] == [0, 1]
  for s in per_seed:
    assert 0.0 <= s["kmeans_purity"] <= 1.0 and 0.0 <= s["probe@5"] <= 1.0
  assert (tmp_path / "plots" / "embedding_TC.png").stat().st_size > 10_000
  assert (tmp_path / "discovery.csv").read_text().startswith("withheld,representation,seeds")

  again = _discover(*args)  # finished runs are kept, not trained again
  assert again.returncode == 0, again.stderr[-3000:]
  assert again.stdout.count("trained earlier, kept") == 2
