"""The climatology of detected events in one run, or how it changes between two.

  python launch/climatology.py --runs=runs/predict/historical,runs/predict/future --out=runs/compare
  python launch/climatology.py --runs=runs/predict/historical --out=runs/historical_climatology

Each run is a directory written by launch/predict.py (its detections.nc, and
tracks.nc where present; without one, the detections are tracked with the
defaults of climjax/evaluation/tracking.py), or a detections.nc itself.
--out gets:
  summary.csv, summary.md   per class: counts, events per year, tracks and mean
                            lifetime of each run; for two runs the ratio of
                            events per year (second over first) and the p-value
                            of a permutation test of per-period event rates
                            (years, else months, else pentads: test_period)
  counts_monthly.csv, counts_yearly.csv, latitude.csv
  frequency.nc              detections per year covering each grid cell
                            (run, event_class, lat, lon) and the difference
  counts_per_month.png, latitude.png, map_<class>.png
A missing run or a file that is not a detections file: one line, exit 2.
"""

from __future__ import annotations

import argparse
import sys

from climjax.data.errors import DataError


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument(
    "--runs", required=True, help="one or two run directories (or detections.nc), comma-separated"
  )
  parser.add_argument("--out", required=True, help="directory for the tables, maps and figures")
  parser.add_argument("--names", default=None, help="labels of the runs (default: directory names)")
  parser.add_argument(
    "--min_periods",
    type=int,
    default=5,
    help="periods each run needs for the test to use years (else months, else pentads)",
  )
  parser.add_argument("--permutations", type=int, default=10_000, help="random permutations")
  parser.add_argument("--seed", type=int, default=0)
  return parser


def main(argv: list[str] | None = None) -> int:
  args = _parser().parse_args(argv)
  runs = [r for r in args.runs.split(",") if r]
  names = args.names.split(",") if args.names else None
  if not 1 <= len(runs) <= 2 or (names is not None and len(names) != len(runs)):
    print(f"climatology: give one or two --runs (and as many --names), got {runs}", file=sys.stderr)
    return 2
  from climjax.evaluation import climatology

  try:
    summary, paths = climatology.compare_runs(
      runs,
      args.out,
      names=names,
      min_periods=args.min_periods,
      num_permutations=args.permutations,
      seed=args.seed,
    )
  except (DataError, ValueError) as e:
    print(f"climatology: {' '.join(str(e).split())}", file=sys.stderr)
    return 2
  with open(paths["summary.md"]) as f:
    print(f.read())
  print(f"climatology: wrote {len(paths)} files to {args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
