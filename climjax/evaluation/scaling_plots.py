"""Figures of a scaling sweep (launch/scaling.py): speed-up, efficiency, groups, time split.

Every function takes the sweep's rows (dicts with the columns of scaling.csv;
None where a value is missing) and a PNG path, draws with matplotlib's Agg
backend and returns the path. Ranks beyond the machine's cores (`cores`) are
shaded: there the ranks share cores and cannot speed up.
"""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

MODES = ("strong", "weak")
# Time split columns of scaling.csv (mean seconds per step on a worker), stacked in this order.
SPLIT = (
  ("compute_s", "compute"),
  ("comm_s", "communication"),
  ("wait_s", "waiting"),
  ("input_s", "input"),
)


def _save(fig, out_png) -> str:
  out_png = os.fspath(out_png)
  os.makedirs(os.path.dirname(os.path.abspath(out_png)), exist_ok=True)
  fig.tight_layout()
  fig.savefig(out_png, dpi=110)
  plt.close(fig)
  return out_png


def _value(row, key):
  value = row.get(key)
  if value is None or isinstance(value, bool):
    return None
  value = float(value)
  return None if np.isnan(value) else value


def _shade_oversubscribed(ax, rows) -> None:
  cores = max((int(r["cores"]) for r in rows if r.get("cores")), default=0)
  ranks = [int(r["ranks"]) for r in rows]
  if cores and ranks and max(ranks) > cores:
    ax.axvspan(cores + 0.5, max(ranks) * 1.2, color="0.9", zorder=0)
    ax.text(cores + 0.6, ax.get_ylim()[1], f" > {cores} cores:\n oversubscribed", fontsize=7,
            va="top", color="0.4")  # fmt: skip


def _against_ranks(rows, out_png, key: str, *, ylabel: str, ideal) -> str:
  """One panel per mode: `key` against ranks, a line per (model, sync) and hybrid markers."""
  fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.8), squeeze=False)
  for ax, mode in zip(axes[0], MODES, strict=True):
    here = [r for r in rows if r["mode"] == mode and _value(r, key) is not None]
    ranks = sorted({int(r["ranks"]) for r in here})
    if ranks:
      x = np.arange(1, max(ranks) + 1)
      ax.plot(x, ideal(x), color="k", lw=0.8, ls="--", label="ideal")
    for model in sorted({r["model"] for r in here}):
      sync = sorted((int(r["ranks"]), _value(r, key)) for r in here
                    if r["model"] == model and r["strategy"] == "sync")  # fmt: skip
      if sync:
        ax.plot(*zip(*sync, strict=True), marker="o", lw=1.4, label=f"{model} sync")
      hybrid = [r for r in here if r["model"] == model and r["strategy"] == "hybrid"]
      for groups in sorted({int(r["groups"]) for r in hybrid}):
        points = [(int(r["ranks"]), _value(r, key)) for r in hybrid if int(r["groups"]) == groups]
        ax.scatter(*zip(*points, strict=True), marker="^s*Dv"[(groups.bit_length() - 1) % 5],
                   s=36, label=f"{model} hybrid G={groups}")  # fmt: skip
    ax.set_title(f"{mode} scaling", fontsize=10)
    ax.set_xlabel("MPI ranks (hybrid: servers included)", fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    if ranks:
      ax.set_xticks(ranks)
      ax.set_xlim(0.5, max(ranks) + 0.5)
      _shade_oversubscribed(ax, here)
    else:
      ax.text(0.5, 0.5, "no points", transform=ax.transAxes, ha="center", color="0.5")
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    if ranks:
      ax.legend(fontsize=7)
  return _save(fig, out_png)


def plot_speedup(rows, out_png) -> str:
  """Speed-up over one rank of the same model and mode, with the ideal line (= ranks)."""
  return _against_ranks(rows, out_png, "speedup", ylabel="speed-up over 1 rank", ideal=lambda x: x)


def plot_efficiency(rows, out_png) -> str:
  """Scaling efficiency against ranks (ideal 1)."""
  return _against_ranks(
    rows, out_png, "efficiency", ylabel="efficiency", ideal=lambda x: np.ones_like(x, float)
  )


def plot_throughput_vs_groups(rows, out_png) -> str:
  """Hybrid throughput against the number of compute groups, a line per (ranks, mode)."""
  models = sorted({r["model"] for r in rows})
  fig, axes = plt.subplots(1, max(len(models), 1), figsize=(4.6 * max(len(models), 1), 3.6),
                           squeeze=False)  # fmt: skip
  for ax, model in zip(axes[0], models, strict=False):
    hybrid = [r for r in rows if r["model"] == model and r["strategy"] == "hybrid"
              and _value(r, "examples_per_second") is not None]  # fmt: skip
    for ranks, mode in sorted({(int(r["ranks"]), r["mode"]) for r in hybrid}):
      line = sorted((int(r["groups"]), _value(r, "examples_per_second")) for r in hybrid
                    if int(r["ranks"]) == ranks and r["mode"] == mode)  # fmt: skip
      servers = next(int(r["servers"]) for r in hybrid if int(r["ranks"]) == ranks)
      ax.plot(*zip(*line, strict=True), marker="o",
              label=f"{ranks} ranks ({servers} server), {mode}")  # fmt: skip
    sync = [r for r in rows if r["model"] == model and r["strategy"] == "sync"
            and _value(r, "examples_per_second") is not None]  # fmt: skip
    for r in sync:
      if any(int(r["ranks"]) == int(h["workers"]) and r["mode"] == h["mode"] for h in hybrid):
        ax.axhline(_value(r, "examples_per_second"), color="0.5", lw=0.8, ls=":")
        ax.text(1, _value(r, "examples_per_second"), f" sync {r['ranks']} ranks ({r['mode']})",
                fontsize=6, va="bottom", color="0.4")  # fmt: skip
    groups = sorted({int(r["groups"]) for r in hybrid})
    if groups:
      ax.set_xscale("log", base=2)
      ax.set_xticks(groups, [str(g) for g in groups])
      ax.legend(fontsize=7)
    else:
      ax.text(0.5, 0.5, "no hybrid points", transform=ax.transAxes, ha="center", color="0.5")
    ax.set_title(f"{model}: hybrid throughput", fontsize=10)
    ax.set_xlabel("compute groups G", fontsize=8)
    ax.set_ylabel("examples / s", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
  return _save(fig, out_png)


def plot_time_split(rows, out_png) -> str:
  """Stacked bars per point: compute, communication, waiting, input (s per step)."""
  models = sorted({r["model"] for r in rows})
  fig, axes = plt.subplots(1, max(len(models), 1), figsize=(5.2 * max(len(models), 1), 4.2),
                           squeeze=False)  # fmt: skip
  for ax, model in zip(axes[0], models, strict=False):
    here = [r for r in rows if r["model"] == model]
    labels = [r.get("name") or f"{r['strategy']} r{r['ranks']}" for r in here]
    bottom = np.zeros(len(here))
    recorded = False
    for key, label in SPLIT:
      values = np.array([_value(r, key) or 0.0 for r in here]) * 1e3
      recorded |= bool(values.any())
      ax.bar(np.arange(len(here)), values, bottom=bottom, label=label)
      bottom += values
    if not recorded:
      ax.text(0.5, 0.5, "no time split in these runs' summary.json", transform=ax.transAxes,
              ha="center", fontsize=8, color="0.5")  # fmt: skip
    ax.set_xticks(np.arange(len(here)), labels, rotation=60, ha="right", fontsize=6)
    ax.set_xlabel("sweep point (strategy, ranks)", fontsize=8)
    ax.set_title(f"{model}: time per step", fontsize=10)
    ax.set_ylabel("ms per step (worker mean)", fontsize=8)
    ax.tick_params(axis="y", labelsize=7)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7)
  return _save(fig, out_png)


def plot_all(rows, out_dir) -> list[str]:
  """The four figures into `out_dir`; returns their paths."""
  return [
    plot_speedup(rows, os.path.join(out_dir, "speedup_vs_ranks.png")),
    plot_efficiency(rows, os.path.join(out_dir, "efficiency_vs_ranks.png")),
    plot_throughput_vs_groups(rows, os.path.join(out_dir, "throughput_vs_groups.png")),
    plot_time_split(rows, os.path.join(out_dir, "time_split.png")),
  ]
