"""Reproduces the classifier table of Liu et al. (2016): LR, KNN, SVM, RF and ConvNet on TC, AR, WF.

  python launch/reproduce_table.py                               # synthetic data, < 30 min on 2 cores
  python launch/reproduce_table.py --size=tiny --workdir=/tmp/t  # a couple of minutes, for tests
  python launch/reproduce_table.py --tasks=tc,wf --trials=20 --cnn_trials=10

For each task, each scikit-learn baseline is tuned by TPE on a validation part
carved from the training split (launch/sweep.py, `table_trials` trials from
the config's `get_sweep`, or --trials), refit on the training split with the
best parameters and scored on the test split; the ConvNet is trained with the
task's config, exactly as `launch/main.py --config=configs/<task>.py` would
(or tuned first, with --cnn_trials). All methods use the same tfds splits and
the same normalisation (climjax/evaluation/baselines.py says how the
baselines' inputs are reduced).

--workdir (default runs/table) gets:
  table.csv     one row per (task, method): train and test accuracy, the paper's
                test accuracy, data source, sizes, tuned parameters, seconds
  table.md      the table as Markdown, method by task, with the data source stated
  table.png     test accuracy per method and task, beside the paper's
  <task>/<method>/   each sweep's workdir (trials.jsonl, best.json, final.json)
  <task>/cnn/        the ConvNet's workdir (checkpoints, summary.json, ...)
The table files are rewritten after every task, and a rerun with the same
workdir reuses finished trials and the ConvNet's final checkpoint.
"""

from __future__ import annotations

import csv
import importlib
import json
import os
import sys
import time

# configs/ lives beside climjax/ at the repository root, not inside the package.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
  sys.path.insert(0, REPO_ROOT)

from absl import app, flags, logging  # noqa: E402

from climjax import platform  # noqa: E402  (imports no JAX)
from climjax.data.errors import DataError  # noqa: E402
from climjax.training.validate import ConfigError  # noqa: E402  (imports no JAX)
from launch import sweep as sweep_lib  # noqa: E402  (imports no JAX)

TASKS = ("tc", "ar", "wf")
METHODS = ("lr", "knn", "svm", "rf", "cnn")
METHOD_LABELS = {
  "lr": "Logistic regression",
  "knn": "K-nearest neighbours",
  "svm": "SVM",
  "rf": "Random forest",
  "cnn": "ConvNet",
}
# Test accuracy (%) in Liu et al. (2016), Table 3 (DESIGN.md section 1).
PAPER_TEST_ACCURACY = {
  "tc": {"lr": 95.85, "knn": 97.85, "svm": 95.85, "rf": 99.4, "cnn": 99.1},
  "ar": {"lr": 82.65, "knn": 81.7, "svm": 83.0, "rf": 88.4, "cnn": 90.0},
  "wf": {"lr": 89.8, "knn": 76.45, "svm": 90.2, "rf": 87.5, "cnn": 89.4},
}
CSV_COLUMNS = (
  "task",
  "method",
  "train_accuracy",
  "test_accuracy",
  "paper_test_accuracy",
  "validation_accuracy",
  "data_source",
  "num_train",
  "num_test",
  "trials",
  "params",
  "seconds",
)


def data_source_label(data_config) -> str:
  """'synthetic' or 'real (...)': what the table says its numbers come from."""
  if data_config.source == "synthetic":
    return "synthetic"
  return f"real ({data_config.source}: {data_config.input})"


def _row(task: str, method: str, final: dict, *, trials: int, seconds: float, source: str) -> dict:
  return {
    "task": task,
    "method": method,
    "train_accuracy": final["train_accuracy"],
    "test_accuracy": final["test_accuracy"],
    "paper_test_accuracy": round(PAPER_TEST_ACCURACY[task][method] / 100.0, 4),
    "validation_accuracy": final.get("validation_accuracy"),
    "data_source": source,
    "num_train": final["num_train"],
    "num_test": final["num_test"],
    "trials": trials,
    "params": json.dumps(final.get("params", {}), sort_keys=True),
    "seconds": round(seconds, 1),
  }


def run_task(
  task: str,
  *,
  size: str,
  workdir: str,
  trials: int,
  cnn_trials: int,
  data_dir: str,
  overrides: dict | None = None,
  log,
) -> list[dict]:
  """The table's rows for one task: four tuned baselines, then the ConvNet.

  `overrides` sets dotted config fields of every task ({"train.steps": 4}), the
  way `--config.train.steps=4` would for launch/main.py.
  """
  from climjax.evaluation import baselines
  from climjax.training import train

  module = importlib.import_module(f"configs.{task}")
  arg = None if size == "default" else size
  config = sweep_lib.with_params(module.get_config(arg), overrides or {})
  if data_dir:
    config.data.data_dir = data_dir
  sweep = module.get_sweep(arg)
  space = module.get_search_space()
  trials = trials or sweep.table_trials
  source = data_source_label(config.data)
  rows = []

  t0 = time.time()
  log(f"[table] {task}: reading {source} patches for the baselines (pool {sweep.baselines.pool})")
  arrays = baselines.load_arrays(
    config, pool=sweep.baselines.pool, max_train=sweep.baselines.max_train, seed=sweep.seed
  )
  log(
    f"[table] {task}: {len(arrays.y_train)} train / {len(arrays.y_test)} test examples, "
    f"{arrays.x_train.shape[1]} features ({time.time() - t0:.0f} s)"
  )
  for method in baselines.METHODS:
    t0 = time.time()
    result = sweep_lib.run_sweep(
      config,
      sweep=sweep,
      search_space=space,
      method=method,
      trials=trials,
      workdir=os.path.join(workdir, task, method),
      arrays=arrays,
      log=log,
    )
    rows.append(
      _row(task, method, result["final"], trials=trials, seconds=time.time() - t0, source=source)
    )
  del arrays  # ~200 MB for TC; the ConvNet reads its own batches

  t0 = time.time()
  if cnn_trials:
    result = sweep_lib.run_sweep(
      config,
      sweep=sweep,
      search_space=space,
      method="cnn",
      trials=cnn_trials,
      workdir=os.path.join(workdir, task, "cnn_sweep"),
      log=log,
    )
    final = result["final"]
  else:
    log(f"[table] {task}: training the ConvNet ({config.model.name}, {config.train.steps} steps)")
    cnn_dir = os.path.join(workdir, task, "cnn")
    summary = train.train_and_evaluate(config, cnn_dir)
    # Example counts from the run's own evaluation (data.num_* may be 0 = "all" for files).
    with open(os.path.join(cnn_dir, "eval", "accuracy.csv")) as f:
      counts = {r["split"]: int(r["count"]) for r in csv.DictReader(f)}
    final = {
      "train_accuracy": summary["train_accuracy"],
      "test_accuracy": summary["test_accuracy"],
      "num_train": counts["train"],
      "num_test": counts["test"],
      "params": {},
    }
  rows.append(_row(task, "cnn", final, trials=cnn_trials, seconds=time.time() - t0, source=source))
  return rows


# ---- the table files ---------------------------------------------------------------


def _percent(value) -> str:
  return "—" if value is None or value == "" else f"{100.0 * float(value):.1f}"


def write_csv(path: str, rows: list[dict]) -> None:
  with open(path, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)


def convnet_vs_baselines(rows: list[dict]) -> dict[str, tuple[float, str, float]]:
  """task -> (ConvNet test accuracy, best baseline's method, its test accuracy)."""
  out = {}
  for task in dict.fromkeys(r["task"] for r in rows):
    by_method = {r["method"]: r for r in rows if r["task"] == task}
    base = [r for m, r in by_method.items() if m != "cnn"]
    if "cnn" in by_method and base:
      best = max(base, key=lambda r: r["test_accuracy"])
      out[task] = (by_method["cnn"]["test_accuracy"], best["method"], best["test_accuracy"])
  return out


def write_markdown(path: str, rows: list[dict], *, size: str, seconds: float) -> None:
  tasks = list(dict.fromkeys(r["task"] for r in rows))
  sources = sorted({r["data_source"] for r in rows})
  cell = {(r["task"], r["method"]): r for r in rows}
  header = ["method"]
  for task in tasks:
    header += [f"{task.upper()} train", f"{task.upper()} test", f"{task.upper()} paper test"]
  lines = [
    "# Liu et al. (2016) classifiers, reproduced by climjax",
    "",
    f"Data: **{', '.join(sources)}**"
    + (
      " — CAM5-like synthetic patches generated by climjax.data, not the paper's CAM5 "
      "data, so the numbers show whether the methods rank as in the paper, not the "
      "paper's values."
      if sources == ["synthetic"]
      else "."
    ),
    "",
    "Accuracy in %. Paper: test accuracy from Liu et al. (2016), Table 3 "
    "(the paper's train accuracies are not reproduced here).",
    "",
    "| " + " | ".join(header) + " |",
    "|---" * len(header) + "|",
  ]
  for method in METHODS:
    cells = [METHOD_LABELS[method]]
    for task in tasks:
      r = cell.get((task, method))
      cells += [
        _percent(r["train_accuracy"]) if r else "—",
        _percent(r["test_accuracy"]) if r else "—",
        f"{PAPER_TEST_ACCURACY[task][method]:.2f}",
      ]
    lines.append("| " + " | ".join(cells) + " |")
  lines += ["", "## Setup", ""]
  for task in tasks:
    base = [cell[(task, m)] for m in ("lr", "knn", "svm", "rf") if (task, m) in cell]
    cnn = cell.get((task, "cnn"))
    if base:
      lines.append(
        f"- {task.upper()}: baselines tuned with {base[0]['trials']} TPE trials each on a "
        f"validation split carved from train, refit on {base[0]['num_train']} training "
        f"examples, tested on {base[0]['num_test']}."
      )
    if cnn:
      how = f"tuned with {cnn['trials']} TPE trials, then" if cnn["trials"] else "with its config,"
      lines.append(
        f"- {task.upper()}: ConvNet {how} trained on {cnn['num_train']} examples, "
        f"tested on {cnn['num_test']}."
      )
  lines += ["", "## ConvNet against the best baseline (test accuracy)", ""]
  for task, (cnn_acc, method, base_acc) in convnet_vs_baselines(rows).items():
    verdict = "at least as good" if cnn_acc >= base_acc else "worse"
    lines.append(
      f"- {task.upper()}: ConvNet {_percent(cnn_acc)} vs {METHOD_LABELS[method]} "
      f"{_percent(base_acc)}: {verdict}."
    )
  lines += ["", f"Run size: {size}; wall time {seconds / 60:.1f} min.", ""]
  with open(path, "w") as f:
    f.write("\n".join(lines))


def write_chart(path: str, rows: list[dict]) -> None:
  """Grouped bars: climjax's test accuracy per method and task, the paper's hatched beside it."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  import numpy as np

  tasks = list(dict.fromkeys(r["task"] for r in rows))
  cell = {(r["task"], r["method"]): r for r in rows}
  fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.8), squeeze=False)
  x = np.arange(len(METHODS))
  for ax, task in zip(axes[0], tasks, strict=True):
    ours = [100 * cell[(task, m)]["test_accuracy"] if (task, m) in cell else 0 for m in METHODS]
    paper = [PAPER_TEST_ACCURACY[task][m] for m in METHODS]
    ax.bar(x - 0.2, ours, 0.4, label="climjax (test)", color="tab:blue")
    ax.bar(x + 0.2, paper, 0.4, label="paper (test)", color="white", edgecolor="gray", hatch="//")
    ax.set_xticks(x, [m.upper() if m != "cnn" else "ConvNet" for m in METHODS])
    ax.set_ylim(50, 100)
    ax.set_title(task.upper())
    ax.grid(axis="y", alpha=0.3)
  axes[0][0].set_ylabel("test accuracy (%)")
  sources = ", ".join(sorted({r["data_source"] for r in rows}))
  fig.suptitle(f"Liu et al. (2016) classifiers: climjax on {sources} data vs the paper")
  # Beside the title, not on an axes, where it would hide bars.
  fig.legend(*axes[0][0].get_legend_handles_labels(), loc="upper right", ncol=2, fontsize=8)
  fig.tight_layout(rect=(0, 0, 1, 0.93))
  fig.savefig(path, dpi=120)
  plt.close(fig)


def write_table(workdir: str, rows: list[dict], *, size: str, seconds: float) -> None:
  write_csv(os.path.join(workdir, "table.csv"), rows)
  write_markdown(os.path.join(workdir, "table.md"), rows, size=size, seconds=seconds)
  write_chart(os.path.join(workdir, "table.png"), rows)


def reproduce(
  *,
  tasks: tuple[str, ...] = TASKS,
  size: str = "default",
  workdir: str = "runs/table",
  trials: int = 0,
  cnn_trials: int = 0,
  data_dir: str = "",
  overrides: dict | None = None,
  log=print,
) -> list[dict]:
  """Runs every task and writes the table files; returns the rows."""
  t_start = time.time()
  os.makedirs(workdir, exist_ok=True)
  unknown = [task for task in tasks if task not in TASKS]
  if unknown:
    raise ConfigError(f"--tasks must be among {TASKS}, got {unknown}")
  rows: list[dict] = []
  for task in tasks:
    t0 = time.time()
    rows += run_task(
      task,
      size=size,
      workdir=workdir,
      trials=trials,
      cnn_trials=cnn_trials,
      data_dir=data_dir,
      overrides=overrides,
      log=log,
    )
    write_table(workdir, rows, size=size, seconds=time.time() - t_start)
    log(
      f"[table] {task} done in {(time.time() - t0) / 60:.1f} min "
      f"(total {(time.time() - t_start) / 60:.1f} min)"
    )
  log(f"[table] wrote {os.path.join(workdir, 'table.md')}")
  return rows


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  from configs import common

  # Every task's config carries the same platform block; it must apply before JAX starts.
  info = platform.apply(common.platform_config(), argv=sys.argv)
  print(f"[table] platform: {info}", flush=True)

  def log(message: str) -> None:
    print(message, flush=True)

  try:
    rows = reproduce(
      tasks=tuple(_TASKS.value),
      size=_SIZE.value,
      workdir=_WORKDIR.value,
      trials=_TRIALS.value,
      cnn_trials=_CNN_TRIALS.value,
      data_dir=_DATA_DIR.value,
      log=log,
    )
  except (ConfigError, DataError) as e:
    # As launch/main.py: a bad value or file ends in one line naming it (exit status 2).
    print(f"climjax: error: {e}", file=sys.stderr)
    sys.exit(2)
  for task, (cnn_acc, method, base_acc) in convnet_vs_baselines(rows).items():
    print(f"[table] {task}: ConvNet {cnn_acc:.4f} vs best baseline {method} {base_acc:.4f}")


if __name__ == "__main__":
  # Flags are defined only when run as a script, so tests can import this module
  # beside other launchers without clashing flag names.
  _WORKDIR = flags.DEFINE_string("workdir", "runs/table", "Output directory.")
  _SIZE = flags.DEFINE_enum(
    "size", "default", ("default", "tiny", "paper"), "Config argument of every task."
  )
  _TASKS = flags.DEFINE_list("tasks", list(TASKS), "Tasks to run.")
  _TRIALS = flags.DEFINE_integer(
    "trials", 0, "TPE trials per baseline (0: the config's table_trials)."
  )
  _CNN_TRIALS = flags.DEFINE_integer(
    "cnn_trials", 0, "TPE trials for the ConvNet (0: train it with its config as is)."
  )
  _DATA_DIR = flags.DEFINE_string(
    "data_dir", "", "Where tfds datasets are built (default: the configs')."
  )
  app.run(main)
