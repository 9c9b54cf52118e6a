"""The background state of the global snapshots, before any event is planted.

Travelling planetary waves, synoptic noise evolving as an AR(1) process
(`_NoiseBank`), the seasonal and diurnal cycles of surface temperature, winds
in geostrophic balance with the PSL anomalies and column relative humidity;
see "Background." in the `climjax.data.synthetic` docstring.
"""

from __future__ import annotations

import numpy as np

from climjax.data.synthetic.climatology import _global_zonal_mean, _season
from climjax.data.synthetic.constants import KM_PER_DEG, RHO_AIR, coriolis
from climjax.data.synthetic.global_grid import STEP_HOURS, STEPS_PER_DAY, _Grid
from climjax.data.synthetic.noise import _gaussian_interpolator

# Correlation length (km) of each synoptic noise field of the background; the
# amplitudes, which vary with latitude, are set in `_background`.
_GLOBAL_NOISE_KM: dict[str, float] = {
  "psl": 900.0,
  "t": 900.0,
  "rh": 500.0,
  "u": 400.0,
  "v": 400.0,
  "t500": 1_000.0,
  "t200": 1_200.0,
}
_NOISE_MEMORY_DAYS = 1.5  # e-folding time of the AR(1) evolution of the noise


class _NoiseBank:
  """Spatially correlated noise fields that evolve in time as an AR(1) process.

  Each field is a Gaussian-bump sum on a coarse lattice (see `smooth_noise`);
  the lattice amplitudes follow a(t) = rho a(t-1) + sqrt(1 - rho^2) e(t) with
  e(t) drawn from a stream of its own per time step, so time step t is the same
  whatever range of steps is generated.
  """

  def __init__(self, seed: int, grid: _Grid):
    self.seed, self.grid = seed, grid
    self.rho = float(np.exp(-STEP_HOURS / (24.0 * _NOISE_MEMORY_DAYS)))
    self.kernels = {}
    for name, length_km in _GLOBAL_NOISE_KM.items():
      length_px = max(length_km / grid.dy_km, 1.0)
      spacing = max(1, int(length_px / 1.5))
      ky = _gaussian_interpolator(grid.nlat, length_px, spacing, periodic=False)
      kx = _gaussian_interpolator(grid.nlon, length_px, spacing)
      self.kernels[name] = (ky, kx)
    self._state: np.ndarray | None = None
    self._step = -1

  def _innovation(self, step: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(np.random.SeedSequence([self.seed, 0x401E, step]))
    return {
      name: rng.standard_normal((ky.shape[1], kx.shape[1]), dtype=np.float32)
      for name, (ky, kx) in self.kernels.items()
    }

  def amplitudes(self, step: int) -> dict[str, np.ndarray]:
    """Lattice amplitudes at absolute time step `step` (sequential calls are O(1))."""
    if self._state is None or step < self._step:
      self._state, self._step = self._innovation(0), 0
    while self._step < step:
      self._step += 1
      e = self._innovation(self._step)
      c = np.float32(np.sqrt(1 - self.rho**2))
      self._state = {k: self.rho * self._state[k] + c * e[k] for k in self._state}
    return self._state

  def fields(self, steps: range) -> dict[str, np.ndarray]:
    """Noise fields (len(steps), nlat, nlon) of unit variance, per name."""
    amps = [self.amplitudes(s) for s in steps]
    out = {}
    for name, (ky, kx) in self.kernels.items():
      a = np.stack([amp[name] for amp in amps])  # (t, my, mx)
      w = a.reshape(-1, kx.shape[1]) @ kx.T  # (t my, nlon)
      w = w.reshape(len(amps), ky.shape[1], -1)
      out[name] = np.einsum("im,tmj->tij", ky, w, optimize=True).astype(np.float32)
    return out


def _planetary_waves(seed: int) -> list[tuple[float, int, float, float, float, float]]:
  """Travelling mid-latitude waves: (hemisphere, wavenumber, PSL amplitude Pa,
  speed deg/day eastward, phase rad, centre latitude)."""
  rng = np.random.default_rng(np.random.SeedSequence([seed, 0x3A7E]))
  waves = []
  for hemi in (1.0, -1.0):
    for _ in range(3):
      waves.append(
        (
          hemi,
          int(rng.integers(3, 8)),
          float(rng.uniform(300, 800)),
          float(rng.uniform(4, 12)),
          float(rng.uniform(0, 2 * np.pi)),
          float(rng.uniform(45, 55)),
        )
      )
  return waves


def _background(
  grid: _Grid, noise: _NoiseBank, waves: list, steps: range, times: np.ndarray
) -> dict[str, np.ndarray]:
  """Prognostic background fields (t, nlat, nlon) before any event is planted.

  Returns PSL, UBOT, VBOT, U850, V850, T200, T500, TREFHT (physical units), RH
  (column relative humidity TMQ / saturated TMQ, dimensionless), and helpers for
  the derived fields: SST (t, nlat, 1), ICE (t, nlat, 1, sea-ice cooling in K),
  DIURNAL (t, nlat, nlon, the land diurnal temperature cycle in K).
  """
  f32 = np.float32
  lat = grid.lat[None, :, None]
  a = np.abs(lat)
  hemi = np.where(lat >= 0, 1.0, -1.0)
  land, interior = grid.land[None], grid.interior[None]
  s, utc_hour = _season(times)
  s = s[:, None, None]
  local_summer = s * hemi  # +1 in the local summer, -1 in the local winter
  itcz = 5.0 + 6.0 * s
  z = noise.fields(steps)

  # Travelling planetary waves in PSL; T500 is warm under ridges.
  days = np.array([st / STEPS_PER_DAY for st in steps])[:, None]
  lon_rad = np.deg2rad(grid.lon)[None, :]
  wave = np.zeros((len(steps), grid.nlat, grid.nlon), f32)
  for w_hemi, k, amp, speed, phase, centre in waves:
    env = (amp * np.exp(-(((grid.lat * w_hemi - centre) / 12.0) ** 2))).astype(f32)
    zonal = np.cos(k * (lon_rad - np.deg2rad(speed) * days) + phase).astype(f32)
    wave += env[None, :, None] * zonal[:, None, :]

  storm_track = np.exp(-(((a - 50) / 18) ** 2))
  psl_anom = wave + (150.0 + 550.0 * storm_track).astype(f32) * z["psl"]
  psl = (
    _global_zonal_mean("PSL", lat)
    - 700.0 * local_summer * interior * np.exp(-(((a - 40) / 20) ** 2))  # thermal lows/highs
    + psl_anom
  )

  # Geostrophic wind of the PSL anomaly, tapered where f vanishes and near the poles
  # (where the zonal spacing of the grid, and with it the gradient noise, blows up).
  dy = grid.dy_km * 1e3
  dx = (grid.dlon * KM_PER_DEG * 1e3 * np.maximum(grid.cos_lat, 0.05))[None, :, None]
  dpdy = np.gradient(psl_anom, dy, axis=1)
  dpdx = (np.roll(psl_anom, -1, axis=2) - np.roll(psl_anom, 1, axis=2)) / (2 * dx)
  f = coriolis(np.where(a < 10, 10.0 * hemi, lat))
  taper = (1 - np.exp(-((lat / 15) ** 2))) * np.clip(grid.cos_lat[None, :, None] / 0.34, 0, 1)
  ug = (-taper / (RHO_AIR * f) * dpdy).astype(f32)
  vg = (taper / (RHO_AIR * f) * dpdx).astype(f32)
  # Surface friction: weaker, and turned toward low pressure (left in the NH).
  cos_f, sin_f = np.cos(np.deg2rad(20.0)), np.sin(np.deg2rad(20.0)) * hemi
  ubot = _global_zonal_mean("UBOT", lat) + 0.7 * (ug * cos_f - vg * sin_f) + 1.5 * z["u"]
  vbot = _global_zonal_mean("VBOT", lat) + 0.7 * (ug * sin_f + vg * cos_f) + 1.5 * z["v"]
  u850 = _global_zonal_mean("U850", lat) + ug + 1.2 * z["u"]
  v850 = _global_zonal_mean("V850", lat) + vg + 1.2 * z["v"]

  # Surface temperature: ocean from the SST, land with a seasonal cycle growing
  # with latitude and continentality, a lapse-rate cooling and a diurnal cycle.
  sst = 271.35 + 31.0 * np.maximum(np.cos(np.deg2rad(lat - 4.0 * s)), 0) ** 3
  ice = 28.0 * np.clip((a - 60) / 25, 0, 1) * np.maximum(-local_summer, 0) ** 0.7
  t_ocean = sst - 1.0 - ice
  amp = 17.0 * np.sin(np.deg2rad(a)) ** 1.2 * (1 + 0.6 * interior)
  t_land = (
    271.35
    + 31.0 * np.cos(np.deg2rad(lat)) ** 3
    - 1.0
    + 3.0 * np.exp(-(((a - 25) / 10) ** 2))
    + amp * local_summer
    - 6.5e-3 * grid.elevation[None]
  )
  local_hour = (utc_hour[:, None, None] + grid.lon[None, None, :] / 15.0) % 24.0
  diurnal = (4.0 * land * (1 - a / 90) * np.cos(2 * np.pi * (local_hour - 15.0) / 24.0)).astype(f32)
  t_std = (0.8 + 2.5 * a / 90 + land).astype(f32)
  trefht = land * t_land + (1 - land) * t_ocean + diurnal + t_std * z["t"] + 0.002 * wave

  t500 = (
    _global_zonal_mean("T500", lat)
    + 3.5 * np.sin(np.deg2rad(a)) * local_summer
    + 0.004 * wave
    + (0.6 + 1.2 * a / 90).astype(f32) * z["t500"]
  )
  t200 = _global_zonal_mean("T200", lat) - 0.0012 * wave + 0.8 * z["t200"]

  # Column relative humidity: moist ITCZ and storm tracks, dry subtropics and
  # deserts, summer monsoons, moisture carried poleward ahead of troughs.
  desert = np.exp(-(((a - 25) / 9) ** 2)) * interior
  rh = (
    0.42
    + 0.33 * np.exp(-(((lat - itcz) / 9) ** 2))
    + 0.08 * np.exp(-((lat / 25) ** 2))
    + 0.15 * np.exp(-(((a - 50) / 15) ** 2))
    - 0.12 * land
    - 0.3 * land * desert
    + 0.15 * land * np.maximum(local_summer, 0) * np.exp(-(((a - 20) / 10) ** 2))
    + 0.005 * hemi * vg
    + 0.06 * z["rh"]
  )
  return {
    "PSL": psl.astype(f32),
    "UBOT": ubot.astype(f32),
    "VBOT": vbot.astype(f32),
    "U850": u850.astype(f32),
    "V850": v850.astype(f32),
    "T200": t200.astype(f32),
    "T500": t500.astype(f32),
    "TREFHT": trefht.astype(f32),
    "RH": np.clip(rh, 0.05, 0.95).astype(f32),
    "SST": sst.astype(f32),
    "ICE": ice.astype(f32),
    "DIURNAL": diurnal,
  }
