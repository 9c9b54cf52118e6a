#!/usr/bin/env bash
# Thread scaling of the TC step and the 384x384 detector at 1/2/4/8/16 threads
# (issue #18), prepared for a lent accelerator machine, whose host has 16 CPU
# cores; the benchmark is CPU-only. Each count runs in its own process
# (launch/bench.py --threads=...). Writes $OUT/bench.json (with "thread_scaling")
# and $OUT/bench_thread_sweep.log. Not run yet: expect several minutes (a 1-thread
# detector step is the slow part).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
OUT=${OUT:-runs}
mkdir -p "$OUT"
nproc
"$PY" launch/bench.py --threads=1,2,4,8,16 --only=tc,detector384 --reps=3 --out=bench.json \
  2>&1 | tee "$OUT/bench_thread_sweep.log"
cp bench.json "$OUT/bench.json"
