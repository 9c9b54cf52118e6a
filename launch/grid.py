"""Runs every point of a config's fixed grid (`get_sweep()`) and tabulates the results.

  python launch/grid.py --config=configs/semisup_labels.py --workdir=runs/semisup_labels
  python launch/grid.py --config=configs/semisup_labels.py:tiny --workdir=/tmp/grid --metrics=map@0.5

Each point is one `launch/main.py` run in its own process, in
`<workdir>/<point name>/`, with the point's dotted overrides. A point whose
`summary.json` exists is not run again, and an interrupted point resumes from
its last checkpoint, so rerunning the same command finishes the grid. At the
end (and after every point) `<workdir>/grid.md` and `grid.csv` list each point's
overrides and the chosen `summary.json` metrics. A config that repeats its
points over seeds also has `get_study()`: then `study.md`, `study.csv` and
`study.png` give mean +- std over the seeds and paired comparisons
(climjax.evaluation.seeded_grid).

This is for grids that are experiments (configs/semisup_labels.py: labelled
fraction x reconstruction weight). Hyper-parameter *searches* of the
classifiers go through launch/sweep.py.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
  sys.path.insert(0, REPO_ROOT)

from absl import app, flags  # noqa: E402

from climjax.training.validate import ConfigError  # noqa: E402  (imports no JAX)
from launch.sweep import load_config_module  # noqa: E402

DEFAULT_METRICS = ("map@0.5", "map@0.1", "reconstruction_mse", "wall_seconds")


def point_command(config_file: str, workdir: str, point: dict) -> list[str]:
  """The launch/main.py command line of one grid point."""
  command = [
    sys.executable,
    os.path.join(REPO_ROOT, "launch", "main.py"),
    f"--config={config_file}",
    f"--workdir={workdir}",
  ]
  for dotted, value in point.items():
    if dotted != "name":
      command.append(f"--config.{dotted}={value}")
  return command


def read_summary(workdir: str) -> dict | None:
  path = os.path.join(workdir, "summary.json")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def _cell(value) -> str:
  if value is None:
    return "–"
  if isinstance(value, float):
    return f"{value:.3f}" if abs(value) < 100 else f"{value:.0f}"
  return str(value)


def write_tables(workdir: str, points: list[dict], metrics: list[str], *, config_file: str) -> None:
  keys = [k for k in points[0] if k != "name"] if points else []
  rows = []
  for point in points:
    summary = read_summary(os.path.join(workdir, point["name"])) or {}
    rows.append([point["name"], *(point[k] for k in keys), *(summary.get(m) for m in metrics)])
  header = ["run", *keys, *metrics]
  with open(os.path.join(workdir, "grid.csv"), "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(header)
    writer.writerows(rows)
  lines = [
    f"Grid of `{config_file}` (`python launch/grid.py --config={config_file}`); "
    "– marks a point not finished yet.",
    "",
    "| " + " | ".join(header) + " |",
    "|" + "---|" * len(header),
  ]
  lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
  with open(os.path.join(workdir, "grid.md"), "w") as f:
    f.write("\n".join(lines) + "\n")


def study_rows(workdir: str, points: list[dict]) -> list[dict]:
  """Each point's dotted overrides merged with its summary.json (empty where unfinished)."""
  return [{**point, **(read_summary(os.path.join(workdir, point["name"])) or {})}
          for point in points]  # fmt: skip


def write_study(module, arg, workdir: str, points: list[dict], *, config_file: str) -> None:
  """A config with `get_study()` (seeds repeated per point): study.md / .csv / .png."""
  from climjax.evaluation import seeded_grid  # noqa: PLC0415  (numpy, scipy, matplotlib)

  study = module.get_study(arg)
  paths = seeded_grid.write_study(
    workdir, study_rows(workdir, points), **study,
    title=f"python launch/grid.py --config={config_file}",
  )  # fmt: skip
  print(f"[grid] study: {paths['md']}, {paths['png']}", flush=True)


def run_grid(config_file: str, workdir: str, metrics: list[str], *, only: list[str] | None = None) -> int:
  module, arg = load_config_module(config_file, required=("get_config", "get_sweep"))
  points = module.get_sweep(arg)
  if only:
    unknown = sorted(set(only) - {p["name"] for p in points})
    if unknown:
      raise ConfigError(f"--only: no grid points named {unknown}; the grid has {[p['name'] for p in points]}")
  os.makedirs(workdir, exist_ok=True)
  failures = 0
  for i, point in enumerate(points):
    name = point["name"]
    if only and name not in only:
      continue
    point_dir = os.path.join(workdir, name)
    if read_summary(point_dir) is not None:
      print(f"[grid] {i + 1}/{len(points)} {name}: done earlier, kept", flush=True)
      continue
    print(f"[grid] {i + 1}/{len(points)} {name}: running", flush=True)
    start = time.time()
    result = subprocess.run(point_command(config_file, point_dir, point), check=False)
    if result.returncode != 0:
      failures += 1
      print(f"[grid] {name}: failed with exit status {result.returncode}", flush=True)
    else:
      summary = read_summary(point_dir) or {}
      shown = ", ".join(f"{m} {_cell(summary.get(m))}" for m in metrics)
      print(f"[grid] {name}: {shown} ({time.time() - start:.0f} s)", flush=True)
    write_tables(workdir, points, metrics, config_file=config_file)
    if hasattr(module, "get_study"):
      write_study(module, arg, workdir, points, config_file=config_file)
  write_tables(workdir, points, metrics, config_file=config_file)
  print(f"[grid] table: {os.path.join(workdir, 'grid.md')}", flush=True)
  return failures


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    print(f"climjax: error: unexpected arguments: {' '.join(argv[1:])}", file=sys.stderr)
    sys.exit(2)
  try:
    failures = run_grid(
      _CONFIG.value, _WORKDIR.value, list(_METRICS.value), only=list(_ONLY.value or [])
    )
  except ConfigError as e:
    print(f"climjax: error: {e}", file=sys.stderr)
    sys.exit(2)
  sys.exit(1 if failures else 0)


if __name__ == "__main__":
  _CONFIG = flags.DEFINE_string("config", None, "Config file[:arg] with get_sweep().", required=True)
  _WORKDIR = flags.DEFINE_string("workdir", None, "Output directory of the grid.", required=True)
  _METRICS = flags.DEFINE_list("metrics", list(DEFAULT_METRICS), "summary.json keys to tabulate.")
  _ONLY = flags.DEFINE_list("only", None, "Run only these points (by name).")
  app.run(main)
