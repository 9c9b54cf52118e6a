"""launch/grid.py: every point of configs/semisup_labels.py's grid runs through launch/main.py."""

import csv
import json
import os

import pytest

from climjax.training.validate import ConfigError
from configs import semisup_labels
from launch import grid

CONFIG = "configs/semisup_labels.py:tiny"


def test_grid_covers_fractions_weights_and_seeds():
  points = semisup_labels.get_sweep()
  keys = [(p["data.labelled_fraction"], p["loss.reconstruction_weight"], p["seed"]) for p in points]
  assert set(keys) == {
    (f, w, s) for f in (1.0, 0.25, 0.1, 0.05) for w in (10.0, 1.0, 0.0) for s in (0, 1, 2)
  }
  assert len(set(keys)) == len(points) == 36
  assert len({p["name"] for p in points}) == len(points)
  # Seeds outermost: a study cut short has every point at fewer seeds.
  assert [p["seed"] for p in points[:12]] == [0] * 12


def test_point_command_passes_overrides():
  point = {"name": "a", "data.labelled_fraction": 0.1, "loss.reconstruction_weight": 0.0}
  command = grid.point_command(CONFIG, "/tmp/x", point)
  assert "--config.data.labelled_fraction=0.1" in command
  assert "--config.loss.reconstruction_weight=0.0" in command
  assert "--workdir=/tmp/x" in command and not any("name" in c for c in command)


@pytest.mark.slow
def test_two_points_run_tabulate_and_are_not_rerun(tmp_path, monkeypatch, capsys):
  monkeypatch.chdir(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  only = ["labelled0.1_lambda10_seed0", "labelled0.1_lambda0_seed0"]
  assert grid.run_grid(CONFIG, str(tmp_path), ["map@0.5", "reconstruction_mse"], only=only) == 0
  for name, weight in zip(only, (10.0, 0.0), strict=True):
    with open(tmp_path / name / "config.json") as f:
      config = json.load(f)
    assert config["data"]["labelled_fraction"] == 0.1
    assert config["loss"]["reconstruction_weight"] == weight
  with open(tmp_path / "grid.csv") as f:
    rows = {row["run"]: row for row in csv.DictReader(f)}
  assert len(rows) == 36  # every point is listed; unfinished ones are empty
  assert all(rows[name]["map@0.5"] != "" for name in only)
  assert rows["labelled1_lambda10_seed0"]["map@0.5"] == ""
  assert "labelled0.1_lambda0_seed0" in (tmp_path / "grid.md").read_text()
  study = (tmp_path / "study.md").read_text()  # the seeded summary, one seed finished per point
  assert "(n=1)" in study and "(n=0)" in study and (tmp_path / "study.png").stat().st_size > 5000

  capsys.readouterr()
  assert grid.run_grid(CONFIG, str(tmp_path), ["map@0.5"], only=only) == 0
  assert capsys.readouterr().out.count("done earlier") == 2


def test_unknown_point_is_a_config_error(tmp_path):
  with pytest.raises(ConfigError, match="no grid points named"):
    grid.run_grid(CONFIG, str(tmp_path), ["map@0.5"], only=["labelled0.5_lambda1"])
