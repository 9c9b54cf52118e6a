"""The TC classifier end to end on the tiny config: trains, checkpoints, resumes, improves."""

import json
import os

import pytest
from conftest import check_time_split

from climjax.training import train, validate
from configs import tc


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("tfds"))


def _config(data_dir, **train_overrides):
  config = tc.get_config("tiny")
  config.data.data_dir = data_dir
  config.platform.allocator = "system"
  config.train.update(train_overrides)
  return config


def _lines(path):
  with open(path) as f:
    return [json.loads(line) for line in f]


def test_trains_checkpoints_resumes_and_improves(data_dir, tmp_path):
  workdir = str(tmp_path / "run")
  # A first run stopped early (as if killed after its step-40 checkpoint).
  first = train.train_and_evaluate(_config(data_dir, steps=40), workdir)
  assert first["steps"] == 40 and first["resumed_from_step"] == 0
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["20", "40"]

  # The same command with more steps continues from step 40, not from zero.
  summary = train.train_and_evaluate(_config(data_dir, steps=120), workdir)
  assert summary["resumed_from_step"] == 40 and summary["steps"] == 120
  assert summary["train_step_compilations"] == 1  # no recompilation after the first step
  # FLOPs from XLA's cost analysis agree with the analytic conv+matmul count
  # (XLA also counts elementwise work, so it is a little higher).
  assert 1.0 <= summary["flops_per_example"] / summary["analytic_flops_per_example"] < 1.3
  assert summary["gflops_per_second"] > 0
  # One process: no communication; the split adds up to the measured step.
  check_time_split(summary)
  assert summary["communication_seconds"] == summary["wait_seconds"] == 0
  # Better than chance on held-out patches (the tiny run is seconds long).
  assert summary["test_accuracy"] > 0.75, summary
  assert summary["train_accuracy"] > 0.75, summary

  on_disk = json.load(open(os.path.join(workdir, "summary.json")))
  for key in ("test_accuracy", "train_accuracy", "steps", "examples_per_second", "wall_seconds"):
    assert key in on_disk
  made_by = on_disk["provenance"]  # code, commit, packages, machine, memory
  assert made_by["climjax_version"] and made_by["git_commit"] and made_by["packages"]["jax"]
  assert made_by["peak_rss_mb"] > 0 and made_by["cores"] >= 1
  logged = [r["step"] for r in _lines(os.path.join(workdir, "metrics.jsonl")) if "loss" in r]
  assert logged == sorted(set(logged)) and logged[-1] == 120  # one entry per step, none twice
  records = _lines(os.path.join(workdir, "metrics.jsonl"))
  # curves.png's held-out curve ends at the final evaluation; the learning rate is logged.
  assert records[-1] == {"step": 120, "test_accuracy": summary["test_accuracy"],
                         "test_loss": summary["test_loss"]}  # fmt: skip
  assert all("learning_rate" in r for r in records if "loss" in r)
  assert os.path.exists(os.path.join(workdir, "eval", "accuracy.md"))
  assert os.path.exists(os.path.join(workdir, "plots", "curves.png"))
  assert json.load(open(os.path.join(workdir, "config.json")))["task"] == "tc"


@pytest.mark.slow
def test_gradient_lag_resumes_as_the_same_run(data_dir, tmp_path):
  """With parallel.gradient_lag=1 a checkpoint holds no update in flight: stopping at
  step 40 and resuming to 60 gives the uninterrupted 60-step run."""
  whole = _config(data_dir, steps=60, eval_every=0)
  whole.parallel.gradient_lag = 1
  straight = train.train_and_evaluate(whole, str(tmp_path / "straight"))
  assert straight["gradient_lag"] == 1 and straight["steps"] == 60
  check_time_split(straight)
  first = _config(data_dir, steps=40, eval_every=0)
  first.parallel.gradient_lag = 1
  train.train_and_evaluate(first, str(tmp_path / "resumed"))
  resumed = train.train_and_evaluate(whole, str(tmp_path / "resumed"))
  assert resumed["resumed_from_step"] == 40
  assert resumed["test_loss"] == pytest.approx(straight["test_loss"], abs=1e-5)
  assert resumed["test_accuracy"] == straight["test_accuracy"]


def test_a_finished_run_rerun_does_not_train_again(data_dir, tmp_path):
  workdir = str(tmp_path / "run")
  train.train_and_evaluate(_config(data_dir, steps=20), workdir)
  again = train.train_and_evaluate(_config(data_dir, steps=20), workdir)
  assert again["resumed_from_step"] == 20 and again["steps"] == 20
  # Another experiment in the same workdir is refused, naming what changed ...
  other = _config(data_dir, steps=20, batch_size=32)
  other.data.source = "netcdf"
  with pytest.raises(validate.ConfigError, match=r"holds a run with another config.*data.source"):
    train.train_and_evaluate(other, workdir)
  # ... unless forced (here only the batch differs; the finished run trains nothing).
  forced = train.train_and_evaluate(_config(data_dir, steps=20, batch_size=32), workdir, resume="force")
  assert forced["resumed_from_step"] == 20


@pytest.mark.parametrize(
  "field, value, message",
  [
    ("train.batch_size", -4, "train.batch_size must be a positive integer"),
    ("train.steps", 0, "train.steps must be a positive integer"),
    ("model.name", "resnet", "model.name must be one of"),
    ("optimizer.name", "lion", "optimizer.name must be one of"),
    ("parallel.strategy", "async", "parallel.strategy must be one of"),
  ],
)
def test_bad_config_values_name_the_field(data_dir, tmp_path, field, value, message):
  config = _config(data_dir)
  section, key = field.split(".")
  config[section][key] = value
  with pytest.raises(validate.ConfigError, match=message):
    train.train_and_evaluate(config, str(tmp_path / "run"))


def test_unwritable_workdir_is_a_config_error(data_dir, tmp_path):
  blocker = tmp_path / "file"
  blocker.write_text("not a directory")
  with pytest.raises(validate.ConfigError, match="--workdir"):
    train.train_and_evaluate(_config(data_dir), str(blocker / "run"))
