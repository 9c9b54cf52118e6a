"""Training-step throughput of climjax against the same models in PyTorch, on CPU.

  python launch/bench.py --out=bench.json                  # TC, detector 384 and 768
  python launch/bench.py --only=tc,detector384 --reps=3    # a quicker subset
  python launch/bench.py --only=ar,wf --xla_reference=ar,wf  # the other two classifiers
  python launch/bench.py --threads=1,2 --only=tc --reps=3  # thread scaling, one process per count

Measures, in one process with the same thread count for both frameworks:
  tc           the TC classifier's train step (climjax.models.cnn, configs/tc.py,
               its optimizer), batch --tc_batch (256)
  ar, wf       the AR and WF classifiers' train steps at their configs' batch
               sizes (32 and 64); not run by default
  detector384  the detector's forward + backward (paper widths 16 -> 128 ... 1280,
  detector768  encoder, heads and decoder), batch 1, at 384x384x16 and 768x768x16

For each: climjax examples/s (model.conv_impl = --impl, "fast" by default, with
the narrow-channel C++ kernels of climjax/ops/native.py where they apply --
`CLIMJAX_NATIVE=0` leaves them out -- and XLA's own kernels for reference), PyTorch examples/s (the better of NCHW and
channels-last), their ratio, climjax's GFLOP/s (FLOPs counted by
`climjax.ops.analytic_flops`) and its fraction of the machine's fp32 peak.

The peak (climjax/peak.py) is measured: an FMA loop with run-time operands and a
checked result, compiled with the system C compiler and run on the benchmark's
threads. It is checked against the nominal cores x clock x FLOP/cycle of the
CPU's microarchitecture (above 1.5x is an error: the nominal is used, and
bench.json's machine.peak_used says which).

--threads=N pins the process to N cores, which sizes XLA's thread pool
(climjax/platform.py) and PyTorch's (torch.set_num_threads); 0 = every core.
A list (--threads=1,2,4) runs the benchmarks once per count, each in a fresh
process (XLA's CPU client fixes its threads at start-up), prints each step's
examples/s and parallel efficiency (rate_n / rate_first) / (n / first) per
count, and writes the largest count's results with "thread_scaling" added.

The script applies the platform defaults a training run uses (configs/common.py:
XLA flags, tcmalloc preloaded; `--xla_flags=...` replaces the flags); timings on
a shared machine are noisy, so both frameworks run interleaved, best of --reps.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# ---------------------------------------------------------------------------
# Timing.


def apply_platform(xla_flags: str | None, threads: int = 0) -> dict:
  """The platform settings of a training run (configs/common.py: XLA flags,
  tcmalloc preloaded by re-executing this script, `threads` cores), before JAX starts."""
  from climjax import platform
  from configs import common

  config = common.platform_config()
  config.threads = threads
  if xla_flags is not None:
    config.xla_flags = xla_flags
  return platform.apply(config, argv=sys.orig_argv[1:])


def best_time(fn, reps: int, warmup: int = 1) -> float:
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(reps):
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
  return min(times)


# ---------------------------------------------------------------------------
# climjax side.


# The patch classifiers: config module and (H, W, C) of a patch.
PATCH_TASKS = {"tc": (32, 32, 8), "ar": (148, 224, 2), "wf": (27, 60, 3)}


def _patch_config(task: str):
  import importlib

  return importlib.import_module(f"configs.{task}").get_config()


def jax_patch_step(task: str, batch: int, impl: str):
  """A callable running one real train step of a patch classifier, and the step's FLOPs."""
  import functools

  import jax
  import jax.numpy as jnp
  import ml_collections

  from climjax import ops
  from climjax.models import cnn
  from climjax.training import optim, state, steps

  config = _patch_config(task)
  config.model.conv_impl = impl
  model = cnn.make_model(config.model)
  tx = optim.make_optimizer(config.optimizer, config.train.steps)
  shape = (batch, *PATCH_TASKS[task])
  train_state = state.create_train_state(model, tx, jax.random.key(0), shape)
  rng = np.random.default_rng(0)
  data = {
    "patch": jnp.asarray(rng.standard_normal(shape), jnp.float32),
    "label": jnp.asarray(rng.integers(0, 2, batch), jnp.int32),
  }
  step = jax.jit(functools.partial(steps.train_step, apply_fn=model.apply, tx=tx), donate_argnums=0)
  # The model's FLOPs: counted on XLA's formulation, since the fast kernels may
  # execute structural zeros (climjax.ops.s2d) that are not the model's work.
  reference = cnn.make_model(ml_collections.ConfigDict({**config.model, "conv_impl": "xla"}))
  flops = ops.analytic_flops(
    functools.partial(steps.train_step, apply_fn=reference.apply, tx=tx), train_state, data
  )
  box = [train_state]

  def run():
    box[0], metrics = step(box[0], data)
    jax.block_until_ready(metrics)

  return run, flops


def jax_detector_step(size: int, impl: str):
  """Forward + backward of the paper-width detector on one (size, size, 16) field."""
  import jax
  import jax.numpy as jnp
  import ml_collections

  from climjax import ops
  from climjax.models import detector

  model = detector.make_detector(ml_collections.ConfigDict({"conv_impl": impl}))
  x = jnp.asarray(np.random.default_rng(0).standard_normal((1, size, size, 16)), jnp.float32)
  params = jax.jit(model.init)(jax.random.key(0), x)

  def loss(params, x):
    out = model.apply(params, x)
    heads = sum(jnp.mean(out[k] ** 2) for k in ("objectness", "classes", "boxes"))
    return jnp.mean((out["reconstruction"] - x) ** 2) + heads

  grad = jax.jit(jax.grad(loss))
  flops = ops.analytic_flops(grad, params, x)

  def run():
    jax.block_until_ready(grad(params, x))

  return run, flops


# ---------------------------------------------------------------------------
# PyTorch side: the same networks.


def torch_patch_step(task: str, batch: int, channels_last: bool):
  """The same classifier in PyTorch ("same" convolutions, floor pools), its config's optimizer."""
  import torch
  from torch import nn

  from climjax.models import cnn

  config = _patch_config(task)
  arch = cnn.MODELS[config.model.name].keywords
  h, w, c = PATCH_TASKS[task]
  layers = []
  for features, kernel, pool in zip(
    arch["conv_features"], arch["conv_kernels"], arch["pools"], strict=True
  ):
    layers += [nn.Conv2d(c, features, kernel, padding="same"), nn.ReLU(), nn.MaxPool2d(pool)]
    c, h, w = features, h // pool, w // pool
  model = nn.Sequential(
    *layers,
    nn.Flatten(),
    nn.Linear(c * h * w, arch["hidden"]),
    nn.ReLU(),
    nn.Linear(arch["hidden"], 2),
  )
  x = torch.randn(batch, PATCH_TASKS[task][2], *PATCH_TASKS[task][:2])
  y = torch.randint(0, 2, (batch,))
  if channels_last:
    model = model.to(memory_format=torch.channels_last)
    x = x.contiguous(memory_format=torch.channels_last)
  opt_config = config.optimizer
  lr = float(opt_config.learning_rate)
  if opt_config.name == "sgd":
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
  else:
    opt = torch.optim.Adam(model.parameters(), lr=lr)
  loss_fn = nn.CrossEntropyLoss()

  def run():
    opt.zero_grad(set_to_none=True)
    loss = loss_fn(model(x), y)
    loss.backward()
    opt.step()

  return run


def torch_detector_step(size: int, channels_last: bool):
  import torch
  from torch import nn

  widths = [16, 128, 256, 512, 768, 1024, 1280]

  class Detector(nn.Module):
    def __init__(self):
      super().__init__()
      act = nn.LeakyReLU(0.1)
      enc = []
      for cin, cout in zip(widths[:-1], widths[1:], strict=True):
        enc += [nn.Conv2d(cin, cout, 5, stride=2, padding=2), act]
      self.encoder = nn.Sequential(*enc)
      self.heads = nn.ModuleList([nn.Conv2d(widths[-1], n, 3, padding=1) for n in (2, 4, 4)])
      dec = []
      rev = widths[::-1]
      for i, (cin, cout) in enumerate(zip(rev[:-1], rev[1:], strict=True)):
        dec.append(nn.ConvTranspose2d(cin, cout, 5, stride=2, padding=2, output_padding=1))
        if i < len(rev) - 2:
          dec.append(act)
      self.decoder = nn.Sequential(*dec)

    def forward(self, x):
      code = self.encoder(x)
      heads = sum(torch.mean(h(code) ** 2) for h in self.heads)
      return torch.mean((self.decoder(code) - x) ** 2) + heads

  model = Detector()
  x = torch.randn(1, 16, size, size)
  if channels_last:
    model = model.to(memory_format=torch.channels_last)
    x = x.contiguous(memory_format=torch.channels_last)

  def run():
    model.zero_grad(set_to_none=True)
    model(x).backward()

  return run


# ---------------------------------------------------------------------------


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument("--out", default="bench.json", help="JSON results file")
  parser.add_argument(
    "--only", default="tc,detector384,detector768", help="comma-separated benchmarks"
  )
  parser.add_argument(
    "--impl", default="fast", choices=["fast", "xla"], help="climjax model.conv_impl"
  )
  parser.add_argument(
    "--xla_reference",
    default="tc,ar,wf",
    help="benchmarks that also time conv_impl='xla' (its transposed-conv weight gradient makes "
    "a detector step take minutes, so by default only the classifiers)",
  )
  parser.add_argument("--reps", type=int, default=5, help="timed repetitions (best is kept)")
  parser.add_argument(
    "--detector_reps", type=int, default=2, help="timed repetitions of the detector"
  )
  parser.add_argument("--tc_batch", type=int, default=256)
  parser.add_argument(
    "--threads",
    default="0",
    help="cores for XLA and PyTorch (0 = every core); a comma list (1,2,4) runs one process "
    "per count and reports the parallel efficiency",
  )
  parser.add_argument("--no_torch", action="store_true")
  parser.add_argument(
    "--xla_flags",
    default=None,
    help="XLA flags (default: the configs' platform.xla_flags, as a training run uses)",
  )
  args = parser.parse_args(argv)
  for name in args.only.split(","):
    if name not in PATCH_TASKS and not name.startswith("detector"):
      parser.error(f"unknown benchmark {name!r}")
  available = len(os.sched_getaffinity(0))
  try:
    counts = [int(n) or available for n in args.threads.split(",")]
  except ValueError:
    parser.error(f"--threads takes a count or a comma list of counts, got {args.threads!r}")
  if any(not 1 <= n <= available for n in counts):
    parser.error(f"--threads={args.threads}: this process may use {available} cores")
  if len(counts) > 1:
    return thread_sweep(sorted(set(counts)), args.out, sys.argv[1:] if argv is None else argv)
  threads = counts[0]
  platform_info = apply_platform(args.xla_flags, threads)

  import jax

  from climjax import peak

  facts = peak.cpu_facts(cores=threads)
  peak_info = peak.machine_peak(facts, threads)
  facts |= peak_info
  if "peak_error" in peak_info:
    print(f"FMA loop: {peak_info['peak_error']}; using the nominal peak", flush=True)
  results: dict = {
    "machine": facts,
    "threads": threads,
    "ld_preload": os.environ.get("LD_PRELOAD", ""),
    "xla_flags": platform_info["xla_flags"],
    "allocator": platform_info["allocator"],
    "jax": jax.__version__,
    "nominal_peak_gflops": peak_info["peak_nominal_gflops"],
    "fma_loop_gflops": peak_info["peak_measured_gflops"],
    "fma_loop_one_core_gflops": peak_info.get("peak_measured_one_core_gflops"),
    "peak_gflops": peak_info["peak_gflops"],
    "peak_used": peak_info["peak_used"],
  }
  from climjax.ops import native

  # The narrow-channel C++ kernels (climjax/ops/native.py); CLIMJAX_NATIVE=0
  # times the XLA-only formulations instead.
  results["native_kernels"] = native.available()

  torch = None
  if not args.no_torch:
    try:
      import torch
    except ImportError:
      print("PyTorch is not installed (pip install -e .[bench]): timing climjax alone", flush=True)
    else:
      torch.set_num_threads(threads)
      results["torch"] = torch.__version__

  benches = {}
  for name in args.only.split(","):
    if name in PATCH_TASKS:
      batch = args.tc_batch if name == "tc" else _patch_config(name).train.batch_size
      benches[name] = (
        batch,
        args.reps,
        lambda impl, name=name, batch=batch: jax_patch_step(name, batch, impl),
        lambda cl, name=name, batch=batch: torch_patch_step(name, batch, cl),
      )
    elif name.startswith("detector"):
      size = int(name.removeprefix("detector"))
      benches[name] = (
        1,
        args.detector_reps,
        lambda impl, size=size: jax_detector_step(size, impl),
        lambda cl, size=size: torch_detector_step(size, cl),
      )

  for name, (examples, reps, make_jax, make_torch) in benches.items():
    row: dict = {}
    with_xla = args.impl != "xla" and name in args.xla_reference.split(",")
    impls = [args.impl] + (["xla"] if with_xla else [])
    jax_runs = {impl: make_jax(impl) for impl in impls}
    torch_runs = {}
    if torch is not None:
      torch_runs = {"nchw": make_torch(False), "channels_last": make_torch(True)}
    # Interleave the contenders so a burst of load elsewhere hits them alike.
    times: dict[str, list[float]] = {k: [] for k in [*jax_runs, *torch_runs]}
    runs = {k: run for k, (run, _) in jax_runs.items()} | torch_runs
    for run in runs.values():
      run()  # compile / warm up
    for _ in range(reps):
      for k, run in runs.items():
        times[k].append(best_time(run, 1, warmup=0))
    flops = jax_runs[args.impl][1]
    best = {k: min(v) for k, v in times.items()}
    row["flops_per_step"] = flops
    row["climjax_seconds_per_step"] = best[args.impl]
    row["climjax_examples_per_second"] = examples / best[args.impl]
    row["climjax_gflops"] = flops / best[args.impl] / 1e9
    row["fraction_of_peak"] = row["climjax_gflops"] / results["peak_gflops"]
    if "xla" in best and args.impl != "xla":
      row["xla_examples_per_second"] = examples / best["xla"]
    if torch_runs:
      for k in torch_runs:
        row[f"torch_{k}_examples_per_second"] = examples / best[k]
      torch_best = min(best[k] for k in torch_runs)
      row["torch_examples_per_second"] = examples / torch_best
      row["torch_gflops"] = flops / torch_best / 1e9
      row["ratio"] = row["climjax_examples_per_second"] / row["torch_examples_per_second"]
    results[name] = row
    print(f"{name}: " + ", ".join(f"{k}={v:.4g}" for k, v in row.items()), flush=True)

  Path(args.out).write_text(json.dumps(results, indent=2))
  print(_markdown(results, list(benches), args.impl))
  return results


def _rate(v: float) -> str:
  """Examples per second: whole numbers for the TC step, three digits for the detector's."""
  return f"{v:,.0f}" if v >= 100 else f"{v:.3g}"


def _markdown(results: dict, names: list[str], impl: str) -> str:
  m = results["machine"]
  measured = m.get("peak_measured_gflops")
  lines = [
    f"peak {results['peak_gflops']:.0f} GFLOP/s fp32 ({m['peak_used']}): FMA loop on "
    f"{results['threads']} thread{'s' * (results['threads'] > 1)} "
    + (f"{measured:.0f} (one core {m['peak_measured_one_core_gflops']:.0f})" if measured else "-")
    + f", nominal {m['peak_nominal_gflops']:.0f} = {results['threads']} x "
    f"{m['clock_ghz']:.2f} GHz x {m['flops_per_cycle']} FLOP/cycle ({m['microarchitecture']}: "
    f"{m['fma_units']}x{m['fma_bits']}-bit FMA; {m['cpu']})",
    "",
    f"| benchmark | climjax ({impl}) ex/s | XLA kernels ex/s | PyTorch ex/s (NCHW / CL) | ratio | "
    "climjax GFLOP/s | fraction of peak |",
    "|---|---|---|---|---|---|---|",
  ]
  for name in names:
    r = results[name]
    torch_col = (
      f"{_rate(r['torch_examples_per_second'])} ({_rate(r['torch_nchw_examples_per_second'])} / "
      f"{_rate(r['torch_channels_last_examples_per_second'])})"
      if "torch_examples_per_second" in r
      else "-"
    )
    lines.append(
      f"| {name} | {_rate(r['climjax_examples_per_second'])} | "
      f"{_rate(r.get('xla_examples_per_second', float('nan')))} | {torch_col} | "
      f"{r.get('ratio', float('nan')):.2f} | {r['climjax_gflops']:.0f} | "
      f"{r['fraction_of_peak']:.2f} |"
    )
  return "\n".join(lines)


# ---------------------------------------------------------------------------
# Thread scaling: one process per thread count.


def _without(argv: list[str], *flags: str) -> list[str]:
  """argv less the given --flag=value / --flag value options."""
  out, skip = [], False
  for arg in argv:
    if skip:
      skip = False
    elif arg in flags:
      skip = True
    elif not any(arg.startswith(f + "=") for f in flags):
      out.append(arg)
  return out


def thread_scaling(runs: dict[int, dict]) -> dict:
  """Per benchmark and thread count: examples/s, speed-up over the first count and
  parallel efficiency (speed-up / thread ratio), overall and from the previous count."""
  counts = sorted(runs)
  base = counts[0]
  steps: dict = {}
  names = [k for k, v in runs[base].items() if isinstance(v, dict) and "flops_per_step" in v]
  for name in names:
    rows = []
    for i, n in enumerate(counts):
      r = runs[n][name]
      row = {
        "threads": n,
        "climjax_examples_per_second": r["climjax_examples_per_second"],
        "climjax_gflops": r["climjax_gflops"],
        "fraction_of_peak": r["fraction_of_peak"],
      }
      for side in ("climjax", "torch"):
        key = f"{side}_examples_per_second"
        if key not in r or key not in runs[base][name]:
          continue
        row[key] = r[key]
        speedup = r[key] / runs[base][name][key]
        row[f"{side}_speedup"] = speedup
        row[f"{side}_efficiency"] = speedup / (n / base)
        if i > 0:
          prev = counts[i - 1]
          step = r[key] / runs[prev][name][key]
          row[f"{side}_step_efficiency"] = step / (n / prev)
      rows.append(row)
    steps[name] = rows
  peaks = [
    {
      "threads": n,
      "peak_gflops": runs[n]["peak_gflops"],
      "peak_used": runs[n]["machine"]["peak_used"],
      "peak_measured_gflops": runs[n]["machine"]["peak_measured_gflops"],
      "peak_measured_wall_gflops": runs[n]["machine"].get("peak_measured_wall_gflops"),
    }
    for n in counts
  ]
  return {"threads": counts, "base_threads": base, "steps": steps, "peak": peaks}


def _scaling_markdown(scaling: dict) -> str:
  base = scaling["base_threads"]
  lines = []
  for name, rows in scaling["steps"].items():
    lines += [
      "",
      f"{name}: efficiency = (rate_n / rate_{base}) / (n / {base}); step = from the previous count",
      "| threads | climjax ex/s | speed-up | efficiency | step | PyTorch ex/s | efficiency | "
      "fraction of peak |",
      "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
      torch_cols = (
        f"{_rate(r['torch_examples_per_second'])} | {r['torch_efficiency']:.2f}"
        if "torch_examples_per_second" in r
        else "- | -"
      )
      lines.append(
        f"| {r['threads']} | {_rate(r['climjax_examples_per_second'])} | "
        f"{r['climjax_speedup']:.2f} | {r['climjax_efficiency']:.2f} | "
        f"{r.get('climjax_step_efficiency', float('nan')):.2f} | {torch_cols} | "
        f"{r['fraction_of_peak']:.2f} |"
      )
  # The FMA loop's wall-clock rate shows how much of the cores the benchmark had:
  # its CPU-time rate (the peak) ignores other load, the wall rate does not.
  walls = ", ".join(
    f"{p['threads']}: {p['peak_measured_wall_gflops']:.0f}"
    for p in scaling["peak"]
    if p.get("peak_measured_wall_gflops")
  )
  if walls:
    lines += ["", f"FMA loop wall-clock GFLOP/s by threads (other load shows here): {walls}"]
  return "\n".join(lines)


def thread_sweep(counts: list[int], out: str, argv: list[str]) -> dict:
  """Runs this script once per thread count (a fresh process each: XLA's CPU client
  sizes its thread pool once), then writes the largest count's results with
  "thread_scaling" added."""
  forwarded = _without(argv, "--threads", "--out")
  runs: dict[int, dict] = {}
  with tempfile.TemporaryDirectory(prefix="bench_threads_") as tmp:
    for n in counts:
      path = os.path.join(tmp, f"bench_{n}.json")
      print(f"== {n} thread{'s' * (n > 1)}", flush=True)
      command = [sys.executable, __file__, *forwarded, f"--threads={n}", f"--out={path}"]
      done = subprocess.run(command)
      if done.returncode != 0:
        raise SystemExit(f"bench.py --threads={n} failed (exit {done.returncode})")
      runs[n] = json.loads(Path(path).read_text())
  results = dict(runs[counts[-1]])
  results["thread_scaling"] = thread_scaling(runs)
  Path(out).write_text(json.dumps(results, indent=2))
  print(_scaling_markdown(results["thread_scaling"]))
  return results


if __name__ == "__main__":
  main()
