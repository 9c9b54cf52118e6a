"""Tropical cyclones, tropical depressions and shear lines: their fields and parameter ranges.

The Holland (1980) vortex with its warm and moist core (`cyclone_anomalies`),
the parameter ranges of TCs and TDs, and shear lines / weak fronts, the hard
negative for vorticity-only detectors. The physics is described under
"Tropical cyclones (Holland 1980)" in the `climjax.data.synthetic` docstring.
"""

from __future__ import annotations

import numpy as np

from climjax.data.synthetic.constants import RHO_AIR, coriolis

# Threshold winds (lowest model level, m/s): tropical-storm strength and the cap for
# tropical depressions, separated so labels are unambiguous by construction.
TC_MIN_WIND = 18.0
TD_MAX_WIND = 15.0


def holland_wind(
  r_km: np.ndarray, dp: np.ndarray, rmax_km: np.ndarray, b: np.ndarray, lat_deg: np.ndarray
) -> np.ndarray:
  """Holland (1980) gradient wind speed (m/s) at radius `r_km` from the centre."""
  r = np.maximum(r_km, 1.0) * 1e3
  x = (rmax_km * 1e3 / r) ** b
  rf2 = r * np.abs(coriolis(lat_deg)) / 2
  return np.sqrt(b / RHO_AIR * dp * x * np.exp(-x) + rf2**2) - rf2


def holland_max_wind(dp: np.ndarray, b: np.ndarray) -> np.ndarray:
  """Peak Holland gradient wind (m/s), neglecting the Coriolis term: sqrt(B dp / (rho e))."""
  return np.sqrt(b * dp / (RHO_AIR * np.e))


def _vortex_winds(
  north_km: np.ndarray,
  east_km: np.ndarray,
  r_km: np.ndarray,
  speed: np.ndarray,
  hemi: np.ndarray,
  inflow_deg: float,
) -> tuple[np.ndarray, np.ndarray]:
  """(u, v) of a cyclonic vortex of tangential speed `speed`, with inflow toward the centre.

  `hemi` is +1 in the northern hemisphere (counter-clockwise flow) and -1 in the
  southern (clockwise).
  """
  inv_r = 1.0 / np.maximum(r_km, 1e-3)
  cos_a, sin_a = np.cos(np.deg2rad(inflow_deg)), np.sin(np.deg2rad(inflow_deg))
  # Tangential unit vector rotated by +90 deg from the outward radius (NH).
  tan_e, tan_n = -north_km * inv_r * hemi, east_km * inv_r * hemi
  in_e, in_n = -east_km * inv_r, -north_km * inv_r
  return (
    speed * (cos_a * tan_e + sin_a * in_e),
    speed * (cos_a * tan_n + sin_a * in_n),
  )


def cyclone_anomalies(
  north_km: np.ndarray,
  east_km: np.ndarray,
  lat_deg: np.ndarray,
  params: dict[str, np.ndarray],
) -> dict[str, np.ndarray]:
  """Anomalies of the eight TC variables due to one warm-core cyclone per leading index.

  `north_km`, `east_km`: displacement of each grid point from the storm centre;
  `lat_deg`: latitude of each grid point (sets f and the hemisphere through
  `params["lat"]`, the centre latitude). `params` holds arrays broadcastable
  against the grid: dp (Pa), rmax (km), b, warm200 (K), warm500 (K), warm_radius
  (km), moist (kg/m2), moist_radius (km), band_phase (rad), motion_u, motion_v
  (m/s), lat (deg, centre).
  """
  p = params
  r = np.sqrt(north_km**2 + east_km**2)
  hemi = np.where(p["lat"] >= 0, 1.0, -1.0)
  x = (p["rmax"] / np.maximum(r, 1.0)) ** p["b"]
  psl = -p["dp"] * (1 - np.exp(-x))

  v_grad = holland_wind(r, p["dp"], p["rmax"], p["b"], lat_deg)
  v_max = holland_max_wind(p["dp"], p["b"])
  ubot, vbot = _vortex_winds(north_km, east_km, r, 0.8 * v_grad, hemi, 20.0)
  # Front-right asymmetry: the storm's motion adds to the vortex near the core.
  core = v_grad / np.maximum(v_max, 1e-3)
  ubot = ubot + 0.5 * p["motion_u"] * core
  vbot = vbot + 0.5 * p["motion_v"] * core
  v_850 = 0.85 * holland_wind(r, p["dp"], 1.2 * p["rmax"], p["b"], lat_deg)
  u850, v850 = _vortex_winds(north_km, east_km, r, v_850, hemi, 5.0)

  warm = np.exp(-0.5 * (r / p["warm_radius"]) ** 2)
  # Two logarithmic spiral rain bands (pitch ~ 20 deg) wound the cyclonic way.
  theta = np.arctan2(north_km, east_km)
  spiral = np.cos(
    2 * (hemi * theta + np.log(np.maximum(r, 1.0) / p["rmax"]) / np.tan(np.deg2rad(20.0)))
    + p["band_phase"]
  )
  moist = p["moist"] * np.exp(-0.5 * (r / p["moist_radius"]) ** 2) * (1 + 0.25 * spiral)
  return {
    "PSL": psl,
    "UBOT": ubot,
    "VBOT": vbot,
    "TMQ": moist,
    "U850": u850,
    "V850": v850,
    "T200": p["warm200"] * warm,
    "T500": p["warm500"] * warm,
  }


def sample_tc_params(rng: np.random.Generator, lat: np.ndarray) -> dict[str, np.ndarray]:
  """Parameters of tropical cyclones (one per entry of `lat`) from realistic ranges."""
  n = lat.shape[0]
  dp = np.exp(rng.uniform(np.log(800), np.log(5_500), n))
  b = rng.uniform(1.0, 2.0, n)
  # Guarantee tropical-storm strength at the lowest model level (0.8 x gradient wind).
  dp = np.maximum(dp, (TC_MIN_WIND / 0.8) ** 2 * RHO_AIR * np.e / b)
  warm200 = 0.3 + dp / 1_000 * rng.uniform(0.5, 1.0, n)
  return {
    "lat": lat,
    "dp": dp,
    "rmax": rng.uniform(25, 120, n),
    "b": b,
    "warm200": warm200,
    "warm500": warm200 * rng.uniform(0.5, 0.7, n),
    "warm_radius": rng.uniform(150, 300, n),
    "moist": rng.uniform(10, 25, n),
    "moist_radius": rng.uniform(150, 350, n),
    "band_phase": rng.uniform(0, 2 * np.pi, n),
    "motion_u": rng.normal(-3, 3, n),
    "motion_v": rng.normal(1, 2, n) * np.where(lat >= 0, 1, -1),
  }


def sample_td_params(rng: np.random.Generator, lat: np.ndarray) -> dict[str, np.ndarray]:
  """Parameters of tropical depressions: broad weak lows below tropical-storm strength."""
  n = lat.shape[0]
  b = rng.uniform(0.9, 1.3, n)
  dp = rng.uniform(150, 1_200, n)
  dp = np.minimum(dp, (TD_MAX_WIND / 0.8) ** 2 * RHO_AIR * np.e / b)
  return {
    "lat": lat,
    "dp": dp,
    "rmax": rng.uniform(60, 250, n),
    "b": b,
    "warm200": rng.uniform(0.0, 0.6, n),
    "warm500": rng.uniform(0.0, 0.4, n),
    "warm_radius": rng.uniform(200, 400, n),
    "moist": rng.uniform(5, 15, n),
    "moist_radius": rng.uniform(200, 450, n),
    "band_phase": rng.uniform(0, 2 * np.pi, n),
    "motion_u": rng.normal(-3, 3, n),
    "motion_v": np.zeros(n),
  }


def shear_line_anomalies(
  north_km: np.ndarray,
  east_km: np.ndarray,
  params: dict[str, np.ndarray],
) -> dict[str, np.ndarray]:
  """A shear line or weak front: PSL trough, cyclonic along-line shear, moisture band.

  It carries cyclonic vorticity like a cyclone but no closed circulation or
  warm core: the hard negative for vorticity-only detectors. `params`: angle
  (rad, of the line), offset (km, of the line from the origin), depth (Pa),
  width (km), shear (m/s, along-line wind on either side), moist (kg/m2), lat.
  """
  p = params
  hemi = np.where(p["lat"] >= 0, 1.0, -1.0)
  along_e, along_n = np.cos(p["angle"]), np.sin(p["angle"])
  # Signed distance across the line (to the left of the along-line direction).
  d = -east_km * along_n + north_km * along_e - p["offset"]
  profile = np.exp(-((d / p["width"]) ** 2))
  # Along-line wind decreasing to the left gives cyclonic (positive in NH) vorticity.
  along_wind = -hemi * p["shear"] * np.tanh(d / p["width"])
  u, v = along_wind * along_e, along_wind * along_n
  return {
    "PSL": -p["depth"] * profile,
    "UBOT": 0.8 * u,
    "VBOT": 0.8 * v,
    "TMQ": p["moist"] * profile,
    "U850": u,
    "V850": v,
    "T200": np.zeros_like(d),
    "T500": -0.5 * np.tanh(d / p["width"]) * hemi,
  }


def sample_shear_line_params(rng: np.random.Generator, lat: np.ndarray) -> dict[str, np.ndarray]:
  """Parameters of shear lines / weak fronts crossing near the origin."""
  n = lat.shape[0]
  return {
    "lat": lat,
    "angle": rng.uniform(0, np.pi, n),
    "offset": rng.uniform(-200, 200, n),
    "depth": rng.uniform(150, 600, n),
    "width": rng.uniform(80, 200, n),
    "shear": rng.uniform(3, 9, n),
    "moist": rng.uniform(4, 12, n),
  }
