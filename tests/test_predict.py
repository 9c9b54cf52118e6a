"""launch/predict.py: a trained :tiny detector applied to CAM5-style netCDF files the test writes.

Detections and tracks come out as CF files that reopen with xarray; two MPI
ranks give the same detections as one process; bad input and a workdir that
does not fit end with one line naming the file and the fix.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr
from conftest import needs_mpi

from climjax.data import netcdf, synthetic
from climjax.training import train
from configs import semisup

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PREDICT = os.path.join(REPO, "launch", "predict.py")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A tiny detector's workdir (64 x 96 fields)."""
  workdir = str(tmp_path_factory.mktemp("detector"))
  config = semisup.get_config("tiny")
  config.platform.allocator = "system"
  train.train_and_evaluate(config, workdir)
  assert os.path.exists(os.path.join(workdir, "stats.json"))
  return workdir


@pytest.fixture(scope="module")
def cam5_files(tmp_path_factory):
  """Two CAM5-style files of 6 snapshots each on the tiny detector's grid."""
  directory = tmp_path_factory.mktemp("cam5")
  for k in range(2):
    ds, _ = synthetic.generate_fields(6, seed=3, nlat=64, nlon=96, start=6 * k)
    netcdf.write_cam5_netcdf(ds, directory / f"cam5_{k}.nc")
  return str(directory / "cam5_*.nc")


def _predict(*args, mpi_ranks: int = 0):
  command = [sys.executable, PREDICT, *map(str, args)]
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  if mpi_ranks:
    from climjax.parallel import environment

    env = environment.mpi_environment(env, mpi_ranks)
    command = environment.mpiexec_command(mpi_ranks, command, mpiexec=environment.find_mpiexec())
  return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def _one_line_error(result, *fragments):
  assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
  lines = [line for line in result.stderr.splitlines() if line.startswith("climjax: error:")]
  assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
  for fragment in fragments:
    assert fragment in lines[0], lines[0]


def test_predict_writes_detections_and_tracks(trained, cam5_files, tmp_path):
  out = tmp_path / "out"
  result = _predict(f"--workdir={trained}", f"--input={cam5_files}", f"--out={out}")
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  assert "snapshots/s" in result.stdout
  report = json.load(open(out / "predict.json"))
  assert report["snapshots"] == 12 and report["peak_rss_mb"] > 0
  with xr.open_dataset(out / "detections.nc", decode_times=False) as ds:
    assert ds.attrs["featureType"] == "point"
    assert ds["time"].attrs["calendar"] == "noleap"  # carried from the CAM5 files
    assert ds.sizes["snapshot"] == 12
    n = ds.sizes["obs"]
    assert n == report["detections"] > 0
    assert ((ds["lat"] >= -90) & (ds["lat"] <= 90)).all()
    assert ((ds["lon"] >= 0) & (ds["lon"] < 360)).all()
    assert set(np.unique(ds["class_id"].values)) <= {0, 1, 2, 3}
    snapshot_times = set(ds["snapshot_time"].values.tolist())
    assert set(ds["time"].values.tolist()) <= snapshot_times
  with open(out / "detections.csv") as f:
    assert len(f.readlines()) == n + 1
  assert os.path.exists(out / "tracks.nc") and os.path.exists(out / "tracks.csv")


def test_heuristics_need_no_trained_model(cam5_files, tmp_path):
  out = tmp_path / "teca"
  result = _predict("--detector=heuristics", f"--input={cam5_files}", f"--out={out}", "--no_tracks")
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  report = json.load(open(out / "predict.json"))
  assert report["detector"] == "heuristics" and report["snapshots"] == 12


@needs_mpi
def test_two_ranks_give_the_detections_of_one_process(trained, cam5_files, tmp_path):
  one = _predict(f"--workdir={trained}", f"--input={cam5_files}", f"--out={tmp_path / 'one'}",
                 "--batch_size=4", "--no_tracks")  # fmt: skip
  two = _predict(f"--workdir={trained}", f"--input={cam5_files}", f"--out={tmp_path / 'two'}",
                 "--batch_size=4", "--no_tracks", mpi_ranks=2)  # fmt: skip
  for result in (one, two):
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  assert json.load(open(tmp_path / "two" / "predict.json"))["ranks"] == 2
  with (
    xr.open_dataset(tmp_path / "one" / "detections.nc", decode_times=False) as a,
    xr.open_dataset(tmp_path / "two" / "detections.nc", decode_times=False) as b,
  ):
    for name in ("time", "class_id", "score", "lat", "lon", "lat_min", "lon_max"):
      np.testing.assert_array_equal(a[name].values, b[name].values)


def test_wrong_grid_missing_variable_and_foreign_workdirs_are_one_line(
  trained, cam5_files, tmp_path
):
  ds, _ = synthetic.generate_fields(2, seed=1, nlat=32, nlon=48)
  netcdf.write_cam5_netcdf(ds, tmp_path / "coarse.nc")
  result = _predict(
    f"--workdir={trained}", f"--input={tmp_path / 'coarse.nc'}", f"--out={tmp_path}/o"
  )
  _one_line_error(result, "coarse.nc", "32x48", "64x96")

  ds, _ = synthetic.generate_fields(2, seed=1, nlat=64, nlon=96)
  netcdf.write_cam5_netcdf(ds.drop_vars("TMQ"), tmp_path / "no_tmq.nc")
  result = _predict(
    f"--workdir={trained}", f"--input={tmp_path / 'no_tmq.nc'}", f"--out={tmp_path}/o"
  )
  _one_line_error(result, "no_tmq.nc", "TMQ")

  result = _predict(
    f"--workdir={tmp_path / 'nowhere'}", f"--input={cam5_files}", f"--out={tmp_path}/o"
  )
  _one_line_error(result, "config.json")

  # A config whose network differs from the checkpoint's (twice the width).
  other = tmp_path / "other"
  os.makedirs(other)
  config = json.load(open(os.path.join(trained, "config.json")))
  config["model"]["width"] *= 2
  json.dump(config, open(other / "config.json", "w"))
  os.symlink(os.path.join(trained, "checkpoints"), other / "checkpoints")
  result = _predict(f"--workdir={other}", f"--input={cam5_files}", f"--out={tmp_path}/o")
  _one_line_error(result, "does not fit the network")


@pytest.mark.slow
def test_climatology_recovers_a_planted_change_end_to_end(tmp_path):
  """Two 30-day synthetic runs, ARs planted twice as often in the second; the
  heuristics through launch/predict.py and launch/climatology.py find more ARs
  (and about as many ETCs, planted alike) in the second."""
  for name, rate in (("a", 1.0), ("b", 2.0)):
    result = subprocess.run(
      [sys.executable, os.path.join(REPO, "launch", "synthetic_run.py"), f"--out={tmp_path / name}",
       "--days=30", "--seed=0", "--nlat=96", "--nlon=144", f"--ar_rate={rate}"],
      cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    result = _predict("--detector=heuristics", f"--input={tmp_path / name}/*.nc",
                      f"--out={tmp_path / ('p' + name)}")  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
  result = subprocess.run(
    [sys.executable, os.path.join(REPO, "launch", "climatology.py"),
     f"--runs={tmp_path / 'pa'},{tmp_path / 'pb'}", f"--out={tmp_path / 'compare'}"],
    cwd=REPO, capture_output=True, text=True, timeout=600,
  )  # fmt: skip
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
  import pandas as pd

  table = pd.read_csv(tmp_path / "compare" / "summary.csv").set_index("class")
  assert 1.3 < table.loc["AR", "ratio"] < 3.0, table
  assert 0.7 < table.loc["ETC", "ratio"] < 1.4, table
  assert os.path.exists(tmp_path / "compare" / "frequency.nc")
