"""Files laid out as public archives write them, read with no variables map.

GRIB converted to netCDF (cfgrib's GFS names, wgrib2 and NCL names), ERA5
(packed int16, geopotential in m2 s-2 on pressure levels) and CMIP (one
variable a file, `ua/va/ta/zg` on `plev` in Pa, `sftlf` in % without time):
`open_fields` gives the library's fields in its units, and
`launch/build_dataset.py` builds TC patches from each.
"""

import os
import subprocess
import sys

import netCDF4
import numpy as np
import pytest

from climjax.data import archives, landsea, netcdf, synthetic, variables
from climjax.data.errors import DataError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NLAT, NLON, STEPS = 192, 288, 12  # the coarsest grid on which the TC heuristics track storms
DLON = 360.0 / NLON
G = archives.G


@pytest.fixture(scope="module")
def climate():
  """Synthetic CAM5 fields with tracked TCs (3 days, 6-hourly) and their land fraction."""
  ds, _ = synthetic.generate_fields(STEPS, seed=1, nlat=NLAT, nlon=NLON)
  ds = ds.load()
  ds["LANDFRAC"] = (
    ("time", "lat", "lon"),
    np.broadcast_to(
      landsea.land_fraction(ds["lat"].values, ds["lon"].values), ds["PSL"].shape
    ).astype(np.float32),
  )
  return ds


def _hours(ds) -> np.ndarray:
  return (ds["time"].values - np.datetime64("1970-01-01")) / np.timedelta64(1, "h")


def _profile(known: dict[float, np.ndarray], levels_hpa) -> np.ndarray:
  """(time, level, lat, lon) values linear in ln(p) through `known` {hPa: field}."""
  ps = sorted(known)
  x = np.log(ps)
  out = []
  for p in levels_hpa:
    if len(ps) == 1:
      out.append(known[ps[0]] + 0.01 * (ps[0] - p))
      continue
    k = int(np.clip(np.searchsorted(x, np.log(p)) - 1, 0, len(ps) - 2))
    w = (np.log(p) - x[k]) / (x[k + 1] - x[k])
    out.append((1 - w) * known[ps[k]] + w * known[ps[k + 1]])
  return np.stack(out, axis=1).astype(np.float32)


def _levels(ds, levels_hpa) -> dict[str, np.ndarray]:
  """T, U, V and geopotential height on `levels_hpa` through the CAM5 fields at theirs."""
  v = {k: ds[k].values.astype(np.float64) for k in ds.data_vars}
  return {
    "T": _profile({500.0: v["T500"], 200.0: v["T200"]}, levels_hpa),
    "U": _profile({850.0: v["U850"]}, levels_hpa),
    "V": _profile({850.0: v["V850"]}, levels_hpa),
    "Z": _profile({1000.0: v["Z1000"], 200.0: v["Z200"]}, levels_hpa),
  }


def _var(nc, name, dims, values, dtype="f4", **attrs):
  var = nc.createVariable(name, dtype, dims)
  for key, value in attrs.items():
    var.setncattr(key, value)
  var[:] = values
  return var


def _packed(nc, name, dims, values, **attrs):
  """An int16 variable with scale_factor/add_offset, as ERA5 files come."""
  values = np.asarray(values, np.float64)
  lo, hi = float(values.min()), float(values.max())
  scale = (hi - lo) / 65_000 or 1.0
  offset = (hi + lo) / 2
  var = nc.createVariable(name, "i2", dims, fill_value=np.int16(-32767))
  var.set_auto_maskandscale(False)
  var.scale_factor, var.add_offset = scale, offset
  for key, value in attrs.items():
    var.setncattr(key, value)
  var[:] = np.round((values - offset) / scale).astype(np.int16)
  return scale


def write_gfs_grib(path, ds) -> None:
  """An NCEP GFS forecast as cfgrib writes it to netCDF: `step` with `valid_time`, levels in
  hPa descending, latitude descending, longitude -180..180 with the cyclic column repeated,
  `prmsl` beside the Eta-reduced `mslet`, `gh` in gpm, `prate` in kg m-2 s-1."""
  levels = np.array([1000, 850, 500, 250, 200, 100], np.float64)
  lon = -180.0 + DLON * np.arange(NLON + 1)
  cols = np.round(np.mod(lon, 360.0) / DLON).astype(int)

  def grid(a):  # (..., lat, lon) CAM5 -> north first, -180..180 with 180 repeated
    return a[..., ::-1, :][..., cols]

  with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
    nc.Conventions = "CF-1.7"
    nc.GRIB_centre = "kwbc"
    for dim, size in (
      ("step", STEPS),
      ("isobaricInhPa", len(levels)),
      ("latitude", NLAT),
      ("longitude", len(lon)),
    ):
      nc.createDimension(dim, size)
    hours = _hours(ds)
    _var(
      nc,
      "time",
      (),
      hours[0] * 3600,
      "i8",
      units="seconds since 1970-01-01",
      standard_name="forecast_reference_time",
      calendar="proleptic_gregorian",
    )
    _var(
      nc, "step", ("step",), hours - hours[0], "f8", units="hours", standard_name="forecast_period"
    )
    _var(
      nc,
      "valid_time",
      ("step",),
      hours * 3600,
      "i8",
      units="seconds since 1970-01-01",
      standard_name="time",
      calendar="proleptic_gregorian",
    )
    _var(
      nc,
      "isobaricInhPa",
      ("isobaricInhPa",),
      levels,
      "f8",
      units="hPa",
      standard_name="air_pressure",
      positive="down",
      stored_direction="decreasing",
    )
    _var(nc, "latitude", ("latitude",), ds["lat"].values[::-1], "f8", units="degrees_north")
    _var(nc, "longitude", ("longitude",), lon, "f8", units="degrees_east")
    _var(nc, "heightAboveGround", (), 10.0, "f8", units="m", standard_name="height")
    plane = ("step", "latitude", "longitude")
    for name, values, units in (
      ("prmsl", ds["PSL"], "Pa"),
      ("mslet", ds["PSL"] + 250.0, "Pa"),
      ("sp", ds["PS"], "Pa"),
      ("pwat", ds["TMQ"], "kg m**-2"),
      ("prate", ds["PRECT"] * 1000.0, "kg m**-2 s**-1"),
      ("t2m", ds["TREFHT"], "K"),
      ("lsm", ds["LANDFRAC"], "(0 - 1)"),
    ):
      _var(nc, name, plane, grid(values.values), units=units, coordinates="time step valid_time")
    for name, key in (("u10", "UBOT"), ("v10", "VBOT")):
      _var(
        nc,
        name,
        plane,
        grid(ds[key].values),
        units="m s**-1",
        coordinates="time step heightAboveGround valid_time",
      )
    on_levels = _levels(ds, levels)
    for name, key, units, standard in (
      ("gh", "Z", "gpm", "geopotential_height"),
      ("t", "T", "K", "air_temperature"),
      ("u", "U", "m s**-1", "eastward_wind"),
      ("v", "V", "m s**-1", "northward_wind"),
    ):
      _var(
        nc,
        name,
        ("step", "isobaricInhPa", "latitude", "longitude"),
        grid(on_levels[key]),
        units=units,
        standard_name=standard,
      )


def write_era5(path, ds) -> dict[str, float]:
  """ERA5 from the CDS as netCDF: int16 packed, `valid_time`, `pressure_level` in hPa, geopotential
  `z` in m2 s-2, `tp` in m per hour, latitude descending. Returns each variable's packing step."""
  levels = np.array([1000, 850, 500, 200], np.float64)
  steps = {}
  with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
    nc.Conventions = "CF-1.7"
    nc.institution = "European Centre for Medium-Range Weather Forecasts"
    for dim, size in (
      ("valid_time", STEPS),
      ("pressure_level", len(levels)),
      ("latitude", NLAT),
      ("longitude", NLON),
    ):
      nc.createDimension(dim, size)
    _var(
      nc,
      "valid_time",
      ("valid_time",),
      _hours(ds) * 3600,
      "i8",
      units="seconds since 1970-01-01",
      calendar="proleptic_gregorian",
      standard_name="time",
    )
    _var(
      nc,
      "pressure_level",
      ("pressure_level",),
      levels,
      "f8",
      units="hPa",
      standard_name="air_pressure",
      positive="down",
    )
    _var(
      nc,
      "latitude",
      ("latitude",),
      ds["lat"].values[::-1],
      "f8",
      units="degrees_north",
      standard_name="latitude",
    )
    _var(
      nc,
      "longitude",
      ("longitude",),
      ds["lon"].values,
      "f8",
      units="degrees_east",
      standard_name="longitude",
    )
    plane = ("valid_time", "latitude", "longitude")
    for name, values, units in (
      ("msl", ds["PSL"], "Pa"),
      ("sp", ds["PS"], "Pa"),
      ("tcwv", ds["TMQ"], "kg m**-2"),
      ("tp", ds["PRECT"] * 3600.0, "m"),
      ("t2m", ds["TREFHT"], "K"),
      ("skt", ds["TS"], "K"),
      ("u10", ds["UBOT"], "m s**-1"),
      ("v10", ds["VBOT"], "m s**-1"),
      ("lsm", ds["LANDFRAC"], "(0 - 1)"),
    ):
      steps[name] = _packed(nc, name, plane, values.values[:, ::-1], units=units)
    on_levels = _levels(ds, levels)
    cube = ("valid_time", "pressure_level", "latitude", "longitude")
    for name, values, units, standard in (
      ("z", on_levels["Z"] * G, "m**2 s**-2", "geopotential"),
      ("t", on_levels["T"], "K", "air_temperature"),
      ("u", on_levels["U"], "m s**-1", "eastward_wind"),
      ("v", on_levels["V"], "m s**-1", "northward_wind"),
    ):
      steps[name] = _packed(
        nc, name, cube, values[..., ::-1, :], units=units, standard_name=standard
      )
  return steps


PLEV8 = np.array([100000, 85000, 70000, 50000, 25000, 10000, 5000, 1000], np.float64)


def write_cmip(directory, ds) -> None:
  """CMIP6 files, one variable each: 6-hourly `psl`, `prw`, `pr`, `tas`/`uas`/`vas` with their
  height, `ua/va/ta/zg` on the 8 `plev` levels in Pa (no 200 hPa), and `sftlf` in % (fx)."""
  os.makedirs(directory, exist_ok=True)
  days = (ds["time"].values - np.datetime64("1850-01-01")) / np.timedelta64(1, "D")
  on_levels = _levels(ds, PLEV8 / 100.0)

  def write(name, values, units, standard, *, levels=False, height=None, timed=True):
    path = os.path.join(directory, f"{name}_6hrPlevPt_CESM2_historical_r1i1p1f1_gn.nc")
    with netCDF4.Dataset(path, "w", format="NETCDF4_CLASSIC") as nc:
      nc.Conventions, nc.mip_era, nc.variable_id = "CF-1.7 CMIP-6.2", "CMIP6", name
      dims = []
      if timed:
        nc.createDimension("time", None)
        _var(
          nc,
          "time",
          ("time",),
          days,
          "f8",
          units="days since 1850-01-01",
          calendar="noleap",
          standard_name="time",
          axis="T",
        )
        dims.append("time")
      if levels:
        nc.createDimension("plev", len(PLEV8))
        _var(
          nc,
          "plev",
          ("plev",),
          PLEV8,
          "f8",
          units="Pa",
          standard_name="air_pressure",
          positive="down",
          axis="Z",
        )
        dims.append("plev")
      nc.createDimension("lat", NLAT)
      nc.createDimension("lon", NLON)
      _var(
        nc,
        "lat",
        ("lat",),
        ds["lat"].values,
        "f8",
        units="degrees_north",
        standard_name="latitude",
        axis="Y",
      )
      _var(
        nc,
        "lon",
        ("lon",),
        ds["lon"].values,
        "f8",
        units="degrees_east",
        standard_name="longitude",
        axis="X",
      )
      extra = {}
      if height is not None:
        _var(nc, "height", (), height, "f8", units="m", standard_name="height", positive="up")
        extra["coordinates"] = "height"
      _var(nc, name, (*dims, "lat", "lon"), values, units=units, standard_name=standard, **extra)

  write("psl", ds["PSL"].values, "Pa", "air_pressure_at_mean_sea_level")
  write("prw", ds["TMQ"].values, "kg m-2", "atmosphere_mass_content_of_water_vapor")
  write("pr", ds["PRECT"].values * 1000.0, "kg m-2 s-1", "precipitation_flux")
  write("tas", ds["TREFHT"].values, "K", "air_temperature", height=2.0)
  write("uas", ds["UBOT"].values, "m s-1", "eastward_wind", height=10.0)
  write("vas", ds["VBOT"].values, "m s-1", "northward_wind", height=10.0)
  for name, key, units, standard in (
    ("ta", "T", "K", "air_temperature"),
    ("ua", "U", "m s-1", "eastward_wind"),
    ("va", "V", "m s-1", "northward_wind"),
    ("zg", "Z", "m", "geopotential_height"),
  ):
    write(name, on_levels[key], units, standard, levels=True)
  write("sftlf", ds["LANDFRAC"].values[0] * 100.0, "%", "land_area_fraction", timed=False)


@pytest.fixture(scope="module")
def archive_files(tmp_path_factory, climate):
  root = tmp_path_factory.mktemp("archives")
  write_gfs_grib(root / "gfs.nc", climate)
  steps = write_era5(root / "era5.nc", climate)
  write_cmip(root / "cmip", climate)
  return {"grib": root / "gfs.nc", "era5": root / "era5.nc", "cmip": root / "cmip"}, steps


TC_FIELDS = ("PSL", "UBOT", "VBOT", "TMQ", "U850", "V850", "T200", "T500")
ALL_FIELDS = (*TC_FIELDS, "Z200", "Z1000", "TREFHT", "PRECT", "LANDFRAC")


def _assert_fields(ds, climate, names, atol):
  for name in names:
    expected = climate[name].values
    np.testing.assert_allclose(ds[name].values, expected, rtol=2e-6, atol=atol(name), err_msg=name)
    assert ds[name].attrs["units"] == archives.LIBRARY_UNITS[name], name


def test_gfs_grib_names_levels_and_cyclic_column(archive_files, climate):
  files, _ = archive_files
  ds = netcdf.open_fields(str(files["grib"]), ALL_FIELDS)
  np.testing.assert_allclose(ds["lat"].values, climate["lat"].values)
  np.testing.assert_allclose(ds["lon"].values, climate["lon"].values)  # 180 once, not twice
  assert len(ds["time"]) == STEPS and ds["time"].values[0] == climate["time"].values[0]
  _assert_fields(ds, climate, ALL_FIELDS, lambda name: 1e-3 if name.startswith("Z") else 1e-4)
  assert "prmsl" in ds["PSL"].attrs["climjax_source"]  # PRMSL before the Eta-reduced MSLET
  assert "at 850 hPa" in ds["U850"].attrs["climjax_source"]


def test_era5_packed_geopotential_and_hourly_precipitation(archive_files, climate):
  files, steps = archive_files
  ds = netcdf.open_fields(str(files["era5"]), ALL_FIELDS)
  quantum = {
    "PSL": "msl",
    "UBOT": "u10",
    "VBOT": "v10",
    "TMQ": "tcwv",
    "U850": "u",
    "V850": "v",
    "T200": "t",
    "T500": "t",
    "TREFHT": "t2m",
    "LANDFRAC": "lsm",
  }
  scale = {name: steps[v] for name, v in quantum.items()}
  scale |= {"Z200": steps["z"] / G, "Z1000": steps["z"] / G, "PRECT": steps["tp"] / 3600}
  _assert_fields(ds, climate, ALL_FIELDS, lambda name: 0.51 * scale[name] + 1e-6)
  assert "geopotential" in ds["Z200"].attrs["climjax_source"]


def test_cmip_plev_in_pa_interpolated_in_log_pressure(archive_files, climate):
  files, _ = archive_files
  ds = netcdf.open_fields(str(files["cmip"] / "*.nc"), ALL_FIELDS)
  # plev8 has no 200 hPa: T200 and Z200 come from 250 and 100 hPa, linear in ln(p).
  assert "between 100 and 250 hPa" in ds["T200"].attrs["climjax_source"]
  _assert_fields(ds, climate, ALL_FIELDS, lambda name: 2e-3 if name.startswith("Z") else 1e-4)
  # sftlf has no time axis: the same land fraction at every step.
  assert ds["LANDFRAC"].shape == (STEPS, NLAT, NLON)


def _run(*args: str) -> subprocess.CompletedProcess:
  return subprocess.run(
    [sys.executable, os.path.join(REPO, "launch", "build_dataset.py"), *args],
    capture_output=True,
    text=True,
    env={**os.environ, "PYTHONPATH": REPO},
    cwd=REPO,
    timeout=300,
  )


@pytest.mark.parametrize("archive", ["grib", "era5", "cmip"])
def test_build_dataset_reads_each_archive_without_a_variables_map(tmp_path, archive_files, archive):
  files, _ = archive_files
  built = _run(
    "--task=tc", "--source=netcdf", f"--input={files[archive]}", f"--data_dir={tmp_path}"
  )
  assert built.returncode == 0, built.stderr
  lines = dict(line.split(": ", 1) for line in built.stdout.splitlines() if ": " in line)
  total, positive = (int(w) for w in lines["[climjax] train"].replace(",", "").split()[::2])
  assert positive > 0 and total >= positive, built.stdout
  # Named by the patches found, not by the caps of configs/tc.py.
  assert f"--config.data.num_train={total}" in built.stdout
  assert "variables_map" not in built.stdout


# ---------------------------------------------------------------------------
# Units: converted where the file says them, refused where they are missing or wrong
# ---------------------------------------------------------------------------

LAT = np.linspace(-60.0, 60.0, 5)
LON = np.arange(8) * 45.0


def write_simple(
  path,
  fields,
  *,
  levels=None,
  level_name="plev",
  level_attrs=None,
  time_attrs=None,
  time_values=None,
  lon=LON,
):
  """A small file: `fields` {name: (values, attrs)}, values (time[, level], lat, lon)."""
  with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
    nt = next(iter(fields.values()))[0].shape[0]
    nc.createDimension("time", nt)
    attrs = {"units": "hours since 2000-01-01 00:00:00"} if time_attrs is None else time_attrs
    values = 6.0 * np.arange(nt) if time_values is None else time_values
    if isinstance(values[0], str):
      nc.createVariable("time", str, ("time",))[:] = np.array(values, dtype=object)
      for key, value in attrs.items():
        nc["time"].setncattr(key, value)
    else:
      _var(nc, "time", ("time",), values, "f8", **attrs)
    if levels is not None:
      nc.createDimension(level_name, len(levels))
      _var(nc, level_name, (level_name,), levels, "f8", **(level_attrs or {}))
    nc.createDimension("lat", len(LAT))
    nc.createDimension("lon", len(lon))
    _var(nc, "lat", ("lat",), LAT, "f8", units="degrees_north")
    _var(nc, "lon", ("lon",), lon, "f8", units="degrees_east")
    for name, (values, attrs) in fields.items():
      dims = ("time", level_name, "lat", "lon") if values.ndim == 4 else ("time", "lat", "lon")
      _var(nc, name, dims, values, **attrs)


def _field(value, nt=2, nlev=None, spread=1.0):
  shape = (nt, len(LAT), len(LON)) if nlev is None else (nt, nlev, len(LAT), len(LON))
  return (value + spread * np.random.default_rng(0).random(shape)).astype(np.float32)


def test_units_the_file_states_are_converted(tmp_path):
  psl_hpa, t_c, z_g = _field(1010.0), _field(15.0), _field(11_800.0 * G, spread=100.0)
  fields = {
    "PSL": (psl_hpa, {"units": "hPa"}),
    "TREFHT": (t_c, {"units": "degC"}),
    "T500": (t_c - 30.0, {"units": "C"}),  # GRIB files' Celsius, not coulomb
    "Z200": (z_g, {"units": "m2 s-2", "standard_name": "geopotential"}),
    "PRECT": (_field(2.0), {"units": "mm/day"}),
    "QREFHT": (_field(10.0), {"units": "g/kg"}),
    "PS": (psl_hpa - 100.0, {"units": "millibars"}),
    "TMQ": (_field(30.0), {"units": "mm"}),  # precipitable water as a depth
    "LANDFRAC": (_field(0.0, spread=100.0), {"units": "%"}),
    "U850": (_field(20.0) * 1.94384, {"units": "knots"}),
  }
  path = tmp_path / "units.nc"
  write_simple(path, fields)
  ds = netcdf.open_fields(str(path))
  expect = {
    "PSL": psl_hpa * 100.0,
    "TREFHT": t_c + 273.15,
    "T500": t_c - 30.0 + 273.15,
    "Z200": z_g / G,
    "PRECT": fields["PRECT"][0] / 1000.0 / 86400.0,
    "QREFHT": fields["QREFHT"][0] / 1000.0,
    "PS": (psl_hpa - 100.0) * 100.0,
    "TMQ": fields["TMQ"][0],  # 1 mm of water is 1 kg m-2
    "LANDFRAC": fields["LANDFRAC"][0] / 100.0,
    "U850": fields["U850"][0] / 1.94384,
  }
  for name, values in expect.items():
    np.testing.assert_allclose(ds[name].values, values, rtol=1e-5, err_msg=name)
    assert ds[name].attrs["units"] == archives.LIBRARY_UNITS[name]


@pytest.mark.parametrize(
  "name, values",
  [("PSL", _field(1010.0)), ("Z200", _field(11_800.0 * G)), ("TREFHT", _field(15.0))],
  ids=["PSL in hPa", "Z in m2 s-2", "T in degC"],
)
def test_missing_units_with_absurd_values_are_refused(tmp_path, name, values):
  path = tmp_path / "nounits.nc"
  write_simple(path, {name: (values, {})})
  with pytest.raises(DataError, match="outside the plausible") as e:
    netcdf.open_fields(str(path))
  message = str(e.value)
  assert "\n" not in message and str(path) in message and f"variable {name}" in message
  assert "no units in the file" in message


def test_missing_units_with_plausible_values_are_taken_as_the_library_units(tmp_path):
  path = tmp_path / "nounits.nc"
  write_simple(path, {"PSL": (_field(101_000.0), {})})
  np.testing.assert_allclose(netcdf.open_fields(str(path))["PSL"].values, _field(101_000.0))


@pytest.mark.parametrize(
  "attrs, expected",
  [
    ({"units": "K"}, "units 'K' do not convert to Pa"),
    (
      {"units": "bananas"},
      "units 'bananas' are not udunits units (expected units convertible to Pa)",
    ),
  ],
)
def test_inconvertible_units_are_refused_in_one_line(tmp_path, attrs, expected):
  path = tmp_path / "bad.nc"
  write_simple(path, {"msl": (_field(101_000.0), attrs)})
  with pytest.raises(DataError) as e:
    netcdf.open_fields(str(path), ["PSL"])
  assert str(e.value) == f"{path}: variable PSL (msl in the file): {expected}"


def test_precipitation_amounts_need_their_period(tmp_path):
  path = tmp_path / "apcp.nc"
  write_simple(path, {"apcp": (_field(2.0), {"units": "kg m-2"})})
  with pytest.raises(DataError, match="accumulated amount.*cell_methods") as e:
    netcdf.open_fields(str(path), ["PRECT"])
  assert "variable PRECT (apcp in the file)" in str(e.value)
  path = tmp_path / "apcp_6h.nc"
  write_simple(
    path,
    {"apcp": (_field(2.0), {"units": "kg m-2", "cell_methods": "time: sum (interval: 6 hours)"})},
  )
  ds = netcdf.open_fields(str(path), ["PRECT"])
  np.testing.assert_allclose(ds["PRECT"].values, _field(2.0) / 1000.0 / (6 * 3600.0), rtol=1e-6)


# ---------------------------------------------------------------------------
# Names: standard_name first, archive names second
# ---------------------------------------------------------------------------


def test_standard_name_identifies_a_variable_of_any_name(tmp_path):
  path = tmp_path / "std.nc"
  write_simple(
    path,
    {
      "slp_reduced": (
        _field(101_000.0),
        {"units": "Pa", "standard_name": "air_pressure_at_mean_sea_level"},
      ),
      "iwv": (
        _field(20.0),
        {"units": "kg m-2", "standard_name": "atmosphere_mass_content_of_water_vapor"},
      ),
    },
  )
  ds = netcdf.open_fields(str(path), ["PSL", "TMQ"])
  np.testing.assert_allclose(ds["PSL"].values, _field(101_000.0))
  assert "standard_name" in ds["TMQ"].attrs["climjax_source"]


def test_grib_level_suffixes_of_wgrib2_and_ncl(tmp_path):
  path = tmp_path / "wgrib2.nc"
  write_simple(
    path,
    {
      "PRMSL_meansealevel": (_field(101_000.0), {"units": "Pa"}),
      "PWAT_entireatmosphere_consideredasasinglelayer_": (_field(20.0), {"units": "kg/m^2"}),
      "TMP_500mb": (_field(250.0), {"units": "K"}),
      "UGRD_850mb": (_field(5.0), {"units": "m/s"}),
      "TMP_2maboveground": (_field(290.0), {"units": "K"}),
      "TMP_surface": (_field(295.0), {"units": "K"}),
      "UGRD_10maboveground": (_field(3.0), {"units": "m/s"}),
    },
  )
  ds = netcdf.open_fields(str(path), ["PSL", "TMQ", "T500", "U850", "TREFHT", "TS", "UBOT"])
  for name, value in (("T500", 250.0), ("TREFHT", 290.0), ("TS", 295.0), ("UBOT", 3.0)):
    np.testing.assert_allclose(ds[name].values, _field(value), err_msg=name)
  # NCL's ncl_convert2nc: level type in the name, isobaric levels in Pa on lv_ISBL0.
  path = tmp_path / "ncl.nc"
  t = _field(240.0, nlev=3)
  write_simple(
    path,
    {"TMP_P0_L100_GLL0": (t, {"units": "K"})},
    levels=[20000.0, 50000.0, 85000.0],
    level_name="lv_ISBL0",
    level_attrs={"units": "Pa"},
  )
  ds = netcdf.open_fields(str(path), ["T200", "T500", "T850"])
  for k, name in enumerate(("T200", "T500", "T850")):
    np.testing.assert_allclose(ds[name].values, t[:, k], err_msg=name)


def test_missing_variable_lists_what_the_files_hold_with_standard_names(tmp_path):
  path = tmp_path / "a.nc"
  write_simple(
    path,
    {
      "msl": (
        _field(101_000.0),
        {"units": "Pa", "standard_name": "air_pressure_at_mean_sea_level"},
      ),
      "wvc": (_field(20.0), {"units": "kg m-2", "standard_name": "water_vapor_content_of_x"}),
    },
  )
  with pytest.raises(DataError, match="variable TMQ: not found") as e:
    netcdf.open_fields(str(path), ["PSL", "TMQ"])
  message = str(e.value)
  assert "PSL (msl, air_pressure_at_mean_sea_level)" in message
  assert "wvc (water_vapor_content_of_x)" in message and "variables_map" in message


def test_variables_aliases_are_all_in_the_archive_tables():
  for name, target in variables.ALIASES.items():
    assert archives.requested_name(name, {}) == target, name


# ---------------------------------------------------------------------------
# Pressure levels
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
  "level_name, levels, attrs",
  [
    ("plev", [100000.0, 70000.0, 30000.0], {"units": "Pa"}),
    ("p", [1000.0, 700.0, 300.0], {"units": "millibar", "positive": "down"}),
    ("isobaric", [1000.0, 700.0, 300.0], {"standard_name": "air_pressure", "units": "hPa"}),
    ("lev", [1000.0, 700.0, 300.0], {}),  # no units: a level name, hPa by its values
  ],
)
def test_levels_exact_or_linear_in_log_pressure(tmp_path, level_name, levels, attrs):
  t = _field(230.0, nlev=3, spread=40.0).astype(np.float64)
  path = tmp_path / "levels.nc"
  write_simple(
    path,
    {"ta": (t.astype(np.float32), {"units": "K"})},
    levels=levels,
    level_name=level_name,
    level_attrs=attrs,
  )
  ds = netcdf.open_fields(str(path), ["T500"])
  w = np.log(500 / 700) / np.log(300 / 700)
  expected = (1 - w) * t[:, 1] + w * t[:, 2]
  np.testing.assert_allclose(ds["T500"].values, expected, rtol=1e-6)
  assert not np.allclose(ds["T500"].values, t[:, 1] + (t[:, 2] - t[:, 1]) * 0.5)  # not linear in p
  with pytest.raises(DataError, match="200 hPa lies outside the pressure levels 300-1000") as e:
    netcdf.open_fields(str(path), ["T200"])
  assert "variable T200" in str(e.value) and "no extrapolation" in str(e.value)


def test_a_level_within_half_a_hectopascal_is_taken_as_it_is(tmp_path):
  t = _field(260.0, nlev=2)
  path = tmp_path / "near.nc"
  write_simple(
    path,
    {"t": (t, {"units": "K"})},
    levels=[850.3, 499.8],
    level_name="level",
    level_attrs={"units": "hPa"},
  )
  ds = netcdf.open_fields(str(path), ["T850", "T500"])
  np.testing.assert_array_equal(ds["T850"].values, t[:, 0])
  np.testing.assert_array_equal(ds["T500"].values, t[:, 1])


def test_hybrid_levels_are_not_pressure(tmp_path):
  # CAM5's own T on hybrid levels beside its T500: T500 is the file's, T gives nothing.
  path = tmp_path / "cam5.nc"
  write_simple(
    path,
    {"T": (_field(250.0, nlev=2), {"units": "K"}), "T500": (_field(255.0), {"units": "K"})},
    levels=[500.0, 900.0],
    level_name="lev",
    level_attrs={
      "units": "level",
      "positive": "down",
      "standard_name": "atmosphere_hybrid_sigma_pressure_coordinate",
    },
  )
  ds = netcdf.open_fields(str(path))
  assert sorted(ds.data_vars) == ["T500"]
  np.testing.assert_array_equal(ds["T500"].values, _field(255.0))


# ---------------------------------------------------------------------------
# Time and longitude forms
# ---------------------------------------------------------------------------


def test_time_without_cf_units_is_refused_with_the_fix(tmp_path):
  path = tmp_path / "timestep.nc"
  write_simple(path, {"PSL": (_field(101_000.0), {"units": "Pa"})}, time_attrs={})
  with pytest.raises(DataError) as e:
    netcdf.open_fields(str(path))
  message = str(e.value)
  assert "\n" not in message and str(path) in message and "variable time" in message
  assert "not CF time units" in message and "ncatted -a units,time" in message


def test_iso_date_strings_are_read_as_times(tmp_path):
  path = tmp_path / "dates.nc"
  dates = ["2005-08-28 00:00:00", "2005-08-28 06:00:00"]
  write_simple(
    path, {"PSL": (_field(101_000.0), {"units": "Pa"})}, time_attrs={}, time_values=dates
  )
  ds = netcdf.open_fields(str(path))
  assert list(ds["time"].values) == [np.datetime64("2005-08-28T00"), np.datetime64("2005-08-28T06")]


def test_repeated_cyclic_longitude_is_dropped_when_equal_and_refused_otherwise(tmp_path):
  lon = np.arange(-180.0, 180.1, 45.0)  # 9 columns, -180 and 180 the same meridian
  values = _field(101_000.0, nt=2)
  cyclic = np.concatenate([values[..., 4:], values[..., :4], values[..., 4:5]], axis=-1)
  path = tmp_path / "cyclic.nc"
  write_simple(path, {"PSL": (cyclic, {"units": "Pa"})}, lon=lon)
  ds = netcdf.open_fields(str(path))
  np.testing.assert_array_equal(ds["lon"].values, LON)
  np.testing.assert_array_equal(ds["PSL"].values, values)
  cyclic[..., -1] += 50.0
  path = tmp_path / "cyclic_differs.nc"
  write_simple(path, {"PSL": (cyclic, {"units": "Pa"})}, lon=lon)
  with pytest.raises(DataError, match="-180 and 180 are one meridian but hold different") as e:
    netcdf.open_fields(str(path))
  assert "variable PSL" in str(e.value)


def test_a_grib_analysis_with_a_scalar_time(tmp_path):
  path = tmp_path / "analysis.nc"
  with netCDF4.Dataset(path, "w") as nc:
    nc.createDimension("latitude", len(LAT))
    nc.createDimension("longitude", len(LON))
    _var(nc, "valid_time", (), 3600.0 * 24 * 365 * 30, "f8", units="seconds since 1970-01-01")
    _var(nc, "latitude", ("latitude",), LAT, "f8", units="degrees_north")
    _var(nc, "longitude", ("longitude",), LON, "f8", units="degrees_east")
    _var(
      nc,
      "prmsl",
      ("latitude", "longitude"),
      _field(101_000.0)[0],
      units="Pa",
      coordinates="valid_time",
    )
  ds = netcdf.open_fields(str(path))
  assert ds["PSL"].shape == (1, len(LAT), len(LON)) and len(ds["time"]) == 1
  np.testing.assert_allclose(ds["PSL"].values[0], _field(101_000.0)[0])


def test_variables_map_overrides_names_and_standard_names(tmp_path):
  path = tmp_path / "both.nc"
  write_simple(
    path,
    {
      "prmsl": (_field(101_000.0), {"units": "Pa", "standard_name": "air_pressure_at_sea_level"}),
      "mslet": (_field(100_500.0), {"units": "Pa"}),
      "wind_x": (_field(5.0, nlev=2), {"units": "m s-1"}),
    },
    levels=[1000.0, 850.0],
    level_name="level",
    level_attrs={"units": "hPa"},
  )
  assert "prmsl" in netcdf.open_fields(str(path), ["PSL"])["PSL"].attrs["climjax_source"]
  ds = netcdf.open_fields(str(path), ["PSL", "U850"], name_map={"mslet": "PSL", "wind_x": "U850"})
  np.testing.assert_array_equal(ds["PSL"].values, _field(100_500.0))
  np.testing.assert_array_equal(ds["U850"].values, _field(5.0, nlev=2)[:, 1])
