#!/usr/bin/env bash
# Runs launch/main.py on N MPI ranks of this machine, with the environment MPI needs here.
#
#   bash launch/mpirun.sh 2 --config=configs/tc.py:tiny --config.parallel.strategy=sync
#   bash launch/mpirun.sh 3 --config=configs/tc.py --config.parallel.strategy=hybrid \
#       --config.parallel.num_servers=1 --config.parallel.num_groups=2
#   NP=4 bash launch/mpirun.sh --config=...     # N from the environment instead
#
# The same variables as climjax/parallel/environment.py (which Python launchers use):
#   - one XLA / OpenMP / BLAS thread per rank: N ranks each sizing a thread pool to
#     every core would run N x cores threads;
#   - when ranks outnumber cores (the development machine has 2): no core binding
#     (hydra) or pinning (platform.threads=0), and MPICH progress throttling, since
#     a rank spinning in MPI would take the core of the rank it waits for;
#   - runs as root: MPICH's hydra needs nothing; Open MPI's mpirun needs the
#     OMPI_ALLOW_RUN_AS_ROOT pair (set too, harmless under MPICH).
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" =~ ^[0-9]+$ ]]; then
  NP=$1
  shift
fi
NP=${NP:-2}

PYTHON=${PYTHON:-python}
MPIEXEC=mpiexec
if [ -x .venv/bin/python ]; then
  PYTHON=.venv/bin/python
  [ -x .venv/bin/mpiexec ] && MPIEXEC=.venv/bin/mpiexec
fi

CORES=$(nproc)
export JAX_PLATFORMS=${JAX_PLATFORMS:-cpu}
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
export XLA_FLAGS="${XLA_FLAGS:-} --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
if [ "$NP" -gt "$CORES" ]; then
  export HYDRA_BINDING=none MPIR_CVAR_CH4_PROGRESS_THROTTLE=1
  export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_hwloc_base_binding_policy=none
  # climjax.platform pins each rank to its own cores when platform.threads > 0;
  # with more ranks than cores that would stack ranks on some cores and leave
  # others idle, so pinning is turned off unless the command line sets it.
  case " $* " in
    *"--config.platform.threads="*) ;;
    *) set -- "$@" --config.platform.threads=0 ;;
  esac
  echo "mpirun.sh: $NP ranks on $CORES cores (oversubscribed): binding and pinning off, MPI progress throttled" >&2
fi
# Preload tcmalloc here (climjax/platform.py's default allocator) rather than let
# platform.apply re-execute each rank with it: the re-executed command line would
# lose `-m mpi4py`. ALLOCATOR=system skips it.
if [ "${ALLOCATOR:-tcmalloc}" = tcmalloc ]; then
  for lib in /usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 \
    /usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4 /usr/lib/libtcmalloc_minimal.so.4; do
    if [ -e "$lib" ]; then
      case ":${LD_PRELOAD:-}:" in *":$lib:"*) ;; *) export LD_PRELOAD="$lib${LD_PRELOAD:+:$LD_PRELOAD}" ;; esac
      break
    fi
  done
fi
# `-m mpi4py` turns an uncaught exception or a non-zero exit on one rank into
# MPI_Abort of all: otherwise the other ranks wait forever in a collective. A
# rank that dies (killed, out of memory) makes mpiexec stop the others at once.
if ! "$MPIEXEC" --version 2>/dev/null | grep HYDRA >/dev/null; then
  exec "$MPIEXEC" -n "$NP" "$PYTHON" -m mpi4py launch/main.py "$@"
fi
# MPICH's hydra: ask for every rank's exit code, so that a dead rank can be named.
out=$(mktemp)
codes=$(mktemp)
export CLIMJAX_RANKS_DIR=$(mktemp -d)  # each rank writes its pid there (launch/main.py)
trap 'rm -rf "$out" "$codes" "$CLIMJAX_RANKS_DIR"' EXIT
set +e
"$MPIEXEC" -print-all-exitcodes -n "$NP" "$PYTHON" -m mpi4py launch/main.py "$@" | tee "$out"
status=${PIPESTATUS[0]}
set -e
grep -a -E "Exit codes:|^= +PID [0-9]+ RUNNING AT" "$out" > "$codes" || true
# "[mpiexec@host] Exit codes: [host] 0,9": per host, the codes of its ranks in rank order.
# An error only another rank met (rank 0 printed none): show that rank's line.
if [ "$status" -ne 0 ] && [ ! -e "$CLIMJAX_RANKS_DIR/error-0" ]; then
  for f in "$CLIMJAX_RANKS_DIR"/error-*; do
    [ -e "$f" ] || continue
    echo "climjax: error: (rank ${f##*/error-}) $(cat "$f")" >&2
    break
  done
fi
# Hydra names the first process that failed by its pid ("PID 123 RUNNING AT host"),
# and lists every rank's exit code per host ("Exit codes: [host] 0,9").
if [ "$status" -ne 0 ] && [ "$status" -ne 2 ] && [ -s "$codes" ]; then
  python3 - "$codes" "$CLIMJAX_RANKS_DIR" <<'PY' >&2 || true
import os, re, signal, sys
text = open(sys.argv[1]).read()
def how(code):
  return f"killed by {signal.Signals(code).name}" if 0 < code < 32 else f"exit code {code}"
codes = []
for host, listed in re.findall(r"\[([^\]]+)\] ([0-9,]+)\s*$", text.split("Exit codes:", 1)[-1], re.M):
  codes += [(host, int(c)) for c in listed.split(",")]
first = re.search(r"PID (\d+) RUNNING AT (\S+)", text)
pid_file = os.path.join(sys.argv[2], first.group(1)) if first else ""
first_rank = int(open(pid_file).read()) if pid_file and os.path.exists(pid_file) else None
# mpiexec kills the others when one dies, so several can read "killed"; the pid it
# names first is the first it saw end, which need not be the cause.
dead = [f"rank {r} ({host}, {how(c)})" for r, (host, c) in enumerate(codes) if c not in (0, 2)]
if not dead and first_rank is not None:
  dead = [f"rank {first_rank} ({first.group(2)})"]
if dead:
  seen = f" (mpiexec saw rank {first_rank} end first)" if first_rank is not None and len(dead) > 1 else ""
  print(f"climjax: error: MPI {', '.join(dead)} ended the run{seen}; mpiexec stopped the other "
        "ranks. The last checkpoint in the workdir is complete: rerun the same command to "
        "resume from it.")
PY
fi
exit "$status"
