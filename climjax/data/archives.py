"""How public archives name, lay out and measure fields: what `netcdf.open_fields` reads them with.

Real files (CAM5 history files, ERA5, NCEP GFS and reanalysis, CMIP, GRIB
converted to netCDF by cfgrib, wgrib2 or NCL) name the same quantity in a
dozen ways and store it in other units. A variable is identified by, in
order: the user's `variables_map`, its name being a climjax (CAM5) name, its
CF `standard_name` (`STANDARD_NAMES`), then the archives' names
(`ARCHIVE_ALIASES`, GRIB level suffixes such as `TMP_500mb` or
`PRMSL_P0_L101_GLL0` understood). Quantities that live on pressure levels
(T, U, V, Z) give `LEVEL_TARGETS` (U850, T500, Z200, ...) from a pressure
coordinate; near the surface they give TREFHT, UBOT, VBOT, QREFHT.

Units are read from every field's `units` attribute and converted to those of
`variables.CAM5_VARIABLES` with udunits (`cf_units`); geopotential (m2 s-2)
becomes geopotential height (m) by dividing by `G`, precipitation as a mass
flux (kg m-2 s-1) becomes a rate (m s-1) by dividing by the density of water,
and an accumulated amount (m, kg m-2) becomes a rate over its accumulation
period. `PLAUSIBLE` ranges catch what the units did not say (a missing
attribute, a wrong one).
"""

from __future__ import annotations

import dataclasses
import re

import cf_units
import numpy as np

from climjax.data.errors import DataError
from climjax.data.variables import CAM5_VARIABLES

G = 9.80665  # standard gravity (m s-2): geopotential / G = geopotential height
WATER_DENSITY = 1000.0  # kg m-3: precipitation flux (kg m-2 s-1) / density = rate (m s-1)

# Fields taken from a quantity on a pressure level: climjax name -> (quantity, level in hPa).
LEVEL_TARGETS: dict[str, tuple[str, float]] = {
  "U850": ("U", 850.0),
  "V850": ("V", 850.0),
  "T200": ("T", 200.0),
  "T500": ("T", 500.0),
  "T850": ("T", 850.0),  # not an ExtremeWeather channel; the front heuristics prefer it
  "Z200": ("Z", 200.0),
  "Z1000": ("Z", 1000.0),
}
# The same quantities near the surface (2 m temperature and humidity, 10 m wind).
NEAR_SURFACE: dict[str, str] = {"T": "TREFHT", "U": "UBOT", "V": "VBOT", "Q": "QREFHT"}
LEVEL_QUANTITIES: tuple[str, ...] = ("T", "U", "V", "Z", "Q")
NEAR_SURFACE_MAX_HEIGHT_M = 10.0

# The library's unit of every field it reads (CAM5's, plus those CAM5 lacks).
LIBRARY_UNITS: dict[str, str] = {
  **{name: v.units for name, v in CAM5_VARIABLES.items()},
  "T850": "K",
  "LANDFRAC": "1",
}

# CF standard_name -> climjax name or level quantity, and the name's canonical units
# (assumed where a file gives a standard_name but no units).
STANDARD_NAMES: dict[str, tuple[str, str]] = {
  "air_pressure_at_mean_sea_level": ("PSL", "Pa"),
  "air_pressure_at_sea_level": ("PSL", "Pa"),  # the name before CF table v40
  "surface_air_pressure": ("PS", "Pa"),
  "atmosphere_mass_content_of_water_vapor": ("TMQ", "kg m-2"),
  "atmosphere_water_vapor_content": ("TMQ", "kg m-2"),  # its older alias
  "lwe_precipitation_rate": ("PRECT", "m s-1"),
  "precipitation_flux": ("PRECT", "kg m-2 s-1"),
  "precipitation_amount": ("PRECT", "kg m-2"),
  "lwe_thickness_of_precipitation_amount": ("PRECT", "m"),
  "surface_temperature": ("TS", "K"),
  "land_area_fraction": ("LANDFRAC", "1"),
  "land_binary_mask": ("LANDFRAC", "1"),
  "air_temperature": ("T", "K"),
  "eastward_wind": ("U", "m s-1"),
  "northward_wind": ("V", "m s-1"),
  "geopotential_height": ("Z", "m"),
  "geopotential": ("Z", "m2 s-2"),
  "specific_humidity": ("Q", "1"),
}

# The standard_name the writer gives each field whose quantity it names without a level
# or a height (T500 is air_temperature only with a pressure coordinate beside it).
WRITTEN_STANDARD_NAMES: dict[str, str] = {
  "PSL": "air_pressure_at_mean_sea_level",
  "PS": "surface_air_pressure",
  "TMQ": "atmosphere_mass_content_of_water_vapor",
  "PRECT": "lwe_precipitation_rate",
  "TS": "surface_temperature",
  "LANDFRAC": "land_area_fraction",
}

# Names used by each archive -> climjax name or level quantity. Matched as written,
# then in lower case; where two variables of a file map to one field, the one
# earlier in this table wins (GFS holds both PRMSL and the Eta-reduced MSLET).
ARCHIVE_ALIASES: dict[str, dict[str, str]] = {
  "CAM5": {"Z3": "Z", "T": "T", "U": "U", "V": "V", "Q": "Q"},
  "ERA5": {
    "msl": "PSL", "sp": "PS", "tcwv": "TMQ", "tcw": "TMQ", "mtpr": "PRECT", "tp": "PRECT",
    "t2m": "TREFHT", "skt": "TS", "u10": "UBOT", "v10": "VBOT", "lsm": "LANDFRAC",
    "t": "T", "u": "U", "v": "V", "z": "Z", "q": "Q",
  },
  "GRIB/NCEP": {
    "prmsl": "PSL", "slp": "PSL", "mslp": "PSL", "mslet": "PSL", "pres": "PS",
    "pwat": "TMQ", "pr_wtr": "TMQ", "prate": "PRECT", "apcp": "PRECT",
    "tmp": "T", "air": "T", "ugrd": "U", "uwnd": "U", "vgrd": "V", "vwnd": "V",
    "gh": "Z", "hgt": "Z", "spfh": "Q", "shum": "Q", "land": "LANDFRAC", "landmask": "LANDFRAC",
  },
  "CMIP": {
    "psl": "PSL", "ps": "PS", "prw": "TMQ", "pr": "PRECT", "tas": "TREFHT", "ts": "TS",
    "uas": "UBOT", "vas": "VBOT", "huss": "QREFHT", "sftlf": "LANDFRAC",
    "ta": "T", "ua": "U", "va": "V", "zg": "Z", "hus": "Q",
  },
}  # fmt: skip

# Accumulation period (hours) of the archives' accumulated fields that do not say it:
# ERA5's hourly `tp` is the precipitation of the hour ending at its time.
DEFAULT_ACCUMULATION_HOURS: dict[str, float] = {"tp": 1.0}

# Plausible values in library units (first time step): the second line of defence. Wide
# (the synthetic event knobs go past real storms); a unit mistake is far outside them.
PLAUSIBLE: dict[str, tuple[float, float]] = {
  "PSL": (50_000.0, 120_000.0),
  "PS": (20_000.0, 120_000.0),
  "TMQ": (-1.0, 200.0),
  "PRECT": (-1e-6, 5e-3),
  "QREFHT": (-1e-4, 0.06),
  "TREFHT": (150.0, 350.0),
  "TS": (150.0, 350.0),
  "T200": (150.0, 350.0),
  "T500": (150.0, 350.0),
  "T850": (150.0, 350.0),
  "U850": (-300.0, 300.0),
  "V850": (-300.0, 300.0),
  "UBOT": (-300.0, 300.0),
  "VBOT": (-300.0, 300.0),
  "Z200": (9_000.0, 14_000.0),
  "Z1000": (-2_000.0, 2_000.0),
  "ZBOT": (-100.0, 1_000.0),
  "LANDFRAC": (-0.01, 1.01),
}

# Unit strings archives write that udunits does not read as meant.
UNIT_SYNONYMS: dict[str, str] = {
  "(0 - 1)": "1", "0-1": "1", "fraction": "1", "proportion": "1", "dimensionless": "1",
  "gpm": "m", "mb": "hPa", "deg C": "degC", "degrees C": "degC", "deg K": "K", "degrees K": "K",
}  # fmt: skip
TEMPERATURE_SYNONYMS: dict[str, str] = {"C": "degC", "F": "degF"}  # not coulomb and farad
NO_UNITS: frozenset[str] = frozenset({"", "~", "none", "unknown", "-"})

# Each alias with its place in the table (its rank), as written and in lower case.
_ALIAS_RANK: dict[str, tuple[str, int]] = {}
_LOWER_ALIASES: dict[str, tuple[str, int]] = {}
for _table in ARCHIVE_ALIASES.values():
  for _name, _target in _table.items():
    _ALIAS_RANK.setdefault(_name, (_target, len(_ALIAS_RANK)))
    _LOWER_ALIASES.setdefault(_name.lower(), _ALIAS_RANK[_name])

# GRIB level suffixes: wgrib2 (`TMP_500mb`, `UGRD_10maboveground`) and NCL (`TMP_P0_L100_GLL0`).
_WGRIB2 = re.compile(r"^(?P<base>[A-Za-z0-9]+)_(?P<level>[A-Za-z0-9_.]+)$")
_NCL = re.compile(r"^(?P<base>[A-Za-z0-9]+)_P\d+_L(?P<code>\d+)_[A-Za-z0-9_]+$")
_SURFACE_LEVELS = ("surface", "meansealevel", "entireatmosphere", "l1", "l101", "l200")


UNKNOWN_RANK = 1 << 20


@dataclasses.dataclass(frozen=True)
class Identity:
  """What a file's variable is: a climjax name or a level quantity, and how sure the match is.

  `rank` orders matches of one field (lower wins): 0 the user's map, 1 a
  climjax name, 2 a standard_name, 3+ an archive alias in table order
  (`UNKNOWN_RANK` for a variable kept under its own name).
  `level_hpa`: a pressure level the name itself gives (wgrib2 `TMP_500mb`);
  `near_surface`: the name says 2 m / 10 m / surface.
  """

  target: str
  rank: int
  how: str
  level_hpa: float | None = None
  near_surface: bool = False
  surface: bool = False  # the ground itself (`TMP_surface` is TS, not TREFHT)


def _alias(name: str) -> tuple[str, int] | None:
  return _ALIAS_RANK.get(name) or _LOWER_ALIASES.get(name.lower())


def identify(name: str, attrs, name_map) -> list[Identity]:
  """What a file's variable may be, most trusted first; empty where nothing is known of it.

  The reader takes the first that the variable's coordinates resolve: an
  `air_temperature` without a level or a height is none of T500 or TREFHT, so
  the name (`t2m`) is asked next.
  """
  out = []
  if name in name_map:
    out.append(Identity(name_map[name], 0, f"variables_map {name}:{name_map[name]}"))
  if name in LIBRARY_UNITS:
    out.append(Identity(name, 1, "its name"))
  standard = str(attrs.get("standard_name", "")).strip()
  if standard in STANDARD_NAMES:
    out.append(Identity(STANDARD_NAMES[standard][0], 2, f"standard_name {standard}"))
  found = _alias(name)
  if found:
    out.append(Identity(found[0], 3 + found[1], f"the name {name}"))
  match = _NCL.match(name)
  found = _alias(match["base"]) if match else None
  if found:
    code = int(match["code"])
    # Level type 103 is a height above ground, NCL's `level` attribute says which.
    height = np.ravel(np.asarray(attrs.get("level", 2.0), np.float64))
    near = code == 103 and height.size == 1 and float(height[0]) <= NEAR_SURFACE_MAX_HEIGHT_M
    how = f"the GRIB name {name}"
    out.append(Identity(found[0], 3 + found[1], how, near_surface=near, surface=code == 1))
  match = _WGRIB2.match(name)
  found = _alias(match["base"]) if match and not out else None
  if found:
    level, how = match["level"].lower(), f"the GRIB name {name}"
    mb = re.fullmatch(r"(\d+(?:\.\d+)?)mb", level)
    height = re.fullmatch(r"(\d+(?:\.\d+)?)m_?above_?ground", level)
    if mb:
      out.append(Identity(found[0], 3 + found[1], how, level_hpa=float(mb[1])))
    elif height and float(height[1]) <= NEAR_SURFACE_MAX_HEIGHT_M:
      out.append(Identity(found[0], 3 + found[1], how, near_surface=True))
    elif level.startswith(_SURFACE_LEVELS):
      out.append(Identity(found[0], 3 + found[1], how, surface=level.startswith("surface")))
  return out


def requested_name(name: str, name_map) -> str:
  """The climjax name a caller means by `name` (`tcw` -> TMQ); `name` itself otherwise."""
  if name in name_map:
    return name_map[name]
  found = _alias(name)
  if name not in LIBRARY_UNITS and found and found[0] not in LEVEL_QUANTITIES:
    return found[0]
  return name


def standard_units(attrs) -> str | None:
  """The canonical units of a variable's standard_name, where the table has it."""
  entry = STANDARD_NAMES.get(str(attrs.get("standard_name", "")).strip())
  return entry[1] if entry else None


# ---------------------------------------------------------------------------
# Units
# ---------------------------------------------------------------------------


class UnreadableUnits(ValueError):
  """A `units` attribute udunits cannot parse."""


def parse_units(text, *, temperature: bool = False) -> cf_units.Unit | None:
  """A udunits unit from a `units` attribute; None where the attribute says nothing.

  Raises:
    UnreadableUnits: for text udunits cannot parse.
  """
  if text is None:
    return None
  text = str(text).strip()
  if text.lower() in NO_UNITS:
    return None
  text = UNIT_SYNONYMS.get(text, text)
  if temperature:
    text = TEMPERATURE_SYNONYMS.get(text, text)
  try:
    return cf_units.Unit(text)
  except ValueError:
    raise UnreadableUnits(text) from None


def _linear(unit: cf_units.Unit, to: str) -> tuple[float, float]:
  """(scale, offset) of the conversion unit -> `to` (all conversions here are linear)."""
  offset = float(unit.convert(0.0, to))
  return float(unit.convert(1.0, to)) - offset, offset


def _accumulation_hours(file_name: str, attrs) -> float | None:
  methods = str(attrs.get("cell_methods", ""))
  match = re.search(r"interval:\s*([0-9.]+)\s*([a-z]+)", methods)
  if match:
    try:
      return float(cf_units.Unit(match[2]).convert(float(match[1]), "hours"))
    except ValueError:
      return None
  return DEFAULT_ACCUMULATION_HOURS.get(file_name)


def conversion(
  path: str, target: str, file_name: str, attrs, *, standard_name: str | None = None
) -> tuple[float, float, str]:
  """(scale, offset, description): library value = scale * file value + offset.

  Raises:
    DataError: naming the field, for units that are unreadable or that do not
      convert to the library's.
  """
  library = LIBRARY_UNITS.get(target)
  if library is None:
    return 1.0, 0.0, "kept as in the file (not a climjax field)"
  where = f"{target} ({file_name} in the file)" if file_name != target else target
  raw = attrs.get("units")
  standard_name = standard_name if standard_name is not None else attrs.get("standard_name")
  try:
    unit = parse_units(raw, temperature=library == "K")
  except UnreadableUnits:
    raise DataError(
      path, f"units {raw!r} are not udunits units (expected units convertible to {library})", where
    ) from None
  if unit is None:
    canonical = standard_units(attrs)
    if canonical is None:
      return 1.0, 0.0, f"no units in the file: taken as {library}"
    unit = cf_units.Unit(canonical)
    raw = f"{canonical} (the canonical units of its standard_name)"

  def refuse(expected: str):
    return DataError(path, f"units {raw!r} do not convert to {expected}", where)

  if target in ("Z200", "Z1000", "ZBOT"):
    geopotential = cf_units.Unit("m2 s-2")
    if standard_name == "geopotential" or unit.is_convertible(geopotential):
      if not unit.is_convertible(geopotential):
        raise refuse("m2 s-2 (its standard_name is geopotential)")
      scale, offset = _linear(unit, "m2 s-2")
      return scale / G, offset / G, f"geopotential in {raw} / g = {G} m s-2"
    if not unit.is_convertible("m"):
      raise refuse("m (geopotential height) or m2 s-2 (geopotential)")
    return (*_linear(unit, "m"), f"from {raw}")
  if target == "PRECT":
    if unit.is_convertible("m s-1"):
      return (*_linear(unit, "m s-1"), f"from {raw}")
    if unit.is_convertible("kg m-2 s-1"):
      scale, offset = _linear(unit, "kg m-2 s-1")
      return scale / WATER_DENSITY, offset, f"mass flux in {raw} / {WATER_DENSITY:g} kg m-3"
    for amount, per in (("m", 1.0), ("kg m-2", WATER_DENSITY)):
      if unit.is_convertible(amount):
        hours = _accumulation_hours(file_name, attrs)
        if not hours:
          raise DataError(
            path,
            f"units {raw!r} are an accumulated amount, and the file does not say over how "
            "long (expected a rate in m s-1 or kg m-2 s-1, or cell_methods 'time: sum "
            "(interval: 1 hour)')",
            where,
          )
        scale, _ = _linear(unit, amount)
        return scale / per / (hours * 3600.0), 0.0, f"{raw} accumulated over {hours:g} h"
    raise refuse("m s-1, kg m-2 s-1, or an accumulated m or kg m-2")
  if target == "TMQ" and unit.is_convertible("m"):
    scale, _ = _linear(unit, "m")
    return scale * WATER_DENSITY, 0.0, f"a depth of water in {raw}"
  if not unit.is_convertible(library):
    raise refuse(library)
  scale, offset = _linear(unit, library)
  return scale, offset, "as in the file" if (scale, offset) == (1.0, 0.0) else f"from {raw}"


def check_plausible(
  path: str, target: str, values: np.ndarray, units_note: str, where: str, *, at: str = ""
):
  """Refuses values outside `PLAUSIBLE` (a units problem, most likely); `at` says where they are."""
  bounds = PLAUSIBLE.get(target)
  if bounds is None:
    return
  finite = values[np.isfinite(values)]
  if finite.size == 0:
    return
  lo, hi = float(finite.min()), float(finite.max())
  if lo < bounds[0] or hi > bounds[1]:
    raise DataError(
      path,
      f"values {lo:.4g} to {hi:.4g} {LIBRARY_UNITS[target]}{f' at {at}' if at else ''} "
      f"({units_note}) are outside the plausible {bounds[0]:g} to {bounds[1]:g}: set or "
      "correct the variable's units attribute",
      where,
    )


# ---------------------------------------------------------------------------
# Coordinates: which dimension is time, latitude, longitude, pressure or height
# ---------------------------------------------------------------------------

TIME_NAMES: tuple[str, ...] = (
  "time", "valid_time", "Time", "times", "timestep", "time_step", "step", "date", "t",
  "initial_time0_hours", "forecast_time0",
)  # fmt: skip
LAT_NAMES: tuple[str, ...] = ("lat", "latitude", "lat_0")
LON_NAMES: tuple[str, ...] = ("lon", "longitude", "lon_0")
LEVEL_NAMES: tuple[str, ...] = (
  "lev", "level", "plev", "isobaricInhPa", "pressure_level", "pressure", "lv_ISBL0", "levelist",
)  # fmt: skip
HEIGHT_NAMES: tuple[str, ...] = ("height", "heightAboveGround", "height_above_ground", "lv_HTGL0")
LAT_UNITS = frozenset({"degrees_north", "degree_north", "degrees_N", "degree_N", "degreesN"})
LON_UNITS = frozenset({"degrees_east", "degree_east", "degrees_E", "degree_E", "degreesE"})
LEVEL_MATCH_HPA = 0.5  # a file level this close to the one wanted is taken as it


def is_time_units(units) -> bool:
  return " since " in str(units or "")


def pressure_hpa(name: str, attrs, values: np.ndarray) -> np.ndarray | None:
  """A vertical coordinate's values in hPa where it is pressure; None where it is not.

  Pressure: units convertible to Pa, or, without units, the CF standard_name
  `air_pressure` or a level name (`LEVEL_NAMES`), read as hPa up to 1100 and
  as Pa above. Hybrid and sigma coordinates (CAM5's `lev`) are not pressure.
  """
  standard = str(attrs.get("standard_name", ""))
  if any(word in standard for word in ("hybrid", "sigma", "model_level")):
    return None
  values = np.asarray(values, np.float64)
  if values.dtype.kind not in "fiu" or not np.all(np.isfinite(values)) or np.any(values <= 0):
    return None
  try:
    unit = parse_units(attrs.get("units"))
  except UnreadableUnits:
    return None  # "level", "layer", ...: not a pressure
  if unit is not None:
    if not unit.is_convertible("Pa"):
      return None
    return np.asarray(unit.convert(values, "hPa"), np.float64)
  if standard == "air_pressure" or name in LEVEL_NAMES:
    top = float(values.max())
    return values if top <= 1100.0 else values / 100.0 if top <= 110_000.0 else None
  return None


def is_near_surface_height(name: str, attrs, values: np.ndarray) -> bool:
  """Whether a one-valued coordinate is a height above ground of at most 10 m (2 m, 10 m)."""
  if attrs.get("standard_name") != "height" and name not in HEIGHT_NAMES:
    return False
  values = np.asarray(values).ravel()
  if values.size != 1 or values.dtype.kind not in "fiu":
    return False
  try:
    unit = parse_units(attrs.get("units"))
  except UnreadableUnits:
    return False
  if unit is not None and not unit.is_convertible("m"):
    return False
  metres = float(unit.convert(float(values[0]), "m")) if unit is not None else float(values[0])
  return 0.0 <= metres <= NEAR_SURFACE_MAX_HEIGHT_M


def coordinate_role(name: str, attrs, values: np.ndarray | None) -> str | None:
  """'time', 'lat', 'lon', 'level' (pressure) or 'height' (near surface) for a dimension."""
  units = str(attrs.get("units", "")).strip()
  standard = attrs.get("standard_name")
  if standard == "latitude" or units in LAT_UNITS or name in LAT_NAMES:
    return "lat"
  if standard == "longitude" or units in LON_UNITS or name in LON_NAMES:
    return "lon"
  if standard == "time" or attrs.get("axis") == "T" or is_time_units(units) or name in TIME_NAMES:
    return "time"
  if values is not None and pressure_hpa(name, attrs, values) is not None:
    return "level"
  if values is not None and is_near_surface_height(name, attrs, values):
    return "height"
  return None


def level_weights(levels_hpa: np.ndarray, wanted_hpa: float) -> list[tuple[int, float]] | None:
  """[(level index, weight)] giving `wanted_hpa`: the level itself, or linear in log pressure.

  A level within `LEVEL_MATCH_HPA` is taken as it is; otherwise the two levels
  around the wanted one are weighted linearly in ln(p). None where the wanted
  level lies outside the file's (no extrapolation).
  """
  levels = np.asarray(levels_hpa, np.float64)
  close = np.flatnonzero(np.abs(levels - wanted_hpa) <= LEVEL_MATCH_HPA)
  if close.size:
    return [(int(close[0]), 1.0)]
  below, above = levels < wanted_hpa, levels > wanted_hpa
  if not below.any() or not above.any():
    return None
  lo = int(np.flatnonzero(below)[np.argmax(levels[below])])
  hi = int(np.flatnonzero(above)[np.argmin(levels[above])])
  w = (np.log(wanted_hpa) - np.log(levels[lo])) / (np.log(levels[hi]) - np.log(levels[lo]))
  return [(lo, 1.0 - float(w)), (hi, float(w))]
