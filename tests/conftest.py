"""Test setup: force JAX onto the CPU before it starts, and keep XLA quiet."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _mpi_available() -> bool:
  try:
    import mpi4jax  # noqa: F401
    import mpi4py  # noqa: F401

    from climjax.parallel import environment

    environment.find_mpiexec()
  except (ImportError, FileNotFoundError):
    return False
  return True


import pytest  # noqa: E402  (after the environment above)

# Tests that start mpiexec; `from conftest import needs_mpi`.
needs_mpi = pytest.mark.skipif(not _mpi_available(), reason="MPI extra not installed")


def check_time_split(summary: dict, tolerance: float = 0.10) -> None:
  """summary.json's time split is there and adds up to the measured step time.

  `from conftest import check_time_split`.
  """
  parts = ("compute_seconds", "communication_seconds", "wait_seconds", "input_seconds")
  for key in (*parts, "step_seconds", "communication_fraction"):
    assert key in summary, f"summary.json lacks {key}"
  total = sum(summary[k] for k in parts)
  assert all(summary[k] >= 0 for k in parts), summary
  assert summary["compute_seconds"] > 0, summary
  assert abs(total - summary["step_seconds"]) <= tolerance * summary["step_seconds"], (
    f"time split {total:.5f} s vs step {summary['step_seconds']:.5f} s: "
    + ", ".join(f"{k} {summary[k]:.5f}" for k in parts)
  )
  assert 0 <= summary["communication_fraction"] <= 1
