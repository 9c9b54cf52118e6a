"""launch/synthetic_run.py and launch/validate_heuristics.py: synthetic netCDF runs, scored heuristics."""

import json
import os

import netCDF4
import numpy as np
import pandas as pd

from climjax.data import netcdf, synthetic
from launch import synthetic_run, validate_heuristics


def test_file_ranges_are_months_or_days():
  # 1979: 31 days of January, 28 of February.
  assert synthetic_run.file_ranges(4 * 40, 0) == [(0, 124), (124, 160)]
  assert synthetic_run.file_ranges(10, 1.0) == [(0, 4), (4, 8), (8, 10)]


def test_a_run_reads_back_with_its_planted_events(tmp_path, capsys):
  out = tmp_path / "run"
  assert (
    synthetic_run.main(
      [f"--out={out}", "--days=3", "--days_per_file=1", "--nlat=32", "--nlon=48", "--tc_rate=2"]
    )
    == 0
  )
  assert "3 files in" in capsys.readouterr().out
  files = sorted(p for p in os.listdir(out) if p.endswith(".nc"))
  assert files[0] == "synthetic.cam.h2.1979-01-01T000000.nc" and len(files) == 3
  ds = netcdf.open_fields(str(out / "*.nc"))
  assert ds.sizes["time"] == 12 and ds.sizes["lat"] == 32
  events = pd.read_csv(out / "events.csv")
  _, expected = synthetic.generate_fields(12, seed=0, nlat=32, nlon=48, rates={"TC": 2.0})
  np.testing.assert_array_equal(events["track_id"], expected["track_id"])
  np.testing.assert_array_equal(events["time_index"], expected["time_index"])
  assert set(events["file"]) == set(files)
  summary = json.loads((out / "run.json").read_text())
  assert summary["tc_rate"] == 2.0 and summary["snapshots"] == 12
  assert summary["planted"]["TC"]["boxes"] == int((expected["class_name"] == "TC").sum())
  # The generator's attributes, knobs included, are in every file.
  with netCDF4.Dataset(out / files[1]) as f:
    assert f.tc_rate == 2.0 and f.first_step == 4 and f.seed == 0
  assert synthetic_run.main([f"--out={out}", "--days=1", "--ar_rate=-2"]) == 2
  assert "ar_rate must be in [0, 10]" in capsys.readouterr().err


def test_validate_heuristics_prints_every_class(tmp_path, capsys):
  out = tmp_path / "run"
  synthetic_run.main([f"--out={out}", "--days=2", "--nlat=96", "--nlon=144"])
  csv = tmp_path / "scores.csv"
  assert validate_heuristics.main([f"--run={out}", f"--csv={csv}"]) == 0
  printed = capsys.readouterr().out
  for name in ("TD", "TC", "ETC", "AR", "WF", "TC candidates"):
    assert f"| {name} |" in printed
  table = pd.read_csv(csv)
  assert list(table["class_name"]) == ["TD", "TC", "ETC", "AR", "WF", "TC candidates"]
  assert (table["planted"] > 0).all() and table["recall"].between(0, 1).all()
  assert table.loc[table["class_name"] == "ETC", "found"].iloc[0] > 0
