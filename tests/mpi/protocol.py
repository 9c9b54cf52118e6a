"""MPI checks of climjax.parallel on the TC CNN, run under mpiexec by tests/test_parallel.py.

  mpiexec -n 2 python tests/mpi/protocol.py sync OUT.json
  mpiexec -n 3 python tests/mpi/protocol.py hybrid OUT.json --groups 1 --servers 1 --steps 10 --workdir DIR

Trains the paper's TC network on deterministic random batches (each step's global
batch is a function of the step) and writes, on rank 0, a JSON report: the
largest difference from the same training in one process with the global batch,
and for hybrid the protocol statistics. The pytest side makes the assertions.
"""

from __future__ import annotations

import argparse
import functools
import json
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from climjax import parallel
from climjax.models import cnn
from climjax.parallel import comm as comm_lib
from climjax.training.state import create_train_state
from climjax.training.steps import train_step

GLOBAL_BATCH = 8
LEARNING_RATE = 3e-3


def global_batch(step: int) -> dict[str, np.ndarray]:
  """The step's global batch: noise patches, half of them with a planted warm, low-PSL core."""
  rng = np.random.default_rng(1000 + step)
  x = rng.normal(size=(GLOBAL_BATCH, 32, 32, 8)).astype(np.float32)
  y = (np.arange(GLOBAL_BATCH) + step) % 2
  x[y == 1, 12:20, 12:20, 0] -= 2.0
  x[y == 1, 12:20, 12:20, 3] += 2.0
  return {"patch": x, "label": y.astype(np.int32)}


def shard(batch: dict, index: int, count: int) -> dict:
  local = GLOBAL_BATCH // count
  return {k: v[index * local : (index + 1) * local] for k, v in batch.items()}


def init_state(tx) -> tuple:
  """The TC network's initial state; jitted, as one compilation instead of one per op."""
  model = cnn.TCNet()
  state = jax.jit(lambda rng: create_train_state(model, tx, rng, (1, 32, 32, 8)))(jax.random.key(0))
  return model, state


def single_process_reference(steps: int):
  tx = optax.adam(LEARNING_RATE)
  model, state = init_state(tx)
  step = jax.jit(functools.partial(train_step, apply_fn=model.apply, tx=tx))
  for k in range(steps):
    state, _ = step(state, global_batch(k))
  return state.params


def max_abs_diff(a, b) -> float:
  return float(
    max(
      jnp.max(jnp.abs(x - y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )
  )


def run_sync(args) -> dict | None:
  topo = parallel.setup(ml_collections.ConfigDict({"strategy": "sync", "scaling": "strong"}))
  tx = optax.adam(LEARNING_RATE)
  model, state = init_state(tx)
  step = jax.jit(
    functools.partial(train_step, apply_fn=model.apply, tx=tx, reduce_grads=topo.reduce_grads)
  )
  assert topo.per_rank_batch(GLOBAL_BATCH) == GLOBAL_BATCH // topo.size
  for k in range(args.steps):
    state, _ = step(state, shard(global_batch(k), topo.data_index, topo.data_count))
  params = jax.device_get(state.params)
  # Every rank must hold the same parameters: their mean equals each one.
  mean = jax.tree.map(lambda p: topo.allreduce_sum(np.asarray(p)) / topo.size, params)
  spread = topo.allreduce_sum(np.asarray([max_abs_diff(mean, params)]))[0]
  if not topo.is_chief:
    return None
  return {
    "size": topo.size,
    "max_abs_diff": max_abs_diff(single_process_reference(args.steps), params),
    "rank_spread": float(spread),
  }


def run_hybrid(args) -> dict | None:
  from climjax.parallel import hybrid

  config = ml_collections.ConfigDict(
    {
      "strategy": "hybrid",
      "num_groups": args.groups,
      "num_servers": args.servers,
      "scaling": "strong",
      "straggler_rank": args.straggler_rank,
      "straggler_delay": args.straggler_delay,
    }
  )
  topo = parallel.setup(config)
  layout = hybrid.layout_from_config(config)
  model, state = init_state(hybrid.ps.gradient_capture())
  params = jax.device_get(state.params)
  plan = hybrid.ps.ShardPlan.from_tree(params, layout.num_servers)
  if layout.is_server:
    server = hybrid.ps.ParameterServer(
      layout,
      plan,
      jax.tree.leaves(params),
      optax.adam(LEARNING_RATE),
      total_updates=args.steps,
      checkpoint_dir=args.workdir,
      checkpoint_every=args.checkpoint_every,
    )
    server.restore()
    stats = server.serve()
  else:
    capture = hybrid.ps.gradient_capture()
    step = jax.jit(
      functools.partial(
        train_step, apply_fn=model.apply, tx=capture, reduce_grads=topo.reduce_grads
      )
    )
    group = hybrid.ps.ComputeGroup(layout, plan)
    local = topo.per_rank_batch(GLOBAL_BATCH)
    # Compile before the first pull so that no group starts late by a compile.
    state, _ = step(state, shard(global_batch(0), 0, topo.data_count))
    jax.block_until_ready(state)
    comm_lib.wait_all([layout.worker_comm.Ibarrier()])
    leaves, stop = group.pull()
    steps = group.start_step
    start = time.perf_counter()
    while not stop:
      batch = shard(global_batch(steps), topo.data_index, topo.data_count)
      t0 = time.perf_counter()
      state, _ = step(state.replace(params=plan.unflatten(leaves)), batch)
      grads = [np.asarray(g) for g in jax.tree.leaves(jax.device_get(state.opt_state))]
      group.timings.compute += time.perf_counter() - t0
      steps += 1
      leaves, stop = group.push_pull(grads, step=steps, examples=local * group.group_size)
    wall = time.perf_counter() - start
    group.finish()
    group_steps = steps - group.start_step
    group.timings.steps, group.timings.wall = group_steps, wall
    stats = {
      "role": "worker",
      "rank": layout.rank,
      "group": layout.group,
      "is_leader": layout.is_leader,
      "steps": group_steps,
      "group_examples": group_steps * local * group.group_size,
      "wall_s": wall,
      "timings": group.timings.as_dict(),
      "start_step": group.start_step,
    }
  final = hybrid.ps.final_params(layout, plan)
  gathered = hybrid.ps.gather_stats(layout, stats)
  if layout.rank != 0:
    return None
  report = hybrid.ps.summarize(gathered, layout.num_groups)
  report["leaf_owner"] = list(plan.owner)
  report["num_leaves"] = len(plan.owner)
  if args.groups == 1 and args.reference:
    report["max_abs_diff"] = max_abs_diff(
      single_process_reference(args.steps), plan.unflatten(final)
    )
  return report


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("mode", choices=["sync", "hybrid"])
  parser.add_argument("out")
  parser.add_argument("--steps", type=int, default=10)
  parser.add_argument("--groups", type=int, default=1)
  parser.add_argument("--servers", type=int, default=1)
  parser.add_argument("--workdir", default=None)
  parser.add_argument("--checkpoint_every", type=int, default=0)
  parser.add_argument("--reference", type=int, default=1, help="compare with one process (G=1)")
  parser.add_argument("--straggler_rank", type=int, default=-1)
  parser.add_argument("--straggler_delay", type=float, default=0.0)
  args = parser.parse_args()
  with comm_lib.abort_on_exception():
    report = run_sync(args) if args.mode == "sync" else run_hybrid(args)
  if report is not None:
    with open(args.out, "w") as f:
      json.dump(report, f, indent=1)


if __name__ == "__main__":
  main()
