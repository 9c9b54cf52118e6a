"""Does the encoder separate a class it was never told about? (configs/discovery.py)

  python launch/discover.py --config=configs/discovery.py [--workdir=runs/discovery]
  python launch/discover.py --config=configs/discovery.py:all      # each class withheld in turn
  python launch/discover.py --config=configs/discovery.py:tiny --workdir=/tmp/d

For each withheld class and seed: one training run of the detector through the
one training loop (climjax.training.train) in `<workdir>/withheld_<class>/seed<s>/`,
with that class's training boxes removed (`data.withheld_classes`). A run whose
summary.json exists is not trained again and an interrupted one resumes from
its checkpoint, so rerunning the command finishes the study. Then every cell
of the held-out fields is embedded by the trained encoder, by a randomly
initialised one and by pooling the raw fields over the cell, and
climjax.evaluation.discovery measures the withheld class on each: the
best-matching k-means / HDBSCAN cluster (purity, recall) and a linear probe
with 1, 5 and 25 labelled cells. Outputs in `<workdir>`:

  discovery.md / .csv     per withheld class and representation: mean +- std over seeds
  discovery.json          every number, per seed
  plots/embedding_<C>.png t-SNE of the sampled cells (seed 0), coloured by true class
  plots/cells_<C>.png     held-out fields: the withheld class's cells beside the cells
                          of the discovered (best k-means) cluster
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
  sys.path.insert(0, REPO_ROOT)

from absl import app, flags, logging  # noqa: E402

from climjax import platform  # noqa: E402  (imports no JAX)
from launch import main as main_lib  # noqa: E402  (--config, --workdir, one-line errors)

REPRESENTATIONS = ("trained encoder", "random encoder", "raw fields (pooled)")


def _ints(text: str) -> list[int]:
  return [int(v) for v in str(text).split(",") if v.strip()]


def run_config(config, class_name: str, seed: int):
  """The training run of one (withheld class, seed): the detector config, no discovery section."""
  run = config.copy_and_resolve_references()
  with run.unlocked():
    del run["discovery"]
  run.data.withheld_classes = class_name
  run.seed = seed
  return run


def train_run(config, workdir: str, log) -> dict:
  from climjax.training import train  # noqa: PLC0415

  path = os.path.join(workdir, "summary.json")
  if os.path.exists(path):
    log(f"[discover] {workdir}: trained earlier, kept")
    with open(path) as f:
      return json.load(f)
  start = time.time()
  summary = train.train_and_evaluate(config, workdir)
  log(f"[discover] {workdir}: trained in {time.time() - start:.0f} s")
  return summary


def embed(apply_fn, params, fields, normalise, batch_size: int):
  """(N, gh, gw, F) encoder embeddings of the normalised fields, a batch at a time."""
  import jax  # noqa: PLC0415
  import numpy as np  # noqa: PLC0415

  fn = jax.jit(lambda p, x: apply_fn({"params": p}, x)["embedding"])
  out = []
  for start in range(0, len(fields), batch_size):
    x = normalise({"fields": np.asarray(fields[start : start + batch_size])})["fields"]
    out.append(np.asarray(fn(params, x)))
  return np.concatenate(out)


def study_class(config, workdir: str, class_name: str, log) -> dict:
  """Trains each seed with `class_name` withheld and measures every representation."""
  import jax  # noqa: PLC0415
  import numpy as np  # noqa: PLC0415

  from climjax import plots, predict  # noqa: PLC0415
  from climjax.data import fields as fields_lib  # noqa: PLC0415
  from climjax.data.stats import normalizer  # noqa: PLC0415
  from climjax.data.variables import CAM5_VARIABLES, CLASS_NAMES  # noqa: PLC0415
  from climjax.evaluation import discovery  # noqa: PLC0415
  from climjax.models import detector  # noqa: PLC0415

  d = config.discovery
  target = CLASS_NAMES.index(class_name)
  seeds, shots = _ints(d.seeds), tuple(_ints(d.probe_shots))
  class_dir = os.path.join(workdir, f"withheld_{class_name}")
  runs = {}
  for seed in seeds:
    cfg = run_config(config, class_name, seed)
    runs[seed] = (cfg, train_run(cfg, os.path.join(class_dir, f"seed{seed}"), log))

  cfg0 = runs[seeds[0]][0]
  test = fields_lib.load_split(cfg0.data, "test")
  model = detector.make_detector(cfg0.model)
  cell = model.cell_size
  gh, gw = cfg0.data.height // cell, cfg0.data.width // cell
  labels = discovery.cell_classes(test["boxes"], test["box_classes"], test["box_mask"],
                                  (gh, gw), cell)  # fmt: skip
  sample = discovery.sample_cells(labels, per_class=int(d.cells_per_class), seed=0)
  sample_labels = labels.reshape(-1)[sample]
  counts = {("background" if c < 0 else CLASS_NAMES[c]): int(np.sum(sample_labels == c))
            for c in np.unique(sample_labels)}  # fmt: skip
  log(f"[discover] {class_name} withheld: {len(sample)} held-out cells measured {counts}")

  measure_kw = {
    "target": target, "k": int(d.kmeans_clusters),
    "min_cluster_size": int(d.hdbscan_min_cluster_size), "shots": shots,
    "draws": int(d.probe_draws),
  }  # fmt: skip
  per_seed = {name: [] for name in REPRESENTATIONS}
  kept = {}
  for seed in seeds:
    trained = predict.load_trained(os.path.join(class_dir, f"seed{seed}"), log=lambda *a: None)
    normalise = normalizer(trained.stats, "fields")
    batch = int(cfg0.train.eval_batch_size)
    random_params = model.init(
      jax.random.key(10_000 + seed, impl="rbg"), np.zeros((1, *test["fields"].shape[1:]), np.float32)
    )["params"]  # fmt: skip
    vectors = {
      "trained encoder": embed(model.apply, trained.params, test["fields"], normalise, batch),
      "random encoder": embed(model.apply, random_params, test["fields"], normalise, batch),
    }
    if seed == seeds[0]:
      normalised = normalise({"fields": np.asarray(test["fields"])})["fields"]
      raw = discovery.pooled_fields(np.asarray(normalised), cell)
    vectors["raw fields (pooled)"] = raw
    for name, v in vectors.items():
      flat = v.reshape(-1, v.shape[-1])[sample]
      scores, clusters = discovery.measure(flat, sample_labels, seed=seed, **measure_kw)
      ap = runs[seed][1].get("ap@0.5", {}).get(class_name) if name == "trained encoder" else None
      scores["detector_ap@0.5"] = ap
      per_seed[name].append({"seed": seed, **scores})
      log(
        f"[discover] {class_name} seed {seed} {name}: k-means purity "
        f"{scores['kmeans_purity']:.2f} recall {scores['kmeans_recall']:.2f}; probe "
        + ", ".join(f"{n} shots {scores[f'probe@{n}']:.2f}" for n in shots)
      )
      if seed == seeds[0] and name == "trained encoder":
        kept = {"vectors": v, "flat": flat, "clusters": clusters}

  # Figures from the first seed's trained encoder.
  out = os.path.join(workdir, "plots")
  from sklearn.manifold import TSNE  # noqa: PLC0415

  rng = np.random.default_rng(0)
  shown = rng.choice(len(sample), size=min(int(d.tsne_points), len(sample)), replace=False)
  xy = TSNE(n_components=2, init="pca", random_state=0,
            perplexity=min(30.0, (len(shown) - 1) / 3)).fit_transform(
    discovery.standardise(kept["flat"][shown])
  )  # fmt: skip
  plots.plot_embedding_map(
    xy, sample_labels[shown], os.path.join(out, f"embedding_{class_name}.png"),
    withheld=target,
    title=f"t-SNE of {len(shown)} held-out cells, encoder trained with {class_name} withheld "
    f"(seed {seeds[0]})",
  )  # fmt: skip
  kmeans = next(c for c in kept["clusters"] if c.method == "kmeans")
  best = discovery.best_match(kmeans.assignment, sample_labels == target)["cluster"]
  assigned = kmeans.assign(kept["vectors"].reshape(-1, kept["vectors"].shape[-1]))
  assigned = assigned.reshape(labels.shape)
  with_class = [i for i in range(len(labels)) if np.any(labels[i] == target)]
  picks = with_class[:: max(1, len(with_class) // max(1, int(d.num_maps)))][: int(d.num_maps)]
  channel = next((c for c in ("TMQ", "PSL") if c in test["channels"]), test["channels"][0])
  k = list(test["channels"]).index(channel)
  if picks and best is not None:
    plots.plot_discovered_cells(
      [np.asarray(test["fields"][i][..., k]) for i in picks],
      [assigned[i] == best for i in picks],
      [labels[i] == target for i in picks],
      os.path.join(out, f"cells_{class_name}.png"),
      lats=test["lats"], lons=test["lons"], withheld_name=class_name, field_name=channel,
      units=CAM5_VARIABLES[channel].units if channel in CAM5_VARIABLES else "",
      times=[str(test["times"][i]) for i in picks],
      title=f"{class_name} withheld in training: k-means cluster {best} of the encoder's "
      f"cells (seed {seeds[0]})",
    )  # fmt: skip
  return {"class": class_name, "cells": counts, "seeds": seeds, "shots": list(shots),
          "per_seed": per_seed}  # fmt: skip


def _mean_std(values) -> tuple[float, float]:
  import numpy as np  # noqa: PLC0415

  v = np.array([math.nan if x is None else float(x) for x in values])
  v = v[np.isfinite(v)]
  if not v.size:
    return math.nan, math.nan
  return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else math.nan


def _pm(pair: tuple[float, float]) -> str:
  mean, std = pair
  if math.isnan(mean):
    return "–"
  return f"{mean:.2f}" if math.isnan(std) else f"{mean:.2f} ± {std:.2f}"


def table_rows(results: list[dict]) -> list[dict]:
  """One row per (withheld class, representation): each measure's mean and std over seeds."""
  rows = []
  for result in results:
    for name in REPRESENTATIONS:
      per_seed = result["per_seed"][name]
      row = {"withheld": result["class"], "representation": name, "seeds": len(per_seed)}
      keys = ["kmeans_purity", "kmeans_recall", "hdbscan_purity", "hdbscan_recall",
              "hdbscan_num_clusters", *(f"probe@{n}" for n in result["shots"]),
              "detector_ap@0.5"]  # fmt: skip
      for key in keys:
        row[key] = _mean_std(s.get(key) for s in per_seed)
      rows.append(row)
  return rows


def write_tables(workdir: str, results: list[dict], *, config_file: str) -> str:
  rows = table_rows(results)
  keys = [k for k in rows[0] if k not in ("withheld", "representation", "seeds")]
  with open(os.path.join(workdir, "discovery.csv"), "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["withheld", "representation", "seeds",
                     *(f"{k}_{s}" for k in keys for s in ("mean", "std"))])  # fmt: skip
    for r in rows:
      writer.writerow([r["withheld"], r["representation"], r["seeds"],
                       *(v for k in keys for v in r[k])])  # fmt: skip
  shots = results[0]["shots"]
  lines = [
    f"`python launch/discover.py --config={config_file}`: mean ± std over seeds. Purity and "
    "recall of the best-matching (F1) cluster for the withheld class; probe: balanced accuracy "
    f"of a linear probe for the withheld class trained on {'/'.join(map(str, shots))} labelled "
    "cells of it and as many of every other kind (0.5 = chance); detector AP@0.5: the trained "
    "detector's own AP for the withheld class.",
    "",
    "| withheld | representation | k-means purity | k-means recall | HDBSCAN purity | "
    "HDBSCAN recall | HDBSCAN clusters | "
    + " | ".join(f"probe, {n} shots" for n in shots)
    + " | detector AP@0.5 |",
    "|---|---|---|---|---|---|---|" + "---|" * len(shots) + "---|",
  ]
  for r in rows:
    cells = [r["kmeans_purity"], r["kmeans_recall"], r["hdbscan_purity"], r["hdbscan_recall"],
             r["hdbscan_num_clusters"], *(r[f"probe@{n}"] for n in shots),
             r["detector_ap@0.5"]]  # fmt: skip
    lines.append(f"| {r['withheld']} | {r['representation']} | "
                 + " | ".join(_pm(c) for c in cells) + " |")  # fmt: skip
  for result in results:
    cells, name = result["cells"], result["class"]
    share = cells.get(name, 0) / max(sum(cells.values()), 1)
    lines.append(
      f"\nCells measured with {name} withheld: {cells}; {name} is {share:.3f} of them "
      "(the purity of a cluster drawn at random)."
    )
  path = os.path.join(workdir, "discovery.md")
  with open(path, "w") as f:
    f.write("\n".join(lines) + "\n")
  with open(os.path.join(workdir, "discovery.json"), "w") as f:
    json.dump(results, f, indent=1, default=float)
  return path


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    main_lib._fail(f"unexpected arguments: {' '.join(argv[1:])}")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  config = main_lib._CONFIG.value
  if config is None:
    main_lib._fail("--config is required, e.g. --config=configs/discovery.py")
  if "discovery" not in config:
    main_lib._fail(f"--config: {config.get('name')!r} has no discovery section; "
                   "use configs/discovery.py")  # fmt: skip
  workdir = main_lib._WORKDIR.value or os.path.join("runs", config.get("name", "discovery"))
  try:
    platform.apply(config.platform, argv=sys.orig_argv[1:])
  except ValueError as e:
    main_lib._fail(str(e))
  from climjax.data.errors import DataError  # noqa: PLC0415
  from climjax.data.variables import CLASS_NAMES  # noqa: PLC0415
  from climjax.training.validate import ConfigError  # noqa: PLC0415

  classes = [c.strip() for c in config.discovery.classes.split(",") if c.strip()]
  unknown = [c for c in classes if c not in CLASS_NAMES]
  if unknown or not classes:
    main_lib._fail(f"discovery.classes: {config.discovery.classes!r}; expected names from "
                   f"{', '.join(CLASS_NAMES)}")  # fmt: skip
  if not _ints(config.discovery.seeds):
    main_lib._fail("discovery.seeds: no seeds given, e.g. '0,1,2'")
  start = time.time()
  os.makedirs(workdir, exist_ok=True)
  results = []
  try:
    for class_name in classes:
      results.append(study_class(config, workdir, class_name, print))
      path = write_tables(workdir, results, config_file=_config_file_flag())
  except (ConfigError, DataError) as e:
    main_lib._fail(str(e))
  print(f"[discover] {path}, figures in {os.path.join(workdir, 'plots')} "
        f"({(time.time() - start) / 60:.1f} min)")  # fmt: skip


def _config_file_flag() -> str:
  """The --config value as given (file[:arg]), for the command quoted in discovery.md."""
  for a in sys.argv[1:]:
    if a.startswith("--config="):
      return a.split("=", 1)[1]
  return "configs/discovery.py"


if __name__ == "__main__":
  app.run(main, flags_parser=main_lib._parse_flags)
