"""detections.nc / detections.csv: the CF point layout, round trips, calendars, bad input."""

import json

import netCDF4
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from climjax.data.errors import DataError
from climjax.evaluation import events, tracking

UNITS = "days since 0001-01-01 00:00:00"
LATS, LONS = np.linspace(-90, 90, 46), np.arange(0, 360, 5.0)
TIMES = 730_000 + np.arange(20) * 0.25  # 5 days, 6-hourly


def _detections(n: int = 6, seed: int = 0) -> dict:
  rng = np.random.default_rng(seed)
  lat, lon = rng.uniform(-60, 60, n), rng.uniform(0, 360, n)
  return {
    "snapshot": np.sort(rng.integers(0, len(TIMES), n)), "class_id": rng.integers(0, 4, n),
    "score": rng.uniform(0.3, 1.0, n), "lat": lat, "lon": lon, "lat_min": lat - 3,
    "lat_max": lat + 3, "lon_min": lon - 4, "lon_max": lon + 4,
  }  # fmt: skip


def _write(out_dir, dets, **kwargs):
  args = dict(times=TIMES, time_units=UNITS, calendar="noleap", lats=LATS, lons=LONS,
              attrs={"checkpoint": "runs/semisup/checkpoints/100", "config": {"model": "tiny"},
                     "source": "synthetic", "command": "launch/predict.py --input=x.nc"})  # fmt: skip
  return events.write_detections(out_dir, dets, **{**args, **kwargs})


def test_round_trip(tmp_path):
  dets = _detections()
  nc_path, csv_path = _write(tmp_path, dets)
  back = events.read_detections(tmp_path)  # the run directory
  again = events.read_detections(nc_path)  # or the file
  assert len(back) == len(again) == 6 and back.path == nc_path
  for key in events.COLUMNS:
    expected = np.mod(dets[key], 360.0) if key in ("lon", "lon_min") else dets[key]
    if key == "lon_max":
      expected = np.mod(dets["lon_min"], 360.0) + 8
    np.testing.assert_allclose(getattr(back, key), expected, rtol=1e-6, atol=1e-5, err_msg=key)
  np.testing.assert_array_equal(back.times, TIMES)
  assert back.time_units == UNITS and back.calendar == "noleap"
  assert back.class_names == ("TD", "TC", "ETC", "AR")
  np.testing.assert_array_equal(back.lats, LATS)
  np.testing.assert_array_equal(back.lons, LONS)
  assert back.attrs["checkpoint"] == "runs/semisup/checkpoints/100"
  assert json.loads(back.attrs["config"]) == {"model": "tiny"}
  assert "launch/predict.py --input=x.nc" in back.attrs["history"]
  np.testing.assert_array_equal(back.time, TIMES[dets["snapshot"]])
  # xarray opens it and decodes the times on the file's calendar.
  with xr.open_dataset(nc_path, decode_times=xr.coders.CFDatetimeCoder(use_cftime=True)) as ds:
    assert ds["time"].values[0].calendar == "noleap" and ds.sizes["snapshot"] == len(TIMES)
  table = pd.read_csv(csv_path)
  assert list(table.columns) == ["time", "snapshot", "class_id", "class", *events.COLUMNS[2:]]
  assert len(table) == 6
  names = np.array(["TD", "TC", "ETC", "AR"])[dets["class_id"]]
  assert list(table["class"]) == list(names)
  first = events.to_dates(TIMES[dets["snapshot"][:1]], UNITS, "noleap")[0]
  assert table["time"][0] == first.isoformat()
  assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]


def test_boxes_across_the_seam_and_stored_in_snapshot_order(tmp_path):
  dets = _detections(3)
  dets["snapshot"] = np.array([5, 1, 3])
  dets["lon"] = np.array([1.0, 359.0, -2.0])
  dets["lon_min"], dets["lon_max"] = np.array([-3.0, 355.0, 350.0]), np.array([5.0, 3.0, 6.0])
  _write(tmp_path, dets)
  back = events.read_detections(tmp_path)
  np.testing.assert_array_equal(back.snapshot, [1, 3, 5])
  np.testing.assert_allclose(back.lon, [359.0, 358.0, 1.0])
  np.testing.assert_allclose(back.lon_min, [355.0, 350.0, 357.0])
  np.testing.assert_allclose(back.lon_max, [363.0, 366.0, 365.0])  # lon_min + width


def test_no_detections_still_lists_every_snapshot(tmp_path):
  dets = {k: np.zeros(0) for k in events.COLUMNS}
  nc_path, csv_path = _write(tmp_path, dets)
  back = events.read_detections(tmp_path)
  assert len(back) == 0 and len(back.times) == len(TIMES)
  assert len(pd.read_csv(csv_path)) == 0


@pytest.mark.parametrize("calendar", ["noleap", "360_day", "gregorian", "proleptic_gregorian"])
def test_calendars_are_carried_and_decoded(tmp_path, calendar):
  # 30 February exists on a 360-day calendar; day 59 is 1 March on noleap.
  times = np.array([0.0, 59.0, 59.25])
  dets = {**_detections(3), "snapshot": np.array([0, 1, 2])}
  _, csv_path = _write(tmp_path, dets, times=times, time_units="days since 2000-01-01",
                       calendar=calendar)  # fmt: skip
  got = list(pd.read_csv(csv_path)["time"])
  expected = {"noleap": "2000-03-01T00:00:00", "360_day": "2000-02-30T00:00:00"}
  assert got[1] == expected.get(calendar, "2000-02-29T00:00:00")
  assert got[2].endswith("T06:00:00")
  assert events.read_detections(tmp_path).calendar == calendar


def test_bad_detections_are_refused(tmp_path):
  with pytest.raises(ValueError, match="lack"):
    _write(tmp_path, {"snapshot": np.zeros(1)})
  bad = _detections()
  bad["score"] = bad["score"][:-1]
  with pytest.raises(ValueError, match="differ in length"):
    _write(tmp_path, bad)
  with pytest.raises(ValueError, match="snapshot"):
    _write(tmp_path, {**_detections(), "snapshot": np.full(6, len(TIMES))})
  with pytest.raises(ValueError, match="class_id"):
    _write(tmp_path, {**_detections(), "class_id": np.full(6, 4)})
  with pytest.raises(ValueError, match="single words"):
    _write(tmp_path, _detections(), class_names=("TD", "TC", "extra tropical", "AR"))
  assert not list(tmp_path.iterdir())


def test_reading_what_is_not_a_detections_file(tmp_path):
  with pytest.raises(DataError, match="no such file"):
    events.read_detections(tmp_path / "missing")
  with pytest.raises(DataError, match="no such file"):
    events.read_detections(tmp_path)  # a directory without detections.nc
  other = tmp_path / "fields.nc"
  xr.Dataset({"PSL": (("lat",), np.zeros(3))}).to_netcdf(other)
  with pytest.raises(DataError, match="not a climjax detections file"):
    events.read_detections(other)
  text = tmp_path / "notes.nc"
  text.write_text("hello")
  with pytest.raises(DataError, match="not a netCDF file"):
    events.read_detections(text)


def _run_with_tracks(tmp_path):
  dets = _detections(12, seed=3)
  # One long TC among the random detections so that tracks.nc has a trajectory.
  dets["snapshot"][:8], dets["class_id"][:8] = np.arange(8), 1
  dets["lat"][:8], dets["lon"][:8] = 15 + 0.5 * np.arange(8), 140 - np.arange(8)
  nc_path, _ = _write(tmp_path, dets)
  ids = tracking.link_tracks(dets, times=TIMES, time_units=UNITS)
  tracks_path, _ = events.write_tracks(
    tmp_path, dets, ids, times=TIMES, time_units=UNITS, calendar="noleap", lats=LATS, lons=LONS
  )
  return nc_path, tracks_path


def test_cf_attributes(tmp_path):
  # The CF-1.8 DSG structure, checked directly (runs without a CF checker installed).
  nc_path, tracks_path = _run_with_tracks(tmp_path)
  with netCDF4.Dataset(nc_path) as nc:
    assert nc.Conventions == "CF-1.8" and nc.featureType == "point"
    assert nc["time"].dimensions == ("obs",) and nc["time"].standard_name == "time"
    assert nc["time"].units == UNITS and nc["time"].calendar == "noleap"
    assert (nc["lat"].standard_name, nc["lat"].units) == ("latitude", "degrees_north")
    assert (nc["lon"].standard_name, nc["lon"].units) == ("longitude", "degrees_east")
    assert list(nc["class_id"].flag_values) == [0, 1, 2, 3]
    assert nc["class_id"].flag_meanings == "TD TC ETC AR"
    for name in ("class_id", "score", "lat_min", "lat_max", "lon_min", "lon_max"):
      assert nc[name].coordinates == "time lat lon" and nc[name].long_name, name
      assert nc[name].dimensions == ("obs",)
    for name in ("score", "lat_min", "lat_max", "lon_min", "lon_max", "snapshot_index"):
      assert nc[name].units, name
    assert nc["snapshot_time"].dimensions == ("snapshot",)
    assert nc["snapshot_time"].calendar == "noleap"
    assert nc["grid_lat"].dimensions == ("grid_lat",) and nc["grid_lon"].units == "degrees_east"
  with netCDF4.Dataset(tracks_path) as nc:
    assert nc.featureType == "trajectory"
    assert nc["trajectory_id"].cf_role == "trajectory_id"
    assert nc["rowSize"].sample_dimension == "obs"
    assert int(nc["rowSize"][:].sum()) == nc.dimensions["obs"].size


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the checker's own ioos_sos suite
def test_a_cf_checker_finds_nothing_to_correct(tmp_path):
  # IOOS compliance-checker (the `test` extra), at its strictest: no errors, no warnings.
  runner = pytest.importorskip("compliance_checker.runner", reason="compliance-checker missing")
  runner.CheckSuite.load_all_available_checkers()
  empty_dir = tmp_path / "empty"
  empty, _ = _write(empty_dir, {k: np.zeros(0) for k in events.COLUMNS})
  for path in (*_run_with_tracks(tmp_path), empty):
    report = tmp_path / "report.json"
    passed, errors = runner.ComplianceChecker.run_checker(
      str(path), ["cf:1.8"], 0, "strict", output_filename=str(report), output_format="json"
    )
    result = json.loads(report.read_text())["cf:1.8"]
    messages = [m for p in result["all_priorities"] for m in p["msgs"]]
    assert passed and not errors, (path, messages)
    assert messages == [], (path, messages)


def test_times_must_increase(tmp_path):
  with pytest.raises(ValueError, match="increasing"):
    _write(tmp_path, _detections(), times=TIMES[::-1])
