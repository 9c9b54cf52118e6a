"""Tests for the synthetic CAM5-like generator: shapes, units, determinism, labels."""

import numpy as np
import pandas as pd
import pytest

from climjax.data import synthetic, variables


@pytest.fixture(scope="module")
def tc():
  return synthetic.tc_patches(600, seed=3)


def test_tc_patches_shapes_and_dtypes(tc):
  x, y = tc
  assert x.shape == (600, 32, 32, len(variables.TC_CHANNELS))
  assert x.dtype == np.float32 and y.dtype == np.int32
  assert set(np.unique(y)) == {0, 1}
  assert np.isfinite(x).all()
  # Exactly half positive in every full block.
  assert y[: synthetic.BLOCK_SIZE].sum() == synthetic.BLOCK_SIZE // 2


def test_tc_patches_physical_ranges(tc):
  x, _ = tc
  ch = {name: x[..., i] for i, name in enumerate(variables.TC_CHANNELS)}
  assert 93_000 < ch["PSL"].min() and ch["PSL"].max() < 104_000
  assert 0 <= ch["TMQ"].min() and ch["TMQ"].max() <= 80
  for wind in ("UBOT", "VBOT", "U850", "V850"):
    assert np.abs(ch[wind]).max() < 90
  assert 200 < ch["T200"].min() and ch["T200"].max() < 240
  assert 245 < ch["T500"].min() and ch["T500"].max() < 285


def test_tc_patches_deterministic_and_sliceable():
  x1, y1 = synthetic.tc_patches(300, seed=7)
  x2, y2 = synthetic.tc_patches(300, seed=7)
  np.testing.assert_array_equal(x1, x2)
  np.testing.assert_array_equal(y1, y2)
  # A window of the stream is the same examples whichever call produced it.
  x3, y3 = synthetic.tc_patches(40, seed=7, start=240)
  np.testing.assert_array_equal(x3, x1[240:280])
  np.testing.assert_array_equal(y3, y1[240:280])
  x4, _ = synthetic.tc_patches(300, seed=8)
  assert not np.allclose(x1, x4)


def test_tc_positives_have_central_cyclone(tc):
  x, y = tc
  psl = x[..., variables.channel_index(variables.TC_CHANNELS, "PSL")]
  u = x[..., variables.channel_index(variables.TC_CHANNELS, "U850")]
  v = x[..., variables.channel_index(variables.TC_CHANNELS, "V850")]
  pos = psl[y == 1]
  # The pressure minimum of a positive is near the patch centre.
  iy, ix = np.unravel_index(pos.reshape(len(pos), -1).argmin(axis=1), pos.shape[1:])
  dist = np.maximum(np.abs(iy - 15.5), np.abs(ix - 15.5))
  assert np.mean(dist <= 5) > 0.95
  # Strong circulation around the centre (its sign follows the hemisphere, which
  # the patch does not carry; test_cyclone_rotation_by_hemisphere checks the sign).
  vort = (v[:, 12:20, 20] - v[:, 12:20, 11]).mean(1) - (u[:, 20, 12:20] - u[:, 11, 12:20]).mean(1)
  assert np.median(np.abs(vort[y == 1])) > 3 * np.median(np.abs(vort[y == 0]))


def test_cyclone_rotation_by_hemisphere():
  # A single storm on a small grid: counter-clockwise in the north, clockwise in the south.
  north, east = np.meshgrid(np.linspace(-300, 300, 31), np.linspace(-300, 300, 31), indexing="ij")
  for lat, sign in ((15.0, 1.0), (-15.0, -1.0)):
    drawn = synthetic.sample_tc_params(np.random.default_rng(0), np.array([lat]))
    params = {k: np.float64(v[0]) for k, v in drawn.items()}
    params["motion_u"] = params["motion_v"] = 0.0
    a = synthetic.cyclone_anomalies(north, east, np.full_like(north, lat), params)
    # East of the centre the wind blows north in the NH, south in the SH.
    assert sign * a["VBOT"][15, 20] > 5 and sign * a["V850"][15, 20] > 5
    # Inflow: north of the centre the wind has a southward (inward) component.
    assert a["VBOT"][20, 15] < 0
    assert a["PSL"][15, 15] == a["PSL"].min()
    assert a["T200"][15, 15] > 0.5 and a["TMQ"][15, 15] > 0
    # Bottom winds reach tropical-storm strength; 850 hPa is weaker than the gradient wind.
    assert np.hypot(a["UBOT"], a["VBOT"]).max() >= synthetic.TC_MIN_WIND - 1


def test_td_below_tc_strength():
  rng = np.random.default_rng(0)
  td = synthetic.sample_td_params(rng, np.full(1000, 12.0))
  tc = synthetic.sample_tc_params(rng, np.full(1000, 12.0))
  assert (0.8 * synthetic.holland_max_wind(td["dp"], td["b"]) <= synthetic.TD_MAX_WIND + 1e-6).all()
  assert (0.8 * synthetic.holland_max_wind(tc["dp"], tc["b"]) >= synthetic.TC_MIN_WIND - 1e-6).all()


def test_smooth_noise_unit_variance_and_correlated():
  z = synthetic.smooth_noise(np.random.default_rng(0), (400, 32, 32), 3.0)
  assert abs(z.std() - 1) < 0.05
  lag1 = np.mean(z[:, :, 1:] * z[:, :, :-1])
  assert 0.9 < lag1 < 1.0


# --- global snapshots ---------------------------------------------------------

NLAT, NLON = 96, 144


@pytest.fixture(scope="module")
def snapshots():
  return synthetic.generate_fields(6, seed=0, nlat=NLAT, nlon=NLON)


def test_generate_fields_layout_and_units(snapshots):
  ds, events = snapshots
  assert tuple(ds.data_vars) == variables.EXTREMEWEATHER_CHANNELS
  for name in variables.EXTREMEWEATHER_CHANNELS:
    da = ds[name]
    assert da.dims == ("time", "lat", "lon") and da.shape == (6, NLAT, NLON)
    assert da.dtype == np.float32 and np.isfinite(da.values).all()
    assert da.attrs["units"] == variables.CAM5_VARIABLES[name].units
  assert np.all(np.diff(ds.lat.values) > 0) and 0 <= ds.lon.min() and ds.lon.max() < 360
  assert np.all(np.diff(ds.time.values) == np.timedelta64(6, "h"))
  ranges = {
    "PSL": (93_000, 105_000),
    "PS": (55_000, 105_000),
    "TMQ": (0, 80),
    "TREFHT": (200, 320),
    "TS": (200, 330),
    "T500": (215, 285),
    "T200": (195, 240),
    "PRECT": (0, 5e-6),
    "QREFHT": (0, 0.04),
    "Z200": (10_000, 13_000),
    "Z1000": (-700, 500),
    "ZBOT": (40, 80),
  }
  for name, (lo, hi) in ranges.items():
    v = ds[name].values
    assert lo <= v.min() and v.max() <= hi, (name, v.min(), v.max())
  # Climatology: the tropics are moister and warmer than the poles.
  tmq = ds.TMQ.mean(("time", "lon")).values
  assert tmq[NLAT // 2] > 3 * tmq[2] and tmq[NLAT // 2] > 3 * tmq[-3]
  assert set(events.columns) == set(synthetic.EVENT_COLUMNS)


def test_generate_fields_deterministic_and_prefix_stable(snapshots):
  ds, events = snapshots
  ds2, events2 = synthetic.generate_fields(6, seed=0, nlat=NLAT, nlon=NLON)
  np.testing.assert_array_equal(ds.PSL.values, ds2.PSL.values)
  pd_equal = events.equals(events2)
  assert pd_equal
  # Steps 3-5 generated on their own equal steps 3-5 of the longer run.
  ds3, events3 = synthetic.generate_fields(3, seed=0, nlat=NLAT, nlon=NLON, start=3)
  # float32 rounding differs with the length of the arrays (vector remainders):
  # the tolerance is relative to each field's own scale.
  for name in ("PSL", "TMQ", "U850", "PRECT"):
    reference = ds[name].values[3:]
    scale = float(np.abs(reference).max())
    np.testing.assert_allclose(ds3[name].values, reference, rtol=1e-5, atol=1e-5 * scale)
  later = events[events.time_index >= 3].drop(columns="time_index").reset_index(drop=True)
  np.testing.assert_array_equal(later.track_id, events3.track_id)
  other, _ = synthetic.generate_fields(1, seed=1, nlat=NLAT, nlon=NLON)
  assert not np.allclose(other.PSL.values[0], ds.PSL.values[0])


def test_events_boxes_contain_planted_events(snapshots):
  ds, events = snapshots
  assert set(events.class_name) >= {"TC", "ETC", "AR", "WF"}
  assert (events.ymin < events.ymax).all() and (events.xmin < events.xmax).all()
  assert (events.ymin >= 0).all() and (events.ymax <= NLAT).all()
  assert (events.xmin >= 0).all() and (events.xmax <= NLON).all()
  assert (events.lat_south < events.lat_north).all()
  for name, cid in variables.CLASS_IDS.items():
    assert (events[events.class_name == name].class_id == cid).all()
  lat, lon = ds.lat.values, ds.lon.values
  psl, tmq = ds.PSL.values, ds.TMQ.values
  for _, ev in events.iterrows():
    t = ev.time_index
    if ev.class_name in ("TC", "TD", "ETC"):
      assert ev.lat_south <= ev.lat_center <= ev.lat_north
    if ev.class_name in ("TC", "ETC") and ev.intensity >= 2_000:
      # A deep low: the box's pressure minimum is near the centre (weak ones may
      # sit on a background gradient that moves the minimum to the box edge).
      box = psl[t, ev.ymin : ev.ymax, ev.xmin : ev.xmax]
      iy, ix = np.unravel_index(box.argmin(), box.shape)
      dlat = lat[ev.ymin + iy] - ev.lat_center
      dlon = (lon[ev.xmin + ix] - ev.lon_center + 180) % 360 - 180
      assert np.hypot(dlat, dlon * np.cos(np.deg2rad(ev.lat_center))) < 5
    if ev.class_name == "TC":
      assert ev.intensity > 500 and abs(ev.lat_center) < 45
    if ev.class_name == "AR":
      # Rivers are moist (TECA: TMQ >= 20 kg/m2) somewhere in their box.
      assert tmq[t, ev.ymin : ev.ymax, ev.xmin : ev.xmax].max() >= 20


def test_tracks_move_smoothly(snapshots):
  _, events = snapshots
  for _, track in events[events.class_name.isin(["TC", "TD", "ETC"])].groupby("track_id"):
    if len(track) < 2:
      continue
    dlat = np.abs(np.diff(track.lat_center.to_numpy()))
    dlon = np.abs((np.diff(track.lon_center.to_numpy()) + 180) % 360 - 180)
    # At most ~25 m/s (ETC) over 6 hours: 540 km, i.e. under 5 deg lat / 12 deg lon.
    assert (dlat < 5).all() and (dlon < 12).all()


def test_generate_arrays_padded_boxes():
  x, boxes = synthetic.generate_arrays(2, seed=5, nlat=NLAT, nlon=NLON, max_boxes=15)
  assert x.shape == (2, NLAT, NLON, 16) and x.dtype == np.float32
  assert boxes.shape == (2, 15, 5) and boxes.dtype == np.int32
  valid = boxes[..., 4] >= 0
  assert valid.any(axis=1).all()
  assert (boxes[~valid] == -1).all()
  assert set(np.unique(boxes[valid][:, 4])) <= {0, 1, 2, 3}
  psl = x[..., variables.channel_index(variables.EXTREMEWEATHER_CHANNELS, "PSL")]
  assert 90_000 < psl.min() and psl.max() < 106_000


def test_events_keep_their_size_across_grids():
  # The same seed plants the same events on every grid; boxes scale with the grid.
  _, coarse = synthetic.generate_fields(1, seed=2, nlat=48, nlon=72)
  _, fine = synthetic.generate_fields(1, seed=2, nlat=96, nlon=144)
  pick = ["class_name", "track_id"]
  np.testing.assert_array_equal(coarse[pick].to_numpy(), fine[pick].to_numpy())
  big = fine.class_name.isin(["ETC", "AR"])
  ratio = (fine.ymax - fine.ymin)[big] / (coarse.ymax - coarse.ymin)[big]
  assert 1.5 < np.median(ratio) < 2.5


def test_snapshots_round_trip_through_the_file_writers(tmp_path):
  extremeweather = pytest.importorskip("climjax.data.extremeweather")
  netcdf = pytest.importorskip("climjax.data.netcdf")
  ds, _ = synthetic.generate_fields(2, seed=0, nlat=48, nlon=72)
  x, boxes = synthetic.generate_arrays(2, seed=0, nlat=48, nlon=72)
  valid = [b[b[:, 4] >= 0] for b in boxes]
  path = tmp_path / "climo_1979.h5"
  extremeweather.write_extremeweather(path, x, [v[:, :4] for v in valid], [v[:, 4] for v in valid])
  f = extremeweather.ExtremeWeatherFile(str(path))
  for i in range(2):
    yxyx, labels = f.boxes(i)
    np.testing.assert_array_equal(yxyx, valid[i][:, :4])
    np.testing.assert_array_equal(labels, valid[i][:, 4])
  f.close()
  netcdf.write_cam5_netcdf(ds, tmp_path / "cam5.nc")
  back = netcdf.open_fields(tmp_path / "cam5.nc")
  np.testing.assert_allclose(back["TMQ"].values, ds["TMQ"].values)


def test_event_knobs_at_one_are_the_default_climate(snapshots):
  ds, events = snapshots
  ds1, events1 = synthetic.generate_fields(
    6,
    seed=0,
    nlat=NLAT,
    nlon=NLON,
    rates={"TC": 1.0, "AR": 1.0},
    intensities=synthetic.event_knobs({"tc_intensity": 1.0})["intensities"],
  )
  for name in variables.EXTREMEWEATHER_CHANNELS:
    np.testing.assert_array_equal(ds1[name].values, ds[name].values)
  assert events1.equals(events)
  knobs = synthetic.event_knobs({"tc_rate": 2, "ar_intensity": 1.2, "etc_rate": None})
  assert knobs == {"rates": {"TC": 2.0}, "intensities": {"AR": 1.2}}
  assert set(synthetic.EVENT_KNOBS) == {"tc_rate", "td_rate", "etc_rate", "ar_rate",
                                        "tc_intensity", "etc_intensity", "ar_intensity"}  # fmt: skip
  with pytest.raises(ValueError, match="tc_rate must be in"):
    synthetic.event_knobs({"tc_rate": -1})
  with pytest.raises(ValueError, match="ar_intensity must be > 0"):
    synthetic.event_knobs({"ar_intensity": 0})
  with pytest.raises(ValueError, match="intensities are for TC, ETC, AR"):
    synthetic.generate_fields(1, seed=0, nlat=8, nlon=8, intensities={"TD": 2.0})


def test_tc_rate_scales_the_planted_tcs_and_nothing_else():
  # 60 days on a coarse grid: the events do not depend on the grid, and these are cheap.
  days, grid = 60, {"nlat": 32, "nlon": 48}
  _, base = synthetic.generate_fields(4 * days, seed=0, **grid)
  _, double = synthetic.generate_fields(4 * days, seed=0, rates={"TC": 2.0}, **grid)
  _, half = synthetic.generate_fields(4 * days, seed=0, rates={"TC": 0.5}, **grid)

  def tcs(events):
    return events[events["class_name"] == "TC"]

  # Measured with seed 0: 34 TC tracks (621 boxes), 63 (1,135) at rate 2, 15 at rate 0.5.
  ratio = tcs(double)["track_id"].nunique() / tcs(base)["track_id"].nunique()
  assert 1.6 < ratio < 2.4 and 1.6 < len(tcs(double)) / len(tcs(base)) < 2.4
  assert tcs(half)["track_id"].nunique() < 0.7 * tcs(base)["track_id"].nunique()
  # Rate 2 keeps every default TC, and the other kinds' events are the same.
  assert set(tcs(base)["track_id"]) <= set(tcs(double)["track_id"])
  for events in (double, half):
    etc = events[events["class_name"] == "ETC"].reset_index(drop=True)
    pd.testing.assert_frame_equal(etc, base[base["class_name"] == "ETC"].reset_index(drop=True))


def test_intensity_strengthens_events():
  grid = {"nlat": 32, "nlon": 48}
  _, base = synthetic.generate_fields(80, seed=1, **grid)
  _, strong = synthetic.generate_fields(80, seed=1, intensities={"TC": 1.5, "AR": 1.2}, **grid)
  for name, factor in (("TC", 1.5), ("AR", 1.2)):
    a = base[base["class_name"] == name].set_index(["time_index", "track_id"])["intensity"]
    b = strong[strong["class_name"] == name].set_index(["time_index", "track_id"])["intensity"]
    both = a.index.intersection(b.index)
    assert len(both) > 10
    ratio = (b[both] / a[both]).to_numpy()
    if name == "AR":
      np.testing.assert_allclose(ratio, factor, rtol=1e-6)
    else:  # a TC's deficit rises from a 250 Pa floor to its (scaled) peak
      assert (ratio > 1.0).all() and (ratio <= factor + 1e-9).all() and ratio.mean() > 1.4
  # Stronger storms spend more of their lives above 17 m/s: more TC steps, fewer TD ones.
  assert (strong["class_name"] == "TC").sum() > (base["class_name"] == "TC").sum()
