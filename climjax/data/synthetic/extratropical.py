"""Fields of extratropical events: cyclones with a cold and a warm front, and atmospheric rivers."""

from __future__ import annotations

import numpy as np

from climjax.data.synthetic.constants import KM_PER_DEG, RHO_AIR, coriolis
from climjax.data.synthetic.tracks import _Track
from climjax.data.synthetic.vortices import _vortex_winds


def _sigmoid(x: np.ndarray) -> np.ndarray:
  return 0.5 * (1 + np.tanh(x))


def etc_anomalies(
  north_km: np.ndarray,
  east_km: np.ndarray,
  lat_deg: np.ndarray,
  p: dict[str, float],
  *,
  hemi: float,
  strength: float,
  front_strength: float,
) -> dict[str, np.ndarray]:
  """Anomalies of an extratropical cyclone with a cold and a warm front.

  A Gaussian low (deficit dp, radius R) in gradient-wind balance; a warm sector
  between the fronts (`warm_angle`, `cold_angle` are directions from the centre,
  degrees counter-clockwise from east, mirrored in the southern hemisphere)
  delta_t warmer at the surface, cold air elsewhere; a PSL trough along each
  front; a warm-conveyor-belt moisture band just ahead of the cold front; a cold
  core aloft displaced poleward and west of the surface low (westward tilt).
  """
  r = np.hypot(north_km, east_km)
  radius = p["radius"]
  dp = p["dp"] * strength
  gauss = np.exp(-0.5 * (r / radius) ** 2)
  r_m = np.maximum(r, 1.0) * 1e3
  dpdr = dp * (r_m / (radius * 1e3) ** 2) * gauss
  rf2 = r_m * np.abs(coriolis(lat_deg)) / 2
  speed = np.sqrt(r_m * dpdr / RHO_AIR + rf2**2) - rf2
  ubot, vbot = _vortex_winds(north_km, east_km, r, 0.7 * speed, hemi, 25.0)
  u850, v850 = _vortex_winds(north_km, east_km, r, speed, hemi, 5.0)

  theta = np.arctan2(hemi * north_km, east_km)
  cold, warm = np.deg2rad(p["cold_angle"]), np.deg2rad(p["warm_angle"])
  width = p["front_width"]
  d_cold, along_cold = r * np.sin(theta - cold), r * np.cos(theta - cold)
  d_warm, along_warm = r * np.sin(warm - theta), r * np.cos(theta - warm)
  warm_sector = _sigmoid(d_cold / width) * _sigmoid(d_warm / width)
  on_cold = _sigmoid(along_cold / 100) * _sigmoid((p["cold_length"] - along_cold) / 150)
  on_warm = _sigmoid(along_warm / 100) * _sigmoid((p["warm_length"] - along_warm) / 150)
  cold_line = np.exp(-((d_cold / width) ** 2)) * on_cold
  warm_line = np.exp(-((d_warm / width) ** 2)) * on_warm
  envelope = np.exp(-((r / p["cold_length"]) ** 2))
  trefht = front_strength * p["delta_t"] * envelope * (1.5 * warm_sector - 0.5)
  conveyor = np.exp(-(((d_cold - 1.5 * width) / (2 * width)) ** 2)) * on_cold
  tmq = front_strength * p["moist"] * (conveyor + 0.5 * warm_line)
  aloft = np.exp(
    -0.5 * (np.hypot(north_km - hemi * 0.3 * radius, east_km + 0.5 * radius) / radius) ** 2
  )
  return {
    "PSL": -dp * gauss - 250.0 * front_strength * np.maximum(cold_line, warm_line),
    "UBOT": ubot,
    "VBOT": vbot,
    "U850": u850,
    "V850": v850,
    "TREFHT": trefht,
    "T500": 0.4 * trefht - p["cold_core"] * strength * aloft,
    "T200": 0.5 * p["cold_core"] * strength * aloft,
    "TMQ": tmq,
  }


def _ar_path(track: _Track, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
  """Axis of an AR at step k: (lat, unwrapped lon, along-axis envelope, landfall distance km).

  A quadratic Bezier curve from the subtropical source to the landfall point,
  bowed equatorward, carried on inland along its final direction.
  """
  p = track.p
  lat_l, lon_l = track.lat[k], track.lon[k]
  hemi = 1.0 if lat_l >= 0 else -1.0
  lat_s, lon_s = lat_l - hemi * p["src_dlat"], lon_l - p["src_dlon"]
  lat_m = 0.5 * (lat_s + lat_l) - hemi * p["bow"]
  lon_m = 0.5 * (lon_s + lon_l)
  t = np.linspace(0, 1, 48)[:, None]
  pts = (1 - t) ** 2 * np.array([lat_s, lon_s]) + 2 * t * (1 - t) * np.array([lat_m, lon_m])
  pts = pts + t**2 * np.array([lat_l, lon_l])
  tangent = pts[-1] - pts[-2]
  step_km = np.hypot(tangent[0], tangent[1] * np.cos(np.deg2rad(lat_l))) * KM_PER_DEG
  inland = pts[-1] + tangent * np.arange(1, 1 + int(np.ceil(p["inland"] / step_km)))[:, None]
  pts = np.concatenate([pts, inland])
  seg = np.hypot(np.diff(pts[:, 0]), np.diff(pts[:, 1]) * np.cos(np.deg2rad(pts[1:, 0])))
  s = np.concatenate([[0.0], np.cumsum(seg)]) * KM_PER_DEG
  sea = s[47]
  envelope = _sigmoid((s - 0.15 * sea) / (0.07 * sea)) * np.exp(
    -np.maximum(s - sea, 0) / (0.5 * p["inland"])
  )
  return pts[:, 0], pts[:, 1], envelope, sea


def ar_anomalies(
  lat_deg: np.ndarray,
  lon_deg: np.ndarray,
  path_lat: np.ndarray,
  path_lon: np.ndarray,
  envelope: np.ndarray,
  p: dict[str, float],
  *,
  strength: float,
) -> dict[str, np.ndarray]:
  """Anomalies of an atmospheric river around the axis given by path points.

  A Gaussian moisture plume across the axis (half-width `width` km), a
  low-level jet along it (weaker at the lowest level) and slightly warm air.
  """
  dlat = (lat_deg[..., None] - path_lat) * KM_PER_DEG
  dlon = (lon_deg[..., None] - path_lon + 180.0) % 360.0 - 180.0
  dlon = dlon * KM_PER_DEG * np.cos(np.deg2rad(path_lat))
  dist2 = dlat**2 + dlon**2
  nearest = dist2.argmin(axis=-1)
  d2 = np.take_along_axis(dist2, nearest[..., None], axis=-1)[..., 0]
  profile = strength * envelope[nearest] * np.exp(-0.5 * d2 / p["width"] ** 2)
  # Jet direction: the local tangent of the axis (east, north components).
  t_north = np.gradient(path_lat)
  t_east = np.gradient(path_lon) * np.cos(np.deg2rad(path_lat))
  norm = np.hypot(t_north, t_east)
  jet_e, jet_n = (t_east / norm)[nearest], (t_north / norm)[nearest]
  jet = p["jet"] * profile
  return {
    "TMQ": p["moist"] * profile,
    "U850": jet * jet_e,
    "V850": jet * jet_n,
    "UBOT": 0.6 * jet * jet_e,
    "VBOT": 0.6 * jet * jet_n,
    "TREFHT": p["warm"] * profile,
  }
