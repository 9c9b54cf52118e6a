"""Strong and weak scaling of sync and hybrid training: runs a sweep, tabulates, plots.

  python launch/scaling.py --config=configs/scaling.py --workdir=runs/scaling [--only=tc]
  python launch/scaling.py --config=configs/scaling.py:cluster --workdir=W --emit=slurm \
      [--cores_per_node=68] [--ranks_per_node=1] [--slurm_option=--constraint=knl]
  python launch/scaling.py --config=configs/scaling.py:cluster --workdir=W --emit=report

The sweep is data (configs/scaling.py: `get_sweep()`): models, and points of
(model, ranks, strategy, groups, servers, mode). `--emit`:

  run     (default) each point is one launch/main.py run through launch/mpirun.sh,
          in <workdir>/<model>/<point>/ (log in run.log). A point whose
          summary.json exists is kept; a point without one (interrupted, failed)
          starts over from an empty directory, so that its throughput is one
          whole run's. A failed point prints the tail of its log and the sweep
          goes on; the exit status is 1 if any failed. Then `report`.
  report  <workdir>/scaling.csv (one row per finished point) and the plots in
          <workdir>/plots/: speedup_vs_ranks, efficiency_vs_ranks,
          throughput_vs_groups, time_split (PNG).
  slurm   <workdir>/slurm/<model>_<point>.sbatch per point, prepare_data.sbatch
          (builds the data sets once) and submit_all.sh (the points after it);
          run nothing. `--emit=report` on the same workdir tabulates the results.
  data    only build the data sets the sweep reads (what prepare_data.sbatch runs).

CSV columns: ranks (all MPI ranks, servers included), strategy, groups, servers,
mode, model, global_batch (examples per step over all workers; a hybrid update
carries global_batch / groups), examples_per_second (summary.json: training
only, compilation and in-loop evaluation excluded for sync; for hybrid the sum
of the groups' rates over their whole loop, evaluation included), efficiency,
compute_s, comm_s, wait_s (summary.json's mean seconds per step on a worker;
empty where the run did not record them), staleness_mean (0 for sync),
steps_to_target (the first step of metrics.jsonl, or the final evaluation,
whose metric reaches the model's target; server updates for hybrid; empty if
never); then name, workers, per_rank_batch, update_batch, steps, speedup,
input_s, step_s, communication_fraction, metric, target, final_metric,
examples_to_target, train_seconds, cores, oversubscribed.

speedup = eps / eps(1 rank, sync, same model and mode). Efficiency, strong:
speedup / ranks; weak: eps / (ranks x eps(1 rank)), the same expression, since a
weak point's global batch grows with the ranks. Hybrid points count their server
ranks. With more ranks than cores (4 or 5 on the 2-core development machine)
the ranks share cores and cannot speed up: `oversubscribed` marks those rows.

Slurm scripts: --nodes = ceil(ranks / ranks_per_node), --ntasks = ranks,
--cpus-per-task = cores_per_node // ranks_per_node (default 68 cores, one rank
per node, like Cori's KNL nodes; pass the count Slurm calls CPUs on your
machine), `srun --cpu-bind=cores --distribution=block:block` (the last ranks,
the hybrid servers, on the last nodes), OMP/BLAS threads = cpus per task and
`--config.platform.threads` = cpus per task (climjax/platform.py: the XLA pool
is sized from the task's cores). The scripts cd into this checkout and run
`$PYTHON` (default python): generate them on the cluster, in its clone.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(0, REPO)

STRATEGIES = ("sync", "hybrid")
MODES = ("strong", "weak")
COLUMNS = (
  "ranks", "strategy", "groups", "servers", "mode", "model", "global_batch",
  "examples_per_second", "efficiency", "compute_s", "comm_s", "wait_s", "staleness_mean",
  "steps_to_target",
  # Beyond the columns:
  "name", "workers", "per_rank_batch", "update_batch", "steps", "speedup", "input_s", "step_s",
  "communication_fraction", "metric", "target", "final_metric", "examples_to_target",
  "train_seconds", "cores", "oversubscribed", "gradient_lag", "hidden_comm_s",
)  # fmt: skip
# summary.json key -> CSV column (the time split, mean seconds per step on a worker).
TIME_SPLIT = {
  "compute_seconds": "compute_s",
  "communication_seconds": "comm_s",
  "wait_seconds": "wait_s",
  "input_seconds": "input_s",
  "step_seconds": "step_s",
  "communication_fraction": "communication_fraction",
  "hidden_communication_seconds": "hidden_comm_s",
}
CLASSIFIER_TASKS = ("tc", "ar", "wf")  # tasks that read a tfds data set built beforehand
TCMALLOC = "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"


def log(message: str) -> None:
  print(f"[scaling] {message}", flush=True)


# ---- the sweep -------------------------------------------------------------------


def call_config(config_file: str, function: str):
  """`function(arg)` of 'path/to/file.py[:arg]' (relative to the repository, or absolute)."""
  path, _, arg = config_file.partition(":")
  if not os.path.exists(path) and os.path.exists(os.path.join(REPO, path)):
    path = os.path.join(REPO, path)  # configs/scaling.py from any directory
  if not os.path.exists(path):
    raise ValueError(f"--config={config_file}: no file {path}")
  spec = importlib.util.spec_from_file_location(f"_climjax_{function}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, function):
    raise ValueError(f"--config={config_file}: the file defines no {function}()")
  return getattr(module, function)(arg or None)


def load_sweep(config_file: str):
  """The ConfigDict of 'path/to/sweep.py[:arg]' (`get_sweep(arg)`)."""
  return call_config(config_file, "get_sweep")


def point_name(point) -> str:
  """sync_strong_r4, hybrid_weak_r5_g2_s1: unique within a model."""
  name = f"{point['strategy']}_{point['mode']}_r{point['ranks']}"
  if point["strategy"] == "hybrid":
    name += f"_g{point['groups']}_s{point['servers']}"
  if point.get("gradient_lag", 0):
    name += f"_lag{point['gradient_lag']}"
  return name


def plan(point, model) -> dict:
  """What a point trains: workers, batches and length; raises ValueError if it cannot run."""
  ranks, groups, servers = int(point["ranks"]), int(point["groups"]), int(point["servers"])
  where = f"{point['model']}/{point_name(point)}"
  if point["strategy"] not in STRATEGIES or point["mode"] not in MODES:
    raise ValueError(f"{where}: strategy must be one of {STRATEGIES}, mode one of {MODES}")
  if point["strategy"] == "sync" and (groups != 1 or servers != 0):
    raise ValueError(f"{where}: sync has one group and no servers")
  if point.get("gradient_lag", 0) and point["strategy"] != "sync":
    raise ValueError(f"{where}: gradient_lag is for sync points")
  workers = ranks - servers
  if ranks < 1 or workers < 1 or (point["strategy"] == "hybrid" and servers < 1):
    raise ValueError(f"{where}: needs >= 1 worker (hybrid: and >= 1 server)")
  if groups < 1 or workers % groups:
    raise ValueError(f"{where}: {workers} workers cannot form {groups} equal groups")
  if point["mode"] == "strong":
    global_batch = int(model["strong_batch"])
    if global_batch % workers:
      raise ValueError(
        f"{where}: strong batch {global_batch} does not split over {workers} workers"
      )
    batch_size, per_rank = global_batch, global_batch // workers
  else:
    per_rank = batch_size = int(model["weak_batch"])
    global_batch = per_rank * workers
  # Hybrid: groups x the updates (each carries 1/groups of the examples), so
  # every point of a model and mode reads the same examples, evaluated as often.
  scale = groups if point["strategy"] == "hybrid" else 1
  eval_every = model.get("overrides", {}).get("train", {}).get("eval_every")  # else the config's
  return {
    "workers": workers,
    "batch_size": batch_size,  # train.batch_size: global (strong) or per worker (weak)
    "per_rank_batch": per_rank,
    "global_batch": global_batch,
    "update_batch": global_batch // groups,
    "steps": int(model["steps"]) * scale,
    "eval_every": None if eval_every is None else int(eval_every) * scale,
  }


def points_of(sweep, only=None) -> list[tuple[str, dict, dict]]:
  """[(name, point, plan)] of the sweep (models in `only`), every point checked first."""
  out, seen = [], set()
  for point in sweep["points"]:
    if point["model"] not in sweep["models"]:
      raise ValueError(f"point {dict(point)} names no model of the sweep")
    name = point_name(point)
    if (point["model"], name) in seen:
      raise ValueError(f"{point['model']}/{name}: twice in the sweep")
    seen.add((point["model"], name))
    step_plan = plan(point, sweep["models"][point["model"]])
    if not only or point["model"] in only:
      out.append((name, point, step_plan))
  return out


def _flatten(tree, prefix: str = "") -> dict:
  out = {}
  for key, value in tree.items():
    if hasattr(value, "items"):
      out.update(_flatten(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = value
  return out


def overrides(point, model, step_plan, *, data_dir: str | None) -> list[str]:
  """The --config.* flags of one point for launch/main.py."""
  values = _flatten(model.get("overrides", {}))
  values.update(
    {
      "parallel.strategy": point["strategy"],
      "parallel.scaling": point["mode"],
      "train.batch_size": step_plan["batch_size"],
      "train.steps": step_plan["steps"],
    }
  )
  if step_plan["eval_every"] is not None:
    values["train.eval_every"] = step_plan["eval_every"]
  if point.get("gradient_lag", 0):
    values["parallel.gradient_lag"] = point["gradient_lag"]
  if point["strategy"] == "hybrid":
    values["parallel.num_groups"] = point["groups"]
    values["parallel.num_servers"] = point["servers"]
  if data_dir:
    values["data.data_dir"] = data_dir
  return [f"--config.{k}={v}" for k, v in values.items()]


# ---- shared with launch/straggler.py ----------------------------------------------


def model_config(config_file: str):
  """get_config(arg) of 'configs/x.py[:arg]' (relative to the repository, or absolute)."""
  return call_config(config_file, "get_config")


def prepare_data(config_file: str, data_dir: str, data_overrides=None) -> bool:
  """Builds a classifier config's tfds data set once, before several ranks read it.

  `data_overrides` updates `config.data`. Returns False (nothing to build) for
  tasks whose data is generated in memory (the detector's synthetic fields).
  """
  config = model_config(config_file)
  if config.task not in CLASSIFIER_TASKS:
    return False
  from climjax.data import tfds_builders  # noqa: PLC0415  (slow import, only when needed)

  config.data.update(dict(data_overrides or {}))
  config.data.data_dir = data_dir
  tfds_builders.prepare(tfds_builders.patches_builder(config.data, config.task), key="patch")
  return True


def mpirun_command(num_ranks: int, config_file: str, workdir: str, flags) -> list[str]:
  """launch/main.py on `num_ranks` local ranks through launch/mpirun.sh."""
  return [
    "bash",
    os.path.join(REPO, "launch", "mpirun.sh"),
    str(num_ranks),
    f"--config={os.path.join(REPO, config_file)}",
    f"--workdir={os.path.abspath(workdir)}",
    *flags,
  ]


# ---- running ------------------------------------------------------------------------


def _data_dirs(sweep, workdir: str, models) -> dict:
  """{model: data_dir or None}: the classifiers share <workdir>/tfds."""
  shared = os.path.join(os.path.abspath(workdir), "tfds")
  return {
    name: shared if model_config(sweep["models"][name]["config"]).task in CLASSIFIER_TASKS else None
    for name in models
  }


def build_data(sweep, workdir: str, only=None) -> None:
  models = sorted({p["model"] for _, p, _ in points_of(sweep, only)})
  for name, data_dir in _data_dirs(sweep, workdir, models).items():
    if data_dir:
      start = time.time()
      data = sweep["models"][name].get("overrides", {}).get("data", {})
      prepare_data(sweep["models"][name]["config"], data_dir, data)
      log(f"{name}: data in {data_dir} ({time.time() - start:.0f} s)")


def read_json(path: str) -> dict | None:
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def _tail(path: str, lines: int = 25) -> str:
  if not os.path.exists(path):
    return "(no log)"
  with open(path, errors="replace") as f:
    return "".join(f.readlines()[-lines:])


def run_point(command: list[str], point_dir: str, *, timeout_s: float) -> int:
  """Runs one point with its output in point_dir/run.log; kills its processes on timeout."""
  os.makedirs(point_dir, exist_ok=True)
  with open(os.path.join(point_dir, "run.log"), "w") as out:
    out.write(" ".join(shlex.quote(c) for c in command) + "\n")
    out.flush()
    proc = subprocess.Popen(
      command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
      return proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
      os.killpg(proc.pid, signal.SIGTERM)  # mpiexec and its ranks: the group we started
      try:
        proc.wait(timeout=10)
      except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
      out.write(f"\n[scaling] killed after {timeout_s:.0f} s\n")
      return 124


def run_sweep(sweep, workdir: str, *, only=None, timeout_s: float = 900) -> int:
  """Runs the points that have no summary.json yet; returns the number that failed."""
  points = points_of(sweep, only)
  cores = available_cores()
  build_data(sweep, workdir, only)
  data_dirs = _data_dirs(sweep, workdir, {p["model"] for _, p, _ in points})
  failed = []
  start_all = time.time()
  for i, (name, point, step_plan) in enumerate(points):
    model = sweep["models"][point["model"]]
    point_dir = os.path.join(workdir, point["model"], name)
    where = f"{i + 1}/{len(points)} {point['model']}/{name}"
    if read_json(os.path.join(point_dir, "summary.json")) is not None:
      log(f"{where}: done earlier, kept")
      continue
    if os.path.exists(point_dir):
      log(f"{where}: unfinished earlier, starting over")
      shutil.rmtree(point_dir)
    over = " (oversubscribed)" if point["ranks"] > cores else ""
    log(
      f"{where}: {point['ranks']} ranks on {cores} cores{over}, global batch "
      f"{step_plan['global_batch']}, {step_plan['steps']} steps"
    )
    flags = overrides(point, model, step_plan, data_dir=data_dirs[point["model"]])
    command = mpirun_command(point["ranks"], model["config"], point_dir, flags)
    start = time.time()
    status = run_point(command, point_dir, timeout_s=timeout_s)
    seconds = time.time() - start
    summary = read_json(os.path.join(point_dir, "summary.json"))
    if status or summary is None:
      failed.append(f"{point['model']}/{name}")
      log(f"{where}: FAILED (exit status {status}, {seconds:.0f} s); the end of its log:")
      print(_tail(os.path.join(point_dir, "run.log")), flush=True)
      continue
    records = read_metrics(os.path.join(point_dir, "metrics.jsonl"))
    reached = steps_to_target(records, summary, model["metric"], model["target"])
    eps = summary.get("examples_per_second") or float("nan")
    log(
      f"{where}: {eps:,.1f} ex/s, {model['metric']} >= {model['target']} "
      f"{'at step ' + str(reached) if reached else 'not reached'} ({seconds:.0f} s)"
    )
  log(
    f"ran in {time.time() - start_all:.0f} s" + (f"; failed: {', '.join(failed)}" if failed else "")
  )
  return len(failed)


def available_cores() -> int:
  """As climjax.parallel.environment counts them (that package imports JAX)."""
  return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


# ---- results ------------------------------------------------------------------------


def read_metrics(path: str) -> list[dict]:
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def final_metric(summary: dict, metric: str):
  """The run's last evaluation of `metric` (summary.json names it without "test_")."""
  for key in (metric, metric.removeprefix("test_")):
    if isinstance(summary.get(key), int | float):
      return float(summary[key])
  return None


def steps_to_target(records: list[dict], summary: dict, metric: str, target: float) -> int | None:
  """The first logged step whose `metric` >= target; else the last step if the final
  evaluation reaches it; else None."""
  for record in sorted((r for r in records if "step" in r), key=lambda r: r["step"]):
    value = record.get(metric)
    if isinstance(value, int | float) and value >= target:
      return int(record["step"])
  final = final_metric(summary, metric)
  if final is not None and final >= target and summary.get("steps"):
    return int(summary["steps"])
  return None


def _number(value):
  if isinstance(value, bool) or not isinstance(value, int | float):
    return None
  return None if math.isnan(value) else value


def collect(sweep, workdir: str, *, cores: int | None = None) -> list[dict]:
  """One row (COLUMNS) per point of the sweep that has a summary.json, in sweep order."""
  cores = available_cores() if cores is None else cores
  rows = []
  for name, point, step_plan in points_of(sweep):
    point_dir = os.path.join(workdir, point["model"], name)
    summary = read_json(os.path.join(point_dir, "summary.json"))
    if summary is None:
      continue
    model = sweep["models"][point["model"]]
    reached = steps_to_target(
      read_metrics(os.path.join(point_dir, "metrics.jsonl")),
      summary,
      model["metric"],
      model["target"],
    )
    staleness = summary.get("staleness_mean", 0.0 if point["strategy"] == "sync" else None)
    row = {
      **{k: point[k] for k in ("ranks", "strategy", "groups", "servers", "mode", "model")},
      "name": name,
      **{k: step_plan[k] for k in ("workers", "per_rank_batch", "global_batch", "update_batch")},
      "steps": summary.get("steps"),
      "examples_per_second": _number(summary.get("examples_per_second")),
      "staleness_mean": _number(staleness),
      "steps_to_target": reached,
      "examples_to_target": reached * step_plan["update_batch"] if reached else None,
      "metric": model["metric"],
      "target": model["target"],
      "final_metric": final_metric(summary, model["metric"]),
      "train_seconds": _number(summary.get("train_seconds")),
      "cores": cores,
      "oversubscribed": int(point["ranks"]) > cores,
      "gradient_lag": int(point.get("gradient_lag", 0)),
      **{column: _number(summary.get(key)) for key, column in TIME_SPLIT.items()},
    }
    rows.append(row)
  for row in rows:
    base = [
      r["examples_per_second"]
      for r in rows
      if (r["model"], r["mode"], r["ranks"], r["strategy"], r["gradient_lag"])
      == (row["model"], row["mode"], 1, "sync", 0)
    ]
    eps = row["examples_per_second"]
    if base and base[0] and eps:
      row["speedup"] = eps / base[0]
      # strong: speed-up / ranks; weak: eps / (ranks x eps(1)): the same number.
      row["efficiency"] = eps / (row["ranks"] * base[0])
  return rows


def _cell(value) -> str:
  if value is None:
    return ""
  if isinstance(value, float):
    return "" if math.isnan(value) else f"{value:.6g}"
  return str(value)


def write_csv(rows: list[dict], path: str) -> str:
  with open(path, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(COLUMNS)
    for row in rows:
      writer.writerow([_cell(row.get(c)) for c in COLUMNS])
  return path


def report(sweep, workdir: str) -> list[str]:
  """scaling.csv and the plots from the finished points in `workdir`; returns the paths."""
  from climjax.evaluation import scaling_plots  # noqa: PLC0415  (matplotlib)

  rows = collect(sweep, workdir)
  os.makedirs(workdir, exist_ok=True)
  written = [write_csv(rows, os.path.join(workdir, "scaling.csv"))]
  if rows:
    written += scaling_plots.plot_all(rows, os.path.join(workdir, "plots"))
  log(f"{len(rows)} finished point(s); wrote {', '.join(written)}")
  return written


# ---- Slurm ----------------------------------------------------------------------------


def slurm_script(
  *,
  job_name: str,
  ranks: int,
  command: list[str],
  output: str,
  time_limit: str,
  cores_per_node: int,
  ranks_per_node: int,
  options=(),
  mpi: bool = True,
) -> str:
  """One sbatch script: `ranks` tasks placed in blocks on whole nodes, threads per task set.

  `mpi`: run `python -m mpi4py`, so that one failing rank aborts them all
  instead of leaving the others waiting in a collective.
  """
  per_node = max(1, min(ranks, ranks_per_node))
  nodes = math.ceil(ranks / per_node)
  cpus = max(1, cores_per_node // ranks_per_node)
  sbatch = [
    f"--job-name={job_name}",
    f"--nodes={nodes}",
    f"--ntasks={ranks}",
    f"--ntasks-per-node={per_node}",
    f"--cpus-per-task={cpus}",
    f"--time={time_limit}",
    f"--output={output}",
    "--exclusive",
    *options,
  ]
  threads = " ".join(
    f"{v}={cpus}" for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
  )
  srun = [
    "srun",
    f"--ntasks={ranks}",
    f"--ntasks-per-node={per_node}",
    f"--cpus-per-task={cpus}",  # srun does not inherit it from sbatch (Slurm >= 22.05)
    "--cpu-bind=cores",
    "--distribution=block:block",
    '"$PYTHON" -m mpi4py' if mpi else '"$PYTHON"',
    *(shlex.quote(c) for c in command),
  ]
  lines = [
    "#!/bin/bash",
    *(f"#SBATCH {option}" for option in sbatch),
    "# Written by launch/scaling.py --emit=slurm.",
    "set -euo pipefail",
    f"cd {shlex.quote(REPO)}",
    "PYTHON=${PYTHON:-python}",
    "# Threads per rank = cores per task (climjax/platform.py pins and sizes XLA's pool).",
    f"export {threads}",
    "export JAX_PLATFORMS=cpu TF_CPP_MIN_LOG_LEVEL=2",
    f'if [ -e {TCMALLOC} ]; then export LD_PRELOAD="{TCMALLOC}${{LD_PRELOAD:+:$LD_PRELOAD}}"; fi',
    " \\\n  ".join(srun),
    "",
  ]
  return "\n".join(lines)


def emit_slurm(
  sweep, config_file: str, workdir: str, *, cores_per_node: int, ranks_per_node: int = 1,
  options=(), only=None,
) -> list[str]:  # fmt: skip
  """Writes <workdir>/slurm/*.sbatch and submit_all.sh; returns the paths written."""
  workdir = os.path.abspath(workdir)
  points = points_of(sweep, only)
  data_dirs = _data_dirs(sweep, workdir, {p["model"] for _, p, _ in points})
  slurm_dir = os.path.join(workdir, "slurm")
  os.makedirs(slurm_dir, exist_ok=True)
  cpus = max(1, cores_per_node // ranks_per_node)
  sweep_file = config_file.partition(":")[0]
  prepare = [
    "launch/scaling.py",
    f"--config={os.path.abspath(sweep_file)}{config_file[len(sweep_file) :]}",
    f"--workdir={workdir}",
    "--emit=data",
    *([f"--only={','.join(only)}"] if only else []),
  ]
  written = []
  path = os.path.join(slurm_dir, "prepare_data.sbatch")
  script = slurm_script(
    job_name="scaling_prepare_data", ranks=1, command=prepare,
    output=os.path.join(slurm_dir, "prepare_data-%j.out"), time_limit="00:30:00",
    cores_per_node=cores_per_node, ranks_per_node=1, options=options, mpi=False,
  )  # fmt: skip
  with open(path, "w") as f:
    f.write(script)
  written.append(path)
  jobs = []
  for name, point, step_plan in points:
    model = sweep["models"][point["model"]]
    point_dir = os.path.join(workdir, point["model"], name)
    os.makedirs(point_dir, exist_ok=True)  # Slurm opens --output there
    flags = overrides(point, model, step_plan, data_dir=data_dirs[point["model"]])
    flags.append(f"--config.platform.threads={cpus}")
    command = ["launch/main.py", f"--config={model['config']}", f"--workdir={point_dir}", *flags]
    script = slurm_script(
      job_name=f"scaling_{point['model']}_{name}", ranks=int(point["ranks"]), command=command,
      output=os.path.join(point_dir, "slurm-%j.out"), time_limit=model.get("slurm_time", "01:00:00"),
      cores_per_node=cores_per_node, ranks_per_node=ranks_per_node, options=options,
    )  # fmt: skip
    path = os.path.join(slurm_dir, f"{point['model']}_{name}.sbatch")
    with open(path, "w") as f:
      f.write(script)
    written.append(path)
    jobs.append(os.path.basename(path))
  submit = [
    "#!/bin/bash",
    "# Submits the data build, then every point of the sweep after it (launch/scaling.py).",
    "set -euo pipefail",
    'cd "$(dirname "$0")"',
    "prepare=$(sbatch --parsable prepare_data.sbatch)",
    *(f"sbatch --dependency=afterok:$prepare {job}" for job in jobs),
    "",
  ]
  path = os.path.join(slurm_dir, "submit_all.sh")
  with open(path, "w") as f:
    f.write("\n".join(submit))
  os.chmod(path, 0o755)
  written.append(path)
  return written


# ---- command line ---------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument("--config", required=True, help="sweep file[:arg] with get_sweep()")
  parser.add_argument("--workdir", default=os.path.join("runs", "scaling"))
  parser.add_argument("--emit", choices=("run", "report", "slurm", "data"), default="run")
  parser.add_argument("--only", default="", help="comma-separated models, e.g. tc")
  parser.add_argument("--timeout_s", type=float, default=900, help="per point (run)")
  parser.add_argument(
    "--cores_per_node", type=int, default=68, help="slurm: CPUs per node (68: Cori KNL cores)"
  )
  parser.add_argument("--ranks_per_node", type=int, default=1, help="slurm: MPI ranks per node")
  parser.add_argument(
    "--slurm_option", action="append", default=[], help="slurm: an extra #SBATCH option"
  )
  args = parser.parse_args(argv)
  only = [m for m in args.only.split(",") if m]
  try:
    sweep = load_sweep(args.config)
    unknown = sorted(set(only) - set(sweep["models"]))
    if unknown:
      raise ValueError(f"--only: no models {unknown}; the sweep has {sorted(sweep['models'])}")
    points_of(sweep)  # every point checked before anything runs
    if args.ranks_per_node < 1 or args.cores_per_node < args.ranks_per_node:
      raise ValueError("--ranks_per_node must be between 1 and --cores_per_node")
  except ValueError as e:
    print(f"climjax: error: {e}", file=sys.stderr)
    return 2
  if args.emit == "slurm":
    written = emit_slurm(
      sweep, args.config, args.workdir, cores_per_node=args.cores_per_node,
      ranks_per_node=args.ranks_per_node, options=args.slurm_option, only=only,
    )  # fmt: skip
    for path in written:
      log(f"wrote {path}")
    log(f"submit with: bash {written[-1]}")
    return 0
  if args.emit == "data":
    build_data(sweep, args.workdir, only)
    return 0
  failed = 0
  if args.emit == "run":
    failed = run_sweep(sweep, args.workdir, only=only, timeout_s=args.timeout_s)
  report(sweep, args.workdir)
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
