"""Planting the events alive at a time step into the global fields, and their labelled boxes."""

from __future__ import annotations

import numpy as np

from climjax.data import variables
from climjax.data.synthetic.constants import KM_PER_DEG
from climjax.data.synthetic.extratropical import _ar_path, ar_anomalies, etc_anomalies
from climjax.data.synthetic.global_grid import STEPS_PER_DAY, _Grid
from climjax.data.synthetic.tracks import _Track
from climjax.data.synthetic.vortices import cyclone_anomalies, holland_max_wind

# Labelling thresholds of the global generator: an ETC is labelled from this
# pressure deficit (Pa), an AR where its box holds TMQ of at least this (kg/m2).
ETC_MIN_DEFICIT = 1_000.0
AR_MIN_TMQ = 20.0


def _window_taper(r_km: np.ndarray, half_km: float) -> np.ndarray:
  """1 inside 0.6 of the window, falling smoothly (cos^2) to 0 at its edge."""
  x = np.clip((r_km / half_km - 0.6) / 0.4, 0, 1)
  return np.cos(0.5 * np.pi * x) ** 2


def _pixel_box(
  grid: _Grid, lat_s: float, lat_n: float, lon_w: float, lon_e: float
) -> tuple[int, int, int, int, bool]:
  """(ymin, xmin, ymax, xmax, wraps): rows/columns covering a lat/lon extent.

  The maxima are exclusive (a box is grid[ymin:ymax, xmin:xmax]). `lon_w`, `lon_e`
  are unwrapped around the event (lon_w <= lon_e, either may leave [0, 360));
  where the extent crosses the 0/360 seam the box is clipped at the image edge on
  the side of the event's centre and `wraps` is True. Boxes span at least 2 pixels.
  """
  ymin = int(np.floor((lat_s + 90.0) / grid.dlat))
  ymax = int(np.floor((lat_n + 90.0) / grid.dlat)) + 1
  xmin = int(np.floor(lon_w / grid.dlon + 0.5))
  xmax = int(np.floor(lon_e / grid.dlon + 0.5)) + 1
  wraps = xmin < 0 or xmax > grid.nlon
  ymin, ymax = max(ymin, 0), min(ymax, grid.nlat)
  xmin, xmax = max(xmin, 0), min(xmax, grid.nlon)
  if ymax - ymin < 2:
    ymin, ymax = max(0, min(ymin, grid.nlat - 2)), max(0, min(ymin, grid.nlat - 2)) + 2
  if xmax - xmin < 2:
    xmin, xmax = max(0, min(xmin, grid.nlon - 2)), max(0, min(xmin, grid.nlon - 2)) + 2
  return ymin, xmin, ymax, xmax, wraps


def _event_row(grid, k_out, class_name, track_id, lat_c, lon_c, lat_s, lat_n, lon_w, lon_e, value):
  ymin, xmin, ymax, xmax, wraps = _pixel_box(grid, lat_s, lat_n, lon_w, lon_e)
  class_id = variables.FRONT_CLASS_ID if class_name == "WF" else variables.CLASS_IDS[class_name]
  return {
    "time_index": k_out,
    "class_id": class_id,
    "class_name": class_name,
    "ymin": ymin,
    "xmin": xmin,
    "ymax": ymax,
    "xmax": xmax,
    "lat_south": float(max(lat_s, -90.0)),
    "lat_north": float(min(lat_n, 90.0)),
    "lon_west": float(lon_w % 360.0),
    "lon_east": float(lon_e % 360.0),
    "lat_center": float(lat_c),
    "lon_center": float(lon_c % 360.0),
    "track_id": int(track_id),
    "intensity": float(value),
    "wraps": wraps,
  }


def _extent(lat_c: float, lon_c: float, half_km: float) -> tuple[float, float, float, float]:
  """(lat_s, lat_n, lon_w, lon_e) of a square of half-side half_km around a centre."""
  dlat = half_km / KM_PER_DEG
  dlon = min(half_km / (KM_PER_DEG * max(np.cos(np.deg2rad(lat_c)), 0.05)), 179.0)
  return lat_c - dlat, lat_c + dlat, lon_c - dlon, lon_c + dlon


def _add(fields: dict, t: int, r0: int, r1: int, cols: np.ndarray, anomalies: dict) -> None:
  for name, value in anomalies.items():
    # fields[name][t] is a view, so the fancy-indexed update writes through.
    fields[name][t][r0:r1, cols] += value.astype(np.float32)


def _plant_step(grid: _Grid, tracks: list[_Track], step: int, k_out: int, t: int, fields: dict):
  """Plant every event alive at absolute `step` into row t of the chunk; return table rows."""
  rows = []
  min_km = grid.dy_km  # events narrower than a grid cell are widened so they stay visible
  for track in tracks:
    if not track.alive(step):
      continue
    k = step - track.birth
    p, lat_c, lon_c, strength = track.p, track.lat[k], track.lon[k], track.strength[k]
    hemi = 1.0 if lat_c >= 0 else -1.0
    if track.kind in ("TC", "TD"):
      floor = 250.0 if track.kind == "TC" else 100.0
      dp = floor + (p["dp_peak"] - floor) * strength
      scale = dp / p["dp_peak"]
      rmax = max(p["rmax"], 0.75 * min_km)
      moist_radius = max(p["moist_radius"], 1.5 * min_km)
      params = dict(p, dp=dp, rmax=rmax, lat=lat_c, moist_radius=moist_radius)
      params.update(
        warm200=p["warm200"] * scale,
        warm500=p["warm500"] * scale,
        moist=p["moist"] * (0.4 + 0.6 * strength),
        warm_radius=max(p["warm_radius"], 1.5 * min_km),
      )
      half = max(1_500.0, 12 * rmax)
      r0, r1, cols, north, east, lat = grid.window(lat_c, lon_c, half)
      anomalies = cyclone_anomalies(north, east, lat, params)
      taper = _window_taper(np.hypot(north, east), half)
      anomalies = {name: value * taper for name, value in anomalies.items()}
      anomalies["TMQ_ANOM"] = anomalies.pop("TMQ")  # kg/m2, capped in _derived
      _add(fields, t, r0, r1, cols, anomalies)
      wind = 0.8 * holland_max_wind(dp, p["b"])
      name = "TC" if track.kind == "TC" and wind >= 17.0 else "TD"
      box_km = np.clip(max(rmax * 0.105 ** (-1 / p["b"]), 1.2 * moist_radius), 150, 700)
      rows.append(
        _event_row(
          grid, k_out, name, track.track_id, lat_c, lon_c, *_extent(lat_c, lon_c, box_km), dp
        )
      )
    elif track.kind == "ETC":
      age_days = k / STEPS_PER_DAY
      front_strength = strength * min(1.0, age_days / 0.75)
      params = dict(
        p, radius=max(p["radius"], 2 * min_km), front_width=max(p["front_width"], 0.75 * min_km)
      )
      half = max(3.5 * params["radius"], params["cold_length"] + 600)
      r0, r1, cols, north, east, lat = grid.window(lat_c, lon_c, half)
      anomalies = etc_anomalies(
        north, east, lat, params, hemi=hemi, strength=strength, front_strength=front_strength
      )
      taper = _window_taper(np.hypot(north, east), half)
      anomalies = {name: value * taper for name, value in anomalies.items()}
      anomalies["TMQ_ANOM"] = anomalies.pop("TMQ")
      _add(fields, t, r0, r1, cols, anomalies)
      # Labelled once deep enough to hold closed isobars against the background
      # gradient (as a TECA-style detector would find it); the box spans 1.5 R.
      if p["dp"] * strength >= ETC_MIN_DEFICIT:
        rows.append(
            _event_row(
                grid, k_out, "ETC", track.track_id, lat_c, lon_c,
                *_extent(lat_c, lon_c, 1.5 * params["radius"]), p["dp"] * strength,
            )
        )  # fmt: skip
      if front_strength >= 0.3:
        for front, sub_id in (("cold", 1), ("warm", 2)):
          angle = np.deg2rad(params[f"{front}_angle"])
          along = np.linspace(0, params[f"{front}_length"], 16)
          f_lat = lat_c + hemi * along * np.sin(angle) / KM_PER_DEG
          f_lon = lon_c + along * np.cos(angle) / (KM_PER_DEG * np.cos(np.deg2rad(f_lat)))
          pad = 2 * params["front_width"]
          pad_lon = pad / (KM_PER_DEG * np.cos(np.deg2rad(f_lat)))
          rows.append(
              _event_row(
                  grid, k_out, "WF", track.track_id * 10 + sub_id,
                  f_lat[len(f_lat) // 2], f_lon[len(f_lon) // 2],
                  f_lat.min() - pad / KM_PER_DEG, f_lat.max() + pad / KM_PER_DEG,
                  (f_lon - pad_lon).min(), (f_lon + pad_lon).max(),
                  params["delta_t"] * front_strength,
              )
          )  # fmt: skip
    else:
      params = dict(p, width=max(p["width"], min_km))
      path_lat, path_lon, envelope, _ = _ar_path(track, k)
      # Unwrap the axis around the landfall longitude, then cover it with one window.
      path_lon = lon_c + (path_lon - lon_c + 180.0) % 360.0 - 180.0
      lat_mid = 0.5 * (path_lat.min() + path_lat.max())
      lon_mid = 0.5 * (path_lon.min() + path_lon.max())
      pad = 3 * params["width"]
      half = max(
        (path_lat.max() - path_lat.min()) / 2 * KM_PER_DEG + pad,
        (path_lon.max() - path_lon.min()) / 2 * KM_PER_DEG * np.cos(np.deg2rad(lat_mid)) + pad,
      )
      r0, r1, cols, _, _, lat = grid.window(lat_mid, lon_mid, half)
      lon = np.broadcast_to(grid.lon[cols][None, :], (r1 - r0, cols.size))
      anomalies = ar_anomalies(
        np.broadcast_to(lat, lon.shape),
        lon,
        path_lat,
        path_lon,
        envelope,
        params,
        strength=strength,
      )
      anomalies["TMQ_ANOM"] = anomalies.pop("TMQ")
      _add(fields, t, r0, r1, cols, anomalies)
      core = envelope >= 0.2
      pad = 1.5 * params["width"]
      pad_lon = pad / (KM_PER_DEG * np.cos(np.deg2rad(path_lat[core])))
      rows.append(
          _event_row(
              grid, k_out, "AR", track.track_id, lat_c, lon_c,
              path_lat[core].min() - pad / KM_PER_DEG, path_lat[core].max() + pad / KM_PER_DEG,
              (path_lon[core] - pad_lon).min(), (path_lon[core] + pad_lon).max(),
              p["moist"] * strength,
          )
      )  # fmt: skip
  return rows
