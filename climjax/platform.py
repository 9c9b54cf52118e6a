"""XLA CPU flags, thread counts and the allocator, set before JAX starts.

The only module in climjax that reads or writes `os.environ`. `apply()` must run
before `import jax` anywhere in the process: XLA reads its flags and sizes its
thread pool once, at backend start-up. The launcher calls it first thing.

Threads: XLA's CPU thread pool is sized from the CPUs the process may run on, so
`platform.threads = N` pins the process to N cores (under MPI, consecutive
blocks of N cores per local rank), which also bounds numpy/BLAS threads.

Allocator: XLA's convolution backward is allocation-heavy; with tcmalloc
preloaded the input gradient ran ~2x faster on the development machine
(PERF_NOTES.md). Preloading needs the variable before the process starts, so
`apply()` re-executes the process once with LD_PRELOAD set when the library is
installed (launch/install.sh installs it where apt-get is available).
"""

from __future__ import annotations

import os
import sys

TCMALLOC_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4",
    "/usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4",
    "/usr/lib/libtcmalloc_minimal.so.4",
)
_REEXEC_MARK = "CLIMJAX_PLATFORM_APPLIED"


# XLA's CPU backend hands single convolutions to YNNPACK unless this flag's list
# leaves out "individual_convolution" (jaxlib 0.10.2 includes it by default).
YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type"


def ynn_convolutions() -> bool:
  """Whether XLA will run plain convolutions through YNNPACK in this process.

  climjax.ops picks its convolution formulations by this: YNNPACK's direct
  convolution is fast forward on narrow inputs but its weight gradient is slow,
  while XLA's own (Eigen) convolutions make good stride-1 pieces.
  """
  value = None
  for flag in os.environ.get("XLA_FLAGS", "").split():
    if flag.startswith(YNN_FLAG + "="):
      value = flag.split("=", 1)[1]
  return value is None or "individual_convolution" in value.split(",")


def tcmalloc_path() -> str | None:
  for path in TCMALLOC_CANDIDATES:
    if os.path.exists(path):
      return path
  return None


def local_rank() -> tuple[int, int]:
  """(local rank, local size) from the MPI launcher's environment, (0, 1) without MPI."""
  for rank_var, size_var in (
      ("MPI_LOCALRANKID", "MPI_LOCALNRANKS"),  # MPICH / Hydra
      ("OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE"),
      ("PMI_RANK", "PMI_SIZE"),
  ):
    if rank_var in os.environ:
      return int(os.environ[rank_var]), int(os.environ.get(size_var, "1"))
  return 0, 1


def _pin_threads(threads: int) -> list[int] | None:
  """Restrict the process to `threads` cores; returns the cores chosen."""
  if threads <= 0 or not hasattr(os, "sched_getaffinity"):
    return None
  available = sorted(os.sched_getaffinity(0))
  rank, _ = local_rank()
  if threads >= len(available):
    return available
  start = (rank * threads) % len(available)
  cores = [available[(start + i) % len(available)] for i in range(threads)]
  os.sched_setaffinity(0, cores)
  return cores


def apply(platform_config, *, argv: list[str] | None = None) -> dict:
  """Sets the process up for XLA on CPU. Call before JAX is imported.

  Returns a description of what was set (written into the run's config.json).
  """
  if "jax" in sys.modules:
    raise RuntimeError("climjax.platform.apply() must run before JAX is imported")
  threads = int(platform_config.get("threads", 0))
  if threads < 0:
    raise ValueError(f"platform.threads must be >= 0 (0 = all cores), got {threads}")
  allocator = platform_config.get("allocator", "system")
  if allocator not in ("system", "tcmalloc"):
    raise ValueError(f"platform.allocator must be 'system' or 'tcmalloc', got {allocator!r}")

  # Re-execute once with tcmalloc preloaded, if asked for and installed.
  if allocator == "tcmalloc" and os.environ.get(_REEXEC_MARK) != "1" and argv is not None:
    lib = tcmalloc_path()
    if lib and lib not in os.environ.get("LD_PRELOAD", ""):
      env = dict(os.environ)
      env["LD_PRELOAD"] = ":".join(p for p in (lib, env.get("LD_PRELOAD", "")) if p)
      env[_REEXEC_MARK] = "1"
      sys.stdout.flush()
      sys.stderr.flush()
      os.execve(sys.executable, [sys.executable, *argv], env)

  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  os.environ.setdefault("JAX_PLATFORMS", platform_config.get("backend", "cpu") or "cpu")
  cores = _pin_threads(threads)
  if cores is not None:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
      os.environ[var] = str(len(cores))
  flags = str(platform_config.get("xla_flags", "") or "").split()
  if flags:
    existing = os.environ.get("XLA_FLAGS", "").split()
    os.environ["XLA_FLAGS"] = " ".join(existing + [f for f in flags if f not in existing])
  preloaded = os.environ.get("LD_PRELOAD", "")
  return {
      "cores": cores if cores is not None else sorted(getattr(os, "sched_getaffinity", lambda _: [])(0)),
      "xla_flags": os.environ.get("XLA_FLAGS", ""),
      "allocator": "tcmalloc" if "tcmalloc" in preloaded else "system",
      "jax_platforms": os.environ.get("JAX_PLATFORMS", ""),
  }
