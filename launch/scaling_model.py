"""The scaling model's predictions for "Deep Learning at 15PF" beside the paper's numbers.

  python launch/scaling_model.py                       # the paper's setting, scaling tables, best G and S
  python launch/scaling_model.py --bench=runs/bench.json --bench_comm=runs/bench_comm.json
  python launch/scaling_model.py --stat_eff=runs/scaling/statistical_efficiency.csv
  python launch/scaling_model.py --csv=runs/scaling/scaling.csv --bench_comm=runs/bench_comm.json
  python launch/scaling_model.py --nodes=64,1024,9600 --params=75e6 --out=runs/scaling_model.json

Prints (climjax/parallel/scaling_model.py has the model and every source):

  1. every machine, workload and layout parameter of the paper's setting, with its source
     ("assumed" where no source states it, and why that value);
  2. quantity | paper | model | relative error at 9,600 nodes with the paper's hybrid
     layout: iteration time, sustained PF/s, peak PF/s (not modelled), speed-up over
     one node; the model's breakdown of the iteration; the headline's sensitivity to
     each assumed parameter;
  3. weak and strong scaling over --nodes for sync (with and without gradient lag) and
     hybrid;
  4. the (G, S, algorithm) that minimise time to accuracy at each of --nodes, from the
     throughput model and the statistical-efficiency curve (--stat_eff, else the
     assumed 1 + 0.1 (G - 1));
  5. with launch/bench.py and launch/bench_comm.py JSON (--bench, --bench_comm; by
     default runs/bench.json and runs/bench_comm.json if present): this machine's
     calibration and its predicted step times at 1, 2 and 4 ranks beside the measured;
  6. with --csv (launch/scaling.py's scaling.csv): each measured point beside the
     model, calibrated on the CSV's 1-rank rows and bench_comm's network.

A file passed explicitly that is missing or malformed is one line naming it and what
was expected, exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import math
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load_model():
  """climjax/parallel/scaling_model.py alone: the package's __init__ imports JAX (the
  strategies), which this numpy-only model does not need, and it would add seconds."""
  name = "climjax_scaling_model"
  path = os.path.join(REPO, "climjax", "parallel", "scaling_model.py")
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  sys.modules[name] = module  # dataclasses look their module up here
  spec.loader.exec_module(module)
  return module


sm = _load_model()

DEFAULT_NODES = "1,8,64,512,1024,2048,4096,8192,9600"
LOCAL_RANKS = (1, 2, 4)


def _si(x: float | None, unit: str = "") -> str:
  if x is None or (isinstance(x, float) and math.isnan(x)):
    return "-"
  for scale, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
    if abs(x) >= scale:
      return f"{x / scale:.3g} {prefix}{unit}"
  return f"{x:.3g} {unit}".strip()


def _pct(x: float | None) -> str:
  return "-" if x is None else f"{x:+.1%}"


def _table(header: str, rows: list[list]) -> str:
  """A Markdown table; `header` is the column names joined by " | "."""
  lines = [f"| {header} |", "|" + "---|" * len(header.split(" | "))]
  lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
  return "\n".join(lines)


# ---------------------------------------------------------------------------
# 1-2. The paper.


def print_parameters(machine: sm.Machine, workload: sm.Workload) -> dict:
  print(f"## Assumed parameters ({sm.PAPER}, climate network)\n")
  rows, params = [], {}
  for obj, group in ((machine, "machine"), (workload, "workload")):
    for field in dataclasses.fields(obj):
      if field.name in ("name", "sources"):
        continue
      value = getattr(obj, field.name)
      source = obj.sources.get(field.name, "-")
      rows.append([f"{group}.{field.name}", f"{value:.4g}", source])
      params[f"{group}.{field.name}"] = {"value": value, "source": source}
  for key, value in sm.PAPER_LAYOUT.items():
    rows.append([f"layout.{key}", value, sm.PAPER_LAYOUT_SOURCES[key]])
    params[f"layout.{key}"] = {"value": value, "source": sm.PAPER_LAYOUT_SOURCES[key]}
  print(_table("parameter | value | source", rows))
  cost = sm.CLIMATE_COST
  print(
    f"\nArchitecture count (768x768x16): {cost['flops_forward'] / 1e9:.0f} GFLOP forward, "
    f"{cost['flops_train'] / 1e12:.3f} TFLOP forward + backward per example, "
    f"{cost['parameters'] / 1e6:.1f}M parameters, {cost['activation_bytes'] / 1e6:.0f} MB "
    "of activations per example."
  )
  return params


def _headline(machine, workload, layout=None) -> dict:
  out = sm.reproduce_paper(machine, workload, layout)
  return {r["quantity"]: r for r in out["rows"]} | {"breakdown": out["breakdown"]}


def print_paper(machine: sm.Machine, workload: sm.Workload) -> dict:
  out = sm.reproduce_paper(machine, workload)
  layout = sm.PAPER_LAYOUT
  print(
    f"\n## {sm.PAPER} at {layout['nodes']:,} nodes, {layout['strategy']}: "
    f"G={layout['groups']} groups of {layout['nodes'] // layout['groups']}, "
    f"S={layout['servers']} servers, {layout['algorithm']} all-reduce\n"
  )
  fmt = {
    "iteration_s": ("iteration time (s)", lambda v: f"{v:.2f}"),
    "sustained_flops": ("sustained PF/s", lambda v: f"{v / 1e15:.2f}"),
    "peak_flops": ("peak PF/s", lambda v: f"{v / 1e15:.2f}"),
    "speedup": ("speed-up over one node", lambda v: f"{v:,.0f}x"),
  }
  rows = []
  for r in out["rows"]:
    label, f = fmt[r["quantity"]]
    model = (
      "not modelled (the model gives the mean iteration)" if r["model"] is None else f(r["model"])
    )
    rows.append([label, f(r["paper"]), model, _pct(r["rel_error"])])
  print(_table("quantity | paper | model | relative error", rows))
  worst = max(abs(r["rel_error"]) for r in out["rows"] if r["rel_error"] is not None)
  print(
    f"\nLargest relative error {worst:.1%} (tests/test_scaling_model.py holds it within "
    f"{sm.PAPER_TOLERANCE:.0%}). Paper sources: "
    + "; ".join(f"{r['quantity']}: {r['source']}" for r in out["rows"])
  )
  implied = sm.PAPER_RESULTS["sustained_flops"][0] / sm.PAPER_RESULTS["speedup"][0]
  print(
    f"\nIn any model sustained FLOP/s / speed-up = one node's FLOP/s "
    f"({machine.achieved_flops / 1e12:.2f} TFLOP/s here); the paper's pair implies "
    f"{implied / 1e12:.2f}, so with its '~2 TFLOP/s' the two errors differ by "
    f"{machine.achieved_flops / implied - 1:.1%}."
  )
  t = out["breakdown"]
  print(
    f"\nModel iteration: compute {t['compute_s']:.2f} s + straggler {t['straggler_s']:.2f} s "
    f"+ communication {t['exposed_comm_s']:.3f} s (all-reduce {t['allreduce_s']:.3f}, "
    f"servers {t['exchange_s']:.3f}, broadcast {t['broadcast_s']:.3f}) + server queue "
    f"{t['wait_s'] * 1e3:.2f} ms = {t['total_s']:.2f} s; server utilisation "
    f"{t['server_utilisation']:.1%}."
  )
  return out


def print_sensitivity(machine: sm.Machine, workload: sm.Workload) -> list[dict]:
  """The headline under other values of each assumed parameter, one at a time."""
  variants = [("straggler_cv", v, "machine") for v in (0.0, 0.05, 0.075, 0.10)]
  variants += [("per_node_batch", v, "workload") for v in (8, 16, 32)]
  variants += [("achieved_flops", v, "machine") for v in (1.5e12, 2.0e12, 3.0e12)]
  variants += [
    ("parameter_bytes", v, "workload") for v in (300e6, sm.CLIMATE_COST["parameter_bytes"])
  ]
  variants += [("groups", v, "layout") for v in (1, 4, 8, 16)]
  variants += [("algorithm", v, "layout") for v in sm.ALGORITHMS]
  rows, out = [], []
  for name, value, where in variants:
    m, w, layout = machine, workload, dict(sm.PAPER_LAYOUT)
    if where == "machine":
      m = dataclasses.replace(machine, **{name: value})
    elif where == "workload":
      w = dataclasses.replace(workload, **{name: value})
    else:
      layout[name] = value
      if name == "groups" and value == 1:
        layout.update(strategy="sync", servers=0)
    h = _headline(m, w, layout)
    errors = [h[k]["rel_error"] for k in ("iteration_s", "sustained_flops", "speedup")]
    default = {**dataclasses.asdict(machine), **dataclasses.asdict(workload), **sm.PAPER_LAYOUT}
    mark = " (used)" if default.get(name) == value else ""
    shown = f"{value:.4g}" if isinstance(value, float) else str(value)
    rows.append([f"{where}.{name} = {shown}{mark}", *(_pct(e) for e in errors)])
    out.append({"parameter": f"{where}.{name}", "value": value, "errors": errors})
  print("\n## Sensitivity of the headline to each assumed parameter (relative errors)\n")
  print(_table("parameter | iteration time | sustained PF/s | speed-up", rows))
  return out


# ---------------------------------------------------------------------------
# 3-4. Scaling tables and the best layout.


def print_scaling(machine, workload, nodes_list, strong_batch) -> list[dict]:
  g0, s0 = sm.PAPER_LAYOUT["groups"], sm.PAPER_LAYOUT["servers"]
  out = []
  for mode in ("weak", "strong"):
    rows = []
    for n in nodes_list:
      batch = workload.per_node_batch if mode == "weak" else strong_batch / n
      layouts = {
        "sync": dict(strategy="sync"),
        "sync+lag": dict(strategy="sync", gradient_lag=True),
        f"hybrid G={min(g0, n)}": dict(strategy="hybrid", groups=min(g0, n), servers=s0),
      }
      row = [f"{n:,}", f"{batch:.3g}"]
      for name, layout in layouts.items():
        t = sm.iteration_time(workload, machine, n, per_node_batch=batch, **layout)
        s = n * batch / t["total_s"] / (machine.achieved_flops / workload.flops_per_example)
        row += [f"{t['total_s']:.3g}", f"{s:,.0f}", f"{s / n:.0%}"]
        keys = dict(mode=mode, nodes=n, layout=name, per_node_batch=batch)
        out.append({**keys, "iteration_s": t["total_s"], "speedup": s, "efficiency": s / n})
      rows.append(row)
    what = (
      f"per-node batch {workload.per_node_batch:g}"
      if mode == "weak"
      else f"global batch {strong_batch:g} (fractional per-node batches modelled as continuous)"
    )
    print(f"\n## {mode.capitalize()} scaling, {what}; hybrid with S={s0} extra server nodes\n")
    header = " | ".join(f"{name}: s/it | speed-up | efficiency" for name in layouts)
    print(_table(f"nodes | per-node batch | {header}", rows))
  return out


def print_best(machine, workload, nodes_list, stat_eff, stat_eff_label) -> list[dict]:
  print(
    f"\n## Best layout for time to accuracy ({workload.parameter_bytes / 4e6:.1f}M parameters, "
    f"per-node batch {workload.per_node_batch:g}; statistical efficiency: {stat_eff_label}; "
    "servers come out of the node count)\n"
  )
  rows, out = [], []
  for n in nodes_list:
    if n < 2:
      continue
    candidates = sm.best_layout(workload, machine, n, stat_eff)["candidates"]
    best = candidates[0]
    sync = next((c for c in candidates if c["strategy"] == "sync"), None)
    hybrid = next((c for c in candidates if c["strategy"] == "hybrid"), None)
    layout = [best[k] for k in ("strategy", "groups", "servers", "algorithm")]
    sync_cell = "-" if sync is None else f"{sync['time_to_accuracy']:.3f}"
    hybrid_cell = "-"
    if hybrid is not None:
      hybrid_cell = f"G={hybrid['groups']} S={hybrid['servers']} {hybrid['algorithm']}: "
      hybrid_cell += f"{hybrid['time_to_accuracy']:.3f}"
    numbers = [f"{best['iteration_s']:.3g}", f"{best['stat_eff']:.3g}", sync_cell, hybrid_cell]
    rows.append([f"{n:,}", *layout, *numbers])
    out.append({"nodes": n, "best": best, "best_sync": sync, "best_hybrid": hybrid})
  header = "nodes | strategy | G | S | algorithm | s/it | examples to target vs G=1"
  header += " | best sync: time to accuracy / best | best hybrid: time to accuracy / best"
  print(_table(header, rows))
  return out


# ---------------------------------------------------------------------------
# 5-6. This machine.


def _local_workload(cal: dict, bench: str) -> sm.Workload | None:
  """A benchmark's workload on this machine: FLOPs per example from bench.py, gradient
  bytes from bench_comm (TC) or the architecture count (the detector)."""
  if bench == "tc":
    nbytes = cal.get("gradient_bytes", {}).get("tc_cnn")
    source = "bench_comm tc_cnn.gradient_bytes"
  elif bench.startswith("detector"):
    nbytes = sm.encoder_decoder_cost(64, 64, 16)["parameter_bytes"]
    source = "encoder_decoder_cost (paper widths)"
  else:
    return None
  if nbytes is None:
    return None
  return sm.Workload(
    name=bench,
    flops_per_example=cal["flops_per_example"][bench],
    parameter_bytes=nbytes,
    per_node_batch=cal["batch"][bench],
    sources={"flops_per_example": "bench.py flops_per_step / batch", "parameter_bytes": source},
  )


def print_local(cal: dict) -> list[dict]:
  print(
    f"\n## This machine ({cal.get('cpu', 'unknown CPU')}, {cal.get('cores')} cores): "
    f"MPI latency {cal['latency_s'] * 1e6:.1f} us, bandwidth {cal['bandwidth'] / 1e9:.2f} GB/s "
    f"({cal['sources']['network']}; mpi4py's: {cal['mpi4py_latency_s'] * 1e6:.1f} us, "
    f"{cal['mpi4py_bandwidth'] / 1e9:.2f} GB/s); achieved "
    + ", ".join(f"{k} {v / 1e9:.0f} GFLOP/s" for k, v in cal["achieved_flops"].items())
    + "\n\nRanks share the cores (each gets 1/ranks of the measured FLOP/s); TC is strong "
    "scaling at its benchmark batch, the detector one field per rank; sync, ring all-reduce.\n"
  )
  measured = cal.get("measured", {}).get("tc_cnn")
  rows, out = [], []
  for bench in cal["achieved_flops"]:
    workload = _local_workload(cal, bench)
    if workload is None:
      continue
    for ranks in LOCAL_RANKS:
      machine = sm.local_machine(cal, cal["achieved_flops"][bench] / ranks)
      batch = workload.per_node_batch / ranks if bench == "tc" else workload.per_node_batch
      t = sm.iteration_time(workload, machine, ranks, per_node_batch=batch)
      meas = (
        measured["step_sync_s"] if bench == "tc" and measured and ranks == cal["ranks"] else None
      )
      err = None if meas is None else (t["total_s"] - meas) / meas
      ms = [f"{t[k] * 1e3:.3g}" for k in ("compute_s", "comm_s", "total_s")]
      meas_cell = "-" if meas is None else f"{meas * 1e3:.3g}"
      rows.append([bench, ranks, f"{batch:.3g}", *ms, meas_cell, _pct(err)])
      out.append({"bench": bench, "ranks": ranks, **t, "measured_step_s": meas, "rel_error": err})
  header = "benchmark | ranks | per-rank batch | compute ms | comm ms | step ms"
  print(_table(header + " | measured step ms (bench_comm) | relative error", rows))
  if measured:
    print(
      f"\nbench_comm's TC step without the all-reduce: {measured['step_local_s'] * 1e3:.3g} ms "
      f"on {cal['ranks']} ranks (one XLA thread each); its all-reduce alone "
      f"{measured['allreduce_alone_s'] * 1e3:.3g} ms of {measured['gradient_bytes'] / 1e3:.0f} KB."
    )
  return out


def compare_csv(path: str, rows: list[dict], cal: dict) -> list[dict]:
  """Each scaling.csv point beside the model on this machine: compute per example from the
  model's 1-rank sync row (else bench.py), gradient bytes from bench_comm (tc_cnn, detector)."""
  print(f"\n## {path} beside the model (compute per example from the 1-rank sync rows)\n")
  single = {
    (r["model"], r["mode"]): 1.0 / r["examples_per_second"]
    for r in rows
    if r["ranks"] == 1 and r["strategy"] == "sync" and r["examples_per_second"] > 0
  }
  table, out = [], []
  for r in rows:
    name = r["model"]
    t_ex = single.get((name, r["mode"]))
    if t_ex is None and name in cal["flops_per_example"]:
      t_ex = cal["flops_per_example"][name] / cal["achieved_flops"][name]
    key = "tc_cnn" if name.startswith("tc") else "detector" if name.startswith("detector") else None
    nbytes = cal.get("gradient_bytes", {}).get(key)
    servers = int(r["servers"]) if r["strategy"] == "hybrid" else 0
    point = [name, int(r["ranks"]), r["strategy"], int(r["groups"]), servers, r["mode"]]
    measured = [f"{r['examples_per_second']:.4g}"]
    if t_ex is None or nbytes is None:
      table.append([*point, *measured, "-", "no calibration", "-", "-"])
      continue
    workers = max(1, int(r["ranks"]) - servers)
    # Units cancel: 1 "FLOP" per example at 1/t_ex per machine, shared by the workers.
    workload = sm.Workload(name, 1.0, nbytes, r["global_batch"] / workers)
    machine = sm.local_machine(cal, 1.0 / t_ex / workers)
    layout = dict(strategy=r["strategy"], groups=int(r["groups"]) if servers else 1)
    t = sm.iteration_time(workload, machine, workers, servers=servers, **layout)
    model_eps = r["global_batch"] / t["total_s"]
    err = (model_eps - r["examples_per_second"]) / r["examples_per_second"]
    comm = ["-" if r["comm_s"] is None else f"{r['comm_s'] * 1e3:.3g}", f"{t['comm_s'] * 1e3:.3g}"]
    table.append([*point, *measured, f"{model_eps:.4g}", _pct(err), *comm])
    out.append({**r, "model_examples_per_second": model_eps, "rel_error": err, "model": t})
  header = "model | ranks | strategy | G | S | mode | measured ex/s | model ex/s | relative error"
  print(_table(header + " | measured comm ms | model comm ms", table))
  return out


# ---------------------------------------------------------------------------


def _existing(path: str | None, default: str) -> str | None:
  """The path passed (read, or fail, later), else `default` if it exists, else None."""
  if path:
    return path
  default = os.path.join(REPO, default)
  return default if os.path.exists(default) else None


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument(
    "--bench", help="launch/bench.py --out JSON (default runs/bench.json if present)"
  )
  parser.add_argument(
    "--bench_comm", help="launch/bench_comm.py --out JSON (default runs/bench_comm.json if present)"
  )
  parser.add_argument(
    "--stat_eff", help="statistical_efficiency.csv: groups,seed,steps_to_target,simulated"
  )
  parser.add_argument("--csv", help="launch/scaling.py's scaling.csv, compared with the model")
  parser.add_argument("--nodes", default=DEFAULT_NODES, help="comma-separated node counts")
  parser.add_argument(
    "--params", type=float, help="parameters P (float32) for the scaling tables and best layout"
  )
  parser.add_argument(
    "--strong_batch", type=float, default=8192, help="global batch of the strong-scaling table"
  )
  parser.add_argument("--out", help="write every number printed to this JSON file")
  args = parser.parse_args(argv)
  try:
    nodes_list = [int(n) for n in args.nodes.split(",") if n.strip()]
  except ValueError:
    parser.error(f"--nodes must be comma-separated integers, got {args.nodes!r}")

  # Read every input first, so that a bad file fails before anything is printed.
  bench = _existing(args.bench, "runs/bench.json")
  bench_comm = _existing(args.bench_comm, "runs/bench_comm.json")
  cal = sm.calibrate(bench, bench_comm)
  csv_rows = sm.read_scaling_csv(args.csv) if args.csv else None
  measured = sm.read_stat_eff(args.stat_eff) if args.stat_eff else None
  if csv_rows is not None and "latency_s" not in cal:
    raise sm.ModelInputError(
      f"{args.csv}: comparing needs the MPI latency and bandwidth: pass --bench_comm=FILE "
      "(python launch/bench_comm.py --out=FILE)"
    )

  machine, workload = sm.CORI_KNL, sm.CLIMATE_SC17
  report: dict = {"parameters": print_parameters(machine, workload)}
  report["paper"] = print_paper(machine, workload)
  report["sensitivity"] = print_sensitivity(machine, workload)

  scaled = workload
  if args.params:
    scaled = dataclasses.replace(workload, parameter_bytes=4 * args.params)
  report["scaling"] = print_scaling(machine, scaled, nodes_list, args.strong_batch)

  if measured:
    stat_eff = measured["multiplier"]
    simulated = [g for g, s in measured["simulated"].items() if s]
    label = (
      f"{args.stat_eff}, G = {', '.join(map(str, stat_eff))} "
      f"(simulated: {', '.join(map(str, simulated)) or 'none'})"
    )
    report["stat_eff"] = measured
  else:
    stat_eff = sm.linear_stat_eff(sm.DEFAULT_STAT_EFF_A)
    label = f"assumed 1 + {sm.DEFAULT_STAT_EFF_A} (G - 1), illustrative; measure it with --stat_eff"
  report["best_layout"] = print_best(machine, scaled, nodes_list, stat_eff, label)

  report["calibration"] = cal
  if bench and bench_comm:
    report["local"] = print_local(cal)
  else:
    absent = [
      name
      for name, path in (("runs/bench.json", bench), ("runs/bench_comm.json", bench_comm))
      if not path
    ]
    print(
      f"\n## This machine: {' and '.join(absent)} not found; local predictions need both "
      "files, so nothing local is used "
      "(write them with python launch/bench.py --out=runs/bench.json and "
      "python launch/bench_comm.py --out=runs/bench_comm.json)"
    )
  if csv_rows is not None:
    report["csv"] = compare_csv(args.csv, csv_rows, cal)

  if args.out:
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
      json.dump(report, f, indent=2, default=str)
    print(f"\nwrote {args.out}")
  return report


if __name__ == "__main__":
  try:
    main()
  except sm.ModelInputError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
