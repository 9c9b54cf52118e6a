"""TECA-style heuristics find idealised cyclones and rivers planted in synthetic fields."""

import warnings

import cftime
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import ndimage

from climjax.data import heuristics
from climjax.data.errors import DataError

A_KM = heuristics.EARTH_RADIUS_KM


def _grid(dlat: float, dlon: float) -> tuple[np.ndarray, np.ndarray]:
  # Pole to pole like CAM5's finite-volume grid.
  return np.linspace(-90, 90, int(round(180 / dlat)) + 1), np.arange(0, 360, dlon)


def _background(lat, lon, num_times: int, seed: int = 0) -> dict[str, np.ndarray]:
  """Quiet fields with smooth noise (lengths ~3 pixels), no events."""
  rng = np.random.default_rng(seed)
  shape = (num_times, len(lat), len(lon))

  def noise(std: float) -> np.ndarray:
    n = ndimage.gaussian_filter(rng.standard_normal(shape), (0, 3, 3), mode="wrap")
    return std * n / n.std()

  fields = {
    "PSL": 101_300 + noise(150),
    "U850": noise(2.0),
    "V850": noise(2.0),
    "UBOT": noise(1.5),
    "VBOT": noise(1.5),
    "T500": 265 + noise(0.3),
    "T200": 220 + noise(0.3),
    "Z1000": 110 + noise(10),
    "Z200": 11_800 + noise(10),
    "TMQ": 5 + 30 * np.exp(-((lat[None, :, None] / 12) ** 2)) + noise(1.0),
  }
  return {k: np.broadcast_to(v, shape).astype(np.float32).copy() for k, v in fields.items()}


def _local_km(lat, lon, lat0, lon0) -> tuple[np.ndarray, np.ndarray]:
  la, lo = np.meshgrid(lat, lon, indexing="ij")
  north = np.deg2rad(la - lat0) * A_KM
  east = np.deg2rad((lo - lon0 + 180) % 360 - 180) * A_KM * np.cos(np.deg2rad(lat0))
  return north, east


def _plant_cyclone(fields, t, lat, lon, lat0, lon0, *, dp=2500.0, vmax=30.0, rmax=120.0):
  """A warm-core low: Holland PSL deficit, cyclonic winds, warm and thick core."""
  north, east = _local_km(lat, lon, lat0, lon0)
  r = np.hypot(north, east)
  core = np.exp(-0.5 * (r / 250.0) ** 2)
  hemi = 1.0 if lat0 >= 0 else -1.0  # counter-clockwise in the NH, clockwise in the SH
  speed = vmax * (r / rmax) * np.exp(0.5 * (1 - (r / rmax) ** 2))
  inv_r = 1 / np.maximum(r, 1e-3)
  for u, v, scale in (("U850", "V850", 0.9), ("UBOT", "VBOT", 0.8)):
    fields[u][t] += scale * speed * -north * inv_r * hemi
    fields[v][t] += scale * speed * east * inv_r * hemi
  # Holland (1980) pressure profile: a sharp minimum, as in a model's cyclones.
  fields["PSL"][t] -= dp * (1 - np.exp(-((60.0 / np.maximum(r, 1.0)) ** 1.3)))
  fields["T500"][t] += 1.5 * core
  fields["T200"][t] += 2.0 * core
  fields["Z200"][t] += 60 * core
  fields["Z1000"][t] -= dp / 12 * core
  fields["TMQ"][t] += 15 * core


def _dataset(fields, lat, lon) -> xr.Dataset:
  n = next(iter(fields.values())).shape[0]
  time = [cftime.DatetimeNoLeap(2000, 1, 1) + pd.Timedelta(hours=6 * i) for i in range(n)]
  return xr.Dataset(
    {k: (("time", "lat", "lon"), v) for k, v in fields.items()},
    coords={"time": time, "lat": lat, "lon": lon},
  )


def test_relative_vorticity_of_solid_body_rotation():
  # u = w a cos(phi), v = 0 has vorticity 2 w sin(phi): only right with the metric terms.
  lat, lon = _grid(1.0, 1.0)
  omega = 1e-5
  u = np.broadcast_to(omega * A_KM * 1e3 * np.cos(np.deg2rad(lat))[:, None], (len(lat), len(lon)))
  zeta = heuristics.relative_vorticity(u, np.zeros_like(u), lat, lon)
  inner = np.abs(lat) < 85
  expected = 2 * omega * np.sin(np.deg2rad(lat))[:, None]
  np.testing.assert_allclose(zeta[inner], np.broadcast_to(expected, u.shape)[inner], rtol=1e-3)


def test_great_circle_helpers():
  assert heuristics.great_circle_km(0, 0, 0, 90) == pytest.approx(np.pi / 2 * A_KM)
  lat, lon = heuristics.destination(10.0, 359.0, 90.0, 2.0)
  assert heuristics.great_circle_km(10.0, 359.0, lat, lon) == pytest.approx(2 * np.pi / 180 * A_KM)
  assert 0 <= lon < 2  # across the seam, back into [0, 360)


# Storms in both hemispheres, one across the longitude seam, off grid points.
STORMS = [(15.2, 140.3), (-18.7, 60.1), (24.9, 359.8), (11.6, 250.2), (-12.3, 170.6)]


def test_tropical_cyclones_are_found_within_one_cell():
  lat, lon = _grid(0.5, 0.5)
  fields = _background(lat, lon, 3)
  for t in (0, 2):
    for k, (la, lo) in enumerate(STORMS):
      _plant_cyclone(fields, t, lat, lon, la + 0.5 * t, lo - 0.7 * t, dp=1500 + 500 * k)
  df = heuristics.detect_tropical_cyclones(_dataset(fields, lat, lon))
  assert df.attrs["skipped_criteria"] == []
  assert set(df.columns) >= {"time", "lat", "lon", "psl", "vorticity", "wind", "warm_core"}
  assert (df["time_index"] == 1).sum() == 0  # the storm-free step stays empty
  for t in (0, 2):
    found = df[df["time_index"] == t]
    assert len(found) == len(STORMS), found
    for la, lo in STORMS:
      la, lo = la + 0.5 * t, lo - 0.7 * t
      dist_lon = np.abs((found["lon"] - lo + 180) % 360 - 180)
      best = np.argmin(np.abs(found["lat"] - la) + dist_lon)
      assert abs(found["lat"].iloc[best] - la) <= 0.5 and dist_lon.iloc[best] <= 0.5
  assert (df["vorticity"] >= 1.6e-4).all() and (df["psl_rise"] >= 400).all()
  assert (df["warm_core"] >= 0.8).all() and (df["thickness"] >= 50).all()
  # Boxes surround the centre, in pixels and degrees.
  assert ((df["ymin"] < df["y"]) & (df["y"] < df["ymax"])).all()
  assert ((df["xmin"] < df["x"]) & (df["x"] < df["xmax"])).all()
  assert ((df["lat_min"] < df["lat"]) & (df["lat"] < df["lat_max"])).all()
  # The storm on the seam: its box continues past column 0 and past 360 deg.
  seam = df[(df["time_index"] == 0) & df["lat"].between(24, 26)].iloc[0]
  assert seam["xmin"] < len(lon) - 1 < seam["xmax"] and seam["xmin"] < seam["x"] < seam["xmax"]
  assert 350 < seam["lon_min"] < 360 < seam["lon_max"]


def test_cold_core_lows_and_weak_vortices_are_rejected():
  lat, lon = _grid(0.5, 0.5)
  fields = _background(lat, lon, 1)
  _plant_cyclone(fields, 0, lat, lon, 20.0, 100.0)
  # An extratropical-like cold-core low: same low and winds, colder core.
  _plant_cyclone(fields, 0, lat, lon, 45.0, 200.0)
  north, east = _local_km(lat, lon, 45.0, 200.0)
  cold = np.exp(-0.5 * (np.hypot(north, east) / 250.0) ** 2)
  fields["T500"][0] -= 4 * cold
  fields["T200"][0] -= 5 * cold
  # A weak low whose vorticity stays below the threshold.
  _plant_cyclone(fields, 0, lat, lon, -15.0, 300.0, vmax=4.0, rmax=300.0)
  ds = _dataset(fields, lat, lon)
  df = heuristics.detect_tropical_cyclones(ds)
  # As in TECA, the cold-core low is a candidate flagged as lacking a warm core...
  assert len(df) == 2
  warm = df[df["warm_core_ok"]]
  assert len(warm) == 1 and warm["thickness_ok"].all()
  assert abs(warm["lat"].iloc[0] - 20.0) <= 0.5 and abs(warm["lon"].iloc[0] - 100.0) <= 0.5
  cold = df[~df["warm_core_ok"]].iloc[0]
  assert abs(cold["lat"] - 45.0) <= 0.5 and cold["warm_core"] < 0.8
  # ... and dropped when a warm core is required.
  strict = heuristics.detect_tropical_cyclones(ds, require_warm_core=True)
  pd.testing.assert_frame_equal(strict.reset_index(drop=True), warm.reset_index(drop=True))


def test_missing_variables_skip_criteria_with_a_warning():
  lat, lon = _grid(1.0, 1.0)
  fields = _background(lat, lon, 1)
  _plant_cyclone(fields, 0, lat, lon, 20.0, 100.0)
  ds = _dataset(fields, lat, lon).drop_vars(["Z200", "Z1000", "UBOT", "VBOT"])
  with pytest.warns(UserWarning, match="thickness"):
    df = heuristics.detect_tropical_cyclones(ds)
  assert df.attrs["skipped_criteria"] == ["thickness (needs Z200, Z1000)"]
  assert len(df) == 1 and np.isnan(df["thickness"]).all()
  assert df["wind"].iloc[0] > 17  # from U850/V850 when UBOT/VBOT are missing
  with pytest.raises(DataError, match="variable PSL"):
    heuristics.detect_tropical_cyclones(ds.drop_vars("PSL"))


def _candidates(rows) -> pd.DataFrame:
  start = cftime.DatetimeNoLeap(2000, 1, 1)
  return pd.DataFrame(
    [
      {"time": start + pd.Timedelta(hours=6 * t), "lat": la, "lon": lo, "wind": w}
      for t, la, lo, w in rows
    ]  # fmt: skip
  )


def test_tracks_join_moving_storms_and_keep_long_strong_ones():
  rows = []
  for t in range(12):  # 3 days at 4 steps a day, moving ~300 km per step
    rows.append((t, 15 + 0.5 * t, 140 - 2.5 * t, 25.0))
    rows.append((t, -20.0, 60 + 0.3 * t, 30.0 if t < 7 else 10.0))  # strong for 1.75 days only
  for t in range(4, 8):
    rows.append((t, 30.0, 300.0, 40.0))  # strong but only a day long
  rows.append((5, 15 + 0.5 * 5, 140 - 2.5 * 5 + 40, 50.0))  # far from the storm: a new track
  tracks = heuristics.track_cyclones(_candidates(rows))
  assert tracks["track_id"].unique().tolist() == [0]
  assert len(tracks) == 12
  np.testing.assert_allclose(tracks["lat"], 15 + 0.5 * np.arange(12))
  # With a lower bar the weakening storm counts too; a slow speed limit breaks the track.
  assert tracks_count(_candidates(rows), min_duration_days=1.75) == 2
  assert tracks_count(_candidates(rows), max_speed_km_per_day=400) == 0


def tracks_count(candidates, **kwargs) -> int:
  return heuristics.track_cyclones(candidates, **kwargs)["track_id"].nunique()


def test_tracks_from_detected_candidates():
  lat, lon = _grid(1.0, 1.0)
  fields = _background(lat, lon, 9)
  for t in range(9):
    _plant_cyclone(fields, t, lat, lon, 15 + 0.4 * t, 140 - 1.0 * t, vmax=30.0)
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    candidates = heuristics.detect_tropical_cyclones(_dataset(fields, lat, lon))
  tracks = heuristics.track_cyclones(candidates)
  assert len(tracks) == 9 and tracks["track_id"].nunique() == 1
  assert (tracks["wind"] >= 17).all()


def _plant_river(fields, t, lat, lon, start, end, *, width_km=300.0, tmq=40.0):
  """A filament of TMQ along the path from `start` to `end` (lat, lon; lon may pass 360)."""
  rows = (lat > min(start[0], end[0]) - 15) & (lat < max(start[0], end[0]) + 15)
  la, lo = np.meshgrid(lat[rows], lon, indexing="ij")
  distance = np.full(la.shape, np.inf)
  for s in np.linspace(0, 1, 60):
    point = (start[0] + s * (end[0] - start[0]), start[1] + s * (end[1] - start[1]))
    distance = np.minimum(distance, heuristics.great_circle_km(la, lo, *point))
  band = tmq * np.exp(-0.5 * (distance / width_km) ** 2)
  fields["TMQ"][t, rows] = np.maximum(fields["TMQ"][t, rows], band)


def test_atmospheric_rivers_need_length_narrowness_and_land():
  lat, lon = _grid(0.5, 0.5)
  fields = _background(lat, lon, 1)
  land = np.zeros((len(lat), len(lon)), np.float32)
  land[(lat > 30) & (lat < 60), :][:, :] = 0
  land[np.ix_((lat > 30) & (lat < 60), (lon > 235) & (lon < 290))] = 1  # "North America"
  _plant_river(fields, 0, lat, lon, (22.0, 195.0), (42.0, 240.0))  # reaches the coast
  _plant_river(fields, 0, lat, lon, (-25.0, 150.0), (-45.0, 190.0))  # stays over the ocean
  _plant_river(fields, 0, lat, lon, (30.0, 20.0), (35.0, 30.0))  # too short
  _plant_river(fields, 0, lat, lon, (40.0, 60.0), (40.0, 90.0), width_km=900)  # too wide
  _plant_river(fields, 0, lat, lon, (28.0, 340.0), (45.0, 375.0))  # across the seam
  ds = _dataset(fields, lat, lon)

  rivers = heuristics.detect_atmospheric_rivers(ds, land_fraction=land)
  assert len(rivers) == 1
  river = rivers.iloc[0]
  assert river["landfall"] and 3500 < river["length_km"] < 6500 and river["width_km"] < 1250
  assert 20 < river["lat"] < 45 and 195 < river["lon"] < 240
  assert river["lat_min"] < 23 and river["lat_max"] > 41

  everywhere = heuristics.detect_atmospheric_rivers(ds, require_landfall=False, land_fraction=land)
  assert len(everywhere) == 3
  assert sorted(everywhere["landfall"].tolist()) == [False, False, True]
  seam = everywhere[everywhere["lat"].between(28, 45) & ~everywhere["landfall"]].iloc[0]
  assert seam["xmax"] > len(lon) - 1  # one region across 0 deg, its box continuing past it
  assert seam["lon_min"] > 330 and seam["lon_max"] > 360

  # The dataset's own land fraction serves when none is passed.
  with_land = ds.assign(LANDFRAC=(("lat", "lon"), land))
  assert len(heuristics.detect_atmospheric_rivers(with_land)) == 1


def test_atmospheric_river_modes_on_a_moist_latitude_and_along_the_tropics():
  # A plume of 23 kg/m2 at latitudes that hold 15 all round: only 8 above the zonal
  # median, which the anomaly mode misses (as it missed real GFS rivers). A 25 kg/m2
  # strip along the band's 20 deg edge most of the way round: the cut edge of a moist
  # tropical belt, long and narrow but no river, which the plain threshold keeps. Auto
  # finds the plume and drops the strip.
  lat, lon = _grid(1.0, 1.0)
  fields = _background(lat, lon, 1)
  moist = (lat > 28) & (lat < 52)
  fields["TMQ"][0, moist] = np.maximum(fields["TMQ"][0, moist], 15.0)
  _plant_river(fields, 0, lat, lon, (30.0, 300.0), (48.0, 350.0), tmq=23.0)
  strip = np.ix_((lat >= 18) & (lat <= 23), (lon >= 20) & (lon <= 270))
  fields["TMQ"][0][strip] = 25.0
  ds = _dataset(fields, lat, lon)

  def found(mode):
    rivers = heuristics.detect_atmospheric_rivers(ds, mode=mode, require_landfall=False)
    return sorted(("plume" if r.lat > 28 else "strip") for r in rivers.itertuples())

  assert found("threshold") == ["plume", "strip"]
  assert found("anomaly") == []
  assert found("auto") == ["plume"]
  with pytest.raises(ValueError, match="mode must be auto, threshold or anomaly"):
    heuristics.detect_atmospheric_rivers(ds, mode="ivt")


def test_atmospheric_river_landfall_on_the_real_coast():
  # No mask given and no LANDFRAC: the land-sea module supplies the real coastline.
  # The synthetic generator's grid: the land fraction, slow to build, is cached per grid.
  lat = -90.0 + (np.arange(384) + 0.5) * 180.0 / 384
  lon = np.arange(576) * 360.0 / 576
  fields = {"TMQ": _background(lat, lon, 1)["TMQ"]}
  _plant_river(fields, 0, lat, lon, (24.0, 200.0), (38.5, 238.5))  # into California
  _plant_river(fields, 0, lat, lon, (30.0, 160.0), (45.0, 200.0))  # mid North Pacific
  rivers = heuristics.detect_atmospheric_rivers(_dataset(fields, lat, lon))
  assert len(rivers) == 1
  assert rivers["lon_max"].iloc[0] > 236 and rivers["landfall"].iloc[0]


def _lon_overlap(a0, a1, b0, b1) -> bool:
  """Whether longitude intervals [a0, a1] and [b0, b1] (ends may pass 360) intersect."""
  return any(a0 + shift <= b1 and b0 <= a1 + shift for shift in (-360.0, 0.0, 360.0))


def test_heuristics_find_the_synthetic_generators_events():
  # The generator's global CAM5-like fields at half the 25 km resolution (the full
  # 768 x 1152 grid is checked outside the test suite, see the report).
  synthetic = pytest.importorskip("climjax.data.synthetic")
  nlat, nlon = 384, 576
  ds, events = synthetic.generate_fields(8, seed=1, nlat=nlat, nlon=nlon)
  dlat, dlon = 180 / nlat, 360 / nlon
  candidates = heuristics.detect_tropical_cyclones(ds)
  assert candidates.attrs["skipped_criteria"] == []  # all 16 variables are there
  rivers = heuristics.detect_atmospheric_rivers(ds)

  storms = events[events["class_name"] == "TC"]
  assert len(storms) >= 8
  found = 0
  for _, storm in storms.iterrows():
    c = candidates[candidates["time_index"] == storm["time_index"]]
    dy = np.abs(c["lat"] - storm["lat_center"]) / dlat
    dx = np.abs((c["lon"] - storm["lon_center"] + 180) % 360 - 180) / dlon
    found += bool(((dy <= 1) & (dx <= 1)).any())  # within one grid cell
  assert found / len(storms) >= 0.95

  def overlaps(river, event) -> bool:
    east = event["lon_east"] + (360 if event["lon_east"] < event["lon_west"] else 0)
    return (
      river["lat_min"] <= event["lat_north"]
      and event["lat_south"] <= river["lat_max"]
      and _lon_overlap(river["lon_min"], river["lon_max"], event["lon_west"], east)
    )

  planted = events[events["class_name"] == "AR"]
  # Rivers whose moisture excess clears the detector's anomaly threshold with a margin.
  strong = planted[planted["intensity"] >= 12]
  assert len(strong) >= 5
  hits = [
    any(overlaps(r, e) for _, r in rivers[rivers["time_index"] == e["time_index"]].iterrows())
    for _, e in strong.iterrows()
  ]
  assert np.mean(hits) >= 0.9
  real = [
    any(overlaps(r, e) for _, e in planted[planted["time_index"] == r["time_index"]].iterrows())
    for _, r in rivers.iterrows()
  ]
  assert np.mean(real) >= 0.9  # few detections where nothing was planted


def _plant_low(fields, t, lat, lon, lat0, lon0, *, dp=1500.0, radius_km=500.0):
  """A Gaussian PSL low (an extratropical cyclone's surface pressure)."""
  north, east = _local_km(lat, lon, lat0, lon0)
  fields["PSL"][t] -= dp * np.exp(-0.5 * (np.hypot(north, east) / radius_km) ** 2)


def test_extratropical_cyclones_are_closed_lows_that_travel():
  lat, lon = _grid(1.0, 1.0)
  fields = _background(lat, lon, 8)
  # A quiet, sloping background: the noise of `_background` holds closed 200 Pa lows.
  fields["PSL"] = 101_300 + 10 * lat[None, :, None] + 0.1 * (fields["PSL"] - 101_300)
  for t in range(8):  # 2 days at ~1,000 km/day eastward: 25 deg of longitude at 45 deg
    _plant_low(fields, t, lat, lon, 45.0 + 0.3 * t, 200.0 + 3.2 * t)
    _plant_low(fields, t, lat, lon, -50.0, 10.0 - 3.0 * t, dp=2500.0)  # across the seam
    _plant_low(fields, t, lat, lon, 55.0, 300.0)  # deep but stationary: not a storm
  _plant_low(fields, 3, lat, lon, 40.0, 100.0, dp=150.0)  # too shallow for a closed contour
  _plant_low(fields, 3, lat, lon, 10.0, 60.0)  # tropical
  ds = _dataset(fields, lat, lon)
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    candidates = heuristics.detect_extratropical_cyclones(ds)
  assert list(candidates.columns) == list(heuristics.ETC_COLUMNS)
  assert candidates.attrs["skipped_criteria"] == []
  assert (candidates["psl_rise"] >= 200).all() and (candidates["lat"].abs() >= 20).all()
  at3 = candidates[candidates["time_index"] == 3]
  assert len(at3) == 3  # the shallow and the tropical lows are not candidates
  east = at3[at3["lat"] > 40].sort_values("lon").iloc[0]
  assert abs(east["lat"] - 45.9) <= 0.5 and abs(east["lon"] - 209.6) <= 0.5
  # The box spans about 1.5 radii of the Gaussian low (500 km: 4.5 deg of latitude).
  assert 8 < east["lat_max"] - east["lat_min"] < 16 and east["ymin"] < east["y"] < east["ymax"]

  # Two tracks of 8 steps: the one across the seam is joined there; the stationary low goes.
  tracks = heuristics.track_extratropical_cyclones(candidates)
  assert tracks["track_id"].nunique() == 2 and len(tracks) == 16
  assert tracks.groupby("track_id")["lat"].agg(lambda x: np.sign(x).nunique()).eq(1).all()
  # Without the travel test the stationary low is a track too; under a day, nothing is.
  assert (
    heuristics.track_extratropical_cyclones(candidates, min_endpoint_deg=0)["track_id"].nunique()
    == 3
  )
  assert len(heuristics.track_extratropical_cyclones(candidates[candidates["time_index"] < 3])) == 0
  with pytest.raises(DataError, match="variable PSL"):
    heuristics.detect_extratropical_cyclones(ds.drop_vars("PSL"))


def _front_field(lat, lon, lat0, lon0, length_km, *, jump=8.0, width_km=80.0, angle=-100.0):
  """A temperature step of `jump` K across a straight front of `length_km` from (lat0, lon0).

  The step fades out beyond the front's ends and 600 km to either side, too
  gently for the fading to look like a front itself.
  """
  north, east = _local_km(lat, lon, lat0, lon0)
  theta = np.deg2rad(angle)
  across = -east * np.sin(theta) + north * np.cos(theta)
  along = east * np.cos(theta) + north * np.sin(theta)
  envelope = np.exp(-(((along - length_km / 2) / (length_km / 2)) ** 4) - (across / 600) ** 2)
  return jump * 0.5 * np.tanh(across / width_km) * envelope


def test_fronts_follow_the_thermal_front_parameter():
  lat, lon = _grid(0.5, 0.5)
  base = 290.0 - 0.5 * np.abs(lat)[:, None] + np.zeros((len(lat), len(lon)))
  t850 = base + _front_field(lat, lon, 45.0, 200.0, 1800.0)  # a long cold front
  t850 += _front_field(lat, lon, -40.0, 357.0, 1500.0, angle=-60.0)  # one across the seam
  t850 += _front_field(lat, lon, 35.0, 60.0, 250.0)  # too short
  t850 += _front_field(lat, lon, 40.0, 120.0, 1800.0, jump=0.8)  # too weak
  ds = _dataset({"T850": t850[None].astype(np.float32)}, lat, lon)
  with warnings.catch_warnings():
    warnings.simplefilter("error")  # T850 is there: no notice about TREFHT
    fronts = heuristics.detect_fronts(ds)
  assert list(fronts.columns) == list(heuristics.FRONT_COLUMNS)
  assert fronts.attrs["variable"] == "T850" and len(fronts) == 2, fronts
  north = fronts[fronts["lat"] > 0].iloc[0]
  # The front runs from 45 N south-southwest for 1,800 km: about 16 deg of latitude.
  assert north["length_km"] > 1200 and north["lat_max"] > 42 and north["lat_min"] < 33
  assert 190 < north["lon_min"] and north["lon_max"] < 206 and north["max_gradient"] > 1.5
  south = fronts[fronts["lat"] < 0].iloc[0]
  assert south["xmax"] > len(lon) - 1 and south["lon_max"] > 360  # one region across 0 deg
  # The thermal front parameter itself: positive on the warm edge of the zone (where a
  # front is drawn), negative on the cold edge.
  tfp, gradient = heuristics.thermal_front_parameter(t850, lat, lon)
  box = np.ix_((lat > 30) & (lat < 45), (lon > 190) & (lon < 206))
  front = t850 - base
  assert gradient[box].max() > 2
  assert front[box][tfp[box] > 0.3].mean() > 1 and front[box][tfp[box] < -0.3].mean() < -1


def test_fronts_on_trefht_ignore_coastlines():
  lat, lon = _grid(1.0, 1.0)
  land = np.zeros((len(lat), len(lon)), np.float32)
  land[np.ix_((lat > 25) & (lat < 60), (lon > 235) & (lon < 290))] = 1
  # Land 12 K colder than the sea: a coastline, not a front; and a real front at sea.
  trefht = 285.0 - 0.4 * np.abs(lat)[:, None] - 12.0 * land
  trefht = trefht + _front_field(lat, lon, 45.0, 180.0, 1800.0)
  ds = _dataset({"TREFHT": trefht[None].astype(np.float32)}, lat, lon)
  with pytest.warns(UserWarning, match="TREFHT"):
    fronts = heuristics.detect_fronts(ds, land_fraction=land)
  assert len(fronts) == 1 and 165 < fronts["lon"].iloc[0] < 190
  with pytest.warns(UserWarning, match="TREFHT"):
    everything = heuristics.detect_fronts(ds, land_fraction=np.zeros_like(land))
  assert len(everything) > 1  # taken for one surface, the coasts are fronts
  with pytest.raises(DataError, match="variable TREFHT"):
    heuristics.detect_fronts(ds.drop_vars("TREFHT"))


def test_score_labels_matches_planted_events():
  synthetic = pytest.importorskip("climjax.data.synthetic")
  _, events = synthetic.generate_fields(2, seed=0, nlat=48, nlon=72)
  # The planted events themselves, as labels: everything found, nothing false.
  labels = events.rename(
    columns={"lat_center": "lat", "lon_center": "lon", "lat_south": "lat_min",
             "lat_north": "lat_max", "lon_west": "lon_min"}
  )  # fmt: skip
  labels["lon_max"] = labels["lon_min"] + (events["lon_east"] - events["lon_west"]) % 360
  table = heuristics.score_labels(labels, events, 2)
  assert list(table.columns) == list(heuristics.SCORE_COLUMNS)
  present = table[table["planted"] > 0]
  assert len(present) >= 4 and (present["recall"] == 1).all()
  assert (table["false_alarms_per_snapshot"] == 0).all() and (
    present["position_error_km"] < 1
  ).all()
  # Moved 1,000 km away, cyclones are missed and each label is a false alarm.
  moved = labels.assign(lat=labels["lat"] - np.sign(labels["lat"]) * 9.0)
  cyclones = heuristics.score_labels(moved, events, 2, classes=("TC", "ETC"))
  assert (cyclones["recall"] == 0).all()
  assert (cyclones["false_alarms_per_snapshot"] * 2 == cyclones["found"]).all()


def test_labels_of_every_class_on_the_synthetic_generators_fields():
  synthetic = pytest.importorskip("climjax.data.synthetic")
  # The detector demo's grid; 3 days, so that TCs and ETCs can be tracked.
  ds, events = synthetic.generate_fields(12, seed=1, nlat=192, nlon=288)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)  # fronts on TREFHT
    labels = heuristics.label_events(ds)
  assert list(labels.columns) == list(heuristics.LABEL_COLUMNS)
  assert set(labels["class_name"]) <= set(heuristics.LABEL_CLASSES)
  assert (labels["ymin"] < labels["ymax"]).all() and (labels["xmin"] < labels["xmax"]).all()
  table = heuristics.score_labels(labels, events, 12).set_index("class_name")
  # Measured: recall TD 0.31, TC 0.75, ETC 0.50 (3 days: few tracks have travelled 12 deg
  # yet), AR 0.64, WF 0.74; false alarms 0 a snapshot but 0.25 for fronts.
  assert (table["found"] > 0).all()
  assert table.loc[["TC", "AR", "WF"], "recall"].min() >= 0.5
  assert table.loc["ETC", "recall"] >= 0.4 and table.loc["TD", "recall"] >= 0.2
  assert (table["false_alarms_per_snapshot"] <= 0.5).all()
  assert (table.loc[["TD", "TC", "ETC"], "position_error_km"] < 100).all()
