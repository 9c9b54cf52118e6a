"""launch/sweep.py: search spaces, a 2-trial study end to end (logged, best saved, resumable)."""

import csv
import json
import os
import subprocess
import sys

import optuna
import pytest

from climjax.training.validate import ConfigError
from configs import ar, tc, wf
from launch import sweep

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _lines(path):
  with open(path) as f:
    return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def config(tmp_path_factory):
  config = tc.get_config("tiny")
  config.data.data_dir = str(tmp_path_factory.mktemp("tfds"))
  config.platform.allocator = "system"
  return config


@pytest.mark.parametrize("module", [tc, ar, wf])
def test_every_config_declares_a_space_for_every_method(module):
  space = module.get_search_space()
  assert set(space) == set(sweep.METHODS)
  config = module.get_config("tiny")
  trial = optuna.trial.FixedTrial(
    {
      name: spec[1][0] if spec[0] == "categorical" else spec[1]
      for name, spec in space["cnn"].items()
    }
  )
  params = sweep.suggest(trial, space["cnn"])
  assert sweep.with_params(config, params).train.batch_size == params["train.batch_size"]
  settings = module.get_sweep("tiny")
  assert 0 < settings.validation_fraction < 1 and settings.table_trials >= 1


def test_suggest_kinds_and_with_params():
  space = {
    "a": ("float", 0.0, 1.0),
    "b": ("log_float", 1e-3, 1.0),
    "c": ("int", 1, 4),
    "d": ("log_int", 1, 64),
    "e": ("categorical", ("x", None)),
  }
  params = sweep.suggest(
    optuna.trial.FixedTrial({"a": 0.5, "b": 0.01, "c": 2, "d": 8, "e": None}), space
  )
  assert params == {"a": 0.5, "b": 0.01, "c": 2, "d": 8, "e": None}
  with pytest.raises(ConfigError, match="unknown kind"):
    sweep.suggest(optuna.trial.FixedTrial({"f": 1}), {"f": ("uniform", 0, 1)})
  config = tc.get_config("tiny")
  tuned = sweep.with_params(
    config, {"optimizer.learning_rate": 0.01, "optimizer.warmup_steps": 7.0}
  )
  assert tuned.optimizer.learning_rate == 0.01 and tuned.optimizer.warmup_steps == 7
  assert isinstance(tuned.optimizer.warmup_steps, int)
  assert config.optimizer.learning_rate != 0.01  # the original is untouched
  with pytest.raises(ConfigError, match="not in the config"):
    sweep.with_params(config, {"optimizer.beta9": 1.0})


def test_baseline_sweep_logs_trials_saves_best_and_continues(config, tmp_path):
  workdir = str(tmp_path / "lr")
  kwargs = dict(
    sweep=tc.get_sweep("tiny"), search_space=tc.get_search_space(), method="lr", workdir=workdir
  )
  result = sweep.run_sweep(config, trials=2, **kwargs)
  logged = _lines(os.path.join(workdir, "trials.jsonl"))
  assert [t["number"] for t in logged] == [0, 1]
  assert all(0 <= t["validation_accuracy"] <= 1 and "C" in t["params"] for t in logged)
  with open(os.path.join(workdir, "trials.csv")) as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 2 and {"number", "validation_accuracy", "C", "fit_seconds"} <= set(rows[0])
  best = json.load(open(os.path.join(workdir, "best.json")))
  assert best["validation_accuracy"] == max(t["validation_accuracy"] for t in logged)
  assert best["method"] == "lr" and best["task"] == "tc" and "C" in best["params"]
  final = json.load(open(os.path.join(workdir, "final.json")))
  assert final["params"] == best["params"] and final["test_accuracy"] > 0.75
  assert result["final"]["test_accuracy"] == final["test_accuracy"]

  # The same workdir with --trials=3 runs one more trial, not three.
  sweep.run_sweep(config, trials=3, evaluate_best=False, **kwargs)
  assert [t["number"] for t in _lines(os.path.join(workdir, "trials.jsonl"))] == [0, 1, 2]


@pytest.mark.slow
def test_cnn_sweep_trains_on_the_fit_part_and_refits_on_train(config, tmp_path):
  workdir = tmp_path / "cnn"
  settings = tc.get_sweep("tiny")
  settings.cnn_steps = 8
  # The test network: what is under test is the sweep, not the paper's TC network.
  short = sweep.with_params(
    config, {"model.name": "tiny_cnn", "train.steps": 8, "train.checkpoint_every": 8}
  )
  result = sweep.run_sweep(
    short,
    sweep=settings,
    search_space=tc.get_search_space(),
    method="cnn",
    trials=2,
    workdir=str(workdir),
    log=lambda _: None,
  )
  trials = _lines(workdir / "trials.jsonl")
  assert len(trials) == 2 and all("optimizer.learning_rate" in t["params"] for t in trials)
  assert all(0 <= t["validation_accuracy"] <= 1 and "final_train_loss" in t for t in trials)
  best = json.load(open(workdir / "best.json"))
  assert best["method"] == "cnn" and best["params"] == result["best"]["params"]
  final = json.load(open(workdir / "final.json"))
  summary = json.load(open(workdir / "best_cnn" / "summary.json"))
  assert final["test_accuracy"] == summary["test_accuracy"] and summary["steps"] == 8
  assert final["params"] == best["params"] and final["num_train"] == 1024


def test_command_line(config, tmp_path):
  workdir = tmp_path / "knn"
  result = subprocess.run(
    [
      sys.executable,
      os.path.join(REPO, "launch", "sweep.py"),
      f"--config={REPO}/configs/tc.py:tiny",
      f"--config.data.data_dir={config.data.data_dir}",
      "--config.platform.allocator=system",
      "--method=knn",
      "--trials=1",
      "--noevaluate_best",
      f"--workdir={workdir}",
    ],
    cwd=tmp_path,
    env={**os.environ, "JAX_PLATFORMS": "cpu"},
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  assert "tc knn trial 1/1" in result.stdout
  assert json.load(open(workdir / "best.json"))["method"] == "knn"
  assert not (workdir / "final.json").exists()

  bad = subprocess.run(
    [
      sys.executable,
      os.path.join(REPO, "launch", "sweep.py"),
      f"--config={REPO}/configs/tc.py:tiny",
      "--config.platform.allocator=system",
      "--method=knn",
      "--trials=0",
      f"--workdir={tmp_path / 'bad'}",
    ],
    cwd=tmp_path,
    env={**os.environ, "JAX_PLATFORMS": "cpu"},
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert bad.returncode == 2
  assert bad.stderr.strip().splitlines() == ["climjax: error: --trials must be at least 1, got 0"]


def test_bad_method_is_refused(config, tmp_path):
  with pytest.raises(ConfigError, match="--method must be one of"):
    sweep.run_sweep(
      config,
      sweep=tc.get_sweep("tiny"),
      search_space=tc.get_search_space(),
      method="xgboost",
      trials=1,
      workdir=str(tmp_path),
    )
