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
