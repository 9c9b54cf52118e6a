"""launch/grid.py: every point of configs/semisup_labels.py's grid runs through launch/main.py."""

import csv
import json
import os

import pytest

from climjax.training.validate import ConfigError
from configs import semisup_labels
from launch import grid

CONFIG = "configs/semisup_labels.py:tiny"


def test_grid_covers_fractions_and_weights():
  points = semisup_labels.get_sweep()
  assert {(p["data.labelled_fraction"], p["loss.reconstruction_weight"]) for p in points} == {
    (f, w) for f in (1.0, 0.25, 0.1) for w in (10.0, 0.0)
  }
  assert len({p["name"] for p in points}) == len(points)


def test_point_command_passes_overrides():
  point = {"name": "a", "data.labelled_fraction": 0.1, "loss.reconstruction_weight": 0.0}
  command = grid.point_command(CONFIG, "/tmp/x", point)
  assert "--config.data.labelled_fraction=0.1" in command
  assert "--config.loss.reconstruction_weight=0.0" in command
  assert "--workdir=/tmp/x" in command and not any("name" in c for c in command)


@pytest.mark.slow
def test_two_points_run_tabulate_and_are_not_rerun(tmp_path, monkeypatch, capsys):
  monkeypatch.chdir(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  only = ["labelled0.1_lambda10", "labelled0.1_lambda0"]
  assert grid.run_grid(CONFIG, str(tmp_path), ["map@0.5", "reconstruction_mse"], only=only) == 0
  for name, weight in zip(only, (10.0, 0.0), strict=True):
    with open(tmp_path / name / "config.json") as f:
      config = json.load(f)
    assert config["data"]["labelled_fraction"] == 0.1
    assert config["loss"]["reconstruction_weight"] == weight
  with open(tmp_path / "grid.csv") as f:
    rows = {row["run"]: row for row in csv.DictReader(f)}
  assert len(rows) == 6  # every point is listed; unfinished ones are empty
  assert all(rows[name]["map@0.5"] != "" for name in only)
  assert rows["labelled1_lambda10"]["map@0.5"] == ""
  assert "labelled0.1_lambda0" in (tmp_path / "grid.md").read_text()

  capsys.readouterr()
  assert grid.run_grid(CONFIG, str(tmp_path), ["map@0.5"], only=only) == 0
  assert capsys.readouterr().out.count("done earlier") == 2


def test_unknown_point_is_a_config_error(tmp_path):
  with pytest.raises(ConfigError, match="no grid points named"):
    grid.run_grid(CONFIG, str(tmp_path), ["map@0.5"], only=["labelled0.5_lambda1"])
