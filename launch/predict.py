"""Applies a trained detector (or the TECA-style heuristics) to netCDF / HDF5 files: events and tracks.

  python launch/predict.py --workdir=runs/semisup --input='cam5/*.nc' --out=runs/predict/historical
  python launch/predict.py --workdir=runs/semisup --source=extremeweather --input='climo_*.h5' \\
      --out=runs/predict/ew
  python launch/predict.py --detector=heuristics --input='cam5/*.nc' --out=runs/predict/teca
  bash launch/mpirun.sh ... is for training; for prediction on N ranks:
  .venv/bin/mpiexec -n 2 .venv/bin/python launch/predict.py --workdir=... --input=... --out=...

--workdir is a training run of the detector (configs/semisup.py): its
config.json, stats.json and newest checkpoint are loaded, and the files must be
on the grid it was trained on with its 16 variables (CAM5 names, or others
mapped with --variables_map=msl:PSL,...). Snapshots are read a few at a time
(constant memory), batched through the jitted network, decoded with per-class
NMS at the run's eval.score_threshold, and written to --out:

  detections.nc / .csv  one record per detection: time, class, score, centre and
                        box edges in degrees (CF point features, the input's calendar)
  tracks.nc / .csv      detections linked in time per class (CF trajectories)
  predict.json          snapshots, detections per class, snapshots/s, peak memory

Under MPI the ranks split the snapshots (whole batches each) and rank 0 merges
them in time order: the files are the same as from one process. A problem
with the input or the workdir ends with one line naming the file and what to
do, exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(0, REPO)

from climjax import platform  # noqa: E402  (imports no JAX)


def parse_args(argv=None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument("--workdir", help="the detector's training run (not needed for heuristics)")
  parser.add_argument("--input", required=True, help="file path or glob (quote it)")
  parser.add_argument("--out", required=True, help="output directory")
  parser.add_argument("--source", default="netcdf", choices=("netcdf", "extremeweather"))
  parser.add_argument("--detector", default="learned", choices=("learned", "heuristics"))
  parser.add_argument("--variables_map", default="", help="other names, e.g. msl:PSL,tcw:TMQ")
  parser.add_argument("--box_order", default="", help="ExtremeWeather boxes: yxyx | xxyy")
  parser.add_argument(
    "--nonfinite", default="refuse", choices=("refuse", "mask"),
    help="a NaN or Inf in a field: refused (default) or masked (filled, counted in predict.json)",
  )  # fmt: skip
  parser.add_argument(
    "--batch_size", type=int, default=0, help="snapshots per batch (0: the run's eval_batch_size)"
  )
  parser.add_argument("--score_threshold", type=float, default=None, help="default: the run's")
  parser.add_argument("--no_tracks", action="store_true", help="detections only")
  return parser.parse_args(argv)


def _mpi():
  """(comm, rank, size): MPI only when launched by mpiexec (no mpi4py import otherwise)."""
  if not any(v in os.environ for v in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK")):
    return None, 0, 1
  from mpi4py import MPI  # noqa: PLC0415

  comm = MPI.COMM_WORLD
  return comm, comm.Get_rank(), comm.Get_size()


def _fail(message: str, comm=None) -> None:
  print(f"climjax: error: {message}", file=sys.stderr)
  sys.stderr.flush()
  if comm is not None and comm.Get_size() > 1:
    comm.Abort(2)
  sys.exit(2)


def _platform_block(workdir: str | None) -> dict:
  path = os.path.join(workdir or "", "config.json")
  if workdir and os.path.exists(path):
    with open(path) as f:
      return json.load(f).get("platform", {})
  return {}


def _eta(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  return f"{seconds // 60}m{seconds % 60:02d}s"


def main(argv=None) -> int:
  args = parse_args(argv)
  if args.detector == "learned" and not args.workdir:
    _fail("--workdir (a trained detector's run) is required, or --detector=heuristics")
  comm, rank, size = _mpi()
  chief = rank == 0
  log = print if chief else (lambda *a, **k: None)
  block = _platform_block(args.workdir)
  if size > 1:
    block["threads"] = 0
  try:
    platform.apply(block, argv=None if size > 1 else sys.orig_argv[1:])
  except ValueError as e:
    _fail(str(e), comm)
  from climjax import predict  # noqa: PLC0415  (imports JAX: after platform.apply)
  from climjax.data.errors import DataError  # noqa: PLC0415
  from climjax.data.variables import CLASS_NAMES  # noqa: PLC0415
  from climjax.errors import ConfigError  # noqa: PLC0415
  from climjax.evaluation import events, tracking  # noqa: PLC0415

  start = time.time()
  try:
    trained = None
    if args.detector == "learned":
      trained = predict.load_trained(args.workdir, log=log)
      if args.score_threshold is not None:
        trained.config.eval.score_threshold = args.score_threshold
      log(f"[predict] {args.workdir}: detector at step {trained.step}, "
          f"{trained.config.data.height}x{trained.config.data.width}")  # fmt: skip
    frames = predict.open_frames(
      args.source,
      args.input,
      variables_map=args.variables_map,
      box_order=args.box_order,
      nonfinite=args.nonfinite,
    )
    if trained is not None:
      predict.check_frames(frames, trained.config)
    times, units, calendar = predict.numeric_times(frames)
    n = len(frames)
    log(f"[predict] {frames.description}: {n} snapshots of {frames.grid.shape[0]}x"
        f"{frames.grid.shape[1]} on {size} rank(s)")  # fmt: skip
    if trained is not None:
      batch_size = args.batch_size or int(trained.config.train.eval_batch_size)
      batches = predict.batches_of(range(n), batch_size)
      mine = [b for k, b in enumerate(batches) if k * size // len(batches) == rank]
      found, done, t0 = [], 0, time.time()
      for batch in mine:
        detections = predict.predict_frames(trained, frames, batch, batch_size=batch_size)
        found.extend(zip(batch, detections, strict=True))
        done += len(batch)
        rate = done / max(time.time() - t0, 1e-9)
        total_mine = sum(len(b) for b in mine)
        about = " (rank 0's share x ranks)" if size > 1 else ""
        log(f"[predict] {done * size}/{n} snapshots{about}, {rate * size:.1f} snapshots/s, "
            f"eta {_eta((total_mine - done) / rate)}", flush=True)  # fmt: skip
      loop_seconds = time.time() - t0
    else:
      t0 = time.time()
      found = predict.heuristic_detections(frames, range(n)) if chief else []
      loop_seconds = time.time() - t0
    table = predict.to_table(found, frames.grid.lat, frames.grid.lon)
  except (ConfigError, DataError) as e:
    _fail(str(e), comm)
  peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  masked = dict(frames.masked)
  if comm is not None and size > 1:
    tables = comm.gather(table, root=0)
    peaks = comm.gather((peak_mb, loop_seconds, masked), root=0)
    if not chief:
      return 0
    table = {k: np_concat([t[k] for t in tables]) for k in table}
    peak_mb = max(p for p, _, _ in peaks)
    loop_seconds = max(s for _, s, _ in peaks)
    masked = {}
    for _, _, m in peaks:
      for k, v in m.items():
        masked[k] = masked.get(k, 0) + v
  table = predict.sort_table(table)
  elapsed = time.time() - start
  os.makedirs(args.out, exist_ok=True)
  from climjax import provenance  # noqa: PLC0415

  attrs = {
    **provenance.netcdf_attrs(),
    "source": f"climjax {args.detector} detector on {frames.description}",
    "workdir": os.path.abspath(args.workdir) if args.workdir else "",
    "checkpoint_step": trained.step if trained else -1,
    "command": " ".join(sys.argv),
  }
  detections = {**table, "time": times[table["snapshot"]] if n else table["score"]}
  nc, csv = events.write_detections(
    args.out, detections, times=times, time_units=units, calendar=calendar,
    lats=frames.grid.lat, lons=frames.grid.lon, class_names=CLASS_NAMES, attrs=attrs,
  )  # fmt: skip
  log(f"[predict] wrote {nc} and {csv}: {len(table['score'])} detections")
  if masked:
    log(f"[predict] --nonfinite=mask filled {sum(masked.values())} non-finite values: {masked}")
  report = {
    "snapshots": n,
    "detections": int(len(table["score"])),
    "detections_by_class": {
      name: int((table["class_id"] == c).sum()) for c, name in enumerate(CLASS_NAMES)
    },
    "seconds": elapsed,
    "prediction_seconds": loop_seconds,
    "snapshots_per_second": n / loop_seconds if loop_seconds else None,
    "peak_rss_mb": peak_mb,
    "ranks": size,
    "detector": args.detector,
    "checkpoint_step": trained.step if trained else None,
    "nonfinite": args.nonfinite,
    "masked_values": masked,
    "provenance": provenance.provenance(),
  }
  if not args.no_tracks:
    track_ids = tracking.link_tracks(detections, times=times, time_units=units)
    nc, csv = events.write_tracks(
      args.out, detections, track_ids, times=times, time_units=units, calendar=calendar,
      lats=frames.grid.lat, lons=frames.grid.lon, class_names=CLASS_NAMES, attrs=attrs,
    )  # fmt: skip
    report["tracks"] = int(len(set(track_ids[track_ids >= 0].tolist())))
    log(f"[predict] wrote {nc} and {csv}: {report['tracks']} tracks")
  with open(os.path.join(args.out, "predict.json"), "w") as f:
    json.dump(report, f, indent=2)
  log(f"[predict] {n} snapshots: {report['snapshots_per_second'] or 0:.1f} snapshots/s over "
      f"{loop_seconds:.1f} s of prediction ({elapsed:.0f} s in all, with start-up and writing); "
      f"peak memory {peak_mb:.0f} MB per rank; wrote {os.path.join(args.out, 'predict.json')}")  # fmt: skip
  return 0


def np_concat(arrays):
  import numpy as np  # noqa: PLC0415

  return np.concatenate(arrays)


if __name__ == "__main__":
  sys.exit(main())
