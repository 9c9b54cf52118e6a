"""One slow rank: synchronous training slows to its pace, hybrid groups do not.

  python launch/straggler.py [--delay=0.1] [--workdir=runs/straggler] [--steps=60]

Four short TC runs of launch/main.py through launch/mpirun.sh (tiny data):

  sync,   2 ranks              without and with rank 1 sleeping --delay s per step
  hybrid, 1 server + 2 groups of 1 rank, without and with rank 1 (group 1) delayed

and prints two ratios (delayed / undelayed throughput): synchronous training
(examples/s of the whole job), which falls towards the straggler's pace, and the
undelayed hybrid group 0, which keeps its throughput (>= 0.8 is the target)
because the servers apply each group's pushes as they arrive. Writes the numbers
to <workdir>/straggler.json.

On an oversubscribed machine (3 ranks on 2 cores) a sleeping straggler also frees
a core, so group 0 may run faster than without it; the ratio says only that it
was not held back.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from launch import scaling  # noqa: E402  (data and mpirun command, shared with the sweep)


def build_data(data_dir: str) -> None:
  """Builds the tiny TC data set once, before several ranks read it."""
  scaling.prepare_data("configs/tc.py:tiny", data_dir)


def run(name: str, num_ranks: int, args, *overrides: str) -> dict:
  workdir = os.path.join(args.workdir, name)
  command = scaling.mpirun_command(
    num_ranks,
    "configs/tc.py:tiny",
    workdir,
    [
      f"--config.data.data_dir={args.data_dir}",
      "--config.train.eval_every=0",  # a mid-run evaluation would pause group 0
      *overrides,
    ],
  )
  print(f"[straggler] {name}: {' '.join(command[2:])}", flush=True)
  result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
  if result.returncode:
    sys.exit(f"[straggler] {name} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
  with open(os.path.join(workdir, "summary.json")) as f:
    return json.load(f)


def main() -> None:
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument(
    "--delay", type=float, default=0.1, help="seconds the straggler sleeps per step"
  )
  parser.add_argument(
    "--steps", type=int, default=60, help="synchronous steps (hybrid: 2x updates)"
  )
  parser.add_argument("--workdir", default=os.path.join(REPO, "runs", "straggler"))
  parser.add_argument("--data_dir", default=None, help="tfds data (default: <workdir>/tfds)")
  args = parser.parse_args()
  args.data_dir = args.data_dir or os.path.join(args.workdir, "tfds")
  os.makedirs(args.workdir, exist_ok=True)
  build_data(args.data_dir)

  sync = ["--config.parallel.strategy=sync", f"--config.train.steps={args.steps}"]
  hybrid = [
    "--config.parallel.strategy=hybrid",
    "--config.parallel.num_servers=1",
    "--config.parallel.num_groups=2",
    # Twice the updates: each group makes about half of them.
    f"--config.train.steps={2 * args.steps}",
  ]
  delayed = [
    "--config.parallel.straggler_rank=1",
    f"--config.parallel.straggler_delay={args.delay}",
  ]
  runs = {
    "sync": run("sync", 2, args, *sync),
    "sync_straggler": run("sync_straggler", 2, args, *sync, *delayed),
    "hybrid": run("hybrid", 3, args, *hybrid),
    "hybrid_straggler": run("hybrid_straggler", 3, args, *hybrid, *delayed),
  }
  sync_ratio = runs["sync_straggler"]["examples_per_second"] / runs["sync"]["examples_per_second"]
  group0 = [runs[k]["examples_per_second_by_group"][0] for k in ("hybrid", "hybrid_straggler")]
  group1 = [runs[k]["examples_per_second_by_group"][1] for k in ("hybrid", "hybrid_straggler")]
  hybrid_ratio = group0[1] / group0[0]
  # The pace a step that also sleeps `delay` would set: step / (step + delay).
  with open(os.path.join(args.workdir, "sync", "config.json")) as f:
    batch_size = json.load(f)["train"]["batch_size"]
  step_s = batch_size / runs["sync"]["examples_per_second"]
  straggler_pace = step_s / (step_s + args.delay)
  report = {
    "delay_s": args.delay,
    "sync_examples_per_second": [
      runs["sync"]["examples_per_second"],
      runs["sync_straggler"]["examples_per_second"],
    ],
    "sync_ratio": sync_ratio,
    "straggler_pace_ratio": straggler_pace,
    "hybrid_group0_examples_per_second": group0,
    "hybrid_group1_examples_per_second": group1,
    "hybrid_group0_ratio": hybrid_ratio,
    "hybrid_staleness_mean": [
      runs["hybrid"]["staleness_mean"],
      runs["hybrid_straggler"]["staleness_mean"],
    ],
    "hybrid_updates_by_group": [
      runs["hybrid"]["updates_by_group"],
      runs["hybrid_straggler"]["updates_by_group"],
    ],
  }
  with open(os.path.join(args.workdir, "straggler.json"), "w") as f:
    json.dump(report, f, indent=2)
  print(f"[straggler] rank 1 sleeps {args.delay:.3f} s per step")
  print(
    f"[straggler] sync: {report['sync_examples_per_second'][0]:.0f} -> "
    f"{report['sync_examples_per_second'][1]:.0f} ex/s, ratio {sync_ratio:.2f} "
    f"(a rank alone at the straggler's pace: {straggler_pace:.2f})"
  )
  print(
    f"[straggler] hybrid group 0: {group0[0]:.0f} -> {group0[1]:.0f} ex/s, ratio {hybrid_ratio:.2f} "
    f"(target >= 0.80); group 1 (the straggler's): {group1[0]:.0f} -> {group1[1]:.0f} ex/s"
  )
  print(f"[straggler] wrote {os.path.join(args.workdir, 'straggler.json')}")


if __name__ == "__main__":
  main()
