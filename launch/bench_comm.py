"""Communication costs of synchronous training: mpi4jax vs mpi4py, and per step.

  python launch/bench_comm.py [--ranks=2] [--max_mb=300] [--out=runs/bench_comm.json]

Starts itself under `mpiexec -n RANKS` (one XLA thread per rank) and measures, in
one run:

1. All-reduce (sum, float32) of buffers from 1 KB to --max_mb MB: mpi4jax inside
   a jitted function on a jax array vs mpi4py's MPI_Allreduce on numpy buffers.
   Each time is the median over repetitions of the slowest rank.
2. The synchronous training step's communication share for the TC CNN (the
   paper's network, batch 256 split over the ranks): the step with the mpi4jax
   gradient all-reduce vs the same step with no reduction; share = 1 - local/sync,
   and the all-reduce of the gradient pytree timed alone, as a share of the step.
3. The same for the detector (climjax/models/detector.py, configs/semisup.py's
   default width, reconstruction loss) when that module is present.

Timings on a shared or oversubscribed machine carry the other processes' noise;
the report says how many cores there were.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
CHILD_FLAG = "--under_mpi"


def parse_args() -> argparse.Namespace:
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument("--ranks", type=int, default=2)
  parser.add_argument("--max_mb", type=float, default=300.0, help="largest buffer, MB")
  parser.add_argument("--steps", type=int, default=20, help="timed training steps per variant")
  parser.add_argument("--out", default=os.path.join(REPO, "runs", "bench_comm.json"))
  parser.add_argument(CHILD_FLAG, action="store_true", help=argparse.SUPPRESS)
  return parser.parse_args()


def spawn(args: argparse.Namespace) -> None:
  """Re-runs this script on `--ranks` MPI ranks with the environment MPI needs here."""
  from climjax.parallel import environment

  argv = [sys.executable, "-m", "mpi4py", os.path.abspath(__file__), CHILD_FLAG, *sys.argv[1:]]
  command = environment.mpiexec_command(args.ranks, argv, mpiexec=environment.find_mpiexec())
  env = environment.mpi_environment(os.environ, args.ranks)
  env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, env.get("PYTHONPATH", "")) if p)
  sys.exit(subprocess.call(command, env=env, cwd=REPO))


def buffer_sizes(max_bytes: int) -> list[int]:
  sizes, size = [], 1024
  while size < max_bytes:
    sizes.append(size)
    size *= 16
  return [*sizes, max_bytes]


def timed(fn, repeats: int, inner: int, barrier, slowest) -> float:
  """Median over `repeats` samples of the slowest rank's time per fn() call.

  A sample times `inner` calls back to back, so that the ranks' skew leaving the
  barrier is spread over many small operations instead of added to each.
  """
  fn()  # warm-up: compilation, first touch of the buffers
  times = []
  for _ in range(repeats):
    barrier()
    t0 = time.perf_counter()
    for _ in range(inner):
      fn()
    times.append(slowest((time.perf_counter() - t0) / inner))
  return float(sorted(times)[len(times) // 2])


def bench_allreduce(layout, args, log) -> list[dict]:
  import jax
  import jax.numpy as jnp
  import numpy as np

  from climjax.parallel import comm as comm_lib
  from climjax.parallel import sync

  barrier = comm_lib.blocking_barrier(layout.world)
  slowest = comm_lib.allreduce_max_host(layout.world)
  host_allreduce = comm_lib.blocking_allreduce_sum(layout.world)
  jax_allreduce = jax.jit(sync.allreduce_sum(layout.group_comm_jax))
  rows = []
  for nbytes in buffer_sizes(int(args.max_mb * 2**20)):
    n = nbytes // 4
    repeats = 9 if nbytes <= 64 * 2**20 else 3
    inner = max(1, min(100, 2**20 // nbytes))
    send = np.full(n, 1.0 + layout.rank, np.float32)
    recv = np.empty_like(send)
    t_mpi4py = timed(
      lambda send=send, recv=recv: host_allreduce(send, recv), repeats, inner, barrier, slowest
    )
    assert recv[0] == sum(1.0 + r for r in range(layout.size))
    del recv
    x = jnp.asarray(send)
    del send
    t_mpi4jax = timed(
      lambda x=x: jax_allreduce(x).block_until_ready(), repeats, inner, barrier, slowest
    )
    del x
    row = {
      "bytes": nbytes,
      "mpi4py_s": t_mpi4py,
      "mpi4jax_s": t_mpi4jax,
      "mpi4py_GBps": nbytes / t_mpi4py / 1e9,
      "mpi4jax_GBps": nbytes / t_mpi4jax / 1e9,
    }
    rows.append(row)
    log(
      f"  {nbytes / 2**20:10.3f} MB  mpi4py {t_mpi4py * 1e3:9.3f} ms  mpi4jax {t_mpi4jax * 1e3:9.3f} ms"
      f"  (mpi4jax/mpi4py {t_mpi4jax / t_mpi4py:5.2f})"
    )
  return rows


def step_share(layout, train_step, state, batch, args, barrier, slowest) -> dict:
  """Seconds per step with and without the gradient all-reduce, and the difference's share."""
  import jax

  from climjax.parallel import sync

  def per_step(reduce_grads) -> float:
    step = jax.jit(functools.partial(train_step, reduce_grads=reduce_grads))
    current, _ = step(state, batch)  # compile
    jax.block_until_ready(current)
    barrier()
    t0 = time.perf_counter()
    for _ in range(args.steps):
      current, metrics = step(current, batch)
      jax.block_until_ready(metrics)  # one step at a time, as the training loop logs
    return slowest((time.perf_counter() - t0) / args.steps)

  local = per_step(lambda g: g)
  reduce_grads = sync.allreduce_mean(layout.group_comm_jax)
  synced = per_step(reduce_grads)
  # The reduction alone, on gradient-shaped zeros: a second estimate that does not
  # rest on the difference of two noisy step times.
  reduce_alone = jax.jit(reduce_grads)
  zeros = jax.tree.map(jax.numpy.zeros_like, state.params)
  alone = timed(lambda: jax.block_until_ready(reduce_alone(zeros)), 9, 5, barrier, slowest)
  grad_bytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state.params))
  return {
    "step_local_s": local,
    "step_sync_s": synced,
    "communication_share": max(0.0, 1.0 - local / synced),
    "allreduce_alone_s": alone,
    "allreduce_alone_share": alone / synced,
    "gradient_bytes": int(grad_bytes),
  }


def bench_tc(layout, args) -> dict:
  import jax
  import numpy as np
  import optax

  from climjax.models import cnn
  from climjax.parallel import comm as comm_lib
  from climjax.training.state import create_train_state
  from climjax.training.steps import train_step

  model, tx = cnn.TCNet(), optax.adam(1e-3)
  state = jax.jit(lambda rng: create_train_state(model, tx, rng, (1, 32, 32, 8)))(jax.random.key(0))
  local = 256 // layout.size  # configs/tc.py's global batch, strong scaling
  rng = np.random.default_rng(layout.rank)
  batch = {
    "patch": rng.normal(size=(local, 32, 32, 8)).astype(np.float32),
    "label": rng.integers(0, 2, local).astype(np.int32),
  }
  step = functools.partial(train_step, apply_fn=model.apply, tx=tx)
  result = step_share(
    layout,
    step,
    state,
    batch,
    args,
    comm_lib.blocking_barrier(layout.world),
    comm_lib.allreduce_max_host(layout.world),
  )
  return {"model": "tc_cnn", "per_rank_batch": local, **result}


def bench_detector(layout, args) -> dict | None:
  if not os.path.exists(os.path.join(REPO, "climjax", "models", "detector.py")):
    return None
  import jax
  import jax.numpy as jnp
  import numpy as np
  import optax

  from climjax.models import detector
  from climjax.parallel import comm as comm_lib
  from climjax.training import steps as steps_lib
  from climjax.training.state import create_train_state
  from configs import semisup

  config = semisup.get_config()
  model = detector.make_detector(config.model)
  shape = detector.input_shape(config.model, config.data.height, config.data.width, 16)
  tx = optax.adam(1e-4)
  state = jax.jit(lambda rng: create_train_state(model, tx, rng, (1, *shape)))(jax.random.key(0))
  local = 2
  fields = np.random.default_rng(layout.rank).normal(size=(local, *shape)).astype(np.float32)
  batch = {
    "fields": fields,
    "boxes": np.zeros((local, 1, 4), np.float32),
    "box_classes": np.zeros((local, 1), np.int32),
    "box_mask": np.zeros((local, 1), np.float32),
    "labelled": np.zeros(local, np.float32),
  }

  def reconstruction_loss(*, outputs, inputs, **_):
    # The unsupervised part of the loss: the gradient reaches every parameter
    # but the heads', so the all-reduce carries almost the full model.
    error = jnp.mean((outputs["reconstruction"] - inputs) ** 2)
    return error, {"reconstruction": error}

  step = functools.partial(
    steps_lib.detector_train_step, apply_fn=model.apply, tx=tx, loss_fn=reconstruction_loss
  )
  result = step_share(
    layout,
    step,
    state,
    batch,
    args,
    comm_lib.blocking_barrier(layout.world),
    comm_lib.allreduce_max_host(layout.world),
  )
  return {
    "model": f"detector width={config.model.width:g} layers={config.model.num_layers}",
    "input": list(shape),
    "per_rank_batch": local,
    **result,
  }


def main() -> None:
  args = parse_args()
  if not getattr(args, CHILD_FLAG.lstrip("-")):
    spawn(args)
  from climjax.parallel import comm as comm_lib
  from climjax.parallel import environment

  layout = comm_lib.layout("sync")
  chief = layout.rank == 0
  log = (lambda *a: print(*a, flush=True)) if chief else (lambda *a: None)
  with comm_lib.abort_on_exception(layout.world):
    log(f"[bench_comm] {layout.size} ranks on {environment.available_cores()} cores")
    log("[bench_comm] all-reduce, float32 sum, median of the slowest rank:")
    allreduce = bench_allreduce(layout, args, log)
    tc = bench_tc(layout, args)
    log(
      f"[bench_comm] TC CNN sync step ({tc['gradient_bytes'] / 1e3:.0f} KB of gradients): "
      f"local {tc['step_local_s'] * 1e3:.2f} ms, sync {tc['step_sync_s'] * 1e3:.2f} ms, "
      f"communication share {tc['communication_share']:.1%} "
      f"(the all-reduce alone: {tc['allreduce_alone_s'] * 1e3:.2f} ms, {tc['allreduce_alone_share']:.1%})"
    )
    det = bench_detector(layout, args)
    if det:
      log(
        f"[bench_comm] {det['model']} sync step ({det['gradient_bytes'] / 1e6:.1f} MB of gradients): "
        f"local {det['step_local_s'] * 1e3:.1f} ms, sync {det['step_sync_s'] * 1e3:.1f} ms, "
        f"communication share {det['communication_share']:.1%} "
        f"(the all-reduce alone: {det['allreduce_alone_s'] * 1e3:.1f} ms, "
        f"{det['allreduce_alone_share']:.1%})"
      )
    if chief:
      report = {
        "ranks": layout.size,
        "cores": environment.available_cores(),
        "allreduce": allreduce,
        "tc_cnn": tc,
        "detector": det,
      }
      os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
      with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
      log(f"[bench_comm] wrote {args.out}")


if __name__ == "__main__":
  main()
