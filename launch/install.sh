#!/usr/bin/env bash
# Installs climjax and everything it needs into ./.venv (MPI included), from PyPI.
#
#   bash launch/install.sh            # core + tests + MPI + notebooks (".[all]")
#   EXTRAS=all,bench bash launch/install.sh   # also PyTorch, for launch/bench.py
#
# Order matters: mpi4jax compiles against the MPI of the `mpich` wheel, so the
# wheel (and its mpicc, in .venv/bin) must be installed and on PATH first.
# CUDA_PATH points at an empty directory so mpi4jax's build does not look for
# CUDA headers on machines that have nvcc but no CUDA toolkit headers.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
EXTRAS=${EXTRAS:-all}

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
export PATH="$PWD/.venv/bin:$PATH"
pip() { python -m pip --disable-pip-version-check -q "$@"; }

pip install --upgrade pip setuptools wheel
pip install mpich mpi4py
mkdir -p .venv/empty-cuda
CUDA_PATH="$PWD/.venv/empty-cuda" pip install --no-cache-dir -e ".[${EXTRAS}]"

# tcmalloc makes XLA's convolution backward ~2x faster here (README, Performance);
# the launcher preloads it when present. Optional: skipped without root/apt.
if ! ldconfig -p 2>/dev/null | grep -q libtcmalloc_minimal.so.4; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get install -y -q libtcmalloc-minimal4 >/dev/null 2>&1 ||
      (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q libtcmalloc-minimal4 >/dev/null 2>&1)) ||
      echo "install.sh: libtcmalloc-minimal4 not installed (optional; runs use the system allocator)"
  fi
fi
# The narrow-channel C++ convolutions (climjax/ops/native.py), compiled for
# this CPU now rather than at the first training step.
python -c "from climjax.ops import native; native.main()" || echo "install.sh: native kernels not built (climjax falls back to XLA's convolutions)"
echo "install.sh: climjax installed in $PWD/.venv"
