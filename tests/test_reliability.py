"""Interrupted runs lose nothing: SIGTERM checkpoints, SIGKILL resumes, a dying MPI rank ends the job.

Each run is `launch/main.py` (or `launch/mpirun.sh`) in a subprocess on the TC
tiny config, stopped from outside as a scheduler or a crash would stop it.
"""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import orbax.checkpoint as ocp
import pytest
from conftest import needs_mpi

pytestmark = pytest.mark.reliability

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT_S = 240  # a hang fails the test instead of stalling CI
STEPS = 600  # a few seconds of training: long enough to be stopped in the middle


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("tfds"))


def _args(workdir, data_dir, *overrides):
  return [
    f"--config={REPO}/configs/tc.py:tiny", f"--workdir={workdir}",
    f"--config.data.data_dir={data_dir}", "--config.platform.allocator=system",
    f"--config.train.steps={STEPS}", "--config.train.checkpoint_every=100",
    "--config.train.log_every=100", "--config.train.eval_every=0", *overrides,
  ]  # fmt: skip


def _single(workdir, data_dir, *overrides):
  return [
    sys.executable,
    os.path.join(REPO, "launch", "main.py"),
    *_args(workdir, data_dir, *overrides),
  ]


def _mpi(ranks, workdir, data_dir, *overrides):
  script = os.path.join(REPO, "launch", "mpirun.sh")
  return ["bash", script, str(ranks), *_args(workdir, data_dir, *overrides)]


def _env():
  return {**os.environ, "ALLOCATOR": "system"}


def _run(command):
  result = subprocess.run(
    command, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=TIMEOUT_S
  )
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  return result


def _start(command):
  return subprocess.Popen(
    command, cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    start_new_session=True,
  )  # fmt: skip


def _steps(workdir):
  """The finalised orbax checkpoint steps in `workdir` (tmp dirs of unfinished writes excluded)."""
  path = os.path.join(workdir, "checkpoints")
  return sorted(int(d) for d in os.listdir(path) if d.isdigit()) if os.path.isdir(path) else []


def _wait_for_checkpoint(workdir, process, *, at_least=100):
  deadline = time.time() + TIMEOUT_S
  while time.time() < deadline:
    if any(s >= at_least for s in _steps(workdir)):
      return
    if process.poll() is not None:
      out, err = process.communicate()
      pytest.fail(f"the run ended before its first checkpoint: {out[-2000:]}{err[-2000:]}")
    time.sleep(0.2)
  process.kill()
  pytest.fail("no checkpoint in time")


def _params(workdir, step=STEPS):
  restored = ocp.PyTreeCheckpointer().restore(
    os.path.join(workdir, "checkpoints", str(step), "default")
  )
  return restored["params"]


def _assert_same_params(a, b):
  flat_a, flat_b = (dict(_flatten(x)) for x in (a, b))
  assert flat_a.keys() == flat_b.keys()
  for key in flat_a:
    np.testing.assert_array_equal(flat_a[key], flat_b[key], err_msg=key)


def _flatten(tree, prefix=""):
  if isinstance(tree, dict):
    for k, v in tree.items():
      yield from _flatten(v, f"{prefix}/{k}")
  else:
    yield prefix, np.asarray(tree)


def _summary(workdir):
  with open(os.path.join(workdir, "summary.json")) as f:
    return json.load(f)


@pytest.fixture(scope="module")
def uninterrupted(data_dir, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("straight"))
  _run(_single(workdir, data_dir))
  return workdir


@pytest.mark.slow
def test_sigterm_checkpoints_and_the_rerun_ends_bit_identical(data_dir, uninterrupted, tmp_path):
  workdir = str(tmp_path / "run")
  process = _start(_single(workdir, data_dir))
  _wait_for_checkpoint(workdir, process)
  process.send_signal(signal.SIGTERM)
  out, err = process.communicate(timeout=TIMEOUT_S)
  if process.returncode == 0:
    pytest.skip("the run finished before the signal arrived")
  assert process.returncode == 143, out[-2000:] + err[-2000:]
  line = err.strip().splitlines()[-1]
  assert line.startswith("climjax: error: SIGTERM at step ") and "rerun the same command" in line
  stopped_at = int(line.split("step ")[1].split(":")[0])
  assert _steps(workdir)[-1] == stopped_at  # the checkpoint of the step it stopped after
  _run(_single(workdir, data_dir))
  assert _summary(workdir)["resumed_from_step"] == stopped_at
  _assert_same_params(_params(workdir), _params(uninterrupted))


@pytest.mark.slow
def test_sigkill_mid_run_and_mid_write_resume_from_the_last_complete_checkpoint(
  data_dir, uninterrupted, tmp_path
):
  workdir = str(tmp_path / "run")
  process = _start(_single(workdir, data_dir))
  _wait_for_checkpoint(workdir, process, at_least=200)
  process.kill()
  process.communicate(timeout=TIMEOUT_S)
  last = _steps(workdir)[-1]
  # A write the kill interrupted: orbax writes into a tmp directory and renames it when
  # complete, so a half-written step is a tmp directory, never a step directory.
  half = os.path.join(workdir, "checkpoints", f"{last + 100}.orbax-checkpoint-tmp-1234")
  os.makedirs(os.path.join(half, "default"))
  with open(os.path.join(half, "default", "partial"), "wb") as f:
    f.write(b"\0" * 100)
  _run(_single(workdir, data_dir))
  assert _summary(workdir)["resumed_from_step"] == last
  _assert_same_params(_params(workdir), _params(uninterrupted))


@pytest.mark.slow
@needs_mpi
def test_sync_sigterm_checkpoints_once_and_resumes_bit_identical(data_dir, tmp_path):
  slow = ("--config.parallel.strategy=sync", "--config.parallel.straggler_rank=1",
          "--config.parallel.straggler_delay=0.004")  # fmt: skip
  straight = str(tmp_path / "straight")
  _run(_mpi(2, straight, data_dir, *slow))
  workdir = str(tmp_path / "run")
  process = _start(_mpi(2, workdir, data_dir, *slow))
  _wait_for_checkpoint(workdir, process)
  os.killpg(process.pid, signal.SIGTERM)  # as a scheduler does: the launcher and the ranks
  out, err = process.communicate(timeout=TIMEOUT_S)
  assert process.returncode != 0, out[-2000:] + err[-2000:]
  said = [line for line in err.splitlines() if line.startswith("climjax: error: SIGTERM at step ")]
  assert len(said) == 1, err[-3000:]  # the chief, once
  stopped_at = int(said[0].split("step ")[1].split(":")[0])
  assert _steps(workdir)[-1] == stopped_at
  _run(_mpi(2, workdir, data_dir, *slow))
  assert _summary(workdir)["resumed_from_step"] == stopped_at
  _assert_same_params(_params(workdir), _params(straight))


def _rank_pid(launcher_pid, rank, *, timeout=60):
  """The pid of MPI rank `rank` started under `launcher_pid` (from its PMI_RANK)."""
  deadline = time.time() + timeout
  while time.time() < deadline:
    for pid in filter(str.isdigit, os.listdir("/proc")):
      try:
        with open(f"/proc/{pid}/environ", "rb") as f:
          env = dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
      except OSError:
        continue
      if env.get(b"PMI_RANK") == str(rank).encode() and launcher_pid in _ancestors(int(pid)):
        return int(pid)
    time.sleep(0.2)
  pytest.fail(f"no process of rank {rank}")


def _ancestors(pid):
  seen = []
  for _ in range(20):
    try:
      with open(f"/proc/{pid}/stat") as f:
        pid = int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
      break
    seen.append(pid)
    if pid <= 1:
      break
  return seen


@needs_mpi
@pytest.mark.parametrize(
  "ranks,overrides,victim",
  [
    (2, ("--config.parallel.strategy=sync",), 1),
    (3, ("--config.parallel.strategy=hybrid", "--config.parallel.num_servers=1",
         "--config.parallel.num_groups=2"), 2),  # the parameter server
  ],
  ids=["sync-worker", "hybrid-server"],
)  # fmt: skip
def test_a_dying_rank_ends_the_job_in_bounded_time_naming_it(
  data_dir, tmp_path, ranks, overrides, victim
):
  workdir = str(tmp_path / "run")
  process = _start(_mpi(ranks, workdir, data_dir, *overrides))
  pid = _rank_pid(process.pid, victim)
  metrics = os.path.join(workdir, "metrics.jsonl")
  deadline = time.time() + TIMEOUT_S
  while not os.path.exists(metrics) and time.time() < deadline and process.poll() is None:
    time.sleep(0.2)  # training has started
  os.kill(pid, signal.SIGKILL)
  killed = time.time()
  out, err = process.communicate(timeout=TIMEOUT_S)
  assert time.time() - killed <= 60
  assert process.returncode != 0
  line = err.strip().splitlines()[-1]
  # The rank killed is named (mpiexec's own SIGKILLs may add the ranks it stopped).
  assert line.startswith("climjax: error: MPI rank") and f"rank {victim} (" in line, err[-2000:]
  assert "SIGKILL" in line and "rerun the same command" in line
  if overrides[0].endswith("sync"):
    assert all(_params(workdir, s) for s in _steps(workdir))  # what is there restores
  else:
    shard = os.path.join(workdir, "parameter_servers", "shard_0_of_1")
    for name in os.listdir(shard) if os.path.isdir(shard) else []:
      assert name.endswith(".npz"), name  # no half-written file under a final name
      np.load(os.path.join(shard, name))


def test_a_diverging_run_stops_in_one_line_and_keeps_only_finite_checkpoints(data_dir, tmp_path):
  workdir = str(tmp_path / "run")
  command = _single(workdir, data_dir, "--config.optimizer.name=sgd", "--config.optimizer.learning_rate=20",
                    "--config.optimizer.warmup_steps=300", "--config.train.checkpoint_every=5",
                    "--config.train.log_every=5")  # fmt: skip
  result = subprocess.run(command, cwd=REPO, env=_env(), capture_output=True, text=True,
                          timeout=TIMEOUT_S)  # fmt: skip
  assert result.returncode == 3, result.stdout[-2000:] + result.stderr[-2000:]
  line = result.stderr.strip().splitlines()[-1]
  assert line.startswith("climjax: error: non-finite ") and "tc train split" in line, line
  kept = _steps(workdir)
  assert kept and f"last good checkpoint (step {kept[-1]})" in line
  for step in kept:
    for name, value in _flatten(_params(workdir, step)):
      assert np.isfinite(value).all(), (step, name)


@needs_mpi
@pytest.mark.parametrize(
  "ranks,overrides,fragment",
  [
    (2, ("--config.parallel.strategy=sync", "--config.train.batch_size=63"),
     "train.batch_size: strong scaling splits batch_size=63 over 2 ranks"),
    (3, ("--config.parallel.strategy=hybrid", "--config.parallel.num_servers=1",
         "--config.parallel.num_groups=3"), "cannot form parallel.num_groups=3"),
    (3, ("--config.parallel.strategy=hybrid", "--config.parallel.num_servers=0"),
     "needs num_servers >= 1"),
    (2, ("--config.parallel.strategy=single",), "parallel.strategy='single' is one process"),
  ],
  ids=["batch-not-divisible", "more-groups-than-workers", "no-servers", "single-on-two-ranks"],
)  # fmt: skip
def test_impossible_mpi_layouts_are_one_line_printed_once(
  data_dir, tmp_path, ranks, overrides, fragment
):
  command = _mpi(ranks, str(tmp_path / "run"), data_dir, *overrides)
  result = subprocess.run(command, cwd=REPO, env=_env(), capture_output=True, text=True,
                          timeout=TIMEOUT_S)  # fmt: skip
  assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
  errors = [line for line in result.stderr.splitlines() if line.startswith("climjax: error:")]
  assert len(errors) == 1 and fragment in errors[0], result.stderr[-2000:]
  assert "Traceback" not in result.stderr
