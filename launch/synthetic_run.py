"""Writes a multi-month CAM5-style netCDF "run" of the synthetic generator, with a chosen event climate.

  python launch/synthetic_run.py --out=runs/synthetic/historical --days=60 --seed=0
  python launch/synthetic_run.py --out=runs/synthetic/future --days=60 --seed=0 --tc_rate=2.0

6-hourly snapshots of the 16 ExtremeWeather variables from
`climjax.data.synthetic.generate_fields`, from 1979-01-01, one file per month
(or per --days_per_file days), on the grid of configs/semisup.py's demo
(192 x 288) unless --nlat/--nlon say otherwise. The event knobs (--tc_rate,
--td_rate, --etc_rate, --ar_rate, --tc_intensity, --etc_intensity,
--ar_intensity) multiply the default number and strength of the planted
events (`synthetic.event_knobs`); with the same seed, a run at --tc_rate=2
holds every event of the default run and about as many TCs again.

Beside the files: `events.csv`, the planted events (the generator's event
table, `time_index` counted from the run's first snapshot, plus the file
each is in), and `run.json` with the settings. Files are written atomically
(`netcdf.write_cam5_netcdf`) on the standard calendar, since a run longer
than a year reaches 29 February; the files read back with
`launch/build_dataset.py --source=netcdf --input='DIR/*.nc'` and
`netcdf.open_fields`. Memory: one file's fields (a month at 192 x 288 is
0.4 GB; use --days_per_file at finer grids).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

# configs/ lives beside climjax/ at the repository root, not inside the package.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
  sys.path.insert(0, REPO_ROOT)

from climjax.data.synthetic import EVENT_KNOBS  # noqa: E402 - after the path is set


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  from configs import semisup

  demo = semisup.get_config().data
  parser = argparse.ArgumentParser(
    description="Write a synthetic CAM5-style netCDF run.",
    formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  parser.add_argument("--out", required=True, help="directory for the files")
  parser.add_argument("--days", type=float, required=True, help="length of the run")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--nlat", type=int, default=demo.height)
  parser.add_argument("--nlon", type=int, default=demo.width)
  parser.add_argument(
    "--days_per_file", type=float, default=0, help="days per file; 0: one file per month"
  )
  parser.add_argument("--prefix", default="synthetic.cam.h2", help="file names start with this")
  for knob in EVENT_KNOBS:
    parser.add_argument(f"--{knob}", type=float, default=1.0, help="times the default")
  return parser.parse_args(argv)


def file_ranges(num_steps: int, days_per_file: float) -> list[tuple[int, int]]:
  """[start, stop) snapshot ranges of the files: calendar months, or `days_per_file` days."""
  import numpy as np

  from climjax.data import synthetic

  if days_per_file > 0:
    size = max(1, int(round(days_per_file * synthetic.STEPS_PER_DAY)))
    return [(s, min(s + size, num_steps)) for s in range(0, num_steps, size)]
  times = synthetic.DEFAULT_START + np.arange(num_steps) * np.timedelta64(synthetic.STEP_HOURS, "h")
  months = times.astype("datetime64[M]")
  starts = np.flatnonzero(np.concatenate([[True], months[1:] != months[:-1]]))
  stops = np.concatenate([starts[1:], [num_steps]])
  return [(int(a), int(b)) for a, b in zip(starts, stops, strict=True)]


def write_run(args: argparse.Namespace) -> dict:
  """Writes the files, events.csv and run.json; returns the summary in run.json."""
  import numpy as np
  import pandas as pd

  from climjax.data import netcdf, synthetic

  knobs = synthetic.event_knobs(vars(args))  # ValueError naming a bad knob
  num_steps = int(round(args.days * synthetic.STEPS_PER_DAY))
  if num_steps < 1:
    raise ValueError(f"--days must give at least one 6-hourly snapshot, got {args.days}")
  os.makedirs(args.out, exist_ok=True)
  files, tables = [], []
  t0 = time.time()
  for start, stop in file_ranges(num_steps, args.days_per_file):
    ds, events = synthetic.generate_fields(
      stop - start, seed=args.seed, nlat=args.nlat, nlon=args.nlon, start=start, **knobs
    )
    stamp = str(np.datetime_as_string(ds["time"].values[0], unit="s")).replace(":", "")
    name = f"{args.prefix}.{stamp}.nc"
    netcdf.write_cam5_netcdf(ds, os.path.join(args.out, name), calendar="standard")
    tables.append(events.assign(time_index=events["time_index"] + start, file=name))
    files.append(name)
    print(
      f"[climjax] {name}: {stop - start} snapshots, {len(events)} planted events "
      f"({time.time() - t0:.0f} s)",
      flush=True,
    )
  events = pd.concat(tables, ignore_index=True)
  events.to_csv(os.path.join(args.out, "events.csv"), index=False)
  counts = events.groupby("class_name")["track_id"].agg(["size", "nunique"])
  summary = {
    "seed": args.seed,
    "grid": [args.nlat, args.nlon],
    "days": args.days,
    "snapshots": num_steps,
    "files": files,
    **{knob: getattr(args, knob) for knob in EVENT_KNOBS},
    "planted": {
      name: {"boxes": int(row["size"]), "tracks": int(row["nunique"])}
      for name, row in counts.iterrows()
    },
  }
  with open(os.path.join(args.out, "run.json"), "w") as f:
    json.dump(summary, f, indent=2)
  return summary


def main(argv: list[str] | None = None) -> int:
  args = parse_args(argv)
  try:
    summary = write_run(args)
  except ValueError as e:
    print(f"climjax: error: {e}", file=sys.stderr)
    return 2
  planted = ", ".join(
    f"{name} {c['tracks']} tracks / {c['boxes']} boxes" for name, c in summary["planted"].items()
  )
  print(f"[climjax] {len(summary['files'])} files in {args.out}; planted: {planted}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
