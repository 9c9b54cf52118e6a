"""The process environment for N MPI ranks of climjax on one machine (no MPI import).

Used by whatever starts `mpiexec` from Python (tests, launch/bench_comm.py,
launch/straggler.py); launch/mpirun.sh sets the same variables in shell. It
returns a new mapping and never changes this process's own environment.

Why each variable:
- one XLA / OpenMP / BLAS thread per rank: N ranks each sizing a thread pool to
  every core would run N x cores threads on the cores;
- no core binding when ranks outnumber cores: binding two ranks to one core
  while another idles is worse than letting the kernel schedule them;
- MPICH progress throttling when oversubscribed: a rank spinning in MPI progress
  takes the core from the rank it waits for; throttling inserts short sleeps.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

XLA_SINGLE_THREAD_FLAGS = ("--xla_cpu_multi_thread_eigen=false", "intra_op_parallelism_threads=1")
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def available_cores() -> int:
  if hasattr(os, "sched_getaffinity"):
    return len(os.sched_getaffinity(0))
  return os.cpu_count() or 1


def mpi_environment(
  base: Mapping[str, str], num_ranks: int, *, cores: int | None = None
) -> dict[str, str]:
  """`base` plus what N ranks on this machine need (see the module docstring)."""
  cores = available_cores() if cores is None else cores
  env = dict(base)
  env.setdefault("JAX_PLATFORMS", "cpu")
  env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  flags = env.get("XLA_FLAGS", "").split()
  names = {f.split("=")[0] for f in flags}
  flags += [f for f in XLA_SINGLE_THREAD_FLAGS if f.split("=")[0] not in names]
  env["XLA_FLAGS"] = " ".join(flags)
  for var in THREAD_VARIABLES:
    env[var] = "1"
  if num_ranks > cores:
    env["HYDRA_BINDING"] = "none"
    env["MPIR_CVAR_CH4_PROGRESS_THROTTLE"] = "1"
  return env


def mpiexec_command(num_ranks: int, argv: list[str], *, mpiexec: str = "mpiexec") -> list[str]:
  """`mpiexec -n N argv...` (MPICH's launcher runs as root and oversubscribes without flags)."""
  return [mpiexec, "-n", str(num_ranks), *argv]


def find_mpiexec() -> str:
  """The mpiexec next to this Python (the `mpich` wheel's), else the one on PATH."""
  import shutil
  import sys

  beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
  if os.path.exists(beside):
    return beside
  found = shutil.which("mpiexec")
  if not found:
    raise FileNotFoundError("mpiexec not found: install the 'mpi' extra (the mpich wheel)")
  return found
