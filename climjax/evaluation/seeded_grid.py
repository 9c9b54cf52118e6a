"""A grid of runs repeated over seeds: mean +- std per point and paired comparisons.

A study (configs/semisup_labels.py) varies one setting along an axis `x`
(labelled fraction), one it compares (`compare`: the reconstruction weight)
against a baseline level (lambda = 0), and a seed. `summarise` groups the runs
by (x, compare) over seeds; `paired_comparisons` compares, at each x, every
level of `compare` against the baseline run by run for the same seed (the same
initialisation and batch order), with a two-sided paired t-test
(scipy.stats.ttest_rel). With 3 seeds the test has 2 degrees of freedom: only
large, consistent differences reach p < 0.05, and the table says how many
seeds went each way. `write_study` writes study.md, study.csv and study.png.

numpy, scipy and matplotlib only; rows are plain dicts (a run's dotted
overrides merged with its summary.json).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence

import numpy as np
from scipy import stats as scipy_stats


def _value(row: Mapping, key: str) -> float:
  v = row.get(key)
  return math.nan if v is None else float(v)


def _levels(rows: Sequence[Mapping], key: str) -> list[float]:
  return sorted({float(r[key]) for r in rows}, reverse=True)


def summarise(
  rows: Sequence[Mapping], *, x: str, compare: str, seed: str, metric: str
) -> list[dict]:
  """One row per (x, compare) level: n seeds finished, mean, std (ddof=1), the values."""
  out = []
  for xv in _levels(rows, x):
    for cv in _levels(rows, compare):
      group = [r for r in rows if float(r[x]) == xv and float(r[compare]) == cv]
      values = np.array([_value(r, metric) for r in group])
      finished = values[np.isfinite(values)]
      out.append({
        x: xv, compare: cv, "metric": metric, "n": int(finished.size),
        "mean": float(finished.mean()) if finished.size else math.nan,
        "std": float(finished.std(ddof=1)) if finished.size > 1 else math.nan,
        "seeds": [r[seed] for r in group if math.isfinite(_value(r, metric))],
      })  # fmt: skip
  return out


def paired_comparisons(
  rows: Sequence[Mapping], *, x: str, compare: str, baseline: float, seed: str, metric: str
) -> list[dict]:
  """At each x, each level of `compare` minus the baseline level, paired by seed."""
  out = []
  for xv in _levels(rows, x):
    at_x = [r for r in rows if float(r[x]) == xv]
    base = {r[seed]: _value(r, metric) for r in at_x if float(r[compare]) == baseline}
    for cv in _levels(at_x, compare):
      if cv == baseline:
        continue
      other = {r[seed]: _value(r, metric) for r in at_x if float(r[compare]) == cv}
      pairs = [(other[s], base[s]) for s in sorted(set(other) & set(base), key=str)
               if math.isfinite(other[s]) and math.isfinite(base[s])]  # fmt: skip
      diff = np.array([a - b for a, b in pairs])
      row = {x: xv, compare: cv, "baseline": baseline, "metric": metric, "n": int(diff.size),
             "mean_difference": float(diff.mean()) if diff.size else math.nan,
             "std_difference": float(diff.std(ddof=1)) if diff.size > 1 else math.nan,
             "wins": int(np.sum(diff > 0)), "losses": int(np.sum(diff < 0)),
             "t": math.nan, "p": math.nan}  # fmt: skip
      if diff.size > 1 and np.ptp(diff) > 1e-12:  # equal differences: no t (zero variance)
        test = scipy_stats.ttest_rel([a for a, _ in pairs], [b for _, b in pairs])
        row["t"], row["p"] = float(test.statistic), float(test.pvalue)
      out.append(row)
  return out


def _pm(mean: float, std: float) -> str:
  if math.isnan(mean):
    return "–"
  return f"{mean:.3f}" if math.isnan(std) else f"{mean:.3f} ± {std:.3f}"


def _signed(mean: float, std: float) -> str:
  if math.isnan(mean):
    return "–"
  return f"{mean:+.3f}" if math.isnan(std) else f"{mean:+.3f} ± {std:.3f}"


def markdown(
  summary: Sequence[Mapping], comparisons: Sequence[Mapping], *, x: str, compare: str,
  x_label: str, compare_label: str,
) -> str:  # fmt: skip
  """The study's tables: mean ± std per point, then the paired differences."""
  metrics = list(dict.fromkeys(r["metric"] for r in summary))
  compares = list(dict.fromkeys(r[compare] for r in summary))
  lines = []
  for metric in metrics:
    rows = [r for r in summary if r["metric"] == metric]
    lines += [
      f"**{metric}**, mean ± std over seeds (n = seeds finished):",
      "",
      f"| {x_label} | " + " | ".join(f"{compare_label} = {c:g}" for c in compares) + " |",
      "|---|" + "---|" * len(compares),
    ]
    for xv in dict.fromkeys(r[x] for r in rows):
      cells = [next(r for r in rows if r[x] == xv and r[compare] == c) for c in compares]
      lines.append(f"| {xv:g} | " + " | ".join(
        f"{_pm(c['mean'], c['std'])} (n={c['n']})" for c in cells) + " |")  # fmt: skip
    lines.append("")
    paired = [r for r in comparisons if r["metric"] == metric]
    if paired:
      lines += [
        f"Paired by seed, {metric} of {compare_label} > 0 minus {compare_label} = "
        f"{paired[0]['baseline']:g} (two-sided paired t-test):",
        "",
        f"| {x_label} | {compare_label} | difference (mean ± std) | seeds better / worse | t | p |",
        "|---|---|---|---|---|---|",
      ]
      for r in paired:
        t = "–" if math.isnan(r["t"]) else f"{r['t']:.2f}"
        p = "–" if math.isnan(r["p"]) else f"{r['p']:.3f}"
        lines.append(
          f"| {r[x]:g} | {r[compare]:g} | {_signed(r['mean_difference'], r['std_difference'])} "
          f"| {r['wins']} / {r['losses']} | {t} | {p} |"
        )
      lines.append("")
  return "\n".join(lines)


def plot(
  summary: Sequence[Mapping], out_png: str, *, x: str, compare: str, x_label: str,
  compare_label: str, title: str = "",
) -> str:  # fmt: skip
  """Each metric against x (log axis, in %), one line with std error bars per compared level."""
  import matplotlib  # noqa: PLC0415

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # noqa: PLC0415

  metrics = list(dict.fromkeys(r["metric"] for r in summary))
  fig, axes = plt.subplots(1, len(metrics), figsize=(5.2 * len(metrics), 3.8), squeeze=False)
  for ax, metric in zip(axes[0], metrics, strict=True):
    rows = [r for r in summary if r["metric"] == metric]
    for k, cv in enumerate(dict.fromkeys(r[compare] for r in rows)):
      line = sorted((r[x], r["mean"], r["std"], r["n"]) for r in rows if r[compare] == cv)
      xs = np.array([100 * p[0] for p in line]) * (1 + 0.04 * (k - 1))  # offset: bars visible
      ys = np.array([p[1] for p in line])
      errs = np.nan_to_num(np.array([p[2] for p in line]))
      n = max((p[3] for p in line), default=0)
      ax.errorbar(xs, ys, yerr=errs, marker="o", capsize=3,
                  label=f"{compare_label} = {cv:g}" + (" (off)" if cv == 0 else ""))  # fmt: skip
    ax.set_xscale("log")
    ticks = sorted({100 * r[x] for r in rows})
    ax.set_xticks(ticks, [f"{t:g}%" for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel(f"{x_label} (%)")
    ax.set_ylabel(f"held-out {metric} (mean ± std, n = {n} seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  if title:
    fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(out_png)), exist_ok=True)
  fig.savefig(out_png, dpi=110)
  plt.close(fig)
  return out_png


def write_study(
  workdir: str, rows: Sequence[Mapping], *, x: str, compare: str, baseline: float, seed: str,
  metrics: Sequence[str], x_label: str = "", compare_label: str = "", title: str = "",
) -> dict:  # fmt: skip
  """study.md, study.csv and study.png in `workdir`; returns their paths."""
  x_label, compare_label = x_label or x, compare_label or compare
  summary, comparisons = [], []
  for metric in metrics:
    summary += summarise(rows, x=x, compare=compare, seed=seed, metric=metric)
    comparisons += paired_comparisons(
      rows, x=x, compare=compare, baseline=baseline, seed=seed, metric=metric
    )
  paths = {k: os.path.join(workdir, f"study.{k}") for k in ("md", "csv", "png")}
  text = markdown(summary, comparisons, x=x, compare=compare, x_label=x_label,
                  compare_label=compare_label)  # fmt: skip
  with open(paths["md"], "w") as f:
    f.write((f"{title}\n\n" if title else "") + text)
  with open(paths["csv"], "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow([x, compare, "metric", "n", "mean", "std"])
    writer.writerows([r[x], r[compare], r["metric"], r["n"], r["mean"], r["std"]] for r in summary)
  plot(summary, paths["png"], x=x, compare=compare, x_label=x_label,
       compare_label=compare_label, title=title)  # fmt: skip
  return paths
