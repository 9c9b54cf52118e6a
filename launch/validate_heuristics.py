"""Scores the heuristic labels against the events the synthetic generator planted.

  python launch/validate_heuristics.py --days=60 --seed=0              # 192 x 288, the demo grid
  python launch/validate_heuristics.py --days=10 --nlat=384 --nlon=576
  python launch/validate_heuristics.py --run=runs/synthetic/historical  # a synthetic_run.py run

Generates `--days` of 6-hourly fields (`synthetic.generate_fields`), or reads
a run written by `launch/synthetic_run.py` (its netCDF files and
events.csv), labels them with `heuristics.label_events` (what
`--source=netcdf` trains on) and prints, per class, the planted and found
counts, recall, false alarms per snapshot and the median position error
(`heuristics.score_labels`: cyclones match within 300 km, 600 km for ETCs;
rivers and fronts where the boxes overlap; positions are centres for
cyclones, box centres for rivers and fronts). "recall strong" counts only
events above the intensities in STRONG (too weak for any detector: a TD
of 150 Pa, a front of 1 K). "TC candidates" are the TC detector's
candidates before tracking. --csv writes the table too.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time
import warnings

# configs/ lives beside climjax/ at the repository root, not inside the package.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
  sys.path.insert(0, REPO_ROOT)

# Intensities above which an event counts as strong: Pa of deficit (TD, ETC),
# kg/m2 of moisture excess (AR), K of warm-sector excess (fronts).
STRONG = {"TD": 500.0, "ETC": 2_000.0, "AR": 12.0, "WF": 4.0}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  from configs import semisup

  demo = semisup.get_config().data
  parser = argparse.ArgumentParser(
    description="Score the heuristics against planted events.",
    formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  parser.add_argument("--days", type=float, default=60.0)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--nlat", type=int, default=demo.height)
  parser.add_argument("--nlon", type=int, default=demo.width)
  parser.add_argument("--run", default="", help="a launch/synthetic_run.py directory instead")
  parser.add_argument(
    "--ar_mode", default="auto", choices=("auto", "threshold", "anomaly"),
    help="detect_atmospheric_rivers' mode (the moist-belt rule)",
  )  # fmt: skip
  parser.add_argument("--csv", default="", help="also write the table here")
  return parser.parse_args(argv)


def fields_and_events(args: argparse.Namespace):
  """(dataset, planted events, description) generated or read from a run directory."""
  import pandas as pd

  from climjax.data import netcdf, synthetic

  if args.run:
    files = sorted(glob.glob(os.path.join(args.run, "*.nc")))
    ds = netcdf.open_fields(files)
    events = pd.read_csv(os.path.join(args.run, "events.csv"))
    return ds, events, f"{args.run} ({len(files)} files)"
  steps = int(round(args.days * synthetic.STEPS_PER_DAY))
  ds, events = synthetic.generate_fields(steps, seed=args.seed, nlat=args.nlat, nlon=args.nlon)
  return ds, events, f"synthetic seed {args.seed}, {args.nlat} x {args.nlon}"


def score(ds, events, ar_mode: str = "auto"):
  """The table: one row per class, plus the TC detector's candidates before tracking."""
  import pandas as pd

  from climjax.data import heuristics
  from climjax.data.heuristics.labels import label_rows

  labels = heuristics.label_events(ds, ar_mode=ar_mode)
  n = ds.sizes["time"]
  table = heuristics.score_labels(labels, events, n)
  strong = heuristics.score_labels(labels, events, n, min_intensity=STRONG)
  table.insert(4, "recall_strong", strong["recall"].where(table["class_name"].isin(STRONG)))
  candidates = heuristics.detect_tropical_cyclones(ds)
  rows = label_rows(candidates.assign(track_id=-1), "TC", edges="fractional", track=False)
  loose = heuristics.score_labels(rows, events, n, classes=("TC",))
  loose["class_name"] = "TC candidates"
  return pd.concat([table, loose], ignore_index=True), labels


def markdown(table) -> str:
  """A DataFrame as a Markdown table, numbers to 3 significant digits."""

  def cell(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)

  lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
  lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
  return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
  args = parse_args(argv)
  warnings.simplefilter("ignore", UserWarning)  # the TREFHT-for-fronts notice
  t0 = time.time()
  ds, events, where = fields_and_events(args)
  print(f"[climjax] {ds.sizes['time']} snapshots of {where} ({time.time() - t0:.0f} s)", flush=True)
  t0 = time.time()
  table, _ = score(ds, events, args.ar_mode)
  print(f"[climjax] labelled and scored ({time.time() - t0:.0f} s)")
  shown = table.rename(
    columns={
      "class_name": "class",
      "recall_strong": "recall strong",
      "false_alarms_per_snapshot": "false alarms / snapshot",
      "position_error_km": "position error km",
      "matched_other_class": "false alarms on another class",
    }
  )
  print(markdown(shown))
  if args.csv:
    table.to_csv(args.csv, index=False)
  return 0


if __name__ == "__main__":
  sys.exit(main())
