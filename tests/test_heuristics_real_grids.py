"""The heuristics on real reanalysis grids: uneven time steps, coarse grids, coasts near a plume.

Issue #20: ERA5 extracts 7-8 h apart gave no TC track; at 2.5 deg tropical storms
fell below the vorticity threshold and rivers stopping a cell or two offshore
failed the landfall test.
"""

import warnings

import cftime
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import ndimage

from climjax.data import heuristics
from climjax.data.synthetic.vortices import cyclone_anomalies, holland_max_wind

A_KM = heuristics.EARTH_RADIUS_KM
START = cftime.DatetimeNoLeap(2000, 8, 1)


def _hours_to_times(hours) -> list:
  return [START + pd.Timedelta(hours=float(h)) for h in hours]


def _storm_candidates(hours, *, wind=25.0, speed_km_per_day=500.0) -> pd.DataFrame:
  """One storm moving west-northwest at `speed_km_per_day`, a candidate at each of `hours`."""
  days = np.asarray(hours, np.float64) / 24
  lat0, lon0 = 15.0, 140.0
  lat, lon = heuristics.destination(lat0, lon0, 290.0, days * speed_km_per_day / A_KM * 180 / np.pi)
  return pd.DataFrame({"time": _hours_to_times(hours), "lat": lat, "lon": lon, "wind": wind})


def test_irregular_steps_make_one_track_and_a_warning():
  hours = np.cumsum([0] + [6, 7, 8, 9, 6, 9, 7, 8, 6, 9])  # 6-9 h apart, 3.1 days
  with pytest.warns(UserWarning, match=r"irregular time steps \(6 to 9 h"):
    tracks = heuristics.track_cyclones(_storm_candidates(hours))
  assert tracks["track_id"].nunique() == 1 and len(tracks) == len(hours)
  assert tracks.attrs["tracking"]["max_gap_hours"] == pytest.approx(1.5 * 7.5)
  # The same with numpy datetimes (a reanalysis read by xarray).
  candidates = _storm_candidates(hours)
  candidates["time"] = np.datetime64("2000-08-01T00") + hours.astype("timedelta64[h]")
  with pytest.warns(UserWarning, match="irregular"):
    assert len(heuristics.track_cyclones(candidates)) == len(hours)


def test_regular_steps_track_without_a_warning():
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    tracks = heuristics.track_cyclones(_storm_candidates(np.arange(12) * 6.0))
  assert len(tracks) == 12 and tracks.attrs["tracking"]["time_step_hours"] == pytest.approx(6)


def test_duration_follows_the_elapsed_time():
  # Each point stands for half the gaps beside it: 7 points 6 and 9 h apart stand for the
  # 45 h elapsed plus half a gap at each end, 52.5 h (counting 7 steps of the smallest,
  # 6 h, gave 1.75 days).
  with pytest.warns(UserWarning, match="irregular"):
    kept = heuristics.track_cyclones(_storm_candidates([0, 6, 15, 21, 30, 36, 45]))
  assert len(kept) == 7
  # 6 points (39 h elapsed) stand for 46.5 h: under 2 days.
  hours = [0, 6, 15, 21, 30, 39]
  with pytest.warns(UserWarning, match="irregular"):
    assert heuristics.track_cyclones(_storm_candidates(hours)).empty
  with pytest.warns(UserWarning, match="irregular"):
    assert len(heuristics.track_cyclones(_storm_candidates(hours), min_duration_days=1.9)) == 6


def test_a_missing_snapshot_ends_a_track_unless_the_gap_is_allowed():
  hours = np.array([0, 6, 12, 18, 24, 36, 42, 48, 54, 60, 66, 72])  # 30 h is missing
  with pytest.warns(UserWarning, match=r"1 longer gap"):
    assert heuristics.track_cyclones(_storm_candidates(hours), min_duration_days=1.0)[
      "track_id"
    ].nunique() == 2  # fmt: skip
  with pytest.warns(UserWarning, match="irregular"):
    joined = heuristics.track_cyclones(_storm_candidates(hours), max_gap_hours=12)
  assert joined["track_id"].nunique() == 1 and len(joined) == len(hours)
  # The reach grows with the elapsed time: at 550 km/day the storm's 125 km in 6 h and
  # 250 km in 12 h are both in reach; at 450 km/day not even 6 h steps join.
  for speed, count in ((550.0, 1), (450.0, 0)):
    with pytest.warns(UserWarning, match="irregular"):
      tracks = heuristics.track_cyclones(
        _storm_candidates(hours), max_gap_hours=12, max_speed_km_per_day=speed
      )
    assert tracks["track_id"].nunique() == count
  # The old keyword still sets the nominal step.
  with pytest.warns(UserWarning, match="irregular"):
    stepped = heuristics.track_cyclones(_storm_candidates(hours), time_step_days=0.5)
  assert stepped["track_id"].nunique() == 1


# Holland vortices at tropical-storm strength, 995 hPa or so in 1010 hPa surroundings and as
# broad as reanalyses hold them: (lat, lon, dp Pa, rmax km, b), centres between grid points.
STORMS = [(14.3, 140.6, 1600.0, 120.0, 1.3), (21.7, 250.9, 1500.0, 100.0, 1.5),
          (-16.2, 70.4, 1800.0, 140.0, 1.2), (11.1, 320.2, 1500.0, 110.0, 1.4)]  # fmt: skip


def _grid(spacing: float) -> tuple[np.ndarray, np.ndarray]:
  return np.arange(-90, 90 + spacing / 2, spacing), np.arange(0, 360, spacing)


def _tc_fields(lat, lon, num_times: int, storms, *, seed: int = 0) -> dict[str, np.ndarray]:
  """Quiet fields with smooth noise, and each storm of `storms` planted at every time."""
  rng = np.random.default_rng(seed)
  shape = (num_times, len(lat), len(lon))

  def noise(std: float) -> np.ndarray:
    n = ndimage.gaussian_filter(rng.standard_normal(shape), (0, 2, 2), mode="wrap")
    return std * n / n.std()

  fields = {
    "PSL": 101_000 + noise(100), "U850": noise(2.0), "V850": noise(2.0), "UBOT": noise(1.5),
    "VBOT": noise(1.5), "T500": 265 + noise(0.3), "T200": 220 + noise(0.3),
    "Z1000": 110 + noise(10), "Z200": 11_800 + noise(10),
  }  # fmt: skip
  la, lo = np.meshgrid(lat, lon, indexing="ij")
  for t in range(num_times):
    for lat0, lon0, dp, rmax, b in storms(t) if callable(storms) else storms:
      north = np.deg2rad(la - lat0) * A_KM
      east = np.deg2rad((lo - lon0 + 180) % 360 - 180) * A_KM * np.cos(np.deg2rad(lat0))
      params = {
        "lat": np.asarray(lat0), "dp": np.asarray(dp), "rmax": np.asarray(rmax),
        "b": np.asarray(b), "warm200": np.asarray(2.0), "warm500": np.asarray(1.2),
        "warm_radius": np.asarray(250.0), "moist": np.asarray(15.0),
        "moist_radius": np.asarray(250.0), "band_phase": np.asarray(0.0),
        "motion_u": np.asarray(-3.0), "motion_v": np.asarray(1.0),
      }  # fmt: skip
      anomalies = cyclone_anomalies(north, east, la, params)
      for name in ("PSL", "U850", "V850", "UBOT", "VBOT", "T500", "T200"):
        fields[name][t] += anomalies[name]
      core = np.exp(-0.5 * (np.hypot(north, east) / 250.0) ** 2)
      fields["Z200"][t] += 60 * core
      fields["Z1000"][t] -= dp / 12 * core
  return {k: v.astype(np.float32) for k, v in fields.items()}


def _dataset(fields, lat, lon, times) -> xr.Dataset:
  return xr.Dataset(
    {k: (("time", "lat", "lon"), v) for k, v in fields.items()},
    coords={"time": times, "lat": lat, "lon": lon},
  )


def _found(df: pd.DataFrame, lat0: float, lon0: float, within_deg: float) -> bool:
  dist = heuristics.great_circle_km(df["lat"].to_numpy(), df["lon"].to_numpy(), lat0, lon0)
  return bool((dist <= within_deg * heuristics.KM_PER_DEG).any())


def test_tropical_storms_on_a_2_5_degree_grid_are_found_with_the_defaults():
  for _, _, dp, _, b in STORMS:  # tropical-storm strength: 17-25 m/s at the lowest level
    assert 17 < 0.8 * holland_max_wind(dp, b) < 26
  lat, lon = _grid(2.5)
  ds = _dataset(_tc_fields(lat, lon, 2, STORMS), lat, lon, _hours_to_times([0, 6]))
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    df = heuristics.detect_tropical_cyclones(ds)
  used = df.attrs["thresholds"]
  assert used["grid_spacing_deg"] == 2.5 and used["vorticity_scale"] == pytest.approx(0.25)
  assert used["vorticity_threshold"] == pytest.approx(4e-5)
  assert used["psl_rise_scale"] == 0.5 and used["psl_rise_pa"] == 200
  assert used["core_radius_deg"] == pytest.approx(2.5 * np.sqrt(2))  # a cell's diagonal
  assert used["psl_radius_deg"] == pytest.approx(5 * np.sqrt(2))  # two
  assert df.attrs["time_steps_hours"] == {"min": 6.0, "median": 6.0, "max": 6.0}
  for t in (0, 1):
    at = df[df["time_index"] == t]
    assert len(at) == len(STORMS), at
    for lat0, lon0, *_ in STORMS:
      assert _found(at, lat0, lon0, 2.5)  # within a cell
  # Below the unscaled threshold: what the detector found at 2.5 deg before.
  assert (df["vorticity"] < 1.6e-4).all()
  assert heuristics.detect_tropical_cyclones(ds, reference_spacing_deg=None).empty


def test_fine_grids_keep_the_teca_thresholds():
  lat, lon = _grid(1.0)
  ds = _dataset(_tc_fields(lat, lon, 1, STORMS[:1]), lat, lon, _hours_to_times([0]))
  df = heuristics.detect_tropical_cyclones(ds)
  used = df.attrs["thresholds"]
  assert used["vorticity_scale"] == 1.0 and used["vorticity_threshold"] == 1.6e-4
  assert used["psl_rise_pa"] == 400 and used["psl_radius_deg"] == 5.0
  assert used["core_radius_deg"] == 2.0 and used["wind_radius_deg"] == 2.0
  assert df.attrs["time_steps_hours"] is None  # one time
  assert len(df) == 1 and _found(df, *STORMS[0][:2], 1.0)


def test_quiet_coarse_fields_hold_no_candidates():
  lat, lon = _grid(2.5)
  ds = _dataset(_tc_fields(lat, lon, 4, [], seed=3), lat, lon, _hours_to_times(6 * np.arange(4)))
  assert heuristics.detect_tropical_cyclones(ds).empty


def test_era5_like_steps_on_a_coarse_grid_give_one_tc_track():
  # A hurricane like the East-Pacific one of the issue (990 hPa, ~30 m/s), sampled 7 and
  # 8 h apart on a 2.5 deg grid for 3 days: detected at every time, tracked as one storm.
  hours = np.cumsum([0, 7, 8, 7, 8, 7, 8, 7, 8, 7])
  lat, lon = _grid(2.5)

  def storm(t):
    day = hours[t] / 24
    return [(15.0 + 1.2 * day, 250.0 - 3.5 * day, 2500.0, 50.0, 1.5)]

  ds = _dataset(_tc_fields(lat, lon, len(hours), storm), lat, lon, _hours_to_times(hours))
  candidates = heuristics.detect_tropical_cyclones(ds)
  assert candidates["time_index"].nunique() == len(hours)
  with pytest.warns(UserWarning, match=r"irregular time steps \(7 to 8 h"):
    tracks = heuristics.track_cyclones(candidates)
  assert tracks["track_id"].nunique() == 1 and len(tracks) == len(hours)
  # The labels take the TC threshold scaled as the detector scales its own.
  with pytest.warns(UserWarning, match="irregular"):
    labels = heuristics.label_events(ds, classes=("TC",))
  assert len(labels) == len(hours) and labels["track_id"].nunique() == 1


def _plant_river(tmq, lat, lon, start, end, *, width_km=300.0, peak=40.0):
  """A filament of TMQ along the line in (lat, lon) from `start` to `end`."""
  la, lo = np.meshgrid(lat, lon, indexing="ij")
  distance = np.full(la.shape, np.inf)
  path_lat, path_lon = np.linspace(start[0], end[0], 80), np.linspace(start[1], end[1], 80)
  for p_lat, p_lon in zip(path_lat, path_lon, strict=True):
    distance = np.minimum(distance, heuristics.great_circle_km(la, lo, p_lat, p_lon))
  tmq[:] = np.maximum(tmq, peak * np.exp(-0.5 * (distance / width_km) ** 2))


def _river_ds(spacing: float, offshore_km: float):
  """A river ending `offshore_km` (its TMQ >= 20 edge) west of a coast at 235 E, 30-60 N."""
  lat, lon = _grid(spacing)
  tmq = np.broadcast_to(5 + 30 * np.exp(-((lat[:, None] / 12) ** 2)), (len(lat), len(lon)))
  tmq = tmq.astype(np.float32).copy()
  # Where the plume's 20 kg/m2 edge lies beyond its axis: 40 exp(-d^2 / 2w^2) = 20.
  edge_km = 300.0 * np.sqrt(2 * np.log(2))
  end_lon = 235.0 - (offshore_km + edge_km) / (heuristics.KM_PER_DEG * np.cos(np.deg2rad(42)))
  _plant_river(tmq, lat, lon, (24.0, end_lon - 40.0), (42.0, end_lon))
  # Land fraction of each cell east of the coast (235 E), between 30 and 60 N.
  east = np.clip((lon + spacing / 2 - 235.0) / spacing, 0, 1) * (lon < 300)
  land = np.where((lat > 30) & (lat < 60), 1.0, 0.0)[:, None] * east[None]
  times = _hours_to_times([0])
  return _dataset({"TMQ": tmq[None]}, lat, lon, times), land.astype(np.float32)


@pytest.mark.parametrize("spacing", [0.5, 1.0, 2.5])
def test_a_river_ending_near_the_coast_reaches_land_on_any_grid(spacing):
  near, land = _river_ds(spacing, 250.0)
  rivers = heuristics.detect_atmospheric_rivers(near, land_fraction=land)
  assert len(rivers) == 1 and rivers["landfall"].iloc[0]
  far, land = _river_ds(spacing, 700.0)
  assert heuristics.detect_atmospheric_rivers(far, land_fraction=land).empty
  everywhere = heuristics.detect_atmospheric_rivers(far, land_fraction=land, require_landfall=False)
  assert len(everywhere) == 1 and not everywhere["landfall"].iloc[0]
  # The allowance is a parameter, in km.
  assert len(heuristics.detect_atmospheric_rivers(far, land_fraction=land, landfall_km=900)) == 1


def test_a_river_a_cell_or_two_off_a_coarse_coast_was_rejected_by_the_pixel_rule():
  # The old test (a pixel on land or beside it) is about landfall_km=0: at 2.5 deg the
  # plume ending 250 km offshore stops two cells short of the land, one short of the cells
  # beside it.
  near, land = _river_ds(2.5, 250.0)
  river = heuristics.detect_atmospheric_rivers(near, land_fraction=land).iloc[0]
  assert river["lon_max"] == 230.0  # land begins at 235
  assert heuristics.detect_atmospheric_rivers(near, land_fraction=land, landfall_km=0).empty
