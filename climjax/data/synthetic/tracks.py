"""Event tracks of the global snapshots: births, motion and life cycle of TCs, TDs, ETCs and ARs.

Births come from per-day random streams, so the events of a time step never
depend on which range of steps is generated; see "Events." in the
`climjax.data.synthetic` docstring.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from climjax.data.synthetic.climatology import _season
from climjax.data.synthetic.constants import KM_PER_DEG
from climjax.data.synthetic.global_grid import DEFAULT_START, STEP_HOURS, STEPS_PER_DAY, latlon_grid
from climjax.data.synthetic.vortices import sample_tc_params, sample_td_params

# Mean number of live events of each kind at any time, and their lifetimes (days).
# "TC" tracks are born weak and classed TD or TC at each time by their wind.
_EVENT_RATES: dict[str, tuple[float, tuple[float, float]]] = {
  "TC": (3.0, (4.0, 10.0)),
  "TD": (1.5, (1.0, 4.0)),
  "ETC": (4.0, (3.0, 6.0)),
  "AR": (2.5, (1.5, 4.0)),
}
_MAX_LIFE_STEPS = int(10 * STEPS_PER_DAY)

# Knobs of the event climate (`generate_fields(rates=..., intensities=...)`), as
# `config.data` fields: <kind>_rate multiplies how many events of a kind are born,
# <kind>_intensity the amplitude of each (see `_intensify`). 1.0 is the default climate.
RATE_KINDS: tuple[str, ...] = tuple(_EVENT_RATES)  # TC, TD, ETC, AR
INTENSITY_KINDS: tuple[str, ...] = ("TC", "ETC", "AR")
EVENT_KNOBS: tuple[str, ...] = tuple(f"{k.lower()}_rate" for k in RATE_KINDS) + tuple(
  f"{k.lower()}_intensity" for k in INTENSITY_KINDS
)
_MAX_RATE = 10.0
_EVENTS_PER_DAY_ID = 100  # track ids are day * 100 + the event's serial number that day


@functools.lru_cache(maxsize=1)
def _reference_land() -> np.ndarray:
  """Land fraction on a 1 deg grid: events are placed with it, so the same seed
  gives the same events on every grid."""
  from climjax.data import landsea

  lat, lon = latlon_grid(180, 360)
  return landsea.land_fraction(lat, lon)


def _land_at(lat: float, lon: float) -> float:
  land = _reference_land()
  i = int(np.clip((lat + 90.0) // 1.0, 0, 179))
  return float(land[i, int((lon % 360.0) // 1.0) % 360])


@functools.lru_cache(maxsize=1)
def _west_coasts() -> np.ndarray:
  """(n, 2) lat/lon of west-coast land cells at 30-55 deg: where ARs make landfall."""
  land = _reference_land()
  lat, lon = latlon_grid(180, 360)
  upwind = np.mean([np.roll(land, k, axis=1) for k in range(1, 9)], axis=0)  # 8 deg to the west
  coast = (land >= 0.5) & (np.roll(land, 1, axis=1) < 0.5) & (upwind < 0.15)
  coast &= (np.abs(lat) >= 30)[:, None] & (np.abs(lat) <= 55)[:, None]
  i, j = np.nonzero(coast)
  return np.stack([lat[i], lon[j]], axis=1)


@dataclasses.dataclass
class _Track:
  """One event's life: centre (or landfall point) and strength at each of its steps."""

  kind: str  # "TC" (classed TD or TC at each step by its wind), "TD", "ETC" or "AR"
  track_id: int
  birth: int  # absolute time step of the first position
  lat: np.ndarray
  lon: np.ndarray
  strength: np.ndarray  # amplitude multiplier in [0, 1]
  p: dict[str, float]

  def alive(self, step: int) -> bool:
    return self.birth <= step < self.birth + len(self.lat)


def _move(lat: float, lon: float, u: float, v: float) -> tuple[float, float]:
  """Position after one time step at velocity (u, v) m/s."""
  dist = STEP_HOURS * 3.6  # km per (m/s) per step
  lat2 = float(np.clip(lat + v * dist / KM_PER_DEG, -85, 85))
  lon2 = (lon + u * dist / (KM_PER_DEG * np.cos(np.deg2rad(lat2)))) % 360.0
  return lat2, lon2


def _life_profile(n: int, power: float) -> np.ndarray:
  """Growth and decay over a life of n steps: sin(pi x)^power, never exactly zero."""
  x = (np.arange(n) + 0.5) / n
  return np.sin(np.pi * x) ** power


def _sample_cyclone_track(rng, kind: str, birth: int, life: int, season: float) -> _Track:
  """A TC (or TD) track: westward drift, poleward turn and recurvature, decay over land."""
  hemi = 1.0 if rng.random() < 0.5 + 0.4 * season else -1.0
  for _ in range(50):
    lat, lon = hemi * rng.uniform(8, 20), rng.uniform(0, 360)
    if _land_at(lat, lon) < 0.05:
      break
  params = (sample_tc_params if kind == "TC" else sample_td_params)(rng, np.array([lat]))
  p = {k: float(v[0]) for k, v in params.items()}
  p["dp_peak"] = p.pop("dp")
  lat_recurve, u0, u1 = rng.uniform(20, 30), rng.uniform(-7, -3), rng.uniform(4, 10)
  v0 = rng.uniform(1.0, 2.5) if kind == "TC" else rng.uniform(0, 1.5)
  lats, lons, land_hours = [], [], []
  hours = 0.0
  for _ in range(life):
    lats.append(lat)
    lons.append(lon)
    hours += STEP_HOURS * (_land_at(lat, lon) > 0.5)
    land_hours.append(hours)
    if abs(lat) > 42:  # extratropical transition: the track ends
      break
    turn = 1 / (1 + np.exp(-(abs(lat) - lat_recurve) / 3)) if kind == "TC" else 0.0
    lat, lon = _move(lat, lon, u0 + (u1 - u0) * turn, hemi * (v0 + 2.0 * turn))
  strength = _life_profile(life, 0.8)[: len(lats)] * np.exp(-np.array(land_hours) / 18.0)
  return _Track(kind, 0, birth, np.array(lats), np.array(lons), strength, p)


def _sample_etc_track(rng, birth: int, life: int) -> _Track:
  """An extratropical cyclone moving east and poleward, with its cold and warm fronts."""
  hemi = rng.choice([-1.0, 1.0])
  lat, lon = hemi * rng.uniform(30, 55), rng.uniform(0, 360)
  u, v = rng.uniform(7, 15), hemi * rng.uniform(0.5, 3.0)
  lats, lons = [], []
  for _ in range(life):
    lats.append(lat)
    lons.append(lon)
    lat, lon = _move(lat, lon, u, v)
  p = {
    "dp": rng.uniform(1_500, 5_000),
    "radius": rng.uniform(300, 700),  # Gaussian radius of the low, km
    "warm_angle": rng.uniform(-30, -5),  # direction of the warm front, deg from east
    "cold_angle": rng.uniform(-125, -95),  # direction of the cold front
    "warm_length": rng.uniform(500, 1_100),
    "cold_length": rng.uniform(1_000, 2_200),
    "delta_t": rng.uniform(4, 10),  # warm-sector temperature excess, K
    "moist": rng.uniform(3, 8),  # warm conveyor belt TMQ excess, kg/m2
    "front_width": rng.uniform(60, 120),  # km
    "cold_core": rng.uniform(2, 4),  # T500 deficit aloft, K
  }
  strength = _life_profile(life, 0.5)
  return _Track("ETC", 0, birth, np.array(lats), np.array(lons), strength, p)


def _sample_ar_track(rng, birth: int, life: int) -> _Track:
  """An atmospheric river from the subtropical ocean to a west-coast landfall."""
  coasts = _west_coasts()
  lat, lon = coasts[rng.integers(len(coasts))]
  drift = rng.uniform(-1.5, 1.5) / STEPS_PER_DAY  # landfall moves along the coast, deg/step
  lats = np.clip(lat + drift * np.arange(life), -62, 62)
  lons = np.full(life, lon)
  p = {
    "src_dlat": rng.uniform(10, 22),  # source this far equatorward of landfall, deg
    "src_dlon": rng.uniform(25, 55),  # and this far west
    "bow": rng.uniform(0, 5),  # equatorward bowing of the path midpoint, deg
    "inland": rng.uniform(300, 800),  # km the plume carries on inland
    "moist": rng.uniform(12, 25),  # TMQ excess on the axis, kg/m2
    "width": rng.uniform(150, 300),  # Gaussian half-width, km (full width 350-700 km)
    "jet": rng.uniform(10, 20),  # low-level jet along the axis, m/s
    "warm": rng.uniform(1, 3),  # K
  }
  strength = _life_profile(life, 0.6)
  return _Track("AR", 0, birth, lats, lons, strength, p)


def event_knobs(config) -> dict[str, dict[str, float]]:
  """`rates` and `intensities` for `generate_fields` from a config's `EVENT_KNOBS` fields.

  `config` is anything with `.get` (a `config.data` ConfigDict, a dict); absent
  fields are 1.0, and only knobs other than 1.0 are kept. A rate must be in
  [0, 10] and an intensity > 0, else ValueError naming the field.
  """
  out = {"rates": {}, "intensities": {}}
  for group, kinds, suffix in (
    ("rates", RATE_KINDS, "rate"),
    ("intensities", INTENSITY_KINDS, "intensity"),
  ):
    for kind in kinds:
      field = f"{kind.lower()}_{suffix}"
      value = config.get(field, 1.0)
      value = 1.0 if value is None else float(value)
      if suffix == "rate" and not 0.0 <= value <= _MAX_RATE:
        raise ValueError(f"{field} must be in [0, {_MAX_RATE:g}], got {value}")
      if suffix == "intensity" and not value > 0.0:
        raise ValueError(f"{field} must be > 0, got {value}")
      if value != 1.0:
        out[group][kind] = value
  return out


def _check_knobs(rates: dict[str, float], intensities: dict[str, float]) -> None:
  """ValueError for a kind without that knob or a value out of range."""
  fields = {}
  for group, knobs, kinds, suffix in (
    ("rates", rates, RATE_KINDS, "rate"),
    ("intensities", intensities, INTENSITY_KINDS, "intensity"),
  ):
    unknown = set(knobs) - set(kinds)
    if unknown:
      raise ValueError(f"{group} are for {', '.join(kinds)}; got {sorted(unknown)}")
    fields.update({f"{kind.lower()}_{suffix}": value for kind, value in knobs.items()})
  event_knobs(fields)


def _intensify(track: _Track, factor: float) -> None:
  """Scales an event's amplitude: TC pressure deficit (and its warm core, which the
  generator ties to the deficit), ETC pressure deficit, AR moisture excess."""
  if track.kind == "TC":
    for key in ("dp_peak", "warm200", "warm500"):
      track.p[key] *= factor
  elif track.kind == "ETC":
    track.p["dp"] *= factor
  elif track.kind == "AR":
    track.p["moist"] *= factor


def _sample_track(rng, kind: str, day: int, season: float) -> _Track:
  """One event of `kind` born on `day`, drawn from `rng`."""
  _, (life_lo, life_hi) = _EVENT_RATES[kind]
  birth = day * STEPS_PER_DAY + int(rng.integers(STEPS_PER_DAY))
  life = max(2, int(round(rng.uniform(life_lo, life_hi) * STEPS_PER_DAY)))
  if kind in ("TC", "TD"):
    return _sample_cyclone_track(rng, kind, birth, life, season)
  if kind == "ETC":
    return _sample_etc_track(rng, birth, life)
  return _sample_ar_track(rng, birth, life)


def _sample_tracks(
  seed: int,
  first: int,
  last: int,
  rates: dict[str, float] | None = None,
  intensities: dict[str, float] | None = None,
) -> list[_Track]:
  """Every event alive at any step in [first, last), from per-day random streams.

  Births on day d come from SeedSequence([seed, d]) alone, so the events of a
  step never depend on which range of steps was asked for. A `rates[kind]`
  other than 1 changes the kind's births from a second stream per day and
  kind, leaving the default stream as it is: rate r > 1 adds Poisson((r - 1) n)
  events to the n of the default climate, r < 1 keeps each of them with
  probability r (both Poisson with mean r n); so the other kinds' events, and
  at r > 1 the default ones of the kind itself, are unchanged.
  """
  rates, intensities = dict(rates or {}), dict(intensities or {})
  _check_knobs(rates, intensities)
  tracks = []
  for day in range((first - _MAX_LIFE_STEPS) // STEPS_PER_DAY, (last - 1) // STEPS_PER_DAY + 1):
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xE7E, day + 1_000_000]))
    season, _ = _season(DEFAULT_START + np.timedelta64(day * 24, "h"))
    born = []
    for kind, (mean_live, (life_lo, life_hi)) in _EVENT_RATES.items():
      for _ in range(rng.poisson(mean_live / ((life_lo + life_hi) / 2))):
        born.append(_sample_track(rng, kind, day, float(season)))
    kept = [True] * len(born)
    for k, (kind, (mean_live, (life_lo, life_hi))) in enumerate(_EVENT_RATES.items()):
      rate = rates.get(kind, 1.0)
      if rate == 1.0:
        continue
      extra_rng = np.random.default_rng(np.random.SeedSequence([seed, 0xE7F, day + 1_000_000, k]))
      if rate < 1.0:
        mine = [i for i, track in enumerate(born) if track.kind == kind]
        for i, draw in zip(mine, extra_rng.random(len(mine)), strict=True):
          kept[i] = bool(draw < rate)
      else:
        mean_births = (rate - 1.0) * mean_live / ((life_lo + life_hi) / 2)
        for _ in range(extra_rng.poisson(mean_births)):
          born.append(_sample_track(extra_rng, kind, day, float(season)))
          kept.append(True)
    if len(born) > _EVENTS_PER_DAY_ID:
      raise ValueError(f"{len(born)} events born on day {day}: lower the rates")
    for serial, (track, keep) in enumerate(zip(born, kept, strict=True)):
      track.track_id = (day + 1_000_000) * _EVENTS_PER_DAY_ID + serial
      if track.kind in intensities:
        _intensify(track, intensities[track.kind])
      if keep and track.birth < last and track.birth + len(track.lat) > first:
        tracks.append(track)
  return tracks
