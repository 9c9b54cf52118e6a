"""Tracks: detections linked across snapshots per class, and the tracks.nc / tracks.csv they leave."""

import warnings

import cftime
import netCDF4
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from climjax.data import heuristics
from climjax.data.heuristics.sphere import destination, great_circle_km
from climjax.evaluation import events, tracking

UNITS = "days since 2000-01-01 00:00:00"
TC, ETC, AR = 1, 2, 3
TIMES = np.arange(40) * 0.25  # 10 days, 6-hourly


def _storm(lat0, lon0, snapshots, *, km_per_day=500.0, bearing=290.0, class_id=TC):
  """Rows of a storm moving `km_per_day` along `bearing` from (lat0, lon0) at snapshots."""
  snapshots = np.asarray(snapshots)
  steps_km = km_per_day * (TIMES[snapshots] - TIMES[snapshots[0]])
  lat, lon = destination(lat0, lon0, bearing, steps_km / heuristics.KM_PER_DEG)
  return {"snapshot": snapshots, "class_id": np.full(len(snapshots), class_id), "lat": lat,
          "lon": lon}  # fmt: skip


def _table(*storms):
  out = {k: np.concatenate([s[k] for s in storms]) for k in storms[0]}
  n = len(out["snapshot"])
  out["score"] = np.linspace(0.5, 0.9, n)
  out["lat_min"], out["lat_max"] = out["lat"] - 2, out["lat"] + 2
  out["lon_min"], out["lon_max"] = out["lon"] - 2, out["lon"] + 2
  return out


def _link(dets, **kwargs):
  return tracking.link_tracks(dets, times=TIMES, time_units=UNITS, **kwargs)


def test_a_storm_at_500_km_per_day_is_one_track():
  dets = _table(_storm(15.0, 140.0, range(12)))
  assert list(_link(dets)) == [0] * 12


def test_a_3000_km_jump_makes_two_tracks():
  first = _storm(15.0, 140.0, range(10))
  lat, lon = destination(first["lat"][-1], first["lon"][-1], 270.0, 3000 / heuristics.KM_PER_DEG)
  second = _storm(float(lat), float(lon), range(10, 20))
  ids = _link(_table(first, second))
  assert list(ids) == [0] * 10 + [1] * 10


def test_a_one_snapshot_gap_is_bridged_only_when_allowed():
  dets = _table(_storm(15.0, 140.0, [*range(10), *range(11, 20)]))
  assert set(_link(dets, max_gap=1)) == {0}
  assert list(_link(dets, max_gap=0)) == [0] * 10 + [1] * 9
  # A gap longer than max_gap ends the track.
  dets = _table(_storm(15.0, 140.0, [*range(10), *range(12, 22)]))  # 10 and 11 missed
  assert len(set(_link(dets, max_gap=2))) == 1 and len(set(_link(dets, max_gap=1))) == 2


def test_classes_never_mix():
  # A TC and an ETC at the same places and times: two tracks, one per class.
  tc = _storm(30.0, 300.0, range(12))
  etc = _storm(30.0, 300.0, range(12), class_id=ETC)
  ids = _link(_table(tc, etc))
  assert len(set(ids[:12])) == 1 and len(set(ids[12:])) == 1 and ids[0] != ids[12]


def test_short_tracks_and_blips_are_dropped_by_the_minimum_lifetime():
  storm = _storm(15.0, 140.0, range(12))  # 3 days
  short_tc = _storm(-15.0, 60.0, range(4))  # 1 day: below the TC minimum of 2
  short_etc = _storm(50.0, 200.0, range(4), class_id=ETC)  # 1 day: enough for an ETC
  blip = _storm(40.0, 20.0, [5])
  ids = _link(_table(storm, short_tc, short_etc, blip))
  assert set(ids[:12]) == {0} and set(ids[12:16]) == {-1}
  assert set(ids[16:20]) == {1} and ids[20] == -1
  # 8 six-hourly snapshots are 2 days: the TC minimum exactly, as in TECA.
  assert set(_link(_table(_storm(15.0, 140.0, range(8))))) == {0}
  assert set(_link(_table(_storm(15.0, 140.0, range(7))))) == {-1}


def test_tracks_cross_the_0_360_seam():
  storm = _storm(20.0, 357.0, range(12), bearing=90.0, km_per_day=800.0)
  assert storm["lon"].min() < 5 and storm["lon"].max() > 355  # it does cross
  assert set(_link(_table(storm))) == {0}


def test_two_storms_side_by_side_keep_their_own_tracks():
  a = _storm(15.0, 140.0, range(12))
  b = _storm(17.0, 143.0, range(12))  # ~400 km away: within one step's reach of the other
  ids = _link(_table(a, b))
  assert len(set(ids[:12])) == 1 and len(set(ids[12:])) == 1 and ids[0] != ids[12]


def test_speed_limits_per_class_and_custom_rules():
  fast = _storm(45.0, 300.0, range(12), bearing=80.0, km_per_day=2000.0)
  assert set(_link(_table(fast))) == {-1}  # too fast for a TC: 12 one-snapshot blips
  fast["class_id"][:] = ETC
  assert set(_link(_table(fast))) == {0}  # an ETC may move 2,700 km/day
  rules = {"ETC": tracking.TrackRule(max_speed_km_per_day=1000.0, min_duration_days=0.0)}
  assert len(set(_link(_table(fast), rules=rules))) == 12
  # A class without a rule is not tracked.
  assert set(_link(_table(_storm(15.0, 140.0, range(12))), rules=rules)) == {-1}


def test_time_units_in_hours_give_the_same_tracks():
  dets = _table(_storm(15.0, 140.0, range(12)), _storm(-20.0, 70.0, range(3, 15)))
  hours = tracking.link_tracks(dets, times=TIMES * 24, time_units="hours since 2000-01-01")
  np.testing.assert_array_equal(hours, _link(dets))
  with pytest.raises(ValueError, match="time units"):
    tracking.link_tracks(dets, times=TIMES, time_units="months since 2000-01-01")


def test_write_tracks_is_a_contiguous_ragged_trajectory_file(tmp_path):
  dets = _table(_storm(15.0, 140.0, range(12)), _storm(-20.0, 70.0, range(3, 15)),
                _storm(40.0, 20.0, [5]))  # fmt: skip
  ids = _link(dets)
  lats, lons = np.linspace(-90, 90, 91), np.arange(0, 360, 2.0)
  nc_path, csv_path = events.write_tracks(
    tmp_path, dets, ids, times=TIMES, time_units=UNITS, calendar="noleap", lats=lats, lons=lons,
    attrs={"command": "test"},
  )  # fmt: skip
  with netCDF4.Dataset(nc_path) as nc:
    assert nc.featureType == "trajectory" and nc.Conventions == "CF-1.8"
    assert nc["trajectory_id"].cf_role == "trajectory_id"
    assert nc["rowSize"].sample_dimension == "obs"
    assert list(nc["rowSize"][:]) == [12, 12] and nc.dimensions["obs"].size == 24
    assert nc["time"].calendar == "noleap"
    np.testing.assert_allclose(nc["lifetime"][:], [3.0, 3.0])
  tracks = events.read_tracks(tmp_path)
  np.testing.assert_array_equal(tracks.track_id, [0] * 12 + [1] * 12)
  np.testing.assert_array_equal(tracks.class_id, [TC, TC])
  np.testing.assert_allclose(tracks.detections.lat[:12], dets["lat"][:12])
  table = pd.read_csv(csv_path)
  assert list(table.columns[:5]) == ["track_id", "time", "snapshot", "class_id", "class"]
  assert len(table) == 24 and set(table["class"]) == {"TC"}
  assert table["time"][0] == "2000-01-01T00:00:00"
  assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]


def _tc_dataset(num_times: int, track):
  """A regional 0.5-degree PSL / 850 hPa wind dataset with one moving warm-core-less low."""
  lat, lon = np.arange(0.0, 40.5, 0.5), np.arange(110.0, 190.5, 0.5)
  psl = np.full((num_times, len(lat), len(lon)), 101_300.0, np.float32)
  u, v = np.zeros_like(psl), np.zeros_like(psl)
  la, lo = np.meshgrid(lat, lon, indexing="ij")
  for t, (lat0, lon0) in enumerate(track):
    north = np.deg2rad(la - lat0) * heuristics.EARTH_RADIUS_KM
    east = np.deg2rad(lo - lon0) * heuristics.EARTH_RADIUS_KM * np.cos(np.deg2rad(lat0))
    r = np.maximum(np.hypot(north, east), 1e-3)
    psl[t] -= 2500 * (1 - np.exp(-((60.0 / r) ** 1.3)))
    speed = 30 * (r / 120) * np.exp(0.5 * (1 - (r / 120) ** 2))
    u[t], v[t] = -speed * north / r, speed * east / r
  time = [cftime.DatetimeNoLeap(2000, 1, 1) + pd.Timedelta(hours=6 * i) for i in range(num_times)]
  dims = ("time", "lat", "lon")
  return xr.Dataset({"PSL": (dims, psl), "U850": (dims, u), "V850": (dims, v)},
                    coords={"time": time, "lat": lat, "lon": lon})  # fmt: skip


def test_the_same_tracker_runs_on_heuristic_candidates():
  track = _storm(18.0, 160.0, range(12))
  ds = _tc_dataset(12, list(zip(track["lat"], track["lon"], strict=True)))
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # warm core and thickness skipped: no T or Z here
    candidates = heuristics.detect_tropical_cyclones(ds)
  rivers = pd.DataFrame({"time_index": [2, 3], "lat": [40.0, 41.0], "lon": [230.0, 232.0],
                         "lat_min": [30.0, 31.0], "lat_max": [50.0, 51.0],
                         "lon_min": [355.0, 357.0], "lon_max": [365.0, 367.0]})  # fmt: skip
  lows = rivers.assign(time_index=[0, 1])  # an ETC heuristic's frame has the same columns
  dets = tracking.heuristic_detections(candidates, rivers, lows, snapshot_offset=4)
  assert set(dets) == set(events.COLUMNS)
  is_tc = dets["class_id"] == TC
  assert is_tc.sum() == 12 and (dets["class_id"] == AR).sum() == 2
  assert list(dets["snapshot"][dets["class_id"] == ETC]) == [4, 5]
  np.testing.assert_array_equal(dets["snapshot"][is_tc], np.arange(12) + 4)
  assert np.all(great_circle_km(dets["lat"][is_tc], dets["lon"][is_tc], track["lat"],
                                track["lon"]) < 60)  # fmt: skip
  times = np.arange(20) * 0.25
  ids = tracking.link_tracks(dets, times=times, time_units=UNITS)
  assert set(ids[is_tc]) == {0} and set(ids[~is_tc]) == {-1}  # the 6-hour AR, ETC: too short
  empty = tracking.heuristic_detections(candidates.iloc[:0], None)
  assert all(len(v) == 0 for v in empty.values()) and set(empty) == set(events.COLUMNS)
