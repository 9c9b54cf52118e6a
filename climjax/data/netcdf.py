"""CAM5 / CF netCDF readers and a CAM5 history-file writer.

`open_fields` turns one file, many files or a glob into one lazily read
`xarray.Dataset` in the library's conventions: dims (time, lat, lon), latitude
ascending, longitude 0-360 ascending, float32 fields in the units of
`variables.CAM5_VARIABLES`, CF time decoded (CAM5's "days since 0001-01-01" on
the noleap calendar decodes to cftime dates). Files may split the record along
time, along variables, or both.

Files from public archives are read as they are (`climjax.data.archives` has
the tables): a variable is found by its CF `standard_name`, then by CAM5,
ERA5, GRIB/NCEP and CMIP names; U850, T500, Z200, ... come from (time, level,
lat, lon) fields on pressure levels, interpolated linearly in log pressure
where the file lacks the level; every field's `units` are converted to the
library's, and values outside a plausible range are refused (the first step
when the files are opened, every step as it is read).

Nothing is read until values are asked for, and then only the requested
block: dask is not a dependency, so each field is an xarray lazily indexed
array over the per-file variables (time concatenation, level selection, the
latitude flip, the longitude roll and the units are arithmetic done at read
time). Pass `chunks=` to get dask arrays instead where dask is installed.

Every problem with the input is a `DataError` naming the file and variable.
"""

from __future__ import annotations

import dataclasses
import datetime
import glob
import os
import tempfile
import warnings
from collections.abc import Mapping, Sequence

import cftime
import netCDF4
import numpy as np
import pandas as pd
import xarray as xr
from xarray.backends import BackendArray
from xarray.core import indexing

from climjax.data import archives
from climjax.data.errors import DataError
from climjax.data.variables import CAM5_VARIABLES

# Dimension and coordinate names accepted for each role (attributes are read first).
TIME_NAMES: tuple[str, ...] = archives.TIME_NAMES
LAT_NAMES: tuple[str, ...] = archives.LAT_NAMES
LON_NAMES: tuple[str, ...] = archives.LON_NAMES
DIMS: tuple[str, str, str] = ("time", "lat", "lon")

# CAM5 history files count time in days since year 1 on a 365-day calendar.
CAM5_TIME_UNITS = "days since 0001-01-01 00:00:00"
CAM5_CALENDAR = "noleap"
CAM5_FILL_VALUE = np.float32(1e36)
CF_CONVENTIONS = "CF-1.8"
# What a read does with missing values (NaN, _FillValue): see `open_fields`.
NONFINITE: tuple[str, ...] = ("missing", "refuse", "mask")

PathLike = str | os.PathLike

_TIME_FIX = (
  "add CF units, e.g. ncatted -a units,{name},c,c,'hours since 2000-01-01 00:00:00' {path} "
  "(and -a calendar,{name},c,c,'standard')"
)


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


def _decode_time(path: str, name: str, values: np.ndarray, attrs: Mapping) -> np.ndarray:
  if not archives.is_time_units(attrs.get("units")):
    found = f"units {attrs['units']!r}" if "units" in attrs else "no units"
    raise DataError(
      path,
      f"time coordinate has {found}, not CF time units ('<unit> since <date>'); "
      + _TIME_FIX.format(name=name, path=path),
      name,
    )
  numbers = np.atleast_1d(values)
  if numbers.dtype.kind in "fc" and not np.all(np.isfinite(numbers)):
    raise DataError(path, "time values include NaN or Inf (expected finite numbers)", name)
  probe = xr.Dataset({name: ((name,), numbers, dict(attrs))})
  try:
    with warnings.catch_warnings():
      # Dates before 1582 (CAM5's year 1) decode to cftime with a warning; that is expected.
      warnings.simplefilter("ignore")
      decoded = xr.decode_cf(probe)[name].values
  except Exception as e:  # noqa: BLE001 - any decoding failure is a data problem
    raise DataError(
      path, f"cannot decode time units {attrs.get('units')!r}: {type(e).__name__}: {e}", name
    ) from e
  return decoded


def _parse_dates(path: str, name: str, values: np.ndarray) -> np.ndarray:
  """ISO 8601 date strings ('2000-01-01 06:00:00') as datetime64, the standard calendar."""
  text = [v.decode() if isinstance(v, bytes) else str(v) for v in np.ravel(values)]
  try:
    return pd.to_datetime(text, format="ISO8601").to_numpy("datetime64[ns]")
  except (ValueError, TypeError) as e:
    raise DataError(
      path,
      f"time strings such as {text[0]!r} are not ISO 8601 dates ({e}); store time as numbers "
      "with CF units instead: " + _TIME_FIX.format(name=name, path=path),
      name,
    ) from e


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


@dataclasses.dataclass
class _Source:
  """One climjax field in one file: the variable, where its axes are, its levels and units."""

  target: str
  var_name: str
  rank: int  # lower wins where two variables give one field (`archives.Identity`)
  how: str  # how the variable was identified, for messages
  axes: dict[str, int]  # "time", "lat", "lon", "level" -> axis of the variable
  fixed: dict[int, int]  # other one-valued axes (a 2 m height) -> the index read
  levels: list[tuple[int, float]] | None = None  # (index on the level axis, weight)
  level_note: str = ""
  scale: float = 1.0
  offset: float = 0.0
  units_note: str = ""

  @property
  def where(self) -> str:
    """The field as error messages name it: 'PSL (msl in the file)'."""
    if self.var_name == self.target:
      return self.target
    return f"{self.target} ({self.var_name} in the file)"

  @property
  def static(self) -> bool:
    return "time" not in self.axes


class _FileInfo:
  """What one file holds: its fields under climjax names and its decoded coordinates."""

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
    self.roles = {dim: self._dim_role(dim) for dim in ds.dims}
    self.fields: dict[str, _Source] = {}  # climjax name -> where it is in this file
    self.bad: dict[str, str] = {}  # climjax name -> why this file cannot give it
    self.others: list[str] = []  # variables not identified, described for errors
    candidates = []
    for name, var in ds.data_vars.items():
      candidates.extend(self._sources(name, var, name_map))
    for source in sorted(candidates, key=lambda s: s.rank):
      held = self.fields.get(source.target)
      if held is None:
        self.fields[source.target] = source
      elif held.rank == source.rank and held.var_name != source.var_name:
        raise DataError(
          path,
          f"both {held.var_name!r} and {source.var_name!r} map to {source.target} "
          f"({held.how}, {source.how}); pass name_map (variables_map) to say which to use",
          source.target,
        )
    self.time = np.array([])
    self.lat = self.lon = np.array([])
    self.time_encoding: dict = {}
    if self.fields:
      self._read_coordinates()
    for target in self.fields:
      self.bad.pop(target, None)

  # -- what the variables are ------------------------------------------------

  def _dim_role(self, dim: str) -> str | None:
    var = self.ds.variables.get(dim)
    if var is None:
      return archives.coordinate_role(dim, {}, None)
    values = var.values if var.ndim == 1 and var.dtype.kind in "fiu" else None
    return archives.coordinate_role(dim, var.attrs, values)

  def _scalar(self, var, kind: str):
    """A one-valued coordinate the variable names in `coordinates`: pressure (hPa) or 2 m / 10 m."""
    for name in str(var.attrs.get("coordinates", "")).split():
      coord = self.ds.variables.get(name)
      if coord is None or coord.size != 1 or coord.dtype.kind not in "fiu":
        continue
      if kind == "level":
        hpa = archives.pressure_hpa(name, coord.attrs, coord.values.ravel())
        if hpa is not None:
          return float(hpa[0])
      elif archives.is_near_surface_height(name, coord.attrs, coord.values):
        return True
    return None

  def describe(self, name: str) -> str:
    var = self.ds.variables[name]
    parts = [str(var.attrs[k]) for k in ("standard_name", "units") if var.attrs.get(k)]
    return f"{name} ({', '.join([*parts, 'dims ' + ','.join(var.dims)])})"

  def _sources(self, name: str, var, name_map) -> list[_Source]:
    """The climjax fields one variable gives (several for a field on pressure levels)."""
    roles = [self.roles.get(d) for d in var.dims]
    idents = archives.identify(name, var.attrs, name_map)
    horizontal = roles.count("lat") == 1 and roles.count("lon") == 1
    if not idents:
      if tuple(roles) == DIMS:  # kept under its own name, as it is
        axes = {r: i for i, r in enumerate(roles)}
        return [_Source(name, name, archives.UNKNOWN_RANK, "its name", axes, {})]
      if horizontal:
        self.others.append(self.describe(name))
      return []
    problem = None
    axes, fixed = {}, {}
    for i, (dim, role) in enumerate(zip(var.dims, roles, strict=True)):
      if role in ("time", "lat", "lon", "level") and role not in axes:
        axes[role] = i
      elif var.shape[i] == 1:
        fixed[i] = 0
      else:
        problem = f"dimension {dim!r} of size {var.shape[i]} is not time, lat, lon or pressure"
    if not horizontal or problem:
      for ident in idents[:1]:
        found = f"expected dimensions (time, lat, lon), found {var.dims}"
        self.bad.setdefault(ident.target, found + (f" ({problem})" if problem else ""))
      return []
    near = any(roles[i] == "height" for i in fixed) or bool(self._scalar(var, "height"))
    for ident in idents:
      out = self._resolve(name, var, ident, dict(axes), dict(fixed), near)
      if out is not None:
        return out
    self.others.append(self.describe(name) + ": no pressure level or height to place it")
    return []

  def _resolve(self, name, var, ident, axes, fixed, near) -> list[_Source] | None:
    """The fields `ident` gives from this variable; None where its coordinates do not say."""

    def source(target, levels=None, note=""):
      return _Source(target, name, ident.rank, ident.how, axes, fixed, levels, note)

    levels = None
    if "level" in axes:
      dim = var.dims[axes["level"]]
      levels = archives.pressure_hpa(dim, self.ds[dim].attrs, self.ds[dim].values)
      _check_monotonic(self.path, dim, levels)
    quantity = ident.target
    if quantity not in archives.LEVEL_QUANTITIES and quantity not in archives.LEVEL_TARGETS:
      if levels is not None and len(levels) > 1:
        self.bad.setdefault(
          quantity,
          f"expected dimensions (time, lat, lon), found {var.dims} ({len(levels)} pressure levels)",
        )
        return []
      if levels is not None:
        fixed[axes.pop("level")] = 0
      return [source(quantity)]
    wanted = (
      {quantity: archives.LEVEL_TARGETS[quantity]}
      if quantity in archives.LEVEL_TARGETS
      else {t: qp for t, qp in archives.LEVEL_TARGETS.items() if qp[0] == quantity}
    )
    if levels is not None:
      out = []
      for target, (_, hpa) in wanted.items():
        weights = archives.level_weights(levels, hpa)
        if weights is None:
          self.bad.setdefault(
            target,
            f"{hpa:g} hPa lies outside the pressure levels {levels.min():g}-{levels.max():g} "
            f"hPa of {name} (no extrapolation)",
          )
          continue
        if len(weights) == 1:
          note = f"{name} at {levels[weights[0][0]]:g} hPa"
        else:
          (lo, _), (hi, _) = weights
          note = (
            f"{name} interpolated in log pressure between {levels[lo]:g} and {levels[hi]:g} hPa"
          )
        out.append(source(target, weights, note))
      return out
    if quantity in archives.LEVEL_TARGETS:  # the user's map or a CAM5 name: the field itself
      return [source(quantity)]
    single = ident.level_hpa if ident.level_hpa is not None else self._scalar(var, "level")
    if single is not None:
      match = [t for t, (_, hpa) in wanted.items() if abs(hpa - single) <= archives.LEVEL_MATCH_HPA]
      return [source(t, None, f"{name} at {single:g} hPa") for t in match]
    if ident.surface:
      return [source("TS")] if quantity == "T" else []
    if ident.near_surface or near:
      return [source(archives.NEAR_SURFACE[quantity])] if quantity in archives.NEAR_SURFACE else []
    return None

  # -- coordinates -----------------------------------------------------------

  def _read_coordinates(self) -> None:
    ds, path = self.ds, self.path
    first = next(iter(self.fields.values()))
    dims = ds[first.var_name].dims
    yname, xname = dims[first.axes["lat"]], dims[first.axes["lon"]]
    time_dims = {}
    for s in self.fields.values():
      v = ds[s.var_name]
      if (v.dims[s.axes["lat"]], v.dims[s.axes["lon"]]) != (yname, xname):
        raise DataError(
          path, f"expected dimensions (..., {yname}, {xname}), found {v.dims}", s.where
        )
      if not s.static:
        time_dims.setdefault(v.dims[s.axes["time"]], s)
    if len(time_dims) > 1:
      (a, sa), (b, sb) = list(time_dims.items())[:2]
      raise DataError(
        path, f"fields on two time axes: {sa.var_name} on {a!r}, {sb.var_name} on {b!r}", sb.where
      )
    for dim in (yname, xname):
      if dim not in ds.variables:
        raise DataError(path, f"no coordinate variable for dimension {dim!r}", dim)
    if time_dims:
      (tname,) = time_dims
      self.time_name, self.time = self._times_along(tname)
    else:
      self.time_name, self.time = self._scalar_time()
    # A field without a time axis is one step of a scalar time, or a land fraction at every step.
    for target, s in list(self.fields.items()):
      if s.static and target != "LANDFRAC" and (time_dims or self.time_name is None):
        del self.fields[target]
        self.bad[target] = (
          f"expected dimensions (time, lat, lon), found {ds[s.var_name].dims}"
          if time_dims
          else "the file has no time coordinate, and only a land fraction may lack one"
        )
    if self.time_name is not None:
      if len(self.time) == 0:
        raise DataError(path, "holds no time steps (expected at least one)", self.time_name)
      if len(self.time) > 1 and not np.all(self.time[1:] > self.time[:-1]):
        raise DataError(path, "time values are not strictly increasing", self.time_name)
    if not self.fields:
      return
    lat = np.asarray(ds[yname].values, np.float64)
    lon = np.asarray(ds[xname].values, np.float64)
    self.lat_ascending = _check_monotonic(path, yname, lat)
    _check_monotonic(path, xname, lon)
    if lat.min() < -90 or lat.max() > 90:
      raise DataError(path, "latitudes outside [-90, 90]", yname)
    self.lat = lat if self.lat_ascending else lat[::-1]
    lon360 = np.mod(lon, 360.0)
    # Where the file's longitudes go in the 0-360 ascending order.
    order = np.argsort(lon360, kind="stable")
    repeats = np.flatnonzero(np.diff(lon360[order]) <= 1e-6)
    self.lon_duplicate = None
    if len(repeats) == 1 and {int(order[repeats[0]]), int(order[repeats[0] + 1])} == {
      0,
      len(lon) - 1,
    }:
      # The first meridian repeated at the end (-180 and 180, 0 and 360): a cyclic point.
      self.lon_duplicate = (0, len(lon) - 1)
      order = order[order != len(lon) - 1]
    elif len(repeats):
      raise DataError(path, "longitudes repeat once converted to 0-360", xname)
    self.lon_order = order
    self.lon = lon360[order]
    self.lon_file = lon

  def _times_along(self, tname: str) -> tuple[str, np.ndarray]:
    """The decoded times of dimension `tname`: its coordinate, a `valid_time` or date strings."""
    ds, path = self.ds, self.path
    candidates = [n for n, v in ds.variables.items() if v.dims == (tname,)]
    if not candidates:
      raise DataError(
        path,
        f"no coordinate variable for time dimension {tname!r}; add one with CF units, "
        f"e.g. 'hours since 2000-01-01 00:00:00'",
        tname,
      )

    def preference(n):
      v = ds.variables[n]
      return (not archives.is_time_units(v.attrs.get("units")), n != "valid_time", n != tname)

    for name in sorted(candidates, key=preference):
      v = ds.variables[name]
      if archives.is_time_units(v.attrs.get("units")):
        self._set_time_encoding(v.attrs)
        return name, _decode_time(path, name, v.values, v.attrs)
      if v.dtype.kind in "SUO":
        self.time_encoding = {"calendar": "standard"}
        return name, _parse_dates(path, name, v.values)
    own = ds.variables.get(tname)
    if own is None:
      own = ds.variables[candidates[0]]
    return tname, _decode_time(path, tname, own.values, own.attrs)  # raises, saying how to fix

  def _scalar_time(self) -> tuple[str | None, np.ndarray]:
    """A one-valued time coordinate (a GRIB analysis converted to netCDF): one time step."""
    found = [
      (n != "valid_time", n not in TIME_NAMES, n)
      for n, v in self.ds.variables.items()
      if v.size == 1 and v.ndim <= 1 and archives.is_time_units(v.attrs.get("units"))
    ]
    if not found:
      return None, np.array([])
    name = min(found)[2]
    v = self.ds.variables[name]
    self._set_time_encoding(v.attrs)
    return name, _decode_time(self.path, name, np.ravel(v.values), v.attrs)

  def _set_time_encoding(self, attrs) -> None:
    self.time_encoding = {
      "units": attrs.get("units"),
      "calendar": attrs.get("calendar", "standard"),
    }

  # -- reading ---------------------------------------------------------------

  def units(self, source: _Source) -> None:
    """Sets the source's conversion to library units (DataError if the units do not convert)."""
    attrs = self.ds.variables[source.var_name].attrs
    scale, offset, note = archives.conversion(self.path, source.target, source.var_name, attrs)
    source.scale, source.offset, source.units_note = scale, offset, note

  def read(self, source: _Source, t: slice | None, y: slice, x: slice) -> np.ndarray:
    """A (time, lat, lon) float64 block in the file's own order, levels and units applied."""
    var = self.ds.variables[source.var_name]
    index: list = [0] * var.ndim
    for axis, i in source.fixed.items():
      index[axis] = i
    index[source.axes["lat"]], index[source.axes["lon"]] = y, x
    if not source.static:
      index[source.axes["time"]] = t
    kept = sorted(source.axes[r] for r in DIMS if r in source.axes)
    order = [kept.index(source.axes[r]) for r in DIMS if r in source.axes]

    def plane(level: int | None) -> np.ndarray:
      if level is not None:
        index[source.axes["level"]] = level
      block = np.asarray(var[tuple(index)].values, np.float64).transpose(order)
      return block if not source.static else block[None]

    if source.levels is None:
      out = plane(None)
    else:
      out = sum(w * plane(k) for k, w in source.levels)
    if (source.scale, source.offset) != (1.0, 0.0):
      out = out * source.scale + source.offset
    return out

  def check_duplicate_column(self, source: _Source) -> None:
    """Refuses a repeated meridian (-180 and 180) whose two columns differ."""
    if self.lon_duplicate is None:
      return
    first = None if source.static else slice(0, 1)
    a, b = (self.read(source, first, slice(None), slice(k, k + 1)) for k in self.lon_duplicate)
    if not np.allclose(a, b, rtol=1e-6, atol=0.0, equal_nan=True):
      lon = self.lon_file
      raise DataError(
        self.path,
        f"longitudes {lon[self.lon_duplicate[0]]:g} and {lon[self.lon_duplicate[1]]:g} are one "
        "meridian but hold different values (expected the repeated column of a cyclic grid)",
        source.where,
      )


# ---------------------------------------------------------------------------
# The lazy field: time concatenation, levels, latitude flip and longitude roll at read time
# ---------------------------------------------------------------------------


class _FieldArray(BackendArray):
  """One (time, lat, lon) float32 field read from one or more files on demand.

  A field without a time axis (a land fraction) is the same plane at every
  one of `num_times` steps. Every block read is checked: infinite values,
  a step all NaN and values outside `archives.PLAUSIBLE` are refused, and
  missing values (NaN) as `nonfinite` says (`open_fields`).
  """

  def __init__(
    self,
    name: str,
    pieces: list[tuple[_FileInfo, _Source]],
    num_times: int = 0,
    nonfinite: str = "missing",
  ):
    self.name = name
    self.pieces = pieces
    self.nonfinite = nonfinite
    self.static = pieces[0][1].static and pieces[0][1].target == "LANDFRAC"
    lengths = [num_times] if self.static else [len(info.time) for info, _ in pieces]
    self.offsets = np.cumsum([0] + lengths)
    first = pieces[0][0]
    self.times = None if self.static else np.concatenate([info.time for info, _ in pieces])
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
    for p, (info, source) in enumerate(self.pieces):
      here = (t >= self.offsets[p]) & (t < self.offsets[p + 1])
      if not here.any() or len(y) == 0 or len(x) == 0:
        continue
      local = t[here] - self.offsets[p]
      fy = y if info.lat_ascending else self.shape[1] - 1 - y
      fx = info.lon_order[x]
      # Read the bounding block with plain slices (what netCDF does fast), pick in memory.
      t0, y0, x0 = local.min(), fy.min(), fx.min()
      times = None if self.static else slice(t0, local.max() + 1)
      try:
        block = info.read(source, times, slice(y0, fy.max() + 1), slice(x0, fx.max() + 1))
      except Exception as e:  # noqa: BLE001 - a failed read is a corrupt or truncated file
        raise DataError(
          info.path, f"cannot read values ({type(e).__name__}: {e})", source.where
        ) from e
      rows = np.zeros_like(local) if self.static else local - t0
      block = block.astype(np.float32)[np.ix_(rows, fy - y0, fx - x0)]
      infinite = np.isinf(block)
      if infinite.any() and self.nonfinite == "mask":
        block[infinite] = np.nan  # missing, for the caller to fill and count
      elif infinite.any():
        step = int(local[np.argmax(infinite.any(axis=(1, 2)))])
        raise DataError(
          info.path,
          f"time step {step} holds infinite values (expected finite values, missing ones "
          "as _FillValue)",
          source.where,
        )
      if full_plane:
        empty = np.isnan(block).all(axis=(1, 2))
        if empty.any():
          step = int(local[np.argmax(empty)])
          raise DataError(
            info.path,
            f"time step {step} is all NaN (expected a field with finite values)",
            source.where,
          )
      missing = np.isnan(block)
      if self.nonfinite == "refuse" and missing.any():
        k = int(np.argmax(missing.any(axis=(1, 2))))
        raise DataError(
          info.path,
          f"time step {int(local[k])} holds {int(missing[k].sum())} NaN or missing "
          "(_FillValue) values (expected a finite value at every point; data.nonfinite='mask' "
          "fills them, counted)",
          source.where,
        )
      _check_range(info, source, block, None if self.static else local)
      out[here] = block
    index = tuple(0 if s else slice(None) for s in scalar)
    return out[index]


def _check_range(info: _FileInfo, source: _Source, block: np.ndarray, steps) -> None:
  """Refuses a block with values outside `archives.PLAUSIBLE`, naming the first such step.

  Every step read is checked, not only the first: a later file of one input
  may lack the units attribute the first has.
  """
  bounds = archives.PLAUSIBLE.get(source.target)
  if bounds is None:
    return
  with np.errstate(invalid="ignore"):
    bad = (block < bounds[0]) | (block > bounds[1])  # NaN (missing) compares False
  if bad.any():
    k = int(np.argmax(bad.any(axis=(1, 2))))
    at = "" if steps is None else f"time step {int(steps[k])}"
    note = source.units_note or "as in the file"
    archives.check_plausible(info.path, source.target, block[k], note, source.where, at=at)


# ---------------------------------------------------------------------------
# Public readers
# ---------------------------------------------------------------------------


def open_fields(
  paths: PathLike | Sequence[PathLike],
  variables: Sequence[str] | None = None,
  *,
  name_map: Mapping[str, str] | None = None,
  chunks: Mapping[str, int] | None = None,
  nonfinite: str = "missing",
) -> xr.Dataset:
  """Opens CAM5 / CF / archive netCDF fields lazily as one dataset in the library's conventions.

  Args:
    paths: a file, a glob pattern, or a sequence of either. Files may hold
      consecutive times, different variables, or both; every variable must end
      up on the same time axis and all files on the same lat/lon grid.
    variables: climjax (CAM5) names, or single-level aliases such as `msl`, of
      the fields to open; `None` opens every field identified plus every other
      (time, lat, lon) field under its own name.
    name_map: names in the files -> climjax names, trusted before anything
      else (`archives.identify`); a variable on pressure levels mapped onto
      U850, T500, ... gives that level.
    chunks: dask chunk sizes per dimension (needs dask); `None` keeps the
      fields as lazily indexed arrays read block by block on access.
    nonfinite: what a read does with missing values (NaN, `_FillValue`):
      "missing" keeps them as NaN; "refuse" raises naming the file, field and
      time step (training data: `tfds_builders`); "mask" keeps them and reads
      infinite values as NaN too, for the caller to fill and count. Infinite
      values are refused otherwise, and a step all NaN always.

  Returns:
    A dataset with dims (time, lat, lon): latitude ascending, longitude in
    [0, 360) ascending, float32 fields in library units, decoded time. A land
    fraction without a time axis repeats at every step.

  Raises:
    DataError: naming the file and variable, for missing files or variables,
      unreadable files, wrong dims, non-monotonic coordinates, time without CF
      units, levels outside the file's, units that do not convert, implausible
      values (at every read), grids or time axes that do not line up, fields all
      NaN, and missing values where `nonfinite="refuse"`.
  """
  if nonfinite not in NONFINITE:
    raise ValueError(f"nonfinite must be one of {NONFINITE}, got {nonfinite!r}")
  files, described = _expand_paths(paths)
  name_map = dict(name_map or {})
  infos = [_FileInfo(path, name_map) for path in files]

  if variables is None:
    wanted = sorted({name for info in infos for name in info.fields})
    if not wanted:
      others = sorted({o for info in infos for o in info.others})
      held = f"; not identified: {'; '.join(others)}" if others else ""
      raise DataError(described, f"no (time, lat, lon) fields found{held}")
  else:
    wanted = list(dict.fromkeys(archives.requested_name(v, name_map) for v in variables))
  # Every missing field first, so the error names what is absent, not another field's problem.
  for name in wanted:
    if not any(name in info.fields for info in infos):
      _refuse_missing(name, infos, described)

  data_vars, time_axis, grid_info, time_from = {}, None, None, None
  statics = []
  for name in wanted:
    holders = [info for info in infos if name in info.fields]
    timed = [info for info in holders if not info.fields[name].static or name != "LANDFRAC"]
    if not timed:
      statics.append((name, holders[0]))
      continue
    holders = sorted(timed, key=lambda info: info.time[0])
    for before, after in zip(holders, holders[1:], strict=False):
      if not after.time[0] > before.time[-1]:
        raise DataError(
          after.path, f"times overlap those of {before.path} (expected consecutive files)", name
        )
    grid_info = grid_info or holders[0]
    for info in holders:
      _check_grid(info, grid_info, name)
      calendars = (info.time_encoding.get("calendar"), grid_info.time_encoding.get("calendar"))
      if calendars[0] != calendars[1]:
        raise DataError(
          info.path, f"calendar {calendars[0]!r} differs from {grid_info.path}'s {calendars[1]!r}"
        )
    array = _FieldArray(name, _prepared(name, holders), nonfinite=nonfinite)
    if time_axis is None:
      time_axis, time_from = array.times, name
    elif len(array.times) != len(time_axis) or not np.all(array.times == time_axis):
      raise DataError(
        holders[0].path,
        f"time axis ({len(array.times)} steps, {array.times[0]} to {array.times[-1]}) differs "
        f"from that of {time_from} ({len(time_axis)} steps, {time_axis[0]} to {time_axis[-1]})",
        name,
      )
    data_vars[name] = _variable(name, holders, array)
  if time_axis is None:
    raise DataError(
      described,
      f"holds only fields without a time axis ({', '.join(n for n, _ in statics)}); "
      "open them together with files of time-varying fields",
    )
  for name, info in statics:
    _check_grid(info, grid_info, name)
    data_vars[name] = _variable(
      name, [info], _FieldArray(name, _prepared(name, [info]), len(time_axis), nonfinite)
    )
  data_vars = {name: data_vars[name] for name in wanted}

  ds = xr.Dataset(
    data_vars,
    coords={
      "time": ("time", time_axis, {"long_name": "time"}),
      "lat": ("lat", grid_info.lat, {"units": "degrees_north", "long_name": "latitude"}),
      "lon": ("lon", grid_info.lon, {"units": "degrees_east", "long_name": "longitude"}),
    },
  )
  ds["time"].encoding.update({k: v for k, v in grid_info.time_encoding.items() if v is not None})
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


def _refuse_missing(name: str, infos: list[_FileInfo], described: str) -> None:
  for info in infos:
    if name in info.bad:
      raise DataError(info.path, info.bad[name], name)
  found = []
  for target in sorted({n for info in infos for n in info.fields}):
    info = next(i for i in infos if target in i.fields)
    source = info.fields[target]
    standard = info.ds.variables[source.var_name].attrs.get("standard_name")
    extra = [n for n in (source.var_name if source.var_name != target else None, standard) if n]
    found.append(f"{target} ({', '.join(extra)})" if extra else target)
  others = sorted({o for info in infos for o in info.others})
  held = f"; not identified: {'; '.join(others)}" if others else ""
  raise DataError(
    described,
    f"not found; the files hold fields [{', '.join(found)}]{held}; name one with variables_map "
    f"(name_in_file:{name}) or give it a CF standard_name",
    name,
  )


def _check_grid(info: _FileInfo, grid_info: _FileInfo, name: str) -> None:
  if info.lat.shape != grid_info.lat.shape or info.lon.shape != grid_info.lon.shape:
    raise DataError(
      info.path,
      f"grid {len(info.lat)}x{len(info.lon)} differs from {grid_info.path}'s "
      f"{len(grid_info.lat)}x{len(grid_info.lon)}",
      name,
    )
  if not (np.allclose(info.lat, grid_info.lat) and np.allclose(info.lon, grid_info.lon)):
    raise DataError(info.path, f"lat/lon values differ from those of {grid_info.path}", name)


def _prepared(name: str, holders: list[_FileInfo]) -> list[tuple[_FileInfo, _Source]]:
  """Each file's source of `name` with its units conversion set and its cyclic column checked."""
  pieces = []
  for info in holders:
    source = info.fields[name]
    info.units(source)
    info.check_duplicate_column(source)
    pieces.append((info, source))
  return pieces


_DROPPED_ATTRS = ("_FillValue", "missing_value", "scale_factor", "add_offset", "coordinates")


def _variable(name: str, holders: list[_FileInfo], array: _FieldArray) -> xr.Variable:
  """The dataset variable of one field, its first step read and checked."""
  info, source = holders[0], holders[0].fields[name]
  attrs = {
    k: v for k, v in info.ds.variables[source.var_name].attrs.items() if k not in _DROPPED_ATTRS
  }
  if name in archives.LIBRARY_UNITS:
    derived = source.var_name != name or source.levels is not None
    if derived and name in CAM5_VARIABLES:
      attrs["long_name"] = CAM5_VARIABLES[name].long_name
    if source.var_name != name and name.startswith("Z"):
      attrs.pop("standard_name", None)  # geopotential in the file, its height here
    attrs["units"] = archives.LIBRARY_UNITS[name]
    notes = [source.level_note or source.var_name, source.how, source.units_note]
    attrs["climjax_source"] = f"{os.path.basename(info.path)}: " + "; ".join(n for n in notes if n)
  encoding = {"source": info.path, "sources": [i.path for i in holders]}
  field = xr.Variable(DIMS, indexing.LazilyIndexedArray(array), attrs, encoding)
  _check_first_step(field, info.path, source)
  return field


def _check_first_step(field: xr.Variable, path: str, source: _Source) -> None:
  # One cheap read at open time catches empty fields, corrupt files and values in other
  # units than the file says before training starts; later steps are checked as read.
  if field.shape[0] > 0:
    values = field[0].values
    archives.check_plausible(
      path, source.target, values, source.units_note or "as in the file", source.where
    )


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
  (YYYYMMDD) and `datesec` (seconds of the day) when `write_date`. It is also
  CF-1.8 as an independent checker reads it (`Conventions` CF-1.8, whatever
  `ds.attrs` say; `standard_name` and `axis` on time, lat and lon; the
  `standard_name` of fields that have one without a level; `history`). The
  file is written beside `path` under a temporary name and moved into place,
  so a reader never sees half a file.
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
      nc.source = "CAM"
      for key, value in ds.attrs.items():
        if isinstance(value, str | int | float | np.number) and key not in ("Conventions",):
          nc.setncattr(key, value)
      # What this writer follows, whatever the dataset it was given says (CAM5 wrote CF-1.0).
      nc.Conventions = CF_CONVENTIONS
      written = (
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%dT%H:%M:%SZ} climjax write_cam5_netcdf"
      )
      history = str(ds.attrs.get("history", "")).strip()
      nc.history = f"{history}\n{written}" if history else written
      nc.createDimension("time", None)
      nc.createDimension("lat", ds.sizes["lat"])
      nc.createDimension("lon", ds.sizes["lon"])

      time = nc.createVariable("time", "f8", ("time",))
      time.long_name, time.standard_name, time.axis = "time", "time", "T"
      time.units = time_units
      time.calendar = calendar
      time[:] = cftime.date2num(dates, time_units, calendar) if dates else []
      lat = nc.createVariable("lat", "f8", ("lat",))
      lat.long_name, lat.units = "latitude", "degrees_north"
      lat.standard_name, lat.axis = "latitude", "Y"
      lat[:] = ds["lat"].values
      lon = nc.createVariable("lon", "f8", ("lon",))
      lon.long_name, lon.units = "longitude", "degrees_east"
      lon.standard_name, lon.axis = "longitude", "X"
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
        if name in archives.WRITTEN_STANDARD_NAMES:
          field.standard_name = archives.WRITTEN_STANDARD_NAMES[name]
        if has_nan:
          field.missing_value = CAM5_FILL_VALUE
        field[:] = np.ma.masked_invalid(values) if has_nan else values
    os.replace(tmp, path)
  except BaseException:
    os.unlink(tmp)
    raise
