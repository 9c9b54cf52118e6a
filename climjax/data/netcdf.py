"""CAM5 / CF netCDF readers and a CAM5 history-file writer.

`open_fields` turns one file, many files or a glob into one lazily read
`xarray.Dataset` in the library's conventions: dims (time, lat, lon), latitude
ascending, longitude 0-360 ascending, float32 fields, CF time decoded (CAM5's
"days since 0001-01-01" on the noleap calendar decodes to cftime dates).
Files may split the record along time, along variables, or both; names from
other products (ERA5 `msl`, CMIP `prw`, ...) are mapped onto CAM5 names.

Nothing is read until values are asked for, and then only the requested
block: dask is not a dependency, so each field is an xarray lazily indexed
array over the per-file variables (time concatenation, the latitude flip and
the longitude roll are index arithmetic done at read time). Pass `chunks=` to
get dask arrays instead where dask is installed.

Every problem with the input is a `DataError` naming the file and variable.
"""

from __future__ import annotations

import datetime
import glob
import os
import tempfile
import warnings
from collections.abc import Mapping, Sequence

import cftime
import netCDF4
import numpy as np
import xarray as xr
from xarray.backends import BackendArray
from xarray.core import indexing

from climjax.data.errors import DataError
from climjax.data.variables import ALIASES, CAM5_VARIABLES

# Dimension and coordinate names accepted for each role, as used by CAM5, CMIP and ERA5.
TIME_NAMES: tuple[str, ...] = ("time", "valid_time", "Time")
LAT_NAMES: tuple[str, ...] = ("lat", "latitude")
LON_NAMES: tuple[str, ...] = ("lon", "longitude")
DIMS: tuple[str, str, str] = ("time", "lat", "lon")

# CAM5 history files count time in days since year 1 on a 365-day calendar.
CAM5_TIME_UNITS = "days since 0001-01-01 00:00:00"
CAM5_CALENDAR = "noleap"
CAM5_FILL_VALUE = np.float32(1e36)

PathLike = str | os.PathLike


# ---------------------------------------------------------------------------
# Finding and scanning files
# ---------------------------------------------------------------------------


def _expand_paths(paths: PathLike | Sequence[PathLike]) -> tuple[list[str], str]:
  """The files named by `paths` (globs expanded) and a short description for errors."""
  items = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
  if not items:
    raise DataError("<no paths>", "no netCDF files were given")
  files: list[str] = []
  for item in items:
    item = os.fspath(item)
    if glob.has_magic(item):
      matches = sorted(glob.glob(item))
      if not matches:
        raise DataError(item, "no files match this pattern")
      files.extend(matches)
    elif not os.path.exists(item):
      raise DataError(item, "file not found")
    else:
      files.append(item)
  described = os.fspath(items[0]) if len(items) == 1 else f"{files[0]} (and {len(files) - 1} more)"
  return files, described


def _role(dim: str) -> str | None:
  for role, names in zip(DIMS, (TIME_NAMES, LAT_NAMES, LON_NAMES), strict=True):
    if dim in names:
      return role
  return None


def _decode_time(path: str, name: str, values: np.ndarray, attrs: Mapping) -> np.ndarray:
  if "units" not in attrs:
    raise DataError(path, "time coordinate has no 'units' attribute (CF: 'days since ...')", name)
  probe = xr.Dataset({name: ((name,), values, dict(attrs))})
  try:
    with warnings.catch_warnings():
      # Dates before 1582 (CAM5's year 1) decode to cftime with a warning; that is expected.
      warnings.simplefilter("ignore")
      decoded = xr.decode_cf(probe)[name].values
  except Exception as e:  # noqa: BLE001 - any decoding failure is a data problem
    raise DataError(
      path, f"cannot decode time units {attrs.get('units')!r}: {type(e).__name__}: {e}", name
    ) from e
  if len(decoded) > 1 and not np.all(decoded[1:] > decoded[:-1]):
    raise DataError(path, "time values are not strictly increasing", name)
  return decoded


def _check_monotonic(path: str, name: str, values: np.ndarray) -> bool:
  """Whether a 1-D coordinate ascends; raises unless it is strictly monotonic."""
  if values.ndim != 1 or values.size == 0:
    raise DataError(path, f"expected a non-empty 1-D coordinate, found shape {values.shape}", name)
  if not np.all(np.isfinite(values)):
    raise DataError(path, "coordinate holds non-finite values", name)
  steps = np.diff(values)
  if np.all(steps > 0):
    return True
  if np.all(steps < 0):
    return False
  raise DataError(
    path, "coordinate is not strictly monotonic (expected ascending or descending)", name
  )


class _FileInfo:
  """What one file holds: its fields under CAM5 names and its decoded coordinates."""

  def __init__(self, path: str, name_map: Mapping[str, str]):
    self.path = path
    try:
      ds = xr.open_dataset(
        path,
        engine="netcdf4",
        decode_times=False,
        decode_timedelta=False,
        decode_coords=False,
        cache=False,
      )
    except Exception as e:  # noqa: BLE001 - whatever the library says, the file is unreadable
      raise DataError(path, f"cannot be read as netCDF ({type(e).__name__}: {e})") from e
    self.ds = ds
    self.fields: dict[str, str] = {}  # CAM5 name -> name in the file
    self.bad_dims: dict[str, tuple[str, ...]] = {}  # CAM5 name -> dims of a non-field
    for name, var in ds.data_vars.items():
      canonical = name_map.get(name, name)
      roles = tuple(_role(d) for d in var.dims)
      if roles == DIMS:
        if canonical in self.fields:
          raise DataError(
            path,
            f"both {self.fields[canonical]!r} and {name!r} map to {canonical}; "
            "pass name_map to say which to use",
            canonical,
          )
        self.fields[canonical] = name
      else:
        self.bad_dims[canonical] = var.dims
    self.dim_names: dict[str, str] = {}
    self.time = np.array([])
    self.lat = self.lon = np.array([])
    if self.fields:
      self._read_coordinates()

  def _read_coordinates(self) -> None:
    ds, path = self.ds, self.path
    first = ds[next(iter(self.fields.values()))]
    for role, dim in zip(DIMS, first.dims, strict=True):
      self.dim_names[role] = dim
      if dim not in ds.variables:
        raise DataError(path, f"no coordinate variable for dimension {dim!r}", dim)
    for name in self.fields.values():
      if ds[name].dims != first.dims:
        raise DataError(path, f"expected dimensions {first.dims}, found {ds[name].dims}", name)
    tname, yname, xname = (self.dim_names[r] for r in DIMS)
    self.time = _decode_time(path, tname, ds[tname].values, ds[tname].attrs)
    if len(self.time) == 0:
      raise DataError(path, "holds no time steps (expected at least one)", tname)
    self.time_encoding = {
      "units": ds[tname].attrs.get("units"),
      "calendar": ds[tname].attrs.get("calendar", "standard"),
    }
    lat = np.asarray(ds[yname].values, np.float64)
    lon = np.asarray(ds[xname].values, np.float64)
    self.lat_ascending = _check_monotonic(path, yname, lat)
    _check_monotonic(path, xname, lon)
    if lat.min() < -90 or lat.max() > 90:
      raise DataError(path, "latitudes outside [-90, 90]", yname)
    self.lat = lat if self.lat_ascending else lat[::-1]
    lon360 = np.mod(lon, 360.0)
    # Where the file's longitudes go in the 0-360 ascending order.
    self.lon_order = np.argsort(lon360, kind="stable")
    self.lon = lon360[self.lon_order]
    if np.any(np.diff(self.lon) <= 0):
      raise DataError(path, "longitudes repeat once converted to 0-360", xname)


# ---------------------------------------------------------------------------
# The lazy field: time concatenation, latitude flip and longitude roll at read time
# ---------------------------------------------------------------------------


class _FieldArray(BackendArray):
  """One (time, lat, lon) float32 field read from one or more files on demand."""

  def __init__(self, name: str, pieces: list[tuple[_FileInfo, str]]):
    self.name = name
    self.pieces = [(info.path, info.ds.variables[vname], info.lat_ascending, info.lon_order)
                   for info, vname in pieces]  # fmt: skip
    self.offsets = np.cumsum([0] + [len(info.time) for info, _ in pieces])
    first = pieces[0][0]
    self.times = np.concatenate([info.time for info, _ in pieces])
    self.shape = (int(self.offsets[-1]), len(first.lat), len(first.lon))
    self.dtype = np.dtype(np.float32)

  def __getitem__(self, key: indexing.ExplicitIndexer) -> np.ndarray:
    return indexing.explicit_indexing_adapter(
      key, self.shape, indexing.IndexingSupport.OUTER, self._read
    )

  def _read(self, key: tuple) -> np.ndarray:
    picks, scalar = [], []
    for k, n in zip(key, self.shape, strict=True):
      scalar.append(isinstance(k, int | np.integer))
      picks.append(np.atleast_1d(np.arange(n)[k]))
    t, y, x = picks
    out = np.empty((len(t), len(y), len(x)), np.float32)
    full_plane = len(np.unique(y)) == self.shape[1] and len(np.unique(x)) == self.shape[2]
    for p, (path, var, ascending, lon_order) in enumerate(self.pieces):
      here = (t >= self.offsets[p]) & (t < self.offsets[p + 1])
      if not here.any() or len(y) == 0 or len(x) == 0:
        continue
      local = t[here] - self.offsets[p]
      fy = y if ascending else self.shape[1] - 1 - y
      fx = lon_order[x]
      # Read the bounding block with plain slices (what netCDF does fast), pick in memory.
      t0, y0, x0 = local.min(), fy.min(), fx.min()
      try:
        block = var[t0 : local.max() + 1, y0 : fy.max() + 1, x0 : fx.max() + 1].values
      except Exception as e:  # noqa: BLE001 - a failed read is a corrupt or truncated file
        raise DataError(path, f"cannot read values ({type(e).__name__}: {e})", self.name) from e
      block = np.asarray(block, np.float32)[np.ix_(local - t0, fy - y0, fx - x0)]
      if full_plane:
        empty = np.isnan(block).all(axis=(1, 2))
        if empty.any():
          step = int(local[np.argmax(empty)])
          raise DataError(
            path, f"time step {step} is all NaN (expected a field with finite values)", self.name
          )
      out[here] = block
    index = tuple(0 if s else slice(None) for s in scalar)
    return out[index]


# ---------------------------------------------------------------------------
# Public readers
# ---------------------------------------------------------------------------


def open_fields(
  paths: PathLike | Sequence[PathLike],
  variables: Sequence[str] | None = None,
  *,
  name_map: Mapping[str, str] | None = None,
  chunks: Mapping[str, int] | None = None,
) -> xr.Dataset:
  """Opens CAM5 / CF netCDF fields lazily as one dataset in the library's conventions.

  Args:
    paths: a file, a glob pattern, or a sequence of either. Files may hold
      consecutive times, different variables, or both; every variable must end
      up on the same time axis and all files on the same lat/lon grid.
    variables: CAM5 names (or aliases) of the fields to open; `None` opens every
      (time, lat, lon) field found.
    name_map: names in the files -> CAM5 names, on top of `variables.ALIASES`.
    chunks: dask chunk sizes per dimension (needs dask); `None` keeps the
      fields as lazily indexed arrays read block by block on access.

  Returns:
    A dataset with dims (time, lat, lon): latitude ascending, longitude in
    [0, 360) ascending, float32 fields, decoded time.

  Raises:
    DataError: naming the file and variable, for missing files or variables,
      unreadable files, wrong dims, non-monotonic coordinates, grids or time
      axes that do not line up, and fields that are all NaN.
  """
  files, described = _expand_paths(paths)
  names = {**ALIASES, **(name_map or {})}
  infos = [_FileInfo(path, names) for path in files]

  if variables is None:
    wanted = sorted({name for info in infos for name in info.fields})
    if not wanted:
      raise DataError(described, "no (time, lat, lon) fields found")
  else:
    wanted = list(dict.fromkeys(names.get(v, v) for v in variables))

  data_vars, time_axis, grid_info = {}, None, None
  for name in wanted:
    holders = [info for info in infos if name in info.fields]
    if not holders:
      with_dims = [info for info in infos if name in info.bad_dims]
      if with_dims:
        info = with_dims[0]
        raise DataError(
          info.path, f"expected dimensions (time, lat, lon), found {info.bad_dims[name]}", name
        )
      found = sorted({n for info in infos for n in info.fields})
      raise DataError(described, f"not found; the files hold fields {found}", name)
    holders.sort(key=lambda info: info.time[0])
    for before, after in zip(holders, holders[1:], strict=False):
      if not after.time[0] > before.time[-1]:
        raise DataError(
          after.path, f"times overlap those of {before.path} (expected consecutive files)", name
        )
    grid_info = grid_info or holders[0]
    for info in holders:
      if info.lat.shape != grid_info.lat.shape or info.lon.shape != grid_info.lon.shape:
        raise DataError(
          info.path,
          f"grid {len(info.lat)}x{len(info.lon)} differs from {grid_info.path}'s "
          f"{len(grid_info.lat)}x{len(grid_info.lon)}",
          name,
        )
      if not (np.allclose(info.lat, grid_info.lat) and np.allclose(info.lon, grid_info.lon)):
        raise DataError(info.path, f"lat/lon values differ from those of {grid_info.path}", name)
      calendars = (info.time_encoding["calendar"], grid_info.time_encoding["calendar"])
      if calendars[0] != calendars[1]:
        raise DataError(
          info.path, f"calendar {calendars[0]!r} differs from {grid_info.path}'s {calendars[1]!r}"
        )

    array = _FieldArray(name, [(info, info.fields[name]) for info in holders])
    if time_axis is None:
      time_axis, time_from = array.times, name
    elif len(array.times) != len(time_axis) or not np.all(array.times == time_axis):
      raise DataError(
        holders[0].path,
        f"time axis ({len(array.times)} steps, {array.times[0]} to {array.times[-1]}) differs "
        f"from that of {time_from} ({len(time_axis)} steps, {time_axis[0]} to {time_axis[-1]})",
        name,
      )
    source = holders[0].ds[holders[0].fields[name]]
    attrs = {k: v for k, v in source.attrs.items() if k not in ("_FillValue", "missing_value")}
    encoding = {"source": holders[0].path, "sources": [info.path for info in holders]}
    data_vars[name] = xr.Variable(DIMS, indexing.LazilyIndexedArray(array), attrs, encoding)
    _check_first_step(data_vars[name])

  ds = xr.Dataset(
    data_vars,
    coords={
      "time": ("time", time_axis, {"long_name": "time"}),
      "lat": ("lat", grid_info.lat, {"units": "degrees_north", "long_name": "latitude"}),
      "lon": ("lon", grid_info.lon, {"units": "degrees_east", "long_name": "longitude"}),
    },
  )
  ds["time"].encoding.update(grid_info.time_encoding)
  ds.encoding["source_files"] = files
  if chunks is not None:
    try:
      import dask  # noqa: F401
    except ImportError:
      raise ImportError(
        "open_fields(chunks=...) needs dask, which is not installed: "
        "pip install dask, or leave chunks=None to read lazily block by block"
      ) from None
    ds = ds.chunk(chunks)
  return ds


def _check_first_step(field: xr.Variable) -> None:
  # One cheap read at open time catches empty fields and corrupt files before training
  # starts; later steps are checked as they are read.
  if field.shape[0] > 0:
    field[0].values  # noqa: B018 - reading is the check


def to_numpy_nhwc(ds: xr.Dataset, channels: Sequence[str]) -> np.ndarray:
  """Stacks fields into one float32 array (..., lat, lon, channel), loading them.

  Raises:
    DataError: if a channel is missing or the fields' dims differ.
  """
  source = ds.encoding.get("source_files", ["<in-memory dataset>"])
  source = source[0] if len(source) == 1 else f"{source[0]} (and {len(source) - 1} more)"
  if not channels:
    raise ValueError("to_numpy_nhwc needs at least one channel")
  dims = None
  for name in channels:
    if name not in ds.data_vars:
      raise DataError(source, f"not in the dataset (it holds {sorted(ds.data_vars)})", name)
    if ds[name].dims[-2:] != ("lat", "lon"):
      raise DataError(source, f"expected dims (..., lat, lon), found {ds[name].dims}", name)
    if dims is None:
      dims, first = ds[name].dims, name
    elif ds[name].dims != dims:
      raise DataError(source, f"dims {ds[name].dims} differ from {first}'s {dims}", name)
  shape = ds[channels[0]].shape
  out = np.empty((*shape, len(channels)), np.float32)
  for c, name in enumerate(channels):
    out[..., c] = ds[name].values
  return out


# ---------------------------------------------------------------------------
# Writer
# ---------------------------------------------------------------------------


def _cftime_dates(times: np.ndarray, calendar: str | None) -> tuple[list, str]:
  """Time values as cftime/datetime objects and the calendar to write them in."""
  values = np.asarray(times)
  if values.dtype.kind == "M":
    dates = [datetime.datetime.fromisoformat(str(t.astype("datetime64[us]"))) for t in values]
    calendar = calendar or CAM5_CALENDAR
    if calendar == CAM5_CALENDAR and any(d.month == 2 and d.day == 29 for d in dates):
      raise ValueError(
        "times include 29 February, which the noleap calendar of CAM5 lacks; "
        "pass calendar='standard' or 'proleptic_gregorian'"
      )
    return dates, calendar
  dates = list(values)
  if dates and isinstance(dates[0], cftime.datetime):
    return dates, calendar or dates[0].calendar
  raise ValueError(f"time values of dtype {values.dtype} are neither datetime64 nor cftime dates")


def write_cam5_netcdf(
  ds: xr.Dataset,
  path: PathLike,
  *,
  time_units: str = CAM5_TIME_UNITS,
  calendar: str | None = None,
  write_date: bool = True,
  file_format: str = "NETCDF4_CLASSIC",
) -> None:
  """Writes (time, lat, lon) fields as a CAM5 history-style netCDF file, atomically.

  Follows CAM5's conventions: `time` in `time_units` on the dataset's calendar
  (cftime dates keep theirs; datetime64 dates are written on CAM5's noleap
  calendar), float64 `lat`/`lon` in degrees_north/east, float32 fields with
  `units`/`long_name` (from the field's attrs, else the CAM5 catalogue) and a
  1e36 `_FillValue` where values are NaN, plus CAM5's integer `date`
  (YYYYMMDD) and `datesec` (seconds of the day) when `write_date`. The file is
  written beside `path` under a temporary name and moved into place, so a
  reader never sees half a file.
  """
  for name, var in ds.data_vars.items():
    if var.dims != DIMS:
      raise ValueError(f"write_cam5_netcdf: {name} has dims {var.dims}, expected {DIMS}")
  dates, calendar = _cftime_dates(ds["time"].values, calendar)
  path = os.fspath(path)
  directory = os.path.dirname(os.path.abspath(path))
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".nc")
  os.close(fd)
  try:
    with netCDF4.Dataset(tmp, "w", format=file_format) as nc:
      nc.Conventions = "CF-1.0"
      nc.source = "CAM"
      for key, value in ds.attrs.items():
        if isinstance(value, str | int | float | np.number):
          nc.setncattr(key, value)
      nc.createDimension("time", None)
      nc.createDimension("lat", ds.sizes["lat"])
      nc.createDimension("lon", ds.sizes["lon"])

      time = nc.createVariable("time", "f8", ("time",))
      time.long_name = "time"
      time.units = time_units
      time.calendar = calendar
      time[:] = cftime.date2num(dates, time_units, calendar) if dates else []
      lat = nc.createVariable("lat", "f8", ("lat",))
      lat.long_name, lat.units = "latitude", "degrees_north"
      lat[:] = ds["lat"].values
      lon = nc.createVariable("lon", "f8", ("lon",))
      lon.long_name, lon.units = "longitude", "degrees_east"
      lon[:] = ds["lon"].values
      if write_date:
        date = nc.createVariable("date", "i4", ("time",))
        date.long_name = "current date (YYYYMMDD)"
        date[:] = [d.year * 10_000 + d.month * 100 + d.day for d in dates]
        datesec = nc.createVariable("datesec", "i4", ("time",))
        datesec.long_name = "current seconds of current date"
        datesec[:] = [d.hour * 3600 + d.minute * 60 + d.second for d in dates]

      for name, var in ds.data_vars.items():
        values = np.asarray(var.values, np.float32)
        has_nan = bool(np.isnan(values).any())
        field = nc.createVariable(name, "f4", DIMS, fill_value=CAM5_FILL_VALUE if has_nan else None)
        known = CAM5_VARIABLES.get(name)
        field.units = var.attrs.get("units", known.units if known else "1")
        field.long_name = var.attrs.get("long_name", known.long_name if known else name)
        if has_nan:
          field.missing_value = CAM5_FILL_VALUE
        field[:] = np.ma.masked_invalid(values) if has_nan else values
    os.replace(tmp, path)
  except BaseException:
    os.unlink(tmp)
    raise
