"""netCDF readers and writer on small files written in CAM5 / ERA5 conventions."""

import glob
import os

import cftime
import netCDF4
import numpy as np
import pytest
import xarray as xr

from climjax.data import archives, netcdf
from climjax.data.errors import DataError

NLAT, NLON = 9, 12
LAT = np.linspace(-80.0, 80.0, NLAT)
LON = np.arange(NLON) * 30.0  # 0..330


def _values(name: str, times: np.ndarray, nlat: int = NLAT, nlon: int = NLON) -> np.ndarray:
  """Distinct values per variable, time step, row and column (so any mix-up shows), each
  within the variable's plausible range (the reader checks every step it reads)."""
  base = {"PSL": 100_000.0, "TMQ": 10.0, "UBOT": -5.0, "T500": 250.0}.get(name, 0.0)
  scale = 10.0 if name == "PSL" else 0.01
  t = np.asarray(times, np.float64)[:, None, None]
  y = np.arange(nlat)[None, :, None]
  x = np.arange(nlon)[None, None, :]
  return (base + scale * (100 * t + 10 * y + 0.1 * x)).astype(np.float32)


def write_cam5_history(
  path,
  days: np.ndarray,
  fields: dict[str, np.ndarray],
  *,
  lat: np.ndarray = LAT,
  lon: np.ndarray = LON,
  names: tuple[str, str, str] = ("time", "lat", "lon"),
  calendar: str = "noleap",
  units: dict[str, str] | None = None,
) -> None:
  """A file laid out like a CAM5 h-file: netCDF4.Dataset, no xarray in the way.

  Each field's `units` are the library's for its name (`units` overrides), as the
  reader converts whatever the file says.
  """
  tname, yname, xname = names
  with netCDF4.Dataset(path, "w", format="NETCDF3_64BIT_OFFSET") as nc:
    nc.Conventions = "CF-1.0"
    nc.source = "CAM"
    nc.case = "test_case"
    nc.createDimension(tname, None)
    nc.createDimension(yname, len(lat))
    nc.createDimension(xname, len(lon))
    time = nc.createVariable(tname, "f8", (tname,))
    time.long_name, time.units, time.calendar = "time", "days since 0001-01-01 00:00:00", calendar
    time.bounds = "time_bnds"
    time[:] = days
    y = nc.createVariable(yname, "f8", (yname,))
    y.long_name, y.units = "latitude", "degrees_north"
    y[:] = lat
    x = nc.createVariable(xname, "f8", (xname,))
    x.long_name, x.units = "longitude", "degrees_east"
    x[:] = lon
    date = nc.createVariable("date", "i4", (tname,))
    date.long_name = "current date (YYYYMMDD)"
    date[:] = np.full(len(days), 20000101)
    for name, values in fields.items():
      var = nc.createVariable(name, "f4", (tname, yname, xname))
      known = archives.LIBRARY_UNITS.get(archives.requested_name(name, {}), "1")
      var.units, var.long_name = (units or {}).get(name, known), f"{name} field"
      var[:] = values


# Days since 0001-01-01 (noleap) of 2000-01-01 00:00 and then every 6 hours.
DAY0 = 1999 * 365.0


def _days(start: int, n: int) -> np.ndarray:
  return DAY0 + 0.25 * np.arange(start, start + n)


def test_reads_a_cam5_history_file_exactly(tmp_path):
  path = tmp_path / "cam5.cam.h2.2000-01-01-00000.nc"
  days = _days(0, 3)
  write_cam5_history(path, days, {"PSL": _values("PSL", range(3)), "TMQ": _values("TMQ", range(3))})
  ds = netcdf.open_fields(str(path))
  assert ds["PSL"].dims == ("time", "lat", "lon")
  assert ds["PSL"].dtype == np.float32
  np.testing.assert_array_equal(ds["PSL"].values, _values("PSL", range(3)))
  np.testing.assert_array_equal(ds["TMQ"].values, _values("TMQ", range(3)))
  np.testing.assert_array_equal(ds["lat"].values, LAT)
  assert ds["PSL"].attrs["units"] == "Pa"
  assert ds["time"].values[0] == cftime.DatetimeNoLeap(2000, 1, 1)
  assert ds["time"].values[2] == cftime.DatetimeNoLeap(2000, 1, 1, 12)
  assert ds["time"].encoding["calendar"] == "noleap"
  # Only (time, lat, lon) fields become data variables: no `date`.
  assert sorted(ds.data_vars) == ["PSL", "TMQ"]
  # Lazy blocks read the same values as the whole.
  np.testing.assert_array_equal(
    ds["PSL"].isel(time=1, lat=slice(2, 5), lon=[7, 3]).values,
    _values("PSL", range(3))[1, 2:5][:, [7, 3]],
  )


def test_time_concatenation_across_files_in_time_order(tmp_path):
  for k in range(3):
    write_cam5_history(
      tmp_path / f"h{k}.nc", _days(2 * k, 2), {"PSL": _values("PSL", range(2 * k, 2 * k + 2))}
    )
  ds = netcdf.open_fields(str(tmp_path / "h*.nc"))
  np.testing.assert_array_equal(ds["PSL"].values, _values("PSL", range(6)))
  assert len(ds["time"]) == 6
  # Given out of order, files are ordered by their times.
  shuffled = [str(tmp_path / f"h{k}.nc") for k in (2, 0, 1)]
  ds = netcdf.open_fields(shuffled)
  np.testing.assert_array_equal(ds["PSL"].values, _values("PSL", range(6)))
  # A read spanning two files.
  np.testing.assert_array_equal(
    ds["PSL"].isel(time=slice(1, 4)).values, _values("PSL", range(1, 4))
  )


def test_variables_split_across_files_merge(tmp_path):
  for k in range(2):
    times = range(2 * k, 2 * k + 2)
    write_cam5_history(tmp_path / f"psl_{k}.nc", _days(2 * k, 2), {"PSL": _values("PSL", times)})
    write_cam5_history(tmp_path / f"tmq_{k}.nc", _days(2 * k, 2), {"TMQ": _values("TMQ", times)})
  ds = netcdf.open_fields(str(tmp_path / "*.nc"), ["TMQ", "PSL"])
  np.testing.assert_array_equal(ds["PSL"].values, _values("PSL", range(4)))
  np.testing.assert_array_equal(ds["TMQ"].values, _values("TMQ", range(4)))
  x = netcdf.to_numpy_nhwc(ds, ["TMQ", "PSL"])
  assert x.shape == (4, NLAT, NLON, 2) and x.dtype == np.float32
  np.testing.assert_array_equal(x[..., 1], _values("PSL", range(4)))


def test_descending_latitude_is_flipped(tmp_path):
  values = _values("PSL", range(2))
  write_cam5_history(tmp_path / "desc.nc", _days(0, 2), {"PSL": values[:, ::-1]}, lat=LAT[::-1])
  ds = netcdf.open_fields(str(tmp_path / "desc.nc"))
  np.testing.assert_array_equal(ds["lat"].values, LAT)
  np.testing.assert_array_equal(ds["PSL"].values, values)
  np.testing.assert_array_equal(ds["PSL"].isel(lat=[0, 8], lon=2).values, values[:, [0, 8], 2])


def test_longitude_minus180_to_180_is_rolled_to_0_360(tmp_path):
  values = _values("PSL", range(2))  # on LON = 0..330
  lon180 = np.arange(-180.0, 180.0, 30.0)
  roll = np.mod(lon180, 360).astype(int) // 30  # column of LON at each lon180
  write_cam5_history(tmp_path / "era.nc", _days(0, 2), {"PSL": values[..., roll]}, lon=lon180)
  ds = netcdf.open_fields(str(tmp_path / "era.nc"))
  np.testing.assert_array_equal(ds["lon"].values, LON)
  np.testing.assert_array_equal(ds["PSL"].values, values)
  # A block across 0 deg, which lies in the middle of the file's longitude axis.
  np.testing.assert_array_equal(ds["PSL"].isel(lon=slice(0, 3)).values, values[..., :3])


def test_era5_names_and_dims_map_onto_cam5(tmp_path):
  fields = {"msl": _values("PSL", range(2)), "tcw": _values("TMQ", range(2))}
  fields["u10"] = _values("UBOT", range(2))
  fields["my_t500"] = _values("T500", range(2))
  path = tmp_path / "era5.nc"
  write_cam5_history(
    path,
    _days(0, 2),
    fields,
    names=("valid_time", "latitude", "longitude"),
    calendar="standard",
    units={"my_t500": "K"},
  )
  ds = netcdf.open_fields(str(path), ["PSL", "tcw", "UBOT", "T500"], name_map={"my_t500": "T500"})
  assert sorted(ds.data_vars) == ["PSL", "T500", "TMQ", "UBOT"]
  np.testing.assert_array_equal(ds["TMQ"].values, fields["tcw"])
  np.testing.assert_array_equal(ds["T500"].values, fields["my_t500"])
  assert ds["PSL"].dims == ("time", "lat", "lon")


def test_write_cam5_netcdf_follows_cam5_conventions_and_round_trips(tmp_path):
  times = [cftime.DatetimeNoLeap(1981, 2, 28, h) for h in (0, 6, 12, 18)]
  psl = _values("PSL", range(4))
  tmq = _values("TMQ", range(4))
  tmq[1, 3, 4] = np.nan
  ds = xr.Dataset(
    {"PSL": (netcdf.DIMS, psl), "TMQ": (netcdf.DIMS, tmq)},
    coords={"time": times, "lat": LAT, "lon": LON},
  )
  path = tmp_path / "out.nc"
  netcdf.write_cam5_netcdf(ds, path)
  assert os.listdir(tmp_path) == ["out.nc"]  # the temporary file was moved, not left
  with netCDF4.Dataset(path) as nc:
    assert nc["time"].units == "days since 0001-01-01 00:00:00"
    assert nc["time"].calendar == "noleap"
    assert nc["lat"].units == "degrees_north" and nc["lon"].units == "degrees_east"
    assert nc["PSL"].dtype == np.float32 and nc["PSL"].units == "Pa"
    assert nc["PSL"].long_name == "Sea level pressure"
    assert nc["PSL"].dimensions == ("time", "lat", "lon")
    np.testing.assert_array_equal(nc["date"][:], [19810228] * 4)
    np.testing.assert_array_equal(nc["datesec"][:], [0, 21600, 43200, 64800])
    assert nc["TMQ"]._FillValue == np.float32(1e36)
    # 1981-02-28 on a 365-day calendar from year 1.
    assert nc["time"][0] == 1980 * 365 + 31 + 27
  back = netcdf.open_fields(str(path))
  np.testing.assert_array_equal(back["PSL"].values, psl)
  np.testing.assert_array_equal(back["TMQ"].values, tmq)  # NaN survives as _FillValue
  assert list(back["time"].values) == times


# ---------------------------------------------------------------------------
# Errors: each one a DataError naming the file and the variable, on one line
# ---------------------------------------------------------------------------


def _assert_names(error: pytest.ExceptionInfo, path, variable: str | None) -> None:
  message = str(error.value)
  assert "\n" not in message
  assert os.fspath(path) in message, message
  if variable is not None:
    assert variable in message, message


def test_missing_variable(tmp_path):
  path = tmp_path / "a.nc"
  write_cam5_history(path, _days(0, 1), {"PSL": _values("PSL", [0])})
  with pytest.raises(DataError, match="not found") as e:
    netcdf.open_fields(str(path), ["PSL", "TMQ"])
  _assert_names(e, path, "TMQ")


def test_wrong_dims(tmp_path):
  path = tmp_path / "a.nc"
  write_cam5_history(path, _days(0, 1), {"PSL": _values("PSL", [0])})
  with netCDF4.Dataset(path, "a") as nc:
    nc.createVariable("TMQ", "f4", ("lat", "lon"))[:] = np.ones((NLAT, NLON))
  with pytest.raises(DataError, match=r"expected dimensions \(time, lat, lon\)") as e:
    netcdf.open_fields(str(path), ["TMQ"])
  _assert_names(e, path, "TMQ")


def test_non_monotonic_coordinates(tmp_path):
  path = tmp_path / "a.nc"
  lat = LAT.copy()
  lat[[3, 4]] = lat[[4, 3]]
  write_cam5_history(path, _days(0, 1), {"PSL": _values("PSL", [0])}, lat=lat)
  with pytest.raises(DataError, match="not strictly monotonic") as e:
    netcdf.open_fields(str(path))
  _assert_names(e, path, "lat")


def test_repeated_times(tmp_path):
  path = tmp_path / "a.nc"
  write_cam5_history(path, np.array([DAY0, DAY0]), {"PSL": _values("PSL", [0, 1])})
  with pytest.raises(DataError, match="strictly increasing") as e:
    netcdf.open_fields(str(path))
  _assert_names(e, path, "time")


def test_all_nan_field_at_open_and_at_read(tmp_path):
  first = tmp_path / "first.nc"
  values = _values("PSL", range(2))
  values[0] = np.nan
  write_cam5_history(first, _days(0, 2), {"PSL": values})
  with pytest.raises(DataError, match="all NaN") as e:
    netcdf.open_fields(str(first))
  _assert_names(e, first, "PSL")

  later = tmp_path / "later.nc"
  values = _values("PSL", range(2))
  values[1] = np.nan
  write_cam5_history(later, _days(0, 2), {"PSL": values})
  ds = netcdf.open_fields(str(later))  # the first step is fine
  with pytest.raises(DataError, match="time step 1 is all NaN") as e:
    ds["PSL"].values  # noqa: B018
  _assert_names(e, later, "PSL")


def test_corrupt_file(tmp_path):
  path = tmp_path / "broken.nc"
  path.write_bytes(b"CDF\x02" + os.urandom(200))
  with pytest.raises(DataError, match="cannot be read as netCDF") as e:
    netcdf.open_fields(str(path))
  _assert_names(e, path, None)


def test_corrupt_values_fail_at_read(tmp_path):
  path = tmp_path / "zipped.nc"
  with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
    for dim, size in (("time", None), ("lat", 40), ("lon", 60)):
      nc.createDimension(dim, size)
    time = nc.createVariable("time", "f8", ("time",))
    time.units, time.calendar = "days since 0001-01-01 00:00:00", "noleap"
    time[:] = _days(0, 3)
    nc.createVariable("lat", "f8", ("lat",))[:] = np.linspace(-80, 80, 40)
    nc.createVariable("lon", "f8", ("lon",))[:] = np.arange(60) * 6.0
    psl = nc.createVariable("PSL", "f4", netcdf.DIMS, zlib=True, chunksizes=(1, 40, 60))
    psl.units = "Pa"
    psl[:] = 100_000.0 + 1000.0 * np.random.default_rng(0).random((3, 40, 60))
  data = bytearray(path.read_bytes())
  n = len(data)
  data[n // 2 : 4 * n // 5] = b"\xff" * (4 * n // 5 - n // 2)  # the compressed chunks
  path.write_bytes(bytes(data))
  with pytest.raises(DataError, match="cannot read values") as e:
    netcdf.open_fields(str(path))["PSL"].values  # noqa: B018
  _assert_names(e, path, "PSL")


def test_missing_file_and_empty_glob(tmp_path):
  with pytest.raises(DataError, match="file not found") as e:
    netcdf.open_fields(str(tmp_path / "nope.nc"))
  _assert_names(e, tmp_path / "nope.nc", None)
  pattern = str(tmp_path / "none_*.nc")
  with pytest.raises(DataError, match="no files match") as e:
    netcdf.open_fields(pattern)
  _assert_names(e, pattern, None)


def test_overlapping_times_and_mismatched_grids(tmp_path):
  write_cam5_history(tmp_path / "a.nc", _days(0, 2), {"PSL": _values("PSL", range(2))})
  write_cam5_history(tmp_path / "b.nc", _days(1, 2), {"PSL": _values("PSL", range(1, 3))})
  with pytest.raises(DataError, match="overlap") as e:
    netcdf.open_fields(str(tmp_path / "*.nc"))
  _assert_names(e, tmp_path / "b.nc", "PSL")

  write_cam5_history(tmp_path / "c.nc", _days(0, 2), {"TMQ": _values("TMQ", range(2))}, lat=LAT + 1)
  with pytest.raises(DataError, match="lat/lon values differ") as e:
    netcdf.open_fields([str(tmp_path / "a.nc"), str(tmp_path / "c.nc")])
  _assert_names(e, tmp_path / "c.nc", "TMQ")

  write_cam5_history(tmp_path / "d.nc", _days(0, 3), {"TMQ": _values("TMQ", range(3))})
  with pytest.raises(DataError, match="time axis") as e:
    netcdf.open_fields([str(tmp_path / "a.nc"), str(tmp_path / "d.nc")])
  _assert_names(e, tmp_path / "d.nc", "TMQ")


def test_to_numpy_nhwc_missing_channel_names_the_file(tmp_path):
  path = tmp_path / "a.nc"
  write_cam5_history(path, _days(0, 1), {"PSL": _values("PSL", [0])})
  ds = netcdf.open_fields(str(path))
  with pytest.raises(DataError, match="not in the dataset") as e:
    netcdf.to_numpy_nhwc(ds, ["PSL", "TMQ"])
  _assert_names(e, path, "TMQ")


def test_error_pickles_with_its_parts(tmp_path):
  import pickle

  error = DataError(tmp_path / "x.nc", "bad\nthing", "PSL")
  again = pickle.loads(pickle.dumps(error))
  assert str(again) == str(error) == f"{tmp_path / 'x.nc'}: variable PSL: bad thing"
  assert (again.path, again.variable) == (str(tmp_path / "x.nc"), "PSL")
  assert isinstance(again, ValueError)
  assert not glob.glob(str(tmp_path / ".tmp-*"))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the checker's own ioos_sos suite
def test_write_cam5_netcdf_passes_a_cf_checker(tmp_path):
  # IOOS compliance-checker (the `test` extra), CF-1.8 at its strictest: no errors, no warnings.
  import json

  from climjax.data import synthetic

  runner = pytest.importorskip("compliance_checker.runner", reason="compliance-checker missing")
  runner.CheckSuite.load_all_available_checkers()
  ds, _ = synthetic.generate_fields(2, seed=0, nlat=12, nlon=24)
  ds.attrs["Conventions"] = "CF-1.0"  # what a dataset read from a CAM5 file may say
  ds["PRECT"].values[1, 2, 3] = np.nan  # a _FillValue in the file
  ds["LANDFRAC"] = (netcdf.DIMS, np.zeros(ds["PSL"].shape, np.float32))
  path = tmp_path / "cam5.nc"
  netcdf.write_cam5_netcdf(ds, path)
  with netCDF4.Dataset(path) as nc:
    assert nc.Conventions == "CF-1.8" and nc.history
    for name, axis in (("time", "T"), ("lat", "Y"), ("lon", "X")):
      assert nc[name].axis == axis and nc[name].standard_name == {
        "lat": "latitude",
        "lon": "longitude",
      }.get(name, name)
    assert nc["PSL"].standard_name == "air_pressure_at_mean_sea_level"
  report = tmp_path / "report.json"
  passed, errors = runner.ComplianceChecker.run_checker(
    str(path), ["cf:1.8"], 0, "strict", output_filename=str(report), output_format="json"
  )
  result = json.loads(report.read_text())["cf:1.8"]
  messages = [m for p in result["all_priorities"] for m in p["msgs"]]
  assert passed and not errors, messages
  assert messages == [], messages
