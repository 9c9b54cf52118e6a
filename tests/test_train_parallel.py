"""The one training loop under MPI for the detector: sync equals one process, hybrid
with one group equals sync, and asynchronous hybrid trains, evaluates and resumes.

Each run is `launch/mpirun.sh N launch/main.py --config=configs/semisup.py:tiny`
(the README's command), with XLA's convolutions, which compile fastest; the
parameters are compared from the checkpoints the runs leave (orbax for single
and sync, the parameter servers' shards for hybrid).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types

import jax
import numpy as np
import pytest
from conftest import needs_mpi

from climjax import checkpointing
from climjax.tasks import detection
from climjax.training import optim, train
from configs import semisup

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MPI_TIMEOUT_S = 300
STEPS = 5
# The tiny detector, XLA convolutions (compile in seconds), no mid-run checkpoint.
OVERRIDES = {
  "model.conv_impl": "xla",
  "train.steps": STEPS,
  "train.checkpoint_every": 100,
  "platform.allocator": "system",
}




def _config(**overrides):
  config = semisup.get_config("tiny")
  for key, value in {**OVERRIDES, **overrides}.items():
    section, field = key.split(".")
    config[section][field] = value
  return config


def _mpirun(num_ranks: int, workdir, **overrides) -> dict:
  flags = [f"--config.{k}={v}" for k, v in {**OVERRIDES, **overrides}.items()]
  command = [
    "bash", os.path.join(REPO, "launch", "mpirun.sh"), str(num_ranks),
    f"--config={REPO}/configs/semisup.py:tiny", f"--workdir={workdir}", *flags,
  ]  # fmt: skip
  result = subprocess.run(
    command,
    cwd=REPO,
    env={**os.environ, "ALLOCATOR": "system"},
    capture_output=True,
    text=True,
    timeout=MPI_TIMEOUT_S,
  )
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  with open(os.path.join(workdir, "summary.json")) as f:
    return json.load(f)


def _checkpoint_leaves(workdir) -> list[np.ndarray]:
  """The parameters of the newest orbax checkpoint in `workdir`, as flat leaves."""
  config = _config()
  model = detection.make_model(config)
  tx = optim.make_optimizer(config.optimizer, config.train.steps)
  shape = (config.data.height, config.data.width, len(config.data.channels))
  state = detection.init_state(config, model, tx, types.SimpleNamespace(example_shape=shape))
  manager = checkpointing.make_manager(os.path.join(workdir, "checkpoints"))
  state, step = checkpointing.restore_latest(manager, state)
  manager.close()
  assert step == STEPS
  return [np.asarray(x) for x in jax.tree.leaves(state.params)]


def _server_leaves(workdir, version: int) -> list[np.ndarray]:
  path = os.path.join(workdir, "parameter_servers", "shard_0_of_1", f"version_{version:09d}.npz")
  with np.load(path) as data:
    return [data[f"param_{k}"] for k in range(sum(1 for n in data.files if n.startswith("param_")))]


def _max_abs_diff(a, b) -> float:
  assert len(a) == len(b)
  return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b, strict=True))


@pytest.mark.slow
@needs_mpi
def test_detector_sync_equals_one_process_and_hybrid_one_group_equals_sync(tmp_path):
  single = train.train_and_evaluate(_config(), str(tmp_path / "single"))
  sync = _mpirun(2, tmp_path / "sync", **{"parallel.strategy": "sync"})
  assert sync["parallel_strategy"] == "sync" and sync["num_ranks"] == 2 and sync["steps"] == STEPS
  reference = _checkpoint_leaves(tmp_path / "single")
  synced = _checkpoint_leaves(tmp_path / "sync")
  assert _max_abs_diff(reference, synced) <= 1e-5
  assert single["steps"] == STEPS and 0.0 <= sync["map@0.5"] <= 1.0

  hybrid = _mpirun(
    3,
    tmp_path / "hybrid",
    **{"parallel.strategy": "hybrid", "parallel.num_groups": 1, "parallel.num_servers": 1},
  )
  assert hybrid["steps"] == STEPS and hybrid["staleness_max"] == 0
  assert _max_abs_diff(synced, _server_leaves(tmp_path / "hybrid", STEPS)) <= 1e-5
  assert not os.path.exists(tmp_path / "hybrid" / "checkpoints")  # the servers own them


@pytest.mark.slow
@needs_mpi
def test_detector_hybrid_two_groups_evaluates_reports_staleness_and_resumes(tmp_path):
  hybrid = {"parallel.strategy": "hybrid", "parallel.num_groups": 2, "parallel.num_servers": 1}
  workdir = tmp_path / "run"
  first = _mpirun(3, workdir, **hybrid, **{"train.steps": 6, "train.checkpoint_every": 3})
  assert first["steps"] == 6 and first["parallel_strategy"] == "hybrid"
  assert first["num_groups"] == 2 and first["num_servers"] == 1
  assert 0.0 <= first["map@0.5"] <= 1.0 and set(first["ap@0.1"]) == {"TD", "TC", "ETC", "AR"}
  assert sum(first["updates_by_group"]) == 6 and len(first["examples_per_second_by_group"]) == 2
  assert first["staleness_mean"] >= 0 and sum(first["staleness_histogram"]) == 6
  assert os.path.exists(workdir / "predictions.nc") and os.path.exists(workdir / "eval" / "ap.csv")
  assert sorted(os.listdir(workdir / "parameter_servers" / "shard_0_of_1")) == [
    "version_000000003.npz",
    "version_000000006.npz",
  ]
  # The same command with a larger budget continues from the servers' update 6.
  second = _mpirun(3, workdir, **hybrid, **{"train.steps": 8, "train.checkpoint_every": 3})
  assert second["resumed_from_step"] == 6 and second["steps"] == 8
  with open(workdir / "metrics.jsonl") as f:
    steps = [r["step"] for r in map(json.loads, f) if "loss" in r]  # training records
  assert steps == sorted(set(steps)) and steps[-1] == 8


def test_hybrid_detector_is_accepted_by_validation():
  config = _config(**{"parallel.strategy": "hybrid", "parallel.num_servers": 1})
  train.validate_config(config)


if __name__ == "__main__":
  sys.exit(pytest.main([__file__, "-q"]))
