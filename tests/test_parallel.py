"""climjax.parallel: the single-process pieces here, the MPI runs under mpiexec.

The MPI tests start `mpiexec -n N python -m mpi4py tests/mpi/protocol.py ...`
(or launch/mpirun.sh) as subprocesses with one XLA thread per rank, and check
the JSON report that rank 0 writes. They are sized to run together in well
under three minutes on two oversubscribed cores.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from conftest import check_time_split, needs_mpi

from climjax import parallel
from climjax.parallel import environment

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROTOCOL = os.path.join(REPO, "tests", "mpi", "protocol.py")
MPI_TIMEOUT_S = 240  # a hang fails the test instead of stalling CI




def _config(**values) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(values)


# ---- single process ------------------------------------------------------------


def test_single_topology_is_the_identity():
  topo = parallel.setup(_config(strategy="single"))
  assert (topo.rank, topo.size, topo.is_chief, topo.data_index, topo.data_count) == (
    0,
    1,
    True,
    0,
    1,
  )
  tree = {"w": np.ones(3)}
  assert topo.reduce_grads(tree) is tree
  topo.barrier()
  assert topo.allreduce_sum(np.array([2.0]))[0] == 2.0


def test_single_strategy_never_imports_mpi():
  code = (
    "import sys, ml_collections; from climjax import parallel; "
    "parallel.setup(ml_collections.ConfigDict({'strategy': 'single'})); "
    "assert not any(m.startswith(('mpi4py', 'mpi4jax')) for m in sys.modules), sorted(sys.modules)"
  )
  result = subprocess.run(
    [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
  )
  assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
  "values, message",
  [
    ({"strategy": "async"}, "parallel.strategy must be one of"),
    ({"strategy": "single", "scaling": "medium"}, "parallel.scaling must be one of"),
  ],
)
def test_bad_config_is_named(values, message):
  with pytest.raises(ValueError, match=message):
    parallel.setup(_config(**values))


def test_per_rank_batch_strong_and_weak():
  strong = parallel.Topology(data_count=4, scaling="strong")
  assert strong.per_rank_batch(256) == 64 and strong.global_batch(256) == 256
  weak = parallel.Topology(data_count=4, scaling="weak")
  assert weak.per_rank_batch(256) == 256 and weak.global_batch(256) == 1024
  with pytest.raises(ValueError, match="divide evenly"):
    strong.per_rank_batch(250)


def test_layout_counts_are_checked():
  from climjax.parallel import comm

  comm.check_counts("hybrid", 5, 2, 1)  # 4 workers in 2 groups of 2
  with pytest.raises(ValueError, match="cannot form"):
    comm.check_counts("hybrid", 4, 2, 1)  # 3 workers in 2 groups
  with pytest.raises(ValueError, match="leaves no workers"):
    comm.check_counts("hybrid", 2, 1, 2)
  with pytest.raises(ValueError, match="num_servers >= 1"):
    comm.check_counts("hybrid", 3, 1, 0)
  with pytest.raises(ValueError, match="one group and no servers"):
    comm.check_counts("sync", 2, 2, 0)
  # Workers first, servers last, groups of consecutive ranks.
  assert [comm.group_of(r, num_workers=4, num_groups=2) for r in range(5)] == [0, 0, 1, 1, -1]


def test_leaves_are_balanced_over_servers_by_size():
  from climjax.parallel import parameter_server as ps

  owner = ps.assign_leaves([100, 60, 50, 10], num_servers=2)
  loads = [
    sum(s for s, o in zip([100, 60, 50, 10], owner, strict=True) if o == k) for k in range(2)
  ]
  assert sorted(loads) == [110, 110]
  assert ps.assign_leaves([5, 5, 5], num_servers=1) == [0, 0, 0]


def test_shard_messages_round_trip_every_dtype():
  from climjax.parallel import parameter_server as ps

  tree = {
    "conv": {
      "kernel": np.arange(24, dtype=np.float32).reshape(2, 3, 4),
      "bias": np.ones(4, np.float32),
    },
    "count": np.array(7, np.int32),
    "half": np.linspace(0, 1, 5).astype(np.float16),
  }
  plan = ps.ShardPlan.from_tree(tree, num_servers=2)
  leaves = jax.tree.leaves(tree)
  for server in range(2):
    indices = plan.leaves_of(server)
    buf = plan.pack(leaves, indices, [3, 1, 9, -1])
    header, out = plan.unpack(buf, indices)
    assert header.tolist() == [3, 1, 9, -1]
    for i, leaf in zip(indices, out, strict=True):
      np.testing.assert_array_equal(leaf, leaves[i])
      assert leaf.dtype == leaves[i].dtype
  assert sorted(i for s in range(2) for i in plan.leaves_of(s)) == list(range(len(leaves)))


def test_gradient_capture_returns_the_reduced_gradients_and_keeps_params():
  from climjax.models import cnn
  from climjax.parallel import parameter_server as ps
  from climjax.training.state import create_train_state
  from climjax.training.steps import train_step

  model = cnn.TinyNet()
  capture = ps.gradient_capture()
  state = jax.jit(lambda rng: create_train_state(model, capture, rng, (1, 32, 32, 8)))(
    jax.random.key(0)
  )
  batch = {
    "patch": np.random.default_rng(0).normal(size=(4, 32, 32, 8)).astype(np.float32),
    "label": np.array([0, 1, 0, 1], np.int32),
  }
  halve = functools.partial(jax.tree.map, lambda g: g / 2)  # a stand-in for a group all-reduce
  new, _ = jax.jit(
    functools.partial(train_step, apply_fn=model.apply, tx=capture, reduce_grads=halve)
  )(state, batch)

  def loss(p):
    from climjax import losses

    logits = model.apply({"params": p}, batch["patch"], train=True)
    return losses.softmax_cross_entropy(logits=logits, labels=batch["label"])[0]

  expected = jax.tree.map(lambda g: g / 2, jax.grad(loss)(state.params))
  for got, want in zip(jax.tree.leaves(new.opt_state), jax.tree.leaves(expected), strict=True):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
  for got, want in zip(jax.tree.leaves(new.params), jax.tree.leaves(state.params), strict=True):
    np.testing.assert_array_equal(got, want)


def test_summary_aggregates_ranks():
  from climjax.parallel import parameter_server as ps

  timings = {"compute": 6.0, "communication": 2.0, "waiting": 1.0, "input": 1.0,
             "steps": 4, "wall": 10.5}  # fmt: skip
  ranks = [
    {
      "role": "worker",
      "group": 0,
      "is_leader": True,
      "group_examples": 100,
      "wall_s": 2.0,
      "timings": timings,
    },
    {
      "role": "worker",
      "group": 1,
      "is_leader": True,
      "group_examples": 50,
      "wall_s": 2.0,
      "timings": timings,
    },
    {
      "role": "server",
      "version": 6,
      "staleness": [0, 1, 1, 2, 0, 4],
      "updates_by_group": [4, 2],
      "timings": timings,
    },
  ]
  summary = ps.summarize(ranks, num_groups=2)
  assert summary["examples_per_second_by_group"] == [50.0, 25.0]
  assert summary["staleness_max"] == 4 and summary["staleness_mean"] == pytest.approx(8 / 6)
  assert summary["staleness_histogram"] == [2, 2, 1, 0, 1]
  assert summary["communication_fraction"] == pytest.approx(0.2)
  # The time split is per step of the mean worker (the servers' own is left out).
  assert summary["compute_seconds"] == pytest.approx(1.5)
  assert summary["communication_seconds"] == pytest.approx(0.5)
  assert summary["wait_seconds"] == summary["input_seconds"] == pytest.approx(0.25)
  assert summary["step_seconds"] == pytest.approx(10.5 / 4)
  assert summary["server_updates"] == 6 and summary["updates_by_group"] == [4, 2]


def test_gradient_lag_applies_each_update_one_step_late(tmp_path):
  """LaggedStrategy by hand on a quadratic with SGD: step k's gradient is applied
  after step k+1 has computed its own, and the last one at the end (a flush)."""
  import optax

  from climjax.parallel import lag
  from climjax.training.state import TrainState

  target, lr, steps = np.array([3.0, -1.0], np.float32), 0.1, 6
  strategy = lag.LaggedStrategy(parallel.Topology(), {}, None)
  step_tx = strategy.step_optimizer(optax.sgd(lr))
  params = {"w": jnp.array([1.0, 2.0])}
  state = TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=step_tx.init(params))

  @jax.jit
  def train_step(state):
    grads = jax.tree.map(lambda w: w - target, state.params)
    updates, opt_state = step_tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return state.replace(params=params, opt_state=opt_state)

  state, start, stop = strategy.restore(
    state, workdir=str(tmp_path), total_steps=steps, checkpoint_every=0, warm_up=None
  )
  assert (start, stop) == (0, False)
  w, previous_grad = np.array([1.0, 2.0]), np.zeros(2)
  for step in range(1, steps + 1):
    np.testing.assert_allclose(state.params["w"], w, rtol=1e-6)  # where step's gradient is taken
    grad = w - target
    state, stop = strategy.after_step(train_step(state), step=step, examples=1, started=0.0)
    w = w - lr * previous_grad  # the previous step's gradient, applied now
    previous_grad = grad
    assert stop == (step == steps)
  w = w - lr * previous_grad  # the flush after the last step
  final, split = strategy.finish(state)
  np.testing.assert_allclose(final["w"], w, rtol=1e-6)
  assert split["gradient_lag"] == 1
  strategy.close()


def test_mpi_environment_one_thread_per_rank_and_oversubscription():
  env = environment.mpi_environment({"XLA_FLAGS": "--xla_dump_to=/tmp/x"}, 3, cores=2)
  assert env["OMP_NUM_THREADS"] == "1" and env["JAX_PLATFORMS"] == "cpu"
  assert (
    "--xla_dump_to=/tmp/x" in env["XLA_FLAGS"]
    and "intra_op_parallelism_threads=1" in env["XLA_FLAGS"]
  )
  assert env["HYDRA_BINDING"] == "none" and env["MPIR_CVAR_CH4_PROGRESS_THROTTLE"] == "1"
  assert "HYDRA_BINDING" not in environment.mpi_environment({}, 2, cores=2)


# ---- under mpiexec -------------------------------------------------------------


def _mpi_env(num_ranks: int) -> dict[str, str]:
  env = environment.mpi_environment(os.environ, num_ranks)
  env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, env.get("PYTHONPATH", "")) if p)
  return env


def _protocol(num_ranks: int, mode: str, out, *args) -> dict:
  command = environment.mpiexec_command(
    num_ranks,
    [sys.executable, "-m", "mpi4py", PROTOCOL, mode, str(out), *map(str, args)],
    mpiexec=environment.find_mpiexec(),
  )
  result = subprocess.run(
    command,
    cwd=REPO,
    env=_mpi_env(num_ranks),
    capture_output=True,
    text=True,
    timeout=MPI_TIMEOUT_S,
  )
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  with open(out) as f:
    return json.load(f)


@needs_mpi
def test_sync_two_ranks_match_one_process_with_the_global_batch(tmp_path):
  report = _protocol(2, "sync", tmp_path / "sync.json", "--steps", 10)
  assert report["size"] == 2
  assert report["max_abs_diff"] <= 1e-5, report
  assert report["rank_spread"] == 0.0  # the ranks hold bit-identical parameters


@pytest.mark.slow
@needs_mpi
def test_hybrid_one_group_is_synchronous_and_resumes_exactly(tmp_path):
  ckpt = tmp_path / "servers"
  # 2 workers in one group + 1 server; stopped after 6 updates (checkpoints at 4 and 6).
  first = _protocol(3, "hybrid", tmp_path / "a.json", "--steps", 6, "--groups", 1, "--servers", 1,
                    "--workdir", ckpt, "--checkpoint_every", 4, "--reference", 0)  # fmt: skip
  assert first["server_updates"] == 6 and first["staleness_max"] == 0
  assert sorted(os.listdir(ckpt / "shard_0_of_1")) == [
    "version_000000004.npz",
    "version_000000006.npz",
  ]
  # The same run with a larger budget continues from update 6, data stream included.
  second = _protocol(3, "hybrid", tmp_path / "b.json", "--steps", 10, "--groups", 1, "--servers", 1,
                     "--workdir", ckpt, "--checkpoint_every", 4)  # fmt: skip
  assert second["server_updates"] == 10 and second["updates_by_group"] == [4]
  servers = [r for r in second["ranks"] if r["role"] == "server"]
  assert servers[0]["resumed_from"] == 6
  assert second["max_abs_diff"] <= 1e-5, second  # same as 10 uninterrupted synchronous steps


@pytest.mark.slow
@needs_mpi
def test_hybrid_two_async_groups_two_servers(tmp_path):
  ckpt = tmp_path / "servers"
  report = _protocol(4, "hybrid", tmp_path / "h.json", "--steps", 20, "--groups", 2, "--servers", 2,
                     "--workdir", ckpt, "--checkpoint_every", 8)  # fmt: skip
  assert report["server_updates"] == 20
  assert sum(report["updates_by_group"]) == 20 and min(report["updates_by_group"]) > 0, report
  # One staleness entry per update and server; asynchronous groups see stale versions.
  assert sum(report["staleness_histogram"]) == 40
  assert report["staleness_max"] >= 1
  assert len(report["examples_per_second_by_group"]) == 2
  assert all(rate > 0 for rate in report["examples_per_second_by_group"])
  assert 0 < report["communication_fraction"] < 1
  # Both servers own leaves and each wrote only its own shard.
  assert sorted(set(report["leaf_owner"])) == [0, 1]
  assert sorted(os.listdir(ckpt)) == ["shard_0_of_2", "shard_1_of_2"]
  for shard in ("shard_0_of_2", "shard_1_of_2"):
    assert sorted(os.listdir(ckpt / shard)) == ["version_000000016.npz", "version_000000020.npz"]


@pytest.fixture(scope="module")
def tc_data_dir(tmp_path_factory):
  """The tiny TC data set, built once in this process before any MPI run reads it."""
  from climjax.data import tfds_builders
  from configs import tc

  config = tc.get_config("tiny")
  config.data.data_dir = str(tmp_path_factory.mktemp("tfds"))
  tfds_builders.prepare(tfds_builders.patches_builder(config.data, "tc"), key="patch")
  return config.data.data_dir


def _mpirun(num_ranks: int, workdir, data_dir, *overrides) -> dict:
  command = [
      "bash", os.path.join(REPO, "launch", "mpirun.sh"), str(num_ranks),
      f"--config={REPO}/configs/tc.py:tiny", f"--workdir={workdir}",
      f"--config.data.data_dir={data_dir}", "--config.platform.allocator=system", *overrides,
  ]  # fmt: skip
  env = {**os.environ, "ALLOCATOR": "system"}
  result = subprocess.run(
    command, cwd=REPO, env=env, capture_output=True, text=True, timeout=MPI_TIMEOUT_S
  )
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  with open(os.path.join(workdir, "summary.json")) as f:
    return json.load(f)


@pytest.mark.slow
@needs_mpi
def test_training_loop_sync_and_hybrid_one_group_agree(tc_data_dir, tmp_path):
  """launch/main.py under MPI: the lead's loop with sync, and the hybrid fork with G = 1."""
  common = ("--config.train.steps=20", "--config.train.eval_every=0")
  sync = _mpirun(2, tmp_path / "sync", tc_data_dir, "--config.parallel.strategy=sync", *common)
  assert sync["parallel_strategy"] == "sync" and sync["num_ranks"] == 2 and sync["steps"] == 20
  hybrid = _mpirun(3, tmp_path / "hybrid", tc_data_dir, "--config.parallel.strategy=hybrid",
                   "--config.parallel.num_servers=1", "--config.parallel.num_groups=1", *common)  # fmt: skip
  assert hybrid["parallel_strategy"] == "hybrid" and hybrid["steps"] == 20
  assert hybrid["staleness_max"] == 0
  # Same batches, same updates: the same model up to float rounding.
  assert hybrid["test_loss"] == pytest.approx(sync["test_loss"], abs=1e-4)
  # Both split their steps into compute, communication, waiting and input.
  for summary in (sync, hybrid):
    check_time_split(summary)
    assert summary["communication_seconds"] > 0
  for key in (
    "examples_per_second_by_group",
    "staleness_mean",
    "staleness_max",
    "communication_fraction",
  ):
    assert key in hybrid
  assert os.path.exists(
    tmp_path / "hybrid" / "parameter_servers" / "shard_0_of_1" / "version_000000020.npz"
  )
  assert not os.path.exists(tmp_path / "hybrid" / "checkpoints")  # the servers are the only writers


def test_shard_messages_take_jax_arrays():
  # Servers and leaders pack whatever the step returns; jax arrays must round-trip too.
  from climjax.parallel import parameter_server as ps

  tree = {"w": jnp.arange(6, dtype=jnp.float32).reshape(2, 3)}
  plan = ps.ShardPlan.from_tree(tree, 1)
  _, out = plan.unpack(plan.pack(jax.tree.leaves(tree), (0,), [0, 0, 0, 0]), (0,))
  np.testing.assert_array_equal(out[0], np.asarray(tree["w"]))


def test_straggler_delay_is_inside_the_step():
  import time

  from climjax.parallel import sync

  config = _config(straggler_rank=0, straggler_delay=0.3)
  assert sync.straggler_delay(config, rank=0) == 0.3 and sync.straggler_delay(config, rank=1) == 0.0
  step = jax.jit(sync.with_delay(lambda g: g, 0.3))
  tree = {"w": jnp.ones(3), "b": jnp.zeros(1)}
  jax.block_until_ready(step(tree))  # compile
  t0 = time.perf_counter()
  out = jax.block_until_ready(step(tree))
  assert time.perf_counter() - t0 >= 0.3
  np.testing.assert_array_equal(out["b"], tree["b"])


@pytest.mark.slow
@needs_mpi
def test_gradient_lag_under_mpi_is_the_one_process_lag(tc_data_dir, tmp_path):
  """sync + gradient_lag=1 on 2 ranks (all-reduce on a host thread, overlapped)
  trains the same model as one process with the lag and the global batch."""
  from climjax.training import train
  from configs import tc

  common = ("--config.train.steps=30", "--config.train.eval_every=0")
  lagged = _mpirun(2, tmp_path / "sync", tc_data_dir, "--config.parallel.strategy=sync",
                   "--config.parallel.gradient_lag=1", *common)  # fmt: skip
  assert lagged["gradient_lag"] == 1 and lagged["steps"] == 30
  check_time_split(lagged)
  assert lagged["hidden_communication_seconds"] > 0
  config = tc.get_config("tiny")
  config.data.data_dir = tc_data_dir
  config.platform.allocator = "system"
  config.train.update(steps=30, eval_every=0)
  config.parallel.gradient_lag = 1
  single = train.train_and_evaluate(config, str(tmp_path / "single"))
  assert lagged["test_loss"] == pytest.approx(single["test_loss"], abs=1e-4)
