"""Training-step throughput of climjax against the same models in PyTorch, on CPU.

  python launch/bench.py --out=bench.json                  # TC, detector 384 and 768
  python launch/bench.py --only=tc,detector384 --reps=3    # a quicker subset
  python launch/bench.py --only=ar,wf --xla_reference=ar,wf  # the other two classifiers

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

The peak is measured: an FMA loop compiled with the system C compiler, run on
every core and on one core (times the core count); the peak is the largest of
those and the nominal cores x clock x FMA width, so the fraction is conservative.
The script applies the platform defaults a training run uses (configs/common.py:
XLA flags, tcmalloc preloaded; `--xla_flags=...` replaces the flags); timings on
a shared machine are noisy, so both frameworks run interleaved, best of --reps.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# ---------------------------------------------------------------------------
# Machine peak.

_FMA_LOOP = r"""
#include <stdio.h>
#include <stdlib.h>
#include <omp.h>
typedef float vec __attribute__((vector_size(VEC_BYTES)));
int main(int argc, char **argv) {
  long iters = atol(argv[1]);
  double best = 0.0;
  for (int rep = 0; rep < 3; rep++) {
    double t0 = omp_get_wtime(), sink = 0.0;
    int threads = 1;
    #pragma omp parallel reduction(+ : sink)
    {
      threads = omp_get_num_threads();
      /* Twelve independent chains with different starts, in named registers:
         enough to cover the FMA latency on two ports, and not mergeable. */
      vec m, c, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11;
      for (int l = 0; l < (int)(VEC_BYTES / 4); l++) {
        m[l] = 0.9999999f; c[l] = 1e-7f;
        a0[l] = 1.00f; a1[l] = 1.01f; a2[l] = 1.02f; a3[l] = 1.03f; a4[l] = 1.04f; a5[l] = 1.05f;
        a6[l] = 1.06f; a7[l] = 1.07f; a8[l] = 1.08f; a9[l] = 1.09f; a10[l] = 1.10f; a11[l] = 1.11f;
      }
      for (long i = 0; i < iters; i++) {
        a0 = a0 * m + c; a1 = a1 * m + c; a2 = a2 * m + c; a3 = a3 * m + c;
        a4 = a4 * m + c; a5 = a5 * m + c; a6 = a6 * m + c; a7 = a7 * m + c;
        a8 = a8 * m + c; a9 = a9 * m + c; a10 = a10 * m + c; a11 = a11 * m + c;
      }
      vec s = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7)) + ((a8 + a9) + (a10 + a11));
      for (int l = 0; l < (int)(VEC_BYTES / 4); l++) sink += s[l];
    }
    double t = omp_get_wtime() - t0;
    double flops = (double)iters * 12 * (VEC_BYTES / 4) * 2 * threads;
    if (flops / t > best) best = flops / t;
    if (sink == 42.0) puts("");  /* keeps the loop alive */
  }
  printf("%f\n", best / 1e9);
  return 0;
}
"""


def cpu_facts() -> dict:
  """Cores, nominal clock and SIMD width from /proc/cpuinfo (Linux x86)."""
  cores = len(os.sched_getaffinity(0))
  text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
  flags = (
    set(re.search(r"^flags\s*:(.*)$", text, re.M).group(1).split()) if "flags" in text else set()
  )
  mhz = [float(m) for m in re.findall(r"^cpu MHz\s*:\s*([\d.]+)", text, re.M)]
  model = re.search(r"^model name\s*:\s*(.*)$", text, re.M)
  lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags else 4
  fma = "fma" in flags or "avx512f" in flags
  return {
    "cpu": model.group(1).strip() if model else "unknown",
    "cores": cores,
    "clock_ghz": max(mhz) / 1e3 if mhz else float("nan"),
    "fp32_lanes": lanes,
    "fma": fma,
  }


def nominal_peak(facts: dict) -> float:
  """cores x clock x lanes x 2 (FMA) x 2 FMA ports; the ports are an assumption
  (two on every AVX2/AVX-512 server core of the last decade), the clock the
  nominal one (cores often run faster, which is why the FMA loop is measured)."""
  per_cycle = facts["fp32_lanes"] * (2 if facts["fma"] else 1) * 2
  return facts["cores"] * facts["clock_ghz"] * per_cycle


def measured_fma_peak(threads: int, facts: dict) -> float | None:
  """GFLOP/s of an FMA loop on `threads` threads, or None without a C compiler."""
  cc = shutil.which("cc") or shutil.which("gcc")
  if cc is None:
    return None
  vec_bytes = facts["fp32_lanes"] * 4
  with tempfile.TemporaryDirectory() as tmp:
    src, exe = Path(tmp, "fma.c"), Path(tmp, "fma")
    src.write_text(_FMA_LOOP.replace("VEC_BYTES", str(vec_bytes)))
    build = subprocess.run(
      [cc, "-O2", "-march=native", "-ffp-contract=fast", "-fopenmp", str(src), "-o", str(exe)],
      capture_output=True,
    )
    if build.returncode != 0:
      return None
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OMP_PROC_BIND="true")
    env.pop("LD_PRELOAD", None)
    out = subprocess.run([str(exe), "30000000"], capture_output=True, text=True, env=env)
    return float(out.stdout.strip()) if out.returncode == 0 else None


# ---------------------------------------------------------------------------
# Timing.


def apply_platform(xla_flags: str | None) -> dict:
  """The platform settings of a training run (configs/common.py: XLA flags,
  tcmalloc preloaded by re-executing this script), before JAX starts."""
  from climjax import platform
  from configs import common

  config = common.platform_config()
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
  for features, kernel, pool in zip(arch["conv_features"], arch["conv_kernels"], arch["pools"], strict=True):
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
  parser.add_argument("--threads", type=int, default=0, help="0 = every core")
  parser.add_argument("--no_torch", action="store_true")
  parser.add_argument(
    "--xla_flags",
    default=None,
    help="XLA flags (default: the configs' platform.xla_flags, as a training run uses)",
  )
  args = parser.parse_args(argv)
  platform_info = apply_platform(args.xla_flags)

  threads = args.threads or len(os.sched_getaffinity(0))
  import jax

  facts = cpu_facts()
  results: dict = {
    "machine": facts,
    "threads": threads,
    "ld_preload": os.environ.get("LD_PRELOAD", ""),
    "xla_flags": platform_info["xla_flags"],
    "allocator": platform_info["allocator"],
    "jax": jax.__version__,
    "nominal_peak_gflops": nominal_peak(facts),
  }
  from climjax.ops import native

  # The narrow-channel C++ kernels (climjax/ops/native.py); CLIMJAX_NATIVE=0
  # times the XLA-only formulations instead.
  results["native_kernels"] = native.available()
  # On a shared machine the all-core loop is dragged down by other processes;
  # one core times the core count bounds it from above (if every core can hold
  # the single-core clock). The largest estimate is the peak: fractions of it
  # are conservative.
  fma = measured_fma_peak(threads, facts)
  fma_one = measured_fma_peak(1, facts)
  results["fma_loop_gflops"] = fma
  results["fma_loop_one_core_gflops"] = fma_one
  results["peak_gflops"] = max(
    x for x in (fma, fma_one and fma_one * threads, results["nominal_peak_gflops"]) if x
  )

  torch = None
  if not args.no_torch:
    import torch

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
    else:
      parser.error(f"unknown benchmark {name!r}")

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
  fma, fma_one = results["fma_loop_gflops"], results["fma_loop_one_core_gflops"]
  lines = [
    f"peak {results['peak_gflops']:.0f} GFLOP/s fp32 = max(FMA loop on {results['threads']} "
    f"threads {fma or float('nan'):.0f}, one core x {results['threads']} "
    f"{(fma_one or float('nan')) * results['threads']:.0f}, nominal "
    f"{results['nominal_peak_gflops']:.0f}) ({results['machine']['cpu']})",
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


if __name__ == "__main__":
  main()
