"""Statistical efficiency: updates to a target accuracy / mAP against the level of asynchrony.

  python launch/statistical_efficiency.py --config=configs/statistical_efficiency.py \
      [--workdir=runs/statistical_efficiency] [--only=tc]

For each model of the study (configs/statistical_efficiency.py says what and
why): real hybrid runs at the small group counts (G groups of one rank plus one
parameter server, through launch/mpirun.sh), then a simulated run at every
group count whose staleness is drawn from what the real runs measured (their
histogram at that G; beyond, a Poisson model with the fitted slope). Every run
goes through launch/main.py and the one training loop. A finished run (its
summary.json exists) is not run again, so an interrupted study resumes.

Writes <workdir>/statistical_efficiency.csv (one row per run: model, groups,
seed, simulated, steps_to_target, staleness_mean, final_metric, target,
budget) and <workdir>/plots/statistical_efficiency.png (mean +- standard
deviation of the updates to target against G, real and simulated apart), and
prints the table. Runs that never reach the target within their budget are
counted as such and left out of the mean.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from launch import scaling  # noqa: E402  (data, mpirun command, point runner, metrics)

COLUMNS = (
  "model", "groups", "seed", "simulated", "steps_to_target", "staleness_mean",
  "final_metric", "metric", "target", "budget",
)  # fmt: skip


def log(message: str) -> None:
  print(f"[statistical_efficiency] {message}", flush=True)


def load_study(config_file: str):
  return scaling.call_config(config_file, "get_study")


def run_dir(workdir: str, model: str, groups: int, seed: int, simulated: bool) -> str:
  kind = "simulated" if simulated else "real"
  return os.path.join(workdir, model, f"{kind}_G{groups}_seed{seed}")


def common_flags(spec, seed: int, data_dir: str | None) -> list[str]:
  flags = [f"--config.{k}={v}" for k, v in scaling._flatten(spec.get("overrides", {})).items()]
  flags += [f"--config.seed={seed}", "--config.platform.allocator=system"]
  if data_dir:
    flags.append(f"--config.data.data_dir={data_dir}")
  return flags


def run(command: list[str], directory: str, *, timeout_s: float) -> bool:
  """Runs one command unless its summary.json exists; True when it has one afterwards."""
  name = os.path.relpath(directory, os.path.dirname(os.path.dirname(directory)))
  if os.path.exists(os.path.join(directory, "summary.json")):
    log(f"{name}: done before, skipped")
    return True
  start = time.time()
  code = scaling.run_point(command, directory, timeout_s=timeout_s)
  ok = code == 0 and os.path.exists(os.path.join(directory, "summary.json"))
  log(f"{name}: {'done' if ok else f'FAILED (exit {code})'} in {time.time() - start:.0f} s")
  if not ok:
    print(scaling._tail(os.path.join(directory, "run.log")), file=sys.stderr)
  return ok


def measured_staleness(workdir: str, model: str, groups, seeds) -> dict[int, np.ndarray]:
  """{G: staleness histogram summed over the real runs' seeds}."""
  result = {}
  for g in groups:
    total = np.zeros(0)
    for seed in seeds:
      summary = scaling.read_json(
        os.path.join(run_dir(workdir, model, g, seed, False), "summary.json")
      )
      hist = np.asarray((summary or {}).get("staleness_histogram") or [], float)
      if hist.size:
        size = max(total.size, hist.size)
        total = np.pad(total, (0, size - total.size)) + np.pad(hist, (0, size - hist.size))
    if total.size:
      result[g] = total
  return result


def staleness_slope(histograms: dict[int, np.ndarray]) -> float:
  """Least-squares slope through the origin of mean staleness against G - 1 (1 if unknown)."""
  xs, ys = [], []
  for g, hist in histograms.items():
    if g > 1 and hist.sum() > 0:
      xs.append(g - 1)
      ys.append(float(np.dot(np.arange(hist.size), hist) / hist.sum()))
  if not xs:
    return 1.0
  xs, ys = np.array(xs, float), np.array(ys)
  return float(np.dot(xs, ys) / np.dot(xs, xs))


def run_model(name: str, spec, study, workdir: str, *, timeout_s: float) -> int:
  """Real runs, then simulated ones; returns the number that failed."""
  data_dir = os.path.join(workdir, "tfds")
  if scaling.prepare_data(spec["config"], data_dir, spec.get("overrides", {}).get("data")):
    log(f"{name}: data in {data_dir}")
  else:
    data_dir = None
  failed = 0
  real_groups = spec.get("real_groups", study["real_groups"])
  for g in real_groups:
    for seed in study["seeds"]:
      directory = run_dir(workdir, name, g, seed, False)
      flags = common_flags(spec, seed, data_dir) + [
        "--config.parallel.strategy=hybrid", f"--config.parallel.num_groups={g}",
        "--config.parallel.num_servers=1", "--config.parallel.scaling=weak",
      ]  # fmt: skip
      failed += not run(
        scaling.mpirun_command(g + 1, spec["config"], directory, flags), directory,
        timeout_s=timeout_s,
      )  # fmt: skip
  histograms = measured_staleness(workdir, name, real_groups, study["seeds"])
  slope = staleness_slope(histograms)
  log(f"{name}: measured mean staleness per extra group {slope:.2f}")
  for g in study["groups"]:
    for seed in study["seeds"]:
      directory = run_dir(workdir, name, g, seed, True)
      hist = histograms.get(g)
      flags = common_flags(spec, seed, data_dir) + [
        "--config.parallel.strategy=simulated", f"--config.parallel.num_groups={g}",
        f"--config.parallel.staleness_per_group={slope:.4f}",
        f"--config.parallel.staleness_seed={seed}",
      ]  # fmt: skip
      if hist is not None:
        flags.append("--config.parallel.staleness_histogram=" + ",".join(f"{c:g}" for c in hist))
      command = [
        sys.executable, os.path.join(REPO, "launch", "main.py"),
        f"--config={os.path.join(REPO, spec['config'])}", f"--workdir={os.path.abspath(directory)}",
        *flags,
      ]  # fmt: skip
      failed += not run(command, directory, timeout_s=timeout_s)
  return failed


def collect(study, workdir: str, models) -> list[dict]:
  rows = []
  for name in models:
    spec = study["models"][name]
    real_groups = spec.get("real_groups", study["real_groups"])
    for simulated, groups in ((False, real_groups), (True, study["groups"])):
      for g in groups:
        for seed in study["seeds"]:
          directory = run_dir(workdir, name, g, seed, simulated)
          summary = scaling.read_json(os.path.join(directory, "summary.json"))
          if summary is None:
            continue
          records = scaling.read_metrics(os.path.join(directory, "metrics.jsonl"))
          rows.append({
            "model": name, "groups": g, "seed": seed, "simulated": int(simulated),
            "steps_to_target": scaling.steps_to_target(
              records, summary, spec["metric"], spec["target"]
            ),
            "staleness_mean": summary.get("staleness_mean"),
            "final_metric": scaling.final_metric(summary, spec["metric"]),
            "metric": spec["metric"], "target": spec["target"], "budget": summary.get("steps"),
          })  # fmt: skip
  return rows


def write_csv(rows: list[dict], path: str) -> str:
  with open(path, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=COLUMNS)
    writer.writeheader()
    for row in rows:
      writer.writerow({k: "" if row[k] is None else row[k] for k in COLUMNS})
  return path


def aggregate(rows: list[dict]) -> list[dict]:
  """Per (model, simulated, G): mean and std of steps_to_target over the seeds that reached it."""
  keys = sorted({(r["model"], r["simulated"], r["groups"]) for r in rows})
  out = []
  for model, simulated, g in keys:
    runs = [r for r in rows if (r["model"], r["simulated"], r["groups"]) == (model, simulated, g)]
    reached = [r["steps_to_target"] for r in runs if r["steps_to_target"] is not None]
    staleness = [r["staleness_mean"] for r in runs if r["staleness_mean"] is not None]
    budgets = [r["budget"] for r in runs if r["budget"] is not None]
    out.append({
      "model": model, "simulated": simulated, "groups": g, "runs": len(runs),
      "reached": len(reached),
      "mean": float(np.mean(reached)) if reached else math.nan,
      "std": float(np.std(reached, ddof=1)) if len(reached) > 1 else math.nan,
      "staleness_mean": float(np.mean(staleness)) if staleness else math.nan,
      "budget": max(budgets) if budgets else None,
    })  # fmt: skip
  return out


def plot(table: list[dict], study, out_png: str) -> str:
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  models = sorted({t["model"] for t in table})
  fig, axes = plt.subplots(1, len(models), figsize=(5.2 * len(models), 4), squeeze=False)
  for ax, model in zip(axes[0], models, strict=True):
    spec = study["models"][model]
    for simulated, style in (
      (0, dict(marker="o", ls="-")),
      (1, dict(marker="s", ls="--", mfc="none")),
    ):
      rows = [t for t in table if t["model"] == model and t["simulated"] == simulated]
      for t in (t for t in rows if not t["reached"]):  # never reached: above the budget
        ax.plot([t["groups"]], [t["budget"]], marker="^", color="grey", ls="none")
        ax.annotate(f"0/{t['runs']} within {t['budget']}", (t["groups"], t["budget"]),
                    xytext=(-4, -14), textcoords="offset points", ha="right", fontsize=7)  # fmt: skip
      rows = [t for t in rows if t["reached"]]
      if not rows:
        continue
      ax.errorbar(
        [t["groups"] for t in rows], [t["mean"] for t in rows],
        yerr=[0 if math.isnan(t["std"]) else t["std"] for t in rows], capsize=3,
        label="real (hybrid over MPI)" if not simulated else "simulated (drawn staleness)",
        **style,
      )  # fmt: skip
      for t in rows:
        if t["reached"] < t["runs"]:
          ax.annotate(f"{t['reached']}/{t['runs']}", (t["groups"], t["mean"]), fontsize=8,
                      textcoords="offset points", xytext=(4, 4))  # fmt: skip
    ax.set_xscale("log", base=2)
    ax.set_xlabel("compute groups G (level of asynchrony)")
    ax.set_ylabel(f"updates to {spec['metric']} >= {spec['target']}")
    ax.set_title(f"{model}: {len(study['seeds'])} seeds, mean +- std")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
      ax.legend(fontsize=8)
  fig.tight_layout()
  os.makedirs(os.path.dirname(out_png), exist_ok=True)
  fig.savefig(out_png, dpi=120)
  plt.close(fig)
  return out_png


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument("--config", default="configs/statistical_efficiency.py")
  parser.add_argument("--workdir", default=os.path.join(REPO, "runs", "statistical_efficiency"))
  parser.add_argument("--only", default="", help="comma-separated models (default: all)")
  parser.add_argument("--timeout_s", type=float, default=900, help="per run")
  args = parser.parse_args(argv)
  try:
    study = load_study(args.config)
  except (OSError, ValueError) as e:
    print(f"statistical_efficiency: cannot read the study {args.config}: {e}", file=sys.stderr)
    return 2
  models = [m for m in args.only.split(",") if m] or list(study["models"])
  unknown = sorted(set(models) - set(study["models"]))
  if unknown:
    print(f"statistical_efficiency: --only names unknown models {unknown}; "
          f"the study has {sorted(study['models'])}", file=sys.stderr)  # fmt: skip
    return 2
  workdir = os.path.abspath(args.workdir)
  os.makedirs(workdir, exist_ok=True)
  start = time.time()
  failed = sum(
    run_model(m, study["models"][m], study, workdir, timeout_s=args.timeout_s) for m in models
  )
  rows = collect(study, workdir, models)
  log(f"wrote {write_csv(rows, os.path.join(workdir, 'statistical_efficiency.csv'))}")
  table = aggregate(rows)
  if table:
    log(f"wrote {plot(table, study, os.path.join(workdir, 'plots', 'statistical_efficiency.png'))}")
  print(f"{'model':9} {'G':>3} {'kind':9} {'staleness':>9} {'updates to target':>20} reached")
  for t in table:
    kind = "simulated" if t["simulated"] else "real"
    spread = "" if math.isnan(t["std"]) else f" +- {t['std']:.0f}"
    mean = "-" if math.isnan(t["mean"]) else f"{t['mean']:.0f}{spread}"
    print(f"{t['model']:9} {t['groups']:>3} {kind:9} {t['staleness_mean']:>9.2f} {mean:>20} "
          f"{t['reached']}/{t['runs']}")  # fmt: skip
  log(f"{len(rows)} runs in {time.time() - start:.0f} s; {failed} failed")
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
