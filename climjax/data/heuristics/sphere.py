"""Geometry on the sphere: great-circle distances and destinations, relative vorticity."""

from __future__ import annotations

import numpy as np

EARTH_RADIUS_KM = 6371.0
KM_PER_DEG = np.pi * EARTH_RADIUS_KM / 180


def great_circle_km(lat1, lon1, lat2, lon2) -> np.ndarray:
  """Haversine distance in km between points given in degrees (broadcasts)."""
  p1, p2 = np.deg2rad(lat1), np.deg2rad(lat2)
  dp, dl = p2 - p1, np.deg2rad(np.asarray(lon2) - np.asarray(lon1))
  h = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
  return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))


def destination(lat, lon, bearing_deg, distance_deg) -> tuple[np.ndarray, np.ndarray]:
  """Point reached from (lat, lon) along a great circle (degrees; broadcasts); lon in [0, 360)."""
  p1, l1 = np.deg2rad(lat), np.deg2rad(lon)
  theta, delta = np.deg2rad(bearing_deg), np.deg2rad(distance_deg)
  sin_p2 = np.sin(p1) * np.cos(delta) + np.cos(p1) * np.sin(delta) * np.cos(theta)
  p2 = np.arcsin(np.clip(sin_p2, -1.0, 1.0))
  l2 = l1 + np.arctan2(
    np.sin(theta) * np.sin(delta) * np.cos(p1), np.cos(delta) - np.sin(p1) * sin_p2
  )
  return np.rad2deg(p2), np.mod(np.rad2deg(l2), 360.0)


def relative_vorticity(
  u: np.ndarray, v: np.ndarray, lat: np.ndarray, lon: np.ndarray
) -> np.ndarray:
  """Relative vorticity (1/s) of winds (..., lat, lon) on the sphere.

  zeta = (dv/dlambda - d(u cos phi)/dphi) / (a cos phi): the cos(phi) metric
  terms matter away from the equator (a plain dv/dx - du/dy misses the
  u tan(phi) / a term). Longitude differences wrap on a global grid. Rows at
  the poles, where the expression is singular, are set to zero.
  """
  phi = np.deg2rad(np.asarray(lat, np.float64))
  lam = np.deg2rad(np.asarray(lon, np.float64))
  cos_phi = np.cos(phi)[:, None]
  u = np.asarray(u, np.float64)
  v = np.asarray(v, np.float64)
  if _is_global(np.asarray(lon)):
    dlam = 2 * np.pi / len(lon)
    dv_dlam = (np.roll(v, -1, axis=-1) - np.roll(v, 1, axis=-1)) / (2 * dlam)
  else:
    dv_dlam = np.gradient(v, lam, axis=-1)
  ducos_dphi = np.gradient(u * cos_phi, phi, axis=-2)
  a = EARTH_RADIUS_KM * 1e3
  with np.errstate(divide="ignore", invalid="ignore"):
    zeta = (dv_dlam - ducos_dphi) / (a * cos_phi)
  return np.where(cos_phi > 1e-6, zeta, 0.0).astype(np.float32)


def _is_global(lon: np.ndarray) -> bool:
  if len(lon) < 2:
    return False
  step = np.median(np.diff(lon))
  return abs(step * len(lon) - 360.0) < 0.5 * step
