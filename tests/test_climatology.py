"""Event climatology: counts, tracks, maps and the two-run comparison, on files written here."""

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from climjax.data.heuristics.sphere import KM_PER_DEG, destination
from climjax.evaluation import climatology, events
from launch import climatology as launcher

UNITS = "days since 2000-01-01 00:00:00"
LATS, LONS = np.arange(-89.0, 90.0, 2.0), np.arange(0.0, 360.0, 2.5)
TC, AR = 1, 3


def _storms(rng, count: int, class_id: int, num_snapshots: int, lat_range, km_per_day, bearing):
  """Detections of `count` storms, each 3-6 days long, moving steadily."""
  rows = []
  for _ in range(count):
    start, length = rng.integers(0, num_snapshots - 4), rng.integers(12, 25)
    snaps = np.arange(start, min(start + length, num_snapshots))
    lat0, lon0 = rng.uniform(*lat_range), rng.uniform(0, 360)
    lat, lon = destination(lat0, lon0, bearing, km_per_day * 0.25 * (snaps - start) / KM_PER_DEG)
    rows.append(pd.DataFrame({"snapshot": snaps, "class_id": class_id, "lat": lat, "lon": lon}))
  return pd.concat(rows) if rows else pd.DataFrame(columns=["snapshot", "class_id", "lat", "lon"])


def _write_run(out_dir, *, tc: int, ar: int, days: int = 60, calendar="noleap", seed=0):
  """A run of `days` 6-hourly snapshots with `tc` tropical cyclones and `ar` rivers."""
  rng = np.random.default_rng(seed)
  n = days * 4
  table = pd.concat([
    _storms(rng, tc, TC, n, (8, 25), 500.0, 290.0),
    _storms(rng, ar, AR, n, (35, 50), 1200.0, 70.0),
  ])  # fmt: skip
  half = np.where(table["class_id"] == TC, 4.0, 10.0)
  dets = {
    "snapshot": table["snapshot"].to_numpy(), "class_id": table["class_id"].to_numpy(),
    "score": rng.uniform(0.5, 1.0, len(table)), "lat": table["lat"].to_numpy(),
    "lon": table["lon"].to_numpy(), "lat_min": table["lat"].to_numpy() - half,
    "lat_max": table["lat"].to_numpy() + half, "lon_min": table["lon"].to_numpy() - half,
    "lon_max": table["lon"].to_numpy() + half,
  }  # fmt: skip
  events.write_detections(out_dir, dets, times=np.arange(n) * 0.25, time_units=UNITS,
                          calendar=calendar, lats=LATS, lons=LONS, attrs={"source": "test"})  # fmt: skip
  return out_dir


def test_two_runs_with_twice_the_cyclones(tmp_path, capsys):
  a = _write_run(tmp_path / "historical", tc=40, ar=30, seed=1)
  b = _write_run(tmp_path / "future", tc=80, ar=30, seed=2)
  out = tmp_path / "compare"
  assert launcher.main([f"--runs={a},{b}", f"--out={out}"]) == 0
  assert "climatology: wrote" in capsys.readouterr().out
  summary = pd.read_csv(out / "summary.csv").set_index("class")
  tc, ar = summary.loc["TC"], summary.loc["AR"]
  assert 1.5 <= tc["ratio"] <= 2.5 and tc["p_value"] < 0.01, tc
  assert tc["test_period"] == "pentad" and tc["periods_historical"] == 12
  assert 0.6 <= ar["ratio"] <= 1.6 and ar["p_value"] > 0.05, ar
  # Every storm lasts 3-6 days: one track each (those cut by the run's end too, if >= 2 days).
  assert 35 <= tc["tracks_historical"] <= 40 and 70 <= tc["tracks_future"] <= 80
  assert 2.0 <= tc["mean_lifetime_days_historical"] <= 6.0
  assert summary.loc["TD", "count_historical"] == 0
  assert "| TC |" in (out / "summary.md").read_text()
  for name in ("counts_per_month.png", "latitude.png", "map_TC.png", "map_AR.png"):
    assert (out / name).stat().st_size > 10_000, name
  with xr.open_dataset(out / "frequency.nc") as freq:
    assert freq["frequency"].dims == ("run", "event_class", "lat", "lon")
    assert list(freq["run"].values) == ["historical", "future"]
    total = freq["frequency"].sel(event_class="TC").sum(("lat", "lon")).values
    assert 1.5 <= total[1] / total[0] <= 2.5
    diff = freq["difference"].sel(event_class="TC").values
    np.testing.assert_allclose(
      diff, freq["frequency"].values[1, TC] - freq["frequency"].values[0, TC]
    )
    assert (
      np.abs(freq["frequency"].sel(event_class="TC", lat=slice(40, 90))).max() == 0
    )  # tropics only
  monthly = pd.read_csv(out / "counts_monthly.csv")
  assert list(monthly["period"][monthly["run"] == "future"]) == ["2000-01", "2000-02", "2000-03"]
  assert monthly["TC"].sum() == summary.loc["TC", ["count_historical", "count_future"]].sum()
  lat = pd.read_csv(out / "latitude.csv")
  tc_lat = lat[(lat["class"] == "TC") & (lat["run"] == "historical")]
  assert tc_lat["events_per_year"][tc_lat["lat_lo"] < 0].sum() == 0  # northern hemisphere only


def test_one_run_and_tracks_from_tracks_nc(tmp_path):
  run = _write_run(tmp_path / "run", tc=10, ar=5, days=20, calendar="360_day")
  summary, paths = climatology.compare_runs([str(run)], str(tmp_path / "out"))
  assert "ratio" not in summary and summary.set_index("class").loc["TC", "tracks_run"] >= 8
  assert {"map_TC.png", "frequency.nc", "summary.md"} <= set(paths)
  dets = events.read_detections(run)
  # With a tracks.nc (as launch/predict.py writes), its tracks are the ones counted.
  ids = np.where(dets.class_id == TC, 0, -1)
  events.write_tracks(run, dets.columns(), ids, times=dets.times, time_units=dets.time_units,
                      calendar=dets.calendar, lats=dets.lats, lons=dets.lons)  # fmt: skip
  summary, _ = climatology.compare_runs([str(run)], str(tmp_path / "out"))
  assert summary.set_index("class").loc["TC", "tracks_run"] == 1


def test_period_tables_follow_the_calendar(tmp_path):
  # 90 days from 1 January: Jan-Mar exactly on a 360-day calendar, into 1 April on noleap.
  for calendar, months in (("360_day", [30, 30, 30]), ("noleap", [31, 28, 31])):
    run = _write_run(tmp_path / calendar, tc=3, ar=0, days=90, calendar=calendar)
    dets = events.read_detections(run)
    table = climatology.period_table(dets, "month")
    assert list(table["snapshots"][:3]) == [4 * m for m in months], calendar
    np.testing.assert_allclose(table["coverage"][:3], 1.0)
    assert table["TC"].sum() == np.sum(dets.class_id == TC)
    assert climatology.run_years(dets) == pytest.approx(90 / climatology.days_per_year(calendar))
  assert climatology.choose_period([dets], min_periods=3) == "month"
  assert climatology.choose_period([dets], min_periods=5) == "pentad"


def test_permutation_test():
  assert climatology.permutation_test([1, 2, 3], [1, 2, 3]) == 1.0
  # Fully separated 6 vs 6: exactly the 2 extreme splits of C(12, 6) = 924.
  p = climatology.permutation_test(np.arange(6), np.arange(6) + 10)
  assert p == pytest.approx(2 / 924)
  rng = np.random.default_rng(0)
  p = climatology.permutation_test(rng.normal(0, 1, 40), rng.normal(1, 1, 40))  # sampled
  assert 0 < p < 0.01


def test_boxes_cover_the_cells_whose_centres_they_hold():
  dets = events.Detections(
    snapshot=np.zeros(3, np.int64), class_id=np.array([1, 1, 3]), score=np.ones(3),
    lat=np.array([10.0, -40.0, 0.3]), lon=np.array([0.0, 100.0, 200.1]),
    lat_min=np.array([5.5, -40.2, 0.2]), lat_max=np.array([14.5, -40.1, 0.4]),
    lon_min=np.array([355.5, 100.0, 200.0]), lon_max=np.array([364.5, 100.2, 200.2]),
    times=np.zeros(1), time_units=UNITS, calendar="noleap", lats=np.arange(-90.0, 91.0, 1.0),
    lons=np.arange(0.0, 360.0, 1.0), class_names=("TD", "TC", "ETC", "AR"), attrs={},
  )  # fmt: skip
  counts = climatology.box_cell_counts(dets, 1)
  rows = dets.lats.searchsorted([6.0, 14.0])
  box = counts[rows[0] : rows[1] + 1]
  # Across the seam: lon 356..359 and 0..4, lat 6..14.
  assert box[:, [356, 359, 0, 4]].min() == 1 and box[:, [355, 5]].max() == 0
  assert counts.sum() == 9 * 9 + 1  # plus the tiny box: the cell holding its centre
  assert counts[dets.lats.searchsorted(-40.0), 100] == 1
  ar = climatology.box_cell_counts(dets, 3)
  assert ar.sum() == 1 and ar[90, 200] == 1


def test_the_launcher_says_what_is_wrong_in_one_line(tmp_path, capsys):
  with pytest.raises(SystemExit) as done:
    launcher.main(["--help"])
  assert done.value.code == 0 and "--runs" in capsys.readouterr().out
  assert launcher.main([f"--runs={tmp_path / 'nope'}", f"--out={tmp_path / 'out'}"]) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith("climatology: ") and "nope" in err and "\n" not in err
  fields = tmp_path / "fields.nc"
  xr.Dataset({"PSL": (("lat",), np.zeros(3))}).to_netcdf(fields)
  assert launcher.main([f"--runs={fields}", f"--out={tmp_path / 'out'}"]) == 2
  assert "not a climjax detections file" in capsys.readouterr().err
  assert launcher.main([f"--runs={fields},{fields},{fields}", f"--out={tmp_path}"]) == 2
